//! The socket for services (`/ws/services`, Damon's framing) over real
//! sockets: identification with service tokens, PING/PONG, events routed
//! by intent and delivered as sent, replies routed back to the sender, and
//! every bad input answered with an `ERROR` event (or, before `IDENTIFY`,
//! `DISCONNECT`) and nothing lost.

use crate::common;

use common::*;
use serde_json::{json, Value};
use tributary::config::ServiceSettings;
use tributary::http::ServerHandle;

fn server() -> ServerHandle {
    let mut settings = settings(tributary::config::demo_datasources());
    for (name, token, group) in [
        ("crm", "crm-token-1", Some("datasources")),
        ("intel", "intel-token-1", Some("datasources")),
        ("audit", "audit-token-1", None),
    ] {
        settings.services.insert(
            name.into(),
            ServiceSettings {
                token: token.into(),
                group: group.map(str::to_owned),
                datasources: None,
            },
        );
    }
    // Client tokens do not apply to services (they identify in-band).
    settings.auth.tokens.insert(
        "analyst".into(),
        serde_json::from_value(json!({"token": "analyst-token-1"})).expect("a token"),
    );
    start_with(settings)
}

async fn connect(server: &ServerHandle) -> Client {
    Client::connect_url(&format!("ws://{}/ws/services", server.addr)).await
}

/// Connects and identifies; returns the connection id the server gave.
async fn identified(server: &ServerHandle, token: &str) -> (Client, String) {
    let mut client = connect(server).await;
    client
        .send(json!({"op": 1, "id": "hello", "data": {"token": token}}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["op"], 5, "{reply}");
    assert_eq!(reply["id"], "hello", "{reply}");
    let connection = reply["data"]["connection"]
        .as_str()
        .expect("a connection id")
        .to_owned();
    (client, connection)
}

/// Nothing else has arrived: a PING is answered first.
async fn nothing_more(client: &mut Client) {
    client.send(json!({"op": 3, "id": "check"})).await;
    let next = client.recv().await;
    assert_eq!(
        next,
        json!({"id": "check", "op": 4}),
        "nothing else came first"
    );
}

#[tokio::test]
async fn a_service_identifies_and_pings() {
    let server = server();
    let mut client = connect(&server).await;
    client
        .send(json!({"op": 1, "id": 7, "data": {"token": "crm-token-1"}}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["op"], 5);
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["data"]["name"], "crm");
    assert_eq!(reply["data"]["group"], "datasources");
    assert!(reply["data"]["connection"].is_string(), "{reply}");
    client
        .send(json!({"op": 3, "id": "70653cb0-5f6d-41fe-acbf-ea8f37a73034"}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"id": "70653cb0-5f6d-41fe-acbf-ea8f37a73034", "op": 4})
    );
    // A service without a group is its own group.
    let (mut audit, _) = identified(&server, "audit-token-1").await;
    audit.send(json!({"op": 3})).await;
    assert_eq!(audit.recv().await, json!({"op": 4}));
}

#[tokio::test]
async fn anything_but_a_good_identify_disconnects() {
    let server = server();
    let cases = [
        (
            json!({"op": 1, "data": {"token": "wrong-token-1"}}),
            "wrong token",
        ),
        (json!({"op": 1, "data": {}}), "data.token"),
        (json!({"op": 1}), "data.token"),
        (
            json!({"op": 0, "event": "INFO", "intent": {"target": "GLOBAL"}}),
            "identify first",
        ),
        (json!({"op": 3}), "identify first"),
        (json!({"event": "INFO"}), "`op` is required"),
        // A client token is not a service token.
        (
            json!({"op": 1, "data": {"token": "analyst-token-1"}}),
            "wrong token",
        ),
    ];
    for (message, reason) in cases {
        let mut client = connect(&server).await;
        client.send(message.clone()).await;
        let answer = client.recv().await;
        assert_eq!(answer["op"], 2, "{message}: {answer}");
        let said = answer["data"]["reason"].as_str().unwrap_or_default();
        assert!(said.contains(reason), "{message}: {answer}");
        assert!(
            matches!(client.closed().await, Closed::Code(1008)),
            "{message}: closed with 1008"
        );
    }
    let mut client = connect(&server).await;
    client.send_text("not json").await;
    assert_eq!(client.recv().await["op"], 2);
}

#[tokio::test]
async fn events_go_where_their_intent_says_as_sent() {
    let server = server();
    let (mut crm, crm_id) = identified(&server, "crm-token-1").await;
    let (mut intel, intel_id) = identified(&server, "intel-token-1").await;
    let (mut audit, _) = identified(&server, "audit-token-1").await;

    // GLOBAL: every other identified service.
    let global = json!({"id": "g1", "op": 0, "event": "INFO", "data": {"requester": crm_id},
                        "intent": {"target": "GLOBAL", "identifier": null}});
    crm.send(global.clone()).await;
    assert_eq!(intel.recv().await, global);
    assert_eq!(audit.recv().await, global);
    // No intent at all is GLOBAL too.
    let bare = json!({"op": 0, "event": "HELLO"});
    audit.send(bare.clone()).await;
    assert_eq!(crm.recv().await, bare);
    assert_eq!(intel.recv().await, bare);

    // GROUP: the services of a group (not the sender).
    let group = json!({"id": "70653cb0", "op": 0, "event": "INFO", "data": [1, 2],
                       "intent": {"target": "GROUP", "identifier": "datasources"}});
    audit.send(group.clone()).await;
    assert_eq!(crm.recv().await, group);
    assert_eq!(intel.recv().await, group);

    // DIRECT: by service name, or by connection id.
    let direct = json!({"id": "d1", "op": 0, "event": "LOOKUP", "data": {"query": "ann"},
                        "intent": {"target": "DIRECT", "identifier": "intel"}});
    crm.send(direct.clone()).await;
    assert_eq!(intel.recv().await, direct);
    let by_id = json!({"id": "d2", "op": 0, "event": "DESCRIBE",
                       "intent": {"target": "DIRECT", "identifier": intel_id}});
    crm.send(by_id.clone()).await;
    assert_eq!(intel.recv().await, by_id);

    // A REPLY with an event's id goes back to whoever sent the event.
    let reply = json!({"id": "d1", "op": 5, "data": {"total": 1, "results": [], "done": true}});
    intel.send(reply.clone()).await;
    assert_eq!(crm.recv().await, reply);
    let reply = json!({"id": "70653cb0", "op": 5, "data": "from intel"});
    intel.send(reply.clone()).await;
    assert_eq!(audit.recv().await, reply);

    nothing_more(&mut crm).await;
    nothing_more(&mut intel).await;
    nothing_more(&mut audit).await;
    // Counted apart from live data: 3 identify replies, 10 routed events and replies, 3 pongs.
    let (_, exposition) = http_get(server.addr, "/metrics").await;
    assert_eq!(
        metric(&exposition, "tributary_service_messages_total"),
        Some(16.0),
        "{exposition}"
    );
    assert_eq!(
        metric(&exposition, "tributary_live_deliveries_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn bad_messages_get_an_error_event_and_the_connection_stays() {
    let server = server();
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    let (mut intel, _) = identified(&server, "intel-token-1").await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"id": 1, "op": 0, "event": "X", "intent": {"target": "SOMEWHERE"}}),
            "invalid_intent",
        ),
        (
            json!({"id": 2, "op": 0, "event": "X", "intent": {"target": "GROUP"}}),
            "invalid_intent",
        ),
        (
            json!({"id": 3, "op": 0, "event": "X", "intent": {"target": "DIRECT", "identifier": "nobody"}}),
            "no_receiver",
        ),
        (
            json!({"id": 4, "op": 0, "event": "X", "intent": {"target": "GROUP", "identifier": "empty"}}),
            "no_receiver",
        ),
        (
            json!({"id": "never-sent", "op": 5, "data": {}}),
            "unknown_reply",
        ),
        (json!({"op": 5, "data": {}}), "unknown_reply"),
        (json!({"id": 6, "op": 9}), "unknown_op"),
        (
            json!({"id": 7, "op": 1, "data": {"token": "crm-token-1"}}),
            "already_identified",
        ),
        (json!({"id": 8}), "invalid_message"),
        (json!({"op": "0"}), "invalid_message"),
        (json!({"op": 0, "intent": "GLOBAL"}), "invalid_message"),
    ];
    for (message, code) in cases {
        crm.send(message.clone()).await;
        let answer = crm.recv().await;
        assert_eq!(answer["op"], 0, "{message}: {answer}");
        assert_eq!(answer["event"], "ERROR", "{message}: {answer}");
        assert_eq!(answer["data"]["code"], code, "{message}: {answer}");
        assert!(answer["data"]["message"].is_string(), "{answer}");
        if message.get("id").is_some() && code != "invalid_message" {
            assert_eq!(answer["id"], message["id"], "{answer}");
        }
    }
    for text in ["not json", "[1, 2]", "\"op\"", "{\"op\": 0"] {
        crm.send_text(text).await;
        let answer = crm.recv().await;
        assert_eq!(
            answer["data"]["code"], "invalid_message",
            "{text}: {answer}"
        );
    }
    // Nothing reached the other service, and both still work.
    nothing_more(&mut intel).await;
    nothing_more(&mut crm).await;
}

#[tokio::test]
async fn a_service_that_leaves_is_no_longer_routed_to() {
    let server = server();
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    let (mut intel, _) = identified(&server, "intel-token-1").await;
    let ask = json!({"id": "q1", "op": 0, "event": "LOOKUP",
                     "intent": {"target": "DIRECT", "identifier": "crm"}});
    intel.send(ask.clone()).await;
    assert_eq!(crm.recv().await, ask);
    // intel leaves (DISCONNECT) before crm replies.
    intel.send(json!({"op": 2})).await;
    assert!(matches!(intel.closed().await, Closed::Code(1000)));
    crm.send(json!({"id": "q1", "op": 5, "data": {"done": true}}))
        .await;
    let answer = crm.recv().await;
    assert_eq!(answer["data"]["code"], "unknown_reply", "{answer}");
    crm.send(json!({"id": "q2", "op": 0, "event": "X",
                    "intent": {"target": "DIRECT", "identifier": "intel"}}))
        .await;
    assert_eq!(crm.recv().await["data"]["code"], "no_receiver");
    // The same service may connect again.
    let (mut again, _) = identified(&server, "intel-token-1").await;
    let hello =
        json!({"op": 0, "event": "BACK", "intent": {"target": "DIRECT", "identifier": "crm"}});
    again.send(hello.clone()).await;
    assert_eq!(crm.recv().await, hello);
}

#[tokio::test]
async fn the_client_sockets_limits_apply() {
    let server = server();
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    let huge = format!(
        r#"{{"op":0,"data":"{}"}}"#,
        "x".repeat(tributary::config::Limits::default().max_message_bytes + 1)
    );
    crm.send_text(&huge).await;
    assert!(matches!(crm.closed().await, Closed::Code(4420)));
    // A browser page on another origin cannot open it.
    let refused = connect_with(
        &format!("ws://{}/ws/services", server.addr),
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
}

/// The error event a service got: its `data.code`.
async fn error_code(client: &mut Client) -> Value {
    let event = client.recv().await;
    assert_eq!(event["event"], "ERROR", "{event}");
    event["data"]["code"].clone()
}

#[tokio::test]
async fn services_cannot_forge_the_servers_events_or_take_others_replies() {
    let server = server();
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    let (mut intel, _) = identified(&server, "intel-token-1").await;
    let (mut audit, _) = identified(&server, "audit-token-1").await;

    // The server's own requests, in any case, are refused and reach no one.
    for event in ["SEARCH", "CANCEL", "EXPAND", "FIELDS", "search"] {
        crm.send(json!({"id": format!("f-{event}"), "op": 0, "event": event,
                        "data": {"query": "*", "id": "crm-node-1"},
                        "intent": {"target": "DIRECT", "identifier": "intel"}}))
            .await;
        assert_eq!(error_code(&mut crm).await, "forbidden_event", "{event}");
    }
    crm.send(json!({"op": 0, "event": "CANCEL", "data": {"id": "x"}}))
        .await;
    assert_eq!(error_code(&mut crm).await, "forbidden_event");
    nothing_more(&mut intel).await;
    nothing_more(&mut audit).await;

    // crm asks intel with id E1; audit reuses E1 towards intel: refused,
    // and intel's reply goes to crm, never to audit.
    let asked = json!({"id": "E1", "op": 0, "event": "LOOKUP", "data": {"who": "ann"},
                       "intent": {"target": "DIRECT", "identifier": "intel"}});
    crm.send(asked.clone()).await;
    assert_eq!(intel.recv().await, asked);
    audit
        .send(
            json!({"id": "E1", "op": 0, "event": "LOOKUP", "data": {"who": "bob"},
                     "intent": {"target": "DIRECT", "identifier": "intel"}}),
        )
        .await;
    assert_eq!(error_code(&mut audit).await, "duplicate_id");
    let reply = json!({"id": "E1", "op": 5, "data": {"private": "rows"}});
    intel.send(reply.clone()).await;
    assert_eq!(crm.recv().await, reply);
    nothing_more(&mut audit).await;
    // A reply with that id from a service the event never went to is
    // nobody's: refused, and crm gets nothing more.
    audit
        .send(json!({"id": "E1", "op": 5, "data": {"forged": true}}))
        .await;
    assert_eq!(error_code(&mut audit).await, "unknown_reply");
    nothing_more(&mut crm).await;
    // The same id towards another receiver is audit's own.
    let own = json!({"id": "E1", "op": 0, "event": "LOOKUP",
                     "intent": {"target": "DIRECT", "identifier": "crm"}});
    audit.send(own.clone()).await;
    assert_eq!(crm.recv().await, own);
    let answer = json!({"id": "E1", "op": 5, "data": "for audit"});
    crm.send(answer.clone()).await;
    assert_eq!(audit.recv().await, answer);
    nothing_more(&mut crm).await;
}

#[tokio::test]
async fn events_awaiting_replies_are_bounded_per_service_and_freed_when_it_leaves() {
    let server = server();
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    let (mut intel, _) = identified(&server, "intel-token-1").await;
    // Ids are small: a 60 KB id is refused before it is kept or sent on.
    let long_id = "i".repeat(60_000);
    crm.send(json!({"id": long_id, "op": 0, "event": "LOOKUP",
                    "intent": {"target": "DIRECT", "identifier": "intel"}}))
        .await;
    assert_eq!(error_code(&mut crm).await, "invalid_id");
    nothing_more(&mut intel).await;

    // More events than one service may have awaiting: its oldest are forgotten.
    let most = tributary::services::AWAITING_PER_CONNECTION;
    for n in 0..most + 10 {
        crm.send(json!({"id": format!("q{n}"), "op": 0, "event": "LOOKUP",
                        "intent": {"target": "DIRECT", "identifier": "intel"}}))
            .await;
        assert_eq!(intel.recv().await["id"], format!("q{n}"));
    }
    intel.send(json!({"id": "q0", "op": 5, "data": 0})).await;
    assert_eq!(error_code(&mut intel).await, "unknown_reply");
    let last = format!("q{}", most + 9);
    intel.send(json!({"id": last, "op": 5, "data": 1})).await;
    assert_eq!(crm.recv().await["data"], 1);

    // The sender leaves: what awaited its replies is gone with it.
    crm.send(json!({"id": "bye", "op": 0, "event": "LOOKUP",
                    "intent": {"target": "DIRECT", "identifier": "intel"}}))
        .await;
    assert_eq!(intel.recv().await["id"], "bye");
    crm.send(json!({"op": 2})).await;
    let _ = crm.closed().await;
    let (mut crm, _) = identified(&server, "crm-token-1").await;
    intel
        .send(json!({"id": "bye", "op": 5, "data": "late"}))
        .await;
    assert_eq!(error_code(&mut intel).await, "unknown_reply");
    nothing_more(&mut crm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_flooding_another_is_refused_or_closed_never_its_victim() {
    // Measures the whole process: alone in one.
    if rerun_alone("services::a_service_flooding_another_is_refused_or_closed_never_its_victim") {
        return;
    }
    let server = server();
    let (mut attacker, _) = identified(&server, "crm-token-1").await;
    // The victim reads nothing while the flood runs.
    let (mut victim, _) = identified(&server, "intel-token-1").await;
    let before = rss_bytes();
    let filler = "x".repeat(60_000);
    let mut sent = 0;
    let mut attacker_closed = false;
    for n in 0..2_000 {
        let event = json!({"id": format!("flood{n}"), "op": 0, "event": "BULK", "data": filler,
                           "intent": {"target": "DIRECT", "identifier": "intel"}});
        if attacker
            .try_send_raw(tokio_tungstenite::tungstenite::Message::text(
                event.to_string(),
            ))
            .await
            .is_err()
        {
            attacker_closed = true;
            break;
        }
        sent += 1;
    }
    // The attacker was told the victim is busy, or closed for its rate.
    let mut busy = 0;
    if !attacker_closed {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(5), attacker.next_event())
                .await
            {
                Ok(Event::Json(message)) if message["data"]["code"] == "receiver_busy" => busy += 1,
                Ok(Event::Json(_)) => {}
                Ok(_) => {
                    attacker_closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert!(
        busy > 0 || attacker_closed,
        "sent {sent}: neither refused nor closed"
    );
    // The victim is still connected: it reads what reached it, then
    // answers a PING.
    victim.send(json!({"op": 3, "id": "still-here"})).await;
    loop {
        let message = victim.recv().await;
        if message["event"] == "BULK" {
            continue;
        }
        assert_eq!(message, json!({"id": "still-here", "op": 4}));
        break;
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "grew {} MiB", grown >> 20);
}
