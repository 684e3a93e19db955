//! `silt bench groups`: consumer-group coordination in figures. Members are
//! simulated with the group protocol itself (heartbeats and commits, no
//! record fetches), so what is measured is the coordinators' cost:
//! - joining: how long until every group is stable;
//! - at rest: metadata reads and writes per second across the agents, and
//!   the agents' CPU, while every member heartbeats;
//! - commits: offset commits per second (each a member committing its
//!   partitions), and the metadata transactions they took;
//! - rebalances in one group: a join seen by every member, a graceful
//!   leave, and a crash (a member falling silent).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use silt_client::{Client, GroupAssignment, GroupHeartbeat, OffsetCommit, TopicOffset, TopicPartitions};

#[derive(clap::Args, Clone)]
pub struct GroupsBench {
    /// Topic the groups subscribe to (created with --partitions if missing).
    #[arg(long, default_value = "bench-groups")]
    topic: String,
    #[arg(long, default_value_t = 10)]
    partitions: u32,
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Members per group.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// How long to measure the groups at rest.
    #[arg(long, default_value = "20s", value_parser = silt_agent::config::parse_duration)]
    idle: Duration,
    /// How long to measure commits.
    #[arg(long, default_value = "10s", value_parser = silt_agent::config::parse_duration)]
    commits: Duration,
    #[arg(long, default_value = "3s", value_parser = silt_agent::config::parse_duration)]
    heartbeat_interval: Duration,
    /// The session timeout of the members (the crash is noticed after it).
    #[arg(long, default_value = "10s", value_parser = silt_agent::config::parse_duration)]
    session_timeout: Duration,
    /// An agent's process id, to report its CPU time (repeat for each agent).
    #[arg(long)]
    agent_pid: Vec<u32>,
}

/// One simulated member: it takes what it is assigned at once.
struct Member {
    group: String,
    id: String,
    epoch: i64,
    owned: Vec<TopicPartitions>,
    coordinator: Option<Client>,
}

/// A member's last answer: its epoch, the partitions it holds, when it came.
type Held = (i64, BTreeSet<(String, u32)>, Instant);

/// What the members report, shared.
#[derive(Default)]
struct Board {
    /// (group, member) -> its last answer.
    held: Mutex<HashMap<(String, String), Held>>,
    heartbeats: AtomicU64,
    commits: AtomicU64,
}

impl Member {
    async fn beat(&mut self, bootstrap: &Client, b: &GroupsBench, wait: bool) -> anyhow::Result<GroupAssignment> {
        let client = match &self.coordinator {
            Some(c) if c.is_open() => c.clone(),
            _ => {
                let c = bootstrap.connect_coordinator(&self.group).await?;
                self.coordinator = Some(c.clone());
                c
            }
        };
        let hb = GroupHeartbeat {
            group: self.group.clone(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            session_timeout_ms: b.session_timeout.as_millis() as u32,
            wait_ms: if wait { b.heartbeat_interval.as_millis() as u32 } else { 0 },
            topics: (self.epoch == 0).then(|| vec![b.topic.clone()]),
            owned: Some(self.owned.clone()),
        };
        let a = match client.group_heartbeat(hb).await {
            Ok(a) => a,
            Err(e) => {
                self.coordinator = None;
                return Err(e.into());
            }
        };
        self.epoch = a.member_epoch;
        self.owned = a.assigned.clone();
        Ok(a)
    }

    async fn leave(&mut self, bootstrap: &Client, b: &GroupsBench) {
        self.epoch = -1;
        self.owned.clear();
        let _ = self.beat(bootstrap, b, false).await;
    }

    fn partitions(&self) -> BTreeSet<(String, u32)> {
        self.owned.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p))).collect()
    }
}

/// Runs a member until `stop` (or `silent`, which stops it without a
/// leave, as a crash would; the time it fell silent goes to `silenced`).
#[allow(clippy::too_many_arguments)]
async fn run_member(
    mut m: Member,
    bootstrap: Client,
    b: Arc<GroupsBench>,
    board: Arc<Board>,
    stop: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    silenced: Arc<Mutex<Option<Instant>>>,
    committing: Arc<AtomicBool>,
) {
    let mut offset = 0i64;
    let mut last_beat = Instant::now();
    // When the last heartbeat went out: a member's session counts from there.
    let mut last_sent = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if silent.load(Ordering::SeqCst) {
            *silenced.lock().expect("silenced lock") = Some(last_sent);
            return;
        }
        let commit = committing.load(Ordering::SeqCst);
        if commit && !m.owned.is_empty() && last_beat.elapsed() < b.heartbeat_interval {
            // Commit the partitions it holds, as fast as they are answered;
            // heartbeat (without waiting) once an interval.
            offset += 1;
            let offsets = m
                .owned
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| TopicOffset { topic: t.topic.clone(), partition: *p, offset })
                })
                .collect();
            let c = OffsetCommit { group: m.group.clone(), member_id: m.id.clone(), member_epoch: m.epoch, offsets };
            if let Some(client) = &m.coordinator {
                if client.commit_offsets(c).await.is_ok() {
                    board.commits.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        last_sent = Instant::now();
        match m.beat(&bootstrap, &b, !commit).await {
            Ok(_) => {
                last_beat = Instant::now();
                board.heartbeats.fetch_add(1, Ordering::Relaxed);
                let held = m.partitions();
                board
                    .held
                    .lock()
                    .expect("board lock")
                    .insert((m.group.clone(), m.id.clone()), (m.epoch, held, last_beat));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    m.leave(&bootstrap, &b).await;
    board.held.lock().expect("board lock").remove(&(m.group.clone(), m.id.clone()));
}

/// Whether every group's members hold disjoint sets covering every partition.
fn all_stable(board: &Board, groups: &[String], members: usize, partitions: u32) -> bool {
    let held = board.held.lock().expect("board lock");
    groups.iter().all(|g| {
        let mine: Vec<&BTreeSet<(String, u32)>> =
            held.iter().filter(|((gr, _), _)| gr == g).map(|(_, (_, h, _))| h).collect();
        let total: usize = mine.iter().map(|h| h.len()).sum();
        let union: BTreeSet<&(String, u32)> = mine.iter().flat_map(|h| h.iter()).collect();
        mine.len() == members && total == partitions as usize && union.len() == total
    })
}

/// Metadata reads and writes summed over every agent.
async fn metadata_ops(client: &Client) -> anyhow::Result<(u64, u64)> {
    let mut reads = 0;
    let mut writes = 0;
    for a in client.list_agents().await?.into_iter().filter(|a| a.partitions > 0) {
        let c =
            Client::connect(silt_client::ClientConfig { agent: a.address.clone(), ..client.config().clone() }).await?;
        for (k, v) in c.stats().await? {
            match k.as_str() {
                "metadata_reads" => reads += v,
                "metadata_writes" => writes += v,
                _ => {}
            }
        }
        c.close();
    }
    Ok((reads, writes))
}

fn cpu_secs(pids: &[u32]) -> Vec<f64> {
    pids.iter().map(|p| super::bench::cpu_ns(*p).map_or(f64::NAN, |n| n as f64 / 1e9)).collect()
}

pub async fn run(client: Client, b: &GroupsBench) -> anyhow::Result<()> {
    anyhow::ensure!(b.groups >= 1 && b.members >= 2, "the bench needs a group of at least two members");
    if client.describe_topic(&b.topic).await.is_err() {
        client.create_topic(&b.topic, b.partitions).await.context("creating the bench topic")?;
    }
    let b = Arc::new(b.clone());
    let board = Arc::new(Board::default());
    let stop = Arc::new(AtomicBool::new(false));
    let committing = Arc::new(AtomicBool::new(false));
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let groups: Vec<String> = (0..b.groups).map(|g| format!("bench-{run_id}-{g}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let mut silents: HashMap<(usize, usize), Arc<AtomicBool>> = HashMap::new();
    let silenced: Arc<Mutex<Option<Instant>>> = Arc::default();
    println!(
        "group bench: {} groups x {} members on {} ({} partitions), heartbeat {:?}, session {:?}",
        b.groups, b.members, b.topic, b.partitions, b.heartbeat_interval, b.session_timeout
    );
    let started = Instant::now();
    for (g, group) in groups.iter().enumerate() {
        for i in 0..b.members {
            let silent = Arc::new(AtomicBool::new(false));
            silents.insert((g, i), silent.clone());
            let m =
                Member { group: group.clone(), id: format!("m{i}"), epoch: 0, owned: Vec::new(), coordinator: None };
            let (c, b, board, stop, silenced) =
                (client.clone(), b.clone(), board.clone(), stop.clone(), silenced.clone());
            tasks.spawn(run_member(m, c, b, board, stop, silent, silenced, committing.clone()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_stable(&board, &groups, b.members, b.partitions) {
        anyhow::ensure!(Instant::now() < deadline, "the groups did not settle in two minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "  join      every group stable {:.2} s after {} members started",
        started.elapsed().as_secs_f64(),
        b.groups * b.members
    );

    // At rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (r0, w0) = metadata_ops(&client).await?;
    let (h0, c0) = (board.heartbeats.load(Ordering::Relaxed), cpu_secs(&b.agent_pid));
    tokio::time::sleep(b.idle).await;
    let (r1, w1) = metadata_ops(&client).await?;
    let (h1, c1) = (board.heartbeats.load(Ordering::Relaxed), cpu_secs(&b.agent_pid));
    let secs = b.idle.as_secs_f64();
    println!(
        "  at rest   {:.0} heartbeats/s; metadata {:.1} reads/s, {:.1} writes/s over all agents",
        (h1 - h0) as f64 / secs,
        (r1 - r0) as f64 / secs,
        (w1 - w0) as f64 / secs
    );
    for (i, (a, z)) in c0.iter().zip(&c1).enumerate() {
        println!("  at rest   agent pid {}: CPU {:.1}% of a core", b.agent_pid[i], (z - a) / secs * 100.0);
    }

    // Commits.
    let (_, w0) = metadata_ops(&client).await?;
    let k0 = board.commits.load(Ordering::Relaxed);
    committing.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(b.commits).await;
    committing.store(false, Ordering::SeqCst);
    let took = t0.elapsed().as_secs_f64();
    let (_, w1) = metadata_ops(&client).await?;
    let commits = board.commits.load(Ordering::Relaxed) - k0;
    let agents = client.list_agents().await?.into_iter().filter(|a| a.partitions > 0).count().max(1);
    println!(
        "  commits   {:.0} offset commits/s ({:.0} per agent over {agents}), {:.1} commits per metadata write",
        commits as f64 / took,
        commits as f64 / took / agents as f64,
        commits as f64 / (w1 - w0).max(1) as f64
    );

    // Rebalances in group 0.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let g0 = groups[0].clone();
    let epochs_of = |board: &Board| -> HashMap<String, (i64, Instant)> {
        board
            .held
            .lock()
            .expect("board lock")
            .iter()
            .filter(|((g, _), _)| *g == g0)
            .map(|((_, m), (e, _, t))| (m.clone(), (*e, *t)))
            .collect()
    };
    let before = epochs_of(&board);
    let joined_at = Instant::now();
    let silent = Arc::new(AtomicBool::new(false));
    let extra = Member { group: g0.clone(), id: "joiner".into(), epoch: 0, owned: Vec::new(), coordinator: None };
    let (c, bb, bd, st) = (client.clone(), b.clone(), board.clone(), stop.clone());
    tasks.spawn(run_member(extra, c, bb, bd, st, silent.clone(), Arc::default(), committing.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let now = epochs_of(&board);
        let moved: Vec<Instant> =
            before.iter().filter_map(|(m, (e, _))| now.get(m).filter(|(e2, _)| e2 != e).map(|(_, t)| *t)).collect();
        if moved.len() == before.len() {
            break moved.into_iter().max().expect("members") - joined_at;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the join was not seen by every member: before {before:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while !all_stable(&board, &groups[..1], b.members + 1, b.partitions) {
        anyhow::ensure!(Instant::now() < deadline, "the group did not settle after the join");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  rebalance a join seen by every member after {:.2} s, settled after {:.2} s (heartbeat interval {:?})",
        seen.as_secs_f64(),
        joined_at.elapsed().as_secs_f64(),
        b.heartbeat_interval
    );
    // A graceful leave: the joiner leaves.
    let left_at = Instant::now();
    silent.store(true, Ordering::SeqCst);
    {
        let mut m = Member { group: g0.clone(), id: "joiner".into(), epoch: 0, owned: Vec::new(), coordinator: None };
        m.leave(&client, &b).await;
        board.held.lock().expect("board lock").remove(&(g0.clone(), "joiner".into()));
    }
    while !all_stable(&board, &groups[..1], b.members, b.partitions) {
        anyhow::ensure!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the group did not settle after the leave"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  rebalance a graceful leave: its partitions held by others after {:.2} s",
        left_at.elapsed().as_secs_f64()
    );
    // A crash: member m0 falls silent after its next heartbeat.
    silents[&(0, 0)].store(true, Ordering::SeqCst);
    let deadline = Instant::now() + b.session_timeout + Duration::from_secs(30);
    let crashed_at = loop {
        if let Some(t) = *silenced.lock().expect("silenced lock") {
            break t;
        }
        anyhow::ensure!(Instant::now() < deadline, "m0 never fell silent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    board.held.lock().expect("board lock").remove(&(g0.clone(), "m0".into()));
    while !all_stable(&board, &groups[..1], b.members - 1, b.partitions) {
        anyhow::ensure!(Instant::now() < deadline, "the crashed member's partitions never moved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  rebalance a crash: its partitions held by others {:.2} s after its last heartbeat (session timeout {:?})",
        crashed_at.elapsed().as_secs_f64(),
        b.session_timeout
    );
    stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
