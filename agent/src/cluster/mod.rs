//! Partition ownership over time: the agent keeps its session (one
//! registration, renewed every quarter TTL, which keeps every lease it
//! holds live), takes the partitions `core::ownership` assigns to it, and
//! hands over the ones assigned to others.
//!
//! - [`table`]: every partition this agent knows, led here or followed.
//! - `session` (here): the renewal task, driving `core::session`.
//! - the rounds (here): every half second, one read of the registrations
//!   and the change markers. Only when those moved (a topic, a lease or an
//!   agent changed) does a round read the topics and leases and plan: an
//!   idle cluster costs a handful of reads a second, whatever its size.
//!
//! Leaders are [`Partition`]s with an actor; followers name the owner for
//! NOT_OWNER answers, and reads go through the index like anyone's.

pub mod table;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use silt_metadata::catalog::{Lease, PartitionId, Registration, Topic};
use silt_metadata::{Catalog, CatalogError};
use silt_wire::Batch;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::core::producers::{self, Producers};
use crate::core::session::{Action, Session};
use crate::core::{handover, ownership, replay};
use crate::error::ServiceError;
use crate::log::partition::{Partition, Report, Sink, Start};
use crate::log::wal::{Hold, Replay};
use crate::metrics::Metrics;
pub use table::{Table, TopicState};

/// How long a handover waits for in-flight batches to commit.
const HANDOVER_DRAIN_MS: i64 = 10_000;
/// How often an agent looks for changes: released partitions are taken
/// within about this long. A round with nothing changed reads two key ranges.
const ROUND_EVERY: Duration = Duration::from_millis(500);
/// Registrations that lapsed this long ago are removed (with their change
/// markers), so agents that are gone for good stop being listed and read.
const FORGET_AGENTS_AFTER_MS: i64 = 60 * 60 * 1000;
/// How often the session checks whether it lapsed.
const SESSION_TICK: Duration = Duration::from_millis(100);

/// A session renewal in flight.
type Renewal<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CatalogError>> + Send + 'a>>;

/// Who this agent is and how it reaches the metadata store.
pub struct Identity {
    pub agent_id: String,
    /// Where clients reach it.
    pub address: String,
    /// Where Kafka clients reach it; empty without a Kafka listener.
    pub kafka_address: String,
    pub lease_ttl: Duration,
}

pub struct Cluster {
    catalog: Catalog,
    clock: SharedClock,
    id: Identity,
    started_ms: i64,
    pub table: Table,
    sink: Sink,
    /// WAL entries found at start, until their partitions are led again.
    replay: Mutex<Replay>,
    /// The agent-wide in-flight byte limit (replayed batches take their share).
    inflight: Arc<Semaphore>,
    session: Mutex<Session>,
    /// The registrations as of the last round: whose leases are live.
    agents: RwLock<Arc<Vec<Registration>>>,
    /// One planning round at a time, and what it last saw (change-marker
    /// digest and live agents) when it last planned.
    rounds: tokio::sync::Mutex<Option<(u64, Vec<String>)>>,
    /// Plan at the next round whatever changed.
    force: AtomicBool,
    /// The session lapsed and was renewed: leaders still holding their
    /// lease resume at the next plan.
    recheck: AtomicBool,
    /// Set when the agent gives its partitions up to stop: no more rounds.
    leaving: AtomicBool,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Cluster {
    /// Registers, takes this agent's share, and starts the renewal and
    /// planning tasks on `tasks`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        catalog: Catalog,
        clock: SharedClock,
        id: Identity,
        sink: Sink,
        replay: Replay,
        inflight: Arc<Semaphore>,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Cluster>, CatalogError> {
        let now = clock.now_ms();
        let cluster = Arc::new(Cluster {
            session: Mutex::new(Session::new(id.lease_ttl.as_millis() as i64)),
            catalog,
            clock,
            id,
            started_ms: now,
            table: Table::default(),
            sink,
            replay: Mutex::new(replay),
            inflight,
            agents: RwLock::default(),
            rounds: tokio::sync::Mutex::default(),
            force: AtomicBool::new(false),
            recheck: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            metrics,
            tasks,
            stop,
        });
        // Registered and holding this agent's share before serving, so a
        // lone agent owns everything from its first request.
        cluster.renew().await?;
        cluster.round().await?;
        cluster.release_orphaned_replay().await?;
        let c = cluster.clone();
        cluster.tasks.spawn(c.renewals().instrument(tracing::info_span!("session")));
        let c = cluster.clone();
        cluster.tasks.spawn(c.rounds().instrument(tracing::info_span!("ownership")));
        Ok(cluster)
    }

    pub fn agent_id(&self) -> &str {
        &self.id.agent_id
    }

    pub fn address(&self) -> &str {
        &self.id.address
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The registrations as of the last round.
    pub fn agents(&self) -> Arc<Vec<Registration>> {
        self.agents.read().expect("agents lock").clone()
    }

    /// The owner's address while its lease is live, else "" (no owner).
    pub fn live_address(&self, lease: &Lease) -> String {
        lease.holder(&self.agents(), self.clock.now_ms()).map(|r| r.address.clone()).unwrap_or_default()
    }

    /// Whether this agent's session (and so every lease it holds) was
    /// renewed within its TTL.
    pub fn session_live(&self) -> bool {
        self.session.lock().expect("session lock").valid(self.clock.now_ms())
    }

    /// Partitions led here.
    pub fn led(&self) -> usize {
        self.table.actors().len()
    }

    /// Renews the session every quarter TTL, and checks ten times a second
    /// whether it lapsed, even while a renewal hangs on an unreachable store.
    async fn renewals(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SESSION_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewal: Option<Renewal<'_>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = async { renewal.as_mut().expect("polled only when some").await }, if renewal.is_some() => {
                    renewal = None;
                    if let Err(e) = r {
                        tracing::warn!(error = %crate::error::describe(&e), "could not renew this agent's session; retrying");
                    }
                }
                _ = self.stop.cancelled() => return,
            }
            if self.leaving.load(Ordering::SeqCst) {
                return;
            }
            let now = self.clock.now_ms();
            let (action, due) = {
                let mut s = self.session.lock().expect("session lock");
                (s.tick(now), s.due(now))
            };
            self.act(action);
            if due && renewal.is_none() {
                renewal = Some(Box::pin(self.renew()));
            }
        }
    }

    /// One renewal: a single write, whatever this agent holds.
    async fn renew(&self) -> Result<(), CatalogError> {
        let sent = self.clock.now_ms();
        let ttl = {
            let mut s = self.session.lock().expect("session lock");
            s.renewing(sent);
            s.ttl_ms()
        };
        let result = self
            .catalog
            .heartbeat(&self.id.agent_id, (&self.id.address, &self.id.kafka_address), self.started_ms, sent, ttl)
            .await;
        let now = self.clock.now_ms();
        let action = {
            let mut s = self.session.lock().expect("session lock");
            match &result {
                Ok(_) => {
                    self.metrics.lease_renewals.inc();
                    s.renewed(sent, now)
                }
                Err(_) => {
                    self.metrics.lease_renewal_failures.inc();
                    s.tick(now)
                }
            }
        };
        self.act(action);
        result.map(|_| ())
    }

    /// Carries out what the session decided.
    fn act(&self, action: Option<Action>) {
        match action {
            Some(Action::Fence) => {
                tracing::warn!(
                    "this agent's session may have lapsed; its partitions take no writes until it is renewed"
                );
                for (_, part) in self.table.actors() {
                    part.tell(Report::Fence);
                }
            }
            Some(Action::Recheck) => {
                tracing::info!("session renewed; checking which leases are still this agent's");
                self.recheck.store(true, Ordering::SeqCst);
                self.force.store(true, Ordering::SeqCst);
            }
            None => {}
        }
    }

    async fn rounds(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ROUND_EVERY) => {}
                _ = self.stop.cancelled() => return,
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %crate::error::describe(&e), "ownership round failed; retrying at the next");
            }
        }
    }

    /// Plans at the next round whatever changed (a topic was created here).
    pub async fn round_now(&self) -> Result<(), CatalogError> {
        self.force.store(true, Ordering::SeqCst);
        self.round().await
    }

    /// One round: look at the registrations and change markers; when they
    /// moved, read topics and leases and take and give partitions as planned.
    pub async fn round(&self) -> Result<(), CatalogError> {
        let mut seen = self.rounds.lock().await;
        if self.stop.is_cancelled() || self.leaving.load(Ordering::SeqCst) {
            return Ok(());
        }
        let view = self.catalog.cluster().await?;
        let now = self.clock.now_ms();
        let mut live: Vec<String> = view.agents.iter().filter(|a| a.is_live(now)).map(|a| a.id.clone()).collect();
        live.sort();
        for gone in view.agents.iter().filter(|a| a.expires_ms.saturating_add(FORGET_AGENTS_AFTER_MS) < now) {
            tracing::info!(agent = %gone.id, "forgetting an agent gone for over an hour");
            self.catalog.deregister(&gone.id).await?;
        }
        *self.agents.write().expect("agents lock") = Arc::new(view.agents);
        // A partition whose flush was fenced or given up stops here now.
        let lost = self.sink.lost.take() && self.demote_lost();
        let current = (view.changes, live);
        let changed = self.force.load(Ordering::SeqCst) || lost || seen.as_ref() != Some(&current);
        // While the session may have lapsed, take nothing: others may be taking over.
        if !changed || self.session.lock().expect("session lock").is_fenced() {
            return Ok(());
        }
        self.force.store(false, Ordering::SeqCst);
        let resume = self.recheck.swap(false, Ordering::SeqCst);
        if let Err(e) = self.plan(&current.1, resume).await {
            self.force.store(true, Ordering::SeqCst);
            self.recheck.fetch_or(resume, Ordering::SeqCst);
            return Err(e);
        }
        *seen = Some(current);
        Ok(())
    }

    /// Demotes leaders whose actor reports its lease lost; whether any was.
    fn demote_lost(&self) -> bool {
        let mut any = false;
        for (t, part) in self.table.actors() {
            if part.status().lost {
                tracing::warn!(topic = %part.topic, partition = part.id.1, epoch = part.epoch, "lost the lease; now following");
                self.metrics.leases_lost.inc();
                self.demote(&t, &part);
                any = true;
            }
        }
        any
    }

    /// Reads topics and leases, follows new topics, demotes leaders whose
    /// lease moved (resuming those still theirs after a lapse), and takes
    /// and gives partitions as `core::ownership` says.
    async fn plan(&self, live: &[String], resume: bool) -> Result<(), CatalogError> {
        let topics = self.catalog.list_topics().await?;
        self.sync_topics(&topics).await?;
        let leases: HashMap<PartitionId, Lease> = self.catalog.leases().await?.into_iter().collect();
        let agents = self.agents();
        let now = self.clock.now_ms();
        let holders: HashMap<PartitionId, String> =
            leases.iter().filter_map(|(id, l)| l.holder(&agents, now).map(|r| (*id, r.id.clone()))).collect();
        let mut running = HashSet::new();
        let mut all = Vec::new();
        for t in self.table.topics() {
            for part in t.partitions() {
                all.push(part.id);
                let lease = leases.get(&part.id);
                if !part.has_actor() {
                    part.set_owner(lease.map(|l| self.live_address(l)).unwrap_or_default());
                    continue;
                }
                let ours = lease.is_some_and(|l| l.owner == self.id.agent_id && l.epoch == part.epoch && !l.released);
                if !ours {
                    tracing::warn!(topic = %part.topic, partition = part.id.1, epoch = part.epoch, "lost the lease; now following");
                    self.metrics.leases_lost.inc();
                    self.demote(&t, &part);
                    continue;
                }
                if resume {
                    part.tell(Report::Resume);
                }
                running.insert(part.id);
            }
        }
        let plan = ownership::plan(&self.id.agent_id, live, &all, &holders, &running);
        if !plan.acquire.is_empty() || !plan.release.is_empty() {
            tracing::debug!(acquire = plan.acquire.len(), release = plan.release.len(), "ownership plan");
        }
        self.acquire(&plan.acquire).await?;
        self.hand_over(&plan.release).await?;
        Ok(())
    }

    /// Follows topics created elsewhere; drops deleted ones.
    async fn sync_topics(&self, topics: &[Topic]) -> Result<(), CatalogError> {
        let names: HashSet<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        for t in self.table.topics() {
            if !names.contains(t.topic.name.as_str()) {
                self.table.remove(&t.topic.name);
            }
        }
        for topic in topics {
            match self.adopt(topic.clone()).await {
                Ok(_) | Err(CatalogError::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Follows every partition of a topic this agent did not know yet.
    pub async fn adopt(&self, topic: Topic) -> Result<Arc<TopicState>, CatalogError> {
        if let Some(t) = self.table.get(&topic.name).filter(|t| t.topic.id == topic.id) {
            if t.set_overrides(&topic.configs) {
                tracing::info!(topic = %topic.name, configs = ?topic.configs, "topic configs changed");
            }
            return Ok(t);
        }
        let parts = self.catalog.partitions(&topic).await?;
        let name: Arc<str> = topic.name.as_str().into();
        let followers = parts
            .into_iter()
            .enumerate()
            .map(|(p, (state, lease))| {
                let owner = lease.map(|l| self.live_address(&l)).unwrap_or_default();
                Partition::follow(name.clone(), (topic.id, p as u32), state.high_watermark, state.log_start, owner)
            })
            .collect();
        let state = Arc::new(TopicState::new(topic, followers, self.stop.child_token()));
        self.table.insert(state.clone());
        Ok(state)
    }

    /// Takes the leases of `ids` (those still free) and starts their actors,
    /// replaying what the WAL holds for them.
    async fn acquire(&self, ids: &[PartitionId]) -> Result<(), CatalogError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let got = self.catalog.acquire_leases(&self.id.agent_id, &self.id.address, ids, now).await?;
        // Idempotent producers' states, one range scan per run of partitions.
        let mut producers: HashMap<PartitionId, Vec<(i64, silt_metadata::catalog::ProducerState)>> = HashMap::new();
        let mut taken: Vec<PartitionId> = got.taken.iter().map(|(id, _, _)| *id).collect();
        taken.sort_unstable();
        for run in taken.chunk_by(|a, b| a.0 == b.0 && a.1 + 1 == b.1) {
            let (topic_id, first, last) = (run[0].0, run[0].1, run[run.len() - 1].1);
            for (p, states) in self.catalog.producers_of(topic_id, first, last).await? {
                producers.insert((topic_id, p), states);
            }
        }
        let topics: HashMap<u64, Arc<TopicState>> = self.table.topics().into_iter().map(|t| (t.topic.id, t)).collect();
        for (id, lease, state) in got.taken {
            let Some(t) = topics.get(&id.0) else { continue };
            let known = self.producers_to_keep(id, producers.remove(&id).unwrap_or_default(), now).await;
            let entries = self.replay.lock().expect("replay lock").remove(&id).unwrap_or_default();
            let replayed = self.replay_plan(t, id, entries, state.high_watermark).await;
            let start = Start {
                topic: t.topic.name.as_str().into(),
                id,
                epoch: lease.epoch,
                high_watermark: state.high_watermark,
                log_start: state.log_start,
                producers: known,
                replay: replayed,
            };
            let part = Partition::lead(start, self.sink.clone(), self.clock.clone(), &self.tasks, t.stop.child_token());
            tracing::info!(topic = %t.topic.name, partition = id.1, epoch = lease.epoch, "leading");
            t.set(part).stop();
        }
        Ok(())
    }

    /// The producers a partition's last owner committed, less those idle
    /// past their expiry, which are forgotten.
    async fn producers_to_keep(
        &self,
        (topic_id, p): PartitionId,
        states: Vec<(i64, silt_metadata::catalog::ProducerState)>,
        now: i64,
    ) -> Producers {
        let (live, idle): (Vec<_>, Vec<_>) =
            states.into_iter().partition(|(_, s)| now - s.updated_ms < producers::EXPIRY_MS);
        if !idle.is_empty() {
            let ids: Vec<i64> = idle.into_iter().map(|(id, _)| id).collect();
            if let Err(e) = self.catalog.forget_producers(topic_id, p, &ids).await {
                tracing::warn!(error = %crate::error::describe(&e), "could not forget idle producers");
            }
        }
        Producers::new(live)
    }

    /// The WAL entries that continue a partition's log, each with its share
    /// of the in-flight limit; the rest are released.
    async fn replay_plan(
        &self,
        t: &TopicState,
        id: PartitionId,
        entries: Vec<(Batch, Hold)>,
        high_watermark: i64,
    ) -> Vec<(Batch, Hold, tokio::sync::OwnedSemaphorePermit)> {
        let ranges: Vec<(i64, i64)> = entries.iter().map(|(b, _)| (b.header().base_offset, b.last_offset())).collect();
        let (keep, next) = replay::plan(&ranges, high_watermark);
        if let Some(found) = replay::gap(&ranges, next) {
            tracing::warn!(expected = next, found, "a gap in the WAL; later entries were never acknowledged");
        }
        let mut out = Vec::with_capacity(keep.len());
        let mut keep = keep.into_iter().peekable();
        for (i, (batch, hold)) in entries.into_iter().enumerate() {
            if keep.peek() != Some(&i) {
                hold.release();
                continue;
            }
            keep.next();
            let need = u32::try_from(batch.bytes().len()).unwrap_or(u32::MAX);
            let permit =
                self.inflight.clone().acquire_many_owned(need).await.expect("the in-flight semaphore is never closed");
            out.push((batch, hold, permit));
        }
        if !out.is_empty() {
            tracing::info!(topic = %t.topic.name, partition = id.1, batches = out.len(), from = high_watermark,
                to = next, "replaying the WAL");
        }
        out
    }

    /// Replaces a leader with a follower.
    fn demote(&self, t: &TopicState, part: &Arc<Partition>) {
        let status = part.status();
        let follower =
            Partition::follow(part.topic.clone(), part.id, status.high_watermark, part.log_start(), String::new());
        t.set(follower);
        part.stop();
    }

    /// Gives partitions up gracefully: no new appends, wait until what was
    /// accepted is committed (or the drain deadline passes), then release
    /// the leases for their next owners, in as few transactions as fit.
    async fn hand_over(&self, ids: &[PartitionId]) -> Result<(), CatalogError> {
        if ids.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<PartitionId> = ids.iter().copied().collect();
        let parts: Vec<(Arc<TopicState>, Arc<Partition>)> =
            self.table.actors().into_iter().filter(|(_, p)| wanted.contains(&p.id)).collect();
        for (_, part) in &parts {
            part.tell(Report::Fence);
        }
        let fenced_at = self.clock.now_ms();
        let mut drained = 0;
        loop {
            let now = self.clock.now_ms();
            let steps: Vec<handover::Step> = parts
                .iter()
                .map(|(_, p)| handover::step(p.status().drained(), fenced_at, now, HANDOVER_DRAIN_MS))
                .collect();
            if steps.iter().all(|s| matches!(s, handover::Step::Release { .. })) {
                drained = steps.iter().filter(|s| **s == handover::Step::Release { drained: true }).count();
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = self.stop.cancelled() => break,
            }
        }
        let held: Vec<(u64, u32, u64)> = parts.iter().map(|(_, p)| (p.id.0, p.id.1, p.epoch)).collect();
        self.catalog.release_leases(&self.id.agent_id, &held).await?;
        for (t, part) in &parts {
            self.demote(t, part);
        }
        tracing::info!(partitions = parts.len(), drained, "handed over");
        Ok(())
    }

    /// At the start of a shutdown: refuse new appends (a retriable answer
    /// given before offsets are assigned, so producers resend them to the
    /// next owner), while what was accepted is flushed and committed.
    pub fn stop_accepting(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        for (_, part) in self.table.actors() {
            part.tell(Report::Fence);
        }
    }

    /// At shutdown, after the final flush: release every lease and leave.
    pub async fn release_all(&self) {
        let _round = self.rounds.lock().await;
        self.leaving.store(true, Ordering::SeqCst);
        let parts = self.table.actors();
        let held: Vec<(u64, u32, u64)> = parts.iter().map(|(_, p)| (p.id.0, p.id.1, p.epoch)).collect();
        if let Err(e) = self.catalog.release_leases(&self.id.agent_id, &held).await {
            tracing::warn!(error = %crate::error::describe(&e), "could not release the leases");
        }
        for (t, part) in &parts {
            self.demote(t, part);
        }
        if let Err(e) = self.catalog.deregister(&self.id.agent_id).await {
            tracing::warn!(error = %crate::error::describe(&e), "could not deregister");
        }
    }

    /// Brings a follower's high watermark and owner up to date from the
    /// metadata store.
    pub async fn refresh_follower(&self, part: &Partition) -> Result<(), ServiceError> {
        match self.catalog.partition(part.id.0, part.id.1).await? {
            Some((state, lease)) => {
                part.observe_high_watermark(state.high_watermark);
                part.observe_log_start(state.log_start);
                part.set_owner(lease.map(|l| self.live_address(&l)).unwrap_or_default());
                Ok(())
            }
            None => Err(ServiceError::UnknownTopic(part.topic.to_string())),
        }
    }

    /// WAL entries of topics that no longer exist can go.
    async fn release_orphaned_replay(&self) -> Result<(), CatalogError> {
        let ids: HashSet<u64> = self.catalog.list_topics().await?.into_iter().map(|t| t.id).collect();
        let mut replay = self.replay.lock().expect("replay lock");
        let orphaned: Vec<PartitionId> = replay.keys().filter(|(t, _)| !ids.contains(t)).copied().collect();
        for id in orphaned {
            for (_, hold) in replay.remove(&id).unwrap_or_default() {
                hold.release();
            }
        }
        Ok(())
    }
}
