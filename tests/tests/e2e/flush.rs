//! One object per flush, holding every partition's batches; flushes fire
//! on size or time; the connection limit holds.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use silt_client::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

fn objects(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("objects")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "silt") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_object_per_flush_holds_every_partition() {
    let agent =
        TestAgent::start_with(tempfile::tempdir().unwrap(), |a| a.flush_interval = Duration::from_millis(800)).await;
    let client = agent.client().await;
    client.create_topic("multi", 3).await.unwrap();
    let producer = Producer::new(client.clone(), "multi", ProducerConfig::default()).await.unwrap();
    let mut deliveries = Vec::new();
    for p in 0..3 {
        for i in 0..10 {
            deliveries.push(producer.send(ProducerRecord::new(format!("{p}-{i}")).with_partition(p)).await.unwrap());
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let files = objects(agent.dir.path());
    assert_eq!(files.len(), 1, "one flush, one object: {files:?}");
    let entries = silt_agent::format::object::read_footer(&std::fs::read(&files[0]).unwrap()).unwrap();
    let mut partitions: Vec<_> = entries.iter().map(|e| (e.partition, e.base_offset, e.last_offset)).collect();
    partitions.sort();
    assert_eq!(partitions, vec![(0, 0, 9), (1, 0, 9), (2, 0, 9)]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_flushes_before_the_interval() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.flush_interval = Duration::from_secs(60);
        a.flush_bytes = 4096;
    })
    .await;
    let client = agent.client().await;
    client.create_topic("size", 1).await.unwrap();
    // Uncompressed, so the buffered bytes are what was sent.
    let config =
        ProducerConfig { acks: Acks::Durable, batch_bytes: 1024, compression: Compression::None, ..Default::default() };
    let producer = Producer::new(client, "size", config).await.unwrap();
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(producer.send(ProducerRecord::new(vec![i as u8; 100])).await.unwrap());
    }
    // 10 KB at a 4 KiB flush size: the first records are durable long before
    // the 60 s interval (the tail below 4 KiB rightly waits for it).
    let first = deliveries.remove(0);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), first)
            .await
            .expect("acknowledged by a size-triggered flush")
            .unwrap()
            .offset,
        0
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!objects(agent.dir.path()).is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_extra_clients() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| a.max_connections = 1).await;
    let first = agent.client().await;
    first.list_topics().await.unwrap();
    let mut config = agent.client_config();
    config.connect_timeout = Duration::from_secs(2);
    let second = silt_client::Client::connect(config.clone()).await;
    let refused = match second {
        Err(_) => true,
        Ok(c) => c.list_topics().await.is_err(),
    };
    assert!(refused, "a second connection over the limit of 1 was served");
    first.close();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = silt_client::Client::connect(config.clone()).await {
            if c.list_topics().await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_writes_nothing_and_counters_add_up() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("idle", 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // 25 flush intervals
    let stats: std::collections::HashMap<_, _> = client.stats().await.unwrap().into_iter().collect();
    assert_eq!(stats["objects_written"], 0, "an idle agent wrote an object");
    assert!(objects(agent.dir.path()).is_empty());

    let producer = Producer::new(client.clone(), "idle", ProducerConfig::default()).await.unwrap();
    for i in 0..1000 {
        let _ = producer.send(ProducerRecord::new(format!("{i}"))).await.unwrap();
    }
    producer.flush().await.unwrap();
    let stats: std::collections::HashMap<_, _> = client.stats().await.unwrap().into_iter().collect();
    assert_eq!(stats["produced_records"], 1000);
    assert!(stats["objects_written"] >= 1);
    assert_eq!(stats["objects_written"] as usize, objects(agent.dir.path()).len());
    assert_eq!(stats["index_commits"], stats["objects_written"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_ends_in_a_retriable_throttled_error() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.max_frame_bytes = 64 << 10;
        a.max_record_bytes = 16 << 10;
        a.max_inflight_bytes = 64 << 10;
        a.throttle_wait = Duration::from_millis(200);
    })
    .await;
    let client = agent.client().await;
    client.create_topic("bp", 1).await.unwrap();
    // Storage down: nothing becomes durable, so in-flight bytes pile up.
    let objects_dir = agent.dir.path().join("objects");
    std::fs::rename(&objects_dir, agent.dir.path().join("aside")).unwrap();
    std::fs::write(&objects_dir, b"not a folder").unwrap();
    let config =
        ProducerConfig { batch_bytes: 16 << 10, compression: Compression::None, retries: 0, ..Default::default() };
    let producer = Producer::new(client, "bp", config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..40u32 {
        deliveries.push(producer.send(ProducerRecord::new(vec![i as u8; 8 << 10])).await.unwrap());
    }
    // The first batches are accepted and wait for storage; later ones find
    // the in-flight limit full. Take the first error from any of them.
    let mut pending: futures::stream::FuturesUnordered<_> = deliveries.into_iter().map(|d| d.into_future()).collect();
    let throttled = tokio::time::timeout(Duration::from_secs(30), async {
        use futures::StreamExt;
        while let Some(r) = pending.next().await {
            if let Err(e) = r {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("an error came in time")
    .expect("some record was refused");
    assert_eq!(throttled.code(), Some(silt_client::ErrorCode::Throttled), "{throttled}");
    assert!(throttled.is_retriable());
    assert!(throttled.to_string().contains("in-flight limit"), "{throttled}");
    drop(producer);
    std::fs::remove_file(&objects_dir).unwrap();
    std::fs::rename(agent.dir.path().join("aside"), &objects_dir).unwrap();
    agent.stop().await;
}
