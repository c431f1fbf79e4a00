//! The requests one connection runs, each counted from its start until the
//! last of its work has stopped — ended, failed or aborted, and any work it
//! moved to a thread done too — against `limits.max_requests`.
//!
//! A request's work holds its [`Lease`]; when the last clone goes, the
//! request leaves [`Running`] here, wherever that happens (a search thread,
//! the request's task, an aborted future). Nothing travels back through the
//! connection: the session asks how many run, and a draining connection
//! watches the count reach zero.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::datasources::Lease;
use crate::metrics::Metrics;
use crate::outbox::RequestKey;
use crate::protocol::RequestId;

/// One request running.
struct Entry {
    kind: &'static str,
    request_id: Option<RequestId>,
    /// Its task, once spawned.
    task: Option<AbortHandle>,
    /// Canceled by the client: answered `REQUEST_CANCELED`, sends nothing
    /// more, but still counts until its work has really stopped.
    canceled: bool,
}

/// The requests of one connection.
pub struct Running {
    shared: Arc<Shared>,
}

struct Shared {
    entries: Mutex<HashMap<RequestKey, Entry>>,
    /// How many run, for a connection draining until none does.
    count: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<RequestKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes its request when the last lease on it is dropped.
struct Guard {
    key: RequestKey,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let left = {
            let mut entries = self.shared.lock();
            entries.remove(&self.key);
            entries.len()
        };
        self.metrics.requests_running.dec();
        self.shared.count.send_replace(left);
    }
}

impl Default for Running {
    fn default() -> Self {
        Running {
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                count: watch::channel(0).0,
            }),
        }
    }
}

impl Running {
    /// Counts a new request; it runs until the returned lease and all its
    /// clones are dropped.
    pub fn start(
        &self,
        key: RequestKey,
        kind: &'static str,
        request_id: Option<RequestId>,
        metrics: &Arc<Metrics>,
    ) -> Lease {
        let count = {
            let mut entries = self.shared.lock();
            entries.insert(
                key,
                Entry {
                    kind,
                    request_id,
                    task: None,
                    canceled: false,
                },
            );
            entries.len()
        };
        metrics.requests_running.inc();
        self.shared.count.send_replace(count);
        Lease::new(Guard {
            key,
            shared: Arc::clone(&self.shared),
            metrics: Arc::clone(metrics),
        })
    }

    /// The task running request `key`, to abort it on cancel (a request
    /// already over is left alone).
    pub fn set_task(&self, key: RequestKey, task: AbortHandle) {
        if let Some(entry) = self.shared.lock().get_mut(&key) {
            entry.task = Some(task);
        }
    }

    /// How many run now.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The count as it changes.
    pub fn count(&self) -> watch::Receiver<usize> {
        self.shared.count.subscribe()
    }

    /// Aborts request `key` as canceled; its kind, unless it was already
    /// canceled or is over. It still counts until its work has stopped.
    pub fn cancel(&self, key: RequestKey) -> Option<&'static str> {
        let mut entries = self.shared.lock();
        let entry = entries.get_mut(&key).filter(|e| !e.canceled)?;
        entry.canceled = true;
        if let Some(task) = &entry.task {
            task.abort();
        }
        Some(entry.kind)
    }

    /// The requests with this id not canceled yet.
    pub fn with_id(&self, request_id: &RequestId) -> Vec<RequestKey> {
        self.shared
            .lock()
            .iter()
            .filter(|(_, e)| !e.canceled && e.request_id.as_ref() == Some(request_id))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Aborts every request (the connection ends); the kinds of those not
    /// canceled before.
    pub fn abort_all(&self) -> Vec<&'static str> {
        let entries = self.shared.lock();
        let mut aborted = Vec::new();
        for entry in entries.values() {
            if let Some(task) = &entry.task {
                task.abort();
            }
            if !entry.canceled {
                aborted.push(entry.kind);
            }
        }
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_counts_until_its_last_lease_is_dropped() {
        let metrics = Arc::new(Metrics::new());
        let running = Running::default();
        let mut count = running.count();
        let lease = running.start(1, "ITEMS_REQUEST", Some(RequestId::Number(5)), &metrics);
        let on_a_thread = lease.clone();
        assert_eq!(running.len(), 1);
        assert_eq!(metrics.requests_running.get(), 1);
        assert_eq!(running.with_id(&RequestId::Number(5)), [1]);

        assert_eq!(running.cancel(1), Some("ITEMS_REQUEST"));
        assert_eq!(running.cancel(1), None, "canceled once");
        assert!(running.with_id(&RequestId::Number(5)).is_empty());
        drop(lease);
        assert_eq!(running.len(), 1, "work on a thread still counts");
        std::thread::spawn(move || drop(on_a_thread))
            .join()
            .expect("the thread ends");
        count.wait_for(|n| *n == 0).await.expect("the count");
        assert!(running.is_empty());
        assert_eq!(metrics.requests_running.get(), 0);
    }

    #[tokio::test]
    async fn aborting_all_stops_their_tasks_and_names_those_not_canceled() {
        let metrics = Arc::new(Metrics::new());
        let running = Running::default();
        let first = running.start(1, "FIELDS_REQUEST", None, &metrics);
        let second = running.start(2, "ITEMS_REQUEST", None, &metrics);
        let task = tokio::spawn(async move {
            let _held = (first, second);
            std::future::pending::<()>().await;
        });
        running.set_task(1, task.abort_handle());
        running.cancel(2);
        assert_eq!(running.abort_all(), ["FIELDS_REQUEST"]);
        assert!(task.await.expect_err("aborted").is_cancelled());
        assert!(running.is_empty(), "the aborted task dropped its leases");
    }
}
