//! Topics, agents, producer ids and counters.

use std::collections::HashMap;

use super::{AgentInfo, PartitionInfo, Service, TopicInfo};
use crate::config::MAX_PARTITIONS;
use crate::core::topic_config::{TopicConfig, KEYS};
use crate::error::ServiceError;
use crate::groups::INTERNAL_PREFIX;

/// Topic names follow Kafka's rules, so the same names work in both.
pub fn validate_topic_name(name: &str) -> Result<(), ServiceError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 249 {
        "it is longer than 249 characters"
    } else if name == "." || name == ".." {
        "it cannot be '.' or '..'"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else if name.starts_with(INTERNAL_PREFIX) {
        "names starting with __silt are silt's own"
    } else {
        return Ok(());
    };
    Err(ServiceError::InvalidTopicName { name: name.into(), reason })
}

impl Service {
    /// The agent's counters, by name (stable names: tools read them).
    pub fn stats(&self) -> Vec<(String, u64)> {
        let mut out = self.metrics.snapshot(self.read.cache.stats());
        let meta = self.catalog.stats().unwrap_or_default();
        out.extend([
            ("metadata_reads".to_string(), meta.reads),
            ("metadata_writes".to_string(), meta.writes),
            ("metadata_conflicts".to_string(), meta.conflicts),
            ("metadata_errors".to_string(), meta.errors),
        ]);
        out
    }

    /// Checks a topic's name, partition count and configs as `create_topic`
    /// would, creating nothing.
    pub fn check_topic(&self, name: &str, partitions: u32, configs: &[(String, String)]) -> Result<(), ServiceError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ServiceError::InvalidPartitions { count: partitions, max: MAX_PARTITIONS });
        }
        self.check_configs(configs)?;
        Ok(())
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
    ) -> Result<(), ServiceError> {
        self.check_topic(name, partitions, configs)?;
        self.catalog.create_topic(name, partitions, configs, self.cluster.clock().now_ms()).await?;
        // Take this agent's share now rather than at the next round.
        self.cluster.round_now().await?;
        Ok(())
    }

    /// Sets and removes config overrides of a topic. Every key and value is
    /// checked first, and the topic's resulting settings as a whole: on any
    /// error nothing changes.
    pub async fn alter_topic(
        &self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), ServiceError> {
        validate_topic_name(name)?;
        self.check_configs(set)?;
        for key in delete {
            if !KEYS.contains(&key.as_str()) {
                return Err(ServiceError::InvalidConfig {
                    key: key.clone(),
                    reason: format!("unknown config key (known: {})", KEYS.join(", ")),
                });
            }
            if set.iter().any(|(k, _)| k == key) {
                return Err(ServiceError::InvalidConfig { key: key.clone(), reason: "both set and deleted".into() });
            }
        }
        self.catalog.alter_topic_configs(name, set, delete).await?;
        // Follow the change here now rather than at the next round.
        self.cluster.round_now().await?;
        Ok(())
    }

    fn check_configs(&self, configs: &[(String, String)]) -> Result<TopicConfig, ServiceError> {
        self.limits
            .topic_defaults
            .with(configs, self.limits.max_record_bytes as u32)
            .map_err(|e| ServiceError::InvalidConfig { key: e.key, reason: e.reason })
    }

    /// A topic's effective settings: its overrides over the agents' defaults.
    pub(crate) fn topic_config(&self, overrides: &[(String, String)]) -> TopicConfig {
        self.limits.topic_defaults.effective(overrides, self.limits.max_record_bytes as u32)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ServiceError> {
        validate_topic_name(name)?;
        let due = self.cluster.clock().now_ms().saturating_add(self.limits.gc_grace.as_millis() as i64);
        self.catalog.delete_topic(name, due).await?;
        self.cluster.table.remove(name);
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .catalog
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .filter(|n| !n.starts_with(INTERNAL_PREFIX))
            .collect())
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ServiceError> {
        let topic = self.catalog.topic(name).await?.ok_or_else(|| ServiceError::UnknownTopic(name.into()))?;
        let agents = self.catalog.agents().await?;
        let now = self.cluster.clock().now_ms();
        let partitions = self
            .catalog
            .partitions(&topic)
            .await?
            .into_iter()
            .enumerate()
            .map(|(p, (state, lease))| PartitionInfo {
                partition: p as u32,
                owner: lease
                    .as_ref()
                    .and_then(|l| l.holder(&agents, now))
                    .map(|r| r.address.clone())
                    .unwrap_or_default(),
                epoch: lease.map_or(0, |l| l.epoch),
                log_start: state.log_start,
                high_watermark: state.high_watermark,
            })
            .collect();
        Ok(TopicInfo {
            max_record_bytes: self.topic_config(&topic.configs).max_message_bytes,
            name: topic.name,
            id: topic.id,
            partitions,
            configs: topic.configs,
        })
    }

    /// The registered agents, with the partitions each holds a live lease on.
    pub async fn list_agents(&self) -> Result<Vec<AgentInfo>, ServiceError> {
        let agents = self.catalog.agents().await?;
        let now = self.cluster.clock().now_ms();
        let mut held: HashMap<String, u32> = HashMap::new();
        for (_, lease) in self.catalog.leases().await? {
            if let Some(r) = lease.holder(&agents, now) {
                *held.entry(r.id.clone()).or_default() += 1;
            }
        }
        Ok(agents
            .into_iter()
            .map(|a| AgentInfo {
                partitions: held.get(&a.id).copied().unwrap_or(0),
                live: a.is_live(now),
                id: a.id,
                address: a.address,
                kafka_address: a.kafka_address,
                heartbeat_ms: a.heartbeat_ms,
            })
            .collect())
    }

    /// A producer id for an idempotent producer, never handed out before.
    pub async fn init_producer(&self) -> Result<i64, ServiceError> {
        Ok(self.catalog.allocate_producer_id().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["hello", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "has space", "slash/", "é", &"x".repeat(250), "__silt_groups"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
