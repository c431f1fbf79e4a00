//! The `loadgen` and `datagen` binaries against a real server: each mode
//! runs and reports what it counted. No timing is asserted here; the
//! figures belong in BENCHMARKS.md.

#[path = "../../tests/it/common/mod.rs"]
mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const DATAGEN: &str = env!("CARGO_BIN_EXE_datagen");

fn server() -> tributary::http::ServerHandle {
    let mut settings = settings(vec![
        datasource("people", "people", json!({"count": 1000})),
        datasource("slow", "slow", json!({"delay_ms": 100})),
    ]);
    settings.limits.max_messages_per_second = 100_000;
    start_with(settings)
}

#[tokio::test(flavor = "multi_thread")]
async fn query_mode_counts_requests_and_items() {
    let server = server();
    let report = tokio::task::spawn_blocking({
        let server = server.addr;
        move || {
            let handle = HandleAddr(server);
            handle.run(&[
                "query",
                "--clients",
                "3",
                "--size",
                "20",
                "--datasources",
                "people",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--pid",
                &std::process::id().to_string(),
            ])
        }
    })
    .await
    .expect("loadgen task");
    assert_eq!(report["mode"], "query");
    assert_eq!(report["errors"], 0);
    assert_eq!(report["failed_clients"], 0);
    let requests = report["latency"]["count"].as_u64().unwrap();
    assert!(requests > 0, "{report}");
    // Every request of size 20 over 1,000 records brings 20 items.
    let items = report["items_per_s"].as_f64().unwrap() * report["duration_s"].as_f64().unwrap();
    assert_eq!(items.round() as u64, requests * 20, "{report}");
    // The server runs in this test's process: its CPU is read from /proc.
    assert!(report["server_cpu_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["server_cpu_ms_per_1000_requests"].as_f64().is_some(),
        "{report}"
    );
    assert!(report["loadgen_cpu_ms"].as_f64().is_some(), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_fanout_and_idle_modes_report() {
    let server = server();
    let addr = server.addr;
    let (stream, fanout, idle) = tokio::task::spawn_blocking(move || {
        let handle = HandleAddr(addr);
        let stream = handle.run(&[
            "stream",
            "--datasources",
            "people",
            "--size",
            "1000",
            "--repeat",
            "2",
            "--pid",
            &std::process::id().to_string(),
        ]);
        let fanout = handle.run(&[
            "fanout",
            "--datasources",
            "people,slow",
            "--size",
            "10",
            "--repeat",
            "2",
            "--pid",
            &std::process::id().to_string(),
        ]);
        let idle = handle.run(&[
            "idle",
            "--connections",
            "20",
            "--pid",
            &std::process::id().to_string(),
            "--hold",
            "0s",
        ]);
        (stream, fanout, idle)
    })
    .await
    .expect("loadgen task");

    let runs = stream["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["items"], 1000, "{stream}");
        // 1,000 results in batches of 500, then REQUEST_COMPLETED.
        assert_eq!(run["messages"], 3, "{stream}");
    }
    assert!(
        stream["server_cpu_ms_per_100k_items"].as_f64().is_some(),
        "{stream}"
    );

    for source in ["people", "slow"] {
        let per = &fanout["per_datasource"][source];
        assert_eq!(per["first_alone"]["count"], 2, "{fanout}");
        assert_eq!(per["first_together"]["count"], 2, "{fanout}");
    }
    // The slow test datasource sleeps 100 ms before answering.
    assert!(
        fanout["per_datasource"]["slow"]["first_alone"]["p50_ms"]
            .as_f64()
            .unwrap()
            >= 100.0
    );

    assert_eq!(idle["connections"], 20, "{idle}");
    assert_eq!(idle["failed"], 0, "{idle}");
    assert!(idle["rss_after_kib"].as_u64().unwrap() > 0);
}

#[test]
fn loadgen_reports_an_unreachable_server() {
    let output = Command::new(LOADGEN)
        .args(["--url", "ws://127.0.0.1:9/ws", "stream"])
        .output()
        .expect("loadgen runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to ws://127.0.0.1:9/ws"),
        "{stderr}"
    );
}

#[test]
fn datagen_is_deterministic() {
    let run = |seed: &str| {
        let output = Command::new(DATAGEN)
            .args(["tweets", "--count", "50", "--seed", seed])
            .output()
            .expect("datagen runs");
        assert!(output.status.success());
        output.stdout
    };
    let first = run("7");
    assert_eq!(first, run("7"), "same seed, same bytes");
    assert_ne!(first, run("8"), "another seed, other records");
    let lines: Vec<Value> = String::from_utf8(first)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record a line"))
        .collect();
    assert_eq!(lines.len(), 50);
    assert!(lines.iter().all(|r| r["user"]["screen_name"].is_string()));
}

/// Runs loadgen against a server address from a blocking thread.
struct HandleAddr(std::net::SocketAddr);

impl HandleAddr {
    fn run(&self, args: &[&str]) -> Value {
        let url = format!("ws://{}/ws", self.0);
        let output = Command::new(LOADGEN)
            .args(["--url", &url, "--json"])
            .args(args)
            .output()
            .expect("loadgen runs");
        assert!(
            output.status.success(),
            "loadgen {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON report")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_mode_counts_every_delivery() {
    let mut settings = settings(tributary::config::demo_datasources());
    settings.publish.enabled = true;
    let server = start_with(settings);
    let pid = std::process::id().to_string();
    let report = tokio::task::spawn_blocking({
        let server = server.addr;
        move || {
            HandleAddr(server).run(&[
                "live",
                "--connections",
                "6",
                "--per-connection",
                "2",
                "--distinct",
                "4",
                "--rate",
                "200",
                "--batch",
                "5",
                "--duration",
                "1s",
                "--pid",
                &pid,
            ])
        }
    })
    .await
    .expect("loadgen task");
    assert_eq!(report["mode"], "live");
    let published = report["published"].as_u64().unwrap();
    assert!(published > 0, "{report}");
    // 12 subscriptions over 4 distinct queries: each record reaches 3.
    assert_eq!(
        report["expected"].as_u64().unwrap(),
        published * 3,
        "{report}"
    );
    assert_eq!(report["delivered"], report["expected"], "{report}");
    assert!(report["server_cpu_ms"].as_f64().is_some(), "{report}");
}

/// `es-loopback` answers as Elasticsearch does: the `elasticsearch`
/// datasource lists its fields and pages through its tweets.
#[tokio::test(flavor = "multi_thread")]
async fn es_loopback_serves_the_elasticsearch_datasource() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_es-loopback"))
        .args(["--listen", "127.0.0.1:0", "--documents", "1200"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("es-loopback starts");
    let mut line = String::new();
    BufReader::new(child.stderr.take().expect("its stderr"))
        .read_line(&mut line)
        .expect("its first line");
    let url = line
        .split_whitespace()
        .last()
        .expect("the address it serves")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let server = start(vec![datasource(
        "es",
        "elasticsearch",
        json!({"url": url, "index": "demo-tweets"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = client
        .typed()
        .request(
            tributary_client::Search::new(["es"], "*")
                .from(1000)
                .size(150),
        )
        .await
        .expect("a reply");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert_eq!(reply.total("es"), Some(1200));
    let items: Vec<_> = reply.items().collect();
    assert_eq!(items.len(), 150);
    let first = items[0].field_map();
    assert_eq!(first["_index"], "demo-tweets");
    assert!(first["user.screen_name"].is_string(), "{first:?}");
    assert_eq!(first["id"].as_str(), Some(items[0].id.as_str()));
    let fields = client
        .typed()
        .request(tributary_client::Fields(vec!["es".into()]))
        .await
        .expect("a reply");
    assert!(fields.fields[0]
        .fields
        .iter()
        .any(|f| f.path == "user.followers_count" && f.kind == "long"));
    let _ = child.kill();
    let _ = child.wait();
}

/// `remote-loopback` serves a remote datasource over `/ws/services`: it
/// is announced, pages through its tweets in several replies.
#[tokio::test(flavor = "multi_thread")]
async fn remote_loopback_serves_a_remote_datasource() {
    let mut settings = settings(Vec::new());
    settings.services.insert(
        "bench".into(),
        tributary::config::ServiceSettings {
            token: "bench-token-1".into(),
            group: None,
            datasources: Some(vec!["remote_tweets".into()]),
        },
    );
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_remote-loopback"))
        .args(["--url", &format!("ws://{}/ws/services", server.addr)])
        .args(["--token", "bench-token-1", "--records", "1200"])
        .spawn()
        .expect("remote-loopback starts");
    let changed = client.recv().await;
    assert_eq!(changed["type"], "DATASOURCES_CHANGED", "{changed}");
    let reply = client
        .typed()
        .request(
            tributary_client::Search::new(["remote_tweets"], "*")
                .from(1000)
                .size(150),
        )
        .await
        .expect("a reply");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert_eq!(reply.total("remote_tweets"), Some(1200));
    let items: Vec<_> = reply.items().collect();
    assert_eq!(items.len(), 150);
    let first = items[0].field_map();
    assert!(first["user.screen_name"].is_string(), "{first:?}");
    let _ = child.kill();
    let _ = child.wait();
}
