//! Datasources in other languages: the Python package's own tests, and the
//! conformance kit run against the example CSV plugin through a real
//! tributary server (the binary of this build) — identify, fields, paging,
//! large pages, bad queries, cancel, a plugin killed mid-request, a plugin
//! restarting, and tributary restarting under it.
//!
//! Needs Python 3 with `websockets` (`pip install websockets`; `.ci/run`
//! installs it).

use std::path::Path;
use std::process::Command;

fn python() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("python3");
    command
        .current_dir(root)
        .env("PYTHONPATH", root.join("plugins/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

fn run(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run python3: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn websockets_installed() {
    let mut check = python();
    check.args(["-c", "import websockets.asyncio.client"]);
    let installed = check.output().is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "these tests need Python's websockets package (13 or newer): pip install websockets"
    );
}

#[test]
fn the_python_package_passes_its_tests() {
    websockets_installed();
    let mut tests = python();
    tests.args([
        "-m",
        "unittest",
        "discover",
        "-s",
        "plugins/python/tests",
        "-t",
        "plugins/python",
    ]);
    let output = run(tests, "the Python package's tests");
    assert!(output.contains("OK"), "{output}");
}

#[test]
fn the_python_package_serves_a_real_server() {
    websockets_installed();
    let mut test = python();
    test.env("PLUGIN_TEST_TRIBUTARY", env!("CARGO_BIN_EXE_tributary"))
        .arg("plugins/python/tests/live_server.py");
    let output = run(test, "the Python package against a real server");
    assert!(
        output.contains("OK: async results, errors, publish, refusal, expand, health, vectors"),
        "{output}"
    );
}

#[test]
fn the_example_plugin_passes_the_conformance_kit() {
    websockets_installed();
    let mut kit = python();
    kit.args([
        "plugins/conformance/conformance.py",
        "--tributary",
        env!("CARGO_BIN_EXE_tributary"),
        "--",
        "python3",
        "plugins/python/examples/csv_datasource.py",
        "plugins/python/examples/customers.csv",
        "--name",
        "Customers",
    ]);
    let output = run(kit, "the conformance kit");
    println!("{output}");
    for check in [
        "identify",
        "pings",
        "fields",
        "paging",
        "large-page",
        "concurrent",
        "expand",
        "bad-query",
        "cancel",
        "disconnect",
        "restart",
        "reconnect",
    ] {
        assert!(
            output.contains(&format!("PASS {check}")),
            "check {check} did not pass:\n{output}"
        );
    }
    assert!(
        output.contains("12/12 checks passed (1 skipped: live)"),
        "{output}"
    );
}

/// The kit on a plugin with one deliberate fault: the check that finds it
/// fails, naming the fault; the same plugin without the fault passes.
fn kit_on_faulty_plugin(fault: &str) -> String {
    websockets_installed();
    let mut kit = python();
    kit.args([
        "plugins/conformance/conformance.py",
        "--tributary",
        env!("CARGO_BIN_EXE_tributary"),
        "--live-query",
        "parity:fresh",
        "--live-wait",
        "10",
        "--",
        "python3",
        "plugins/conformance/faulty_plugin.py",
        "--fault",
        fault,
    ]);
    let output = kit.output().expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The kit's check `check` fails on the plugin with `fault`, saying `words`.
fn kit_names_the_fault(fault: &str, check: &str, words: &str) {
    let output = kit_on_faulty_plugin(fault);
    assert!(
        output.contains(&format!("FAIL {check}")) && output.contains(words),
        "{output}"
    );
}

#[test]
fn the_kit_names_a_plugin_that_ignores_cancel() {
    kit_names_the_fault("ignore-cancel", "cancel", "the plugin ignores CANCEL");
}

#[test]
fn the_kit_names_a_plugin_that_sends_more_than_size() {
    kit_names_the_fault("oversize", "paging", "results past the `size`");
}

#[test]
fn the_kit_names_a_plugin_that_ignores_pings() {
    kit_names_the_fault(
        "ignore-pings",
        "pings",
        "does not answer tributary's websocket pings",
    );
}

#[test]
fn the_kit_names_a_plugin_that_sends_no_total() {
    kit_names_the_fault("no-total", "paging", "came without `total`");
}

#[test]
fn the_kit_names_a_plugin_whose_publishes_never_arrive() {
    kit_names_the_fault("bad-publish", "live", "reached the live query");
}

#[test]
fn the_faulty_plugin_without_its_fault_passes_the_kit() {
    let output = kit_on_faulty_plugin("none");
    assert!(output.contains("13/13 checks passed"), "{output}");
}

/// The kit's query vectors (`plugins/conformance/vectors`): a dataset, and
/// queries with their parsed trees and the totals tributary's embedded
/// datasource gives (dynamic mapping), for plugins in any language to
/// check their evaluation against. This keeps the file true: each tree is
/// the parser's, each total the embedded datasource's.
/// `UPDATE_VECTORS=1 cargo test vectors` writes them afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_query_vectors_are_the_servers_answers() {
    use crate::common::*;
    use serde_json::{json, Value};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/conformance/vectors");
    let path = root.join("queries.json");
    let mut vectors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("queries.json")).expect("JSON");
    let mut settings = settings(vec![datasource(
        "vectors",
        "fixtures",
        json!({"path": root.join("records.ndjson")}),
    )]);
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let update = std::env::var_os("UPDATE_VECTORS").is_some();
    let mut differ = Vec::new();
    for vector in &mut vectors {
        let query = vector["query"].as_str().expect("a query").to_owned();
        let parsed = match tributary::query::tree::parsed(&query) {
            Ok(tree) => tree,
            Err(error) => json!({"version": 1, "error": error.to_string()}),
        };
        let reply = client
            .typed()
            .request(tributary_client::Search::new(["vectors"], query.as_str()).size(0))
            .await
            .expect("a reply");
        let total = if reply.errors.is_empty() {
            json!(reply.total("vectors"))
        } else {
            Value::Null
        };
        if update {
            vector["parsed"] = parsed;
            vector["total"] = total;
            continue;
        }
        if vector["parsed"] != parsed || vector["total"] != total {
            differ.push(format!(
                "`{query}`: file {} / {}, server {parsed} / {total}",
                vector["parsed"], vector["total"]
            ));
        }
    }
    if update {
        let text = serde_json::to_string_pretty(&vectors).expect("JSON");
        std::fs::write(&path, text + "\n").expect("write queries.json");
        return;
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(vectors.len() >= 80);
}

/// `npm run build` then `npm test` in plugins/typescript (its dependencies
/// installed by `npm ci`, which scripts/test runs): the package's own tests,
/// against this build's server.
fn typescript_package_built() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/typescript");
    assert!(
        root.join("node_modules").exists(),
        "run `npm ci --prefix plugins/typescript` first (scripts/test does)"
    );
    let status = Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(&root)
        .status()
        .expect("npm runs (install Node.js 20)");
    assert!(status.success(), "the TypeScript package does not build");
    root
}

#[test]
fn the_typescript_package_passes_its_tests() {
    let root = typescript_package_built();
    let output = Command::new("node")
        .args(["--test", "dist/test/"])
        .env("PLUGIN_TEST_TRIBUTARY", env!("CARGO_BIN_EXE_tributary"))
        .current_dir(&root)
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the TypeScript package's tests failed:\n{text}"
    );
    assert!(
        text.contains("# fail 0") && text.contains("# pass 7"),
        "{text}"
    );
}

#[test]
fn the_typescript_example_passes_the_conformance_kit() {
    websockets_installed();
    let root = typescript_package_built();
    let mut kit = python();
    kit.args([
        "plugins/conformance/conformance.py",
        "--tributary",
        env!("CARGO_BIN_EXE_tributary"),
        "--",
        "node",
    ])
    .arg(root.join("dist/examples/ndjson-datasource.js"))
    .args([
        "plugins/conformance/vectors/records.ndjson",
        "--id",
        "people",
        "--name",
        "People",
    ]);
    let output = run(kit, "the conformance kit on the TypeScript example");
    assert!(
        output.contains("12/12 checks passed (1 skipped: live)"),
        "{output}"
    );
}
