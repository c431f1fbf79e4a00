//! The differential test of the query language: every query of
//! `tests/lucene/queries.txt` runs on both demo datasets through a real
//! tributary server (the `embedded` datasources, over a websocket)
//! and through Apache Lucene 8 (`tests/lucene/Reference.java`, indexing the
//! same records under the same mapping file); the totals must be equal, and
//! a query one side refuses as a syntax error the other must refuse too.
//!
//! Needs `javac` and Debian's `liblucene8-java` and `libgoogle-gson-java`
//! (`.ci/run` installs them).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;
use tributary_client::Search;

const JARS: &[&str] = &[
    "lucene-core",
    "lucene-queryparser",
    "lucene-analyzers-common",
    "gson",
];

fn jar(name: &str) -> PathBuf {
    let dir = Path::new("/usr/share/java");
    let exact = dir.join(format!("{name}.jar"));
    if exact.exists() {
        return exact;
    }
    std::fs::read_dir(dir)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".jar"))
                })
                .max()
        })
        .unwrap_or_else(|| {
            panic!(
                "{name}.jar not found in /usr/share/java: install the reference with \
                 `apt-get install -y liblucene8-java libgoogle-gson-java default-jdk-headless`"
            )
        })
}

/// Compiles the reference into `target/lucene-reference` and returns its classpath.
fn compile_reference() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target").join("lucene-reference");
    std::fs::create_dir_all(&out).expect("create target/lucene-reference");
    let jars: Vec<String> = JARS.iter().map(|j| jar(j).display().to_string()).collect();
    let classpath = jars.join(":");
    let status = Command::new("javac")
        .args(["-nowarn", "-encoding", "UTF-8", "-cp", &classpath, "-d"])
        .arg(&out)
        .arg(root.join("tests/lucene/Reference.java"))
        .status()
        .expect("javac runs (install a JDK: `apt-get install -y default-jdk-headless`)");
    assert!(status.success(), "the Lucene reference does not compile");
    format!("{classpath}:{}", out.display())
}

/// Lucene's answers: per query, `Ok(total)` or `Err(message)`.
fn lucene_totals(
    classpath: &str,
    dataset: &str,
    queries: &Path,
    now_ms: i64,
) -> Vec<Result<u64, String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("datasources/demo");
    let output = Command::new("java")
        .args([
            "-cp",
            classpath,
            "org.apache.lucene.queryparser.classic.Reference",
        ])
        .arg(fixtures.join(format!("{dataset}.mapping.json")))
        .arg(fixtures.join(format!("{dataset}.ndjson")))
        .arg(queries)
        .arg(now_ms.to_string())
        .output()
        .expect("java runs");
    assert!(
        output.status.success(),
        "the Lucene reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match line.strip_prefix("ERROR ") {
            Some(message) => Err(message.to_owned()),
            None => Ok(line.trim().parse().expect("a total")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_totals_equal_lucene_on_both_demo_datasets() {
    let queries = query_list();
    let classpath = compile_reference();
    let list = std::env::temp_dir().join(format!("tributary-queries-{}.txt", std::process::id()));
    std::fs::write(&list, queries.join("\n") + "\n").expect("write the query list");
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;

    let mut settings = settings(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        datasource("emails", "fixtures", json!({"embedded": "emails"})),
    ]);
    // Hundreds of queries back to back, from one client.
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let mut mismatches = Vec::new();
    let mut matched_something = 0;
    for dataset in ["tweets", "emails"] {
        let expected = lucene_totals(&classpath, dataset, &list, now_ms);
        assert_eq!(
            expected.len(),
            queries.len(),
            "one answer per query from Lucene"
        );
        for (query, lucene) in queries.iter().zip(expected) {
            let reply = client
                .typed()
                .request(Search::new([dataset], query.as_str()).size(1))
                .await
                .expect("a reply");
            let ours = match (reply.total(dataset), reply.errors.first()) {
                (Some(total), None) => Ok(total),
                (_, Some(error)) => Err(format!("{} ({:?})", error.message, error.code)),
                (None, None) => Err("no answer".into()),
            };
            match (&ours, &lucene) {
                (Ok(a), Ok(b)) if a == b => {
                    if *a > 0 {
                        matched_something += 1;
                    }
                }
                (Err(ours), Err(_)) if ours.contains("cannot parse query") => {}
                _ => mismatches.push(format!(
                    "{dataset}: `{query}`: tributary {ours:?}, Lucene {lucene:?}"
                )),
            }
        }
    }
    let _ = std::fs::remove_file(&list);
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from Lucene:\n{}",
        mismatches.len(),
        queries.len() * 2,
        mismatches.join("\n")
    );
    // The list must exercise real matches, not agree on zeros.
    assert!(
        matched_something > queries.len() / 2,
        "only {matched_something} queries matched anything"
    );
}
