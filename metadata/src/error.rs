use crate::codec::CodecError;

/// What a metadata-store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Another transaction changed what this one read for update or wrote.
    /// Nothing was written; run the transaction again.
    #[error("transaction conflict: another writer changed the same keys")]
    Conflict,
    #[error("metadata store {backend} failed")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid metadata URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

impl MetaError {
    pub fn backend(backend: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        MetaError::Backend { backend, source: Box::new(source) }
    }
}

/// What a catalog operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("the lease on {topic_id}/{partition} is held by {owner} at epoch {epoch}")]
    LeaseHeld { topic_id: u64, partition: u32, owner: String, epoch: u64 },
    /// The committing agent no longer holds the lease at the epoch it wrote under.
    #[error("fenced: the lease on {topic_id}/{partition} is now held by {owner:?} at epoch {epoch}")]
    Fenced { topic_id: u64, partition: u32, owner: String, epoch: u64 },
    #[error("connector {0:?} does not exist")]
    UnknownConnector(String),
    #[error("connector {0:?} already exists")]
    ConnectorExists(String),
    #[error("{0:?} already has a token; revoke it first")]
    TokenExists(String),
    #[error("{0:?} has no token")]
    UnknownToken(String),
    /// The committing worker no longer holds the connector's claim at its epoch.
    #[error("fenced: connector {name:?} is now held by {holder:?} at epoch {epoch}")]
    ConnectorFenced { name: String, holder: String, epoch: u64 },
    #[error("stored value under {key} is corrupt")]
    Corrupt {
        key: String,
        #[source]
        source: CodecError,
    },
    #[error(transparent)]
    Store(#[from] MetaError),
}
