//! Requests and responses, each the body of one frame.
//!
//! Request kinds (the frame's `kind` byte; stable, never reused):
//!
//! ```text
//! 1 CreateTopic    name: string, partitions: u32, configs: list of (key: string, value: string)
//! 2 DeleteTopic    name: string
//! 3 ListTopics     (empty)
//! 4 DescribeTopic  name: string
//! 5 Produce        topic: string, partition: u32, acks: u8, batch: the rest
//! 6 Fetch          topic: string, partition: u32, offset: i64, max_bytes: u32, max_wait_ms: u32
//! 7 Stats          (empty)
//! 8 ListAgents     (empty)
//! 9 InitProducer   (empty)
//! 10 FindCoordinator  group: string
//! 11 GroupHeartbeat   see `group::GroupHeartbeat`
//! 12 OffsetCommit     see `group::OffsetCommit`
//! 13 OffsetFetch      group: string, topics: list of string (empty: every topic)
//! 14 ListGroups       (empty)
//! 15 DescribeGroup    group: string
//! 16 ResetOffsets     group: string, topic: string, to: see `group::ResetTo`
//! 17 DeleteGroup      group: string
//! 18 AlterTopic       name: string, set: list of (key, value), delete: list of key
//! 19 PutConnector     name: string, config: text, standalone: u8, replace: u8
//! 20 ListConnectors   (empty)
//! 21 ConnectorAction  name: string, action: u8 (0 pause, 1 resume, 2 delete)
//! 22 ConnectHeartbeat see `connect::ConnectHeartbeat`
//! 23 CommitConnector  name: string, worker: string, epoch: u64, position: text
//! 24 Authenticate     token: string
//! 25 WhoAmI           (empty)
//! 26 CreateToken      principal: string, ttl_ms: u64 (0: never expires)
//! 27 RevokeToken      principal: string
//! 28 ListTokens       (empty)
//! 29 AlterAcl         acl: see `auth::Acl`, remove: u8
//! 30 ListAcls         (empty)
//! ```
//!
//! Response kinds:
//!
//! ```text
//! 0x81 Done              (empty)
//! 0x82 Topics            count: u32, names: string...
//! 0x83 Topic             description (see `TopicDescription`)
//! 0x84 ProduceAssigned   base_offset: i64   (the batch holds its place in the log)
//! 0x85 Produced          base_offset: i64, last_offset: i64   (acknowledged)
//! 0x86 Fetched           high_watermark: i64, log_start: i64, batches: the rest
//! 0x87 Stats             count: u32, (name: string, value: u64)...   (named counters; names are stable)
//! 0x88 Agents            count: u32, (id: string, address: string, partitions: u32, heartbeat_ms: i64)...
//! 0x89 ProducerId        producer_id: i64, epoch: i16
//! 0x8a Committed         base_offset: i64, last_offset: i64   (acks=local: now also in the object store)
//! 0x8b Coordinator       address: string   (the agent coordinating a group)
//! 0x8c GroupAssignment   see `group::GroupAssignment`
//! 0x8d Offsets           list of `group::TopicOffset` (committed; none: not listed)
//! 0x8e Groups            list of `group::GroupInfo`
//! 0x8f Group             see `group::GroupDescription`
//! 0x90 Connectors        list of `connect::ConnectorInfo`
//! 0x91 Principal         name: string   (who the connection acts as)
//! 0x92 Token             secret: string   (shown once; the agents keep its hash)
//! 0x93 Tokens            list of `auth::TokenInfo`
//! 0x94 Acls              list of `auth::Acl`
//! 0xff Error             code: u16, message: string
//! ```
//!
//! A produce request gets `ProduceAssigned` once its offsets are fixed, then
//! `Produced` once it is as durable as `acks` asked (or `Error`). A producer
//! may send the next batch of the same partition after `ProduceAssigned`,
//! which keeps order while many batches are in flight. With acks=local,
//! `Produced` comes once the batch is in the agent's write-ahead log, and
//! `Committed` follows once it is in the object store and indexed: until
//! then an idempotent producer keeps the batch, to send it again should the
//! agent die for good.
//!
//! An idempotent producer gets an id from `InitProducer` and numbers its
//! records per partition (the batch header's producer id, epoch and base
//! sequence). The owner appends a batch only if it continues the producer's
//! sequence; a batch sent again (after a lost answer, or to a new owner) is
//! answered with the offsets it was first given, and is not written twice.
//! Owners remember the last [`PRODUCER_WINDOW`] batches of each producer, so
//! a producer keeps at most that many batches of a partition unanswered.

use bytes::{BufMut, Bytes, BytesMut};

use crate::auth::{Acl, TokenInfo};
use crate::buf::{DecodeError, Reader, WriteExt};
use crate::code::ErrorCode;
use crate::connect::{ConnectHeartbeat, ConnectorInfo, ConnectorOp};
use crate::frame::{self, Frame};
use crate::group::{
    read_offsets, read_pairs, read_strings, GroupAssignment, GroupDescription, GroupHeartbeat, GroupInfo, OffsetCommit,
    ResetTo, TopicOffset,
};

/// How durable a record must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Acknowledged as soon as the agent has assigned offsets.
    None,
    /// Acknowledged after an fsync to the agent's local write-ahead log.
    Local,
    /// Acknowledged after the object is stored and its index committed.
    #[default]
    Durable,
}

impl Acks {
    fn to_u8(self) -> u8 {
        match self {
            Acks::None => 0,
            Acks::Local => 1,
            Acks::Durable => 2,
        }
    }
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Local),
            2 => Ok(Acks::Durable),
            n => Err(DecodeError::invalid("acks", n.to_string())),
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "0" => Ok(Acks::None),
            "local" => Ok(Acks::Local),
            "durable" | "all" | "-1" => Ok(Acks::Durable),
            other => Err(format!("unknown acks {other:?} (expected none, local or durable)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreateTopic {
        name: String,
        partitions: u32,
        /// Config overrides, such as `retention.ms`.
        configs: Vec<(String, String)>,
    },
    /// Sets and removes a topic's config overrides (removed ones fall back
    /// to the agents' defaults).
    AlterTopic {
        name: String,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    },
    DeleteTopic {
        name: String,
    },
    ListTopics,
    DescribeTopic {
        name: String,
    },
    Produce {
        topic: String,
        partition: u32,
        acks: Acks,
        batch: Bytes,
    },
    Fetch {
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    /// The agent's counters.
    Stats,
    /// The registered agents.
    ListAgents,
    /// A new producer id, unique for all time, for an idempotent producer.
    InitProducer,
    /// Which agent coordinates a group.
    FindCoordinator {
        group: String,
    },
    GroupHeartbeat(GroupHeartbeat),
    OffsetCommit(OffsetCommit),
    /// A group's committed offsets for `topics` (all when empty).
    OffsetFetch {
        group: String,
        topics: Vec<String>,
    },
    ListGroups,
    DescribeGroup {
        group: String,
    },
    ResetOffsets {
        group: String,
        topic: String,
        to: ResetTo,
    },
    DeleteGroup {
        group: String,
    },
    /// Creates a connector (with `replace`, updates one's config).
    PutConnector {
        name: String,
        config: String,
        standalone: bool,
        replace: bool,
    },
    ListConnectors,
    ConnectorAction {
        name: String,
        action: ConnectorOp,
    },
    ConnectHeartbeat(ConnectHeartbeat),
    /// A source's progress, fenced by the worker's claim.
    CommitConnector {
        name: String,
        worker: String,
        epoch: u64,
        position: String,
    },
    /// Makes the connection act as the token's principal (the first request
    /// of a connection, when the agent asks for tokens).
    Authenticate {
        token: String,
    },
    /// Who the connection acts as.
    WhoAmI,
    /// A new bearer token for `principal` (which must have none).
    CreateToken {
        principal: String,
        /// 0: it never expires.
        ttl_ms: u64,
    },
    RevokeToken {
        principal: String,
    },
    ListTokens,
    /// Adds an ACL (with `remove`, removes it).
    AlterAcl {
        acl: Acl,
        remove: bool,
    },
    ListAcls,
}

/// How many of a producer's latest batches per partition an owner
/// remembers, to recognise them when they are sent again.
pub const PRODUCER_WINDOW: usize = 16;

/// One agent as `ListAgents` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: String,
    pub address: String,
    /// Partitions it holds a live lease on.
    pub partitions: u32,
    /// Its last heartbeat, in milliseconds since the Unix epoch.
    pub heartbeat_ms: i64,
}

/// One partition as `DescribeTopic` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The owning agent's address, empty when none owns it.
    pub owner: String,
    pub epoch: u64,
    pub log_start: i64,
    pub high_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub id: u64,
    /// The largest record (key, value and headers) the agent accepts.
    pub max_record_bytes: u32,
    pub partitions: Vec<PartitionInfo>,
    /// The topic's config overrides, sorted by key (the rest are the
    /// agents' defaults).
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Done,
    Topics(Vec<String>),
    Topic(TopicDescription),
    ProduceAssigned { base_offset: i64 },
    Produced { base_offset: i64, last_offset: i64 },
    Fetched { high_watermark: i64, log_start: i64, batches: Bytes },
    Stats(Vec<(String, u64)>),
    Agents(Vec<AgentInfo>),
    ProducerId { producer_id: i64, epoch: i16 },
    Committed { base_offset: i64, last_offset: i64 },
    Coordinator { address: String },
    GroupAssignment(GroupAssignment),
    Offsets(Vec<TopicOffset>),
    Groups(Vec<GroupInfo>),
    Group(GroupDescription),
    Connectors(Vec<ConnectorInfo>),
    Principal { name: String },
    Token { secret: String },
    Tokens(Vec<TokenInfo>),
    Acls(Vec<Acl>),
    Error { code: ErrorCode, message: String },
}

mod kind {
    pub const CREATE_TOPIC: u8 = 1;
    pub const DELETE_TOPIC: u8 = 2;
    pub const LIST_TOPICS: u8 = 3;
    pub const DESCRIBE_TOPIC: u8 = 4;
    pub const PRODUCE: u8 = 5;
    pub const FETCH: u8 = 6;
    pub const STATS: u8 = 7;
    pub const LIST_AGENTS: u8 = 8;
    pub const INIT_PRODUCER: u8 = 9;
    pub const FIND_COORDINATOR: u8 = 10;
    pub const GROUP_HEARTBEAT: u8 = 11;
    pub const OFFSET_COMMIT: u8 = 12;
    pub const OFFSET_FETCH: u8 = 13;
    pub const LIST_GROUPS: u8 = 14;
    pub const DESCRIBE_GROUP: u8 = 15;
    pub const RESET_OFFSETS: u8 = 16;
    pub const DELETE_GROUP: u8 = 17;
    pub const ALTER_TOPIC: u8 = 18;
    pub const PUT_CONNECTOR: u8 = 19;
    pub const LIST_CONNECTORS: u8 = 20;
    pub const CONNECTOR_ACTION: u8 = 21;
    pub const CONNECT_HEARTBEAT: u8 = 22;
    pub const COMMIT_CONNECTOR: u8 = 23;
    pub const AUTHENTICATE: u8 = 24;
    pub const WHO_AM_I: u8 = 25;
    pub const CREATE_TOKEN: u8 = 26;
    pub const REVOKE_TOKEN: u8 = 27;
    pub const LIST_TOKENS: u8 = 28;
    pub const ALTER_ACL: u8 = 29;
    pub const LIST_ACLS: u8 = 30;
    pub const DONE: u8 = 0x81;
    pub const TOPICS: u8 = 0x82;
    pub const TOPIC: u8 = 0x83;
    pub const PRODUCE_ASSIGNED: u8 = 0x84;
    pub const PRODUCED: u8 = 0x85;
    pub const FETCHED: u8 = 0x86;
    pub const STATS_REPLY: u8 = 0x87;
    pub const AGENTS: u8 = 0x88;
    pub const PRODUCER_ID: u8 = 0x89;
    pub const COMMITTED: u8 = 0x8a;
    pub const COORDINATOR: u8 = 0x8b;
    pub const GROUP_ASSIGNMENT: u8 = 0x8c;
    pub const OFFSETS: u8 = 0x8d;
    pub const GROUPS: u8 = 0x8e;
    pub const GROUP: u8 = 0x8f;
    pub const CONNECTORS: u8 = 0x90;
    pub const PRINCIPAL: u8 = 0x91;
    pub const TOKEN: u8 = 0x92;
    pub const TOKENS: u8 = 0x93;
    pub const ACLS: u8 = 0x94;
    pub const ERROR: u8 = 0xff;
}

/// Strings on the wire are at most 65535 bytes; longer ones are cut at a
/// character boundary rather than refused, since they are only messages.
pub(crate) fn clip(s: &str) -> &str {
    if s.len() <= u16::MAX as usize {
        return s;
    }
    let mut end = u16::MAX as usize;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Request {
    /// The request's name, as metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Request::CreateTopic { .. } => "create_topic",
            Request::AlterTopic { .. } => "alter_topic",
            Request::DeleteTopic { .. } => "delete_topic",
            Request::ListTopics => "list_topics",
            Request::DescribeTopic { .. } => "describe_topic",
            Request::Produce { .. } => "produce",
            Request::Fetch { .. } => "fetch",
            Request::Stats => "stats",
            Request::ListAgents => "list_agents",
            Request::InitProducer => "init_producer",
            Request::FindCoordinator { .. } => "find_coordinator",
            Request::GroupHeartbeat(_) => "group_heartbeat",
            Request::OffsetCommit(_) => "offset_commit",
            Request::OffsetFetch { .. } => "offset_fetch",
            Request::ListGroups => "list_groups",
            Request::DescribeGroup { .. } => "describe_group",
            Request::ResetOffsets { .. } => "reset_offsets",
            Request::DeleteGroup { .. } => "delete_group",
            Request::PutConnector { .. } => "put_connector",
            Request::ListConnectors => "list_connectors",
            Request::ConnectorAction { .. } => "connector_action",
            Request::ConnectHeartbeat(_) => "connect_heartbeat",
            Request::CommitConnector { .. } => "commit_connector",
            Request::Authenticate { .. } => "authenticate",
            Request::WhoAmI => "who_am_i",
            Request::CreateToken { .. } => "create_token",
            Request::RevokeToken { .. } => "revoke_token",
            Request::ListTokens => "list_tokens",
            Request::AlterAcl { .. } => "alter_acl",
            Request::ListAcls => "list_acls",
        }
    }

    pub fn kind(&self) -> u8 {
        match self {
            Request::CreateTopic { .. } => kind::CREATE_TOPIC,
            Request::AlterTopic { .. } => kind::ALTER_TOPIC,
            Request::DeleteTopic { .. } => kind::DELETE_TOPIC,
            Request::ListTopics => kind::LIST_TOPICS,
            Request::DescribeTopic { .. } => kind::DESCRIBE_TOPIC,
            Request::Produce { .. } => kind::PRODUCE,
            Request::Fetch { .. } => kind::FETCH,
            Request::Stats => kind::STATS,
            Request::ListAgents => kind::LIST_AGENTS,
            Request::InitProducer => kind::INIT_PRODUCER,
            Request::FindCoordinator { .. } => kind::FIND_COORDINATOR,
            Request::GroupHeartbeat(_) => kind::GROUP_HEARTBEAT,
            Request::OffsetCommit(_) => kind::OFFSET_COMMIT,
            Request::OffsetFetch { .. } => kind::OFFSET_FETCH,
            Request::ListGroups => kind::LIST_GROUPS,
            Request::DescribeGroup { .. } => kind::DESCRIBE_GROUP,
            Request::ResetOffsets { .. } => kind::RESET_OFFSETS,
            Request::DeleteGroup { .. } => kind::DELETE_GROUP,
            Request::PutConnector { .. } => kind::PUT_CONNECTOR,
            Request::ListConnectors => kind::LIST_CONNECTORS,
            Request::ConnectorAction { .. } => kind::CONNECTOR_ACTION,
            Request::ConnectHeartbeat(_) => kind::CONNECT_HEARTBEAT,
            Request::CommitConnector { .. } => kind::COMMIT_CONNECTOR,
            Request::Authenticate { .. } => kind::AUTHENTICATE,
            Request::WhoAmI => kind::WHO_AM_I,
            Request::CreateToken { .. } => kind::CREATE_TOKEN,
            Request::RevokeToken { .. } => kind::REVOKE_TOKEN,
            Request::ListTokens => kind::LIST_TOKENS,
            Request::AlterAcl { .. } => kind::ALTER_ACL,
            Request::ListAcls => kind::LIST_ACLS,
        }
    }

    /// The whole frame as chunks to write in order: a produce request's
    /// batch is its own chunk, shared rather than copied.
    pub fn encode_chunks(&self) -> Vec<Bytes> {
        match self {
            Request::Produce { topic, partition, acks, batch } => {
                let topic = clip(topic);
                let fields = 2 + topic.len() + 4 + 1;
                let mut head = BytesMut::with_capacity(frame::PREFIX_LEN + frame::HEAD_LEN + fields);
                Frame::put_head(&mut head, kind::PRODUCE, fields + batch.len());
                head.put_string(topic);
                head.put_u32(*partition);
                head.put_u8(acks.to_u8());
                vec![head.freeze(), batch.clone()]
            }
            other => vec![other.encode()],
        }
    }

    /// Encodes the whole frame, length prefix included.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Request::CreateTopic { name, partitions, configs } => {
                body.put_string(clip(name));
                body.put_u32(*partitions);
                crate::group::put_pairs(&mut body, configs);
            }
            Request::AlterTopic { name, set, delete } => {
                body.put_string(clip(name));
                crate::group::put_pairs(&mut body, set);
                crate::group::put_strings(&mut body, delete);
            }
            Request::DeleteTopic { name } | Request::DescribeTopic { name } => body.put_string(clip(name)),
            Request::ListTopics
            | Request::Stats
            | Request::ListAgents
            | Request::InitProducer
            | Request::ListGroups
            | Request::ListConnectors
            | Request::WhoAmI
            | Request::ListTokens
            | Request::ListAcls => {}
            Request::Authenticate { token } => body.put_string(clip(token)),
            Request::CreateToken { principal, ttl_ms } => {
                body.put_string(clip(principal));
                body.put_u64(*ttl_ms);
            }
            Request::RevokeToken { principal } => body.put_string(clip(principal)),
            Request::AlterAcl { acl, remove } => {
                acl.put(&mut body);
                body.put_u8(u8::from(*remove));
            }
            Request::PutConnector { name, config, standalone, replace } => {
                body.put_string(clip(name));
                crate::connect::put_text(&mut body, config);
                body.put_u8(u8::from(*standalone));
                body.put_u8(u8::from(*replace));
            }
            Request::ConnectorAction { name, action } => {
                body.put_string(clip(name));
                body.put_u8(action.to_u8());
            }
            Request::ConnectHeartbeat(h) => h.put(&mut body),
            Request::CommitConnector { name, worker, epoch, position } => {
                body.put_string(clip(name));
                body.put_string(clip(worker));
                body.put_u64(*epoch);
                crate::connect::put_text(&mut body, position);
            }
            Request::FindCoordinator { group } | Request::DescribeGroup { group } | Request::DeleteGroup { group } => {
                body.put_string(clip(group))
            }
            Request::GroupHeartbeat(h) => h.put(&mut body),
            Request::OffsetCommit(c) => c.put(&mut body),
            Request::OffsetFetch { group, topics } => {
                body.put_string(clip(group));
                crate::group::put_strings(&mut body, topics);
            }
            Request::ResetOffsets { group, topic, to } => {
                body.put_string(clip(group));
                body.put_string(clip(topic));
                to.put(&mut body);
            }
            Request::Produce { topic, partition, acks, batch } => {
                body.put_string(clip(topic));
                body.put_u32(*partition);
                body.put_u8(acks.to_u8());
                body.put_slice(batch);
            }
            Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
                body.put_string(clip(topic));
                body.put_u32(*partition);
                body.put_i64(*offset);
                body.put_u32(*max_bytes);
                body.put_u32(*max_wait_ms);
            }
        }
        Frame::encode(self.kind(), &body)
    }

    pub fn decode(frame: &Frame) -> Result<Request, DecodeError> {
        let mut r = Reader::new(&frame.body);
        let request = match frame.kind {
            kind::CREATE_TOPIC => Request::CreateTopic {
                name: r.string("topic")?,
                partitions: r.u32("partitions")?,
                configs: read_pairs(&mut r, "config")?,
            },
            kind::ALTER_TOPIC => Request::AlterTopic {
                name: r.string("topic")?,
                set: read_pairs(&mut r, "config")?,
                delete: read_strings(&mut r, "config key")?,
            },
            kind::DELETE_TOPIC => Request::DeleteTopic { name: r.string("topic")? },
            kind::LIST_TOPICS => Request::ListTopics,
            kind::STATS => Request::Stats,
            kind::LIST_AGENTS => Request::ListAgents,
            kind::INIT_PRODUCER => Request::InitProducer,
            kind::DESCRIBE_TOPIC => Request::DescribeTopic { name: r.string("topic")? },
            kind::PRODUCE => {
                let topic = r.string("topic")?;
                let partition = r.u32("partition")?;
                let acks = Acks::from_u8(r.u8("acks")?)?;
                let batch = frame.body.slice_ref(r.rest());
                Request::Produce { topic, partition, acks, batch }
            }
            kind::FETCH => Request::Fetch {
                topic: r.string("topic")?,
                partition: r.u32("partition")?,
                offset: r.i64("offset")?,
                max_bytes: r.u32("max bytes")?,
                max_wait_ms: r.u32("max wait")?,
            },
            kind::FIND_COORDINATOR => Request::FindCoordinator { group: r.string("group")? },
            kind::GROUP_HEARTBEAT => Request::GroupHeartbeat(GroupHeartbeat::read(&mut r)?),
            kind::OFFSET_COMMIT => Request::OffsetCommit(OffsetCommit::read(&mut r)?),
            kind::OFFSET_FETCH => {
                Request::OffsetFetch { group: r.string("group")?, topics: read_strings(&mut r, "topic")? }
            }
            kind::LIST_GROUPS => Request::ListGroups,
            kind::DESCRIBE_GROUP => Request::DescribeGroup { group: r.string("group")? },
            kind::RESET_OFFSETS => Request::ResetOffsets {
                group: r.string("group")?,
                topic: r.string("topic")?,
                to: ResetTo::read(&mut r)?,
            },
            kind::DELETE_GROUP => Request::DeleteGroup { group: r.string("group")? },
            kind::PUT_CONNECTOR => Request::PutConnector {
                name: r.string("connector")?,
                config: crate::connect::text(&mut r, "config")?,
                standalone: r.u8("standalone")? != 0,
                replace: r.u8("replace")? != 0,
            },
            kind::LIST_CONNECTORS => Request::ListConnectors,
            kind::CONNECTOR_ACTION => Request::ConnectorAction {
                name: r.string("connector")?,
                action: ConnectorOp::from_u8(r.u8("action")?)?,
            },
            kind::CONNECT_HEARTBEAT => Request::ConnectHeartbeat(ConnectHeartbeat::read(&mut r)?),
            kind::COMMIT_CONNECTOR => Request::CommitConnector {
                name: r.string("connector")?,
                worker: r.string("worker")?,
                epoch: r.u64("epoch")?,
                position: crate::connect::text(&mut r, "position")?,
            },
            kind::AUTHENTICATE => Request::Authenticate { token: r.string("token")? },
            kind::WHO_AM_I => Request::WhoAmI,
            kind::CREATE_TOKEN => Request::CreateToken { principal: r.string("principal")?, ttl_ms: r.u64("ttl")? },
            kind::REVOKE_TOKEN => Request::RevokeToken { principal: r.string("principal")? },
            kind::LIST_TOKENS => Request::ListTokens,
            kind::ALTER_ACL => Request::AlterAcl { acl: Acl::read(&mut r)?, remove: r.u8("remove")? != 0 },
            kind::LIST_ACLS => Request::ListAcls,
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error { code, message: message.into() }
    }

    pub fn kind(&self) -> u8 {
        match self {
            Response::Done => kind::DONE,
            Response::Topics(_) => kind::TOPICS,
            Response::Topic(_) => kind::TOPIC,
            Response::ProduceAssigned { .. } => kind::PRODUCE_ASSIGNED,
            Response::Produced { .. } => kind::PRODUCED,
            Response::Fetched { .. } => kind::FETCHED,
            Response::Stats(_) => kind::STATS_REPLY,
            Response::Agents(_) => kind::AGENTS,
            Response::ProducerId { .. } => kind::PRODUCER_ID,
            Response::Committed { .. } => kind::COMMITTED,
            Response::Coordinator { .. } => kind::COORDINATOR,
            Response::GroupAssignment(_) => kind::GROUP_ASSIGNMENT,
            Response::Offsets(_) => kind::OFFSETS,
            Response::Groups(_) => kind::GROUPS,
            Response::Group(_) => kind::GROUP,
            Response::Connectors(_) => kind::CONNECTORS,
            Response::Principal { .. } => kind::PRINCIPAL,
            Response::Token { .. } => kind::TOKEN,
            Response::Tokens(_) => kind::TOKENS,
            Response::Acls(_) => kind::ACLS,
            Response::Error { .. } => kind::ERROR,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Response::Done => {}
            Response::Topics(names) => {
                body.put_u32(names.len() as u32);
                for n in names {
                    body.put_string(clip(n));
                }
            }
            Response::Topic(t) => {
                body.put_string(clip(&t.name));
                body.put_u64(t.id);
                body.put_u32(t.max_record_bytes);
                body.put_u32(t.partitions.len() as u32);
                for p in &t.partitions {
                    body.put_u32(p.partition);
                    body.put_string(clip(&p.owner));
                    body.put_u64(p.epoch);
                    body.put_i64(p.log_start);
                    body.put_i64(p.high_watermark);
                }
                crate::group::put_pairs(&mut body, &t.configs);
            }
            Response::ProduceAssigned { base_offset } => body.put_i64(*base_offset),
            Response::Agents(agents) => {
                body.put_u32(agents.len() as u32);
                for a in agents {
                    body.put_string(clip(&a.id));
                    body.put_string(clip(&a.address));
                    body.put_u32(a.partitions);
                    body.put_i64(a.heartbeat_ms);
                }
            }
            Response::Stats(counters) => {
                body.put_u32(counters.len() as u32);
                for (name, value) in counters {
                    body.put_string(clip(name));
                    body.put_u64(*value);
                }
            }
            Response::Produced { base_offset, last_offset } | Response::Committed { base_offset, last_offset } => {
                body.put_i64(*base_offset);
                body.put_i64(*last_offset);
            }
            Response::ProducerId { producer_id, epoch } => {
                body.put_i64(*producer_id);
                body.put_i16(*epoch);
            }
            Response::Fetched { high_watermark, log_start, batches } => {
                // Built without copying the batches twice: see `encode_fetched`.
                return Self::encode_fetched(*high_watermark, *log_start, batches);
            }
            Response::Coordinator { address } => body.put_string(clip(address)),
            Response::GroupAssignment(a) => a.put(&mut body),
            Response::Offsets(offsets) => crate::group::put_offsets(&mut body, offsets),
            Response::Groups(groups) => GroupInfo::put_all(&mut body, groups),
            Response::Group(g) => g.put(&mut body),
            Response::Connectors(c) => ConnectorInfo::put_all(&mut body, c),
            Response::Principal { name } => body.put_string(clip(name)),
            Response::Token { secret } => body.put_string(clip(secret)),
            Response::Tokens(t) => TokenInfo::put_all(&mut body, t),
            Response::Acls(a) => Acl::put_all(&mut body, a),
            Response::Error { code, message } => {
                body.put_u16(code.as_u16());
                body.put_string(clip(message));
            }
        }
        Frame::encode(self.kind(), &body)
    }

    fn encode_fetched(high_watermark: i64, log_start: i64, batches: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(6 + 16 + batches.len());
        Frame::put_head(&mut out, kind::FETCHED, 16 + batches.len());
        out.put_i64(high_watermark);
        out.put_i64(log_start);
        out.put_slice(batches);
        out.freeze()
    }

    /// A `Fetched` frame as chunks to write in order: its head, then the
    /// batches as they are (shared, not copied).
    pub fn fetched_chunks(high_watermark: i64, log_start: i64, batches: &[Bytes]) -> Vec<Bytes> {
        let len: usize = batches.iter().map(Bytes::len).sum();
        let mut head = BytesMut::with_capacity(frame::PREFIX_LEN + frame::HEAD_LEN + 16);
        Frame::put_head(&mut head, kind::FETCHED, 16 + len);
        head.put_i64(high_watermark);
        head.put_i64(log_start);
        std::iter::once(head.freeze()).chain(batches.iter().filter(|b| !b.is_empty()).cloned()).collect()
    }

    pub fn decode(frame: &Frame) -> Result<Response, DecodeError> {
        let mut r = Reader::new(&frame.body);
        let response = match frame.kind {
            kind::DONE => Response::Done,
            kind::TOPICS => {
                let n = r.count("topic count", 2)?;
                let names = (0..n).map(|_| r.string("topic")).collect::<Result<_, _>>()?;
                Response::Topics(names)
            }
            kind::TOPIC => {
                let name = r.string("topic")?;
                let id = r.u64("topic id")?;
                let max_record_bytes = r.u32("max record bytes")?;
                let n = r.count("partition count", 30)?;
                let mut partitions = Vec::with_capacity(n);
                for _ in 0..n {
                    partitions.push(PartitionInfo {
                        partition: r.u32("partition")?,
                        owner: r.string("owner")?,
                        epoch: r.u64("epoch")?,
                        log_start: r.i64("log start")?,
                        high_watermark: r.i64("high watermark")?,
                    });
                }
                let configs = read_pairs(&mut r, "config")?;
                Response::Topic(TopicDescription { name, id, max_record_bytes, partitions, configs })
            }
            kind::PRODUCE_ASSIGNED => Response::ProduceAssigned { base_offset: r.i64("base offset")? },
            kind::AGENTS => {
                let n = r.count("agent count", 16)?;
                let mut agents = Vec::with_capacity(n);
                for _ in 0..n {
                    agents.push(AgentInfo {
                        id: r.string("agent id")?,
                        address: r.string("agent address")?,
                        partitions: r.u32("partitions")?,
                        heartbeat_ms: r.i64("heartbeat")?,
                    });
                }
                Response::Agents(agents)
            }
            kind::STATS_REPLY => {
                let n = r.count("counter count", 10)?;
                let mut counters = Vec::with_capacity(n);
                for _ in 0..n {
                    counters.push((r.string("counter name")?, r.u64("counter value")?));
                }
                Response::Stats(counters)
            }
            kind::PRODUCED => {
                Response::Produced { base_offset: r.i64("base offset")?, last_offset: r.i64("last offset")? }
            }
            kind::COMMITTED => {
                Response::Committed { base_offset: r.i64("base offset")?, last_offset: r.i64("last offset")? }
            }
            kind::PRODUCER_ID => {
                Response::ProducerId { producer_id: r.i64("producer id")?, epoch: r.i16("producer epoch")? }
            }
            kind::FETCHED => {
                let high_watermark = r.i64("high watermark")?;
                let log_start = r.i64("log start")?;
                let batches = frame.body.slice_ref(r.rest());
                Response::Fetched { high_watermark, log_start, batches }
            }
            kind::ERROR => {
                Response::Error { code: ErrorCode::from_u16(r.u16("error code")?), message: r.string("message")? }
            }
            kind::COORDINATOR => Response::Coordinator { address: r.string("address")? },
            kind::GROUP_ASSIGNMENT => Response::GroupAssignment(GroupAssignment::read(&mut r)?),
            kind::OFFSETS => Response::Offsets(read_offsets(&mut r)?),
            kind::GROUPS => Response::Groups(GroupInfo::read_all(&mut r)?),
            kind::GROUP => Response::Group(GroupDescription::read(&mut r)?),
            kind::CONNECTORS => Response::Connectors(ConnectorInfo::read_all(&mut r)?),
            kind::PRINCIPAL => Response::Principal { name: r.string("principal")? },
            kind::TOKEN => Response::Token { secret: r.string("token")? },
            kind::TOKENS => Response::Tokens(TokenInfo::read_all(&mut r)?),
            kind::ACLS => Response::Acls(Acl::read_all(&mut r)?),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{parse_length, PREFIX_LEN};
    use proptest::prelude::*;

    fn unframe(raw: &Bytes) -> Frame {
        let len = parse_length(raw[..PREFIX_LEN].try_into().unwrap(), usize::MAX).unwrap();
        assert_eq!(len, raw.len() - PREFIX_LEN);
        Frame::decode(raw.slice(PREFIX_LEN..)).unwrap()
    }

    fn acl() -> Acl {
        use crate::auth::*;
        Acl {
            principal: "bob".into(),
            resource: ResourceType::Topic,
            pattern: Pattern::Prefixed,
            name: "logs.".into(),
            operation: Operation::Read,
            permission: Permission::Deny,
        }
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::CreateTopic { name: "hello".into(), partitions: 3, configs: vec![] },
            Request::CreateTopic {
                name: "hello".into(),
                partitions: 3,
                configs: vec![("retention.ms".into(), "1000".into())],
            },
            Request::AlterTopic {
                name: "hello".into(),
                set: vec![("cleanup.policy".into(), "compact".into())],
                delete: vec!["retention.ms".into()],
            },
            Request::DeleteTopic { name: "hello".into() },
            Request::ListTopics,
            Request::DescribeTopic { name: "é".into() },
            Request::Produce {
                topic: "t".into(),
                partition: 2,
                acks: Acks::Durable,
                batch: Bytes::from_static(b"xyz"),
            },
            Request::Fetch { topic: "t".into(), partition: 1, offset: 5, max_bytes: 1024, max_wait_ms: 500 },
            Request::Stats,
            Request::ListAgents,
            Request::InitProducer,
            Request::FindCoordinator { group: "g".into() },
            Request::GroupHeartbeat(GroupHeartbeat {
                group: "g".into(),
                member_id: "m-1".into(),
                member_epoch: 4,
                session_timeout_ms: 45_000,
                wait_ms: 3000,
                topics: Some(vec!["a".into(), "b".into()]),
                owned: Some(vec![crate::group::TopicPartitions { topic: "a".into(), partitions: vec![0, 2] }]),
            }),
            Request::GroupHeartbeat(GroupHeartbeat {
                group: "g".into(),
                member_id: "m-1".into(),
                member_epoch: -1,
                session_timeout_ms: 0,
                wait_ms: 0,
                topics: None,
                owned: None,
            }),
            Request::OffsetCommit(OffsetCommit {
                group: "g".into(),
                member_id: "m".into(),
                member_epoch: 2,
                offsets: vec![TopicOffset { topic: "a".into(), partition: 1, offset: 99 }],
            }),
            Request::OffsetFetch { group: "g".into(), topics: vec!["a".into()] },
            Request::ListGroups,
            Request::DescribeGroup { group: "g".into() },
            Request::ResetOffsets { group: "g".into(), topic: "a".into(), to: ResetTo::Offset(7) },
            Request::ResetOffsets { group: "g".into(), topic: "a".into(), to: ResetTo::Earliest },
            Request::DeleteGroup { group: "g".into() },
            Request::PutConnector {
                name: "c".into(),
                config: "type = \"file\"\n".into(),
                standalone: true,
                replace: false,
            },
            Request::ListConnectors,
            Request::ConnectorAction { name: "c".into(), action: ConnectorOp::Delete },
            Request::ConnectHeartbeat(ConnectHeartbeat {
                worker: "w".into(),
                ttl_ms: 10_000,
                standalone: vec!["c".into()],
                errors: vec![("c".into(), 3, "refused".into())],
            }),
            Request::CommitConnector { name: "c".into(), worker: "w".into(), epoch: 3, position: "{}".into() },
            Request::Authenticate { token: "silt_00ff".into() },
            Request::WhoAmI,
            Request::CreateToken { principal: "bob".into(), ttl_ms: 86_400_000 },
            Request::RevokeToken { principal: "bob".into() },
            Request::ListTokens,
            Request::AlterAcl { acl: acl(), remove: true },
            Request::ListAcls,
        ]
    }

    fn responses() -> Vec<Response> {
        vec![
            Response::Done,
            Response::Topics(vec!["a".into(), "b".into()]),
            Response::Topic(TopicDescription {
                name: "t".into(),
                id: 9,
                max_record_bytes: 1 << 20,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    owner: "127.0.0.1:7447".into(),
                    epoch: 3,
                    log_start: 0,
                    high_watermark: 10,
                }],
                configs: vec![("retention.ms".into(), "-1".into())],
            }),
            Response::ProduceAssigned { base_offset: 7 },
            Response::Produced { base_offset: 7, last_offset: 9 },
            Response::Fetched { high_watermark: 10, log_start: 0, batches: Bytes::from_static(b"abc") },
            Response::Stats(vec![("objects_written".into(), 3), ("gets".into(), 0)]),
            Response::Agents(vec![AgentInfo {
                id: "a".into(),
                address: "10.0.0.1:7447".into(),
                partitions: 3,
                heartbeat_ms: 9,
            }]),
            Response::ProducerId { producer_id: 42, epoch: 3 },
            Response::Committed { base_offset: 7, last_offset: 9 },
            Response::Coordinator { address: "10.0.0.1:7447".into() },
            Response::GroupAssignment(GroupAssignment {
                member_epoch: 3,
                heartbeat_interval_ms: 3000,
                settled: true,
                assigned: vec![crate::group::TopicPartitions { topic: "a".into(), partitions: vec![1] }],
            }),
            Response::Offsets(vec![TopicOffset { topic: "a".into(), partition: 0, offset: 5 }]),
            Response::Groups(vec![GroupInfo { name: "g".into(), state: "Stable".into(), members: 2, epoch: 9 }]),
            Response::Group(GroupDescription {
                name: "g".into(),
                state: "Stable".into(),
                epoch: 9,
                coordinator: "10.0.0.1:7447".into(),
                members: vec![crate::group::MemberInfo {
                    id: "m".into(),
                    host: "10.0.0.2".into(),
                    assigned: vec![crate::group::TopicPartitions { topic: "a".into(), partitions: vec![0] }],
                }],
                partitions: vec![crate::group::GroupPartition {
                    topic: "a".into(),
                    partition: 0,
                    committed: -1,
                    log_end: 10,
                    member: "m".into(),
                }],
            }),
            Response::Connectors(vec![ConnectorInfo {
                name: "c".into(),
                config: "type = \"file\"".into(),
                paused: true,
                standalone: false,
                worker: "w".into(),
                epoch: 2,
                expires_ms: 99,
                position: "{\"offset\":1}".into(),
                error: "boom".into(),
                error_ms: 98,
            }]),
            Response::Principal { name: "bob".into() },
            Response::Token { secret: "silt_00ff".into() },
            Response::Tokens(vec![TokenInfo { principal: "bob".into(), created_ms: 5, expires_ms: 0 }]),
            Response::Acls(vec![acl()]),
            Response::error(ErrorCode::UnknownTopic, "no topic x"),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for req in requests() {
            assert_eq!(Request::decode(&unframe(&req.encode())).unwrap(), req);
            // The chunks a client writes are the same bytes.
            assert_eq!(req.encode_chunks().concat(), req.encode().to_vec(), "{req:?}");
        }
        // A fetch answer written in chunks is the same bytes as the frame.
        let parts = [Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"defgh")];
        let whole = Response::Fetched { high_watermark: 9, log_start: 2, batches: Bytes::from_static(b"abcdefgh") };
        assert_eq!(Response::fetched_chunks(9, 2, &parts).concat(), whole.encode().to_vec());
        for resp in responses() {
            assert_eq!(Response::decode(&unframe(&resp.encode())).unwrap(), resp);
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_payload() {
        for req in requests() {
            let raw = req.encode();
            let frame = unframe(&raw);
            for cut in 0..frame.body.len() {
                let short = Frame { kind: frame.kind, body: frame.body.slice(..cut) };
                match Request::decode(&short) {
                    Err(_) => {}
                    // Produce carries its batch as the rest of the frame, so a
                    // cut inside the batch still parses; the batch check catches it.
                    Ok(Request::Produce { batch, .. }) => assert!(batch.len() < 3),
                    Ok(other) => panic!("cut at {cut} decoded as {other:?}"),
                }
            }
        }
        for resp in responses() {
            let frame = unframe(&resp.encode());
            for cut in 0..frame.body.len() {
                let short = Frame { kind: frame.kind, body: frame.body.slice(..cut) };
                if let Ok(r) = Response::decode(&short) {
                    assert!(matches!(r, Response::Fetched { .. }), "cut at {cut} decoded as {r:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_errors() {
        assert!(Request::decode(&Frame { kind: 99, body: Bytes::new() }).is_err());
        assert!(Request::decode(&Frame { kind: kind::LIST_TOPICS, body: Bytes::from_static(b"x") }).is_err());
        assert!(Response::decode(&Frame { kind: 3, body: Bytes::new() }).is_err());
    }

    proptest! {
        #[test]
        fn garbage_frames_never_panic(k in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let frame = Frame { kind: k, body: Bytes::from(body) };
            let _ = Request::decode(&frame);
            let _ = Response::decode(&frame);
        }

        #[test]
        fn fetches_round_trip(topic in "[a-z._-]{1,40}", partition in any::<u32>(), offset in any::<i64>(), max_bytes in any::<u32>(), wait in any::<u32>()) {
            let req = Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms: wait };
            prop_assert_eq!(Request::decode(&unframe(&req.encode())).unwrap(), req);
        }
    }
}
