//! Partition leases: `0x04 | topic id | partition -> Lease`.

use crate::codec::{CodecError, Reader, Writer};
use bytes::BufMut;

use super::keys;

/// Who may write a partition, until when, and under which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The owning agent's id.
    pub owner: String,
    /// Where clients reach the owner.
    pub address: String,
    /// Increases on every change of owner; index commits check it.
    pub epoch: u64,
    /// Milliseconds since the epoch after which others may take the lease.
    pub expires_ms: i64,
}

pub fn key(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::LEASE, topic_id, partition)
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.owner.len() + self.address.len());
        v.put_u8(1);
        v.put_str(&self.owner);
        v.put_str(&self.address);
        v.put_u64(self.epoch);
        v.put_i64(self.expires_ms);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let l = Lease {
            owner: r.string("owner")?,
            address: r.string("address")?,
            epoch: r.u64("epoch")?,
            expires_ms: r.i64("expiry")?,
        };
        r.finish()?;
        Ok(l)
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let l = Lease { owner: "a1".into(), address: "127.0.0.1:7447".into(), epoch: 4, expires_ms: 99 };
        assert_eq!(Lease::decode(&l.encode()).unwrap(), l);
        assert!(l.is_live(98) && !l.is_live(99));
    }
}
