//! Benchmark programs: they print figures, they do not pass or fail.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use silt_client::{Acks, Client, Compression, Producer, ProducerConfig, ProducerRecord};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Produce N records of a given size through the SDK; print MB/s,
    /// records/s, acknowledgement latency percentiles, and the agent's CPU time.
    Produce(ProduceBench),
    /// Read a topic from the beginning twice; print MB/s, object-store GETs
    /// and read-cache hits for each pass.
    Read(ReadBench),
    /// Consumer-group coordination: joins, heartbeats at rest, offset
    /// commits per second, rebalance times (members simulated with the
    /// group protocol, no record fetches).
    Groups(crate::bench_groups::GroupsBench),
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
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value = "durable")]
    acks: Acks,
    /// zstd or none. The payload is random bytes, so compression gains nothing.
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// Send at most this many records per second (0: as fast as possible).
    /// Latency is only meaningful below saturation: at full speed it measures
    /// the time records wait in the producer's buffer.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send without producer ids and sequence numbers (see `produce --help`).
    #[arg(long)]
    no_idempotence: bool,
    /// The agent's process id, to report the CPU time it used during the run.
    #[arg(long)]
    agent_pid: Option<u32>,
}

pub async fn run(client: Client, cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(b) => produce(client, b).await,
        BenchCommand::Read(b) => read(client, b).await,
        BenchCommand::Groups(b) => crate::bench_groups::run(client, b).await,
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn produce(client: Client, b: &ProduceBench) -> anyhow::Result<()> {
    if client.describe_topic(&b.topic).await.is_err() {
        client.create_topic(&b.topic, b.partitions).await.context("creating the bench topic")?;
    }
    let config = ProducerConfig {
        acks: b.acks,
        compression: b.compression,
        idempotence: !b.no_idempotence,
        ..Default::default()
    };
    let producer = std::sync::Arc::new(Producer::new(client.clone(), &b.topic, config).await?);
    let mut payload = vec![0u8; b.record_bytes];
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2654435761).to_be_bytes()[0];
    }
    let payload = Bytes::from(payload);
    let stats_before = counters(&client).await?;
    let cpu_before = b.agent_pid.and_then(cpu_ns);
    let started = Instant::now();
    // Latency is measured per record, from send to acknowledgement.
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = tokio::task::JoinSet::new();
    for i in 0..b.records {
        if b.rate > 0 && i % 64 == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / b.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let sent_at = Instant::now();
        let delivery = producer.send(ProducerRecord::new(payload.clone())).await?;
        let tx = lat_tx.clone();
        waiters.spawn(async move {
            let r = delivery.await;
            let _ = tx.send(sent_at.elapsed());
            r.map(|_| ())
        });
        while let Some(done) = waiters.try_join_next() {
            done??;
        }
    }
    while let Some(done) = waiters.join_next().await {
        done??;
    }
    producer.flush().await?;
    let elapsed = started.elapsed();
    let cpu_after = b.agent_pid.and_then(cpu_ns);
    drop(lat_tx);
    let mut lat = Vec::with_capacity(b.records as usize);
    while let Some(d) = lat_rx.recv().await {
        lat.push(d);
    }
    lat.sort();
    let bytes = b.records as f64 * b.record_bytes as f64;
    println!(
        "produce bench: {} records x {} B, acks={:?}, {} partitions",
        b.records, b.record_bytes, b.acks, b.partitions
    );
    println!("  elapsed      {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput   {:.1} MB/s, {:.0} records/s",
        bytes / elapsed.as_secs_f64() / 1e6,
        b.records as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  ack latency  p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, max {:.1} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        percentile(&lat, 0.999).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let stats = delta(&stats_before, &counters(&client).await?);
    let objects = stats.get("objects_written").copied().unwrap_or(0);
    let written = stats.get("object_bytes_written").copied().unwrap_or(0);
    println!(
        "  objects      {objects} PUTs for {:.1} MiB stored: {:.0} PUTs per GiB written",
        written as f64 / (1 << 20) as f64,
        objects as f64 / (bytes / (1u64 << 30) as f64)
    );
    if let Some(fsyncs) = stats.get("wal_fsyncs").filter(|n| **n > 0) {
        println!("  WAL          {fsyncs} fsyncs ({:.0} records per fsync)", b.records as f64 / *fsyncs as f64);
    }
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu = (after - before) as f64 / 1e9;
        println!("  agent CPU    {cpu:.2} s ({:.1} MB per CPU-second)", bytes / 1e6 / cpu.max(1e-9));
    }
    Ok(())
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
