//! The service's own types: what a request asks and what it gets back,
//! independent of any protocol. The QUIC front end maps them to `silt_wire`
//! messages; a Kafka front end would map them to its own.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::error::ServiceError;
pub use crate::log::Acks;
use crate::log::{Done, Outcome};
use crate::metrics::Metrics;

/// A topic and its partitions as the metadata store has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: u64,
    /// The largest record producers may send (the topic's max.message.bytes).
    pub max_record_bytes: u32,
    pub partitions: Vec<PartitionInfo>,
    /// The topic's config overrides, sorted by key.
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The owner's address while its lease is live, else empty.
    pub owner: String,
    pub epoch: u64,
    pub log_start: i64,
    pub high_watermark: i64,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: String,
    pub address: String,
    /// Where Kafka clients reach it; empty without a Kafka listener.
    pub kafka_address: String,
    /// Whether its session is live.
    pub live: bool,
    /// Partitions it holds a live lease on.
    pub partitions: u32,
    pub heartbeat_ms: i64,
}

/// A produce that has its offsets; [`Ticket::acked`] resolves when it is
/// acknowledged.
pub struct Ticket {
    pub base_offset: i64,
    pub(crate) done: Done,
    /// acks=local: resolves once the batch is committed (after `done`).
    pub(crate) committed: Option<Done>,
    pub(crate) acks: Acks,
    pub(crate) since: Instant,
    pub(crate) metrics: Arc<Metrics>,
}

impl Ticket {
    /// Waits for the acknowledgement `acks` asked for (timed, for the
    /// produce latency metric); with acks=local, what is left is the
    /// commit's.
    pub async fn acked(self) -> (Outcome, Option<Done>) {
        let outcome = self.done.await.unwrap_or(Err(ServiceError::ShuttingDown));
        if outcome.is_ok() {
            self.metrics.produce_latency(self.acks.name(), self.since);
        }
        (outcome, self.committed)
    }
}

/// What a fetch read.
pub struct Fetched {
    pub high_watermark: i64,
    pub log_start: i64,
    /// Whole record batches, as stored, in order: slices to send one after
    /// the other.
    pub batches: Vec<Bytes>,
}

/// One group, as `list_groups` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub state: String,
    pub members: u32,
    pub epoch: u64,
}

/// A group member, as `describe_group` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDetail {
    pub id: String,
    pub host: String,
    pub assigned: Vec<(String, u32)>,
}

/// One partition of a group: where the group is and where the log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionDetail {
    pub topic: String,
    pub partition: u32,
    /// The next offset the group reads, when it committed one.
    pub committed: Option<i64>,
    pub log_end: i64,
    /// The member consuming it, when one is.
    pub member: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    pub name: String,
    pub state: String,
    pub epoch: u64,
    pub coordinator: String,
    pub members: Vec<MemberDetail>,
    pub partitions: Vec<GroupPartitionDetail>,
}

/// Where `reset_offsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
    Offset(i64),
}
