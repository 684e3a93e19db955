//! Consumer groups against real agents: `silt consume --group` processes
//! split a topic's partitions, keep going through kills, joins and leaves,
//! and never consume one partition at once; the group's offsets survive its
//! coordinator; a removed member cannot commit over its successor.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A `silt consume --group` process; what it prints is collected as it goes.
struct Member {
    child: Child,
    lines: Arc<Mutex<Vec<(u32, i64, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(c: &TestCluster, topic: &str, group: &str, extra: &[&str]) -> Member {
        let mut child = Command::new(silt_bin())
            .args(["consume", topic, "--group", group, "--print-offset", "--from-beginning"])
            .args(["--session-timeout", "3s", "--heartbeat-interval", "1s", "--auto-commit-interval", "200ms"])
            .args(extra)
            .env("SILT_AGENT", c.addrs.join(","))
            .env("SILT_CA", c.ca())
            .env("SILT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (po, value) = line.split_once('\t').unwrap();
                let (p, o) = po.split_once(':').unwrap();
                sink.lock().unwrap().push((p.parse().unwrap(), o.parse().unwrap(), value.to_string()));
            }
        });
        Member { child, lines, reader: Some(reader) }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ctrl-C (a graceful leave: it commits and leaves), then what it printed.
    fn stop(mut self) -> Vec<(u32, i64, String)> {
        signal(self.child.id(), "INT");
        self.finish()
    }

    fn kill9(mut self) -> Vec<(u32, i64, String)> {
        self.child.kill().unwrap();
        self.finish()
    }

    fn finish(&mut self) -> Vec<(u32, i64, String)> {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let _ = status;
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds (polled every 100 ms), failing after `secs`.
async fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of each member, checked: each (partition, offset) once per
/// member, the values match the log. Returns (partition, offset) -> how many
/// members consumed it.
fn tally(members: &[Vec<(u32, i64, String)>], log: &BTreeMap<(u32, i64), String>) -> BTreeMap<(u32, i64), usize> {
    let mut seen: BTreeMap<(u32, i64), usize> = BTreeMap::new();
    for m in members {
        let mut own = BTreeSet::new();
        for (p, o, v) in m {
            assert!(own.insert((*p, *o)), "a member printed {p}:{o} twice");
            assert_eq!(log.get(&(*p, *o)), Some(v), "{p}:{o} is not what the log holds");
            *seen.entry((*p, *o)).or_default() += 1;
        }
    }
    seen
}

/// The committed offsets of `group`, by partition.
async fn committed(c: &TestCluster, group: &str, topic: &str) -> BTreeMap<u32, i64> {
    let offsets = c.client().await.committed_offsets(group, &[topic.to_string()]).await.unwrap();
    offsets.into_iter().map(|o| (o.partition, o.offset)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_six_partitions_join_and_leave_without_duplicates() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("g", 6).await.unwrap();
    let sender = Background::start(
        c.config(),
        "g",
        6,
        Plan { pin: Some(6), pause: (20, Duration::from_millis(10)), ..Default::default() },
    );
    let members: Vec<Member> = (0..3).map(|_| Member::start(&c, "g", "three", &[])).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A fourth member joins mid-stream; then the first leaves gracefully.
    let fourth = Member::start(&c, "g", "three", &[]);
    until("the fourth member to consume", 20, || fourth.count() > 0).await;
    let text = String::from_utf8(c.agent(0).ok(&["group", "describe", "three"], None)).unwrap();
    eprintln!("{text}");
    assert!(text.lines().skip(2).all(|l| !l.contains(" - ")), "every partition has a member and an offset:\n{text}");
    let mut members = members.into_iter();
    let first = members.next().unwrap().stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let produced = sender.finish().await;
    assert!(produced.failed.is_empty());
    let log = c.log("g", 6).await;
    assert_eq!(log.len() as u64, produced.sent);
    let rest: Vec<Member> = members.chain([fourth]).collect();
    let total = || rest.iter().map(Member::count).sum::<usize>() + first.len();
    until("every record to be consumed", 30, || total() >= log.len()).await;
    let mut outputs = vec![first];
    outputs.extend(rest.into_iter().map(Member::stop));
    let seen = tally(&outputs, &log);
    assert_eq!(seen.len(), log.len(), "every record consumed");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "joins and graceful leaves consumed {} records twice: {:?}", twice.len(), twice.first());
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.is_empty(), "member {i} got no records");
    }
    eprintln!("members consumed {:?} records", outputs.iter().map(Vec::len).collect::<Vec<_>>());
    // The group is empty now, and its offsets are at the log's end.
    let d = c.client().await.describe_group("three").await.unwrap();
    assert_eq!(d.state, "Empty");
    assert!(d.partitions.iter().all(|p| p.committed == p.log_end), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_partitions_move_and_resume_from_the_last_commit() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("k", 4).await.unwrap();
    let sender = Background::start(
        c.config(),
        "k",
        4,
        Plan { pin: Some(4), pause: (20, Duration::from_millis(10)), ..Default::default() },
    );
    let a = Member::start(&c, "k", "kills", &[]);
    let b = Member::start(&c, "k", "kills", &[]);
    until("both members to consume", 20, || a.count() > 0 && b.count() > 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    let a_out = a.kill9();
    // b takes a's partitions once a's session (3 s) ends.
    let moved_after = {
        let c = &c;
        let mut moved = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while moved.is_none() {
            let d = c.client().await.describe_group("kills").await.unwrap();
            if d.members.len() == 1 && d.partitions.iter().all(|p| !p.member.is_empty()) {
                moved = Some(killed_at.elapsed());
            }
            assert!(Instant::now() < deadline, "a's partitions never moved: {d:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moved.unwrap()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let produced = sender.finish().await;
    let log = c.log("k", 4).await;
    assert_eq!(log.len() as u64, produced.sent);
    until("b to consume everything", 30, || {
        let mut all: BTreeSet<(u32, i64)> = a_out.iter().map(|(p, o, _)| (*p, *o)).collect();
        all.extend(b.lines.lock().unwrap().iter().map(|(p, o, _)| (*p, *o)));
        all.len() >= log.len()
    })
    .await;
    let b_out = b.stop();
    let seen = tally(&[a_out.clone(), b_out], &log);
    assert_eq!(seen.len(), log.len(), "every record consumed");
    // Duplicates come only from what a printed after its last commit: for
    // each partition, a suffix of what a consumed of it.
    let twice: BTreeSet<(u32, i64)> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect();
    for (p, o) in &twice {
        let a_of_p: Vec<i64> = a_out.iter().filter(|(q, _, _)| q == p).map(|(_, o, _)| *o).collect();
        assert!(a_of_p.contains(o), "{p}:{o} was consumed twice, but not by the killed member");
        assert!(
            a_of_p.iter().filter(|x| *x > o).all(|x| twice.contains(&(*p, *x))),
            "duplicates in {p} are not a suffix"
        );
    }
    eprintln!(
        "a's partitions moved {moved_after:?} after kill -9 (session timeout 3 s); {} of {} records consumed twice",
        twice.len(),
        log.len()
    );
    assert!(moved_after < Duration::from_secs(3 + 2), "moved only after {moved_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_are_independent_and_describe_reports_the_lag() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("two", 3).await.unwrap();
    for p in 0..3 {
        c.agent(0).ok(&["produce", "two", "--partition", &p.to_string()], Some(&seq(100)));
    }
    let all = c.agent(0).ok(&["consume", "two", "--group", "a", "--from-beginning", "--max-messages", "300"], None);
    assert_eq!(String::from_utf8(all).unwrap().lines().count(), 300);
    let some = c.agent(0).ok(&["consume", "two", "--group", "b", "--from-beginning", "--max-messages", "120"], None);
    assert_eq!(String::from_utf8(some).unwrap().lines().count(), 120);
    let lag =
        |d: &silt_client::GroupDescription| d.partitions.iter().map(|p| p.log_end - p.committed.max(0)).sum::<i64>();
    let client = c.client().await;
    let (a, b) = (client.describe_group("a").await.unwrap(), client.describe_group("b").await.unwrap());
    assert_eq!(lag(&a), 0);
    assert_eq!(lag(&b), 180, "{b:?}");
    // The CLI shows it, in kafka-consumer-groups' layout.
    let text = String::from_utf8(c.agent(0).ok(&["group", "describe", "b"], None)).unwrap();
    eprintln!("{text}");
    assert!(text.lines().nth(1).unwrap().split_whitespace().eq([
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER",
        "HOST"
    ]));
    let lags: i64 = text.lines().skip(2).map(|l| l.split_whitespace().nth(4).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(lags, 180);
    // What remains is exactly what the lag said; a second run continues there.
    let rest = c.agent(0).ok(&["consume", "two", "--group", "b", "--timeout-ms", "2000"], None);
    assert_eq!(String::from_utf8(rest).unwrap().lines().count(), 180);
    let list = String::from_utf8(c.agent(0).ok(&["group", "list"], None)).unwrap();
    assert!(list.contains("a ") && list.contains("b "), "{list}");
    // Resets and deletes: to an offset, past the end (refused), to earliest, then gone.
    c.agent(0).ok(&["group", "reset-offsets", "b", "--topic", "two", "--to-offset", "10"], None);
    assert!(client.describe_group("b").await.unwrap().partitions.iter().all(|p| p.committed == 10));
    let out = c.agent(0).cli(&["group", "reset-offsets", "b", "--topic", "two", "--to-offset", "1000"]);
    assert!(!out.status.success() && stderr(&out).contains("out of range"), "{}", stderr(&out));
    assert!(client.describe_group("b").await.unwrap().partitions.iter().all(|p| p.committed == 10), "nothing changed");
    let out = c.agent(0).cli(&["group", "reset-offsets", "b", "--topic", "nope", "--to-earliest"]);
    assert!(!out.status.success() && stderr(&out).contains("does not exist"), "{}", stderr(&out));
    c.agent(0).ok(&["group", "reset-offsets", "b", "--topic", "two", "--to-earliest"], None);
    assert_eq!(lag(&client.describe_group("b").await.unwrap()), 300);
    c.agent(0).ok(&["group", "delete", "b"], None);
    let out = c.agent(0).cli(&["group", "describe", "b"]);
    assert!(!out.status.success() && stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_eq!(lag(&client.describe_group("a").await.unwrap()), 0, "group a is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_live_members_cannot_be_reset_or_deleted() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("live", 2).await.unwrap();
    let m = Member::start(&c, "live", "busy", &[]);
    let client = c.client().await;
    TestCluster::wait_for("the member to join", Duration::from_secs(20), || async {
        client.describe_group("busy").await.is_ok_and(|d| d.members.len() == 1)
    })
    .await;
    for args in
        [&["group", "reset-offsets", "busy", "--topic", "live", "--to-earliest"][..], &["group", "delete", "busy"]]
    {
        let out = c.agent(0).cli(args);
        assert!(!out.status.success() && stderr(&out).contains("live members"), "{args:?}: {}", stderr(&out));
    }
    drop(m.stop());
    c.agent(0).ok(&["group", "delete", "busy"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_that_comes_back_cannot_commit_over_its_successor() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("z", 1).await.unwrap();
    c.agent(0).ok(&["produce", "z"], Some(&seq(100)));
    // a reads the first records, then pauses (SIGSTOP) past its session.
    let a = Member::start(&c, "z", "zombie", &[]);
    until("a to consume", 20, || a.count() >= 100).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // a committed 100
    signal(a.pid(), "STOP");
    assert_eq!(committed(&c, "zombie", "z").await.get(&0), Some(&100));
    c.agent(0).ok(&["produce", "z"], Some(&seq(50)));
    // b joins; once a's session (3 s) ends, b takes the partition and commits 150.
    let b = Member::start(&c, "z", "zombie", &[]);
    until("b to consume what is new", 30, || b.count() >= 50).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(committed(&c, "zombie", "z").await.get(&0), Some(&150));
    // a wakes up believing it still holds the partition: whatever it tries
    // to commit is refused; the group's offset stays b's.
    signal(a.pid(), "CONT");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(committed(&c, "zombie", "z").await.get(&0).copied() >= Some(150), "a commit went back in time");
    }
    let (a_out, b_out) = (a.stop(), b.stop());
    let b_values: Vec<u64> = b_out.iter().map(|(_, _, v)| v.parse().unwrap()).collect();
    assert_eq!(b_values, (1..=50).collect::<Vec<u64>>(), "b read exactly what a had not");
    // a may have read on before it heard it was out (as with Kafka), but
    // nothing it did moved the group's offset back.
    eprintln!("a printed {} records before it heard it was removed", a_out.len() - 100);
    assert_eq!(committed(&c, "zombie", "z").await.get(&0), Some(&150));
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_outlives_its_coordinator() {
    use crate::harness::stream::index_of;
    use futures::StreamExt;
    use silt_client::{Client, GroupConfig, GroupConsumer, Received};

    let mut c = TestCluster::builder().agents(3).etcd().s3().start().await;
    c.client().await.create_topic("co", 6).await.unwrap();
    c.wait_even("co", "at start").await;
    let sender = Background::start(
        c.config(),
        "co",
        6,
        Plan { pin: Some(6), pause: (20, Duration::from_millis(10)), ..Default::default() },
    );
    // Two members in this process, each yielding records into a shared tally.
    let consumed: Arc<Mutex<Vec<(u32, i64, String)>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut members = Vec::new();
    for _ in 0..2 {
        let (config, consumed, mut stopped) = (c.config(), consumed.clone(), stopped.clone());
        members.push(tokio::spawn(async move {
            let client = Client::connect(config).await.unwrap();
            let config = GroupConfig {
                session_timeout: Duration::from_secs(6),
                heartbeat_interval: Duration::from_secs(1),
                auto_commit: Some(Duration::from_millis(200)),
                auto_offset_reset: silt_client::AutoOffsetReset::Earliest,
                ..Default::default()
            };
            let mut g = GroupConsumer::subscribe(client, "survivors", &["co"], config).await.unwrap();
            loop {
                let next = tokio::select! {
                    n = g.next() => n,
                    _ = stopped.changed() => break,
                };
                match next {
                    Some(Ok(Received::Record(r))) => consumed.lock().unwrap().push((
                        r.partition,
                        r.offset,
                        String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap(),
                    )),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("a member failed: {e}"),
                    None => break,
                }
            }
            g.close().await.unwrap();
        }));
    }
    let count = || consumed.lock().unwrap().len();
    until("the members to consume", 30, || count() > 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = committed(&c, "survivors", "co").await;
    let coordinator = c.client().await.find_coordinator("survivors").await.unwrap();
    let victim = c.addrs.iter().position(|a| *a == coordinator).expect("the coordinator is one of the agents");
    c.kill9(victim);
    eprintln!("killed the coordinator, agent {victim}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let produced = sender.finish().await;
    assert!(produced.failed.is_empty(), "{:?}", produced.failed.first());
    let log = c.log("co", 6).await;
    until("every record to be consumed after the coordinator died", 60, || {
        consumed.lock().unwrap().iter().map(|(p, o, _)| (*p, *o)).collect::<BTreeSet<_>>().len() >= log.len()
    })
    .await;
    stop.send_replace(true);
    for m in members {
        m.await.unwrap();
    }
    let after = committed(&c, "survivors", "co").await;
    for (p, o) in &before {
        assert!(after.get(p) >= Some(o), "partition {p}: committed {o} before, {:?} after", after.get(p));
    }
    // Every record consumed, each as the log holds it.
    let consumed = consumed.lock().unwrap().clone();
    for (p, o, v) in &consumed {
        assert_eq!(log.get(&(*p, *o)), Some(v), "{p}:{o} is not what the log holds");
    }
    let distinct: BTreeSet<(u32, i64)> = consumed.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(distinct.len(), log.len());
    let values: BTreeSet<u64> = log.values().map(|v| index_of(v)).collect();
    assert_eq!(values.len() as u64, produced.sent);
    eprintln!(
        "{} records, {} consumed twice around the coordinator's death",
        log.len(),
        consumed.len() - distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_input_is_a_clear_error_and_changes_nothing() {
    let c = TestCluster::builder().start().await;
    c.client().await.create_topic("t", 1).await.unwrap();
    let fails = |args: &[&str], says: &str| {
        let out = c.agent(0).cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    fails(&["consume", "nope", "--group", "g", "--timeout-ms", "500"], "does not exist");
    fails(&["consume", "t", "--group", "bad name!", "--timeout-ms", "500"], "invalid group name");
    fails(&["consume", "t", "--group", "g", "--partition", "0"], "cannot be used with");
    fails(&["group", "describe", "nobody"], "does not exist");
    fails(&["group", "delete", "nobody"], "does not exist");
    fails(&["group", "reset-offsets", "g", "--topic", "t"], "--to-earliest");
    fails(&["group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"], "cannot be used with");
    fails(&["topic", "create", "__silt_mine"], "silt's own");
    fails(&["topic", "delete", "__silt_groups"], "silt's own");
    let list = String::from_utf8(c.agent(0).ok(&["group", "list"], None)).unwrap();
    assert_eq!(list.lines().count(), 1, "no group was created: {list}");
    let topics = String::from_utf8(c.agent(0).ok(&["topic", "list"], None)).unwrap();
    assert_eq!(topics.trim(), "t", "the coordination topic is not listed");
}
