//! Answers to client APIs this listener does not offer (and so does not
//! advertise): UNSUPPORTED_VERSION where the answer carries it, at the top
//! or for each topic, partition or resource the request names, so a client
//! that sends one anyway gets an error it can show instead of a dropped
//! connection. APIs only brokers and controllers send one another are not
//! answered: their connection closes, as for a malformed request.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::{
    create_acls_response, create_partitions_response, delete_acls_response, delete_records_response,
    describe_topic_partitions_response, offset_for_leader_epoch_response, txn_offset_commit_response,
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, AlterConfigsRequest, AlterConfigsResponse,
    AlterPartitionReassignmentsResponse, AlterShareGroupOffsetsResponse, ApiKey, ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse, CreateAclsRequest, CreateAclsResponse, CreateDelegationTokenResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteAclsRequest, DeleteAclsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteShareGroupOffsetsResponse, DescribeAclsResponse, DescribeClientQuotasResponse,
    DescribeDelegationTokenResponse, DescribeLogDirsResponse, DescribeQuorumResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, DescribeUserScramCredentialsResponse, ElectLeadersResponse, EndTxnResponse,
    ExpireDelegationTokenResponse, GetTelemetrySubscriptionsResponse, ListPartitionReassignmentsResponse,
    ListTransactionsResponse, OffsetDeleteResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    PushTelemetryResponse, RenewDelegationTokenResponse, SaslAuthenticateResponse, SaslHandshakeResponse,
    ShareAcknowledgeResponse, ShareFetchResponse, ShareGroupHeartbeatResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, UpdateFeaturesResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// What such an answer says.
fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("silt does not offer this API (see ApiVersions)"))
}

fn decode<M: Decodable + Message>(body: &mut Bytes, version: i16) -> Option<M> {
    if version < M::VERSIONS.min || version > M::VERSIONS.max {
        return None;
    }
    M::decode(body, version).ok()
}

fn encodes<M: Encodable>(m: &M, version: i16) -> bool {
    m.encode(&mut bytes::BytesMut::new(), version).is_ok()
}

/// The answer to `api` at `version`, framed for `correlation_id`, or None
/// when it gets none.
pub fn answer(api: ApiKey, version: i16, correlation_id: i32, body: &mut Bytes) -> Option<Result<Bytes, String>> {
    let code = K::UnsupportedVersion.code();
    macro_rules! frame {
        ($response:expr $(,)?) => {
            super::frame_response(api, version, correlation_id, &$response)
        };
    }
    // Answers with an error code of their own, at the top.
    macro_rules! top {
        ($($variant:ident => $response:ty),* $(,)?) => {
            match api {
                $(ApiKey::$variant => {
                    // Versions without the field answer with none.
                    let r = <$response>::default().with_error_code(code);
                    let r = if encodes(&r, version) { r } else { <$response>::default() };
                    return Some(frame!(r));
                })*
                _ => {}
            }
        };
    }
    top!(
        SaslHandshake => SaslHandshakeResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        AddPartitionsToTxn => AddPartitionsToTxnResponse,
        EndTxn => EndTxnResponse,
        ListTransactions => ListTransactionsResponse,
        DescribeAcls => DescribeAclsResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        ElectLeaders => ElectLeadersResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        OffsetDelete => OffsetDeleteResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        DescribeQuorum => DescribeQuorumResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        PushTelemetry => PushTelemetryResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        ShareFetch => ShareFetchResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
        AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
    );
    // Answers whose errors are per topic, partition or resource: one each.
    Some(match api {
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest = decode(body, version)?;
            frame!(CreatePartitionsResponse::default().with_results(
                req.topics
                    .into_iter()
                    .map(|t| {
                        create_partitions_response::CreatePartitionsTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),)
        }
        ApiKey::DeleteRecords => {
            let req: DeleteRecordsRequest = decode(body, version)?;
            frame!(DeleteRecordsResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        delete_records_response::DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    delete_records_response::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_low_watermark(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            ),)
        }
        ApiKey::AlterConfigs => {
            let req: AlterConfigsRequest = decode(body, version)?;
            frame!(AlterConfigsResponse::default().with_responses(
                req.resources
                    .into_iter()
                    .map(|r| {
                        kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(r.resource_type)
                            .with_resource_name(r.resource_name)
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req: OffsetForLeaderEpochRequest = decode(body, version)?;
            frame!(OffsetForLeaderEpochResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                            .with_topic(t.topic)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        offset_for_leader_epoch_response::EpochEndOffset::default()
                                            .with_partition(p.partition)
                                            .with_leader_epoch(-1)
                                            .with_end_offset(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),)
        }
        ApiKey::TxnOffsetCommit => {
            let req: TxnOffsetCommitRequest = decode(body, version)?;
            frame!(TxnOffsetCommitResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),)
        }
        ApiKey::CreateAcls => {
            let req: CreateAclsRequest = decode(body, version)?;
            frame!(CreateAclsResponse::default().with_results(
                req.creations
                    .iter()
                    .map(|_| {
                        create_acls_response::AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),)
        }
        ApiKey::DeleteAcls => {
            let req: DeleteAclsRequest = decode(body, version)?;
            frame!(DeleteAclsResponse::default().with_filter_results(
                req.filters
                    .iter()
                    .map(|_| {
                        delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),)
        }
        ApiKey::ConsumerGroupDescribe => {
            let req: ConsumerGroupDescribeRequest = decode(body, version)?;
            frame!(ConsumerGroupDescribeResponse::default().with_groups(
                req.group_ids
                    .into_iter()
                    .map(|g| {
                        kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            ),)
        }
        ApiKey::DescribeTopicPartitions => {
            let req: DescribeTopicPartitionsRequest = decode(body, version)?;
            frame!(DescribeTopicPartitionsResponse::default().with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                            .with_name(Some(t.name))
                            .with_error_code(code)
                    })
                    .collect(),
            ),)
        }
        _ => return None,
    })
}
