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
    subscriber: SubscriberClient,
    publisher: Client,
}

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
            Some(redis) => redis.outgoing.try_send((topic.to_owned(), payload)).is_ok(),
        }
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
        });
        let publisher = builder.build().map_err(|e| format!("broker: {e}"))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| format!("broker: {e}"))?;
        publisher.connect();
        subscriber.connect();
        // Resubscribes to every channel after a reconnect.
        subscriber.manage_subscriptions();
        let (outgoing, queued) = mpsc::channel(OUTGOING);
        let prefix = format!("{}:", settings.prefix);
        let broker = Arc::new(Broker {
            node: new_node_id(),
            topics: Mutex::new(HashMap::new()),
            redis: Some(RedisBroker {
                prefix: prefix.clone(),
                outgoing,
                subscriber: subscriber.clone(),
                publisher: publisher.clone(),
            }),
        });
        tokio::spawn(send_queued(publisher, prefix.clone(), queued));
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
    mut queued: mpsc::Receiver<(String, Bytes)>,
) {
    while let Some((topic, payload)) = queued.recv().await {
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
