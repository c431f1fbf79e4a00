//! The streams every node applies, by name, and how far this node has
//! applied each: what a resume waits on, and whether the node holds every
//! record the others hold (its readiness).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::datasources::Position;

/// The stream of records published to `datasource`.
pub fn records_stream(datasource: &str) -> String {
    format!("records:{datasource}")
}

/// The stream of `datasource`'s health measures.
pub fn health_stream(datasource: &str) -> String {
    format!("health:{datasource}")
}

/// What this node has applied of each stream.
#[derive(Default)]
pub struct Streams {
    applied: Mutex<HashMap<String, watch::Sender<Option<Position>>>>,
    /// Streams of records kept (see `Publish::keeps_records`) this node
    /// does not hold up to where the others do.
    behind: Mutex<BTreeMap<String, Behind>>,
    /// Whether this node has learned how far each stream of records kept
    /// goes (from the broker, at start; at once with one node).
    measured: AtomicBool,
    /// The latest publications every node refused (no room under
    /// `max_records`; every node refuses the same, applying in one order),
    /// with the limit: their publisher is told so instead of success.
    refused: Mutex<std::collections::VecDeque<(String, Position, usize)>>,
}

/// Refused publications remembered, for their publishers to learn of.
const REFUSED_KEPT: usize = 1024;

/// Why a node does not hold a stream up to where the others do.
#[derive(Debug, Clone)]
enum Behind {
    /// Reading it: it went this far when the node started.
    CatchingUp(Position),
    /// It cannot go on by itself: part of the stream is gone, or applying
    /// failed. The reason says what to do.
    Stuck(String),
}

impl Streams {
    fn sender(&self, stream: &str) -> watch::Sender<Option<Position>> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// The last position of `stream` applied on this node, as it changes.
    pub fn applied(&self, stream: &str) -> watch::Receiver<Option<Position>> {
        self.sender(stream).subscribe()
    }

    pub(super) fn set_applied(&self, stream: &str, position: Position) {
        {
            let mut behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Behind::CatchingUp(target)) = behind.get(stream) {
                if target.epoch == position.epoch && position.offset >= target.offset {
                    tracing::info!(%stream, offset = position.offset, "caught up");
                    behind.remove(stream);
                }
            }
        }
        self.sender(stream).send_replace(Some(position));
    }

    /// The streams this node is catching up on: how many publications each
    /// still has to apply.
    pub fn catching_up(&self) -> Vec<(String, u64)> {
        let behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        behind
            .iter()
            .filter_map(|(stream, state)| match state {
                Behind::CatchingUp(target) => {
                    let applied = self.applied(stream).borrow().clone();
                    let done = applied
                        .filter(|now| now.epoch == target.epoch)
                        .map_or(0, |now| now.offset);
                    Some((stream.clone(), target.offset.saturating_sub(done)))
                }
                Behind::Stuck(_) => None,
            })
            .collect()
    }

    /// `stream` went as far as `last` when this node started: it is not
    /// ready until it has applied that far.
    pub(super) fn catch_up_to(&self, stream: &str, last: Position) {
        let reached = self
            .applied(stream)
            .borrow()
            .as_ref()
            .is_some_and(|now| now.epoch == last.epoch && now.offset >= last.offset);
        if reached {
            return;
        }
        tracing::info!(%stream, until = last.offset, "catching up: not ready until this node holds the stream that far");
        let mut behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        behind
            .entry(stream.to_owned())
            .or_insert(Behind::CatchingUp(last));
    }

    /// Every node refuses publication `position` of `stream`: it does not
    /// fit under `limit` records.
    pub(super) fn refuse(&self, stream: &str, position: Position, limit: usize) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() >= REFUSED_KEPT {
            refused.pop_front();
        }
        refused.push_back((stream.to_owned(), position, limit));
    }

    /// The limit publication `position` of `stream` did not fit under, if it was refused.
    pub(super) fn refused(&self, stream: &str, position: &Position) -> Option<usize> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .iter()
            .find(|(s, p, _)| s == stream && p == position)
            .map(|(_, _, limit)| *limit)
    }

    /// Every stream's extent is known (or there is nothing to learn).
    pub(super) fn measured(&self) {
        self.measured.store(true, Ordering::Release);
    }

    /// This node cannot hold `stream` whole by itself, for `reason`.
    pub(super) fn stuck(&self, stream: &str, reason: String) {
        let mut behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(behind.get(stream), Some(Behind::Stuck(_))) {
            tracing::error!(%stream, %reason, "this node is not ready");
            behind.insert(stream.to_owned(), Behind::Stuck(reason));
        }
    }

    /// The streams this node cannot go on with by itself.
    pub(super) fn stuck_streams(&self) -> Vec<String> {
        let behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        behind
            .iter()
            .filter(|(_, state)| matches!(state, Behind::Stuck(_)))
            .map(|(stream, _)| stream.clone())
            .collect()
    }

    /// Whether `stream` is stuck (nothing more of it is applied).
    pub(super) fn is_stuck(&self, stream: &str) -> bool {
        let behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        matches!(behind.get(stream), Some(Behind::Stuck(_)))
    }

    /// Why this node cannot serve searches with every record the other
    /// nodes hold, if so: still catching up (and how far), or stuck.
    pub fn not_ready(&self) -> Option<String> {
        if !self.measured.load(Ordering::Acquire) {
            return Some(
                "catching up: waiting for the broker to tell how far the published records go"
                    .into(),
            );
        }
        let mut behind = self.behind.lock().unwrap_or_else(|e| e.into_inner());
        let mut reason = None;
        behind.retain(|stream, state| match state {
            Behind::Stuck(why) => {
                reason.get_or_insert_with(|| why.clone());
                true
            }
            Behind::CatchingUp(target) => {
                let applied = self.applied(stream).borrow().clone();
                let reached = applied
                    .as_ref()
                    .is_some_and(|now| now.epoch == target.epoch && now.offset >= target.offset);
                if !reached {
                    reason.get_or_insert_with(|| {
                        format!(
                            "catching up: {} of {} publications of `{stream}` applied",
                            applied
                                .filter(|now| now.epoch == target.epoch)
                                .map_or(0, |now| now.offset),
                            target.offset
                        )
                    });
                }
                !reached
            }
        });
        reason
    }

    /// Waits (at most `patience`) until this node has applied `position` of
    /// `stream`: true once it has, in that epoch.
    pub async fn wait_applied(
        &self,
        stream: &str,
        position: &Position,
        patience: Duration,
    ) -> bool {
        let mut applied = self.applied(stream);
        let reached = async move {
            applied
                .wait_for(|now| {
                    now.as_ref().is_some_and(|now| {
                        now.epoch == position.epoch && now.offset >= position.offset
                    })
                })
                .await
                .is_ok()
        };
        matches!(tokio::time::timeout(patience, reached).await, Ok(true))
    }
}
