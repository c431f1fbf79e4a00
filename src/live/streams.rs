//! The streams every node reads, in the same order: records published to a
//! datasource (`records:<id>`), its health measures (`health:<id>`) and,
//! with several nodes, the documents one node polled for all (`polled:<id>`,
//! see [`super::polls`]).
//!
//! Publishing and measuring only *append* to a stream (through the
//! [`Broker`]); this node, like every other, applies what it reads: records
//! go into the datasource (live queries see them), measures onto the health
//! board and the `status:`/`latency:` channels. So every node holds the same
//! records and channel values under the same offsets, and a client can
//! resume on any node from the offset it last received.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use super::applied::{health_stream, records_stream, Streams};
use super::broker::{Follower, StreamEntry};
use super::health::{show, Health, HealthBoard};
use super::Hub;
use crate::datasources::{Publication, Records};
use crate::federation::Federation;

/// The streams of the datasources there are now.
pub fn streams_of(federation: &Federation) -> Vec<String> {
    federation
        .sources()
        .iter()
        .flat_map(|s| {
            [
                records_stream(&s.info.id),
                health_stream(&s.info.id),
                super::polls::polled_stream(&s.info.id),
            ]
        })
        .collect()
}

/// One published batch, as it travels in a stream.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub records: Records,
}

impl Batch {
    pub fn encode(records: &Records) -> Bytes {
        #[derive(serde::Serialize)]
        struct Borrowed<'a> {
            records: &'a Records,
        }
        // Objects with string keys: encoding cannot fail.
        Bytes::from(serde_json::to_vec(&Borrowed { records }).unwrap_or_default())
    }
}

/// Everything `run` applies streams to.
pub struct Appliers {
    pub federation: Arc<Federation>,
    pub hub: Arc<Hub>,
    pub board: Arc<HealthBoard>,
    pub streams: Arc<Streams>,
    pub live: Arc<super::LiveQueries>,
}

/// Applies what the streams bring, until the broker stops; follows the
/// streams of datasources added later (remote ones) too.
pub async fn run(to: Appliers, follower: Follower, mut entries: mpsc::Receiver<StreamEntry>) {
    let mut changes = to.federation.watch_changes();
    let mut known: HashSet<String> = streams_of(&to.federation).into_iter().collect();
    let mut watching = true;
    loop {
        tokio::select! {
            changed = changes.changed(), if watching => {
                if changed.is_err() {
                    // No more datasources will come: only entries now.
                    watching = false;
                    continue;
                }
                for stream in streams_of(&to.federation) {
                    if known.insert(stream.clone()) {
                        follower.add(&stream);
                    }
                }
            }
            first = entries.recv() => {
                let Some(first) = first else { return };
                // What else has arrived is applied with it: one index commit
                // for many batches when this node is behind (after its start).
                let mut arrived = vec![first];
                while arrived.len() < 256 {
                    match entries.try_recv() {
                        Ok(entry) => arrived.push(entry),
                        Err(_) => break,
                    }
                }
                apply(&to, arrived).await;
            }
        }
    }
}

/// Records of one datasource read together, with their publications.
struct Arrived {
    datasource: String,
    records: Records,
    publications: Vec<Publication>,
}

async fn apply(to: &Appliers, entries: Vec<StreamEntry>) {
    let mut by_datasource: Vec<Arrived> = Vec::new();
    for entry in entries {
        if let Some(id) = entry.stream.strip_prefix("health:") {
            match serde_json::from_slice::<Health>(&entry.payload) {
                Ok(health) => show(&to.hub, &to.board, id, health, &entry.position),
                Err(_) => tracing::warn!(stream = %entry.stream, "an unreadable health measure"),
            }
            to.streams.set_applied(&entry.stream, entry.position);
            continue;
        }
        if let Some(id) = entry.stream.strip_prefix("polled:") {
            match serde_json::from_slice::<super::polls::Polled>(&entry.payload) {
                Ok(polled) => to.live.polled(id, polled),
                Err(_) => tracing::warn!(stream = %entry.stream, "unreadable polled documents"),
            }
            continue;
        }
        let Some(id) = entry.stream.strip_prefix("records:") else {
            continue;
        };
        let Ok(batch) = serde_json::from_slice::<Batch>(&entry.payload) else {
            tracing::warn!(stream = %entry.stream, offset = entry.position.offset, "an unreadable batch of records");
            continue;
        };
        let publication = Publication {
            position: entry.position,
            records: batch.records.len(),
        };
        match by_datasource.iter_mut().find(|a| a.datasource == id) {
            Some(arrived) => {
                arrived.records.extend(batch.records);
                arrived.publications.push(publication);
            }
            None => by_datasource.push(Arrived {
                datasource: id.to_owned(),
                records: batch.records,
                publications: vec![publication],
            }),
        }
    }
    for arrived in by_datasource {
        let stream = records_stream(&arrived.datasource);
        let Some(last) = arrived.publications.last().map(|p| p.position.clone()) else {
            continue;
        };
        let source = to.federation.source_by_id(&arrived.datasource);
        if let Some(publisher) = source.as_ref().and_then(|s| s.datasource.publisher()) {
            let count = arrived.records.len();
            if let Err(error) = publisher
                .append_published(arrived.records, arrived.publications)
                .await
            {
                // Checked before it entered the stream: only a full
                // datasource (or a failing one) refuses it here.
                tracing::warn!(datasource = %arrived.datasource, records = count, %error, "published records could not be added on this node");
            }
        }
        to.streams.set_applied(&stream, last);
    }
}
