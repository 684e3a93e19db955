//! The segment index: `0x03 | topic id | partition | last offset -> Segment`.
//!
//! Keyed by the last offset a segment holds, so the first key at or after
//! `offset` is the segment that contains it.

use crate::codec::{ordered_i64, CodecError, Reader, Writer};
use crate::CatalogError;
use bytes::{BufMut, Bytes};

use super::{
    corrupt, keys, lease, partition, producer, Catalog, Lease, PartitionId, PartitionState, ProducerState, Txn,
};

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

impl FlushEntry {
    /// Keys the entry's commit reads for update and writes.
    fn keys(&self) -> usize {
        3 + self.producers.len() + self.expired.len()
    }
}

/// The outcome of a flush commit, per partition that did not commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Partitions whose topic was deleted; their entries were dropped.
    pub deleted: Vec<PartitionId>,
    /// Partitions whose lease the committer no longer holds; not committed.
    pub fenced: Vec<PartitionId>,
}

/// Where a run of one partition's batches lives in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base_offset: i64,
    pub last_offset: i64,
    pub object: String,
    /// Byte range of the batches inside the object.
    pub start: u64,
    pub len: u64,
    pub max_timestamp: i64,
}

pub fn prefix(topic_id: u64, partition: u32) -> Vec<u8> {
    keys::partition_prefix(keys::SEGMENT, topic_id, partition)
}

pub fn key(topic_id: u64, partition: u32, last_offset: i64) -> Vec<u8> {
    let mut key = prefix(topic_id, partition);
    key.extend_from_slice(&ordered_i64(last_offset));
    key
}

impl Segment {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + self.object.len());
        v.put_u8(1);
        v.put_i64(self.base_offset);
        v.put_i64(self.last_offset);
        v.put_str(&self.object);
        v.put_u64(self.start);
        v.put_u64(self.len);
        v.put_i64(self.max_timestamp);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let s = Segment {
            base_offset: r.i64("base offset")?,
            last_offset: r.i64("last offset")?,
            object: r.string("object")?,
            start: r.u64("start")?,
            len: r.u64("len")?,
            max_timestamp: r.i64("max timestamp")?,
        };
        r.finish()?;
        Ok(s)
    }
}

impl Catalog {
    /// Up to `limit` index entries of a partition, in offset order, starting
    /// with the one that holds `offset`.
    pub async fn segments(
        &self,
        topic_id: u64,
        partition: u32,
        offset: i64,
        limit: usize,
    ) -> Result<Vec<Segment>, CatalogError> {
        read_only!(self, |t| {
            let end = keys::prefix_end(&prefix(topic_id, partition));
            let rows = t.scan(&key(topic_id, partition, offset), &end, limit, false).await?;
            rows.into_iter().map(|(k, v)| Segment::decode(&v).map_err(|e| corrupt(&k, e))).collect()
        })
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
                    keys += e.keys();
                    keys <= self.budget()
                })
                .count()
                .max(1);
            let part = transact!(self, |t| commit_some(t, owner, &rest[..n]).await)?;
            outcome.deleted.extend(part.deleted);
            outcome.fenced.extend(part.fenced);
            rest = &rest[n..];
        }
        Ok(outcome)
    }
}

/// The outcome of a [`Catalog::trim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trimmed {
    /// The log now starts at `log_start`; `segments` index entries went,
    /// and the objects they pointed into were noted for collection.
    Done { log_start: i64, segments: usize },
    /// The caller no longer holds the partition's lease at its epoch.
    Fenced,
    /// The topic is gone.
    Deleted,
}

impl Catalog {
    /// Advances a partition's log start to `to` (at most its high
    /// watermark), removing the index entries that end before it and noting
    /// the objects they pointed into for collection at `gc_due_ms`. Fenced
    /// like a flush commit: only `owner`, holding the lease at `epoch`,
    /// trims. Many entries take several transactions, each leaving a whole
    /// log that starts where its last removed entry ended.
    pub async fn trim(
        &self,
        owner: &str,
        epoch: u64,
        (topic_id, partition): PartitionId,
        to: i64,
        gc_due_ms: i64,
    ) -> Result<Trimmed, CatalogError> {
        // Per entry: its delete and at most one note; then the state.
        let page = (self.budget().saturating_sub(3) / 2).clamp(1, 4096);
        let mut segments = 0;
        loop {
            let step = transact!(self, |t| {
                let keys = [lease::key(topic_id, partition), partition::key(topic_id, partition)];
                let raw = t.batch_get_for_update(&keys).await?;
                let lease = raw[0].as_ref().map(|v| Lease::decode(v).map_err(|e| corrupt(&keys[0], e))).transpose()?;
                let Some(mut state) =
                    raw[1].as_ref().map(|v| PartitionState::decode(v).map_err(|e| corrupt(&keys[1], e))).transpose()?
                else {
                    return Ok(Err(Trimmed::Deleted));
                };
                if !matches!(lease, Some(l) if l.owner == owner && l.epoch == epoch) {
                    return Ok(Err(Trimmed::Fenced));
                }
                let to = to.min(state.high_watermark);
                if state.log_start >= to {
                    return Ok(Err(Trimmed::Done { log_start: state.log_start, segments: 0 }));
                }
                // Entries ending before `to`: keyed by last offset, so a range.
                let rows = t
                    .scan(&key(topic_id, partition, state.log_start), &key(topic_id, partition, to), page, false)
                    .await?;
                let full = rows.len() == page;
                let mut objects = Vec::with_capacity(rows.len());
                let mut end = to;
                for (k, v) in &rows {
                    let s = Segment::decode(v).map_err(|e| corrupt(k, e))?;
                    end = s.last_offset + 1;
                    objects.push(s.object);
                    t.delete(k.clone());
                }
                if !full {
                    end = to;
                }
                super::gc::note(t, objects.iter().map(String::as_str), gc_due_ms);
                state.log_start = end;
                t.put(partition::key(topic_id, partition), state.encode());
                Ok(Ok((end, rows.len(), !full)))
            })?;
            match step {
                Err(Trimmed::Done { log_start, .. }) => return Ok(Trimmed::Done { log_start, segments }),
                Err(other) => return Ok(other),
                Ok((log_start, n, last)) => {
                    segments += n;
                    if last {
                        return Ok(Trimmed::Done { log_start, segments });
                    }
                }
            }
        }
    }
}

/// The outcome of a [`Catalog::swap_segments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swapped {
    Done,
    /// The caller no longer holds the partition's lease at its epoch.
    Fenced,
    /// The topic is gone.
    Deleted,
    /// The entries to replace are not (all) there as given any more.
    Changed,
}

impl Catalog {
    /// The most index entries one [`Catalog::swap_segments`] may replace.
    pub fn max_swap_entries(&self) -> usize {
        (self.budget().saturating_sub(4) / 2).clamp(1, 4096)
    }

    /// Replaces consecutive index entries `old` with one entry `new` over
    /// the same offsets (a compacted segment), in one transaction, fenced
    /// like a flush commit, and notes the objects `old` pointed into for
    /// collection at `gc_due_ms`.
    pub async fn swap_segments(
        &self,
        owner: &str,
        epoch: u64,
        (topic_id, partition): PartitionId,
        old: &[Segment],
        new: &Segment,
        gc_due_ms: i64,
    ) -> Result<Swapped, CatalogError> {
        let (Some(first), Some(last)) = (old.first(), old.last()) else { return Ok(Swapped::Changed) };
        let contiguous = old.windows(2).all(|w| w[0].last_offset + 1 == w[1].base_offset);
        if !contiguous || new.base_offset != first.base_offset || new.last_offset != last.last_offset {
            return Err(CatalogError::Corrupt {
                key: format!("{:02x?}", key(topic_id, partition, new.last_offset)),
                source: CodecError::Invalid("a compacted segment must cover exactly the entries it replaces"),
            });
        }
        if old.len() > self.max_swap_entries() {
            return Err(CatalogError::Corrupt {
                key: format!("{:02x?}", key(topic_id, partition, new.last_offset)),
                source: CodecError::Invalid("too many entries for one swap"),
            });
        }
        transact!(self, |t| {
            let mut keys = vec![lease::key(topic_id, partition), partition::key(topic_id, partition)];
            keys.extend(old.iter().map(|s| key(topic_id, partition, s.last_offset)));
            let raw = t.batch_get_for_update(&keys).await?;
            let lease = raw[0].as_ref().map(|v| Lease::decode(v).map_err(|e| corrupt(&keys[0], e))).transpose()?;
            if raw[1].is_none() {
                return Ok(Swapped::Deleted);
            }
            if !matches!(lease, Some(l) if l.owner == owner && l.epoch == epoch) {
                return Ok(Swapped::Fenced);
            }
            for (s, current) in old.iter().zip(&raw[2..]) {
                if current.as_deref() != Some(&s.encode()[..]) {
                    return Ok(Swapped::Changed);
                }
            }
            for k in &keys[2..] {
                t.delete(k.clone());
            }
            t.put(key(topic_id, partition, new.last_offset), new.encode());
            super::gc::note(t, old.iter().map(|s| s.object.as_str()), gc_due_ms);
            Ok(Swapped::Done)
        })
    }
}

async fn commit_some(t: &mut Txn, owner: &str, entries: &[FlushEntry]) -> Result<FlushOutcome, CatalogError> {
    // Every entry's lease and state, read for update in one request.
    let mut keys = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        keys.push(lease::key(e.topic_id, e.partition));
        keys.push(partition::key(e.topic_id, e.partition));
    }
    let raw: Vec<Option<Bytes>> = t.batch_get_for_update(&keys).await?;
    let mut states: std::collections::HashMap<PartitionId, (Option<Lease>, Option<PartitionState>)> =
        Default::default();
    for (i, e) in entries.iter().enumerate() {
        let lease =
            raw[2 * i].as_ref().map(|v| Lease::decode(v).map_err(|err| corrupt(&keys[2 * i], err))).transpose()?;
        let state = raw[2 * i + 1]
            .as_ref()
            .map(|v| PartitionState::decode(v).map_err(|err| corrupt(&keys[2 * i + 1], err)))
            .transpose()?;
        states.entry((e.topic_id, e.partition)).or_insert((lease, state));
    }
    let mut outcome = FlushOutcome::default();
    for e in entries {
        let id = (e.topic_id, e.partition);
        if outcome.deleted.contains(&id) || outcome.fenced.contains(&id) {
            continue;
        }
        let (lease, state) = states.get_mut(&id).expect("read above");
        let Some(state) = state.as_mut() else {
            outcome.deleted.push(id);
            continue;
        };
        if !matches!(lease, Some(l) if l.owner == owner && l.epoch == e.epoch) {
            outcome.fenced.push(id);
            continue;
        }
        if e.segment.last_offset < state.high_watermark {
            // A commit that went through although its caller saw an
            // error (a timeout, a lost connection): already done.
            let key = key(e.topic_id, e.partition, e.segment.last_offset);
            if t.get(&key).await?.is_some_and(|raw| raw[..] == e.segment.encode()[..]) {
                continue;
            }
        }
        if e.segment.base_offset != state.high_watermark {
            // The owner assigns offsets contiguously; anything else is a bug
            // that must not reach the index.
            return Err(CatalogError::Corrupt {
                key: format!("{:02x?}", partition::key(e.topic_id, e.partition)),
                source: CodecError::Invalid("segment does not start at the high watermark"),
            });
        }
        state.high_watermark = e.segment.last_offset + 1;
        t.put(key(e.topic_id, e.partition, e.segment.last_offset), e.segment.encode());
        t.put(partition::key(e.topic_id, e.partition), state.encode());
        for (id, p) in &e.producers {
            t.put(producer::key(e.topic_id, e.partition, *id), p.encode());
        }
        for id in &e.expired {
            t.delete(producer::key(e.topic_id, e.partition, *id));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;
    use crate::catalog::BatchMeta;

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

    /// Takes a partition's lease for `owner`.
    async fn take(c: &Catalog, owner: &str, id: PartitionId, now_ms: i64) -> Lease {
        let got = c.acquire_leases(owner, "addr", &[id], now_ms).await.unwrap();
        got.taken.into_iter().next().expect("the lease is free").1
    }

    /// `owner` registers, takes partition 0 of `topic_id` and commits `segments` to it.
    async fn holding(c: &Catalog, owner: &str, topic_id: u64, segments: &[Segment]) -> Lease {
        c.heartbeat(owner, ("addr", ""), 0, 0, 100).await.unwrap();
        let lease = take(c, owner, (topic_id, 0), 0).await;
        for s in segments {
            let e = FlushEntry {
                topic_id,
                partition: 0,
                epoch: lease.epoch,
                segment: s.clone(),
                producers: vec![],
                expired: vec![],
            };
            c.commit_flush(owner, &[e]).await.unwrap();
        }
        lease
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
    async fn flush_commits_advance_the_watermark_and_index() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 2, &[], 0).await.unwrap();
        let lease = take(&c, "agent-1", (t.id, 0), 0).await;
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
        let both = c.producers_of(t.id, 0, 1).await.unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(both[&0], c.producers(t.id, 0).await.unwrap());
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
        c.delete_topic("t", 0).await.unwrap();
        assert!(c.producers(t.id, 0).await.unwrap().is_empty(), "deleting the topic forgets its producers");
    }

    #[tokio::test]
    async fn a_flush_committed_twice_is_committed_once() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        let lease = take(&c, "a", (t.id, 0), 0).await;
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
    async fn a_stale_epoch_is_fenced_and_writes_nothing() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        c.heartbeat("agent-1", ("a1", ""), 0, 0, 100).await.unwrap();
        let old = take(&c, "agent-1", (t.id, 0), 0).await;
        assert_eq!(c.acquire_leases("agent-2", "a2", &[(t.id, 0)], 50).await.unwrap().held, vec![(t.id, 0)]);
        let new = take(&c, "agent-2", (t.id, 0), 200).await;
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
    async fn flushes_for_a_deleted_topic_are_dropped() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        let l = take(&c, "a", (t.id, 0), 0).await;
        c.delete_topic("t", 0).await.unwrap();
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

    #[tokio::test]
    async fn trimming_advances_the_log_start_and_notes_objects() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        let lease = holding(&c, "a", t.id, &[seg(0, 9), seg(10, 14), seg(15, 19)]).await;
        // Up to the end of the second entry: two entries go, two objects are noted.
        assert_eq!(
            c.trim("a", lease.epoch, (t.id, 0), 15, 50).await.unwrap(),
            Trimmed::Done { log_start: 15, segments: 2 }
        );
        let (state, _) = c.partition(t.id, 0).await.unwrap().unwrap();
        assert_eq!((state.log_start, state.high_watermark), (15, 20));
        assert_eq!(c.segments(t.id, 0, 0, 10).await.unwrap(), vec![seg(15, 19)]);
        assert_eq!(c.gc_due(50, 10).await.unwrap(), vec![(50, "o/0".to_string()), (50, "o/10".to_string())]);
        // Again: nothing more to do. Past the high watermark: up to it.
        assert_eq!(
            c.trim("a", lease.epoch, (t.id, 0), 15, 50).await.unwrap(),
            Trimmed::Done { log_start: 15, segments: 0 }
        );
        assert_eq!(
            c.trim("a", lease.epoch, (t.id, 0), 99, 50).await.unwrap(),
            Trimmed::Done { log_start: 20, segments: 1 }
        );
        assert!(c.segments(t.id, 0, 0, 10).await.unwrap().is_empty());
        // Another agent's (or an old epoch's) trim changes nothing.
        assert_eq!(c.trim("b", lease.epoch, (t.id, 0), 99, 50).await.unwrap(), Trimmed::Fenced);
        assert_eq!(c.trim("a", lease.epoch + 1, (t.id, 0), 99, 50).await.unwrap(), Trimmed::Fenced);
        c.delete_topic("t", 60).await.unwrap();
        assert_eq!(c.trim("a", lease.epoch, (t.id, 0), 99, 50).await.unwrap(), Trimmed::Deleted);
    }

    #[tokio::test]
    async fn a_deleted_topics_objects_are_noted() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        holding(&c, "a", t.id, &[seg(0, 9), seg(10, 14)]).await;
        c.delete_topic("t", 70).await.unwrap();
        assert_eq!(c.gc_due(70, 10).await.unwrap(), vec![(70, "o/0".to_string()), (70, "o/10".to_string())]);
    }

    #[tokio::test]
    async fn swaps_replace_entries_with_one_fenced_and_checked() {
        let (_d, c) = catalog().await;
        let t = c.create_topic("t", 1, &[], 0).await.unwrap();
        let old = vec![seg(0, 9), seg(10, 14), seg(15, 19)];
        let lease = holding(&c, "a", t.id, &old).await;
        let new = Segment { object: "compacted".into(), len: 30, ..seg(0, 14) };
        // Someone else, or an old epoch: nothing changes.
        assert_eq!(c.swap_segments("b", lease.epoch, (t.id, 0), &old[..2], &new, 9).await.unwrap(), Swapped::Fenced);
        assert_eq!(
            c.swap_segments("a", lease.epoch + 1, (t.id, 0), &old[..2], &new, 9).await.unwrap(),
            Swapped::Fenced
        );
        // Entries that are not as given (trimmed, or swapped already): nothing changes.
        let stale = vec![Segment { object: "elsewhere".into(), ..seg(0, 9) }, seg(10, 14)];
        assert_eq!(c.swap_segments("a", lease.epoch, (t.id, 0), &stale, &new, 9).await.unwrap(), Swapped::Changed);
        // A segment over other offsets is refused outright.
        let wrong = Segment { object: "x".into(), ..seg(0, 13) };
        assert!(c.swap_segments("a", lease.epoch, (t.id, 0), &old[..2], &wrong, 9).await.is_err());
        assert_eq!(c.segments(t.id, 0, 0, 10).await.unwrap(), old);
        assert!(c.gc_due(100, 10).await.unwrap().is_empty());

        assert_eq!(c.swap_segments("a", lease.epoch, (t.id, 0), &old[..2], &new, 9).await.unwrap(), Swapped::Done);
        assert_eq!(c.segments(t.id, 0, 0, 10).await.unwrap(), vec![new.clone(), seg(15, 19)]);
        assert_eq!(c.segments(t.id, 0, 12, 10).await.unwrap()[0], new);
        assert_eq!(c.gc_due(100, 10).await.unwrap(), vec![(9, "o/0".to_string()), (9, "o/10".to_string())]);
        assert_eq!(c.swap_segments("a", lease.epoch, (t.id, 0), &old[..2], &new, 9).await.unwrap(), Swapped::Changed);
        let (state, _) = c.partition(t.id, 0).await.unwrap().unwrap();
        assert_eq!((state.log_start, state.high_watermark), (0, 20), "offsets do not move");
        c.delete_topic("t", 0).await.unwrap();
        assert_eq!(
            c.swap_segments("a", lease.epoch, (t.id, 0), &[seg(15, 19)], &seg(15, 19), 9).await.unwrap(),
            Swapped::Deleted
        );
    }

    #[test]
    fn round_trips_and_keys_sort_by_last_offset() {
        let s =
            Segment { base_offset: 10, last_offset: 19, object: "o/1".into(), start: 5, len: 100, max_timestamp: 9 };
        assert_eq!(Segment::decode(&s.encode()).unwrap(), s);
        assert!(key(1, 0, 9) < key(1, 0, 10));
        assert!(key(1, 0, i64::MAX) < key(1, 1, 0));
    }
}
