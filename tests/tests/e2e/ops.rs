//! Operating an agent: `/metrics` scraped and parsed by the Prometheus
//! project's own text parser, `/healthz` and `/readyz` against a real S3
//! server that goes away and comes back, the `--config` file, and the
//! Grafana dashboard checked against what the agent exports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// One HTTP GET: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// A scrape, parsed: every sample as (name with its labels) -> value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
    /// Names a dashboard may use: every sample name, and each family's.
    names: BTreeSet<String>,
}

impl Scrape {
    fn take(addr: &str) -> Scrape {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/ops/parse_metrics.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the Prometheus parser refused the scrape: {}\n{text}", stderr(&out));
        let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut samples = BTreeMap::new();
        let mut names: BTreeSet<String> = parsed["families"].as_object().unwrap().keys().cloned().collect();
        for s in parsed["samples"].as_array().unwrap() {
            let name = s[0].as_str().unwrap().to_string();
            let labels: Vec<String> =
                s[1].as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
            samples.insert(format!("{name}{{{}}}", labels.join(",")), s[2].as_f64().unwrap());
            names.insert(name);
        }
        // Families with no sample yet still declare their names.
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
        }
        Scrape { text, samples, names }
    }

    fn value(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

#[test]
fn metrics_move_by_what_a_produce_and_a_consume_did() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let agent = AgentProcess::start(&dir.path().join("a"), &["--metrics-listen", &metrics, "--flush-interval", "50ms"]);
    agent.ok(&["topic", "create", "orders", "--partitions", "2"], None);
    let before = Scrape::take(&metrics);
    assert_eq!(before.value("silt_produced_records_total{topic=orders}"), 0.0);

    let n = 1000u64;
    let input = seq(n);
    agent.ok(&["produce", "orders"], Some(&input));
    let out = agent.ok(&["consume", "orders", "--from-beginning", "--max-messages", &n.to_string()], None);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count() as u64, n);
    let after = Scrape::take(&metrics);

    let moved = |key: &str| after.value(key) - before.value(key);
    assert_eq!(moved("silt_produced_records_total{topic=orders}"), n as f64, "{}", after.text);
    assert_eq!(moved("silt_committed_records_total{}"), n as f64);
    assert_eq!(moved("silt_fetched_records_total{topic=orders}"), n as f64);
    // Batch bytes: the records' values and their framing.
    let produced = moved("silt_produced_bytes_total{topic=orders}");
    assert!(produced >= input.len() as f64 - n as f64, "{produced} bytes for {} bytes of lines", input.len());
    assert_eq!(moved("silt_fetched_bytes_total{topic=orders}"), produced);
    let batches = moved("silt_produced_batches_total{}");
    assert!(batches >= 1.0);
    assert_eq!(moved("silt_produce_latency_seconds_count{acks=durable}"), batches);
    let flushes = moved("silt_objects_written_total{}");
    assert!(flushes >= 1.0);
    assert_eq!(moved("silt_flush_size_bytes_count{}"), flushes);
    assert_eq!(moved("silt_flush_duration_seconds_count{}"), flushes);
    assert!(moved("silt_object_request_duration_seconds_count{op=put}") >= flushes);
    assert!(moved("silt_metadata_transaction_duration_seconds_count{}") >= flushes);
    assert!(moved("silt_requests_total{frontend=quic,request=produce}") >= batches);
    assert!(moved("silt_requests_total{frontend=quic,request=fetch}") >= 1.0);
    assert_eq!(after.value("silt_owned_partitions{}"), 2.0 + 32.0, "two partitions and the group slots");
    assert_eq!(after.value("silt_session_live{}"), 1.0);
    assert_eq!(after.value("silt_inflight_bytes{}"), 0.0);
    assert_eq!(after.value("silt_object_request_errors_total{op=put}"), 0.0);
    assert!(after.value("silt_lease_renewals_total{}") >= 1.0);

    // `silt stats` reads the same counters.
    let stats = String::from_utf8(agent.ok(&["stats"], None)).unwrap();
    let stat =
        |k: &str| -> f64 { stats.lines().find_map(|l| l.strip_prefix(&format!("{k} "))).unwrap().parse().unwrap() };
    assert_eq!(stat("produced_records"), after.value("silt_produced_records_total{topic=orders}"));
    assert_eq!(stat("committed_records"), after.value("silt_committed_records_total{}"));

    // The dashboard asks only for what the agent exports.
    dashboard_uses_only(&after.names);

    let (status, body) = get(&metrics, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(&metrics, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _) = get(&metrics, "/nothing");
    assert_eq!(status, 404);
}

#[test]
fn group_lag_is_reported_by_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let agent = AgentProcess::start(&dir.path().join("a"), &["--metrics-listen", &metrics, "--flush-interval", "50ms"]);
    agent.ok(&["topic", "create", "events", "--partitions", "1"], None);
    agent.ok(&["produce", "events"], Some(&seq(10)));
    agent.ok(&["consume", "events", "--group", "readers", "--from-beginning", "--max-messages", "4"], None);
    agent.ok(&["produce", "events"], Some(&seq(5)));
    let key = "silt_consumer_group_lag{group=readers,partition=0,topic=events}";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = Scrape::take(&metrics);
        // Four of fifteen records consumed and committed.
        if scrape.samples.get(key) == Some(&11.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no lag of 11 for the group:\n{}", scrape.text);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every metric name the dashboard's queries use is one the agent exports.
fn dashboard_uses_only(exported: &BTreeSet<String>) {
    let path = repo_root().join("deploy/grafana/silt.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has its panels: {exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("silt_") {
            let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(unknown.is_empty(), "the dashboard uses metrics the agent does not export: {unknown:?}");
    for wanted in [
        "silt_produced_bytes_total",
        "silt_produce_latency_seconds_bucket",
        "silt_flush_duration_seconds_bucket",
        "silt_object_request_duration_seconds_bucket",
        "silt_metadata_transaction_duration_seconds_bucket",
        "silt_metadata_conflicts_total",
        "silt_read_cache_hits_total",
        "silt_owned_partitions",
        "silt_consumer_group_lag",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Polls `/readyz` until its status is `want`.
fn wait_ready(addr: &str, want: u16, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(addr, "/readyz");
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status} ({body}) {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn readyz_follows_the_object_store() {
    let s3 = S3Server::start("seaweedfs");
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let mut flags: Vec<String> = s3.agent_flags("ready");
    flags.extend(["--metrics-listen".into(), metrics.clone()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = AgentProcess::start_with_env(&dir.path().join("a"), &addr, &flags, &s3.aws_env());
    wait_ready(&metrics, 200, "with S3 up");

    s3.stop();
    let body = wait_ready(&metrics, 503, "after S3 stopped");
    assert!(body.contains("object store:"), "{body}");
    assert!(!body.contains("metadata store:"), "the metadata store is fine: {body}");
    // Alive all the while: liveness does not depend on S3.
    assert_eq!(get(&metrics, "/healthz").0, 200);

    let _s3 = s3.restart();
    wait_ready(&metrics, 200, "after S3 came back");
    drop(agent);
}

/// `silt agent ARGS --print-config` with `env`: the printed lines by key.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Result<BTreeMap<String, String>, String> {
    let mut all = vec!["agent"];
    all.extend_from_slice(args);
    all.push("--print-config");
    let out = run_silt(&all, None, env, None);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(" = ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn config_file_keys_errors_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    // The defaults, printed, are a config file with every key.
    let defaults = print_config(&[], &[]).unwrap();
    assert!(defaults.len() >= 30, "{defaults:?}");
    // Every key set in a file, to a value that is not its default.
    let every: &[(&str, &str)] = &[
        ("data-dir", "\"/srv/silt\""),
        ("listen", "\"127.0.0.1:7500\""),
        ("advertise", "\"silt-0.example:7500\""),
        ("kafka-listen", "\"127.0.0.1:9192\""),
        ("kafka-advertise", "\"silt-0.example:9192\""),
        ("kafka-tls", "true"),
        ("metrics-listen", "\"127.0.0.1:9465\""),
        ("metadata", "\"sqlite:///srv/silt/m.db\""),
        ("object-store", "\"s3://bucket/prefix\""),
        ("s3-endpoint", "\"http://127.0.0.1:9000\""),
        ("s3-instance-credentials", "true"),
        ("s3-region", "\"eu-west-1\""),
        ("s3-checksum", "\"sha256\""),
        ("tls-dir", "\"/srv/silt/tls\""),
        ("tls-cert", "\"/srv/cert.pem\""),
        ("tls-key", "\"/srv/key.pem\""),
        ("auth", "\"none\""),
        ("super-users", "[\"admin\", \"ops\"]"),
        ("client-ca", "\"/srv/clients.pem\""),
        ("auth-refresh", "\"5s\""),
        ("flush-bytes", "\"4MiB\""),
        ("flush-interval", "\"100ms\""),
        ("cache-dir", "[\"/mnt/nvme0\", \"/mnt/nvme1\"]"),
        ("cache-memory", "\"128MiB\""),
        ("cache-disk", "\"2GiB\""),
        ("lease-ttl", "\"20s\""),
        ("max-uploads", "8"),
        ("max-record-bytes", "\"2MiB\""),
        ("max-frame-bytes", "\"32MiB\""),
        ("max-inflight-bytes", "\"512MiB\""),
        ("throttle-wait", "\"10s\""),
        ("max-connections", "100"),
        ("max-streams", "64"),
        ("recent-cache-bytes", "\"32MiB\""),
        ("retention-ms", "86400000"),
        ("retention-bytes", "1073741824"),
        ("cleanup-policy", "\"compact\""),
        ("min-compaction-lag-ms", "1000"),
        ("delete-retention-ms", "3600000"),
        ("segment-bytes", "1048576"),
        ("retention-check-interval", "\"10s\""),
        ("gc-grace", "\"10m\""),
        ("gc-interval", "\"1m\""),
        ("orphan-age", "\"2h\""),
        ("compaction-min-age", "\"20m\""),
        ("no-object-compaction", "true"),
        ("orphan-sweep-interval", "\"30m\""),
    ];
    let keys: BTreeSet<&str> = every.iter().map(|(k, _)| *k).collect();
    let printed: BTreeSet<&str> = defaults.keys().map(String::as_str).collect();
    let unset: BTreeSet<&str> = ["advertise", "kafka-listen", "kafka-advertise", "metrics-listen", "metadata"]
        .into_iter()
        .chain(["object-store", "s3-endpoint", "s3-region", "tls-dir", "tls-cert", "tls-key", "auth", "client-ca"])
        .collect();
    assert_eq!(&printed | &unset, keys, "the test sets every key the agent has");
    let text: String = every.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let file = write(dir.path(), "every.toml", &text);
    let got = print_config(&["--config", &file], &[]).unwrap();
    for (i, (k, v)) in every.iter().enumerate() {
        assert_eq!(got[*k], format!("{v}  # {file}:{}", i + 1), "{k}");
    }

    // Precedence: flag, then environment, then file, then default.
    let file = write(dir.path(), "some.toml", "flush-interval = \"100ms\"\nmax-uploads = 8\nlease-ttl = \"20s\"\n");
    let got = print_config(
        &["--config", &file, "--flush-interval", "50ms"],
        &[("SILT_MAX_UPLOADS", "16"), ("SILT_GC_GRACE", "7m")],
    )
    .unwrap();
    assert_eq!(got["flush-interval"], "\"50ms\"  # flag");
    assert_eq!(got["max-uploads"], "16  # environment SILT_MAX_UPLOADS");
    assert_eq!(got["lease-ttl"], format!("\"20s\"  # {file}:3"));
    assert_eq!(got["gc-grace"], "\"7m\"  # environment SILT_GC_GRACE");
    assert_eq!(got["gc-interval"], "\"30s\"  # default");
    // The file can come from the environment too.
    let got = print_config(&[], &[("SILT_CONFIG", &file)]).unwrap();
    assert_eq!(got["max-uploads"], format!("8  # {file}:2"));

    // Refusals name the file, the line and the key; nothing starts.
    let cases: &[(&str, &str)] = &[
        (
            "flush-interval = \"100ms\"\nflush-intervl = \"5s\"\n",
            ":2: flush-intervl: unknown key (did you mean `flush-interval`?)",
        ),
        ("\n\nflush-interval = \"5y\"\n", ":3: flush-interval: invalid value '5y'"),
        ("lease-ttl = \"1h\"\n", ":1: lease-ttl: must be between 500ms and 10m"),
        ("max-uploads = \"many\"\n", ":1: max-uploads: invalid value 'many'"),
        ("listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n", ":1: listen: takes one value, not a list"),
        ("kafka-tls = \"yes\"\n", ":1: kafka-tls: \"yes\" is not a boolean"),
        ("flush-bytes = 1.5\n", ":1: flush-bytes: a float is not a setting's value"),
        ("config = \"other.toml\"\n", ":1: config: unknown key"),
        ("flush-interval = [1\n", ":1: not valid TOML"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.toml"), text);
        let err = print_config(&["--config", &file], &[]).unwrap_err();
        assert!(err.contains(&format!("{file}{want}")), "{text:?}: {err}");
    }
    let err = print_config(&["--config", "/nonexistent/silt.toml"], &[]).unwrap_err();
    assert!(err.contains("--config") && err.contains("/nonexistent/silt.toml"), "{err}");

    // Secrets in URLs are masked.
    let file = write(dir.path(), "secret.toml", "metadata = \"etcd://root:hunter2@127.0.0.1:2379\"\n");
    let got = print_config(&["--config", &file], &[]).unwrap();
    assert!(got["metadata"].starts_with("\"etcd://root:****@127.0.0.1:2379\""), "{}", got["metadata"]);

    // The shipped sample is a valid config naming every key.
    let sample = repo_root().join("deploy/silt.toml");
    let text = std::fs::read_to_string(&sample).unwrap();
    print_config(&["--config", sample.to_str().unwrap()], &[]).unwrap();
    for k in &keys {
        assert!(
            text.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} = "))),
            "deploy/silt.toml names {k}"
        );
    }
}

#[test]
fn an_agent_runs_from_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let file = write(
        dir.path(),
        "agent.toml",
        &format!("metrics-listen = \"{metrics}\"\nflush-interval = \"20ms\"\nmax-record-bytes = \"4KiB\"\n"),
    );
    let agent = AgentProcess::start(&data, &["--config", &file]);
    agent.ok(&["topic", "create", "t"], None);
    agent.ok(&["produce", "t"], Some(b"small\n"));
    let big = format!("{}\n", "x".repeat(5000));
    let out = agent.cli_with_input(&["produce", "t"], Some(big.as_bytes()));
    assert!(!out.status.success(), "the file's record limit applies");
    assert!(stderr(&out).contains("4096"), "{}", stderr(&out));
    assert_eq!(get(&metrics, "/healthz").0, 200, "the file's metrics listener serves");
}
