//! The agent's session: its registration in the metadata store, renewed
//! every quarter TTL with one write, keeps every lease it holds live (see
//! `silt_metadata::catalog::lease`). This state machine decides when to
//! renew and what the agent's leaders must do when renewals fail.
//!
//! Renewal results and the time go in; actions come out:
//! - while renewals succeed, leaders keep writing;
//! - once the last successful renewal is too old for the leases to be
//!   trusted (sent more than `ttl - margin` ago), leaders stop accepting
//!   writes ([`Action::Fence`]): another agent may be taking over. What
//!   they already accepted still commits, or is fenced by its epoch;
//! - when a renewal succeeds again after that, the agent re-reads the
//!   leases ([`Action::Recheck`]): leaders whose lease is still theirs at
//!   their epoch resume, the others are demoted.
//!
//! Times are milliseconds from the injected clock.

/// What the agent's leaders must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The leases may have lapsed: accept no more writes.
    Fence,
    /// Renewed after a lapse: re-read the leases, resume what is still ours.
    Recheck,
}

#[derive(Debug, Clone)]
pub struct Session {
    ttl_ms: i64,
    renew_every_ms: i64,
    /// How long before the registration's expiry the agent stops trusting it
    /// (clocks differ, and a renewal in flight may land late).
    margin_ms: i64,
    /// When the last successful renewal was sent (its expiry counts from then).
    renewed_at: Option<i64>,
    /// When the last renewal was started.
    attempted_at: Option<i64>,
    /// Leaders were told to stop accepting writes.
    fenced: bool,
}

impl Session {
    pub fn new(ttl_ms: i64) -> Session {
        let ttl_ms = ttl_ms.max(4);
        Session {
            ttl_ms,
            renew_every_ms: ttl_ms / 4,
            margin_ms: ttl_ms / 5,
            renewed_at: None,
            attempted_at: None,
            fenced: false,
        }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// Whether a renewal should be sent at `now`.
    pub fn due(&self, now: i64) -> bool {
        self.attempted_at.is_none_or(|at| now - at >= self.renew_every_ms)
    }

    /// A renewal is being sent at `now`.
    pub fn renewing(&mut self, now: i64) {
        self.attempted_at = Some(now);
    }

    /// Whether the leases can be trusted at `now`.
    pub fn valid(&self, now: i64) -> bool {
        self.renewed_at.is_some_and(|at| now < at + self.ttl_ms - self.margin_ms)
    }

    /// The renewal sent at `sent_at` succeeded; its answer came at `now`.
    pub fn renewed(&mut self, sent_at: i64, now: i64) -> Option<Action> {
        self.renewed_at = Some(self.renewed_at.map_or(sent_at, |at| at.max(sent_at)));
        if self.fenced && self.valid(now) {
            self.fenced = false;
            return Some(Action::Recheck);
        }
        None
    }

    /// Time has passed (a failed renewal is only time passing): fences the
    /// leaders once the leases can no longer be trusted.
    pub fn tick(&mut self, now: i64) -> Option<Action> {
        if self.renewed_at.is_some() && !self.valid(now) && !self.fenced {
            self.fenced = true;
            return Some(Action::Fence);
        }
        None
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event in a session's life.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        /// A renewal sent at the first time succeeded; its answer came at the second.
        Renewed(i64, i64),
        /// The clock reads this (a failed renewal changes nothing else).
        Tick(i64),
    }

    fn run(ttl: i64, events: &[(Event, Option<Action>, bool)]) {
        let mut s = Session::new(ttl);
        for (i, (event, action, valid)) in events.iter().enumerate() {
            let (got, now) = match *event {
                Event::Renewed(sent, now) => (s.renewed(sent, now), now),
                Event::Tick(now) => (s.tick(now), now),
            };
            assert_eq!(got, *action, "step {i}: {event:?}");
            assert_eq!(s.valid(now), *valid, "step {i}: {event:?}");
        }
    }

    #[test]
    fn renewals_keep_the_leases() {
        use Event::*;
        run(
            10_000,
            &[
                (Tick(0), None, false),
                (Renewed(0, 0), None, true),
                (Tick(2_500), None, true),
                (Renewed(2_500, 2_500), None, true),
                (Tick(9_000), None, true),
                (Renewed(9_000, 9_000), None, true),
                (Tick(16_999), None, true),
            ],
        );
    }

    #[test]
    fn renewals_fail_then_succeed() {
        use Event::*;
        run(
            10_000,
            &[
                (Renewed(0, 0), None, true),
                // Renewals at 2.5 s, 5 s and 7.5 s fail: still trusted until 8 s.
                (Tick(7_999), None, true),
                (Tick(8_000), Some(Action::Fence), false),
                (Tick(9_000), None, false),
                // The next renewal succeeds: re-read the leases, then carry on.
                (Renewed(10_000, 10_000), Some(Action::Recheck), true),
                (Tick(12_500), None, true),
            ],
        );
    }

    #[test]
    fn a_late_answer_counts_from_when_it_was_sent() {
        use Event::*;
        run(
            1_000,
            &[
                (Renewed(0, 0), None, true),
                // Sent at 250, answered only at 900: valid until 250 + 800.
                (Renewed(250, 900), None, true),
                (Tick(1_049), None, true),
                (Tick(1_050), Some(Action::Fence), false),
                // An answer that comes too late to trust resumes nothing.
                (Renewed(300, 1_200), None, false),
                (Renewed(1_100, 1_300), Some(Action::Recheck), true),
            ],
        );
    }

    #[test]
    fn renewals_are_due_every_quarter_ttl() {
        let mut s = Session::new(10_000);
        assert!(s.due(0));
        s.renewing(0);
        assert!(!s.due(2_499));
        assert!(s.due(2_500));
        s.renewing(2_500);
        assert!(!s.due(4_000), "a failed attempt waits its turn too");
    }
}
