//! Key compaction (`cleanup.policy=compact`): which part of a partition's
//! log to clean, when, and which records survive.
//!
//! - The cleanable part is the oldest entries up to the first one that is
//!   too new: written less than the compaction minimum age ago, or holding
//!   records newer than `min.compaction.lag.ms`.
//! - It is cleaned when at least half of it is dirty (not yet in a segment
//!   cleaning wrote), as Kafka's `min.cleanable.dirty.ratio` of 0.5: each
//!   cleaning rewrites the clean part too, so waiting for dirt to pile up
//!   keeps the rewriting proportional to what was produced.
//! - A record survives when it is its key's latest in the cleanable part;
//!   a latest record that is a tombstone survives until it is older than
//!   `delete.retention.ms`; records without a key (written before the
//!   topic became compacted) always survive. Offsets never change.
//! - The cleaned entries are rewritten in groups of up to `segment.bytes`
//!   of input, each into one segment.

use std::ops::Range;

/// One index entry, as key compaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub bytes: u64,
    /// When its object was written.
    pub created_ms: i64,
    /// Its newest record's timestamp.
    pub max_timestamp: i64,
    /// It is in a segment cleaning (or object compaction) wrote.
    pub clean: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_age_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    pub segment_bytes: u64,
    /// The most entries one group may replace (one metadata transaction).
    pub max_entries: usize,
}

/// How many of the oldest entries to clean now (None: not due).
pub fn cleanable(entries: &[Entry], policy: &Policy, now_ms: i64) -> Option<usize> {
    let written_before = now_ms.saturating_sub(policy.min_age_ms);
    let records_before = now_ms.saturating_sub(policy.min_lag_ms);
    let n = entries.iter().take_while(|e| e.created_ms <= written_before && e.max_timestamp <= records_before).count();
    let total: u64 = entries[..n].iter().map(|e| e.bytes).sum();
    let dirty: u64 = entries[..n].iter().filter(|e| !e.clean).map(|e| e.bytes).sum();
    (dirty > 0 && dirty * 2 >= total).then_some(n)
}

/// The groups (ranges of `entries[..n]`) to rewrite, each into one segment.
pub fn groups(entries: &[Entry], n: usize, policy: &Policy) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in entries[..n].iter().enumerate() {
        if i > start && (bytes + e.bytes > policy.segment_bytes || i - start >= policy.max_entries) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += e.bytes;
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// Whether a record survives cleaning: `latest` is its key's latest offset
/// in the cleaned part (None: it has no key).
pub fn survives(
    offset: i64,
    latest: Option<i64>,
    tombstone: bool,
    timestamp: i64,
    delete_retention_ms: i64,
    now_ms: i64,
) -> bool {
    match latest {
        None => true,
        Some(l) if l != offset => false,
        Some(_) => !tombstone || timestamp >= now_ms.saturating_sub(delete_retention_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy { min_age_ms: 1_000, min_lag_ms: 0, segment_bytes: 1_000, max_entries: 100 }
    }

    fn e(bytes: u64, created_ms: i64, max_timestamp: i64, clean: bool) -> Entry {
        Entry { bytes, created_ms, max_timestamp, clean }
    }

    #[test]
    fn cleans_the_old_part_once_half_of_it_is_dirty() {
        let now = 10_000;
        // (what, entries, min lag, cleanable)
        type Case = (&'static str, Vec<Entry>, i64, Option<usize>);
        let cases: Vec<Case> = vec![
            ("an empty log", vec![], 0, None),
            ("all dirty and old", vec![e(100, 0, 0, false), e(100, 0, 0, false)], 0, Some(2)),
            ("stops at an entry written too recently", vec![e(100, 0, 0, false), e(100, 9_500, 0, false)], 0, Some(1)),
            ("stops at records newer than the lag", vec![e(100, 0, 0, false), e(100, 0, 9_500, false)], 1_000, Some(1)),
            ("all clean: nothing to do", vec![e(100, 0, 0, true), e(100, 0, 0, true)], 0, None),
            ("less than half dirty: wait", vec![e(300, 0, 0, true), e(100, 0, 0, false)], 0, None),
            ("half dirty: clean all of it", vec![e(200, 0, 0, true), e(200, 0, 0, false)], 0, Some(2)),
            ("dirt too new to count", vec![e(100, 0, 0, true), e(900, 9_900, 0, false)], 0, None),
        ];
        for (what, entries, lag, want) in cases {
            let p = Policy { min_lag_ms: lag, ..policy() };
            assert_eq!(cleanable(&entries, &p, now), want, "{what}");
        }
    }

    #[test]
    fn groups_fill_up_to_a_segment() {
        let es: Vec<Entry> = [400, 400, 400, 100, 900, 50].iter().map(|&b| e(b, 0, 0, false)).collect();
        let got: Vec<(usize, usize)> = groups(&es, 6, &policy()).into_iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, vec![(0, 2), (2, 4), (4, 6)]);
        let got: Vec<(usize, usize)> = groups(&es, 3, &policy()).into_iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, vec![(0, 2), (2, 3)]);
        let few = Policy { max_entries: 2, ..policy() };
        let small: Vec<Entry> = vec![e(1, 0, 0, false); 5];
        let got: Vec<(usize, usize)> = groups(&small, 5, &few).into_iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, vec![(0, 2), (2, 4), (4, 5)]);
        assert!(groups(&small, 0, &few).is_empty());
    }

    #[test]
    fn the_latest_record_of_each_key_survives_and_old_tombstones_go() {
        let day = 86_400_000;
        let now = 10 * day;
        // (what, offset, latest, tombstone, timestamp, survives)
        type Case = (&'static str, i64, Option<i64>, bool, i64, bool);
        let cases: [Case; 6] = [
            ("superseded", 5, Some(9), false, now, false),
            ("latest", 9, Some(9), false, 0, true),
            ("a superseded tombstone", 5, Some(9), true, now, false),
            ("a recent latest tombstone", 9, Some(9), true, now - day / 2, true),
            ("an old latest tombstone", 9, Some(9), true, now - 2 * day, false),
            ("no key", 3, None, false, 0, true),
        ];
        for (what, offset, latest, tombstone, ts, want) in cases {
            assert_eq!(survives(offset, latest, tombstone, ts, day, now), want, "{what}");
        }
    }
}
