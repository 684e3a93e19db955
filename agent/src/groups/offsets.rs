//! Offset commits, batched: every commit that arrives while a metadata
//! transaction is in flight goes into the next one (per coordination slot,
//! as many as the store allows in one), so many members' commits cost a
//! handful of transactions.

use std::sync::Arc;

use silt_metadata::catalog::{Fence, OffsetCommit};
use silt_metadata::{Catalog, CatalogError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::SharedClock;

/// Commits gathered into one batch at most.
const BATCH: usize = 8192;

type Reply = oneshot::Sender<Result<(), Arc<CatalogError>>>;

struct Job {
    commits: Vec<OffsetCommit>,
    fence: Fence,
    reply: Reply,
}

pub struct Committer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Committer {
    pub fn start(catalog: Catalog, clock: SharedClock, tasks: &TaskTracker, stop: CancellationToken) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.spawn(run(catalog, clock, rx, stop).instrument(tracing::info_span!("offsets")));
        Committer { jobs: tx }
    }

    /// Commits `commits` under `fence`; resolves once they are stored.
    pub async fn commit(&self, commits: Vec<OffsetCommit>, fence: Fence) -> Result<(), Arc<CatalogError>> {
        let (reply, rx) = oneshot::channel();
        let stopped = || {
            Arc::new(CatalogError::Store(silt_metadata::MetaError::backend(
                "offsets",
                std::io::Error::other("the agent is stopping"),
            )))
        };
        self.jobs.send(Job { commits, fence, reply }).map_err(|_| stopped())?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(catalog: Catalog, clock: SharedClock, mut jobs: mpsc::UnboundedReceiver<Job>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            j = jobs.recv() => match j { Some(j) => j, None => return },
            _ = stop.cancelled() => return,
        };
        let mut batch = vec![first];
        let mut count = batch[0].commits.len();
        while count < BATCH {
            match jobs.try_recv() {
                Ok(j) => {
                    count += j.commits.len();
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        // One set of transactions per fence (slot and epoch), in arrival order.
        while !batch.is_empty() {
            let fence = batch[0].fence.clone();
            let (same, rest): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.fence == fence);
            batch = rest;
            let commits: Vec<OffsetCommit> = same.iter().flat_map(|j| j.commits.iter().cloned()).collect();
            let result = catalog.commit_offsets(&commits, &fence, clock.now_ms()).await.map_err(Arc::new);
            for j in same {
                let _ = j.reply.send(result.clone());
            }
        }
    }
}
