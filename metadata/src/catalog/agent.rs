//! Agent registrations: `0x05 | agent id -> Registration`.

use crate::codec::{CodecError, Reader, Writer};
use bytes::BufMut;

use super::keys;

/// A live agent, as it last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    /// Where clients reach it.
    pub address: String,
    pub started_ms: i64,
    /// Its last heartbeat: it counts as live until this plus the lease TTL.
    pub heartbeat_ms: i64,
}

pub fn key(id: &str) -> Vec<u8> {
    let mut key = vec![keys::AGENT];
    key.extend_from_slice(id.as_bytes());
    key
}

pub fn id_from_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[keys::AGENT])?).ok()
}

impl Registration {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + self.address.len());
        v.put_u8(1);
        v.put_str(&self.address);
        v.put_i64(self.started_ms);
        v.put_i64(self.heartbeat_ms);
        v
    }

    pub fn decode(id: &str, value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let reg = Registration {
            id: id.to_owned(),
            address: r.string("address")?,
            started_ms: r.i64("started")?,
            heartbeat_ms: r.i64("heartbeat")?,
        };
        r.finish()?;
        Ok(reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = Registration { id: "a".into(), address: "10.0.0.1:7447".into(), started_ms: 5, heartbeat_ms: 9 };
        assert_eq!(Registration::decode("a", &r.encode()).unwrap(), r);
        assert_eq!(id_from_key(&key("a")), Some("a"));
    }
}
