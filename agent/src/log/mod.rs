//! The write path: a partition's log from the moment it is appended to
//! until it is committed.
//!
//! - [`partition`]: one actor per owned partition. It assigns offsets,
//!   hands batches on, and hears back (through its mailbox) from the WAL and
//!   the flusher; it answers producers.
//! - [`wal`]: the local write-ahead log behind `acks=local`.
//! - [`flush`]: the flush queue, and the flusher that writes objects and
//!   commits their index entries.
//! - [`storage`]: opening and checking the object store.
//! - [`folder`]: the local-folder store, writing objects out in steps.
//!
//! Batches travel down (actor, WAL, flush queue, object store); results
//! travel back up as [`partition::Report`]s on the partition's mailbox.

pub mod flush;
pub mod folder;
pub mod partition;
pub mod storage;
pub mod wal;

use tokio::sync::oneshot;

use crate::error::ServiceError;

/// How durable a batch must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once offsets are assigned.
    None,
    /// Once written to the agent's local write-ahead log (fsynced).
    Local,
    /// Once the object is stored and its index committed.
    #[default]
    Durable,
}

impl Acks {
    /// The mode's name in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Acks::None => "none",
            Acks::Local => "local",
            Acks::Durable => "durable",
        }
    }
}

/// Where a batch landed, or why it did not.
pub type Outcome = Result<(i64, i64), ServiceError>;
/// Answers a producer.
pub type Reply = oneshot::Sender<Outcome>;
/// A producer's end of a [`Reply`].
pub type Done = oneshot::Receiver<Outcome>;

/// The answers a batch owes once it settles, and what it holds until then.
pub struct Replies {
    /// Acknowledges the batch (None once answered: acks=none, or acks=local after the WAL).
    pub done: Option<Reply>,
    /// acks=local: resolved once the batch is committed.
    pub committed: Option<Reply>,
    /// Keeps the batch's WAL file until the batch is committed.
    pub wal: Option<wal::Hold>,
    /// The batch's share of the agent's in-flight byte limit.
    pub permit: tokio::sync::OwnedSemaphorePermit,
}

impl Replies {
    /// The batch is committed at `offsets`.
    pub fn commit(self, offsets: (i64, i64)) {
        for reply in [self.done, self.committed].into_iter().flatten() {
            let _ = reply.send(Ok(offsets));
        }
        if let Some(hold) = self.wal {
            hold.release();
        }
    }

    /// The batch will not be committed. Its WAL entry stays for the next
    /// start's replay (unless the topic is gone).
    pub fn fail(self, error: &ServiceError) {
        for reply in [self.done, self.committed].into_iter().flatten() {
            let _ = reply.send(Err(error.clone()));
        }
        if let (Some(hold), ServiceError::UnknownTopic(_)) = (self.wal, error) {
            hold.release();
        }
    }
}
