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

use super::applied::{records_stream, Streams};
use super::polls::Polled;
use super::Broker;
use crate::datasources::{
    Datasource, DatasourceError, ErrorKind, Item, LiveCursor, LiveMode, Position, Watch,
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
    /// Documents one node polled for the cluster's live requests on `query`.
    Polled {
        query: String,
        documents: Arc<Vec<serde_json::Value>>,
    },
}

type Feeds = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<FeedCommand>>>>;

/// How long a resume waits for this node to reach the client's position.
const RESUME_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Every live query of the server, by datasource.
pub struct LiveQueries {
    federation: Arc<Federation>,
    /// What this node has applied of each datasource's stream (a resume
    /// waits for this node to reach the client's position).
    streams: Arc<Streams>,
    /// Where a polled datasource's queries are shared with the other nodes.
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    /// Results per append message.
    batch_size: usize,
    feeds: Feeds,
}

impl LiveQueries {
    pub fn new(
        federation: Arc<Federation>,
        streams: Arc<Streams>,
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
        batch_size: usize,
    ) -> LiveQueries {
        LiveQueries {
            federation,
            streams,
            broker,
            metrics,
            batch_size: batch_size.max(1),
            feeds: Arc::default(),
        }
    }

    /// Where each datasource of a live request taken up again resumes: the
    /// cursor right after the client's position, or `None` when this node
    /// no longer knows it (another epoch: the history was lost; older than
    /// what it remembers). A node that has not yet applied that position
    /// (the client came from a node further ahead) waits for it a moment.
    pub async fn recover(
        &self,
        resume: &BTreeMap<String, Position>,
    ) -> HashMap<String, Option<LiveCursor>> {
        let recoveries = resume.iter().map(|(id, position)| async move {
            let source = self.federation.source_by_id(id);
            let Some(live) = source.as_ref().and_then(|s| s.datasource.live()) else {
                return (id.clone(), None);
            };
            if let Some(cursor) = live.cursor_after(position) {
                return (id.clone(), Some(cursor));
            }
            self.streams
                .wait_applied(&records_stream(id), position, RESUME_PATIENCE)
                .await;
            (id.clone(), live.cursor_after(position))
        });
        futures_util::future::join_all(recoveries)
            .await
            .into_iter()
            .collect()
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
            let position = live.position_of(&start.cursor);
            let mode = live.mode();
            let info = LiveModeInfo {
                mode: mode.name().into(),
                interval_ms: match mode {
                    LiveMode::Push(_) => None,
                    LiveMode::Poll { interval } => {
                        Some(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX))
                    }
                },
                offset: position.as_ref().map(|p| p.offset),
                epoch: position.map(|p| p.epoch),
                recovered: start.recovered,
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

    /// Documents polled for the cluster ([`super::polls`]) reach the live
    /// requests of this node that follow `polled.query`.
    pub fn polled(&self, datasource: &str, polled: Polled) {
        if let Some(feed) = lock(&self.feeds).get(datasource) {
            let _ = feed.send(FeedCommand::Polled {
                query: polled.query,
                documents: Arc::new(polled.documents),
            });
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
        let mut feed = Feed::new(id, Arc::clone(&source.datasource), self);
        if super::polls::shared(&source, &self.broker) {
            feed.shared = Some(Arc::clone(&self.broker));
        }
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
    /// With several nodes and a datasource one node polls for all: the
    /// broker the queries followed here are listed on. Each new group is
    /// caught up by a poll of its own; then documents come polled.
    shared: Option<Arc<Broker>>,
    /// A group was created since the queries were last listed.
    new_queries: bool,
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
            shared: None,
            new_queries: false,
        }
    }

    /// Lists this feed's queries for the node that polls for the cluster.
    async fn list_queries(&mut self, interval: std::time::Duration) {
        self.new_queries = false;
        let Some(broker) = &self.shared else {
            return;
        };
        let queries: std::collections::BTreeSet<&str> = self
            .groups
            .values()
            .map(|g| g.watch.query.as_str())
            .collect();
        super::polls::follow_queries(broker, &self.id, queries.into_iter(), interval).await;
    }

    /// The ids of the groups `which` holds for.
    fn groups_where(&self, which: impl Fn(&Group) -> bool) -> Vec<u64> {
        self.groups
            .iter()
            .filter(|(_, g)| which(g))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Gives polled documents to the groups that follow their query.
    fn take_polled(&mut self, query: &str, documents: &[serde_json::Value]) {
        let datasource = Arc::clone(&self.datasource);
        let Some(live) = datasource.live() else {
            return;
        };
        let Some(shared) = live.shared_polls() else {
            return;
        };
        let ids = self.groups_where(|g| g.watch.query == query);
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let old_key = key_of(&group.watch);
            let items = shared.take_polled(&mut group.watch, documents);
            let position = live.position_of(&group.watch.cursor);
            deliver_items(
                &self.id,
                group,
                &items,
                position,
                self.batch_size,
                &self.metrics,
            );
            let new_key = key_of(&group.watch);
            self.rekey(id, old_key, new_key);
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<FeedCommand>) {
        let Some(mode) = self.datasource.live().map(|live| live.mode()) else {
            return;
        };
        let push = matches!(mode, LiveMode::Push(_));
        let interval = match mode {
            LiveMode::Poll { interval } => interval,
            LiveMode::Push(_) => std::time::Duration::ZERO,
        };
        // A new group is caught up at once on a push feed, and on a feed
        // whose polls are shared (its later documents come polled).
        let catch_up = push || self.shared.is_some();
        let mut wake = Wake::new(mode);
        loop {
            let mut due = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command, catch_up),
                    None => break,
                },
                () = wake.next() => {
                    if self.shared.is_some() {
                        self.list_queries(interval).await;
                        false
                    } else {
                        for group in self.groups.values_mut() {
                            group.due = true;
                        }
                        true
                    }
                }
            };
            // Take every command already waiting before matching.
            while let Ok(command) = commands.try_recv() {
                due |= self.handle(command, catch_up);
            }
            if self.new_queries {
                self.list_queries(interval).await;
            }
            if self.groups.is_empty() {
                if self.retire(&mut commands, catch_up) {
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
                        self.new_queries = true;
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
            FeedCommand::Polled { query, documents } => {
                self.take_polled(&query, &documents);
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
        let datasource = Arc::clone(&self.datasource);
        let Some(live) = datasource.live() else {
            return;
        };
        let ids = self.groups_where(|g| g.due);
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
                    let position = live.position_of(&group.watch.cursor);
                    deliver_items(
                        &self.id,
                        group,
                        &items,
                        position,
                        self.batch_size,
                        &self.metrics,
                    );
                }
                Err(error) if error.kind == ErrorKind::Canceled => {}
                // A query the datasource refuses to follow (too costly to
                // match): its subscribers are told once and dropped, so it
                // costs nothing more.
                Err(error) if error.kind == ErrorKind::BadQuery => {
                    report(&self.id, group, &error);
                    group.subscribers.clear();
                }
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

/// Sends new records to a group in batches of `batch_size`. The position
/// goes with the last batch: a client that holds it has everything up to it.
fn deliver_items(
    id: &str,
    group: &mut Group,
    items: &[Item],
    position: Option<Position>,
    batch_size: usize,
    metrics: &Metrics,
) {
    let batches = items.chunks(batch_size).count();
    for (n, batch) in items.chunks(batch_size).enumerate() {
        let at = position.as_ref().filter(|_| n + 1 == batches);
        deliver(id, group, batch, at, metrics);
    }
}

/// Sends one batch of new records to every subscriber of a group: the
/// results encoded once, each subscriber's header around them.
fn deliver(
    id: &str,
    group: &mut Group,
    batch: &[Item],
    position: Option<&Position>,
    metrics: &Metrics,
) {
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
            position,
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::{json, Value};

    use crate::datasources::DatasourceSettings;
    use crate::dialect::Framing;
    use crate::protocol;
    use crate::session::Command;
    use crate::testing;

    /// A live request gets its page, then each published record that
    /// matches, once, as an append with its position — published as HTTP
    /// and services publish, through the datasource's feed.
    #[tokio::test]
    async fn a_live_request_gets_its_page_then_the_published_records_that_match() {
        let mut file = tempfile::NamedTempFile::new().expect("a file");
        writeln!(file, r#"{{"id": "1", "text": "kiwi pie"}}"#).expect("written");
        let mut settings = testing::settings();
        let mut options = serde_json::Map::new();
        options.insert("path".into(), json!(file.path()));
        settings.datasources.push(DatasourceSettings {
            id: "notes".into(),
            name: "Notes".into(),
            kind: "embedded".into(),
            timeout: None,
            options,
            data_dir: None,
        });
        let app = testing::app(&settings);
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                for task in app.background_tasks() {
                    tokio::task::spawn_local(task);
                }
                let (mut session, mut written) = testing::session(&app, Framing::SocketApi);
                let request = json!({"type": "ITEMS_REQUEST", "datasources": ["notes"],
                    "query": "kiwi", "live": true, "request-id": "l1"});
                let Ok(message) = protocol::decode(&request.to_string()) else {
                    panic!("a valid request");
                };
                session.handle(Command::Received(message));
                let mut seen: Vec<Value> = Vec::new();
                while !seen.iter().any(|m| m["type"] == "LIVE_STARTED") {
                    seen.push(written.json().await);
                }
                let page = seen
                    .iter()
                    .find(|m| m["type"] == "ITEMS_RECEIVE")
                    .expect("the page");
                assert_eq!(page["items"]["total"], 1);

                let records: crate::datasources::Records = vec![
                    json!({"id": "2", "text": "apple crumble"}),
                    json!({"id": "3", "text": "kiwi jam"}),
                ]
                .into_iter()
                .filter_map(|r| r.as_object().cloned())
                .collect();
                let source = app.federation.source_by_id("notes").expect("notes");
                let Ok(published) = app.publishing.publish(&source, records).await else {
                    panic!("published");
                };
                let position = published.position;
                let append = loop {
                    let message = written.json().await;
                    if message["items"]["append"] == true {
                        break message;
                    }
                };
                let ids: Vec<&str> = append["items"]["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["id"].as_str())
                    .collect();
                assert_eq!(ids, ["3"], "only the record that matches");
                assert_eq!(append["items"]["offset"], position.offset);
                assert_eq!(append["items"]["epoch"], position.epoch);
                assert_eq!(append["request-id"], "l1");
                session.handle(Command::Stop);
            })
            .await;
    }
}
