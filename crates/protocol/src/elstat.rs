//! Elstat's streaming API (`/api/streaming`), spoken exactly: JSON payloads
//! of at most 256 bytes with an integer `op`; `0` SUBSCRIBE and `-1`
//! UNSUBSCRIBE from clients (with `channels`), `1` SUBSCRIBED, `2`
//! UNSUBSCRIBED (with `channels`) and `3` DATA (`c`, `d`) from the server.
//! A payload over 256 bytes closes with 4420 TOO_MUCH, an invalid one with
//! 4200 INVALID_PAYLOAD.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inbound::{Channels, ClientMessage};
use crate::outbound::Frame;

/// Largest client payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256;

pub const OP_UNSUBSCRIBE: i64 = -1;
pub const OP_SUBSCRIBE: i64 = 0;
pub const OP_SUBSCRIBED: i64 = 1;
pub const OP_UNSUBSCRIBED: i64 = 2;
pub const OP_DATA: i64 = 3;

/// Why a payload was refused: the close code to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over 256 bytes: 4420 TOO_MUCH.
    TooMuch,
    /// Not JSON, no integer `op`, an op a client may not send, or no
    /// `channels` list of strings: 4200 INVALID_PAYLOAD.
    InvalidPayload,
}

/// Decodes a client payload into the request it makes.
pub fn decode(text: &str) -> Result<ClientMessage, Refused> {
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(Refused::TooMuch);
    }
    #[derive(Deserialize)]
    struct Payload {
        op: i64,
        #[serde(default)]
        channels: Option<Vec<String>>,
    }
    let payload: Payload = serde_json::from_str(text).map_err(|_| Refused::InvalidPayload)?;
    let channels = payload.channels.ok_or(Refused::InvalidPayload)?;
    match payload.op {
        OP_SUBSCRIBE => Ok(ClientMessage::Subscribe(Channels {
            channels,
            since: None,
        })),
        OP_UNSUBSCRIBE => Ok(ClientMessage::Unsubscribe(Channels {
            channels,
            since: None,
        })),
        _ => Err(Refused::InvalidPayload),
    }
}

/// `{"op": 1 or 2, "channels": [...]}`.
pub fn channels_reply(op: i64, channels: &[String]) -> Frame {
    #[derive(Serialize)]
    struct Reply<'a> {
        op: i64,
        channels: &'a [String],
    }
    encode(&Reply { op, channels })
}

/// `{"op": 3, "c": channel, "d": [unix ms, value]}`.
pub fn data(channel: &str, at_ms: u64, value: &Value) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        op: i64,
        c: &'a str,
        d: (u64, &'a Value),
    }
    encode(&Data {
        op: OP_DATA,
        c: channel,
        d: (at_ms, value),
    })
}

fn encode(value: &impl Serialize) -> Frame {
    // Plain data with string keys: serialisation cannot fail.
    Frame(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads() {
        assert_eq!(
            decode(r#"{"op":0,"channels":["status:a"]}"#),
            Ok(ClientMessage::Subscribe(Channels {
                channels: vec!["status:a".into()],
                since: None,
            }))
        );
        assert!(matches!(
            decode(r#"{"op":-1,"channels":[]}"#),
            Ok(ClientMessage::Unsubscribe(_))
        ));
        for bad in [
            "nope",
            "[]",
            r#"{"channels":["a"]}"#,
            r#"{"op":"0","channels":["a"]}"#,
            r#"{"op":3,"channels":["a"]}"#,
            r#"{"op":0}"#,
            r#"{"op":0,"channels":"a"}"#,
        ] {
            assert_eq!(decode(bad), Err(Refused::InvalidPayload), "{bad}");
        }
        let long = format!(r#"{{"op":0,"channels":["{}"]}}"#, "x".repeat(300));
        assert_eq!(decode(&long), Err(Refused::TooMuch));
    }

    #[test]
    fn replies() {
        let data = data("status:a", 5, &json!(true));
        assert_eq!(
            data.as_str().as_bytes(),
            br#"{"op":3,"c":"status:a","d":[5,true]}"#
        );
        let reply = channels_reply(OP_SUBSCRIBED, &["status:a".to_owned()]);
        assert_eq!(
            reply.as_str().as_bytes(),
            br#"{"op":1,"channels":["status:a"]}"#
        );
    }
}
