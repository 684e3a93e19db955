//! Retention: how far a partition's log start may advance, given its index
//! entries (oldest first), its topic's `retention.ms` and `retention.bytes`,
//! and the time.
//!
//! Whole entries go, oldest first, as Kafka deletes whole segments:
//! - by time, while the entry's newest record (its max timestamp) is older
//!   than `retention.ms`;
//! - by size, while dropping the entry still leaves at least
//!   `retention.bytes` (the log never shrinks below the limit).
//!
//! Compacted topics (`cleanup.policy=compact` alone) are never trimmed.

use super::topic_config::TopicConfig;

/// One index entry, as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: u64,
}

/// Where the log should start: one past the last entry to drop, or None
/// when nothing is due. `total_bytes` is the sum over `spans`.
pub fn trim_to(spans: &[Span], total_bytes: u64, config: &TopicConfig, now_ms: i64) -> Option<i64> {
    if !config.cleanup.delete {
        return None;
    }
    let cutoff = config.retention_ms.map(|ms| now_ms.saturating_sub(ms));
    let mut left = total_bytes;
    let mut to = None;
    for s in spans {
        let old = cutoff.is_some_and(|c| s.max_timestamp < c);
        let over = config.retention_bytes.is_some_and(|limit| left.saturating_sub(s.bytes) >= limit);
        if !(old || over) {
            break;
        }
        left = left.saturating_sub(s.bytes);
        to = Some(s.last_offset + 1);
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::topic_config::Cleanup;

    fn config(retention_ms: Option<i64>, retention_bytes: Option<u64>, delete: bool) -> TopicConfig {
        let mut c = TopicConfig::kafka_defaults(1 << 20);
        c.retention_ms = retention_ms;
        c.retention_bytes = retention_bytes;
        c.cleanup = Cleanup { delete, compact: !delete };
        c
    }

    /// Entries of 100 bytes, ten offsets each, with these max timestamps.
    fn spans(ts: &[i64]) -> Vec<Span> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| Span { last_offset: i as i64 * 10 + 9, max_timestamp: t, bytes: 100 })
            .collect()
    }

    #[test]
    fn drops_the_oldest_entries_past_either_limit() {
        let s = spans(&[1_000, 2_000, 3_000, 2_500]);
        let total = 400;
        // (what, retention.ms, retention.bytes, cleanup has delete, now, trim to)
        type Case = (&'static str, Option<i64>, Option<u64>, bool, i64, Option<i64>);
        let cases: &[Case] = &[
            ("nothing is old yet", Some(5_000), None, true, 5_500, None),
            ("the first is older than retention.ms", Some(5_000), None, true, 6_500, Some(10)),
            ("the first two", Some(5_000), None, true, 7_001, Some(20)),
            // The third entry is not old, so the fourth stays although it is older.
            ("a prefix only", Some(5_000), None, true, 7_600, Some(20)),
            ("everything", Some(5_000), None, true, 8_001, Some(40)),
            ("kept forever", None, None, true, i64::MAX, None),
            ("within retention.bytes", None, Some(400), true, 0, None),
            ("over it: drop while at least the limit stays", None, Some(250), true, 0, Some(10)),
            ("a limit below one entry keeps one", None, Some(1), true, 0, Some(30)),
            ("a zero limit keeps nothing", None, Some(0), true, 0, Some(40)),
            ("both: the further wins", Some(5_000), Some(300), true, 7_001, Some(20)),
            ("both: size alone", Some(5_000), Some(300), true, 0, Some(10)),
            ("both: neither", Some(5_000), Some(350), true, 0, None),
            ("compact topics are not trimmed", Some(0), Some(0), false, 10_000, None),
        ];
        for (what, ms, bytes, delete, now, want) in cases {
            assert_eq!(trim_to(&s, total, &config(*ms, *bytes, *delete), *now), *want, "{what}");
        }
        assert_eq!(trim_to(&[], 0, &config(Some(0), Some(0), true), 10), None, "an empty log");
    }
}
