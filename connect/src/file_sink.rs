//! The `file` sink: appends each record's value and a newline to a file,
//! reading through a consumer group named after the connector. Offsets are
//! committed only after what was read is written and synced, so a crash
//! loses nothing; it may append again what came after the last commit
//! (at least once).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use silt_client::{GroupConsumer, Received};

use crate::config::FileSink;
use crate::worker::{Task, TaskError};

/// The longest a written record waits for its offset's commit.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

pub async fn run(task: &Task, config: &FileSink) -> Result<(), TaskError> {
    let mut consumer = task.sink_consumer(&config.topics).await?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.path)
        .with_context(|| format!("opening {}", config.path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut dirty = false;
    let mut last_commit = tokio::time::Instant::now();
    let result: Result<(), TaskError> = loop {
        let next = match consumer.next().now_or_never() {
            Some(n) => n,
            None => {
                // Nothing waiting: make what was written durable, then commit.
                if dirty && last_commit.elapsed() >= COMMIT_EVERY {
                    if let Err(e) = sync_and_commit(&mut out, &consumer).await {
                        break Err(e);
                    }
                    task.progressed();
                    dirty = false;
                    last_commit = tokio::time::Instant::now();
                }
                tokio::select! {
                    n = consumer.next() => n,
                    _ = tokio::time::sleep(COMMIT_EVERY) => continue,
                    _ = task.stop.cancelled() => break Ok(()),
                }
            }
        };
        match next {
            Some(Ok(Received::Record(r))) => {
                let value = r.value.as_deref().unwrap_or_default();
                if let Err(e) = out.write_all(value).and_then(|_| out.write_all(b"\n")) {
                    break Err(anyhow::Error::from(e).context(format!("writing {}", config.path.display())).into());
                }
                dirty = true;
            }
            Some(Ok(Received::Revoked(_))) => {
                // What was written of them is committed before they go.
                if let Err(e) = sync_and_commit(&mut out, &consumer).await {
                    break Err(e);
                }
                dirty = false;
            }
            Some(Ok(Received::Assigned(ps))) => {
                tracing::info!(connector = %task.name, partitions = ?ps, "assigned");
                task.progressed();
            }
            Some(Err(e)) => break Err(anyhow::Error::from(e).context("reading").into()),
            None => break Ok(()),
        }
    };
    let synced = if dirty { sync_and_commit(&mut out, &consumer).await } else { Ok(()) };
    let _ = consumer.close().await;
    result.and(synced)
}

async fn sync_and_commit(
    out: &mut std::io::BufWriter<std::fs::File>,
    consumer: &GroupConsumer,
) -> Result<(), TaskError> {
    out.flush().context("writing the sink's file")?;
    out.get_ref().sync_data().context("syncing the sink's file")?;
    consumer.commit().await.context("committing the group's offsets")?;
    Ok(())
}
