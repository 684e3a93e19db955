//! kill -9 at any moment loses no acknowledged record, duplicates none,
//! and moves none to another offset.

use std::collections::BTreeSet;
use std::time::Duration;

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
    let mut c = TestCluster::builder().flush_interval("30ms").start().await;
    c.client().await.create_topic("m", 3).await.unwrap();
    // Produce continuously, remembering every acknowledgement, and kill the
    // agent while records are in flight.
    let sender = Background::start(c.config(), "m", 3, Plan::default());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let in_flight = sender.tally.total_in_flight();
    c.kill9(0);
    assert!(in_flight > 0, "records were in flight at the kill");
    // Records not acknowledged by now never will be: the agent is gone, and
    // only acknowledged records are promised.
    let produced = sender.abandon().await;
    let acked = produced.by_offset(0);
    assert!(acked.len() > 100, "the test produced while the agent was up ({} acked of {})", acked.len(), produced.sent);

    c.launch(0);
    let log = c.log("m", 3).await;
    for (at, v) in &acked {
        assert_eq!(log.get(at), Some(v), "acknowledged record {v} at {at:?} is missing or moved");
    }
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
    let mut objects: Vec<_> = silt_objects(&data.join("objects"));
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
