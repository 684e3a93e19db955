//! A minimal big-endian codec for catalog keys and values. Values start
//! with a version byte so their layout can grow.

use bytes::BufMut;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("value is truncated at {0}")]
    Truncated(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("unknown value version {0}")]
    Version(u8),
}

pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader(buf)
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    pub fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(self.u32(what)? as i32)
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        Ok(self.u64(what)? as i64)
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.u32(what)? as usize;
        String::from_utf8(self.take(len, what)?.to_vec()).map_err(|_| CodecError::Invalid(what))
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, CodecError> {
        let len = self.u32(what)? as usize;
        Ok(self.take(len, what)?.to_vec())
    }
    /// A u32 count of items that take at least `min_item_bytes` each: a
    /// count the rest of the value cannot hold is an error, not an allocation.
    pub fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, CodecError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.0.len() {
            return Err(CodecError::Invalid(what));
        }
        Ok(n)
    }

    pub fn version(&mut self, expected: u8) -> Result<(), CodecError> {
        match self.u8("version")? {
            v if v == expected => Ok(()),
            v => Err(CodecError::Version(v)),
        }
    }
    pub fn finish(self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Invalid("trailing bytes"))
        }
    }
}

pub trait Writer: BufMut {
    fn put_str(&mut self, s: &str) {
        self.put_u32(s.len() as u32);
        self.put_slice(s.as_bytes());
    }
    fn put_bytes_u32(&mut self, b: &[u8]) {
        self.put_u32(b.len() as u32);
        self.put_slice(b);
    }
}
impl Writer for Vec<u8> {}

/// Offsets in keys are stored with the sign bit flipped so that byte order
/// is numeric order, negatives included.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn from_ordered_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_offsets_sort_numerically() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, 1 << 40, i64::MAX];
        for w in values.windows(2) {
            assert!(ordered_i64(w[0]) < ordered_i64(w[1]));
            assert_eq!(from_ordered_i64(ordered_i64(w[0])), w[0]);
        }
    }
}
