//! Topic records: `0x01 | name -> Topic`.

use crate::codec::{CodecError, Reader};
use bytes::BufMut;

use super::keys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// Unique for all time, so a re-created topic never sees the old one's data.
    pub id: u64,
    pub partitions: u32,
    pub created_ms: i64,
}

pub fn key(name: &str) -> Vec<u8> {
    let mut key = vec![keys::TOPIC];
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn name_from_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[keys::TOPIC])?).ok()
}

impl Topic {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.put_u8(1);
        v.put_u64(self.id);
        v.put_u32(self.partitions);
        v.put_i64(self.created_ms);
        v
    }

    pub fn decode(name: &str, value: &[u8]) -> Result<Topic, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let topic = Topic {
            name: name.to_owned(),
            id: r.u64("topic id")?,
            partitions: r.u32("partitions")?,
            created_ms: r.i64("created")?,
        };
        r.finish()?;
        Ok(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Topic { name: "logs".into(), id: 3, partitions: 12, created_ms: 1_700_000_000_000 };
        assert_eq!(Topic::decode("logs", &t.encode()).unwrap(), t);
        assert_eq!(name_from_key(&key("logs")), Some("logs"));
        assert!(Topic::decode("logs", &t.encode()[..5]).is_err());
    }
}
