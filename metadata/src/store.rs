//! The transactional, ordered key-value store under the catalog.
//!
//! Semantics every backend provides (and the conformance suite checks):
//! - A transaction buffers its writes; nothing is visible to others before
//!   `commit`, and everything is visible after it. Dropping a transaction
//!   without committing writes nothing.
//! - Reads inside a transaction see its own buffered writes.
//! - Optimistic conflicts: `commit` fails with [`MetaError::Conflict`], writing
//!   nothing, when a key this transaction read with `get_for_update` or wrote
//!   was changed by another transaction that committed after this one began.
//!   Plain `get` and `scan` detect no conflicts: use `get_for_update` on the
//!   keys a decision depends on (a lease before an index write).
//! - Keys and scans order by unsigned byte comparison.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

use crate::MetaError;

pub type KeyValue = (Vec<u8>, Bytes);

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError>;

    /// A short name for logs ("sqlite", "tikv").
    fn backend(&self) -> &'static str;

    /// The most keys one transaction may read for update and write, together.
    /// The catalog splits work that does not need to be atomic to stay within it.
    fn max_txn_keys(&self) -> usize {
        usize::MAX
    }

    /// What has passed through this store, when it counts (a [`crate::MeteredStore`]).
    fn stats(&self) -> Option<crate::MetaStats> {
        None
    }

    /// Runs `f` while no transaction of this process is inside the store.
    /// A test pause (SIGSTOP) goes through it: an embedded store holds a file
    /// lock during a commit, and a process frozen there would stop every
    /// other process sharing the file. Servers need nothing.
    fn while_idle(&self, f: &mut dyn FnMut()) {
        f()
    }
}

#[async_trait]
pub trait Transaction: Send {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError>;

    /// Reads `key` and makes the commit fail if another transaction changes it first.
    async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError>;

    /// Reads several keys; values come in the order of `keys`.
    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// [`Transaction::get_for_update`] of several keys, in one round trip
    /// where the backend allows; values come in the order of `keys`.
    async fn batch_get_for_update(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get_for_update(key).await?);
        }
        Ok(out)
    }

    /// Up to `limit` pairs with `start <= key < end`, in key order (or
    /// reverse order when `reverse`, starting from the largest key below `end`).
    async fn scan(&mut self, start: &[u8], end: &[u8], limit: usize, reverse: bool)
        -> Result<Vec<KeyValue>, MetaError>;

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);

    fn delete(&mut self, key: Vec<u8>);

    async fn commit(self: Box<Self>) -> Result<(), MetaError>;
}

/// A transaction's buffered writes: `Some` puts, `None` deletes.
pub(crate) type Writes = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The buffered writes that fall in `start..end`, and how many rows to ask
/// the backend for so that, after merging them, `limit` rows remain (each
/// buffered delete can hide one stored row).
pub(crate) fn pending_in(writes: &Writes, start: &[u8], end: &[u8], limit: usize) -> (Writes, usize) {
    let pending: Writes = writes.range(start.to_vec()..end.to_vec()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let fetch = limit.saturating_add(pending.len()).min(i64::MAX as usize);
    (pending, fetch)
}

/// Merges stored rows with buffered writes and keeps `limit` rows in scan order.
pub(crate) fn merge_scan(rows: Vec<KeyValue>, pending: Writes, limit: usize, reverse: bool) -> Vec<KeyValue> {
    let mut merged: std::collections::BTreeMap<Vec<u8>, Bytes> = rows.into_iter().collect();
    for (k, v) in pending {
        match v {
            Some(v) => merged.insert(k, Bytes::from(v)),
            None => merged.remove(&k),
        };
    }
    if reverse {
        merged.into_iter().rev().take(limit).collect()
    } else {
        merged.into_iter().take(limit).collect()
    }
}

/// Opens the store a URL names: `sqlite:///path/to/file` (or a bare path),
/// `etcd://host:2379,host2:2379` (feature `etcd`) or `tikv://pd:2379,...`
/// (feature `tikv`).
pub async fn open(url: &str) -> Result<Arc<dyn MetaStore>, MetaError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(MetaError::InvalidUrl { url: url.into(), reason: "no file path".into() });
        }
        return Ok(Arc::new(crate::SqliteStore::open(path).await?));
    }
    if let Some(hosts) = url.strip_prefix("etcd://") {
        let endpoints = endpoints(url, hosts, "etcd://host:2379,...")?;
        #[cfg(feature = "etcd")]
        return Ok(Arc::new(crate::etcd::EtcdStore::connect(&endpoints).await?));
        #[cfg(not(feature = "etcd"))]
        {
            let _ = endpoints; // checked, but this build cannot use them
            return Err(no_feature(url, "etcd"));
        }
    }
    if let Some(hosts) = url.strip_prefix("tikv://") {
        let endpoints = endpoints(url, hosts, "tikv://pd:2379,...")?;
        #[cfg(feature = "tikv")]
        return Ok(Arc::new(crate::tikv::TikvStore::connect(&endpoints).await?));
        #[cfg(not(feature = "tikv"))]
        {
            let _ = endpoints; // checked, but this build cannot use them
            return Err(no_feature(url, "tikv"));
        }
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(MetaError::InvalidUrl {
            url: url.into(),
            reason: format!("unsupported scheme {scheme:?} (expected sqlite://, etcd:// or tikv://)"),
        });
    }
    Ok(Arc::new(crate::SqliteStore::open(url).await?))
}

/// The comma-separated `host:port` list of an `etcd://` or `tikv://` URL.
fn endpoints(url: &str, hosts: &str, form: &str) -> Result<Vec<String>, MetaError> {
    let endpoints: Vec<String> = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect();
    if endpoints.is_empty() {
        return Err(MetaError::InvalidUrl { url: url.into(), reason: format!("no endpoints ({form})") });
    }
    Ok(endpoints)
}

/// The error for a backend this build was compiled without.
#[allow(dead_code)]
fn no_feature(url: &str, feature: &str) -> MetaError {
    MetaError::InvalidUrl {
        url: url.into(),
        reason: format!("this build has no {feature} support (build with --features silt-metadata/{feature})"),
    }
}
