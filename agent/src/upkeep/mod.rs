//! Storage over time: the background work that keeps storage bounded.
//!
//! - [`partitions`]: each partition's owner applies retention (advances
//!   its log start past records older than `retention.ms` or beyond
//!   `retention.bytes`, as `core::retention` decides, in a fenced metadata
//!   transaction that notes the objects the removed entries pointed into),
//!   then [`compaction`]: rewrites runs of small old entries into
//!   per-partition segments (as `core::compaction` decides) and swaps them
//!   into the index, fenced the same way; for key-compacted topics,
//!   [`key_compaction`] instead keeps each key's latest record.
//! - [`gc`]: one agent at a time (the owner of the first coordination
//!   slot) deletes noted objects that nothing points into any more, once
//!   their grace period has passed, and sweeps the bucket for objects no
//!   index entry ever pointed into (a crash between PUT and commit).
//!
//! Both run on timers; an agent at rest reads only what changed and writes
//! nothing.

pub mod compaction;
pub mod gc;
pub mod key_compaction;
pub mod partitions;

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use silt_metadata::Catalog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::core::topic_config::TopicConfig;
use crate::metrics::Metrics;
use crate::read::ReadPath;

/// How often and how patiently upkeep works.
#[derive(Debug, Clone)]
pub struct Settings {
    pub retention_every: Duration,
    /// How long an object nothing points into any more stays, for readers in flight.
    pub gc_grace: Duration,
    pub gc_every: Duration,
    /// How old an object nothing ever pointed into must be before it goes.
    pub orphan_age: Duration,
    pub sweep_every: Duration,
    /// Flush objects older than this are compacted (when `object_compaction`)
    /// or, for key-compacted topics, cleaned.
    pub compaction_min_age: Duration,
    pub object_compaction: bool,
    pub topic_defaults: TopicConfig,
    pub max_record_bytes: u32,
}

pub struct Upkeep {
    pub catalog: Catalog,
    pub cluster: Arc<Cluster>,
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Arc<Metrics>,
    pub read: ReadPath,
    pub settings: Settings,
    /// Numbers the segments compaction writes.
    pub seq: std::sync::atomic::AtomicU64,
}

impl Upkeep {
    /// Starts retention and collection on `tasks`; they stop with `stop`.
    pub fn start(self, tasks: &TaskTracker, stop: CancellationToken) {
        let this = Arc::new(self);
        let (r, s) = (this.clone(), stop.clone());
        tasks.spawn(
            async move {
                let mut partitions = partitions::Partitions::default();
                while tick(r.settings.retention_every, &s).await {
                    partitions.run(&r).await;
                }
            }
            .instrument(tracing::info_span!("upkeep")),
        );
        tasks.spawn(async move { gc::run(&this, &stop).await }.instrument(tracing::info_span!("gc")));
    }
}

/// Waits `period`; false once `stop` is cancelled.
async fn tick(period: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = stop.cancelled() => false,
    }
}
