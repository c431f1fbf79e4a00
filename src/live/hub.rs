//! Channels (Elstat's `status:` and `latency:`) and their subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::datasources::Position;
use crate::dialect::Framing;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, LIVE_KEY};
use crate::protocol::elstat;
use crate::protocol::outbound::{Frame, ServerMessage};

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

/// How a subscription began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// No `since`: the current value was sent.
    Fresh,
    /// Every value after `since` was sent.
    Recovered,
    /// The values after `since` are no longer all known: the current value
    /// was sent.
    NotRecovered,
}

/// One value of a channel, encoded once in each framing.
#[derive(Clone)]
struct Encoded {
    socket_api: Frame,
    elstat: Frame,
}

impl Encoded {
    fn framed(&self, framing: Framing) -> Frame {
        match framing {
            Framing::SocketApi => self.socket_api.clone(),
            Framing::Elstat => self.elstat.clone(),
        }
    }
}

/// One channel: its latest values (the last is sent to each new
/// subscriber; those after a resubscribing client's position are sent to
/// it) and who receives it, in which framing.
#[derive(Default)]
struct Channel {
    /// Values of the current epoch, oldest first, at most [`CHANNEL_HISTORY`].
    history: VecDeque<(u64, Encoded)>,
    epoch: Option<String>,
    subscribers: HashMap<u64, (Outbox, Framing)>,
}

/// Values each channel keeps for resubscribing clients (at one measure
/// every 10 s, almost three hours).
pub const CHANNEL_HISTORY: usize = 1024;

impl Channel {
    /// The values after `since`: `None` when they cannot all be given (another
    /// epoch, or older than the history; a position ahead of this node's
    /// counts as lost too, not to send a value twice).
    fn since(&self, since: &Position) -> Option<Vec<&Encoded>> {
        if self.epoch.as_deref() != Some(since.epoch.as_str()) {
            return None;
        }
        let last = self.history.back().map_or(0, |(offset, _)| *offset);
        let first = self.history.front().map_or(last + 1, |(offset, _)| *offset);
        if since.offset > last || since.offset + 1 < first {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|(offset, _)| *offset > since.offset)
                .map(|(_, encoded)| encoded)
                .collect(),
        )
    }
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

    /// Adds a subscriber and sends it the values it missed since `since`
    /// (`Subscribed::Recovered`), or else the channel's current value, if
    /// there is one. `None` if it was already subscribed.
    ///
    /// The values are queued under the lock that publishing takes: nothing
    /// published meanwhile comes before them, twice, or not at all.
    pub fn subscribe(
        &self,
        channel: &str,
        connection: u64,
        outbox: &Outbox,
        framing: Framing,
        since: Option<&Position>,
    ) -> Option<Subscribed> {
        let mut channels = self.lock();
        let entry = channels.entry(channel.to_owned()).or_default();
        if entry.subscribers.contains_key(&connection) {
            return None;
        }
        let missed = since.and_then(|since| entry.since(since));
        let (send, subscribed): (Vec<&Encoded>, Subscribed) = match (since, missed) {
            (None, _) => (
                entry.history.back().map(|(_, e)| e).into_iter().collect(),
                Subscribed::Fresh,
            ),
            (Some(_), Some(missed)) => (missed, Subscribed::Recovered),
            (Some(_), None) => (
                entry.history.back().map(|(_, e)| e).into_iter().collect(),
                Subscribed::NotRecovered,
            ),
        };
        for encoded in send {
            if !self.deliver(outbox, encoded.framed(framing)) {
                return Some(subscribed);
            }
        }
        entry
            .subscribers
            .insert(connection, (outbox.clone(), framing));
        self.metrics.live_subscriptions.inc();
        Some(subscribed)
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

    /// Publishes a value at `position` of the channel's stream: `DATA`
    /// encoded once, kept in the channel's history, and queued for every
    /// subscriber. A position not after the last one is a value already
    /// published, and ignored.
    pub fn publish(
        &self,
        channel: &str,
        at_ms: u64,
        value: &serde_json::Value,
        position: &Position,
    ) {
        let mut channels = self.lock();
        let entry = channels.entry(channel.to_owned()).or_default();
        if entry.epoch.as_deref() != Some(position.epoch.as_str()) {
            entry.epoch = Some(position.epoch.clone());
            entry.history.clear();
        } else if entry
            .history
            .back()
            .is_some_and(|(last, _)| *last >= position.offset)
        {
            return;
        }
        let encoded = Encoded {
            socket_api: ServerMessage::Data {
                channel,
                at_ms,
                value,
                position: Some(position),
            }
            .encode(),
            elstat: elstat::data(channel, at_ms, value),
        };
        self.metrics.live_publishes.inc();
        entry.subscribers.retain(|_, (outbox, framing)| {
            let kept = self.deliver(outbox, encoded.framed(*framing));
            if !kept {
                self.metrics.live_subscriptions.dec();
            }
            kept
        });
        entry.history.push_back((position.offset, encoded));
        if entry.history.len() > CHANNEL_HISTORY {
            entry.history.pop_front();
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{self, Written};

    fn at(offset: u64) -> Position {
        Position {
            offset,
            epoch: "e1".into(),
        }
    }

    #[tokio::test]
    async fn a_value_reaches_each_subscriber_in_its_framing_once() {
        let app = testing::app(&testing::settings());
        let hub = Hub::new(Arc::clone(&app.metrics));
        let (socket_api, body) = testing::outbox(&app);
        let (elstat, elstat_body) = testing::outbox(&app);
        let (mut socket_api_written, mut elstat_written) =
            (Written::new(body), Written::new(elstat_body));
        hub.subscribe("status:fruit", 1, &socket_api, Framing::SocketApi, None);
        hub.subscribe("status:fruit", 2, &elstat, Framing::Elstat, None);
        assert!(hub
            .subscribe("status:fruit", 2, &elstat, Framing::Elstat, None)
            .is_none());

        hub.publish("status:fruit", 1_000, &json!("up"), &at(1));
        // The same position again is a value already published.
        hub.publish("status:fruit", 1_000, &json!("up"), &at(1));
        assert_eq!(
            socket_api_written.json().await,
            json!({"type": "DATA", "c": "status:fruit", "d": [1000, "up"], "offset": 1, "epoch": "e1"})
        );
        assert_eq!(
            elstat_written.json().await,
            json!({"op": 3, "c": "status:fruit", "d": [1000, "up"]})
        );
        assert!(socket_api_written.nothing_more().await);

        hub.leave(1);
        hub.leave(2);
        assert_eq!(hub.subscribers("status:fruit"), 0);
    }

    #[tokio::test]
    async fn a_resubscriber_gets_what_it_missed_since_its_position() {
        let app = testing::app(&testing::settings());
        let hub = Hub::new(Arc::clone(&app.metrics));
        for offset in 1..=3 {
            hub.publish("status:fruit", offset * 10, &json!(offset), &at(offset));
        }
        let (outbox, body) = testing::outbox(&app);
        let mut written = Written::new(body);
        hub.subscribe("status:fruit", 5, &outbox, Framing::SocketApi, Some(&at(1)));
        assert_eq!(written.json().await["d"], json!([20, 2]));
        assert_eq!(written.json().await["d"], json!([30, 3]));
        assert!(written.nothing_more().await);
    }
}
