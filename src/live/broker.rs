//! The broker: messages between the nodes of one tributary cluster, by topic.
//!
//! Two kinds: `memory` (one node, the default: a publication reaches this
//! process's subscribers) and `redis` (`[broker] type = "redis"`: Redis
//! pub/sub through `fred`, so a publication reaches the subscribers of every
//! node on the same Redis and `prefix`). Subscribers
//! get every message published on their topic from the moment they
//! subscribed, in order, as bytes; what a message means is the topic
//! owner's (today: remote datasources, `services::cluster`).
//!
//! Publishing never waits on the network: messages are queued (bounded)
//! and sent by one task, so a connection's loop can publish.
//!
//! Beside topics, *streams*: appended entries that every node reads in
//! the same order, each a publication with an offset (1, 2, 3…) in an
//! epoch that changes when the stream's history was lost. With `redis` a
//! stream is a Redis Stream of at most `history_size` entries, kept
//! `history_ttl` after its last one, and a node that starts reads it from
//! its oldest entry; with `memory` an entry goes straight to this node's
//! readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{BrokerKind, BrokerSettings};
use crate::datasources::Position;

/// Messages a subscriber may fall behind by before it misses some.
const SUBSCRIBER_BACKLOG: usize = 4096;
/// Messages waiting to be sent to Redis; past that, publishing fails.
const OUTGOING: usize = 65_536;
/// Bytes waiting to be sent to Redis; past that, publishing fails (while
/// Redis is away or slow, memory stays bounded whatever is published).
const OUTGOING_BYTES: usize = 64 << 20;

/// Where nodes meet.
pub struct Broker {
    /// This node's id: random, so a restarted node is a new node.
    node: Arc<str>,
    topics: Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
    redis: Option<RedisBroker>,
    /// With `memory`: each stream's epoch and last offset, and its readers.
    streams: Mutex<MemoryStreams>,
}

#[derive(Default)]
struct MemoryStreams {
    positions: HashMap<String, Position>,
    readers: Vec<mpsc::Sender<StreamEntry>>,
}

/// The Redis half: one client publishing, one subscribed.
struct RedisBroker {
    prefix: String,
    outgoing: mpsc::Sender<(String, Bytes)>,
    /// Bytes in `outgoing`.
    queued: Arc<AtomicUsize>,
    subscriber: SubscriberClient,
    publisher: Client,
    /// Entries kept per stream, and for how long after the last one.
    history_size: u64,
    history_ttl: Duration,
}

/// One entry of a stream, as every node reads it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub stream: String,
    pub position: Position,
    pub payload: Bytes,
}

/// Reads streams (see [`Broker::follow`]); more can be added while it runs.
pub struct Follower {
    added: mpsc::UnboundedSender<String>,
}

impl Follower {
    /// Reads `stream` too, from its oldest entry kept.
    pub fn add(&self, stream: &str) {
        let _ = self.added.send(stream.to_owned());
    }
}

impl Broker {
    /// A broker for one node.
    pub fn memory() -> Arc<Broker> {
        Arc::new(Broker {
            node: new_node_id(),
            topics: Mutex::new(HashMap::new()),
            redis: None,
            streams: Mutex::default(),
        })
    }

    /// The broker the settings ask for. Redis connects in the background
    /// and reconnects with backoff (fred's policy), resubscribing itself.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Arc<Broker>, String> {
        match settings.kind {
            BrokerKind::Memory => Ok(Broker::memory()),
            BrokerKind::Redis => RedisBroker::start(settings),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Whether other nodes may share it (`redis`): with `memory` this node
    /// is the whole cluster, and nothing needs telling.
    pub fn has_other_nodes(&self) -> bool {
        self.redis.is_some()
    }

    /// Whether the broker can deliver now (Redis connected).
    pub fn is_up(&self) -> bool {
        self.redis
            .as_ref()
            .is_none_or(|r| r.publisher.is_connected() && r.subscriber.is_connected())
    }

    fn sender(&self, topic: &str) -> broadcast::Sender<Bytes> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0)
            .clone()
    }

    /// Receives what is published on `topic` (on any node) from now on.
    pub async fn subscribe(&self, topic: &str) -> broadcast::Receiver<Bytes> {
        let receiver = self.sender(topic).subscribe();
        if let Some(redis) = &self.redis {
            let channel = format!("{}{topic}", redis.prefix);
            // While Redis is unreachable fred keeps the subscription and
            // sends it on connecting.
            if let Err(error) = redis.subscriber.subscribe(channel).await {
                tracing::warn!(%error, topic, "broker: subscribing failed; it is retried on reconnect");
            }
        }
        receiver
    }

    /// Publishes `payload` on `topic` to every node. False when it cannot
    /// be queued (Redis unreachable for long, the queue full).
    pub fn publish(&self, topic: &str, payload: Bytes) -> bool {
        match &self.redis {
            None => {
                let _ = self.sender(topic).send(payload);
                true
            }
            Some(redis) => {
                let size = payload.len();
                if redis.queued.fetch_add(size, Ordering::AcqRel) + size > OUTGOING_BYTES {
                    redis.queued.fetch_sub(size, Ordering::AcqRel);
                    return false;
                }
                let sent = redis.outgoing.try_send((topic.to_owned(), payload)).is_ok();
                if !sent {
                    redis.queued.fetch_sub(size, Ordering::AcqRel);
                }
                sent
            }
        }
    }

    /// Appends `payload` to `stream`: the publication's position once it
    /// is in the stream (Redis: its history; memory: this node's readers).
    /// Fails while Redis is unreachable: nothing half-published.
    pub async fn append(&self, stream: &str, payload: Bytes) -> Result<Position, String> {
        let Some(redis) = &self.redis else {
            return Ok(self.append_in_memory(stream, payload).await);
        };
        if !self.is_up() {
            return Err("the broker (Redis) is unreachable".into());
        }
        // The offset comes from a counter kept beside the stream; the epoch
        // is a key created with the first entry. Both expire with the
        // stream, and vanish with it if Redis restarts empty, so a fresh
        // epoch (and offsets from 1) say that the history was lost.
        const SCRIPT: &str = "local epoch = redis.call('get', KEYS[2]) \
             local offset = redis.call('incr', KEYS[3]) \
             if (not epoch) or offset == 1 then \
               epoch = ARGV[1]; offset = 1; redis.call('set', KEYS[3], 1) end \
             redis.call('set', KEYS[2], epoch, 'EX', ARGV[3]) \
             redis.call('expire', KEYS[3], ARGV[3]) \
             redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'o', offset, 'e', epoch, 'p', ARGV[4]) \
             redis.call('expire', KEYS[1], ARGV[3]) \
             return {offset, epoch}";
        let base = format!("{}stream:{stream}", redis.prefix);
        let keys = vec![
            base.clone(),
            format!("{base}:epoch"),
            format!("{base}:offset"),
        ];
        let ttl = redis.history_ttl.as_secs().max(1);
        let args: Vec<fred::types::Value> = vec![
            new_node_id().to_string().into(),
            redis.history_size.max(1).to_string().into(),
            ttl.to_string().into(),
            fred::types::Value::Bytes(payload),
        ];
        let (offset, epoch): (u64, String) = redis
            .publisher
            .eval(SCRIPT, keys, args)
            .await
            .map_err(|e| format!("the broker (Redis) did not take it: {e}"))?;
        // Readers wake on this rather than on a blocking XREAD, which the
        // client library answers late.
        self.publish(APPENDED, Bytes::copy_from_slice(stream.as_bytes()));
        Ok(Position { offset, epoch })
    }

    /// One node: the next offset, and the entry handed to each reader
    /// (waiting while a reader is a full queue behind: publishers slow
    /// down rather than anything being dropped).
    async fn append_in_memory(&self, stream: &str, payload: Bytes) -> Position {
        let (position, readers) = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let position = streams
                .positions
                .entry(stream.to_owned())
                .and_modify(|p| p.offset += 1)
                .or_insert_with(|| Position {
                    offset: 1,
                    epoch: new_node_id().to_string(),
                })
                .clone();
            streams.readers.retain(|r| !r.is_closed());
            (position, streams.readers.clone())
        };
        let entry = StreamEntry {
            stream: stream.to_owned(),
            position: position.clone(),
            payload,
        };
        for reader in readers {
            let _ = reader.send(entry.clone()).await;
        }
        position
    }

    /// Every entry of `streams` (and of those added later through the
    /// [`Follower`]), from the oldest kept on, then new ones as they are
    /// appended, by one reader that resumes where it was after Redis comes
    /// back. With `memory`: every stream's entries from now on.
    pub fn follow(
        self: &Arc<Self>,
        streams: Vec<String>,
    ) -> (Follower, mpsc::Receiver<StreamEntry>) {
        let (sender, entries) = mpsc::channel(1024);
        let (added, more) = mpsc::unbounded_channel();
        match &self.redis {
            Some(redis) => {
                let prefix = format!("{}stream:", redis.prefix);
                let (broker, reader) = (Arc::clone(self), redis.publisher.clone());
                tokio::spawn(async move {
                    let woken = broker.subscribe(APPENDED).await;
                    read_streams(reader, woken, prefix, streams, more, sender).await;
                });
            }
            None => {
                let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                streams.readers.push(sender);
            }
        }
        (Follower { added }, entries)
    }

    /// Sets `field` of the hash `hash` (Redis only: with `memory` nothing
    /// needs sharing).
    pub async fn set_field(&self, hash: &str, field: &str, value: &str) -> Result<(), String> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let key = format!("{}{hash}", redis.prefix);
        let _: i64 = redis
            .publisher
            .hset(key, (field, value))
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))?;
        Ok(())
    }

    /// Every field of the hash `hash`.
    pub async fn fields(&self, hash: &str) -> Result<HashMap<String, String>, String> {
        let Some(redis) = &self.redis else {
            return Ok(HashMap::new());
        };
        let key = format!("{}{hash}", redis.prefix);
        redis
            .publisher
            .hgetall(key)
            .await
            .map_err(|e| format!("the broker (Redis): {e}"))
    }

    /// Removes fields of the hash `hash`.
    pub async fn remove_fields(&self, hash: &str, fields: Vec<String>) {
        let Some(redis) = &self.redis else {
            return;
        };
        if fields.is_empty() {
            return;
        }
        let key = format!("{}{hash}", redis.prefix);
        let _: Result<i64, _> = redis.publisher.hdel(key, fields).await;
    }

    /// Takes or renews the lease `name` for `ttl`: true while this node
    /// holds it. With `memory` this node always does; without Redis, no one.
    pub async fn try_lease(&self, name: &str, ttl: Duration) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        // Renew if ours, else take if free: one atomic step.
        const SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
             return redis.call('pexpire', KEYS[1], ARGV[2]) \
             elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 \
             else return 0 end";
        let key = format!("{}lease:{name}", redis.prefix);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let held: Result<i64, _> = redis
            .publisher
            .eval(
                SCRIPT,
                vec![key],
                vec![self.node.to_string(), ttl_ms.to_string()],
            )
            .await;
        matches!(held, Ok(1))
    }

    /// Gives the lease `name` up, if this node holds it (at shutdown: another
    /// node takes over at once).
    pub async fn release_lease(&self, name: &str) {
        let Some(redis) = &self.redis else {
            return;
        };
        const SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
             return redis.call('del', KEYS[1]) else return 0 end";
        let key = format!("{}lease:{name}", redis.prefix);
        let _: Result<i64, _> = redis
            .publisher
            .eval(SCRIPT, vec![key], vec![self.node.to_string()])
            .await;
    }

    /// Delivers a message that arrived from Redis to this node's subscribers.
    fn deliver(&self, topic: &str, payload: Bytes) {
        let sender = {
            let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            topics.get(topic).cloned()
        };
        if let Some(sender) = sender {
            let _ = sender.send(payload);
        }
    }
}

impl RedisBroker {
    fn start(settings: &BrokerSettings) -> Result<Arc<Broker>, String> {
        let config = Config::from_url(&settings.url)
            .map_err(|e| format!("invalid configuration: `broker.url`: {e}"))?;
        let mut builder = Builder::from_config(config);
        builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        builder.with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            // Small messages (a relayed reply, an announcement) go at once,
            // not after the peer's delayed acknowledgement.
            c.tcp = fred::types::config::TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        });
        let publisher = builder.build().map_err(|e| format!("broker: {e}"))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| format!("broker: {e}"))?;
        publisher.connect();
        subscriber.connect();
        // Resubscribes to every channel after a reconnect.
        subscriber.manage_subscriptions();
        let (outgoing, waiting) = mpsc::channel(OUTGOING);
        let queued = Arc::new(AtomicUsize::new(0));
        let prefix = format!("{}:", settings.prefix);
        let broker = Arc::new(Broker {
            node: new_node_id(),
            topics: Mutex::new(HashMap::new()),
            streams: Mutex::default(),
            redis: Some(RedisBroker {
                prefix: prefix.clone(),
                outgoing,
                queued: Arc::clone(&queued),
                subscriber: subscriber.clone(),
                publisher: publisher.clone(),
                history_size: settings.history_size,
                history_ttl: settings.history_ttl,
            }),
        });
        tokio::spawn(send_queued(publisher, prefix.clone(), waiting, queued));
        tokio::spawn(receive(
            Arc::downgrade(&broker),
            subscriber.message_rx(),
            prefix,
        ));
        tracing::info!(url = %redact(&settings.url), node = %broker.node, "broker: redis");
        Ok(broker)
    }
}

async fn send_queued(
    publisher: Client,
    prefix: String,
    mut waiting: mpsc::Receiver<(String, Bytes)>,
    queued: Arc<AtomicUsize>,
) {
    while let Some((topic, payload)) = waiting.recv().await {
        queued.fetch_sub(payload.len(), Ordering::AcqRel);
        let channel = format!("{prefix}{topic}");
        let sent: Result<i64, _> = publisher.publish(channel, payload).await;
        if let Err(error) = sent {
            tracing::warn!(%error, topic, "broker: a message could not be published");
        }
    }
}

async fn receive(
    broker: std::sync::Weak<Broker>,
    mut messages: broadcast::Receiver<fred::types::Message>,
    prefix: String,
) {
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "broker: this node fell behind Redis; messages were missed"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let Some(topic) = message.channel.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if let Some(payload) = message.value.as_bytes() {
            broker.deliver(topic, Bytes::copy_from_slice(payload));
        }
    }
}

/// Topic on which every append is announced (payload: the stream's name).
const APPENDED: &str = "appended";

/// Reads `streams` whenever an append is announced, and every second (to
/// catch up after a reconnect, when announcements may have been missed).
/// Entries are read by Redis id, which keeps growing across a Redis restart
/// (unlike offsets, which start again in a new epoch).
async fn read_streams(
    reader: Client,
    mut woken: broadcast::Receiver<Bytes>,
    prefix: String,
    mut streams: Vec<String>,
    mut added: mpsc::UnboundedReceiver<String>,
    sender: mpsc::Sender<StreamEntry>,
) {
    // From the start: a node that starts replays the history.
    let mut last: Vec<String> = streams.iter().map(|_| "0".to_owned()).collect();
    let mut backoff = Duration::from_millis(100);
    let mut more = true;
    loop {
        if sender.is_closed() {
            return;
        }
        if !more || streams.is_empty() {
            tokio::select! {
                woke = woken.recv() => {
                    if matches!(woke, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                stream = added.recv() => {
                    if let Some(stream) = stream {
                        if !streams.contains(&stream) {
                            streams.push(stream);
                            last.push("0".to_owned());
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        while let Ok(stream) = added.try_recv() {
            if !streams.contains(&stream) {
                streams.push(stream);
                last.push("0".to_owned());
            }
        }
        if streams.is_empty() {
            continue;
        }
        let keys: Vec<String> = streams.iter().map(|s| format!("{prefix}{s}")).collect();
        // Nothing new is `nil`, which is not a map: read the value first.
        let read: Result<fred::types::streams::XReadResponse<String, String, String, Bytes>, _> =
            match reader
                .xread::<fred::types::Value, _, _>(Some(256), None, keys.clone(), last.clone())
                .await
            {
                Ok(value) if value.is_null() => Ok(Default::default()),
                Ok(value) => value.into_xread_response(),
                Err(error) => Err(error),
            };
        let read = match read {
            Ok(read) => {
                backoff = Duration::from_millis(100);
                read
            }
            Err(error) => {
                tracing::warn!(%error, "broker: reading streams failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                more = true;
                continue;
            }
        };
        // A full read may have left more behind: read again at once.
        more = read.values().any(|entries| entries.len() >= 256);
        for (i, key) in keys.iter().enumerate() {
            let Some(entries) = read.get(key) else {
                continue;
            };
            for (id, mut fields) in entries.iter().cloned() {
                last[i] = id.clone();
                let position = fields
                    .remove("o")
                    .and_then(|o| std::str::from_utf8(&o).ok()?.parse::<u64>().ok())
                    .zip(
                        fields
                            .remove("e")
                            .and_then(|e| String::from_utf8(e.to_vec()).ok()),
                    );
                let (Some((offset, epoch)), Some(payload)) = (position, fields.remove("p")) else {
                    tracing::warn!(stream = %streams[i], %id, "broker: an entry without offset, epoch or payload");
                    continue;
                };
                let entry = StreamEntry {
                    stream: streams[i].clone(),
                    position: Position { offset, epoch },
                    payload,
                };
                if sender.send(entry).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Holds (or waits for) the broker lease `name`, renewing it every second
/// until shutdown; the value says whether this node holds it.
pub fn keep_lease(
    broker: Arc<Broker>,
    name: String,
    mut shutdown: watch::Receiver<Option<Duration>>,
) -> watch::Receiver<bool> {
    let (holds, holder) = watch::channel(!broker.has_other_nodes());
    if !broker.has_other_nodes() {
        return holder;
    }
    tokio::spawn(async move {
        loop {
            let held = broker.try_lease(&name, LEASE_TTL).await;
            if *holds.borrow() != held {
                tracing::info!(lease = %name, held, "broker lease");
                let _ = holds.send(held);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || shutdown.borrow().is_some() {
                        broker.release_lease(&name).await;
                        return;
                    }
                }
            }
        }
    });
    holder
}

/// How long a lease lasts without renewal: another node takes over within
/// this long of its holder's death.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

fn new_node_id() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    Arc::from(format!("{:016x}", hasher.finish()))
}

fn redact(url: &str) -> String {
    tributary_datasource::redact_userinfo(url)
}
