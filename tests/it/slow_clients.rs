//! Clients that read slowly or not at all. Each connection's outbox is
//! bounded in bytes, so twenty clients that ask for 100,000 results and
//! never read hold about twenty budgets of memory, no more; after
//! `slow_client_timeout` their sockets are shut down. A client that merely
//! reads slowly is never charged to its datasources: no timeout error, and
//! the datasource's duration counts its own work only. One binary of its
//! own, so the process's memory is this server's alone.

use crate::common;

use std::time::{Duration, Instant};

use common::raw;
use common::*;
use serde_json::json;
use tokio::net::TcpStream;

const BUDGET: usize = 1 << 20;

/// A client asking for 100,000 results of about 4 KiB each (400 MB) that never reads.
async fn never_reads(addr: std::net::SocketAddr) -> TcpStream {
    raw::never_reading(
        addr,
        &json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":100_000}),
    )
    .await
}

/// The same client running sixteen such requests at once (the most it may).
async fn never_reads_sixteen(addr: std::net::SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = never_reads(addr).await;
    for n in 1..16 {
        let request = json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":100_000,"request-id":n});
        stream
            .write_all(&raw::text(&request))
            .await
            .expect("writes");
    }
    stream
}

/// One request each, then sixteen each (one after the other: the process's
/// memory is what is measured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_that_never_read_hold_twenty_budgets_at_most() {
    // Measures the whole process: alone in one.
    if rerun_alone("slow_clients::twenty_clients_that_never_read_hold_twenty_budgets_at_most") {
        return;
    }
    clients_that_never_read(false).await;
    clients_that_never_read(true).await;
}

/// Twenty clients that never read, asking one request each or sixteen.
async fn clients_that_never_read(sixteen: bool) {
    let mut settings = settings(vec![datasource("bulky", "bulky", json!({}))]);
    settings.limits.outbound_buffer_bytes = BUDGET;
    settings.limits.slow_client_timeout = Duration::from_secs(2);
    settings.limits.close_timeout = Duration::from_secs(1);
    let server = start_with(settings);
    // Warm the server up (first connection, first batches) before the baseline.
    let (mut warm, _) = Client::ready(&server).await;
    let reply = warm
        .typed()
        .request(tributary_client::Search::new(["bulky"], "*").size(2_000))
        .await
        .expect("a reply");
    assert_eq!(reply.items().count(), 2_000);
    let baseline = rss_bytes();

    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(if sixteen {
            never_reads_sixteen(server.addr).await
        } else {
            never_reads(server.addr).await
        });
    }
    metric_eventually(server.addr, "tributary_connections_open", 21.0).await;
    // While they hang, every outbox fills to its budget and stays there.
    let mut peak = baseline;
    let mut peak_queued = 0.0f64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        peak = peak.max(rss_bytes());
        let text = http_get(server.addr, "/metrics").await.1;
        peak_queued = peak_queued.max(metric(&text, "tributary_outbox_bytes").unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "RSS {} MiB before, peak {} MiB (+{} MiB); at most {:.1} MiB queued in outboxes",
        baseline >> 20,
        peak >> 20,
        grown >> 20,
        peak_queued / f64::from(1 << 20)
    );
    assert!(
        peak_queued <= (20 * BUDGET) as f64,
        "{peak_queued} bytes queued"
    );
    // Twenty budgets, plus per connection what is being encoded and what the
    // HTTP layer buffers, plus a small constant: however many requests each
    // runs, its others wait with their results unencoded.
    assert!(
        grown < 20 * (BUDGET as u64 + (1 << 20)) + (32 << 20),
        "RSS grew by {} MiB",
        grown >> 20
    );
    // After `slow_client_timeout` each is closed with 4420; its socket
    // cannot take the close frame, so it is reset after `close_timeout`.
    metric_eventually(server.addr, "tributary_connections_open", 1.0).await;
    let text = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(&text, "tributary_slow_client_disconnects_total"),
        Some(20.0)
    );
    assert_eq!(
        metric(&text, r#"tributary_closes_total{code="4420"}"#),
        Some(20.0)
    );
    assert_eq!(metric(&text, "tributary_outbox_bytes"), Some(0.0));
    assert_eq!(metric(&text, "tributary_requests_running"), Some(0.0));
    drop(clients);
    // The server still answers.
    warm.send(json!({"type":"PING"})).await;
    assert_eq!(warm.recv().await["type"], "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_not_a_slow_datasource() {
    let mut source = datasource("bulky", "bulky", json!({}));
    source.timeout = Some(Duration::from_millis(500));
    let mut settings = settings(vec![source]);
    settings.limits.outbound_buffer_bytes = 256 * 1024;
    settings.results.batch_size = 50;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    // 20 MB of results, far more than the outbox and socket buffers hold;
    // the client then takes 2 s, four times the datasource's timeout, to read.
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":5_000,"request-id":"slow"}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    let errors: Vec<_> = answers.iter().filter(|m| m["type"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:?}");
    let items: usize = answers
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE")
        .map(|m| items_of(m)["results"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(items, 5_000);
    let completed = answers.last().expect("completion");
    let took = completed["datasources"]["bulky"]["took_ms"]
        .as_u64()
        .expect("took_ms");
    assert!(took < 500, "the datasource was charged {took} ms");
    let text = http_get(server.addr, "/metrics").await.1;
    let waited = metric(
        &text,
        r#"tributary_outbox_wait_seconds_sum{datasource="bulky"}"#,
    )
    .expect("the wait is recorded");
    assert!(waited > 1.0, "{waited} s of waiting recorded");
    let duration = metric(
        &text,
        r#"tributary_datasource_duration_seconds_sum{call="items",datasource="bulky",outcome="ok"}"#,
    )
    .expect("the duration is recorded");
    assert!(duration < 0.5, "{duration} s charged to the datasource");
}
