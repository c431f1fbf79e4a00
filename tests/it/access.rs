//! Who may connect (tokens, origins, the connection cap) and what the server
//! reports about itself (`/metrics`).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use tributary::config::{Settings, TokenSettings};

const SECRET: &str = "s3cret-token-for-tests";
const LIMITED: &str = "another-token-people-only";

fn with_tokens() -> Settings {
    let mut settings = settings(vec![
        datasource("people", "people", json!({"count": 10})),
        datasource("slow", "slow", json!({"delay_ms": 1})),
    ]);
    settings.auth.tokens = BTreeMap::from([
        (
            "analyst".to_owned(),
            TokenSettings {
                token: SECRET.into(),
                datasources: None,
                publish: false,
            },
        ),
        (
            "intern".to_owned(),
            TokenSettings {
                token: LIMITED.into(),
                datasources: Some(vec!["people".into()]),
                publish: false,
            },
        ),
    ]);
    settings
}

fn ids(initial: &serde_json::Value) -> Vec<String> {
    initial["state"]["datasources"]
        .as_array()
        .expect("a datasource list")
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn with_tokens_configured_an_upgrade_without_a_valid_one_gets_403() {
    let server = start_with(with_tokens());
    let url = format!("ws://{}/ws", server.addr);
    assert_eq!(connect_with(&url, &[]).await.err(), Some(403));
    assert_eq!(
        connect_with(&url, &[("authorization", "Bearer wrong-token-000")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        connect_with(&format!("{url}?token=nope-nope-nope"), &[])
            .await
            .err(),
        Some(403)
    );
    // Refused before the upgrade: the body says why, in plain HTTP.
    let (status, body) = http_get(server.addr, "/ws").await;
    assert_eq!(status, 403);
    assert!(body.contains("API token"), "{body}");

    let metrics = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            r#"tributary_rejected_upgrades_total{reason="missing_token"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"tributary_rejected_upgrades_total{reason="bad_token"}"#
        ),
        Some(2.0)
    );
}

/// `PONG` stats name only the datasources the caller's token may use.
#[tokio::test]
async fn pong_stats_show_only_the_tokens_datasources() {
    let server = start_with(with_tokens());
    let url = format!("ws://{}/ws?token={LIMITED}", server.addr);
    let mut client = connect_with(&url, &[]).await.expect("accepted");
    assert_eq!(ids(&client.recv().await), ["people"]);
    client.send(json!({"type":"PING"})).await;
    let pong = client.recv().await;
    let datasources = pong["stats"]["datasources"].as_object().expect("stats");
    assert_eq!(datasources.keys().collect::<Vec<_>>(), ["people"], "{pong}");
}

/// Felix's clients send the token as-is in `Authorization`, with no scheme.
#[tokio::test]
async fn a_bare_token_in_the_authorization_header_opens_the_socket() {
    let server = start_with(with_tokens());
    let url = format!("ws://{}/ws", server.addr);
    let mut client = connect_with(&url, &[("authorization", SECRET)])
        .await
        .expect("accepted");
    assert_eq!(ids(&client.recv().await), ["people", "slow"]);
    // A wrong bare token, or another scheme, is refused like any wrong token.
    assert_eq!(
        connect_with(&url, &[("authorization", "not-the-token")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        connect_with(&url, &[("authorization", "Basic dXNlcjpwYXNz")])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn a_bearer_header_or_a_token_parameter_opens_the_socket() {
    let server = start_with(with_tokens());
    let url = format!("ws://{}/ws", server.addr);
    let mut by_header = connect_with(&url, &[("authorization", &format!("Bearer {SECRET}"))])
        .await
        .expect("accepted");
    assert_eq!(ids(&by_header.recv().await), ["people", "slow"]);
    let answer = by_header
        .items(&["people", "slow"], "*", 0, 1, "#123456")
        .await;
    assert!(
        answer.iter().all(|m| m["type"] == "ITEMS_RECEIVE"),
        "{answer:?}"
    );

    let mut by_query = connect_with(&format!("{url}?token={SECRET}"), &[])
        .await
        .expect("accepted");
    assert_eq!(by_query.recv().await["type"], "INITIAL_STATE_RECEIVE");
}

#[tokio::test]
async fn a_token_limited_to_some_datasources_sees_and_uses_only_those() {
    let server = start_with(with_tokens());
    let url = format!("ws://{}/ws?token={LIMITED}", server.addr);
    let mut client = connect_with(&url, &[]).await.expect("accepted");
    assert_eq!(ids(&client.recv().await), ["people"]);
    let answer = client
        .items(&["slow", "people"], "*", 0, 1, "#123456")
        .await;
    let refused = answer
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("an error for `slow`");
    assert_eq!(refused["error"]["code"], "unknown_datasource");
    assert_eq!(refused["error"]["datasource"], "slow");
    assert!(answer
        .iter()
        .any(|m| m["type"] == "ITEMS_RECEIVE" && m["items"]["server"] == "people"));
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["slow"]}))
        .await;
    assert_eq!(client.recv().await["error"]["code"], "unknown_datasource");
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused() {
    let mut settings = settings(vec![datasource("people", "people", json!({}))]);
    settings.auth.allowed_origins = vec!["https://analysts.example".into()];
    let server = start_with(settings);
    let url = format!("ws://{}/ws", server.addr);
    let own = format!("http://{}", server.addr);
    assert_eq!(
        connect_with(&url, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert!(
        connect_with(&url, &[("origin", &own)]).await.is_ok(),
        "the server's own origin"
    );
    assert!(
        connect_with(&url, &[("origin", "https://analysts.example")])
            .await
            .is_ok()
    );
    assert!(
        connect_with(&url, &[]).await.is_ok(),
        "non-browser clients send no origin"
    );
    let metrics = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            r#"tributary_rejected_upgrades_total{reason="forbidden_origin"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_until_one_closes() {
    let mut settings = settings(vec![datasource("people", "people", json!({}))]);
    settings.limits.max_connections = 2;
    let server = start_with(settings);
    let url = format!("ws://{}/ws", server.addr);
    let (first, _) = Client::ready(&server).await;
    let (_second, _) = Client::ready(&server).await;
    assert_eq!(connect_with(&url, &[]).await.err(), Some(503));
    drop(first);
    let mut third = None;
    for _ in 0..200 {
        if let Ok(client) = connect_with(&url, &[]).await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut third = third.expect("a connection once the first one closed");
    assert_eq!(third.recv().await["type"], "INITIAL_STATE_RECEIVE");
}

#[tokio::test]
async fn metrics_count_connections_requests_latency_and_output() {
    let server = start(vec![
        datasource("people", "people", json!({"count": 30})),
        datasource("down", "failing", json!({})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["people"],"query":"*","size":5,"request-id":1}))
        .await;
    client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["people","down"],"query":"*","size":5,"request-id":2}))
        .await;
    client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    client.send_text("{not json").await;
    assert_eq!(client.recv().await["type"], "ERROR");

    let text = http_get(server.addr, "/metrics").await.1;
    let value =
        |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("no {sample} in\n{text}"));
    assert_eq!(value("tributary_connections_open"), 1.0);
    assert_eq!(value("tributary_connections_total"), 1.0);
    assert_eq!(
        value(r#"tributary_requests_total{outcome="completed",type="ITEMS_REQUEST"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tributary_requests_total{outcome="failed",type="ITEMS_REQUEST"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tributary_requests_total{outcome="invalid_json",type="invalid"}"#),
        1.0
    );
    assert_eq!(
        value(
            r#"tributary_datasource_duration_seconds_count{call="items",datasource="people",outcome="ok"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            r#"tributary_datasource_duration_seconds_count{call="items",datasource="down",outcome="error"}"#
        ),
        1.0
    );
    // INITIAL_STATE, 2×(ITEMS_RECEIVE + COMPLETED), one datasource ERROR, the invalid-JSON ERROR.
    assert_eq!(value("tributary_messages_out_total"), 7.0);
    assert!(value("tributary_bytes_out_total") > 500.0);

    drop(client);
    metric_eventually(server.addr, "tributary_connections_open", 0.0).await;
}
