//! Writes the deterministic demo datasets as NDJSON.
//!
//! ```sh
//! cargo run --release --bin datagen -- tweets --count 3000 > datasources/demo/tweets.ndjson
//! cargo run --release --bin datagen -- emails --count 3000 > datasources/demo/emails.ndjson
//! cargo run --release --bin datagen -- tweets --count 100000 > /tmp/tweets-100k.ndjson   # benchmarks
//! ```
//!
//! The same kind, count and seed always give the same bytes. Values are drawn
//! from small pools with a skew, so people, tags and places recur across
//! records and a graph of them has structure.

use std::io::{BufWriter, Write};

use clap::Parser;
use tributary_tools::datagen::{records, Kind};

#[derive(Parser)]
#[command(about = "Write a deterministic demo dataset as NDJSON to stdout")]
struct Cli {
    kind: Kind,
    /// Number of records.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// Seed of the pseudo-random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for record in records(cli.kind, cli.count, cli.seed) {
        writeln!(out, "{record}")?;
    }
    out.flush()
}
