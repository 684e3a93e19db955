//! The write path's second half: buffered batches from every owned
//! partition become one object, one PUT and one metadata transaction.
//!
//! `core::flush::Policy` decides when; [`Queue`] holds what waits; [`run`]
//! is the loop that drives them. Each partition hears how its batches went
//! through its mailbox ([`Report`]); the flusher never calls into it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::{path::Path, ObjectStore, PutMode, PutOptions};
use silt_metadata::catalog::{FlushEntry, PartitionId, ProducerState, Segment};
use silt_metadata::{Catalog, CatalogError};
use silt_wire::Batch;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::partition::{settle_without_actor, PartitionRef, Report, Settled};
use super::Replies;
use crate::clock::SharedClock;
use crate::core::flush::Policy;
use crate::error::ServiceError;
use crate::format::object;
use crate::metrics::{self, Metrics};
use crate::read::RecentObjects;

/// A batch with its offsets assigned, waiting to be flushed.
pub struct Pending {
    pub part: PartitionRef,
    pub batch: Batch,
    pub replies: Replies,
    /// An idempotent batch's producer, with its state as of this batch.
    pub producer: Option<(i64, ProducerState)>,
    /// Producers idle past their expiry, to forget with this batch's commit.
    pub expired: Vec<i64>,
}

impl Pending {
    pub(crate) fn settle(self) -> Settled {
        Settled { offsets: (self.batch.header().base_offset, self.batch.last_offset()), replies: self.replies }
    }
}

#[derive(Default)]
struct Buffer {
    batches: Vec<Pending>,
    bytes: usize,
    oldest: Option<std::time::Instant>,
}

pub struct Queue {
    buffer: std::sync::Mutex<Buffer>,
    wake: Notify,
    policy: Policy,
}

impl Queue {
    pub fn new(policy: Policy) -> Self {
        Queue { buffer: Default::default(), wake: Notify::new(), policy }
    }

    pub fn push(&self, pending: Pending) {
        let mut b = self.buffer.lock().expect("flush buffer lock");
        let was_empty = b.batches.is_empty();
        b.bytes += pending.batch.bytes().len();
        b.batches.push(pending);
        if was_empty {
            b.oldest = Some(std::time::Instant::now());
        }
        if was_empty || b.bytes >= self.policy.max_bytes {
            self.wake.notify_one();
        }
    }

    fn due(&self) -> Option<Instant> {
        let b = self.buffer.lock().expect("flush buffer lock");
        self.policy.due(b.bytes, b.oldest).map(Instant::from_std)
    }

    pub(crate) fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.buffer.lock().expect("flush buffer lock")).batches
    }
}

pub struct Flusher {
    pub queue: Arc<Queue>,
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Catalog,
    pub agent_id: String,
    pub recent: Arc<RecentObjects>,
    pub seq: std::sync::atomic::AtomicU64,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// An index commit still failing this long after its object was
    /// created is given up (collection counts on it: see `upkeep::gc`).
    pub give_up_after: Duration,
}

/// Flushes until `stop` is cancelled, then flushes what is left once more.
///
/// Up to `max_uploads` objects are uploaded at once, so one slow PUT does not
/// stall the rest; their index commits still happen one at a time, in flush
/// order, which keeps every partition's offsets in order.
pub async fn run(flusher: Arc<Flusher>, stop: CancellationToken, max_uploads: usize) {
    // The committer holds one upload; the channel holds the rest.
    let (tx, rx) = mpsc::channel::<JoinHandle<Uploaded>>(max_uploads.saturating_sub(1).max(1));
    let committer = tokio::spawn(commit_in_order(flusher.clone(), rx, stop.clone()).in_current_span());
    loop {
        let due = flusher.queue.due();
        let now = Instant::now();
        match due {
            Some(at) if at <= now => {
                if let Some(upload) = flusher.start_upload(&stop) {
                    // Waits here while `max_uploads` are in flight: the buffer
                    // then grows, and producers slow down at the in-flight limit.
                    if tx.send(upload).await.is_err() {
                        break;
                    }
                }
            }
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = flusher.queue.wake.notified() => {}
                _ = stop.cancelled() => break,
            },
            None => tokio::select! {
                _ = flusher.queue.wake.notified() => {}
                _ = stop.cancelled() => break,
            },
        }
    }
    // Graceful stop: what was accepted gets one more chance to become
    // durable, with a bounded number of attempts (the token is cancelled),
    // so an unreachable store cannot hold shutdown forever.
    if let Some(upload) = flusher.start_upload(&stop) {
        let _ = tx.send(upload).await;
    }
    drop(tx);
    if let Err(e) = committer.await {
        tracing::error!(error = %e, "the index committer failed");
    }
}

async fn commit_in_order(
    flusher: Arc<Flusher>,
    mut uploads: mpsc::Receiver<JoinHandle<Uploaded>>,
    stop: CancellationToken,
) {
    while let Some(upload) = uploads.recv().await {
        match upload.await {
            Ok(uploaded) => flusher.finish(uploaded, &stop).await,
            Err(e) => tracing::error!(error = %e, "an upload task failed"),
        }
    }
}

/// An object built from one flush, on its way to the store.
struct Prepared {
    name: String,
    data: object::Object,
    entries: Vec<object::Entry>,
    runs: Vec<Vec<Pending>>,
    sealed: std::time::Instant,
}

/// The outcome of an upload: the object is stored, or its batches failed.
type Uploaded = Option<Prepared>;

/// Backoff between retries of a failed PUT or commit.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(5))
}

const FINAL_ATTEMPTS: u32 = 6;

impl Flusher {
    /// Takes what is buffered, builds its object and starts uploading it.
    fn start_upload(self: &Arc<Self>, stop: &CancellationToken) -> Option<JoinHandle<Uploaded>> {
        let batches = self.queue.take();
        if batches.is_empty() {
            return None;
        }
        // Group by partition, keeping each partition's offset order.
        let mut runs: Vec<Vec<Pending>> = Vec::new();
        let mut index: HashMap<PartitionId, usize> = HashMap::new();
        for p in batches {
            let id = p.part.id;
            let slot = *index.entry(id).or_insert_with(|| {
                runs.push(Vec::new());
                runs.len() - 1
            });
            runs[slot].push(p);
        }
        let mut builder = object::Builder::default();
        for run in &runs {
            for p in run {
                builder.push(p.part.id.0, p.part.id.1, &p.batch);
            }
        }
        let (data, entries) = builder.finish();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = object::name(&self.agent_id, self.clock.now_ms(), seq);
        let prepared = Prepared { name, data, entries, runs, sealed: std::time::Instant::now() };
        let (this, stop) = (self.clone(), stop.clone());
        Some(tokio::spawn(
            async move {
                match this.put(&prepared.name, &prepared.data, &stop).await {
                    Ok(()) => Some(prepared),
                    Err(e) => {
                        tracing::error!(object = %prepared.name, error = %e, "giving up on a flush; its producers get an error");
                        fail_all(prepared.runs, ServiceError::Storage(Arc::new(e)));
                        None
                    }
                }
            }
            .in_current_span(),
        ))
    }

    /// Commits an uploaded object's index entries and reports to each partition.
    async fn finish(&self, uploaded: Uploaded, stop: &CancellationToken) {
        let Some(Prepared { name, data, entries, runs, sealed }) = uploaded else { return };
        // One footer entry per partition run: the pairing below relies on it.
        if entries.len() != runs.len() {
            tracing::error!(object = %name, entries = entries.len(), runs = runs.len(),
                "an object's runs do not match its partitions; failing its batches");
            fail_all(runs, ServiceError::Corrupt(format!("object {name} was built with non-contiguous offsets")));
            return;
        }
        metrics::add(&self.metrics.objects_written, 1);
        metrics::add(&self.metrics.object_bytes_written, data.len() as u64);
        self.metrics.flush_bytes.observe(data.len() as f64);
        self.recent.insert(name.clone(), data);
        let flush_entries: Vec<FlushEntry> =
            entries.iter().zip(&runs).map(|(e, run)| flush_entry(&name, e, run)).collect();
        let outcome = match self.commit(&name, &flush_entries, stop).await {
            Ok(o) => {
                metrics::add(&self.metrics.index_commits, 1);
                self.metrics.flush_seconds.observe(sealed.elapsed().as_secs_f64());
                o
            }
            Err(e) => {
                tracing::error!(object = %name, error = %crate::error::describe(&e), "giving up on an index commit; its producers get an error");
                fail_all(runs, ServiceError::NotCommitted(Arc::new(e)));
                return;
            }
        };
        for (entry, run) in flush_entries.into_iter().zip(runs) {
            let part = run[0].part.clone();
            let batches: Vec<Settled> = run.into_iter().map(Pending::settle).collect();
            let report = if outcome.fenced.contains(&part.id) {
                tracing::warn!(topic = %part.topic, partition = part.id.1, "lease lost; failing unflushed batches");
                Report::Failed {
                    error: ServiceError::Fenced { topic: part.topic.to_string(), partition: part.id.1 },
                    batches,
                }
            } else if outcome.deleted.contains(&part.id) {
                Report::Failed { error: ServiceError::UnknownTopic(part.topic.to_string()), batches }
            } else {
                metrics::add(
                    &self.metrics.committed_records,
                    (entry.segment.last_offset - entry.segment.base_offset + 1) as u64,
                );
                Report::Committed { segment: entry.segment, batches }
            };
            if let Err(report) = part.report(report) {
                settle_without_actor(report);
            }
        }
    }

    async fn put(
        &self,
        name: &str,
        data: &object::Object,
        stop: &CancellationToken,
    ) -> Result<(), object_store::Error> {
        let path = Path::from(name);
        let mut attempt = 0;
        loop {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, data.payload(), opts).await {
                Ok(_) => return Ok(()),
                // A retried PUT that had in fact landed: the object is ours.
                Err(object_store::Error::AlreadyExists { .. }) if attempt > 0 => return Ok(()),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(object = %name, attempt, error = %e, "object PUT failed; retrying");
                    if stop.is_cancelled() && attempt >= FINAL_ATTEMPTS {
                        return Err(e);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                        _ = stop.cancelled(), if attempt >= FINAL_ATTEMPTS => return Err(e),
                    }
                }
            }
        }
    }

    async fn commit(
        &self,
        object: &str,
        entries: &[FlushEntry],
        stop: &CancellationToken,
    ) -> Result<silt_metadata::catalog::FlushOutcome, CatalogError> {
        let mut attempt = 0;
        loop {
            match self.catalog.commit_flush(&self.agent_id, entries).await {
                Ok(o) => return Ok(o),
                Err(e @ CatalogError::Corrupt { .. }) => return Err(e),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %e, "index commit failed; retrying");
                    if stop.is_cancelled() && attempt >= FINAL_ATTEMPTS {
                        return Err(e);
                    }
                    let age = object::created_ms(object).map(|at| self.clock.now_ms().saturating_sub(at));
                    if age.is_some_and(|age| age > self.give_up_after.as_millis() as i64) {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
}

/// Tells each run's partition that its batches will not be committed.
fn fail_all(runs: Vec<Vec<Pending>>, error: ServiceError) {
    for run in runs {
        let part = run[0].part.clone();
        let report = Report::Failed { error: error.clone(), batches: run.into_iter().map(Pending::settle).collect() };
        if let Err(report) = part.report(report) {
            settle_without_actor(report);
        }
    }
}

/// What a run's commit writes: its segment and, for each idempotent
/// producer in it, its state as of the run's end.
fn flush_entry(object: &str, e: &object::Entry, run: &[Pending]) -> FlushEntry {
    let mut producers: Vec<(i64, ProducerState)> = Vec::new();
    let mut expired = Vec::new();
    for p in run {
        if let Some((id, state)) = &p.producer {
            match producers.iter_mut().find(|(pid, _)| pid == id) {
                Some(slot) => slot.1 = state.clone(),
                None => producers.push((*id, state.clone())),
            }
        }
        expired.extend(&p.expired);
    }
    FlushEntry {
        topic_id: e.topic_id,
        partition: e.partition,
        epoch: run[0].part.epoch,
        segment: Segment {
            base_offset: e.base_offset,
            last_offset: e.last_offset,
            object: object.to_string(),
            start: e.start,
            len: e.len,
            max_timestamp: e.max_timestamp,
        },
        producers,
        expired,
    }
}
