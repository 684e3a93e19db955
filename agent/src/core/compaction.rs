//! Object compaction: which runs of a partition's index entries to rewrite
//! into one per-partition segment.
//!
//! Flush objects are small and hold many partitions, so a historical read
//! of one partition touches every object of its time range. Once its
//! entries are older than the minimum age, a partition's consecutive small
//! entries are rewritten, in order, into segments of up to `segment.bytes`.
//!
//! Each byte is rewritten at most once: entries already in a compacted
//! segment, or as large as half a segment, are left alone. So bytes written
//! to the object store stay within twice the bytes produced. A group that
//! could still grow (its run ends at an entry too young) waits until it is
//! half a segment or its first entry is twice the minimum age old, so slow
//! partitions get few, larger segments rather than one per pass; a lone
//! entry is rewritten too once that old, so that no flush object is kept
//! whole for one partition's small run.

use std::ops::Range;

/// One index entry, as compaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub bytes: u64,
    /// When its object was written.
    pub created_ms: i64,
    /// It is in a segment compaction wrote.
    pub compacted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The target (and largest) size of a compacted segment.
    pub segment_bytes: u64,
    /// Entries younger than this are not rewritten.
    pub min_age_ms: i64,
    /// The most entries one group may replace (one metadata transaction).
    pub max_entries: usize,
}

/// The groups of entries (index ranges into `entries`, in order) to rewrite,
/// each into one segment.
pub fn plan(entries: &[Entry], policy: &Policy, now_ms: i64) -> Vec<Range<usize>> {
    let old_enough = now_ms.saturating_sub(policy.min_age_ms);
    let settled = now_ms.saturating_sub(policy.min_age_ms.saturating_mul(2));
    let eligible = |e: &Entry| !e.compacted && e.created_ms <= old_enough && e.bytes < policy.segment_bytes / 2;
    let mut groups = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        if !eligible(&entries[i]) {
            i += 1;
            continue;
        }
        // A group: consecutive eligible entries, up to a segment's bytes.
        let start = i;
        let mut bytes = 0;
        while i < entries.len()
            && eligible(&entries[i])
            && bytes + entries[i].bytes <= policy.segment_bytes
            && i - start < policy.max_entries
        {
            bytes += entries[i].bytes;
            i += 1;
        }
        i = i.max(start + 1);
        // It stopped because it is full, or because the next entry can never
        // join (compacted or large); or the next is too young (or there is
        // none yet), and then the group may still grow.
        let full = bytes >= policy.segment_bytes / 2 || i - start >= policy.max_entries;
        let closed = entries.get(i).is_some_and(|next| {
            next.compacted || next.bytes >= policy.segment_bytes / 2 || bytes + next.bytes > policy.segment_bytes
        });
        let settled = entries[start].created_ms <= settled;
        // One entry alone gains a read nothing, but it still holds its
        // (many-partition) flush object: it goes once settled.
        if (i - start >= 2 && (full || closed)) || settled {
            groups.push(start..i);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 1_000;

    fn policy() -> Policy {
        Policy { segment_bytes: 1_000, min_age_ms: MIN, max_entries: 100 }
    }

    /// Entries of `bytes`, created at `at` (ms), `c` marking compacted ones.
    fn e(bytes: u64, at: i64) -> Entry {
        Entry { bytes, created_ms: at, compacted: false }
    }

    fn c(bytes: u64, at: i64) -> Entry {
        Entry { bytes, created_ms: at, compacted: true }
    }

    #[test]
    fn groups_old_small_entries_into_segments() {
        let now = 10_000;
        // (what, entries, groups as (start, end))
        type Case = (&'static str, Vec<Entry>, Vec<(usize, usize)>);
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![]),
            ("young entries wait", vec![e(100, 9_500), e(100, 9_600)], vec![]),
            ("one entry alone waits while it could still grow", vec![e(100, 8_500), e(100, 9_900)], vec![]),
            ("...and goes once settled, to free its flush object", vec![e(100, 0), e(100, 9_900)], vec![(0, 1)]),
            ("one entry between segments, once settled", vec![c(900, 0), e(100, 7_000), c(900, 0)], vec![(1, 2)]),
            (
                "old entries up to a segment's bytes, then the next group",
                vec![e(400, 0), e(400, 0), e(400, 0), e(400, 0), e(100, 0)],
                vec![(0, 2), (2, 5)],
            ),
            (
                "compacted and large entries stay and split runs (old lone entries go alone)",
                vec![e(100, 0), c(900, 0), e(100, 0), e(600, 0), e(100, 0), e(100, 0)],
                vec![(0, 1), (2, 3), (4, 6)],
            ),
            (
                "a group that may grow waits while it is young and small",
                vec![e(100, 8_500), e(100, 8_600), e(100, 9_900)],
                vec![],
            ),
            (
                "...until its first entry is twice the minimum age old",
                vec![e(100, 7_000), e(100, 8_600), e(100, 9_900)],
                vec![(0, 2)],
            ),
            ("...or half a segment", vec![e(300, 8_500), e(300, 8_600), e(100, 9_900)], vec![(0, 2)]),
            (
                "a run that ends at a compacted entry cannot grow",
                vec![e(100, 8_500), e(100, 8_600), c(100, 0)],
                vec![(0, 2)],
            ),
        ];
        for (what, entries, want) in cases {
            let got: Vec<(usize, usize)> =
                plan(&entries, &policy(), now).into_iter().map(|r| (r.start, r.end)).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn a_group_fits_one_transaction() {
        let entries = vec![e(1, 0); 10];
        let p = Policy { max_entries: 4, ..policy() };
        assert_eq!(plan(&entries, &p, 10_000), vec![0..4, 4..8, 8..10]);
    }

    #[test]
    fn each_byte_is_rewritten_at_most_once() {
        // Compacting what a plan names, again and again, as entries arrive:
        // the bytes rewritten never exceed the bytes produced.
        let p = Policy { segment_bytes: 1_000, min_age_ms: MIN, max_entries: 50 };
        let mut log: Vec<Entry> = Vec::new();
        let (mut produced, mut rewritten) = (0u64, 0u64);
        for now in (0..200_000).step_by(250) {
            let bytes = 37 + (now as u64 * 7919) % 200;
            log.push(e(bytes, now));
            produced += bytes;
            for g in plan(&log, &p, now).into_iter().rev() {
                let total: u64 = log[g.clone()].iter().map(|x| x.bytes).sum();
                rewritten += total;
                log.splice(g, [c(total, now)]);
            }
        }
        assert!(rewritten <= produced, "rewrote {rewritten} of {produced}");
        let old: Vec<&Entry> = log.iter().filter(|x| x.created_ms < 200_000 - 3 * MIN).collect();
        assert!(old.iter().all(|x| x.compacted), "old entries all compacted");
        assert!(old.len() <= produced as usize / 400, "{} segments for {produced} bytes", old.len());
    }
}
