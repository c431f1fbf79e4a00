use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// mimalloc gives freed memory back to the system: bursts of large searches do
// not ratchet the resident size up the way glibc's arenas do (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A search-federation server: one query, many datasources, results streamed over a websocket.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (see tributary.example.toml); without one the built-in demo datasets are served.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (overrides `listen` in the config).
    #[arg(long)]
    listen: Option<String>,
    /// Serve the web UI from this folder instead of the copy built into the binary.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Log lines as text, or as JSON objects (one a line) for a log collector.
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    // Colors only for a person at a terminal, and never with NO_COLOR set.
    use std::io::IsTerminal;
    let colors = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(colors).init(),
        LogFormat::Json => logs.json().init(),
    }
    // Peer recovery may start this program again on a peer's records.
    tributary::live::recovery::allow_starting_again();
    let result = tributary::config::load(cli.config.as_deref(), cli.listen.as_deref()).and_then(
        |mut settings| {
            if let Some(dir) = cli.static_dir {
                settings.static_dir = Some(dir);
            }
            actix_web::rt::System::new().block_on(tributary::http::run(
                settings,
                tributary::datasources::Registry::with_builtin(),
            ))
        },
    );
    if let Err(message) = result {
        eprintln!("tributary: {message}");
        std::process::exit(2);
    }
}
