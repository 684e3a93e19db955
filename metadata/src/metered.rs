//! A [`MetaStore`] that counts what passes through it: read requests,
//! committed transactions that wrote, and conflicts. The agent wraps its
//! store in one, so `silt stats` shows what the control plane costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::{KeyValue, MetaStore, Transaction};
use crate::MetaError;

/// Counts of metadata operations since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaStats {
    /// Read requests: each get, batch get or scan (a page) is one.
    pub reads: u64,
    /// Transactions that wrote something and committed.
    pub writes: u64,
    /// Commits refused because another transaction changed the same keys.
    pub conflicts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    conflicts: AtomicU64,
}

/// Wraps a store and counts its operations.
pub struct MeteredStore {
    inner: Arc<dyn MetaStore>,
    counters: Arc<Counters>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn MetaStore>) -> Self {
        MeteredStore { inner, counters: Arc::default() }
    }

    pub fn stats(&self) -> MetaStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetaStats {
            reads: get(&self.counters.reads),
            writes: get(&self.counters.writes),
            conflicts: get(&self.counters.conflicts),
        }
    }
}

#[async_trait]
impl MetaStore for MeteredStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError> {
        let inner = self.inner.begin().await?;
        Ok(Box::new(MeteredTxn { inner, counters: self.counters.clone(), wrote: false }))
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn max_txn_keys(&self) -> usize {
        self.inner.max_txn_keys()
    }

    fn stats(&self) -> Option<MetaStats> {
        Some(MeteredStore::stats(self))
    }

    fn while_idle(&self, f: &mut dyn FnMut()) {
        self.inner.while_idle(f)
    }
}

struct MeteredTxn {
    inner: Box<dyn Transaction>,
    counters: Arc<Counters>,
    wrote: bool,
}

impl MeteredTxn {
    fn read(&self) {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Transaction for MeteredTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        self.read();
        self.inner.get(key).await
    }

    async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        self.read();
        self.inner.get_for_update(key).await
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        self.read();
        self.inner.batch_get(keys).await
    }

    async fn batch_get_for_update(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        self.read();
        self.inner.batch_get_for_update(keys).await
    }

    async fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, MetaError> {
        self.read();
        self.inner.scan(start, end, limit, reverse).await
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.wrote = true;
        self.inner.put(key, value);
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.wrote = true;
        self.inner.delete(key);
    }

    async fn commit(self: Box<Self>) -> Result<(), MetaError> {
        let MeteredTxn { inner, counters, wrote } = *self;
        let result = inner.commit().await;
        match &result {
            Ok(()) if wrote => {
                counters.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(MetaError::Conflict) => {
                counters.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_reads_writes_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn MetaStore> = Arc::new(crate::SqliteStore::open(dir.path().join("m.db")).await.unwrap());
        let store = MeteredStore::new(inner);
        let mut t = store.begin().await.unwrap();
        t.put(b"k".to_vec(), b"1".to_vec());
        t.commit().await.unwrap();
        let mut a = store.begin().await.unwrap();
        a.get_for_update(b"k").await.unwrap();
        a.batch_get(&[b"k".to_vec(), b"x".to_vec()]).await.unwrap();
        a.scan(b"a", b"z", 10, false).await.unwrap();
        let mut b = store.begin().await.unwrap();
        b.put(b"k".to_vec(), b"2".to_vec());
        b.commit().await.unwrap();
        a.put(b"k".to_vec(), b"3".to_vec());
        assert!(matches!(a.commit().await, Err(MetaError::Conflict)));
        // A transaction that only reads writes nothing.
        let mut r = store.begin().await.unwrap();
        r.get(b"k").await.unwrap();
        r.commit().await.unwrap();
        assert_eq!(store.stats(), MetaStats { reads: 4, writes: 2, conflicts: 1 });
    }
}
