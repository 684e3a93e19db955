//! The read cache: a foyer hybrid cache (memory, then the cache dirs'
//! disks) of stored byte ranges, in front of the object store. Reading the
//! same historical range twice costs one GET.
//!
//! What live consumers read, the newest objects, is not here: it sits in
//! [`super::RecentObjects`], which only the flusher fills, so no scan of
//! history can push it out. This cache's memory tier is w-TinyLFU: a range
//! read once by a scan passes through its small window without evicting
//! ranges read more often (several groups reading the same recent past).
//!
//! The disk tier writes and reads with direct I/O where the filesystem has
//! it: through the page cache, a catch-up read that fills the cache spent
//! half the agent's CPU copying into fresh page-cache memory (2-core VM).
//!
//! A cache dir that cannot hold a cache is reported and left out; with
//! none, the cache is memory only. A range enters the cache once its batch
//! CRCs are checked; foyer checksums what it keeps on disk and reads a
//! damaged entry as a miss. Cached ranges still go through the batch
//! header, length and offset checks; one that fails them is dropped and
//! fetched again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, CombinedDeviceBuilder, Device, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, LfuConfig,
};

use crate::error::AgentError;
use crate::metrics::ReadStats;

pub struct ReadCache {
    cache: HybridCache<String, Bytes>,
    gets: AtomicU64,
    hits: AtomicU64,
    recent_hits: AtomicU64,
}

impl ReadCache {
    pub async fn open(dirs: &[PathBuf], memory_bytes: usize, disk_bytes: usize) -> Result<Arc<ReadCache>, AgentError> {
        let mut devices: Vec<Arc<dyn Device>> = Vec::new();
        if disk_bytes > 0 {
            for dir in dirs {
                let path = dir.join("cache");
                let device = std::fs::create_dir_all(&path)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
                    .and_then(|_| {
                        let direct = crate::disk::has_direct_io(&path);
                        Ok(FsDeviceBuilder::new(&path).with_capacity(disk_bytes).with_direct(direct).build()?)
                    });
                match device {
                    Ok(d) => devices.push(d),
                    Err(e) => tracing::error!(dir = %path.display(), error = %crate::error::describe(e.as_ref()),
                        "cannot keep a read cache here; reading through the other cache dirs or the object store"),
                }
            }
        }
        let device = match devices.len() {
            0 => None,
            1 => devices.pop(),
            _ => Some(
                devices
                    .into_iter()
                    .fold(CombinedDeviceBuilder::new(), |b, d| b.with_device(d))
                    .build()
                    .map_err(|e| AgentError::Cache(Box::new(e)))?,
            ),
        };
        let storage = HybridCacheBuilder::new()
            .with_name("silt-read-cache")
            // Historical reads are what the disk tier is for: keep every
            // range there as it is fetched, not only on eviction.
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(memory_bytes.max(1))
            .with_eviction_config(LfuConfig::default())
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage();
        // Without a disk, no engine: foyer then keeps the cache in memory only.
        let storage = match device {
            // A catch-up read inserts hundreds of MB/s; foyer drops what does
            // not fit its write queue (16 MiB by default), and a dropped
            // range costs a GET on the next pass.
            Some(device) => storage.with_engine_config(
                BlockEngineConfig::new(device)
                    .with_flushers(2)
                    .with_buffer_pool_size(32 << 20)
                    .with_submit_queue_size_threshold(96 << 20),
            ),
            None => storage,
        };
        let cache = storage.build().await.map_err(|e| AgentError::Cache(Box::new(e)))?;
        Ok(Arc::new(ReadCache {
            cache,
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            recent_hits: AtomicU64::new(0),
        }))
    }

    pub async fn get(&self, key: &String) -> Option<Bytes> {
        match self.cache.get(key).await {
            Ok(Some(entry)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.value().clone())
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "read cache lookup failed; reading from the object store");
                None
            }
        }
    }

    /// A GET sent to the object store.
    pub fn count_get(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    /// A read served from the recently written objects.
    pub fn count_recent_hit(&self) {
        self.recent_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn insert(&self, key: String, value: Bytes) {
        self.cache.insert(key, value);
    }

    pub fn remove(&self, key: &String) {
        self.cache.remove(key);
    }

    pub fn stats(&self) -> ReadStats {
        ReadStats {
            gets: self.gets.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
            recent_hits: self.recent_hits.load(Ordering::Relaxed),
        }
    }

    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the read cache");
        }
    }
}
