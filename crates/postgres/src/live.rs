//! Live queries on PostgreSQL, two ways:
//!
//! - **notify** (`live = "notify"`, `channel = "…"`): a trigger the DBA
//!   installs sends each new or changed row's id with `pg_notify`; one
//!   listening connection per datasource keeps the ids in a bounded log
//!   numbered in order, and a live query's cursor is the last number it saw;
//! - **polling** (`live_field = "updated_at"`, or the id): every interval,
//!   rows whose value is past the cursor's — or at it, among ids not seen
//!   yet, so rows sharing a value are neither repeated nor skipped.
//!
//! Either way a matching row arrives once per change, as an append.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tributary_datasource::{
    DatasourceError, Item, Live, LiveCursor, LiveMode, RequestContext, ResultSink, SearchQuery,
    Watch,
};

use super::catalog::quote_ident;
use super::sql::{self, Bound, Param};
use super::{to_item, PostgresDatasource};

/// Notified ids kept for live queries that have not read them yet.
const NOTIFY_LOG: usize = 10_000;
/// Rows one poll returns per live query at most; the rest come next time.
const POLL_ROWS: u64 = 1_000;
/// How long one round of matching may take.
const CHANGES_BUDGET: Duration = Duration::from_secs(10);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

pub enum LiveSide {
    Off,
    Poll { interval: Duration },
    Notify(Arc<Listener>),
}

impl LiveSide {
    pub fn from_options(
        live: Option<&str>,
        channel: Option<&str>,
        has_live_field: bool,
        interval: Option<&str>,
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
    ) -> Result<LiveSide, String> {
        match (live, channel, has_live_field) {
            (Some("notify"), Some(channel), false) => {
                if channel.is_empty() {
                    return Err("key `channel`: name the NOTIFY channel".into());
                }
                Ok(LiveSide::Notify(Arc::new(Listener::new(
                    config,
                    tls,
                    channel.to_owned(),
                ))))
            }
            (Some("notify"), None, _) => {
                Err("key `live = \"notify\"` needs `channel` (the NOTIFY channel)".into())
            }
            (Some("notify"), Some(_), true) => {
                Err("set either `live = \"notify\"` or `live_field`, not both".into())
            }
            (Some("poll") | None, None, true) => {
                let interval = match interval {
                    Some(text) => tributary_datasource::parse_duration(text)
                        .map_err(|e| format!("key `live_interval`: {e}"))?,
                    None => DEFAULT_INTERVAL,
                };
                if interval.is_zero() {
                    return Err("key `live_interval`: must be more than 0".into());
                }
                Ok(LiveSide::Poll { interval })
            }
            (Some("poll"), _, false) => {
                Err("key `live = \"poll\"` needs `live_field` (a column that grows)".into())
            }
            (None, None, false) => Ok(LiveSide::Off),
            (Some(other), _, _) if other != "notify" && other != "poll" => Err(format!(
                "key `live`: unknown mode `{other}`; known: notify, poll"
            )),
            _ => Err("key `channel` goes with `live = \"notify\"`".into()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self, LiveSide::Off)
    }
}

/// The listening connection of a `notify` datasource and the ids it heard.
pub struct Listener {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    log: Mutex<NotifyLog>,
    heard: watch::Sender<u64>,
    /// True while the connection is listening.
    listening: watch::Sender<bool>,
    started: AtomicBool,
}

#[derive(Default)]
struct NotifyLog {
    /// (number, id), oldest first; numbers count from 1.
    entries: VecDeque<(u64, String)>,
    last: u64,
}

impl Listener {
    fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect, channel: String) -> Listener {
        Listener {
            config,
            tls,
            channel,
            log: Mutex::new(NotifyLog::default()),
            heard: watch::channel(0).0,
            listening: watch::channel(false).0,
            started: AtomicBool::new(false),
        }
    }

    /// Starts listening (once, with the first live query).
    fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::SeqCst) {
            let listener = Arc::clone(self);
            tokio::spawn(async move { listener.listen().await });
        }
    }

    /// Waits until the channel is listened to, so no change after a live
    /// page goes unheard.
    async fn until_listening(&self, deadline: Instant) -> Result<(), DatasourceError> {
        let mut listening = self.listening.subscribe();
        let heard = tokio::time::timeout_at(deadline.into(), async {
            listening.wait_for(|on| *on).await.is_ok()
        })
        .await;
        match heard {
            Ok(true) => Ok(()),
            _ => Err(DatasourceError::unavailable(format!(
                "cannot LISTEN on the PostgreSQL channel `{}` (see the server's log)",
                self.channel
            ))),
        }
    }

    fn last(&self) -> u64 {
        self.log.lock().map(|log| log.last).unwrap_or(0)
    }

    fn heard(&self, id: String) {
        let last = {
            let Ok(mut log) = self.log.lock() else { return };
            log.last += 1;
            let number = log.last;
            log.entries.push_back((number, id));
            while log.entries.len() > NOTIFY_LOG {
                log.entries.pop_front();
            }
            number
        };
        self.heard.send_replace(last);
    }

    /// The distinct ids heard after `cursor`, oldest first, and the newest number.
    fn since(&self, cursor: u64) -> (Vec<String>, u64) {
        let Ok(log) = self.log.lock() else {
            return (Vec::new(), cursor);
        };
        if let Some((first, _)) = log.entries.front() {
            if *first > cursor + 1 {
                tracing::warn!(
                    channel = %self.channel,
                    lost = first - cursor - 1,
                    "a live query fell behind the NOTIFY log; older changes are skipped"
                );
            }
        }
        let mut seen = HashSet::new();
        let ids = log
            .entries
            .iter()
            .filter(|(number, _)| *number > cursor)
            .filter(|(_, id)| seen.insert(id.clone()))
            .map(|(_, id)| id.clone())
            .collect();
        (ids, log.last)
    }

    /// Listens on the channel for as long as the server runs, reconnecting
    /// with a growing pause when the connection is lost.
    async fn listen(self: Arc<Self>) {
        let mut pause = Duration::from_millis(500);
        loop {
            match self.config.connect(self.tls.clone()).await {
                Ok((client, mut connection)) => {
                    let (sender, mut notified) = mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(AsyncMessage::Notification(n)) => {
                                    if sender.send(n.payload().to_owned()).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "the PostgreSQL listening connection failed");
                                    break;
                                }
                            }
                        }
                    });
                    let listen = format!("LISTEN {}", quote_ident(&self.channel));
                    match client.batch_execute(&listen).await {
                        Ok(()) => {
                            tracing::info!(channel = %self.channel, "listening for PostgreSQL notifications");
                            pause = Duration::from_millis(500);
                            self.listening.send_replace(true);
                            while let Some(id) = notified.recv().await {
                                self.heard(id);
                            }
                            self.listening.send_replace(false);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, channel = %self.channel, "LISTEN failed")
                        }
                    }
                    drop(client);
                    driver.abort();
                }
                Err(e) => {
                    let e = tributary_datasource::redact_userinfo(&e.to_string());
                    tracing::warn!(error = %e, "cannot connect to PostgreSQL to listen");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }
}

/// A polling cursor: the newest value of the live field seen (as text),
/// and the ids seen at it.
fn poll_cursor(at: Option<String>, ids: Vec<String>) -> LiveCursor {
    LiveCursor(json!({"at": at, "ids": ids}))
}

fn read_poll_cursor(cursor: &LiveCursor) -> (Option<String>, Vec<String>) {
    let at = cursor
        .0
        .get("at")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ids = cursor
        .0
        .get("ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (at, ids)
}

#[async_trait]
impl Live for PostgresDatasource {
    fn mode(&self) -> LiveMode {
        match &self.live {
            LiveSide::Notify(listener) => {
                listener.start();
                LiveMode::Push(listener.heard.subscribe())
            }
            LiveSide::Poll { interval } => LiveMode::Poll {
                interval: *interval,
            },
            LiveSide::Off => LiveMode::Poll {
                interval: DEFAULT_INTERVAL,
            },
        }
    }

    async fn search_live(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<LiveCursor, DatasourceError> {
        match &self.live {
            LiveSide::Notify(listener) => {
                listener.start();
                listener.until_listening(request.deadline).await?;
                // Changes heard from here on are reported; one racing the
                // page may be in both.
                let cursor = listener.last();
                self.search_page(request, query, None, results).await?;
                Ok(LiveCursor(cursor.into()))
            }
            _ => {
                let catalog = self.catalog(request.deadline).await?;
                let Some(field) = &catalog.live_field else {
                    return Err(DatasourceError::unavailable(
                        "no `live_field` is configured",
                    ));
                };
                let from = self.relation.from_clause();
                let newest = format!("SELECT (max({f}))::text FROM {from}", f = field.sql);
                let rows = self
                    .rows(
                        request.deadline,
                        &newest,
                        &Bound::default(),
                        "follow new rows",
                    )
                    .await?;
                let at: Option<String> = rows.first().and_then(|row| row.try_get(0).ok()).flatten();
                let mut bound = Bound::default();
                // The page is what the cursor has seen: rows past it come as appends.
                let (extra, ids) = match &at {
                    Some(at) => {
                        let p = field.cast(&bound.bind(Param::Text(at.clone())));
                        let ids_sql = format!(
                            "SELECT ({})::text FROM {from} WHERE {} = {p} LIMIT {}",
                            catalog.id.sql, field.sql, POLL_ROWS
                        );
                        let rows = self
                            .rows(request.deadline, &ids_sql, &bound, "follow new rows")
                            .await?;
                        let ids = rows.iter().filter_map(|row| row.try_get(0).ok()).collect();
                        (format!("({} > {p}) IS NOT TRUE", field.sql), ids)
                    }
                    None => (format!("{} IS NULL", field.sql), Vec::new()),
                };
                self.search_page(request, query, Some((&extra, bound)), results)
                    .await?;
                Ok(poll_cursor(at, ids))
            }
        }
    }

    async fn changes(&self, watches: &mut [Watch]) -> Vec<Result<Vec<Item>, DatasourceError>> {
        let deadline = Instant::now() + CHANGES_BUDGET;
        let catalog = match self.catalog(deadline).await {
            Ok(catalog) => catalog,
            Err(e) => return watches.iter().map(|_| Err(e.clone())).collect(),
        };
        let from = self.relation.from_clause();
        let mut answers = Vec::with_capacity(watches.len());
        for watch in watches.iter_mut() {
            let (condition, mut bound) =
                match sql::translate(&catalog, &watch.query, Bound::default()).await {
                    Ok(translated) => translated,
                    Err(e) => {
                        answers.push(Err(e));
                        continue;
                    }
                };
            let id = &catalog.id.sql;
            let answer = match &self.live {
                LiveSide::Notify(listener) => {
                    let cursor = watch.cursor.0.as_u64().unwrap_or(0);
                    let (ids, last) = listener.since(cursor);
                    if ids.is_empty() {
                        watch.cursor = LiveCursor(last.into());
                        answers.push(Ok(Vec::new()));
                        continue;
                    }
                    let ids = bound.bind(Param::TextList(ids));
                    let sql = format!(
                        "SELECT ({id})::text, to_jsonb(t)::text FROM {from} WHERE ({condition}) AND ({id})::text = ANY({ids}) ORDER BY array_position({ids}, ({id})::text)"
                    );
                    let rows = self
                        .rows(deadline, &sql, &bound, "read the changed rows")
                        .await;
                    rows.and_then(|rows| {
                        let items = rows
                            .iter()
                            .map(|row| to_item(row, &catalog).map(|(_, item)| item))
                            .collect::<Result<Vec<_>, _>>()?;
                        watch.cursor = LiveCursor(last.into());
                        Ok(items)
                    })
                }
                _ => {
                    let Some(field) = &catalog.live_field else {
                        answers.push(Err(DatasourceError::unavailable(
                            "no `live_field` is configured",
                        )));
                        continue;
                    };
                    let (at, seen) = read_poll_cursor(&watch.cursor);
                    let past = match &at {
                        Some(at) => {
                            let p = field.cast(&bound.bind(Param::Text(at.clone())));
                            let seen = bound.bind(Param::TextList(seen.clone()));
                            format!(
                                "({f} > {p} OR ({f} = {p} AND NOT (({id})::text = ANY({seen}))))",
                                f = field.sql
                            )
                        }
                        None => format!("{} IS NOT NULL", field.sql),
                    };
                    let sql = format!(
                        "SELECT ({id})::text, to_jsonb(t)::text, ({f})::text FROM {from} WHERE ({condition}) AND {past} ORDER BY {f}, {id} LIMIT {POLL_ROWS}",
                        f = field.sql
                    );
                    let rows = self.rows(deadline, &sql, &bound, "poll for new rows").await;
                    rows.and_then(|rows| {
                        let (mut at, mut seen) = (at, seen);
                        let mut items = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let (key, item) = to_item(row, &catalog)?;
                            let value: Option<String> = row.try_get(2).ok().flatten();
                            if value != at {
                                at = value;
                                seen.clear();
                            }
                            seen.push(key);
                            items.push(item);
                        }
                        watch.cursor = poll_cursor(at, seen);
                        Ok(items)
                    })
                }
            };
            answers.push(answer);
        }
        answers
    }
}
