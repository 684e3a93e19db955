//! A `silt connect` worker: every third of its TTL it tells the agents it
//! is alive (a round) and hears which connectors it holds; it starts those
//! it does not run yet, stops those it no longer holds, and reports its
//! tasks' errors at the next round. A task that fails is retried with
//! backoff while the worker holds it. If no round succeeds for a whole
//! TTL, the worker's claims may have lapsed: it stops every task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use silt_client::{AutoOffsetReset, Client, ConnectHeartbeat, ConnectorInfo, ErrorCode, GroupConfig, GroupConsumer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, Kind};
use crate::{file_sink, file_source, http_sink, postgres_source, s3_sink};

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique among workers (a restarted worker may reuse its id).
    pub id: String,
    /// How long a claim lasts without a round.
    pub ttl: Duration,
    /// A standalone worker's connectors (empty: a pool worker).
    pub standalone: Vec<String>,
}

/// A sink's group session: short, so a dead worker's partitions move soon.
const SINK_SESSION: Duration = Duration::from_secs(10);

/// The longest pause between retries of a failing task.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a running connector needs.
#[derive(Clone)]
pub struct Task {
    pub client: Client,
    pub name: String,
    pub worker: String,
    pub epoch: u64,
    pub config: ConnectorConfig,
    /// The source's progress as last committed.
    pub position: Arc<Mutex<String>>,
    pub stop: CancellationToken,
    /// Set when the task failed; cleared (and the error with it, at the
    /// next round) once it makes progress again.
    failed: Arc<std::sync::atomic::AtomicBool>,
    errors: Errors,
}

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Another worker holds the connector now: stop for good.
    #[error("fenced: another worker holds the connector now")]
    Fenced,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<silt_client::ClientError> for TaskError {
    fn from(e: silt_client::ClientError) -> Self {
        match e.code() {
            Some(ErrorCode::Fenced) => TaskError::Fenced,
            _ => TaskError::Failed(e.into()),
        }
    }
}

impl Task {
    /// Stores the source's progress (refused once another worker holds it).
    pub async fn commit(&self, position: String) -> Result<(), TaskError> {
        self.client.commit_connector(&self.name, &self.worker, self.epoch, &position).await?;
        *self.position.lock().expect("position lock") = position;
        self.progressed();
        Ok(())
    }

    /// The task moved on: an error it reported before is over.
    pub fn progressed(&self) {
        if self.failed.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.errors.lock().expect("errors lock").push((self.name.clone(), self.epoch, String::new()));
        }
    }

    /// A sink's member of the group named after its connector, reading
    /// `topics` from the earliest offset when the group has none, with
    /// offsets committed only when the sink says.
    pub async fn sink_consumer(&self, topics: &[String]) -> Result<GroupConsumer, TaskError> {
        let group = GroupConfig {
            session_timeout: SINK_SESSION,
            auto_commit: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..Default::default()
        };
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let consumer = GroupConsumer::subscribe(self.client.clone(), &self.name, &topics, group)
            .await
            .with_context(|| format!("joining group {}", self.name))?;
        Ok(consumer)
    }

    pub fn position(&self) -> String {
        self.position.lock().expect("position lock").clone()
    }

    async fn run_once(&self) -> Result<(), TaskError> {
        match &self.config.kind {
            Kind::FileSource(c) => file_source::run(self, c).await,
            Kind::FileSink(c) => file_sink::run(self, c).await,
            Kind::HttpSink(c) => http_sink::run(self, c).await,
            Kind::S3Sink(c) => s3_sink::run(self, c).await,
            Kind::Postgres(c) => postgres_source::run(self, c).await,
        }
    }
}

struct Running {
    epoch: u64,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

type Errors = Arc<Mutex<Vec<(String, u64, String)>>>;

/// The worker's connection to the agents, replaced when it is lost.
type Shared = Arc<Mutex<Client>>;

/// Runs a task until it is stopped or fenced, retrying failures with backoff.
async fn supervise(mut task: Task, shared: Shared) {
    let errors = task.errors.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        // Each attempt uses the worker's current connection.
        task.client = shared.lock().expect("client lock").clone();
        let result = task.run_once().await;
        if task.stop.is_cancelled() {
            return;
        }
        let error = match result {
            // A task runs until stopped: one that ends by itself starts again.
            Ok(()) => "it stopped by itself".to_string(),
            Err(TaskError::Fenced) => {
                tracing::info!(connector = %task.name, "fenced: another worker holds it now");
                return;
            }
            Err(TaskError::Failed(e)) => format!("{e:#}"),
        };
        tracing::warn!(connector = %task.name, error = %error, retry_in = ?backoff, "connector failed");
        task.failed.store(true, std::sync::atomic::Ordering::Relaxed);
        errors.lock().expect("errors lock").push((task.name.clone(), task.epoch, error));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = task.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A connection to the agents, opened again when the last one was lost.
async fn connected(shared: &Shared) -> Result<Client, silt_client::ClientError> {
    let current = shared.lock().expect("client lock").clone();
    if current.is_open() {
        return Ok(current);
    }
    let fresh = Client::connect(current.config().clone()).await?;
    *shared.lock().expect("client lock") = fresh.clone();
    Ok(fresh)
}

/// Runs the worker until `stop`.
pub async fn run(client: Client, config: WorkerConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let shared: Shared = Arc::new(Mutex::new(client));
    let errors: Errors = Arc::default();
    let mut running: HashMap<String, Running> = HashMap::new();
    // Configs that did not parse, by name: (epoch, config), reported once.
    let mut invalid: HashMap<String, (u64, String)> = HashMap::new();
    let every = config.ttl / 3;
    let mut last_round = tokio::time::Instant::now();
    loop {
        let reported: Vec<(String, u64, String)> = std::mem::take(&mut *errors.lock().expect("errors lock"));
        let heartbeat = ConnectHeartbeat {
            worker: config.id.clone(),
            ttl_ms: u32::try_from(config.ttl.as_millis()).unwrap_or(u32::MAX),
            standalone: config.standalone.clone(),
            errors: reported.clone(),
        };
        let round = match connected(&shared).await {
            Ok(client) => client.connect_heartbeat(heartbeat).await,
            Err(e) => Err(e),
        };
        match round {
            Ok(held) => {
                last_round = tokio::time::Instant::now();
                reconcile(&shared, &config, held, &mut running, &mut invalid, &errors).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a connect round failed; retrying");
                // Keep what was not told yet for the next round.
                errors.lock().expect("errors lock").splice(0..0, reported);
                if last_round.elapsed() >= config.ttl && !running.is_empty() {
                    tracing::warn!("no round for a whole TTL: stopping every connector (their claims may have lapsed)");
                    for (_, r) in running.drain() {
                        stop_task(r).await;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    for (_, r) in running.drain() {
        stop_task(r).await;
    }
    Ok(())
}

async fn stop_task(r: Running) {
    r.stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), r.handle).await.is_err() {
        tracing::warn!("a connector did not stop within 10 s");
    }
}

async fn reconcile(
    shared: &Shared,
    config: &WorkerConfig,
    held: Vec<ConnectorInfo>,
    running: &mut HashMap<String, Running>,
    invalid: &mut HashMap<String, (u64, String)>,
    errors: &Errors,
) {
    let keep: HashMap<&str, u64> = held.iter().map(|c| (c.name.as_str(), c.epoch)).collect();
    let gone: Vec<String> =
        running.iter().filter(|(n, r)| keep.get(n.as_str()) != Some(&r.epoch)).map(|(n, _)| n.clone()).collect();
    for name in gone {
        if let Some(r) = running.remove(&name) {
            tracing::info!(connector = %name, "no longer held here: stopping");
            stop_task(r).await;
        }
    }
    invalid.retain(|n, _| keep.contains_key(n.as_str()));
    for c in held {
        if running.contains_key(&c.name) {
            continue;
        }
        let parsed = match ConnectorConfig::parse(&c.config, Some(&c.name)) {
            Ok(p) => p,
            Err(e) => {
                if invalid.get(&c.name) != Some(&(c.epoch, c.config.clone())) {
                    errors.lock().expect("errors lock").push((c.name.clone(), c.epoch, format!("invalid config: {e}")));
                    invalid.insert(c.name.clone(), (c.epoch, c.config.clone()));
                }
                continue;
            }
        };
        tracing::info!(connector = %c.name, epoch = c.epoch, kind = parsed.kind.name(), "starting");
        let stop = CancellationToken::new();
        let task = Task {
            client: shared.lock().expect("client lock").clone(),
            name: c.name.clone(),
            worker: config.id.clone(),
            epoch: c.epoch,
            config: parsed,
            position: Arc::new(Mutex::new(c.position)),
            stop: stop.clone(),
            failed: Arc::default(),
            errors: errors.clone(),
        };
        let handle = tokio::spawn(supervise(task, shared.clone()));
        running.insert(c.name, Running { epoch: c.epoch, stop, handle });
    }
}
