//! Every partition this agent knows, by topic. Each slot holds the
//! partition's handle: led here (an actor runs it) or followed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use silt_metadata::catalog::Topic;
use tokio_util::sync::CancellationToken;

use crate::log::partition::Partition;

/// Every partition of a topic, each led here or followed.
pub struct TopicState {
    /// The topic as adopted; its config overrides as they are now are
    /// [`TopicState::overrides`].
    pub topic: Topic,
    overrides: RwLock<Arc<Vec<(String, String)>>>,
    slots: Vec<RwLock<Arc<Partition>>>,
    /// Stops this topic's partition actors.
    pub stop: CancellationToken,
}

impl TopicState {
    pub fn new(topic: Topic, partitions: Vec<Arc<Partition>>, stop: CancellationToken) -> TopicState {
        let overrides = RwLock::new(Arc::new(topic.configs.clone()));
        TopicState { topic, overrides, slots: partitions.into_iter().map(RwLock::new).collect(), stop }
    }

    /// The topic's config overrides, as of the last ownership round.
    pub fn overrides(&self) -> Arc<Vec<(String, String)>> {
        self.overrides.read().expect("overrides lock").clone()
    }

    /// Takes the overrides the metadata store now has; whether they changed.
    pub fn set_overrides(&self, configs: &[(String, String)]) -> bool {
        let mut o = self.overrides.write().expect("overrides lock");
        if o.as_slice() == configs {
            return false;
        }
        *o = Arc::new(configs.to_vec());
        true
    }

    pub fn get(&self, p: u32) -> Option<Arc<Partition>> {
        self.slots.get(p as usize).map(|s| s.read().expect("slot lock").clone())
    }

    /// Puts `part` in its slot and returns what was there.
    pub fn set(&self, part: Arc<Partition>) -> Arc<Partition> {
        std::mem::replace(&mut *self.slots[part.id.1 as usize].write().expect("slot lock"), part)
    }

    pub fn partitions(&self) -> impl Iterator<Item = Arc<Partition>> + '_ {
        self.slots.iter().map(|s| s.read().expect("slot lock").clone())
    }
}

#[derive(Default)]
pub struct Table {
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
}

impl Table {
    pub fn get(&self, name: &str) -> Option<Arc<TopicState>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    /// Adds a topic; one it replaces (re-created under a new id) stops.
    pub fn insert(&self, state: Arc<TopicState>) {
        let old = self.topics.write().expect("topics lock").insert(state.topic.name.clone(), state);
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// Removes a topic and stops its actors.
    pub fn remove(&self, name: &str) {
        if let Some(old) = self.topics.write().expect("topics lock").remove(name) {
            old.stop.cancel();
        }
    }

    pub fn topics(&self) -> Vec<Arc<TopicState>> {
        self.topics.read().expect("topics lock").values().cloned().collect()
    }

    /// Partitions with an actor here, fenced or not.
    pub fn actors(&self) -> Vec<(Arc<TopicState>, Arc<Partition>)> {
        let mut out = Vec::new();
        for t in self.topics() {
            for part in t.partitions().filter(|p| p.has_actor()) {
                out.push((t.clone(), part));
            }
        }
        out
    }
}
