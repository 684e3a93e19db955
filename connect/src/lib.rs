//! `silt connect`: stateless workers that run source and sink connectors,
//! with their configs, claims and progress in silt's metadata store
//! (reached through the agents).
//!
//! - [`config`]: connector configs (TOML), checked whole, refusals by key.
//! - [`worker`]: the worker loop: rounds that claim connectors, tasks
//!   started, stopped and retried.
//! - [`file_source`]: tails files into a topic.
//! - [`postgres_source`]: change data capture from PostgreSQL ([`pgoutput`] decodes its messages).
//! - [`file_sink`]: appends a group's records to a file.
//! - [`http_sink`]: POSTs a group's records to a URL, refused ones to a dead-letter topic.
//! - [`s3_sink`]: writes a group's records to JSON-lines objects, exactly once in the bucket.
//! - [`json`]: records as JSON.

pub mod config;
pub mod file_sink;
pub mod file_source;
pub mod http_sink;
pub mod json;
pub mod pgoutput;
pub mod postgres_source;
pub mod s3_sink;
pub mod worker;

pub use config::{ConfigError, ConnectorConfig, Kind};
pub use worker::{run, WorkerConfig};
