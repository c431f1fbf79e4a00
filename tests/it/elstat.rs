//! Elstat's streaming API at `/api/streaming`, as a client written only
//! from Elstat's document uses it: `op` codes, channels, DATA with a
//! millisecond timestamp, and its two close codes.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn streaming(server: &tributary::http::ServerHandle) -> Client {
    Client::connect_url(&format!("ws://{}/api/streaming", server.addr)).await
}

/// The next DATA (op 3) of `channel`.
async fn next_data(client: &mut Client, channel: &str) -> Value {
    loop {
        let message = client.recv().await;
        assert_eq!(message["op"], 3, "only DATA was expected, got {message}");
        if message["c"] == channel {
            return message;
        }
    }
}

#[tokio::test]
async fn subscribe_receive_data_unsubscribe() {
    let server = start_with(live_settings());
    let mut client = streaming(&server).await;
    // No greeting: the first payload is the answer to SUBSCRIBE.
    client
        .send(json!({"op": 0, "channels": ["status:people", "latency:people", "status:down", "graph:people"]}))
        .await;
    let subscribed = client.recv().await;
    assert_eq!(
        subscribed,
        json!({"op": 1, "channels": ["status:people", "latency:people", "status:down"]})
    );
    let data = next_data(&mut client, "status:people").await;
    let d = data["d"].as_array().expect("d is a list");
    assert_eq!(d.len(), 2);
    assert!(d[0].as_u64().unwrap() > 1_600_000_000_000, "{data}");
    assert_eq!(d[1], true);
    assert!(next_data(&mut client, "latency:people").await["d"][1].is_u64());
    assert_eq!(next_data(&mut client, "status:down").await["d"][1], false);
    // Only the documented fields.
    assert_eq!(
        data.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["op", "c", "d"]
    );

    client
        .send(json!({"op": -1, "channels": ["status:people", "latency:people", "status:down"]}))
        .await;
    let unsubscribed = loop {
        let message = client.recv().await;
        if message["op"] != 3 {
            break message;
        }
    };
    assert_eq!(
        unsubscribed,
        json!({"op": 2, "channels": ["status:people", "latency:people", "status:down"]})
    );
    // Nothing more arrives: a new subscription's reply comes next.
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.send(json!({"op": 0, "channels": []})).await;
    assert_eq!(client.recv().await, json!({"op": 1, "channels": []}));
}

#[tokio::test]
async fn payloads_over_256_bytes_close_with_too_much() {
    let server = start_with(live_settings());
    let mut client = streaming(&server).await;
    let channels: Vec<String> = (0..40).map(|i| format!("status:x{i}")).collect();
    client.send(json!({"op": 0, "channels": channels})).await;
    assert_eq!(client.closed().await, Closed::Code(4420));
}

#[tokio::test]
async fn invalid_payloads_close_with_invalid_payload() {
    let server = start_with(live_settings());
    for payload in [
        "not json",
        "[0]",
        r#"{"channels": ["status:people"]}"#,
        r#"{"op": 3, "channels": []}"#,
        r#"{"op": 0}"#,
        r#"{"op": 0, "channels": "status:people"}"#,
        r#"{"type": "PING"}"#,
    ] {
        let mut client = streaming(&server).await;
        client.send_text(payload).await;
        assert_eq!(client.closed().await, Closed::Code(4200), "{payload}");
    }
    // The Socket API on /ws is untouched by Elstat's rules.
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["people"], "*", 0, 1, "#1").await;
    assert_eq!(items_of(&answer[0])["total"], 10);
}
