//! What a node acknowledges it keeps: published records in its data
//! directory, through SIGKILL and SIGTERM, refused whole when the disk
//! cannot take them, and a data directory that cannot be trusted stops the
//! start with a message naming the file. Real processes of the binary,
//! killed for real.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_tributary");

/// Records a batch holds in these tests.
const BATCH: usize = 10;

/// A folder with a configuration: publishing open, one embedded
/// datasource `notes` of three records, data kept beside the file.
fn node_folder(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a folder");
    std::fs::write(
        dir.path().join("notes.ndjson"),
        (1..=3)
            .map(|n| format!("{{\"id\":\"base-{n}\",\"batch\":0,\"text\":\"base\"}}\n"))
            .collect::<String>(),
    )
    .expect("writes");
    std::fs::write(
        dir.path().join("tributary.toml"),
        format!(
            "{extra}\n[publish]\nenabled = true\n\n[datasources.notes]\ntype = \"embedded\"\npath = \"notes.ndjson\"\n"
        ),
    )
    .expect("writes");
    dir
}

/// A running node; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `folder`'s configuration: the node, or what it
/// wrote to standard error when it stopped instead.
fn start_node(folder: &Path) -> Result<Node, String> {
    let log = folder.join(format!("node-{}.log", std::process::id()));
    let stderr = std::fs::File::create(&log).expect("a log file");
    let mut child = Command::new(BIN)
        .args([
            "--config",
            folder.join("tributary.toml").to_str().expect("a path"),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let printed = line.trim().rsplit("http://").next().unwrap_or("");
    match printed.parse() {
        Ok(addr) => Ok(Node { child, addr }),
        Err(_) => {
            let status = child.wait().expect("it ends");
            assert!(!status.success(), "a node that does not start says so");
            Err(std::fs::read_to_string(&log).unwrap_or_default())
        }
    }
}

impl Node {
    /// SIGTERM, and the exit awaited.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("it ends");
        assert!(
            exit.success(),
            "a node stopped by SIGTERM exits cleanly: {exit}"
        );
    }

    async fn total(&self, query: &str) -> u64 {
        let mut client = Client::connect_url(&format!("ws://{}/ws", self.addr)).await;
        let _initial = client.recv().await;
        let answer = client.items(&["notes"], query, 0, 1, "#000").await;
        items_of(&answer[0])["total"].as_u64().expect("a total")
    }

    async fn publish(&self, body: &str) -> (u16, Value) {
        let (status, reply) =
            http_post(self.addr, "/api/datasources/notes/records", &[], body).await;
        (status, serde_json::from_str(&reply).unwrap_or(Value::Null))
    }
}

/// The body of batch `n`: `BATCH` records, ids `n-0`, `n-1`…
fn batch(n: usize) -> String {
    (0..BATCH)
        .map(|i| {
            json!({"id": format!("{n}-{i}"), "batch": n, "text": "published"}).to_string() + "\n"
        })
        .collect()
}

/// A POST that may get no answer (the node killed meanwhile): the status, if one came.
async fn try_publish(addr: std::net::SocketAddr, body: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "POST /api/datasources/notes/records HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn every_batch_acknowledged_before_sigkill_is_there_after_a_restart_and_none_is_half_there() {
    let folder = node_folder("");
    let node = start_node(folder.path()).expect("starts");
    let addr = node.addr;
    // Four publishers send numbered batches until the node is killed.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let next = Arc::clone(&next);
        let acknowledged = Arc::clone(&acknowledged);
        publishers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match try_publish(addr, &batch(n)).await {
                    Some(200) => acknowledged.lock().expect("lock").push(n),
                    Some(other) => panic!("batch {n}: {other}"),
                    None => return,
                }
            }
        }));
    }
    eventually("60 batches acknowledged", || {
        acknowledged.lock().expect("lock").len() >= 60
    })
    .await;
    drop(node); // SIGKILL, publishes in flight
    for publisher in publishers {
        publisher
            .await
            .expect("a publisher ends when the node is gone");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let sent = next.load(std::sync::atomic::Ordering::SeqCst);

    let node = start_node(folder.path()).expect("restarts on the same data");
    let mut whole_unacknowledged = 0;
    for n in 1..sent {
        let held = node.total(&format!("batch:{n}")).await;
        if acknowledged.contains(&n) {
            assert_eq!(held, BATCH as u64, "acknowledged batch {n}");
        } else {
            // Kept before the kill but not answered, or not kept: never part of it.
            assert!(
                held == 0 || held == BATCH as u64,
                "batch {n}: {held} records"
            );
            whole_unacknowledged += usize::from(held > 0);
        }
    }
    let expected = 3 + (acknowledged.len() + whole_unacknowledged) * BATCH;
    assert_eq!(node.total("*").await, expected as u64);

    // A publisher retrying a batch whose answer it lost duplicates nothing.
    let last = acknowledged.iter().max().copied().expect("some");
    let (status, reply) = node.publish(&batch(last)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["replaced"], BATCH, "{reply}");
    assert_eq!(node.total("*").await, expected as u64);
}

#[tokio::test]
async fn positions_go_on_after_sigterm_and_a_second_process_on_the_same_data_is_refused() {
    let folder = node_folder("");
    let node = start_node(folder.path()).expect("starts");
    let mut last = Value::Null;
    for n in 1..=3 {
        let (status, reply) = node.publish(&batch(n)).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["replaced"], 0, "{reply}");
        last = reply;
    }
    assert_eq!(last["offset"], 3, "{last}");

    // The same folder, another process: refused, saying what to do.
    let refused = start_node(folder.path())
        .err()
        .expect("a second process is refused");
    assert!(
        refused.contains("in use by another tributary process") && refused.contains("data_dir"),
        "{refused}"
    );
    assert!(!refused.contains("panicked"), "{refused}");

    node.terminate();
    let node = start_node(folder.path()).expect("restarts");
    assert_eq!(node.total("*").await, 3 + 3 * BATCH as u64);
    // Ids compared as Elasticsearch compares `_id`: 7 and "7" are one record.
    let (status, reply) = node
        .publish("{\"id\":7,\"batch\":4}\n{\"id\":\"7\",\"batch\":4}")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["replaced"], 1, "{reply}");
    assert_eq!(node.total("batch:4").await, 1);
    // The stream goes on where it was, in the same epoch.
    assert_eq!(reply["offset"], 4, "{reply}");
    assert_eq!(reply["epoch"], last["epoch"], "{reply}");
}

/// Overwrites bytes of `file` at `at`.
fn damage(file: &Path, at: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("opens");
    handle.seek(SeekFrom::Start(at)).expect("seeks");
    handle.write_all(b"XXXX").expect("writes");
}

fn published_log(folder: &Path) -> PathBuf {
    folder.join("data").join("notes").join("published.log")
}

#[tokio::test]
async fn damaged_data_stops_the_start_naming_the_file_and_a_torn_end_is_dropped() {
    let folder = node_folder("");
    let node = start_node(folder.path()).expect("starts");
    for n in 1..=3 {
        assert_eq!(node.publish(&batch(n)).await.0, 200);
    }
    node.terminate();
    let log = published_log(folder.path());
    let length = std::fs::metadata(&log).expect("the log").len();

    // The end of the last entry cut off, as a crash mid-write leaves it:
    // the entry was never acknowledged, and the rest is kept.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("opens");
    file.set_len(length - 5).expect("truncates");
    drop(file);
    let node = start_node(folder.path()).expect("a torn end does not stop the start");
    assert_eq!(node.total("*").await, 3 + 2 * BATCH as u64);
    assert_eq!(node.publish(&batch(3)).await.0, 200);
    node.terminate();

    // Damage before the end: never a silently smaller index.
    damage(&log, 60);
    let refused = start_node(folder.path())
        .err()
        .expect("damaged data stops the start");
    assert!(
        refused.contains(log.to_str().expect("a path")) && refused.contains("damaged"),
        "{refused}"
    );
    assert!(!refused.contains("panicked"), "{refused}");
}

/// A tmpfs of `size` mounted on `at`, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(at).expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs (these tests run as root)"
        );
        Mounted(at.to_owned())
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(status.success());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_or_read_only_disk_refuses_publishes_by_name_and_searches_go_on() {
    let folder = node_folder("data_dir = \"disk\"");
    let disk = Mounted::tmpfs(&folder.path().join("disk"), "256k");
    let node = start_node(folder.path()).expect("starts");
    // Batches of about 20 KiB until the disk is full.
    let big = |n: usize| -> String {
        (0..BATCH)
            .map(|i| {
                json!({"id": format!("{n}-{i}"), "batch": n, "text": "x".repeat(2000)}).to_string()
                    + "\n"
            })
            .collect()
    };
    let mut kept = 0;
    let refusal = loop {
        let (status, reply) = node.publish(&big(kept + 1)).await;
        match status {
            200 => kept += 1,
            _ => break (status, reply),
        }
        assert!(kept < 100, "a 256 KiB disk fills");
    };
    let (status, reply) = refusal;
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("No space left") || error.contains("space"),
        "{error}"
    );
    assert!(error.contains("nothing was published"), "{error}");
    // Refused whole, and searches are answered.
    assert_eq!(node.total(&format!("batch:{}", kept + 1)).await, 0);
    assert_eq!(node.total("*").await, 3 + (kept * BATCH) as u64);
    drop(node);
    // Everything acknowledged is there after a kill; then the disk turns read-only.
    let node = start_node(folder.path()).expect("restarts");
    assert_eq!(node.total("*").await, 3 + (kept * BATCH) as u64);
    drop(node);
    disk.read_only();
    let node = start_node(folder.path()).expect("a read-only data directory still serves searches");
    assert_eq!(node.total("*").await, 3 + (kept * BATCH) as u64);
    let (status, reply) = node.publish(&batch(1000)).await;
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Read-only") || error.contains("read-only"),
        "{error}"
    );
    assert_eq!(node.total("batch:1000").await, 0);
}
