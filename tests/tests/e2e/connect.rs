//! `silt connect` workers and `silt connector` against a real agent: configs
//! checked at create time, file source to file sink through a topic with
//! a worker killed mid-stream, and connectors moving off a dead worker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A `silt connect` process (killed when dropped).
struct Worker(Child);

impl Worker {
    fn start(agent: &AgentProcess, id: &str, extra: &[&str]) -> Worker {
        Self::start_with_env(agent, id, extra, &[])
    }

    /// With extra environment (an S3 sink's AWS_* credentials).
    fn start_with_env(agent: &AgentProcess, id: &str, extra: &[&str], env: &[(String, String)]) -> Worker {
        let log = std::fs::File::create(agent.data_dir.with_extension(format!("{id}.log"))).unwrap();
        let child = Command::new(silt_bin())
            .args(["connect", "--worker-id", id, "--ttl", "3s"])
            .args(extra)
            .env("SILT_AGENT", &agent.addr)
            .env("SILT_CA", &agent.ca)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SILT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Worker(child)
    }

    fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn append(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let text: String = (from..=to).map(|i| format!("line-{i}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// `connector list` as name -> (state, worker).
fn list(agent: &AgentProcess) -> BTreeMap<String, (String, String)> {
    let out = String::from_utf8(agent.ok(&["connector", "list"], None)).unwrap();
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), (cols[2].to_string(), cols.get(3).unwrap_or(&"").to_string()))
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The numbers of `line-N` lines, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.strip_prefix("line-")).map(|n| n.parse().unwrap()).collect()
}

/// Every number 1..=n is there, in order of first appearance; repeats
/// (at-least-once after a crash) only re-send what came before.
fn assert_complete_in_order(got: &[u64], n: u64, what: &str) {
    let mut seen = BTreeSet::new();
    let firsts: Vec<u64> = got.iter().copied().filter(|v| seen.insert(*v)).collect();
    assert_eq!(firsts, (1..=n).collect::<Vec<_>>(), "{what}: every line once first, in order");
}

#[test]
fn connector_configs_are_checked_and_listed_paused_resumed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &[]);
    let good = write(&dir.path().join("good.toml"), "type = \"file\"\npath = \"/tmp/x.log\"\ntopic = \"logs\"\n");
    let out = String::from_utf8(agent.ok(&["connector", "create", "tail", "--config", &good], None)).unwrap();
    assert_eq!(out, "created connector tail\n");

    let cases: &[(&str, &str)] = &[
        ("type = \"ftp\"\n", "key `type`: unknown type \"ftp\""),
        ("type = \"file\"\ntopic = \"logs\"\n", "key `path`: is missing"),
        ("type = \"file\"\npath = \"/x\"\ntopik = \"logs\"\n", "key `topic`: is missing (is `topik` a typo of it?)"),
        ("type = \"file\"\npath = \"/x\"\ntopic = \"logs\"\nspeed = 3\n", "key `speed`: is not a key"),
        ("type = \"file\"\npath = 7\ntopic = \"logs\"\n", "key `path`: must be a string"),
        ("type = \"file\"\npath = \"/x\"\ntopic = \"no spaces\"\n", "key `topic`: \"no spaces\" is not a topic name"),
        ("name = \"other\"\ntype = \"file\"\npath = \"/x\"\ntopic = \"t\"\n", "key `name`: the file says \"other\""),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = write(&dir.path().join(format!("bad{i}.toml")), text);
        let out = agent.cli(&["connector", "create", "bad", "--config", &file]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{text:?}: {}", stderr(&out));
    }
    let out = agent.cli(&["connector", "create", "tail", "--config", &good]);
    assert!(stderr(&out).contains("connector \"tail\" already exists"), "{}", stderr(&out));
    let out = agent.cli(&["connector", "create", "bad name", "--config", &good]);
    assert!(!out.status.success(), "names are checked");
    assert_eq!(list(&agent).keys().collect::<Vec<_>>(), ["tail"], "nothing refused was stored");
    assert_eq!(list(&agent)["tail"].0, "UNASSIGNED", "no worker runs it yet");

    agent.ok(&["connector", "pause", "tail"], None);
    assert_eq!(list(&agent)["tail"].0, "PAUSED");
    let describe = String::from_utf8(agent.ok(&["connector", "describe", "tail"], None)).unwrap();
    assert!(describe.contains("state     PAUSED") && describe.contains("topic = \"logs\""), "{describe}");
    agent.ok(&["connector", "resume", "tail"], None);
    assert_eq!(list(&agent)["tail"].0, "UNASSIGNED");
    agent.ok(&["connector", "delete", "tail"], None);
    assert!(list(&agent).is_empty());
    for action in ["pause", "resume", "delete", "describe"] {
        let out = agent.cli(&["connector", action, "tail"]);
        assert!(
            !out.status.success() && stderr(&out).contains("\"tail\" does not exist"),
            "{action}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_file_flows_through_a_topic_into_a_file_across_a_worker_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    let input = dir.path().join("in.log");
    let output = dir.path().join("out.log");
    let source = write(
        &dir.path().join("source.toml"),
        &format!("type = \"file\"\npath = \"{}\"\ntopic = \"lines\"\n", input.display()),
    );
    let sink = write(
        &dir.path().join("sink.toml"),
        &format!("type = \"file\"\ntopics = \"lines\"\npath = \"{}\"\n", output.display()),
    );
    agent.ok(&["topic", "create", "lines"], None);
    agent.ok(&["connector", "create", "tail", "--config", &source], None);
    agent.ok(&["connector", "create", "copy", "--config", &sink], None);
    append(&input, 1, 2000);
    let mut worker = Worker::start(&agent, "w1", &[]);
    let read = |p: &Path| numbers(&std::fs::read_to_string(p).unwrap_or_default());
    wait_until("the first lines in the sink's file", Duration::from_secs(60), || read(&output).len() >= 2000);
    // More lines arrive, and the worker dies among them.
    append(&input, 2001, 6000);
    std::thread::sleep(Duration::from_millis(300));
    worker.kill9();
    append(&input, 6001, 8000);
    // A rotation while no worker runs: the old file's tail is read first.
    std::fs::rename(&input, dir.path().join("in.log.1")).unwrap();
    append(&input, 8001, 9000);
    let _worker = Worker::start(&agent, "w2", &[]);
    // w1's claims lapse after its TTL; w2 takes both and carries on.
    wait_until("every line in the sink's file", Duration::from_secs(90), || {
        read(&output).iter().copied().collect::<BTreeSet<_>>().len() == 9000
    });
    assert_complete_in_order(&read(&output), 9000, "the sink's file");
    let topic = agent.ok(&["consume", "lines", "--from-beginning", "--timeout-ms", "2000"], None);
    assert_complete_in_order(&numbers(&String::from_utf8(topic).unwrap()), 9000, "the topic");
    let connectors = list(&agent);
    assert_eq!(connectors["tail"], ("RUNNING".to_string(), "w2".to_string()));
    assert_eq!(connectors["copy"], ("RUNNING".to_string(), "w2".to_string()));
    let describe = String::from_utf8(agent.ok(&["connector", "describe", "copy"], None)).unwrap();
    assert!(describe.contains("lag       0 records"), "{describe}");
}

#[test]
fn two_workers_share_four_connectors_and_a_dead_ones_move_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    for i in 0..4 {
        let file = dir.path().join(format!("in{i}.log"));
        let config = write(
            &dir.path().join(format!("c{i}.toml")),
            &format!("type = \"file\"\npath = \"{}\"\ntopic = \"t{i}\"\n", file.display()),
        );
        agent.ok(&["connector", "create", &format!("c{i}"), "--config", &config], None);
        append(&file, 1, 10);
    }
    let mut w1 = Worker::start(&agent, "w1", &[]);
    let _w2 = Worker::start(&agent, "w2", &[]);
    let per_worker = |agent: &AgentProcess| -> BTreeMap<String, usize> {
        let mut n = BTreeMap::new();
        for (state, worker) in list(agent).into_values() {
            if state == "RUNNING" {
                *n.entry(worker).or_insert(0) += 1;
            }
        }
        n
    };
    wait_until("two connectors on each worker", Duration::from_secs(60), || {
        per_worker(&agent) == BTreeMap::from([("w1".to_string(), 2), ("w2".to_string(), 2)])
    });
    w1.kill9();
    let killed = Instant::now();
    wait_until("all four on w2", Duration::from_secs(60), || {
        per_worker(&agent) == BTreeMap::from([("w2".to_string(), 4)])
    });
    eprintln!("connectors moved {:?} after the kill (TTL 3s)", killed.elapsed());
    // Every connector runs on: new lines reach each topic, none lost.
    for i in 0..4 {
        append(&dir.path().join(format!("in{i}.log")), 11, 20);
    }
    for i in 0..4 {
        wait_until(&format!("t{i} to hold 20 lines"), Duration::from_secs(30), || {
            let out = agent.ok(&["consume", &format!("t{i}"), "--from-beginning", "--timeout-ms", "500"], None);
            numbers(&String::from_utf8(out).unwrap()).into_iter().collect::<BTreeSet<_>>().len() == 20
        });
    }
}

#[test]
fn a_standalone_worker_runs_its_files_connectors_and_the_pool_leaves_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    let input = dir.path().join("in.log");
    append(&input, 1, 100);
    let config = write(
        &dir.path().join("alone.toml"),
        &format!("name = \"alone\"\ntype = \"file\"\npath = \"{}\"\ntopic = \"solo\"\n", input.display()),
    );
    let _pool = Worker::start(&agent, "pool", &[]);
    let _alone = Worker::start(&agent, "alone-worker", &["--standalone", &config]);
    wait_until("the standalone worker to run it", Duration::from_secs(30), || {
        list(&agent).get("alone") == Some(&("RUNNING".to_string(), "alone-worker".to_string()))
    });
    wait_until("100 lines in solo", Duration::from_secs(30), || {
        let out = agent.ok(&["consume", "solo", "--from-beginning", "--timeout-ms", "500"], None);
        numbers(&String::from_utf8(out).unwrap()).len() == 100
    });
    let describe = String::from_utf8(agent.ok(&["connector", "describe", "alone"], None)).unwrap();
    assert!(describe.contains("(standalone)") && describe.contains("\"offset\":"), "{describe}");
    // A bad standalone file stops the worker before it starts.
    let bad = write(&dir.path().join("bad.toml"), "name = \"b\"\ntype = \"file\"\n");
    let out = agent.cli(&["connect", "--standalone", &bad]);
    assert!(!out.status.success() && stderr(&out).contains("key `path`: is missing"), "{}", stderr(&out));
}

#[test]
fn the_http_sink_delivers_through_failures_and_dead_letters_what_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    let port = free_tcp_port();
    let received = dir.path().join("received.txt");
    let mut server = Command::new("python3")
        .arg(repo_root().join("tests/connect/http_sink_server.py"))
        .args([&port.to_string(), received.to_str().unwrap()])
        .spawn()
        .unwrap();
    agent.ok(&["topic", "create", "events", "--partitions", "2"], None);
    // Every 25th record is one the endpoint refuses.
    let lines: Vec<String> =
        (1..=500).map(|i| if i % 25 == 0 { format!("poison-{i}") } else { format!("line-{i}") }).collect();
    agent.ok(&["produce", "events"], Some(format!("{}\n", lines.join("\n")).as_bytes()));
    let config = write(
        &dir.path().join("http.toml"),
        &format!(
            "type = \"http\"\ntopics = [\"events\"]\nurl = \"http://127.0.0.1:{port}/ingest\"\ndead-letter-topic = \"events-dlq\"\n"
        ),
    );
    agent.ok(&["connector", "create", "hook", "--config", &config], None);
    let _worker = Worker::start(&agent, "w1", &[]);
    let good: BTreeSet<String> = lines.iter().filter(|l| l.starts_with("line-")).cloned().collect();
    let refused: BTreeSet<String> = lines.iter().filter(|l| l.starts_with("poison-")).cloned().collect();
    wait_until("every good record at the endpoint", Duration::from_secs(90), || {
        let got: BTreeSet<String> =
            std::fs::read_to_string(&received).unwrap_or_default().lines().map(String::from).collect();
        got == good
    });
    let delivered = std::fs::read_to_string(&received).unwrap();
    assert_eq!(delivered.lines().count(), good.len(), "each good record once: a refused or failed batch keeps nothing");
    wait_until("every refused record in the dead-letter topic", Duration::from_secs(30), || {
        let out = agent.ok(&["consume", "events-dlq", "--from-beginning", "--timeout-ms", "500"], None);
        String::from_utf8(out).unwrap().lines().map(String::from).collect::<BTreeSet<_>>() == refused
    });
    let out = agent.ok(&["consume", "events-dlq", "--from-beginning", "--timeout-ms", "500", "--print-headers"], None);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("silt.dlq.topic") && text.contains("HTTP 400"), "{text}");
    let describe = String::from_utf8(agent.ok(&["connector", "describe", "hook"], None)).unwrap();
    assert!(describe.contains("lag       0 records"), "{describe}");
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_sink_holds_each_record_once_after_a_worker_kill_9() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("seaweedfs")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    agent.ok(&["topic", "create", "orders", "--partitions", "3"], None);
    let config = write(
        &dir.path().join("s3.toml"),
        &format!(
            "type = \"s3\"\ntopics = \"orders\"\nbucket = \"{}\"\nprefix = \"exports\"\nendpoint = \"{}\"\nflush-bytes = \"8KiB\"\nflush-interval = \"300ms\"\ncompression = \"zstd\"\n",
            s3.bucket, s3.endpoint
        ),
    );
    agent.ok(&["connector", "create", "archive", "--config", &config], None);
    let env = s3.aws_env();
    let start = |id: &str| Worker::start_with_env(&agent, id, &[], &env);
    let produce = |from: u64, to: u64| {
        let text: String = (from..=to).map(|i| format!("line-{i}\n")).collect();
        agent.ok(&["produce", "orders"], Some(text.as_bytes()));
    };
    produce(1, 3000);
    let mut w1 = start("w1");
    let store = s3.store();
    let objects = || async {
        let listed: Vec<_> = store.list(Some(&"exports/orders".into())).try_collect().await.unwrap();
        let mut records: Vec<(u32, i64, String)> = Vec::new();
        for o in listed {
            let raw = store.get(&o.location).await.unwrap().bytes().await.unwrap();
            let text = String::from_utf8(zstd::decode_all(&raw[..]).unwrap()).unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                records.push((
                    v["partition"].as_u64().unwrap() as u32,
                    v["offset"].as_i64().unwrap(),
                    v["value"].as_str().unwrap().to_string(),
                ));
            }
        }
        records
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects().await.len() < 1000 {
        assert!(Instant::now() < deadline, "the sink wrote nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce(3001, 6000);
    w1.kill9();
    produce(6001, 8000);
    let _w2 = start("w2");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let records = objects().await;
        let values: BTreeSet<&str> = records.iter().map(|r| r.2.as_str()).collect();
        if values.len() == 8000 {
            let places: BTreeSet<(u32, i64)> = records.iter().map(|r| (r.0, r.1)).collect();
            assert_eq!(places.len(), records.len(), "no record twice in the bucket");
            assert_eq!(records.len(), 8000, "each record exactly once");
            break;
        }
        assert!(Instant::now() < deadline, "{} of 8000 records in the bucket", values.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A throwaway PostgreSQL cluster with logical decoding, run as the
/// `postgres` user on a free loopback port (stopped when dropped).
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

/// The newest installed PostgreSQL's binaries (Debian's layout).
fn pg_bin() -> String {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs Debian's postgresql)")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").display().to_string())))
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version").1
}

fn as_postgres(cmd: &str) -> std::process::Output {
    Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", cmd]).output().unwrap()
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        assert!(Command::new("chown").args(["postgres", &d]).status().unwrap().success());
        let bin = pg_bin();
        let out = as_postgres(&format!("{bin}/initdb -D {d}/data -U silt --auth=trust"));
        assert!(out.status.success(), "initdb: {}", stderr(&out));
        let port = free_tcp_port();
        let out = as_postgres(&format!(
            "{bin}/pg_ctl -D {d}/data -l {d}/log -w -o '-p {port} -k {d} -c listen_addresses=127.0.0.1 -c wal_level=logical' start"
        ));
        assert!(out.status.success(), "pg_ctl start: {}", stderr(&out));
        Postgres { dir, port }
    }

    fn url(&self) -> String {
        format!("postgres://silt@127.0.0.1:{}/postgres", self.port)
    }

    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "silt",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-At", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        as_postgres(&format!("{}/pg_ctl -D {d}/data -m immediate stop", pg_bin()));
    }
}

/// A topic's change records: (key, op, after.id, after.qty) per record; tombstones as op "tombstone".
fn changes(agent: &AgentProcess, topic: &str) -> Vec<(String, String, serde_json::Value)> {
    let out = agent.cli(&[
        "consume",
        topic,
        "--from-beginning",
        "--timeout-ms",
        "1500",
        "--print-key",
        "--key-separator",
        "\t",
    ]);
    if !out.status.success() {
        return Vec::new(); // not created yet
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (key, value) = l.split_once('\t').unwrap();
            if value.is_empty() {
                return (key.to_string(), "tombstone".to_string(), serde_json::Value::Null);
            }
            let v: serde_json::Value = serde_json::from_str(value).unwrap();
            (key.to_string(), v["op"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn postgres_changes_reach_their_topics_in_commit_order_across_worker_and_agent_kills() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE items (id int PRIMARY KEY, qty int, note text)");
    pg.sql("CREATE TABLE orders (id int PRIMARY KEY, total numeric)");
    // More rows than one page of the snapshot's cursor.
    pg.sql("INSERT INTO items SELECT g, g * 10, 'seed' FROM generate_series(1, 10050) g");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut agent = AgentProcess::start_on(&data, &addr, &["--flush-interval", "20ms"]);
    let config = write(
        &dir.path().join("pg.toml"),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.items\", \"orders\"]\ntopic-prefix = \"cdc\"\n",
            pg.url()
        ),
    );
    // A database that does not answer, or a table without a key, is refused at create time.
    let bad = write(
        &dir.path().join("bad.toml"),
        "type = \"postgres\"\nurl = \"postgres://silt@127.0.0.1:1/postgres\"\ntables = [\"items\"]\ntopic-prefix = \"cdc\"\n",
    );
    let out = agent.cli(&["connector", "create", "bad", "--config", &bad]);
    assert!(!out.status.success() && stderr(&out).contains("key `url`"), "{}", stderr(&out));
    pg.sql("CREATE TABLE nokey (x int)");
    let nokey = write(
        &dir.path().join("nokey.toml"),
        &format!("type = \"postgres\"\nurl = \"{}\"\ntables = [\"nokey\"]\ntopic-prefix = \"cdc\"\n", pg.url()),
    );
    let out = agent.cli(&["connector", "create", "nokey", "--config", &nokey]);
    assert!(!out.status.success() && stderr(&out).contains("no primary key"), "{}", stderr(&out));

    agent.ok(&["connector", "create", "shop", "--config", &config], None);
    let mut worker = Worker::start(&agent, "w1", &[]);
    // The snapshot: every seeded row, op r.
    wait_until("the snapshot in cdc.public.items", Duration::from_secs(60), || {
        let snapshot = changes(&agent, "cdc.public.items");
        snapshot.len() == 10050 && snapshot.iter().all(|(_, op, _)| op == "r")
    });
    // Changes while the worker runs, then while it is dead, then while the agent restarts.
    for i in 1..=100 {
        pg.sql(&format!("UPDATE items SET qty = qty + 1 WHERE id = {}", (i % 50) + 1));
        if i == 40 {
            worker.kill9();
        }
        if i == 60 {
            worker = Worker::start(&agent, "w2", &[]);
        }
    }
    pg.sql("INSERT INTO orders VALUES (1, 9.99), (2, 20.00)");
    pg.sql("DELETE FROM items WHERE id <= 5");
    agent.kill9();
    pg.sql("INSERT INTO items VALUES (20000, 1, 'after the agent died')");
    agent = AgentProcess::start_on(&data, &addr, &["--flush-interval", "20ms"]);
    // Every change arrives: 50 r, 100 u, 5 d and 5 tombstones, 1 c (at least once: a re-send repeats what came before).
    wait_until("every change", Duration::from_secs(120), || {
        let c = changes(&agent, "cdc.public.items");
        c.iter().any(|(_, op, v)| op == "c" && v["after"]["id"] == 20000)
            && c.iter().filter(|(_, op, _)| op == "d").map(|(k, _, _)| k.clone()).collect::<BTreeSet<_>>().len() == 5
    });
    let items = changes(&agent, "cdc.public.items");
    // Per key, the final qty the topic shows matches the table's.
    let mut last: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (key, op, v) in &items {
        match op.as_str() {
            "tombstone" | "d" => {
                last.insert(key.clone(), None);
            }
            _ => {
                last.insert(key.clone(), v["after"]["qty"].as_i64());
            }
        }
    }
    let table: BTreeMap<String, Option<i64>> = pg
        .sql("SELECT id, qty FROM items ORDER BY id")
        .lines()
        .map(|l| {
            let (id, qty) = l.split_once('|').unwrap();
            (format!("{{\"id\":{id}}}"), Some(qty.parse().unwrap()))
        })
        .collect();
    let live: BTreeMap<String, Option<i64>> =
        last.iter().filter(|(_, v)| v.is_some()).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(live, table, "the topic's latest value per key is the table's row");
    // Each key's updates arrive in commit order: each new qty is larger than
    // the last new one. (After a worker dies, the changes after the last
    // confirmed commit are sent again: a repeat is a value seen before.)
    let mut seen: BTreeMap<String, (BTreeSet<i64>, i64)> = BTreeMap::new();
    for (key, op, v) in &items {
        if op == "u" {
            let qty = v["after"]["qty"].as_i64().unwrap();
            let (values, last) = seen.entry(key.clone()).or_default();
            if values.insert(qty) {
                assert!(qty > *last, "{key}: qty {qty} first seen after {last}");
                *last = qty;
            }
        }
    }
    let updates: usize = seen.values().map(|(values, _)| values.len()).sum();
    assert_eq!(updates, 100, "every update once at least");
    // A delete is followed by its tombstone.
    for (i, (key, op, _)) in items.iter().enumerate() {
        if op == "d" {
            assert_eq!(items.get(i + 1).map(|(k, o, _)| (k.as_str(), o.as_str())), Some((key.as_str(), "tombstone")));
        }
    }
    let orders = changes(&agent, "cdc.public.orders");
    assert!(orders.iter().any(|(_, op, v)| op == "c" && v["after"]["total"] == "20.00"), "{orders:?}");
    let describe = String::from_utf8(agent.ok(&["connector", "describe", "shop"], None)).unwrap();
    assert!(describe.contains("\"snapshot_done\":true"), "{describe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_the_s3_sink_holds_each_change_once_after_a_worker_kill_9() {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("seaweedfs")).await.unwrap();
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    pg.sql("CREATE TABLE events (id int PRIMARY KEY, body text)");
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--flush-interval", "20ms"]);
    let source = write(
        &dir.path().join("pg.toml"),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"events\"]\ntopic-prefix = \"cdc\"\npartitions = 2\n",
            pg.url()
        ),
    );
    let sink = write(
        &dir.path().join("s3.toml"),
        &format!(
            "type = \"s3\"\ntopics = \"cdc.public.events\"\nbucket = \"{}\"\nprefix = \"pg\"\nendpoint = \"{}\"\nflush-bytes = \"4KiB\"\nflush-interval = \"200ms\"\n",
            s3.bucket, s3.endpoint
        ),
    );
    agent.ok(&["connector", "create", "events", "--config", &source], None);
    let env = s3.aws_env();
    let start = |id: &str| Worker::start_with_env(&agent, id, &[], &env);
    let mut w1 = start("w1");
    // The source creates the topic; the sink reads it from there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8(agent.ok(&["topic", "list"], None)).unwrap().contains("cdc.public.events") {
        assert!(Instant::now() < deadline, "the source did not create its topic");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.ok(&["connector", "create", "archive", "--config", &sink], None);
    for batch in 0..10 {
        let from = batch * 100 + 1;
        pg.sql(&format!("INSERT INTO events SELECT g, 'event ' || g FROM generate_series({from}, {}) g", from + 99));
        if batch == 5 {
            w1.kill9();
        }
    }
    let _w2 = start("w2");
    let store = s3.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed: Vec<_> = store.list(Some(&"pg/cdc.public.events".into())).try_collect().await.unwrap();
        let mut places = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut total = 0;
        for o in listed {
            let raw = store.get(&o.location).await.unwrap().bytes().await.unwrap();
            for line in String::from_utf8(raw.to_vec()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                total += 1;
                places.insert((v["partition"].as_u64().unwrap(), v["offset"].as_i64().unwrap()));
                let change: serde_json::Value = serde_json::from_str(v["value"].as_str().unwrap()).unwrap();
                ids.insert(change["after"]["id"].as_i64().unwrap());
            }
        }
        assert_eq!(places.len(), total, "no record of the topic twice in the bucket");
        if ids.len() == 1000 {
            assert_eq!(ids, (1..=1000).collect::<BTreeSet<i64>>());
            break;
        }
        assert!(Instant::now() < deadline, "{} of 1000 changes in the bucket", ids.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
