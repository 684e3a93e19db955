//! The key layout, in one place. The first byte of every key names its
//! kind; these ordinals are stable and never reused.
//!
//! ```text
//! 0x01 topic             0x01 | name                                   -> topic::Topic
//! 0x02 partition state   0x02 | topic id u64 | partition u32           -> partition::PartitionState
//! 0x03 segment index     0x03 | topic id | partition | last offset     -> segment::Segment
//! 0x04 partition lease   0x04 | topic id | partition                   -> lease::Lease
//! 0x05 agent             0x05 | agent id                               -> agent::Registration
//! 0x06 consumer group    0x06 | group name                             -> group::GroupRecord
//! 0x07 committed offset  0x07 | group | 0x00 | topic id | partition   -> offset::OffsetRecord
//! 0x08 collection note   0x08 | due ms u64 | object name           -> () (gc)
//! 0x09 producer state    0x09 | topic id | partition | producer id u64 -> producer::ProducerState
//! 0x0a change marker     0x0a | writer id                              -> change token u64
//! 0x0b connector         0x0b | name                                   -> connector::ConnectorRecord
//! 0x0c connect worker    0x0c | worker id                              -> expiry ms i64
//! 0x0d token             0x0d | principal                              -> auth::TokenRecord
//! 0x0e acl               0x0e | the ACL's fields (see auth)            -> ()
//! 0x0f counter           0x0f | name                                   -> u64
//! ```
//!
//! Integers are big-endian; offsets have their sign bit flipped so that key
//! order is numeric order.

pub const TOPIC: u8 = 0x01;
pub const PARTITION: u8 = 0x02;
pub const SEGMENT: u8 = 0x03;
pub const LEASE: u8 = 0x04;
pub const AGENT: u8 = 0x05;
pub const GROUP: u8 = 0x06;
pub const OFFSET: u8 = 0x07;
pub const GC: u8 = 0x08;
pub const PRODUCER: u8 = 0x09;
pub const CHANGE: u8 = 0x0a;
pub const CONNECTOR: u8 = 0x0b;
pub const CONNECT_WORKER: u8 = 0x0c;
pub const TOKEN: u8 = 0x0d;
pub const ACL: u8 = 0x0e;
pub const COUNTER: u8 = 0x0f;

/// `kind | topic id | partition`, the prefix of every per-partition key.
pub fn partition_prefix(kind: u8, topic_id: u64, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + 4 + 8);
    key.push(kind);
    key.extend_from_slice(&topic_id.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// `kind | topic id`: every per-partition key of one topic starts with it.
pub fn topic_prefix(kind: u8, topic_id: u64) -> Vec<u8> {
    let mut key = vec![kind];
    key.extend_from_slice(&topic_id.to_be_bytes());
    key
}

/// The smallest key greater than every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        let p = partition_prefix(SEGMENT, 7, 3);
        let mut inside = p.clone();
        inside.extend_from_slice(&[0xff; 8]);
        assert!(inside < prefix_end(&p));
        assert!(partition_prefix(SEGMENT, 7, 4) >= prefix_end(&p));
    }
}
