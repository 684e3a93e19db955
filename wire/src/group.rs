//! Consumer-group messages: the bodies of the group requests and responses
//! in `message`, and their layouts. Strings are u16-length-prefixed; lists
//! are a u32 count, then the items.
//!
//! ```text
//! TopicPartitions   topic: string, count: u32, partition: u32...
//! TopicOffset       topic: string, partition: u32, offset: i64
//! GroupHeartbeat    group, member_id: string, member_epoch: i64, session_timeout_ms: u32, wait_ms: u32,
//!                   has_topics: u8, [topics: list of string], has_owned: u8, [owned: list of TopicPartitions]
//! GroupAssignment   member_epoch: i64, heartbeat_interval_ms: u32, settled: u8, assigned: list of TopicPartitions
//! OffsetCommit      group, member_id: string, member_epoch: i64, offsets: list of TopicOffset
//! GroupInfo         name, state: string, members: u32, epoch: u64
//! GroupDescription  name, state: string, epoch: u64, coordinator: string,
//!                   members: list of (id, host: string, assigned: list of TopicPartitions),
//!                   partitions: list of (topic: string, partition: u32, committed: i64 (-1: none),
//!                                        log_end: i64, member: string)
//! ResetTo           kind: u8 (0 earliest, 1 latest, 2 offset), [offset: i64]
//! ```
//!
//! A heartbeat's member epoch is 0 to join and -1 to leave; otherwise the
//! epoch of the member's last answer. `wait_ms` lets the coordinator hold a
//! heartbeat whose answer would be unchanged until the group changes (a
//! long poll), so rebalances are seen at once.

use bytes::BufMut;

use crate::buf::{DecodeError, Reader, WriteExt};

/// Some partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

/// A partition's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeartbeat {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i64,
    pub session_timeout_ms: u32,
    /// How long the coordinator may hold an answer that would not change.
    pub wait_ms: u32,
    /// The subscription; None when unchanged.
    pub topics: Option<Vec<String>>,
    /// What the member consumes now; None when what it was last given.
    pub owned: Option<Vec<TopicPartitions>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAssignment {
    pub member_epoch: i64,
    /// When to heartbeat next.
    pub heartbeat_interval_ms: u32,
    /// The member holds its whole target; otherwise more may come soon.
    pub settled: bool,
    /// What the member may consume now.
    pub assigned: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i64,
    pub offsets: Vec<TopicOffset>,
}

/// One group as `ListGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub state: String,
    pub members: u32,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: String,
    pub host: String,
    pub assigned: Vec<TopicPartitions>,
}

/// One partition of a group: where the group is, where the log ends, who reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: u32,
    /// The committed offset, -1 when none.
    pub committed: i64,
    pub log_end: i64,
    /// The member consuming it, empty when none.
    pub member: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub name: String,
    pub state: String,
    pub epoch: u64,
    /// The coordinating agent's address.
    pub coordinator: String,
    pub members: Vec<MemberInfo>,
    pub partitions: Vec<GroupPartition>,
}

/// Where `ResetOffsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
}

fn put_list<T>(out: &mut impl BufMut, items: &[T], mut put: impl FnMut(&mut dyn BufMut, &T)) {
    out.put_u32(items.len() as u32);
    for item in items {
        put(out, item);
    }
}

fn put_str(out: &mut dyn BufMut, s: &str) {
    let s = crate::message::clip(s);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn list<T>(
    r: &mut Reader<'_>,
    what: &'static str,
    min_item_bytes: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = r.count(what, min_item_bytes)?;
    (0..n).map(|_| item(r)).collect()
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(DecodeError::invalid(what, n.to_string())),
    }
}

impl TopicPartitions {
    fn put(out: &mut dyn BufMut, t: &TopicPartitions) {
        put_str(out, &t.topic);
        out.put_u32(t.partitions.len() as u32);
        for p in &t.partitions {
            out.put_u32(*p);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<TopicPartitions, DecodeError> {
        let topic = r.string("topic")?;
        let partitions = list(r, "partition count", 4, |r| r.u32("partition"))?;
        Ok(TopicPartitions { topic, partitions })
    }
}

impl TopicOffset {
    fn put(out: &mut dyn BufMut, o: &TopicOffset) {
        put_str(out, &o.topic);
        out.put_u32(o.partition);
        out.put_i64(o.offset);
    }

    fn read(r: &mut Reader<'_>) -> Result<TopicOffset, DecodeError> {
        Ok(TopicOffset { topic: r.string("topic")?, partition: r.u32("partition")?, offset: r.i64("offset")? })
    }
}

/// Writes a list of topic offsets.
pub(crate) fn put_offsets(out: &mut impl BufMut, offsets: &[TopicOffset]) {
    put_list(out, offsets, TopicOffset::put);
}

pub(crate) fn read_offsets(r: &mut Reader<'_>) -> Result<Vec<TopicOffset>, DecodeError> {
    list(r, "offset count", 14, TopicOffset::read)
}

/// Writes a list of name = value pairs (topic configs).
pub(crate) fn put_pairs(out: &mut impl BufMut, items: &[(String, String)]) {
    put_list(out, items, |out, (k, v)| {
        put_str(out, k);
        put_str(out, v);
    });
}

pub(crate) fn read_pairs(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<(String, String)>, DecodeError> {
    list(r, what, 4, |r| Ok((r.string(what)?, r.string(what)?)))
}

/// Writes a list of strings.
pub(crate) fn put_strings(out: &mut impl BufMut, items: &[String]) {
    put_list(out, items, |out, s| put_str(out, s));
}

pub(crate) fn read_strings(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<String>, DecodeError> {
    list(r, what, 2, |r| r.string(what))
}

impl GroupHeartbeat {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        out.put_string(crate::message::clip(&self.group));
        out.put_string(crate::message::clip(&self.member_id));
        out.put_i64(self.member_epoch);
        out.put_u32(self.session_timeout_ms);
        out.put_u32(self.wait_ms);
        match &self.topics {
            Some(t) => {
                out.put_u8(1);
                put_strings(out, t);
            }
            None => out.put_u8(0),
        }
        match &self.owned {
            Some(o) => {
                out.put_u8(1);
                put_list(out, o, TopicPartitions::put);
            }
            None => out.put_u8(0),
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<GroupHeartbeat, DecodeError> {
        let group = r.string("group")?;
        let member_id = r.string("member id")?;
        let member_epoch = r.i64("member epoch")?;
        let session_timeout_ms = r.u32("session timeout")?;
        let wait_ms = r.u32("wait")?;
        let topics = if flag(r, "has topics")? { Some(read_strings(r, "topic")?) } else { None };
        let owned = if flag(r, "has owned")? { Some(list(r, "owned count", 6, TopicPartitions::read)?) } else { None };
        Ok(GroupHeartbeat { group, member_id, member_epoch, session_timeout_ms, wait_ms, topics, owned })
    }
}

impl GroupAssignment {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        out.put_i64(self.member_epoch);
        out.put_u32(self.heartbeat_interval_ms);
        out.put_u8(u8::from(self.settled));
        put_list(out, &self.assigned, TopicPartitions::put);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<GroupAssignment, DecodeError> {
        Ok(GroupAssignment {
            member_epoch: r.i64("member epoch")?,
            heartbeat_interval_ms: r.u32("heartbeat interval")?,
            settled: flag(r, "settled")?,
            assigned: list(r, "assigned count", 6, TopicPartitions::read)?,
        })
    }
}

impl OffsetCommit {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        out.put_string(crate::message::clip(&self.group));
        out.put_string(crate::message::clip(&self.member_id));
        out.put_i64(self.member_epoch);
        put_offsets(out, &self.offsets);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<OffsetCommit, DecodeError> {
        Ok(OffsetCommit {
            group: r.string("group")?,
            member_id: r.string("member id")?,
            member_epoch: r.i64("member epoch")?,
            offsets: read_offsets(r)?,
        })
    }
}

impl GroupInfo {
    pub(crate) fn put_all(out: &mut bytes::BytesMut, groups: &[GroupInfo]) {
        put_list(out, groups, |out, g| {
            put_str(out, &g.name);
            put_str(out, &g.state);
            out.put_u32(g.members);
            out.put_u64(g.epoch);
        });
    }

    pub(crate) fn read_all(r: &mut Reader<'_>) -> Result<Vec<GroupInfo>, DecodeError> {
        list(r, "group count", 16, |r| {
            Ok(GroupInfo {
                name: r.string("group")?,
                state: r.string("state")?,
                members: r.u32("members")?,
                epoch: r.u64("epoch")?,
            })
        })
    }
}

impl GroupDescription {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        out.put_string(crate::message::clip(&self.name));
        out.put_string(crate::message::clip(&self.state));
        out.put_u64(self.epoch);
        out.put_string(crate::message::clip(&self.coordinator));
        put_list(out, &self.members, |out, m| {
            put_str(out, &m.id);
            put_str(out, &m.host);
            out.put_u32(m.assigned.len() as u32);
            for t in &m.assigned {
                TopicPartitions::put(out, t);
            }
        });
        put_list(out, &self.partitions, |out, p| {
            put_str(out, &p.topic);
            out.put_u32(p.partition);
            out.put_i64(p.committed);
            out.put_i64(p.log_end);
            put_str(out, &p.member);
        });
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<GroupDescription, DecodeError> {
        let name = r.string("group")?;
        let state = r.string("state")?;
        let epoch = r.u64("epoch")?;
        let coordinator = r.string("coordinator")?;
        let members = list(r, "member count", 8, |r| {
            Ok(MemberInfo {
                id: r.string("member id")?,
                host: r.string("host")?,
                assigned: list(r, "assigned count", 6, TopicPartitions::read)?,
            })
        })?;
        let partitions = list(r, "partition count", 24, |r| {
            Ok(GroupPartition {
                topic: r.string("topic")?,
                partition: r.u32("partition")?,
                committed: r.i64("committed")?,
                log_end: r.i64("log end")?,
                member: r.string("member")?,
            })
        })?;
        Ok(GroupDescription { name, state, epoch, coordinator, members, partitions })
    }
}

impl ResetTo {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        match self {
            ResetTo::Earliest => out.put_u8(0),
            ResetTo::Latest => out.put_u8(1),
            ResetTo::Offset(n) => {
                out.put_u8(2);
                out.put_i64(*n);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ResetTo, DecodeError> {
        match r.u8("reset kind")? {
            0 => Ok(ResetTo::Earliest),
            1 => Ok(ResetTo::Latest),
            2 => Ok(ResetTo::Offset(r.i64("offset")?)),
            n => Err(DecodeError::invalid("reset kind", n.to_string())),
        }
    }
}
