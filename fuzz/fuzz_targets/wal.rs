//! Any bytes as a write-ahead-log file: the decoder keeps a valid prefix
//! and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (entries, valid) = silt_agent::format::wal::decode(data);
    assert!(valid <= data.len());
    // What it kept decodes the same on its own.
    assert_eq!(silt_agent::format::wal::decode(&data[..valid]).0.len(), entries.len());
});
