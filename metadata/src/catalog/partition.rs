//! Partition state: `0x02 | topic id | partition -> PartitionState`.

use crate::codec::{CodecError, Reader};
use bytes::BufMut;

use super::keys;

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
