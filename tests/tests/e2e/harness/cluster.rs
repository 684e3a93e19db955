//! [`TestCluster`]: N `silt agent` processes on one metadata store (SQLite
//! or a real etcd), one object store (a local folder or a real S3 server)
//! and one CA, each with its own data dir and, if asked, cache dirs (a
//! WAL). Agents keep their address across restarts. State is read through
//! the SDK, not by parsing CLI output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use silt_client::{Client, ClientConfig, Consumer, ConsumerConfig, Offset};

use super::{free_port, free_tcp_port, AgentProcess, S3Server};

#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    agents: usize,
    /// How many agents start at once (the rest with `launch`).
    launch: Option<usize>,
    cache_dirs: usize,
    s3: bool,
    etcd: bool,
    kafka: bool,
    lease_ttl: String,
    flush_interval: String,
    flags: Vec<String>,
}

impl ClusterBuilder {
    pub fn agents(mut self, n: usize) -> Self {
        self.agents = n;
        self
    }

    /// Starts only the first `n` agents; the test launches the others.
    pub fn launch(mut self, n: usize) -> Self {
        self.launch = Some(n);
        self
    }

    /// Each agent gets `dirs` cache dirs: a WAL (acks=local) and a read cache.
    pub fn wal(mut self, dirs: usize) -> Self {
        self.cache_dirs = dirs;
        self
    }

    /// Objects go to a real S3 server (SeaweedFS) instead of a local folder.
    pub fn s3(mut self) -> Self {
        self.s3 = true;
        self
    }

    /// Metadata goes to a real etcd instead of a shared SQLite file.
    #[cfg(feature = "etcd")]
    pub fn etcd(mut self) -> Self {
        self.etcd = true;
        self
    }

    /// More flags for every agent.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// Each agent also serves Kafka's protocol on a TCP port of its own.
    pub fn kafka(mut self) -> Self {
        self.kafka = true;
        self
    }

    pub fn flush_interval(mut self, interval: &str) -> Self {
        self.flush_interval = interval.into();
        self
    }

    /// Starts the servers it needs and every agent (on a multi-threaded runtime).
    pub async fn start(self) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(feature = "etcd")]
        let etcd = match self.etcd {
            true => Some(silt_metadata::testing::EtcdServer::start().await),
            false => None,
        };
        let s3 = self.s3.then(|| tokio::task::block_in_place(|| S3Server::start("seaweedfs")));
        let mut common = Vec::new();
        #[cfg(feature = "etcd")]
        if let Some(e) = &etcd {
            common.extend(["--metadata".to_string(), format!("etcd://{}", e.endpoint)]);
        }
        if !self.etcd {
            common.extend(["--metadata".to_string(), format!("sqlite://{}", dir.path().join("meta.db").display())]);
        }
        match &s3 {
            Some(s) => common.extend(s.agent_flags("cluster")),
            None => {
                common.extend(["--object-store".into(), format!("file://{}", dir.path().join("objects").display())])
            }
        }
        common.extend(["--tls-dir".into(), dir.path().join("tls").display().to_string()]);
        common.extend(["--lease-ttl".into(), self.lease_ttl.clone(), "--flush-interval".into(), self.flush_interval]);
        common.extend(self.flags);
        let env = s3.as_ref().map(S3Server::aws_env).unwrap_or_default();
        let mut c = TestCluster {
            addrs: (0..self.agents).map(|_| format!("127.0.0.1:{}", free_port())).collect(),
            kafka_addrs: match self.kafka {
                true => (0..self.agents).map(|_| format!("127.0.0.1:{}", free_tcp_port())).collect(),
                false => Vec::new(),
            },
            agents: (0..self.agents).map(|_| None).collect(),
            dir,
            common,
            env,
            cache_dirs: self.cache_dirs,
            _s3: s3,
            #[cfg(feature = "etcd")]
            _etcd: etcd,
        };
        for i in 0..self.launch.unwrap_or(self.agents) {
            c.launch(i);
        }
        c
    }
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// Every agent's address, kept across restarts.
    pub addrs: Vec<String>,
    /// Every agent's Kafka listener, with [`ClusterBuilder::kafka`].
    pub kafka_addrs: Vec<String>,
    agents: Vec<Option<AgentProcess>>,
    common: Vec<String>,
    env: Vec<(String, String)>,
    cache_dirs: usize,
    _s3: Option<S3Server>,
    #[cfg(feature = "etcd")]
    _etcd: Option<silt_metadata::testing::EtcdServer>,
}

impl TestCluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            agents: 1,
            launch: None,
            cache_dirs: 0,
            s3: false,
            etcd: false,
            kafka: false,
            lease_ttl: "2s".into(),
            flush_interval: "50ms".into(),
            flags: Vec::new(),
        }
    }

    /// The S3 server, when the cluster uses one.
    pub fn s3_server(&self) -> Option<&S3Server> {
        self._s3.as_ref()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("agent{i}"))
    }

    /// Agent `i`'s cache dirs (empty without a WAL).
    pub fn cache_dirs(&self, i: usize) -> Vec<PathBuf> {
        (0..self.cache_dirs).map(|j| self.dir.path().join(format!("agent{i}-nvme{j}"))).collect()
    }

    /// Agent `i`'s log file.
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.data_dir(i).with_extension("log")
    }

    /// (Re)starts agent `i` and waits until it answers.
    pub fn launch(&mut self, i: usize) {
        self.launch_with(i, &[]);
    }

    /// (Re)starts agent `i` with extra flags, which replace common ones of the same name.
    pub fn launch_with(&mut self, i: usize, extra: &[&str]) {
        self.launch_with_env(i, extra, &[]);
    }

    /// [`TestCluster::launch_with`] with extra environment variables.
    pub fn launch_with_env(&mut self, i: usize, extra: &[&str], env: &[(&str, &str)]) {
        // Common flags come in (name, value) pairs.
        let mut flags: Vec<String> =
            self.common.chunks(2).filter(|pair| !extra.contains(&pair[0].as_str())).flatten().cloned().collect();
        for d in self.cache_dirs(i) {
            flags.extend(["--cache-dir".into(), d.display().to_string()]);
        }
        if let Some(k) = self.kafka_addrs.get(i) {
            flags.extend(["--kafka-listen".into(), k.clone()]);
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (data, addr) = (self.data_dir(i), self.addrs[i].clone());
        let mut env_all = self.env.clone();
        env_all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let agent = tokio::task::block_in_place(|| AgentProcess::start_with_env(&data, &addr, &flags, &env_all));
        self.agents[i] = Some(agent);
    }

    /// Waits up to `timeout` for agent `i` to exit by itself (a crash point).
    pub async fn wait_exit_within(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let a = self.agents[i].as_mut().unwrap_or_else(|| panic!("agent {i} is down"));
            if let Some(status) = a.child.try_wait().unwrap() {
                self.agents[i] = None;
                return status;
            }
            assert!(Instant::now() < deadline, "agent {i} did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn agent(&self, i: usize) -> &AgentProcess {
        self.agents[i].as_ref().unwrap_or_else(|| panic!("agent {i} is down"))
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.agents[i].is_some()
    }

    pub fn kill9(&mut self, i: usize) {
        let mut a = self.agents[i].take().unwrap_or_else(|| panic!("agent {i} is down"));
        a.kill9();
    }

    /// SIGTERM, and the exit status once it stopped.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut a = self.agents[i].take().unwrap_or_else(|| panic!("agent {i} is down"));
        tokio::task::block_in_place(|| a.terminate())
    }

    /// Waits for agent `i` to exit (after a signal sent some other way).
    pub fn wait_exit(&mut self, i: usize) -> std::process::ExitStatus {
        let mut a = self.agents[i].take().unwrap_or_else(|| panic!("agent {i} is down"));
        tokio::task::block_in_place(|| a.child.wait().unwrap())
    }

    /// The etcd server's process id, when the cluster runs on etcd.
    #[cfg(feature = "etcd")]
    pub fn etcd_pid(&self) -> Option<u32> {
        self._etcd.as_ref().map(|e| e.pid())
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// A client configuration naming every agent, in `order`.
    pub fn config_in(&self, order: &[usize]) -> ClientConfig {
        let agent = order.iter().map(|i| self.addrs[*i].clone()).collect::<Vec<_>>().join(",");
        ClientConfig { agent, ca: Some(self.ca()), token: self.admin_token(), ..Default::default() }
    }

    /// The admin token the first agent wrote, when authentication is on.
    pub fn admin_token(&self) -> Option<String> {
        (0..self.addrs.len())
            .find_map(|i| std::fs::read_to_string(self.data_dir(i).join("admin.token")).ok())
            .map(|t| t.trim().to_string())
    }

    /// A client configuration naming every agent.
    pub fn config(&self) -> ClientConfig {
        self.config_in(&(0..self.addrs.len()).collect::<Vec<_>>())
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.config()).await.unwrap()
    }

    /// Agent `i`'s counters.
    pub async fn stats(&self, i: usize) -> BTreeMap<String, u64> {
        let client = Client::connect(self.config_in(&[i])).await.unwrap();
        client.stats().await.unwrap().into_iter().collect()
    }

    /// Each partition's owner address ("" when none is live).
    pub async fn owners(&self, topic: &str) -> Vec<String> {
        let d = self.client().await.describe_topic(topic).await.unwrap();
        d.partitions.into_iter().map(|p| p.owner).collect()
    }

    /// Waits until `check` holds, failing after `timeout`.
    pub async fn wait_for<F: std::future::Future<Output = bool>>(
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> F,
    ) {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the agents that are up own `topic`'s partitions in even shares.
    pub async fn wait_even(&self, topic: &str, what: &str) {
        let up: Vec<&String> = self.addrs.iter().enumerate().filter(|(i, _)| self.is_up(*i)).map(|(_, a)| a).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owners = self.owners(topic).await;
            let count = |a: &String| owners.iter().filter(|o| *o == a).count();
            let (lo, hi) = (owners.len() / up.len(), owners.len().div_ceil(up.len()));
            let even = owners.iter().all(|o| up.contains(&o)) && up.iter().all(|a| (lo..=hi).contains(&count(a)));
            if even {
                return;
            }
            assert!(Instant::now() < deadline, "no even spread {what}: {owners:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every offset in `at` is committed (below its partition's
    /// high watermark): a restarted agent replays its WAL and commits it
    /// shortly after it starts answering.
    pub async fn wait_committed(&self, topic: &str, at: impl IntoIterator<Item = (u32, i64)>) {
        let at: Vec<(u32, i64)> = at.into_iter().collect();
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = client.describe_topic(topic).await.unwrap();
            let Some(short) = at.iter().find(|(p, o)| d.partitions[*p as usize].high_watermark <= *o) else { return };
            assert!(Instant::now() < deadline, "acknowledged offset {short:?} was never committed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record of `partitions` of `topic` up to their high watermarks,
    /// as (partition, offset) -> value, checking offsets are dense and no
    /// value appears twice.
    pub async fn log(&self, topic: &str, partitions: u32) -> BTreeMap<(u32, i64), String> {
        read_log(self.config(), topic, partitions).await
    }
}

/// Every record of `partitions` of `topic` up to their high watermarks.
pub async fn read_log(config: ClientConfig, topic: &str, partitions: u32) -> BTreeMap<(u32, i64), String> {
    let client = Client::connect(config).await.unwrap();
    let d = client.describe_topic(topic).await.unwrap();
    let total: i64 = d.partitions.iter().take(partitions as usize).map(|p| p.high_watermark).sum();
    let consumer = Consumer::new(client, topic, ConsumerConfig::default()).await.unwrap();
    let all: Vec<_> = (0..partitions).map(|p| (p, Offset::Earliest)).collect();
    let mut stream = consumer.stream(&all).await.unwrap();
    let mut log = BTreeMap::new();
    let mut values = std::collections::BTreeSet::new();
    let mut next = vec![0i64; partitions as usize];
    for _ in 0..total {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(r.offset, next[r.partition as usize], "offsets are dense and in order");
        next[r.partition as usize] += 1;
        let v = String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap();
        assert!(values.insert(v.clone()), "{v} is in the log twice");
        log.insert((r.partition, r.offset), v);
    }
    log
}
