//! The seed Socket API, message by message, over a real websocket.

use crate::common;

use common::*;
use serde_json::{json, Value};

fn demo() -> Vec<tributary::datasources::DatasourceSettings> {
    vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        datasource("people", "people", json!({"count": 100})),
    ]
}

#[tokio::test]
async fn initial_state_lists_every_datasource() {
    let server = start(demo());
    let (_client, initial) = Client::ready(&server).await;
    assert_eq!(
        initial["state"]["datasources"],
        json!([
            {"id": "tweets", "name": "TWEETS", "type": "fixtures"},
            {"id": "people", "name": "PEOPLE", "type": "people"}
        ])
    );
}

#[tokio::test]
async fn fields_request_gets_one_fields_receive_per_datasource() {
    let server = start(demo());
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["tweets","people"]}))
        .await;
    let mut answers = [client.recv().await, client.recv().await];
    answers.sort_by_key(|m| {
        m["fields"]["server"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });

    let people = &answers[0];
    assert_eq!(people["type"], "FIELDS_RECEIVE");
    assert_eq!(people["fields"]["server"], "people");
    let fields: Vec<(String, String)> = people["fields"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        // Inferred as Elasticsearch's dynamic mapping does: strings are
        // `text` (with a `.keyword` multi-field, which is not listed).
        ("address.city", "text"),
        ("age", "long"),
        ("group", "text"),
        ("name", "text"),
    ] {
        assert!(
            fields.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {fields:?}"
        );
    }

    let tweets = &answers[1];
    assert_eq!(tweets["fields"]["server"], "tweets");
    assert_eq!(tweets["fields"]["index"], "tweets");
    let kinds: std::collections::HashMap<&str, &str> = tweets["fields"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds["user.screen_name"], "keyword");
    assert_eq!(kinds["created_at"], "date");
    assert_eq!(kinds["text"], "text");
    assert_eq!(kinds["retweet_count"], "long");
    assert_eq!(kinds["user.verified"], "boolean");
}

#[tokio::test]
async fn items_request_echoes_query_and_color_with_the_total_and_the_page() {
    let server = start(demo());
    let (mut client, _) = Client::ready(&server).await;
    let answers = client
        .items(&["people"], "group:g1", 0, 500, "#de79f2")
        .await;
    let items = items_of(&answers[0]);
    assert_eq!(items["server"], "people");
    assert_eq!(items["query"], "group:g1");
    assert_eq!(items["color"], "#de79f2");
    assert_eq!(items["total"], 20);
    let results = items["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    for result in results {
        assert_eq!(result["fields"]["group"], "g1");
        assert_eq!(result["highlight"], Value::Null);
        // nested objects come back with dotted paths, arrays stay arrays
        assert!(result["fields"]["address.city"].is_string(), "{result}");
        assert!(result["fields"]["tags"].is_array(), "{result}");
        assert!(result["fields"].get("address").is_none());
    }
}

#[tokio::test]
async fn total_counts_all_matches_while_results_hold_the_page() {
    let server = start(demo());
    let (mut client, _) = Client::ready(&server).await;
    let first = client.items(&["people"], "*", 0, 30, "red").await;
    let second = client.items(&["people"], "*", 30, 30, "red").await;
    let last = client.items(&["people"], "*", 90, 30, "red").await;
    let beyond = client.items(&["people"], "*", 200, 30, "red").await;
    for page in [&first[0], &second[0], &last[0], &beyond[0]] {
        assert_eq!(items_of(page)["total"], 100);
    }
    let (a, b, c) = (ids(&first[0]), ids(&second[0]), ids(&last[0]));
    assert_eq!((a.len(), b.len(), c.len()), (30, 30, 10));
    assert!(ids(&beyond[0]).is_empty());
    let mut all: Vec<String> = a.into_iter().chain(b).chain(c).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 70, "pages overlap");
}

/// The one deliberate difference from Elasticsearch's query language
/// (docs/protocol.md): the seed's clients send `""` for "everything", so a
/// blank query matches every record where `query_string` matches none.
#[tokio::test]
async fn a_blank_query_matches_every_record() {
    let server = start(demo());
    let (mut client, _) = Client::ready(&server).await;
    let everything = client.items(&["tweets"], "*", 0, 5, "red").await;
    let total = items_of(&everything[0])["total"].clone();
    assert!(total.as_u64().is_some_and(|n| n > 0), "{total}");
    for blank in ["", "   ", "\t"] {
        let reply = client.items(&["tweets"], blank, 0, 5, "red").await;
        assert_eq!(items_of(&reply[0])["total"], total, "{blank:?}");
        assert_eq!(ids(&reply[0]).len(), 5, "{blank:?}");
    }
}

#[tokio::test]
async fn the_fast_datasource_answers_before_the_slow_one() {
    let server = start(vec![
        datasource("slow", "slow", json!({"delay_ms": 1500})),
        datasource("fast", "people", json!({"count": 10})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let answers = client.items(&["slow", "fast"], "*", 0, 5, "#111111").await;
    assert_eq!(items_of(&answers[0])["server"], "fast");
    assert_eq!(items_of(&answers[1])["server"], "slow");

    // Fields too, and the connection keeps answering while the slow one runs.
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["slow"]}))
        .await;
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["fast"]}))
        .await;
    let first = client.recv().await;
    assert_eq!(first["fields"]["server"], "fast", "{first}");
    let second = client.recv().await;
    assert_eq!(second["fields"]["server"], "slow", "{second}");
}

/// Query syntax against the tweets demo data, each count checked against the
/// records themselves.
#[tokio::test]
async fn query_string_syntax_over_the_socket() {
    let records: Vec<Value> = std::fs::read_to_string("datasources/demo/tweets.ndjson")
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |pred: &dyn Fn(&Value) -> bool| records.iter().filter(|r| pred(r)).count() as u64;
    let has_tag = |r: &Value, tag: &str| r["hashtags"].as_array().unwrap().iter().any(|t| t == tag);
    let text_has = |r: &Value, word: &str| {
        r["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w == word)
    };
    let screen_name = records[0]["user"]["screen_name"]
        .as_str()
        .unwrap()
        .to_owned();

    let cases: Vec<(String, u64)> = vec![
        ("*".into(), records.len() as u64),
        ("wilders".into(), count(&|r| text_has(r, "wilders"))),
        ("WILDERS".into(), count(&|r| text_has(r, "wilders"))),
        ("hashtags:climate".into(), count(&|r| has_tag(r, "climate"))),
        (
            "hashtags:climate AND hashtags:energy".into(),
            count(&|r| has_tag(r, "climate") && has_tag(r, "energy")),
        ),
        (
            "hashtags:climate OR hashtags:energy".into(),
            count(&|r| has_tag(r, "climate") || has_tag(r, "energy")),
        ),
        (
            "hashtags:climate AND NOT lang:en".into(),
            count(&|r| has_tag(r, "climate") && r["lang"] != "en"),
        ),
        (
            "+hashtags:climate -lang:en".into(),
            count(&|r| has_tag(r, "climate") && r["lang"] != "en"),
        ),
        (
            format!("user.screen_name:{}", screen_name.to_uppercase()),
            count(&|r| r["user"]["screen_name"] == screen_name.as_str()),
        ),
        (
            "\"new numbers published\"".into(),
            count(&|r| {
                r["text"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("new numbers published")
            }),
        ),
        ("hashtags:clim*".into(), count(&|r| has_tag(r, "climate"))),
        (
            "user.location:rot?erdam".into(),
            count(&|r| r["user"]["location"] == "Rotterdam"),
        ),
        (
            "retweet_count:[100 TO 200]".into(),
            count(&|r| (100..=200).contains(&r["retweet_count"].as_u64().unwrap())),
        ),
        (
            "created_at:[2024-03-01 TO 2024-04-01}".into(),
            count(&|r| {
                let d = r["created_at"].as_str().unwrap();
                ("2024-03-01".."2024-04-01").contains(&d)
            }),
        ),
        (
            "user.verified:true".into(),
            count(&|r| r["user"]["verified"] == true),
        ),
    ];
    let server = start(vec![datasource(
        "tweets",
        "fixtures",
        json!({"path": "datasources/demo/tweets.ndjson"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    for (query, expected) in cases {
        assert!(
            expected > 0 || query.contains("NOT"),
            "case `{query}` tests nothing"
        );
        let answer = client.items(&["tweets"], &query, 0, 1, "#000").await;
        assert_eq!(items_of(&answer[0])["total"], expected, "query `{query}`");
    }
}
