//! Partition state: `0x02 | topic id | partition -> PartitionState`.

use crate::codec::{CodecError, Reader};
use crate::CatalogError;
use bytes::BufMut;

use super::{corrupt, keys, lease, read, scan_prefix, Catalog, Lease, Topic, Txn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// One past the last committed (durable, readable) offset.
    pub high_watermark: i64,
    /// The first offset still readable.
    pub log_start: i64,
}

pub fn key(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::PARTITION, topic_id, partition)
}

impl PartitionState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.put_u8(1);
        v.put_i64(self.high_watermark);
        v.put_i64(self.log_start);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let s = PartitionState { high_watermark: r.i64("high watermark")?, log_start: r.i64("log start")? };
        r.finish()?;
        Ok(s)
    }
}

impl Catalog {
    /// Every partition of a topic, in order: its state and its lease (two
    /// range scans, whatever the partition count).
    pub async fn partitions(&self, topic: &Topic) -> Result<Vec<(PartitionState, Option<Lease>)>, CatalogError> {
        read_only!(self, |t| {
            let states = states(t, topic.id).await?;
            if states.len() != topic.partitions as usize {
                // Deleted (or being created) under our feet.
                return Err(CatalogError::UnknownTopic(topic.name.clone()));
            }
            let mut leases: Vec<Option<Lease>> = vec![None; states.len()];
            for (p, l) in lease::of_topic(t, topic.id).await? {
                if let Some(slot) = leases.get_mut(p as usize) {
                    *slot = Some(l);
                }
            }
            Ok(states.into_iter().zip(leases).collect())
        })
    }

    /// State and lease of one partition (None: its topic is gone).
    pub async fn partition(
        &self,
        topic_id: u64,
        partition: u32,
    ) -> Result<Option<(PartitionState, Option<Lease>)>, CatalogError> {
        read_only!(self, |t| {
            let Some(state) = read(t, &key(topic_id, partition), false, PartitionState::decode).await? else {
                return Ok(None);
            };
            let lease = read(t, &lease::key(topic_id, partition), false, Lease::decode).await?;
            Ok(Some((state, lease)))
        })
    }
}

/// Every partition state of a topic, in partition order.
pub(crate) async fn states(t: &mut Txn, topic_id: u64) -> Result<Vec<PartitionState>, CatalogError> {
    let rows = scan_prefix(t, &keys::topic_prefix(keys::PARTITION, topic_id)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        if partition_of(&k) != Some(out.len() as u32) {
            return Err(corrupt(&k, CodecError::Invalid("partition keys are not dense")));
        }
        out.push(PartitionState::decode(&v).map_err(|e| corrupt(&k, e))?);
    }
    Ok(out)
}

/// The partition number of a per-partition key (`kind | topic id | partition ...`).
pub(crate) fn partition_of(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(9..13)?.try_into().ok()?))
}

/// The topic id of a per-partition key.
pub(crate) fn topic_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = PartitionState { high_watermark: 100, log_start: 7 };
        assert_eq!(PartitionState::decode(&s.encode()).unwrap(), s);
        assert!(PartitionState::decode(&[2]).is_err());
    }
}
