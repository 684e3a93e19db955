//! `silt auth` (tokens, certificates, who am I) and `silt acl`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use silt_client::auth::{Acl, Operation, Pattern, Permission, ResourceType, CLUSTER};
use silt_client::Client;

#[derive(clap::Subcommand)]
pub enum AuthCommand {
    /// Create, revoke and list bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Issue client certificates from the local CA (for --auth mtls).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Print the principal this CLI acts as.
    Whoami,
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for NAME (the principal) and print it: it is shown only once.
    Create {
        name: String,
        /// It stops working after this long (e.g. 30d, 12h) [default: never].
        #[arg(long, value_parser = silt_client::units::parse_duration)]
        expires: Option<Duration>,
    },
    /// Revoke NAME's token: connections using it are refused within --auth-refresh.
    Revoke { name: String },
    /// List the principals with tokens, and when each was created and expires.
    List,
}

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Write NAME.pem and NAME-key.pem (common name NAME, its principal)
    /// and the CA's ca.pem to DIR.
    Create {
        name: String,
        #[arg(long)]
        out: PathBuf,
        /// The local CA's folder [default: silt-data/tls].
        #[arg(long, env = "SILT_TLS_DIR")]
        tls_dir: Option<PathBuf>,
        /// How long the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(clap::Subcommand)]
pub enum AclCommand {
    /// Allow (or with --deny, refuse) a principal an operation on a resource.
    Add(AclArgs),
    /// Remove an ACL (name it as it was added).
    Remove(AclArgs),
    /// List the ACLs.
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("resource").required(true).args(["topic", "topic_prefix", "group", "group_prefix", "cluster"])))]
pub struct AclArgs {
    /// Who: a principal (a token's name, a certificate's common name), or * for anyone.
    #[arg(long)]
    principal: String,
    /// A topic by name (* for every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Every topic whose name starts with this.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// A consumer group by name (* for every group).
    #[arg(long)]
    group: Option<String>,
    /// Every group whose name starts with this.
    #[arg(long)]
    group_prefix: Option<String>,
    /// The cluster (creating topics, connectors, tokens and ACLs; stats).
    #[arg(long)]
    cluster: bool,
    /// read, write, create, delete, alter or describe (read, write, delete
    /// and alter imply describe). Repeat it, or separate with commas.
    #[arg(long, value_delimiter = ',', required = true)]
    operation: Vec<Operation>,
    /// Refuse instead of allow (a deny wins over any allow).
    #[arg(long)]
    deny: bool,
}

impl AclArgs {
    fn acls(&self) -> Vec<Acl> {
        let (resource, pattern, name) = if let Some(t) = &self.topic {
            (ResourceType::Topic, Pattern::Literal, t.clone())
        } else if let Some(t) = &self.topic_prefix {
            (ResourceType::Topic, Pattern::Prefixed, t.clone())
        } else if let Some(g) = &self.group {
            (ResourceType::Group, Pattern::Literal, g.clone())
        } else if let Some(g) = &self.group_prefix {
            (ResourceType::Group, Pattern::Prefixed, g.clone())
        } else {
            (ResourceType::Cluster, Pattern::Literal, CLUSTER.to_string())
        };
        let permission = if self.deny { Permission::Deny } else { Permission::Allow };
        self.operation
            .iter()
            .map(|op| Acl {
                principal: self.principal.clone(),
                resource,
                pattern,
                name: name.clone(),
                operation: *op,
                permission,
            })
            .collect()
    }
}

fn time(ms: i64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub async fn run_token(client: &Client, command: &TokenCommand) -> anyhow::Result<i32> {
    match command {
        TokenCommand::Create { name, expires } => println!("{}", client.create_token(name, *expires).await?),
        TokenCommand::Revoke { name } => {
            client.revoke_token(name).await?;
            eprintln!("revoked the token of {name}");
        }
        TokenCommand::List => {
            println!("{:<32}  {:<20}  {:<20}", "PRINCIPAL", "CREATED", "EXPIRES");
            for t in client.list_tokens().await? {
                println!("{:<32}  {:<20}  {:<20}", t.principal, time(t.created_ms), time(t.expires_ms));
            }
        }
    }
    Ok(0)
}

pub fn create_cert(name: &str, out: &PathBuf, tls_dir: &Option<PathBuf>, days: u32) -> anyhow::Result<i32> {
    if name.is_empty() || name.contains(['/', '\0']) {
        bail!("{name:?} is not a principal name for a certificate");
    }
    let dir = tls_dir.clone().unwrap_or_else(|| PathBuf::from(silt_agent::config::DEFAULT_DATA_DIR).join("tls"));
    let (cert, key) = silt_agent::frontend::quic::tls::issue_client_cert(&dir, name, days)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |file: &str, contents: &[u8], mode: u32| -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = out.join(file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(contents).with_context(|| format!("writing {}", path.display()))
    };
    write(&format!("{name}.pem"), cert.as_bytes(), 0o644)?;
    write(&format!("{name}-key.pem"), key.as_bytes(), 0o600)?;
    let ca = std::fs::read(dir.join(silt_agent::frontend::quic::tls::CA_FILE))?;
    write(silt_agent::frontend::quic::tls::CA_FILE, &ca, 0o644)?;
    println!("{}", out.join(format!("{name}.pem")).display());
    println!("{}", out.join(format!("{name}-key.pem")).display());
    Ok(0)
}

pub async fn run_acl(client: &Client, command: &AclCommand) -> anyhow::Result<i32> {
    match command {
        AclCommand::Add(a) => {
            for acl in a.acls() {
                client.alter_acl(&acl, false).await?;
            }
        }
        AclCommand::Remove(a) => {
            for acl in a.acls() {
                client.alter_acl(&acl, true).await?;
            }
        }
        AclCommand::List { principal } => {
            println!(
                "{:<20}  {:<8}  {:<8}  {:<24}  {:<9}  PERMISSION",
                "PRINCIPAL", "RESOURCE", "PATTERN", "NAME", "OPERATION"
            );
            for a in client.list_acls().await? {
                if principal.as_ref().is_some_and(|p| *p != a.principal) {
                    continue;
                }
                println!(
                    "{:<20}  {:<8}  {:<8}  {:<24}  {:<9}  {}",
                    a.principal, a.resource, a.pattern, a.name, a.operation, a.permission
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::time(0), "never");
        assert_eq!(super::time(1), "1970-01-01 00:00:00Z");
        assert_eq!(super::time(1_796_300_000_000), "2026-12-03 12:13:20Z");
    }
}
