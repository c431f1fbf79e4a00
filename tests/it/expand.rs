//! `EXPAND_REQUEST` over a real websocket: the values next to selected
//! ones, counted as the data itself says, across datasources by links, and
//! every bad input answered with an `ERROR`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use common::*;
use serde_json::{json, Map, Value};
use tributary::config::LinkSettings;

/// A demo dataset (`tweets`, `emails`), as the test reads it itself.
fn demo_records(name: &str) -> Vec<Map<String, Value>> {
    let path = format!(
        "{}/datasources/demo/{name}.ndjson",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("a demo dataset");
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| value.as_object().cloned())
        .collect()
}

fn demo_tweets() -> Vec<Map<String, Value>> {
    demo_records("tweets")
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Sends `request` (with a `request-id`: `REQUEST_COMPLETED` names it) and
/// returns the `EXPAND_RECEIVE`s and `ERROR`s (by datasource) and the
/// `REQUEST_COMPLETED` that ends them.
async fn expand(client: &mut Client, request: Value) -> (BTreeMap<String, Value>, Value) {
    client.send(request).await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    let mut found = BTreeMap::new();
    let mut last = Value::Null;
    for message in messages {
        match message["type"].as_str() {
            Some("EXPAND_RECEIVE") => {
                found.insert(
                    message["server"].as_str().unwrap_or_default().to_owned(),
                    message,
                );
            }
            Some("ERROR") => {
                let id = message["error"]["datasource"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                found.insert(id, message);
            }
            _ => last = message,
        }
    }
    (found, last)
}

/// Checks an `EXPAND_RECEIVE` for #opendata (fields `hashtags` and
/// `user.screen_name`, five each) against the demo tweets themselves.
fn check_opendata(answer: &Value) {
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for tweet in demo_tweets() {
        let tags = strings(tweet.get("hashtags"));
        if !tags.iter().any(|t| t == "opendata") {
            continue;
        }
        for tag in tags
            .iter()
            .filter(|t| *t != "opendata")
            .collect::<BTreeSet<_>>()
        {
            *expected
                .entry(("hashtags".into(), tag.clone()))
                .or_default() += 1;
        }
        let user = tweet["user"]["screen_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *expected
            .entry(("user.screen_name".into(), user))
            .or_default() += 1;
    }
    for field in ["hashtags", "user.screen_name"] {
        let mut top: Vec<(&String, &u64)> = expected
            .iter()
            .filter(|((f, _), _)| f == field)
            .map(|((_, v), c)| (v, c))
            .collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.truncate(5);
        let got: Vec<(String, u64)> = answer["vertices"]
            .as_array()
            .expect("vertices")
            .iter()
            .filter(|v| v["field"] == field)
            .map(|v| {
                (
                    v["value"].as_str().unwrap_or_default().to_owned(),
                    v["doc_count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = top.into_iter().map(|(v, c)| (v.clone(), *c)).collect();
        assert_eq!(got, want, "{field}: {answer}");
    }
    // Every connection starts at the selected value and ends at a vertex.
    let connections = answer["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 10, "{answer}");
    for connection in connections {
        assert_eq!(
            connection["from"],
            json!({"field": "hashtags", "value": "opendata"})
        );
        let to = &connection["to"];
        let count = expected[&(
            to["field"].as_str().unwrap().to_owned(),
            to["value"].as_str().unwrap().to_owned(),
        )];
        assert_eq!(connection["doc_count"], count);
    }
}

/// Checks a `significant` expansion from #rust (three hashtags) against
/// JLH computed from the demo tweets: `(fg - bg) * fg / bg`, fg a tag's
/// share among tweets with #rust, bg its share among all tweets.
fn check_significant_for_rust(answer: &Value) {
    let tweets = demo_tweets();
    let with = |tag: &str, of: &[&Map<String, Value>]| {
        of.iter()
            .filter(|t| strings(t.get("hashtags")).iter().any(|h| h == tag))
            .count() as f64
    };
    let all: Vec<&Map<String, Value>> = tweets.iter().collect();
    let rust: Vec<&Map<String, Value>> = all
        .iter()
        .copied()
        .filter(|t| with("rust", &[t]) > 0.0)
        .collect();
    let mut scores: Vec<(String, f64)> = all
        .iter()
        .flat_map(|t| strings(t.get("hashtags")))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|tag| tag != "rust")
        .map(|tag| {
            let fg = with(&tag, &rust) / rust.len() as f64;
            let bg = with(&tag, &all) / all.len() as f64;
            let score = if fg > bg { (fg - bg) * fg / bg } else { 0.0 };
            (tag, score)
        })
        .collect();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<(&str, f64)> = answer["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap_or_default(),
                v["weight"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{answer}");
    for ((tag, weight), (want_tag, want)) in got.iter().zip(&scores) {
        assert_eq!(tag, want_tag, "{answer}");
        assert!((weight - want).abs() < 1e-9, "{tag}: {weight} vs {want}");
    }
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .contains("JLH"),
        "{answer}"
    );
}

const RUST_SIGNIFICANT: &str = r#"{"type": "EXPAND_REQUEST", "request-id": "s", "datasources": ["tweets"],
    "values": [{"field": "hashtags", "value": "rust"}], "fields": ["hashtags"], "size": 3,
    "mode": "significant"}"#;

/// A server with the demo tweets only (no links).
fn embedded_tweets() -> tributary::http::ServerHandle {
    start(vec![datasource(
        "tweets",
        "fixtures",
        json!({"embedded": "tweets"}),
    )])
}

const OPENDATA: &str = r#"{"type": "EXPAND_REQUEST", "request-id": "x1", "datasources": ["tweets"],
    "values": [{"field": "hashtags", "value": "opendata"}],
    "fields": ["hashtags", "user.screen_name"], "size": 5}"#;

#[tokio::test]
async fn a_hashtag_expands_into_the_values_its_tweets_hold() {
    let server = embedded_tweets();
    let (mut client, initial) = Client::ready(&server).await;
    // Without links the greeting is the seed's.
    assert!(initial["state"].get("links").is_none(), "{initial}");
    let (found, completed) = expand(&mut client, serde_json::from_str(OPENDATA).unwrap()).await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    assert_eq!(completed["request-id"], "x1");
    let answer = &found["tweets"];
    assert_eq!(answer["request-id"], "x1");
    assert!(
        answer.get("sampled").is_none(),
        "every tweet counted: {answer}"
    );
    // Keyword fields: tantivy's terms aggregation over their value columns.
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .starts_with("terms aggregation: all"),
        "{answer}"
    );
    check_opendata(answer);

    // A number field has no value column: its values are read from the
    // records, with the same counts the data has.
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "x2", "datasources": ["tweets"],
               "values": [{"field": "hashtags", "value": "opendata"}],
               "fields": ["retweet_count"], "size": 3}),
    )
    .await;
    let answer = &found["tweets"];
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .starts_with("terms: all"),
        "{answer}"
    );
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for tweet in demo_tweets() {
        if strings(tweet.get("hashtags"))
            .iter()
            .any(|h| h == "opendata")
        {
            *counts
                .entry(tweet["retweet_count"].to_string())
                .or_default() += 1;
        }
    }
    let mut expected: Vec<(String, u64)> = counts.into_iter().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    expected.truncate(3);
    let got: Vec<(String, u64)> = answer["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap_or_default().to_owned(),
                v["doc_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, expected, "{answer}");
}

/// The demo tweets in an Elasticsearch-shaped server, with their mapping.
fn tweets_in_elasticsearch() -> common::es_mock::MockEs {
    let mapping: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/datasources/demo/tweets.mapping.json"
        ))
        .expect("mapping"),
    )
    .expect("mapping json");
    let docs = demo_tweets()
        .into_iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_owned(),
                Value::Object(t),
            )
        })
        .collect();
    common::es_mock::MockEs::start(vec![(
        "tweets".into(),
        common::es_mock::MockIndex {
            mapping: mapping["mappings"].clone(),
            docs,
        },
    )])
}

#[tokio::test]
async fn elasticsearch_expands_with_its_own_aggregations() {
    let es = tweets_in_elasticsearch();
    let server = start(vec![datasource(
        "tweets",
        "elasticsearch",
        json!({"url": es.url(), "index": "tweets"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let (found, completed) = expand(&mut client, serde_json::from_str(OPENDATA).unwrap()).await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let answer = &found["tweets"];
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .starts_with("terms under a sampler"),
        "{answer}"
    );
    check_opendata(answer);
    // One `_search` with the aggregations, not a search for records.
    let searches: Vec<String> = es
        .log()
        .into_iter()
        .filter(|l| l.contains("_search"))
        .collect();
    assert_eq!(searches.len(), 1, "{searches:?}");

    // A small sample: the counts are of the sample, and it says so.
    let server = start(vec![datasource(
        "tweets",
        "elasticsearch",
        json!({"url": es.url(), "index": "tweets", "sample_size": 100}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let (found, _) = expand(&mut client, serde_json::from_str(OPENDATA).unwrap()).await;
    assert_eq!(found["tweets"]["sampled"], 100, "{}", found["tweets"]);

    // Significant: the scores Elasticsearch sends are the weights.
    let server = start(vec![datasource(
        "tweets",
        "elasticsearch",
        json!({"url": es.url(), "index": "tweets"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let (found, _) = expand(&mut client, serde_json::from_str(RUST_SIGNIFICANT).unwrap()).await;
    check_significant_for_rust(&found["tweets"]);
}

#[tokio::test]
async fn excluded_values_are_not_new_and_every_matching_record_counts() {
    let server = embedded_tweets();
    let (mut client, _) = Client::ready(&server).await;
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "e", "datasources": ["tweets"],
               "values": [{"field": "hashtags", "value": "elections"}],
               "fields": ["hashtags"], "size": 3,
               "exclude": [{"field": "hashtags", "value": "climate"}]}),
    )
    .await;
    let answer = &found["tweets"];
    // The embedded index counts every tweet holding #elections, not a sample.
    let holding = demo_tweets()
        .iter()
        .filter(|t| strings(t.get("hashtags")).iter().any(|h| h == "elections"))
        .count();
    assert!(answer.get("sampled").is_none(), "{answer}");
    let method = answer["method"].as_str().unwrap_or_default();
    assert!(
        method.contains(&format!("all {holding} matching")),
        "{answer}"
    );
    let values: Vec<&str> = answer["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(values.len(), 3);
    assert!(
        !values.contains(&"climate") && !values.contains(&"elections"),
        "{values:?}"
    );
}

/// The `(field, value, doc_count)` of an `EXPAND_RECEIVE`'s vertices.
fn vertices_of(answer: &Value) -> BTreeSet<(String, String, u64)> {
    answer["vertices"]
        .as_array()
        .unwrap_or_else(|| panic!("no vertices: {answer}"))
        .iter()
        .map(|v| {
            (
                v["field"].as_str().unwrap_or_default().to_owned(),
                v["value"].as_str().unwrap_or_default().to_owned(),
                v["doc_count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Writes `lines` as an NDJSON dataset `name` in `dir`; returns its path.
fn write_dataset(dir: &std::path::Path, name: &str, lines: &[Value]) -> String {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("dataset");
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
    path.to_string_lossy().into_owned()
}

/// Three tweets: AnnaD's, bob's mentioning annad, carol's.
fn linked_tweets(dir: &std::path::Path) -> String {
    write_dataset(
        dir,
        "tweets.ndjson",
        &[
            json!({"id": "t1", "user": {"screen_name": "AnnaD"}, "mentions": ["bob"], "hashtags": ["osint"]}),
            json!({"id": "t2", "user": {"screen_name": "bob"}, "mentions": ["annad"], "hashtags": ["rust"]}),
            json!({"id": "t3", "user": {"screen_name": "carol"}, "mentions": [], "hashtags": ["osint"]}),
        ],
    )
}

/// The link of [`linked_datasets`]' people, lowercased, with `replace`.
fn person_link(replace: Vec<tributary::protocol::LinkRewrite>) -> LinkSettings {
    LinkSettings {
        fields: vec![
            "tweets:user.screen_name".into(),
            "tweets:mentions".into(),
            "emails:from".into(),
            "emails:to".into(),
        ],
        lowercase: true,
        replace,
    }
}

/// Two small datasets written by the test: people who tweet under a screen
/// name and e-mail under the same name, in other letters' case.
fn linked_datasets(dir: &std::path::Path) -> Vec<tributary::datasources::DatasourceSettings> {
    let write = |name: &str, lines: &[Value]| write_dataset(dir, name, lines);
    let tweets = linked_tweets(dir);
    let emails = write(
        "emails.ndjson",
        &[
            json!({"id": "m1", "from": "annad", "to": ["dave", "erin"], "subject": "plans"}),
            json!({"id": "m2", "from": "dave", "to": ["annad"], "subject": "re: plans"}),
            json!({"id": "m3", "from": "frank", "to": ["erin"], "subject": "other"}),
        ],
    );
    vec![
        datasource("tweets", "fixtures", json!({"path": tweets})),
        datasource("emails", "fixtures", json!({"path": emails})),
    ]
}

#[tokio::test]
async fn a_screen_name_expands_into_the_same_persons_emails_through_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings(linked_datasets(dir.path()));
    settings
        .links
        .insert("person".into(), person_link(Vec::new()));
    let server = start_with(settings);
    let (mut client, initial) = Client::ready(&server).await;
    // The greeting lists the link, for clients to show its values as one node.
    assert_eq!(
        initial["state"]["links"],
        json!([{"name": "person", "lowercase": true, "fields": [
            {"datasource": "tweets", "field": "user.screen_name"},
            {"datasource": "tweets", "field": "mentions"},
            {"datasource": "emails", "field": "from"},
            {"datasource": "emails", "field": "to"}]}])
    );
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 7, "datasources": ["tweets", "emails"],
               "values": [{"field": "user.screen_name", "value": "AnnaD"}],
               "fields": ["from", "to", "mentions", "user.screen_name", "hashtags"]}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let vertices = |ds: &str| vertices_of(&found[ds]);
    // Tweets by AnnaD (t1) and mentioning annad (t2): their other values.
    assert_eq!(
        vertices("tweets"),
        BTreeSet::from([
            ("mentions".into(), "bob".into(), 1),
            ("user.screen_name".into(), "bob".into(), 1),
            ("hashtags".into(), "osint".into(), 1),
            ("hashtags".into(), "rust".into(), 1),
        ])
    );
    // E-mails from or to annad (m1, m2): the people on them.
    assert_eq!(
        vertices("emails"),
        BTreeSet::from([
            ("to".into(), "dave".into(), 1),
            ("to".into(), "erin".into(), 1),
            ("from".into(), "dave".into(), 1),
        ])
    );
    // E-mails hold no screen names: the link carried the value there, and
    // their connections say so; the tweets hold the field itself.
    for connection in found["emails"]["connections"].as_array().unwrap() {
        assert_eq!(
            connection["from"],
            json!({"field": "user.screen_name", "value": "AnnaD"})
        );
        assert_eq!(connection["via"], "person", "{connection}");
    }
    for connection in found["tweets"]["connections"].as_array().unwrap() {
        assert!(connection.get("via").is_none(), "{connection}");
    }
}

/// The demo e-mails, as the test reads them itself.
fn demo_emails() -> Vec<Map<String, Value>> {
    demo_records("emails")
}

#[tokio::test]
async fn on_the_demo_data_a_screen_name_leads_to_the_persons_emails() {
    // The demo datasets and their link (a person's address, as the author
    // of tweets and on e-mails), as `cargo run` serves them.
    let server = start(tributary::config::demo_datasources());
    let (mut client, initial) = Client::ready(&server).await;
    assert_eq!(initial["state"]["links"][0]["name"], "person");

    // 1. The screen name, expanded in the tweets: the author's address.
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 1, "datasources": ["tweets"],
               "values": [{"field": "user.screen_name", "value": "annad0"}],
               "fields": ["user.email"]}),
    )
    .await;
    let address = found["tweets"]["vertices"][0]["value"]
        .as_str()
        .expect("an address")
        .to_owned();
    let tweets = demo_tweets();
    let by_annad0 = tweets
        .iter()
        .filter(|t| t["user"]["screen_name"] == "annad0")
        .count() as u64;
    assert_eq!(found["tweets"]["vertices"][0]["doc_count"], by_annad0);
    assert_eq!(
        found["tweets"]["vertices"].as_array().map(Vec::len),
        Some(1)
    );

    // 2. The address, as the link's value, in both datasets: the people on
    // that person's e-mails, as many times as the e-mails say.
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 2, "datasources": ["tweets", "emails"],
               "values": [{"field": "person", "value": address}],
               "fields": ["from", "to", "cc", "user.screen_name"], "size": 1000}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for email in demo_emails() {
        let holds = ["from", "to", "cc"].iter().any(|f| {
            strings(email.get(*f))
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&address))
        });
        if !holds {
            continue;
        }
        for field in ["from", "to", "cc"] {
            let values: BTreeSet<String> = strings(email.get(field))
                .into_iter()
                .filter(|v| !v.eq_ignore_ascii_case(&address))
                .collect();
            for value in values {
                *expected.entry((field.to_owned(), value)).or_default() += 1;
            }
        }
    }
    assert!(!expected.is_empty(), "{address} is on e-mails");
    let got: BTreeMap<(String, String), u64> = found["emails"]["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|v| {
            (
                (
                    v["field"].as_str().unwrap().to_owned(),
                    v["value"].as_str().unwrap().to_owned(),
                ),
                v["doc_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // And in the tweets, the screen name the address writes under.
    let names: Vec<&str> = found["tweets"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["annad0"]);
}

#[tokio::test]
async fn significant_values_are_ranked_by_jlh_against_the_whole_datasource() {
    let server = embedded_tweets();
    let (mut client, _) = Client::ready(&server).await;
    let (found, _) = expand(&mut client, serde_json::from_str(RUST_SIGNIFICANT).unwrap()).await;
    check_significant_for_rust(&found["tweets"]);
}

#[tokio::test]
async fn bad_expansions_are_answered_with_an_error() {
    let server = embedded_tweets();
    let (mut client, _) = Client::ready(&server).await;
    let cases = [
        (
            json!({"values": [{"field": "no.such.field", "value": "x"}]}),
            "unknown field `no.such.field`",
        ),
        (json!({"values": []}), "`values` is empty"),
        (
            json!({"values": [{"field": "hashtags", "value": ""}]}),
            "empty field or value",
        ),
        (
            json!({"values": [{"field": "hashtags", "value": "x"}], "size": 5000}),
            "`size`",
        ),
        (
            json!({"values": [{"field": "hashtags", "value": "x"}], "size": 0}),
            "`size`",
        ),
        (json!({"values": [{"field": "hashtags"}]}), "value"),
        (json!({"values": "hashtags:x"}), "`values` must be a list"),
        (
            json!({"values": [{"field": "hashtags", "value": "x"}], "mode": "loud"}),
            "`mode`",
        ),
        (
            json!({"values": [{"field": "hashtags", "value": "x"}], "datasources": []}),
            "`datasources` is empty",
        ),
    ];
    for (i, (fields, said)) in cases.into_iter().enumerate() {
        let mut request =
            json!({"type": "EXPAND_REQUEST", "request-id": i, "datasources": ["tweets"]});
        for (key, value) in fields.as_object().unwrap() {
            request[key] = value.clone();
        }
        client.send(request.clone()).await;
        // The ERROR (and the REQUEST_COMPLETED of a request that got as far
        // as starting), all before the answer to a PING sent after it.
        client.send(json!({"type": "PING", "t": i})).await;
        let answers = client.recv_until(|m| m["type"] == "PONG").await;
        let answer = answers
            .iter()
            .find(|m| m["type"] == "ERROR")
            .cloned()
            .unwrap_or_default();
        assert_eq!(answer["type"], "ERROR", "{request} → {answers:?}");
        assert_eq!(answer["request-id"], i, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(said), "{request}: {message}");
    }
    // The connection is still good for a valid one.
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "ok", "datasources": ["tweets", "nope"],
               "values": [{"field": "hashtags", "value": "rust"}], "size": 2}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    assert_eq!(found["nope"]["error"]["code"], "unknown_datasource");
    assert!(found["tweets"]["vertices"]
        .as_array()
        .is_some_and(|v| v.len() == 2));
}

#[test]
fn a_link_naming_an_unknown_datasource_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tributary.toml");
    std::fs::write(
        &path,
        r#"
[datasources.tweets]
type = "fixtures"
embedded = "tweets"

[links.person]
fields = ["tweets:user.screen_name", "mail:from"]
"#,
    )
    .expect("config");
    let error = tributary::config::load(Some(&path), None).expect_err("refused");
    assert!(error.contains("names datasource `mail`"), "{error}");
    std::fs::write(
        &path,
        "[links.person]\nfields = [\"tweets:user.screen_name\", \"emails\"]\n",
    )
    .expect("config");
    let error = tributary::config::load(Some(&path), None).expect_err("refused");
    assert!(error.contains("datasource:field"), "{error}");
    // A rewrite that is not a regular expression, or an unknown key in it.
    for (rewrite, says) in [
        (r#"{ regex = "(", with = "" }"#, "not a regular expression"),
        (r#"{ regex = "@.*$", into = "" }"#, "into"),
    ] {
        std::fs::write(
            &path,
            format!(
                "[links.person]\nfields = [\"tweets:user.screen_name\", \"emails:from\"]\nreplace = [{rewrite}]\n"
            ),
        )
        .expect("config");
        let error = tributary::config::load(Some(&path), None).expect_err("refused");
        assert!(error.contains(says), "{error}");
    }
}

#[tokio::test]
async fn postgres_expands_with_group_by() {
    let schema = common::pg::Schema::create("expand").await;
    let server = start(vec![datasource(
        "tweets",
        "postgres",
        schema.options("tweets"),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let (found, completed) = expand(&mut client, serde_json::from_str(OPENDATA).unwrap()).await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let answer = &found["tweets"];
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .starts_with("GROUP BY"),
        "{answer}"
    );
    assert!(answer.get("sampled").is_none(), "{answer}");
    check_opendata(answer);
    let (found, _) = expand(&mut client, serde_json::from_str(RUST_SIGNIFICANT).unwrap()).await;
    check_significant_for_rust(&found["tweets"]);
    schema.drop().await;
}

#[tokio::test]
async fn a_request_may_bring_links_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same ids as the demo's, without its link.
    let mut settings = settings(linked_datasets(dir.path()));
    settings.links.clear();
    let server = start_with(settings);
    let (mut client, initial) = Client::ready(&server).await;
    assert!(initial["state"].get("links").is_none(), "{initial}");
    let link = json!([{"name": "person", "lowercase": true, "fields": [
        {"datasource": "tweets", "field": "user.screen_name"}, {"datasource": "emails", "field": "from"},
        {"datasource": "emails", "field": "to"}]}]);
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "own", "datasources": ["tweets", "emails"],
               "values": [{"field": "user.screen_name", "value": "AnnaD"}], "fields": ["to", "from"],
               "links": link}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let vertices: BTreeSet<(String, String)> = found["emails"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_owned(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        vertices,
        BTreeSet::from([
            ("to".into(), "dave".into()),
            ("to".into(), "erin".into()),
            ("from".into(), "dave".into())
        ])
    );
    // Without the link, the e-mails hold no screen name: nothing there.
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "none", "datasources": ["emails", "tweets"],
               "values": [{"field": "user.screen_name", "value": "AnnaD"}], "fields": ["to", "from"]}),
    )
    .await;
    assert_eq!(
        found["emails"]["vertices"],
        json!([]),
        "{}",
        found["emails"]
    );
    // A link of one field, or without a name, is refused.
    for bad in [
        json!([{"name": "x", "fields": [{"datasource": "emails", "field": "to"}]}]),
        json!([{"name": "", "fields": [{"datasource": "emails", "field": "to"}, {"datasource": "tweets", "field": "x"}]}]),
    ] {
        client
            .send(
                json!({"type": "EXPAND_REQUEST", "request-id": "bad", "datasources": ["emails"],
                         "values": [{"field": "to", "value": "dave"}], "links": bad}),
            )
            .await;
        let answers = client
            .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
            .await;
        let error = answers
            .iter()
            .find(|m| m["type"] == "ERROR")
            .cloned()
            .unwrap_or_default();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("`links`"),
            "{answers:?}"
        );
    }
}

/// A link that rewrites values: a person's screen name and the local part
/// of their e-mail addresses (`replace` strips the domain, after
/// lowercasing), with addresses that only look alike.
#[tokio::test]
async fn a_rewriting_link_joins_a_screen_name_to_the_persons_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, lines: &[Value]| write_dataset(dir.path(), name, lines);
    let tweets = linked_tweets(dir.path());
    let emails = write(
        "emails.ndjson",
        &[
            json!({"id": "m1", "from": "annad@acme.example", "to": ["dave@x.example", "erin@x.example"]}),
            json!({"id": "m2", "from": "dave@x.example", "to": ["AnnaD@other.example"]}),
            json!({"id": "m3", "from": "frank@x.example", "to": ["erin@x.example"]}),
            // Alike, not the same: another name, and a dot the rewrite keeps.
            json!({"id": "m4", "from": "annadx@acme.example", "to": ["gus@x.example"]}),
            json!({"id": "m5", "from": "anna.d@acme.example", "to": ["hal@x.example"]}),
        ],
    );
    let mut settings = settings(vec![
        datasource("tweets", "fixtures", json!({"path": tweets})),
        datasource("emails", "fixtures", json!({"path": emails})),
    ]);
    let strip_domain = tributary::protocol::LinkRewrite {
        regex: "@.*$".into(),
        with: String::new(),
    };
    settings
        .links
        .insert("person".into(), person_link(vec![strip_domain]));
    let server = start_with(settings);
    let (mut client, initial) = Client::ready(&server).await;
    // Clients get the rewrite, to show the values as one node too.
    assert_eq!(
        initial["state"]["links"][0]["replace"],
        json!([{"regex": "@.*$", "with": ""}])
    );
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 1, "datasources": ["tweets", "emails"],
               "values": [{"field": "user.screen_name", "value": "AnnaD"}],
               "fields": ["from", "to", "mentions", "user.screen_name", "hashtags"]}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");

    // E-mails from or to annad at any domain (m1, m2), not m4 or m5; the
    // addresses that rewrite to annad are the selection, not new values.
    assert_eq!(
        vertices_of(&found["emails"]),
        BTreeSet::from([
            ("to".into(), "dave@x.example".into(), 1),
            ("to".into(), "erin@x.example".into(), 1),
            ("from".into(), "dave@x.example".into(), 1),
        ])
    );
    for connection in found["emails"]["connections"].as_array().unwrap() {
        assert_eq!(connection["via"], "person", "{connection}");
        assert_eq!(
            connection["from"],
            json!({"field": "user.screen_name", "value": "AnnaD"})
        );
    }
    assert_eq!(
        vertices_of(&found["tweets"]),
        BTreeSet::from([
            ("mentions".into(), "bob".into(), 1),
            ("user.screen_name".into(), "bob".into(), 1),
            ("hashtags".into(), "osint".into(), 1),
            ("hashtags".into(), "rust".into(), 1),
        ])
    );

    // From an address: the same person, in both datasets.
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 2, "datasources": ["tweets", "emails"],
               "values": [{"field": "to", "value": "AnnaD@other.example"}],
               "fields": ["hashtags", "from"]}),
    )
    .await;
    assert_eq!(
        vertices_of(&found["tweets"]),
        BTreeSet::from([
            ("hashtags".into(), "osint".into(), 1),
            ("hashtags".into(), "rust".into(), 1),
        ])
    );
    assert_eq!(
        vertices_of(&found["emails"]),
        BTreeSet::from([("from".into(), "dave@x.example".into(), 1)])
    );

    // A value nobody holds: no records, said in words.
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 3, "datasources": ["emails"],
               "values": [{"field": "user.screen_name", "value": "zed"}], "fields": ["to"]}),
    )
    .await;
    assert_eq!(found["emails"]["vertices"], json!([]), "{found:?}");
    assert!(
        found["emails"]["method"]
            .as_str()
            .unwrap_or_default()
            .contains("rewrites to a selected one"),
        "{found:?}"
    );

    // A request's own link may rewrite too; a bad pattern is an ERROR.
    let bad = json!([{"name": "p", "fields": [{"datasource": "tweets", "field": "mentions"},
        {"datasource": "emails", "field": "to"}], "replace": [{"regex": "(", "with": ""}]}]);
    client
        .send(
            json!({"type": "EXPAND_REQUEST", "request-id": 4, "datasources": ["emails"],
                     "values": [{"field": "mentions", "value": "x"}], "links": bad}),
        )
        .await;
    let error = client.recv_until(|m| m["type"] == "ERROR").await;
    let message = error.last().map(|m| m.to_string()).unwrap_or_default();
    assert!(message.contains("not a regular expression"), "{message}");
}

/// The demo tweets' organisation, from their authors' addresses: a link
/// whose rewrite keeps an address's domain (`^.*@` removed), expanded
/// through each adapter's own listing and aggregation, counted against the
/// data.
async fn check_organisation_through_a_rewriting_link(
    tweets: tributary::datasources::DatasourceSettings,
) {
    let mut all = tributary::config::demo_datasources();
    all.retain(|d| d.id != "tweets");
    all.push(tweets);
    let mut settings = settings(all);
    settings.links.insert(
        "organisation".into(),
        LinkSettings {
            fields: vec!["emails:organisation".into(), "tweets:user.email".into()],
            lowercase: true,
            replace: vec![tributary::protocol::LinkRewrite {
                regex: "^.*@".into(),
                with: String::new(),
            }],
        },
    );
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": 1, "datasources": ["tweets"],
               "values": [{"field": "organisation", "value": "acme.example"}],
               "fields": ["user.screen_name"], "size": 1000}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for tweet in demo_tweets() {
        let email = tweet["user"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if email.rsplit_once('@').map(|(_, domain)| domain) == Some("acme.example") {
            let name = tweet["user"]["screen_name"].as_str().unwrap_or_default();
            *expected.entry(name.to_owned()).or_default() += 1;
        }
    }
    assert!(expected.len() > 3, "{expected:?}");
    let answer = &found["tweets"];
    let got = vertex_counts(answer);
    assert_eq!(got, expected, "{answer}");
    for connection in answer["connections"].as_array().unwrap() {
        assert_eq!(connection["via"], "organisation", "{connection}");
        assert_eq!(
            connection["from"],
            json!({"field": "organisation", "value": "acme.example"})
        );
    }
}

#[tokio::test]
async fn a_rewriting_link_is_followed_in_the_embedded_index() {
    let tweets = tributary::config::demo_datasources()
        .into_iter()
        .find(|d| d.id == "tweets")
        .expect("demo tweets");
    check_organisation_through_a_rewriting_link(tweets).await;
}

#[tokio::test]
async fn a_rewriting_link_is_followed_in_elasticsearch() {
    let es = tweets_in_elasticsearch();
    check_organisation_through_a_rewriting_link(datasource(
        "tweets",
        "elasticsearch",
        json!({"url": es.url(), "index": "tweets"}),
    ))
    .await;
}

#[tokio::test]
async fn a_rewriting_link_is_followed_in_postgres() {
    let schema = common::pg::Schema::create("rewrite").await;
    check_organisation_through_a_rewriting_link(datasource(
        "tweets",
        "postgres",
        schema.options("tweets"),
    ))
    .await;
    schema.drop().await;
}

/// Several selected values: every connection between a selected value and
/// a kept one counts the records holding both, as the data says (also for
/// kept values that are not among one selected value's own most frequent).
#[tokio::test]
async fn each_connection_counts_the_records_holding_both_values() {
    let server = embedded_tweets();
    let (mut client, _) = Client::ready(&server).await;
    let tags = ["opendata", "osint", "rust", "elections", "bitcoin"];
    let values: Vec<Value> = tags
        .iter()
        .map(|t| json!({"field": "hashtags", "value": t}))
        .collect();
    let (found, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "many", "datasources": ["tweets"],
               "values": values, "fields": ["user.screen_name"], "size": 8}),
    )
    .await;
    let answer = &found["tweets"];
    let kept: BTreeSet<String> = vertices_of(answer)
        .into_iter()
        .map(|(_, value, _)| value)
        .collect();
    assert_eq!(kept.len(), 8, "{answer}");
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for tweet in demo_tweets() {
        let name = tweet["user"]["screen_name"].as_str().unwrap_or_default();
        if !kept.contains(name) {
            continue;
        }
        // A tweet counts once, however often it repeats a tag.
        let held: BTreeSet<String> = strings(tweet.get("hashtags")).into_iter().collect();
        for tag in held {
            if tags.contains(&tag.as_str()) {
                *expected.entry((tag, name.to_owned())).or_default() += 1;
            }
        }
    }
    let got: BTreeMap<(String, String), u64> = answer["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| {
            (
                (
                    c["from"]["value"].as_str().unwrap_or_default().to_owned(),
                    c["to"]["value"].as_str().unwrap_or_default().to_owned(),
                ),
                c["doc_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

/// Each field says how many new values it holds beyond the `size` kept
/// ("5 of 23"): every distinct value the records holding the selection
/// have, less the selection itself, as the data says.
#[tokio::test]
async fn an_expansion_says_how_many_values_each_field_holds_in_all() {
    let server = embedded_tweets();
    let (mut client, _) = Client::ready(&server).await;
    let (found, _) = expand(&mut client, serde_json::from_str(OPENDATA).unwrap()).await;
    let answer = &found["tweets"];
    let mut tags: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for tweet in demo_tweets() {
        let held = strings(tweet.get("hashtags"));
        if held.iter().any(|t| t == "opendata") {
            tags.extend(held.into_iter().filter(|t| t != "opendata"));
            names.extend(strings(tweet["user"].get("screen_name")));
        }
    }
    assert!(tags.len() > 5 && names.len() > 5, "more than the five kept");
    assert_eq!(
        answer["available"]["hashtags"],
        tags.len() as u64,
        "{answer}"
    );
    assert_eq!(
        answer["available"]["user.screen_name"],
        names.len() as u64,
        "{answer}"
    );
    // Asking again without the values drawn brings the next ones.
    let shown: Vec<Value> = answer["vertices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| json!({"field": v["field"], "value": v["value"]}))
        .collect();
    let (more, _) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "x3", "datasources": ["tweets"],
               "values": [{"field": "hashtags", "value": "opendata"}],
               "fields": ["hashtags", "user.screen_name"], "size": 5, "exclude": shown}),
    )
    .await;
    let again = &more["tweets"];
    assert_eq!(
        again["available"]["hashtags"],
        tags.len() as u64 - 5,
        "{again}"
    );
    let before = vertices_of(answer);
    assert!(vertices_of(again).iter().all(|v| !before.contains(v)));
}

/// `between`: the links among the selected values themselves, each the
/// number of records holding both (what an analyst asks of values already
/// drawn), in every datasource and through the demo's `person` link.
#[tokio::test]
async fn the_links_between_selected_values_are_counted() {
    let server = start(tributary::config::demo_datasources());
    let (mut client, _) = Client::ready(&server).await;
    // Three tags and two people: which of them share tweets.
    let tweets = demo_tweets();
    let tags = ["opendata", "osint", "bitcoin"];
    let mut people: Vec<String> = Vec::new();
    for tweet in &tweets {
        let Some(email) = tweet["user"]["email"].as_str() else {
            continue;
        };
        let osint = strings(tweet.get("hashtags")).iter().any(|h| h == "osint");
        if osint && people.len() < 2 && !people.iter().any(|p| p == email) {
            people.push(email.to_owned());
        }
    }
    assert_eq!(people.len(), 2);
    let mut values: Vec<Value> = tags
        .iter()
        .map(|t| json!({"field": "hashtags", "value": t}))
        .collect();
    for person in &people {
        values.push(json!({"field": "person", "value": person.to_lowercase()}));
    }
    let (found, completed) = expand(
        &mut client,
        json!({"type": "EXPAND_REQUEST", "request-id": "b1", "datasources": ["tweets", "emails"],
               "values": values, "between": true}),
    )
    .await;
    assert_eq!(completed["type"], "REQUEST_COMPLETED", "{completed}");
    let answer = &found["tweets"];
    assert_eq!(answer["vertices"], json!([]), "no new values: {answer}");
    // Expected, from the records: per pair of selected values, the tweets holding both.
    let holds = |tweet: &Map<String, Value>, (field, value): (&str, &str)| match field {
        "hashtags" => strings(tweet.get("hashtags")).iter().any(|h| h == value),
        _ => tweet["user"]["email"]
            .as_str()
            .is_some_and(|e| e.to_lowercase() == value),
    };
    let selected: Vec<(String, String)> = tags
        .iter()
        .map(|t| ("hashtags".to_owned(), t.to_string()))
        .chain(
            people
                .iter()
                .map(|p| ("person".to_owned(), p.to_lowercase())),
        )
        .collect();
    let mut expected: BTreeSet<(String, String, u64)> = BTreeSet::new();
    for (i, a) in selected.iter().enumerate() {
        for b in &selected[i + 1..] {
            let both = tweets
                .iter()
                .filter(|t| holds(t, (&a.0, &a.1)) && holds(t, (&b.0, &b.1)))
                .count() as u64;
            if both > 0 {
                let (x, y) = if a < b { (a, b) } else { (b, a) };
                expected.insert((format!("{}:{}", x.0, x.1), format!("{}:{}", y.0, y.1), both));
            }
        }
    }
    assert!(!expected.is_empty(), "the chosen values share tweets");
    let got: BTreeSet<(String, String, u64)> = answer["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = |v: &Value| {
                format!(
                    "{}:{}",
                    v["field"].as_str().unwrap_or_default(),
                    v["value"].as_str().unwrap_or_default()
                )
            };
            let (a, b) = (name(&c["from"]), name(&c["to"]));
            let (x, y) = if a < b { (a, b) } else { (b, a) };
            (x, y, c["doc_count"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(got, expected, "{answer}");
    // The e-mails hold no hashtags: only the people, if they wrote to each other.
    assert!(found["emails"]["connections"].as_array().is_some_and(|c| c
        .iter()
        .all(|c| c["from"]["field"] == "person" && c["to"]["field"] == "person")));
}
