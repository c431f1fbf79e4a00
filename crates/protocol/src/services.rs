//! The socket for services (`/ws/services`), in Damon's framing: every
//! message is `{"id", "op", "event", "data", "intent": {"target",
//! "identifier"}}`, and `op` is the only required property.
//!
//! ```
//! use tributary_protocol::services::{decode, op, ServiceMessage};
//!
//! let ping = decode(r#"{"op": 3, "id": "p1"}"#).unwrap();
//! assert_eq!(ping.op, op::PING);
//! let pong = ServiceMessage::pong(ping.id.clone());
//! assert_eq!(pong.encode().as_str(), r#"{"id":"p1","op":4}"#);
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::outbound::Frame;

/// The op codes.
pub mod op {
    pub const EVENT: i64 = 0;
    pub const IDENTIFY: i64 = 1;
    pub const DISCONNECT: i64 = 2;
    pub const PING: i64 = 3;
    pub const PONG: i64 = 4;
    pub const REPLY: i64 = 5;
}

/// Intent targets.
pub const GLOBAL: &str = "GLOBAL";
pub const GROUP: &str = "GROUP";
pub const DIRECT: &str = "DIRECT";

/// One message of the services socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub op: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Kept as written: only what tributary itself reads is parsed (a
    /// remote datasource's results are flattened straight from this text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    #[serde(default)]
    pub target: Option<String>,
    /// A group, a service name or a connection id (a string or a number).
    #[serde(default)]
    pub identifier: Option<Value>,
}

/// Decodes a frame; the error says what is wrong, in words.
pub fn decode(text: &str) -> Result<ServiceMessage, String> {
    // One pass for a valid message; an invalid one is read again to say why.
    // (Only an object: serde would also read a struct from an array.)
    if text.trim_start().starts_with('{') {
        if let Ok(message) = serde_json::from_str::<ServiceMessage>(text) {
            return Ok(message);
        }
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the frame is not JSON: {e}"))?;
    let Value::Object(object) = &value else {
        return Err("a message must be a JSON object".into());
    };
    match object.get("op") {
        None => return Err("`op` is required".into()),
        Some(op) if !op.is_i64() => return Err("`op` must be a whole number".into()),
        Some(_) => {}
    }
    serde_json::from_str(text).map_err(|e| format!("invalid message: {e}"))
}

impl ServiceMessage {
    fn new(op: i64, id: Option<Value>) -> ServiceMessage {
        ServiceMessage {
            id,
            op,
            event: None,
            data: None,
            intent: None,
        }
    }

    pub fn pong(id: Option<Value>) -> ServiceMessage {
        ServiceMessage::new(op::PONG, id)
    }

    /// The answer to a request (`IDENTIFY`, or an event answered by a service).
    pub fn reply(id: Option<Value>, data: Value) -> ServiceMessage {
        ServiceMessage {
            data: raw(&data),
            ..ServiceMessage::new(op::REPLY, id)
        }
    }

    /// `DISCONNECT` with its reason; the socket closes after it.
    pub fn disconnect(reason: &str) -> ServiceMessage {
        ServiceMessage {
            data: raw(&json!({ "reason": reason })),
            ..ServiceMessage::new(op::DISCONNECT, None)
        }
    }

    /// An `ERROR` event about the message `id`: what went wrong, the
    /// connection stays open.
    pub fn error(id: Option<Value>, code: &str, message: &str) -> ServiceMessage {
        ServiceMessage {
            event: Some("ERROR".into()),
            data: raw(&json!({ "code": code, "message": message })),
            ..ServiceMessage::new(op::EVENT, id)
        }
    }

    pub fn encode(&self) -> Frame {
        // Only JSON values and strings: serialisation cannot fail.
        Frame(Bytes::from(serde_json::to_vec(self).unwrap_or_default()))
    }

    /// `data` parsed, if there is any.
    pub fn data_value(&self) -> Option<Value> {
        self.data
            .as_deref()
            .and_then(|d| serde_json::from_str(d.get()).ok())
    }

    /// The id as a lookup key (its JSON text), if there is one.
    pub fn id_key(&self) -> Option<String> {
        self.id
            .as_ref()
            .filter(|id| !id.is_null())
            .map(Value::to_string)
    }
}

fn raw(value: &Value) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(value).ok()
}

/// A received frame passed on as it was sent, byte for byte.
pub fn forward(text: &str) -> Frame {
    Frame(Bytes::copy_from_slice(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_is_the_only_required_property() {
        let event = decode(
            r#"{"id":"7","op":0,"event":"INFO","data":{"a":1},"intent":{"target":"GROUP","identifier":"damon"}}"#,
        )
        .unwrap();
        assert_eq!(event.event.as_deref(), Some("INFO"));
        assert_eq!(event.intent.unwrap().target.as_deref(), Some("GROUP"));
        assert_eq!(decode(r#"{"op":3}"#).unwrap().op, op::PING);
        assert_eq!(decode("{}").unwrap_err(), "`op` is required");
        assert_eq!(
            decode(r#"{"op":"3"}"#).unwrap_err(),
            "`op` must be a whole number"
        );
        assert!(decode("[1]").is_err());
        assert_eq!(
            decode("[1, 2]").unwrap_err(),
            "a message must be a JSON object"
        );
        assert!(decode("{").is_err());
        assert!(decode(r#"{"op":0,"intent":5}"#).is_err());
    }

    #[test]
    fn answers_encode_in_the_framing() {
        assert_eq!(
            ServiceMessage::disconnect("wrong token").encode().as_str(),
            r#"{"op":2,"data":{"reason":"wrong token"}}"#
        );
        assert_eq!(
            ServiceMessage::error(Some(json!(4)), "unknown_reply", "no event has id 4")
                .encode()
                .as_str(),
            r#"{"id":4,"op":0,"event":"ERROR","data":{"code":"unknown_reply","message":"no event has id 4"}}"#
        );
    }
}
