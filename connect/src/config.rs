//! Connector configs: TOML with `name`, `type` and the type's own keys,
//! checked whole before anything is stored or run. A missing, unknown or
//! bad key is refused by name.
//!
//! | type | keys |
//! |---|---|
//! | `file` (source) | `path` (a file or a glob), `topic` |
//! | `file` (sink) | `topics` (a topic or a list), `path` |
//! | `postgres` (source) | `url`, `tables`, `topic-prefix`, `partitions` (1), `slot` and `publication` (`silt_NAME`) |
//! | `http` (sink) | `topics`, `url`, `dead-letter-topic` (optional) |
//! | `s3` (sink) | `topics`, `bucket`, `prefix`, `endpoint`, `region`, `flush-bytes`, `flush-interval`, `compression`, `checksum` (all but `topics` and `bucket` optional) |
//!
//! A `file` connector with `topic` is a source, with `topics` a sink
//! (`file-source` and `file-sink` say it outright).

use std::collections::BTreeSet;
use std::path::PathBuf;

use toml::{Table, Value};

/// Why a config is refused: the key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), reason: reason.into() }
}

/// A checked connector config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    FileSource(FileSource),
    FileSink(FileSink),
    HttpSink(HttpSink),
    S3Sink(S3Sink),
    Postgres(PostgresSource),
}

/// Change data capture from PostgreSQL through logical replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSource {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    /// `schema.table` (or `table`, in `public`).
    pub tables: Vec<String>,
    /// Changes of `schema.table` go to `PREFIX.schema.table`.
    pub topic_prefix: String,
    /// Partitions of the topics it creates.
    pub partitions: u32,
    pub slot: String,
    pub publication: String,
}

/// POSTs batches of records as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSink {
    pub topics: Vec<String>,
    pub url: String,
    /// Where records the endpoint refuses go (none: the task fails on one).
    pub dead_letter_topic: Option<String>,
}

/// Writes JSON-lines objects per partition to an S3-compatible store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Sink {
    pub topics: Vec<String>,
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub flush_bytes: usize,
    pub flush_interval: std::time::Duration,
    pub zstd: bool,
    /// PUTs prove their bytes with a SHA-256 in the signature (`sha256`)
    /// rather than a CRC-64/NVME the store checks (`crc64nvme`, the default).
    pub signed_payload: bool,
}

/// Tails a file (or every file a glob matches), one record per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// A path, or a glob (`*` and `?` in its last component).
    pub path: String,
    pub topic: String,
}

/// Appends each record's value, and a newline, to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    pub topics: Vec<String>,
    pub path: PathBuf,
}

impl Kind {
    /// The type's name, as `connector list` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::FileSource(_) => "file-source",
            Kind::FileSink(_) => "file-sink",
            Kind::HttpSink(_) => "http",
            Kind::S3Sink(_) => "s3",
            Kind::Postgres(_) => "postgres",
        }
    }

    /// The topics a sink reads (none for a source).
    pub fn sink_topics(&self) -> &[String] {
        match self {
            Kind::FileSink(s) => &s.topics,
            Kind::HttpSink(s) => &s.topics,
            Kind::S3Sink(s) => &s.topics,
            Kind::FileSource(_) | Kind::Postgres(_) => &[],
        }
    }
}

/// The keys of a table, each taken once; what is left is unknown.
struct Keys {
    table: Table,
    taken: BTreeSet<String>,
}

impl Keys {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.taken.insert(key.to_string());
        self.table.get(key).cloned()
    }

    fn string(&mut self, key: &str) -> Result<String, ConfigError> {
        match self.take(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(bad(key, "must not be empty")),
            Some(other) => Err(bad(key, format!("must be a string, not a {}", other.type_str()))),
            None => Err(self.missing(key)),
        }
    }

    /// A missing key, with a hint when the table has a key a typo away.
    fn missing(&self, key: &str) -> ConfigError {
        let typo =
            self.table.keys().find(|k| !self.taken.contains(*k) && silt_client::units::edit_distance(k, key) <= 2);
        match typo {
            Some(t) => bad(key, format!("is missing (is `{t}` a typo of it?)")),
            None => bad(key, "is missing"),
        }
    }

    fn opt_string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.table.contains_key(key) {
            true => self.string(key).map(Some),
            false => Ok(None),
        }
    }

    /// A string, or a non-empty list of strings.
    fn strings(&mut self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.take(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(vec![s]),
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(s),
                    _ => Err(bad(key, "must list non-empty strings")),
                })
                .collect(),
            Some(_) => Err(bad(key, "must be a topic name or a non-empty list of them")),
            None => Err(self.missing(key)),
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !self.taken.contains(*k)) {
            Some(k) => Err(bad(k, "is not a key of this connector type")),
            None => Ok(()),
        }
    }
}

fn topic_name(key: &str, t: &str) -> Result<(), ConfigError> {
    let ok = t.len() <= 249 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(bad(key, format!("{t:?} is not a topic name (letters, digits, '.', '_' and '-')"))),
    }
}

/// The types a config may name.
pub const TYPES: &[&str] = &["file", "file-source", "file-sink", "http", "s3", "postgres"];

impl ConnectorConfig {
    /// Parses and checks a config. `name` is the connector's name when it
    /// is given apart from the file (`connector create NAME`): a `name` in
    /// the file must then agree.
    pub fn parse(text: &str, name: Option<&str>) -> Result<ConnectorConfig, ConfigError> {
        let table: Table =
            text.parse().map_err(|e: toml::de::Error| bad("", format!("not valid TOML: {}", e.message())))?;
        let mut keys = Keys { table, taken: BTreeSet::new() };
        let in_file = keys.opt_string("name")?;
        let name = match (name, in_file) {
            (Some(given), Some(file)) if given != file => {
                return Err(bad("name", format!("the file says {file:?}, the command {given:?}")))
            }
            (Some(given), _) => given.to_string(),
            (None, Some(file)) => file,
            (None, None) => return Err(bad("name", "is missing")),
        };
        if name.is_empty()
            || name.len() > 249
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(bad("name", format!("{name:?} is not a connector name (letters, digits, '.', '_' and '-')")));
        }
        let kind = keys.string("type")?;
        let kind = match kind.as_str() {
            "file" if keys.table.contains_key("topic") && keys.table.contains_key("topics") => {
                return Err(bad("topics", "a file connector has `topic` (a source) or `topics` (a sink), not both"))
            }
            "file" if keys.table.contains_key("topics") => file_sink(&mut keys)?,
            "file" | "file-source" => file_source(&mut keys)?,
            "file-sink" => file_sink(&mut keys)?,
            "http" => http_sink(&mut keys)?,
            "s3" => s3_sink(&mut keys)?,
            "postgres" => postgres(&mut keys, &name)?,
            other => return Err(bad("type", format!("unknown type {other:?} (known: {})", TYPES.join(", ")))),
        };
        keys.finish()?;
        Ok(ConnectorConfig { name, kind })
    }
}

fn file_source(keys: &mut Keys) -> Result<Kind, ConfigError> {
    let path = keys.string("path")?;
    let topic = keys.string("topic")?;
    topic_name("topic", &topic)?;
    if path.rsplit_once('/').is_some_and(|(dir, _)| dir.contains(['*', '?', '['])) {
        return Err(bad("path", "a glob may only match file names, not folders"));
    }
    Ok(Kind::FileSource(FileSource { path, topic }))
}

fn file_sink(keys: &mut Keys) -> Result<Kind, ConfigError> {
    let topics = topics(keys)?;
    let path = PathBuf::from(keys.string("path")?);
    Ok(Kind::FileSink(FileSink { topics, path }))
}

fn topics(keys: &mut Keys) -> Result<Vec<String>, ConfigError> {
    let topics = keys.strings("topics")?;
    for t in &topics {
        topic_name("topics", t)?;
    }
    Ok(topics)
}

fn url(key: &str, u: &str) -> Result<(), ConfigError> {
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(bad(key, format!("{u:?} is not an http:// or https:// URL"))),
    }
}

fn postgres(keys: &mut Keys, name: &str) -> Result<Kind, ConfigError> {
    let url = keys.string("url")?;
    crate::postgres_source::parse_url(&url).map_err(|e| bad("url", e))?;
    let tables = keys.strings("tables")?;
    for t in &tables {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let (schema, table) = crate::postgres_source::split_table(t);
        if !ok(&schema) || !ok(&table) {
            return Err(bad("tables", format!("{t:?} is not schema.table (letters, digits and '_')")));
        }
    }
    let topic_prefix = keys.string("topic-prefix")?;
    topic_name("topic-prefix", &topic_prefix)?;
    let partitions = match keys.take("partitions") {
        None => 1,
        Some(Value::Integer(n)) if (1..=10_000).contains(&n) => n as u32,
        Some(_) => return Err(bad("partitions", "must be a number from 1 to 10000")),
    };
    let default_name = format!("silt_{}", name.replace(['-', '.'], "_").to_ascii_lowercase());
    let ident = |key: &str, v: &str| -> Result<(), ConfigError> {
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(bad(key, format!("{v:?} must be lowercase letters, digits and '_' (at most 63)")))
        }
    };
    let slot = keys.opt_string("slot")?.unwrap_or_else(|| default_name.clone());
    ident("slot", &slot)?;
    let publication = keys.opt_string("publication")?.unwrap_or(default_name);
    ident("publication", &publication)?;
    Ok(Kind::Postgres(PostgresSource { url, tables, topic_prefix, partitions, slot, publication }))
}

fn http_sink(keys: &mut Keys) -> Result<Kind, ConfigError> {
    let topics = topics(keys)?;
    let u = keys.string("url")?;
    url("url", &u)?;
    let dead_letter_topic = keys.opt_string("dead-letter-topic")?;
    if let Some(t) = &dead_letter_topic {
        topic_name("dead-letter-topic", t)?;
        if topics.contains(t) {
            return Err(bad("dead-letter-topic", "must not be one of the topics the sink reads"));
        }
    }
    Ok(Kind::HttpSink(HttpSink { topics, url: u, dead_letter_topic }))
}

fn s3_sink(keys: &mut Keys) -> Result<Kind, ConfigError> {
    let topics = topics(keys)?;
    let bucket = keys.string("bucket")?;
    let prefix = keys.opt_string("prefix")?.unwrap_or_default();
    let endpoint = keys.opt_string("endpoint")?;
    if let Some(e) = &endpoint {
        url("endpoint", e)?;
    }
    let region = keys.opt_string("region")?;
    let flush_bytes = match keys.take("flush-bytes") {
        None => 16 << 20,
        Some(Value::Integer(n)) if n > 0 => n as u64,
        Some(Value::String(s)) => silt_client::units::parse_bytes(&s).map_err(|e| bad("flush-bytes", e))?,
        Some(_) => return Err(bad("flush-bytes", "must be a size like \"16MiB\" or a positive number of bytes")),
    };
    if !(1024..=1 << 30).contains(&flush_bytes) {
        return Err(bad("flush-bytes", "must be between 1KiB and 1GiB"));
    }
    let flush_interval = match keys.opt_string("flush-interval")? {
        None => std::time::Duration::from_secs(60),
        Some(s) => silt_client::units::parse_duration(&s).map_err(|e| bad("flush-interval", e))?,
    };
    if flush_interval.is_zero() || flush_interval > std::time::Duration::from_secs(24 * 3600) {
        return Err(bad("flush-interval", "must be between 1ms and 24h"));
    }
    let zstd = match keys.opt_string("compression")?.as_deref() {
        None | Some("none") => false,
        Some("zstd") => true,
        Some(other) => return Err(bad("compression", format!("{other:?} is not none or zstd"))),
    };
    let signed_payload = match keys.opt_string("checksum")?.as_deref() {
        None | Some("crc64nvme") => false,
        Some("sha256") => true,
        Some(other) => return Err(bad("checksum", format!("{other:?} is not crc64nvme or sha256"))),
    };
    Ok(Kind::S3Sink(S3Sink {
        topics,
        bucket,
        prefix,
        endpoint,
        region,
        flush_bytes: flush_bytes as usize,
        flush_interval,
        zstd,
        signed_payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_and_refusals_name_their_key() {
        let source = ConnectorConfig::parse(
            "name = \"tail\"\ntype = \"file\"\npath = \"/var/log/*.log\"\ntopic = \"logs\"\n",
            None,
        );
        assert_eq!(
            source,
            Ok(ConnectorConfig {
                name: "tail".into(),
                kind: Kind::FileSource(FileSource { path: "/var/log/*.log".into(), topic: "logs".into() })
            })
        );
        let sink =
            ConnectorConfig::parse("type = \"file\"\ntopics = [\"a\", \"b\"]\npath = \"/tmp/out\"\n", Some("out"));
        assert_eq!(
            sink,
            Ok(ConnectorConfig {
                name: "out".into(),
                kind: Kind::FileSink(FileSink { topics: vec!["a".into(), "b".into()], path: "/tmp/out".into() })
            })
        );
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("type = \"file\"\npath = \"x\"\ntopic = \"t\"\n", None, "key `name`: is missing"),
            ("name = \"c\"\npath = \"x\"\ntopic = \"t\"\n", None, "key `type`: is missing"),
            ("name = \"c\"\ntype = \"ftp\"\n", None, "key `type`: unknown type \"ftp\""),
            ("name = \"c\"\ntype = \"file\"\ntopic = \"t\"\n", None, "key `path`: is missing"),
            (
                "name = \"c\"\ntype = \"file\"\ntopik = \"t\"\npath = \"x\"\n",
                None,
                "key `topic`: is missing (is `topik` a typo of it?)",
            ),
            (
                "name = \"c\"\ntype = \"file\"\npath = \"x\"\ntopic = \"t\"\nspeed = 3\n",
                None,
                "key `speed`: is not a key",
            ),
            ("name = \"c\"\ntype = \"file\"\npath = 3\ntopic = \"t\"\n", None, "key `path`: must be a string"),
            (
                "name = \"c\"\ntype = \"file\"\npath = \"x\"\ntopic = \"a b\"\n",
                None,
                "key `topic`: \"a b\" is not a topic name",
            ),
            (
                "name = \"c\"\ntype = \"file-sink\"\npath = \"x\"\ntopics = []\n",
                None,
                "key `topics`: must be a topic name",
            ),
            (
                "name = \"c\"\ntype = \"file\"\npath = \"x\"\ntopic = \"a\"\ntopics = \"b\"\n",
                None,
                "key `topics`: a file connector",
            ),
            ("name = \"c\"\ntype = \"file\"\npath = \"/a/*/x\"\ntopic = \"t\"\n", None, "key `path`: a glob may only"),
            ("name = \"c\"\n", Some("d"), "key `name`: the file says \"c\", the command \"d\""),
            ("name = [\n", None, "not valid TOML"),
            (
                "name = \"c\"\ntype = \"http\"\ntopics = \"t\"\nurl = \"ftp://x\"\n",
                None,
                "key `url`: \"ftp://x\" is not an http",
            ),
            (
                "name = \"c\"\ntype = \"http\"\ntopics = \"t\"\nurl = \"http://x\"\ndead-letter-topic = \"t\"\n",
                None,
                "key `dead-letter-topic`: must not be one",
            ),
            ("name = \"c\"\ntype = \"s3\"\ntopics = \"t\"\n", None, "key `bucket`: is missing"),
            (
                "name = \"c\"\ntype = \"s3\"\ntopics = \"t\"\nbucket = \"b\"\nflush-bytes = \"lots\"\n",
                None,
                "key `flush-bytes`: \"lots\" is not a size",
            ),
            (
                "name = \"c\"\ntype = \"s3\"\ntopics = \"t\"\nbucket = \"b\"\nflush-interval = \"5y\"\n",
                None,
                "key `flush-interval`: unknown duration unit",
            ),
            (
                "name = \"c\"\ntype = \"s3\"\ntopics = \"t\"\nbucket = \"b\"\ncompression = \"lz4\"\n",
                None,
                "key `compression`: \"lz4\" is not",
            ),
            (
                "name = \"c\"\ntype = \"s3\"\ntopics = \"t\"\nbucket = \"b\"\nchecksum = \"md5\"\n",
                None,
                "key `checksum`: \"md5\" is not crc64nvme or sha256",
            ),
        ];
        for (text, name, want) in cases {
            let err = ConnectorConfig::parse(text, *name).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }
}
