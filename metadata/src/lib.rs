//! silt's metadata: a transactional ordered key-value store and the typed
//! catalog that lays silt's state out in it.
//!
//! - [`store`]: the [`MetaStore`] and [`Transaction`] traits every backend implements.
//! - [`sqlite`]: the embedded backend (one file, WAL mode, several processes).
//! - `etcd` (feature `etcd`): etcd transactions against a cluster.
//! - `tikv` (feature `tikv`): TiKV optimistic transactions against PD endpoints.
//! - [`catalog`]: topics, partitions, leases and the segment index, typed,
//!   with the whole key layout in one place.
//! - [`testing`] (feature `testing`): the conformance suite every backend runs.
//! - [`metered`]: a store wrapper that counts reads, writes and conflicts.
//! - [`codec`]: the small binary codec the catalog's values use.

pub mod catalog;
pub mod codec;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod metered;
pub mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tikv")]
pub mod tikv;

pub use catalog::Catalog;
pub use error::{CatalogError, MetaError};
pub use metered::{MetaStats, MeteredStore};
pub use sqlite::SqliteStore;
pub use store::{open, MetaStore, Transaction};
