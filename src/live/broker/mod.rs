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
//! Each kind is a file (`memory.rs`, `redis.rs`) implementing [`Backend`];
//! [`Broker`] is what the rest of the server holds, and keeps this node's
//! subscribers of each topic whatever the kind.
//!
//! Beside topics, *streams*: appended entries that every node reads in
//! the same order, each a publication with an offset (1, 2, 3…) in an
//! epoch that changes when the stream's history was lost. With `redis` a
//! stream is a Redis Stream, and a node that starts reads it from its
//! oldest entry; one kept [`Retention::Whole`] (the records of a datasource
//! that keeps them: the log every node's copy is built from) is never
//! trimmed, any other keeps at most `history_size` entries for
//! `history_ttl` after its last one. With `memory` an entry goes straight
//! to this node's readers.

mod memory;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{BrokerKind, BrokerSettings};
use crate::datasources::Position;

/// Messages a subscriber may fall behind by before it misses some.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// What a kind of broker does; [`Broker`] holds one.
#[async_trait]
trait Backend: Send + Sync {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    /// Whether other nodes may share it: with `memory` this node is the
    /// whole cluster, and nothing needs telling.
    fn has_other_nodes(&self) -> bool;
    /// Whether it can deliver now.
    fn is_up(&self) -> bool;
    /// Connections made so far (the first, then each reconnection).
    fn connections(&self) -> u64;
    /// Starts receiving `topic` from the other nodes (into [`Topics`]).
    async fn subscribe(&self, topic: &str);
    /// Queues `payload` on `topic` for every node; false when it cannot.
    fn publish(&self, topic: &str, payload: Bytes) -> bool;
    /// See [`Broker::append`].
    async fn append(
        &self,
        stream: &str,
        payload: Bytes,
        retention: Retention,
    ) -> Result<Position, NotAppended>;
    /// See [`Broker::last_position`].
    async fn last_position(&self, stream: &str) -> Result<Option<Position>, String>;
    /// See [`Broker::trim`].
    async fn trim(
        &self,
        stream: &str,
        through: &Position,
        kept_for: Duration,
    ) -> Result<u64, String>;
    /// See [`Broker::first_position`].
    async fn first_position(&self, stream: &str) -> Result<Option<Position>, String>;
    /// Sends every entry of `streams`, and of those `added` later, to `sender`.
    fn follow(
        &self,
        streams: Vec<String>,
        added: mpsc::UnboundedReceiver<String>,
        sender: mpsc::Sender<StreamEntry>,
    );
    async fn set_field(&self, hash: &str, field: &str, value: &str) -> Result<(), String>;
    async fn fields(&self, hash: &str) -> Result<HashMap<String, String>, String>;
    async fn remove_fields(&self, hash: &str, fields: Vec<String>);
    async fn try_lease(&self, name: &str, ttl: Duration) -> bool;
    async fn release_lease(&self, name: &str);
}

/// This node's subscribers, by topic: what is published (here, or on
/// another node and received) is handed to each.
#[derive(Default)]
struct Topics(Mutex<HashMap<String, broadcast::Sender<Bytes>>>);

impl Topics {
    fn sender(&self, topic: &str) -> broadcast::Sender<Bytes> {
        let mut topics = self.0.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BACKLOG).0)
            .clone()
    }

    /// Hands `payload` to this node's subscribers of `topic`, if any.
    fn deliver(&self, topic: &str, payload: Bytes) {
        let sender = {
            let topics = self.0.lock().unwrap_or_else(|e| e.into_inner());
            topics.get(topic).cloned()
        };
        if let Some(sender) = sender {
            let _ = sender.send(payload);
        }
    }
}

/// Where nodes meet.
pub struct Broker {
    /// This node's id: random, so a restarted node is a new node.
    node: Arc<str>,
    topics: Arc<Topics>,
    backend: Box<dyn Backend>,
}

/// One entry of a stream, as every node reads it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub stream: String,
    pub position: Position,
    pub payload: Bytes,
}

/// Why an append has no position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct NotAppended {
    pub reason: String,
    /// Whether the broker may have taken it all the same (the connection
    /// was lost, or the answer was late, after the command was sent).
    pub maybe_kept: bool,
}

/// How much of a stream the broker keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Every entry, for good: the log a node that starts or fell behind
    /// reads to hold what every other node holds.
    Whole,
    /// The latest `history_size` entries, for `history_ttl` after the last:
    /// enough for live clients to resume.
    Recent,
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
        let topics = Arc::new(Topics::default());
        Arc::new(Broker {
            node: new_node_id(),
            backend: Box::new(memory::MemoryBroker::new(Arc::clone(&topics))),
            topics,
        })
    }

    /// The broker the settings ask for. Redis connects in the background
    /// and reconnects with backoff (fred's policy), resubscribing itself.
    pub fn from_settings(settings: &BrokerSettings) -> Result<Arc<Broker>, String> {
        match settings.kind {
            BrokerKind::Memory => Ok(Broker::memory()),
            BrokerKind::Redis => {
                let (node, topics) = (new_node_id(), Arc::new(Topics::default()));
                let backend = redis::RedisBroker::start(settings, &node, &topics)?;
                Ok(Arc::new(Broker {
                    node,
                    topics,
                    backend: Box::new(backend),
                }))
            }
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Whether other nodes may share it (`redis`): with `memory` this node
    /// is the whole cluster, and nothing needs telling.
    pub fn has_other_nodes(&self) -> bool {
        self.backend.has_other_nodes()
    }

    /// Whether the broker can deliver now (Redis connected).
    pub fn is_up(&self) -> bool {
        self.backend.is_up()
    }

    /// Connections made to the broker so far: the first, then each
    /// reconnection (`memory`: one).
    pub fn connections(&self) -> u64 {
        self.backend.connections()
    }

    /// Receives what is published on `topic` (on any node) from now on.
    pub async fn subscribe(&self, topic: &str) -> broadcast::Receiver<Bytes> {
        let receiver = self.topics.sender(topic).subscribe();
        self.backend.subscribe(topic).await;
        receiver
    }

    /// Publishes `payload` on `topic` to every node. False when it cannot
    /// be queued (Redis unreachable for long, the queue full).
    pub fn publish(&self, topic: &str, payload: Bytes) -> bool {
        self.backend.publish(topic, payload)
    }

    /// Appends `payload` to `stream`: the publication's position once it
    /// is in the stream (Redis: its history; memory: this node's readers).
    /// Fails while Redis is unreachable: nothing half-published.
    pub async fn append(
        &self,
        stream: &str,
        payload: Bytes,
        retention: Retention,
    ) -> Result<Position, NotAppended> {
        self.backend.append(stream, payload, retention).await
    }

    /// Removes the entries of `stream` up to `through` (of its epoch)
    /// added at least `kept_for` ago, at most a few thousand a call, and
    /// says how many went (`memory`: none).
    pub async fn trim(
        &self,
        stream: &str,
        through: &Position,
        kept_for: Duration,
    ) -> Result<u64, String> {
        self.backend.trim(stream, through, kept_for).await
    }

    /// The position of the oldest entry `stream` still holds, if any
    /// (`memory`: none).
    pub async fn first_position(&self, stream: &str) -> Result<Option<Position>, String> {
        self.backend.first_position(stream).await
    }

    /// The position of the last entry appended to `stream`, if it has one
    /// (`memory`: none, there is no history); fails while Redis is
    /// unreachable.
    pub async fn last_position(&self, stream: &str) -> Result<Option<Position>, String> {
        self.backend.last_position(stream).await
    }

    /// Every entry of `streams` (and of those added later through the
    /// [`Follower`]), from the oldest kept on, then new ones as they are
    /// appended, by one reader that resumes where it was after Redis comes
    /// back. With `memory`: every stream's entries from now on.
    pub fn follow(&self, streams: Vec<String>) -> (Follower, mpsc::Receiver<StreamEntry>) {
        let (sender, entries) = mpsc::channel(1024);
        let (added, more) = mpsc::unbounded_channel();
        self.backend.follow(streams, more, sender);
        (Follower { added }, entries)
    }

    /// Sets `field` of the hash `hash` (Redis only: with `memory` nothing
    /// needs sharing).
    pub async fn set_field(&self, hash: &str, field: &str, value: &str) -> Result<(), String> {
        self.backend.set_field(hash, field, value).await
    }

    /// Every field of the hash `hash`.
    pub async fn fields(&self, hash: &str) -> Result<HashMap<String, String>, String> {
        self.backend.fields(hash).await
    }

    /// Removes fields of the hash `hash`.
    pub async fn remove_fields(&self, hash: &str, fields: Vec<String>) {
        if !fields.is_empty() {
            self.backend.remove_fields(hash, fields).await;
        }
    }

    /// Takes or renews the lease `name` for `ttl`: true while this node
    /// holds it. With `memory` this node always does; without Redis, no one.
    pub async fn try_lease(&self, name: &str, ttl: Duration) -> bool {
        self.backend.try_lease(name, ttl).await
    }

    /// Gives the lease `name` up, if this node holds it (at shutdown: another
    /// node takes over at once).
    pub async fn release_lease(&self, name: &str) {
        self.backend.release_lease(name).await;
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

/// A new epoch for a stream whose history starts now.
pub fn new_epoch() -> String {
    new_node_id().to_string()
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
