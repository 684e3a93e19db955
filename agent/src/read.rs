//! The read path: find the index entry holding an offset (in memory, else
//! in the metadata store), read its byte range (recent objects from memory,
//! else a ranged GET), and return whole, CRC-checked batches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use silt_metadata::catalog::Segment;
use silt_metadata::Catalog;

use crate::cache::ReadCache;
use crate::error::ServiceError;
use crate::partition::Partition;

/// Recently written objects, kept whole in memory up to a byte budget:
/// consumers near the tail read from here instead of the object store.
pub struct RecentObjects {
    inner: Mutex<Recent>,
    capacity: usize,
}

#[derive(Default)]
struct Recent {
    objects: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl RecentObjects {
    pub fn new(capacity: usize) -> Self {
        RecentObjects { inner: Default::default(), capacity }
    }

    pub fn insert(&self, name: String, data: Bytes) {
        if data.len() > self.capacity {
            return;
        }
        let mut r = self.inner.lock().expect("recent objects lock");
        r.bytes += data.len();
        r.objects.insert(name.clone(), data);
        r.order.push_back(name);
        while r.bytes > self.capacity {
            let Some(old) = r.order.pop_front() else {
                break;
            };
            if let Some(d) = r.objects.remove(&old) {
                r.bytes -= d.len();
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<Bytes> {
        self.inner.lock().expect("recent objects lock").objects.get(name).cloned()
    }
}

pub struct ReadPath {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Catalog,
    pub recent: Arc<RecentObjects>,
    pub cache: Arc<ReadCache>,
}

/// How many index entries one metadata lookup brings into the cache.
const INDEX_PAGE: usize = 64;

impl ReadPath {
    /// Whole batches from `offset` on, below `high_watermark`, about
    /// `max_bytes` in all (at least one batch when any is readable).
    pub async fn read(
        &self,
        part: &Partition,
        offset: i64,
        max_bytes: usize,
        high_watermark: i64,
    ) -> Result<Bytes, ServiceError> {
        let mut out = BytesMut::new();
        let mut at = offset;
        while at < high_watermark && out.len() < max_bytes {
            let segment = self.segment(part, at).await?;
            let (mut data, key) = self.range(&segment).await?;
            if let Some(key) = key {
                // Bytes from the read cache: if they fail their checks, drop
                // them and read the object store instead.
                if silt_wire::batch::split(&data).any(|b| b.is_err()) {
                    tracing::warn!(object = %segment.object, "a cached range failed its CRC; reading it again");
                    self.cache.remove(&key);
                    data = self.fetch(&segment, key).await?;
                }
            }
            let corrupt = |what: String| {
                ServiceError::Corrupt(format!(
                    "object {} bytes {}+{}: {what}",
                    segment.object, segment.start, segment.len
                ))
            };
            // The CRC does not cover a batch's base offset, so check that the
            // run starts where the index says and has no gap or overlap.
            let mut expected = segment.base_offset;
            for batch in silt_wire::batch::split(&data) {
                let batch = batch.map_err(|e| corrupt(e.to_string()))?;
                if batch.header().base_offset != expected {
                    let base = batch.header().base_offset;
                    return Err(corrupt(format!("a batch starts at offset {base} where {expected} was due")));
                }
                expected = batch.last_offset() + 1;
                if batch.last_offset() < at {
                    continue;
                }
                if !out.is_empty() && out.len() + batch.bytes().len() > max_bytes {
                    return Ok(out.freeze());
                }
                out.extend_from_slice(batch.bytes());
                at = batch.last_offset() + 1;
            }
            if at <= segment.last_offset {
                return Err(ServiceError::Corrupt(format!(
                    "object {} ends before offset {} that its index entry promises",
                    segment.object, segment.last_offset
                )));
            }
        }
        Ok(out.freeze())
    }

    async fn segment(&self, part: &Partition, offset: i64) -> Result<Segment, ServiceError> {
        if let Some(s) = part.cached_segment(offset) {
            return Ok(s);
        }
        let found = self.catalog.segments(part.topic_id, part.partition, offset, INDEX_PAGE).await?;
        let first = found.first().cloned().filter(|s| s.base_offset <= offset);
        part.remember(found);
        first.ok_or_else(|| {
            ServiceError::Corrupt(format!(
                "the index has no entry for {}/{} offset {offset}",
                part.topic, part.partition
            ))
        })
    }

    /// The segment's bytes, and the read-cache key when they came from the read cache.
    async fn range(&self, s: &Segment) -> Result<(Bytes, Option<String>), ServiceError> {
        let (start, end) = (s.start, s.start + s.len);
        if let Some(obj) = self.recent.get(&s.object) {
            if end as usize <= obj.len() {
                self.cache.recent_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok((obj.slice(start as usize..end as usize), None));
            }
        }
        let key = format!("{}#{start}+{}", s.object, s.len);
        if let Some(hit) = self.cache.get(&key).await {
            return Ok((hit, Some(key)));
        }
        Ok((self.fetch(s, key).await?, None))
    }

    /// A ranged GET, remembered in the read cache.
    async fn fetch(&self, s: &Segment, key: String) -> Result<Bytes, ServiceError> {
        self.cache.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = self
            .store
            .get_range(&Path::from(s.object.as_str()), s.start..s.start + s.len)
            .await
            .map_err(ServiceError::Storage)?;
        self.cache.insert(key, data.clone());
        Ok(data)
    }
}
