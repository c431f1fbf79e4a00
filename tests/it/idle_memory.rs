//! What an idle websocket costs the server: the figure the patched
//! actix-http and actix-ws in `vendor/` exist for (a connection's buffers
//! released once drained; see vendor/README.md). Measured on the server's
//! own process, started from the binary, so nothing of the test counts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connections measured, after a first batch that warms the allocator.
const CONNECTIONS: usize = 2_000;
const WARM_UP: usize = 200;
/// The bound per idle connection. Measured at 7–10 KiB with the patch
/// (BENCHMARKS.md, "Idle connections"); the published crates add 16 KiB of
/// buffers per connection, which this bound catches.
const BOUND_BYTES: u64 = 16 * 1024;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("the server's VmRSS")
}

async fn open(addr: &str, count: usize, into: &mut Vec<Socket>) {
    for _ in 0..count {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("the upgrade");
        // INITIAL_STATE_RECEIVE: the server has set the connection up and
        // written to it; from here on it is idle.
        let first = socket.next().await.expect("a frame").expect("a frame");
        assert!(first
            .to_text()
            .unwrap_or("")
            .contains("INITIAL_STATE_RECEIVE"));
        into.push(socket);
    }
}

#[tokio::test]
async fn an_idle_websocket_holds_little_memory() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("address")
        .to_owned();
    let pid = server.0.id();

    let mut sockets = Vec::new();
    open(&addr, WARM_UP, &mut sockets).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_of(pid);
    open(&addr, CONNECTIONS, &mut sockets).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_of(pid);
    let per_connection = after.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!(
        "{CONNECTIONS} idle websockets: {} KiB → {} KiB, {:.1} KiB each",
        before >> 10,
        after >> 10,
        per_connection as f64 / 1024.0
    );
    assert!(
        per_connection < BOUND_BYTES,
        "an idle websocket holds {per_connection} bytes of the server's memory (bound {BOUND_BYTES}); did an upgrade of actix-http or actix-ws drop the change in vendor/?"
    );
    drop(sockets);
}
