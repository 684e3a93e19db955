//! acks=local: acknowledged after an fsync to the WAL on the cache dirs;
//! kill -9 loses nothing acknowledged; a broken cache dir is survived. The
//! agents write their objects to a real S3 server (SeaweedFS).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use silt_client::{
    Acks, Client, ClientConfig, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
};

use crate::harness::*;

fn wal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("wal")).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// A unique value of about `bytes` bytes that compresses poorly.
fn value(i: u64, bytes: usize) -> String {
    let mut s = format!("v{i}-");
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while s.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push((b'a' + (x % 26) as u8) as char);
    }
    s
}

/// Produces with acks=local until `for_how_long` has passed, then kills the
/// agent. Returns every acknowledged (partition, offset) -> value.
async fn produce_then_kill(
    agent: &mut AgentProcess,
    topic: &str,
    for_how_long: Duration,
    value_bytes: usize,
    before_kill: impl FnOnce(&AgentProcess),
) -> BTreeMap<(u32, i64), String> {
    let config = ClientConfig { agent: agent.addr.clone(), ca: Some(agent.ca.clone()), ..Default::default() };
    let client = Client::connect(config).await.unwrap();
    let producer =
        Producer::new(client, topic, ProducerConfig { acks: Acks::Local, ..Default::default() }).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < for_how_long {
        for _ in 0..50 {
            let value = value(i, value_bytes);
            i += 1;
            let d = producer.send(ProducerRecord::new(value.clone())).await.unwrap();
            let tx = tx.clone();
            waiters.spawn(async move {
                if let Ok(m) = d.await {
                    let _ = tx.send(((m.partition, m.offset), value));
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    before_kill(agent);
    agent.kill9();
    drop(producer);
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while waiters.join_next().await.is_some() {} }).await;
    waiters.abort_all();
    drop(tx);
    let mut acked = BTreeMap::new();
    while let Some((at, v)) = rx.recv().await {
        assert!(acked.insert(at, v).is_none(), "two acknowledgements for one offset");
    }
    acked
}

/// The whole log, once every acknowledged record is committed: a restarted
/// agent replays its WAL and commits it shortly after it starts answering.
async fn read_all(
    agent: &AgentProcess,
    topic: &str,
    partitions: u32,
    acked: &BTreeMap<(u32, i64), String>,
) -> BTreeMap<(u32, i64), String> {
    let config = ClientConfig { agent: agent.addr.clone(), ca: Some(agent.ca.clone()), ..Default::default() };
    let client = Client::connect(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let d = client.describe_topic(topic).await.unwrap();
        let short = acked.keys().find(|(p, o)| d.partitions[*p as usize].high_watermark <= *o);
        match short {
            None => break d,
            Some(at) => assert!(Instant::now() < deadline, "acknowledged offset {at:?} was never committed"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total: i64 = d.partitions.iter().map(|p| p.high_watermark).sum();
    let consumer = Consumer::new(client, topic, ConsumerConfig::default()).await.unwrap();
    let all: Vec<_> = (0..partitions).map(|p| (p, Offset::Earliest)).collect();
    let mut stream = consumer.stream(&all).await.unwrap();
    let mut log = BTreeMap::new();
    let mut values = BTreeSet::new();
    let mut next = vec![0i64; partitions as usize];
    for _ in 0..total {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(r.offset, next[r.partition as usize], "offsets are dense and in order");
        next[r.partition as usize] += 1;
        let v = String::from_utf8(r.value.to_vec()).unwrap();
        assert!(values.insert(v.clone()), "{v} is in the log twice");
        log.insert((r.partition, r.offset), v);
    }
    log
}

fn start(s3: &S3Server, data: &std::path::Path, addr: &str, flags: &[&str]) -> AgentProcess {
    let mut all: Vec<String> = s3.agent_flags("wal");
    all.extend(flags.iter().map(|f| f.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    AgentProcess::start_with_env(data, addr, &all, &s3.aws_env())
}

fn objects_written(agent: &AgentProcess) -> u64 {
    let out = String::from_utf8(agent.ok(&["stats"], None)).unwrap();
    out.lines().find_map(|l| l.strip_prefix("objects_written ")).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_local_survive_kill_9_through_the_wal() {
    let s3 = S3Server::start("seaweedfs");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let (c1, c2) = (dir.path().join("c1"), dir.path().join("c2"));
    // Nothing reaches the object store before the kill: only the WAL holds the data.
    let flags = ["--cache-dir", c1.to_str().unwrap(), "--cache-dir", c2.to_str().unwrap(), "--flush-interval", "60s"];
    let mut agent = start(&s3, &data, &addr, &flags);
    agent.ok(&["topic", "create", "l", "--partitions", "4"], None);
    let check = |a: &AgentProcess| {
        assert_eq!(objects_written(a), 0, "a flush happened; the test would not exercise the WAL");
    };
    let acked = produce_then_kill(&mut agent, "l", Duration::from_millis(1000), 0, check).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    assert!(!wal_files(&c1).is_empty() && !wal_files(&c2).is_empty(), "the WAL is striped over both dirs");
    let before: Vec<_> = [wal_files(&c1), wal_files(&c2)].concat();

    drop(agent);
    let flags = ["--cache-dir", c1.to_str().unwrap(), "--cache-dir", c2.to_str().unwrap()];
    let agent = start(&s3, &data, &addr, &flags);
    let log = read_all(&agent, "l", 4, &acked).await;
    for (at, v) in &acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
    // Once replayed and committed, the old WAL files are freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while before.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "replayed WAL files were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_cache_dir_loses_nothing_acknowledged() {
    let s3 = S3Server::start("seaweedfs");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let (good, broken) = (dir.path().join("good"), dir.path().join("broken"));
    std::fs::write(&broken, b"a file where a folder should be").unwrap();
    let flags =
        ["--cache-dir", good.to_str().unwrap(), "--cache-dir", broken.to_str().unwrap(), "--flush-interval", "200ms"];
    let mut agent = start(&s3, &data, &addr, &flags);
    agent.ok(&["topic", "create", "b", "--partitions", "4"], None);
    let acked = produce_then_kill(&mut agent, "b", Duration::from_millis(1000), 0, |_| {}).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    let partitions: BTreeSet<u32> = acked.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "partitions on both stripes were served");
    let log_text = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log_text.contains("cannot open a WAL file"), "no clear error for the broken dir:\n{log_text}");

    drop(agent);
    let agent = start(&s3, &data, &addr, &flags);
    let log = read_all(&agent, "b", 4, &acked).await;
    for (at, v) in &acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
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
    let s3 = S3Server::start("seaweedfs");
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let good = dir.path().join("good");
    let flags =
        ["--cache-dir", good.to_str().unwrap(), "--cache-dir", full.0.to_str().unwrap(), "--flush-interval", "200ms"];
    let mut agent = start(&s3, &data, &addr, &flags);
    agent.ok(&["topic", "create", "f", "--partitions", "4"], None);
    // 512-byte values that do not compress: the 1 MiB disk fills quickly.
    let acked = produce_then_kill(&mut agent, "f", Duration::from_millis(1500), 512, |_| {}).await;
    assert!(acked.len() > 1000, "only {} records were acknowledged", acked.len());
    let partitions: BTreeSet<u32> = acked.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "partitions on both stripes were served");
    let log_text = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log_text.contains("No space left on device"), "the full disk was never hit or not reported:\n{log_text}");

    drop(agent);
    let agent = start(&s3, &data, &addr, &flags);
    let log = read_all(&agent, "f", 4, &acked).await;
    for (at, v) in &acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
    drop(agent);
    drop(full);
}
