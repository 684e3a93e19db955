//! Who may do what: bearer tokens, `0x0d | principal -> TokenRecord`, and
//! ACLs, `0x0e | acl fields -> ()`.
//!
//! A principal has at most one token. The catalog keeps only what checks
//! a secret (its SHA-256, and SCRAM's stored and server keys for the Kafka
//! listener), never the secret itself. An ACL is its own key, so adding
//! one twice keeps one.
//!
//! Every change bumps the `auth` counter: agents read that one key every
//! few seconds and re-read tokens and ACLs only when it moved.

use bytes::BufMut;
use silt_wire::auth::{Acl, Operation, Pattern, Permission, ResourceType};

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;

use super::{corrupt, keys, next_counter, read, scan_prefix, Catalog};

const AUTH_COUNTER: &[u8] = b"auth";

/// SCRAM's per-user credential (RFC 5802) for one hash function.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScramCredential {
    /// 0: SHA-256, 1: SHA-512.
    pub mechanism: u8,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRecord {
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
    pub created_ms: i64,
    /// 0: never.
    pub expires_ms: i64,
    pub scram: Vec<ScramCredential>,
}

impl TokenRecord {
    /// Whether the token still works at `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        self.expires_ms == 0 || now_ms < self.expires_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.scram.len() * 160);
        v.put_u8(1);
        v.put_bytes_u32(&self.hash);
        v.put_i64(self.created_ms);
        v.put_i64(self.expires_ms);
        v.put_u32(self.scram.len() as u32);
        for s in &self.scram {
            v.put_u8(s.mechanism);
            v.put_bytes_u32(&s.salt);
            v.put_u32(s.iterations);
            v.put_bytes_u32(&s.stored_key);
            v.put_bytes_u32(&s.server_key);
        }
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let hash = r.bytes("hash")?;
        let created_ms = r.i64("created")?;
        let expires_ms = r.i64("expiry")?;
        let n = r.count("scram credentials", 17)?;
        let mut scram = Vec::with_capacity(n);
        for _ in 0..n {
            scram.push(ScramCredential {
                mechanism: r.u8("mechanism")?,
                salt: r.bytes("salt")?,
                iterations: r.u32("iterations")?,
                stored_key: r.bytes("stored key")?,
                server_key: r.bytes("server key")?,
            });
        }
        r.finish()?;
        Ok(TokenRecord { hash, created_ms, expires_ms, scram })
    }
}

fn token_key(principal: &str) -> Vec<u8> {
    let mut key = vec![keys::TOKEN];
    key.extend_from_slice(principal.as_bytes());
    key
}

/// An ACL's key: its fields, so that one ACL is one key.
fn acl_key(a: &Acl) -> Vec<u8> {
    let mut key = vec![keys::ACL];
    key.put_u8(a.resource.to_u8());
    key.put_u8(a.pattern.to_u8());
    key.put_str(&a.name);
    key.put_str(&a.principal);
    key.put_u8(a.operation.to_u8());
    key.put_u8(a.permission.to_u8());
    key
}

fn decode_acl(key: &[u8]) -> Result<Acl, CodecError> {
    let mut r = Reader::new(key.get(1..).unwrap_or_default());
    let bad = |_| CodecError::Invalid("acl field");
    let resource = ResourceType::from_u8(r.u8("resource")?).map_err(bad)?;
    let pattern = Pattern::from_u8(r.u8("pattern")?).map_err(bad)?;
    let name = r.string("name")?;
    let principal = r.string("principal")?;
    let operation = Operation::from_u8(r.u8("operation")?).map_err(bad)?;
    let permission = Permission::from_u8(r.u8("permission")?).map_err(bad)?;
    r.finish()?;
    Ok(Acl { principal, resource, pattern, name, operation, permission })
}

/// Tokens and ACLs as one snapshot, with the counter they were read at.
#[derive(Debug, Clone, Default)]
pub struct AuthSnapshot {
    pub version: u64,
    pub tokens: Vec<(String, TokenRecord)>,
    pub acls: Vec<Acl>,
}

fn read_counter(raw: Option<bytes::Bytes>, key: &[u8]) -> Result<u64, CatalogError> {
    match raw {
        None => Ok(0),
        Some(raw) => {
            Ok(u64::from_be_bytes(raw[..].try_into().map_err(|_| corrupt(key, CodecError::Invalid("counter")))?))
        }
    }
}

fn counter_key() -> Vec<u8> {
    let mut key = vec![keys::COUNTER];
    key.extend_from_slice(AUTH_COUNTER);
    key
}

impl Catalog {
    /// Stores `record` as `principal`'s token. A principal with a live
    /// token keeps it: `TokenExists` (revoke it first); an expired one is
    /// replaced.
    pub async fn create_token(&self, principal: &str, record: &TokenRecord, now_ms: i64) -> Result<(), CatalogError> {
        transact!(self, |t| {
            let key = token_key(principal);
            if let Some(old) = read(t, &key, true, TokenRecord::decode).await? {
                if old.live(now_ms) {
                    return Err(CatalogError::TokenExists(principal.to_string()));
                }
            }
            t.put(key, record.encode());
            next_counter(t, AUTH_COUNTER).await?;
            Ok(())
        })
    }

    /// Removes `principal`'s token; `UnknownToken` when it has none.
    pub async fn revoke_token(&self, principal: &str) -> Result<(), CatalogError> {
        transact!(self, |t| {
            let key = token_key(principal);
            if t.get_for_update(&key).await?.is_none() {
                return Err(CatalogError::UnknownToken(principal.to_string()));
            }
            t.delete(key);
            next_counter(t, AUTH_COUNTER).await?;
            Ok(())
        })
    }

    /// Adds an ACL (or, with `remove`, removes it); whether anything changed.
    pub async fn alter_acl(&self, acl: &Acl, remove: bool) -> Result<bool, CatalogError> {
        transact!(self, |t| {
            let key = acl_key(acl);
            let present = t.get_for_update(&key).await?.is_some();
            if present != remove {
                return Ok(false);
            }
            if remove {
                t.delete(key);
            } else {
                t.put(key, Vec::new());
            }
            next_counter(t, AUTH_COUNTER).await?;
            Ok(true)
        })
    }

    /// The `auth` counter: it moves whenever a token or an ACL changes.
    pub async fn auth_version(&self) -> Result<u64, CatalogError> {
        let key = counter_key();
        read_only!(self, |t| read_counter(t.get(&key).await?, &key))
    }

    /// Every token and ACL, and the counter they were read at.
    pub async fn auth_snapshot(&self) -> Result<AuthSnapshot, CatalogError> {
        let key = counter_key();
        read_only!(self, |t| {
            let version = read_counter(t.get(&key).await?, &key)?;
            let mut tokens = Vec::new();
            for (k, v) in scan_prefix(t, &[keys::TOKEN]).await? {
                let principal =
                    String::from_utf8(k[1..].to_vec()).map_err(|_| corrupt(&k, CodecError::Invalid("principal")))?;
                tokens.push((principal, TokenRecord::decode(&v).map_err(|e| corrupt(&k, e))?));
            }
            let mut acls = Vec::new();
            for (k, _) in scan_prefix(t, &[keys::ACL]).await? {
                acls.push(decode_acl(&k).map_err(|e| corrupt(&k, e))?);
            }
            Ok(AuthSnapshot { version, tokens, acls })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;

    fn acl(principal: &str, name: &str, op: Operation) -> Acl {
        Acl {
            principal: principal.into(),
            resource: ResourceType::Topic,
            pattern: Pattern::Literal,
            name: name.into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    #[tokio::test]
    async fn tokens_and_acls_move_the_counter() {
        let (_d, c) = catalog().await;
        assert_eq!(c.auth_version().await.unwrap(), 0);
        let record = TokenRecord {
            hash: vec![7; 32],
            created_ms: 10,
            expires_ms: 100,
            scram: vec![ScramCredential {
                mechanism: 1,
                salt: vec![1, 2],
                iterations: 4096,
                stored_key: vec![3; 64],
                server_key: vec![4; 64],
            }],
        };
        c.create_token("bob", &record, 10).await.unwrap();
        // A live token is kept; an expired one is replaced.
        assert!(matches!(c.create_token("bob", &record, 50).await, Err(CatalogError::TokenExists(_))));
        c.create_token("bob", &TokenRecord { expires_ms: 0, ..record.clone() }, 100).await.unwrap();
        let a = acl("bob", "orders", Operation::Write);
        assert!(c.alter_acl(&a, false).await.unwrap());
        assert!(!c.alter_acl(&a, false).await.unwrap(), "the same ACL twice is one ACL");
        let b = acl("*", "public", Operation::Read);
        assert!(c.alter_acl(&b, false).await.unwrap());
        let snap = c.auth_snapshot().await.unwrap();
        assert_eq!(snap.version, 4);
        assert_eq!(snap.tokens, vec![("bob".to_string(), TokenRecord { expires_ms: 0, ..record })]);
        assert_eq!(snap.acls.len(), 2);
        assert!(snap.acls.contains(&a) && snap.acls.contains(&b));
        assert!(c.alter_acl(&a, true).await.unwrap());
        assert!(!c.alter_acl(&a, true).await.unwrap());
        c.revoke_token("bob").await.unwrap();
        assert!(matches!(c.revoke_token("bob").await, Err(CatalogError::UnknownToken(_))));
        let snap = c.auth_snapshot().await.unwrap();
        assert_eq!((snap.version, snap.tokens.len(), snap.acls), (6, 0, vec![b]));
        assert_eq!(c.auth_version().await.unwrap(), 6);
    }
}
