//! The web UI's graph model under Node.js (`tests/js/model.test.mjs`): the
//! graph kept up to date record by record equals one built from scratch.

use std::process::Command;

#[test]
fn the_incremental_graph_model_equals_a_rebuild() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/model.test.mjs");
    let output = Command::new("node")
        .arg(script)
        .output()
        .expect("node runs (Node.js 18 or later is needed for the UI tests)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("graph model: ok"));
}
