//! A fake remote datasource for tests: a service on `/ws/services` that
//! identifies as datasource `crm` and answers SEARCH/FIELDS as told.

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tributary::http::ServerHandle;
use tributary_client::Frame;

use super::*;

pub const TOKEN: &str = "crm-token-1";

/// The records the fake service holds: nested, as a plugin would send them.
pub fn record(i: usize) -> Value {
    json!({
        "id": format!("c{i}"),
        "fields": {
            "name": format!("customer {i}"),
            "team": if i % 2 == 0 { "red" } else { "blue" },
            "address": {"city": if i % 3 == 0 { "Utrecht" } else { "Ghent" }},
        },
        "highlight": null,
    })
}

pub const RECORDS: usize = 120;

pub fn declaration() -> Value {
    json!({"id": "crm", "name": "Customers", "fields": [
        {"path": "name", "type": "text"},
        {"path": "team", "type": "keyword"},
        {"path": "address.city", "type": "keyword"},
    ]})
}

/// How the fake service answers a `SEARCH`.
#[derive(Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Every match, `chunk` results a reply.
    Serve { chunk: usize },
    /// Never answers.
    Hang,
    /// Sends the first chunk, then leaves.
    LeaveAfterFirst { chunk: usize },
    /// `{error: {kind: "bad_query"}}`.
    Refuse,
    /// A reply that is not `{total, results, done}`.
    Invalid,
}

/// A service serving datasource `crm`: what it received comes out of
/// `received`; what is put into `send` goes to the server.
pub struct FakeService {
    pub connection: String,
    received: mpsc::UnboundedReceiver<Value>,
    pub send: mpsc::UnboundedSender<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeService {
    pub async fn start(server: &ServerHandle, behaviour: Behaviour) -> FakeService {
        Self::start_as(server, TOKEN, declaration(), behaviour)
            .await
            .expect("identified")
    }

    /// Identifies; `Err` is the DISCONNECT reason.
    pub async fn start_as(
        server: &ServerHandle,
        token: &str,
        declared: Value,
        behaviour: Behaviour,
    ) -> Result<FakeService, String> {
        let mut client = Client::connect_url(&format!("ws://{}/ws/services", server.addr)).await;
        client
            .send(json!({"op": 1, "id": "hi", "data": {"token": token, "datasource": declared}}))
            .await;
        let reply = client.recv().await;
        if reply["op"] == 2 {
            assert!(matches!(client.closed().await, Closed::Code(1008)));
            return Err(reply["data"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned());
        }
        assert_eq!(reply["op"], 5, "{reply}");
        let connection = reply["data"]["connection"].as_str().expect("id").to_owned();
        let (seen, received) = mpsc::unbounded_channel();
        let (send, mut outgoing) = mpsc::unbounded_channel::<Value>();
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    out = outgoing.recv() => match out {
                        Some(out) => { client.send(out).await; continue }
                        None => return,
                    },
                    frame = client.typed().next_frame() => match frame {
                        Ok(Frame::Text(text)) => serde_json::from_str::<Value>(&text).expect("JSON"),
                        _ => return,
                    },
                };
                let _ = seen.send(message.clone());
                if message["event"] == "FIELDS" {
                    client
                        .send(json!({"op": 5, "id": message["id"], "data": {"fields": declaration()["fields"]}}))
                        .await;
                } else if message["event"] == "SEARCH"
                    && !answer(&mut client, &message, behaviour).await
                {
                    return;
                }
            }
        });
        Ok(FakeService {
            connection,
            received,
            send,
            task,
        })
    }

    /// The next message received whose event is `event`.
    pub async fn next(&mut self, event: &str) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.received.recv())
                .await
                .expect("in time")
                .expect("the service is running");
            // `""`: whatever comes next.
            if event.is_empty() || message["event"] == event {
                return message;
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Answers one SEARCH; false when the service leaves.
pub async fn answer(client: &mut Client, search: &Value, behaviour: Behaviour) -> bool {
    let id = &search["id"];
    let data = &search["data"];
    assert!(data["context"]["timeout_ms"].as_u64().is_some(), "{search}");
    let matches: Vec<Value> = (0..RECORDS)
        .map(record)
        .filter(|r| match data["query"].as_str() {
            Some("team:red" | "team:\"red\"") => r["fields"]["team"] == "red",
            _ => true,
        })
        .collect();
    let from = data["from"].as_u64().expect("from") as usize;
    let size = data["size"].as_u64().expect("size") as usize;
    let page: Vec<Value> = matches.iter().skip(from).take(size).cloned().collect();
    match behaviour {
        Behaviour::Hang => true,
        Behaviour::Refuse => {
            client
                .send(json!({"op": 5, "id": id, "data": {"error": {"kind": "bad_query", "message": "cannot read the query"}}}))
                .await;
            true
        }
        Behaviour::Invalid => {
            client
                .send(json!({"op": 5, "id": id, "data": {"rows": 3}}))
                .await;
            true
        }
        Behaviour::Serve { chunk } | Behaviour::LeaveAfterFirst { chunk } => {
            let chunks: Vec<&[Value]> = page.chunks(chunk.max(1)).collect();
            if chunks.is_empty() {
                client
                    .send(json!({"op": 5, "id": id, "data": {"total": matches.len(), "results": [], "done": true}}))
                    .await;
            }
            for (i, results) in chunks.iter().enumerate() {
                let done = i + 1 == chunks.len();
                client
                    .send(json!({"op": 5, "id": id, "data": {"total": matches.len(), "results": results, "done": done}}))
                    .await;
                if matches!(behaviour, Behaviour::LeaveAfterFirst { .. }) {
                    return false;
                }
            }
            true
        }
    }
}

/// Every message of request `id` until its `REQUEST_COMPLETED`.
pub async fn until_completed(client: &mut Client, id: &str) -> Vec<Value> {
    client
        .recv_until(|m| m["type"] == "REQUEST_COMPLETED" && m["request-id"] == id)
        .await
}

pub fn results_of(messages: &[Value], server: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "ITEMS_RECEIVE" && m["items"]["server"] == server)
        .flat_map(|m| {
            m["items"]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Sends `request` (which has a `request-id`) and returns its messages up
/// to its `REQUEST_COMPLETED`.
pub async fn ask(client: &mut Client, request: Value) -> Vec<Value> {
    let id = request["request-id"]
        .as_str()
        .expect("a request-id")
        .to_owned();
    client.send(request).await;
    until_completed(client, &id).await
}

/// The ids of `server`'s results, in the order they came.
pub fn result_ids(messages: &[Value], server: &str) -> Vec<String> {
    results_of(messages, server)
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

pub fn errors_of(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["type"] == "ERROR").collect()
}

/// Waits until a client of `server` lists datasource `id`.
pub async fn until_listed(server: &ServerHandle, id: &str) -> Client {
    let started = std::time::Instant::now();
    loop {
        let (mut client, initial) = Client::ready(server).await;
        if initial.to_string().contains(&format!("\"id\":\"{id}\"")) {
            return client;
        }
        // Or it is announced while connected.
        if let Ok(changed) = tokio::time::timeout(Duration::from_millis(500), client.recv()).await {
            if changed["type"] == "DATASOURCES_CHANGED"
                && changed.to_string().contains(&format!("\"id\":\"{id}\""))
            {
                return client;
            }
        }
        assert!(started.elapsed() < PATIENCE, "`{id}` never listed");
    }
}

/// A `[services.<name>]` table: its token and the datasources it may serve.
pub fn serving(token: &str, datasources: &[&str]) -> tributary::config::ServiceSettings {
    tributary::config::ServiceSettings {
        token: token.into(),
        group: None,
        datasources: Some(datasources.iter().map(|id| (*id).to_owned()).collect()),
    }
}
