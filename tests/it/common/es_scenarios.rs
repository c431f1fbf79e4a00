//! The Elasticsearch scenarios, run against the loopback test server
//! (`tests/elasticsearch.rs`) and, when `ELASTICSEARCH_URL` is set, against a
//! real cluster (`tests/elasticsearch_real.rs`). Both load the same data.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::es_mock::MockIndex;
use super::*;

pub const BIG: usize = 12_345;

/// An Elasticsearch holding the test indices, each name starting with `prefix`.
pub struct Target {
    pub url: String,
    pub prefix: String,
}

impl Target {
    pub fn index(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn source(
        &self,
        id: &str,
        index: &str,
        extra: Value,
    ) -> tributary::datasources::DatasourceSettings {
        let mut options = json!({"url": self.url, "index": self.index(index)});
        if let (Some(options), Some(extra)) = (options.as_object_mut(), extra.as_object()) {
            options.extend(extra.clone());
        }
        datasource(id, "elasticsearch", options)
    }
}

/// `(name, mapping, docs)` of the three test indices.
pub fn indices() -> Vec<(&'static str, MockIndex)> {
    let cities = ["Amsterdam", "Berlin", "Paris"];
    let people_a = MockIndex {
        mapping: json!({"properties": {
            "name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
            "group": {"type": "keyword"},
            "age": {"type": "long"},
            "address": {"properties": {"city": {"type": "keyword"}, "street": {"type": "text"}}},
            "contacts": {"type": "nested", "properties": {"email": {"type": "keyword"}}},
            "joined": {"type": "date"}
        }}),
        docs: (0..40)
            .map(|i| {
                (
                    format!("a{i}"),
                    json!({
                        "name": format!("Person {i}"),
                        "group": format!("g{}", i % 4),
                        "age": i,
                        "address": {"city": cities[i % 3], "street": format!("Main street {i}")},
                        "contacts": [{"email": format!("p{i}@example.org")}, {"email": "desk@example.org"}],
                        "joined": format!("2024-01-{:02}", 1 + i % 28),
                    }),
                )
            })
            .collect(),
    };
    let people_b = MockIndex {
        mapping: json!({"properties": {
            "name": {"type": "text"},
            "group": {"type": "keyword"},
            "age": {"type": "integer"},
            "score": {"type": "double"}
        }}),
        docs: (0..25)
            .map(|i| {
                (
                    format!("b{i}"),
                    json!({"name": format!("Member {i}"), "group": format!("g{}", i % 4), "age": 100 + i, "score": i as f64 / 2.0}),
                )
            })
            .collect(),
    };
    let big = MockIndex {
        mapping: json!({"properties": {"n": {"type": "long"}, "group": {"type": "keyword"}, "label": {"type": "text"}}}),
        docs: (0..BIG)
            .map(|i| {
                (
                    format!("n{i}"),
                    json!({"n": i, "group": format!("g{}", i % 7), "label": format!("item {i}")}),
                )
            })
            .collect(),
    };
    let events = MockIndex {
        mapping: json!({"properties": {"at": {"type": "date"}, "msg": {"type": "text"}}}),
        docs: vec![
            (
                "e1".into(),
                json!({"at": "2026-11-23T10:00:00Z", "msg": "alpha one"}),
            ),
            (
                "e2".into(),
                json!({"at": "2026-11-23T10:00:01Z", "msg": "alpha two"}),
            ),
            ("e0".into(), json!({"msg": "alpha without a time"})),
        ],
    };
    vec![
        ("people-a", people_a),
        ("people-b", people_b),
        ("big", big),
        ("events", events),
    ]
}

/// Three documents for `events` after its first three: e3 shares e2's
/// timestamp, e4 is newer, e5 does not match `alpha`.
pub fn new_events() -> [(&'static str, Value); 3] {
    [
        (
            "e4",
            json!({"at": "2026-11-23T10:00:02Z", "msg": "alpha four"}),
        ),
        (
            "e3",
            json!({"at": "2026-11-23T10:00:01Z", "msg": "alpha three"}),
        ),
        (
            "e5",
            json!({"at": "2026-11-23T10:00:03Z", "msg": "beta five"}),
        ),
    ]
}

/// Indexes documents (`(id, source)`) into `index` of the target, refreshed.
pub async fn index_docs(target: &Target, index: &str, docs: &[(&str, Value)]) {
    use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
    use elasticsearch::http::transport::Transport;
    use elasticsearch::http::Method;
    let client = elasticsearch::Elasticsearch::new(
        Transport::single_node(&target.url).expect("a valid Elasticsearch URL"),
    );
    let mut lines = String::new();
    for (id, source) in docs {
        lines.push_str(&json!({"index": {"_index": target.index(index), "_id": id}}).to_string());
        lines.push('\n');
        lines.push_str(&source.to_string());
        lines.push('\n');
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let response = client
        .send(
            Method::Post,
            "/_bulk?refresh=true",
            headers,
            Option::<&()>::None,
            Some(lines),
            None,
        )
        .await
        .expect("bulk indexing");
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(body["errors"], false, "{body}");
}

/// A live query on a `live_field` polls: documents indexed after it started
/// arrive once each, oldest first, also when several share a timestamp.
pub async fn a_live_query_polls_for_new_documents(target: &Target) {
    let source = target.source(
        "es",
        "events",
        json!({"live_field": "at", "live_interval": "100ms"}),
    );
    let server = start(vec![source]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["es"],"query":"alpha","request-id":"l","live":true}))
        .await;
    let messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let mut page = ids(&messages[0]);
    page.sort();
    assert_eq!(page, ["e0", "e1", "e2"], "{messages:?}");
    assert_eq!(
        messages.last().unwrap()["datasources"],
        json!({"es": {"mode": "poll", "interval_ms": 100}})
    );
    // e3 shares e2's timestamp; e5 does not match.
    index_docs(target, "events", &new_events()).await;
    let append = client.recv().await;
    assert_eq!(append["items"]["append"], true, "{append}");
    assert_eq!(ids(&append), ["e3", "e4"]);
    assert_eq!(append["items"]["seq"], 1);
    // e6 shares e4's timestamp, the newest seen: it comes, e4 not again.
    index_docs(
        target,
        "events",
        &[(
            "e6",
            json!({"at": "2026-11-23T10:00:02Z", "msg": "alpha six"}),
        )],
    )
    .await;
    let append = client.recv().await;
    assert_eq!(ids(&append), ["e6"], "{append}");
    assert_eq!(append["items"]["seq"], 2);
    assert_eq!(append["items"]["from"], 5);
    client.send(json!({"type":"PING"})).await;
    assert_eq!(client.recv().await["type"], "PONG", "no other append");
}

fn paths(fields_receive: &Value) -> Vec<(String, String)> {
    fields_receive["fields"]["fields"]
        .as_array()
        .expect("a field list")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_owned(),
                f["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has(fields: &[(String, String)], path: &str, kind: &str) -> bool {
    fields.iter().any(|(p, k)| p == path && k == kind)
}

/// Nested objects become dotted paths; multi-fields are left out; `_index` is offered.
pub async fn fields_of_a_nested_mapping(target: &Target) {
    let server = start(vec![target.source("es", "people-a", json!({}))]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["es"]}))
        .await;
    let answer = client.recv().await;
    assert_eq!(answer["type"], "FIELDS_RECEIVE", "{answer}");
    assert_eq!(answer["fields"]["server"], "es");
    assert_eq!(answer["fields"]["index"], target.index("people-a"));
    let fields = paths(&answer);
    for (path, kind) in [
        ("name", "text"),
        ("group", "keyword"),
        ("age", "long"),
        ("address.city", "keyword"),
        ("address.street", "text"),
        ("contacts.email", "keyword"),
        ("joined", "date"),
        ("_index", "keyword"),
    ] {
        assert!(
            has(&fields, path, kind),
            "{path}: {kind} missing from {fields:?}"
        );
    }
    assert!(
        !fields
            .iter()
            .any(|(p, _)| p == "name.keyword" || p == "address" || p == "contacts"),
        "{fields:?}"
    );
}

/// A pattern over two indices merges their fields.
pub async fn fields_of_a_pattern_over_two_indices(target: &Target) {
    let server = start(vec![target.source("people", "people-*", json!({}))]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["people"]}))
        .await;
    let fields = paths(&client.recv().await);
    assert!(has(&fields, "address.city", "keyword"), "{fields:?}");
    assert!(has(&fields, "score", "double"), "{fields:?}");
    assert_eq!(
        fields.iter().filter(|(p, _)| p == "age").count(),
        1,
        "{fields:?}"
    );
}

/// A normal page: exact total, `from`/`size`, flattened sources, the index of each hit.
pub async fn a_normal_page(target: &Target) {
    let server = start(vec![target.source("people", "people-*", json!({}))]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["people"], "group:g1", 2, 5, "#de79f2").await;
    let items = &answer[0]["items"];
    assert_eq!(answer[0]["type"], "ITEMS_RECEIVE", "{answer:?}");
    assert_eq!(items["query"], "group:g1");
    assert_eq!(items["color"], "#de79f2");
    // people-a: i % 4 == 1 below 40 → 10; people-b below 25 → 6.
    assert_eq!(items["total"], 16);
    let results = items["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    for result in results {
        let fields = &result["fields"];
        assert_eq!(fields["group"], "g1", "{result}");
        assert!(
            fields["_index"]
                .as_str()
                .is_some_and(|i| i.starts_with(&target.prefix)),
            "{result}"
        );
        assert!(result["id"].is_string());
    }
    let from_a = results
        .iter()
        .find(|r| r["id"].as_str().is_some_and(|id| id.starts_with('a')))
        .expect("a hit of people-a");
    assert!(from_a["fields"]["address.city"].is_string(), "{from_a}");
    assert!(from_a["fields"]["contacts.email"].is_array(), "{from_a}");

    // The whole result set, page by page, has every hit once.
    let mut seen = BTreeSet::new();
    for from in (0..16).step_by(5) {
        let answer = client.items(&["people"], "group:g1", from, 5, "#fff").await;
        for result in answer[0]["items"]["results"].as_array().expect("results") {
            assert!(seen.insert(result["id"].as_str().unwrap_or_default().to_owned()));
        }
    }
    assert_eq!(seen.len(), 16);
}

/// Highlights of the matching field reach `highlight`.
pub async fn highlights(target: &Target) {
    let server = start(vec![target.source("es", "people-a", json!({}))]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es"], "Amsterdam", 0, 3, "#abc").await;
    let results = answer[0]["items"]["results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(answer[0]["items"]["total"], 14, "{answer:?}");
    assert_eq!(results.len(), 3);
    for result in results {
        let fragments = &result["highlight"]["address.city"];
        assert!(
            fragments
                .as_array()
                .is_some_and(|f| f.iter().any(|s| s.as_str() == Some("<em>Amsterdam</em>"))),
            "{result}"
        );
    }
}

/// A page past the 10,000-hit window arrives whole, exactly once per hit, in several batches.
pub async fn a_deep_page_streams_in_batches(target: &Target) {
    let mut settings = settings(vec![target.source(
        "big",
        "big",
        json!({"scan_batch": 1000}),
    )]);
    settings.results.batch_size = 250;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["big"],"query":"*","from":9_500,"size":2_000,"request-id":"deep"}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    let batches: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE")
        .collect();
    assert!(batches.len() >= 8, "{} batches", batches.len());
    let mut ids = BTreeSet::new();
    let mut next_from = 9_500;
    for batch in &batches {
        assert_eq!(batch["items"]["total"], BIG as u64);
        assert_eq!(batch["items"]["from"], next_from);
        let results = batch["items"]["results"].as_array().expect("results");
        next_from += results.len() as u64;
        for result in results {
            assert!(
                ids.insert(result["id"].as_str().unwrap_or_default().to_owned()),
                "{result}"
            );
        }
    }
    assert_eq!(ids.len(), 2_000);
    let done = messages.last().expect("completion");
    assert_eq!(done["datasources"]["big"]["total"], BIG as u64);
    assert_eq!(done["datasources"]["big"]["error"], Value::Null);

    // The tail: only what exists.
    client
        .send(json!({"type":"ITEMS_REQUEST","datasources":["big"],"query":"*","from":12_000,"size":1_000,"request-id":"tail"}))
        .await;
    let count: usize = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await
        .iter()
        .map(|m| m["items"]["results"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(count, BIG - 12_000);
}

/// A query Elasticsearch rejects: its reason reaches the user.
pub async fn a_bad_query_reports_the_reason(target: &Target) {
    let server = start(vec![target.source("es", "people-a", json!({}))]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es"], "name:(", 0, 5, "#abc").await;
    let error = &answer[0]["error"];
    assert_eq!(answer[0]["type"], "ERROR", "{answer:?}");
    assert_eq!(error["code"], "bad_query");
    assert_eq!(error["datasource"], "es");
    assert_eq!(error["query"], "name:(");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("query_shard_exception") || message.contains("parse"),
        "{message}"
    );
    // The connection and the datasource still work.
    let answer = client.items(&["es"], "*", 0, 1, "#abc").await;
    assert_eq!(answer[0]["items"]["total"], 40);
}

/// An unreachable cluster fails alone: the fixtures source still answers.
pub async fn an_unreachable_cluster_fails_alone() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = closed.local_addr().expect("an address").port();
    drop(closed);
    let server = start(vec![
        datasource(
            "es",
            "elasticsearch",
            json!({"url": format!("http://127.0.0.1:{port}"), "index": "x"}),
        ),
        datasource("people", "people", json!({"count": 12})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es", "people"], "*", 0, 5, "#abc").await;
    let error = answer
        .iter()
        .find(|m| m["type"] == "ERROR")
        .expect("an error for es");
    assert_eq!(error["error"]["datasource"], "es");
    assert_eq!(error["error"]["code"], "datasource_failed");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach Elasticsearch"),
        "{error}"
    );
    let items = answer
        .iter()
        .find(|m| m["type"] == "ITEMS_RECEIVE")
        .expect("people answers");
    assert_eq!(items["items"]["total"], 12);
}

/// Expansions with the cluster's own aggregations: from a group to the
/// cities its people live in, counted against the documents; then the same
/// through a link that rewrites values (`g1` is `team 1`), whose forms the
/// cluster lists with a `terms` aggregation's `include`.
pub async fn expansions_count_as_the_documents_say(target: &Target) {
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, index) in indices() {
        if name != "people-a" {
            continue;
        }
        for (_, doc) in &index.docs {
            if doc["group"] == "g1" {
                let city = doc["address"]["city"].as_str().unwrap_or_default();
                *expected.entry(city.to_owned()).or_default() += 1;
            }
        }
    }
    let mut settings = settings(vec![
        target.source("a", "people-a", json!({})),
        target.source("b", "people-b", json!({})),
    ]);
    settings.links.insert(
        "team".into(),
        tributary::config::LinkSettings {
            fields: vec!["a:group".into(), "b:group".into()],
            lowercase: false,
            replace: vec![tributary::protocol::LinkRewrite {
                regex: "^g".into(),
                with: "team ".into(),
            }],
        },
    );
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    for (request_id, value) in [
        (1, json!({"field": "group", "value": "g1"})),
        (2, json!({"field": "team", "value": "team 1"})),
    ] {
        client
            .send(
                json!({"type": "EXPAND_REQUEST", "request-id": request_id, "datasources": ["a"],
                         "values": [value], "fields": ["address.city"]}),
            )
            .await;
        let messages = client
            .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
            .await;
        let answer = messages
            .iter()
            .find(|m| m["type"] == "EXPAND_RECEIVE")
            .unwrap_or_else(|| panic!("{messages:?}"));
        let got = vertex_counts(answer);
        assert_eq!(got, expected, "{answer}");
        let connections = answer["connections"].as_array().expect("connections");
        assert_eq!(connections.len(), expected.len(), "{answer}");
        for connection in connections {
            assert_eq!(connection["from"], value, "{connection}");
            let city = connection["to"]["value"].as_str().unwrap_or_default();
            assert_eq!(
                connection["doc_count"].as_u64(),
                expected.get(city).copied()
            );
        }
    }
}
