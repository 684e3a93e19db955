//! Giving a partition up: the owner stops accepting writes, waits until
//! what it accepted is committed, then releases the lease so the next owner
//! takes it at once. A partition that does not drain in time (the object
//! store is down) is released anyway: what it holds uncommitted is fenced by
//! the next owner's epoch, and its producers send it again there.

/// What to do with a partition being handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep waiting for its batches to commit.
    Wait,
    /// Release the lease (`drained`: everything it accepted is committed).
    Release { drained: bool },
}

/// The step for a partition fenced at `fenced_at`, given whether it has
/// drained and the time now; `deadline_ms` bounds the wait.
pub fn step(drained: bool, fenced_at: i64, now: i64, deadline_ms: i64) -> Step {
    if drained {
        Step::Release { drained: true }
    } else if now - fenced_at >= deadline_ms {
        Step::Release { drained: false }
    } else {
        Step::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_table() {
        // (drained, fenced at, now, step)
        let cases = [
            (true, 0, 0, Step::Release { drained: true }),
            (false, 0, 9_999, Step::Wait),
            (true, 0, 5_000, Step::Release { drained: true }),
            (false, 0, 10_000, Step::Release { drained: false }),
        ];
        for (drained, fenced_at, now, want) in cases {
            assert_eq!(step(drained, fenced_at, now, 10_000), want, "drained={drained} now={now}");
        }
    }
}
