//! Idempotent producers: a batch sent twice is written once and answered
//! with its first offsets, by the agent that wrote it and by the next owner
//! of its partition; sequence gaps and old epochs are refused.

use std::time::Duration;

use futures::StreamExt;
use silt_client::{Consumer, ConsumerConfig, Offset};
use silt_wire::frame::{self, Frame};
use silt_wire::{Acks, BatchBuilder, Compression, ErrorCode, Request, Response};

use crate::harness::*;

/// Every response of one request, until the agent ends the stream.
async fn responses(conn: &quinn::Connection, request: &Request) -> Vec<Response> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&request.encode()).await.unwrap();
    let _ = send.finish();
    let mut out = Vec::new();
    loop {
        let mut prefix = [0u8; 4];
        if recv.read_exact(&mut prefix).await.is_err() {
            return out;
        }
        let len = frame::parse_length(prefix, 1 << 20).unwrap();
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.unwrap();
        out.push(Response::decode(&Frame::decode(body.into()).unwrap()).unwrap());
    }
}

fn produce(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Request {
    let mut b = BatchBuilder::new(Compression::None).with_producer(producer_id, epoch, sequence);
    for v in values {
        b.push(0, None, v.as_bytes(), &[]);
    }
    Request::Produce { topic: "idem".into(), partition: 0, acks: Acks::Durable, batch: b.build().unwrap().into_bytes() }
}

fn written(base_offset: i64, last_offset: i64) -> Vec<Response> {
    vec![Response::ProduceAssigned { base_offset }, Response::Produced { base_offset, last_offset }]
}

fn refused(r: &[Response]) -> Option<ErrorCode> {
    match r {
        [Response::Error { code, .. }] => Some(*code),
        _ => None,
    }
}

async fn stat(agent: &TestAgent, name: &str) -> u64 {
    let stats = agent.client().await.stats().await.unwrap();
    stats.into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_is_written_once_here_and_after_a_restart() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("idem", 1).await.unwrap();
    let (id, epoch) = client.init_producer().await.unwrap();
    let (other, _) = client.init_producer().await.unwrap();
    assert_ne!(id, other, "producer ids are unique");
    let (_ep, conn) = crate::protocol::raw_connection_to(agent.addr, &agent.ca).await;

    assert_eq!(responses(&conn, &produce(id, epoch, 0, &["a", "b", "c"])).await, written(0, 2));
    // The same batch again: its first offsets, nothing written.
    assert_eq!(responses(&conn, &produce(id, epoch, 0, &["a", "b", "c"])).await, written(0, 2));
    assert_eq!(responses(&conn, &produce(id, epoch, 3, &["d"])).await, written(3, 3));
    // Another producer's sequence is its own, and starts at 0: a producer
    // the owner does not know, starting anywhere else, is refused.
    let unknown = responses(&conn, &produce(other, 0, 3, &["u"])).await;
    assert_eq!(refused(&unknown), Some(ErrorCode::UnknownProducer), "{unknown:?}");
    assert_eq!(responses(&conn, &produce(other, 0, 0, &["o"])).await, written(4, 4));
    // A gap, a batch cut differently than before, and an old epoch are refused.
    let gap = responses(&conn, &produce(id, epoch, 9, &["x"])).await;
    assert_eq!(refused(&gap), Some(ErrorCode::OutOfOrderSequence), "{gap:?}");
    let recut = responses(&conn, &produce(id, epoch, 0, &["a", "b"])).await;
    assert_eq!(refused(&recut), Some(ErrorCode::DuplicateSequence), "{recut:?}");
    assert_eq!(responses(&conn, &produce(id, epoch + 1, 0, &["e"])).await, written(5, 5));
    let old = responses(&conn, &produce(id, epoch, 4, &["y"])).await;
    assert_eq!(refused(&old), Some(ErrorCode::ProducerFenced), "{old:?}");
    assert_eq!(stat(&agent, "duplicate_batches").await, 1);

    // A new owner (the same data, a fresh agent process state) knows what
    // was committed: the last batch again is answered, not written.
    conn.close(0u32.into(), b"done");
    let dir = agent.stop().await;
    let agent = TestAgent::start_with(dir, |_| {}).await;
    let (_ep, conn) = crate::protocol::raw_connection_to(agent.addr, &agent.ca).await;
    assert_eq!(responses(&conn, &produce(id, epoch + 1, 0, &["e"])).await, written(5, 5));
    assert_eq!(responses(&conn, &produce(id, epoch, 0, &["a", "b", "c"])).await.len(), 1, "the old epoch is refused");
    assert_eq!(responses(&conn, &produce(id, epoch + 1, 1, &["f"])).await, written(6, 6));
    assert_eq!(stat(&agent, "duplicate_batches").await, 1);

    // The log: each record once, in order.
    let consumer = Consumer::new(agent.client().await, "idem", ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
    let mut log = Vec::new();
    while log.len() < 7 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        log.push((r.offset, String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap()));
    }
    let expected: Vec<(i64, String)> =
        ["a", "b", "c", "d", "o", "e", "f"].iter().enumerate().map(|(i, v)| (i as i64, v.to_string())).collect();
    assert_eq!(log, expected);
    assert!(tokio::time::timeout(Duration::from_millis(500), stream.next()).await.is_err(), "nothing more");
    agent.stop().await;
}
