//! silt's protocol over QUIC.
//!
//! One accept loop; one task per connection (capped by a semaphore); one
//! task per bidirectional stream, which carries exactly one request and its
//! response frames. A cancellation token stops accepting; the agent then
//! waits for in-flight requests before it flushes and closes the endpoint.
//!
//! - [`codes`]: the agent's errors as wire error codes.
//! - [`tls`]: certificates (the local CA, or given files; client certificates).
//! - [`authz`]: what each request needs its principal to be allowed.
//! - `handle` (here): requests mapped onto the service, answers onto frames.

pub mod authz;
pub mod codes;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use silt_wire::frame::{self, Frame};
use silt_wire::{DecodeError, FrameError, Request, Response};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use silt_wire::auth::{Operation, ResourceType};

use crate::auth::{Auth, Session};
use crate::config::Config;
use crate::error::{describe, AgentError, ServiceError};
use crate::service::{self, Service};

/// How long a client may take to send one request frame.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest long-poll a fetch may ask for.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// Why a stream carried no request.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the frame length")]
    Prefix(#[source] quinn::ReadExactError),
    #[error("reading a {len}-byte frame")]
    Body {
        len: usize,
        #[source]
        source: quinn::ReadError,
    },
    #[error("the stream ended {got} bytes into a {len}-byte frame")]
    Ended { got: usize, len: usize },
    #[error("bad frame")]
    Frame(#[from] FrameError),
    #[error("malformed request")]
    Request(#[source] DecodeError),
    #[error("no whole request frame in time")]
    Timeout,
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// The QUIC listener.
pub struct Listener {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    stop: CancellationToken,
    connections: TaskTracker,
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

impl Listener {
    /// Binds the endpoint `config.listen` names (TLS from `config.tls`).
    pub fn bind(config: &Config) -> Result<Listener, AgentError> {
        let advertise_hint = config.advertise.clone().unwrap_or_else(|| config.listen.to_string());
        let material = tls::load(&config.tls, &tls::default_names(&advertise_hint))?;
        let clients = tls::ClientCerts::of(config, config.auth.token);
        let server_config = tls::server_config(material, &clients, config.max_streams)?;
        let endpoint = tls::server_endpoint(server_config, config.listen)
            .map_err(|source| AgentError::Bind { addr: config.listen.to_string(), source })?;
        let local_addr =
            endpoint.local_addr().map_err(|source| AgentError::Bind { addr: config.listen.to_string(), source })?;
        Ok(Listener { endpoint, local_addr, stop: CancellationToken::new(), connections: TaskTracker::new() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts accepting connections for `service`.
    pub fn serve(&self, service: Arc<Service>, config: &Config) {
        let ctx = Arc::new(Context {
            service,
            max_frame_bytes: config.max_frame_bytes,
            read_budget: Arc::new(Semaphore::new(config.max_inflight_bytes)),
            stop: self.stop.clone(),
        });
        let slots = Arc::new(Semaphore::new(config.max_connections as usize));
        let (endpoint, tasks) = (self.endpoint.clone(), self.connections.clone());
        self.connections.spawn(accept_loop(endpoint, ctx, slots, tasks).instrument(tracing::info_span!("accept")));
    }

    /// Stops accepting connections and new requests on open ones.
    pub fn stop_accepting(&self) {
        self.stop.cancel();
        self.connections.close();
    }

    /// Waits until every connection's requests are answered.
    pub async fn drained(&self) {
        self.connections.wait().await;
    }

    /// Closes the endpoint, giving peers a moment to hear it.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"agent shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
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
    let _open = ctx.service.metrics().connection("quic");
    let host = conn.remote_address().ip().to_string();
    let certs = conn.peer_identity().and_then(|i| i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok());
    let session = ctx.service.auth().session(tls::peer_principal(certs.as_deref().map(Vec::as_slice)));
    let streams = TaskTracker::new();
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => { tracing::debug!(reason = %e, "connection closed"); break }
            },
            _ = ctx.stop.cancelled() => break,
        };
        streams.spawn(serve_stream(send, recv, ctx.clone(), host.clone(), session.clone()).in_current_span());
    }
    streams.close();
    streams.wait().await;
}

async fn read_frame(recv: &mut quinn::RecvStream, max: usize, budget: &Semaphore) -> Result<Frame, StreamError> {
    let mut prefix = [0u8; frame::PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(StreamError::Prefix)?;
    let len = frame::parse_length(prefix, max)?;
    // The body grows as bytes arrive, each chunk taking its share of the
    // agent-wide read budget: a client that declares a large frame and
    // stalls costs nothing, and buffered request bytes stay bounded. The
    // budget is held until the request is decoded; produce then accounts
    // for the batch under its own in-flight limit.
    // The chunks are kept as they came and joined once at the end: one
    // copy, not one per doubling of a growing buffer.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut got = 0usize;
    let mut held: Option<tokio::sync::SemaphorePermit<'_>> = None;
    while got < len {
        let chunk = recv
            .read_chunk(len - got, true)
            .await
            .map_err(|source| StreamError::Body { len, source })?
            .ok_or(StreamError::Ended { got, len })?;
        let permit = budget.acquire_many(chunk.bytes.len() as u32).await.map_err(|_| StreamError::ShuttingDown)?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        got += chunk.bytes.len();
        chunks.push(chunk.bytes);
    }
    let body = match chunks.len() {
        1 => chunks.pop().expect("one chunk"),
        _ => Bytes::from(chunks.concat()),
    };
    Ok(Frame::decode(body)?)
}

async fn reply(send: &mut quinn::SendStream, response: &Response) -> bool {
    send.write_all(&response.encode()).await.is_ok()
}

fn error_response(e: &ServiceError) -> Response {
    Response::error(codes::code_of(e), describe(e))
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<Context>,
    host: String,
    session: Arc<Session>,
) {
    let read = read_frame(&mut recv, ctx.max_frame_bytes, &ctx.read_budget);
    let request = match tokio::time::timeout(REQUEST_READ_TIMEOUT, read).await {
        Ok(Ok(frame)) => Request::decode(&frame).map_err(StreamError::Request),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StreamError::Timeout),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return close_malformed(send, recv, e).await,
    };
    tracing::debug!(kind = request.name(), "request");
    let _in_flight = ctx.service.metrics().request("quic", request.name());
    let response = match authorize(ctx.service.auth(), &session, &request) {
        Ok(()) => handle(&ctx.service, &session, request, &mut send, &host).await,
        Err(e) => Some(Err(e)),
    };
    let response = match response {
        Some(r) => r,
        None => return, // the client went away mid-answer
    };
    let written = match response {
        Ok(Answer::Frame(response)) => reply(&mut send, &response).await,
        // Records go out as the slices the read path holds, uncopied.
        Ok(Answer::Fetched(f)) => {
            let mut chunks = Response::fetched_chunks(f.high_watermark, f.log_start, &f.batches);
            send.write_all_chunks(&mut chunks).await.is_ok()
        }
        Err(e) => {
            tracing::debug!(error = %describe(&e), "request failed");
            reply(&mut send, &error_response(&e)).await
        }
    };
    if written {
        finish(send).await;
    }
}

/// A request's last answer.
enum Answer {
    Frame(Response),
    Fetched(crate::service::Fetched),
}

/// Whether the session may make this request (see [`authz`]).
fn authorize(auth: &Auth, session: &Session, request: &Request) -> Result<(), ServiceError> {
    match authz::needs(request) {
        authz::Needs::Nothing => Ok(()),
        authz::Needs::Authenticated => auth.check_authenticated(session),
        authz::Needs::Producer => auth.check_producer(session),
        authz::Needs::All(all) => all.iter().try_for_each(|n| auth.check(session, n.resource, n.name, n.operation)),
        authz::Needs::Any(any) => {
            let mut first = None;
            for n in &any {
                match auth.check(session, n.resource, n.name, n.operation) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            first.map_or(Ok(()), Err)
        }
    }
}

/// Runs one request. Produce answers in several frames and writes all but
/// the last itself; None when the client went away.
async fn handle(
    service: &Service,
    session: &Session,
    request: Request,
    send: &mut quinn::SendStream,
    host: &str,
) -> Option<Result<Answer, ServiceError>> {
    let response = match request {
        Request::CreateTopic { name, partitions, configs } => {
            service.create_topic(&name, partitions, &configs).await.map(|_| Response::Done)
        }
        Request::AlterTopic { name, set, delete } => {
            service.alter_topic(&name, &set, &delete).await.map(|_| Response::Done)
        }
        Request::DeleteTopic { name } => service.delete_topic(&name).await.map(|_| Response::Done),
        Request::ListTopics => service.list_topics().await.map(|topics| {
            let auth = service.auth();
            Response::Topics(
                topics
                    .into_iter()
                    .filter(|t| auth.allows(session, ResourceType::Topic, t, Operation::Describe))
                    .collect(),
            )
        }),
        Request::Stats => Ok(Response::Stats(service.stats())),
        Request::ListAgents => {
            service.list_agents().await.map(|a| Response::Agents(a.into_iter().map(agent_info).collect()))
        }
        Request::InitProducer => {
            service.init_producer().await.map(|producer_id| Response::ProducerId { producer_id, epoch: 0 })
        }
        Request::DescribeTopic { name } => {
            service.describe_topic(&name).await.map(|t| Response::Topic(topic_description(t)))
        }
        Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
            let wait = Duration::from_millis(max_wait_ms.into()).min(MAX_FETCH_WAIT);
            return Some(service.fetch(&topic, partition, offset, max_bytes as usize, wait).await.map(Answer::Fetched));
        }
        Request::FindCoordinator { group } => {
            service.find_coordinator(&group).await.map(|address| Response::Coordinator { address })
        }
        Request::GroupHeartbeat(h) => {
            let wait = Duration::from_millis(h.wait_ms.into());
            let group = h.group.clone();
            let hb = heartbeat(h, host);
            service.group_heartbeat(&group, hb, wait).await.map(|a| {
                Response::GroupAssignment(silt_wire::GroupAssignment {
                    member_epoch: a.member_epoch,
                    heartbeat_interval_ms: crate::groups::HEARTBEAT_INTERVAL_MS,
                    settled: a.settled,
                    assigned: by_topic(&a.assigned),
                })
            })
        }
        Request::OffsetCommit(c) => {
            let offsets: Vec<(String, u32, i64)> =
                c.offsets.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
            service.commit_offsets(&c.group, &c.member_id, c.member_epoch, &offsets).await.map(|_| Response::Done)
        }
        Request::OffsetFetch { group, topics } => service.fetch_offsets(&group, &topics).await.map(|o| {
            let auth = service.auth();
            Response::Offsets(
                o.into_iter()
                    .filter(|(topic, _, _)| auth.allows(session, ResourceType::Topic, topic, Operation::Describe))
                    .map(|(topic, partition, offset)| silt_wire::TopicOffset { topic, partition, offset })
                    .collect(),
            )
        }),
        Request::ListGroups => service.list_groups().await.map(|groups| {
            let auth = service.auth();
            Response::Groups(
                groups
                    .into_iter()
                    .filter(|g| auth.allows(session, ResourceType::Group, &g.name, Operation::Describe))
                    .map(|g| silt_wire::GroupInfo { name: g.name, state: g.state, members: g.members, epoch: g.epoch })
                    .collect(),
            )
        }),
        Request::DescribeGroup { group } => {
            service.describe_group(&group).await.map(|g| Response::Group(group_description(g)))
        }
        Request::ResetOffsets { group, topic, to } => {
            let to = match to {
                silt_wire::ResetTo::Earliest => service::Reset::Earliest,
                silt_wire::ResetTo::Latest => service::Reset::Latest,
                silt_wire::ResetTo::Offset(n) => service::Reset::Offset(n),
            };
            service.reset_offsets(&group, &topic, to).await.map(|_| Response::Done)
        }
        Request::DeleteGroup { group } => service.delete_group(&group).await.map(|_| Response::Done),
        Request::PutConnector { name, config, standalone, replace } => {
            service.put_connector(&name, &config, standalone, replace).await.map(|_| Response::Done)
        }
        Request::ListConnectors => service.list_connectors().await.map(Response::Connectors),
        Request::ConnectorAction { name, action } => {
            service.connector_action(&name, action).await.map(|_| Response::Done)
        }
        Request::ConnectHeartbeat(h) => service.connect_heartbeat(h).await.map(Response::Connectors),
        Request::CommitConnector { name, worker, epoch, position } => {
            service.commit_connector(&name, &worker, epoch, &position).await.map(|_| Response::Done)
        }
        Request::Authenticate { token } => {
            service.auth().authenticate(session, &token).map(|name| Response::Principal { name })
        }
        Request::WhoAmI => match session.principal() {
            Some(name) => Ok(Response::Principal { name }),
            None => Err(ServiceError::Unauthenticated("this connection has not authenticated".into())),
        },
        Request::CreateToken { principal, ttl_ms } => {
            let ttl = (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms));
            service.create_token(&principal, ttl).await.map(|secret| Response::Token { secret })
        }
        Request::RevokeToken { principal } => service.revoke_token(&principal).await.map(|_| Response::Done),
        Request::ListTokens => service.list_tokens().await.map(Response::Tokens),
        Request::AlterAcl { acl, remove } => service.alter_acl(&acl, remove).await.map(|_| Response::Done),
        Request::ListAcls => service.list_acls().await.map(Response::Acls),
        Request::Produce { topic, partition, acks, batch } => {
            let ticket = match service.produce(&topic, partition, acks_of(acks), batch).await {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            if !reply(send, &Response::ProduceAssigned { base_offset: ticket.base_offset }).await {
                return None;
            }
            let outcome = |r: Result<crate::log::Outcome, _>| r.unwrap_or(Err(ServiceError::ShuttingDown));
            match ticket.acked().await {
                (Ok((base_offset, last_offset)), Some(committed)) => {
                    // acks=local: answered from the WAL; the commit follows.
                    if !reply(send, &Response::Produced { base_offset, last_offset }).await {
                        return None;
                    }
                    outcome(committed.await)
                        .map(|(base_offset, last_offset)| Response::Committed { base_offset, last_offset })
                }
                (Ok((base_offset, last_offset)), None) => Ok(Response::Produced { base_offset, last_offset }),
                (Err(e), _) => Err(e),
            }
        }
    };
    Some(response.map(Answer::Frame))
}

fn heartbeat(h: silt_wire::GroupHeartbeat, host: &str) -> crate::core::groups::Heartbeat {
    let flat = |ts: Vec<silt_wire::TopicPartitions>| -> Vec<(String, u32)> {
        ts.into_iter().flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic.clone(), p))).collect()
    };
    crate::core::groups::Heartbeat {
        member_id: h.member_id,
        member_epoch: h.member_epoch,
        host: host.to_string(),
        topics: h.topics,
        owned: h.owned.map(flat),
        session_timeout_ms: i64::from(h.session_timeout_ms),
    }
}

/// Partitions grouped by topic, for the wire.
fn by_topic(partitions: &[(String, u32)]) -> Vec<silt_wire::TopicPartitions> {
    let mut out: Vec<silt_wire::TopicPartitions> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some(t) if t.topic == *topic => t.partitions.push(*p),
            _ => out.push(silt_wire::TopicPartitions { topic: topic.clone(), partitions: vec![*p] }),
        }
    }
    out
}

fn group_description(g: service::GroupDetail) -> silt_wire::GroupDescription {
    silt_wire::GroupDescription {
        name: g.name,
        state: g.state,
        epoch: g.epoch,
        coordinator: g.coordinator,
        members: g
            .members
            .into_iter()
            .map(|m| silt_wire::MemberInfo { id: m.id, host: m.host, assigned: by_topic(&m.assigned) })
            .collect(),
        partitions: g
            .partitions
            .into_iter()
            .map(|p| silt_wire::GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed: p.committed.unwrap_or(-1),
                log_end: p.log_end,
                member: p.member.unwrap_or_default(),
            })
            .collect(),
    }
}

fn acks_of(acks: silt_wire::Acks) -> service::Acks {
    match acks {
        silt_wire::Acks::None => service::Acks::None,
        silt_wire::Acks::Local => service::Acks::Local,
        silt_wire::Acks::Durable => service::Acks::Durable,
    }
}

fn agent_info(a: service::AgentInfo) -> silt_wire::AgentInfo {
    silt_wire::AgentInfo { id: a.id, address: a.address, partitions: a.partitions, heartbeat_ms: a.heartbeat_ms }
}

fn topic_description(t: service::TopicInfo) -> silt_wire::TopicDescription {
    silt_wire::TopicDescription {
        name: t.name,
        id: t.id,
        max_record_bytes: t.max_record_bytes,
        partitions: t
            .partitions
            .into_iter()
            .map(|p| silt_wire::PartitionInfo {
                partition: p.partition,
                owner: p.owner,
                epoch: p.epoch,
                log_start: p.log_start,
                high_watermark: p.high_watermark,
            })
            .collect(),
        configs: t.configs,
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
async fn close_malformed(mut send: quinn::SendStream, mut recv: quinn::RecvStream, e: StreamError) {
    let code = codes::code_of_stream(&e);
    let reason = describe(&e);
    tracing::debug!(%code, %reason, "closing a stream");
    let _ = recv.stop(quinn::VarInt::from(u32::from(code.as_u16())));
    if reply(&mut send, &Response::error(code, reason)).await {
        finish(send).await;
    }
}
