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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use super::applied::{health_stream, records_stream, Streams};
use super::broker::{Follower, StreamEntry};
use super::health::{show, Health, HealthBoard};
use super::Hub;
use crate::datasources::{AppendError, Position, Publication, Records};
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
    pub metrics: Arc<crate::metrics::Metrics>,
    pub broker: Arc<super::Broker>,
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
    /// Whether the datasource keeps them (its stream must be applied whole).
    kept: bool,
}

async fn apply(to: &Appliers, entries: Vec<StreamEntry>) {
    let mut by_datasource: Vec<Arrived> = Vec::new();
    // Where each stream of records kept stands, this batch of entries included.
    let mut reached: HashMap<String, Option<Position>> = HashMap::new();
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
        let kept = to
            .federation
            .source_by_id(id)
            .is_some_and(|s| s.datasource.publisher().is_some_and(|p| p.keeps_records()));
        if kept {
            if to.streams.is_stuck(&entry.stream) {
                continue;
            }
            let last = reached
                .entry(entry.stream.clone())
                .or_insert_with(|| to.streams.applied(&entry.stream).borrow().clone());
            match follows(last.as_ref(), &entry.position) {
                Next::Held => continue,
                Next::Apply => {}
                Next::NewEpoch => {
                    if let Some(lost) = last.as_ref() {
                        // Said in Redis for nodes that start later: they
                        // must hold this much of the lost history too.
                        let field = format!("{}@{}", lost.epoch, to.broker.node());
                        let kept = to
                            .broker
                            .set_field(&lost_hash(&entry.stream), &field, &lost.offset.to_string())
                            .await;
                        if let Err(reason) = kept {
                            tracing::warn!(stream = %entry.stream, %reason, "what the broker lost could not be noted in it");
                        }
                    }
                    to.metrics.epoch_changes.with_label_values(&[id]).inc();
                    tracing::warn!(stream = %entry.stream, epoch = %entry.position.epoch, "the broker's history of published records started again (it lost what it held): the records this node holds stay, and new ones follow");
                }
                Next::Missing(reason) => {
                    to.streams.stuck(&entry.stream, reason);
                    continue;
                }
            }
            *last = Some(entry.position.clone());
        }
        let Ok(batch) = serde_json::from_slice::<Batch>(&entry.payload) else {
            // Not written by a node (each writes whole batches): every node
            // skips it alike.
            tracing::warn!(stream = %entry.stream, offset = entry.position.offset, "an unreadable batch of records, skipped");
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
                kept,
            }),
        }
    }
    for arrived in by_datasource {
        let stream = records_stream(&arrived.datasource);
        let (Some(first), Some(last)) = (
            arrived.publications.first().map(|p| p.position.offset),
            arrived.publications.last().map(|p| p.position.clone()),
        ) else {
            continue;
        };
        let source = to.federation.source_by_id(&arrived.datasource);
        if let Some(publisher) = source.as_ref().and_then(|s| s.datasource.publisher()) {
            let count = arrived.records.len();
            let outcome = if arrived.kept {
                add_in_order(
                    to,
                    &stream,
                    publisher,
                    arrived.records,
                    arrived.publications,
                )
                .await
            } else {
                publisher
                    .append_published(arrived.records, arrived.publications)
                    .await
                    .map(|_| ())
            };
            if let Err(error) = outcome {
                if arrived.kept {
                    // Not skipped: every later record would be missing it.
                    to.streams.stuck(
                        &stream,
                        format!("publications {first} to {} of `{stream}` could not be added on this node: {error}; restart it once the cause is gone, and it reads them again", last.offset),
                    );
                    continue;
                }
                tracing::warn!(datasource = %arrived.datasource, records = count, %error, "published records could not be added on this node");
            }
        }
        if !arrived.kept {
            to.streams.set_applied(&stream, last);
        }
    }
    // Streams of records kept: as far as read (entries skipped included),
    // unless stuck.
    for (stream, reached) in reached {
        let Some(reached) = reached.filter(|_| !to.streams.is_stuck(&stream)) else {
            continue;
        };
        if let Some(id) = stream.strip_prefix("records:") {
            to.metrics
                .applied_offset
                .with_label_values(&[id])
                .set(i64::try_from(reached.offset).unwrap_or(i64::MAX));
        }
        to.streams.set_applied(&stream, reached);
    }
}

/// Adds publications of a datasource that keeps its records, all at once
/// when they fit; otherwise one by one, in order, refusing those that do
/// not fit under its `max_records`. Every node holds the same records, so
/// every node refuses the same ones, and their publisher is told (two
/// nodes may each have let a batch in that fit alone but not together).
async fn add_in_order(
    to: &Appliers,
    stream: &str,
    publisher: &dyn crate::datasources::Publish,
    records: Records,
    publications: Vec<Publication>,
) -> Result<(), AppendError> {
    // Several at once (a node catching up): one commit when they all fit.
    // The applier is the only one adding to it: what fits now fits when
    // added. One alone (the usual case) is not checked twice.
    if publications.len() > 1
        && !matches!(
            publisher.check_append(&records),
            Err(AppendError::Full { .. })
        )
    {
        return publisher
            .append_published(records, publications)
            .await
            .map(|_| ());
    }
    let mut records = records.into_iter();
    for publication in publications {
        let batch: Records = records.by_ref().take(publication.records).collect();
        let position = publication.position.clone();
        match publisher.append_published(batch, vec![publication]).await {
            Ok(_) => {}
            Err(AppendError::Full { limit }) => {
                tracing::info!(%stream, offset = position.offset, limit, "a publication refused on every node: no room under max_records");
                to.streams.refuse(stream, position, limit);
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// What an entry of a stream of records kept is to a node that holds it
/// up to `held`.
#[derive(Debug, PartialEq)]
enum Next {
    /// Held already (a node that restarted with its data reads them again).
    Held,
    /// The next one.
    Apply,
    /// The first of a new history: the broker lost the old one.
    NewEpoch,
    /// Publications before it are gone from the broker, and not held here.
    Missing(String),
}

fn follows(held: Option<&Position>, entry: &Position) -> Next {
    let what_to_do = "it copies a ready node's published records by itself (peer recovery) and starts again; without a ready node, copy the data directory of one to this one (with both stopped), or give the broker back its history";
    match held {
        Some(held) if held.epoch == entry.epoch => {
            if entry.offset <= held.offset {
                Next::Held
            } else if entry.offset == held.offset + 1 {
                Next::Apply
            } else {
                Next::Missing(format!(
                    "publications {} to {} are no longer in the broker and this node does not hold them; {what_to_do}",
                    held.offset + 1,
                    entry.offset - 1
                ))
            }
        }
        Some(_) if entry.offset == 1 => Next::NewEpoch,
        None if entry.offset == 1 => Next::Apply,
        Some(held) => Next::Missing(format!(
            "this node holds publications up to {} of an earlier history ({}); the broker's starts at {} of another ({}); {what_to_do}",
            held.offset, held.epoch, entry.offset, entry.epoch
        )),
        None => Next::Missing(format!(
            "publications 1 to {} are no longer in the broker and this node does not hold them; {what_to_do}",
            entry.offset - 1
        )),
    }
}

/// The hash where nodes note how far each epoch of `stream` went when the
/// broker lost it: field `<epoch>@<node>`, value the last offset the node held.
fn lost_hash(stream: &str) -> String {
    format!("lost:{stream}")
}

/// Learns from the broker how far each stream of records kept goes, so
/// this node says it is ready only once it holds that much (with one
/// node, there is nothing to learn), and whether the broker lost history
/// this node does not hold (then it is not ready). Asks again every second
/// while the broker is unreachable.
pub async fn measure(
    federation: Arc<Federation>,
    broker: Arc<super::Broker>,
    streams: Arc<Streams>,
    mut shutdown: tokio::sync::watch::Receiver<Option<std::time::Duration>>,
) {
    if !broker.has_other_nodes() {
        streams.measured();
        return;
    }
    let kept: Vec<Arc<crate::federation::Source>> = federation
        .sources()
        .into_iter()
        .filter(|s| s.datasource.publisher().is_some_and(|p| p.keeps_records()))
        .collect();
    loop {
        let mut learned = Vec::with_capacity(kept.len());
        for source in &kept {
            let stream = records_stream(&source.info.id);
            let (Ok(last), Ok(lost)) = (
                broker.last_position(&stream).await,
                broker.fields(&lost_hash(&stream)).await,
            ) else {
                break;
            };
            // Unreadable oldest entries: readers skip them, and so does this check.
            let first = broker.first_position(&stream).await.ok();
            learned.push((source, stream, last, lost, first));
        }
        if learned.len() == kept.len() {
            for (source, stream, last, lost, first) in learned {
                if let Some(gap) = trimmed_and_not_held(source, last.as_ref(), first) {
                    streams.stuck(&stream, gap);
                } else if let Some(missing) = lost_and_not_held(source, &lost) {
                    streams.stuck(&stream, format!("the broker lost publications 1 to {} of an earlier history ({}) when it restarted without them, and this node does not hold them; it copies a ready node's published records by itself (peer recovery) and starts again; without a ready node, copy the data directory of one that ran then to this one (with both stopped)", missing.offset, missing.epoch));
                } else if let Some(last) = last {
                    streams.catch_up_to(&stream, last);
                }
            }
            streams.measured();
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    return;
                }
            }
        }
    }
}

/// How far behind the broker's stream of records this node is, per
/// datasource that keeps records: the `stream_lag` gauge, measured every
/// 5 s (only with several nodes; one node applies what it publishes). A
/// stream whose history the broker started again counts all of the new
/// one until this node applies it.
pub async fn watch_lag(
    federation: Arc<Federation>,
    broker: Arc<super::Broker>,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<Option<std::time::Duration>>,
) {
    if !broker.has_other_nodes() {
        return;
    }
    loop {
        for source in federation.sources() {
            let Some(publisher) = source.datasource.publisher().filter(|p| p.keeps_records())
            else {
                continue;
            };
            let stream = records_stream(&source.info.id);
            // Unreachable: the last measure stands (broker_up says why).
            let Ok(Some(last)) = broker.last_position(&stream).await else {
                continue;
            };
            let lag = match publisher.last_published() {
                Some(applied) if applied.epoch == last.epoch => {
                    last.offset.saturating_sub(applied.offset)
                }
                _ => last.offset,
            };
            metrics
                .stream_lag
                .with_label_values(&[source.info.id.as_str()])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    return;
                }
            }
        }
    }
}

/// Why `source` cannot catch up from the stream, when the stream no longer
/// holds the publication after the last one it holds (trimmed once every
/// node heard of had applied it: [`super::retention`]).
fn trimmed_and_not_held(
    source: &crate::federation::Source,
    last: Option<&Position>,
    first: Option<Option<Position>>,
) -> Option<String> {
    let last = last?;
    let held = source.datasource.publisher()?.last_published();
    let oldest = match first? {
        Some(first) => first,
        // Nothing left: the next one to come is the oldest there will be.
        None => Position {
            offset: last.offset + 1,
            epoch: last.epoch.clone(),
        },
    };
    match follows(held.as_ref(), &oldest) {
        Next::Missing(why) => Some(why),
        _ => None,
    }
}

/// The furthest lost publication (of the fields of a stream's
/// [`lost_hash`]) that `source` does not hold, if any.
fn lost_and_not_held(
    source: &crate::federation::Source,
    lost: &HashMap<String, String>,
) -> Option<Position> {
    let publisher = source.datasource.publisher()?;
    let mut furthest: HashMap<&str, u64> = HashMap::new();
    for (field, offset) in lost {
        let (Some((epoch, _node)), Ok(offset)) = (field.rsplit_once('@'), offset.parse::<u64>())
        else {
            continue;
        };
        let at = furthest.entry(epoch).or_default();
        *at = (*at).max(offset);
    }
    furthest
        .into_iter()
        .map(|(epoch, offset)| Position {
            offset,
            epoch: epoch.to_owned(),
        })
        .find(|position| !publisher.holds(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn a_node_applies_the_next_publication_and_nothing_else() {
        assert_eq!(follows(None, &at(1, "a")), Next::Apply);
        assert_eq!(follows(Some(&at(4, "a")), &at(5, "a")), Next::Apply);
        assert_eq!(follows(Some(&at(4, "a")), &at(3, "a")), Next::Held);
        assert_eq!(follows(Some(&at(4, "a")), &at(4, "a")), Next::Held);
        assert_eq!(follows(Some(&at(4, "a")), &at(1, "b")), Next::NewEpoch);
        let Next::Missing(gap) = follows(Some(&at(4, "a")), &at(7, "a")) else {
            panic!("a gap")
        };
        assert!(gap.contains("publications 5 to 6"), "{gap}");
        assert!(matches!(follows(None, &at(3, "a")), Next::Missing(_)));
        assert!(matches!(
            follows(Some(&at(4, "a")), &at(2, "b")),
            Next::Missing(_)
        ));
    }
}
