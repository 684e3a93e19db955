//! `silt connect` (a worker) and `silt connector` (connector configs).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use silt_client::{Client, ConnectorInfo, ConnectorOp};
use silt_connect::{ConnectorConfig, WorkerConfig};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct ConnectArgs {
    /// This worker's id, unique among workers [default: HOST-PID; standalone: standalone-HOST].
    #[arg(long, env = "SILT_WORKER_ID")]
    worker_id: Option<String>,
    /// How long the worker's claims last without a round (it renews every third of it):
    /// a dead worker's connectors move to others within about this long.
    #[arg(long, env = "SILT_CONNECT_TTL", default_value = "10s", value_parser = silt_agent::config::parse_duration)]
    ttl: Duration,
    /// Run only the connectors of these TOML files (created or updated
    /// from them), outside the pool of workers.
    #[arg(long, num_args = 1..)]
    standalone: Vec<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector from a TOML file (`type` and the type's keys).
    Create {
        name: String,
        /// The connector's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// One line per connector: name, type, state, worker, last error.
    List,
    /// A connector's state, worker, progress (a source's position, a sink's lag), last error and config.
    Describe { name: String },
    /// Stop running a connector (its progress is kept).
    Pause { name: String },
    /// Run a paused connector again, from where it was.
    Resume { name: String },
    /// Delete a connector (a sink's group and its offsets stay).
    Delete { name: String },
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "localhost".into())
}

fn read_config(path: &PathBuf, name: Option<&str>) -> anyhow::Result<(ConnectorConfig, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = ConnectorConfig::parse(&text, name).with_context(|| format!("{} is refused", path.display()))?;
    Ok((config, text))
}

pub async fn worker(client: Client, args: &ConnectArgs) -> anyhow::Result<i32> {
    let mut standalone = Vec::new();
    for path in &args.standalone {
        let (config, text) = read_config(path, None)?;
        client.put_connector(&config.name, &text, true, true).await?;
        standalone.push(config.name);
    }
    let id = args.worker_id.clone().unwrap_or_else(|| match standalone.is_empty() {
        true => format!("{}-{}", hostname(), std::process::id()),
        false => format!("standalone-{}", hostname()),
    });
    if args.ttl < Duration::from_secs(1) {
        anyhow::bail!("--ttl must be at least 1s");
    }
    eprintln!(
        "silt connect worker {id}{}",
        if standalone.is_empty() { String::new() } else { format!(" (standalone: {})", standalone.join(", ")) }
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        s.cancel();
    });
    silt_connect::run(client.clone(), WorkerConfig { id, ttl: args.ttl, standalone }, stop).await?;
    client.close();
    Ok(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn kind_of(c: &ConnectorInfo) -> &'static str {
    ConnectorConfig::parse(&c.config, Some(&c.name)).map_or("invalid", |p| p.kind.name())
}

fn state_of(c: &ConnectorInfo) -> &'static str {
    if c.paused {
        "PAUSED"
    } else if c.worker.is_empty() || c.expires_ms <= now_ms() {
        "UNASSIGNED"
    } else if !c.error.is_empty() {
        "FAILING"
    } else {
        "RUNNING"
    }
}

fn ago(ms: i64) -> String {
    format!("{:.1}s ago", (now_ms() - ms).max(0) as f64 / 1000.0)
}

pub async fn run(client: &Client, command: &ConnectorCommand) -> anyhow::Result<i32> {
    match command {
        ConnectorCommand::Create { name, config } => {
            let (parsed, text) = read_config(config, Some(name))?;
            if let silt_connect::Kind::Postgres(p) = &parsed.kind {
                silt_connect::postgres_source::check(p)
                    .await
                    .with_context(|| format!("{} is refused: key `url`", config.display()))?;
            }
            client.put_connector(name, &text, false, false).await?;
            println!("created connector {name}");
        }
        ConnectorCommand::List => {
            println!("{:<24}  {:<12}  {:<10}  {:<24}  ERROR", "NAME", "TYPE", "STATE", "WORKER");
            for c in client.list_connectors().await? {
                let error = c.error.lines().next().unwrap_or_default();
                println!("{:<24}  {:<12}  {:<10}  {:<24}  {error}", c.name, kind_of(&c), state_of(&c), c.worker);
            }
        }
        ConnectorCommand::Describe { name } => {
            let all = client.list_connectors().await?;
            let Some(c) = all.into_iter().find(|c| c.name == *name) else {
                anyhow::bail!("connector {name:?} does not exist");
            };
            println!("connector {} ({})", c.name, kind_of(&c));
            println!("state     {}{}", state_of(&c), if c.standalone { " (standalone)" } else { "" });
            let worker = if c.worker.is_empty() { "none".to_string() } else { c.worker.clone() };
            println!("worker    {worker} (epoch {})", c.epoch);
            match ConnectorConfig::parse(&c.config, Some(&c.name)).map(|p| p.kind) {
                Ok(kind) if !kind.sink_topics().is_empty() => {
                    let lag = match client.describe_group(&c.name).await {
                        Ok(g) => g.partitions.iter().map(|p| p.log_end - p.committed.max(0)).sum::<i64>().to_string(),
                        Err(_) => "unknown (nothing committed yet)".into(),
                    };
                    println!("lag       {lag} records (group {})", c.name);
                }
                _ => println!("position  {}", if c.position.is_empty() { "none yet" } else { &c.position }),
            }
            match c.error.is_empty() {
                true => println!("error     none"),
                false => println!("error     {} ({})", c.error, ago(c.error_ms)),
            }
            println!("config");
            for line in c.config.lines() {
                println!("  {line}");
            }
        }
        ConnectorCommand::Pause { name } => {
            client.connector_action(name, ConnectorOp::Pause).await?;
            println!("paused connector {name}");
        }
        ConnectorCommand::Resume { name } => {
            client.connector_action(name, ConnectorOp::Resume).await?;
            println!("resumed connector {name}");
        }
        ConnectorCommand::Delete { name } => {
            client.connector_action(name, ConnectorOp::Delete).await?;
            println!("deleted connector {name}");
        }
    }
    Ok(0)
}
