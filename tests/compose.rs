//! The docker-compose stack's pieces, without Docker: the demo loader
//! (`datasources/elasticsearch/load.py`) fills an Elasticsearch-compatible
//! server, and tributary configured by `datasources/compose.toml` federates
//! those indices with the built-in fixtures.

mod common;

use std::path::Path;
use std::process::Command;

use common::es_mock::MockEs;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_loader_and_the_compose_config_federate_elasticsearch_with_the_fixtures() {
    let mock = MockEs::start(Vec::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loader = root.join("datasources/elasticsearch/load.py");
    let run_loader = || {
        Command::new("python3")
            .arg(&loader)
            .args(["--url", &mock.url(), "--wait", "10"])
            .output()
            .expect("python3 runs the loader")
    };
    let output = run_loader();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("demo-tweets: loaded 3000 records"),
        "{stdout}"
    );
    assert!(
        stdout.contains("demo-emails: loaded 3000 records"),
        "{stdout}"
    );
    // Running it again changes nothing.
    let again = run_loader();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("demo-tweets: already holds 3000 records")
    );

    let mut settings = tributary::config::load(
        Some(&root.join("datasources/compose.toml")),
        Some("127.0.0.1:0"),
    )
    .expect("the compose config loads");
    for ds in &mut settings.datasources {
        if ds.kind == "elasticsearch" {
            ds.options.insert("url".into(), Value::from(mock.url()));
        }
    }
    let server = start_with(settings);
    let (mut client, initial) = Client::ready(&server).await;
    let ids: Vec<&str> = initial["state"]["datasources"]
        .as_array()
        .expect("datasources")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["emails", "es_emails", "es_tweets", "tweets"]);

    client
        .send(json!({"type":"FIELDS_REQUEST","datasources":["es_tweets"]}))
        .await;
    let fields = client.recv().await;
    let listed = fields["fields"]["fields"].as_array().expect("fields");
    assert!(
        listed
            .iter()
            .any(|f| f == &json!({"path":"user.screen_name","type":"keyword"})),
        "{fields}"
    );

    // The same query finds the same records in both copies of the data.
    let answer = client
        .items(
            &["es_tweets", "tweets"],
            "user.screen_name:annad0",
            0,
            500,
            "#de79f2",
        )
        .await;
    let ids_of = |server: &str| -> Vec<String> {
        let message = answer
            .iter()
            .find(|m| m["items"]["server"] == server)
            .expect("an answer");
        let mut ids: Vec<String> = message["items"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert!(!ids_of("tweets").is_empty());
    assert_eq!(ids_of("es_tweets"), ids_of("tweets"));
}
