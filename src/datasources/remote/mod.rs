//! Remote datasources: a datasource served by services connected to
//! `/ws/services`, written in any language.
//!
//! A service that identifies with `data.datasource = {id, name, fields}`
//! becomes (or joins) the remote datasource `id`. tributary asks it with
//! `EVENT`s sent `DIRECT` to its connection — `SEARCH` (`{query, from, size,
//! context}`) or `FIELDS` — each with a fresh id; the service answers with
//! one or more `REPLY`s to that id carrying `{total, results, done}`
//! (results in the Socket API's item shape) or `{error: {kind, message}}`.
//! When a request is canceled or times out, the service gets `CANCEL`
//! (`data.id` = the request's id) and later replies to it are dropped.
//!
//! Several services may serve one datasource: requests go round-robin, and a
//! request whose service leaves mid-way is asked again of another for what
//! is still missing. Records a service publishes (`EVENT` `PUBLISH`) reach
//! live queries through [`live::Announced`].
//!
//! This module sees only the datasource API and the [`Link`] the services
//! socket gives it for each connection.

mod live;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::flatten::Flattened;
use super::*;

/// How long a request waits for a service to (re)connect when none serves
/// the datasource (a plugin restarting), within the request's own deadline.
const PROVIDER_GRACE: Duration = Duration::from_secs(5);
/// How many times one request moves to another service after its service left.
const MAX_FAILOVERS: u32 = 6;
/// The first pause before asking another service, doubled at each try
/// (50 ms … 1.6 s, 3.15 s in all: within [`PROVIDER_GRACE`]).
const FAILOVER_PAUSE: Duration = Duration::from_millis(50);
/// Reply bytes queued for one request before the service is told it sends
/// faster than the client reads (the request then fails).
const MAX_QUEUED_BYTES: usize = 8 << 20;
/// Ids of ended requests whose late replies are dropped without an error.
const REMEMBERED_ENDED: usize = 4096;

/// A services connection, as the adapter sees it: somewhere to send events.
pub trait Link: Send + Sync {
    /// Queues one encoded message for the service; false when its connection
    /// is gone or cannot take more.
    fn send(&self, message: String) -> bool;
}

/// What a service declares when it identifies (`data.datasource`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub fields: Vec<Field>,
    /// The service answers `EXPAND` (otherwise expansions are counted by
    /// the server from a sample of `SEARCH` results).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expand: bool,
    /// The service answers `HEALTH` with its own health (otherwise a
    /// datasource with a service serving it is healthy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub health: bool,
}

impl Declaration {
    /// Reads and checks `data.datasource`; the error says what is wrong.
    pub fn read(value: &Value) -> Result<Declaration, String> {
        let declaration: Declaration = serde_json::from_value(value.clone()).map_err(|e| {
            format!("data.datasource must be {{\"id\", \"name\", \"fields\": [{{\"path\", \"type\"}}], \"expand\": true or false, \"health\": true or false}}: {}", tributary_protocol::plain_error(&e))
        })?;
        let id = &declaration.id;
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(format!(
                "data.datasource.id `{id}` must be 1 to 64 letters, digits, `_`, `-` or `.`"
            ));
        }
        Ok(declaration)
    }
}

/// What the request loop receives for one event it sent.
enum Reply {
    /// A reply's `data`, as written, and the reply's size.
    Data(Option<Box<RawValue>>, usize),
    /// The service sent more than [`MAX_QUEUED_BYTES`] ahead of the client.
    Overflow,
}

/// Who serves a request: a services connection of this node, or another
/// node of the cluster (which asks one of its own connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Connection(u64),
    Node(Arc<str>),
}

impl Route {
    fn is_local(&self) -> bool {
        matches!(self, Route::Connection(_))
    }

    fn identifier(&self) -> String {
        match self {
            Route::Connection(id) => id.to_string(),
            Route::Node(node) => node.to_string(),
        }
    }
}

/// Where the replies to a request another node relayed here go.
pub trait ReplyTo: Send + Sync {
    /// One reply (`data` as the service wrote it).
    fn reply(&self, key: &str, data: Option<&RawValue>, bytes: usize);
    /// The service left before its last reply.
    fn gone(&self, key: &str);
}

/// A request sent to a service, waiting for its replies.
struct Pending {
    route: Route,
    target: Target,
}

enum Target {
    /// A search or fields request of this node.
    Local {
        replies: mpsc::UnboundedSender<Reply>,
        queued: Arc<AtomicUsize>,
    },
    /// Another node's request: replies are passed on; `once`: the first
    /// reply is the last (FIELDS).
    Relay { to: Arc<dyn ReplyTo>, once: bool },
}

struct Provider {
    route: Route,
    link: Arc<dyn Link>,
}

#[derive(Default)]
struct State {
    providers: Vec<Provider>,
    /// Round-robin position.
    next: usize,
    /// Event id (its JSON text) → the request waiting for its replies.
    pending: HashMap<String, Pending>,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
}

/// What became of a `REPLY` a service sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// It answers one of this datasource's requests.
    Taken,
    /// It answers a request that has ended (canceled, timed out, done):
    /// dropped, without troubling the service.
    Late,
    /// The service sends replies faster than they can be delivered; the
    /// request has failed.
    Overflow,
    /// Not an id of this datasource's requests.
    NotOurs,
}

/// A datasource served by services over `/ws/services`.
pub struct RemoteDatasource {
    id: String,
    declared: Mutex<Vec<Field>>,
    state: Mutex<State>,
    /// Woken when a service starts serving.
    joined: Notify,
    /// This node's id, in the ids of its requests: unique across the cluster.
    origin: Arc<str>,
    sequence: AtomicU64,
    live: live::Announced,
    /// Its services answer `EXPAND` (as the last one to identify declared).
    expands: std::sync::atomic::AtomicBool,
    /// Its services answer `HEALTH` (as the last one to identify declared).
    checks_health: std::sync::atomic::AtomicBool,
    faults: ReplyFaults,
}

/// Mistakes in services' replies that the server works around, counted
/// (`/metrics`) so that a plugin's author (and the conformance kit) sees them.
pub struct ReplyFaults {
    /// Results sent past a search's `size` (dropped).
    pub past_size: prometheus::IntCounter,
    /// `SEARCH` replies without `total`.
    pub without_total: prometheus::IntCounter,
}

impl RemoteDatasource {
    pub fn new(
        declaration: &Declaration,
        origin: &str,
        faults: ReplyFaults,
    ) -> Result<RemoteDatasource, String> {
        Ok(RemoteDatasource {
            origin: Arc::from(origin),
            id: declaration.id.clone(),
            declared: Mutex::new(declaration.fields.clone()),
            state: Mutex::new(State::default()),
            joined: Notify::new(),
            sequence: AtomicU64::new(1),
            live: live::Announced::new(&declaration.id, &declaration.fields)?,
            expands: std::sync::atomic::AtomicBool::new(declaration.expand),
            checks_health: std::sync::atomic::AtomicBool::new(declaration.health),
            faults,
        })
    }

    /// The datasource's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A service connection (or another node) starts serving this
    /// datasource; what it declared replaces what was declared before.
    pub fn attach(&self, route: Route, link: Arc<dyn Link>, declaration: &Declaration) {
        self.expands.store(declaration.expand, Ordering::Relaxed);
        self.checks_health
            .store(declaration.health, Ordering::Relaxed);
        if !declaration.fields.is_empty() {
            *self.declared.lock().unwrap_or_else(|e| e.into_inner()) = declaration.fields.clone();
        }
        let mut state = self.state();
        if !state.providers.iter().any(|p| p.route == route) {
            state.providers.push(Provider { route, link });
        }
        drop(state);
        self.joined.notify_waiters();
    }

    /// The connection (or node) stopped serving: its requests move to
    /// another service, and other nodes' requests it held are told.
    pub fn detach(&self, route: &Route) {
        let mut state = self.state();
        state.providers.retain(|p| &p.route != route);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|(_, p)| &p.route == route);
        state.pending = kept.into_iter().collect();
        drop(state);
        // Dropping a local request's sender tells it its service left.
        for (key, pending) in gone {
            if let Target::Relay { to, .. } = pending.target {
                to.gone(&key);
            }
        }
    }

    /// Whether `route` serves it now.
    pub fn is_served_by(&self, route: &Route) -> bool {
        self.state().providers.iter().any(|p| &p.route == route)
    }

    /// How many service connections of this node serve it now.
    pub fn local_providers(&self) -> usize {
        self.state()
            .providers
            .iter()
            .filter(|p| p.route.is_local())
            .count()
    }

    /// How many connections and nodes serve it now.
    pub fn providers(&self) -> usize {
        self.state().providers.len()
    }

    /// Routes a `REPLY` that came from `route` with id `key` (its JSON text).
    pub fn reply(
        &self,
        route: &Route,
        key: &str,
        data: Option<Box<RawValue>>,
        bytes: usize,
    ) -> Routed {
        let mut state = self.state();
        let Some(pending) = state.pending.get(key).filter(|p| &p.route == route) else {
            return if state.ended.contains(key) {
                Routed::Late
            } else {
                Routed::NotOurs
            };
        };
        match &pending.target {
            Target::Local { replies, queued } => {
                let queued = queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if queued > MAX_QUEUED_BYTES {
                    let _ = replies.send(Reply::Overflow);
                    state.pending.remove(key);
                    remember_ended(&mut state, key.to_owned());
                    return Routed::Overflow;
                }
                if replies.send(Reply::Data(data, bytes)).is_err() {
                    return Routed::Late;
                }
            }
            Target::Relay { to, once } => {
                let last = *once || is_last(data.as_deref());
                to.reply(key, data.as_deref(), bytes);
                if last {
                    state.pending.remove(key);
                    remember_ended(&mut state, key.to_owned());
                }
            }
        }
        Routed::Taken
    }

    /// Another node's service left mid-request: its request moves on.
    pub fn drop_pending(&self, route: &Route, key: &str) {
        let mut state = self.state();
        if state.pending.get(key).is_some_and(|p| &p.route == route) {
            state.pending.remove(key);
        }
    }

    /// Asks one of this node's services on behalf of another node: the
    /// event keeps its id, its replies go to `to`. False when no service of
    /// this node serves the datasource.
    pub fn relay(&self, id: &str, event: &str, data: &RawValue, to: Arc<dyn ReplyTo>) -> bool {
        let mut state = self.state();
        let locals: Vec<usize> = (0..state.providers.len())
            .filter(|&i| state.providers[i].route.is_local())
            .collect();
        if locals.is_empty() {
            return false;
        }
        let index = locals[state.next % locals.len()];
        state.next = state.next.wrapping_add(1);
        let provider = &state.providers[index];
        let route = provider.route.clone();
        let message = event_text(id, event, data, &route);
        if !provider.link.send(message) {
            return false;
        }
        let key = Value::String(id.to_owned()).to_string();
        let once = event != "SEARCH";
        state.pending.insert(
            key,
            Pending {
                route,
                target: Target::Relay { to, once },
            },
        );
        true
    }

    /// Another node canceled a request it relayed here.
    pub fn cancel_relay(&self, id: &str) {
        let key = Value::String(id.to_owned()).to_string();
        let mut state = self.state();
        if let Some(pending) = state.pending.remove(&key) {
            remember_ended(&mut state, key);
            if let Some(provider) = state.providers.iter().find(|p| p.route == pending.route) {
                provider.link.send(cancel_text(id, &pending.route));
            }
        }
    }

    /// Records a service published: they reach this datasource's live queries.
    pub async fn publish(&self, records: Records) -> Result<Appended, AppendError> {
        self.live.publish(records).await
    }

    /// Sends `event` to one serving service and registers for its replies.
    async fn ask(
        &self,
        request: &RequestContext,
        event: &str,
        data: Value,
    ) -> Result<Asked<'_>, DatasourceError> {
        let until = request.deadline.min(Instant::now() + PROVIDER_GRACE);
        loop {
            let joined = self.joined.notified();
            tokio::pin!(joined);
            joined.as_mut().enable();
            if let Some(asked) = self.try_ask(event, &data) {
                return Ok(asked);
            }
            if tokio::time::timeout_at(until.into(), joined).await.is_err() {
                return Err(DatasourceError::unavailable(format!(
                    "no service serves datasource `{}` now",
                    self.id
                )));
            }
        }
    }

    fn try_ask(&self, event: &str, data: &Value) -> Option<Asked<'_>> {
        let mut state = self.state();
        let data = serde_json::value::to_raw_value(data).ok()?;
        while !state.providers.is_empty() {
            // This node's services first; other nodes' when it has none.
            let locals: Vec<usize> = (0..state.providers.len())
                .filter(|&i| state.providers[i].route.is_local())
                .collect();
            let index = match locals.len() {
                0 => state.next % state.providers.len(),
                n => locals[state.next % n],
            };
            state.next = state.next.wrapping_add(1);
            let provider = &state.providers[index];
            let route = provider.route.clone();
            // Unique (the node, a sequence) and unguessable (random bits):
            // no service can answer, or cancel, a request sent to another.
            let id = format!(
                "{}-{}-{}-{:032x}",
                self.id,
                self.origin,
                self.sequence.fetch_add(1, Ordering::Relaxed),
                unguessable()
            );
            if !provider.link.send(event_text(&id, event, &data, &route)) {
                // Its connection is closing: it will detach itself.
                state.providers.remove(index);
                continue;
            }
            let key = Value::String(id.clone()).to_string();
            let (sender, replies) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            state.pending.insert(
                key.clone(),
                Pending {
                    route: route.clone(),
                    target: Target::Local {
                        replies: sender,
                        queued: Arc::clone(&queued),
                    },
                },
            );
            return Some(Asked {
                remote: self,
                id,
                key,
                route,
                replies,
                queued,
                done: false,
            });
        }
        None
    }

    /// Streams one asked search's replies into `results`; `from`/`left`
    /// move past what arrived, so another service can be asked for the rest.
    async fn stream(
        &self,
        asked: &mut Asked<'_>,
        from: &mut u64,
        left: &mut u64,
        results: &mut ResultSink,
    ) -> Result<(), Ended> {
        while let Some(reply) = asked.next().await? {
            let page: SearchReply = serde_json::from_str(reply.get())
                .map_err(|e| self.invalid(format!("a SEARCH reply must be {{\"total\", \"results\", \"done\"}} or {{\"error\"}}: {}", tributary_protocol::plain_error(&e))))?;
            if let Some(error) = page.error {
                // The service has ended this request itself: no CANCEL.
                asked.done = true;
                return Err(Ended::Failed(error.into_error(&self.id)));
            }
            match page.total {
                Some(total) => results.set_total(total),
                None => self.faults.without_total.inc(),
            }
            let mut items = Vec::with_capacity(page.results.len());
            let past = (page.results.len() as u64).saturating_sub(*left);
            if past > 0 {
                self.faults.past_size.inc_by(past);
            }
            for result in page
                .results
                .into_iter()
                .take(usize::try_from(*left).unwrap_or(usize::MAX))
            {
                items.push(result.into_item().map_err(|e| self.invalid(e))?);
            }
            *from += items.len() as u64;
            *left -= items.len() as u64;
            if !items.is_empty() {
                results
                    .push(items)
                    .await
                    .map_err(|closed| Ended::Failed(closed.into()))?;
            }
            if page.done {
                asked.done = true;
                return Ok(());
            }
        }
        Err(Ended::Gone)
    }

    fn invalid(&self, message: String) -> Ended {
        Ended::Failed(DatasourceError::unavailable(format!(
            "the service serving `{}` sent an invalid reply: {message}",
            self.id
        )))
    }

    fn gone(&self) -> DatasourceError {
        DatasourceError::unavailable(format!(
            "the service serving `{}` disconnected during the request",
            self.id
        ))
    }
}

/// An event for a service, `DIRECT` to the connection (or node) `route`.
/// 128 random bits from the system's generator (a clock-derived value if
/// it ever fails, which Linux's `getrandom` does not).
fn unguessable() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return now ^ ((std::process::id() as u128) << 64);
    }
    u128::from_le_bytes(bytes)
}

fn event_text(id: &str, event: &str, data: &RawValue, route: &Route) -> String {
    #[derive(serde::Serialize)]
    struct Event<'a> {
        id: &'a str,
        op: u8,
        event: &'a str,
        data: &'a RawValue,
        intent: Intent,
    }
    #[derive(serde::Serialize)]
    struct Intent {
        target: &'static str,
        identifier: String,
    }
    let event = Event {
        id,
        op: 0,
        event,
        data,
        intent: Intent {
            target: "DIRECT",
            identifier: route.identifier(),
        },
    };
    // Strings and raw JSON only: serialisation cannot fail.
    serde_json::to_string(&event).unwrap_or_default()
}

fn cancel_text(id: &str, route: &Route) -> String {
    json!({
        "op": 0,
        "event": "CANCEL",
        "data": {"id": id},
        "intent": {"target": "DIRECT", "identifier": route.identifier()},
    })
    .to_string()
}

/// Whether a SEARCH reply is the last one (`done`, or an error).
fn is_last(data: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Ending {
        #[serde(default)]
        done: bool,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    data.and_then(|d| serde_json::from_str::<Ending>(d.get()).ok())
        .is_none_or(|e| e.done || e.error.is_some())
}

fn remember_ended(state: &mut State, key: String) {
    if state.ended.insert(key.clone()) {
        state.ended_order.push_back(key);
        while state.ended_order.len() > REMEMBERED_ENDED {
            if let Some(old) = state.ended_order.pop_front() {
                state.ended.remove(&old);
            }
        }
    }
}

/// Why streaming an asked request stopped early.
enum Ended {
    /// Its service left: ask another.
    Gone,
    Failed(DatasourceError),
}

/// One event sent to a service. Dropped before its last reply (the request
/// was canceled or timed out), it tells the service `CANCEL`.
struct Asked<'a> {
    remote: &'a RemoteDatasource,
    id: String,
    key: String,
    route: Route,
    replies: mpsc::UnboundedReceiver<Reply>,
    queued: Arc<AtomicUsize>,
    done: bool,
}

impl Asked<'_> {
    /// The next reply's data; `None` when the service left.
    async fn next(&mut self) -> Result<Option<Box<RawValue>>, Ended> {
        match self.replies.recv().await {
            None => Ok(None),
            Some(Reply::Overflow) => Err(Ended::Failed(DatasourceError::unavailable(format!(
                "the service serving `{}` sent results faster than they could be delivered",
                self.remote.id
            )))),
            Some(Reply::Data(data, bytes)) => {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                Ok(Some(data.unwrap_or_else(|| RawValue::NULL.to_owned())))
            }
        }
    }
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        let mut state = self.remote.state();
        state.pending.remove(&self.key);
        remember_ended(&mut state, std::mem::take(&mut self.key));
        if self.done {
            return;
        }
        if let Some(provider) = state.providers.iter().find(|p| p.route == self.route) {
            provider.link.send(cancel_text(&self.id, &self.route));
        }
    }
}

/// One `REPLY` to a `SEARCH`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchReply {
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    results: Vec<RemoteItem>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<ReplyError>,
}

/// A result in the Socket API's item shape; `fields` may be nested (it is
/// flattened as it is read).
#[derive(Deserialize)]
struct RemoteItem {
    id: Value,
    #[serde(default)]
    fields: Option<Flattened>,
    #[serde(default)]
    highlight: Option<Value>,
}

impl RemoteItem {
    fn into_item(self) -> Result<Item, String> {
        let id = match self.id {
            Value::String(id) => id,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "a result's id must be a string or a number, not {other}"
                ))
            }
        };
        let fields = self
            .fields
            .unwrap_or_default()
            .finish()
            .map_err(|e| format!("result {id}: {e}"))?;
        let mut item = Item {
            id,
            fields,
            highlight: None,
        };
        if let Some(Value::Object(highlight)) = self.highlight {
            let highlight = highlight
                .into_iter()
                .filter_map(|(path, fragments)| {
                    let fragments: Vec<String> = serde_json::from_value(fragments).ok()?;
                    Some((path, fragments))
                })
                .collect();
            item = item.with_highlight(&highlight);
        }
        Ok(item)
    }
}

/// `{error: {kind, message}}`: why the service could not answer.
#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ReplyError {
    fn into_error(self, id: &str) -> DatasourceError {
        let message = self
            .message
            .unwrap_or_else(|| format!("the service serving `{id}` could not answer"));
        let kind = match self.kind.as_deref() {
            Some("bad_query") => ErrorKind::BadQuery,
            Some("unauthorized") => ErrorKind::Unauthorized,
            Some("timeout") => ErrorKind::Timeout,
            _ => ErrorKind::Unavailable,
        };
        DatasourceError::new(kind, message)
    }
}

/// One `REPLY` to `FIELDS`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsReply {
    #[serde(default)]
    index: Option<String>,
    #[serde(default)]
    fields: Option<Vec<Field>>,
    #[serde(default)]
    error: Option<ReplyError>,
}

/// A service's expansion kept to what was asked: at most `size` new values
/// of each asked field, connections only from a selected value to one of
/// them, `via` as the server knows it.
fn within_bounds(query: &ExpandQuery, mut found: Expansion) -> Expansion {
    let mut per_field: HashMap<String, usize> = HashMap::new();
    found.vertices.retain(|v| {
        let n = per_field.entry(v.field.clone()).or_default();
        *n += 1;
        query.fields.contains(&v.field) && *n <= query.size
    });
    let kept: HashSet<(&str, &str)> = found
        .vertices
        .iter()
        .map(|v| (v.field.as_str(), v.value.as_str()))
        .collect();
    let connections = std::mem::take(&mut found.connections);
    found.connections = connections
        .into_iter()
        .filter(|c| kept.contains(&(c.to.field.as_str(), c.to.value.as_str())))
        .filter_map(|mut c| {
            let selected = query.selected.iter().find(|s| s.value == c.from)?;
            c.via = selected.via.clone();
            Some(c)
        })
        .collect();
    if found.method.is_empty() {
        found.method = "the service's own count".into();
    }
    found
}

/// One `REPLY` to `EXPAND`: an expansion, or why there is none.
#[derive(Deserialize)]
struct ExpandReply {
    #[serde(flatten)]
    expansion: Expansion,
    #[serde(default)]
    error: Option<ReplyError>,
}

/// One `REPLY` to `HEALTH`: the service's own verdict, or an error.
#[derive(Deserialize)]
struct HealthReply {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    error: Option<ReplyError>,
}

/// The query as the server's parser reads it (`tributary_query::tree`),
/// so every plugin evaluates the same grammar; a query that does not parse
/// carries the parser's error instead, for the plugin to answer with.
fn parsed(query: &str) -> Value {
    match tributary_query::tree::parsed(query) {
        Ok(tree) => tree,
        Err(error) => {
            json!({"version": tributary_query::tree::VERSION, "error": error.to_string()})
        }
    }
}

/// What a search tells the service about who asks and by when.
fn context(request: &RequestContext) -> Value {
    let left = request.remaining();
    json!({
        "caller": request.caller.token_name.as_deref(),
        "timeout_ms": u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
    })
}

#[async_trait]
impl Datasource for RemoteDatasource {
    async fn fields(&self, request: &RequestContext) -> Result<FieldList, DatasourceError> {
        let mut asked = self.ask(request, "FIELDS", json!({})).await?;
        let reply = match asked.next().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(self.gone()),
            Err(Ended::Failed(error)) => return Err(error),
            Err(Ended::Gone) => return Err(self.gone()),
        };
        asked.done = true;
        let reply: FieldsReply = serde_json::from_str(reply.get()).map_err(|e| {
            DatasourceError::unavailable(format!(
                "the service serving `{}` sent an invalid reply: a FIELDS reply must be {{\"fields\": [{{\"path\", \"type\"}}]}} or {{\"error\"}}: {}",
                self.id,
                tributary_protocol::plain_error(&e)
            ))
        })?;
        if let Some(error) = reply.error {
            return Err(error.into_error(&self.id));
        }
        let fields = match reply.fields {
            Some(fields) => fields,
            None => self
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        Ok(FieldList {
            index: reply.index.unwrap_or_else(|| self.id.clone()),
            fields,
        })
    }

    async fn search(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        self.search_with_failover(request, query, results).await
    }

    /// No service: unavailable. A service that declared `"health": true`
    /// is asked (`HEALTH`) and its verdict, message and latency are the
    /// datasource's; any other serving service means healthy.
    async fn health(&self) -> Result<Healthy, DatasourceError> {
        if self.providers() == 0 {
            return Err(DatasourceError::unavailable(format!(
                "no service serves datasource `{}` now",
                self.id
            )));
        }
        if !self.checks_health.load(Ordering::Relaxed) {
            return Ok(Healthy::default());
        }
        let request = RequestContext {
            caller: Caller::default(),
            deadline: Instant::now() + PROVIDER_GRACE,
        };
        let mut asked = self
            .ask(&request, "HEALTH", json!({"context": context(&request)}))
            .await?;
        let reply = match asked.next().await {
            Ok(Some(reply)) => reply,
            Ok(None) | Err(Ended::Gone) => return Err(self.gone()),
            Err(Ended::Failed(error)) => return Err(error),
        };
        asked.done = true;
        let reply: HealthReply = serde_json::from_str(reply.get()).map_err(|e| {
            DatasourceError::unavailable(format!(
                "the service serving `{}` sent an invalid reply: a HEALTH reply must be {{\"ok\": true or false, \"message\", \"latency_ms\"}} or {{\"error\"}}: {}",
                self.id,
                tributary_protocol::plain_error(&e)
            ))
        })?;
        if let Some(error) = reply.error {
            return Err(error.into_error(&self.id));
        }
        match reply.ok {
            Some(true) => Ok(Healthy {
                latency: reply.latency_ms.map(Duration::from_millis),
            }),
            Some(false) => Err(DatasourceError::unavailable(reply.message.unwrap_or_else(
                || format!("the service serving `{}` reports it is not healthy", self.id),
            ))),
            None => Err(DatasourceError::unavailable(format!(
                "the service serving `{}` sent an invalid reply: a HEALTH reply must say \"ok\": true or false",
                self.id
            ))),
        }
    }

    fn expander(&self) -> Option<&dyn Expand> {
        Some(self)
    }

    fn publisher(&self) -> Option<&dyn Publish> {
        Some(self)
    }

    fn live(&self) -> Option<&dyn Live> {
        Some(self)
    }
}

#[async_trait]
impl Expand for RemoteDatasource {
    /// `EXPAND` to a service that declared it answers it (`None` otherwise:
    /// declarations change while the service is connected).
    async fn expand(
        &self,
        request: &RequestContext,
        query: &ExpandQuery,
        _work: &WorkLimits,
    ) -> Result<Option<Expansion>, DatasourceError> {
        if !self.expands.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let selected: Vec<Value> = query
            .selected
            .iter()
            .map(|s| json!({"value": s.value, "fields": s.fields, "lowercase": s.lowercase, "forms": s.forms}))
            .collect();
        let data = json!({
            "selected": selected,
            "fields": query.fields,
            "size": query.size,
            "exclude": query.exclude,
            "mode": query.mode,
            "context": context(request),
        });
        let mut asked = self.ask(request, "EXPAND", data).await?;
        let reply = match asked.next().await {
            Ok(Some(reply)) => reply,
            Ok(None) | Err(Ended::Gone) => return Err(self.gone()),
            Err(Ended::Failed(error)) => return Err(error),
        };
        asked.done = true;
        let reply: ExpandReply = serde_json::from_str(reply.get()).map_err(|e| {
            DatasourceError::unavailable(format!(
                "the service serving `{}` sent an invalid reply: an EXPAND reply must be {{\"vertices\": [{{\"field\", \"value\", \"doc_count\", \"weight\"}}], \"connections\": [{{\"from\", \"to\", \"doc_count\"}}]}} or {{\"error\"}}: {}",
                self.id,
                tributary_protocol::plain_error(&e)
            ))
        })?;
        if let Some(error) = reply.error {
            return Err(error.into_error(&self.id));
        }
        Ok(Some(within_bounds(query, reply.expansion)))
    }
}

#[async_trait]
impl Publish for RemoteDatasource {
    async fn append(&self, records: Records) -> Result<Appended, AppendError> {
        self.publish(records).await
    }

    fn check_append(&self, records: &Records) -> Result<Appended, AppendError> {
        self.live.check(records)
    }

    async fn append_published(
        &self,
        records: Records,
        publications: Vec<Publication>,
    ) -> Result<Appended, AppendError> {
        self.live.publish_at(records, publications).await
    }
}

impl RemoteDatasource {
    /// A search, asked again of another service serving the datasource
    /// when the one answering leaves mid-request.
    async fn search_with_failover(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let (mut from, mut left) = (query.from, query.size);
        let mut failovers = 0;
        loop {
            let data = json!({
                "query": query.query,
                "parsed": parsed(&query.query),
                "from": from,
                "size": left,
                "context": context(request),
            });
            let mut asked = self.ask(request, "SEARCH", data).await?;
            match self.stream(&mut asked, &mut from, &mut left, results).await {
                Ok(()) => return Ok(()),
                Err(Ended::Failed(error)) => return Err(error),
                Err(Ended::Gone) if failovers < MAX_FAILOVERS => {
                    // Another node may still list the service that left for
                    // a moment (its announcement is on the way) and answer
                    // "gone" at once: wait a little longer before each try,
                    // so a service that takes over in time is found.
                    let pause = FAILOVER_PAUSE * (1 << failovers);
                    failovers += 1;
                    tracing::info!(datasource = %self.id, ?pause, "service left mid-request; asking another");
                    tokio::time::sleep_until((Instant::now() + pause).min(request.deadline).into())
                        .await;
                }
                Err(Ended::Gone) => return Err(self.gone()),
            }
        }
    }
}

/// A remote datasource's live query: its first page from the service, then
/// the records services publish that match it.
#[async_trait]
impl Live for RemoteDatasource {
    fn mode(&self) -> LiveMode {
        self.live.mode()
    }

    async fn search_live(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<LiveCursor, DatasourceError> {
        // Taken first: a record published during the search is reported
        // (perhaps again) rather than missed.
        let cursor = self.live.position();
        self.search(request, query, results).await?;
        Ok(cursor)
    }

    async fn changes(&self, watches: &mut [Watch]) -> Vec<Result<Vec<Item>, DatasourceError>> {
        self.live.changes(watches).await
    }

    fn position_of(&self, cursor: &LiveCursor) -> Option<Position> {
        self.live.position_of(cursor)
    }

    fn cursor_after(&self, position: &Position) -> Option<LiveCursor> {
        self.live.cursor_after(position)
    }
}
