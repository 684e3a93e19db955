//! The write path's second half: buffered batches from every owned
//! partition become one object, one PUT and one metadata transaction.
//!
//! [`Policy`] decides when (plain, clock passed in); [`Queue`] holds what
//! waits; [`run`] is the loop that drives them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::{path::Path, ObjectStore, PutMode, PutOptions, PutPayload};
use silt_metadata::catalog::{FlushEntry, Segment};
use silt_metadata::{Catalog, CatalogError};
use silt_wire::Batch;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::object;
use crate::partition::Partition;
use crate::read::RecentObjects;

/// When to flush: at `max_bytes` buffered, or `interval` after the oldest
/// buffered batch arrived, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_bytes: usize,
    pub interval: Duration,
}

impl Policy {
    /// The instant the buffer is due, or None when it is empty.
    pub fn due(&self, bytes: usize, oldest: Option<Instant>) -> Option<Instant> {
        let oldest = oldest?;
        Some(if bytes >= self.max_bytes { oldest } else { oldest + self.interval })
    }
}

/// A batch with its offsets assigned, waiting to be flushed.
pub struct Pending {
    pub partition: Arc<Partition>,
    pub batch: Batch,
    /// Resolved once the batch is durable (None: acks=none, already answered).
    pub done: Option<oneshot::Sender<Result<(i64, i64), ServiceError>>>,
    /// acks=local: resolved once the batch is committed (`done` may resolve
    /// earlier, from the WAL).
    pub committed: Option<oneshot::Sender<Result<(i64, i64), ServiceError>>>,
    /// Holds the batch's share of the in-flight byte limit until it is durable.
    pub permit: OwnedSemaphorePermit,
    /// Keeps the batch's WAL file until the batch is committed.
    pub wal: Option<crate::wal::Hold>,
}

#[derive(Default)]
struct Buffer {
    batches: Vec<Pending>,
    bytes: usize,
    oldest: Option<Instant>,
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
            b.oldest = Some(Instant::now());
        }
        if was_empty || b.bytes >= self.policy.max_bytes {
            self.wake.notify_one();
        }
    }

    fn due(&self) -> Option<Instant> {
        let b = self.buffer.lock().expect("flush buffer lock");
        self.policy.due(b.bytes, b.oldest)
    }

    fn take(&self) -> (Vec<Pending>, usize) {
        let b = std::mem::take(&mut *self.buffer.lock().expect("flush buffer lock"));
        (b.batches, b.bytes)
    }
}

pub struct Flusher {
    pub queue: Arc<Queue>,
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Catalog,
    pub agent_id: String,
    pub recent: Arc<RecentObjects>,
    pub seq: std::sync::atomic::AtomicU64,
    pub metrics: Arc<crate::metrics::Metrics>,
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
    data: Bytes,
    entries: Vec<object::Entry>,
    runs: Vec<Vec<Pending>>,
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
        let (batches, bytes) = self.queue.take();
        if batches.is_empty() {
            return None;
        }
        // Group by partition, keeping each partition's offset order.
        let mut runs: Vec<Vec<Pending>> = Vec::new();
        let mut index: std::collections::HashMap<(u64, u32), usize> = Default::default();
        for p in batches {
            let id = p.partition.id();
            let slot = *index.entry(id).or_insert_with(|| {
                runs.push(Vec::new());
                runs.len() - 1
            });
            runs[slot].push(p);
        }
        let mut builder = object::Builder::with_capacity(bytes);
        for run in &runs {
            for p in run {
                builder.push(p.partition.topic_id, p.partition.partition, &p.batch);
            }
        }
        let (data, entries) = builder.finish();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prepared = Prepared { name: object_name(&self.agent_id, seq), data, entries, runs };
        let (this, stop) = (self.clone(), stop.clone());
        Some(tokio::spawn(
            async move {
                match this.put(&prepared.name, prepared.data.clone(), &stop).await {
                    Ok(()) => Some(prepared),
                    Err(e) => {
                        tracing::error!(object = %prepared.name, error = %e, "giving up on a flush; its producers get an error");
                        fail_all(prepared.runs, || ServiceError::Storage(clone_store_error(&e)));
                        None
                    }
                }
            }
            .in_current_span(),
        ))
    }

    /// Commits an uploaded object's index entries and answers its producers.
    async fn finish(&self, uploaded: Uploaded, stop: &CancellationToken) {
        let Some(Prepared { name, data, entries, runs: order }) = uploaded else { return };
        // One footer entry per partition run: the pairing below relies on it.
        if entries.len() != order.len() {
            tracing::error!(object = %name, entries = entries.len(), runs = order.len(),
                "an object's runs do not match its partitions; failing its batches");
            fail_all(order, || ServiceError::Corrupt(format!("object {name} was built with non-contiguous offsets")));
            return;
        }
        crate::metrics::add(&self.metrics.objects_written, 1);
        crate::metrics::add(&self.metrics.object_bytes_written, data.len() as u64);
        self.recent.insert(name.clone(), data);
        let mut flush_entries = Vec::with_capacity(entries.len());
        for (e, run) in entries.iter().zip(&order) {
            let (producers, expired) = run[0].partition.producers_after(run.iter().map(|p| p.batch.header()));
            flush_entries.push(FlushEntry {
                topic_id: e.topic_id,
                partition: e.partition,
                epoch: run[0].partition.epoch,
                segment: Segment {
                    base_offset: e.base_offset,
                    last_offset: e.last_offset,
                    object: name.clone(),
                    start: e.start,
                    len: e.len,
                    max_timestamp: e.max_timestamp,
                },
                producers,
                expired,
            });
        }
        let outcome = match self.commit(&flush_entries, stop).await {
            Ok(o) => {
                crate::metrics::add(&self.metrics.index_commits, 1);
                o
            }
            Err(e) => {
                tracing::error!(object = %name, error = %e, "giving up on an index commit; its producers get an error");
                let message = e.to_string();
                fail_all(order, || ServiceError::NotCommitted(message.clone()));
                return;
            }
        };
        for (entry, run) in flush_entries.into_iter().zip(order) {
            let part = run[0].partition.clone();
            let id = part.id();
            if outcome.fenced.contains(&id) {
                tracing::warn!(topic = %part.topic, partition = part.partition, "lease lost; failing unflushed batches");
                part.fence();
                fail_all(vec![run], || ServiceError::Fenced { topic: part.topic.clone(), partition: part.partition });
                continue;
            }
            if outcome.deleted.contains(&id) {
                fail_all(vec![run], || ServiceError::UnknownTopic(part.topic.clone()));
                continue;
            }
            part.producers_committed(entry.producers);
            part.committed(entry.segment);
            for p in run {
                let h = p.batch.header();
                let offsets = (h.base_offset, p.batch.last_offset());
                if let Some(done) = p.done {
                    let _ = done.send(Ok(offsets));
                }
                if let Some(committed) = p.committed {
                    let _ = committed.send(Ok(offsets));
                }
                if let Some(hold) = p.wal {
                    hold.release();
                }
            }
        }
    }

    async fn put(&self, name: &str, data: Bytes, stop: &CancellationToken) -> Result<(), object_store::Error> {
        let path = Path::from(name);
        let mut attempt = 0;
        loop {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from_bytes(data.clone()), opts).await {
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
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
}

fn fail_all(runs: Vec<Vec<Pending>>, error: impl Fn() -> ServiceError) {
    for run in runs {
        for p in run {
            if let Some(done) = p.done {
                let _ = done.send(Err(error()));
            }
            if let Some(committed) = p.committed {
                let _ = committed.send(Err(error()));
            }
        }
    }
}

fn clone_store_error(e: &object_store::Error) -> object_store::Error {
    object_store::Error::Generic { store: "object store", source: e.to_string().into() }
}

/// Object names are unique for all time: agent id, wall-clock time and a
/// sequence number, behind a short hash prefix that spreads keys across an
/// S3 bucket's partitions.
fn object_name(agent_id: &str, seq: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let suffix: u32 = rand::random();
    let stem = format!("{agent_id}-{now:013}-{seq:010}-{suffix:08x}");
    let spread = crc32c::crc32c(stem.as_bytes()) & 0xffff;
    format!("data/{spread:04x}/{stem}.silt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_flushes_at_size_or_interval() {
        let p = Policy { max_bytes: 100, interval: Duration::from_millis(250) };
        let t0 = Instant::now();
        assert_eq!(p.due(0, None), None);
        assert_eq!(p.due(10, Some(t0)), Some(t0 + Duration::from_millis(250)));
        assert_eq!(p.due(100, Some(t0)), Some(t0));
    }

    #[test]
    fn object_names_are_unique_and_spread() {
        let a = object_name("agent", 1);
        let b = object_name("agent", 1);
        assert_ne!(a, b);
        assert!(a.starts_with("data/") && a.ends_with(".silt"));
    }
}
