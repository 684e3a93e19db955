//! One partition's cache of its segment index: the entries most recently
//! committed (the owner adds each as it commits) and those readers looked
//! up. Older entries are read from the metadata store again when needed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use silt_metadata::catalog::{PartitionId, Segment};

/// Index entries kept in memory per partition.
const ENTRIES: usize = 4096;

#[derive(Debug)]
pub struct SegmentIndex {
    id: PartitionId,
    /// `topic/partition`, for messages.
    name: String,
    /// By last offset, as in the metadata store.
    entries: Mutex<BTreeMap<i64, Segment>>,
}

impl SegmentIndex {
    pub fn new(topic: &str, id: PartitionId) -> SegmentIndex {
        SegmentIndex { id, name: format!("{topic}/{}", id.1), entries: Mutex::default() }
    }

    pub fn id(&self) -> PartitionId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds entries, dropping the oldest past the cache's size.
    pub fn remember(&self, segments: impl IntoIterator<Item = Segment>) {
        let mut entries = self.entries.lock().expect("index lock");
        for s in segments {
            entries.insert(s.last_offset, s);
        }
        while entries.len() > ENTRIES {
            entries.pop_first();
        }
    }

    /// Drops the entries that end before `offset` (the new log start).
    pub fn forget_below(&self, offset: i64) {
        let mut entries = self.entries.lock().expect("index lock");
        *entries = entries.split_off(&offset);
    }

    /// Drops every entry that points into `object` (it is gone: the range
    /// was rewritten elsewhere).
    pub fn forget_object(&self, object: &str) {
        self.entries.lock().expect("index lock").retain(|_, s| s.object != object);
    }

    /// The cached entry that holds `offset`, if cached.
    pub fn cached(&self, offset: i64) -> Option<Segment> {
        let entries = self.entries.lock().expect("index lock");
        entries.range(offset..).next().map(|(_, s)| s.clone()).filter(|s| s.base_offset <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, last: i64) -> Segment {
        Segment { base_offset: base, last_offset: last, object: "o".into(), start: 0, len: 1, max_timestamp: 0 }
    }

    #[test]
    fn finds_the_entry_holding_an_offset() {
        let index = SegmentIndex::new("t", (1, 0));
        index.remember([seg(0, 9), seg(10, 14)]);
        assert_eq!(index.cached(0), Some(seg(0, 9)));
        assert_eq!(index.cached(12), Some(seg(10, 14)));
        assert_eq!(index.cached(15), None);
        // A hole (entries not cached) is not papered over.
        index.remember([seg(30, 39)]);
        assert_eq!(index.cached(20), None);
        assert_eq!(index.name(), "t/0");
        index.forget_below(10);
        assert_eq!((index.cached(5), index.cached(12)), (None, Some(seg(10, 14))));
        index.forget_object("o");
        assert_eq!(index.cached(12), None);
    }
}
