//! TLS material for the QUIC listener. TLS is never off.
//!
//! In the embedded default the agent keeps a local CA in its TLS folder
//! (`ca.pem`, which clients trust, and `ca-key.pem`). The first agent to use
//! the folder creates them; others reuse them. Each agent signs its own
//! leaf certificate at start, for `localhost`, loopback and its own names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsSource;
use crate::error::AgentError;

pub use crate::config::CA_FILE;
pub const CA_KEY_FILE: &str = "ca-key.pem";
const CA_NAME: &str = "silt local CA";

pub struct Material {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn tls_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> AgentError {
    AgentError::Tls { what: what.to_string(), source: Some(Box::new(e)) }
}

fn tls_fail(what: String) -> AgentError {
    AgentError::Tls { what, source: None }
}

pub fn load(source: &TlsSource, names: &[String]) -> Result<Material, AgentError> {
    match source {
        TlsSource::Files { cert, key } => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(&format!("reading certificate {}", cert.display()), e))?;
            if chain.is_empty() {
                return Err(tls_fail(format!("{} holds no certificate", cert.display())));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_err(&format!("reading private key {}", key.display()), e))?;
            Ok(Material { chain, key })
        }
        TlsSource::LocalCa(dir) => {
            let (ca_params, ca_key) = load_or_create_ca(dir)?;
            let ca = ca_params.self_signed(&ca_key).map_err(|e| tls_err("re-signing the CA", e))?;
            let leaf_key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
            let mut params = CertificateParams::new(names.to_vec()).map_err(|e| tls_err("certificate names", e))?;
            params.distinguished_name.push(DnType::CommonName, "silt agent");
            let leaf =
                params.signed_by(&leaf_key, &ca, &ca_key).map_err(|e| tls_err("signing the agent certificate", e))?;
            Ok(Material {
                chain: vec![leaf.der().clone(), ca.der().clone()],
                key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
            })
        }
    }
}

/// The names the agent's own certificate covers.
pub fn default_names(advertise: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let host = advertise.rsplit_once(':').map_or(advertise, |(h, _)| h).trim_matches(['[', ']']);
    if !host.is_empty() && host != "0.0.0.0" && host != "::" && !names.iter().any(|n| n == host) {
        names.push(host.to_string());
    }
    names
}

/// A client certificate for `name` (its common name, so its principal),
/// signed by the local CA in `dir`, valid for `days`: (certificate PEM,
/// key PEM).
pub fn issue_client_cert(dir: &Path, name: &str, days: u32) -> Result<(String, String), AgentError> {
    let (ca_params, ca_key) = read_ca(dir)?
        .ok_or_else(|| tls_fail(format!("{} holds no local CA ({CA_FILE} and {CA_KEY_FILE})", dir.display())))?;
    let ca = ca_params.self_signed(&ca_key).map_err(|e| tls_err("re-signing the CA", e))?;
    let key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("certificate names", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(days));
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(|e| tls_err("signing the client certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn read_ca(dir: &Path) -> Result<Option<(CertificateParams, KeyPair)>, AgentError> {
    let cert_path = dir.join(CA_FILE);
    let cert_pem = match std::fs::read_to_string(&cert_path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(tls_err(&format!("reading {}", cert_path.display()), e)),
    };
    let key_path = dir.join(CA_KEY_FILE);
    let key_pem =
        std::fs::read_to_string(&key_path).map_err(|e| tls_err(&format!("reading {}", key_path.display()), e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| tls_err(&format!("parsing {}", key_path.display()), e))?;
    let params = CertificateParams::from_ca_cert_pem(&cert_pem)
        .map_err(|e| tls_err(&format!("parsing {}", cert_path.display()), e))?;
    Ok(Some((params, key)))
}

fn load_or_create_ca(dir: &Path) -> Result<(CertificateParams, KeyPair), AgentError> {
    if let Some(ca) = read_ca(dir)? {
        return Ok(ca);
    }
    std::fs::create_dir_all(dir).map_err(|e| tls_err(&format!("creating {}", dir.display()), e))?;
    let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA parameters", e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.clone().self_signed(&key).map_err(|e| tls_err("signing the CA", e))?;
    // Publish the key, then the certificate, each by a link that fails if the
    // file exists: whoever links the key first wins, and `ca.pem` existing
    // means its key is already in place.
    let key_tmp = write_temp(dir, &key.serialize_pem())?;
    let won = std::fs::hard_link(&key_tmp, dir.join(CA_KEY_FILE)).is_ok();
    let _ = std::fs::remove_file(&key_tmp);
    if won {
        let cert_tmp = write_temp(dir, &cert.pem())?;
        let linked = std::fs::hard_link(&cert_tmp, dir.join(CA_FILE));
        let _ = std::fs::remove_file(&cert_tmp);
        linked.map_err(|e| tls_err(&format!("writing {}", dir.join(CA_FILE).display()), e))?;
        tracing::info!(dir = %dir.display(), "created a local CA; clients trust {CA_FILE}");
        return Ok((params, key));
    }
    // Another agent is creating the CA: wait for its certificate.
    for _ in 0..100 {
        if let Some(ca) = read_ca(dir)? {
            return Ok(ca);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(tls_fail(format!("{} has {CA_KEY_FILE} but no {CA_FILE}", dir.display())))
}

fn write_temp(dir: &Path, contents: &str) -> Result<PathBuf, AgentError> {
    use std::io::Write;
    let path = dir.join(format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let mut f = std::fs::File::create(&path).map_err(|e| tls_err(&format!("writing {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| tls_err(&format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Whether and how clients present certificates.
#[derive(Debug, Clone)]
pub enum ClientCerts {
    /// Not asked for.
    Ignored,
    /// Checked against the CA file when presented; `required`: a client
    /// without one is refused at the handshake.
    Verified { ca: PathBuf, required: bool },
}

impl ClientCerts {
    /// What a listener asks of client certificates under `config`'s
    /// `--auth`: verified with mtls, and required unless `other_way_in`
    /// (tokens, SASL) lets clients without one authenticate.
    pub fn of(config: &crate::config::Config, other_way_in: bool) -> ClientCerts {
        match (&config.client_ca, config.auth.mtls) {
            (Some(ca), true) => ClientCerts::Verified { ca: ca.clone(), required: !other_way_in },
            _ => ClientCerts::Ignored,
        }
    }
}

fn client_verifier(
    clients: &ClientCerts,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, AgentError> {
    let ClientCerts::Verified { ca, required } = clients else { return Ok(None) };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(&format!("reading the client CA {}", ca.display()), e))?;
    for c in certs {
        roots.add(c).map_err(|e| tls_err(&format!("client CA {}", ca.display()), e))?;
    }
    if roots.is_empty() {
        return Err(tls_fail(format!("{} holds no certificate", ca.display())));
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if *required { builder } else { builder.allow_unauthenticated() };
    Ok(Some(builder.build().map_err(|e| tls_err("client certificate verifier", e))?))
}

fn server_crypto(
    material: Material,
    clients: &ClientCerts,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ServerConfig, AgentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = client_verifier(clients, &provider)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| tls_err("TLS versions", e))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(material.chain, material.key).map_err(|e| tls_err("certificate and key do not match", e))
}

/// A TLS server over TCP (the Kafka listener's), TLS 1.2 and 1.3.
pub fn tcp_server_config(material: Material, clients: &ClientCerts) -> Result<rustls::ServerConfig, AgentError> {
    server_crypto(material, clients, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// The principal the peer's verified certificate names, if it presented one.
pub fn peer_principal(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    certs.and_then(|c| c.first()).and_then(|leaf| crate::auth::cert::principal(leaf))
}

/// The rustls server configuration for QUIC.
pub fn server_config(
    material: Material,
    clients: &ClientCerts,
    max_streams: u32,
) -> Result<quinn::ServerConfig, AgentError> {
    let mut crypto = server_crypto(material, clients, &[&rustls::version::TLS13])?;
    crypto.alpn_protocols = vec![silt_wire::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| tls_err("QUIC TLS", e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((16u32 << 20).into())
        .receive_window((64u32 << 20).into())
        .send_window(64 << 20)
        .max_idle_timeout(Some(Duration::from_secs(30).try_into().expect("30s is a valid idle timeout")));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The UDP socket buffers asked for (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`). The default, about 200 KiB, drops
/// datagrams when a producer's burst outruns the agent for a moment, and
/// every drop halves the sender's congestion window.
const UDP_BUFFER_BYTES: usize = 8 << 20;

/// A QUIC server endpoint on `addr`, its socket with [`UDP_BUFFER_BYTES`] buffers.
pub fn server_endpoint(config: quinn::ServerConfig, addr: std::net::SocketAddr) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(config), socket.into(), runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_sharing_a_folder_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let source = TlsSource::LocalCa(dir.path().to_path_buf());
        let names = default_names("127.0.0.1:7447");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (s, n) = (source.clone(), names.clone());
                std::thread::spawn(move || load(&s, &n).unwrap().chain[1].to_vec())
            })
            .collect();
        let cas: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Every agent's chain ends in the CA whose key is on disk: re-signing
        // it with that key gives the same subject public key.
        let disk_key = KeyPair::from_pem(&std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap()).unwrap();
        let spki = disk_key.public_key_der();
        for ca in &cas {
            assert!(ca.windows(spki.len()).any(|w| w == spki.as_slice()), "a chain ends in another CA");
        }
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "only ca.pem and ca-key.pem remain: {leftovers:?}");
    }

    #[test]
    fn names_cover_the_advertised_host() {
        assert!(default_names("10.1.2.3:7447").contains(&"10.1.2.3".to_string()));
        assert!(default_names("agent-1.svc:7447").contains(&"agent-1.svc".to_string()));
        assert_eq!(default_names("0.0.0.0:7447").len(), 3);
    }
}
