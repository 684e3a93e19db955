//! One partition's batches between sending and settling: a pure state
//! machine. The driver sends batches and waits for answers; this decides
//! what each answer or error means: acknowledge, keep for the commit, send
//! everything unsettled again (renumbered, if the owner knows nothing of the
//! producer), or give up.
//!
//! A batch is *answered* when its records are acknowledged to the caller
//! (or failed), and *settled* when it can no longer need sending again:
//! both at once, except with acks=local, where it settles once the agent
//! has also committed it. Batches stay, settled or not, while an older one
//! is unsettled, so the flights span at most `max_in_flight` consecutive
//! batches, all of which an owner remembers.

use std::collections::VecDeque;

use bytes::Bytes;
use silt_wire::{advance_sequence, restamp_producer, ErrorCode};

use crate::error::ClientError;

/// What an agent said about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// Acknowledged and committed (acks=durable or none), at this base offset.
    Durable(i64),
    /// Acknowledged from the agent's write-ahead log (acks=local); the commit follows.
    Local(i64),
    /// The acks=local batch is committed too.
    Committed,
}

/// What the driver must do for the flights' callers.
#[derive(Debug)]
pub(crate) enum Effect<S> {
    /// Tell the batch's records how it went (`Ok(base offset)`).
    Resolve { slot: S, records: u64, bytes: usize, outcome: Result<i64, ClientError> },
    /// Bytes kept for their commit (acks=local) changed by this much.
    Kept(isize),
    /// The number of flights changed by this much.
    Flights(isize),
}

/// What comes next after an event.
#[derive(Debug)]
pub(crate) enum Next {
    /// Carry on.
    Continue,
    /// Send every unsettled batch again, in order (the error that caused it).
    Resend(ClientError),
}

/// In a resend round, what to do after the batch at position `n` failed.
#[derive(Debug)]
pub(crate) enum Round {
    /// It needs no sending (committed long ago); go on with the next.
    Settled,
    /// Stop this round; another one sends them again.
    Again(ClientError),
    /// Stop; fail what is unanswered.
    GiveUp(ClientError),
}

/// Errors compare by what they say (they carry no equality of their own).
fn same(a: &ClientError, b: &ClientError) -> bool {
    a.to_string() == b.to_string()
}

impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Next::Continue, Next::Continue) => true,
            (Next::Resend(a), Next::Resend(b)) => same(a, b),
            _ => false,
        }
    }
}

impl PartialEq for Round {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Round::Settled, Round::Settled) => true,
            (Round::Again(a), Round::Again(b)) | (Round::GiveUp(a), Round::GiveUp(b)) => same(a, b),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// The producer id, when idempotent.
    pub producer_id: Option<i64>,
    /// Keep answered batches until committed (idempotent, acks=local).
    pub keep_until_commit: bool,
    /// Batches since the oldest unanswered one.
    pub max_in_flight: usize,
}

#[derive(Debug)]
pub(crate) struct Flight<S> {
    pub id: u64,
    pub batch: Bytes,
    pub records: u64,
    /// Uncompressed bytes, as the buffer counts them.
    pub bytes: usize,
    /// Its first record's sequence number (idempotence).
    sequence: i32,
    slot: Option<S>,
    pub answered: bool,
    pub settled: bool,
}

#[derive(Debug)]
pub(crate) struct Flights<S> {
    settings: Settings,
    flights: VecDeque<Flight<S>>,
    next_id: u64,
    /// The producer epoch and the next record's sequence number (idempotence).
    epoch: i16,
    next_sequence: i32,
    /// Bumped whenever the flights are sent again or given up: failures
    /// reported by older waits are stale.
    round: u64,
    effects: Vec<Effect<S>>,
}

impl<S> Flights<S> {
    pub fn new(settings: Settings) -> Self {
        Flights {
            settings,
            flights: VecDeque::new(),
            next_id: 0,
            epoch: 0,
            next_sequence: 0,
            round: 0,
            effects: Vec::new(),
        }
    }

    fn idempotent(&self) -> bool {
        self.settings.producer_id.is_some()
    }

    /// What the driver must do now.
    pub fn take_effects(&mut self) -> Vec<Effect<S>> {
        std::mem::take(&mut self.effects)
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.flights.len()
    }

    /// Whether any batch waits for its acknowledgement.
    pub fn any_unanswered(&self) -> bool {
        self.flights.iter().any(|f| !f.answered)
    }

    /// Whether another batch may be sent: fewer than `max_in_flight` since
    /// the oldest unanswered one (an owner remembers that many, so any of
    /// them sent again is answered with its offsets), and the bytes kept for
    /// their commit (answered already, so they need no offsets: an owner
    /// that committed one too long ago says DUPLICATE_SEQUENCE, which
    /// settles it) below `kept_cap` across the producer.
    pub fn has_room(&self, kept_total: usize, kept_cap: usize) -> bool {
        let since_unanswered = self.flights.iter().skip_while(|f| f.answered).count();
        since_unanswered < self.settings.max_in_flight && kept_total < kept_cap
    }

    /// The producer fields to stamp on the next batch: id, epoch, base sequence.
    pub fn stamp(&self) -> Option<(i64, i16, i32)> {
        self.settings.producer_id.map(|id| (id, self.epoch, self.next_sequence))
    }

    /// Takes in a batch built with [`Flights::stamp`]; returns its id.
    pub fn push(&mut self, batch: Bytes, records: u64, bytes: usize, slot: S) -> u64 {
        let sequence = self.next_sequence;
        if self.idempotent() {
            self.next_sequence = advance_sequence(sequence, records as u32);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.flights.push_back(Flight {
            id,
            batch,
            records,
            bytes,
            sequence,
            slot: Some(slot),
            answered: false,
            settled: false,
        });
        self.effects.push(Effect::Flights(1));
        id
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.flights.iter().position(|f| f.id == id)
    }

    /// Answers the caller (once) and, unless the batch waits for its
    /// commit, settles it.
    fn answer(&mut self, at: usize, outcome: Result<i64, ClientError>) {
        let keep = outcome.is_ok() && self.settings.keep_until_commit;
        let f = &mut self.flights[at];
        if !f.answered {
            f.answered = true;
            if let Some(slot) = f.slot.take() {
                self.effects.push(Effect::Resolve { slot, records: f.records, bytes: f.bytes, outcome });
            }
            if keep {
                self.effects.push(Effect::Kept(f.batch.len() as isize));
            }
        }
        f.settled |= !keep;
    }

    /// The batch needs no sending again.
    fn settle(&mut self, at: usize) {
        let f = &mut self.flights[at];
        if f.answered && !f.settled {
            self.effects.push(Effect::Kept(-(f.batch.len() as isize)));
        }
        f.settled = true;
    }

    /// Drops settled flights from the front.
    pub fn pop_settled(&mut self, mut release: impl FnMut(Bytes)) {
        let mut n = 0;
        while self.flights.front().is_some_and(|f| f.settled) {
            let done = self.flights.pop_front().expect("checked");
            release(done.batch);
            n += 1;
        }
        if n > 0 {
            self.effects.push(Effect::Flights(-n));
        }
    }

    fn unsettled(&self) -> usize {
        self.flights.iter().filter(|f| !f.settled).count()
    }

    /// The unsettled batches, in order, for a resend round.
    pub fn unsettled_batches(&self) -> Vec<(u64, Bytes)> {
        self.flights.iter().filter(|f| !f.settled).map(|f| (f.id, f.batch.clone())).collect()
    }

    /// Starts a resend round: answers of earlier rounds are stale from now.
    pub fn new_round(&mut self) -> u64 {
        self.round += 1;
        self.round
    }

    /// The newest batch (just pushed) was refused before the agent gave it
    /// offsets.
    pub fn refused(&mut self, id: u64, e: ClientError) -> Next {
        let Some(at) = self.position(id) else { return Next::Continue };
        if self.idempotent() && e.is_retriable() {
            return Next::Resend(e);
        }
        match e.code() {
            // The owner knows nothing of this producer: what went before
            // never reached the log. Number everything unsettled again, in
            // a new epoch, and send it all in order.
            Some(ErrorCode::UnknownProducer) => {
                self.renumber();
                return Next::Resend(e);
            }
            // The owner misses an earlier batch, still unanswered (it went to
            // an owner that died): send them all again, in order.
            Some(ErrorCode::OutOfOrderSequence) if self.unsettled() > 1 => return Next::Resend(e),
            _ => {}
        }
        if matches!(e, ClientError::Server { .. }) && !is_sequence_error(&e) {
            // Nothing was written: its sequence numbers go to the next batch.
            let f = self.flights.remove(at).expect("present");
            self.effects.push(Effect::Flights(-1));
            if self.idempotent() {
                self.next_sequence = f.sequence;
            }
            if let Some(slot) = f.slot {
                self.effects.push(Effect::Resolve { slot, records: f.records, bytes: f.bytes, outcome: Err(e) });
            }
            return Next::Continue;
        }
        if self.idempotent() {
            self.give_up(e);
        } else {
            self.answer(at, Err(e));
        }
        Next::Continue
    }

    /// Takes in one acknowledgement, or the failure of a wait for one.
    pub fn on_answer(&mut self, round: u64, id: u64, outcome: Result<Ack, ClientError>) -> Next {
        let Some(at) = self.flights.iter().position(|f| f.id == id && !f.settled) else { return Next::Continue };
        match outcome {
            // A success is true whichever round it comes from. A batch sent
            // again after its acks=local acknowledgement keeps the offsets
            // first acknowledged.
            Ok(Ack::Durable(base)) => {
                self.answer(at, Ok(base));
                self.settle(at);
            }
            Ok(Ack::Local(base)) => self.answer(at, Ok(base)),
            Ok(Ack::Committed) => self.settle(at),
            Err(_) if round != self.round => {}
            Err(e) if self.idempotent() && e.is_retriable() => return Next::Resend(e),
            Err(e) if self.idempotent() => self.give_up(e),
            Err(e) => self.answer(at, Err(e)),
        }
        Next::Continue
    }

    /// In a resend round, the `n`th unsettled batch (`id`) was refused.
    pub fn resend_failed(&mut self, n: usize, id: u64, e: ClientError) -> Round {
        let Some(at) = self.position(id) else { return Round::Settled };
        match e.code() {
            // Committed long ago, after its acks=local answer: done.
            Some(ErrorCode::DuplicateSequence) if self.flights[at].answered => {
                self.settle(at);
                Round::Settled
            }
            // The owner knows nothing of this producer: none of these
            // batches reached the log. The next round sends them numbered afresh.
            Some(ErrorCode::UnknownProducer) if n == 0 => {
                self.renumber();
                Round::Again(e)
            }
            // An owner missing an earlier batch than this one: it was
            // refused or lost on the way; another round sends it.
            Some(ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducer) if n > 0 => Round::Again(e),
            _ if e.is_retriable() => Round::Again(e),
            _ => Round::GiveUp(e),
        }
    }

    /// Starts a new epoch and numbers every unsettled batch again from 0, in
    /// order (an owner said it has none of them).
    pub fn renumber(&mut self) {
        let Some(producer_id) = self.settings.producer_id else { return };
        self.epoch = self.epoch.saturating_add(1);
        let mut sequence = 0;
        for f in self.flights.iter_mut().filter(|f| !f.settled) {
            f.batch = restamp_producer(&f.batch, producer_id, self.epoch, sequence);
            f.sequence = sequence;
            sequence = advance_sequence(sequence, f.records as u32);
        }
        self.next_sequence = sequence;
    }

    /// Fails every unanswered batch (they may or may not have been
    /// written), and starts a new producer epoch so that the next batches
    /// are not taken for them.
    pub fn give_up(&mut self, e: ClientError) {
        self.round += 1;
        let dropped = self.flights.len() as isize;
        for f in std::mem::take(&mut self.flights) {
            if f.answered && !f.settled {
                self.effects.push(Effect::Kept(-(f.batch.len() as isize)));
            }
            if let Some(slot) = f.slot.filter(|_| !f.answered) {
                self.effects.push(Effect::Resolve {
                    slot,
                    records: f.records,
                    bytes: f.bytes,
                    outcome: Err(e.clone()),
                });
            }
        }
        if dropped > 0 {
            self.effects.push(Effect::Flights(-dropped));
        }
        if self.idempotent() {
            self.epoch = self.epoch.saturating_add(1);
            self.next_sequence = 0;
        }
    }

    /// Stopping: an answer still on its way counts, nothing is sent again.
    pub fn on_answer_while_stopping(&mut self, id: u64, outcome: Result<Ack, ClientError>) {
        if let Some(at) = self.flights.iter().position(|f| f.id == id && !f.answered) {
            match outcome {
                Ok(Ack::Durable(base) | Ack::Local(base)) => self.answer(at, Ok(base)),
                Ok(Ack::Committed) => {}
                Err(e) => self.answer(at, Err(e)),
            }
        }
    }
}

fn is_sequence_error(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::OutOfOrderSequence
                | ErrorCode::DuplicateSequence
                | ErrorCode::ProducerFenced
                | ErrorCode::UnknownProducer
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_wire::{Batch, BatchBuilder, Compression};

    fn server(code: ErrorCode) -> ClientError {
        ClientError::Server { code, message: String::new() }
    }

    fn lost() -> ClientError {
        ClientError::Timeout { addr: "a".into(), secs: 1 }
    }

    /// A flight machine whose slots are names, with batches stamped as the
    /// driver would stamp them.
    struct T {
        f: Flights<&'static str>,
    }

    impl T {
        fn new(idempotent: bool, keep_until_commit: bool) -> T {
            let settings = Settings { producer_id: idempotent.then_some(7), keep_until_commit, max_in_flight: 4 };
            T { f: Flights::new(settings) }
        }

        fn send(&mut self, name: &'static str, records: usize) -> u64 {
            let mut b = BatchBuilder::new(Compression::None);
            if let Some((id, epoch, seq)) = self.f.stamp() {
                b.set_producer(id, epoch, seq);
            }
            for _ in 0..records {
                b.push(0, None, b"v", &[]);
            }
            self.f.push(b.build().unwrap().into_bytes(), records as u64, records, name)
        }

        /// The callers told, as (name, Ok(base) or Err(code)).
        fn resolved(&mut self) -> Vec<(&'static str, Result<i64, Option<ErrorCode>>)> {
            self.f
                .take_effects()
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Resolve { slot, outcome, .. } => Some((slot, outcome.map_err(|e| e.code()))),
                    _ => None,
                })
                .collect()
        }

        fn sequences(&self) -> Vec<(i16, i32)> {
            self.f
                .flights
                .iter()
                .filter(|f| !f.settled)
                .map(|f| {
                    let h = *Batch::validate(f.batch.clone()).unwrap().header();
                    (h.producer_epoch, h.base_sequence)
                })
                .collect()
        }
    }

    #[test]
    fn acknowledgements_answer_and_settle() {
        let mut t = T::new(true, false);
        let a = t.send("a", 2);
        let b = t.send("b", 1);
        assert_eq!(t.f.on_answer(0, a, Ok(Ack::Durable(10))), Next::Continue);
        assert_eq!(t.resolved(), vec![("a", Ok(10))]);
        let mut released = Vec::new();
        t.f.pop_settled(|batch| released.push(batch));
        assert_eq!(t.f.len(), 1);
        assert_eq!(released.len(), 1, "a's batch is handed back for its buffer");
        assert_eq!(Batch::validate(released.remove(0)).unwrap().header().record_count, 2);
        // A stale failure (from an earlier round) changes nothing.
        t.f.new_round();
        assert_eq!(t.f.on_answer(0, b, Err(lost())), Next::Continue);
        assert_eq!(t.f.on_answer(1, b, Err(lost())), Next::Resend(lost()));
        assert_eq!(t.f.on_answer(1, b, Ok(Ack::Durable(12))), Next::Continue);
        assert_eq!(t.resolved(), vec![("b", Ok(12))]);
    }

    #[test]
    fn acks_local_batches_are_kept_until_committed() {
        let mut t = T::new(true, true);
        let a = t.send("a", 1);
        t.f.on_answer(0, a, Ok(Ack::Local(5)));
        let effects = t.f.take_effects();
        assert!(
            matches!(effects[..], [Effect::Flights(1), Effect::Resolve { outcome: Ok(5), .. }, Effect::Kept(n)] if n > 0)
        );
        t.f.pop_settled(drop);
        assert_eq!(t.f.len(), 1, "kept for its commit");
        assert_eq!(t.f.unsettled_batches().len(), 1, "sent again if the agent dies first");
        t.f.on_answer(0, a, Ok(Ack::Committed));
        t.f.pop_settled(drop);
        assert_eq!(t.f.len(), 0);
        // Committed long ago on an owner that no longer remembers it: settled.
        let b = t.send("b", 1);
        t.f.on_answer(0, b, Ok(Ack::Local(6)));
        assert_eq!(t.f.resend_failed(0, b, server(ErrorCode::DuplicateSequence)), Round::Settled);
        t.f.pop_settled(drop);
        assert_eq!(t.f.len(), 0);
    }

    #[test]
    fn room_counts_from_the_oldest_unanswered_batch() {
        let mut t = T::new(true, false);
        let ids: Vec<u64> = (0..4).map(|_| t.send("x", 1)).collect();
        assert!(!t.f.has_room(0, 100), "four unanswered");
        t.f.on_answer(0, ids[1], Ok(Ack::Durable(1)));
        assert!(!t.f.has_room(0, 100), "the oldest is still unanswered");
        t.f.on_answer(0, ids[0], Ok(Ack::Durable(0)));
        assert!(t.f.has_room(0, 100));
        assert!(!t.f.has_room(100, 100), "kept bytes at their cap");
    }

    #[test]
    fn refusals_table() {
        // (idempotent, unsettled batches before, error, next, caller told, epoch after)
        type Told = Option<(&'static str, Result<i64, Option<ErrorCode>>)>;
        let cases: Vec<(bool, usize, ClientError, bool, Told)> = vec![
            // Retriable for an idempotent producer: send everything again.
            (true, 0, server(ErrorCode::NotOwner), true, None),
            (true, 0, lost(), true, None),
            // Not idempotent: refused before assignment, nothing written.
            (false, 0, server(ErrorCode::NotOwner), false, Some(("new", Err(Some(ErrorCode::NotOwner))))),
            (false, 0, lost(), false, Some(("new", Err(None)))),
            // A final refusal: only this batch fails.
            (true, 0, server(ErrorCode::InvalidBatch), false, Some(("new", Err(Some(ErrorCode::InvalidBatch))))),
            // The owner misses earlier batches: send them all again.
            (true, 1, server(ErrorCode::OutOfOrderSequence), true, None),
            // Out of order with nothing before it: give up (a new epoch).
            (
                true,
                0,
                server(ErrorCode::OutOfOrderSequence),
                false,
                Some(("new", Err(Some(ErrorCode::OutOfOrderSequence)))),
            ),
        ];
        for (i, (idempotent, before, e, resend, told)) in cases.into_iter().enumerate() {
            let mut t = T::new(idempotent, false);
            for _ in 0..before {
                t.send("old", 1);
            }
            let id = t.send("new", 1);
            t.resolved();
            let next = t.f.refused(id, e.clone());
            assert_eq!(next == Next::Resend(e.clone()), resend, "case {i}: {next:?}");
            assert_eq!(t.resolved().into_iter().next(), told, "case {i}");
        }
    }

    #[test]
    fn a_refused_batch_gives_its_sequence_numbers_to_the_next() {
        let mut t = T::new(true, false);
        let a = t.send("a", 3);
        t.f.refused(a, server(ErrorCode::BatchTooLarge));
        t.send("b", 1);
        assert_eq!(t.sequences(), vec![(0, 0)], "b starts where a would have");
    }

    #[test]
    fn an_owner_that_knows_nothing_gets_everything_renumbered_in_a_new_epoch() {
        let mut t = T::new(true, false);
        t.send("a", 2);
        t.send("b", 3);
        let c = t.send("c", 1);
        assert_eq!(t.sequences(), vec![(0, 0), (0, 2), (0, 5)]);
        assert_eq!(
            t.f.refused(c, server(ErrorCode::UnknownProducer)),
            Next::Resend(server(ErrorCode::UnknownProducer))
        );
        assert_eq!(t.sequences(), vec![(1, 0), (1, 2), (1, 5)]);
        t.send("d", 1);
        assert_eq!(t.sequences().last(), Some(&(1, 6)));
    }

    #[test]
    fn resend_rounds_table() {
        // (position in the round, error, outcome)
        let cases = [
            (0, server(ErrorCode::UnknownProducer), Round::Again(server(ErrorCode::UnknownProducer))),
            (1, server(ErrorCode::UnknownProducer), Round::Again(server(ErrorCode::UnknownProducer))),
            (1, server(ErrorCode::OutOfOrderSequence), Round::Again(server(ErrorCode::OutOfOrderSequence))),
            (0, server(ErrorCode::OutOfOrderSequence), Round::GiveUp(server(ErrorCode::OutOfOrderSequence))),
            (0, lost(), Round::Again(lost())),
            (0, server(ErrorCode::ProducerFenced), Round::GiveUp(server(ErrorCode::ProducerFenced))),
            // Not yet answered: a duplicate it cannot place is final.
            (0, server(ErrorCode::DuplicateSequence), Round::GiveUp(server(ErrorCode::DuplicateSequence))),
        ];
        for (n, e, want) in cases {
            let mut t = T::new(true, false);
            let a = t.send("a", 1);
            let b = t.send("b", 1);
            let id = [a, b][n];
            assert_eq!(t.f.resend_failed(n, id, e.clone()), want, "{e} at {n}");
        }
    }

    #[test]
    fn giving_up_fails_the_unanswered_and_starts_a_new_epoch() {
        let mut t = T::new(true, true);
        let a = t.send("a", 1);
        t.send("b", 1);
        t.f.on_answer(0, a, Ok(Ack::Local(0)));
        t.resolved();
        t.f.give_up(server(ErrorCode::ProducerFenced));
        let effects = t.f.take_effects();
        let told: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Resolve { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(told, vec!["b"], "a was answered already");
        let kept: isize = effects
            .iter()
            .map(|e| match e {
                Effect::Kept(n) => *n,
                _ => 0,
            })
            .sum();
        assert!(kept < 0, "a's kept bytes are returned");
        assert_eq!(t.f.len(), 0);
        t.send("c", 1);
        assert_eq!(t.sequences(), vec![(1, 0)]);
    }
}
