//! Kafka's wire protocol over TCP (or TLS), for clients that speak it.
//!
//! One accept loop; per connection a reader and a writer task. The reader
//! takes one size-prefixed request at a time (refused by its size before it
//! is read), decodes it with `kafka-protocol`'s messages and starts its
//! handler; the writer sends the answers in request order, as Kafka
//! clients expect, while later requests already run. Produce requests take
//! their offsets in the reader, one after the other, so a connection's
//! batches land in the order they were sent; only the wait for their
//! acknowledgement runs beside later requests.
//!
//! A request that cannot be decoded closes its connection with nothing
//! written for it.
//!
//! - [`api`]: the API table and the handlers.
//! - [`codes`]: the service's errors as Kafka error codes.
//! - [`fetch_frame`]: Fetch responses written without copying their records.
//! - [`records`]: Kafka record batches to silt batches and back.
//! - [`sasl`]: who a connection is (SASL, client certificates) and the checks handlers make.

pub mod api;
pub mod codes;
pub mod fetch_frame;
pub mod groups;
pub mod records;
pub mod sasl;
pub mod unoffered;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, KafkaConfig};
use crate::error::AgentError;
use crate::frontend::quic::tls;
use crate::service::Service;

/// How long a client may take to send the rest of a request it began.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests of one connection in flight at once (answers queue in order).
const PIPELINE: usize = 64;

/// The Kafka listener.
pub struct Listener {
    listener: Arc<TcpListener>,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// host:port clients are told.
    advertised: String,
    stop: CancellationToken,
    connections: TaskTracker,
}

/// What every connection's handlers share.
pub struct Context {
    pub service: Arc<Service>,
    /// This agent's Kafka address and its QUIC address (which the metadata
    /// store names partition owners by).
    pub advertised: String,
    pub max_request_bytes: usize,
    pub groups: groups::Classic,
    /// Bytes of requests being read or handled, across connections.
    read_budget: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Listener {
    /// Binds the TCP address `kafka.listen` names (TLS with the agent's certificate when asked).
    pub async fn bind(config: &Config, kafka: &KafkaConfig) -> Result<Listener, AgentError> {
        let bind_err = |source| AgentError::Bind { addr: kafka.listen.to_string(), source };
        let listener = TcpListener::bind(kafka.listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let advertised = kafka.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        let tls = if kafka.tls {
            let advertise_hint = config.advertise.clone().unwrap_or_else(|| config.listen.to_string());
            let mut names = tls::default_names(&advertise_hint);
            names.extend(tls::default_names(&advertised));
            names.sort();
            names.dedup();
            let material = tls::load(&config.tls, &names)?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls::tcp_server_config(
                material,
                &tls::ClientCerts::of(config, config.auth.sasl),
            )?)))
        } else {
            None
        };
        Ok(Listener {
            listener: Arc::new(listener),
            local_addr,
            tls,
            advertised,
            stop: CancellationToken::new(),
            connections: TaskTracker::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `host:port` clients are told to reach this listener at.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// Starts accepting connections for `service`.
    pub fn serve(&self, service: Arc<Service>, config: &Config) {
        let ctx = Arc::new(Context {
            groups: groups::Classic::default(),
            service,
            advertised: self.advertised.clone(),
            max_request_bytes: config.max_frame_bytes,
            read_budget: Arc::new(Semaphore::new(config.max_inflight_bytes)),
            stop: self.stop.clone(),
        });
        let slots = Arc::new(Semaphore::new(config.max_connections as usize));
        let (listener, tasks, tls) = (self.listener.clone(), self.connections.clone(), self.tls.clone());
        self.connections
            .spawn(accept_loop(listener, tls, ctx, slots, tasks).instrument(tracing::info_span!("kafka accept")));
    }

    /// Stops accepting connections and new requests on open ones.
    pub fn stop_accepting(&self) {
        self.stop.cancel();
        self.connections.close();
    }

    /// Waits until every connection's requests are answered.
    pub async fn drained(&self) {
        self.connections.wait().await;
    }
}

async fn accept_loop(
    listener: Arc<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<Context>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
) {
    loop {
        let (socket, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Kafka connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = ctx.stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; refusing");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (ctx, tls) = (ctx.clone(), tls.clone());
        let span = tracing::debug_span!("kafka connection", %remote);
        tasks.spawn(
            async move {
                let _slot = slot;
                let host = remote.ip().to_string();
                match tls {
                    None => {
                        let conn = sasl::Conn::new(ctx.service.auth().session(None));
                        serve_connection(socket, ctx, host, conn).await
                    }
                    Some(acceptor) => match acceptor.accept(socket).await {
                        Ok(stream) => {
                            let principal = tls::peer_principal(stream.get_ref().1.peer_certificates());
                            let conn = sasl::Conn::new(ctx.service.auth().session(principal));
                            serve_connection(stream, ctx, host, conn).await
                        }
                        Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                    },
                }
            }
            .instrument(span),
        );
    }
}

/// An answer to come, in request order, as chunks of one frame: None when
/// the request gets none (produce with acks=0).
type Pending = JoinHandle<Option<Vec<Bytes>>>;

async fn serve_connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    ctx: Arc<Context>,
    host: String,
    conn: sasl::Conn,
) {
    let _open = ctx.service.metrics().connection("kafka");
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Pending>(PIPELINE);
    let writing = tokio::spawn(write_answers(writer, rx).in_current_span());
    loop {
        let frame = tokio::select! {
            f = read_request(&mut reader, &ctx) => f,
            _ = ctx.stop.cancelled() => break,
        };
        let (frame, permit) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "closing a Kafka connection");
                break;
            }
        };
        let pending = match api::start(&ctx, &conn, frame, permit, &host).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed Kafka request; closing its connection");
                break;
            }
        };
        if tx.send(pending).await.is_err() {
            break; // the writer failed: the client is gone
        }
    }
    drop(tx);
    let _ = writing.await;
}

async fn write_answers<W: AsyncWrite>(writer: W, mut rx: mpsc::Receiver<Pending>) {
    let mut writer = std::pin::pin!(writer);
    while let Some(pending) = rx.recv().await {
        match pending.await {
            Ok(Some(chunks)) => {
                for chunk in chunks {
                    if writer.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // Flush once nothing else is ready to go with it.
                if rx.is_empty() && writer.flush().await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a Kafka request's handler failed; closing its connection");
                return;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("reading a request: {0}")]
    Io(#[from] std::io::Error),
    #[error("a request of {len} bytes is over the limit of {max}")]
    TooLarge { len: i64, max: usize },
    #[error("no whole request in time")]
    Timeout,
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request for API key {0}, which is not known")]
    UnknownApi(i16),
    #[error("{0:?} before authenticating")]
    Unauthenticated(ApiKey),
}

/// A request's bytes, with the share of the read budget they hold.
pub struct Frame {
    pub header: RequestHeader,
    pub api: ApiKey,
    pub body: Bytes,
}

/// Reads one request; None at a clean end of the stream.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    ctx: &Context,
) -> Result<Option<(Bytes, tokio::sync::OwnedSemaphorePermit)>, ConnectionError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(prefix);
    if len < 4 || len as usize > ctx.max_request_bytes {
        return Err(ConnectionError::TooLarge { len: len.into(), max: ctx.max_request_bytes });
    }
    let len = len as usize;
    let permit =
        ctx.read_budget.clone().acquire_many_owned(len as u32).await.map_err(|_| ConnectionError::ShuttingDown)?;
    let mut body = BytesMut::zeroed(len);
    tokio::time::timeout(REQUEST_READ_TIMEOUT, reader.read_exact(&mut body))
        .await
        .map_err(|_| ConnectionError::Timeout)??;
    Ok(Some((body.freeze(), permit)))
}

/// Splits a request into its header and body. The header's layout depends
/// on the API and its version, which lead every header.
pub fn parse(mut bytes: Bytes) -> Result<Frame, ConnectionError> {
    if bytes.len() < 4 {
        return Err(ConnectionError::Malformed("a request shorter than its header".into()));
    }
    let key = i16::from_be_bytes([bytes[0], bytes[1]]);
    let version = i16::from_be_bytes([bytes[2], bytes[3]]);
    let api = ApiKey::try_from(key).map_err(|_| ConnectionError::UnknownApi(key))?;
    let header_version = match api::supported(api) {
        Some((min, max)) if version >= min && version <= max => api.request_header_version(version),
        // An ApiVersions this listener does not offer is still answered (with
        // the versions it does): every layout starts with the correlation id.
        _ if api == ApiKey::ApiVersions && bytes.len() >= 8 => {
            let correlation_id = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let header = RequestHeader::default()
                .with_request_api_key(key)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id);
            return Ok(Frame { header, api, body: Bytes::new() });
        }
        // An API not offered at all is answered with an error, in a
        // version the protocol defines.
        None if version >= api.valid_versions().min && version <= api.valid_versions().max => {
            api.request_header_version(version)
        }
        _ => return Err(ConnectionError::Malformed(format!("{api:?} version {version} is not offered"))),
    };
    let header = RequestHeader::decode(&mut bytes, header_version)
        .map_err(|e| ConnectionError::Malformed(format!("request header: {e}")))?;
    Ok(Frame { header, api, body: bytes })
}

/// A response frame: size, header (correlation id, and tagged fields in
/// the flexible header), body.
pub fn frame_response<M: kafka_protocol::protocol::Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, String> {
    frame_with(api, version, correlation_id, |out| body.encode(out, version))
}

fn frame_with<E: std::fmt::Display>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    out.put_i32(correlation_id);
    if api.response_header_version(version) >= 1 {
        out.put_u8(0); // no tagged fields
    }
    encode(&mut out).map_err(|e| format!("encoding a {api:?} v{version} response: {e}"))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut out, api.request_header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn headers_parse_at_every_version_and_garbage_is_an_error() {
        for version in 0..=12 {
            let f = parse(request(ApiKey::Metadata, version, &MetadataRequest::default())).unwrap();
            assert_eq!((f.api, f.header.correlation_id, f.header.request_api_version), (ApiKey::Metadata, 7, version));
            assert!(f.body.len() < 16);
        }
        assert!(matches!(parse(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0])), Err(ConnectionError::UnknownApi(_))));
        assert!(parse(Bytes::from_static(&[0, 3, 0])).is_err());
        assert!(parse(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0])).is_err(), "a header cut short");
    }
}
