//! An adapter's table of the config.

use serde::de::DeserializeOwned;
use serde_json::Value;

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
    /// The folder where this datasource keeps what must outlive the process
    /// (records published to it), its own within the server's `data_dir`;
    /// `None`: keep nothing (tests, or a server that takes no records).
    pub data_dir: Option<std::path::PathBuf>,
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
