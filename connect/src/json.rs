//! Records as JSON, for the sinks that write or send them:
//! `{"topic", "partition", "offset", "timestamp", "key", "value", "headers"}`.
//! Keys, values and header values are strings when they are UTF-8 (null
//! when absent); other bytes are base64 under `key_base64`, `value_base64`
//! or the header's `{"base64": ...}`.

use serde_json::{json, Map, Value};
use silt_client::ConsumedRecord;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn put_bytes(m: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            m.insert(name.into(), Value::Null);
        }
        Some(Ok(s)) => {
            m.insert(name.into(), Value::String(s.into()));
        }
        Some(Err(_)) => {
            m.insert(name.into(), Value::Null);
            m.insert(format!("{name}_base64"), Value::String(base64(bytes.unwrap_or_default())));
        }
    }
}

/// One record as a JSON object.
pub fn record(r: &ConsumedRecord) -> Value {
    let mut m = Map::new();
    m.insert("topic".into(), json!(&*r.topic));
    m.insert("partition".into(), json!(r.partition));
    m.insert("offset".into(), json!(r.offset));
    m.insert("timestamp".into(), json!(r.timestamp));
    put_bytes(&mut m, "key", r.key.as_deref());
    put_bytes(&mut m, "value", r.value.as_deref());
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|h| {
            let v = match std::str::from_utf8(&h.value) {
                Ok(s) => Value::String(s.into()),
                Err(_) => json!({ "base64": base64(&h.value) }),
            };
            (h.name.clone(), v)
        })
        .collect();
    m.insert("headers".into(), Value::Object(headers));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        for (raw, want) in
            [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"\xff\xfe\xfd\x00", "//79AA==")]
        {
            assert_eq!(base64(raw), want);
        }
    }
}
