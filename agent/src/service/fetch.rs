//! Reading a partition from an offset.

use std::time::Duration;

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
