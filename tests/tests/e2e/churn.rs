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
use silt_client::{Acks, Client, Consumer, ConsumerConfig, Offset};

use crate::harness::stream::index_of;
use crate::harness::*;

const PARTITIONS: u32 = 6;

/// Kills (or stops) agent `i` while records are in flight, and brings it back.
async fn cycle(c: &mut TestCluster, i: usize, sender: &Background, graceful: bool) {
    let in_flight = sender.tally.total_in_flight();
    if graceful {
        assert!(c.terminate(i).success(), "agent {i} stopped cleanly");
    } else {
        c.kill9(i);
    }
    assert!(in_flight > 0, "records were in flight when agent {i} went down");
    let how = if graceful { "SIGTERM" } else { "kill -9" };
    c.wait_even("churn", &format!("after {how} of agent {i}")).await;
    c.launch(i);
    c.wait_even("churn", &format!("after agent {i} came back")).await;
}

async fn churn(builder: crate::harness::cluster::ClusterBuilder, acks: Acks) {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let mut c = builder.agents(3).start().await;
    c.client().await.create_topic("churn", PARTITIONS).await.unwrap();
    c.wait_even("churn", "at start").await;

    // A producer and a consumer run all along.
    let plan = Plan { acks, pin: Some(PARTITIONS), pause: (20, Duration::from_millis(5)), ..Default::default() };
    let sender = Background::start(c.config(), "churn", PARTITIONS, plan);
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (config, stop) = (c.config(), stop.clone());
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
                        seen.insert(
                            (r.partition, r.offset),
                            String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap(),
                        );
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cycle(&mut c, 1, &sender, false).await;
    cycle(&mut c, 2, &sender, true).await;
    cycle(&mut c, 0, &sender, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let produced = sender.finish().await;
    stop.store(true, Ordering::SeqCst);
    let seen = consumer.await.unwrap();
    eprintln!("sent {}, acknowledged {}, consumed {}", produced.sent, produced.acked.len(), seen.len());
    // Owners die with batches in flight; the producer sends those again to
    // the next owner, so none fails, and none is written twice.
    assert!(
        produced.failed.is_empty(),
        "{} records failed, first: {:?}",
        produced.failed.len(),
        produced.failed.first()
    );
    assert_eq!(produced.acked.len() as u64, produced.sent, "every record is acknowledged");
    assert_eq!(seen.len(), produced.acked.len(), "exactly the acknowledged records are consumed");

    // The log: every acknowledged record once, in send order, and (with
    // acks=durable) at the offset acknowledged. With acks=local a record
    // that its agent acknowledged from its WAL and never committed (it died
    // for good) was sent again, and sits at a later offset.
    let consumed: std::collections::HashSet<u64> = seen.values().map(|v| index_of(v)).collect();
    for (i, m) in &produced.acked {
        assert!(consumed.contains(i), "acknowledged record {i} was not consumed");
        if acks == Acks::Durable {
            let at = seen.get(&(m.partition, m.offset)).map(|v| index_of(v));
            assert_eq!(at, Some(*i), "acknowledged record {i} at {m:?} was not consumed there");
        }
    }
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut values = std::collections::HashSet::new();
    for ((p, _), v) in &seen {
        let i = index_of(v);
        assert!(values.insert(i), "{i} is in the log twice");
        if let Some(prev) = last.insert(*p, i) {
            assert!(prev < i, "partition {p}: {i} after {prev}");
        }
    }
    c.wait_even("churn", "at the end").await;
    for i in 0..3 {
        assert!(c.terminate(i).success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_a_shared_sqlite_file() {
    churn(TestCluster::builder().wal(1), Acks::Local).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_etcd_and_seaweedfs() {
    churn(TestCluster::builder().etcd().s3(), Acks::Durable).await;
}
