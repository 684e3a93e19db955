//! silt on real S3-compatible servers (SeaweedFS and LocalStack) on
//! 127.0.0.1, started by the tests through `localstack/start`.

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use silt_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};

use crate::harness::*;

fn bucket_store(s3: &S3Server) -> impl ObjectStore {
    s3.store()
}

fn start_agent(s3: &S3Server, data: &std::path::Path, addr: &str, prefix: &str) -> AgentProcess {
    start_agent_with(s3, data, addr, prefix, &[])
}

fn start_agent_with(s3: &S3Server, data: &std::path::Path, addr: &str, prefix: &str, more: &[&str]) -> AgentProcess {
    let flags = s3.agent_flags(prefix);
    let flags: Vec<&str> = flags.iter().map(String::as_str).chain(more.iter().copied()).collect();
    AgentProcess::start_with_env(data, addr, &flags, &s3.aws_env())
}

async fn round_trip(kind: &'static str) {
    let s3 = tokio::task::spawn_blocking(move || S3Server::start(kind)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut agent = start_agent(&s3, &data, &addr, "rt");
    agent.ok(&["topic", "create", "s3t", "--partitions", "3"], None);
    agent.ok(&["produce", "s3t"], Some(&seq(5000)));
    let before = agent.ok(&["consume", "s3t", "--from-beginning", "--max-messages", "5000", "--print-offset"], None);
    let records = parse_offsets(&before);
    assert_eq!(records.iter().map(|r| r.2.parse::<u64>().unwrap()).collect::<BTreeSet<_>>(), (1..=5000).collect());

    // The objects are in the bucket, under the prefix, and cannot be overwritten.
    let store = bucket_store(&s3);
    let objects: Vec<_> = store.list(Some(&ObjectPath::from("rt/data"))).try_collect().await.unwrap();
    assert!(!objects.is_empty(), "no objects under rt/data in {kind}");
    assert!(objects.iter().all(|o| o.location.as_ref().ends_with(".silt")));
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    let again = store.put_opts(&objects[0].location, PutPayload::from_static(b"x"), opts).await;
    assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{kind} allowed an overwrite: {again:?}");

    // kill -9 and restart: everything is read back from the bucket.
    agent.kill9();
    drop(agent);
    let agent = start_agent(&s3, &data, &addr, "rt");
    let after = agent.ok(&["consume", "s3t", "--from-beginning", "--max-messages", "5000", "--print-offset"], None);
    let sorted = |b: &[u8]| parse_offsets(b).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&before), sorted(&after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_seaweedfs() {
    round_trip("seaweedfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_localstack() {
    round_trip("localstack").await;
}

/// Runs `silt agent` with `flags`; it must exit non-zero within a minute.
/// Returns its stderr.
fn failed_start(data: &std::path::Path, flags: &[String], env: &[(String, String)]) -> String {
    let mut child = std::process::Command::new(silt_bin())
        .args(["agent", "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(flags)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("silt agent {flags:?} was still running after 60s; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{flags:?} should stop start-up");
    err
}

#[test]
fn bad_s3_settings_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let s3 = S3Server::start("seaweedfs");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let flags = ["--object-store", "s3://segments/x", "--s3-endpoint", &nowhere].map(String::from);
    let err = failed_start(&data, &flags, &s3.aws_env());
    assert!(err.contains(&nowhere), "wrong endpoint: {err}");

    let mut wrong = s3.aws_env();
    for (k, v) in wrong.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let err = failed_start(&data, &s3.agent_flags("x"), &wrong);
    assert!(err.contains("credentials"), "bad credentials: {err}");

    let err = failed_start(&data, &["--object-store".into(), "s3://".into()], &s3.aws_env());
    assert!(err.contains("--object-store"), "no bucket: {err}");
    // No credentials at all: refused before any request is made.
    let err = failed_start(&data, &s3.agent_flags("x"), &[]);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "no credentials: {err}");
    drop(s3);

    // SeaweedFS creates buckets on first write; LocalStack, like S3, does not.
    let s3 = S3Server::start("localstack");
    let flags = ["--object-store", "s3://no-such-bucket/x", "--s3-endpoint", &s3.endpoint].map(String::from);
    let err = failed_start(&data, &flags, &s3.aws_env());
    assert!(err.contains("no-such-bucket"), "missing bucket: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_is_never_acknowledged_and_heals_by_itself() {
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("seaweedfs")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = start_agent(&s3, &data, &addr, "outage");
    agent.ok(&["topic", "create", "o"], None);
    let config = ClientConfig { agent: addr.clone(), ca: Some(agent.ca.clone()), ..Default::default() };
    let client = Client::connect(config).await.unwrap();
    let producer = Producer::new(client.clone(), "o", ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new("a")).await.unwrap().await.unwrap();

    s3.stop();
    let b = producer.send(ProducerRecord::new("b")).await.unwrap().into_future();
    tokio::pin!(b);
    assert!(tokio::time::timeout(Duration::from_secs(3), &mut b).await.is_err(), "acknowledged while S3 was down");

    let s3 = tokio::task::spawn_blocking(move || s3.restart()).await.unwrap();
    let started = Instant::now();
    let meta = tokio::time::timeout(Duration::from_secs(45), b).await.expect("the agent carried on").unwrap();
    assert_eq!(meta.offset, 1);
    eprintln!("recovered {:?} after S3 came back", started.elapsed());
    let out = agent.ok(&["consume", "o", "--from-beginning", "--max-messages", "2"], None);
    assert_eq!(out, b"a\nb\n");
    drop(s3);
}

/// Flips one byte of an object in the bucket: reads report corruption and
/// never return the damaged batch's records. (The agent signs its PUTs'
/// SHA-256 here, `--s3-checksum sha256`; the other tests use the default
/// CRC-64.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_in_s3_is_reported_never_returned() {
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("seaweedfs")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let signed = ["--s3-checksum", "sha256"];
    let mut agent = start_agent_with(&s3, &data, &addr, "corrupt", &signed);
    agent.ok(&["topic", "create", "c"], None);
    agent.ok(&["produce", "c"], Some(&seq(2000)));
    assert!(agent.terminate().success());

    let store = bucket_store(&s3);
    let objects: Vec<_> = store.list(Some(&ObjectPath::from("corrupt/data"))).try_collect().await.unwrap();
    let first = objects.iter().min_by_key(|o| o.location.to_string()).unwrap().location.clone();
    let mut bytes = object_store::ObjectStoreExt::get(&store, &first).await.unwrap().bytes().await.unwrap().to_vec();
    let entries = silt_agent::format::object::read_footer(&bytes).unwrap();
    bytes[entries[0].start as usize + 20] ^= 0x01;
    object_store::ObjectStoreExt::put(&store, &first, PutPayload::from(bytes)).await.unwrap();

    drop(agent);
    let agent = start_agent_with(&s3, &data, &addr, "corrupt", &signed);
    let out = agent.cli(&["consume", "c", "--from-beginning", "--max-messages", "2000"]);
    assert!(!out.status.success(), "reading a corrupted object must fail");
    assert!(stderr(&out).contains("CRC mismatch"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "records of the damaged batch were returned");
}
