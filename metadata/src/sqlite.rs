//! The embedded backend: one SQLite file in WAL mode.
//!
//! Every key carries the revision of the commit that last wrote it. A
//! transaction remembers the revisions it saw through `get_for_update` and the
//! store's revision when it first read anything; `commit` takes SQLite's
//! write lock (`BEGIN IMMEDIATE`), checks that none of those keys moved, then
//! applies the writes under a new revision. The write lock and WAL make this
//! safe for several processes sharing the file.

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{KeyValue, MetaStore, Transaction};
use crate::MetaError;

const BACKEND: &str = "sqlite";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn db_err(e: rusqlite::Error) -> MetaError {
    MetaError::backend(BACKEND, e)
}

async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        // A panic while holding the lock leaves SQLite itself consistent, so
        // the connection stays usable.
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| MetaError::backend(BACKEND, e))?
}

impl SqliteStore {
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| MetaError::backend(BACKEND, e))?;
        }
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, MetaError> {
            let conn = Connection::open(&p).map_err(db_err)?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
            // FULL: a commit is on disk when it returns, so an acknowledged
            // index entry survives power loss, not only a process crash.
            conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, rev INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY CHECK (id = 0), rev INTEGER NOT NULL);
                 INSERT OR IGNORE INTO revision VALUES (0, 0);",
            )
            .map_err(db_err)?;
            Ok(conn)
        })
        .await
        .map_err(|e| MetaError::backend(BACKEND, e))??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, MetaError> {
        Ok(Box::new(SqliteTxn {
            conn: self.conn.clone(),
            start_rev: None,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
        }))
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// Every statement runs under the connection's lock, so holding it
    /// keeps the file unlocked for other processes.
    fn while_idle(&self, f: &mut dyn FnMut()) {
        let _held = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f()
    }
}

struct SqliteTxn {
    conn: Arc<Mutex<Connection>>,
    /// The store's revision at this transaction's first read.
    start_rev: Option<i64>,
    /// Keys read for update, with the revision seen (None: absent).
    reads: HashMap<Vec<u8>, Option<i64>>,
    /// Buffered writes; None deletes.
    writes: crate::store::Writes,
}

fn current_rev(conn: &Connection) -> Result<i64, MetaError> {
    conn.query_row("SELECT rev FROM revision WHERE id = 0", [], |r| r.get(0)).map_err(db_err)
}

fn read_key(conn: &Connection, key: &[u8]) -> Result<Option<(Vec<u8>, i64)>, MetaError> {
    conn.prepare_cached("SELECT value, rev FROM kv WHERE key = ?1")
        .map_err(db_err)?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)
}

impl SqliteTxn {
    /// Reads `keys` in one call to the database; a buffered write wins over
    /// the stored value. `for_update` notes each key's revision for commit.
    async fn read(&mut self, keys: &[Vec<u8>], for_update: bool) -> Result<Vec<Option<Bytes>>, MetaError> {
        let need_rev = self.start_rev.is_none();
        let wanted: Vec<Vec<u8>> =
            keys.iter().filter(|k| for_update || !self.writes.contains_key(*k)).cloned().collect();
        let (rows, rev) = if wanted.is_empty() && !need_rev {
            (Vec::new(), None)
        } else {
            blocking(&self.conn, move |conn| {
                let rev = if need_rev { Some(current_rev(conn)?) } else { None };
                let rows =
                    wanted.into_iter().map(|k| Ok((read_key(conn, &k)?, k))).collect::<Result<Vec<_>, MetaError>>()?;
                Ok((rows, rev))
            })
            .await?
        };
        if rev.is_some() {
            self.start_rev = rev;
        }
        let mut stored: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::with_capacity(rows.len());
        for (row, key) in rows {
            if for_update {
                self.reads.entry(key.clone()).or_insert(row.as_ref().map(|(_, rev)| *rev));
            }
            stored.insert(key, row.map(|(value, _)| value));
        }
        Ok(keys
            .iter()
            .map(|k| match self.writes.get(k) {
                Some(write) => write.clone().map(Bytes::from),
                None => stored.get(k).cloned().flatten().map(Bytes::from),
            })
            .collect())
    }
}

#[async_trait]
impl Transaction for SqliteTxn {
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
        let (s, e) = (start.to_vec(), end.to_vec());
        let need_rev = self.start_rev.is_none();
        let (rows, rev) = blocking(&self.conn, move |conn| {
            let rev = if need_rev { Some(current_rev(conn)?) } else { None };
            let sql = if reverse {
                "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT ?3"
            } else {
                "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3"
            };
            let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
            let rows = stmt
                .query_map(params![s, e, fetch], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok((rows, rev))
        })
        .await?;
        if rev.is_some() {
            self.start_rev = rev;
        }
        let rows = rows.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
        Ok(crate::store::merge_scan(rows, pending, limit, reverse))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    async fn commit(self: Box<Self>) -> Result<(), MetaError> {
        let SqliteTxn { conn, start_rev, reads, writes, .. } = *self;
        if writes.is_empty() {
            return Ok(());
        }
        blocking(&conn, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            for (key, seen) in &reads {
                let now = read_key(&tx, key)?.map(|(_, rev)| rev);
                if now != *seen {
                    return Err(MetaError::Conflict);
                }
            }
            if let Some(start) = start_rev {
                for key in writes.keys().filter(|k| !reads.contains_key(*k)) {
                    if matches!(read_key(&tx, key)?, Some((_, rev)) if rev > start) {
                        return Err(MetaError::Conflict);
                    }
                }
            }
            let rev = current_rev(&tx)? + 1;
            tx.execute("UPDATE revision SET rev = ?1 WHERE id = 0", [rev]).map_err(db_err)?;
            {
                let mut upsert = tx
                    .prepare_cached("INSERT OR REPLACE INTO kv (key, value, rev) VALUES (?1, ?2, ?3)")
                    .map_err(db_err)?;
                let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1").map_err(db_err)?;
                for (key, value) in &writes {
                    match value {
                        Some(v) => upsert.execute(params![key, v, rev]).map_err(db_err)?,
                        None => delete.execute([key]).map_err(db_err)?,
                    };
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("meta.db")).await.unwrap();
        crate::testing::conformance(&store).await;
    }

    #[tokio::test]
    async fn two_handles_on_one_file_see_each_other_and_conflict() {
        // Two handles stand in for two agent processes sharing the file.
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path().join("meta.db")).await.unwrap();
        let b = SqliteStore::open(dir.path().join("meta.db")).await.unwrap();
        crate::testing::two_clients(&a, &b).await;
    }

    #[tokio::test]
    async fn open_via_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x/meta.db").display());
        let store = crate::open(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert!(matches!(crate::open("mysql://x").await, Err(MetaError::InvalidUrl { .. })));
        assert!(matches!(crate::open("etcd://").await, Err(MetaError::InvalidUrl { .. })));
    }
}
