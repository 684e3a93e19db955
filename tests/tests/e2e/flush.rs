//! One object per flush, holding every partition's batches; flushes fire
//! on size or time; the connection limit holds.

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
    let entries = silt_agent::object::read_footer(&std::fs::read(&files[0]).unwrap()).unwrap();
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
    let mut last = None;
    for i in 0..100 {
        last = Some(producer.send(ProducerRecord::new(vec![i as u8; 100])).await.unwrap());
    }
    producer.flush().await.unwrap();
    assert_eq!(last.unwrap().await.unwrap().offset, 99);
    assert!(started.elapsed() < Duration::from_secs(30), "size-triggered flushes did not wait for the 60s interval");
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
