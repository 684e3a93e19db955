//! A Fetch response (versions 4 to 12) written as chunks: the fields around
//! each partition's records, and the records themselves as they are. The
//! protocol crate's encoder would copy every record byte once more into
//! one buffer; fetches are most of what a consumer costs the agent.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// An array's length: compact (length + 1, as a varint) in flexible versions.
fn put_len(out: &mut BytesMut, len: usize, flexible: bool) {
    match flexible {
        true => put_uvarint(out, len as u64 + 1),
        false => out.put_i32(len as i32),
    }
}

fn put_str(out: &mut BytesMut, s: &str, flexible: bool) {
    match flexible {
        true => put_uvarint(out, s.len() as u64 + 1),
        false => out.put_i16(s.len() as i16),
    }
    out.put_slice(s.as_bytes());
}

/// The whole response frame (size, header, body) as chunks to write in
/// order. Fields the listener never sets (aborted transactions, diverging
/// epochs, snapshot ids, the preferred replica) are written as empty.
pub fn fetch_frame(r: &FetchResponse, version: i16, correlation_id: i32) -> Vec<Bytes> {
    debug_assert!((4..=12).contains(&version));
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // the frame's size, below
    out.put_i32(correlation_id);
    if flexible {
        out.put_u8(0); // the header's tagged fields
    }
    out.put_i32(r.throttle_time_ms);
    if version >= 7 {
        out.put_i16(r.error_code);
        out.put_i32(r.session_id);
    }
    put_len(&mut out, r.responses.len(), flexible);
    for t in &r.responses {
        put_str(&mut out, &t.topic, flexible);
        put_len(&mut out, t.partitions.len(), flexible);
        for p in &t.partitions {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            out.put_i64(p.high_watermark);
            out.put_i64(p.last_stable_offset);
            if version >= 5 {
                out.put_i64(p.log_start_offset);
            }
            put_len(&mut out, 0, flexible); // aborted transactions: none
            if version >= 11 {
                out.put_i32(-1); // preferred read replica: none
            }
            let records = p.records.clone().unwrap_or_default();
            put_len(&mut out, records.len(), flexible);
            if !records.is_empty() {
                chunks.push(out.split().freeze());
                chunks.push(records);
            }
            if flexible {
                out.put_u8(0); // the partition's tagged fields
            }
        }
        if flexible {
            out.put_u8(0); // the topic's tagged fields
        }
    }
    if flexible {
        out.put_u8(0); // the body's tagged fields
    }
    chunks.push(out.freeze());
    let size = chunks.iter().map(Bytes::len).sum::<usize>() - 4;
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..4].copy_from_slice(&(size as i32).to_be_bytes());
    chunks[0] = first.freeze();
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn sample(version: i16) -> FetchResponse {
        let partition = |i: i32, records: &'static [u8]| {
            let mut p = PartitionData::default()
                .with_partition_index(i)
                .with_error_code(if records.is_empty() { 1 } else { 0 })
                .with_high_watermark(100 + i64::from(i))
                .with_last_stable_offset(100 + i64::from(i))
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(Bytes::from_static(records)));
            if version >= 5 {
                p.log_start_offset = 7;
            }
            p
        };
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![partition(0, b"batch-bytes"), partition(1, b"")]),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("é")))
                .with_partitions(vec![partition(3, &[9; 300])]),
        ])
    }

    #[test]
    fn the_chunks_decode_to_the_response_at_every_version() {
        for version in 4..=12 {
            let want = sample(version);
            let chunks = fetch_frame(&want, version, 42);
            assert!(chunks
                .iter()
                .any(|c| c.as_ptr() == want.responses[1].partitions[0].records.as_ref().unwrap().as_ptr()));
            let mut frame = Bytes::from(chunks.concat());
            assert_eq!(frame.get_i32() as usize, frame.len(), "v{version}: the size");
            assert_eq!(frame.get_i32(), 42);
            if ApiKey::Fetch.response_header_version(version) >= 1 {
                assert_eq!(frame.get_u8(), 0);
            }
            let got = FetchResponse::decode(&mut frame, version).unwrap();
            assert!(frame.is_empty(), "v{version}: nothing after the body");
            assert_eq!(got, want, "v{version}");
        }
    }
}
