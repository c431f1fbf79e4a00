//! Expanding from selected values: which other values the records holding
//! them have, and how often (`EXPAND_REQUEST`).
//!
//! The server resolves links between fields before an adapter is asked:
//! every [`Selected`] value names the fields of *this* datasource to look in.
//! An adapter with an aggregation of its own (Elasticsearch `terms`, SQL
//! `GROUP BY`) implements [`crate::Expand`]; the others are
//! served by the server, which searches a bounded sample of the matching
//! records and counts them with [`count_expansion`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A value as a graph node: a field and one of its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldValue {
    pub field: String,
    pub value: String,
}

impl Selected {
    /// `value`, looked for as it is in `fields`.
    pub fn new(value: FieldValue, fields: Vec<String>) -> Selected {
        Selected {
            forms: vec![value.value.clone()],
            value,
            fields,
            lowercase: false,
            via: None,
        }
    }
}

impl Selected {
    /// Whether `value`, found in `field`, is this selected value (one of
    /// its forms; in other letters' case too when compared lowercased).
    pub fn is(&self, field: &str, value: &str) -> bool {
        self.fields.iter().any(|f| f == field)
            && self.forms.iter().any(|form| {
                form == value || (self.lowercase && form.to_lowercase() == value.to_lowercase())
            })
    }
}

impl FieldValue {
    pub fn new(field: impl Into<String>, value: impl Into<String>) -> FieldValue {
        FieldValue {
            field: field.into(),
            value: value.into(),
        }
    }
}

/// A selected value and where this datasource holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// As the client named it (connections start here).
    pub value: FieldValue,
    /// This datasource's fields that hold such values: the field itself
    /// where the datasource has it, and the fields linked to it.
    pub fields: Vec<String>,
    /// Values are compared lowercased (a link with `lowercase = true`).
    pub lowercase: bool,
    /// The exact values to look for: the selected value itself, or, when a
    /// link rewrites values (`replace`), those of this datasource's values
    /// that rewrite to the same as it (found by the server beforehand).
    pub forms: Vec<String>,
    /// The link it is found through, when this datasource does not have
    /// the value's own field (its connections then say so).
    pub via: Option<String>,
}

/// How new values are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpandMode {
    /// By how many of the records holding a selected value hold them.
    #[default]
    Count,
    /// By how much more often they occur with the selection than in the
    /// datasource as a whole (JLH, as Elasticsearch's `significant_terms`).
    Significant,
}

/// One expansion, as an adapter receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandQuery {
    /// At least one; each with at least one field of this datasource.
    pub selected: Vec<Selected>,
    /// The fields whose values become new vertices (only this datasource's).
    pub fields: Vec<String>,
    /// Most new vertices per field.
    pub size: usize,
    /// Values already in the graph: never returned as new vertices.
    pub exclude: BTreeSet<FieldValue>,
    pub mode: ExpandMode,
}

/// A new value found next to the selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    pub field: String,
    pub value: String,
    /// Records (of those looked at) holding it and a selected value.
    pub doc_count: u64,
    /// Its rank: `doc_count` in `count` mode, the JLH score in `significant`.
    pub weight: f64,
}

/// Records holding both a selected value and a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub from: FieldValue,
    pub to: FieldValue,
    pub doc_count: u64,
    /// The link that carried the selected value into this datasource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// What one datasource found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Expansion {
    #[serde(default)]
    pub vertices: Vec<Vertex>,
    #[serde(default)]
    pub connections: Vec<Connection>,
    /// How many records holding a selected value were looked at, when not
    /// all of them were (a sample), so the counts are a lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<u64>,
    /// How it was counted, for the user: `"terms"`, `"sample of 1000 records"`…
    #[serde(default)]
    pub method: String,
    /// Per field asked: how many new values it holds next to the selection
    /// before the cut to `size` (of the records looked at), so a client can
    /// say "10 of 34" and ask for more. Absent where the datasource cannot
    /// tell.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub available: BTreeMap<String, u64>,
}

/// Characters a value holds in this order (with anything between them):
/// what every value a link rewrites to the selected one is sure to hold, so
/// an adapter can list the candidates ([`crate::ListValues`])
/// and the server keeps those that really rewrite alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subsequence {
    pub chars: Vec<char>,
    /// Each character in either letter case (ASCII letters only).
    pub ignore_case: bool,
}

impl Subsequence {
    /// Whether `value` holds the characters in order.
    pub fn matches(&self, value: &str) -> bool {
        let mut wanted = self.chars.iter().peekable();
        for c in value.chars() {
            match wanted.peek() {
                None => return true,
                Some(&&w) if w == c || (self.ignore_case && w.eq_ignore_ascii_case(&c)) => {
                    wanted.next();
                }
                Some(_) => {}
            }
        }
        wanted.peek().is_none()
    }

    /// As a Lucene regular expression over the whole value (Elasticsearch's
    /// `regexp` query and the `include` of a `terms` aggregation):
    /// `.*a.*b.*`, letters as `[aA]` when case is ignored.
    pub fn lucene_regexp(&self) -> String {
        let mut out = String::from(".*");
        for &c in &self.chars {
            if self.ignore_case && c.is_ascii_alphabetic() {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            } else {
                if !c.is_alphanumeric() {
                    // Every other character is escaped: `.?+*|{}[]()"\#@&<>~/` are operators.
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str(".*");
        }
        out
    }

    /// As an SQL `LIKE` pattern with `\\` as its escape: `%a%b%`.
    pub fn like_pattern(&self) -> String {
        let mut out = String::from("%");
        for &c in &self.chars {
            if matches!(c, '%' | '_' | '\\') {
                out.push('\\');
            }
            out.push(c);
            out.push('%');
        }
        out
    }
}

/// A Lucene query matching records that hold any selected value in one of
/// its fields (what an adapter searching its backend for the selection asks): `field:"value" OR …`, every value a quoted phrase.
pub fn selection_query(query: &ExpandQuery) -> String {
    let mut clauses = Vec::new();
    for selected in &query.selected {
        for field in &selected.fields {
            for form in &selected.forms {
                clauses.push(format!(
                    "{}:\"{}\"",
                    escape_field(field),
                    form.replace('\\', "\\\\").replace('"', "\\\"")
                ));
            }
        }
    }
    clauses.join(" OR ")
}

/// A field path as a Lucene term: its special characters escaped.
pub fn escape_field(field: &str) -> String {
    let mut escaped = String::with_capacity(field.len());
    for c in field.chars() {
        if "+-&|!(){}[]^\"~*?:\\/ ".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The field's values in a flattened record (dotted paths), as strings:
/// strings, numbers and booleans; each element of a list.
pub fn values_of(record: &Map<String, Value>, field: &str) -> Vec<String> {
    fn scalar(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match record.get(field) {
        Some(Value::Array(list)) => list.iter().filter_map(scalar).collect(),
        Some(value) => scalar(value).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Counts an expansion over `records` (flattened, dotted paths): the records
/// holding a selected value in one of its fields, their values of
/// `query.fields`, and which selected value each came with. `background`:
/// per field, how many of the datasource's `background_total` records hold
/// each value, for `significant` mode (without it, `significant` ranks as
/// `count`).
pub fn count_expansion(
    query: &ExpandQuery,
    records: &[Map<String, Value>],
    background: Option<(&HashMap<FieldValue, u64>, u64)>,
) -> Expansion {
    let selection = SelectionIndex::new(&query.selected);
    let selected_as =
        |field: &str, value: &str, into: &mut Vec<usize>| selection.selected_as(field, value, into);
    // Per new value: records holding it; per (selected, new): records holding both.
    let mut found: HashMap<(usize, String), u64> = HashMap::new();
    let mut pairs: HashMap<(usize, usize, String), u64> = HashMap::new();
    let mut matching = 0u64;
    let mut held: Vec<usize> = Vec::new();
    let mut hits: Vec<usize> = Vec::new();
    for record in records {
        selection.held_by(record, &mut held);
        if held.is_empty() {
            continue;
        }
        matching += 1;
        let mut seen: HashSet<(usize, String)> = HashSet::new();
        for (f, field) in query.fields.iter().enumerate() {
            for value in values_of(record, field) {
                // The selection itself, under any of its fields, is not new.
                hits.clear();
                selected_as(field, &value, &mut hits);
                if !hits.is_empty() || seen.contains(&(f, value.clone())) {
                    continue;
                }
                if !query.exclude.is_empty()
                    && query
                        .exclude
                        .contains(&FieldValue::new(field.clone(), value.clone()))
                {
                    continue;
                }
                seen.insert((f, value.clone()));
                for &from in &held {
                    *pairs.entry((from, f, value.clone())).or_default() += 1;
                }
                *found.entry((f, value)).or_default() += 1;
            }
        }
    }
    let found: BTreeMap<FieldValue, u64> = found
        .into_iter()
        .map(|((f, value), n)| (FieldValue::new(query.fields[f].clone(), value), n))
        .collect();
    let pairs: BTreeMap<(FieldValue, FieldValue), u64> = pairs
        .into_iter()
        .map(|((from, f, value), n)| {
            let to = FieldValue::new(query.fields[f].clone(), value);
            ((query.selected[from].value.clone(), to), n)
        })
        .collect();
    let weight = |value: &FieldValue, count: u64| match (query.mode, background) {
        (ExpandMode::Significant, Some((counts, total))) if matching > 0 && total > 0 => jlh(
            count,
            matching,
            counts.get(value).copied().unwrap_or(count),
            total,
        ),
        _ => count as f64,
    };
    rank_expansion(query, &found, pairs, weight)
}

/// Which selected values a record's (field, value) is: looked up, not
/// compared one by one (tens of thousands of records × selected values ×
/// fields).
struct SelectionIndex<'a> {
    exact: HashMap<(&'a str, &'a str), Vec<usize>>,
    folded: HashMap<(&'a str, String), Vec<usize>>,
    fields: Vec<&'a str>,
}

impl<'a> SelectionIndex<'a> {
    fn new(selected: &'a [Selected]) -> SelectionIndex<'a> {
        let mut index = SelectionIndex {
            exact: HashMap::new(),
            folded: HashMap::new(),
            fields: Vec::new(),
        };
        for (i, selected) in selected.iter().enumerate() {
            for field in &selected.fields {
                if !index.fields.contains(&field.as_str()) {
                    index.fields.push(field);
                }
                for form in &selected.forms {
                    if selected.lowercase {
                        let key = (field.as_str(), form.to_lowercase());
                        index.folded.entry(key).or_default().push(i);
                    } else {
                        let key = (field.as_str(), form.as_str());
                        index.exact.entry(key).or_default().push(i);
                    }
                }
            }
        }
        index
    }

    /// Adds to `into` the selected values that `value` of `field` is.
    fn selected_as(&self, field: &str, value: &str, into: &mut Vec<usize>) {
        if let Some(found) = self.exact.get(&(field, value)) {
            into.extend(found);
        }
        if !self.folded.is_empty() {
            if let Some(found) = self.folded.get(&(field, value.to_lowercase())) {
                into.extend(found);
            }
        }
    }

    /// The selected values `record` holds, each once, in order.
    fn held_by(&self, record: &Map<String, Value>, held: &mut Vec<usize>) {
        held.clear();
        for field in &self.fields {
            for value in values_of(record, field) {
                self.selected_as(field, &value, held);
            }
        }
        held.sort_unstable();
        held.dedup();
    }
}

/// Most selected values of one record whose pairs `count_between` counts.
pub const BETWEEN_PER_RECORD: usize = 100;

/// The links between the selected values themselves (Kibana Graph's "link
/// the selected vertices"): per pair of selected values, how many of
/// `records` hold both. No new vertices.
pub fn count_between(selected: &[Selected], records: &[Map<String, Value>]) -> Expansion {
    let selection = SelectionIndex::new(selected);
    let mut pairs: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut held: Vec<usize> = Vec::new();
    for record in records {
        selection.held_by(record, &mut held);
        // Bounded before it starts: a record holding many selected values
        // counts the pairs among its first BETWEEN_PER_RECORD of them, so
        // 1,000 records cost at most ~5 million steps.
        held.truncate(BETWEEN_PER_RECORD);
        for (at, &a) in held.iter().enumerate() {
            for &b in &held[at + 1..] {
                *pairs.entry((a, b)).or_default() += 1;
            }
        }
    }
    let connections = pairs
        .into_iter()
        .map(|((a, b), doc_count)| Connection {
            from: selected[a].value.clone(),
            to: selected[b].value.clone(),
            doc_count,
            via: selected[a].via.clone().or_else(|| selected[b].via.clone()),
        })
        .collect();
    Expansion {
        connections,
        ..Expansion::default()
    }
}

/// The expansion from counts: `found`, per new value, the records holding
/// it and a selected value; `pairs`, per (selected, new) value, the records
/// holding both; `weight`, a value's rank from its count. Keeps the
/// heaviest `query.size` values of each field (ties by value, so answers
/// are the same every time) and the connections to them.
pub fn rank_expansion(
    query: &ExpandQuery,
    found: &BTreeMap<FieldValue, u64>,
    pairs: BTreeMap<(FieldValue, FieldValue), u64>,
    weight: impl Fn(&FieldValue, u64) -> f64,
) -> Expansion {
    let mut by_field: BTreeMap<&str, Vec<Vertex>> = BTreeMap::new();
    for (value, count) in found {
        by_field.entry(&value.field).or_default().push(Vertex {
            field: value.field.clone(),
            value: value.value.clone(),
            doc_count: *count,
            weight: weight(value, *count),
        });
    }
    let mut vertices = Vec::new();
    let mut available = BTreeMap::new();
    for (field, mut list) in by_field {
        available.insert(field.to_owned(), list.len() as u64);
        list.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| a.value.cmp(&b.value))
        });
        list.truncate(query.size);
        vertices.extend(list);
    }
    for field in &query.fields {
        available.entry(field.clone()).or_insert(0);
    }
    let kept: BTreeSet<FieldValue> = vertices
        .iter()
        .map(|v| FieldValue::new(v.field.clone(), v.value.clone()))
        .collect();
    let via = |from: &FieldValue| {
        query
            .selected
            .iter()
            .find(|s| &s.value == from)
            .and_then(|s| s.via.clone())
    };
    let connections = pairs
        .into_iter()
        .filter(|((_, to), _)| kept.contains(to))
        .map(|((from, to), doc_count)| Connection {
            via: via(&from),
            from,
            to,
            doc_count,
        })
        .collect();
    Expansion {
        vertices,
        connections,
        sampled: None,
        method: String::new(),
        available,
    }
}

/// Elasticsearch's JLH score: how much more often a value occurs in the
/// foreground (the records holding the selection) than in the background
/// (the whole datasource), weighted by the absolute change.
pub fn jlh(
    foreground_count: u64,
    foreground_total: u64,
    background_count: u64,
    background_total: u64,
) -> f64 {
    if foreground_total == 0 || background_total == 0 || background_count == 0 {
        return 0.0;
    }
    let foreground = foreground_count as f64 / foreground_total as f64;
    let background = background_count as f64 / background_total as f64;
    let change = foreground - background;
    if change <= 0.0 {
        return 0.0;
    }
    change * (foreground / background)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn query(selected: &[(&str, &str)], fields: &[&str]) -> ExpandQuery {
        ExpandQuery {
            selected: selected
                .iter()
                .map(|(field, value)| {
                    Selected::new(FieldValue::new(*field, *value), vec![field.to_string()])
                })
                .collect(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            size: 10,
            exclude: BTreeSet::new(),
            mode: ExpandMode::Count,
        }
    }

    #[test]
    fn counts_values_next_to_the_selection() {
        let records = [
            record(json!({"user": "ann", "tags": ["a", "b"]})),
            record(json!({"user": "ann", "tags": ["a"]})),
            record(json!({"user": "bob", "tags": ["c"]})),
        ];
        let found = count_expansion(&query(&[("user", "ann")], &["tags"]), &records, None);
        let counts: Vec<(&str, u64)> = found
            .vertices
            .iter()
            .map(|v| (v.value.as_str(), v.doc_count))
            .collect();
        assert_eq!(counts, [("a", 2), ("b", 1)]);
        assert_eq!(found.connections.len(), 2);
        assert_eq!(found.connections[0].from, FieldValue::new("user", "ann"));
        assert_eq!(found.connections[0].to, FieldValue::new("tags", "a"));
        assert_eq!(found.connections[0].doc_count, 2);
    }

    #[test]
    fn excluded_values_size_and_lowercase_links() {
        let records = [
            record(json!({"from": "Ann@x", "to": ["b@x", "c@x"]})),
            record(json!({"to": ["ann@x", "c@x"], "from": "d@x"})),
        ];
        let mut q = query(&[("user", "ann@x")], &["to", "from"]);
        q.selected[0].fields = vec!["from".into(), "to".into()];
        q.selected[0].lowercase = true;
        q.exclude.insert(FieldValue::new("to", "b@x"));
        q.size = 1;
        let found = count_expansion(&q, &records, None);
        let values: Vec<(&str, &str, u64)> = found
            .vertices
            .iter()
            .map(|v| (v.field.as_str(), v.value.as_str(), v.doc_count))
            .collect();
        // `Ann@x` and `ann@x` are the selected value, not new; b@x is
        // excluded; one value per field.
        assert_eq!(values, [("from", "d@x", 1), ("to", "c@x", 2)]);
    }

    #[test]
    fn the_selection_query_quotes_values_and_escapes_fields() {
        let query = ExpandQuery {
            selected: vec![Selected::new(
                FieldValue::new("a b", "say \"hi\""),
                vec!["a b".into(), "user.name".into()],
            )],
            fields: vec![],
            size: 1,
            exclude: BTreeSet::new(),
            mode: Default::default(),
        };
        assert_eq!(
            selection_query(&query),
            r#"a\ b:"say \"hi\"" OR user.name:"say \"hi\"""#
        );
    }

    #[test]
    fn a_subsequence_matches_its_characters_in_order() {
        let hint = Subsequence {
            chars: "a.b".chars().collect(),
            ignore_case: true,
        };
        assert!(hint.matches("xA-.-b@y"));
        assert!(!hint.matches("b.a"));
        assert!(!hint.matches("ab"));
        assert_eq!(hint.lucene_regexp(), ".*[aA].*\\..*[bB].*");
        let exact = Subsequence {
            chars: "a%_".chars().collect(),
            ignore_case: false,
        };
        assert!(!exact.matches("A%_"));
        assert_eq!(exact.like_pattern(), "%a%\\%%\\_%");
        assert!(Subsequence::default().matches(""));
    }

    #[test]
    fn jlh_prefers_values_rare_in_the_background() {
        // 5 of 10 foreground records, 5 of 1000 background: strongly significant.
        let rare = jlh(5, 10, 5, 1000);
        // 5 of 10 foreground, 500 of 1000 background: no change at all.
        let common = jlh(5, 10, 500, 1000);
        assert!(rare > 40.0, "{rare}");
        assert_eq!(common, 0.0);
    }
}
