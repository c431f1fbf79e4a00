//! Datasources: the [`Datasource`] trait every adapter implements, the
//! [`Registry`] that maps a config `type` to an adapter's constructor, and one
//! module per adapter.
//!
//! Adding an adapter is one module, one line in [`Registry::with_builtin`], and a
//! config example. `docs/plugins.md` walks through it.

pub mod elasticsearch;
pub mod fixtures;
pub mod flatten;
pub mod query_limits;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::federation::ResultSink;
use crate::protocol::ErrorCode;
pub use crate::protocol::{Field, Item};

/// The fields a datasource offers, as sent in `FIELDS_RECEIVE`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldList {
    /// The index (or file, table...) the fields come from; may be empty.
    pub index: String,
    pub fields: Vec<Field>,
}

/// One page of a search: the query as the user typed it, and the page wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub query: String,
    pub from: u64,
    pub size: u64,
}

/// A source of records that can be searched.
///
/// Implementations must be cheap to share (`Arc<dyn Datasource>`) and must
/// tolerate being dropped mid-call: a cancelled request simply drops the future.
#[async_trait]
pub trait Datasource: Send + Sync + 'static {
    /// The fields records of this datasource have, with dotted paths for nested values.
    async fn fields(&self) -> Result<FieldList, DatasourceError>;

    /// Runs `query` and sends the total number of matches and the page
    /// `from..from+size` to `results`, in as many calls as is convenient
    /// (an adapter that pages through its backend sends each page as it comes).
    async fn search(
        &self,
        query: &SearchQuery,
        results: &mut ResultSink,
    ) -> Result<(), DatasourceError>;

    /// Checks that the datasource can answer; used by `GET /healthz`.
    async fn health(&self) -> Result<(), DatasourceError> {
        Ok(())
    }
}

/// Why a datasource could not answer. The message reaches the user, so it
/// should say what went wrong in their terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasourceError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query could not be parsed or refers to something that does not exist.
    BadQuery,
    /// The backend is unreachable or failed.
    Unavailable,
    /// The backend refused our credentials.
    Unauthorized,
    /// The backend did not answer in time.
    Timeout,
}

impl DatasourceError {
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadQuery,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unauthorized,
            message: message.into(),
        }
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Timeout,
            message: message.into(),
        }
    }

    /// The wire error code for this kind of failure.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            ErrorKind::BadQuery => ErrorCode::BadQuery,
            ErrorKind::Unavailable => ErrorCode::DatasourceFailed,
            ErrorKind::Unauthorized => ErrorCode::DatasourceUnauthorized,
            ErrorKind::Timeout => ErrorCode::Timeout,
        }
    }
}

impl fmt::Display for DatasourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DatasourceError {}

#[cfg(test)]
mod tests {
    use super::redact_userinfo;

    #[test]
    fn userinfo_is_hidden_wherever_a_url_appears() {
        assert_eq!(
            redact_userinfo(
                "error sending request for url (http://elastic:s3cret@es:9200/_search)"
            ),
            "error sending request for url (http://***@es:9200/_search)"
        );
        assert_eq!(
            redact_userinfo("a https://u:p@a.example, b http://b.example/x@y"),
            "a https://***@a.example, b http://b.example/x@y"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
    }
}

/// `text` with the user and password of every URL in it hidden:
/// `http://user:secret@host` becomes `http://***@host`. Applied to every
/// datasource error before it reaches a client or a log.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or whitespace.
        let end = tail
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == ')'
                    || c == '"'
                    || c == '\''
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// One `[datasources.<id>]` table of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasourceSettings {
    /// The key of the table: the id clients use.
    pub id: String,
    /// Display name; defaults to the id.
    pub name: String,
    /// The adapter, from `type`.
    pub kind: String,
    /// How long one call may take; the server default when unset.
    pub timeout: Option<std::time::Duration>,
    /// Every other key of the table, for the adapter to read with [`DatasourceSettings::options`].
    pub options: serde_json::Map<String, Value>,
}

/// A datasource the config could not set up; the message names the datasource and the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("datasource `{id}`: {message}")]
pub struct SetupError {
    pub id: String,
    pub message: String,
}

impl DatasourceSettings {
    /// Deserialises the adapter's own options, naming the offending key on error.
    /// Use `#[serde(deny_unknown_fields)]` on `T` so typos are caught too.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, SetupError> {
        let value = Value::Object(self.options.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("key `{path}`: {inner}")
            };
            self.error(message)
        })
    }

    /// An error about this datasource.
    pub fn error(&self, message: impl Into<String>) -> SetupError {
        SetupError {
            id: self.id.clone(),
            message: message.into(),
        }
    }
}

/// Builds a datasource from its settings.
pub type Constructor =
    Box<dyn Fn(&DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> + Send + Sync>;

/// Maps a config `type` to the constructor of its adapter.
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            constructors: BTreeMap::new(),
        }
    }

    /// The adapters that ship with tributary.
    pub fn with_builtin() -> Self {
        let mut registry = Registry::new();
        registry.register("fixtures", fixtures::FixturesDatasource::from_settings);
        registry.register(
            "elasticsearch",
            elasticsearch::ElasticsearchDatasource::from_settings,
        );
        registry
    }

    /// Adds (or replaces) the adapter for `kind`.
    pub fn register<F>(&mut self, kind: &str, constructor: F)
    where
        F: Fn(&DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError>
            + Send
            + Sync
            + 'static,
    {
        self.constructors
            .insert(kind.to_owned(), Box::new(constructor));
    }

    /// The known `type`s.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// Builds the datasource `settings` describe.
    pub fn build(&self, settings: &DatasourceSettings) -> Result<Arc<dyn Datasource>, SetupError> {
        match self.constructors.get(&settings.kind) {
            Some(constructor) => constructor(settings),
            None => Err(settings.error(format!(
                "key `type`: unknown datasource type `{}`; known types: {}",
                settings.kind,
                self.kinds().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_builtin()
    }
}
