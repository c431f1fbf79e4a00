//! Feeds arbitrary links' rewrites and values to the normalizer of
//! `EXPAND_REQUEST` links: building one never panics, and applying it never
//! makes a value longer than the limit, whatever `with` repeats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary::expand::{Normalizer, MAX_REWRITTEN};
use tributary::protocol::LinkRewrite;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `regex\twith\tregex\twith…\nvalue`
    let (rules, value) = text.split_once('\n').unwrap_or((text, "a value"));
    let parts: Vec<&str> = rules.split('\t').collect();
    let replace: Vec<LinkRewrite> = parts
        .chunks(2)
        .map(|pair| LinkRewrite {
            regex: pair[0].to_owned(),
            with: pair.get(1).copied().unwrap_or_default().to_owned(),
        })
        .collect();
    if let Ok(normalizer) = Normalizer::new(true, &replace) {
        assert!(normalizer.apply(value).len() <= MAX_REWRITTEN.max(value.len() * 4 + 16));
    }
});
