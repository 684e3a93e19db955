//! Retention, driven: for every partition led here, keep a summary of its
//! index entries (read once when leadership starts, then only the entries
//! committed since), ask `core::retention` how far the log may start, and
//! trim the index to there.
//!
//! A partition with nothing new and nothing due costs no reads: the
//! summary is in memory and the decision is arithmetic.

use std::collections::{HashMap, HashSet, VecDeque};

use silt_metadata::catalog::{PartitionId, Trimmed};
use silt_metadata::CatalogError;

use super::Upkeep;
use crate::cluster::TopicState;
use crate::core::retention::{trim_to, Span};
use crate::log::partition::Partition;
use crate::metrics;

/// Index entries read per metadata request.
const PAGE: usize = 1024;

/// What retention knows of one led partition's index.
struct Summary {
    /// The lease epoch it was read under: a new epoch reads it again.
    epoch: u64,
    spans: VecDeque<Span>,
    bytes: u64,
    /// Entries are known up to here (exclusive).
    known_to: i64,
}

#[derive(Default)]
pub struct Retention {
    summaries: HashMap<PartitionId, Summary>,
}

impl Retention {
    /// One pass over the partitions led here.
    pub async fn run(&mut self, up: &Upkeep) {
        let led = up.cluster.table.actors();
        let ids: HashSet<PartitionId> = led.iter().map(|(_, p)| p.id).collect();
        self.summaries.retain(|id, _| ids.contains(id));
        for (topic, part) in led {
            if let Err(e) = self.apply(up, &topic, &part).await {
                tracing::warn!(topic = %part.topic, partition = part.id.1,
                    error = %crate::error::describe(&e), "retention failed; trying again next time");
                self.summaries.remove(&part.id);
            }
        }
    }

    async fn apply(&mut self, up: &Upkeep, topic: &TopicState, part: &Partition) -> Result<(), CatalogError> {
        let config = up.settings.topic_defaults.effective(&topic.overrides(), up.settings.max_record_bytes);
        let applies = config.cleanup.delete && (config.retention_ms.is_some() || config.retention_bytes.is_some());
        if !applies || !part.is_leader() {
            self.summaries.remove(&part.id);
            return Ok(());
        }
        let summary = match self.summaries.get_mut(&part.id) {
            Some(s) if s.epoch == part.epoch => s,
            _ => {
                let fresh = Summary { epoch: part.epoch, spans: VecDeque::new(), bytes: 0, known_to: part.log_start() };
                self.summaries.insert(part.id, fresh);
                self.summaries.get_mut(&part.id).expect("just inserted")
            }
        };
        let hw = part.high_watermark();
        while summary.known_to < hw {
            let from = summary.known_to;
            let found = up.catalog.segments(part.id.0, part.id.1, from, PAGE).await?;
            let full = found.len() == PAGE;
            for s in found.into_iter().filter(|s| s.last_offset >= from && s.last_offset < hw) {
                summary.known_to = s.last_offset + 1;
                summary.bytes += s.len;
                summary.spans.push_back(Span {
                    last_offset: s.last_offset,
                    max_timestamp: s.max_timestamp,
                    bytes: s.len,
                });
            }
            if !full {
                break;
            }
        }
        let now = up.cluster.clock().now_ms();
        let Some(to) = trim_to(summary.spans.make_contiguous(), summary.bytes, &config, now) else {
            return Ok(());
        };
        let due = now.saturating_add(up.settings.gc_grace.as_millis() as i64);
        match up.catalog.trim(up.cluster.agent_id(), part.epoch, part.id, to, due).await? {
            Trimmed::Done { log_start, segments } => {
                while summary.spans.front().is_some_and(|s| s.last_offset < log_start) {
                    let s = summary.spans.pop_front().expect("checked");
                    summary.bytes -= s.bytes;
                }
                part.observe_log_start(log_start);
                metrics::add(&up.metrics.trimmed_segments, segments as u64);
                tracing::info!(topic = %part.topic, partition = part.id.1, log_start, segments, "retention trimmed the log");
            }
            Trimmed::Fenced | Trimmed::Deleted => {
                self.summaries.remove(&part.id);
            }
        }
        Ok(())
    }
}
