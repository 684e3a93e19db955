//! acks=local: acknowledged after an fsync to the WAL on the cache dirs;
//! kill -9 loses nothing acknowledged; a broken cache dir is survived;
//! acks=durable batches skip the WAL. The agents write their objects to a
//! real S3 server (SeaweedFS).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use silt_client::{Acks, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

fn wal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("wal")).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// One agent on SeaweedFS, not started yet: tests start it with their cache dirs.
async fn s3_agent() -> TestCluster {
    TestCluster::builder().s3().launch(0).start().await
}

/// Produces to `topic` with acks=local for `for_how_long`, runs `before_kill`,
/// then kills the agent while records are in flight. Returns every
/// acknowledged (partition, offset) -> value.
async fn produce_then_kill(
    c: &mut TestCluster,
    topic: &str,
    for_how_long: Duration,
    value_bytes: usize,
    before_kill: impl AsyncFnOnce(&TestCluster),
) -> std::collections::BTreeMap<(u32, i64), String> {
    let plan = Plan { acks: Acks::Local, value_bytes, ..Default::default() };
    let sender = Background::start(c.config(), topic, 4, plan);
    tokio::time::sleep(for_how_long).await;
    before_kill(c).await;
    let in_flight = sender.tally.total_in_flight();
    c.kill9(0);
    assert!(in_flight > 0, "records were in flight at the kill");
    let produced = sender.abandon().await;
    produced.by_offset(value_bytes)
}

/// The whole log once every acknowledged record is committed; checks each
/// acknowledged record is there, at the offset it was acknowledged at.
async fn assert_kept(c: &TestCluster, topic: &str, acked: &std::collections::BTreeMap<(u32, i64), String>) {
    c.wait_committed(topic, acked.keys().copied()).await;
    let log = c.log(topic, 4).await;
    for (at, v) in acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_local_survive_kill_9_through_the_wal() {
    let mut c = s3_agent().await;
    let (c1, c2) = (c.dir.path().join("c1"), c.dir.path().join("c2"));
    let dirs = ["--cache-dir", c1.to_str().unwrap(), "--cache-dir", c2.to_str().unwrap()];
    // Nothing reaches the object store before the kill: only the WAL holds the data.
    c.launch_with(0, &[&dirs[..], &["--flush-interval", "60s"]].concat());
    c.client().await.create_topic("l", 4).await.unwrap();
    let check = async |c: &TestCluster| {
        let s = c.stats(0).await;
        assert_eq!(s["objects_written"], 0, "a flush happened; the test would not exercise the WAL");
        assert!(s["produced_records"] > 0 && s["committed_records"] == 0, "records wait in the WAL: {s:?}");
    };
    let acked = produce_then_kill(&mut c, "l", Duration::from_millis(1000), 0, check).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    assert!(!wal_files(&c1).is_empty() && !wal_files(&c2).is_empty(), "the WAL is striped over both dirs");
    let before: Vec<_> = [wal_files(&c1), wal_files(&c2)].concat();

    c.launch_with(0, &dirs);
    assert_kept(&c, "l", &acked).await;
    // Once replayed and committed, the old WAL files are freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while before.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "replayed WAL files were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_cache_dir_loses_nothing_acknowledged() {
    let mut c = s3_agent().await;
    let (good, broken) = (c.dir.path().join("good"), c.dir.path().join("broken"));
    std::fs::write(&broken, b"a file where a folder should be").unwrap();
    let flags =
        ["--cache-dir", good.to_str().unwrap(), "--cache-dir", broken.to_str().unwrap(), "--flush-interval", "200ms"];
    c.launch_with(0, &flags);
    c.client().await.create_topic("b", 4).await.unwrap();
    let acked = produce_then_kill(&mut c, "b", Duration::from_millis(1000), 0, async |_| {}).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    let partitions: BTreeSet<u32> = acked.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "partitions on both stripes were served");
    let log_text = std::fs::read_to_string(c.log_file(0)).unwrap();
    assert!(log_text.contains("cannot open a WAL file"), "no clear error for the broken dir:\n{log_text}");

    c.launch_with(0, &flags);
    assert_kept(&c, "b", &acked).await;
}

/// A tmpfs of a fixed size, unmounted when dropped.
struct TinyFs(std::path::PathBuf);

impl TinyFs {
    /// None (with a notice) where this user may not mount.
    fn mount(dir: std::path::PathBuf, size: &str) -> Option<TinyFs> {
        std::fs::create_dir_all(&dir).unwrap();
        let uid = std::process::Command::new("id").arg("-u").output().unwrap().stdout;
        if String::from_utf8_lossy(&uid).trim() != "0" {
            eprintln!("NOTICE: not root, so no tmpfs can be mounted: the full-disk test is skipped");
            return None;
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs at {} failed", dir.display());
        Some(TinyFs(dir))
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_dir_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(full) = TinyFs::mount(dir.path().join("full"), "1m") else { return };
    let mut c = s3_agent().await;
    let good = c.dir.path().join("good");
    let flags =
        ["--cache-dir", good.to_str().unwrap(), "--cache-dir", full.0.to_str().unwrap(), "--flush-interval", "200ms"];
    c.launch_with(0, &flags);
    c.client().await.create_topic("f", 4).await.unwrap();
    // 512-byte values that do not compress: the 1 MiB disk fills quickly.
    let acked = produce_then_kill(&mut c, "f", Duration::from_millis(1500), 512, async |_| {}).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    let partitions: BTreeSet<u32> = acked.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "partitions on both stripes were served");
    let log_text = std::fs::read_to_string(c.log_file(0)).unwrap();
    assert!(log_text.contains("No space left on device"), "the full disk was never hit or not reported:\n{log_text}");

    c.launch_with(0, &flags);
    assert_kept(&c, "f", &acked).await;
    drop(c);
    drop(full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_durable_skip_the_wal_and_keep_their_place_beside_acks_local() {
    let mut c = s3_agent().await;
    let cache = c.dir.path().join("c1");
    c.launch_with(0, &["--cache-dir", cache.to_str().unwrap(), "--flush-interval", "200ms"]);
    let client = c.client().await;
    client.create_topic("m", 1).await.unwrap();
    let producer = async |acks| {
        let config = ProducerConfig { acks, batch_bytes: 2048, ..Default::default() };
        Producer::new(client.clone(), "m", config).await.unwrap()
    };
    let (durable, local) = (producer(Acks::Durable).await, producer(Acks::Local).await);
    let mut deliveries = Vec::new();
    for i in 0..300 {
        deliveries.push(durable.send(ProducerRecord::new(format!("d{i}"))).await.unwrap());
    }
    durable.flush().await.unwrap();
    let s = c.stats(0).await;
    assert_eq!((s["wal_bytes"], s["wal_fsyncs"]), (0, 0), "acks=durable batches were written to the WAL: {s:?}");
    assert_eq!(s["committed_records"], 300);

    // Both kinds on one partition: every batch is answered, none is lost or
    // moved, and acks=local still goes through the WAL.
    for i in 300..1300 {
        deliveries.push(durable.send(ProducerRecord::new(format!("d{i}"))).await.unwrap());
        deliveries.push(local.send(ProducerRecord::new(format!("l{i}"))).await.unwrap());
    }
    let (a, b) = tokio::join!(durable.flush(), local.flush());
    a.unwrap();
    b.unwrap();
    let mut acked = std::collections::BTreeMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let m = d.await.unwrap();
        assert!(acked.insert(m.offset, i).is_none(), "two records acknowledged at offset {}", m.offset);
    }
    assert!(c.stats(0).await["wal_bytes"] > 0, "acks=local batches skipped the WAL");
    c.wait_committed("m", acked.keys().map(|&o| (0, o))).await;
    let log = c.log("m", 1).await;
    assert_eq!(log.len(), 2300);
    let (mut d, mut l) = (Vec::new(), Vec::new());
    for v in log.values() {
        let (kind, n) = v.split_at(1);
        let n: u32 = n.parse().unwrap();
        if kind == "d" {
            d.push(n)
        } else {
            l.push(n)
        }
    }
    assert_eq!(d, (0..1300).collect::<Vec<_>>(), "acks=durable records out of order or missing");
    assert_eq!(l, (300..1300).collect::<Vec<_>>(), "acks=local records out of order or missing");
}
