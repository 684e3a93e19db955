//! Who may do what, over QUIC: every request without credentials, with a
//! wrong, expired or revoked token, and as a principal without the ACL is
//! refused, changes nothing and names nothing it may not see; with the
//! right ACL it is served. Client certificates name their principal. The
//! CLI's `auth` and `acl` commands, as a user runs them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use silt_client::auth::{Acl, Operation, Pattern, Permission, ResourceType, CLUSTER};
use silt_client::{Client, ClientConfig};
use silt_wire::{Acks, ErrorCode, Request, ResetTo, Response};

use crate::harness::*;
use crate::protocol::{exchange, raw_connection_to};

const REFRESH: Duration = Duration::from_millis(200);

async fn agent() -> TestAgent {
    TestAgent::start_with(tempfile::tempdir().unwrap(), |a| {
        a.auth = Some("token,mtls".into());
        a.auth_refresh = REFRESH;
    })
    .await
}

fn admin_token(a: &TestAgent) -> String {
    std::fs::read_to_string(a.dir.path().join("admin.token")).unwrap().trim().to_string()
}

async fn client_with(a: &TestAgent, token: &str) -> Client {
    Client::connect(ClientConfig { token: Some(token.into()), ..a.client_config() }).await.unwrap()
}

/// A bare connection that sends hand-made requests (after authenticating
/// with `token`, when given).
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl Raw {
    async fn open(a: &TestAgent, token: Option<&str>) -> Raw {
        let (endpoint, conn) = raw_connection_to(a.addr, &a.ca).await;
        let raw = Raw { _endpoint: endpoint, conn };
        if let Some(t) = token {
            let answer = raw.send(&Request::Authenticate { token: t.into() }).await;
            assert!(matches!(answer, Response::Principal { .. }), "{answer:?}");
        }
        raw
    }

    async fn send(&self, r: &Request) -> Response {
        tokio::time::timeout(Duration::from_secs(10), exchange(&self.conn, &r.encode()))
            .await
            .expect("an answer in time")
            .expect("an answer")
    }
}

fn code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn batch(value: &str) -> Bytes {
    let mut b = silt_wire::BatchBuilder::new(silt_wire::Compression::None);
    b.push(0, None, value.as_bytes(), &[]);
    b.build().unwrap().into_bytes()
}

fn acl(principal: &str, resource: ResourceType, name: &str, operation: Operation) -> Acl {
    Acl {
        principal: principal.into(),
        resource,
        pattern: Pattern::Literal,
        name: name.into(),
        operation,
        permission: Permission::Allow,
    }
}

/// One request of every kind that needs a permission, on topic `orders`
/// and group `g`.
fn every_request() -> Vec<Request> {
    use silt_wire::{ConnectHeartbeat, ConnectorOp, GroupHeartbeat, OffsetCommit, TopicOffset};
    vec![
        Request::CreateTopic { name: "bob-new".into(), partitions: 1, configs: vec![] },
        Request::AlterTopic {
            name: "orders".into(),
            set: vec![("retention.ms".into(), "1000".into())],
            delete: vec![],
        },
        Request::DeleteTopic { name: "orders".into() },
        Request::DescribeTopic { name: "orders".into() },
        Request::Produce { topic: "orders".into(), partition: 0, acks: Acks::Durable, batch: batch("sneaky") },
        Request::Fetch { topic: "orders".into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0 },
        Request::Stats,
        Request::InitProducer,
        Request::ListAgents,
        Request::FindCoordinator { group: "g".into() },
        Request::GroupHeartbeat(GroupHeartbeat {
            group: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            session_timeout_ms: 10_000,
            wait_ms: 0,
            topics: Some(vec!["orders".into()]),
            owned: None,
        }),
        Request::OffsetCommit(OffsetCommit {
            group: "g".into(),
            member_id: String::new(),
            member_epoch: -1,
            offsets: vec![TopicOffset { topic: "orders".into(), partition: 0, offset: 1 }],
        }),
        Request::OffsetFetch { group: "g".into(), topics: vec![] },
        Request::DescribeGroup { group: "g".into() },
        Request::ResetOffsets { group: "g".into(), topic: "orders".into(), to: ResetTo::Earliest },
        Request::DeleteGroup { group: "g".into() },
        Request::PutConnector {
            name: "c".into(),
            config: "type = \"file-source\"".into(),
            standalone: false,
            replace: false,
        },
        Request::ListConnectors,
        Request::ConnectorAction { name: "c".into(), action: ConnectorOp::Delete },
        Request::ConnectHeartbeat(ConnectHeartbeat { worker: "w".into(), ttl_ms: 10_000, ..Default::default() }),
        Request::CommitConnector { name: "c".into(), worker: "w".into(), epoch: 1, position: "{}".into() },
        Request::CreateToken { principal: "mallory".into(), ttl_ms: 0 },
        Request::RevokeToken { principal: "admin".into() },
        Request::ListTokens,
        Request::AlterAcl { acl: acl("bob", ResourceType::Cluster, CLUSTER, Operation::Alter), remove: false },
        Request::ListAcls,
    ]
}

/// What the admin sees, to check that refused requests changed nothing.
async fn state(admin: &Client) -> String {
    let topics = admin.list_topics().await.unwrap();
    let orders = admin.describe_topic("orders").await.unwrap();
    let hw: Vec<i64> = orders.partitions.iter().map(|p| p.high_watermark).collect();
    let offsets = admin.committed_offsets("g", &[]).await.unwrap();
    let tokens: Vec<String> = admin.list_tokens().await.unwrap().into_iter().map(|t| t.principal).collect();
    let acls = admin.list_acls().await.unwrap();
    let connectors = admin.list_connectors().await.unwrap().len();
    format!("{topics:?} {hw:?} {:?} {offsets:?} {tokens:?} {acls:?} {connectors}", orders.configs)
}

#[tokio::test]
async fn every_request_is_refused_without_the_right_credentials_and_changes_nothing() {
    let a = agent().await;
    let admin = client_with(&a, &admin_token(&a)).await;
    assert_eq!(admin.who_am_i().await.unwrap(), "admin");
    admin.create_topic("orders", 1).await.unwrap();
    admin.create_topic("secret", 1).await.unwrap();
    let raw_admin = Raw::open(&a, Some(&admin_token(&a))).await;
    let r = raw_admin
        .send(&Request::Produce { topic: "orders".into(), partition: 0, acks: Acks::Durable, batch: batch("one") })
        .await;
    assert!(matches!(r, Response::ProduceAssigned { .. }), "{r:?}");
    let bob_token = admin.create_token("bob", None).await.unwrap();
    let carol_token = admin.create_token("carol", Some(Duration::from_millis(1500))).await.unwrap();
    let before = state(&admin).await;

    // No credentials: everything but authenticating is refused.
    let anonymous = Raw::open(&a, None).await;
    for r in every_request().iter().chain([Request::ListTopics, Request::ListGroups].iter()) {
        let answer = anonymous.send(r).await;
        assert_eq!(code(&answer), Some(ErrorCode::Unauthenticated), "{}: {answer:?}", r.name());
    }
    assert_eq!(code(&anonymous.send(&Request::WhoAmI).await), Some(ErrorCode::Unauthenticated));
    // A wrong token is refused, and the connection stays unauthenticated.
    let wrong = anonymous.send(&Request::Authenticate { token: "silt_0000".into() }).await;
    assert_eq!(code(&wrong), Some(ErrorCode::Unauthenticated), "{wrong:?}");
    assert_eq!(code(&anonymous.send(&Request::ListTopics).await), Some(ErrorCode::Unauthenticated));
    let e = Client::connect(ClientConfig { token: Some(format!("{bob_token}x")), ..a.client_config() }).await;
    assert_eq!(e.err().and_then(|e| e.code()), Some(ErrorCode::Unauthenticated));

    // bob, with no ACL: refused, and lists name nothing.
    let bob = Raw::open(&a, Some(&bob_token)).await;
    assert_eq!(bob.send(&Request::WhoAmI).await, Response::Principal { name: "bob".into() });
    for r in every_request() {
        let answer = bob.send(&r).await;
        assert_eq!(code(&answer), Some(ErrorCode::Unauthorized), "{}: {answer:?}", r.name());
        if let Response::Error { message, .. } = &answer {
            assert!(message.starts_with("bob may not "), "{message}");
        }
    }
    assert_eq!(bob.send(&Request::ListTopics).await, Response::Topics(vec![]));
    assert_eq!(bob.send(&Request::ListGroups).await, Response::Groups(vec![]));
    assert_eq!(state(&admin).await, before, "a refused request changed something");

    // The right ACLs: each request they cover is served.
    for (resource, name, op) in [
        (ResourceType::Topic, "orders", Operation::Write),
        (ResourceType::Topic, "orders", Operation::Read),
        (ResourceType::Group, "g", Operation::Read),
        (ResourceType::Cluster, CLUSTER, Operation::Create),
    ] {
        admin.alter_acl(&acl("bob", resource, name, op), false).await.unwrap();
    }
    let served = [
        Request::Produce { topic: "orders".into(), partition: 0, acks: Acks::Durable, batch: batch("two") },
        Request::DescribeTopic { name: "orders".into() },
        Request::CreateTopic { name: "bob-new".into(), partitions: 1, configs: vec![] },
        Request::ResetOffsets { group: "g".into(), topic: "orders".into(), to: ResetTo::Earliest },
        Request::FindCoordinator { group: "g".into() },
        Request::InitProducer,
    ];
    for r in &served {
        let answer = bob.send(r).await;
        assert_eq!(code(&answer), None, "{}: {answer:?}", r.name());
    }
    // What bob reads is the records, and what bob lists only what it may see.
    // ("two" was only assigned its offset: wait until it is readable.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let values = loop {
        let fetch =
            Request::Fetch { topic: "orders".into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 500 };
        let fetched = bob.send(&fetch).await;
        let Response::Fetched { batches, .. } = fetched else { panic!("{fetched:?}") };
        let values: Vec<String> = silt_wire::batch::split(&batches)
            .flat_map(|b| b.unwrap().records().unwrap())
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        if values.len() >= 2 || Instant::now() > deadline {
            break values;
        }
    };
    assert_eq!(values, ["one", "two"]);
    assert_eq!(bob.send(&Request::ListTopics).await, Response::Topics(vec!["orders".into()]));
    for r in [
        Request::DeleteTopic { name: "orders".into() },
        Request::DescribeTopic { name: "secret".into() },
        Request::Fetch { topic: "secret".into(), partition: 0, offset: 0, max_bytes: 1 << 20, max_wait_ms: 0 },
    ] {
        assert_eq!(code(&bob.send(&r).await), Some(ErrorCode::Unauthorized), "{}", r.name());
    }
    // A deny wins over the allow.
    let deny = Acl { permission: Permission::Deny, ..acl("bob", ResourceType::Topic, "orders", Operation::Write) };
    admin.alter_acl(&deny, false).await.unwrap();
    let r = bob
        .send(&Request::Produce { topic: "orders".into(), partition: 0, acks: Acks::Durable, batch: batch("3") })
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized), "{r:?}");

    // A revoked token stops working on the live connection within the refresh interval.
    admin.revoke_token("bob").await.unwrap();
    let revoked = Instant::now();
    loop {
        let r = bob.send(&Request::DescribeTopic { name: "orders".into() }).await;
        if code(&r) == Some(ErrorCode::Unauthenticated) {
            break;
        }
        assert!(revoked.elapsed() < REFRESH * 10, "still served {:?} after the revocation: {r:?}", revoked.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("a revoked token was refused {:?} after its revocation", revoked.elapsed());

    // An expired token stops working too, and cannot authenticate again.
    admin.alter_acl(&acl("carol", ResourceType::Topic, "orders", Operation::Read), false).await.unwrap();
    let carol = Raw::open(&a, Some(&carol_token)).await;
    tokio::time::sleep(REFRESH * 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while code(&carol.send(&Request::DescribeTopic { name: "orders".into() }).await).is_none() {
        assert!(Instant::now() < deadline, "carol's token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code(&carol.send(&Request::ListTopics).await), Some(ErrorCode::Unauthenticated));
    let again = carol.send(&Request::Authenticate { token: carol_token.clone() }).await;
    assert_eq!(code(&again), Some(ErrorCode::Unauthenticated));
    a.stop().await;
}

#[tokio::test]
async fn client_certificates_name_their_principal() {
    let a = agent().await;
    let admin = client_with(&a, &admin_token(&a)).await;
    admin.create_topic("orders", 1).await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let issue = |tls_dir: &std::path::Path, name: &str| {
        let (cert, key) = silt_agent::frontend::quic::tls::issue_client_cert(tls_dir, name, 1).unwrap();
        let (c, k) = (certs.path().join(format!("{name}.pem")), certs.path().join(format!("{name}-key.pem")));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        ClientConfig { cert: Some(c), key: Some(k), ..a.client_config() }
    };
    let dave = Client::connect(issue(&a.dir.path().join("tls"), "dave")).await.unwrap();
    assert_eq!(dave.who_am_i().await.unwrap(), "dave");
    assert_eq!(dave.list_topics().await.unwrap(), Vec::<String>::new());
    let e = dave.describe_topic("orders").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    admin.alter_acl(&acl("dave", ResourceType::Topic, "orders", Operation::Describe), false).await.unwrap();
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(dave.describe_topic("orders").await.unwrap().name, "orders");

    // A certificate from another CA is refused at the handshake.
    let other = tempfile::tempdir().unwrap();
    silt_agent::frontend::quic::tls::load(
        &silt_agent::config::TlsSource::LocalCa(other.path().to_path_buf()),
        &["localhost".to_string()],
    )
    .unwrap();
    let stranger = issue(other.path(), "dave2");
    let refused = async {
        let c = Client::connect(stranger).await?;
        c.who_am_i().await
    };
    assert!(refused.await.is_err(), "a certificate from another CA was let in");
    a.stop().await;
}

#[test]
fn the_cli_manages_tokens_acls_and_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let agent = AgentProcess::start(&data, &["--auth", "token,mtls", "--auth-refresh", "200ms"]);
    let token_file = data.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(String::from_utf8(agent.ok(&["auth", "whoami"], None)).unwrap().trim(), "admin");
    agent.ok(&["topic", "create", "orders", "--partitions", "2"], None);
    agent.ok(&["topic", "create", "payroll"], None);
    let bob = String::from_utf8(agent.ok(&["auth", "token", "create", "bob", "--expires", "1d"], None)).unwrap();
    let bob = bob.trim().to_string();
    assert!(bob.starts_with("silt_"), "{bob}");
    let tokens = String::from_utf8(agent.ok(&["auth", "token", "list"], None)).unwrap();
    assert!(tokens.contains("admin") && tokens.contains("bob"), "{tokens}");
    agent.ok(&["acl", "add", "--principal", "bob", "--topic", "orders", "--operation", "write,read"], None);
    agent.ok(&["acl", "add", "--principal", "bob", "--group-prefix", "bob-", "--operation", "read"], None);
    let acls = String::from_utf8(agent.ok(&["acl", "list", "--principal", "bob"], None)).unwrap();
    assert_eq!(acls.lines().count(), 4, "{acls}");
    assert!(acls.contains("prefixed") && acls.contains("bob-"), "{acls}");

    let as_bob = |args: &[&str], input: Option<&[u8]>| {
        run_silt(
            args,
            input,
            &[("SILT_AGENT", &agent.addr), ("SILT_CA", agent.ca.to_str().unwrap()), ("SILT_TOKEN", &bob)],
            None,
        )
    };
    let out = as_bob(&["produce", "orders"], Some(b"a\nb\nc\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_bob(&["consume", "orders", "--group", "bob-readers", "--from-beginning", "--max-messages", "3"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
    let out = as_bob(&["topic", "list"], None);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "orders", "payroll is not named");
    for args in [
        &["produce", "payroll"][..],
        &["topic", "delete", "orders"],
        &["consume", "orders", "--group", "other", "--max-messages", "1", "--timeout-ms", "3000"],
    ] {
        let out = as_bob(args, Some(b"x\n"));
        assert!(!out.status.success(), "silt {args:?} was let through");
        assert!(stderr(&out).contains("UNAUTHORIZED"), "silt {args:?}: {}", stderr(&out));
    }
    // Without credentials: refused, with a message that says what to do.
    let out = run_silt(
        &["topic", "list"],
        None,
        &[("SILT_AGENT", &agent.addr), ("SILT_CA", agent.ca.to_str().unwrap())],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("UNAUTHENTICATED") && stderr(&out).contains("--token-file"), "{}", stderr(&out));

    // A client certificate from the local CA.
    let certs = dir.path().join("certs");
    let tls_dir = data.join("tls");
    agent.ok(
        &["auth", "cert", "create", "dave", "--out", certs.to_str().unwrap(), "--tls-dir", tls_dir.to_str().unwrap()],
        None,
    );
    let (cert, key) = (certs.join("dave.pem"), certs.join("dave-key.pem"));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let out = run_silt(
        &["auth", "whoami", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
        None,
        &[("SILT_AGENT", &agent.addr), ("SILT_CA", certs.join("ca.pem").to_str().unwrap())],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "dave", "{}", stderr(&out));

    // Revoked: bob is refused.
    agent.ok(&["auth", "token", "revoke", "bob"], None);
    let out = as_bob(&["topic", "list"], None);
    assert!(!out.status.success() && stderr(&out).contains("UNAUTHENTICATED"), "{}", stderr(&out));
    agent.ok(&["acl", "remove", "--principal", "bob", "--topic", "orders", "--operation", "write,read"], None);
    let acls = String::from_utf8(agent.ok(&["acl", "list", "--principal", "bob"], None)).unwrap();
    assert_eq!(acls.lines().count(), 2, "{acls}");
}

#[test]
fn an_agent_off_loopback_refuses_to_start_without_an_auth_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_silt(
        &["agent", "--data-dir", dir.path().to_str().unwrap(), "--listen", &format!("0.0.0.0:{}", free_port())],
        None,
        &[],
        None,
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("is not a loopback address") && e.contains("--auth token") && e.contains("--auth none"), "{e}");
    assert!(!dir.path().join("metadata.db").exists(), "it refused before touching anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_acls_changed_through_one_agent_hold_on_another_within_the_refresh() {
    let c = TestCluster::builder().agents(2).flags(&["--auth", "token", "--auth-refresh", "500ms"]).start().await;
    let admin = Client::connect(c.config_in(&[0])).await.unwrap();
    admin.create_topic("orders", 1).await.unwrap();
    let token = admin.create_token("bob", None).await.unwrap();
    let on_other = ClientConfig { token: Some(token), ..c.config_in(&[1]) };
    let bob = loop {
        // The second agent learns of the token within its refresh.
        if let Ok(b) = Client::connect(on_other.clone()).await {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let e = bob.describe_topic("orders").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");

    let granted = Instant::now();
    admin.alter_acl(&acl("bob", ResourceType::Topic, "orders", Operation::Describe), false).await.unwrap();
    TestCluster::wait_for("bob's ACL on the other agent", Duration::from_secs(5), || async {
        bob.describe_topic("orders").await.is_ok()
    })
    .await;
    let revoked = Instant::now();
    admin.revoke_token("bob").await.unwrap();
    TestCluster::wait_for("the revocation on the other agent", Duration::from_secs(5), || async {
        bob.describe_topic("orders").await.is_err_and(|e| e.code() == Some(ErrorCode::Unauthenticated))
    })
    .await;
    eprintln!("granted after {:?}, revoked after {:?}", revoked - granted, revoked.elapsed());
}
