//! tributary's query language, for datasources that evaluate queries
//! themselves (the embedded `fixtures` index, SQL): Elasticsearch's
//! `query_string` syntax parsed exactly as Lucene's classic query parser
//! does ([`syntax`]), into a tree that keeps what the user wrote ([`ast`]);
//! Elasticsearch mappings ([`mapping`]); dates and date math ([`date`]); and
//! the standard analyzer ([`analysis`]).
//!
//! ```
//! use tributary_query::{ast::{LeafKind, Node}, syntax};
//!
//! let Node::Leaf(leaf) = syntax::parse("user.screen_name:ann*").unwrap() else { panic!() };
//! assert_eq!(leaf.field.as_deref(), Some("user.screen_name"));
//! assert_eq!(leaf.kind, LeafKind::Prefix("ann".into()));
//! ```

pub mod analysis;
pub mod ast;
pub mod date;
pub mod mapping;
pub mod pattern;
pub mod syntax;
pub mod tree;
pub mod value;

pub use ast::Node;
pub use mapping::{Dynamic, FieldType, MappedField, Mapping};
pub use syntax::{parse, SyntaxError};

/// The empty query and `*` match every record: evaluators answer them
/// without parsing (and without an index walk).
pub fn matches_all(query: &str) -> bool {
    matches!(query.trim(), "" | "*")
}
