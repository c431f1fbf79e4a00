//! Each datasource's health, measured in the background.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{unix_ms, Broker, Hub};
use crate::datasources::Position;
use crate::federation::{Federation, Source};

/// The longest one health check may take, whatever the datasource's timeout.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One datasource's health, as last measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Did the datasource answer its health check?
    pub ok: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// Why it is not ok, in the user's terms (credentials redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was measured (unix milliseconds).
    pub checked_at_ms: u64,
}

/// Checks one datasource now.
pub async fn check(source: &Source) -> Health {
    let started = Instant::now();
    let result = tokio::time::timeout(
        source.timeout.min(HEALTH_CHECK_TIMEOUT),
        source.datasource.health(),
    )
    .await;
    let mut took = started.elapsed();
    let (ok, error) = match result {
        Ok(Ok(healthy)) => {
            // A datasource that measures its own latency (a plugin timing
            // its backend) is believed.
            took = healthy.latency.unwrap_or(took);
            (true, None)
        }
        Ok(Err(e)) => (false, Some(crate::datasources::redact_userinfo(&e.message))),
        Err(_) => (false, Some("health check timed out".to_owned())),
    };
    Health {
        ok,
        latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        error,
        checked_at_ms: unix_ms(),
    }
}

/// The last measured health of every datasource, by id.
#[derive(Default)]
pub struct HealthBoard {
    latest: Mutex<BTreeMap<String, Health>>,
}

impl HealthBoard {
    pub fn get(&self, id: &str) -> Option<Health> {
        self.lock().get(id).cloned()
    }

    fn set(&self, id: &str, health: Health) {
        self.lock().insert(id.to_owned(), health);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Health>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Measures every datasource at once, now and then every `interval`, until
/// the server shuts down; each measure is appended to the datasource's
/// `health:` stream, from which every node puts it on its board and its
/// `status:` and `latency:` channels (`live::streams`).
///
/// With several nodes, one measures for all: the node holding the broker's
/// `health` lease (renewed every second, taken over by another node within
/// [`super::broker::LEASE_TTL`] of its holder's death).
pub async fn monitor(
    federation: Arc<Federation>,
    broker: Arc<Broker>,
    metrics: Arc<crate::metrics::Metrics>,
    interval: Duration,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let interval = interval.max(Duration::from_millis(100));
    let holder = super::broker::keep_lease(Arc::clone(&broker), "health".into(), shutdown.clone());
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                next = tokio::time::Instant::now() + interval;
                if !*holder.borrow() {
                    continue;
                }
                let (broker, metrics) = (&broker, &metrics);
                let checks = federation.sources().into_iter().map(|source| async move {
                    let health = check(&source).await;
                    metrics.health_checks.inc();
                    let stream = super::applied::health_stream(&source.info.id);
                    let payload = bytes::Bytes::from(serde_json::to_vec(&health).unwrap_or_default());
                    if let Err(reason) = broker.append(&stream, payload, super::Retention::Recent).await {
                        tracing::debug!(%reason, datasource = %source.info.id, "a health measure was not shared");
                    }
                });
                join_all(checks).await;
            }
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    return;
                }
            }
        }
    }
}

/// Puts a measure on the board and the datasource's channels; both
/// channels carry the position of the measure in the `health:` stream.
pub(super) fn show(hub: &Hub, board: &HealthBoard, id: &str, health: Health, position: &Position) {
    hub.publish(
        &format!("status:{id}"),
        health.checked_at_ms,
        &health.ok.into(),
        position,
    );
    hub.publish(
        &format!("latency:{id}"),
        health.checked_at_ms,
        &health.latency_ms.into(),
        position,
    );
    board.set(id, health);
}
