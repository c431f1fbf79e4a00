//! The live half of the server:
//!
//! - [`health`]: each datasource's health and latency, measured in the
//!   background every `live.health_interval`, read by `PONG` stats and
//!   published on the `status:<id>` and `latency:<id>` channels;
//! - [`hub`]: channels (Elstat's) and their subscribers;
//! - [`queries`]: live queries — new records matched once per distinct query
//!   and appended to every subscriber's results.

pub mod health;
pub mod hub;
pub mod queries;

use std::time::{SystemTime, UNIX_EPOCH};

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
