//! `es-loopback`: an Elasticsearch-shaped HTTP server that answers at once,
//! for measuring tributary's Elasticsearch path without a cluster.
//!
//! It holds generated demo tweets (`datagen`'s, shaped like the compose
//! stack's `demo-tweets`) and answers `POST /<index>/_search` with the page
//! its body asks for (`from`, `size`; the query is not evaluated: every
//! document matches), `GET /<index>/_mapping` with the demo mapping and
//! `GET /` as a cluster does, with `X-Elastic-Product: Elasticsearch`.
//! HTTP/1.1 with keep-alive; responses are built once per page size.
//!
//! ```sh
//! ./target/release/es-loopback --listen 127.0.0.1:9200 --documents 100000
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tributary_tools::datagen::{records, Kind};

#[derive(Parser)]
#[command(about = "An Elasticsearch-shaped server on loopback that answers at once")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: String,
    /// How many tweets it holds.
    #[arg(long, default_value_t = 100_000)]
    documents: usize,
}

/// A whole HTTP response, encoded once.
type Response = Arc<Vec<u8>>;

struct Corpus {
    /// Each hit, encoded once: `{"_index":…,"_id":…,"_score":1.0,"_source":…}`.
    hits: Vec<String>,
    /// Encoded responses by (from, size).
    pages: Mutex<HashMap<(usize, usize), Response>>,
}

impl Corpus {
    fn page(&self, from: usize, size: usize) -> Arc<Vec<u8>> {
        let key = (from, size);
        if let Ok(pages) = self.pages.lock() {
            if let Some(page) = pages.get(&key) {
                return Arc::clone(page);
            }
        }
        let end = from.saturating_add(size).min(self.hits.len());
        let start = from.min(end);
        let mut body = format!(
            r#"{{"took":1,"timed_out":false,"_shards":{{"total":1,"successful":1,"skipped":0,"failed":0}},"hits":{{"total":{{"value":{},"relation":"eq"}},"max_score":1.0,"hits":["#,
            self.hits.len()
        );
        for (i, hit) in self.hits[start..end].iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(hit);
        }
        body.push_str("]}}");
        let page = Arc::new(response(200, body.as_bytes()));
        if let Ok(mut pages) = self.pages.lock() {
            // Bounded: a load test asks for a few page shapes.
            if pages.len() > 1024 {
                pages.clear();
            }
            pages.insert(key, Arc::clone(&page));
        }
        page
    }
}

fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nx-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let hits = records(Kind::Tweets, cli.documents, 42)
        .map(|source| {
            let id = source["id"].as_str().unwrap_or_default().to_owned();
            json!({"_index": "demo-tweets", "_id": id, "_score": 1.0, "_source": source})
                .to_string()
        })
        .collect();
    let corpus = Arc::new(Corpus {
        hits,
        pages: Mutex::new(HashMap::new()),
    });
    let listener = match TcpListener::bind(&cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("es-loopback: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    // The address really bound (`:0` picks a free port), for scripts and tests.
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cli.listen.clone());
    eprintln!("es-loopback: {} tweets on http://{bound}", cli.documents);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(serve(socket, Arc::clone(&corpus)));
    }
}

/// One keep-alive connection: requests are read one after another.
async fn serve(mut socket: TcpStream, corpus: Arc<Corpus>) {
    let mut buffer = Vec::with_capacity(8192);
    loop {
        // The head.
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            if buffer.len() > 1 << 20 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buffer[head_end..head_end + length];
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let answer = if path.ends_with("/_search") {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let from = request["from"].as_u64().unwrap_or(0) as usize;
            let size = request["size"].as_u64().unwrap_or(10) as usize;
            corpus.page(from, size)
        } else if path.ends_with("/_mapping") {
            let mapping: Value = serde_json::from_str(include_str!(
                "../../../datasources/demo/tweets.mapping.json"
            ))
            .unwrap_or(Value::Null);
            let body = json!({"demo-tweets": {"mappings": mapping["mappings"]}}).to_string();
            Arc::new(response(200, body.as_bytes()))
        } else if method == "GET" && path == "/" {
            let body = json!({"name": "es-loopback", "cluster_name": "loopback",
                              "version": {"number": "8.15.3"}, "tagline": "You Know, for Search"});
            Arc::new(response(200, body.to_string().as_bytes()))
        } else {
            let body = json!({"error": {"type": "index_not_found_exception", "reason": format!("no such path {path}")}, "status": 404});
            Arc::new(response(404, body.to_string().as_bytes()))
        };
        if socket.write_all(&answer).await.is_err() {
            return;
        }
        buffer.drain(..head_end + length);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
