//! Starting real agents (in this process, or as `silt` processes) and
//! talking to them through the SDK and the `silt` binary.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod stream;

pub use cluster::TestCluster;
pub use stream::{Background, Plan};

use silt_agent::{Agent, Args};
use silt_client::{Client, ClientConfig};

/// The `silt` binary next to this test binary (built by `cargo build`).
pub fn silt_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SILT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("silt");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` first (the test command does)", bin.display());
    bin
}

/// A UDP port that was free a moment ago.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP port nothing listens on now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Agent flags for tests: a private data dir, a free port, quick flushes.
pub fn test_args(data_dir: &Path) -> Args {
    Args {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        flush_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

/// An agent running inside the test process.
pub struct TestAgent {
    pub agent: Option<Agent>,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestAgent {
    pub async fn start() -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(dir, |_| {}).await
    }

    pub async fn start_with(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Args)) -> TestAgent {
        let mut args = test_args(dir.path());
        tweak(&mut args);
        let agent = Agent::start(args.validate().unwrap()).await.unwrap();
        let addr = agent.local_addr();
        let ca = agent.ca_path().map(Path::to_path_buf).unwrap_or_default();
        TestAgent { agent: Some(agent), addr, ca, dir }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig { agent: self.addr.to_string(), ca: Some(self.ca.clone()), ..Default::default() }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_config()).await.unwrap()
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(a) = self.agent.take() {
            a.shutdown().await;
        }
        self.dir
    }
}

/// A `silt agent` process.
pub struct AgentProcess {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub ca: PathBuf,
}

impl AgentProcess {
    /// Starts `silt agent` on `data_dir` and a free port, and waits until it answers.
    pub fn start(data_dir: &Path, extra: &[&str]) -> AgentProcess {
        Self::start_on(data_dir, &format!("127.0.0.1:{}", free_port()), extra)
    }

    pub fn start_on(data_dir: &Path, addr: &str, extra: &[&str]) -> AgentProcess {
        Self::start_with_env(data_dir, addr, extra, &[])
    }

    /// Starts `silt agent` with extra flags and environment variables.
    pub fn start_with_env(data_dir: &Path, addr: &str, extra: &[&str], env: &[(String, String)]) -> AgentProcess {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.with_extension("log")).unwrap();
        let child = Command::new(silt_bin())
            .args(["agent", "--data-dir", data_dir.to_str().unwrap(), "--listen", addr])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SILT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // The CA is in --tls-dir when one is given, else in the data dir.
        let tls_dir = extra
            .iter()
            .position(|a| *a == "--tls-dir")
            .and_then(|i| extra.get(i + 1))
            .map(|d| Path::new(d).to_path_buf())
            .or_else(|| extra.iter().find_map(|a| a.strip_prefix("--tls-dir=")).map(|d| Path::new(d).to_path_buf()))
            .unwrap_or_else(|| data_dir.join("tls"));
        let p = AgentProcess { child, addr: addr.into(), data_dir: data_dir.into(), ca: tls_dir.join("ca.pem") };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ca.exists() {
                let out = self.cli(&["topic", "list"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "agent at {} did not come up; see {}.log",
                self.addr,
                self.data_dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `silt ARGS` against this agent (through SILT_AGENT and SILT_CA).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_input(args, None)
    }

    /// (An agent with authentication on is reached as its admin, with the
    /// token the cluster's first agent wrote to its data dir: this one's,
    /// or a sibling `agentN`'s.)
    pub fn cli_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let siblings = self.data_dir.parent().and_then(|p| std::fs::read_dir(p).ok()).into_iter().flatten();
        let token = std::iter::once(self.data_dir.clone())
            .chain(
                siblings
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agent"))),
            )
            .map(|d| d.join("admin.token"))
            .find(|t| t.exists());
        let mut env = vec![("SILT_AGENT", self.addr.as_str()), ("SILT_CA", self.ca.to_str().unwrap())];
        if let Some(t) = &token {
            env.push(("SILT_TOKEN_FILE", t.to_str().unwrap()));
        }
        run_silt(args, input, &env, None)
    }

    /// Runs the CLI and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let out = self.cli_with_input(args, input);
        assert!(out.status.success(), "silt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

pub fn run_silt(args: &[&str], input: Option<&[u8]>, env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(silt_bin());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in ["SILT_AGENT", "SILT_CA", "SILT_TOKEN", "SILT_TOKEN_FILE", "SILT_CERT", "SILT_KEY"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        if let Some(data) = input {
            let _ = stdin.write_all(&data);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `seq 1 n`, as bytes.
pub fn seq(n: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

/// Parses `partition:offset<TAB>rest` lines from `consume --print-offset`.
pub fn parse_offsets(out: &[u8]) -> Vec<(u32, i64, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let (po, rest) = l.split_once('\t').expect("partition:offset<TAB>value");
            let (p, o) = po.split_once(':').unwrap();
            (p.parse().unwrap(), o.parse().unwrap(), rest.to_string())
        })
        .collect()
}

/// Asserts each partition's offsets run 0, 1, 2, ... in output order.
pub fn assert_dense_in_order(records: &[(u32, i64, String)]) {
    let mut next = std::collections::HashMap::<u32, i64>::new();
    for (p, o, _) in records {
        let want = next.entry(*p).or_insert(0);
        assert_eq!(*o, *want, "partition {p}: offset {o} came where {want} was due");
        *want += 1;
    }
}

/// A real S3-compatible server on 127.0.0.1, started by `localstack/start`
/// in a private state folder and stopped when dropped.
pub struct S3Server {
    pub kind: &'static str,
    pub endpoint: String,
    pub port: u16,
    pub bucket: String,
    pub env: Vec<(String, String)>,
    state: Option<tempfile::TempDir>,
}

/// The object files (`*.silt`) anywhere under `dir`.
pub fn silt_objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(silt_objects(&p));
        } else if p.extension().is_some_and(|x| x == "silt") {
            out.push(p);
        }
    }
    out
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

impl S3Server {
    pub fn start(kind: &'static str) -> S3Server {
        let state = tempfile::tempdir().unwrap();
        Self::launch(kind, state, None)
    }

    fn launch(kind: &'static str, state: tempfile::TempDir, port: Option<u16>) -> S3Server {
        let mut cmd = Command::new(repo_root().join("localstack/start"));
        cmd.arg(kind).env("SILT_S3_STATE", state.path()).stderr(Stdio::inherit());
        if let Some(p) = port {
            cmd.env("SILT_S3_PORT", p.to_string()).env("SILT_S3_KEEP", "1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "localstack/start {kind} failed");
        let mut env = Vec::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
        }
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        let endpoint = get("SILT_S3_ENDPOINT");
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        S3Server { kind, bucket: get("SILT_S3_BUCKET"), endpoint, port, env, state: Some(state) }
    }

    /// Stops the server, keeping its data, as an outage would.
    pub fn stop(&self) {
        let state = self.state.as_ref().expect("a running server has its state");
        let status = Command::new(repo_root().join("localstack/stop"))
            .arg(self.kind)
            .env("SILT_S3_STATE", state.path())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(self) -> S3Server {
        let mut old = self;
        let state = old.state.take().expect("a running server has its state");
        Self::launch(old.kind, state, Some(old.port))
    }

    /// The bucket, as the tests' own client.
    pub fn store(&self) -> impl object_store::ObjectStore {
        let get = |k: &str| self.env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(get("AWS_ACCESS_KEY_ID"))
            .with_secret_access_key(get("AWS_SECRET_ACCESS_KEY"))
            .build()
            .unwrap()
    }

    /// Agent flags that put objects in this server's bucket under `prefix`.
    pub fn agent_flags(&self, prefix: &str) -> Vec<String> {
        vec![
            "--object-store".into(),
            format!("s3://{}/{prefix}", self.bucket),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
        ]
    }

    /// The AWS_* variables an agent needs.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        self.env.iter().filter(|(k, _)| k.starts_with("AWS_")).cloned().collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let Some(state) = &self.state else { return };
        let _ = Command::new(repo_root().join("localstack/stop"))
            .arg(self.kind)
            .env("SILT_S3_STATE", state.path())
            .stderr(Stdio::null())
            .status();
    }
}
