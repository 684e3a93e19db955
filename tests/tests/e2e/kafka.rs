//! The Kafka listener, driven by real Kafka clients: kcat and
//! confluent-kafka (librdkafka, from Debian), kafka-python (PyPI), and raw
//! requests for what clients never send.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceResponse, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use silt_client::{Consumer, ConsumerConfig, Offset};

use crate::harness::cluster::TestCluster;
use crate::harness::repo_root;

pub(crate) fn script(name: &str) -> PathBuf {
    repo_root().join("tests/kafka").join(name)
}

/// Runs a program to its end, asserting it succeeded; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn confluent(args: &[&str]) -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script("confluent.py")).args(args);
    c
}

/// The JSON lines a script printed.
pub(crate) fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A record as every client here sees it: partition, offset, key, value, headers.
type Seen = (u32, i64, String, String, Vec<(String, String)>);

/// Every record of `topic` read with silt's own consumer.
async fn read_with_silt(c: &TestCluster, topic: &str, partitions: u32, total: usize) -> Vec<Seen> {
    let consumer = Consumer::new(c.client().await, topic, ConsumerConfig::default()).await.unwrap();
    let all: Vec<_> = (0..partitions).map(|p| (p, Offset::Earliest)).collect();
    let mut stream = consumer.stream(&all).await.unwrap();
    let mut out = Vec::new();
    while out.len() < total {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
        let headers =
            r.headers.iter().map(|h| (h.name.clone(), String::from_utf8(h.value.to_vec()).unwrap())).collect();
        out.push((r.partition, r.offset, text(r.key), text(r.value), headers));
    }
    out.sort();
    out
}

/// Checks that records keyed k0..k{n-1} with values v<i> are each there
/// once, each partition's offsets dense from 0 and its keys in send order.
fn check_exactly_once(records: &[Seen], n: usize) {
    let mut keys = BTreeSet::new();
    let mut by_partition: BTreeMap<u32, Vec<(i64, usize)>> = BTreeMap::new();
    for (p, o, k, v, _) in records {
        let i: usize = k.strip_prefix('k').unwrap().parse().unwrap();
        assert_eq!(*v, format!("v{i}"), "the value of {k}");
        assert!(keys.insert(i), "{k} twice");
        by_partition.entry(*p).or_default().push((*o, i));
    }
    assert_eq!(keys.len(), n, "every record, none missing");
    for (p, mut rs) in by_partition {
        rs.sort();
        let offsets: Vec<i64> = rs.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (0..rs.len() as i64).collect::<Vec<_>>(), "partition {p}'s offsets");
        assert!(rs.windows(2).all(|w| w[0].1 < w[1].1), "partition {p} keeps the send order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_produces_and_consumes_and_silt_reads_the_same_bytes() {
    let c = TestCluster::builder().kafka().start().await;
    let kafka = c.kafka_addrs[0].clone();
    let client = c.client().await;
    client.create_topic("events", 3).await.unwrap();

    let listing = run(Command::new("kcat").args(["-b", &kafka, "-L", "-t", "events"]));
    assert!(listing.contains(&format!("at {kafka} (controller)")), "{listing}");
    assert!(listing.contains("topic \"events\" with 3 partitions"), "{listing}");

    let lines: String = (0..30).map(|i| format!("k{i}:v{i}\n")).collect();
    let mut kcat = Command::new("kcat")
        .args(["-b", &kafka, "-P", "-t", "events", "-K:", "-H", "trace=abc", "-H", "empty="])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    kcat.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(kcat.wait().unwrap().success());

    let consumed = run(Command::new("kcat").args([
        "-b",
        &kafka,
        "-C",
        "-t",
        "events",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p\t%o\t%k\t%s\t%h\t%T\n",
    ]));
    let mut from_kcat: Vec<Seen> = Vec::new();
    let mut stamps = BTreeMap::new();
    for line in consumed.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "{line}");
        let headers = f[4].split(',').map(|h| h.split_once('=').unwrap()).map(|(a, b)| (a.into(), b.into())).collect();
        let (p, o) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        stamps.insert((p, o), f[5].parse::<i64>().unwrap());
        from_kcat.push((p, o, f[2].into(), f[3].into(), headers));
    }
    from_kcat.sort();
    check_exactly_once(&from_kcat, 30);
    assert!(from_kcat.iter().all(|r| r.4 == [("trace".to_string(), "abc".to_string()), ("empty".into(), "".into())]));

    // silt's consumer reads the same records, timestamps included.
    let from_silt = read_with_silt(&c, "events", 3, 30).await;
    assert_eq!(from_silt, from_kcat);
    let consumer = Consumer::new(client.clone(), "events", ConsumerConfig::default()).await.unwrap();
    let mut stream = consumer.stream(&[(0, Offset::Earliest)]).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(stamps[&(0, 0)], first.timestamp);

    // zstd batches are stored as they came; both sides read them.
    client.create_topic("packed", 1).await.unwrap();
    let mut kcat = Command::new("kcat")
        .args(["-b", &kafka, "-P", "-t", "packed", "-K:", "-X", "compression.codec=zstd", "-X", "linger.ms=50"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    kcat.stdin
        .take()
        .unwrap()
        .write_all(
            b"a:1
b:2
c:3
",
        )
        .unwrap();
    assert!(kcat.wait().unwrap().success());
    let packed = read_with_silt(&c, "packed", 1, 3).await;
    let kv: Vec<(String, String)> = packed.iter().map(|r| (r.2.clone(), r.3.clone())).collect();
    assert_eq!(kv, [("a".into(), "1".into()), ("b".into(), "2".into()), ("c".into(), "3".into())]);
    let again = run(Command::new("kcat").args(["-b", &kafka, "-C", "-t", "packed", "-e", "-q", "-f", "%k=%s\n"]));
    assert_eq!(again, "a=1\nb=2\nc=3\n");

    // And the other way: `silt produce`, read with kcat.
    c.agent(0).ok(
        &["produce", "events", "--partition", "1", "--key-separator", ":"],
        Some(b"a:from silt\nb:\xc3\xa9t\xc3\xa9\n"),
    );
    let tail = run(Command::new("kcat")
        .args(["-b", &kafka, "-C", "-t", "events", "-p", "1", "-o", "-2", "-e", "-q", "-f", "%k=%s\n"]));
    assert_eq!(tail, "a=from silt\nb=été\n");
}

pub(crate) fn request<M: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &M) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw")))
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.to_vec()
}

/// A Kafka record batch (v2, uncompressed) holding one record with `value`.
pub(crate) fn one_record(value: &str) -> Bytes {
    use kafka_protocol::records::*;
    let r = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, [&r], &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    buf.freeze()
}

/// Reads one response: its correlation id and body (after the header).
pub(crate) fn response(s: &mut TcpStream, api: ApiKey, version: i16) -> (i32, Bytes) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    let cid = body.get_i32();
    if api.response_header_version(version) >= 1 {
        assert_eq!(body.get_u8(), 0, "no tagged fields");
    }
    (cid, body)
}

/// Whether the agent closed the connection without writing anything.
pub(crate) fn closed_silently(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf), Ok(0))
        || matches!(s.read(&mut buf), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_or_close_only_their_connection() {
    let c = TestCluster::builder().kafka().start().await;
    let kafka = c.kafka_addrs[0].clone();
    c.client().await.create_topic("t", 1).await.unwrap();
    let connect = || {
        let s = TcpStream::connect(&kafka).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };

    // An ApiVersions version from the future: the error, in version 0, with what is offered.
    let mut s = connect();
    s.write_all(&request(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default())[..]).unwrap();
    let mut future = request(ApiKey::ApiVersions, 0, 2, &ApiVersionsRequest::default());
    future[7] = 99; // the version's low byte
    s.write_all(&future).unwrap();
    let (cid, mut body) = response(&mut s, ApiKey::ApiVersions, 0);
    let offered = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!((cid, offered.error_code), (1, 0));
    let produce = offered.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 12));
    let (cid, mut body) = response(&mut s, ApiKey::ApiVersions, 0);
    let refused = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!((cid, refused.error_code, refused.api_keys.len()), (2, 35, offered.api_keys.len()));

    // Unknown topics get UNKNOWN_TOPIC_OR_PARTITION, and the connection carries on.
    let unknown = MetadataRequest::default()
        .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("nope"))))]));
    s.write_all(&request(ApiKey::Metadata, 9, 3, &unknown)).unwrap();
    let (cid, mut body) = response(&mut s, ApiKey::Metadata, 9);
    let m = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!((cid, m.topics[0].error_code), (3, 3));
    let records = one_record("x");
    let produce_to = |topic: &'static str, records: Bytes| {
        use kafka_protocol::messages::produce_request::*;
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])])
    };
    s.write_all(&request(ApiKey::Produce, 7, 4, &produce_to("nope", records.clone()))).unwrap();
    let (_, mut body) = response(&mut s, ApiKey::Produce, 7);
    let p = ProduceResponse::decode(&mut body, 7).unwrap();
    assert_eq!(p.responses[0].partition_responses[0].error_code, 3);

    // A damaged batch is refused by its CRC and nothing is written.
    let mut damaged = records.to_vec();
    *damaged.last_mut().unwrap() ^= 1;
    s.write_all(&request(ApiKey::Produce, 7, 5, &produce_to("t", Bytes::from(damaged)))).unwrap();
    let (_, mut body) = response(&mut s, ApiKey::Produce, 7);
    let p = ProduceResponse::decode(&mut body, 7).unwrap();
    assert_eq!(p.responses[0].partition_responses[0].error_code, 2, "CORRUPT_MESSAGE");
    s.write_all(&request(ApiKey::Produce, 7, 6, &produce_to("t", records.clone()))).unwrap();
    let (_, mut body) = response(&mut s, ApiKey::Produce, 7);
    let p = ProduceResponse::decode(&mut body, 7).unwrap();
    assert_eq!(
        (p.responses[0].partition_responses[0].error_code, p.responses[0].partition_responses[0].base_offset),
        (0, 0)
    );

    // Fetching past the end, or below the log start, is OFFSET_OUT_OF_RANGE.
    let fetch_at = |offset: i64| {
        use kafka_protocol::messages::fetch_request::*;
        kafka_protocol::messages::FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])])
    };
    for (offset, want) in [(99, 1), (-1, 1), (0, 0)] {
        s.write_all(&request(ApiKey::Fetch, 11, 9, &fetch_at(offset))).unwrap();
        let (_, mut body) = response(&mut s, ApiKey::Fetch, 11);
        let f = kafka_protocol::messages::FetchResponse::decode(&mut body, 11).unwrap();
        let p = &f.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (want, 1), "fetch at {offset}");
        if want == 0 {
            let mut records = p.records.clone().unwrap();
            let batch = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
            assert_eq!(batch.records[0].value.as_deref(), Some(&b"x"[..]));
        }
    }

    // A request declaring more than the limit is refused by its size alone.
    let mut s = connect();
    s.write_all(&0x7fff_ffffi32.to_be_bytes()).unwrap();
    assert!(closed_silently(&mut s));
    // A request that does not decode closes its connection, answering nothing.
    let mut s = connect();
    let mut garbage = request(ApiKey::Metadata, 9, 7, &MetadataRequest::default());
    garbage.truncate(14);
    garbage[..4].copy_from_slice(&10i32.to_be_bytes());
    s.write_all(&garbage).unwrap();
    assert!(closed_silently(&mut s));
    // An API not offered is answered UNSUPPORTED_VERSION (35), at the top
    // or for each partition named, and the connection carries on.
    let mut s = connect();
    let delete = kafka_protocol::messages::DeleteRecordsRequest::default().with_topics(vec![
        kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(1)]),
    ]);
    s.write_all(&request(ApiKey::DeleteRecords, 2, 31, &delete)).unwrap();
    let (cid, mut body) = response(&mut s, ApiKey::DeleteRecords, 2);
    let r = kafka_protocol::messages::DeleteRecordsResponse::decode(&mut body, 2).unwrap();
    let p = &r.topics[0].partitions[0];
    assert_eq!((cid, r.topics[0].name.as_str(), p.partition_index, p.error_code), (31, "t", 0, 35));
    let sasl =
        kafka_protocol::messages::SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    s.write_all(&request(ApiKey::SaslHandshake, 1, 32, &sasl)).unwrap();
    let (cid, mut body) = response(&mut s, ApiKey::SaslHandshake, 1);
    let r = kafka_protocol::messages::SaslHandshakeResponse::decode(&mut body, 1).unwrap();
    // SASL on a listener without it: no mechanism to offer.
    assert_eq!((cid, r.error_code, r.mechanisms.len()), (32, 33, 0));
    s.write_all(&request(ApiKey::ApiVersions, 3, 33, &ApiVersionsRequest::default())).unwrap();
    assert_eq!(response(&mut s, ApiKey::ApiVersions, 3).0, 33);
    // One that does not decode still closes only its connection.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 10, 0, 21, 0, 0, 0, 0, 0, 9, 0xff, 0xff]).unwrap();
    assert!(closed_silently(&mut s));
    // So does an API only brokers send one another.
    let mut s = connect();
    let vote = kafka_protocol::messages::VoteRequest::default();
    s.write_all(&request(ApiKey::Vote, 0, 34, &vote)).unwrap();
    assert!(closed_silently(&mut s));

    // Nothing of that was written; the listener still serves.
    assert_eq!(c.log("t", 1).await.into_values().collect::<Vec<_>>(), ["x"]);
    let mut s = connect();
    s.write_all(&request(ApiKey::ApiVersions, 3, 8, &ApiVersionsRequest::default())).unwrap();
    assert_eq!(response(&mut s, ApiKey::ApiVersions, 3).0, 8);
}

/// Starts a confluent-kafka group member that reads until `idle_s` pass with nothing new.
fn member(kafka: &str, topic: &str, group: &str, idle_s: &str) -> Child {
    confluent(&["consume", kafka, topic, group, idle_s]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn member_output(child: Child) -> Vec<Seen> {
    let out = child.wait_with_output().unwrap();
    json_lines(&String::from_utf8_lossy(&out.stdout)).iter().filter_map(seen_of).collect()
}

fn seen_of(v: &serde_json::Value) -> Option<Seen> {
    let r = v.get("record")?.as_array()?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let headers = r[4].as_array()?.iter().map(|h| Some((text(&h[0])?, text(&h[1])?))).collect::<Option<_>>()?;
    Some((r[0].as_u64()? as u32, r[1].as_i64()?, text(&r[2])?, text(&r[3])?, headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_idempotent_producer_and_a_group_of_three_that_loses_a_member() {
    let c = TestCluster::builder().kafka().start().await;
    let kafka = c.kafka_addrs[0].clone();
    let client = c.client().await;
    client.create_topic("six", 6).await.unwrap();

    // Three members join before anything is written.
    let mut members: Vec<Child> = (0..3).map(|_| member(&kafka, "six", "g", "12")).collect();
    TestCluster::wait_for("three members, settled", Duration::from_secs(30), || async {
        let g = client.describe_group("g").await;
        g.is_ok_and(|g| {
            let held = |m: &silt_wire::MemberInfo| m.assigned.iter().map(|t| t.partitions.len()).sum::<usize>();
            g.members.len() == 3 && g.state == "Stable" && g.members.iter().all(|m| held(m) == 2)
        })
    })
    .await;

    let produced = run(&mut confluent(&["produce", &kafka, "six", "600"]));
    let report = &json_lines(&produced)[0];
    assert_eq!(report.get("errors").unwrap().as_array().unwrap().len(), 0, "{produced}");
    assert_eq!(report.get("delivered").unwrap().as_array().unwrap().len(), 600);

    // One member dies; the other two take its partitions over.
    TestCluster::wait_for("some commits", Duration::from_secs(30), || async {
        client.describe_group("g").await.is_ok_and(|g| g.partitions.iter().all(|p| p.committed > 10))
    })
    .await;
    let mut killed = members.remove(0);
    killed.kill().unwrap();
    let from_killed = member_output(killed);
    let produced = run(&mut confluent(&["produce", &kafka, "six", "300"]));
    assert_eq!(json_lines(&produced)[0].get("errors").unwrap().as_array().unwrap().len(), 0, "{produced}");
    let mut seen: Vec<Seen> = members.into_iter().flat_map(member_output).collect();
    seen.extend(from_killed);
    seen.sort();
    seen.dedup(); // the killed member's last record may be read again by its successor
    let all = read_with_silt(&c, "six", 6, 900).await;
    assert_eq!(seen.len(), 900);
    // The second run's keys restart at k0: compare as (partition, offset) -> record.
    assert_eq!(seen, all, "the group read every record once, as silt stored it");
    for (_, _, k, _, h) in &all {
        assert_eq!(h, &[("h".to_string(), k[1..].to_string())]);
    }

    // The offsets they committed are the group's, as silt shows them.
    let described = String::from_utf8(c.agent(0).ok(&["group", "describe", "g"], None)).unwrap();
    let d = client.describe_group("g").await.unwrap();
    for p in &d.partitions {
        assert_eq!(p.committed, p.log_end, "{described}");
    }
    assert!(described.contains("six"), "{described}");
}

fn kafka_python(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(script("kafka_python.py")).args(args);
    c
}

/// The records a producer script says were delivered, as (partition, offset, key).
fn delivered(out: &str) -> Vec<(u32, i64, String)> {
    let report = &json_lines(out)[0];
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{out}");
    report["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_u64().unwrap() as u32, d[1].as_i64().unwrap(), d[2].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_gzip_and_a_group_of_two_reads_every_record_and_commits() {
    let c = TestCluster::builder().kafka().start().await;
    let kafka = c.kafka_addrs[0].clone();
    let client = c.client().await;
    client.create_topic("kp", 4).await.unwrap();
    let sent = delivered(&run(&mut kafka_python(&["produce", &kafka, "kp", "200", "gzip"])));
    assert_eq!(sent.len(), 200);

    // What silt stored is what kafka-python was told, byte for byte.
    let stored = read_with_silt(&c, "kp", 4, 200).await;
    check_exactly_once(&stored, 200);
    let mut told: Vec<(u32, i64, String)> = stored.iter().map(|r| (r.0, r.1, r.2.clone())).collect();
    told.sort();
    let mut sent_sorted = sent.clone();
    sent_sorted.sort();
    assert_eq!(told, sent_sorted);

    // The second member may find nothing left to read: it waits 10 s for a first record.
    let spawn = || {
        kafka_python(&["consume", &kafka, "kp", "gp", "5"])
            .env("FIRST_WAIT_S", "10")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut seen: Vec<Seen> = member_output(a);
    seen.extend(member_output(b));
    seen.sort();
    seen.dedup();
    assert_eq!(seen, stored);
    let d = client.describe_group("gp").await.unwrap();
    assert!(d.partitions.iter().all(|p| p.committed == p.log_end), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bootstrapped_from_one_agent_follows_leaders_and_outlives_an_agent() {
    let mut c = TestCluster::builder().agents(3).kafka().start().await;
    let client = c.client().await;
    client.create_topic("spread", 6).await.unwrap();
    c.wait_even("spread", "partitions spread over three agents").await;

    // The producer knows agent 0 only; partitions are led by all three.
    let producer = confluent(&["produce", &c.kafka_addrs[0], "spread", "600", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill9(2);
    let out = tokio::task::block_in_place(|| producer.wait_with_output().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = delivered(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(sent.len(), 600, "every record delivered despite the lost agent");
    assert!(sent.iter().map(|d| d.0).collect::<BTreeSet<_>>().len() == 6);

    // Read through Kafka from agent 1 (silt's reader agrees): each record once.
    let stored = read_with_silt(&c, "spread", 6, 600).await;
    check_exactly_once(&stored, 600);
    let consumed = run(Command::new("kcat").args([
        "-b",
        &c.kafka_addrs[1],
        "-C",
        "-t",
        "spread",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p\t%o\t%k\n",
    ]));
    let mut via_kafka: Vec<(u32, i64, String)> = consumed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect();
    via_kafka.sort();
    let want: Vec<(u32, i64, String)> = stored.iter().map(|r| (r.0, r.1, r.2.clone())).collect();
    assert_eq!(via_kafka, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_over_tls_trusts_the_agents_certificate() {
    let c = TestCluster::builder().kafka().flags(&["--kafka-tls"]).start().await;
    let kafka = c.kafka_addrs[0].clone();
    c.client().await.create_topic("tls", 1).await.unwrap();
    let ca = c.ca().display().to_string();
    let tls = ["-X", "security.protocol=ssl", "-X"];
    let ca_flag = format!("ssl.ca.location={ca}");
    let mut kcat = Command::new("kcat")
        .args(["-b", &kafka, "-P", "-t", "tls", "-K:"])
        .args(tls)
        .arg(&ca_flag)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    kcat.stdin.take().unwrap().write_all(b"k:secret\n").unwrap();
    assert!(kcat.wait().unwrap().success());
    let read = run(Command::new("kcat")
        .args(["-b", &kafka, "-C", "-t", "tls", "-e", "-q", "-f", "%k=%s\n"])
        .args(tls)
        .arg(&ca_flag));
    assert_eq!(read, "k=secret\n");
    // Plain TCP to a TLS listener gets no metadata.
    let plain = Command::new("kcat").args(["-b", &kafka, "-L", "-m", "2"]).output().unwrap();
    assert!(!plain.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_holds_a_silt_consumer_a_classic_and_a_kip_848_kafka_consumer() {
    let c = TestCluster::builder().kafka().start().await;
    let kafka = c.kafka_addrs[0].clone();
    let client = c.client().await;
    client.create_topic("mix", 6).await.unwrap();

    // silt's own consumer (QUIC), then librdkafka classic (Debian's), then
    // librdkafka with group.protocol=consumer (PyPI's, KIP-848).
    let agent = c.agent(0);
    let silt = Command::new(crate::harness::silt_bin())
        .args(["consume", "mix", "--group", "mix", "--from-beginning", "--print-key", "--print-offset"])
        .env("SILT_AGENT", &agent.addr)
        .env("SILT_CA", c.ca())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let classic = member(&kafka, "mix", "mix", "8");
    let kip848 = Command::new("python3")
        .arg(script("confluent.py"))
        .args(["consume", &kafka, "mix", "mix", "8"])
        .env("GROUP_PROTOCOL", "consumer")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    TestCluster::wait_for("three members of three kinds, two partitions each", Duration::from_secs(40), || async {
        client.describe_group("mix").await.is_ok_and(|g| {
            let held = |m: &silt_wire::MemberInfo| m.assigned.iter().map(|t| t.partitions.len()).sum::<usize>();
            g.members.len() == 3 && g.state == "Stable" && g.members.iter().all(|m| held(m) == 2)
        })
    })
    .await;

    let sent = delivered(&run(&mut confluent(&["produce", &kafka, "mix", "600"])));
    assert_eq!(sent.len(), 600);
    let mut seen: Vec<Seen> = member_output(classic);
    let from_classic = seen.len();
    let from_848 = member_output(kip848);
    seen.extend(from_848.iter().cloned());
    // silt's consumer printed partition:offset, key and value, tab-separated.
    terminate(&silt);
    let out = silt.wait_with_output().unwrap();
    let from_silt: Vec<Seen> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let (p, o) = f[0].split_once(':').unwrap();
            let i = &f[1][1..];
            (p.parse().unwrap(), o.parse().unwrap(), f[1].to_string(), f[2].to_string(), vec![("h".into(), i.into())])
        })
        .collect();
    assert!(from_classic > 0 && !from_848.is_empty() && !from_silt.is_empty(), "each kind read its share");
    seen.extend(from_silt);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, read_with_silt(&c, "mix", 6, 600).await);
}

/// Asks a child process to stop (SIGTERM), as Ctrl-C would.
fn terminate(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_admin_creates_describes_and_deletes_topics_and_finds_offsets_by_time() {
    let c = TestCluster::builder().kafka().start().await;
    let out = run(&mut kafka_python(&["admin", &c.kafka_addrs[0], "adm", "gadm"]));
    let v = &json_lines(&out)[0];
    assert_eq!(v["second_create"], "TopicAlreadyExistsError", "{out}");
    assert_eq!(v["configs"]["retention.ms"], "3600000", "{out}");
    assert_eq!((&v["altered"], v["brokers"].as_i64()), (&serde_json::json!("7200000"), Some(1)), "{out}");
    assert_eq!(v["groups_after_delete"].as_array().unwrap().len(), 0, "{out}");
    // Records stamped 1000, 2000, 3000, 4000 at offsets 0..3.
    assert_eq!((v["offset_for_2500"].as_i64(), v["offset_for_9000"].as_i64()), (Some(2), None), "{out}");
    assert_eq!((v["beginning"].as_i64(), v["end"].as_i64()), (Some(0), Some(4)), "{out}");
    assert_eq!((v["committed"].as_i64(), v["position_after_seek"].as_i64()), (Some(3), Some(3)), "{out}");
    assert!(v["groups"].as_array().unwrap().iter().any(|g| g == "gadm"), "{out}");
    assert_eq!(v["topics_after_delete"].as_array().unwrap().len(), 0, "{out}");
    let topics = c.client().await.list_topics().await.unwrap();
    assert!(!topics.contains(&"adm".to_string()), "{topics:?}");
}
