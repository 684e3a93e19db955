//! The agent's counters, answered to `Stats` requests as named values.
//! Names are stable: tools and benchmarks read them.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the read path has asked of the object store and of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Ranged GETs sent to the object store.
    pub gets: u64,
    /// Reads served by the read cache (memory or disk).
    pub cache_hits: u64,
    /// Reads served by the recently-written objects kept in memory.
    pub recent_hits: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub produced_batches: AtomicU64,
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    /// Batches an idempotent producer sent again, answered without writing.
    pub duplicate_batches: AtomicU64,
    /// Objects PUT to the object store (one per flush).
    pub objects_written: AtomicU64,
    pub object_bytes_written: AtomicU64,
    /// Metadata transactions that committed a flush's index entries.
    pub index_commits: AtomicU64,
    /// Records committed to the index (durable and readable).
    pub committed_records: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub wal_bytes: AtomicU64,
    /// Index entries retention removed (the log start moved past them).
    pub trimmed_segments: AtomicU64,
    /// Objects collection deleted, and the delete requests it took.
    pub objects_deleted: AtomicU64,
    pub delete_batches: AtomicU64,
    /// Footer reads by collection and the bucket sweep.
    pub gc_gets: AtomicU64,
    /// Objects the bucket sweep found that nothing points into (left by a
    /// crash, or already noted when their last index entry went).
    pub orphans_found: AtomicU64,
    /// Segments object compaction wrote, their bytes, and the index entries they replaced.
    pub compacted_segments: AtomicU64,
    pub compacted_bytes_written: AtomicU64,
    pub compacted_entries: AtomicU64,
    /// Compaction swaps the index refused (the lease moved, or the entries changed).
    pub compactions_refused: AtomicU64,
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn snapshot(&self, read: ReadStats) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("produced_batches", get(&self.produced_batches)),
            ("produced_records", get(&self.produced_records)),
            ("produced_bytes", get(&self.produced_bytes)),
            ("duplicate_batches", get(&self.duplicate_batches)),
            ("objects_written", get(&self.objects_written)),
            ("object_bytes_written", get(&self.object_bytes_written)),
            ("index_commits", get(&self.index_commits)),
            ("committed_records", get(&self.committed_records)),
            ("wal_fsyncs", get(&self.wal_fsyncs)),
            ("wal_bytes", get(&self.wal_bytes)),
            ("trimmed_segments", get(&self.trimmed_segments)),
            ("objects_deleted", get(&self.objects_deleted)),
            ("delete_batches", get(&self.delete_batches)),
            ("gc_gets", get(&self.gc_gets)),
            ("orphans_found", get(&self.orphans_found)),
            ("compacted_segments", get(&self.compacted_segments)),
            ("compacted_bytes_written", get(&self.compacted_bytes_written)),
            ("compacted_entries", get(&self.compacted_entries)),
            ("compactions_refused", get(&self.compactions_refused)),
            // Bytes written to the object store per 100 bytes produced (flushes and compaction).
            ("write_amplification_pct", {
                let written = get(&self.object_bytes_written) + get(&self.compacted_bytes_written);
                (written * 100).checked_div(get(&self.produced_bytes)).unwrap_or(0)
            }),
            ("object_gets", read.gets),
            ("read_cache_hits", read.cache_hits),
            ("recent_object_hits", read.recent_hits),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
