//! Objects to collect: `0x08 | due ms u64 | object name -> ()`.
//!
//! Whoever removes index entries (retention, compaction, a deleted topic)
//! notes each object they pointed into, due once its grace period has
//! passed. An object holds runs of many partitions, so a note says "check
//! this object", not "delete it": the collector deletes it only when no
//! index entry points into it any more (see [`Catalog::references`]).
//! Keyed by due time, so the notes due now are one range scan.

use std::collections::BTreeSet;

use crate::codec::CodecError;
use crate::CatalogError;

use super::{corrupt, keys, segment, Catalog, Segment, Txn};

/// The key that notes `object`, due at `due_ms`.
pub fn key(due_ms: i64, object: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + object.len());
    key.push(keys::GC);
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(object.as_bytes());
    key
}

fn decode_key(raw: &[u8]) -> Result<(i64, String), CatalogError> {
    let bad = || corrupt(raw, CodecError::Invalid("collection note key"));
    let due = raw.get(1..9).ok_or_else(bad)?;
    let due = u64::from_be_bytes(due.try_into().map_err(|_| bad())?) as i64;
    let object = std::str::from_utf8(&raw[9..]).map_err(|_| bad())?;
    Ok((due, object.to_owned()))
}

/// Notes each distinct object in `objects`, due at `due_ms`.
pub(crate) fn note<'a>(t: &mut Txn, objects: impl IntoIterator<Item = &'a str>, due_ms: i64) -> usize {
    let distinct: BTreeSet<&str> = objects.into_iter().collect();
    for object in &distinct {
        t.put(key(due_ms, object), Vec::new());
    }
    distinct.len()
}

/// The counter that records how far the bucket sweep has checked.
const SWEPT_TO: &[u8] = b"gc-swept-to";

impl Catalog {
    /// Up to `limit` notes due at or before `now_ms`, oldest first.
    pub async fn gc_due(&self, now_ms: i64, limit: usize) -> Result<Vec<(i64, String)>, CatalogError> {
        read_only!(self, |t| {
            let end = key(now_ms.saturating_add(1), "");
            let rows = t.scan(&[keys::GC], &end, limit, false).await?;
            rows.iter().map(|(k, _)| decode_key(k)).collect()
        })
    }

    /// Notes `objects` for collection at `due_ms` (the bucket sweep's finds).
    pub async fn gc_note(&self, objects: &[String], due_ms: i64) -> Result<(), CatalogError> {
        for chunk in objects.chunks(self.budget()) {
            transact!(self, |t| {
                note(t, chunk.iter().map(String::as_str), due_ms);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Removes notes that were dealt with.
    pub async fn gc_forget(&self, notes: &[(i64, String)]) -> Result<(), CatalogError> {
        for chunk in notes.chunks(self.budget()) {
            transact!(self, |t| {
                for (due, object) in chunk {
                    t.delete(key(*due, object));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// For each `(topic id, partition, last offset)` an object's footer
    /// lists, whether the index entry there still points into `object`.
    pub async fn references(&self, object: &str, runs: &[(u64, u32, i64)]) -> Result<usize, CatalogError> {
        read_only!(self, |t| {
            let keys: Vec<Vec<u8>> = runs.iter().map(|(id, p, last)| segment::key(*id, *p, *last)).collect();
            let mut live = 0;
            for chunk in keys.chunks(1024) {
                for (k, v) in chunk.iter().zip(t.batch_get(chunk).await?) {
                    if let Some(v) = v {
                        let s = Segment::decode(&v).map_err(|e| corrupt(k, e))?;
                        live += usize::from(s.object == object);
                    }
                }
            }
            Ok(live)
        })
    }

    /// How far (object creation time, ms) the bucket sweep has checked.
    pub async fn gc_swept_to(&self) -> Result<i64, CatalogError> {
        let mut key = vec![keys::COUNTER];
        key.extend_from_slice(SWEPT_TO);
        read_only!(self, |t| {
            Ok(match t.get(&key).await? {
                Some(raw) => {
                    i64::from_be_bytes(raw[..].try_into().map_err(|_| corrupt(&key, CodecError::Invalid("counter")))?)
                }
                None => 0,
            })
        })
    }

    pub async fn set_gc_swept_to(&self, ms: i64) -> Result<(), CatalogError> {
        let mut key = vec![keys::COUNTER];
        key.extend_from_slice(SWEPT_TO);
        transact!(self, |t| {
            t.put(key.clone(), ms.to_be_bytes().to_vec());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::tests::catalog;

    #[tokio::test]
    async fn notes_come_due_in_order_and_are_forgotten() {
        let (_d, c) = catalog().await;
        c.gc_note(&["data/b".into(), "data/a".into()], 20).await.unwrap();
        c.gc_note(&["data/c".into()], 10).await.unwrap();
        assert!(c.gc_due(9, 10).await.unwrap().is_empty());
        assert_eq!(c.gc_due(10, 10).await.unwrap(), vec![(10, "data/c".to_string())]);
        let all = c.gc_due(100, 10).await.unwrap();
        assert_eq!(all, vec![(10, "data/c".into()), (20, "data/a".into()), (20, "data/b".into())]);
        assert_eq!(c.gc_due(100, 2).await.unwrap().len(), 2);
        c.gc_forget(&all[..2]).await.unwrap();
        assert_eq!(c.gc_due(100, 10).await.unwrap(), vec![(20, "data/b".to_string())]);
        assert_eq!(c.gc_swept_to().await.unwrap(), 0);
        c.set_gc_swept_to(1234).await.unwrap();
        assert_eq!(c.gc_swept_to().await.unwrap(), 1234);
    }
}
