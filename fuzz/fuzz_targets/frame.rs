//! Any bytes, as a frame and then as a request or a response: never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use silt_wire::frame::{parse_length, Frame, PREFIX_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < PREFIX_LEN {
        return;
    }
    let prefix: [u8; PREFIX_LEN] = data[..PREFIX_LEN].try_into().unwrap();
    if parse_length(prefix, 1 << 20).is_err() {
        return;
    }
    if let Ok(frame) = Frame::decode(Bytes::copy_from_slice(&data[PREFIX_LEN..])) {
        let _ = silt_wire::Request::decode(&frame);
        let _ = silt_wire::Response::decode(&frame);
    }
});
