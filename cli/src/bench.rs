//! Benchmark programs: they print figures, they do not pass or fail.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use silt_client::{Acks, Client, Compression, Producer, ProducerConfig, ProducerRecord};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce records of a given size through the SDK (N producers, a
    /// count or a duration); print MB/s, records/s, acknowledgement latency
    /// percentiles, the client's and the agent's CPU time and the agent's
    /// peak memory (`--json` for one JSON object).
    Produce(ProduceBench),
    /// Read a topic from the beginning twice; print MB/s, object-store GETs
    /// and read-cache hits for each pass.
    Read(ReadBench),
    /// Catch-up reads of a topic from the beginning by N consumers at once
    /// (each its own connection), pass after pass: MB/s, records/s, GETs
    /// per GiB and the cache hit ratio of each pass.
    Consume(ConsumeBench),
    /// A producer at a fixed --rate while a consumer follows the tail: the
    /// latency from send to the consumer seeing the record.
    E2e(E2eBench),
    /// Consumer-group coordination: joins, heartbeats at rest, offset
    /// commits per second, rebalance times (members simulated with the
    /// group protocol, no record fetches).
    Groups(crate::bench_groups::GroupsBench),
    /// The object store's own ceiling, without an agent: objects of one
    /// size PUT with a few in flight (MB/s, PUTs/s, PUT latency), then
    /// deleted. Needs no running agent.
    Put(crate::bench_store::PutBench),
    /// QUIC's own ceiling here, with silt's TLS and transport settings: one
    /// stream of bytes to a server on 127.0.0.1 in this process (MB/s and
    /// CPU). Needs no running agent.
    Quic(crate::bench_quic::QuicBench),
}

#[derive(clap::Args)]
pub struct ReadBench {
    #[arg(long, default_value = "bench")]
    topic: String,
}

#[derive(clap::Args)]
pub struct ProduceBench {
    /// Topic to write (created with --partitions if missing).
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Records to send in all (split between the producers).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Send for this long instead of a number of records (e.g. 30s).
    #[arg(long, value_parser = silt_agent::config::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Producer clients, each with its own connection, as tasks of this one process.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    #[arg(long, default_value = "durable")]
    acks: Acks,
    /// zstd or none. The payload is random bytes, so compression gains nothing.
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// A partition's batch is sent once it holds this many bytes ...
    #[arg(long, default_value = "1MiB", value_parser = silt_agent::config::parse_bytes)]
    batch_bytes: u64,
    /// ... or this long after its first record.
    #[arg(long, default_value = "5ms", value_parser = silt_agent::config::parse_duration)]
    linger: Duration,
    /// Each producer's buffer of records not yet acknowledged (default: the
    /// SDK's `buffer_bytes`, 64 MiB). At full speed a producer has at most
    /// this much in flight, so MB/s is at most this over the ack latency.
    #[arg(long, value_parser = silt_agent::config::parse_bytes)]
    buffer_bytes: Option<u64>,
    /// Send at most this many records per second in all (0: as fast as
    /// possible). Latency is only meaningful below saturation: at full speed
    /// it measures the time records wait in the producer's buffer.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send without producer ids and sequence numbers (see `produce --help`).
    #[arg(long)]
    no_idempotence: bool,
    /// The agent's process id, to report the CPU time and peak memory it used.
    #[arg(long)]
    agent_pid: Option<u32>,
    /// Print one JSON object with every figure instead of text.
    #[arg(long)]
    json: bool,
    /// No live status line on stderr (it is off anyway when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
}

pub async fn run(client: Client, cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(b) => produce(client, b).await,
        BenchCommand::Read(b) => read(client, b).await,
        BenchCommand::Consume(b) => consume(client, b).await,
        BenchCommand::E2e(b) => e2e(client, b).await,
        BenchCommand::Groups(b) => crate::bench_groups::run(client, b).await,
        BenchCommand::Put(b) => crate::bench_store::put(b).await,
        BenchCommand::Quic(b) => crate::bench_quic::quic(b).await,
    }
}

/// CPU time (user + system) of a process in nanoseconds, from /proc/PID/stat,
/// whose times Linux reports in USER_HZ (100 per second on every architecture).
pub(crate) fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, start at field 3.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// Peak resident memory of a process, in bytes (VmHWM in /proc/PID/status).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Acknowledgement latencies in microseconds, shared by the producers.
type Latencies = std::sync::Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>;

/// Where a batch's send times (known when the next batch starts) meet its
/// acknowledgement time (known when its waiter hears it), whichever comes
/// second recording the latencies.
type Meeting = std::sync::Arc<std::sync::Mutex<Option<Side>>>;

enum Side {
    Times(Vec<Instant>),
    Acked(Instant),
}

fn meet(meeting: &Meeting, side: Side, latencies: &Latencies) {
    let (times, acked) = {
        let mut slot = meeting.lock().expect("meeting lock");
        match (side, slot.take()) {
            (Side::Times(t), Some(Side::Acked(a))) | (Side::Acked(a), Some(Side::Times(t))) => (t, a),
            (first, _) => {
                *slot = Some(first);
                return;
            }
        }
    };
    let mut h = latencies.lock().expect("latency lock");
    for t in times {
        let _ = h.record(acked.saturating_duration_since(t).as_micros() as u64);
    }
}

async fn wait_for_batch(delivery: silt_client::Delivery, meeting: Meeting, latencies: Latencies) -> anyhow::Result<()> {
    delivery.await?;
    meet(&meeting, Side::Acked(Instant::now()), &latencies);
    Ok(())
}

/// Sends records until `records` are sent (or `until` passes), waiting for
/// acknowledgements once per batch (records of a batch are acknowledged
/// together), and records each record's send-to-ack latency. Returns how
/// many it sent.
async fn produce_one(
    producer: Producer,
    payload: Bytes,
    (records, until): (u64, Option<Instant>),
    rate: f64,
    latencies: Latencies,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut waiters = tokio::task::JoinSet::new();
    // The batch being filled: its first record's delivery, each record's
    // send time, and where its waiter meets those times.
    let mut group: Option<(silt_client::Delivery, Vec<Instant>, Meeting)> = None;
    let mut sent = 0u64;
    while sent < records {
        if rate > 0.0 && sent.is_multiple_of(64) {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        // One clock read per record: the send time, and whether time is up.
        let at = Instant::now();
        if until.is_some_and(|u| at >= u) {
            break;
        }
        let delivery = producer.send(ProducerRecord::new(payload.clone())).await?;
        sent += 1;
        match &mut group {
            Some((first, times, _)) if first.same_batch(&delivery) => times.push(at),
            _ => {
                // A new batch: its waiter starts now, so an acknowledgement
                // is timed when it comes, not when the next batch starts.
                let meeting = Meeting::default();
                waiters.spawn(wait_for_batch(delivery.clone(), meeting.clone(), latencies.clone()));
                if let Some((_, times, meeting)) = group.replace((delivery, vec![at], meeting)) {
                    meet(&meeting, Side::Times(times), &latencies);
                }
            }
        }
        if sent.is_multiple_of(1024) {
            progress.fetch_add(1024, std::sync::atomic::Ordering::Relaxed);
            while let Some(done) = waiters.try_join_next() {
                done??;
            }
        }
    }
    if let Some((_, times, meeting)) = group {
        meet(&meeting, Side::Times(times), &latencies);
    }
    while let Some(done) = waiters.join_next().await {
        done??;
    }
    producer.close().await?;
    Ok(sent)
}

async fn produce(client: Client, b: &ProduceBench) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    if client.describe_topic(&b.topic).await.is_err() {
        client.create_topic(&b.topic, b.partitions).await.context("creating the bench topic")?;
    }
    let partitions = client.describe_topic(&b.topic).await?.partitions.len();
    let defaults = ProducerConfig::default();
    let config = ProducerConfig {
        acks: b.acks,
        compression: b.compression,
        idempotence: !b.no_idempotence,
        batch_bytes: b.batch_bytes as usize,
        buffer_bytes: b.buffer_bytes.map_or(defaults.buffer_bytes, |n| n as usize),
        linger: b.linger,
        ..defaults
    };
    let n = b.producers.max(1);
    let mut producers = Vec::new();
    for _ in 0..n {
        // Each producer with its own connection.
        let own = Client::connect(client.config().clone()).await?;
        producers.push(Producer::new(own, &b.topic, config.clone()).await?);
    }
    let mut payload = vec![0u8; b.record_bytes];
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2654435761).to_be_bytes()[0];
    }
    let payload = Bytes::from(payload);
    let latencies: Latencies =
        Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?));
    let progress = Arc::new(AtomicU64::new(0));
    let stats_before = counters(&client).await?;
    let cpu_before = b.agent_pid.and_then(cpu_ns);
    let client_cpu_before = cpu_ns(std::process::id());
    let started = Instant::now();
    let until = b.duration.map(|d| started + d);
    let per = if b.duration.is_some() { u64::MAX } else { b.records.div_ceil(u64::from(n)) };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let records = if b.duration.is_some() { per } else { per.min(b.records.saturating_sub(per * i as u64)) };
        let rate = b.rate as f64 / f64::from(n);
        tasks.spawn(produce_one(
            producer,
            payload.clone(),
            (records, until),
            rate,
            latencies.clone(),
            progress.clone(),
        ));
    }
    let status = live_status(!b.quiet, progress.clone(), b.record_bytes, latencies.clone());
    let mut sent = 0u64;
    while let Some(done) = tasks.join_next().await {
        sent += done??;
    }
    status.abort();
    let elapsed = started.elapsed();
    let cpu_after = b.agent_pid.and_then(cpu_ns);
    let client_cpu = cpu_ns(std::process::id()).zip(client_cpu_before).map(|(a, b)| (a - b) as f64 / 1e9);
    let h = latencies.lock().expect("latency lock").clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let bytes = sent as f64 * b.record_bytes as f64;
    let stats = delta(&stats_before, &counters(&client).await?);
    let objects = stats.get("objects_written").copied().unwrap_or(0);
    let written = stats.get("object_bytes_written").copied().unwrap_or(0);
    let agent_cpu = cpu_before.zip(cpu_after).map(|(a, b)| (b - a) as f64 / 1e9);
    let figures = Figures {
        mb_per_s: bytes / elapsed.as_secs_f64() / 1e6,
        records_per_s: sent as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1e3,
        agent_cpu_s: agent_cpu,
        mib_per_agent_cpu_s: agent_cpu.map(|c| bytes / (1 << 20) as f64 / c.max(1e-9)),
        client_cpu_s: client_cpu,
        agent_peak_rss_mib: b.agent_pid.and_then(peak_rss).map(|r| r as f64 / (1 << 20) as f64),
        puts_per_gib: objects as f64 / (bytes / (1u64 << 30) as f64),
    };
    if b.json {
        println!("{}", figures.json());
        return Ok(());
    }
    println!(
        "produce bench: {sent} records x {} B, acks={:?}, {partitions} partitions, {n} producer(s)",
        b.record_bytes, b.acks
    );
    println!("  elapsed      {:.2} s", elapsed.as_secs_f64());
    println!("  throughput   {:.1} MB/s, {:.0} records/s", figures.mb_per_s, figures.records_per_s);
    println!(
        "  ack latency  p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, max {:.1} ms",
        figures.p50_ms, figures.p99_ms, figures.p999_ms, figures.max_ms
    );
    println!(
        "  objects      {objects} PUTs for {:.1} MiB stored: {:.0} PUTs per GiB written",
        written as f64 / (1 << 20) as f64,
        figures.puts_per_gib
    );
    if let Some(fsyncs) = stats.get("wal_fsyncs").filter(|n| **n > 0) {
        println!("  WAL          {fsyncs} fsyncs ({:.0} records per fsync)", sent as f64 / *fsyncs as f64);
    }
    if let Some(cpu) = client_cpu {
        println!("  client CPU   {cpu:.2} s ({:.1} MB per CPU-second)", bytes / 1e6 / cpu.max(1e-9));
    }
    if let Some(cpu) = agent_cpu {
        println!("  agent CPU    {cpu:.2} s ({:.1} MiB per CPU-second)", bytes / (1 << 20) as f64 / cpu.max(1e-9));
    }
    if let Some(rss) = figures.agent_peak_rss_mib {
        println!("  agent RSS    peak {rss:.0} MiB");
    }
    Ok(())
}

/// A benchmark's figures, printed as JSON with `--json`.
struct Figures {
    mb_per_s: f64,
    records_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    agent_cpu_s: Option<f64>,
    mib_per_agent_cpu_s: Option<f64>,
    client_cpu_s: Option<f64>,
    agent_peak_rss_mib: Option<f64>,
    puts_per_gib: f64,
}

/// One JSON object on one line, from keys and their values already
/// written as JSON.
pub(crate) fn json_object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    format!("{{{}}}", body.join(", "))
}

/// A figure that may be missing, as JSON (null when it is).
pub(crate) fn json_opt(v: Option<f64>) -> String {
    v.map_or("null".to_string(), |v| format!("{v:.3}"))
}

impl Figures {
    fn json(&self) -> String {
        json_object(&[
            ("mb_per_s", format!("{:.3}", self.mb_per_s)),
            ("records_per_s", format!("{:.1}", self.records_per_s)),
            ("p50_ms", format!("{:.3}", self.p50_ms)),
            ("p99_ms", format!("{:.3}", self.p99_ms)),
            ("p999_ms", format!("{:.3}", self.p999_ms)),
            ("max_ms", format!("{:.3}", self.max_ms)),
            ("agent_cpu_s", json_opt(self.agent_cpu_s)),
            ("mib_per_agent_cpu_s", json_opt(self.mib_per_agent_cpu_s)),
            ("client_cpu_s", json_opt(self.client_cpu_s)),
            ("agent_peak_rss_mib", json_opt(self.agent_peak_rss_mib)),
            ("puts_per_gib", format!("{:.1}", self.puts_per_gib)),
        ])
    }
}

/// Once a second on stderr (when it is a terminal and `on`): records/s,
/// MB/s and the p99 so far.
fn live_status(
    on: bool,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    record_bytes: usize,
    latencies: Latencies,
) -> tokio::task::JoinHandle<()> {
    use std::io::IsTerminal;
    let on = on && std::io::stderr().is_terminal();
    tokio::spawn(async move {
        if !on {
            return;
        }
        let mut last = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = progress.load(std::sync::atomic::Ordering::Relaxed);
            let p99 = latencies.lock().expect("latency lock").value_at_quantile(0.99) as f64 / 1e3;
            let rate = now - last;
            last = now;
            eprint!(
                "\r  {rate} records/s, {:.1} MB/s, p99 {p99:.1} ms so far      ",
                rate as f64 * record_bytes as f64 / 1e6
            );
        }
    })
}

async fn counters(client: &Client) -> anyhow::Result<std::collections::HashMap<String, u64>> {
    Ok(client.stats().await?.into_iter().collect())
}

fn delta(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> std::collections::HashMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect()
}

async fn read(client: Client, b: &ReadBench) -> anyhow::Result<()> {
    use futures::StreamExt;
    use silt_client::{Consumer, ConsumerConfig, Offset};
    let description = client.describe_topic(&b.topic).await?;
    let total: i64 = description.partitions.iter().map(|p| p.high_watermark - p.log_start).sum();
    println!("read bench: topic {} ({} records), read twice from the beginning", b.topic, total);
    for pass in 1..=2 {
        let before = counters(&client).await?;
        let consumer = Consumer::new(client.clone(), &b.topic, ConsumerConfig::default()).await?;
        let all: Vec<_> = (0..consumer.partitions()).map(|p| (p, Offset::Earliest)).collect();
        let mut stream = consumer.stream(&all).await?;
        let started = Instant::now();
        let (mut n, mut bytes) = (0i64, 0usize);
        while n < total {
            let r = stream.next().await.context("the stream ended early")??;
            bytes += r.value.as_ref().map_or(0, |v| v.len());
            n += 1;
        }
        let elapsed = started.elapsed();
        let d = delta(&before, &counters(&client).await?);
        let (gets, hits, recent) = (d["object_gets"], d["read_cache_hits"], d["recent_object_hits"]);
        let reads = (gets + hits + recent).max(1);
        println!(
            "  pass {pass}: {:.1} MB/s, {:.0} records/s; {gets} GETs, {hits} read-cache hits, {recent} recent-object hits: hit ratio {:.0}%",
            bytes as f64 / elapsed.as_secs_f64() / 1e6,
            n as f64 / elapsed.as_secs_f64(),
            100.0 * (hits + recent) as f64 / reads as f64
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ConsumeBench {
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Consumers, each with its own connection, sharing the partitions.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Times to read the topic from the beginning (the second pass shows the read cache).
    #[arg(long, default_value_t = 2)]
    passes: u32,
    /// The agent's process id, to report the CPU time and peak memory it used.
    #[arg(long)]
    agent_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct E2eBench {
    /// Topic to write and follow (created with --partitions if missing).
    #[arg(long, default_value = "bench-e2e")]
    topic: String,
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Records per second the producer sends.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    #[arg(long, default_value = "10s", value_parser = silt_agent::config::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value = "durable")]
    acks: Acks,
    #[arg(long)]
    json: bool,
}

/// Nanoseconds since the Unix epoch: producer and consumer share the host's clock.
fn epoch_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Catch-up reads of a whole topic by N consumers at once, pass after pass.
async fn consume(client: Client, b: &ConsumeBench) -> anyhow::Result<()> {
    use futures::StreamExt;
    use silt_client::{Consumer, ConsumerConfig, Offset};
    let description = client.describe_topic(&b.topic).await?;
    let partitions = description.partitions.len() as u32;
    let n = b.consumers.clamp(1, partitions.max(1));
    if !b.json {
        let total: i64 = description.partitions.iter().map(|p| p.high_watermark - p.log_start).sum();
        println!("consume bench: topic {} ({total} records, {partitions} partitions), {n} consumer(s)", b.topic);
    }
    for pass in 1..=b.passes {
        let before = counters(&client).await?;
        let started = Instant::now();
        let agent_cpu_before = b.agent_pid.and_then(cpu_ns);
        let client_cpu_before = cpu_ns(std::process::id());
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..n {
            let own = Client::connect(client.config().clone()).await?;
            let mine: Vec<(u32, Offset, i64)> = description
                .partitions
                .iter()
                .filter(|p| p.partition % n == c)
                .map(|p| (p.partition, Offset::Earliest, p.high_watermark - p.log_start))
                .collect();
            let topic = b.topic.clone();
            tasks.spawn(async move {
                let consumer = Consumer::new(own, &topic, ConsumerConfig::default()).await?;
                let total: i64 = mine.iter().map(|m| m.2).sum();
                let assignments: Vec<(u32, Offset)> = mine.iter().map(|m| (m.0, m.1)).collect();
                let mut stream = consumer.stream(&assignments).await?;
                let (mut records, mut bytes) = (0i64, 0u64);
                while records < total {
                    let r = stream.next().await.context("the stream ended early")??;
                    bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
                    records += 1;
                }
                anyhow::Ok((records, bytes))
            });
        }
        let (mut records, mut bytes) = (0i64, 0u64);
        while let Some(done) = tasks.join_next().await {
            let (r, b) = done??;
            records += r;
            bytes += b;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let seconds = |after: Option<u64>, before: Option<u64>| after.zip(before).map(|(a, b)| (a - b) as f64 / 1e9);
        let client_cpu = seconds(cpu_ns(std::process::id()), client_cpu_before);
        let agent_cpu = seconds(b.agent_pid.and_then(cpu_ns), agent_cpu_before);
        let peak_rss_mib = b.agent_pid.and_then(peak_rss).map(|r| r as f64 / (1 << 20) as f64);
        let d = delta(&before, &counters(&client).await?);
        let (gets, hits, recent) = (d["object_gets"], d["read_cache_hits"], d["recent_object_hits"]);
        let reads = (gets + hits + recent).max(1);
        let mb_per_s = bytes as f64 / elapsed / 1e6;
        let gets_per_gib = gets as f64 / (bytes as f64 / (1u64 << 30) as f64).max(1e-9);
        let hit_ratio = (hits + recent) as f64 / reads as f64;
        if b.json {
            println!(
                "{}",
                json_object(&[
                    ("pass", pass.to_string()),
                    ("mb_per_s", format!("{mb_per_s:.3}")),
                    ("records_per_s", format!("{:.1}", records as f64 / elapsed)),
                    ("gets", gets.to_string()),
                    ("gets_per_gib", format!("{gets_per_gib:.1}")),
                    ("cache_hit_ratio", format!("{hit_ratio:.4}")),
                    ("client_cpu_s", json_opt(client_cpu)),
                    ("agent_cpu_s", json_opt(agent_cpu)),
                    ("agent_peak_rss_mib", json_opt(peak_rss_mib)),
                ])
            );
        } else {
            println!(
                "  pass {pass}: {mb_per_s:.1} MB/s, {:.0} records/s; {gets} GETs ({gets_per_gib:.0} per GiB), {hits} read-cache hits, {recent} recent-object hits: hit ratio {:.0}%",
                records as f64 / elapsed,
                100.0 * hit_ratio
            );
            let mb = bytes as f64 / 1e6;
            if let Some(cpu) = client_cpu {
                println!("          client CPU {cpu:.2} s ({:.1} MB per CPU-second)", mb / cpu.max(1e-9));
            }
            if let (Some(cpu), Some(rss)) = (agent_cpu, peak_rss_mib) {
                println!(
                    "          agent CPU {cpu:.2} s ({:.1} MB per CPU-second), agent peak RSS {rss:.0} MiB",
                    mb / cpu.max(1e-9)
                );
            }
        }
    }
    Ok(())
}

/// A producer at a fixed rate and a consumer following the topic's tail:
/// the time from `send` to the consumer seeing the record.
async fn e2e(client: Client, b: &E2eBench) -> anyhow::Result<()> {
    use futures::StreamExt;
    use silt_client::{Consumer, ConsumerConfig, Offset};
    if client.describe_topic(&b.topic).await.is_err() {
        client.create_topic(&b.topic, b.partitions).await.context("creating the bench topic")?;
    }
    let partitions = client.describe_topic(&b.topic).await?.partitions.len() as u32;
    let consumer =
        Consumer::new(Client::connect(client.config().clone()).await?, &b.topic, ConsumerConfig::default()).await?;
    let mut stream = consumer.stream(&(0..partitions).map(|p| (p, Offset::Latest)).collect::<Vec<_>>()).await?;
    let producer =
        Producer::new(client.clone(), &b.topic, ProducerConfig { acks: b.acks, ..Default::default() }).await?;
    let records = (b.rate as f64 * b.duration.as_secs_f64()) as u64;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let size = b.record_bytes.max(8);
    let send = async {
        let started = Instant::now();
        for i in 0..records {
            let due = started + Duration::from_secs_f64(i as f64 / b.rate.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
            let mut value = vec![0u8; size];
            value[..8].copy_from_slice(&epoch_ns().to_be_bytes());
            let _ = producer.send(ProducerRecord::new(value)).await?;
        }
        producer.flush().await?;
        anyhow::Ok(())
    };
    let receive = async {
        let mut seen = 0u64;
        while seen < records {
            let r = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .context("no record for 30 s")?
                .context("the stream ended")??;
            let value = r.value.unwrap_or_default();
            if value.len() >= 8 {
                let sent = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                let _ = hist.record(epoch_ns().saturating_sub(sent) / 1000);
            }
            seen += 1;
        }
        anyhow::Ok(())
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    received?;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    if b.json {
        println!(
            "{}",
            json_object(&[
                ("records", records.to_string()),
                ("p50_ms", format!("{:.3}", ms(0.5))),
                ("p99_ms", format!("{:.3}", ms(0.99))),
                ("p999_ms", format!("{:.3}", ms(0.999))),
                ("max_ms", format!("{:.3}", hist.max() as f64 / 1e3)),
            ])
        );
    } else {
        println!(
            "e2e bench: {records} records x {size} B at {} records/s, acks={:?}, {partitions} partitions",
            b.rate, b.acks
        );
        println!(
            "  produce-to-consume latency  p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, max {:.1} ms",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            hist.max() as f64 / 1e3
        );
    }
    Ok(())
}
