//! The Kafka APIs silt answers, each mapped onto the service.
//!
//! Versions are capped where a newer one would name topics by id only
//! (Fetch 13, Produce 13, OffsetCommit and OffsetFetch 10): clients then
//! use the newest version below, which names them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::OwnedSemaphorePermit;

use silt_wire::auth::{Operation, ResourceType, CLUSTER};

use super::codes::code_of;
use super::sasl::{self, allows, check, Conn};
use super::{frame_response, parse, records, ConnectionError, Context, Pending};
use crate::auth::Session;
use crate::error::{describe, ServiceError};
use crate::metrics::InFlight;
use crate::service::{Acks, AgentInfo, Ticket};

/// The APIs answered, with the versions offered (within what the protocol
/// crate knows).
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // Version 0 is offered for librdkafka, which asks for it before it
    // uses version 1 with SaslAuthenticate; a client that sent raw SASL
    // tokens after it (Kafka before 1.0) would be closed as malformed.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Longest long-poll a fetch may ask for.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Partitions of a topic created without a count.
const DEFAULT_PARTITIONS: u32 = 1;
pub const CLUSTER_ID: &str = "silt";

/// The versions of `api` this listener answers, if any.
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    let (_, min, max) = APIS.iter().find(|(k, _, _)| *k == api)?;
    let known = api.valid_versions();
    Some(((*min).max(known.min), (*max).min(known.max)))
}

/// A protocol string.
pub fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, ConnectionError> {
    T::decode(body, version).map_err(|e| ConnectionError::Malformed(e.to_string()))
}

/// What a request holds until its answer is ready: its share of the read
/// budget, and its place in the in-flight requests metric.
struct Held {
    _budget: OwnedSemaphorePermit,
    _request: InFlight,
    /// The connection's session, in reach of the handler's checks.
    session: Arc<Session>,
}

/// Runs `answer` beside later requests; its response is framed for the request.
fn spawn<M, F>(frame: (ApiKey, i16, i32), permit: Held, answer: F) -> Pending
where
    M: Encodable + Send + 'static,
    F: Future<Output = M> + Send + 'static,
{
    let (api, version, correlation_id) = frame;
    tokio::spawn(async move {
        let m = sasl::scope(permit.session.clone(), answer).await;
        drop(permit);
        match frame_response(api, version, correlation_id, &m) {
            Ok(b) => Some(vec![b]),
            Err(e) => {
                tracing::warn!(error = %e, "could not encode a Kafka response");
                None
            }
        }
    })
}

/// Decodes a request and starts answering it.
pub async fn start(
    ctx: &Arc<Context>,
    conn: &Conn,
    bytes: Bytes,
    permit: OwnedSemaphorePermit,
    host: &str,
) -> Result<Pending, ConnectionError> {
    let frame = parse(bytes)?;
    let (api, version, cid) = (frame.api, frame.header.request_api_version, frame.header.correlation_id);
    let permit = Held {
        _budget: permit,
        _request: ctx.service.metrics().request("kafka", &format!("{api:?}")),
        session: conn.session.clone(),
    };
    let mut body = frame.body;
    let client_id = frame.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    let in_range = supported(api).is_some_and(|(min, max)| version >= min && version <= max);
    if !in_range {
        if api == ApiKey::ApiVersions {
            // Answered in version 0's layout, which every client reads.
            let r = api_versions().with_error_code(K::UnsupportedVersion.code());
            return Ok(spawn((api, 0, cid), permit, async move { r }));
        }
        if supported(api).is_none() {
            if let Some(answer) = super::unoffered::answer(api, version, cid, &mut body) {
                tracing::debug!(?api, version, "answering an API not offered with UNSUPPORTED_VERSION");
                drop(permit);
                let answer = answer.map_err(ConnectionError::Malformed)?;
                return Ok(tokio::spawn(async move { Some(vec![answer]) }));
            }
        }
        return Err(ConnectionError::Malformed(format!("{api:?} version {version} is not offered")));
    }
    if ctx.service.auth().enabled()
        && !conn.session.is_authenticated()
        && !matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    {
        return Err(ConnectionError::Unauthenticated(api));
    }
    let at = (api, version, cid);
    let ctx = ctx.clone();
    let pending = match api {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { api_versions() })
        }
        ApiKey::SaslHandshake => {
            let req: SaslHandshakeRequest = decode(&mut body, version)?;
            let r = conn.handshake(&ctx, &req);
            spawn(at, permit, async move { r })
        }
        ApiKey::SaslAuthenticate => {
            let req: SaslAuthenticateRequest = decode(&mut body, version)?;
            let r = conn.authenticate(&ctx, &req);
            spawn(at, permit, async move { r })
        }
        ApiKey::Metadata => {
            let req: MetadataRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { metadata(&ctx, req, version).await })
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode(&mut body, version)?;
            let acks = req.acks;
            // Offsets are taken here, in the order requests arrive.
            let staged = sasl::scope(conn.session.clone(), stage_produce(&ctx, req)).await;
            if acks == 0 {
                drop(permit);
                return Ok(tokio::spawn(async { None }));
            }
            spawn(at, permit, async move { finish_produce(staged, version).await })
        }
        ApiKey::Fetch => {
            let req: FetchRequest = decode(&mut body, version)?;
            tokio::spawn(async move {
                let r = sasl::scope(permit.session.clone(), fetch(&ctx, req, version)).await;
                drop(permit);
                Some(super::fetch_frame::fetch_frame(&r, version, cid))
            })
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { list_offsets(&ctx, req).await })
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { create_topics(&ctx, req, version).await })
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { delete_topics(&ctx, req, version).await })
        }
        ApiKey::InitProducerId => {
            let req: InitProducerIdRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { init_producer_id(&ctx, req).await })
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { describe_configs(&ctx, req).await })
        }
        ApiKey::FindCoordinator => {
            let req: FindCoordinatorRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::find_coordinator(&ctx, req, version).await })
        }
        ApiKey::OffsetCommit => {
            let req: OffsetCommitRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::offset_commit(&ctx, req, version).await })
        }
        ApiKey::OffsetFetch => {
            let req: OffsetFetchRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::offset_fetch(&ctx, req, version).await })
        }
        ApiKey::ListGroups => {
            let req: ListGroupsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::list_groups(&ctx, req, version).await })
        }
        ApiKey::DescribeGroups => {
            let req: DescribeGroupsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::describe_groups(&ctx, req, version).await })
        }
        ApiKey::JoinGroup => {
            let req: JoinGroupRequest = decode(&mut body, version)?;
            let (host, client) = (host.to_string(), client_id);
            spawn(at, permit, async move { super::groups::join_group(&ctx, req, version, &host, &client).await })
        }
        ApiKey::SyncGroup => {
            let req: SyncGroupRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::sync_group(&ctx, req, version).await })
        }
        ApiKey::Heartbeat => {
            let req: HeartbeatRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::heartbeat(&ctx, req).await })
        }
        ApiKey::LeaveGroup => {
            let req: LeaveGroupRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { super::groups::leave_group(&ctx, req, version).await })
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let req: ConsumerGroupHeartbeatRequest = decode(&mut body, version)?;
            let host = host.to_string();
            spawn(at, permit, async move { super::groups::consumer_group_heartbeat(&ctx, req, &host).await })
        }
        ApiKey::DescribeCluster => {
            let _: DescribeClusterRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { describe_cluster(&ctx).await })
        }
        ApiKey::DeleteGroups => {
            let req: DeleteGroupsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { delete_groups(&ctx, req).await })
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: IncrementalAlterConfigsRequest = decode(&mut body, version)?;
            spawn(at, permit, async move { alter_configs(&ctx, req).await })
        }
        other => return Err(ConnectionError::Malformed(format!("{other:?} is not offered"))),
    };
    Ok(pending)
}

fn api_versions() -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .filter_map(|(k, _, _)| {
            let (min, max) = supported(*k)?;
            Some(
                api_versions_response::ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// A live agent as a Kafka broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// Its QUIC address, which the metadata store names owners by.
    pub address: String,
}

/// A stable broker id for an agent id: its CRC-32C, as a positive number.
pub fn node_id(agent_id: &str) -> i32 {
    (crc32c::crc32c(agent_id.as_bytes()) & 0x7fff_ffff) as i32
}

/// `host:port` split; None when it is not that.
pub fn host_port(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

/// The live agents that have a Kafka listener.
pub fn brokers(agents: &[AgentInfo]) -> Vec<Broker> {
    let mut out: Vec<Broker> = agents
        .iter()
        .filter(|a| a.live)
        .filter_map(|a| {
            let (host, port) = host_port(&a.kafka_address)?;
            Some(Broker { node_id: node_id(&a.id), host, port, address: a.address.clone() })
        })
        .collect();
    out.sort_by_key(|b| b.node_id);
    out
}

pub async fn live_brokers(ctx: &Context) -> Result<Vec<Broker>, ServiceError> {
    Ok(brokers(&ctx.service.list_agents().await?))
}

/// This agent as a broker (it answers even before its registration shows).
pub fn me(ctx: &Context) -> Broker {
    let (host, port) = host_port(&ctx.advertised).unwrap_or_default();
    let cluster = ctx.service.cluster();
    Broker { node_id: node_id(cluster.agent_id()), host, port, address: cluster.address().to_string() }
}

/// A deterministic Kafka topic id for a silt topic id.
pub fn topic_uuid(id: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x5117_0000_0000_0001, id)
}

async fn metadata(ctx: &Context, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut brokers = live_brokers(ctx).await.unwrap_or_default();
    let me = me(ctx);
    if !brokers.iter().any(|b| b.node_id == me.node_id) {
        brokers.push(me.clone());
    }
    let by_address: HashMap<&str, i32> = brokers.iter().map(|b| (b.address.as_str(), b.node_id)).collect();
    let names: Vec<Option<String>> = match &req.topics {
        None => ctx
            .service
            .list_topics()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|t| allows(ctx, ResourceType::Topic, t, Operation::Describe))
            .map(Some)
            .collect(),
        Some(ts) => {
            // Topics asked for by id only (new-protocol consumers do, for
            // the ids their assignments name).
            let by_id: HashMap<uuid::Uuid, String> = match ts.iter().any(|t| t.name.is_none()) {
                true => ctx
                    .service
                    .topic_names()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(id, n)| (topic_uuid(id), n))
                    .collect(),
                false => HashMap::new(),
            };
            ts.iter()
                .map(|t| t.name.as_ref().map(|n| n.to_string()).or_else(|| by_id.get(&t.topic_id).cloned()))
                .collect()
        }
    };
    let asked_by_name: Vec<bool> = match &req.topics {
        None => vec![true; names.len()],
        Some(ts) => ts.iter().map(|t| t.name.is_some()).collect(),
    };
    let mut topics = Vec::new();
    for (name, by_name) in names.into_iter().zip(asked_by_name) {
        let Some(name) = name else {
            topics.push(metadata_response::MetadataResponseTopic::default().with_error_code(K::UnknownTopicId.code()));
            continue;
        };
        if let Err(e) = check(ctx, ResourceType::Topic, &name, Operation::Describe) {
            // Refused: named only as the client named it.
            let mut t = metadata_response::MetadataResponseTopic::default().with_error_code(code_of(&e));
            if by_name {
                t.name = Some(TopicName(s(name)));
            }
            topics.push(t);
            continue;
        }
        let mut t = metadata_response::MetadataResponseTopic::default().with_name(Some(TopicName(s(name.clone()))));
        match ctx.service.describe_topic(&name).await {
            Ok(info) => {
                if version >= 10 {
                    t.topic_id = topic_uuid(info.id);
                }
                t.partitions = info
                    .partitions
                    .iter()
                    .map(|p| {
                        let leader = by_address.get(p.owner.as_str()).copied();
                        let mut out = metadata_response::MetadataResponsePartition::default()
                            .with_partition_index(p.partition as i32)
                            .with_leader_id(BrokerId(leader.unwrap_or(-1)));
                        if version >= 7 {
                            out.leader_epoch = p.epoch.min(i32::MAX as u64) as i32;
                        }
                        match leader {
                            Some(l) => {
                                out.replica_nodes = vec![BrokerId(l)];
                                out.isr_nodes = vec![BrokerId(l)];
                            }
                            None => out.error_code = K::LeaderNotAvailable.code(),
                        }
                        out
                    })
                    .collect();
            }
            Err(e) => t.error_code = code_of(&e),
        }
        topics.push(t);
    }
    let mut r = MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(s(b.host))
                        .with_port(b.port)
                })
                .collect(),
        )
        .with_topics(topics);
    if version >= 1 {
        r.controller_id = BrokerId(me.node_id);
    }
    if version >= 2 {
        r.cluster_id = Some(s(CLUSTER_ID));
    }
    r
}

/// What Kafka's acks ask for, in silt's terms: acks=1 is the leader's own
/// log, which is the agent's write-ahead log where it has one; acks=all is
/// the object store.
pub fn acks_of(acks: i16, has_wal: bool) -> Option<Acks> {
    match acks {
        0 => Some(Acks::None),
        1 if has_wal => Some(Acks::Local),
        1 | -1 => Some(Acks::Durable),
        _ => None,
    }
}

/// One partition of a produce request, with its offsets taken (or not).
struct StagedPartition {
    topic: String,
    partition: i32,
    tickets: Vec<Ticket>,
    /// Why the rest (or all) was refused.
    error: Option<(i16, String)>,
}

async fn stage_produce(ctx: &Context, req: ProduceRequest) -> Vec<StagedPartition> {
    let acks = acks_of(req.acks, ctx.service.has_wal());
    let transactional = req.transactional_id.is_some();
    let mut out = Vec::new();
    for topic in req.topic_data {
        let name = topic.name.to_string();
        for p in topic.partition_data {
            let mut staged =
                StagedPartition { topic: name.clone(), partition: p.index, tickets: Vec::new(), error: None };
            staged.error = match (acks, transactional) {
                (None, _) => Some((K::InvalidRequiredAcks.code(), format!("acks={} is not 0, 1 or -1", req.acks))),
                (_, true) => {
                    Some((K::TransactionalIdAuthorizationFailed.code(), "transactions are not supported".into()))
                }
                (Some(acks), false) => match check(ctx, ResourceType::Topic, &name, Operation::Write) {
                    Ok(()) => append(ctx, &name, p.index, p.records, acks, &mut staged.tickets).await.err(),
                    Err(e) => Some((code_of(&e), describe(&e))),
                },
            };
            out.push(staged);
        }
    }
    out
}

/// Appends each batch of a partition's records; stops at the first refused.
async fn append(
    ctx: &Context,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: Acks,
    tickets: &mut Vec<Ticket>,
) -> Result<(), (i16, String)> {
    let corrupt = |e: records::RecordError| {
        let code = match e {
            records::RecordError::Crc { .. } | records::RecordError::Truncated(_) => K::CorruptMessage,
            records::RecordError::Codec(_) => K::UnsupportedCompressionType,
            records::RecordError::Magic(_) => K::UnsupportedForMessageFormat,
            _ => K::InvalidRecord,
        };
        (code.code(), e.to_string())
    };
    let partition =
        u32::try_from(partition).map_err(|_| (K::UnknownTopicOrPartition.code(), "negative partition".into()))?;
    let records = records.unwrap_or_default();
    let batches = records::split(&records).map_err(corrupt)?;
    if batches.is_empty() {
        return Err((K::InvalidRecord.code(), "no record batch".into()));
    }
    for kafka in batches {
        let batch = records::to_silt(&kafka).map_err(corrupt)?;
        let ticket =
            ctx.service.produce_batch(topic, partition, acks, batch).await.map_err(|e| (code_of(&e), describe(&e)))?;
        tickets.push(ticket);
    }
    Ok(())
}

async fn finish_produce(staged: Vec<StagedPartition>, version: i16) -> ProduceResponse {
    let mut topics: Vec<produce_response::TopicProduceResponse> = Vec::new();
    for p in staged {
        let mut base = -1;
        let mut error = p.error;
        for (i, ticket) in p.tickets.into_iter().enumerate() {
            match ticket.acked().await.0 {
                Ok((first, _)) if i == 0 => base = first,
                Ok(_) => {}
                Err(e) => {
                    error = Some((code_of(&e), describe(&e)));
                    break;
                }
            }
        }
        let mut r =
            produce_response::PartitionProduceResponse::default().with_index(p.partition).with_base_offset(base);
        if let Some((code, message)) = error {
            r.error_code = code;
            if version >= 8 {
                r.error_message = Some(s(message));
            }
        }
        match topics.last_mut() {
            Some(t) if *t.name == *p.topic => t.partition_responses.push(r),
            _ => topics.push(
                produce_response::TopicProduceResponse::default()
                    .with_name(TopicName(s(p.topic)))
                    .with_partition_responses(vec![r]),
            ),
        }
    }
    ProduceResponse::default().with_responses(topics)
}

/// One partition of a fetch, and what it read.
struct FetchSlot {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    result: Option<Result<crate::service::Fetched, ServiceError>>,
}

impl FetchSlot {
    fn bytes(&self) -> usize {
        match &self.result {
            Some(Ok(f)) => f.batches.iter().map(Bytes::len).sum(),
            _ => 0,
        }
    }
}

async fn fetch(ctx: &Context, req: FetchRequest, version: i16) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let mut slots: Vec<FetchSlot> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| FetchSlot {
                topic: t.topic.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                result: None,
            })
        })
        .collect();
    read_slots(ctx, &mut slots, max_bytes).await;
    let total: usize = slots.iter().map(FetchSlot::bytes).sum();
    let failed = slots.iter().any(|s| matches!(s.result, Some(Err(_))));
    if total < min_bytes.max(1) && !failed && !wait.is_zero() && !slots.is_empty() {
        // Wait for any partition to get records, then read them all again.
        let mut waits: FuturesUnordered<_> = slots
            .iter()
            .filter_map(|s| {
                let p = u32::try_from(s.partition).ok()?;
                Some(ctx.service.has_records(&s.topic, p, s.offset, wait))
            })
            .collect();
        while let Some(r) = waits.next().await {
            if r.is_ok_and(|has| has) {
                drop(waits);
                for s in &mut slots {
                    s.result = None;
                }
                read_slots(ctx, &mut slots, max_bytes).await;
                break;
            }
        }
    }
    let mut topics: Vec<fetch_response::FetchableTopicResponse> = Vec::new();
    let mut converting = Vec::new();
    for slot in slots {
        let mut p = fetch_response::PartitionData::default().with_partition_index(slot.partition);
        match slot.result {
            Some(Ok(f)) => {
                p.high_watermark = f.high_watermark;
                if version >= 4 {
                    p.last_stable_offset = f.high_watermark;
                    p.aborted_transactions = Some(Vec::new());
                }
                if version >= 5 {
                    p.log_start_offset = f.log_start;
                }
                // Converted below, each partition on its own task.
                p.records = None;
                // Fetch 10 and up reads zstd.
                converting.push(tokio::spawn(async move { convert(&f.batches, version >= 10) }));
            }
            Some(Err(e)) => {
                p.error_code = code_of(&e);
                p.high_watermark = -1;
                if let ServiceError::OffsetOutOfRange { high_watermark, log_start, .. } = e {
                    p.high_watermark = high_watermark;
                    if version >= 5 {
                        p.log_start_offset = log_start;
                    }
                }
                p.records = Some(Bytes::new());
            }
            None => p.records = Some(Bytes::new()),
        }
        match topics.last_mut() {
            Some(t) if *t.topic == *slot.topic => t.partitions.push(p),
            _ => topics.push(
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(TopicName(s(slot.topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    // The converted records, in partition order, into the slots left for them.
    let mut converted = futures::future::join_all(converting).await.into_iter();
    for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).filter(|p| p.records.is_none()) {
        match converted.next() {
            Some(Ok((records, error))) => {
                if let Some(e) = error.filter(|_| records.is_empty()) {
                    p.error_code = code_of(&e);
                }
                p.records = Some(records);
            }
            _ => {
                p.error_code = K::UnknownServerError.code();
                p.records = Some(Bytes::new());
            }
        }
    }
    FetchResponse::default().with_responses(topics)
}

/// Stored silt batches as Kafka batches; the first error stops nothing
/// (what converted is answered) and is returned beside them.
fn convert(pieces: &[Bytes], zstd_ok: bool) -> (Bytes, Option<ServiceError>) {
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum::<usize>() + 64);
    let mut broken = None;
    for piece in pieces {
        // The read path checked these batches' CRCs as it read them.
        for batch in silt_wire::batch::split_validated(piece) {
            if let Err(e) =
                batch.map_err(ServiceError::from).and_then(|b| Ok(records::to_kafka(&b, zstd_ok, &mut out)?))
            {
                broken = Some(e);
            }
        }
    }
    (out.freeze(), broken)
}

/// Reads every slot without waiting, all at once, then keeps what fits the
/// response's byte budget in request order (the first slot with records
/// always keeps them, as Kafka's brokers do; later ones over the budget
/// answer empty and are fetched again next time).
async fn read_slots(ctx: &Context, slots: &mut [FetchSlot], max_bytes: usize) {
    let reads = slots.iter().map(|slot| async move {
        check(ctx, ResourceType::Topic, &slot.topic, Operation::Read)?;
        match u32::try_from(slot.partition) {
            Ok(p) => ctx.service.fetch(&slot.topic, p, slot.offset, slot.max_bytes.max(1), Duration::ZERO).await,
            Err(_) => Err(ServiceError::UnknownPartition { topic: slot.topic.clone(), partition: 0, count: 0 }),
        }
    });
    let results = futures::future::join_all(reads).await;
    let mut used = 0usize;
    for (slot, mut result) in slots.iter_mut().zip(results) {
        if let Ok(f) = &mut result {
            let len: usize = f.batches.iter().map(Bytes::len).sum();
            if used > 0 && used + len > max_bytes {
                f.batches.clear();
            }
            used += f.batches.iter().map(Bytes::len).sum::<usize>();
        }
        slot.result = Some(result);
    }
}

async fn list_offsets(ctx: &Context, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.to_string();
        let refused = check(ctx, ResourceType::Topic, &name, Operation::Describe).err();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r = list_offsets_response::ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let result = match (&refused, u32::try_from(p.partition_index)) {
                (Some(e), _) => Err(e.clone()),
                (None, Err(_)) => Err(ServiceError::UnknownPartition { topic: name.clone(), partition: 0, count: 0 }),
                (None, Ok(index)) => offset_at(ctx, &name, index, p.timestamp).await,
            };
            match result {
                Ok(Some((offset, ts))) => {
                    r.offset = offset;
                    r.timestamp = ts;
                }
                Ok(None) => {}
                Err(e) => r.error_code = code_of(&e),
            }
            partitions.push(r);
        }
        topics.push(
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// ListOffsets' timestamps: -2 the first offset, -1 the end, -3 the
/// newest record's offset (by max timestamp, here the last record), else
/// the first record at least that new.
async fn offset_at(ctx: &Context, topic: &str, partition: u32, ts: i64) -> Result<Option<(i64, i64)>, ServiceError> {
    match ts {
        -2 => Ok(Some((ctx.service.offsets(topic, partition).await?.0, -1))),
        -1 => Ok(Some((ctx.service.offsets(topic, partition).await?.1, -1))),
        t if t < 0 => Ok(None),
        t => ctx.service.offset_for_time(topic, partition, t).await,
    }
}

async fn create_topics(ctx: &Context, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.to_string();
        let partitions = match t.num_partitions {
            -1 => DEFAULT_PARTITIONS,
            n => u32::try_from(n).unwrap_or(0),
        };
        let configs: Vec<(String, String)> =
            t.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
        let allowed = check(ctx, ResourceType::Cluster, CLUSTER, Operation::Create)
            .or_else(|_| check(ctx, ResourceType::Topic, &name, Operation::Create));
        let outcome = if let Err(e) = allowed {
            Err(e)
        } else if req.validate_only {
            ctx.service.check_topic(&name, partitions, &configs)
        } else {
            ctx.service.create_topic(&name, partitions, &configs).await
        };
        let mut r = create_topics_response::CreatableTopicResult::default().with_name(TopicName(s(name.clone())));
        if version >= 5 {
            r.num_partitions = partitions as i32;
            r.replication_factor = 1;
        }
        match outcome {
            Ok(()) => {
                if version >= 7 && !req.validate_only {
                    if let Ok(info) = ctx.service.describe_topic(&name).await {
                        r.topic_id = topic_uuid(info.id);
                    }
                }
            }
            Err(e) => {
                r.error_code = code_of(&e);
                if version >= 1 {
                    r.error_message = Some(s(describe(&e)));
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn delete_topics(ctx: &Context, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let names: Vec<Option<String>> = if version >= 6 {
        req.topics.iter().map(|t| t.name.as_ref().map(|n| n.to_string())).collect()
    } else {
        req.topic_names.iter().map(|n| Some(n.to_string())).collect()
    };
    let mut responses = Vec::new();
    for name in names {
        let mut r = delete_topics_response::DeletableTopicResult::default();
        match name {
            None => r.error_code = K::UnknownTopicId.code(),
            Some(name) => {
                r.name = Some(TopicName(s(name.clone())));
                let outcome = match check(ctx, ResourceType::Topic, &name, Operation::Delete) {
                    Ok(()) => ctx.service.delete_topic(&name).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    r.error_code = code_of(&e);
                    if version >= 5 {
                        r.error_message = Some(s(describe(&e)));
                    }
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn init_producer_id(ctx: &Context, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return r.with_error_code(K::TransactionalIdAuthorizationFailed.code());
    }
    if let Err(e) = super::sasl::check_producer(ctx) {
        return r.with_error_code(code_of(&e));
    }
    match ctx.service.init_producer().await {
        Ok(id) => r.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => r.with_error_code(code_of(&e)),
    }
}

/// Config resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

async fn describe_configs(ctx: &Context, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for res in req.resources {
        let mut r = describe_configs_response::DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        match res.resource_type {
            TOPIC => match async {
                check(ctx, ResourceType::Topic, &res.resource_name, Operation::Describe)?;
                ctx.service.describe_topic(&res.resource_name).await
            }
            .await
            {
                Ok(info) => {
                    let effective = ctx.service.topic_config(&info.configs).entries();
                    let wanted =
                        |k: &str| res.configuration_keys.as_ref().is_none_or(|ks| ks.iter().any(|x| **x == *k));
                    r.configs = effective
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            let overridden = info.configs.iter().any(|(o, _)| *o == k);
                            describe_configs_response::DescribeConfigsResourceResult::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                                // 1: set on the topic; 5: the agents' default.
                                .with_config_source(if overridden { 1 } else { 5 })
                        })
                        .collect();
                }
                Err(e) => {
                    r.error_code = code_of(&e);
                    r.error_message = Some(s(describe(&e)));
                }
            },
            BROKER => {
                if let Err(e) = check(ctx, ResourceType::Cluster, CLUSTER, Operation::Describe) {
                    r.error_code = code_of(&e);
                    r.error_message = Some(s(describe(&e)));
                }
            }
            other => {
                r.error_code = K::InvalidRequest.code();
                r.error_message = Some(s(format!("config resource type {other} is not supported")));
            }
        }
        results.push(r);
    }
    DescribeConfigsResponse::default().with_results(results)
}

async fn describe_cluster(ctx: &Context) -> DescribeClusterResponse {
    if let Err(e) = check(ctx, ResourceType::Cluster, CLUSTER, Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(code_of(&e))
            .with_error_message(Some(s(describe(&e))));
    }
    let me = me(ctx);
    let mut brokers = live_brokers(ctx).await.unwrap_or_default();
    if !brokers.iter().any(|b| b.node_id == me.node_id) {
        brokers.push(me.clone());
    }
    DescribeClusterResponse::default()
        .with_cluster_id(s(CLUSTER_ID))
        .with_controller_id(BrokerId(me.node_id))
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    describe_cluster_response::DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(s(b.host))
                        .with_port(b.port)
                })
                .collect(),
        )
}

async fn delete_groups(ctx: &Context, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in req.groups_names {
        let outcome = match check(ctx, ResourceType::Group, &g, Operation::Delete) {
            Ok(()) => ctx.service.delete_group(&g).await,
            Err(e) => Err(e),
        };
        let code = match outcome {
            Ok(()) => 0,
            Err(e) => code_of(&e),
        };
        results.push(delete_groups_response::DeletableGroupResult::default().with_group_id(g).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// IncrementalAlterConfigs on topics: set (0) and delete (1) of silt's topic
/// configs; appending to and subtracting from lists do not apply to them.
async fn alter_configs(ctx: &Context, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let mut fail = |code: i16, message: String| {
            r.error_code = code;
            r.error_message = Some(s(message));
        };
        if res.resource_type != TOPIC {
            fail(K::InvalidRequest.code(), "only topic configs can be altered".into());
            responses.push(r);
            continue;
        }
        let mut set = Vec::new();
        let mut delete = Vec::new();
        let mut bad = None;
        for c in &res.configs {
            match (c.config_operation, &c.value) {
                (0, Some(v)) => set.push((c.name.to_string(), v.to_string())),
                (1, _) => delete.push(c.name.to_string()),
                (op, _) => bad = Some(format!("{}: operation {op} is not supported on silt's topic configs", c.name)),
            }
        }
        let outcome = match (check(ctx, ResourceType::Topic, &res.resource_name, Operation::Alter), bad) {
            (Err(e), _) => Err((code_of(&e), describe(&e))),
            (Ok(()), Some(message)) => Err((K::InvalidRequest.code(), message)),
            (Ok(()), None) if req.validate_only => match ctx.service.describe_topic(&res.resource_name).await {
                Ok(_) => ctx.service.check_topic(&res.resource_name, 1, &set).map_err(|e| (code_of(&e), describe(&e))),
                Err(e) => Err((code_of(&e), describe(&e))),
            },
            (Ok(()), None) => ctx
                .service
                .alter_topic(&res.resource_name, &set, &delete)
                .await
                .map_err(|e| (code_of(&e), describe(&e))),
        };
        if let Err((code, message)) = outcome {
            fail(code, message);
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Writes a big-endian version then `m` in that version: the layout of a
/// consumer protocol's subscription and assignment bytes.
pub fn versioned<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(version);
    if m.encode(&mut out, version).is_err() {
        return Bytes::new();
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_api_is_known_to_the_protocol_crate_in_its_whole_range() {
        for (k, min, max) in APIS {
            let (lo, hi) = supported(*k).unwrap();
            assert!(lo <= hi, "{k:?}");
            assert!((lo, hi) == (*min, *max), "{k:?}: offered {min}..={max}, the crate knows {lo}..={hi}");
        }
        assert_eq!(supported(ApiKey::DeleteRecords), None);
    }

    #[test]
    fn acks_map_to_silts_durability() {
        let table = [
            (0, true, Some(Acks::None)),
            (1, true, Some(Acks::Local)),
            (1, false, Some(Acks::Durable)),
            (-1, true, Some(Acks::Durable)),
            (-1, false, Some(Acks::Durable)),
            (2, true, None),
        ];
        for (acks, wal, want) in table {
            assert_eq!(acks_of(acks, wal), want, "acks={acks} wal={wal}");
        }
    }

    #[test]
    fn brokers_are_the_live_agents_with_a_kafka_address() {
        let agent = |id: &str, kafka: &str, live| AgentInfo {
            id: id.into(),
            address: format!("{id}:7447"),
            kafka_address: kafka.into(),
            live,
            partitions: 0,
            heartbeat_ms: 0,
        };
        let got = brokers(&[
            agent("a", "10.0.0.1:9092", true),
            agent("b", "", true),
            agent("c", "10.0.0.3:9092", false),
            agent("d", "[::1]:9093", true),
        ]);
        let mut want = vec![
            Broker { node_id: node_id("a"), host: "10.0.0.1".into(), port: 9092, address: "a:7447".into() },
            Broker { node_id: node_id("d"), host: "::1".into(), port: 9093, address: "d:7447".into() },
        ];
        want.sort_by_key(|b| b.node_id);
        assert_eq!(got, want);
        assert!(node_id("a") >= 0 && node_id("a") != node_id("b"));
    }
}
