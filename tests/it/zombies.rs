//! Clients that ask for a lot and never read a byte. Each is disconnected
//! after `slow_client_timeout`, keeps its place under `max_connections` while
//! its socket still exists, and has its socket reset after `close_timeout`:
//! wave after wave, the server's sockets, slots and memory stay bounded. One
//! test in its own binary, so the process's memory is this server's alone.

use crate::common;

use std::time::{Duration, Instant};

use common::raw;
use common::*;
use serde_json::json;
use tokio::net::TcpStream;

const CAP: usize = 50;

/// Server-side sockets of `port` in state ESTABLISHED (from /proc/net/tcp).
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "01"
        })
        .count()
}

fn rss_mib() -> u64 {
    rss_bytes() >> 20
}

/// A client asking for 20 MB of results that never reads any.
async fn zombie(addr: std::net::SocketAddr) -> TcpStream {
    raw::never_reading(
        addr,
        &json!({"type":"ITEMS_REQUEST","datasources":["bulky"],"query":"*","size":5000}),
    )
    .await
}

/// Waits until `/metrics` reports at least `value` for `sample`.
async fn metric_at_least(addr: std::net::SocketAddr, sample: &str, value: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = http_get(addr, "/metrics").await.1;
        if metric(&text, sample).unwrap_or(0.0) >= value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} never reached {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cannot_hold_sockets_slots_or_memory() {
    // Measures the whole process: alone in one.
    if rerun_alone("zombies::clients_that_never_read_cannot_hold_sockets_slots_or_memory") {
        return;
    }
    let mut settings = settings(vec![datasource("bulky", "bulky", json!({}))]);
    settings.limits.max_connections = CAP;
    settings.limits.slow_client_timeout = Duration::from_millis(500);
    settings.limits.close_timeout = Duration::from_secs(3);
    let server = start_with(settings);
    let port = server.addr.port();
    let baseline = rss_mib();
    let mut peak_rss = baseline;
    let mut peak_sockets = 0;

    for wave in 0..3 {
        let started = Instant::now();
        let mut zombies = Vec::new();
        for _ in 0..CAP {
            zombies.push(zombie(server.addr).await);
        }
        metric_eventually(server.addr, "tributary_connections_open", CAP as f64).await;
        // Once a write has waited `slow_client_timeout`, each session is
        // over, but its socket still exists: it still counts, and the cap holds.
        metric_at_least(
            server.addr,
            "tributary_slow_client_disconnects_total",
            ((wave + 1) * CAP) as f64,
        )
        .await;
        let metrics = http_get(server.addr, "/metrics").await.1;
        assert_eq!(
            metric(&metrics, "tributary_connections_open"),
            Some(CAP as f64),
            "wave {wave}: still counted {:?} after it started",
            started.elapsed()
        );
        peak_sockets = peak_sockets.max(established(port));
        peak_rss = peak_rss.max(rss_mib());
        let (status, _) = raw::upgrade(server.addr, "/ws", &[]).await;
        assert_eq!(status, 503, "wave {wave}: the cap holds");
        // Then the sockets are reset and everything is given back.
        let deadline = Instant::now() + PATIENCE;
        loop {
            peak_sockets = peak_sockets.max(established(port));
            peak_rss = peak_rss.max(rss_mib());
            let open = metric(
                &http_get(server.addr, "/metrics").await.1,
                "tributary_connections_open",
            );
            if open == Some(0.0) && established(port) == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wave {wave}: {open:?} open, {} sockets",
                established(port)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(zombies);
    }
    eprintln!("baseline {baseline} MiB, peak {peak_rss} MiB, peak {peak_sockets} sockets");
    // The cap, plus the test's own probes on the same port: a `/metrics`
    // request and the refused upgrade may be open at the moment of counting.
    assert!(peak_sockets <= CAP + 2, "{peak_sockets} sockets at once");
    let metrics = http_get(server.addr, "/metrics").await.1;
    assert!(
        metric(&metrics, "tributary_connection_resets_total").unwrap_or(0.0) >= (3 * CAP) as f64
    );
    // Fifty clients that never read may hold what fits in their outbound
    // queues and socket buffers, and not a byte more, wave after wave.
    assert!(
        peak_rss < baseline + 1500,
        "from {baseline} MiB to {peak_rss} MiB"
    );
    let (mut client, _) = Client::ready(&server).await;
    client.send(json!({"type":"PING"})).await;
    assert_eq!(client.recv().await["type"], "PONG");
}
