//! A parsed query ([`tributary_query::Node`]) resolved against the mapping:
//! each leaf on every field its name resolves to, its value analysed as that
//! field's type says (Elasticsearch's `query_string`, lenient, default field
//! `*`):
//!
//! - a field that does not exist, or a value of the wrong type for it
//!   (`retweet_count:abc`), matches nothing;
//! - a term the analyzer reduces to nothing is dropped from its group;
//! - a group of only prohibited clauses matches all records but those.
//!
//! One plan, two evaluators: [`crate::compile`] turns it into a tantivy
//! query over the index (expanding patterns against the term dictionaries),
//! [`crate::percolate`] matches it against records not yet indexed. Both
//! read the same plan, so a record matches a query the same way before and
//! after it is indexed.

use std::collections::HashMap;
use std::ops::Bound;

use tantivy::schema::Field;
use tributary_query::ast::{only_prohibits, Leaf, LeafKind, Node, Occur};
use tributary_query::pattern::{escape_literal, lucene_regex, wildcard_to_regex, Regex};
use tributary_query::value::{decimal_value, normalize, whole_bound, whole_range, whole_term};
use tributary_query::{analysis, date, FieldType, MappedField, Mapping};

/// The tantivy fields a search needs, by mapped path.
pub(super) struct IndexFields {
    pub by_path: HashMap<String, Field>,
    pub exists: Field,
}

/// One indexed value a term query looks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TermValue {
    /// A token of a text field, a keyword's (normalised) value.
    Str(String),
    /// A whole number (long fields).
    I64(i64),
    /// A double field's value.
    F64(f64),
    Bool(bool),
}

/// A query resolved against the mapping. Each variant is one tantivy query
/// kind, so scores stay what they were.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Every record.
    All,
    /// No record.
    Empty,
    /// Records with a value in any of these mapped paths.
    Exists(Vec<String>),
    Term(Field, TermValue),
    /// Any of the values, each scored alike.
    TermSet(Field, Vec<TermValue>),
    /// Unquoted words of a text field: any of them (the default operator OR).
    Words(Field, Vec<String>),
    /// Tokens in order, with Lucene's slop (0: adjacent, in order).
    Phrase {
        field: Field,
        terms: Vec<String>,
        slop: u32,
    },
    /// Terms of a text or keyword field between two bounds (byte order).
    TextRange {
        field: Field,
        low: Bound<String>,
        high: Bound<String>,
    },
    /// Whole numbers or dates (milliseconds), bounds included.
    I64Range {
        field: Field,
        low: i64,
        high: i64,
    },
    F64Range {
        field: Field,
        low: Bound<f64>,
        high: Bound<f64>,
    },
    /// Terms a regular expression matches in full.
    Pattern {
        field: Field,
        regex: Regex,
    },
    /// Terms within `edits` (1 or 2) of `term`.
    Fuzzy {
        field: Field,
        term: String,
        edits: u8,
    },
    /// Clauses with their occurrence (a group of only prohibitions already
    /// holds [`Plan::All`] as a required clause).
    Group(Vec<(Occur, Plan)>),
    /// One leaf on several fields: any of them, the best one's score.
    DisMax(Vec<Plan>),
    Boost(Box<Plan>, f32),
}

/// Resolves parsed queries against one mapping, at one moment (`now` in
/// date math).
pub(crate) struct Planner<'a> {
    mapping: &'a Mapping,
    fields: &'a IndexFields,
    now_ms: i64,
}

impl<'a> Planner<'a> {
    pub fn new(mapping: &'a Mapping, fields: &'a IndexFields) -> Self {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        Planner {
            mapping,
            fields,
            now_ms,
        }
    }

    /// The field holding every path a record has a value for.
    pub fn exists_field(&self) -> Field {
        self.fields.exists
    }

    /// The plan, or `None` when nothing is left to search for.
    pub fn plan(&self, node: &Node) -> Option<Plan> {
        match node {
            Node::Group(group) => {
                let Ok(Some(mut clauses)) =
                    group.clauses(|child| Ok::<_, std::convert::Infallible>(self.plan(child)))
                else {
                    return None;
                };
                if only_prohibits(&clauses) {
                    clauses.push((Occur::Must, Plan::All));
                }
                Some(Plan::Group(clauses))
            }
            Node::Boost(inner, boost) => self
                .plan(inner)
                .map(|plan| Plan::Boost(Box::new(plan), *boost)),
            Node::Leaf(leaf) => self.leaf(leaf),
        }
    }

    fn leaf(&self, leaf: &Leaf) -> Option<Plan> {
        match &leaf.kind {
            LeafKind::All => return Some(Plan::All),
            LeafKind::Exists => {
                let name = leaf.field.as_deref().unwrap_or("*");
                let paths = self
                    .mapping
                    .exists_fields(name)
                    .into_iter()
                    .map(|f| f.path.clone())
                    .collect();
                return Some(Plan::Exists(paths));
            }
            _ => {}
        }
        let fields = self.mapping.resolve(leaf.field.as_deref());
        if fields.is_empty() {
            return Some(Plan::Empty);
        }
        let mut per_field = Vec::with_capacity(fields.len());
        for mapped in fields {
            let Some(&field) = self.fields.by_path.get(&mapped.path) else {
                continue;
            };
            if let Some(plan) = self.on_field(mapped, field, &leaf.kind) {
                per_field.push(plan);
            }
        }
        match per_field.len() {
            0 => None,
            1 => per_field.pop(),
            _ => Some(Plan::DisMax(per_field)),
        }
    }

    /// One leaf on one field. `None` when the field's analyzer leaves
    /// nothing to search for; [`Plan::Empty`] when the value cannot match
    /// this field (a word in a number field, a wildcard on a date).
    fn on_field(&self, mapped: &MappedField, field: Field, kind: &LeafKind) -> Option<Plan> {
        let is_string = matches!(
            mapped.field_type,
            FieldType::Text | FieldType::Keyword { .. }
        );
        match kind {
            LeafKind::Term(text) => self.term(mapped, field, text, None),
            LeafKind::Phrase { text, slop } => self.term(mapped, field, text, Some(*slop)),
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => Some(self.range(
                mapped,
                field,
                lower.as_deref(),
                upper.as_deref(),
                *include_lower,
                *include_upper,
            )),
            _ if !is_string => Some(Plan::Empty),
            LeafKind::Prefix(prefix) => Some(Plan::Pattern {
                field,
                regex: Regex::Plain(format!("{}.*", escape_literal(&normalize(mapped, prefix)))),
            }),
            LeafKind::Wildcard(pattern) => Some(Plan::Pattern {
                field,
                regex: Regex::Plain(wildcard_to_regex(&normalize(mapped, pattern))),
            }),
            LeafKind::Regex(pattern) => {
                // Elasticsearch normalizes a regular expression only on a
                // keyword with a normalizer: on a text field it runs as
                // written against the lowercased terms.
                let pattern = match mapped.field_type {
                    FieldType::Keyword { .. } => normalize(mapped, pattern),
                    _ => pattern.clone(),
                };
                Some(match lucene_regex(&pattern) {
                    Ok(regex) => Plan::Pattern { field, regex },
                    // Elasticsearch's `lenient`: a pattern it cannot use matches nothing.
                    Err(_) => Plan::Empty,
                })
            }
            LeafKind::Fuzzy { text, edits } => {
                let term = normalize(mapped, text);
                Some(if *edits == 0 {
                    Plan::Term(field, TermValue::Str(term))
                } else {
                    Plan::Fuzzy {
                        field,
                        term,
                        edits: *edits,
                    }
                })
            }
            LeafKind::Exists | LeafKind::All => Some(Plan::Empty),
        }
    }

    /// A term, or a phrase with its slop: analysed on text fields, whole on
    /// keywords, parsed on numbers, dates and booleans.
    fn term(
        &self,
        mapped: &MappedField,
        field: Field,
        text: &str,
        phrase_slop: Option<i32>,
    ) -> Option<Plan> {
        let term = |value| Some(Plan::Term(field, value));
        match &mapped.field_type {
            FieldType::Text => {
                let mut terms = analysis::tokens(text);
                match (terms.len(), phrase_slop) {
                    (0, _) => None,
                    (1, _) => terms.pop().map(|t| Plan::Term(field, TermValue::Str(t))),
                    (_, None) => Some(Plan::Words(field, terms)),
                    // Lucene's phrase query refuses a negative slop; lenient
                    // Elasticsearch matches nothing.
                    (_, Some(slop)) => Some(match u32::try_from(slop) {
                        Ok(slop) => Plan::Phrase { field, terms, slop },
                        Err(_) => Plan::Empty,
                    }),
                }
            }
            FieldType::Keyword { .. } => term(TermValue::Str(normalize(mapped, text))),
            FieldType::Long => match whole_term(text, whole_range(mapped)) {
                Some(n) => term(TermValue::I64(n)),
                None => Some(Plan::Empty),
            },
            FieldType::Double => match decimal_value(mapped, text) {
                Some(number) => term(TermValue::F64(number)),
                None => Some(Plan::Empty),
            },
            FieldType::Date => match date::range(Some(text), Some(text), true, true, self.now_ms) {
                Ok(Some((low, high))) => Some(Plan::I64Range { field, low, high }),
                _ => Some(Plan::Empty),
            },
            FieldType::Boolean => match text {
                "true" => term(TermValue::Bool(true)),
                "false" => term(TermValue::Bool(false)),
                _ => Some(Plan::Empty),
            },
            FieldType::Other => Some(Plan::Empty),
        }
    }

    fn range(
        &self,
        mapped: &MappedField,
        field: Field,
        lower: Option<&str>,
        upper: Option<&str>,
        include_lower: bool,
        include_upper: bool,
    ) -> Plan {
        match &mapped.field_type {
            FieldType::Text | FieldType::Keyword { .. } => {
                let bound = |value: Option<&str>, inclusive: bool| match value {
                    None => Bound::Unbounded,
                    Some(v) if inclusive => Bound::Included(normalize(mapped, v)),
                    Some(v) => Bound::Excluded(normalize(mapped, v)),
                };
                Plan::TextRange {
                    field,
                    low: bound(lower, include_lower),
                    high: bound(upper, include_upper),
                }
            }
            FieldType::Long => {
                let range = whole_range(mapped);
                let (Some(low), Some(high)) = (
                    whole_bound(lower, true, include_lower, range),
                    whole_bound(upper, false, include_upper, range),
                ) else {
                    return Plan::Empty;
                };
                if low > high {
                    return Plan::Empty;
                }
                Plan::I64Range { field, low, high }
            }
            FieldType::Double => {
                let bound = |value: Option<&str>, inclusive: bool| -> Option<Bound<f64>> {
                    Some(match value {
                        None => Bound::Unbounded,
                        Some(v) => {
                            let number = decimal_value(mapped, v)?;
                            if inclusive {
                                Bound::Included(number)
                            } else {
                                Bound::Excluded(number)
                            }
                        }
                    })
                };
                match (bound(lower, include_lower), bound(upper, include_upper)) {
                    (Some(low), Some(high)) => Plan::F64Range { field, low, high },
                    _ => Plan::Empty,
                }
            }
            FieldType::Date => {
                match date::range(lower, upper, include_lower, include_upper, self.now_ms) {
                    Ok(Some((low, high))) => Plan::I64Range { field, low, high },
                    _ => Plan::Empty,
                }
            }
            FieldType::Boolean => {
                // Elasticsearch compares booleans as the terms F < T.
                let value = |text: &str| match text {
                    "true" => Some(1u8),
                    "false" => Some(0),
                    _ => None,
                };
                let low = match lower {
                    None => Some(0),
                    Some(v) => value(v).map(|b| if include_lower { b } else { b + 1 }),
                };
                let high = match upper {
                    None => Some(1i16),
                    Some(v) => value(v).map(|b| i16::from(b) - i16::from(!include_upper)),
                };
                match (low, high) {
                    (Some(low), Some(high)) => Plan::TermSet(
                        field,
                        (i16::from(low)..=high)
                            .filter(|b| (0..=1).contains(b))
                            .map(|b| TermValue::Bool(b == 1))
                            .collect(),
                    ),
                    _ => Plan::Empty,
                }
            }
            FieldType::Other => Plan::Empty,
        }
    }
}
