//! Key compaction, driven: for a partition of a `cleanup.policy=compact`
//! topic led here, when `core::key_compaction` says cleaning is due:
//!
//! 1. read the cleanable part and note each key's latest offset;
//! 2. rewrite it, group by group, keeping the records that survive (their
//!    batches re-encoded with the same offsets, so the log has gaps), each
//!    group into one segment, stored and swapped in as object compaction
//!    does (same fencing, same crash safety).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use silt_metadata::catalog::Segment;

use super::compaction::store_and_swap;
use super::partitions::Summary;
use super::Upkeep;
use crate::core::key_compaction::{cleanable, groups, survives, Entry, Policy};
use crate::core::topic_config::TopicConfig;
use crate::error::ServiceError;
use crate::format::object;
use crate::log::partition::Partition;

/// Cleans what is due; false when the summary no longer holds.
pub async fn run(
    up: &Upkeep,
    part: &Partition,
    summary: &mut Summary,
    config: &TopicConfig,
    min_age: Duration,
) -> Result<bool, ServiceError> {
    let entries: Vec<Entry> = summary
        .entries
        .iter()
        .map(|s| Entry {
            bytes: s.len,
            created_ms: object::created_ms(&s.object).unwrap_or(i64::MAX),
            max_timestamp: s.max_timestamp,
            clean: object::is_segment(&s.object),
        })
        .collect();
    let policy = Policy {
        min_age_ms: min_age.as_millis() as i64,
        min_lag_ms: config.min_compaction_lag_ms,
        segment_bytes: config.segment_bytes,
        max_entries: up.catalog.max_swap_entries(),
    };
    let now = up.cluster.clock().now_ms();
    let Some(n) = cleanable(&entries, &policy, now) else { return Ok(true) };

    // Each key's latest offset in the cleanable part.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for s in summary.entries.range(..n) {
        for batch in up.read.segment_batches(s).await? {
            for r in batch.records()? {
                if let Some(k) = r.key {
                    latest.insert(k, r.offset);
                }
            }
        }
    }
    let (mut kept, mut dropped) = (0u64, 0u64);
    // From the back, so the earlier groups' positions hold as entries are replaced.
    for group in groups(&entries, n, &policy).into_iter().rev() {
        let old: Vec<Segment> = summary.entries.range(group.clone()).cloned().collect();
        let mut builder = object::Builder::default();
        let last = old.len() - 1;
        for (i, s) in old.iter().enumerate() {
            let batches = up.read.segment_batches(s).await?;
            let count = batches.len();
            for (j, batch) in batches.into_iter().enumerate() {
                let before = batch.header().record_count;
                // The group's last batch stays, if empty, to mark where it ends.
                let mark_end = i == last && j + 1 == count;
                let keep = |r: &silt_wire::Record| {
                    let key_latest = r.key.as_ref().map(|k| latest.get(k).copied().unwrap_or(r.offset));
                    survives(r.offset, key_latest, r.value.is_none(), r.timestamp, config.delete_retention_ms, now)
                };
                if let Some(b) = silt_wire::batch::retain(&batch, keep, mark_end)? {
                    kept += u64::from(b.header().record_count);
                    dropped += u64::from(before - b.header().record_count);
                    builder.push_sparse(part.id.0, part.id.1, &b);
                } else {
                    dropped += u64::from(before);
                }
            }
        }
        let (data, runs) = builder.finish();
        if runs.len() != 1 {
            return Err(ServiceError::Corrupt(format!("{}/{}: a cleaned group is not one run", part.topic, part.id.1)));
        }
        let Some(new) = store_and_swap(up, part, &old, data, &runs[0]).await? else { return Ok(false) };
        summary.replace(group, new);
    }
    tracing::info!(topic = %part.topic, partition = part.id.1, keys = latest.len(), kept, dropped, "cleaned");
    Ok(true)
}
