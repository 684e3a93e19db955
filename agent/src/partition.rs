//! One owned partition: a task (actor) that assigns offsets in arrival
//! order and hands batches to the flush queue, plus the state readers share
//! (high watermark, a cache of the segment index).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use silt_metadata::catalog::{ProducerState, Segment};
use silt_wire::{Acks, Batch, BatchHeader};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::flush::{Pending, Queue};
use crate::producers::{Producers, Verdict};
use crate::wal::{Wal, Write};

/// Index entries kept in memory per partition; older ones are re-read from
/// the metadata store on demand.
const INDEX_CACHE_ENTRIES: usize = 4096;
const MAILBOX: usize = 1024;
/// How often an owner forgets idle producers in the metadata store.
const SWEEP_EVERY_MS: i64 = 60 * 60 * 1000;

pub type Done = oneshot::Receiver<Result<(i64, i64), ServiceError>>;

/// A batch's place in the log, and a receiver for its acknowledgement.
pub struct Assigned {
    pub base_offset: i64,
    pub done: Done,
    /// acks=local: resolves once the batch is committed (after `done`).
    pub committed: Option<Done>,
    /// The batch was written before (an idempotent producer sent it again):
    /// these are its first offsets, and nothing new is written.
    pub duplicate: bool,
}

struct Append {
    batch: Batch,
    acks: Acks,
    permit: OwnedSemaphorePermit,
    assigned: oneshot::Sender<Result<Assigned, ServiceError>>,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: u64,
    pub partition: u32,
    /// The lease epoch this agent writes under (0 for a follower).
    pub epoch: u64,
    /// None for a follower: another agent (or none) owns the partition.
    appends: Option<mpsc::Sender<Append>>,
    /// Where the owner is, as last seen (for followers' NOT_OWNER answers).
    owner: Mutex<String>,
    /// One past the last assigned offset (leaders): a handover waits until
    /// the high watermark reaches it.
    next_offset: AtomicI64,
    high_watermark: watch::Sender<i64>,
    log_start: i64,
    fenced: AtomicBool,
    /// The last offset that went to the object store without the WAL.
    wal_gap: AtomicI64,
    index: Mutex<BTreeMap<i64, Segment>>,
    /// Idempotent producers as of the last index commit (the actor keeps
    /// its own table, which also holds batches not yet committed).
    committed_producers: Mutex<Producers>,
    stop: CancellationToken,
}

/// Where the actor sends batches once their offsets are assigned.
#[derive(Clone)]
pub struct Sink {
    pub queue: Arc<Queue>,
    pub wal: Option<Arc<Wal>>,
}

impl Partition {
    /// Starts the partition's actor on `tasks`; it stops with `stop`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        topic: String,
        topic_id: u64,
        partition: u32,
        epoch: u64,
        high_watermark: i64,
        next_offset: i64,
        log_start: i64,
        producers: Producers,
        replayed: &[BatchHeader],
        sink: Sink,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Arc<Partition> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let mut assigned = producers.clone();
        for h in replayed {
            assigned.record(h, crate::service::now_ms());
        }
        let part = Arc::new(Partition {
            topic,
            topic_id,
            partition,
            epoch,
            appends: Some(tx),
            owner: Mutex::new(String::new()),
            next_offset: AtomicI64::new(next_offset),
            high_watermark: watch::Sender::new(high_watermark),
            log_start,
            fenced: AtomicBool::new(false),
            wal_gap: AtomicI64::new(-1),
            index: Mutex::new(BTreeMap::new()),
            committed_producers: Mutex::new(producers),
            stop,
        });
        let span = tracing::info_span!("partition", topic = %part.topic, partition, epoch);
        tasks.spawn(run(part.clone(), rx, next_offset, assigned, sink).instrument(span));
        part
    }

    /// A partition this agent reads but does not own.
    pub fn follower(
        topic: String,
        topic_id: u64,
        partition: u32,
        high_watermark: i64,
        log_start: i64,
        owner: String,
    ) -> Arc<Partition> {
        Arc::new(Partition {
            topic,
            topic_id,
            partition,
            epoch: 0,
            appends: None,
            owner: Mutex::new(owner),
            next_offset: AtomicI64::new(high_watermark),
            high_watermark: watch::Sender::new(high_watermark),
            log_start,
            fenced: AtomicBool::new(true),
            wal_gap: AtomicI64::new(-1),
            index: Mutex::new(BTreeMap::new()),
            committed_producers: Mutex::new(Producers::default()),
            stop: CancellationToken::new(),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.appends.is_some() && !self.fenced.load(Ordering::SeqCst)
    }

    /// The owner's address as last seen (followers).
    pub fn owner(&self) -> String {
        self.owner.lock().expect("owner lock").clone()
    }

    pub fn set_owner(&self, address: String) {
        *self.owner.lock().expect("owner lock") = address;
    }

    /// A follower learns a newer high watermark from the metadata store.
    pub fn observe_high_watermark(&self, hw: i64) {
        self.high_watermark.send_if_modified(|h| {
            let newer = hw > *h;
            if newer {
                *h = hw;
            }
            newer
        });
    }

    /// Whether every assigned offset is committed (nothing in flight).
    pub fn drained(&self) -> bool {
        self.high_watermark() >= self.next_offset.load(Ordering::SeqCst)
    }

    pub fn id(&self) -> (u64, u32) {
        (self.topic_id, self.partition)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn log_start(&self) -> i64 {
        self.log_start
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Appends a validated batch. Returns its base offset once assigned, and
    /// a receiver that resolves when it is as durable as `acks` asks.
    pub async fn append(
        &self,
        batch: Batch,
        acks: Acks,
        permit: OwnedSemaphorePermit,
    ) -> Result<Assigned, ServiceError> {
        let Some(appends) = &self.appends else {
            return Err(ServiceError::NotOwner {
                topic: self.topic.clone(),
                partition: self.partition,
                owner: self.owner(),
            });
        };
        let (assigned, rx) = oneshot::channel();
        let msg = Append { batch, acks, permit, assigned };
        appends.send(msg).await.map_err(|_| ServiceError::ShuttingDown)?;
        rx.await.map_err(|_| ServiceError::ShuttingDown)?
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Records that a batch up to `last_offset` bypassed the WAL.
    pub fn wal_gap(&self, last_offset: i64) {
        self.wal_gap.fetch_max(last_offset, Ordering::SeqCst);
    }

    /// Whether everything that bypassed the WAL is committed, so a batch in
    /// the WAL can be acknowledged locally: a replay will not meet a gap.
    pub fn wal_safe(&self) -> bool {
        self.high_watermark() > self.wal_gap.load(Ordering::SeqCst)
    }

    /// Called by the flusher once the lease is found lost.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// The producer states an index commit of these batches (in order)
    /// records: the committed ones, advanced by each idempotent batch; and,
    /// about once an hour, the producers to forget for being idle too long.
    pub fn producers_after<'a>(
        &self,
        batches: impl Iterator<Item = &'a BatchHeader>,
    ) -> (Vec<(i64, ProducerState)>, Vec<i64>) {
        let mut committed = self.committed_producers.lock().expect("producers lock");
        let expired = committed.take_expired(crate::service::now_ms(), SWEEP_EVERY_MS);
        let mut out: Vec<(i64, ProducerState)> = Vec::new();
        let now = crate::service::now_ms();
        for h in batches.filter(|h| h.is_idempotent()) {
            let at = match out.iter().position(|(id, _)| *id == h.producer_id) {
                Some(at) => at,
                None => {
                    out.push((h.producer_id, committed.get(h.producer_id).cloned().unwrap_or_default()));
                    out.len() - 1
                }
            };
            crate::producers::apply(&mut out[at].1, h, now);
        }
        (out, expired)
    }

    /// Called by the flusher once producer states are committed.
    pub fn producers_committed(&self, states: Vec<(i64, ProducerState)>) {
        let mut committed = self.committed_producers.lock().expect("producers lock");
        for (id, state) in states {
            committed.set(id, state);
        }
    }

    /// Answers a batch sent again: once its first copy is committed (at
    /// once for acks=none), or with an error if this agent stops leading
    /// before that. The producer then asks the next owner, which knows.
    fn answer_duplicate(self: &Arc<Self>, base: i64, last: i64, acks: Acks) -> (Done, Option<Done>) {
        let (tx, rx) = oneshot::channel();
        let (committed_tx, committed_rx) = match acks {
            Acks::Local => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        if acks == Acks::None || self.high_watermark() > last {
            let _ = tx.send(Ok((base, last)));
            if let Some(c) = committed_tx {
                let _ = c.send(Ok((base, last)));
            }
            return (rx, committed_rx);
        }
        let part = self.clone();
        tokio::spawn(async move {
            let mut hw = part.subscribe();
            let outcome = loop {
                if *hw.borrow_and_update() > last {
                    break Ok((base, last));
                }
                // Fenced with nothing left to commit: the first copy will not
                // be committed here.
                if part.fenced.load(Ordering::SeqCst) && part.drained() {
                    break Err(ServiceError::Fenced { topic: part.topic.clone(), partition: part.partition });
                }
                tokio::select! {
                    changed = hw.changed() => if changed.is_err() { break Err(ServiceError::ShuttingDown) },
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    _ = part.stop.cancelled() => break Err(ServiceError::ShuttingDown),
                }
            };
            if let Some(c) = committed_tx {
                let _ = c.send(match &outcome {
                    Ok(o) => Ok(*o),
                    Err(_) => Err(ServiceError::ShuttingDown),
                });
            }
            let _ = tx.send(outcome);
        });
        (rx, committed_rx)
    }

    /// Called by the flusher after a segment is committed to the index.
    pub fn committed(&self, segment: Segment) {
        let next = segment.last_offset + 1;
        self.remember(std::iter::once(segment));
        self.high_watermark.send_replace(next);
    }

    /// Adds index entries to the in-memory cache.
    pub fn remember(&self, segments: impl IntoIterator<Item = Segment>) {
        let mut index = self.index.lock().expect("index lock");
        for s in segments {
            index.insert(s.last_offset, s);
        }
        while index.len() > INDEX_CACHE_ENTRIES {
            index.pop_first();
        }
    }

    /// The cached index entry that holds `offset`, if cached.
    pub fn cached_segment(&self, offset: i64) -> Option<Segment> {
        let index = self.index.lock().expect("index lock");
        index.range(offset..).next().map(|(_, s)| s.clone()).filter(|s| s.base_offset <= offset)
    }
}

async fn run(
    part: Arc<Partition>,
    mut rx: mpsc::Receiver<Append>,
    mut next_offset: i64,
    mut producers: Producers,
    sink: Sink,
) {
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => match msg { Some(m) => m, None => break },
            _ = part.stop.cancelled() => break,
        };
        if part.fenced.load(Ordering::SeqCst) {
            let _ =
                msg.assigned.send(Err(ServiceError::Fenced { topic: part.topic.clone(), partition: part.partition }));
            continue;
        }
        match producers.check(msg.batch.header()) {
            Ok(Verdict::Append) => {}
            Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                tracing::debug!(base_offset, producer = msg.batch.header().producer_id, "a batch sent again");
                let (done, committed) = part.answer_duplicate(base_offset, last_offset, msg.acks);
                let _ = msg.assigned.send(Ok(Assigned { base_offset, done, committed, duplicate: true }));
                continue;
            }
            Err(reason) => {
                let _ = msg.assigned.send(Err(ServiceError::Sequence {
                    topic: part.topic.clone(),
                    partition: part.partition,
                    reason,
                }));
                continue;
            }
        }
        let base = next_offset;
        let batch = msg.batch.with_base_offset(base);
        producers.record(batch.header(), crate::service::now_ms());
        next_offset = batch.last_offset() + 1;
        part.next_offset.store(next_offset, Ordering::SeqCst);
        let (done_tx, done_rx) = oneshot::channel();
        let done = match msg.acks {
            Acks::None => {
                let _ = done_tx.send(Ok((base, batch.last_offset())));
                None
            }
            Acks::Local | Acks::Durable => Some(done_tx),
        };
        let (committed, committed_rx) = match msg.acks {
            Acks::Local => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        tracing::trace!(base, records = batch.header().record_count, "assigned");
        let pending = Pending { partition: part.clone(), batch, done, committed, permit: msg.permit, wal: None };
        match &sink.wal {
            Some(wal) => {
                if let Err(w) = wal.write(Write { pending, local_ack: msg.acks == Acks::Local }).await {
                    // The WAL has stopped (shutdown): go straight to the flush queue.
                    part.wal_gap(w.pending.batch.last_offset());
                    sink.queue.push(w.pending);
                }
            }
            None => sink.queue.push(pending),
        }
        let _ = msg.assigned.send(Ok(Assigned {
            base_offset: base,
            done: done_rx,
            committed: committed_rx,
            duplicate: false,
        }));
    }
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        let _ = msg.assigned.send(Err(ServiceError::ShuttingDown));
    }
}
