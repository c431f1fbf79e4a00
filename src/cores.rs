//! The server's pool of cores for CPU-bound searches, shared fairly.
//!
//! At most `size` searches run at once. When a place frees up it goes to the
//! waiting search whose owner (a connection) runs the fewest searches right
//! now, oldest first among equals. So a client with one light query is not
//! queued behind another client's backlog of heavy ones: it waits for at
//! most one search to end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{oneshot, Semaphore};
use tributary_datasource::{CpuPermit, CpuScheduler};

/// What one connection's CPU-bound work waits on: a place in the
/// connection's share (`limits.max_concurrent_searches`), then a place in
/// the server's pool of cores.
pub struct ConnectionShare {
    pub share: Arc<Semaphore>,
    pub cores: Arc<CorePool>,
    /// The connection, as the pool's owner.
    pub owner: u64,
}

#[async_trait]
impl CpuScheduler for ConnectionShare {
    async fn acquire(&self) -> CpuPermit {
        // A share is never closed; were it closed, it would simply not limit.
        let share = Arc::clone(&self.share).acquire_owned().await.ok();
        let core = self.cores.acquire(self.owner).await;
        CpuPermit::new((share, core))
    }
}

/// A bounded, fair pool of places for CPU-bound work.
pub struct CorePool {
    state: Mutex<PoolState>,
}

struct PoolState {
    free: usize,
    /// Places in use, by owner.
    running: HashMap<u64, usize>,
    /// When each owner with work running or waiting was last given a place.
    served: HashMap<u64, u64>,
    grants: u64,
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    owner: u64,
    grant: oneshot::Sender<CorePermit>,
}

/// A place in the pool, given back when dropped.
pub struct CorePermit {
    pool: Arc<CorePool>,
    owner: u64,
    /// False once the place has been handed on (see [`CorePool::release`]).
    armed: bool,
}

impl CorePool {
    /// A pool of `size` places (at least one).
    pub fn new(size: usize) -> Arc<CorePool> {
        Arc::new(CorePool {
            state: Mutex::new(PoolState {
                free: size.max(1),
                running: HashMap::new(),
                served: HashMap::new(),
                grants: 0,
                waiting: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Places free right now.
    pub fn available(&self) -> usize {
        self.lock().free
    }

    /// Waits for a place for `owner`.
    pub async fn acquire(self: &Arc<Self>, owner: u64) -> CorePermit {
        let granted = {
            let mut state = self.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                state.grant(owner);
                None
            } else {
                let (grant, granted) = oneshot::channel();
                state.waiting.push_back(Waiter { owner, grant });
                Some(granted)
            }
        };
        match granted {
            None => CorePermit {
                pool: Arc::clone(self),
                owner,
                armed: true,
            },
            // The sender lives in the queue until a place is handed over, and
            // a dropped pool drops no sender while anyone waits on it: should
            // it happen anyway, waiting on is the safe answer.
            Some(granted) => match granted.await {
                Ok(permit) => permit,
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Gives `owner`'s place to the fairest waiter, or back to the pool.
    fn release(self: &Arc<Self>, owner: u64) {
        let mut releasing = owner;
        loop {
            let next = {
                let mut state = self.lock();
                let fairest = state
                    .waiting
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.grant.is_closed())
                    .min_by_key(|(i, w)| {
                        let running = state.running.get(&w.owner).copied().unwrap_or(0);
                        let served = state.served.get(&w.owner).copied().unwrap_or(0);
                        (running, served, *i)
                    })
                    .map(|(i, _)| i);
                // Waiters that gave up are dropped on the way.
                let next = fairest.and_then(|i| state.waiting.remove(i));
                state.waiting.retain(|w| !w.grant.is_closed());
                // The releasing owner counted as busy while the next was
                // chosen: a place freed by a busy client goes elsewhere first.
                state.finished(releasing);
                match next {
                    Some(waiter) => {
                        state.grant(waiter.owner);
                        waiter
                    }
                    None => {
                        state.free += 1;
                        return;
                    }
                }
            };
            let permit = CorePermit {
                pool: Arc::clone(self),
                owner: next.owner,
                armed: true,
            };
            match next.grant.send(permit) {
                Ok(()) => return,
                // It gave up just now: hand the place on again.
                Err(mut permit) => {
                    permit.armed = false;
                    releasing = permit.owner;
                }
            }
        }
    }
}

impl PoolState {
    fn grant(&mut self, owner: u64) {
        *self.running.entry(owner).or_default() += 1;
        self.grants += 1;
        self.served.insert(owner, self.grants);
    }

    fn finished(&mut self, owner: u64) {
        if let Some(count) = self.running.get_mut(&owner) {
            *count -= 1;
            if *count == 0 {
                self.running.remove(&owner);
                // An owner with nothing running or waiting is forgotten:
                // the pool's memory stays bounded by its work.
                if !self.waiting.iter().any(|w| w.owner == owner) {
                    self.served.remove(&owner);
                }
            }
        }
    }
}

impl Drop for CorePermit {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(self.owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_datasource::WorkLimits;

    #[tokio::test]
    async fn cpu_permits_take_a_place_in_the_share_and_the_pool() {
        let share = Arc::new(Semaphore::new(1));
        let cores = CorePool::new(2);
        let work = WorkLimits::new(Arc::new(ConnectionShare {
            share: Arc::clone(&share),
            cores: Arc::clone(&cores),
            owner: 7,
        }));
        let permit = work.cpu_permit().await;
        assert_eq!(share.available_permits(), 0);
        assert_eq!(cores.available(), 1);
        drop(permit);
        assert_eq!(share.available_permits(), 1);
        assert_eq!(cores.available(), 2);
    }
    use std::time::Duration;

    #[tokio::test]
    async fn a_place_goes_to_the_owner_running_the_fewest() {
        let pool = CorePool::new(1);
        let heavy = pool.acquire(1).await;
        // Owner 1 queues two more, then owner 2 asks once.
        let mut queued = Vec::new();
        for _ in 0..2 {
            let pool = Arc::clone(&pool);
            queued.push(tokio::spawn(async move { pool.acquire(1).await }));
        }
        tokio::task::yield_now().await;
        let light = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.acquire(2).await })
        };
        tokio::task::yield_now().await;
        // Owner 2 runs nothing; owner 1 is busy: owner 2 goes first,
        // ahead of owner 1's older waiters.
        drop(heavy);
        let granted = tokio::time::timeout(Duration::from_secs(1), light)
            .await
            .expect("granted")
            .expect("task");
        assert_eq!(granted.owner, 2);
        drop(granted);
        for waiter in queued {
            let permit = tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .expect("granted")
                .expect("task");
            assert_eq!(permit.owner, 1);
        }
        assert_eq!(pool.available(), 1);
    }

    #[tokio::test]
    async fn waiters_that_give_up_do_not_keep_places() {
        let pool = CorePool::new(1);
        let held = pool.acquire(1).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), pool.acquire(2)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(pool.available(), 1);
        let _again = pool.acquire(3).await;
        assert_eq!(pool.available(), 0);
    }
}
