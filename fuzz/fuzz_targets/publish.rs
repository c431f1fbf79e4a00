//! Feeds arbitrary bodies to the parser of `POST /api/datasources/<id>/records`.
//! It must never panic, refuse what would cost more than its budget parsed,
//! and name a place for every record it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((records, places)) = tributary::publish::parse_body(data, 1 << 20) {
        assert_eq!(records.len(), places.len());
    }
});
