//! Consumer groups over Kafka's protocol, on silt's own coordinator.
//!
//! silt assigns partitions itself (KIP-848's way), so one group can hold
//! silt consumers, Kafka consumers of the new protocol
//! (ConsumerGroupHeartbeat) and of the classic one together. A classic
//! member (JoinGroup, SyncGroup, Heartbeat) is a coordinator member whose
//! answers reach it the classic way:
//! - JoinGroup is a heartbeat with its subscription and what it still owns;
//!   it answers at once with the member's epoch as the generation and no
//!   leader, so no client runs an assignor;
//! - SyncGroup hands out what that heartbeat assigned, in the consumer
//!   protocol's assignment layout (whatever assignor the client named);
//! - Heartbeat is a heartbeat that owns what was handed out; when the
//!   coordinator's answer differs (a partition to give up or to take) the
//!   member is told REBALANCE_IN_PROGRESS and joins again.
//!
//! What was handed out lives here, on the coordinating agent, per member; a
//! member this agent does not know (the coordinator moved) joins afresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::api::{live_brokers, me, s, topic_uuid, versioned, Broker};
use silt_wire::auth::{Operation, ResourceType};

use super::codes::code_of;
use super::sasl::{allows, check};
use super::Context;
use crate::core::groups::{same, Answer, Heartbeat, TopicPartition, JOIN, LEAVE};
use crate::error::{describe, GroupError, ServiceError};

/// A classic member, as this agent last answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    /// Its epoch at the coordinator (what the next heartbeat sends).
    pub epoch: i64,
    /// The generation its last JoinGroup was told.
    pub generation: i32,
    pub protocol: String,
    /// The client's address, as `group describe` shows it.
    pub host: String,
    pub session_timeout_ms: i64,
    /// What its JoinGroup's heartbeat assigned, for SyncGroup.
    pub pending: Vec<TopicPartition>,
    /// What SyncGroup handed out: what it consumes.
    pub given: Vec<TopicPartition>,
    /// When it was last heard from (ms, the agent's clock).
    pub seen_ms: i64,
}

impl ClassicMember {
    /// Whether the coordinator has surely ended its session: nothing heard
    /// for twice its session timeout.
    pub fn is_gone(&self, now_ms: i64) -> bool {
        now_ms - self.seen_ms > 2 * self.session_timeout_ms
    }
}

/// Classic members by (group, member id).
#[derive(Default)]
pub struct Classic {
    members: Mutex<HashMap<(String, String), ClassicMember>>,
}

impl Classic {
    fn get(&self, group: &str, member: &str) -> Option<ClassicMember> {
        self.members.lock().expect("classic members").get(&(group.to_string(), member.to_string())).cloned()
    }

    /// Records a member as just heard from, and forgets the members whose
    /// sessions surely ended (crashed clients never leave).
    fn put(&self, group: &str, member: &str, mut m: ClassicMember, now_ms: i64) {
        m.seen_ms = now_ms;
        let mut members = self.members.lock().expect("classic members");
        members.retain(|_, other| !other.is_gone(now_ms));
        members.insert((group.to_string(), member.to_string()), m);
    }

    fn remove(&self, group: &str, member: &str) {
        self.members.lock().expect("classic members").remove(&(group.to_string(), member.to_string()));
    }
}

/// What a classic Heartbeat tells the member, given the coordinator's answer
/// to a heartbeat owning what it was handed: carry on (0), or join again.
pub fn classic_outcome(given: &[TopicPartition], answer: &Answer) -> i16 {
    if same(given, &answer.assigned) {
        0
    } else {
        K::RebalanceInProgress.code()
    }
}

/// Partitions by topic, in the consumer protocol's assignment layout.
fn assignment_bytes(assigned: &[TopicPartition]) -> bytes::Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assigned {
        by_topic.entry(t.as_str()).or_default().push(*p as i32);
    }
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                consumer_protocol_assignment::TopicPartition::default().with_topic(TopicName(s(t))).with_partitions(ps)
            })
            .collect(),
    );
    versioned(&a, 0)
}

/// A member's subscription: its topics and what it owns.
fn subscription(metadata: &bytes::Bytes) -> Result<(Vec<String>, Vec<TopicPartition>), String> {
    let mut b = metadata.clone();
    if b.len() < 2 {
        return Err("a subscription shorter than its version".into());
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    if version < 0 {
        return Err(format!("subscription version {version}"));
    }
    // Newer versions only add fields at the end: read what version 3 knows.
    let sub = ConsumerProtocolSubscription::decode(&mut b, version.min(3)).map_err(|e| e.to_string())?;
    let owned = sub
        .owned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().filter(|p| **p >= 0).map(move |p| (t.topic.to_string(), *p as u32)))
        .collect();
    Ok((sub.topics.iter().map(|t| t.to_string()).collect(), owned))
}

async fn coordinator_broker(ctx: &Context, group: &str) -> Result<Broker, ServiceError> {
    let address = ctx.service.find_coordinator(group).await?;
    let me = me(ctx);
    if address == me.address {
        return Ok(me);
    }
    live_brokers(ctx)
        .await?
        .into_iter()
        .find(|b| b.address == address)
        .ok_or(ServiceError::NotCoordinator { group: group.into(), coordinator: address })
}

pub async fn find_coordinator(ctx: &Context, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut coordinators = Vec::new();
    for key in keys {
        let mut c = find_coordinator_response::Coordinator::default().with_key(key.clone()).with_node_id(BrokerId(-1));
        if req.key_type != 0 {
            c.error_code = K::CoordinatorNotAvailable.code();
            c.error_message = Some(s("transactions are not supported"));
        } else if let Err(e) = check(ctx, ResourceType::Group, &key, Operation::Describe) {
            c.error_code = code_of(&e);
            c.error_message = Some(s(describe(&e)));
        } else {
            match coordinator_broker(ctx, &key).await {
                Ok(b) => {
                    c.node_id = BrokerId(b.node_id);
                    c.host = s(b.host);
                    c.port = b.port;
                }
                Err(e) => {
                    // Not known yet (or no Kafka listener there): the client asks again.
                    c.error_code = match e {
                        ServiceError::InvalidGroupName { .. } => K::InvalidGroupId.code(),
                        _ => K::CoordinatorNotAvailable.code(),
                    };
                    c.error_message = Some(s(describe(&e)));
                }
            }
        }
        coordinators.push(c);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    let mut r = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        r.error_message = c.error_message;
    }
    r
}

pub async fn offset_commit(ctx: &Context, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let member = req.member_id.to_string();
    let offsets: Vec<(String, u32, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index.max(0) as u32, p.committed_offset))
        })
        .collect();
    let refused = check(ctx, ResourceType::Group, &group, Operation::Read)
        .err()
        .or_else(|| req.topics.iter().find_map(|t| check(ctx, ResourceType::Topic, &t.name, Operation::Read).err()));
    let outcome = if let Some(e) = refused {
        Err(e)
    } else if member.is_empty() && req.generation_id_or_member_epoch < 0 {
        ctx.service.commit_offsets_standalone(&group, offsets).await
    } else {
        // A classic member commits under the generation it was told; the
        // coordinator knows it by its current epoch.
        let epoch = match ctx.groups.get(&group, &member) {
            Some(m) if m.generation == req.generation_id_or_member_epoch => m.epoch,
            _ => i64::from(req.generation_id_or_member_epoch),
        };
        ctx.service.commit_offsets(&group, &member, epoch, &offsets).await
    };
    let code = match &outcome {
        Ok(()) => 0,
        Err(ServiceError::Member { reason: GroupError::FencedMemberEpoch { .. }, .. }) if version >= 9 => {
            K::StaleMemberEpoch.code()
        }
        Err(ServiceError::GroupNotEmpty(_)) => K::UnknownMemberId.code(),
        Err(e) => code_of(e),
    };
    if let Err(e) = &outcome {
        tracing::debug!(group, member, error = %describe(e), "offset commit refused");
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            offset_commit_response::OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets for the partitions asked (every committed
/// one when `topics` is None): (topic, [(partition, offset)]), -1 where none.
async fn committed(
    ctx: &Context,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<(i32, i64)>)>, ServiceError> {
    check(ctx, ResourceType::Group, group, Operation::Describe)?;
    let names: Vec<String> = topics.iter().flatten().map(|(t, _)| t.clone()).collect();
    let visible = |t: &str| allows(ctx, ResourceType::Topic, t, Operation::Describe);
    let topics = topics.map(|ts| ts.into_iter().filter(|(t, _)| visible(t)).collect::<Vec<_>>());
    let stored = match ctx.service.fetch_offsets(group, &names).await {
        Ok(o) => o,
        Err(ServiceError::UnknownGroup(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let stored: Vec<(String, u32, i64)> = stored.into_iter().filter(|(t, _, _)| visible(t)).collect();
    let found: HashMap<(String, i32), i64> = stored.iter().map(|(t, p, o)| ((t.clone(), *p as i32), *o)).collect();
    Ok(match topics {
        Some(wanted) => wanted
            .into_iter()
            .map(|(t, ps)| {
                let offsets = ps.iter().map(|p| (*p, found.get(&(t.clone(), *p)).copied().unwrap_or(-1))).collect();
                (t, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
            for (t, p, o) in stored {
                by_topic.entry(t).or_default().push((p as i32, o));
            }
            by_topic.into_iter().collect()
        }
    })
}

pub async fn offset_fetch(ctx: &Context, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::new();
        for g in &req.groups {
            let topics = g
                .topics
                .as_ref()
                .map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
            let mut out = offset_fetch_response::OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match committed(ctx, &g.group_id, topics).await {
                Ok(found) => {
                    out.topics = found
                        .into_iter()
                        .map(|(t, ps)| {
                            offset_fetch_response::OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, o)| {
                                            offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_metadata(Some(s("")))
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                }
                Err(e) => out.error_code = code_of(&e),
            }
            groups.push(out);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics =
        req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
    let mut r = OffsetFetchResponse::default();
    match committed(ctx, &req.group_id, topics).await {
        Ok(found) => {
            r.topics = found
                .into_iter()
                .map(|(t, ps)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o)| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_metadata(Some(s("")))
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        Err(e) if version >= 2 => r.error_code = code_of(&e),
        Err(_) => {}
    }
    r
}

pub async fn list_groups(ctx: &Context, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    match ctx.service.list_groups().await {
        Ok(groups) => ListGroupsResponse::default().with_groups(
            groups
                .into_iter()
                .filter(|g| {
                    req.states_filter.is_empty() || req.states_filter.iter().any(|f| f.eq_ignore_ascii_case(&g.state))
                })
                .filter(|g| allows(ctx, ResourceType::Group, &g.name, Operation::Describe))
                .map(|g| {
                    let mut l = list_groups_response::ListedGroup::default()
                        .with_group_id(GroupId(s(g.name)))
                        .with_protocol_type(s("consumer"));
                    if version >= 4 {
                        l.group_state = s(g.state);
                    }
                    if version >= 5 {
                        l.group_type = s("consumer");
                    }
                    l
                })
                .collect(),
        ),
        Err(e) => ListGroupsResponse::default().with_error_code(code_of(&e)),
    }
}

pub async fn describe_groups(ctx: &Context, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut groups = Vec::new();
    for name in req.groups {
        let mut d = describe_groups_response::DescribedGroup::default().with_group_id(name.clone());
        let described = match check(ctx, ResourceType::Group, &name, Operation::Describe) {
            Ok(()) => ctx.service.describe_group(&name).await,
            Err(e) => Err(e),
        };
        match described {
            Ok(g) => {
                d.group_state = s(g.state);
                d.protocol_type = s("consumer");
                d.protocol_data = s("silt");
                d.members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        describe_groups_response::DescribedGroupMember::default()
                            .with_member_id(s(m.id))
                            .with_client_host(s(m.host))
                            .with_member_assignment(assignment_bytes(&m.assigned))
                    })
                    .collect();
            }
            Err(ServiceError::UnknownGroup(_)) => d.group_state = s("Dead"),
            Err(e) => {
                d.error_code = code_of(&e);
                if version >= 6 {
                    d.error_message = Some(s(describe(&e)));
                }
            }
        }
        groups.push(d);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn now_ms(ctx: &Context) -> i64 {
    ctx.service.cluster().clock().now_ms()
}

/// A coordinator heartbeat without waiting.
async fn beat(ctx: &Context, group: &str, hb: Heartbeat) -> Result<Answer, ServiceError> {
    ctx.service.group_heartbeat(group, hb, Duration::ZERO).await
}

pub async fn join_group(
    ctx: &Context,
    req: JoinGroupRequest,
    version: i16,
    host: &str,
    client_id: &str,
) -> JoinGroupResponse {
    let group = req.group_id.to_string();
    let refuse = |code: i16| JoinGroupResponse::default().with_error_code(code).with_generation_id(-1);
    if let Err(e) = check(ctx, ResourceType::Group, &group, Operation::Read) {
        return refuse(code_of(&e));
    }
    if *req.protocol_type != *"consumer" {
        // Other protocols (Connect's, say) need their leader's own assignment.
        return refuse(K::InconsistentGroupProtocol.code());
    }
    let Some(protocol) = req.protocols.first() else { return refuse(K::InconsistentGroupProtocol.code()) };
    let (topics, owned) = match subscription(&protocol.metadata) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(group, error = %e, "unreadable subscription");
            return refuse(K::InconsistentGroupProtocol.code());
        }
    };
    let member = match req.member_id.as_str() {
        "" => format!("{}-{}", if client_id.is_empty() { "member" } else { client_id }, uuid::Uuid::new_v4()),
        id => id.to_string(),
    };
    let session_timeout_ms = i64::from(req.session_timeout_ms.max(1));
    let known = ctx.groups.get(&group, &member);
    let hb = |member_epoch| Heartbeat {
        member_id: member.clone(),
        member_epoch,
        host: host.to_string(),
        topics: Some(topics.clone()),
        owned: Some(owned.clone()),
        session_timeout_ms,
    };
    let answer = match known {
        Some(m) => match beat(ctx, &group, hb(m.epoch)).await {
            Err(ServiceError::Member { .. }) => beat(ctx, &group, hb(JOIN)).await,
            other => other,
        },
        None => beat(ctx, &group, hb(JOIN)).await,
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(group, member, error = %describe(&e), "join refused");
            return refuse(code_of(&e)).with_member_id(s(member));
        }
    };
    let generation = answer.member_epoch.clamp(0, i64::from(i32::MAX)) as i32;
    ctx.groups.put(
        &group,
        &member,
        ClassicMember {
            epoch: answer.member_epoch,
            generation,
            protocol: protocol.name.to_string(),
            host: host.to_string(),
            session_timeout_ms,
            pending: answer.assigned,
            given: owned,
            seen_ms: 0,
        },
        now_ms(ctx),
    );
    let mut r = JoinGroupResponse::default()
        .with_generation_id(generation)
        .with_protocol_name(Some(protocol.name.clone()))
        .with_member_id(s(member));
    if version >= 7 {
        r.protocol_type = Some(s("consumer"));
    }
    r
}

pub async fn sync_group(ctx: &Context, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let (group, member) = (req.group_id.to_string(), req.member_id.to_string());
    if let Err(e) = check(ctx, ResourceType::Group, &group, Operation::Read) {
        return SyncGroupResponse::default().with_error_code(code_of(&e));
    }
    let Some(mut m) = ctx.groups.get(&group, &member) else {
        return SyncGroupResponse::default().with_error_code(K::UnknownMemberId.code());
    };
    if m.generation != req.generation_id {
        return SyncGroupResponse::default().with_error_code(K::IllegalGeneration.code());
    }
    m.given = m.pending.clone();
    let mut r = SyncGroupResponse::default().with_assignment(assignment_bytes(&m.given));
    if version >= 5 {
        r.protocol_type = Some(s("consumer"));
        r.protocol_name = Some(s(m.protocol.clone()));
    }
    ctx.groups.put(&group, &member, m, now_ms(ctx));
    r
}

pub async fn heartbeat(ctx: &Context, req: HeartbeatRequest) -> HeartbeatResponse {
    let (group, member) = (req.group_id.to_string(), req.member_id.to_string());
    if let Err(e) = check(ctx, ResourceType::Group, &group, Operation::Read) {
        return HeartbeatResponse::default().with_error_code(code_of(&e));
    }
    let Some(mut m) = ctx.groups.get(&group, &member) else {
        // The coordinator moved here since it joined: join again.
        return HeartbeatResponse::default().with_error_code(K::RebalanceInProgress.code());
    };
    if m.generation != req.generation_id {
        return HeartbeatResponse::default().with_error_code(K::IllegalGeneration.code());
    }
    let hb = Heartbeat {
        member_id: member.clone(),
        member_epoch: m.epoch,
        host: m.host.clone(),
        topics: None,
        owned: Some(m.given.clone()),
        session_timeout_ms: m.session_timeout_ms,
    };
    let code = match beat(ctx, &group, hb).await {
        Ok(answer) => {
            let code = classic_outcome(&m.given, &answer);
            m.epoch = answer.member_epoch;
            ctx.groups.put(&group, &member, m, now_ms(ctx));
            code
        }
        Err(ServiceError::Member { .. }) => {
            ctx.groups.remove(&group, &member);
            K::UnknownMemberId.code()
        }
        Err(e) => code_of(&e),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave_group(ctx: &Context, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.to_string();
    if let Err(e) = check(ctx, ResourceType::Group, &group, Operation::Read) {
        return LeaveGroupResponse::default().with_error_code(code_of(&e));
    }
    let members: Vec<String> = if version >= 3 {
        req.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![req.member_id.to_string()]
    };
    let mut out = Vec::new();
    let mut first_error = 0;
    for member in members {
        ctx.groups.remove(&group, &member);
        let hb = Heartbeat {
            member_id: member.clone(),
            member_epoch: LEAVE,
            host: String::new(),
            topics: None,
            owned: Some(Vec::new()),
            session_timeout_ms: 0,
        };
        let code = match beat(ctx, &group, hb).await {
            Ok(_) => 0,
            Err(e) => code_of(&e),
        };
        if first_error == 0 {
            first_error = code;
        }
        out.push(leave_group_response::MemberResponse::default().with_member_id(s(member)).with_error_code(code));
    }
    if version >= 3 {
        LeaveGroupResponse::default().with_members(out)
    } else {
        LeaveGroupResponse::default().with_error_code(first_error)
    }
}

/// Session timeout of members of the new protocol (Kafka's default for
/// group.consumer.session.timeout.ms).
const CONSUMER_SESSION_TIMEOUT_MS: i64 = 45_000;

pub async fn consumer_group_heartbeat(
    ctx: &Context,
    req: ConsumerGroupHeartbeatRequest,
    host: &str,
) -> ConsumerGroupHeartbeatResponse {
    let group = req.group_id.to_string();
    let fail = |code: i16, message: String| {
        ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_error_message(Some(s(message)))
    };
    if let Err(e) = check(ctx, ResourceType::Group, &group, Operation::Read) {
        return fail(code_of(&e), describe(&e));
    }
    if req.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
        return fail(K::InvalidRequest.code(), "regular expression subscriptions are not supported".into());
    }
    let names = match ctx.service.topic_names().await {
        Ok(n) => n,
        Err(e) => return fail(code_of(&e), describe(&e)),
    };
    let by_uuid: HashMap<uuid::Uuid, &str> = names.iter().map(|(id, n)| (topic_uuid(*id), n.as_str())).collect();
    let by_name: HashMap<&str, uuid::Uuid> = names.iter().map(|(id, n)| (n.as_str(), topic_uuid(*id))).collect();
    let member = match req.member_id.as_str() {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|tp| by_uuid.get(&tp.topic_id).map(|n| (n, &tp.partitions)))
            .flat_map(|(n, ps)| ps.iter().filter(|p| **p >= 0).map(move |p| (n.to_string(), *p as u32)))
            .collect()
    });
    let hb = Heartbeat {
        member_id: member.clone(),
        member_epoch: match i64::from(req.member_epoch) {
            e if e < LEAVE => LEAVE, // -2: a static member leaving
            e => e,
        },
        host: host.to_string(),
        topics: req.subscribed_topic_names.as_ref().map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        owned,
        session_timeout_ms: CONSUMER_SESSION_TIMEOUT_MS,
    };
    match beat(ctx, &group, hb).await {
        Ok(a) => {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &a.assigned {
                by_topic.entry(t.as_str()).or_default().push(*p as i32);
            }
            let assignment = consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                by_topic
                    .into_iter()
                    .filter_map(|(t, ps)| {
                        Some(
                            consumer_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(*by_name.get(t)?)
                                .with_partitions(ps),
                        )
                    })
                    .collect(),
            );
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(s(member)))
                .with_member_epoch(a.member_epoch.clamp(-1, i64::from(i32::MAX)) as i32)
                .with_heartbeat_interval_ms(crate::groups::HEARTBEAT_INTERVAL_MS as i32)
                .with_assignment((a.member_epoch >= 0).then_some(assignment))
        }
        Err(e) => {
            let code = match &e {
                ServiceError::Member { reason: GroupError::FencedMemberEpoch { .. }, .. } => {
                    K::FencedMemberEpoch.code()
                }
                ServiceError::Member { reason: GroupError::UnknownMember(_), .. } => K::UnknownMemberId.code(),
                other => code_of(other),
            };
            fail(code, describe(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: u32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn a_classic_member_rejoins_only_when_its_assignment_moved() {
        let answer = |assigned: Vec<TopicPartition>| Answer { member_epoch: 5, assigned, settled: true };
        let table = [
            (vec![tp("t", 0), tp("t", 1)], vec![tp("t", 1), tp("t", 0)], 0),
            (vec![tp("t", 0), tp("t", 1)], vec![tp("t", 0)], K::RebalanceInProgress.code()),
            (vec![], vec![tp("t", 2)], K::RebalanceInProgress.code()),
            (vec![], vec![], 0),
        ];
        for (given, assigned, want) in table {
            assert_eq!(classic_outcome(&given, &answer(assigned.clone())), want, "{given:?} -> {assigned:?}");
        }
    }

    #[test]
    fn members_silent_for_twice_their_session_are_forgotten() {
        let classic = Classic::default();
        let member = |session_timeout_ms| ClassicMember {
            epoch: 1,
            generation: 1,
            protocol: "range".into(),
            host: "h".into(),
            session_timeout_ms,
            pending: Vec::new(),
            given: Vec::new(),
            seen_ms: 0,
        };
        classic.put("g", "crashed", member(1_000), 0);
        classic.put("g", "slow", member(10_000), 0);
        classic.put("h", "alive", member(1_000), 1_500);
        assert!(classic.get("g", "crashed").is_some(), "within twice its session");
        classic.put("h", "alive", member(1_000), 2_001);
        assert!(classic.get("g", "crashed").is_none(), "gone after twice its session");
        assert!(classic.get("g", "slow").is_some() && classic.get("h", "alive").is_some());
    }

    #[test]
    fn subscriptions_and_assignments_use_the_consumer_protocol_layout() {
        let sub =
            ConsumerProtocolSubscription::default().with_topics(vec![s("a"), s("b")]).with_owned_partitions(vec![
                consumer_protocol_subscription::TopicPartition::default()
                    .with_topic(TopicName(s("a")))
                    .with_partitions(vec![0, 2]),
            ]);
        for version in 0..=3 {
            let (topics, owned) = subscription(&versioned(&sub, version)).unwrap();
            assert_eq!(topics, ["a", "b"]);
            assert_eq!(owned, if version >= 1 { vec![tp("a", 0), tp("a", 2)] } else { vec![] }, "v{version}");
        }
        assert!(subscription(&bytes::Bytes::from_static(&[0])).is_err());
        assert!(subscription(&bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());

        let mut b = assignment_bytes(&[tp("b", 1), tp("a", 3), tp("a", 0)]);
        assert_eq!(bytes::Buf::get_i16(&mut b), 0);
        let a = ConsumerProtocolAssignment::decode(&mut b, 0).unwrap();
        let got: Vec<(String, Vec<i32>)> =
            a.assigned_partitions.iter().map(|t| (t.topic.to_string(), t.partitions.clone())).collect();
        assert_eq!(got, [("a".to_string(), vec![3, 0]), ("b".to_string(), vec![1])]);
    }
}
