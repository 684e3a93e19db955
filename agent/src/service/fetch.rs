//! Reading a partition from an offset.

use std::time::Duration;

use silt_wire::batch::split_validated;

use super::{Fetched, Service};
use crate::error::ServiceError;

/// How often a follower checks the metadata store for new records while a
/// fetch waits at the end of the log. Clients fetch from owners, which see
/// new records at once; this serves other tools.
const FOLLOWER_POLL: Duration = Duration::from_millis(100);

impl Service {
    /// Reads from `offset`. At the end of the log it waits up to `max_wait`
    /// for new records, then answers with none.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetched, ServiceError> {
        let fetched = self.read_from(topic, partition, offset, max_bytes, max_wait).await?;
        if !fetched.batches.is_empty() {
            let records = fetched
                .batches
                .iter()
                .filter_map(|b| silt_wire::batch::BatchHeader::parse(b).ok())
                .map(|(h, _)| u64::from(h.record_count))
                .sum();
            self.metrics.fetched(topic, records, fetched.batches.iter().map(|b| b.len() as u64).sum());
        }
        Ok(fetched)
    }

    /// Waits up to `max_wait` for records at `offset`: whether there are.
    pub async fn has_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<bool, ServiceError> {
        Ok(self.read_from(topic, partition, offset, 1, max_wait).await?.high_watermark > offset)
    }

    async fn read_from(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetched, ServiceError> {
        let part = self.partition(topic, partition).await?;
        let led = part.has_actor();
        if !led {
            self.cluster.refresh_follower(&part).await?;
        }
        let mut hw = part.high_watermark();
        let log_start = part.log_start();
        let out_of_range = |hw| ServiceError::OffsetOutOfRange {
            topic: topic.into(),
            partition,
            offset,
            log_start,
            high_watermark: hw,
        };
        if offset < log_start || offset > hw {
            return Err(out_of_range(hw));
        }
        if offset == hw && !max_wait.is_zero() {
            if led {
                let mut rx = part.subscribe();
                tokio::select! {
                    r = rx.wait_for(|s| s.high_watermark > offset) => if let Ok(s) = r { hw = s.high_watermark },
                    _ = tokio::time::sleep(max_wait) => {}
                    _ = self.stop.cancelled() => {}
                }
            } else {
                // Another agent writes this partition: watch the metadata store.
                let deadline = tokio::time::Instant::now() + max_wait;
                while part.high_watermark() <= offset && tokio::time::Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep(FOLLOWER_POLL) => {}
                        _ = self.stop.cancelled() => break,
                    }
                    self.cluster.refresh_follower(&part).await?;
                }
            }
            hw = hw.max(part.high_watermark());
        }
        let batches = if offset < hw {
            self.read.read(&part.index, offset, max_bytes.min(self.limits.max_batch_bytes), hw).await?
        } else {
            Vec::new()
        };
        Ok(Fetched { high_watermark: hw, log_start, batches })
    }
}

/// Index entries read per step when looking for a timestamp.
const SEGMENTS_PER_STEP: usize = 256;

impl Service {
    /// A partition's first offset and its high watermark, as its owner
    /// knows them (or the metadata store, here on another agent).
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<(i64, i64), ServiceError> {
        let part = self.partition(topic, partition).await?;
        if !part.has_actor() {
            self.cluster.refresh_follower(&part).await?;
        }
        Ok((part.log_start(), part.high_watermark()))
    }

    /// The first record whose timestamp is at least `timestamp`, as
    /// (offset, its timestamp); None when every record is older. Index
    /// entries' largest timestamps skip what is older; the batches of the
    /// first entry that reaches it are read.
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ServiceError> {
        let part = self.partition(topic, partition).await?;
        let (log_start, _) = self.offsets(topic, partition).await?;
        let id = part.index.id();
        let mut from = log_start;
        // The first index entry that holds a record at least that new.
        loop {
            let segments = self.catalog.segments(id.0, partition, from, SEGMENTS_PER_STEP).await?;
            match segments.iter().find(|s| s.max_timestamp >= timestamp && s.last_offset >= from) {
                Some(s) => {
                    from = s.base_offset.max(from);
                    break;
                }
                None if segments.len() < SEGMENTS_PER_STEP => {
                    // What is not indexed yet: from the last entry's end.
                    from = segments.last().map_or(from, |s| (s.last_offset + 1).max(from));
                    break;
                }
                None => from = segments.last().map_or(from, |s| s.last_offset + 1),
            }
        }
        // Its batches, then what follows, until a record is new enough (the
        // read path checked the batches: their CRCs are not computed again).
        loop {
            let fetched = self.fetch(topic, partition, from, self.limits.max_batch_bytes, Duration::ZERO).await?;
            let mut next = from;
            for piece in &fetched.batches {
                for batch in split_validated(piece) {
                    let batch = batch?;
                    next = next.max(batch.last_offset() + 1);
                    if batch.last_offset() < from || batch.header().max_timestamp < timestamp {
                        continue;
                    }
                    if let Some(r) = batch.records()?.into_iter().find(|r| r.offset >= from && r.timestamp >= timestamp)
                    {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            // Nothing read: the end of the log.
            if next <= from {
                return Ok(None);
            }
            from = next;
        }
    }
}
