//! The query-cost attack: the most expensive wildcard there is, sent by
//! several connections at once, must leave a light client's searches quick,
//! and canceling it must free the CPU at once. One test in its own binary, so
//! the process's CPU time is this server's alone.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The expensive queries: a pattern that must be tried against every term,
/// and a regular expression whose automaton takes long to build.
const HEAVY: [&str; 2] = ["*a*b*c*d*e*", "/(a{1,255}){3}/"];

/// utime + stime of this process (the server runs in it), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every
    // architecture it runs on.
    ticks / 100.0
}

fn dataset(records: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".ndjson")
        .tempfile()
        .expect("a temp file");
    for record in
        tributary_tools::datagen::records(tributary_tools::datagen::Kind::Tweets, records, 7)
    {
        writeln!(file, "{record}").expect("writes");
    }
    file
}

async fn light_query_ms(client: &mut Client) -> f64 {
    light_query_ms_with(client, "bitcoin").await
}

async fn light_query_ms_with(client: &mut Client, query: &str) -> f64 {
    let started = Instant::now();
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":query,"size":10,"request-id":"light"}))
        .await;
    let answer = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert!(
        answer.iter().any(|m| m["type"] == "ITEMS_RECEIVE"),
        "{answer:?}"
    );
    started.elapsed().as_secs_f64() * 1000.0
}

fn heavy(query: &str, id: u64) -> Value {
    json!({"type":"ITEMS_REQUEST","datasources":["tweets"],"query":query,"size":10,"request-id":id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_queries_neither_starve_others_nor_outlive_cancel() {
    // Measures the whole process: alone in one.
    if rerun_alone("query_cost::expensive_queries_neither_starve_others_nor_outlive_cancel") {
        return;
    }
    let file = dataset(20_000);
    let mut settings = settings(vec![datasource(
        "tweets",
        "fixtures",
        // The same heavy query is asked again and again: kept pages would
        // answer it without the work this test measures.
        json!({"path": file.path(), "search_budget": "60s", "page_cache_bytes": 0}),
    )]);
    settings.limits.max_messages_per_second = 1000;
    let server = start_with(settings);
    let (mut light, _) = Client::ready(&server).await;
    light_query_ms(&mut light).await;
    // A kilobyte of bounded repetitions compiles to more than an automaton
    // may hold: it matches nothing (Elasticsearch's `lenient`), at once.
    let repeated = format!("/{}/", "(a{1,255})".repeat(100));
    let took = light_query_ms_with(&mut light, &repeated).await;
    assert!(took < 5_000.0, "{took:.0} ms");
    for query in HEAVY {
        attack(&server, &mut light, query).await;
    }
}

/// One heavy query: what it costs alone, that cancel stops it, and that
/// four connections asking it again and again leave a light client quick.
async fn attack(server: &tributary::http::ServerHandle, light: &mut Client, query: &str) {
    eprintln!("heavy query {query}");

    // What one heavy search costs when it runs to its end.
    let (mut attacker, _) = Client::ready(server).await;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    attacker.send(heavy(query, 0)).await;
    let answer = attacker
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{answer:?}");
    let one_search = cpu_seconds() - cpu;
    let one_wall = wall.elapsed();
    eprintln!(
        "one heavy search: {one_search:.2} s of CPU, {:.2} s",
        one_wall.as_secs_f64()
    );

    // Cancel stops the work: within a second the CPU is idle again. The
    // cancel goes while both searches are surely still running (a fifth of
    // what one takes alone; the two share the cores).
    for id in 1..=2 {
        attacker.send(heavy(query, id)).await;
    }
    tokio::time::sleep((one_wall / 5).min(Duration::from_millis(100))).await;
    for id in 1..=2 {
        attacker
            .send(json!({"type":"CANCEL_REQUEST","request-id":id}))
            .await;
        // Results found before the cancel may come ahead of its answer.
        let answers = attacker
            .recv_until(|m| {
                m["request-id"] == id
                    && (m["type"] == "REQUEST_CANCELED" || m["type"] == "REQUEST_COMPLETED")
            })
            .await;
        // A query that takes less than a tenth of a second alone may end
        // before its cancel is read; a longer one must be canceled.
        let ended = &answers.last().expect("an answer")["type"];
        if one_wall >= Duration::from_millis(100) || ended != "REQUEST_COMPLETED" {
            assert_eq!(ended, "REQUEST_CANCELED", "{answers:?}");
        }
    }
    let canceled = Instant::now();
    metric_eventually(server.addr, "tributary_requests_running", 0.0).await;
    let stopped_after = canceled.elapsed();
    assert!(
        stopped_after < Duration::from_secs(1),
        "the canceled searches ran {stopped_after:?} longer"
    );
    let cpu = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = cpu_seconds() - cpu;
    assert!(
        idle < one_search.min(0.5),
        "{idle:.2} s of CPU in the second after cancel (one search costs {one_search:.2} s)"
    );

    // Four connections keep the server busy with heavy searches while a
    // light client searches: its slowest answer stays within the bound
    // docs/protocol.md gives for an unoptimised build.
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (mut client, _) = Client::ready(server).await;
        let query = query.to_owned();
        attackers.push(tokio::spawn(async move {
            for id in 0..16 {
                client.send(heavy(&query, id)).await;
            }
            let mut next = 16;
            loop {
                let message = client.recv().await;
                if message["type"] == "REQUEST_COMPLETED" {
                    client.send(heavy(&query, next)).await;
                    next += 1;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    for _ in 0..30 {
        latencies.push(light_query_ms(light).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for attacker in &attackers {
        attacker.abort();
    }
    assert_slowest_under("light query under attack", latencies, 2000.0);
}
