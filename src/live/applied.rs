//! The streams every node applies, by name, and how far this node has
//! applied each: what a resume waits on.

use std::collections::HashMap;
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
        self.sender(stream).send_replace(Some(position));
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
