//! Frames: every request and response travels as one frame on its own QUIC
//! stream.
//!
//! ```text
//! offset size field
//!  0      4   length (u32)   bytes after this field
//!  4      1   version (1)
//!  5      1   kind           the message type (see `message`)
//!  6      ..  body
//! ```

use bytes::{BufMut, Bytes, BytesMut};

pub const VERSION: u8 = 1;
/// The ALPN protocol name silt's QUIC connections negotiate.
pub const ALPN: &[u8] = b"silt/1";
pub const PREFIX_LEN: usize = 4;
/// Version and kind.
pub const HEAD_LEN: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("frame of {0} bytes is shorter than its {HEAD_LEN}-byte head")]
    TooShort(usize),
    #[error("unsupported frame version {0}")]
    Version(u8),
}

/// A decoded frame: its kind and its body, not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub body: Bytes,
}

/// Reads the length prefix and checks it against `max` before anything is
/// allocated for the body.
pub fn parse_length(prefix: [u8; PREFIX_LEN], max: usize) -> Result<usize, FrameError> {
    let size = u32::from_be_bytes(prefix) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    if size < HEAD_LEN {
        return Err(FrameError::TooShort(size));
    }
    Ok(size)
}

impl Frame {
    /// Decodes what follows the length prefix.
    pub fn decode(rest: Bytes) -> Result<Frame, FrameError> {
        if rest.len() < HEAD_LEN {
            return Err(FrameError::TooShort(rest.len()));
        }
        if rest[0] != VERSION {
            return Err(FrameError::Version(rest[0]));
        }
        Ok(Frame { kind: rest[1], body: rest.slice(HEAD_LEN..) })
    }

    /// Encodes a whole frame, length prefix included.
    pub fn encode(kind: u8, body: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(PREFIX_LEN + HEAD_LEN + body.len());
        Self::put_head(&mut out, kind, body.len());
        out.put_slice(body);
        out.freeze()
    }

    /// Writes the prefix and head of a frame whose body is `body_len` bytes.
    pub fn put_head(out: &mut BytesMut, kind: u8, body_len: usize) {
        out.put_u32((HEAD_LEN + body_len) as u32);
        out.put_u8(VERSION);
        out.put_u8(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_lengths_are_checked() {
        let raw = Frame::encode(7, b"body");
        let len = parse_length(raw[..4].try_into().unwrap(), 100).unwrap();
        assert_eq!(len, raw.len() - 4);
        let frame = Frame::decode(raw.slice(4..)).unwrap();
        assert_eq!(frame, Frame { kind: 7, body: Bytes::from_static(b"body") });
        assert_eq!(parse_length(raw[..4].try_into().unwrap(), 3), Err(FrameError::TooLarge { size: 6, max: 3 }));
        assert_eq!(parse_length([0, 0, 0, 1], 100), Err(FrameError::TooShort(1)));
        assert_eq!(Frame::decode(Bytes::from_static(&[9, 1])), Err(FrameError::Version(9)));
        for cut in 0..2 {
            assert!(Frame::decode(raw.slice(4..4 + cut)).is_err());
        }
    }
}
