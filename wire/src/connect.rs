//! Connector messages: the bodies of the connector requests and responses
//! in `message`. Strings are u16-length-prefixed, texts (configs,
//! positions) u32-length-prefixed; lists are a u32 count, then the items.
//!
//! ```text
//! ConnectorInfo    name: string, config: text, flags: u8 (1 paused, 2 standalone), worker: string,
//!                  epoch: u64, expires_ms: i64, position: text, error: text, error_ms: i64
//! ConnectHeartbeat worker: string, ttl_ms: u32, standalone: list of string,
//!                  errors: list of (connector: string, epoch: u64, error: text)
//! ```
//!
//! A worker heartbeats every third of its TTL; the answer lists the
//! connectors it holds, each with the epoch its commits must carry. A
//! standalone worker names the connectors it runs and holds no others.

use bytes::BufMut;

use crate::buf::{DecodeError, Reader};

/// A connector as the metadata store has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectorInfo {
    pub name: String,
    /// Its config, as TOML.
    pub config: String,
    pub paused: bool,
    pub standalone: bool,
    /// The worker holding it ("" when none).
    pub worker: String,
    pub epoch: u64,
    pub expires_ms: i64,
    /// A source's progress, as the connector writes it.
    pub position: String,
    /// The last error its worker reported ("" when none since it was taken), and when.
    pub error: String,
    pub error_ms: i64,
}

/// A worker's round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectHeartbeat {
    pub worker: String,
    pub ttl_ms: u32,
    /// A standalone worker's connectors (empty: a pool worker).
    pub standalone: Vec<String>,
    /// Errors its tasks met since the last round: (connector, epoch, error).
    pub errors: Vec<(String, u64, String)>,
}

pub(crate) fn put_text(out: &mut impl BufMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

pub(crate) fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    let len = r.u32(what)? as usize;
    let raw = r.take(len, what)?;
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
}

fn put_str(out: &mut impl BufMut, s: &str) {
    let s = crate::message::clip(s);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

impl ConnectorInfo {
    pub(crate) fn put_all(out: &mut bytes::BytesMut, items: &[ConnectorInfo]) {
        out.put_u32(items.len() as u32);
        for c in items {
            put_str(out, &c.name);
            put_text(out, &c.config);
            out.put_u8(u8::from(c.paused) | (u8::from(c.standalone) << 1));
            put_str(out, &c.worker);
            out.put_u64(c.epoch);
            out.put_i64(c.expires_ms);
            put_text(out, &c.position);
            put_text(out, &c.error);
            out.put_i64(c.error_ms);
        }
    }

    pub(crate) fn read_all(r: &mut Reader<'_>) -> Result<Vec<ConnectorInfo>, DecodeError> {
        let n = r.count("connector count", 40)?;
        (0..n)
            .map(|_| {
                let name = r.string("connector")?;
                let config = text(r, "config")?;
                let flags = r.u8("flags")?;
                Ok(ConnectorInfo {
                    name,
                    config,
                    paused: flags & 1 != 0,
                    standalone: flags & 2 != 0,
                    worker: r.string("worker")?,
                    epoch: r.u64("epoch")?,
                    expires_ms: r.i64("expiry")?,
                    position: text(r, "position")?,
                    error: text(r, "error")?,
                    error_ms: r.i64("error time")?,
                })
            })
            .collect()
    }
}

impl ConnectHeartbeat {
    pub(crate) fn put(&self, out: &mut bytes::BytesMut) {
        put_str(out, &self.worker);
        out.put_u32(self.ttl_ms);
        crate::group::put_strings(out, &self.standalone);
        out.put_u32(self.errors.len() as u32);
        for (name, epoch, error) in &self.errors {
            put_str(out, name);
            out.put_u64(*epoch);
            put_text(out, error);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ConnectHeartbeat, DecodeError> {
        let worker = r.string("worker")?;
        let ttl_ms = r.u32("ttl")?;
        let standalone = crate::group::read_strings(r, "connector")?;
        let n = r.count("error count", 14)?;
        let errors = (0..n)
            .map(|_| Ok((r.string("connector")?, r.u64("epoch")?, text(r, "error")?)))
            .collect::<Result<_, DecodeError>>()?;
        Ok(ConnectHeartbeat { worker, ttl_ms, standalone, errors })
    }
}

/// How a connector is changed from outside its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorOp {
    Pause,
    Resume,
    Delete,
}

impl ConnectorOp {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            ConnectorOp::Pause => 0,
            ConnectorOp::Resume => 1,
            ConnectorOp::Delete => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<ConnectorOp, DecodeError> {
        Ok(match v {
            0 => ConnectorOp::Pause,
            1 => ConnectorOp::Resume,
            2 => ConnectorOp::Delete,
            other => return Err(DecodeError::invalid("connector action", format!("{other}"))),
        })
    }
}
