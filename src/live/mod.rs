//! The live half of the server:
//!
//! - [`health`]: each datasource's health and latency, measured in the
//!   background every `live.health_interval`, read by `PONG` stats and
//!   published on the `status:<id>` and `latency:<id>` channels;
//! - [`hub`]: channels (Elstat's) and their subscribers;
//! - [`queries`]: live queries — new records matched once per distinct query
//!   and appended to every subscriber's results;
//! - [`broker`]: topics and streams between the nodes of a cluster;
//! - [`streams`]: published records and health measures, applied by every
//!   node from the broker's streams in the same order;
//! - [`polls`]: with several nodes, one polls a polled datasource for the
//!   live queries of all;
//! - [`recovery`]: a node missing published records the stream no longer
//!   holds copies a ready peer's (peer recovery);
//! - [`retention`]: the broker keeps of a stream of records what some node
//!   still needs.

pub mod applied;
pub mod broker;
pub mod health;
pub mod hub;
pub mod polls;
pub mod publishing;
pub mod queries;
pub mod recovery;
pub mod retention;
pub mod streams;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;
use crate::outbox::{Outbox, RequestKey};
use crate::protocol::{Frame, CLOSE_TOO_MUCH};

pub use broker::{Broker, Retention};
pub use health::{check, monitor, Health, HealthBoard};
pub use hub::{ChannelName, Hub};
pub use queries::LiveQueries;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The server's resident memory in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Queues a live frame (channel data, a live request's append) without
/// waiting. A subscriber whose outbox is full reads too slowly to follow:
/// it is closed with 4420 and must be dropped, so nobody waits for it.
/// True when the frame was queued.
pub fn deliver(
    outbox: &Outbox,
    key: RequestKey,
    frame: Frame,
    metrics: &Metrics,
    what: &str,
) -> bool {
    deliver_counted(outbox, key, frame, &metrics.live_deliveries, metrics, what)
}

/// [`deliver`], counting what is queued in `delivered` (the services
/// socket counts its messages apart from live data).
pub fn deliver_counted(
    outbox: &Outbox,
    key: RequestKey,
    frame: Frame,
    delivered: &prometheus::IntCounter,
    metrics: &Metrics,
    what: &str,
) -> bool {
    match outbox.try_send_live(key, frame) {
        Ok(()) => {
            delivered.inc();
            true
        }
        Err(crate::outbox::LiveRefused::Full) => {
            metrics.live_dropped_subscribers.inc();
            outbox.close_now(CLOSE_TOO_MUCH, &format!("too slow to follow a live {what}"));
            false
        }
        Err(crate::outbox::LiveRefused::Closed) => false,
    }
}
