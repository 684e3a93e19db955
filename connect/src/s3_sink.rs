//! The `s3` sink: writes each partition's records as JSON lines (see
//! [`crate::json`]) to objects named
//! `PREFIX/TOPIC/PARTITION/FIRST-LAST.jsonl` (offsets zero-padded to 20
//! digits; `.jsonl.zst` with `compression = "zstd"`), rolled at
//! `flush-bytes` or `flush-interval`, whichever comes first.
//!
//! Exactly once in the bucket: the bucket is the record of what was
//! written. When a partition is assigned, the sink lists its objects and
//! continues after the last one's `LAST` (at the group's committed offset
//! only when the bucket has none for it), so a crash anywhere neither
//! loses records nor writes them twice; objects are written with
//! create-only PUTs under names derived from offsets. The group's commit
//! shows the sink's lag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use silt_client::Received;

use crate::config::S3Sink;
use crate::worker::{Task, TaskError};

/// Buffered records of one partition.
struct Pending {
    first: i64,
    last: i64,
    bytes: Vec<u8>,
    since: tokio::time::Instant,
}

/// The object name for `first..=last` of `topic`/`partition`.
pub fn object_name(prefix: &str, topic: &str, partition: u32, first: i64, last: i64, zstd: bool) -> String {
    let prefix = prefix.trim_matches('/');
    let head = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let ext = if zstd { "jsonl.zst" } else { "jsonl" };
    format!("{head}{topic}/{partition}/{first:020}-{last:020}.{ext}")
}

/// The last offset an object name covers.
fn last_of(name: &str) -> Option<i64> {
    let file = name.rsplit('/').next()?;
    let range = file.split('.').next()?;
    range.split_once('-')?.1.parse().ok()
}

fn store(config: &S3Sink) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()));
    // As the agent's --s3-checksum: the store checks a CRC-64 of each
    // object, or a SHA-256 signed into the request.
    b = if config.signed_payload {
        b.with_unsigned_payload(false)
    } else {
        b.with_unsigned_payload(true).with_checksum_algorithm(Checksum::CRC64NVME)
    };
    if let Some(e) = &config.endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://")).with_virtual_hosted_style_request(false);
    }
    Ok(Arc::new(b.build().context("the S3 sink's store")?))
}

/// Where the bucket says `topic`/`partition` continues: after its last object.
async fn next_in_bucket(
    s3: &dyn ObjectStore,
    config: &S3Sink,
    topic: &str,
    partition: u32,
) -> anyhow::Result<Option<i64>> {
    let dir = object_name(&config.prefix, topic, partition, 0, 0, false);
    let dir = Path::from(dir.rsplit_once('/').map_or("", |(d, _)| d));
    let objects: Vec<_> = s3.list(Some(&dir)).try_collect().await.context("listing the bucket")?;
    Ok(objects.iter().filter_map(|o| last_of(o.location.as_ref())).max().map(|last| last + 1))
}

async fn write(s3: &dyn ObjectStore, config: &S3Sink, topic: &str, partition: u32, p: Pending) -> anyhow::Result<()> {
    let zstd = config.zstd;
    let name = object_name(&config.prefix, topic, partition, p.first, p.last, zstd);
    let body = if zstd { zstd::encode_all(&p.bytes[..], 3).context("compressing")? } else { p.bytes };
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match s3.put_opts(&Path::from(name.as_str()), PutPayload::from(body), opts).await {
        // Written before a crash, under the same offsets: the same records.
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("writing {name}"))),
    }
}

pub async fn run(task: &Task, config: &S3Sink) -> Result<(), TaskError> {
    let s3 = store(config)?;
    let mut consumer = task.sink_consumer(&config.topics).await?;
    let mut pending: BTreeMap<(String, u32), Pending> = BTreeMap::new();
    // Records at or below these offsets are in the bucket already.
    let mut written: BTreeMap<(String, u32), i64> = BTreeMap::new();
    let tick = config.flush_interval.min(Duration::from_secs(1));
    let result: Result<(), TaskError> = loop {
        let next = match consumer.next().now_or_never() {
            Some(n) => Some(n),
            None => tokio::select! {
                n = consumer.next() => Some(n),
                _ = tokio::time::sleep(tick) => None,
                _ = task.stop.cancelled() => break Ok(()),
            },
        };
        let mut roll_all = false;
        match next {
            Some(Some(Ok(Received::Record(r)))) => {
                let key = (r.topic.to_string(), r.partition);
                if written.get(&key).is_some_and(|w| r.offset <= *w) {
                    continue; // in the bucket already
                }
                let p = pending.entry(key).or_insert_with(|| Pending {
                    first: r.offset,
                    last: r.offset,
                    bytes: Vec::new(),
                    since: tokio::time::Instant::now(),
                });
                p.last = r.offset;
                serde_json::to_writer(&mut p.bytes, &crate::json::record(&r)).expect("JSON values encode");
                p.bytes.push(b'\n');
            }
            Some(Some(Ok(Received::Assigned(ps)))) => {
                let mut failed = None;
                for (topic, partition) in ps {
                    match next_in_bucket(s3.as_ref(), config, &topic, partition).await {
                        Ok(Some(next)) => {
                            written.insert((topic.clone(), partition), next - 1);
                            if let Err(e) = consumer.seek(&topic, partition, next).await {
                                failed =
                                    Some(anyhow::Error::from(e).context("continuing after the bucket's last object"));
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e.into());
                }
                task.progressed();
            }
            Some(Some(Ok(Received::Revoked(_)))) => roll_all = true,
            Some(Some(Err(e))) => break Err(anyhow::Error::from(e).context("reading").into()),
            Some(None) => break Ok(()),
            None => {}
        }
        // Roll what is due: big enough, old enough, or going away.
        let due: Vec<(String, u32)> = pending
            .iter()
            .filter(|(_, p)| {
                roll_all || p.bytes.len() >= config.flush_bytes || p.since.elapsed() >= config.flush_interval
            })
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            continue;
        }
        let mut failed = None;
        for key in due {
            let p = pending.remove(&key).expect("listed above");
            let last = p.last;
            if let Err(e) = write(s3.as_ref(), config, &key.0, key.1, p).await {
                failed = Some(e);
                break;
            }
            written.insert(key, last);
        }
        if let Some(e) = failed {
            break Err(e.into());
        }
        // The commit may run ahead of what is still buffered: a restart
        // goes by the bucket, and the commit only shows the lag.
        if let Err(e) = consumer.commit().await {
            break Err(anyhow::Error::from(e).context("committing the group's offsets").into());
        }
        task.progressed();
    };
    let _ = consumer.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_offset_and_give_their_last_offset_back() {
        let a = object_name("exports/", "orders", 3, 0, 99, false);
        assert_eq!(a, "exports/orders/3/00000000000000000000-00000000000000000099.jsonl");
        let b = object_name("", "orders", 3, 100, 1234, true);
        assert_eq!(b, "orders/3/00000000000000000100-00000000000000001234.jsonl.zst");
        assert!(a.rsplit('/').next() < b.rsplit('/').next());
        assert_eq!(last_of(&a), Some(99));
        assert_eq!(last_of(&b), Some(1234));
        assert_eq!(last_of("orders/3/garbage"), None);
    }
}
