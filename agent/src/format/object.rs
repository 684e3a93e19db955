//! The object layout: one object per flush, holding every flushed
//! partition's batches, grouped by partition, then a footer index.
//!
//! ```text
//! [batches of partition A][batches of partition B]...
//! footer entry, per partition run (52 bytes):
//!   topic id u64 | partition u32 | start u64 | len u64 | base offset i64 | last offset i64 | max timestamp i64
//! trailer (16 bytes): entry count u32 | CRC32C of the footer entries u32 | magic "SILTOBJ1"
//! ```
//!
//! Batches keep their own CRCs; the footer lets tools and the compactor
//! read an object without the metadata store.

use bytes::{BufMut, Bytes, BytesMut};

pub const MAGIC: &[u8; 8] = b"SILTOBJ1";
const ENTRY_LEN: usize = 52;
pub const TRAILER_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic_id: u64,
    pub partition: u32,
    pub start: u64,
    pub len: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// A built object: its bytes as the chunks they were given in (each batch
/// its own, shared with whoever else holds it), the footer last. It is
/// uploaded as these chunks, and kept as them for tail reads: no buffer
/// the size of the object is ever filled.
#[derive(Debug, Clone, Default)]
pub struct Object {
    chunks: Vec<Bytes>,
    /// Where each chunk starts in the object.
    starts: Vec<usize>,
    len: usize,
}

impl Object {
    fn push(&mut self, chunk: Bytes) {
        self.starts.push(self.len);
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The object as a PUT's body: its chunks, not copied.
    pub fn payload(&self) -> object_store::PutPayload {
        self.chunks.iter().cloned().collect()
    }

    /// The object in one buffer (a copy).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Bytes {
        self.chunks.concat().into()
    }

    /// The bytes in `start..end` as slices of the chunks, not copied; None
    /// past the end.
    pub fn range(&self, start: usize, end: usize) -> Option<Vec<Bytes>> {
        if start > end || end > self.len {
            return None;
        }
        // The chunk holding `start`: the last one starting at or before it.
        let first = self.starts.partition_point(|&s| s <= start).saturating_sub(1);
        let mut out = Vec::new();
        for (chunk, &at) in self.chunks.iter().zip(&self.starts).skip(first) {
            if at >= end {
                break;
            }
            let (from, to) = (start.saturating_sub(at), (end - at).min(chunk.len()));
            if from < to {
                out.push(chunk.slice(from..to));
            }
        }
        Some(out)
    }
}

/// Builds an object: append each partition's run of batches, then `finish`.
#[derive(Default)]
pub struct Builder {
    data: Object,
    entries: Vec<Entry>,
}

impl Builder {
    /// Appends one batch of a partition. Consecutive batches of the same
    /// partition form one run (one footer entry, one index entry).
    pub fn push(&mut self, topic_id: u64, partition: u32, batch: &silt_wire::Batch) {
        let start = self.data.len() as u64;
        self.data.push(batch.bytes().clone());
        let h = batch.header();
        match self.entries.last_mut() {
            Some(e) if e.topic_id == topic_id && e.partition == partition && e.last_offset + 1 == h.base_offset => {
                e.len += batch.bytes().len() as u64;
                e.last_offset = batch.last_offset();
                e.max_timestamp = e.max_timestamp.max(h.max_timestamp);
            }
            _ => self.entries.push(Entry {
                topic_id,
                partition,
                start,
                len: batch.bytes().len() as u64,
                base_offset: h.base_offset,
                last_offset: batch.last_offset(),
                max_timestamp: h.max_timestamp,
            }),
        }
    }

    /// Appends one batch of a key-compacted run: it continues the
    /// partition's run when it comes after it, gaps allowed.
    pub fn push_sparse(&mut self, topic_id: u64, partition: u32, batch: &silt_wire::Batch) {
        let h = batch.header();
        match self.entries.last_mut() {
            Some(e) if e.topic_id == topic_id && e.partition == partition && e.last_offset < h.base_offset => {
                e.len += batch.bytes().len() as u64;
                e.last_offset = batch.last_offset();
                e.max_timestamp = e.max_timestamp.max(h.max_timestamp);
                self.data.push(batch.bytes().clone());
            }
            _ => self.push(topic_id, partition, batch),
        }
    }

    pub fn finish(mut self) -> (Object, Vec<Entry>) {
        let mut footer = BytesMut::with_capacity(self.entries.len() * ENTRY_LEN + TRAILER_LEN);
        for e in &self.entries {
            footer.put_u64(e.topic_id);
            footer.put_u32(e.partition);
            footer.put_u64(e.start);
            footer.put_u64(e.len);
            footer.put_i64(e.base_offset);
            footer.put_i64(e.last_offset);
            footer.put_i64(e.max_timestamp);
        }
        let crc = crc32c::crc32c(&footer);
        footer.put_u32(self.entries.len() as u32);
        footer.put_u32(crc);
        footer.put_slice(MAGIC);
        self.data.push(footer.freeze());
        (self.data, self.entries)
    }
}

/// Reads the footer of a whole object.
pub fn read_footer(object: &[u8]) -> Result<Vec<Entry>, String> {
    read_tail(object, object.len() as u64)
}

/// How many bytes at the end of an object hold its footer and trailer,
/// from its last [`TRAILER_LEN`] bytes (or more).
pub fn tail_len(tail: &[u8]) -> Result<usize, String> {
    if tail.len() < TRAILER_LEN || &tail[tail.len() - 8..] != MAGIC {
        return Err("not a silt object (no trailer)".into());
    }
    let t = tail.len() - TRAILER_LEN;
    let count = u32::from_be_bytes(tail[t..t + 4].try_into().expect("4 bytes")) as usize;
    count.checked_mul(ENTRY_LEN).and_then(|n| n.checked_add(TRAILER_LEN)).ok_or_else(|| "footer too long".into())
}

/// Reads the footer from an object's last bytes (`tail`, at least its
/// [`tail_len`]), given the object's whole length.
pub fn read_tail(tail: &[u8], object_len: u64) -> Result<Vec<Entry>, String> {
    let need = tail_len(tail)?;
    if need > tail.len() || need as u64 > object_len {
        return Err("footer longer than the object".into());
    }
    let t = tail.len() - TRAILER_LEN;
    let crc = u32::from_be_bytes(tail[t + 4..t + 8].try_into().expect("4 bytes"));
    let footer = &tail[tail.len() - need..t];
    if crc32c::crc32c(footer) != crc {
        return Err("footer CRC mismatch".into());
    }
    let data_len = object_len - need as u64;
    let mut entries = Vec::with_capacity(footer.len() / ENTRY_LEN);
    for raw in footer.chunks_exact(ENTRY_LEN) {
        let u64_at = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
        let e = Entry {
            topic_id: u64_at(0),
            partition: u32::from_be_bytes(raw[8..12].try_into().expect("4 bytes")),
            start: u64_at(12),
            len: u64_at(20),
            base_offset: u64_at(28) as i64,
            last_offset: u64_at(36) as i64,
            max_timestamp: u64_at(44) as i64,
        };
        if e.start.checked_add(e.len).is_none_or(|end| end > data_len) {
            return Err("footer entry points past the data".into());
        }
        entries.push(e);
    }
    Ok(entries)
}

/// Where objects live in the store.
pub const PREFIX: &str = "data/";

/// A new object's name, unique for all time: the writer's id, its creation
/// time and a sequence number, behind a short hash that spreads keys across
/// an S3 bucket's partitions.
pub fn name(agent_id: &str, now_ms: i64, seq: u64) -> String {
    let now = now_ms.max(0);
    let suffix: u32 = rand::random();
    let stem = format!("{agent_id}-{now:013}-{seq:010}-{suffix:08x}");
    let spread = crc32c::crc32c(stem.as_bytes()) & 0xffff;
    format!("{PREFIX}{spread:04x}/{stem}.silt")
}

/// How the names of segments compaction writes end (flush objects end in `.silt`).
const SEGMENT_SUFFIX: &str = ".seg.silt";

/// A compacted segment's name: as [`name`], marked so it is never compacted again.
pub fn segment_name(agent_id: &str, now_ms: i64, seq: u64) -> String {
    let flush = name(agent_id, now_ms, seq);
    format!("{}{SEGMENT_SUFFIX}", flush.strip_suffix(".silt").unwrap_or(&flush))
}

/// Whether compaction wrote this object.
pub fn is_segment(name: &str) -> bool {
    name.ends_with(SEGMENT_SUFFIX)
}

/// When an object was created, from its [`name`] (None: not a name silt gave).
pub fn created_ms(name: &str) -> Option<i64> {
    let stem = name.strip_prefix(PREFIX)?.split_once('/')?.1.strip_suffix(".silt")?;
    let stem = stem.strip_suffix(".seg").unwrap_or(stem);
    let mut parts = stem.rsplitn(4, '-');
    let (_suffix, _seq, ms, _agent) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    ms.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_wire::{BatchBuilder, Compression};

    fn batch(base: i64, n: usize) -> silt_wire::Batch {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..n {
            b.push(i as i64, None, b"v", &[]);
        }
        b.build().unwrap().with_base_offset(base)
    }

    #[test]
    fn runs_group_by_partition_and_the_footer_round_trips() {
        let mut o = Builder::default();
        o.push(1, 0, &batch(0, 2));
        o.push(1, 0, &batch(2, 3));
        o.push(1, 1, &batch(10, 1));
        let (object, entries) = o.finish();
        let bytes = object.to_bytes();
        assert_eq!(object.len(), bytes.len());
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].base_offset, entries[0].last_offset), (0, 4));
        assert_eq!((entries[1].base_offset, entries[1].last_offset), (10, 10));
        assert_eq!(read_footer(&bytes).unwrap(), entries);
        let run = bytes.slice(entries[0].start as usize..(entries[0].start + entries[0].len) as usize);
        let offsets: Vec<i64> = silt_wire::batch::split(&run).map(|b| b.unwrap().header().base_offset).collect();
        assert_eq!(offsets, vec![0, 2]);
        for cut in 0..bytes.len() {
            let _ = read_footer(&bytes[..cut]);
        }
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(read_footer(&bad).is_err());
        // From the tail alone.
        let need = tail_len(&bytes[bytes.len() - TRAILER_LEN..]).unwrap();
        assert_eq!(read_tail(&bytes[bytes.len() - need..], bytes.len() as u64).unwrap(), entries);
        assert!(read_tail(&bytes[bytes.len() - need + 1..], bytes.len() as u64).is_err());
    }

    #[test]
    fn a_range_is_slices_of_the_chunks() {
        let mut o = Object::default();
        for chunk in ["abc", "", "defg", "hi"] {
            o.push(Bytes::from(chunk));
        }
        let cases = [
            ((0, 9), Some(vec!["abc", "defg", "hi"])),
            ((0, 3), Some(vec!["abc"])),
            ((3, 7), Some(vec!["defg"])),
            ((2, 8), Some(vec!["c", "defg", "h"])),
            ((4, 5), Some(vec!["e"])),
            ((9, 9), Some(vec![])),
            ((5, 4), None),
            ((0, 10), None),
        ];
        for ((start, end), want) in cases {
            let got = o.range(start, end);
            let got: Option<Vec<&str>> =
                got.as_ref().map(|v| v.iter().map(|b| std::str::from_utf8(b).unwrap()).collect());
            assert_eq!(got, want, "{start}..{end}");
        }
        assert_eq!(&o.to_bytes()[..], b"abcdefghi");
    }

    #[test]
    fn names_are_unique_spread_and_dated() {
        let a = name("agent-7", 1_700_000_000_123, 1);
        assert_ne!(a, name("agent-7", 1_700_000_000_123, 1));
        assert!(a.starts_with(PREFIX) && a.ends_with(".silt"));
        assert_eq!(created_ms(&a), Some(1_700_000_000_123));
        assert!(!is_segment(&a));
        let s = segment_name("agent-7", 1_700_000_000_456, 2);
        assert!(is_segment(&s) && s.starts_with(PREFIX));
        assert_eq!(created_ms(&s), Some(1_700_000_000_456));
        for other in ["data/x.silt", "other/00ff/a-1-2-3.silt", "data/00ff/a-b-c-d.silt", "data/00ff/a-1-2-3.txt"] {
            assert_eq!(created_ms(other), None, "{other}");
        }
    }
}
