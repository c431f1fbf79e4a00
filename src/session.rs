//! The per-connection actor. One task owns the socket: it reads frames,
//! starts and tracks the connection's requests, and drains the bounded
//! outbound queue those requests write to. Requests run as tasks of their own
//! so the connection keeps reading (and can cancel) while they run.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Limits;
use crate::federation::{Access, Federation, Lease, RequestScope};
use crate::frame_guard;
use crate::metrics::Metrics;
use crate::protocol::{self, ClientMessage, DecodeError, ErrorCode, ErrorReport, RequestId};
use crate::tcp::SocketHandle;

/// What every session of the server shares.
pub struct SessionContext {
    pub federation: Arc<Federation>,
    pub limits: Limits,
    /// Flips to `Some(drain)` when the server is shutting down.
    pub shutdown: watch::Receiver<Option<Duration>>,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new connection, for logs.
pub fn next_connection_id() -> u64 {
    NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed)
}

/// A request the connection is running.
struct Running {
    kind: &'static str,
    request_id: Option<RequestId>,
    task: JoinHandle<()>,
    /// Canceled by the client: answered `REQUEST_CANCELED`, sends nothing
    /// more, but still counts until its work has really stopped.
    canceled: bool,
}

struct Session {
    id: u64,
    ctx: Arc<SessionContext>,
    access: Access,
    socket: actix_ws::Session,
    outbox: mpsc::Sender<String>,
    finished: mpsc::UnboundedSender<u64>,
    running: HashMap<u64, Running>,
    next_request: u64,
    rate: RateLimiter,
    /// The connection's share of the search pool.
    searches: Arc<Semaphore>,
}

/// Why the read loop ended.
enum End {
    /// The client went away.
    Gone,
    /// The client sent a close frame: answered with the same code (RFC 6455 §5.5.1).
    ClosedByClient(Option<CloseReason>),
    /// We close the connection with this reason.
    Close(CloseReason),
}

fn close(code: u16, description: &str) -> End {
    End::Close(CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    })
}

/// Runs one connection to its end.
pub async fn run(
    ctx: Arc<SessionContext>,
    connection: u64,
    access: Access,
    socket: actix_ws::Session,
    stream: actix_ws::MessageStream,
    tcp: Option<Rc<SocketHandle>>,
) {
    let limits = ctx.limits.clone();
    let mut stream = stream
        .max_frame_size(limits.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(limits.max_message_bytes);
    let (outbox, mut outbound) = mpsc::channel::<String>(limits.outbound_queue.max(1));
    let (finished, mut finished_rx) = mpsc::unbounded_channel::<u64>();
    let mut shutdown = ctx.shutdown.clone();
    let mut session = Session {
        id: connection,
        rate: RateLimiter::new(limits.max_messages_per_second),
        ctx,
        access,
        socket,
        outbox,
        finished,
        running: HashMap::new(),
        next_request: 0,
        searches: Arc::new(Semaphore::new(limits.max_concurrent_searches.max(1))),
    };
    let metrics = Arc::clone(session.ctx.federation.metrics());
    metrics.connections_total.inc();
    tracing::info!("connected");

    let initial = protocol::encode_initial_state(&session.ctx.federation.infos(&session.access));
    let mut end = session.write(initial).await.err();

    let mut heartbeat = tokio::time::interval(limits.ping_interval);
    heartbeat.tick().await; // the first tick is immediate
    let mut last_heard = Instant::now();
    let mut draining_until: Option<tokio::time::Instant> = None;

    while end.is_none() {
        let drain_deadline = async {
            match draining_until {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = stream.recv() => {
                last_heard = Instant::now();
                end = match frame {
                    None => Some(End::Gone),
                    Some(Ok(message)) => session.on_message(message).await.err(),
                    Some(Err(error)) if is_too_large(&error) => Some(close(protocol::CLOSE_TOO_MUCH, "message too large")),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "protocol error");
                        Some(End::Close(CloseReason { code: CloseCode::Protocol, description: Some(error.to_string()) }))
                    }
                };
            }
            Some(text) = outbound.recv() => {
                end = session.write(text).await.err();
            }
            Some(key) = finished_rx.recv() => {
                session.running.remove(&key);
                if draining_until.is_some() && session.running.is_empty() {
                    // The finished requests' last messages may still be queued: send them first.
                    while let (None, Ok(text)) = (&end, outbound.try_recv()) {
                        end = session.write(text).await.err();
                    }
                    if end.is_none() {
                        end = Some(End::Close(CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) }));
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > limits.ping_interval + limits.pong_timeout {
                    end = Some(close(CloseCode::Policy.into(), "no pong received"));
                } else {
                    end = session.socket.ping(b"tributary").await.err().map(|_| End::Gone);
                }
            }
            Ok(()) = shutdown.changed(), if draining_until.is_none() => {
                let drain = *shutdown.borrow();
                if let Some(drain) = drain {
                    draining_until = Some(tokio::time::Instant::now() + drain);
                    let notice = protocol::encode_shutdown_notice(u64::try_from(drain.as_millis()).unwrap_or(u64::MAX));
                    end = session.write(notice).await.err();
                    if end.is_none() && session.running.is_empty() {
                        end = Some(End::Close(CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) }));
                    }
                }
            }
            () = drain_deadline => {
                end = Some(End::Close(CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) }));
            }
        }
    }

    // Everything this connection started stops with it.
    for (_, running) in session.running.drain() {
        running.task.abort();
        if !running.canceled {
            metrics.request(running.kind, "canceled");
        }
    }
    let reason = match end {
        Some(End::Close(reason)) => {
            let code = u16::from(reason.code);
            metrics.closes.with_label_values(&[&code.to_string()]).inc();
            tracing::info!(code, reason = ?reason.description, "closing");
            Some(reason)
        }
        Some(End::ClosedByClient(reason)) => {
            tracing::info!("closed by the client");
            Some(CloseReason {
                code: reason.map_or(CloseCode::Normal, |r| r.code),
                description: None,
            })
        }
        _ => {
            tracing::info!("disconnected");
            None
        }
    };
    // The close frame queues behind what the client has not read yet; a
    // detached task waits for it so this connection's state is freed now.
    // A client that does not read it in time has its socket reset, which
    // frees the connection's slot and buffers.
    let socket = session.socket;
    let deadline = tokio::time::Instant::now() + limits.close_timeout;
    actix_web::rt::spawn(async move {
        if let Some(reason) = reason {
            let _ = tokio::time::timeout_at(deadline, socket.close(Some(reason))).await;
        } else {
            drop(socket);
        }
        if let Some(tcp) = tcp {
            if tokio::time::timeout_at(deadline, tcp.closed())
                .await
                .is_err()
            {
                tracing::info!("close not delivered in time; resetting the connection");
                metrics.connection_resets.inc();
                tcp.reset();
            }
        }
    });
}

/// Is this stream error a message over the size limit? The frame guard stops
/// an oversized frame at its header; the continuation limit catches the rest.
fn is_too_large(error: &ProtocolError) -> bool {
    match error {
        ProtocolError::Overflow => true,
        ProtocolError::Io(io) => {
            frame_guard::is_overflow(io) || io.to_string() == "Exceeded maximum continuation size"
        }
        _ => false,
    }
}

impl Session {
    /// Writes one message; a client that does not take it in time is disconnected.
    async fn write(&mut self, text: String) -> Result<(), End> {
        let metrics = self.ctx.federation.metrics();
        let bytes = text.len() as u64;
        match tokio::time::timeout(self.ctx.limits.slow_client_timeout, self.socket.text(text))
            .await
        {
            Ok(Ok(())) => {
                metrics.messages_out.inc();
                metrics.bytes_out.inc_by(bytes);
                Ok(())
            }
            Ok(Err(_closed)) => Err(End::Gone),
            Err(_) => {
                metrics.slow_client_disconnects.inc();
                tracing::info!("client does not read its messages; disconnecting");
                Err(close(
                    protocol::CLOSE_TOO_MUCH,
                    "client too slow: results not read",
                ))
            }
        }
    }

    async fn on_message(&mut self, message: AggregatedMessage) -> Result<(), End> {
        // Every frame counts against the rate limit, websocket pings too.
        if !self.rate.allow() {
            return Err(close(protocol::CLOSE_TOO_MUCH, "too many messages"));
        }
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text).await,
            AggregatedMessage::Binary(_) => Err(close(
                protocol::CLOSE_INVALID_PAYLOAD,
                "binary frames are not accepted; send JSON text",
            )),
            AggregatedMessage::Ping(bytes) => self.socket.pong(&bytes).await.map_err(|_| End::Gone),
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(reason) => Err(End::ClosedByClient(reason)),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message = match protocol::decode(text) {
            Ok(message) => message,
            Err(DecodeError::NotAnObject) => {
                return Err(close(
                    protocol::CLOSE_INVALID_PAYLOAD,
                    "every message must be a JSON object",
                ));
            }
            Err(DecodeError::Invalid(report)) => {
                self.metrics().request("invalid", report.code.as_str());
                return self.send_error(*report).await;
            }
        };
        match message {
            ClientMessage::Fields(request) => {
                let (request_id, ctx) = (request.request_id.clone(), RequestReport::default());
                self.start(
                    "FIELDS_REQUEST",
                    request_id,
                    ctx,
                    move |federation, access, outbox, _scope| async move {
                        federation.fields(request, &access, &outbox).await
                    },
                )
                .await
            }
            ClientMessage::Items(request) => {
                tracing::debug!(query = %request.query, datasources = ?request.datasources, "items request");
                let ctx = RequestReport {
                    query: Some(request.query.clone()),
                    color: request.color.clone(),
                };
                self.start(
                    "ITEMS_REQUEST",
                    request.request_id.clone(),
                    ctx,
                    move |federation, access, outbox, scope| async move {
                        federation.items(request, &access, &outbox, scope).await
                    },
                )
                .await
            }
            ClientMessage::Cancel(cancel) => self.cancel(cancel.request_id).await,
            ClientMessage::Ping(ping) => {
                self.metrics().request("PING", "ok");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                self.write(protocol::encode_pong(&ping.t, now)).await
            }
        }
    }

    /// Starts a request as a task of its own, unless the connection already runs too many.
    async fn start<F, Fut>(
        &mut self,
        kind: &'static str,
        request_id: Option<RequestId>,
        report: RequestReport,
        run: F,
    ) -> Result<(), End>
    where
        F: FnOnce(Arc<Federation>, Access, mpsc::Sender<String>, RequestScope) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        if self.running.len() >= self.ctx.limits.max_requests {
            self.metrics().request(kind, "rejected");
            let mut error = ErrorReport::new(
                ErrorCode::TooManyRequests,
                format!(
                    "this connection already runs {} requests; wait for one to finish or cancel one",
                    self.running.len()
                ),
            );
            error.query = report.query;
            error.color = report.color;
            error.request_id = request_id;
            return self.send_error(error).await;
        }
        let key = self.next_request;
        self.next_request += 1;
        let (federation, access, outbox) = (
            Arc::clone(&self.ctx.federation),
            self.access.clone(),
            self.outbox.clone(),
        );
        let metrics = Arc::clone(self.metrics());
        // Counted from now until the last of the request's work has stopped,
        // whether it ends, fails or is aborted.
        let guard = RequestGuard {
            key,
            finished: self.finished.clone(),
            _gauge: RunningGauge::new(&metrics),
        };
        let scope = RequestScope {
            lease: Lease::new(guard),
            cpu_share: Some(Arc::clone(&self.searches)),
        };
        let span = tracing::debug_span!("request", connection = self.id, key, kind, request_id = ?request_id);
        let task = tokio::spawn(
            async move {
                // The task itself holds the request for as long as it runs,
                // whatever `run` does with its scope.
                let _held = scope.lease.clone();
                let all_answered = run(federation, access, outbox, scope).await;
                metrics.request(kind, if all_answered { "completed" } else { "failed" });
                tracing::debug!(all_answered, "request finished");
            }
            .instrument(span),
        );
        self.running.insert(
            key,
            Running {
                kind,
                request_id,
                task,
                canceled: false,
            },
        );
        Ok(())
    }

    fn metrics(&self) -> &Arc<Metrics> {
        self.ctx.federation.metrics()
    }

    /// Stops every running request with this id.
    async fn cancel(&mut self, request_id: RequestId) -> Result<(), End> {
        let keys: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| !r.canceled && r.request_id.as_ref() == Some(&request_id))
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            self.metrics().request("CANCEL_REQUEST", "unknown_request");
            let mut error = ErrorReport::new(
                ErrorCode::UnknownRequest,
                format!("no running request has request-id `{request_id}`"),
            );
            error.request_id = Some(request_id);
            return self.send_error(error).await;
        }
        for key in keys {
            if let Some(running) = self.running.get_mut(&key) {
                // Stays in `running` until its work has stopped (`finished`).
                running.canceled = true;
                running.task.abort();
                let kind = running.kind;
                self.metrics().request(kind, "canceled");
            }
        }
        tracing::debug!(%request_id, "request canceled");
        self.write(protocol::encode_request_canceled(&request_id))
            .await
    }

    async fn send_error(&mut self, report: ErrorReport) -> Result<(), End> {
        tracing::debug!(message = %report.message, "client error");
        self.write(protocol::encode_error(&report)).await
    }
}

/// Tells the connection a request's work is over when the last lease on it
/// is dropped.
struct RequestGuard {
    key: u64,
    finished: mpsc::UnboundedSender<u64>,
    _gauge: RunningGauge,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let _ = self.finished.send(self.key);
    }
}

/// Counts a request in `requests_running` for as long as it lives.
struct RunningGauge(Arc<Metrics>);

impl RunningGauge {
    fn new(metrics: &Arc<Metrics>) -> RunningGauge {
        metrics.requests_running.inc();
        RunningGauge(Arc::clone(metrics))
    }
}

impl Drop for RunningGauge {
    fn drop(&mut self) {
        self.0.requests_running.dec();
    }
}

/// Query and color of a request, for errors about it.
#[derive(Default)]
struct RequestReport {
    query: Option<String>,
    color: Option<String>,
}

/// A token bucket: `per_second` messages a second on average, bursts of twice that.
struct RateLimiter {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            tokens: per_second * 2.0,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second * 2.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
