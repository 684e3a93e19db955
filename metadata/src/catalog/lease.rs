//! Partition leases: `0x04 | topic id | partition -> Lease`.
//!
//! A lease names a partition's owner and the epoch it writes under. It is
//! live while it is not released and its owner's registration is live
//! (see [`super::agent`]): an agent renews all its leases by renewing its
//! registration. Taking a lease over bumps the epoch, and every index
//! commit checks the epoch, so an owner that lapsed can never commit after
//! another took over.

use std::collections::{BTreeSet, HashMap};

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;
use bytes::{BufMut, Bytes};

use super::partition::{partition_of, topic_of};
use super::{
    agent, change, corrupt, keys, partition, scan_prefix, Catalog, PartitionId, PartitionState, Registration, Txn,
};

/// Who may write a partition, and under which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The owning agent's id.
    pub owner: String,
    /// Where clients reach the owner.
    pub address: String,
    /// Increases on every change of owner; index commits check it.
    pub epoch: u64,
    /// Given up by its owner (at a handover or shutdown): anyone may take it.
    pub released: bool,
}

pub fn key(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::LEASE, topic_id, partition)
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.owner.len() + self.address.len());
        v.put_u8(2);
        v.put_str(&self.owner);
        v.put_str(&self.address);
        v.put_u64(self.epoch);
        v.put_u8(u8::from(self.released));
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        let version = r.u8("version")?;
        if !(1..=2).contains(&version) {
            return Err(CodecError::Version(version));
        }
        let owner = r.string("owner")?;
        let address = r.string("address")?;
        let epoch = r.u64("epoch")?;
        // Version 1 held an expiry; a released lease had 0.
        let released = match version {
            1 => r.i64("expiry")? == 0,
            _ => match r.u8("released")? {
                0 => false,
                1 => true,
                _ => return Err(CodecError::Invalid("released flag")),
            },
        };
        r.finish()?;
        Ok(Lease { owner, address, epoch, released })
    }

    /// The owner's registration, when the lease is live: not released and
    /// held by an agent whose registration has not lapsed at `now_ms`.
    pub fn holder<'a>(&self, agents: &'a [Registration], now_ms: i64) -> Option<&'a Registration> {
        if self.released {
            return None;
        }
        agents.iter().find(|a| a.id == self.owner && a.is_live(now_ms))
    }
}

/// What [`Catalog::acquire_leases`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// Leases taken, each with its partition's state as of the takeover.
    pub taken: Vec<(PartitionId, Lease, PartitionState)>,
    /// Partitions another live agent holds.
    pub held: Vec<PartitionId>,
    /// Partitions whose topic is gone.
    pub missing: Vec<PartitionId>,
}

impl Catalog {
    /// Takes the leases on `ids` for `owner` where they are free: released,
    /// never taken, held by an agent whose registration lapsed, or already
    /// `owner`'s (from before a restart). Each taken lease gets the next
    /// epoch. As many partitions go in one transaction as the store allows.
    pub async fn acquire_leases(
        &self,
        owner: &str,
        address: &str,
        ids: &[PartitionId],
        now_ms: i64,
    ) -> Result<Acquired, CatalogError> {
        let mut out = Acquired::default();
        // Per partition: its state and lease read for update, the lease
        // written; per transaction: the previous owners' registrations and
        // the change marker.
        let per_txn = (self.budget().saturating_sub(16) / 3).max(1);
        for chunk in ids.chunks(per_txn) {
            let part = transact!(self, |t| acquire_some(t, &self.writer, owner, address, chunk, now_ms).await)?;
            out.taken.extend(part.taken);
            out.held.extend(part.held);
            out.missing.extend(part.missing);
        }
        Ok(out)
    }

    /// Gives up leases `owner` holds, each at the epoch given, so another
    /// agent can take them at once. The epoch stays: the next owner's is
    /// higher. Returns the partitions released (the others were not
    /// `owner`'s at that epoch any more).
    pub async fn release_leases(
        &self,
        owner: &str,
        held: &[(u64, u32, u64)],
    ) -> Result<Vec<PartitionId>, CatalogError> {
        let mut out = Vec::new();
        for chunk in held.chunks((self.budget().saturating_sub(2) / 2).max(1)) {
            let released = transact!(self, |t| {
                let keys: Vec<Vec<u8>> = chunk.iter().map(|&(topic, p, _)| key(topic, p)).collect();
                let leases = super::read_many(t, &keys, Lease::decode).await?;
                let mut released = Vec::new();
                for ((k, lease), &(topic, p, epoch)) in keys.into_iter().zip(leases).zip(chunk) {
                    if let Some(mut l) = lease.filter(|l| l.owner == owner && l.epoch == epoch && !l.released) {
                        l.released = true;
                        t.put(k, l.encode());
                        released.push((topic, p));
                    }
                }
                if !released.is_empty() {
                    change::mark(t, &self.writer);
                }
                Ok(released)
            })?;
            out.extend(released);
        }
        Ok(out)
    }

    /// Every lease of every partition (a range scan, paged).
    pub async fn leases(&self) -> Result<Vec<(PartitionId, Lease)>, CatalogError> {
        read_only!(self, |t| {
            scan_prefix(t, &[keys::LEASE])
                .await?
                .into_iter()
                .map(|(k, v)| {
                    let id = topic_of(&k)
                        .zip(partition_of(&k))
                        .ok_or_else(|| corrupt(&k, CodecError::Invalid("lease key")))?;
                    Ok((id, Lease::decode(&v).map_err(|e| corrupt(&k, e))?))
                })
                .collect()
        })
    }
}

async fn acquire_some(
    t: &mut Txn,
    writer: &str,
    owner: &str,
    address: &str,
    ids: &[PartitionId],
    now_ms: i64,
) -> Result<Acquired, CatalogError> {
    let mut keys = Vec::with_capacity(ids.len() * 2);
    for &(topic, p) in ids {
        keys.push(partition::key(topic, p));
        keys.push(key(topic, p));
    }
    let raw: Vec<Option<Bytes>> = t.batch_get_for_update(&keys).await?;
    let mut found = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let decode_state = |v: &Bytes| PartitionState::decode(v).map_err(|e| corrupt(&keys[2 * i], e));
        let decode_lease = |v: &Bytes| Lease::decode(v).map_err(|e| corrupt(&keys[2 * i + 1], e));
        let state = raw[2 * i].as_ref().map(decode_state).transpose()?;
        let lease = raw[2 * i + 1].as_ref().map(decode_lease).transpose()?;
        found.push((id, state, lease));
    }
    // Leases held by others count as free only if their owner's registration
    // lapsed; read those registrations for update, so an owner renewing at
    // the same moment makes this transaction run again.
    let others: BTreeSet<String> = found
        .iter()
        .filter_map(|(_, _, l)| l.as_ref())
        .filter(|l| !l.released && l.owner != owner)
        .map(|l| l.owner.clone())
        .collect();
    let reg_keys: Vec<Vec<u8>> = others.iter().map(|o| agent::key(o)).collect();
    let regs = t.batch_get_for_update(&reg_keys).await?;
    let mut live: HashMap<String, bool> = HashMap::new();
    for ((id, k), raw) in others.into_iter().zip(&reg_keys).zip(regs) {
        let reg = raw.map(|v| Registration::decode(&id, &v).map_err(|e| corrupt(k, e))).transpose()?;
        live.insert(id, reg.is_some_and(|r| r.is_live(now_ms)));
    }
    let mut out = Acquired::default();
    for (id, state, lease) in found {
        let Some(state) = state else {
            out.missing.push(id);
            continue;
        };
        if let Some(l) = &lease {
            if !l.released && l.owner != owner && live.get(l.owner.as_str()).copied().unwrap_or(false) {
                out.held.push(id);
                continue;
            }
        }
        let lease = Lease {
            owner: owner.into(),
            address: address.into(),
            epoch: lease.map_or(1, |l| l.epoch + 1),
            released: false,
        };
        t.put(key(id.0, id.1), lease.encode());
        out.taken.push((id, lease, state));
    }
    if !out.taken.is_empty() {
        change::mark(t, writer);
    }
    Ok(out)
}

/// Every lease of one topic, by partition.
pub(crate) async fn of_topic(t: &mut Txn, topic_id: u64) -> Result<Vec<(u32, Lease)>, CatalogError> {
    scan_prefix(t, &keys::topic_prefix(keys::LEASE, topic_id))
        .await?
        .into_iter()
        .map(|(k, v)| {
            let p = partition_of(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("lease key")))?;
            Ok((p, Lease::decode(&v).map_err(|e| corrupt(&k, e))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    #[test]
    fn round_trips_and_reads_the_old_layout() {
        let l = Lease { owner: "a1".into(), address: "127.0.0.1:7447".into(), epoch: 4, released: false };
        assert_eq!(Lease::decode(&l.encode()).unwrap(), l);
        let released = Lease { released: true, ..l.clone() };
        assert_eq!(Lease::decode(&released.encode()).unwrap(), released);
        let v1 = |expiry: i64| {
            let mut v = vec![1u8];
            v.put_str("a1");
            v.put_str("127.0.0.1:7447");
            v.put_u64(4);
            v.put_i64(expiry);
            v
        };
        assert_eq!(Lease::decode(&v1(99)).unwrap(), l);
        assert_eq!(Lease::decode(&v1(0)).unwrap(), released);
    }

    #[test]
    fn a_lease_lives_with_its_owners_registration() {
        let l = Lease { owner: "a".into(), address: "x".into(), epoch: 1, released: false };
        let reg = |id: &str, expires_ms| Registration {
            id: id.into(),
            address: "x".into(),
            kafka_address: String::new(),
            started_ms: 0,
            heartbeat_ms: 0,
            expires_ms,
        };
        let agents = [reg("a", 100), reg("b", 500)];
        assert_eq!(l.holder(&agents, 99).map(|r| r.id.as_str()), Some("a"));
        assert!(l.holder(&agents, 100).is_none(), "the owner's session lapsed");
        assert!(l.holder(&agents[1..], 50).is_none(), "the owner is not registered");
        assert!(Lease { released: true, ..l }.holder(&agents, 50).is_none());
    }

    #[tokio::test]
    async fn leases_are_taken_released_and_taken_over_once_their_owner_lapses() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 3, &[], 0).await.unwrap();
        let ids = [(t.id, 0), (t.id, 1), (t.id, 2)];
        c.heartbeat("a", ("x", ""), 0, 0, 100).await.unwrap();
        let got = c.acquire_leases("a", "x", &ids[..2], 10).await.unwrap();
        assert_eq!(
            got.taken.iter().map(|(id, l, _)| (*id, l.epoch)).collect::<Vec<_>>(),
            vec![(ids[0], 1), (ids[1], 1)]
        );
        // b cannot take a's leases while a's registration is live...
        c.heartbeat("b", ("y", ""), 0, 0, 1000).await.unwrap();
        let got = c.acquire_leases("b", "y", &ids, 50).await.unwrap();
        assert_eq!(got.held, ids[..2].to_vec());
        assert_eq!(got.taken.len(), 1);
        // ...but can once it lapses, at the next epoch; a released one at once.
        assert_eq!(c.release_leases("b", &[(t.id, 2, 1)]).await.unwrap(), vec![ids[2]]);
        assert!(c.release_leases("b", &[(t.id, 2, 1)]).await.unwrap().is_empty(), "released already");
        let got = c.acquire_leases("b", "y", &ids, 100).await.unwrap();
        assert_eq!(
            got.taken.iter().map(|(id, l, _)| (*id, l.epoch)).collect::<Vec<_>>(),
            vec![(ids[0], 2), (ids[1], 2), (ids[2], 2)]
        );
        assert!(c.release_leases("a", &[(t.id, 0, 1)]).await.unwrap().is_empty(), "a cannot release what it lost");
        let leases = c.leases().await.unwrap();
        assert_eq!(leases.len(), 3);
        assert!(leases.iter().all(|(_, l)| l.owner == "b" && l.epoch == 2));
        // A restarted agent takes its own leases back at once.
        let got = c.acquire_leases("b", "y2", &ids[..1], 101).await.unwrap();
        assert_eq!(got.taken[0].1.epoch, 3);
        assert_eq!(got.taken[0].1.address, "y2");
        // Partitions of a deleted topic are reported, not leased.
        c.delete_topic("t", 0).await.unwrap();
        assert_eq!(c.acquire_leases("b", "y", &ids[..1], 102).await.unwrap().missing, ids[..1].to_vec());
    }
}
