//! Drives a running tributary server over real websockets and reports what it
//! measured, as text or (`--json`) as one JSON object.
//!
//! ```sh
//! loadgen query  --clients 100 --size 50 --datasources tweets --duration 20s
//! loadgen fanout --datasources tweets,slow --size 50 --repeat 50
//! loadgen stream --datasources tweets100k --size 100000 --repeat 5
//! loadgen idle   --connections 10000 --pid "$(pgrep -n tributary)"
//! ```
//!
//! Latency of a request is measured from sending its `ITEMS_REQUEST` to
//! receiving its last `ITEMS_RECEIVE` (the server's `REQUEST_COMPLETED`, which
//! every request here asks for with a `request-id`, tells which one is last).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tributary_client::{Client, ClientError, RequestStats, Search};

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Parser)]
#[command(about = "Load generator for a running tributary server")]
struct Cli {
    /// The server's websocket.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", global = true)]
    url: String,
    /// An API token, for servers that require one.
    #[arg(long, env = "TRIBUTARY_TOKEN", global = true)]
    token: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N clients, each sending ITEMS_REQUESTs in a loop (or at a fixed rate).
    Query(QueryArgs),
    /// One query over several datasources: time to first result and to completion of each,
    /// alone and together.
    Fanout(FanoutArgs),
    /// One client, one large request: items/s and time to the first batch.
    Stream(StreamArgs),
    /// N open connections doing nothing: server memory per connection.
    Idle(IdleArgs),
}

#[derive(Args)]
struct Common {
    /// Datasource ids, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tweets")]
    datasources: Vec<String>,
    /// Query text; repeat the flag to rotate through several.
    #[arg(long = "query", default_value = "*")]
    queries: Vec<String>,
    /// Results per request.
    #[arg(long, default_value_t = 50)]
    size: u64,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests before this are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Requests per second per client; without it each client sends its next
    /// request as soon as the previous one completes.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 50)]
    repeat: usize,
}

#[derive(Args)]
struct StreamArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

#[derive(Args)]
struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// The server's pid, to read its resident memory from /proc.
    #[arg(long)]
    pid: u32,
    /// How many connections are being opened at any moment.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// How long to hold the connections open before measuring.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    hold: Duration,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let outcome = match &cli.mode {
        Mode::Query(args) => query_mode(&cli, args).await,
        Mode::Fanout(args) => fanout_mode(&cli, args).await,
        Mode::Stream(args) => stream_mode(&cli, args).await,
        Mode::Idle(args) => idle_mode(&cli, args).await,
    };
    match outcome {
        Ok(report) => {
            if cli.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text);
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

struct Report {
    text: String,
    json: Value,
}

// ------------------------------------------------------------------ the wire

async fn connect(cli: &Cli) -> Result<Client, String> {
    Client::connect_with(&cli.url, cli.token.as_deref())
        .await
        .map_err(|e| match e {
            ClientError::Connect(cause) => format!("cannot connect to {}: {cause}", cli.url),
            other => format!("{}: {other}", cli.url),
        })
}

/// Sends one ITEMS_REQUEST and reads its reply for counts and timings.
async fn run_request(
    client: &mut Client,
    datasources: &[String],
    query: &str,
    size: u64,
) -> Result<RequestStats, String> {
    let search = Search::new(datasources.iter().cloned(), query)
        .size(size)
        .color("#4363d8");
    client
        .request_stats(search)
        .await
        .map_err(|e| e.to_string())
}

// ------------------------------------------------------------------ figures

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

fn percentile_text(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        h.len()
    )
}

// ------------------------------------------------------------------ modes

async fn query_mode(cli: &Cli, args: &QueryArgs) -> Result<Report, String> {
    let mut sockets = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        sockets.push(connect(cli).await?);
    }
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::new();
    for (client, mut socket) in sockets.into_iter().enumerate() {
        let datasources = args.common.datasources.clone();
        let queries = args.common.queries.clone();
        let size = args.common.size;
        let interval = args
            .rate
            .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
        // Spread the clients' schedules over one interval, so a fixed rate
        // arrives evenly rather than in bursts of every client at once.
        let offset = interval
            .map(|i| i.mul_f64(client as f64 / args.clients as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut totals = RequestStats::default();
            let mut requests = 0u64;
            let mut failure = None;
            let mut next_send = Instant::now() + offset;
            let mut n = 0u64;
            while Instant::now() < end {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next_send.into()).await;
                    next_send += interval;
                }
                n += 1;
                let query = &queries[(client + n as usize) % queries.len()];
                let sent = Instant::now();
                match run_request(&mut socket, &datasources, query, size).await {
                    Ok(outcome) if sent >= measure_from && sent < end => {
                        record(&mut latencies, outcome.latency());
                        totals.items += outcome.items;
                        totals.bytes += outcome.bytes;
                        totals.errors += outcome.errors;
                        requests += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            (latencies, totals, requests, failure)
        }));
    }
    let mut latencies = histogram();
    let mut totals = RequestStats::default();
    let mut requests = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let (h, t, r, f) = task.await.map_err(|e| format!("client task failed: {e}"))?;
        latencies.add(&h).map_err(|e| format!("histogram: {e}"))?;
        totals.items += t.items;
        totals.bytes += t.bytes;
        totals.errors += t.errors;
        requests += r;
        failures.extend(f);
    }
    let secs = args.duration.as_secs_f64();
    let json = json!({
        "mode": "query",
        "clients": args.clients,
        "size": args.common.size,
        "datasources": args.common.datasources,
        "duration_s": secs,
        "latency": percentiles(&latencies),
        "requests_per_s": requests as f64 / secs,
        "items_per_s": totals.items as f64 / secs,
        "bytes_per_s": totals.bytes as f64 / secs,
        "errors": totals.errors,
        "failed_clients": failures.len(),
    });
    let mut text = String::new();
    let _ = writeln!(
        text,
        "query: {} clients, size {}, {:?}, {:.0} s",
        args.clients, args.common.size, args.common.datasources, secs
    );
    let _ = writeln!(text, "  latency      {}", percentile_text(&latencies));
    let _ = writeln!(
        text,
        "  throughput   {:.0} requests/s  {:.0} items/s  {:.1} MB/s",
        requests as f64 / secs,
        totals.items as f64 / secs,
        totals.bytes as f64 / secs / 1e6
    );
    let _ = writeln!(
        text,
        "  errors       {} ERROR messages, {} clients failed{}",
        totals.errors,
        failures.len(),
        failures
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    );
    Ok(Report { text, json })
}

async fn fanout_mode(cli: &Cli, args: &FanoutArgs) -> Result<Report, String> {
    let mut socket = connect(cli).await?;
    let query = &args.common.queries[0];
    let sources = &args.common.datasources;
    // Each datasource alone first: its own latency, the baseline.
    let mut alone: HashMap<&str, Histogram<u64>> = HashMap::new();
    for source in sources {
        let h = alone.entry(source).or_insert_with(histogram);
        for _ in 0..args.repeat {
            let outcome = run_request(
                &mut socket,
                std::slice::from_ref(source),
                query,
                args.common.size,
            )
            .await?;
            record(h, outcome.first_result());
        }
    }
    // Then all together.
    let mut first: HashMap<&str, Histogram<u64>> = HashMap::new();
    let mut done: HashMap<&str, Histogram<u64>> = HashMap::new();
    let mut whole = histogram();
    for _ in 0..args.repeat {
        let outcome = run_request(&mut socket, sources, query, args.common.size).await?;
        for source in sources {
            if let Some(timing) = outcome.datasources.get(source) {
                record(first.entry(source).or_insert_with(histogram), timing.first);
                record(done.entry(source).or_insert_with(histogram), timing.last);
            }
        }
        record(&mut whole, outcome.latency());
    }
    let mut text = format!(
        "fanout: {:?}, query {query:?}, size {}, {} rounds\n",
        sources, args.common.size, args.repeat
    );
    let mut per_source = serde_json::Map::new();
    for source in sources {
        let empty = histogram();
        let a = alone.get(source.as_str()).unwrap_or(&empty);
        let f = first.get(source.as_str()).unwrap_or(&empty);
        let d = done.get(source.as_str()).unwrap_or(&empty);
        let gap = ms(f.value_at_quantile(0.5)) - ms(a.value_at_quantile(0.5));
        let _ = writeln!(text, "  {source}:");
        let _ = writeln!(text, "    first result alone     {}", percentile_text(a));
        let _ = writeln!(text, "    first result together  {}", percentile_text(f));
        let _ = writeln!(text, "    last result together   {}", percentile_text(d));
        let _ = writeln!(text, "    together − alone (p50) {gap:+.3} ms");
        per_source.insert(
            source.clone(),
            json!({
                "first_alone": percentiles(a),
                "first_together": percentiles(f),
                "last_together": percentiles(d),
                "p50_gap_ms": gap,
            }),
        );
    }
    let _ = writeln!(text, "  whole request          {}", percentile_text(&whole));
    let json = json!({
        "mode": "fanout", "datasources": sources, "size": args.common.size, "rounds": args.repeat,
        "per_datasource": per_source, "completion": percentiles(&whole),
    });
    Ok(Report { text, json })
}

async fn stream_mode(cli: &Cli, args: &StreamArgs) -> Result<Report, String> {
    let mut socket = connect(cli).await?;
    let query = &args.common.queries[0];
    let mut runs = Vec::new();
    let mut text = format!(
        "stream: {:?}, query {query:?}, size {}\n",
        args.common.datasources, args.common.size
    );
    for id in 1..=args.repeat as u64 {
        let outcome = run_request(
            &mut socket,
            &args.common.datasources,
            query,
            args.common.size,
        )
        .await?;
        let secs = outcome.latency().as_secs_f64().max(1e-9);
        let run = json!({
            "items": outcome.items,
            "messages": outcome.messages,
            "bytes": outcome.bytes,
            "first_batch_ms": outcome.first_result().as_secs_f64() * 1000.0,
            "last_batch_ms": secs * 1000.0,
            "items_per_s": outcome.items as f64 / secs,
            "mb_per_s": outcome.bytes as f64 / secs / 1e6,
            "errors": outcome.errors,
        });
        let _ = writeln!(
            text,
            "  run {id}: {} items in {} messages; first batch {:.2} ms, last {:.1} ms; {:.0} items/s, {:.1} MB/s",
            outcome.items,
            outcome.messages,
            outcome.first_result().as_secs_f64() * 1000.0,
            secs * 1000.0,
            outcome.items as f64 / secs,
            outcome.bytes as f64 / secs / 1e6
        );
        runs.push(run);
    }
    let json = json!({
        "mode": "stream", "datasources": args.common.datasources, "size": args.common.size, "runs": runs,
    });
    Ok(Report { text, json })
}

/// The resident memory of a process, in KiB, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

async fn idle_mode(cli: &Cli, args: &IdleArgs) -> Result<Report, String> {
    let before = rss_kib(args.pid)?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    let mut first_error = None;
    let mut pending = futures_util::stream::iter((0..args.connections).map(|_| connect(cli)))
        .buffer_unordered(args.parallel.max(1));
    while let Some(result) = pending.next().await {
        match result {
            Ok(socket) => sockets.push(socket),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(args.hold).await;
    let after = rss_kib(args.pid)?;
    let open = sockets.len();
    let per = (after.saturating_sub(before)) as f64 / open.max(1) as f64;
    let mut text = format!(
        "idle: {open} connections open ({failed} failed) in {:.1} s\n",
        opened_in.as_secs_f64()
    );
    if let Some(e) = &first_error {
        let _ = writeln!(text, "  first failure: {e}");
    }
    let _ = writeln!(
        text,
        "  server RSS {before} KiB before, {after} KiB with them open: {per:.1} KiB per connection"
    );
    let json = json!({
        "mode": "idle", "connections": open, "failed": failed,
        "rss_before_kib": before, "rss_after_kib": after, "kib_per_connection": per,
        "open_seconds": opened_in.as_secs_f64(),
    });
    drop(sockets);
    Ok(Report { text, json })
}
