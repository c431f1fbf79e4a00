//! Hostile clients: each test reproduces one attack exactly and checks the
//! server refuses it and keeps serving everyone else.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::raw;
use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tributary::config::TokenSettings;
use tributary::datasources::{
    Datasource, DatasourceError, FieldList, Registry, RequestContext, ResultSink, SearchQuery,
};

async fn still_answers(client: &mut Client) {
    let answer = client.items(&["people"], "name:person", 0, 2, "#0f0").await;
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{answer:?}");
}

#[tokio::test]
async fn deeply_nested_queries_are_refused_and_the_server_lives() {
    let server = start(vec![
        datasource("people", "people", json!({"count": 20})),
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    for (open, close) in [("(", ")"), ("+(", ")"), ("-(", ")"), ("NOT ", "")] {
        let query = format!("{}a{}", open.repeat(2200), close.repeat(2200));
        client
            .send(json!({"type":"ITEMS_REQUEST","datasources":["people","tweets"],"query":query,"request-id":"deep"}))
            .await;
        let answer = client
            .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
            .await;
        let error = &answer[0]["error"];
        assert_eq!(error["code"], "bad_query", "{answer:?}");
        let message = error["message"].as_str().unwrap_or_default();
        let depth: usize = message
            .split_whitespace()
            .find_map(|word| word.parse().ok())
            .unwrap_or(0);
        assert!(
            message.contains("max_query_depth") && depth >= 2200,
            "{message}"
        );
        assert!(
            !answer.iter().any(|m| m["type"] == "ITEMS_RECEIVE"),
            "no datasource saw the query"
        );
        still_answers(&mut client).await;
    }
    // As deep as the default allows still runs.
    let query = format!("{}person{}", "(".repeat(32), ")".repeat(32));
    let answer = client.items(&["people"], &query, 0, 1, "#0f0").await;
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{answer:?}");
    let wide = "person ".repeat(1100);
    let answer = client.items(&["people"], &wide, 0, 1, "#0f0").await;
    assert!(answer[0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("max_query_clauses"));
}

/// Header lines, as raw bytes.
type Headers<'a> = Vec<(&'a str, &'a [u8])>;

/// The status of an upgrade with these extra headers.
async fn status(server: &tributary::http::ServerHandle, headers: &[(&str, &[u8])]) -> u16 {
    raw::upgrade(server.addr, "/ws", headers).await.0
}

#[tokio::test]
async fn origins_cannot_be_spoofed() {
    let mut base = settings(vec![datasource("people", "people", json!({}))]);
    base.auth.allowed_origins = vec!["https://analysts.example".into()];
    let server = start_with(base);
    let port = server.addr.port();
    let own = format!("http://127.0.0.1:{port}");
    let evil_port = format!("http://evil.example:{port}");
    let evil_host_port = format!("evil.example:{port}");
    let own_https = format!("https://127.0.0.1:{port}");
    let own_80 = format!("http://127.0.0.1:{port}:80");
    let localhost = format!("http://localhost:{port}");
    let cases: Vec<(&str, Headers, u16)> = vec![
        (
            "DNS rebinding: Host follows Origin",
            vec![
                ("Host", b"evil.example"),
                ("Origin", b"http://evil.example"),
            ],
            403,
        ),
        (
            "the same with the port",
            vec![
                ("Host", evil_host_port.as_bytes()),
                ("Origin", evil_port.as_bytes()),
            ],
            403,
        ),
        (
            "X-Forwarded-Host from an untrusted peer",
            vec![
                ("X-Forwarded-Host", b"evil.example"),
                ("Origin", b"http://evil.example"),
            ],
            403,
        ),
        (
            "Forwarded from an untrusted peer",
            vec![
                ("Forwarded", b"host=evil.example"),
                ("Origin", b"http://evil.example"),
            ],
            403,
        ),
        (
            "a non-ASCII byte at the end",
            vec![("Origin", b"http://evil.example\xff")],
            400,
        ),
        (
            "a non-ASCII first letter",
            vec![("Origin", b"http://\xe9vil.example")],
            400,
        ),
        (
            "two Origin headers",
            vec![
                ("Origin", own.as_bytes()),
                ("Origin", b"http://evil.example"),
            ],
            400,
        ),
        (
            "https for an http server",
            vec![("Origin", own_https.as_bytes())],
            403,
        ),
        (
            "own host with :80 after the port",
            vec![("Origin", own_80.as_bytes())],
            400,
        ),
        ("null", vec![("Origin", b"null")], 400),
        (
            "a page of another site",
            vec![("Origin", b"https://evil.example")],
            403,
        ),
        (
            "the server's own origin",
            vec![("Origin", own.as_bytes())],
            101,
        ),
        (
            "its localhost form",
            vec![("Origin", localhost.as_bytes())],
            101,
        ),
        (
            "an allowed origin",
            vec![("Origin", b"https://analysts.example")],
            101,
        ),
        (
            "an allowed origin with its default port",
            vec![("Origin", b"https://analysts.example:443")],
            101,
        ),
        ("no origin: not a browser", vec![], 101),
    ];
    for (case, headers, expected) in cases {
        assert_eq!(status(&server, &headers).await, expected, "{case}");
    }

    // Behind a trusted proxy the forwarded host is the server's own; from
    // anyone else the same headers count for nothing.
    let mut behind_proxy = settings(vec![datasource("people", "people", json!({}))]);
    behind_proxy.auth.trusted_proxies = vec!["127.0.0.0/8".into()];
    let proxied = start_with(behind_proxy);
    let forwarded: &[(&str, &[u8])] = &[
        ("X-Forwarded-Host", b"tributary.example"),
        ("X-Forwarded-Proto", b"https"),
        ("Origin", b"https://tributary.example"),
    ];
    assert_eq!(status(&proxied, forwarded).await, 101);
    assert_eq!(status(&server, forwarded).await, 403);
    let spoofed: &[(&str, &[u8])] = &[
        ("X-Forwarded-Host", b"tributary.example"),
        ("X-Forwarded-Proto", b"https"),
        ("Origin", b"https://evil.example"),
    ];
    assert_eq!(status(&proxied, spoofed).await, 403);

    // Configured public origins replace the defaults.
    let mut with_public = settings(vec![datasource("people", "people", json!({}))]);
    with_public.auth.public_origins = vec!["https://tributary.example".into()];
    let public = start_with(with_public);
    assert_eq!(
        status(&public, &[("Origin", b"https://tributary.example:443")]).await,
        101
    );
    assert_eq!(status(&public, &[("Origin", own.as_bytes())]).await, 403);
}

fn with_tokens() -> tributary::config::Settings {
    let mut settings = settings(vec![
        datasource("people", "people", json!({})),
        datasource("secret-source", "people", json!({})),
    ]);
    settings.auth.tokens = BTreeMap::from([
        (
            "analyst".to_string(),
            TokenSettings {
                token: "analyst-token-1".into(),
                datasources: Some(vec!["people".into()]),
                publish: false,
            },
        ),
        (
            "admin".to_string(),
            TokenSettings {
                token: "admin-token-12".into(),
                datasources: None,
                publish: false,
            },
        ),
    ]);
    settings
}

#[tokio::test]
async fn ambiguous_tokens_are_refused() {
    let server = start_with(with_tokens());
    let cases: Vec<(&str, Headers, u16)> = vec![
        ("/ws?token=wrong&token=analyst-token-1", vec![], 400),
        ("/ws?token=analyst-token-1&token=wrong", vec![], 400),
        (
            "/ws?token=analyst-token-1&token=analyst-token-1",
            vec![],
            400,
        ),
        (
            "/ws?token=analyst-token-1",
            vec![("Authorization", b"Bearer admin-token-12")],
            400,
        ),
        (
            "/ws",
            vec![
                ("Authorization", b"Bearer wrong"),
                ("Authorization", b"Bearer admin-token-12"),
            ],
            400,
        ),
        (
            "/ws?token=analyst-token-1",
            vec![("Authorization", b"Bearer analyst-token-1")],
            101,
        ),
        ("/ws?token=analyst-token-1", vec![], 101),
        (
            "/ws",
            vec![("Authorization", b"Bearer admin-token-12")],
            101,
        ),
        ("/ws?token=wrong", vec![], 403),
        ("/ws", vec![], 403),
    ];
    for (target, headers, expected) in cases {
        let (status, _) = raw::upgrade(server.addr, target, &headers).await;
        assert_eq!(status, expected, "{target} {headers:?}");
    }
    let metrics = http_get(server.addr, "/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            r#"tributary_rejected_upgrades_total{reason="ambiguous_token"}"#
        ),
        Some(5.0)
    );
}

#[tokio::test]
async fn health_names_datasources_only_to_token_holders() {
    let server = start_with(with_tokens());
    let (status, body) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert!(health.get("datasources").is_none(), "{body}");
    assert!(
        !body.contains("secret-source") && !body.contains("people"),
        "{body}"
    );

    let (_, body) = http_get(server.addr, "/healthz?token=analyst-token-1").await;
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["datasources"]["people"]["ok"], true, "{body}");
    assert!(!body.contains("secret-source"), "{body}");

    let (_, body) = http_get(server.addr, "/healthz?token=admin-token-12").await;
    assert!(body.contains("secret-source"), "{body}");

    // The same for `/metrics`: a search of each puts both in its samples.
    let admin = format!("ws://{}/ws?token=admin-token-12", server.addr);
    let mut client = connect_with(&admin, &[]).await.expect("the admin connects");
    client.recv().await;
    client
        .items(&["people", "secret-source"], "*", 0, 1, "#000")
        .await;
    let datasource_label = |id: &str| format!("datasource=\"{id}\"");
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("tributary_connections_open"), "{body}");
    assert!(!body.contains(&datasource_label("secret-source")), "{body}");
    assert!(!body.contains(&datasource_label("people")), "{body}");
    let (_, body) = http_get(server.addr, "/metrics?token=analyst-token-1").await;
    assert!(body.contains(&datasource_label("people")), "{body}");
    assert!(!body.contains(&datasource_label("secret-source")), "{body}");
    let (_, body) = http_get(server.addr, "/metrics?token=admin-token-12").await;
    assert!(body.contains(&datasource_label("secret-source")), "{body}");
}

/// Opens a websocket by hand and reads the INITIAL_STATE_RECEIVE's frame header.
async fn raw_session(server: &tributary::http::ServerHandle) -> tokio::net::TcpStream {
    let (status, stream) = raw::upgrade(server.addr, "/ws", &[]).await;
    assert_eq!(status, 101);
    stream
}

#[tokio::test]
async fn a_frame_announcing_a_huge_length_closes_at_its_header() {
    // Measures the whole process: alone in one.
    if rerun_alone("security::a_frame_announcing_a_huge_length_closes_at_its_header") {
        return;
    }
    let server = start(vec![datasource("people", "people", json!({"count": 5}))]);
    for length in [(1u64 << 63) - 1, 1 << 40] {
        let mut stream = raw_session(&server).await;
        let before = rss_bytes();
        stream
            .write_all(&raw::frame_header(true, 1, length))
            .await
            .expect("writes");
        // Keep pushing payload: the server must not buffer it.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            // Once the server stops reading, the socket's buffers fill and writes stall.
            let write = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&chunk));
            if !matches!(write.await, Ok(Ok(()))) {
                break;
            }
        }
        assert_eq!(
            raw::close_code(&mut stream, PATIENCE).await,
            Some(4420),
            "declared length {length}"
        );
        let grown = rss_bytes().saturating_sub(before);
        assert!(grown < 32 << 20, "the server grew by {grown} bytes");
    }
    let (mut client, _) = Client::ready(&server).await;
    client.send(json!({"type":"PING"})).await;
    assert_eq!(client.recv().await["type"], "PONG");
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_closes_with_4420() {
    let server = start(vec![datasource("people", "people", json!({"count": 5}))]);
    let mut stream = raw_session(&server).await;
    let part = vec![b' '; 40 * 1024];
    stream
        .write_all(&raw::frame(false, 1, &part))
        .await
        .expect("writes");
    let _ = stream.write_all(&raw::frame(true, 0, &part)).await;
    assert_eq!(raw::close_code(&mut stream, PATIENCE).await, Some(4420));

    // Within the limit, fragments make one message.
    let mut stream = raw_session(&server).await;
    let message = json!({"type":"PING","t":7}).to_string().into_bytes();
    let (a, b) = message.split_at(5);
    stream
        .write_all(&raw::frame(false, 1, a))
        .await
        .expect("writes");
    stream
        .write_all(&raw::frame(true, 0, b))
        .await
        .expect("writes");
    assert_eq!(
        raw::next_json(&mut stream).await["type"],
        "INITIAL_STATE_RECEIVE"
    );
    let pong = raw::next_json(&mut stream).await;
    assert_eq!((&pong["type"], &pong["t"]), (&json!("PONG"), &json!(7)));
    // A close from the client is answered with a close.
    stream
        .write_all(&raw::frame(true, 8, &1000u16.to_be_bytes()))
        .await
        .expect("writes");
    assert_eq!(raw::close_code(&mut stream, PATIENCE).await, Some(1000));
}

#[tokio::test]
async fn websocket_pings_count_against_the_rate_limit() {
    let mut settings = settings(vec![datasource("people", "people", json!({"count": 5}))]);
    settings.limits.max_messages_per_second = 20;
    let server = start_with(settings);
    let mut stream = raw_session(&server).await;
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend(raw::frame(true, 9, b"hi"));
    }
    let _ = stream.write_all(&burst).await;
    assert_eq!(raw::close_code(&mut stream, PATIENCE).await, Some(4420));
}

/// A datasource whose work goes on in a thread for a while after its
/// request is canceled, holding the request's lease as the built-in
/// adapters do.
struct LingeringDatasource {
    working: Arc<AtomicUsize>,
    linger: Duration,
}

#[async_trait]
impl Datasource for LingeringDatasource {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        Ok(FieldList::default())
    }

    async fn search(
        &self,
        _: &RequestContext,
        _query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let lease = results.lease();
        let (working, linger) = (Arc::clone(&self.working), self.linger);
        working.fetch_add(1, Ordering::SeqCst);
        let thread = tokio::task::spawn_blocking(move || {
            std::thread::sleep(linger);
            working.fetch_sub(1, Ordering::SeqCst);
            drop(lease);
        });
        let _ = thread.await;
        Ok(())
    }
}

#[tokio::test]
async fn canceled_work_counts_until_it_has_stopped() {
    let working = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::with_builtin();
    let shared = Arc::clone(&working);
    registry.register("lingering", move |_| {
        Ok(Arc::new(LingeringDatasource {
            working: Arc::clone(&shared),
            linger: Duration::from_millis(1500),
        }) as Arc<dyn Datasource>)
    });
    let mut settings = settings(vec![datasource("slow", "lingering", json!({}))]);
    settings.limits.max_requests = 4;
    let server = start_with_registry(settings, registry);
    let (mut client, _) = Client::ready(&server).await;
    for id in 0..4 {
        client
            .send(
                json!({"type":"ITEMS_REQUEST","datasources":["slow"],"query":"x","request-id":id}),
            )
            .await;
    }
    eventually("four searches work", || working.load(Ordering::SeqCst) == 4).await;
    for id in 0..4 {
        client
            .send(json!({"type":"CANCEL_REQUEST","request-id":id}))
            .await;
        assert_eq!(client.recv().await["type"], "REQUEST_CANCELED");
    }
    // Their work goes on, so they still count: a fifth request is refused.
    client
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":["slow"],"query":"x","request-id":"fifth"}),
        )
        .await;
    let refused = client.recv().await;
    assert_eq!(refused["error"]["code"], "too_many_requests", "{refused}");
    let metrics = http_get(server.addr, "/metrics").await.1;
    assert_eq!(metric(&metrics, "tributary_requests_running"), Some(4.0));
    // Canceling twice finds nothing left to cancel.
    client
        .send(json!({"type":"CANCEL_REQUEST","request-id":0}))
        .await;
    assert_eq!(client.recv().await["error"]["code"], "unknown_request");
    // Once the work has stopped, the places are free again.
    eventually("the work stops", || working.load(Ordering::SeqCst) == 0).await;
    metric_eventually(server.addr, "tributary_requests_running", 0.0).await;
    client
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":["slow"],"query":"x","request-id":"again"}),
        )
        .await;
    eventually("a new search works", || working.load(Ordering::SeqCst) == 1).await;
}

/// Words a message in the user's terms never contains: names of the server's types.
const INTERNAL_NAMES: &[&str] = &[
    "enum",
    "struct",
    "RequestId",
    "ParseIntError",
    "ParseFloatError",
    "{ kind",
    "u64",
    "i64",
    "usize",
    "Some(",
    "None",
    "Error {",
    "ItemsRequest",
    "FieldsRequest",
    "SearchReply",
    "a sequence",
    "a map",
];

fn assert_user_terms(message: &str, context: &str) {
    for name in INTERNAL_NAMES {
        assert!(
            !message.contains(name),
            "{context}: `{message}` contains `{name}`"
        );
    }
}

#[tokio::test]
async fn error_messages_speak_the_users_terms() {
    let server = start(vec![datasource("people", "people", json!({"count": 20}))]);
    let (mut client, _) = Client::ready(&server).await;
    let frames = [
        r#"{"type":"CANCEL_REQUEST","request-id":[1]}"#,
        r#"{"type":"CANCEL_REQUEST","request-id":1.5}"#,
        r#"{"type":"CANCEL_REQUEST"}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","request-id":{}}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","size":-3}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","size":1e40}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","from":"1"}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":[1,2],"query":"x"}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":7}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"x","color":false}"#,
        r#"{"type":"FIELDS_REQUEST","datasources":null}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"age:[1 TO"}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"name:(a"}"#,
        r#"{"type":"ITEMS_REQUEST","datasources":["people"],"query":"name:a~x"}"#,
        r#"{"type":"SUBSCRIBE","channels":"status:people"}"#,
        r#"{"type":"SUBSCRIBE","channels":[1]}"#,
        r#"{"type":"UNSUBSCRIBE","channels":{"a":1}}"#,
    ];
    for frame in frames {
        client.send_text(frame).await;
        let reply = client.recv().await;
        assert_eq!(reply["type"], "ERROR", "{frame}: {reply}");
        assert_user_terms(
            reply["error"]["message"].as_str().unwrap_or_default(),
            frame,
        );
        // What the user typed is the user's to fix, never a datasource failure.
        assert_ne!(
            reply["error"]["code"], "datasource_failed",
            "{frame}: {reply}"
        );
    }
    // Values that do not fit a field, as in Elasticsearch's lenient mode,
    // match nothing instead of failing.
    for query in [
        "age:abc",
        "age:1.5",
        "age:[a TO b]",
        "name:/[/",
        "age:*1*",
        "age:>=x",
    ] {
        let answer = client.items(&["people"], query, 0, 3, "#000").await;
        assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{query}: {}", answer[0]);
        assert_eq!(items_of(&answer[0])["total"], 0, "{query}");
    }
    still_answers(&mut client).await;
}

#[tokio::test]
async fn credentials_and_backend_addresses_never_reach_clients() {
    let mut es = datasource(
        "es",
        "elasticsearch",
        json!({"url": "http://elastic:hunter2-secret@127.0.0.1:1", "index": "logs"}),
    );
    es.timeout = Some(Duration::from_secs(5));
    let server = start(vec![
        es,
        datasource("people", "people", json!({"count": 3})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es", "people"], "*", 0, 1, "#abc").await;
    let error = answer
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("es fails");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("connection refused"), "{message}");
    assert!(
        !message.contains("hunter2")
            && !message.contains("127.0.0.1:1")
            && !message.contains("elastic:"),
        "{message}"
    );
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["es"]}))
        .await;
    let fields = client.recv().await.to_string();
    assert!(
        !fields.contains("hunter2") && !fields.contains("127.0.0.1:1"),
        "{fields}"
    );
    let health = http_get(server.addr, "/healthz").await.1;
    assert!(health.contains("\"es\""), "{health}");
    assert!(
        !health.contains("hunter2") && !health.contains("127.0.0.1:1"),
        "{health}"
    );
}

#[tokio::test]
async fn upstream_bodies_are_not_echoed() {
    // Something that is not Elasticsearch answers, with a page of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let body = "<html>internal proxy page: db-7.corp.example</html>";
                let response = format!(
                    "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    let server = start(vec![datasource(
        "es",
        "elasticsearch",
        json!({"url": format!("http://{addr}"), "index": "logs"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es"], "*", 0, 1, "#abc").await;
    let message = answer[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("502"), "{message}");
    assert!(
        !message.contains("db-7.corp") && !message.contains(&addr.to_string()),
        "{message}"
    );
}

/// Sends a POST's headers and up to `sent` bytes of its body, then stalls;
/// returns the status the server answered with (0 if it only closed) and
/// how long that took.
async fn stalled_upload(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
    announced: usize,
    sent: usize,
) -> (u16, Duration) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {announced}\r\n{headers}\r\n"
    );
    // Writing goes on in the background (the server may stop reading at
    // once); the answer is read meanwhile.
    let writing = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        let mut left = sent;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        // Stalled: the body never ends.
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(writer);
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break 0,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&response);
                if let Some(status) = text
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|rest| rest.get(..3))
                    .and_then(|code| code.parse().ok())
                {
                    break status;
                }
            }
        }
    };
    let took = started.elapsed();
    writing.abort();
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_bodies_are_bounded_before_they_are_read() {
    // Measures the whole process: alone in one.
    if rerun_alone("security::publish_bodies_are_bounded_before_they_are_read") {
        return;
    }
    let mut settings = settings(vec![datasource(
        "tweets",
        "fixtures",
        json!({"embedded": "tweets"}),
    )]);
    settings.auth.tokens = BTreeMap::from([(
        "publisher".to_owned(),
        TokenSettings {
            token: "publisher-token-1".into(),
            datasources: None,
            publish: true,
        },
    )]);
    settings.publish.body_timeout = Duration::from_secs(1);
    settings.limits.max_connections = 6;
    let server = start_with(settings);
    let path = "/api/datasources/tweets/records";

    // Without a token: refused from the headers, the body never read, the
    // memory of twenty 14 MiB uploads never held.
    let before = rss_bytes();
    let uploads = (0..20).map(|_| stalled_upload(server.addr, path, "", 16 << 20, 14 << 20));
    for (status, took) in futures_util::future::join_all(uploads).await {
        assert!(matches!(status, 403 | 0), "{status}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "grew {} MiB", grown >> 20);

    // Announcing more than the limit: 413 before the body.
    let token = "Authorization: Bearer publisher-token-1\r\n";
    let (status, took) = stalled_upload(server.addr, path, token, 17 << 20, 0).await;
    assert_eq!(status, 413);
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Stalled uploads hold connection places until `publish.body_timeout`,
    // then are answered 408 and closed: the places come back.
    let stalls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(stalled_upload(server.addr, path, token, 1000, 10)))
        .collect();
    // The uploads hold every place.
    metric_eventually(server.addr, "tributary_connections_open", 6.0).await;
    let websocket = format!("ws://{}/ws?token=publisher-token-1", server.addr);
    assert_eq!(
        connect_with(&websocket, &[]).await.err(),
        Some(503),
        "no place left for a websocket"
    );
    for stall in stalls {
        let (status, took) = stall.await.expect("the upload task");
        assert_eq!(status, 408);
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    let mut client = connect_with(&websocket, &[]).await.expect("a place again");
    assert_eq!(client.recv().await["type"], "INITIAL_STATE_RECEIVE");
    still_answers_tweets(&mut client).await;
    let (_, exposition) = http_get(server.addr, "/metrics").await;
    assert_eq!(
        metric(
            &exposition,
            "tributary_limit_refusals_total{limit=\"publish.body_timeout\"}"
        ),
        Some(6.0),
        "{exposition}"
    );

    // A body of tiny records that would take far more parsed than written
    // is refused before it is parsed.
    let addr = server.addr;
    let publish = |body: String| async move {
        http_post(
            addr,
            path,
            &[("Authorization", "Bearer publisher-token-1")],
            &body,
        )
        .await
    };
    let (status, reply) = publish("{}\n".repeat((16 << 20) / 3)).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("too many small values"), "{reply}");
    // Ordinary records of the same size are taken.
    let record = |n: usize| {
        format!("{{\"id\":\"p{n}\",\"text\":\"a published record about bitcoin number {n}\",\"lang\":\"en\"}}\n")
    };
    let (status, reply) = publish((0..2_000).map(record).collect()).await;
    assert_eq!(status, 200, "{reply}");
}

async fn still_answers_tweets(client: &mut Client) {
    let answer = client.items(&["tweets"], "bitcoin", 0, 2, "#0f0").await;
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_own_link_cannot_grow_values_without_bound() {
    // Measures the whole process: alone in one.
    if rerun_alone("security::a_requests_own_link_cannot_grow_values_without_bound") {
        return;
    }
    let server = start(tributary::config::demo_datasources());
    let (mut light, _) = Client::ready(&server).await;
    still_answers_tweets(&mut light).await;
    // Three rewrites each replacing every character by itself a hundred
    // times: 100³ times each value, unbounded.
    let grow = json!({"regex": ".", "with": "$0".repeat(100)});
    let hostile = json!({"type": "EXPAND_REQUEST", "datasources": ["tweets"],
        "values": [{"field": "user.screen_name", "value": "satoshi"}], "fields": ["mentions"],
        "links": [{"name": "grow", "fields": [
            {"datasource": "tweets", "field": "user.screen_name"},
            {"datasource": "tweets", "field": "mentions"}],
            "replace": [grow, grow, grow]}]});
    let before = rss_bytes();
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let (mut client, _) = Client::ready(&server).await;
        let mut request = hostile.clone();
        attackers.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for n in 0..3 {
                request["request-id"] = json!(n);
                let started = std::time::Instant::now();
                client.send(request.clone()).await;
                let answer = client
                    .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
                    .await;
                assert!(
                    answer
                        .iter()
                        .all(|m| m["type"] != "ERROR" || m["error"]["code"] != "internal"),
                    "{answer:?}"
                );
                took.push(started.elapsed());
            }
            took
        }));
    }
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        still_answers_tweets(&mut light).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for attacker in attackers {
        for took in attacker.await.expect("the attacker's task") {
            assert!(took < Duration::from_secs(10), "an expansion took {took:?}");
        }
    }
    assert_slowest_under("light search during hostile expansions", latencies, 2000.0);
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "grew {} MiB", grown >> 20);
    // A `with` longer than a pattern may be is refused at once, by name.
    let mut long = hostile.clone();
    long["links"][0]["replace"] = json!([{"regex": ".", "with": "x".repeat(600)}]);
    long["request-id"] = json!("long");
    light.send(long).await;
    let refused = light.recv_until(|m| m["type"] == "ERROR").await;
    let text = refused.last().map(ToString::to_string).unwrap_or_default();
    assert!(text.contains("`with`"), "{text}");
}
