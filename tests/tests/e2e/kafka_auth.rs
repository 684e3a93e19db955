//! Who may do what, over the Kafka listener: every request before SASL,
//! after a failed one, and as a principal without the ACL is refused,
//! changes nothing and names nothing it may not see; with the right ACLs
//! it is served; a revoked token stops a live connection. kcat and
//! confluent-kafka authenticate with SASL/SCRAM over TLS, and kcat with a
//! client certificate.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use silt_client::auth::{Acl, Operation, Pattern, Permission, ResourceType, CLUSTER};
use silt_client::{Client, Producer, ProducerConfig, ProducerRecord, ResetTo};

use crate::harness::cluster::TestCluster;
use crate::kafka::{closed_silently, confluent, json_lines, one_record, request, response, run};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const REFUSALS: [i16; 4] =
    [TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED, SASL_AUTHENTICATION_FAILED];

/// A hand-driven Kafka connection.
struct Kafka {
    s: TcpStream,
    cid: i32,
}

impl Kafka {
    fn connect(addr: &str) -> Kafka {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Kafka { s, cid: 0 }
    }

    /// Sends one request; its answer, or None when the agent closed the
    /// connection instead.
    fn call<Req: Encodable, Resp: Decodable>(&mut self, api: ApiKey, version: i16, req: &Req) -> Option<Resp> {
        self.cid += 1;
        if self.s.write_all(&request(api, version, self.cid, req)).is_err() {
            return None;
        }
        let mut peek = [0u8; 1];
        match self.s.peek(&mut peek) {
            Ok(0) | Err(_) => {
                assert!(closed_silently(&mut self.s));
                return None;
            }
            Ok(_) => {}
        }
        let (cid, mut body) = response(&mut self.s, api, version);
        assert_eq!(cid, self.cid);
        Some(Resp::decode(&mut body, version).unwrap())
    }

    /// SASL/PLAIN; SaslAuthenticate's error code.
    fn plain(&mut self, user: &str, password: &str) -> i16 {
        let hs: SaslHandshakeResponse =
            self.call(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))).unwrap();
        assert_eq!(hs.error_code, 0);
        let bytes = Bytes::from(format!("\0{user}\0{password}"));
        let r: SaslAuthenticateResponse =
            self.call(ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default().with_auth_bytes(bytes)).unwrap();
        r.error_code
    }

    fn as_user(addr: &str, user: &str, password: &str) -> Kafka {
        let mut k = Kafka::connect(addr);
        assert_eq!(k.plain(user, password), 0, "{user} logs in");
        k
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// What a fetch of `orders` from offset 0 returned: its error code and
/// how many record bytes came with it.
fn fetch(k: &mut Kafka) -> Option<(i16, usize)> {
    use fetch_request::*;
    let req =
        FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(
            vec![FetchTopic::default().with_topic(topic("orders")).with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])],
        );
    let r: FetchResponse = k.call(ApiKey::Fetch, 12, &req)?;
    let p = &r.responses[0].partitions[0];
    Some((p.error_code, p.records.as_ref().map_or(0, |b| b.len())))
}

/// The topics a Metadata request for every topic lists.
fn listed(k: &mut Kafka) -> Option<Vec<String>> {
    let r: MetadataResponse = k.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None))?;
    Some(r.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.to_string())).collect())
}

type Ask = fn(&mut Kafka) -> Option<i16>;

/// One request of every kind that needs a permission, on topic `orders`
/// and group `g`, each giving the error code that answers it (None: the
/// connection was closed).
fn every_request() -> Vec<(&'static str, Ask)> {
    vec![
        ("Metadata", |k| {
            let req = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("orders"))),
            ]));
            let r: MetadataResponse = k.call(ApiKey::Metadata, 12, &req)?;
            Some(r.topics[0].error_code)
        }),
        ("Produce", |k| {
            use produce_request::*;
            let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
                TopicProduceData::default().with_name(topic("orders")).with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(one_record("from-kafka"))),
                ]),
            ]);
            let r: ProduceResponse = k.call(ApiKey::Produce, 9, &req)?;
            Some(r.responses[0].partition_responses[0].error_code)
        }),
        ("Fetch", |k| fetch(k).map(|(code, _)| code)),
        ("ListOffsets", |k| {
            use list_offsets_request::*;
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
            ]);
            let r: ListOffsetsResponse = k.call(ApiKey::ListOffsets, 7, &req)?;
            Some(r.topics[0].partitions[0].error_code)
        }),
        ("DescribeConfigs", |k| {
            use describe_configs_request::*;
            let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))]);
            let r: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, 4, &req)?;
            Some(r.results[0].error_code)
        }),
        ("IncrementalAlterConfigs", |k| {
            use incremental_alter_configs_request::*;
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("86400000")))])]);
            let r: IncrementalAlterConfigsResponse = k.call(ApiKey::IncrementalAlterConfigs, 1, &req)?;
            Some(r.responses[0].error_code)
        }),
        ("CreateTopics", |k| {
            use create_topics_request::*;
            let req = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
                .with_name(topic("bob-new"))
                .with_num_partitions(1)
                .with_replication_factor(-1)]);
            let r: CreateTopicsResponse = k.call(ApiKey::CreateTopics, 7, &req)?;
            Some(r.topics[0].error_code)
        }),
        ("DeleteTopics", |k| {
            let req = DeleteTopicsRequest::default().with_timeout_ms(5000).with_topic_names(vec![topic("orders")]);
            let r: DeleteTopicsResponse = k.call(ApiKey::DeleteTopics, 5, &req)?;
            Some(r.responses[0].error_code)
        }),
        ("DescribeCluster", |k| {
            let r: DescribeClusterResponse = k.call(ApiKey::DescribeCluster, 0, &DescribeClusterRequest::default())?;
            Some(r.error_code)
        }),
        ("InitProducerId", |k| {
            let r: InitProducerIdResponse = k.call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1),
            )?;
            Some(r.error_code)
        }),
        ("FindCoordinator", |k| {
            let req = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s("g")]);
            let r: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 4, &req)?;
            Some(r.coordinators[0].error_code)
        }),
        ("OffsetCommit", |k| {
            use offset_commit_request::*;
            let req = OffsetCommitRequest::default()
                .with_group_id(group("g"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_committed_offset(1)])]);
            let r: OffsetCommitResponse = k.call(ApiKey::OffsetCommit, 8, &req)?;
            Some(r.topics[0].partitions[0].error_code)
        }),
        ("OffsetFetch", |k| {
            let req = OffsetFetchRequest::default().with_group_id(group("g")).with_topics(None);
            let r: OffsetFetchResponse = k.call(ApiKey::OffsetFetch, 7, &req)?;
            Some(r.error_code)
        }),
        ("DescribeGroups", |k| {
            let req = DescribeGroupsRequest::default().with_groups(vec![group("g")]);
            let r: DescribeGroupsResponse = k.call(ApiKey::DescribeGroups, 5, &req)?;
            Some(r.groups[0].error_code)
        }),
        ("JoinGroup", |k| {
            let req = JoinGroupRequest::default()
                .with_group_id(group("g"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default().with_name(s("range"))]);
            let r: JoinGroupResponse = k.call(ApiKey::JoinGroup, 7, &req)?;
            Some(r.error_code)
        }),
        ("Heartbeat", |k| {
            let req =
                HeartbeatRequest::default().with_group_id(group("g")).with_generation_id(1).with_member_id(s("m"));
            let r: HeartbeatResponse = k.call(ApiKey::Heartbeat, 4, &req)?;
            Some(r.error_code)
        }),
        ("SyncGroup", |k| {
            let req =
                SyncGroupRequest::default().with_group_id(group("g")).with_generation_id(1).with_member_id(s("m"));
            let r: SyncGroupResponse = k.call(ApiKey::SyncGroup, 5, &req)?;
            Some(r.error_code)
        }),
        ("LeaveGroup", |k| {
            let req = LeaveGroupRequest::default()
                .with_group_id(group("g"))
                .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(s("m"))]);
            let r: LeaveGroupResponse = k.call(ApiKey::LeaveGroup, 5, &req)?;
            Some(r.error_code)
        }),
        ("ConsumerGroupHeartbeat", |k| {
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group("g848"))
                .with_member_id(s("m848"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![topic("orders")]))
                .with_topic_partitions(Some(vec![]));
            let r: ConsumerGroupHeartbeatResponse = k.call(ApiKey::ConsumerGroupHeartbeat, 0, &req)?;
            Some(r.error_code)
        }),
        ("DeleteGroups", |k| {
            let req = DeleteGroupsRequest::default().with_groups_names(vec![group("g")]);
            let r: DeleteGroupsResponse = k.call(ApiKey::DeleteGroups, 2, &req)?;
            Some(r.results[0].error_code)
        }),
    ]
}

fn acl(principal: &str, resource: ResourceType, pattern: Pattern, name: &str, operation: Operation) -> Acl {
    Acl { principal: principal.into(), resource, pattern, name: name.into(), operation, permission: Permission::Allow }
}

/// What a refused request must not have changed: `orders` holds its one
/// record, `bob-new` does not exist, group `g` has no offsets.
async fn unchanged(c: &TestCluster, admin: &Client) {
    assert_eq!(c.log("orders", 1).await.into_values().collect::<Vec<_>>(), ["first"]);
    assert!(admin.describe_topic("bob-new").await.is_err());
    let d = admin.describe_topic("orders").await.unwrap();
    assert!(!d.configs.iter().any(|(k, v)| k == "retention.ms" && v == "86400000"), "{:?}", d.configs);
    assert!(admin.committed_offsets("g", &[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_request_is_refused_without_credentials_or_acls_and_served_with_them() {
    let c = TestCluster::builder().kafka().flags(&["--auth", "token,sasl", "--auth-refresh", "200ms"]).start().await;
    let kafka = c.kafka_addrs[0].clone();
    let admin = c.client().await;
    admin.create_topic("orders", 1).await.unwrap();
    let producer = Producer::new(admin.clone(), "orders", ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new("first")).await.unwrap().await.unwrap();
    let bob = admin.create_token("bob", None).await.unwrap();

    // Before SASL, only ApiVersions and the SASL requests are answered:
    // anything else closes the connection.
    for (name, ask) in every_request() {
        let mut k = Kafka::connect(&kafka);
        let v: ApiVersionsResponse = k.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).unwrap();
        assert_eq!(v.error_code, 0);
        assert_eq!(ask(&mut k), None, "{name} before authenticating");
    }
    // A wrong password, an unknown user, a SCRAM-only mechanism name
    // misspelt: refused, and the connection serves nothing after.
    for (user, password) in [("bob", "silt_wrong"), ("mallory", bob.as_str()), ("", "")] {
        let mut k = Kafka::connect(&kafka);
        assert_eq!(k.plain(user, password), SASL_AUTHENTICATION_FAILED, "{user:?}");
        assert_eq!(listed(&mut k), None);
    }
    let mut k = Kafka::connect(&kafka);
    let hs: SaslHandshakeResponse =
        k.call(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(s("GSSAPI"))).unwrap();
    assert_eq!(hs.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert_eq!(
        hs.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    );

    // Bob, with no ACL: each request refused with its resource's code,
    // no topic listed, no record returned.
    let mut k = Kafka::as_user(&kafka, "bob", &bob);
    for (name, ask) in every_request() {
        let code = ask(&mut k).unwrap_or_else(|| panic!("{name}: connection closed"));
        assert!(REFUSALS[..3].contains(&code), "{name} without an ACL: {code}");
    }
    assert_eq!(listed(&mut k).unwrap(), Vec::<String>::new());
    assert_eq!(fetch(&mut k), Some((TOPIC_AUTHORIZATION_FAILED, 0)));
    let groups: ListGroupsResponse = k.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default()).unwrap();
    assert!(groups.groups.is_empty());
    admin.connect_coordinator("g").await.unwrap().reset_offsets("g", "orders", ResetTo::Latest).await.unwrap();
    let groups: ListGroupsResponse = k.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default()).unwrap();
    assert!(groups.groups.is_empty(), "a group bob may not describe is not listed");
    admin.delete_group("g").await.unwrap();
    unchanged(&c, &admin).await;

    // With the ACLs each needs, the same requests are served on the same
    // connection (within a refresh), except deleting `orders`.
    let grants = [
        (ResourceType::Topic, Pattern::Literal, "orders", Operation::Read),
        (ResourceType::Topic, Pattern::Literal, "orders", Operation::Write),
        (ResourceType::Topic, Pattern::Literal, "orders", Operation::Alter),
        (ResourceType::Topic, Pattern::Prefixed, "bob-", Operation::Create),
        (ResourceType::Group, Pattern::Literal, "g", Operation::Read),
        (ResourceType::Group, Pattern::Literal, "g848", Operation::Read),
        (ResourceType::Cluster, Pattern::Literal, CLUSTER, Operation::Describe),
    ];
    for (resource, pattern, name, op) in grants {
        admin.alter_acl(&acl("bob", resource, pattern, name, op), false).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(listed(&mut k).unwrap(), ["orders"]);
    for (name, ask) in every_request() {
        let code = ask(&mut k).unwrap_or_else(|| panic!("{name}: connection closed"));
        match name {
            "DeleteTopics" => assert_eq!(code, TOPIC_AUTHORIZATION_FAILED),
            // Deleting `g` needs Delete on it.
            "DeleteGroups" => assert_eq!(code, GROUP_AUTHORIZATION_FAILED),
            _ => assert!(!REFUSALS.contains(&code), "{name} with its ACL: {code}"),
        }
    }
    let (code, bytes) = fetch(&mut k).unwrap();
    assert!(code == 0 && bytes > 0, "{code} {bytes}");
    assert_eq!(c.log("orders", 1).await.into_values().collect::<Vec<_>>(), ["first", "from-kafka"]);
    assert!(admin.describe_topic("bob-new").await.is_ok());

    // Revoked: the live connection is refused within a refresh, and the
    // token no longer logs in.
    admin.revoke_token("bob").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let produce = every_request().into_iter().find(|(n, _)| *n == "Produce").unwrap().1;
    assert_eq!(produce(&mut k), Some(SASL_AUTHENTICATION_FAILED));
    assert_eq!(listed(&mut k).unwrap(), Vec::<String>::new());
    assert_eq!(Kafka::connect(&kafka).plain("bob", &bob), SASL_AUTHENTICATION_FAILED);
    assert_eq!(c.log("orders", 1).await.len(), 2);

    // Expired: carol's token logged in before, not after.
    let carol = admin.create_token("carol", Some(Duration::from_millis(1500))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = Kafka::as_user(&kafka, "carol", &carol);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(Kafka::connect(&kafka).plain("carol", &carol), SASL_AUTHENTICATION_FAILED);
}

fn kcat(kafka: &str, ca: &str, mechanism: &str, user: &str, password: &str) -> Command {
    let mut c = Command::new("kcat");
    c.args(["-b", kafka, "-X", "security.protocol=SASL_SSL", "-X"])
        .arg(format!("ssl.ca.location={ca}"))
        .args(["-X", &format!("sasl.mechanisms={mechanism}")])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_and_confluent_kafka_authenticate_with_scram_over_tls() {
    let c = TestCluster::builder().kafka().flags(&["--kafka-tls", "--auth", "token,sasl,mtls"]).start().await;
    let kafka = c.kafka_addrs[0].clone();
    let ca = c.ca().display().to_string();
    let admin = c.client().await;
    for t in ["orders", "secret"] {
        admin.create_topic(t, 1).await.unwrap();
    }
    let bob = admin.create_token("bob", None).await.unwrap();
    for (resource, name, op) in [
        (ResourceType::Topic, "orders", Operation::Write),
        (ResourceType::Topic, "orders", Operation::Read),
        (ResourceType::Group, "g", Operation::Read),
    ] {
        admin.alter_acl(&acl("bob", resource, Pattern::Literal, name, op), false).await.unwrap();
    }
    admin
        .alter_acl(&acl("carol", ResourceType::Topic, Pattern::Literal, "orders", Operation::Read), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // kcat, SCRAM-SHA-256 to write and SCRAM-SHA-512 to read.
    let mut p = kcat(&kafka, &ca, "SCRAM-SHA-256", "bob", &bob)
        .args(["-P", "-t", "orders", "-K:"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(b"a:1\nb:2\n").unwrap();
    assert!(p.wait().unwrap().success());
    let read =
        run(kcat(&kafka, &ca, "SCRAM-SHA-512", "bob", &bob).args(["-C", "-t", "orders", "-e", "-q", "-f", "%k=%s\n"]));
    assert_eq!(read, "a=1\nb=2\n");
    let listing = run(kcat(&kafka, &ca, "SCRAM-SHA-256", "bob", &bob).args(["-L", "-J"]));
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let names: Vec<&str> = listing["topics"].as_array().unwrap().iter().map(|t| t["topic"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders"], "secret is not listed");

    // A client certificate from the local CA names carol, who may read.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) =
        silt_agent::frontend::quic::tls::issue_client_cert(&c.dir.path().join("tls"), "carol", 1).unwrap();
    let (cert_file, key_file) = (certs.path().join("carol.pem"), certs.path().join("carol-key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let read = run(Command::new("kcat")
        .args(["-b", &kafka, "-C", "-t", "orders", "-e", "-q", "-f", "%k=%s\n", "-X", "security.protocol=ssl"])
        .args(["-X", &format!("ssl.ca.location={ca}")])
        .args(["-X", &format!("ssl.certificate.location={}", cert_file.display())])
        .args(["-X", &format!("ssl.key.location={}", key_file.display())]));
    assert_eq!(read, "a=1\nb=2\n");

    // Without credentials, or with a wrong password: no metadata.
    let anonymous = Command::new("kcat")
        .args(["-b", &kafka, "-L", "-m", "3", "-X", "security.protocol=ssl", "-X"])
        .arg(format!("ssl.ca.location={ca}"))
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    let wrong = kcat(&kafka, &ca, "SCRAM-SHA-256", "bob", "silt_wrong").args(["-L", "-m", "3"]).output().unwrap();
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("SCRAM: authentication failed"), "{said}");

    // confluent-kafka: an idempotent producer and a group member, over SCRAM-SHA-512.
    let sasl = format!("SCRAM-SHA-512:bob:{bob}");
    let out = run(confluent(&["produce", &kafka, "orders", "5"]).env("SILT_SASL", &sasl).env("SILT_CA", &ca));
    let report = &json_lines(&out)[0];
    assert_eq!(report["delivered"].as_array().unwrap().len(), 5, "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let out = run(confluent(&["consume", &kafka, "orders", "g", "2", "7"])
        .env("SILT_SASL", &sasl)
        .env("SILT_CA", &ca)
        .env("FIRST_WAIT_S", "20"));
    let values: Vec<String> = json_lines(&out)
        .iter()
        .filter_map(|l| l.get("record"))
        .map(|r| format!("{}={}", r[2].as_str().unwrap(), r[3].as_str().unwrap()))
        .collect();
    let want: Vec<String> =
        ["a=1", "b=2"].into_iter().map(String::from).chain((0..5).map(|i| format!("k{i}=v{i}"))).collect();
    assert_eq!(values, want);
    assert_eq!(admin.committed_offsets("g", &[]).await.unwrap().len(), 1);

    // A topic bob may not write: every record fails, none is stored.
    let out = run(confluent(&["produce", &kafka, "secret", "3"])
        .env("SILT_SASL", &sasl)
        .env("SILT_CA", &ca)
        .env("FLUSH_S", "20"));
    let report = &json_lines(&out)[0];
    assert!(report["delivered"].as_array().unwrap().is_empty(), "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.as_str().unwrap().contains("TOPIC_AUTHORIZATION_FAILED")),
        "{report}"
    );
    assert!(c.log("secret", 1).await.is_empty());
}
