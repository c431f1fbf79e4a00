//! What a datasource offers and returns: fields, queries, results.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One field of a datasource, with a dotted path for nested values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub path: String,
    /// `text`, `keyword`, `long`, `double`, `date`, `boolean`, or the backend's own.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Field {
    pub fn new(path: impl Into<String>, kind: impl Into<String>) -> Field {
        Field {
            path: path.into(),
            kind: kind.into(),
        }
    }
}

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

/// One search result. `fields` is kept encoded, so a result is serialised
/// once however many clients it goes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub fields: Arc<RawValue>,
    pub highlight: Option<Arc<RawValue>>,
}

impl Item {
    /// Builds an item from flattened fields (dotted paths → values).
    pub fn from_fields(id: impl Into<String>, fields: &Map<String, Value>) -> Item {
        Item {
            id: id.into(),
            fields: encode_raw(fields),
            highlight: None,
        }
    }

    /// Sets the highlights: field path → highlighted fragments.
    pub fn with_highlight(mut self, highlight: &BTreeMap<String, Vec<String>>) -> Item {
        if !highlight.is_empty() {
            self.highlight = Some(encode_raw(highlight));
        }
        self
    }

    /// The fields decoded again (for tests and tools; the server never needs it).
    pub fn field_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.fields.get()).unwrap_or_default()
    }
}

fn encode_raw<T: Serialize + ?Sized>(value: &T) -> Arc<RawValue> {
    // Only string-keyed maps of JSON values come here, and those always
    // serialise; `null` stands in should that ever change.
    serde_json::value::to_raw_value(value)
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from(RawValue::NULL.to_owned()))
}
