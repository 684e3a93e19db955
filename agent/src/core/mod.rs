//! Pure decisions: no tokio, no I/O. Each module is a plain function or a
//! state machine that takes the state and the time (milliseconds from the
//! injected clock) and returns what to do; the layers above drive them.
//!
//! - [`ownership`]: which partitions this agent should own (sticky, even shares).
//! - [`session`]: when to renew the agent's session, and what leaders do when it lapses.
//! - [`handover`]: when a partition being given up may be released.
//! - [`groups`]: consumer groups: membership, a sticky balanced assignment, and moving partitions safely.
//! - [`producers`]: idempotent producers' sequences, so a re-sent batch is written once.
//! - [`waiters`]: replies that wait until an offset is committed.
//! - [`flush`]: when buffered batches are due to be flushed.
//! - [`replay`]: which write-ahead-log entries continue a partition's log.
//! - [`topic_config`]: topic config keys, their values, and a topic's effective settings.
//! - [`retention`]: how far a partition's log start may advance.
//! - [`compaction`]: which runs of small index entries to rewrite into per-partition segments.
//! - [`key_compaction`]: for `cleanup.policy=compact`, what to clean, when, and which records survive.
//! - [`gc`]: which objects a bucket sweep checks.
//! - [`connectors`]: which connectors a connect worker holds.
//! - [`acl`]: who may do what (Kafka's ACL rules), for authorization.

pub mod acl;
pub mod compaction;
pub mod connectors;
pub mod flush;
pub mod gc;
pub mod groups;
pub mod handover;
pub mod key_compaction;
pub mod ownership;
pub mod producers;
pub mod replay;
pub mod retention;
pub mod session;
pub mod topic_config;
pub mod waiters;
