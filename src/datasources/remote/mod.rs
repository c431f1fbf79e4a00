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
const MAX_FAILOVERS: usize = 3;
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub fields: Vec<Field>,
}

impl Declaration {
    /// Reads and checks `data.datasource`; the error says what is wrong.
    pub fn read(value: &Value) -> Result<Declaration, String> {
        let declaration: Declaration = serde_json::from_value(value.clone()).map_err(|e| {
            format!("data.datasource must be {{\"id\", \"name\", \"fields\": [{{\"path\", \"type\"}}]}}: {e}")
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

/// A request sent to a service, waiting for its replies.
struct Pending {
    connection: u64,
    replies: mpsc::UnboundedSender<Reply>,
    queued: Arc<AtomicUsize>,
}

struct Provider {
    connection: u64,
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
    sequence: AtomicU64,
    live: live::Announced,
}

impl RemoteDatasource {
    pub fn new(declaration: &Declaration) -> Result<RemoteDatasource, String> {
        Ok(RemoteDatasource {
            id: declaration.id.clone(),
            declared: Mutex::new(declaration.fields.clone()),
            state: Mutex::new(State::default()),
            joined: Notify::new(),
            sequence: AtomicU64::new(1),
            live: live::Announced::new(&declaration.id, &declaration.fields)?,
        })
    }

    /// The datasource's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A service connection starts serving this datasource; what it
    /// declared replaces what was declared before.
    pub fn attach(&self, connection: u64, link: Arc<dyn Link>, declaration: &Declaration) {
        if !declaration.fields.is_empty() {
            *self.declared.lock().unwrap_or_else(|e| e.into_inner()) = declaration.fields.clone();
        }
        self.state().providers.push(Provider { connection, link });
        self.joined.notify_waiters();
    }

    /// The connection ended: its requests move to another service.
    pub fn detach(&self, connection: u64) {
        let mut state = self.state();
        state.providers.retain(|p| p.connection != connection);
        // Dropping the senders tells each waiting request its service left.
        state.pending.retain(|_, p| p.connection != connection);
    }

    /// How many service connections serve it now.
    pub fn providers(&self) -> usize {
        self.state().providers.len()
    }

    /// Routes a `REPLY` from `connection` with id `key` (its JSON text).
    pub fn reply(
        &self,
        connection: u64,
        key: &str,
        data: Option<Box<RawValue>>,
        bytes: usize,
    ) -> Routed {
        let mut state = self.state();
        let Some(pending) = state
            .pending
            .get(key)
            .filter(|p| p.connection == connection)
        else {
            return if state.ended.contains(key) {
                Routed::Late
            } else {
                Routed::NotOurs
            };
        };
        let queued = pending.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > MAX_QUEUED_BYTES {
            let _ = pending.replies.send(Reply::Overflow);
            state.pending.remove(key);
            remember_ended(&mut state, key.to_owned());
            return Routed::Overflow;
        }
        if pending.replies.send(Reply::Data(data, bytes)).is_err() {
            return Routed::Late;
        }
        Routed::Taken
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
        while !state.providers.is_empty() {
            let index = state.next % state.providers.len();
            state.next = state.next.wrapping_add(1);
            let provider = &state.providers[index];
            let connection = provider.connection;
            let id = format!(
                "{}-{}",
                self.id,
                self.sequence.fetch_add(1, Ordering::Relaxed)
            );
            let message = json!({
                "id": id,
                "op": 0,
                "event": event,
                "data": data,
                "intent": {"target": "DIRECT", "identifier": connection.to_string()},
            });
            if !provider.link.send(message.to_string()) {
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
                    connection,
                    replies: sender,
                    queued: Arc::clone(&queued),
                },
            );
            return Some(Asked {
                remote: self,
                id,
                key,
                connection,
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
                .map_err(|e| self.invalid(format!("a SEARCH reply must be {{\"total\", \"results\", \"done\"}} or {{\"error\"}}: {e}")))?;
            if let Some(error) = page.error {
                // The service has ended this request itself: no CANCEL.
                asked.done = true;
                return Err(Ended::Failed(error.into_error(&self.id)));
            }
            if let Some(total) = page.total {
                results.set_total(total);
            }
            let mut items = Vec::with_capacity(page.results.len());
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
    connection: u64,
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
        if let Some(provider) = state
            .providers
            .iter()
            .find(|p| p.connection == self.connection)
        {
            let cancel = json!({
                "op": 0,
                "event": "CANCEL",
                "data": {"id": self.id},
                "intent": {"target": "DIRECT", "identifier": self.connection.to_string()},
            });
            provider.link.send(cancel.to_string());
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
                "the service serving `{}` sent an invalid reply: a FIELDS reply must be {{\"fields\": [{{\"path\", \"type\"}}]}} or {{\"error\"}}: {e}",
                self.id
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
        let (mut from, mut left) = (query.from, query.size);
        let mut failovers = 0;
        loop {
            let data = json!({
                "query": query.query,
                "from": from,
                "size": left,
                "context": context(request),
            });
            let mut asked = self.ask(request, "SEARCH", data).await?;
            match self.stream(&mut asked, &mut from, &mut left, results).await {
                Ok(()) => return Ok(()),
                Err(Ended::Failed(error)) => return Err(error),
                Err(Ended::Gone) if failovers < MAX_FAILOVERS => {
                    failovers += 1;
                    tracing::info!(datasource = %self.id, "service left mid-request; asking another");
                }
                Err(Ended::Gone) => return Err(self.gone()),
            }
        }
    }

    async fn health(&self) -> Result<(), DatasourceError> {
        match self.providers() {
            0 => Err(DatasourceError::unavailable(format!(
                "no service serves datasource `{}` now",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    fn live(&self) -> Option<&dyn Live> {
        Some(self)
    }

    async fn append(&self, records: Records) -> Result<Appended, AppendError> {
        self.publish(records).await
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
}
