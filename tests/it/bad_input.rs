//! Every kind of bad input gets an ERROR, and the connection keeps working.

use crate::common;

use common::*;
use serde_json::{json, Value};

fn servers() -> tributary::http::ServerHandle {
    start(vec![
        datasource("people", "people", json!({"count": 20})),
        datasource("down", "failing", json!({})),
    ])
}

/// After an error the same connection still answers a good request.
async fn still_works(client: &mut Client) {
    let answer = client
        .items(&["people"], "group:g2", 0, 10, "#00ff00")
        .await;
    assert_eq!(items_of(&answer[0])["total"], 4);
}

async fn expect_error(client: &mut Client, frame: &str, code: &str, message_part: &str) -> Value {
    client.send_text(frame).await;
    let reply = client.recv().await;
    assert_eq!(reply["type"], "ERROR", "for {frame}: {reply}");
    assert_eq!(reply["error"]["code"], code, "for {frame}: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "for {frame}: `{message}` lacks `{message_part}`"
    );
    still_works(client).await;
    reply
}

#[tokio::test]
async fn malformed_json_is_an_error_not_a_disconnect() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    expect_error(
        &mut client,
        "{\"type\": \"ITEMS_REQUEST\", ",
        "invalid_json",
        "invalid JSON",
    )
    .await;
    expect_error(
        &mut client,
        "not json at all",
        "invalid_json",
        "invalid JSON",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_missing_types() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    expect_error(
        &mut client,
        r#"{"type":"SELECT_ALL"}"#,
        "unknown_type",
        "SELECT_ALL",
    )
    .await;
    expect_error(
        &mut client,
        r#"{"datasources":["people"]}"#,
        "invalid_request",
        "missing field `type`",
    )
    .await;
    expect_error(
        &mut client,
        r#"{"type":42}"#,
        "invalid_request",
        "`type` must be a string",
    )
    .await;
}

#[tokio::test]
async fn missing_and_wrongly_typed_fields_keep_query_and_color() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    let reply = expect_error(
        &mut client,
        r##"{"type":"ITEMS_REQUEST","query":"x","color":"#abcdef","from":0,"size":5}"##,
        "invalid_request",
        "missing field `datasources`",
    )
    .await;
    assert_eq!(reply["error"]["query"], "x");
    assert_eq!(reply["error"]["color"], "#abcdef");
    expect_error(
        &mut client,
        r##"{"type":"ITEMS_REQUEST","datasources":["people"],"color":"#abcdef"}"##,
        "invalid_request",
        "missing field `query`",
    )
    .await;
    expect_error(
        &mut client,
        r##"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","size":"ten"}"##,
        "invalid_request",
        "`size` must be a whole number of 0 or more (found a string)",
    )
    .await;
    expect_error(
        &mut client,
        r##"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","from":-1}"##,
        "invalid_request",
        "`from` must be a whole number of 0 or more (found a negative number)",
    )
    .await;
    expect_error(
        &mut client,
        r##"{"type":"FIELDS_REQUEST","datasources":"people"}"##,
        "invalid_request",
        "`datasources` must be a list of datasource ids (strings) (found a string)",
    )
    .await;
    expect_error(
        &mut client,
        r##"{"type":"ITEMS_REQUEST","datasource":["people"],"query":"x"}"##,
        "invalid_request",
        "missing field `datasources` (did you mean `datasources` instead of `datasource`?)",
    )
    .await;
    expect_error(
        &mut client,
        r##"{"type":"FIELDS_REQUEST","datasources":[]}"##,
        "invalid_request",
        "empty",
    )
    .await;
}

#[tokio::test]
async fn unknown_datasource_is_reported_and_the_others_still_answer() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    let answers = client
        .items(&["nope", "people"], "*", 0, 3, "#123456")
        .await;
    let error = answers
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("an error");
    assert_eq!(error["error"]["code"], "unknown_datasource");
    assert_eq!(error["error"]["datasource"], "nope");
    assert_eq!(error["error"]["query"], "*");
    assert_eq!(error["error"]["color"], "#123456");
    let items = answers
        .iter()
        .find(|m| m["type"] == "ITEMS_RECEIVE")
        .expect("items");
    assert_eq!(items["items"]["total"], 20);
    still_works(&mut client).await;
}

#[tokio::test]
async fn a_failing_datasource_is_an_error_for_it_alone() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    let answers = client
        .items(&["down", "people"], "*", 0, 3, "#654321")
        .await;
    let error = answers
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("an error");
    assert_eq!(error["error"]["code"], "datasource_failed");
    assert_eq!(error["error"]["datasource"], "down");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert!(answers.iter().any(|m| m["type"] == "ITEMS_RECEIVE"));

    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["down"]}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["datasource"], "down", "{error}");
    still_works(&mut client).await;
}

#[tokio::test]
async fn a_query_the_parser_rejects_names_the_problem() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    for (query, problem) in [
        ("age:[1 TO", "a range bound is missing at character 9"),
        ("a AND (b", "missing closing parenthesis at character 8"),
        ("\"open", "missing closing quote"),
        ("age:x^", "boost"),
    ] {
        let answer = client.items(&["people"], query, 0, 3, "#000").await;
        let error = &answer[0];
        assert_eq!(error["type"], "ERROR", "{query}: {error}");
        assert_eq!(error["error"]["code"], "bad_query");
        assert_eq!(error["error"]["query"], query);
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(problem), "{query}: `{message}`");
        still_works(&mut client).await;
    }
}

/// As in Elasticsearch, a field the datasource lacks or a value of the
/// wrong type for a field is no error: it matches nothing, so one query can
/// go to datasources with different fields.
#[tokio::test]
async fn a_missing_field_or_a_wrong_type_matches_nothing() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    for (query, total) in [
        ("nosuchfield:x", 0),
        ("age:abc", 0),
        ("nosuchfield:x OR group:g2", 4),
        ("-nosuchfield:x", 20),
        ("age:[a TO b]", 0),
    ] {
        let answer = client.items(&["people"], query, 0, 3, "#000").await;
        assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{query}: {}", answer[0]);
        assert_eq!(items_of(&answer[0])["total"], total, "{query}");
    }
    still_works(&mut client).await;
}

/// Fields the Socket API does not define are ignored: other clients send
/// more than tributary reads, and must keep working.
#[tokio::test]
async fn unknown_fields_are_ignored() {
    let server = servers();
    let (mut client, _) = Client::ready(&server).await;
    client
        .send_text(r##"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"group:g2","size":10,"color":"#123456","fields":["name"],"advancedQuery":{"x":1},"request-id":"r"}"##)
        .await;
    let answers = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert_eq!(answers[0]["type"], "ITEMS_RECEIVE", "{answers:?}");
    assert_eq!(items_of(&answers[0])["total"], 4);
    assert_eq!(items_of(&answers[0])["color"], "#123456");
    client
        .send_text(r#"{"type":"FIELDS_REQUEST","datasources":["people"],"sise":3}"#)
        .await;
    assert_eq!(client.recv().await["type"], "FIELDS_RECEIVE");
    client.send_text(r#"{"type":"PING","t":1,"extra":2}"#).await;
    let pong = client.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["t"].as_i64()),
        (Some("PONG"), Some(1))
    );
}
