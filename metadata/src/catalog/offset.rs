//! Committed offsets: `0x07 | group | 0x00 | topic id u64 | partition u32 -> OffsetRecord`.
//!
//! Keyed by group first, so a group's offsets are one range scan. Group
//! names hold no 0x00 byte (the agent checks), so the separator is
//! unambiguous. Topic ids are never reused, so a re-created topic never
//! sees an old topic's offsets; deleting a topic deletes its offsets.

use crate::codec::{CodecError, Reader};
use crate::CatalogError;
use bytes::BufMut;

use super::group::Fence;
use super::{corrupt, keys, scan_prefix, Catalog, Txn};

/// Where a group has read a partition up to: the next offset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRecord {
    pub offset: i64,
    pub committed_ms: i64,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub topic_id: u64,
    pub partition: u32,
    pub offset: i64,
}

pub fn group_prefix(group: &str) -> Vec<u8> {
    let mut key = vec![keys::OFFSET];
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key
}

pub fn key(group: &str, topic_id: u64, partition: u32) -> Vec<u8> {
    let mut key = group_prefix(group);
    key.extend_from_slice(&topic_id.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The group, topic id and partition of a key built by [`key`].
pub fn parse_key(key: &[u8]) -> Option<(&str, u64, u32)> {
    let rest = key.strip_prefix(&[keys::OFFSET])?;
    let (tail, head) = (rest.get(rest.len().checked_sub(12)?..)?, &rest[..rest.len() - 12]);
    let group = std::str::from_utf8(head.strip_suffix(&[0])?).ok()?;
    Some((group, u64::from_be_bytes(tail[..8].try_into().ok()?), u32::from_be_bytes(tail[8..].try_into().ok()?)))
}

impl OffsetRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.put_u8(1);
        v.put_i64(self.offset);
        v.put_i64(self.committed_ms);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let o = OffsetRecord { offset: r.i64("offset")?, committed_ms: r.i64("commit time")? };
        r.finish()?;
        Ok(o)
    }
}

impl Catalog {
    /// Commits offsets, if `fence` still holds, as few transactions as the
    /// store allows (the coordinator batches many members' commits into one).
    pub async fn commit_offsets(
        &self,
        commits: &[OffsetCommit],
        fence: &Fence,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        for chunk in commits.chunks(self.budget().saturating_sub(2).max(1)) {
            transact!(self, |t| {
                fence.check(t).await?;
                for c in chunk {
                    let record = OffsetRecord { offset: c.offset, committed_ms: now_ms };
                    t.put(key(&c.group, c.topic_id, c.partition), record.encode());
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// A group's committed offsets: (topic id, partition) -> record.
    pub async fn offsets(&self, group: &str) -> Result<Vec<((u64, u32), OffsetRecord)>, CatalogError> {
        read_only!(self, |t| group_offsets(t, group).await)
    }
}

pub(crate) async fn group_offsets(t: &mut Txn, group: &str) -> Result<Vec<((u64, u32), OffsetRecord)>, CatalogError> {
    scan_prefix(t, &group_prefix(group))
        .await?
        .into_iter()
        .map(|(k, v)| {
            let (_, topic_id, partition) =
                parse_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("offset key")))?;
            Ok(((topic_id, partition), OffsetRecord::decode(&v).map_err(|e| corrupt(&k, e))?))
        })
        .collect()
}

/// The keys of every group's offsets for `topic_id`.
pub(crate) async fn of_topic(t: &mut Txn, topic_id: u64) -> Result<Vec<Vec<u8>>, CatalogError> {
    Ok(scan_prefix(t, &[keys::OFFSET])
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| parse_key(k).is_some_and(|(_, id, _)| id == topic_id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    #[test]
    fn keys_parse_and_sort_by_group() {
        let k = key("g-1", 7, 3);
        assert_eq!(parse_key(&k), Some(("g-1", 7, 3)));
        assert!(key("a", u64::MAX, 9) < key("ab", 0, 0), "a group's offsets are one range");
        assert!(key("a", 1, 0) < keys::prefix_end(&group_prefix("a")));
        assert_eq!(parse_key(&[keys::OFFSET, 1, 2]), None);
        let r = OffsetRecord { offset: 42, committed_ms: 9 };
        assert_eq!(OffsetRecord::decode(&r.encode()).unwrap(), r);
    }

    #[tokio::test]
    async fn offsets_commit_under_the_coordinators_lease_and_go_with_their_topic_or_group() {
        let (_d, c) = catalog().await;
        let slots = c.create_topic("slots", 1, &[], 0).await.unwrap();
        let t = c.create_topic("t", 2, &[], 0).await.unwrap();
        c.heartbeat("a", ("x", ""), 0, 0, 60_000).await.unwrap();
        let epoch = c.acquire_leases("a", "x", &[(slots.id, 0)], 0).await.unwrap().taken[0].1.epoch;
        let fence = Fence { topic_id: slots.id, partition: 0, owner: "a".into(), epoch };
        let commit =
            |group: &str, p, offset| OffsetCommit { group: group.into(), topic_id: t.id, partition: p, offset };
        c.commit_offsets(&[commit("g", 0, 5), commit("g", 1, 7), commit("h", 0, 1)], &fence, 100).await.unwrap();
        c.commit_offsets(&[commit("g", 0, 6)], &fence, 200).await.unwrap();
        let g = c.offsets("g").await.unwrap();
        assert_eq!(
            g,
            vec![
                ((t.id, 0), OffsetRecord { offset: 6, committed_ms: 200 }),
                ((t.id, 1), OffsetRecord { offset: 7, committed_ms: 100 })
            ]
        );
        // A coordinator that lost its lease commits nothing.
        let stale = Fence { epoch: epoch + 1, ..fence.clone() };
        assert!(matches!(c.commit_offsets(&[commit("g", 0, 99)], &stale, 300).await, Err(CatalogError::Fenced { .. })));
        assert_eq!(c.offsets("g").await.unwrap()[0].1.offset, 6);
        // A group goes with its offsets; a topic takes its offsets along.
        assert!(c.delete_group("h", &fence).await.unwrap());
        assert!(c.offsets("h").await.unwrap().is_empty());
        assert!(!c.delete_group("h", &fence).await.unwrap(), "gone already");
        c.delete_topic("t", 0).await.unwrap();
        assert!(c.offsets("g").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn group_state_is_stored_under_the_coordinators_lease() {
        let (_d, c) = catalog().await;
        let slots = c.create_topic("slots", 1, &[], 0).await.unwrap();
        c.heartbeat("a", ("x", ""), 0, 0, 60_000).await.unwrap();
        let epoch = c.acquire_leases("a", "x", &[(slots.id, 0)], 0).await.unwrap().taken[0].1.epoch;
        let fence = Fence { topic_id: slots.id, partition: 0, owner: "a".into(), epoch };
        let record = crate::catalog::group::tests::record();
        c.store_group("g", &record, &fence).await.unwrap();
        assert_eq!(c.group("g").await.unwrap(), Some(record.clone()));
        assert_eq!(c.groups().await.unwrap(), vec![("g".to_string(), record.clone())]);
        // Another agent takes the slot over: the old coordinator is fenced.
        c.release_leases("a", &[(slots.id, 0, epoch)]).await.unwrap();
        c.acquire_leases("b", "y", &[(slots.id, 0)], 1).await.unwrap();
        let newer = crate::catalog::GroupRecord { epoch: record.epoch + 1, ..record.clone() };
        assert!(matches!(c.store_group("g", &newer, &fence).await, Err(CatalogError::Fenced { .. })));
        assert_eq!(c.group("g").await.unwrap(), Some(record));
    }
}
