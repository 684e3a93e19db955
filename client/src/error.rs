use std::sync::Arc;

use silt_wire::ErrorCode;

type Source = Arc<dyn std::error::Error + Send + Sync>;

/// What a client call can fail with. Cloneable, so one failed batch can
/// fail every record in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid client setting: {0}")]
    Config(String),
    /// The TLS setup (CA file, certificates) could not be used.
    #[error("invalid client setting: {what}")]
    Tls {
        what: String,
        #[source]
        source: Source,
    },
    #[error("cannot resolve agent address {addr}")]
    Resolve {
        addr: String,
        #[source]
        source: Source,
    },
    #[error("cannot reach the agent at {addr}: no answer within {secs}s (is `silt agent` running there?)")]
    ConnectTimeout { addr: String, secs: u64 },
    #[error("cannot connect to the agent at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: Source,
    },
    /// The agent's certificate is not one this client trusts: trying again
    /// (or another agent with the same CA) will not help.
    #[error("cannot connect to the agent at {addr}: its certificate is not signed by the CA this client trusts (check --ca / SILT_CA)")]
    Untrusted {
        addr: String,
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
    #[error("the agent sent something this client does not understand")]
    Frame(#[from] silt_wire::FrameError),
    #[error("the agent sent something this client does not understand")]
    Decode(#[from] silt_wire::DecodeError),
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

    /// Whether the same call may succeed if made again later (perhaps on
    /// another agent): the one definition every part of the client uses.
    /// An agent's answer is retriable as its code says
    /// ([`ErrorCode::is_retriable`], shared with the agent); a connection
    /// that could not be made, broke or went silent is, since the agent may
    /// have died and another may own the partition now.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::ConnectTimeout { .. }
            | ClientError::Connect { .. }
            | ClientError::Connection { .. }
            | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_definition_of_retriable() {
        let io = || -> Source { Arc::new(std::io::Error::other("x")) };
        let retriable = [
            ClientError::Server { code: ErrorCode::NotOwner, message: String::new() },
            ClientError::Server { code: ErrorCode::Throttled, message: String::new() },
            ClientError::ConnectTimeout { addr: "a".into(), secs: 1 },
            ClientError::Connect { addr: "a".into(), source: io() },
            ClientError::Connection { addr: "a".into(), source: io() },
            ClientError::Timeout { addr: "a".into(), secs: 1 },
        ];
        for e in &retriable {
            assert!(e.is_retriable(), "{e}");
        }
        let final_ = [
            ClientError::Server { code: ErrorCode::InvalidBatch, message: String::new() },
            ClientError::Server { code: ErrorCode::OutOfOrderSequence, message: String::new() },
            ClientError::Untrusted { addr: "a".into(), source: io() },
            ClientError::Config("x".into()),
            ClientError::Closed,
        ];
        for e in &final_ {
            assert!(!e.is_retriable(), "{e}");
        }
    }
}
