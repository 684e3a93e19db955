//! Consumer groups: membership and commits go to the group's coordinator;
//! offsets, listings and descriptions are read from the metadata store by
//! any agent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::{GroupDetail, GroupPartitionDetail, GroupSummary, MemberDetail, Reset, Service};
use crate::core::groups::{Answer, Group, Heartbeat};
use crate::error::ServiceError;
use crate::groups::validate_group_name;
use crate::metrics::GroupLag;

impl Service {
    /// The address of the agent coordinating `group`.
    pub async fn find_coordinator(&self, group: &str) -> Result<String, ServiceError> {
        validate_group_name(group)?;
        let address = self.coordinator.coordinator_of(group).await?;
        if address.is_empty() {
            return Err(ServiceError::NotCoordinator { group: group.into(), coordinator: String::new() });
        }
        Ok(address)
    }

    /// A member's heartbeat; held up to `wait` when it would change nothing.
    pub async fn group_heartbeat(&self, group: &str, hb: Heartbeat, wait: Duration) -> Result<Answer, ServiceError> {
        if let Some(topics) = &hb.topics {
            for t in topics {
                self.topic_state(t).await?;
            }
        }
        self.coordinator.heartbeat(group, hb, wait.min(Duration::from_secs(30))).await
    }

    /// Commits a member's offsets (fenced by its membership and epoch).
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: &str,
        epoch: i64,
        offsets: &[(String, u32, i64)],
    ) -> Result<(), ServiceError> {
        self.coordinator.commit(group, member, epoch, offsets).await
    }

    /// Commits offsets outside any membership (a consumer that assigns
    /// itself partitions), refused while the group has live members.
    pub async fn commit_offsets_standalone(
        &self,
        group: &str,
        offsets: Vec<(String, u32, i64)>,
    ) -> Result<(), ServiceError> {
        validate_group_name(group)?;
        for (t, _, _) in &offsets {
            self.topic_state(t).await?;
        }
        self.coordinator.reset(group, offsets).await
    }

    /// A group's committed offsets for `topics` (every topic when empty),
    /// as (topic, partition, offset).
    pub async fn fetch_offsets(&self, group: &str, topics: &[String]) -> Result<Vec<(String, u32, i64)>, ServiceError> {
        validate_group_name(group)?;
        let names = self.topic_names().await?;
        let mut out: Vec<(String, u32, i64)> = self
            .catalog
            .offsets(group)
            .await?
            .into_iter()
            .filter_map(|((id, p), o)| names.get(&id).map(|t| (t.clone(), p, o.offset)))
            .filter(|(t, _, _)| topics.is_empty() || topics.contains(t))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Topic ids to names.
    pub(crate) async fn topic_names(&self) -> Result<HashMap<u64, String>, ServiceError> {
        Ok(self.catalog.list_topics().await?.into_iter().map(|t| (t.id, t.name)).collect())
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, ServiceError> {
        let now = self.cluster.clock().now_ms();
        Ok(self
            .catalog
            .groups()
            .await?
            .into_iter()
            .map(|(name, record)| {
                let (members, epoch) = (record.members.len() as u32, record.epoch);
                let state = Group::load(record, now).state().name().to_string();
                GroupSummary { name, state, members, epoch }
            })
            .collect())
    }

    /// A group's state, members, and per partition its committed offset,
    /// the log's end and who consumes it.
    pub async fn describe_group(&self, name: &str) -> Result<GroupDetail, ServiceError> {
        validate_group_name(name)?;
        let record = self.catalog.group(name).await?;
        let offsets: HashMap<(u64, u32), i64> =
            self.catalog.offsets(name).await?.into_iter().map(|(k, o)| (k, o.offset)).collect();
        if record.is_none() && offsets.is_empty() {
            return Err(ServiceError::UnknownGroup(name.into()));
        }
        let record = record.unwrap_or_default();
        let topics = self.catalog.list_topics().await?;
        let by_id: HashMap<u64, &str> = topics.iter().map(|t| (t.id, t.name.as_str())).collect();
        let mut wanted: BTreeSet<&str> =
            record.members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
        wanted.extend(offsets.keys().filter_map(|(id, _)| by_id.get(id).copied()));
        let mut holder: BTreeMap<(String, u32), String> = BTreeMap::new();
        for m in &record.members {
            for p in m.assigned.iter().chain(&m.revoking) {
                holder.insert(p.clone(), m.id.clone());
            }
        }
        let mut partitions = Vec::new();
        for topic in topics.iter().filter(|t| wanted.contains(t.name.as_str())) {
            for (p, (state, _)) in self.catalog.partitions(topic).await?.into_iter().enumerate() {
                let p = p as u32;
                partitions.push(GroupPartitionDetail {
                    topic: topic.name.clone(),
                    partition: p,
                    committed: offsets.get(&(topic.id, p)).copied(),
                    log_end: state.high_watermark,
                    member: holder.get(&(topic.name.clone(), p)).cloned(),
                });
            }
        }
        let members = record
            .members
            .iter()
            .map(|m| MemberDetail { id: m.id.clone(), host: m.host.clone(), assigned: m.assigned.clone() })
            .collect();
        let coordinator = self.coordinator.coordinator_of(name).await.unwrap_or_default();
        let (epoch, now) = (record.epoch, self.cluster.clock().now_ms());
        let state = Group::load(record, now).state().name().to_string();
        Ok(GroupDetail { name: name.into(), state, epoch, coordinator, members, partitions })
    }

    /// How far each group coordinated here trails the partitions it has
    /// offsets for (what `/metrics` reports; other agents report theirs).
    pub async fn group_lag(&self) -> Vec<GroupLag> {
        let mut out = Vec::new();
        for name in self.coordinator.coordinated() {
            match self.describe_group(&name).await {
                Ok(d) => out.extend(d.partitions.into_iter().filter_map(|p| {
                    let committed = p.committed?;
                    Some(GroupLag {
                        group: name.clone(),
                        topic: p.topic,
                        partition: p.partition,
                        lag: (p.log_end - committed).max(0),
                    })
                })),
                Err(e) => tracing::debug!(group = %name, error = %crate::error::describe(&e), "no lag for a group"),
            }
        }
        out
    }

    /// Moves a group's offsets for every partition of `topic` (refused while
    /// the group has live members).
    pub async fn reset_offsets(&self, group: &str, topic: &str, to: Reset) -> Result<(), ServiceError> {
        validate_group_name(group)?;
        let t = self.catalog.topic(topic).await?.ok_or_else(|| ServiceError::UnknownTopic(topic.into()))?;
        let mut offsets = Vec::new();
        for (p, (state, _)) in self.catalog.partitions(&t).await?.into_iter().enumerate() {
            let offset = match to {
                Reset::Earliest => state.log_start,
                Reset::Latest => state.high_watermark,
                Reset::Offset(n) if n < state.log_start || n > state.high_watermark => {
                    return Err(ServiceError::OffsetOutOfRange {
                        topic: topic.into(),
                        partition: p as u32,
                        offset: n,
                        log_start: state.log_start,
                        high_watermark: state.high_watermark,
                    })
                }
                Reset::Offset(n) => n,
            };
            offsets.push((topic.to_string(), p as u32, offset));
        }
        // The coordinator resolves names through its table: make sure it knows the topic.
        self.topic_state(topic).await?;
        self.coordinator.reset(group, offsets).await
    }

    /// Deletes a group and its offsets (refused while it has live members).
    pub async fn delete_group(&self, group: &str) -> Result<(), ServiceError> {
        self.coordinator.delete(group).await
    }
}
