//! The SDK against an agent in this process: binary-safe records, headers,
//! record-size limits, ordering.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use silt_client::{
    ClientError, ConsumedRecord, Consumer, ConsumerConfig, ErrorCode, Offset, Producer, ProducerConfig, ProducerRecord,
};

use crate::harness::*;

async fn read_n(consumer: &Consumer, assignments: &[(u32, Offset)], n: usize) -> Vec<ConsumedRecord> {
    let mut stream = consumer.stream(assignments).await.unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("records in time")
            .unwrap()
            .unwrap();
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_values_empty_values_and_headers_round_trip() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("bin", 1).await.unwrap();
    let producer = Producer::new(client.clone(), "bin", ProducerConfig::default()).await.unwrap();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let records = vec![
        ProducerRecord::new(Bytes::from(all_bytes.clone())).with_key(Bytes::from(vec![0u8, 0xff, b'\n'])),
        ProducerRecord::new(Bytes::new()),
        ProducerRecord::new(Bytes::new()).with_key(Bytes::new()),
        ProducerRecord::new("with headers")
            .with_header("trace", Bytes::from_static(b"\x00\x01"))
            .with_header("", Bytes::new()),
        ProducerRecord::new("timed").with_timestamp(1_234_567),
    ];
    let mut offsets = Vec::new();
    for r in records.clone() {
        offsets.push(producer.send(r).await.unwrap());
    }
    for (i, d) in offsets.into_iter().enumerate() {
        let meta = d.await.unwrap();
        assert_eq!((meta.partition, meta.offset), (0, i as i64));
    }
    let consumer = Consumer::new(client, "bin", ConsumerConfig::default()).await.unwrap();
    let got = read_n(&consumer, &[(0, Offset::Earliest)], records.len()).await;
    for (i, (want, got)) in records.iter().zip(&got).enumerate() {
        assert_eq!(got.offset, i as i64);
        assert_eq!(got.key, want.key, "record {i} key");
        assert_eq!(got.value, want.value, "record {i} value");
        assert_eq!(got.headers, want.headers, "record {i} headers");
    }
    assert_eq!(got[4].timestamp, 1_234_567);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_size_limit_is_enforced_and_named() {
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| a.max_record_bytes = 1000).await;
    let client = agent.client().await;
    client.create_topic("lim", 1).await.unwrap();
    let producer = Producer::new(client.clone(), "lim", ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new(vec![1u8; 1000])).await.unwrap().await.unwrap();
    match producer.send(ProducerRecord::new(vec![1u8; 1001])).await {
        Err(e @ ClientError::RecordTooLarge { size: 1001, max: 1000 }) => {
            assert!(e.to_string().contains("maximum record size of 1000 bytes"))
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a record over the limit was accepted"),
    }
    // Key, value and headers count together.
    assert!(producer.send(ProducerRecord::new(vec![1u8; 600]).with_key(vec![2u8; 600])).await.is_err());
    producer.flush().await.unwrap();
    assert_eq!(client.describe_topic("lim").await.unwrap().partitions[0].high_watermark, 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_keep_per_partition_order_and_lose_nothing() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("order", 4).await.unwrap();
    let per_producer = 5_000u32;
    let mut handles = Vec::new();
    for id in 0..3u32 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let config = ProducerConfig { batch_bytes: 4096, ..Default::default() };
            let producer = Producer::new(client, "order", config).await.unwrap();
            for i in 0..per_producer {
                let rec = ProducerRecord::new(format!("{id}:{i}")).with_key(format!("producer-{id}-{}", i % 8));
                let _ = producer.send(rec).await.unwrap();
            }
            producer.close().await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let consumer = Consumer::new(client, "order", ConsumerConfig::default()).await.unwrap();
    let all: Vec<_> = (0..4).map(|p| (p, Offset::Earliest)).collect();
    let got = read_n(&consumer, &all, (3 * per_producer) as usize).await;
    // Same key: same partition, in send order; nothing missing or twice.
    let mut last: std::collections::HashMap<String, (u32, u32)> = Default::default();
    let mut seen = std::collections::HashSet::new();
    let mut next_offset = [0i64; 4];
    for r in &got {
        assert_eq!(r.offset, next_offset[r.partition as usize], "offsets are dense and in order");
        next_offset[r.partition as usize] += 1;
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap();
        assert!(seen.insert(value.clone()), "{value} twice");
        let i: u32 = value.split_once(':').unwrap().1.parse().unwrap();
        if let Some((p, prev)) = last.insert(key.clone(), (r.partition, i)) {
            assert_eq!(p, r.partition, "{key} moved partitions");
            assert!(prev < i, "{key}: {i} after {prev}");
        }
    }
    assert_eq!(seen.len(), (3 * per_producer) as usize);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_errors_carry_codes() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    let code = |r: Result<(), ClientError>| r.unwrap_err().code();
    assert_eq!(code(client.create_topic("t", 0).await), Some(ErrorCode::InvalidPartitions));
    client.create_topic("t", 1).await.unwrap();
    assert_eq!(code(client.create_topic("t", 1).await), Some(ErrorCode::TopicExists));
    assert_eq!(code(client.delete_topic("zzz").await), Some(ErrorCode::UnknownTopic));
    assert!(
        matches!(Producer::new(client.clone(), "zzz", ProducerConfig::default()).await, Err(e) if e.code() == Some(ErrorCode::UnknownTopic))
    );
    let consumer = Consumer::new(client.clone(), "t", ConsumerConfig::default()).await.unwrap();
    let mut s = consumer.stream(&[(0, Offset::At(5))]).await.unwrap();
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange));
    assert!(consumer.stream(&[(3, Offset::Earliest)]).await.is_err());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_acknowledges_then_keeps_everything() {
    let agent =
        TestAgent::start_with(tempfile::tempdir().unwrap(), |a| a.flush_interval = Duration::from_secs(30)).await;
    let client = agent.client().await;
    client.create_topic("g", 1).await.unwrap();
    let producer = Producer::new(client.clone(), "g", ProducerConfig::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..100 {
        pending.push(producer.send(ProducerRecord::new(format!("{i}"))).await.unwrap());
    }
    // The flush interval is long: only shutdown's final flush makes these durable.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = agent.addr;
    let shutdown = tokio::spawn(agent.stop());
    for (i, d) in pending.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, i as i64);
    }
    let dir = shutdown.await.unwrap();
    let again = TestAgent::start_with(dir, |_| {}).await;
    assert_ne!(again.addr, addr);
    let client = again.client().await;
    assert_eq!(client.describe_topic("g").await.unwrap().partitions[0].high_watermark, 100);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_while_storage_is_down() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("s", 1).await.unwrap();
    // No retries: the producer reports the agent's answer instead of
    // sending the batch again until the store is back.
    let config = ProducerConfig { retries: 0, ..Default::default() };
    let producer = Producer::new(client.clone(), "s", config).await.unwrap();
    producer.send(ProducerRecord::new("a")).await.unwrap().await.unwrap();

    // Break the object store: its folder becomes a file.
    let objects = agent.dir.path().join("objects");
    let aside = agent.dir.path().join("objects-aside");
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a folder").unwrap();
    let b = producer.send(ProducerRecord::new("b")).await.unwrap().into_future();
    tokio::pin!(b);
    assert!(tokio::time::timeout(Duration::from_secs(1), &mut b).await.is_err(), "acknowledged while storage was down");

    // Storage comes back: the agent carries on by itself.
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(&aside, &objects).unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(15), b).await.unwrap().unwrap().offset, 1);

    // Down again at shutdown: shutdown still ends, and the record is failed, not acknowledged.
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a folder").unwrap();
    let c = producer.send(ProducerRecord::new("c")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = tokio::time::timeout(Duration::from_secs(60), agent.stop()).await.expect("shutdown ends");
    assert!(c.await.is_err(), "a record that never reached storage was acknowledged");

    std::fs::remove_file(dir.path().join("objects")).unwrap();
    std::fs::rename(dir.path().join("objects-aside"), dir.path().join("objects")).unwrap();
    let again = TestAgent::start_with(dir, |_| {}).await;
    let consumer = Consumer::new(again.client().await, "s", ConsumerConfig::default()).await.unwrap();
    let got = read_n(&consumer, &[(0, Offset::Earliest)], 2).await;
    assert_eq!(
        got.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec![Some(Bytes::from("a")), Some(Bytes::from("b"))]
    );
    assert_eq!(again.client().await.describe_topic("s").await.unwrap().partitions[0].high_watermark, 2);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_rides_out_a_storage_outage() {
    // No memory of recent objects and no read cache: every read is a GET.
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.recent_cache_bytes = 0;
        a.cache_memory = 0;
    })
    .await;
    let client = agent.client().await;
    client.create_topic("out", 1).await.unwrap();
    let producer = Producer::new(client.clone(), "out", ProducerConfig::default()).await.unwrap();
    for i in 0..100 {
        let _ = producer.send(ProducerRecord::new(format!("{i}"))).await.unwrap();
    }
    producer.flush().await.unwrap();

    let objects = agent.dir.path().join("objects");
    let aside = agent.dir.path().join("aside");
    std::fs::rename(&objects, &aside).unwrap();
    std::fs::write(&objects, b"not a folder").unwrap();
    let consumer = Consumer::new(client, "out", ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), stream.next()).await.is_err(),
        "records came from nowhere"
    );
    std::fs::remove_file(&objects).unwrap();
    std::fs::rename(&aside, &objects).unwrap();
    for i in 0..100 {
        let r =
            tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("the stream carried on").unwrap();
        let r = r.expect("a passing storage fault ended the stream");
        assert_eq!(
            (r.offset, String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap()),
            (i, i.to_string())
        );
    }
    agent.stop().await;
}
