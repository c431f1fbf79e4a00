//! The `postgres` adapter: a table, view or read-only `SELECT` of a
//! PostgreSQL database, searched with the same query language as every
//! other datasource.
//!
//! ```toml
//! [datasources.cases]
//! type = "postgres"
//! url = "postgres://analyst:secret@db:5432/crm?sslmode=verify-full"
//! table = "public.cases"          # or: sql = "SELECT … FROM …" (read-only)
//! id_column = "id"                # optional; default: the primary key
//! fields = ["id", "title", "owner.*"]      # optional; which columns to offer
//! text_columns = ["title", "notes"]        # optional; full-text columns (default: every text column)
//! default_field = "*"             # optional; where terms without a field are searched
//! pool_size = 8                   # optional
//! timeout = "5s"                  # optional; also the statements' timeout
//! tls = "verify-full"             # optional; disable, prefer (default), require, verify-ca, verify-full
//! ca_file = "/etc/ssl/db-ca.pem"  # optional; trusted CAs (default: the system's)
//! live_field = "updated_at"       # optional; live queries poll for rows past it …
//! live_interval = "2s"
//! # live = "notify"               # … or listen to NOTIFY on a channel
//! # channel = "tributary_cases"
//! ```
//!
//! - [`catalog`]: the columns, typed, json keys as dotted fields;
//! - [`sql`]: a query as one parameterised condition;
//! - searches count (`count(*)`) and walk the page in keyset order on the
//!   id column, a batch at a time, each batch sent on as it arrives;
//! - [`live`]: `LISTEN`/`NOTIFY` or polling a growing column.

mod catalog;
mod expand;
mod live;
mod sql;
mod tls;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tributary_datasource::{
    Datasource, DatasourceError, DatasourceSettings, Expand, ExpandQuery, Expansion, FieldList,
    Healthy, Item, ListValues, Live, RequestContext, ResultSink, SearchQuery, SetupError,
    Subsequence, WorkLimits,
};

use self::catalog::{quote_ident, Catalog, ColumnOptions};
use self::sql::{Bound, Param};
use tributary_datasource::flatten::Flattened;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresOptions {
    /// `postgres://user:password@host:port/database?sslmode=…`
    url: String,
    /// A table or view: `name` or `schema.name`, as written (case matters).
    table: Option<String>,
    /// A read-only `SELECT`, searched as a sub-query.
    sql: Option<String>,
    id_column: Option<String>,
    /// Which columns (or json paths, patterns allowed) to offer.
    fields: Option<Vec<String>>,
    /// Full-text searchable columns; other text columns are keywords
    /// (matched whole, case-insensitively). Default: every text column.
    text_columns: Option<Vec<String>>,
    /// Where a term without a field is searched (a field or a pattern);
    /// default `*`, every field, as Elasticsearch does.
    #[serde(default = "default_field")]
    default_field: String,
    #[serde(default = "default_pool_size")]
    pool_size: usize,
    /// `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    tls: Option<String>,
    ca_file: Option<PathBuf>,
    /// `notify`: live queries listen on `channel`.
    live: Option<String>,
    channel: Option<String>,
    /// A column that grows with every new or changed row: live queries poll past it.
    live_field: Option<String>,
    live_interval: Option<String>,
}

fn default_field() -> String {
    "*".into()
}

fn default_pool_size() -> usize {
    8
}

/// Rows fetched (and sent on) per statement of a page.
const BATCH_ROWS: u64 = 500;
/// The longest a call waits when the config gives no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a catalog is trusted before it is read again.
const CATALOG_TTL: Duration = Duration::from_secs(60);
/// Page boundaries remembered, so the next page starts by key, not by offset.
const BOUNDARIES: usize = 1024;

/// What the datasource reads from: a table or view, or a sub-query.
#[derive(Debug, Clone)]
pub enum Relation {
    /// The quoted name: `"schema"."table"`.
    Table(String),
    Query(String),
}

impl Relation {
    pub fn from_clause(&self) -> String {
        match self {
            Relation::Table(name) => format!("{name} AS t"),
            Relation::Query(sql) => format!("({sql}) AS t"),
        }
    }
}

/// Why a statement failed, before it is said in the user's terms.
#[derive(Debug)]
pub enum SqlError {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    /// The config does not fit the database (a missing column, no key).
    Config(String),
    /// The call's time ran out; the statement was canceled.
    Timeout,
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        SqlError::Db(e)
    }
}

impl From<PoolError> for SqlError {
    fn from(e: PoolError) -> Self {
        SqlError::Pool(e)
    }
}

impl SqlError {
    fn into_datasource(self, what: &str) -> DatasourceError {
        match self {
            SqlError::Config(message) => DatasourceError::unavailable(format!(
                "the datasource's configuration does not fit the database: {message}"
            )),
            SqlError::Timeout => DatasourceError::timeout(format!(
                "PostgreSQL did not {what} in time; the statement was canceled"
            )),
            SqlError::Pool(PoolError::Backend(e)) => db_error(&e, what),
            SqlError::Pool(PoolError::Timeout(_)) => DatasourceError::timeout(
                "no connection to PostgreSQL became free in time (option `pool_size`)",
            ),
            SqlError::Pool(e) => {
                DatasourceError::unavailable(format!("cannot connect to PostgreSQL: {e}"))
            }
            SqlError::Db(e) => db_error(&e, what),
        }
    }
}

/// A driver error in the user's terms.
fn db_error(error: &tokio_postgres::Error, what: &str) -> DatasourceError {
    let Some(db) = error.as_db_error() else {
        let detail = tributary_datasource::redact_userinfo(&error.to_string());
        let cause = std::error::Error::source(error)
            .map(|s| tributary_datasource::redact_userinfo(&s.to_string()))
            .unwrap_or_default();
        tracing::warn!(error = %detail, cause = %cause, "PostgreSQL request failed");
        return if error.is_closed() {
            DatasourceError::unavailable("the connection to PostgreSQL was lost; try again")
        } else if cause.is_empty() {
            DatasourceError::unavailable(format!("cannot reach PostgreSQL: {detail}"))
        } else {
            DatasourceError::unavailable(format!("cannot reach PostgreSQL: {detail}: {cause}"))
        };
    };
    let message = db.message();
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED {
        DatasourceError::timeout(format!(
            "PostgreSQL stopped the statement: it ran past the datasource's timeout ({message})"
        ))
    } else if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        // PostgreSQL's message names the role: logged, never sent to clients.
        tracing::warn!(error = %message, "PostgreSQL refused the configured credentials");
        DatasourceError::unauthorized(
            "PostgreSQL refused the datasource's credentials (see the server's log)",
        )
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        DatasourceError::unauthorized(format!(
            "the configured user may not {what} here: {message}"
        ))
    } else if *code == SqlState::UNDEFINED_TABLE {
        DatasourceError::unavailable(format!(
            "{message} in PostgreSQL (check the datasource's `table` or `sql`)"
        ))
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        DatasourceError::unavailable(format!(
            "the datasource's `sql` tried to write ({message}); only reading is allowed"
        ))
    } else if code.code().starts_with("22") || *code == SqlState::INVALID_REGULAR_EXPRESSION {
        // A data exception: a value of the query PostgreSQL cannot use.
        DatasourceError::bad_query(format!(
            "PostgreSQL cannot use a value of the query: {message}"
        ))
    } else if code.code().starts_with("57") || code.code().starts_with("08") {
        DatasourceError::unavailable(format!("PostgreSQL closed the connection: {message}"))
    } else {
        DatasourceError::unavailable(format!("PostgreSQL failed to {what}: {message}"))
    }
}

pub struct PostgresDatasource {
    pool: Pool,
    tls: MakeRustlsConnect,
    relation: Relation,
    id_column: Option<String>,
    fields: Option<Vec<String>>,
    text_columns: Option<Vec<String>>,
    live_field: Option<String>,
    default_field: String,
    timeout: Duration,
    catalog: tokio::sync::Mutex<Option<(Instant, Arc<Catalog>)>>,
    boundaries: Mutex<Boundaries>,
    live: live::LiveSide,
}

impl PostgresDatasource {
    pub fn from_settings(settings: &DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> {
        let options: PostgresOptions = settings.options()?;
        let (url, url_mode, url_root) = tls::split_url(&options.url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            settings.error(format!(
                "key `url`: `{}` is not a PostgreSQL URL: {e}",
                tributary_datasource::redact_userinfo(&options.url)
            ))
        })?;
        let mode = match options.tls.as_deref().or(url_mode.as_deref()) {
            Some(text) => {
                tls::TlsMode::parse(text).map_err(|e| settings.error(format!("key `tls`: {e}")))?
            }
            None => tls::TlsMode::Prefer,
        };
        let ca_file = options.ca_file.clone().or(url_root.map(PathBuf::from));
        let tls = tls::connector(mode, ca_file.as_deref())
            .map_err(|e| settings.error(format!("key `ca_file`: {e}")))?;
        let timeout = settings.timeout.unwrap_or(DEFAULT_TIMEOUT);
        config.ssl_mode(mode.driver_mode());
        if config.get_application_name().is_none() {
            config.application_name("tributary");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        // Every statement reads only, in UTC, and stops at the timeout even
        // if the server never hears of a cancel. No JIT: a statement being
        // compiled by LLVM does not look at its timeout or a cancel, and a
        // short hostile query can keep a backend compiling for minutes.
        config.options(format!(
            "-c default_transaction_read_only=on -c TimeZone=UTC -c jit=off -c statement_timeout={}",
            timeout.as_millis().max(1)
        ));
        let relation = match (&options.table, &options.sql) {
            (Some(table), None) => {
                if table.trim().is_empty() {
                    return Err(settings.error("key `table`: name a table or view"));
                }
                Relation::Table(
                    table
                        .split('.')
                        .map(quote_ident)
                        .collect::<Vec<_>>()
                        .join("."),
                )
            }
            (None, Some(sql)) => {
                let trimmed = sql.trim().trim_end_matches(';');
                let head = trimmed
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !matches!(head.as_str(), "select" | "with" | "values" | "table") {
                    return Err(settings.error("key `sql`: must be a read-only query (SELECT …)"));
                }
                Relation::Query(trimmed.to_owned())
            }
            (Some(_), Some(_)) => {
                return Err(settings.error("set either `table` or `sql`, not both"))
            }
            (None, None) => return Err(settings.error("missing key `table` (or `sql`)")),
        };
        if options.pool_size == 0 {
            return Err(settings.error("key `pool_size`: must be at least 1"));
        }
        let live = live::LiveSide::from_options(
            options.live.as_deref(),
            options.channel.as_deref(),
            options.live_field.is_some(),
            options.live_interval.as_deref(),
            config.clone(),
            tls.clone(),
        )
        .map_err(|e| settings.error(e))?;
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                // Each connection is checked with an empty statement when
                // it is handed out: one the server has ended (a restart, a
                // failover, an administrator) may not look closed yet, and
                // a request must not fail on it.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| settings.error(format!("cannot set up the connection pool: {e}")))?;
        Ok(Arc::new(PostgresDatasource {
            pool,
            tls,
            relation,
            id_column: options.id_column,
            fields: options.fields,
            text_columns: options.text_columns,
            live_field: options.live_field,
            default_field: options.default_field,
            timeout,
            catalog: tokio::sync::Mutex::new(None),
            boundaries: Mutex::new(Boundaries::default()),
            live,
        }))
    }

    /// The catalog, read again once it is older than a minute.
    async fn catalog(&self, deadline: Instant) -> Result<Arc<Catalog>, DatasourceError> {
        let mut cached = self.catalog.lock().await;
        if let Some((read_at, catalog)) = cached.as_ref() {
            if read_at.elapsed() < CATALOG_TTL {
                return Ok(Arc::clone(catalog));
            }
        }
        let options = ColumnOptions {
            id_column: self.id_column.as_deref(),
            fields: self.fields.as_deref(),
            text_columns: self.text_columns.as_deref(),
            live_field: self.live_field.as_deref(),
            default_field: &self.default_field,
        };
        let client = self.client(deadline).await?;
        let catalog = Arc::new(
            self.timed(
                deadline,
                &client,
                Catalog::load(&**client, &self.relation, &options),
            )
            .await
            .map_err(|e| e.into_datasource("read the table's columns"))?,
        );
        *cached = Some((Instant::now(), Arc::clone(&catalog)));
        Ok(catalog)
    }

    async fn client(
        &self,
        deadline: Instant,
    ) -> Result<deadpool_postgres::Object, DatasourceError> {
        match tokio::time::timeout_at(deadline.into(), self.pool.get()).await {
            Ok(client) => client.map_err(|e| SqlError::from(e).into_datasource("connect")),
            Err(_) => Err(SqlError::Timeout.into_datasource("connect")),
        }
    }

    /// Runs a statement until `deadline`; a statement that is still running
    /// when its time runs out, or when its caller goes away (the request was
    /// canceled), is canceled on the server.
    async fn timed<T>(
        &self,
        deadline: Instant,
        client: &tokio_postgres::Client,
        work: impl std::future::Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        let guard = CancelOnDrop {
            token: Some(client.cancel_token()),
            tls: self.tls.clone(),
        };
        let result = tokio::time::timeout_at(deadline.into(), work).await;
        match result {
            Ok(result) => {
                guard.disarm();
                result
            }
            // The guard cancels the statement as it drops.
            Err(_) => Err(SqlError::Timeout),
        }
    }

    async fn rows(
        &self,
        deadline: Instant,
        sql: &str,
        bound: &Bound,
        what: &str,
    ) -> Result<Vec<Row>, DatasourceError> {
        let client = self.client(deadline).await?;
        self.timed(deadline, &client, async {
            Ok(client.query(sql, &bound.refs()).await?)
        })
        .await
        .map_err(|e| e.into_datasource(what))
    }

    /// One page of `query` (narrowed by `extra`, a condition on its own
    /// parameters in `bound`): the total, then the rows a batch at a time.
    async fn search_page(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        extra: Option<(&str, Bound)>,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let deadline = request.deadline;
        let catalog = self.catalog(deadline).await?;
        let bound = extra.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        let (mut condition, bound) = sql::translate(&catalog, &query.query, bound).await?;
        if let Some((extra, _)) = extra {
            condition = format!("({condition}) AND ({extra})");
        }
        let from = self.relation.from_clause();
        let id = &catalog.id;
        let count_sql = format!("SELECT count(*) FROM {from} WHERE {condition}");
        let count = async {
            let rows = self
                .rows(deadline, &count_sql, &bound, "count the matches")
                .await?;
            let total: i64 = rows
                .first()
                .and_then(|row| row.try_get(0).ok())
                .unwrap_or(0);
            Ok::<u64, DatasourceError>(total.max(0) as u64)
        };
        // The query and every value bound with it (a live page's cursor too).
        let boundary_key = (query.query.clone(), format!("{:?}", bound.params));
        let start = async {
            if query.from == 0 || query.size == 0 {
                return Ok(None);
            }
            if let Some(after) = self.boundary(&boundary_key, query.from) {
                return Ok(Some(Some(after)));
            }
            // No page ended there yet: find the key before `from` (ids only).
            let mut bound = bound.clone();
            let offset = bound.bind(Param::Long(
                i64::try_from(query.from - 1).unwrap_or(i64::MAX),
            ));
            let sql = format!(
                "SELECT ({})::text FROM {from} WHERE {condition} ORDER BY {} OFFSET {offset} LIMIT 1",
                id.sql, id.sql
            );
            let rows = self.rows(deadline, &sql, &bound, "find the page").await?;
            Ok::<Option<Option<String>>, DatasourceError>(Some(
                rows.first().and_then(|row| row.try_get(0).ok()),
            ))
        };
        let (total, start) = tokio::try_join!(count, start)?;
        results.set_total(total);
        let mut after = match start {
            None => None,
            Some(Some(key)) => Some(key),
            // `from` is past the last match.
            Some(None) => {
                results.push(Vec::new()).await?;
                return Ok(());
            }
        };
        let wanted = query.size.min(total.saturating_sub(query.from));
        let mut sent = 0u64;
        loop {
            let batch = BATCH_ROWS.min(wanted - sent);
            if batch == 0 {
                break;
            }
            let mut bound = bound.clone();
            let keyset = match &after {
                Some(key) => format!(
                    " AND {} > {}",
                    id.sql,
                    id.cast(&bound.bind(Param::Text(key.clone())))
                ),
                None => String::new(),
            };
            let sql = format!(
                "SELECT ({})::text, to_jsonb(t)::text FROM {from} WHERE ({condition}){keyset} ORDER BY {} LIMIT {batch}",
                id.sql, id.sql
            );
            let rows = self.rows(deadline, &sql, &bound, "search").await?;
            let fetched = rows.len() as u64;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let (key, item) = to_item(row, &catalog)?;
                after = Some(key);
                items.push(item);
            }
            sent += fetched;
            if let Some(key) = &after {
                self.remember(boundary_key.clone(), query.from + sent, key.clone());
            }
            results.push(items).await?;
            if fetched < batch {
                break;
            }
        }
        if sent == 0 {
            results.push(Vec::new()).await?;
        }
        Ok(())
    }

    fn boundary(&self, key: &(String, String), offset: u64) -> Option<String> {
        let boundaries = self.boundaries.lock().ok()?;
        boundaries.get(key, offset)
    }

    fn remember(&self, key: (String, String), offset: u64, after: String) {
        if let Ok(mut boundaries) = self.boundaries.lock() {
            boundaries.insert(key, offset, after);
        }
    }
}

/// A result row (`id::text`, `to_jsonb(t)::text`) as an item of the offered fields.
fn to_item(row: &Row, catalog: &Catalog) -> Result<(String, Item), DatasourceError> {
    let broken = |e: &dyn std::fmt::Display| {
        DatasourceError::unavailable(format!(
            "PostgreSQL returned a row tributary cannot read: {e}"
        ))
    };
    let id: Option<String> = row.try_get(0).map_err(|e| broken(&e))?;
    let id = id.unwrap_or_default();
    let doc: &str = row.try_get(1).map_err(|e| broken(&e))?;
    // The row's columns that are offered, flattened while the text is read.
    let keep = |path: &str| {
        catalog.shows(path)
            && catalog.result_columns.iter().any(|column| {
                path.strip_prefix(column.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
    };
    let fields = Flattened::from_text(doc, &keep)
        .and_then(Flattened::finish)
        .map_err(|e| broken(&e))?;
    Ok((
        id.clone(),
        Item {
            id,
            fields,
            highlight: None,
        },
    ))
}

/// Where earlier pages ended: (query, offset) → the last id before it. A
/// "load more" starts from there by key; a jump to a page nobody reached
/// reads the ids before it once.
#[derive(Default)]
struct Boundaries {
    ends: HashMap<((String, String), u64), String>,
    order: VecDeque<((String, String), u64)>,
}

impl Boundaries {
    fn get(&self, key: &(String, String), offset: u64) -> Option<String> {
        self.ends.get(&(key.clone(), offset)).cloned()
    }

    fn insert(&mut self, key: (String, String), offset: u64, after: String) {
        let entry = (key, offset);
        if self.ends.insert(entry.clone(), after).is_none() {
            self.order.push_back(entry);
            while self.order.len() > BOUNDARIES {
                if let Some(old) = self.order.pop_front() {
                    self.ends.remove(&old);
                }
            }
        }
    }
}

/// Cancels the running statement on the server unless disarmed: dropped
/// with the request's future, it sends PostgreSQL a cancel request.
struct CancelOnDrop {
    token: Option<CancelToken>,
    tls: MakeRustlsConnect,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(token), Ok(runtime)) =
            (self.token.take(), tokio::runtime::Handle::try_current())
        {
            let tls = self.tls.clone();
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    tracing::debug!(error = %e, "could not cancel a PostgreSQL statement");
                }
            });
        }
    }
}

#[async_trait]
impl Datasource for PostgresDatasource {
    async fn fields(&self, request: &RequestContext) -> Result<FieldList, DatasourceError> {
        let catalog = self.catalog(request.deadline).await?;
        let index = match &self.relation {
            Relation::Table(name) => name.replace('"', ""),
            Relation::Query(_) => "sql".to_owned(),
        };
        Ok(FieldList {
            index,
            fields: catalog.listed.clone(),
        })
    }

    async fn search(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        self.search_page(request, query, None, results).await
    }

    async fn health(&self) -> Result<Healthy, DatasourceError> {
        let deadline = Instant::now() + self.timeout;
        let sql = format!("SELECT 1 FROM {} LIMIT 0", self.relation.from_clause());
        self.rows(deadline, &sql, &Bound::default(), "answer")
            .await?;
        Ok(Healthy::default())
    }

    fn expander(&self) -> Option<&dyn Expand> {
        Some(self)
    }

    fn value_lister(&self) -> Option<&dyn ListValues> {
        Some(self)
    }

    fn live(&self) -> Option<&dyn Live> {
        if self.live.is_enabled() {
            Some(self)
        } else {
            None
        }
    }
}

#[async_trait]
impl Expand for PostgresDatasource {
    /// One `GROUP BY` per field over the rows holding the selection.
    async fn expand(
        &self,
        request: &RequestContext,
        query: &ExpandQuery,
        _work: &WorkLimits,
    ) -> Result<Option<Expansion>, DatasourceError> {
        self.expand_by_grouping(request, query).await.map(Some)
    }
}

#[async_trait]
impl ListValues for PostgresDatasource {
    /// `LIKE` over the column's values.
    async fn values_like(
        &self,
        request: &RequestContext,
        field: &str,
        hint: &Subsequence,
        limit: usize,
    ) -> Result<Vec<String>, DatasourceError> {
        self.values_like_by_pattern(request, field, hint, limit)
            .await
    }
}
