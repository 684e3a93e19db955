use std::sync::Arc;

use silt_wire::ErrorCode;

type Source = Arc<dyn std::error::Error + Send + Sync>;

/// What a client call can fail with. Cloneable, so one failed batch can
/// fail every record in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid client setting: {0}")]
    Config(String),
    #[error("cannot resolve agent address {addr}")]
    Resolve {
        addr: String,
        #[source]
        source: Source,
    },
    #[error("cannot reach the agent at {addr}: no answer within {secs}s (is `silt agent` running there?)")]
    ConnectTimeout { addr: String, secs: u64 },
    #[error("cannot connect to the agent at {addr}{hint}")]
    Connect {
        addr: String,
        hint: &'static str,
        #[source]
        source: Source,
    },
    #[error("lost the connection to the agent at {addr}")]
    Connection {
        addr: String,
        #[source]
        source: Source,
    },
    #[error("no answer from the agent at {addr} within {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("the agent sent something this client does not understand: {0}")]
    Protocol(String),
    /// The agent answered with an error.
    #[error("{message} ({code})")]
    Server { code: ErrorCode, message: String },
    #[error("record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition { topic: String, partition: u32, count: u32 },
    #[error("stored batch failed its checks: {0}")]
    CorruptBatch(#[from] silt_wire::BatchError),
    #[error("the producer is closed")]
    Closed,
}

impl ClientError {
    /// The server's error code, when the agent answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::ConnectTimeout { .. } | ClientError::Connection { .. } | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }
}
