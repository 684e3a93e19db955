//! Decoding PostgreSQL's `pgoutput` logical replication messages (protocol
//! version 1, text format): the relations they describe, and the rows
//! inserted, updated and deleted. `pgwire-replication` carries the stream;
//! this reads what is in it.
//!
//! ```text
//! R  relation id u32, namespace cstr, name cstr, replica identity u8,
//!    columns i16, then per column: flags u8 (1: part of the key), name cstr, type oid u32, typmod i32
//! I  relation id u32, 'N', tuple
//! U  relation id u32, ['K' or 'O', old tuple], 'N', new tuple
//! D  relation id u32, 'K' or 'O', old tuple
//! tuple: columns i16, then per column: 'n' null | 'u' unchanged TOAST | 't' len i32 text | 'b' len i32 bytes
//! ```
//! Other messages (begin, commit, origin, type, truncate, message) are
//! reported as [`Message::Other`]; the transport reports begin and commit.

use std::fmt;

/// A column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value the update did not change (not sent).
    Unchanged,
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Datum>,
    },
    /// `old` is the old row's key (or whole row with REPLICA IDENTITY FULL) when sent.
    Update {
        relation: u32,
        old: Option<Vec<Datum>>,
        new: Vec<Datum>,
    },
    Delete {
        relation: u32,
        old: Vec<Datum>,
    },
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError(format!("truncated {what}")));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("four bytes")))
    }

    fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let end = self.buf.iter().position(|&b| b == 0).ok_or_else(|| DecodeError(format!("unterminated {what}")))?;
        let s = String::from_utf8(self.buf[..end].to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Datum>, DecodeError> {
        let n = self.i16("column count")?;
        if n < 0 {
            return Err(DecodeError("negative column count".into()));
        }
        (0..n)
            .map(|_| match self.u8("column kind")? {
                b'n' => Ok(Datum::Null),
                b'u' => Ok(Datum::Unchanged),
                b't' | b'b' => {
                    let len = self.u32("value length")? as usize;
                    let raw = self.take(len, "value")?;
                    Ok(Datum::Text(String::from_utf8_lossy(raw).into_owned()))
                }
                other => Err(DecodeError(format!("unknown column kind {other:#x}"))),
            })
            .collect()
    }
}

/// Decodes one message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { buf: data };
    let tag = r.u8("message tag")?;
    let message = match tag {
        b'R' => {
            let id = r.u32("relation id")?;
            let schema = r.cstr("namespace")?;
            let name = r.cstr("relation name")?;
            let _identity = r.u8("replica identity")?;
            let n = r.i16("column count")?;
            let columns = (0..n.max(0))
                .map(|_| {
                    let flags = r.u8("column flags")?;
                    let name = r.cstr("column name")?;
                    let type_oid = r.u32("type oid")?;
                    let _typmod = r.u32("type modifier")?;
                    Ok(Column { name, type_oid, key: flags & 1 != 0 })
                })
                .collect::<Result<_, DecodeError>>()?;
            Message::Relation(Relation { id, schema, name, columns })
        }
        b'I' => {
            let relation = r.u32("relation id")?;
            match r.u8("tuple tag")? {
                b'N' => Message::Insert { relation, new: r.tuple()? },
                other => return Err(DecodeError(format!("insert with tuple tag {other:#x}"))),
            }
        }
        b'U' => {
            let relation = r.u32("relation id")?;
            let (old, new) = match r.u8("tuple tag")? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    match r.u8("tuple tag")? {
                        b'N' => (Some(old), r.tuple()?),
                        other => return Err(DecodeError(format!("update with tuple tag {other:#x}"))),
                    }
                }
                b'N' => (None, r.tuple()?),
                other => return Err(DecodeError(format!("update with tuple tag {other:#x}"))),
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32("relation id")?;
            match r.u8("tuple tag")? {
                b'K' | b'O' => Message::Delete { relation, old: r.tuple()? },
                other => return Err(DecodeError(format!("delete with tuple tag {other:#x}"))),
            }
        }
        other => return Ok(Message::Other(other)),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError(format!("{} bytes after a {:?} message", r.buf.len(), tag as char)));
    }
    Ok(message)
}

/// A text value as JSON, by its type: numbers and booleans as such, the rest as strings.
pub fn json_value(d: &Datum, type_oid: u32) -> serde_json::Value {
    use serde_json::Value;
    match d {
        Datum::Null | Datum::Unchanged => Value::Null,
        Datum::Text(t) => match type_oid {
            // bool
            16 => Value::Bool(t == "t"),
            // int2, int4, int8, oid
            20 | 21 | 23 | 26 => t.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(t.clone())),
            // float4, float8
            700 | 701 => t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(t.clone()), Value::Number),
            // json, jsonb
            114 | 3802 => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
            _ => Value::String(t.clone()),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn relation_bytes(id: u32, schema: &str, name: &str, cols: &[(&str, u32, bool)]) -> Vec<u8> {
        let mut v = vec![b'R'];
        v.extend_from_slice(&id.to_be_bytes());
        for s in [schema, name] {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        v.push(b'd');
        v.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (n, oid, key) in cols {
            v.push(u8::from(*key));
            v.extend_from_slice(n.as_bytes());
            v.push(0);
            v.extend_from_slice(&oid.to_be_bytes());
            v.extend_from_slice(&(-1i32).to_be_bytes());
        }
        v
    }

    pub fn tuple_bytes(values: &[Option<&str>]) -> Vec<u8> {
        let mut v = (values.len() as i16).to_be_bytes().to_vec();
        for value in values {
            match value {
                None => v.push(b'n'),
                Some(t) => {
                    v.push(b't');
                    v.extend_from_slice(&(t.len() as u32).to_be_bytes());
                    v.extend_from_slice(t.as_bytes());
                }
            }
        }
        v
    }

    #[test]
    fn messages_decode_and_damage_is_an_error() {
        let rel = relation_bytes(7, "public", "orders", &[("id", 23, true), ("note", 25, false)]);
        assert_eq!(
            decode(&rel),
            Ok(Message::Relation(Relation {
                id: 7,
                schema: "public".into(),
                name: "orders".into(),
                columns: vec![
                    Column { name: "id".into(), type_oid: 23, key: true },
                    Column { name: "note".into(), type_oid: 25, key: false },
                ],
            }))
        );
        let mut insert = vec![b'I', 0, 0, 0, 7, b'N'];
        insert.extend(tuple_bytes(&[Some("1"), None]));
        assert_eq!(
            decode(&insert),
            Ok(Message::Insert { relation: 7, new: vec![Datum::Text("1".into()), Datum::Null] })
        );
        let mut update = vec![b'U', 0, 0, 0, 7, b'K'];
        update.extend(tuple_bytes(&[Some("1")]));
        update.push(b'N');
        update.extend(tuple_bytes(&[Some("2"), Some("x")]));
        assert_eq!(
            decode(&update),
            Ok(Message::Update {
                relation: 7,
                old: Some(vec![Datum::Text("1".into())]),
                new: vec![Datum::Text("2".into()), Datum::Text("x".into())],
            })
        );
        let mut delete = vec![b'D', 0, 0, 0, 7, b'K'];
        delete.extend(tuple_bytes(&[Some("2")]));
        assert_eq!(decode(&delete), Ok(Message::Delete { relation: 7, old: vec![Datum::Text("2".into())] }));
        assert_eq!(decode(b"B\0\0"), Ok(Message::Other(b'B')));
        for bad in [&insert[..insert.len() - 1], &rel[..5], b"", b"I\0\0\0\x07X"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let mut trailing = delete.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn values_become_json_by_type() {
        let t = |s: &str| Datum::Text(s.into());
        assert_eq!(json_value(&t("42"), 23), serde_json::json!(42));
        assert_eq!(json_value(&t("t"), 16), serde_json::json!(true));
        assert_eq!(json_value(&t("1.5"), 701), serde_json::json!(1.5));
        assert_eq!(json_value(&t("{\"a\":1}"), 3802), serde_json::json!({"a": 1}));
        assert_eq!(json_value(&t("12.30"), 1700), serde_json::json!("12.30"));
        assert_eq!(json_value(&Datum::Null, 23), serde_json::Value::Null);
    }
}
