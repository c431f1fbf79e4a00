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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::{broadcast, mpsc};

use crate::config::{BrokerKind, BrokerSettings};

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

/// One entry of a stream: its id (Redis's `<ms>-<seq>`) and payload.
pub type Entry = (String, Bytes);

impl Broker {
    /// A broker for one node.
    pub fn memory() -> Arc<Broker> {
        Arc::new(Broker {
            node: new_node_id(),
            topics: Mutex::new(HashMap::new()),
            redis: None,
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

    /// Appends `payload` to the history `stream` (Redis: a stream of at most
    /// `history_size` entries, kept `history_ttl` after the last); returns
    /// its id. With `memory` there is no other node to tell: `None`.
    pub async fn append(&self, stream: &str, payload: Bytes) -> Result<Option<String>, String> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        if !self.is_up() {
            return Err("the broker (Redis) is unreachable".into());
        }
        let key = format!("{}stream:{stream}", redis.prefix);
        let id: String = redis
            .publisher
            .xadd(
                key.as_str(),
                false,
                ("MAXLEN", "~", redis.history_size as i64, None::<i64>),
                "*",
                vec![("p", payload)],
            )
            .await
            .map_err(|e| format!("the broker (Redis) did not take it: {e}"))?;
        let ttl = i64::try_from(redis.history_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let _: Result<i64, _> = redis.publisher.expire(key.as_str(), ttl, None).await;
        // Readers wake on this rather than on a blocking XREAD, which the
        // client library answers late.
        self.publish(APPENDED, Bytes::copy_from_slice(stream.as_bytes()));
        Ok(Some(id))
    }

    /// Every entry of `streams`, from the oldest kept (the history) on,
    /// then new ones as they are appended, by one reader per call that
    /// resumes where it was after Redis comes back. With `memory`: none.
    pub fn follow(self: &Arc<Self>, streams: Vec<String>) -> mpsc::Receiver<(String, Entry)> {
        let (sender, entries) = mpsc::channel(1024);
        if let Some(redis) = &self.redis {
            let prefix = format!("{}stream:", redis.prefix);
            let (broker, reader) = (Arc::clone(self), redis.publisher.clone());
            tokio::spawn(async move {
                let woken = broker.subscribe(APPENDED).await;
                read_streams(reader, woken, prefix, streams, sender).await;
            });
        }
        entries
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
async fn read_streams(
    reader: Client,
    mut woken: broadcast::Receiver<Bytes>,
    prefix: String,
    streams: Vec<String>,
    sender: mpsc::Sender<(String, Entry)>,
) {
    if streams.is_empty() {
        return;
    }
    let keys: Vec<String> = streams.iter().map(|s| format!("{prefix}{s}")).collect();
    // From the start: a node that starts replays the history.
    let mut last: Vec<String> = keys.iter().map(|_| "0".to_owned()).collect();
    let mut backoff = Duration::from_millis(100);
    let mut more = true;
    loop {
        if sender.is_closed() {
            return;
        }
        if !more {
            tokio::select! {
                woke = woken.recv() => {
                    if matches!(woke, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
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
                let Some(payload) = fields.remove("p") else {
                    continue;
                };
                if sender
                    .send((streams[i].clone(), (id, payload)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

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
