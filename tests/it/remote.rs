//! Remote datasources over real sockets: a service on `/ws/services` that
//! identifies with `data.datasource` is listed to new clients, announced to
//! open ones, and answers FIELDS/ITEMS requests through `SEARCH`/`FIELDS`
//! events and their replies; cancel, timeouts, a service leaving mid-request,
//! a restarting service, invalid and flooding replies, and records published
//! into live queries — each with a clear error and nothing lost.

use crate::common;

use std::time::Duration;

use common::remote_service::*;
use common::*;
use serde_json::json;
use tributary::config::ServiceSettings;
use tributary::http::ServerHandle;

fn server_with(timeout: Duration) -> ServerHandle {
    start_with(crm_settings(timeout))
}

/// The demo datasources, and services `crm` and `limited`.
fn crm_settings(timeout: Duration) -> tributary::config::Settings {
    let mut settings = settings(tributary::config::demo_datasources());
    settings.default_timeout = timeout;
    settings.limits.max_messages_per_second = 10_000;
    settings.services.insert(
        "crm".into(),
        ServiceSettings {
            token: TOKEN.into(),
            group: None,
            // The datasources its tests declare (`tweets` to be refused
            // as configured; `ds…` to reach the server's most).
            datasources: Some(
                ["crm", "tweets", "one-more"]
                    .into_iter()
                    .map(String::from)
                    .chain(
                        (0..tributary::services::MAX_REMOTE_DATASOURCES).map(|i| format!("ds{i}")),
                    )
                    .collect(),
            ),
        },
    );
    settings
        .services
        .insert("limited".into(), serving("limited-token-1", &["allowed"]));
    settings
}

fn server() -> ServerHandle {
    server_with(Duration::from_secs(10))
}

/// Waits until `/healthz` says no service serves `crm`; returns its body.
async fn until_unserved(server: &ServerHandle) -> String {
    let started = std::time::Instant::now();
    loop {
        let (_, health) = http_get(server.addr, "/healthz").await;
        if health.contains("no service serves datasource `crm` now") {
            return health;
        }
        assert!(started.elapsed() < PATIENCE, "still served: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_remote_datasource_is_announced_listed_and_searched() {
    let server = server();
    let (mut open, initial) = Client::ready(&server).await;
    assert!(!initial.to_string().contains("\"crm\""), "{initial}");

    let service = FakeService::start(&server, Behaviour::Serve { chunk: 7 }).await;
    let changed = open.recv().await;
    assert_eq!(changed["type"], "DATASOURCES_CHANGED", "{changed}");
    let listed = changed["state"]["datasources"].as_array().expect("a list");
    assert!(
        listed
            .iter()
            .any(|d| d == &json!({"id": "crm", "name": "Customers", "type": "remote"})),
        "{changed}"
    );
    assert!(
        listed.iter().any(|d| d["id"] == "tweets"),
        "the others stay: {changed}"
    );

    let (mut client, initial) = Client::ready(&server).await;
    let ids: Vec<&str> = initial["state"]["datasources"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(ids.contains(&"crm") && ids.contains(&"emails"), "{initial}");

    let fields = ask(
        &mut client,
        json!({"type": "FIELDS_REQUEST", "datasources": ["crm"], "request-id": "f"}),
    )
    .await;
    assert_eq!(fields[0]["type"], "FIELDS_RECEIVE", "{fields:?}");
    assert_eq!(fields[0]["fields"]["server"], "crm");
    assert_eq!(
        fields[0]["fields"]["fields"][2],
        json!({"path": "address.city", "type": "keyword"})
    );

    // One request over the remote and an embedded datasource: both answer.
    let messages = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm", "tweets"], "query": "team:red",
                     "from": 10, "size": 25, "color": "#f00", "request-id": "q"}),
    )
    .await;
    assert!(errors_of(&messages).is_empty(), "{messages:?}");
    let results = results_of(&messages, "crm");
    let got: Vec<&str> = results
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    let expected: Vec<String> = (0..RECORDS)
        .filter(|i| i % 2 == 0)
        .skip(10)
        .take(25)
        .map(|i| format!("c{i}"))
        .collect();
    assert_eq!(got, expected);
    // Nested fields arrive flattened, as from every datasource.
    assert_eq!(
        results[0]["fields"]["address.city"], "Ghent",
        "{}",
        results[0]
    );
    assert_eq!(
        results[2]["fields"]["address.city"], "Utrecht",
        "{}",
        results[2]
    );
    let batch = messages
        .iter()
        .find(|m| m["items"]["server"] == "crm")
        .expect("a batch");
    assert_eq!(batch["items"]["total"], RECORDS / 2);
    assert_eq!(batch["items"]["color"], "#f00");
    let completed = messages.last().expect("completed");
    assert_eq!(
        completed["datasources"]["crm"]["total"],
        RECORDS / 2,
        "{completed}"
    );
    assert!(
        completed["datasources"]["tweets"]["error"].is_null(),
        "{completed}"
    );
    service.stop();
}

#[tokio::test]
async fn a_service_error_becomes_that_datasources_error() {
    let server = server();
    let service = FakeService::start(&server, Behaviour::Refuse).await;
    let (mut client, _) = Client::ready(&server).await;
    let messages = ask(&mut client, json!({"type": "ITEMS_REQUEST", "datasources": ["crm", "emails"], "query": "team:red", "request-id": "q"})).await;
    let errors = errors_of(&messages);
    assert_eq!(errors.len(), 1, "{messages:?}");
    assert_eq!(errors[0]["error"]["datasource"], "crm", "{}", errors[0]);
    assert_eq!(errors[0]["error"]["code"], "bad_query", "{}", errors[0]);
    assert!(errors[0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot read the query"));
    let completed = messages.last().expect("completed");
    assert!(
        completed["datasources"]["emails"]["error"].is_null(),
        "the other answered: {completed}"
    );
    service.stop();
}

#[tokio::test]
async fn an_invalid_reply_is_named_and_the_request_ends() {
    let server = server();
    let service = FakeService::start(&server, Behaviour::Invalid).await;
    let (mut client, _) = Client::ready(&server).await;
    let messages = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": "q"}),
    )
    .await;
    let errors = errors_of(&messages);
    assert_eq!(errors.len(), 1, "{messages:?}");
    let message = errors[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("invalid reply") && message.contains("unknown field `rows`"),
        "{message}"
    );
    service.stop();
}

#[tokio::test]
async fn canceling_tells_the_service_and_late_replies_are_dropped_quietly() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Hang).await;
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": "slow"}))
        .await;
    let search = service.next("SEARCH").await;
    assert_eq!(
        search["intent"],
        json!({"target": "DIRECT", "identifier": service.connection})
    );
    client
        .send(json!({"type": "CANCEL_REQUEST", "request-id": "slow"}))
        .await;
    let canceled = client.recv().await;
    assert_eq!(canceled["type"], "REQUEST_CANCELED", "{canceled}");
    let cancel = service.next("CANCEL").await;
    assert_eq!(cancel["data"]["id"], search["id"], "{cancel}");
    // A reply still on its way: no ERROR comes back to the service for it,
    // and the client hears nothing more of the canceled request.
    service
        .send
        .send(json!({"op": 5, "id": search["id"], "data": {"total": 1, "results": [record(1)], "done": true}}))
        .expect("sent");
    service
        .send
        .send(json!({"op": 3, "id": "after"}))
        .expect("sent");
    let pong = service.next("").await;
    assert_eq!(
        pong,
        json!({"op": 4, "id": "after"}),
        "nothing came before the PONG"
    );
    client.send(json!({"type": "PING", "t": 1})).await;
    assert_eq!(client.recv().await["type"], "PONG");
    service.stop();
}

#[tokio::test]
async fn a_service_that_does_not_answer_times_out_and_is_told() {
    let server = server_with(Duration::from_millis(400));
    let mut service = FakeService::start(&server, Behaviour::Hang).await;
    let (mut client, _) = Client::ready(&server).await;
    let messages = ask(&mut client, json!({"type": "ITEMS_REQUEST", "datasources": ["crm", "tweets"], "query": "*", "request-id": "q"})).await;
    let errors = errors_of(&messages);
    assert_eq!(errors.len(), 1, "{messages:?}");
    assert_eq!(errors[0]["error"]["code"], "timeout", "{}", errors[0]);
    assert!(
        !results_of(&messages, "tweets").is_empty(),
        "the other answered"
    );
    let search = service.next("SEARCH").await;
    let cancel = service.next("CANCEL").await;
    assert_eq!(cancel["data"]["id"], search["id"]);
    service.stop();
}

#[tokio::test]
async fn a_request_moves_to_another_service_when_its_service_leaves() {
    let server = server();
    // Two services serve `crm`: the first leaves after its first reply.
    let first = FakeService::start(&server, Behaviour::LeaveAfterFirst { chunk: 10 }).await;
    let second = FakeService::start(&server, Behaviour::Serve { chunk: 10 }).await;
    let (mut client, _) = Client::ready(&server).await;
    // Requests go round-robin: one of them reaches the first service.
    for round in 0..2 {
        let id = format!("q{round}");
        client
            .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "size": 45, "request-id": id}))
            .await;
        let messages = until_completed(&mut client, &id).await;
        assert!(errors_of(&messages).is_empty(), "{messages:?}");
        let got: Vec<String> = result_ids(&messages, "crm");
        let expected: Vec<String> = (0..45).map(|i| format!("c{i}")).collect();
        assert_eq!(got, expected, "every result once, in order");
    }
    first.stop();
    second.stop();
}

#[tokio::test]
async fn a_restarting_service_serves_the_request_that_waited_for_it() {
    let server = server();
    let first = FakeService::start(&server, Behaviour::Serve { chunk: 50 }).await;
    first.stop();
    let (mut client, _) = Client::ready(&server).await;
    // Gone: the datasource stays listed and health says why.
    let health = until_unserved(&server).await;
    assert!(health.contains("\"degraded\""), "{health}");
    client
        .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": "q"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = FakeService::start(&server, Behaviour::Serve { chunk: 50 }).await;
    let messages = until_completed(&mut client, "q").await;
    assert!(errors_of(&messages).is_empty(), "{messages:?}");
    assert_eq!(results_of(&messages, "crm").len(), 50);
    again.stop();
}

#[tokio::test]
async fn with_no_service_the_datasource_says_so() {
    let server = server_with(Duration::from_secs(30));
    FakeService::start(&server, Behaviour::Hang).await.stop();
    until_unserved(&server).await;
    let (mut client, _) = Client::ready(&server).await;
    let messages = ask(&mut client, json!({"type": "ITEMS_REQUEST", "datasources": ["crm", "emails"], "query": "*", "request-id": "q"})).await;
    let errors = errors_of(&messages);
    assert_eq!(errors.len(), 1, "{messages:?}");
    assert_eq!(errors[0]["error"]["code"], "datasource_failed");
    assert!(errors[0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("no service serves datasource `crm` now"));
}

#[tokio::test]
async fn bad_declarations_are_refused_with_a_reason() {
    let server = server();
    for (token, declared, reason) in [
        (
            TOKEN,
            json!({"id": "tweets"}),
            "belongs to a configured datasource",
        ),
        (TOKEN, json!({"id": "a b"}), "must be 1 to 64 letters"),
        (TOKEN, json!({"id": ""}), "must be 1 to 64 letters"),
        (TOKEN, json!({"name": "no id"}), "missing field `id`"),
        (
            TOKEN,
            json!({"id": "x", "fields": [{"path": 1}]}),
            "data.datasource must be",
        ),
        (TOKEN, json!("crm"), "data.datasource must be"),
        (
            "limited-token-1",
            json!({"id": "crm"}),
            "may not serve datasource `crm`",
        ),
    ] {
        let refused = FakeService::start_as(&server, token, declared.clone(), Behaviour::Hang)
            .await
            .err()
            .unwrap_or_else(|| panic!("{declared} was accepted"));
        assert!(refused.contains(reason), "{declared}: {refused}");
    }
    // The allowed one is served.
    let allowed = FakeService::start_as(
        &server,
        "limited-token-1",
        json!({"id": "allowed"}),
        Behaviour::Hang,
    )
    .await;
    assert!(allowed.is_ok());
    let (_, initial) = Client::ready(&server).await;
    assert!(!initial.to_string().contains("\"a b\""), "{initial}");
}

#[tokio::test]
async fn a_service_flooding_replies_fails_its_request_not_the_server() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Hang).await;
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "size": 100000, "request-id": "q"}))
        .await;
    let search = service.next("SEARCH").await;
    // The client does not read while ~20 MiB of replies arrive.
    let filler = "x".repeat(50_000);
    let result = json!({"id": "c", "fields": {"blob": filler}});
    for _ in 0..400 {
        service
            .send
            .send(json!({"op": 5, "id": search["id"], "data": {"total": 100000, "results": [result], "done": false}}))
            .expect("sent");
    }
    let overflow = service.next("ERROR").await;
    assert_eq!(overflow["data"]["code"], "reply_overflow", "{overflow}");
    let messages = until_completed(&mut client, "q").await;
    let errors = errors_of(&messages);
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("faster than they could be delivered"));
    // The server and the service go on.
    service
        .send
        .send(json!({"op": 3, "id": "p"}))
        .expect("sent");
    loop {
        // (The request's CANCEL may come first.)
        let next = service.next("").await;
        if next["op"] == 4 {
            break;
        }
        assert_eq!(next["event"], "CANCEL", "{next}");
    }
    service.stop();
}

#[tokio::test]
async fn published_records_reach_live_queries_of_the_remote_datasource() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Serve { chunk: 20 }).await;
    let (mut client, _) = Client::ready(&server).await;
    client
        .send(
            json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "team:red", "size": 5,
                     "live": true, "request-id": "live"}),
        )
        .await;
    let page = client.recv_until(|m| m["type"] == "LIVE_STARTED").await;
    assert_eq!(results_of(&page, "crm").len(), 5, "{page:?}");
    service
        .send
        .send(
            json!({"op": 0, "id": "p1", "event": "PUBLISH", "data": {"records": [
                {"id": "n1", "name": "new customer", "team": "red", "address": {"city": "Ghent"}},
                {"id": "n2", "name": "other customer", "team": "blue"},
            ]}}),
        )
        .expect("sent");
    let reply = loop {
        let next = service.next("").await;
        if next["event"] != "SEARCH" {
            break next;
        }
    };
    assert_eq!(reply["op"], 5, "{reply}");
    assert_eq!(reply["id"], "p1");
    assert_eq!(reply["data"]["records"], 2);
    let append = client.recv().await;
    assert_eq!(append["items"]["append"], true, "{append}");
    let results = append["items"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "only the matching record: {append}");
    assert_eq!(results[0]["fields"]["address.city"], "Ghent");
    assert_eq!(results[0]["fields"]["name"], "new customer");
    // Its id is not an unsearchable field.
    assert_eq!(reply["data"]["unindexed_fields"], json!([]), "{reply}");

    // Records in the shape SEARCH replies carry are read as flat records.
    service
        .send
        .send(
            json!({"op": 0, "id": "p3", "event": "PUBLISH", "data": {"records": [
                {"id": "n3", "fields": {"name": "as a result", "team": "red"}, "highlight": {}},
            ]}}),
        )
        .expect("sent");
    let reply = loop {
        let next = service.next("").await;
        if next["id"] == "p3" {
            break next;
        }
    };
    assert_eq!(reply["data"]["unindexed_fields"], json!([]), "{reply}");
    let append = client.recv().await;
    let results = append["items"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{append}");
    assert_eq!(results[0]["id"], "n3");
    assert_eq!(results[0]["fields"]["name"], "as a result");

    // A PUBLISH without records is refused, in words.
    service
        .send
        .send(json!({"op": 0, "id": "p2", "event": "PUBLISH", "data": {"rows": []}}))
        .expect("sent");
    let refused = service.next("ERROR").await;
    assert_eq!(refused["id"], "p2");
    assert_eq!(refused["data"]["code"], "invalid_publish");
    service.stop();
}

#[tokio::test]
async fn a_service_cannot_declare_datasources_without_bound() {
    let server = server();
    let most = tributary::services::MAX_REMOTE_DATASOURCES;
    for i in 0..most {
        let service = FakeService::start_as(
            &server,
            TOKEN,
            json!({"id": format!("ds{i}")}),
            Behaviour::Hang,
        )
        .await
        .expect("identified");
        service.stop();
    }
    let refused = FakeService::start_as(&server, TOKEN, json!({"id": "one-more"}), Behaviour::Hang)
        .await
        .err()
        .expect("refused");
    assert!(refused.contains("its most"), "{refused}");
    // Those declared stay, served again by whoever identifies with them.
    let again = FakeService::start_as(&server, TOKEN, json!({"id": "ds0"}), Behaviour::Hang).await;
    assert!(again.is_ok());
}

/// The `EXPAND_RECEIVE` of `crm` and the end of the request.
async fn expand_crm(client: &mut Client, id: &str) -> serde_json::Value {
    client
        .send(json!({"type": "EXPAND_REQUEST", "request-id": id, "datasources": ["crm"],
                     "values": [{"field": "team", "value": "red"}], "fields": ["address.city", "name"], "size": 2}))
        .await;
    let messages = client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED")
        .await;
    messages
        .into_iter()
        .find(|m| m["type"] == "EXPAND_RECEIVE" || m["type"] == "ERROR")
        .unwrap_or_default()
}

#[tokio::test]
async fn a_service_that_declares_expand_answers_expansions_itself() {
    let server = server();
    let mut declared = declaration();
    declared["expand"] = json!(true);
    let mut service =
        FakeService::start_as(&server, TOKEN, declared, Behaviour::Serve { chunk: 10 })
            .await
            .expect("identified");
    let mut client = until_listed(&server, "crm").await;
    let ask = tokio::spawn(async move {
        let answer = expand_crm(&mut client, "x").await;
        (client, answer)
    });
    let event = service.next("EXPAND").await;
    assert_eq!(
        event["data"]["selected"][0]["value"],
        json!({"field": "team", "value": "red"})
    );
    assert_eq!(event["data"]["selected"][0]["fields"], json!(["team"]));
    assert_eq!(event["data"]["fields"], json!(["address.city", "name"]));
    assert_eq!(event["data"]["size"], 2);
    assert_eq!(event["data"]["mode"], "count");
    // More than was asked: a third city, a field nobody asked for, a
    // connection to a value it did not return.
    let red = json!({"field": "team", "value": "red"});
    service
        .send
        .send(json!({"op": 5, "id": event["id"], "data": {
            "vertices": [
                {"field": "address.city", "value": "Ghent", "doc_count": 40, "weight": 40.0},
                {"field": "address.city", "value": "Utrecht", "doc_count": 20, "weight": 20.0},
                {"field": "address.city", "value": "Paris", "doc_count": 1, "weight": 1.0},
                {"field": "secret", "value": "x", "doc_count": 1, "weight": 1.0}],
            "connections": [
                {"from": red, "to": {"field": "address.city", "value": "Ghent"}, "doc_count": 40},
                {"from": red, "to": {"field": "address.city", "value": "Paris"}, "doc_count": 1}],
            "method": "the service's index"}}))
        .expect("reply");
    let (_client, answer) = ask.await.expect("the client");
    assert_eq!(answer["type"], "EXPAND_RECEIVE", "{answer}");
    assert_eq!(answer["method"], "the service's index");
    let values: Vec<&str> = answer["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(values, ["Ghent", "Utrecht"], "{answer}");
    assert_eq!(
        answer["connections"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    service.stop();
}

#[tokio::test]
async fn without_expand_a_remote_datasource_is_counted_from_a_sample() {
    let server = server();
    let service = FakeService::start(&server, Behaviour::Serve { chunk: 10 }).await;
    let mut client = until_listed(&server, "crm").await;
    let answer = expand_crm(&mut client, "y").await;
    assert_eq!(answer["type"], "EXPAND_RECEIVE", "{answer}");
    assert!(
        answer["method"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sample"),
        "{answer}"
    );
    // The service's records: the red ones (even ids), their cities.
    let reds: Vec<usize> = (0..RECORDS).filter(|i| i % 2 == 0).collect();
    let ghent = reds.iter().filter(|i| *i % 3 != 0).count() as u64;
    let utrecht = reds.len() as u64 - ghent;
    let cities: Vec<(String, u64)> = answer["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["field"] == "address.city")
        .map(|v| {
            (
                v["value"].as_str().unwrap_or_default().to_owned(),
                v["doc_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        cities,
        [("Ghent".to_owned(), ghent), ("Utrecht".to_owned(), utrecht)],
        "{answer}"
    );
    service.stop();
}

#[tokio::test]
async fn a_bad_expand_reply_is_that_datasources_error() {
    let server = server();
    let mut declared = declaration();
    declared["expand"] = json!(true);
    let mut service =
        FakeService::start_as(&server, TOKEN, declared, Behaviour::Serve { chunk: 10 })
            .await
            .expect("identified");
    let client = until_listed(&server, "crm").await;
    let ask = tokio::spawn(async move {
        let mut client = client;
        let first = expand_crm(&mut client, "a").await;
        let second = expand_crm(&mut client, "b").await;
        (first, second)
    });
    // Not an expansion, then a refusal in words.
    let event = service.next("EXPAND").await;
    service
        .send
        .send(json!({"op": 5, "id": event["id"], "data": {"vertices": "many"}}))
        .expect("reply");
    let event = service.next("EXPAND").await;
    service
        .send
        .send(json!({"op": 5, "id": event["id"], "data": {"error": {"kind": "bad_query", "message": "no such team"}}}))
        .expect("reply");
    let (first, second) = ask.await.expect("answers");
    assert_eq!(first["type"], "ERROR", "{first}");
    assert_eq!(first["error"]["code"], "datasource_failed", "{first}");
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid reply"),
        "{first}"
    );
    assert_eq!(second["error"]["code"], "bad_query", "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no such team"),
        "{second}"
    );
    service.stop();
}

#[tokio::test]
async fn tokens_serve_only_the_datasources_they_list() {
    let mut settings = settings(tributary::config::demo_datasources());
    for (name, token, datasources) in [
        ("svc1", "svc1-token-1", Some(vec!["remote1".to_owned()])),
        ("svcany", "svcany-token-1", None),
        ("dev", "dev-token-12", Some(vec!["*".to_owned()])),
    ] {
        settings.services.insert(
            name.into(),
            ServiceSettings {
                token: token.into(),
                group: None,
                datasources,
            },
        );
    }
    let server = start_with(settings);
    let real = FakeService::start_as(
        &server,
        "svc1-token-1",
        json!({"id": "remote1"}),
        Behaviour::Hang,
    )
    .await;
    assert!(real.is_ok());
    // A token without a list serves nothing: not another's datasource, not a new one.
    for id in ["remote1", "fresh"] {
        let refused = FakeService::start_as(
            &server,
            "svcany-token-1",
            json!({"id": id}),
            Behaviour::Hang,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("svcany served {id}"));
        assert!(refused.contains("its token lists none"), "{refused}");
    }
    // `*` serves any id no other token lists, never a listed one.
    let refused = FakeService::start_as(
        &server,
        "dev-token-12",
        json!({"id": "remote1"}),
        Behaviour::Hang,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        refused.contains("may not serve datasource `remote1`"),
        "{refused}"
    );
    let dev = FakeService::start_as(
        &server,
        "dev-token-12",
        json!({"id": "scratch"}),
        Behaviour::Hang,
    )
    .await;
    assert!(dev.is_ok());
}

#[tokio::test]
async fn the_servers_request_ids_cannot_be_guessed() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Hang).await;
    let (mut client, _) = Client::ready(&server).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        client
            .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": n}))
            .await;
        let search = service.next("SEARCH").await;
        ids.push(search["id"].as_str().expect("a string id").to_owned());
    }
    // `crm-<node>-<sequence>-<128 random bits>`: consecutive requests share
    // no predictable part beyond the sequence.
    let random = |id: &str| id.rsplit('-').next().unwrap_or_default().to_owned();
    for id in &ids {
        let bits = random(id);
        assert_eq!(bits.len(), 32, "{id}");
        assert!(bits.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(random(&ids[0]), random(&ids[1]));
}

#[tokio::test]
async fn a_datasource_no_service_serves_is_released_after_the_linger() {
    let mut settings = settings(tributary::config::demo_datasources());
    settings.limits.remote_linger = Duration::from_millis(300);
    settings
        .services
        .insert("crm".into(), serving(TOKEN, &["crm"]));
    let server = start_with(settings);
    let (mut open, _) = Client::ready(&server).await;
    let service = FakeService::start(&server, Behaviour::Serve { chunk: 5 }).await;
    let joined = open.recv().await;
    assert!(joined.to_string().contains("\"crm\""), "{joined}");
    // Back within the linger: still the same datasource, never removed.
    service.stop();
    let service = FakeService::start(&server, Behaviour::Serve { chunk: 5 }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, initial) = Client::ready(&server).await;
    assert!(initial.to_string().contains("\"crm\""), "{initial}");
    // Gone for longer: removed, and every client is told.
    service.stop();
    let changed = open
        .recv_until(|m| m["type"] == "DATASOURCES_CHANGED" && !m.to_string().contains("\"crm\""))
        .await;
    assert!(!changed.is_empty());
    let (_, initial) = Client::ready(&server).await;
    assert!(!initial.to_string().contains("\"crm\""), "{initial}");
    // Served again: listed again.
    let _again = FakeService::start(&server, Behaviour::Serve { chunk: 5 }).await;
    let back = open.recv().await;
    assert!(back.to_string().contains("\"crm\""), "{back}");
}

#[tokio::test]
async fn a_bad_reply_is_described_in_json_terms_not_the_servers_types() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Hang).await;
    let (mut client, _) = Client::ready(&server).await;
    for (n, data) in [
        json!({"total": "many", "results": [], "done": true}),
        json!([1, 2]),
        json!({"total": 1, "results": {"id": 1}, "done": true}),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad{n}");
        client
            .send(json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "query": "*", "request-id": id}))
            .await;
        let search = service.next("SEARCH").await;
        service
            .send
            .send(json!({"op": 5, "id": search["id"], "data": data}))
            .expect("the service runs");
        let messages = until_completed(&mut client, &id).await;
        let errors = errors_of(&messages);
        let message = errors[0]["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("invalid reply"), "{message}");
        for internal in ["SearchReply", "struct", "u64", "a sequence", "a map"] {
            assert!(!message.contains(internal), "{message}");
        }
    }
}

/// The next value on `channel`, skipping other channels' data.
async fn next_on(client: &mut Client, channel: &str) -> serde_json::Value {
    loop {
        let message = client.recv().await;
        if message["type"] == "DATA" && message["c"] == channel {
            return message["d"][1].clone();
        }
    }
}

/// A service that declares `"health": true` is asked `HEALTH` and reports
/// its own health, as Grafana's `CheckHealth` does: its verdict and message
/// become the datasource's `/healthz` and `status:`, the latency it measured
/// its `latency:`. A service that does not declare it is never asked.
#[tokio::test]
async fn a_service_reports_its_own_health_and_latency() {
    let mut settings = crm_settings(Duration::from_secs(10));
    settings.live.health_interval = Duration::from_millis(200);
    let server = start_with(settings);
    let mut declared = declaration();
    declared["health"] = json!(true);
    let mut service =
        FakeService::start_as(&server, TOKEN, declared, Behaviour::Serve { chunk: 10 })
            .await
            .expect("identified");
    // The service's verdict, as it would compute it from its backend.
    let verdict = std::sync::Arc::new(std::sync::Mutex::new(
        json!({"ok": false, "message": "the CRM database does not answer"}),
    ));
    let answering = {
        let verdict = verdict.clone();
        let send = service.send.clone();
        tokio::spawn(async move {
            loop {
                let event = service.next("HEALTH").await;
                let reply = verdict.lock().unwrap().clone();
                if send
                    .send(json!({"op": 5, "id": event["id"], "data": reply}))
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let mut client = until_listed(&server, "crm").await;
    client
        .send(json!({"type": "SUBSCRIBE", "channels": ["status:crm", "latency:crm"]}))
        .await;
    let started = std::time::Instant::now();
    while next_on(&mut client, "status:crm").await != json!(false) {
        assert!(started.elapsed() < PATIENCE, "never reported unhealthy");
    }
    let (_, health) = http_get(server.addr, "/healthz").await;
    assert!(
        health.contains("the CRM database does not answer"),
        "{health}"
    );
    *verdict.lock().unwrap() = json!({"ok": true, "latency_ms": 1234});
    while next_on(&mut client, "latency:crm").await != json!(1234) {
        assert!(started.elapsed() < PATIENCE, "its latency never arrived");
    }
    assert_eq!(next_on(&mut client, "status:crm").await, json!(true));
    // A reply that says nothing about health is named, not taken for "ok".
    *verdict.lock().unwrap() = json!({"fine": "yes"});
    let (_, health) = loop {
        let (code, health) = http_get(server.addr, "/healthz").await;
        if health.contains("must say") {
            break (code, health);
        }
        assert!(started.elapsed() < PATIENCE, "{health}");
    };
    assert!(health.contains("true or false"), "{health}");
    answering.abort();

    // A seed service (no `"health"`) is never asked: connected is healthy.
    let server = server_with(Duration::from_secs(10));
    let mut seed = FakeService::start(&server, Behaviour::Serve { chunk: 10 }).await;
    let _client = until_listed(&server, "crm").await;
    let (_, health) = http_get(server.addr, "/healthz").await;
    assert!(!health.contains("no service serves"), "{health}");
    seed.send
        .send(json!({"op": 3, "id": "still-there"}))
        .expect("ping");
    loop {
        let message = seed.next("").await;
        assert_ne!(message["event"], "HEALTH", "{message}");
        if message["op"] == 4 {
            break;
        }
    }
    seed.stop();
}

/// Every SEARCH carries the query as the server's parser reads it
/// (`parsed`, docs/protocol.md), or the parser's error, so plugins in any
/// language evaluate one grammar.
#[tokio::test]
async fn a_search_carries_the_parsed_query() {
    let server = server();
    let mut service = FakeService::start(&server, Behaviour::Serve { chunk: 10 }).await;
    let mut client = until_listed(&server, "crm").await;
    let _ = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "request-id": "q",
               "query": "team:red AND -name:\"ada lovelace\"~1", "size": 5}),
    )
    .await;
    let search = service.next("SEARCH").await;
    assert_eq!(
        search["data"]["query"],
        "team:red AND -name:\"ada lovelace\"~1"
    );
    assert_eq!(
        search["data"]["parsed"],
        json!({"version": 1, "query": {"type": "bool", "clauses": [
            {"occur": "must", "query": {"type": "term", "field": "team", "text": "red"}},
            {"occur": "must_not", "query": {"type": "phrase", "field": "name", "text": "ada lovelace", "slop": 1}},
        ]}}),
        "{search}"
    );
    let _ = ask(
        &mut client,
        json!({"type": "ITEMS_REQUEST", "datasources": ["crm"], "request-id": "bad",
               "query": "(team:red", "size": 5}),
    )
    .await;
    let search = service.next("SEARCH").await;
    let error = search["data"]["parsed"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("missing closing parenthesis"), "{search}");
    service.stop();
}
