//! Partition ownership over time: the agent registers and heartbeats,
//! renews the leases it holds, takes the partitions the planner assigns to
//! it, and hands over the ones assigned to others.
//!
//! Each partition of each topic sits in a slot holding either a leader (this
//! agent holds its lease; an actor assigns offsets) or a follower (another
//! agent, or none yet, owns it; appends get NOT_OWNER naming the owner, and
//! reads go through the index like anyone's). A round runs every quarter
//! lease TTL, and right away when a topic is created.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use silt_metadata::catalog::{Lease, Topic};
use silt_metadata::CatalogError;

use crate::error::ServiceError;
use crate::flush::Pending;
use crate::ownership::{self, PartitionId};
use crate::partition::Partition;
use crate::producers::Producers;
use crate::service::{contiguous_from, now_ms, Service, TopicState};

/// How long a handover waits for in-flight batches to commit.
const HANDOVER_DRAIN: Duration = Duration::from_secs(10);
/// How often an agent looks for partitions to take: released ones are
/// taken within about this long. Rounds only read, except when they renew.
const ROUND_EVERY: Duration = Duration::from_millis(500);

impl Service {
    fn ttl_ms(&self) -> i64 {
        self.lease_ttl.as_millis() as i64
    }

    /// Follows every partition of a topic this agent did not know yet.
    pub(crate) async fn adopt(&self, topic: Topic) -> Result<Arc<TopicState>, CatalogError> {
        if let Some(t) = self.topics.read().expect("topics lock").get(&topic.name) {
            if t.topic.id == topic.id {
                return Ok(t.clone());
            }
        }
        let parts = self.catalog.partitions(&topic).await?;
        let now = now_ms();
        let slots = parts
            .into_iter()
            .enumerate()
            .map(|(p, (state, lease))| {
                let owner = lease.map(|l| live_address(&l, now)).unwrap_or_default();
                RwLock::new(Partition::follower(
                    topic.name.clone(),
                    topic.id,
                    p as u32,
                    state.high_watermark,
                    state.log_start,
                    owner,
                ))
            })
            .collect();
        let state = Arc::new(TopicState { topic: topic.clone(), slots, stop: self.stop.child_token() });
        let mut topics = self.topics.write().expect("topics lock");
        // A re-created topic (new id) replaces the old one.
        if let Some(old) = topics.insert(topic.name.clone(), state.clone()) {
            old.stop.cancel();
        }
        Ok(state)
    }

    /// Brings a follower's high watermark and owner up to date. The owner
    /// (named in NOT_OWNER answers) is whoever holds a live lease: a released
    /// or expired lease names nobody, so clients ask any agent rather than
    /// wait on a departed one.
    pub(crate) async fn refresh_follower(&self, part: &Partition) -> Result<(), ServiceError> {
        match self.catalog.partition(part.topic_id, part.partition).await? {
            Some((state, lease)) => {
                part.observe_high_watermark(state.high_watermark);
                part.set_owner(lease.map(|l| live_address(&l, now_ms())).unwrap_or_default());
                Ok(())
            }
            None => Err(ServiceError::UnknownTopic(part.topic.clone())),
        }
    }

    pub(crate) async fn ownership_loop(self: Arc<Self>) {
        let tick = (self.lease_ttl / 4).clamp(Duration::from_millis(100), ROUND_EVERY);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.stop.cancelled() => return,
            }
            if let Err(e) = self.ownership_round().await {
                tracing::warn!(error = %e, "ownership round failed; retrying at the next");
            }
        }
    }

    /// One round: heartbeat, renew, follow new topics, then take and give
    /// partitions as the planner says.
    pub(crate) async fn ownership_round(&self) -> Result<(), CatalogError> {
        let _round = self.ownership.lock().await;
        if self.stop.is_cancelled() || self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let now = now_ms();
        // Heartbeat and renew every quarter TTL; the rest of the round only reads.
        let last = self.last_renewed_ms.load(std::sync::atomic::Ordering::SeqCst);
        if now - last >= self.ttl_ms() / 4 {
            self.catalog.heartbeat(&self.agent_id, &self.address, self.started_ms, now).await?;
            let leaders = self.leaders();
            let held: Vec<(u64, u32, u64)> = leaders.iter().map(|(_, p)| (p.topic_id, p.partition, p.epoch)).collect();
            let lost: HashSet<PartitionId> =
                self.catalog.renew_leases(&self.agent_id, &held, now, self.ttl_ms()).await?.into_iter().collect();
            for (t, p) in &leaders {
                if lost.contains(&p.id()) {
                    tracing::warn!(topic = %p.topic, partition = p.partition, epoch = p.epoch, "lost the lease; now following");
                    p.fence();
                    self.demote(t, p, String::new());
                }
            }
            self.last_renewed_ms.store(now, std::sync::atomic::Ordering::SeqCst);
        }

        // Follow topics created elsewhere; drop deleted ones.
        let topics = self.catalog.list_topics().await?;
        let names: HashSet<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let gone: Vec<String> =
            self.topics.read().expect("topics lock").keys().filter(|n| !names.contains(n.as_str())).cloned().collect();
        for name in gone {
            if let Some(t) = self.topics.write().expect("topics lock").remove(&name) {
                t.stop.cancel();
            }
        }
        for topic in &topics {
            self.adopt(topic.clone()).await?;
        }

        // Plan against the live agents and the current leases.
        let ttl = self.ttl_ms();
        let live: Vec<String> = self
            .catalog
            .agents()
            .await?
            .into_iter()
            .filter(|a| a.heartbeat_ms.saturating_add(ttl) > now)
            .map(|a| a.id)
            .collect();
        let mut all = Vec::new();
        let mut leases: HashMap<PartitionId, Lease> = HashMap::new();
        let states: Vec<Arc<TopicState>> = self.topics.read().expect("topics lock").values().cloned().collect();
        for t in &states {
            for (p, (_, lease)) in self.catalog.partitions(&t.topic).await?.into_iter().enumerate() {
                let id = (t.topic.id, p as u32);
                all.push(id);
                if let Some(l) = lease {
                    if let Some(part) = t.get(p as u32).filter(|part| !part.is_leader()) {
                        part.set_owner(live_address(&l, now));
                    }
                    leases.insert(id, l);
                }
            }
        }
        let running: HashSet<PartitionId> = self.leaders().iter().map(|(_, p)| p.id()).collect();
        let plan = ownership::plan(&self.agent_id, &live, &all, &leases, &running, now);
        let by_id: HashMap<u64, Arc<TopicState>> = states.iter().map(|t| (t.topic.id, t.clone())).collect();
        for (topic_id, p) in plan.acquire {
            if let Some(t) = by_id.get(&topic_id) {
                match self.promote(t, p).await {
                    Ok(()) => {}
                    Err(CatalogError::LeaseHeld { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (topic_id, p) in plan.release {
            if let Some(t) = by_id.get(&topic_id) {
                self.hand_over(t, p).await?;
            }
        }
        Ok(())
    }

    /// Partitions with an actor, fenced or not (a stopping agent has fenced them).
    fn all_actors(&self) -> Vec<(Arc<TopicState>, Arc<Partition>)> {
        let topics: Vec<Arc<TopicState>> = self.topics.read().expect("topics lock").values().cloned().collect();
        let mut out = Vec::new();
        for t in topics {
            for p in 0..t.topic.partitions {
                if let Some(part) = t.get(p).filter(|part| part.epoch > 0) {
                    out.push((t.clone(), part));
                }
            }
        }
        out
    }

    fn leaders(&self) -> Vec<(Arc<TopicState>, Arc<Partition>)> {
        let topics: Vec<Arc<TopicState>> = self.topics.read().expect("topics lock").values().cloned().collect();
        let mut out = Vec::new();
        for t in topics {
            for p in 0..t.topic.partitions {
                if let Some(part) = t.get(p).filter(|part| part.is_leader()) {
                    out.push((t.clone(), part));
                }
            }
        }
        out
    }

    /// Takes a partition's lease, starts its actor, and replays what the WAL
    /// holds for it.
    async fn promote(&self, t: &TopicState, p: u32) -> Result<(), CatalogError> {
        let topic = &t.topic;
        let (lease, state) =
            self.catalog.acquire_lease(topic.id, p, &self.agent_id, &self.address, now_ms(), self.ttl_ms()).await?;
        let producers = self.load_producers(topic.id, p).await?;
        let replay = self.replay.lock().expect("replay lock").remove(&(topic.id, p)).unwrap_or_default();
        let (replay, next_offset) = contiguous_from(replay, state.high_watermark);
        let replayed: Vec<_> = replay.iter().map(|(b, _)| *b.header()).collect();
        let part = Partition::start(
            topic.name.clone(),
            topic.id,
            p,
            lease.epoch,
            state.high_watermark,
            next_offset,
            state.log_start,
            producers,
            &replayed,
            self.sink.clone(),
            &self.tasks,
            t.stop.child_token(),
        );
        if !replay.is_empty() {
            tracing::info!(topic = %topic.name, partition = p, batches = replay.len(), from = state.high_watermark,
                to = next_offset, "replaying the WAL");
        }
        for (batch, hold) in replay {
            let need = u32::try_from(batch.bytes().len()).unwrap_or(u32::MAX);
            let permit =
                self.inflight.clone().acquire_many_owned(need).await.expect("the in-flight semaphore is never closed");
            let pending =
                Pending { partition: part.clone(), batch, done: None, committed: None, permit, wal: Some(hold) };
            self.sink.queue.push(pending);
        }
        tracing::info!(topic = %topic.name, partition = p, epoch = lease.epoch, "leading");
        t.set(p, part);
        Ok(())
    }

    /// The idempotent producers a partition's last owner committed; those
    /// idle past their expiry are forgotten.
    async fn load_producers(&self, topic_id: u64, p: u32) -> Result<Producers, CatalogError> {
        let now = now_ms();
        let (live, idle): (Vec<_>, Vec<_>) = self
            .catalog
            .producers(topic_id, p)
            .await?
            .into_iter()
            .partition(|(_, s)| now - s.updated_ms < crate::producers::EXPIRY_MS);
        if !idle.is_empty() {
            let ids: Vec<i64> = idle.into_iter().map(|(id, _)| id).collect();
            if let Err(e) = self.catalog.forget_producers(topic_id, p, &ids).await {
                tracing::warn!(error = %e, "could not forget idle producers");
            }
        }
        Ok(Producers::new(live))
    }

    /// Replaces a leader with a follower.
    fn demote(&self, t: &TopicState, part: &Arc<Partition>, owner: String) {
        let state = Partition::follower(
            part.topic.clone(),
            part.topic_id,
            part.partition,
            part.high_watermark(),
            part.log_start(),
            owner,
        );
        t.set(part.partition, state);
        part.stop();
    }

    /// Gives a partition up gracefully: no new appends, wait until what was
    /// accepted is committed, then release the lease for its next owner.
    async fn hand_over(&self, t: &TopicState, p: u32) -> Result<(), CatalogError> {
        let Some(part) = t.get(p).filter(|part| part.is_leader()) else { return Ok(()) };
        part.fence();
        let deadline = tokio::time::Instant::now() + HANDOVER_DRAIN;
        while !part.drained() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.catalog.release_lease(part.topic_id, p, &self.agent_id, part.epoch).await?;
        tracing::info!(topic = %part.topic, partition = p, drained = part.drained(), "handed over");
        self.demote(t, &part, String::new());
        Ok(())
    }

    /// The registered agents, with the partitions each holds a live lease on.
    pub async fn list_agents(&self) -> Result<Vec<silt_wire::AgentInfo>, ServiceError> {
        let now = now_ms();
        let mut held: HashMap<String, u32> = HashMap::new();
        for topic in self.catalog.list_topics().await? {
            for (_, lease) in self.catalog.partitions(&topic).await? {
                if let Some(l) = lease.filter(|l| l.is_live(now)) {
                    *held.entry(l.owner).or_default() += 1;
                }
            }
        }
        Ok(self
            .catalog
            .agents()
            .await?
            .into_iter()
            .map(|a| silt_wire::AgentInfo {
                partitions: held.get(&a.id).copied().unwrap_or(0),
                id: a.id,
                address: a.address,
                heartbeat_ms: a.heartbeat_ms,
            })
            .collect())
    }

    /// At the start of a shutdown: refuse new appends (a retriable answer
    /// given before offsets are assigned, so producers resend them to the
    /// next owner), while what was accepted is flushed and committed.
    pub fn stop_accepting(&self) {
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, part) in self.leaders() {
            part.fence();
        }
    }

    /// At shutdown, after the final flush: release every lease and leave.
    pub async fn release_all(&self) {
        let _round = self.ownership.lock().await;
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
        for (t, part) in self.all_actors() {
            part.fence();
            if let Err(e) = self.catalog.release_lease(part.topic_id, part.partition, &self.agent_id, part.epoch).await
            {
                tracing::warn!(topic = %part.topic, partition = part.partition, error = %e, "could not release a lease");
            }
            self.demote(&t, &part, String::new());
        }
        if let Err(e) = self.catalog.deregister(&self.agent_id).await {
            tracing::warn!(error = %e, "could not deregister");
        }
    }

    /// WAL entries of topics that no longer exist can go.
    pub(crate) async fn release_orphaned_replay(&self) -> Result<(), CatalogError> {
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

/// The owner's address while the lease is live, else "" (no owner).
pub(crate) fn live_address(lease: &Lease, now_ms: i64) -> String {
    if lease.is_live(now_ms) {
        lease.address.clone()
    } else {
        String::new()
    }
}
