//! Bytes to values: the layouts the agent writes to disk and to the object
//! store. Pure, total decoders (any input gives a value or an error, never a
//! panic), fuzzed in `fuzz/`.
//!
//! - [`object`]: one object per flush, batches grouped by partition, and a footer index.
//! - [`wal`]: the write-ahead log's entries.

pub mod object;
pub mod wal;
