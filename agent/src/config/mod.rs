//! The agent's settings: clap flags (each also read from a `SILT_*`
//! environment variable, and a key in the [`file`] `--config` names),
//! validated once into [`Config`].

pub mod file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::AgentError;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7447";
pub const DEFAULT_DATA_DIR: &str = "silt-data";
/// The local CA's certificate, which clients trust, in the TLS folder.
pub const CA_FILE: &str = "ca.pem";
/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// S3 settings beside the URL.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow credentials from the EC2/ECS instance metadata service when no
    /// `AWS_*` credentials are set.
    pub instance_credentials: bool,
    pub checksum: S3Checksum,
}

/// How a PUT shows the store that the bytes it received are the bytes sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum S3Checksum {
    /// A CRC-64/NVME of the body in `x-amz-checksum-crc64nvme`, which the
    /// store checks (AWS S3, SeaweedFS, MinIO); the payload is not hashed
    /// into the signature.
    #[default]
    Crc64Nvme,
    /// A SHA-256 of the body in the request's signature, which every S3
    /// store checks: a quarter of the agent's CPU at full rate.
    Sha256,
}

impl std::str::FromStr for S3Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crc64nvme" => Ok(S3Checksum::Crc64Nvme),
            "sha256" => Ok(S3Checksum::Sha256),
            other => Err(format!("{other:?}: expected crc64nvme or sha256")),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A TOML file of settings: every flag is a key of the same name
    /// (flush-interval = "250ms"). Flags and SILT_* variables override it.
    #[arg(long, env = "SILT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Where the agent keeps its identity, TLS files, and (by default) its
    /// metadata and objects.
    #[arg(long, env = "SILT_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// UDP address the QUIC listener binds.
    #[arg(long, env = "SILT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address clients are told to reach this agent at [default: the bound address].
    #[arg(long, env = "SILT_ADVERTISE")]
    pub advertise: Option<String>,
    /// TCP address of the Kafka-protocol listener (off unless given), e.g.
    /// 127.0.0.1:9092: Kafka clients reach the same topics and groups there.
    #[arg(long, env = "SILT_KAFKA_LISTEN")]
    pub kafka_listen: Option<SocketAddr>,
    /// host:port Kafka clients are told to reach this agent at [default: the bound address].
    #[arg(long, env = "SILT_KAFKA_ADVERTISE", requires = "kafka_listen")]
    pub kafka_advertise: Option<String>,
    /// Serve the Kafka listener over TLS, with the agent's certificate.
    #[arg(long, env = "SILT_KAFKA_TLS", requires = "kafka_listen")]
    pub kafka_tls: bool,
    /// TCP address serving /metrics (Prometheus), /healthz and /readyz over
    /// plain HTTP (off unless given), e.g. 127.0.0.1:9464.
    #[arg(long, env = "SILT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Metadata store URL [default: sqlite://<data-dir>/metadata.db].
    #[arg(long, env = "SILT_METADATA")]
    pub metadata: Option<String>,
    /// Object store URL: file:///path or s3://BUCKET/PREFIX [default: file://<data-dir>/objects].
    #[arg(long, env = "SILT_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// S3 endpoint for S3-compatible stores (MinIO, SeaweedFS...); path-style
    /// addressing, plain http only when the URL says http://. Credentials come
    /// from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
    #[arg(long, env = "SILT_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Without AWS_* credentials, use the EC2/ECS instance metadata service.
    #[arg(long, env = "SILT_S3_INSTANCE_CREDENTIALS")]
    pub s3_instance_credentials: bool,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "SILT_S3_REGION")]
    pub s3_region: Option<String>,
    /// How PUTs prove their bytes to the store: crc64nvme (a CRC-64 of each
    /// object the store checks: AWS S3, SeaweedFS, MinIO) or sha256 (the
    /// object's SHA-256 in the request signature: any S3 store, more CPU).
    #[arg(long, env = "SILT_S3_CHECKSUM", default_value = "crc64nvme")]
    pub s3_checksum: String,
    /// Folder holding ca.pem, ca-key.pem: created on first start, shared by
    /// agents that point at the same folder [default: <data-dir>/tls].
    #[arg(long, env = "SILT_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// A real certificate chain (PEM) instead of the local CA's.
    #[arg(long, env = "SILT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "SILT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How clients prove who they are: a comma-separated list of mtls
    /// (client certificates), token (bearer tokens over QUIC), sasl (SASL
    /// PLAIN and SCRAM on the Kafka listener), or none. Required when
    /// --listen or --kafka-listen is not a loopback address [default: none,
    /// on loopback].
    #[arg(long, env = "SILT_AUTH")]
    pub auth: Option<String>,
    /// Principals allowed everything, whatever the ACLs say (comma-separated).
    #[arg(long, env = "SILT_SUPER_USERS", value_delimiter = ',', default_value = "admin")]
    pub super_users: Vec<String>,
    /// CA certificates (PEM) client certificates must chain to, with --auth
    /// mtls [default: the local CA's ca.pem].
    #[arg(long, env = "SILT_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// How often agents re-read tokens and ACLs (one key, unless they
    /// changed): the longest a revoked token or a removed ACL keeps working.
    #[arg(long, env = "SILT_AUTH_REFRESH", default_value = "2s", value_parser = parse_duration)]
    pub auth_refresh: Duration,
    /// Flush buffered batches into an object once this much is buffered (e.g. 8MiB).
    #[arg(long, env = "SILT_FLUSH_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    pub flush_bytes: u64,
    /// Flush at the latest this long after the first buffered batch (e.g. 250ms).
    #[arg(long, env = "SILT_FLUSH_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub flush_interval: Duration,
    /// A local disk for the write-ahead log behind acks=local and the read
    /// cache's disk tier. Repeat it, one per disk: the log is striped over them.
    #[arg(long = "cache-dir", env = "SILT_CACHE_DIRS", value_delimiter = ',')]
    pub cache_dirs: Vec<PathBuf>,
    /// Memory for the read cache of historical ranges.
    #[arg(long, env = "SILT_CACHE_MEMORY", default_value = "64MiB", value_parser = parse_bytes)]
    pub cache_memory: u64,
    /// Disk for the read cache, in each --cache-dir (0 turns the disk tier off).
    #[arg(long, env = "SILT_CACHE_DISK", default_value = "1GiB", value_parser = parse_bytes)]
    pub cache_disk: u64,
    /// How long a partition's lease lasts without renewal: the longest a dead
    /// agent's partitions wait before others take them.
    #[arg(long, env = "SILT_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Objects uploaded at once; their index commits stay in order.
    #[arg(long, env = "SILT_MAX_UPLOADS", default_value_t = 4)]
    pub max_uploads: usize,
    /// Largest record (key, value and headers) producers may send.
    #[arg(long, env = "SILT_MAX_RECORD_BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    pub max_record_bytes: u64,
    /// Largest frame (and so batch) a client may send.
    #[arg(long, env = "SILT_MAX_FRAME_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub max_frame_bytes: u64,
    /// Bytes accepted but not yet durable, across all producers; past it
    /// producers wait, then get THROTTLED.
    #[arg(long, env = "SILT_MAX_INFLIGHT_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub max_inflight_bytes: u64,
    /// How long a producer waits for room under --max-inflight-bytes before
    /// it gets THROTTLED (retriable).
    #[arg(long, env = "SILT_THROTTLE_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub throttle_wait: Duration,
    /// Concurrent client connections.
    #[arg(long, env = "SILT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: u32,
    /// Concurrent requests (streams) per connection.
    #[arg(long, env = "SILT_MAX_STREAMS", default_value_t = 1024)]
    pub max_streams: u32,
    /// Memory kept for recently written objects, which serves tail reads.
    #[arg(long, env = "SILT_RECENT_CACHE_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub recent_cache_bytes: u64,
    /// Default retention.ms of topics: how long records are kept (-1: forever).
    #[arg(long, env = "SILT_RETENTION_MS", default_value = "604800000", allow_hyphen_values = true)]
    pub retention_ms: String,
    /// Default retention.bytes of topics: the most bytes a partition keeps (-1: no limit).
    #[arg(long, env = "SILT_RETENTION_BYTES", default_value = "-1", allow_hyphen_values = true)]
    pub retention_bytes: String,
    /// Default cleanup.policy of topics: delete, compact, or compact,delete.
    #[arg(long, env = "SILT_CLEANUP_POLICY", default_value = "delete")]
    pub cleanup_policy: String,
    /// Default min.compaction.lag.ms of topics: records younger than this are never compacted away.
    #[arg(long, env = "SILT_MIN_COMPACTION_LAG_MS", default_value = "0")]
    pub min_compaction_lag_ms: String,
    /// Default delete.retention.ms of topics: how long a tombstone survives compaction.
    #[arg(long, env = "SILT_DELETE_RETENTION_MS", default_value = "86400000")]
    pub delete_retention_ms: String,
    /// Default segment.bytes of topics: the target size of compacted segments.
    #[arg(long, env = "SILT_SEGMENT_BYTES", default_value = "67108864")]
    pub segment_bytes: String,
    /// How often each partition's owner applies retention to it.
    #[arg(long, env = "SILT_RETENTION_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub retention_check_interval: Duration,
    /// How long an object stays after nothing points into it any more, for
    /// reads in flight. A flush whose index commit keeps failing this long
    /// is given up.
    #[arg(long, env = "SILT_GC_GRACE", default_value = "5m", value_parser = parse_duration)]
    pub gc_grace: Duration,
    /// How often the collecting agent deletes objects whose grace period passed.
    #[arg(long, env = "SILT_GC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub gc_interval: Duration,
    /// How old an object that nothing ever pointed into (a crash between its
    /// upload and its commit) must be before it is deleted. At least --gc-grace.
    #[arg(long, env = "SILT_ORPHAN_AGE", default_value = "1h", value_parser = parse_duration)]
    pub orphan_age: Duration,
    /// Flush objects older than this have their partitions' runs rewritten
    /// into per-partition segments of about segment.bytes (and key-compacted
    /// topics' records become eligible for cleaning).
    #[arg(long, env = "SILT_COMPACTION_MIN_AGE", default_value = "10m", value_parser = parse_duration)]
    pub compaction_min_age: Duration,
    /// Never rewrite flush objects into per-partition segments (key-compacted
    /// topics are still cleaned).
    #[arg(long, env = "SILT_NO_OBJECT_COMPACTION")]
    pub no_object_compaction: bool,
    /// How often the collecting agent lists the bucket for such objects.
    #[arg(long, env = "SILT_ORPHAN_SWEEP_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    pub orphan_sweep_interval: Duration,
}

impl Default for Args {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        Wrapper::parse_from(["silt-agent"]).args
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub kafka: Option<KafkaConfig>,
    pub metrics_listen: Option<SocketAddr>,
    pub metadata_url: String,
    pub object_store_url: String,
    pub s3: S3Options,
    pub tls: TlsSource,
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    pub max_record_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_inflight_bytes: usize,
    pub throttle_wait: Duration,
    pub max_connections: u32,
    pub max_streams: u32,
    pub recent_cache_bytes: usize,
    pub max_uploads: usize,
    pub cache_dirs: Vec<PathBuf>,
    pub lease_ttl: Duration,
    pub cache_memory: usize,
    pub cache_disk: usize,
    /// Topic config defaults, as `(flag, key, value)`; checked where topic configs are understood.
    pub topic_defaults: Vec<(&'static str, &'static str, String)>,
    pub retention_check_interval: Duration,
    pub gc_grace: Duration,
    pub gc_interval: Duration,
    pub orphan_age: Duration,
    pub orphan_sweep_interval: Duration,
    pub compaction_min_age: Duration,
    pub object_compaction: bool,
    pub auth: AuthModes,
    pub super_users: Vec<String>,
    /// With mtls: the CA file client certificates chain to.
    pub client_ca: Option<PathBuf>,
    pub auth_refresh: Duration,
}

/// The Kafka-protocol listener's settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub listen: SocketAddr,
    /// `host:port` given to clients; None: the bound address.
    pub advertise: Option<String>,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A local CA in this folder, created on first use.
    LocalCa(PathBuf),
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

fn bad(key: &'static str, reason: impl Into<String>) -> AgentError {
    AgentError::Config { key, reason: reason.into() }
}

impl Args {
    pub fn validate(&self) -> Result<Config, AgentError> {
        let data_dir = self.data_dir.clone();
        if data_dir.as_os_str().is_empty() {
            return Err(bad("--data-dir", "must not be empty"));
        }
        let size = |key: &'static str, v: u64, min: u64, max: u64| -> Result<usize, AgentError> {
            if v < min || v > max {
                return Err(bad(key, format!("{v} bytes is outside {min}..={max}")));
            }
            Ok(v as usize)
        };
        let max_frame_bytes = size("--max-frame-bytes", self.max_frame_bytes, 64 * 1024, 1 << 30)?;
        let max_record_bytes = size("--max-record-bytes", self.max_record_bytes, 1, 64 << 20)?;
        if max_record_bytes + 1024 > max_frame_bytes {
            return Err(bad("--max-record-bytes", "must be at least 1 KiB below --max-frame-bytes"));
        }
        let flush_interval = self.flush_interval;
        if flush_interval.is_zero() || flush_interval > Duration::from_secs(60) {
            return Err(bad("--flush-interval", "must be between 1ms and 60s"));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert: cert.clone(), key: key.clone() },
            (None, None) => TlsSource::LocalCa(self.tls_dir.clone().unwrap_or_else(|| data_dir.join("tls"))),
            _ => return Err(bad("--tls-cert", "--tls-cert and --tls-key go together")),
        };
        if let Some(e) = &self.s3_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad("--s3-endpoint", format!("{e:?} must start with http:// or https://")));
            }
        }
        if self.max_connections == 0 {
            return Err(bad("--max-connections", "must be at least 1"));
        }
        if self.max_streams == 0 {
            return Err(bad("--max-streams", "must be at least 1"));
        }
        let within = |key: &'static str, v: Duration, min: Duration, max: Duration| -> Result<Duration, AgentError> {
            if v < min || v > max {
                return Err(bad(key, format!("{v:?} is outside {min:?}..={max:?}")));
            }
            Ok(v)
        };
        let (second, day) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));
        let gc_grace = within("--gc-grace", self.gc_grace, second, day)?;
        let orphan_age = within("--orphan-age", self.orphan_age, second, 30 * day)?;
        if orphan_age < gc_grace {
            return Err(bad("--orphan-age", "must be at least --gc-grace"));
        }
        let gc_interval = within("--gc-interval", self.gc_interval, Duration::from_millis(100), day)?;
        let orphan_sweep_interval =
            within("--orphan-sweep-interval", self.orphan_sweep_interval, Duration::from_millis(100), 7 * day)?;
        if let Some(a) = &self.kafka_advertise {
            let port = a.rsplit_once(':').and_then(|(h, p)| (!h.is_empty()).then_some(p));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(bad("--kafka-advertise", format!("{a:?} is not host:port")));
            }
        }
        let kafka = self.kafka_listen.map(|listen| KafkaConfig {
            listen,
            advertise: self.kafka_advertise.clone(),
            tls: self.kafka_tls,
        });
        let auth = self.auth_modes()?;
        let client_ca = match (&self.client_ca, &tls) {
            (Some(ca), _) => Some(ca.clone()),
            (None, TlsSource::LocalCa(dir)) => Some(dir.join(CA_FILE)),
            (None, TlsSource::Files { .. }) if auth.mtls => {
                return Err(bad("--client-ca", "--auth mtls with --tls-cert needs the CA client certificates chain to"))
            }
            (None, TlsSource::Files { .. }) => None,
        };
        let max_inflight_bytes =
            size("--max-inflight-bytes", self.max_inflight_bytes, max_frame_bytes as u64, 1 << 40)?;
        Ok(Config {
            metadata_url: self
                .metadata
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("metadata.db").display())),
            object_store_url: self
                .object_store
                .clone()
                .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display())),
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone().or_else(|| std::env::var("AWS_REGION").ok()),
                instance_credentials: self.s3_instance_credentials,
                checksum: self.s3_checksum.parse().map_err(|e| bad("--s3-checksum", e))?,
            },
            data_dir,
            listen: self.listen,
            advertise: self.advertise.clone(),
            kafka,
            metrics_listen: self.metrics_listen,
            tls,
            flush_bytes: size("--flush-bytes", self.flush_bytes, 1, 1 << 30)?,
            flush_interval,
            max_record_bytes,
            max_frame_bytes,
            max_inflight_bytes,
            throttle_wait: self.throttle_wait,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
            cache_dirs: self.cache_dirs.clone(),
            lease_ttl: match self.lease_ttl {
                t if t < Duration::from_millis(500) || t > Duration::from_secs(600) => {
                    return Err(bad("--lease-ttl", "must be between 500ms and 10m"))
                }
                t => t,
            },
            cache_memory: size("--cache-memory", self.cache_memory, 0, 1 << 40)?,
            cache_disk: size("--cache-disk", self.cache_disk, 0, 1 << 44)?,
            max_uploads: match self.max_uploads {
                0 => return Err(bad("--max-uploads", "must be at least 1")),
                n if n > 256 => return Err(bad("--max-uploads", "must be at most 256")),
                n => n,
            },
            recent_cache_bytes: size("--recent-cache-bytes", self.recent_cache_bytes, 0, 1 << 40)?,
            topic_defaults: vec![
                ("--retention-ms", "retention.ms", self.retention_ms.clone()),
                ("--retention-bytes", "retention.bytes", self.retention_bytes.clone()),
                ("--cleanup-policy", "cleanup.policy", self.cleanup_policy.clone()),
                ("--min-compaction-lag-ms", "min.compaction.lag.ms", self.min_compaction_lag_ms.clone()),
                ("--delete-retention-ms", "delete.retention.ms", self.delete_retention_ms.clone()),
                ("--segment-bytes", "segment.bytes", self.segment_bytes.clone()),
            ],
            retention_check_interval: match self.retention_check_interval {
                t if t < Duration::from_millis(100) || t > Duration::from_secs(24 * 3600) => {
                    return Err(bad("--retention-check-interval", "must be between 100ms and 24h"))
                }
                t => t,
            },
            gc_grace,
            gc_interval,
            orphan_age,
            orphan_sweep_interval,
            compaction_min_age: within("--compaction-min-age", self.compaction_min_age, Duration::ZERO, 30 * day)?,
            object_compaction: !self.no_object_compaction,
            auth,
            super_users: self.super_users.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            client_ca,
            auth_refresh: within(
                "--auth-refresh",
                self.auth_refresh,
                Duration::from_millis(100),
                Duration::from_secs(600),
            )?,
        })
    }

    /// `--auth`, checked against where the agent listens: off by default
    /// on loopback, required elsewhere.
    fn auth_modes(&self) -> Result<AuthModes, AgentError> {
        let exposed: Vec<String> = std::iter::once(("--listen", self.listen))
            .chain(self.kafka_listen.map(|k| ("--kafka-listen", k)))
            .filter(|(_, a)| !a.ip().is_loopback())
            .map(|(flag, a)| format!("{flag} {a}"))
            .collect();
        let modes = match &self.auth {
            Some(s) => AuthModes::parse(s).map_err(|e| bad("--auth", e))?,
            None if exposed.is_empty() => AuthModes::default(),
            None => {
                return Err(bad(
                    "--auth",
                    format!(
                        "{} is not a loopback address, so clients must prove who they are: choose --auth token \
                         (and/or mtls, and sasl for Kafka clients), or --auth none to let anyone who reaches it do anything",
                        exposed.join(" and ")
                    ),
                ))
            }
        };
        if modes.sasl && self.kafka_listen.is_none() {
            return Err(bad("--auth", "sasl is for the Kafka listener: give --kafka-listen too"));
        }
        if let Some(kafka) = self.kafka_listen.filter(|_| modes.on()) {
            if !(modes.sasl || (modes.mtls && self.kafka_tls)) {
                return Err(bad(
                    "--auth",
                    "Kafka clients prove who they are with SASL or client certificates: with --kafka-listen, \
                     add sasl (or mtls with --kafka-tls)",
                ));
            }
            if modes.sasl && !self.kafka_tls && !kafka.ip().is_loopback() {
                return Err(bad(
                    "--auth",
                    format!("sasl on --kafka-listen {kafka} would send passwords in the clear: add --kafka-tls"),
                ));
            }
        }
        Ok(modes)
    }
}

/// How clients may prove who they are (`--auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthModes {
    /// QUIC (and the Kafka listener with TLS): client certificates chained
    /// to the agent's client CA.
    pub mtls: bool,
    /// QUIC: bearer tokens.
    pub token: bool,
    /// The Kafka listener: SASL/PLAIN and SCRAM, with tokens as passwords.
    pub sasl: bool,
}

impl AuthModes {
    /// Parses `--auth`: a comma-separated list of `mtls`, `token`, `sasl`, or `none`.
    pub fn parse(s: &str) -> Result<AuthModes, String> {
        let mut m = AuthModes::default();
        let mut none = false;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "none" => none = true,
                "mtls" => m.mtls = true,
                "token" => m.token = true,
                "sasl" => m.sasl = true,
                other => return Err(format!("unknown mode {other:?} (expected mtls, token, sasl or none)")),
            }
        }
        if none && m.on() {
            return Err("none cannot be combined with other modes".into());
        }
        if !none && !m.on() {
            return Err("name at least one mode: mtls, token, sasl, or none".into());
        }
        Ok(m)
    }

    /// Whether any authentication is asked for.
    pub fn on(&self) -> bool {
        self.mtls || self.token || self.sasl
    }
}

impl std::fmt::Display for AuthModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(self.mtls, "mtls"), (self.token, "token"), (self.sasl, "sasl")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

pub use silt_wire::units::{parse_bytes, parse_duration};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_flag() {
        let c = Args::default().validate().unwrap();
        assert_eq!(c.flush_bytes, 8 << 20);
        assert!(c.metadata_url.starts_with("sqlite://"));
        let a = Args { max_record_bytes: 32 << 20, ..Default::default() };
        let err = a.validate().unwrap_err().to_string();
        assert!(err.contains("--max-record-bytes"), "{err}");
        let a = Args { flush_interval: Duration::ZERO, ..Default::default() };
        assert!(a.validate().unwrap_err().to_string().contains("--flush-interval"));
    }

    #[test]
    fn modes_parse_and_refuse_nonsense() {
        assert_eq!(AuthModes::parse("none").unwrap(), AuthModes::default());
        let m = AuthModes::parse("token, mtls").unwrap();
        assert!(m.token && m.mtls && !m.sasl && m.on());
        assert_eq!(m.to_string(), "mtls,token");
        assert!(AuthModes::parse("none,token").is_err());
        assert!(AuthModes::parse("").is_err());
        assert!(AuthModes::parse("kerberos").unwrap_err().contains("kerberos"));
    }

    #[test]
    fn an_agent_off_loopback_needs_an_auth_mode() {
        let exposed: SocketAddr = "0.0.0.0:7447".parse().unwrap();
        let kafka: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let cases: Vec<(Args, Result<&str, &str>)> = vec![
            (Args::default(), Ok("none")),
            (Args { listen: exposed, ..Default::default() }, Err("is not a loopback address")),
            (Args { listen: exposed, auth: Some("none".into()), ..Default::default() }, Ok("none")),
            (Args { listen: exposed, auth: Some("token".into()), ..Default::default() }, Ok("token")),
            (Args { auth: Some("sasl".into()), ..Default::default() }, Err("give --kafka-listen")),
            (
                Args { kafka_listen: Some(kafka), auth: Some("token".into()), ..Default::default() },
                Err("add sasl (or mtls with --kafka-tls)"),
            ),
            (
                Args { kafka_listen: Some(kafka), auth: Some("mtls".into()), ..Default::default() },
                Err("add sasl (or mtls with --kafka-tls)"),
            ),
            (
                Args { kafka_listen: Some(kafka), kafka_tls: true, auth: Some("mtls".into()), ..Default::default() },
                Ok("mtls"),
            ),
            (
                Args { kafka_listen: Some(kafka), auth: Some("token,sasl".into()), ..Default::default() },
                Ok("token,sasl"),
            ),
            (
                Args {
                    kafka_listen: Some("0.0.0.0:9092".parse().unwrap()),
                    auth: Some("token,sasl".into()),
                    ..Default::default()
                },
                Err("add --kafka-tls"),
            ),
            (
                Args {
                    kafka_listen: Some("0.0.0.0:9092".parse().unwrap()),
                    kafka_tls: true,
                    auth: Some("sasl".into()),
                    ..Default::default()
                },
                Ok("sasl"),
            ),
            (
                Args { kafka_listen: Some("0.0.0.0:9092".parse().unwrap()), ..Default::default() },
                Err("--kafka-listen 0.0.0.0:9092 is not a loopback address"),
            ),
            (Args { auth: Some("token,kerberos".into()), ..Default::default() }, Err("kerberos")),
        ];
        for (args, want) in cases {
            match (args.validate(), want) {
                (Ok(c), Ok(modes)) => assert_eq!(c.auth.to_string(), modes),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
                (got, want) => panic!("{:?}: got {:?}, want {want:?}", args.auth, got.map(|c| c.auth)),
            }
        }
    }
}
