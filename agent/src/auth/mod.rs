//! Who a connection is, and whether it may do what it asks.
//!
//! - [`secret`]: token secrets, their hashes, SCRAM credentials.
//! - [`cert`]: the principal a client certificate names.
//! - [`scram`]: SASL/SCRAM's and SASL/PLAIN's server side (the Kafka listener).
//! - here: [`Auth`], the agent's view of tokens and ACLs (re-read when the
//!   catalog's `auth` counter moves, every `--auth-refresh`), and
//!   [`Session`], one connection's principal and its cached decisions.
//!
//! The rules themselves are `core::acl`, a pure function of the ACL set.
//! A check reads no metadata: a token is looked up by its hash in the
//! view, a decision in the connection's cache (dropped when the view
//! changes) or the view's ACL index. A revoked token therefore stops
//! working on live connections within one refresh interval.

pub mod cert;
pub mod scram;
pub mod secret;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use silt_metadata::catalog::{AuthSnapshot, ScramCredential};
use silt_metadata::{Catalog, CatalogError};
use silt_wire::auth::{Acl, Operation, ResourceType, CLUSTER};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::core::acl::{Access, AclIndex, Decision};
use crate::error::{AgentError, ServiceError};

/// The principal a connection acts as when authentication is off.
pub const ANONYMOUS: &str = "ANONYMOUS";
/// The super-user the first agent writes a token for.
pub const ADMIN: &str = "admin";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

pub use crate::config::AuthModes as Modes;

/// A token as the view keeps it.
#[derive(Debug, Clone)]
struct TokenEntry {
    principal: Arc<str>,
    expires_ms: i64,
}

/// Tokens and ACLs as of one `auth` counter value.
#[derive(Debug, Default)]
pub struct View {
    pub version: u64,
    tokens: HashMap<[u8; 32], TokenEntry>,
    scram: HashMap<String, (i64, Vec<ScramCredential>)>,
    acls: AclIndex,
}

impl View {
    fn build(snapshot: AuthSnapshot, super_users: &[String]) -> View {
        let mut tokens = HashMap::new();
        let mut scram = HashMap::new();
        for (principal, record) in snapshot.tokens {
            if let Ok(hash) = <[u8; 32]>::try_from(record.hash.as_slice()) {
                tokens.insert(hash, TokenEntry { principal: principal.as_str().into(), expires_ms: record.expires_ms });
            }
            scram.insert(principal, (record.expires_ms, record.scram));
        }
        View { version: snapshot.version, tokens, scram, acls: AclIndex::new(&snapshot.acls, super_users) }
    }
}

fn live(expires_ms: i64, now_ms: i64) -> bool {
    expires_ms == 0 || now_ms < expires_ms
}

/// Who a connection proved to be.
#[derive(Debug, Clone)]
enum Identity {
    /// Authentication is off.
    Anonymous,
    /// A token (checked again on every request: it may be revoked).
    Token { principal: Arc<str>, hash: [u8; 32] },
    /// A client certificate.
    Fixed(Arc<str>),
    /// A SASL/SCRAM exchange: checked again on every request against the
    /// principal's token (it may be revoked).
    Named(Arc<str>),
}

/// One connection's principal and its cached decisions.
#[derive(Debug)]
pub struct Session {
    state: Mutex<SessionState>,
}

#[derive(Debug)]
struct SessionState {
    identity: Option<Identity>,
    /// Decisions under the view of this version.
    version: u64,
    cache: HashMap<(ResourceType, Operation), HashMap<Box<str>, bool>>,
    cached: usize,
}

impl SessionState {
    fn act_as(&mut self, identity: Identity) {
        self.identity = Some(identity);
        self.cache.clear();
        self.cached = 0;
    }
}

/// The most decisions a connection caches; past it the cache starts over.
const CACHE_LIMIT: usize = 4096;

impl Session {
    fn new(identity: Option<Identity>) -> Session {
        Session { state: Mutex::new(SessionState { identity, version: 0, cache: HashMap::new(), cached: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal, once known.
    pub fn principal(&self) -> Option<String> {
        match &self.lock().identity {
            None => None,
            Some(Identity::Anonymous) => Some(ANONYMOUS.to_string()),
            Some(Identity::Token { principal, .. } | Identity::Fixed(principal) | Identity::Named(principal)) => {
                Some(principal.to_string())
            }
        }
    }

    /// Whether the connection has proved who it is (or needs not).
    pub fn is_authenticated(&self) -> bool {
        self.lock().identity.is_some()
    }
}

/// The agent's authentication and authorization.
pub struct Auth {
    modes: Modes,
    super_users: Vec<String>,
    catalog: Catalog,
    clock: SharedClock,
    view: RwLock<Arc<View>>,
}

impl Auth {
    /// Reads tokens and ACLs once; `refresh` keeps them current.
    pub async fn load(
        modes: Modes,
        super_users: Vec<String>,
        catalog: Catalog,
        clock: SharedClock,
    ) -> Result<Arc<Auth>, CatalogError> {
        let view = if modes.on() { View::build(catalog.auth_snapshot().await?, &super_users) } else { View::default() };
        Ok(Arc::new(Auth { modes, super_users, catalog, clock, view: RwLock::new(Arc::new(view)) }))
    }

    pub fn modes(&self) -> Modes {
        self.modes
    }

    pub fn enabled(&self) -> bool {
        self.modes.on()
    }

    fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads tokens and ACLs if the `auth` counter moved.
    pub async fn refresh(&self) -> Result<(), CatalogError> {
        if !self.enabled() {
            return Ok(());
        }
        let version = self.catalog.auth_version().await?;
        if version == self.view().version {
            return Ok(());
        }
        let view = View::build(self.catalog.auth_snapshot().await?, &self.super_users);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
        Ok(())
    }

    /// Refreshes every `every` until `stop`.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        if !self.enabled() {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %crate::error::describe(&e), "re-reading tokens and ACLs failed; keeping the last ones");
            }
        }
    }

    /// A new connection's session: anonymous when authentication is off,
    /// `cert_principal` when its certificate named one, else unknown until
    /// it authenticates.
    pub fn session(&self, cert_principal: Option<String>) -> Arc<Session> {
        let identity =
            if !self.enabled() { Some(Identity::Anonymous) } else { cert_principal.map(|p| Identity::Fixed(p.into())) };
        Arc::new(Session::new(identity))
    }

    /// Checks a token and makes `session` act as its principal.
    pub fn authenticate(&self, session: &Session, token: &str) -> Result<String, ServiceError> {
        if !self.enabled() {
            return Ok(ANONYMOUS.to_string());
        }
        if !self.modes.token {
            return Err(ServiceError::Unauthenticated("this agent does not accept tokens (see its --auth)".into()));
        }
        let hash = secret::hash(token);
        let view = self.view();
        let entry = view
            .tokens
            .get(&hash)
            .filter(|e| live(e.expires_ms, self.clock.now_ms()))
            .ok_or_else(|| ServiceError::Unauthenticated("the token is unknown, revoked or expired".into()))?;
        let principal = entry.principal.clone();
        session.lock().act_as(Identity::Token { principal: principal.clone(), hash });
        Ok(principal.to_string())
    }

    /// Checks a SASL/PLAIN login (the password is the principal's token)
    /// and makes `session` act as it.
    pub fn login_plain(&self, session: &Session, user: &str, password: &str) -> Result<(), ServiceError> {
        let hash = secret::hash(password);
        let view = self.view();
        match view.tokens.get(&hash) {
            Some(e) if &*e.principal == user && live(e.expires_ms, self.clock.now_ms()) => {
                session.lock().act_as(Identity::Token { principal: e.principal.clone(), hash });
                Ok(())
            }
            _ => Err(ServiceError::Unauthenticated(format!("wrong user name or password for {user:?}"))),
        }
    }

    /// The SCRAM credential of `user` for a mechanism, when it has a live token.
    pub fn scram_credential(&self, user: &str, mechanism: u8) -> Option<ScramCredential> {
        let view = self.view();
        let (expires_ms, creds) = view.scram.get(user)?;
        if !live(*expires_ms, self.clock.now_ms()) {
            return None;
        }
        creds.iter().find(|c| c.mechanism == mechanism).cloned()
    }

    /// Makes `session` act as `principal`, proved by a SASL/SCRAM exchange.
    pub fn bind(&self, session: &Session, principal: &str) {
        session.lock().act_as(Identity::Named(principal.into()));
    }

    /// Whether `session` may do `operation` on the resource; a refusal
    /// names the principal, the operation and the resource.
    pub fn check(
        &self,
        session: &Session,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> Result<(), ServiceError> {
        if !self.enabled() {
            return Ok(());
        }
        let view = self.view();
        let mut s = session.lock();
        let principal = match &s.identity {
            None => {
                return Err(ServiceError::Unauthenticated(
                    "authenticate first (a token from --token-file or SILT_TOKEN, or a client certificate)".into(),
                ))
            }
            Some(Identity::Anonymous) => return Ok(()),
            Some(Identity::Token { principal, hash }) => {
                let still = view
                    .tokens
                    .get(hash)
                    .is_some_and(|e| e.principal == *principal && live(e.expires_ms, self.clock.now_ms()));
                if !still {
                    return Err(ServiceError::Unauthenticated(format!(
                        "the token of {principal:?} was revoked or has expired"
                    )));
                }
                principal.clone()
            }
            Some(Identity::Named(principal)) => {
                let still =
                    view.scram.get(&**principal).is_some_and(|(expires, _)| live(*expires, self.clock.now_ms()));
                if !still {
                    return Err(ServiceError::Unauthenticated(format!(
                        "the token of {principal:?} was revoked or has expired"
                    )));
                }
                principal.clone()
            }
            Some(Identity::Fixed(principal)) => principal.clone(),
        };
        if s.version != view.version || s.cached >= CACHE_LIMIT {
            s.version = view.version;
            s.cache.clear();
            s.cached = 0;
        }
        let allowed = match s.cache.get(&(resource, operation)).and_then(|names| names.get(name)) {
            Some(allowed) => *allowed,
            None => {
                let access = Access { principal: &principal, resource, name, operation };
                let allowed = view.acls.check(&access) == Decision::Allowed;
                s.cached += 1;
                s.cache.entry((resource, operation)).or_default().insert(name.into(), allowed);
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(ServiceError::Unauthorized {
                principal: principal.to_string(),
                operation,
                resource,
                name: name.to_string(),
            })
        }
    }

    /// Whether `session` may do `operation` on the resource (for filtering lists).
    pub fn allows(&self, session: &Session, resource: ResourceType, name: &str, operation: Operation) -> bool {
        self.check(session, resource, name, operation).is_ok()
    }

    /// Whether `session` may have a producer id: write on the cluster, or
    /// on some topic (as Kafka gives one for idempotent write on the
    /// cluster or write on any topic). A refusal names write on the cluster.
    pub fn check_producer(&self, session: &Session) -> Result<(), ServiceError> {
        let on_cluster = self.check(session, ResourceType::Cluster, CLUSTER, Operation::Write);
        match on_cluster {
            Ok(()) | Err(ServiceError::Unauthenticated(_)) => return on_cluster,
            Err(_) => {}
        }
        let principal = session.principal().unwrap_or_default();
        match self.view().acls.allows_some(&principal, ResourceType::Topic, Operation::Write) {
            true => Ok(()),
            false => on_cluster,
        }
    }

    /// Whether the session has proved who it is (or needs not).
    pub fn check_authenticated(&self, session: &Session) -> Result<(), ServiceError> {
        // Any resource and operation: only the identity part can fail for a super-user check.
        match self.check(session, ResourceType::Cluster, CLUSTER, Operation::Describe) {
            Err(e @ ServiceError::Unauthenticated(_)) => Err(e),
            _ => Ok(()),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Lists the ACLs (the catalog's, not the possibly older view's).
    pub async fn acls(&self) -> Result<Vec<Acl>, CatalogError> {
        Ok(self.catalog.auth_snapshot().await?.acls)
    }

    /// With authentication on and no live token for `admin`, creates one
    /// and writes it to `<data_dir>/admin.token` (mode 0600). An agent that
    /// finds one already there leaves it alone.
    pub async fn bootstrap_admin(&self, data_dir: &Path) -> Result<(), AgentError> {
        if !self.enabled() || !self.super_users.iter().any(|s| s == ADMIN) {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let secret = secret::new_secret();
        match self.catalog.create_token(ADMIN, &secret::record(&secret, now, 0), now).await {
            Ok(()) => {}
            Err(CatalogError::TokenExists(_)) => return Ok(()),
            Err(e) => return Err(AgentError::Catalog(e)),
        }
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        write_private(&path, &format!("{secret}\n"))
            .map_err(|source| AgentError::DataDir { path: path.display().to_string(), source })?;
        tracing::info!(path = %path.display(), "wrote the admin token");
        self.refresh().await?;
        Ok(())
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use silt_wire::auth::{Pattern, Permission};

    async fn auth(clock: Arc<ManualClock>) -> (tempfile::TempDir, Arc<Auth>) {
        let dir = tempfile::tempdir().unwrap();
        let store = silt_metadata::SqliteStore::open(dir.path().join("m.db")).await.unwrap();
        let catalog = Catalog::new(Arc::new(store));
        let modes = Modes::parse("token").unwrap();
        let a = Auth::load(modes, vec![ADMIN.into()], catalog, clock).await.unwrap();
        (dir, a)
    }

    #[tokio::test]
    async fn tokens_and_acls_decide_and_changes_show_after_a_refresh() {
        let clock = ManualClock::new(1_000);
        let (dir, a) = auth(clock.clone()).await;
        a.bootstrap_admin(dir.path()).await.unwrap();
        let admin_token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second agent leaves the first one's token alone.
        let other = tempfile::tempdir().unwrap();
        a.bootstrap_admin(other.path()).await.unwrap();
        assert!(!other.path().join(ADMIN_TOKEN_FILE).exists());

        let admin = a.session(None);
        assert!(matches!(
            a.check(&admin, ResourceType::Topic, "t", Operation::Read),
            Err(ServiceError::Unauthenticated(_))
        ));
        assert!(a.authenticate(&admin, "silt_wrong").is_err());
        assert_eq!(a.authenticate(&admin, admin_token.trim()).unwrap(), ADMIN);
        a.check(&admin, ResourceType::Topic, "t", Operation::Delete).unwrap();

        let bob_secret = secret::new_secret();
        a.catalog().create_token("bob", &secret::record(&bob_secret, 1_000, 5_000), 1_000).await.unwrap();
        let bob = a.session(None);
        assert!(a.authenticate(&bob, &bob_secret).is_err(), "not seen before a refresh");
        a.refresh().await.unwrap();
        a.authenticate(&bob, &bob_secret).unwrap();
        let e = a.check(&bob, ResourceType::Topic, "orders", Operation::Write).unwrap_err();
        assert_eq!(e.to_string(), "bob may not write topic \"orders\"");
        let acl = Acl {
            principal: "bob".into(),
            resource: ResourceType::Topic,
            pattern: Pattern::Literal,
            name: "orders".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        };
        a.catalog().alter_acl(&acl, false).await.unwrap();
        a.refresh().await.unwrap();
        a.check(&bob, ResourceType::Topic, "orders", Operation::Write).unwrap();
        assert!(a.allows(&bob, ResourceType::Topic, "orders", Operation::Describe));
        assert!(!a.allows(&bob, ResourceType::Topic, "orders", Operation::Read));
        // The cached decision goes with the ACL.
        a.catalog().alter_acl(&acl, true).await.unwrap();
        a.refresh().await.unwrap();
        assert!(!a.allows(&bob, ResourceType::Topic, "orders", Operation::Write));
        // An expired token stops working on the live connection.
        a.catalog().alter_acl(&acl, false).await.unwrap();
        a.refresh().await.unwrap();
        clock.set(5_000);
        assert!(matches!(
            a.check(&bob, ResourceType::Topic, "orders", Operation::Write),
            Err(ServiceError::Unauthenticated(_))
        ));
        // So does a revoked one.
        clock.set(2_000);
        a.check(&bob, ResourceType::Topic, "orders", Operation::Write).unwrap();
        a.catalog().revoke_token("bob").await.unwrap();
        a.refresh().await.unwrap();
        assert!(a.check(&bob, ResourceType::Topic, "orders", Operation::Write).is_err());
    }
}
