//! Agent registrations: `0x05 | agent id -> Registration`.
//!
//! An agent's registration is its session: it renews it with one write per
//! renewal interval, and every partition lease it holds is live for as long
//! as the registration is (see [`super::lease`]). Renewal costs the same
//! whatever the number of partitions.

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;
use bytes::BufMut;

use super::{change, corrupt, keys, scan_prefix, Catalog, Txn};

/// A live agent, as it last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    /// Where clients reach it.
    pub address: String,
    /// Where Kafka clients reach it (`host:port`), or empty when it has no Kafka listener.
    pub kafka_address: String,
    pub started_ms: i64,
    /// Its last renewal.
    pub heartbeat_ms: i64,
    /// Its session (and every lease it holds) lapses at this time unless renewed.
    pub expires_ms: i64,
}

/// How long a registration written by an older agent (without an expiry) lasts.
const LEGACY_TTL_MS: i64 = 10_000;

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
        let mut v = Vec::with_capacity(40 + self.address.len() + self.kafka_address.len());
        v.put_u8(3);
        v.put_str(&self.address);
        v.put_i64(self.started_ms);
        v.put_i64(self.heartbeat_ms);
        v.put_i64(self.expires_ms);
        v.put_str(&self.kafka_address);
        v
    }

    pub fn decode(id: &str, value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        let version = r.u8("version")?;
        if !(1..=3).contains(&version) {
            return Err(CodecError::Version(version));
        }
        let address = r.string("address")?;
        let started_ms = r.i64("started")?;
        let heartbeat_ms = r.i64("heartbeat")?;
        let expires_ms = match version {
            1 => heartbeat_ms.saturating_add(LEGACY_TTL_MS),
            _ => r.i64("expiry")?,
        };
        let kafka_address = if version >= 3 { r.string("kafka address")? } else { String::new() };
        r.finish()?;
        Ok(Registration { id: id.to_owned(), address, kafka_address, started_ms, heartbeat_ms, expires_ms })
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }
}

impl Catalog {
    /// Records (or renews) an agent's registration until `now_ms + ttl_ms`:
    /// one write, whatever the agent holds.
    pub async fn heartbeat(
        &self,
        id: &str,
        (address, kafka_address): (&str, &str),
        started_ms: i64,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Registration, CatalogError> {
        let reg = Registration {
            id: id.into(),
            address: address.into(),
            kafka_address: kafka_address.into(),
            started_ms,
            heartbeat_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
        };
        transact!(self, |t| {
            t.put(key(id), reg.encode());
            Ok(())
        })?;
        Ok(reg)
    }

    /// Removes an agent's registration and change marker (it is stopping).
    pub async fn deregister(&self, id: &str) -> Result<(), CatalogError> {
        transact!(self, |t| {
            t.delete(key(id));
            t.delete(change::key(id));
            Ok(())
        })
    }

    /// Every registered agent, live or not, by id.
    pub async fn agents(&self) -> Result<Vec<Registration>, CatalogError> {
        read_only!(self, |t| list(t).await)
    }
}

pub(crate) async fn list(t: &mut Txn) -> Result<Vec<Registration>, CatalogError> {
    scan_prefix(t, &[keys::AGENT])
        .await?
        .into_iter()
        .map(|(k, v)| {
            let id = id_from_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("agent id")))?;
            Registration::decode(id, &v).map_err(|e| corrupt(&k, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    #[test]
    fn round_trips_and_reads_the_old_layout() {
        let r = Registration {
            id: "a".into(),
            address: "10.0.0.1:7447".into(),
            kafka_address: "10.0.0.1:9092".into(),
            started_ms: 5,
            heartbeat_ms: 9,
            expires_ms: 19,
        };
        assert_eq!(Registration::decode("a", &r.encode()).unwrap(), r);
        assert_eq!(id_from_key(&key("a")), Some("a"));
        assert!(r.is_live(18) && !r.is_live(19));
        let mut v1 = vec![1u8];
        v1.put_str("x:1");
        v1.put_i64(5);
        v1.put_i64(9);
        assert_eq!(Registration::decode("a", &v1).unwrap().expires_ms, 9 + LEGACY_TTL_MS);
    }

    #[tokio::test]
    async fn agents_register_renew_and_deregister() {
        let (_d, c) = catalog().await;
        c.heartbeat("b", ("addr-b", ""), 1, 5, 100).await.unwrap();
        c.heartbeat("a", ("addr-a", ""), 1, 6, 100).await.unwrap();
        c.heartbeat("a", ("addr-a", ""), 1, 9, 100).await.unwrap();
        let agents = c.agents().await.unwrap();
        assert_eq!(
            agents.iter().map(|r| (r.id.as_str(), r.heartbeat_ms, r.expires_ms)).collect::<Vec<_>>(),
            vec![("a", 9, 109), ("b", 5, 105)]
        );
        c.deregister("a").await.unwrap();
        assert_eq!(c.agents().await.unwrap().len(), 1);
    }
}
