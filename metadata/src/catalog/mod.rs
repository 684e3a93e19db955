//! The typed catalog over a [`MetaStore`]: every read and write of silt's
//! metadata goes through here, so the key layout lives in one place.
//!
//! - [`keys`]: the key-kind ordinals and shared key helpers.
//! - One module per key kind, each with its value type and the operations
//!   on it: [`topic`], [`partition`], [`segment`] (and flush commits),
//!   [`lease`], [`agent`], [`producer`], [`change`] (the change markers
//!   that let agents notice ownership changes without re-reading them),
//!   [`group`] (consumer groups' state), [`offset`] (committed offsets)
//!   [`auth`] (tokens and ACLs) and [`gc`] (objects to collect once nothing points into them).
//!
//! Every operation that writes runs in `transact!`, which retries a
//! transaction that lost an optimistic conflict.

/// Runs `$body` (async code with `$t: &mut Txn`, giving a `Result`) in a
/// transaction and commits it; after an optimistic conflict, runs it again
/// from the start. An error from the body ends it without writing.
///
/// (A macro rather than a method taking an async closure: the futures must
/// be `Send` for any lifetime, which async closures cannot yet promise.)
macro_rules! transact {
    ($catalog:expr, |$t:ident| $body:expr) => {{
        let mut attempt = 1;
        loop {
            let mut txn = $catalog.store().begin().await?;
            let out: Result<_, $crate::CatalogError> = {
                let $t: &mut $crate::catalog::Txn = &mut txn;
                async { $body }.await
            };
            let out = match out {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            match txn.commit().await {
                Ok(()) => break Ok(out),
                Err($crate::MetaError::Conflict) if attempt < $crate::catalog::MAX_ATTEMPTS => attempt += 1,
                Err(e) => break Err($crate::CatalogError::from(e)),
            }
        }
    }};
}

/// Runs `$body` (async code with `$t: &mut Txn`) in a transaction that only reads.
macro_rules! read_only {
    ($catalog:expr, |$t:ident| $body:expr) => {{
        let mut txn = $catalog.store().begin().await?;
        let $t: &mut $crate::catalog::Txn = &mut txn;
        let out: Result<_, $crate::CatalogError> = async { $body }.await;
        out
    }};
}

pub mod agent;
pub mod auth;
pub mod change;
pub mod connector;
pub mod gc;
pub mod group;
pub mod keys;
pub mod lease;
pub mod offset;
pub mod partition;
pub mod producer;
pub mod segment;
pub mod topic;

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::CodecError;
use crate::store::{KeyValue, MetaStore, Transaction};
use crate::{CatalogError, MetaStats};
pub use agent::Registration;
pub use auth::{AuthSnapshot, ScramCredential, TokenRecord};
pub use change::ClusterView;
pub use connector::{ClaimChange, ConnectorAction, ConnectorRecord, WorkerRound};
pub use group::{Fence, GroupRecord, MemberRecord, TopicPartition};
pub use lease::{Acquired, Lease};
pub use offset::{OffsetCommit, OffsetRecord};
pub use partition::PartitionState;
pub use producer::{BatchMeta, ProducerState};
pub use segment::{FlushEntry, FlushOutcome, Segment, Swapped, Trimmed};
pub use topic::Topic;

/// How often an operation is tried when it keeps losing optimistic conflicts.
pub(crate) const MAX_ATTEMPTS: usize = 32;
/// Rows per scan request when reading a whole key range.
const PAGE: usize = 1024;

pub type Txn = Box<dyn Transaction>;

/// A partition: topic id and partition number.
pub type PartitionId = (u64, u32);

#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn MetaStore>,
    /// Names this catalog's change marker (see [`change`]).
    writer: Arc<str>,
}

pub(crate) fn corrupt(key: &[u8], source: CodecError) -> CatalogError {
    CatalogError::Corrupt { key: format!("{key:02x?}"), source }
}

impl Catalog {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        let writer = format!("catalog-{:016x}", rand_u64());
        Catalog { store, writer: writer.into() }
    }

    /// Names the change marker this catalog writes (an agent uses its id,
    /// so its marker goes when it deregisters).
    pub fn with_writer(mut self, writer: &str) -> Self {
        self.writer = writer.into();
        self
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// Reads, writes and conflicts so far, when the store counts them.
    pub fn stats(&self) -> Option<MetaStats> {
        self.store.stats()
    }

    /// The most keys one transaction may touch (see [`MetaStore::max_txn_keys`]).
    pub(crate) fn budget(&self) -> usize {
        self.store.max_txn_keys().max(8)
    }
}

/// Every row whose key starts with `prefix`, a page at a time.
pub(crate) async fn scan_prefix(t: &mut Txn, prefix: &[u8]) -> Result<Vec<KeyValue>, CatalogError> {
    scan_range(t, prefix, &keys::prefix_end(prefix)).await
}

/// Every row with `start <= key < end`, a page at a time.
pub(crate) async fn scan_range(t: &mut Txn, start: &[u8], end: &[u8]) -> Result<Vec<KeyValue>, CatalogError> {
    let mut from = start.to_vec();
    let mut out = Vec::new();
    loop {
        let page = t.scan(&from, end, PAGE, false).await?;
        let full = page.len() == PAGE;
        if let Some((last, _)) = page.last() {
            from = last.clone();
            from.push(0);
        }
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Reads a key and decodes its value; `for_update` makes the commit fail
/// if another transaction changes the key first.
pub(crate) async fn read<T>(
    t: &mut Txn,
    key: &[u8],
    for_update: bool,
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<Option<T>, CatalogError> {
    let raw = if for_update { t.get_for_update(key).await? } else { t.get(key).await? };
    raw.map(|raw| decode(&raw).map_err(|e| corrupt(key, e))).transpose()
}

/// Reads several keys for update in one request and decodes their values.
pub(crate) async fn read_many<T>(
    t: &mut Txn,
    keys: &[Vec<u8>],
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<Vec<Option<T>>, CatalogError> {
    let raw: Vec<Option<Bytes>> = t.batch_get_for_update(keys).await?;
    keys.iter().zip(raw).map(|(k, v)| v.map(|v| decode(&v).map_err(|e| corrupt(k, e))).transpose()).collect()
}

/// Increments the named counter in `t` and returns its new value.
pub(crate) async fn next_counter(t: &mut Txn, name: &[u8]) -> Result<u64, CatalogError> {
    let mut key = vec![keys::COUNTER];
    key.extend_from_slice(name);
    let current = match t.get_for_update(&key).await? {
        Some(raw) => u64::from_be_bytes(raw[..].try_into().map_err(|_| corrupt(&key, CodecError::Invalid("counter")))?),
        None => 0,
    };
    let next = current + 1;
    t.put(key, next.to_be_bytes().to_vec());
    Ok(next)
}

/// A random u64, for names and change tokens that must differ from all others.
pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::SqliteStore;

    pub(crate) async fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db")).await.unwrap();
        (dir, Catalog::new(Arc::new(store)))
    }

    #[tokio::test]
    async fn the_catalog_handles_wide_topics() {
        let (_d, c) = catalog().await;
        crate::testing::catalog_at_scale(c.store().clone()).await;
    }

    #[tokio::test]
    async fn an_operation_that_conflicts_runs_again() {
        let (_d, c) = catalog().await;
        let mut attempts = 0;
        let other = c.clone();
        let run = async {
            transact!(c, |t| {
                attempts += 1;
                let current = t.get_for_update(b"k").await?;
                if attempts == 1 {
                    // Another writer changes the key between read and commit.
                    let mut o = other.store().begin().await?;
                    o.put(b"k".to_vec(), b"theirs".to_vec());
                    o.commit().await?;
                }
                t.put(b"k".to_vec(), b"mine".to_vec());
                Ok(current)
            })
        };
        let v: Option<bytes::Bytes> = run.await.unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(v.as_deref(), Some(&b"theirs"[..]));
    }
}
