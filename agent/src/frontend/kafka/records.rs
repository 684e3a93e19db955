//! Kafka's record batch (format v2, "magic 2") to silt's batch and back.
//!
//! The two formats carry the same things (offsets, timestamps, producer id,
//! epoch and sequence; records with key, value and headers) but frame the
//! records differently, so records are re-framed at the edge:
//! - produce: the CRC is checked, the payload decompressed (gzip, snappy
//!   raw or xerial-framed, lz4 frames, zstd; never past silt's limit on a
//!   batch's decompressed size), and the records written into a silt batch:
//!   uncompressed when they came uncompressed, zstd otherwise;
//! - fetch: silt batches are written out as uncompressed Kafka batches
//!   (cheaper for the agent than compressing again; clients read any codec).
//!
//! Kafka's batch (big-endian; varints zigzag):
//!
//! ```text
//!  0  base offset i64        8  batch length i32     12  partition leader epoch i32
//! 16  magic i8 (2)          17  CRC-32C u32 over every byte from 21 to the end
//! 21  attributes i16 (bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control)
//! 23  last offset delta i32 27  base timestamp i64   35  max timestamp i64
//! 43  producer id i64       51  producer epoch i16   53  base sequence i32
//! 57  record count i32      61  records
//! record: length, attributes i8, timestamp delta, offset delta, key length,
//!         key, value length, value, header count, (key length, key, value length, value)*
//! ```

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use silt_wire::batch::{record_refs, Batch, BatchBuilder, Compression, Header, MAX_UNCOMPRESSED};

const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;
const MAGIC: i8 = 2;

/// Why bytes from a Kafka producer are not a batch silt takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record batch is truncated: {0}")]
    Truncated(&'static str),
    #[error("record batch format (magic) {0} is not supported; only v2 is")]
    Magic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("compression codec {0} is not known")]
    Codec(u8),
    #[error("transactional and control batches are not supported")]
    Transactional,
    #[error("record batch does not decompress: {0}")]
    Decompress(String),
    #[error("record batch decompresses to more than {MAX_UNCOMPRESSED} bytes")]
    TooLarge,
    #[error("malformed record: {0}")]
    Record(&'static str),
    #[error("record batch holds no records")]
    Empty,
    #[error("record offsets must run 0, 1, 2... in a produced batch")]
    Offsets,
}

/// A big-endian and zigzag-varint reader over a slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError::Record(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(self.take(1, what)?[0])
    }

    fn varlong(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8(what)?;
            if shift == 63 && b > 1 {
                return Err(RecordError::Record(what));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(RecordError::Record(what))
    }

    fn varint(&mut self, what: &'static str) -> Result<i32, RecordError> {
        i32::try_from(self.varlong(what)?).map_err(|_| RecordError::Record(what))
    }

    /// A length-prefixed field; None for length -1.
    fn bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, RecordError> {
        match self.varint(what)? {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(self.take(n as usize, what)?)),
            _ => Err(RecordError::Record(what)),
        }
    }
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("in bounds")
}

/// Splits a produce request's records into its batches.
pub fn split(records: &Bytes) -> Result<Vec<Bytes>, RecordError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        if records.len() - pos < 12 {
            return Err(RecordError::Truncated("a batch header"));
        }
        let len = i32::from_be_bytes(be(records, pos + 8));
        let total = usize::try_from(len).map_err(|_| RecordError::Truncated("a negative batch length"))? + 12;
        if records.len() - pos < total {
            return Err(RecordError::Truncated("a batch"));
        }
        out.push(records.slice(pos..pos + total));
        pos += total;
    }
    Ok(out)
}

/// Reads `input` through a decoder, failing past silt's batch limit.
fn bounded(mut reader: impl Read) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    (&mut reader)
        .take(MAX_UNCOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordError::Decompress(e.to_string()))?;
    if out.len() > MAX_UNCOMPRESSED {
        return Err(RecordError::TooLarge);
    }
    Ok(out)
}

fn snappy_raw(block: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let len = snap::raw::decompress_len(block).map_err(|e| RecordError::Decompress(e.to_string()))?;
    if out.len() + len > MAX_UNCOMPRESSED {
        return Err(RecordError::TooLarge);
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| RecordError::Decompress(e.to_string()))?;
    Ok(())
}

/// Snappy as Kafka clients write it: raw, or in xerial's framing (a magic
/// header, then length-prefixed raw blocks), as Java clients do.
fn snappy(data: &[u8]) -> Result<Vec<u8>, RecordError> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let mut out = Vec::new();
    if !data.starts_with(XERIAL) {
        snappy_raw(data, &mut out)?;
        return Ok(out);
    }
    let mut r = Reader { buf: data.get(16..).ok_or(RecordError::Truncated("a snappy header"))? };
    while !r.buf.is_empty() {
        let len = u32::from_be_bytes(be(r.take(4, "snappy block length")?, 0)) as usize;
        snappy_raw(r.take(len, "snappy block")?, &mut out)?;
    }
    Ok(out)
}

fn decompress(codec: u8, data: &[u8]) -> Result<Vec<u8>, RecordError> {
    match codec {
        1 => bounded(flate2::read::MultiGzDecoder::new(data)),
        2 => snappy(data),
        3 => bounded(lz4_flex::frame::FrameDecoder::new(data)),
        4 => bounded(zstd::stream::read::Decoder::new(data).map_err(|e| RecordError::Decompress(e.to_string()))?),
        other => Err(RecordError::Codec(other)),
    }
}

/// One Kafka batch from a producer as a silt batch (base offset 0, for the
/// agent to stamp): CRC checked, records re-framed, producer fields kept.
pub fn to_silt(kafka: &[u8]) -> Result<Batch, RecordError> {
    if kafka.len() < HEADER_LEN {
        return Err(RecordError::Truncated("a batch header"));
    }
    let magic = kafka[16] as i8;
    if magic != MAGIC {
        return Err(RecordError::Magic(magic));
    }
    let stored = u32::from_be_bytes(be(kafka, 17));
    let computed = crc32c::crc32c(&kafka[CRC_START..]);
    if stored != computed {
        return Err(RecordError::Crc { stored, computed });
    }
    let attributes = i16::from_be_bytes(be(kafka, 21));
    if attributes & 0x30 != 0 {
        return Err(RecordError::Transactional);
    }
    let codec = (attributes & 0x07) as u8;
    let last_offset_delta = i32::from_be_bytes(be(kafka, 23));
    let base_timestamp = i64::from_be_bytes(be(kafka, 27));
    let producer_id = i64::from_be_bytes(be(kafka, 43));
    let producer_epoch = i16::from_be_bytes(be(kafka, 51));
    let base_sequence = i32::from_be_bytes(be(kafka, 53));
    let count = i32::from_be_bytes(be(kafka, 57));
    if count <= 0 {
        return Err(RecordError::Empty);
    }
    if last_offset_delta != count - 1 {
        return Err(RecordError::Offsets);
    }
    let payload = &kafka[HEADER_LEN..];
    let plain;
    let records: &[u8] = match codec {
        0 => payload,
        c => {
            plain = decompress(c, payload)?;
            &plain
        }
    };
    let compression = if codec == 0 { Compression::None } else { Compression::Zstd };
    let mut builder = BatchBuilder::with_capacity(compression, records.len());
    if producer_id >= 0 {
        builder.set_producer(producer_id, producer_epoch, base_sequence);
    }
    let mut r = Reader { buf: records };
    let mut headers = Vec::new();
    for i in 0..count {
        let len = r.varint("record length")?;
        let body = r.take(usize::try_from(len).map_err(|_| RecordError::Record("record length"))?, "record")?;
        let mut rr = Reader { buf: body };
        let _attributes = rr.u8("record attributes")?;
        let ts_delta = rr.varlong("timestamp delta")?;
        if rr.varint("offset delta")? != i {
            return Err(RecordError::Offsets);
        }
        let key = rr.bytes("key")?;
        let value = rr.bytes("value")?;
        let n = rr.varint("header count")?;
        if n < 0 || n as usize > rr.buf.len() / 2 {
            return Err(RecordError::Record("header count"));
        }
        headers.clear();
        for _ in 0..n {
            let name = rr.bytes("header key")?.ok_or(RecordError::Record("header key"))?;
            let name = std::str::from_utf8(name).map_err(|_| RecordError::Record("header key is not UTF-8"))?;
            // A null header value becomes an empty one: silt's headers always have a value.
            let value = rr.bytes("header value")?.map(Bytes::copy_from_slice).unwrap_or_default();
            headers.push(Header { name: name.to_string(), value });
        }
        if !rr.buf.is_empty() {
            return Err(RecordError::Record("bytes after a record's headers"));
        }
        builder.push_record(base_timestamp.wrapping_add(ts_delta), key, value, &headers);
    }
    if !r.buf.is_empty() {
        return Err(RecordError::Record("bytes after the last record"));
    }
    builder.build().map_err(|e| RecordError::Decompress(e.to_string()))
}

/// Appends a stored silt batch to `out` as an uncompressed Kafka batch:
/// the records are re-framed from the decompressed payload, their keys,
/// values and headers copied once, straight into `out`.
pub fn to_kafka(batch: &Batch, out: &mut BytesMut) -> Result<(), silt_wire::BatchError> {
    let h = batch.header();
    let plain = batch.plain()?;
    let start = out.len();
    // Kafka's framing costs at most a few bytes more per record than silt's.
    out.reserve(HEADER_LEN + plain.len() + h.record_count as usize * 8);
    out.put_i64(h.base_offset);
    out.put_i32(0); // length, below
    out.put_i32(-1); // partition leader epoch: not tracked
    out.put_i8(MAGIC);
    out.put_u32(0); // CRC, below
    out.put_i16(0); // uncompressed, create time
    out.put_i32(h.last_offset_delta as i32);
    out.put_i64(h.first_timestamp);
    out.put_i64(h.max_timestamp);
    out.put_i64(h.producer_id);
    out.put_i16(h.producer_epoch);
    out.put_i32(h.base_sequence);
    out.put_i32(h.record_count as i32);
    let field = |b: Option<&[u8]>| b.map_or(1, |b| varlong_len(b.len() as i64) + b.len());
    for r in record_refs(h, &plain) {
        let r = r?;
        let mut headers = 0usize;
        for x in r.headers() {
            let (name, value) = x?;
            headers += field(Some(name.as_bytes())) + field(Some(value));
        }
        let delta = r.offset_delta as i64;
        let len = 1
            + varlong_len(r.timestamp_delta)
            + varlong_len(delta)
            + field(r.key)
            + field(r.value)
            + varlong_len(r.header_count as i64)
            + headers;
        put_varlong(out, len as i64);
        out.put_u8(0);
        put_varlong(out, r.timestamp_delta);
        put_varlong(out, delta);
        put_field(out, r.key);
        put_field(out, r.value);
        put_varlong(out, r.header_count as i64);
        for x in r.headers() {
            let (name, value) = x?;
            put_field(out, Some(name.as_bytes()));
            put_field(out, Some(value));
        }
    }
    let length = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn put_field(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn kafka_record(i: i64, key: Option<&str>, value: Option<&str>, headers: &[(&str, Option<&str>)]) -> KRecord {
        KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 2,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: 40 + i as i32,
            timestamp: 1_700_000_000_000 + i * 3 - 5,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string().into(), v.map(|v| Bytes::copy_from_slice(v.as_bytes()))))
                .collect(),
        }
    }

    fn sample() -> Vec<KRecord> {
        vec![
            kafka_record(0, Some("k0"), Some("v0"), &[("h", Some("x")), ("n", None)]),
            kafka_record(1, None, Some(""), &[]),
            kafka_record(2, Some("k2"), None, &[]),
            kafka_record(3, Some("ключ"), Some(&"v".repeat(3000)), &[("trace", Some("abc"))]),
        ]
    }

    fn encode(records: &[KRecord], compression: KCompression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression }).unwrap();
        buf.freeze()
    }

    #[test]
    fn every_codec_converts_to_silt_and_back_record_for_record() {
        for compression in
            [KCompression::None, KCompression::Gzip, KCompression::Snappy, KCompression::Lz4, KCompression::Zstd]
        {
            let records = sample();
            let batches = split(&encode(&records, compression)).unwrap();
            assert_eq!(batches.len(), 1, "{compression:?}");
            let silt = to_silt(&batches[0]).unwrap().with_base_offset(100);
            let h = *silt.header();
            let want_codec = if compression == KCompression::None { Compression::None } else { Compression::Zstd };
            assert_eq!((h.compression, h.producer_id, h.producer_epoch, h.base_sequence), (want_codec, 7, 2, 40));
            let got = silt.records().unwrap();
            assert_eq!(got.len(), 4);
            assert_eq!(got[0].headers[1], Header { name: "n".into(), value: Bytes::new() }, "null header value");
            assert_eq!(got[2].value, None, "a tombstone stays one");

            let mut back = BytesMut::new();
            to_kafka(&silt, &mut back).unwrap();
            let decoded = RecordBatchDecoder::decode(&mut back.freeze()).unwrap();
            assert_eq!(decoded.compression, KCompression::None);
            let mut want = records.clone();
            for (i, r) in want.iter_mut().enumerate() {
                r.offset += 100;
                r.headers = r.headers.drain(..).map(|(k, v)| (k, Some(v.unwrap_or_default()))).collect();
                assert_eq!(decoded.records[i], *r, "{compression:?} record {i}");
            }
        }
    }

    #[test]
    fn damaged_or_unsupported_batches_are_refused_by_name() {
        let good = encode(&sample(), KCompression::None);
        let mut flipped = good.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(to_silt(&flipped), Err(RecordError::Crc { .. })));
        let mut magic1 = good.to_vec();
        magic1[16] = 1;
        assert_eq!(to_silt(&magic1), Err(RecordError::Magic(1)));
        for cut in [0, 10, 60, good.len() - 1] {
            assert!(to_silt(&good[..cut]).is_err(), "cut at {cut}");
            assert!(split(&good.slice(..cut)).is_err() || cut == 0, "cut at {cut}");
        }
        let mut txn = sample();
        for r in &mut txn {
            r.transactional = true;
        }
        assert_eq!(to_silt(&encode(&txn, KCompression::None)), Err(RecordError::Transactional));
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let mut records = vec![kafka_record(0, None, None, &[])];
        records[0].value = Some(Bytes::from(vec![0u8; MAX_UNCOMPRESSED + 1024]));
        let bomb = encode(&records, KCompression::Gzip);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(to_silt(&bomb), Err(RecordError::TooLarge));
    }

    #[test]
    fn garbage_never_panics() {
        let good = encode(&sample(), KCompression::Lz4).to_vec();
        for i in 0..good.len() {
            for bit in [1u8, 0x80] {
                let mut b = good.clone();
                b[i] ^= bit;
                // With the CRC made good again, so the damage reaches the parser.
                let crc = crc32c::crc32c(&b[CRC_START..]);
                b[17..21].copy_from_slice(&crc.to_be_bytes());
                let _ = to_silt(&b);
                let _ = split(&Bytes::from(b));
            }
        }
    }

    #[test]
    fn zigzag_lengths_match_what_is_written() {
        for v in [0i64, 1, -1, 63, -64, 64, 8191, -8193, i64::from(i32::MAX), i64::MIN, i64::MAX] {
            let mut out = BytesMut::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            assert_eq!(Reader { buf: &out }.varlong("v").unwrap(), v);
        }
    }
}
