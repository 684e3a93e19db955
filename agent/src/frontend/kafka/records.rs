//! Kafka's record batch (format v2, "magic 2") to silt's batch and back.
//!
//! The two carry the same things (offsets, timestamps, producer id, epoch
//! and sequence; records with key, value and headers). silt's batch
//! version 3 frames its records as Kafka does, so:
//! - produce: the CRC is checked and the records walked once to check them
//!   (zstd decompressed for that, never past silt's limit on a batch's
//!   decompressed size); uncompressed and zstd records are stored as they
//!   came, gzip, snappy (raw or xerial-framed) and lz4 ones decompressed;
//! - fetch: a version 3 batch goes back with only its header rewritten;
//!   silt's own batches (version 2, framed its own way) are re-framed,
//!   uncompressed (cheaper for the agent than compressing again; clients
//!   read any codec).
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
use silt_wire::batch::{kafka_framed, record_refs, Batch, BatchError, BatchHeader, Compression, MAX_UNCOMPRESSED};

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

/// A reader over a slice (snappy's xerial framing).
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
    let count = i32::from_be_bytes(be(kafka, 57));
    if count <= 0 {
        return Err(RecordError::Empty);
    }
    if last_offset_delta != count - 1 {
        return Err(RecordError::Offsets);
    }
    let header = BatchHeader {
        base_offset: 0,
        crc: 0,
        length: 0,
        version: 3,
        compression: Compression::None,
        record_count: count as u32,
        first_timestamp: i64::from_be_bytes(be(kafka, 27)),
        max_timestamp: i64::from_be_bytes(be(kafka, 35)),
        producer_id: i64::from_be_bytes(be(kafka, 43)),
        producer_epoch: i16::from_be_bytes(be(kafka, 51)),
        base_sequence: i32::from_be_bytes(be(kafka, 53)),
        uncompressed_len: 0,
        last_offset_delta: last_offset_delta as u32,
    };
    let payload = &kafka[HEADER_LEN..];
    let framed = |compression, stored: &[u8], plain: &[u8]| {
        kafka_framed(&header, compression, stored, plain).map_err(|e| match e {
            BatchError::Offsets(_) => RecordError::Offsets,
            BatchError::TooLarge(_) => RecordError::TooLarge,
            _ => RecordError::Record("a record does not decode"),
        })
    };
    match codec {
        // Records stored as they came: uncompressed, or zstd (checked once
        // decompressed, kept compressed); other codecs' decompressed.
        0 => framed(Compression::None, payload, payload),
        4 => framed(Compression::Zstd, payload, &decompress(4, payload)?),
        c => {
            let plain = decompress(c, payload)?;
            framed(Compression::None, &plain, &plain)
        }
    }
}

/// Appends a stored silt batch to `out` as a Kafka batch. Version 3 goes as
/// stored (zstd only to clients that read it: Fetch version 10 and up);
/// silt's own batches are re-framed from the decompressed payload into an
/// uncompressed Kafka batch, their keys, values and headers copied once,
/// straight into `out`.
pub fn to_kafka(batch: &Batch, zstd_ok: bool, out: &mut BytesMut) -> Result<(), silt_wire::BatchError> {
    let h = batch.header();
    if h.version == 3 {
        // Framed as Kafka frames records: the payload goes as it is (or
        // decompressed, for a client that cannot read zstd).
        let stored;
        let (codec, payload) = match h.compression {
            Compression::None => (0, &batch.bytes()[h.header_len()..]),
            Compression::Zstd if zstd_ok => (4, &batch.bytes()[h.header_len()..]),
            Compression::Zstd => {
                stored = batch.plain()?;
                (0, &stored[..])
            }
        };
        let start = out.len();
        put_header(out, h, codec, payload.len());
        out.put_slice(payload);
        seal(out, start);
        return Ok(());
    }
    let plain = batch.plain()?;
    let start = out.len();
    // Kafka's framing costs at most a few bytes more per record than silt's.
    put_header(out, h, 0, plain.len() + h.record_count as usize * 8);
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
    seal(out, start);
    Ok(())
}

/// A Kafka batch header for `h` (length and CRC left for [`seal`]), with
/// room reserved for `records` bytes after it.
fn put_header(out: &mut BytesMut, h: &BatchHeader, codec: i16, records: usize) {
    out.reserve(HEADER_LEN + records);
    out.put_i64(h.base_offset);
    out.put_i32(0); // length, below
    out.put_i32(-1); // partition leader epoch: not tracked
    out.put_i8(MAGIC);
    out.put_u32(0); // CRC, below
    out.put_i16(codec); // create time
    out.put_i32(h.last_offset_delta as i32);
    out.put_i64(h.first_timestamp);
    out.put_i64(h.max_timestamp);
    out.put_i64(h.producer_id);
    out.put_i16(h.producer_epoch);
    out.put_i32(h.base_sequence);
    out.put_i32(h.record_count as i32);
}

/// Fills in the length and CRC of the Kafka batch that starts at `start`
/// and ends at the end of `out`.
fn seal(out: &mut BytesMut, start: usize) {
    let length = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
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
            let stored = if compression == KCompression::Zstd { Compression::Zstd } else { Compression::None };
            assert_eq!((h.version, h.compression), (3, stored), "{compression:?}");
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 2, 40));
            assert_eq!(h.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
            // silt's own readers see the records, a null header value as empty.
            let got = silt.records().unwrap();
            assert_eq!(got.len(), 4);
            assert_eq!(got[0].headers[1], silt_wire::Header { name: "n".into(), value: Bytes::new() });
            assert_eq!(got[2].value, None, "a tombstone stays one");
            assert_eq!(got[3].key.as_deref(), Some("ключ".as_bytes()));

            for zstd_ok in [true, false] {
                let mut back = BytesMut::new();
                to_kafka(&silt, zstd_ok, &mut back).unwrap();
                if matches!(compression, KCompression::None | KCompression::Zstd) && zstd_ok {
                    assert_eq!(
                        back[HEADER_LEN..],
                        batches[0][HEADER_LEN..],
                        "{compression:?}: the records as they came"
                    );
                }
                let decoded = RecordBatchDecoder::decode(&mut back.freeze()).unwrap();
                let zstd = compression == KCompression::Zstd && zstd_ok;
                assert_eq!(decoded.compression, if zstd { KCompression::Zstd } else { KCompression::None });
                let mut want = records.clone();
                for (i, r) in want.iter_mut().enumerate() {
                    r.offset += 100;
                    assert_eq!(decoded.records[i], *r, "{compression:?} record {i}");
                }
            }
        }
    }

    #[test]
    fn silts_own_batches_convert_record_for_record() {
        let mut b = silt_wire::BatchBuilder::new(Compression::Zstd).with_producer(3, 1, 9);
        b.push(1_000, Some(b"k"), b"v", &[silt_wire::Header { name: "h".into(), value: Bytes::from_static(b"x") }]);
        b.push_record(1_005, None, None, &[]);
        let batch = b.build().unwrap().with_base_offset(50);
        let mut out = BytesMut::new();
        to_kafka(&batch, true, &mut out).unwrap();
        let decoded = RecordBatchDecoder::decode(&mut out.freeze()).unwrap();
        let got: Vec<_> = decoded
            .records
            .iter()
            .map(|r| {
                (r.offset, r.timestamp, r.key.clone(), r.value.clone(), r.headers.len(), r.producer_id, r.sequence)
            })
            .collect();
        assert_eq!(
            got,
            [
                (50, 1_000, Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"v")), 1, 3, 9),
                (51, 1_005, None, None, 0, 3, 10)
            ]
        );
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
            assert_eq!(silt_wire::buf::Reader::new(&out).varint("v").unwrap(), v);
        }
    }
}
