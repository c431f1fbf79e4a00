//! The dialects a websocket speaks: which framing a connection's messages
//! are read and written in (the endpoint it upgraded on decides).

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
