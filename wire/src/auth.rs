//! Who may do what, on the wire: the bodies of the authentication and ACL
//! requests in `message`. Strings are u16-length-prefixed; lists are a u32
//! count, then the items.
//!
//! ```text
//! Acl        principal: string, resource: u8 (0 topic, 1 group, 2 cluster),
//!            pattern: u8 (0 literal, 1 prefixed), name: string,
//!            operation: u8 (0 read, 1 write, 2 create, 3 delete, 4 alter, 5 describe),
//!            permission: u8 (0 allow, 1 deny)
//! TokenInfo  principal: string, created_ms: i64, expires_ms: i64 (0: never)
//! ```
//!
//! An ACL is Kafka's: a principal (or `*`, anyone), a resource by literal
//! name (`*`: every one of its type) or by prefix, an operation, allow or
//! deny.

use bytes::BufMut;

use crate::buf::{DecodeError, Reader, WriteExt};
use crate::message::clip;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($variant:ident = $n:literal, $text:literal;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn to_u8(self) -> u8 {
                match self { $($name::$variant => $n,)* }
            }

            pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
                match v {
                    $($n => Ok($name::$variant),)*
                    n => Err(DecodeError::invalid($what, n.to_string())),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)*
                    other => {
                        let known: Vec<&str> = vec![$($text,)*];
                        Err(format!("unknown {} {other:?} (expected one of: {})", $what, known.join(", ")))
                    }
                }
            }
        }
    };
}

named_enum!(
    /// What an ACL is about.
    ResourceType, "resource type", {
        Topic = 0, "topic";
        Group = 1, "group";
        Cluster = 2, "cluster";
    }
);

named_enum!(
    /// How an ACL's name matches resources.
    Pattern, "pattern", {
        Literal = 0, "literal";
        Prefixed = 1, "prefixed";
    }
);

named_enum!(
    /// What a request does to a resource.
    Operation, "operation", {
        Read = 0, "read";
        Write = 1, "write";
        Create = 2, "create";
        Delete = 3, "delete";
        Alter = 4, "alter";
        Describe = 5, "describe";
    }
);

named_enum!(
    /// Whether an ACL grants or refuses.
    Permission, "permission", {
        Allow = 0, "allow";
        Deny = 1, "deny";
    }
);

/// The name an ACL on the cluster carries.
pub const CLUSTER: &str = "silt";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    /// A principal, or `*` for anyone.
    pub principal: String,
    pub resource: ResourceType,
    pub pattern: Pattern,
    /// With [`Pattern::Literal`], a name or `*` (every resource of the type).
    pub name: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    pub fn put(&self, out: &mut bytes::BytesMut) {
        out.put_string(clip(&self.principal));
        out.put_u8(self.resource.to_u8());
        out.put_u8(self.pattern.to_u8());
        out.put_string(clip(&self.name));
        out.put_u8(self.operation.to_u8());
        out.put_u8(self.permission.to_u8());
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Acl, DecodeError> {
        Ok(Acl {
            principal: r.string("principal")?,
            resource: ResourceType::from_u8(r.u8("resource type")?)?,
            pattern: Pattern::from_u8(r.u8("pattern")?)?,
            name: r.string("resource name")?,
            operation: Operation::from_u8(r.u8("operation")?)?,
            permission: Permission::from_u8(r.u8("permission")?)?,
        })
    }

    pub(crate) fn put_all(out: &mut bytes::BytesMut, acls: &[Acl]) {
        out.put_u32(acls.len() as u32);
        for a in acls {
            a.put(out);
        }
    }

    pub(crate) fn read_all(r: &mut Reader<'_>) -> Result<Vec<Acl>, DecodeError> {
        let n = r.count("acl count", 8)?;
        (0..n).map(|_| Acl::read(r)).collect()
    }
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = match self.pattern {
            Pattern::Literal => "",
            Pattern::Prefixed => "*",
        };
        write!(
            f,
            "{} {} {} on {} {}{}",
            self.permission, self.principal, self.operation, self.resource, self.name, pattern
        )
    }
}

/// A token as `ListTokens` reports it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub principal: String,
    pub created_ms: i64,
    /// 0: it never expires.
    pub expires_ms: i64,
}

impl TokenInfo {
    pub(crate) fn put_all(out: &mut bytes::BytesMut, tokens: &[TokenInfo]) {
        out.put_u32(tokens.len() as u32);
        for t in tokens {
            out.put_string(clip(&t.principal));
            out.put_i64(t.created_ms);
            out.put_i64(t.expires_ms);
        }
    }

    pub(crate) fn read_all(r: &mut Reader<'_>) -> Result<Vec<TokenInfo>, DecodeError> {
        let n = r.count("token count", 18)?;
        (0..n)
            .map(|_| {
                Ok(TokenInfo {
                    principal: r.string("principal")?,
                    created_ms: r.i64("created")?,
                    expires_ms: r.i64("expiry")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), *op);
            assert_eq!(Operation::from_u8(op.to_u8()).unwrap(), *op);
        }
        for r in ResourceType::ALL {
            assert_eq!(r.as_str().parse::<ResourceType>().unwrap(), *r);
        }
        assert_eq!("WRITE".parse::<Operation>().unwrap(), Operation::Write);
        let e = "wrte".parse::<Operation>().unwrap_err();
        assert!(e.contains("read, write"), "{e}");
        assert!(Permission::from_u8(7).is_err());
    }
}
