//! Feeds arbitrary frames to the decoder of `/ws/services` (Damon's
//! framing). It must never panic; what it reads must give an id key no
//! larger than the frame, and an error must be answerable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::protocol::services::{decode, ServiceMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(message) => {
            if let Some(key) = message.id_key() {
                assert!(key.len() <= text.len() + 2);
            }
            let _ = message.data_value();
        }
        Err(reason) => {
            let answer = ServiceMessage::error(None, "invalid_message", &reason).encode();
            assert!(serde_json::from_str::<serde_json::Value>(answer.as_str()).is_ok());
        }
    }
});
