//! Live data: records that arrive after a search, and records published to
//! a datasource.
//!
//! A datasource that can follow new records returns a [`Live`] from
//! [`crate::Datasource::live`]. The server runs a live query's first page
//! through [`Live::search_live`], which says where that page stands (a
//! [`LiveCursor`]); from then on it asks [`Live::changes`] for what is new
//! since each cursor — when the datasource announces new records
//! ([`LiveMode::Push`]) or every interval ([`LiveMode::Poll`]). Subscribers
//! that follow the same query from the same cursor share one [`Watch`], so a
//! new record is matched once per distinct query, however many clients wait
//! for it.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::context::RequestContext;
use crate::error::DatasourceError;
use crate::record::{Item, SearchQuery};
use crate::sink::ResultSink;

/// How a datasource learns of new records.
#[derive(Debug, Clone)]
pub enum LiveMode {
    /// The datasource announces them: the value changes whenever records were
    /// added (its meaning is the datasource's own, e.g. a record count).
    Push(watch::Receiver<u64>),
    /// They must be asked for, every `interval` (the streaming-compute API's
    /// polling-only types).
    Poll { interval: Duration },
}

impl LiveMode {
    /// `push` or `poll`, as `LIVE_STARTED` names the mode.
    pub fn name(&self) -> &'static str {
        match self {
            LiveMode::Push(_) => "push",
            LiveMode::Poll { .. } => "poll",
        }
    }
}

/// Where a live query's results stand: the records after it are new. Its
/// content is the datasource's own (a row count, a timestamp and the ids seen
/// at it…); the server only stores and compares cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCursor(pub Value);

/// One live query being followed, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub query: String,
    pub cursor: LiveCursor,
}

/// A datasource's live side.
#[async_trait]
pub trait Live: Send + Sync {
    /// How new records are learnt of.
    fn mode(&self) -> LiveMode;

    /// Runs the first page of a live query as [`crate::Datasource::search`]
    /// does, and returns the cursor that page stands at: every record after
    /// it, and none before, will be reported by [`Live::changes`].
    async fn search_live(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<LiveCursor, DatasourceError>;

    /// For each watch, the records matching its query that arrived after
    /// its cursor, oldest first; each cursor is moved past what is returned.
    /// One call serves every distinct live query of the datasource.
    async fn changes(&self, watches: &mut [Watch]) -> Vec<Result<Vec<Item>, DatasourceError>>;

    /// The last publication a cursor includes, for datasources whose new
    /// records are publications of a stream ([`crate::Publish::append_published`]);
    /// `None` when it is not known.
    fn position_of(&self, _cursor: &LiveCursor) -> Option<Position> {
        None
    }

    /// The cursor just after publication `position`, if this datasource
    /// still knows where it stands (same epoch, not older than what it
    /// remembers): a client that held `position` resumes from there.
    fn cursor_after(&self, _position: &Position) -> Option<LiveCursor> {
        None
    }

    /// Its polls shared by a cluster ([`SharedPolls`]); `None`: each node
    /// polls for its own live queries.
    fn shared_polls(&self) -> Option<&dyn SharedPolls> {
        None
    }
}

/// One node polling a [`LiveMode::Poll`] datasource for the live queries of
/// every node of a cluster, instead of each node polling for its own.
#[async_trait]
pub trait SharedPolls: Send + Sync {
    /// Polls `query` for the whole cluster from `cursor` (one per query,
    /// kept by the cluster; `None`: start now, returning nothing): what is
    /// new, as values every node's [`SharedPolls::take_polled`] reads, and the
    /// cursor after them.
    async fn poll_shared(
        &self,
        query: &str,
        cursor: Option<LiveCursor>,
    ) -> Result<(Vec<Value>, LiveCursor), DatasourceError>;

    /// Of documents polled for the cluster ([`SharedPolls::poll_shared`] of the
    /// watch's query), those new to `watch`, oldest first; moves its cursor.
    fn take_polled(&self, watch: &mut Watch, polled: &[Value]) -> Vec<Item>;
}

/// A place in a stream of publications: the `offset` of one publication
/// (1, 2, 3… gap-free), in an `epoch` that changes whenever the stream's
/// history was lost (offsets then start again).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// One publication of a batch given to [`crate::Publish::append_published`]:
/// where it is in the stream and how many of the batch's records it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub position: Position,
    pub records: usize,
}

/// What publishing records did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Appended {
    /// How many records were added.
    pub records: usize,
    /// Fields of the new records that are stored and returned but cannot be
    /// searched (the datasource's schema does not have them).
    pub unindexed_fields: Vec<String>,
    /// How many of them replaced a record held under the same id, when the
    /// datasource can tell (`None` when it cannot).
    pub replaced: Option<usize>,
}

/// Why records could not be published. Nothing of the batch was added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// This datasource does not take published records.
    #[error("this datasource does not take published records")]
    NotSupported,
    /// Record number `record` (from 0) of the batch is invalid.
    #[error("record {record}: {message}")]
    Invalid { record: usize, message: String },
    /// The datasource holds as many records as it may.
    #[error("the datasource holds as many records as it may ({limit})")]
    Full { limit: usize },
    /// The datasource failed.
    #[error("{0}")]
    Failed(DatasourceError),
}

/// Records to publish: JSON objects, nested as the client sent them.
pub type Records = Vec<Map<String, Value>>;
