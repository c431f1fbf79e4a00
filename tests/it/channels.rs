//! Elstat's channels on `/ws`: `SUBSCRIBE` / `UNSUBSCRIBE`, `status:<id>`
//! and `latency:<id>` with their current value on subscribe and a new one at
//! every health measure, each bad input answered by an `ERROR`.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tributary::config::TokenSettings;

/// The next `DATA` of `channel`, skipping other channels' data.
async fn next_data(client: &mut Client, channel: &str) -> Value {
    loop {
        let message = client.recv().await;
        if message["type"] == "DATA" && message["c"] == channel {
            return message;
        }
        assert!(
            message["type"] == "DATA",
            "only DATA was expected, got {message}"
        );
    }
}

/// The next `count` messages that are not channel data.
async fn next_non_data(client: &mut Client, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = client.recv().await;
        if message["type"] != "DATA" {
            seen.push(message);
        }
    }
    seen
}

#[tokio::test]
async fn status_and_latency_arrive_on_subscribe_and_at_every_measure() {
    let server = start_with(live_settings());
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(
            json!({"type":"SUBSCRIBE","channels":["status:people","latency:people","status:down"]}),
        )
        .await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    assert_eq!(
        subscribed["channels"],
        json!(["status:people", "latency:people", "status:down"])
    );

    let status = next_data(&mut client, "status:people").await;
    let at = status["d"][0].as_u64().expect("a unix ms timestamp");
    assert!(at > 1_600_000_000_000, "{status}");
    assert_eq!(status["d"][1], true, "{status}");
    let latency = next_data(&mut client, "latency:people").await;
    assert!(latency["d"][1].is_u64(), "{latency}");
    assert_eq!(next_data(&mut client, "status:down").await["d"][1], false);

    // Measured again: a later timestamp on the same channel.
    let later = next_data(&mut client, "status:people").await;
    assert!(later["d"][0].as_u64().unwrap() >= at, "{later}");
}

#[tokio::test]
async fn bad_channel_requests_get_errors_and_lose_nothing() {
    let server = start_with(live_settings());
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"SUBSCRIBE","channels":["status:nosuch","bogus","graph:people","status:people"]}))
        .await;
    let mut codes = Vec::new();
    let subscribed = loop {
        let message = client.recv().await;
        match message["type"].as_str() {
            Some("ERROR") => codes.push(message["error"]["code"].as_str().unwrap_or("").to_owned()),
            Some("SUBSCRIBED") => break message,
            _ => panic!("unexpected {message}"),
        }
    };
    assert_eq!(codes, ["unknown_channel"; 3]);
    assert_eq!(subscribed["channels"], json!(["status:people"]));

    // Twice: an error, the subscription stays.
    client
        .send(json!({"type":"SUBSCRIBE","channels":["status:people"]}))
        .await;
    let seen = next_non_data(&mut client, 2).await;
    assert_eq!(seen[0]["error"]["code"], "already_subscribed", "{seen:?}");
    assert_eq!(seen[1]["type"], "SUBSCRIBED");
    assert_eq!(seen[1]["channels"], json!([]));

    // Unsubscribing from what was never subscribed: an error.
    client
        .send(json!({"type":"UNSUBSCRIBE","channels":["latency:people","status:people"]}))
        .await;
    let seen = next_non_data(&mut client, 2).await;
    assert_eq!(seen[0]["error"]["code"], "not_subscribed", "{seen:?}");
    assert_eq!(seen[1]["type"], "UNSUBSCRIBED");
    assert_eq!(seen[1]["channels"], json!(["status:people"]));

    // Malformed: an error naming the field.
    client
        .send(json!({"type":"SUBSCRIBE","channels":"status:people"}))
        .await;
    let error = next_non_data(&mut client, 1).await.remove(0);
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");

    // After UNSUBSCRIBED nothing more arrives: the next message is the PONG.
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.send(json!({"type":"PING","t":7})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "PONG", "{pong}");
    let answer = client.items(&["people"], "*", 0, 1, "#1").await;
    assert_eq!(items_of(&answer[0])["total"], 10);
}

#[tokio::test]
async fn a_client_that_knows_only_the_seed_sees_nothing_new() {
    let server = start_with(live_settings());
    let (mut client, _) = Client::ready(&server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = client.items(&["people"], "*", 0, 2, "#1").await;
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{}", answer[0]);
}

#[tokio::test]
async fn a_limited_token_sees_only_its_datasources_channels() {
    let mut settings = live_settings();
    settings.auth.tokens = BTreeMap::from([(
        "intern".to_owned(),
        TokenSettings {
            token: "people-only-token-1".into(),
            datasources: Some(vec!["people".into()]),
            publish: false,
        },
    )]);
    let server = start_with(settings);
    let url = format!("ws://{}/ws?token=people-only-token-1", server.addr);
    let mut client = connect_with(&url, &[]).await.expect("accepted");
    assert_eq!(client.recv().await["type"], "INITIAL_STATE_RECEIVE");
    client
        .send(json!({"type":"SUBSCRIBE","channels":["status:down","status:people"]}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "forbidden", "{error}");
    let subscribed = client.recv().await;
    assert_eq!(subscribed["channels"], json!(["status:people"]));
    assert_eq!(next_data(&mut client, "status:people").await["d"][1], true);
}

/// A client of `server` subscribed to `channel`.
async fn subscribed(server: &tributary::http::ServerHandle, channel: &str) -> Client {
    let (mut client, _) = Client::ready(server).await;
    client
        .send(json!({"type":"SUBSCRIBE","channels":[channel]}))
        .await;
    assert_eq!(client.recv().await["type"], "SUBSCRIBED");
    client
}

#[tokio::test]
async fn a_subscriber_leaving_does_not_stop_the_others() {
    let server = start_with(live_settings());
    let mut client = subscribed(&server, "status:people").await;
    next_data(&mut client, "status:people").await;
    metric_eventually(server.addr, "tributary_live_subscriptions", 1.0).await;
    drop(client);
    // Closing leaves every channel.
    metric_eventually(server.addr, "tributary_live_subscriptions", 0.0).await;
    // A second subscriber keeps receiving after the first left.
    let mut other = subscribed(&server, "status:people").await;
    let started = Instant::now();
    next_data(&mut other, "status:people").await;
    next_data(&mut other, "status:people").await;
    assert!(started.elapsed() < PATIENCE);
    // A delivery is counted just after its frame is queued, so the client
    // may read the frame first.
    metric_at_least(server.addr, "tributary_live_deliveries_total", 3.0).await;
    let text = http_get(server.addr, "/metrics").await.1;
    assert!(
        metric(&text, "tributary_live_publishes_total").unwrap_or(0.0) >= 4.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "tributary_live_dropped_subscribers_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_resubscribing_client_gets_every_value_it_missed_once() {
    let server = start_with(live_settings());
    let mut client = subscribed(&server, "status:people").await;
    let first = next_data(&mut client, "status:people").await;
    let offset = first["offset"].as_u64().expect("DATA carries its offset");
    let epoch = first["epoch"]
        .as_str()
        .expect("DATA carries its epoch")
        .to_owned();
    let second = next_data(&mut client, "status:people").await;
    assert_eq!(second["offset"].as_u64(), Some(offset + 1), "{second}");
    drop(client);

    // Away while a few more measures are taken.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(
            json!({"type":"SUBSCRIBE","channels":["status:people","latency:people"],
                     "since":{"status:people":{"offset": offset + 1, "epoch": epoch}}}),
        )
        .await;
    let subscribed = client.recv().await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    assert_eq!(
        subscribed["recovered"],
        json!({"status:people": true}),
        "only channels given a position say whether they recovered: {subscribed}"
    );
    // Every value after the position, in order, then on live: no gap, no repeat.
    let mut expected = offset + 2;
    while expected < offset + 6 {
        let data = next_data(&mut client, "status:people").await;
        assert_eq!(data["offset"].as_u64(), Some(expected), "{data}");
        assert_eq!(data["epoch"], epoch.as_str(), "{data}");
        expected += 1;
    }

    // A position the server no longer knows: the current value, and `false`.
    let (mut other, _) = Client::ready(&server).await;
    other
        .send(json!({"type":"SUBSCRIBE","channels":["status:people"],
                     "since":{"offset": 3, "epoch": "another"}}))
        .await;
    let subscribed = other.recv().await;
    assert_eq!(
        subscribed["recovered"],
        json!({"status:people": false}),
        "{subscribed}"
    );
    let current = next_data(&mut other, "status:people").await;
    assert_eq!(current["epoch"], epoch.as_str(), "{current}");

    // A malformed position is an ERROR naming `since`; nothing is subscribed.
    other
        .send(json!({"type":"SUBSCRIBE","channels":["latency:people"],"since":{"offset":"x"}}))
        .await;
    let error = next_non_data(&mut other, 1).await.remove(0);
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`since`"),
        "{error}"
    );
}
