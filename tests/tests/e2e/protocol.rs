//! Misbehaving peers: garbage on a stream closes that stream with an error
//! code; random datagrams are ignored; everyone else keeps being served.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use silt_wire::frame::{self, Frame};
use silt_wire::{ErrorCode, Request, Response};

use crate::harness::*;

async fn raw_connection(agent: &TestAgent) -> (quinn::Endpoint, quinn::Connection) {
    raw_connection_to(agent.addr, &agent.ca).await
}

/// A bare QUIC connection to an agent, for sending hand-made frames.
pub(crate) async fn raw_connection_to(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![silt_wire::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    (endpoint, conn)
}

pub(crate) async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Option<Response> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.ok()?;
    let len = frame::parse_length(prefix, 1 << 20).ok()?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.ok()?;
    Response::decode(&Frame::decode(body.into()).ok()?).ok()
}

fn error_code(r: Option<Response>) -> Option<ErrorCode> {
    match r {
        Some(Response::Error { code, .. }) => Some(code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_streams_are_closed_and_the_connection_lives_on() {
    let agent = TestAgent::start().await;
    let (_ep, conn) = raw_connection(&agent).await;
    let list = Request::ListTopics.encode();

    // Not a frame at all: a length far over the limit.
    assert_eq!(error_code(exchange(&conn, b"\xff\xff\xff\xffgarbage").await), Some(ErrorCode::MalformedFrame));
    // A frame shorter than its head.
    assert_eq!(error_code(exchange(&conn, &[0, 0, 0, 1, 1]).await), Some(ErrorCode::MalformedFrame));
    // A frame of a version this agent does not speak (a newer client's).
    assert_eq!(error_code(exchange(&conn, &[0, 0, 0, 2, 9, 3]).await), Some(ErrorCode::UnsupportedVersion));
    // A well-framed request of a kind this agent does not know (a newer client's).
    assert_eq!(error_code(exchange(&conn, &Frame::encode(0x42, b"?")).await), Some(ErrorCode::UnknownRequest));
    // A known kind whose body does not parse.
    assert_eq!(
        error_code(exchange(&conn, &Frame::encode(Request::ListTopics.kind(), b"extra")).await),
        Some(ErrorCode::MalformedFrame)
    );
    // A produce whose batch is garbage is rejected whole.
    let produce = Request::Produce {
        topic: "t".into(),
        partition: 0,
        acks: silt_wire::Acks::Durable,
        batch: bytes::Bytes::from_static(b"not a batch"),
    };
    let client = agent.client().await;
    client.create_topic("t", 1).await.unwrap();
    assert_eq!(error_code(exchange(&conn, &produce.encode()).await), Some(ErrorCode::InvalidBatch));
    // A stream that ends mid-frame.
    let cut = &list[..list.len() - 1];
    assert_eq!(error_code(exchange(&conn, cut).await), Some(ErrorCode::MalformedFrame));

    // The same connection still serves a good request; so does a new client.
    assert_eq!(exchange(&conn, &list).await, Some(Response::Topics(vec!["t".into()])));
    assert_eq!(agent.client().await.list_topics().await.unwrap(), vec!["t".to_string()]);
    assert_eq!(client.describe_topic("t").await.unwrap().partitions[0].high_watermark, 0, "nothing was written");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_are_ignored() {
    let agent = TestAgent::start().await;
    let client = agent.client().await;
    client.create_topic("u", 1).await.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000 {
        let len = 1 + (i * 37) % 1400;
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send_to(&datagram, agent.addr).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.list_topics().await.unwrap(), vec!["u".to_string()], "the old connection still works");
    assert_eq!(agent.client().await.list_topics().await.unwrap(), vec!["u".to_string()], "new connections still work");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sharing_a_tls_dir_are_trusted_through_one_ca() {
    let shared = tempfile::tempdir().unwrap();
    let tls_dir = shared.path().join("tls");
    let mut agents = Vec::new();
    for _ in 0..2 {
        let t = tls_dir.clone();
        agents.push(TestAgent::start_with(tempfile::tempdir().unwrap(), move |a| a.tls_dir = Some(t)).await);
    }
    assert_eq!(agents[0].ca, tls_dir.join("ca.pem"));
    for agent in &agents {
        let mut config = agent.client_config();
        config.ca = Some(tls_dir.join("ca.pem"));
        silt_client::Client::connect(config).await.unwrap().list_topics().await.unwrap();
    }
    for a in agents {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_certificates_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["silt.test".to_string()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), move |a| {
        a.tls_cert = Some(c);
        a.tls_key = Some(k);
    })
    .await;
    let config = silt_client::ClientConfig {
        agent: agent.addr.to_string(),
        ca: Some(cert_path),
        server_name: Some("silt.test".into()),
        ..Default::default()
    };
    silt_client::Client::connect(config.clone()).await.unwrap().list_topics().await.unwrap();
    // The certificate does not name "localhost", so that name is refused.
    let wrong = silt_client::ClientConfig { server_name: Some("localhost".into()), ..config };
    assert!(silt_client::Client::connect(wrong).await.is_err());
    assert!(!agent.dir.path().join("tls/ca.pem").exists(), "no local CA is made when real certificates are given");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_hold_nothing_back() {
    // Many streams each declare a 16 MiB frame and send nothing more: they
    // must not take the agent's memory or block anyone else's requests.
    let agent = TestAgent::start_with(tempfile::tempdir().unwrap(), |a| a.max_inflight_bytes = 16 << 20).await;
    let (_ep, conn) = raw_connection(&agent).await;
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&((16u32 << 20) - 8).to_be_bytes()).await.unwrap();
        stalled.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = agent.client().await;
    let answered = tokio::time::timeout(Duration::from_secs(5), client.create_topic("still-served", 1)).await;
    assert!(answered.expect("a request waited behind stalled frames").is_ok());
    let list = Request::ListTopics.encode();
    assert_eq!(exchange(&conn, &list).await, Some(Response::Topics(vec!["still-served".into()])));
    drop(stalled);
    agent.stop().await;
}
