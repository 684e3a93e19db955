//! Appending a batch to a partition this agent leads.

use bytes::Bytes;
use silt_wire::{Batch, BatchError};

use super::{Acks, Service, Ticket};
use crate::error::ServiceError;
use crate::metrics;

/// A batch as it reaches `append`.
enum Incoming {
    /// Bytes from a client: checked here (length, header, CRC).
    Bytes(Bytes),
    /// A batch a front end built and sealed itself (Kafka's, converted).
    Built(Batch),
}

impl Service {
    /// Validates a batch and appends it. Returns once its offsets are
    /// assigned; the ticket resolves once it is as durable as `acks` asks.
    pub async fn produce(&self, topic: &str, partition: u32, acks: Acks, batch: Bytes) -> Result<Ticket, ServiceError> {
        self.append(topic, partition, acks, Incoming::Bytes(batch)).await
    }

    /// [`Service::produce`] for a batch the caller built, so already whole
    /// (its CRC is not computed again).
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: u32,
        acks: Acks,
        batch: Batch,
    ) -> Result<Ticket, ServiceError> {
        self.append(topic, partition, acks, Incoming::Built(batch)).await
    }

    async fn append(&self, topic: &str, partition: u32, acks: Acks, batch: Incoming) -> Result<Ticket, ServiceError> {
        let since = std::time::Instant::now();
        if acks == Acks::Local && !self.wal {
            return Err(ServiceError::AcksUnsupported);
        }
        let t = self.topic_state(topic).await?;
        let part = t.get(partition).ok_or(ServiceError::UnknownPartition {
            topic: topic.into(),
            partition,
            count: t.topic.partitions,
        })?;
        let len = match &batch {
            Incoming::Bytes(b) => b.len(),
            Incoming::Built(b) => b.bytes().len(),
        };
        if len > self.limits.max_batch_bytes {
            return Err(ServiceError::BatchTooLarge { size: len, max: self.limits.max_batch_bytes });
        }
        let batch = match batch {
            Incoming::Bytes(b) => Batch::validate(b)?,
            Incoming::Built(b) => b,
        };
        if !batch.header().is_dense() {
            // Gaps are what key compaction leaves; a producer's batch has none.
            return Err(BatchError::Offsets("a produced batch holds one record per offset".into()).into());
        }
        if self.topic_config(&t.overrides()).cleanup.compact && batch.records()?.iter().any(|r| r.key.is_none()) {
            return Err(ServiceError::MissingKey { topic: topic.into() });
        }
        self.metrics.produced(topic, u64::from(batch.header().record_count), batch.bytes().len() as u64);
        let need = u32::try_from(batch.bytes().len()).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            p = self.inflight.clone().acquire_many_owned(need) => p.map_err(|_| ServiceError::ShuttingDown)?,
            _ = tokio::time::sleep(self.limits.throttle_wait) => {
                self.metrics.throttled.inc();
                return Err(ServiceError::Throttled(self.limits.max_inflight_bytes));
            }
            _ = self.stop.cancelled() => return Err(ServiceError::ShuttingDown),
        };
        let assigned = match part.append(batch, acks, permit).await {
            // Name the owner as the metadata store has it now: the one seen
            // at the last ownership round may be gone or not known yet.
            Err(ServiceError::NotOwner { topic, partition, .. }) => {
                self.cluster.refresh_follower(&part).await?;
                return Err(ServiceError::NotOwner { topic, partition, owner: part.owner() });
            }
            other => other?,
        };
        if assigned.duplicate {
            metrics::add(&self.metrics.duplicate_batches, 1);
        }
        Ok(Ticket {
            base_offset: assigned.base_offset,
            done: assigned.done,
            committed: assigned.committed,
            acks,
            since,
            metrics: self.metrics.clone(),
        })
    }
}
