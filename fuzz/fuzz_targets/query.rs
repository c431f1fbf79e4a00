//! Feeds arbitrary query strings to the embedded datasource's search, which
//! checks the query limits before its parser runs. A panic or a stack
//! overflow is a bug: the limits must keep every parser shallow.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tributary::datasources::embedded::EmbeddedDatasource;
use tributary::datasources::query_limits::QueryLimits;
use tributary::datasources::{Datasource, RequestContext, ResultSink, SearchQuery};

fn people() -> &'static EmbeddedDatasource {
    static PEOPLE: OnceLock<EmbeddedDatasource> = OnceLock::new();
    PEOPLE.get_or_init(|| {
        let records = (0..200)
            .map(|i| {
                json!({"id": i, "name": format!("person {i}"), "age": i, "group": format!("g{}", i % 5)})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        EmbeddedDatasource::from_records("people", records).expect("an index")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = QueryLimits::default().check(text);
    let query = SearchQuery {
        query: text.to_owned(),
        from: 0,
        size: 5,
    };
    // Errors are fine; a panic or a stack overflow is the bug.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (mut sink, _) = ResultSink::for_test();
    let _ = runtime.block_on(people().search(&RequestContext::for_test(), &query, &mut sink));
});
