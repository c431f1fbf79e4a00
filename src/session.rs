//! The protocol state of one connection: the requests it runs, the live
//! requests it follows and its channel subscriptions. The transport loop (`connection`) drives it with
//! [`Command`]s; it answers through the connection's outbox and never touches
//! the socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::app::App;
use crate::cores::ConnectionShare;
use crate::datasources::{Caller, WorkLimits};
use crate::dialect::Framing;
use crate::federation::RequestScope;
use crate::live::hub::Subscribed;
use crate::live::queries::LiveRequest;
use crate::metrics::Metrics;
use crate::outbox::{Control, Outbox, RequestKey};
use crate::protocol::{
    elstat, ClientMessage, Echo, ErrorCode, ErrorReport, ItemsRequest, RequestId, ServerMessage,
    Since, UpdateRequest,
};
use crate::request::{ItemsQuery, Refusal};
use crate::running::Running;

/// What the transport tells the session.
#[derive(Debug)]
pub enum Command {
    /// A message from the client.
    Received(ClientMessage),
    /// A frame that could not be decoded: answered with this `ERROR`.
    Invalid(Box<ErrorReport>),
    /// The server is shutting down; running requests get this long.
    Shutdown(Duration),
    /// The connection is ending: stop everything.
    Stop,
}

pub struct Session {
    connection: u64,
    framing: Framing,
    app: Arc<App>,
    caller: Caller,
    outbox: Outbox,
    /// Its requests, counted until their work has stopped.
    running: Running,
    next_key: RequestKey,
    /// The connection's share of the search pool.
    searches: Arc<Semaphore>,
    /// The live requests it follows, by request id.
    live: HashMap<RequestId, Following>,
}

/// A live request: its query (for `UPDATE_REQUEST`) and its appends.
struct Following {
    key: RequestKey,
    request: Arc<LiveRequest>,
    query: ItemsQuery,
}

impl Session {
    pub fn new(
        connection: u64,
        framing: Framing,
        app: Arc<App>,
        caller: Caller,
        outbox: Outbox,
    ) -> Session {
        let searches = Arc::new(Semaphore::new(app.limits.max_concurrent_searches.max(1)));
        Session {
            connection,
            framing,
            app,
            caller,
            outbox,
            running: Running::default(),
            next_key: 1,
            searches,
            live: HashMap::new(),
        }
    }

    /// Sends `INITIAL_STATE_RECEIVE` (Socket API only: Elstat and the
    /// services socket have no greeting).
    pub fn greet(&self) {
        if let Some(datasources) = self.listed_datasources() {
            let ids: Vec<&str> = datasources.iter().map(|d| d.id.as_str()).collect();
            self.control(ServerMessage::InitialState {
                datasources: &datasources,
                links: &self.app.links.infos(&ids),
            });
        }
    }

    /// Sends `DATASOURCES_CHANGED` with the datasources this caller may
    /// use now (Socket API only).
    pub fn datasources_changed(&self) {
        if let Some(datasources) = self.listed_datasources() {
            self.control(ServerMessage::DatasourcesChanged {
                datasources: &datasources,
            });
        }
    }

    /// The datasources this caller may use, for dialects that list them.
    fn listed_datasources(&self) -> Option<Vec<crate::protocol::DatasourceInfo>> {
        (self.framing == Framing::SocketApi).then(|| self.app.federation.infos(&self.caller))
    }

    /// How many requests run (or are still stopping), as it changes.
    pub fn running(&self) -> watch::Receiver<usize> {
        self.running.count()
    }

    /// True when no request is running (or still stopping).
    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    pub fn handle(&mut self, command: Command) {
        match command {
            Command::Received(ClientMessage::Fields(request)) => {
                let kind = "FIELDS_REQUEST";
                let echo = || Echo {
                    request_id: request.request_id.clone(),
                    ..Echo::default()
                };
                if self.refuse_if_busy(kind, echo) {
                    return;
                }
                match self.app.rules.fields(request) {
                    Ok(query) => {
                        self.start(kind, query.echo.request_id.clone(), |f, scope| {
                            Box::pin(async move { f.fields(query, &scope).await })
                        });
                    }
                    Err(refusal) => self.refuse(kind, refusal),
                }
            }
            Command::Received(ClientMessage::Items(request)) => {
                let kind = "ITEMS_REQUEST";
                tracing::debug!(query = %request.query, datasources = ?request.datasources, "items request");
                let echo = || Echo {
                    query: Some(request.query.clone()),
                    color: request.color.clone(),
                    request_id: request.request_id.clone(),
                };
                if self.refuse_if_busy(kind, echo) {
                    return;
                }
                match self.app.rules.items(request) {
                    Ok(query) if query.live => self.follow(query, None),
                    Ok(query) => {
                        self.start(kind, query.echo.request_id.clone(), |f, scope| {
                            Box::pin(async move {
                                f.items(query, &Default::default(), &scope)
                                    .await
                                    .all_answered
                            })
                        });
                    }
                    Err(refusal) => self.refuse(kind, refusal),
                }
            }
            Command::Received(ClientMessage::Expand(request)) => {
                let kind = "EXPAND_REQUEST";
                let echo = || Echo {
                    color: request.color.clone(),
                    request_id: request.request_id.clone(),
                    ..Echo::default()
                };
                if self.refuse_if_busy(kind, echo) {
                    return;
                }
                match self.app.rules.expand(request) {
                    Ok(plan) => {
                        let links = Arc::clone(&self.app.links);
                        self.start(kind, plan.echo.request_id.clone(), |f, scope| {
                            Box::pin(async move { f.expand(plan, &links, &scope).await })
                        });
                    }
                    Err(refusal) => self.refuse(kind, refusal),
                }
            }
            Command::Received(ClientMessage::Update(update)) => self.update(update),
            Command::Received(ClientMessage::Cancel(cancel)) => self.cancel(cancel.request_id),
            Command::Received(ClientMessage::Ping(ping)) => {
                self.metrics().request("PING", "ok");
                let stats = self.stats();
                self.control(ServerMessage::Pong {
                    t: &ping.t,
                    server_t: crate::live::unix_ms(),
                    stats: &stats,
                });
            }
            Command::Received(ClientMessage::Subscribe(request)) => {
                self.subscribe(request.channels, request.since.as_ref())
            }
            Command::Received(ClientMessage::Unsubscribe(request)) => {
                self.unsubscribe(request.channels)
            }
            Command::Invalid(report) => {
                self.metrics().request("invalid", report.code.as_str());
                self.error(&report);
            }
            Command::Shutdown(_) if self.framing != Framing::SocketApi => {}
            Command::Shutdown(drain) => {
                self.control(ServerMessage::ShutdownNotice {
                    drain_ms: u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
                });
            }
            Command::Stop => {
                self.app.hub.leave(self.connection);
                for (_, following) in self.live.drain() {
                    following.request.stop();
                    self.app.live.leave(
                        &following.query.datasources,
                        self.connection,
                        following.key,
                    );
                }
                for kind in self.running.abort_all() {
                    self.app.metrics.request(kind, "canceled");
                }
            }
        }
    }

    /// `SUBSCRIBE`: each channel the caller may receive is added (and its
    /// current value sent, or with `since` the values missed since then);
    /// `SUBSCRIBED` lists them, and each refused one gets an `ERROR` of its own.
    fn subscribe(&mut self, channels: Vec<String>, since: Option<&Since>) {
        let mut added = Vec::new();
        let mut recovered = BTreeMap::new();
        for channel in channels {
            if let Some(report) = self.channel_refusal(&channel) {
                self.channel_error(&report);
                continue;
            }
            let position = since.and_then(|since| since.of(&channel));
            match self.app.hub.subscribe(
                &channel,
                self.connection,
                &self.outbox,
                self.framing,
                position,
            ) {
                Some(subscribed) => {
                    if position.is_some() {
                        recovered.insert(channel.clone(), subscribed == Subscribed::Recovered);
                    }
                    added.push(channel);
                }
                None => self.channel_error(&ErrorReport::new(
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to channel `{channel}`"),
                )),
            }
        }
        self.metrics().request("SUBSCRIBE", "ok");
        // Ahead of the channels' values, which travel as data.
        let recovered = since.is_some().then_some(&recovered);
        self.channels_reply(true, &added, recovered);
    }

    fn unsubscribe(&mut self, channels: Vec<String>) {
        let mut removed = Vec::new();
        for channel in channels {
            if self.app.hub.unsubscribe(&channel, self.connection) {
                removed.push(channel);
            } else {
                self.channel_error(&ErrorReport::new(
                    ErrorCode::NotSubscribed,
                    format!("not subscribed to channel `{channel}`"),
                ));
            }
        }
        self.metrics().request("UNSUBSCRIBE", "ok");
        self.channels_reply(false, &removed, None);
    }

    /// `SUBSCRIBED` / `UNSUBSCRIBED` (Elstat: op 1 / op 2) with `channels`.
    fn channels_reply(
        &self,
        subscribed: bool,
        channels: &[String],
        recovered: Option<&BTreeMap<String, bool>>,
    ) {
        let reply = match (self.framing, subscribed) {
            (Framing::SocketApi, true) => ServerMessage::Subscribed {
                channels,
                recovered,
            }
            .encode(),
            (Framing::SocketApi, false) => ServerMessage::Unsubscribed { channels }.encode(),
            (Framing::Elstat, true) => elstat::channels_reply(elstat::OP_SUBSCRIBED, channels),
            (Framing::Elstat, false) => elstat::channels_reply(elstat::OP_UNSUBSCRIBED, channels),
        };
        let _ = self.outbox.send_control(Control::Text(reply));
    }

    /// A refused channel: an `ERROR` on the Socket API; Elstat has no error
    /// message, its `SUBSCRIBED` lists only what succeeded.
    fn channel_error(&self, report: &ErrorReport) {
        match self.framing {
            Framing::SocketApi => self.error(report),
            Framing::Elstat => {
                tracing::debug!(message = %report.message, "channel refused")
            }
        }
    }

    /// Why this connection may not receive `channel`, if it may not.
    fn channel_refusal(&self, channel: &str) -> Option<ErrorReport> {
        let unknown = || {
            ErrorReport::new(
                ErrorCode::UnknownChannel,
                format!(
                    "no channel `{channel}`: channels are `status:<datasource>` and `latency:<datasource>`"
                ),
            )
        };
        match crate::live::ChannelName::parse(channel) {
            crate::live::ChannelName::Datasource { id } => {
                if !self
                    .app
                    .federation
                    .sources()
                    .iter()
                    .any(|s| s.info.id == id)
                {
                    Some(unknown())
                } else if !self.caller.may_use(id) {
                    Some(ErrorReport::new(
                        ErrorCode::Forbidden,
                        format!(
                            "this token may not use datasource `{id}`, so not channel `{channel}`"
                        ),
                    ))
                } else {
                    None
                }
            }
            crate::live::ChannelName::Unknown => Some(unknown()),
        }
    }

    /// The server's state for `PONG`: uptime, connections, memory, and the
    /// last measured health of each datasource this caller may use.
    fn stats(&self) -> serde_json::Value {
        let datasources: serde_json::Map<String, serde_json::Value> = self
            .app
            .federation
            .infos(&self.caller)
            .into_iter()
            .map(|info| {
                let status = match self.app.health.get(&info.id) {
                    Some(health) => serde_json::json!({
                        "ok": health.ok,
                        "latency_ms": health.latency_ms,
                        "checked_at_ms": health.checked_at_ms,
                    }),
                    // Not measured yet: the first check runs at start-up.
                    None => serde_json::json!({"ok": null}),
                };
                (info.id, status)
            })
            .collect();
        serde_json::json!({
            "uptime_ms": u64::try_from(self.app.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "connections": self.app.connections.load(std::sync::atomic::Ordering::Relaxed),
            "memory_bytes": crate::live::resident_bytes(),
            "datasources": datasources,
        })
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.app.metrics
    }

    /// Encodes and queues a message ahead of any results.
    fn control(&self, message: ServerMessage<'_>) {
        // A closed outbox means the connection is ending: nothing to tell.
        let _ = self.outbox.send_control(Control::Text(message.encode()));
    }

    fn error(&self, report: &ErrorReport) {
        tracing::debug!(message = %report.message, "client error");
        self.control(ServerMessage::Error(report));
    }

    /// Refuses a request when the connection already runs as many as it may.
    /// (`echo` describes the request; it is only built for a refusal.)
    fn refuse_if_busy(&self, kind: &str, echo: impl FnOnce() -> Echo) -> bool {
        if self.running.len() < self.app.limits.max_requests {
            return false;
        }
        self.metrics().request(kind, "rejected");
        let report = ErrorReport::new(
            ErrorCode::TooManyRequests,
            format!(
                "this connection already runs {} requests; wait for one to finish or cancel one",
                self.running.len()
            ),
        )
        .echoing(echo());
        self.error(&report);
        true
    }

    /// Answers an invalid request: its `ERROR`, then (with a request id) an
    /// empty `REQUEST_COMPLETED`, as for any request that ends.
    fn refuse(&self, kind: &str, refusal: Refusal) {
        self.metrics().request(kind, "failed");
        self.error(&refusal);
        if let Some(request_id) = &refusal.echo.request_id {
            self.control(ServerMessage::RequestCompleted {
                request_id,
                outcomes: &Default::default(),
            });
        }
    }

    /// Starts a live request (`previous`: the one an `UPDATE_REQUEST`
    /// replaces): its page, `REQUEST_COMPLETED`, `LIVE_STARTED`, then appends.
    fn follow(&mut self, query: ItemsQuery, previous: Option<Arc<LiveRequest>>) {
        let kind = "ITEMS_REQUEST";
        // The rules make sure a live request has an id.
        let Some(request_id) = query.echo.request_id.clone() else {
            return;
        };
        let refusal = if previous.is_some() {
            None
        } else if self.live.contains_key(&request_id) {
            Some(ErrorReport::new(
                ErrorCode::InvalidRequest,
                format!("a live request with request-id `{request_id}` is already running: send UPDATE_REQUEST to change it, or CANCEL_REQUEST"),
            ))
        } else if self.live.len() >= self.app.limits.max_live_queries {
            Some(ErrorReport::new(
                ErrorCode::TooManyRequests,
                format!(
                    "this connection already follows {} live requests; cancel one first",
                    self.live.len()
                ),
            ))
        } else {
            None
        };
        if let Some(report) = refusal {
            self.refuse(kind, Box::new(report.echoing(query.echo)));
            return;
        }
        let request = match previous {
            Some(previous) => previous.updated(query.echo.clone()),
            None => LiveRequest::new(self.connection, query.echo.clone()),
        };
        let live = Arc::clone(&self.app.live);
        let for_task = Arc::clone(&request);
        let page = query.clone();
        let key = self.start(kind, Some(request_id.clone()), move |f, scope| {
            Box::pin(async move {
                let resumed = live.recover(&page.resume).await;
                let outcome = f.items(page, &resumed, &scope).await;
                live.start(for_task, outcome.live, &scope).await;
                outcome.all_answered
            })
        });
        self.live.insert(
            request_id,
            Following {
                key,
                request,
                query,
            },
        );
    }

    /// `UPDATE_REQUEST`: the live request gets a new query (and optionally
    /// datasources and color) and sends its new page, then appends for it.
    /// Refused updates leave the old query live.
    fn update(&mut self, update: UpdateRequest) {
        let kind = "UPDATE_REQUEST";
        let request_id = update.request_id;
        let echo = Echo {
            query: Some(update.query.clone()),
            color: update.color.clone(),
            request_id: Some(request_id.clone()),
        };
        let Some(following) = self.live.get(&request_id) else {
            self.metrics().request(kind, "unknown_request");
            let report = ErrorReport::new(
                ErrorCode::UnknownRequest,
                format!("no live request has request-id `{request_id}`"),
            )
            .echoing(echo);
            self.error(&report);
            return;
        };
        let old = &following.query;
        let request = ItemsRequest {
            datasources: update
                .datasources
                .unwrap_or_else(|| old.datasources.clone()),
            query: update.query,
            from: old.search.from,
            size: old.search.size,
            color: update.color.or_else(|| old.echo.color.clone()),
            request_id: Some(request_id.clone()),
            live: true,
            resume: None,
        };
        let query = match self.app.rules.items(request) {
            Ok(query) => query,
            Err(refusal) => return self.refuse_update(&refusal),
        };
        // A query that does not parse is refused before the old one stops.
        let text = query.search.query.trim();
        if !(text.is_empty() || text == "*") {
            if let Err(e) = tributary_query::parse(text) {
                let report = ErrorReport::new(ErrorCode::BadQuery, e.to_string()).echoing(echo);
                return self.refuse_update(&report);
            }
        }
        if self.refuse_if_busy(kind, || echo) {
            return;
        }
        let Some(old) = self.live.remove(&request_id) else {
            return;
        };
        self.unfollow(&old);
        self.metrics().request(kind, "ok");
        self.follow(query, Some(old.request));
    }

    fn refuse_update(&self, report: &ErrorReport) {
        self.metrics().request("UPDATE_REQUEST", "failed");
        self.error(report);
    }

    /// Stops a live request: no more appends, its page stops if still
    /// running, and what is queued of it is dropped.
    fn unfollow(&mut self, following: &Following) {
        following.request.stop();
        self.app
            .live
            .leave(&following.query.datasources, self.connection, following.key);
        self.running.cancel(following.key);
        self.outbox.discard(following.key);
    }

    /// Starts a valid request as a task of its own.
    fn start<F>(&mut self, kind: &'static str, request_id: Option<RequestId>, run: F) -> RequestKey
    where
        F: FnOnce(
                Arc<crate::federation::Federation>,
                RequestScope,
            ) -> futures_util::future::BoxFuture<'static, bool>
            + Send
            + 'static,
    {
        let key = self.next_key;
        self.next_key += 1;
        let metrics = Arc::clone(self.metrics());
        // Counted from now until the last of the request's work has stopped,
        // whether it ends, fails or is aborted.
        let lease = self.running.start(key, kind, request_id.clone(), &metrics);
        let scope = RequestScope {
            key,
            caller: self.caller.clone(),
            outbox: self.outbox.clone(),
            lease,
            work: WorkLimits::new(Arc::new(ConnectionShare {
                share: Arc::clone(&self.searches),
                cores: Arc::clone(&self.app.cores),
                owner: self.connection,
            })),
        };
        let federation = Arc::clone(&self.app.federation);
        let span = tracing::debug_span!("request", connection = self.connection, key, kind, request_id = ?request_id);
        let task = tokio::spawn(
            async move {
                // The task itself holds the request for as long as it runs,
                // whatever `run` does with its scope.
                let _held = scope.lease.clone();
                let all_answered = run(federation, scope).await;
                metrics.request(kind, if all_answered { "completed" } else { "failed" });
                tracing::debug!(all_answered, "request finished");
            }
            .instrument(span),
        );
        self.running.set_task(key, task.abort_handle());
        key
    }

    /// Stops every running request with this id, and the live request with
    /// it; their queued results are dropped.
    fn cancel(&mut self, request_id: RequestId) {
        let following = self.live.remove(&request_id);
        if let Some(following) = &following {
            self.unfollow(following);
            self.metrics().request("ITEMS_REQUEST", "canceled");
        }
        let keys = self.running.with_id(&request_id);
        if keys.is_empty() && following.is_none() {
            self.metrics().request("CANCEL_REQUEST", "unknown_request");
            let report = ErrorReport::new(
                ErrorCode::UnknownRequest,
                format!("no running request has request-id `{request_id}`"),
            )
            .echoing(Echo {
                request_id: Some(request_id),
                ..Echo::default()
            });
            self.error(&report);
            return;
        }
        for key in keys {
            // It still counts until its work has stopped.
            if let Some(kind) = self.running.cancel(key) {
                self.outbox.discard(key);
                self.metrics().request(kind, "canceled");
            }
        }
        tracing::debug!(%request_id, "request canceled");
        self.control(ServerMessage::RequestCanceled {
            request_id: &request_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::protocol;
    use crate::testing;

    fn received(text: Value) -> Command {
        match protocol::decode(&text.to_string()) {
            Ok(message) => Command::Received(message),
            Err(error) => panic!("{text} does not decode: {error:?}"),
        }
    }

    #[tokio::test]
    async fn greets_with_the_datasources_then_answers_items_and_completes() {
        let app = testing::app(&testing::settings());
        let (mut session, mut written) = testing::session(&app, Framing::SocketApi);
        session.greet();
        let initial = written.json().await;
        assert_eq!(initial["type"], "INITIAL_STATE_RECEIVE");
        assert_eq!(
            initial["state"]["datasources"],
            json!([{"id":"fruit","name":"FRUIT","type":"words"},{"id":"broken","name":"BROKEN","type":"words"}])
        );

        session.handle(received(
            json!({"type":"ITEMS_REQUEST","datasources":["fruit"],
            "query":"apple","color":"#f00","request-id":"r1"}),
        ));
        assert!(!session.is_idle());
        let items = written.json().await;
        assert_eq!(items["type"], "ITEMS_RECEIVE");
        assert_eq!(items["items"]["total"], 2);
        assert_eq!(items["items"]["color"], "#f00");
        assert_eq!(items["request-id"], "r1");
        let completed = written.json().await;
        assert_eq!(completed["type"], "REQUEST_COMPLETED");
        assert_eq!(completed["request-id"], "r1");

        // Once its work has stopped, the request no longer counts.
        let mut running = session.running();
        running.wait_for(|n| *n == 0).await.expect("the count");
        assert!(session.is_idle());
    }

    #[tokio::test]
    async fn one_datasource_failing_leaves_the_others_answering() {
        let app = testing::app(&testing::settings());
        let (mut session, mut written) = testing::session(&app, Framing::SocketApi);
        session.handle(received(
            json!({"type":"ITEMS_REQUEST","datasources":["fruit","broken"],
            "query":"*","request-id":7}),
        ));
        let mut kinds = Vec::new();
        loop {
            let message = written.json().await;
            let kind = message["type"].as_str().unwrap_or_default().to_owned();
            if kind == "ERROR" {
                assert_eq!(message["error"]["datasource"], "broken");
                let text = message["error"]["message"].as_str().unwrap_or("");
                assert!(text.contains("the words are gone"), "{message}");
            }
            if kind == "ITEMS_RECEIVE" {
                assert_eq!(message["items"]["total"], 3);
            }
            let done = kind == "REQUEST_COMPLETED";
            kinds.push(kind);
            if done {
                break;
            }
        }
        kinds.sort();
        assert_eq!(kinds, ["ERROR", "ITEMS_RECEIVE", "REQUEST_COMPLETED"]);
    }

    #[tokio::test]
    async fn requests_past_the_connections_limit_are_refused_and_unknown_cancels_reported() {
        let mut settings = testing::settings();
        settings.limits.max_requests = 1;
        let app = testing::app(&settings);
        let (mut session, mut written) = testing::session(&app, Framing::SocketApi);
        // The first still counts: its answer is queued, unread, and the
        // test runtime has not run its task to the end yet.
        session.handle(received(
            json!({"type":"FIELDS_REQUEST","datasources":["fruit"]}),
        ));
        session.handle(received(
            json!({"type":"FIELDS_REQUEST","datasources":["fruit"],"request-id":"two"}),
        ));
        let mut refused = None;
        for _ in 0..3 {
            let message = written.json().await;
            if message["type"] == "ERROR" {
                refused = Some(message);
                break;
            }
        }
        let refused = refused.expect("the second request is refused");
        assert_eq!(refused["request-id"], "two", "{refused}");
        assert_eq!(refused["error"]["code"], "too_many_requests", "{refused}");

        session.handle(received(
            json!({"type":"CANCEL_REQUEST","request-id":"nope"}),
        ));
        loop {
            let message = written.json().await;
            if message["type"] == "ERROR" {
                let text = message["error"]["message"].as_str().unwrap_or("");
                assert!(text.contains("`nope`"), "{message}");
                break;
            }
        }
    }

    #[tokio::test]
    async fn elstat_framing_answers_subscriptions_with_op_codes_and_no_errors() {
        let app = testing::app(&testing::settings());
        let (mut session, mut written) = testing::session(&app, Framing::Elstat);
        session.greet();
        let message =
            crate::protocol::elstat::decode(r#"{"op":0,"channels":["status:fruit","nonsense"]}"#)
                .unwrap_or_else(|_| panic!("a valid Elstat message"));
        session.handle(Command::Received(message));
        let reply = written.json().await;
        // Only what succeeded is listed; the unknown channel gets no ERROR.
        assert_eq!(reply, json!({"op": 1, "channels": ["status:fruit"]}));
        session.handle(Command::Shutdown(Duration::from_secs(1)));
        session.handle(Command::Stop);
        assert!(
            written.nothing_more().await,
            "Elstat has no shutdown notice"
        );
        assert_eq!(app.hub.subscribers("status:fruit"), 0);
    }
}
