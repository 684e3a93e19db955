//! The agent's errors: [`AgentError`] (it cannot start or keep running) and
//! [`ServiceError`] (one request failed). Each keeps its source; the QUIC
//! front end maps them to wire codes in one file (`frontend/quic/codes.rs`).

use std::sync::Arc;

use silt_metadata::{CatalogError, MetaError};
use silt_wire::BatchError;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// Why the agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid setting {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A config file's line that cannot be used; `reason` names its key.
    #[error("{path}:{line}: {reason}")]
    ConfigFile { path: String, line: usize, reason: String },
    #[error("cannot use data directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed: {what}")]
    Tls {
        what: String,
        #[source]
        source: Option<Source>,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the metadata store")]
    Metadata(#[from] MetaError),
    #[error("metadata catalog error")]
    Catalog(#[from] CatalogError),
    #[error(
        "the object store {url}{at} cannot be used (does the bucket exist, and may these credentials write to it?)"
    )]
    StorageCheck {
        url: String,
        at: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot set up the read cache")]
    Cache(#[source] Source),
    #[error("cannot open the object store {url}")]
    ObjectStore {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Why one request failed. Cloneable, so one failed flush can fail every
/// batch in it; sources are shared, never flattened into strings.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic:?} is key-compacted (cleanup.policy=compact): every record needs a key")]
    MissingKey { topic: String },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("invalid partition count {count}: a topic needs between 1 and {max} partitions")]
    InvalidPartitions { count: u32, max: u32 },
    #[error("topic {topic:?} has no partition {partition} (it has {count}: 0 to {last})", last = count.saturating_sub(1))]
    UnknownPartition { topic: String, partition: u32, count: u32 },
    #[error("offset {offset} is out of range for {topic}/{partition}: it holds offsets {log_start} to {high_watermark} (exclusive); reading at {high_watermark} waits for new records")]
    OffsetOutOfRange { topic: String, partition: u32, offset: i64, log_start: i64, high_watermark: i64 },
    #[error("invalid record batch")]
    InvalidBatch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    #[error(
        "acks=local needs a local write-ahead log: start the agent with --cache-dir (or use acks=durable or none)"
    )]
    AcksUnsupported,
    #[error("object store unavailable")]
    Storage(#[source] Arc<object_store::Error>),
    #[error("the batch is stored but its index entry could not be committed, so it was not acknowledged")]
    NotCommitted(#[source] Arc<CatalogError>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("stored data is corrupt: {at}")]
    CorruptBatch {
        at: String,
        #[source]
        source: BatchError,
    },
    #[error("metadata store error")]
    Metadata(#[source] Arc<CatalogError>),
    #[error("this agent does not own {topic}/{partition}; its owner is {}", if owner.is_empty() { "not known yet" } else { owner.as_str() })]
    NotOwner { topic: String, partition: u32, owner: String },
    #[error("this agent lost the lease on {topic}/{partition}; retry on its new owner")]
    Fenced { topic: String, partition: u32 },
    #[error("the agent is over its in-flight limit of {0} bytes; retry later")]
    Throttled(usize),
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("{topic}/{partition}")]
    Sequence {
        topic: String,
        partition: u32,
        #[source]
        reason: SequenceError,
    },
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroupName { name: String, reason: &'static str },
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("group {0:?} has live members; stop them first (or wait for their sessions to end)")]
    GroupNotEmpty(String),
    #[error("this agent does not coordinate group {group:?}; its coordinator is {}", if coordinator.is_empty() { "not known yet" } else { coordinator.as_str() })]
    NotCoordinator { group: String, coordinator: String },
    #[error("group {group:?}")]
    Member {
        group: String,
        #[source]
        reason: GroupError,
    },
    #[error("connector {0:?} does not exist")]
    UnknownConnector(String),
    #[error("connector {0:?} already exists")]
    ConnectorExists(String),
    #[error("invalid connector name {name:?}: {reason}")]
    InvalidConnectorName { name: String, reason: &'static str },
    #[error("{principal} may not {operation} {resource} {name:?}")]
    Unauthorized {
        principal: String,
        operation: silt_wire::auth::Operation,
        resource: silt_wire::auth::ResourceType,
        name: String,
    },
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("{0:?} already has a token; revoke it first")]
    TokenExists(String),
    #[error("{0:?} has no token")]
    UnknownToken(String),
    #[error("connector {name:?} is now held by {} at epoch {epoch}; this worker must stop it", if holder.is_empty() { "no worker" } else { holder.as_str() })]
    ConnectorFenced { name: String, holder: String, epoch: u64 },
}

impl From<CatalogError> for ServiceError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::UnknownTopic(t) => ServiceError::UnknownTopic(t),
            CatalogError::TopicExists(t) => ServiceError::TopicExists(t),
            CatalogError::UnknownConnector(c) => ServiceError::UnknownConnector(c),
            CatalogError::ConnectorExists(c) => ServiceError::ConnectorExists(c),
            CatalogError::TokenExists(p) => ServiceError::TokenExists(p),
            CatalogError::UnknownToken(p) => ServiceError::UnknownToken(p),
            CatalogError::ConnectorFenced { name, holder, epoch } => {
                ServiceError::ConnectorFenced { name, holder, epoch }
            }
            other => ServiceError::Metadata(Arc::new(other)),
        }
    }
}

/// Why a batch is refused (nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error(
        "producer {producer_id}: expected sequence {expected} (epoch {epoch}), got {got}; an earlier batch is missing"
    )]
    OutOfOrder { producer_id: i64, epoch: i16, expected: i32, got: i32 },
    #[error("producer {producer_id}: sequence {got} was written before, too long ago to know its offsets")]
    Duplicate { producer_id: i64, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than its current epoch {current}")]
    Fenced { producer_id: i64, got: i16, current: i16 },
    #[error("producer {producer_id} (epoch {epoch}) is not known here and its sequence starts at {got}, not 0")]
    Unknown { producer_id: i64, epoch: i16, got: i32 },
}

/// Why a heartbeat or commit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("member {0} is not in the group (its session ended, or it left); it must join again")]
    UnknownMember(String),
    #[error("member {member} sent epoch {got}, but is at epoch {current}; it must join again")]
    FencedMemberEpoch { member: String, got: i64, current: u64 },
    #[error("a member joining must say which topics it subscribes to")]
    NoSubscription,
    #[error("member {member} does not hold {topic}/{partition}")]
    NotAssigned { member: String, topic: String, partition: u32 },
}

/// An error and its sources, in words: what the agent sends with an error code.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_sources() {
        let e = ServiceError::from(CatalogError::Store(MetaError::Conflict));
        assert_eq!(describe(&e), "metadata store error: transaction conflict: another writer changed the same keys");
        let e = ServiceError::Sequence {
            topic: "t".into(),
            partition: 1,
            reason: SequenceError::Fenced { producer_id: 7, got: 0, current: 1 },
        };
        assert_eq!(describe(&e), "t/1: producer 7: epoch 0 is older than its current epoch 1");
    }
}
