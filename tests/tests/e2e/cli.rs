//! The walkthrough and every flag, through the `silt` binary
//! against `silt agent` processes.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn walkthrough_produce_consume_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("s1"), &[]);
    let out = agent.ok(&["topic", "create", "hello", "--partitions", "3"], None);
    assert!(String::from_utf8_lossy(&out).contains("hello"));
    assert_eq!(agent.ok(&["topic", "list"], None), b"hello\n");

    let n = 100_000u64;
    agent.ok(&["produce", "hello"], Some(&seq(n)));

    let describe = String::from_utf8(agent.ok(&["topic", "describe", "hello"], None)).unwrap();
    let rows: Vec<Vec<&str>> = describe.lines().skip(3).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{describe}");
    let mut total = 0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], i.to_string(), "partition id: {describe}");
        assert_eq!(row[1], agent.addr, "owner: {describe}");
        assert_eq!(row[3], "0", "log start: {describe}");
        total += row[4].parse::<u64>().unwrap();
    }
    assert_eq!(total, n, "high watermarks add up to the records produced: {describe}");

    let out =
        agent.ok(&["consume", "hello", "--from-beginning", "--max-messages", &n.to_string(), "--print-offset"], None);
    let records = parse_offsets(&out);
    assert_eq!(records.len() as u64, n);
    assert_dense_in_order(&records);
    let values: BTreeSet<u64> = records.iter().map(|(_, _, v)| v.parse().unwrap()).collect();
    assert_eq!(values, (1..=n).collect::<BTreeSet<_>>(), "every line back, none duplicated");
    let partitions_used: BTreeSet<u32> = records.iter().map(|r| r.0).collect();
    assert!(partitions_used.len() > 1, "keyless records spread across partitions");
    // Keyless records keep their input order inside each partition.
    let mut last = HashMap::new();
    for (p, _, v) in &records {
        let v: u64 = v.parse().unwrap();
        assert!(last.insert(*p, v).is_none_or(|prev| prev < v), "partition {p} out of input order");
    }

    let out = agent
        .ok(&["consume", "hello", "--partition", "1", "--offset", "5", "--max-messages", "3", "--print-offset"], None);
    let expected: Vec<_> = records.iter().filter(|r| r.0 == 1 && (5..8).contains(&r.1)).cloned().collect();
    assert_eq!(parse_offsets(&out), expected);

    agent.ok(&["topic", "delete", "hello"], None);
    assert_eq!(agent.ok(&["topic", "list"], None), b"");
    let out = agent.cli_with_input(&["produce", "hello"], Some(b"x\n"));
    assert!(!out.status.success() && stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn keys_partitions_acks_and_printing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    agent.ok(&["topic", "create", "k", "--partitions", "4"], None);
    let mut input = String::new();
    for i in 0..400 {
        input.push_str(&format!("user{}:event{i}\n", i % 10));
    }
    agent.ok(&["produce", "k", "--key-separator", ":"], Some(input.as_bytes()));
    let out = agent.ok(
        &[
            "consume",
            "k",
            "--from-beginning",
            "--max-messages",
            "400",
            "--print-key",
            "--print-offset",
            "--key-separator",
            "=",
        ],
        None,
    );
    let mut partition_of_key = HashMap::new();
    let mut count = 0;
    for line in String::from_utf8(out).unwrap().lines() {
        let (po, kv) = line.split_once('\t').unwrap();
        let (key, value) = kv.split_once('=').unwrap();
        let p: u32 = po.split_once(':').unwrap().0.parse().unwrap();
        assert!(value.starts_with("event"));
        assert_eq!(*partition_of_key.entry(key.to_string()).or_insert(p), p, "key {key} went to two partitions");
        count += 1;
    }
    assert_eq!(count, 400);
    assert_eq!(partition_of_key.len(), 10);

    // --partition pins; --acks none is fire and forget but still lands.
    agent.ok(&["produce", "k", "--partition", "2", "--acks", "none"], Some(b"p1\np2\n\np4\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = agent.ok(&["consume", "k", "--partition", "2", "--from-beginning", "--timeout-ms", "300"], None);
        let lines: Vec<_> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
        if lines.ends_with(&["p1".into(), "p2".into(), "".into(), "p4".into()]) {
            break;
        }
        assert!(Instant::now() < deadline, "acks=none records never appeared: {lines:?}");
    }
}

#[test]
fn consume_follows_the_tail_and_exits_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    agent.ok(&["topic", "create", "tail", "--partitions", "2"], None);
    let mut follower = Command::new(silt_bin())
        .args(["consume", "tail"])
        .env("SILT_AGENT", &agent.addr)
        .env("SILT_CA", &agent.ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    agent.ok(&["produce", "tail"], Some(b"one\ntwo\nthree\n"));
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        seen.insert(lines.next().expect("follower ended early").unwrap());
    }
    assert_eq!(seen, ["one", "three", "two"].iter().map(|s| s.to_string()).collect());
    signal(follower.id(), "INT");
    let status = follower.wait().unwrap();
    assert!(status.success(), "ctrl-c exits 0, got {status}");
}

#[test]
fn timeout_ms_ends_an_idle_consume_with_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    agent.ok(&["topic", "create", "idle"], None);
    agent.ok(&["produce", "idle"], Some(b"a\nb\nc\n"));
    let started = Instant::now();
    let out = agent.ok(&["consume", "idle", "--from-beginning", "--timeout-ms", "500"], None);
    assert_eq!(out, b"a\nb\nc\n");
    assert!(started.elapsed() < Duration::from_secs(20));
    // At the end of the log, --offset equal to the high watermark waits, then times out cleanly.
    assert_eq!(agent.ok(&["consume", "idle", "--partition", "0", "--offset", "3", "--timeout-ms", "300"], None), b"");
    // A clean exit says nothing about the connection it closes.
    let run = agent.cli(&["consume", "idle", "--from-beginning", "--timeout-ms", "300"]);
    assert!(run.status.success());
    assert!(!stderr(&run).contains("fetch failed"), "{}", stderr(&run));
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    agent.ok(&["topic", "create", "t", "--partitions", "2"], None);
    agent.ok(&["produce", "t"], Some(b"x\ny\n"));
    let before = agent.ok(&["topic", "describe", "t"], None);

    let cases: &[(&[&str], &[u8], &str)] = &[
        (&["topic", "create", "t", "--partitions", "2"], b"", "already exists"),
        (&["topic", "create", "u", "--partitions", "0"], b"", "invalid partition count 0"),
        (&["topic", "create", "bad name"], b"", "invalid topic name"),
        (&["topic", "describe", "nope"], b"", "\"nope\" does not exist"),
        (&["topic", "delete", "nope"], b"", "\"nope\" does not exist"),
        (&["produce", "nope"], b"x\n", "\"nope\" does not exist"),
        (&["consume", "nope", "--from-beginning"], b"", "\"nope\" does not exist"),
        (&["produce", "t", "--partition", "2"], b"x\n", "has no partition 2"),
        (&["consume", "t", "--partition", "5"], b"", "has no partition 5"),
        (&["consume", "t", "--partition", "0", "--offset", "1000"], b"", "offset 1000 is out of range"),
        (&["consume", "t", "--partition", "0", "--offset", "-1"], b"", "out of range"),
        (&["produce", "t", "--acks", "sometimes"], b"x\n", "unknown acks"),
        (&["produce", "t", "--acks", "local"], b"x\n", "--cache-dir"),
    ];
    for (args, input, expect) in cases {
        let out = agent.cli_with_input(args, Some(input));
        assert!(!out.status.success(), "silt {args:?} should fail");
        assert!(stderr(&out).contains(expect), "silt {args:?}: expected {expect:?} in {:?}", stderr(&out));
    }
    // A value over the record limit (1 MiB by default) names the limit; one at it is accepted.
    let mut big = vec![b'v'; (1 << 20) + 1];
    big.push(b'\n');
    let out = agent.cli_with_input(&["produce", "t", "--partition", "0"], Some(&big));
    assert!(!out.status.success() && stderr(&out).contains("maximum record size of 1048576 bytes"), "{}", stderr(&out));

    assert_eq!(agent.ok(&["topic", "list"], None), b"t\n", "failed commands created nothing");
    assert_eq!(agent.ok(&["topic", "describe", "t"], None), before, "failed commands wrote nothing");

    let mut at_limit = vec![b'v'; 1 << 20];
    at_limit.push(b'\n');
    agent.ok(&["produce", "t", "--partition", "1"], Some(&at_limit));
    let out = agent.ok(&["consume", "t", "--partition", "1", "--from-beginning", "--timeout-ms", "500"], None);
    let got: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(got.last().map(|v| v.len()), Some(1 << 20), "the record at the limit is stored whole");
}

#[test]
fn unreachable_agent_and_wrong_ca_fail_fast_with_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    let other = AgentProcess::start(&dir.path().join("b"), &[]);
    let nobody = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = run_silt(
        &["--agent", &nobody, "--ca", agent.ca.to_str().unwrap(), "--connect-timeout", "1s", "topic", "list"],
        None,
        &[],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&nobody), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(10), "gave up in {:?}", started.elapsed());

    let out = run_silt(&["--agent", &agent.addr, "--ca", other.ca.to_str().unwrap(), "topic", "list"], None, &[], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not signed by the CA"), "{}", stderr(&out));

    let out = run_silt(&["--agent", &agent.addr, "--ca", "/nonexistent/ca.pem", "topic", "list"], None, &[], None);
    assert!(!out.status.success() && stderr(&out).contains("/nonexistent/ca.pem"), "{}", stderr(&out));
}

#[test]
fn agent_rejects_bad_flags_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, expect) in [
        (&["--flush-bytes", "lots"][..], "--flush-bytes"),
        (&["--max-record-bytes", "64MiB"][..], "--max-record-bytes"),
        (&["--listen", "nowhere"][..], "--listen"),
        (&["--object-store", "gopher://x"][..], "--object-store"),
        (&["--metadata", "mysql://x"][..], "mysql"),
        (&["--s3-checksum", "md5"][..], "--s3-checksum"),
    ] {
        let d = dir.path().join("x");
        let out = run_silt(&[&["agent", "--data-dir", d.to_str().unwrap()][..], flags].concat(), None, &[], None);
        assert!(!out.status.success(), "{flags:?} should stop start-up");
        assert!(stderr(&out).contains(expect), "{flags:?}: {}", stderr(&out));
    }
    // The port is taken: the message names the address.
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    let out = run_silt(
        &["agent", "--data-dir", dir.path().join("b").to_str().unwrap(), "--listen", &agent.addr],
        None,
        &[],
        None,
    );
    assert!(!out.status.success() && stderr(&out).contains(&agent.addr), "{}", stderr(&out));
}

#[test]
fn defaults_need_no_flags_on_one_machine() {
    // `silt agent` with no flags keeps its data in ./silt-data and listens on
    // the default address, and the CLI's defaults find it.
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Command::new(silt_bin())
        .arg("agent")
        .current_dir(dir.path())
        .env_remove("SILT_AGENT")
        .env_remove("SILT_CA")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_silt(&["topic", "create", "hello"], None, &[], Some(dir.path()));
        if out.status.success() {
            break;
        }
        assert!(agent.try_wait().unwrap().is_none(), "the default agent exited (is 127.0.0.1:7447 taken?)");
        assert!(Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir.path().join("silt-data/tls/ca.pem").exists());
    let out = run_silt(&["produce", "hello"], Some(b"a\nb\nc\n"), &[], Some(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_silt(&["consume", "hello", "--from-beginning", "--max-messages", "3"], None, &[], Some(dir.path()));
    assert_eq!(out.stdout, b"a\nb\nc\n");
    signal(agent.id(), "TERM");
    assert!(agent.wait().unwrap().success());
}

#[test]
fn bench_produce_reports_every_figure_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    let pid = agent.child.id().to_string();
    let out = agent.ok(
        &[
            "bench",
            "produce",
            "--records",
            "3000",
            "--producers",
            "2",
            "--partitions",
            "3",
            "--json",
            "--agent-pid",
            &pid,
        ],
        None,
    );
    let text = String::from_utf8(out).unwrap();
    let line = text.trim();
    assert!(line.starts_with('{') && line.ends_with('}') && !line.contains('\n'), "{text}");
    for key in [
        "mb_per_s",
        "records_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "agent_cpu_s",
        "mib_per_agent_cpu_s",
        "client_cpu_s",
        "agent_peak_rss_mib",
        "puts_per_gib",
    ] {
        assert!(json_number(line, key) >= 0.0, "{key} in {line}");
    }
    // Every record was written: two producers of 1,500 each.
    let total = records_in(&agent, "bench");
    assert_eq!(total, 3000);

    // --duration stops the producers when the time is up: at 2,000 records
    // a second, a second's worth.
    agent.ok(&["bench", "produce", "--topic", "timed", "--duration", "1s", "--rate", "2000", "--quiet"], None);
    let total = records_in(&agent, "timed");
    assert!((1500..=2200).contains(&total), "{total} records in a 1 s run at 2000/s");
}

#[test]
fn bench_consume_and_e2e_report_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    let pid = agent.child.id().to_string();
    agent.ok(&["bench", "produce", "--records", "2000", "--partitions", "3", "--quiet"], None);
    let consume = ["bench", "consume", "--consumers", "2", "--passes", "2", "--json", "--agent-pid", &pid];
    let out = String::from_utf8(agent.ok(&consume, None)).unwrap();
    let passes: Vec<&str> = out.lines().collect();
    assert_eq!(passes.len(), 2, "{out}");
    for (i, p) in passes.iter().enumerate() {
        assert!(p.starts_with(&format!("{{\"pass\": {}, \"mb_per_s\": ", i + 1)), "{p}");
        for key in ["records_per_s", "gets", "gets_per_gib", "cache_hit_ratio"] {
            assert!(p.contains(&format!("\"{key}\": ")), "{key} missing in {p}");
        }
        for key in ["client_cpu_s", "agent_cpu_s", "agent_peak_rss_mib"] {
            assert!(json_number(p, key) >= 0.0, "{key} in {p}");
        }
        assert!(json_number(p, "agent_peak_rss_mib") > 1.0, "{p}");
    }
    let out =
        String::from_utf8(agent.ok(&["bench", "e2e", "--rate", "500", "--duration", "1s", "--json"], None)).unwrap();
    assert!(out.starts_with("{\"records\": 500, \"p50_ms\": "), "{out}");
    for key in ["p99_ms", "p999_ms", "max_ms"] {
        assert!(out.contains(&format!("\"{key}\": ")), "{key} missing in {out}");
    }
}

/// The records a topic holds: its partitions' high watermarks (the last
/// column of `topic describe`), added up.
fn records_in(agent: &AgentProcess, topic: &str) -> i64 {
    let d = String::from_utf8(agent.ok(&["topic", "describe", topic], None)).unwrap();
    d.lines().skip(3).filter_map(|l| l.split_whitespace().last()?.parse::<i64>().ok()).sum()
}

/// One JSON line's value for `key`, as a number.
fn json_number(line: &str, key: &str) -> f64 {
    let at = line.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key} missing in {line}"));
    let value = line[at + key.len() + 4..].split([',', '}']).next().unwrap().trim();
    value.parse::<f64>().unwrap_or_else(|_| panic!("{key} = {value}"))
}

#[test]
fn bench_put_and_quic_measure_ceilings_without_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("objects");
    let url = format!("file://{}", store.display());
    let out = std::process::Command::new(silt_bin())
        .args(["bench", "put", "--object-store", &url, "--object-bytes", "256KiB", "--duration", "1s", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(json_number(&line, "mb_per_s") > 0.0 && json_number(&line, "puts_per_s") > 0.0, "{line}");
    json_number(&line, "p99_ms");
    let mut left = Vec::new();
    let mut dirs = vec![store.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p)
            } else {
                left.push(p)
            }
        }
    }
    assert!(left.is_empty(), "the bench deletes what it wrote: {left:?}");

    let out =
        std::process::Command::new(silt_bin()).args(["bench", "quic", "--bytes", "64MiB", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(json_number(&line, "mb_per_s") > 0.0 && json_number(&line, "mb_per_cpu_s") > 0.0, "{line}");

    let out = std::process::Command::new(silt_bin())
        .args(["bench", "put", "--object-store", "ftp://nowhere", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected file:///path or s3://BUCKET/PREFIX"), "{err}");
}
