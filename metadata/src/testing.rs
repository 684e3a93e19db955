//! The conformance suite: every `MetaStore` backend runs it from its own tests.

#[cfg(feature = "etcd")]
use std::process::{Child, Command, Stdio};

use crate::store::{MetaStore, Transaction};
use crate::MetaError;

async fn put(store: &dyn MetaStore, key: &[u8], value: &[u8]) {
    let mut t = store.begin().await.unwrap();
    t.put(key.to_vec(), value.to_vec());
    t.commit().await.unwrap();
}

async fn get(store: &dyn MetaStore, key: &[u8]) -> Option<Vec<u8>> {
    store.begin().await.unwrap().get(key).await.unwrap().map(|b| b.to_vec())
}

async fn keys(t: &mut Box<dyn Transaction>, start: &[u8], end: &[u8], limit: usize, reverse: bool) -> Vec<Vec<u8>> {
    t.scan(start, end, limit, reverse).await.unwrap().into_iter().map(|(k, _)| k).collect()
}

/// Runs every check against one store. Keys are prefixed with `conf/` so the
/// suite can share a store with other data.
pub async fn conformance(store: &dyn MetaStore) {
    // Commit makes writes visible; dropping a transaction writes nothing.
    put(store, b"conf/a", b"1").await;
    assert_eq!(get(store, b"conf/a").await.as_deref(), Some(&b"1"[..]));
    {
        let mut t = store.begin().await.unwrap();
        t.put(b"conf/dropped".to_vec(), b"x".to_vec());
    }
    assert_eq!(get(store, b"conf/dropped").await, None);

    // A transaction reads its own writes, deletes included, before commit.
    let mut t = store.begin().await.unwrap();
    t.put(b"conf/b".to_vec(), b"2".to_vec());
    t.delete(b"conf/a".to_vec());
    assert_eq!(t.get(b"conf/b").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(t.get(b"conf/a").await.unwrap(), None);
    assert_eq!(get(store, b"conf/b").await, None, "uncommitted writes are invisible");
    t.commit().await.unwrap();
    assert_eq!(get(store, b"conf/a").await, None);
    assert_eq!(get(store, b"conf/b").await.as_deref(), Some(&b"2"[..]));

    // Batch get keeps the order of the keys asked for.
    let mut t = store.begin().await.unwrap();
    let got = t.batch_get(&[b"conf/b".to_vec(), b"conf/none".to_vec()]).await.unwrap();
    assert_eq!(got, vec![Some(bytes::Bytes::from_static(b"2")), None]);
    drop(t);

    // Scans: byte order, half-open ranges, limits, reverse, own writes merged.
    let mut t = store.begin().await.unwrap();
    for k in [&b"conf/s/\x00"[..], b"conf/s/\x01", b"conf/s/\x7f", b"conf/s/\x80", b"conf/s/\xff"] {
        t.put(k.to_vec(), k.to_vec());
    }
    t.commit().await.unwrap();
    let mut t = store.begin().await.unwrap();
    let all = keys(&mut t, b"conf/s/", b"conf/s0", 100, false).await;
    assert_eq!(
        all,
        vec![
            b"conf/s/\x00".to_vec(),
            b"conf/s/\x01".to_vec(),
            b"conf/s/\x7f".to_vec(),
            b"conf/s/\x80".to_vec(),
            b"conf/s/\xff".to_vec()
        ]
    );
    assert_eq!(keys(&mut t, b"conf/s/\x01", b"conf/s/\x80", 100, false).await.len(), 2, "end is exclusive");
    assert_eq!(keys(&mut t, b"conf/s/", b"conf/s0", 2, false).await, all[..2].to_vec());
    assert_eq!(keys(&mut t, b"conf/s/", b"conf/s0", 2, true).await, vec![all[4].clone(), all[3].clone()]);
    t.delete(b"conf/s/\x00".to_vec());
    t.put(b"conf/s/\x02".to_vec(), b"new".to_vec());
    assert_eq!(
        keys(&mut t, b"conf/s/", b"conf/s0", 2, false).await,
        vec![b"conf/s/\x01".to_vec(), b"conf/s/\x02".to_vec()],
        "scans merge the transaction's own writes"
    );
    assert!(keys(&mut t, b"conf/s0", b"conf/s/", 10, false).await.is_empty());
    drop(t);

    // get_for_update: a concurrent commit of the key makes commit fail and write nothing.
    put(store, b"conf/lease", b"epoch1").await;
    let mut t1 = store.begin().await.unwrap();
    assert_eq!(t1.get_for_update(b"conf/lease").await.unwrap().as_deref(), Some(&b"epoch1"[..]));
    put(store, b"conf/lease", b"epoch2").await;
    t1.put(b"conf/index".to_vec(), b"entry".to_vec());
    assert!(matches!(t1.commit().await, Err(MetaError::Conflict)));
    assert_eq!(get(store, b"conf/index").await, None, "a conflicted commit writes nothing");

    // The same for a key that was absent when read and created since.
    let mut t1 = store.begin().await.unwrap();
    assert_eq!(t1.get_for_update(b"conf/new").await.unwrap(), None);
    put(store, b"conf/new", b"theirs").await;
    t1.put(b"conf/new".to_vec(), b"mine".to_vec());
    assert!(matches!(t1.commit().await, Err(MetaError::Conflict)));
    assert_eq!(get(store, b"conf/new").await.as_deref(), Some(&b"theirs"[..]));

    // Batch reads for update keep the order asked for, and a later commit
    // of any key read, even one absent then, makes the commit fail.
    put(store, b"conf/bu1", b"1").await;
    let mut t1 = store.begin().await.unwrap();
    let got = t1.batch_get_for_update(&[b"conf/bu-none".to_vec(), b"conf/bu1".to_vec()]).await.unwrap();
    assert_eq!(got, vec![None, Some(bytes::Bytes::from_static(b"1"))]);
    put(store, b"conf/bu-none", b"now").await;
    t1.put(b"conf/bu-out".to_vec(), b"x".to_vec());
    assert!(matches!(t1.commit().await, Err(MetaError::Conflict)));
    assert_eq!(get(store, b"conf/bu-out").await, None);
    let mut t1 = store.begin().await.unwrap();
    t1.put(b"conf/bu1".to_vec(), b"mine".to_vec());
    let got = t1.batch_get_for_update(&[b"conf/bu1".to_vec(), b"conf/bu-none".to_vec()]).await.unwrap();
    assert_eq!(got[0].as_deref(), Some(&b"mine"[..]), "a batch read sees the transaction's own writes");
    put(store, b"conf/bu1", b"theirs").await;
    assert!(matches!(t1.commit().await, Err(MetaError::Conflict)));

    // Write-write: two transactions that read and then write the same key; the second loses.
    let mut t1 = store.begin().await.unwrap();
    let mut t2 = store.begin().await.unwrap();
    t1.get(b"conf/counter").await.unwrap();
    t2.get(b"conf/counter").await.unwrap();
    t1.put(b"conf/counter".to_vec(), b"1".to_vec());
    t2.put(b"conf/counter".to_vec(), b"2".to_vec());
    t1.commit().await.unwrap();
    assert!(matches!(t2.commit().await, Err(MetaError::Conflict)));
    assert_eq!(get(store, b"conf/counter").await.as_deref(), Some(&b"1"[..]));

    // Disjoint keys do not conflict.
    let mut t1 = store.begin().await.unwrap();
    let mut t2 = store.begin().await.unwrap();
    t1.get_for_update(b"conf/x").await.unwrap();
    t2.get_for_update(b"conf/y").await.unwrap();
    t1.put(b"conf/x".to_vec(), b"1".to_vec());
    t2.put(b"conf/y".to_vec(), b"1".to_vec());
    t1.commit().await.unwrap();
    t2.commit().await.unwrap();

    // Empty and large values survive.
    put(store, b"conf/empty", b"").await;
    assert_eq!(get(store, b"conf/empty").await.as_deref(), Some(&b""[..]));
    let big = vec![7u8; 1 << 20];
    put(store, b"conf/big", &big).await;
    assert_eq!(get(store, b"conf/big").await, Some(big));
}

/// Two clients of one store (two processes in production) see each other's
/// commits and conflict with each other.
pub async fn two_clients(a: &dyn MetaStore, b: &dyn MetaStore) {
    put(a, b"two/k", b"from a").await;
    assert_eq!(get(b, b"two/k").await.as_deref(), Some(&b"from a"[..]));
    let mut ta = a.begin().await.unwrap();
    ta.get_for_update(b"two/k").await.unwrap();
    put(b, b"two/k", b"from b").await;
    ta.put(b"two/k".to_vec(), b"a again".to_vec());
    assert!(matches!(ta.commit().await, Err(MetaError::Conflict)));
    assert_eq!(get(a, b"two/k").await.as_deref(), Some(&b"from b"[..]));
}

/// A real etcd on 127.0.0.1, stopped when dropped.
#[cfg(feature = "etcd")]
pub struct EtcdServer {
    child: Child,
    /// `127.0.0.1:PORT`, for `etcd://` URLs.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

#[cfg(feature = "etcd")]
/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[cfg(feature = "etcd")]
impl EtcdServer {
    /// Starts etcd on free ports with a private data folder.
    pub async fn start() -> EtcdServer {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
            .args(["--initial-cluster", &format!("default={p}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is not installed: install Debian's etcd-server (scripts/test does)");
        let etcd = EtcdServer { child, endpoint: format!("127.0.0.1:{client}"), _dir: dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return etcd;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("etcd did not start");
    }

    /// Its process id (to pause it, as an unreachable store would be).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[cfg(feature = "etcd")]
impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The catalog on a topic with more partitions than one transaction of a
/// store like etcd (128 keys by default) may touch: create, lease, commit a
/// flush over every partition with producer states, release, take over, delete.
pub async fn catalog_at_scale(store: std::sync::Arc<dyn MetaStore>) {
    use crate::catalog::{BatchMeta, FlushEntry, ProducerState, Segment};
    const P: u32 = 300;
    let c = crate::Catalog::new(store);
    let t = c.create_topic("wide", P, &[], 0).await.unwrap();
    assert!(matches!(c.create_topic("wide", 1, &[], 0).await, Err(crate::CatalogError::TopicExists(_))));
    assert_eq!(c.partitions(&t).await.unwrap().len(), P as usize);
    let ids: Vec<(u64, u32)> = (0..P).map(|p| (t.id, p)).collect();
    c.heartbeat("a", ("x", ""), 0, 0, 60_000).await.unwrap();
    let acquired = c.acquire_leases("a", "x", &ids, 0).await.unwrap();
    assert_eq!(acquired.taken.len(), P as usize);
    let held: Vec<(u64, u32, u64)> = acquired.taken.iter().map(|((t, p), l, _)| (*t, *p, l.epoch)).collect();
    // Another agent finds every lease held, and the holder sees them all.
    assert_eq!(c.acquire_leases("b", "y", &ids, 10).await.unwrap().held.len(), P as usize);
    assert_eq!(c.leases().await.unwrap().len(), P as usize);
    let state = |offset| ProducerState {
        epoch: 0,
        updated_ms: 1,
        batches: vec![BatchMeta { base_sequence: 0, last_sequence: 9, base_offset: offset, last_offset: offset + 9 }],
    };
    let entries: Vec<FlushEntry> = held
        .iter()
        .map(|&(topic_id, partition, epoch)| FlushEntry {
            topic_id,
            partition,
            epoch,
            segment: Segment {
                base_offset: 0,
                last_offset: 9,
                object: "o".into(),
                start: u64::from(partition) * 10,
                len: 10,
                max_timestamp: 0,
            },
            producers: vec![(1, state(0)), (2, state(0))],
            expired: vec![],
        })
        .collect();
    assert_eq!(c.commit_flush("a", &entries).await.unwrap(), Default::default());
    // Committed again (an ambiguous first attempt): nothing changes.
    assert_eq!(c.commit_flush("a", &entries).await.unwrap(), Default::default());
    assert!(c.partitions(&t).await.unwrap().iter().all(|(s, _)| s.high_watermark == 10));
    assert_eq!(c.producers(t.id, P - 1).await.unwrap().len(), 2);
    // Released in as many transactions as it takes, and taken by another.
    assert_eq!(c.release_leases("a", &held).await.unwrap().len(), P as usize);
    let taken = c.acquire_leases("b", "y", &ids, 20).await.unwrap().taken;
    assert!(taken.len() == P as usize && taken.iter().all(|(_, l, s)| l.epoch == 2 && s.high_watermark == 10));
    c.delete_topic("wide", 0).await.unwrap();
    assert!(c.list_topics().await.unwrap().is_empty());
    assert!(c.segments(t.id, P - 1, 0, 10).await.unwrap().is_empty());
    assert!(c.producers(t.id, 0).await.unwrap().is_empty());
    assert!(c.partition(t.id, 0).await.unwrap().is_none());
}
