//! The web UI in a real headless Chromium, driven over WebDriver
//! (chromedriver), against the real server with the demo data.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them);
//! `CHROMIUM` and `CHROMEDRIVER` override their paths. Screenshots are saved
//! under `target/ui-screenshots/`.

use crate::common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{
    Actions, InputSource, KeyAction, KeyActions, MouseActions, PointerAction, MOUSE_BUTTON_LEFT,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tributary::config::{demo_datasources, Settings, TokenSettings};
use tributary::http::ServerHandle;

const RED: &str = "#e6194b";
const BLUE: &str = "#4363d8";
const SHIFT: char = '\u{E008}';

/// chromedriver and the browser session it drives; both go away on drop.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share a process group of
        // their own: end them all, or every test leaves a browser behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_string())
}

pub(crate) async fn browser() -> Option<Browser> {
    browser_with(&[]).await
}

/// A headless Chromium with `extra` switches on top of the usual ones;
/// `None` (the test is skipped, saying so) with `TRIBUTARY_SKIP_BROWSER_TESTS` set.
pub(crate) async fn browser_with(extra: &[&str]) -> Option<Browser> {
    if std::env::var_os("TRIBUTARY_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("skipped: TRIBUTARY_SKIP_BROWSER_TESTS is set");
        return None;
    }
    // Two TLS backends are linked in (via different crates); name the one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = program("CHROMIUM", "/usr/bin/chromium");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {chromedriver} ({e}); install it with `apt-get install -y chromium chromium-driver`")
        });
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",
        "--window-size=1440,900",
    ];
    args.extend_from_slice(extra);
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": args,
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(capabilities.as_object().cloned().unwrap_or_default())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return Some(Browser { client, driver }),
            Err(e) if Instant::now() > deadline => panic!("cannot open a browser session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The demo datasets on an ephemeral loopback port.
fn demo_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        datasources: demo_datasources(),
        ..Settings::default()
    }
}

/// The demo datasets and `count` generated people.
pub(crate) fn demo_server_with_people(count: usize) -> ServerHandle {
    let mut settings = demo_settings();
    settings.datasources.push(common::datasource(
        "people",
        "people",
        json!({ "count": count }),
    ));
    tributary::http::spawn(settings, common::registry()).expect("server starts")
}

/// The demo server and a browser showing its page, connected (`None`:
/// browser tests are skipped).
pub(crate) async fn demo_page() -> Option<(ServerHandle, Browser)> {
    let server = demo_server();
    let browser = browser().await?;
    open_page(&browser.client, &server).await;
    Some((server, browser))
}

pub(crate) fn demo_server() -> ServerHandle {
    tributary::http::spawn(demo_settings(), common::registry()).expect("server starts")
}

/// Opens the page of `server` and waits until it is connected.
pub(crate) async fn open_page(client: &Client, server: &ServerHandle) {
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    until(
        client,
        "the connection",
        "return document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
}

/// Runs `script` (a function body) in the page and returns its value.
pub(crate) async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `script` returns true in the page.
/// The page threw no uncaught error and rejected no promise unhandled.
pub(crate) async fn assert_no_page_errors(client: &Client) {
    let errors = js(client, "return window.pageErrors;").await;
    assert_eq!(errors, json!([]), "errors on the page");
}

/// Whether `script` returns true in the page within `patience`.
pub(crate) async fn within(client: &Client, patience: Duration, script: &str) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if js(client, script).await == Value::Bool(true) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn until(client: &Client, what: &str, script: &str) {
    if !within(client, common::PATIENCE, script).await {
        save_screenshot(client, "timeout").await;
        panic!("timed out waiting for {what}");
    }
}

/// A left click with a real mouse at page coordinates.
pub(crate) async fn click_at(client: &Client, x: f64, y: f64) {
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(mouse).await.expect("click");
}

pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub(crate) async fn save_screenshot(client: &Client, name: &str) -> Vec<u8> {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), &png).expect("write screenshot");
    png
}

/// How many pixels of the screenshot are (nearly) `color`.
pub(crate) fn pixels_of(png: &[u8], color: &str) -> usize {
    let hex = |i: usize| i64::from_str_radix(&color[i..i + 2], 16).expect("hex color");
    let (r, g, b) = (hex(1), hex(3), hex(5));
    let decoder = png::Decoder::new(png);
    let mut reader = decoder.read_info().expect("png header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("png frame");
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            (p[0] as i64 - r).abs() + (p[1] as i64 - g).abs() + (p[2] as i64 - b).abs() <= 24
        })
        .count()
}

/// Clicks the element; retried when the page redraws it between finding and clicking.
pub(crate) async fn click(client: &Client, css: &str) {
    let mut attempts = 0;
    loop {
        let element = client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        match element.click().await {
            Ok(()) => return,
            Err(e) if attempts < 5 && e.to_string().contains("stale") => attempts += 1,
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

/// Ticks a datasource and waits until its field `field` is listed.
pub(crate) async fn enable_datasource(client: &Client, id: &str, field: &str) {
    click(client, &format!("#datasources li[data-ds={id}] input")).await;
    until(
        client,
        &format!("the fields of {id}"),
        &format!("return !!document.querySelector('#fields li[data-field=\"{field}\"]');"),
    )
    .await;
}

/// Makes a field's values nodes.
pub(crate) async fn tick_node_field(client: &Client, field: &str) {
    click(
        client,
        &format!("#fields li[data-field='{field}'] input[type=checkbox]"),
    )
    .await;
}

pub(crate) async fn search(client: &Client, color: &str, query: &str) {
    // Color pickers cannot be typed into; set the value as the picker would.
    // The box is emptied first, as a user replaces what is there.
    js(
        client,
        &format!(
            "document.getElementById('query-color').value = '{color}'; \
             document.getElementById('query-input').value = ''; return true;"
        ),
    )
    .await;
    let input = client
        .find(Locator::Id("query-input"))
        .await
        .expect("search box");
    input
        .send_keys(&format!("{query}\u{E007}"))
        .await
        .expect("type query");
}

/// The colors of the graph's nodes: {colors: [...distinct], both: nodes found by both queries, order}.
const GRAPH_COLORS: &str = r#"
    const graph = window.tributary.view.graph;
    const colors = new Set();
    let both = 0;
    graph.forEachNode((key, a) => {
        a.colors.forEach((c) => colors.add(c));
        if (a.colors.length > 1) both += 1;
    });
    return {colors: [...colors].sort(), both, order: graph.order};
"#;

pub(crate) async fn wait_queries_done(client: &Client, count: usize) {
    until(
        client,
        "the queries to finish",
        &format!(
            "const items = document.querySelectorAll('#queries li');
             return items.length === {count} && [...items].every((li) => li.dataset.state === 'done')
                 && window.tributary.view.graph.order > 0;"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_the_demo_data() {
    let server = demo_server();
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let page = format!("http://{}/", server.addr);
    client.goto(&page).await.expect("open page");

    until(
        client,
        "the connection",
        "return document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
    let empty = js(
        client,
        "return document.getElementById('graph-empty').textContent;",
    )
    .await;
    assert!(
        empty
            .as_str()
            .unwrap_or("")
            .contains("enabling a datasource"),
        "a newcomer is told what to do first: {empty}"
    );

    // Each datasource shows its health from the server's status: channel,
    // the latency on hover.
    until(
        client,
        "the health of tweets",
        "const dot = document.querySelector('#datasources li[data-ds=tweets] .health'); \
         return dot && dot.dataset.health === 'up' && / ms$/.test(dot.title);",
    )
    .await;

    // Enable the tweets datasource and choose two node fields and the timeline.
    enable_datasource(client, "tweets", "user.screen_name").await;
    tick_node_field(client, "user.screen_name").await;
    tick_node_field(client, "hashtags").await;
    click(client, "#fields li[data-field='created_at'] input.timeline").await;

    // Two queries with different colors.
    search(client, RED, "hashtags:opendata").await;
    search(client, BLUE, "hashtags:bitcoin").await;
    wait_queries_done(client, 2).await;

    let graph = js(client, GRAPH_COLORS).await;
    assert_eq!(graph["colors"], json!([BLUE, RED]), "{graph}");
    assert!(
        graph["both"].as_u64().unwrap_or(0) > 0,
        "values found by both queries carry both colors: {graph}"
    );
    let totals = js(
        client,
        "return [...document.querySelectorAll('#queries li .sources')].map((e) => e.textContent);",
    )
    .await;
    assert!(
        totals[0].as_str().unwrap_or("").contains(" of "),
        "per-datasource totals are shown: {totals}"
    );
    let bars = js(
        client,
        "return document.querySelectorAll('#histogram rect').length;",
    )
    .await;
    assert!(bars.as_u64().unwrap_or(0) > 0, "the timeline has bars");

    // Let the layout finish so nodes stay where they are clicked.
    until(
        client,
        "the layout to stop",
        "return document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;
    let shot = save_screenshot(client, "explorer").await;
    assert!(pixels_of(&shot, RED) > 20, "red nodes are drawn");
    assert!(pixels_of(&shot, BLUE) > 20, "blue nodes are drawn");

    // Click the node of the hashtag `opendata` with a real mouse.
    let key = "hashtags\u{241f}opendata";
    let at = js(
        client,
        &format!(
            "// The point of the node's disc farthest from every other node's disc,
             // so the click lands on this node and not on a small one drawn over it.
             const view = window.tributary.view;
             const r = view.renderer;
             const radius = (k) => r.scaleSize(r.getNodeDisplayData(k).size);
             const key = '{key}';
             const c = view.viewportPosition(key);
             const R = radius(key);
             const others = view.graph.nodes().filter((k) => k !== key)
                 .map((k) => ({{p: view.viewportPosition(k), r: radius(k)}}));
             let best = c, room = -Infinity;
             for (let dx = -0.7; dx <= 0.7; dx += 0.1) {{
                 for (let dy = -0.7; dy <= 0.7; dy += 0.1) {{
                     if (dx * dx + dy * dy > 0.49) continue;
                     const p = {{x: c.x + dx * R, y: c.y + dy * R}};
                     const clear = Math.min(...others.map((o) => Math.hypot(o.p.x - p.x, o.p.y - p.y) - o.r));
                     if (clear > room) {{ best = p; room = clear; }}
                 }}
             }}
             const box = document.getElementById('graph').getBoundingClientRect();
             return [Math.round(box.left + best.x), Math.round(box.top + best.y)];"
        ),
    )
    .await;
    let (x, y) = (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0));
    click_at(client, x, y).await;
    until(
        client,
        "the table to fill",
        &format!(
            "return window.tributary.app.selection.length === 1
                && window.tributary.app.selection[0] === '{key}'
                && document.querySelectorAll('#records tbody tr').length > 0;"
        ),
    )
    .await;
    let hashtags_column = js(
        client,
        "const heads = [...document.querySelectorAll('#records th')].map((th) => th.firstChild.textContent);
         const column = heads.indexOf('hashtags');
         return [...document.querySelectorAll('#records tbody tr')].map((tr) => tr.cells[column].textContent);",
    )
    .await;
    let rows = hashtags_column.as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|cell| cell.as_str().unwrap_or("").contains("opendata")),
        "every record in the table holds the selected value: {hashtags_column}"
    );

    // A record opens to all its fields.
    click(client, "#records tbody tr").await;
    until(
        client,
        "the record details",
        "return !document.getElementById('details').hidden
            && document.getElementById('details-fields').textContent.includes('user.followers_count');",
    )
    .await;
    save_screenshot(client, "selection").await;

    // A bad query gets its error next to it, in words.
    search(client, "#3cb44b", "created_at:[2024 TO").await;
    until(
        client,
        "the error of the bad query",
        "const li = document.querySelector('#queries li[data-query=\"3\"] .error');
         return !!li && li.textContent.includes('cannot be understood');",
    )
    .await;
    click(client, "#queries li[data-query='3'] button.remove").await;

    // Removing the red query takes its nodes away.
    let before = graph["order"].as_u64().unwrap_or(0);
    click(client, "#queries li[data-query='1'] button.remove").await;
    until(
        client,
        "the red nodes to leave",
        &format!(
            "let red = 0;
             window.tributary.view.graph.forEachNode((k, a) => {{ if (a.colors.includes('{RED}')) red += 1; }});
             return red === 0 && window.tributary.view.graph.order > 0;"
        ),
    )
    .await;
    let after = js(client, GRAPH_COLORS).await;
    assert_eq!(after["colors"], json!([BLUE]));
    assert!(after["order"].as_u64().unwrap_or(0) < before, "{after}");

    // A reload restores datasources, fields and queries, and re-runs the query.
    client.refresh().await.expect("reload");
    wait_queries_done(client, 1).await;
    let restored = js(
        client,
        "return {
            tweets: document.querySelector('#datasources li[data-ds=tweets] input').checked,
            emails: document.querySelector('#datasources li[data-ds=emails] input').checked,
            fields: [...document.querySelectorAll('#fields input[type=checkbox]:not(.timeline):checked')]
                .map((box) => box.closest('li').dataset.field).sort(),
            query: document.querySelector('#queries li .text').textContent,
            color: document.querySelector('#queries li input[type=color]').value,
        };",
    )
    .await;
    assert_eq!(
        restored,
        json!({
            "tweets": true,
            "emails": false,
            "fields": ["hashtags", "user.screen_name"],
            "query": "hashtags:bitcoin",
            "color": BLUE,
        })
    );
    let graph = js(client, GRAPH_COLORS).await;
    assert_eq!(graph["colors"], json!([BLUE]), "{graph}");
    assert_eq!(graph["order"], after["order"], "the same graph comes back");
    assert_no_page_errors(client).await;
}

/// A live query: records published over HTTP while the page is open
/// appear as nodes, with the live badge counting them; a datasource that is
/// down shows a red dot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_query_grows_the_graph() {
    let mut settings = demo_settings();
    settings.publish.enabled = true;
    settings.live.health_interval = Duration::from_millis(300);
    settings
        .datasources
        .push(common::datasource("down", "failing", json!({})));
    let server = tributary::http::spawn(settings, common::registry()).expect("server starts");
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    until(
        client,
        "the red dot of the datasource that is down",
        "const dot = document.querySelector('#datasources li[data-ds=down] .health'); \
         return dot && dot.dataset.health === 'down' && dot.title.startsWith('Down');",
    )
    .await;
    enable_datasource(client, "tweets", "user.screen_name").await;
    tick_node_field(client, "user.screen_name").await;
    search(client, RED, "zeppelin").await;
    until(
        client,
        "the query to finish",
        "const li = document.querySelector('#queries li'); return li && li.dataset.state === 'done';",
    )
    .await;
    click(client, "#queries li .live-toggle").await;
    until(
        client,
        "the query to go live",
        "const li = document.querySelector('#queries li'); \
         return li.dataset.live === 'on' && !li.querySelector('.live-badge').hidden;",
    )
    .await;

    let records = [
        ("z-ui-1", "zep_pilot", "a zeppelin lands"),
        ("z-ui-2", "zep_crew", "zeppelin crew ready"),
        ("z-ui-3", "someone_else", "nothing about airships"),
    ]
    .iter()
    .map(|(id, who, text)| {
        json!({"id": id, "created_at": "2026-11-23T12:00:00Z", "text": text, "user": {"screen_name": who}})
            .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n");
    let (status, body) = common::http_post(
        server.addr,
        "/api/datasources/tweets/records",
        &[],
        &records,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until(
        client,
        "the published records' nodes",
        "const labels = []; window.tributary.view.graph.forEachNode((k, a) => labels.push(a.label)); \
         return labels.includes('zep_pilot') && labels.includes('zep_crew');",
    )
    .await;
    let labels = js(
        client,
        "const labels = []; window.tributary.view.graph.forEachNode((k, a) => labels.push(a.label)); return labels;",
    )
    .await;
    assert!(
        !labels.as_array().unwrap().contains(&json!("someone_else")),
        "only matching records arrive: {labels}"
    );
    let badge = js(
        client,
        "return document.querySelector('#queries li .live-badge').textContent;",
    )
    .await;
    assert_eq!(badge, json!("● live +2"));
    save_screenshot(client, "live").await;

    // The connection drops and a record is published while the page is
    // away: after the reconnect the live request resumes from the last
    // position it received, and the record arrives, once.
    js(
        client,
        "window.sentFrames = []; const send = WebSocket.prototype.send; \
         WebSocket.prototype.send = function (data) { window.sentFrames.push(data); return send.call(this, data); }; \
         window.tributary.client.socket.close(); return true;",
    )
    .await;
    let away = json!({"id": "z-ui-4", "created_at": "2026-11-23T12:01:00Z",
                      "text": "a zeppelin while you were away", "user": {"screen_name": "zep_away"}});
    let (status, body) = common::http_post(
        server.addr,
        "/api/datasources/tweets/records",
        &[],
        &away.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until(
        client,
        "the record published while away",
        "const labels = []; window.tributary.view.graph.forEachNode((k, a) => labels.push(a.label)); \
         return labels.includes('zep_away');",
    )
    .await;
    let resumed = js(
        client,
        "const live = window.sentFrames.map((f) => JSON.parse(f)).filter((m) => m.type === 'ITEMS_REQUEST' && m.live); \
         return { resume: live.map((m) => m.resume ?? null), \
                  recovered: window.tributary.searches.queries[0].liveModes?.tweets?.recovered ?? null };",
    )
    .await;
    assert!(
        resumed["resume"][0]["tweets"]["offset"].is_u64(),
        "the live request resumed from a position: {resumed}"
    );
    assert_eq!(resumed["recovered"], true, "{resumed}");
    until(
        client,
        "the live badge to count the missed record once",
        "return document.querySelector('#queries li .live-badge').textContent === '● live +3';",
    )
    .await;

    // Off again: no more appends.
    click(client, "#queries li .live-toggle").await;
    until(
        client,
        "the query to stop",
        "return document.querySelector('#queries li').dataset.live === 'off';",
    )
    .await;
    assert_no_page_errors(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_fetches_again() {
    let server = demo_server();
    let addr = server.addr;
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    client
        .goto(&format!("http://{addr}/"))
        .await
        .expect("open page");
    until(
        client,
        "the connection",
        "return document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
    enable_datasource(client, "emails", "from").await;
    tick_node_field(client, "from").await;
    tick_node_field(client, "to").await;

    // The server goes away: the page says so and keeps trying.
    server.shutdown(Duration::from_secs(1)).await;
    until(
        client,
        "the page to notice",
        "return document.getElementById('connection').dataset.state === 'closed';",
    )
    .await;
    let chip = js(
        client,
        "const chip = document.getElementById('connection'); \
         return { text: document.getElementById('connection-text').textContent, title: chip.title, \
                  retry: !document.getElementById('connection-retry').hidden, \
                  chipWidth: chip.getBoundingClientRect().width, \
                  searchWidth: document.getElementById('query-input').getBoundingClientRect().width };",
    )
    .await;
    let text = chip["text"].as_str().unwrap_or("");
    assert!(text.starts_with("Offline — retrying in "), "{chip}");
    assert_eq!(chip["retry"], true, "a Retry now button: {chip}");
    assert!(
        !chip["title"].as_str().unwrap_or("").contains("token"),
        "no word of tokens without a 403: {chip}"
    );
    assert!(
        chip["searchWidth"].as_f64().unwrap_or(0.0) > 500.0,
        "the chip leaves the search box its room: {chip}"
    );

    // A query typed while disconnected says it waits, and runs once the server is back.
    search(client, RED, "invoice").await;
    until(
        client,
        "the query to wait for the connection",
        "const li = document.querySelector('#queries li'); \
         return li && li.dataset.state === 'waiting' && li.querySelector('.sources').textContent === 'Waiting for the connection…';",
    )
    .await;
    let mut settings = Settings {
        listen: addr.to_string(),
        datasources: demo_datasources(),
        ..Settings::default()
    };
    settings.listen = addr.to_string();
    let _again = tributary::http::spawn(settings, common::registry()).expect("server restarts");
    // No need to wait for the next attempt (unless it already happened).
    js(
        client,
        "const retry = document.getElementById('connection-retry'); if (!retry.hidden) retry.click(); return true;",
    )
    .await;
    until(
        client,
        "the reconnection",
        "return document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
    wait_queries_done(client, 1).await;
    let fields = js(
        client,
        "return document.querySelectorAll('#fields li').length;",
    )
    .await;
    assert!(
        fields.as_u64().unwrap_or(0) > 3,
        "fields fetched again: {fields}"
    );
    let graph = js(client, GRAPH_COLORS).await;
    assert_eq!(graph["colors"], json!([RED]), "{graph}");
    assert_no_page_errors(client).await;
}

/// A shift+drag in the page from `from` to `to` (page pixels), as a user makes a selection box.
async fn shift_drag(client: &Client, from: (f64, f64), to: (f64, f64)) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: SHIFT })
        .then(KeyAction::Pause {
            duration: Duration::ZERO,
        })
        .then(KeyAction::Pause {
            duration: Duration::ZERO,
        })
        .then(KeyAction::Pause {
            duration: Duration::ZERO,
        })
        .then(KeyAction::Up { value: SHIFT });
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: from.0,
            y: from.1,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(300)),
            x: to.0,
            y: to.1,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Pause {
            duration: Duration::ZERO,
        });
    client
        .perform_actions(Actions::from(keys).and(mouse))
        .await
        .expect("shift-drag");
}

pub(crate) async fn press(client: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.expect("key press");
}

/// Where a node is on the page, in pixels.
pub(crate) async fn node_position(client: &Client, key: &str) -> (f64, f64) {
    let at = js(
        client,
        &format!(
            "const p = window.tributary.view.viewportPosition({key:?});
             const box = document.getElementById('graph').getBoundingClientRect();
             return [box.left + p.x, box.top + p.y];"
        ),
    )
    .await;
    (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_the_graph() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "tweets", "mentions").await;
    // The field filter narrows the list.
    client
        .find(Locator::Id("field-filter"))
        .await
        .expect("filter")
        .send_keys("screen")
        .await
        .expect("type filter");
    let listed = js(
        client,
        "return [...document.querySelectorAll('#fields li')].map((li) => li.dataset.field).sort();",
    )
    .await;
    assert_eq!(
        listed,
        json!(["in_reply_to_screen_name", "user.screen_name"])
    );
    tick_node_field(client, "user.screen_name").await;
    js(
        client,
        "const f = document.getElementById('field-filter'); f.value = ''; f.dispatchEvent(new Event('input')); return true;",
    )
    .await;
    tick_node_field(client, "mentions").await;

    // `/` focuses the search box.
    press(client, '/').await;
    let focused = js(client, "return document.activeElement.id;").await;
    assert_eq!(focused, json!("query-input"));
    search(client, RED, "*").await;
    wait_queries_done(client, 1).await;
    let first = js(
        client,
        "return document.querySelector('#queries li .sources').textContent;",
    )
    .await;
    assert!(first.as_str().unwrap_or("").contains("200 of"), "{first}");

    // Load more fetches the next page.
    click(client, "#queries li[data-query='1'] button.more").await;
    until(
        client,
        "the second page",
        "return document.querySelector('#queries li .sources').textContent.includes('400 of')
            && document.querySelector('#queries li').dataset.state === 'done';",
    )
    .await;
    until(
        client,
        "the layout to stop",
        "return document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;

    // Find in graph highlights by label.
    client
        .find(Locator::Id("graph-search"))
        .await
        .expect("graph search")
        .send_keys("annad0")
        .await
        .expect("type");
    let matches = js(client, "return window.tributary.view.matches.size;").await;
    assert!(matches.as_u64().unwrap_or(0) >= 1, "{matches}");
    let stats = js(
        client,
        "return document.getElementById('graph-stats').textContent;",
    )
    .await;
    assert!(stats.as_str().unwrap_or("").contains("matching"), "{stats}");
    press(client, '\u{E00C}').await; // Escape clears the search
    let cleared = js(client, "return window.tributary.view.matches === null;").await;
    assert_eq!(cleared, json!(true));

    // `+` zooms in, `f` fits the whole graph again.
    let ratio = "return window.tributary.view.renderer.getCamera().ratio;";
    let before_zoom = js(client, ratio).await.as_f64().unwrap_or(0.0);
    press(client, '+').await;
    until(
        client,
        "the zoom",
        &format!("return window.tributary.view.renderer.getCamera().ratio < {before_zoom} * 0.9;"),
    )
    .await;
    press(client, 'f').await;
    until(
        client,
        "the fit",
        "return Math.abs(window.tributary.view.renderer.getCamera().ratio - 1) < 1e-6;",
    )
    .await;

    // Drag a node: it moves and stays pinned.
    // The node with the most room around it, so the pointer lands on it and on nothing else.
    let key = js(
        client,
        "const view = window.tributary.view;
         const b = document.getElementById('graph').getBoundingClientRect();
         const nodes = view.graph.nodes().map((k) => ({k, p: view.viewportPosition(k)}));
         let best = null, room = 0;
         for (const {k, p} of nodes) {
             if (p.x < 80 || p.y < 80 || p.x > b.width - 80 || p.y > b.height - 80) continue;
             const nearest = Math.min(...nodes.filter((o) => o.k !== k).map((o) => Math.hypot(o.p.x - p.x, o.p.y - p.y)));
             if (nearest > room) { best = k; room = nearest; }
         }
         return best;",
    )
    .await;
    let key = key.as_str().expect("a node with room around it").to_owned();
    let key = key.as_str();
    let (x, y) = node_position(client, key).await;
    let before = js(
        client,
        &format!("return window.tributary.view.graph.getNodeAttributes({key:?});"),
    )
    .await;
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(200)),
            x: x + 60.0,
            y: y + 40.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(mouse).await.expect("drag");
    let after = js(
        client,
        &format!("return window.tributary.view.graph.getNodeAttributes({key:?});"),
    )
    .await;
    assert_eq!(after["fixed"], json!(true), "{after}");
    assert_ne!(after["x"], before["x"]);
    let (x2, y2) = node_position(client, key).await;
    assert!(
        (x2 - x - 60.0).abs() < 3.0 && (y2 - y - 40.0).abs() < 3.0,
        "the node follows the pointer"
    );

    // Shift-drag a box around part of the graph: its nodes are selected, and Delete removes them.
    // First the drawing holds still (no layout pass or camera move in flight).
    let mut last = Value::Null;
    for _ in 0..40 {
        let now = js(
            client,
            "const v = window.tributary.view; const { width, height } = v.renderer.getDimensions();
             return JSON.stringify([width, height, v.graph.nodes().map((k) => { const p = v.viewportPosition(k); return [Math.round(p.x), Math.round(p.y)]; })]);",
        )
        .await;
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let area = js(
        client,
        "const b = document.getElementById('graph').getBoundingClientRect();
         return [b.left + 5, b.top + 5, b.left + b.width / 2, b.top + b.height / 2];",
    )
    .await;
    let n = |i: usize| area[i].as_f64().unwrap_or(0.0);
    shift_drag(client, (n(0), n(1)), (n(2), n(3))).await;
    let boxed = js(
        client,
        "const view = window.tributary.view;
         const b = document.getElementById('graph').getBoundingClientRect();
         // Pointer coordinates are whole pixels, and a loaded machine's
         // pointer events land a few pixels late: nodes within 6 px of the
         // box's edge may go either way.
         const within = (margin) => view.graph.filterNodes((k) => {
             const p = view.viewportPosition(k);
             return p.x >= 5 - margin && p.y >= 5 - margin && p.x <= b.width / 2 + margin && p.y <= b.height / 2 + margin;
         });
         const selected = new Set(window.tributary.app.selection);
         return {
             selected: selected.size,
             missed: within(-6).filter((k) => !selected.has(k)),
             extra: [...selected].filter((k) => !within(6).includes(k)),
             order: view.graph.order,
         };",
    )
    .await;
    let selected = boxed["selected"].as_u64().unwrap_or(0);
    assert!(selected > 0, "the box caught nodes: {boxed}");
    assert_eq!(boxed["missed"], json!([]), "{boxed}");
    assert_eq!(boxed["extra"], json!([]), "{boxed}");
    press(client, '\u{E017}').await; // Delete
    until(
        client,
        "the selected nodes to go",
        &format!(
            "return window.tributary.view.graph.order === {} && window.tributary.saved.deleted.length === {selected};",
            boxed["order"].as_u64().unwrap_or(0) - selected
        ),
    )
    .await;
    let restore = js(
        client,
        "return document.getElementById('restore-deleted').hidden;",
    )
    .await;
    assert_eq!(restore, json!(false), "deleted nodes can be brought back");

    // `a` selects everything; disabling the datasource empties the graph and says what to do.
    press(client, 'a').await;
    let all = js(
        client,
        "return window.tributary.app.selection.length === window.tributary.view.graph.order;",
    )
    .await;
    assert_eq!(all, json!(true));
    click(client, "#datasources li[data-ds=tweets] input").await;
    until(
        client,
        "the graph to empty",
        "return window.tributary.view.graph.order === 0
            && document.getElementById('graph-empty').textContent.includes('enabling a datasource');",
    )
    .await;
    assert_no_page_errors(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draws_a_large_graph() {
    let server = demo_server();
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    until(
        client,
        "the page, connected and drawn once (its own first drawing would replace the test's graph)",
        "return !!(window.tributary && window.tributary.view) && document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
    // 5,000 nodes and 20,000 links, then a pan and a zoom; the page keeps drawing frames.
    let report = client
        .execute_async(
        r##"
        const done = arguments[arguments.length - 1];
        const nodes = new Map(), edges = new Map();
        for (let i = 0; i < 5000; i++) nodes.set(`n\u241f${i}`, {field: "n", label: `value ${i}`, colors: [i % 2 ? "#e6194b" : "#4363d8"], count: 1 + (i % 7)});
        let seed = 7;
        const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % 5000;
        while (edges.size < 20000) {
            const a = next(), b = next();
            if (a === b) continue;
            const [s, t] = a < b ? [a, b] : [b, a];
            edges.set(`${s}-${t}`, {source: `n\u241f${s}`, target: `n\u241f${t}`, count: 1});
        }
        const view = window.tributary.view;
        const started = performance.now();
        view.update({nodes, edges}, {n: "dot"});
        const built = performance.now() - started;
        view.stopLayout();
        // Printed for BENCHMARKS.md: the JavaScript cost of a full refresh and of one frame.
        let t = performance.now();
        view.renderer.refresh();
        const refreshMs = Math.round(performance.now() - t);
        t = performance.now();
        view.renderer.render();
        const frameMs = Math.round(performance.now() - t);
        let frames = 0;
        view.renderer.on("afterRender", () => { frames += 1; });
        const camera = view.renderer.getCamera();
        camera.animate({x: 0.3, y: 0.6, ratio: 0.5}, {duration: 600}).then(() => camera.animate({x: 0.5, y: 0.5, ratio: 1.2}, {duration: 600})).then(() => {
            view.stopLayout();
            return {refreshMs, frameMs, order: view.graph.order, size: view.graph.size, frames, buildMs: Math.round(built)};
        }).then(done);
        "##,
        vec![],
    )
    .await
    .expect("large graph script");
    println!("large graph: {report}");
    assert_eq!(report["order"], json!(5000));
    assert_eq!(report["size"], json!(20000));
    assert!(report["frames"].as_u64().unwrap_or(0) > 0, "{report}");
    let shot = save_screenshot(client, "large").await;
    assert!(pixels_of(&shot, RED) > 100 && pixels_of(&shot, BLUE) > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_address_is_used_and_kept() {
    let mut settings = demo_settings();
    settings.auth.tokens.insert(
        "analyst".into(),
        TokenSettings {
            token: "s3cret-token-1".into(),
            datasources: Some(vec!["tweets".into()]),
            publish: false,
        },
    );
    let server = tributary::http::spawn(settings, common::registry()).expect("server starts");
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;

    // Without a token the server refuses the socket, and the page says what to do.
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    until(
        client,
        "the refusal",
        "return document.getElementById('connection').dataset.state === 'closed'
            && document.getElementById('graph-empty').textContent.includes('?token=');",
    )
    .await;

    // With one, it connects, lists what the token may use, and hides the token from the address bar.
    client
        .goto(&format!("http://{}/?token=s3cret-token-1", server.addr))
        .await
        .expect("open page with token");
    until(
        client,
        "the connection",
        "return document.getElementById('connection').dataset.state === 'open';",
    )
    .await;
    let state = js(
        client,
        "return {
            search: location.search,
            datasources: [...document.querySelectorAll('#datasources li')].map((li) => li.dataset.ds),
        };",
    )
    .await;
    assert_eq!(state, json!({"search": "", "datasources": ["tweets"]}));

    // The next visit remembers it.
    open_page(client, &server).await;
}

/// A datasource written in Python (the example CSV plugin) joins while the
/// page is open: it appears in the datasource list without a reload, and
/// its records become nodes like any datasource's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_datasource_joins_the_open_page() {
    let mut settings = demo_settings();
    settings.services.insert(
        "csv".into(),
        tributary::config::ServiceSettings {
            token: "csv-plugin-token".into(),
            group: None,
            datasources: Some(vec!["customers".into()]),
        },
    );
    let server = tributary::http::spawn(settings, common::registry()).expect("server starts");
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    open_page(client, &server).await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut plugin = Command::new("python3")
        .current_dir(root)
        .env("PYTHONPATH", root.join("plugins/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TRIBUTARY_URL", format!("ws://{}/ws/services", server.addr))
        .env("TRIBUTARY_TOKEN", "csv-plugin-token")
        .args([
            "plugins/python/examples/csv_datasource.py",
            "plugins/python/examples/customers.csv",
            "--name",
            "Customers",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the example plugin");
    until(
        client,
        "the plugin's datasource in the list",
        "return !!document.querySelector('#datasources li[data-ds=customers]');",
    )
    .await;
    enable_datasource(client, "customers", "company").await;
    tick_node_field(client, "company").await;
    search(client, RED, "city:ghent AND country:BE").await;
    wait_queries_done(client, 1).await;
    let nodes = js(
        client,
        "const values = [];
         window.tributary.view.graph.forEachNode((key, a) => values.push(a.label));
         return values.sort();",
    )
    .await;
    let companies = [
        "Acme",
        "Cyberdyne",
        "Globex",
        "Hooli",
        "Initech",
        "Stark",
        "Tyrell",
        "Umbrella",
        "Vandelay",
        "Wayne",
    ];
    let labels: Vec<&str> = nodes
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!labels.is_empty(), "no nodes");
    assert!(
        labels.iter().all(|label| companies.contains(label)),
        "{labels:?}"
    );
    save_screenshot(client, "python-datasource").await;
    assert_no_page_errors(client).await;
    let _ = plugin.kill();
    let _ = plugin.wait();
}

/// Messages a user can act on: a query that cannot be understood is said
/// once, in words, comes back to the search box and is not replayed on
/// reload; a query without results says so by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_messages_about_queries() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "emails", "from").await;
    enable_datasource(client, "tweets", "user.screen_name").await;
    tick_node_field(client, "from").await;

    search(client, RED, "a AND (b").await;
    until(
        client,
        "the query to be refused",
        "const li = document.querySelector('#queries li'); return li && li.dataset.state === 'invalid';",
    )
    .await;
    let shown = js(
        client,
        "const li = document.querySelector('#queries li'); \
         const input = document.getElementById('query-input'); \
         return { errors: [...li.querySelectorAll('.error')].map((e) => e.textContent), \
                  retry: !li.querySelector('.retry').hidden, more: !li.querySelector('.more').hidden, \
                  input: input.value, cursor: [input.selectionStart, input.selectionEnd], \
                  saved: JSON.parse(localStorage.getItem('tributary.ui.v1')).queries.map((q) => q.text) };",
    )
    .await;
    assert_eq!(
        shown["errors"],
        json!(["This query cannot be understood: missing closing parenthesis at character 8. Fix it in the search box and press Enter."]),
        "one message, in words, with the position: {shown}"
    );
    assert_eq!(shown["retry"], false, "{shown}");
    assert_eq!(shown["more"], false, "{shown}");
    assert_eq!(
        shown["input"], "a AND (b",
        "the text is back for fixing: {shown}"
    );
    assert_eq!(shown["cursor"], json!([7, 8]), "at the problem: {shown}");
    assert_eq!(shown["saved"], json!([]), "not saved: {shown}");

    // Fixed and sent again; then a query nothing matches.
    search(client, "#0000ff", "zzyzx_nothing").await;
    until(
        client,
        "the empty answer",
        "const li = document.querySelector('#queries li:last-child'); \
         return li && li.dataset.state === 'done' \
             && li.querySelector('.sources').textContent === 'No records match `zzyzx_nothing` in Emails or Tweets.';",
    )
    .await;

    // Reloaded: the refused query is not asked again, the other is.
    client.refresh().await.expect("reload");
    until(
        client,
        "the saved query after the reload",
        "const items = [...document.querySelectorAll('#queries li .text')].map((t) => t.textContent); \
         return items.length === 1 && items[0] === 'zzyzx_nothing';",
    )
    .await;
    // The overlay says what is true after the reload: datasources are
    // enabled, a field is ticked, and nothing matched.
    until(
        client,
        "the overlay to say nothing matched",
        "return document.getElementById('graph-empty').textContent \
             === 'No records match the queries. Try another query, or enable more datasources.';",
    )
    .await;
    assert_no_page_errors(client).await;
}

/// Without WebGL the page says the graph needs it, and the rest works:
/// datasources, queries and the records table (every record, as there is
/// no graph to select from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_webgl_the_page_still_works() {
    let server = demo_server();
    let Some(browser) = browser_with(&["--disable-webgl", "--disable-3d-apis"]).await else {
        return;
    };
    let client = &browser.client;
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    open_page(client, &server).await;
    let empty = js(
        client,
        "return document.getElementById('graph-empty').textContent;",
    )
    .await;
    assert!(
        empty
            .as_str()
            .unwrap_or("")
            .starts_with("The graph needs WebGL"),
        "{empty}"
    );
    enable_datasource(client, "emails", "from").await;
    tick_node_field(client, "from").await;
    search(client, RED, "invoice").await;
    until(
        client,
        "the records in the table",
        "const li = document.querySelector('#queries li'); \
         return li && li.dataset.state === 'done' && document.querySelectorAll('#records tbody tr').length > 0;",
    )
    .await;
    let still = js(
        client,
        "return document.getElementById('graph-empty').textContent;",
    )
    .await;
    assert!(
        still
            .as_str()
            .unwrap_or("")
            .starts_with("The graph needs WebGL"),
        "{still}"
    );
    save_screenshot(client, "no-webgl").await;
}

/// The timeline puts each datasource's records on it by its own date field,
/// a drag across it selects the nodes of that time range, and the selection
/// shows on it; the records table sorts by a column, opens a row from the
/// keyboard and exports CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_and_table_across_datasources() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "emails", "from").await;
    enable_datasource(client, "tweets", "user.screen_name").await;
    tick_node_field(client, "from").await;
    tick_node_field(client, "user.screen_name").await;
    search(client, RED, "*").await;
    wait_queries_done(client, 1).await;
    let timeline = js(
        client,
        "const bars = [...document.querySelectorAll('#histogram rect:not(.selected)')]; \
         const counted = bars.reduce((sum, bar) => sum + Number(bar.querySelector('title').textContent.match(/: (\\d+) record/)[1]), 0); \
         const query = window.tributary.app.queries[0]; \
         return { caption: document.getElementById('histogram-field').textContent, counted, records: query.records.size, \
                  datasources: [...new Set([...query.records.values()].map((r) => r.ds))].sort() };",
    )
    .await;
    let caption = timeline["caption"].as_str().unwrap_or("");
    assert!(
        caption.contains("Emails: date") && caption.contains("Tweets: created_at"),
        "each datasource by its own date field: {timeline}"
    );
    assert_eq!(
        timeline["datasources"],
        json!(["emails", "tweets"]),
        "{timeline}"
    );
    assert_eq!(
        timeline["counted"], timeline["records"],
        "every record of both datasources is on the timeline: {timeline}"
    );

    // A drag across the whole timeline selects every node; the selection
    // shows over the bars.
    let selected = js(
        client,
        "const h = document.getElementById('histogram'); const box = h.getBoundingClientRect(); \
         const at = (type, x) => h.dispatchEvent(new PointerEvent(type, { clientX: x, clientY: box.top + box.height / 2, pointerId: 1, bubbles: true })); \
         at('pointerdown', box.left + 1); at('pointerup', box.right - 1); \
         return { selection: window.tributary.app.selection.length, nodes: window.tributary.view.graph.order };",
    )
    .await;
    assert_eq!(selected["selection"], selected["nodes"], "{selected}");
    until(
        client,
        "the selection over the timeline and in the table",
        "return document.querySelectorAll('#histogram rect.selected').length > 0 \
             && document.querySelectorAll('#records tbody tr').length > 0;",
    )
    .await;

    // Sorted by `from`, then the other way.
    let column = |descending: bool| {
        format!(
            "const headers = [...document.querySelectorAll('#records th')]; \
             const at = headers.findIndex((th) => th.querySelector('button.sort').textContent === 'from'); \
             headers[at].querySelector('button.sort').click(); \
             const values = [...document.querySelectorAll('#records tbody tr')].map((tr) => tr.cells[at].textContent).filter((v) => v); \
             const sorted = [...values].sort((a, b) => a.localeCompare(b, undefined, {{ numeric: true }})); \
             if ({descending}) sorted.reverse(); \
             return {{ ok: values.length > 3 && values.every((v, i) => v === sorted[i]), \
                      sort: document.querySelectorAll('#records th')[at].getAttribute('aria-sort') }};"
        )
    };
    let ascending = js(client, &column(false)).await;
    assert_eq!(ascending, json!({"ok": true, "sort": "ascending"}));
    let descending = js(client, &column(true)).await;
    assert_eq!(descending, json!({"ok": true, "sort": "descending"}));

    // A row opens from the keyboard.
    let first = client
        .find(Locator::Css("#records tbody tr"))
        .await
        .expect("a row");
    first.send_keys("\u{E007}").await.expect("Enter on a row");
    until(
        client,
        "the record's details",
        "return !document.getElementById('details').hidden;",
    )
    .await;

    // CSV of the rows shown, a header first.
    let csv = js(
        client,
        "let href = null; const click = HTMLAnchorElement.prototype.click; \
         HTMLAnchorElement.prototype.click = function () { href = this.href; }; \
         document.getElementById('export-csv').click(); HTMLAnchorElement.prototype.click = click; \
         const text = decodeURIComponent(href.slice(href.indexOf(',') + 1)); \
         return { lines: text.trim().split('\\r\\n').length, header: text.split('\\r\\n')[0], \
                  rows: window.tributary.app.selection.length ? document.getElementById('records-count').textContent : '' };",
    )
    .await;
    assert_eq!(
        csv["header"], "datasource,id,date,created_at,subject,text,from,user.screen_name",
        "{csv}"
    );
    assert!(csv["lines"].as_u64().unwrap_or(0) > 10, "{csv}");
    assert_no_page_errors(client).await;
}

/// Accessible by default: a color-blind-safe palette (Okabe–Ito) with a
/// legend on the graph, icons readable on their node's color (≥ 3:1), a
/// visible keyboard focus, named color inputs, the selection as text, and
/// a layout that works 390 px wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessible_by_default() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "emails", "from").await;
    tick_node_field(client, "from").await;
    tick_node_field(client, "to").await;
    // Two queries in the colors the page suggests.
    for query in ["invoice", "meeting"] {
        let input = client
            .find(Locator::Id("query-input"))
            .await
            .expect("search box");
        input
            .send_keys(&format!("{query}\u{E007}"))
            .await
            .expect("type query");
    }
    wait_queries_done(client, 2).await;
    let page = js(
        client,
        r#"const luminance = (hex) => { const [r, g, b] = [1, 3, 5].map((i) => { const c = parseInt(hex.slice(i, i + 2), 16) / 255;
               return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
           const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m); return (x + 0.05) / (y + 0.05); };
           let worst = Infinity;
           window.tributary.view.graph.forEachNode((k, a) => { if (a.colors.length === 1) worst = Math.min(worst, contrast(a.iconColor, a.colors[0])); });
           return { colors: window.tributary.app.queries.map((q) => q.color),
                    legend: [...document.querySelectorAll('#legend button[data-query]')].map((b) => b.textContent),
                    worst,
                    names: [...document.querySelectorAll('#queries input[type=color]')].map((i) => i.getAttribute('aria-label')) };"#,
    )
    .await;
    assert_eq!(
        page["colors"],
        json!(["#0072b2", "#e69f00"]),
        "Okabe–Ito first: {page}"
    );
    assert_eq!(page["legend"], json!(["invoice", "meeting"]), "{page}");
    assert!(
        page["worst"].as_f64().unwrap_or(0.0) >= 3.0,
        "icons readable: {page}"
    );
    assert_eq!(
        page["names"],
        json!(["Color of the query invoice", "Color of the query meeting"]),
        "{page}"
    );

    // Keyboard focus shows.
    let focus = js(
        client,
        "const button = document.getElementById('fit'); button.focus({ focusVisible: true }); \
         return getComputedStyle(button).outlineStyle;",
    )
    .await;
    assert_ne!(focus, json!("none"), "a visible focus");

    // The selection, as text.
    press(client, 'a').await;
    until(
        client,
        "the selection as text",
        "const list = document.getElementById('selection-list'); \
         return !list.hidden && list.textContent.startsWith('Selected: ') && list.textContent.includes('(person)');",
    )
    .await;

    // 390 px wide: nothing scrolls sideways, the side panel is a drawer.
    client.set_window_size(390, 844).await.expect("resize");
    until(
        client,
        "the narrow layout, the drawer closed",
        "return document.getElementById('side').getBoundingClientRect().right <= 1;",
    )
    .await;
    let narrow = js(
        client,
        "const side = document.getElementById('side').getBoundingClientRect(); \
         const search = document.getElementById('query-input').getBoundingClientRect(); \
         return { overflow: document.documentElement.scrollWidth > window.innerWidth, \
                  sideShown: side.right > 1, searchWidth: search.width };",
    )
    .await;
    assert_eq!(narrow["overflow"], false, "{narrow}");
    assert_eq!(
        narrow["sideShown"], false,
        "the drawer starts closed: {narrow}"
    );
    assert!(
        narrow["searchWidth"].as_f64().unwrap_or(0.0) > 150.0,
        "{narrow}"
    );
    click(client, "#drawer-toggle").await;
    until(
        client,
        "the drawer to open",
        "return document.getElementById('side').getBoundingClientRect().left >= 0;",
    )
    .await;
    save_screenshot(client, "narrow").await;
    click(client, "#drawer-toggle").await;
    client.set_window_size(1280, 720).await.expect("resize");
    until(
        client,
        "the wide layout",
        "return document.getElementById('side').getBoundingClientRect().left >= 0 \
             && document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    save_screenshot(client, "1280x720").await;
    assert_no_page_errors(client).await;
}

/// Moves the pointer to page pixels `at`.
async fn move_pointer(client: &Client, at: (f64, f64)) {
    let mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
        duration: None,
        x: at.0,
        y: at.1,
    });
    client.perform_actions(mouse).await.expect("pointer move");
}

/// The center of an element, in page pixels.
async fn center_of(client: &Client, css: &str) -> (f64, f64) {
    let at = js(
        client,
        &format!("const b = document.querySelector(\"{css}\").getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2];"),
    )
    .await;
    (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0))
}

/// Layouts that stay: positions, pins and the camera survive a reload;
/// deletes are undone one at a time and say how many went; the field list
/// does not re-sort under the pointer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_that_stay() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "emails", "from").await;
    tick_node_field(client, "from").await;
    tick_node_field(client, "to").await;
    search(client, RED, "invoice").await;
    wait_queries_done(client, 1).await;
    const SNAPSHOT: &str = "const view = window.tributary.view; const nodes = {}; \
        view.graph.forEachNode((k, a) => { nodes[k] = [a.x, a.y, Boolean(a.fixed)]; }); \
        const c = view.renderer.getCamera().getState(); \
        return { nodes, camera: [c.x, c.y, c.ratio] };";
    // The layout ends, one node is pinned, the camera zoomed in.
    let pinned = js(
        client,
        "const view = window.tributary.view; view.stopLayout(); \
         const key = view.graph.nodes()[0]; view.setSelection([key]); document.activeElement.blur(); return key;",
    )
    .await;
    press(client, 'p').await;
    until(
        client,
        "the pin",
        "return document.getElementById('pin-selected').textContent === 'Unpin';",
    )
    .await;
    js(
        client,
        "const camera = window.tributary.view.renderer.getCamera(); camera.setState({ ...camera.getState(), ratio: 0.5 }); return true;",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await; // the camera is saved once still
    let before = js(client, SNAPSHOT).await;
    assert_eq!(
        before["nodes"][pinned.as_str().unwrap()][2],
        true,
        "{before}"
    );

    client.refresh().await.expect("reload");
    wait_queries_done(client, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = js(client, SNAPSHOT).await;
    let nodes = before["nodes"].as_object().expect("nodes");
    assert_eq!(
        nodes.len(),
        after["nodes"].as_object().map_or(0, |n| n.len())
    );
    for (key, was) in nodes {
        let now = &after["nodes"][key];
        for i in 0..2 {
            let (a, b) = (was[i].as_f64().unwrap(), now[i].as_f64().unwrap());
            assert!((a - b).abs() < 0.02, "{key} moved: {was} → {now}");
        }
        assert_eq!(was[2], now[2], "{key}: pinned the same");
    }
    for i in 0..3 {
        let (a, b) = (
            before["camera"][i].as_f64().unwrap(),
            after["camera"][i].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < 1e-6,
            "the camera: {} → {}",
            before["camera"],
            after["camera"]
        );
    }
    // Unpinned again.
    js(
        client,
        &format!("window.tributary.view.setSelection([{pinned}]); return true;"),
    )
    .await;
    press(client, 'p').await;
    until(
        client,
        "the unpin",
        &format!(
            "return window.tributary.view.graph.getNodeAttribute({pinned}, 'fixed') === false;"
        ),
    )
    .await;

    // Two deletes, undone one at a time, each nodes back where they were.
    let order = js(client, "return window.tributary.view.graph.order;")
        .await
        .as_u64()
        .unwrap();
    let delete = |count: usize, skip: usize| {
        format!(
            "const keys = window.tributary.view.graph.nodes().slice({skip}, {skip} + {count}); \
             window.tributary.view.setSelection(keys); return keys;"
        )
    };
    js(client, &delete(2, 0)).await;
    press(client, '\u{E017}').await; // Delete
    until(
        client,
        "the toast",
        "return document.getElementById('toast').textContent.startsWith('Removed 2 nodes');",
    )
    .await;
    let second = js(client, &delete(3, 0)).await;
    press(client, '\u{E017}').await;
    until(
        client,
        "the toast",
        "return document.getElementById('toast').textContent.startsWith('Removed 3 nodes');",
    )
    .await;
    until(
        client,
        "the nodes to go",
        &format!(
            "return window.tributary.view.graph.order === {};",
            order - 5
        ),
    )
    .await;
    press(client, 'u').await;
    until(
        client,
        "the last delete undone",
        &format!(
            "return window.tributary.view.graph.order === {};",
            order - 2
        ),
    )
    .await;
    let back = js(
        client,
        &format!("const keys = {second}; return keys.map((k) => [window.tributary.view.graph.getNodeAttribute(k, 'x'), window.tributary.view.graph.getNodeAttribute(k, 'y')]);"),
    )
    .await;
    for (i, key) in second.as_array().unwrap().iter().enumerate() {
        let was = &after["nodes"][key.as_str().unwrap()];
        assert!(
            (was[0].as_f64().unwrap() - back[i][0].as_f64().unwrap()).abs() < 0.02,
            "{key} came back elsewhere"
        );
    }
    press(client, 'u').await;
    until(client, "every delete undone", &format!("return window.tributary.view.graph.order === {order} && document.getElementById('undo-delete').hidden;")).await;

    // The field list holds its order under the pointer, and sorts once it leaves.
    let fields_order =
        "return [...document.querySelectorAll('#fields li')].map((li) => li.dataset.field);";
    let listed = js(client, fields_order).await;
    let cc = center_of(client, "#fields li[data-field='cc'] input[type=checkbox]").await;
    move_pointer(client, cc).await;
    click(client, "#fields li[data-field='cc'] input[type=checkbox]").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        js(client, fields_order).await,
        listed,
        "no re-sort under the pointer"
    );
    move_pointer(client, center_of(client, "#graph-stats").await).await;
    until(
        client,
        "the list to sort once the pointer left",
        "const fields = [...document.querySelectorAll('#fields li')].map((li) => li.dataset.field); \
         return fields.indexOf('cc') < fields.indexOf('attachments');",
    )
    .await;
    assert_no_page_errors(client).await;
}

/// Readable at scale: more than 500 new records ask first; a query shows at
/// most 500 nodes until "show all"; nodes with fewer links than asked are
/// left out; a selection dims what is not next to it; a node's pie is in
/// proportion to how many records of each query hold it; labels have a halo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readable_at_scale() {
    let server = demo_server_with_people(1000);
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    open_page(client, &server).await;
    enable_datasource(client, "emails", "from").await;
    enable_datasource(client, "tweets", "user.screen_name").await;
    enable_datasource(client, "people", "group").await;
    tick_node_field(client, "id").await;
    tick_node_field(client, "group").await;

    // Three datasources, 200 records each: the page asks first.
    js(
        client,
        "window.asked = []; window.answer = false; window.confirm = (m) => { window.asked.push(m); return window.answer; }; return true;",
    )
    .await;
    search(client, RED, "*").await;
    let declined = js(
        client,
        "return { asked: window.asked, queries: document.querySelectorAll('#queries li').length, \
                  input: document.getElementById('query-input').value };",
    )
    .await;
    assert_eq!(declined["queries"], 0, "{declined}");
    assert_eq!(declined["input"], "*", "the text stays: {declined}");
    assert!(
        declined["asked"][0]
            .as_str()
            .unwrap_or("")
            .contains("600 records"),
        "{declined}"
    );
    js(client, "window.answer = true; return true;").await;
    search(client, RED, "*").await;
    wait_queries_done(client, 1).await;

    // 605 distinct values, 500 shown, the rest behind "show all".
    until(
        client,
        "the cap",
        "return window.tributary.view.graph.order === 500 \
             && document.querySelector('#queries li .capped')?.textContent.startsWith('105 more nodes not shown');",
    )
    .await;
    click(client, "#queries li .show-all").await;
    until(
        client,
        "every node",
        "return window.tributary.view.graph.order === 605;",
    )
    .await;

    // At least one link each: the ids of emails and tweets (no other field
    // ticked holds a value with them) step out.
    js(
        client,
        "const input = document.getElementById('min-links'); input.value = '1'; \
         input.dispatchEvent(new Event('change')); return true;",
    )
    .await;
    until(
        client,
        "the unlinked nodes to go",
        "const graph = window.tributary.view.graph; \
         return graph.order === 205 && graph.nodes().every((k) => graph.degree(k) >= 1);",
    )
    .await;

    // A second query: a group's pie in proportion to each query's records.
    search(client, "#0000ff", "group:g0").await;
    wait_queries_done(client, 2).await;
    let pie = js(
        client,
        "const key = 'group\u{241f}g0'; const a = window.tributary.view.graph.getNodeAttributes(key); \
         const node = window.tributary.model.nodes.get(key); \
         return { slices: [a.v0, a.v1], held: window.tributary.app.queries.map((q) => node.byQuery.get(q.id)) };",
    )
    .await;
    // In proportion (each share above the minimum slice, as here).
    let share = |v: &Value, i: usize| v[i].as_f64().unwrap_or(0.0);
    let (slices, held) = (&pie["slices"], &pie["held"]);
    let total = share(held, 0) + share(held, 1);
    assert!(
        (share(slices, 0) - share(held, 0) / total).abs() < 1e-9
            && (share(slices, 1) - share(held, 1) / total).abs() < 1e-9,
        "{pie}"
    );
    assert_ne!(
        pie["held"][0], pie["held"][1],
        "two different shares: {pie}"
    );

    // Selecting a group dims the other groups; labels are drawn with a halo.
    let dimmed = js(
        client,
        "const view = window.tributary.view; view.setSelection(['group\u{241f}g1']); \
         const other = view.reduceNode('group\u{241f}g2', view.graph.getNodeAttributes('group\u{241f}g2')); \
         const near = view.graph.neighbors('group\u{241f}g1')[0]; \
         const next = view.reduceNode(near, view.graph.getNodeAttributes(near)); \
         return { other: [other.c0, other.label], next: next.c0 !== '#e6e7ea' };",
    )
    .await;
    // A halo: each label drawn is first stroked in white.
    let halo = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; const view = window.tributary.view; \
             const stroke = CanvasRenderingContext2D.prototype.strokeText; let strokes = []; \
             CanvasRenderingContext2D.prototype.strokeText = function (text, ...rest) { strokes.push([text, this.strokeStyle]); return stroke.call(this, text, ...rest); }; \
             view.renderer.refresh(); \
             requestAnimationFrame(() => requestAnimationFrame(() => { CanvasRenderingContext2D.prototype.strokeText = stroke; \
                 const labels = view.drawnLabels.length; \
                 done({ labels, haloed: strokes.filter(([, style]) => style.startsWith('rgba(255, 255, 255')).length }); }));",
            vec![],
        )
        .await
        .expect("a frame drawn");
    assert!(
        halo["labels"].as_u64().is_some_and(|n| n > 0)
            && halo["haloed"].as_u64() >= halo["labels"].as_u64(),
        "{halo}"
    );
    assert_eq!(dimmed["other"], json!(["#e6e7ea", ""]), "{dimmed}");
    assert_eq!(
        dimmed["next"], true,
        "a neighbour keeps its colors: {dimmed}"
    );
    save_screenshot(client, "at-scale").await;
    assert_no_page_errors(client).await;
}

/// 6,000 records (2,000 from each of three datasources, as a saved query
/// replays them) on the page: every one arrives, and the page's long tasks
/// (over 50 ms on the main thread) while loading, selecting and zooming are
/// printed for BENCHMARKS.md (no test asserts a duration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_thousand_records() {
    let server = demo_server_with_people(3000);
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    // A saved session: three datasources, four node fields, one query of ten pages.
    open_workspace(
        client,
        &server,
        r##"{
              enabled: ["emails", "tweets", "people"],
              nodeFields: { from: "mail", "user.screen_name": "person", hashtags: "tag", group: "tag" },
              queries: [{ id: 1, text: "*", color: "#0072b2", pages: 10, showAll: true }], nextQueryId: 2,
              deleted: [], deletions: [], dateFields: {} }"##,
    )
    .await;
    js(
        client,
        // Long tasks are whole tasks of the page's thread, the browser's
        // drawing included (software WebGL reads pixels back here); long
        // animation frames attribute the time to scripts, so `js` is what
        // the page's own JavaScript took in one frame.
        "window.longTasks = []; new PerformanceObserver((list) => { for (const e of list.getEntries()) window.longTasks.push(Math.round(e.duration)); }) \
           .observe({ type: 'longtask', buffered: true }); \
         window.scriptFrames = []; new PerformanceObserver((list) => { for (const e of list.getEntries()) \
             window.scriptFrames.push({ start: e.startTime, js: Math.round(e.scripts.reduce((sum, s) => sum + s.duration, 0)) }); }) \
           .observe({ type: 'long-animation-frame', buffered: true }); \
         window.loadStarted = performance.now(); return true;",
    )
    .await;
    until(
        client,
        "6,000 records",
        "const q = window.tributary?.app.queries[0]; return !!q && q.records.size === 6000 \
             && [...q.sources.values()].every((s) => !s.loading);",
    )
    .await;
    let loaded = js(
        client,
        "window.loadedAt = performance.now(); \
         return { ms: Math.round(performance.now() - window.loadStarted), tasks: window.longTasks.splice(0), \
                  ...(() => { \
                    // The page's start (its modules, the WebGL context) apart from the loading of records.
                    const started = performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd; \
                    const frames = window.scriptFrames.splice(0); \
                    const most = (list) => list.length ? `${Math.max(...list.map((f) => f.js))} ms` : 'no frame over 50 ms'; \
                    return { startup: most(frames.filter((f) => f.start < started)), js: most(frames.filter((f) => f.start >= started)) }; })(), \
                  nodes: window.tributary.view.graph.order, links: window.tributary.view.graph.size };",
    )
    .await;
    // The layout settles (as it does on its own within 12 s).
    until(
        client,
        "the layout to settle",
        "return document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;
    save_screenshot(client, "six-thousand-records").await;
    js(
        client,
        "window.longTasks.splice(0); window.scriptFrames.splice(0); return true;",
    )
    .await;
    // Select everything (a), clear (Escape), zoom in and out: what the
    // page's own JavaScript does in between is measured.
    let mut clicks = Vec::new();
    for key in ['a', '\u{E00C}', '+', '-'] {
        let started = js(
            client,
            "document.activeElement.blur(); return performance.now();",
        )
        .await;
        press(client, key).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let took = js(
            client,
            &format!("return Math.round(performance.now() - {started});"),
        )
        .await;
        clicks.push(took);
    }
    let after = js(
        client,
        "const frames = window.scriptFrames.splice(0); \
         return { tasks: window.longTasks.splice(0), js: frames.length ? `${Math.max(...frames.map((f) => f.js))} ms` : 'no frame over 50 ms' };",
    )
    .await;
    eprintln!(
        "six thousand records: loaded in {} ms ({} nodes, {} links); the page's start (its modules, the WebGL context): its JavaScript {} in one frame; while loading: long tasks {}, the page's JavaScript at most {} a frame; \
         each key and 400 ms after it {:?} ms; while selecting and zooming: long tasks {}, the page's JavaScript at most {} a frame",
        loaded["ms"],
        loaded["nodes"],
        loaded["links"],
        loaded["startup"].as_str().unwrap_or("?"),
        loaded["tasks"],
        loaded["js"].as_str().unwrap_or("?"),
        clicks,
        after["tasks"],
        after["js"].as_str().unwrap_or("?")
    );

    // Clicks land on the node under the pointer, one right after another
    // too (sigma would take two quick clicks for a double click and zoom).
    let targets = js(
        client,
        "const view = window.tributary.view, r = view.renderer;
         const box = document.getElementById('graph').getBoundingClientRect();
         const nodes = view.graph.nodes().map((k) => ({ k, p: view.viewportPosition(k), s: r.scaleSize(r.getNodeDisplayData(k).size) }));
         return nodes.filter((a) => a.p.x > 10 && a.p.y > 10 && a.p.x < box.width - 10 && a.p.y < box.height - 10
                 && nodes.every((b) => b === a || Math.hypot(a.p.x - b.p.x, a.p.y - b.p.y) > a.s + b.s + 2))
           .slice(0, 20).map((a) => [a.k, Math.round(box.left + a.p.x), Math.round(box.top + a.p.y)]);",
    )
    .await;
    let targets = targets.as_array().cloned().unwrap_or_default();
    assert!(
        targets.len() >= 10,
        "the laid-out graph has nodes clear of each other: {targets:?}"
    );
    for target in &targets {
        let (key, x, y) = (&target[0], target[1].as_f64(), target[2].as_f64());
        click_at(client, x.unwrap_or(0.0), y.unwrap_or(0.0)).await;
        until(
            client,
            &format!("a click to select {key}"),
            &format!("const s = window.tributary.app.selection; return s.length === 1 && s[0] === {key};"),
        )
        .await;
    }
    assert_no_page_errors(client).await;
}

/// axe-core (vendored in tests/vendor) finds no serious or critical
/// accessibility violation on the page, with a query's results shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_serious_accessibility_violations() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    enable_datasource(client, "emails", "from").await;
    tick_node_field(client, "from").await;
    search(client, RED, "invoice").await;
    wait_queries_done(client, 1).await;
    let report = accessibility_violations(client, &[]).await;
    assert_eq!(report, json!([]), "serious accessibility violations");
}

/// What axe-core (vendored in tests/vendor) finds on the page as it is:
/// every serious or critical violation, and those of the rules `also`
/// names whatever their impact.
pub(crate) async fn accessibility_violations(client: &Client, also: &[&str]) -> Value {
    let axe = include_str!("../vendor/axe.min.js");
    js(client, &format!("{axe}\nreturn true;")).await;
    client
        .execute_async(
            "const [also, done] = [arguments[0], arguments[arguments.length - 1]];
             axe.run(document, { resultTypes: ['violations'] }).then((r) => done(
                 r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical' || also.includes(v.id))
                     .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }))));",
            vec![json!(also)],
        )
        .await
        .expect("axe runs")
}

/// A person's tweets and e-mails, joined: the author's address in the
/// tweets and the same address on e-mails are one node (the demo's
/// `person` link); expanding it with `e` brings the people on that
/// person's e-mails into the graph as an "expansion" entry of the query
/// list, colored apart, that can be removed like a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_a_person_across_tweets_and_emails() {
    let server = demo_server();
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let person = open_annad0(client, &server).await;
    until(
        client,
        "the query's nodes, the address as the link's node",
        &format!(
            "const v = window.tributary.view; return v.graph.hasNode('user.screen_name\u{241f}annad0') \
             && v.graph.hasNode('{person}') && v.graph.order === 2;"
        ),
    )
    .await;
    until(
        client,
        "the layout to settle",
        "return document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;

    // Select the person and expand (e).
    js(
        client,
        &format!("window.tributary.view.setSelection(['{person}']); document.activeElement.blur(); return true;"),
    )
    .await;
    press(client, 'e').await;
    until(
        client,
        "the expansion's nodes",
        "const q = window.tributary.app.queries; return q.length === 2 && q[1].kind === 'expansion' \
           && [...q[1].sources.values()].every((s) => !s.loading) && window.tributary.view.graph.order > 2;",
    )
    .await;
    // What it found is what the e-mails say: everyone on anna's e-mails, by
    // address (one node per person, whichever field they were in).
    let expected = {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/datasources/demo/emails.ndjson"
        ))
        .expect("demo emails");
        let mut people = std::collections::BTreeMap::<String, u64>::new();
        for line in text.lines() {
            let email: Value = serde_json::from_str(line).expect("json");
            let mut on: Vec<String> = vec![email["from"].as_str().unwrap_or_default().to_owned()];
            for field in ["to", "cc"] {
                for v in email[field].as_array().into_iter().flatten() {
                    on.push(v.as_str().unwrap_or_default().to_owned());
                }
            }
            if !on.iter().any(|a| a == "anna.devries@acme.example") {
                continue;
            }
            on.sort();
            on.dedup();
            for a in on.into_iter().filter(|a| a != "anna.devries@acme.example") {
                *people.entry(a).or_default() += 1;
            }
        }
        people
    };
    let drawn = js(
        client,
        "const q = window.tributary.app.queries[1]; const v = window.tributary.view; \
         return { nodes: v.graph.nodes().filter((k) => k.startsWith('person\u{241f}')).map((k) => k.slice(7)), \
                  entry: document.querySelector('#queries li[data-kind=expansion]')?.textContent ?? '', \
                  color: q.color, colored: v.graph.getNodeAttribute('{person}', 'colors') };"
            .replace("{person}", person)
            .as_str(),
    )
    .await;
    let nodes: std::collections::BTreeSet<String> = drawn["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    // Per field the server sends the ten most frequent; each is drawn, as one node.
    let mut by_count: Vec<(&String, &u64)> = expected.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let surely: Vec<&String> = by_count.iter().take(3).map(|(a, _)| *a).collect();
    for address in &surely {
        assert!(nodes.contains(*address), "{address} drawn: {nodes:?}");
    }
    for node in &nodes {
        assert!(
            node == "anna.devries@acme.example" || expected.contains_key(node),
            "{node} is on anna's e-mails"
        );
    }
    let entry = drawn["entry"].as_str().unwrap_or_default();
    assert!(
        entry.contains("expand anna.devries@acme.example"),
        "{entry}"
    );
    assert!(entry.contains("Emails"), "{entry}");
    assert_eq!(
        drawn["colored"].as_array().map(|c| c.len()),
        Some(2),
        "the person has the query's and the expansion's colors: {drawn}"
    );
    // The links the expansion went through the `person` link are labelled so.
    let labelled = js(
        client,
        &format!("const g = window.tributary.view.graph; return g.edges().filter((e) => g.getEdgeAttribute(e, 'label') === 'person' \
                  && g.extremities(e).includes('{person}')).length;"),
    )
    .await;
    assert!(
        labelled.as_u64().unwrap_or(0) > 0,
        "labelled links: {labelled}"
    );
    save_screenshot(client, "expansion").await;

    // Removed like a query: its nodes go, the query's stay.
    js(
        client,
        "document.querySelector('#queries li[data-kind=expansion] button.remove').click(); return true;",
    )
    .await;
    until(
        client,
        "the expansion removed",
        "return window.tributary.app.queries.length === 1 && window.tributary.view.graph.order === 2;",
    )
    .await;
    assert_no_page_errors(client).await;
}

/// The demo page with a saved workspace: both datasets, screen names and
/// addresses as nodes, one query for `annad0`'s tweets. Returns the node
/// key of annad0's address (the demo's `person` link).
async fn open_annad0(client: &Client, server: &ServerHandle) -> &'static str {
    open_workspace(
        client,
        server,
        r##"{
              enabled: ["emails", "tweets"],
              nodeFields: { "user.screen_name": "at", "user.email": "mail", from: "mail", to: "mail" },
              queries: [{ id: 1, text: "user.screen_name:annad0", color: "#0072b2", pages: 1 }], nextQueryId: 2,
              deleted: [], deletions: [], dateFields: {} }"##,
    )
    .await;
    "person\u{241f}anna.devries@acme.example"
}

/// Opens the page of `server` with `workspace` (the JSON of what the page
/// keeps between visits) as if saved by an earlier visit.
pub(crate) async fn open_workspace(client: &Client, server: &ServerHandle, workspace: &str) {
    client
        .goto(&format!("http://{}/", server.addr))
        .await
        .expect("open page");
    js(
        client,
        &format!(
            "localStorage.setItem('tributary.ui.v1', JSON.stringify({workspace})); return true;"
        ),
    )
    .await;
    client.refresh().await.expect("reload");
}

/// The graph as drawn: each node's key and label, sorted.
pub(crate) async fn drawn_nodes(client: &Client) -> Value {
    js(
        client,
        "const g = window.tributary.view.graph; \
         return g.nodes().sort().map((k) => [k, g.getNodeAttribute(k, 'label')]);",
    )
    .await
}

/// An investigation: a query, an expansion, a renamed and annotated node
/// and two merged ones (through the node menu, opened with a right click)
/// are saved to a file, and the file opened in another browser (a profile
/// of its own) shows the same graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_an_investigation_and_open_it_elsewhere() {
    let server = demo_server();
    let Some(first) = browser().await else {
        return;
    };
    let client = &first.client;
    let person = open_annad0(client, &server).await;
    until(
        client,
        "the query's two nodes, laid out",
        &format!(
            "return window.tributary.view.graph.hasNode('{person}') && window.tributary.view.graph.order === 2 \
             && document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';"
        ),
    )
    .await;
    js(client, &format!("window.tributary.view.setSelection(['{person}']); document.activeElement.blur(); return true;")).await;
    press(client, 'e').await;
    until(
        client,
        "the expansion",
        "const q = window.tributary.app.queries; return q.length === 2 && [...q[1].sources.values()].every((s) => !s.loading) \
           && document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;

    // A right click on the person opens the node menu; rename and annotate it.
    js(client, "window.prompt = (question) => question.startsWith('A name') ? 'Anna (work)' : 'met at the offsite'; return true;").await;
    // Under load a render may still be pending when the node's position is
    // read (it moves when the next frame draws): right-click where it is
    // now, again, until the menu opens.
    let mut opened = false;
    for _ in 0..5 {
        let (x, y) = node_position(client, person).await;
        let right_click = MouseActions::new("mouse".into())
            .then(PointerAction::MoveTo {
                duration: None,
                x,
                y,
            })
            .then(PointerAction::Down { button: 2 })
            .then(PointerAction::Up { button: 2 });
        client
            .perform_actions(right_click)
            .await
            .expect("right click");
        if within(
            client,
            Duration::from_secs(2),
            "return !document.getElementById('node-menu').hidden;",
        )
        .await
        {
            opened = true;
            break;
        }
    }
    if !opened {
        save_screenshot(client, "timeout").await;
    }
    assert!(opened, "a right click on the node never opened its menu");
    js(
        client,
        "document.querySelector('#node-menu [data-action=rename]').click(); return true;",
    )
    .await;
    until(
        client,
        "the new name",
        &format!("return window.tributary.view.graph.getNodeAttribute('{person}', 'label') === 'Anna (work)';"),
    )
    .await;
    js(
        client,
        &format!(
            "window.tributary.view.onNodeMenu('{person}', {{x: 10, y: 10}}); \
                  document.querySelector('#node-menu [data-action=note]').click(); return true;"
        ),
    )
    .await;
    until(
        client,
        "the note with the selection",
        "return document.getElementById('selection-list').textContent.includes('Anna (work) (person) — met at the offsite');",
    )
    .await;

    // Merge two of the expansion's people into one.
    let pair = js(
        client,
        &format!("return window.tributary.view.graph.nodes().filter((k) => k.startsWith('person\u{241f}') && k !== '{person}').sort().slice(0, 2);"),
    )
    .await;
    let (keep, merged) = (
        pair[0].as_str().unwrap_or_default(),
        pair[1].as_str().unwrap_or_default(),
    );
    js(
        client,
        &format!(
            "window.tributary.view.setSelection(['{keep}', '{merged}']); \
                  window.tributary.view.onNodeMenu('{keep}', {{x: 10, y: 10}}); \
                  document.querySelector('#node-menu [data-action=merge]').click(); return true;"
        ),
    )
    .await;
    until(
        client,
        "the merged node",
        &format!("const g = window.tributary.view.graph; return !g.hasNode('{merged}') && g.getNodeAttribute('{keep}', 'label').endsWith('(+1)');"),
    )
    .await;
    let before = drawn_nodes(client).await;

    // Saved: the file the page offers for download.
    let file = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const create = URL.createObjectURL; \
             URL.createObjectURL = (blob) => { blob.text().then(done); return create(blob); }; \
             document.getElementById('save-investigation').click();",
            vec![],
        )
        .await
        .expect("saved file");
    let text = file.as_str().unwrap_or_default().to_owned();
    let saved: Value = serde_json::from_str(&text).expect("the file is JSON");
    assert_eq!(saved["format"], "tributary.investigation");
    assert_eq!(saved["workspace"]["merges"][merged], keep);
    assert_eq!(
        saved["workspace"]["nodes"][person]["note"],
        "met at the offsite"
    );
    assert_eq!(saved["workspace"]["queries"][1]["kind"], "expansion");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("investigation.json");
    std::fs::write(&path, &text).expect("write the file");

    // Another browser, another profile: open the file.
    let Some(other) = browser().await else {
        return;
    };
    let elsewhere = &other.client;
    open_page(elsewhere, &server).await;
    let input = elsewhere
        .find(fantoccini::Locator::Id("open-investigation"))
        .await
        .expect("the file input");
    input
        .send_keys(&path.to_string_lossy())
        .await
        .expect("choose the file");
    until(
        elsewhere,
        "the investigation's graph",
        &format!(
            "const t = window.tributary; return t && t.app.queries.length === 2 \
               && t.view.graph.order === {order} && t.app.queries.every((q) => [...q.sources.values()].every((s) => !s.loading));",
            order = before.as_array().map(Vec::len).unwrap_or(0)
        ),
    )
    .await;
    assert_eq!(
        drawn_nodes(elsewhere).await,
        before,
        "the same nodes, names and merges"
    );
    let positions = js(
        elsewhere,
        &format!("const a = window.tributary.view.graph.getNodeAttributes('{person}'); return [a.x, a.y];"),
    )
    .await;
    assert_eq!(
        positions,
        json!([
            saved["layout"]["positions"][person][0],
            saved["layout"]["positions"][person][1]
        ]),
        "where the nodes were"
    );
    save_screenshot(elsewhere, "investigation-opened").await;
    assert_no_page_errors(elsewhere).await;
    assert_no_page_errors(client).await;
}

/// A file that is not an investigation is refused with a message, and the
/// workspace stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_an_investigation_is_refused() {
    let Some((_server, browser)) = demo_page().await else {
        return;
    };
    let client = &browser.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.json");
    std::fs::write(&path, r#"{"format": "something else"}"#).expect("write");
    let input = client
        .find(fantoccini::Locator::Id("open-investigation"))
        .await
        .expect("the file input");
    input
        .send_keys(&path.to_string_lossy())
        .await
        .expect("choose the file");
    until(
        client,
        "the refusal",
        "const t = document.getElementById('toast'); return !t.hidden && t.textContent.includes('notes.json cannot be opened: the file is not a tributary investigation');",
    )
    .await;
}

/// Two datasets whose fields share values, with no link configured: the
/// page suggests linking them, and once accepted their values are one node
/// (also after a reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_fields_are_suggested_as_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, lines: Vec<Value>| {
        let path = dir.path().join(name);
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n")).expect("dataset");
        path.to_string_lossy().into_owned()
    };
    let tweets = write(
        "tweets.ndjson",
        ["annad", "bob", "carol", "dave"]
            .iter()
            .enumerate()
            .map(|(i, u)| json!({"id": format!("t{i}"), "user": {"screen_name": u}}))
            .collect(),
    );
    let emails = write(
        "emails.ndjson",
        ["AnnaD", "bob", "carol", "erin"]
            .iter()
            .enumerate()
            .map(|(i, u)| json!({"id": format!("m{i}"), "from": u}))
            .collect(),
    );
    let mut settings = common::settings(vec![
        common::datasource("tweets", "fixtures", json!({"path": tweets})),
        common::datasource("emails", "fixtures", json!({"path": emails})),
    ]);
    settings.links.clear();
    let server = tributary::http::spawn(settings, common::registry()).expect("server starts");
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    open_workspace(
        client,
        &server,
        r##"{
              enabled: ["emails", "tweets"], nodeFields: { "user.screen_name": "at", from: "mail" },
              queries: [{ id: 1, text: "*", color: "#0072b2", pages: 1 }], nextQueryId: 2,
              deleted: [], deletions: [], dateFields: {} }"##,
    )
    .await;
    until(
        client,
        "eight nodes and the suggestion",
        "const s = document.querySelector('#link-suggestions .suggestion'); \
         return window.tributary.view.graph.order === 8 && !!s \
           && s.textContent.includes('from (EMAILS) and user.screen_name (TWEETS) share 3 values');",
    )
    .await;
    js(
        client,
        "document.querySelector('#link-suggestions .accept-link').click(); return true;",
    )
    .await;
    until(
        client,
        "the shared values as one node each",
        "const g = window.tributary.view.graph; return g.order === 5 && g.hasNode('from/user.screen_name\u{241f}annad') \
           && !document.querySelector('#link-suggestions .suggestion');",
    )
    .await;
    // Kept with the workspace.
    client.refresh().await.expect("reload");
    until(
        client,
        "the link after a reload",
        "const g = window.tributary?.view.graph; return !!g && g.order === 5 && g.hasNode('from/user.screen_name\u{241f}bob');",
    )
    .await;
    assert_no_page_errors(client).await;
}

/// The node menu's other actions and the record details' buttons: select
/// neighbours, delete others (undone with `u`), search a value everywhere,
/// expand from a record's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_menu_and_the_record_details_act_on_values() {
    let server = demo_server();
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let person = open_annad0(client, &server).await;
    let screen_name = "user.screen_name\u{241f}annad0";
    until(
        client,
        "the two nodes, laid out",
        "return window.tributary.view.graph.order === 2 \
           && document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';",
    )
    .await;
    let menu = |key: &str, action: &str| {
        format!(
            "window.tributary.view.setSelection(['{key}']); window.tributary.view.onNodeMenu('{key}', {{x: 20, y: 20}}); \
             document.querySelector('#node-menu [data-action={action}]').click(); return true;"
        )
    };
    js(client, &menu(screen_name, "neighbours")).await;
    until(
        client,
        "the node and its neighbour selected",
        &format!("const s = window.tributary.app.selection; return s.length === 2 && s.includes('{person}');"),
    )
    .await;
    js(client, &menu(screen_name, "delete-others")).await;
    until(
        client,
        "the others deleted",
        &format!("const g = window.tributary.view.graph; return g.order === 1 && g.hasNode('{screen_name}');"),
    )
    .await;
    js(client, "document.activeElement.blur(); return true;").await;
    press(client, 'u').await;
    until(
        client,
        "the others back",
        "return window.tributary.view.graph.order === 2;",
    )
    .await;

    // Search the person's address everywhere: a new query in each field of the link.
    js(client, &menu(person, "search")).await;
    until(
        client,
        "a query over the link's fields",
        "const q = window.tributary.app.queries; return q.length === 2 \
           && q[1].text === 'user.email:\"anna.devries@acme.example\" OR from:\"anna.devries@acme.example\" OR to:\"anna.devries@acme.example\" OR cc:\"anna.devries@acme.example\"' \
           && [...q[1].sources.values()].every((s) => !s.loading && s.total > 0);",
    )
    .await;

    // A record's details: expand from one of its values.
    js(
        client,
        &format!("window.tributary.view.setSelection(['{screen_name}']); return true;"),
    )
    .await;
    until(
        client,
        "the records",
        "return document.querySelectorAll('#records tbody tr').length > 0;",
    )
    .await;
    js(
        client,
        "document.querySelector('#records tbody tr').click(); return true;",
    )
    .await;
    until(
        client,
        "the details with their actions",
        "return !document.getElementById('details').hidden && document.querySelectorAll('#details-fields .value-action').length > 0;",
    )
    .await;
    js(
        client,
        "const row = [...document.querySelectorAll('#details-fields tr')].find((tr) => tr.cells[0].textContent === 'user.email'); \
         [...row.querySelectorAll('.value-action')].find((b) => b.textContent === 'expand').click(); return true;",
    )
    .await;
    until(
        client,
        "an expansion from the record's value",
        "const q = window.tributary.app.queries; return q.length === 3 && q[2].kind === 'expansion' \
           && q[2].text === 'expand anna.devries@acme.example';",
    )
    .await;
    assert_no_page_errors(client).await;
}
