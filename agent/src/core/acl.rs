//! Who may do what: Kafka's ACL rules as a pure decision.
//!
//! An ACL names a principal (or `*`, anyone), a resource (a topic, a group
//! or the cluster) by literal name (`*`: every one of its type) or by
//! prefix, an operation, and allow or deny. A request is allowed when the
//! principal is a super-user, or some ACL allows it and none denies it
//! (deny wins). `describe` is implied by `read`, `write`, `delete` and
//! `alter` on the same resource, as in Kafka.
//!
//! [`AclIndex`] is built once per ACL set (and reused for every check of a
//! connection until the set changes): literal names in a map, prefixes
//! sorted, so a check never scans every ACL.

use std::collections::HashMap;

pub use silt_wire::auth::{Acl, Operation, Pattern, Permission, ResourceType};

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access<'a> {
    pub principal: &'a str,
    pub resource: ResourceType,
    pub name: &'a str,
    pub operation: Operation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// A deny ACL matched.
    Denied,
    /// No ACL allows it.
    NotAllowed,
}

/// The operations whose grant also grants `op`.
fn granted_by(op: Operation) -> &'static [Operation] {
    use Operation::*;
    match op {
        Describe => &[Describe, Read, Write, Delete, Alter],
        Read => &[Read],
        Write => &[Write],
        Create => &[Create],
        Delete => &[Delete],
        Alter => &[Alter],
    }
}

/// ACLs of one resource type, one operation, one permission.
#[derive(Debug, Default, Clone)]
struct Rules {
    /// Literal names (and `*`) to the principals they name.
    literal: HashMap<String, Vec<String>>,
    /// Prefixes, sorted, with their principals.
    prefixed: Vec<(String, Vec<String>)>,
}

impl Rules {
    fn matches(&self, principal: &str, name: &str) -> bool {
        let names = |ps: &Vec<String>| ps.iter().any(|p| p == "*" || p == principal);
        if self.literal.get(name).is_some_and(names) || self.literal.get("*").is_some_and(names) {
            return true;
        }
        // Only prefixes that sort at or before the name can be its prefix.
        let end = self.prefixed.partition_point(|(p, _)| p.as_str() <= name);
        self.prefixed[..end].iter().rev().any(|(p, ps)| name.starts_with(p.as_str()) && names(ps))
    }
}

/// An ACL set, indexed for checks.
#[derive(Debug, Default, Clone)]
pub struct AclIndex {
    rules: HashMap<(ResourceType, Operation, Permission), Rules>,
    super_users: Vec<String>,
}

impl AclIndex {
    pub fn new(acls: &[Acl], super_users: &[String]) -> AclIndex {
        let mut rules: HashMap<(ResourceType, Operation, Permission), Rules> = HashMap::new();
        for a in acls {
            let r = rules.entry((a.resource, a.operation, a.permission)).or_default();
            match a.pattern {
                Pattern::Literal => r.literal.entry(a.name.clone()).or_default().push(a.principal.clone()),
                Pattern::Prefixed => match r.prefixed.iter_mut().find(|(p, _)| *p == a.name) {
                    Some((_, ps)) => ps.push(a.principal.clone()),
                    None => r.prefixed.push((a.name.clone(), vec![a.principal.clone()])),
                },
            }
        }
        for r in rules.values_mut() {
            r.prefixed.sort_by(|a, b| a.0.cmp(&b.0));
        }
        AclIndex { rules, super_users: super_users.to_vec() }
    }

    pub fn check(&self, access: &Access<'_>) -> Decision {
        if self.super_users.iter().any(|s| s == access.principal) {
            return Decision::Allowed;
        }
        let any = |permission: Permission| {
            granted_by(access.operation).iter().any(|op| {
                self.rules
                    .get(&(access.resource, *op, permission))
                    .is_some_and(|r| r.matches(access.principal, access.name))
            })
        };
        // A deny of the operation itself wins; a deny of what implies it does not
        // (denying write does not deny describe, as in Kafka).
        let denied = self
            .rules
            .get(&(access.resource, access.operation, Permission::Deny))
            .is_some_and(|r| r.matches(access.principal, access.name));
        if denied {
            Decision::Denied
        } else if any(Permission::Allow) {
            Decision::Allowed
        } else {
            Decision::NotAllowed
        }
    }

    /// Whether `principal` may do `operation` on some resource of this type
    /// (Kafka's authorization by resource type, which gives a producer id
    /// to whoever may write some topic): an ACL allows the operation itself
    /// on a name or a prefix that no deny covers whole.
    pub fn allows_some(&self, principal: &str, resource: ResourceType, operation: Operation) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let names = |ps: &Vec<String>| ps.iter().any(|p| p == "*" || p == principal);
        let deny = self.rules.get(&(resource, operation, Permission::Deny));
        // A literal name is covered by a deny of it, of `*`, or of a prefix of
        // it; a prefix by a deny of `*` or of a prefix of the prefix.
        let covered = |name: &str, literal: bool| {
            deny.is_some_and(|d| {
                d.literal.get("*").is_some_and(names)
                    || (literal && d.literal.get(name).is_some_and(names))
                    || d.prefixed.iter().any(|(p, ps)| name.starts_with(p.as_str()) && names(ps))
            })
        };
        let Some(allow) = self.rules.get(&(resource, operation, Permission::Allow)) else {
            return false;
        };
        allow.literal.iter().any(|(n, ps)| names(ps) && !covered(n, n != "*"))
            || allow.prefixed.iter().any(|(p, ps)| names(ps) && !covered(p, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acl(
        principal: &str,
        resource: ResourceType,
        pattern: Pattern,
        name: &str,
        op: Operation,
        perm: Permission,
    ) -> Acl {
        Acl { principal: principal.into(), resource, pattern, name: name.into(), operation: op, permission: perm }
    }

    /// The rules as written, one ACL at a time: what the index must agree with.
    fn reference(acls: &[Acl], super_users: &[String], a: &Access<'_>) -> Decision {
        if super_users.iter().any(|s| s == a.principal) {
            return Decision::Allowed;
        }
        let applies = |x: &Acl| {
            x.resource == a.resource
                && (x.principal == "*" || x.principal == a.principal)
                && match x.pattern {
                    Pattern::Literal => x.name == "*" || x.name == a.name,
                    Pattern::Prefixed => a.name.starts_with(&x.name),
                }
        };
        if acls.iter().any(|x| applies(x) && x.permission == Permission::Deny && x.operation == a.operation) {
            return Decision::Denied;
        }
        let implies = |op: Operation| {
            op == a.operation
                || (a.operation == Operation::Describe
                    && matches!(op, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
        };
        if acls.iter().any(|x| applies(x) && x.permission == Permission::Allow && implies(x.operation)) {
            Decision::Allowed
        } else {
            Decision::NotAllowed
        }
    }

    #[test]
    fn kafkas_rules_in_a_table() {
        use Operation::*;
        use Pattern::*;
        use Permission::*;
        use ResourceType::*;
        let acls = vec![
            acl("bob", Topic, Literal, "orders", Write, Allow),
            acl("bob", Topic, Prefixed, "logs.", Read, Allow),
            acl("bob", Topic, Literal, "logs.secret", Read, Deny),
            acl("*", Topic, Literal, "public", Read, Allow),
            acl("eve", Topic, Literal, "*", Read, Allow),
            acl("eve", Topic, Literal, "public", Read, Deny),
            acl("ops", Cluster, Literal, "*", Create, Allow),
            acl("bob", Group, Prefixed, "bob-", Read, Allow),
        ];
        let index = AclIndex::new(&acls, &["admin".to_string()]);
        let cases = [
            ("bob", Topic, "orders", Write, Decision::Allowed),
            ("bob", Topic, "orders", Describe, Decision::Allowed),
            ("bob", Topic, "orders", Read, Decision::NotAllowed),
            ("bob", Topic, "orders", Delete, Decision::NotAllowed),
            ("bob", Topic, "logs.app", Read, Decision::Allowed),
            ("bob", Topic, "logs.secret", Read, Decision::Denied),
            ("bob", Topic, "logs.secret", Describe, Decision::Allowed),
            ("bob", Topic, "log", Read, Decision::NotAllowed),
            ("alice", Topic, "public", Read, Decision::Allowed),
            ("alice", Topic, "orders", Write, Decision::NotAllowed),
            ("eve", Topic, "anything", Read, Decision::Allowed),
            ("eve", Topic, "public", Read, Decision::Denied),
            ("ops", Cluster, "silt", Create, Decision::Allowed),
            ("bob", Cluster, "silt", Create, Decision::NotAllowed),
            ("bob", Group, "bob-readers", Read, Decision::Allowed),
            ("bob", Topic, "bob-readers", Read, Decision::NotAllowed),
            ("admin", Topic, "logs.secret", Delete, Decision::Allowed),
        ];
        for (principal, resource, name, operation, want) in cases {
            let access = Access { principal, resource, name, operation };
            assert_eq!(index.check(&access), want, "{access:?}");
            assert_eq!(reference(&acls, &["admin".to_string()], &access), want, "{access:?} (reference)");
        }
        assert_eq!(
            AclIndex::default().check(&Access { principal: "x", resource: Topic, name: "t", operation: Read }),
            Decision::NotAllowed
        );
    }

    #[test]
    fn allowed_on_some_resource_unless_denies_cover_every_allow() {
        use Operation::*;
        use Pattern::*;
        use Permission::*;
        use ResourceType::*;
        let cases: Vec<(Vec<Acl>, &str, bool)> = vec![
            (vec![], "bob", false),
            (vec![], "admin", true),
            (vec![acl("bob", Topic, Literal, "orders", Write, Allow)], "bob", true),
            (vec![acl("bob", Topic, Literal, "orders", Read, Allow)], "bob", false),
            (vec![acl("bob", Group, Literal, "orders", Write, Allow)], "bob", false),
            (vec![acl("*", Topic, Prefixed, "logs-", Write, Allow)], "carol", true),
            (vec![acl("alice", Topic, Literal, "orders", Write, Allow)], "bob", false),
            (
                vec![
                    acl("bob", Topic, Literal, "orders", Write, Allow),
                    acl("bob", Topic, Literal, "orders", Write, Deny),
                ],
                "bob",
                false,
            ),
            (
                vec![acl("bob", Topic, Literal, "orders", Write, Allow), acl("*", Topic, Prefixed, "ord", Write, Deny)],
                "bob",
                false,
            ),
            (
                vec![acl("bob", Topic, Prefixed, "ord", Write, Allow), acl("bob", Topic, Literal, "ord", Write, Deny)],
                "bob",
                true,
            ),
            (
                vec![acl("bob", Topic, Literal, "*", Write, Allow), acl("bob", Topic, Literal, "orders", Write, Deny)],
                "bob",
                true,
            ),
            (
                vec![acl("bob", Topic, Prefixed, "a", Write, Allow), acl("bob", Topic, Literal, "*", Write, Deny)],
                "bob",
                false,
            ),
            (
                vec![
                    acl("bob", Topic, Literal, "orders", Write, Allow),
                    acl("alice", Topic, Literal, "*", Write, Deny),
                ],
                "bob",
                true,
            ),
        ];
        for (acls, principal, want) in cases {
            let index = AclIndex::new(&acls, &["admin".to_string()]);
            assert_eq!(index.allows_some(principal, Topic, Write), want, "{principal} with {acls:?}");
        }
    }

    fn arb_acl() -> impl Strategy<Value = Acl> {
        (
            prop::sample::select(vec!["*", "alice", "bob"]),
            prop::sample::select(vec![ResourceType::Topic, ResourceType::Group, ResourceType::Cluster]),
            prop::sample::select(vec![Pattern::Literal, Pattern::Prefixed]),
            prop::sample::select(vec!["*", "", "a", "ab", "abc", "b", "ba"]),
            prop::sample::select(vec![
                Operation::Read,
                Operation::Write,
                Operation::Create,
                Operation::Delete,
                Operation::Alter,
                Operation::Describe,
            ]),
            prop::sample::select(vec![Permission::Allow, Permission::Deny]),
        )
            .prop_map(|(p, r, pat, n, op, perm)| acl(p, r, pat, n, op, perm))
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_the_rules_as_written(
            acls in prop::collection::vec(arb_acl(), 0..24),
            supers in prop::collection::vec(prop::sample::select(vec!["alice", "root"]), 0..2),
            principal in prop::sample::select(vec!["alice", "bob", "carol"]),
            resource in prop::sample::select(vec![ResourceType::Topic, ResourceType::Group, ResourceType::Cluster]),
            name in prop::sample::select(vec!["a", "ab", "abc", "abd", "b", "ba", "c", "*"]),
            operation in prop::sample::select(vec![
                Operation::Read, Operation::Write, Operation::Create, Operation::Delete, Operation::Alter, Operation::Describe,
            ]),
        ) {
            let supers: Vec<String> = supers.into_iter().map(String::from).collect();
            let access = Access { principal, resource, name, operation };
            prop_assert_eq!(AclIndex::new(&acls, &supers).check(&access), reference(&acls, &supers, &access));
        }
    }
}
