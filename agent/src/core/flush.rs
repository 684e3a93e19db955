//! When to flush: at `max_bytes` buffered, or `interval` after the oldest
//! buffered batch arrived, whichever comes first.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_bytes: usize,
    pub interval: Duration,
}

impl Policy {
    /// The instant the buffer is due, or None when it is empty.
    pub fn due(&self, bytes: usize, oldest: Option<Instant>) -> Option<Instant> {
        let oldest = oldest?;
        Some(if bytes >= self.max_bytes { oldest } else { oldest + self.interval })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_flushes_at_size_or_interval() {
        let p = Policy { max_bytes: 100, interval: Duration::from_millis(250) };
        let t0 = Instant::now();
        assert_eq!(p.due(0, None), None);
        assert_eq!(p.due(10, Some(t0)), Some(t0 + Duration::from_millis(250)));
        assert_eq!(p.due(100, Some(t0)), Some(t0));
    }
}
