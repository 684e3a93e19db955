//! The agent's lifecycle: [`Agent::start`] opens the stores and wires the
//! layers together, bottom up; [`Agent::shutdown`] stops them top down, so
//! that everything accepted is flushed, committed and handed over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use silt_metadata::{Catalog, MeteredStore};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::Auth;
use crate::clock::{self, SharedClock};
use crate::cluster::{Cluster, Identity};
use crate::config::{Config, TlsSource};
use crate::core::flush::Policy;
use crate::core::topic_config::TopicConfig;
use crate::error::AgentError;
use crate::frontend::quic::{tls, Listener};
use crate::frontend::{kafka, ops};
use crate::groups::Coordinator;
use crate::log::flush::{self, Flusher, Queue};
use crate::log::partition::Sink;
use crate::log::storage;
use crate::log::wal::{Replay, Wal};
use crate::metrics::{Metrics, Sample, Sampler};
use crate::read::{ReadCache, ReadPath, ReadStats, RecentObjects};
use crate::service::{Limits, Service};
use crate::upkeep::{self, Upkeep};

/// How long shutdown waits for in-flight requests before flushing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running agent.
pub struct Agent {
    listener: Listener,
    kafka: Option<kafka::Listener>,
    ops: Option<ops::Serving>,
    metrics_addr: Option<SocketAddr>,
    agent_id: String,
    ca_path: Option<PathBuf>,
    cluster: Arc<Cluster>,
    service_stop: CancellationToken,
    wal_stop: CancellationToken,
    wal_tasks: TaskTracker,
    cache: Arc<ReadCache>,
    flush_stop: CancellationToken,
    /// Partition actors and the cluster's tasks.
    background: TaskTracker,
    flusher: TaskTracker,
}

fn agent_id(data_dir: &Path) -> Result<String, AgentError> {
    let path = data_dir.join("agent-id");
    let io = |source| AgentError::DataDir { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => Err(io(std::io::Error::other("agent-id is empty"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("agent-{:016x}", rand::random::<u64>());
            std::fs::write(&path, format!("{id}\n")).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// Topic settings from the agent's flags, checked as topic configs are.
fn topic_defaults(config: &Config) -> Result<TopicConfig, AgentError> {
    let max = config.max_record_bytes as u32;
    let mut defaults = TopicConfig::kafka_defaults(max);
    for (flag, key, value) in &config.topic_defaults {
        defaults.set(key, value, max).map_err(|e| AgentError::Config { key: flag, reason: e.reason })?;
    }
    Ok(defaults)
}

/// What `/metrics` reads from the parts that keep it, at each scrape.
fn sampler(
    catalog: &Catalog,
    cache: &Arc<ReadCache>,
    inflight: Arc<Semaphore>,
    max_inflight: usize,
    cluster: &Arc<Cluster>,
) -> Sampler {
    let (catalog, cache, cluster) = (catalog.clone(), cache.clone(), cluster.clone());
    Box::new(move || {
        let meta = catalog.stats().unwrap_or_default();
        let read = cache.stats();
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        vec![
            Sample::counter("metadata_reads", "Metadata read requests (a get, batch get or scan page)", meta.reads),
            Sample::counter("metadata_writes", "Metadata transactions that wrote and committed", meta.writes),
            Sample::counter(
                "metadata_conflicts",
                "Metadata commits refused: another transaction changed the same keys",
                meta.conflicts,
            ),
            Sample::counter("metadata_errors", "Metadata reads and commits that failed otherwise", meta.errors),
            Sample::counter("read_cache_hits", "Reads served by the read cache (memory or disk)", read.cache_hits),
            Sample::counter("read_cache_misses", "Reads the read cache missed: GETs to the object store", read.gets),
            Sample::counter(
                "recent_object_hits",
                "Reads served by recently written objects kept in memory",
                read.recent_hits,
            ),
            Sample::gauge(
                "inflight_bytes",
                "Bytes accepted but not yet durable",
                int(max_inflight.saturating_sub(inflight.available_permits())),
            ),
            Sample::gauge("inflight_limit_bytes", "The in-flight byte limit (--max-inflight-bytes)", int(max_inflight)),
            Sample::gauge("owned_partitions", "Partitions this agent leads", int(cluster.led())),
            Sample::gauge(
                "session_live",
                "1 while this agent's session (which keeps its leases) is renewed in time",
                i64::from(cluster.session_live()),
            ),
        ]
    })
}

impl Agent {
    /// Opens storage, takes this agent's share of the partitions and starts serving.
    pub async fn start(config: Config) -> Result<Agent, AgentError> {
        Self::start_with_clock(config, clock::system()).await
    }

    /// [`Agent::start`] with the clock its decisions read.
    pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Agent, AgentError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|source| AgentError::DataDir { path: data_dir.display().to_string(), source })?;
        let agent_id = agent_id(data_dir)?;
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let metastore = MeteredStore::new(silt_metadata::open(&config.metadata_url).await?)
            .with_observer(Arc::new(move |took| m.metadata_seconds.observe(took.as_secs_f64())));
        let catalog = Catalog::new(Arc::new(metastore)).with_writer(&agent_id);
        let store = storage::Metered::wrap(storage::open(&config.object_store_url, &config.s3)?, metrics.clone());
        storage::check(store.as_ref(), &config.object_store_url, config.s3.endpoint.as_deref(), &agent_id).await?;
        let auth = Auth::load(config.auth, config.super_users.clone(), catalog.clone(), clock.clone()).await?;
        auth.bootstrap_admin(data_dir).await?;
        if !config.auth.on()
            && (!config.listen.ip().is_loopback()
                || config.kafka.as_ref().is_some_and(|k| !k.listen.ip().is_loopback()))
        {
            tracing::warn!("--auth none: anyone who reaches this agent may do anything");
        }
        let listener = Listener::bind(&config)?;
        let local_addr = listener.local_addr();
        let address = config.advertise.clone().unwrap_or_else(|| local_addr.to_string());
        let kafka = match &config.kafka {
            Some(k) => Some(kafka::Listener::bind(&config, k).await?),
            None => None,
        };
        let kafka_address = kafka.as_ref().map(|k| k.advertised().to_string()).unwrap_or_default();
        let ops = match config.metrics_listen {
            Some(addr) => Some(ops::Listener::bind(addr).await?),
            None => None,
        };

        let queue = Arc::new(Queue::new(Policy { max_bytes: config.flush_bytes, interval: config.flush_interval }));
        let recent = Arc::new(RecentObjects::new(config.recent_cache_bytes));
        let cache = ReadCache::open(&config.cache_dirs, config.cache_memory, config.cache_disk).await?;
        let read =
            ReadPath { store: store.clone(), catalog: catalog.clone(), recent: recent.clone(), cache: cache.clone() };

        // The flusher runs first: replaying the WAL feeds it.
        let flush_stop = CancellationToken::new();
        let flusher = TaskTracker::new();
        let f = Arc::new(Flusher {
            queue: queue.clone(),
            store: store.clone(),
            catalog: catalog.clone(),
            agent_id: agent_id.clone(),
            recent,
            seq: Default::default(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            give_up_after: config.gc_grace,
        });
        flusher.spawn(flush::run(f, flush_stop.clone(), config.max_uploads).instrument(tracing::info_span!("flusher")));

        let wal_stop = CancellationToken::new();
        let wal_tasks = TaskTracker::new();
        let (wal, replay) = if config.cache_dirs.is_empty() {
            (None, Replay::new())
        } else {
            let (wal, replay) =
                Wal::open(&config.cache_dirs, queue.clone(), metrics.clone(), &wal_tasks, wal_stop.clone());
            (Some(Arc::new(wal)), replay)
        };
        let has_wal = wal.is_some();
        let service_stop = CancellationToken::new();
        let background = TaskTracker::new();
        let inflight = Arc::new(Semaphore::new(config.max_inflight_bytes));
        let identity = Identity {
            agent_id: agent_id.clone(),
            address: address.clone(),
            kafka_address: kafka_address.clone(),
            lease_ttl: config.lease_ttl,
        };
        let cluster = Cluster::start(
            catalog.clone(),
            clock,
            identity,
            Sink { queue, wal, lost: Arc::default() },
            replay,
            inflight.clone(),
            metrics.clone(),
            background.clone(),
            service_stop.clone(),
        )
        .await?;
        let coordinator = Coordinator::start(
            catalog.clone(),
            cluster.clone(),
            cluster.clock().clone(),
            &background,
            service_stop.clone(),
        )
        .await?;
        let limits = Limits {
            topic_defaults: topic_defaults(&config)?,
            max_record_bytes: config.max_record_bytes,
            max_batch_bytes: config.max_frame_bytes - 1024,
            max_inflight_bytes: config.max_inflight_bytes,
            throttle_wait: config.throttle_wait,
            gc_grace: config.gc_grace,
        };
        Upkeep {
            catalog: catalog.clone(),
            cluster: cluster.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            read: read.clone(),
            seq: Default::default(),
            settings: upkeep::Settings {
                retention_every: config.retention_check_interval,
                gc_grace: config.gc_grace,
                gc_every: config.gc_interval,
                orphan_age: config.orphan_age,
                sweep_every: config.orphan_sweep_interval,
                compaction_min_age: config.compaction_min_age,
                object_compaction: config.object_compaction,
                topic_defaults: limits.topic_defaults,
                max_record_bytes: config.max_record_bytes as u32,
            },
        }
        .start(&background, service_stop.clone());
        let service = Arc::new(Service::new(
            cluster.clone(),
            coordinator,
            catalog.clone(),
            read,
            inflight.clone(),
            limits,
            metrics.clone(),
            has_wal,
            auth.clone(),
            service_stop.clone(),
        ));
        background.spawn(auth.run(config.auth_refresh, service_stop.clone()));
        metrics.sample_with(sampler(&catalog, &cache, inflight, config.max_inflight_bytes, &cluster));
        let (metrics_addr, ops) = match ops {
            Some(l) => {
                let addr = l.local_addr();
                tracing::info!(metrics = %addr, "serving /metrics, /healthz and /readyz");
                (
                    Some(addr),
                    Some(l.serve(
                        service.clone(),
                        ops::Health { catalog: catalog.clone(), store, cluster: cluster.clone() },
                    )),
                )
            }
            None => (None, None),
        };
        if let Some(k) = &kafka {
            k.serve(service.clone(), &config);
            tracing::info!(kafka = %k.local_addr(), advertised = %k.advertised(), "Kafka listener started");
        }
        listener.serve(service, &config);
        let ca_path = match &config.tls {
            TlsSource::LocalCa(dir) => Some(dir.join(tls::CA_FILE)),
            TlsSource::Files { .. } => None,
        };
        tracing::info!(%local_addr, %address, agent_id, metadata = %config.metadata_url, objects = %config.object_store_url, "agent started");
        Ok(Agent {
            listener,
            kafka,
            ops,
            metrics_addr,
            agent_id,
            ca_path,
            cluster,
            service_stop,
            wal_stop,
            wal_tasks,
            cache,
            flush_stop,
            background,
            flusher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The Kafka listener's bound address, when it has one.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka.as_ref().map(kafka::Listener::local_addr)
    }

    /// The operations listener's bound address, when it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// GETs sent to the object store and reads served from caches.
    pub fn read_stats(&self) -> ReadStats {
        self.cache.stats()
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The CA clients should trust, when the agent uses its local CA.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Stops accepting, lets in-flight requests finish, flushes what was
    /// accepted, releases the partitions and closes the listener.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.cluster.stop_accepting();
        self.listener.stop_accepting();
        if let Some(k) = &self.kafka {
            k.stop_accepting();
        }
        // In-flight produces finish when the flusher commits them; fetches
        // waiting on the tail return when the service stops.
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // The WAL hands what it holds to the flush queue, then the final flush takes it.
            self.wal_stop.cancel();
            self.wal_tasks.close();
            self.wal_tasks.wait().await;
            self.flush_stop.cancel();
            self.flusher.close();
            self.flusher.wait().await;
            // Everything accepted is committed: let the next owners take over now.
            self.cluster.release_all().await;
            self.service_stop.cancel();
            self.listener.drained().await;
            if let Some(k) = &self.kafka {
                k.drained().await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("in-flight requests did not finish in time");
        }
        self.wal_stop.cancel();
        self.flush_stop.cancel();
        self.service_stop.cancel();
        self.flusher.close();
        self.flusher.wait().await;
        self.wal_tasks.close();
        self.wal_tasks.wait().await;
        self.background.close();
        self.background.wait().await;
        if tokio::time::timeout(Duration::from_secs(5), self.cache.close()).await.is_err() {
            tracing::warn!("the read cache did not close in time");
        }
        self.listener.close().await;
        if let Some(ops) = self.ops {
            ops.close().await;
        }
        tracing::info!("stopped");
    }
}
