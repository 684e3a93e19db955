//! The service's errors as Kafka error codes.

use kafka_protocol::error::ResponseError as K;

use silt_wire::auth::ResourceType;

use crate::error::{GroupError, SequenceError, ServiceError};

/// The Kafka error code a client acts on for `e`.
pub fn code_of(e: &ServiceError) -> i16 {
    let k = match e {
        ServiceError::UnknownTopic(_) | ServiceError::UnknownPartition { .. } => K::UnknownTopicOrPartition,
        ServiceError::TopicExists(_) => K::TopicAlreadyExists,
        ServiceError::InvalidTopicName { .. } => K::InvalidTopicException,
        ServiceError::InvalidPartitions { .. } => K::InvalidPartitions,
        ServiceError::InvalidConfig { .. } => K::InvalidConfig,
        ServiceError::OffsetOutOfRange { .. } => K::OffsetOutOfRange,
        ServiceError::InvalidBatch(_) => K::CorruptMessage,
        ServiceError::MissingKey { .. } => K::InvalidRecord,
        ServiceError::BatchTooLarge { .. } => K::MessageTooLarge,
        ServiceError::AcksUnsupported => K::InvalidRequiredAcks,
        ServiceError::Storage(_) | ServiceError::NotCommitted(_) => K::KafkaStorageError,
        ServiceError::Corrupt(_) | ServiceError::CorruptBatch { .. } => K::UnknownServerError,
        ServiceError::Metadata(_) => K::RequestTimedOut,
        ServiceError::NotOwner { .. } | ServiceError::Fenced { .. } => K::NotLeaderOrFollower,
        ServiceError::Throttled(_) => K::ThrottlingQuotaExceeded,
        ServiceError::ShuttingDown => K::NotLeaderOrFollower,
        ServiceError::InvalidGroupName { .. } => K::InvalidGroupId,
        ServiceError::UnknownGroup(_) => K::GroupIdNotFound,
        ServiceError::GroupNotEmpty(_) => K::NonEmptyGroup,
        ServiceError::NotCoordinator { .. } => K::NotCoordinator,
        // Connectors are not reached through Kafka's protocol.
        ServiceError::UnknownConnector(_)
        | ServiceError::ConnectorExists(_)
        | ServiceError::InvalidConnectorName { .. }
        | ServiceError::ConnectorFenced { .. } => K::InvalidRequest,
        ServiceError::Unauthorized { resource, .. } => match resource {
            ResourceType::Topic => K::TopicAuthorizationFailed,
            ResourceType::Group => K::GroupAuthorizationFailed,
            ResourceType::Cluster => K::ClusterAuthorizationFailed,
        },
        ServiceError::Unauthenticated(_) => K::SaslAuthenticationFailed,
        ServiceError::TokenExists(_) | ServiceError::UnknownToken(_) => K::InvalidRequest,
        ServiceError::Member { reason, .. } => match reason {
            GroupError::UnknownMember(_) => K::UnknownMemberId,
            GroupError::FencedMemberEpoch { .. } => K::IllegalGeneration,
            GroupError::NoSubscription => K::InvalidRequest,
            GroupError::NotAssigned { .. } => K::IllegalGeneration,
        },
        ServiceError::Sequence { reason, .. } => match reason {
            SequenceError::OutOfOrder { .. } => K::OutOfOrderSequenceNumber,
            SequenceError::Duplicate { .. } => K::DuplicateSequenceNumber,
            SequenceError::Fenced { .. } => K::InvalidProducerEpoch,
            SequenceError::Unknown { .. } => K::UnknownProducerId,
        },
    };
    k.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_clients_retry_on_is_retriable() {
        let retriable = [
            ServiceError::NotOwner { topic: "t".into(), partition: 0, owner: String::new() },
            ServiceError::Fenced { topic: "t".into(), partition: 0 },
            ServiceError::UnknownTopic("t".into()),
            ServiceError::NotCoordinator { group: "g".into(), coordinator: String::new() },
        ];
        for e in retriable {
            let code = code_of(&e);
            assert!(K::try_from_code(code).is_some_and(|k| k.is_retriable()), "{e}: {code}");
        }
        assert_eq!(code_of(&ServiceError::TopicExists("t".into())), 36);
    }
}
