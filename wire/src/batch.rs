//! The record batch: built and compressed by the producer, validated and
//! stamped with its base offset by the agent, stored verbatim in objects,
//! decoded only by the consumer.
//!
//! Byte layout (big-endian):
//!
//! ```text
//! offset size field
//!  0      8   base offset (i64)       stamped by the agent; outside the CRC
//!  8      4   CRC32C (u32)            over every byte from offset 12 to the end
//! 12      4   length (u32)            bytes after this field
//! 16      1   format version (2 from silt's producers, 3 from Kafka's; 1 is still read)
//! 17      1   attributes              bits 0-2: compression (0 none, 1 zstd)
//! 18      4   record count (u32)      at least 1
//! 22      8   first timestamp (i64, ms since the epoch)
//! 30      8   max timestamp (i64)
//! 38      8   producer id (i64, -1 when none)
//! 46      2   producer epoch (i16)
//! 48      4   base sequence (i32)
//! 52      4   uncompressed payload length (u32)
//! 56      4   last offset delta (u32)  version 2 only: the last offset is base + this
//! 60      ..  payload: the records, compressed as a whole (at 56 in version 1)
//! ```
//!
//! A batch from a producer holds offsets base to base + count - 1. Key
//! compaction rewrites batches keeping only some records: their offsets
//! stay, so a version 2 batch may have gaps (fewer records than offsets),
//! and one that keeps none still marks its offsets (record count 0).
//!
//! Version 3 holds records framed as Kafka's record batch v2 frames them
//! (what a Kafka producer sent, stored as it came, and sent to Kafka
//! consumers as it is): every length, delta and count a zigzag varint, an
//! attributes byte after the length, and a header value may be null (-1,
//! read as empty).
//!
//! Each record in the (uncompressed) payload of versions 1 and 2:
//!
//! ```text
//! length            uvarint  bytes of the record after this field
//! timestamp delta   varint   from the batch's first timestamp
//! offset delta      uvarint  from the base offset; 0, 1, 2, ... in version 1,
//!                            strictly increasing up to the last offset delta in 2
//! key length        varint   -1 for no key
//! key
//! value length      varint   -1 for no value (a tombstone); uvarint in version 1
//! value
//! header count      uvarint
//!   name length uvarint, name (UTF-8), value length uvarint, value
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::buf::{uvarint_len, varint_len, DecodeError, Reader, WriteExt};

pub const VERSION: u8 = 2;
/// The header of the version written (2).
pub const HEADER_LEN: usize = 60;
const HEADER_LEN_V1: usize = 56;
const CRC_START: usize = 12;
const LENGTH_END: usize = 16;
/// The most a batch may decompress to. Bounds every allocation a batch can
/// cause, whatever its header claims.
pub const MAX_UNCOMPRESSED: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Zstd,
}

impl Compression {
    fn bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }
    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?} (expected none or zstd)")),
        }
    }
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is truncated: {0}")]
    Truncated(String),
    #[error("batch length field says {declared} bytes but {actual} are present")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported batch format version {0}")]
    Version(u8),
    #[error("unknown compression codec {0}")]
    Compression(u8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("batch holds no records")]
    Empty,
    #[error("batch offsets do not match its records: {0}")]
    Offsets(String),
    #[error("batch decompresses to {0} bytes, over the limit of {MAX_UNCOMPRESSED}")]
    TooLarge(usize),
    #[error("batch payload does not decompress: {0}")]
    Decompress(String),
    #[error("batch payload is malformed: {0}")]
    Records(#[from] DecodeError),
    #[error("record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
}

/// A record header: a name and a binary value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Bytes,
}

/// One decoded record, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// None: a tombstone (the key's record is deleted by key compaction).
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub crc: u32,
    pub length: u32,
    pub version: u8,
    pub compression: Compression,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub uncompressed_len: u32,
    /// The last offset's distance from the base offset (in version 1,
    /// always the record count less one).
    pub last_offset_delta: u32,
}

impl BatchHeader {
    /// Reads the header at the start of `buf` without checking the CRC.
    /// Returns the header and the batch's total length in bytes.
    pub fn parse(buf: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
        if buf.len() < HEADER_LEN_V1 {
            return Err(BatchError::Truncated(format!("{} bytes, the header alone is {HEADER_LEN_V1}", buf.len())));
        }
        let version = buf[16];
        let header_len = match version {
            1 => HEADER_LEN_V1,
            2 | 3 => HEADER_LEN,
            other => return Err(BatchError::Version(other)),
        };
        if buf.len() < header_len {
            return Err(BatchError::Truncated(format!("{} bytes, the header alone is {header_len}", buf.len())));
        }
        let mut r = Reader::new(&buf[..header_len]);
        let base_offset = r.i64("base offset")?;
        let crc = r.u32("crc")?;
        let length = r.u32("length")?;
        let _version = r.u8("version")?;
        let attributes = r.u8("attributes")?;
        let compression =
            Compression::from_bits(attributes & 0x07).ok_or(BatchError::Compression(attributes & 0x07))?;
        let mut header = BatchHeader {
            base_offset,
            crc,
            length,
            version,
            compression,
            record_count: r.u32("record count")?,
            first_timestamp: r.i64("first timestamp")?,
            max_timestamp: r.i64("max timestamp")?,
            producer_id: r.i64("producer id")?,
            producer_epoch: r.i16("producer epoch")?,
            base_sequence: r.i32("base sequence")?,
            uncompressed_len: r.u32("uncompressed length")?,
            last_offset_delta: 0,
        };
        header.last_offset_delta = match version {
            1 => header.record_count.saturating_sub(1),
            _ => r.u32("last offset delta")?,
        };
        let total = LENGTH_END + header.length as usize;
        if total < header_len {
            return Err(BatchError::LengthMismatch { declared: total, actual: buf.len() });
        }
        Ok((header, total))
    }

    /// What a batch's fields must say of themselves, checked once the CRC
    /// holds (so a damaged byte is reported as damage).
    fn check(&self) -> Result<(), BatchError> {
        if self.record_count == 0 && self.version == 1 {
            return Err(BatchError::Empty);
        }
        if u64::from(self.record_count) > u64::from(self.last_offset_delta) + 1 {
            return Err(BatchError::Offsets(format!(
                "{} records in {} offsets",
                self.record_count,
                u64::from(self.last_offset_delta) + 1
            )));
        }
        if self.uncompressed_len as usize > MAX_UNCOMPRESSED {
            return Err(BatchError::TooLarge(self.uncompressed_len as usize));
        }
        Ok(())
    }

    /// Bytes before the payload.
    pub fn header_len(&self) -> usize {
        if self.version == 1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }

    /// Whether it holds a record for each of its offsets, as a producer's
    /// batch does (key compaction leaves gaps).
    pub fn is_dense(&self) -> bool {
        self.record_count > 0 && self.last_offset_delta == self.record_count - 1
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Whether an idempotent producer sent it (it carries a producer id).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence number of the batch's last record. Sequences wrap from
    /// `i32::MAX` to 0, as Kafka's do.
    pub fn last_sequence(&self) -> i32 {
        advance_sequence(self.base_sequence, self.record_count.saturating_sub(1))
    }
}

/// `sequence` advanced by `n` records, wrapping from `i32::MAX` to 0.
pub fn advance_sequence(sequence: i32, n: u32) -> i32 {
    let next = i64::from(sequence) + i64::from(n);
    next.rem_euclid(i64::from(i32::MAX) + 1) as i32
}

/// A batch whose header, length and CRC have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Checks that `bytes` is exactly one whole, uncorrupted batch.
    pub fn validate(bytes: Bytes) -> Result<Batch, BatchError> {
        let (header, total) = BatchHeader::parse(&bytes)?;
        if total != bytes.len() {
            return Err(BatchError::LengthMismatch { declared: total, actual: bytes.len() });
        }
        let computed = crc32c::crc32c(&bytes[CRC_START..]);
        if computed != header.crc {
            return Err(BatchError::Crc { stored: header.crc, computed });
        }
        header.check()?;
        Ok(Batch { header, bytes })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Rewrites the base offset. The CRC does not cover it, so nothing else
    /// changes.
    pub fn with_base_offset(self, base_offset: i64) -> Batch {
        let mut raw = self.bytes.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        stamp_base_offset(&mut raw, base_offset);
        Batch { header: BatchHeader { base_offset, ..self.header }, bytes: raw.freeze() }
    }

    /// The records' bytes, decompressed: what [`record_refs`] walks.
    pub fn plain(&self) -> Result<Bytes, BatchError> {
        let start = self.header.header_len();
        let payload = &self.bytes[start..];
        let expected = self.header.uncompressed_len as usize;
        let plain: Bytes = match self.header.compression {
            Compression::None => self.bytes.slice(start..),
            Compression::Zstd => {
                zstd::bulk::decompress(payload, expected).map_err(|e| BatchError::Decompress(e.to_string()))?.into()
            }
        };
        if plain.len() != expected {
            return Err(BatchError::Decompress(format!(
                "payload is {} bytes, the header says {expected}",
                plain.len()
            )));
        }
        Ok(plain)
    }

    /// Decompresses and decodes every record.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        decode_records(&self.header, &self.plain()?)
    }
}

/// A version 3 batch over records as Kafka frames them, `payload` stored as
/// given (compressed with `compression` when not None; `plain_len` is its
/// decompressed size). `header` gives the offsets, counts, first timestamp
/// and producer fields; the records are walked once, to check them and to
/// take their largest timestamp.
pub fn kafka_framed(
    header: &BatchHeader,
    compression: Compression,
    payload: &[u8],
    plain: &[u8],
) -> Result<Batch, BatchError> {
    if plain.len() > MAX_UNCOMPRESSED {
        return Err(BatchError::TooLarge(plain.len()));
    }
    let mut header = BatchHeader { version: 3, uncompressed_len: plain.len() as u32, compression, ..*header };
    header.check()?;
    // The largest timestamp is the records' own, whatever the header said.
    let mut max = i64::MIN;
    for r in record_refs(&header, plain) {
        max = max.max(header.first_timestamp.wrapping_add(r?.timestamp_delta));
    }
    header.max_timestamp = max;
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(payload);
    Ok(seal_as(out, header, 3, compression, plain.len()))
}

/// Writes `base_offset` into the first eight bytes of an encoded batch.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// A copy of a batch (one that passed [`Batch::validate`], or came from a
/// [`BatchBuilder`]) under another producer id, epoch and base sequence,
/// with its CRC computed again.
pub fn restamp_producer(batch: &[u8], id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    let mut out = BytesMut::from(batch);
    out[38..46].copy_from_slice(&id.to_be_bytes());
    out[46..48].copy_from_slice(&epoch.to_be_bytes());
    out[48..52].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[8..12].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// One record, borrowed from a batch's decompressed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// From the batch's base offset.
    pub offset_delta: u64,
    /// From the batch's first timestamp.
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    /// None: a tombstone.
    pub value: Option<&'a [u8]>,
    pub header_count: usize,
    /// The headers as encoded: walk them with [`RecordRef::headers`].
    headers: &'a [u8],
    /// Framed as Kafka frames records (version 3).
    kafka: bool,
}

impl<'a> RecordRef<'a> {
    /// Each header's name (UTF-8, checked) and value (a null one, which
    /// only Kafka's framing has, as empty).
    pub fn headers(&self) -> Headers<'a> {
        Headers { r: Reader::new(self.headers), left: self.header_count, kafka: self.kafka }
    }
}

/// A record's headers, walked.
pub struct Headers<'a> {
    r: Reader<'a>,
    left: usize,
    kafka: bool,
}

impl<'a> Headers<'a> {
    /// Bytes after the headers walked so far.
    fn left(&self) -> usize {
        self.r.remaining()
    }

    fn length(&mut self, what: &'static str, nullable: bool) -> Result<usize, DecodeError> {
        match self.kafka {
            false => Ok(self.r.uvarint(what)? as usize),
            true => match self.r.varint(what)? {
                -1 if nullable => Ok(0),
                n => usize::try_from(n).map_err(|_| DecodeError::invalid(what, n.to_string())),
            },
        }
    }

    fn next_header(&mut self) -> Result<(&'a str, &'a [u8]), BatchError> {
        let name_len = self.length("header name length", false)?;
        let name = std::str::from_utf8(self.r.take(name_len, "header name")?)
            .map_err(|_| DecodeError::invalid("header name", "not UTF-8"))?;
        let value_len = self.length("header value length", true)?;
        Ok((name, self.r.take(value_len, "header value")?))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<(&'a str, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let next = self.next_header();
        if next.is_err() {
            self.left = 0;
        }
        Some(next)
    }
}

/// Walks a batch's decompressed records (see [`Batch::plain`]) without
/// copying them, checking their framing and offsets as it goes.
pub fn record_refs<'a>(
    header: &BatchHeader,
    plain: &'a [u8],
) -> impl Iterator<Item = Result<RecordRef<'a>, BatchError>> + 'a {
    let (count, v1, last_delta) = (header.record_count as usize, header.version == 1, header.last_offset_delta);
    let kafka = header.version == 3;
    let mut r = Reader::new(plain);
    let mut next_delta = 0u64;
    let mut i = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if i == count {
            failed = true; // ends the walk
            return (r.remaining() > 0).then(|| Err(DecodeError::Trailing(r.remaining()).into()));
        }
        let result = (|| {
            let len = match kafka {
                true => usize::try_from(r.varint("record length")?)
                    .map_err(|_| DecodeError::invalid("record length", "negative"))?,
                false => r.uvarint("record length")? as usize,
            };
            let body = r.take(len, "record")?;
            let mut rr = Reader::new(body);
            if kafka {
                rr.u8("record attributes")?;
            }
            let timestamp_delta = rr.varint("timestamp delta")?;
            let offset_delta = match kafka {
                true => u64::try_from(rr.varint("offset delta")?)
                    .map_err(|_| DecodeError::invalid("offset delta", "negative"))?,
                false => rr.uvarint("offset delta")?,
            };
            let in_order = match v1 {
                true => offset_delta == i as u64,
                false => offset_delta >= next_delta && offset_delta <= u64::from(last_delta),
            };
            if !in_order {
                return Err(DecodeError::invalid(
                    "offset delta",
                    format!("record {i} has offset delta {offset_delta}"),
                )
                .into());
            }
            next_delta = offset_delta + 1;
            let key = match rr.varint("key length")? {
                -1 => None,
                n if n >= 0 => Some(rr.take(n as usize, "key")?),
                n => return Err(DecodeError::invalid("key length", n.to_string()).into()),
            };
            let value_len = match v1 {
                true => rr.uvarint("value length")? as i64,
                false => rr.varint("value length")?,
            };
            let value = match value_len {
                -1 => None,
                n if n >= 0 => Some(rr.take(n as usize, "value")?),
                n => return Err(DecodeError::invalid("value length", n.to_string()).into()),
            };
            let header_count = match kafka {
                true => usize::try_from(rr.varint("header count")?)
                    .map_err(|_| DecodeError::invalid("header count", "negative"))?,
                false => rr.uvarint("header count")? as usize,
            };
            if header_count > rr.remaining() / 2 {
                return Err(DecodeError::invalid("header count", header_count.to_string()).into());
            }
            let headers = rr.take(rr.remaining(), "headers")?;
            let record = RecordRef { offset_delta, timestamp_delta, key, value, header_count, headers, kafka };
            // The headers must fill the record exactly.
            let mut walker = record.headers();
            walker.try_for_each(|h| h.map(drop))?;
            if walker.left() > 0 {
                return Err(DecodeError::Trailing(walker.left()).into());
            }
            Ok(record)
        })();
        i += 1;
        failed = result.is_err();
        Some(result)
    })
}

fn decode_records(header: &BatchHeader, plain: &Bytes) -> Result<Vec<Record>, BatchError> {
    // Every record needs at least 6 bytes, so the input bounds the allocation.
    let mut records = Vec::with_capacity((header.record_count as usize).min(plain.len() / 6));
    for r in record_refs(header, plain) {
        let r = r?;
        let headers = r
            .headers()
            .map(|h| h.map(|(name, value)| Header { name: name.to_owned(), value: plain.slice_ref(value) }))
            .collect::<Result<Vec<_>, _>>()?;
        records.push(Record {
            offset: header.base_offset + r.offset_delta as i64,
            timestamp: header.first_timestamp.wrapping_add(r.timestamp_delta),
            key: r.key.map(|k| plain.slice_ref(k)),
            value: r.value.map(|v| plain.slice_ref(v)),
            headers,
        });
    }
    Ok(records)
}

/// A copy of `batch` keeping only the records `keep` accepts, at their
/// offsets, with the batch's other fields (producer, timestamps, last
/// offset) as they were: what key compaction writes. None when it keeps
/// none and `keep_empty` is false; with `keep_empty`, a batch of no
/// records that still marks the offsets.
pub fn retain(
    batch: &Batch,
    mut keep: impl FnMut(&Record) -> bool,
    keep_empty: bool,
) -> Result<Option<Batch>, BatchError> {
    let h = *batch.header();
    let records = batch.records()?;
    let kept: Vec<&Record> = records.iter().filter(|r| keep(r)).collect();
    if kept.is_empty() && !keep_empty {
        return Ok(None);
    }
    if kept.len() == records.len() && h.version != 1 {
        return Ok(Some(batch.clone()));
    }
    let mut payload = Vec::new();
    for r in &kept {
        let (ts, delta) = (r.timestamp.wrapping_sub(h.first_timestamp), (r.offset - h.base_offset) as u64);
        put_record(&mut payload, ts, delta, r.key.as_deref(), r.value.as_deref(), &r.headers);
    }
    let header = BatchHeader { record_count: kept.len() as u32, ..h };
    encode(&header, h.compression, &payload).map(Some)
}

/// Splits a concatenation of batches (a stored byte range, a fetch reply)
/// into validated batches.
pub fn split(bytes: &Bytes) -> impl Iterator<Item = Result<Batch, BatchError>> + '_ {
    split_with(bytes, Batch::validate)
}

/// [`split`] for bytes whose batches were validated before (the agent's
/// read path checks every batch it reads): headers and lengths are read,
/// CRCs are not computed again.
pub fn split_validated(bytes: &Bytes) -> impl Iterator<Item = Result<Batch, BatchError>> + '_ {
    split_with(bytes, |b| {
        let (header, total) = BatchHeader::parse(&b)?;
        if total != b.len() {
            return Err(BatchError::LengthMismatch { declared: total, actual: b.len() });
        }
        header.check()?;
        Ok(Batch { header, bytes: b })
    })
}

fn split_with<'a>(
    bytes: &'a Bytes,
    take: impl Fn(Bytes) -> Result<Batch, BatchError> + 'a,
) -> impl Iterator<Item = Result<Batch, BatchError>> + 'a {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= bytes.len() {
            return None;
        }
        let result = BatchHeader::parse(&bytes[pos..]).and_then(|(_, total)| {
            if pos + total > bytes.len() {
                return Err(BatchError::Truncated(format!(
                    "batch of {total} bytes at byte {pos}, {} remain",
                    bytes.len() - pos
                )));
            }
            let batch = take(bytes.slice(pos..pos + total))?;
            pos += total;
            Ok(batch)
        });
        failed = result.is_err();
        Some(result)
    })
}

/// Accumulates records and encodes them into one batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    /// Room for the header, then the records: without compression the
    /// batch is built in place, its payload never copied.
    payload: BytesMut,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// A builder whose buffer has room for `bytes` of records before it grows.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        Self::with_buffer(compression, BytesMut::new(), bytes)
    }

    /// A builder that fills `buffer` (emptied first, grown to room for
    /// `bytes` of records if smaller): a producer hands back the buffer of
    /// a batch it is done with, so no fresh memory is touched per batch.
    pub fn with_buffer(compression: Compression, mut payload: BytesMut, bytes: usize) -> Self {
        payload.clear();
        payload.reserve(HEADER_LEN + bytes);
        payload.resize(HEADER_LEN, 0);
        BatchBuilder {
            compression,
            payload,
            count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    pub fn with_producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.set_producer(id, epoch, base_sequence);
        self
    }

    /// Marks the batch as an idempotent producer's: its id, epoch and the
    /// sequence number of its first record.
    pub fn set_producer(&mut self, id: i64, epoch: i16, base_sequence: i32) {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
    }

    /// The encoded size of one record, as `push` would write it.
    /// (At most: the timestamp and offset deltas are counted at their largest.)
    pub fn record_size(key: Option<&[u8]>, value: &[u8], headers: &[Header]) -> usize {
        let body = 10 + 5 + fields_len(key, Some(value), headers);
        body + uvarint_len(body as u64)
    }

    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: &[Header]) {
        self.push_record(timestamp, key, Some(value), headers);
    }

    /// Adds a record; a None value is a tombstone.
    pub fn push_record(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) {
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let delta = timestamp.wrapping_sub(self.first_timestamp);
        put_record(&mut self.payload, delta, u64::from(self.count), key, value, headers);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed bytes buffered so far.
    pub fn size(&self) -> usize {
        self.payload.len() - HEADER_LEN
    }

    /// Encodes the batch with base offset 0 (the agent stamps the real one).
    pub fn build(self) -> Result<Batch, BatchError> {
        self.build_returning_buffer().0
    }

    /// Like [`BatchBuilder::build`], and gives back the builder's buffer
    /// when the batch does not live in it (compressed, or refused), for
    /// [`BatchBuilder::with_buffer`].
    pub fn build_returning_buffer(self) -> (Result<Batch, BatchError>, Option<BytesMut>) {
        if self.count == 0 {
            return (Err(BatchError::Empty), Some(self.payload));
        }
        let header = BatchHeader {
            base_offset: 0,
            crc: 0,
            length: 0,
            version: VERSION,
            compression: self.compression,
            record_count: self.count,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            uncompressed_len: 0,
            last_offset_delta: self.count - 1,
        };
        match self.compression {
            Compression::None => {
                let plain = self.payload.len() - HEADER_LEN;
                if plain > MAX_UNCOMPRESSED {
                    return (Err(BatchError::TooLarge(plain)), Some(self.payload));
                }
                (Ok(seal(self.payload, header, Compression::None, plain)), None)
            }
            Compression::Zstd => (encode(&header, self.compression, &self.payload[HEADER_LEN..]), Some(self.payload)),
        }
    }
}

/// The encoded size of a record's key, value and headers.
fn fields_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    let bytes_len = |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i64) + b.len());
    bytes_len(key)
        + bytes_len(value)
        + uvarint_len(headers.len() as u64)
        + headers
            .iter()
            .map(|h| {
                uvarint_len(h.name.len() as u64) + h.name.len() + uvarint_len(h.value.len() as u64) + h.value.len()
            })
            .sum::<usize>()
}

/// Appends one record (its length, then its body) in the version 2
/// layout, straight into `out`: no buffer of its own.
fn put_record(
    out: &mut impl WriteExt,
    timestamp_delta: i64,
    offset_delta: u64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) {
    let body = varint_len(timestamp_delta) + uvarint_len(offset_delta) + fields_len(key, value, headers);
    out.put_uvarint(body as u64);
    out.put_varint(timestamp_delta);
    out.put_uvarint(offset_delta);
    for b in [key, value] {
        match b {
            None => out.put_varint(-1),
            Some(b) => {
                out.put_varint(b.len() as i64);
                out.put_slice(b);
            }
        }
    }
    out.put_uvarint(headers.len() as u64);
    for h in headers {
        out.put_uvarint(h.name.len() as u64);
        out.put_slice(h.name.as_bytes());
        out.put_uvarint(h.value.len() as u64);
        out.put_slice(&h.value);
    }
}

/// Encodes a version 2 batch: `header`'s offsets, counts, timestamps and
/// producer fields over `plain` records, compressed, with length and CRC.
fn encode(header: &BatchHeader, compression: Compression, plain: &[u8]) -> Result<Batch, BatchError> {
    if plain.len() > MAX_UNCOMPRESSED {
        return Err(BatchError::TooLarge(plain.len()));
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + plain.len());
    out.resize(HEADER_LEN, 0);
    match compression {
        Compression::None => out.extend_from_slice(plain),
        Compression::Zstd => {
            let compressed = zstd::bulk::compress(plain, 1).map_err(|e| BatchError::Decompress(e.to_string()))?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(seal(out, *header, compression, plain.len()))
}

/// Fills in the header at the front of `out` (header room, then the
/// payload as stored) and its CRC: a batch as valid as [`Batch::validate`]
/// would find it, without reading it again.
fn seal(out: BytesMut, header: BatchHeader, compression: Compression, plain_len: usize) -> Batch {
    seal_as(out, header, VERSION, compression, plain_len)
}

fn seal_as(mut out: BytesMut, header: BatchHeader, version: u8, compression: Compression, plain_len: usize) -> Batch {
    let length = (out.len() - LENGTH_END) as u32;
    let mut h = &mut out[..HEADER_LEN];
    h.put_i64(header.base_offset);
    h.put_u32(0); // CRC, filled below
    h.put_u32(length);
    h.put_u8(version);
    h.put_u8(compression.bits());
    h.put_u32(header.record_count);
    h.put_i64(header.first_timestamp);
    h.put_i64(header.max_timestamp);
    h.put_i64(header.producer_id);
    h.put_i16(header.producer_epoch);
    h.put_i32(header.base_sequence);
    h.put_u32(plain_len as u32);
    h.put_u32(header.last_offset_delta);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[8..12].copy_from_slice(&crc.to_be_bytes());
    let header = BatchHeader { crc, length, version, compression, uncompressed_len: plain_len as u32, ..header };
    Batch { header, bytes: out.freeze() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restamped_batch_is_valid_under_its_new_producer_fields() {
        let mut b = BatchBuilder::new(Compression::Zstd).with_producer(7, 0, 40);
        b.push(5, Some(b"k"), b"v", &[]);
        let first = b.build().unwrap();
        let again = Batch::validate(restamp_producer(first.bytes(), 7, 1, 0)).unwrap();
        let h = again.header();
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 1, 0));
        assert_eq!(again.records().unwrap(), first.records().unwrap());
    }

    #[test]
    fn tombstones_and_gaps_round_trip_and_version_1_is_still_read() {
        let mut b = BatchBuilder::new(Compression::Zstd).with_producer(3, 0, 10);
        for i in 0..5u8 {
            b.push_record(100 + i64::from(i), Some(&[b'k', i % 2]), (i != 3).then_some(&[i][..]), &[]);
        }
        let batch = b.build().unwrap().with_base_offset(50);
        assert_eq!((batch.header().version, batch.last_offset(), batch.header().is_dense()), (2, 54, true));
        let all = batch.records().unwrap();
        assert_eq!(all[3].value, None, "a tombstone");
        assert_eq!(all[4].value.as_deref(), Some(&[4u8][..]));

        // Keep the latest of each key: offsets stay, the batch has gaps.
        let kept = retain(&batch, |r| r.offset >= 53, false).unwrap().unwrap();
        let h = kept.header();
        assert_eq!((h.base_offset, h.record_count, h.last_offset_delta, kept.last_offset()), (50, 2, 4, 54));
        assert_eq!((h.producer_id, h.base_sequence, h.first_timestamp, h.max_timestamp), (3, 10, 100, 104));
        assert!(!h.is_dense());
        assert_eq!(kept.records().unwrap(), all[3..].to_vec());
        let again = Batch::validate(kept.bytes().clone()).unwrap();
        assert_eq!(again, kept);
        // Keeping none: nothing, or a batch that only marks the offsets.
        assert_eq!(retain(&batch, |_| false, false).unwrap(), None);
        let marker = retain(&batch, |_| false, true).unwrap().unwrap();
        assert_eq!((marker.header().record_count, marker.last_offset()), (0, 54));
        assert!(marker.records().unwrap().is_empty());
        // Keeping all of a version 2 batch keeps it as it is.
        assert_eq!(retain(&batch, |_| true, false).unwrap().unwrap(), batch);

        // A version 1 batch, as older agents stored it.
        let mut v1 = BytesMut::new();
        let mut payload = Vec::new();
        for (i, v) in [&b"a"[..], b"bc"].iter().enumerate() {
            let mut body = Vec::new();
            body.put_varint(i as i64);
            body.put_uvarint(i as u64);
            body.put_varint(-1);
            body.put_uvarint(v.len() as u64);
            body.put_slice(v);
            body.put_uvarint(0);
            payload.put_uvarint(body.len() as u64);
            payload.extend_from_slice(&body);
        }
        v1.put_i64(7);
        v1.put_u32(0);
        v1.put_u32((HEADER_LEN_V1 - LENGTH_END + payload.len()) as u32);
        v1.put_u8(1);
        v1.put_u8(0);
        v1.put_u32(2);
        v1.put_i64(1000);
        v1.put_i64(1001);
        v1.put_i64(-1);
        v1.put_i16(-1);
        v1.put_i32(-1);
        v1.put_u32(payload.len() as u32);
        v1.put_slice(&payload);
        let crc = crc32c::crc32c(&v1[CRC_START..]);
        v1[8..12].copy_from_slice(&crc.to_be_bytes());
        let old = Batch::validate(v1.freeze()).unwrap();
        assert_eq!((old.header().version, old.last_offset()), (1, 8));
        let records = old.records().unwrap();
        assert_eq!(
            records.iter().map(|r| (r.offset, r.value.clone().unwrap())).collect::<Vec<_>>(),
            vec![(7, Bytes::from_static(b"a")), (8, Bytes::from_static(b"bc"))]
        );
        // Compaction writes it in version 2.
        let kept = retain(&old, |r| r.offset == 8, false).unwrap().unwrap();
        assert_eq!((kept.header().version, kept.last_offset(), kept.records().unwrap()), (2, 8, records[1..].to_vec()));
    }

    #[test]
    fn record_counts_beyond_the_offsets_are_refused() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1, None, b"a", &[]);
        b.push(1, None, b"b", &[]);
        let mut raw = BytesMut::from(&b.build().unwrap().bytes()[..]);
        raw[56..60].copy_from_slice(&0u32.to_be_bytes());
        let crc = crc32c::crc32c(&raw[CRC_START..]);
        raw[8..12].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(Batch::validate(raw.freeze()), Err(BatchError::Offsets(_))));
    }

    #[test]
    fn sequences_wrap_to_zero() {
        assert_eq!(advance_sequence(0, 5), 5);
        assert_eq!(advance_sequence(i32::MAX, 1), 0);
        assert_eq!(advance_sequence(i32::MAX - 1, 3), 1);
        let b = BatchBuilder::new(Compression::None).with_producer(7, 0, i32::MAX);
        let mut b = b;
        b.push(1, None, b"a", &[]);
        b.push(1, None, b"b", &[]);
        let h = *b.build().unwrap().header();
        assert!(h.is_idempotent());
        assert_eq!((h.producer_id, h.base_sequence, h.last_sequence()), (7, i32::MAX, 0));
    }
    use proptest::prelude::*;

    fn sample(compression: Compression) -> Batch {
        let mut b = BatchBuilder::new(compression);
        b.push(1000, Some(b"k1"), b"hello", &[]);
        b.push(999, None, b"", &[Header { name: "h".into(), value: Bytes::from_static(b"\x00\xff") }]);
        b.push(1005, Some(b""), &[0u8, 1, 2, 255], &[]);
        b.build().unwrap()
    }

    #[test]
    fn records_round_trip_with_offsets_stamped() {
        for compression in [Compression::None, Compression::Zstd] {
            let batch = sample(compression).with_base_offset(42);
            let again = Batch::validate(batch.bytes().clone()).unwrap();
            assert_eq!(again.header().base_offset, 42);
            assert_eq!(again.last_offset(), 44);
            assert_eq!(again.header().max_timestamp, 1005);
            let records = again.records().unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!(records[0].offset, 42);
            assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
            assert_eq!(records[1].timestamp, 999);
            assert_eq!(records[1].key, None);
            assert_eq!(records[1].value.as_deref(), Some(&b""[..]));
            assert_eq!(&records[1].headers[0].value[..], b"\x00\xff");
            assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(records[2].value.as_deref(), Some(&[0u8, 1, 2, 255][..]));
        }
    }

    #[test]
    fn every_flipped_byte_after_the_base_offset_is_caught() {
        let batch = sample(Compression::Zstd);
        let raw = batch.bytes().to_vec();
        for i in 8..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x40;
            assert!(Batch::validate(Bytes::from(bad)).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let raw = sample(Compression::None).into_bytes();
        for len in 0..raw.len() {
            assert!(Batch::validate(raw.slice(..len)).is_err());
            assert!(split(&raw.slice(..len)).any(|r| r.is_err()) || len == 0);
        }
    }

    #[test]
    fn split_walks_concatenated_batches() {
        let a = sample(Compression::Zstd).with_base_offset(0);
        let b = sample(Compression::None).with_base_offset(3);
        let mut all = BytesMut::new();
        all.extend_from_slice(a.bytes());
        all.extend_from_slice(b.bytes());
        let all = all.freeze();
        let batches: Vec<_> = split(&all).collect::<Result<_, _>>().unwrap();
        assert_eq!(batches, vec![a, b]);
    }

    #[test]
    fn empty_builder_is_an_error() {
        assert_eq!(BatchBuilder::new(Compression::Zstd).build(), Err(BatchError::Empty));
    }

    /// timestamp, key, value, headers

    #[test]
    fn a_used_buffer_builds_the_same_batch_as_a_fresh_one() {
        for compression in [Compression::None, Compression::Zstd] {
            let fresh = sample(compression);
            // A buffer still holding an earlier batch's bytes.
            let used = BytesMut::from(&sample(Compression::None).bytes()[..]);
            let mut b = BatchBuilder::with_buffer(compression, used, 64);
            b.push(1000, Some(b"k1"), b"hello", &[]);
            b.push(999, None, b"", &[Header { name: "h".into(), value: Bytes::from_static(b"\x00\xff") }]);
            b.push(1005, Some(b""), &[0u8, 1, 2, 255], &[]);
            let (built, back) = b.build_returning_buffer();
            assert_eq!(built.unwrap(), fresh);
            // Uncompressed, the batch lives in the buffer; compressed, it does not.
            assert_eq!(back.is_some(), compression == Compression::Zstd);
        }
        let (built, back) = BatchBuilder::with_buffer(Compression::None, BytesMut::new(), 8).build_returning_buffer();
        assert_eq!((built, back.is_some()), (Err(BatchError::Empty), true));
    }
    type ArbRecord = (i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

    fn arb_record() -> impl Strategy<Value = ArbRecord> {
        (
            any::<i64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
        )
    }

    proptest! {
        #[test]
        fn any_records_round_trip(records in proptest::collection::vec(arb_record(), 1..20), zstd in any::<bool>(), base in 0i64..1 << 40) {
            let compression = if zstd { Compression::Zstd } else { Compression::None };
            let mut b = BatchBuilder::new(compression);
            for (ts, key, value, headers) in &records {
                let headers: Vec<Header> = headers.iter().map(|(n, v)| Header { name: n.clone(), value: Bytes::from(v.clone()) }).collect();
                b.push(*ts, key.as_deref(), value, &headers);
            }
            let batch = b.build().unwrap().with_base_offset(base);
            let decoded = Batch::validate(batch.into_bytes()).unwrap().records().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (rec, (ts, key, value, headers))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(rec.offset, base + i as i64);
                prop_assert_eq!(rec.timestamp, *ts);
                prop_assert_eq!(rec.key.as_deref(), key.as_deref());
                prop_assert_eq!(rec.value.as_deref(), Some(&value[..]));
                prop_assert_eq!(rec.headers.len(), headers.len());
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let bytes = Bytes::from(data);
            if let Ok(batch) = Batch::validate(bytes.clone()) {
                let _ = batch.records();
            }
            for b in split(&bytes).flatten() {
                let _ = b.records();
            }
        }

        #[test]
        fn corrupted_payloads_with_a_fixed_crc_never_panic(flip in 56usize..200, xor in 1u8..=255) {
            // Re-seal the CRC after corrupting the payload, so the record
            // decoder itself sees the garbage.
            let mut b = BatchBuilder::new(Compression::None);
            for i in 0..10u8 { b.push(i64::from(i), Some(&[i]), &[i; 10], &[]); }
            let mut raw = b.build().unwrap().into_bytes().to_vec();
            let at = flip.min(raw.len() - 1);
            raw[at] ^= xor;
            let crc = crc32c::crc32c(&raw[CRC_START..]);
            raw[8..12].copy_from_slice(&crc.to_be_bytes());
            if let Ok(batch) = Batch::validate(Bytes::from(raw)) { let _ = batch.records(); }
        }
    }
}
