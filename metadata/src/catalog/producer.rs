//! Idempotent producers' state per partition:
//! `0x09 | topic id | partition | producer id -> ProducerState`.
//!
//! Written with the index commit that makes a producer's batches durable,
//! so a partition's next owner knows which batches it already holds and
//! answers a re-sent one with its original offsets instead of writing it
//! twice.

use bytes::BufMut;

use crate::codec::{CodecError, Reader};
use crate::CatalogError;

use super::partition::partition_of;
use super::{corrupt, keys, next_counter, scan_prefix, scan_range, Catalog};

const PRODUCER_ID_COUNTER: &[u8] = b"producer-id";

/// One batch an idempotent producer wrote: its sequence and offset ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What a partition remembers of one producer: its epoch and its latest
/// batches, oldest first (at most `silt_wire::PRODUCER_WINDOW` of them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerState {
    pub epoch: i16,
    /// When it last wrote, in milliseconds since the Unix epoch.
    pub updated_ms: i64,
    pub batches: Vec<BatchMeta>,
}

pub fn prefix(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::PRODUCER, topic_id, partition)
}

pub fn key(topic_id: u64, partition: u32, producer_id: i64) -> Vec<u8> {
    let mut key = prefix(topic_id, partition);
    key.extend_from_slice(&(producer_id as u64).to_be_bytes());
    key
}

/// The producer id at the end of a key built by [`key`].
pub fn producer_id(key: &[u8]) -> Result<i64, CodecError> {
    let tail: [u8; 8] =
        key.len().checked_sub(8).and_then(|at| key[at..].try_into().ok()).ok_or(CodecError::Invalid("producer key"))?;
    Ok(u64::from_be_bytes(tail) as i64)
}

impl ProducerState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 24 * self.batches.len());
        v.put_u8(1);
        v.put_i16(self.epoch);
        v.put_i64(self.updated_ms);
        v.put_u32(self.batches.len() as u32);
        for b in &self.batches {
            v.put_i32(b.base_sequence);
            v.put_i32(b.last_sequence);
            v.put_i64(b.base_offset);
            v.put_i64(b.last_offset);
        }
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let epoch = r.i16("epoch")?;
        let updated_ms = r.i64("updated")?;
        let n = r.u32("batch count")? as usize;
        // Each entry is 24 bytes: a count the value cannot hold is corrupt.
        if n > value.len() / 24 {
            return Err(CodecError::Invalid("batch count"));
        }
        let mut batches = Vec::with_capacity(n);
        for _ in 0..n {
            batches.push(BatchMeta {
                base_sequence: r.i32("base sequence")?,
                last_sequence: r.i32("last sequence")?,
                base_offset: r.i64("base offset")?,
                last_offset: r.i64("last offset")?,
            });
        }
        r.finish()?;
        Ok(ProducerState { epoch, updated_ms, batches })
    }
}

impl Catalog {
    /// A producer id never handed out before.
    pub async fn allocate_producer_id(&self) -> Result<i64, CatalogError> {
        let id = transact!(self, |t| next_counter(t, PRODUCER_ID_COUNTER).await)?;
        i64::try_from(id).map_err(|_| CatalogError::Corrupt {
            key: "producer-id counter".into(),
            source: CodecError::Invalid("producer id past i64::MAX"),
        })
    }

    /// Every idempotent producer a partition remembers, by producer id.
    pub async fn producers(&self, topic_id: u64, partition: u32) -> Result<Vec<(i64, ProducerState)>, CatalogError> {
        read_only!(self, |t| {
            scan_prefix(t, &prefix(topic_id, partition))
                .await?
                .into_iter()
                .map(|(k, v)| {
                    let id = producer_id(&k).map_err(|e| corrupt(&k, e))?;
                    Ok((id, ProducerState::decode(&v).map_err(|e| corrupt(&k, e))?))
                })
                .collect()
        })
    }

    /// The producers of partitions `first..=last` of a topic, by partition:
    /// one range scan, for an agent taking many partitions over at once.
    pub async fn producers_of(
        &self,
        topic_id: u64,
        first: u32,
        last: u32,
    ) -> Result<std::collections::HashMap<u32, Vec<(i64, ProducerState)>>, CatalogError> {
        read_only!(self, |t| {
            let end = keys::prefix_end(&prefix(topic_id, last));
            let mut out: std::collections::HashMap<u32, Vec<(i64, ProducerState)>> = Default::default();
            for (k, v) in scan_range(t, &prefix(topic_id, first), &end).await? {
                let p = partition_of(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("producer key")))?;
                let id = producer_id(&k).map_err(|e| corrupt(&k, e))?;
                out.entry(p).or_default().push((id, ProducerState::decode(&v).map_err(|e| corrupt(&k, e))?));
            }
            Ok(out)
        })
    }

    /// Forgets producers of a partition (those idle past their expiry).
    pub async fn forget_producers(&self, topic_id: u64, partition: u32, ids: &[i64]) -> Result<(), CatalogError> {
        for chunk in ids.chunks(self.budget()) {
            transact!(self, |t| {
                for id in chunk {
                    t.delete(key(topic_id, partition, *id));
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    #[tokio::test]
    async fn producer_ids_are_never_reused() {
        let (_d, c) = catalog().await;
        let a = c.allocate_producer_id().await.unwrap();
        let b = c.allocate_producer_id().await.unwrap();
        assert!(a > 0 && b > a);
    }

    #[test]
    fn round_trips_and_rejects_bad_counts() {
        let s = ProducerState {
            epoch: 2,
            updated_ms: 99,
            batches: vec![
                BatchMeta { base_sequence: 0, last_sequence: 9, base_offset: 100, last_offset: 109 },
                BatchMeta { base_sequence: 10, last_sequence: 10, base_offset: 250, last_offset: 250 },
            ],
        };
        let raw = s.encode();
        assert_eq!(ProducerState::decode(&raw).unwrap(), s);
        let mut bad = raw.clone();
        bad[11..15].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(ProducerState::decode(&bad).is_err());
        assert!(ProducerState::decode(&raw[..raw.len() - 1]).is_err());
        assert_eq!(producer_id(&key(1, 2, 77)).unwrap(), 77);
        assert!(key(1, 2, 77) < keys::prefix_end(&prefix(1, 2)));
    }
}
