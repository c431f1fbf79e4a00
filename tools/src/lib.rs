//! Tools around a tributary server; the library holds what they share with
//! benchmarks and tests.
//!
//! - [`datagen`]: deterministic demo datasets (the `datagen` binary writes them as NDJSON);
//! - `loadgen` (a binary): drives a running server over real websockets and
//!   reports what it measured.

pub mod datagen;
