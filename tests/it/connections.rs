//! Connection behaviour beyond the seed API: request ids, completion,
//! batches, cancellation, timeouts, limits, close codes, heartbeats, shutdown.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn people_source() -> tributary::datasources::DatasourceSettings {
    datasource("people", "people", json!({"count": 1234}))
}

#[tokio::test]
async fn request_ids_are_echoed_and_completion_is_reported() {
    let server = start(vec![
        people_source(),
        datasource("down", "failing", json!({})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["people","down"],"query":"group:g3","size":5,"color":"#abc","request-id":"q-1"}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert!(
        messages.iter().all(|m| m["request-id"] == "q-1"),
        "{messages:?}"
    );
    let done = messages.last().unwrap();
    assert_eq!(done["datasources"]["people"]["total"], 247);
    assert_eq!(done["datasources"]["people"]["error"], Value::Null);
    assert!(done["datasources"]["people"]["took_ms"].is_u64());
    assert!(done["datasources"]["down"]["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(
        messages
            .iter()
            .filter(|m| m["type"] == "ITEMS_RECEIVE")
            .count(),
        1
    );
    assert_eq!(messages.iter().filter(|m| m["type"] == "ERROR").count(), 1);

    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["people"],"request-id":7}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert_eq!(messages[0]["type"], "FIELDS_RECEIVE");
    assert!(messages.iter().all(|m| m["request-id"] == 7));
}

#[tokio::test]
async fn large_pages_stream_in_batches_that_merge_into_the_page() {
    let mut settings = settings(vec![people_source()]);
    settings.results.batch_size = 100;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["people"],"query":"*","from":10,"size":1000,"color":"#f00","request-id":"big"}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    let batches: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE")
        .collect();
    assert_eq!(batches.len(), 10);
    let mut expected_from = 10;
    let mut all_ids = Vec::new();
    for batch in &batches {
        let items = items_of(batch);
        assert_eq!(items["total"], 1234);
        assert_eq!(items["color"], "#f00");
        assert_eq!(items["from"], expected_from);
        expected_from += items["results"].as_array().unwrap().len() as u64;
        all_ids.extend(ids(batch));
    }
    assert_eq!(all_ids.len(), 1000);
    all_ids.sort();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 1000);
}

#[tokio::test]
async fn cancel_stops_the_datasource_calls() {
    let running = Arc::new(AtomicUsize::new(0));
    let server = start_with_registry(
        settings(vec![
            datasource("stuck", "hanging", json!({})),
            people_source(),
        ]),
        registry_with_hanging(&running),
    );
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["stuck","people"],"query":"*","size":1,"request-id":"r"}))
        .await;
    let first = client.recv().await;
    assert_eq!(items_of(&first)["server"], "people");
    eventually("the hanging call starts", || {
        running.load(Ordering::SeqCst) == 1
    })
    .await;

    client
        .send(json!({"type":"CANCEL_REQUEST","request-id":"r"}))
        .await;
    let canceled = client.recv().await;
    assert_eq!(
        canceled,
        json!({"type":"REQUEST_CANCELED","request-id":"r"})
    );
    eventually("the hanging call is dropped", || {
        running.load(Ordering::SeqCst) == 0
    })
    .await;

    // Cancelling again: nothing runs under that id any more.
    client
        .send(json!({"type":"CANCEL_REQUEST","request-id":"r"}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "unknown_request");
    assert_eq!(error["request-id"], "r");
}

#[tokio::test]
async fn closing_the_socket_cancels_everything_it_started() {
    let running = Arc::new(AtomicUsize::new(0));
    let server = start_with_registry(
        settings(vec![datasource("stuck", "hanging", json!({}))]),
        registry_with_hanging(&running),
    );
    let (mut client, _) = Client::ready(&server).await;
    for i in 0..3 {
        client
            .send(
                json!({"type":"ITEMS_REQUEST","datasources":["stuck"],"query":"*","request-id":i}),
            )
            .await;
    }
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["stuck"]}))
        .await;
    eventually("four calls run", || running.load(Ordering::SeqCst) == 4).await;
    drop(client);
    eventually("every call is dropped", || {
        running.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_datasource_times_out_alone() {
    let mut slow = datasource("slow", "slow", json!({"delay_ms": 5000}));
    slow.timeout = Some(Duration::from_millis(200));
    let server = start(vec![slow, people_source()]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["slow","people"],"query":"*","size":1,"color":"#0f0","request-id":1}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    let error = messages
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("a timeout error");
    assert_eq!(error["error"]["code"], "timeout");
    assert_eq!(error["error"]["datasource"], "slow");
    assert_eq!(error["error"]["color"], "#0f0");
    assert!(messages
        .iter()
        .any(|m| m["type"] == "ITEMS_RECEIVE" && m["items"]["server"] == "people"));
}

#[tokio::test]
async fn the_number_of_running_requests_is_capped() {
    let running = Arc::new(AtomicUsize::new(0));
    let mut settings = settings(vec![
        datasource("stuck", "hanging", json!({})),
        people_source(),
    ]);
    settings.limits.max_requests = 2;
    let server = start_with_registry(settings, registry_with_hanging(&running));
    let (mut client, _) = Client::ready(&server).await;
    for i in 0..2 {
        client
            .send(
                json!({"type":"ITEMS_REQUEST","datasources":["stuck"],"query":"*","request-id":i}),
            )
            .await;
    }
    client.send(json!({"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","color":"#1","request-id":2})).await;
    let error = client.recv().await;
    assert_eq!(error["error"]["code"], "too_many_requests", "{error}");
    assert_eq!(error["request-id"], 2);
    assert_eq!(error["error"]["query"], "x");
    // Cancelling one frees a place.
    client
        .send(json!({"type":"CANCEL_REQUEST","request-id":0}))
        .await;
    assert_eq!(client.recv().await["type"], "REQUEST_CANCELED");
    let answer = client.items(&["people"], "*", 0, 1, "#2").await;
    assert_eq!(items_of(&answer[0])["total"], 1234);
}

#[tokio::test]
async fn ping_gets_pong_with_the_clients_time() {
    let server = start(vec![people_source()]);
    let (mut client, _) = Client::ready(&server).await;
    client.send(json!({"type":"PING","t":123456})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "PONG");
    assert_eq!(pong["t"], 123456);
    assert!(pong["server_t"].as_u64().unwrap() > 1_600_000_000_000);
}

/// Felix's heartbeat ACK: `PONG` carries the server's stats, with each
/// datasource's health as the background monitor last measured it.
#[tokio::test]
async fn pong_carries_server_stats_and_datasource_health() {
    let mut settings = settings(vec![
        people_source(),
        datasource("down", "failing", json!({})),
    ]);
    settings.live.health_interval = Duration::from_millis(200);
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let started = Instant::now();
    let stats = loop {
        client.send(json!({"type":"PING","t":1})).await;
        let pong = client.recv().await;
        assert_eq!(pong["type"], "PONG", "{pong}");
        let stats = pong["stats"].clone();
        if stats["datasources"]["down"]["ok"].is_boolean()
            && stats["datasources"]["people"]["ok"].is_boolean()
        {
            break stats;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "health never measured: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["datasources"]["people"]["ok"], true, "{stats}");
    assert_eq!(stats["datasources"]["down"]["ok"], false, "{stats}");
    assert!(
        stats["datasources"]["people"]["latency_ms"].is_u64(),
        "{stats}"
    );
    assert!(stats["connections"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["memory_bytes"].as_u64().unwrap() > 1_000_000,
        "{stats}"
    );
    assert!(stats["uptime_ms"].as_u64().is_some(), "{stats}");
    // Measured again every interval: the check time moves on.
    let first = stats["datasources"]["people"]["checked_at_ms"]
        .as_u64()
        .unwrap();
    eventually_async(|| async { client_stats_after(&server, first).await }).await;
}

/// True once a fresh client's `PONG` shows a later health check than `after`.
async fn client_stats_after(server: &tributary::http::ServerHandle, after: u64) -> bool {
    let (mut client, _) = Client::ready(server).await;
    client.send(json!({"type":"PING"})).await;
    let pong = client.recv().await;
    pong["stats"]["datasources"]["people"]["checked_at_ms"]
        .as_u64()
        .is_some_and(|at| at > after)
}

async fn eventually_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < PATIENCE, "never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn closes_with(frame: Message, code: u16) {
    let server = start(vec![people_source()]);
    let (mut client, _) = Client::ready(&server).await;
    client.send_raw(frame).await;
    assert_eq!(client.closed().await, Closed::Code(code));
}

#[tokio::test]
async fn frames_that_are_not_json_objects_close_with_4200() {
    closes_with(Message::binary(vec![1, 2, 3]), 4200).await;
    closes_with(Message::text("[1,2,3]"), 4200).await;
    closes_with(Message::text("\"hello\""), 4200).await;
    closes_with(Message::text("42"), 4200).await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_4420() {
    let big = format!(r#"{{"type":"PING","t":"{}"}}"#, "x".repeat(70 * 1024));
    closes_with(Message::text(big), 4420).await;
}

#[tokio::test]
async fn a_message_flood_closes_with_4420() {
    let mut settings = settings(vec![people_source()]);
    settings.limits.max_messages_per_second = 5;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    for _ in 0..50 {
        client.send(json!({"type":"PING"})).await;
    }
    assert_eq!(client.closed().await, Closed::Code(4420));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_with_4420() {
    let mut settings = settings(vec![datasource("bulky", "bulky", json!({}))]);
    settings.limits.slow_client_timeout = Duration::from_millis(300);
    settings.limits.outbound_buffer_bytes = 100_000;
    settings.results.batch_size = 10;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    // Ask for far more than socket buffers hold (about 160 MiB), then stop reading for a while.
    for i in 0..4 {
        client.send(json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":10_000,"request-id":i})).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.closed().await, Closed::Code(4420));
    let metrics = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(&metrics, "tributary_slow_client_disconnects_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, r#"tributary_closes_total{code="4420"}"#),
        Some(1.0)
    );
    // The aborted requests are gone with their connection.
    metric_eventually(server.addr, "tributary_requests_running", 0.0).await;
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_pong_timeout() {
    let mut settings = settings(vec![people_source()]);
    settings.limits.ping_interval = Duration::from_millis(200);
    settings.limits.pong_timeout = Duration::from_millis(200);
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    // Not polling the socket means the client library sends no pongs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(client.closed().await, Closed::Code(1008));
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let mut settings = settings(vec![people_source()]);
    settings.limits.ping_interval = Duration::from_millis(100);
    settings.limits.pong_timeout = Duration::from_millis(100);
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < until {
        // Each round trip polls the socket, which answers the server's pings.
        client.send(json!({"type":"PING","t":1})).await;
        assert_eq!(client.recv().await["type"], "PONG");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_notifies_lets_requests_finish_then_closes_with_1001() {
    let server = start(vec![
        datasource("slow", "slow", json!({"delay_ms": 400})),
        people_source(),
    ]);
    let (mut busy, _) = Client::ready(&server).await;
    let (mut idle, _) = Client::ready(&server).await;
    busy.send(json!({"type":"ITEMS_REQUEST","datasources":["people","slow"],"query":"*","size":2,"request-id":"last"}))
        .await;
    // The fast source's answer proves the request runs; the slow one is still busy.
    let first = busy.recv().await;
    assert_eq!(first["items"]["server"], "people", "{first}");
    let shutdown = server.shutdown(Duration::from_secs(10));
    let clients = async {
        let notice = idle.recv().await;
        assert_eq!(notice["type"], "SHUTDOWN_NOTICE");
        assert_eq!(idle.closed().await, Closed::Code(1001));

        let messages = busy.recv_until(|m| m["type"] == "REQUEST_COMPLETED").await;
        assert_eq!(messages[0]["type"], "SHUTDOWN_NOTICE");
        assert!(
            messages.iter().any(|m| m["type"] == "ITEMS_RECEIVE"),
            "{messages:?}"
        );
        assert_eq!(busy.closed().await, Closed::Code(1001));
    };
    tokio::join!(shutdown, clients);
    // The server no longer accepts connections.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
            .await
            .is_err()
    );
}

/// Control frames jump the queue of results: with 25 clients each in the
/// middle of a 100,000-result page, the shutdown notice reaches every one
/// at once, and when the drain is over every one gets its 1001 close frame
/// (not a bare reset), however many results were still queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_busy_clients_ahead_of_their_results() {
    let mut settings = settings(vec![datasource("bulky", "bulky", json!({}))]);
    settings.results.batch_size = 100;
    let server = start_with(settings);
    let mut clients = Vec::new();
    for i in 0..25 {
        let (mut client, _) = Client::ready(&server).await;
        client
            .send(json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":100_000,"request-id":i}))
            .await;
        assert_eq!(client.recv().await["type"], "ITEMS_RECEIVE");
        clients.push(client);
    }
    let started = Instant::now();
    let shutdown = server.shutdown(Duration::from_secs(1));
    let readers = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            // Results read before the notice: only what was already in the
            // socket buffers when it was sent.
            let mut batches_before_notice = 0;
            let mut noticed = false;
            loop {
                match client.next_event().await {
                    Event::Json(m) if m["type"] == "SHUTDOWN_NOTICE" => noticed = true,
                    Event::Json(m) if m["type"] == "ITEMS_RECEIVE" && !noticed => {
                        batches_before_notice += 1;
                    }
                    Event::Json(_) => {}
                    Event::Closed(closed) => {
                        return (noticed, batches_before_notice, closed, started.elapsed())
                    }
                }
            }
        })
    });
    let (_, outcomes) = tokio::join!(shutdown, futures_util::future::join_all(readers));
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("reader")).collect();
    eprintln!("(noticed, batches before the notice, close, closed after): {outcomes:?}");
    for (noticed, batches_before_notice, closed, closed_after) in &outcomes {
        assert!(noticed, "{outcomes:?}");
        // About 400 KB a batch: a few MB of socket buffers, not the outbox.
        assert!(*batches_before_notice <= 30, "{outcomes:?}");
        assert_eq!(*closed, Closed::Code(1001), "{outcomes:?}");
        assert!(*closed_after < Duration::from_secs(8), "{outcomes:?}");
    }
}
