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

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use silt_wire::{
    advance_sequence, restamp_producer, Acks, BatchBuilder, Compression, ErrorCode, Header, Request, Response,
    PRODUCER_WINDOW,
};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{unexpected, Client, ResponseStream};
use crate::error::ClientError;
use crate::partitioner::partition_for_key;
use crate::router::{Router, OWNER_CHECK};

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
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Pins the record to a partition; otherwise the key decides, and
    /// keyless records spread over partitions batch by batch.
    pub partition: Option<u32>,
    /// Milliseconds since the Unix epoch [default: now].
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(value: impl Into<Bytes>) -> Self {
        ProducerRecord { value: value.into(), ..Default::default() }
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

/// Resolves when the record is acknowledged (or failed).
pub struct Delivery {
    slot: watch::Receiver<Outcome>,
    partition: u32,
    index: i64,
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

/// A batch being filled.
struct Open {
    builder: BatchBuilder,
    slot: watch::Sender<Outcome>,
    bytes: usize,
    opened: Instant,
}

/// One partition's batches: full ones waiting to be sent, in order, and
/// the one being filled.
#[derive(Default)]
struct Batches {
    sealed: VecDeque<Open>,
    open: Option<Open>,
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
    open: Vec<Mutex<Batches>>,
    wake: Vec<Notify>,
    memory: Arc<Semaphore>,
    sticky: AtomicU32,
    flushing: AtomicUsize,
    /// Records sent to `send` and not yet resolved.
    outstanding: watch::Sender<u64>,
    /// Batches kept by the senders (sent and not yet settled, or behind one
    /// that is not).
    flights: watch::Sender<usize>,
    /// Bytes of batches acknowledged with acks=local and kept until committed.
    kept_bytes: AtomicUsize,
    first_error: Mutex<Option<ClientError>>,
    stop: CancellationToken,
}

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
            open: (0..partitions).map(|_| Mutex::new(Batches::default())).collect(),
            wake: (0..partitions).map(|_| Notify::new()).collect(),
            memory: Arc::new(Semaphore::new(buffer)),
            sticky: AtomicU32::new(rand_start(partitions)),
            flushing: AtomicUsize::new(0),
            outstanding: watch::Sender::new(0),
            flights: watch::Sender::new(0),
            kept_bytes: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            stop: CancellationToken::new(),
            config,
            producer_id,
        });
        let tasks = TaskTracker::new();
        for p in 0..partitions {
            tasks.spawn(sender(inner.clone(), p));
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
        let size = BatchBuilder::record_size(record.key.as_deref(), &record.value, &record.headers);
        let payload = record.key.as_ref().map_or(0, |k| k.len())
            + record.value.len()
            + record.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>();
        if payload > inner.max_record_bytes {
            return Err(ClientError::RecordTooLarge { size: payload, max: inner.max_record_bytes });
        }
        let keyless = record.partition.is_none() && record.key.is_none();
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
            (None, None) => inner.sticky.load(Ordering::Relaxed) % inner.partitions,
        };
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        inner.memory.acquire_many(permits).await.map_err(|_| ClientError::Closed)?.forget();
        inner.outstanding.send_modify(|n| *n += 1);
        let (slot, index, first, full) = {
            let mut guard = inner.open[p as usize].lock().expect("open batch lock");
            // A batch never grows past batch_bytes (plus one record): while the
            // sender waits on the agent, full batches queue up instead.
            if guard.open.as_ref().is_some_and(|o| o.bytes > 0 && o.bytes + size > inner.config.batch_bytes) {
                let full = guard.open.take().expect("checked");
                guard.sealed.push_back(full);
            }
            let open = guard.open.get_or_insert_with(|| Open {
                builder: BatchBuilder::new(inner.config.compression),
                slot: watch::Sender::new(None),
                bytes: 0,
                opened: Instant::now(),
            });
            let index = open.builder.len() as i64;
            let ts = record.timestamp.unwrap_or_else(now_ms);
            open.builder.push(ts, record.key.as_deref(), &record.value, &record.headers);
            open.bytes += size;
            (open.slot.subscribe(), index, index == 0, open.bytes >= inner.config.batch_bytes)
        };
        if full && keyless {
            advance_sticky(inner, p);
        }
        if first || full {
            inner.wake[p as usize].notify_one();
        }
        Ok(Delivery { slot, partition: p, index })
    }

    /// Sends everything buffered now and waits until every record passed to
    /// `send` so far is resolved. Returns the first failure since the last
    /// `flush`, if any record failed.
    ///
    /// Cancel safe: records keep going; a later `flush` reports them.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let inner = &self.inner;
        inner.flushing.fetch_add(1, Ordering::SeqCst);
        for w in &inner.wake {
            w.notify_one();
        }
        let mut rx = inner.outstanding.subscribe();
        let waited = rx.wait_for(|n| *n == 0).await.map(|_| ());
        inner.flushing.fetch_sub(1, Ordering::SeqCst);
        waited.map_err(|_| ClientError::Closed)?;
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

fn rand_start(partitions: u32) -> u32 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()))
        % partitions.max(1)
}

fn advance_sticky(inner: &Inner, from: u32) {
    let _ = inner.sticky.compare_exchange(from, (from + 1) % inner.partitions, Ordering::Relaxed, Ordering::Relaxed);
}

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
    inner.outstanding.send_modify(|n| *n -= records);
}

/// A batch sent and not yet settled, or settled while an older batch of
/// its partition is not: it then stays, so that the flights span at most
/// `max_in_flight` consecutive batches, all of which an owner remembers.
///
/// A batch is answered when its records are acknowledged to the caller, and
/// settled when it can no longer need sending again: both at once, except
/// with acks=local, where it settles once the agent has also committed it.
struct Flight {
    id: u64,
    batch: Bytes,
    records: u64,
    bytes: usize,
    slot: watch::Sender<Outcome>,
    answered: bool,
    /// Needs no sending again. Answered but not settled means kept for its
    /// commit, and counted in `Inner::kept_bytes`.
    settled: bool,
}

/// Kept acks=local batches may take this many times `buffer_bytes`.
const KEPT_BUFFERS: usize = 4;

/// What an agent said about a batch.
enum Ack {
    /// Acknowledged and committed (acks=durable or none), at this base offset.
    Durable(i64),
    /// Acknowledged from the agent's write-ahead log (acks=local); the commit follows.
    Local(i64),
    /// The acks=local batch is committed too.
    Committed,
}

/// How one flight's wait for its acknowledgement went.
struct Answer {
    round: u64,
    id: u64,
    outcome: Result<Ack, ClientError>,
}

/// Whether an idempotent producer sends a batch again after this error: the
/// owner may have died or lost the partition, or only the answer was lost.
/// Re-sending is safe because an owner that has the batch says so.
fn resendable(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => code.is_retriable(),
        ClientError::ConnectTimeout { .. }
        | ClientError::Connect { .. }
        | ClientError::Connection { .. }
        | ClientError::Timeout { .. } => true,
        _ => false,
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

/// One partition's sending state.
struct PartitionSender {
    inner: Arc<Inner>,
    p: u32,
    flights: VecDeque<Flight>,
    next_id: u64,
    /// The producer epoch and the next record's sequence number (idempotence).
    epoch: i16,
    next_sequence: i32,
    /// Bumped whenever the flights are sent again or given up: failures
    /// reported by older waits are stale.
    round: u64,
    waiters: JoinSet<()>,
    answers: mpsc::UnboundedSender<Answer>,
}

impl PartitionSender {
    fn idempotent(&self) -> bool {
        self.inner.producer_id >= 0
    }

    /// Whether batches are kept after their acknowledgement until the agent
    /// commits them (acks=local), to be sent again if it dies first.
    fn keeps_until_commit(&self) -> bool {
        self.idempotent() && self.inner.config.acks == Acks::Local
    }

    /// Answers the caller (once) and, unless the batch waits for its
    /// commit, settles it.
    fn answered(&mut self, at: usize, outcome: Result<i64, ClientError>) {
        let keep = outcome.is_ok() && self.keeps_until_commit();
        let f = &mut self.flights[at];
        if !f.answered {
            f.answered = true;
            resolve(&self.inner, &f.slot, f.records, f.bytes, outcome);
            if keep {
                self.inner.kept_bytes.fetch_add(f.batch.len(), Ordering::SeqCst);
            }
        }
        f.settled |= !keep;
    }

    /// The batch needs no sending again.
    fn settle(&mut self, at: usize) {
        let f = &mut self.flights[at];
        if f.answered && !f.settled {
            self.inner.kept_bytes.fetch_sub(f.batch.len(), Ordering::SeqCst);
        }
        f.settled = true;
    }

    /// Whether another batch may be sent: fewer than `max_in_flight` since
    /// the oldest unanswered one (an owner remembers that many, so any of
    /// them sent again is answered with its offsets), and no more than
    /// [`KEPT_BUFFERS`] times `buffer_bytes` kept for their commit (those,
    /// already answered, need no offsets: an owner that committed one too
    /// long ago to remember says DUPLICATE_SEQUENCE, which settles it).
    fn has_room(&self) -> bool {
        let since_unanswered = self.flights.iter().skip_while(|f| f.answered).count();
        since_unanswered < self.inner.config.max_in_flight
            && self.inner.kept_bytes.load(Ordering::SeqCst) < KEPT_BUFFERS * self.inner.config.buffer_bytes
    }

    fn push(&mut self, flight: Flight) {
        self.flights.push_back(flight);
        self.inner.flights.send_modify(|n| *n += 1);
    }

    /// Drops settled flights from the front, and finished waits.
    fn pop_settled(&mut self) {
        while self.flights.front().is_some_and(|f| f.settled) {
            self.flights.pop_front();
            self.inner.flights.send_modify(|n| *n -= 1);
        }
        while self.waiters.try_join_next().is_some() {}
    }

    fn unsettled(&self) -> usize {
        self.flights.iter().filter(|f| !f.settled).count()
    }

    /// Waits for a batch's acknowledgement (and, with acks=local, its
    /// commit) in its own task, or until the partition has moved away from
    /// the agent that assigned it.
    fn wait_for_ack(&mut self, id: u64, (mut stream, owner): (ResponseStream, String)) {
        let (inner, answers, round, p) = (self.inner.clone(), self.answers.clone(), self.round, self.p);
        let until_commit = self.keeps_until_commit();
        self.waiters.spawn(async move {
            let limit = inner.client.config().request_timeout;
            let timeout = || ClientError::Timeout { addr: owner.clone(), secs: limit.as_secs() };
            let wait = async {
                let base = match tokio::time::timeout(limit, stream.next()).await {
                    Ok(Ok(Response::Produced { base_offset, .. })) => base_offset,
                    Ok(Ok(other)) => return Err(unexpected(other)),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(timeout()),
                };
                if !until_commit {
                    return Ok(Ack::Durable(base));
                }
                let _ = answers.send(Answer { round, id, outcome: Ok(Ack::Local(base)) });
                match tokio::time::timeout(limit, stream.next()).await {
                    Ok(Ok(Response::Committed { .. })) => Ok(Ack::Committed),
                    Ok(Ok(other)) => Err(unexpected(other)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(timeout()),
                }
            };
            let outcome = tokio::select! {
                r = wait => r,
                // Only an idempotent producer can send the batch again.
                e = owner_moved(&inner, p, &owner), if inner.producer_id >= 0 => Err(e),
            };
            let _ = answers.send(Answer { round, id, outcome });
        });
    }

    /// Numbers, builds and sends a new batch. An error means the flights
    /// must be sent again.
    async fn send(&mut self, open: Open) -> Result<(), ClientError> {
        let records = open.builder.len() as u64;
        let mut builder = open.builder;
        let sequence = self.next_sequence;
        if self.idempotent() {
            builder.set_producer(self.inner.producer_id, self.epoch, sequence);
        }
        let batch = match builder.build() {
            Ok(b) => b.into_bytes(),
            Err(e) => {
                resolve(&self.inner, &open.slot, records, open.bytes, Err(ClientError::CorruptBatch(e)));
                return Ok(());
            }
        };
        if self.idempotent() {
            self.next_sequence = advance_sequence(sequence, records as u32);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.push(Flight {
            id,
            batch: batch.clone(),
            records,
            bytes: open.bytes,
            slot: open.slot,
            answered: false,
            settled: false,
        });
        match send_until_assigned(&self.inner, self.p, batch).await {
            Ok(stream) => {
                self.wait_for_ack(id, stream);
                Ok(())
            }
            Err(e) if self.idempotent() && resendable(&e) => Err(e),
            // The owner knows nothing of this producer: what went before
            // never reached the log. Number everything unsettled again, in a
            // new epoch, and send it all in order.
            Err(e) if e.code() == Some(ErrorCode::UnknownProducer) => {
                self.renumber();
                Err(e)
            }
            // The owner misses an earlier batch, still unanswered (it went to
            // an owner that died): send them all again, in order.
            Err(e) if e.code() == Some(ErrorCode::OutOfOrderSequence) && self.unsettled() > 1 => Err(e),
            // Refused before it was given offsets: nothing was written, so
            // its sequence numbers go to the next batch, unless the owner
            // disagrees about them (then a new epoch starts them over).
            Err(e @ ClientError::Server { .. }) if !is_sequence_error(&e) => {
                let f = self.flights.pop_back().expect("just pushed");
                self.inner.flights.send_modify(|n| *n -= 1);
                self.next_sequence = sequence;
                resolve(&self.inner, &f.slot, f.records, f.bytes, Err(e));
                Ok(())
            }
            Err(e) if self.idempotent() => {
                self.give_up(e);
                Ok(())
            }
            Err(e) => {
                let at = self.flights.len() - 1;
                self.answered(at, Err(e));
                Ok(())
            }
        }
    }

    /// Takes in one acknowledgement. An error means the flights must be
    /// sent again.
    fn on_answer(&mut self, a: Answer) -> Result<(), ClientError> {
        let Some(at) = self.flights.iter().position(|f| f.id == a.id && !f.settled) else { return Ok(()) };
        match a.outcome {
            // A success is true whichever round it comes from. A batch sent
            // again after its acks=local acknowledgement keeps the offsets
            // first acknowledged.
            Ok(Ack::Durable(base)) => {
                self.answered(at, Ok(base));
                self.settle(at);
            }
            Ok(Ack::Local(base)) => self.answered(at, Ok(base)),
            Ok(Ack::Committed) => self.settle(at),
            Err(_) if a.round != self.round => {}
            Err(e) if self.idempotent() && resendable(&e) => return Err(e),
            Err(e) if self.idempotent() => self.give_up(e),
            Err(e) => self.answered(at, Err(e)),
        }
        Ok(())
    }

    /// Sends every unsettled batch again, in order, to the partition's
    /// owner as the agents name it now; an owner that already holds one
    /// answers with its first offsets. After `retries` rounds, gives up.
    async fn resend(&mut self, mut error: ClientError) {
        for round in 1.. {
            self.round += 1;
            self.waiters.abort_all();
            if round > self.inner.config.retries {
                break;
            }
            tracing::debug!(partition = self.p, error = %error, round, "sending unanswered batches again");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50 * u64::from(round.min(20)))) => {}
                _ = self.inner.stop.cancelled() => break,
            }
            self.inner.router.refresh().await;
            let unsettled: Vec<(u64, Bytes)> =
                self.flights.iter().filter(|f| !f.settled).map(|f| (f.id, f.batch.clone())).collect();
            let mut failed = None;
            for (n, (id, batch)) in unsettled.into_iter().enumerate() {
                match send_until_assigned(&self.inner, self.p, batch).await {
                    Ok(stream) => self.wait_for_ack(id, stream),
                    // Committed long ago, after its acks=local answer: done.
                    Err(e)
                        if e.code() == Some(ErrorCode::DuplicateSequence)
                            && self.flights.iter().any(|f| f.id == id && f.answered) =>
                    {
                        let at = self.flights.iter().position(|f| f.id == id).expect("present");
                        self.settle(at);
                    }
                    // The owner knows nothing of this producer: none of these
                    // batches reached the log. The next round sends them
                    // numbered afresh.
                    Err(e) if n == 0 && e.code() == Some(ErrorCode::UnknownProducer) => {
                        self.renumber();
                        failed = Some((e, true));
                        break;
                    }
                    Err(e) => {
                        // An owner missing an earlier batch than this one: it
                        // was refused or lost on the way; another round sends it.
                        let again = resendable(&e)
                            || (n > 0
                                && matches!(
                                    e.code(),
                                    Some(ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducer)
                                ));
                        failed = Some((e, again));
                        break;
                    }
                }
            }
            match failed {
                None => return,
                Some((e, true)) => error = e,
                Some((e, false)) => {
                    error = e;
                    break;
                }
            }
        }
        self.give_up(error);
    }

    /// Starts a new epoch and numbers every unsettled batch again from 0, in
    /// order (an owner said it has none of them).
    fn renumber(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
        let mut sequence = 0;
        for f in self.flights.iter_mut().filter(|f| !f.settled) {
            f.batch = restamp_producer(&f.batch, self.inner.producer_id, self.epoch, sequence);
            sequence = advance_sequence(sequence, f.records as u32);
        }
        self.next_sequence = sequence;
        tracing::debug!(partition = self.p, epoch = self.epoch, "numbering unsettled batches again");
    }

    /// Fails every unanswered batch (they may or may not have been
    /// written), and starts a new producer epoch so that the next batches
    /// are not taken for them.
    fn give_up(&mut self, e: ClientError) {
        self.round += 1;
        self.waiters.abort_all();
        let dropped = self.flights.len();
        for f in self.flights.drain(..) {
            if f.answered && !f.settled {
                self.inner.kept_bytes.fetch_sub(f.batch.len(), Ordering::SeqCst);
            }
            if !f.answered {
                resolve(&self.inner, &f.slot, f.records, f.bytes, Err(e.clone()));
            }
        }
        self.inner.flights.send_modify(|n| *n -= dropped);
        if self.idempotent() {
            self.epoch = self.epoch.saturating_add(1);
            self.next_sequence = 0;
        }
    }
}

/// One partition's sender: seals batches and sends them in order, keeping
/// up to `max_in_flight` unanswered; their acknowledgements are awaited by
/// separate tasks and come back here.
async fn sender(inner: Arc<Inner>, p: u32) {
    let (tx, mut answers) = mpsc::unbounded_channel();
    let mut s = PartitionSender {
        inner: inner.clone(),
        p,
        flights: VecDeque::new(),
        next_id: 0,
        epoch: 0,
        next_sequence: 0,
        round: 0,
        waiters: JoinSet::new(),
        answers: tx,
    };
    loop {
        s.pop_settled();
        let (state, sealed) = {
            let b = inner.open[p as usize].lock().expect("open batch lock");
            (b.open.as_ref().map(|o| (o.opened, o.bytes)), !b.sealed.is_empty())
        };
        let ready = sealed
            || match state {
                None => false,
                Some((opened, bytes)) => {
                    bytes >= inner.config.batch_bytes
                        || inner.flushing.load(Ordering::SeqCst) > 0
                        || opened + inner.config.linger <= Instant::now()
                }
            };
        if ready && s.has_room() && !inner.stop.is_cancelled() {
            let next = {
                let mut b = inner.open[p as usize].lock().expect("open batch lock");
                b.sealed.pop_front().or_else(|| b.open.take())
            };
            if let Some(open) = next {
                advance_sticky(&inner, p);
                if let Err(e) = s.send(open).await {
                    s.resend(e).await;
                }
            }
            continue;
        }
        let deadline = state.filter(|_| !ready).map(|(opened, _)| opened + inner.config.linger);
        tokio::select! {
            a = answers.recv() => {
                if let Err(e) = s.on_answer(a.expect("the sender holds a sender")) {
                    s.resend(e).await;
                }
            }
            _ = inner.wake[p as usize].notified(), if !ready => {}
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
            _ = inner.stop.cancelled() => break,
        }
    }
    // Stopped: nothing more is sent, but answers on their way still count.
    while s.flights.iter().any(|f| !f.answered) {
        let Some(a) = answers.recv().await else { break };
        if let Some(at) = s.flights.iter().position(|f| f.id == a.id && !f.answered) {
            match a.outcome {
                Ok(Ack::Durable(base) | Ack::Local(base)) => s.answered(at, Ok(base)),
                Ok(Ack::Committed) => {}
                Err(e) => s.answered(at, Err(e)),
            }
        }
    }
}

/// Resolves once the agents name an owner of `p` other than `addr`
/// (checked every [`OWNER_CHECK`]): waiting on `addr` is then pointless,
/// for it died or handed the partition over.
async fn owner_moved(inner: &Inner, p: u32, addr: &str) -> ClientError {
    loop {
        tokio::time::sleep(OWNER_CHECK).await;
        inner.router.refresh_if_older(OWNER_CHECK / 2).await;
        let owner = inner.router.owner(p);
        if !owner.is_empty() && owner != addr {
            let message = format!("{}/{p} moved from {addr} to {owner}", inner.topic);
            return ClientError::Server { code: ErrorCode::NotOwner, message };
        }
    }
}

/// Sends a batch to its partition's owner and waits until it is assigned
/// offsets; returns the stream that brings its acknowledgement, and the
/// agent's address. A refusal before assignment wrote nothing, so the batch
/// may go again: after NOT_OWNER (or a lease moving, or an agent stopping)
/// it goes to the owner the agents name now.
async fn send_until_assigned(inner: &Inner, p: u32, batch: Bytes) -> Result<(ResponseStream, String), ClientError> {
    let request = Request::Produce { topic: inner.topic.clone(), partition: p, acks: inner.config.acks, batch };
    let mut attempt = 0;
    loop {
        // A dropped producer sends nothing more.
        if inner.stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let result = async {
            let client = inner.router.client_for(p).await?;
            let addr = client.agent().to_string();
            let exchange = async {
                let mut stream = client.open(&request).await?;
                match stream.next().await? {
                    Response::ProduceAssigned { .. } => Ok(stream),
                    other => Err(unexpected(other)),
                }
            };
            tokio::select! {
                r = exchange => r.map(|stream| (stream, addr)),
                // Not for a producer without idempotence: the batch may
                // have been assigned offsets, and only then is it safe.
                e = owner_moved(inner, p, &addr), if inner.producer_id >= 0 => Err(e),
            }
        };
        let limit = inner.client.config().request_timeout;
        let result = match tokio::time::timeout(limit, result).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { addr: inner.client.agent().into(), secs: limit.as_secs() }),
        };
        match result {
            Err(e @ ClientError::Server { .. }) if e.is_retriable() && attempt < inner.config.retries => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "produce refused; retrying");
                if matches!(e.code(), Some(ErrorCode::NotOwner | ErrorCode::Fenced | ErrorCode::ShuttingDown)) {
                    inner.router.refresh().await;
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20)))).await;
            }
            // The owner cannot be reached (it died): ask who owns it now.
            Err(
                e @ (ClientError::ConnectTimeout { .. } | ClientError::Connect { .. } | ClientError::Connection { .. }),
            ) if attempt < inner.config.retries => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "owner unreachable; looking it up again");
                inner.router.refresh().await;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(20)))).await;
            }
            other => return other,
        }
    }
}
