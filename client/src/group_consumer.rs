//! The group consumer: the members of a group divide the partitions of the
//! topics they subscribe to; each reads its own, from where the group
//! committed (or from `auto_offset_reset` where it has not).
//!
//! A membership task heartbeats to the group's coordinator (a long poll:
//! the coordinator answers at once when the member's assignment changes,
//! else after `heartbeat_interval`). When partitions are taken away, the
//! stream first yields [`Received::Revoked`] (and nothing more of them);
//! the member lets go (and, with auto-commit, commits what was delivered of
//! them) only when the stream is polled again, so an application can commit
//! before it loses them. No two
//! members ever consume one partition at once: the coordinator gives a
//! partition to its next member only after this one said it let go.
//!
//! Positions advance as records are yielded. Auto-commit (every
//! `auto_commit` interval, on revocation and on `close`) commits what the
//! application is done with: a record counts as done once the stream is
//! polled again after it, as with Kafka's auto-commit. `commit` commits
//! everything yielded so far.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use silt_wire::{ErrorCode, GroupHeartbeat, OffsetCommit, Request, Response, TopicOffset, TopicPartitions};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{unexpected, Client};
use crate::consumer::{ConsumedRecord, ConsumerConfig, Fetched, Fetcher, Skipped, Skips};
use crate::error::ClientError;
use crate::router::Router;

/// A partition of a topic.
pub type TopicPartition = (String, u32);

/// How long past its wait a heartbeat's answer may take before the
/// coordinator is taken for gone.
const HEARTBEAT_GRACE: Duration = Duration::from_secs(3);

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    Earliest,
    /// Only records written after the member got it (Kafka's default).
    #[default]
    Latest,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How long the coordinator waits for a silent member before its
    /// partitions move (Kafka's `session.timeout.ms`).
    pub session_timeout: Duration,
    /// How often the member heartbeats when nothing changes.
    pub heartbeat_interval: Duration,
    /// Commit delivered positions this often (None: only when asked).
    pub auto_commit: Option<Duration>,
    pub auto_offset_reset: AutoOffsetReset,
    /// Fetch settings.
    pub fetch: ConsumerConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit: Some(Duration::from_secs(5)),
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch: ConsumerConfig::default(),
        }
    }
}

/// What the group stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Record(ConsumedRecord),
    /// These partitions are now this member's; their records follow.
    Assigned(Vec<TopicPartition>),
    /// These partitions leave this member when the stream is next polled:
    /// commit what was processed of them now if auto-commit does not.
    Revoked(Vec<TopicPartition>),
}

enum Item {
    Records(TopicPartition, u64, Fetched),
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>, oneshot::Sender<()>),
    Failed(ClientError),
}

/// A partition this member reads: from which offset on, by which fetcher.
struct Reading {
    /// The next offset to yield.
    position: i64,
    /// The next offset after what the application is done with (it polled
    /// again after the record before): what auto-commit commits.
    processed: i64,
    /// Bumped when the fetcher is replaced (a seek): records of older
    /// fetchers still queued are dropped.
    generation: u64,
    /// Being revoked: nothing more of it is yielded (what is queued is
    /// dropped, and read again by its next member from the commit).
    closed: bool,
    stop: CancellationToken,
}

struct Shared {
    bootstrap: Client,
    group: String,
    topics: Vec<String>,
    config: GroupConfig,
    member_id: String,
    epoch: AtomicI64,
    reading: Mutex<HashMap<TopicPartition, Reading>>,
    /// What was last committed, per partition.
    committed: Mutex<HashMap<TopicPartition, i64>>,
    coordinator: tokio::sync::Mutex<Option<Client>>,
    routers: tokio::sync::Mutex<HashMap<String, Arc<Router>>>,
    tx: mpsc::Sender<Item>,
    fetchers: TaskTracker,
    /// Jumps over offsets retention removed, not yet taken.
    skips: Skips,
    stop: CancellationToken,
}

/// A member of a consumer group, as a stream of [`Received`].
pub struct GroupConsumer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Item>,
    /// Fetched records not yet yielded, with their fetcher's generation.
    ready: VecDeque<(u64, ConsumedRecord)>,
    /// Lets the membership task give revoked partitions up.
    pending_ack: Option<oneshot::Sender<()>>,
    /// The partition of the record yielded last: polling again means the
    /// application is done with it.
    last_yielded: Option<TopicPartition>,
    tasks: TaskTracker,
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("member-{:016x}", h.finish())
}

impl GroupConsumer {
    /// Joins `group` subscribed to `topics` (which must exist). The stream
    /// yields records once the coordinator assigns partitions.
    pub async fn subscribe(
        client: Client,
        group: &str,
        topics: &[&str],
        config: GroupConfig,
    ) -> Result<GroupConsumer, ClientError> {
        if topics.is_empty() {
            return Err(ClientError::Config("subscribe to at least one topic".into()));
        }
        if config.heartbeat_interval >= config.session_timeout {
            return Err(ClientError::Config("the heartbeat interval must be shorter than the session timeout".into()));
        }
        // A group name the agents refuse is an error now, not a member that never joins.
        match client.find_coordinator(group).await {
            Err(e) if !e.is_retriable() => return Err(e),
            _ => {}
        }
        let mut routers = HashMap::new();
        for t in topics {
            let d = client.describe_topic(t).await?;
            routers.insert(t.to_string(), Arc::new(Router::new(&client, t, &d)));
        }
        let (tx, rx) = mpsc::channel(config.fetch.prefetch.max(1) * 64);
        let shared = Arc::new(Shared {
            bootstrap: client,
            group: group.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            member_id: random_id(),
            epoch: AtomicI64::new(0),
            reading: Mutex::default(),
            committed: Mutex::default(),
            coordinator: tokio::sync::Mutex::new(None),
            routers: tokio::sync::Mutex::new(routers),
            tx,
            fetchers: TaskTracker::new(),
            skips: Skips::default(),
            stop: CancellationToken::new(),
            config,
        });
        let tasks = TaskTracker::new();
        tasks.spawn(membership(shared.clone()));
        if let Some(every) = shared.config.auto_commit {
            tasks.spawn(auto_commit(shared.clone(), every));
        }
        Ok(GroupConsumer { shared, rx, ready: VecDeque::new(), pending_ack: None, last_yielded: None, tasks })
    }

    /// This member's id in the group.
    /// The jumps over offsets the log no longer held (retention removed
    /// them) since the last call; where they went follows `auto_offset_reset`.
    pub fn skipped(&self) -> Vec<Skipped> {
        std::mem::take(&mut *self.shared.skips.lock().expect("skips lock"))
    }

    pub fn member_id(&self) -> &str {
        &self.shared.member_id
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self.shared.reading.lock().expect("reading lock").keys().cloned().collect();
        out.sort();
        out
    }

    /// Commits the positions of every partition this member reads (the
    /// offset after the last record the stream yielded), and waits until
    /// they are stored. Cancel safe: a commit dropped midway may or may not land.
    pub async fn commit(&self) -> Result<(), ClientError> {
        commit_positions(&self.shared, None, Upto::Yielded).await
    }

    /// Commits in the background; failures are logged (the next commit
    /// carries the positions again).
    pub fn commit_async(&self) {
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            if let Err(e) = commit_positions(&shared, None, Upto::Yielded).await {
                tracing::warn!(group = %shared.group, error = %e, "an asynchronous commit failed");
            }
        });
    }

    /// The group's committed offsets for the subscribed topics. Cancel safe.
    pub async fn committed(&self) -> Result<Vec<TopicOffset>, ClientError> {
        self.shared.bootstrap.committed_offsets(&self.shared.group, &self.shared.topics).await
    }

    /// Reads `topic`/`partition` from `offset` next (it must be this
    /// member's). Records already fetched from the old position are dropped.
    pub async fn seek(&self, topic: &str, partition: u32, offset: i64) -> Result<(), ClientError> {
        let tp = (topic.to_string(), partition);
        if !self.shared.reading.lock().expect("reading lock").contains_key(&tp) {
            return Err(ClientError::Config(format!("{topic}/{partition} is not assigned to this member")));
        }
        start_reading(&self.shared, &[(tp, offset)]).await
    }

    /// Commits (with auto-commit), leaves the group so its partitions move
    /// at once, and stops.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(ack) = self.pending_ack.take() {
            let _ = ack.send(());
        }
        let committed = match self.shared.config.auto_commit {
            Some(_) => commit_positions(&self.shared, None, Upto::Processed).await,
            None => Ok(()),
        };
        self.shared.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.shared.fetchers.close();
        self.shared.fetchers.wait().await;
        leave(&self.shared).await;
        committed
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl Stream for GroupConsumer {
    type Item = Result<Received, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Polled again: the application is done with the last record, and
        // after a revocation the member may let go now.
        if let Some(tp) = self.last_yielded.take() {
            if let Some(r) = self.shared.reading.lock().expect("reading lock").get_mut(&tp) {
                r.processed = r.position;
            }
        }
        if let Some(ack) = self.pending_ack.take() {
            let _ = ack.send(());
        }
        loop {
            if let Some((generation, r)) = self.ready.pop_front() {
                let tp = (r.topic.to_string(), r.partition);
                let mut reading = self.shared.reading.lock().expect("reading lock");
                match reading.get_mut(&tp) {
                    Some(at) if !at.closed && at.generation == generation && r.offset >= at.position => {
                        at.position = r.offset + 1;
                        drop(reading);
                        self.last_yielded = Some(tp);
                        return Poll::Ready(Some(Ok(Received::Record(r))));
                    }
                    // A partition no longer read here, or already yielded.
                    _ => continue,
                }
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Item::Records(tp, generation, fetched))) => {
                    let current = self.shared.reading.lock().expect("reading lock").get(&tp).map(|r| r.generation);
                    if current != Some(generation) {
                        continue;
                    }
                    match fetched {
                        Ok(records) => self.ready.extend(records.into_iter().map(|r| (generation, r))),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
                Poll::Ready(Some(Item::Assigned(ps))) => return Poll::Ready(Some(Ok(Received::Assigned(ps)))),
                Poll::Ready(Some(Item::Revoked(ps, ack))) => {
                    self.pending_ack = Some(ack);
                    return Poll::Ready(Some(Ok(Received::Revoked(ps))));
                }
                Poll::Ready(Some(Item::Failed(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The coordinator connection, found afresh when there is none.
async fn coordinator(shared: &Shared) -> Result<Client, ClientError> {
    let mut c = shared.coordinator.lock().await;
    if let Some(client) = c.as_ref().filter(|c| c.is_open()) {
        return Ok(client.clone());
    }
    let client = shared.bootstrap.coordinator(&shared.group).await?;
    *c = Some(client.clone());
    Ok(client)
}

async fn forget_coordinator(shared: &Shared) {
    *shared.coordinator.lock().await = None;
}

fn grouped(ps: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (t, p) in ps {
        match out.last_mut() {
            Some(x) if x.topic == *t => x.partitions.push(*p),
            _ => out.push(TopicPartitions { topic: t.clone(), partitions: vec![*p] }),
        }
    }
    out
}

/// Heartbeats until stopped; starts and stops reading partitions as the
/// coordinator assigns and revokes them.
async fn membership(shared: Arc<Shared>) {
    let mut owned: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut joined = false;
    let mut failures = 0u32;
    let wait = shared.config.heartbeat_interval;
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let hb = GroupHeartbeat {
            group: shared.group.clone(),
            member_id: shared.member_id.clone(),
            member_epoch: if joined { shared.epoch.load(Ordering::SeqCst) } else { 0 },
            session_timeout_ms: shared.config.session_timeout.as_millis() as u32,
            wait_ms: wait.as_millis() as u32,
            topics: (!joined).then(|| shared.topics.clone()),
            owned: Some(grouped(&owned)),
        };
        // The coordinator holds a heartbeat at most `wait`: one that takes
        // much longer went to a coordinator that died.
        let limit = wait + HEARTBEAT_GRACE;
        let answer = tokio::select! {
            r = async { coordinator(&shared).await?.call_within(&Request::GroupHeartbeat(hb), limit).await } => r,
            _ = shared.stop.cancelled() => return,
        };
        let assignment = match answer {
            Ok(Response::GroupAssignment(a)) => a,
            Ok(other) => {
                let _ = shared.tx.send(Item::Failed(unexpected(other))).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) if matches!(e.code(), Some(ErrorCode::UnknownMember | ErrorCode::FencedMemberEpoch)) => {
                // Removed (a long pause, a lost coordinator): what it held is
                // someone else's now; it cannot commit it. Start over.
                tracing::warn!(group = %shared.group, error = %e, "this member was removed from its group; joining again");
                let lost: Vec<TopicPartition> = owned.iter().cloned().collect();
                stop_reading(&shared, &lost);
                if !lost.is_empty() {
                    let (ack, _) = oneshot::channel();
                    let _ = shared.tx.send(Item::Revoked(lost, ack)).await;
                }
                owned.clear();
                joined = false;
                continue;
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(group = %shared.group, error = %e, failures, "heartbeat failed; finding the coordinator again");
                forget_coordinator(&shared).await;
                if !e.is_retriable() && failures > 10 {
                    let _ = shared.tx.send(Item::Failed(e)).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20)))) => {}
                    _ = shared.stop.cancelled() => return,
                }
                continue;
            }
        };
        failures = 0;
        joined = true;
        shared.epoch.store(assignment.member_epoch, Ordering::SeqCst);
        let assigned: BTreeSet<TopicPartition> =
            assignment.assigned.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p))).collect();
        let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
        let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
        if !revoked.is_empty() {
            // Let the application see it first, and commit if it wants to.
            let (ack, acked) = oneshot::channel();
            stop_fetching(&shared, &revoked);
            if shared.tx.send(Item::Revoked(revoked.clone(), ack)).await.is_ok() {
                tokio::select! {
                    _ = acked => {}
                    _ = tokio::time::sleep(shared.config.session_timeout / 2) => {}
                    _ = shared.stop.cancelled() => {}
                }
            }
            if shared.config.auto_commit.is_some() {
                if let Err(e) = commit_positions(&shared, Some(&revoked), Upto::Processed).await {
                    tracing::warn!(group = %shared.group, error = %e, "could not commit revoked partitions");
                }
            }
            stop_reading(&shared, &revoked);
            for p in &revoked {
                owned.remove(p);
            }
        }
        if !added.is_empty() {
            match start_offsets(&shared, &added).await {
                Ok(starts) => {
                    if let Err(e) = start_reading(&shared, &starts).await {
                        let _ = shared.tx.send(Item::Failed(e)).await;
                        continue;
                    }
                    owned.extend(added.iter().cloned());
                    let _ = shared.tx.send(Item::Assigned(added)).await;
                }
                Err(e) => {
                    tracing::warn!(group = %shared.group, error = %e, "could not read where the group is; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Where each newly assigned partition starts: the group's committed
/// offset, else as `auto_offset_reset` says.
async fn start_offsets(shared: &Shared, added: &[TopicPartition]) -> Result<Vec<(TopicPartition, i64)>, ClientError> {
    let topics: Vec<String> = added.iter().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let committed: HashMap<TopicPartition, i64> = shared
        .bootstrap
        .committed_offsets(&shared.group, &topics)
        .await?
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect();
    let mut out = Vec::with_capacity(added.len());
    let mut described = HashMap::new();
    for tp in added {
        let start = match committed.get(tp) {
            Some(o) => *o,
            None => {
                if !described.contains_key(&tp.0) {
                    described.insert(tp.0.clone(), shared.bootstrap.describe_topic(&tp.0).await?);
                }
                let info =
                    described[&tp.0].partitions.get(tp.1 as usize).ok_or_else(|| ClientError::UnknownPartition {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        count: described[&tp.0].partitions.len() as u32,
                    })?;
                match shared.config.auto_offset_reset {
                    AutoOffsetReset::Earliest => info.log_start,
                    AutoOffsetReset::Latest => info.high_watermark,
                }
            }
        };
        // A reset start is committed by the next commit, so the group keeps it.
        if let Some(o) = committed.get(tp) {
            shared.committed.lock().expect("committed lock").insert(tp.clone(), *o);
        }
        out.push((tp.clone(), start));
    }
    Ok(out)
}

/// Starts (or restarts) reading partitions from offsets.
async fn start_reading(shared: &Arc<Shared>, starts: &[(TopicPartition, i64)]) -> Result<(), ClientError> {
    for (tp, offset) in starts {
        let router = {
            let mut routers = shared.routers.lock().await;
            match routers.get(&tp.0) {
                Some(r) => r.clone(),
                None => {
                    let d = shared.bootstrap.describe_topic(&tp.0).await?;
                    let r = Arc::new(Router::new(&shared.bootstrap, &tp.0, &d));
                    routers.insert(tp.0.clone(), r.clone());
                    r
                }
            }
        };
        let stop = shared.stop.child_token();
        let generation = {
            let mut reading = shared.reading.lock().expect("reading lock");
            let generation = reading.get(tp).map_or(0, |r| r.generation + 1);
            let fresh =
                Reading { position: *offset, processed: *offset, generation, closed: false, stop: stop.clone() };
            if let Some(old) = reading.insert(tp.clone(), fresh) {
                old.stop.cancel();
            }
            generation
        };
        let key = tp.clone();
        let fetcher = Fetcher {
            router,
            topic: tp.0.as_str().into(),
            partition: tp.1,
            offset: *offset,
            config: ConsumerConfig {
                // A position retention removed continues as a new member's would.
                out_of_range: shared.config.fetch.out_of_range.map(|_| shared.config.auto_offset_reset),
                ..shared.config.fetch.clone()
            },
            tx: shared.tx.clone(),
            wrap: Arc::new(move |f| Item::Records(key.clone(), generation, f)),
            skips: shared.skips.clone(),
        };
        shared.fetchers.spawn(async move {
            tokio::select! {
                _ = fetcher.run() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    Ok(())
}

/// Stops fetching and yielding partitions (their positions stay, for the commit).
fn stop_fetching(shared: &Shared, ps: &[TopicPartition]) {
    let mut reading = shared.reading.lock().expect("reading lock");
    for p in ps {
        if let Some(r) = reading.get_mut(p) {
            r.closed = true;
            r.stop.cancel();
        }
    }
}

/// Forgets partitions: fetchers stop, positions go.
fn stop_reading(shared: &Shared, ps: &[TopicPartition]) {
    let mut reading = shared.reading.lock().expect("reading lock");
    for p in ps {
        if let Some(r) = reading.remove(p) {
            r.stop.cancel();
        }
        shared.committed.lock().expect("committed lock").remove(p);
    }
}

/// Which positions a commit takes.
#[derive(Debug, Clone, Copy)]
enum Upto {
    /// After every record yielded.
    Yielded,
    /// After the records the application is done with.
    Processed,
}

/// Commits the positions of `only` (every partition read when None) that
/// moved since they were last committed.
async fn commit_positions(shared: &Shared, only: Option<&[TopicPartition]>, upto: Upto) -> Result<(), ClientError> {
    let moved: Vec<TopicOffset> = {
        let reading = shared.reading.lock().expect("reading lock");
        let committed = shared.committed.lock().expect("committed lock");
        reading
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .map(|(tp, r)| (tp, if matches!(upto, Upto::Yielded) { r.position } else { r.processed }))
            .filter(|(tp, at)| committed.get(*tp) != Some(at))
            .map(|(tp, at)| TopicOffset { topic: tp.0.clone(), partition: tp.1, offset: at })
            .collect()
    };
    if moved.is_empty() {
        return Ok(());
    }
    let request = Request::OffsetCommit(OffsetCommit {
        group: shared.group.clone(),
        member_id: shared.member_id.clone(),
        member_epoch: shared.epoch.load(Ordering::SeqCst),
        offsets: moved.clone(),
    });
    let mut attempt = 0u64;
    loop {
        let result = async { coordinator(shared).await?.call(&request, Duration::ZERO).await }.await;
        match result {
            Ok(Response::Done) => break,
            Ok(other) => return Err(unexpected(other)),
            // The coordinator moved or went away: find it again.
            Err(e) if e.is_retriable() && attempt < 10 => {
                attempt += 1;
                forget_coordinator(shared).await;
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let mut committed = shared.committed.lock().expect("committed lock");
    for o in moved {
        committed.insert((o.topic, o.partition), o.offset);
    }
    Ok(())
}

async fn auto_commit(shared: Arc<Shared>, every: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.stop.cancelled() => return,
        }
        if let Err(e) = commit_positions(&shared, None, Upto::Processed).await {
            tracing::debug!(group = %shared.group, error = %e, "auto-commit failed; the next one carries the positions again");
        }
    }
}

/// Tells the coordinator this member leaves, so its partitions move at once.
async fn leave(shared: &Shared) {
    let hb = GroupHeartbeat {
        group: shared.group.clone(),
        member_id: shared.member_id.clone(),
        member_epoch: -1,
        session_timeout_ms: 0,
        wait_ms: 0,
        topics: None,
        owned: None,
    };
    let left = async { coordinator(shared).await?.call(&Request::GroupHeartbeat(hb), Duration::ZERO).await };
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), left).await {
        tracing::debug!(group = %shared.group, error = %e, "could not leave the group; its session will end by itself");
    }
}
