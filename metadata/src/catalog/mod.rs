//! The typed catalog over a [`MetaStore`]: every read and write of silt's
//! metadata goes through here, so the key layout lives in one place.
//!
//! - [`keys`]: the key-kind ordinals and shared key helpers.
//! - [`topic`], [`partition`], [`segment`], [`lease`], [`agent`], [`producer`]: one module per key kind.

pub mod agent;
pub mod keys;
pub mod lease;
pub mod partition;
pub mod producer;
pub mod segment;
pub mod topic;

use std::sync::Arc;

use crate::codec::CodecError;
use crate::store::{MetaStore, Transaction};
use crate::{CatalogError, MetaError};
pub use agent::Registration;
pub use lease::Lease;
pub use partition::PartitionState;
pub use producer::{BatchMeta, ProducerState};
pub use segment::Segment;
pub use topic::Topic;

/// How often an operation is retried after an optimistic conflict.
const MAX_ATTEMPTS: usize = 32;
const TOPIC_ID_COUNTER: &[u8] = b"topic-id";
const PRODUCER_ID_COUNTER: &[u8] = b"producer-id";

/// What one flush commits for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushEntry {
    pub topic_id: u64,
    pub partition: u32,
    /// The lease epoch the data was written under.
    pub epoch: u64,
    pub segment: Segment,
    /// The state of every idempotent producer with batches in the segment,
    /// as of the segment's end.
    pub producers: Vec<(i64, ProducerState)>,
    /// Producers idle past their expiry, to forget.
    pub expired: Vec<i64>,
}

/// The outcome of a flush commit, per partition that did not commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Partitions whose topic was deleted; their entries were dropped.
    pub deleted: Vec<(u64, u32)>,
    /// Partitions whose lease the committer no longer holds; not committed.
    pub fenced: Vec<(u64, u32)>,
}

#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn MetaStore>,
}

fn corrupt(key: &[u8], source: CodecError) -> CatalogError {
    CatalogError::Corrupt { key: format!("{key:02x?}"), source }
}

impl Catalog {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Catalog { store }
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, CatalogError> {
        Ok(self.store.begin().await?)
    }

    /// The most keys one transaction may touch (see [`MetaStore::max_txn_keys`]).
    fn budget(&self) -> usize {
        self.store.max_txn_keys().max(8)
    }

    /// Creates a topic with `partitions` partitions, all empty. The topic
    /// appears at once, with all its partitions: when they are too many for
    /// one transaction, they are written first, under a fresh topic id, and
    /// the topic last.
    pub async fn create_topic(&self, name: &str, partitions: u32, now_ms: i64) -> Result<Topic, CatalogError> {
        let in_one = partitions as usize + 2 <= self.budget();
        let mut early_id = None;
        if !in_one {
            let id = self.next_id(TOPIC_ID_COUNTER).await?;
            let keys: Vec<Vec<u8>> = (0..partitions).map(|p| partition::key(id, p)).collect();
            for chunk in keys.chunks(self.budget()) {
                let mut t = self.begin().await?;
                for k in chunk {
                    t.put(k.clone(), PartitionState::default().encode());
                }
                t.commit().await?;
            }
            early_id = Some(id);
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let key = topic::key(name);
            if t.get_for_update(&key).await?.is_some() {
                if let Some(id) = early_id {
                    self.delete_topic_keys(id).await?;
                }
                return Err(CatalogError::TopicExists(name.into()));
            }
            let id = match early_id {
                Some(id) => id,
                None => next_counter(&mut t, TOPIC_ID_COUNTER).await?,
            };
            let topic = Topic { name: name.into(), id, partitions, created_ms: now_ms };
            t.put(key, topic.encode());
            if in_one {
                for p in 0..partitions {
                    t.put(partition::key(id, p), PartitionState::default().encode());
                }
            }
            match t.commit().await {
                Ok(()) => return Ok(topic),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// The next value of a counter, in a transaction of its own.
    async fn next_id(&self, name: &[u8]) -> Result<u64, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let id = next_counter(&mut t, name).await?;
            match t.commit().await {
                Ok(()) => return Ok(id),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// Deletes every per-partition key of a topic id, a budget's worth per
    /// transaction. Safe to repeat: ids are never reused.
    async fn delete_topic_keys(&self, topic_id: u64) -> Result<(), CatalogError> {
        let page = self.budget().min(4096);
        for kind in [keys::PARTITION, keys::LEASE, keys::SEGMENT, keys::PRODUCER] {
            let prefix = keys::topic_prefix(kind, topic_id);
            let end = keys::prefix_end(&prefix);
            loop {
                let mut t = self.begin().await?;
                let rows = t.scan(&prefix, &end, page, false).await?;
                let done = rows.len() < page;
                for (k, _) in rows {
                    t.delete(k);
                }
                t.commit().await?;
                if done {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Deletes a topic and its partitions' state, leases, segment index and
    /// producer states. The objects it referenced are left to object garbage
    /// collection.
    ///
    /// The topic and its partitions' state go in one transaction when they
    /// fit in one, so no agent commits to a partition of a deleted topic; the
    /// rest follows in transactions of their own.
    pub async fn delete_topic(&self, name: &str) -> Result<Topic, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let key = topic::key(name);
            let Some(raw) = t.get_for_update(&key).await? else {
                return Err(CatalogError::UnknownTopic(name.into()));
            };
            let topic = Topic::decode(name, &raw).map_err(|e| corrupt(&key, e))?;
            t.delete(key);
            if (topic.partitions as usize) < self.budget() {
                for p in 0..topic.partitions {
                    t.delete(partition::key(topic.id, p));
                }
            }
            match t.commit().await {
                Ok(()) => {
                    self.delete_topic_keys(topic.id).await?;
                    return Ok(topic);
                }
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    pub async fn topic(&self, name: &str) -> Result<Option<Topic>, CatalogError> {
        let key = topic::key(name);
        match self.begin().await?.get(&key).await? {
            None => Ok(None),
            Some(raw) => Topic::decode(name, &raw).map(Some).map_err(|e| corrupt(&key, e)),
        }
    }

    pub async fn list_topics(&self) -> Result<Vec<Topic>, CatalogError> {
        let mut t = self.begin().await?;
        let rows = t.scan(&[keys::TOPIC], &[keys::TOPIC + 1], usize::MAX, false).await?;
        rows.into_iter()
            .map(|(k, v)| {
                let name = topic::name_from_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("topic name")))?;
                Topic::decode(name, &v).map_err(|e| corrupt(&k, e))
            })
            .collect()
    }

    /// State and lease of every partition of a topic, in partition order.
    pub async fn partitions(&self, topic: &Topic) -> Result<Vec<(PartitionState, Option<Lease>)>, CatalogError> {
        let mut t = self.begin().await?;
        let mut out = Vec::with_capacity(topic.partitions as usize);
        for p in 0..topic.partitions {
            let Some(state) = read_state(&mut t, topic.id, p, false).await? else {
                return Err(CatalogError::UnknownTopic(topic.name.clone()));
            };
            out.push((state, read_lease(&mut t, topic.id, p, false).await?));
        }
        Ok(out)
    }

    /// Takes the lease on a partition for `owner`, bumping its epoch, when it
    /// is free, expired, or already `owner`'s. Returns the new lease.
    pub async fn acquire_lease(
        &self,
        topic_id: u64,
        partition: u32,
        owner: &str,
        address: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(Lease, PartitionState), CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let Some(state) = read_state(&mut t, topic_id, partition, true).await? else {
                return Err(CatalogError::UnknownPartition { topic: format!("id {topic_id}"), partition });
            };
            let current = read_lease(&mut t, topic_id, partition, true).await?;
            let lkey = lease::key(topic_id, partition);
            if let Some(l) = &current {
                if l.owner != owner && l.is_live(now_ms) {
                    return Err(CatalogError::LeaseHeld {
                        topic_id,
                        partition,
                        owner: l.owner.clone(),
                        epoch: l.epoch,
                    });
                }
            }
            let epoch = current.map_or(1, |l| l.epoch + 1);
            let lease = Lease {
                owner: owner.into(),
                address: address.into(),
                epoch,
                expires_ms: now_ms.saturating_add(ttl_ms),
            };
            t.put(lkey, lease.encode());
            match t.commit().await {
                Ok(()) => return Ok((lease, state)),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// Records (or refreshes) an agent's registration.
    pub async fn heartbeat(&self, id: &str, address: &str, started_ms: i64, now_ms: i64) -> Result<(), CatalogError> {
        let reg = Registration { id: id.into(), address: address.into(), started_ms, heartbeat_ms: now_ms };
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            t.put(agent::key(id), reg.encode());
            match t.commit().await {
                Ok(()) => return Ok(()),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// Removes an agent's registration (it is stopping).
    pub async fn deregister(&self, id: &str) -> Result<(), CatalogError> {
        let mut t = self.begin().await?;
        t.delete(agent::key(id));
        Ok(t.commit().await?)
    }

    /// Every registered agent, live or not, by id.
    pub async fn agents(&self) -> Result<Vec<Registration>, CatalogError> {
        let mut t = self.begin().await?;
        let rows = t.scan(&[keys::AGENT], &[keys::AGENT + 1], usize::MAX, false).await?;
        rows.into_iter()
            .map(|(k, v)| {
                let id = agent::id_from_key(&k).ok_or_else(|| corrupt(&k, CodecError::Invalid("agent id")))?;
                Registration::decode(id, &v).map_err(|e| corrupt(&k, e))
            })
            .collect()
    }

    /// Extends the leases `owner` holds, each at the epoch given. Returns the
    /// partitions whose lease it no longer holds (taken over, or deleted).
    pub async fn renew_leases(
        &self,
        owner: &str,
        held: &[(u64, u32, u64)],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<(u64, u32)>, CatalogError> {
        let mut lost = Vec::new();
        for chunk in held.chunks(self.budget()) {
            lost.extend(self.renew_some_leases(owner, chunk, now_ms, ttl_ms).await?);
        }
        Ok(lost)
    }

    async fn renew_some_leases(
        &self,
        owner: &str,
        held: &[(u64, u32, u64)],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<(u64, u32)>, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let mut lost = Vec::new();
            for &(topic_id, partition, epoch) in held {
                match read_lease(&mut t, topic_id, partition, true).await? {
                    Some(mut l) if l.owner == owner && l.epoch == epoch => {
                        l.expires_ms = now_ms.saturating_add(ttl_ms);
                        t.put(lease::key(topic_id, partition), l.encode());
                    }
                    _ => lost.push((topic_id, partition)),
                }
            }
            match t.commit().await {
                Ok(()) => return Ok(lost),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// Gives up a lease `owner` holds at `epoch`, so another agent can take it
    /// at once. The epoch stays: the next owner's is higher.
    pub async fn release_lease(
        &self,
        topic_id: u64,
        partition: u32,
        owner: &str,
        epoch: u64,
    ) -> Result<bool, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let Some(mut l) = read_lease(&mut t, topic_id, partition, true).await? else { return Ok(false) };
            if l.owner != owner || l.epoch != epoch {
                return Ok(false);
            }
            l.expires_ms = 0;
            t.put(lease::key(topic_id, partition), l.encode());
            match t.commit().await {
                Ok(()) => return Ok(true),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }

    /// State and lease of one partition.
    pub async fn partition(
        &self,
        topic_id: u64,
        partition: u32,
    ) -> Result<Option<(PartitionState, Option<Lease>)>, CatalogError> {
        let mut t = self.begin().await?;
        let Some(state) = read_state(&mut t, topic_id, partition, false).await? else { return Ok(None) };
        Ok(Some((state, read_lease(&mut t, topic_id, partition, false).await?)))
    }

    /// Up to `limit` index entries of a partition, in offset order, starting
    /// with the one that holds `offset`.
    pub async fn segments(
        &self,
        topic_id: u64,
        partition: u32,
        offset: i64,
        limit: usize,
    ) -> Result<Vec<Segment>, CatalogError> {
        let mut t = self.begin().await?;
        let prefix = segment::prefix(topic_id, partition);
        let rows = t.scan(&segment::key(topic_id, partition, offset), &keys::prefix_end(&prefix), limit, false).await?;
        rows.into_iter().map(|(k, v)| Segment::decode(&v).map_err(|e| corrupt(&k, e))).collect()
    }

    /// Records one flush: for every entry, in one transaction, checks that
    /// `owner` still holds the partition's lease at the entry's epoch, adds the
    /// segment to the index and advances the high watermark past it.
    /// Partitions that are fenced or deleted are reported and left out.
    ///
    /// Entries are committed in order, as many per transaction as the
    /// store's budget allows (each partition's own keys always together).
    pub async fn commit_flush(&self, owner: &str, entries: &[FlushEntry]) -> Result<FlushOutcome, CatalogError> {
        let mut outcome = FlushOutcome::default();
        let mut rest = entries;
        while !rest.is_empty() {
            let mut keys = 0;
            let n = rest
                .iter()
                .take_while(|e| {
                    keys += 3 + e.producers.len() + e.expired.len();
                    keys <= self.budget()
                })
                .count()
                .max(1);
            let part = self.commit_flush_in_one(owner, &rest[..n]).await?;
            outcome.deleted.extend(part.deleted);
            outcome.fenced.extend(part.fenced);
            rest = &rest[n..];
        }
        Ok(outcome)
    }

    async fn commit_flush_in_one(&self, owner: &str, entries: &[FlushEntry]) -> Result<FlushOutcome, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut t = self.begin().await?;
            let mut outcome = FlushOutcome::default();
            for e in entries {
                let id = (e.topic_id, e.partition);
                if outcome.deleted.contains(&id) || outcome.fenced.contains(&id) {
                    continue;
                }
                let lease = read_lease(&mut t, e.topic_id, e.partition, true).await?;
                let skey = partition::key(e.topic_id, e.partition);
                let Some(mut state) = read_state(&mut t, e.topic_id, e.partition, true).await? else {
                    outcome.deleted.push(id);
                    continue;
                };
                if !matches!(&lease, Some(l) if l.owner == owner && l.epoch == e.epoch) {
                    outcome.fenced.push(id);
                    continue;
                }
                if e.segment.last_offset < state.high_watermark {
                    // A commit that went through although its caller saw an
                    // error (a timeout, a lost connection): already done.
                    let key = segment::key(e.topic_id, e.partition, e.segment.last_offset);
                    if t.get(&key).await?.is_some_and(|raw| raw[..] == e.segment.encode()[..]) {
                        continue;
                    }
                }
                if e.segment.base_offset != state.high_watermark {
                    // The owner assigns offsets contiguously; anything else is a bug
                    // that must not reach the index.
                    return Err(CatalogError::Corrupt {
                        key: format!("{skey:02x?}"),
                        source: CodecError::Invalid("segment does not start at the high watermark"),
                    });
                }
                state.high_watermark = e.segment.last_offset + 1;
                t.put(segment::key(e.topic_id, e.partition, e.segment.last_offset), e.segment.encode());
                t.put(skey, state.encode());
                for (id, p) in &e.producers {
                    t.put(producer::key(e.topic_id, e.partition, *id), p.encode());
                }
                for id in &e.expired {
                    t.delete(producer::key(e.topic_id, e.partition, *id));
                }
            }
            match t.commit().await {
                Ok(()) => return Ok(outcome),
                Err(MetaError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetaError::Conflict.into())
    }
}

impl Catalog {
    /// A producer id never handed out before.
    pub async fn allocate_producer_id(&self) -> Result<i64, CatalogError> {
        let id = self.next_id(PRODUCER_ID_COUNTER).await?;
        i64::try_from(id).map_err(|_| CatalogError::Corrupt {
            key: "producer-id counter".into(),
            source: CodecError::Invalid("producer id past i64::MAX"),
        })
    }

    /// Every idempotent producer a partition remembers, by producer id.
    pub async fn producers(&self, topic_id: u64, partition: u32) -> Result<Vec<(i64, ProducerState)>, CatalogError> {
        let mut t = self.begin().await?;
        let prefix = producer::prefix(topic_id, partition);
        let end = keys::prefix_end(&prefix);
        let mut from = prefix;
        let mut out = Vec::new();
        loop {
            let page = t.scan(&from, &end, 1024, false).await?;
            let full = page.len() == 1024;
            if let Some((last, _)) = page.last() {
                from = last.clone();
                from.push(0);
            }
            for (k, v) in page {
                let id = producer::producer_id(&k).map_err(|e| corrupt(&k, e))?;
                out.push((id, ProducerState::decode(&v).map_err(|e| corrupt(&k, e))?));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Forgets producers of a partition (those idle past their expiry).
    pub async fn forget_producers(&self, topic_id: u64, partition: u32, ids: &[i64]) -> Result<(), CatalogError> {
        for chunk in ids.chunks(self.budget()) {
            let mut t = self.begin().await?;
            for id in chunk {
                t.delete(producer::key(topic_id, partition, *id));
            }
            t.commit().await?;
        }
        Ok(())
    }
}

/// Reads a key and decodes its value; `for_update` makes the commit fail
/// if another transaction changes the key first.
async fn read<T>(
    t: &mut Box<dyn Transaction>,
    key: &[u8],
    for_update: bool,
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<Option<T>, CatalogError> {
    let raw = if for_update { t.get_for_update(key).await? } else { t.get(key).await? };
    raw.map(|raw| decode(&raw).map_err(|e| corrupt(key, e))).transpose()
}

async fn read_lease(
    t: &mut Box<dyn Transaction>,
    topic_id: u64,
    partition: u32,
    for_update: bool,
) -> Result<Option<Lease>, CatalogError> {
    read(t, &lease::key(topic_id, partition), for_update, Lease::decode).await
}

async fn read_state(
    t: &mut Box<dyn Transaction>,
    topic_id: u64,
    partition: u32,
    for_update: bool,
) -> Result<Option<PartitionState>, CatalogError> {
    read(t, &partition::key(topic_id, partition), for_update, PartitionState::decode).await
}

async fn next_counter(t: &mut Box<dyn Transaction>, name: &[u8]) -> Result<u64, CatalogError> {
    let mut key = vec![keys::COUNTER];
    key.extend_from_slice(name);
    let current = match t.get_for_update(&key).await? {
        Some(raw) => u64::from_be_bytes(raw[..].try_into().map_err(|_| corrupt(&key, CodecError::Invalid("counter")))?),
        None => 0,
    };
    let next = current + 1;
    t.put(key, next.to_be_bytes().to_vec());
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    async fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("m.db")).await.unwrap();
        (dir, Catalog::new(Arc::new(store)))
    }

    fn seg(base: i64, last: i64) -> Segment {
        Segment {
            base_offset: base,
            last_offset: last,
            object: format!("o/{base}"),
            start: 0,
            len: 10,
            max_timestamp: 0,
        }
    }

    #[tokio::test]
    async fn topics_are_created_listed_and_deleted() {
        let (_d, c) = catalog().await;
        let a = c.create_topic("a", 3, 1).await.unwrap();
        assert!(matches!(c.create_topic("a", 1, 2).await, Err(CatalogError::TopicExists(_))));
        let b = c.create_topic("b", 1, 3).await.unwrap();
        assert_ne!(a.id, b.id);
        let names: Vec<_> = c.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(c.partitions(&a).await.unwrap().len(), 3);
        c.delete_topic("a").await.unwrap();
        assert!(matches!(c.delete_topic("a").await, Err(CatalogError::UnknownTopic(_))));
        assert_eq!(c.topic("a").await.unwrap(), None);
        let again = c.create_topic("a", 1, 4).await.unwrap();
        assert!(again.id > b.id, "ids are never reused");
    }

    #[tokio::test]
    async fn flush_commits_advance_the_watermark_and_index() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 2, 0).await.unwrap();
        let (lease, _) = c.acquire_lease(t.id, 0, "agent-1", "addr", 0, 10_000).await.unwrap();
        let out = c
            .commit_flush(
                "agent-1",
                &[
                    FlushEntry {
                        topic_id: t.id,
                        partition: 0,
                        epoch: lease.epoch,
                        segment: seg(0, 9),
                        producers: vec![(7, producer_state(0, 9, 0))],
                        expired: vec![],
                    },
                    FlushEntry {
                        topic_id: t.id,
                        partition: 0,
                        epoch: lease.epoch,
                        segment: seg(10, 14),
                        producers: vec![(7, producer_state(10, 14, 10)), (8, producer_state(0, 0, 12))],
                        expired: vec![],
                    },
                ],
            )
            .await
            .unwrap();
        assert_eq!(out, FlushOutcome::default());
        let states = c.partitions(&t).await.unwrap();
        assert_eq!(states[0].0.high_watermark, 15);
        assert_eq!(states[1].0.high_watermark, 0);
        assert_eq!(c.segments(t.id, 0, 0, 10).await.unwrap(), vec![seg(0, 9), seg(10, 14)]);
        assert_eq!(c.segments(t.id, 0, 9, 10).await.unwrap(), vec![seg(0, 9), seg(10, 14)]);
        assert_eq!(c.segments(t.id, 0, 10, 10).await.unwrap(), vec![seg(10, 14)]);
        assert!(c.segments(t.id, 0, 15, 10).await.unwrap().is_empty());
        // Each producer's latest state, by id; none for the other partition.
        assert_eq!(
            c.producers(t.id, 0).await.unwrap(),
            vec![(7, producer_state(10, 14, 10)), (8, producer_state(0, 0, 12))]
        );
        assert!(c.producers(t.id, 1).await.unwrap().is_empty());
        c.forget_producers(t.id, 0, &[7]).await.unwrap();
        assert_eq!(c.producers(t.id, 0).await.unwrap(), vec![(8, producer_state(0, 0, 12))]);
        // A flush commit forgets expired producers too.
        let last = FlushEntry {
            topic_id: t.id,
            partition: 0,
            epoch: lease.epoch,
            segment: seg(15, 15),
            producers: vec![],
            expired: vec![8],
        };
        c.commit_flush("agent-1", &[last]).await.unwrap();
        assert!(c.producers(t.id, 0).await.unwrap().is_empty());
        c.delete_topic("t").await.unwrap();
        assert!(c.producers(t.id, 0).await.unwrap().is_empty(), "deleting the topic forgets its producers");
    }

    fn producer_state(base_sequence: i32, last_sequence: i32, base_offset: i64) -> ProducerState {
        let last_offset = base_offset + i64::from(last_sequence - base_sequence);
        ProducerState {
            epoch: 0,
            updated_ms: 5,
            batches: vec![BatchMeta { base_sequence, last_sequence, base_offset, last_offset }],
        }
    }

    #[tokio::test]
    async fn a_flush_committed_twice_is_committed_once() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, 0).await.unwrap();
        let (lease, _) = c.acquire_lease(t.id, 0, "a", "x", 0, 10_000).await.unwrap();
        let entry = |s| FlushEntry {
            topic_id: t.id,
            partition: 0,
            epoch: lease.epoch,
            segment: s,
            producers: vec![(7, producer_state(0, 4, 0))],
            expired: vec![],
        };
        // The caller of the first commit saw an error and tries again.
        c.commit_flush("a", &[entry(seg(0, 4))]).await.unwrap();
        assert_eq!(c.commit_flush("a", &[entry(seg(0, 4))]).await.unwrap(), FlushOutcome::default());
        assert_eq!(c.segments(t.id, 0, 0, 10).await.unwrap(), vec![seg(0, 4)]);
        assert_eq!(c.partitions(&t).await.unwrap()[0].0.high_watermark, 5);
        // A different segment over committed offsets is still refused.
        let other = Segment { object: "elsewhere".into(), ..seg(0, 4) };
        assert!(matches!(c.commit_flush("a", &[entry(other)]).await, Err(CatalogError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn the_catalog_handles_wide_topics() {
        let (_d, c) = catalog().await;
        crate::testing::catalog_at_scale(c.store().clone()).await;
    }

    #[tokio::test]
    async fn producer_ids_are_never_reused() {
        let (_d, c) = catalog().await;
        let a = c.allocate_producer_id().await.unwrap();
        let b = c.allocate_producer_id().await.unwrap();
        assert!(a > 0 && b > a);
    }

    #[tokio::test]
    async fn a_stale_epoch_is_fenced_and_writes_nothing() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, 0).await.unwrap();
        let (old, _) = c.acquire_lease(t.id, 0, "agent-1", "a1", 0, 100).await.unwrap();
        assert!(matches!(
            c.acquire_lease(t.id, 0, "agent-2", "a2", 50, 100).await,
            Err(CatalogError::LeaseHeld { .. })
        ));
        let (new, _) = c.acquire_lease(t.id, 0, "agent-2", "a2", 200, 100).await.unwrap();
        assert_eq!(new.epoch, old.epoch + 1);
        let entry = FlushEntry {
            topic_id: t.id,
            partition: 0,
            epoch: old.epoch,
            segment: seg(0, 4),
            producers: vec![(3, producer_state(0, 4, 0))],
            expired: vec![],
        };
        let out = c.commit_flush("agent-1", &[entry]).await.unwrap();
        assert_eq!(out.fenced, vec![(t.id, 0)]);
        assert!(c.segments(t.id, 0, 0, 10).await.unwrap().is_empty());
        assert_eq!(c.partitions(&t).await.unwrap()[0].0.high_watermark, 0);
        assert!(c.producers(t.id, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn leases_renew_release_and_are_lost_to_a_takeover() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 2, 0).await.unwrap();
        let (l0, _) = c.acquire_lease(t.id, 0, "a", "x", 0, 100).await.unwrap();
        let (l1, _) = c.acquire_lease(t.id, 1, "a", "x", 0, 100).await.unwrap();
        let held = [(t.id, 0, l0.epoch), (t.id, 1, l1.epoch)];
        assert!(c.renew_leases("a", &held, 90, 100).await.unwrap().is_empty());
        // Renewed to 190: at 150 another agent cannot take it.
        assert!(matches!(c.acquire_lease(t.id, 0, "b", "y", 150, 100).await, Err(CatalogError::LeaseHeld { .. })));
        // Released: taken at once, at a higher epoch.
        assert!(c.release_lease(t.id, 1, "a", l1.epoch).await.unwrap());
        let (b1, _) = c.acquire_lease(t.id, 1, "b", "y", 150, 100).await.unwrap();
        assert_eq!(b1.epoch, l1.epoch + 1);
        assert_eq!(c.renew_leases("a", &held, 160, 100).await.unwrap(), vec![(t.id, 1)]);
        assert!(!c.release_lease(t.id, 1, "a", l1.epoch).await.unwrap(), "a cannot release what it lost");
    }

    #[tokio::test]
    async fn agents_register_and_deregister() {
        let (_d, c) = catalog().await;
        c.heartbeat("b", "addr-b", 1, 5).await.unwrap();
        c.heartbeat("a", "addr-a", 1, 6).await.unwrap();
        c.heartbeat("a", "addr-a", 1, 9).await.unwrap();
        let agents = c.agents().await.unwrap();
        assert_eq!(
            agents.iter().map(|r| (r.id.as_str(), r.heartbeat_ms)).collect::<Vec<_>>(),
            vec![("a", 9), ("b", 5)]
        );
        c.deregister("a").await.unwrap();
        assert_eq!(c.agents().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn flushes_for_a_deleted_topic_are_dropped() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, 0).await.unwrap();
        let (l, _) = c.acquire_lease(t.id, 0, "a", "x", 0, 100).await.unwrap();
        c.delete_topic("t").await.unwrap();
        let out = c
            .commit_flush(
                "a",
                &[FlushEntry {
                    topic_id: t.id,
                    partition: 0,
                    epoch: l.epoch,
                    segment: seg(0, 0),
                    producers: vec![],
                    expired: vec![],
                }],
            )
            .await
            .unwrap();
        assert_eq!(out.deleted, vec![(t.id, 0)]);
        assert!(c.segments(t.id, 0, 0, 10).await.unwrap().is_empty());
    }
}
