//! The transport loop of one websocket: reads frames, keeps the heartbeat,
//! watches for a client that stops reading, drains on shutdown, and closes.
//! Its value is why the connection ended. What the frames mean is the
//! dialect's business (`dialect::Side`); what is written goes through the outbox.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, MessageStream, ProtocolError};

use crate::app::App;
use crate::auth::Grant;
use crate::dialect::Dialect;
use crate::dialect::{Closing, Elstat, Framing, Side, SocketApi};
pub use crate::disconnect::Disconnect;
use crate::frame_guard;
use crate::outbox::{Control, Outbox};
use crate::rate::RateLimiter;
use crate::session::Session;
use crate::tcp::SocketHandle;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new connection, for logs.
pub fn next_connection_id() -> u64 {
    NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed)
}

/// How the loop ended.
enum End {
    /// The client went away without a close frame.
    Gone,
    /// The client sent a close frame: answered with the same code (RFC 6455 §5.5.1).
    ClosedByClient(u16),
    /// We close now; queued results are dropped.
    Now(Disconnect),
    /// We close once the queued results are written (the end of a drain).
    AfterResults(Disconnect),
}

/// Runs one connection to its end.
pub async fn run(
    app: Arc<App>,
    connection: u64,
    dialect: Dialect,
    grant: Grant,
    stream: MessageStream,
    outbox: Outbox,
    tcp: Option<Rc<SocketHandle>>,
) {
    let limits = app.limits.clone();
    let metrics = Arc::clone(&app.metrics);
    let mut stream = stream
        .max_frame_size(limits.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(limits.max_message_bytes);
    // What the frames mean is the dialect's: a session for the Socket API
    // and Elstat, a services peer on `/ws/services`.
    let mut side: Box<dyn Side> = match dialect {
        Dialect::Services => Box::new(crate::services::Peer::new(
            connection,
            Arc::clone(&app.services),
            outbox.clone(),
        )),
        Dialect::SocketApi | Dialect::Elstat => {
            let framing = if dialect == Dialect::Elstat {
                Framing::Elstat
            } else {
                Framing::SocketApi
            };
            let session = Session::new(
                connection,
                framing,
                Arc::clone(&app),
                grant.caller,
                outbox.clone(),
            );
            match framing {
                Framing::Elstat => Box::new(Elstat(session)),
                Framing::SocketApi => Box::new(SocketApi(session)),
            }
        }
    };
    metrics.connections_total.inc();
    tracing::info!("connected");
    // Watched before the greeting, so a datasource joining meanwhile is told.
    let mut datasources_changed = app.federation.watch_changes();
    side.greet();
    let mut running = side.running();

    let mut shutdown = app.shutdown.clone();
    let mut rate = RateLimiter::new(match dialect {
        Dialect::Services => limits.max_service_messages_per_second,
        _ => limits.max_messages_per_second,
    });
    let mut heartbeat = tokio::time::interval(limits.ping_interval);
    heartbeat.tick().await; // the first tick is immediate
                            // Checks often enough to notice a stalled client soon after its timeout.
    let mut watchdog = tokio::time::interval(
        (limits.slow_client_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    let mut last_heard = Instant::now();
    let mut draining_until: Option<tokio::time::Instant> = None;

    let end = loop {
        let drain_deadline = async {
            match draining_until {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = stream.recv() => {
                last_heard = Instant::now();
                let message = match frame {
                    None => break End::Gone,
                    Some(Ok(message)) => message,
                    Some(Err(error)) if is_too_large(&error) => break End::Now(Disconnect::too_large()),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "protocol error");
                        break End::Now(Disconnect::protocol_error(&error));
                    }
                };
                // Every frame counts against the rate limit, websocket pings too.
                if !rate.allow() {
                    break End::Now(Disconnect::too_many_messages());
                }
                match message {
                    AggregatedMessage::Text(text) => match side.text(&text) {
                        Ok(()) => {}
                        Err(Closing::Now(disconnect)) => break End::Now(disconnect),
                        Err(Closing::AfterResults(disconnect)) => break End::AfterResults(disconnect),
                    },
                    AggregatedMessage::Binary(_) => break End::Now(Disconnect::binary_frame()),
                    AggregatedMessage::Ping(bytes) => {
                        let _ = outbox.send_control(Control::Pong(bytes));
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(reason) => {
                        break End::ClosedByClient(reason.map_or(CloseCode::Normal.into(), |r| r.code.into()));
                    }
                }
            }
            Ok(()) = running.changed(), if draining_until.is_some() => {
                if side.is_idle() {
                    break End::AfterResults(Disconnect::going_away());
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > limits.ping_interval + limits.pong_timeout {
                    break End::Now(Disconnect::no_pong());
                }
                let _ = outbox.send_control(Control::Ping(bytes::Bytes::from_static(b"tributary")));
            }
            _ = watchdog.tick() => {
                if outbox.stalled_for().is_some_and(|stalled| stalled > limits.slow_client_timeout) {
                    metrics.slow_client_disconnects.inc();
                    tracing::info!("client does not read its messages; disconnecting");
                    break End::Now(Disconnect::slow_client());
                }
            }
            Ok(()) = shutdown.changed(), if draining_until.is_none() => {
                let drain = *shutdown.borrow();
                if let Some(drain) = drain {
                    draining_until = Some(tokio::time::Instant::now() + drain);
                    side.shutdown(drain);
                    if side.is_idle() {
                        break End::AfterResults(Disconnect::going_away());
                    }
                }
            }
            Ok(()) = datasources_changed.changed() => side.datasources_changed(),
            () = drain_deadline => break End::Now(Disconnect::going_away()),
        }
    };

    // Everything this connection started stops with it.
    side.stop();
    match end {
        End::Gone => {
            tracing::info!("disconnected");
            outbox.abandon();
        }
        End::ClosedByClient(code) => {
            tracing::info!("closed by the client");
            outbox.close_now(code, "");
        }
        End::Now(disconnect) => {
            count_close(&app, &disconnect);
            outbox.close_now(disconnect.code, &disconnect.reason);
        }
        End::AfterResults(disconnect) => {
            count_close(&app, &disconnect);
            outbox.close_after_data(disconnect.code, &disconnect.reason);
        }
    }
    // The close frame goes out ahead of anything else queued. A client that
    // does not take it in time (its socket buffers are full) has its socket
    // reset, which frees the connection's slot and buffers.
    if let Some(tcp) = tcp {
        let deadline = tokio::time::Instant::now() + limits.close_timeout;
        actix_web::rt::spawn(async move {
            if tokio::time::timeout_at(deadline, tcp.closed())
                .await
                .is_err()
            {
                tracing::info!("close not delivered in time; resetting the connection");
                metrics.connection_resets.inc();
                tcp.reset();
            }
        });
    }
}

fn count_close(app: &App, disconnect: &Disconnect) {
    app.metrics
        .closes
        .with_label_values(&[&disconnect.code.to_string()])
        .inc();
    tracing::info!(code = disconnect.code, reason = %disconnect.reason, "closing");
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
