//! `silt bench put`: what the object store itself accepts, without an
//! agent: objects of one size PUT with a few in flight for a while, then
//! deleted. It is the ceiling a `bench produce` against the same store is
//! held to (run them one after the other on the same machine).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(clap::Args)]
pub struct PutBench {
    /// The store, as the agent's --object-store names it: s3://BUCKET/PREFIX
    /// (credentials from the AWS_* variables) or file:///path.
    #[arg(long, env = "SILT_OBJECT_STORE")]
    object_store: String,
    /// The S3 endpoint, for a store that is not AWS.
    #[arg(long, env = "SILT_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The S3 region (us-east-1 when unset).
    #[arg(long, env = "AWS_REGION")]
    s3_region: Option<String>,
    /// How PUTs prove their bytes to the store, as the agent's --s3-checksum.
    #[arg(long, default_value = "crc64nvme")]
    s3_checksum: silt_agent::config::S3Checksum,
    /// The size of each object.
    #[arg(long, default_value = "8MiB", value_parser = silt_agent::config::parse_bytes)]
    object_bytes: u64,
    /// PUTs in flight at once (the agent's default --max-uploads is 4).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to keep PUTting.
    #[arg(long, default_value = "10s", value_parser = silt_agent::config::parse_duration)]
    duration: Duration,
    /// Print one JSON object (`mb_per_s`, `puts_per_s`, `p50_ms`, `p99_ms`, `max_ms`).
    #[arg(long)]
    json: bool,
}

pub async fn put(b: &PutBench) -> anyhow::Result<()> {
    anyhow::ensure!(b.object_bytes > 0 && b.concurrency > 0, "--object-bytes and --concurrency must be at least 1");
    let s3 = silt_agent::config::S3Options {
        endpoint: b.s3_endpoint.clone(),
        region: b.s3_region.clone(),
        instance_credentials: false,
        checksum: b.s3_checksum,
    };
    let store = silt_agent::log::storage::open(&b.object_store, &s3)?;
    // Bytes that do not compress, as records' payloads.
    let mut data = vec![0u8; b.object_bytes as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let data = Bytes::from(data);
    let run = format!("bench-put/{}", std::process::id());
    let latencies = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + b.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..b.concurrency {
        let (store, data, run, latencies, next) =
            (store.clone(), data.clone(), run.clone(), latencies.clone(), next.clone());
        tasks.spawn(async move {
            let mut written = Vec::new();
            while Instant::now() < until {
                let path = Path::from(format!("{run}/{:08}", next.fetch_add(1, Ordering::Relaxed)));
                let t = Instant::now();
                store.put(&path, PutPayload::from_bytes(data.clone())).await.context("PUT")?;
                let _ = latencies.lock().expect("latency lock").record(t.elapsed().as_micros() as u64);
                written.push(path);
            }
            anyhow::Ok(written)
        });
    }
    let mut written = Vec::new();
    while let Some(done) = tasks.join_next().await {
        written.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    delete_all(&store, written.clone()).await;
    let h = latencies.lock().expect("latency lock").clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let mb_per_s = written.len() as f64 * b.object_bytes as f64 / elapsed / 1e6;
    let puts_per_s = written.len() as f64 / elapsed;
    if b.json {
        println!(
            "{}",
            crate::bench::json_object(&[
                ("mb_per_s", format!("{mb_per_s:.3}")),
                ("puts_per_s", format!("{puts_per_s:.3}")),
                ("p50_ms", format!("{:.3}", ms(0.5))),
                ("p99_ms", format!("{:.3}", ms(0.99))),
                ("max_ms", format!("{:.3}", h.max() as f64 / 1e3)),
            ])
        );
        return Ok(());
    }
    println!(
        "put bench: {} objects x {} B to {}, {} in flight",
        written.len(),
        b.object_bytes,
        b.object_store,
        b.concurrency
    );
    println!("  throughput   {mb_per_s:.1} MB/s, {puts_per_s:.1} PUTs/s");
    println!("  PUT latency  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(0.5), ms(0.99), h.max() as f64 / 1e3);
    Ok(())
}

/// Deletes what the bench wrote; a failure is reported, not fatal.
async fn delete_all(store: &Arc<dyn ObjectStore>, paths: Vec<Path>) {
    for path in paths {
        if let Err(e) = store.delete(&path).await {
            eprintln!("warning: could not delete {path}: {e}");
            return;
        }
    }
}
