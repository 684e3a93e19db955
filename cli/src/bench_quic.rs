//! `silt bench quic`: the ceiling QUIC itself sets on this machine, with
//! silt's own TLS and transport settings and no silt protocol: one stream
//! of `--bytes`, written in `--chunk-bytes` chunks (as a producer writes its
//! batches) to a server on 127.0.0.1 that reads and discards them. The
//! server runs on a runtime of its own, as an agent would, inside this
//! process; the CPU reported is the process's (both ends).

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use silt_agent::config::TlsSource;
use silt_agent::frontend::quic::tls;
use silt_client::{Client, ClientConfig};

#[derive(clap::Args)]
pub struct QuicBench {
    /// Bytes to send in all.
    #[arg(long, default_value = "2GiB", value_parser = silt_agent::config::parse_bytes)]
    bytes: u64,
    /// Bytes per write.
    #[arg(long, default_value = "1MiB", value_parser = silt_agent::config::parse_bytes)]
    chunk_bytes: u64,
    /// Print one JSON object (`mb_per_s`, `cpu_s`, `mb_per_cpu_s`).
    #[arg(long)]
    json: bool,
}

/// The receiving end: accepts one connection and one stream, reads it to
/// its end; the bytes and the time from the first byte to the last.
async fn serve(endpoint: quinn::Endpoint) -> anyhow::Result<(u64, Duration)> {
    let conn = endpoint.accept().await.context("no connection came")?.await?;
    let (_send, mut recv) = conn.accept_bi().await?;
    let mut started = None;
    let mut n = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        started.get_or_insert_with(Instant::now);
        n += chunk.bytes.len() as u64;
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    conn.close(0u32.into(), b"done");
    Ok((n, elapsed))
}

pub async fn quic(b: &QuicBench) -> anyhow::Result<()> {
    anyhow::ensure!(b.bytes > 0 && b.chunk_bytes > 0, "--bytes and --chunk-bytes must be at least 1");
    let dir = std::env::temp_dir().join(format!("silt-bench-quic-{}", std::process::id()));
    let result = measure(b, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(b: &QuicBench, dir: &std::path::Path) -> anyhow::Result<()> {
    let material = tls::load(&TlsSource::LocalCa(dir.to_path_buf()), &tls::default_names("127.0.0.1"))?;
    let server_config = tls::server_config(material, &tls::ClientCerts::Ignored, 16)?;
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let endpoint = {
        let _guard = server.enter();
        tls::server_endpoint(server_config, "127.0.0.1:0".parse().expect("an address"))?
    };
    let addr = endpoint.local_addr()?;
    let received = server.spawn(serve(endpoint));

    let config = ClientConfig { agent: addr.to_string(), ca: Some(dir.join(tls::CA_FILE)), ..Default::default() };
    let client = Client::connect(config).await?;
    let cpu_before = crate::bench::cpu_ns(std::process::id());
    let (mut send, _recv) = client.quic_connection().open_bi().await?;
    let chunk = Bytes::from(vec![0x5au8; b.chunk_bytes as usize]);
    let mut left = b.bytes;
    while left > 0 {
        let n = left.min(b.chunk_bytes);
        send.write_chunk(chunk.slice(..n as usize)).await?;
        left -= n;
    }
    send.finish()?;
    let (n, elapsed) = received.await??;
    let cpu = crate::bench::cpu_ns(std::process::id()).zip(cpu_before).map(|(a, b)| (a - b) as f64 / 1e9);
    client.close();
    server.shutdown_background();
    anyhow::ensure!(n == b.bytes, "the server read {n} bytes of {}", b.bytes);
    let mb_per_s = n as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    let per_cpu = cpu.map(|c| n as f64 / 1e6 / c.max(1e-9));
    if b.json {
        use crate::bench::{json_object, json_opt};
        let fields =
            [("mb_per_s", format!("{mb_per_s:.3}")), ("cpu_s", json_opt(cpu)), ("mb_per_cpu_s", json_opt(per_cpu))];
        println!("{}", json_object(&fields));
        return Ok(());
    }
    println!("quic bench: {n} bytes on one stream over 127.0.0.1, {} B writes", b.chunk_bytes);
    println!("  throughput   {mb_per_s:.1} MB/s");
    if let (Some(cpu), Some(per)) = (cpu, per_cpu) {
        println!("  CPU          {cpu:.2} s, both ends ({per:.1} MB per CPU-second)");
    }
    Ok(())
}
