//! The read path: find the index entry holding an offset (in memory, else
//! in the metadata store), read its byte range (recent objects from memory,
//! else the read cache, else a ranged GET), and return whole, CRC-checked
//! batches.
//!
//! - [`index`]: each partition's cache of its segment index.
//! - [`recent`]: recently written objects, whole, in memory.
//! - [`cache`]: the foyer read cache (memory + cache-dir disks).
//!
//! The log below writes into these as it commits (new index entries, new
//! objects); readers only read.

pub mod cache;
pub mod index;
pub mod recent;

use std::sync::Arc;

use bytes::Bytes;
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use silt_metadata::catalog::Segment;
use silt_metadata::Catalog;

use crate::error::ServiceError;
use crate::format::object;
pub use crate::metrics::ReadStats;
pub use cache::ReadCache;
pub use index::SegmentIndex;
pub use recent::RecentObjects;

#[derive(Clone)]
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
        part: &SegmentIndex,
        offset: i64,
        max_bytes: usize,
        high_watermark: i64,
    ) -> Result<Vec<Bytes>, ServiceError> {
        // The reply is slices of the ranges read, shared with the caches,
        // not copied: the frontend writes the slices as they are.
        let mut out = Vec::new();
        let mut len = 0usize;
        let mut at = offset;
        let mut looked_again = false;
        while at < high_watermark && len < max_bytes {
            let segment = self.segment(part, at).await?;
            let (pieces, batches) = match self.segment_range(&segment).await {
                // The range was rewritten elsewhere (compaction) and its old
                // object collected: the index knows where it is now.
                Err(ServiceError::Storage(e))
                    if matches!(*e, object_store::Error::NotFound { .. }) && !looked_again =>
                {
                    tracing::debug!(object = %segment.object, "an object is gone; looking its range up again");
                    part.forget_object(&segment.object);
                    looked_again = true;
                    continue;
                }
                other => other?,
            };
            looked_again = false;
            // The run ends at the entry's last offset, which holds `at`: this
            // moves `at` past it unless the reply fills up first.
            // The batches are slices of `pieces`: kept ones that are back to
            // back in a piece go out as one slice of it.
            let mut kept: Vec<&Bytes> = Vec::new();
            let mut full = false;
            for batch in &batches {
                if batch.last_offset() < at {
                    continue;
                }
                if len > 0 && len + batch.bytes().len() > max_bytes {
                    full = true;
                    break;
                }
                kept.push(batch.bytes());
                len += batch.bytes().len();
                at = batch.last_offset() + 1;
            }
            out.extend(joined(&pieces, &kept));
            if full {
                break;
            }
        }
        Ok(out)
    }

    /// A segment's batches, whole and CRC-checked (see [`check_run`]).
    /// Bytes from the read cache that fail their checks are dropped and
    /// read from the object store instead.
    pub async fn segment_batches(&self, segment: &Segment) -> Result<Vec<silt_wire::Batch>, ServiceError> {
        Ok(self.segment_range(segment).await?.1)
    }

    /// A segment's bytes (in pieces), and its batches as checked slices of
    /// them. Bytes from the object store have their CRCs computed before
    /// they enter the read cache; bytes already in memory (recent objects,
    /// made of produced batches whose CRCs were checked, and the cache's
    /// memory tier) or on the cache's disk (foyer checksums each entry and
    /// reads a damaged one as a miss) are not hashed again: the CRCs were a
    /// twentieth of the agent's CPU in a catch-up read served from cache.
    async fn segment_range(&self, s: &Segment) -> Result<(Vec<Bytes>, Vec<silt_wire::Batch>), ServiceError> {
        let (start, end) = (s.start, s.start + s.len);
        if let Some(pieces) = self.recent.range(&s.object, start as usize, end as usize) {
            self.cache.count_recent_hit();
            let batches = check_run(s, &pieces, Crc::Checked)?;
            return Ok((pieces, batches));
        }
        let key = format!("{}#{start}+{}", s.object, s.len);
        if let Some(hit) = self.cache.get(&key).await {
            let pieces = vec![hit];
            match check_run(s, &pieces, Crc::Checked) {
                Ok(batches) => return Ok((pieces, batches)),
                Err(e) => {
                    tracing::warn!(object = %s.object, error = %e, "a cached range failed its checks; reading it again");
                    self.cache.remove(&key);
                }
            }
        }
        let pieces = vec![self.fetch(s).await?];
        let batches = check_run(s, &pieces, Crc::Compute)?;
        self.cache.insert(key, pieces[0].clone());
        Ok((pieces, batches))
    }

    async fn segment(&self, index: &SegmentIndex, offset: i64) -> Result<Segment, ServiceError> {
        if let Some(s) = index.cached(offset) {
            return Ok(s);
        }
        let (topic_id, partition) = index.id();
        let found = self.catalog.segments(topic_id, partition, offset, INDEX_PAGE).await?;
        let first = found.first().cloned().filter(|s| s.base_offset <= offset);
        index.remember(found);
        first.ok_or_else(|| {
            ServiceError::Corrupt(format!("the index has no entry for {} offset {offset}", index.name()))
        })
    }

    /// A ranged GET.
    async fn fetch(&self, s: &Segment) -> Result<Bytes, ServiceError> {
        self.cache.count_get();
        self.store
            .get_range(&Path::from(s.object.as_str()), s.start..s.start + s.len)
            .await
            .map_err(|e| ServiceError::Storage(Arc::new(e)))
    }
}

/// Whether [`check_run`] computes the batches' CRCs.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Crc {
    /// Bytes from the object store.
    Compute,
    /// Bytes that were checked before they were kept (headers, lengths and
    /// offsets are still read and checked).
    Checked,
}

/// `parts` in order, each run of them that lies back to back inside one of
/// `pieces` joined into one slice of that piece; a part in no piece as it is.
fn joined(pieces: &[Bytes], parts: &[&Bytes]) -> Vec<Bytes> {
    // Where a part sits: its piece and its span there. Parts come in the
    // pieces' order, so the search starts at the piece of the last one.
    let place = |part: &Bytes, from_piece: usize| {
        let at = part.as_ptr() as usize;
        let mut order = (from_piece..pieces.len()).chain(0..from_piece.min(pieces.len()));
        order.find_map(|i| {
            let from = at.checked_sub(pieces[i].as_ptr() as usize)?;
            (from + part.len() <= pieces[i].len()).then_some((i, from, from + part.len()))
        })
    };
    let mut out = Vec::new();
    let mut run: Option<(usize, usize, usize)> = None;
    let mut last_piece = 0;
    for part in parts {
        let found = place(part, last_piece);
        if let Some((i, _, _)) = found {
            last_piece = i;
        }
        match (run, found) {
            (Some((i, from, to)), Some((j, start, end))) if i == j && to == start => run = Some((i, from, end)),
            (_, found) => {
                if let Some((i, from, to)) = run.take() {
                    out.push(pieces[i].slice(from..to));
                }
                match found {
                    Some(span) => run = Some(span),
                    None => out.push((*part).clone()),
                }
            }
        }
    }
    if let Some((i, from, to)) = run {
        out.push(pieces[i].slice(from..to));
    }
    out
}

/// An index entry's bytes as batches: each whole and CRC-checked, the run
/// starting at the entry's base offset and ending at its last, without
/// overlaps, and without gaps except in key-compacted segments. The CRC
/// does not cover a batch's base offset, hence the offset checks.
fn check_run(segment: &Segment, pieces: &[Bytes], crc: Crc) -> Result<Vec<silt_wire::Batch>, ServiceError> {
    let place = || format!("object {} bytes {}+{}", segment.object, segment.start, segment.len);
    let gaps = object::is_segment(&segment.object);
    let mut expected = segment.base_offset;
    let mut out = Vec::new();
    let split = |p: &'_ Bytes| -> Vec<_> {
        match crc {
            Crc::Compute => silt_wire::batch::split(p).collect(),
            Crc::Checked => silt_wire::batch::split_validated(p).collect(),
        }
    };
    for batch in pieces.iter().flat_map(split) {
        let batch = batch.map_err(|source| ServiceError::CorruptBatch { at: place(), source })?;
        let base = batch.header().base_offset;
        if base != expected && !(gaps && base > expected) {
            return Err(ServiceError::Corrupt(format!(
                "{}: a batch starts at offset {base} where {expected} was due",
                place()
            )));
        }
        expected = batch.last_offset() + 1;
        out.push(batch);
    }
    if expected != segment.last_offset + 1 {
        return Err(ServiceError::Corrupt(format!(
            "{}: it ends before offset {} that its index entry promises",
            place(),
            segment.last_offset
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_slices_go_out_as_one() {
        let data = Bytes::from_static(b"aaabbbbcc");
        let more = Bytes::from(b"ddee".to_vec());
        let pieces = [data.clone(), more.clone()];
        let (a, b, c) = (data.slice(0..3), data.slice(3..7), data.slice(7..9));
        let (d, e) = (more.slice(0..2), more.slice(2..4));
        let other = Bytes::from(b"zz".to_vec());
        let cases: [(&[&Bytes], Vec<&[u8]>); 8] = [
            (&[], vec![]),
            (&[&b, &c], vec![b"bbbbcc"]),
            (&[&a, &b, &c], vec![b"aaabbbbcc"]),
            // Back to back across two pieces: one slice of each.
            (&[&b, &c, &d, &e], vec![b"bbbbcc", b"ddee"]),
            // Not back to back, or in no piece: as they are.
            (&[&a, &c], vec![b"aaa", b"cc"]),
            (&[&a, &other, &b], vec![b"aaa", b"zz", b"bbbb"]),
            (&[&e, &d], vec![b"ee", b"dd"]),
            // A later piece, then an earlier one: found either way.
            (&[&d, &a, &b], vec![b"dd", b"aaabbbb"]),
        ];
        for (parts, want) in cases {
            let got = joined(&pieces, parts);
            assert_eq!(got.iter().map(|b| &b[..]).collect::<Vec<_>>(), want, "{parts:?}");
        }
        assert_eq!(joined(&pieces, &[&a, &b])[0].as_ptr(), data.as_ptr(), "one slice, not a copy");
    }
}
