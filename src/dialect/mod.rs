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
use tokio::sync::watch;

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
    /// How many of its requests run (or are still stopping), as it
    /// changes; a draining connection closes once none does.
    fn running(&self) -> watch::Receiver<usize> {
        watch::channel(0).1
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::protocol::{CLOSE_INVALID_PAYLOAD, CLOSE_TOO_MUCH};
    use crate::services::Peer;
    use crate::testing;

    fn closing_code(result: Result<(), Closing>) -> (bool, u16) {
        match result {
            Ok(()) => panic!("the connection should close"),
            Err(Closing::Now(d)) => (true, d.code),
            Err(Closing::AfterResults(d)) => (false, d.code),
        }
    }

    #[tokio::test]
    async fn the_socket_api_closes_on_what_is_not_an_object_and_answers_the_rest() {
        let app = testing::app(&testing::settings());
        let (session, mut written) = testing::session(&app, Framing::SocketApi);
        let mut side = SocketApi(session);
        assert_eq!(
            closing_code(side.text("[1]")),
            (true, CLOSE_INVALID_PAYLOAD)
        );
        // An object the protocol does not know: an ERROR, the connection stays.
        assert!(side.text(r#"{"type":"NO_SUCH_THING"}"#).is_ok());
        assert_eq!(written.json().await["type"], "ERROR");
        side.text(r#"{"type":"ITEMS_REQUEST","datasources":["fruit"],"query":"ban"}"#)
            .unwrap_or_else(|_| panic!("a request keeps the connection"));
        assert_eq!(written.json().await["items"]["total"], 1);
        side.stop();
    }

    #[tokio::test]
    async fn elstat_closes_on_oversized_and_invalid_payloads() {
        let app = testing::app(&testing::settings());
        let (session, mut written) = testing::session(&app, Framing::Elstat);
        let mut side = Elstat(session);
        let long = json!({"op": 0, "channels": ["x".repeat(300)]}).to_string();
        assert_eq!(closing_code(side.text(&long)), (true, CLOSE_TOO_MUCH));
        assert_eq!(
            closing_code(side.text(r#"{"op": 9}"#)),
            (true, CLOSE_INVALID_PAYLOAD)
        );
        assert!(side.text(r#"{"op":0,"channels":["status:fruit"]}"#).is_ok());
        assert_eq!(
            written.json().await,
            json!({"op": 1, "channels": ["status:fruit"]})
        );
        side.stop();
        assert_eq!(app.hub.subscribers("status:fruit"), 0);
    }

    #[tokio::test]
    async fn a_services_connection_has_no_session_and_must_identify_first() {
        let app = testing::app(&testing::settings());
        let (outbox, body) = testing::outbox(&app);
        let mut written = testing::Written::new(body);
        let mut side: Box<dyn Side> = Box::new(Peer::new(9, Arc::clone(&app.services), outbox));
        // No greeting: services speak first.
        side.greet();
        assert!(written.nothing_more().await);
        let (now, code) = closing_code(side.text("not json"));
        assert_eq!((now, code), (false, 1008));
        let told = written.json().await;
        // Damon's DISCONNECT is op 2, with the reason.
        assert_eq!(told["op"], 2, "{told}");
        let reason = told["data"]["reason"].as_str().unwrap_or("");
        assert!(reason.starts_with("identify first"), "{told}");
        side.stop();
    }
}
