//! The producer: records accumulate per partition into batches, which are
//! compressed and sent when full or after `linger`. A batch's offsets are
//! fixed when the agent answers `ProduceAssigned`; only then is the next
//! batch of that partition sent, so per-partition order holds while up to
//! `max_in_flight` batches per partition wait to become durable.
//!
//! Idempotence (the default with acks=local or durable): the producer gets
//! an id and numbers each partition's records. When a batch's answer is
//! lost (its owner died, the connection broke, the lease moved), the
//! producer sends it and every later unanswered batch of that partition
//! again, in order, to whoever owns the partition now. An owner that holds
//! a batch already answers with its first offsets, so each record is
//! written once and in order.
//!
//! - this module: the API ([`Producer`], [`ProducerRecord`], [`Delivery`]).
//! - `accumulator`: records gather into per-partition batches.
//! - `inflight`: a partition's batches between sending and settling (a pure state machine).
//! - `driver`: the per-partition sender tasks, on the network.

mod accumulator;
mod driver;
mod inflight;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use silt_wire::{Acks, BatchBuilder, Compression, Header, PRODUCER_WINDOW};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::Client;
use crate::error::ClientError;
use crate::partitioner::partition_for_key;
use crate::router::Router;
use accumulator::Accumulator;

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub compression: Compression,
    /// A partition's batch is sent once it holds this many (uncompressed) bytes.
    pub batch_bytes: usize,
    /// ... or this long after its first record, whichever comes first.
    pub linger: Duration,
    /// Records buffered but not yet acknowledged, in bytes; `send` waits for room.
    pub buffer_bytes: usize,
    /// Batches per partition sent but not yet acknowledged.
    pub max_in_flight: usize,
    /// Retries of a batch the agent refused with a retriable error before
    /// assigning it offsets (so a retry can neither reorder nor duplicate),
    /// and, with idempotence, rounds of re-sending unanswered batches.
    pub retries: u32,
    /// Number records so that re-sent batches are written exactly once
    /// (only with acks=local or durable). Needs `max_in_flight` at most
    /// [`silt_wire::PRODUCER_WINDOW`].
    pub idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::Durable,
            compression: Compression::Zstd,
            batch_bytes: 1 << 20,
            linger: Duration::from_millis(5),
            buffer_bytes: 64 << 20,
            max_in_flight: 16,
            retries: 10,
            idempotence: true,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    /// None: a tombstone, which deletes the key from a key-compacted topic.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Pins the record to a partition; otherwise the key decides, and
    /// keyless records spread over partitions batch by batch.
    pub partition: Option<u32>,
    /// Milliseconds since the Unix epoch [default: now].
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(value: impl Into<Bytes>) -> Self {
        ProducerRecord { value: Some(value.into()), ..Default::default() }
    }
    /// A record with a key and no value: on a key-compacted topic
    /// (`cleanup.policy=compact`), it deletes the key.
    pub fn tombstone(key: impl Into<Bytes>) -> Self {
        ProducerRecord { key: Some(key.into()), ..Default::default() }
    }
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header { name: name.into(), value: value.into() });
        self
    }
    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    pub offset: i64,
}

type Outcome = Option<Result<i64, ClientError>>;

/// Resolves when the record is acknowledged (or failed). A clone resolves
/// the same way.
#[derive(Clone)]
pub struct Delivery {
    slot: watch::Receiver<Outcome>,
    partition: u32,
    index: i64,
}

impl Delivery {
    /// The partition the record went to.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Whether two records went in the same batch (so they are
    /// acknowledged together): lets a caller wait once per batch.
    pub fn same_batch(&self, other: &Delivery) -> bool {
        self.slot.same_channel(&other.slot)
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// Cancel safe: dropping the future does not affect the record.
    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let outcome = self.slot.wait_for(|o| o.is_some()).await.map_err(|_| ClientError::Closed)?;
            match outcome.as_ref().expect("waited for Some") {
                Ok(base) => Ok(RecordMetadata { partition: self.partition, offset: base + self.index }),
                Err(e) => Err(e.clone()),
            }
        })
    }
}

struct Inner {
    client: Client,
    router: Router,
    topic: String,
    partitions: u32,
    max_record_bytes: usize,
    config: ProducerConfig,
    /// The idempotent producer id, or -1 without idempotence.
    producer_id: i64,
    accumulator: Accumulator,
    memory: Arc<Semaphore>,
    /// Records sent to `send` and not yet resolved: counted without waking
    /// anyone; `drained` wakes `flush` when it comes down to zero.
    outstanding: AtomicU64,
    drained: Notify,
    /// Batches kept by the senders (sent and not yet settled, or behind one
    /// that is not).
    flights: watch::Sender<usize>,
    /// Bytes of batches acknowledged with acks=local and kept until committed.
    kept_bytes: AtomicUsize,
    first_error: Mutex<Option<ClientError>>,
    stop: CancellationToken,
}

/// Kept acks=local batches may take this many times `buffer_bytes`.
const KEPT_BUFFERS: usize = 4;

/// Sends records to one topic. Cheap to share behind an `Arc`.
pub struct Producer {
    inner: Arc<Inner>,
    tasks: TaskTracker,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    /// Looks the topic up and starts one sender task per partition.
    pub async fn new(client: Client, topic: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        if config.batch_bytes == 0 || config.max_in_flight == 0 || config.buffer_bytes == 0 {
            return Err(ClientError::Config("batch_bytes, buffer_bytes and max_in_flight must be positive".into()));
        }
        let idempotent = config.idempotence && config.acks != Acks::None;
        if idempotent && config.max_in_flight > PRODUCER_WINDOW {
            return Err(ClientError::Config(format!(
                "an idempotent producer keeps at most {PRODUCER_WINDOW} batches in flight per partition (max_in_flight is {})",
                config.max_in_flight
            )));
        }
        let description = client.describe_topic(topic).await?;
        let producer_id = if idempotent { client.init_producer().await?.0 } else { -1 };
        let partitions = description.partitions.len() as u32;
        let router = Router::new(&client, topic, &description);
        let max_record_bytes = description.max_record_bytes as usize;
        let buffer = config.buffer_bytes.max(max_record_bytes + 1024);
        let inner = Arc::new(Inner {
            client,
            router,
            topic: topic.into(),
            partitions,
            max_record_bytes,
            accumulator: Accumulator::new(partitions, config.compression, config.batch_bytes, buffer, config.linger),
            memory: Arc::new(Semaphore::new(buffer)),
            outstanding: AtomicU64::new(0),
            drained: Notify::new(),
            flights: watch::Sender::new(0),
            kept_bytes: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            stop: CancellationToken::new(),
            config,
            producer_id,
        });
        let tasks = TaskTracker::new();
        for p in 0..partitions {
            tasks.spawn(driver::run(inner.clone(), p));
        }
        Ok(Producer { inner, tasks })
    }

    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// Queues a record, waiting while the buffer is full. The returned
    /// [`Delivery`] resolves once the record is acknowledged.
    ///
    /// Cancel safety: if dropped while waiting for buffer room, the record
    /// is not queued.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let size = BatchBuilder::record_size(
            record.key.as_deref(),
            record.value.as_deref().unwrap_or_default(),
            &record.headers,
        );
        let payload = record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len())
            + record.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>();
        if payload > inner.max_record_bytes {
            return Err(ClientError::RecordTooLarge { size: payload, max: inner.max_record_bytes });
        }
        let p = match (record.partition, &record.key) {
            (Some(p), _) if p >= inner.partitions => {
                return Err(ClientError::UnknownPartition {
                    topic: inner.topic.clone(),
                    partition: p,
                    count: inner.partitions,
                })
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, inner.partitions),
            (None, None) => inner.accumulator.sticky(),
        };
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        inner.memory.acquire_many(permits).await.map_err(|_| ClientError::Closed)?.forget();
        inner.outstanding.fetch_add(1, Ordering::SeqCst);
        let ts = record.timestamp.unwrap_or_else(now_ms);
        let appended = inner.accumulator.append(p, &record, size, ts);
        Ok(Delivery { slot: appended.slot, partition: p, index: appended.index })
    }

    /// Sends everything buffered now and waits until every record passed to
    /// `send` so far is resolved. Returns the first failure since the last
    /// `flush`, if any record failed.
    ///
    /// Cancel safe: records keep going; a later `flush` reports them.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        inner.accumulator.start_flush();
        loop {
            let drained = inner.drained.notified();
            tokio::pin!(drained);
            // Registered before looking, so a wake-up in between is not missed.
            drained.as_mut().enable();
            if inner.outstanding.load(Ordering::SeqCst) == 0 {
                break;
            }
            drained.await;
        }
        inner.accumulator.end_flush();
        match inner.first_error.lock().expect("error lock").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes, waits until batches acknowledged with acks=local are also
    /// committed (or given up), then stops the sender tasks.
    pub async fn close(self) -> Result<(), ClientError> {
        let result = self.flush().await;
        // With acks=local, batches acknowledged from an agent's WAL are kept
        // until committed; wait for that (or for them to be given up).
        let mut flights = self.inner.flights.subscribe();
        let _ = flights.wait_for(|n| *n == 0).await;
        self.inner.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        result
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

/// Tells a batch's records how it went, and frees their buffer space.
fn resolve(
    inner: &Inner,
    slot: &watch::Sender<Outcome>,
    records: u64,
    bytes: usize,
    outcome: Result<i64, ClientError>,
) {
    if let Err(e) = &outcome {
        let mut first = inner.first_error.lock().expect("error lock");
        first.get_or_insert_with(|| e.clone());
    }
    slot.send_replace(Some(outcome));
    inner.memory.add_permits(bytes);
    if inner.outstanding.fetch_sub(records, Ordering::SeqCst) == records {
        inner.drained.notify_waiters();
    }
}
