//! Test helpers: a real server on an ephemeral loopback port, a real
//! websocket client, and small datasources with controllable behaviour.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tributary::config::Settings;
use tributary::datasources::embedded::EmbeddedDatasource;
use tributary::datasources::{
    Datasource, DatasourceError, DatasourceSettings, FieldList, Registry, RequestContext,
    ResultSink, SearchQuery,
};
use tributary::http::ServerHandle;
use tributary_client::Frame;

/// Upper bound on waiting for any one message, so a broken server fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn datasource(id: &str, kind: &str, options: Value) -> DatasourceSettings {
    DatasourceSettings {
        id: id.into(),
        name: id.to_uppercase(),
        kind: kind.into(),
        timeout: None,
        options: options.as_object().cloned().unwrap_or_default(),
        data_dir: None,
    }
}

/// Settings with the given datasources and everything else default, listening on an ephemeral port.
pub fn settings(datasources: Vec<DatasourceSettings>) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        datasources,
        ..Settings::default()
    }
}

/// The builtin adapters plus the test adapters `slow`, `failing` and `people`.
pub fn registry() -> Registry {
    let mut registry = Registry::with_builtin();
    registry.register("slow", |s| {
        let delay_ms = s
            .options
            .get("delay_ms")
            .and_then(Value::as_u64)
            .unwrap_or(500);
        Ok(Arc::new(SlowDatasource {
            delay: Duration::from_millis(delay_ms),
            inner: people(30),
        }) as Arc<dyn Datasource>)
    });
    registry.register("failing", |_| {
        Ok(Arc::new(FailingDatasource) as Arc<dyn Datasource>)
    });
    registry.register("bulky", |_| {
        Ok(Arc::new(BulkyDatasource) as Arc<dyn Datasource>)
    });
    registry.register("people", |s| {
        let count = s
            .options
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize;
        Ok(Arc::new(people(count)) as Arc<dyn Datasource>)
    });
    registry
}

/// A healthy (`people`) and a failing (`down`) datasource, their health
/// measured every 150 ms: for the live channels.
pub fn live_settings() -> Settings {
    let mut settings = settings(vec![
        datasource("people", "people", json!({"count": 10})),
        datasource("down", "failing", json!({})),
    ]);
    settings.live.health_interval = Duration::from_millis(150);
    settings
}

pub fn start(datasources: Vec<DatasourceSettings>) -> ServerHandle {
    start_with(settings(datasources))
}

pub fn start_with(settings: Settings) -> ServerHandle {
    tributary::http::spawn(settings, registry()).expect("server starts")
}

/// `count` people records: `{"id":"p<i>","name":"person <i>","group":"g<i%5>","age":i,"address":{"city":...}}`.
pub fn people_records(count: usize) -> Vec<Map<String, Value>> {
    (0..count)
        .map(|i| {
            let city = ["Amsterdam", "Berlin", "Paris"][i % 3];
            json!({
                "id": format!("p{i}"),
                "name": format!("person {i}"),
                "group": format!("g{}", i % 5),
                "age": i,
                "address": {"city": city},
                "tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd", "prime?"]) },
            })
            .as_object()
            .cloned()
            .unwrap_or_default()
        })
        .collect()
}

pub fn people(count: usize) -> EmbeddedDatasource {
    EmbeddedDatasource::from_records("people", people_records(count)).expect("people index")
}

/// Answers like `people`, but only after a delay.
pub struct SlowDatasource {
    pub delay: Duration,
    pub inner: EmbeddedDatasource,
}

#[async_trait]
impl Datasource for SlowDatasource {
    async fn fields(&self, request: &RequestContext) -> Result<FieldList, DatasourceError> {
        tokio::time::sleep(self.delay).await;
        self.inner.fields(request).await
    }
    async fn search(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        tokio::time::sleep(self.delay).await;
        self.inner.search(request, query, results).await
    }
}

/// Always fails, as an unreachable backend would.
pub struct FailingDatasource;

#[async_trait]
impl Datasource for FailingDatasource {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        Err(DatasourceError::unavailable("connection refused"))
    }
    async fn search(
        &self,
        _: &RequestContext,
        _: &SearchQuery,
        _: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        Err(DatasourceError::unavailable("connection refused"))
    }
    async fn health(&self) -> Result<tributary::datasources::Healthy, DatasourceError> {
        Err(DatasourceError::unavailable("connection refused"))
    }
}

/// Counts how many of its calls are still running, to see that cancellation really stops them.
pub struct Gauge(pub Arc<AtomicUsize>);

impl Gauge {
    pub fn enter(counter: &Arc<AtomicUsize>) -> Gauge {
        counter.fetch_add(1, Ordering::SeqCst);
        Gauge(Arc::clone(counter))
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub enum Event {
    Json(Value),
    Closed(Closed),
}

/// A test's view of a connection: JSON in, JSON out, and every wait bounded
/// by [`PATIENCE`]. The reading is `tributary_client`'s; [`Client::typed`]
/// gives its typed API (requests, replies, cancel).
pub struct Client {
    inner: tributary_client::Client,
}

/// How a connection ended, as seen by the client.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoCode,
}

impl Client {
    pub async fn connect(server: &ServerHandle) -> Client {
        Self::connect_url(&format!("ws://{}/ws", server.addr)).await
    }

    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            inner: tributary_client::Client::without_greeting(ws),
        }
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client::from_stream(ws)
    }

    /// Connects and reads the INITIAL_STATE_RECEIVE.
    pub async fn ready(server: &ServerHandle) -> (Client, Value) {
        let mut client = Self::connect(server).await;
        let initial = client.recv().await;
        assert_eq!(initial["type"], "INITIAL_STATE_RECEIVE", "{initial}");
        (client, initial)
    }

    /// The typed client underneath.
    pub fn typed(&mut self) -> &mut tributary_client::Client {
        &mut self.inner
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner.send_text(text).await.expect("send");
    }

    /// Sends a frame; an error means the server already closed the connection.
    pub async fn try_send_raw(&mut self, message: Message) -> Result<(), String> {
        self.inner
            .send_raw(message)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.inner.send_raw(message).await.expect("send");
    }

    async fn next_frame(&mut self) -> Result<Frame, tributary_client::ClientError> {
        tokio::time::timeout(PATIENCE, self.inner.next_frame())
            .await
            .expect("a message in time")
    }

    /// The next JSON message or the end of the connection.
    pub async fn next_event(&mut self) -> Event {
        match self.next_frame().await {
            Ok(Frame::Text(text)) => {
                Event::Json(serde_json::from_str(&text).expect("server sends JSON"))
            }
            Ok(Frame::Binary(bytes)) => panic!("the server sent a binary frame: {bytes:?}"),
            Ok(Frame::Closed(Some(code))) => Event::Closed(Closed::Code(code)),
            Ok(Frame::Closed(None)) | Err(_) => Event::Closed(Closed::NoCode),
        }
    }

    /// The next JSON message (pings are answered by the client library).
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Event::Json(value) => value,
            Event::Closed(closed) => {
                panic!("expected a text message, the connection closed: {closed:?}")
            }
        }
    }

    /// Messages until (and including) the first for which `last` holds.
    pub async fn recv_until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let message = self.recv().await;
            let done = last(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Event::Closed(closed) = self.next_event().await {
                return closed;
            }
        }
    }

    /// Asks for items and collects every message until one per datasource has
    /// arrived (ITEMS_RECEIVE or ERROR), for requests without a request id.
    pub async fn items(
        &mut self,
        datasources: &[&str],
        query: &str,
        from: u64,
        size: u64,
        color: &str,
    ) -> Vec<Value> {
        self.send(json!({"type":"ITEMS_REQUEST","datasources":datasources,"query":query,"from":from,"size":size,"color":color}))
            .await;
        let mut answers = Vec::new();
        while answers.len() < datasources.len() {
            answers.push(self.recv().await);
        }
        answers
    }
}

/// The `items` of an ITEMS_RECEIVE, checked for type.
pub fn items_of(message: &Value) -> &Value {
    assert_eq!(message["type"], "ITEMS_RECEIVE", "{message}");
    &message["items"]
}

pub fn ids(message: &Value) -> Vec<String> {
    items_of(message)["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

pub fn start_with_registry(settings: Settings, registry: Registry) -> ServerHandle {
    tributary::http::spawn(settings, registry).expect("server starts")
}

/// Never answers; counts its running calls in `running`.
pub struct HangingDatasource {
    pub running: Arc<AtomicUsize>,
}

#[async_trait]
impl Datasource for HangingDatasource {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        let _gauge = Gauge::enter(&self.running);
        std::future::pending().await
    }
    async fn search(
        &self,
        _: &RequestContext,
        _: &SearchQuery,
        _: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        let _gauge = Gauge::enter(&self.running);
        std::future::pending().await
    }
}

/// A registry with a `hanging` adapter whose running calls are counted.
pub fn registry_with_hanging(running: &Arc<AtomicUsize>) -> Registry {
    let mut registry = registry();
    let running = Arc::clone(running);
    registry.register("hanging", move |_| {
        Ok(Arc::new(HangingDatasource {
            running: Arc::clone(&running),
        }) as Arc<dyn Datasource>)
    });
    registry
}

/// Waits (boundedly) until `condition` holds.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Produces `size` records of about 4 KiB each, without any index: for filling socket buffers.
pub struct BulkyDatasource;

#[async_trait]
impl Datasource for BulkyDatasource {
    async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
        Ok(FieldList::default())
    }
    async fn search(
        &self,
        _: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError> {
        // One shared, pre-encoded body keeps this adapter cheap: it must fill
        // sockets, not the CPU of the server's runtime.
        let mut fields = Map::new();
        fields.insert("padding".into(), Value::from("x".repeat(4096)));
        let body = tributary::protocol::Item::from_fields("", &fields).fields;
        let mut sent = 0;
        results.set_total(query.size);
        while sent < query.size {
            let batch = (sent..(sent + 100).min(query.size))
                .map(|i| tributary::protocol::Item {
                    id: i.to_string(),
                    fields: Arc::clone(&body),
                    highlight: None,
                })
                .collect::<Vec<_>>();
            sent += batch.len() as u64;
            results.push(batch).await?;
        }
        Ok(())
    }
}

/// A plain HTTP/1.1 GET; returns the status and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], "").await
}

/// A GET with extra request headers.
pub async fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    http_request(addr, "GET", path, headers, "").await
}

/// The value of one sample in a Prometheus text exposition, e.g.
/// `metric(&text, "tributary_requests_total{outcome=\"completed\",type=\"ITEMS_REQUEST\"}")`.
pub fn metric(exposition: &str, sample: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}

/// Opens a websocket with extra request headers; on refusal returns the HTTP status.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a valid url");
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .expect("header name"),
            value.parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Client::from_stream(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected connection error: {other}"),
    }
}

/// This process's resident memory (the servers of a test run in it), from /proc.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Waits until `/metrics` reports `value` for `sample`.
/// Waits (within `PATIENCE`) until `sample` is at least `value`: for
/// counters raised just after the frame they count was queued.
pub async fn metric_at_least(addr: std::net::SocketAddr, sample: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = http_get(addr, "/metrics").await.1;
        if metric(&text, sample).is_some_and(|found| found >= value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} never reached {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn metric_eventually(addr: std::net::SocketAddr, sample: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = http_get(addr, "/metrics").await.1;
        if metric(&text, sample) == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} never became {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The queries of `tests/lucene/queries.txt` (one a line, `#` comments),
/// the list the query-language tests run on every datasource that
/// evaluates queries itself.
pub fn query_list() -> Vec<String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lucene/queries.txt"),
    )
    .expect("tests/lucene/queries.txt");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

pub mod es_mock;
pub mod es_scenarios;
pub mod pg;
pub mod raw;
pub mod remote_service;

/// A plain HTTP/1.1 POST with extra headers; returns the status and the body.
pub async fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http_request(addr, "POST", path, headers, body).await
}

/// One HTTP/1.1 request on a connection of its own; the status and the body.
async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_exchange(addr, method, path, headers, body).await;
    (status, body)
}

/// A POST as [`http_post`]: the status, the response's head (status line
/// and headers) and its body.
pub async fn http_post_with_head(
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    http_exchange(addr, "POST", path, &[], body).await
}

async fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("reads");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    (status, head, body)
}

/// An `EXPAND_RECEIVE`'s vertices as value → `doc_count` (one field asked).
pub fn vertex_counts(answer: &Value) -> std::collections::BTreeMap<String, u64> {
    answer["vertices"]
        .as_array()
        .unwrap_or_else(|| panic!("no vertices: {answer}"))
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap_or_default().to_owned(),
                v["doc_count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Asserts a light client's latencies (ms) measured during an attack all
/// stay under `bound_ms`, and prints their median and slowest.
pub fn assert_slowest_under(what: &str, mut latencies: Vec<f64>, bound_ms: f64) {
    latencies.sort_by(f64::total_cmp);
    let slowest = latencies.last().copied().unwrap_or(0.0);
    eprintln!(
        "{what}: p50 {:.0} ms, slowest {slowest:.0} ms",
        latencies.get(latencies.len() / 2).copied().unwrap_or(0.0)
    );
    assert!(slowest < bound_ms, "{what}: {latencies:?}");
}

/// For tests that measure the whole process (CPU time, resident memory),
/// which the other tests of this one binary running beside them would
/// disturb: runs `test` (its full name, `module::name`) again alone, in a
/// process of its own, asserts that it passed there, and returns true — the
/// caller then returns. In that process of its own it returns false, and
/// the test runs.
pub fn rerun_alone(test: &str) -> bool {
    const ALONE: &str = "TRIBUTARY_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test}, alone in a process:\n{stdout}\n{stderr}"
    );
    true
}
