//! Consumer-group coordination: the driver around `core::groups`.
//!
//! Groups hash onto the partitions ("slots") of an internal topic,
//! [`GROUPS_TOPIC`]; the agent that owns a slot's partition coordinates its
//! groups. So coordinators are chosen, spread, fenced and replaced exactly
//! like partition owners: by lease and epoch, with no special process. A
//! coordinator keeps its groups in memory, stores a group's record only
//! when it changes (a heartbeat that changes nothing writes nothing), and
//! every write checks the slot's lease at the coordinator's epoch.
//!
//! - [`Coordinator`] (here): heartbeats (long-polled), offset commits,
//!   resets and deletes; members' sessions expire on the injected clock.
//! - [`offsets`]: offset commits, batched into few metadata transactions.

pub mod offsets;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_metadata::catalog::{Fence, OffsetCommit, TopicPartition};
use silt_metadata::{Catalog, CatalogError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::core::groups::{same, Answer, Group, Heartbeat};
use crate::error::ServiceError;
use crate::log::partition::Partition;

/// The internal topic whose partitions are the coordination slots.
pub const GROUPS_TOPIC: &str = "__silt_groups";
/// Topic names with this prefix are silt's own.
pub const INTERNAL_PREFIX: &str = "__silt";
/// Coordination slots: groups spread over this many partitions' owners.
pub const SLOTS: u32 = 32;
/// How long a member may wait between heartbeats (the long poll's length).
pub const HEARTBEAT_INTERVAL_MS: u32 = 3000;
/// How often members' sessions are checked.
const EXPIRY_EVERY: Duration = Duration::from_millis(500);

/// The slot a group belongs to.
pub fn slot_of(group: &str) -> u32 {
    crc32c::crc32c(group.as_bytes()) % SLOTS
}

/// Group names follow Kafka's rules for topics (and so never hold 0x00,
/// which the offset keys rely on).
pub fn validate_group_name(name: &str) -> Result<(), ServiceError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 249 {
        "it is longer than 249 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(ServiceError::InvalidGroupName { name: name.into(), reason })
}

/// A group this agent coordinates, as loaded under one slot epoch.
struct Loaded {
    /// The slot lease epoch it was loaded under.
    epoch: u64,
    group: tokio::sync::Mutex<Group>,
    /// Moves whenever the group changes: parked heartbeats wake on it.
    version: watch::Sender<u64>,
}

pub struct Coordinator {
    catalog: Catalog,
    cluster: Arc<Cluster>,
    clock: SharedClock,
    groups: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Slots (and their epochs) whose groups were loaded at takeover.
    slots: Mutex<HashMap<u32, u64>>,
    offsets: offsets::Committer,
    stop: CancellationToken,
}

impl Coordinator {
    /// Creates the coordination topic if it is missing, and starts the
    /// session expiry and offset-commit tasks on `tasks`.
    pub async fn start(
        catalog: Catalog,
        cluster: Arc<Cluster>,
        clock: SharedClock,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Coordinator>, CatalogError> {
        match catalog.create_topic(GROUPS_TOPIC, SLOTS, &[], clock.now_ms()).await {
            Ok(_) => cluster.round_now().await?,
            Err(CatalogError::TopicExists(_)) => {}
            Err(e) => return Err(e),
        }
        let offsets = offsets::Committer::start(catalog.clone(), clock.clone(), tasks, stop.clone());
        let c = Arc::new(Coordinator {
            catalog,
            cluster,
            clock,
            groups: Mutex::default(),
            slots: Mutex::default(),
            offsets,
            stop,
        });
        let c2 = c.clone();
        tasks.spawn(c2.sessions().instrument(tracing::info_span!("groups")));
        Ok(c)
    }

    /// The slot's partition, when this agent leads it.
    fn slot(&self, slot: u32) -> Option<Arc<Partition>> {
        self.cluster.table.get(GROUPS_TOPIC)?.get(slot).filter(|p| p.is_leader())
    }

    /// The groups this agent coordinates now (loaded, their slot led here).
    pub fn coordinated(&self) -> Vec<String> {
        let groups = self.groups.lock().expect("groups lock");
        let mut names: Vec<String> = groups
            .iter()
            .filter(|(name, l)| self.slot(slot_of(name)).is_some_and(|p| p.epoch == l.epoch))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The fence of a slot led here at `epoch`.
    fn fence(&self, part: &Partition) -> Fence {
        Fence {
            topic_id: part.id.0,
            partition: part.id.1,
            owner: self.cluster.agent_id().to_string(),
            epoch: part.epoch,
        }
    }

    /// Where group `name`'s coordinator is ("" when none is yet).
    pub async fn coordinator_of(&self, name: &str) -> Result<String, ServiceError> {
        let t = self.cluster.table.get(GROUPS_TOPIC).ok_or_else(|| ServiceError::UnknownTopic(GROUPS_TOPIC.into()))?;
        let part = t.get(slot_of(name)).expect("SLOTS partitions");
        if part.is_leader() {
            return Ok(self.cluster.address().to_string());
        }
        self.cluster.refresh_follower(&part).await?;
        Ok(part.owner())
    }

    async fn not_coordinator(&self, name: &str) -> ServiceError {
        let coordinator = self.coordinator_of(name).await.unwrap_or_default();
        ServiceError::NotCoordinator { group: name.to_string(), coordinator }
    }

    /// The group, loaded if need be, while this agent coordinates it.
    async fn loaded(&self, name: &str) -> Result<(Arc<Loaded>, Fence), ServiceError> {
        validate_group_name(name)?;
        let Some(part) = self.slot(slot_of(name)) else { return Err(self.not_coordinator(name).await) };
        let fence = self.fence(&part);
        if let Some(l) = self.groups.lock().expect("groups lock").get(name).filter(|l| l.epoch == part.epoch) {
            return Ok((l.clone(), fence));
        }
        let record = self.catalog.group(name).await?.unwrap_or_default();
        let loaded = Arc::new(Loaded {
            epoch: part.epoch,
            group: tokio::sync::Mutex::new(Group::load(record, self.clock.now_ms())),
            version: watch::Sender::new(0),
        });
        let mut groups = self.groups.lock().expect("groups lock");
        // Another request may have loaded it meanwhile: keep the first.
        let entry = groups.entry(name.to_string()).or_insert_with(|| loaded.clone());
        if entry.epoch != part.epoch {
            *entry = loaded;
        }
        Ok((entry.clone(), fence))
    }

    /// Stores a changed group; a coordinator that lost its slot lets go of it.
    async fn store(&self, name: &str, loaded: &Loaded, group: &Group, fence: &Fence) -> Result<(), ServiceError> {
        match self.catalog.store_group(name, group.record(), fence).await {
            Ok(()) => {
                loaded.version.send_modify(|v| *v += 1);
                Ok(())
            }
            Err(CatalogError::Fenced { .. }) => {
                self.groups.lock().expect("groups lock").remove(name);
                Err(self.not_coordinator(name).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Partition counts of topics, as this agent knows them.
    fn partitions_of(&self) -> impl Fn(&str) -> Option<u32> + '_ {
        |topic| self.cluster.table.get(topic).map(|t| t.topic.partitions)
    }

    /// A member's heartbeat. When the answer would tell the member nothing
    /// new, it is held up to `wait` for the group to change (a long poll).
    pub async fn heartbeat(&self, group: &str, hb: Heartbeat, wait: Duration) -> Result<Answer, ServiceError> {
        let (loaded, fence) = self.loaded(group).await?;
        let arrived = self.clock.now_ms();
        let mut version = loaded.version.subscribe();
        let answer = self.beat(group, &loaded, &fence, &hb, arrived).await?;
        let told =
            hb.owned.as_ref().is_some_and(|o| same(o, &answer.assigned)) && answer.member_epoch == hb.member_epoch;
        if !told || wait.is_zero() || hb.member_epoch <= 0 {
            return Ok(answer);
        }
        version.mark_unchanged();
        tokio::select! {
            _ = version.changed() => {}
            _ = tokio::time::sleep(wait) => return Ok(answer),
            _ = self.stop.cancelled() => return Ok(answer),
        }
        // Something changed: answer afresh (the session counts from arrival).
        let again = Heartbeat { topics: None, ..hb };
        self.beat(group, &loaded, &fence, &again, arrived).await
    }

    async fn beat(
        &self,
        name: &str,
        loaded: &Loaded,
        fence: &Fence,
        hb: &Heartbeat,
        now: i64,
    ) -> Result<Answer, ServiceError> {
        let mut group = loaded.group.lock().await;
        let (answer, changed) = group
            .heartbeat(hb, &self.partitions_of(), now)
            .map_err(|reason| ServiceError::Member { group: name.to_string(), reason })?;
        if changed {
            self.store(name, loaded, &group, fence).await?;
        }
        Ok(answer)
    }

    /// Commits offsets for a member that holds the partitions.
    pub async fn commit(
        &self,
        name: &str,
        member: &str,
        epoch: i64,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), ServiceError> {
        let (loaded, fence) = self.loaded(name).await?;
        let partitions: Vec<TopicPartition> = offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        loaded
            .group
            .lock()
            .await
            .check_commit(member, epoch, &partitions)
            .map_err(|reason| ServiceError::Member { group: name.to_string(), reason })?;
        let commits = self.resolve(name, offsets)?;
        self.offsets.commit(commits, fence).await.map_err(|e| self.fenced_or(name, e))
    }

    fn fenced_or(&self, name: &str, e: Arc<CatalogError>) -> ServiceError {
        match e.as_ref() {
            CatalogError::Fenced { .. } => {
                self.groups.lock().expect("groups lock").remove(name);
                ServiceError::NotCoordinator { group: name.to_string(), coordinator: String::new() }
            }
            _ => ServiceError::Metadata(e),
        }
    }

    /// Topic names to ids, for the offset keys.
    fn resolve(&self, group: &str, offsets: &[(String, u32, i64)]) -> Result<Vec<OffsetCommit>, ServiceError> {
        offsets
            .iter()
            .map(|(topic, partition, offset)| {
                let t = self.cluster.table.get(topic).ok_or_else(|| ServiceError::UnknownTopic(topic.clone()))?;
                if *partition >= t.topic.partitions {
                    return Err(ServiceError::UnknownPartition {
                        topic: topic.clone(),
                        partition: *partition,
                        count: t.topic.partitions,
                    });
                }
                Ok(OffsetCommit {
                    group: group.to_string(),
                    topic_id: t.topic.id,
                    partition: *partition,
                    offset: *offset,
                })
            })
            .collect()
    }

    /// Sets a group's offsets for every partition of a topic (no live members).
    pub async fn reset(&self, name: &str, offsets: Vec<(String, u32, i64)>) -> Result<(), ServiceError> {
        let (loaded, fence) = self.loaded(name).await?;
        let group = loaded.group.lock().await;
        if !group.is_empty() {
            return Err(ServiceError::GroupNotEmpty(name.to_string()));
        }
        let commits = self.resolve(name, &offsets)?;
        self.offsets.commit(commits, fence.clone()).await.map_err(|e| self.fenced_or(name, e))?;
        // A group known by its offsets alone is listed too (as Kafka lists it).
        if self.catalog.group(name).await?.is_none() {
            self.store(name, &loaded, &group, &fence).await?;
        }
        Ok(())
    }

    /// Deletes a group and its offsets (no live members).
    pub async fn delete(&self, name: &str) -> Result<(), ServiceError> {
        let (loaded, fence) = self.loaded(name).await?;
        let group = loaded.group.lock().await;
        if !group.is_empty() {
            return Err(ServiceError::GroupNotEmpty(name.to_string()));
        }
        let existed = self.catalog.delete_group(name, &fence).await.map_err(|e| self.fenced_or(name, Arc::new(e)))?;
        self.groups.lock().expect("groups lock").remove(name);
        if !existed {
            return Err(ServiceError::UnknownGroup(name.to_string()));
        }
        Ok(())
    }

    /// Ends members' sessions as they run out, and takes up the groups of
    /// slots this agent has just come to lead (so their silent members
    /// expire too).
    async fn sessions(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EXPIRY_EVERY) => {}
                _ = self.stop.cancelled() => return,
            }
            if let Err(e) = self.take_up_slots().await {
                tracing::warn!(error = %crate::error::describe(&e), "could not load the groups of a slot; retrying");
            }
            let now = self.clock.now_ms();
            let loaded: Vec<(String, Arc<Loaded>)> =
                self.groups.lock().expect("groups lock").iter().map(|(n, l)| (n.clone(), l.clone())).collect();
            for (name, l) in loaded {
                let Some(part) = self.slot(slot_of(&name)).filter(|p| p.epoch == l.epoch) else {
                    // No longer ours: whoever leads the slot now has it.
                    self.groups.lock().expect("groups lock").remove(&name);
                    continue;
                };
                let mut group = l.group.lock().await;
                let gone = group.expire(now);
                if gone.is_empty() {
                    continue;
                }
                tracing::info!(group = %name, members = ?gone, "members' sessions ended; their partitions move");
                if let Err(e) = self.store(&name, &l, &group, &self.fence(&part)).await {
                    tracing::warn!(group = %name, error = %crate::error::describe(&e), "could not store a group");
                }
            }
        }
    }

    /// Loads every stored group of the slots this agent leads but had not
    /// taken up yet.
    async fn take_up_slots(&self) -> Result<(), CatalogError> {
        let Some(t) = self.cluster.table.get(GROUPS_TOPIC) else { return Ok(()) };
        let led: HashMap<u32, u64> = t.partitions().filter(|p| p.is_leader()).map(|p| (p.id.1, p.epoch)).collect();
        let new: HashSet<u32> = {
            let mut slots = self.slots.lock().expect("slots lock");
            let new = led.iter().filter(|(s, e)| slots.get(s) != Some(e)).map(|(s, _)| *s).collect();
            *slots = led.clone();
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        for (name, record) in self.catalog.groups().await? {
            let slot = slot_of(&name);
            if !new.contains(&slot) {
                continue;
            }
            let epoch = led[&slot];
            let mut groups = self.groups.lock().expect("groups lock");
            if groups.get(&name).is_none_or(|l| l.epoch != epoch) {
                let group = tokio::sync::Mutex::new(Group::load(record, now));
                groups.insert(name, Arc::new(Loaded { epoch, group, version: watch::Sender::new(0) }));
            }
        }
        Ok(())
    }
}
