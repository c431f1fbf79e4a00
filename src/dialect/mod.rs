//! The dialects a websocket speaks: which framing a connection's messages
//! are read and written in (the endpoint it upgraded on decides), and
//! [`Side`], what the transport loop hands a connection's messages and
//! events to — one implementation per dialect: the Socket API
//! (`socket_api.rs`) and Elstat (`elstat.rs`) over a `Session`, Damon's
//! services socket (`services.rs`) over a `services::Peer`, no session.

mod elstat;
mod services;
mod socket_api;

use std::time::Duration;

use crate::disconnect::Disconnect;
use crate::outbox::RequestKey;

pub use elstat::Elstat;
pub use socket_api::SocketApi;

/// The framing a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/ws`: Marija's Socket API and its extensions.
    SocketApi,
    /// `/api/streaming`: Elstat's streaming API (channels only, `op` codes).
    Elstat,
    /// `/ws/services`: Damon's socket for services (`services::Peer`).
    Services,
}

/// How a `Session` frames what it sends: the two dialects a session speaks
/// (the hub keeps each channel value encoded in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Marija's Socket API.
    SocketApi,
    /// Elstat's `op` codes.
    Elstat,
}

/// The connection must close.
pub enum Closing {
    /// At once; what is queued is dropped.
    Now(Disconnect),
    /// Once what is queued is written.
    AfterResults(Disconnect),
}

/// One connection's side of its dialect.
pub trait Side {
    /// What the connection says first.
    fn greet(&mut self) {}
    /// One text message from the client.
    fn text(&mut self, text: &str) -> Result<(), Closing>;
    /// The last of a request's work has stopped.
    fn finished(&mut self, _key: RequestKey) {}
    /// The server drains: running requests get `drain`.
    fn shutdown(&mut self, _drain: Duration) {}
    /// Nothing running: a draining connection may close.
    fn is_idle(&self) -> bool {
        true
    }
    /// The datasources the caller may use changed.
    fn datasources_changed(&mut self) {}
    /// The connection ends: everything it started stops.
    fn stop(&mut self);
}
