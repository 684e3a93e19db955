//! Recently written objects, kept whole in memory up to a byte budget:
//! consumers near the tail read from here instead of the object store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::format::object::Object;

/// The objects, newest last, and their total size.
pub struct RecentObjects {
    inner: Mutex<Recent>,
    capacity: usize,
}

#[derive(Default)]
struct Recent {
    objects: HashMap<String, Object>,
    order: VecDeque<String>,
    bytes: usize,
}

impl RecentObjects {
    pub fn new(capacity: usize) -> Self {
        RecentObjects { inner: Default::default(), capacity }
    }

    pub fn insert(&self, name: String, data: Object) {
        if data.len() > self.capacity {
            return;
        }
        let mut r = self.inner.lock().expect("recent objects lock");
        r.bytes += data.len();
        r.objects.insert(name.clone(), data);
        r.order.push_back(name);
        while r.bytes > self.capacity {
            let Some(old) = r.order.pop_front() else {
                break;
            };
            if let Some(d) = r.objects.remove(&old) {
                r.bytes -= d.len();
            }
        }
    }

    /// Bytes `start..end` of a kept object, as slices of its chunks.
    pub fn range(&self, name: &str, start: usize, end: usize) -> Option<Vec<Bytes>> {
        self.inner.lock().expect("recent objects lock").objects.get(name)?.range(start, end)
    }
}
