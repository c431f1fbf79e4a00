//! The `elasticsearch` adapter against an Elasticsearch-compatible server on
//! loopback (`common::es_mock`): every scenario of `common::es_scenarios`, and
//! the failures a real cluster cannot be made to produce on demand.

use crate::common;

use std::time::Duration;

use common::es_mock::MockEs;
use common::es_scenarios::{self as scenarios, Target};
use common::*;
use serde_json::json;

fn mock() -> (MockEs, Target) {
    let indices = scenarios::indices()
        .into_iter()
        .map(|(name, index)| (name.to_owned(), index))
        .collect();
    let mock = MockEs::start(indices);
    let target = Target {
        url: mock.url(),
        prefix: String::new(),
    };
    (mock, target)
}

#[tokio::test]
async fn fields_of_a_nested_mapping() {
    scenarios::fields_of_a_nested_mapping(&mock().1).await;
}

#[tokio::test]
async fn fields_of_a_pattern_over_two_indices() {
    scenarios::fields_of_a_pattern_over_two_indices(&mock().1).await;
}

#[tokio::test]
async fn a_normal_page() {
    let (mock, target) = mock();
    scenarios::a_normal_page(&target).await;
    let log = mock.log();
    assert!(log.iter().all(|line| !line.contains("_pit")), "{log:?}");
}

#[tokio::test]
async fn a_live_query_polls_for_new_documents() {
    let (mock, target) = mock();
    scenarios::a_live_query_polls_for_new_documents(&target).await;
    let log = mock.log();
    assert!(
        log.iter().filter(|l| l.contains("/events/_search")).count() >= 3,
        "{log:?}"
    );
}

#[tokio::test]
async fn highlights() {
    scenarios::highlights(&mock().1).await;
}

#[tokio::test]
async fn a_deep_page_uses_a_point_in_time_and_closes_it() {
    let (mock, target) = mock();
    scenarios::a_deep_page_streams_in_batches(&target).await;
    let log = mock.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /big/_pit?keep_alive=1m")),
        "{log:?}"
    );
    // 9,500 + 2,000 in batches of 1,000: 12 searches for the first request.
    assert!(
        log.iter().filter(|l| l.as_str() == "POST /_search").count() >= 12,
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.starts_with("DELETE /_pit")), "{log:?}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while mock.open_cursors() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "points in time left open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_deep_page_falls_back_to_scroll_without_point_in_time() {
    let (mock, target) = mock();
    mock.without_pit();
    scenarios::a_deep_page_streams_in_batches(&target).await;
    let log = mock.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /big/_search?scroll=1m")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("POST /_search/scroll")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("DELETE /_search/scroll")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_bad_query_reports_the_reason() {
    scenarios::a_bad_query_reports_the_reason(&mock().1).await;
}

#[tokio::test]
async fn an_unreachable_cluster_fails_alone() {
    scenarios::an_unreachable_cluster_fails_alone().await;
}

/// Each HTTP failure becomes a clear ERROR for the Elasticsearch source alone.
#[tokio::test]
async fn http_failures_are_errors_of_that_datasource_alone() {
    let cases = [
        (
            401,
            "security_exception",
            "unable to authenticate user [tributary] for REST request [/people-a/_search]",
            "datasource_unauthorized",
            "401",
        ),
        (
            403,
            "security_exception",
            "action [indices:data/read/search] is unauthorized for user [tributary]",
            "datasource_unauthorized",
            "403",
        ),
        (
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
            "datasource_failed",
            "429",
        ),
        (
            500,
            "null_pointer_exception",
            "something broke",
            "datasource_failed",
            "500",
        ),
        (
            503,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];",
            "datasource_failed",
            "503",
        ),
    ];
    for (status, kind, reason, code, mention) in cases {
        let (mock, target) = mock();
        mock.fail_with(status, kind, reason);
        let server = start(vec![
            target.source("es", "people-a", json!({})),
            datasource("people", "people", json!({"count": 7})),
        ]);
        let (mut client, _) = Client::ready(&server).await;
        let answer = client.items(&["es", "people"], "*", 0, 5, "#abc").await;
        let error = answer
            .iter()
            .find(|m| m["type"] == "ERROR")
            .unwrap_or_else(|| panic!("{status}: {answer:?}"));
        assert_eq!(error["error"]["datasource"], "es");
        assert_eq!(error["error"]["code"], code, "{status}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(reason) && message.contains(mention),
            "{status}: {message}"
        );
        let items = answer
            .iter()
            .find(|m| m["type"] == "ITEMS_RECEIVE")
            .expect("people answers");
        assert_eq!(items["items"]["total"], 7);

        // Fields fail the same way.
        client
            .send(json!({"type":"FIELDS_REQUEST","datasources":["es"]}))
            .await;
        assert_eq!(client.recv().await["error"]["code"], code);
    }
}

#[tokio::test]
async fn a_slow_cluster_times_out_alone() {
    let (mock, target) = mock();
    mock.delay(Duration::from_secs(5));
    let mut es = target.source("es", "people-a", json!({}));
    es.timeout = Some(Duration::from_millis(200));
    let server = start(vec![
        es,
        datasource("people", "people", json!({"count": 3})),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let answer = client.items(&["es", "people"], "*", 0, 5, "#abc").await;
    assert_eq!(
        answer[0]["items"]["server"], "people",
        "the fast source answers first: {answer:?}"
    );
    assert_eq!(answer[1]["error"]["code"], "timeout");
    assert_eq!(answer[1]["error"]["datasource"], "es");
}

#[tokio::test]
async fn health_reports_a_reachable_cluster_and_an_unreachable_one() {
    let (_mock, target) = mock();
    let server = start(vec![
        target.source("up", "people-a", json!({})),
        datasource(
            "down",
            "elasticsearch",
            json!({"url": "http://127.0.0.1:9", "index": "x"}),
        ),
    ]);
    let (status, body) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["datasources"]["up"]["ok"], true, "{health}");
    assert_eq!(health["datasources"]["down"]["ok"], false, "{health}");
}

#[tokio::test]
async fn the_fields_option_limits_what_is_offered_and_returned() {
    let (mock, target) = mock();
    let server = start(vec![target.source(
        "es",
        "people-a",
        json!({"fields": ["name", "address.*"]}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["es"]}))
        .await;
    let answer = client.recv().await;
    let paths: Vec<&str> = answer["fields"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["address.city", "address.street", "name", "_index"]);
    client.items(&["es"], "*", 0, 1, "#abc").await;
    let log = mock.log();
    assert!(log.iter().any(|l| l == "POST /people-a/_search"), "{log:?}");
}

#[test]
fn bad_settings_name_the_key() {
    let registry = tributary::datasources::Registry::with_builtin();
    let error = |options: serde_json::Value| match registry.build(&datasource(
        "es",
        "elasticsearch",
        options,
    )) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(error(json!({"index": "x"})).contains("url"));
    assert!(error(json!({"url": "not a url", "index": "x"})).contains("`url`"));
    assert!(error(json!({"url": "http://localhost:9200"})).contains("index"));
    assert!(
        error(json!({"url": "http://localhost:9200", "index": "x", "username": "u"}))
            .contains("password")
    );
    assert!(
        error(json!({"url": "http://localhost:9200", "index": "x", "ca_cert": "/nope.pem"}))
            .contains("ca_cert")
    );
    assert!(
        error(json!({"url": "http://localhost:9200", "index": "x", "indexx": 1}))
            .contains("indexx")
    );
    assert!(
        error(json!({"url": "http://localhost:9200", "index": "x", "live_interval": "5s"}))
            .contains("needs `live_field`")
    );
    assert!(error(
        json!({"url": "http://localhost:9200", "index": "x", "live_field": "t", "live_interval": "soon"})
    )
    .contains("live_interval"));
    assert!(error(
        json!({"url": "http://localhost:9200", "index": "x", "live_field": "t", "live_interval": "0s"})
    )
    .contains("more than 0"));
}

#[tokio::test]
async fn expansions_count_as_the_documents_say() {
    scenarios::expansions_count_as_the_documents_say(&mock().1).await;
}
