//! Consumer groups: `0x06 | group name -> GroupRecord`.
//!
//! What a group's coordinator must not forget when it dies: the group
//! epoch, its members and their subscriptions, what each may consume now,
//! what each is giving up, and the target assignment. Members' heartbeat
//! times are not stored: a heartbeat that changes nothing writes nothing,
//! and a new coordinator starts every member's session afresh.
//!
//! Writes are fenced by the coordinator's lease (see [`Fence`]): a
//! coordinator that was paused or cut off cannot overwrite its successor's
//! state.

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;
use bytes::BufMut;

use super::{corrupt, keys, lease, offset, read, scan_prefix, Catalog, Lease, Txn};

/// A partition of a topic, by topic name.
pub type TopicPartition = (String, u32);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberRecord {
    pub id: String,
    /// The assignment epoch the member has caught up with.
    pub epoch: u64,
    /// Its epoch before the last change (an answer lost on the way still counts).
    pub previous_epoch: u64,
    /// Where it connects from (for `group describe`).
    pub host: String,
    pub session_timeout_ms: i64,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// What it may consume now.
    pub assigned: Vec<TopicPartition>,
    /// What it must give up and has not yet said it did.
    pub revoking: Vec<TopicPartition>,
    /// What it should end up with.
    pub target: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRecord {
    /// Moves on every change of membership, subscription or partition count.
    pub epoch: u64,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: u64,
    /// Partition counts of the subscribed topics, as the target used them.
    pub partitions: Vec<(String, u32)>,
    pub members: Vec<MemberRecord>,
}

/// The coordinator's lease: a write goes through only while `owner` holds
/// the lease on `topic_id`/`partition` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub topic_id: u64,
    pub partition: u32,
    pub owner: String,
    pub epoch: u64,
}

impl Fence {
    /// Checks the lease inside `t` (read for update, so a takeover makes the
    /// commit fail).
    pub(crate) async fn check(&self, t: &mut Txn) -> Result<(), CatalogError> {
        let l = read(t, &lease::key(self.topic_id, self.partition), true, Lease::decode).await?;
        match l {
            Some(l) if l.owner == self.owner && l.epoch == self.epoch && !l.released => Ok(()),
            other => Err(CatalogError::Fenced {
                topic_id: self.topic_id,
                partition: self.partition,
                owner: other.as_ref().map(|l| l.owner.clone()).unwrap_or_default(),
                epoch: other.map_or(0, |l| l.epoch),
            }),
        }
    }
}

pub fn key(group: &str) -> Vec<u8> {
    let mut key = vec![keys::GROUP];
    key.extend_from_slice(group.as_bytes());
    key
}

pub fn name_from_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[keys::GROUP])?).ok()
}

fn put_partitions(v: &mut Vec<u8>, ps: &[TopicPartition]) {
    v.put_u32(ps.len() as u32);
    for (t, p) in ps {
        v.put_str(t);
        v.put_u32(*p);
    }
}

fn partitions(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<TopicPartition>, CodecError> {
    let n = r.count(what, 8)?;
    (0..n).map(|_| Ok((r.string(what)?, r.u32(what)?))).collect()
}

impl GroupRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + 64 * self.members.len());
        v.put_u8(1);
        v.put_u64(self.epoch);
        v.put_u64(self.assignment_epoch);
        put_partitions(&mut v, &self.partitions);
        v.put_u32(self.members.len() as u32);
        for m in &self.members {
            v.put_str(&m.id);
            v.put_u64(m.epoch);
            v.put_u64(m.previous_epoch);
            v.put_str(&m.host);
            v.put_i64(m.session_timeout_ms);
            v.put_u32(m.topics.len() as u32);
            for t in &m.topics {
                v.put_str(t);
            }
            put_partitions(&mut v, &m.assigned);
            put_partitions(&mut v, &m.revoking);
            put_partitions(&mut v, &m.target);
        }
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let epoch = r.u64("group epoch")?;
        let assignment_epoch = r.u64("assignment epoch")?;
        let counts = partitions(&mut r, "partition counts")?;
        let n = r.count("member count", 60)?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.string("member id")?;
            let epoch = r.u64("member epoch")?;
            let previous_epoch = r.u64("previous member epoch")?;
            let host = r.string("host")?;
            let session_timeout_ms = r.i64("session timeout")?;
            let t = r.count("topic count", 4)?;
            let topics = (0..t).map(|_| r.string("topic")).collect::<Result<_, _>>()?;
            members.push(MemberRecord {
                id,
                epoch,
                previous_epoch,
                host,
                session_timeout_ms,
                topics,
                assigned: partitions(&mut r, "assigned")?,
                revoking: partitions(&mut r, "revoking")?,
                target: partitions(&mut r, "target")?,
            });
        }
        r.finish()?;
        Ok(GroupRecord { epoch, assignment_epoch, partitions: counts, members })
    }
}

impl Catalog {
    /// A group's stored state.
    pub async fn group(&self, name: &str) -> Result<Option<GroupRecord>, CatalogError> {
        read_only!(self, |t| read(t, &key(name), false, GroupRecord::decode).await)
    }

    /// Stores a group's state, if `fence` still holds.
    pub async fn store_group(&self, name: &str, record: &GroupRecord, fence: &Fence) -> Result<(), CatalogError> {
        transact!(self, |t| {
            fence.check(t).await?;
            t.put(key(name), record.encode());
            Ok(())
        })
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<(String, GroupRecord)>, CatalogError> {
        read_only!(self, |t| {
            scan_prefix(t, &[keys::GROUP])
                .await?
                .into_iter()
                .map(|(k, v)| {
                    let name = name_from_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("group name")))?;
                    Ok((name.to_string(), GroupRecord::decode(&v).map_err(|e| corrupt(&k, e))?))
                })
                .collect()
        })
    }

    /// Deletes a group and its committed offsets, if `fence` still holds.
    /// Returns whether it existed (a group with only offsets exists too).
    pub async fn delete_group(&self, name: &str, fence: &Fence) -> Result<bool, CatalogError> {
        let page = self.budget().saturating_sub(2).clamp(1, 4096);
        let mut existed = false;
        loop {
            let (found, more) = transact!(self, |t| {
                fence.check(t).await?;
                let mut found = t.get(&key(name)).await?.is_some();
                if found {
                    t.delete(key(name));
                }
                let prefix = offset::group_prefix(name);
                let rows = t.scan(&prefix, &keys::prefix_end(&prefix), page, false).await?;
                found |= !rows.is_empty();
                let more = rows.len() == page;
                for (k, _) in rows {
                    t.delete(k);
                }
                Ok((found, more))
            })?;
            existed |= found;
            if !more {
                return Ok(existed);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record() -> GroupRecord {
        GroupRecord {
            epoch: 4,
            assignment_epoch: 3,
            partitions: vec![("t".into(), 6)],
            members: vec![MemberRecord {
                id: "m1".into(),
                epoch: 3,
                previous_epoch: 2,
                host: "10.0.0.1".into(),
                session_timeout_ms: 45_000,
                topics: vec!["t".into()],
                assigned: vec![("t".into(), 0), ("t".into(), 1)],
                revoking: vec![("t".into(), 2)],
                target: vec![("t".into(), 0), ("t".into(), 1)],
            }],
        }
    }

    #[test]
    fn round_trips_and_rejects_truncation() {
        let r = record();
        let raw = r.encode();
        assert_eq!(GroupRecord::decode(&raw).unwrap(), r);
        for cut in 0..raw.len() {
            assert!(GroupRecord::decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = raw.clone();
        huge[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(GroupRecord::decode(&huge).is_err());
        assert_eq!(name_from_key(&key("g")), Some("g"));
    }
}
