//! The silt agent: a stateless broker. It buffers producers' batches,
//! flushes them as objects, records them in the metadata store, and serves
//! reads, all over QUIC.
//!
//! - [`server`]: the QUIC front end and the agent's lifecycle ([`Agent`]).
//! - [`service`]: what each request does, independent of the protocol.
//! - [`partition`]: one actor per owned partition; offsets are assigned there.
//! - [`producers`]: idempotent producers' sequences, so a re-sent batch is written once.
//! - [`flush`]: the flush policy and the loop that writes objects and commits the index.
//! - [`object`]: the object layout (batches grouped by partition + footer).
//! - [`wal`]: the local write-ahead log behind `acks=local`, striped over cache dirs.
//! - [`read`]: index lookups, ranged reads and the recent-object cache.
//! - [`cache`]: the foyer read cache (memory + cache-dir disks) in front of the object store.
//! - [`storage`]: opening and checking the object store (`file://`, `s3://`).
//! - [`ownership`]: which partitions this agent should own (a plain function).
//! - [`metrics`]: the counters answered to `Stats` requests.
//! - [`config`], [`tls`], [`codes`] (errors to wire codes), [`error`].

pub mod cache;
pub mod codes;
pub mod config;
mod error;
pub mod flush;
pub mod lifecycle;
pub mod metrics;
pub mod object;
pub mod ownership;
pub mod partition;
pub mod producers;
pub mod read;
pub mod server;
pub mod service;
pub mod storage;
pub mod tls;
pub mod wal;

pub use config::{Args, Config};
pub use error::{AgentError, ServiceError};
pub use server::Agent;
