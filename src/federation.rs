//! Fans a valid request out to its datasources and merges their answers into
//! one stream of messages for the connection.
//!
//! Every datasource of a request runs concurrently; each one's messages go
//! into the connection's outbox the moment they exist, so a slow datasource
//! never delays a fast one. The outbox is bounded in bytes: a client that does
//! not read makes the datasources wait instead of growing memory, and that
//! wait is not charged to the datasource (neither its timeout nor its
//! duration metric).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use std::time::{Duration, Instant};
use tokio::sync::watch;

use async_trait::async_trait;
use futures_util::future::join_all;

use crate::datasources::{
    redact_userinfo, BatchTarget, Caller, Datasource, DatasourceError, ErrorKind, Item, Lease,
    LiveCursor, RequestContext, ResultSink, SinkClosed, WorkLimits,
};
use crate::expand::ExpandPlan;
use crate::expand::{expand_one, Links};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, RequestKey};
use crate::protocol::{
    DatasourceInfo, DatasourceOutcome, Echo, ErrorCode, ErrorReport, ServerMessage,
};
use crate::request::{FieldsQuery, ItemsQuery};

/// A configured datasource, ready to answer.
pub struct Source {
    pub info: DatasourceInfo,
    pub datasource: Arc<dyn Datasource>,
    /// How long one call may take before the datasource gets a timeout error.
    pub timeout: Duration,
}

/// Where one request's answers go, and what its work may hold.
#[derive(Clone)]
pub struct RequestScope {
    pub key: RequestKey,
    pub caller: Caller,
    pub outbox: Outbox,
    /// Keeps the request counted as running until all its work has stopped.
    pub lease: Lease,
    /// The pools CPU-bound searches wait on.
    pub work: WorkLimits,
}

/// The datasources at one moment: configured ones first, then remote ones
/// in the order their services identified.
#[derive(Default)]
struct Catalog {
    list: Vec<Arc<Source>>,
    by_id: HashMap<String, usize>,
}

/// All datasources of the server and the logic to query them together.
pub struct Federation {
    /// Replaced whole when a datasource joins: readers take a snapshot.
    catalog: RwLock<Arc<Catalog>>,
    /// Bumped when the list of datasources changes (`DATASOURCES_CHANGED`).
    changes: watch::Sender<u64>,
    /// Results per `ITEMS_RECEIVE` message.
    batch_size: usize,
    metrics: Arc<Metrics>,
}

impl Federation {
    pub fn new(sources: Vec<Source>, batch_size: usize, metrics: Arc<Metrics>) -> Self {
        let mut catalog = Catalog::default();
        for source in sources {
            catalog
                .by_id
                .insert(source.info.id.clone(), catalog.list.len());
            catalog.list.push(Arc::new(source));
        }
        Federation {
            catalog: RwLock::new(Arc::new(catalog)),
            changes: watch::channel(0).0,
            batch_size: batch_size.max(1),
            metrics,
        }
    }

    fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every datasource now.
    pub fn sources(&self) -> Vec<Arc<Source>> {
        self.catalog().list.clone()
    }

    /// Adds a datasource while the server runs (a remote one, when its
    /// first service identifies); open connections are told.
    pub fn add(&self, source: Source) -> Result<(), String> {
        {
            let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
            let id = &source.info.id;
            if catalog.by_id.contains_key(id) {
                return Err(format!("datasource id `{id}` is taken"));
            }
            let mut next = Catalog {
                list: catalog.list.clone(),
                by_id: catalog.by_id.clone(),
            };
            next.by_id.insert(id.clone(), next.list.len());
            next.list.push(Arc::new(source));
            *catalog = Arc::new(next);
        }
        self.changes.send_modify(|version| *version += 1);
        Ok(())
    }

    /// Removes a datasource (a remote one no service serves any more);
    /// requests running on it keep their own handle and end as they would.
    pub fn remove(&self, id: &str) -> bool {
        {
            let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
            if !catalog.by_id.contains_key(id) {
                return false;
            }
            let list: Vec<Arc<Source>> = catalog
                .list
                .iter()
                .filter(|s| s.info.id != id)
                .cloned()
                .collect();
            let by_id = list
                .iter()
                .enumerate()
                .map(|(n, s)| (s.info.id.clone(), n))
                .collect();
            *catalog = Arc::new(Catalog { list, by_id });
        }
        self.changes.send_modify(|version| *version += 1);
        true
    }

    /// Changes when a datasource joins or leaves.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The datasources listed in `INITIAL_STATE_RECEIVE` for a caller.
    pub fn infos(&self, caller: &Caller) -> Vec<DatasourceInfo> {
        self.catalog()
            .list
            .iter()
            .filter(|s| caller.may_use(&s.info.id))
            .map(|s| s.info.clone())
            .collect()
    }

    fn source(&self, id: &str, caller: &Caller) -> Option<Arc<Source>> {
        if !caller.may_use(id) {
            return None;
        }
        self.source_by_id(id)
    }

    /// The datasource `id`, whoever asks.
    pub fn source_by_id(&self, id: &str) -> Option<Arc<Source>> {
        let catalog = self.catalog();
        catalog.by_id.get(id).map(|&i| Arc::clone(&catalog.list[i]))
    }

    /// Answers a `FIELDS_REQUEST`: one `FIELDS_RECEIVE` (or `ERROR`) per
    /// datasource. True when every datasource answered.
    pub async fn fields(&self, request: FieldsQuery, scope: &RequestScope) -> bool {
        let echo = &request.echo;
        let jobs = request.datasources.iter().map(|id| async move {
            let Some(source) = self.source(id, &scope.caller) else {
                return (id.clone(), unknown_datasource(id, echo, scope).await);
            };
            let clock = WaitClock::default();
            let context = RequestContext {
                caller: scope.caller.clone(),
                deadline: Instant::now() + source.timeout,
            };
            let result = call(&source, &clock, source.datasource.fields(&context)).await;
            let outcome = match result {
                Ok(list) => {
                    let frame = ServerMessage::Fields {
                        echo,
                        server: id,
                        index: &list.index,
                        fields: &list.fields,
                    }
                    .encode();
                    let _ = scope.outbox.send(scope.key, frame).await;
                    DatasourceOutcome {
                        took_ms: ms(clock.working()),
                        total: None,
                        error: None,
                    }
                }
                Err(error) => datasource_failed(id, error, &clock, echo, scope).await,
            };
            self.observe(id, "fields", &clock, &outcome);
            (id.clone(), outcome)
        });
        let outcomes = join_all(jobs).await;
        complete(echo, outcomes, scope).await
    }

    /// Answers an `ITEMS_REQUEST`: per datasource, one or more `ITEMS_RECEIVE`
    /// batches (or an `ERROR`). A live request's datasources also say where
    /// their page stands; one that cannot follow new records gets a
    /// `live_unsupported` `ERROR`.
    ///
    /// `resumed`: datasources of a live request taken up again where it
    /// was, each with its cursor, or `None` when it could not be recovered
    /// (those search their page again). A recovered one searches nothing:
    /// its feed sends what was missed.
    pub async fn items(
        &self,
        request: ItemsQuery,
        resumed: &HashMap<String, Option<LiveCursor>>,
        scope: &RequestScope,
    ) -> ItemsOutcome {
        let echo = Arc::new(request.echo);
        let query = &request.search;
        let live = request.live;
        let starts = Mutex::new(Vec::new());
        let starts_ref = &starts;
        let jobs = request.datasources.iter().map(|id| {
            let echo = Arc::clone(&echo);
            async move {
                let Some(source) = self.source(id, &scope.caller) else {
                    return (id.clone(), unknown_datasource(id, &echo, scope).await);
                };
                let recovered = resumed.get(id).map(Option::is_some);
                if let Some(Some(cursor)) = resumed.get(id) {
                    lock(starts_ref).push(LiveStart {
                        datasource: id.clone(),
                        query: query.query.clone(),
                        cursor: cursor.clone(),
                        total: 0,
                        recovered,
                    });
                    let outcome = DatasourceOutcome {
                        took_ms: 0,
                        total: None,
                        error: None,
                    };
                    return (id.clone(), outcome);
                }
                let clock = Arc::new(WaitClock::default());
                let target = OutboxTarget {
                    echo: Arc::clone(&echo),
                    server: id.clone(),
                    next_from: query.from,
                    batch_size: self.batch_size,
                    batches_sent: 0,
                    scope: scope.clone(),
                    clock: Arc::clone(&clock),
                };
                let mut sink =
                    ResultSink::new(Box::new(target), scope.lease.clone(), scope.work.clone());
                let context = RequestContext {
                    caller: scope.caller.clone(),
                    deadline: Instant::now() + source.timeout,
                };
                let follows = if live { source.datasource.live() } else { None };
                let search = async {
                    let cursor = match follows {
                        Some(follows) => Some(follows.search_live(&context, query, &mut sink).await?),
                        None => {
                            source.datasource.search(&context, query, &mut sink).await?;
                            None
                        }
                    };
                    sink.finish().await?;
                    Ok(cursor)
                };
                let outcome = match call(&source, &clock, search).await {
                    Ok(cursor) => {
                        match cursor {
                            Some(cursor) => lock(starts_ref).push(LiveStart {
                                datasource: id.clone(),
                                query: query.query.clone(),
                                cursor,
                                total: sink.total().unwrap_or(0),
                                recovered,
                            }),
                            None if live => {
                                let message = format!("datasource `{id}` cannot follow new records: its results are not live");
                                send_error(ErrorCode::LiveUnsupported, message, id, &echo, scope).await;
                            }
                            None => {}
                        }
                        DatasourceOutcome {
                            took_ms: ms(clock.working()),
                            total: sink.total(),
                            error: None,
                        }
                    }
                    Err(error) => datasource_failed(id, error, &clock, &echo, scope).await,
                };
                self.observe(id, "items", &clock, &outcome);
                (id.clone(), outcome)
            }
        });
        let outcomes = join_all(jobs).await;
        let all_answered = complete(&echo, outcomes, scope).await;
        ItemsOutcome {
            all_answered,
            live: starts.into_inner().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Answers an `EXPAND_REQUEST`: one `EXPAND_RECEIVE` (or `ERROR`) per
    /// datasource, as each is done. True when every datasource answered.
    pub async fn expand(&self, plan: ExpandPlan, links: &Links, scope: &RequestScope) -> bool {
        let links = &links.with(&plan.links);
        let echo = &plan.echo;
        // A selected value whose field no datasource asked has, nor any field
        // linked to it, can only be a mistake: say so once, before any work.
        let mut known = BTreeSet::new();
        let mut fields_of = HashMap::new();
        for id in &plan.datasources {
            let Some(source) = self.source(id, &scope.caller) else {
                continue;
            };
            let context = RequestContext {
                caller: scope.caller.clone(),
                deadline: Instant::now() + source.timeout,
            };
            if let Ok(list) = call(
                &source,
                &WaitClock::default(),
                source.datasource.fields(&context),
            )
            .await
            {
                let fields: BTreeSet<String> = list.fields.into_iter().map(|f| f.path).collect();
                known.extend(fields.iter().cloned());
                fields_of.insert(id.clone(), fields);
            }
        }
        if !fields_of.is_empty() {
            if let Some(unknown) = plan
                .values
                .iter()
                .find(|v| links.linked_to(&v.field).is_disjoint(&known))
            {
                let message = format!(
                    "unknown field `{}`: none of the datasources asked has it or a field linked to it",
                    unknown.field
                );
                let report =
                    ErrorReport::new(ErrorCode::InvalidRequest, message).echoing(echo.clone());
                let _ = scope
                    .outbox
                    .send(scope.key, ServerMessage::Error(&report).encode())
                    .await;
                return false;
            }
        }
        let plan = &plan;
        let fields_of = &fields_of;
        let jobs = plan.datasources.iter().map(|id| async move {
            let Some(source) = self.source(id, &scope.caller) else {
                return (id.clone(), unknown_datasource(id, echo, scope).await);
            };
            let clock = WaitClock::default();
            let context = RequestContext {
                caller: scope.caller.clone(),
                deadline: Instant::now() + source.timeout,
            };
            let work = async {
                let fields = match fields_of.get(id) {
                    Some(fields) => fields.clone(),
                    None => source
                        .datasource
                        .fields(&context)
                        .await?
                        .fields
                        .into_iter()
                        .map(|f| f.path)
                        .collect(),
                };
                let planned = links.query_for(id, &fields, plan);
                expand_one(source.datasource.as_ref(), &context, planned, |target| {
                    ResultSink::new(target, scope.lease.clone(), scope.work.clone())
                })
                .await
            };
            let outcome = match call(&source, &clock, work).await {
                Ok(expansion) => {
                    let frame = ServerMessage::Expanded {
                        echo,
                        server: id,
                        expansion: &expansion,
                    }
                    .encode();
                    let _ = scope.outbox.send(scope.key, frame).await;
                    DatasourceOutcome {
                        took_ms: ms(clock.working()),
                        total: None,
                        error: None,
                    }
                }
                Err(error) => datasource_failed(id, error, &clock, echo, scope).await,
            };
            self.observe(id, "expand", &clock, &outcome);
            (id.clone(), outcome)
        });
        let outcomes = join_all(jobs).await;
        complete(echo, outcomes, scope).await
    }

    fn observe(&self, id: &str, call: &str, clock: &WaitClock, outcome: &DatasourceOutcome) {
        let result = if outcome.error.is_some() {
            "error"
        } else {
            "ok"
        };
        self.metrics
            .datasource_seconds
            .with_label_values(&[id, call, result])
            .observe(clock.working().as_secs_f64());
        let waited = clock.waited();
        if !waited.is_zero() {
            self.metrics
                .outbox_wait_seconds
                .with_label_values(&[id])
                .observe(waited.as_secs_f64());
        }
    }
}

/// How an `ITEMS_REQUEST` ended.
pub struct ItemsOutcome {
    /// Every datasource answered.
    pub all_answered: bool,
    /// Where each datasource of a live request that can follow new records stands.
    pub live: Vec<LiveStart>,
}

/// A datasource's page of a live query, and where it stands.
pub struct LiveStart {
    pub datasource: String,
    pub query: String,
    pub cursor: LiveCursor,
    /// The page's total: appends count on from it.
    pub total: u64,
    /// For a datasource asked to resume: whether it was recovered.
    pub recovered: Option<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one datasource call under its timeout. Time spent waiting for room
/// in the outbox (a slow client) does not count: the deadline moves by it.
async fn call<T>(
    source: &Source,
    clock: &WaitClock,
    work: impl Future<Output = Result<T, DatasourceError>>,
) -> Result<T, DatasourceError> {
    tokio::pin!(work);
    loop {
        let deadline = clock.started + source.timeout + clock.waited();
        tokio::select! {
            result = &mut work => return result,
            () = tokio::time::sleep_until(deadline.into()) => {
                if clock.working() >= source.timeout {
                    return Err(DatasourceError::timeout(format!(
                        "datasource `{}` did not answer within {} ms",
                        source.info.id,
                        source.timeout.as_millis()
                    )));
                }
            }
        }
    }
}

/// Splits a datasource call's time into working and waiting on the client.
struct WaitClock {
    started: Instant,
    /// Time waited so far, and when the current wait began.
    waits: Mutex<(Duration, Option<Instant>)>,
}

impl Default for WaitClock {
    fn default() -> Self {
        WaitClock {
            started: Instant::now(),
            waits: Mutex::new((Duration::ZERO, None)),
        }
    }
}

impl WaitClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Option<Instant>)> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin_wait(&self) {
        self.lock().1 = Some(Instant::now());
    }

    fn end_wait(&self) {
        let mut waits = self.lock();
        if let Some(since) = waits.1.take() {
            waits.0 += since.elapsed();
        }
    }

    /// Time spent waiting on the outbox, including a wait in progress.
    fn waited(&self) -> Duration {
        let waits = self.lock();
        waits.0 + waits.1.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Time the datasource itself has taken.
    fn working(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.waited())
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Queues an `ERROR` about datasource `id` among the request's results.
async fn send_error(code: ErrorCode, message: String, id: &str, echo: &Echo, scope: &RequestScope) {
    let report = ErrorReport::new(code, message)
        .echoing(echo.clone())
        .about(id);
    let frame = ServerMessage::Error(&report).encode();
    // A closed outbox: the client is gone, nobody to tell.
    let _ = scope.outbox.send(scope.key, frame).await;
}

async fn unknown_datasource(id: &str, echo: &Echo, scope: &RequestScope) -> DatasourceOutcome {
    let message = format!("unknown datasource `{id}`");
    send_error(
        ErrorCode::UnknownDatasource,
        message.clone(),
        id,
        echo,
        scope,
    )
    .await;
    DatasourceOutcome {
        took_ms: 0,
        total: None,
        error: Some(message),
    }
}

async fn datasource_failed(
    id: &str,
    error: DatasourceError,
    clock: &WaitClock,
    echo: &Echo,
    scope: &RequestScope,
) -> DatasourceOutcome {
    // Whatever an adapter wrote, no credential leaves the server.
    let message = redact_userinfo(&error.message);
    if error.kind == ErrorKind::Canceled {
        // Nobody is listening: nothing to report.
        tracing::debug!(datasource = id, "results no longer wanted");
    } else {
        tracing::warn!(datasource = id, error = %message, "datasource failed");
        let text = format!("datasource `{id}`: {message}");
        send_error(error.kind.into(), text, id, echo, scope).await;
    }
    DatasourceOutcome {
        took_ms: ms(clock.working()),
        total: None,
        error: Some(message),
    }
}

/// Sends `REQUEST_COMPLETED` when the client gave a request id. True when
/// every datasource answered.
async fn complete(
    echo: &Echo,
    outcomes: Vec<(String, DatasourceOutcome)>,
    scope: &RequestScope,
) -> bool {
    let all_answered = outcomes.iter().all(|(_, o)| o.error.is_none());
    if let Some(request_id) = &echo.request_id {
        let outcomes: BTreeMap<String, DatasourceOutcome> = outcomes.into_iter().collect();
        let frame = ServerMessage::RequestCompleted {
            request_id,
            outcomes: &outcomes,
        }
        .encode();
        let _ = scope.outbox.send(scope.key, frame).await;
    }
    all_answered
}

/// Turns one datasource's pushes into `ITEMS_RECEIVE` batches of at most
/// `batch_size` results, each encoded once and queued in the outbox.
struct OutboxTarget {
    echo: Arc<Echo>,
    server: String,
    /// Offset of the next result to send.
    next_from: u64,
    batch_size: usize,
    batches_sent: usize,
    scope: RequestScope,
    clock: Arc<WaitClock>,
}

impl OutboxTarget {
    async fn emit(&mut self, total: u64, batch: &[Item]) -> Result<(), SinkClosed> {
        let (echo, server, from) = (&self.echo, &self.server, self.next_from);
        // Encoded in this request's turn, so a client that does not read
        // holds one waiting frame, not one per running request.
        let encode = || {
            ServerMessage::Items {
                echo,
                server,
                total,
                from,
                results: batch,
            }
            .encode()
        };
        self.clock.begin_wait();
        let sent = self.scope.outbox.send_encoded(self.scope.key, encode).await;
        self.clock.end_wait();
        self.next_from += batch.len() as u64;
        self.batches_sent += 1;
        sent.map_err(|_| SinkClosed)?;
        // Let the connection write this batch before the next is encoded:
        // request and connection tasks share a worker thread, and room in
        // the outbox alone does not make a task give way.
        tokio::task::yield_now().await;
        Ok(())
    }
}

#[async_trait]
impl BatchTarget for OutboxTarget {
    async fn push(&mut self, total: u64, items: Vec<Item>) -> Result<(), SinkClosed> {
        if items.is_empty() {
            if self.batches_sent == 0 {
                self.emit(total, &[]).await?;
            }
            return Ok(());
        }
        for batch in items.chunks(self.batch_size) {
            self.emit(total, batch).await?;
        }
        Ok(())
    }

    /// The client hears at least one `ITEMS_RECEIVE`, even from an adapter
    /// that found nothing and pushed nothing.
    async fn finish(&mut self, total: u64) -> Result<(), SinkClosed> {
        if self.batches_sent == 0 {
            self.emit(total, &[]).await?;
        }
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.scope.outbox.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::protocol::{self, ClientMessage};
    use crate::testing::{self, Words};

    fn scope(outbox: Outbox, caller: Caller) -> RequestScope {
        RequestScope {
            key: 1,
            caller,
            outbox,
            lease: Lease::default(),
            work: WorkLimits::default(),
        }
    }

    fn items_query(app: &crate::app::App, text: &str) -> ItemsQuery {
        let Ok(ClientMessage::Items(request)) = protocol::decode(text) else {
            panic!("{text} is an ITEMS_REQUEST");
        };
        app.rules
            .items(request)
            .unwrap_or_else(|_| panic!("{text} is valid"))
    }

    #[tokio::test]
    async fn results_come_in_batches_of_the_configured_size_and_a_caller_sees_its_own() {
        let mut settings = testing::settings();
        settings.results.batch_size = 2;
        let app = testing::app(&settings);
        let (outbox, body) = testing::outbox(&app);
        let mut written = testing::Written::new(body);
        let query = items_query(
            &app,
            r#"{"type":"ITEMS_REQUEST","datasources":["fruit"],"query":"*"}"#,
        );
        let outcome = app
            .federation
            .items(
                query,
                &HashMap::new(),
                &scope(outbox.clone(), Caller::default()),
            )
            .await;
        assert!(outcome.all_answered);
        let first = written.json().await;
        let second = written.json().await;
        assert_eq!(
            (
                first["items"]["from"].clone(),
                first["items"]["results"].as_array().map(Vec::len)
            ),
            (0.into(), Some(2))
        );
        assert_eq!(
            (
                second["items"]["from"].clone(),
                second["items"]["results"].as_array().map(Vec::len)
            ),
            (2.into(), Some(1))
        );
        assert_eq!(second["items"]["total"], 3);

        // A token limited to `fruit` is told of no other datasource.
        let limited = Caller {
            token_name: Some("analyst".into()),
            datasources: Some(vec!["fruit".to_owned()].into()),
        };
        let ids: Vec<String> = app
            .federation
            .infos(&limited)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["fruit"]);
    }

    #[tokio::test]
    async fn datasources_joining_and_leaving_are_announced_and_ids_stay_unique() {
        let app = testing::app(&testing::settings());
        let mut changes = app.federation.watch_changes();
        let source = |id: &str| Source {
            info: DatasourceInfo {
                id: id.into(),
                name: id.into(),
                kind: "remote".into(),
            },
            datasource: Arc::new(Words(vec!["kiwi"])),
            timeout: std::time::Duration::from_secs(1),
        };
        assert!(app.federation.add(source("fruit")).is_err(), "a taken id");
        app.federation.add(source("more")).expect("a new id");
        assert!(changes.has_changed().unwrap_or(false));
        changes.borrow_and_update();
        assert!(app.federation.source_by_id("more").is_some());
        assert!(app.federation.remove("more"));
        assert!(!app.federation.remove("more"));
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(app.federation.sources().len(), 2);
    }
}
