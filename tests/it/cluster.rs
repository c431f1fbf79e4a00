//! Remote datasources across nodes: two tributary servers on the local
//! Redis (`127.0.0.1:6379`; `TRIBUTARY_TEST_REDIS` names another), a service
//! connected to one of them, clients on the other. Skipped, saying why,
//! when no Redis answers.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::remote_service::*;
use common::*;
use serde_json::json;
use tributary::config::{BrokerKind, Settings};
use tributary::http::ServerHandle;

fn redis_url() -> String {
    std::env::var("TRIBUTARY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether Redis answers; if not, the test says so and is skipped.
fn redis_available() -> bool {
    let url = redis_url();
    let address = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let reachable = std::net::TcpStream::connect_timeout(
        &address
            .parse()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 6379).into()),
        Duration::from_secs(1),
    )
    .is_ok();
    if !reachable {
        eprintln!("skipped: no Redis at {url} (set TRIBUTARY_TEST_REDIS)");
    }
    reachable
}

/// A channel prefix no other test (or run) shares.
fn prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tributary-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn node(prefix: &str, timeout: Duration) -> ServerHandle {
    node_with(prefix, timeout, Duration::from_secs(10))
}

fn node_with(prefix: &str, timeout: Duration, health_interval: Duration) -> ServerHandle {
    let mut settings: Settings = settings(tributary::config::demo_datasources());
    settings.live.health_interval = health_interval;
    settings.default_timeout = timeout;
    settings.limits.max_messages_per_second = 10_000;
    settings.broker.kind = BrokerKind::Redis;
    settings.broker.url = redis_url();
    settings.broker.prefix = prefix.to_owned();
    settings.publish.enabled = true;
    settings
        .services
        .insert("crm".into(), serving(TOKEN, &["crm"]));
    start_with(settings)
}

/// Two nodes on the same Redis and prefix.
fn two_nodes(timeout: Duration) -> (ServerHandle, ServerHandle) {
    let prefix = prefix();
    (node(&prefix, timeout), node(&prefix, timeout))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_on_one_node_serves_clients_of_another() {
    if !redis_available() {
        return;
    }
    let (a, b) = two_nodes(Duration::from_secs(10));
    let service = FakeService::start(&a, Behaviour::Serve { chunk: 7 }).await;
    let mut client = until_listed(&b, "crm").await;

    let fields = ask(
        &mut client,
        json!({"type": "FIELDS_REQUEST", "datasources": ["crm"], "request-id": "f"}),
    )
    .await;
    assert_eq!(fields[0]["type"], "FIELDS_RECEIVE", "{fields:?}");
    assert_eq!(
        fields[0]["fields"]["fields"][1],
        json!({"path": "team", "type": "keyword"})
    );

    let messages = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm", "tweets"], "query": "team:red",
                     "from": 5, "size": 30, "request-id": "q"}),
    )
    .await;
    assert!(errors_of(&messages).is_empty(), "{messages:?}");
    let got: Vec<String> = result_ids(&messages, "crm");
    let expected: Vec<String> = (0..RECORDS)
        .filter(|i| i % 2 == 0)
        .skip(5)
        .take(30)
        .map(|i| format!("c{i}"))
        .collect();
    assert_eq!(got, expected, "every result once, in order, through node A");
    assert_eq!(
        messages.last().expect("completed")["datasources"]["crm"]["total"],
        RECORDS / 2
    );
    service.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_on_one_node_cancels_at_the_service_of_another() {
    if !redis_available() {
        return;
    }
    let (a, b) = two_nodes(Duration::from_secs(10));
    let mut service = FakeService::start(&a, Behaviour::Hang).await;
    let mut client = until_listed(&b, "crm").await;
    client
        .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": "slow"}))
        .await;
    let search = service.next("SEARCH").await;
    client
        .send(json!({"type": "CANCEL_REQUEST", "request-id": "slow"}))
        .await;
    let canceled = client.recv().await;
    assert_eq!(canceled["type"], "REQUEST_CANCELED", "{canceled}");
    let cancel = service.next("CANCEL").await;
    assert_eq!(cancel["data"]["id"], search["id"], "{cancel}");
    service.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_leaves_mid_request_is_replaced_across_nodes() {
    if !redis_available() {
        return;
    }
    let (a, b) = two_nodes(Duration::from_secs(10));
    // The only service sends its first reply, then leaves; a new one
    // identifies (on node A again) and is asked for the rest.
    let first = FakeService::start(&a, Behaviour::LeaveAfterFirst { chunk: 10 }).await;
    let mut client = until_listed(&b, "crm").await;
    client
        .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "size": 35, "request-id": "q"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = FakeService::start(&a, Behaviour::Serve { chunk: 10 }).await;
    let messages = until_completed(&mut client, "q").await;
    assert!(errors_of(&messages).is_empty(), "{messages:?}");
    let got: Vec<String> = result_ids(&messages, "crm");
    let expected: Vec<String> = (0..35).map(|i| format!("c{i}")).collect();
    assert_eq!(got, expected, "every result once, in order");
    first.stop();
    second.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_dies_stops_being_routed_to() {
    if !redis_available() {
        return;
    }
    let (a, b) = two_nodes(Duration::from_secs(20));
    let service = FakeService::start(&a, Behaviour::Serve { chunk: 50 }).await;
    let mut client = until_listed(&b, "crm").await;
    // Node A goes away with its service.
    a.shutdown(Duration::ZERO).await;
    service.stop();
    // Node B stops routing to it, says so, and serves again as soon as the
    // service comes back through B.
    let started = std::time::Instant::now();
    loop {
        let (_, health) = http_get(b.addr, "/healthz").await;
        if health.contains("no service serves datasource `crm` now") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "node B still routes to node A: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = FakeService::start(&b, Behaviour::Serve { chunk: 50 }).await;
    let messages = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": "q"}),
    )
    .await;
    assert!(errors_of(&messages).is_empty(), "{messages:?}");
    assert_eq!(results_of(&messages, "crm").len(), 50);
    again.stop();
}

fn tweet(id: &str, text: &str) -> serde_json::Value {
    json!({"id": id, "created_at": "2026-11-24T10:00:00Z", "text": text,
           "user": {"screen_name": "cluster_tester", "followers_count": 3}})
}

#[tokio::test(flavor = "multi_thread")]
async fn records_published_on_one_node_reach_every_node() {
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    let a = node(&prefix, Duration::from_secs(10));
    let b = node(&prefix, Duration::from_secs(10));
    // A live query on node B.
    let (mut client, _) = Client::ready(&b).await;
    client
        .send(
            json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "text:zyzzyva",
                     "live": true, "request-id": "live"}),
        )
        .await;
    let started = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    assert!(results_of(&started, "tweets").is_empty(), "{started:?}");

    // Published on node A.
    let body = format!(
        "{}\n{}\n",
        tweet("c1", "a zyzzyva appears"),
        tweet("c2", "nothing to see")
    );
    let (status, answer) = http_post(a.addr, "/api/datasources/tweets/records", &[], &body).await;
    assert_eq!(status, 200, "{answer}");

    let append = client.recv().await;
    assert_eq!(append["items"]["append"], true, "{append}");
    let ids: Vec<&str> = append["items"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["c1"], "only the matching record, once: {append}");

    // A node that starts later replays the history: it finds them too.
    let c = node(&prefix, Duration::from_secs(10));
    let started = std::time::Instant::now();
    loop {
        let (mut late, _) = Client::ready(&c).await;
        let messages = ask(&mut late, json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "user.screen_name:cluster_tester",
                         "request-id": "q"})).await;
        if results_of(&messages, "tweets").len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "node C never had the records: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_checks(server: &ServerHandle) -> f64 {
    let (_, text) = http_get(server.addr, "/metrics").await;
    metric(&text, "tributary_health_checks_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_measures_health_for_all_and_another_takes_over() {
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    let interval = Duration::from_millis(200);
    let a = node_with(&prefix, Duration::from_secs(10), interval);
    let b = node_with(&prefix, Duration::from_secs(10), interval);
    // A subscriber on each node hears the channel values.
    let mut on_a = Client::ready(&a).await.0;
    let mut on_b = Client::ready(&b).await.0;
    for client in [&mut on_a, &mut on_b] {
        client
            .send(json!({"type": "SUBSCRIBE", "channels": ["status:tweets"]}))
            .await;
        let subscribed = client.recv_until(|m| m["type"] == "SUBSCRIBED").await;
        assert!(subscribed.last().is_some());
    }
    for client in [&mut on_a, &mut on_b] {
        let data = client.recv_until(|m| m["type"] == "DATA").await;
        assert_eq!(data.last().expect("DATA")["d"][1], true, "{data:?}");
    }
    // Only one of the two measures.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before_a, before_b) = (health_checks(&a).await, health_checks(&b).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ran_a, ran_b) = (
        health_checks(&a).await - before_a,
        health_checks(&b).await - before_b,
    );
    assert!(
        (ran_a > 0.0) != (ran_b > 0.0),
        "exactly one node measures: {ran_a} and {ran_b} checks in a second"
    );
    let (holder, other, mut listener) = if ran_a > 0.0 {
        (a, b, on_b)
    } else {
        (b, a, on_a)
    };
    // The holder goes away: the other takes over within a few seconds, and
    // its subscribers keep hearing values.
    holder.shutdown(Duration::ZERO).await;
    let started = std::time::Instant::now();
    let before = health_checks(&other).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if health_checks(&other).await > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no node took over the health checks"
        );
    }
    let data = listener.recv_until(|m| m["type"] == "DATA").await;
    assert_eq!(data.last().expect("DATA")["c"], "status:tweets");
    let (status, ready) = http_get(other.addr, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
}

/// A port no one listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Redis of the test's own on a free port (keeping its data in `dir`,
/// if given), and the port; `None`, said, when it cannot start.
fn own_redis(dir: Option<&std::path::Path>) -> Option<(OwnRedis, u16)> {
    let port = free_port();
    let started = OwnRedis::start_in(port, dir);
    if started.is_none() {
        eprintln!("skipped: redis-server could not be started");
    }
    started.map(|redis| (redis, port))
}

/// A Redis of the test's own, on a port of its own, that can be stopped and
/// started again.
struct OwnRedis {
    port: u16,
    process: std::process::Child,
}

impl OwnRedis {
    /// A Redis that keeps nothing.
    fn start(port: u16) -> Option<OwnRedis> {
        Self::start_in(port, None)
    }

    /// A Redis keeping its data in `dir` as the compose stack runs it
    /// (append-only file, each write flushed), or nothing without one.
    fn start_in(port: u16, dir: Option<&std::path::Path>) -> Option<OwnRedis> {
        let mut command = std::process::Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let process = command.stdout(std::process::Stdio::null()).spawn().ok()?;
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(OwnRedis { port, process })
    }

    fn stop(mut self) -> u16 {
        let _ = self.process.kill();
        let _ = self.process.wait();
        self.port
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn until_status(server: &ServerHandle, path: &str, want: u16) {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = http_get(server.addr, path).await;
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{path} stays {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_a_node_serves_searches_refuses_publishes_and_recovers() {
    let Some((redis, port)) = own_redis(None) else {
        return;
    };
    let prefix = prefix();
    let with_url = |url: String| {
        let mut settings: Settings = settings(tributary::config::demo_datasources());
        settings.broker.kind = BrokerKind::Redis;
        settings.broker.url = url;
        settings.broker.prefix = prefix.clone();
        settings.publish.enabled = true;
        start_with(settings)
    };
    let a = with_url(format!("redis://127.0.0.1:{port}"));
    let b = with_url(format!("redis://127.0.0.1:{port}"));
    until_status(&a, "/readyz", 200).await;
    until_status(&b, "/readyz", 200).await;
    let (mut client, _) = Client::ready(&b).await;
    client
        .send(
            json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "text:quux",
                     "live": true, "request-id": "live"}),
        )
        .await;
    client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    // One record while Redis is there: the client holds its position.
    let (status, body) = http_post(
        a.addr,
        "/api/datasources/tweets/records",
        &[],
        &tweet("q-before", "quux kept").to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = client.recv().await;
    assert_eq!(
        result_ids(std::slice::from_ref(&before), "tweets"),
        ["q-before"]
    );
    let held = json!({"offset": before["items"]["offset"], "epoch": before["items"]["epoch"]});
    assert!(
        held["offset"].is_u64() && held["epoch"].is_string(),
        "{before}"
    );

    // Redis goes away (and comes back empty: the history is lost).
    let port = redis.stop();
    let started = std::time::Instant::now();
    let health = loop {
        let (_, health) = http_get(a.addr, "/healthz").await;
        let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
        if health["broker"]["ok"] == false {
            break health;
        }
        assert!(started.elapsed() < PATIENCE, "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["broker"]["type"], "redis", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    // Searching needs no broker: the node stays ready.
    let (status, ready) = http_get(a.addr, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    // A publish is refused at once, nothing kept, with when to try again.
    let asked = std::time::Instant::now();
    let (status, head, body) = http_post_with_head(
        a.addr,
        "/api/datasources/tweets/records",
        &tweet("q0", "quux lost").to_string(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "refused after {:?}",
        asked.elapsed()
    );
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert!(body.contains("nothing was published"), "{body}");
    let (_, metrics) = http_get(a.addr, "/metrics").await;
    assert_eq!(
        metric(&metrics, "tributary_broker_up"),
        Some(0.0),
        "{metrics}"
    );
    // Searches go on.
    let (mut searcher, _) = Client::ready(&a).await;
    let messages = ask(&mut searcher, json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "*", "request-id": "s"})).await;
    assert!(
        errors_of(&messages).is_empty() && !results_of(&messages, "tweets").is_empty(),
        "{messages:?}"
    );

    // Redis comes back: the nodes reconnect by themselves, and a record
    // published on A reaches B's live query once.
    let _redis = OwnRedis::start(port).expect("redis-server starts again");
    until_status(&a, "/readyz", 200).await;
    until_status(&b, "/readyz", 200).await;
    let started = std::time::Instant::now();
    loop {
        let (status, body) = http_post(
            a.addr,
            "/api/datasources/tweets/records",
            &[],
            &tweet("q1", "quux found").to_string(),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let append = client.recv().await;
    let ids: Vec<&str> = append["items"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["q1"], "{append}");
    assert_ne!(
        append["items"]["epoch"], held["epoch"],
        "a Redis that lost its history starts a new epoch: {append}"
    );

    // A client that held a position of the lost history is told it was not
    // recovered, and gets the page again (this node kept its records).
    let (mut resumed, _) = Client::ready(&a).await;
    resumed
        .send(
            json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "text:quux",
                     "live": true, "request-id": "live", "resume": {"tweets": held}}),
        )
        .await;
    let messages = resumed.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let started = messages.last().expect("LIVE_STARTED");
    assert_eq!(
        started["datasources"]["tweets"]["recovered"], false,
        "{started}"
    );
    let mut page = result_ids(&messages, "tweets");
    page.sort();
    assert_eq!(page, ["q-before", "q1"], "{messages:?}");
}

/// A tributary process of its own, killed with SIGKILL when dropped.
struct Process {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _folder: tempfile_dir::Folder,
}

mod tempfile_dir {
    /// A folder removed when dropped.
    pub struct Folder(pub std::path::PathBuf);
    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Process {
    fn start(prefix: &str, health_interval: &str) -> Process {
        Self::start_on(&redis_url(), prefix, health_interval)
    }

    /// A node on the Redis at `url`, in a folder of its own (its
    /// configuration, and its data directory beside it).
    fn start_on(url: &str, prefix: &str, health_interval: &str) -> Process {
        Self::start_with_broker(url, prefix, health_interval, "")
    }

    /// A node as [`Process::start_on`] makes, with more keys of `[broker]`.
    fn start_with_broker(url: &str, prefix: &str, health_interval: &str, broker: &str) -> Process {
        let port = free_port();
        let folder = std::env::temp_dir().join(format!("tributary-cluster-{prefix}-{port}"));
        std::fs::create_dir_all(&folder).expect("a folder");
        std::fs::write(
            folder.join("node.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\n[live]\nhealth_interval = \"{health_interval}\"\n\
                 [publish]\nenabled = true\n[broker]\ntype = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n{broker}\n"
            ),
        )
        .expect("a config");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        Process {
            child: Self::spawn(&folder, addr),
            addr,
            _folder: tempfile_dir::Folder(folder),
        }
    }

    fn spawn(folder: &std::path::Path, addr: std::net::SocketAddr) -> std::process::Child {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("--config")
            .arg(folder.join("node.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tributary starts");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < PATIENCE, "tributary did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Starts it again on the same folder and address, after a kill.
    fn restart(&mut self) {
        self.child = Self::spawn(&self._folder.0, self.addr);
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no goodbye, no lease released
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn checks_of(addr: std::net::SocketAddr) -> f64 {
    let (_, text) = http_get(addr, "/metrics").await;
    metric(&text, "tributary_health_checks_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_processes_lose_their_lease_and_a_late_node_has_every_record() {
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    let mut a = Process::start(&prefix, "200ms");
    let mut b = Process::start(&prefix, "200ms");
    until_status_at(a.addr, "/readyz", 200).await;
    until_status_at(b.addr, "/readyz", 200).await;
    // Records published on A.
    for i in 0..5 {
        let (status, body) = http_post(
            a.addr,
            "/api/datasources/tweets/records",
            &[],
            &tweet(&format!("k{i}"), "killed nodes keep nothing from us").to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // Whoever measures health is killed with SIGKILL; the other takes over
    // when the lease expires.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ca, cb) = (checks_of(a.addr).await, checks_of(b.addr).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let a_measures = checks_of(a.addr).await > ca;
    let b_measures = checks_of(b.addr).await > cb;
    assert!(a_measures != b_measures, "exactly one node measures");
    let survivor = if a_measures {
        a.kill();
        b.addr
    } else {
        b.kill();
        a.addr
    };
    let killed_at = std::time::Instant::now();
    let before = checks_of(survivor).await;
    while checks_of(survivor).await <= before {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no node took the lease over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed_at.elapsed();
    assert!(
        took_over < Duration::from_secs(6),
        "took over after {took_over:?}"
    );
    // A node started now replays the history: every record, once.
    let c = Process::start(&prefix, "10s");
    let started = std::time::Instant::now();
    loop {
        let mut client = Client::connect_url(&format!("ws://{}/ws", c.addr)).await;
        let _greeting = client.recv().await;
        let messages = ask(
            &mut client,
            json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"],
                         "query": "text:\"killed nodes keep nothing\"", "request-id": "q"}),
        )
        .await;
        let mut ids: Vec<String> = result_ids(&messages, "tweets");
        ids.sort();
        if ids.len() == 5 {
            assert_eq!(ids, ["k0", "k1", "k2", "k3", "k4"]);
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the late node has {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_status_at(addr: std::net::SocketAddr, path: &str, want: u16) {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = http_get(addr, path).await;
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{path} stays {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a live request's appends until the connection ends or `enough`
/// records have come; adds their ids to `seen` and returns the last
/// position received.
async fn read_appends(
    client: &mut Client,
    seen: &mut Vec<String>,
    enough: usize,
    mut last: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    while seen.len() < enough {
        let message = match client.next_event().await {
            Event::Json(message) => message,
            Event::Closed(_) => break,
        };
        if message["type"] != "ITEMS_RECEIVE" {
            continue;
        }
        seen.extend(result_ids(std::slice::from_ref(&message), "tweets"));
        let items = &message["items"];
        if let (Some(offset), Some(epoch)) = (items["offset"].as_u64(), items["epoch"].as_str()) {
            last = Some(json!({"offset": offset, "epoch": epoch}));
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_resuming_on_another_node_after_a_sigkill_gets_every_record_once() {
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    let mut a = Process::start(&prefix, "10s");
    let b = Process::start(&prefix, "10s");
    until_status_at(a.addr, "/readyz", 200).await;
    until_status_at(b.addr, "/readyz", 200).await;
    // A live query on node A.
    let mut client = Client::connect_url(&format!("ws://{}/ws", a.addr)).await;
    let _greeting = client.recv().await;
    let request = json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"], "query": "text:resumable",
                         "size": 0, "live": true, "request-id": "live"});
    client.send(request.clone()).await;
    client.recv_until(|m| m["type"] == "LIVE_STARTED").await;

    // Records published on node B, one batch at a time, while A is killed.
    const RECORDS: usize = 120;
    let publisher = tokio::spawn(async move {
        for i in 0..RECORDS {
            let body = format!(
                "{}\n{}\n",
                tweet(&format!("m{i}"), "a resumable record"),
                tweet(&format!("n{i}"), "an unrelated one")
            );
            let (status, answer) =
                http_post(b.addr, "/api/datasources/tweets/records", &[], &body).await;
            assert_eq!(status, 200, "{answer}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b
    });
    let mut seen = Vec::new();
    let last = read_appends(&mut client, &mut seen, 30, None).await;
    a.kill();
    // What was already on its way arrives; then the socket ends.
    let last = read_appends(&mut client, &mut seen, RECORDS, last).await;
    let last = last.expect("appends carried positions");
    assert!(seen.len() < RECORDS, "node A was killed mid-stream");

    // The client reconnects to node B (as through the load balancer) and resumes.
    let b = publisher.await.expect("the publisher");
    let mut client = Client::connect_url(&format!("ws://{}/ws", b.addr)).await;
    let _greeting = client.recv().await;
    let mut resume = request.clone();
    resume["resume"] = json!({"tweets": last});
    client.send(resume).await;
    let started = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let started = started.last().expect("LIVE_STARTED");
    assert_eq!(
        started["datasources"]["tweets"]["recovered"], true,
        "{started}"
    );
    read_appends(&mut client, &mut seen, RECORDS, None).await;
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("m{i}")).collect();
    let mut got = seen.clone();
    got.sort();
    expected.sort();
    assert_eq!(
        got, expected,
        "every record exactly once (in order received: {seen:?})"
    );
    let mut in_order: Vec<usize> = seen.iter().map(|id| id[1..].parse().unwrap()).collect();
    let sorted = {
        let mut s = in_order.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(in_order, sorted, "in the order published");
    in_order.dedup();
    assert_eq!(in_order.len(), RECORDS);
}

async fn cluster_polls(server: &ServerHandle) -> f64 {
    let (_, text) = http_get(server.addr, "/metrics").await;
    metric(&text, "tributary_cluster_polls_total{datasource=\"es\"}").unwrap_or(0.0)
}

/// The next append's ids, skipping nothing else.
async fn appended_ids(client: &mut Client) -> Vec<String> {
    let append = client.recv().await;
    assert_eq!(append["items"]["append"], true, "{append}");
    result_ids(&[append], "es")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_polls_elasticsearch_for_the_live_queries_of_all() {
    if !redis_available() {
        return;
    }
    use common::es_scenarios::{index_docs, indices, new_events, Target};
    let mock = common::es_mock::MockEs::start(
        indices()
            .into_iter()
            .map(|(name, index)| (name.to_owned(), index))
            .collect(),
    );
    let target = Target {
        url: mock.url(),
        prefix: String::new(),
    };
    let prefix = prefix();
    let es_node = || {
        let source = target.source(
            "es",
            "events",
            json!({"live_field": "at", "live_interval": "100ms"}),
        );
        let mut settings: Settings = settings(vec![source]);
        settings.broker.kind = BrokerKind::Redis;
        settings.broker.url = redis_url();
        settings.broker.prefix = prefix.clone();
        start_with(settings)
    };
    let (a, b) = (es_node(), es_node());
    let live = json!({"type": "ITEMS_REQUEST", "datasources": ["es"], "query": "alpha",
                      "request-id": "l", "live": true});
    let (mut on_a, _) = Client::ready(&a).await;
    let (mut on_b, _) = Client::ready(&b).await;
    for client in [&mut on_a, &mut on_b] {
        client.send(live.clone()).await;
        let messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
        let mut page = result_ids(&messages, "es");
        page.sort();
        assert_eq!(page, ["e0", "e1", "e2"], "{messages:?}");
    }

    // One node polls, for both.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (pa, pb) = (cluster_polls(&a).await, cluster_polls(&b).await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let a_polls = cluster_polls(&a).await > pa;
    let b_polls = cluster_polls(&b).await > pb;
    assert!(
        a_polls != b_polls,
        "exactly one node polls (A: {a_polls}, B: {b_polls})"
    );

    // New documents reach the live queries of both nodes, once each.
    index_docs(&target, "events", &new_events()).await;
    assert_eq!(appended_ids(&mut on_a).await, ["e3", "e4"]);
    assert_eq!(appended_ids(&mut on_b).await, ["e3", "e4"]);

    // The polling node goes away; the other takes over, from where it was.
    let (survivor, mut client) = if a_polls {
        a.shutdown(Duration::from_millis(100)).await;
        (b, on_b)
    } else {
        b.shutdown(Duration::from_millis(100)).await;
        (a, on_a)
    };
    let before = cluster_polls(&survivor).await;
    index_docs(
        &target,
        "events",
        &[
            (
                "e6",
                json!({"at": "2026-11-23T10:00:02Z", "msg": "alpha six"}),
            ),
            (
                "e7",
                json!({"at": "2026-11-23T10:00:04Z", "msg": "alpha seven"}),
            ),
        ],
    )
    .await;
    let mut ids = appended_ids(&mut client).await;
    while ids.len() < 2 {
        ids.extend(appended_ids(&mut client).await);
    }
    assert_eq!(ids, ["e6", "e7"], "each new document once");
    let started = std::time::Instant::now();
    while cluster_polls(&survivor).await <= before {
        assert!(started.elapsed() < PATIENCE, "the survivor never polled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.send(json!({"type": "PING"})).await;
    assert_eq!(client.recv().await["type"], "PONG", "no other append");
}

/// Sends one command to the test Redis (RESP over TCP) and returns its answer's first line.
fn redis_command(args: &[&str]) -> String {
    let address = redis_url()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    redis_command_at(&address, args)
}

/// A command to the Redis on `port` of this machine; its answer's first line.
fn redis_command_on(port: u16, args: &[&str]) -> String {
    redis_command_at(&format!("127.0.0.1:{port}"), args)
}

fn redis_command_at(address: &str, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("Redis");
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes()).expect("a command");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("an answer");
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_stream_entries_are_skipped_and_nothing_else_is_lost() {
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    // What another program (or a damaged Redis) could have left in the
    // streams: no offset, a payload that is no batch, a measure that is no
    // measure, polled documents that are not.
    let key = |stream: &str| format!("{prefix}:stream:{stream}");
    for (stream, fields) in [
        ("records:tweets", vec!["p", "not json"]),
        (
            "records:tweets",
            vec!["o", "1", "e", "x", "p", "{\"records\": 5}"],
        ),
        ("health:tweets", vec!["o", "1", "e", "x", "p", "[]"]),
        ("polled:tweets", vec!["o", "1", "e", "x", "p", "{}"]),
    ] {
        let stream_key = key(stream);
        let mut args = vec!["XADD", stream_key.as_str(), "*"];
        args.extend(fields.iter().copied());
        let answer = redis_command(&args);
        assert!(answer.starts_with('$'), "XADD: {answer}");
    }
    // A node started on them replays them, skips what it cannot read, and
    // applies what comes next.
    let a = node(&prefix, Duration::from_secs(10));
    until_status(&a, "/readyz", 200).await;
    let (status, body) = http_post(
        a.addr,
        "/api/datasources/tweets/records",
        &[],
        &tweet("u1", "unharmed by what came before").to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"searchable\":true"), "{body}");
    let (mut client, _) = Client::ready(&a).await;
    let messages = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["tweets"],
                                            "query": "text:unharmed", "request-id": "q"}),
    )
    .await;
    assert_eq!(result_ids(&messages, "tweets"), ["u1"], "{messages:?}");
    let (status, _) = http_get(a.addr, "/healthz").await;
    assert_eq!(status, 200);
}

/// How many tweets match `query` on the node at `addr`.
async fn total_at(addr: std::net::SocketAddr, query: &str) -> u64 {
    let mut client = Client::connect_url(&format!("ws://{addr}/ws")).await;
    let _greeting = client.recv().await;
    let answer = client.items(&["tweets"], query, 0, 0, "#000").await;
    items_of(&answer[0])["total"].as_u64().expect("a total")
}

/// Batch `n`: five tweets without ids (a batch applied twice would show).
fn kept_batch(n: usize) -> String {
    (0..5)
        .map(|_| {
            json!({"created_at": "2026-11-23T10:00:00Z", "text": format!("kept by every node {n}"),
                   "user": {"screen_name": "durable", "followers_count": 1}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn publish_kept(addr: std::net::SocketAddr, n: usize) -> serde_json::Value {
    let (status, body) =
        http_post(addr, "/api/datasources/tweets/records", &[], &kept_batch(n)).await;
    assert_eq!(status, 200, "batch {n}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

const KEPT: &str = "text:\"kept by every node\"";

#[tokio::test(flavor = "multi_thread")]
async fn published_records_outlive_node_and_redis_restarts_and_a_node_is_ready_only_when_whole() {
    let redis_dir = tempfile::tempdir().expect("a folder");
    let Some((redis, port)) = own_redis(Some(redis_dir.path())) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = prefix();
    let a = Process::start_on(&url, &prefix, "10s");
    let mut b = Process::start_on(&url, &prefix, "10s");
    until_status_at(a.addr, "/readyz", 200).await;
    until_status_at(b.addr, "/readyz", 200).await;
    let first = publish_kept(a.addr, 0).await;
    for n in 1..20 {
        publish_kept(if n % 2 == 0 { a.addr } else { b.addr }, n).await;
    }
    for addr in [a.addr, b.addr] {
        let started = std::time::Instant::now();
        while total_at(addr, KEPT).await != 100 {
            assert!(started.elapsed() < PATIENCE, "{addr} never held all 100");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // B is killed and misses ten batches.
    b.kill();
    for n in 20..30 {
        publish_kept(a.addr, n).await;
    }

    // Redis is killed: A goes on serving searches, and says so when ready
    // is asked; publishes are refused at once, nothing kept.
    let port = redis.stop();
    let (status, ready) = http_get(a.addr, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let asked = std::time::Instant::now();
    let (status, head, body) =
        http_post_with_head(a.addr, "/api/datasources/tweets/records", &kept_batch(99)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(total_at(a.addr, KEPT).await, 150);
    assert_eq!(total_at(a.addr, "text:\"kept by every node 99\"").await, 0);

    // Redis comes back with its data: the stream goes on in its epoch.
    let _redis =
        OwnRedis::start_in(port, Some(redis_dir.path())).expect("redis-server starts again");
    let started = std::time::Instant::now();
    let reply = loop {
        let (status, body) = http_post(
            a.addr,
            "/api/datasources/tweets/records",
            &[],
            &kept_batch(30),
        )
        .await;
        if status == 200 {
            break serde_json::from_str::<serde_json::Value>(&body).expect("JSON");
        }
        assert!(started.elapsed() < PATIENCE, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply["epoch"], first["epoch"], "{reply}");
    assert_eq!(reply["offset"], 31, "{reply}");

    // B restarts on its data: ready only once it holds what A holds, and
    // what it held already is not added twice.
    b.restart();
    let started = std::time::Instant::now();
    loop {
        let (status, body) = http_get(b.addr, "/readyz").await;
        if status == 200 {
            break;
        }
        assert!(body.contains("catching up"), "{body}");
        assert!(started.elapsed() < PATIENCE, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(total_at(b.addr, KEPT).await, 155);
    assert_eq!(total_at(a.addr, KEPT).await, 155);
    // The batch refused during the outage was not added when Redis came back.
    assert_eq!(total_at(a.addr, "text:\"kept by every node 99\"").await, 0);
    let (_, metrics) = http_get(b.addr, "/metrics").await;
    assert_eq!(
        metric(&metrics, "tributary_applied_offset{datasource=\"tweets\"}"),
        Some(31.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "tributary_catch_up_remaining{datasource=\"tweets\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "tributary_ready"), Some(1.0), "{metrics}");
    assert!(
        metric(&metrics, "tributary_process_resident_memory_bytes").unwrap_or(0.0) > 0.0,
        "{metrics}"
    );
    // Its lag behind the broker's stream, measured every 5 s: none once
    // caught up.
    let started = std::time::Instant::now();
    loop {
        let (_, metrics) = http_get(b.addr, "/metrics").await;
        let lag = metric(&metrics, "tributary_stream_lag{datasource=\"tweets\"}");
        if lag == Some(0.0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(12), "{lag:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A node with no data of its own builds it all from the log.
    let c = Process::start_on(&url, &prefix, "10s");
    until_status_at(c.addr, "/readyz", 200).await;
    assert_eq!(total_at(c.addr, KEPT).await, 155);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_a_service_publishes_reach_live_queries_on_every_node_with_positions() {
    if !redis_available() {
        return;
    }
    let (a, b) = two_nodes(Duration::from_secs(10));
    let mut service = FakeService::start(&a, Behaviour::Serve { chunk: 20 }).await;
    // A client of the other node follows the service's datasource.
    let mut client = until_listed(&b, "crm").await;
    client
        .send(
            json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "team:red", "size": 5,
                     "live": true, "request-id": "live"}),
        )
        .await;
    let page = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    assert_eq!(results_of(&page, "crm").len(), 5, "{page:?}");
    service
        .send
        .send(
            json!({"op": 0, "id": "p1", "event": "PUBLISH", "data": {"records": [
                {"id": "n1", "name": "published by a service", "team": "red"},
                {"id": "n2", "name": "not for this query", "team": "blue"},
            ]}}),
        )
        .expect("sent");
    let reply = loop {
        let next = service.next("").await;
        if next["event"] != "SEARCH" {
            break next;
        }
    };
    assert_eq!(reply["op"], 5, "{reply}");
    assert_eq!(reply["data"]["records"], 2, "{reply}");
    let append = client.recv().await;
    assert_eq!(append["items"]["append"], true, "{append}");
    let results = append["items"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{append}");
    assert_eq!(results[0]["fields"]["name"], "published by a service");
    // The same position the service was given: a client can resume from it on any node.
    assert_eq!(
        append["items"]["offset"], reply["data"]["offset"],
        "{append} {reply}"
    );
    assert_eq!(
        append["items"]["epoch"], reply["data"]["epoch"],
        "{append} {reply}"
    );
    assert!(reply["data"]["offset"].is_u64(), "{reply}");
    service.stop();
}

/// HAProxy on the shipped configuration (`datasources/haproxy/haproxy.cfg`),
/// its servers and address set for this machine; stopped when dropped.
struct Balancer {
    process: std::process::Child,
    addr: std::net::SocketAddr,
    _folder: tempfile::TempDir,
}

impl Balancer {
    fn start(nodes: &[std::net::SocketAddr]) -> Balancer {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/datasources/haproxy/haproxy.cfg"
        ))
        .expect("the shipped configuration");
        let port = free_port();
        // Only what ties it to Docker changes: its DNS, the bind address,
        // the servers' names; and its connection cap, which needs more
        // open files than a test process may have.
        let mut config = String::new();
        let mut in_resolvers = false;
        for line in shipped.lines() {
            if line.starts_with("resolvers ") {
                in_resolvers = true;
                continue;
            }
            if in_resolvers {
                in_resolvers = !line.trim().is_empty();
                continue;
            }
            if line.trim_start().starts_with("server ") {
                continue;
            }
            let line = line
                .replace(" resolvers docker init-addr libc,none", "")
                .replace("bind *:8080", &format!("bind 127.0.0.1:{port}"))
                .replace("maxconn 20000", "maxconn 1000");
            config.push_str(&line);
            config.push('\n');
        }
        for (i, node) in nodes.iter().enumerate() {
            config.push_str(&format!("    server node-{i} {node} check\n"));
        }
        assert!(config.contains("option httpchk GET /readyz"), "{config}");
        let folder = tempfile::tempdir().expect("a folder");
        let file = folder.path().join("haproxy.cfg");
        std::fs::write(&file, &config).expect("written");
        let process = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start haproxy ({e}); install it with `apt-get install -y haproxy`")
            });
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < PATIENCE, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            process,
            addr,
            _folder: folder,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_haproxy_searches_go_on_while_redis_is_down() {
    let Some((redis, port)) = own_redis(None) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = prefix();
    let a = Process::start_on(&url, &prefix, "10s");
    let b = Process::start_on(&url, &prefix, "10s");
    until_status_at(a.addr, "/readyz", 200).await;
    until_status_at(b.addr, "/readyz", 200).await;
    let balancer = Balancer::start(&[a.addr, b.addr]);
    // HAProxy marks a server up after two good checks, 2 s apart.
    until_status_at(balancer.addr, "/readyz", 200).await;
    for n in 0..4 {
        publish_kept(balancer.addr, n).await;
    }

    let _port = redis.stop();
    // Longer than HAProxy takes to drop a server that fails one check.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..10 {
        let (status, body) = http_get(balancer.addr, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).expect("tributary's JSON");
        assert_eq!(health["broker"]["ok"], false, "{health}");
        assert_eq!(total_at(balancer.addr, KEPT).await, 20);
    }
    let (status, head, body) = http_post_with_head(
        balancer.addr,
        "/api/datasources/tweets/records",
        &kept_batch(9),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert!(body.contains("nothing was published"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_missing_history_the_broker_no_longer_holds_is_not_ready_until_it_copies_a_peers() {
    let Some((_redis, port)) = own_redis(None) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = prefix();
    let a = Process::start_on(&url, &prefix, "10s");
    until_status_at(a.addr, "/readyz", 200).await;
    for n in 0..10 {
        publish_kept(a.addr, n).await;
    }
    // The stream loses its first entries (trimmed by hand: tributary never trims it).
    let trimmed = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "XTRIM"])
        .arg(format!("{prefix}:stream:records:tweets"))
        .args(["MAXLEN", "3"])
        .output()
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&trimmed.stdout).trim(), "7");

    // A new node cannot hold what A holds: it is not ready until it has
    // copied A's records by itself (checked, put in place, and started
    // again on them: the same process); it never says ready with less.
    let c = Process::start_on(&url, &prefix, "10s");
    until_ready_through_a_restart(c.addr).await;
    assert_eq!(total_at(c.addr, KEPT).await, 50);
    let data = c._folder.0.join("data").join("tweets");
    assert!(data.join("published.log.before-recovery").exists());
    assert!(data.join("recovered-from-peer").exists());
    // The log is the other nodes' only: without the cluster's key, or with
    // another, it is refused.
    const LOG: &str = "/api/cluster/datasources/tweets/log";
    let (status, _) = http_get(a.addr, LOG).await;
    assert_eq!(status, 403);
    let (status, _) = http_get_with(a.addr, LOG, &[("Authorization", "Bearer 00ff")]).await;
    assert_eq!(status, 403);
    publish_kept(a.addr, 10).await;
    until_total_at(c.addr, KEPT, 55).await;
}

/// The broker keeps of a stream of records what some node still needs:
/// once both nodes applied them (and they are `records_kept_for` old), the
/// entries go; a node added later copies a ready node's records, and is
/// never ready with less.
#[tokio::test(flavor = "multi_thread")]
async fn what_every_node_applied_is_trimmed_and_a_new_node_copies_a_peers_records() {
    let Some((_redis, port)) = own_redis(None) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = prefix();
    let trimming = "records_kept_for = \"0s\"";
    let a = Process::start_with_broker(&url, &prefix, "10s", trimming);
    let b = Process::start_with_broker(&url, &prefix, "10s", trimming);
    until_status_at(a.addr, "/readyz", 200).await;
    until_status_at(b.addr, "/readyz", 200).await;
    for n in 0..10 {
        publish_kept(if n % 2 == 0 { a.addr } else { b.addr }, n).await;
    }
    let length = || redis_command_on(port, &["XLEN", &format!("{prefix}:stream:records:tweets")]);
    let started = std::time::Instant::now();
    while length().trim() != ":0" {
        assert!(started.elapsed() < PATIENCE, "never trimmed: {}", length());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total_at(b.addr, KEPT).await, 50);
    // A publisher whose answer was lost sends the batch again, to the
    // other node: its records replace themselves, nothing is doubled.
    let with_ids: String = (0..5)
        .map(|i| {
            json!({"id": format!("retry-{i}"), "created_at": "2026-11-23T10:00:00Z",
                   "text": "sent again to another node"})
            .to_string()
                + "\n"
        })
        .collect();
    for node in [a.addr, b.addr] {
        let (status, body) =
            http_post(node, "/api/datasources/tweets/records", &[], &with_ids).await;
        assert_eq!(status, 200, "{body}");
    }
    for node in [a.addr, b.addr] {
        until_total_at(node, "text:\"sent again to another node\"", 5).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [a.addr, b.addr] {
        assert_eq!(
            total_at(node, "text:\"sent again to another node\"").await,
            5
        );
    }

    // A node with no data: the stream no longer has it all.
    let length_now = length();
    let c = Process::start_with_broker(&url, &prefix, "10s", trimming);
    until_ready_through_a_restart(c.addr).await;
    assert_eq!(
        total_at(c.addr, KEPT).await,
        50,
        "stream length {length_now}"
    );
    assert!(c._folder.0.join("data/tweets/recovered-from-peer").exists());
    // And it follows the stream from there.
    publish_kept(a.addr, 10).await;
    until_total_at(c.addr, KEPT, 55).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_starts_after_redis_lost_its_history_knows_it_lacks_it() {
    let Some((redis, port)) = own_redis(None) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = prefix();
    let a = Process::start_on(&url, &prefix, "10s");
    until_status_at(a.addr, "/readyz", 200).await;
    for n in 0..5 {
        publish_kept(a.addr, n).await;
    }
    // Redis restarts empty (it kept nothing on disk): a new history begins.
    let port = redis.stop();
    let _redis = OwnRedis::start(port).expect("redis-server starts again");
    let started = std::time::Instant::now();
    loop {
        let (status, body) = http_post(
            a.addr,
            "/api/datasources/tweets/records",
            &[],
            &kept_batch(5),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total_at(a.addr, KEPT).await, 30);
    let (_, metrics) = http_get(a.addr, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tributary_epoch_changes_total{datasource=\"tweets\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // A node started now would hold only the new history: it is not ready
    // until it has copied A's records by itself.
    let c = Process::start_on(&url, &prefix, "10s");
    until_ready_through_a_restart(c.addr).await;
    assert_eq!(total_at(c.addr, KEPT).await, 30);
    let data = c._folder.0.join("data").join("tweets");
    assert!(data.join("recovered-from-peer").exists());
}

/// Waits until `query` counts `total` records on the node at `addr`.
async fn until_total_at(addr: std::net::SocketAddr, query: &str, total: u64) {
    let started = std::time::Instant::now();
    loop {
        let now = total_at(addr, query).await;
        if now == total {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "{now} of {total} records");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node at `addr` is ready, through the moment it starts
/// again (its port closed, a connection cut): any failure is retried.
async fn until_ready_through_a_restart(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let request =
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            Some(String::from_utf8_lossy(&response).into_owned())
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten();
        if answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        {
            return;
        }
        // Two starts (before and after the copy), each building the demo
        // indexes: more than one PATIENCE on a loaded two-core machine.
        assert!(started.elapsed() < 3 * PATIENCE, "not ready: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publishers_on_two_nodes_near_max_records_are_refused_alike_never_acknowledged_and_dropped()
{
    if !redis_available() {
        return;
    }
    let prefix = prefix();
    let capped = || {
        let mut settings: Settings = settings(vec![datasource(
            "tweets",
            "fixtures",
            json!({"embedded": "tweets", "max_records": 3010}),
        )]);
        settings.broker.kind = BrokerKind::Redis;
        settings.broker.url = redis_url();
        settings.broker.prefix = prefix.clone();
        settings.publish.enabled = true;
        std::sync::Arc::new(start_with(settings))
    };
    let (a, b) = (capped(), capped());
    until_status(&a, "/readyz", 200).await;
    until_status(&b, "/readyz", 200).await;
    // Six publishers on each node at once, four records each: ten places.
    let publishers: Vec<_> = (0..12)
        .map(|p| {
            let node = std::sync::Arc::clone(if p % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                let body: String = (0..4)
                    .map(|i| tweet(&format!("cap{p}-{i}"), "near the limit").to_string() + "\n")
                    .collect();
                http_post(node.addr, "/api/datasources/tweets/records", &[], &body).await
            })
        })
        .collect();
    let mut accepted = 0;
    for publisher in publishers {
        let (status, body) = publisher.await.expect("a publisher");
        match status {
            200 => accepted += 1,
            507 => assert!(body.contains("max_records"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 2, "batches of 4 in 10 places");
    for node in [&a, &b] {
        let started = std::time::Instant::now();
        loop {
            let (mut client, _) = Client::ready(node).await;
            let answer = client
                .items(&["tweets"], "text:\"near the limit\"", 0, 0, "#000")
                .await;
            let total = items_of(&answer[0])["total"].as_u64().expect("a total");
            if total == 4 * accepted {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{total} records for {accepted} acknowledged batches"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
