//! The write-ahead log's entry layout:
//!
//! ```text
//! length u32 | CRC32C u32 (of the body) | body
//! body = topic id u64 | partition u32 | record batch (base offset stamped)
//! ```
//!
//! A file is a sequence of entries. Reading stops at the first entry that
//! is incomplete or fails its checks: a torn tail, which is cut off.

use bytes::Bytes;
use silt_wire::Batch;

const ENTRY_HEAD: usize = 8;
const BODY_HEAD: usize = 12;

/// One entry: a batch of a partition.
#[derive(Debug, Clone)]
pub struct Entry {
    pub topic_id: u64,
    pub partition: u32,
    pub batch: Batch,
}

/// The bytes an entry takes, for a batch of `batch_len` bytes.
pub fn entry_len(batch_len: usize) -> usize {
    ENTRY_HEAD + BODY_HEAD + batch_len
}

/// Appends one entry to `out`, copying the batch once.
pub fn encode(topic_id: u64, partition: u32, batch: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; BODY_HEAD];
    head[..8].copy_from_slice(&topic_id.to_be_bytes());
    head[8..].copy_from_slice(&partition.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), batch);
    out.extend_from_slice(&((BODY_HEAD + batch.len()) as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(batch);
}

/// Every whole, valid entry from the start of `data`, and how many bytes
/// they take: anything after that is a torn or corrupt tail.
pub fn decode(data: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos + ENTRY_HEAD <= data.len() {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(body) = pos.checked_add(ENTRY_HEAD + len).and_then(|end| data.get(pos + ENTRY_HEAD..end)) else {
            break;
        };
        if len < BODY_HEAD || crc32c::crc32c(body) != crc {
            break;
        }
        let topic_id = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        let partition = u32::from_be_bytes(body[8..12].try_into().expect("4 bytes"));
        let Ok(batch) = Batch::validate(Bytes::copy_from_slice(&body[BODY_HEAD..])) else { break };
        entries.push(Entry { topic_id, partition, batch });
        pos += ENTRY_HEAD + len;
    }
    (entries, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use silt_wire::{BatchBuilder, Compression};

    pub(crate) fn entry(topic_id: u64, partition: u32, base: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(0, None, format!("v{base}").as_bytes(), &[]);
        let batch = b.build().unwrap().with_base_offset(base);
        let mut out = Vec::new();
        encode(topic_id, partition, batch.bytes(), &mut out);
        assert_eq!(out.len(), entry_len(batch.bytes().len()));
        out
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_cut_at_every_byte() {
        let data = [entry(1, 0, 0), entry(1, 0, 1), entry(2, 5, 0)].concat();
        let (entries, len) = decode(&data);
        assert_eq!(len, data.len());
        let got: Vec<(u64, u32, i64)> =
            entries.iter().map(|e| (e.topic_id, e.partition, e.batch.header().base_offset)).collect();
        assert_eq!(got, vec![(1, 0, 0), (1, 0, 1), (2, 5, 0)]);
        let first = entry(1, 0, 0).len();
        for cut in 0..data.len() {
            let (entries, len) = decode(&data[..cut]);
            assert!(len <= cut);
            assert_eq!(entries.len(), cut / first, "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupt_entry_ends_the_file() {
        let first = entry(1, 0, 0);
        let mut data = [first.clone(), entry(1, 0, 1), entry(1, 0, 2)].concat();
        data[first.len() + 20] ^= 0xff;
        let (entries, len) = decode(&data);
        assert_eq!(entries.len(), 1);
        assert_eq!(len, first.len());
        // A length that runs past the end is a torn tail, not a panic.
        let mut huge = first.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge).1, 0);
    }
}
