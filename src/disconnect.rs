//! Why the server closes a connection: a close code and a reason for the
//! client, with a named constructor for each cause.

use std::borrow::Cow;

use actix_ws::{CloseCode, ProtocolError};

use crate::protocol;

/// Why the server closes a connection: a close code and a reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    pub fn new(code: impl Into<u16>, reason: impl Into<Cow<'static, str>>) -> Disconnect {
        Disconnect {
            code: code.into(),
            reason: reason.into(),
        }
    }
    pub fn too_large() -> Disconnect {
        Disconnect::new(protocol::CLOSE_TOO_MUCH, "message too large")
    }
    pub fn too_many_messages() -> Disconnect {
        Disconnect::new(protocol::CLOSE_TOO_MUCH, "too many messages")
    }
    pub fn slow_client() -> Disconnect {
        Disconnect::new(
            protocol::CLOSE_TOO_MUCH,
            "client too slow: results not read",
        )
    }
    pub fn not_an_object() -> Disconnect {
        Disconnect::new(
            protocol::CLOSE_INVALID_PAYLOAD,
            "every message must be a JSON object",
        )
    }
    pub fn binary_frame() -> Disconnect {
        Disconnect::new(
            protocol::CLOSE_INVALID_PAYLOAD,
            "binary frames are not accepted; send JSON text",
        )
    }
    pub fn no_pong() -> Disconnect {
        Disconnect::new(CloseCode::Policy, "no pong received")
    }
    pub fn protocol_error(error: &ProtocolError) -> Disconnect {
        Disconnect::new(CloseCode::Protocol, error.to_string())
    }
    /// An Elstat payload over 256 bytes.
    pub fn elstat_too_much() -> Disconnect {
        Disconnect::new(
            protocol::CLOSE_TOO_MUCH,
            "payloads may not exceed 256 bytes",
        )
    }

    /// An Elstat payload that is not `{"op": 0 or -1, "channels": [...]}`.
    pub fn elstat_invalid_payload() -> Disconnect {
        Disconnect::new(
            protocol::CLOSE_INVALID_PAYLOAD,
            "invalid payload: expected {\"op\": 0 or -1, \"channels\": [...]}",
        )
    }

    pub fn going_away() -> Disconnect {
        Disconnect::new(CloseCode::Away, "server shutting down")
    }
}
