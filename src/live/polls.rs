//! Polling shared by the nodes of a cluster.
//!
//! A polled datasource (Elasticsearch with a `live_field`) would otherwise
//! be asked once per node for the same live query. With several nodes, one
//! polls for all: the holder of the lease `poll:<id>` (renewed every second,
//! taken over within [`super::broker::LEASE_TTL`] of its holder's death).
//! Each node lists the queries its live requests follow in the hash
//! `polls:<id>:queries` (each with when it lapses, renewed at every
//! interval); the holder polls each listed query from the cluster's cursor
//! for it (`polls:<id>:cursors`, so a new holder goes on where the last one
//! stopped) and appends what is new to the stream `polled:<id>`, which every
//! node reads: each live request takes the documents new to its own
//! position ([`crate::datasources::Live::take_polled`]), so a document
//! polled twice across a change of holder is still delivered once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::broker::keep_lease;
use super::{unix_ms, Broker};
use crate::datasources::{LiveCursor, LiveMode};
use crate::federation::{Federation, Source};
use crate::metrics::Metrics;

/// The hash of the queries the cluster's live requests follow on `datasource`.
pub fn queries_hash(datasource: &str) -> String {
    format!("polls:{datasource}:queries")
}

fn cursors_hash(datasource: &str) -> String {
    format!("polls:{datasource}:cursors")
}

/// The stream of documents polled for the cluster.
pub fn polled_stream(datasource: &str) -> String {
    format!("polled:{datasource}")
}

/// One poll's new documents for one query, as the stream carries them.
#[derive(Serialize, Deserialize)]
pub struct Polled {
    pub query: String,
    pub documents: Vec<Value>,
}

/// Whether live requests on `source` are polled once for the cluster.
pub fn shared(source: &Source, broker: &Broker) -> bool {
    broker.has_other_nodes()
        && source.datasource.live().is_some_and(|live| {
            matches!(live.mode(), LiveMode::Poll { .. }) && live.shared_polls().is_some()
        })
}

/// Says which queries this node follows on `datasource`, for
/// `3 × interval` (renewed at every interval while they are followed).
pub async fn follow_queries(
    broker: &Broker,
    datasource: &str,
    queries: impl Iterator<Item = &str>,
    interval: Duration,
) {
    let until = unix_ms() + 3 * u64::try_from(interval.as_millis()).unwrap_or(u64::MAX / 4);
    for query in queries {
        if let Err(reason) = broker
            .set_field(&queries_hash(datasource), query, &until.to_string())
            .await
        {
            tracing::debug!(%reason, datasource, "a followed query was not shared");
        }
    }
}

/// Polls, for the whole cluster, every shared datasource there is at start.
pub async fn run(
    federation: Arc<Federation>,
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<Option<Duration>>,
) {
    let polled = federation
        .sources()
        .into_iter()
        .filter(|source| shared(source, &broker));
    let polls = polled.map(|source| {
        poll_for_cluster(
            source,
            Arc::clone(&broker),
            Arc::clone(&metrics),
            shutdown.clone(),
        )
    });
    join_all(polls).await;
}

async fn poll_for_cluster(
    source: Arc<Source>,
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let Some(LiveMode::Poll { interval }) = source.datasource.live().map(|l| l.mode()) else {
        return;
    };
    let id = source.info.id.clone();
    let holder = keep_lease(Arc::clone(&broker), format!("poll:{id}"), shutdown.clone());
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    return;
                }
            }
            _ = ticks.tick() => {
                if *holder.borrow() {
                    metrics.cluster_polls.with_label_values(&[&id]).inc();
                    poll_once(&source, &broker).await;
                }
            }
        }
    }
}

/// One round: every query some node follows, from the cluster's cursor.
async fn poll_once(source: &Source, broker: &Broker) {
    let id = &source.info.id;
    let Some(shared) = source
        .datasource
        .live()
        .and_then(|live| live.shared_polls())
    else {
        return;
    };
    let (queries, cursors) = match (
        broker.fields(&queries_hash(id)).await,
        broker.fields(&cursors_hash(id)).await,
    ) {
        (Ok(queries), Ok(cursors)) => (queries, cursors),
        _ => return,
    };
    let now = unix_ms();
    let (wanted, lapsed): (Vec<_>, Vec<_>) = queries
        .into_iter()
        .partition(|(_, until)| until.parse::<u64>().is_ok_and(|until| until > now));
    broker
        .remove_fields(
            &queries_hash(id),
            lapsed.iter().map(|(q, _)| q.clone()).collect(),
        )
        .await;
    broker
        .remove_fields(
            &cursors_hash(id),
            cursors
                .keys()
                .filter(|q| !wanted.iter().any(|(w, _)| w == *q))
                .cloned()
                .collect(),
        )
        .await;
    let polls = wanted.into_iter().map(|(query, _)| {
        let cursor = cursors
            .get(&query)
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .map(LiveCursor);
        async move {
            let (documents, cursor) = match shared.poll_shared(&query, cursor).await {
                Ok(polled) => polled,
                Err(error) => {
                    tracing::warn!(datasource = %id, %query, error = %error.message, "polling for the cluster failed");
                    return;
                }
            };
            if !documents.is_empty() {
                let polled = Polled { query: query.clone(), documents };
                let payload = bytes::Bytes::from(serde_json::to_vec(&polled).unwrap_or_default());
                if broker.append(&polled_stream(id), payload, super::Retention::Recent).await.is_err() {
                    // Not shared: the cursor stays, the next round polls again.
                    return;
                }
            }
            let _ = broker
                .set_field(&cursors_hash(id), &query, &cursor.0.to_string())
                .await;
        }
    });
    join_all(polls).await;
}
