//! Publishing records to a datasource: one path for `POST
//! /api/datasources/<id>/records` and a service's `PUBLISH`.
//!
//! Whatever is acknowledged is kept. With one node (the `memory` broker)
//! the datasource is the log: a batch gets the next position of its stream
//! and is acknowledged once the datasource holds it (an embedded one has
//! then flushed it to its data directory). With several nodes the broker's
//! stream is the log: a batch is acknowledged once the broker holds it, and
//! every node (this one too) applies it from there in the same order.
//! Either way a batch is checked first, and one that cannot be kept whole
//! is refused before anything is acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::applied::{records_stream, Streams};
use super::streams::Batch;
use super::{Broker, Retention};
use crate::datasources::{AppendError, Position, Publication, Records};
use crate::federation::Source;
use crate::metrics::Metrics;

/// How long a publisher waits for the broker before the answer is 503.
const BROKER_PATIENCE: Duration = Duration::from_secs(3);
/// How long a publisher waits for its records to become searchable on the
/// node it published to (with several nodes; they are kept in the stream
/// regardless).
const APPLY_PATIENCE: Duration = Duration::from_secs(10);
/// Seconds a refused publisher is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// A batch kept.
pub struct Published {
    pub records: usize,
    pub unindexed_fields: Vec<String>,
    /// How many replaced a record held under the same id (known when this
    /// node's datasource kept the batch itself).
    pub replaced: Option<usize>,
    pub position: Position,
    /// Whether a search on this node finds them now.
    pub searchable: bool,
}

/// A batch refused: nothing of it was kept.
#[derive(Debug)]
pub struct Refused {
    /// Why, for metrics: `invalid`, `full`, `not_supported`, `unavailable`, `broker`.
    pub reason: &'static str,
    /// What went wrong, as the refused append says it.
    pub error: AppendError,
    /// Whether trying again later may succeed (`Retry-After`).
    pub retry: bool,
    /// Whether it may have been kept all the same (the broker's answer was
    /// lost): publishing it again with the same ids is safe.
    pub maybe_kept: bool,
}

/// Publishes to every datasource of the server.
pub struct Publishing {
    broker: Arc<Broker>,
    streams: Arc<Streams>,
    metrics: Arc<Metrics>,
    /// One publisher at a time per stream on one node: positions in order.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Publishing {
    pub fn new(broker: Arc<Broker>, streams: Arc<Streams>, metrics: Arc<Metrics>) -> Publishing {
        Publishing {
            broker,
            streams,
            metrics,
            turns: Mutex::default(),
        }
    }

    /// Where each datasource's stream stands on this node at start: the
    /// last publication its datasource holds (kept across restarts), so
    /// positions go on from there.
    pub fn resume(&self, sources: &[Arc<Source>]) {
        for source in sources {
            let held = source
                .datasource
                .publisher()
                .and_then(|publisher| publisher.last_published());
            if let Some(position) = held {
                self.streams
                    .set_applied(&records_stream(&source.info.id), position);
            }
        }
    }

    /// Publishes `records` to `source`: kept and positioned, or refused with
    /// nothing kept.
    pub async fn publish(&self, source: &Source, records: Records) -> Result<Published, Refused> {
        let id = &source.info.id;
        let outcome = self.publish_counted(source, records).await;
        let label = match &outcome {
            Ok(_) => "accepted",
            Err(refused) => refused.reason,
        };
        self.metrics.publishes.with_label_values(&[id, label]).inc();
        if let Ok(published) = &outcome {
            self.metrics
                .published_records
                .with_label_values(&[id])
                .inc_by(published.records as u64);
        }
        outcome
    }

    async fn publish_counted(
        &self,
        source: &Source,
        records: Records,
    ) -> Result<Published, Refused> {
        let Some(publisher) = source.datasource.publisher() else {
            return Err(refused(AppendError::NotSupported));
        };
        let checked = publisher.check_append(&records).map_err(refused)?;
        let stream = records_stream(&source.info.id);
        if !self.broker.has_other_nodes() {
            // One node: the datasource is the log.
            let turn = self.turn(&stream);
            let _turn = turn.lock().await;
            let position = self.next_position(&stream);
            let count = records.len();
            let appended = publisher
                .append_published(
                    records,
                    vec![Publication {
                        position: position.clone(),
                        records: count,
                    }],
                )
                .await
                .map_err(refused)?;
            self.streams.set_applied(&stream, position.clone());
            self.metrics
                .applied_offset
                .with_label_values(&[&source.info.id])
                .set(i64::try_from(position.offset).unwrap_or(i64::MAX));
            return Ok(Published {
                records: appended.records,
                unindexed_fields: appended.unindexed_fields,
                replaced: appended.replaced,
                position,
                searchable: true,
            });
        }
        // Several nodes: the broker's stream is the log, kept whole for a
        // datasource whose records every node keeps.
        let retention = if publisher.keeps_records() {
            Retention::Whole
        } else {
            Retention::Recent
        };
        let appended = tokio::time::timeout(
            BROKER_PATIENCE,
            self.broker
                .append(&stream, Batch::encode(&records), retention),
        )
        .await;
        let position = match appended {
            Ok(Ok(position)) => position,
            Ok(Err(failed)) => return Err(broker_down(failed.reason, failed.maybe_kept)),
            Err(_) => {
                return Err(broker_down(
                    format!(
                        "the broker did not answer within {} s",
                        BROKER_PATIENCE.as_secs()
                    ),
                    true,
                ))
            }
        };
        tracing::debug!(datasource = %source.info.id, records = checked.records, offset = position.offset, "records published");
        // Answered once they are searchable here (a search right after the
        // answer finds them); they are in the stream already in any case.
        let searchable = self
            .streams
            .wait_applied(&stream, &position, APPLY_PATIENCE)
            .await;
        if let Some(limit) = self.streams.refused(&stream, &position) {
            // Another node's batch took the room first: every node refused this one.
            return Err(refused(AppendError::Full { limit }));
        }
        Ok(Published {
            records: checked.records,
            unindexed_fields: checked.unindexed_fields,
            replaced: None,
            position,
            searchable,
        })
    }

    fn turn(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(turns.entry(stream.to_owned()).or_default())
    }

    /// The position after the last one applied (a new epoch for a stream
    /// that has none yet).
    fn next_position(&self, stream: &str) -> Position {
        match self.streams.applied(stream).borrow().clone() {
            Some(last) => Position {
                offset: last.offset + 1,
                epoch: last.epoch,
            },
            None => Position {
                offset: 1,
                epoch: super::broker::new_epoch(),
            },
        }
    }
}

fn refused(error: AppendError) -> Refused {
    let (reason, retry) = match &error {
        AppendError::Invalid { .. } => ("invalid", false),
        AppendError::Full { .. } => ("full", false),
        AppendError::NotSupported => ("not_supported", false),
        AppendError::Failed(_) => ("unavailable", true),
    };
    Refused {
        reason,
        error,
        retry,
        maybe_kept: false,
    }
}

fn broker_down(reason: String, maybe_kept: bool) -> Refused {
    Refused {
        maybe_kept,
        reason: "broker",
        error: AppendError::Failed(crate::datasources::DatasourceError::unavailable(format!(
            "{reason}: records published now could not reach every node"
        ))),
        retry: true,
    }
}
