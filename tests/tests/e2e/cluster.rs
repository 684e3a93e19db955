//! Several agents on one metadata store and one object store: partitions
//! are shared out, handed over on SIGTERM, taken over after kill -9, and a
//! paused owner is fenced. Agents run as separate processes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use silt_client::{Client, ClientConfig, ErrorCode, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

/// Flags that put agents on one SQLite file, one objects folder and one CA.
fn shared(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--metadata".into(),
        format!("sqlite://{}", dir.join("meta.db").display()),
        "--object-store".into(),
        format!("file://{}", dir.join("objects").display()),
        "--tls-dir".into(),
        dir.join("tls").display().to_string(),
        "--lease-ttl".into(),
        "2s".into(),
    ]
}

fn start(dir: &std::path::Path, name: &str, extra: &[&str]) -> AgentProcess {
    let mut flags = shared(dir);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    AgentProcess::start(&dir.join(name), &flags)
}

/// partition -> owner address, from `topic describe`.
fn owners(agent: &AgentProcess, topic: &str) -> BTreeMap<u32, String> {
    let out = String::from_utf8(agent.ok(&["topic", "describe", topic], None)).unwrap();
    out.lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].to_string())
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record of a partition, read through `agent`, as (offset, value).
fn log_of(agent: &AgentProcess, topic: &str, p: u32) -> Vec<(i64, String)> {
    let out = agent.ok(
        &["consume", topic, "--partition", &p.to_string(), "--from-beginning", "--timeout-ms", "800", "--print-offset"],
        None,
    );
    parse_offsets(&out).into_iter().map(|(_, o, v)| (o, v)).collect()
}

fn assert_dense(log: &[(i64, String)]) {
    for (i, (o, _)) in log.iter().enumerate() {
        assert_eq!(*o, i as i64, "offsets have a gap or a duplicate: {log:?}");
    }
    let values: BTreeSet<&String> = log.iter().map(|(_, v)| v).collect();
    assert_eq!(values.len(), log.len(), "a record is in the log twice");
}

#[test]
fn agents_share_partitions_hand_over_and_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "a", &["--flush-interval", "50ms"]);
    a.ok(&["topic", "create", "c", "--partitions", "4"], None);
    assert!(owners(&a, "c").values().all(|o| *o == a.addr), "a lone agent owns everything");

    // A second agent gets an even share.
    let mut b = start(dir.path(), "b", &["--flush-interval", "50ms"]);
    wait_for("an even split", Duration::from_secs(20), || {
        let o = owners(&a, "c");
        o.values().filter(|x| **x == a.addr).count() == 2 && o.values().filter(|x| **x == b.addr).count() == 2
    });
    let o = owners(&a, "c");
    let b_part = *o.iter().find(|(_, x)| **x == b.addr).unwrap().0;
    let a_part = *o.iter().find(|(_, x)| **x == a.addr).unwrap().0;

    // A produce sent to the wrong agent is refused with the owner's address...
    let batch = {
        let mut builder = silt_wire::BatchBuilder::new(silt_wire::Compression::None);
        builder.push(0, None, b"x", &[]);
        builder.build().unwrap().into_bytes()
    };
    let request =
        silt_wire::Request::Produce { topic: "c".into(), partition: b_part, acks: silt_wire::Acks::Durable, batch };
    let reply = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (_ep, conn) = crate::protocol::raw_connection_to(a.addr.parse().unwrap(), &a.ca).await;
        crate::protocol::exchange(&conn, &request.encode()).await
    });
    match reply {
        Some(silt_wire::Response::Error { code: ErrorCode::NotOwner, message }) => {
            assert!(message.contains(&b.addr), "{message}")
        }
        other => panic!("expected NOT_OWNER naming {}, got {other:?}", b.addr),
    }
    // ...and clients route by themselves: whichever agent they reach first.
    a.ok(&["produce", "c", "--partition", &a_part.to_string()], Some(b"a1\na2\n"));
    a.ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"b1\nb2\n"));
    // Any agent serves any partition's history.
    assert_eq!(log_of(&a, "c", b_part), vec![(0, "b1".into()), (1, "b2".into())]);
    assert_eq!(log_of(&b, "c", a_part), vec![(0, "a1".into()), (1, "a2".into())]);

    // SIGTERM: b hands its partitions back within seconds.
    let started = Instant::now();
    signal(b.child.id(), "TERM");
    wait_for("a to take b's partitions", Duration::from_secs(10), || owners(&a, "c").values().all(|o| *o == a.addr));
    eprintln!("graceful handover took {:?}", started.elapsed());
    assert!(b.child.wait().unwrap().success(), "b stopped cleanly");
    a.ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"b3\n"));
    let log = log_of(&a, "c", b_part);
    assert_dense(&log);
    assert_eq!(log.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), vec!["b1", "b2", "b3"]);

    // kill -9: the survivor takes over once the leases expire.
    let mut b = start(dir.path(), "b", &["--flush-interval", "50ms"]);
    wait_for("the split again", Duration::from_secs(20), || owners(&a, "c").values().any(|o| *o == b.addr));
    let o = owners(&a, "c");
    let b_part = *o.iter().find(|(_, x)| **x == b.addr).unwrap().0;
    b.ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"before-kill\n"));
    let started = Instant::now();
    b.kill9();
    wait_for("a to take over from the dead agent", Duration::from_secs(15), || {
        owners(&a, "c").values().all(|o| *o == a.addr)
    });
    eprintln!("takeover after kill -9 took {:?}", started.elapsed());
    a.ok(&["produce", "c", "--partition", &b_part.to_string()], Some(b"after-kill\n"));
    let log = log_of(&a, "c", b_part);
    assert_dense(&log);
    let values: Vec<&str> = log.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(&values[values.len() - 2..], ["before-kill", "after-kill"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Slow flushes so a batch is still buffered when the owner is paused.
    let a = start(dir.path(), "a", &["--flush-interval", "1500ms"]);
    a.ok(&["topic", "create", "f"], None);
    let config = ClientConfig { agent: a.addr.clone(), ca: Some(a.ca.clone()), ..Default::default() };
    // Without idempotence the producer reports what happened to r2 rather
    // than sending it again (see the resend tests for that).
    let plain = ProducerConfig { idempotence: false, ..Default::default() };
    let producer = Producer::new(Client::connect(config).await.unwrap(), "f", plain).await.unwrap();
    assert_eq!(producer.send(ProducerRecord::new("r1")).await.unwrap().await.unwrap().offset, 0);
    let r2 = producer.send(ProducerRecord::new("r2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // r2 reaches a, unflushed
    signal(a.child.id(), "STOP");

    // b takes the partition once a's lease lapses, and accepts writes.
    let dir_path = dir.path().to_path_buf();
    let b = tokio::task::spawn_blocking(move || start(&dir_path, "b", &[])).await.unwrap();
    let b_addr = b.addr.clone();
    let b = tokio::task::spawn_blocking(move || {
        wait_for("b to take the partition", Duration::from_secs(20), || owners(&b, "f")[&0] == b_addr);
        b.ok(&["produce", "f"], Some(b"r3\n"));
        b
    })
    .await
    .unwrap();

    // a wakes up: it must find out, fail r2 with a retriable error, and write nothing.
    signal(a.child.id(), "CONT");
    let outcome = tokio::time::timeout(Duration::from_secs(20), r2).await.expect("r2 was answered");
    let e = outcome.expect_err("a fenced owner acknowledged a write");
    assert!(e.is_retriable(), "{e}");
    assert!(matches!(e.code(), Some(ErrorCode::Fenced) | Some(ErrorCode::NotOwner)), "{e}");
    tokio::time::sleep(Duration::from_secs(2)).await; // a's flush and renewal have run
    let log = tokio::task::spawn_blocking(move || log_of(&b, "f", 0)).await.unwrap();
    assert_eq!(log, vec![(0, "r1".into()), (1, "r3".into())], "the log has r1 then r3, nothing from the fenced owner");
    drop(a);
}

/// Agents a and b on one store, with a new topic split evenly between them;
/// with `wal`, each has a cache dir (so acks=local works).
async fn two_agents(
    dir: &std::path::Path,
    topic: &str,
    partitions: u32,
    flush_interval: &str,
    wal: bool,
) -> (AgentProcess, AgentProcess) {
    let (d, topic, flush_interval) = (dir.to_path_buf(), topic.to_string(), flush_interval.to_string());
    tokio::task::spawn_blocking(move || {
        let flags = |name: &str| {
            let mut f = vec!["--flush-interval".to_string(), flush_interval.clone()];
            if wal {
                f.extend(["--cache-dir".to_string(), d.join(format!("{name}-cache")).display().to_string()]);
            }
            f
        };
        let (fa, fb) = (flags("a"), flags("b"));
        let a = start(&d, "a", &fa.iter().map(String::as_str).collect::<Vec<_>>());
        a.ok(&["topic", "create", &topic, "--partitions", &partitions.to_string()], None);
        let b = start(&d, "b", &fb.iter().map(String::as_str).collect::<Vec<_>>());
        wait_for("an even split", Duration::from_secs(20), || {
            owners(&a, &topic).values().filter(|o| **o == b.addr).count() == partitions as usize / 2
        });
        (a, b)
    })
    .await
    .unwrap()
}

/// Sends records "0".."n-1" to partition i % partitions through an
/// idempotent producer bootstrapped with both agents, pausing every 50
/// records, and returns where each was acknowledged (all must be). Prints
/// the longest wait for an acknowledgement.
fn send_in_background(
    a: &AgentProcess,
    b: &AgentProcess,
    topic: &str,
    n: u32,
    partitions: u32,
    acks: silt_client::Acks,
) -> tokio::task::JoinHandle<Vec<silt_client::RecordMetadata>> {
    let config = ClientConfig { agent: format!("{},{}", b.addr, a.addr), ca: Some(a.ca.clone()), ..Default::default() };
    let topic = topic.to_string();
    tokio::spawn(async move {
        let client = Client::connect(config).await.unwrap();
        let producer = Producer::new(client, &topic, ProducerConfig { acks, ..Default::default() }).await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..n {
            let record = ProducerRecord::new(format!("{i}")).with_partition(i % partitions);
            let (d, sent) = (producer.send(record).await.unwrap(), Instant::now());
            deliveries.push(tokio::spawn(async move {
                let m = d.await.unwrap_or_else(|e| panic!("record {i} failed although an agent was up: {e}"));
                (m, sent.elapsed())
            }));
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (mut acked, mut longest) = (Vec::new(), Duration::ZERO);
        for d in deliveries {
            let (m, waited) = d.await.unwrap();
            acked.push(m);
            longest = longest.max(waited);
        }
        eprintln!("longest wait for an acknowledgement: {longest:?}");
        producer.close().await.unwrap();
        acked
    })
}

/// Every record once, each partition in send order; with `at_acked_offsets`,
/// each at the offset it was acknowledged at.
async fn assert_all_once_in_order(
    a: AgentProcess,
    topic: &str,
    partitions: u32,
    acked: &[silt_client::RecordMetadata],
    at_acked_offsets: bool,
) {
    let topic = topic.to_string();
    let logs = tokio::task::spawn_blocking(move || (0..partitions).map(|p| log_of(&a, &topic, p)).collect::<Vec<_>>())
        .await
        .unwrap();
    for (p, log) in logs.iter().enumerate() {
        assert_dense(log);
        let values: Vec<u32> = log.iter().map(|(_, v)| v.parse().unwrap()).collect();
        let expected: Vec<u32> = (0..acked.len() as u32).filter(|i| i % partitions == p as u32).collect();
        assert_eq!(values, expected, "partition {p}");
    }
    for (i, m) in acked.iter().enumerate().filter(|_| at_acked_offsets) {
        let (offset, value) = &logs[m.partition as usize][m.offset as usize];
        assert_eq!((*offset, value.as_str()), (m.offset, i.to_string().as_str()), "record {i} acknowledged elsewhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_follows_partitions_through_a_handover() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = two_agents(dir.path(), "r", 4, "50ms", false).await;
    let sender = send_in_background(&a, &b, "r", 4000, 4, silt_client::Acks::Durable);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(b.child.id(), "TERM"); // mid-stream
    let started = Instant::now();
    let acked = sender.await.unwrap();
    eprintln!("all records acknowledged {:?} after SIGTERM", started.elapsed());
    assert!(b.child.wait().unwrap().success());
    assert_all_once_in_order(a, "r", 4, &acked, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_resends_what_a_killed_owner_had_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    // Slow flushes: when b is killed it holds about a second of batches
    // that it assigned offsets to but never committed.
    let (a, mut b) = two_agents(dir.path(), "k", 2, "1s", false).await;
    let sender = send_in_background(&a, &b, "k", 3000, 2, silt_client::Acks::Durable);
    tokio::time::sleep(Duration::from_millis(900)).await;
    b.kill9(); // mid-stream, with uncommitted batches
    let started = Instant::now();
    let acked = sender.await.unwrap();
    eprintln!("all records acknowledged {:?} after the kill", started.elapsed());
    assert_all_once_in_order(a, "k", 2, &acked, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_local_records_outlive_an_owner_that_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    // b acknowledges from its WAL and commits only every second; it is
    // killed and never restarted, so its WAL is never replayed.
    let (a, mut b) = two_agents(dir.path(), "l", 2, "1s", true).await;
    let sender = send_in_background(&a, &b, "l", 3000, 2, silt_client::Acks::Local);
    tokio::time::sleep(Duration::from_millis(900)).await;
    b.kill9();
    let acked = sender.await.unwrap();
    // The producer kept what b had acknowledged but not committed, and sent
    // it again: every record is in the log once, in order. (Those records
    // sit at later offsets than b first acknowledged.)
    assert_all_once_in_order(a, "l", 2, &acked, false).await;
}
