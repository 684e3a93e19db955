//! What the agent does for a request, independent of how it arrived: the
//! QUIC front end maps frames onto these calls (and a Kafka listener can
//! map its own protocol onto the same ones). Requests and answers are the
//! service's own [`types`].
//!
//! - [`admin`]: topics, agents, producer ids, stats.
//! - [`groups`]: consumer groups: heartbeats, offsets, listing, resets.
//! - [`produce`]: appending batches.
//! - [`fetch`]: reading from an offset, long-polling at the end.
//! - [`auth`]: tokens and ACLs.

pub mod admin;
pub mod auth;
pub mod connect;
pub mod fetch;
pub mod groups;
pub mod produce;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use silt_metadata::Catalog;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::cluster::{Cluster, TopicState};
use crate::core::topic_config::TopicConfig;
use crate::error::ServiceError;
use crate::groups::Coordinator;
use crate::log::partition::Partition;
use crate::metrics::Metrics;
use crate::read::ReadPath;
pub use types::{
    Acks, AgentInfo, Fetched, GroupDetail, GroupPartitionDetail, GroupSummary, MemberDetail, PartitionInfo, Reset,
    Ticket, TopicInfo,
};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_record_bytes: usize,
    /// Topic settings where a topic does not override them.
    pub topic_defaults: TopicConfig,
    pub max_batch_bytes: usize,
    pub max_inflight_bytes: usize,
    /// How long a producer waits for room under the in-flight limit before THROTTLED.
    pub throttle_wait: Duration,
    /// How long a deleted topic's objects stay, for reads in flight.
    pub gc_grace: Duration,
}

pub struct Service {
    cluster: Arc<Cluster>,
    coordinator: Arc<Coordinator>,
    catalog: Catalog,
    read: ReadPath,
    /// Bytes accepted and not yet durable, across all producers.
    inflight: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Whether the agent has a write-ahead log (acks=local).
    wal: bool,
    auth: Arc<Auth>,
    stop: CancellationToken,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Arc<Cluster>,
        coordinator: Arc<Coordinator>,
        catalog: Catalog,
        read: ReadPath,
        inflight: Arc<Semaphore>,
        limits: Limits,
        metrics: Arc<Metrics>,
        wal: bool,
        auth: Arc<Auth>,
        stop: CancellationToken,
    ) -> Service {
        Service { cluster, coordinator, catalog, read, inflight, limits, metrics, wal, auth, stop }
    }

    /// Who connections are and what they may do, for the front ends.
    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// The agent's metrics, for the front ends to count their connections and requests.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether acks=local is served (the agent has a write-ahead log).
    pub fn has_wal(&self) -> bool {
        self.wal
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// A topic this agent knows, or one another agent created since the
    /// last ownership round (then followed until the next round).
    async fn topic_state(&self, name: &str) -> Result<Arc<TopicState>, ServiceError> {
        if let Some(t) = self.cluster.table.get(name) {
            return Ok(t);
        }
        let topic = self.catalog.topic(name).await?.ok_or_else(|| ServiceError::UnknownTopic(name.into()))?;
        Ok(self.cluster.adopt(topic).await?)
    }

    async fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, ServiceError> {
        let t = self.topic_state(topic).await?;
        t.get(partition).ok_or(ServiceError::UnknownPartition {
            topic: topic.into(),
            partition,
            count: t.topic.partitions,
        })
    }
}
