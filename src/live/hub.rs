//! Channels (Elstat's `status:` and `latency:`) and their subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;
use crate::outbox::{Outbox, LIVE_KEY};
use crate::protocol::elstat;
use crate::protocol::outbound::{Frame, ServerMessage};
use crate::session::Dialect;

/// What a channel name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelName<'a> {
    /// `status:<id>` or `latency:<id>`: a datasource's health.
    Datasource {
        id: &'a str,
    },
    Unknown,
}

impl<'a> ChannelName<'a> {
    pub fn parse(name: &'a str) -> ChannelName<'a> {
        match name.split_once(':') {
            Some(("status" | "latency", id)) if !id.is_empty() => ChannelName::Datasource { id },
            _ => ChannelName::Unknown,
        }
    }
}

/// One value of a channel, encoded once in each framing.
#[derive(Clone)]
struct Encoded {
    socket_api: Frame,
    elstat: Frame,
}

impl Encoded {
    fn in_dialect(&self, dialect: Dialect) -> Frame {
        match dialect {
            // Services never subscribe to channels; they would get Socket API frames.
            Dialect::SocketApi | Dialect::Services => self.socket_api.clone(),
            Dialect::Elstat => self.elstat.clone(),
        }
    }
}

/// One channel: its last value (sent to each new subscriber) and who
/// receives it, in which framing.
#[derive(Default)]
struct Channel {
    last: Option<Encoded>,
    subscribers: HashMap<u64, (Outbox, Dialect)>,
}

/// Live channels and their subscribers, by connection id. A value is
/// encoded once per framing (the Socket API's `DATA`, Elstat's op 3) and the
/// same bytes queued for every subscriber; one whose
/// outbox is full is dropped with 4420 and nobody else waits for it.
pub struct Hub {
    channels: Mutex<HashMap<String, Channel>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber and sends it the channel's current value, if there
    /// is one. `false` if it was already subscribed.
    pub fn subscribe(
        &self,
        channel: &str,
        connection: u64,
        outbox: &Outbox,
        dialect: Dialect,
    ) -> bool {
        let mut channels = self.lock();
        let entry = channels.entry(channel.to_owned()).or_default();
        if entry.subscribers.contains_key(&connection) {
            return false;
        }
        if let Some(last) = &entry.last {
            if !self.deliver(outbox, last.in_dialect(dialect)) {
                return true;
            }
        }
        entry
            .subscribers
            .insert(connection, (outbox.clone(), dialect));
        self.metrics.live_subscriptions.inc();
        true
    }

    /// `false` if the connection was not subscribed.
    pub fn unsubscribe(&self, channel: &str, connection: u64) -> bool {
        let removed = self
            .lock()
            .get_mut(channel)
            .is_some_and(|c| c.subscribers.remove(&connection).is_some());
        if removed {
            self.metrics.live_subscriptions.dec();
        }
        removed
    }

    /// Removes a connection from every channel (it is closing).
    pub fn leave(&self, connection: u64) {
        for channel in self.lock().values_mut() {
            if channel.subscribers.remove(&connection).is_some() {
                self.metrics.live_subscriptions.dec();
            }
        }
    }

    /// Publishes a value: `DATA` encoded once, kept as the channel's last
    /// value, and queued for every subscriber.
    pub fn publish(&self, channel: &str, at_ms: u64, value: &serde_json::Value) {
        let encoded = Encoded {
            socket_api: ServerMessage::Data {
                channel,
                at_ms,
                value,
            }
            .encode(),
            elstat: elstat::data(channel, at_ms, value),
        };
        self.metrics.live_publishes.inc();
        let mut channels = self.lock();
        let entry = channels.entry(channel.to_owned()).or_default();
        entry.subscribers.retain(|_, (outbox, dialect)| {
            let kept = self.deliver(outbox, encoded.in_dialect(*dialect));
            if !kept {
                self.metrics.live_subscriptions.dec();
            }
            kept
        });
        entry.last = Some(encoded);
    }

    /// Subscribers of a channel (for tests and metrics).
    pub fn subscribers(&self, channel: &str) -> usize {
        self.lock().get(channel).map_or(0, |c| c.subscribers.len())
    }
}

impl Hub {
    /// Queues a channel frame; false when the subscriber must be dropped.
    fn deliver(&self, outbox: &Outbox, frame: Frame) -> bool {
        super::deliver(outbox, LIVE_KEY, frame, &self.metrics, "channel")
    }
}
