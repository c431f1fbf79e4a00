//! The id a client gives a request, carried both ways: in the request, and
//! echoed on every answer to it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A client-chosen id tying answers to a request: a string or an integer,
/// echoed back verbatim as `"request-id"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Text(s) => f.write_str(s),
        }
    }
}
