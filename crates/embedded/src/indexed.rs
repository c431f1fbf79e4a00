//! A record as the index holds it: each mapped field's values analysed as
//! its type says, the paths it has values for, its id. Made once per record
//! (`index/doc.rs`); the index is built from it and, until then, live
//! queries and searches match it in memory ([`crate::percolate`]) — so a
//! record matches alike before and after it is indexed.

/// One field's indexed values.
#[derive(Clone)]
pub(crate) enum Indexed {
    /// A text field's tokens with their positions (values `POSITION_GAP` apart).
    Tokens(Vec<(u32, String)>),
    /// A keyword field's values, normalised.
    Keywords(Vec<String>),
    /// Whole numbers, and dates in milliseconds.
    I64(Vec<i64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
}

impl Indexed {
    /// The terms of a text or keyword field.
    pub(crate) fn strings(&self) -> impl Iterator<Item = &str> {
        let (tokens, keywords) = match self {
            Indexed::Tokens(tokens) => (tokens.as_slice(), &[][..]),
            Indexed::Keywords(values) => (&[][..], values.as_slice()),
            _ => (&[][..], &[][..]),
        };
        tokens
            .iter()
            .map(|(_, t)| t.as_str())
            .chain(keywords.iter().map(String::as_str))
    }
}

#[derive(Clone)]
pub(crate) struct IndexedDoc {
    pub(crate) row: usize,
    /// The record's own id, if it has one.
    pub(crate) id: Option<String>,
    /// The row of the record this one replaced (same id), if any.
    pub(crate) replaces: Option<usize>,
    pub(crate) values: Vec<(tantivy::schema::Field, Indexed)>,
    /// The mapped paths it has a value for (`_exists_`).
    pub(crate) exists: Vec<String>,
    /// Keyword fields' values as written, once each: expansions' columns.
    pub(crate) columns: Vec<(tantivy::schema::Field, Vec<String>)>,
}

impl IndexedDoc {
    pub(crate) fn values(&self, field: tantivy::schema::Field) -> Option<&Indexed> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, values)| values)
    }
}
