//! Property: no frame a client can send — random bytes, random JSON, or a
//! valid request with bits changed — panics a session or leaves a task behind.
//! After each case the connection either still answers a PING or was closed
//! with one of the documented codes; after all cases the server holds no
//! connections and runs no requests.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const VALID: &[&str] = &[
    r##"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"name:person*","from":0,"size":5,"color":"#de79f2","request-id":1}"##,
    r#"{"type":"FIELDS_REQUEST","datasources":["people","slow"],"request-id":"f"}"#,
    r#"{"type":"CANCEL_REQUEST","request-id":1}"#,
    r#"{"type":"PING","t":12345}"#,
    r#"{"type":"ITEMS_REQUEST","datasources":["slow"],"query":"age:[1 TO 5] AND NOT group:g1","size":3}"#,
    r#"{"type":"ITEMS_REQUEST","datasources":["people","slow"],"query":"group:g1","size":2,"request-id":"l","live":true}"#,
    r#"{"type":"UPDATE_REQUEST","request-id":"l","query":"name:person*","datasources":["people"]}"#,
    r#"{"type":"SUBSCRIBE","channels":["status:people","latency:slow"]}"#,
];

/// A frame: one of the valid requests with a few bytes replaced, inserted or removed,
/// a random string, or random bytes sent as a text or binary frame.
fn frame() -> impl Strategy<Value = Message> {
    let mutated = (
        prop::sample::select(VALID),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..6),
    )
        .prop_map(|(valid, edits)| {
            let mut bytes = valid.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len().max(1));
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i.min(bytes.len()), byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            Message::text(String::from_utf8_lossy(&bytes).into_owned())
        });
    prop_oneof![
        6 => mutated,
        2 => any::<String>().prop_map(Message::text),
        1 => "\\{\"type\":\"[A-Z_]{0,16}\"(,\"[a-z-]{1,10}\":(null|[0-9]{1,4}|\"[^\"]{0,8}\"|\\[\\]|\\{\\}))*\\}".prop_map(Message::text),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Message::binary),
    ]
}

#[test]
fn random_and_mutated_frames_never_break_a_session() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut settings = settings(vec![
        datasource("people", "people", json!({"count": 50})),
        datasource("slow", "slow", json!({"delay_ms": 5})),
    ]);
    settings.limits.max_messages_per_second = 10_000;
    let server = start_with(settings);
    let config = ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(frames in prop::collection::vec(frame(), 1..8))| {
        runtime.block_on(async {
            let (mut client, _) = Client::ready(&server).await;
            let mut closed = None;
            for frame in frames {
                if client.try_send_raw(frame).await.is_err() {
                    break;
                }
            }
            // A PING proves the session still answers; anything may come before its PONG.
            if client.try_send_raw(Message::text(r#"{"type":"PING","t":"probe"}"#)).await.is_ok() {
                loop {
                    match client.next_event().await {
                        Event::Json(message) => {
                            prop_assert!(message["type"].is_string(), "{message}");
                            if message["type"] == "PONG" && message["t"] == "probe" {
                                break;
                            }
                        }
                        Event::Closed(code) => {
                            closed = Some(code);
                            break;
                        }
                    }
                }
            } else {
                closed = Some(client.closed().await);
            }
            if let Some(code) = closed {
                // Only the documented reasons to close: not an object, too big/too fast.
                prop_assert!(
                    matches!(code, Closed::Code(4200) | Closed::Code(4420) | Closed::Code(1002) | Closed::Code(1007)),
                    "closed with {code:?}"
                );
            }
            Ok(())
        })?;
    });
    runtime.block_on(async {
        metric_eventually(server.addr, "tributary_connections_open", 0.0).await;
        metric_eventually(server.addr, "tributary_requests_running", 0.0).await;
        // Live requests and channel subscriptions end with their connections.
        metric_eventually(server.addr, "tributary_live_queries", 0.0).await;
        metric_eventually(server.addr, "tributary_live_subscriptions", 0.0).await;
        // Still serving after all of it.
        let (mut client, _) = Client::ready(&server).await;
        let answer = client.items(&["people"], "*", 0, 1, "#000").await;
        assert_eq!(answer[0]["items"]["total"], 50);
        tokio::time::sleep(Duration::from_millis(1)).await;
    });
}
