//! The consumer: reads explicit partitions from explicit offsets and
//! yields records as a `Stream`. One task per partition long-polls the
//! partition's owner, which sees new records first (any agent could answer,
//! but others learn of new records from the metadata store, later); within a
//! partition records arrive in offset order.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use silt_wire::{Header, Request, Response};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::error::ClientError;
use crate::group_consumer::AutoOffsetReset;
use crate::router::Router;
use silt_wire::ErrorCode;

/// Offsets a consumer jumped over because the log no longer held them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The position that was out of range.
    pub from: i64,
    /// Where reading continued.
    pub to: i64,
    /// The log's first offset then.
    pub log_start: i64,
}

/// Jumps not yet taken by the application.
pub(crate) type Skips = Arc<std::sync::Mutex<Vec<Skipped>>>;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes asked for per fetch.
    pub max_bytes: u32,
    /// How long the agent holds a fetch at the end of the log.
    pub max_wait: Duration,
    /// Fetched batches buffered per partition ahead of the reader.
    pub prefetch: usize,
    /// How long a fetch may take beyond `max_wait` before the agent is taken
    /// for gone (then the consumer reconnects through its agent list).
    pub fetch_timeout: Duration,
    /// Where a partition continues when its position is no longer in the
    /// log (retention removed it): the oldest record kept, or the end. None:
    /// the stream ends with the OFFSET_OUT_OF_RANGE error. Each jump is
    /// told by [`RecordStream::skipped`].
    pub out_of_range: Option<AutoOffsetReset>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_bytes: 4 << 20,
            max_wait: Duration::from_millis(500),
            prefetch: 4,
            fetch_timeout: Duration::from_secs(5),
            out_of_range: Some(AutoOffsetReset::Earliest),
        }
    }
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The first readable record.
    Earliest,
    /// Only records written from now on.
    Latest,
    /// This offset; past the end of the log is an error.
    At(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// None: a tombstone (a key-compacted topic's deletion of the key).
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Retriable fetch failures in a row before the partition's stream ends
/// with the error (about a minute of backing off).
const MAX_RETRIES: u32 = 30;
/// How often a fetcher waiting at the end of the log checks whether its
/// partition has moved to another owner.
const OWNER_RECHECK: Duration = Duration::from_secs(5);

pub struct Consumer {
    client: Client,
    topic: Arc<str>,
    partitions: u32,
    config: ConsumerConfig,
    router: Arc<Router>,
}

impl Consumer {
    /// Looks the topic up. Cancel safe.
    pub async fn new(client: Client, topic: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let d = client.describe_topic(topic).await?;
        let router = Arc::new(Router::new(&client, topic, &d));
        Ok(Consumer { client, topic: topic.into(), partitions: d.partitions.len() as u32, config, router })
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Starts reading `assignments`. Offsets are resolved now, so `Latest`
    /// means records written after this call. Cancel safe.
    pub async fn stream(&self, assignments: &[(u32, Offset)]) -> Result<RecordStream, ClientError> {
        let description = self.client.describe_topic(&self.topic).await?;
        let mut tasks = JoinSet::new();
        let (tx, rx) = mpsc::channel(self.config.prefetch.max(1) * assignments.len().max(1));
        let skips = Skips::default();
        for &(partition, offset) in assignments {
            let info = description.partitions.get(partition as usize).ok_or(ClientError::UnknownPartition {
                topic: self.topic.to_string(),
                partition,
                count: self.partitions,
            })?;
            let start = match offset {
                Offset::Earliest => info.log_start,
                Offset::Latest => info.high_watermark,
                Offset::At(n) => n,
            };
            let fetcher = Fetcher {
                router: self.router.clone(),
                topic: self.topic.clone(),
                partition,
                offset: start,
                config: self.config.clone(),
                tx: tx.clone(),
                wrap: Arc::new(|r| r),
                skips: skips.clone(),
            };
            tasks.spawn(fetcher.run());
        }
        Ok(RecordStream { rx, ready: VecDeque::new(), skips, _tasks: tasks })
    }
}

/// What one fetch brings: records, or why it failed.
pub(crate) type Fetched = Result<Vec<ConsumedRecord>, ClientError>;

/// Reads one partition from an offset into a channel, long-polling its owner.
pub(crate) struct Fetcher<T> {
    pub router: Arc<Router>,
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub config: ConsumerConfig,
    pub tx: mpsc::Sender<T>,
    /// Wraps what a fetch brings into the channel's item.
    pub wrap: Arc<dyn Fn(Fetched) -> T + Send + Sync>,
    /// Where jumps over removed offsets are told.
    pub skips: Skips,
}

impl<T: Send + 'static> Fetcher<T> {
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.fetch_once().await {
                Ok(records) if records.is_empty() => {
                    failures = 0;
                    self.router.refresh_if_older(OWNER_RECHECK).await;
                }
                Ok(records) => {
                    failures = 0;
                    if self.tx.send((self.wrap)(Ok(records))).await.is_err() {
                        return;
                    }
                }
                // A passing fault (the store or the metadata is briefly away, a
                // slow answer, the agent went away): try again, backing off,
                // through another agent of the list if need be.
                Err(e) if e.is_retriable() && failures < MAX_RETRIES => {
                    failures += 1;
                    tracing::warn!(partition = self.partition, error = %e, failures, "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(30)))).await;
                    // Who owns it now (reconnecting through the agent list if need be).
                    self.router.refresh().await;
                }
                Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) && self.config.out_of_range.is_some() => {
                    match self.reset().await {
                        Ok(true) => failures = 0,
                        Ok(false) => {
                            let _ = self.tx.send((self.wrap)(Err(e))).await;
                            return;
                        }
                        Err(e) if e.is_retriable() && failures < MAX_RETRIES => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(30)))).await;
                        }
                        Err(e) => {
                            let _ = self.tx.send((self.wrap)(Err(e))).await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = self.tx.send((self.wrap)(Err(e))).await;
                    return;
                }
            }
        }
    }

    /// The position fell out of the log: continue where `out_of_range`
    /// says when it is below the log start (false: it is not, and the error
    /// stands).
    async fn reset(&mut self) -> Result<bool, ClientError> {
        let client = self.router.client_for(self.partition).await?;
        let d = client.describe_topic(&self.topic).await?;
        let Some(info) = d.partitions.get(self.partition as usize) else { return Ok(false) };
        // A negative offset was never a position; one at or past the log
        // start is out of range the other way.
        if self.offset < 0 || self.offset >= info.log_start {
            return Ok(false);
        }
        let to = match self.config.out_of_range {
            Some(AutoOffsetReset::Earliest) => info.log_start,
            Some(AutoOffsetReset::Latest) => info.high_watermark,
            None => return Ok(false),
        };
        tracing::warn!(topic = %self.topic, partition = self.partition, from = self.offset, to,
            log_start = info.log_start, "position removed by retention; skipping ahead");
        self.skips.lock().expect("skips lock").push(Skipped {
            topic: self.topic.clone(),
            partition: self.partition,
            from: self.offset,
            to,
            log_start: info.log_start,
        });
        self.offset = to;
        Ok(true)
    }

    async fn fetch_once(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let request = Request::Fetch {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            max_bytes: self.config.max_bytes,
            max_wait_ms: self.config.max_wait.as_millis().min(u32::MAX as u128) as u32,
        };
        let limit = self.config.max_wait + self.config.fetch_timeout;
        let client = self.router.client_for(self.partition).await?;
        let Response::Fetched { batches, .. } = client.call_within(&request, limit).await? else {
            return Err(ClientError::Protocol("fetch answered with another kind".into()));
        };
        let mut out = Vec::new();
        for batch in silt_wire::batch::split(&batches) {
            let batch = batch?;
            if batch.last_offset() < self.offset {
                continue;
            }
            for r in batch.records()? {
                // Key compaction leaves gaps; records still come in order.
                if r.offset < self.offset {
                    continue;
                }
                self.offset = r.offset + 1;
                out.push(ConsumedRecord {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
            // Past the batch's last offset, even when compaction removed its last records.
            self.offset = self.offset.max(batch.last_offset() + 1);
        }
        Ok(out)
    }
}

/// Records from every assigned partition. Dropping it stops the fetches.
pub struct RecordStream {
    rx: mpsc::Receiver<Result<Vec<ConsumedRecord>, ClientError>>,
    ready: VecDeque<ConsumedRecord>,
    skips: Skips,
    _tasks: JoinSet<()>,
}

impl RecordStream {
    /// The jumps over offsets the log no longer held (retention removed
    /// them) since the last call, in the order they happened.
    pub fn skipped(&self) -> Vec<Skipped> {
        std::mem::take(&mut *self.skips.lock().expect("skips lock"))
    }
}

impl Stream for RecordStream {
    type Item = Result<ConsumedRecord, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(r)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(batch))) => self.ready.extend(batch),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
