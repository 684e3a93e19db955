//! A producer running in the background, counting per partition what it
//! sent and what was acknowledged, so a test can check that records were
//! in flight at the moment it killed an agent, and then that every
//! acknowledged record survived.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use silt_client::{Acks, Client, ClientConfig, Producer, ProducerConfig, ProducerRecord, RecordMetadata};

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub acks: Acks,
    pub idempotence: bool,
    /// Record `i` goes to partition `i % partitions` (None: keyless, spread by the producer).
    pub pin: Option<u32>,
    /// Stop after this many records (None: until told to stop).
    pub limit: Option<u64>,
    /// Pause `pause.1` after every `pause.0` records.
    pub pause: (u64, Duration),
    /// Bytes per value (at least the index's digits).
    pub value_bytes: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            acks: Acks::Durable,
            idempotence: true,
            pin: None,
            limit: None,
            pause: (50, Duration::from_millis(2)),
            value_bytes: 0,
        }
    }
}

/// Record `i`'s value: unique, about `bytes` long, poorly compressible.
pub fn value(i: u64, bytes: usize) -> String {
    let mut s = format!("{i}");
    if s.len() >= bytes {
        return s;
    }
    s.push('-');
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while s.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push((b'a' + (x % 26) as u8) as char);
    }
    s
}

/// The index a value was made from.
pub fn index_of(v: &str) -> u64 {
    v.split('-').next().unwrap().parse().unwrap()
}

/// Sent and acknowledged, per partition.
pub struct Tally {
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

impl Tally {
    /// Records sent and not acknowledged yet, per partition.
    pub fn in_flight(&self) -> Vec<u64> {
        self.sent.iter().zip(&self.acked).map(|(s, a)| s.load(Ordering::SeqCst) - a.load(Ordering::SeqCst)).collect()
    }

    pub fn total_in_flight(&self) -> u64 {
        self.in_flight().iter().sum()
    }
}

/// How the background producer ended.
pub struct Produced {
    pub sent: u64,
    /// Record index -> where it was acknowledged.
    pub acked: BTreeMap<u64, RecordMetadata>,
    pub failed: Vec<String>,
    /// The longest wait for any acknowledgement.
    pub longest_wait: Duration,
}

impl Produced {
    /// (partition, offset) -> value, for the acknowledged records.
    pub fn by_offset(&self, value_bytes: usize) -> BTreeMap<(u32, i64), String> {
        self.acked.iter().map(|(i, m)| ((m.partition, m.offset), value(*i, value_bytes))).collect()
    }
}

/// The producer keeps sending.
const RUN: u8 = 0;
/// It stops sending and waits for every answer.
const FINISH: u8 = 1;
/// It stops sending and collects what is answered within a grace period
/// (its agent is gone for good).
const ABANDON: u8 = 2;

pub struct Background {
    pub tally: Arc<Tally>,
    state: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<Produced>,
}

impl Background {
    /// Starts producing to `topic` (with `partitions` partitions) as `plan` says.
    pub fn start(config: ClientConfig, topic: &str, partitions: u32, plan: Plan) -> Background {
        let tally = Arc::new(Tally {
            sent: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
        });
        let state = Arc::new(AtomicU8::new(RUN));
        let (t, s, topic) = (tally.clone(), state.clone(), topic.to_string());
        let task = tokio::spawn(async move { run(config, topic, plan, t, s).await });
        Background { tally, state, task }
    }

    /// Stops sending; waits until every record sent is acknowledged or
    /// failed (and, with acks=local, committed).
    pub async fn finish(self) -> Produced {
        self.state.store(FINISH, Ordering::SeqCst);
        self.task.await.unwrap()
    }

    /// Stops sending and drops the producer; returns what was acknowledged
    /// within two seconds (records not acknowledged by then never will be:
    /// their agent is gone).
    pub async fn abandon(self) -> Produced {
        self.state.store(ABANDON, Ordering::SeqCst);
        self.task.await.unwrap()
    }

    /// Waits until the plan's limit is sent and resolved.
    pub async fn wait(self) -> Produced {
        self.task.await.unwrap()
    }
}

async fn run(config: ClientConfig, topic: String, plan: Plan, tally: Arc<Tally>, state: Arc<AtomicU8>) -> Produced {
    let client = Client::connect(config).await.unwrap();
    let producer_config = ProducerConfig { acks: plan.acks, idempotence: plan.idempotence, ..Default::default() };
    let producer = Arc::new(Producer::new(client, &topic, producer_config).await.unwrap());
    let mut waits = tokio::task::JoinSet::new();
    let mut i = 0u64;
    while state.load(Ordering::SeqCst) == RUN && plan.limit.is_none_or(|n| i < n) {
        let mut record = ProducerRecord::new(value(i, plan.value_bytes));
        if let Some(n) = plan.pin {
            record = record.with_partition((i % u64::from(n)) as u32);
        }
        let Ok(d) = producer.send(record).await else { break };
        let (tally, sent) = (tally.clone(), Instant::now());
        tally.sent[d.partition() as usize].fetch_add(1, Ordering::SeqCst);
        waits.spawn(async move {
            let outcome = d.await;
            if let Ok(m) = &outcome {
                tally.acked[m.partition as usize].fetch_add(1, Ordering::SeqCst);
            }
            (i, outcome, sent.elapsed())
        });
        i += 1;
        if i.is_multiple_of(plan.pause.0) {
            tokio::time::sleep(plan.pause.1).await;
        }
    }
    let mut out = Produced { sent: i, acked: BTreeMap::new(), failed: Vec::new(), longest_wait: Duration::ZERO };
    let abandoned = state.load(Ordering::SeqCst) == ABANDON;
    let producer = match abandoned {
        true => {
            drop(producer);
            None
        }
        false => Some(producer),
    };
    let grace = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let next = tokio::select! {
            r = waits.join_next() => r,
            _ = tokio::time::sleep_until(grace), if abandoned => None,
        };
        let Some(r) = next else { break };
        let (i, outcome, waited) = r.unwrap();
        out.longest_wait = out.longest_wait.max(waited);
        match outcome {
            Ok(m) => {
                out.acked.insert(i, m);
            }
            Err(e) => out.failed.push(e.to_string()),
        }
    }
    waits.abort_all();
    // acks=local: wait until the last batches are committed too.
    if let Some(p) = producer.and_then(|p| Arc::try_unwrap(p).ok()) {
        let _ = p.close().await;
    }
    out
}
