//! Who the client is, and the administration of tokens and ACLs.

use std::time::Duration;

use silt_wire::auth::Acl;
use silt_wire::{Request, Response, TokenInfo};

use crate::client::{unexpected, Client};
use crate::error::ClientError;

impl Client {
    /// Makes this connection act as the token's principal (done by
    /// `connect` when the config carries a token).
    pub async fn authenticate(&self, token: &str) -> Result<String, ClientError> {
        match self.call(&Request::Authenticate { token: token.trim().into() }, Duration::ZERO).await? {
            Response::Principal { name } => Ok(name),
            other => Err(unexpected(other)),
        }
    }

    /// The principal this connection acts as (`ANONYMOUS` when the agent
    /// does not authenticate).
    pub async fn who_am_i(&self) -> Result<String, ClientError> {
        match self.call(&Request::WhoAmI, Duration::ZERO).await? {
            Response::Principal { name } => Ok(name),
            other => Err(unexpected(other)),
        }
    }

    /// A new token for `principal`, shown only now; `ttl`: when it expires.
    pub async fn create_token(&self, principal: &str, ttl: Option<Duration>) -> Result<String, ClientError> {
        let ttl_ms = ttl.map_or(0, |t| (t.as_millis() as u64).max(1));
        match self.call(&Request::CreateToken { principal: principal.into(), ttl_ms }, Duration::ZERO).await? {
            Response::Token { secret } => Ok(secret),
            other => Err(unexpected(other)),
        }
    }

    pub async fn revoke_token(&self, principal: &str) -> Result<(), ClientError> {
        match self.call(&Request::RevokeToken { principal: principal.into() }, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.call(&Request::ListTokens, Duration::ZERO).await? {
            Response::Tokens(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Adds an ACL (with `remove`, removes it); either is a no-op when
    /// there is nothing to do.
    pub async fn alter_acl(&self, acl: &Acl, remove: bool) -> Result<(), ClientError> {
        match self.call(&Request::AlterAcl { acl: acl.clone(), remove }, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_acls(&self) -> Result<Vec<Acl>, ClientError> {
        match self.call(&Request::ListAcls, Duration::ZERO).await? {
            Response::Acls(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }
}
