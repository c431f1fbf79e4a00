//! `remote-loopback`: a remote datasource that answers at once, for
//! measuring what serving a datasource over `/ws/services` costs tributary.
//!
//! It connects to a tributary server's services socket, identifies with a
//! service token as datasource `--id`, and answers every `SEARCH` with the
//! page asked for of generated demo tweets (`datagen`'s; the query is not
//! evaluated: every record matches), each result encoded once, in replies
//! of at most 48 KiB; `FIELDS` with the tweets' fields.
//!
//! ```sh
//! ./target/release/remote-loopback --url ws://127.0.0.1:8080/ws/services \
//!     --token bench-token-1 --id remote_tweets --records 100000
//! ```

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tributary_tools::datagen::{records, Kind};

#[derive(Parser)]
#[command(about = "A remote datasource over tributary's services socket that answers at once")]
struct Cli {
    /// tributary's services socket.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/services")]
    url: String,
    /// A `[services.<name>]` token of tributary's config.
    #[arg(long, env = "TRIBUTARY_TOKEN")]
    token: String,
    /// The datasource id it serves.
    #[arg(long, default_value = "remote_tweets")]
    id: String,
    /// How many tweets it holds.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Connections serving the datasource (requests are spread over them).
    #[arg(long, default_value_t = 1)]
    connections: usize,
}

/// Largest reply, under tributary's 64 KiB message limit.
const REPLY_BYTES: usize = 48 * 1024;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let results: Vec<String> = records(Kind::Tweets, cli.records, 42)
        .map(|tweet| {
            let id = tweet["id"].as_str().unwrap_or_default().to_owned();
            json!({"id": id, "fields": tweet}).to_string()
        })
        .collect();
    let results = std::sync::Arc::new(results);
    eprintln!(
        "remote-loopback: {} tweets as datasource `{}` over {}",
        cli.records, cli.id, cli.url
    );
    let mut serving = Vec::new();
    for _ in 0..cli.connections.max(1) {
        let (url, token, id, results) = (
            cli.url.clone(),
            cli.token.clone(),
            cli.id.clone(),
            std::sync::Arc::clone(&results),
        );
        serving.push(tokio::spawn(async move {
            // Reconnects after a second when tributary goes away.
            loop {
                if let Err(error) = serve(&url, &token, &id, &results).await {
                    eprintln!("remote-loopback: {error}; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    for task in serving {
        let _ = task.await;
    }
}

async fn serve(url: &str, token: &str, id: &str, results: &[String]) -> Result<(), String> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let fields = [
        ("created_at", "date"),
        ("text", "text"),
        ("user.screen_name", "keyword"),
        ("user.name", "text"),
        ("hashtags", "keyword"),
        ("mentions", "keyword"),
        ("lang", "keyword"),
    ]
    .map(|(path, kind)| json!({"path": path, "type": kind}));
    let identify = json!({"op": 1, "id": "hi", "data": {"token": token,
        "datasource": {"id": id, "name": "Tweets (remote)", "fields": fields}}});
    socket
        .send(Message::text(identify.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(frame) = socket.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => return Err("closed by tributary".into()),
            _ => continue,
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["op"] == 2 {
            return Err(format!("refused: {}", message["data"]["reason"]));
        }
        let event = message["event"].as_str().unwrap_or_default();
        let event_id = message["id"].to_string();
        let replies = match event {
            "SEARCH" => {
                let from = message["data"]["from"].as_u64().unwrap_or(0) as usize;
                let size = message["data"]["size"].as_u64().unwrap_or(0) as usize;
                page(&event_id, results, from, size)
            }
            "FIELDS" => {
                vec![json!({"id": message["id"], "op": 5, "data": {"fields": fields}}).to_string()]
            }
            _ => continue,
        };
        for reply in replies {
            socket
                .send(Message::text(reply))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Err("the connection ended".into())
}

/// The replies carrying `from..from+size`, each under [`REPLY_BYTES`].
fn page(id: &str, results: &[String], from: usize, size: usize) -> Vec<String> {
    let end = from.saturating_add(size).min(results.len());
    let start = from.min(end);
    let head = format!(
        r#"{{"id":{id},"op":5,"data":{{"total":{},"results":["#,
        results.len()
    );
    let mut replies = Vec::new();
    let mut reply = head.clone();
    let mut count = 0;
    for result in &results[start..end] {
        if count > 0 && reply.len() + result.len() + 32 > REPLY_BYTES {
            reply.push_str(r#"],"done":false}}"#);
            replies.push(std::mem::replace(&mut reply, head.clone()));
            count = 0;
        }
        if count > 0 {
            reply.push(',');
        }
        reply.push_str(result);
        count += 1;
    }
    reply.push_str(r#"],"done":true}}"#);
    replies.push(reply);
    replies
}
