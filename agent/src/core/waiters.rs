//! Replies that wait until an offset is committed: the answer to a batch
//! sent again while its first copy is still on its way to the object
//! store, and an acks=local acknowledgement that must wait for earlier
//! batches which bypassed the write-ahead log. The partition's actor keeps
//! them and hands them out as commits come in; nothing polls.

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Waiters<T> {
    by_last_offset: BTreeMap<i64, Vec<T>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters { by_last_offset: BTreeMap::new() }
    }
}

impl<T> Waiters<T> {
    /// `reply` waits until offset `last_offset` is committed.
    pub fn wait(&mut self, last_offset: i64, reply: T) {
        self.by_last_offset.entry(last_offset).or_default().push(reply);
    }

    /// The replies whose offsets are now committed (below `high_watermark`),
    /// in offset order.
    pub fn committed(&mut self, high_watermark: i64) -> Vec<T> {
        let rest = self.by_last_offset.split_off(&high_watermark);
        std::mem::replace(&mut self.by_last_offset, rest).into_values().flatten().collect()
    }

    /// Every reply still waiting (the partition stops being led here).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.by_last_offset).into_values().flatten().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_last_offset.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_go_out_as_their_offsets_commit() {
        let mut w = Waiters::default();
        w.wait(9, "a");
        w.wait(4, "b");
        w.wait(9, "c");
        w.wait(20, "d");
        // (high watermark after a commit, replies that go out)
        let steps: [(i64, &[&str]); 4] = [(4, &[]), (5, &["b"]), (15, &["a", "c"]), (15, &[])];
        for (hw, out) in steps {
            assert_eq!(w.committed(hw), out, "at {hw}");
        }
        assert!(!w.is_empty());
        assert_eq!(w.drain(), vec!["d"]);
        assert!(w.is_empty());
    }
}
