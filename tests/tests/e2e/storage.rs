//! Storage over time: topic configs, retention, compaction of flush
//! objects, key-compacted topics and garbage collection, through the
//! `silt` binary and the SDK against real agents.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use silt_client::{
    Client, Compression, ConsumedRecord, Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord,
    Skipped,
};
use silt_wire::Header;

use crate::harness::*;

#[test]
fn topic_configs_are_set_shown_altered_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--max-record-bytes", "64KiB"]);
    agent.ok(
        &["topic", "create", "c", "-p", "2", "--config", "retention.ms=60000", "--config", "max.message.bytes=1000"],
        None,
    );
    let describe = |name: &str| String::from_utf8(agent.ok(&["topic", "describe", name], None)).unwrap();
    let text = describe("c");
    assert_eq!(text.lines().nth(1), Some("CONFIGS max.message.bytes=1000,retention.ms=60000"), "{text}");

    // The topic's record limit applies to producers.
    let mut big = vec![b'v'; 1001];
    big.push(b'\n');
    let out = agent.cli_with_input(&["produce", "c"], Some(&big));
    assert!(!out.status.success() && stderr(&out).contains("maximum record size of 1000 bytes"), "{}", stderr(&out));
    agent.ok(&["produce", "c"], Some(&[vec![b'v'; 1000], b"\n".to_vec()].concat()));

    agent.ok(
        &[
            "topic",
            "alter",
            "c",
            "--config",
            "cleanup.policy=compact,delete",
            "--config",
            "retention.ms=-1",
            "--delete-config",
            "max.message.bytes",
        ],
        None,
    );
    let text = describe("c");
    assert_eq!(text.lines().nth(1), Some("CONFIGS cleanup.policy=compact,delete,retention.ms=-1"), "{text}");
    // Now key-compacted: records need a key, and may be larger.
    let out = agent.cli_with_input(&["produce", "c"], Some(b"no key\n"));
    assert!(!out.status.success() && stderr(&out).contains("MISSING_KEY"), "{}", stderr(&out));
    let mut big = b"k=".to_vec();
    big.extend(vec![b'v'; 1001]);
    big.push(b'\n');
    agent.ok(&["produce", "c", "--key-separator", "="], Some(&big));

    // Bad keys and values are refused, naming the key; nothing changes.
    let before = describe("c");
    let cases: &[(&[&str], &str)] = &[
        (&["topic", "create", "d", "--config", "retention.hours=1"], "retention.hours"),
        (&["topic", "create", "d", "--config", "retention.ms=0"], "retention.ms"),
        (&["topic", "create", "d", "--config", "segment.bytes=12"], "segment.bytes"),
        (&["topic", "create", "d", "--config", "cleanup.policy=shred"], "cleanup.policy"),
        (&["topic", "create", "d", "--config", "max.message.bytes=1000000"], "max.message.bytes"),
        (&["topic", "create", "d", "--config", "noequals"], "KEY=VALUE"),
        (&["topic", "alter", "c", "--config", "retention.bytes=-5"], "retention.bytes"),
        (&["topic", "alter", "c", "--config", "retention.ms=5", "--config", "segment.bytes=x"], "segment.bytes"),
        (&["topic", "alter", "c", "--delete-config", "nope"], "nope"),
        (&["topic", "alter", "c"], "nothing to change"),
        (&["topic", "alter", "missing", "--config", "retention.ms=5"], "\"missing\" does not exist"),
    ];
    for (args, expect) in cases {
        let out = agent.cli(args);
        assert!(!out.status.success(), "silt {args:?} should fail");
        assert!(stderr(&out).contains(expect), "silt {args:?}: expected {expect:?} in {}", stderr(&out));
    }
    assert_eq!(describe("c"), before, "refused changes changed nothing");
    assert_eq!(agent.ok(&["topic", "list"], None), b"c\n", "refused creates created nothing");

    // The agents' defaults are flags, checked at start.
    let out = run_silt(
        &["agent", "--data-dir", dir.path().join("b").to_str().unwrap(), "--retention-ms", "0"],
        None,
        &[],
        None,
    );
    assert!(!out.status.success() && stderr(&out).contains("--retention-ms"), "{}", stderr(&out));
}

/// Flags that make retention and collection act within a test's patience.
const QUICK_UPKEEP: &[&str] = &[
    "--retention-check-interval",
    "200ms",
    "--gc-grace",
    "1s",
    "--gc-interval",
    "200ms",
    "--orphan-age",
    "2s",
    "--orphan-sweep-interval",
    "500ms",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Writes `rounds` of `per_round` records to partition 0, each round
/// acknowledged (committed, so in its own object) before the next; round
/// `r`'s records are `{r}-{i}` padded to 100 bytes, stamped `stamp(r)`.
async fn write_rounds(
    client: &Client,
    topic: &str,
    rounds: std::ops::Range<u32>,
    per_round: u32,
    stamp: impl Fn(u32) -> i64,
) {
    let config = ProducerConfig { compression: Compression::None, ..Default::default() };
    let producer = Producer::new(client.clone(), topic, config).await.unwrap();
    for r in rounds {
        for i in 0..per_round {
            let record = ProducerRecord {
                value: Some(format!("{:<100}", format!("{r}-{i}")).into()),
                partition: Some(0),
                timestamp: Some(stamp(r)),
                ..Default::default()
            };
            producer.send(record).await.unwrap();
        }
        producer.flush().await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Reads partition 0 from `from` to the high watermark: (offset, value
/// trimmed) in order, and the jumps the consumer made.
async fn read_from(client: &Client, topic: &str, from: i64) -> (Vec<(i64, String)>, Vec<Skipped>) {
    let d = client.describe_topic(topic).await.unwrap();
    let hw = d.partitions[0].high_watermark;
    let consumer = Consumer::new(client.clone(), topic, ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::At(from))]).await.unwrap();
    let mut out = Vec::new();
    while out.last().map_or(from, |(o, _)| o + 1) < hw {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        out.push((
            r.offset,
            String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap().trim_end().to_string(),
        ));
    }
    (out, stream.skipped())
}

async fn objects(store: &impl ObjectStore) -> BTreeSet<String> {
    let listed: Vec<_> = store.list(Some(&ObjectPath::from("cluster/data"))).try_collect().await.unwrap();
    listed.into_iter().map(|o| o.location.to_string()).collect()
}

async fn log_start(client: &Client, topic: &str) -> i64 {
    client.describe_topic(topic).await.unwrap().partitions[0].log_start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_by_time_and_by_size_and_collects_what_nothing_reads() {
    let c = TestCluster::builder().s3().flags(QUICK_UPKEEP).start().await;
    let store = c.s3_server().unwrap().store();
    let client = c.client().await;
    let day = 86_400_000;

    // By time: three rounds stamped two days ago, two stamped now, under a
    // one-day retention.ms. Each round is one index entry in one object.
    client.create_topic_with("old", 1, &[kv("retention.ms", &day.to_string())]).await.unwrap();
    let before = objects(&store).await;
    let now = now_ms();
    write_rounds(&client, "old", 0..5, 100, |r| if r < 3 { now - 2 * day } else { now }).await;
    let written: BTreeSet<String> = objects(&store).await.difference(&before).cloned().collect();
    assert_eq!(written.len(), 5, "one object per acknowledged round");
    TestCluster::wait_for("retention to trim the old rounds", Duration::from_secs(20), || async {
        log_start(&client, "old").await == 300
    })
    .await;
    assert_eq!(c.stats(0).await["trimmed_segments"], 3);

    // A consumer positioned below the log start continues at it, and says so.
    let (records, skipped) = read_from(&client, "old", 0).await;
    let want: Vec<(i64, String)> = (300..500).map(|o| (o, format!("{}-{}", o / 100, o % 100))).collect();
    assert_eq!(records, want, "exactly the retained records, in order");
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0].from, skipped[0].to, skipped[0].log_start), (0, 300, 300));
    let out = c.agent(0).cli(&[
        "consume",
        "old",
        "--offset",
        "5",
        "--partition",
        "0",
        "--max-messages",
        "200",
        "--print-offset",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipped offsets 5 to 299 of old/0: the partition now starts at offset 300"),
        "{}",
        stderr(&out)
    );
    let printed = parse_offsets(&out.stdout);
    assert_eq!(printed.first().map(|r| r.1), Some(300));
    assert_eq!(printed.len(), 200);

    // The old rounds' objects go once their grace has passed, while a reader
    // keeps reading the retained ones: nothing it needs is deleted.
    let reader = {
        let (client, want) = (client.clone(), want.clone());
        tokio::spawn(async move {
            loop {
                let (records, skipped) = read_from(&client, "old", 300).await;
                assert_eq!(records, want, "a read during collection");
                assert!(skipped.is_empty());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    TestCluster::wait_for("the trimmed objects to be deleted", Duration::from_secs(20), || async {
        objects(&store).await.intersection(&written).count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!reader.is_finished(), "the reader failed");
    reader.abort();
    let stats = c.stats(0).await;
    assert_eq!(stats["objects_deleted"], 3);
    assert_eq!(objects(&store).await.intersection(&written).count(), 2, "the retained rounds' objects stay");

    // By size: ten rounds of about 5 KB under retention.bytes=20000. Whole
    // rounds go, oldest first, while at least 20000 bytes stay.
    client.create_topic_with("big", 1, &[kv("retention.bytes", "20000")]).await.unwrap();
    write_rounds(&client, "big", 0..10, 50, |_| now_ms()).await;
    // Trimmed as the rounds came, perhaps in several steps: wait until it holds still.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut last = -1;
    loop {
        let now = log_start(&client, "big").await;
        if now > 0 && now == last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention did not trim by size (log start {now})");
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let start = log_start(&client, "big").await;
    assert_eq!(start % 50, 0, "whole rounds go");
    let kept = (500 - start) / 50;
    assert!((4..=5).contains(&kept), "about 20000 bytes stay: {kept} rounds of ~5.6 KB");
    let (records, _) = read_from(&client, "big", start).await;
    assert_eq!(records.len() as i64, 500 - start);
    assert_eq!(records[0], (start, format!("{}-0", start / 50)));

    // At rest, once caught up: no object is written or deleted.
    TestCluster::wait_for("the size-trimmed objects to go", Duration::from_secs(20), || async {
        c.stats(0).await["objects_deleted"] == 3 + (10 - kept) as u64
    })
    .await;
    let quiet = c.stats(0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = c.stats(0).await;
    for k in ["objects_written", "objects_deleted", "trimmed_segments", "index_commits"] {
        assert_eq!(quiet[k], later[k], "{k} moved at rest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_topics_and_orphans_are_collected() {
    let c = TestCluster::builder().s3().flags(QUICK_UPKEEP).start().await;
    let store = c.s3_server().unwrap().store();
    let client = c.client().await;

    client.create_topic("gone", 1).await.unwrap();
    let before = objects(&store).await;
    write_rounds(&client, "gone", 0..3, 20, |_| now_ms()).await;
    let written: BTreeSet<String> = objects(&store).await.difference(&before).cloned().collect();
    assert_eq!(written.len(), 3);

    // Deleted at once; re-created under the same name, it is empty.
    client.delete_topic("gone").await.unwrap();
    client.create_topic("gone", 1).await.unwrap();
    let d = client.describe_topic("gone").await.unwrap();
    assert_eq!((d.partitions[0].log_start, d.partitions[0].high_watermark), (0, 0));
    write_rounds(&client, "gone", 0..1, 5, |_| now_ms()).await;
    let (records, _) = read_from(&client, "gone", 0).await;
    assert_eq!(records.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["0-0", "0-1", "0-2", "0-3", "0-4"]);
    TestCluster::wait_for("the deleted topic's objects to go", Duration::from_secs(20), || async {
        objects(&store).await.intersection(&written).count() == 0
    })
    .await;

    // An object nothing ever pointed into (as a crash between PUT and
    // commit leaves): a copy of a live object under another name. Once
    // older than --orphan-age, the sweep finds it; the live original stays.
    let live = objects(&store).await.into_iter().next().unwrap();
    let bytes = store.get(&ObjectPath::from(live.as_str())).await.unwrap().bytes().await.unwrap();
    let orphan = format!("cluster/data/ffff/crashed-agent-{:013}-0000000001-00000000.silt", now_ms());
    store.put(&ObjectPath::from(orphan.as_str()), PutPayload::from_bytes(bytes)).await.unwrap();
    TestCluster::wait_for("the orphan to be collected", Duration::from_secs(20), || async {
        !objects(&store).await.contains(&orphan)
    })
    .await;
    assert!(objects(&store).await.contains(&live));
    let stats = c.stats(0).await;
    // The sweep may also have come across the deleted topic's objects first.
    assert!(stats["orphans_found"] >= 1);
    assert_eq!(stats["objects_deleted"], 4);
    let (records, _) = read_from(&client, "gone", 0).await;
    assert_eq!(records.len(), 5, "the re-created topic reads whole");
}

/// Every record of `partitions` of `topic`, whole (offset, timestamp, key,
/// value, headers), in order per partition.
async fn whole_log(client: &Client, topic: &str, partitions: u32) -> Vec<ConsumedRecord> {
    let d = client.describe_topic(topic).await.unwrap();
    let mut out = Vec::new();
    for p in 0..partitions {
        let info = &d.partitions[p as usize];
        let consumer = Consumer::new(client.clone(), topic, ConsumerConfig::default()).await.unwrap();
        let mut stream = consumer.stream(&[(p, Offset::At(info.log_start))]).await.unwrap();
        for want in info.log_start..info.high_watermark {
            let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(r.offset, want, "offsets are dense and in order");
            out.push(r);
        }
    }
    out
}

/// `rounds` rounds, each acknowledged before the next (one flush object
/// each), of `per_partition` keyed records with headers to each of
/// `partitions` partitions.
async fn write_spread(client: &Client, topic: &str, partitions: u32, rounds: std::ops::Range<u32>, per_partition: u32) {
    let producer = Producer::new(client.clone(), topic, ProducerConfig::default()).await.unwrap();
    for r in rounds {
        for p in 0..partitions {
            for i in 0..per_partition {
                let record = ProducerRecord {
                    key: Some(format!("k{p}-{i}").into()),
                    value: Some(format!("{r}/{p}/{i} {}", "x".repeat((i as usize * 37) % 200)).into()),
                    headers: vec![Header { name: "round".into(), value: r.to_string().into() }],
                    partition: Some(p),
                    ..Default::default()
                };
                producer.send(record).await.unwrap();
            }
        }
        producer.flush().await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Objects in the bucket: (flush objects, compacted segments).
async fn kinds(store: &impl ObjectStore) -> (usize, usize) {
    let all = objects(store).await;
    let segments = all.iter().filter(|o| o.ends_with(".seg.silt")).count();
    (all.len() - segments, segments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rewrites_flush_objects_into_segments_and_reads_stay_whole() {
    let c = TestCluster::builder().s3().flags(QUICK_UPKEEP).flags(&["--compaction-min-age", "1s"]).start().await;
    let store = c.s3_server().unwrap().store();
    let client = c.client().await;
    client.create_topic_with("c", 4, &[kv("segment.bytes", "1048576")]).await.unwrap();
    write_spread(&client, "c", 4, 0..20, 10).await;
    let before = whole_log(&client, "c", 4).await;
    assert_eq!(before.len(), 800);
    assert_eq!(kinds(&store).await, (20, 0), "one object per acknowledged round");

    // A reader keeps reading the whole log while compaction and collection run.
    let reader = {
        let (client, before) = (client.clone(), before.clone());
        tokio::spawn(async move {
            loop {
                assert_eq!(whole_log(&client, "c", 4).await, before, "a read during compaction");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    TestCluster::wait_for("compaction and collection", Duration::from_secs(30), || async {
        kinds(&store).await.0 == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!reader.is_finished(), "the reader failed");
    reader.abort();

    // Every record, byte for byte, in order. Every entry was rewritten once,
    // into a segment or two per partition (rounds still arriving when the
    // first were old enough went into a second).
    assert_eq!(whole_log(&client, "c", 4).await, before);
    let stats = c.stats(0).await;
    let segments = kinds(&store).await.1;
    assert!((4..=8).contains(&segments), "{segments} segments for 4 partitions");
    assert_eq!((stats["compacted_segments"], stats["compacted_entries"]), (segments as u64, 80));
    assert_eq!(stats["objects_deleted"], 20);
    // Each byte written twice, plus the objects' footers (large next to
    // these 1 KB flushes: 52 bytes per partition run).
    let wa = stats["write_amplification_pct"];
    assert!((200..=230).contains(&wa), "write amplification {wa}%");

    // More rounds: compacted again into new segments, the old ones stay.
    write_spread(&client, "c", 4, 20..30, 10).await;
    TestCluster::wait_for("the new rounds to be compacted", Duration::from_secs(30), || async {
        let (flushed, compacted) = kinds(&store).await;
        flushed == 0 && compacted > segments
    })
    .await;
    assert_eq!(c.stats(0).await["compacted_entries"], 120);
    let after = whole_log(&client, "c", 4).await;
    assert_eq!(after.len(), 1200);
    let mut old_part: Vec<_> = after.iter().filter(|r| r.offset < 200).cloned().collect();
    old_part.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(old_part, before, "compacted records are not touched again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_kill_9_at_every_step() {
    let mut c =
        TestCluster::builder().s3().flags(QUICK_UPKEEP).flags(&["--compaction-min-age", "1s"]).launch(0).start().await;
    let store = c.s3_server().unwrap().store();
    let mut written = 0;
    for point in ["compaction-before-put", "compaction-before-commit", "compaction-before-delete"] {
        c.launch_with_env(0, &[], &[("SILT_CRASH_AT", point)]);
        let client = c.client().await;
        if written == 0 {
            client.create_topic("k", 1).await.unwrap();
        }
        write_spread(&client, "k", 1, written..written + 5, 20).await;
        written += 5;
        let want = whole_log(&client, "k", 1).await;
        client.close();
        let status = c.wait_exit_within(0, Duration::from_secs(30)).await;
        assert!(!status.success(), "{point}: the agent should have aborted");

        c.launch(0);
        let client = c.client().await;
        assert_eq!(whole_log(&client, "k", 1).await, want, "{point}: the log is whole after the crash");
        // Then compaction finishes, and what the crash left is collected.
        TestCluster::wait_for(&format!("{point}: compaction and collection"), Duration::from_secs(30), || async {
            kinds(&store).await.0 == 0
        })
        .await;
        assert_eq!(whole_log(&client, "k", 1).await, want, "{point}: the log is whole after compaction");
        TestCluster::wait_for(&format!("{point}: one segment per compaction"), Duration::from_secs(30), || async {
            kinds(&store).await.1 == (written / 5) as usize
        })
        .await;
        client.close();
        c.terminate(0);
    }
}

/// Whether a process is stopped (SIGSTOP).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_paused_past_its_lease_cannot_swap_the_index() {
    let mut c = TestCluster::builder()
        .agents(2)
        .launch(0)
        .flags(QUICK_UPKEEP)
        .flags(&["--compaction-min-age", "1s"])
        .start()
        .await;
    // Agent 0 stops itself (SIGSTOP) between writing a segment and swapping it in.
    c.launch_with_env(0, &[], &[("SILT_PAUSE_AT", "compaction-before-commit")]);
    let client = Client::connect(c.config_in(&[0])).await.unwrap();
    client.create_topic("f", 1).await.unwrap();
    write_spread(&client, "f", 1, 0..5, 20).await;
    let want = whole_log(&client, "f", 1).await;
    client.close();
    let pid = c.agent(0).child.id();
    TestCluster::wait_for("agent 0 to pause in compaction", Duration::from_secs(30), || async { stopped(pid) }).await;

    // Its lease lapses; agent 1 takes the partition and compacts it itself.
    c.launch(1);
    let other = Client::connect(c.config_in(&[1])).await.unwrap();
    let addr1 = c.addrs[1].clone();
    TestCluster::wait_for("agent 1 to take the partition", Duration::from_secs(30), || async {
        other.describe_topic("f").await.is_ok_and(|d| d.partitions[0].owner == addr1)
    })
    .await;
    TestCluster::wait_for("agent 1 to compact", Duration::from_secs(30), || async {
        c.stats(1).await["compacted_segments"] == 1
    })
    .await;

    // Agent 0 wakes up: its swap is refused, and the log is as written.
    signal(pid, "CONT");
    TestCluster::wait_for("agent 0's swap to be refused", Duration::from_secs(30), || async {
        c.stats(0).await["compactions_refused"] == 1
    })
    .await;
    assert_eq!(c.stats(0).await["compacted_segments"], 0);
    assert_eq!(whole_log(&other, "f", 1).await, want);
    let segments = other.describe_topic("f").await.unwrap();
    assert_eq!(segments.partitions[0].high_watermark, 100);
}

/// A partition-0 log: (offset, key, value), until a second passes with
/// nothing more (compaction may have removed its last records).
async fn keyed_log(client: &Client, topic: &str) -> Vec<(i64, String, Option<bytes::Bytes>)> {
    let consumer = Consumer::new(client.clone(), topic, ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
    let mut out = Vec::new();
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
        let next = next.unwrap().unwrap();
        out.push((next.offset, String::from_utf8(next.key.unwrap().to_vec()).unwrap(), next.value));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_compacted_topic_keeps_the_latest_record_of_each_key() {
    let c = TestCluster::builder().s3().flags(QUICK_UPKEEP).flags(&["--compaction-min-age", "1s"]).start().await;
    let client = c.client().await;
    client.create_topic_with("kv", 1, &[kv("cleanup.policy", "compact")]).await.unwrap();

    // Records without a key are refused, naming the reason.
    let producer = Producer::new(client.clone(), "kv", ProducerConfig::default()).await.unwrap();
    let refused = producer.send(ProducerRecord::new("no key")).await.unwrap().await;
    let e = refused.expect_err("a keyless record on a compacted topic");
    assert_eq!(e.code(), Some(silt_wire::ErrorCode::MissingKey), "{e}");
    assert!(e.to_string().contains("every record needs a key"), "{e}");
    producer.close().await.ok();

    // 100,000 updates over 1,000 keys (offset i updates key i % 1000), then
    // tombstones: k0..k9 now, k10..k19 stamped two days ago (older than
    // delete.retention.ms, one day, so they go too).
    let producer = Producer::new(client.clone(), "kv", ProducerConfig::default()).await.unwrap();
    let now = now_ms();
    let mut pending = Vec::new();
    for i in 0..100_000u32 {
        let r = ProducerRecord::new(format!("v{i}")).with_key(format!("k{}", i % 1000)).with_timestamp(now);
        pending.push(producer.send(r).await.unwrap());
    }
    for j in 0..20 {
        let stamp = if j < 10 { now } else { now - 2 * 86_400_000 };
        pending.push(producer.send(ProducerRecord::tombstone(format!("k{j}")).with_timestamp(stamp)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close().await.unwrap();
    let d = client.describe_topic("kv").await.unwrap();
    assert_eq!((d.partitions[0].log_start, d.partitions[0].high_watermark), (0, 100_020));

    // One record per live key, at the offset it was written at; the recent
    // tombstones stay, the old ones and everything they deleted are gone.
    let mut want: Vec<(i64, String, Option<bytes::Bytes>)> =
        (20..1000).map(|j| (99_000 + j as i64, format!("k{j}"), Some(format!("v{}", 99_000 + j).into()))).collect();
    want.extend((0..10).map(|j| (100_000 + j as i64, format!("k{j}"), None)));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = keyed_log(&client, "kv").await;
        if got == want {
            break;
        }
        let first_difference = got.iter().zip(&want).position(|(g, w)| g != w);
        assert!(
            std::time::Instant::now() < deadline,
            "not cleaned: {} records, want {}; first difference at {first_difference:?}",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(c.stats(0).await["compacted_segments"] >= 1);
    let d = client.describe_topic("kv").await.unwrap();
    assert_eq!((d.partitions[0].log_start, d.partitions[0].high_watermark), (0, 100_020));
    let consumer = Consumer::new(client.clone(), "kv", ConsumerConfig::default()).await.unwrap();

    // Reading from inside a gap starts at the next kept record.
    let mut from_gap = consumer.stream(&[(0, Offset::At(500))]).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), from_gap.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((first.offset, first.key.as_deref()), (99_020, Some(&b"k20"[..])));

    // The CLI: a line KEY<sep> with --null-value-on-empty is a tombstone.
    let agent = c.agent(0);
    agent.ok(&["produce", "kv", "--key-separator", "=", "--null-value-on-empty"], Some(b"k500=\nk501=new\n"));
    let out = agent
        .ok(&["consume", "kv", "--offset", "100020", "--partition", "0", "--print-key", "--max-messages", "2"], None);
    assert_eq!(String::from_utf8(out).unwrap(), "k500\t\nk501\tnew\n");
    let mut tail = consumer.stream(&[(0, Offset::At(100_020))]).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(10), tail.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((t.key.as_deref(), t.value), (Some(&b"k500"[..]), None));
}
