//! The docker-compose stack's pieces, without Docker: the demo loader
//! (`datasources/elasticsearch/load.py`) fills an Elasticsearch-compatible
//! server, `datasources/postgres/init.sql` fills a schema of the local
//! PostgreSQL server, and tributary configured by `datasources/compose.toml`
//! federates both with the built-in fixtures.

use crate::common;

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

    // What the postgres image runs at its first start, into a schema of the local server.
    let schema = format!("t_compose_{}", std::process::id());
    let local = common::pg::connect().await;
    local
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .expect("a schema");
    let init = Command::new("psql")
        .arg(common::pg::url())
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!(
            "emails_file={}",
            root.join("datasources/demo/emails.ndjson").display()
        ))
        .arg("-f")
        .arg(root.join("datasources/postgres/init.sql"))
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .expect("psql runs init.sql");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
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
        if ds.kind == "postgres" {
            ds.options
                .insert("url".into(), Value::from(common::pg::url()));
            ds.options
                .insert("table".into(), Value::from(format!("{schema}.emails")));
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
    assert_eq!(
        ids,
        ["emails", "es_emails", "es_tweets", "pg_emails", "tweets"]
    );

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

    // The emails table answers as the built-in emails do.
    for query in [
        "budget",
        "from:vera.meijer@tyrell.example",
        "has_attachment:true AND size_bytes:>200000",
        "subject:\"product launch\"",
    ] {
        let answer = client
            .items(&["emails", "pg_emails"], query, 0, 1, "#0af")
            .await;
        let total = |server: &str| {
            answer
                .iter()
                .find(|m| m["items"]["server"] == server)
                .map(|m| m["items"]["total"].clone())
        };
        assert!(
            total("emails").and_then(|t| t.as_u64()).unwrap_or(0) > 0,
            "{query}: {answer:?}"
        );
        assert_eq!(total("pg_emails"), total("emails"), "{query}: {answer:?}");
    }
    let _ = local
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
}
