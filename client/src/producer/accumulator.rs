//! Records gather per partition into batches: a batch is sealed once it
//! holds `batch_bytes`, and is ready once sealed or `linger` after its first
//! record. Keyless records stick to one partition a batch at a time. The
//! buffer's memory is bounded: `send` waits for room, which comes back as
//! records are resolved. Batch buffers are used again once their batch is
//! done with, so a steady stream of batches touches no fresh memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use silt_wire::{BatchBuilder, Compression};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{Outcome, ProducerRecord};

/// A batch being filled.
pub(crate) struct Open {
    pub builder: BatchBuilder,
    /// Where its records hear how it went.
    pub slot: watch::Sender<Outcome>,
    /// Uncompressed bytes of its records.
    pub bytes: usize,
    opened: Instant,
}

/// One partition's batches: full ones waiting to be sent, in order, and
/// the one being filled.
#[derive(Default)]
struct Batches {
    sealed: VecDeque<Open>,
    open: Option<Open>,
}

/// Where a record went.
pub(crate) struct Appended {
    pub slot: watch::Receiver<Outcome>,
    /// Its position in its batch.
    pub index: i64,
}

pub(crate) struct Accumulator {
    compression: Compression,
    batch_bytes: usize,
    linger: Duration,
    partitions: Vec<(Mutex<Batches>, Notify)>,
    /// The partition keyless records go to now.
    sticky: AtomicU32,
    /// Callers waiting in `flush`: batches are ready without lingering.
    flushing: AtomicUsize,
    /// Buffers of batches done with, for new batches. Never more than were
    /// in use at once, so it adds nothing to the peak.
    spare: Mutex<Vec<BytesMut>>,
    max_spare: usize,
}

impl Accumulator {
    /// Keeps as many buffers of finished batches for new ones as
    /// `buffer_bytes` (the producer's memory) holds batches, at least two.
    pub fn new(
        partitions: u32,
        compression: Compression,
        batch_bytes: usize,
        buffer_bytes: usize,
        linger: Duration,
    ) -> Accumulator {
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Accumulator {
            compression,
            batch_bytes,
            linger,
            partitions: (0..partitions).map(|_| Default::default()).collect(),
            sticky: AtomicU32::new(start % partitions.max(1)),
            flushing: AtomicUsize::new(0),
            spare: Mutex::new(Vec::new()),
            max_spare: (buffer_bytes / batch_bytes.max(1)).max(2),
        }
    }

    /// Takes back the buffer of a batch done with, for a later batch.
    pub fn recycle(&self, buffer: BytesMut) {
        if buffer.capacity() < self.batch_bytes {
            return;
        }
        let mut spare = self.spare.lock().expect("spare lock");
        if spare.len() < self.max_spare {
            spare.push(buffer);
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The partition a keyless record goes to now.
    pub fn sticky(&self) -> u32 {
        self.sticky.load(Ordering::Relaxed) % self.partitions()
    }

    /// Keyless records move on to the next partition (from `from`, once).
    pub fn advance_sticky(&self, from: u32) {
        let next = (from + 1) % self.partitions();
        let _ = self.sticky.compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Adds a record of `size` bytes to partition `p`'s open batch. A batch
    /// never grows past `batch_bytes` (plus one record): while the sender
    /// waits on the agent, full batches queue up instead.
    pub fn append(&self, p: u32, record: &ProducerRecord, size: usize, timestamp: i64) -> Appended {
        let keyless = record.partition.is_none() && record.key.is_none();
        let (batches, wake) = &self.partitions[p as usize];
        let (slot, index, first, full) = {
            let mut b = batches.lock().expect("batches lock");
            if b.open.as_ref().is_some_and(|o| o.bytes > 0 && o.bytes + size > self.batch_bytes) {
                let full = b.open.take().expect("checked");
                b.sealed.push_back(full);
            }
            let open = b.open.get_or_insert_with(|| Open {
                // Room for a full batch: it is never copied as it grows.
                builder: BatchBuilder::with_buffer(
                    self.compression,
                    self.spare.lock().expect("spare lock").pop().unwrap_or_default(),
                    self.batch_bytes + 4096,
                ),
                slot: watch::Sender::new(None),
                bytes: 0,
                opened: Instant::now(),
            });
            let index = open.builder.len() as i64;
            open.builder.push_record(timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers);
            open.bytes += size;
            (open.slot.subscribe(), index, index == 0, open.bytes >= self.batch_bytes)
        };
        if full && keyless {
            self.advance_sticky(p);
        }
        if first || full {
            wake.notify_one();
        }
        Appended { slot, index }
    }

    /// Whether partition `p` has a batch to send now; otherwise when its
    /// open batch will be (None: it has none).
    pub fn ready(&self, p: u32) -> Result<(), Option<Instant>> {
        let b = self.partitions[p as usize].0.lock().expect("batches lock");
        if !b.sealed.is_empty() {
            return Ok(());
        }
        match &b.open {
            None => Err(None),
            Some(o) if o.bytes >= self.batch_bytes || self.flushing.load(Ordering::SeqCst) > 0 => Ok(()),
            Some(o) if o.opened + self.linger <= Instant::now() => Ok(()),
            Some(o) => Err(Some(o.opened + self.linger)),
        }
    }

    /// Takes partition `p`'s next batch to send, oldest first.
    pub fn take(&self, p: u32) -> Option<Open> {
        let mut b = self.partitions[p as usize].0.lock().expect("batches lock");
        b.sealed.pop_front().or_else(|| b.open.take())
    }

    /// Resolves when partition `p` may have a batch ready.
    pub async fn woken(&self, p: u32) {
        self.partitions[p as usize].1.notified().await
    }

    /// A caller starts waiting for everything buffered: send without lingering.
    pub fn start_flush(&self) {
        self.flushing.fetch_add(1, Ordering::SeqCst);
        for (_, wake) in &self.partitions {
            wake.notify_one();
        }
    }

    pub fn end_flush(&self) {
        self.flushing.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_seal_at_their_size_and_keyless_records_move_on() {
        let acc = Accumulator::new(2, Compression::None, 100, 200, Duration::from_secs(60));
        let p = acc.sticky();
        assert_eq!(acc.ready(p).map_err(|d| d.is_some()), Err(false), "nothing buffered");
        let first = acc.append(p, &ProducerRecord::new("a"), 50, 0);
        assert_eq!(first.index, 0);
        assert!(matches!(acc.ready(p), Err(Some(_))), "lingering");
        assert_eq!(acc.sticky(), p, "not full yet");
        let second = acc.append(p, &ProducerRecord::new("b"), 50, 0);
        assert_eq!(second.index, 1);
        assert_eq!(acc.ready(p), Ok(()), "a full batch is ready");
        assert_ne!(acc.sticky(), p, "full: keyless records move to the next partition");
        // A batch never grows past its size: the next record starts another.
        let third = acc.append(p, &ProducerRecord::new("c").with_partition(p), 50, 0);
        assert_eq!(third.index, 0);
        assert_eq!(acc.take(p).unwrap().builder.len(), 2);
        assert_eq!(acc.take(p).unwrap().builder.len(), 1);
        assert!(acc.take(p).is_none());
    }

    #[tokio::test]
    async fn a_flush_makes_a_lingering_batch_ready() {
        let acc = Accumulator::new(1, Compression::None, 100, 200, Duration::from_secs(60));
        acc.append(0, &ProducerRecord::new("v").with_key("k"), 10, 0);
        assert!(acc.ready(0).is_err());
        acc.start_flush();
        assert_eq!(acc.ready(0), Ok(()));
        acc.end_flush();
    }
}
