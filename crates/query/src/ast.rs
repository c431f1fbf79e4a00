//! The parsed query: what the user wrote, before any field or analyzer is
//! consulted. Evaluating it against a mapping is the datasource's job; the
//! rules that need the mapping (a term that analyses to nothing is dropped
//! from its group, a group of only negations matches all but them) are kept
//! as data here so every evaluator applies them the same way — see
//! [`Group::clauses`].

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A parenthesised group, or the top level: clauses as written, each
    /// with its conjunction and modifier.
    Group(Group),
    /// `…^2`: changes the score, never which records match.
    Boost(Box<Node>, f32),
    Leaf(Leaf),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    pub entries: Vec<Entry>,
}

/// One clause of a group, as written: `AND +field:value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub conjunction: Conjunction,
    pub modifier: Modifier,
    pub node: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conjunction {
    None,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    None,
    /// `+`
    Required,
    /// `-`, `NOT`, `!`
    Prohibited,
}

/// How a clause takes part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occur {
    Should,
    Must,
    MustNot,
}

impl Group {
    /// The group's clauses with their final occurrence, computed exactly as
    /// Lucene's classic parser does with the default operator OR:
    ///
    /// - `AND` makes the clause before it required (unless it is prohibited)
    ///   and the clause after it required;
    /// - `+` requires, `-`/`NOT` prohibits, anything else is optional;
    /// - a clause whose query is `None` (`compile` returned nothing, e.g. a
    ///   term the analyzer removed entirely) is dropped *after* its `AND`
    ///   has taken effect on the clause before it.
    ///
    /// Returns `None` when no clause is left. Callers apply Elasticsearch's
    /// rule for groups that only prohibit (see [`only_prohibits`]).
    pub fn clauses<Q, E>(
        &self,
        mut compile: impl FnMut(&Node) -> Result<Option<Q>, E>,
    ) -> Result<Option<Vec<(Occur, Q)>>, E> {
        let mut clauses: Vec<(Occur, Q)> = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            if entry.conjunction == Conjunction::And {
                if let Some(last) = clauses.last_mut() {
                    if last.0 != Occur::MustNot {
                        last.0 = Occur::Must;
                    }
                }
            }
            let Some(query) = compile(&entry.node)? else {
                continue;
            };
            let prohibited = entry.modifier == Modifier::Prohibited;
            let required = entry.modifier == Modifier::Required
                || (entry.conjunction == Conjunction::And && !prohibited);
            let occur = if prohibited {
                Occur::MustNot
            } else if required {
                Occur::Must
            } else {
                Occur::Should
            };
            clauses.push((occur, query));
        }
        Ok(if clauses.is_empty() {
            None
        } else {
            Some(clauses)
        })
    }
}

/// Elasticsearch's addition to Lucene: a group whose clauses all prohibit
/// (`NOT a`, `-a -b`, the `(NOT b)` of `a AND (NOT b)`) matches every record
/// but those, where Lucene would match nothing.
pub fn only_prohibits<Q>(clauses: &[(Occur, Q)]) -> bool {
    !clauses.is_empty() && clauses.iter().all(|(occur, _)| *occur == Occur::MustNot)
}

/// A query on one field (or, with no field, on every field).
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// `None` for the default field, i.e. every field (`*`). A name may be a
    /// pattern with `*` (`user.\*:ann`).
    pub field: Option<String>,
    pub kind: LeafKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LeafKind {
    /// An unquoted term, escapes removed; analysed by each field's analyzer.
    /// Consecutive bare terms are kept together (`new york`), as
    /// Elasticsearch sends them to analysis together.
    Term(String),
    /// `"…"` with its slop (`"…"~2`). A negative slop (`"…"~-1`) is kept:
    /// a phrase of several words with it matches nothing (Elasticsearch's
    /// `lenient` answer to the error it is).
    Phrase { text: String, slop: i32 },
    /// `abc*`: the text before the star, escapes removed.
    Prefix(String),
    /// A pattern with `*` or `?`, escapes kept (`\*` is a literal star).
    Wildcard(String),
    /// `/…/`: a Lucene regular expression, between the slashes.
    Regex(String),
    /// `term~`, `term~1`: the largest edit distance, resolved (0, 1 or 2).
    Fuzzy { text: String, edits: u8 },
    /// `[a TO b]`, `{a TO b}`, mixed, `*` for an open end; `>a`, `<=b`.
    Range {
        lower: Option<String>,
        upper: Option<String>,
        include_lower: bool,
        include_upper: bool,
    },
    /// `_exists_:field`, and `field:*`: the field has a value.
    Exists,
    /// `*` on every field, `*:*`.
    All,
}
