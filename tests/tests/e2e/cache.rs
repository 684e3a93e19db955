//! The read cache: the same historical range read twice costs one GET,
//! served the second time from the cache dirs' disks.

use std::time::Duration;

use futures::StreamExt;
use silt_client::{Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

async fn read_everything(agent: &TestAgent, n: usize) -> Vec<String> {
    let consumer = Consumer::new(agent.client().await, "h", ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        out.push(String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_historical_read_costs_one_get() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("nvme0");
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), move |a| {
        a.cache_dirs = vec![cache_dir];
        a.recent_cache_bytes = 0; // no tail memory: every read goes through the read cache
        a.cache_memory = 1024; // too small to hold a range: hits come from disk
        a.cache_disk = 64 << 20;
    })
    .await;
    let client = agent.client().await;
    client.create_topic("h", 1).await.unwrap();
    let producer = Producer::new(client, "h", ProducerConfig::default()).await.unwrap();
    let n = 3000;
    for round in 0..3 {
        for i in 0..n / 3 {
            let _ = producer.send(ProducerRecord::new(format!("r{round}-{i}"))).await.unwrap();
        }
        producer.flush().await.unwrap(); // one object per round
    }
    let stats = || agent.agent.as_ref().unwrap().read_stats();
    let before = stats();
    let first = read_everything(&agent, n).await;
    let after_first = stats();
    assert!(after_first.gets > before.gets, "the first read fetched from the object store");
    tokio::time::sleep(Duration::from_millis(500)).await; // let the disk tier write
    let second = read_everything(&agent, n).await;
    let after_second = stats();
    assert_eq!(first, second);
    assert_eq!(after_second.gets, after_first.gets, "the second read sent no GET");
    assert!(after_second.cache_hits > after_first.cache_hits);
    let on_disk = std::fs::read_dir(dir.path().join("nvme0/cache")).unwrap().count();
    assert!(on_disk > 0, "the disk tier holds the ranges");
    eprintln!(
        "first read: {} GETs; second read: {} cache hits, 0 GETs",
        after_first.gets - before.gets,
        after_second.cache_hits - after_first.cache_hits
    );
    agent.stop().await;
}
