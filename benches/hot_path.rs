//! Microbenchmarks of the hot path: decoding requests, encoding
//! `ITEMS_RECEIVE` batches (next to the bare serde_json floor), fixtures
//! searches over 100,000 records (through the adapter API's test sink), and
//! reading Elasticsearch `_search` responses into items. Run with `cargo bench --bench hot_path`;
//! BENCHMARKS.md records the figures.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{Map, Value};
use tributary::datasources::embedded::EmbeddedDatasource;
use tributary::datasources::SearchQuery;
use tributary::datasources::{Datasource, Item, RequestContext, ResultSink};
use tributary::protocol::{self, Echo, RequestId, ServerMessage};
use tributary_tools::datagen::{records, Kind};

fn tweets(count: usize) -> Vec<Map<String, Value>> {
    records(Kind::Tweets, count, 1)
        .filter_map(|r| r.as_object().cloned())
        .collect()
}

fn decode(c: &mut Criterion) {
    let items = r##"{"type":"ITEMS_REQUEST","datasources":["tweets","emails"],"query":"hashtags:bitcoin AND user.followers_count:[1000 TO *]","from":0,"size":50,"color":"#de79f2","request-id":"q-17"}"##;
    let fields = r#"{"type":"FIELDS_REQUEST","datasources":["tweets"]}"#;
    let mut group = c.benchmark_group("decode");
    group.bench_function("ITEMS_REQUEST", |b| {
        b.iter(|| protocol::decode(black_box(items)))
    });
    group.bench_function("FIELDS_REQUEST", |b| {
        b.iter(|| protocol::decode(black_box(fields)))
    });
    group.finish();
}

/// Runs a search as the server does, into the test sink: total and results.
fn search_page(
    runtime: &tokio::runtime::Runtime,
    source: &EmbeddedDatasource,
    query: &SearchQuery,
) -> (u64, Vec<Item>) {
    let (mut sink, pushed) = ResultSink::for_test();
    runtime
        .block_on(source.search(&RequestContext::for_test(), query, &mut sink))
        .expect("search");
    (pushed.total().unwrap_or(0), pushed.items())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn encode(c: &mut Criterion) {
    // A batch as the fixtures adapter produces it: real records, pre-encoded fields.
    let source = EmbeddedDatasource::from_records("tweets", tweets(500)).expect("index builds");
    let (total, items) = search_page(
        &runtime(),
        &source,
        &SearchQuery {
            query: "*".into(),
            from: 0,
            size: 500,
        },
    );
    let as_values: Vec<Value> = items
        .iter()
        .map(|i| serde_json::to_value(i).expect("items encode"))
        .collect();
    let echo = Echo {
        query: Some("*".into()),
        color: Some("#de79f2".into()),
        request_id: Some(RequestId::Text("q-17".into())),
    };
    let batch = |items| ServerMessage::Items {
        echo: &echo,
        server: "tweets",
        total,
        from: 0,
        results: items,
    };
    let bytes = batch(&items).encode().len() as u64;
    let mut group = c.benchmark_group("encode_500_items");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("ITEMS_RECEIVE", |b| {
        b.iter(|| batch(black_box(&items)).encode())
    });
    group.bench_function("floor: serde_json of the same items", |b| {
        b.iter(|| serde_json::to_string(black_box(&items)))
    });
    group.bench_function("serde_json of the items as Value trees", |b| {
        b.iter(|| serde_json::to_string(black_box(&as_values)))
    });
    group.finish();
}

fn search(c: &mut Criterion) {
    // Every search evaluated: kept pages would answer the repeated query.
    let source = EmbeddedDatasource::from_records("tweets", tweets(100_000))
        .expect("index builds")
        .with_page_cache_bytes(0);
    let runtime = runtime();
    let mut group = c.benchmark_group("fixtures_search_100k");
    group.sample_size(20);
    let cases = [
        ("*", 50),
        ("hashtags:bitcoin", 50),
        ("\"new report\"", 50),
        ("user.followers_count:[1000 TO 5000] AND NOT lang:en", 50),
        ("user.screen_name:ann*", 50),
        ("*", 100_000),
    ];
    for (query, size) in cases {
        let q = SearchQuery {
            query: query.into(),
            from: 0,
            size,
        };
        group.bench_with_input(BenchmarkId::new(query, size), &q, |b, q| {
            b.iter(|| search_page(&runtime, &source, black_box(q)))
        });
    }
    // The same phrase asked again, answered from the page cache.
    let cached = EmbeddedDatasource::from_records("tweets", tweets(100_000)).expect("index builds");
    let phrase = SearchQuery {
        query: "\"new report\"".into(),
        from: 0,
        size: 50,
    };
    group.bench_with_input(
        BenchmarkId::new("\"new report\" asked again (page cache)", 50),
        &phrase,
        |b, q| b.iter(|| search_page(&runtime, &cached, black_box(q))),
    );
    group.finish();
}

/// A `_search` response of `size` demo tweets, as a cluster sends it.
fn es_response(size: usize) -> String {
    let hits: Vec<Value> = records(Kind::Tweets, size, 3)
        .map(|source| {
            serde_json::json!({"_index": "demo-tweets", "_id": source["id"].clone(), "_score": 1.0, "_source": source})
        })
        .collect();
    serde_json::json!({"took": 1, "timed_out": false,
        "hits": {"total": {"value": 100000, "relation": "eq"}, "max_score": 1.0, "hits": hits}})
    .to_string()
}

/// The route before `elasticsearch::hits`: a `Value` tree, each `_source`
/// flattened into a map, the map encoded.
fn es_items_through_a_tree(text: &str) -> Vec<Item> {
    let page: Value = serde_json::from_str(text).expect("JSON");
    page["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| {
            let mut fields = match hit.get("_source") {
                Some(Value::Object(source)) => tributary::datasources::flatten::flatten(source),
                _ => Map::new(),
            };
            fields.insert("_index".into(), hit["_index"].clone());
            Item::from_fields(hit["_id"].as_str().unwrap_or_default(), &fields)
        })
        .collect()
}

fn es_response_parsing(c: &mut Criterion) {
    use tributary::datasources::elasticsearch::hits::Page;
    let mut group = c.benchmark_group("es_response");
    for size in [50usize, 500] {
        let text = es_response(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("hits::Page", size), &text, |b, text| {
            b.iter(|| Page::parse(black_box(text)).expect("a page").into_items())
        });
        group.bench_with_input(BenchmarkId::new("value_tree", size), &text, |b, text| {
            b.iter(|| es_items_through_a_tree(black_box(text)))
        });
    }
    group.finish();
}

/// A frame through a connection's outbox: queued by a request, taken by
/// the response body as websocket bytes (a 50-item ITEMS_RECEIVE, and a
/// 500-item one, sent as header and shared payload).
fn outbox_push(c: &mut Criterion) {
    use futures_util::StreamExt;
    use std::sync::Arc;
    use tributary::metrics::Metrics;
    use tributary::outbox::Outbox;

    let source = EmbeddedDatasource::from_records("tweets", tweets(500)).expect("index builds");
    let runtime = runtime();
    let mut group = c.benchmark_group("outbox");
    for size in [50u64, 500] {
        let (total, items) = search_page(
            &runtime,
            &source,
            &SearchQuery {
                query: "*".into(),
                from: 0,
                size,
            },
        );
        let echo = Echo::default();
        let frame = ServerMessage::Items {
            echo: &echo,
            server: "tweets",
            total,
            from: 0,
            results: &items,
        }
        .encode();
        let (outbox, mut body) = Outbox::new(64 << 20, Arc::new(Metrics::new()));
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("send_and_write", size), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    outbox.send(1, frame.clone()).await.expect("open");
                    // Header and payload (one chunk for a small frame): done
                    // once more bytes than the payload have been written.
                    let mut written = 0;
                    while written < frame.len() {
                        match body.next().await {
                            Some(Ok(bytes)) => written += bytes.len(),
                            _ => break,
                        }
                    }
                })
            })
        });
    }
    group.finish();
}

/// Building a regular expression's automaton: tantivy-fst's `Regex` (one
/// call nothing can stop, every byte tried from every state) against the
/// `fixtures` builder (within a budget, one step per byte class).
fn regex_automata(c: &mut Criterion) {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use tributary::datasources::embedded::regex_dfa::RegexDfa;
    use tributary::datasources::embedded::Budget;
    let budget = || Budget {
        canceled: Arc::new(AtomicBool::new(false)),
        deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        max_terms: 100_000,
    };
    let mut group = c.benchmark_group("regex_automaton");
    group.sample_size(10);
    for pattern in ["bitc.*n", ".*coin", "[a-z]{1,20}", "(a{1,255}){3}"] {
        group.bench_with_input(BenchmarkId::new("tantivy-fst", pattern), pattern, |b, p| {
            b.iter(|| tantivy_fst::Regex::new(black_box(p)).is_ok())
        });
        group.bench_with_input(BenchmarkId::new("regex_dfa", pattern), pattern, |b, p| {
            let regex = tributary::query::pattern::Regex::Plain(p.to_owned());
            b.iter(|| RegexDfa::new(black_box(&regex), &budget()).is_ok())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decode,
    encode,
    search,
    regex_automata,
    es_response_parsing,
    outbox_push
);
criterion_main!(benches);
