//! The `postgres` datasource against the real local PostgreSQL server: each
//! test loads the demo tweets and emails into tables of its own schema and
//! talks to a real tributary server over a websocket.

use crate::common;

use common::pg::{self, Schema};
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
    for query in query_list() {
        for (embedded, pg) in [("tweets", "pg_tweets"), ("emails", "pg_emails")] {
            let (ours, theirs) = totals_of(&mut client, &query, pg, embedded).await;
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

/// One query on two datasources at once: each one's total, or its error.
async fn totals_of(
    client: &mut Client,
    query: &str,
    first: &str,
    second: &str,
) -> (Result<u64, String>, Result<u64, String>) {
    let reply = client
        .typed()
        .request(Search::new([first, second], query).size(1))
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
    (answer(first), answer(second))
}

/// The ids of a table in id order, straight from PostgreSQL.
async fn ids_in_order(schema: &Schema, table: &str, from: i64, size: i64) -> Vec<String> {
    schema
        .client
        .query(
            &format!(
                "SELECT id FROM {} ORDER BY id OFFSET $1 LIMIT $2",
                schema.table(table)
            ),
            &[&from, &size],
        )
        .await
        .expect("ids")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_id_order_and_deep_pages_stream_in_batches() {
    let schema = Schema::create("paging").await;
    let server = start(vec![datasource("pg", "postgres", schema.options("tweets"))]);
    let (mut client, _) = Client::ready(&server).await;

    // The first page, then "load more" (the next page starts by key).
    for (from, size) in [(0u64, 10u64), (10, 10), (20, 5)] {
        let reply = client
            .typed()
            .request(Search::new(["pg"], "*").from(from).size(size))
            .await
            .expect("a reply");
        assert!(reply.errors.is_empty(), "{:?}", reply.errors);
        assert_eq!(reply.total("pg"), Some(3000));
        let ours: Vec<String> = reply.items().map(|i| i.id.clone()).collect();
        assert_eq!(
            ours,
            ids_in_order(&schema, "tweets", from as i64, size as i64).await
        );
    }

    // A deep page nobody reached: 1,200 results from 1,700, in batches of 500.
    let reply = client
        .typed()
        .request(Search::new(["pg"], "*").from(1700).size(1200))
        .await
        .expect("a reply");
    let sizes: Vec<usize> = reply.batches.iter().map(|b| b.results.len()).collect();
    assert_eq!(sizes, [500, 500, 200], "streamed a batch at a time");
    let ours: Vec<String> = reply.items().map(|i| i.id.clone()).collect();
    assert_eq!(ours, ids_in_order(&schema, "tweets", 1700, 1200).await);

    // A filtered page, its total exact; the page past the end is empty.
    let query = "hashtags:bitcoin AND retweet_count:>100";
    let expected: i64 = schema
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE 'bitcoin' = ANY(hashtags) AND retweet_count > 100",
                schema.table("tweets")
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let reply = client
        .typed()
        .request(Search::new(["pg"], query).size(3))
        .await
        .expect("a reply");
    assert_eq!(reply.total("pg"), Some(expected as u64));
    assert!(expected > 3);
    let first = reply.items().next().expect("a result").field_map();
    assert_eq!(
        first["hashtags"]
            .as_array()
            .map(|h| h.iter().any(|t| t == "bitcoin")),
        Some(true),
        "{first:?}"
    );
    assert!(
        first["retweet_count"].as_i64().unwrap_or(0) > 100,
        "{first:?}"
    );
    assert!(
        first.contains_key("user.screen_name"),
        "json keys are flattened: {first:?}"
    );
    let reply = client
        .typed()
        .request(
            Search::new(["pg"], query)
                .from(expected as u64 + 5)
                .size(10),
        )
        .await
        .expect("a reply");
    assert_eq!(reply.total("pg"), Some(expected as u64));
    assert_eq!(reply.items().count(), 0);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_come_from_the_catalog() {
    let schema = Schema::create("fields").await;
    let server = start(vec![
        datasource("pg", "postgres", schema.options("tweets")),
        datasource(
            "narrow",
            "postgres",
            json!({"url": pg::url(), "table": schema.table("tweets"), "fields": ["id", "text", "user.screen_name"]}),
        ),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = client
        .typed()
        .request(tributary_client::Fields(vec!["pg".into(), "narrow".into()]))
        .await
        .expect("a reply");
    let of = |id: &str| -> Vec<(String, String)> {
        let batch = reply
            .fields
            .iter()
            .find(|f| f.server == id)
            .expect("fields");
        batch
            .fields
            .iter()
            .map(|f| (f.path.clone(), f.kind.clone()))
            .collect()
    };
    let all = of("pg");
    for (path, kind) in [
        ("id", "keyword"),
        ("created_at", "date"),
        ("text", "text"),
        ("lang", "keyword"),
        ("hashtags", "keyword"),
        ("retweet_count", "long"),
        ("user.name", "text"),
        ("user.screen_name", "keyword"),
        ("user.followers_count", "long"),
        ("user.verified", "boolean"),
    ] {
        assert!(
            all.contains(&(path.into(), kind.into())),
            "{path}: {kind} in {all:?}"
        );
    }
    let narrow: Vec<String> = of("narrow").into_iter().map(|(p, _)| p).collect();
    assert_eq!(narrow, ["id", "text", "user.screen_name"]);
    // A field that is not offered is neither searched nor returned.
    let reply = client
        .typed()
        .request(Search::new(["narrow"], "lang:en").size(1))
        .await
        .expect("a reply");
    assert_eq!(reply.total("narrow"), Some(0));
    let reply = client
        .typed()
        .request(Search::new(["narrow"], "annad0").size(1))
        .await
        .expect("a reply");
    let record = reply.items().next().expect("a result").field_map();
    let mut keys: Vec<&String> = record.keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "text", "user.screen_name"], "{record:?}");
    drop(server);

    // `default_field`: where terms without a field are searched.
    let mut options = schema.options("tweets");
    options["default_field"] = json!("text");
    let server = start(vec![datasource("text_only", "postgres", options)]);
    let (mut client, _) = Client::ready(&server).await;
    for (query, matches) in [
        ("\"Twitter Web Client\"", false),
        ("source:\"Twitter Web Client\"", true),
        ("opendata", true),
    ] {
        let reply = client
            .typed()
            .request(Search::new(["text_only"], query).size(1))
            .await
            .expect("a reply");
        assert_eq!(
            reply.total("text_only").unwrap_or(0) > 0,
            matches,
            "{query}: {:?}",
            reply.errors
        );
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_data_or_bad_queries_never_sql() {
    let schema = Schema::create("hostile").await;
    let mut settings = settings(vec![datasource("pg", "postgres", schema.options("emails"))]);
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let deep = format!("{}a{}", "(".repeat(2200), ")".repeat(2200));
    let hostile = [
        "'; DROP TABLE emails; --",
        "subject:\"'); DROP TABLE emails; --\"",
        "body:\\'\\\\ OR 1=1",
        "from:x' OR '1'='1",
        "size_bytes:99999999999999999999999999",
        "size_bytes:[1e400 TO *]",
        "date:[now-1000000y TO *]",
        "subject:/[/",
        "subject:/(a|b/",
        "thread:a%_\\\\*",
        "body:$1",
        "\"$$ ; SELECT pg_sleep(10) ; $$\"",
        "subject:\u{0}",
        deep.as_str(),
    ];
    for query in hostile {
        let reply = client
            .typed()
            .request(Search::new(["pg"], query).size(1))
            .await
            .expect("a reply");
        match (reply.total("pg"), reply.errors.first()) {
            (Some(total), None) => assert!(
                total < 3000 || query.starts_with("date"),
                "`{query}`: {total}"
            ),
            (None, Some(error)) => assert_eq!(error.code, "bad_query", "`{query}`: {error:?}"),
            other => panic!("`{query}`: {other:?}"),
        }
    }
    // Nothing was written, and the server still answers.
    let count: i64 = schema
        .client
        .query_one(
            &format!("SELECT count(*) FROM {}", schema.table("emails")),
            &[],
        )
        .await
        .expect("the table is still there")
        .get(0);
    assert_eq!(count, 3000);
    let reply = client
        .typed()
        .request(Search::new(["pg"], "subject:launch").size(1))
        .await
        .expect("a reply");
    assert!(reply.total("pg").unwrap_or(0) > 0);
    schema.drop().await;
}

/// A datasource over `{s}.slow_emails`, whose statements sleep as
/// `{s}.control` says, on connections named `app`.
fn slow(
    schema: &Schema,
    id: &str,
    app: &str,
    timeout: Option<std::time::Duration>,
) -> tributary::datasources::DatasourceSettings {
    let mut settings = datasource(
        id,
        "postgres",
        json!({"url": format!("{}?application_name={app}", pg::url()), "table": schema.table("slow_emails"), "id_column": "id"}),
    );
    settings.timeout = timeout;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_request_cancels_its_statement() {
    let schema = Schema::create("cancel").await;
    schema.add_slow_view().await;
    let server = start(vec![slow(&schema, "pg", "tributary_cancel", None)]);
    let (mut client, _) = Client::ready(&server).await;
    // The first search reads the catalog (no sleep); then statements sleep.
    let reply = client
        .typed()
        .request(Search::new(["pg"], "*").size(1))
        .await
        .expect("a reply");
    assert_eq!(reply.total("pg"), Some(3000));
    schema.set_sleep(30.0).await;
    let id = client
        .typed()
        .start(Search::new(["pg"], "subject:launch"))
        .await
        .expect("sent");
    schema.until_slow_view_runs(true, PATIENCE).await;
    client.typed().cancel(&id).await.expect("cancel");
    let reply = client.typed().reply(&id).await.expect("a reply");
    assert!(reply.canceled, "{reply:?}");
    // PostgreSQL stops the statements (the count and the page) at once, not in 30 s.
    schema
        .until_slow_view_runs(false, std::time::Duration::from_secs(5))
        .await;
    // The pool's connections are fine afterwards.
    schema.set_sleep(0.0).await;
    let reply = client
        .typed()
        .request(Search::new(["pg"], "subject:launch").size(1))
        .await
        .expect("a reply");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert!(reply.total("pg").unwrap_or(0) > 0);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_that_datasources_alone() {
    let schema = Schema::create("failures").await;
    schema.add_slow_view().await;
    let bad_user = pg::url().replace("postgres@", "nobody_here@");
    let server = start(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        datasource(
            "unreachable",
            "postgres",
            json!({"url": "postgres://postgres@127.0.0.1:9/test", "table": "x"}),
        ),
        datasource(
            "wrong_user",
            "postgres",
            json!({"url": bad_user, "table": schema.table("emails")}),
        ),
        datasource(
            "missing",
            "postgres",
            json!({"url": pg::url(), "table": schema.table("no_such_table")}),
        ),
        slow(
            &schema,
            "slow",
            "tributary_failures",
            Some(std::time::Duration::from_millis(700)),
        ),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    // Read the slow view's catalog while it is fast.
    let reply = client
        .typed()
        .request(Search::new(["slow"], "*").size(1))
        .await
        .expect("a reply");
    assert_eq!(reply.total("slow"), Some(3000), "{:?}", reply.errors);
    schema.set_sleep(5.0).await;

    let reply = client
        .typed()
        .request(
            Search::new(
                ["tweets", "unreachable", "wrong_user", "missing", "slow"],
                "bitcoin",
            )
            .size(1),
        )
        .await
        .expect("a reply");
    assert!(
        reply.total("tweets").unwrap_or(0) > 0,
        "the embedded datasource answers"
    );
    let error = |id: &str| {
        reply
            .errors
            .iter()
            .find(|e| e.datasource.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("an ERROR for {id}: {:?}", reply.errors))
            .clone()
    };
    let unreachable = error("unreachable");
    assert_eq!(unreachable.code, "datasource_failed");
    assert!(
        unreachable.message.contains("cannot reach PostgreSQL"),
        "{unreachable:?}"
    );
    let wrong_user = error("wrong_user");
    assert_eq!(wrong_user.code, "datasource_unauthorized", "{wrong_user:?}");
    // The role's name stays in the server's log.
    assert!(
        !wrong_user.message.contains("nobody_here"),
        "{wrong_user:?}"
    );
    assert!(
        wrong_user
            .message
            .contains("refused the datasource's credentials"),
        "{wrong_user:?}"
    );
    let missing = error("missing");
    assert_eq!(missing.code, "datasource_failed");
    assert!(missing.message.contains("does not exist"), "{missing:?}");
    let slow = error("slow");
    assert_eq!(slow.code, "timeout", "{slow:?}");
    schema.set_sleep(0.0).await;

    // /healthz checks each.
    let (_, body) = http_get(server.addr, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["datasources"]["slow"]["ok"], true, "{health}");
    for id in ["unreachable", "wrong_user", "missing"] {
        assert_eq!(health["datasources"][id]["ok"], false, "{id}: {health}");
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_request_fails_that_request_and_the_pool_recovers() {
    let schema = Schema::create("dropped").await;
    schema.add_slow_view().await;
    let app = format!("tributary_dropped_{}", std::process::id());
    let server = start(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        slow(&schema, "pg", &app, None),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = client
        .typed()
        .request(Search::new(["pg"], "*").size(1))
        .await
        .expect("a reply");
    assert_eq!(reply.total("pg"), Some(3000));
    schema.set_sleep(30.0).await;
    let id = client
        .typed()
        .start(Search::new(["tweets", "pg"], "launch"))
        .await
        .expect("sent");
    schema.until_slow_view_runs(true, PATIENCE).await;
    assert!(schema.terminate(&app).await > 0);
    let reply = client.typed().reply(&id).await.expect("a reply");
    let error = reply
        .errors
        .iter()
        .find(|e| e.datasource.as_deref() == Some("pg"))
        .expect("an ERROR for pg");
    assert_eq!(error.code, "datasource_failed", "{error:?}");
    assert!(error.message.contains("PostgreSQL"), "{error:?}");
    assert!(
        reply.total("tweets").is_some(),
        "the other datasource answered"
    );
    // The next request gets fresh connections.
    schema.set_sleep(0.0).await;
    let reply = client
        .typed()
        .request(Search::new(["pg"], "launch").size(1))
        .await
        .expect("a reply");
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert!(reply.total("pg").unwrap_or(0) > 0);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_federates_postgres_with_the_embedded_data() {
    let schema = Schema::create("federated").await;
    let server = start(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        datasource("emails", "postgres", schema.options("emails")),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let answers = client
        .items(&["tweets", "emails"], "budget OR bitcoin", 0, 5, "#f80")
        .await;
    for answer in &answers {
        let items = items_of(answer);
        assert_eq!(items["color"], "#f80", "{answer}");
        assert_eq!(
            items["results"].as_array().map(Vec::len),
            Some(5),
            "{answer}"
        );
        assert!(items["total"].as_u64().unwrap_or(0) > 5, "{answer}");
    }
    let servers: Vec<&str> = answers
        .iter()
        .map(|a| items_of(a)["server"].as_str().unwrap_or(""))
        .collect();
    assert!(
        servers.contains(&"emails") && servers.contains(&"tweets"),
        "{servers:?}"
    );
    schema.drop().await;
}

/// Reads up to `LIVE_STARTED` of a live request; returns the page's ids.
async fn go_live(client: &mut Client, datasource: &str, query: &str) -> Vec<String> {
    client
        .send(
            json!({"type":"ITEMS_REQUEST","datasources":[datasource],"query":query,
                     "color":"#0af","request-id":"live","live":true,"size":100}),
        )
        .await;
    let messages = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    let started = messages.last().expect("LIVE_STARTED");
    assert!(
        started["datasources"][datasource]["mode"].is_string(),
        "{started}"
    );
    messages
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE")
        .flat_map(ids)
        .collect()
}

/// The next append of the live request; nothing else may come first.
async fn next_append(client: &mut Client) -> Vec<String> {
    let message = client.recv().await;
    assert_eq!(message["items"]["append"], true, "{message}");
    ids(&message)
}

/// Nothing more arrives (a PING is answered before any append).
async fn nothing_more(client: &mut Client) {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    client.send(json!({"type":"PING"})).await;
    let message = client.recv().await;
    assert_eq!(message["type"], "PONG", "no other append: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_by_notify_sends_each_new_or_changed_matching_row_once() {
    let schema = Schema::create("notify").await;
    let channel = format!("{}_changes", schema.name);
    schema
        .exec(&format!(
            "CREATE FUNCTION {{s}}.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_notify(TG_ARGV[0], NEW.id::text); RETURN NEW; END $$;
             CREATE TRIGGER tweets_notify AFTER INSERT OR UPDATE ON {{s}}.tweets
                 FOR EACH ROW EXECUTE FUNCTION {{s}}.notify_change('{channel}');"
        ))
        .await;
    let mut options = schema.options("tweets");
    options["live"] = json!("notify");
    options["channel"] = json!(channel);
    let server = start(vec![datasource("pg", "postgres", options)]);
    let (mut client, _) = Client::ready(&server).await;
    let page = go_live(&mut client, "pg", "hashtags:livetest").await;
    assert!(page.is_empty(), "{page:?}");
    let insert = |id: &str, tag: &str| {
        format!(
            "INSERT INTO {{s}}.tweets (id, text, hashtags, retweet_count) VALUES ('{id}', 'live {tag}', ARRAY['{tag}'], 1)"
        )
    };
    schema.exec(&insert("live-1", "livetest")).await;
    assert_eq!(next_append(&mut client).await, ["live-1"]);
    schema.exec(&insert("live-2", "other")).await;
    schema.exec(&insert("live-3", "livetest")).await;
    assert_eq!(next_append(&mut client).await, ["live-3"]);
    // A change to a matching row arrives again; one that stops matching does not.
    schema
        .exec("UPDATE {s}.tweets SET retweet_count = 2 WHERE id = 'live-1'")
        .await;
    assert_eq!(next_append(&mut client).await, ["live-1"]);
    schema
        .exec("UPDATE {s}.tweets SET hashtags = ARRAY['gone'] WHERE id = 'live-3'")
        .await;
    nothing_more(&mut client).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_by_polling_follows_a_growing_column() {
    let schema = Schema::create("polling").await;
    schema
        .exec(
            "CREATE TABLE {s}.events (id bigint PRIMARY KEY, seen_at timestamptz NOT NULL, message text);
             INSERT INTO {s}.events VALUES (1, '2026-11-24T10:00:00Z', 'alpha one'), (2, '2026-11-24T10:00:01Z', 'alpha two'), (3, '2026-11-24T10:00:01Z', 'beta three');",
        )
        .await;
    let server = start(vec![datasource(
        "pg",
        "postgres",
        json!({"url": pg::url(), "table": schema.table("events"), "live_field": "seen_at", "live_interval": "100ms"}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let mut page = go_live(&mut client, "pg", "message:alpha").await;
    page.sort();
    assert_eq!(page, ["1", "2"]);
    // 4 shares the newest timestamp seen (it is neither skipped nor is 2
    // repeated); 5 is later; 6 does not match.
    schema
        .exec(
            "INSERT INTO {s}.events VALUES (4, '2026-11-24T10:00:01Z', 'alpha four'), (5, '2026-11-24T10:00:02Z', 'alpha five'), (6, '2026-11-24T10:00:03Z', 'beta six');",
        )
        .await;
    assert_eq!(next_append(&mut client).await, ["4", "5"]);
    // A row changed by moving its timestamp on arrives again.
    schema
        .exec("UPDATE {s}.events SET seen_at = '2026-11-24T10:00:05Z' WHERE id = 1")
        .await;
    assert_eq!(next_append(&mut client).await, ["1"]);
    nothing_more(&mut client).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_datasource_is_a_read_only_sub_query() {
    let schema = Schema::create("subquery").await;
    let emails = schema.table("emails");
    let server = start(vec![
        datasource(
            "attached",
            "postgres",
            json!({"url": pg::url(), "id_column": "id",
                   "sql": format!("SELECT id, subject, \"from\" FROM {emails} WHERE has_attachment")}),
        ),
        datasource(
            "writer",
            "postgres",
            json!({"url": pg::url(), "id_column": "id",
                   "sql": format!("SELECT id FROM {emails} WHERE {}.wipe()", schema.name)}),
        ),
        datasource(
            "with_writer",
            "postgres",
            json!({"url": pg::url(), "id_column": "id",
                   "sql": format!("WITH gone AS (DELETE FROM {emails} RETURNING id) SELECT id FROM gone")}),
        ),
    ]);
    schema
        .exec("CREATE FUNCTION {s}.wipe() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN DELETE FROM {s}.emails; RETURN true; END $$")
        .await;
    let (mut client, _) = Client::ready(&server).await;
    let expected: i64 = schema
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM {emails} WHERE has_attachment AND subject ILIKE '%launch%'"
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let reply = client
        .typed()
        .request(Search::new(["attached"], "subject:launch").size(2))
        .await
        .expect("a reply");
    assert_eq!(
        reply.total("attached"),
        Some(expected as u64),
        "{:?}",
        reply.errors
    );
    let record = reply.items().next().expect("a result").field_map();
    let mut keys: Vec<&String> = record.keys().collect();
    keys.sort();
    assert_eq!(keys, ["from", "id", "subject"]);

    let reply = client
        .typed()
        .request(Search::new(["writer"], "*").size(2))
        .await
        .expect("a reply");
    let error = reply.errors.first().expect("an ERROR");
    assert!(
        error.message.contains("only reading is allowed"),
        "{error:?}"
    );
    let reply = client
        .typed()
        .request(Search::new(["with_writer"], "*").size(2))
        .await
        .expect("a reply");
    let error = reply.errors.first().expect("an ERROR");
    assert!(error.message.contains("data-modifying"), "{error:?}");
    let count: i64 = schema
        .client
        .query_one(&format!("SELECT count(*) FROM {emails}"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 3000, "nothing was deleted");
    schema.drop().await;
}

#[test]
fn the_config_is_checked_at_startup() {
    let registry = tributary::datasources::Registry::with_builtin();
    let refused = |options: serde_json::Value| {
        registry
            .build(&datasource("pg", "postgres", options))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let url = pg::url();
    assert!(
        refused(json!({"url": url, "table": "a", "sql": "SELECT 1"}))
            .contains("either `table` or `sql`")
    );
    assert!(refused(json!({"url": url})).contains("missing key `table`"));
    assert!(refused(json!({"url": url, "sql": "DELETE FROM a"})).contains("read-only"));
    assert!(refused(json!({"url": "mysql://x", "table": "a"})).contains("not a PostgreSQL URL"));
    assert!(refused(json!({"url": url, "table": "a", "tls": "maybe"})).contains("unknown TLS mode"));
    assert!(
        refused(json!({"url": url, "table": "a", "live": "notify"})).contains("needs `channel`")
    );
    assert!(
        refused(json!({"url": url, "table": "a", "live_field": "x", "live_interval": "0s"}))
            .contains("more than 0")
    );
    assert!(refused(json!({"url": url, "table": "a", "colour": "red"}))
        .contains("unknown field `colour`"));
    let secret = refused(json!({"url": "postgres://u:hunter2@[bad/x", "table": "a"}));
    assert!(!secret.contains("hunter2"), "{secret}");
    assert!(registry
        .build(&datasource(
            "pg",
            "postgres",
            json!({"url": url, "table": "a", "tls": "verify-full"})
        ))
        .is_ok());
}

/// Is tributary's connection named `app` encrypted? (`None`: none is open.)
async fn encrypted(schema: &Schema, app: &str) -> Option<bool> {
    schema
        .client
        .query_opt(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1 LIMIT 1",
            &[&app],
        )
        .await
        .expect("pg_stat_ssl")
        .map(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_follow_libpq() {
    let schema = Schema::create("tls").await;
    let server_has_tls: bool = schema
        .client
        .query_one("SELECT current_setting('ssl') = 'on'", &[])
        .await
        .expect("ssl setting")
        .get(0);
    let pid = std::process::id();
    let source = |id: &str, mode: &str| {
        datasource(
            id,
            "postgres",
            json!({"url": format!("{}?application_name=tls_{id}_{pid}", pg::url()),
                   "table": schema.table("emails"), "tls": mode}),
        )
    };
    let server = start(vec![
        source("prefer", "prefer"),
        source("disable", "disable"),
        source("full", "verify-full"),
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = client
        .typed()
        .request(Search::new(["prefer", "disable", "full"], "launch").size(1))
        .await
        .expect("a reply");
    assert!(reply.total("prefer").unwrap_or(0) > 0, "{:?}", reply.errors);
    assert!(
        reply.total("disable").unwrap_or(0) > 0,
        "{:?}",
        reply.errors
    );
    assert_eq!(
        encrypted(&schema, &format!("tls_prefer_{pid}")).await,
        Some(server_has_tls)
    );
    assert_eq!(
        encrypted(&schema, &format!("tls_disable_{pid}")).await,
        Some(false)
    );
    if server_has_tls {
        // The local server's certificate is self-signed: verify-full refuses it, clearly.
        let error = reply
            .errors
            .iter()
            .find(|e| e.datasource.as_deref() == Some("full"))
            .expect("an ERROR");
        assert_eq!(error.code, "datasource_failed");
        assert!(
            error.message.to_lowercase().contains("certificate"),
            "{error:?}"
        );
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_keys_are_dotted_fields() {
    let schema = Schema::create("json").await;
    schema
        .exec(
            r#"CREATE TABLE {s}.docs (id int PRIMARY KEY, meta jsonb, extra json);
               INSERT INTO {s}.docs VALUES
                 (1, '{"tags": ["Red", "blue"], "owner": {"name": "Ann Smith", "age": 41}, "score": 2.5, "ok": true}', '{"n": 1}'),
                 (2, '{"tags": "green", "owner": {"name": "Bob", "age": 29}, "score": 7, "ok": false}', '{"n": 2}'),
                 (3, '{"tags": [], "owner": {"name": null}, "items": [{"sku": "x"}]}', NULL),
                 (4, NULL, '{"n": "three"}');"#,
        )
        .await;
    let server = start(vec![datasource(
        "pg",
        "postgres",
        json!({"url": pg::url(), "table": schema.table("docs"), "text_columns": ["meta.owner.name"]}),
    )]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = client
        .typed()
        .request(tributary_client::Fields(vec!["pg".into()]))
        .await
        .expect("a reply");
    let fields: Vec<(String, String)> = reply.fields[0]
        .fields
        .iter()
        .map(|f| (f.path.clone(), f.kind.clone()))
        .collect();
    for (path, kind) in [
        ("id", "long"),
        ("meta.tags", "keyword"),
        ("meta.owner.name", "text"),
        ("meta.owner.age", "long"),
        ("meta.score", "double"),
        ("meta.ok", "boolean"),
        ("extra.n", "long"),
    ] {
        assert!(
            fields.contains(&(path.into(), kind.into())),
            "{path}: {kind} in {fields:?}"
        );
    }
    for (query, expected) in [
        ("meta.tags:red", vec![1]),
        ("meta.tags:GREEN", vec![2]),
        ("meta.owner.name:smith", vec![1]),
        ("meta.owner.age:>30", vec![1]),
        ("meta.score:[2 TO 8]", vec![1, 2]),
        ("meta.ok:false", vec![2]),
        ("_exists_:meta.tags", vec![1, 2]),
        ("_exists_:meta.owner", vec![1, 2]),
        ("NOT _exists_:meta.owner.name", vec![3, 4]),
        ("extra.n:1 OR extra.n:2", vec![1, 2]),
        ("extra.n:three", vec![]),
        ("bob", vec![2]),
        ("29", vec![2]),
    ] {
        let reply = client
            .typed()
            .request(Search::new(["pg"], query).size(10))
            .await
            .expect("a reply");
        assert!(reply.errors.is_empty(), "{query}: {:?}", reply.errors);
        let ids: Vec<i64> = reply
            .items()
            .map(|i| i.id.parse().expect("an id"))
            .collect();
        assert_eq!(ids, expected, "{query}");
    }
    let reply = client
        .typed()
        .request(Search::new(["pg"], "id:3").size(1))
        .await
        .expect("a reply");
    let record = reply.items().next().expect("a result").field_map();
    assert_eq!(
        record["meta.items.sku"],
        json!(["x"]),
        "lists of objects are returned: {record:?}"
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_when_the_server_comes_back() {
    let schema = Schema::create("comeback").await;
    let proxy = pg::Proxy::start().await;
    let mut options = schema.options("emails");
    options["url"] = json!(proxy.url());
    let mut source = datasource("pg", "postgres", options);
    source.timeout = Some(std::time::Duration::from_secs(3));
    let server = start(vec![
        datasource("tweets", "fixtures", json!({"embedded": "tweets"})),
        source,
    ]);
    let (mut client, _) = Client::ready(&server).await;
    let reply = ask(&mut client, "launch OR bitcoin").await;
    assert!(
        reply.errors.is_empty() && reply.total("pg").unwrap_or(0) > 0,
        "{:?}",
        reply.errors
    );

    // The server goes away: that datasource fails, in words; the other answers.
    proxy.down();
    let reply = ask(&mut client, "launch OR bitcoin").await;
    let error = reply
        .errors
        .iter()
        .find(|e| e.datasource.as_deref() == Some("pg"))
        .expect("an ERROR for pg");
    assert_eq!(error.code, "datasource_failed", "{error:?}");
    assert!(error.message.contains("PostgreSQL"), "{error:?}");
    assert!(reply.total("tweets").unwrap_or(0) > 0);
    let (_, body) = http_get(server.addr, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["datasources"]["pg"]["ok"], false, "{health}");

    // It comes back: the next request is answered, with no restart.
    proxy.up().await;
    let reply = ask(&mut client, "launch OR bitcoin").await;
    assert!(reply.errors.is_empty(), "{:?}", reply.errors);
    assert!(reply.total("pg").unwrap_or(0) > 0);
    let (_, body) = http_get(server.addr, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["datasources"]["pg"]["ok"], true, "{health}");
    schema.drop().await;
}

async fn ask(client: &mut Client, query: &str) -> tributary_client::Reply {
    client
        .typed()
        .request(Search::new(["tweets", "pg"], query).size(1))
        .await
        .expect("a reply")
}

/// Pieces of query syntax, SQL and escapes, valid and not.
const PIECES: &[&str] = &[
    "(",
    ")",
    "+",
    "-",
    "!",
    "NOT ",
    "AND ",
    "OR ",
    "&&",
    "||",
    "\"",
    "\\",
    "'",
    ";",
    "--",
    "/*",
    "$1",
    "%",
    "_",
    "*",
    "?",
    "~",
    "~1",
    "^2",
    ":",
    " ",
    " ",
    "[",
    "]",
    "{",
    "}",
    " TO ",
    ">",
    "<=",
    "/op.*/",
    "/[/",
    "subject:",
    "to:",
    "size_bytes:",
    "date:",
    "has_attachment:",
    "body:",
    "_exists_:",
    "nosuch:",
    "subject.keyword:",
    "launch",
    "Vera",
    "2024-01",
    "now-1y",
    "205870",
    "1e400",
    "-5",
    "true",
    "DROP TABLE emails",
    "' OR '1'='1",
    "\u{0}",
    "é",
    "*@acme.example",
];

fn random_query() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(proptest::sample::select(PIECES), 1..12).prop_map(|p| p.concat())
}

/// Property: whatever the query, the translation is valid SQL: every
/// answer is results or a `bad_query`, never a statement PostgreSQL refuses.
#[test]
fn random_queries_are_results_or_bad_queries() {
    use tributary::datasources::{ErrorKind, RequestContext, ResultSink, SearchQuery};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let schema = runtime.block_on(Schema::create("random"));
    let source = tributary::datasources::Registry::with_builtin()
        .build(&datasource("pg", "postgres", schema.options("emails")))
        .expect("the datasource");
    let config = proptest::test_runner::Config {
        cases: 400,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    // A fixed seed: the same 400 queries every run, so the count below is stable.
    let rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
    let answered = std::cell::Cell::new(0usize);
    let outcome = runner.run(&random_query(), |text| {
        let (mut sink, pushed) = ResultSink::for_test();
        let query = SearchQuery {
            query: text.clone(),
            from: 0,
            size: 5,
        };
        let answer =
            runtime.block_on(source.search(&RequestContext::for_test(), &query, &mut sink));
        match answer {
            Ok(()) => {
                proptest::prop_assert!(pushed.total().is_some(), "`{}`: no total", text);
                answered.set(answered.get() + 1);
            }
            Err(e) => {
                proptest::prop_assert_eq!(e.kind, ErrorKind::BadQuery, "`{}`: {}", text, e.message)
            }
        }
        Ok(())
    });
    runtime.block_on(schema.drop());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The SQL side was exercised, not only the parser's refusals.
    assert!(
        answered.get() > 30,
        "only {} queries parsed",
        answered.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_neither_pin_a_worker_nor_outrun_the_timeout() {
    let schema = Schema::create("hostile").await;
    let mut settings = settings(vec![
        datasource("pg_tweets", "postgres", schema.options("tweets")),
        // What the adapter's own sessions are set to.
        datasource(
            "session",
            "postgres",
            json!({"url": pg::url(), "id_column": "id",
                   "sql": "SELECT 1 AS id, current_setting('jit') AS jit, current_setting('default_transaction_read_only') AS read_only"}),
        ),
    ]);
    settings.limits.max_messages_per_second = 1000;
    let server = start_with(settings);
    let (mut light, _) = Client::ready(&server).await;
    // JIT compilation does not heed the statement timeout or a cancel: off.
    let reply = light
        .typed()
        .request(Search::new(["session"], "jit:off AND read_only:on").size(1))
        .await
        .expect("a reply");
    assert_eq!(reply.total("session"), Some(1), "{:?}", reply.errors);

    // A sloppy phrase with the largest slop there is, on one text field
    // and on every field, from two connections at once.
    let mut attackers = Vec::new();
    for query in ["text:\"a b\"~4294967295", "\"bitcoin price\"~4294967295"] {
        let (mut client, _) = Client::ready(&server).await;
        attackers.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let reply = client
                .typed()
                .request(Search::new(["pg_tweets"], query).size(5))
                .await
                .expect("a reply");
            (
                started.elapsed(),
                reply.errors.len(),
                reply.total("pg_tweets"),
            )
        }));
    }
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let reply = light
            .typed()
            .request(Search::new(["pg_tweets"], "bitcoin").size(1))
            .await
            .expect("a reply");
        assert!(
            reply.total("pg_tweets").unwrap_or(0) > 0,
            "{:?}",
            reply.errors
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for attacker in attackers {
        let (took, errors, total) = attacker.await.expect("the attacker's task");
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        assert_eq!(errors, 0);
        assert!(total.is_some());
    }
    // As many sloppy phrases as a query may hold, on every field: more SQL
    // than a statement may be, refused before it is sent, by name.
    let widest = "\"a b\"~60 ".repeat(512);
    let started = std::time::Instant::now();
    let reply = light
        .typed()
        .request(Search::new(["pg_tweets"], widest.as_str()).size(1))
        .await
        .expect("a reply");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let error = reply.errors.first().expect("an error");
    assert_eq!(error.code, "bad_query", "{error:?}");
    assert!(error.message.contains("MiB of SQL"), "{error:?}");
    assert_slowest_under(
        "light PostgreSQL search during sloppy phrases",
        latencies,
        2000.0,
    );
    schema.drop().await;
}

/// Records with the words standard analysis is particular about:
/// addresses, hyphenated identifiers, URLs, numbers with separators.
const NOTES: &[&str] = &[
    r#"{"id":"n1","author":"vera.meijer@tyrell.example","body":"Draft at https://example.org/path?q=1 for thread-08-0","ref":"ABC-123-x","amount":1000}"#,
    r#"{"id":"n2","author":"anna.devries@acme.example","body":"See http://tributary.example/docs/v1.2 and the 1,000.50 invoice","ref":"abc-456","amount":42}"#,
    r#"{"id":"n3","author":"Lars Dekker","body":"Mail lars.dekker@globex.example or call +31 20 555-0101; don't wait","ref":"thread-10-1","amount":3}"#,
    r#"{"id":"n4","author":"kim.hendriks@wayne.example","body":"Version 3.14 ships; see example.org/releases, budget Q3-2024","ref":"Q3-2024","amount":314}"#,
    r#"{"id":"n5","author":"Ömer Şahin","body":"İstanbul ofisi: ΟΔΥΣΣΕΑΣ notes, vera.meijer@tyrell.example in cc, foo:bar","ref":"TR-1","amount":7}"#,
];

/// The `postgres` datasource with every string column full-text gives the
/// embedded datasource's totals under Elasticsearch's dynamic mapping
/// (strings `text` with a `keyword` sub-field), on queries whose words
/// PostgreSQL's own parser would cut differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_columns_tokenize_as_the_standard_analyzer() {
    let schema = Schema::create("fulltext").await;
    schema
        .exec(&format!(
            "CREATE TABLE {} (id text PRIMARY KEY, author text, body text, ref text, amount bigint)",
            schema.table("notes")
        ))
        .await;
    schema.load("notes", &NOTES.join("\n")).await;
    // The same records as files, without a mapping: the dynamic mapping.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let notes = dir.path().join("notes.ndjson");
    std::fs::write(&notes, NOTES.join("\n") + "\n").expect("write the notes");
    let emails = dir.path().join("emails.ndjson");
    std::fs::write(
        &emails,
        include_str!("../../datasources/demo/emails.ndjson"),
    )
    .expect("write the emails");
    let full_text = |table: &str, columns: serde_json::Value| {
        let mut options = schema.options(table);
        options["text_columns"] = columns;
        options
    };
    let mut settings = settings(vec![
        datasource("notes", "fixtures", json!({ "path": notes })),
        datasource("emails", "fixtures", json!({ "path": emails })),
        datasource(
            "pg_notes",
            "postgres",
            full_text("notes", json!(["id", "author", "body", "ref"])),
        ),
        datasource(
            "pg_emails",
            "postgres",
            full_text(
                "emails",
                json!([
                    "id",
                    "from",
                    "to",
                    "cc",
                    "subject",
                    "thread",
                    "body",
                    "attachments",
                    "organisation"
                ]),
            ),
        ),
    ]);
    settings.limits.max_messages_per_second = 100_000;
    let server = start_with(settings);
    let (mut client, _) = Client::ready(&server).await;
    let queries = [
        // addresses
        "from:vera.meijer@tyrell.example",
        "vera.meijer@tyrell.example",
        "to:anna.devries@acme.example",
        "\"anna.devries@acme.example\"",
        "author:vera.meijer@tyrell.example",
        "tyrell.example",
        "organisation:tyrell.example",
        "from:vera",
        "from:vera.meijer",
        "from.keyword:vera.meijer@tyrell.example",
        "from:vera.meijer*",
        "from:/vera\\..*/",
        // hyphenated identifiers
        "thread:thread-08-0",
        "thread-08-0",
        "thread:\"thread-10-1\"",
        "id:msg-000001",
        "msg-000001",
        "000001",
        "ref:abc-123",
        "ref:ABC-123-x",
        "ref:\"q3 2024\"",
        "Q3-2024",
        "555-0101",
        // URLs
        "\"https://example.org/path?q=1\"",
        "body:\"https://example.org/path?q=1\"",
        "body:https\\://example.org",
        "body:example.org",
        "body:https",
        "body:\"example.org path\"",
        "body:tributary.example",
        "body:docs",
        "body:v1.2",
        // numbers
        "body:1,000.50",
        "body:1,000",
        "body:3.14",
        "3.14",
        "amount:1000",
        "205870",
        "size_bytes:>200000",
        // words around them
        "body:don't",
        "body:\"foo:bar\"",
        "body:foo\\:bar",
        "body:istanbul",
        "body:οδυσσεασ",
        "\"quick turnaround\"",
        "\"looks good to me\"~2",
        "subject:\"product launch\"",
    ];
    let mut mismatches = Vec::new();
    let mut matched_something = 0;
    for query in queries {
        for (embedded, pg) in [("notes", "pg_notes"), ("emails", "pg_emails")] {
            let (ours, theirs) = totals_of(&mut client, query, pg, embedded).await;
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) if a == b => {
                    if *a > 0 {
                        matched_something += 1;
                    }
                }
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
        matched_something >= queries.len(),
        "only {matched_something} answers matched anything"
    );
}
