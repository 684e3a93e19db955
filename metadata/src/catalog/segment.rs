//! The segment index: `0x03 | topic id | partition | last offset -> Segment`.
//!
//! Keyed by the last offset a segment holds, so the first key at or after
//! `offset` is the segment that contains it.

use crate::codec::{ordered_i64, CodecError, Reader, Writer};
use bytes::BufMut;

use super::keys;

/// Where a run of one partition's batches lives in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base_offset: i64,
    pub last_offset: i64,
    pub object: String,
    /// Byte range of the batches inside the object.
    pub start: u64,
    pub len: u64,
    pub max_timestamp: i64,
}

pub fn prefix(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::SEGMENT, topic_id, partition)
}

pub fn key(topic_id: u64, partition: u32, last_offset: i64) -> Vec<u8> {
    let mut key = prefix(topic_id, partition);
    key.extend_from_slice(&ordered_i64(last_offset));
    key
}

impl Segment {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + self.object.len());
        v.put_u8(1);
        v.put_i64(self.base_offset);
        v.put_i64(self.last_offset);
        v.put_str(&self.object);
        v.put_u64(self.start);
        v.put_u64(self.len);
        v.put_i64(self.max_timestamp);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let s = Segment {
            base_offset: r.i64("base offset")?,
            last_offset: r.i64("last offset")?,
            object: r.string("object")?,
            start: r.u64("start")?,
            len: r.u64("len")?,
            max_timestamp: r.i64("max timestamp")?,
        };
        r.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keys_sort_by_last_offset() {
        let s =
            Segment { base_offset: 10, last_offset: 19, object: "o/1".into(), start: 5, len: 100, max_timestamp: 9 };
        assert_eq!(Segment::decode(&s.encode()).unwrap(), s);
        assert!(key(1, 0, 9) < key(1, 0, 10));
        assert!(key(1, 0, i64::MAX) < key(1, 1, 0));
    }
}
