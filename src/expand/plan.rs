//! An expansion as the request rules accepted it.

use std::collections::BTreeSet;

use crate::datasources::{ExpandMode, FieldValue};
use crate::protocol::{Echo, LinkInfo};

/// A valid `EXPAND_REQUEST`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandPlan {
    pub echo: Echo,
    /// At least one, each once.
    pub datasources: Vec<String>,
    /// At least one, each once, none empty.
    pub values: Vec<FieldValue>,
    /// Empty: the selected values' fields and the fields linked to them.
    pub fields: Vec<String>,
    pub size: usize,
    pub exclude: BTreeSet<FieldValue>,
    pub mode: ExpandMode,
    /// The links between the selected values, not new values.
    pub between: bool,
    /// The client's own links, followed with the server's.
    pub links: Vec<LinkInfo>,
}
