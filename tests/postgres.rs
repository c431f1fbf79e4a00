//! The `postgres` datasource against the real local PostgreSQL server: each
//! test loads the demo tweets and emails into tables of its own schema and
//! talks to a real tributary server over a websocket.

mod common;

use std::path::Path;

use common::pg::Schema;
use common::*;
use serde_json::json;
use tributary_client::Search;

/// Queries whose totals differ on PostgreSQL by design, each with why
/// (docs/protocol.md, "PostgreSQL datasources", says the same).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "bitcion~1",
        "levenshtein counts a transposition as two edits, Lucene as one",
    ),
    (
        "transprot~1",
        "levenshtein counts a transposition as two edits, Lucene as one",
    ),
];

fn queries() -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lucene/queries.txt"),
    )
    .expect("tests/lucene/queries.txt");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_equal_the_embedded_datasource() {
    let schema = Schema::create("parity").await;
    let mut settings = settings(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        datasource("emails", "fixtures", json!({"embedded": "emails"})),
        datasource("pg_tweets", "postgres", schema.options("tweets")),
        datasource("pg_emails", "postgres", schema.options("emails")),
    ]);
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut matched_something = 0;
    for query in queries() {
        for (embedded, pg) in [("tweets", "pg_tweets"), ("emails", "pg_emails")] {
            let reply = client
                .typed()
                .request(Search::new([embedded, pg], query.as_str()).size(1))
                .await
                .expect("a reply");
            let answer = |id: &str| match reply
                .errors
                .iter()
                .find(|e| e.datasource.as_deref() == Some(id))
            {
                Some(error) => Err(format!("{} ({:?})", error.message, error.code)),
                None => reply.total(id).ok_or_else(|| "no answer".to_owned()),
            };
            let (ours, theirs) = (answer(pg), answer(embedded));
            let known = KNOWN_DIFFERENCES.iter().any(|(q, _)| *q == query);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) if a == b => {
                    compared += 1;
                    if *a > 0 {
                        matched_something += 1;
                    }
                }
                (Err(a), Err(b))
                    if a.contains("cannot parse query") && b.contains("cannot parse query") => {}
                _ if known => {}
                _ => mismatches.push(format!(
                    "{embedded}: `{query}`: postgres {ours:?}, embedded {theirs:?}"
                )),
            }
        }
    }
    schema.drop().await;
    assert!(
        mismatches.is_empty(),
        "{} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        matched_something > compared / 2,
        "only {matched_something} of {compared} matched anything"
    );
}
