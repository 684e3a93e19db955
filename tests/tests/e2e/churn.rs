//! Three agents as separate processes, continuous produce and consume on
//! six partitions while agents are killed (-9), stopped (SIGTERM) and
//! restarted one at a time: every record is acknowledged and consumed
//! exactly once, in per-partition order, and the spread comes back even.
//! On SQLite the producer uses acks=local (agents with a WAL), on etcd +
//! SeaweedFS acks=durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use silt_client::{
    Acks, Client, ClientConfig, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
};

use crate::harness::*;

const PARTITIONS: u32 = 6;

struct Cluster {
    dir: std::path::PathBuf,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    agents: Vec<Option<AgentProcess>>,
    addrs: Vec<String>,
    /// Each agent has a cache dir (a WAL) in its data dir.
    wal: bool,
}

impl Cluster {
    fn start(dir: &std::path::Path, store_flags: Vec<String>, env: Vec<(String, String)>, wal: bool) -> Cluster {
        let mut flags = store_flags;
        flags.extend(
            ["--tls-dir", &dir.join("tls").display().to_string(), "--lease-ttl", "2s", "--flush-interval", "50ms"]
                .map(String::from),
        );
        let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let mut c = Cluster { dir: dir.to_path_buf(), flags, env, agents: vec![None, None, None], addrs, wal };
        for i in 0..3 {
            c.launch(i);
        }
        c
    }

    fn launch(&mut self, i: usize) {
        let data = self.dir.join(format!("agent{i}"));
        let cache = data.join("nvme").display().to_string();
        let mut flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        if self.wal {
            flags.extend(["--cache-dir", &cache]);
        }
        self.agents[i] = Some(AgentProcess::start_with_env(&data, &self.addrs[i], &flags, &self.env));
    }

    fn any(&self) -> &AgentProcess {
        self.agents.iter().flatten().next().expect("an agent is up")
    }

    fn owners(&self) -> Vec<String> {
        let out = String::from_utf8(self.any().ok(&["topic", "describe", "churn"], None)).unwrap();
        out.lines().skip(2).map(|l| l.split_whitespace().nth(1).unwrap().to_string()).collect()
    }

    fn wait_even(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owners = self.owners();
            let mut count: HashMap<&String, usize> = HashMap::new();
            for o in &owners {
                *count.entry(o).or_default() += 1;
            }
            let up: Vec<&String> =
                self.agents.iter().zip(&self.addrs).filter(|(a, _)| a.is_some()).map(|(_, x)| x).collect();
            if up.iter().all(|a| count.get(a).copied().unwrap_or(0) == owners.len() / up.len()) {
                return;
            }
            assert!(Instant::now() < deadline, "no even spread {what}: {owners:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

async fn churn(store_flags: Vec<String>, env: Vec<(String, String)>, acks: Acks) {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let cluster = tokio::task::spawn_blocking(move || {
        let c = Cluster::start(&d, store_flags, env, acks == Acks::Local);
        c.any().ok(&["topic", "create", "churn", "--partitions", &PARTITIONS.to_string()], None);
        c.wait_even("at start");
        c
    })
    .await
    .unwrap();
    let config =
        ClientConfig { agent: cluster.addrs.join(","), ca: Some(cluster.dir.join("tls/ca.pem")), ..Default::default() };

    // A producer and a consumer run all along.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (config, stop) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::connect(config).await.unwrap();
            let config = ProducerConfig { acks, ..Default::default() };
            let producer = Arc::new(Producer::new(client, "churn", config).await.unwrap());
            let mut waits = tokio::task::JoinSet::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let p = (i % u64::from(PARTITIONS)) as u32;
                let value = format!("{i}");
                let d = producer.send(ProducerRecord::new(value.clone()).with_partition(p)).await.unwrap();
                waits.spawn(async move { d.await.map(|m| ((m.partition, m.offset), value)) });
                i += 1;
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            while let Some(r) = waits.join_next().await {
                match r.unwrap() {
                    Ok(a) => acked.push(a),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            // acks=local: wait until the last batches are committed too.
            Arc::try_unwrap(producer).ok().expect("no other handle").close().await.unwrap();
            (i, acked, failed)
        })
    };
    let consumer = {
        let (config, stop) = (config.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::connect(config).await.unwrap();
            let consumer = Consumer::new(client, "churn", ConsumerConfig::default()).await.unwrap();
            let all: Vec<_> = (0..PARTITIONS).map(|p| (p, Offset::Earliest)).collect();
            let mut stream = consumer.stream(&all).await.unwrap();
            let mut seen: BTreeMap<(u32, i64), String> = BTreeMap::new();
            let mut next = vec![0i64; PARTITIONS as usize];
            let mut idle_since = None;
            loop {
                match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                    Ok(Some(Ok(r))) => {
                        idle_since = None;
                        assert_eq!(r.offset, next[r.partition as usize], "the consumer saw a gap or a repeat");
                        next[r.partition as usize] += 1;
                        seen.insert((r.partition, r.offset), String::from_utf8(r.value.to_vec()).unwrap());
                    }
                    Ok(Some(Err(e))) => panic!("the consumer failed: {e}"),
                    Ok(None) => panic!("the consumer's stream ended"),
                    Err(_) if stop.load(Ordering::SeqCst) => {
                        // Stopped producing: done once nothing has come for 8 s.
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(8) {
                            return seen;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };

    // Kill one, stop another, kill a third; restart each.
    let mut cluster = tokio::task::spawn_blocking(move || {
        let mut c = cluster;
        std::thread::sleep(Duration::from_millis(1500));
        c.agents[1].as_mut().unwrap().kill9();
        c.agents[1] = None;
        c.wait_even("after kill -9 of agent 1");
        c.launch(1);
        c.wait_even("after agent 1 came back");
        let status = c.agents[2].as_mut().unwrap().terminate();
        assert!(status.success());
        c.agents[2] = None;
        c.wait_even("after SIGTERM of agent 2");
        c.launch(2);
        c.wait_even("after agent 2 came back");
        c.agents[0].as_mut().unwrap().kill9();
        c.agents[0] = None;
        c.wait_even("after kill -9 of agent 0");
        c.launch(0);
        c.wait_even("after agent 0 came back");
        c
    })
    .await
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (sent, acked, failed) = producer.await.unwrap();
    let seen = consumer.await.unwrap();
    eprintln!("sent {sent}, acknowledged {}, consumed {}", acked.len(), seen.len());
    // Owners die with batches in flight; the producer sends those again to
    // the next owner, so none fails, and none is written twice.
    assert!(failed.is_empty(), "{} records failed, first: {:?}", failed.len(), failed.first());
    assert_eq!(acked.len() as u64, sent, "every record is acknowledged");
    assert_eq!(seen.len(), acked.len(), "exactly the acknowledged records are consumed");

    // The log: every acknowledged record once, in send order, and (with
    // acks=durable) at the offset acknowledged. With acks=local a record
    // that its agent acknowledged from its WAL and never committed (it died
    // for good) was sent again, and sits at a later offset.
    let consumed: std::collections::HashSet<&String> = seen.values().collect();
    for (at, v) in &acked {
        assert!(consumed.contains(v), "acknowledged record {v} was not consumed");
        if acks == Acks::Durable {
            assert_eq!(seen.get(at), Some(v), "acknowledged record {v} at {at:?} was not consumed there");
        }
    }
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut values = std::collections::HashSet::new();
    for ((p, _), v) in &seen {
        let i: u64 = v.parse().unwrap();
        assert!(values.insert(i), "{i} is in the log twice");
        if let Some(prev) = last.insert(*p, i) {
            assert!(prev < i, "partition {p}: {i} after {prev}");
        }
    }
    tokio::task::spawn_blocking(move || {
        cluster.wait_even("at the end");
        for a in cluster.agents.iter_mut().flatten() {
            assert!(a.terminate().success());
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_a_shared_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let flags = vec![
        "--metadata".into(),
        format!("sqlite://{}", dir.path().join("meta.db").display()),
        "--object-store".into(),
        format!("file://{}", dir.path().join("objects").display()),
    ];
    churn(flags, vec![], Acks::Local).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_etcd_and_seaweedfs() {
    let etcd = silt_metadata::testing::EtcdServer::start().await;
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("seaweedfs")).await.unwrap();
    let mut flags = s3.agent_flags("churn");
    flags.extend(["--metadata".into(), format!("etcd://{}", etcd.endpoint)]);
    churn(flags, s3.aws_env(), Acks::Durable).await;
}
