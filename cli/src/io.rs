//! `silt produce` (stdin to a topic) and `silt consume` (a topic to stdout).

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use silt_client::{
    Acks, AutoOffsetReset, Client, Compression, ConsumedRecord, Consumer, ConsumerConfig, GroupConfig, GroupConsumer,
    Offset, Producer, ProducerConfig, ProducerRecord, Received, RecordStream, Skipped,
};

#[derive(clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value (lines without SEP have no key).
    #[arg(long)]
    key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// durable (in object storage and indexed), local (fsynced to the agent's
    /// write-ahead log; needs an agent with --cache-dir) or none (fire and forget).
    #[arg(long, default_value = "durable")]
    acks: Acks,
    /// zstd or none.
    #[arg(long, default_value = "zstd")]
    compression: Compression,
    /// Send a partition's batch once it holds this many bytes.
    #[arg(long, default_value = "1MiB", value_parser = silt_agent::config::parse_bytes)]
    batch_bytes: u64,
    /// ... or this long after its first record.
    #[arg(long, default_value = "5ms", value_parser = silt_agent::config::parse_duration)]
    linger: Duration,
    /// Send without producer ids and sequence numbers. By default a batch
    /// whose answer is lost (an agent died, a connection broke) is sent
    /// again and written exactly once; without, such records are reported
    /// as failed.
    #[arg(long)]
    no_idempotence: bool,
    /// With --key-separator: a line `KEY<SEP>` with nothing after the
    /// separator sends a tombstone (the key with no value), which deletes
    /// the key from a key-compacted topic.
    #[arg(long, requires = "key_separator")]
    null_value_on_empty: bool,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at each partition's first record (default: only new records).
    /// With --group: where the group has no committed offset.
    #[arg(long)]
    from_beginning: bool,
    /// Read as a member of this consumer group: the group's members share
    /// the topic's partitions, and each run continues where the group's
    /// committed offsets say.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    /// With --group: how long the group waits for a silent member before
    /// its partitions move (e.g. 45s).
    #[arg(long, default_value = "45s", value_parser = silt_agent::config::parse_duration)]
    session_timeout: Duration,
    /// With --group: how often a member heartbeats when nothing changes.
    #[arg(long, default_value = "3s", value_parser = silt_agent::config::parse_duration)]
    heartbeat_interval: Duration,
    /// With --group: commit the offsets of printed records at most this often
    /// (and before partitions move, and on exit).
    #[arg(long, default_value = "5s", value_parser = silt_agent::config::parse_duration)]
    auto_commit_interval: Duration,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Start at this offset (needs --partition). Past the end is an error;
    /// the end itself waits for new records.
    #[arg(long, requires = "partition", conflicts_with = "from_beginning", allow_negative_numbers = true)]
    offset: Option<i64>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit (with status 0) once no record has arrived for this many milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print each record's key before its value, separated by --key-separator.
    #[arg(long)]
    print_key: bool,
    /// Print partition:offset before each record, separated by a tab.
    #[arg(long)]
    print_offset: bool,
    /// Print each record's headers (name=value, comma-separated) before its
    /// key and value, separated by a tab.
    #[arg(long)]
    print_headers: bool,
    /// What separates the key from the value with --print-key.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

const LINES_PER_CHUNK: usize = 4096;

/// Reads stdin on a blocking thread and hands over lines in chunks.
fn read_lines(tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<Vec<u8>>>>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                chunk.push(line);
                if chunk.len() == LINES_PER_CHUNK && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

pub async fn produce(client: Client, args: &ProduceArgs) -> anyhow::Result<i32> {
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        batch_bytes: args.batch_bytes as usize,
        linger: args.linger,
        idempotence: !args.no_idempotence,
        ..Default::default()
    };
    let producer = Producer::new(client.clone(), &args.topic, config).await?;
    if let Some(p) = args.partition {
        if p >= producer.partitions() {
            bail!("topic {} has no partition {p} (it has {})", args.topic, producer.partitions());
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let reader = std::thread::spawn(move || read_lines(tx));
    let separator = args.key_separator.as_deref().map(str::as_bytes).filter(|s| !s.is_empty());
    let mut sent: u64 = 0;
    while let Some(chunk) = rx.recv().await {
        for line in chunk.context("reading stdin")? {
            let line = Bytes::from(line);
            let mut record = match separator.and_then(|sep| find(&line, sep).map(|at| (at, sep.len()))) {
                Some((at, len)) if args.null_value_on_empty && at + len == line.len() => {
                    ProducerRecord::tombstone(line.slice(..at))
                }
                Some((at, len)) => ProducerRecord::new(line.slice(at + len..)).with_key(line.slice(..at)),
                None => ProducerRecord::new(line),
            };
            record.partition = args.partition;
            let _ = producer.send(record).await.with_context(|| format!("record {}", sent + 1))?;
            sent += 1;
        }
    }
    let _ = reader.join();
    let result = producer.close().await;
    client.close();
    result.with_context(|| format!("not every one of the {sent} records was acknowledged"))?;
    eprintln!("{sent} records acknowledged");
    Ok(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub async fn consume(client: Client, args: &ConsumeArgs) -> anyhow::Result<i32> {
    if let Some(group) = &args.group {
        return consume_group(client, group, args).await;
    }
    let consumer = Consumer::new(client.clone(), &args.topic, ConsumerConfig::default()).await?;
    let start = match (args.offset, args.from_beginning) {
        (Some(n), _) => Offset::At(n),
        (None, true) => Offset::Earliest,
        (None, false) => Offset::Latest,
    };
    let assignments: Vec<(u32, Offset)> = match args.partition {
        Some(p) if p >= consumer.partitions() => {
            bail!("topic {} has no partition {p} (it has {})", args.topic, consumer.partitions())
        }
        Some(p) => vec![(p, start)],
        None => (0..consumer.partitions()).map(|p| (p, start)).collect(),
    };
    let mut stream = consumer.stream(&assignments).await?;
    let result = print_records(&mut stream, args).await;
    // Stop the fetches before the connection goes, or they report it lost.
    drop(stream);
    client.close();
    result
}

/// `consume --group`: a member of the group until a limit or Ctrl-C. It
/// commits only what it has written out (after each flush, at most every
/// `--auto-commit-interval`, before giving partitions up, and on exit),
/// then leaves, so its partitions move at once.
async fn consume_group(client: Client, group: &str, args: &ConsumeArgs) -> anyhow::Result<i32> {
    let config = GroupConfig {
        session_timeout: args.session_timeout,
        heartbeat_interval: args.heartbeat_interval,
        auto_commit: None,
        auto_offset_reset: if args.from_beginning { AutoOffsetReset::Earliest } else { AutoOffsetReset::Latest },
        ..Default::default()
    };
    let mut consumer = GroupConsumer::subscribe(client.clone(), group, &[args.topic.as_str()], config).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut count: u64 = 0;
    let mut last_commit = std::time::Instant::now();
    // When something last came: --timeout-ms counts from there.
    let mut last_seen = tokio::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result: anyhow::Result<()> = loop {
        if args.max_messages.is_some_and(|max| count >= max) {
            break Ok(());
        }
        let next = match consumer.next().now_or_never() {
            Some(n) => n,
            None => {
                if flush_out(&mut out).is_err() {
                    break Ok(());
                }
                // Nothing is waiting: commit what is written out, when due.
                let commit_due = last_commit + args.auto_commit_interval;
                if std::time::Instant::now() >= commit_due {
                    last_commit = std::time::Instant::now();
                    consumer.commit_async();
                }
                let idle_until = idle.map(|d| last_seen + d);
                let next_commit = tokio::time::Instant::from_std(last_commit + args.auto_commit_interval);
                tokio::select! {
                    n = consumer.next() => n,
                    _ = tokio::time::sleep_until(next_commit) => continue,
                    _ = async { match idle_until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => break Ok(()),
                    _ = &mut ctrl_c => break Ok(()),
                }
            }
        };
        last_seen = tokio::time::Instant::now();
        tell_skipped(consumer.skipped());
        match next {
            Some(Ok(Received::Record(record))) => {
                if out.write_all(&format_record(&record, args)).is_err() {
                    break Ok(()); // stdout closed (e.g. piped into head)
                }
                count += 1;
            }
            Some(Ok(Received::Assigned(ps))) => tracing::info!(partitions = ?ps, "assigned"),
            Some(Ok(Received::Revoked(ps))) => {
                // Everything written out of them is committed before they go.
                tracing::info!(partitions = ?ps, "revoked");
                if flush_out(&mut out).is_err() {
                    break Ok(());
                }
                if let Err(e) = consumer.commit().await {
                    tracing::warn!(error = %e, "could not commit before giving partitions up");
                }
            }
            Some(Err(e)) => break Err(e.into()),
            None => break Ok(()),
        }
    };
    let flushed = flush_out(&mut out).is_ok();
    let committed = if flushed { consumer.commit().await } else { Ok(()) };
    let _ = consumer.close().await;
    client.close();
    result?;
    committed.context("committing the group's offsets on the way out")?;
    Ok(0)
}

/// Says on stderr which offsets were jumped over because the log no
/// longer held them.
fn tell_skipped(skipped: Vec<Skipped>) {
    for s in skipped {
        let what = match s.to > s.from + 1 {
            true => format!("offsets {} to {}", s.from, s.to - 1),
            false => format!("offset {}", s.from),
        };
        eprintln!(
            "skipped {what} of {}/{}: the partition now starts at offset {} (retention removed what came before); continuing at {}",
            s.topic, s.partition, s.log_start, s.to
        );
    }
}

/// One record as a line of output.
fn format_record(record: &ConsumedRecord, args: &ConsumeArgs) -> Vec<u8> {
    let value = record.value.as_deref().unwrap_or_default();
    let mut line = Vec::with_capacity(value.len() + 32);
    if args.print_offset {
        line.extend_from_slice(format!("{}:{}\t", record.partition, record.offset).as_bytes());
    }
    if args.print_headers {
        for (i, h) in record.headers.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(h.name.as_bytes());
            line.push(b'=');
            line.extend_from_slice(&h.value);
        }
        line.push(b'\t');
    }
    if args.print_key {
        line.extend_from_slice(record.key.as_deref().unwrap_or_default());
        line.extend_from_slice(args.key_separator.as_bytes());
    }
    line.extend_from_slice(value);
    line.push(b'\n');
    line
}

/// Prints records until a limit, the end, or Ctrl-C.
async fn print_records(stream: &mut RecordStream, args: &ConsumeArgs) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut count: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.max_messages.is_some_and(|max| count >= max) {
            break;
        }
        // Write out what is buffered before waiting for more.
        let next = match stream.next().now_or_never() {
            Some(n) => n,
            None => {
                if flush_out(&mut out).is_err() {
                    return Ok(0);
                }
                let wait = async {
                    match idle {
                        Some(d) => tokio::time::timeout(d, stream.next()).await.ok(),
                        None => Some(stream.next().await),
                    }
                };
                tokio::select! {
                    n = wait => match n { Some(n) => n, None => break },
                    _ = &mut ctrl_c => break,
                }
            }
        };
        tell_skipped(stream.skipped());
        let record = match next {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let _ = flush_out(&mut out);
                return Err(e.into());
            }
            None => break,
        };
        if out.write_all(&format_record(&record, args)).is_err() {
            return Ok(0); // stdout closed (e.g. piped into head)
        }
        count += 1;
    }
    let _ = flush_out(&mut out);
    Ok(0)
}

fn flush_out(out: &mut impl Write) -> std::io::Result<()> {
    out.flush()
}
