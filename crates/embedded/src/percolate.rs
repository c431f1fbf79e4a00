//! Matching a [`Plan`] against records in memory, as Elasticsearch's
//! percolator matches a document against stored queries: for records
//! published but not yet folded into the index, so live queries get them
//! without waiting for an index commit, and searches see them at once.
//!
//! Each plan variant is decided exactly as its tantivy query decides it on
//! the indexed record ([`crate::compile`]), from the same indexed values
//! ([`crate::indexed::IndexedDoc`]). One difference, as in Elasticsearch's
//! percolator: a fuzzy term is looked for among the record's own terms,
//! not among the index's 50 closest.

use std::ops::Bound;

use levenshtein_automata::Distance;
use tributary_query::ast::Occur;

use crate::budget::{Budget, Exhausted};
use crate::compile::{distinct_words, sloppy_match};
use crate::indexed::{Indexed, IndexedDoc};
use crate::plan::{Plan, TermValue};
use crate::regex_dfa::{matches_whole, Automata};

/// One query's plan, matched record by record; its automata are built
/// once, on first use, within the budget.
pub(crate) struct Percolator<'a> {
    plan: &'a Plan,
    budget: &'a Budget,
    automata: Automata,
}

impl<'a> Percolator<'a> {
    pub fn new(plan: &'a Plan, budget: &'a Budget) -> Self {
        Percolator {
            plan,
            budget,
            automata: Automata::default(),
        }
    }

    pub fn matches(&mut self, doc: &IndexedDoc) -> Result<bool, Exhausted> {
        let plan = self.plan;
        self.test(plan, doc)
    }

    fn test(&mut self, plan: &Plan, doc: &IndexedDoc) -> Result<bool, Exhausted> {
        Ok(match plan {
            Plan::All => true,
            Plan::Empty => false,
            Plan::Exists(paths) => doc.exists.iter().any(|path| paths.contains(path)),
            Plan::Term(field, value) => doc.values(*field).is_some_and(|v| holds(v, value)),
            Plan::TermSet(field, values) => doc
                .values(*field)
                .is_some_and(|v| values.iter().any(|value| holds(v, value))),
            Plan::Words(field, words) => doc
                .values(*field)
                .is_some_and(|v| v.strings().any(|t| words.iter().any(|w| w == t))),
            Plan::Phrase { field, terms, slop } => match doc.values(*field) {
                Some(Indexed::Tokens(tokens)) => phrase(tokens, terms, *slop),
                _ => false,
            },
            Plan::TextRange { field, low, high } => doc.values(*field).is_some_and(|v| {
                v.strings()
                    .any(|t| within(t.as_bytes(), as_bytes(low), as_bytes(high)))
            }),
            Plan::I64Range { field, low, high } => match doc.values(*field) {
                Some(Indexed::I64(values)) => values.iter().any(|n| (low..=high).contains(&n)),
                _ => false,
            },
            Plan::F64Range { field, low, high } => match doc.values(*field) {
                // Compared as tantivy orders doubles (so -0.0 < 0.0).
                Some(Indexed::F64(values)) => values.iter().any(|f| {
                    within(
                        tantivy::f64_to_u64(*f),
                        low.map(tantivy::f64_to_u64),
                        high.map(tantivy::f64_to_u64),
                    )
                }),
                _ => false,
            },
            Plan::Pattern { field, regex } => {
                let Some(values) = doc.values(*field) else {
                    return Ok(false);
                };
                match self.automata.regex(regex, self.budget)? {
                    Some(dfa) => values.strings().any(|t| matches_whole(dfa.as_ref(), t)),
                    None => false,
                }
            }
            Plan::Fuzzy { field, term, edits } => {
                let Some(values) = doc.values(*field) else {
                    return Ok(false);
                };
                let dfa = self.automata.fuzzy(term, *edits);
                values
                    .strings()
                    .any(|t| matches!(dfa.eval(t.as_bytes()), Distance::Exact(_)))
            }
            Plan::Group(clauses) => {
                // tantivy's BooleanQuery: no prohibited clause, every required
                // one, and, when none is required, at least one optional one.
                let mut required = false;
                let mut any_optional = false;
                for (occur, clause) in clauses {
                    match occur {
                        Occur::MustNot => {
                            if self.test(clause, doc)? {
                                return Ok(false);
                            }
                        }
                        Occur::Must => {
                            required = true;
                            if !self.test(clause, doc)? {
                                return Ok(false);
                            }
                        }
                        Occur::Should => {
                            if !any_optional && self.test(clause, doc)? {
                                any_optional = true;
                            }
                        }
                    }
                }
                let optional = clauses.iter().any(|(occur, _)| *occur == Occur::Should);
                required || !optional || any_optional
            }
            Plan::DisMax(alternatives) => {
                for alternative in alternatives {
                    if self.test(alternative, doc)? {
                        return Ok(true);
                    }
                }
                false
            }
            Plan::Boost(inner, _) => self.test(inner, doc)?,
        })
    }
}

/// Does a field hold this exact indexed value?
fn holds(values: &Indexed, value: &TermValue) -> bool {
    match (values, value) {
        (Indexed::Tokens(_) | Indexed::Keywords(_), TermValue::Str(text)) => {
            values.strings().any(|t| t == text)
        }
        (Indexed::I64(values), TermValue::I64(n)) => values.contains(n),
        (Indexed::F64(values), TermValue::F64(f)) => values
            .iter()
            .any(|v| tantivy::f64_to_u64(*v) == tantivy::f64_to_u64(*f)),
        (Indexed::Bool(values), TermValue::Bool(b)) => values.contains(b),
        _ => false,
    }
}

/// Lucene's phrase rule over one text field's tokens (see [`sloppy_match`]).
fn phrase(tokens: &[(u32, String)], terms: &[String], slop: u32) -> bool {
    let (distinct, which) = distinct_words(terms);
    let positions: Vec<Vec<u32>> = distinct
        .iter()
        .map(|term| {
            tokens
                .iter()
                .filter(|(_, t)| t == *term)
                .map(|(p, _)| *p)
                .collect()
        })
        .collect();
    if positions.iter().any(Vec::is_empty) {
        return false;
    }
    sloppy_match(&positions, &which, slop)
}

fn as_bytes(bound: &Bound<String>) -> Bound<&[u8]> {
    bound.as_ref().map(|s| s.as_bytes())
}

fn within<T: PartialOrd>(value: T, low: Bound<T>, high: Bound<T>) -> bool {
    let above = match low {
        Bound::Included(l) => value >= l,
        Bound::Excluded(l) => value > l,
        Bound::Unbounded => true,
    };
    let below = match high {
        Bound::Included(h) => value <= h,
        Bound::Excluded(h) => value < h,
        Bound::Unbounded => true,
    };
    above && below
}
