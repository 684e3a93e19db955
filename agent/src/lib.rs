//! The silt agent: a stateless broker. It buffers producers' batches,
//! flushes them as objects, records them in the metadata store, and serves
//! reads, all over QUIC.
//!
//! Folders are layers; imports between them point one way, bottom up:
//!
//! - leaves: [`config`], [`error`], [`clock`] (injected time), [`metrics`], [`failpoint`] (crash points for tests), `disk` (direct I/O on local files).
//! - [`core`]: pure decisions, no tokio and no I/O: ownership, the session
//!   and its leases, handover, producer sequences, flush policy, WAL replay.
//! - [`format`]: bytes to values: the object layout and the WAL entry.
//! - [`read`]: index lookups, ranged reads, the recent-object and read caches.
//! - [`log`]: the write path: partition actors, the WAL, the flusher, the object store.
//! - [`cluster`]: the session, the ownership rounds, taking and handing over partitions.
//! - [`groups`]: consumer-group coordination (groups hash onto an internal topic's partitions).
//! - [`upkeep`]: storage over time: retention, object garbage collection.
//! - [`service`]: protocol-neutral handlers (admin, produce, fetch) on the service's own types.
//! - [`frontend`]: protocols over the service: [`frontend::quic`].
//! - [`agent`]: start and shutdown, wiring the layers together.

pub mod agent;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod core;
mod disk;
mod error;
pub mod failpoint;
pub mod format;
pub mod frontend;
pub mod groups;
pub mod log;
pub mod metrics;
pub mod read;
pub mod service;
pub mod upkeep;

pub use agent::Agent;
pub use config::{Args, Config};
pub use error::{AgentError, ServiceError};
