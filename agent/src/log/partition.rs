//! One partition as the agent holds it: a [`Partition`] handle that the
//! service and the cluster share, and, when this agent leads it, an actor
//! task that owns its write state.
//!
//! The actor takes appends in arrival order: it checks idempotent
//! producers' sequences, assigns offsets, and hands each batch to the WAL
//! or the flush queue. Everything that happens to a batch after that comes
//! back to it as a [`Report`] on its mailbox (logged, committed, failed),
//! and it answers producers: the high watermark moves before anyone hears
//! their record is committed, so a consumer that reads after an
//! acknowledgement finds the record.

use std::sync::{Arc, Mutex};

use silt_metadata::catalog::{PartitionId, ProducerState, Segment};
use silt_wire::Batch;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::flush::{Pending, Queue};
use super::wal::{Hold, Wal, Write};
use super::{Acks, Done, Replies, Reply};
use crate::clock::SharedClock;
use crate::core::producers::{Producers, Verdict};
use crate::core::waiters::Waiters;
use crate::error::ServiceError;
use crate::read::SegmentIndex;

const MAILBOX: usize = 1024;
/// How often an owner forgets idle producers in the metadata store.
const SWEEP_EVERY_MS: i64 = 60 * 60 * 1000;

/// A batch's place in the log, and receivers for its acknowledgements.
pub struct Assigned {
    pub base_offset: i64,
    pub done: Done,
    /// acks=local: resolves once the batch is committed (after `done`).
    pub committed: Option<Done>,
    /// The batch was written before (an idempotent producer sent it again):
    /// these are its first offsets, and nothing new is written.
    pub duplicate: bool,
}

/// What a partition shows the rest of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// One past the last committed offset.
    pub high_watermark: i64,
    /// One past the last assigned offset (leaders).
    pub next_offset: i64,
    /// Appends are taken (a leader that is not fenced).
    pub accepting: bool,
    /// The lease is gone, or the log cannot continue here (a flush was
    /// given up): the cluster must demote it.
    pub lost: bool,
}

impl Status {
    /// Whether every assigned offset is committed.
    pub fn drained(&self) -> bool {
        self.high_watermark >= self.next_offset
    }
}

/// What happened to batches after the actor handed them on, and what the
/// cluster tells it.
pub enum Report {
    /// The WAL wrote the batch at `offsets` to disk; `local_ack` answers acks=local.
    Logged { offsets: (i64, i64), local_ack: Reply },
    /// The batch ending at this offset went to the flush queue without the WAL.
    Unlogged(i64),
    /// A run of batches is committed to the index.
    Committed { segment: Segment, batches: Vec<Settled> },
    /// A run of batches will not be committed here.
    Failed { error: ServiceError, batches: Vec<Settled> },
    /// Stop accepting appends (handover, shutdown, a lapsed session).
    Fence,
    /// Accept appends again: the session was renewed and the lease is still ours.
    Resume,
}

/// A batch the flusher is done with: its offsets and what it owes.
pub struct Settled {
    pub offsets: (i64, i64),
    pub replies: Replies,
}

/// What the flusher and the WAL hold of a partition: where to report.
#[derive(Clone)]
pub struct PartitionRef {
    pub id: PartitionId,
    /// The lease epoch its batches were written under.
    pub epoch: u64,
    pub topic: Arc<str>,
    reports: mpsc::UnboundedSender<Report>,
}

impl PartitionRef {
    /// Sends a report; gives it back when the actor has stopped.
    pub fn report(&self, r: Report) -> Result<(), Report> {
        self.reports.send(r).map_err(|e| e.0)
    }
}

struct Append {
    batch: Batch,
    acks: Acks,
    permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Assigned, ServiceError>>,
}

/// Where the actor sends batches once their offsets are assigned, and
/// where it says that it can no longer write.
#[derive(Clone)]
pub struct Sink {
    pub queue: Arc<Queue>,
    pub wal: Option<Arc<Wal>>,
    pub lost: Arc<Lost>,
}

/// Raised when any partition stops being writable here (its lease was
/// lost, or a flush was given up), so the cluster looks for it then
/// rather than every round.
#[derive(Debug, Default)]
pub struct Lost(std::sync::atomic::AtomicBool);

impl Lost {
    pub fn raise(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether it was raised since the last look.
    pub fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// A partition of a topic, led here (with an actor) or followed.
pub struct Partition {
    pub topic: Arc<str>,
    pub id: PartitionId,
    /// The lease epoch this agent writes under (0 for a follower).
    pub epoch: u64,
    /// None for a follower: another agent (or none) owns the partition.
    appends: Option<mpsc::Sender<Append>>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    status: Arc<watch::Sender<Status>>,
    /// Where the owner is, as last seen (for followers' NOT_OWNER answers).
    owner: Mutex<String>,
    /// The first readable offset, as last seen: it only moves forward.
    log_start: std::sync::atomic::AtomicI64,
    pub index: Arc<SegmentIndex>,
    stop: CancellationToken,
}

/// Everything a new leader starts from.
pub struct Start {
    pub topic: Arc<str>,
    pub id: PartitionId,
    pub epoch: u64,
    pub high_watermark: i64,
    pub log_start: i64,
    /// The producers its last owner committed.
    pub producers: Producers,
    /// WAL entries that continue the committed log (see `core::replay`),
    /// in order, each with its in-flight permit.
    pub replay: Vec<(Batch, Hold, OwnedSemaphorePermit)>,
}

impl Partition {
    /// Starts a leader's actor on `tasks`; it stops with `stop`.
    pub fn lead(
        start: Start,
        sink: Sink,
        clock: SharedClock,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Arc<Partition> {
        let (tx, rx) = mpsc::channel(MAILBOX);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let Start { topic, id, epoch, high_watermark, log_start, producers, replay } = start;
        let status = Arc::new(watch::Sender::new(Status {
            high_watermark,
            next_offset: high_watermark,
            accepting: true,
            lost: false,
        }));
        let part = Arc::new(Partition {
            index: Arc::new(SegmentIndex::new(&topic, id)),
            topic: topic.clone(),
            id,
            epoch,
            appends: Some(tx),
            reports: Some(report_tx.clone()),
            status: status.clone(),
            owner: Mutex::new(String::new()),
            log_start: log_start.into(),
            stop: stop.clone(),
        });
        let mut actor = Actor {
            me: PartitionRef { id, epoch, topic: topic.clone(), reports: report_tx },
            status,
            index: part.index.clone(),
            producers,
            next_offset: high_watermark,
            wal_gap: -1,
            duplicates: Waiters::default(),
            local_acks: Waiters::default(),
            sink,
            clock,
        };
        // Replayed batches keep the offsets they were acknowledged at.
        for (batch, hold, permit) in replay {
            actor.replay(batch, hold, permit);
        }
        let span = tracing::info_span!("partition", topic = %topic, partition = id.1, epoch);
        tasks.spawn(actor.run(rx, report_rx, stop).instrument(span));
        part
    }

    /// A partition this agent reads but does not own.
    pub fn follow(
        topic: Arc<str>,
        id: PartitionId,
        high_watermark: i64,
        log_start: i64,
        owner: String,
    ) -> Arc<Partition> {
        Arc::new(Partition {
            index: Arc::new(SegmentIndex::new(&topic, id)),
            topic,
            id,
            epoch: 0,
            appends: None,
            reports: None,
            status: Arc::new(watch::Sender::new(Status {
                high_watermark,
                next_offset: high_watermark,
                accepting: false,
                lost: false,
            })),
            owner: Mutex::new(owner),
            log_start: log_start.into(),
            stop: CancellationToken::new(),
        })
    }

    /// Whether an actor runs it here (fenced or not).
    pub fn has_actor(&self) -> bool {
        self.appends.is_some()
    }

    /// Led here and taking appends.
    pub fn is_leader(&self) -> bool {
        self.has_actor() && self.status().accepting
    }

    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn high_watermark(&self) -> i64 {
        self.status().high_watermark
    }

    pub fn log_start(&self) -> i64 {
        self.log_start.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The log now starts at `offset` (retention trimmed it, here or at the
    /// owner): index entries before it are dropped from the cache.
    pub fn observe_log_start(&self, offset: i64) {
        let before = self.log_start.fetch_max(offset, std::sync::atomic::Ordering::SeqCst);
        if offset > before {
            self.index.forget_below(offset);
        }
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
        if self.has_actor() {
            return;
        }
        self.status.send_if_modified(|s| {
            let newer = hw > s.high_watermark;
            if newer {
                s.high_watermark = hw;
                s.next_offset = hw;
            }
            newer
        });
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
                topic: self.topic.to_string(),
                partition: self.id.1,
                owner: self.owner(),
            });
        };
        let (reply, rx) = oneshot::channel();
        appends.send(Append { batch, acks, permit, reply }).await.map_err(|_| ServiceError::ShuttingDown)?;
        rx.await.map_err(|_| ServiceError::ShuttingDown)?
    }

    /// Tells the actor something (fence, resume).
    pub fn tell(&self, report: Report) {
        if let Some(r) = &self.reports {
            let _ = r.send(report);
        }
    }

    /// Stops the actor; what it still holds is answered with an error.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The actor's state: everything about writing the partition.
struct Actor {
    me: PartitionRef,
    status: Arc<watch::Sender<Status>>,
    index: Arc<SegmentIndex>,
    /// Every producer's batches, assigned or committed.
    producers: Producers,
    next_offset: i64,
    /// The last offset that went to the object store without the WAL: a
    /// local acknowledgement waits until it is committed, or a replay
    /// could not bridge the gap.
    wal_gap: i64,
    /// Answers to re-sent batches whose first copy is not committed yet.
    duplicates: Waiters<(Reply, Option<Reply>, (i64, i64))>,
    /// acks=local answers waiting for `wal_gap` to commit.
    local_acks: Waiters<(Reply, (i64, i64))>,
    sink: Sink,
    clock: SharedClock,
}

impl Actor {
    async fn run(
        mut self,
        mut appends: mpsc::Receiver<Append>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                r = reports.recv() => match r {
                    Some(r) => self.on_report(r),
                    None => break,
                },
                a = appends.recv() => match a {
                    Some(a) => self.on_append(a).await,
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
        }
        // No longer led here: whoever leads next answers these batches.
        let error = ServiceError::Fenced { topic: self.me.topic.to_string(), partition: self.me.id.1 };
        self.fail_waiters(&error);
        self.status.send_modify(|s| s.accepting = false);
    }

    fn status(&self) -> Status {
        *self.status.borrow()
    }

    fn fenced(&self) -> ServiceError {
        ServiceError::Fenced { topic: self.me.topic.to_string(), partition: self.me.id.1 }
    }

    async fn on_append(&mut self, a: Append) {
        if !self.status().accepting {
            let _ = a.reply.send(Err(self.fenced()));
            return;
        }
        let h = *a.batch.header();
        match self.producers.check(&h) {
            Ok(Verdict::Append) => {}
            Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                tracing::debug!(base_offset, producer = h.producer_id, "a batch sent again");
                let assigned = self.duplicate((base_offset, last_offset), a.acks);
                let _ = a.reply.send(Ok(assigned));
                return;
            }
            Err(reason) => {
                let _ = a.reply.send(Err(ServiceError::Sequence {
                    topic: self.me.topic.to_string(),
                    partition: self.me.id.1,
                    reason,
                }));
                return;
            }
        }
        let (done_tx, done) = oneshot::channel();
        let (committed_tx, committed) = match a.acks {
            Acks::Local => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let base_offset = self.next_offset;
        let mut pending = self.assign(a.batch, a.permit, Some(done_tx), committed_tx);
        if a.acks == Acks::None {
            if let Some(done) = pending.replies.done.take() {
                let _ = done.send(Ok((base_offset, pending.batch.last_offset())));
            }
        }
        let _ = a.reply.send(Ok(Assigned { base_offset, done, committed, duplicate: false }));
        self.hand_on(pending, a.acks).await;
    }

    /// Gives a batch its offsets and records it for its producer.
    fn assign(
        &mut self,
        batch: Batch,
        permit: OwnedSemaphorePermit,
        done: Option<Reply>,
        committed: Option<Reply>,
    ) -> Pending {
        let batch = batch.with_base_offset(self.next_offset);
        let h = *batch.header();
        let now = self.clock.now_ms();
        self.producers.record(&h, now);
        let producer: Option<(i64, ProducerState)> =
            self.producers.get(h.producer_id).filter(|_| h.is_idempotent()).map(|s| (h.producer_id, s.clone()));
        let expired = self.producers.take_expired(now, SWEEP_EVERY_MS);
        self.next_offset = batch.last_offset() + 1;
        let next = self.next_offset;
        self.status.send_modify(|s| s.next_offset = next);
        tracing::trace!(base = h.base_offset, records = h.record_count, "assigned");
        Pending {
            part: self.me.clone(),
            batch,
            replies: Replies { done, committed, wal: None, permit },
            producer,
            expired,
        }
    }

    /// A WAL entry from before a restart, acknowledged then: it goes
    /// straight to the flush queue under its old offsets.
    fn replay(&mut self, batch: Batch, hold: Hold, permit: OwnedSemaphorePermit) {
        let mut pending = self.assign(batch, permit, None, None);
        pending.replies.wal = Some(hold);
        self.sink.queue.push(pending);
    }

    async fn hand_on(&mut self, pending: Pending, acks: Acks) {
        match &self.sink.wal {
            Some(wal) => {
                let write = Write { pending, local_ack: acks == Acks::Local, log: acks != Acks::Durable };
                if let Err(w) = wal.write(write).await {
                    // The WAL has stopped (shutdown): straight to the flush queue.
                    self.wal_gap = self.wal_gap.max(w.pending.batch.last_offset());
                    self.sink.queue.push(w.pending);
                }
            }
            None => self.sink.queue.push(pending),
        }
    }

    /// The answer to a batch written before: at once when its first copy is
    /// committed (or for acks=none), else once it is.
    fn duplicate(&mut self, offsets: (i64, i64), acks: Acks) -> Assigned {
        let (done_tx, done) = oneshot::channel();
        let (committed_tx, committed) = match acks {
            Acks::Local => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        if acks == Acks::None || self.status().high_watermark > offsets.1 {
            for reply in std::iter::once(done_tx).chain(committed_tx) {
                let _ = reply.send(Ok(offsets));
            }
        } else {
            self.duplicates.wait(offsets.1, (done_tx, committed_tx, offsets));
        }
        Assigned { base_offset: offsets.0, done, committed, duplicate: true }
    }

    fn on_report(&mut self, r: Report) {
        match r {
            Report::Logged { offsets, local_ack } => {
                if self.status().high_watermark > self.wal_gap {
                    let _ = local_ack.send(Ok(offsets));
                } else {
                    self.local_acks.wait(self.wal_gap, (local_ack, offsets));
                }
            }
            Report::Unlogged(last_offset) => self.wal_gap = self.wal_gap.max(last_offset),
            Report::Committed { segment, batches } => {
                let hw = segment.last_offset + 1;
                self.index.remember([segment]);
                self.status.send_modify(|s| s.high_watermark = s.high_watermark.max(hw));
                for b in batches {
                    b.replies.commit(b.offsets);
                }
                for (done, committed, offsets) in self.duplicates.committed(hw) {
                    for reply in std::iter::once(done).chain(committed) {
                        let _ = reply.send(Ok(offsets));
                    }
                }
                for (reply, offsets) in self.local_acks.committed(hw) {
                    let _ = reply.send(Ok(offsets));
                }
            }
            Report::Failed { error, batches } => {
                tracing::warn!(error = %crate::error::describe(&error), "batches not committed; this partition stops here");
                for b in batches {
                    b.replies.fail(&error);
                }
                // Repeats waiting on these batches (or later ones) wait in vain.
                self.fail_waiters(&error);
                // Offsets were given out that will never be committed here: a
                // new epoch (here or elsewhere) starts again from the high watermark.
                self.status.send_modify(|s| {
                    s.accepting = false;
                    s.lost = true;
                });
                self.sink.lost.raise();
            }
            Report::Fence => self.status.send_modify(|s| s.accepting = false),
            Report::Resume => self.status.send_modify(|s| s.accepting = !s.lost),
        }
        // Fenced with nothing left to commit: re-sent batches' first copies
        // will not be committed here; their producers ask the next owner.
        let s = self.status();
        if !s.accepting && s.drained() && !self.duplicates.is_empty() {
            let error = self.fenced();
            for (done, committed, _) in self.duplicates.drain() {
                for reply in std::iter::once(done).chain(committed) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn fail_waiters(&mut self, error: &ServiceError) {
        for (done, committed, _) in self.duplicates.drain() {
            for reply in std::iter::once(done).chain(committed) {
                let _ = reply.send(Err(error.clone()));
            }
        }
        for (reply, _) in self.local_acks.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// Settles what the flusher could not report to a stopped actor.
pub fn settle_without_actor(report: Report) {
    match report {
        Report::Committed { batches, .. } => {
            for b in batches {
                b.replies.commit(b.offsets);
            }
        }
        Report::Failed { error, batches } => {
            for b in batches {
                b.replies.fail(&error);
            }
        }
        // Nobody may acknowledge from the WAL for a partition no longer led
        // here: its producer hears when the batch is committed, or not.
        Report::Logged { .. } | Report::Unlogged(_) | Report::Fence | Report::Resume => {}
    }
}

#[cfg(test)]
mod tests {
    //! The actor, driven step by step: appends in, reports in, answers out.
    //! Time comes from a manual clock; nothing sleeps.

    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::ManualClock;
    use crate::core::flush::Policy;
    use crate::log::Outcome;
    use silt_wire::{BatchBuilder, Compression};

    struct Harness {
        part: Arc<Partition>,
        queue: Arc<Queue>,
        permits: Arc<Semaphore>,
        _tasks: TaskTracker,
    }

    fn batch(producer: Option<(i64, i32)>, records: usize) -> Batch {
        let mut b = BatchBuilder::new(Compression::None);
        if let Some((id, seq)) = producer {
            b = b.with_producer(id, 0, seq);
        }
        for i in 0..records {
            b.push(0, None, format!("r{i}").as_bytes(), &[]);
        }
        b.build().unwrap()
    }

    fn harness() -> Harness {
        let queue = Arc::new(Queue::new(Policy { max_bytes: 1 << 20, interval: Duration::from_secs(60) }));
        let tasks = TaskTracker::new();
        let start = Start {
            topic: "t".into(),
            id: (1, 0),
            epoch: 1,
            high_watermark: 0,
            log_start: 0,
            producers: Producers::default(),
            replay: Vec::new(),
        };
        let sink = Sink { queue: queue.clone(), wal: None, lost: Arc::default() };
        let part = Partition::lead(start, sink, ManualClock::new(1_000), &tasks, CancellationToken::new());
        Harness { part, queue, permits: Arc::new(Semaphore::new(1 << 30)), _tasks: tasks }
    }

    impl Harness {
        async fn append(&self, b: Batch, acks: Acks) -> Result<Assigned, ServiceError> {
            let permit = self.permits.clone().acquire_many_owned(1).await.unwrap();
            self.part.append(b, acks, permit).await
        }

        /// Takes what the actor handed to the flush queue.
        fn pending(&self) -> Vec<Pending> {
            self.queue.take()
        }

        /// Reports `batches` committed as one segment.
        fn commit(&self, batches: Vec<Pending>) {
            let (base, last) = (batches[0].batch.header().base_offset, batches.last().unwrap().batch.last_offset());
            let segment = Segment {
                base_offset: base,
                last_offset: last,
                object: "o".into(),
                start: 0,
                len: 1,
                max_timestamp: 0,
            };
            let batches = batches.into_iter().map(Pending::settle).collect();
            self.part.tell(Report::Committed { segment, batches });
        }

        async fn status(&self, what: &str, check: impl Fn(&Status) -> bool) {
            let mut rx = self.part.subscribe();
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| check(s)))
                .await
                .unwrap_or_else(|_| panic!("status never became {what}: {:?}", self.part.status()))
                .unwrap();
        }
    }

    fn answered(done: &mut Done) -> Option<Outcome> {
        done.try_recv().ok()
    }

    async fn settled(done: Done) -> Outcome {
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("answered")
            .unwrap_or(Err(ServiceError::ShuttingDown))
    }

    #[tokio::test]
    async fn a_resent_batch_waits_for_its_first_copy_then_gets_its_offsets() {
        let h = harness();
        let first = h.append(batch(Some((7, 0)), 2), Acks::Durable).await.unwrap();
        assert_eq!((first.base_offset, first.duplicate), (0, false));
        let mut again = h.append(batch(Some((7, 0)), 2), Acks::Durable).await.unwrap();
        assert_eq!((again.base_offset, again.duplicate), (0, true), "answered with its first offsets");
        assert!(answered(&mut again.done).is_none(), "not before the first copy is committed");
        let pending = h.pending();
        assert_eq!(pending.len(), 1, "written once");
        h.commit(pending);
        assert_eq!(settled(first.done).await.unwrap(), (0, 1));
        assert_eq!(settled(again.done).await.unwrap(), (0, 1));
        // Once committed, a repeat is answered at once; the next batch follows on.
        let mut late = h.append(batch(Some((7, 0)), 2), Acks::Durable).await.unwrap();
        assert_eq!(answered(&mut late.done).map(|o| o.unwrap()), Some((0, 1)));
        assert_eq!(h.append(batch(Some((7, 2)), 1), Acks::Durable).await.unwrap().base_offset, 2);
    }

    #[tokio::test]
    async fn a_fenced_owners_pending_commit_fails_and_so_do_repeats_waiting_on_it() {
        let h = harness();
        let first = h.append(batch(Some((7, 0)), 1), Acks::Durable).await.unwrap();
        let again = h.append(batch(Some((7, 0)), 1), Acks::Durable).await.unwrap();
        let pending = h.pending();
        // The commit finds another owner's epoch on the lease.
        let error = ServiceError::Fenced { topic: "t".into(), partition: 0 };
        h.part.tell(Report::Failed { error, batches: pending.into_iter().map(Pending::settle).collect() });
        assert!(matches!(settled(first.done).await, Err(ServiceError::Fenced { .. })));
        assert!(matches!(settled(again.done).await, Err(ServiceError::Fenced { .. })));
        h.status("lost", |s| s.lost && !s.accepting).await;
        assert!(matches!(h.append(batch(None, 1), Acks::Durable).await, Err(ServiceError::Fenced { .. })));
        // A resume (a renewed session) does not bring a lost partition back.
        h.part.tell(Report::Resume);
        assert!(matches!(h.append(batch(None, 1), Acks::Durable).await, Err(ServiceError::Fenced { .. })));
    }

    #[tokio::test]
    async fn the_session_lapses_during_a_flush() {
        let h = harness();
        let a = h.append(batch(None, 3), Acks::Durable).await.unwrap();
        let in_flight = h.pending();
        // The session lapses: no more appends, but what is on its way still commits.
        h.part.tell(Report::Fence);
        h.status("fenced", |s| !s.accepting).await;
        assert!(matches!(h.append(batch(None, 1), Acks::Durable).await, Err(ServiceError::Fenced { .. })));
        h.commit(in_flight);
        assert_eq!(settled(a.done).await.unwrap(), (0, 2));
        h.status("drained", |s| s.drained() && s.high_watermark == 3).await;
        // Renewed, and the lease is still ours: carry on where the log ends.
        h.part.tell(Report::Resume);
        h.status("accepting", |s| s.accepting).await;
        assert_eq!(h.append(batch(None, 1), Acks::Durable).await.unwrap().base_offset, 3);
    }

    #[tokio::test]
    async fn a_local_ack_waits_for_an_unlogged_batch_before_it() {
        let h = harness();
        let a = h.append(batch(None, 1), Acks::Durable).await.unwrap();
        let mut b = h.append(batch(None, 1), Acks::Local).await.unwrap();
        let mut pending = h.pending();
        // a bypassed the WAL; b was logged.
        h.part.tell(Report::Unlogged(0));
        let local_ack = pending[1].replies.done.take().unwrap();
        h.part.tell(Report::Logged { offsets: (1, 1), local_ack });
        tokio::task::yield_now().await;
        assert!(answered(&mut b.done).is_none(), "a replay could not bridge offset 0");
        let first = pending.remove(0);
        h.commit(vec![first]);
        assert_eq!(settled(a.done).await.unwrap(), (0, 0));
        assert_eq!(settled(b.done).await.unwrap(), (1, 1), "acknowledged once the gap is committed");
        assert!(answered(b.committed.as_mut().unwrap()).is_none(), "b itself is not committed yet");
        h.commit(pending);
        assert_eq!(settled(b.committed.unwrap()).await.unwrap(), (1, 1));
    }

    #[tokio::test]
    async fn sequence_errors_write_nothing() {
        let h = harness();
        h.append(batch(Some((7, 0)), 2), Acks::Durable).await.unwrap();
        let gap = h.append(batch(Some((7, 5)), 1), Acks::Durable).await;
        assert!(matches!(gap, Err(ServiceError::Sequence { .. })), "a gap is refused");
        let unknown = h.append(batch(Some((8, 3)), 1), Acks::Durable).await;
        assert!(matches!(unknown, Err(ServiceError::Sequence { .. })), "an unknown producer starts at 0");
        assert_eq!(h.pending().len(), 1);
        assert_eq!(h.part.status().next_offset, 2);
    }
}
