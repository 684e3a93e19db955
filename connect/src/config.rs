//! Connector configs: TOML with `name`, `type` and the type's own keys,
//! checked whole before anything is stored or run. A missing, unknown or
//! bad key is refused by name.
//!
//! | type | keys |
//! |---|---|
//! | `file` (source) | `path` (a file or a glob), `topic` |
//! | `file` (sink) | `topics` (a topic or a list), `path` |
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
        }
    }

    /// The topics a sink reads (none for a source).
    pub fn sink_topics(&self) -> &[String] {
        match self {
            Kind::FileSink(s) => &s.topics,
            Kind::FileSource(_) => &[],
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
        let typo = self.table.keys().find(|k| !self.taken.contains(*k) && distance(k, key) <= 2);
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

/// Edit distance, for typo hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn topic_name(key: &str, t: &str) -> Result<(), ConfigError> {
    let ok = t.len() <= 249 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(bad(key, format!("{t:?} is not a topic name (letters, digits, '.', '_' and '-')"))),
    }
}

/// The types a config may name.
pub const TYPES: &[&str] = &["file", "file-source", "file-sink"];

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
    let topics = keys.strings("topics")?;
    for t in &topics {
        topic_name("topics", t)?;
    }
    let path = PathBuf::from(keys.string("path")?);
    Ok(Kind::FileSink(FileSink { topics, path }))
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
        ];
        for (text, name, want) in cases {
            let err = ConnectorConfig::parse(text, *name).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }
}
