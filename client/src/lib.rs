//! The silt client SDK over QUIC.
//!
//! - [`client`]: [`Client`], one QUIC connection to an agent, and the
//!   request/response plumbing.
//! - [`admin`]: create, list, describe and delete topics.
//! - [`producer`]: [`Producer`], which batches per partition, compresses and awaits acks.
//! - [`consumer`]: [`Consumer`], which reads explicit partitions from explicit offsets as a `Stream`.
//! - [`group_consumer`]: [`GroupConsumer`], a member of a consumer group, as a `Stream`.
//! - `connectors`: connector configs and the requests of connect workers, on [`Client`].
//! - `groups`: group administration on [`Client`] (list, describe, offsets, reset, delete).
//! - `router`: which agent owns each partition, shared by producer and consumer.
//! - [`partitioner`]: the stable key hash (Kafka's murmur2, so keys land where Kafka clients put them).

mod access;
pub mod admin;
pub mod client;
mod connectors;
pub mod consumer;
mod error;
pub mod group_consumer;
mod groups;
pub mod partitioner;
pub mod producer;
mod router;

pub use client::{Client, ClientConfig};
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, Offset, RecordStream, Skipped};
pub use error::ClientError;
pub use group_consumer::{AutoOffsetReset, GroupConfig, GroupConsumer, Received};
pub use producer::{Delivery, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use silt_wire::auth;
pub use silt_wire::units;
pub use silt_wire::{
    Acks, AgentInfo, Compression, ConnectHeartbeat, ConnectorInfo, ConnectorOp, ErrorCode, GroupAssignment,
    GroupDescription, GroupHeartbeat, GroupInfo, GroupPartition, Header, MemberInfo, OffsetCommit, PartitionInfo,
    ResetTo, TopicDescription, TopicOffset, TopicPartitions,
};
