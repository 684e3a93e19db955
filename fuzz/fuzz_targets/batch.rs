//! Any bytes, as a batch or a run of batches: a value or an error, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(batch) = silt_wire::Batch::validate(bytes.clone()) {
        let _ = batch.records();
    }
    for batch in silt_wire::batch::split(&bytes).flatten() {
        let _ = batch.records();
    }
});
