//! The operations listener (`--metrics-listen`): plain HTTP for whoever
//! runs the agent, not for clients.
//!
//! - `GET /metrics`: the registry in Prometheus' text format.
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the metadata store and the object store answer
//!   and the agent's session (which keeps its leases) was renewed in time;
//!   503 naming what is not, otherwise.
//!
//! One request per connection, answered and closed: scrapers and probes
//! need nothing more, and nothing a peer sends is kept past its request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use silt_metadata::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::error::AgentError;
use crate::service::Service;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a peer has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each store gets to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long group lag, which costs metadata reads, is reused between scrapes.
const LAG_EVERY: Duration = Duration::from_secs(10);
/// A key nothing writes: reading it proves the object store answers.
const PROBE_KEY: &str = "_silt/readyz";

/// What the readiness checks look at.
pub struct Health {
    pub catalog: Catalog,
    pub store: Arc<dyn ObjectStore>,
    pub cluster: Arc<Cluster>,
}

/// What each readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    pub metadata: Result<(), String>,
    pub objects: Result<(), String>,
    pub session_live: bool,
}

/// Whether the agent is ready, and the problems when not (one line each).
pub fn readiness(c: &Checks) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = &c.metadata {
        problems.push(format!("metadata store: {e}"));
    }
    if let Err(e) = &c.objects {
        problems.push(format!("object store: {e}"));
    }
    if !c.session_live {
        problems.push("session: not renewed within the lease TTL (leases may have lapsed)".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

impl Health {
    async fn check(&self) -> Checks {
        let timed =
            |r: Result<Result<(), String>, _>| r.unwrap_or_else(|_| Err(format!("no answer in {CHECK_TIMEOUT:?}")));
        let metadata = tokio::time::timeout(CHECK_TIMEOUT, async {
            self.catalog.cluster().await.map(|_| ()).map_err(|e| e.to_string())
        });
        let objects = tokio::time::timeout(CHECK_TIMEOUT, async {
            match self.store.head(&Path::from(PROBE_KEY)).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        });
        let (metadata, objects) = tokio::join!(metadata, objects);
        Checks { metadata: timed(metadata), objects: timed(objects), session_live: self.cluster.session_live() }
    }
}

/// The bound listener, before it serves.
pub struct Listener {
    listener: TcpListener,
    tasks: TaskTracker,
    stop: CancellationToken,
}

struct Context {
    service: Arc<Service>,
    health: Health,
    /// When group lag was last read.
    lag_read: Mutex<Option<tokio::time::Instant>>,
}

impl Listener {
    pub async fn bind(addr: SocketAddr) -> Result<Listener, AgentError> {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| AgentError::Bind { addr: addr.to_string(), source })?;
        Ok(Listener { listener, tasks: TaskTracker::new(), stop: CancellationToken::new() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Starts answering; returns what stops it.
    pub fn serve(self, service: Arc<Service>, health: Health) -> Serving {
        let Listener { listener, tasks, stop } = self;
        let ctx = Arc::new(Context { service, health, lag_read: Mutex::new(None) });
        let (t, s) = (tasks.clone(), stop.clone());
        tasks.spawn(accept_loop(listener, ctx, t, s).instrument(tracing::info_span!("ops")));
        Serving { tasks, stop }
    }
}

/// A serving listener.
pub struct Serving {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Serving {
    pub async fn close(self) {
        self.stop.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, tasks: TaskTracker, stop: CancellationToken) {
    loop {
        let socket = tokio::select! {
            a = listener.accept() => match a {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an operations connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = answer(socket, &ctx) => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// A request's method and path, from its head.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

async fn read_head(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

async fn answer(mut socket: TcpStream, ctx: &Context) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut socket)).await {
        Ok(Some(head)) => head,
        _ => return,
    };
    let (status, content_type, body) = match request_line(&head) {
        None => (400, "text/plain", "a request line like GET /metrics HTTP/1.1 was expected\n".to_string()),
        Some((method, _)) if method != "GET" && method != "HEAD" => {
            (405, "text/plain", format!("{method} is not served: use GET\n"))
        }
        Some((method, path)) => {
            let (status, content_type, body) = route(path, ctx).await;
            (status, content_type, if method == "HEAD" { String::new() } else { body })
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn route(path: &str, ctx: &Context) -> (u16, &'static str, String) {
    match path {
        "/metrics" => {
            refresh_lag(ctx).await;
            (200, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, ctx.service.metrics().encode())
        }
        "/healthz" => (200, "text/plain", "ok\n".into()),
        "/readyz" => match readiness(&ctx.health.check().await) {
            Ok(()) => (200, "text/plain", "ready\n".into()),
            Err(problems) => {
                tracing::debug!(?problems, "not ready");
                (503, "text/plain", format!("not ready:\n{}\n", problems.join("\n")))
            }
        },
        _ => (404, "text/plain", format!("{path} is not served: try /metrics, /healthz or /readyz\n")),
    }
}

/// Reads group lag again when the last reading is older than [`LAG_EVERY`].
async fn refresh_lag(ctx: &Context) {
    let mut last = ctx.lag_read.lock().await;
    if last.is_some_and(|at| at.elapsed() < LAG_EVERY) {
        return;
    }
    let lag = ctx.service.group_lag().await;
    ctx.service.metrics().set_group_lag(lag);
    *last = Some(tokio::time::Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        type Case<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Some(("GET", "/metrics"))),
            (b"HEAD /readyz?verbose=1 HTTP/1.0\r\n\r\n", Some(("HEAD", "/readyz"))),
            (b"GET /metrics\r\n\r\n", None),
            (b"GET /metrics SPDY/3\r\n\r\n", None),
            (b"\xff\xfe\r\n\r\n", None),
            (b"GET / HTTP/1.1 extra\r\n\r\n", None),
        ];
        for (head, want) in cases {
            assert_eq!(request_line(head), *want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn readiness_names_each_problem() {
        let ok = Checks { metadata: Ok(()), objects: Ok(()), session_live: true };
        assert_eq!(readiness(&ok), Ok(()));
        let cases = [
            (
                Checks { objects: Err("connection refused".into()), ..ok.clone() },
                vec!["object store: connection refused"],
            ),
            (Checks { metadata: Err("locked".into()), ..ok.clone() }, vec!["metadata store: locked"]),
            (
                Checks { session_live: false, objects: Err("timeout".into()), ..ok.clone() },
                vec!["object store: timeout", "session: not renewed within the lease TTL (leases may have lapsed)"],
            ),
        ];
        for (checks, want) in cases {
            assert_eq!(readiness(&checks), Err(want.into_iter().map(String::from).collect()), "{checks:?}");
        }
    }
}
