//! The parsed query as JSON, for evaluators outside this crate (plugins in
//! any language get it with every `SEARCH`): the tree [`crate::syntax::parse`]
//! makes, with each group's clauses already given their occurrence, so every
//! evaluator reads the same grammar the same way.
//!
//! Version 1 is `{"version": 1, "query": NODE}`, NODE one of `all`,
//! `bool` (clauses with `must`/`should`/`must_not`), `boost`, `term`,
//! `phrase`, `prefix`, `wildcard`, `regex`, `fuzzy`, `range` and `exists`:
//! docs/protocol.md ("The parsed query") describes each and how it matches.
//!
//! ```
//! use serde_json::json;
//! let tree = tributary_query::tree::parsed("name:ada AND -city:gh*").unwrap();
//! assert_eq!(tree["version"], 1);
//! assert_eq!(tree["query"]["clauses"][1], json!({"occur": "must_not",
//!     "query": {"type": "prefix", "field": "city", "text": "gh"}}));
//! ```

use serde_json::{json, Value};

use crate::ast::{Leaf, LeafKind, Node, Occur};
use crate::{matches_all, syntax, SyntaxError};

/// The version of the tree's shape; a change that an evaluator of an
/// earlier version would misread gets a new one.
pub const VERSION: u64 = 1;

/// `{"version", "query"}` for a query, or the syntax error.
pub fn parsed(query: &str) -> Result<Value, SyntaxError> {
    let node = if matches_all(query) {
        json!({"type": "all"})
    } else {
        to_json(&syntax::parse(query)?)
    };
    Ok(json!({"version": VERSION, "query": node}))
}

/// One node of the tree.
pub fn to_json(node: &Node) -> Value {
    match node {
        Node::Group(group) => {
            let clauses = group
                .clauses(|node| Ok::<_, ()>(Some(to_json(node))))
                .ok()
                .flatten()
                .unwrap_or_default();
            json!({
                "type": "bool",
                "clauses": clauses
                    .into_iter()
                    .map(|(occur, query)| json!({"occur": occur_name(occur), "query": query}))
                    .collect::<Vec<_>>(),
            })
        }
        Node::Boost(inner, boost) => {
            json!({"type": "boost", "boost": boost, "query": to_json(inner)})
        }
        Node::Leaf(leaf) => leaf_json(leaf),
    }
}

fn occur_name(occur: Occur) -> &'static str {
    match occur {
        Occur::Must => "must",
        Occur::Should => "should",
        Occur::MustNot => "must_not",
    }
}

fn leaf_json(leaf: &Leaf) -> Value {
    let field = json!(leaf.field);
    match &leaf.kind {
        LeafKind::All => json!({"type": "all"}),
        LeafKind::Exists => json!({"type": "exists", "field": field}),
        LeafKind::Term(text) => json!({"type": "term", "field": field, "text": text}),
        LeafKind::Phrase { text, slop } => {
            json!({"type": "phrase", "field": field, "text": text, "slop": slop})
        }
        LeafKind::Prefix(text) => json!({"type": "prefix", "field": field, "text": text}),
        LeafKind::Wildcard(pattern) => {
            json!({"type": "wildcard", "field": field, "pattern": pattern})
        }
        LeafKind::Regex(pattern) => json!({"type": "regex", "field": field, "pattern": pattern}),
        LeafKind::Fuzzy { text, edits } => {
            json!({"type": "fuzzy", "field": field, "text": text, "edits": edits})
        }
        LeafKind::Range {
            lower,
            upper,
            include_lower,
            include_upper,
        } => json!({
            "type": "range",
            "field": field,
            "lower": lower,
            "upper": upper,
            "include_lower": include_lower,
            "include_upper": include_upper,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_node() {
        let tree =
            parsed(r#"a AND "b c"~2 d* e?f /g.*/ h~1 n:[1 TO 5} _exists_:x k:* (m OR n)^2 NOT o"#)
                .unwrap();
        let clauses = tree["query"]["clauses"].as_array().unwrap();
        let kinds: Vec<&str> = clauses
            .iter()
            .map(|c| c["query"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "term", "phrase", "prefix", "wildcard", "regex", "fuzzy", "range", "exists",
                "exists", "boost", "term"
            ]
        );
        // `AND` made both sides required; `NOT` prohibits.
        assert_eq!(clauses[0]["occur"], "must");
        assert_eq!(clauses[1]["occur"], "must");
        assert_eq!(clauses[2]["occur"], "should");
        assert_eq!(clauses[10]["occur"], "must_not");
        assert_eq!(clauses[1]["query"]["slop"], 2);
        assert_eq!(clauses[5]["query"]["edits"], 1);
        assert_eq!(
            clauses[6]["query"],
            json!({"type": "range", "field": "n", "lower": "1", "upper": "5",
                   "include_lower": true, "include_upper": false})
        );
        assert_eq!(clauses[9]["query"]["boost"], 2.0);
        assert_eq!(clauses[9]["query"]["query"]["type"], "bool");
        assert_eq!(parsed("  ").unwrap()["query"], json!({"type": "all"}));
        assert!(parsed("(a").is_err());
    }
}
