//! Peer recovery: a node whose position the broker's stream no longer holds
//! (part of it is gone: trimmed by hand, or lost with a Redis that restarted
//! without its append-only file) cannot catch up from the stream. As
//! Elasticsearch's peer recovery copies a shard's files from a copy that has
//! them, it copies a ready node's log of published records, checks every
//! entry of the copy, puts it in place of its own (kept beside as
//! `published.log.before-recovery`) and starts again on it — the same
//! process, the same address and arguments — then catches up from the
//! stream as after any restart.
//!
//! Nodes find each other in the broker: every node notes its address and
//! readiness in the `nodes` hash every 2 s, under its address (so a node
//! that restarts replaces its own note). A node serves its log at
//! `GET /api/cluster/datasources/<id>/log` to holders of the cluster's key
//! (`cluster` hash, made by the first node; only nodes sharing the Redis
//! know it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::applied::{records_stream, Streams};
use super::{retention, unix_ms, Broker};
use crate::federation::Federation;

/// Whether this process may start itself again (the `tributary` program
/// allows it; a server embedded in another program, such as the tests', does
/// not, and such a node stays not ready instead).
static MAY_START_AGAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets peer recovery start this process again once it has copied a
/// peer's records (`main` calls it).
pub fn allow_starting_again() {
    MAY_START_AGAIN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The hash of nodes and their addresses.
const NODES: &str = "nodes";
/// The hash holding the cluster's key.
const CLUSTER: &str = "cluster";
/// How often a node notes itself, and looks for a way to recover.
const EVERY: Duration = Duration::from_secs(2);
/// A node not heard of for this long is not asked.
const FRESH_MS: u64 = 10_000;
/// A node that recovered this recently and is missing records again does
/// not copy again (the peers lack them too): it says so and stays out.
const AGAIN_AFTER: Duration = Duration::from_secs(120);
/// The longest a copy of a peer's log may take.
const COPY_WITHIN: Duration = Duration::from_secs(600);
/// Beside the log: when this node last recovered it from a peer.
const RECOVERED_MARK: &str = "recovered-from-peer";

/// The address other nodes reach this one at: the setting, or `http://`
/// and the address it listens on (this host's name when that is every
/// address).
pub fn advertised(setting: Option<&str>, listening: std::net::SocketAddr) -> String {
    if let Some(url) = setting {
        return url.trim_end_matches('/').to_owned();
    }
    if listening.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("http://{host}:{}", listening.port())
    } else {
        format!("http://{listening}")
    }
}

/// The cluster's key, as the broker holds it now (made by whoever asks first).
pub async fn cluster_key(broker: &Broker) -> Result<String, String> {
    if let Some(key) = broker.fields(CLUSTER).await?.remove("key") {
        return Ok(key);
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    broker.set_field(CLUSTER, "key", &key).await?;
    // Two nodes starting at once: the key written last is the one.
    broker
        .fields(CLUSTER)
        .await?
        .remove("key")
        .ok_or_else(|| "the broker lost the cluster's key".into())
}

/// Notes this node in the broker every 2 s (its address, readiness, and
/// how far it applied each stream of records kept); while a stream is
/// stuck, copies a ready peer's log and starts again on it; and trims
/// what every node has applied ([`retention`]).
pub async fn run(
    federation: Arc<Federation>,
    broker: Arc<Broker>,
    streams: Arc<Streams>,
    advertise: String,
    trim_applied: Option<Duration>,
    mut shutdown: tokio::sync::watch::Receiver<Option<Duration>>,
) {
    if !broker.has_other_nodes() {
        return;
    }
    let kept = retention::kept_streams(&federation);
    loop {
        let note = json!({"url": advertise, "ready": streams.not_ready().is_none(), "at": unix_ms(),
                          "applied": retention::applied_note(&kept, &streams)});
        if broker
            .set_field(NODES, &advertise, &note.to_string())
            .await
            .is_ok()
        {
            forget_silent_nodes(&broker).await;
            for stream in streams.stuck_streams() {
                if let Err(why) = recover(&federation, &broker, &advertise, &stream).await {
                    tracing::warn!(%stream, reason = %why, "cannot recover from a peer yet");
                }
            }
            if let Some(kept_for) = trim_applied {
                if let Ok(notes) = broker.fields(NODES).await {
                    retention::trim(&broker, &kept, &notes, kept_for).await;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    broker.remove_fields(NODES, vec![advertise.clone()]).await;
                    return;
                }
            }
        }
    }
}

/// Removes nodes not heard of for longer than trimming waits for them.
async fn forget_silent_nodes(broker: &Broker) {
    let Ok(nodes) = broker.fields(NODES).await else {
        return;
    };
    let silent: Vec<String> = nodes
        .into_iter()
        .filter(|(_, note)| {
            let at = serde_json::from_str::<serde_json::Value>(note)
                .ok()
                .and_then(|n| n["at"].as_u64())
                .unwrap_or(0);
            unix_ms().saturating_sub(at) > retention::WAIT_FOR_ABSENT.as_millis() as u64
        })
        .map(|(node, _)| node)
        .collect();
    broker.remove_fields(NODES, silent).await;
}

/// Ready peers' addresses (this node's, `own`, left out), freshest first.
async fn ready_peers(broker: &Broker, own: &str) -> Result<Vec<String>, String> {
    let mut peers: Vec<(u64, String)> = broker
        .fields(NODES)
        .await?
        .into_iter()
        .filter(|(node, _)| node != own)
        .filter_map(|(_, note)| {
            let note: serde_json::Value = serde_json::from_str(&note).ok()?;
            let at = note["at"].as_u64()?;
            let fresh = unix_ms().saturating_sub(at) <= FRESH_MS;
            let url = note["url"].as_str()?.to_owned();
            (fresh && note["ready"] == true).then_some((at, url))
        })
        .collect();
    peers.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(peers.into_iter().map(|(_, url)| url).collect())
}

/// Copies a ready peer's log for the datasource of `stream`, checks it,
/// puts it in place and starts this process again. Returns only when it
/// could not.
async fn recover(
    federation: &Federation,
    broker: &Broker,
    own: &str,
    stream: &str,
) -> Result<(), String> {
    let Some(id) = stream.strip_prefix(&records_stream("")) else {
        return Ok(());
    };
    if !MAY_START_AGAIN.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("this process may not start itself again (a server embedded in another program): copy a ready node's data directory to this one and restart it".into());
    }
    let source = federation
        .sources()
        .into_iter()
        .find(|s| s.info.id == id)
        .ok_or("no such datasource")?;
    let publisher = source
        .datasource
        .publisher()
        .ok_or("the datasource takes no records")?;
    let log = publisher
        .log_file()
        .ok_or("the datasource keeps no data directory")?;
    let dir = log.parent().ok_or("the log has no folder")?.to_owned();
    let mark = dir.join(RECOVERED_MARK);
    if let Ok(modified) = std::fs::metadata(&mark).and_then(|m| m.modified()) {
        if modified.elapsed().unwrap_or_default() < AGAIN_AFTER {
            return Err(format!(
                "this node copied a peer's records less than {} s ago and still misses some: no ready node holds them; restore the data directory from a backup",
                AGAIN_AFTER.as_secs()
            ));
        }
    }
    let key = cluster_key(broker).await?;
    let peers = ready_peers(broker, own).await?;
    if peers.is_empty() {
        return Err("no ready node to copy from".into());
    }
    let copy = dir.join("published.log.copy");
    let mut last_error = String::new();
    for peer in peers {
        let url = format!("{peer}/api/cluster/datasources/{id}/log");
        tracing::info!(datasource = %id, %url, "copying published records from a ready node");
        // A peer that stalls mid-copy does not hold this node up for good.
        match tokio::time::timeout(COPY_WITHIN, download(&url, &key, &copy)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                last_error = format!("{url}: {e}");
                continue;
            }
            Err(_) => {
                last_error = format!("{url}: the copy took over {} s", COPY_WITHIN.as_secs());
                continue;
            }
        }
        let checked = {
            let (copy, publisher) = (copy.clone(), Arc::clone(&source));
            tokio::task::spawn_blocking(move || {
                publisher
                    .datasource
                    .publisher()
                    .ok_or_else(|| "the datasource takes no records".to_owned())?
                    .check_log_copy(&copy)
            })
            .await
            .map_err(|_| "checking the copy failed unexpectedly".to_owned())?
        };
        match checked {
            Ok(records) => {
                put_in_place(&log, &copy, &mark, &peer)?;
                tracing::warn!(datasource = %id, %peer, records, "copied a ready node's published records; starting again on them");
                start_again();
            }
            Err(e) => last_error = format!("{url}: the copy does not read back: {e}"),
        }
    }
    let _ = std::fs::remove_file(&copy);
    Err(last_error)
}

/// Keeps this node's log beside, and puts the checked copy in its place.
fn put_in_place(log: &Path, copy: &Path, mark: &Path, peer: &str) -> Result<(), String> {
    let kept: PathBuf = log.with_extension("log.before-recovery");
    let failed = |e: std::io::Error| format!("cannot put the copy in place: {e}");
    if log.exists() {
        std::fs::rename(log, &kept).map_err(failed)?;
    }
    std::fs::rename(copy, log).map_err(failed)?;
    std::fs::write(mark, peer).map_err(failed)?;
    if let Some(dir) = log.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

/// Replaces this process with a new run of the same program, arguments
/// and environment: the index is built again from the data directory.
fn start_again() {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .exec();
    // Still here: the copy is in place, so a restart by hand loads it.
    tracing::error!(%error, "cannot start again; restart this node to load the copied records");
}

/// GETs `url` (plain HTTP/1.1) with the cluster's key into `to`.
async fn download(url: &str, key: &str, to: &Path) -> Result<u64, String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if parsed.scheme() != "http" {
        return Err("only http:// addresses are supported between nodes".into());
    }
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host, port));
    let stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut stream = tokio::io::BufReader::new(stream);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut status = String::new();
    stream
        .read_line(&mut status)
        .await
        .map_err(|e| e.to_string())?;
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    if status.split(' ').nth(1) != Some("200") {
        return Err(format!("answered {}", status.trim()));
    }
    let length = length.ok_or("no Content-Length")?;
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    let copied = tokio::io::copy(&mut (&mut stream).take(length), &mut file)
        .await
        .map_err(|e| e.to_string())?;
    if copied != length {
        return Err(format!("the copy ended after {copied} of {length} bytes"));
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    Ok(copied)
}
