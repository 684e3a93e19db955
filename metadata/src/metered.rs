//! A [`MetaStore`] that counts what passes through it: read requests,
//! committed transactions that wrote, and conflicts. The agent wraps its
//! store in one, so `silt stats` shows what the control plane costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Reads and commits that failed otherwise (the store unreachable...).
    pub errors: u64,
}

/// Told how long each transaction lasted, from begin to commit or drop.
pub type TxnObserver = Arc<dyn Fn(Duration) + Send + Sync>;

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
}

/// Wraps a store and counts its operations.
pub struct MeteredStore {
    inner: Arc<dyn MetaStore>,
    counters: Arc<Counters>,
    observer: Option<TxnObserver>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn MetaStore>) -> Self {
        MeteredStore { inner, counters: Arc::default(), observer: None }
    }

    /// Also reports each transaction's duration to `observer`.
    pub fn with_observer(mut self, observer: TxnObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn stats(&self) -> MetaStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetaStats {
            reads: get(&self.counters.reads),
            writes: get(&self.counters.writes),
            conflicts: get(&self.counters.conflicts),
            errors: get(&self.counters.errors),
        }
    }
}

#[async_trait]
impl MetaStore for MeteredStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError> {
        let timer = Timer { began: Instant::now(), observer: self.observer.clone() };
        let inner = self.inner.begin().await;
        let inner = self.counters.check(inner)?;
        Ok(Box::new(MeteredTxn { inner, counters: self.counters.clone(), wrote: false, _timer: timer }))
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

impl Counters {
    /// Counts a failure that is not a conflict.
    fn check<T>(&self, result: Result<T, MetaError>) -> Result<T, MetaError> {
        match &result {
            Err(MetaError::Conflict) => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
        result
    }
}

/// Reports a transaction's duration when it ends (committed or dropped).
struct Timer {
    began: Instant,
    observer: Option<TxnObserver>,
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(observe) = &self.observer {
            observe(self.began.elapsed());
        }
    }
}

struct MeteredTxn {
    inner: Box<dyn Transaction>,
    counters: Arc<Counters>,
    wrote: bool,
    _timer: Timer,
}

impl MeteredTxn {
    fn read<T>(&self, result: Result<T, MetaError>) -> Result<T, MetaError> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.counters.check(result)
    }
}

#[async_trait]
impl Transaction for MeteredTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        let result = self.inner.get(key).await;
        self.read(result)
    }

    async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        let result = self.inner.get_for_update(key).await;
        self.read(result)
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let result = self.inner.batch_get(keys).await;
        self.read(result)
    }

    async fn batch_get_for_update(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let result = self.inner.batch_get_for_update(keys).await;
        self.read(result)
    }

    async fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, MetaError> {
        let result = self.inner.scan(start, end, limit, reverse).await;
        self.read(result)
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
        let MeteredTxn { inner, counters, wrote, _timer } = *self;
        let result = counters.check(inner.commit().await);
        if result.is_ok() && wrote {
            counters.writes.fetch_add(1, Ordering::Relaxed);
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
        let txns = Arc::new(AtomicU64::new(0));
        let seen = txns.clone();
        let store = MeteredStore::new(inner).with_observer(Arc::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        }));
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
        assert_eq!(store.stats(), MetaStats { reads: 4, writes: 2, conflicts: 1, errors: 0 });
        // Every transaction ended was timed: four committed or refused.
        assert_eq!(txns.load(Ordering::Relaxed), 4);
    }
}
