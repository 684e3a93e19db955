//! The stable numeric error-code table. A code, once shipped, keeps its
//! meaning forever; a retired code is never reused.

/// An error a request can end with, as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A frame could not be decoded; the stream is closed.
    MalformedFrame,
    /// The frame's version is not one this peer speaks.
    UnsupportedVersion,
    /// The request kind is unknown to this peer.
    UnknownRequest,
    UnknownTopic,
    TopicExists,
    InvalidPartitions,
    UnknownPartition,
    OffsetOutOfRange,
    InvalidBatch,
    BatchTooLarge,
    /// This agent does not own the partition; the message names the owner.
    NotOwner,
    /// The object store cannot be reached; retriable.
    StorageUnavailable,
    /// The metadata store cannot be reached; retriable.
    MetadataUnavailable,
    /// The agent is over its in-flight limit; retriable.
    Throttled,
    Internal,
    InvalidRequest,
    Timeout,
    /// The agent lost the partition's lease; retriable on the new owner.
    Fenced,
    /// The agent is shutting down; retriable elsewhere.
    ShuttingDown,
    /// An idempotent producer's batch does not continue its sequence: an
    /// earlier batch is missing. Nothing was written.
    OutOfOrderSequence,
    /// An idempotent producer's batch was written before, too long ago for
    /// its offsets to be remembered. Nothing was written again.
    DuplicateSequence,
    /// A batch from an older epoch of an idempotent producer. Nothing was written.
    ProducerFenced,
    /// The owner knows nothing of this idempotent producer (or of this
    /// epoch), and the batch does not start its sequence at 0. Nothing was
    /// written; the producer starts a new epoch at 0.
    UnknownProducer,
    /// This agent does not coordinate the group; the message names the one
    /// that does (retriable there).
    NotCoordinator,
    /// The group has no such member (its session ended, or it left): it
    /// must join again.
    UnknownMember,
    /// The member's epoch is stale (it was removed and came back, or its
    /// coordinator changed): it must join again, giving up its partitions.
    FencedMemberEpoch,
    UnknownGroup,
    /// The group has live members, so it cannot be reset or deleted.
    GroupNotEmpty,
    /// A topic config key is unknown or its value is invalid; nothing changed.
    InvalidConfig,
    /// A record without a key sent to a key-compacted topic; nothing written.
    MissingKey,
    UnknownConnector,
    ConnectorExists,
    /// The connection's principal may not do this (no ACL allows it, or
    /// one denies it); nothing changed. The message names the operation
    /// and the resource.
    Unauthorized,
    /// The connection has not proved who it is (no credentials, a wrong,
    /// expired or revoked token); nothing changed.
    Unauthenticated,
    /// A code this build does not know (from a newer peer).
    Unknown(u16),
}

impl ErrorCode {
    /// The stable number of each code. Append; never renumber.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::MalformedFrame => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::UnknownRequest => 3,
            ErrorCode::UnknownTopic => 4,
            ErrorCode::TopicExists => 5,
            ErrorCode::InvalidPartitions => 6,
            ErrorCode::UnknownPartition => 7,
            ErrorCode::OffsetOutOfRange => 8,
            ErrorCode::InvalidBatch => 9,
            ErrorCode::BatchTooLarge => 10,
            ErrorCode::NotOwner => 11,
            ErrorCode::StorageUnavailable => 12,
            ErrorCode::MetadataUnavailable => 13,
            ErrorCode::Throttled => 14,
            ErrorCode::Internal => 15,
            ErrorCode::InvalidRequest => 16,
            ErrorCode::Timeout => 17,
            ErrorCode::Fenced => 18,
            ErrorCode::ShuttingDown => 19,
            ErrorCode::OutOfOrderSequence => 20,
            ErrorCode::DuplicateSequence => 21,
            ErrorCode::ProducerFenced => 22,
            ErrorCode::UnknownProducer => 23,
            ErrorCode::NotCoordinator => 24,
            ErrorCode::UnknownMember => 25,
            ErrorCode::FencedMemberEpoch => 26,
            ErrorCode::UnknownGroup => 27,
            ErrorCode::GroupNotEmpty => 28,
            ErrorCode::InvalidConfig => 29,
            ErrorCode::MissingKey => 30,
            ErrorCode::UnknownConnector => 31,
            ErrorCode::ConnectorExists => 32,
            ErrorCode::Unauthorized => 33,
            ErrorCode::Unauthenticated => 34,
            ErrorCode::Unknown(n) => n,
        }
    }

    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::MalformedFrame,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnknownRequest,
            4 => ErrorCode::UnknownTopic,
            5 => ErrorCode::TopicExists,
            6 => ErrorCode::InvalidPartitions,
            7 => ErrorCode::UnknownPartition,
            8 => ErrorCode::OffsetOutOfRange,
            9 => ErrorCode::InvalidBatch,
            10 => ErrorCode::BatchTooLarge,
            11 => ErrorCode::NotOwner,
            12 => ErrorCode::StorageUnavailable,
            13 => ErrorCode::MetadataUnavailable,
            14 => ErrorCode::Throttled,
            15 => ErrorCode::Internal,
            16 => ErrorCode::InvalidRequest,
            17 => ErrorCode::Timeout,
            18 => ErrorCode::Fenced,
            19 => ErrorCode::ShuttingDown,
            20 => ErrorCode::OutOfOrderSequence,
            21 => ErrorCode::DuplicateSequence,
            22 => ErrorCode::ProducerFenced,
            23 => ErrorCode::UnknownProducer,
            24 => ErrorCode::NotCoordinator,
            25 => ErrorCode::UnknownMember,
            26 => ErrorCode::FencedMemberEpoch,
            27 => ErrorCode::UnknownGroup,
            28 => ErrorCode::GroupNotEmpty,
            29 => ErrorCode::InvalidConfig,
            30 => ErrorCode::MissingKey,
            31 => ErrorCode::UnknownConnector,
            32 => ErrorCode::ConnectorExists,
            33 => ErrorCode::Unauthorized,
            34 => ErrorCode::Unauthenticated,
            n => ErrorCode::Unknown(n),
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotOwner
                | ErrorCode::StorageUnavailable
                | ErrorCode::MetadataUnavailable
                | ErrorCode::Throttled
                | ErrorCode::Timeout
                | ErrorCode::Fenced
                | ErrorCode::ShuttingDown
                | ErrorCode::NotCoordinator
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "MALFORMED_FRAME",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::UnknownRequest => "UNKNOWN_REQUEST",
            ErrorCode::UnknownTopic => "UNKNOWN_TOPIC",
            ErrorCode::TopicExists => "TOPIC_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::UnknownPartition => "UNKNOWN_PARTITION",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::InvalidBatch => "INVALID_BATCH",
            ErrorCode::BatchTooLarge => "BATCH_TOO_LARGE",
            ErrorCode::NotOwner => "NOT_OWNER",
            ErrorCode::StorageUnavailable => "STORAGE_UNAVAILABLE",
            ErrorCode::MetadataUnavailable => "METADATA_UNAVAILABLE",
            ErrorCode::Throttled => "THROTTLED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Fenced => "FENCED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE",
            ErrorCode::DuplicateSequence => "DUPLICATE_SEQUENCE",
            ErrorCode::ProducerFenced => "PRODUCER_FENCED",
            ErrorCode::UnknownProducer => "UNKNOWN_PRODUCER",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::UnknownMember => "UNKNOWN_MEMBER",
            ErrorCode::FencedMemberEpoch => "FENCED_MEMBER_EPOCH",
            ErrorCode::UnknownGroup => "UNKNOWN_GROUP",
            ErrorCode::GroupNotEmpty => "GROUP_NOT_EMPTY",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::MissingKey => "MISSING_KEY",
            ErrorCode::UnknownConnector => "UNKNOWN_CONNECTOR",
            ErrorCode::ConnectorExists => "CONNECTOR_EXISTS",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Unknown(_) => "UNKNOWN_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Unknown(n) => write!(f, "UNKNOWN_ERROR({n})"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_numbers_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for n in 1..=34u16 {
            let code = ErrorCode::from_u16(n);
            assert!(!matches!(code, ErrorCode::Unknown(_)), "code {n} is assigned");
            assert_eq!(code.as_u16(), n);
            assert!(seen.insert(code.name()));
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Unknown(999));
        assert_eq!(ErrorCode::Unknown(999).as_u16(), 999);
    }
}
