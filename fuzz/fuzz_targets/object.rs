//! Any bytes as an object: reading its footer gives entries within the
//! object or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = silt_agent::format::object::read_footer(data) {
        for e in entries {
            assert!(e.start + e.len <= data.len() as u64);
        }
    }
});
