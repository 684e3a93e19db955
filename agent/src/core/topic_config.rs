//! Topic configs: the keys a topic may override, with Kafka's names and
//! meanings, how their values parse, and a topic's effective settings (its
//! overrides over the agents' defaults).
//!
//! Values are plain integers or words, as in Kafka. A value is checked
//! whole before anything is stored: an unknown key, a malformed value or
//! one out of range is an error naming the key.

use std::fmt;

/// What happens to old records of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    /// Records older than `retention.ms` or beyond `retention.bytes` go.
    pub delete: bool,
    /// Only the latest record of each key stays.
    pub compact: bool,
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        })
    }
}

/// A topic's effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// How long records are kept, by their batch's max timestamp; None: forever.
    pub retention_ms: Option<i64>,
    /// The most bytes a partition keeps; None: no limit.
    pub retention_bytes: Option<u64>,
    pub cleanup: Cleanup,
    /// The largest record (key, value and headers) the topic accepts.
    pub max_message_bytes: u32,
    /// Records younger than this are never compacted away.
    pub min_compaction_lag_ms: i64,
    /// How long a tombstone survives compaction.
    pub delete_retention_ms: i64,
    /// The target size of compacted per-partition segments.
    pub segment_bytes: u64,
}

/// Every key a topic may set.
pub const KEYS: [&str; 7] = [
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "max.message.bytes",
    "min.compaction.lag.ms",
    "delete.retention.ms",
    "segment.bytes",
];

pub const MIN_SEGMENT_BYTES: u64 = 1024;
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Why a config is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn refuse(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), reason: reason.into() }
}

impl TopicConfig {
    /// Kafka's defaults, with `max_message_bytes` the agent's record limit.
    pub fn kafka_defaults(max_record_bytes: u32) -> TopicConfig {
        TopicConfig {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup: Cleanup { delete: true, compact: false },
            max_message_bytes: max_record_bytes,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 24 * 3600 * 1000,
            segment_bytes: 64 << 20,
        }
    }

    /// Applies one `key=value`; `max_record_bytes` bounds `max.message.bytes`.
    pub fn set(&mut self, key: &str, value: &str, max_record_bytes: u32) -> Result<(), ConfigError> {
        let int = |what: &str| -> Result<i64, ConfigError> {
            value.trim().parse::<i64>().map_err(|_| refuse(key, format!("{value:?} is not a whole number ({what})")))
        };
        match key {
            "retention.ms" => {
                self.retention_ms = match int("milliseconds, or -1 to keep records forever")? {
                    -1 => None,
                    n if n > 0 => Some(n),
                    n => {
                        return Err(refuse(
                            key,
                            format!("{n}: use -1 to keep records forever, or a positive number of milliseconds"),
                        ))
                    }
                }
            }
            "retention.bytes" => {
                self.retention_bytes = match int("bytes per partition, or -1 for no limit")? {
                    -1 => None,
                    n if n > 0 => Some(n as u64),
                    n => return Err(refuse(key, format!("{n}: use -1 for no limit, or a positive number of bytes"))),
                }
            }
            "cleanup.policy" => {
                let mut c = Cleanup { delete: false, compact: false };
                for word in value.split(',').map(str::trim) {
                    match word {
                        "delete" => c.delete = true,
                        "compact" => c.compact = true,
                        other => {
                            return Err(refuse(key, format!("{other:?}: expected delete, compact, or compact,delete")))
                        }
                    }
                }
                self.cleanup = c;
            }
            "max.message.bytes" => {
                self.max_message_bytes = match int("bytes")? {
                    n if n >= 1 && n <= i64::from(max_record_bytes) => n as u32,
                    n => {
                        return Err(refuse(
                            key,
                            format!("{n} is outside 1..={max_record_bytes} (the agents' --max-record-bytes)"),
                        ))
                    }
                }
            }
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = match int("milliseconds")? {
                    n if n >= 0 => n,
                    n => return Err(refuse(key, format!("{n} is negative"))),
                }
            }
            "delete.retention.ms" => {
                self.delete_retention_ms = match int("milliseconds")? {
                    n if n >= 0 => n,
                    n => return Err(refuse(key, format!("{n} is negative"))),
                }
            }
            "segment.bytes" => {
                self.segment_bytes = match int("bytes")? {
                    n if (MIN_SEGMENT_BYTES as i64..=MAX_SEGMENT_BYTES as i64).contains(&n) => n as u64,
                    n => return Err(refuse(key, format!("{n} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"))),
                }
            }
            other => {
                return Err(refuse(other, format!("unknown config key (known: {})", KEYS.join(", "))));
            }
        }
        Ok(())
    }

    /// The settings a topic with these overrides has; every override must
    /// be valid and named once.
    pub fn with(&self, overrides: &[(String, String)], max_record_bytes: u32) -> Result<TopicConfig, ConfigError> {
        let mut out = *self;
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in overrides {
            if seen.contains(&k.as_str()) {
                return Err(refuse(k, "given twice"));
            }
            seen.push(k);
            out.set(k, v, max_record_bytes)?;
        }
        Ok(out)
    }

    /// The effective settings of a stored topic. Overrides were checked when
    /// they were set; one that no longer parses (the agents' record limit
    /// went down since) keeps the default, with a warning.
    pub fn effective(&self, overrides: &[(String, String)], max_record_bytes: u32) -> TopicConfig {
        let mut out = *self;
        for (k, v) in overrides {
            if let Err(e) = out.set(k, v, max_record_bytes) {
                tracing::warn!(error = %e, "a stored topic config is not valid here; using the default");
            }
        }
        out
    }

    /// Every setting as `key=value`, in [`KEYS`] order.
    pub fn entries(&self) -> Vec<(String, String)> {
        let n = |v: Option<i64>| v.map_or("-1".to_string(), |v| v.to_string());
        let values = [
            n(self.retention_ms),
            n(self.retention_bytes.map(|b| b as i64)),
            self.cleanup.to_string(),
            self.max_message_bytes.to_string(),
            self.min_compaction_lag_ms.to_string(),
            self.delete_retention_ms.to_string(),
            self.segment_bytes.to_string(),
        ];
        KEYS.iter().zip(values).map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    type Check = fn(&TopicConfig) -> bool;

    #[test]
    fn good_values_parse() {
        let d = TopicConfig::kafka_defaults(1 << 20);
        let cases: &[(&str, &str, Check)] = &[
            ("retention.ms", "1000", |c| c.retention_ms == Some(1000)),
            ("retention.ms", "-1", |c| c.retention_ms.is_none()),
            ("retention.bytes", "4096", |c| c.retention_bytes == Some(4096)),
            ("retention.bytes", "-1", |c| c.retention_bytes.is_none()),
            ("cleanup.policy", "compact", |c| c.cleanup.compact && !c.cleanup.delete),
            ("cleanup.policy", "compact,delete", |c| c.cleanup.compact && c.cleanup.delete),
            ("cleanup.policy", "delete", |c| !c.cleanup.compact && c.cleanup.delete),
            ("max.message.bytes", "1048576", |c| c.max_message_bytes == 1 << 20),
            ("min.compaction.lag.ms", "0", |c| c.min_compaction_lag_ms == 0),
            ("delete.retention.ms", "5", |c| c.delete_retention_ms == 5),
            ("segment.bytes", "1024", |c| c.segment_bytes == 1024),
        ];
        for (k, v, check) in cases {
            let c = d.with(&[kv(k, v)], 1 << 20).unwrap();
            assert!(check(&c), "{k}={v} gave {c:?}");
            // What `entries` shows parses back to the same settings.
            assert_eq!(d.with(&c.entries(), 1 << 20).unwrap(), c);
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let d = TopicConfig::kafka_defaults(1 << 20);
        let cases = [
            ("retention.ms", "0"),
            ("retention.ms", "-2"),
            ("retention.ms", "1h"),
            ("retention.bytes", "0"),
            ("cleanup.policy", "remove"),
            ("cleanup.policy", ""),
            ("max.message.bytes", "0"),
            ("max.message.bytes", "2097152"),
            ("min.compaction.lag.ms", "-1"),
            ("delete.retention.ms", "x"),
            ("segment.bytes", "100"),
            ("segment.bytes", "2147483648"),
            ("retention.hours", "1"),
        ];
        for (k, v) in cases {
            let e = d.with(&[kv(k, v)], 1 << 20).unwrap_err();
            assert_eq!(e.key, k, "{k}={v}: {e}");
        }
        let twice = d.with(&[kv("retention.ms", "1"), kv("retention.ms", "2")], 1 << 20).unwrap_err();
        assert!(twice.reason.contains("twice"), "{twice}");
    }

    #[test]
    fn stored_values_that_no_longer_fit_keep_the_default() {
        let d = TopicConfig::kafka_defaults(1000);
        let c = d.effective(&[kv("max.message.bytes", "5000"), kv("retention.ms", "9")], 1000);
        assert_eq!(c.max_message_bytes, 1000);
        assert_eq!(c.retention_ms, Some(9));
    }
}
