//! Object collection's one judgement that is not a metadata lookup: which
//! objects a bucket sweep checks.
//!
//! The sweep checks objects created in `[horizon, now - orphan age)`, then
//! moves the horizon to the window's end, so every object is checked once,
//! after it is old enough that no flusher still tries to commit it.

use std::ops::Range;

/// The creation times (ms) the next sweep checks, or None when the horizon
/// is already there.
pub fn sweep_window(horizon_ms: i64, now_ms: i64, orphan_age_ms: i64) -> Option<Range<i64>> {
    let end = now_ms.saturating_sub(orphan_age_ms);
    (end > horizon_ms).then_some(horizon_ms..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_an_orphan_age_ago_and_starts_at_the_horizon() {
        let cases = [
            ("first sweep: everything old enough", 0, 10_000, 3_000, Some(0..7_000)),
            ("from the horizon", 5_000, 10_000, 3_000, Some(5_000..7_000)),
            ("nothing new is old enough", 7_000, 10_000, 3_000, None),
            ("a clock behind the horizon", 9_000, 10_000, 3_000, None),
        ];
        for (what, horizon, now, age, want) in cases {
            assert_eq!(sweep_window(horizon, now, age), want, "{what}");
        }
    }
}
