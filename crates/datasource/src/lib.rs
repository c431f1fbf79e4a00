//! The datasource API of tributary: everything an adapter needs, and nothing
//! of the server.
//!
//! - [`Datasource`]: the trait an adapter implements;
//! - [`ResultSink`]: where a search streams its results;
//!   [`ResultSink::for_test`] hands back what was pushed, so an adapter is
//!   unit-tested without a server;
//! - [`RequestContext`]: who asks, and by when the answer is due;
//! - [`DatasourceError`]: why a datasource could not answer;
//! - [`DatasourceSettings`]: an adapter's table of the config;
//! - capabilities beyond searching, one small trait each: [`Expand`],
//!   [`ListValues`], [`Publish`] (records published to the server),
//!   [`Live`] (following records that arrive after a search) and
//!   [`SharedPolls`] (one node polling for a cluster);
//! - what adapters share: [`parse_duration`], [`flatten`], [`QueryLimits`],
//!   [`count_expansion`].
//!
//! ```
//! use async_trait::async_trait;
//! use tributary_datasource::*;
//!
//! /// Answers every query with one record.
//! struct One;
//!
//! #[async_trait]
//! impl Datasource for One {
//!     async fn fields(&self, _: &RequestContext) -> Result<FieldList, DatasourceError> {
//!         Ok(FieldList { index: "one".into(), fields: vec![Field::new("name", "keyword")] })
//!     }
//!     async fn search(
//!         &self,
//!         _: &RequestContext,
//!         query: &SearchQuery,
//!         results: &mut ResultSink,
//!     ) -> Result<(), DatasourceError> {
//!         let mut fields = serde_json::Map::new();
//!         fields.insert("name".into(), query.query.clone().into());
//!         results.set_total(1);
//!         results.push(vec![Item::from_fields("1", &fields)]).await?;
//!         Ok(())
//!     }
//!
//!     // A capability beyond searching: offered by returning itself.
//!     fn value_lister(&self) -> Option<&dyn ListValues> {
//!         Some(self)
//!     }
//! }
//!
//! #[async_trait]
//! impl ListValues for One {
//!     async fn values_like(
//!         &self,
//!         _: &RequestContext,
//!         _field: &str,
//!         hint: &Subsequence,
//!         _limit: usize,
//!     ) -> Result<Vec<String>, DatasourceError> {
//!         Ok(vec![hint.chars.iter().collect()])
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (mut sink, pushed) = ResultSink::for_test();
//! let query = SearchQuery { query: "ada".into(), from: 0, size: 10 };
//! One.search(&RequestContext::for_test(), &query, &mut sink).await.unwrap();
//! assert_eq!(pushed.total(), Some(1));
//! assert_eq!(pushed.ids(), ["1"]);
//! let lister = One.value_lister().expect("it lists values");
//! let hint = Subsequence { chars: vec!['a', 'd', 'a'], ignore_case: false };
//! let listed = lister.values_like(&RequestContext::for_test(), "name", &hint, 10).await.unwrap();
//! assert_eq!(listed, ["ada"]);
//! assert!(One.publisher().is_none() && One.live().is_none());
//! # });
//! ```

mod context;
mod duration;
mod error;
mod expand;
pub mod flatten;
mod live;
pub mod query_limits;
mod record;
mod settings;
mod sink;

pub use async_trait::async_trait;

pub use context::{Caller, RequestContext};

/// What a health check that passed found, beyond "it answers" (as
/// Grafana's `CheckHealth` reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthy {
    /// The datasource's own measure of its latency (a plugin timing its
    /// backend); `None`: how long the check took is its latency.
    pub latency: Option<std::time::Duration>,
}
pub use duration::parse_duration;
pub use error::{redact_userinfo, DatasourceError, ErrorKind};
pub use expand::{
    count_between, count_expansion, escape_field, jlh, rank_expansion, selection_query, values_of,
    Connection, ExpandMode, ExpandQuery, Expansion, FieldValue, Selected, Subsequence, Vertex,
};
pub use live::{
    AppendError, Appended, Live, LiveCursor, LiveMode, Position, Publication, Records, SharedPolls,
    Watch,
};
pub use query_limits::QueryLimits;
pub use record::{Field, FieldList, Item, SearchQuery};
pub use settings::{DatasourceSettings, SetupError};
pub use sink::{
    BatchTarget, CpuPermit, CpuScheduler, Lease, Pushed, ResultSink, SinkClosed, WorkLimits,
};

/// A source of records that can be searched: the core every adapter
/// implements. What an adapter can do beyond it is a capability trait of its
/// own ([`Expand`], [`ListValues`], [`Publish`], [`Live`] and, for polled
/// live datasources in a cluster, [`SharedPolls`]), offered through the
/// accessors below (`None` by default: the server does without it).
///
/// Implementations must be cheap to share (`Arc<dyn Datasource>`) and must
/// tolerate being dropped mid-call: a canceled request simply drops the future.
#[async_trait]
pub trait Datasource: Send + Sync + 'static {
    /// The fields records of this datasource have, with dotted paths for nested values.
    async fn fields(&self, request: &RequestContext) -> Result<FieldList, DatasourceError>;

    /// Runs `query` and streams the total number of matches and the page
    /// `from..from+size` into `results`, in as many pushes as is convenient
    /// (an adapter that pages through its backend pushes each page as it
    /// comes). A push fails once nobody wants the results any more: stop with `?`.
    async fn search(
        &self,
        request: &RequestContext,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError>;

    /// Checks that the datasource can answer; used by `GET /healthz` and
    /// the `status:` and `latency:` channels.
    async fn health(&self) -> Result<Healthy, DatasourceError> {
        Ok(Healthy::default())
    }

    /// Its own expansion ([`Expand`]); `None`: the server samples and counts.
    fn expander(&self) -> Option<&dyn Expand> {
        None
    }

    /// Its own listing of values ([`ListValues`]); `None`: the server samples.
    fn value_lister(&self) -> Option<&dyn ListValues> {
        None
    }

    /// Whether it takes published records ([`Publish`]); `None`: it does not.
    fn publisher(&self) -> Option<&dyn Publish> {
        None
    }

    /// Its live side, if it can follow new records (see [`Live`]); `None`:
    /// a live query gets `live_unsupported` for this datasource.
    fn live(&self) -> Option<&dyn Live> {
        None
    }
}

/// Finding the values next to selected ones with the backend's own aggregation.
#[async_trait]
pub trait Expand: Send + Sync {
    /// Finds the values next to the selected ones (see [`ExpandQuery`]).
    /// `None`: not this time (the server then searches a bounded sample of
    /// the records holding the selection and counts it with
    /// [`count_expansion`], and says so).
    /// `work`: take [`WorkLimits::cpu_permit`] before CPU-bound counting.
    async fn expand(
        &self,
        request: &RequestContext,
        query: &ExpandQuery,
        work: &WorkLimits,
    ) -> Result<Option<Expansion>, DatasourceError>;
}

/// Listing a field's distinct values, for links that rewrite values.
#[async_trait]
pub trait ListValues: Send + Sync {
    /// Up to `limit` distinct values of `field` holding `hint`'s characters
    /// in order, for links that rewrite values (`replace`): the server
    /// keeps those that rewrite to the selected value and looks for them.
    /// Without it, the server searches a bounded sample of records with
    /// [`Subsequence::lucene_regexp`] and reads their values.
    async fn values_like(
        &self,
        request: &RequestContext,
        field: &str,
        hint: &Subsequence,
        limit: usize,
    ) -> Result<Vec<String>, DatasourceError>;
}

/// Taking records published to the server (`POST /api/datasources/<id>/records`).
#[async_trait]
pub trait Publish: Send + Sync {
    /// Checks published records without adding them, as [`Publish::append`]
    /// would (the server checks before a batch enters the stream every node
    /// applies, so no node refuses what another accepted).
    fn check_append(&self, records: &Records) -> Result<Appended, AppendError>;

    /// Adds published records: all of them, or none when one is invalid.
    async fn append(&self, records: Records) -> Result<Appended, AppendError>;

    /// Adds records that are `publications` of the datasource's stream (in
    /// order, their record counts adding up to `records.len()`), so a live
    /// cursor can later be found from a publication's [`Position`] (see
    /// [`Live::cursor_after`]). By default: [`Publish::append`], the
    /// positions forgotten.
    async fn append_published(
        &self,
        records: Records,
        _publications: Vec<Publication>,
    ) -> Result<Appended, AppendError> {
        self.append(records).await
    }

    /// The last publication it holds, for a datasource that keeps them
    /// across restarts: the server goes on from there. By default `None`.
    fn last_published(&self) -> Option<Position> {
        None
    }

    /// Whether published records are this datasource's own to keep and
    /// search (the embedded one), rather than relayed to live queries for a
    /// source that keeps its data elsewhere (a service). With several nodes
    /// the stream of records kept is kept whole, and a node that missed
    /// part of it is not ready. By default `false`.
    fn keeps_records(&self) -> bool {
        false
    }

    /// Whether it holds publication `position` (of the current epoch or an
    /// earlier one), for a datasource that keeps records: a node that
    /// starts checks it holds what the broker lost. By default `false`.
    fn holds(&self, _position: &Position) -> bool {
        false
    }

    /// The file holding what it keeps of published records, for a
    /// datasource that keeps them on disk: a node missing part of the
    /// stream copies a ready peer's (peer recovery). By default `None`.
    fn log_file(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Checks a copy of [`Publish::log_file`] from a peer before it is put
    /// in place: how many records it holds, or why it cannot be used.
    fn check_log_copy(&self, _copy: &std::path::Path) -> Result<usize, String> {
        Err("this datasource keeps no log".into())
    }
}
