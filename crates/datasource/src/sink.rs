//! Where a search streams its results, and what its work may hold.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::DatasourceError;
use crate::record::Item;

/// Nobody wants the results any more: the client left or the request was
/// canceled. Converts into [`DatasourceError::canceled`], so an adapter stops with `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the results are no longer wanted")]
pub struct SinkClosed;

impl From<SinkClosed> for DatasourceError {
    fn from(_: SinkClosed) -> Self {
        DatasourceError::canceled()
    }
}

/// What a [`ResultSink`] delivers to: the server's connection, or the test
/// sink's record. Adapters never implement it.
#[async_trait]
pub trait BatchTarget: Send + Sync {
    /// Delivers one push; waits while the receiver is behind.
    async fn push(&mut self, total: u64, items: Vec<Item>) -> Result<(), SinkClosed>;
    /// The search ended without error: deliver what must follow the last push.
    async fn finish(&mut self, _total: u64) -> Result<(), SinkClosed> {
        Ok(())
    }
    /// True once nothing pushed would be delivered.
    fn is_closed(&self) -> bool;
}

/// Keeps a request counted as running (against the connection's limits) for
/// as long as any clone of it lives. An adapter that hands work to another
/// thread moves a clone there, so a canceled request still counts until that
/// work has really stopped.
#[derive(Clone, Default)]
pub struct Lease {
    _held: Option<Arc<dyn Any + Send + Sync>>,
}

impl Lease {
    /// A lease that holds `guard` until its last clone is dropped.
    pub fn new<T: Send + Sync + 'static>(guard: T) -> Lease {
        Lease {
            _held: Some(Arc::new(guard)),
        }
    }
}

/// The server's scheduler of CPU-bound work: where a request's work waits
/// for a place (its connection's share, then a core). Adapters never
/// implement it; they take places through [`WorkLimits::cpu_permit`].
#[async_trait]
pub trait CpuScheduler: Send + Sync {
    /// Waits for a place; the work holds the permit until done.
    async fn acquire(&self) -> CpuPermit;
}

/// What CPU-bound work waits on before it starts: the server's
/// [`CpuScheduler`] for this request (none in tests: no waiting).
#[derive(Clone, Default)]
pub struct WorkLimits {
    scheduler: Option<Arc<dyn CpuScheduler>>,
}

impl WorkLimits {
    /// Work that waits on `scheduler` (the server builds these).
    pub fn new(scheduler: Arc<dyn CpuScheduler>) -> WorkLimits {
        WorkLimits {
            scheduler: Some(scheduler),
        }
    }

    /// Waits for a place (see [`ResultSink::cpu_permit`]).
    pub async fn cpu_permit(&self) -> CpuPermit {
        match &self.scheduler {
            Some(scheduler) => scheduler.acquire().await,
            None => CpuPermit::default(),
        }
    }
}

/// A place to run CPU-bound work; held until the work is done.
#[derive(Default)]
pub struct CpuPermit {
    _held: Option<Box<dyn Any + Send + Sync>>,
}

impl CpuPermit {
    /// A permit that holds `places` (the scheduler's own guards) until dropped.
    pub fn new<T: Send + Sync + 'static>(places: T) -> CpuPermit {
        CpuPermit {
            _held: Some(Box::new(places)),
        }
    }
}

/// Receives one datasource's results for one request.
pub struct ResultSink {
    target: Box<dyn BatchTarget>,
    total: Option<u64>,
    pushed: u64,
    lease: Lease,
    work: WorkLimits,
}

impl ResultSink {
    /// A sink delivering to `target` (the server builds these).
    pub fn new(target: Box<dyn BatchTarget>, lease: Lease, work: WorkLimits) -> ResultSink {
        ResultSink {
            target,
            total: None,
            pushed: 0,
            lease,
            work,
        }
    }

    /// A sink that records what is pushed, for unit tests of adapters.
    pub fn for_test() -> (ResultSink, Pushed) {
        let pushed = Pushed::default();
        let target = Box::new(TestTarget(pushed.clone()));
        (
            ResultSink::new(target, Lease::default(), WorkLimits::default()),
            pushed,
        )
    }

    /// Sets the total number of matches (of the whole query, not the page).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    /// The total set so far.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Sends the next results of the page (any number: the server splits
    /// them into batches). Waits while the client is behind on reading;
    /// fails once the results are no longer wanted. Without a total set,
    /// the total is the number of results pushed so far.
    pub async fn push(&mut self, items: Vec<Item>) -> Result<(), SinkClosed> {
        self.pushed += items.len() as u64;
        let total = *self.total.get_or_insert(self.pushed);
        self.target.push(total, items).await
    }

    /// Called by the server after a search that succeeded.
    pub async fn finish(&mut self) -> Result<(), SinkClosed> {
        let total = *self.total.get_or_insert(self.pushed);
        self.target.finish(total).await
    }

    /// How many results have been pushed so far.
    pub fn items_pushed(&self) -> u64 {
        self.pushed
    }

    /// True once the results are no longer wanted; an adapter may stop fetching.
    pub fn is_closed(&self) -> bool {
        self.target.is_closed()
    }

    /// The limits CPU-bound work of this request waits on.
    pub fn work(&self) -> &WorkLimits {
        &self.work
    }

    /// Keeps the request counted as running while the returned lease lives:
    /// move it into work that outlives the `search` future (a blocking thread).
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// Waits for a place in the connection's share of the search pool and in
    /// the server's pool of cores. Take it before CPU-bound work and hold it
    /// until the end: no client can occupy every core, and no more searches
    /// run at once than there are cores.
    pub async fn cpu_permit(&self) -> CpuPermit {
        self.work.cpu_permit().await
    }
}

/// What was pushed into a [`ResultSink::for_test`] sink.
#[derive(Clone, Default)]
pub struct Pushed(Arc<Mutex<TestRecord>>);

#[derive(Default)]
struct TestRecord {
    total: Option<u64>,
    batches: Vec<Vec<Item>>,
    finished: bool,
    closed: bool,
}

impl Pushed {
    fn record(&self) -> MutexGuard<'_, TestRecord> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last total pushed.
    pub fn total(&self) -> Option<u64> {
        self.record().total
    }

    /// Every result pushed, in order.
    pub fn items(&self) -> Vec<Item> {
        self.record().batches.iter().flatten().cloned().collect()
    }

    /// The ids of every result pushed, in order.
    pub fn ids(&self) -> Vec<String> {
        self.record()
            .batches
            .iter()
            .flatten()
            .map(|item| item.id.clone())
            .collect()
    }

    /// How many pushes there were.
    pub fn pushes(&self) -> usize {
        self.record().batches.len()
    }

    /// Whether the server's `finish` was called.
    pub fn finished(&self) -> bool {
        self.record().finished
    }

    /// From now on every push fails, as when the client has left.
    pub fn close(&self) {
        self.record().closed = true;
    }
}

struct TestTarget(Pushed);

#[async_trait]
impl BatchTarget for TestTarget {
    async fn push(&mut self, total: u64, items: Vec<Item>) -> Result<(), SinkClosed> {
        let mut record = self.0.record();
        if record.closed {
            return Err(SinkClosed);
        }
        record.total = Some(total);
        record.batches.push(items);
        Ok(())
    }

    async fn finish(&mut self, total: u64) -> Result<(), SinkClosed> {
        let mut record = self.0.record();
        record.total = Some(total);
        record.finished = true;
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.0.record().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[tokio::test]
    async fn pushes_fail_once_closed() {
        let (mut sink, pushed) = ResultSink::for_test();
        sink.set_total(10);
        let item = Item::from_fields("a", &Map::new());
        assert_eq!(sink.push(vec![item.clone()]).await, Ok(()));
        pushed.close();
        assert!(sink.is_closed());
        assert_eq!(sink.push(vec![item]).await, Err(SinkClosed));
        assert_eq!(pushed.ids(), ["a"]);
        assert_eq!(pushed.total(), Some(10));
        let error: DatasourceError = SinkClosed.into();
        assert_eq!(error.kind, crate::ErrorKind::Canceled);
    }

    #[tokio::test]
    async fn the_total_defaults_to_what_was_pushed() {
        let (mut sink, pushed) = ResultSink::for_test();
        let item = Item::from_fields("a", &Map::new());
        sink.push(vec![item.clone(), item]).await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(pushed.total(), Some(2));
        assert!(pushed.finished());
    }
}
