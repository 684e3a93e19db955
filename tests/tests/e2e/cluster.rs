//! Several agents on one metadata store and one object store: partitions
//! are shared out, handed over on SIGTERM, taken over after kill -9, and a
//! paused owner is fenced. Agents run as separate processes.

use std::time::{Duration, Instant};

use silt_client::{Acks, Client, ErrorCode, Producer, ProducerConfig, ProducerRecord};
use silt_wire::{Request, Response};

use crate::harness::stream::{index_of, Produced};
use crate::harness::*;

/// The values of one partition's log, in offset order, through agent `via`
/// by a bare fetch (any agent serves any partition's history).
async fn history_via(c: &TestCluster, via: usize, topic: &str, p: u32) -> Vec<String> {
    let (_ep, conn) = crate::protocol::raw_connection_to(c.addrs[via].parse().unwrap(), &c.ca()).await;
    let request = Request::Fetch { topic: topic.into(), partition: p, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0 };
    match crate::protocol::exchange(&conn, &request.encode()).await {
        Some(Response::Fetched { batches, .. }) => silt_wire::batch::split(&batches)
            .flat_map(|b| b.unwrap().records().unwrap())
            .map(|r| String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap())
            .collect(),
        other => panic!("fetch through agent {via}: {other:?}"),
    }
}

/// The partitions agent `i` owns.
async fn owned_by(c: &TestCluster, topic: &str, i: usize) -> Vec<u32> {
    let owners = c.owners(topic).await;
    (0..owners.len() as u32).filter(|p| owners[*p as usize] == c.addrs[i]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_share_partitions_hand_over_and_take_over() {
    let mut c = TestCluster::builder().agents(2).launch(1).start().await;
    c.client().await.create_topic("c", 4).await.unwrap();
    assert!(c.owners("c").await.iter().all(|o| *o == c.addrs[0]), "a lone agent owns everything");

    // A second agent gets an even share.
    c.launch(1);
    c.wait_even("c", "after b joined").await;
    let (a_part, b_part) = (owned_by(&c, "c", 0).await[0], owned_by(&c, "c", 1).await[0]);

    // A produce sent to the wrong agent is refused with the owner's address...
    let batch = {
        let mut builder = silt_wire::BatchBuilder::new(silt_wire::Compression::None);
        builder.push(0, None, b"x", &[]);
        builder.build().unwrap().into_bytes()
    };
    let request = Request::Produce { topic: "c".into(), partition: b_part, acks: silt_wire::Acks::Durable, batch };
    let (_ep, conn) = crate::protocol::raw_connection_to(c.addrs[0].parse().unwrap(), &c.ca()).await;
    match crate::protocol::exchange(&conn, &request.encode()).await {
        Some(Response::Error { code: ErrorCode::NotOwner, message }) => {
            assert!(message.contains(&c.addrs[1]), "{message}")
        }
        other => panic!("expected NOT_OWNER naming {}, got {other:?}", c.addrs[1]),
    }
    // ...and clients route by themselves, whichever agent they reach first.
    c.agent(0).ok(&["produce", "c", "--partition", &a_part.to_string()], Some(b"a1\na2\n"));
    c.agent(0).ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"b1\nb2\n"));
    // Any agent serves any partition's history.
    assert_eq!(history_via(&c, 0, "c", b_part).await, ["b1", "b2"]);
    assert_eq!(history_via(&c, 1, "c", a_part).await, ["a1", "a2"]);

    // SIGTERM: b hands its partitions back within seconds.
    let started = Instant::now();
    assert!(c.terminate(1).success(), "b stopped cleanly");
    TestCluster::wait_for("a to take b's partitions", Duration::from_secs(10), || async {
        c.owners("c").await.iter().all(|o| *o == c.addrs[0])
    })
    .await;
    eprintln!("graceful handover took {:?}", started.elapsed());
    c.agent(0).ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"b3\n"));
    assert_eq!(history_via(&c, 0, "c", b_part).await, ["b1", "b2", "b3"]);

    // kill -9: the survivor takes over once b's session lapses.
    c.launch(1);
    c.wait_even("c", "after b came back").await;
    let b_part = owned_by(&c, "c", 1).await[0];
    c.agent(1).ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"before-kill\n"));
    let started = Instant::now();
    c.kill9(1);
    TestCluster::wait_for("a to take over from the dead agent", Duration::from_secs(15), || async {
        c.owners("c").await.iter().all(|o| *o == c.addrs[0])
    })
    .await;
    eprintln!("takeover after kill -9 took {:?}", started.elapsed());
    c.agent(0).ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"after-kill\n"));
    let log = c.log("c", 4).await;
    let values: Vec<&str> = log.range((b_part, 0)..(b_part + 1, 0)).map(|(_, v)| v.as_str()).collect();
    assert_eq!(&values[values.len() - 2..], ["before-kill", "after-kill"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_writes_nothing() {
    // Slow flushes so a batch is still buffered when the owner is paused.
    let mut c = TestCluster::builder().agents(2).launch(1).flush_interval("1500ms").start().await;
    c.client().await.create_topic("f", 1).await.unwrap();
    // Without idempotence the producer reports what happened to r2 rather
    // than sending it again (see the resend tests for that).
    let plain = ProducerConfig { idempotence: false, ..Default::default() };
    let producer = Producer::new(Client::connect(c.config_in(&[0])).await.unwrap(), "f", plain).await.unwrap();
    assert_eq!(producer.send(ProducerRecord::new("r1")).await.unwrap().await.unwrap().offset, 0);
    let r2 = producer.send(ProducerRecord::new("r2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // r2 reaches a, unflushed
    let before = c.stats(0).await;
    assert!(before["produced_records"] > before["committed_records"], "r2 is in flight on a: {before:?}");
    signal(c.agent(0).child.id(), "STOP");

    // b takes the partition once a's session lapses, and accepts writes.
    c.launch_with(1, &["--flush-interval", "50ms"]);
    let b_addr = c.addrs[1].clone();
    TestCluster::wait_for("b to take the partition", Duration::from_secs(20), || async {
        let d = Client::connect(c.config_in(&[1])).await.unwrap().describe_topic("f").await.unwrap();
        d.partitions[0].owner == b_addr
    })
    .await;
    c.agent(1).ok(&["produce", "f"], Some(b"r3\n"));

    // a wakes up: it must find out, fail r2 with a retriable error, and write nothing.
    signal(c.agent(0).child.id(), "CONT");
    let outcome = tokio::time::timeout(Duration::from_secs(20), r2).await.expect("r2 was answered");
    let e = outcome.expect_err("a fenced owner acknowledged a write");
    assert!(e.is_retriable(), "{e}");
    assert!(matches!(e.code(), Some(ErrorCode::Fenced) | Some(ErrorCode::NotOwner)), "{e}");
    tokio::time::sleep(Duration::from_secs(2)).await; // a's flush and rounds have run
    let log: Vec<String> = c.log("f", 1).await.into_values().collect();
    assert_eq!(log, ["r1", "r3"], "the log has r1 then r3, nothing from the fenced owner");
}

/// Agents 0 and 1 on one store, with a new topic split evenly between them.
async fn two_agents(topic: &str, partitions: u32, flush_interval: &str, wal: bool) -> TestCluster {
    let builder = TestCluster::builder().agents(2).launch(1).flush_interval(flush_interval);
    let mut c = if wal { builder.wal(1) } else { builder }.start().await;
    c.client().await.create_topic(topic, partitions).await.unwrap();
    c.launch(1);
    c.wait_even(topic, "after the second agent joined").await;
    c
}

/// Records "0".."n-1" to partition i % partitions through a producer that
/// knows both agents, pausing every 50 records.
fn send_in_background(c: &TestCluster, topic: &str, n: u64, partitions: u32, acks: Acks) -> Background {
    let plan = Plan {
        acks,
        pin: Some(partitions),
        limit: Some(n),
        pause: (50, Duration::from_millis(20)),
        ..Default::default()
    };
    Background::start(c.config_in(&[1, 0]), topic, partitions, plan)
}

/// Every record once, each partition in send order; with `at_acked_offsets`,
/// each at the offset it was acknowledged at.
async fn assert_all_once_in_order(
    c: &TestCluster,
    topic: &str,
    partitions: u32,
    produced: &Produced,
    at_acked_offsets: bool,
) {
    assert!(produced.failed.is_empty(), "records failed although an agent was up: {:?}", produced.failed.first());
    assert_eq!(produced.acked.len() as u64, produced.sent, "every record is acknowledged");
    eprintln!("longest wait for an acknowledgement: {:?}", produced.longest_wait);
    let log = c.log(topic, partitions).await;
    for p in 0..partitions {
        let values: Vec<u64> = log.range((p, 0)..(p + 1, 0)).map(|(_, v)| index_of(v)).collect();
        let expected: Vec<u64> = (0..produced.sent).filter(|i| i % u64::from(partitions) == u64::from(p)).collect();
        assert_eq!(values, expected, "partition {p}");
    }
    for (i, m) in produced.acked.iter().filter(|_| at_acked_offsets) {
        assert_eq!(
            log.get(&(m.partition, m.offset)).map(|v| index_of(v)),
            Some(*i),
            "record {i} acknowledged elsewhere"
        );
    }
}

/// Waits until agent `i` holds records it has not committed, and returns
/// how many (the kill that follows lands with them in flight).
async fn wait_for_uncommitted(c: &TestCluster, i: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.stats(i).await;
        let pending = s["produced_records"].saturating_sub(s["committed_records"]);
        if pending > 0 {
            return pending;
        }
        assert!(Instant::now() < deadline, "agent {i} never held uncommitted records: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_follows_partitions_through_a_handover() {
    let mut c = two_agents("r", 4, "50ms", false).await;
    let sender = send_in_background(&c, "r", 4000, 4, Acks::Durable);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_parts = owned_by(&c, "r", 1).await;
    let in_flight: u64 = b_parts.iter().map(|p| sender.tally.in_flight()[*p as usize]).sum();
    signal(c.agent(1).child.id(), "TERM"); // mid-stream
    assert!(in_flight > 0, "records for b's partitions were in flight at SIGTERM");
    let started = Instant::now();
    let produced = sender.wait().await;
    eprintln!("all records acknowledged {:?} after SIGTERM ({in_flight} in flight then)", started.elapsed());
    assert!(c.wait_exit(1).success());
    assert_all_once_in_order(&c, "r", 4, &produced, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_resends_what_a_killed_owner_had_not_committed() {
    // Slow flushes: when b is killed it holds about a second of batches
    // that it assigned offsets to but never committed.
    let mut c = two_agents("k", 2, "1s", false).await;
    let sender = send_in_background(&c, "k", 3000, 2, Acks::Durable);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let uncommitted = wait_for_uncommitted(&c, 1).await;
    c.kill9(1); // mid-stream, with uncommitted batches
    let started = Instant::now();
    let produced = sender.wait().await;
    eprintln!("all records acknowledged {:?} after the kill ({uncommitted} uncommitted on b)", started.elapsed());
    assert_all_once_in_order(&c, "k", 2, &produced, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_local_records_outlive_an_owner_that_never_returns() {
    // b acknowledges from its WAL and commits only every second; it is
    // killed and never restarted, so its WAL is never replayed.
    let mut c = two_agents("l", 2, "1s", true).await;
    let sender = send_in_background(&c, "l", 3000, 2, Acks::Local);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let uncommitted = wait_for_uncommitted(&c, 1).await;
    c.kill9(1);
    let produced = sender.wait().await;
    eprintln!("{uncommitted} records were uncommitted on b at the kill");
    // The producer kept what b had acknowledged but not committed, and sent
    // it again: every record is in the log once, in order. (Those records
    // sit at later offsets than b first acknowledged.)
    assert_all_once_in_order(&c, "l", 2, &produced, false).await;
}
