//! Live queries over real sockets: a live `ITEMS_REQUEST` sends its page,
//! `REQUEST_COMPLETED`, `LIVE_STARTED`, then every newly published matching
//! record once, in order, as `ITEMS_RECEIVE` with `"append": true` and `seq`;
//! `UPDATE_REQUEST` replaces its query; `CANCEL_REQUEST` ends it; publishing
//! over HTTP is checked and all-or-nothing.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use tributary::config::TokenSettings;
use tributary::http::ServerHandle;

/// The demo datasets, publishing open (no tokens).
fn publishing() -> tributary::config::Settings {
    let mut settings = settings(tributary::config::demo_datasources());
    settings.publish.enabled = true;
    settings
}

fn tweet(id: &str, text: &str) -> Value {
    json!({"id": id, "created_at": "2026-11-23T10:00:00Z", "text": text,
           "user": {"screen_name": "live_tester", "followers_count": 3}})
}

fn ndjson(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

async fn publish(server: &ServerHandle, datasource: &str, body: &str) -> (u16, Value) {
    let path = format!("/api/datasources/{datasource}/records");
    let (status, body) = http_post(server.addr, &path, &[], body).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| json!({ "raw": body })),
    )
}

/// Starts a live request and reads up to `LIVE_STARTED`: returns the page's
/// messages (ITEMS_RECEIVE / ERROR / REQUEST_COMPLETED) and `LIVE_STARTED`.
async fn go_live(
    client: &mut Client,
    datasources: &[&str],
    query: &str,
    id: &str,
) -> (Vec<Value>, Value) {
    client
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":datasources,"query":query,
                     "color":"#0af","request-id":id,"live":true,"size":10}),
        )
        .await;
    let mut messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let started = messages.pop().expect("LIVE_STARTED");
    assert_eq!(started["request-id"], id, "{started}");
    (messages, started)
}

/// The next append (skipping nothing else: any other message fails the test).
async fn next_append(client: &mut Client) -> Value {
    let message = client.recv().await;
    assert_eq!(message["type"], "ITEMS_RECEIVE", "{message}");
    assert_eq!(message["items"]["append"], true, "{message}");
    message
}

#[tokio::test]
async fn a_live_query_gets_its_page_then_each_new_match_once_in_order() {
    let server = start_with(publishing());
    let (mut alice, _) = Client::ready(&server).await;
    let (mut bob, _) = Client::ready(&server).await;
    let (page, started) = go_live(&mut alice, &["tweets"], "zeppelin", "a1").await;
    // The page as usual (nothing matches yet), then REQUEST_COMPLETED.
    assert_eq!(page[0]["type"], "ITEMS_RECEIVE", "{page:?}");
    assert_eq!(page[0]["items"]["total"], 0);
    assert!(page[0]["items"].get("append").is_none(), "{}", page[0]);
    assert_eq!(page.last().unwrap()["type"], "REQUEST_COMPLETED");
    assert_eq!(started["datasources"], json!({"tweets": {"mode": "push"}}));
    go_live(&mut bob, &["tweets"], "zeppelin", 7.to_string().as_str()).await;

    // Two subscribers of one query: one distinct live query.
    metric_eventually(server.addr, "tributary_live_queries", 2.0).await;
    metric_eventually(server.addr, "tributary_live_query_groups", 1.0).await;

    let (status, reply) = publish(
        &server,
        "tweets",
        &ndjson(&[
            tweet("z1", "a zeppelin over the harbour"),
            tweet("n1", "nothing to see"),
            tweet("z2", "ZEPPELIN again"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["published"], 3);

    for (client, id) in [(&mut alice, json!("a1")), (&mut bob, json!("7"))] {
        let append = next_append(client).await;
        assert_eq!(append["request-id"], id);
        assert_eq!(append["items"]["seq"], 1, "{append}");
        assert_eq!(append["items"]["query"], "zeppelin");
        assert_eq!(append["items"]["color"], "#0af");
        assert_eq!(append["items"]["server"], "tweets");
        assert_eq!(append["items"]["from"], 0);
        assert_eq!(append["items"]["total"], 2);
        assert_eq!(ids(&append), ["z1", "z2"]);
        let text = append["items"]["results"][0]["fields"]["text"].clone();
        assert_eq!(text, "a zeppelin over the harbour");
    }

    // The next batch continues the sequence; nothing is sent twice.
    publish(
        &server,
        "tweets",
        &tweet("z3", "zeppelin three").to_string(),
    )
    .await;
    let append = next_append(&mut alice).await;
    assert_eq!(append["items"]["seq"], 2);
    assert_eq!(append["items"]["from"], 2);
    assert_eq!(append["items"]["total"], 3);
    assert_eq!(ids(&append), ["z3"]);
    assert_eq!(ids(&next_append(&mut bob).await), ["z3"]);

    // Published records are searchable by the next query.
    let (mut carol, _) = Client::ready(&server).await;
    let answers = carol.items(&["tweets"], "zeppelin", 0, 10, "#000").await;
    let mut found = ids(&answers[0]);
    found.sort();
    assert_eq!(found, ["z1", "z2", "z3"]);

    // A second live request joins at the current cursor: its page holds the
    // three, and it receives only what comes after.
    let (page, _) = go_live(&mut carol, &["tweets"], "zeppelin", "c").await;
    assert_eq!(page[0]["items"]["total"], 3);
    publish(&server, "tweets", &tweet("z4", "zeppelin four").to_string()).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        let append = next_append(client).await;
        assert_eq!(ids(&append), ["z4"]);
    }
    let text = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(&text, "tributary_live_query_groups"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "tributary_published_records_total{datasource=\"tweets\"}"
        ) == Some(5.0)
    );
}

#[tokio::test]
async fn many_records_at_once_arrive_in_order_in_batches() {
    let mut settings = publishing();
    settings.results.batch_size = 100;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    go_live(&mut client, &["emails", "tweets"], "blimp", "b").await;
    let records: Vec<Value> = (0..250)
        .map(|i| tweet(&format!("b{i:03}"), &format!("blimp number {i}")))
        .collect();
    let (status, reply) =
        publish(&server, "tweets", &serde_json::to_string(&records).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let mut seen = Vec::new();
    let mut seqs = Vec::new();
    while seen.len() < 250 {
        let append = next_append(&mut client).await;
        seqs.push(append["items"]["seq"].as_u64().unwrap());
        assert_eq!(append["items"]["from"], seen.len());
        seen.extend(ids(&append));
    }
    assert_eq!(seqs, [1, 2, 3]);
    let expected: Vec<String> = (0..250).map(|i| format!("b{i:03}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn cancel_ends_a_live_query_and_updates_replace_it() {
    let server = start_with(publishing());
    let (mut client, _) = Client::ready(&server).await;
    go_live(&mut client, &["tweets"], "airship", "u").await;

    // Bad updates are refused and the old query stays live.
    client
        .send(json!({"type":"UPDATE_REQUEST","request-id":"u","query":"text:(airship"}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["type"], "ERROR", "{error}");
    assert_eq!(error["error"]["code"], "bad_query");
    client
        .send(json!({"type":"UPDATE_REQUEST","request-id":"u","query":"x","datasources":[]}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    client
        .send(json!({"type":"UPDATE_REQUEST","request-id":"nope","query":"x"}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "unknown_request", "{error}");
    client
        .send(json!({"type":"UPDATE_REQUEST","query":"x"}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    publish(&server, "tweets", &tweet("a1", "an airship").to_string()).await;
    assert_eq!(ids(&next_append(&mut client).await), ["a1"]);

    // A good update: the new page, REQUEST_COMPLETED, LIVE_STARTED, then
    // appends for the new query only; the sequence goes on.
    client
        .send(json!({"type":"UPDATE_REQUEST","request-id":"u","query":"balloon OR airship","color":"#f00"}))
        .await;
    let messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    assert_eq!(messages[0]["type"], "ITEMS_RECEIVE", "{messages:?}");
    assert_eq!(messages[0]["items"]["query"], "balloon OR airship");
    assert_eq!(messages[0]["items"]["color"], "#f00");
    assert_eq!(ids(&messages[0]), ["a1"]);
    assert_eq!(messages[1]["type"], "REQUEST_COMPLETED");
    publish(
        &server,
        "tweets",
        &ndjson(&[tweet("b1", "a balloon"), tweet("z1", "zeppelin")]),
    )
    .await;
    let append = next_append(&mut client).await;
    assert_eq!(ids(&append), ["b1"]);
    assert_eq!(append["items"]["seq"], 2);
    assert_eq!(append["items"]["query"], "balloon OR airship");

    // Cancel: REQUEST_CANCELED, then nothing more for it.
    client
        .send(json!({"type":"CANCEL_REQUEST","request-id":"u"}))
        .await;
    let canceled = client.recv().await;
    assert_eq!(canceled["type"], "REQUEST_CANCELED", "{canceled}");
    metric_eventually(server.addr, "tributary_live_queries", 0.0).await;
    publish(&server, "tweets", &tweet("b2", "balloon two").to_string()).await;
    client.send(json!({"type":"PING","t":1})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "PONG", "nothing but the PONG: {pong}");
    // Canceling it again, or updating it, names an unknown request.
    client
        .send(json!({"type":"UPDATE_REQUEST","request-id":"u","query":"x"}))
        .await;
    assert_eq!(client.recv().await["error"]["code"], "unknown_request");
}

#[tokio::test]
async fn bad_live_requests_are_refused_with_nothing_lost() {
    let mut settings = publishing();
    settings
        .datasources
        .push(datasource("slow", "slow", json!({"delay_ms": 0})));
    settings.limits.max_live_queries = 2;
    let server = start_with_registry(settings, registry());
    let (mut client, _) = Client::ready(&server).await;

    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x","live":true}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("request-id"));
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x","live":"yes","request-id":1}))
        .await;
    let error = client.recv().await;
    assert_eq!(
        error["error"]["message"],
        "ITEMS_REQUEST: `live` must be true or false (found a string)"
    );

    // A datasource that cannot follow says so; the others go live.
    let (page, started) = go_live(&mut client, &["slow", "tweets"], "dirigible", "m").await;
    let unsupported: Vec<&Value> = page.iter().filter(|m| m["type"] == "ERROR").collect();
    assert_eq!(unsupported.len(), 1, "{page:?}");
    assert_eq!(unsupported[0]["error"]["code"], "live_unsupported");
    assert_eq!(unsupported[0]["error"]["datasource"], "slow");
    assert_eq!(started["datasources"], json!({"tweets": {"mode": "push"}}));

    // The same id twice, and more live requests than allowed.
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x","live":true,"request-id":"m"}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert_eq!(
        messages[0]["error"]["code"], "invalid_request",
        "{messages:?}"
    );
    go_live(&mut client, &["tweets"], "x", "second").await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x","live":true,"request-id":"third"}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert_eq!(
        messages[0]["error"]["code"], "too_many_requests",
        "{messages:?}"
    );

    // The first live request still works.
    publish(&server, "tweets", &tweet("d1", "a dirigible").to_string()).await;
    assert_eq!(ids(&next_append(&mut client).await), ["d1"]);
}

#[tokio::test]
async fn publishing_is_checked_and_all_or_nothing() {
    // Off by default without tokens.
    let closed = start(tributary::config::demo_datasources());
    let (status, reply) = publish(&closed, "tweets", "{}").await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains("[publish] enabled"));

    let server = start_with(publishing());
    let before = total(&server).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("tweets", "", 400, "no records"),
        (
            "tweets",
            "{\"id\":\"x\"}\n{\"id\":",
            400,
            "line 2: invalid JSON",
        ),
        (
            "tweets",
            "{\"id\":\"x\"}\n[1]\n",
            400,
            "line 2: not a JSON object",
        ),
        (
            "tweets",
            "[{\"id\":\"x\"}, 5]",
            400,
            "element 1: not a JSON object",
        ),
        (
            "tweets",
            "{\"id\":\"x\",\"text\":\"ok\"}\n{\"id\":\"y\",\"retweet_count\":\"many\"}\n",
            400,
            "line 2: field `retweet_count`: \"many\" is not a valid long",
        ),
        (
            "tweets",
            "{\"id\":\"x\",\"colour\":\"blue\"}",
            400,
            "line 1: field `colour` is not in the mapping, which is strict",
        ),
        ("nosuch", "{}", 404, "unknown datasource `nosuch`"),
    ];
    for (datasource, body, status, message) in cases {
        let (got, reply) = publish(&server, datasource, body).await;
        assert_eq!(got, *status, "{body}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{body}: {error}");
    }
    // Nothing of a refused batch was added.
    assert_eq!(total(&server).await, before);

    // A datasource that does not take records says so.
    let mut settings = publishing();
    settings
        .datasources
        .push(datasource("slow", "slow", json!({"delay_ms": 0})));
    let server = start_with_registry(settings, registry());
    let (status, reply) = publish(&server, "slow", "{}").await;
    assert_eq!(status, 409, "{reply}");
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains("does not take published records"));

    // A field an inferred (dynamic) mapping lacks is kept, not searchable,
    // and named; a body over the limit is refused whole.
    let mut dynamic = common::settings(vec![datasource("people", "people", json!({"count": 5}))]);
    dynamic.publish.enabled = true;
    dynamic.publish.max_body_bytes = 1000;
    let server = start_with_registry(dynamic, registry());
    let (status, reply) = publish(
        &server,
        "people",
        r#"{"id":"new","name":"person new","nickname":"newbie"}"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["unindexed_fields"], json!(["nickname"]));
    let (mut client, _) = Client::ready(&server).await;
    let answers = client.items(&["people"], "name:new", 0, 10, "#000").await;
    assert_eq!(ids(&answers[0]), ["new"]);
    assert_eq!(
        answers[0]["items"]["results"][0]["fields"]["nickname"],
        "newbie"
    );
    let (status, _) = publish(
        &server,
        "people",
        &format!("{{\"id\":\"{}\"}}", "x".repeat(2000)),
    )
    .await;
    assert_eq!(status, 413);

    // A datasource holds at most `max_records`, published ones included.
    let mut capped = common::settings(vec![datasource(
        "tweets",
        "fixtures",
        json!({"embedded": "tweets", "max_records": 3001}),
    )]);
    capped.publish.enabled = true;
    let server = start_with(capped);
    let (status, reply) = publish(&server, "tweets", &tweet("c1", "one more").to_string()).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = publish(&server, "tweets", &tweet("c2", "too many").to_string()).await;
    assert_eq!(status, 507, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("max_records"),
        "{reply}"
    );
    assert_eq!(total(&server).await, 3001);

    // Many publishers at once near the limit: each batch stored whole and
    // acknowledged, or refused before; never acknowledged and dropped.
    let mut capped = common::settings(vec![datasource(
        "tweets",
        "fixtures",
        json!({"embedded": "tweets", "max_records": 3010}),
    )]);
    capped.publish.enabled = true;
    let server = Arc::new(start_with(capped));
    let publishers = (0..12).map(|p| {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let body: String = (0..4)
                .map(|i| tweet(&format!("p{p}-{i}"), "at the limit").to_string() + "\n")
                .collect();
            publish(&server, "tweets", &body).await
        })
    });
    let mut accepted = 0;
    for publisher in publishers {
        let (status, reply) = publisher.await.expect("a publisher");
        match status {
            200 => {
                assert_eq!(reply["searchable"], true, "{reply}");
                accepted += 1;
            }
            507 => {}
            other => panic!("{other}: {reply}"),
        }
    }
    assert_eq!(accepted, 2, "two batches of 4 fit in 10 places");
    assert_eq!(total(&server).await, 3000 + 4 * accepted);
}

#[tokio::test]
async fn with_tokens_only_a_publishing_token_may_publish() {
    let mut settings = settings(tributary::config::demo_datasources());
    let token = |token: &str, publish: bool, datasources: Option<Vec<String>>| TokenSettings {
        token: token.into(),
        datasources,
        publish,
    };
    settings.auth.tokens = BTreeMap::from([
        ("reader".to_owned(), token("read-secret", false, None)),
        (
            "feed".to_owned(),
            token("feed-secret", true, Some(vec!["emails".into()])),
        ),
    ]);
    // `[publish] enabled` does not open a server with tokens to everyone.
    settings.publish.enabled = true;
    let server = start_with(settings);
    let path = "/api/datasources/emails/records";
    let body = r#"{"id":"m1","subject":"hello"}"#;
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let addr = server.addr;
        async move { http_post(addr, path, &headers, body).await }
    };
    assert_eq!(post(vec![]).await.0, 403);
    assert_eq!(post(vec![("Authorization", "Bearer wrong")]).await.0, 403);
    let (status, reply) = post(vec![("Authorization", "Bearer read-secret")]).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("publish = true"), "{reply}");
    let (status, reply) = post(vec![("Authorization", "Bearer feed-secret")]).await;
    assert_eq!(status, 200, "{reply}");
    // Felix's style: the bare token.
    assert_eq!(post(vec![("Authorization", "feed-secret")]).await.0, 200);
    // Not a datasource this token may use: as if it did not exist.
    let (status, _) = http_post(
        server.addr,
        "/api/datasources/tweets/records",
        &[("Authorization", "Bearer feed-secret")],
        body,
    )
    .await;
    assert_eq!(status, 404);
    // A browser page from another origin cannot publish.
    let (status, _) = http_post(
        server.addr,
        path,
        &[
            ("Authorization", "Bearer feed-secret"),
            ("Origin", "http://evil.example"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 403);
}

async fn total(server: &ServerHandle) -> u64 {
    let (mut client, _) = Client::ready(server).await;
    let answers = client.items(&["tweets"], "*", 0, 0, "#000").await;
    answers[0]["items"]["total"].as_u64().expect("a total")
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_closed_and_nobody_waits_for_it() {
    let mut settings = publishing();
    settings.limits.outbound_buffer_bytes = 64 * 1024;
    let server = start_with(settings);
    let (mut reader, _) = Client::ready(&server).await;
    let (mut sleeper, _) = Client::ready(&server).await;
    go_live(&mut reader, &["tweets"], "flood", "r").await;
    go_live(&mut sleeper, &["tweets"], "flood", "s").await;
    // 12 MB of matching records: more than the sleeper's socket buffers and
    // outbox hold together.
    // One long term per record: cheap to index, heavy to send.
    let padding = "x".repeat(4000);
    let mut received = 0;
    for batch in 0..12 {
        let records: Vec<Value> = (0..250)
            .map(|i| {
                let mut record = tweet(&format!("f{batch}-{i}"), "flood");
                record["source"] = json!(padding);
                record
            })
            .collect();
        let (status, reply) = publish(&server, "tweets", &ndjson(&records)).await;
        assert_eq!(status, 200, "{reply}");
        // The reader keeps up, batch after batch.
        while received < (batch + 1) * 250 {
            let append = next_append(&mut reader).await;
            received += append["items"]["results"].as_array().unwrap().len();
        }
    }
    assert_eq!(received, 3000);
    metric_eventually(server.addr, "tributary_live_dropped_subscribers_total", 1.0).await;
    // What was already in flight arrives, then the close.
    assert_eq!(sleeper.closed().await, Closed::Code(4420));
    metric_eventually(server.addr, "tributary_live_queries", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_lose_nothing_and_repeat_nothing() {
    let server = start_with(publishing());
    let (mut client, _) = Client::ready(&server).await;
    go_live(&mut client, &["tweets"], "gondola", "g").await;
    let publishers = (0..8).map(|p| {
        let addr = server.addr;
        tokio::spawn(async move {
            for i in 0..20 {
                let body = tweet(&format!("g{p}-{i}"), "a gondola").to_string();
                let (status, reply) =
                    http_post(addr, "/api/datasources/tweets/records", &[], &body).await;
                assert_eq!(status, 200, "{reply}");
            }
        })
    });
    for publisher in publishers.collect::<Vec<_>>() {
        publisher.await.expect("publisher");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut seqs = Vec::new();
    while seen.len() < 160 {
        let append = next_append(&mut client).await;
        seqs.push(append["items"]["seq"].as_u64().unwrap());
        for id in ids(&append) {
            assert!(seen.insert(id.clone()), "{id} arrived twice");
        }
    }
    // Gap-free and in order.
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let (mut other, _) = Client::ready(&server).await;
    let answers = other.items(&["tweets"], "gondola", 0, 0, "#000").await;
    assert_eq!(answers[0]["items"]["total"], 160);
}

/// The `offset` and `epoch` an append or `LIVE_STARTED` entry carries.
fn position(of: &Value) -> Option<Value> {
    Some(json!({"offset": of.get("offset")?.as_u64()?, "epoch": of.get("epoch")?.as_str()?}))
}

#[tokio::test]
async fn a_client_that_reconnects_resumes_with_exactly_what_it_missed() {
    let server = start_with(publishing());
    let (mut client, _) = Client::ready(&server).await;
    let (_, _) = go_live(&mut client, &["tweets"], "text:albatross", "r").await;
    let (status, answer) = publish(
        &server,
        "tweets",
        &ndjson(&[tweet("r1", "an albatross"), tweet("x1", "a gull")]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["searchable"], true, "{answer}");
    let first = next_append(&mut client).await;
    assert_eq!(ids(&first), ["r1"]);
    let held =
        position(&first["items"]).expect("an append of published records carries its position");
    assert_eq!(held["offset"], answer["offset"], "{first} {answer}");
    assert_eq!(held["epoch"], answer["epoch"], "{first} {answer}");
    drop(client);

    // Published while nobody listens: two batches, one matching record each.
    for (id, text) in [
        ("r2", "albatross again"),
        ("x2", "no bird"),
        ("r3", "the last albatross"),
    ] {
        let (status, answer) = publish(&server, "tweets", &tweet(id, text).to_string()).await;
        assert_eq!(status, 200, "{answer}");
    }

    // Resumed: no page, LIVE_STARTED says recovered, then what was missed, once.
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"text:albatross",
                     "request-id":"r","live":true,"resume":{"tweets": held}}),
        )
        .await;
    let messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    assert!(
        messages.iter().all(|m| m["type"] != "ITEMS_RECEIVE"),
        "a recovered datasource sends no page: {messages:?}"
    );
    let started = messages.last().expect("LIVE_STARTED");
    assert_eq!(
        started["datasources"]["tweets"]["recovered"], true,
        "{started}"
    );
    let mut missed = Vec::new();
    let mut last = None;
    while missed.len() < 2 {
        let append = next_append(&mut client).await;
        missed.extend(ids(&append));
        last = position(&append["items"]).or(last);
    }
    assert_eq!(missed, ["r2", "r3"]);
    let last = last.expect("the last append carries a position");
    assert_eq!(
        last["offset"],
        held["offset"].as_u64().unwrap() + 3,
        "{last}"
    );

    // Then live, as before.
    publish(
        &server,
        "tweets",
        &tweet("r4", "albatross live").to_string(),
    )
    .await;
    assert_eq!(ids(&next_append(&mut client).await), ["r4"]);

    // A position of another epoch (the history it refers to is gone) is
    // not recovered: the page is searched again, and the client is told.
    let (mut other, _) = Client::ready(&server).await;
    other
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"text:albatross",
                     "request-id":"o","live":true,"resume":{"tweets": {"offset": 2, "epoch": "gone"}}}))
        .await;
    let messages = other.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let page: Vec<String> = messages
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE")
        .flat_map(ids)
        .collect();
    assert_eq!(page.len(), 4, "the page again: {messages:?}");
    let started = messages.last().expect("LIVE_STARTED");
    assert_eq!(
        started["datasources"]["tweets"]["recovered"], false,
        "{started}"
    );
    assert_eq!(
        position(&started["datasources"]["tweets"]),
        position(&last).map(|mut p| {
            p["offset"] = json!(p["offset"].as_u64().unwrap() + 1);
            p
        }),
        "LIVE_STARTED says where the stream stands: {started}"
    );

    // Bad resumes are refused, naming what is wrong.
    other
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x",
                     "request-id":"b1","resume":{"tweets": {"offset": 1, "epoch": "e"}}}),
        )
        .await;
    let error = other.recv().await;
    assert_eq!(other.recv().await["type"], "REQUEST_COMPLETED");
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("live"),
        "{error}"
    );
    other
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":"x","live":true,
                     "request-id":"b2","resume":{"emails": {"offset": 1, "epoch": "e"}}}),
        )
        .await;
    let error = other.recv().await;
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("emails"),
        "{error}"
    );
}

/// Pages of recent searches are kept (the fixtures page cache): asking the
/// same query again after records were published must still see them.
#[tokio::test]
async fn a_query_asked_again_sees_the_records_published_since() {
    let server = start_with(publishing());
    let (mut client, _) = Client::ready(&server).await;
    const QUERY: &str = "text:albatross OR hashtags:bitcoin";
    let mut answers = Vec::new();
    for _ in 0..2 {
        let answer = client.items(&["tweets"], QUERY, 0, 10, "#0af").await;
        answers.push(items_of(&answer[0]).clone());
    }
    assert_eq!(answers[0], answers[1], "the same question, the same answer");
    let before = answers[0]["total"].as_u64().expect("a total");
    assert!(before > 0, "the demo tweets hold #bitcoin: {}", answers[0]);

    let (status, body) = publish(
        &server,
        "tweets",
        &ndjson(&[
            tweet("cache-1", "an albatross"),
            tweet("cache-2", "albatross again"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The very page asked before: its kept answer is out of date now.
    let again = client.items(&["tweets"], QUERY, 0, 10, "#0af").await;
    assert_eq!(items_of(&again[0])["total"], before + 2, "{}", again[0]);
    let after = client.items(&["tweets"], QUERY, 0, 1000, "#0af").await;
    let found = ids(&after[0]);
    assert!(
        found.contains(&"cache-1".to_owned()) && found.contains(&"cache-2".to_owned()),
        "{found:?}"
    );
    // And only the new records: the pages of the query alone.
    let only_new = client
        .items(&["tweets"], "text:albatross", 0, 10, "#0af")
        .await;
    let mut new_ids = ids(&only_new[0]);
    new_ids.sort();
    assert_eq!(new_ids, ["cache-1", "cache-2"]);
    // Pages of one query are told apart by `from` and `size`.
    let first = client
        .items(&["tweets"], "text:albatross", 0, 1, "#0af")
        .await;
    let second = client
        .items(&["tweets"], "text:albatross", 1, 1, "#0af")
        .await;
    let (first, second) = (ids(&first[0]), ids(&second[0]));
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first, second);
}

/// Published records are matched in memory and folded into the index a
/// second later: searches, pages, expansions and replacements see them at
/// once after the 200, and the same once they are folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_are_searched_expanded_and_replace_at_once_and_alike_once_folded() {
    let server = start_with(publishing());
    let (mut client, _) = Client::ready(&server).await;
    const OLD_TEXT: &str = "\"great turnout at the meetup on opendata\"";
    let total_of = |answer: &[Value]| items_of(&answer[0])["total"].as_u64().expect("a total");
    let old_before = total_of(&client.items(&["tweets"], OLD_TEXT, 0, 10, "#0af").await);
    assert!(old_before > 0);
    let bitcoin_before = total_of(&client.items(&["tweets"], "bitcoin", 0, 10, "#0af").await);

    let mut records: Vec<Value> = (0..3)
        .map(|n| {
            json!({"id": format!("fold-{n}"), "created_at": "2026-11-23T10:00:00Z",
                   "text": format!("percolated bitcoin record {n}"), "hashtags": ["percolated", "bitcoin"],
                   "user": {"screen_name": "folder", "followers_count": 3}})
        })
        .collect();
    // Under the id of a demo tweet that says the words above: it replaces it.
    records.push(
        json!({"id": "1700000000000000000", "created_at": "2026-11-23T10:00:00Z",
                        "text": "replaced by a published record", "hashtags": ["percolated"],
                        "user": {"screen_name": "folder", "followers_count": 3}}),
    );
    let (status, body) = publish(&server, "tweets", &ndjson(&records)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced"], 1, "{body}");

    let expand_percolated = json!({"type": "EXPAND_REQUEST", "request-id": "x",
        "datasources": ["tweets"], "values": [{"field": "hashtags", "value": "percolated"}],
        "fields": ["user.screen_name"], "size": 5});
    let mut seen = Vec::new();
    for moment in ["at once", "once folded"] {
        let percolated = client
            .items(&["tweets"], "hashtags:percolated", 0, 10, "#0af")
            .await;
        let mut found = ids(&percolated[0]);
        found.sort();
        assert_eq!(
            found,
            ["1700000000000000000", "fold-0", "fold-1", "fold-2"],
            "{moment}"
        );
        // The replaced record left every answer; the new ones joined the totals.
        let old = total_of(&client.items(&["tweets"], OLD_TEXT, 0, 10, "#0af").await);
        assert_eq!(old, old_before - 1, "{moment}");
        // (The replaced demo tweet said #bitcoin; its replacement does not.)
        let bitcoin = client.items(&["tweets"], "bitcoin", 0, 1000, "#0af").await;
        assert_eq!(total_of(&bitcoin), bitcoin_before + 2, "{moment}");
        // Pages across the whole answer hold each record once.
        let mut paged = Vec::new();
        for from in (0..bitcoin_before + 2).step_by(7) {
            paged.extend(ids(&client
                .items(&["tweets"], "bitcoin", from, 7, "#0af")
                .await[0]));
        }
        let mut unique = paged.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len() as u64, bitcoin_before + 2, "{moment}");
        assert_eq!(paged.len(), unique.len(), "{moment}");
        // Expansions count them.
        client.send(expand_percolated.clone()).await;
        let messages = client
            .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
            .await;
        let expansion = messages
            .iter()
            .find(|m| m["type"] == "EXPAND_RECEIVE")
            .unwrap_or_else(|| panic!("{moment}: {messages:?}"));
        let vertices: Vec<(Value, Value, Value)> = expansion["vertices"]
            .as_array()
            .unwrap_or_else(|| panic!("{moment}: {expansion}"))
            .iter()
            .map(|v| {
                (
                    v["field"].clone(),
                    v["value"].clone(),
                    v["doc_count"].clone(),
                )
            })
            .collect();
        assert_eq!(
            vertices,
            [(json!("user.screen_name"), json!("folder"), json!(4))],
            "{moment}: {expansion}"
        );
        seen.push(found);
        // Folding happens a second after records come.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_query_too_costly_to_match_is_stopped_and_others_go_on() {
    // No time at all to expand patterns: a live query with one is stopped
    // at its first step; a plain term expands nothing.
    let mut settings = publishing();
    settings.datasources.retain(|d| d.id == "tweets");
    settings.datasources[0]
        .options
        .insert("live_match_budget".into(), json!("0ms"));
    let server = start_with(settings);
    let (mut costly, _) = Client::ready(&server).await;
    let (mut plain, _) = Client::ready(&server).await;
    go_live(&mut costly, &["tweets"], "/zeppeli.*/", "c1").await;
    go_live(&mut plain, &["tweets"], "zeppelin", "p1").await;
    let (status, reply) = publish(&server, "tweets", &ndjson(&[tweet("z1", "a zeppelin")])).await;
    assert_eq!(status, 200, "{reply}");
    let error = costly.recv().await;
    assert_eq!(error["type"], "ERROR", "{error}");
    assert_eq!(error["error"]["code"], "bad_query", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("live_match_budget"), "{message}");
    assert_eq!(ids(&next_append(&mut plain).await), ["z1"]);
    // It is followed no more: the next record reaches the plain query only.
    publish(
        &server,
        "tweets",
        &ndjson(&[tweet("z2", "another zeppelin")]),
    )
    .await;
    assert_eq!(ids(&next_append(&mut plain).await), ["z2"]);
    costly.send(json!({"type": "PING"})).await;
    assert_eq!(costly.recv().await["type"], "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_live_queries_do_not_hold_up_other_clients_new_records() {
    let mut settings = publishing();
    settings.limits.max_messages_per_second = 1000;
    let server = start_with(settings);
    let (mut light, _) = Client::ready(&server).await;
    go_live(&mut light, &["tweets"], "zeppelin", "light").await;
    // Sixteen live queries of thirty broad patterns each: refused at the
    // start or stopped at their first match, each naming the limit.
    let (mut attacker, _) = Client::ready(&server).await;
    let costly = "/[a-z]{1,255}/ ".repeat(30);
    for n in 0..16 {
        attacker
            .send(
                json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": costly,
                         "request-id": n, "live": true, "size": 10}),
            )
            .await;
    }
    // What the attacker is told, read as it comes.
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let attack = tokio::spawn(async move {
        while let Event::Json(message) = attacker.next_event().await {
            let _ = told_tx.send(message);
        }
    });
    let mut latencies = Vec::new();
    for n in 0..10 {
        let id = format!("zl{n}");
        let started = std::time::Instant::now();
        let (status, reply) =
            publish(&server, "tweets", &ndjson(&[tweet(&id, "a zeppelin")])).await;
        assert!(status == 200 || status == 202, "{reply}");
        let append = next_append(&mut light).await;
        assert_eq!(ids(&append), [id]);
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // One connection's sixteen live queries may each take the datasource's
    // `live_match_budget` (100 ms) per new record: 1.6 s, and a margin.
    assert_slowest_under("light live delivery under attack", latencies, 4000.0);
    attack.abort();
    // Every error the attacker got names the limit that stopped it.
    let mut errors = 0;
    while let Ok(message) = told.try_recv() {
        let error = match message["type"].as_str() {
            Some("ERROR") => message["error"]["message"].clone(),
            Some("REQUEST_COMPLETED") => message["datasources"]["tweets"]["error"].clone(),
            _ => Value::Null,
        };
        if let Some(error) = error.as_str() {
            errors += 1;
            assert!(
                ["max_expanded_terms", "live_match_budget", "search_budget"]
                    .iter()
                    .any(|limit| error.contains(limit)),
                "{error}"
            );
        }
    }
    eprintln!("the attacker was stopped {errors} times");
}
