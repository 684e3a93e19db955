//! Topic records: `0x01 | name -> Topic`.

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;
use bytes::BufMut;

use super::{change, corrupt, keys, next_counter, partition, read, scan_prefix, Catalog, PartitionState, Segment};

const TOPIC_ID_COUNTER: &[u8] = b"topic-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// Unique for all time, so a re-created topic never sees the old one's data.
    pub id: u64,
    pub partitions: u32,
    pub created_ms: i64,
    /// Config overrides (`retention.ms` and the like), sorted by key. Their
    /// meaning and validation belong to the agent; the catalog keeps them.
    pub configs: Vec<(String, String)>,
}

pub fn key(name: &str) -> Vec<u8> {
    let mut key = vec![keys::TOPIC];
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn name_from_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[keys::TOPIC])?).ok()
}

impl Topic {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.put_u8(2);
        v.put_u64(self.id);
        v.put_u32(self.partitions);
        v.put_i64(self.created_ms);
        v.put_u32(self.configs.len() as u32);
        for (k, val) in &self.configs {
            v.put_str(k);
            v.put_str(val);
        }
        v
    }

    pub fn decode(name: &str, value: &[u8]) -> Result<Topic, CodecError> {
        let mut r = Reader::new(value);
        // Version 1 had no configs.
        let version = r.u8("version")?;
        if !matches!(version, 1 | 2) {
            return Err(CodecError::Version(version));
        }
        let mut topic = Topic {
            name: name.to_owned(),
            id: r.u64("topic id")?,
            partitions: r.u32("partitions")?,
            created_ms: r.i64("created")?,
            configs: Vec::new(),
        };
        if version == 2 {
            let n = r.count("config count", 8)?;
            for _ in 0..n {
                topic.configs.push((r.string("config key")?, r.string("config value")?));
            }
        }
        r.finish()?;
        Ok(topic)
    }
}

impl Catalog {
    /// Creates a topic with `partitions` partitions, all empty, and the
    /// given config overrides (validated by the caller). The topic
    /// appears at once, with all its partitions: when they are too many for
    /// one transaction, they are written first, under a fresh topic id, and
    /// the topic last.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
        now_ms: i64,
    ) -> Result<Topic, CatalogError> {
        let mut configs = configs.to_vec();
        configs.sort();
        configs.dedup_by(|a, b| a.0 == b.0);
        let in_one = partitions as usize + 3 <= self.budget();
        let early_id = match in_one {
            true => None,
            false => {
                let id = transact!(self, |t| next_counter(t, TOPIC_ID_COUNTER).await)?;
                let keys: Vec<Vec<u8>> = (0..partitions).map(|p| partition::key(id, p)).collect();
                for chunk in keys.chunks(self.budget()) {
                    transact!(self, |t| {
                        for k in chunk {
                            t.put(k.clone(), PartitionState::default().encode());
                        }
                        Ok(())
                    })?;
                }
                Some(id)
            }
        };
        let created = transact!(self, |t| {
            let key = key(name);
            if t.get_for_update(&key).await?.is_some() {
                return Err(CatalogError::TopicExists(name.into()));
            }
            let id = match early_id {
                Some(id) => id,
                None => next_counter(t, TOPIC_ID_COUNTER).await?,
            };
            let topic = Topic { name: name.into(), id, partitions, created_ms: now_ms, configs: configs.clone() };
            t.put(key, topic.encode());
            if in_one {
                for p in 0..partitions {
                    t.put(partition::key(id, p), PartitionState::default().encode());
                }
            }
            change::mark(t, &self.writer);
            Ok(topic)
        });
        if let (Err(CatalogError::TopicExists(_)), Some(id)) = (&created, early_id) {
            self.delete_topic_keys(id, 0).await?;
        }
        created
    }

    /// Deletes every per-partition key of a topic id, a budget's worth per
    /// transaction, noting the objects its index pointed into for
    /// collection at `gc_due_ms`. Safe to repeat: ids are never reused.
    async fn delete_topic_keys(&self, topic_id: u64, gc_due_ms: i64) -> Result<(), CatalogError> {
        let page = self.budget().min(4096);
        for kind in [keys::PARTITION, keys::LEASE, keys::SEGMENT, keys::PRODUCER] {
            // An index entry's delete may come with a note of its object.
            let page = if kind == keys::SEGMENT { (page / 2).max(1) } else { page };
            let prefix = keys::topic_prefix(kind, topic_id);
            let end = keys::prefix_end(&prefix);
            loop {
                let done = transact!(self, |t| {
                    let rows = t.scan(&prefix, &end, page, false).await?;
                    let done = rows.len() < page;
                    let mut objects = Vec::new();
                    for (k, v) in rows {
                        if kind == keys::SEGMENT {
                            objects.push(Segment::decode(&v).map_err(|e| corrupt(&k, e))?.object);
                        }
                        t.delete(k);
                    }
                    super::gc::note(t, objects.iter().map(String::as_str), gc_due_ms);
                    Ok(done)
                })?;
                if done {
                    break;
                }
            }
        }
        // Committed offsets are keyed by group: find the topic's among them.
        let offsets = read_only!(self, |t| super::offset::of_topic(t, topic_id).await)?;
        for chunk in offsets.chunks(page) {
            transact!(self, |t| {
                for k in chunk {
                    t.delete(k.clone());
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Deletes a topic and its partitions' state, leases, segment index and
    /// producer states. The objects its index pointed into are noted for
    /// collection at `gc_due_ms` (see [`super::gc`]).
    ///
    /// The topic and its partitions' state go in one transaction when they
    /// fit in one, so no agent commits to a partition of a deleted topic; the
    /// rest follows in transactions of their own.
    pub async fn delete_topic(&self, name: &str, gc_due_ms: i64) -> Result<Topic, CatalogError> {
        let topic = transact!(self, |t| {
            let key = key(name);
            let Some(topic) = read(t, &key, true, |v| Topic::decode(name, v)).await? else {
                return Err(CatalogError::UnknownTopic(name.into()));
            };
            t.delete(key);
            if (topic.partitions as usize) + 2 < self.budget() {
                for p in 0..topic.partitions {
                    t.delete(partition::key(topic.id, p));
                }
            }
            change::mark(t, &self.writer);
            Ok(topic)
        })?;
        self.delete_topic_keys(topic.id, gc_due_ms).await?;
        Ok(topic)
    }

    /// Sets and removes config overrides of a topic; the others stay.
    /// Returns the topic as it now is.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<Topic, CatalogError> {
        transact!(self, |t| {
            let key = key(name);
            let Some(mut topic) = read(t, &key, true, |v| Topic::decode(name, v)).await? else {
                return Err(CatalogError::UnknownTopic(name.into()));
            };
            let mut configs: std::collections::BTreeMap<String, String> = topic.configs.into_iter().collect();
            for k in delete {
                configs.remove(k);
            }
            for (k, v) in set {
                configs.insert(k.clone(), v.clone());
            }
            topic.configs = configs.into_iter().collect();
            t.put(key, topic.encode());
            change::mark(t, &self.writer);
            Ok(topic)
        })
    }

    pub async fn topic(&self, name: &str) -> Result<Option<Topic>, CatalogError> {
        read_only!(self, |t| read(t, &key(name), false, |v| Topic::decode(name, v)).await)
    }

    pub async fn list_topics(&self) -> Result<Vec<Topic>, CatalogError> {
        read_only!(self, |t| list(t).await)
    }
}

/// Every topic, by name.
pub(crate) async fn list(t: &mut super::Txn) -> Result<Vec<Topic>, CatalogError> {
    scan_prefix(t, &[keys::TOPIC])
        .await?
        .into_iter()
        .map(|(k, v)| {
            let name = name_from_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("topic name")))?;
            Topic::decode(name, &v).map_err(|e| corrupt(&k, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    #[tokio::test]
    async fn topics_are_created_listed_and_deleted() {
        let (_d, c) = catalog().await;
        let a = c.create_topic("a", 3, &[], 1).await.unwrap();
        assert!(matches!(c.create_topic("a", 1, &[], 2).await, Err(CatalogError::TopicExists(_))));
        let b = c.create_topic("b", 1, &[], 3).await.unwrap();
        assert_ne!(a.id, b.id);
        let names: Vec<_> = c.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(c.partitions(&a).await.unwrap().len(), 3);
        c.delete_topic("a", 0).await.unwrap();
        assert!(matches!(c.delete_topic("a", 0).await, Err(CatalogError::UnknownTopic(_))));
        assert_eq!(c.topic("a").await.unwrap(), None);
        let again = c.create_topic("a", 1, &[], 4).await.unwrap();
        assert!(again.id > b.id, "ids are never reused");
    }

    #[tokio::test]
    async fn configs_are_kept_and_altered() {
        let (_d, c) = catalog().await;
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        c.create_topic("a", 1, &[kv("segment.bytes", "100"), kv("retention.ms", "5")], 1).await.unwrap();
        let a = c.topic("a").await.unwrap().unwrap();
        assert_eq!(a.configs, vec![kv("retention.ms", "5"), kv("segment.bytes", "100")]);
        let changed = c.alter_topic_configs("a", &[kv("retention.ms", "7")], &["segment.bytes".into()]).await.unwrap();
        assert_eq!(changed.configs, vec![kv("retention.ms", "7")]);
        assert_eq!(c.topic("a").await.unwrap().unwrap(), changed);
        assert!(matches!(c.alter_topic_configs("b", &[], &[]).await, Err(CatalogError::UnknownTopic(_))));
    }

    #[test]
    fn round_trips() {
        let mut t =
            Topic { name: "logs".into(), id: 3, partitions: 12, created_ms: 1_700_000_000_000, configs: vec![] };
        assert_eq!(Topic::decode("logs", &t.encode()).unwrap(), t);
        t.configs = vec![("retention.ms".into(), "1000".into()), ("segment.bytes".into(), "1048576".into())];
        assert_eq!(Topic::decode("logs", &t.encode()).unwrap(), t);
        // A record written before topics had configs.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&3u64.to_be_bytes());
        v1.extend_from_slice(&12u32.to_be_bytes());
        v1.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(Topic::decode("logs", &v1).unwrap().configs, vec![]);
        assert_eq!(name_from_key(&key("logs")), Some("logs"));
        assert!(Topic::decode("logs", &t.encode()[..5]).is_err());
    }
}
