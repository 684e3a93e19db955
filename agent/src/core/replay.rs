//! Which write-ahead-log entries a new owner replays: those that continue
//! the partition's committed log, from its high watermark on, without gaps.
//! Entries already committed are dropped; so is everything after a gap,
//! which was never acknowledged locally (the WAL acknowledges a batch only
//! when nothing before it bypassed the log).

/// The entries to keep (by index into `entries`, which are `(base offset,
/// last offset)` in offset order) and the next offset after them.
pub fn plan(entries: &[(i64, i64)], high_watermark: i64) -> (Vec<usize>, i64) {
    let mut next = high_watermark;
    let mut keep = Vec::new();
    for (i, &(base, last)) in entries.iter().enumerate() {
        if last < next || base != next {
            continue;
        }
        next = last + 1;
        keep.push(i);
    }
    (keep, next)
}

/// The first entry that starts past the log's end (a gap), if any.
pub fn gap(entries: &[(i64, i64)], next: i64) -> Option<i64> {
    entries.iter().map(|&(base, _)| base).find(|&base| base > next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries, high watermark, entries kept, next offset.
    type Case = (&'static [(i64, i64)], i64, &'static [usize], i64);

    #[test]
    fn replay_table() {
        let cases: [Case; 5] = [
            (&[], 7, &[], 7),
            (&[(0, 4), (5, 9), (10, 10)], 0, &[0, 1, 2], 11),
            (&[(0, 4), (5, 9), (10, 10)], 5, &[1, 2], 11),
            (&[(0, 4), (5, 9)], 10, &[], 10),
            // A gap: 10..12 never reached the WAL; what follows is not replayed.
            (&[(5, 9), (13, 15), (16, 16)], 5, &[0], 10),
        ];
        for (entries, hw, kept, next) in cases {
            assert_eq!(plan(entries, hw), (kept.to_vec(), next), "{entries:?} from {hw}");
        }
        assert_eq!(gap(&[(5, 9), (13, 15)], 10), Some(13));
        assert_eq!(gap(&[(5, 9)], 10), None);
    }
}
