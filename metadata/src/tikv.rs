//! The TiKV backend (`tikv://pd1:2379,pd2:2379`), feature `tikv`: optimistic
//! transactions of tikv-client against PD endpoints.
//!
//! TiKV gives each transaction a snapshot at its start timestamp and, at
//! commit, fails it on a write-write conflict with any transaction that
//! committed after that start. `get_for_update` in an optimistic transaction
//! locks the key (`lock_keys`), so a key read for update conflicts like a
//! written one: exactly the `MetaStore` contract.
//!
//! Writes are buffered here and handed to TiKV at commit, so the trait's
//! `put`/`delete` stay synchronous and reads see them, as with every backend.
//!
//! No TiKV or PD server can be installed here: its conformance run is enabled
//! by `SILT_TEST_TIKV_PD=host:port,...` and otherwise skipped with a notice.

use async_trait::async_trait;
use bytes::Bytes;
use tikv_client::{CheckLevel, Key, TransactionClient, TransactionOptions};

use crate::store::{KeyValue, MetaStore, Transaction, Writes};
use crate::MetaError;

const BACKEND: &str = "tikv";

/// Whether TiKV refused a commit because another transaction got there first.
fn is_conflict(e: &tikv_client::Error) -> bool {
    match e {
        tikv_client::Error::KeyError(k) => {
            k.conflict.is_some() || k.locked.is_some() || k.deadlock.is_some() || !k.retryable.is_empty()
        }
        tikv_client::Error::MultipleKeyErrors(errors) => errors.iter().any(is_conflict),
        tikv_client::Error::ExtractedErrors(errors) => errors.iter().any(is_conflict),
        _ => false,
    }
}

fn err(e: tikv_client::Error) -> MetaError {
    if is_conflict(&e) {
        MetaError::Conflict
    } else {
        MetaError::backend(BACKEND, e)
    }
}

pub struct TikvStore {
    client: TransactionClient,
}

impl TikvStore {
    pub async fn connect(pd_endpoints: &[String]) -> Result<Self, MetaError> {
        let client = TransactionClient::new(pd_endpoints.to_vec()).await.map_err(err)?;
        Ok(TikvStore { client })
    }
}

#[async_trait]
impl MetaStore for TikvStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError> {
        // Dropping a transaction without committing is how this trait aborts.
        let options = TransactionOptions::new_optimistic().drop_check(CheckLevel::None);
        let txn = self.client.begin_with_options(options).await.map_err(err)?;
        Ok(Box::new(TikvTxn { txn, writes: Writes::new() }))
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

struct TikvTxn {
    txn: tikv_client::Transaction,
    writes: Writes,
}

impl TikvTxn {
    /// Values for `keys`, in their order: buffered writes first, then what
    /// TiKV returned.
    fn merge(&self, keys: &[Vec<u8>], pairs: Vec<tikv_client::KvPair>) -> Vec<Option<Bytes>> {
        let stored: std::collections::HashMap<Vec<u8>, Vec<u8>> = pairs
            .into_iter()
            .map(|kv| {
                let (k, v): (Key, Vec<u8>) = kv.into();
                (Vec::<u8>::from(k), v)
            })
            .collect();
        keys.iter()
            .map(|k| match self.writes.get(k) {
                Some(write) => write.clone().map(Bytes::from),
                None => stored.get(k).cloned().map(Bytes::from),
            })
            .collect()
    }
}

#[async_trait]
impl Transaction for TikvTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        if let Some(write) = self.writes.get(key) {
            return Ok(write.clone().map(Bytes::from));
        }
        Ok(self.txn.get(key.to_vec()).await.map_err(err)?.map(Bytes::from))
    }

    async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        let stored = self.txn.get_for_update(key.to_vec()).await.map_err(err)?;
        Ok(match self.writes.get(key) {
            Some(write) => write.clone().map(Bytes::from),
            None => stored.map(Bytes::from),
        })
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let pairs: Vec<tikv_client::KvPair> = self.txn.batch_get(keys.to_vec()).await.map_err(err)?.collect();
        Ok(self.merge(keys, pairs))
    }

    async fn batch_get_for_update(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        let pairs = self.txn.batch_get_for_update(keys.to_vec()).await.map_err(err)?;
        Ok(self.merge(keys, pairs))
    }

    async fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, MetaError> {
        if limit == 0 || start >= end {
            return Ok(Vec::new());
        }
        let (pending, fetch) = crate::store::pending_in(&self.writes, start, end, limit);
        let fetch = u32::try_from(fetch).unwrap_or(u32::MAX);
        let range = Key::from(start.to_vec())..Key::from(end.to_vec());
        let pairs: Vec<tikv_client::KvPair> = if reverse {
            self.txn.scan_reverse(range, fetch).await.map_err(err)?.collect()
        } else {
            self.txn.scan(range, fetch).await.map_err(err)?.collect()
        };
        let rows = pairs
            .into_iter()
            .map(|kv| {
                let (k, v): (Key, Vec<u8>) = kv.into();
                (Vec::<u8>::from(k), Bytes::from(v))
            })
            .collect();
        Ok(crate::store::merge_scan(rows, pending, limit, reverse))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    async fn commit(self: Box<Self>) -> Result<(), MetaError> {
        let TikvTxn { mut txn, writes } = *self;
        for (key, value) in writes {
            match value {
                Some(v) => txn.put(key, v).await.map_err(err)?,
                None => txn.delete(key).await.map_err(err)?,
            }
        }
        txn.commit().await.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PD endpoints from SILT_TEST_TIKV_PD, or None with a notice.
    fn pd() -> Option<Vec<String>> {
        match std::env::var("SILT_TEST_TIKV_PD") {
            Ok(v) if !v.trim().is_empty() => Some(v.split(',').map(|s| s.trim().to_string()).collect()),
            _ => {
                eprintln!("NOTICE: SILT_TEST_TIKV_PD is not set: the TiKV conformance run is skipped");
                None
            }
        }
    }

    #[tokio::test]
    async fn tikv_passes_the_conformance_suite() {
        let Some(endpoints) = pd() else { return };
        let store = TikvStore::connect(&endpoints).await.unwrap();
        crate::testing::conformance(&store).await;
        let other = TikvStore::connect(&endpoints).await.unwrap();
        crate::testing::two_clients(&store, &other).await;
    }

    #[test]
    fn write_conflicts_are_recognised() {
        let conflict = tikv_client::ProtoKeyError { conflict: Some(Default::default()), ..Default::default() };
        assert!(matches!(err(conflict.into()), MetaError::Conflict));
        let other = tikv_client::ProtoKeyError { abort: "no".into(), ..Default::default() };
        assert!(matches!(err(other.into()), MetaError::Backend { backend: "tikv", .. }));
    }
}
