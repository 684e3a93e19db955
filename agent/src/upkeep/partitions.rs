//! The partitions led here, tended in turn: retention, then object
//! compaction. For each, a summary of its index entries is kept in memory
//! (read once when leadership starts, then only the entries committed
//! since), so a partition with nothing new and nothing due costs no reads.
//!
//! Retention goes first so compaction never rewrites what is about to be
//! dropped; both run here, one partition at a time, so they never race
//! each other. Against an owner change, both are fenced by the lease epoch
//! their summary was read under.

use std::collections::{HashMap, HashSet, VecDeque};

use silt_metadata::catalog::{PartitionId, Segment, Trimmed};

use super::{compaction, key_compaction, Upkeep};
use crate::cluster::TopicState;
use crate::core::retention::{trim_to, Span};
use crate::error::ServiceError;
use crate::log::partition::Partition;
use crate::metrics;

/// Index entries read per metadata request.
const PAGE: usize = 1024;

/// What upkeep knows of one led partition's index.
pub struct Summary {
    /// The lease epoch it was read under: a new epoch reads it again.
    pub epoch: u64,
    /// Committed index entries from the log start, in order.
    pub entries: VecDeque<Segment>,
    pub bytes: u64,
    /// Entries are known up to here (exclusive).
    pub known_to: i64,
}

impl Summary {
    /// The entries in `group` were swapped for `new` (a compacted segment).
    pub fn replace(&mut self, group: std::ops::Range<usize>, new: Segment) {
        let old: u64 = self.entries.drain(group.clone()).map(|s| s.len).sum();
        self.bytes = self.bytes - old + new.len;
        self.entries.insert(group.start, new);
    }
}

#[derive(Default)]
pub struct Partitions {
    summaries: HashMap<PartitionId, Summary>,
}

impl Partitions {
    /// One pass over the partitions led here.
    pub async fn run(&mut self, up: &Upkeep) {
        let led = up.cluster.table.actors();
        let ids: HashSet<PartitionId> = led.iter().map(|(_, p)| p.id).collect();
        self.summaries.retain(|id, _| ids.contains(id));
        for (topic, part) in led {
            if let Err(e) = self.tend(up, &topic, &part).await {
                tracing::warn!(topic = %part.topic, partition = part.id.1,
                    error = %crate::error::describe(&e), "upkeep failed; trying again next time");
                self.summaries.remove(&part.id);
            }
        }
    }

    async fn tend(&mut self, up: &Upkeep, topic: &TopicState, part: &Partition) -> Result<(), ServiceError> {
        let config = up.settings.topic_defaults.effective(&topic.overrides(), up.settings.max_record_bytes);
        let retains = config.cleanup.delete && (config.retention_ms.is_some() || config.retention_bytes.is_some());
        let compacts = up.settings.object_compaction || config.cleanup.compact;
        if !(retains || compacts) || !part.is_leader() {
            self.summaries.remove(&part.id);
            return Ok(());
        }
        let summary = self.summary(up, part).await?;
        let now = up.cluster.clock().now_ms();
        if retains {
            if let Some(to) = trim_to(&spans(summary), summary.bytes, &config, now) {
                let due = now.saturating_add(up.settings.gc_grace.as_millis() as i64);
                match up.catalog.trim(up.cluster.agent_id(), part.epoch, part.id, to, due).await? {
                    Trimmed::Done { log_start, segments } => {
                        while summary.entries.front().is_some_and(|s| s.last_offset < log_start) {
                            let s = summary.entries.pop_front().expect("checked");
                            summary.bytes -= s.len;
                        }
                        part.observe_log_start(log_start);
                        metrics::add(&up.metrics.trimmed_segments, segments as u64);
                        tracing::info!(topic = %part.topic, partition = part.id.1, log_start, segments, "retention trimmed the log");
                    }
                    Trimmed::Fenced | Trimmed::Deleted => {
                        self.summaries.remove(&part.id);
                        return Ok(());
                    }
                }
            }
        }
        let min_age = up.settings.compaction_min_age;
        let holds = match config.cleanup.compact {
            true => key_compaction::run(up, part, summary, &config, min_age).await?,
            false if up.settings.object_compaction => compaction::run(up, part, summary, &config, min_age).await?,
            false => true,
        };
        if !holds {
            self.summaries.remove(&part.id);
        }
        Ok(())
    }

    /// The partition's summary, brought up to its high watermark.
    async fn summary(&mut self, up: &Upkeep, part: &Partition) -> Result<&mut Summary, ServiceError> {
        if self.summaries.get(&part.id).is_none_or(|s| s.epoch != part.epoch) {
            let fresh = Summary { epoch: part.epoch, entries: VecDeque::new(), bytes: 0, known_to: part.log_start() };
            self.summaries.insert(part.id, fresh);
        }
        let summary = self.summaries.get_mut(&part.id).expect("just made sure");
        let hw = part.high_watermark();
        while summary.known_to < hw {
            let from = summary.known_to;
            let found = up.catalog.segments(part.id.0, part.id.1, from, PAGE).await?;
            let full = found.len() == PAGE;
            for s in found.into_iter().filter(|s| s.last_offset >= from && s.last_offset < hw) {
                summary.known_to = s.last_offset + 1;
                summary.bytes += s.len;
                summary.entries.push_back(s);
            }
            if !full {
                break;
            }
        }
        Ok(summary)
    }
}

fn spans(summary: &Summary) -> Vec<Span> {
    summary
        .entries
        .iter()
        .map(|s| Span { last_offset: s.last_offset, max_timestamp: s.max_timestamp, bytes: s.len })
        .collect()
}
