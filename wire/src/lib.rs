//! silt's wire format: a pure codec, bytes in and typed values out, no I/O.
//!
//! - [`batch`]: the record-batch format (the unit of storage and transfer).
//! - [`frame`]: the length-prefixed, versioned frame around every message.
//! - [`message`]: requests and responses carried in frames.
//! - [`group`]: the consumer-group messages' bodies.
//! - [`auth`]: ACLs and tokens, as the admin requests carry them.
//! - [`code`]: the stable numeric error-code table.
//! - [`buf`]: bounds-checked readers and writers shared by the codecs.
//!
//! Every decoder is total: any byte string yields a value or a typed error,
//! never a panic and never an allocation larger than the input justifies.

pub mod auth;
pub mod batch;
pub mod buf;
pub mod code;
pub mod connect;
pub mod frame;
pub mod group;
pub mod message;
pub mod units;

pub use auth::{Acl, TokenInfo};
pub use batch::{
    advance_sequence, restamp_producer, Batch, BatchBuilder, BatchError, BatchHeader, Compression, Header, Record,
};
pub use buf::DecodeError;
pub use code::ErrorCode;
pub use connect::{ConnectHeartbeat, ConnectorInfo, ConnectorOp};
pub use frame::{Frame, FrameError, ALPN};
pub use group::{
    GroupAssignment, GroupDescription, GroupHeartbeat, GroupInfo, GroupPartition, MemberInfo, OffsetCommit, ResetTo,
    TopicOffset, TopicPartitions,
};
pub use message::{Acks, AgentInfo, PartitionInfo, Request, Response, TopicDescription, PRODUCER_WINDOW};
