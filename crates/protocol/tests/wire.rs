//! The wire format: seed messages decode, every server message has the seed's
//! shape, and what the server encodes a client decodes again.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tributary_protocol::events::ServerEvent;
use tributary_protocol::*;

#[test]
fn decodes_the_seed_items_request() {
    let msg = decode(
        r##"{"type":"ITEMS_REQUEST","datasources":["twitter"],"query":"wilders","from":0,"size":500,"color":"#de79f2"}"##,
    );
    assert_eq!(
        msg,
        Ok(ClientMessage::Items(ItemsRequest {
            datasources: vec!["twitter".into()],
            query: "wilders".into(),
            from: 0,
            size: 500,
            color: Some("#de79f2".into()),
            request_id: None,
            live: false,
            resume: None,
        }))
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let msg = decode(
        r##"{"type":"ITEMS_REQUEST","datasources":["t"],"query":"x","fields":["a"],"advancedQuery":{"x":1}}"##,
    );
    assert!(
        matches!(msg, Ok(ClientMessage::Items(ref r)) if r.size == DEFAULT_SIZE),
        "{msg:?}"
    );
    let msg = decode(r#"{"type":"FIELDS_REQUEST","datasources":["t"],"extra":true}"#);
    assert!(matches!(msg, Ok(ClientMessage::Fields(_))), "{msg:?}");
}

#[test]
fn a_misspelled_required_field_is_named() {
    let Err(DecodeError::Invalid(report)) =
        decode(r#"{"type":"ITEMS_REQUEST","datasource":["t"],"query":"x"}"#)
    else {
        panic!("expected an error");
    };
    assert!(
        report
            .message
            .contains("did you mean `datasources` instead of `datasource`"),
        "{}",
        report.message
    );
}

#[test]
fn non_objects_are_invalid_payloads_but_bad_json_is_an_error() {
    assert_eq!(decode("[1,2]"), Err(DecodeError::NotAnObject));
    assert_eq!(decode("42"), Err(DecodeError::NotAnObject));
    match decode("{nope") {
        Err(DecodeError::Invalid(r)) => assert_eq!(r.code, ErrorCode::InvalidJson),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn errors_carry_the_request_context() {
    let Err(DecodeError::Invalid(report)) =
        decode(r##"{"type":"ITEMS_REQUEST","query":"x","color":"#fff","request-id":7}"##)
    else {
        panic!("expected an error");
    };
    assert_eq!(report.echo.query.as_deref(), Some("x"));
    assert_eq!(report.echo.color.as_deref(), Some("#fff"));
    assert_eq!(report.echo.request_id, Some(RequestId::Number(7)));
    assert!(report.message.contains("datasources"), "{}", report.message);
}

fn one_item() -> Item {
    let mut fields = Map::new();
    fields.insert("user.screen_name".into(), Value::from("x"));
    Item::from_fields("1", &fields)
}

#[test]
fn items_receive_has_the_seed_shape() {
    let echo = Echo {
        query: Some("wilders".into()),
        color: Some("#de79f2".into()),
        request_id: None,
    };
    let frame = ServerMessage::Items {
        echo: &echo,
        server: "twitter",
        total: 100,
        from: 0,
        results: &[one_item()],
    }
    .encode();
    let v: Value = serde_json::from_str(frame.as_str()).unwrap();
    assert_eq!(v["type"], "ITEMS_RECEIVE");
    assert_eq!(v["items"]["server"], "twitter");
    assert_eq!(v["items"]["query"], "wilders");
    assert_eq!(v["items"]["total"], 100);
    assert_eq!(v["items"]["color"], "#de79f2");
    assert_eq!(v["items"]["results"][0]["id"], "1");
    assert_eq!(v["items"]["results"][0]["fields"]["user.screen_name"], "x");
    assert_eq!(v["items"]["results"][0]["highlight"], Value::Null);
    assert!(v.get("request-id").is_none());
}

#[test]
fn what_the_server_encodes_a_client_decodes() {
    let echo = Echo {
        query: Some("q".into()),
        color: None,
        request_id: Some(RequestId::Text("r1".into())),
    };
    let items = ServerMessage::Items {
        echo: &echo,
        server: "s",
        total: 7,
        from: 3,
        results: &[one_item()],
    }
    .encode();
    match ServerEvent::decode(items.as_str()).unwrap() {
        ServerEvent::Items { request_id, items } => {
            assert_eq!(request_id, Some(RequestId::Text("r1".into())));
            assert_eq!((items.total, items.from, items.results.len()), (7, 3, 1));
            assert_eq!(items.results[0].field_map()["user.screen_name"], "x");
        }
        other => panic!("unexpected {other:?}"),
    }
    let report = ErrorReport::new(ErrorCode::BadQuery, "nope")
        .echoing(echo.clone())
        .about("s");
    let error = ServerMessage::Error(&report).encode();
    let v: Value = serde_json::from_str(error.as_str()).unwrap();
    assert_eq!(v["error"]["code"], "bad_query");
    assert_eq!(v["error"]["datasource"], "s");
    assert_eq!(v["error"]["color"], Value::Null);
    assert_eq!(v["request-id"], "r1");
    match ServerEvent::decode(error.as_str()).unwrap() {
        ServerEvent::Error { error, .. } => assert_eq!(error.code, "bad_query"),
        other => panic!("unexpected {other:?}"),
    }
    let mut outcomes = BTreeMap::new();
    outcomes.insert(
        "s".to_owned(),
        DatasourceOutcome {
            took_ms: 1,
            total: Some(7),
            error: None,
        },
    );
    let id = RequestId::Number(9);
    let done = ServerMessage::RequestCompleted {
        request_id: &id,
        outcomes: &outcomes,
    }
    .encode();
    match ServerEvent::decode(done.as_str()).unwrap() {
        ServerEvent::RequestCompleted {
            request_id,
            datasources,
        } => {
            assert_eq!(request_id, id);
            assert_eq!(datasources, outcomes);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn client_messages_encode_as_they_decode() {
    let messages = [
        ClientMessage::Items(ItemsRequest {
            datasources: vec!["a".into(), "b".into()],
            query: "x AND y".into(),
            from: 5,
            size: 10,
            color: Some("#123456".into()),
            request_id: Some(RequestId::Text("q".into())),
            live: true,
            resume: Some(
                [(
                    "a".to_string(),
                    Position {
                        offset: 7,
                        epoch: "e1".into(),
                    },
                )]
                .into(),
            ),
        }),
        ClientMessage::Fields(FieldsRequest {
            datasources: vec!["a".into()],
            request_id: None,
        }),
        ClientMessage::Cancel(CancelRequest {
            request_id: RequestId::Number(3),
        }),
        ClientMessage::Ping(Ping {
            t: Some(Value::from(42)),
        }),
    ];
    for message in messages {
        let text = message.encode();
        assert_eq!(decode(&text), Ok(message), "{text}");
    }
}

#[test]
fn resuming_positions_decode_in_both_forms() {
    let one =
        decode(r#"{"type":"SUBSCRIBE","channels":["status:a"],"since":{"offset":3,"epoch":"x"}}"#);
    let Ok(ClientMessage::Subscribe(one)) = one else {
        panic!("{one:?}")
    };
    let position = Position {
        offset: 3,
        epoch: "x".into(),
    };
    assert_eq!(
        one.since.as_ref().and_then(|s| s.of("status:a")),
        Some(&position)
    );
    assert_eq!(
        one.since.as_ref().and_then(|s| s.of("latency:a")),
        Some(&position)
    );
    let each = decode(
        r#"{"type":"SUBSCRIBE","channels":["status:a","latency:a"],"since":{"status:a":{"offset":3,"epoch":"x"}}}"#,
    );
    let Ok(ClientMessage::Subscribe(each)) = each else {
        panic!("{each:?}")
    };
    assert_eq!(
        each.since.as_ref().and_then(|s| s.of("status:a")),
        Some(&position)
    );
    assert_eq!(each.since.as_ref().and_then(|s| s.of("latency:a")), None);
    // A position without its epoch is refused, naming the field.
    let Err(DecodeError::Invalid(report)) = decode(
        r#"{"type":"ITEMS_REQUEST","datasources":["a"],"query":"x","live":true,"request-id":1,"resume":{"a":{"offset":3}}}"#,
    ) else {
        panic!("a resume without epoch decoded")
    };
    assert!(report.message.contains("`resume`"), "{}", report.message);
}

/// Every server message, byte for byte: the encoder may change, the bytes
/// a client reads may not.
#[test]
fn every_server_message_encodes_to_the_same_bytes() {
    let datasources = [DatasourceInfo {
        id: "tweets".into(),
        name: "Tweets".into(),
        kind: "embedded".into(),
    }];
    let links: Vec<LinkInfo> = serde_json::from_value(serde_json::json!([
        {"name": "person", "fields": [{"datasource": "tweets", "field": "user.email"}], "lowercase": true}
    ]))
    .expect("a link");
    let echo = Echo {
        query: Some("ada".into()),
        color: Some("#de79f2".into()),
        request_id: Some(RequestId::Text("r1".into())),
    };
    let fields = [Field::new("user.email", "keyword")];
    let expansion: Expansion = serde_json::from_value(serde_json::json!({
        "vertices": [{"field": "tag", "value": "btc", "doc_count": 3, "weight": 3.0}],
        "connections": [{"from": {"field": "user", "value": "ada"}, "to": {"field": "tag", "value": "btc"}, "doc_count": 3}],
        "sampled": 10, "method": "terms"
    }))
    .expect("an expansion");
    let items = [one_item()];
    let raw = encode_results(&items);
    let position = Position {
        offset: 4,
        epoch: "e1".into(),
    };
    let id = RequestId::Number(9);
    let modes = BTreeMap::from([(
        "tweets".to_owned(),
        LiveModeInfo {
            mode: "push".into(),
            interval_ms: None,
            offset: Some(4),
            epoch: Some("e1".into()),
            recovered: None,
        },
    )]);
    let mut report = ErrorReport::new(ErrorCode::BadQuery, "no");
    report.echo = echo.clone();
    report.datasource = Some("tweets".into());
    let outcomes = BTreeMap::from([(
        "tweets".to_owned(),
        DatasourceOutcome {
            took_ms: 5,
            total: Some(1),
            error: None,
        },
    )]);
    let t = Some(Value::from(17));
    let stats = serde_json::json!({"connections": 1});
    let channels = ["status:tweets".to_owned()];
    let recovered = BTreeMap::from([("status:tweets".to_owned(), true)]);
    let value = Value::Bool(true);
    let cases: Vec<(ServerMessage, &str)> = vec![
        (
            ServerMessage::InitialState {
                datasources: &datasources,
                links: &[],
            },
            r#"{"type":"INITIAL_STATE_RECEIVE","state":{"datasources":[{"id":"tweets","name":"Tweets","type":"embedded"}]}}"#,
        ),
        (
            ServerMessage::InitialState {
                datasources: &datasources,
                links: &links,
            },
            r#"{"type":"INITIAL_STATE_RECEIVE","state":{"datasources":[{"id":"tweets","name":"Tweets","type":"embedded"}],"links":[{"name":"person","fields":[{"datasource":"tweets","field":"user.email"}],"lowercase":true}]}}"#,
        ),
        (
            ServerMessage::DatasourcesChanged {
                datasources: &datasources,
            },
            r#"{"type":"DATASOURCES_CHANGED","state":{"datasources":[{"id":"tweets","name":"Tweets","type":"embedded"}]}}"#,
        ),
        (
            ServerMessage::Fields {
                echo: &echo,
                server: "tweets",
                index: "tweets",
                fields: &fields,
            },
            r#"{"type":"FIELDS_RECEIVE","fields":{"server":"tweets","index":"tweets","fields":[{"path":"user.email","type":"keyword"}]},"request-id":"r1"}"#,
        ),
        (
            ServerMessage::Expanded {
                echo: &echo,
                server: "tweets",
                expansion: &expansion,
            },
            r#"{"type":"EXPAND_RECEIVE","server":"tweets","vertices":[{"field":"tag","value":"btc","doc_count":3,"weight":3.0}],"connections":[{"from":{"field":"user","value":"ada"},"to":{"field":"tag","value":"btc"},"doc_count":3}],"sampled":10,"method":"terms","request-id":"r1"}"#,
        ),
        (
            ServerMessage::Items {
                echo: &echo,
                server: "tweets",
                total: 1,
                from: 0,
                results: &items,
            },
            r##"{"type":"ITEMS_RECEIVE","items":{"server":"tweets","query":"ada","color":"#de79f2","total":1,"from":0,"results":[{"id":"1","fields":{"user.screen_name":"x"},"highlight":null}]},"request-id":"r1"}"##,
        ),
        (
            ServerMessage::Appended {
                echo: &echo,
                server: "tweets",
                total: 2,
                from: 1,
                seq: 3,
                results: &raw,
                position: Some(&position),
            },
            r##"{"type":"ITEMS_RECEIVE","items":{"server":"tweets","query":"ada","color":"#de79f2","total":2,"from":1,"results":[{"id":"1","fields":{"user.screen_name":"x"},"highlight":null}],"append":true,"seq":3,"offset":4,"epoch":"e1"},"request-id":"r1"}"##,
        ),
        (
            ServerMessage::LiveStarted {
                request_id: &id,
                datasources: &modes,
            },
            r#"{"type":"LIVE_STARTED","datasources":{"tweets":{"mode":"push","offset":4,"epoch":"e1"}},"request-id":9}"#,
        ),
        (
            ServerMessage::Error(&report),
            r##"{"type":"ERROR","error":{"query":"ada","color":"#de79f2","message":"no","code":"bad_query","datasource":"tweets"},"request-id":"r1"}"##,
        ),
        (
            ServerMessage::RequestCompleted {
                request_id: &id,
                outcomes: &outcomes,
            },
            r#"{"type":"REQUEST_COMPLETED","datasources":{"tweets":{"took_ms":5,"total":1,"error":null}},"request-id":9}"#,
        ),
        (
            ServerMessage::RequestCanceled { request_id: &id },
            r#"{"type":"REQUEST_CANCELED","request-id":9}"#,
        ),
        (
            ServerMessage::Pong {
                t: &t,
                server_t: 18,
                stats: &stats,
            },
            r#"{"type":"PONG","t":17,"server_t":18,"stats":{"connections":1}}"#,
        ),
        (
            ServerMessage::ShutdownNotice { drain_ms: 250 },
            r#"{"type":"SHUTDOWN_NOTICE","drain_ms":250}"#,
        ),
        (
            ServerMessage::Subscribed {
                channels: &channels,
                recovered: None,
            },
            r#"{"type":"SUBSCRIBED","channels":["status:tweets"]}"#,
        ),
        (
            ServerMessage::Subscribed {
                channels: &channels,
                recovered: Some(&recovered),
            },
            r#"{"type":"SUBSCRIBED","channels":["status:tweets"],"recovered":{"status:tweets":true}}"#,
        ),
        (
            ServerMessage::Unsubscribed {
                channels: &channels,
            },
            r#"{"type":"UNSUBSCRIBED","channels":["status:tweets"]}"#,
        ),
        (
            ServerMessage::Data {
                channel: "status:tweets",
                at_ms: 1000,
                value: &value,
                position: None,
            },
            r#"{"type":"DATA","c":"status:tweets","d":[1000,true]}"#,
        ),
        (
            ServerMessage::Data {
                channel: "status:tweets",
                at_ms: 1000,
                value: &value,
                position: Some(&position),
            },
            r#"{"type":"DATA","c":"status:tweets","d":[1000,true],"offset":4,"epoch":"e1"}"#,
        ),
    ];
    for (message, expected) in cases {
        let frame = message.encode();
        let text = std::str::from_utf8(frame.bytes()).expect("UTF-8");
        assert_eq!(text, expected);
    }
}
