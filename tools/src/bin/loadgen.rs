//! Drives a running tributary server over real websockets and reports what it
//! measured, as text or (`--json`) as one JSON object.
//!
//! ```sh
//! loadgen query  --clients 100 --size 50 --datasources tweets --duration 20s
//! loadgen fanout --datasources tweets,slow --size 50 --repeat 50
//! loadgen stream --datasources tweets100k --size 100000 --repeat 5
//! loadgen idle   --connections 10000 --pid "$(pgrep -n tributary)"
//! loadgen live   --connections 1000 --rate 1000 --pid "$(pgrep -n tributary)"
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
    /// Connections following live queries while records are published over
    /// HTTP: publish-to-delivery latency, publish throughput, server CPU and
    /// memory per live subscription.
    Live(LiveArgs),
    /// One client expanding from selected values (EXPAND_REQUEST), again and
    /// again: time to the first and the last EXPAND_RECEIVE, server CPU per
    /// expansion.
    Expand(ExpandArgs),
}

#[derive(Args)]
struct ExpandArgs {
    /// Datasource ids, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tweets")]
    datasources: Vec<String>,
    /// The field of the selected values.
    #[arg(long, default_value = "user.screen_name")]
    field: String,
    /// How many of the field's values to expand from: the first N of
    /// `--values`, or, without it, values the server finds first for `*`.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// The selected values, comma-separated.
    #[arg(long, value_delimiter = ',')]
    values: Vec<String>,
    /// The fields of new values, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hashtags,mentions,user.screen_name"
    )]
    fields: Vec<String>,
    /// New values per field.
    #[arg(long, default_value_t = 10)]
    size: u64,
    /// `count` or `significant`.
    #[arg(long, default_value = "count")]
    mode: String,
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// The server's pid: its CPU time for all rounds is reported per expansion.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct LiveArgs {
    /// Websocket connections, each following live queries.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Other nodes of the same cluster (websocket URLs): the connections are
    /// spread over `--url` and these.
    #[arg(long, value_delimiter = ',')]
    also: Vec<String>,
    /// The node records are published to (its websocket URL; default `--url`).
    #[arg(long)]
    publish_to: Option<String>,
    /// Live queries per connection.
    #[arg(long, default_value_t = 1)]
    per_connection: usize,
    /// Distinct queries among all of them (`text:lq<n>`); each published
    /// record matches exactly one.
    #[arg(long, default_value_t = 1)]
    distinct: usize,
    /// The fixtures datasource records are published to (a tweets-shaped one).
    #[arg(long, default_value = "tweets")]
    datasource: String,
    /// Records published per second; 0: as fast as the server takes them.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Records per POST.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// The server's pid: its CPU time and memory are read from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// How many connections are being opened at any moment.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// `--url` is a Centrifuge server (`bench/centrifuge-peer`): each live
    /// query is a subscription to channel `lq<n>`, and records are published
    /// with `POST /publish?channel=lq<n>` — the same records, the same
    /// measurements, for a side-by-side comparison.
    #[arg(long)]
    centrifuge: bool,
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
    /// The server's pid: its CPU time over the measured window is read from
    /// /proc and reported per 1,000 requests and per 100,000 items.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    /// The server's pid: its CPU time for the whole run is reported per request.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args)]
struct StreamArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// The server's pid: its CPU time for all runs is reported per 100,000 items.
    #[arg(long)]
    pid: Option<u32>,
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
        Mode::Live(args) => live_mode(&cli, args).await,
        Mode::Expand(args) => expand_mode(&cli, args).await,
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
    connect_to(&cli.url, cli).await
}

async fn connect_to(url: &str, cli: &Cli) -> Result<Client, String> {
    Client::connect_with(url, cli.token.as_deref())
        .await
        .map_err(|e| match e {
            ClientError::Connect(cause) => format!("cannot connect to {url}: {cause}"),
            other => format!("{url}: {other}"),
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
    // The server's and our own CPU over exactly the measured window.
    let pid = args.pid;
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let clock = CpuClock::start(pid)?;
        tokio::time::sleep_until(end.into()).await;
        clock.stop()
    });
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
    let (server_cpu, own_cpu) = cpu_window
        .await
        .map_err(|e| format!("cpu task failed: {e}"))??;
    let per_1000_requests = server_cpu.map(|cpu| cpu * 1000.0 / requests.max(1) as f64);
    let per_100k_items = server_cpu.map(|cpu| cpu * 100_000.0 / totals.items.max(1) as f64);
    let json = json!({
        "server_cpu_ms": server_cpu,
        "server_cpu_ms_per_1000_requests": per_1000_requests,
        "server_cpu_ms_per_100k_items": per_100k_items,
        "loadgen_cpu_ms": own_cpu,
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
    if let (Some(cpu), Some(per_request), Some(per_items)) =
        (server_cpu, per_1000_requests, per_100k_items)
    {
        let _ = writeln!(
            text,
            "  server CPU   {cpu:.0} ms: {per_request:.1} ms per 1,000 requests, {per_items:.1} ms per 100,000 items"
        );
    }
    let _ = writeln!(text, "  loadgen CPU  {own_cpu:.0} ms");
    Ok(Report { text, json })
}

/// The next text frame as JSON.
async fn next_json(client: &mut Client) -> Result<Value, String> {
    loop {
        match client.next_frame().await.map_err(|e| e.to_string())? {
            tributary_client::Frame::Text(text) => {
                return serde_json::from_str(&text).map_err(|e| e.to_string())
            }
            tributary_client::Frame::Binary(_) => continue,
            tributary_client::Frame::Closed(reason) => {
                return Err(format!("the server closed the connection: {reason:?}"))
            }
        }
    }
}

async fn expand_mode(cli: &Cli, args: &ExpandArgs) -> Result<Report, String> {
    let mut client = connect(cli).await?;
    let mut values = args.values.clone();
    if values.is_empty() {
        // The field's first distinct values among the first records.
        let reply = client
            .request(Search::new(args.datasources[..1].iter().cloned(), "*").size(2000))
            .await
            .map_err(|e| e.to_string())?;
        for item in reply.items() {
            if let Some(Value::String(value)) = item.field_map().get(&args.field) {
                if !values.contains(value) {
                    values.push(value.clone());
                }
            }
        }
    }
    values.truncate(args.count);
    if values.is_empty() {
        return Err(format!("no values of `{}` to expand from", args.field));
    }
    let selected: Vec<Value> = values
        .iter()
        .map(|v| json!({"field": args.field, "value": v}))
        .collect();
    let clock = CpuClock::start(args.pid)?;
    let (mut first, mut last) = (histogram(), histogram());
    let mut vertices = 0u64;
    for round in 0..args.repeat {
        let id = format!("x{round}");
        let request = json!({"type": "EXPAND_REQUEST", "request-id": id, "datasources": args.datasources,
                             "values": selected, "fields": args.fields, "size": args.size, "mode": args.mode});
        let started = Instant::now();
        client
            .send_text(&request.to_string())
            .await
            .map_err(|e| e.to_string())?;
        let mut first_at = None;
        loop {
            let message = next_json(&mut client).await?;
            if message["request-id"] != json!(id) {
                continue;
            }
            match message["type"].as_str() {
                Some("EXPAND_RECEIVE") => {
                    first_at.get_or_insert_with(|| started.elapsed());
                    vertices += message["vertices"].as_array().map_or(0, |v| v.len() as u64);
                }
                Some("ERROR") => return Err(format!("the server refused: {message}")),
                Some("REQUEST_COMPLETED") => break,
                _ => {}
            }
        }
        record(&mut last, started.elapsed());
        record(&mut first, first_at.unwrap_or_else(|| started.elapsed()));
    }
    let (server_cpu, own_cpu) = clock.stop()?;
    let per_expansion = server_cpu.map(|cpu| cpu / args.repeat.max(1) as f64);
    let mut text = format!(
        "expand: {} value(s) of {} over {:?} into {:?} ({} mode, size {}), {} rounds\n",
        values.len(),
        args.field,
        args.datasources,
        args.fields,
        args.mode,
        args.size,
        args.repeat
    );
    let _ = writeln!(text, "  first EXPAND_RECEIVE  {}", percentile_text(&first));
    let _ = writeln!(text, "  last (completed)      {}", percentile_text(&last));
    let _ = writeln!(
        text,
        "  new values per round  {}",
        vertices / args.repeat.max(1) as u64
    );
    if let Some(per) = per_expansion {
        let _ = writeln!(text, "  server CPU {per:.1} ms per expansion");
    }
    let _ = writeln!(text, "  loadgen CPU {own_cpu:.0} ms");
    let json = json!({
        "mode": "expand", "datasources": args.datasources, "values": values.len(), "rounds": args.repeat,
        "first": percentiles(&first), "last": percentiles(&last),
        "server_cpu_ms_per_expansion": per_expansion, "loadgen_cpu_ms": own_cpu,
    });
    Ok(Report { text, json })
}

async fn fanout_mode(cli: &Cli, args: &FanoutArgs) -> Result<Report, String> {
    let mut socket = connect(cli).await?;
    let query = &args.common.queries[0];
    let sources = &args.common.datasources;
    let clock = CpuClock::start(args.pid)?;
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
    let (server_cpu, own_cpu) = clock.stop()?;
    let requests = (args.repeat * (sources.len() + 1)) as f64;
    let per_1000_requests = server_cpu.map(|cpu| cpu * 1000.0 / requests.max(1.0));
    if let (Some(cpu), Some(per)) = (server_cpu, per_1000_requests) {
        let _ = writeln!(
            text,
            "  server CPU {cpu:.0} ms: {per:.0} ms per 1,000 requests"
        );
    }
    let _ = writeln!(text, "  loadgen CPU {own_cpu:.0} ms");
    let json = json!({
        "mode": "fanout", "datasources": sources, "size": args.common.size, "rounds": args.repeat,
        "per_datasource": per_source, "completion": percentiles(&whole),
        "server_cpu_ms": server_cpu, "server_cpu_ms_per_1000_requests": per_1000_requests, "loadgen_cpu_ms": own_cpu,
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
    let clock = CpuClock::start(args.pid)?;
    let mut items = 0u64;
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
        items += outcome.items;
        runs.push(run);
    }
    let (server_cpu, own_cpu) = clock.stop()?;
    let per_100k_items = server_cpu.map(|cpu| cpu * 100_000.0 / items.max(1) as f64);
    if let (Some(cpu), Some(per)) = (server_cpu, per_100k_items) {
        let _ = writeln!(
            text,
            "  server CPU {cpu:.0} ms: {per:.0} ms per 100,000 items"
        );
    }
    let _ = writeln!(text, "  loadgen CPU {own_cpu:.0} ms");
    let json = json!({
        "mode": "stream", "datasources": args.common.datasources, "size": args.common.size, "runs": runs,
        "server_cpu_ms": server_cpu, "server_cpu_ms_per_100k_items": per_100k_items, "loadgen_cpu_ms": own_cpu,
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

// ------------------------------------------------------------------ live

/// CPU time (user + system) of a process so far, in milliseconds, from
/// /proc/<pid>/stat (clock ticks of 10 ms, Linux's USER_HZ).
fn cpu_ms(pid: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces: fields are counted after its `)`.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; after `)` they are the 12th and 13th.
    Ok((ticks(11) + ticks(12)) * 10.0)
}

/// The server's CPU time (with `--pid`) and ours, from a start to a stop.
struct CpuClock {
    server: Option<(String, f64)>,
    own: f64,
}

impl CpuClock {
    fn start(pid: Option<u32>) -> Result<CpuClock, String> {
        let server = match pid {
            Some(pid) => {
                let pid = pid.to_string();
                let now = cpu_ms(&pid)?;
                Some((pid, now))
            }
            None => None,
        };
        Ok(CpuClock {
            server,
            own: cpu_ms("self")?,
        })
    }

    /// Milliseconds of CPU since the start: the server's (if known), and ours.
    fn stop(&self) -> Result<(Option<f64>, f64), String> {
        let server = match &self.server {
            Some((pid, before)) => Some(cpu_ms(pid)? - before),
            None => None,
        };
        Ok((server, cpu_ms("self")? - self.own))
    }
}

/// A keep-alive HTTP/1.1 connection for publishing records.
struct Publisher {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
    path: String,
    token: Option<String>,
}

impl Publisher {
    async fn connect(
        url: &str,
        datasource: &str,
        token: Option<&str>,
    ) -> Result<Publisher, String> {
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(url)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Publisher {
            stream: tokio::io::BufReader::new(stream),
            host,
            path: format!("/api/datasources/{datasource}/records"),
            token: token.map(str::to_owned),
        })
    }

    /// POSTs a body; an error unless the server answers 200.
    async fn publish(&mut self, body: &str) -> Result<(), String> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n",
            self.path,
            self.host,
            body.len()
        );
        if let Some(token) = &self.token {
            let _ = write!(head, "Authorization: Bearer {token}\r\n");
        }
        head.push_str("\r\n");
        // One write: head and body in two would wait on Nagle's algorithm.
        head.push_str(body);
        self.stream
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut status = String::new();
        self.stream
            .read_line(&mut status)
            .await
            .map_err(|e| e.to_string())?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut reply = vec![0; length];
        self.stream
            .read_exact(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        if status.split(' ').nth(1) != Some("200") {
            return Err(format!(
                "publishing failed: {} {}",
                status.trim(),
                String::from_utf8_lossy(&reply)
            ));
        }
        Ok(())
    }
}

/// The record the live mode publishes: tweet-shaped, 483 bytes as JSON (with
/// a four-digit sequence number and a six-digit send time), matching live
/// query `text:lq<q>` only.
fn live_record(n: u64, q: usize, sent: u128) -> Value {
    json!({"id": format!("lb{n}"), "created_at": "2026-11-23T12:00:00Z",
           "text": format!("lq{q} benchmark record about #opendata and #bitcoin, as long as a tweet is, padded up to 483 bytes of JSON in all"),
           "lang": "en", "source": format!("t{sent}"),
           "user": {"screen_name": "loadgen", "name": "Load Generator", "email": "loadgen@acme.example",
                    "location": "Amsterdam", "followers_count": 5492, "verified": false},
           "mentions": ["irish164"], "hashtags": ["opendata", "bitcoin"],
           "in_reply_to_screen_name": null, "retweet_count": 74, "favorite_count": 165})
}

/// Opens a websocket to a Centrifuge server and subscribes to `channels`.
async fn centrifuge_subscriber(url: &str, channels: &[String]) -> Result<Client, String> {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut client = Client::without_greeting(socket);
    client
        .send_text(&json!({"id": 1, "params": {}}).to_string())
        .await
        .map_err(|e| e.to_string())?;
    for (n, channel) in channels.iter().enumerate() {
        let subscribe = json!({"id": n + 2, "method": 1, "params": {"channel": channel}});
        client
            .send_text(&subscribe.to_string())
            .await
            .map_err(|e| e.to_string())?;
    }
    // Replies: the connect, then one per subscription.
    let mut replies = 0;
    while replies < channels.len() + 1 {
        match client.next_frame_within(Duration::from_secs(60)).await {
            Some(Ok(tributary_client::Frame::Text(text))) => {
                for line in text.lines() {
                    let reply: Value = serde_json::from_str(line).unwrap_or_default();
                    if reply.get("error").is_some() {
                        return Err(format!("Centrifuge refused: {line}"));
                    }
                    if reply.get("id").is_some() {
                        replies += 1;
                    }
                }
            }
            _ => return Err("a Centrifuge connection ended before subscribing".into()),
        }
    }
    Ok(client)
}

/// Every reader's deliveries, merged: latencies and how many.
async fn gather(
    readers: Vec<tokio::task::JoinHandle<Deliveries>>,
) -> Result<(Histogram<u64>, u64), String> {
    let mut latency = histogram();
    let mut delivered = 0u64;
    for reader in readers {
        let seen = reader.await.map_err(|e| e.to_string())?;
        delivered += seen.records;
        let _ = latency.add(&seen.latency);
    }
    Ok((latency, delivered))
}

/// What a live run saw, after its first line: deliveries, latencies, CPU.
struct LiveOutcome<'a> {
    published: u64,
    expected: u64,
    delivered: u64,
    batch: usize,
    latency: &'a Histogram<u64>,
    post_latency: &'a Histogram<u64>,
    server_cpu: Option<f64>,
    own_cpu: f64,
}

impl LiveOutcome<'_> {
    fn write(&self, text: &mut String) {
        let LiveOutcome {
            published,
            expected,
            delivered,
            batch,
            latency,
            post_latency,
            server_cpu,
            own_cpu,
        } = self;
        let _ = writeln!(
            text,
            "  delivered {delivered} of {expected} expected record deliveries"
        );
        let _ = writeln!(text, "  publish → delivery: {}", percentile_text(latency));
        let _ = writeln!(
            text,
            "  POST of {batch} records: {}",
            percentile_text(post_latency)
        );
        if let Some(cpu) = server_cpu {
            let _ = writeln!(
                text,
                "  server CPU {cpu:.0} ms: {:.1} ms per 1,000 records published, {:.2} ms per 1,000 deliveries",
                cpu * 1000.0 / (*published).max(1) as f64,
                cpu * 1000.0 / (*delivered).max(1) as f64
            );
        }
        let _ = writeln!(text, "  loadgen CPU {own_cpu:.0} ms");
    }
}

/// What one connection's reader saw: publish-to-delivery latencies.
struct Deliveries {
    latency: Histogram<u64>,
    records: u64,
}

/// The send times (µs since the run began) of the records in a message.
fn sent_times(frame: &str) -> impl Iterator<Item = u64> + '_ {
    const MARK: &str = "\"source\":\"t";
    frame.match_indices(MARK).filter_map(|(at, _)| {
        let digits = &frame[at + MARK.len()..];
        let end = digits.find('"')?;
        digits[..end].parse().ok()
    })
}

async fn read_appends(mut client: Client, epoch: Instant, until: Instant) -> Deliveries {
    let mut seen = Deliveries {
        latency: histogram(),
        records: 0,
    };
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let frame = match client.next_frame_within(left).await {
            Some(Ok(tributary_client::Frame::Text(text))) => text,
            Some(Ok(tributary_client::Frame::Binary(_))) => continue,
            // Closed, failed, or nothing before the deadline.
            _ => break,
        };
        let now = epoch.elapsed();
        // Only appends carry `"source":"t<µs>"`; scanning for it keeps the
        // load generator far lighter than decoding each message.
        for sent in sent_times(&frame) {
            record(
                &mut seen.latency,
                now.saturating_sub(Duration::from_micros(sent)),
            );
            seen.records += 1;
        }
    }
    seen
}

async fn live_mode(cli: &Cli, args: &LiveArgs) -> Result<Report, String> {
    let rss = || args.pid.map(rss_kib).transpose();
    let distinct = args.distinct.max(1);
    let rss_before = rss()?;
    let nodes: Vec<&str> = std::iter::once(cli.url.as_str())
        .chain(args.also.iter().map(String::as_str))
        .collect();
    if args.centrifuge {
        return centrifuge_live(cli, args).await;
    }
    let mut pending = futures_util::stream::iter(
        (0..args.connections).map(|i| connect_to(nodes[i % nodes.len()], cli)),
    )
    .buffer_unordered(args.parallel.max(1));
    let mut clients = Vec::with_capacity(args.connections);
    while let Some(client) = pending.next().await {
        clients.push(client?);
    }
    let rss_connected = rss()?;
    // Every connection follows its queries: a live ITEMS_REQUEST of an empty page each.
    let mut subscribers = vec![0u64; distinct];
    let mut n = 0usize;
    for client in &mut clients {
        for j in 0..args.per_connection {
            let q = n % distinct;
            n += 1;
            subscribers[q] += 1;
            let request = json!({"type":"ITEMS_REQUEST","datasources":[args.datasource],
                "query": format!("text:lq{q}"),"size":0,"request-id":j,"live":true});
            client
                .send_text(&request.to_string())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for client in &mut clients {
        let mut started = 0;
        while started < args.per_connection {
            match client.next_frame_within(Duration::from_secs(60)).await {
                Some(Ok(tributary_client::Frame::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap_or_default();
                    match message["type"].as_str() {
                        Some("LIVE_STARTED") => started += 1,
                        Some("ERROR") => return Err(format!("a live request was refused: {text}")),
                        _ => {}
                    }
                }
                _ => return Err("a connection ended before its live queries started".into()),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_following = rss()?;
    let subscriptions = (args.connections * args.per_connection) as f64;

    let epoch = Instant::now();
    let until = epoch + args.duration + Duration::from_secs(2);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(read_appends(client, epoch, until)))
        .collect();
    let clock = CpuClock::start(args.pid)?;
    let mut publisher = Publisher::connect(
        args.publish_to.as_deref().unwrap_or(&cli.url),
        &args.datasource,
        cli.token.as_deref(),
    )
    .await?;
    let mut published = 0u64;
    let mut expected = 0u64;
    let mut post_latency = histogram();
    let batch = args.batch.max(1);
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(batch as f64 / args.rate));
    let mut next = Instant::now();
    while epoch.elapsed() < args.duration {
        if let Some(interval) = interval {
            next += interval;
            tokio::time::sleep_until(next.into()).await;
        }
        let mut body = String::new();
        for _ in 0..batch {
            let q = (published % distinct as u64) as usize;
            expected += subscribers[q];
            let sent = epoch.elapsed().as_micros();
            let _ = writeln!(body, "{}", live_record(published, q, sent));
            published += 1;
        }
        let posted = Instant::now();
        publisher.publish(&body).await?;
        record(&mut post_latency, posted.elapsed());
    }
    let publish_seconds = epoch.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = clock.stop()?;
    let (latency, delivered) = gather(readers).await?;

    let per_kib = |a: Option<u64>, b: Option<u64>, n: f64| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / n.max(1.0)),
        _ => None,
    };
    let kib_per_connection = per_kib(rss_before, rss_connected, args.connections as f64);
    let kib_per_subscription = per_kib(rss_connected, rss_following, subscriptions);
    let rate = published as f64 / publish_seconds;
    let mut text = format!(
        "live: {} connections × {} live queries ({distinct} distinct), {published} records published in {publish_seconds:.1} s ({rate:.0}/s)\n",
        args.connections, args.per_connection
    );
    LiveOutcome {
        published,
        expected,
        delivered,
        batch,
        latency: &latency,
        post_latency: &post_latency,
        server_cpu,
        own_cpu,
    }
    .write(&mut text);
    if let (Some(c), Some(s)) = (kib_per_connection, kib_per_subscription) {
        let _ = writeln!(
            text,
            "  server RSS {c:.1} KiB per connection, {s:.2} KiB per live subscription"
        );
    }
    let json = json!({
        "mode": "live", "connections": args.connections, "per_connection": args.per_connection,
        "distinct": distinct, "published": published, "publish_seconds": publish_seconds,
        "publish_rate": rate, "delivered": delivered, "expected": expected,
        "latency": percentiles(&latency), "post": percentiles(&post_latency),
        "server_cpu_ms": server_cpu, "loadgen_cpu_ms": own_cpu,
        "kib_per_connection": kib_per_connection, "kib_per_subscription": kib_per_subscription,
    });
    Ok(Report { text, json })
}

/// The live mode against a Centrifuge server: the same subscribers (one
/// channel per distinct query), the same records published at the same
/// rate, the same latency and CPU measurements.
async fn centrifuge_live(cli: &Cli, args: &LiveArgs) -> Result<Report, String> {
    let distinct = args.distinct.max(1);
    let ws_url = cli.url.clone();
    let mut subscribers = vec![0u64; distinct];
    let mut plans = Vec::with_capacity(args.connections);
    let mut n = 0usize;
    for _ in 0..args.connections {
        let mut channels = Vec::with_capacity(args.per_connection);
        for _ in 0..args.per_connection {
            let q = n % distinct;
            n += 1;
            subscribers[q] += 1;
            channels.push(format!("lq{q}"));
        }
        plans.push(channels);
    }
    let mut pending = futures_util::stream::iter(
        plans
            .iter()
            .map(|channels| centrifuge_subscriber(&ws_url, channels)),
    )
    .buffer_unordered(args.parallel.max(1));
    let mut clients = Vec::with_capacity(args.connections);
    while let Some(client) = pending.next().await {
        clients.push(client?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let epoch = Instant::now();
    let until = epoch + args.duration + Duration::from_secs(2);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(read_appends(client, epoch, until)))
        .collect();
    let clock = CpuClock::start(args.pid)?;
    let http = ws_url.replacen("ws://", "http://", 1);
    let mut publisher = Publisher::connect(&http, "", None).await?;
    let mut published = 0u64;
    let mut expected = 0u64;
    let mut post_latency = histogram();
    let batch = args.batch.max(1);
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(batch as f64 / args.rate));
    let mut next = Instant::now();
    let mut record_bytes = 0;
    while epoch.elapsed() < args.duration {
        if let Some(interval) = interval {
            next += interval;
            tokio::time::sleep_until(next.into()).await;
        }
        // A batch goes to one channel: the records of a POST share a query.
        let q = (published % distinct as u64) as usize;
        let mut records = Vec::with_capacity(batch);
        for _ in 0..batch {
            expected += subscribers[q];
            let sent = epoch.elapsed().as_micros();
            records.push(live_record(published, q, sent));
            published += 1;
        }
        let body = if batch == 1 {
            records[0].to_string()
        } else {
            Value::Array(records).to_string()
        };
        record_bytes = body.len() / batch;
        publisher.path = format!("/publish?channel=lq{q}");
        let posted = Instant::now();
        publisher.publish(&body).await?;
        record(&mut post_latency, posted.elapsed());
    }
    let publish_seconds = epoch.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = clock.stop()?;
    let (latency, delivered) = gather(readers).await?;
    let rate = published as f64 / publish_seconds;
    let mut text = format!(
        "live (Centrifuge): {} connections × {} subscriptions ({distinct} distinct channels), {published} records of {record_bytes} bytes published in {publish_seconds:.1} s ({rate:.0}/s)\n",
        args.connections, args.per_connection
    );
    LiveOutcome {
        published,
        expected,
        delivered,
        batch,
        latency: &latency,
        post_latency: &post_latency,
        server_cpu,
        own_cpu,
    }
    .write(&mut text);
    let json = json!({
        "mode": "live", "peer": "centrifuge", "connections": args.connections,
        "per_connection": args.per_connection, "distinct": distinct, "published": published,
        "publish_seconds": publish_seconds, "publish_rate": rate, "delivered": delivered,
        "expected": expected, "latency": percentiles(&latency), "post": percentiles(&post_latency),
        "server_cpu_ms": server_cpu, "loadgen_cpu_ms": own_cpu, "record_bytes": record_bytes,
    });
    Ok(Report { text, json })
}
