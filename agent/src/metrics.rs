//! The agent's metrics: one Prometheus registry that `/metrics` encodes
//! and `silt stats` reads (its counters under their stable short names).
//!
//! Metrics kept here are moved by the layers that do the work; values
//! other parts already keep (metadata and read-path counts, in-flight
//! bytes, owned partitions, group lag) are read at each scrape through a
//! [`Sampler`] the agent installs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// What the read path has asked of the object store and of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Ranged GETs sent to the object store.
    pub gets: u64,
    /// Reads served by the read cache (memory or disk).
    pub cache_hits: u64,
    /// Reads served by the recently-written objects kept in memory.
    pub recent_hits: u64,
}

/// One label: its name and value.
type Label = (&'static str, &'static str);
type TopicLabel = [(&'static str, String); 1];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms to about 16 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Size buckets: 1 KiB to 1 GiB, quadrupling.
fn sizes() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 11))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub produced_batches: Counter,
    /// Every topic's records and bytes together (for `silt stats`).
    pub produced_records: Counter,
    pub produced_bytes: Counter,
    produced_records_by_topic: Family<TopicLabel, Counter>,
    produced_bytes_by_topic: Family<TopicLabel, Counter>,
    fetched_records_by_topic: Family<TopicLabel, Counter>,
    fetched_bytes_by_topic: Family<TopicLabel, Counter>,
    /// Batches an idempotent producer sent again, answered without writing.
    pub duplicate_batches: Counter,
    produce_seconds: Histograms<[Label; 1]>,
    /// Produce requests refused THROTTLED (the in-flight byte limit).
    pub throttled: Counter,
    /// Objects PUT to the object store (one per flush).
    pub objects_written: Counter,
    pub object_bytes_written: Counter,
    pub flush_bytes: Histogram,
    /// From an object's sealing to its index commit.
    pub flush_seconds: Histogram,
    object_seconds: Histograms<[Label; 1]>,
    object_errors: Family<[Label; 1], Counter>,
    /// Metadata transactions that committed a flush's index entries.
    pub index_commits: Counter,
    /// Records committed to the index (durable and readable).
    pub committed_records: Counter,
    /// Metadata transactions, from begin to commit or abandon.
    pub metadata_seconds: Histogram,
    pub wal_fsyncs: Counter,
    pub wal_bytes: Counter,
    pub wal_fsync_seconds: Histogram,
    /// Index entries retention removed (the log start moved past them).
    pub trimmed_segments: Counter,
    /// Objects collection deleted, and the delete requests it took.
    pub objects_deleted: Counter,
    pub delete_batches: Counter,
    /// Footer reads by collection and the bucket sweep.
    pub gc_gets: Counter,
    /// Objects the bucket sweep found that nothing points into.
    pub orphans_found: Counter,
    /// Segments object compaction wrote, their bytes, and the index entries they replaced.
    pub compacted_segments: Counter,
    pub compacted_bytes_written: Counter,
    pub compacted_entries: Counter,
    /// Compaction swaps the index refused (the lease moved, or the entries changed).
    pub compactions_refused: Counter,
    /// Session renewals that committed (one renews every lease held).
    pub lease_renewals: Counter,
    pub lease_renewal_failures: Counter,
    /// Partitions this agent led and lost (its lease lapsed or was taken).
    pub leases_lost: Counter,
    connections: Family<[Label; 1], Gauge>,
    connections_accepted: Family<[Label; 1], Counter>,
    requests: Family<[(&'static str, String); 2], Counter>,
    requests_in_flight: Family<[Label; 1], Gauge>,
    sampled: Arc<Sampled>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

pub fn add(counter: &Counter, n: u64) {
    counter.inc_by(n);
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("silt"),
            produced_batches: Counter::default(),
            produced_records: Counter::default(),
            produced_bytes: Counter::default(),
            produced_records_by_topic: Family::default(),
            produced_bytes_by_topic: Family::default(),
            fetched_records_by_topic: Family::default(),
            fetched_bytes_by_topic: Family::default(),
            duplicate_batches: Counter::default(),
            produce_seconds: Family::new_with_constructor(seconds),
            throttled: Counter::default(),
            objects_written: Counter::default(),
            object_bytes_written: Counter::default(),
            flush_bytes: sizes(),
            flush_seconds: seconds(),
            object_seconds: Family::new_with_constructor(seconds),
            object_errors: Family::default(),
            index_commits: Counter::default(),
            committed_records: Counter::default(),
            metadata_seconds: seconds(),
            wal_fsyncs: Counter::default(),
            wal_bytes: Counter::default(),
            wal_fsync_seconds: seconds(),
            trimmed_segments: Counter::default(),
            objects_deleted: Counter::default(),
            delete_batches: Counter::default(),
            gc_gets: Counter::default(),
            orphans_found: Counter::default(),
            compacted_segments: Counter::default(),
            compacted_bytes_written: Counter::default(),
            compacted_entries: Counter::default(),
            compactions_refused: Counter::default(),
            lease_renewals: Counter::default(),
            lease_renewal_failures: Counter::default(),
            leases_lost: Counter::default(),
            connections: Family::default(),
            connections_accepted: Family::default(),
            requests: Family::default(),
            requests_in_flight: Family::default(),
            sampled: Arc::default(),
        };
        m.register();
        // Every series a dashboard reads exists from the start, at zero.
        for acks in ["none", "local", "durable"] {
            let _ = m.produce_seconds.get_or_create(&[("acks", acks)]);
        }
        for op in ["put", "get"] {
            let _ = m.object_seconds.get_or_create(&[("op", op)]);
        }
        for op in ["put", "get", "delete", "list"] {
            let _ = m.object_errors.get_or_create(&[("op", op)]);
        }
        for frontend in ["quic", "kafka"] {
            let _ = m.connections.get_or_create(&[("frontend", frontend)]);
            let _ = m.connections_accepted.get_or_create(&[("frontend", frontend)]);
            let _ = m.requests_in_flight.get_or_create(&[("frontend", frontend)]);
        }
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register("produced_records", "Records appended, by topic", self.produced_records_by_topic.clone());
        r.register("produced_bytes", "Batch bytes appended, by topic", self.produced_bytes_by_topic.clone());
        r.register("produced_batches", "Batches appended", self.produced_batches.clone());
        r.register(
            "duplicate_batches",
            "Batches an idempotent producer sent again, answered without writing",
            self.duplicate_batches.clone(),
        );
        r.register(
            "produce_latency_seconds",
            "From a produce request to its acknowledgement, by acks mode (none, local, durable)",
            self.produce_seconds.clone(),
        );
        r.register(
            "throttled_requests",
            "Produce requests refused THROTTLED under --max-inflight-bytes",
            self.throttled.clone(),
        );
        r.register(
            "fetched_records",
            "Records sent to consumers, by topic (whole batches)",
            self.fetched_records_by_topic.clone(),
        );
        r.register("fetched_bytes", "Batch bytes sent to consumers, by topic", self.fetched_bytes_by_topic.clone());
        r.register("objects_written", "Objects PUT by flushes", self.objects_written.clone());
        r.register("object_written_bytes", "Bytes of objects PUT by flushes", self.object_bytes_written.clone());
        r.register("flush_size_bytes", "Size of each flushed object", self.flush_bytes.clone());
        r.register(
            "flush_duration_seconds",
            "From sealing a flush's object to committing its index entries",
            self.flush_seconds.clone(),
        );
        r.register(
            "object_request_duration_seconds",
            "Object store requests until the store answers, by operation (put, get)",
            self.object_seconds.clone(),
        );
        r.register(
            "object_request_errors",
            "Object store requests that failed, by operation (put, get, delete, list)",
            self.object_errors.clone(),
        );
        r.register(
            "index_commits",
            "Metadata transactions that committed a flush's index entries",
            self.index_commits.clone(),
        );
        r.register("committed_records", "Records committed to the index (durable)", self.committed_records.clone());
        r.register(
            "metadata_transaction_duration_seconds",
            "Metadata transactions, from begin to commit or abandon",
            self.metadata_seconds.clone(),
        );
        r.register("wal_fsyncs", "Write-ahead log writes made durable", self.wal_fsyncs.clone());
        r.register("wal_written_bytes", "Bytes written to the write-ahead log", self.wal_bytes.clone());
        r.register("wal_fsync_duration_seconds", "Write-ahead log write and fsync", self.wal_fsync_seconds.clone());
        r.register("trimmed_segments", "Index entries retention removed", self.trimmed_segments.clone());
        r.register("objects_deleted", "Objects garbage collection deleted", self.objects_deleted.clone());
        r.register("delete_requests", "Delete requests garbage collection sent", self.delete_batches.clone());
        r.register("gc_gets", "Object footer reads by garbage collection", self.gc_gets.clone());
        r.register("orphans_found", "Objects the bucket sweep found nothing points into", self.orphans_found.clone());
        r.register("compacted_segments", "Segments object compaction wrote", self.compacted_segments.clone());
        r.register(
            "compacted_written_bytes",
            "Bytes of segments object compaction wrote",
            self.compacted_bytes_written.clone(),
        );
        r.register("compacted_entries", "Index entries compaction replaced", self.compacted_entries.clone());
        r.register("compactions_refused", "Compaction swaps the index refused", self.compactions_refused.clone());
        r.register(
            "lease_renewals",
            "Session renewals that committed (each keeps every lease this agent holds)",
            self.lease_renewals.clone(),
        );
        r.register("lease_renewal_failures", "Session renewals that failed", self.lease_renewal_failures.clone());
        r.register("leases_lost", "Partitions this agent led and lost", self.leases_lost.clone());
        r.register("open_connections", "Client connections open, by front end (quic, kafka)", self.connections.clone());
        r.register("connections", "Client connections accepted, by front end", self.connections_accepted.clone());
        r.register("requests", "Requests received, by front end and request", self.requests.clone());
        r.register("requests_in_flight", "Requests being served, by front end", self.requests_in_flight.clone());
        r.register(
            "build",
            "The agent's version",
            prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register_collector(Box::new(self.sampled.clone()));
    }

    /// The registry in Prometheus' text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Installs what is read at each scrape.
    pub fn sample_with(&self, sampler: Sampler) {
        *self.sampled.sampler.lock().expect("sampler lock") = Some(sampler);
    }

    /// Replaces the consumer-group lag reported at scrapes.
    pub fn set_group_lag(&self, lag: Vec<GroupLag>) {
        *self.sampled.lag.lock().expect("lag lock") = lag;
    }

    /// A batch appended to `topic`.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        self.produced_batches.inc();
        self.produced_records.inc_by(records);
        self.produced_bytes.inc_by(bytes);
        let label = [("topic", topic.to_string())];
        self.produced_records_by_topic.get_or_create(&label).inc_by(records);
        self.produced_bytes_by_topic.get_or_create(&label).inc_by(bytes);
    }

    /// Batches sent to a consumer of `topic`.
    pub fn fetched(&self, topic: &str, records: u64, bytes: u64) {
        let label = [("topic", topic.to_string())];
        self.fetched_records_by_topic.get_or_create(&label).inc_by(records);
        self.fetched_bytes_by_topic.get_or_create(&label).inc_by(bytes);
    }

    /// A produce answered `since` its request arrived.
    pub fn produce_latency(&self, acks: &'static str, since: Instant) {
        self.produce_seconds.get_or_create(&[("acks", acks)]).observe(since.elapsed().as_secs_f64());
    }

    /// An object store request of `op` (put, get) that took `took`.
    pub fn object_request(&self, op: &'static str, took: Duration, ok: bool) {
        self.object_seconds.get_or_create(&[("op", op)]).observe(took.as_secs_f64());
        if !ok {
            self.object_error(op);
        }
    }

    pub fn object_error(&self, op: &'static str) {
        self.object_errors.get_or_create(&[("op", op)]).inc();
    }

    /// A client connection on `frontend`, counted open until the guard drops.
    pub fn connection(&self, frontend: &'static str) -> InFlight {
        self.connections_accepted.get_or_create(&[("frontend", frontend)]).inc();
        InFlight::new(self.connections.get_or_create_owned(&[("frontend", frontend)]))
    }

    /// A request on `frontend`, counted in flight until the guard drops.
    pub fn request(&self, frontend: &'static str, request: &str) -> InFlight {
        self.requests.get_or_create(&[("frontend", frontend.to_string()), ("request", request.to_string())]).inc();
        InFlight::new(self.requests_in_flight.get_or_create_owned(&[("frontend", frontend)]))
    }

    /// The counters `silt stats` prints, under their stable names.
    pub fn snapshot(&self, read: ReadStats) -> Vec<(String, u64)> {
        let get = |c: &Counter| c.get();
        [
            ("produced_batches", get(&self.produced_batches)),
            ("produced_records", get(&self.produced_records)),
            ("produced_bytes", get(&self.produced_bytes)),
            ("duplicate_batches", get(&self.duplicate_batches)),
            ("throttled_requests", get(&self.throttled)),
            ("objects_written", get(&self.objects_written)),
            ("object_bytes_written", get(&self.object_bytes_written)),
            ("index_commits", get(&self.index_commits)),
            ("committed_records", get(&self.committed_records)),
            ("wal_fsyncs", get(&self.wal_fsyncs)),
            ("wal_bytes", get(&self.wal_bytes)),
            ("trimmed_segments", get(&self.trimmed_segments)),
            ("objects_deleted", get(&self.objects_deleted)),
            ("delete_batches", get(&self.delete_batches)),
            ("gc_gets", get(&self.gc_gets)),
            ("orphans_found", get(&self.orphans_found)),
            ("compacted_segments", get(&self.compacted_segments)),
            ("compacted_bytes_written", get(&self.compacted_bytes_written)),
            ("compacted_entries", get(&self.compacted_entries)),
            ("compactions_refused", get(&self.compactions_refused)),
            ("lease_renewals", get(&self.lease_renewals)),
            ("leases_lost", get(&self.leases_lost)),
            // Bytes written to the object store per 100 bytes produced (flushes and compaction).
            ("write_amplification_pct", {
                let written = get(&self.object_bytes_written) + get(&self.compacted_bytes_written);
                (written * 100).checked_div(get(&self.produced_bytes)).unwrap_or(0)
            }),
            ("object_gets", read.gets),
            ("read_cache_hits", read.cache_hits),
            ("recent_object_hits", read.recent_hits),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Counts something open (a connection, a request) until dropped.
pub struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A value read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    pub value: i64,
}

impl Sample {
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Sample {
        Sample { name, help, counter: true, value: i64::try_from(value).unwrap_or(i64::MAX) }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: i64) -> Sample {
        Sample { name, help, counter: false, value }
    }
}

/// How far a group's committed offset trails a partition's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub lag: i64,
}

/// Reads the sampled values; installed by the agent once its parts run.
pub type Sampler = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

#[derive(Default)]
struct Sampled {
    sampler: Mutex<Option<Sampler>>,
    lag: Mutex<Vec<GroupLag>>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").finish_non_exhaustive()
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.sampler.lock().expect("sampler lock").as_ref().map(|s| s()).unwrap_or_default();
        for s in samples {
            if s.counter {
                let m = ConstCounter::new(s.value.max(0) as u64);
                m.encode(encoder.encode_descriptor(s.name, s.help, None, MetricType::Counter)?)?;
            } else {
                let m = ConstGauge::new(s.value);
                m.encode(encoder.encode_descriptor(s.name, s.help, None, MetricType::Gauge)?)?;
            }
        }
        let lag = self.lag.lock().expect("lag lock").clone();
        let mut family = encoder.encode_descriptor(
            "consumer_group_lag",
            "Records between a group's committed offset and the partition's end, reported by the group's coordinator",
            None,
            MetricType::Gauge,
        )?;
        for l in &lag {
            let labels =
                [("group", l.group.clone()), ("topic", l.topic.clone()), ("partition", l.partition.to_string())];
            ConstGauge::new(l.lag).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_with_help_and_type() {
        let m = Metrics::new();
        m.produced("orders", 10, 1000);
        m.produce_latency("durable", Instant::now());
        m.sample_with(Box::new(|| vec![Sample::gauge("owned_partitions", "Partitions led here", 3)]));
        m.set_group_lag(vec![GroupLag { group: "g".into(), topic: "orders".into(), partition: 0, lag: 7 }]);
        let text = m.encode();
        for line in [
            "# TYPE silt_produced_records_total counter",
            "silt_produced_records_total{topic=\"orders\"} 10",
            "silt_produced_bytes_total{topic=\"orders\"} 1000",
            "# TYPE silt_produce_latency_seconds histogram",
            "silt_produce_latency_seconds_count{acks=\"durable\"} 1",
            "silt_owned_partitions 3",
            "silt_consumer_group_lag{group=\"g\",topic=\"orders\",partition=\"0\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        assert_eq!(m.snapshot(ReadStats::default())[1], ("produced_records".to_string(), 10));
    }

    #[test]
    fn guards_count_what_is_open() {
        let m = Metrics::new();
        let a = m.connection("quic");
        let b = m.connection("quic");
        drop(a);
        let text = m.encode();
        assert!(text.contains("silt_open_connections{frontend=\"quic\"} 1"), "{text}");
        assert!(text.contains("silt_connections_total{frontend=\"quic\"} 2"), "{text}");
        drop(b);
        assert!(m.encode().contains("silt_open_connections{frontend=\"quic\"} 0"));
    }
}
