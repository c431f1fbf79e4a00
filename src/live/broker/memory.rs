//! The `memory` broker: one node. A publication reaches this process's
//! subscribers; a stream's entries go straight to this node's readers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{new_node_id, Backend, NotAppended, Retention, StreamEntry, Topics};
use crate::datasources::Position;

pub(super) struct MemoryBroker {
    topics: Arc<Topics>,
    /// Each stream's epoch and last offset, and its readers.
    streams: Mutex<MemoryStreams>,
}

#[derive(Default)]
struct MemoryStreams {
    positions: HashMap<String, Position>,
    readers: Vec<mpsc::Sender<StreamEntry>>,
}

impl MemoryBroker {
    pub(super) fn new(topics: Arc<Topics>) -> MemoryBroker {
        MemoryBroker {
            topics,
            streams: Mutex::default(),
        }
    }
}

#[async_trait]
impl Backend for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn has_other_nodes(&self) -> bool {
        false
    }

    fn is_up(&self) -> bool {
        true
    }

    fn connections(&self) -> u64 {
        1
    }

    async fn subscribe(&self, _topic: &str) {}

    fn publish(&self, topic: &str, payload: Bytes) -> bool {
        self.topics.deliver(topic, payload);
        true
    }

    /// The next offset, and the entry handed to each reader (waiting while
    /// a reader is a full queue behind: publishers slow down rather than
    /// anything being dropped).
    async fn append(
        &self,
        stream: &str,
        payload: Bytes,
        _retention: Retention,
    ) -> Result<Position, NotAppended> {
        let (position, readers) = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let position = streams
                .positions
                .entry(stream.to_owned())
                .and_modify(|p| p.offset += 1)
                .or_insert_with(|| Position {
                    offset: 1,
                    epoch: new_node_id().to_string(),
                })
                .clone();
            streams.readers.retain(|r| !r.is_closed());
            (position, streams.readers.clone())
        };
        let entry = StreamEntry {
            stream: stream.to_owned(),
            position: position.clone(),
            payload,
        };
        for reader in readers {
            let _ = reader.send(entry.clone()).await;
        }
        Ok(position)
    }

    async fn trim(
        &self,
        _stream: &str,
        _through: &Position,
        _kept_for: Duration,
    ) -> Result<u64, String> {
        // Entries are handed to the reader, never kept.
        Ok(0)
    }

    async fn first_position(&self, _stream: &str) -> Result<Option<Position>, String> {
        Ok(None)
    }

    async fn last_position(&self, _stream: &str) -> Result<Option<Position>, String> {
        // Nothing to catch up on: this node is the only reader.
        Ok(None)
    }

    /// Every stream's entries from now on (there is no history to replay).
    fn follow(
        &self,
        _streams: Vec<String>,
        _added: mpsc::UnboundedReceiver<String>,
        sender: mpsc::Sender<StreamEntry>,
    ) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.readers.push(sender);
    }

    /// Nothing needs sharing with one node.
    async fn set_field(&self, _hash: &str, _field: &str, _value: &str) -> Result<(), String> {
        Ok(())
    }

    async fn fields(&self, _hash: &str) -> Result<HashMap<String, String>, String> {
        Ok(HashMap::new())
    }

    async fn remove_fields(&self, _hash: &str, _fields: Vec<String>) {}

    /// This node is the whole cluster: it holds every lease.
    async fn try_lease(&self, _name: &str, _ttl: Duration) -> bool {
        true
    }

    async fn release_lease(&self, _name: &str) {}
}
