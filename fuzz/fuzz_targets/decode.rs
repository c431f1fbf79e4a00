//! Feeds arbitrary frames to the decoder every inbound message goes through.
//! It must never panic; whatever it returns must be encodable as an answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::protocol::{self, DecodeError, ServerMessage};

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the websocket protocol; other bytes never reach `decode`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::decode(text) {
        Ok(_) | Err(DecodeError::NotAnObject) => {}
        Err(DecodeError::Invalid(report)) => {
            let encoded = ServerMessage::Error(&report).encode();
            assert!(serde_json::from_str::<serde_json::Value>(encoded.as_str()).is_ok());
        }
    }
});
