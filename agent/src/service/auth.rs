//! Tokens and ACLs: created, revoked and listed through the catalog; the
//! agent that made a change re-reads them at once, the others within
//! `--auth-refresh`.

use std::time::Duration;

use silt_wire::auth::{Acl, Pattern};
use silt_wire::TokenInfo;

use super::Service;
use crate::auth::secret;
use crate::error::ServiceError;

fn invalid(what: &str) -> ServiceError {
    ServiceError::InvalidConfig { key: "acl".into(), reason: what.into() }
}

impl Service {
    /// A new token for `principal`; the secret is returned once and never stored.
    pub async fn create_token(&self, principal: &str, ttl: Option<Duration>) -> Result<String, ServiceError> {
        if principal.is_empty() || principal == "*" || principal.len() > 255 {
            return Err(ServiceError::InvalidConfig {
                key: "principal".into(),
                reason: format!("{principal:?} is not a principal name (1 to 255 bytes, not *)"),
            });
        }
        let now = self.auth.now_ms();
        let expires = ttl.map_or(0, |t| now.saturating_add(t.as_millis() as i64));
        let secret = secret::new_secret();
        self.catalog.create_token(principal, &secret::record(&secret, now, expires), now).await?;
        self.auth.refresh().await?;
        Ok(secret)
    }

    pub async fn revoke_token(&self, principal: &str) -> Result<(), ServiceError> {
        self.catalog.revoke_token(principal).await?;
        self.auth.refresh().await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ServiceError> {
        let snapshot = self.catalog.auth_snapshot().await?;
        Ok(snapshot
            .tokens
            .into_iter()
            .map(|(principal, r)| TokenInfo { principal, created_ms: r.created_ms, expires_ms: r.expires_ms })
            .collect())
    }

    /// Adds (or removes) an ACL; adding one that is there, or removing one
    /// that is not, changes nothing and is no error.
    pub async fn alter_acl(&self, acl: &Acl, remove: bool) -> Result<(), ServiceError> {
        if acl.principal.is_empty() {
            return Err(invalid("an ACL names a principal (or * for anyone)"));
        }
        if acl.name.is_empty() && acl.pattern == Pattern::Literal {
            return Err(invalid("an ACL names a resource (or * for every one of its type)"));
        }
        if self.catalog.alter_acl(acl, remove).await? {
            self.auth.refresh().await?;
        }
        Ok(())
    }

    pub async fn list_acls(&self) -> Result<Vec<Acl>, ServiceError> {
        let mut acls = self.auth.acls().await?;
        acls.sort();
        Ok(acls)
    }
}
