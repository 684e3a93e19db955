//! The network side: one sender task per partition takes ready batches
//! from the accumulator, stamps and sends them to the partition's owner,
//! and waits for their acknowledgements in tasks of their own. What each
//! answer means is decided by the partition's [`Flights`]; this only sends,
//! waits, and carries out the [`Effect`]s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use silt_wire::{ErrorCode, Request, Response};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::inflight::{Ack, Effect, Flights, Next, Round, Settings};
use super::{Inner, Outcome, KEPT_BUFFERS};
use crate::client::{unexpected, ResponseStream};
use crate::error::ClientError;
use crate::router::OWNER_CHECK;

/// How one flight's wait for its acknowledgement went.
struct Answer {
    round: u64,
    id: u64,
    outcome: Result<Ack, ClientError>,
}

/// One partition's sender.
struct Sender {
    inner: Arc<Inner>,
    p: u32,
    flights: Flights<watch::Sender<Outcome>>,
    waiters: JoinSet<()>,
    answers: mpsc::UnboundedSender<Answer>,
}

/// One partition's sender task: sends ready batches in order, keeping up
/// to `max_in_flight` unanswered; acknowledgements come back on a channel.
pub(crate) async fn run(inner: Arc<Inner>, p: u32) {
    let (tx, mut answers) = mpsc::unbounded_channel();
    let settings = Settings {
        producer_id: (inner.producer_id >= 0).then_some(inner.producer_id),
        keep_until_commit: inner.producer_id >= 0 && inner.config.acks == silt_wire::Acks::Local,
        max_in_flight: inner.config.max_in_flight,
    };
    let mut s =
        Sender { inner: inner.clone(), p, flights: Flights::new(settings), waiters: JoinSet::new(), answers: tx };
    loop {
        // A batch done with: its buffer serves a later batch, unless
        // something (a QUIC send buffer) still holds it.
        s.flights.pop_settled(|batch| {
            if let Ok(buffer) = batch.try_into_mut() {
                inner.accumulator.recycle(buffer);
            }
        });
        s.apply();
        while s.waiters.try_join_next().is_some() {}
        let ready = inner.accumulator.ready(p);
        let room =
            s.flights.has_room(inner.kept_bytes.load(Ordering::SeqCst), KEPT_BUFFERS * inner.config.buffer_bytes);
        if ready.is_ok() && room && !inner.stop.is_cancelled() {
            if let Some(open) = inner.accumulator.take(p) {
                inner.accumulator.advance_sticky(p);
                if let Next::Resend(e) = s.send(open).await {
                    s.resend(e).await;
                }
            }
            continue;
        }
        let deadline = ready.err().flatten();
        tokio::select! {
            a = answers.recv() => {
                let a = a.expect("the sender holds a sender");
                if let Next::Resend(e) = s.flights.on_answer(a.round, a.id, a.outcome) {
                    s.resend(e).await;
                }
            }
            _ = inner.accumulator.woken(p), if ready.is_err() => {}
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
            _ = inner.stop.cancelled() => break,
        }
    }
    // Stopped: nothing more is sent, but answers on their way still count.
    while s.flights.any_unanswered() {
        let Some(a) = answers.recv().await else { break };
        s.flights.on_answer_while_stopping(a.id, a.outcome);
        s.apply();
    }
    s.apply();
}

impl Sender {
    /// Carries out what the flights decided.
    fn apply(&mut self) {
        for effect in self.flights.take_effects() {
            match effect {
                Effect::Resolve { slot, records, bytes, outcome } => {
                    super::resolve(&self.inner, &slot, records, bytes, outcome)
                }
                Effect::Kept(n) if n >= 0 => {
                    self.inner.kept_bytes.fetch_add(n as usize, Ordering::SeqCst);
                }
                Effect::Kept(n) => {
                    self.inner.kept_bytes.fetch_sub(n.unsigned_abs(), Ordering::SeqCst);
                }
                Effect::Flights(n) => self.inner.flights.send_modify(|f| *f = f.saturating_add_signed(n)),
            }
        }
    }

    /// Numbers, builds and sends a new batch.
    async fn send(&mut self, open: super::accumulator::Open) -> Next {
        let records = open.builder.len() as u64;
        let mut builder = open.builder;
        if let Some((id, epoch, sequence)) = self.flights.stamp() {
            builder.set_producer(id, epoch, sequence);
        }
        let (built, spare) = builder.build_returning_buffer();
        if let Some(buffer) = spare {
            self.inner.accumulator.recycle(buffer);
        }
        let batch = match built {
            Ok(b) => b.into_bytes(),
            Err(e) => {
                super::resolve(&self.inner, &open.slot, records, open.bytes, Err(ClientError::CorruptBatch(e)));
                return Next::Continue;
            }
        };
        let id = self.flights.push(batch.clone(), records, open.bytes, open.slot);
        self.apply();
        let next = match send_until_assigned(&self.inner, self.p, batch).await {
            Ok(stream) => {
                self.wait_for_ack(id, stream);
                Next::Continue
            }
            Err(e) => self.flights.refused(id, e),
        };
        self.apply();
        next
    }

    /// Sends every unsettled batch again, in order, to the partition's
    /// owner as the agents name it now; an owner that already holds one
    /// answers with its first offsets. After `retries` rounds, gives up.
    async fn resend(&mut self, mut error: ClientError) {
        for attempt in 1.. {
            self.flights.new_round();
            self.waiters.abort_all();
            if attempt > self.inner.config.retries {
                break;
            }
            tracing::debug!(partition = self.p, error = %error, attempt, "sending unanswered batches again");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20)))) => {}
                _ = self.inner.stop.cancelled() => break,
            }
            self.inner.router.refresh().await;
            let mut verdict = None;
            for (n, (id, batch)) in self.flights.unsettled_batches().into_iter().enumerate() {
                match send_until_assigned(&self.inner, self.p, batch).await {
                    Ok(stream) => self.wait_for_ack(id, stream),
                    Err(e) => match self.flights.resend_failed(n, id, e) {
                        Round::Settled => {}
                        other => {
                            verdict = Some(other);
                            break;
                        }
                    },
                }
            }
            self.apply();
            match verdict {
                None => return,
                Some(Round::Again(e)) => error = e,
                Some(Round::GiveUp(e)) => {
                    error = e;
                    break;
                }
                Some(Round::Settled) => unreachable!("only failures end a round"),
            }
        }
        self.flights.give_up(error);
        self.apply();
    }

    /// Waits for a batch's acknowledgement (and, with acks=local, its
    /// commit) in its own task, or until the partition has moved away from
    /// the agent that assigned it.
    fn wait_for_ack(&mut self, id: u64, (mut stream, owner): (ResponseStream, String)) {
        let (inner, answers, round, p) = (self.inner.clone(), self.answers.clone(), self.flights.round(), self.p);
        let until_commit = inner.producer_id >= 0 && inner.config.acks == silt_wire::Acks::Local;
        self.waiters.spawn(async move {
            let limit = inner.client.config().request_timeout;
            let timeout = || ClientError::Timeout { addr: owner.clone(), secs: limit.as_secs() };
            let wait = async {
                let base = match tokio::time::timeout(limit, stream.next()).await {
                    Ok(Ok(Response::Produced { base_offset, .. })) => base_offset,
                    Ok(Ok(other)) => return Err(unexpected(other)),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(timeout()),
                };
                if !until_commit {
                    return Ok(Ack::Durable(base));
                }
                let _ = answers.send(Answer { round, id, outcome: Ok(Ack::Local(base)) });
                match tokio::time::timeout(limit, stream.next()).await {
                    Ok(Ok(Response::Committed { .. })) => Ok(Ack::Committed),
                    Ok(Ok(other)) => Err(unexpected(other)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(timeout()),
                }
            };
            let outcome = tokio::select! {
                r = wait => r,
                // Only an idempotent producer can send the batch again.
                e = owner_moved(&inner, p, &owner), if inner.producer_id >= 0 => Err(e),
            };
            let _ = answers.send(Answer { round, id, outcome });
        });
    }
}

/// Resolves once the agents name an owner of `p` other than `addr`
/// (checked every [`OWNER_CHECK`]): waiting on `addr` is then pointless,
/// for it died or handed the partition over.
async fn owner_moved(inner: &Inner, p: u32, addr: &str) -> ClientError {
    loop {
        tokio::time::sleep(OWNER_CHECK).await;
        inner.router.refresh_if_older(OWNER_CHECK / 2).await;
        let owner = inner.router.owner(p);
        if !owner.is_empty() && owner != addr {
            let message = format!("{}/{p} moved from {addr} to {owner}", inner.topic);
            return ClientError::Server { code: ErrorCode::NotOwner, message };
        }
    }
}

/// Sends a batch to its partition's owner and waits until it is assigned
/// offsets; returns the stream that brings its acknowledgement, and the
/// agent's address. A refusal before assignment wrote nothing, so the batch
/// may go again: after NOT_OWNER (or a lease moving, or an agent stopping)
/// it goes to the owner the agents name now.
async fn send_until_assigned(inner: &Inner, p: u32, batch: Bytes) -> Result<(ResponseStream, String), ClientError> {
    let request = Request::Produce { topic: inner.topic.clone(), partition: p, acks: inner.config.acks, batch };
    let mut attempt = 0;
    loop {
        // A dropped producer sends nothing more.
        if inner.stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let result = async {
            let client = inner.router.client_for(p).await?;
            let addr = client.agent().to_string();
            let exchange = async {
                let mut stream = client.open(&request).await?;
                match stream.next().await? {
                    Response::ProduceAssigned { .. } => Ok(stream),
                    other => Err(unexpected(other)),
                }
            };
            tokio::select! {
                r = exchange => r.map(|stream| (stream, addr)),
                // Not for a producer without idempotence: the batch may
                // have been assigned offsets, and only then is it safe.
                e = owner_moved(inner, p, &addr), if inner.producer_id >= 0 => Err(e),
            }
        };
        let limit = inner.client.config().request_timeout;
        let result = match tokio::time::timeout(limit, result).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { addr: inner.client.agent().into(), secs: limit.as_secs() }),
        };
        match result {
            // Retriable, and known not to have been given offsets: a refusal,
            // or no connection. (A timeout may have been assigned offsets:
            // the caller decides.)
            Err(e)
                if e.is_retriable() && !matches!(e, ClientError::Timeout { .. }) && attempt < inner.config.retries =>
            {
                attempt += 1;
                let server = matches!(e, ClientError::Server { .. });
                tracing::debug!(error = %e, attempt, "produce refused or owner unreachable; retrying");
                // Not the owner (any more), or unreachable (it died): ask who owns it now.
                if !server
                    || matches!(e.code(), Some(ErrorCode::NotOwner | ErrorCode::Fenced | ErrorCode::ShuttingDown))
                {
                    inner.router.refresh().await;
                }
                let step = if server { 50 } else { 200 };
                tokio::time::sleep(Duration::from_millis(step * u64::from(attempt.min(20)))).await;
            }
            other => return other,
        }
    }
}
