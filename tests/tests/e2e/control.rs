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
