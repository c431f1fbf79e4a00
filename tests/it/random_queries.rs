//! Property: no query string — random mixes of the query syntax, deep
//! nesting, long operator chains, stray escapes and patterns — crashes the
//! query parser, overflows a stack or runs unbounded. Each case runs on a
//! thread with a 2 MiB stack, the size of the runtime's worker threads, and
//! must end in results or a clear error within the search budget.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use tributary::datasources::query_limits::QueryLimits;
use tributary::datasources::{Datasource, ErrorKind, RequestContext, ResultSink, SearchQuery};

/// Pieces of Lucene / `query_string` syntax, valid and not.
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
    "*",
    "?",
    "~",
    "~2",
    "^2",
    ":",
    "[",
    "]",
    "{",
    "}",
    "/",
    "TO",
    " ",
    "  ",
    "person",
    "p1",
    "name:",
    "age:",
    "group:",
    "address.city:",
    "tags:",
    "_exists_:",
    "*a*b*",
    "/p.*/",
    "[1 TO 5]",
    "{a TO *}",
    "\u{e9}",
    "\u{1F600}",
    "\0",
    "nosuch:",
];

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        // Random sequences of syntax pieces.
        4 => prop::collection::vec(prop::sample::select(PIECES), 0..200)
            .prop_map(|pieces| pieces.concat()),
        // Deep nesting with a prefix, as the attack had it.
        2 => (prop::sample::select(&["(", "+(", "-(", "!(", "NOT (", "a:("][..]), 1..3000usize, prop::bool::ANY)
            .prop_map(|(open, depth, balanced)| {
                let close = if balanced { ")".repeat(depth) } else { String::new() };
                format!("{}person{close}", open.repeat(depth))
            }),
        // Long operator chains without parentheses.
        1 => (prop::sample::select(&["NOT ", "+", "-", "!", "person AND ", "person OR "][..]), 1..5000usize)
            .prop_map(|(op, n)| format!("{}person", op.repeat(n))),
        // Arbitrary text.
        1 => any::<String>(),
    ]
}

#[test]
fn hostile_queries_never_crash_the_parser() {
    let people = Arc::new(people(300));
    let config = ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(text in query())| {
        let people = Arc::clone(&people);
        let query = SearchQuery { query: text.clone(), from: 0, size: 5 };
        let started = Instant::now();
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                // The adapter as the server calls it, with the test sink.
                let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
                let (mut sink, pushed) = ResultSink::for_test();
                runtime
                    .block_on(people.search(&RequestContext::for_test(), &query, &mut sink))
                    .map(|()| pushed.total().unwrap_or(0))
            })
            .expect("a thread")
            .join();
        prop_assert!(outcome.is_ok(), "the search panicked on {:?}", text);
        let outcome = outcome.unwrap_or(Ok(0));
        // Slow debug builds included, nothing runs much past the 2 s budget.
        prop_assert!(started.elapsed() < Duration::from_secs(10), "{:?} took {:?}", text, started.elapsed());
        if let Err(error) = outcome {
            prop_assert!(
                matches!(error.kind, ErrorKind::BadQuery | ErrorKind::Timeout),
                "{:?}: {:?}", text, error
            );
            prop_assert!(!error.message.is_empty());
        }
        // The limits alone answer at once, whatever the query.
        let _ = QueryLimits::default().check(&text);
    });
}
