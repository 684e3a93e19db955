//! Who a Kafka connection is, and what it may do.
//!
//! With `--auth sasl`, a client authenticates with SaslHandshake (v1) and
//! SaslAuthenticate: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with its
//! principal as the user name and its token as the password. With `--auth
//! mtls` (and `--kafka-tls`), a client certificate names it. Until it has
//! authenticated, a connection may only ask ApiVersions and the SASL
//! requests; anything else closes it, as Kafka's brokers do.
//!
//! Handlers check their resources with [`check`] and [`allows`], which read
//! the connection's session from a task-local set around each handler
//! ([`scope`]): every handler runs inside one, and a check outside any
//! fails closed.

use std::future::Future;
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use silt_wire::auth::{Operation, ResourceType};

use super::Context;
use crate::auth::scram::{self, ScramServer};
use crate::auth::secret::Mechanism;
use crate::auth::{Auth, Session};
use crate::error::{describe, ServiceError};

tokio::task_local! {
    static SESSION: Arc<Session>;
}

/// Runs a handler with its connection's session in reach of [`check`].
pub fn scope<F: Future>(session: Arc<Session>, f: F) -> impl Future<Output = F::Output> {
    SESSION.scope(session, f)
}

/// Whether the connection's principal may do `operation` on the resource.
pub fn check(ctx: &Context, resource: ResourceType, name: &str, operation: Operation) -> Result<(), ServiceError> {
    in_session(ctx, |auth, s| auth.check(s, resource, name, operation))
}

/// Whether the connection's principal may have a producer id (see `Auth::check_producer`).
pub fn check_producer(ctx: &Context) -> Result<(), ServiceError> {
    in_session(ctx, |auth, s| auth.check_producer(s))
}

/// Runs a check on the session in scope (allowed when authentication is off).
fn in_session(ctx: &Context, f: impl FnOnce(&Auth, &Session) -> Result<(), ServiceError>) -> Result<(), ServiceError> {
    let auth = ctx.service.auth();
    if !auth.enabled() {
        return Ok(());
    }
    SESSION
        .try_with(|s| f(auth, s))
        .unwrap_or_else(|_| Err(ServiceError::Unauthenticated("no session in scope".into())))
}

pub fn allows(ctx: &Context, resource: ResourceType, name: &str, operation: Operation) -> bool {
    check(ctx, resource, name, operation).is_ok()
}

/// The mechanisms offered, as SaslHandshake lists them.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Debug, Default)]
enum Exchange {
    /// No handshake yet.
    #[default]
    None,
    Plain,
    Scram(Box<ScramServer>),
    /// Authenticated, or failed: nothing more to say.
    Over,
}

/// One Kafka connection: its session and where its SASL exchange stands.
pub struct Conn {
    pub session: Arc<Session>,
    exchange: Mutex<Exchange>,
}

impl Conn {
    pub fn new(session: Arc<Session>) -> Conn {
        Conn { session, exchange: Mutex::new(Exchange::None) }
    }

    fn exchange(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SaslHandshake: picks the mechanism.
    pub fn handshake(&self, ctx: &Context, req: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        if !ctx.service.auth().modes().sasl {
            return SaslHandshakeResponse::default().with_error_code(K::UnsupportedSaslMechanism.code());
        }
        let mechanisms = MECHANISMS.iter().map(|m| StrBytes::from_static_str(m)).collect();
        let r = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
        let mut exchange = self.exchange();
        if !matches!(*exchange, Exchange::None) {
            return r.with_error_code(K::IllegalSaslState.code());
        }
        *exchange = match &*req.mechanism {
            "PLAIN" => Exchange::Plain,
            "SCRAM-SHA-256" => Exchange::Scram(Box::new(ScramServer::new(Mechanism::Sha256))),
            "SCRAM-SHA-512" => Exchange::Scram(Box::new(ScramServer::new(Mechanism::Sha512))),
            _ => return r.with_error_code(K::UnsupportedSaslMechanism.code()),
        };
        r
    }

    /// SaslAuthenticate: one step of the exchange.
    pub fn authenticate(&self, ctx: &Context, req: &SaslAuthenticateRequest) -> SaslAuthenticateResponse {
        let auth = ctx.service.auth();
        let fail = |code: K, message: String| {
            tracing::debug!(%message, "SASL authentication failed");
            SaslAuthenticateResponse::default().with_error_code(code.code()).with_error_message(Some(message.into()))
        };
        let mut exchange = self.exchange();
        match std::mem::replace(&mut *exchange, Exchange::Over) {
            Exchange::None | Exchange::Over => fail(K::IllegalSaslState, "no SASL handshake before this".into()),
            Exchange::Plain => {
                let outcome = scram::plain(&req.auth_bytes)
                    .map_err(|e| ServiceError::Unauthenticated(e.to_string()))
                    .and_then(|(user, password)| auth.login_plain(&self.session, &user, &password));
                match outcome {
                    Ok(()) => SaslAuthenticateResponse::default(),
                    Err(e) => fail(K::SaslAuthenticationFailed, describe(&e)),
                }
            }
            Exchange::Scram(mut server) if !self.session.is_authenticated() => {
                if server.awaits_proof() {
                    match server.last(&req.auth_bytes) {
                        Ok((last, user)) => {
                            auth.bind(&self.session, &user);
                            SaslAuthenticateResponse::default().with_auth_bytes(last.into_bytes().into())
                        }
                        Err(e) => fail(K::SaslAuthenticationFailed, format!("SCRAM: {e}")),
                    }
                } else {
                    let nonce = format!("{:032x}", rand::random::<u128>());
                    let code = server.mechanism().code();
                    match server.first(&req.auth_bytes, &nonce, |user| auth.scram_credential(user, code)) {
                        Ok(first) => {
                            *exchange = Exchange::Scram(server);
                            SaslAuthenticateResponse::default().with_auth_bytes(first.into_bytes().into())
                        }
                        Err(e) => fail(K::SaslAuthenticationFailed, format!("SCRAM: {e}")),
                    }
                }
            }
            Exchange::Scram(_) => fail(K::IllegalSaslState, "already authenticated".into()),
        }
    }
}
