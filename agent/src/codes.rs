//! The one place where the agent's errors become wire error codes.

use silt_wire::ErrorCode;

use crate::error::ServiceError;
use crate::producers::SequenceError;

pub fn code_of(e: &ServiceError) -> ErrorCode {
    match e {
        ServiceError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        ServiceError::TopicExists(_) => ErrorCode::TopicExists,
        ServiceError::InvalidTopicName { .. } => ErrorCode::InvalidRequest,
        ServiceError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        ServiceError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        ServiceError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        ServiceError::InvalidBatch(_) => ErrorCode::InvalidBatch,
        ServiceError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        ServiceError::AcksUnsupported => ErrorCode::InvalidRequest,
        ServiceError::Storage(_) => ErrorCode::StorageUnavailable,
        ServiceError::Corrupt(_) => ErrorCode::Internal,
        ServiceError::NotCommitted(_) => ErrorCode::MetadataUnavailable,
        ServiceError::Metadata(_) => ErrorCode::MetadataUnavailable,
        ServiceError::Fenced { .. } => ErrorCode::Fenced,
        ServiceError::NotOwner { .. } => ErrorCode::NotOwner,
        ServiceError::Throttled(_) => ErrorCode::Throttled,
        ServiceError::ShuttingDown => ErrorCode::ShuttingDown,
        ServiceError::Sequence { reason, .. } => match reason {
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequence,
            SequenceError::Duplicate { .. } => ErrorCode::DuplicateSequence,
            SequenceError::Fenced { .. } => ErrorCode::ProducerFenced,
            SequenceError::Unknown { .. } => ErrorCode::UnknownProducer,
        },
    }
}

/// The message sent with the code: the error and its sources, in words.
pub fn message_of(e: &ServiceError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
