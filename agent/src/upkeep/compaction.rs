//! Object compaction, driven: for a partition led here, rewrite the groups
//! `core::compaction` names into per-partition segments.
//!
//! Each group, in order:
//! 1. read its entries' batches (whole, CRC-checked) and concatenate them,
//!    unchanged, into a new object of the usual layout with one run;
//! 2. PUT it under a fresh name;
//! 3. swap the group's index entries for one entry pointing into it, in one
//!    metadata transaction fenced by the lease epoch (and refused if any
//!    entry changed), noting the old objects for collection.
//!
//! A crash before 2 leaves nothing; between 2 and 3, an object nothing
//! points into, which the bucket sweep collects; after 3, old objects that
//! were noted in the same transaction, which collection deletes after
//! their grace period. Readers that still hold an old entry read the old
//! object until then, and look the range up again if it is gone.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{PutMode, PutOptions};
use silt_metadata::catalog::{Segment, Swapped};

use super::partitions::Summary;
use super::Upkeep;
use crate::core::compaction::{plan, Entry, Policy};
use crate::core::topic_config::TopicConfig;
use crate::error::ServiceError;
use crate::failpoint;
use crate::format::object;
use crate::log::partition::Partition;
use crate::metrics;

/// Groups rewritten per partition per pass (each is held in memory whole).
const GROUPS_PER_PASS: usize = 4;

/// Compacts what is due; false when the summary no longer holds (fenced,
/// deleted, or the index changed under it).
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
            compacted: object::is_segment(&s.object),
        })
        .collect();
    let policy = Policy {
        segment_bytes: config.segment_bytes,
        min_age_ms: min_age.as_millis() as i64,
        max_entries: up.catalog.max_swap_entries(),
    };
    let now = up.cluster.clock().now_ms();
    let groups = plan(&entries, &policy, now);
    // From the back, so the earlier groups' positions hold as entries are replaced.
    for group in groups.into_iter().take(GROUPS_PER_PASS).rev() {
        let old: Vec<Segment> = summary.entries.range(group.clone()).cloned().collect();
        let Some(new) = rewrite(up, part, &old).await? else { return Ok(false) };
        summary.replace(group, new);
    }
    Ok(true)
}

/// Rewrites one group; the new entry, or None when the swap was refused.
async fn rewrite(up: &Upkeep, part: &Partition, old: &[Segment]) -> Result<Option<Segment>, ServiceError> {
    let (topic_id, partition) = part.id;
    let mut builder = object::Builder::default();
    for s in old {
        for batch in up.read.segment_batches(s).await? {
            builder.push(topic_id, partition, &batch);
        }
    }
    let (data, runs) = builder.finish();
    if runs.len() != 1 {
        return Err(ServiceError::Corrupt(format!(
            "{}/{partition}: entries to compact are not contiguous",
            part.topic
        )));
    }
    store_and_swap(up, part, old, data, &runs[0]).await
}

/// Stores a segment built from the entries `old` (its one run `run`) and
/// swaps it in for them: the new entry, or None when the swap was refused
/// (its object is then noted for collection).
pub async fn store_and_swap(
    up: &Upkeep,
    part: &Partition,
    old: &[Segment],
    data: object::Object,
    run: &object::Entry,
) -> Result<Option<Segment>, ServiceError> {
    let partition = part.id.1;
    let now = up.cluster.clock().now_ms();
    let seq = up.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = object::segment_name(up.cluster.agent_id(), now, seq);
    // It covers exactly the entries it replaces (cleaning may have removed
    // records at either end; the last batch always stays to mark the end).
    let new = Segment {
        base_offset: old[0].base_offset,
        last_offset: old[old.len() - 1].last_offset,
        object: name.clone(),
        start: run.start,
        len: run.len,
        max_timestamp: run.max_timestamp,
    };
    if run.last_offset != new.last_offset {
        return Err(ServiceError::Corrupt(format!("{}/{partition}: a rewritten run ends early", part.topic)));
    }
    failpoint::reached("compaction-before-put", up.catalog.store().as_ref());
    let written = data.len() as u64;
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    up.store
        .put_opts(&Path::from(name.as_str()), data.payload(), opts)
        .await
        .map_err(|e| ServiceError::Storage(Arc::new(e)))?;
    metrics::add(&up.metrics.compacted_bytes_written, written);
    failpoint::reached("compaction-before-commit", up.catalog.store().as_ref());
    let due = now.saturating_add(up.settings.gc_grace.as_millis() as i64);
    // An error may hide a swap that went through: the sweep sorts that out
    // (it checks the index before deleting anything).
    let swapped = up.catalog.swap_segments(up.cluster.agent_id(), part.epoch, part.id, old, &new, due).await?;
    if swapped != Swapped::Done {
        tracing::info!(topic = %part.topic, partition, outcome = ?swapped, "a compaction swap was refused; dropping its segment");
        metrics::add(&up.metrics.compactions_refused, 1);
        up.catalog.gc_note(&[name], due).await?;
        return Ok(None);
    }
    failpoint::reached("compaction-before-delete", up.catalog.store().as_ref());
    for s in old {
        part.index.forget_object(&s.object);
    }
    part.index.remember([new.clone()]);
    metrics::add(&up.metrics.compacted_segments, 1);
    metrics::add(&up.metrics.compacted_entries, old.len() as u64);
    tracing::debug!(topic = %part.topic, partition, entries = old.len(), bytes = written, object = %name, "compacted");
    Ok(Some(new))
}
