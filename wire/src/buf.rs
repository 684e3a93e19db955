//! Bounds-checked big-endian readers and writers, and zigzag varints.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated input: needed {needed} more bytes while reading {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A message kind this build does not know (a newer peer's).
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
}

impl DecodeError {
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        DecodeError::Invalid { what, detail: detail.into() }
    }
}

/// A cursor over a byte slice whose every read checks the remaining length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated { what, needed: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// A string prefixed by its u16 length.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(what)? as usize;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
    }

    /// A byte string prefixed by its u32 length.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    pub fn uvarint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8(what)?;
            if i == 9 && byte > 1 {
                return Err(DecodeError::invalid(what, "varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::invalid(what, "varint longer than 10 bytes"))
    }

    /// A zigzag-encoded signed varint.
    pub fn varint(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let raw = self.uvarint(what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A count that must fit in what remains, assuming each item needs at
    /// least `min_item_bytes`: this is what bounds allocations by input size.
    pub fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(DecodeError::invalid(what, format!("count {n} exceeds the input")));
        }
        Ok(n)
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

/// Writers for the same encodings, on top of `BytesMut`.
pub trait WriteExt: BufMut {
    fn put_string(&mut self, s: &str) {
        let len = u16::try_from(s.len()).expect("strings on the wire are at most 65535 bytes");
        self.put_u16(len);
        self.put_slice(s.as_bytes());
    }
    fn put_bytes_u32(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).expect("byte strings on the wire are below 4 GiB");
        self.put_u32(len);
        self.put_slice(b);
    }
    fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.put_u8(v as u8);
    }
    fn put_varint(&mut self, v: i64) {
        self.put_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

impl WriteExt for BytesMut {}
impl WriteExt for Vec<u8> {}

pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn varint_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Copies a sub-slice out of a shared buffer without copying bytes.
pub fn slice_of(parent: &Bytes, part: &[u8]) -> Bytes {
    parent.slice_ref(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<i64>(), u in any::<u64>()) {
            let mut out = Vec::new();
            out.put_varint(v);
            out.put_uvarint(u);
            prop_assert_eq!(out.len(), varint_len(v) + uvarint_len(u));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert_eq!(r.uvarint("u").unwrap(), u);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.uvarint("a");
            let _ = r.string("b");
            let _ = r.bytes("c");
            let _ = r.count("d", 8);
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let data = [0xffu8; 11];
        assert!(matches!(Reader::new(&data).uvarint("v"), Err(DecodeError::Invalid { .. })));
        let data = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&data).uvarint("v").is_err());
    }

    #[test]
    fn counts_are_bounded_by_the_input() {
        let data = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert!(Reader::new(&data).count("n", 1).is_err());
    }
}
