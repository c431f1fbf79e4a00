//! Live queries (`ITEMS_REQUEST` with `"live": true`): after its page, a
//! request keeps receiving the new records that match it.
//!
//! Each datasource with live subscribers has one *feed*: a task that owns
//! its subscribers, grouped by [`Watch`] (a query and where it stands), so a
//! new record is matched once per distinct query however many connections
//! follow it. The feed starts with the first subscriber and stops with the
//! last (Grafana's streams). It asks the datasource for changes when the
//! datasource announces new records ([`LiveMode::Push`]) or every interval
//! ([`LiveMode::Poll`]). Each batch of new records is encoded once; each
//! subscriber's `ITEMS_RECEIVE` is a short header around those bytes. A
//! subscriber whose outbox is full is closed with 4420; nobody waits for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::datasources::{
    Datasource, DatasourceError, ErrorKind, Item, LiveCursor, LiveMode, Watch,
};
use crate::federation::{Federation, LiveStart, RequestScope};
use crate::metrics::Metrics;
use crate::outbox::{LiveRefused, Outbox, RequestKey};
use crate::protocol::{
    encode_results, Echo, ErrorCode, ErrorReport, LiveModeInfo, ServerMessage, CLOSE_TOO_MUCH,
};

/// What the datasources of one live request share: its echo and the
/// sequence numbers of its appends.
pub struct LiveRequest {
    pub connection: u64,
    pub echo: Echo,
    /// The `seq` of the last append sent, across all its datasources; held
    /// while an append is queued, so `seq` order is delivery order.
    seq: Arc<Mutex<u64>>,
    /// Cleared when the request is canceled or replaced: feeds drop it.
    active: AtomicBool,
}

impl LiveRequest {
    pub fn new(connection: u64, echo: Echo) -> Arc<LiveRequest> {
        Arc::new(LiveRequest {
            connection,
            echo,
            seq: Arc::new(Mutex::new(0)),
            active: AtomicBool::new(true),
        })
    }

    /// The same request with a new query (`UPDATE_REQUEST`): its `seq` goes on.
    pub fn updated(&self, echo: Echo) -> Arc<LiveRequest> {
        Arc::new(LiveRequest {
            connection: self.connection,
            echo,
            seq: Arc::clone(&self.seq),
            active: AtomicBool::new(true),
        })
    }

    /// No more appends for this request.
    pub fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }
}

/// One live request on one datasource.
struct Subscriber {
    key: RequestKey,
    outbox: Outbox,
    request: Arc<LiveRequest>,
    /// Matches known so far: the page's total plus what was appended.
    total: u64,
}

enum FeedCommand {
    Join {
        query: String,
        cursor: LiveCursor,
        subscriber: Subscriber,
    },
    Leave {
        connection: u64,
        key: RequestKey,
    },
}

type Feeds = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<FeedCommand>>>>;

/// Every live query of the server, by datasource.
pub struct LiveQueries {
    federation: Arc<Federation>,
    metrics: Arc<Metrics>,
    /// Results per append message.
    batch_size: usize,
    feeds: Feeds,
}

impl LiveQueries {
    pub fn new(
        federation: Arc<Federation>,
        metrics: Arc<Metrics>,
        batch_size: usize,
    ) -> LiveQueries {
        LiveQueries {
            federation,
            metrics,
            batch_size: batch_size.max(1),
            feeds: Arc::default(),
        }
    }

    /// After a live request's page: sends `LIVE_STARTED` (with how each
    /// datasource that could go live learns of new records) and joins their feeds.
    pub async fn start(
        &self,
        request: Arc<LiveRequest>,
        starts: Vec<LiveStart>,
        scope: &RequestScope,
    ) {
        let Some(request_id) = &request.echo.request_id else {
            return;
        };
        let mut modes = BTreeMap::new();
        let mut joins = Vec::new();
        for start in starts {
            let Some(source) = self.federation.source_by_id(&start.datasource) else {
                continue;
            };
            let Some(live) = source.datasource.live() else {
                continue;
            };
            let info = match live.mode() {
                LiveMode::Push(_) => LiveModeInfo {
                    mode: "push".into(),
                    interval_ms: None,
                },
                LiveMode::Poll { interval } => LiveModeInfo {
                    mode: "poll".into(),
                    interval_ms: Some(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)),
                },
            };
            modes.insert(start.datasource.clone(), info);
            joins.push(start);
        }
        let frame = ServerMessage::LiveStarted {
            request_id,
            datasources: &modes,
        }
        .encode();
        if scope.outbox.send(scope.key, frame).await.is_err() {
            return;
        }
        for start in joins {
            self.join(
                &start.datasource,
                FeedCommand::Join {
                    query: start.query,
                    cursor: start.cursor,
                    subscriber: Subscriber {
                        key: scope.key,
                        outbox: scope.outbox.clone(),
                        request: Arc::clone(&request),
                        total: start.total,
                    },
                },
            );
        }
    }

    /// Stops a connection's live request on these datasources.
    pub fn leave(&self, datasources: &[String], connection: u64, key: RequestKey) {
        let feeds = lock(&self.feeds);
        for id in datasources {
            if let Some(feed) = feeds.get(id) {
                let _ = feed.send(FeedCommand::Leave { connection, key });
            }
        }
    }

    /// Hands a subscriber to the datasource's feed, starting the feed if it has none.
    fn join(&self, id: &str, command: FeedCommand) {
        let mut feeds = lock(&self.feeds);
        // Under the lock a feed cannot retire between this check and the send.
        let command = match feeds.get(id) {
            Some(feed) => match feed.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(command)) => command,
            },
            None => command,
        };
        let Some(source) = self.federation.source_by_id(id) else {
            return;
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        let _ = sender.send(command);
        feeds.insert(id.to_owned(), sender);
        let feed = Feed {
            id: id.to_owned(),
            datasource: Arc::clone(&source.datasource),
            groups: Vec::new(),
            metrics: Arc::clone(&self.metrics),
            batch_size: self.batch_size,
            feeds: Arc::clone(&self.feeds),
        };
        tokio::spawn(feed.run(receiver));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Subscribers that follow the same query from the same cursor.
struct Group {
    watch: Watch,
    subscribers: Vec<Subscriber>,
    /// The last call for changes failed (reported once, not every round).
    failing: bool,
    /// To be asked for changes in the next round.
    due: bool,
}

/// One datasource's live subscribers, and the loop that feeds them.
struct Feed {
    id: String,
    datasource: Arc<dyn Datasource>,
    groups: Vec<Group>,
    metrics: Arc<Metrics>,
    batch_size: usize,
    feeds: Feeds,
}

impl Feed {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<FeedCommand>) {
        let Some(mode) = self.datasource.live().map(|live| live.mode()) else {
            return;
        };
        let push = matches!(mode, LiveMode::Push(_));
        let mut wake = Wake::new(mode);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command, push),
                    None => break,
                },
                () = wake.next() => {
                    for group in &mut self.groups {
                        group.due = true;
                    }
                }
            }
            // Take every command already waiting before matching.
            while let Ok(command) = commands.try_recv() {
                self.handle(command, push);
            }
            if self.groups.is_empty() {
                if self.retire(&mut commands, push) {
                    break;
                }
                continue;
            }
            if self.groups.iter().any(|g| g.due) {
                self.round().await;
            }
        }
        self.count(-1);
    }

    /// Applies a command. A subscriber that starts a group of its own is
    /// caught up at once on a push feed (records may have been added since
    /// its page); one that joins a group shares its position, and the
    /// group is woken by the next announcement anyway.
    fn handle(&mut self, command: FeedCommand, push: bool) {
        match command {
            FeedCommand::Join {
                query,
                cursor,
                subscriber,
            } => {
                if !subscriber.request.is_active() {
                    return;
                }
                self.count(-1);
                let watch = Watch { query, cursor };
                match self.groups.iter_mut().find(|g| g.watch == watch) {
                    Some(group) => group.subscribers.push(subscriber),
                    None => self.groups.push(Group {
                        watch,
                        subscribers: vec![subscriber],
                        failing: false,
                        due: push,
                    }),
                }
                self.count(1);
            }
            FeedCommand::Leave { connection, key } => {
                self.count(-1);
                for group in &mut self.groups {
                    group
                        .subscribers
                        .retain(|s| !(s.request.connection == connection && s.key == key));
                }
                self.groups.retain(|g| !g.subscribers.is_empty());
                self.count(1);
            }
        }
    }

    /// Adds (`sign` 1) or removes (-1) this feed's subscribers and groups
    /// from the gauges; every change is bracketed by the two.
    fn count(&self, sign: i64) {
        let subscribers: usize = self.groups.iter().map(|g| g.subscribers.len()).sum();
        self.metrics
            .live_queries
            .add(sign * i64::try_from(subscribers).unwrap_or(i64::MAX));
        self.metrics
            .live_query_groups
            .add(sign * i64::try_from(self.groups.len()).unwrap_or(i64::MAX));
    }

    /// With no subscriber left, the feed ends, unless a command came in the
    /// meantime (checked under the registry's lock, which joins also take).
    fn retire(&mut self, commands: &mut mpsc::UnboundedReceiver<FeedCommand>, push: bool) -> bool {
        let mut feeds = lock(&self.feeds);
        match commands.try_recv() {
            Ok(command) => {
                drop(feeds);
                self.handle(command, push);
                false
            }
            Err(_) => {
                feeds.remove(&self.id);
                true
            }
        }
    }

    /// Asks the datasource once for what is new for every group that is
    /// due, and delivers it.
    async fn round(&mut self) {
        let Some(live) = self.datasource.live() else {
            return;
        };
        let mut watches: Vec<Watch> = self
            .groups
            .iter()
            .filter(|g| g.due)
            .map(|g| g.watch.clone())
            .collect();
        let answers = live.changes(&mut watches).await;
        self.metrics.live_matches.inc_by(watches.len() as u64);
        self.count(-1);
        let due = self.groups.iter_mut().filter(|g| g.due);
        for ((group, watch), answer) in due.zip(watches).zip(answers) {
            group.due = false;
            group.watch = watch;
            match answer {
                Ok(items) => {
                    group.failing = false;
                    for batch in items.chunks(self.batch_size) {
                        deliver(&self.id, group, batch, &self.metrics);
                    }
                }
                Err(error) if error.kind == ErrorKind::Canceled => {}
                Err(error) => {
                    if !group.failing {
                        group.failing = true;
                        report(&self.id, group, &error);
                    }
                }
            }
            // Canceled and replaced requests leave at the next round at the latest.
            group.subscribers.retain(|s| s.request.is_active());
        }
        self.groups.retain(|g| !g.subscribers.is_empty());
        self.merge();
        self.count(1);
    }

    /// Groups whose watches became equal (their cursors caught up with each
    /// other) become one: their next records are matched once.
    fn merge(&mut self) {
        let mut merged: Vec<Group> = Vec::with_capacity(self.groups.len());
        for group in self.groups.drain(..) {
            match merged.iter_mut().find(|g| g.watch == group.watch) {
                Some(into) => into.subscribers.extend(group.subscribers),
                None => merged.push(group),
            }
        }
        self.groups = merged;
    }
}

/// Sends one batch of new records to every subscriber of a group: the
/// results encoded once, each subscriber's header around them.
fn deliver(id: &str, group: &mut Group, batch: &[Item], metrics: &Metrics) {
    let results = encode_results(batch);
    let count = batch.len() as u64;
    group.subscribers.retain_mut(|subscriber| {
        if !subscriber.request.is_active() {
            return false;
        }
        let mut seq = lock(&subscriber.request.seq);
        *seq += 1;
        let frame = ServerMessage::Appended {
            echo: &subscriber.request.echo,
            server: id,
            total: subscriber.total + count,
            from: subscriber.total,
            seq: *seq,
            results: &results,
        }
        .encode();
        match subscriber.outbox.try_send_live(subscriber.key, frame) {
            Ok(()) => {
                subscriber.total += count;
                metrics.live_deliveries.inc();
                true
            }
            Err(LiveRefused::Full) => {
                metrics.live_dropped_subscribers.inc();
                subscriber
                    .outbox
                    .close_now(CLOSE_TOO_MUCH, "too slow to follow a live query");
                false
            }
            Err(LiveRefused::Closed) => false,
        }
    });
}

/// Tells a group's subscribers that following the datasource failed.
fn report(id: &str, group: &Group, error: &DatasourceError) {
    let message = crate::datasources::redact_userinfo(&error.message);
    tracing::warn!(datasource = id, error = %message, "live query failed");
    for subscriber in &group.subscribers {
        let report = ErrorReport::new(
            ErrorCode::from(error.kind),
            format!("datasource `{id}`: following new records failed: {message}"),
        )
        .echoing(subscriber.request.echo.clone())
        .about(id);
        let frame = ServerMessage::Error(&report).encode();
        let _ = subscriber.outbox.try_send_live(subscriber.key, frame);
    }
}

/// When a feed looks for changes.
enum Wake {
    /// When the datasource announces new records.
    Push(tokio::sync::watch::Receiver<u64>),
    Poll(tokio::time::Interval),
}

impl Wake {
    fn new(mode: LiveMode) -> Wake {
        match mode {
            LiveMode::Push(receiver) => Wake::Push(receiver),
            LiveMode::Poll { interval } => {
                let interval = interval.max(std::time::Duration::from_millis(10));
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Wake::Poll(ticks)
            }
        }
    }

    async fn next(&mut self) {
        match self {
            Wake::Push(receiver) => {
                if receiver.changed().await.is_err() {
                    // The datasource is gone: nothing will ever be announced.
                    std::future::pending::<()>().await;
                }
            }
            Wake::Poll(ticks) => {
                ticks.tick().await;
            }
        }
    }
}
