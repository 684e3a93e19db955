//! Object garbage collection, run by one agent at a time: the owner of the
//! first coordination slot.
//!
//! - Collection: every `--gc-interval`, the notes that came due (objects
//!   whose index entries retention, compaction or a topic delete removed,
//!   a grace period ago) are checked one object at a time: its footer names
//!   every partition run it holds, and the index entries at those runs'
//!   last offsets say whether any still points into it. Objects nothing
//!   points into are deleted, in batches (S3 DeleteObjects).
//! - The sweep: every `--orphan-sweep-interval`, the bucket is listed and
//!   objects created since the last sweep's horizon and older than
//!   `--orphan-age` that nothing points into are noted (left by a crash
//!   between an object's PUT and its commit). The horizon is kept in the
//!   metadata store, so each object is checked once, whoever sweeps.
//!
//! Why it is safe: index entries only ever point into a new object when a
//! flush or a compaction commits it, and a flusher gives up committing an
//! object older than the grace period. So an object that nothing points
//! into, past its grace period, stays that way.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio_util::sync::CancellationToken;

use super::{tick, Upkeep};
use crate::core::gc as decide;
use crate::error::ServiceError;
use crate::format::object;
use crate::groups::GROUPS_TOPIC;
use crate::metrics;

/// Notes handled per metadata read.
const NOTES: usize = 256;
/// The first read of an object's tail: enough for a footer of ~1,200 runs.
const TAIL: u64 = 64 * 1024;

pub async fn run(up: &Arc<Upkeep>, stop: &CancellationToken) {
    let mut since_sweep = std::time::Duration::ZERO;
    while tick(up.settings.gc_every, stop).await {
        if !collector(up) {
            continue;
        }
        if let Err(e) = collect(up).await {
            tracing::warn!(error = %crate::error::describe(&e), "object collection failed; trying again next time");
        }
        since_sweep += up.settings.gc_every;
        if since_sweep >= up.settings.sweep_every {
            since_sweep = std::time::Duration::ZERO;
            if let Err(e) = sweep(up).await {
                tracing::warn!(error = %crate::error::describe(&e), "the bucket sweep failed; trying again next time");
            }
        }
    }
}

/// Whether this agent collects: it leads the first coordination slot.
fn collector(up: &Upkeep) -> bool {
    up.cluster.table.get(GROUPS_TOPIC).and_then(|t| t.get(0)).is_some_and(|p| p.is_leader())
}

/// Deletes the noted objects that came due and that nothing points into.
pub async fn collect(up: &Upkeep) -> Result<(), ServiceError> {
    loop {
        let now = up.cluster.clock().now_ms();
        let notes = up.catalog.gc_due(now, NOTES).await?;
        if notes.is_empty() {
            return Ok(());
        }
        let mut dead = Vec::new();
        let mut done = Vec::new();
        for (due, name) in notes.iter() {
            match references(up, name).await {
                Ok(Some(0)) => {
                    dead.push(name.clone());
                    done.push((*due, name.clone()));
                }
                // Still pointed into: whoever removes the last entry notes it again.
                Ok(Some(_)) => done.push((*due, name.clone())),
                Ok(None) => done.push((*due, name.clone())),
                Err(e) => {
                    tracing::warn!(object = %name, error = %crate::error::describe(&e), "could not check an object; keeping its note");
                }
            }
        }
        dead.sort();
        dead.dedup();
        delete(up, &dead).await?;
        up.catalog.gc_forget(&done).await?;
        if done.is_empty() || notes.len() < NOTES {
            return Ok(());
        }
    }
}

/// How many index entries point into `name` (None: the object is gone, or
/// is not one of silt's and is left alone).
async fn references(up: &Upkeep, name: &str) -> Result<Option<usize>, ServiceError> {
    let path = Path::from(name);
    let Some((tail, len)) = tail(up, &path, TAIL).await? else { return Ok(None) };
    let need = match object::tail_len(&tail) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(object = %name, error = %e, "not a readable silt object; leaving it");
            return Ok(None);
        }
    };
    let tail = match need > tail.len() {
        true => match self::tail(up, &path, need as u64).await? {
            Some((t, _)) => t,
            None => return Ok(None),
        },
        false => tail,
    };
    let runs = match object::read_tail(&tail, len) {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(object = %name, error = %e, "an object's footer is unreadable; leaving it");
            return Ok(None);
        }
    };
    let keys: Vec<(u64, u32, i64)> = runs.iter().map(|r| (r.topic_id, r.partition, r.last_offset)).collect();
    Ok(Some(up.catalog.references(name, &keys).await?))
}

/// The last `n` bytes of an object and its length (None: it is gone).
async fn tail(up: &Upkeep, path: &Path, n: u64) -> Result<Option<(bytes::Bytes, u64)>, ServiceError> {
    let opts = GetOptions { range: Some(GetRange::Suffix(n)), ..Default::default() };
    metrics::add(&up.metrics.gc_gets, 1);
    match up.store.get_opts(path, opts).await {
        Ok(got) => {
            let len = got.meta.size;
            let bytes = got.bytes().await.map_err(|e| ServiceError::Storage(Arc::new(e)))?;
            Ok(Some((bytes, len)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(ServiceError::Storage(Arc::new(e))),
    }
}

/// Deletes objects, batched by the store (S3: DeleteObjects, 1,000 a request).
async fn delete(up: &Upkeep, names: &[String]) -> Result<(), ServiceError> {
    if names.is_empty() {
        return Ok(());
    }
    let paths: Vec<object_store::Result<Path>> = names.iter().map(|n| Ok(Path::from(n.as_str()))).collect();
    let results: Vec<object_store::Result<Path>> =
        up.store.delete_stream(futures::stream::iter(paths).boxed()).collect().await;
    metrics::add(&up.metrics.delete_batches, names.len().div_ceil(1000) as u64);
    for r in results {
        match r {
            Ok(path) => {
                metrics::add(&up.metrics.objects_deleted, 1);
                tracing::debug!(object = %path, "deleted");
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(ServiceError::Storage(Arc::new(e))),
        }
    }
    Ok(())
}

/// Notes the objects nothing points into, created since the last sweep's
/// horizon and older than the orphan age: those nothing ever pointed into,
/// and (harmlessly, noted twice) those whose last entry went lately.
pub async fn sweep(up: &Upkeep) -> Result<(), ServiceError> {
    let now = up.cluster.clock().now_ms();
    let from = up.catalog.gc_swept_to().await?;
    let Some(window) = decide::sweep_window(from, now, up.settings.orphan_age.as_millis() as i64) else {
        return Ok(());
    };
    let listed: Vec<object_store::ObjectMeta> = up
        .store
        .list(Some(&Path::from(object::PREFIX.trim_end_matches('/'))))
        .try_collect()
        .await
        .map_err(|e| ServiceError::Storage(Arc::new(e)))?;
    let mut orphans = Vec::new();
    for meta in listed {
        let name = meta.location.to_string();
        if !object::created_ms(&name).is_some_and(|ms| window.contains(&ms)) {
            continue;
        }
        if references(up, &name).await? == Some(0) {
            orphans.push(name);
        }
    }
    if !orphans.is_empty() {
        tracing::info!(orphans = orphans.len(), "the sweep found objects nothing points into");
        metrics::add(&up.metrics.orphans_found, orphans.len() as u64);
        // A grace period like any other: an object whose last index entry
        // went a moment ago may still be read.
        let due = now.saturating_add(up.settings.gc_grace.as_millis() as i64);
        up.catalog.gc_note(&orphans, due).await?;
    }
    up.catalog.set_gc_swept_to(window.end).await?;
    Ok(())
}
