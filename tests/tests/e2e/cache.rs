//! The read cache: the same historical range read twice costs one GET,
//! served the second time from the cache dirs' disks; and a scan of
//! history does not push the recent tail out of memory; a range that fails
//! its CRCs is never kept.

use std::time::Duration;

use futures::StreamExt;
use silt_client::{Compression, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

async fn read_everything(agent: &TestAgent, n: usize) -> Vec<String> {
    read_from(agent, "h", Offset::Earliest, n).await
}

async fn read_from(agent: &TestAgent, topic: &str, from: Offset, n: usize) -> Vec<String> {
    let consumer = Consumer::new(agent.client().await, topic, ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, from)]).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_scan_leaves_the_tail_in_memory() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.recent_cache_bytes = 3 << 20; // the tail: the last two or three objects
        a.cache_memory = 512 << 10; // far smaller than the history scanned
    })
    .await;
    let client = agent.client().await;
    client.create_topic("s", 1).await.unwrap();
    let config = ProducerConfig { compression: Compression::None, ..Default::default() };
    let producer = Producer::new(client, "s", config).await.unwrap();
    // Ten objects of about 1 MiB: 1000 records of 1 KiB each.
    let (rounds, per) = (10, 1000);
    let value = |round: usize, i: usize| format!("{round}-{i}-{}", "x".repeat(1000));
    for round in 0..rounds {
        for i in 0..per {
            let _ = producer.send(ProducerRecord::new(value(round, i))).await.unwrap();
        }
        producer.flush().await.unwrap(); // one object per round
    }
    let tail_start = ((rounds - 1) * per) as i64;
    let tail: Vec<String> = (0..per).map(|i| value(rounds - 1, i)).collect();
    let stats = || agent.agent.as_ref().unwrap().read_stats();

    let before = stats();
    assert_eq!(read_from(&agent, "s", Offset::At(tail_start), per).await, tail);
    let after_tail = stats();
    assert_eq!(after_tail.gets, before.gets, "the tail is read from memory");
    assert!(after_tail.recent_hits > before.recent_hits);

    let history = read_from(&agent, "s", Offset::Earliest, rounds * per).await;
    let expected: Vec<String> = (0..rounds).flat_map(|r| (0..per).map(move |i| value(r, i))).collect();
    assert_eq!(history, expected, "the scan reads every record once, in order");
    let after_scan = stats();
    assert!(after_scan.gets > after_tail.gets, "the old objects were fetched: the scan went past the memory");

    assert_eq!(read_from(&agent, "s", Offset::At(tail_start), per).await, tail);
    let after = stats();
    assert_eq!(after.gets, after_scan.gets, "the scan did not push the tail out: no GET for it");
    assert!(after.recent_hits > after_scan.recent_hits);
    eprintln!(
        "scan: {} GETs; tail before and after it: {} and {} reads from memory, 0 GETs",
        after_scan.gets - after_tail.gets,
        after_tail.recent_hits - before.recent_hits,
        after.recent_hits - after_scan.recent_hits
    );
    agent.stop().await;
}

/// A range whose CRCs fail is not kept: every read of it goes back to the
/// object store and fails the same way (the read cache checks CRCs once, on
/// the way in, and trusts what it holds), and the repaired object reads whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_range_never_enters_the_read_cache() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.recent_cache_bytes = 0; // every read goes through the read cache
    })
    .await;
    let client = agent.client().await;
    client.create_topic("h", 1).await.unwrap();
    let producer = Producer::new(client, "h", ProducerConfig::default()).await.unwrap();
    let n = 1000;
    for i in 0..n {
        let _ = producer.send(ProducerRecord::new(format!("r{i}"))).await.unwrap();
    }
    producer.flush().await.unwrap();
    let objects = silt_objects(agent.dir.path());
    assert_eq!(objects.len(), 1, "{objects:?}");
    let path = &objects[0];
    let good = std::fs::read(path).unwrap();
    let entries = silt_agent::format::object::read_footer(&good).unwrap();
    // A byte of a record's value, past the batch header (61 bytes): only
    // the CRC tells it changed.
    let mut bad = good.clone();
    let at = entries[0].start as usize + 61 + 8;
    bad[at] ^= 0x01;
    std::fs::write(path, &bad).unwrap();

    let stats = || agent.agent.as_ref().unwrap().read_stats();
    let try_read = || async {
        let consumer = Consumer::new(agent.client().await, "h", ConsumerConfig::default()).await.unwrap();
        let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap()
    };
    for attempt in 1..=2 {
        let before = stats();
        let err = try_read().await.expect_err("a damaged range must not be returned");
        assert!(err.to_string().contains("CRC"), "attempt {attempt}: {err}");
        let after = stats();
        assert!(after.gets > before.gets, "attempt {attempt}: the range was fetched again");
        assert_eq!(after.cache_hits, before.cache_hits, "attempt {attempt}: served from the read cache");
    }

    std::fs::write(path, &good).unwrap();
    let got = read_everything(&agent, n).await;
    assert_eq!(got, (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>());
    agent.stop().await;
}
