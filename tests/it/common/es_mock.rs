//! An Elasticsearch-compatible HTTP server on loopback, for testing the
//! `elasticsearch` adapter where no cluster exists. It answers the endpoints
//! the adapter calls with bodies in the shapes Elasticsearch 7.17/8.x
//! document: `/`, `/{index}/_mapping`, `/{index}/_search`, `/_search` with a
//! point in time, `/{index}/_pit`, `/_pit`, `/_search/scroll`. Every answer
//! carries `X-Elastic-Product: Elasticsearch`.
//!
//! Queries understand a small part of `query_string` — `*`, `field:value`,
//! `field:prefix*`, bare terms, `a AND b` — which is all the tests send.
//! Failures can be injected: any status with an Elasticsearch error body, or a delay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Map, Value};

/// The largest `from + size` a plain search may ask for, as in Elasticsearch.
pub const MAX_RESULT_WINDOW: usize = 10_000;

pub struct MockIndex {
    pub mapping: Value,
    /// `(id, source)` in index order.
    pub docs: Vec<(String, Value)>,
}

#[derive(Default)]
struct State {
    indices: BTreeMap<String, MockIndex>,
    log: Vec<String>,
    failure: Option<(u16, Value)>,
    delay: Option<Duration>,
    pit_supported: bool,
    /// Open points in time and scrolls: id → (indices, query body, position).
    cursors: HashMap<String, Cursor>,
    next_cursor: u64,
}

struct Cursor {
    hits: Vec<Value>,
    position: usize,
}

#[derive(Clone)]
pub struct MockEs {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MockEs {
    pub fn start(indices: Vec<(String, MockIndex)>) -> MockEs {
        let state = Arc::new(Mutex::new(State {
            indices: indices.into_iter().collect(),
            pit_supported: true,
            ..State::default()
        }));
        let shared = web::Data::new(Arc::clone(&state));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(shared.clone())
                        .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                        .default_service(web::to(handle))
                })
                .workers(1)
                .bind("127.0.0.1:0")
                .expect("mock binds");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send(addr).expect("test waits");
                let _ = server.await;
            });
        });
        let addr = rx.recv().expect("mock starts");
        MockEs { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every later request is answered with this status and an Elasticsearch error body.
    pub fn fail_with(&self, status: u16, kind: &str, reason: &str) {
        self.lock().failure = Some((status, error_body(status, kind, reason)));
    }

    /// Every later answer waits this long first.
    pub fn delay(&self, delay: Duration) {
        self.lock().delay = Some(delay);
    }

    /// Behave like a cluster older than 7.10, which has no point-in-time API.
    pub fn without_pit(&self) {
        self.lock().pit_supported = false;
    }

    /// `METHOD /path?query` of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Points in time and scrolls still open.
    pub fn open_cursors(&self) -> usize {
        self.lock().cursors.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn error_body(status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason,
        },
        "status": status,
    })
}

fn respond(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .insert_header(("X-Elastic-Product", "Elasticsearch"))
        .content_type("application/json")
        .body(body.to_string())
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let line = format!("{} {}", req.method(), req.uri());
    let (failure, delay) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.log.push(line);
        (state.failure.clone(), state.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = failure {
        return respond(status, body);
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let is_bulk = req.path() == "/_bulk";
    let body: Value = if body.is_empty() || is_bulk {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return respond(
                    400,
                    error_body(400, "x_content_parse_exception", &e.to_string()),
                )
            }
        }
    };
    let query: HashMap<String, String> =
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let path = percent_decode(req.path());
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().as_str();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    match (method, segments.as_slice()) {
        ("GET" | "HEAD", []) => respond(
            200,
            json!({
                "name": "mock-node", "cluster_name": "tributary-test", "cluster_uuid": "mock",
                "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1",
                            "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"
            }),
        ),
        ("GET", [index, "_mapping"]) => match state.resolve(index) {
            Ok(names) => {
                let mut out = Map::new();
                for name in names {
                    out.insert(
                        name.clone(),
                        json!({"mappings": state.indices[&name].mapping}),
                    );
                }
                respond(200, Value::Object(out))
            }
            Err(missing) => not_found(&missing),
        },
        ("GET" | "POST", [index, "_search"]) => match state.resolve(index) {
            Ok(names) => {
                let scroll = query.contains_key("scroll");
                state.search(&names, &body, scroll)
            }
            Err(missing) => not_found(&missing),
        },
        ("POST", [index, "_pit"]) => {
            if !state.pit_supported {
                return respond(
                    400,
                    error_body(
                        400,
                        "illegal_argument_exception",
                        &format!(
                            "request [/{index}/_pit] contains unrecognized parameter: [keep_alive]"
                        ),
                    ),
                );
            }
            if !query.contains_key("keep_alive") {
                return respond(
                    400,
                    error_body(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: [keep_alive] is not specified;",
                    ),
                );
            }
            match state.resolve(index) {
                Ok(names) => {
                    let id = state.open_cursor(names, "pit");
                    respond(
                        200,
                        json!({"id": id, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
                    )
                }
                Err(missing) => not_found(&missing),
            }
        }
        ("GET" | "POST", ["_search"]) => state.pit_search(&body),
        ("DELETE", ["_pit"]) => {
            let freed = body["id"]
                .as_str()
                .and_then(|id| state.cursors.remove(id))
                .is_some();
            respond(
                200,
                json!({"succeeded": true, "num_freed": u8::from(freed)}),
            )
        }
        ("GET" | "POST", ["_search", "scroll"]) => state.scroll(&body),
        ("DELETE", ["_search", "scroll"]) => {
            let mut freed = 0;
            for id in body["scroll_id"].as_array().cloned().unwrap_or_default() {
                if id
                    .as_str()
                    .and_then(|id| state.cursors.remove(id))
                    .is_some()
                {
                    freed += 1;
                }
            }
            respond(200, json!({"succeeded": true, "num_freed": freed}))
        }
        // What the demo loader needs: create, count, bulk, refresh, delete.
        ("PUT", [index]) => {
            if state.indices.contains_key(*index) {
                let mut error = error_body(
                    400,
                    "resource_already_exists_exception",
                    &format!("index [{index}/mock] already exists"),
                );
                error["error"]["index"] = json!(index);
                return respond(400, error);
            }
            let mapping = body["mappings"].clone();
            state.indices.insert(
                (*index).to_owned(),
                MockIndex {
                    mapping,
                    docs: Vec::new(),
                },
            );
            respond(
                200,
                json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
            )
        }
        ("GET", [index, "_count"]) => match state.resolve(index) {
            Ok(names) => {
                let count: usize = names.iter().map(|n| state.indices[n].docs.len()).sum();
                respond(
                    200,
                    json!({"count": count, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
                )
            }
            Err(missing) => not_found(&missing),
        },
        ("POST", [_, "_refresh"]) => respond(
            200,
            json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        ),
        ("DELETE", [index]) => match state.resolve(index) {
            Ok(names) => {
                for name in names {
                    state.indices.remove(&name);
                }
                respond(200, json!({"acknowledged": true}))
            }
            Err(missing) => not_found(&missing),
        },
        ("POST", ["_bulk"]) => state.bulk(&raw),
        _ => respond(
            400,
            json!({"error": format!("no handler found for uri [{path}] and method [{method}]"), "status": 400}),
        ),
    }
}

fn not_found(index: &str) -> HttpResponse {
    let mut body = error_body(
        404,
        "index_not_found_exception",
        &format!("no such index [{index}]"),
    );
    body["error"]["index"] = json!(index);
    respond(404, body)
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    /// `POST /_bulk` with `index` actions, as NDJSON.
    fn bulk(&mut self, ndjson: &str) -> HttpResponse {
        let mut lines = ndjson.lines().filter(|l| !l.trim().is_empty());
        let mut items = Vec::new();
        while let Some(action) = lines.next() {
            let (Ok(action), Some(Ok(source))) = (
                serde_json::from_str::<Value>(action),
                lines.next().map(serde_json::from_str::<Value>),
            ) else {
                return respond(
                    400,
                    error_body(
                        400,
                        "illegal_argument_exception",
                        "Malformed action/metadata line",
                    ),
                );
            };
            let index = action["index"]["_index"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let id = action["index"]["_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let Some(target) = self.indices.get_mut(&index) else {
                return not_found(&index);
            };
            target.docs.retain(|(existing, _)| existing != &id);
            target.docs.push((id.clone(), source));
            items.push(
                json!({"index": {"_index": index, "_id": id, "result": "created", "status": 201}}),
            );
        }
        respond(200, json!({"took": 3, "errors": false, "items": items}))
    }

    /// Index names for a comma list of names and patterns; a missing concrete name is an error.
    fn resolve(&self, expression: &str) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for part in expression.split(',') {
            if part.contains('*') {
                names.extend(self.indices.keys().filter(|n| wildcard(part, n)).cloned());
            } else if self.indices.contains_key(part) {
                names.push(part.to_owned());
            } else {
                return Err(part.to_owned());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every hit of `names` matching the body's query, in index order (or
    /// as `sort` says, each with its `sort` values), with highlights.
    fn matching(&self, names: &[String], body: &Value) -> Result<Vec<Value>, Box<HttpResponse>> {
        let query = Query::read(&body["query"]).map_err(|reason| {
            let mut error = error_body(400, "query_shard_exception", &reason);
            error["error"]["type"] = json!("search_phase_execution_exception");
            error["error"]["reason"] = json!("all shards failed");
            Box::new(respond(400, error))
        })?;
        let terms = query.terms();
        let sort = Sort::read(&body["sort"]);
        let want_source = body.get("_source") != Some(&json!(false));
        let highlight = body.get("highlight").is_some();
        let mut hits = Vec::new();
        for name in names {
            for (id, source) in &self.indices[name].docs {
                let flat = flatten(source);
                if query.matches(id, &flat) {
                    let mut hit = json!({"_index": name, "_id": id, "_score": 1.0});
                    if let Some(sort) = &sort {
                        hit["sort"] = json!([sort_value(flat.get(&sort.field))]);
                    }
                    if want_source {
                        hit["_source"] = source.clone();
                    }
                    if highlight {
                        let fragments = highlights(&terms, &flat);
                        if !fragments.is_empty() {
                            hit["highlight"] = Value::Object(fragments);
                        }
                    }
                    hits.push(hit);
                }
            }
        }
        if let Some(sort) = &sort {
            // Documents without the field sort last, as in Elasticsearch.
            let key = |hit: &Value| hit["sort"][0].as_i64();
            hits.sort_by(|a, b| match (key(a), key(b)) {
                (Some(x), Some(y)) if sort.descending => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        Ok(hits)
    }

    fn search(&mut self, names: &[String], body: &Value, scroll: bool) -> HttpResponse {
        let from = body["from"].as_u64().unwrap_or(0) as usize;
        let size = body["size"].as_u64().unwrap_or(10) as usize;
        if !scroll && from + size > MAX_RESULT_WINDOW {
            let reason = format!("Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", from + size);
            let mut error = error_body(400, "illegal_argument_exception", &reason);
            error["error"]["type"] = json!("search_phase_execution_exception");
            error["error"]["reason"] = json!("all shards failed");
            return respond(400, error);
        }
        let hits = match self.matching(names, body) {
            Ok(hits) => hits,
            Err(response) => return *response,
        };
        let total = hits.len();
        let page: Vec<Value> = hits.iter().skip(from).take(size).cloned().collect();
        let mut answer = envelope(total, page, &body["track_total_hits"]);
        let aggs = body.get("aggs").or_else(|| body.get("aggregations"));
        if let Some(aggs) = aggs {
            let docs: Vec<Map<String, Value>> =
                hits.iter().map(|hit| flatten(&hit["_source"])).collect();
            let all: Vec<Map<String, Value>> = names
                .iter()
                .flat_map(|name| {
                    self.indices[name]
                        .docs
                        .iter()
                        .map(|(_, source)| flatten(source))
                })
                .collect();
            match aggregate(aggs, &docs, &all) {
                Ok(result) => answer["aggregations"] = result,
                Err(reason) => {
                    return respond(400, error_body(400, "illegal_argument_exception", &reason))
                }
            }
        }
        if scroll {
            let id = self.open_scroll(hits, size);
            answer["_scroll_id"] = json!(id);
        }
        respond(200, answer)
    }

    fn open_cursor(&mut self, names: Vec<String>, kind: &str) -> String {
        self.next_cursor += 1;
        // Looks like Elasticsearch's opaque base64 ids.
        let id = format!(
            "{kind}R{}{}Fm1vY2s",
            self.next_cursor,
            names.join("_").len()
        );
        let hits = names
            .iter()
            .flat_map(|name| {
                self.indices[name]
                    .docs
                    .iter()
                    .map(move |(id, source)| json!({"_index": name, "_id": id, "_source": source}))
            })
            .collect();
        self.cursors
            .insert(id.clone(), Cursor { hits, position: 0 });
        id
    }

    fn open_scroll(&mut self, hits: Vec<Value>, size: usize) -> String {
        self.next_cursor += 1;
        let id = format!("FGluY2x1ZGVfY29udGV4dF91dWlk{}", self.next_cursor);
        self.cursors.insert(
            id.clone(),
            Cursor {
                hits,
                position: size,
            },
        );
        id
    }

    /// `POST /_search` with `pit`: `search_after` on `_shard_doc` (the hit's position).
    fn pit_search(&mut self, body: &Value) -> HttpResponse {
        let Some(id) = body["pit"]["id"].as_str() else {
            return respond(
                400,
                error_body(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [indices] cannot be empty without a point in time;",
                ),
            );
        };
        let Some(cursor) = self.cursors.get(id) else {
            return respond(
                404,
                error_body(
                    404,
                    "search_context_missing_exception",
                    &format!("No search context found for id [{id}]"),
                ),
            );
        };
        let size = body["size"].as_u64().unwrap_or(10) as usize;
        if size > MAX_RESULT_WINDOW {
            return respond(
                400,
                error_body(
                    400,
                    "illegal_argument_exception",
                    "Result window is too large",
                ),
            );
        }
        let start = body["search_after"][0]
            .as_u64()
            .map(|p| p as usize + 1)
            .unwrap_or(0);
        // Re-run the query over the frozen snapshot, keeping each hit's position as its sort value.
        let names: Vec<String> = {
            let mut names: Vec<String> = cursor
                .hits
                .iter()
                .filter_map(|h| h["_index"].as_str().map(str::to_owned))
                .collect();
            names.dedup();
            names
        };
        let all = match self.matching(&names, body) {
            Ok(hits) => hits,
            Err(response) => return *response,
        };
        let total = all.len();
        let page: Vec<Value> = all
            .into_iter()
            .enumerate()
            .skip(start)
            .take(size)
            .map(|(position, mut hit)| {
                hit["sort"] = json!([position]);
                hit
            })
            .collect();
        let mut answer = envelope(total, page, &body["track_total_hits"]);
        answer["pit_id"] = json!(id);
        respond(200, answer)
    }

    fn scroll(&mut self, body: &Value) -> HttpResponse {
        let Some(id) = body["scroll_id"].as_str() else {
            return respond(
                400,
                error_body(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: scrollId is missing;",
                ),
            );
        };
        let Some(cursor) = self.cursors.get_mut(id) else {
            return respond(
                404,
                error_body(
                    404,
                    "search_context_missing_exception",
                    &format!("No search context found for id [{id}]"),
                ),
            );
        };
        let size = 1_000.min(cursor.hits.len());
        let size = if size == 0 { 1 } else { size };
        let page: Vec<Value> = cursor
            .hits
            .iter()
            .skip(cursor.position)
            .take(size)
            .cloned()
            .collect();
        cursor.position += page.len();
        let total = cursor.hits.len();
        let mut answer = envelope(total, page, &json!(true));
        answer["_scroll_id"] = json!(id);
        respond(200, answer)
    }
}

/// The search response around `hits`, total as `track_total_hits` asks.
fn envelope(total: usize, hits: Vec<Value>, track_total_hits: &Value) -> Value {
    let mut hits_object = json!({"max_score": 1.0, "hits": hits});
    match track_total_hits {
        Value::Bool(false) => {}
        Value::Bool(true) => hits_object["total"] = json!({"value": total, "relation": "eq"}),
        _ if total > MAX_RESULT_WINDOW => {
            hits_object["total"] = json!({"value": MAX_RESULT_WINDOW, "relation": "gte"})
        }
        _ => hits_object["total"] = json!({"value": total, "relation": "eq"}),
    }
    json!({
        "took": 2,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": hits_object,
    })
}

/// A keyword field's values in a flattened document, as strings.
fn keyword_values(value: Option<&Value>) -> Vec<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(list)) => list.iter().filter_map(scalar).collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The aggregations the adapter's expansions send, over `docs` (the
/// matching documents, in index order) with `all` the index's documents
/// (the background): `sampler` (the first `shard_size` documents: one
/// shard), `filter`, `terms` and `significant_terms` (JLH, `size`,
/// `exclude` as a list of values, `include` as a regular expression). Buckets by count (score), then key.
fn aggregate(
    aggs: &Value,
    docs: &[Map<String, Value>],
    all: &[Map<String, Value>],
) -> Result<Value, String> {
    let mut out = Map::new();
    for (name, spec) in aggs.as_object().ok_or("aggs must be an object")? {
        let subs = spec.get("aggs").or_else(|| spec.get("aggregations"));
        let nested = |docs: &[Map<String, Value>]| -> Result<Value, String> {
            let mut result = json!({"doc_count": docs.len()});
            if let Some(subs) = subs {
                if let Value::Object(inner) = aggregate(subs, docs, all)? {
                    result.as_object_mut().ok_or("result")?.extend(inner);
                }
            }
            Ok(result)
        };
        let result = if let Some(sampler) = spec.get("sampler") {
            let shard_size = sampler["shard_size"].as_u64().unwrap_or(100) as usize;
            nested(&docs[..docs.len().min(shard_size)])?
        } else if let Some(filter) = spec.get("filter") {
            let query = Query::read(filter)?;
            let kept: Vec<Map<String, Value>> = docs
                .iter()
                .filter(|d| query.matches("", d))
                .cloned()
                .collect();
            nested(&kept)?
        } else if let Some(terms) = spec.get("terms").or_else(|| spec.get("significant_terms")) {
            let significant = spec.get("significant_terms").is_some();
            let field = terms["field"]
                .as_str()
                .ok_or("terms needs a field")?
                .trim_end_matches(".keyword");
            let size = terms["size"].as_u64().unwrap_or(10) as usize;
            let exclude: Vec<String> = keyword_values(terms.get("exclude"));
            // `include` as a string: a Lucene regular expression over the whole term.
            let include = match terms.get("include") {
                Some(Value::String(pattern)) => Some(lucene_regexp(pattern)?),
                Some(other) => return Err(format!("unsupported include {other}")),
                None => None,
            };
            let count = |docs: &[Map<String, Value>]| {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for doc in docs {
                    let mut values = keyword_values(doc.get(field));
                    values.sort();
                    values.dedup();
                    for value in values {
                        let included = include.as_ref().is_none_or(|re| re.is_match(&value));
                        if included && !exclude.contains(&value) {
                            *counts.entry(value).or_default() += 1;
                        }
                    }
                }
                counts
            };
            let foreground = count(docs);
            let background = if significant {
                count(all)
            } else {
                BTreeMap::new()
            };
            let mut buckets: Vec<(String, u64, f64)> = foreground
                .into_iter()
                .map(|(key, n)| {
                    let score = if significant {
                        let fg = n as f64 / docs.len().max(1) as f64;
                        let bg = background.get(&key).copied().unwrap_or(n) as f64
                            / all.len().max(1) as f64;
                        if fg > bg {
                            (fg - bg) * fg / bg
                        } else {
                            0.0
                        }
                    } else {
                        n as f64
                    };
                    (key, n, score)
                })
                .filter(|(_, _, score)| !significant || *score > 0.0)
                .collect();
            buckets.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
            buckets.truncate(size);
            let buckets: Vec<Value> = buckets
                .into_iter()
                .map(|(key, n, score)| {
                    if significant {
                        json!({"key": key, "doc_count": n, "score": score, "bg_count": background.get(&key).copied().unwrap_or(n)})
                    } else {
                        json!({"key": key, "doc_count": n})
                    }
                })
                .collect();
            if significant {
                json!({"doc_count": docs.len(), "bg_count": all.len(), "buckets": buckets})
            } else {
                json!({"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": buckets})
            }
        } else if let Some(cardinality) = spec.get("cardinality") {
            // Exact here; Elasticsearch's is an estimate, exact at small counts.
            let field = cardinality["field"]
                .as_str()
                .ok_or("cardinality needs a field")?
                .trim_end_matches(".keyword");
            let distinct: BTreeSet<String> = docs
                .iter()
                .flat_map(|d| keyword_values(d.get(field)))
                .collect();
            json!({"value": distinct.len()})
        } else {
            return Err(format!("unsupported aggregation {spec}"));
        };
        out.insert(name.clone(), result);
    }
    Ok(Value::Object(out))
}

/// The part of the query DSL the adapter sends: `match_all`,
/// `query_string`, `bool` (`must`, `filter`, `should`, `must_not`), `range`
/// on numbers and dates, `ids`, `exists`.
enum Query {
    Terms(Vec<Term>),
    Bool {
        must: Vec<Query>,
        should: Vec<Query>,
        must_not: Vec<Query>,
        minimum_should_match: usize,
    },
    Range {
        field: String,
        bounds: Vec<(String, i64)>,
    },
    Ids(Vec<String>),
    Exists(String),
    /// `term` on a keyword field (`x.keyword` is `x`); compared without
    /// case, as the demo mappings' `lowercase` normalizer does.
    Term {
        field: String,
        value: String,
    },
}

impl Query {
    fn read(query: &Value) -> Result<Query, String> {
        let list = |value: &Value| -> Result<Vec<Query>, String> {
            match value {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items.iter().map(Query::read).collect(),
                single => Ok(vec![Query::read(single)?]),
            }
        };
        if query.is_null() || query.get("match_all").is_some() {
            return Ok(Query::Terms(vec![Term::All]));
        }
        if let Some(text) = query["query_string"]["query"].as_str() {
            return parse(text).map(Query::Terms);
        }
        if let Some(bool_query) = query.get("bool") {
            let mut must = list(&bool_query["must"])?;
            must.extend(list(&bool_query["filter"])?);
            let should = list(&bool_query["should"])?;
            let minimum = bool_query["minimum_should_match"]
                .as_u64()
                .map_or(usize::from(must.is_empty() && !should.is_empty()), |n| {
                    n as usize
                });
            return Ok(Query::Bool {
                must,
                should,
                must_not: list(&bool_query["must_not"])?,
                minimum_should_match: minimum,
            });
        }
        if let Some(Value::Object(range)) = query.get("range") {
            let (field, bounds) = range.iter().next().ok_or("empty range")?;
            let bounds = bounds
                .as_object()
                .ok_or("range bounds must be an object")?
                .iter()
                .map(|(op, v)| {
                    Ok((
                        op.clone(),
                        sort_value(Some(v))
                            .ok_or("bad bound")?
                            .as_i64()
                            .ok_or("bad bound")?,
                    ))
                })
                .collect::<Result<_, String>>()?;
            return Ok(Query::Range {
                field: field.clone(),
                bounds,
            });
        }
        if let Some(values) = query["ids"]["values"].as_array() {
            return Ok(Query::Ids(
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ));
        }
        if let Some(field) = query["exists"]["field"].as_str() {
            return Ok(Query::Exists(field.to_owned()));
        }
        if let Some(Value::Object(term)) = query.get("term") {
            let (field, value) = term.iter().next().ok_or("empty term")?;
            let value = value.get("value").unwrap_or(value);
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Ok(Query::Term {
                field: field.trim_end_matches(".keyword").to_owned(),
                value,
            });
        }
        Err(format!("unsupported query {query}"))
    }

    fn matches(&self, id: &str, flat: &Map<String, Value>) -> bool {
        match self {
            Query::Terms(terms) => terms.iter().all(|t| t.matches(flat)),
            Query::Bool {
                must,
                should,
                must_not,
                minimum_should_match,
            } => {
                must.iter().all(|q| q.matches(id, flat))
                    && !must_not.iter().any(|q| q.matches(id, flat))
                    && should.iter().filter(|q| q.matches(id, flat)).count()
                        >= *minimum_should_match
            }
            Query::Range { field, bounds } => {
                let Some(value) = sort_value(flat.get(field)).and_then(|v| v.as_i64()) else {
                    return false;
                };
                bounds.iter().all(|(op, bound)| match op.as_str() {
                    "gte" => value >= *bound,
                    "gt" => value > *bound,
                    "lte" => value <= *bound,
                    "lt" => value < *bound,
                    _ => true,
                })
            }
            Query::Ids(ids) => ids.iter().any(|wanted| wanted == id),
            Query::Exists(field) => flat.get(field).is_some_and(|v| !v.is_null()),
            Query::Term { field, value } => keyword_values(flat.get(field))
                .iter()
                .any(|v| v.eq_ignore_ascii_case(value)),
        }
    }

    /// The words of its `query_string` parts, for highlights.
    fn terms(&self) -> Vec<&Term> {
        match self {
            Query::Terms(terms) => terms.iter().collect(),
            Query::Bool { must, should, .. } => {
                must.iter().chain(should).flat_map(Query::terms).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// `sort: [{"field": {"order": "asc"}}]` or `[{"field": "desc"}]`.
struct Sort {
    field: String,
    descending: bool,
}

impl Sort {
    fn read(sort: &Value) -> Option<Sort> {
        let (field, order) = sort.as_array()?.first()?.as_object()?.iter().next()?;
        let order = order["order"].as_str().or(order.as_str()).unwrap_or("asc");
        Some(Sort {
            field: field.clone(),
            descending: order == "desc",
        })
    }
}

/// A field's sort value: numbers as they are, dates as epoch milliseconds.
fn sort_value(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Number(n) => Some(json!(n.as_i64()?)),
        Value::String(s) => tributary::query::date::parse_date(s, false)
            .ok()
            .map(|ms| json!(ms)),
        _ => None,
    }
}

enum Term {
    All,
    Field(String, String),
    Any(String),
}

fn parse(query: &str) -> Result<Vec<Term>, String> {
    let query = query.trim();
    let open = query.matches('(').count();
    if open != query.matches(')').count() || query.ends_with(':') || query.starts_with("AND ") {
        return Err(format!("Failed to parse query [{query}]"));
    }
    query
        .split(" AND ")
        .map(|part| {
            let part = part.trim();
            Ok(match part.split_once(':') {
                _ if part == "*" || part.is_empty() => Term::All,
                Some((field, value)) => {
                    Term::Field(field.to_owned(), value.trim_matches('"').to_lowercase())
                }
                None => Term::Any(part.trim_matches('"').to_lowercase()),
            })
        })
        .collect()
}

impl Term {
    fn matches(&self, flat: &Map<String, Value>) -> bool {
        match self {
            Term::All => true,
            Term::Field(field, value) => flat
                .get(field)
                .is_some_and(|v| values(v).iter().any(|s| equal(s, value))),
            Term::Any(term) => flat
                .values()
                .any(|v| values(v).iter().any(|s| contains_word(s, term))),
        }
    }
}

fn equal(text: &str, wanted: &str) -> bool {
    let text = text.to_lowercase();
    match wanted.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == wanted || contains_word(&text, wanted),
    }
}

fn contains_word(text: &str, term: &str) -> bool {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .any(|word| word == term)
}

fn values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(values).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => vec![],
        other => vec![other.to_string()],
    }
}

fn highlights(terms: &[&Term], flat: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for term in terms {
        let (field, word) = match *term {
            Term::Field(field, value) => (Some(field.as_str()), value.as_str()),
            Term::Any(word) => (None, word.as_str()),
            Term::All => continue,
        };
        for (path, value) in flat {
            if field.is_some_and(|f| f != path) {
                continue;
            }
            for text in values(value) {
                if contains_word(&text, word) {
                    let marked = text
                        .split(' ')
                        .map(|w| {
                            if w.to_lowercase() == word {
                                format!("<em>{w}</em>")
                            } else {
                                w.to_owned()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    if let Some(list) = out
                        .entry(path.clone())
                        .or_insert_with(|| json!([]))
                        .as_array_mut()
                    {
                        list.push(json!(marked));
                    }
                }
            }
        }
    }
    out
}

fn flatten(source: &Value) -> Map<String, Value> {
    source
        .as_object()
        .map(tributary::datasources::flatten::flatten)
        .unwrap_or_default()
}

fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (tail.is_empty()
                    || (head.len()..=name.len())
                        .any(|i| name.is_char_boundary(i) && wildcard(tail, &name[i..])))
        }
    }
}

/// A Lucene regular expression (the `.`, `*`, `[...]` and `\\`-escapes
/// Elasticsearch's `include` takes) as a `regex`, anchored at both ends.
fn lucene_regexp(pattern: &str) -> Result<regex::Regex, String> {
    let mut out = String::from("^(?:");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().ok_or("a regexp ends in \\")?;
                out.push_str(&regex::escape(&escaped.to_string()));
            }
            '.' | '*' | '[' | ']' | '+' | '?' | '(' | ')' | '|' => out.push(c),
            c if c.is_alphanumeric() || c == '-' => out.push(c),
            other => {
                return Err(format!(
                    "unsupported regexp character {other:?} in {pattern}"
                ))
            }
        }
    }
    out.push_str(")$");
    regex::Regex::new(&out).map_err(|e| e.to_string())
}
