//! The Elasticsearch scenarios against a real cluster: set `ELASTICSEARCH_URL`
//! (e.g. `http://localhost:9200` with `docker compose up elasticsearch`) and run
//! `cargo test --test it -- --nocapture elasticsearch_real::`. Without it the suite
//! prints a note and passes. It creates indices named `tributary-test-<pid>-*`
//! and deletes them afterwards.

use crate::common;

use common::es_scenarios::{self as scenarios, Target};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::json;

async fn call(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<String>,
    ndjson: bool,
) -> serde_json::Value {
    let mut headers = HeaderMap::new();
    if ndjson {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
    }
    let response = client
        .send(method, path, headers, Option::<&()>::None, body, None)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status_code();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Creates the test indices (one shard, so `_shard_doc` order is stable) and bulk-loads them.
async fn load(client: &Elasticsearch, prefix: &str) {
    for (name, index) in scenarios::indices() {
        let index_name = format!("{prefix}{name}");
        let settings = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": index.mapping});
        call(
            client,
            Method::Put,
            &format!("/{index_name}"),
            Some(settings.to_string()),
            false,
        )
        .await;
        for chunk in index.docs.chunks(5_000) {
            let mut lines = String::new();
            for (id, source) in chunk {
                lines.push_str(&json!({"index": {"_index": index_name, "_id": id}}).to_string());
                lines.push('\n');
                lines.push_str(&source.to_string());
                lines.push('\n');
            }
            let result = call(
                client,
                Method::Post,
                "/_bulk?refresh=true",
                Some(lines),
                true,
            )
            .await;
            assert_eq!(result["errors"], false, "bulk load of {index_name} failed");
        }
    }
}

#[tokio::test]
async fn scenarios_against_a_real_elasticsearch() {
    let Ok(url) = std::env::var("ELASTICSEARCH_URL") else {
        eprintln!("note: ELASTICSEARCH_URL is not set; skipping the real-Elasticsearch suite (see README, \"Elasticsearch\")");
        return;
    };
    let transport = Transport::single_node(&url).expect("a valid ELASTICSEARCH_URL");
    let client = Elasticsearch::new(transport);
    let prefix = format!("tributary-test-{}-", std::process::id());
    load(&client, &prefix).await;
    let target = Target {
        url,
        prefix: prefix.clone(),
    };

    scenarios::fields_of_a_nested_mapping(&target).await;
    scenarios::fields_of_a_pattern_over_two_indices(&target).await;
    scenarios::a_normal_page(&target).await;
    scenarios::highlights(&target).await;
    scenarios::a_live_query_polls_for_new_documents(&target).await;
    scenarios::a_deep_page_streams_in_batches(&target).await;
    scenarios::a_bad_query_reports_the_reason(&target).await;
    scenarios::expansions_count_as_the_documents_say(&target).await;
    scenarios::an_unreachable_cluster_fails_alone().await;

    call(&client, Method::Delete, &format!("/{prefix}*"), None, false).await;
}
