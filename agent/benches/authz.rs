//! What authorization costs a request, in nanoseconds: the decision a
//! connection has cached (every request after its first on a resource),
//! a decision made from the ACL index (the first, or after ACLs change),
//! a token's check (once per connection), and the same with
//! authentication off. The ACL set holds `ACLS` entries (default 1,000)
//! besides the ones that matter.
//!
//! Run: `cargo bench -p silt-agent --bench authz` (scripts/bench-auth runs it).

use std::sync::Arc;
use std::time::Instant;

use silt_agent::auth::{secret, Auth, Modes};
use silt_metadata::catalog::Catalog;
use silt_wire::auth::{Acl, Operation, Pattern, Permission, ResourceType};

fn acl(principal: &str, resource: ResourceType, pattern: Pattern, name: &str, operation: Operation) -> Acl {
    Acl { principal: principal.into(), resource, pattern, name: name.into(), operation, permission: Permission::Allow }
}

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..n / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

async fn auth_with(modes: &str, dir: &std::path::Path, acls: usize) -> (Arc<Auth>, String) {
    let store = silt_metadata::SqliteStore::open(dir.join(format!("{modes}.db"))).await.unwrap();
    let catalog = Catalog::new(Arc::new(store));
    let bob = secret::new_secret();
    catalog.create_token("bob", &secret::record(&bob, 0, 0), 0).await.unwrap();
    let mut all = vec![
        acl("bob", ResourceType::Topic, Pattern::Prefixed, "orders", Operation::Write),
        acl("bob", ResourceType::Topic, Pattern::Literal, "orders", Operation::Read),
    ];
    for i in 0..acls {
        let (pattern, resource) = match i % 3 {
            0 => (Pattern::Literal, ResourceType::Topic),
            1 => (Pattern::Prefixed, ResourceType::Topic),
            _ => (Pattern::Literal, ResourceType::Group),
        };
        all.push(acl(&format!("user{}", i % 50), resource, pattern, &format!("other-{i}"), Operation::Read));
    }
    for a in &all {
        catalog.alter_acl(a, false).await.unwrap();
    }
    let auth = Auth::load(Modes::parse(modes).unwrap(), vec!["admin".into()], catalog, silt_agent::clock::system())
        .await
        .unwrap();
    (auth, bob)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let acls: usize = std::env::var("ACLS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let n: u64 = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (auth, bob) = auth_with("token", dir.path(), acls).await;
    let session = auth.session(None);
    auth.authenticate(&session, &bob).unwrap();
    let (off, _) = auth_with("none", dir.path(), 0).await;
    let anyone = off.session(None);

    let cached = per_call(n, |_| {
        auth.check(&session, ResourceType::Topic, "orders", Operation::Write).unwrap();
    });
    // Distinct names (more than a connection caches) miss every time.
    let names: Vec<String> = (0..20_000).map(|i| format!("orders-{i}")).collect();
    let uncached = per_call(n / 4, |i| {
        auth.check(&session, ResourceType::Topic, &names[i as usize % names.len()], Operation::Write).unwrap();
    });
    let refused = per_call(n / 4, |i| {
        let name = &names[i as usize % names.len()];
        assert!(auth.check(&session, ResourceType::Group, name, Operation::Read).is_err());
    });
    let token = per_call(n / 20, |_| {
        let s = auth.session(None);
        auth.authenticate(&s, &bob).unwrap();
    });
    let disabled = per_call(n, |_| {
        off.check(&anyone, ResourceType::Topic, "orders", Operation::Write).unwrap();
    });
    println!("authorization cost per check, {acls} other ACLs, one thread:");
    println!("  {:<48} {:>8.0} ns", "cached decision (a connection's repeat request)", cached);
    println!("  {:<48} {:>8.0} ns", "decision from the ACL index (allowed)", uncached);
    println!("  {:<48} {:>8.0} ns", "decision from the ACL index (refused)", refused);
    println!("  {:<48} {:>8.0} ns", "token check (once per connection)", token);
    println!("  {:<48} {:>8.0} ns", "authentication off", disabled);
}
