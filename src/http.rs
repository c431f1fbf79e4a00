//! The HTTP side: routes (`/ws`, `/api/streaming`, `/healthz`, `/metrics`,
//! publishing at `/api/datasources/<id>/records`, the web UI), and
//! starting and stopping the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BodyStream, BoxBody};
use actix_web::{web, App as HttpApp, HttpRequest, HttpResponse, HttpServer};
use futures_util::future::join_all;
use serde_json::json;
use tracing::Instrument;

use crate::app::{App, ShutdownSender};
use crate::config::Settings;
use crate::connection;
use crate::datasources::Registry;
use crate::dialect::Dialect;
use crate::frame_guard;
use crate::outbox::{Outbox, OutboxBody};
use crate::tcp::{ConnectionGuard, ConnectionSlot};

/// How long the server lets running requests finish after SIGTERM/SIGINT.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

fn refuse(
    app: &App,
    status: actix_web::http::StatusCode,
    reason: &str,
    message: &str,
) -> HttpResponse {
    app.metrics
        .rejected_upgrades
        .with_label_values(&[reason])
        .inc();
    tracing::info!(reason, "websocket upgrade refused");
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// `/ws`: Marija's Socket API.
async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
) -> actix_web::Result<HttpResponse> {
    upgrade(req, body, app, Dialect::SocketApi).await
}

/// `/ws/services`: Damon's socket for services. Services identify in-band
/// with their own tokens (`[services.<name>]`), so client tokens are not
/// asked for; origins are checked as for `/ws`.
async fn services_socket(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
) -> actix_web::Result<HttpResponse> {
    upgrade(req, body, app, Dialect::Services).await
}

/// `/api/streaming`: Elstat's streaming API, on the same connections,
/// tokens, origins and limits.
async fn streaming(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
) -> actix_web::Result<HttpResponse> {
    upgrade(req, body, app, Dialect::Elstat).await
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
    dialect: Dialect,
) -> actix_web::Result<HttpResponse> {
    use actix_web::http::StatusCode;
    let checked = match dialect {
        Dialect::Services => app
            .auth
            .check_origin(&req)
            .map(|()| crate::auth::Grant::default()),
        _ => app.auth.check(&req),
    };
    let grant = match checked {
        Ok(grant) => grant,
        Err(refusal) => {
            return Ok(refuse(
                &app,
                refusal.status(),
                refusal.label(),
                refusal.message(),
            ))
        }
    };
    let Some(slot) =
        ConnectionSlot::acquire(&app.connections, app.limits.max_connections, &app.metrics)
    else {
        let mut response = refuse(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server holds as many connections as it may; try again later",
        );
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("5"),
        );
        return Ok(response);
    };
    let body = frame_guard::guard_payload(&req, body, app.limits.max_message_bytes).await?;
    // actix-ws does the handshake and reads frames; what is written comes
    // straight from the connection's outbox (see `outbox`).
    let (response, _unused_writer, stream) = actix_ws::handle(&req, body)?;
    let (outbox, outbox_body) =
        Outbox::new(app.limits.outbound_buffer_bytes, Arc::clone(&app.metrics));
    let (head, reader_link) = response.into_parts();
    let response = head
        .set_body(BodyStream::new(ResponseBody {
            outbox: outbox_body,
            _reader_link: reader_link,
        }))
        .map_into_boxed_body();
    // The slot is held by the TCP connection itself, so it is given back only
    // when the socket is really gone (see `tcp`).
    let (handle, slot) = match req.conn_data::<ConnectionGuard>() {
        Some(guard) => (Some(guard.hold(slot)), None),
        None => (None, Some(slot)),
    };
    let app = app.into_inner();
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let id = connection::next_connection_id();
    // The token's name, never the token, goes into the logs.
    let token = grant.caller.token_name.as_deref().unwrap_or("-").to_owned();
    let span = tracing::info_span!("ws", connection = id, %peer, token);
    actix_web::rt::spawn(
        async move {
            connection::run(app, id, dialect, grant, stream, outbox, handle).await;
            drop(slot);
        }
        .instrument(span),
    );
    Ok(response)
}

/// The websocket's response body: the outbox's frames. It also holds the
/// body actix-ws made, unused: the frame reader ends when that is dropped,
/// which is exactly when the connection ends.
struct ResponseBody {
    outbox: OutboxBody,
    _reader_link: BoxBody,
}

impl futures_util::Stream for ResponseBody {
    type Item = <OutboxBody as futures_util::Stream>::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.get_mut().outbox).poll_next(cx)
    }
}

/// Prometheus metrics. As `/healthz`, a server with tokens names a
/// datasource only to a caller that may use it: samples labelled with
/// another datasource's id are left out (without a token, all of them).
async fn metrics(req: HttpRequest, app: web::Data<App>) -> HttpResponse {
    app.metrics.broker_up.set(i64::from(app.broker.is_up()));
    let not_ready = app.shutdown.borrow().is_some() || app.streams.not_ready().is_some();
    for source in app.federation.sources() {
        if source
            .datasource
            .publisher()
            .is_some_and(|p| p.keeps_records())
        {
            app.metrics
                .catch_up_remaining
                .with_label_values(&[&source.info.id])
                .set(0);
        }
    }
    for (stream, remaining) in app.streams.catching_up() {
        if let Some(id) = stream.strip_prefix("records:") {
            app.metrics
                .catch_up_remaining
                .with_label_values(&[id])
                .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        }
    }
    app.metrics.ready.set(i64::from(!not_ready));
    let connections = app.broker.connections();
    let counted = app.metrics.broker_connections.get();
    if connections > counted {
        app.metrics.broker_connections.inc_by(connections - counted);
    }
    let caller = app.auth.check_token(&req).ok().map(|grant| grant.caller);
    let rendered = app.metrics.render();
    let body = match caller {
        Some(caller) if caller.datasources.is_none() => rendered,
        caller => visible_samples(&rendered, |id| {
            caller.as_ref().is_some_and(|c| c.may_use(id))
        }),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// The exposition without the samples labelled `datasource="…"` for a
/// datasource `visible` refuses.
fn visible_samples(exposition: &str, visible: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(exposition.len());
    for line in exposition.lines() {
        let hidden = !line.starts_with('#')
            && line
                .split_once("datasource=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .is_some_and(|(id, _)| !visible(id));
        if !hidden {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The server's health; each datasource's only for a caller that may use it
/// (on a server with tokens, one that presents a valid token).
async fn healthz(req: HttpRequest, app: web::Data<App>) -> HttpResponse {
    let federation = &app.federation;
    let caller = app.auth.check_token(&req).ok().map(|grant| grant.caller);
    let checks = federation.sources().into_iter().map(|source| async move {
        let health = crate::live::check(&source).await;
        let status = match health.error {
            None => json!({"ok": true}),
            Some(error) => json!({"ok": false, "error": error}),
        };
        (source.info.id.clone(), status)
    });
    let datasources: BTreeMap<String, serde_json::Value> =
        join_all(checks).await.into_iter().collect();
    let all_ok = datasources.values().all(|s| s["ok"] == true);
    let broker_up = app.broker.is_up();
    let status = if all_ok && broker_up {
        "ok"
    } else {
        "degraded"
    };
    let broker = json!({"type": app.broker.kind(), "ok": broker_up, "connections": app.broker.connections()});
    // What `/readyz` says, with why.
    let ready = match app.streams.not_ready() {
        None => json!({"ok": true}),
        Some(reason) => json!({"ok": false, "reason": reason}),
    };
    let Some(caller) = caller else {
        return HttpResponse::Ok()
            .json(json!({ "status": status, "broker": broker, "ready": ready }));
    };
    let visible: BTreeMap<String, serde_json::Value> = datasources
        .into_iter()
        .filter(|(id, _)| caller.may_use(id))
        .collect();
    HttpResponse::Ok().json(json!({
        "status": status,
        "broker": broker,
        "ready": ready,
        "datasources": visible,
    }))
}

/// Whether this node can serve searches, for load balancers: its
/// datasources are loaded (they are once it listens) and it holds every
/// published record the other nodes hold (not while it catches up, nor
/// when it missed some). The broker is not needed to search: its trouble
/// shows in `/healthz` and the metrics. `/healthz` is liveness and the
/// datasources' health.
async fn readyz(app: web::Data<App>) -> HttpResponse {
    let reason = if app.shutdown.borrow().is_some() {
        Some("shutting down".to_owned())
    } else {
        app.streams.not_ready()
    };
    app.metrics.ready.set(i64::from(reason.is_none()));
    match reason {
        None => HttpResponse::Ok().json(json!({
            "ready": true,
            "broker": {"type": app.broker.kind(), "ok": app.broker.is_up()},
        })),
        Some(reason) => HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "reason": reason,
        })),
    }
}

/// A datasource's log of published records, for another node of the
/// cluster recovering from it (`live::recovery`): only with the cluster's
/// key, which only nodes sharing the broker know.
async fn peer_log(app: web::Data<App>, id: web::Path<String>, req: HttpRequest) -> HttpResponse {
    if !app.broker.has_other_nodes() {
        return HttpResponse::NotFound().finish();
    }
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let key = match crate::live::recovery::cluster_key(&app.broker).await {
        Ok(key) => key,
        Err(e) => return HttpResponse::ServiceUnavailable().body(e),
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        key.as_bytes(),
    )) {
        return HttpResponse::Forbidden().body("this is for the other nodes of the cluster");
    }
    let log = app
        .federation
        .sources()
        .into_iter()
        .find(|s| s.info.id == *id)
        .and_then(|s| s.datasource.publisher().and_then(|p| p.log_file()));
    let Some(log) = log else {
        return HttpResponse::NotFound().body("no such datasource keeps published records here");
    };
    match actix_files::NamedFile::open_async(&log).await {
        Ok(file) => file
            .use_etag(false)
            .use_last_modified(false)
            .into_response(&req),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("cannot read the log: {e}")),
    }
}

const FALLBACK_PAGE: &str = "<!doctype html><meta charset=utf-8><title>tributary</title>\
<h1>tributary</h1><p>The websocket is at <code>/ws</code>. The web UI was not found: \
set <code>static_dir</code> to the folder holding it.</p>";

async fn fallback_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(FALLBACK_PAGE)
}

/// A running server.
pub struct ServerHandle {
    /// The address it listens on (with the real port when `:0` was asked).
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    shutdown: ShutdownSender,
}

impl ServerHandle {
    /// Tells every client the server is going away, lets running requests
    /// finish for up to `drain`, then stops.
    pub async fn shutdown(&self, drain: Duration) {
        tracing::info!(drain_ms = drain.as_millis() as u64, "shutting down");
        let _ = self.shutdown.send(Some(drain));
        self.handle.stop(true).await;
    }
}

/// Binds the server and returns it with its handle; awaiting the server runs it.
pub fn bind(
    settings: &Settings,
    registry: &Registry,
) -> Result<(actix_web::dev::Server, ServerHandle), String> {
    // Bound first, before any dataset loads: the server's own origins derive
    // from the address it got, and a taken port is said at once.
    let listener = std::net::TcpListener::bind(&settings.listen).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "cannot listen on {}: the address is in use (is tributary already running?); stop the other program, or choose another address with --listen 127.0.0.1:8081",
                settings.listen
            )
        } else {
            format!("cannot listen on {}: {e}", settings.listen)
        }
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let (app, shutdown) = App::build(settings, registry, addr)?;
    for task in app.background_tasks() {
        actix_web::rt::spawn(task);
    }
    let app = web::Data::new(app);
    let static_dir = settings.static_dir.clone();
    let folder_without_ui = static_dir
        .as_ref()
        .is_some_and(|dir| !dir.join("index.html").is_file());
    if let (Some(dir), true) = (&static_dir, folder_without_ui) {
        tracing::warn!(dir = %dir.display(), "no web UI found in static_dir; serving a placeholder page");
    }
    let server = HttpServer::new(move || {
        let routes = HttpApp::new()
            .app_data(app.clone())
            .route("/ws", web::get().to(websocket))
            .route("/api/streaming", web::get().to(streaming))
            .route("/ws/services", web::get().to(services_socket))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .route(
                "/api/datasources/{id}/records",
                web::post().to(crate::publish::records),
            )
            .route("/api/cluster/datasources/{id}/log", web::get().to(peer_log));
        // The UI: compressed for browsers that accept it, with its cache policy.
        let ui = web::scope("")
            .wrap(actix_web::middleware::Compress::default())
            .wrap_fn(|req, service| {
                use actix_web::dev::Service;
                let policy = crate::ui::cache_control(req.path().trim_start_matches('/'));
                let response = service.call(req);
                async move {
                    let mut response = response.await?;
                    response.headers_mut().insert(
                        actix_web::http::header::CACHE_CONTROL,
                        actix_web::http::header::HeaderValue::from_static(policy),
                    );
                    Ok(response)
                }
            });
        let ui = match &static_dir {
            Some(_) if folder_without_ui => ui.route("/", web::get().to(fallback_page)),
            Some(dir) => ui.service(actix_files::Files::new("/", dir).index_file("index.html")),
            None => ui.configure(crate::ui::embedded_routes),
        };
        routes.service(ui)
    })
    .on_connect(ConnectionGuard::attach)
    .disable_signals()
    .shutdown_timeout((DEFAULT_DRAIN + Duration::from_secs(5)).as_secs())
    .listen(listener)
    .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let server = server.run();
    let handle = ServerHandle {
        addr,
        handle: server.handle(),
        shutdown,
    };
    Ok((server, handle))
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully.
pub async fn run(settings: Settings, registry: Registry) -> Result<(), String> {
    let (server, handle) = bind(&settings, &registry)?;
    tracing::info!(addr = %handle.addr, "listening");
    println!("tributary listening on http://{}", handle.addr);
    let server = actix_web::rt::spawn(server);
    wait_for_signal().await;
    handle.shutdown(DEFAULT_DRAIN).await;
    let _ = server.await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Starts a server on its own thread (and runtime) and returns once it listens.
/// Meant for tests, including tests of new datasource adapters.
pub fn spawn(settings: Settings, registry: Registry) -> Result<ServerHandle, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            match bind(&settings, &registry) {
                Ok((server, handle)) => {
                    let _ = tx.send(Ok(handle));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    rx.recv()
        .map_err(|_| "server thread ended before listening".to_owned())?
}
