//! Fans a request out to its datasources and merges their answers into one
//! stream of messages for the connection.
//!
//! Every datasource of a request runs concurrently; each one's messages go
//! into the connection's outbound queue the moment they exist, so a slow
//! datasource never delays a fast one. The queue is bounded: a client that
//! does not read makes the datasources wait instead of growing memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::datasources::query_limits::QueryLimits;
use crate::datasources::{redact_userinfo, Datasource, DatasourceError, SearchQuery};
use crate::metrics::Metrics;
use crate::protocol::{
    self, DatasourceInfo, DatasourceOutcome, ErrorCode, ErrorReport, FieldsRequest, Item,
    ItemsHeader, ItemsRequest, RequestId,
};

/// Where a request's messages go: the connection's bounded outbound queue.
pub type Outbox = mpsc::Sender<String>;

/// Keeps a request counted as running (against the connection's limits and
/// in `tributary_requests_running`) for as long as any clone of it lives.
/// An adapter that hands work to another thread moves a clone there, so a
/// canceled request still counts until that work has really stopped.
#[derive(Clone, Default)]
pub struct Lease {
    _held: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Lease {
    /// A lease that holds `guard` until its last clone is dropped.
    pub fn new<T: Send + Sync + 'static>(guard: T) -> Lease {
        Lease {
            _held: Some(Arc::new(guard)),
        }
    }
}

/// What the work of one request may hold: its lease, and the connection's
/// share of the search pool (how many CPU-bound searches it may run at once).
#[derive(Clone, Default)]
pub struct RequestScope {
    pub lease: Lease,
    pub cpu_share: Option<Arc<Semaphore>>,
}

/// A configured datasource, ready to answer.
pub struct Source {
    pub info: DatasourceInfo,
    pub datasource: Arc<dyn Datasource>,
    /// How long one call may take before the datasource gets a timeout error.
    pub timeout: Duration,
}

/// Tuning of how results are sent.
#[derive(Debug, Clone)]
pub struct FederationOptions {
    /// Results per `ITEMS_RECEIVE` message.
    pub batch_size: usize,
    /// The largest `size` an `ITEMS_REQUEST` may ask for.
    pub max_page_size: u64,
    /// The shape a query may have; checked before any datasource sees it.
    pub query_limits: QueryLimits,
}

impl Default for FederationOptions {
    fn default() -> Self {
        FederationOptions {
            batch_size: 500,
            max_page_size: 100_000,
            query_limits: QueryLimits::default(),
        }
    }
}

/// All datasources of the server and the logic to query them together.
pub struct Federation {
    sources: Vec<Source>,
    by_id: HashMap<String, usize>,
    options: FederationOptions,
    metrics: Arc<Metrics>,
}

/// Which datasources a connection may use: all, or only those named.
#[derive(Debug, Clone, Default)]
pub enum Access {
    #[default]
    All,
    Only(Arc<[String]>),
}

impl Access {
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Access::All => true,
            Access::Only(ids) => ids.iter().any(|allowed| allowed == id),
        }
    }
}

impl Federation {
    pub fn new(sources: Vec<Source>, options: FederationOptions) -> Self {
        let by_id = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.info.id.clone(), i))
            .collect();
        Federation {
            sources,
            by_id,
            options,
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The server's metrics, which the federation and the sessions update.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn observe(&self, id: &str, call: &str, started: Instant, outcome: &DatasourceOutcome) {
        let result = if outcome.error.is_some() {
            "error"
        } else {
            "ok"
        };
        self.metrics
            .datasource_seconds
            .with_label_values(&[id, call, result])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The datasources listed in `INITIAL_STATE_RECEIVE` for a connection.
    pub fn infos(&self, access: &Access) -> Vec<DatasourceInfo> {
        self.sources
            .iter()
            .filter(|s| access.allows(&s.info.id))
            .map(|s| s.info.clone())
            .collect()
    }

    fn source(&self, id: &str, access: &Access) -> Option<&Source> {
        if !access.allows(id) {
            return None;
        }
        self.by_id.get(id).map(|&i| &self.sources[i])
    }

    /// Answers a `FIELDS_REQUEST`: one `FIELDS_RECEIVE` (or `ERROR`) per datasource.
    /// True when every datasource answered.
    pub async fn fields(&self, request: FieldsRequest, access: &Access, outbox: &Outbox) -> bool {
        let context = RequestContext {
            query: None,
            color: None,
            request_id: request.request_id.clone(),
        };
        let jobs = unique(&request.datasources).into_iter().map(|id| {
            let context = &context;
            async move {
                let started = Instant::now();
                let Some(source) = self.source(id, access) else {
                    return (id.to_owned(), context.unknown_datasource(id, outbox).await);
                };
                let outcome = match with_timeout(source, source.datasource.fields()).await {
                    Ok(list) => {
                        let text = protocol::encode_fields(
                            id,
                            &list.index,
                            &list.fields,
                            context.request_id.as_ref(),
                        );
                        let _ = outbox.send(text).await;
                        DatasourceOutcome {
                            took_ms: elapsed_ms(started),
                            total: None,
                            error: None,
                        }
                    }
                    Err(error) => context.datasource_failed(id, error, started, outbox).await,
                };
                self.observe(id, "fields", started, &outcome);
                (id.to_owned(), outcome)
            }
        });
        let outcomes = join_all(jobs).await;
        context
            .complete(&request.datasources, outcomes, outbox)
            .await
    }

    /// Answers an `ITEMS_REQUEST`: per datasource, one or more `ITEMS_RECEIVE`
    /// batches (or an `ERROR`). True when every datasource answered.
    pub async fn items(
        &self,
        request: ItemsRequest,
        access: &Access,
        outbox: &Outbox,
        scope: RequestScope,
    ) -> bool {
        let context = RequestContext {
            query: Some(request.query.clone()),
            color: request.color.clone(),
            request_id: request.request_id.clone(),
        };
        // A request no datasource should see gets one ERROR and no fan-out.
        let refusal = if request.size > self.options.max_page_size {
            Some((
                ErrorCode::InvalidRequest,
                format!("`size` may be at most {}", self.options.max_page_size),
            ))
        } else {
            self.options
                .query_limits
                .check(&request.query)
                .err()
                .map(|limit| (ErrorCode::BadQuery, limit.to_string()))
        };
        if let Some((code, message)) = refusal {
            let report = context.report(code, message);
            let _ = outbox.send(protocol::encode_error(&report)).await;
            context
                .complete(&request.datasources, Vec::new(), outbox)
                .await;
            return false;
        }
        let query = SearchQuery {
            query: request.query.clone(),
            from: request.from,
            size: request.size,
        };
        let jobs = unique(&request.datasources).into_iter().map(|id| {
            let (context, query, scope) = (&context, &query, &scope);
            async move {
                let started = Instant::now();
                let Some(source) = self.source(id, access) else {
                    return (id.to_owned(), context.unknown_datasource(id, outbox).await);
                };
                let header = ItemsHeader {
                    server: id.to_owned(),
                    query: query.query.clone(),
                    color: context.color.clone(),
                    request_id: context.request_id.clone(),
                };
                let mut sink = ResultSink::new(
                    header,
                    query.from,
                    self.options.batch_size,
                    outbox.clone(),
                    scope.clone(),
                );
                let outcome =
                    match with_timeout(source, source.datasource.search(query, &mut sink)).await {
                        Ok(()) => {
                            sink.finish().await;
                            DatasourceOutcome {
                                took_ms: elapsed_ms(started),
                                total: sink.total,
                                error: None,
                            }
                        }
                        Err(error) => context.datasource_failed(id, error, started, outbox).await,
                    };
                self.observe(id, "items", started, &outcome);
                (id.to_owned(), outcome)
            }
        });
        let outcomes = join_all(jobs).await;
        context
            .complete(&request.datasources, outcomes, outbox)
            .await
    }
}

async fn with_timeout<T>(
    source: &Source,
    call: impl std::future::Future<Output = Result<T, DatasourceError>>,
) -> Result<T, DatasourceError> {
    match tokio::time::timeout(source.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(DatasourceError::timeout(format!(
            "datasource `{}` did not answer within {} ms",
            source.info.id,
            source.timeout.as_millis()
        ))),
    }
}

fn unique(ids: &[String]) -> Vec<&str> {
    let mut seen = Vec::with_capacity(ids.len());
    for id in ids {
        if !seen.contains(&id.as_str()) {
            seen.push(id.as_str());
        }
    }
    seen
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What every answer to one request repeats.
struct RequestContext {
    query: Option<String>,
    color: Option<String>,
    request_id: Option<RequestId>,
}

impl RequestContext {
    fn report(&self, code: ErrorCode, message: String) -> ErrorReport {
        ErrorReport {
            query: self.query.clone(),
            color: self.color.clone(),
            message,
            code,
            datasource: None,
            request_id: self.request_id.clone(),
        }
    }

    async fn unknown_datasource(&self, id: &str, outbox: &Outbox) -> DatasourceOutcome {
        let message = format!("unknown datasource `{id}`");
        let mut report = self.report(ErrorCode::UnknownDatasource, message.clone());
        report.datasource = Some(id.to_owned());
        let _ = outbox.send(protocol::encode_error(&report)).await;
        DatasourceOutcome {
            took_ms: 0,
            total: None,
            error: Some(message),
        }
    }

    async fn datasource_failed(
        &self,
        id: &str,
        error: DatasourceError,
        started: Instant,
        outbox: &Outbox,
    ) -> DatasourceOutcome {
        // Whatever an adapter wrote, no credential leaves the server.
        let message = redact_userinfo(&error.message);
        tracing::warn!(datasource = id, error = %message, "datasource failed");
        let mut report = self.report(error.code(), format!("datasource `{id}`: {message}"));
        report.datasource = Some(id.to_owned());
        let _ = outbox.send(protocol::encode_error(&report)).await;
        DatasourceOutcome {
            took_ms: elapsed_ms(started),
            total: None,
            error: Some(message),
        }
    }

    /// Sends `REQUEST_COMPLETED` when the client gave a request id. True when
    /// every datasource answered.
    async fn complete(
        &self,
        requested: &[String],
        outcomes: Vec<(String, DatasourceOutcome)>,
        outbox: &Outbox,
    ) -> bool {
        let all_answered = !requested.is_empty()
            && outcomes.len() == unique(requested).len()
            && outcomes.iter().all(|(_, o)| o.error.is_none());
        if requested.is_empty() {
            let report = self.report(
                ErrorCode::InvalidRequest,
                "`datasources` is empty: name at least one".into(),
            );
            let _ = outbox.send(protocol::encode_error(&report)).await;
        }
        if let Some(request_id) = &self.request_id {
            let outcomes: BTreeMap<String, DatasourceOutcome> = outcomes.into_iter().collect();
            let _ = outbox
                .send(protocol::encode_request_completed(request_id, &outcomes))
                .await;
        }
        all_answered
    }
}

/// Receives one datasource's results for one request and sends them to the
/// client as `ITEMS_RECEIVE` batches of at most `batch_size` results.
pub struct ResultSink {
    header: ItemsHeader,
    /// Offset of the next result to send.
    next_from: u64,
    batch_size: usize,
    outbox: Outbox,
    total: Option<u64>,
    messages_sent: usize,
    items_sent: u64,
    scope: RequestScope,
}

impl ResultSink {
    fn new(
        header: ItemsHeader,
        from: u64,
        batch_size: usize,
        outbox: Outbox,
        scope: RequestScope,
    ) -> Self {
        ResultSink {
            header,
            next_from: from,
            batch_size: batch_size.max(1),
            outbox,
            total: None,
            messages_sent: 0,
            items_sent: 0,
            scope,
        }
    }

    /// Keeps the request counted as running while the returned lease lives:
    /// move it into work that outlives the `search` future (a blocking thread).
    pub fn lease(&self) -> Lease {
        self.scope.lease.clone()
    }

    /// Waits for a place in the connection's share of the search pool: an
    /// adapter takes one before CPU-bound work and holds it until the end, so
    /// one client cannot occupy every core.
    pub async fn cpu_permit(&self) -> Option<OwnedSemaphorePermit> {
        let share = self.scope.cpu_share.as_ref()?;
        Arc::clone(share).acquire_owned().await.ok()
    }

    /// Sends the total number of matches and the next results of the page.
    /// Waits while the client is behind on reading.
    pub async fn send(&mut self, total: u64, items: Vec<Item>) {
        self.total = Some(total);
        if items.is_empty() {
            if self.messages_sent == 0 {
                self.emit(total, &[]).await;
            }
            return;
        }
        for batch in items.chunks(self.batch_size) {
            self.emit(total, batch).await;
        }
    }

    /// How many results have been sent so far.
    pub fn items_sent(&self) -> u64 {
        self.items_sent
    }

    /// True once the connection is gone; an adapter may stop fetching.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    async fn emit(&mut self, total: u64, batch: &[Item]) {
        let text = protocol::encode_items(&self.header, total, self.next_from, batch);
        self.next_from += batch.len() as u64;
        self.items_sent += batch.len() as u64;
        self.messages_sent += 1;
        let _ = self.outbox.send(text).await;
        // Let the connection write this batch before the next is encoded:
        // request and connection tasks share a worker thread, and a free
        // queue slot alone does not make a task give way.
        tokio::task::yield_now().await;
    }

    /// Makes sure the client hears at least one `ITEMS_RECEIVE`, even for an
    /// adapter that found nothing and sent nothing.
    async fn finish(&mut self) {
        if self.messages_sent == 0 {
            let total = self.total.unwrap_or(0);
            self.total = Some(total);
            self.emit(total, &[]).await;
        }
    }
}
