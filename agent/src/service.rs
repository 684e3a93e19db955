//! What the agent does for a request, independent of how the request
//! arrived: the QUIC front end (`server`) maps frames onto these calls, and
//! a Kafka listener can map its own protocol onto the same ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use silt_metadata::catalog::Topic;
use silt_metadata::{Catalog, CatalogError};
use silt_wire::{Acks, Batch, PartitionInfo, TopicDescription};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServiceError;
use crate::metrics::{self, Metrics};
use crate::partition::{Done, Partition, Sink};
use crate::read::ReadPath;
use crate::wal::Replay;

pub const MAX_PARTITIONS: u32 = 10_000;
/// How often a follower checks the metadata store for new records while a
/// fetch waits at the end of the log.
const FOLLOWER_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_record_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_inflight_bytes: usize,
    /// How long a producer waits for room under the in-flight limit before THROTTLED.
    pub throttle_wait: Duration,
}

/// Every partition of a topic, each either led here or followed (see `lifecycle`).
pub(crate) struct TopicState {
    pub(crate) topic: Topic,
    pub(crate) slots: Vec<RwLock<Arc<Partition>>>,
    /// Stops this topic's partition actors.
    pub(crate) stop: CancellationToken,
}

impl TopicState {
    pub(crate) fn get(&self, p: u32) -> Option<Arc<Partition>> {
        self.slots.get(p as usize).map(|s| s.read().expect("slot lock").clone())
    }

    pub(crate) fn set(&self, p: u32, part: Arc<Partition>) -> Arc<Partition> {
        std::mem::replace(&mut *self.slots[p as usize].write().expect("slot lock"), part)
    }
}

pub struct Service {
    pub(crate) catalog: Catalog,
    pub(crate) agent_id: String,
    pub(crate) address: String,
    pub(crate) started_ms: i64,
    pub(crate) lease_ttl: Duration,
    pub(crate) topics: RwLock<HashMap<String, Arc<TopicState>>>,
    pub(crate) sink: Sink,
    /// WAL entries found at start, until their partitions are owned again.
    pub(crate) replay: std::sync::Mutex<Replay>,
    read: ReadPath,
    pub(crate) inflight: Arc<Semaphore>,
    limits: Limits,
    pub(crate) tasks: TaskTracker,
    pub(crate) stop: CancellationToken,
    metrics: Arc<Metrics>,
    /// One ownership round at a time.
    pub(crate) ownership: tokio::sync::Mutex<()>,
    /// Set when the agent gives its partitions up to stop: no more rounds.
    pub(crate) leaving: std::sync::atomic::AtomicBool,
    /// When this agent last heartbeat and renewed its leases.
    pub(crate) last_renewed_ms: std::sync::atomic::AtomicI64,
}

/// A produce that has its offsets; `done` resolves when it is acknowledged.
pub struct Ticket {
    pub base_offset: i64,
    pub done: Done,
    /// acks=local: resolves once the batch is committed (after `done`).
    pub committed: Option<Done>,
}

pub struct Fetched {
    pub high_watermark: i64,
    pub log_start: i64,
    pub batches: Bytes,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Topic names follow Kafka's rules, so the same names work in both.
pub fn validate_topic_name(name: &str) -> Result<(), ServiceError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 249 {
        "it is longer than 249 characters"
    } else if name == "." || name == ".." {
        "it cannot be '.' or '..'"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(ServiceError::InvalidTopicName { name: name.into(), reason })
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        catalog: Catalog,
        agent_id: String,
        address: String,
        sink: Sink,
        replay: Replay,
        read: ReadPath,
        limits: Limits,
        lease_ttl: Duration,
        tasks: TaskTracker,
        stop: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Service>, CatalogError> {
        let service = Arc::new(Service {
            catalog,
            agent_id,
            address,
            started_ms: now_ms(),
            lease_ttl,
            topics: RwLock::new(HashMap::new()),
            sink,
            replay: std::sync::Mutex::new(replay),
            read,
            inflight: Arc::new(Semaphore::new(limits.max_inflight_bytes)),
            limits,
            tasks,
            stop,
            metrics,
            ownership: tokio::sync::Mutex::new(()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            last_renewed_ms: std::sync::atomic::AtomicI64::new(0),
        });
        // Take this agent's share before serving, so a lone agent owns
        // everything from its first request.
        service.ownership_round().await?;
        service.release_orphaned_replay().await?;
        service.tasks.spawn(service.clone().ownership_loop());
        Ok(service)
    }

    /// A topic this agent knows, or one another agent created since the
    /// last ownership round (then followed until the next round).
    async fn topic_state(&self, name: &str) -> Result<Arc<TopicState>, ServiceError> {
        if let Some(t) = self.topics.read().expect("topics lock").get(name).cloned() {
            return Ok(t);
        }
        let topic = self.catalog.topic(name).await?.ok_or_else(|| ServiceError::UnknownTopic(name.into()))?;
        Ok(self.adopt(topic).await?)
    }

    async fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, ServiceError> {
        let t = self.topic_state(topic).await?;
        t.get(partition).ok_or(ServiceError::UnknownPartition {
            topic: topic.into(),
            partition,
            count: t.topic.partitions,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The agent's counters, by name.
    pub fn stats(&self) -> Vec<(String, u64)> {
        self.metrics.snapshot(self.read.cache.stats())
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), ServiceError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ServiceError::InvalidPartitions(partitions));
        }
        self.catalog.create_topic(name, partitions, now_ms()).await?;
        // Take this agent's share now rather than at the next round.
        self.ownership_round().await?;
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ServiceError> {
        self.catalog.delete_topic(name).await?;
        if let Some(state) = self.topics.write().expect("topics lock").remove(name) {
            state.stop.cancel();
        }
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self.catalog.list_topics().await?.into_iter().map(|t| t.name).collect())
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ServiceError> {
        let topic = self.catalog.topic(name).await?.ok_or_else(|| ServiceError::UnknownTopic(name.into()))?;
        let now = now_ms();
        let partitions = self
            .catalog
            .partitions(&topic)
            .await?
            .into_iter()
            .enumerate()
            .map(|(p, (state, lease))| PartitionInfo {
                partition: p as u32,
                owner: lease.as_ref().map(|l| crate::lifecycle::live_address(l, now)).unwrap_or_default(),
                epoch: lease.map_or(0, |l| l.epoch),
                log_start: state.log_start,
                high_watermark: state.high_watermark,
            })
            .collect();
        Ok(TopicDescription {
            name: topic.name,
            id: topic.id,
            max_record_bytes: self.limits.max_record_bytes as u32,
            partitions,
        })
    }

    pub async fn produce(&self, topic: &str, partition: u32, acks: Acks, batch: Bytes) -> Result<Ticket, ServiceError> {
        if acks == Acks::Local && self.sink.wal.is_none() {
            return Err(ServiceError::AcksUnsupported);
        }
        let part = self.partition(topic, partition).await?;
        if batch.len() > self.limits.max_batch_bytes {
            return Err(ServiceError::BatchTooLarge { size: batch.len(), max: self.limits.max_batch_bytes });
        }
        let batch = Batch::validate(batch)?;
        metrics::add(&self.metrics.produced_batches, 1);
        metrics::add(&self.metrics.produced_records, u64::from(batch.header().record_count));
        metrics::add(&self.metrics.produced_bytes, batch.bytes().len() as u64);
        let need = u32::try_from(batch.bytes().len()).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            p = self.inflight.clone().acquire_many_owned(need) => p.map_err(|_| ServiceError::ShuttingDown)?,
            _ = tokio::time::sleep(self.limits.throttle_wait) => return Err(ServiceError::Throttled(self.limits.max_inflight_bytes)),
            _ = self.stop.cancelled() => return Err(ServiceError::ShuttingDown),
        };
        let assigned = match part.append(batch, acks, permit).await {
            // Name the owner as the metadata store has it now: the one seen
            // at the last ownership round may be gone or not known yet.
            Err(ServiceError::NotOwner { topic, partition, .. }) => {
                self.refresh_follower(&part).await?;
                return Err(ServiceError::NotOwner { topic, partition, owner: part.owner() });
            }
            other => other?,
        };
        if assigned.duplicate {
            metrics::add(&self.metrics.duplicate_batches, 1);
        }
        Ok(Ticket { base_offset: assigned.base_offset, done: assigned.done, committed: assigned.committed })
    }

    /// A producer id for an idempotent producer, never handed out before.
    pub async fn init_producer(&self) -> Result<i64, ServiceError> {
        Ok(self.catalog.allocate_producer_id().await?)
    }

    /// Reads from `offset`. At the end of the log it waits up to `max_wait`
    /// for new records, then answers with none.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetched, ServiceError> {
        let part = self.partition(topic, partition).await?;
        let leader = part.is_leader();
        if !leader {
            self.refresh_follower(&part).await?;
        }
        let mut hw = part.high_watermark();
        let log_start = part.log_start();
        let out_of_range = |hw| ServiceError::OffsetOutOfRange {
            topic: topic.into(),
            partition,
            offset,
            log_start,
            high_watermark: hw,
        };
        if offset < log_start || offset > hw {
            return Err(out_of_range(hw));
        }
        if offset == hw && !max_wait.is_zero() {
            if leader {
                let mut rx = part.subscribe();
                tokio::select! {
                    r = rx.wait_for(|h| *h > offset) => if let Ok(h) = r { hw = *h },
                    _ = tokio::time::sleep(max_wait) => {}
                    _ = self.stop.cancelled() => {}
                }
            } else {
                // Another agent writes this partition: watch the metadata store.
                let deadline = tokio::time::Instant::now() + max_wait;
                while part.high_watermark() <= offset && tokio::time::Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep(FOLLOWER_POLL) => {}
                        _ = self.stop.cancelled() => break,
                    }
                    self.refresh_follower(&part).await?;
                }
            }
            hw = hw.max(part.high_watermark());
        }
        let batches = if offset < hw {
            self.read.read(&part, offset, max_bytes.min(self.limits.max_batch_bytes), hw).await?
        } else {
            Bytes::new()
        };
        Ok(Fetched { high_watermark: hw, log_start, batches })
    }
}

/// The WAL entries of one partition that continue its committed log:
/// those from `high_watermark` on, without gaps. Entries already committed,
/// and any after a gap (never acknowledged locally, see `wal`), are released.
pub(crate) fn contiguous_from(
    entries: Vec<(Batch, crate::wal::Hold)>,
    high_watermark: i64,
) -> (Vec<(Batch, crate::wal::Hold)>, i64) {
    let mut next = high_watermark;
    let mut keep = Vec::new();
    for (batch, hold) in entries {
        let base = batch.header().base_offset;
        if batch.last_offset() < next || base != next {
            if base > next {
                tracing::warn!(
                    expected = next,
                    found = base,
                    "a gap in the WAL; later entries were never acknowledged"
                );
            }
            hold.release();
            continue;
        }
        next = batch.last_offset() + 1;
        keep.push((batch, hold));
    }
    (keep, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["hello", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "has space", "slash/", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
