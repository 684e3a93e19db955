//! The QUIC front end and the agent's lifecycle.
//!
//! One accept loop; one task per connection (capped by a semaphore); one
//! task per bidirectional stream, which carries exactly one request and its
//! response frames. A cancellation token stops accepting; shutdown then
//! waits for in-flight requests, flushes, and closes the endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use silt_metadata::Catalog;
use silt_wire::frame::{self, Frame};
use silt_wire::{ErrorCode, Request, Response};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cache::{ReadCache, ReadStats};
use crate::codes::{code_of, message_of};
use crate::config::{Config, TlsSource};
use crate::error::{AgentError, ServiceError};
use crate::flush::{self, Flusher, Policy, Queue};
use crate::metrics::Metrics;
use crate::partition::Sink;
use crate::read::{ReadPath, RecentObjects};
use crate::service::{Limits, Service};
use crate::wal::{Replay, Wal};
use crate::{storage, tls};

/// How long a client may take to send one request frame.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests before flushing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest long-poll a fetch may ask for.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// A running agent.
pub struct Agent {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    agent_id: String,
    ca_path: Option<PathBuf>,
    service: Arc<Service>,
    accept_stop: CancellationToken,
    service_stop: CancellationToken,
    wal_stop: CancellationToken,
    wal_tasks: TaskTracker,
    cache: Arc<ReadCache>,
    flush_stop: CancellationToken,
    connections: TaskTracker,
    background: TaskTracker,
    flusher: TaskTracker,
}

fn agent_id(data_dir: &std::path::Path) -> Result<String, AgentError> {
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

impl Agent {
    /// Opens storage, takes ownership of every partition and starts serving.
    pub async fn start(config: Config) -> Result<Agent, AgentError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|source| AgentError::DataDir { path: data_dir.display().to_string(), source })?;
        let agent_id = agent_id(data_dir)?;
        let metastore = silt_metadata::open(&config.metadata_url).await?;
        let catalog = Catalog::new(metastore);
        let store = storage::open(&config.object_store_url, &config.s3)?;
        storage::check(store.as_ref(), &config.object_store_url, config.s3.endpoint.as_deref(), &agent_id).await?;

        let advertise_hint = config.advertise.clone().unwrap_or_else(|| config.listen.to_string());
        let material = tls::load(&config.tls, &tls::default_names(&advertise_hint))?;
        let server_config = tls::server_config(material, config.max_streams)?;
        let endpoint = quinn::Endpoint::server(server_config, config.listen)
            .map_err(|source| AgentError::Bind { addr: config.listen.to_string(), source })?;
        let local_addr =
            endpoint.local_addr().map_err(|source| AgentError::Bind { addr: config.listen.to_string(), source })?;
        let address = config.advertise.clone().unwrap_or_else(|| local_addr.to_string());

        let service_stop = CancellationToken::new();
        let background = TaskTracker::new();
        let queue = Arc::new(Queue::new(Policy { max_bytes: config.flush_bytes, interval: config.flush_interval }));
        let recent = Arc::new(RecentObjects::new(config.recent_cache_bytes));
        let limits = Limits {
            max_record_bytes: config.max_record_bytes,
            max_batch_bytes: config.max_frame_bytes - 1024,
            max_inflight_bytes: config.max_inflight_bytes,
            throttle_wait: config.throttle_wait,
        };
        let cache = ReadCache::open(&config.cache_dirs, config.cache_memory, config.cache_disk).await?;
        let read =
            ReadPath { store: store.clone(), catalog: catalog.clone(), recent: recent.clone(), cache: cache.clone() };

        let metrics = Arc::new(Metrics::default());
        // The flusher runs first: replaying the WAL feeds it.
        let flush_stop = CancellationToken::new();
        let flusher = TaskTracker::new();
        let f = Arc::new(Flusher {
            queue: queue.clone(),
            store,
            catalog: catalog.clone(),
            agent_id: agent_id.clone(),
            recent,
            seq: Default::default(),
            metrics: metrics.clone(),
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
        let sink = Sink { queue, wal };
        let service = Service::start(
            catalog,
            agent_id.clone(),
            address.clone(),
            sink,
            replay,
            read,
            limits,
            config.lease_ttl,
            background.clone(),
            service_stop.clone(),
            metrics,
        )
        .await?;

        let accept_stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let ctx = Arc::new(Context {
            service: service.clone(),
            max_frame_bytes: config.max_frame_bytes,
            read_budget: Arc::new(Semaphore::new(config.max_inflight_bytes)),
            stop: accept_stop.clone(),
        });
        let slots = Arc::new(Semaphore::new(config.max_connections as usize));
        connections.spawn(
            accept_loop(endpoint.clone(), ctx, slots, connections.clone()).instrument(tracing::info_span!("accept")),
        );
        let ca_path = match &config.tls {
            TlsSource::LocalCa(dir) => Some(dir.join(tls::CA_FILE)),
            TlsSource::Files { .. } => None,
        };
        tracing::info!(%local_addr, %address, agent_id, metadata = %config.metadata_url, objects = %config.object_store_url, "agent started");
        Ok(Agent {
            endpoint,
            local_addr,
            agent_id,
            ca_path,
            service,
            accept_stop,
            service_stop,
            wal_stop,
            wal_tasks,
            cache,
            flush_stop,
            connections,
            background,
            flusher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// GETs sent to the object store and reads served from caches.
    pub fn read_stats(&self) -> ReadStats {
        self.cache.stats()
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The CA clients should trust, when the agent uses its local CA.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.ca_path.as_deref()
    }

    /// Stops accepting, lets in-flight requests finish, flushes what was
    /// accepted, releases the partitions and closes the listener.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.service.stop_accepting();
        self.accept_stop.cancel();
        self.connections.close();
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
            self.service.release_all().await;
            self.service_stop.cancel();
            self.connections.wait().await;
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
        self.endpoint.close(0u32.into(), b"agent shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!("stopped");
    }
}

struct Context {
    service: Arc<Service>,
    max_frame_bytes: usize,
    /// Bytes of request frames being read, across all connections: a frame's
    /// buffer is allocated only once its length fits, so clients that
    /// declare large frames and stall cannot grow the agent's memory.
    read_budget: Arc<Semaphore>,
    stop: CancellationToken,
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Context>, slots: Arc<Semaphore>, tasks: TaskTracker) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = ctx.stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let span = tracing::debug_span!("connection", remote = %incoming.remote_address());
        let ctx = ctx.clone();
        tasks.spawn(
            async move {
                let _slot = slot;
                match incoming.await {
                    Ok(conn) => serve_connection(conn, ctx).await,
                    Err(e) => tracing::debug!(error = %e, "handshake failed"),
                }
            }
            .instrument(span),
        );
    }
}

async fn serve_connection(conn: quinn::Connection, ctx: Arc<Context>) {
    let streams = TaskTracker::new();
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => { tracing::debug!(reason = %e, "connection closed"); break }
            },
            _ = ctx.stop.cancelled() => break,
        };
        streams.spawn(serve_stream(send, recv, ctx.clone()).in_current_span());
    }
    streams.close();
    streams.wait().await;
}

async fn read_frame(recv: &mut quinn::RecvStream, max: usize, budget: &Semaphore) -> Result<Frame, String> {
    let mut prefix = [0u8; frame::PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(|e| format!("reading the frame length: {e}"))?;
    let len = frame::parse_length(prefix, max).map_err(|e| e.to_string())?;
    // The body grows as bytes arrive, each chunk taking its share of the
    // agent-wide read budget: a client that declares a large frame and
    // stalls costs nothing, and buffered request bytes stay bounded. The
    // budget is held until the request is decoded; produce then accounts
    // for the batch under its own in-flight limit.
    let mut body = BytesMut::with_capacity(len.min(64 << 10));
    let mut held: Option<tokio::sync::SemaphorePermit<'_>> = None;
    while body.len() < len {
        let chunk = recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| format!("reading a {len}-byte frame: {e}"))?
            .ok_or_else(|| format!("the stream ended {} bytes into a {len}-byte frame", body.len()))?;
        let permit = budget.acquire_many(chunk.bytes.len() as u32).await.map_err(|_| "the agent is shutting down")?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        body.extend_from_slice(&chunk.bytes);
    }
    Frame::decode(body.freeze()).map_err(|e| e.to_string())
}

async fn reply(send: &mut quinn::SendStream, response: &Response) -> bool {
    send.write_all(&response.encode()).await.is_ok()
}

fn error_response(e: &ServiceError) -> Response {
    Response::error(code_of(e), message_of(e))
}

async fn serve_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream, ctx: Arc<Context>) {
    let frame =
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_frame(&mut recv, ctx.max_frame_bytes, &ctx.read_budget))
            .await
        {
            Ok(Ok(f)) => f,
            Ok(Err(reason)) => return close_malformed(send, recv, ErrorCode::MalformedFrame, reason).await,
            Err(_) => {
                return close_malformed(send, recv, ErrorCode::Timeout, "no whole request frame in time".into()).await
            }
        };
    let request = match Request::decode(&frame) {
        Ok(r) => r,
        Err(e) => {
            return close_malformed(send, recv, ErrorCode::MalformedFrame, format!("malformed request: {e}")).await
        }
    };
    tracing::debug!(kind = request.kind(), "request");
    let service = &ctx.service;
    let response = match request {
        Request::CreateTopic { name, partitions } => {
            service.create_topic(&name, partitions).await.map(|_| Response::Done)
        }
        Request::DeleteTopic { name } => service.delete_topic(&name).await.map(|_| Response::Done),
        Request::ListTopics => service.list_topics().await.map(Response::Topics),
        Request::Stats => Ok(Response::Stats(service.stats())),
        Request::ListAgents => service.list_agents().await.map(Response::Agents),
        Request::InitProducer => {
            service.init_producer().await.map(|producer_id| Response::ProducerId { producer_id, epoch: 0 })
        }
        Request::DescribeTopic { name } => service.describe_topic(&name).await.map(Response::Topic),
        Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
            let wait = Duration::from_millis(max_wait_ms.into()).min(MAX_FETCH_WAIT);
            service.fetch(&topic, partition, offset, max_bytes as usize, wait).await.map(|f| Response::Fetched {
                high_watermark: f.high_watermark,
                log_start: f.log_start,
                batches: f.batches,
            })
        }
        Request::Produce { topic, partition, acks, batch } => {
            match service.produce(&topic, partition, acks, batch).await {
                Ok(ticket) => {
                    if !reply(&mut send, &Response::ProduceAssigned { base_offset: ticket.base_offset }).await {
                        return;
                    }
                    let outcome = |r: Result<Result<(i64, i64), ServiceError>, _>| match r {
                        Ok(Ok(offsets)) => Ok(offsets),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(ServiceError::ShuttingDown),
                    };
                    match (outcome(ticket.done.await), ticket.committed) {
                        (Ok((base_offset, last_offset)), Some(committed)) => {
                            // acks=local: answered from the WAL; the commit follows.
                            if !reply(&mut send, &Response::Produced { base_offset, last_offset }).await {
                                return;
                            }
                            outcome(committed.await)
                                .map(|(base_offset, last_offset)| Response::Committed { base_offset, last_offset })
                        }
                        (Ok((base_offset, last_offset)), None) => Ok(Response::Produced { base_offset, last_offset }),
                        (Err(e), _) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
    };
    let response = response.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "request failed");
        error_response(&e)
    });
    if reply(&mut send, &response).await {
        finish(send).await;
    }
}

/// Ends a stream and waits (briefly) until the peer has all of it: the
/// connection may close right after this task ends, which would discard
/// data still in flight.
async fn finish(mut send: quinn::SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    }
}

/// Answers a stream that did not carry a valid request with an error frame,
/// then closes both directions with the error code. The connection and
/// every other stream carry on.
async fn close_malformed(mut send: quinn::SendStream, mut recv: quinn::RecvStream, code: ErrorCode, reason: String) {
    tracing::debug!(%code, %reason, "closing a stream");
    let _ = recv.stop(quinn::VarInt::from(u32::from(code.as_u16())));
    if reply(&mut send, &Response::error(code, reason)).await {
        finish(send).await;
    }
}
