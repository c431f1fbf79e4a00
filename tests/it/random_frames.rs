//! Property: no frame a client can send — random bytes, random JSON, or a
//! valid request with bits changed — panics a session or leaves a task behind.
//! After each case the connection either still answers a PING or was closed
//! with one of the documented codes; after all cases the server holds no
//! connections and runs no requests.

use crate::common;

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
    r#"{"type":"EXPAND_REQUEST","datasources":["people"],"values":[{"field":"name","value":"person 1"}],"fields":["group"],"request-id":"x","links":[{"name":"l","fields":[{"datasource":"people","field":"name"},{"datasource":"people","field":"group"}],"lowercase":true,"replace":[{"regex":"(.)","with":"$1$1$1$1"},{"regex":"[0-9]+","with":"${0}x"}]}]}"#,
];

/// Messages of `/ws/services`, for the services socket's property.
const SERVICE_VALID: &[&str] = &[
    r#"{"op":0,"id":"e1","event":"LOOKUP","data":{"q":1},"intent":{"target":"DIRECT","identifier":"peer"}}"#,
    r#"{"op":0,"event":"HELLO","data":[1,2]}"#,
    r#"{"op":0,"id":"g1","event":"INFO","intent":{"target":"GROUP","identifier":"fuzzing"}}"#,
    r#"{"op":5,"id":"e1","data":{"total":1,"results":[],"done":true}}"#,
    r#"{"op":3,"id":"p"}"#,
    r#"{"op":0,"id":"s1","event":"SEARCH","data":{"query":"*"},"intent":{"target":"DIRECT","identifier":"peer"}}"#,
    r#"{"op":0,"id":"pub","event":"PUBLISH","data":{"records":[{"id":"r1","name":"fuzzed"}]}}"#,
    r#"{"op":1,"id":"again","data":{"token":"fuzz-token-12"}}"#,
    r#"{"op":2}"#,
];

/// One of `valid` with a few bytes replaced, inserted or removed.
fn mutated(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(valid),
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
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

/// A frame: one of the valid requests with a few bytes replaced, inserted or removed,
/// a random string, or random bytes sent as a text or binary frame.
fn frame() -> impl Strategy<Value = Message> {
    prop_oneof![
        6 => mutated(VALID).prop_map(Message::text),
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

/// Connects to `/ws/services` and identifies with `token`, serving
/// `datasource` if given.
async fn service(
    server: &tributary::http::ServerHandle,
    token: &str,
    datasource: Option<&str>,
) -> Client {
    let mut client = Client::connect_url(&format!("ws://{}/ws/services", server.addr)).await;
    let mut data = json!({"token": token});
    if let Some(id) = datasource {
        data["datasource"] = json!({"id": id, "fields": [{"path": "name", "type": "text"}]});
    }
    client
        .send(json!({"op": 1, "id": "hello", "data": data}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["op"], 5, "{reply}");
    client
}

/// Property: no message a service can send — valid, mutated or random —
/// panics the socket, closes another service, or leaves the server unable
/// to serve. After each case the sender still answers a PING or was closed
/// with a documented code; the other service is never closed.
#[test]
fn random_service_events_never_break_the_socket_or_another_service() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut settings = settings(vec![datasource("people", "people", json!({"count": 50}))]);
    for (name, token, datasources) in [
        ("fuzzer", "fuzz-token-12", vec!["fz".to_owned()]),
        ("peer", "peer-token-12", vec![]),
    ] {
        settings.services.insert(
            name.into(),
            tributary::config::ServiceSettings {
                token: token.into(),
                group: Some("fuzzing".into()),
                datasources: Some(datasources),
            },
        );
    }
    let server = start_with(settings);
    // The other service reads nothing while the cases run.
    let mut peer = runtime.block_on(service(&server, "peer-token-12", None));
    let frames = prop_oneof![
        6 => mutated(SERVICE_VALID).prop_map(Message::text),
        1 => any::<String>().prop_map(Message::text),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Message::binary),
    ];
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(frames in prop::collection::vec(frames, 1..8))| {
        runtime.block_on(async {
            let mut client = service(&server, "fuzz-token-12", Some("fz")).await;
            for frame in frames {
                if client.try_send_raw(frame).await.is_err() {
                    break;
                }
            }
            if client.try_send_raw(Message::text(r#"{"op":3,"id":"probe"}"#)).await.is_ok() {
                loop {
                    match client.next_event().await {
                        Event::Json(message) => {
                            prop_assert!(message["op"].is_u64(), "{message}");
                            if message["op"] == 4 && message["id"] == "probe" {
                                break;
                            }
                        }
                        Event::Closed(code) => {
                            prop_assert!(
                                matches!(code, Closed::Code(1000) | Closed::Code(1008) | Closed::Code(4200) | Closed::Code(4420) | Closed::Code(1002) | Closed::Code(1007)),
                                "closed with {code:?}"
                            );
                            break;
                        }
                    }
                }
            }
            Ok(())
        })?;
    });
    runtime.block_on(async {
        // The peer was never closed: it reads what reached it, then answers.
        peer.send(json!({"op": 3, "id": "peer-probe"})).await;
        loop {
            let message = peer.recv().await;
            if message["op"] == 4 && message["id"] == "peer-probe" {
                break;
            }
        }
        let (mut client, _) = Client::ready(&server).await;
        let answer = client.items(&["people"], "*", 0, 1, "#000").await;
        assert_eq!(answer[0]["items"]["total"], 50);
    });
}

/// Property: whatever body is posted, publishing answers 200 with every
/// record added, or 400/413 with none; never a server error.
#[test]
fn random_publish_bodies_are_all_or_nothing() {
    const BODIES: &[&str] = &[
        "{\"id\":\"a\",\"name\":\"published one\",\"age\":3}",
        "[{\"id\":\"b\",\"name\":\"two\"},{\"id\":\"c\",\"name\":\"three\",\"group\":\"g1\"}]",
        "{\"id\":\"d\",\"name\":\"x\"}\n{\"id\":\"e\",\"age\":\"not a number\"}\n",
        "{\"id\":\"f\",\"nested\":{\"deep\":[1,2,{\"x\":null}]}}",
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut settings = settings(vec![datasource("people", "people", json!({"count": 10}))]);
    settings.publish.enabled = true;
    settings.publish.max_body_bytes = 4096;
    settings.limits.max_messages_per_second = 10_000;
    let server = start_with(settings);
    let client = tokio::sync::Mutex::new(runtime.block_on(Client::ready(&server)).0);
    let bodies = prop_oneof![
        6 => mutated(BODIES),
        1 => any::<String>(),
        1 => "(\\{\\}\n){1,2000}",
    ];
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in bodies)| {
        runtime.block_on(async {
            let mut client = client.lock().await;
            let total = |answer: &Vec<serde_json::Value>| answer[0]["items"]["total"].as_u64().unwrap_or(0);
            let before = total(&client.items(&["people"], "*", 0, 1, "#000").await);
            let (status, reply) = http_post(server.addr, "/api/datasources/people/records", &[], &body).await;
            let after = total(&client.items(&["people"], "*", 0, 1, "#000").await);
            match status {
                200 => {
                    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
                    // A record under an id already held replaces it.
                    let added = reply["published"].as_u64().unwrap_or(0) - reply["replaced"].as_u64().expect("one node says how many it replaced");
                    prop_assert_eq!(after, before + added, "{}: {}", body, reply);
                }
                400 | 413 => prop_assert_eq!(after, before, "{}: {}", body, reply),
                other => prop_assert!(false, "{other} for {body:?}: {reply}"),
            }
            Ok(())
        })?;
    });
}
