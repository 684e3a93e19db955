//! The `http` sink: POSTs batches of records as a JSON array (see
//! [`crate::json`]) to a URL, reading through a consumer group named after
//! the connector.
//!
//! - 2xx: delivered.
//! - 408, 429, 5xx or no answer: retried with backoff (0.2 s doubling to
//!   10 s, ten times; then the task fails and is retried from the last
//!   commit).
//! - Any other 4xx refuses the batch: it is split in halves until each
//!   refusal is one record, which goes to `dead-letter-topic` (with
//!   headers naming where it came from and why), or, without one, fails
//!   the task.
//!
//! Offsets are committed once a batch is delivered or dead-lettered (at
//! least once: a crash may send a batch again).

use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use silt_client::{ConsumedRecord, Producer, ProducerConfig, ProducerRecord, Received};

use crate::config::HttpSink;
use crate::worker::{Task, TaskError};

/// Retries of a batch the endpoint did not take (for now) before the task fails.
const RETRIES: u32 = 10;
/// A batch is sent once it holds this many records, or nothing more is waiting.
const MAX_BATCH: usize = 500;

/// How the endpoint answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Delivered,
    /// A 4xx other than 408 and 429: sending it again will not help.
    Refused(String),
    /// Worth sending again.
    Retry(String),
}

fn answer_of(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        408 | 429 => Answer::Retry(format!("HTTP {status}")),
        400..=499 => Answer::Refused(format!("HTTP {status}")),
        _ => Answer::Retry(format!("HTTP {status}")),
    }
}

async fn post(http: &reqwest::Client, url: &str, records: &[ConsumedRecord]) -> Answer {
    let body: Vec<serde_json::Value> = records.iter().map(crate::json::record).collect();
    let body = serde_json::to_vec(&body).expect("JSON values encode");
    let sent = http.post(url).header("content-type", "application/json").body(body).send().await;
    match sent {
        Ok(r) => answer_of(r.status().as_u16()),
        Err(e) => Answer::Retry(format!("{e}")),
    }
}

/// Sends `records` until delivered or refused, with backoff.
async fn deliver(
    task: &Task,
    http: &reqwest::Client,
    url: &str,
    records: &[ConsumedRecord],
) -> Result<Answer, TaskError> {
    let mut backoff = Duration::from_millis(200);
    for attempt in 0..=RETRIES {
        match post(http, url, records).await {
            Answer::Retry(why) if attempt < RETRIES => {
                tracing::debug!(connector = %task.name, %why, ?backoff, "retrying a batch");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = task.stop.cancelled() => return Err(anyhow::anyhow!("stopped").into()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Answer::Retry(why) => {
                return Err(anyhow::anyhow!("{url} did not take a batch after {RETRIES} retries: {why}").into())
            }
            other => return Ok(other),
        }
    }
    unreachable!("the last attempt returns")
}

/// Delivers a batch; what the endpoint refuses goes to the dead-letter
/// topic. A refused batch is split in halves until each refusal is one
/// record, so the rest is delivered in few requests.
async fn sink_batch(
    task: &Task,
    http: &reqwest::Client,
    config: &HttpSink,
    dead: Option<&Producer>,
    batch: &[ConsumedRecord],
) -> Result<(), TaskError> {
    let mut todo: Vec<&[ConsumedRecord]> = vec![batch];
    while let Some(part) = todo.pop() {
        match deliver(task, http, &config.url, part).await? {
            Answer::Delivered => {}
            Answer::Refused(why) if part.len() == 1 => dead_letter(task, config, dead, &part[0], &why).await?,
            Answer::Refused(_) => {
                let (a, b) = part.split_at(part.len() / 2);
                // In order: the first half is taken next.
                todo.push(b);
                todo.push(a);
            }
            Answer::Retry(_) => unreachable!("deliver retries until it cannot"),
        }
    }
    Ok(())
}

async fn dead_letter(
    task: &Task,
    config: &HttpSink,
    dead: Option<&Producer>,
    r: &ConsumedRecord,
    why: &str,
) -> Result<(), TaskError> {
    let Some(dead) = dead else {
        return Err(anyhow::anyhow!(
            "{} refused {}/{} offset {} ({why}) and there is no dead-letter-topic",
            config.url,
            r.topic,
            r.partition,
            r.offset
        )
        .into());
    };
    tracing::info!(connector = %task.name, topic = %r.topic, partition = r.partition, offset = r.offset, %why, "dead-lettered");
    let mut record = match (&r.value, &r.key) {
        (None, Some(k)) => ProducerRecord::tombstone(k.clone()),
        (v, _) => ProducerRecord::new(v.clone().unwrap_or_default()),
    }
    .with_header("silt.dlq.topic", r.topic.to_string().into_bytes())
    .with_header("silt.dlq.partition", r.partition.to_string().into_bytes())
    .with_header("silt.dlq.offset", r.offset.to_string().into_bytes())
    .with_header("silt.dlq.error", why.to_string().into_bytes());
    if let Some(k) = &r.key {
        record = record.with_key(k.clone());
    }
    for h in &r.headers {
        record = record.with_header(h.name.clone(), h.value.clone());
    }
    dead.send(record).await.context("dead-lettering a record")?;
    Ok(())
}

pub async fn run(task: &Task, config: &HttpSink) -> Result<(), TaskError> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("an HTTP client")?;
    let dead = match &config.dead_letter_topic {
        Some(t) => {
            if let Err(e) = task.client.create_topic(t, 1).await {
                if e.code() != Some(silt_client::ErrorCode::TopicExists) {
                    return Err(anyhow::Error::from(e).context(format!("creating topic {t}")).into());
                }
            }
            Some(
                Producer::new(task.client.clone(), t, ProducerConfig::default())
                    .await
                    .context("dead-letter producer")?,
            )
        }
        None => None,
    };
    let mut consumer = task.sink_consumer(&config.topics).await?;
    let mut batch: Vec<ConsumedRecord> = Vec::new();
    let result: Result<(), TaskError> = loop {
        let next = match consumer.next().now_or_never() {
            Some(n) => Some(n),
            None if !batch.is_empty() => None,
            None => tokio::select! {
                n = consumer.next() => Some(n),
                _ = task.stop.cancelled() => break Ok(()),
            },
        };
        let flush = match next {
            Some(Some(Ok(Received::Record(r)))) => {
                batch.push(r);
                batch.len() >= MAX_BATCH
            }
            Some(Some(Ok(Received::Assigned(_)))) => false,
            // Before partitions go, what was read of them is delivered and committed.
            Some(Some(Ok(Received::Revoked(_)))) => true,
            Some(Some(Err(e))) => break Err(anyhow::Error::from(e).context("reading").into()),
            Some(None) => break Ok(()),
            None => true, // nothing more waiting
        };
        if flush && !batch.is_empty() {
            if let Err(e) = sink_batch(task, &http, config, dead.as_ref(), &batch).await {
                break Err(e);
            }
            if let Some(dead) = &dead {
                if let Err(e) = dead.flush().await {
                    break Err(anyhow::Error::from(e).context("dead-lettering").into());
                }
            }
            batch.clear();
            if let Err(e) = consumer.commit().await {
                break Err(anyhow::Error::from(e).context("committing the group's offsets").into());
            }
            task.progressed();
        }
    };
    let _ = consumer.close().await;
    if let Some(dead) = dead {
        let _ = dead.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_deliver_retry_or_refuse() {
        for (status, want) in [
            (200, Answer::Delivered),
            (204, Answer::Delivered),
            (400, Answer::Refused("HTTP 400".into())),
            (422, Answer::Refused("HTTP 422".into())),
            (408, Answer::Retry("HTTP 408".into())),
            (429, Answer::Retry("HTTP 429".into())),
            (500, Answer::Retry("HTTP 500".into())),
            (503, Answer::Retry("HTTP 503".into())),
            (302, Answer::Retry("HTTP 302".into())),
        ] {
            assert_eq!(answer_of(status), want, "{status}");
        }
    }
}
