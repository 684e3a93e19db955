//! Change markers: `0x0a | writer id -> token u64`.
//!
//! Every transaction that changes who owns what (a topic created or
//! deleted, a lease taken or given up) also writes a fresh random token
//! under its writer's marker. An agent reads the markers (one scan) with
//! the registrations each round, and re-reads leases and topics only when
//! the markers or the live agents changed: at rest, the control plane
//! reads a handful of keys whatever the partition count.
//!
//! Each writer has its own marker, so writers never conflict over it.

use std::hash::{Hash, Hasher};

use crate::CatalogError;

use super::{agent, keys, rand_u64, scan_prefix, Catalog, Registration, Txn};

pub fn key(writer: &str) -> Vec<u8> {
    let mut key = vec![keys::CHANGE];
    key.extend_from_slice(writer.as_bytes());
    key
}

/// Records in `t` that ownership changed.
pub(crate) fn mark(t: &mut Txn, writer: &str) {
    t.put(key(writer), rand_u64().to_be_bytes().to_vec());
}

/// What an agent reads every round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Every registered agent, live or not, by id.
    pub agents: Vec<Registration>,
    /// Changes whenever any change marker does.
    pub changes: u64,
}

impl Catalog {
    /// The registered agents and a digest of the change markers, in one
    /// snapshot (two scans). The markers are read first, so a change that
    /// lands after them is seen by the next look.
    pub async fn cluster(&self) -> Result<ClusterView, CatalogError> {
        read_only!(self, |t| {
            let mut digest = std::collections::hash_map::DefaultHasher::new();
            for row in scan_prefix(t, &[keys::CHANGE]).await? {
                row.hash(&mut digest);
            }
            Ok(ClusterView { agents: agent::list(t).await?, changes: digest.finish() })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::tests::catalog;

    #[tokio::test]
    async fn ownership_changes_move_the_digest_and_renewals_do_not() {
        let (_d, c) = catalog().await;
        let c = c.with_writer("a");
        let v0 = c.cluster().await.unwrap();
        c.heartbeat("a", ("x", ""), 0, 1, 100).await.unwrap();
        let v1 = c.cluster().await.unwrap();
        assert_eq!(v1.changes, v0.changes, "a renewal is not an ownership change");
        assert_eq!(v1.agents.len(), 1);
        let t = c.create_topic("t", 2, &[], 0).await.unwrap();
        let v2 = c.cluster().await.unwrap();
        assert_ne!(v2.changes, v1.changes);
        c.acquire_leases("a", "x", &[(t.id, 0)], 2).await.unwrap();
        let v3 = c.cluster().await.unwrap();
        assert_ne!(v3.changes, v2.changes);
        c.heartbeat("a", ("x", ""), 0, 3, 100).await.unwrap();
        assert_eq!(c.cluster().await.unwrap().changes, v3.changes);
        c.release_leases("a", &[(t.id, 0, 1)]).await.unwrap();
        assert_ne!(c.cluster().await.unwrap().changes, v3.changes);
    }
}
