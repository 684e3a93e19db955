//! The control plane at rest: what an idle agent asks of the metadata
//! store does not grow with its partitions.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;

fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no counter {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agents_metadata_reads_do_not_grow_with_its_partitions() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("wide", 3000).await.unwrap();
    client.create_topic("wider", 2000).await.unwrap();
    for topic in ["wide", "wider"] {
        let d = client.describe_topic(topic).await.unwrap();
        assert!(d.partitions.iter().all(|p| p.owner == agent.addr.to_string()), "{topic}: every partition is led");
    }
    // Let the round after the agent's own changes pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: HashMap<&str, u64> = {
        let s = client.stats().await.unwrap();
        ["metadata_reads", "metadata_writes", "metadata_conflicts"].into_iter().map(|n| (n, stat(&s, n))).collect()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = client.stats().await.unwrap();
    let reads = stat(&after, "metadata_reads") - before["metadata_reads"];
    let writes = stat(&after, "metadata_writes") - before["metadata_writes"];
    let conflicts = stat(&after, "metadata_conflicts") - before["metadata_conflicts"];
    eprintln!("idle with 5000 partitions, over 5 s: {reads} metadata reads, {writes} writes, {conflicts} conflicts");
    // Two reads a round (registrations, change markers), two rounds a
    // second; one renewal every quarter TTL (2.5 s by default). One point
    // read per partition per round would be 100,000.
    assert!(reads <= 30, "{reads} metadata reads in 5 s");
    assert!(writes <= 3, "{writes} metadata writes in 5 s");
    assert_eq!(conflicts, 0);
    agent.stop().await;
}

/// A raw produce of one record with acks=none: the agent's answer code, or
/// None when it took the batch.
#[cfg(feature = "etcd")]
async fn produce_code(c: &TestCluster, value: &str) -> Option<silt_wire::ErrorCode> {
    let mut b = silt_wire::BatchBuilder::new(silt_wire::Compression::None);
    b.push(0, None, value.as_bytes(), &[]);
    let batch = b.build().unwrap().into_bytes();
    let request = silt_wire::Request::Produce { topic: "s".into(), partition: 0, acks: silt_wire::Acks::None, batch };
    let (_ep, conn) = crate::protocol::raw_connection_to(c.addrs[0].parse().unwrap(), &c.ca()).await;
    match tokio::time::timeout(Duration::from_secs(5), crate::protocol::exchange(&conn, &request.encode())).await {
        Ok(Some(silt_wire::Response::Error { code, .. })) => Some(code),
        Ok(Some(silt_wire::Response::ProduceAssigned { .. })) => None,
        other => panic!("unexpected answer: {other:?}"),
    }
}

/// The metadata store goes silent for longer than the lease TTL: the
/// agent cannot tell whether another has taken its partitions, so it stops
/// taking writes (a retriable FENCED) until it renews its session, then
/// carries on with the leases it still holds; nothing is lost.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_session_lapses_takes_no_writes_until_it_is_renewed() {
    let c = TestCluster::builder().etcd().start().await;
    let client = c.client().await;
    client.create_topic("s", 1).await.unwrap();
    c.agent(0).ok(&["produce", "s"], Some(b"before\n"));
    assert_eq!(produce_code(&c, "taken").await, None);
    let etcd = c.etcd_pid().unwrap();
    // Each probe is a record of its own; which were taken and which refused.
    let (taken, refused) = (std::sync::Mutex::new(vec!["taken".to_string()]), std::sync::Mutex::new(Vec::new()));
    let n = std::sync::atomic::AtomicU32::new(0);
    let probe = async |want_taken: bool| {
        let v = format!("probe-{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let code = produce_code(&c, &v).await;
        match code {
            None => taken.lock().unwrap().push(v),
            Some(silt_wire::ErrorCode::Fenced) => refused.lock().unwrap().push(v),
            Some(other) => panic!("{v}: {other}"),
        }
        code.is_none() == want_taken
    };
    signal(etcd, "STOP");
    let paused = std::time::Instant::now();
    // The lease TTL is 2 s: within it (less a margin) the agent fences itself.
    TestCluster::wait_for("the agent to fence itself", Duration::from_secs(10), || probe(false)).await;
    let fenced_after = paused.elapsed();
    signal(etcd, "CONT");
    let resumed = std::time::Instant::now();
    TestCluster::wait_for("the agent to take writes again", Duration::from_secs(30), || probe(true)).await;
    eprintln!(
        "fenced {fenced_after:?} after the store went silent; writing again {:?} after it came back",
        resumed.elapsed()
    );
    assert!(fenced_after < Duration::from_secs(5), "fenced only after {fenced_after:?}");
    let log_text = std::fs::read_to_string(c.log_file(0)).unwrap();
    assert!(log_text.contains("session may have lapsed"), "{log_text}");
    assert!(log_text.contains("session renewed"), "{log_text}");
    // Everything taken is in the log, once, in order; nothing refused is.
    c.agent(0).ok(&["produce", "s"], Some(b"last\n"));
    let log: Vec<String> = c.log("s", 1).await.into_values().collect();
    let mut want = vec!["before".to_string()];
    want.extend(taken.into_inner().unwrap());
    want.push("last".into());
    assert_eq!(log, want);
    assert!(!refused.into_inner().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_gone_for_over_an_hour_are_forgotten() {
    let agent = TestAgent::start().await;
    // An agent that died long ago, as its registration says.
    let store =
        silt_metadata::open(&format!("sqlite://{}", agent.dir.path().join("metadata.db").display())).await.unwrap();
    let catalog = silt_metadata::Catalog::new(store);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let two_hours = 2 * 60 * 60 * 1000;
    catalog.heartbeat("agent-long-gone", ("127.0.0.1:1", ""), now - two_hours, now - two_hours, 10_000).await.unwrap();
    catalog.heartbeat("agent-just-gone", ("127.0.0.1:2", ""), now - 60_000, now - 60_000, 10_000).await.unwrap();
    let client = agent.client().await;
    let ids = || async { client.list_agents().await.unwrap().into_iter().map(|a| a.id).collect::<Vec<_>>() };
    TestCluster::wait_for("the long-gone agent to be forgotten", Duration::from_secs(10), || async {
        !ids().await.contains(&"agent-long-gone".to_string())
    })
    .await;
    let left = ids().await;
    assert!(left.contains(&"agent-just-gone".to_string()), "an agent gone a minute is still listed: {left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    agent.stop().await;
}
