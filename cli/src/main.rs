//! `silt`: run an agent, administer topics, produce and consume.
//!
//! - `main.rs`: flags and dispatch.
//! - `io.rs`: produce from stdin and consume to stdout (alone or in a group).
//! - `topic.rs`: topic administration.
//! - `group.rs`: consumer-group administration.
//! - `connect.rs`: the connect worker and connector administration.
//! - `auth.rs`: tokens, client certificates and ACLs.
//! - `bench.rs`, `bench_groups.rs`, `bench_store.rs`,
//!   `bench_quic.rs`: the benchmark programs.

mod auth;
mod bench;
mod bench_groups;
mod bench_quic;
mod bench_store;
mod connect;
mod group;
mod io;
mod topic;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use silt_client::{Client, ClientConfig};

#[derive(Parser)]
#[command(name = "silt", version, about = "silt: a Kafka-style event log on object storage")]
struct Cli {
    /// Agent to talk to (host:port).
    #[arg(long, global = true, env = "SILT_AGENT", default_value = silt_agent::config::DEFAULT_LISTEN)]
    agent: String,
    /// CA certificate (PEM) the agent's certificate must chain to
    /// [default: silt-data/tls/ca.pem, where `silt agent` creates it].
    #[arg(long, global = true, env = "SILT_CA")]
    ca: Option<PathBuf>,
    /// Give up connecting after this long (e.g. 5s).
    #[arg(long, global = true, env = "SILT_CONNECT_TIMEOUT", default_value = "5s", value_parser = silt_agent::config::parse_duration)]
    connect_timeout: Duration,
    /// A file holding the bearer token to authenticate with
    /// [default: the SILT_TOKEN variable, else silt-data/admin.token when it exists].
    #[arg(long, global = true, env = "SILT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A client certificate (PEM) to present, for agents with --auth mtls.
    #[arg(long, global = true, env = "SILT_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "SILT_KEY", requires = "cert")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent (a broker) in the foreground; `silt agent list` lists the live agents.
    Agent(Box<AgentCommand>),
    /// Create, alter, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Send stdin to a topic, one record per line; exits 0 only when every record is acknowledged.
    Produce(io::ProduceArgs),
    /// Print a topic's records, one per line.
    Consume(io::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Run a connect worker: it runs the connectors it claims (or, with
    /// --standalone, the ones its files name).
    Connect(connect::ConnectArgs),
    /// Create, list, describe, pause, resume and delete connectors.
    #[command(subcommand)]
    Connector(connect::ConnectorCommand),
    /// Tokens, client certificates, and who this CLI acts as.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Add, remove and list ACLs: who may do what to which topics and groups.
    #[command(subcommand)]
    Acl(auth::AclCommand),
    /// Print the agent's counters (objects written, GETs, cache hits...).
    Stats,
    /// Benchmark programs that print throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentCommand {
    #[command(subcommand)]
    action: Option<AgentAction>,
    #[command(flatten)]
    args: silt_agent::Args,
}

#[derive(Subcommand)]
enum AgentAction {
    /// List the registered agents: id, address, partitions owned, last heartbeat.
    List,
}

impl Cli {
    /// The token to authenticate with: --token-file, else SILT_TOKEN, else
    /// the admin token a local agent wrote, when it is there.
    fn token(&self) -> anyhow::Result<Option<String>> {
        let read = |path: &std::path::Path| -> anyhow::Result<String> {
            let t =
                std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
            Ok(t.trim().to_string())
        };
        if let Some(path) = &self.token_file {
            return read(path).map(Some);
        }
        if let Ok(t) = std::env::var("SILT_TOKEN") {
            if !t.trim().is_empty() {
                return Ok(Some(t.trim().to_string()));
            }
        }
        let local = PathBuf::from(silt_agent::config::DEFAULT_DATA_DIR).join(silt_agent::auth::ADMIN_TOKEN_FILE);
        if self.cert.is_none() && local.exists() {
            return read(&local).map(Some);
        }
        Ok(None)
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        let ca = self.ca.clone().unwrap_or_else(|| {
            PathBuf::from(silt_agent::config::DEFAULT_DATA_DIR)
                .join("tls")
                .join(silt_agent::frontend::quic::tls::CA_FILE)
        });
        let config = ClientConfig {
            agent: self.agent.clone(),
            ca: Some(ca),
            connect_timeout: self.connect_timeout,
            token: self.token()?,
            cert: self.cert.clone(),
            key: self.key.clone(),
            ..Default::default()
        };
        Ok(Client::connect(config).await?)
    }
}

/// Two malloc arenas, not glibc's eight per core, unless MALLOC_ARENA_MAX
/// says otherwise. Buffers of a megabyte or so (read ranges, fetch replies,
/// batches) are freed on other threads than the ones that took them; with
/// an arena per thread, the freed space stays spread over every arena and
/// the process keeps it: an agent serving a 2 GB catch-up read sat at
/// 314 MiB with one arena per thread and 233 with two, at the same speed.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt before any thread starts, with a documented parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The agent's settings also come from its --config file: resolved
    // against what the command line and the environment set.
    let agent = matches.subcommand_matches("agent").cloned();
    if !matches!(&cli.command, Command::Agent(a) if a.action.is_none()) {
        // A reader that goes away (`silt consume t | head`) ends the
        // command quietly, as it ends `cat`: Rust ignores SIGPIPE, and
        // printing to the closed pipe would panic. The agent keeps
        // ignoring it (its sockets report closed peers as errors).
        // SAFETY: setting a signal's disposition to the default before
        // any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    few_malloc_arenas();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if matches!(&cli.command, Command::Agent(a) if a.action.is_none()) {
            "info,foyer=warn"
        } else {
            "warn"
        })
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = match runtime.block_on(run(cli, agent)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

async fn run(cli: Cli, agent_matches: Option<clap::ArgMatches>) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Agent(agent) => match agent.action {
            None => run_agent(&agent_matches.expect("the agent command's flags")).await.map(|_| 0),
            Some(AgentAction::List) => {
                let client = cli.connect().await?;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
                println!("{:<24}  {:<22}  {:>10}  {:>14}", "AGENT", "ADDRESS", "PARTITIONS", "LAST-HEARTBEAT");
                for a in client.list_agents().await? {
                    let ago = format!("{:.1}s ago", (now - a.heartbeat_ms).max(0) as f64 / 1000.0);
                    println!("{:<24}  {:<22}  {:>10}  {:>14}", a.id, a.address, a.partitions, ago);
                }
                client.close();
                Ok(0)
            }
        },
        Command::Topic(t) => {
            let client = cli.connect().await?;
            let code = topic::run(&client, t).await;
            client.close();
            code
        }
        Command::Produce(args) => io::produce(cli.connect().await?, args).await,
        Command::Consume(args) => io::consume(cli.connect().await?, args).await,
        Command::Group(g) => {
            let client = cli.connect().await?;
            let code = group::run(&client, g).await;
            client.close();
            code
        }
        Command::Connect(args) => connect::worker(cli.connect().await?, args).await,
        Command::Connector(c) => {
            let client = cli.connect().await?;
            let code = connect::run(&client, c).await;
            client.close();
            code
        }
        Command::Auth(auth::AuthCommand::Cert(auth::CertCommand::Create { name, out, tls_dir, days })) => {
            auth::create_cert(name, out, tls_dir, *days)
        }
        Command::Auth(auth::AuthCommand::Token(t)) => {
            let client = cli.connect().await?;
            let code = auth::run_token(&client, t).await;
            client.close();
            code
        }
        Command::Auth(auth::AuthCommand::Whoami) => {
            let client = cli.connect().await?;
            println!("{}", client.who_am_i().await?);
            client.close();
            Ok(0)
        }
        Command::Acl(a) => {
            let client = cli.connect().await?;
            let code = auth::run_acl(&client, a).await;
            client.close();
            code
        }
        Command::Stats => {
            for (name, value) in cli.connect().await?.stats().await? {
                println!("{name} {value}");
            }
            Ok(0)
        }
        // The store's own ceiling needs no agent.
        Command::Bench(bench::BenchCommand::Put(b)) => bench_store::put(b).await.map(|_| 0),
        Command::Bench(bench::BenchCommand::Quic(b)) => bench_quic::quic(b).await.map(|_| 0),
        Command::Bench(b) => bench::run(cli.connect().await?, b).await.map(|_| 0),
    }
}

async fn run_agent(matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let effective = silt_agent::config::file::resolve(matches)?;
    if effective.args.print_config {
        let _ = effective.validate()?;
        print!("{}", effective.render());
        return Ok(());
    }
    let config = effective.validate()?;
    let agent = silt_agent::Agent::start(config).await.context("the agent could not start")?;
    if let Some(ca) = agent.ca_path() {
        eprintln!(
            "silt agent {} listening on {} (clients trust {})",
            agent.agent_id(),
            agent.local_addr(),
            ca.display()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    agent.shutdown().await;
    Ok(())
}
