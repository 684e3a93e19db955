//! End-to-end tests: real agents (in this process and as `silt`
//! processes), real QUIC sockets, the real SQLite metadata store and the
//! local object store.

mod auth;
mod cache;
mod churn;
mod cli;
mod cluster;
mod connect;
mod control;
mod deploy;
mod durability;
mod flush;
mod groups;
mod harness;
mod idempotence;
mod kafka;
mod kafka_auth;
mod ops;
mod protocol;
mod s3;
mod sdk;
mod storage;
mod wal;
