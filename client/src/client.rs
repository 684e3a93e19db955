//! One QUIC connection to an agent, and requests over it: each request
//! opens its own bidirectional stream, so a slow fetch never blocks a produce.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use silt_wire::frame::{self, Frame};
use silt_wire::{Request, Response};

use crate::error::ClientError;

pub const DEFAULT_AGENT: &str = "127.0.0.1:7447";

/// How to reach and trust an agent.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of an agent, or several separated by commas: the first
    /// that answers is used, and it tells where every partition's owner is.
    pub agent: String,
    /// PEM file with the CA certificates to trust (an agent's `ca.pem`).
    pub ca: Option<PathBuf>,
    /// PEM bytes to trust, instead of or besides `ca`.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the agent's certificate must carry [default: the host of `agent`].
    pub server_name: Option<String>,
    pub connect_timeout: Duration,
    /// How long a request may wait for its answer (fetch long-polls add their wait).
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_frame_bytes: usize,
    /// A bearer token: the connection acts as its principal (agents started
    /// with `--auth token`).
    pub token: Option<String>,
    /// A client certificate chain (PEM) and its key, for agents started
    /// with `--auth mtls` (`silt auth cert create` makes them).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            agent: DEFAULT_AGENT.into(),
            ca: None,
            ca_pem: None,
            server_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_frame_bytes: 256 << 20,
            token: None,
            cert: None,
            key: None,
        }
    }
}

/// A connection to one agent. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    conn: quinn::Connection,
    // Kept so the endpoint (and its socket) lives as long as any clone.
    _endpoint: quinn::Endpoint,
    addr: Arc<str>,
    /// The agent list this client was given (it connected to one of them).
    seeds: Arc<str>,
    config: Arc<ClientConfig>,
}

fn tls_config(config: &ClientConfig) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut pems: Vec<Vec<u8>> = Vec::new();
    if let Some(path) = &config.ca {
        let pem = std::fs::read(path).map_err(|e| ClientError::Tls {
            what: format!("cannot read CA file {} (pass --ca or set SILT_CA)", path.display()),
            source: Arc::new(e),
        })?;
        pems.push(pem);
    }
    pems.extend(config.ca_pem.clone());
    if pems.is_empty() {
        return Err(ClientError::Config("no CA to trust: pass --ca or set SILT_CA".into()));
    }
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| ClientError::Tls { what: "the CA file is not PEM".into(), source: Arc::new(e) })?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls { what: "CA certificate rejected".into(), source: Arc::new(e) })?;
        }
    }
    if roots.is_empty() {
        return Err(ClientError::Config("the CA file holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls { what: "TLS versions".into(), source: Arc::new(e) })?
        .with_root_certificates(roots);
    let mut tls = match (&config.cert, &config.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain =
                CertificateDer::pem_file_iter(cert).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(|e| {
                    ClientError::Tls {
                        what: format!("cannot read client certificate {}", cert.display()),
                        source: Arc::new(e),
                    }
                })?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| ClientError::Tls {
                what: format!("cannot read client key {}", key.display()),
                source: Arc::new(e),
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| ClientError::Tls {
                what: "the client certificate and key do not match".into(),
                source: Arc::new(e),
            })?
        }
        _ => return Err(ClientError::Config("a client certificate and its key go together (--cert and --key)".into())),
    };
    tls.alpn_protocols = vec![silt_wire::ALPN.to_vec()];
    Ok(tls)
}

/// Whether a handshake failed because the agent's certificate is not trusted.
fn is_certificate_error(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::TransportError(t) => t.to_string().contains("certificate"),
        quinn::ConnectionError::ConnectionClosed(c) => c.to_string().contains("certificate"),
        _ => false,
    }
}

/// The UDP socket buffers asked for (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`): the default, about 200 KiB, drops
/// datagrams in a burst, and each drop halves the sender's congestion window.
const UDP_BUFFER_BYTES: usize = 8 << 20;

/// A client endpoint on `bind`, its socket with [`UDP_BUFFER_BYTES`] buffers.
fn client_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&bind.into())?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket.into(), runtime)
}

fn host_of(agent: &str) -> &str {
    agent.rsplit_once(':').map_or(agent, |(h, _)| h).trim_matches(['[', ']'])
}

impl Client {
    /// Connects to `config.agent`, failing after `connect_timeout` when nothing answers.
    ///
    /// Cancel safety: dropping the future abandons the attempt; nothing is left behind.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let agents: Vec<String> =
            config.agent.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
        if agents.is_empty() {
            return Err(ClientError::Config("no agent address given".into()));
        }
        let mut last = None;
        for agent in &agents {
            match Self::connect_one(ClientConfig { agent: agent.clone(), ..config.clone() }).await {
                Ok(mut c) => {
                    c.seeds = config.agent.as_str().into();
                    return Ok(c);
                }
                // A certificate the CA does not vouch for (or credentials
                // the agents refuse) is not a reason to try the next.
                Err(
                    e @ (ClientError::Config(_)
                    | ClientError::Tls { .. }
                    | ClientError::Untrusted { .. }
                    | ClientError::Server { .. }),
                ) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one agent was tried"))
    }

    async fn connect_one(config: ClientConfig) -> Result<Client, ClientError> {
        let addr_text = config.agent.clone();
        let addr: SocketAddr = tokio::net::lookup_host(&addr_text)
            .await
            .map_err(|e| ClientError::Resolve { addr: addr_text.clone(), source: Arc::new(e) })?
            .next()
            .ok_or_else(|| ClientError::Resolve {
                addr: addr_text.clone(),
                source: Arc::new(std::io::Error::other("no address found")),
            })?;
        let tls = tls_config(&config)?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Tls { what: "TLS for QUIC".into(), source: Arc::new(e) })?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            // An agent killed outright sends nothing: notice within seconds.
            .keep_alive_interval(Some(Duration::from_secs(3)))
            .max_idle_timeout(Some(Duration::from_secs(10).try_into().expect("valid idle timeout")))
            .stream_receive_window((16u32 << 20).into())
            .receive_window((64u32 << 20).into())
            .send_window(64 << 20);
        client_config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("valid bind address");
        let mut endpoint =
            client_endpoint(bind).map_err(|e| ClientError::Connect { addr: addr_text.clone(), source: Arc::new(e) })?;
        endpoint.set_default_client_config(client_config);
        let server_name = config.server_name.clone().unwrap_or_else(|| host_of(&addr_text).to_string());
        let connecting = endpoint
            .connect(addr, &server_name)
            .map_err(|e| ClientError::Connect { addr: addr_text.clone(), source: Arc::new(e) })?;
        let conn = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Err(_) => {
                return Err(ClientError::ConnectTimeout { addr: addr_text, secs: config.connect_timeout.as_secs() })
            }
            Ok(Err(e)) if is_certificate_error(&e) => {
                return Err(ClientError::Untrusted { addr: addr_text, source: Arc::new(e) })
            }
            Ok(Err(e)) => return Err(ClientError::Connect { addr: addr_text, source: Arc::new(e) }),
            Ok(Ok(c)) => c,
        };
        let client = Client {
            conn,
            _endpoint: endpoint,
            seeds: addr_text.as_str().into(),
            addr: addr_text.into(),
            config: Arc::new(config),
        };
        if let Some(token) = &client.config.token {
            client.authenticate(token).await?;
        }
        Ok(client)
    }

    /// The QUIC connection under this client, with the SDK's transport
    /// settings: for measuring what QUIC itself carries (`silt bench quic`).
    pub fn quic_connection(&self) -> &quinn::Connection {
        &self.conn
    }

    pub fn agent(&self) -> &str {
        &self.addr
    }

    /// The agent addresses this client was configured with.
    pub fn seeds(&self) -> &str {
        &self.seeds
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn lost(&self, e: impl std::error::Error + Send + Sync + 'static) -> ClientError {
        ClientError::Connection { addr: self.addr.to_string(), source: Arc::new(e) }
    }

    /// Opens a stream and sends one request on it.
    pub(crate) async fn open(&self, request: &Request) -> Result<ResponseStream, ClientError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(e))?;
        let mut chunks = request.encode_chunks();
        send.write_all_chunks(&mut chunks).await.map_err(|e| self.lost(e))?;
        let _ = send.finish();
        Ok(ResponseStream { recv, client: self.clone() })
    }

    /// Sends one request and waits for its single response, within `extra`
    /// beyond the request timeout. Agent errors become `ClientError::Server`.
    pub(crate) async fn call(&self, request: &Request, extra: Duration) -> Result<Response, ClientError> {
        self.call_within(request, self.config.request_timeout + extra).await
    }

    /// Like `call`, with its own time limit.
    pub(crate) async fn call_within(&self, request: &Request, limit: Duration) -> Result<Response, ClientError> {
        let fut = async {
            let mut stream = self.open(request).await?;
            stream.next().await
        };
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { addr: self.addr.to_string(), secs: limit.as_secs() }),
        }
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    pub fn close(&self) {
        self.conn.close(0u32.into(), b"client closed");
    }
}

/// The response frames of one request.
pub(crate) struct ResponseStream {
    recv: quinn::RecvStream,
    client: Client,
}

impl ResponseStream {
    /// The next response; an `Error` response becomes `Err(ClientError::Server)`.
    pub async fn next(&mut self) -> Result<Response, ClientError> {
        let mut prefix = [0u8; frame::PREFIX_LEN];
        self.recv.read_exact(&mut prefix).await.map_err(|e| self.client.lost(e))?;
        let len = frame::parse_length(prefix, self.client.config.max_frame_bytes)?;
        // Filled chunk by chunk as it arrives: one copy of each byte, and
        // no zeroing of a buffer about to be overwritten (a fetch reply is
        // a megabyte or more; zeroing it cost a consumer 5 % of its CPU).
        let mut body = BytesMut::with_capacity(len);
        while body.len() < len {
            match self.recv.read_chunk(len - body.len(), true).await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
                Ok(None) => return Err(self.client.lost(quinn::ReadExactError::FinishedEarly(body.len()))),
                Err(e) => return Err(self.client.lost(e)),
            }
        }
        let frame = Frame::decode(body.freeze())?;
        match Response::decode(&frame)? {
            Response::Error { code, message } => Err(ClientError::Server { code, message }),
            other => Ok(other),
        }
    }
}

pub(crate) fn unexpected(r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response kind {:#x}", r.kind()))
}
