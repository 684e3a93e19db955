//! The etcd backend (`etcd://host:2379,host2:2379`), feature `etcd`.
//!
//! A transaction reads at one revision: the store's revision at its first
//! read, so every read sees one consistent snapshot. Writes are buffered.
//! `commit` is one etcd transaction whose compares check that every key read
//! for update still has the modification revision it had, and that every
//! other written key was not modified after the snapshot; if any compare
//! fails nothing is written and the commit is a [`MetaError::Conflict`].
//!
//! etcd caps the operations in one transaction (`--max-txn-ops`, 128 by
//! default). A commit makes one compare per key read for update or written,
//! so [`MetaStore::max_txn_keys`] is that default, and the catalog splits
//! its larger work to fit.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use crate::store::{KeyValue, MetaStore, Transaction};
use crate::MetaError;

const BACKEND: &str = "etcd";
/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

fn err(e: etcd_client::Error) -> MetaError {
    // A snapshot older than etcd's compaction point cannot be read: the
    // transaction is simply too old, so run it again.
    if e.to_string().contains("compacted") {
        return MetaError::Conflict;
    }
    MetaError::backend(BACKEND, e)
}

pub struct EtcdStore {
    client: Client,
}

impl EtcdStore {
    /// Connects to `host:port` endpoints.
    pub async fn connect(endpoints: &[String]) -> Result<Self, MetaError> {
        let endpoints: Vec<String> =
            endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("http://{e}") }).collect();
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(10));
        let client = Client::connect(&endpoints, Some(options)).await.map_err(err)?;
        let store = EtcdStore { client };
        // Fail at start, not at the first transaction, when nothing answers.
        store.client.kv_client().get("silt-probe", None).await.map_err(err)?;
        Ok(store)
    }
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError> {
        Ok(Box::new(EtcdTxn {
            kv: self.client.kv_client(),
            start_rev: None,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
        }))
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn max_txn_keys(&self) -> usize {
        MAX_TXN_OPS
    }
}

struct EtcdTxn {
    kv: KvClient,
    /// The revision every read of this transaction is made at.
    start_rev: Option<i64>,
    /// Keys read for update, with the modification revision seen (0: absent).
    reads: HashMap<Vec<u8>, i64>,
    writes: crate::store::Writes,
}

impl EtcdTxn {
    fn options(&self) -> GetOptions {
        match self.start_rev {
            Some(rev) => GetOptions::new().with_revision(rev),
            None => GetOptions::new(),
        }
    }

    fn note_revision(&mut self, header: Option<&etcd_client::ResponseHeader>) {
        if self.start_rev.is_none() {
            self.start_rev = header.map(|h| h.revision());
        }
    }

    /// Reads `keys` at the transaction's revision, up to etcd's operation
    /// limit per round trip; a buffered write wins over the stored value.
    /// `for_update` notes each key's modification revision for commit.
    async fn read(&mut self, keys: &[Vec<u8>], for_update: bool) -> Result<Vec<Option<Bytes>>, MetaError> {
        let wanted: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| match self.writes.contains_key(*k) {
                true => for_update && !self.reads.contains_key(*k),
                false => true,
            })
            .collect();
        let mut stored: HashMap<Vec<u8>, Option<(Bytes, i64)>> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(MAX_TXN_OPS) {
            let found: Vec<Option<(Bytes, i64)>> = if let [key] = chunk {
                let resp = self.kv.get(key.as_slice(), Some(self.options())).await.map_err(err)?;
                self.note_revision(resp.header());
                vec![resp.kvs().first().map(|kv| (Bytes::copy_from_slice(kv.value()), kv.mod_revision()))]
            } else {
                let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(k.to_vec(), Some(self.options()))).collect();
                let resp = self.kv.txn(Txn::new().and_then(ops)).await.map_err(err)?;
                self.note_revision(resp.header());
                resp.op_responses()
                    .into_iter()
                    .map(|r| match r {
                        TxnOpResponse::Get(g) => {
                            Ok(g.kvs().first().map(|kv| (Bytes::copy_from_slice(kv.value()), kv.mod_revision())))
                        }
                        _ => {
                            Err(MetaError::backend(BACKEND, std::io::Error::other("etcd answered a read with a write")))
                        }
                    })
                    .collect::<Result<_, _>>()?
            };
            for (key, found) in chunk.iter().zip(found) {
                stored.insert(key.to_vec(), found);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let found = stored.get(key).cloned().flatten();
            if for_update {
                if let Some(seen) = stored.get(key) {
                    self.reads.entry(key.clone()).or_insert(seen.as_ref().map_or(0, |(_, rev)| *rev));
                }
            }
            out.push(match self.writes.get(key) {
                Some(write) => write.clone().map(Bytes::from),
                None => found.map(|(v, _)| v),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Transaction for EtcdTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        Ok(self.read(&[key.to_vec()], false).await?.pop().flatten())
    }

    async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Bytes>, MetaError> {
        Ok(self.read(&[key.to_vec()], true).await?.pop().flatten())
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        self.read(keys, false).await
    }

    async fn batch_get_for_update(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, MetaError> {
        self.read(keys, true).await
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
        let fetch = fetch as i64;
        let order = if reverse { SortOrder::Descend } else { SortOrder::Ascend };
        let options = self.options().with_range(end).with_limit(fetch).with_sort(SortTarget::Key, order);
        let resp = self.kv.get(start, Some(options)).await.map_err(err)?;
        self.note_revision(resp.header());
        let rows = resp.kvs().iter().map(|kv| (kv.key().to_vec(), Bytes::copy_from_slice(kv.value()))).collect();
        Ok(crate::store::merge_scan(rows, pending, limit, reverse))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    async fn commit(self: Box<Self>) -> Result<(), MetaError> {
        let EtcdTxn { mut kv, start_rev, reads, writes } = *self;
        if writes.is_empty() {
            return Ok(());
        }
        let mut compares: Vec<Compare> =
            reads.iter().map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev)).collect();
        if let Some(start) = start_rev {
            for key in writes.keys().filter(|k| !reads.contains_key(*k)) {
                compares.push(Compare::mod_revision(key.clone(), CompareOp::Less, start + 1));
            }
        }
        let ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect();
        let resp = kv.txn(Txn::new().when(compares).and_then(ops)).await.map_err(err)?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(MetaError::Conflict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::EtcdServer as Etcd;

    #[tokio::test]
    async fn etcd_passes_the_conformance_suite() {
        let etcd = Etcd::start().await;
        let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await.unwrap();
        crate::testing::conformance(&store).await;
        let other = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await.unwrap();
        crate::testing::two_clients(&store, &other).await;
    }

    #[tokio::test]
    async fn the_catalog_runs_on_etcd() {
        let etcd = Etcd::start().await;
        let store = crate::open(&format!("etcd://{}", etcd.endpoint)).await.unwrap();
        assert_eq!(store.backend(), "etcd");
        let catalog = crate::Catalog::new(store);
        let t = catalog.create_topic("t", 3, &[], 0).await.unwrap();
        assert!(matches!(catalog.create_topic("t", 3, &[], 0).await, Err(crate::CatalogError::TopicExists(_))));
        assert_eq!(catalog.partitions(&t).await.unwrap().len(), 3);
        catalog.delete_topic("t", 0).await.unwrap();
        assert!(catalog.list_topics().await.unwrap().is_empty());
    }

    /// etcd runs here with its default --max-txn-ops (128).
    #[tokio::test]
    async fn the_catalog_fits_etcds_default_transaction_limit() {
        let etcd = Etcd::start().await;
        let store = crate::open(&format!("etcd://{}", etcd.endpoint)).await.unwrap();
        crate::testing::catalog_at_scale(store).await;
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_an_error_naming_it() {
        let port = crate::testing::free_port();
        let e = crate::open(&format!("etcd://127.0.0.1:{port}")).await.err().expect("nothing listens there");
        assert!(matches!(e, MetaError::Backend { backend: "etcd", .. }), "{e}");
    }
}
