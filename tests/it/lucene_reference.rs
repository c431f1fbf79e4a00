//! The differential test of the query language: every query of
//! `tests/lucene/queries.txt` runs on both demo datasets, and every query of
//! `tests/lucene/edge-queries.txt` on `tests/lucene/edge.ndjson` (Unicode
//! text, numbers at their limits), each under its mapping file and under
//! Elasticsearch's dynamic mapping, through a real tributary server (the
//! `fixtures` datasources, over a websocket) and through Apache Lucene 8
//! configured as Elasticsearch 8 (`tests/lucene/Reference.java`, indexing
//! the same records under the same mapping); the totals must be equal, and
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

/// Lucene's answers: per query, `Ok(total)` or `Err(message)`. `mapping`
/// is a mapping file, or `None` for the dynamic mapping.
fn lucene_totals(
    classpath: &str,
    records: &Path,
    mapping: Option<&Path>,
    queries: &Path,
    now_ms: i64,
) -> Vec<Result<u64, String>> {
    let mapping = mapping.map_or_else(|| "dynamic".into(), |m| m.display().to_string());
    let output = Command::new("java")
        .args([
            "-cp",
            classpath,
            "org.apache.lucene.queryparser.classic.Reference",
        ])
        .arg(mapping)
        .arg(records)
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

/// One dataset under one mapping, and the queries run on it.
struct Case {
    datasource: &'static str,
    records: PathBuf,
    /// `None`: Elasticsearch's dynamic mapping.
    mapping: Option<PathBuf>,
    queries: &'static str,
}

fn queries_of(file: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(file)).expect("a query list");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_equal_lucene_on_every_dataset_under_its_mapping_and_the_dynamic_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let classpath = compile_reference();
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    // Records without a mapping file beside them, for the dynamic mapping.
    let dynamic_dir = tempfile::tempdir().expect("a temporary directory");
    let mut cases = Vec::new();
    for (name, dir, queries) in [
        ("tweets", "datasources/demo", "tests/lucene/queries.txt"),
        ("emails", "datasources/demo", "tests/lucene/queries.txt"),
        ("edge", "tests/lucene", "tests/lucene/edge-queries.txt"),
    ] {
        let records = root.join(dir).join(format!("{name}.ndjson"));
        let copy = dynamic_dir.path().join(format!("{name}.ndjson"));
        std::fs::copy(&records, &copy).expect("copy the records");
        cases.push(Case {
            datasource: name,
            mapping: Some(root.join(dir).join(format!("{name}.mapping.json"))),
            records,
            queries,
        });
        cases.push(Case {
            datasource: Box::leak(format!("{name}_dynamic").into_boxed_str()),
            records: copy,
            mapping: None,
            queries,
        });
    }
    let mut settings = settings(
        cases
            .iter()
            .map(|case| {
                let mut options = json!({"path": case.records});
                if let Some(mapping) = &case.mapping {
                    options["mapping"] = json!(mapping);
                }
                datasource(case.datasource, "fixtures", options)
            })
            .collect(),
    );
    // Hundreds of queries back to back, from one client.
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let mut mismatches = Vec::new();
    let mut asked = 0;
    let mut matched_something = 0;
    for case in &cases {
        let queries = queries_of(case.queries);
        let list = dynamic_dir.path().join("queries.txt");
        std::fs::write(&list, queries.join("\n") + "\n").expect("write the query list");
        let expected = lucene_totals(
            &classpath,
            &case.records,
            case.mapping.as_deref(),
            &list,
            now_ms,
        );
        assert_eq!(
            expected.len(),
            queries.len(),
            "one answer per query from Lucene"
        );
        for (query, lucene) in queries.iter().zip(expected) {
            let reply = client
                .typed()
                .request(Search::new([case.datasource], query.as_str()).size(1))
                .await
                .expect("a reply");
            let ours = match (reply.total(case.datasource), reply.errors.first()) {
                (Some(total), None) => Ok(total),
                (_, Some(error)) => Err(format!("{} ({:?})", error.message, error.code)),
                (None, None) => Err("no answer".into()),
            };
            asked += 1;
            match (&ours, &lucene) {
                (Ok(a), Ok(b)) if a == b => {
                    if *a > 0 {
                        matched_something += 1;
                    }
                }
                (Err(ours), Err(_)) if ours.contains("cannot parse query") => {}
                _ => mismatches.push(format!(
                    "{}: `{query}`: tributary {ours:?}, Lucene {lucene:?}",
                    case.datasource
                )),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {asked} answers differ from Lucene:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The lists must exercise real matches, not agree on zeros.
    assert!(
        matched_something > asked / 2,
        "only {matched_something} of {asked} queries matched anything"
    );
}
