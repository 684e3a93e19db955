//! Idempotent producers, per partition: which batches each has written, so
//! a batch sent twice (after a lost answer, or to a partition's next owner)
//! is answered with its first offsets instead of being written again.
//!
//! A plain table, no I/O: the partition's actor checks each batch against
//! it before assigning offsets, and the flusher folds committed batches into
//! the copy it writes to the metadata store with the index entry.

use std::collections::HashMap;

use silt_metadata::catalog::{BatchMeta, ProducerState};
use silt_wire::{advance_sequence, BatchHeader, PRODUCER_WINDOW};

pub use crate::error::SequenceError;

/// A producer idle this long is forgotten, as in Kafka
/// (`producer.id.expiration.ms`); it then starts a new epoch.
pub const EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: assign it offsets.
    Append,
    /// Written before, at these offsets: answer with them, write nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Checks a batch against what is known of its producer.
pub fn check(state: Option<&ProducerState>, h: &BatchHeader) -> Result<Verdict, SequenceError> {
    if !h.is_idempotent() {
        return Ok(Verdict::Append);
    }
    let producer_id = h.producer_id;
    // A producer (or epoch) not seen before starts at sequence 0: anything
    // else means earlier batches went to an owner that never committed them,
    // and writing this one would leave them out.
    let fresh = || match h.base_sequence {
        0 => Ok(Verdict::Append),
        got => Err(SequenceError::Unknown { producer_id, epoch: h.producer_epoch, got }),
    };
    let Some(state) = state else { return fresh() };
    if h.producer_epoch < state.epoch {
        return Err(SequenceError::Fenced { producer_id, got: h.producer_epoch, current: state.epoch });
    }
    let Some(last) = state.batches.last().filter(|_| h.producer_epoch == state.epoch) else {
        return fresh();
    };
    if let Some(b) = state.batches.iter().find(|b| b.base_sequence == h.base_sequence) {
        if b.last_sequence == h.last_sequence() {
            return Ok(Verdict::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
    }
    let expected = advance_sequence(last.last_sequence, 1);
    if h.base_sequence == expected {
        return Ok(Verdict::Append);
    }
    // Behind the expected sequence (modulo the wrap): written before.
    let behind = (i64::from(expected) - i64::from(h.base_sequence)).rem_euclid(1 << 31);
    if behind > 0 && behind < 1 << 30 {
        Err(SequenceError::Duplicate { producer_id, got: h.base_sequence })
    } else {
        Err(SequenceError::OutOfOrder { producer_id, epoch: state.epoch, expected, got: h.base_sequence })
    }
}

/// Adds a batch with its offsets assigned to its producer's state.
pub fn apply(state: &mut ProducerState, h: &BatchHeader, now_ms: i64) {
    if h.producer_epoch != state.epoch {
        state.epoch = h.producer_epoch;
        state.batches.clear();
    }
    state.batches.push(BatchMeta {
        base_sequence: h.base_sequence,
        last_sequence: h.last_sequence(),
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
    });
    if state.batches.len() > PRODUCER_WINDOW {
        let extra = state.batches.len() - PRODUCER_WINDOW;
        state.batches.drain(..extra);
    }
    state.updated_ms = state.updated_ms.max(now_ms);
}

/// Every producer of one partition.
#[derive(Debug, Default, Clone)]
pub struct Producers {
    states: HashMap<i64, ProducerState>,
    /// Producers added since idle ones were last dropped.
    added: usize,
    /// When [`Producers::take_expired`] last looked.
    swept_ms: i64,
}

impl Producers {
    pub fn new(states: impl IntoIterator<Item = (i64, ProducerState)>) -> Self {
        Producers { states: states.into_iter().collect(), added: 0, swept_ms: 0 }
    }

    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, SequenceError> {
        check(self.states.get(&h.producer_id), h)
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerState> {
        self.states.get(&producer_id)
    }

    /// Records a batch whose offsets are assigned (a no-op for batches
    /// without a producer id).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if !h.is_idempotent() {
            return;
        }
        let state = self.states.entry(h.producer_id).or_insert_with(|| {
            self.added += 1;
            ProducerState::default()
        });
        apply(state, h, now_ms);
        if self.added >= 1024 {
            self.added = 0;
            self.states.retain(|_, s| now_ms - s.updated_ms < EXPIRY_MS);
        }
    }

    /// Drops the producers idle past [`EXPIRY_MS`] and returns their ids;
    /// looks at most once per `every_ms`.
    pub fn take_expired(&mut self, now_ms: i64, every_ms: i64) -> Vec<i64> {
        if now_ms - self.swept_ms < every_ms {
            return Vec::new();
        }
        self.swept_ms = now_ms;
        let expired: Vec<i64> =
            self.states.iter().filter(|(_, s)| now_ms - s.updated_ms >= EXPIRY_MS).map(|(id, _)| *id).collect();
        for id in &expired {
            self.states.remove(id);
        }
        expired
    }

    /// Replaces one producer's state (after it is committed).
    pub fn set(&mut self, producer_id: i64, state: ProducerState) {
        self.states.insert(producer_id, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_wire::{BatchBuilder, Compression};

    fn batch(id: i64, epoch: i16, seq: i32, records: usize, base_offset: i64) -> BatchHeader {
        let mut b = BatchBuilder::new(Compression::None).with_producer(id, epoch, seq);
        for _ in 0..records {
            b.push(0, None, b"v", &[]);
        }
        *b.build().unwrap().with_base_offset(base_offset).header()
    }

    #[test]
    fn a_producer_continues_its_sequence_and_repeats_are_answered_with_their_offsets() {
        let mut t = Producers::default();
        let first = batch(1, 0, 0, 3, 100);
        assert_eq!(t.check(&first), Ok(Verdict::Append));
        t.record(&first, 1);
        let second = batch(1, 0, 3, 2, 103);
        assert_eq!(t.check(&second), Ok(Verdict::Append));
        t.record(&second, 2);
        assert_eq!(t.check(&batch(1, 0, 0, 3, -1)), Ok(Verdict::Duplicate { base_offset: 100, last_offset: 102 }));
        assert_eq!(t.check(&batch(1, 0, 3, 2, -1)), Ok(Verdict::Duplicate { base_offset: 103, last_offset: 104 }));
        assert_eq!(t.check(&batch(1, 0, 5, 1, -1)), Ok(Verdict::Append));
        // A gap, or a batch cut differently than before, is refused.
        assert!(matches!(t.check(&batch(1, 0, 7, 1, -1)), Err(SequenceError::OutOfOrder { expected: 5, .. })));
        assert!(matches!(t.check(&batch(1, 0, 0, 2, -1)), Err(SequenceError::Duplicate { .. })));
        // Other producers and plain batches are independent; a producer not
        // seen before starts at 0.
        assert_eq!(t.check(&batch(2, 0, 0, 1, -1)), Ok(Verdict::Append));
        assert!(matches!(t.check(&batch(2, 0, 40, 1, -1)), Err(SequenceError::Unknown { got: 40, .. })));
        let mut plain = BatchBuilder::new(Compression::None);
        plain.push(0, None, b"v", &[]);
        let plain = *plain.build().unwrap().header();
        assert_eq!(t.check(&plain), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_window_is_remembered() {
        let mut t = Producers::default();
        for i in 0..(PRODUCER_WINDOW as i32 + 4) {
            t.record(&batch(1, 0, i, 1, i64::from(i)), 0);
        }
        assert_eq!(t.get(1).unwrap().batches.len(), PRODUCER_WINDOW);
        assert_eq!(t.check(&batch(1, 0, 4, 1, -1)), Ok(Verdict::Duplicate { base_offset: 4, last_offset: 4 }));
        assert!(matches!(t.check(&batch(1, 0, 3, 1, -1)), Err(SequenceError::Duplicate { .. })));
    }

    #[test]
    fn a_newer_epoch_starts_over_and_an_older_one_is_fenced() {
        let mut t = Producers::default();
        t.record(&batch(1, 0, 0, 5, 0), 0);
        assert_eq!(t.check(&batch(1, 1, 0, 1, -1)), Ok(Verdict::Append));
        assert!(matches!(t.check(&batch(1, 1, 3, 1, -1)), Err(SequenceError::Unknown { .. })));
        t.record(&batch(1, 1, 0, 1, 5), 0);
        assert_eq!(t.get(1).unwrap().batches.len(), 1);
        assert!(matches!(t.check(&batch(1, 0, 5, 1, -1)), Err(SequenceError::Fenced { current: 1, .. })));
    }

    #[test]
    fn sequences_wrap() {
        let mut t = Producers::default();
        t.record(&batch(1, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(t.check(&batch(1, 0, 0, 1, -1)), Ok(Verdict::Append));
        t.record(&batch(1, 0, 0, 1, 2), 0);
        assert_eq!(t.check(&batch(1, 0, 1, 1, -1)), Ok(Verdict::Append));
        assert!(matches!(t.check(&batch(1, 0, i32::MAX, 1, -1)), Err(SequenceError::Duplicate { .. })));
    }

    #[test]
    fn idle_producers_expire() {
        let mut t = Producers::default();
        t.record(&batch(1, 0, 0, 1, 0), 0);
        for id in 2..1030 {
            t.record(&batch(id, 0, 0, 1, 0), EXPIRY_MS + 1);
        }
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
        let mut t = Producers::new([(5, ProducerState { updated_ms: 0, ..Default::default() })]);
        t.record(&batch(6, 0, 0, 1, 0), EXPIRY_MS);
        assert_eq!(t.take_expired(EXPIRY_MS, 1000), vec![5]);
        assert!(t.get(5).is_none() && t.get(6).is_some());
        t.set(5, ProducerState::default());
        assert!(t.take_expired(EXPIRY_MS + 10, 1000).is_empty(), "not again so soon");
    }
}
