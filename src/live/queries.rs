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
use crate::outbox::{Outbox, RequestKey};
use crate::protocol::{encode_results, Echo, ErrorCode, ErrorReport, LiveModeInfo, ServerMessage};

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
        let feed = Feed::new(id, Arc::clone(&source.datasource), self);
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

/// A watch as a map key (cursors are JSON, compared by their text).
type WatchKey = (String, String);

fn key_of(watch: &Watch) -> WatchKey {
    (watch.query.clone(), watch.cursor.0.to_string())
}

/// A subscriber's identity: its connection and request.
type Member = (u64, RequestKey);

/// One datasource's live subscribers, and the loop that feeds them. Groups
/// have stable ids; indexes by watch and by subscriber keep every command
/// and round proportional to what it touches, with thousands of groups.
struct Feed {
    id: String,
    datasource: Arc<dyn Datasource>,
    groups: HashMap<u64, Group>,
    by_watch: HashMap<WatchKey, u64>,
    members: HashMap<Member, u64>,
    next_group: u64,
    metrics: Arc<Metrics>,
    batch_size: usize,
    feeds: Feeds,
}

impl Feed {
    fn new(id: &str, datasource: Arc<dyn Datasource>, queries: &LiveQueries) -> Feed {
        Feed {
            id: id.to_owned(),
            datasource,
            groups: HashMap::new(),
            by_watch: HashMap::new(),
            members: HashMap::new(),
            next_group: 0,
            metrics: Arc::clone(&queries.metrics),
            batch_size: queries.batch_size,
            feeds: Arc::clone(&queries.feeds),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<FeedCommand>) {
        let Some(mode) = self.datasource.live().map(|live| live.mode()) else {
            return;
        };
        let push = matches!(mode, LiveMode::Push(_));
        let mut wake = Wake::new(mode);
        loop {
            let mut due = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command, push),
                    None => break,
                },
                () = wake.next() => {
                    for group in self.groups.values_mut() {
                        group.due = true;
                    }
                    true
                }
            };
            // Take every command already waiting before matching.
            while let Ok(command) = commands.try_recv() {
                due |= self.handle(command, push);
            }
            if self.groups.is_empty() {
                if self.retire(&mut commands, push) {
                    break;
                }
                continue;
            }
            if due {
                self.round().await;
            }
        }
        self.metrics.live_queries.sub(self.members.len() as i64);
        self.metrics.live_query_groups.sub(self.groups.len() as i64);
    }

    /// Applies a command; true when a group became due. A subscriber that
    /// starts a group of its own is caught up at once on a push feed
    /// (records may have been added since its page); one that joins a group
    /// shares its position, and the group is woken by the next announcement.
    fn handle(&mut self, command: FeedCommand, push: bool) -> bool {
        match command {
            FeedCommand::Join {
                query,
                cursor,
                subscriber,
            } => {
                if !subscriber.request.is_active() {
                    return false;
                }
                let member = (subscriber.request.connection, subscriber.key);
                let watch = Watch { query, cursor };
                let key = key_of(&watch);
                let (id, created) = match self.by_watch.get(&key) {
                    Some(&id) => (id, false),
                    None => {
                        let id = self.next_group;
                        self.next_group += 1;
                        self.by_watch.insert(key, id);
                        self.groups.insert(
                            id,
                            Group {
                                watch,
                                subscribers: Vec::new(),
                                failing: false,
                                due: push,
                            },
                        );
                        self.metrics.live_query_groups.inc();
                        (id, true)
                    }
                };
                if let Some(group) = self.groups.get_mut(&id) {
                    group.subscribers.push(subscriber);
                }
                if self.members.insert(member, id).is_none() {
                    self.metrics.live_queries.inc();
                }
                created && push
            }
            FeedCommand::Leave { connection, key } => {
                if let Some(id) = self.members.remove(&(connection, key)) {
                    self.metrics.live_queries.dec();
                    if let Some(group) = self.groups.get_mut(&id) {
                        group
                            .subscribers
                            .retain(|s| !(s.request.connection == connection && s.key == key));
                    }
                    self.drop_if_empty(id);
                }
                false
            }
        }
    }

    fn drop_if_empty(&mut self, id: u64) {
        if self
            .groups
            .get(&id)
            .is_some_and(|g| g.subscribers.is_empty())
        {
            if let Some(group) = self.groups.remove(&id) {
                self.by_watch.remove(&key_of(&group.watch));
                self.metrics.live_query_groups.dec();
            }
        }
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
    /// due, delivers it, and merges groups whose positions became equal.
    async fn round(&mut self) {
        let Some(live) = self.datasource.live() else {
            return;
        };
        let ids: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.due)
            .map(|(&id, _)| id)
            .collect();
        let mut watches: Vec<Watch> = ids
            .iter()
            .filter_map(|id| self.groups.get(id).map(|g| g.watch.clone()))
            .collect();
        let answers = live.changes(&mut watches).await;
        self.metrics.live_matches.inc_by(watches.len() as u64);
        for ((id, watch), answer) in ids.into_iter().zip(watches).zip(answers) {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            group.due = false;
            let old_key = key_of(&group.watch);
            let before = group.subscribers.len();
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
            // Canceled, replaced and dropped subscribers leave here at the latest.
            group
                .subscribers
                .retain(|s| s.request.is_active() && !s.outbox.is_closed());
            let new_key = key_of(&group.watch);
            if before != group.subscribers.len() {
                let present: std::collections::HashSet<Member> = group
                    .subscribers
                    .iter()
                    .map(|s| (s.request.connection, s.key))
                    .collect();
                let gone: Vec<Member> = self
                    .members
                    .iter()
                    .filter(|(m, &g)| g == id && !present.contains(m))
                    .map(|(m, _)| *m)
                    .collect();
                for member in gone {
                    self.members.remove(&member);
                    self.metrics.live_queries.dec();
                }
            }
            self.rekey(id, old_key, new_key);
        }
    }

    /// A group's position moved: index it under its new watch, or merge it
    /// into the group already there (their next records are matched once).
    fn rekey(&mut self, id: u64, old_key: WatchKey, new_key: WatchKey) {
        if self.by_watch.get(&old_key) == Some(&id) {
            self.by_watch.remove(&old_key);
        }
        match self.by_watch.get(&new_key) {
            Some(&into) if into != id => {
                if let Some(group) = self.groups.remove(&id) {
                    self.metrics.live_query_groups.dec();
                    for subscriber in &group.subscribers {
                        self.members
                            .insert((subscriber.request.connection, subscriber.key), into);
                    }
                    if let Some(target) = self.groups.get_mut(&into) {
                        target.subscribers.extend(group.subscribers);
                    }
                }
            }
            _ => {
                self.by_watch.insert(new_key, id);
                self.drop_if_empty(id);
            }
        }
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
        let kept = super::deliver(&subscriber.outbox, subscriber.key, frame, metrics, "query");
        if kept {
            subscriber.total += count;
        }
        kept
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
