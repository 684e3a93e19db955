//! The one place where the agent's errors become wire error codes.

use silt_wire::{DecodeError, ErrorCode, FrameError};

use super::StreamError;
use crate::core::groups::GroupError;
use crate::core::producers::SequenceError;
use crate::error::ServiceError;

pub fn code_of(e: &ServiceError) -> ErrorCode {
    match e {
        ServiceError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        ServiceError::TopicExists(_) => ErrorCode::TopicExists,
        ServiceError::InvalidTopicName { .. } => ErrorCode::InvalidRequest,
        ServiceError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
        ServiceError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        ServiceError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        ServiceError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        ServiceError::InvalidBatch(_) => ErrorCode::InvalidBatch,
        ServiceError::MissingKey { .. } => ErrorCode::MissingKey,
        ServiceError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        ServiceError::AcksUnsupported => ErrorCode::InvalidRequest,
        ServiceError::Storage(_) => ErrorCode::StorageUnavailable,
        ServiceError::Corrupt(_) | ServiceError::CorruptBatch { .. } => ErrorCode::Internal,
        ServiceError::NotCommitted(_) => ErrorCode::MetadataUnavailable,
        ServiceError::Metadata(_) => ErrorCode::MetadataUnavailable,
        ServiceError::Fenced { .. } => ErrorCode::Fenced,
        ServiceError::NotOwner { .. } => ErrorCode::NotOwner,
        ServiceError::Throttled(_) => ErrorCode::Throttled,
        ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
        ServiceError::InvalidGroupName { .. } => ErrorCode::InvalidRequest,
        ServiceError::UnknownGroup(_) => ErrorCode::UnknownGroup,
        ServiceError::GroupNotEmpty(_) => ErrorCode::GroupNotEmpty,
        ServiceError::NotCoordinator { .. } => ErrorCode::NotCoordinator,
        ServiceError::UnknownConnector(_) => ErrorCode::UnknownConnector,
        ServiceError::ConnectorExists(_) => ErrorCode::ConnectorExists,
        ServiceError::InvalidConnectorName { .. } => ErrorCode::InvalidRequest,
        ServiceError::ConnectorFenced { .. } => ErrorCode::Fenced,
        ServiceError::Unauthorized { .. } => ErrorCode::Unauthorized,
        ServiceError::Unauthenticated(_) => ErrorCode::Unauthenticated,
        ServiceError::TokenExists(_) | ServiceError::UnknownToken(_) => ErrorCode::InvalidRequest,
        ServiceError::Member { reason, .. } => match reason {
            GroupError::UnknownMember(_) => ErrorCode::UnknownMember,
            GroupError::FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            GroupError::NoSubscription | GroupError::NotAssigned { .. } => ErrorCode::InvalidRequest,
        },
        ServiceError::Sequence { reason, .. } => match reason {
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequence,
            SequenceError::Duplicate { .. } => ErrorCode::DuplicateSequence,
            SequenceError::Fenced { .. } => ErrorCode::ProducerFenced,
            SequenceError::Unknown { .. } => ErrorCode::UnknownProducer,
        },
    }
}

/// The code a stream that carried no valid request is closed with: a newer
/// client can tell an older agent (unknown request, unsupported version)
/// from a broken frame.
pub fn code_of_stream(e: &StreamError) -> ErrorCode {
    match e {
        StreamError::Frame(FrameError::Version(_)) => ErrorCode::UnsupportedVersion,
        StreamError::Request(DecodeError::UnknownKind(_)) => ErrorCode::UnknownRequest,
        StreamError::Timeout => ErrorCode::Timeout,
        StreamError::ShuttingDown => ErrorCode::ShuttingDown,
        _ => ErrorCode::MalformedFrame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_clients_request_is_told_apart_from_a_broken_frame() {
        let cases = [
            (StreamError::Frame(FrameError::Version(2)), ErrorCode::UnsupportedVersion),
            (StreamError::Request(DecodeError::UnknownKind(99)), ErrorCode::UnknownRequest),
            (StreamError::Frame(FrameError::TooShort(1)), ErrorCode::MalformedFrame),
            (StreamError::Request(DecodeError::Trailing(3)), ErrorCode::MalformedFrame),
            (StreamError::Timeout, ErrorCode::Timeout),
        ];
        for (e, code) in cases {
            assert_eq!(code_of_stream(&e), code, "{e}");
        }
        assert!(code_of(&ServiceError::Fenced { topic: "t".into(), partition: 0 }).is_retriable());
    }
}
