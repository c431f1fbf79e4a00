//! Each datasource's health, measured in the background.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{unix_ms, Broker, Hub};
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
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, error) = match result {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(crate::datasources::redact_userinfo(&e.message))),
        Err(_) => (false, Some("health check timed out".to_owned())),
    };
    Health {
        ok,
        latency_ms,
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
/// the server shuts down; each measure goes on the board and out on the
/// datasource's `status:` and `latency:` channels.
///
/// With several nodes, one measures for all: the node holding the broker's
/// `health` lease (renewed every second, taken over by another node within
/// [`LEASE_TTL`] of its holder's death) measures and sends each value to the
/// other nodes, which put it on their boards and channels.
pub async fn monitor(
    federation: Arc<Federation>,
    board: Arc<HealthBoard>,
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    metrics: Arc<crate::metrics::Metrics>,
    interval: Duration,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let interval = interval.max(Duration::from_millis(100));
    let holder = keep_lease(Arc::clone(&broker), "health", shutdown.clone());
    let mut others = broker.subscribe(HEALTH_TOPIC).await;
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                next = tokio::time::Instant::now() + interval;
                if !*holder.borrow() {
                    continue;
                }
                let (hub, board, broker, metrics) = (&hub, &board, &broker, &metrics);
                let checks = federation.sources().into_iter().map(|source| async move {
                    let health = check(&source).await;
                    metrics.health_checks.inc();
                    let id = &source.info.id;
                    if broker.has_other_nodes() {
                        let measured = Measured { node: broker.node().to_owned(), datasource: id.clone(), health: health.clone() };
                        broker.publish(HEALTH_TOPIC, bytes::Bytes::from(serde_json::to_vec(&measured).unwrap_or_default()));
                    }
                    show(hub, board, id, health);
                });
                join_all(checks).await;
            }
            message = others.recv() => match message {
                Ok(payload) => {
                    if let Ok(measured) = serde_json::from_slice::<Measured>(&payload) {
                        if measured.node != broker.node() {
                            show(&hub, &board, &measured.datasource, measured.health);
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            changed = shutdown.changed() => {
                if changed.is_err() || shutdown.borrow().is_some() {
                    return;
                }
            }
        }
    }
}

/// How long the `health` lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
const HEALTH_TOPIC: &str = "health";

/// One measure, sent to the other nodes.
#[derive(Serialize, Deserialize)]
struct Measured {
    node: String,
    datasource: String,
    health: Health,
}

/// Puts a measure on the board and the datasource's channels.
fn show(hub: &Hub, board: &HealthBoard, id: &str, health: Health) {
    hub.publish(
        &format!("status:{id}"),
        health.checked_at_ms,
        &health.ok.into(),
    );
    hub.publish(
        &format!("latency:{id}"),
        health.checked_at_ms,
        &health.latency_ms.into(),
    );
    board.set(id, health);
}

/// Holds (or waits for) the broker lease `name`, renewing it every second
/// until shutdown; the value says whether this node holds it.
fn keep_lease(
    broker: Arc<Broker>,
    name: &'static str,
    mut shutdown: watch::Receiver<Option<Duration>>,
) -> watch::Receiver<bool> {
    let (holds, holder) = watch::channel(!broker.has_other_nodes());
    if !broker.has_other_nodes() {
        return holder;
    }
    tokio::spawn(async move {
        loop {
            let held = broker.try_lease(name, LEASE_TTL).await;
            if *holds.borrow() != held {
                tracing::info!(lease = name, held, "broker lease");
                let _ = holds.send(held);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || shutdown.borrow().is_some() {
                        broker.release_lease(name).await;
                        return;
                    }
                }
            }
        }
    });
    holder
}
