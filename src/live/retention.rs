//! What the broker keeps of a stream of records kept: the entries some node
//! still needs. Every node notes in the broker how far it has applied each
//! stream (beside its address, every 2 s: [`super::recovery`]); entries
//! that every node heard of in the last 5 minutes has applied — at least
//! two of them, so each is on two disks besides — are trimmed from the
//! stream once they are `records_kept_for` old (an hour by default:
//! nodes restarted or added within it catch up from the stream;
//! `records_retention = "applied"`, the default). A node away for
//! longer, or a new one, finds the start of the stream gone and copies a
//! ready node's records (peer recovery), as an Elasticsearch replica
//! recovers from its primary once the translog it needs is gone.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::applied::{records_stream, Streams};
use super::{unix_ms, Broker};
use crate::datasources::Position;
use crate::federation::Federation;

/// A node heard of within this long holds trimming back until it has
/// applied what it would miss; one silent for longer is forgotten.
pub const WAIT_FOR_ABSENT: Duration = Duration::from_secs(300);
/// Nodes that must hold an entry (on their disks) before the broker lets it go.
const COPIES: usize = 2;

/// The streams of records this node keeps (embedded datasources).
pub fn kept_streams(federation: &Federation) -> Vec<String> {
    federation
        .sources()
        .into_iter()
        .filter(|s| s.datasource.publisher().is_some_and(|p| p.keeps_records()))
        .map(|s| records_stream(&s.info.id))
        .collect()
}

/// How far this node has applied each stream of records kept, for its note.
pub fn applied_note(kept: &[String], streams: &Streams) -> Value {
    let applied: serde_json::Map<String, Value> = kept
        .iter()
        .filter_map(|stream| {
            let position = streams.applied(stream).borrow().clone()?;
            Some((
                stream.clone(),
                json!({"offset": position.offset, "epoch": position.epoch}),
            ))
        })
        .collect();
    Value::Object(applied)
}

/// The position of `stream` every node heard of lately has applied, when
/// at least [`COPIES`] of them have, all in one epoch.
fn applied_by_all(notes: &HashMap<String, String>, stream: &str) -> Option<Position> {
    let mut through: Option<Position> = None;
    let mut nodes = 0;
    for note in notes.values() {
        let note: Value = serde_json::from_str(note).ok()?;
        let at = note["at"].as_u64().unwrap_or(0);
        if unix_ms().saturating_sub(at) > WAIT_FOR_ABSENT.as_millis() as u64 {
            continue;
        }
        // A node heard of that has applied nothing of it holds it all back.
        let applied = &note["applied"][stream];
        let position = Position {
            offset: applied["offset"].as_u64()?,
            epoch: applied["epoch"].as_str()?.to_owned(),
        };
        through = match through {
            None => Some(position),
            Some(t) if t.epoch != position.epoch => return None,
            Some(t) => Some(if position.offset < t.offset {
                position
            } else {
                t
            }),
        };
        nodes += 1;
    }
    through.filter(|_| nodes >= COPIES)
}

/// Trims from each stream of records kept what every node has applied.
pub async fn trim(
    broker: &Broker,
    kept: &[String],
    notes: &HashMap<String, String>,
    kept_for: Duration,
) {
    for stream in kept {
        let Some(through) = applied_by_all(notes, stream) else {
            continue;
        };
        match broker.trim(stream, &through, kept_for).await {
            Ok(0) => {}
            // At most PER_TRIM a time, so a trim stays short for Redis; the
            // rest goes at the next.
            Ok(removed) => {
                tracing::info!(%stream, removed, through = through.offset, "trimmed publications every node holds from the broker");
            }
            Err(e) => tracing::debug!(%stream, error = %e, "cannot trim now"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(at: u64, offset: Option<u64>, epoch: &str) -> String {
        let applied = match offset {
            Some(offset) => json!({"records:t": {"offset": offset, "epoch": epoch}}),
            None => json!({}),
        };
        json!({"url": "http://x", "ready": true, "at": at, "applied": applied}).to_string()
    }

    #[test]
    fn only_what_every_node_heard_of_lately_applied_and_two_at_least() {
        let now = unix_ms();
        let notes = |list: &[(&str, String)]| -> HashMap<String, String> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect()
        };
        // One node alone: nothing goes (one copy is not enough).
        assert_eq!(
            applied_by_all(&notes(&[("a", note(now, Some(9), "e"))]), "records:t"),
            None
        );
        // Two: the lower of the two.
        let two = notes(&[
            ("a", note(now, Some(9), "e")),
            ("b", note(now, Some(4), "e")),
        ]);
        assert_eq!(
            applied_by_all(&two, "records:t"),
            Some(Position {
                offset: 4,
                epoch: "e".into()
            })
        );
        // A third that applied nothing yet holds everything back.
        let mut three = two.clone();
        three.insert("c".into(), note(now, None, "e"));
        assert_eq!(applied_by_all(&three, "records:t"), None);
        // Unless it has not been heard of for longer than the wait.
        three.insert("c".into(), note(now - 301_000, None, "e"));
        assert_eq!(
            applied_by_all(&three, "records:t"),
            Some(Position {
                offset: 4,
                epoch: "e".into()
            })
        );
        // Nodes in different epochs: nothing goes.
        let split = notes(&[
            ("a", note(now, Some(9), "e")),
            ("b", note(now, Some(4), "f")),
        ]);
        assert_eq!(applied_by_all(&split, "records:t"), None);
    }
}
