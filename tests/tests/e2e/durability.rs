//! kill -9 at any moment loses no acknowledged record, duplicates none,
//! and moves none to another offset.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use silt_client::{Client, ClientConfig, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

#[test]
fn records_survive_kill_9_at_the_same_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s1");
    let mut agent = AgentProcess::start(&data, &[]);
    agent.ok(&["topic", "create", "d", "--partitions", "3"], None);
    agent.ok(&["produce", "d"], Some(&seq(20_000)));
    let before = agent.ok(&["consume", "d", "--from-beginning", "--max-messages", "20000", "--print-offset"], None);
    agent.kill9();

    let addr = agent.addr.clone();
    drop(agent);
    let mut agent = AgentProcess::start_on(&data, &addr, &[]);
    let after = agent.ok(&["consume", "d", "--from-beginning", "--max-messages", "20000", "--print-offset"], None);
    let sorted = |b: &[u8]| parse_offsets(b).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&before), sorted(&after), "same records at the same offsets after kill -9");
    assert_eq!(sorted(&after).len(), 20_000);
    // The restarted agent keeps appending after the old records.
    agent.ok(&["produce", "d", "--partition", "0"], Some(b"new\n"));
    let out = agent
        .ok(&["consume", "d", "--partition", "0", "--from-beginning", "--timeout-ms", "500", "--print-offset"], None);
    let p0 = parse_offsets(&out);
    assert_dense_in_order(&p0);
    assert_eq!(p0.last().unwrap().2, "new");
    assert!(agent.terminate().success(), "SIGTERM stops the agent cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s1");
    let mut agent = AgentProcess::start(&data, &["--flush-interval", "30ms"]);
    agent.ok(&["topic", "create", "m", "--partitions", "3"], None);
    let config = ClientConfig { agent: agent.addr.clone(), ca: Some(agent.ca.clone()), ..Default::default() };
    let client = Client::connect(config.clone()).await.unwrap();
    let producer = Producer::new(client, "m", ProducerConfig::default()).await.unwrap();

    // Produce continuously, remembering every acknowledgement, and kill the
    // agent while records are in flight.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        for _ in 0..50 {
            let value = format!("v{sent}");
            let d = producer.send(ProducerRecord::new(value.clone())).await.unwrap();
            let tx = acked_tx.clone();
            waiters.spawn(async move {
                if let Ok(meta) = d.await {
                    let _ = tx.send((meta.partition, meta.offset, value));
                }
            });
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    agent.kill9();
    drop(producer);
    // Records not acknowledged by now never will be: the agent is gone, and
    // only acknowledged records are promised.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while waiters.join_next().await.is_some() {} }).await;
    waiters.abort_all();
    drop(acked_tx);
    let mut acked = BTreeMap::new();
    while let Some((p, o, v)) = acked_rx.recv().await {
        assert!(acked.insert((p, o), v).is_none(), "two records acknowledged at one offset");
    }
    assert!(acked.len() > 100, "the test produced while the agent was up ({} acked of {sent})", acked.len());

    let addr = agent.addr.clone();
    drop(agent);
    let agent = tokio::task::spawn_blocking(move || AgentProcess::start_on(&data, &addr, &[])).await.unwrap();
    let client = Client::connect(config).await.unwrap();
    let d = client.describe_topic("m").await.unwrap();
    let total: i64 = d.partitions.iter().map(|p| p.high_watermark).sum();
    let consumer = Consumer::new(client, "m", ConsumerConfig::default()).await.unwrap();
    let mut stream =
        consumer.stream(&[(0, Offset::Earliest), (1, Offset::Earliest), (2, Offset::Earliest)]).await.unwrap();
    let mut log = BTreeMap::new();
    let mut values = BTreeSet::new();
    for _ in 0..total {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        let v = String::from_utf8(r.value.to_vec()).unwrap();
        assert!(values.insert(v.clone()), "{v} is in the log twice");
        log.insert((r.partition, r.offset), v);
    }
    for (at, v) in &acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
    drop(agent);
}

/// Flips one byte of a stored object: reads report corruption, and never
/// return the damaged batch's records.
#[test]
fn a_corrupted_object_is_reported_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s1");
    let mut agent = AgentProcess::start(&data, &[]);
    agent.ok(&["topic", "create", "c"], None);
    agent.ok(&["produce", "c", "--batch-bytes", "2KiB"], Some(&seq(2000)));
    assert!(agent.terminate().success());

    // Damage the record count of the first batch of the first object.
    let mut objects: Vec<_> = walk(&data.join("objects"));
    objects.sort();
    let path = &objects[0];
    let mut bytes = std::fs::read(path).unwrap();
    let entries = silt_agent::format::object::read_footer(&bytes).unwrap();
    let at = entries[0].start as usize + 20;
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();

    let addr = agent.addr.clone();
    drop(agent);
    let agent = AgentProcess::start_on(&data, &addr, &[]);
    let out = agent.cli(&["consume", "c", "--from-beginning", "--max-messages", "2000"]);
    assert!(!out.status.success(), "reading a corrupted object must fail");
    assert!(stderr(&out).contains("CRC mismatch"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "records of the damaged batch (the first) were returned");

    // The base offset is outside the CRC (the agent stamps it): a damaged one
    // is caught by the index check instead.
    let mut agent = agent;
    assert!(agent.terminate().success());
    bytes[at] ^= 0x01;
    bytes[entries[0].start as usize + 7] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
    drop(agent);
    let agent = AgentProcess::start_on(&data, &addr, &[]);
    let out = agent.cli(&["consume", "c", "--from-beginning", "--max-messages", "2000"]);
    assert!(!out.status.success(), "reading a batch at the wrong offset must fail");
    assert!(stderr(&out).contains("was due"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "silt") {
            out.push(p);
        }
    }
    out
}

/// The agent on etcd metadata: the same walkthrough, through kill -9.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_etcd_metadata_keeps_everything_through_kill_9() {
    let etcd = silt_metadata::testing::EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("etcd://{}", etcd.endpoint);
    let mut agent = AgentProcess::start_on(&data, &addr, &["--metadata", &url]);
    agent.ok(&["topic", "create", "e", "--partitions", "3"], None);
    agent.ok(&["produce", "e"], Some(&seq(5000)));
    let before = agent.ok(&["consume", "e", "--from-beginning", "--max-messages", "5000", "--print-offset"], None);
    agent.kill9();
    drop(agent);
    let agent = AgentProcess::start_on(&data, &addr, &["--metadata", &url]);
    let after = agent.ok(&["consume", "e", "--from-beginning", "--max-messages", "5000", "--print-offset"], None);
    let sorted = |b: &[u8]| parse_offsets(b).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&before), sorted(&after));
    assert_eq!(
        sorted(&after).iter().map(|r| r.2.parse::<u64>().unwrap()).collect::<BTreeSet<_>>(),
        (1..=5000).collect()
    );
    assert!(!data.join("metadata.db").exists(), "the SQLite file was used instead of etcd");
}
