//! Turns a parsed query into one parameterised SQL condition, matching what
//! the embedded datasource matches on the same records wherever PostgreSQL
//! can (`docs/protocol.md`, "PostgreSQL datasources", lists where it cannot).
//!
//! Every value the user typed is a bound parameter (`$n`, cast to its type);
//! field names only ever select among the catalog's columns, whose SQL the
//! catalog wrote. Conditions stay plain (so indexes on the same
//! expressions serve them); an unknown (NULL) one counts as false, which
//! `AND`/`OR` keep and exclusion says with `IS NOT TRUE`.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tributary_datasource::DatasourceError;
use tributary_query::ast::{only_prohibits, Leaf, LeafKind, Node, Occur};
use tributary_query::pattern::lucene_regex_to_rust;
use tributary_query::value::{decimal_value, normalize, whole_bound, whole_range, whole_term};
use tributary_query::{analysis, date, FieldType, MappedField};

use super::catalog::{Catalog, Column};
use tributary_datasource::QueryLimits;

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Long(i64),
    Double(f64),
    Bool(bool),
    TextList(Vec<String>),
}

impl Param {
    fn cast(&self) -> &'static str {
        match self {
            Param::Text(_) => "text",
            Param::Long(_) => "int8",
            Param::Double(_) => "float8",
            Param::Bool(_) => "bool",
            Param::TextList(_) => "text[]",
        }
    }

    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(v) => v,
            Param::Long(v) => v,
            Param::Double(v) => v,
            Param::Bool(v) => v,
            Param::TextList(v) => v,
        }
    }
}

/// A statement's text and its parameters, built together so placeholders
/// and values never disagree.
#[derive(Debug, Default, Clone)]
pub struct Bound {
    pub params: Vec<Param>,
}

impl Bound {
    /// Adds a parameter; returns its placeholder with its cast (`$3::text`).
    pub fn bind(&mut self, param: Param) -> String {
        let cast = param.cast();
        self.params.push(param);
        format!("${}::{cast}", self.params.len())
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(Param::as_sql).collect()
    }
}

/// The condition of a query (`TRUE` for the empty query and `*`), with its
/// parameters bound into `bound`.
pub fn condition(
    catalog: &Catalog,
    query: &str,
    bound: &mut Bound,
) -> Result<String, DatasourceError> {
    let text = query.trim();
    if tributary_query::matches_all(text) {
        return Ok("TRUE".into());
    }
    // The parser and this translation recurse on nesting: refuse what could
    // exhaust the stack, however this is called.
    QueryLimits::CEILING
        .check(text)
        .map_err(|limit| DatasourceError::bad_query(limit.to_string()))?;
    let parsed =
        tributary_query::parse(text).map_err(|e| DatasourceError::bad_query(e.to_string()))?;
    let mut translator = Translator {
        catalog,
        bound,
        now_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        aliases: 0,
        written: 0,
    };
    // Nothing left to search for (every term analysed to nothing): no match.
    let condition = translator.node(&parsed)?.unwrap_or_else(|| "FALSE".into());
    if translator.over_budget() {
        return Err(DatasourceError::bad_query(format!(
            "the query is too large for this datasource once spelled out for each of its fields (more than {} MiB of SQL); name fewer fields or use fewer sloppy phrases",
            MAX_SQL_BYTES >> 20
        )));
    }
    Ok(condition)
}

/// Translates `query` as [`condition`] does, off the event loop when it is
/// long enough to cost anything: a query of many clauses on many fields
/// takes milliseconds to spell out.
pub async fn translate(
    catalog: &Arc<Catalog>,
    query: &str,
    mut bound: Bound,
) -> Result<(String, Bound), DatasourceError> {
    if query.len() <= INLINE_QUERY_BYTES {
        let condition = condition(catalog, query, &mut bound)?;
        return Ok((condition, bound));
    }
    let (catalog, query) = (Arc::clone(catalog), query.to_owned());
    tokio::task::spawn_blocking(move || {
        let condition = condition(&catalog, &query, &mut bound)?;
        Ok((condition, bound))
    })
    .await
    .map_err(|_| DatasourceError::unavailable("the query could not be translated"))?
}

/// Queries this short are translated where they are asked (microseconds).
const INLINE_QUERY_BYTES: usize = 256;

/// The most SQL one query may translate to: a query of the largest shape
/// allowed (`max_query_clauses` sloppy phrases) on every field of a wide
/// table would otherwise spell out gigabytes.
const MAX_SQL_BYTES: usize = 4 << 20;

struct Translator<'a> {
    catalog: &'a Catalog,
    bound: &'a mut Bound,
    now_ms: i64,
    /// Sub-query aliases made so far, so nested ones never clash.
    aliases: usize,
    /// Bytes of SQL written so far; past [`MAX_SQL_BYTES`], every further
    /// leaf is `FALSE` and the translation is refused at its end.
    written: usize,
}

const FALSE: &str = "FALSE";

impl Translator<'_> {
    fn over_budget(&self) -> bool {
        self.written > MAX_SQL_BYTES
    }

    fn node(&mut self, node: &Node) -> Result<Option<String>, DatasourceError> {
        match node {
            Node::Group(group) => {
                let Some(clauses) = group.clauses(|child| self.node(child))? else {
                    return Ok(None);
                };
                Ok(Some(combine(&clauses)))
            }
            // A boost changes the score, never which records match.
            Node::Boost(inner, _) => self.node(inner),
            Node::Leaf(leaf) => Ok(self.leaf(leaf)),
        }
    }

    fn leaf(&mut self, leaf: &Leaf) -> Option<String> {
        let mapping = &self.catalog.mapping;
        match &leaf.kind {
            LeafKind::All => return Some("TRUE".into()),
            LeafKind::Exists => {
                let name = leaf.field.as_deref().unwrap_or("*");
                let any: Vec<String> = mapping
                    .exists_fields(name)
                    .into_iter()
                    .filter_map(|f| self.catalog.columns.get(&f.path))
                    .map(Column::exists)
                    .collect();
                return Some(any_of(any));
            }
            _ => {}
        }
        // A leaf without a field searches the default field (`*`: every field).
        let name = leaf.field.as_deref().unwrap_or(&self.catalog.default_field);
        let fields = mapping.resolve(Some(name));
        if fields.is_empty() {
            return Some(FALSE.into());
        }
        let mut per_field = Vec::with_capacity(fields.len());
        for mapped in fields {
            if self.over_budget() {
                return Some(FALSE.into());
            }
            let Some(column) = self.catalog.columns.get(&mapped.path) else {
                continue;
            };
            if let Some(condition) = self.on_column(mapped, column, &leaf.kind) {
                self.written += condition.len();
                per_field.push(condition);
            }
        }
        if per_field.is_empty() {
            None
        } else {
            Some(any_of(per_field))
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("e{}", self.aliases)
    }

    /// One leaf on one column: `None` when the analyzer leaves nothing to
    /// search for; `FALSE` when the value cannot match this column.
    fn on_column(
        &mut self,
        mapped: &MappedField,
        column: &Column,
        kind: &LeafKind,
    ) -> Option<String> {
        let field_type = &mapped.field_type;
        // Text analysed as a whole (terms, phrases) is matched on the value;
        // everything else on each value of a list.
        if let (FieldType::Text, LeafKind::Term(text) | LeafKind::Phrase { text, .. }) =
            (field_type, kind)
        {
            let slop = match kind {
                LeafKind::Phrase { slop, .. } => Some(*slop),
                _ => None,
            };
            // A negative slop on several words: the phrase query refuses
            // it, and lenient Elasticsearch matches nothing.
            if slop.is_some_and(|slop| slop < 0) && analysis::tokens(text).len() > 1 {
                return Some(FALSE.into());
            }
            if analysis::tokens(text).is_empty() {
                return None;
            }
            // Every word is a piece of the lowercased value: `LIKE` rules
            // out most rows before their words are made (and a trigram
            // index on `lower(column)` can serve it). A phrase needs all
            // its words, a term any of them.
            let pieces: Vec<String> = analysis::tokens(text)
                .iter()
                .map(|word| {
                    let mut pattern = String::from("%");
                    for c in word.chars() {
                        push_like_literal(&mut pattern, c);
                    }
                    pattern.push('%');
                    self.bound.bind(Param::Text(pattern))
                })
                .collect();
            let joiner = if slop.is_some() { " AND " } else { " OR " };
            // A term, or a phrase without slop, is one regular expression
            // over the value (its words with the boundaries of the standard
            // analyzer around them): no list of words is made per row.
            let (whole, query) = match slop {
                None | Some(0) => {
                    let regex = words_regex(&analysis::tokens(text), slop.is_some());
                    (Some(self.bound.bind(Param::Text(regex))), String::new())
                }
                Some(slop) => {
                    let slop = u32::try_from(slop).unwrap_or(0);
                    (None, self.sloppy_phrase(&analysis::tokens(text), slop))
                }
            };
            return Some(column.any(&self.alias(), |value| {
                let contains: Vec<String> = pieces
                    .iter()
                    .map(|piece| format!("lower({value}) LIKE {piece}"))
                    .collect();
                let words = match &whole {
                    Some(regex) => format!("{} ~ {regex}", spaced_ideographs(value)),
                    None => format!("{} @@ ({query})", standard_tsvector(value)),
                };
                format!("(({}) AND {words})", contains.join(joiner))
            }));
        }
        if let (Some(condition), LeafKind::Term(text) | LeafKind::Phrase { text, .. }) =
            (column.lowercase_array(), kind)
        {
            if matches!(
                field_type,
                FieldType::Keyword {
                    lowercase: true,
                    ignore_above: None
                }
            ) {
                // `'{Foo,bar}'` lowercased as a whole, then compared with a
                // containment a GIN index on the same expression serves.
                let value = self.bound.bind(Param::Text(normalize(mapped, text)));
                return Some(format!("{condition} @> ARRAY[{value}]"));
            }
        }
        let value_condition = match field_type {
            FieldType::Text => {
                // Prefixes, patterns, fuzzy terms and ranges look at the words.
                let condition = self.keyword(mapped, kind, true)?;
                let word = self.alias();
                return Some(column.any(&self.alias(), |value| {
                    format!(
                        "EXISTS (SELECT 1 FROM unnest(tsvector_to_array({})) AS {word}(v) WHERE {})",
                        standard_tsvector(value),
                        condition.replace(VALUE, &format!("{word}.v"))
                    )
                }));
            }
            FieldType::Keyword { lowercase, .. } => self.keyword(mapped, kind, *lowercase)?,
            FieldType::Long => self.long(mapped, kind),
            FieldType::Double => self.double(mapped, kind),
            FieldType::Date => self.date(kind),
            FieldType::Boolean => self.boolean(kind),
            FieldType::Other => FALSE.into(),
        };
        Some(column.any(&self.alias(), |value| value_condition.replace(VALUE, value)))
    }

    /// A sloppy phrase as PostgreSQL's distance operator can say it: the
    /// words in order with at most `slop` extra positions between them all,
    /// and for two words also reversed (which costs Lucene two moves). Out
    /// of order placements of three or more words are not matched; past
    /// [`MAX_PLACEMENTS`] placements, all the words anywhere.
    fn sloppy_phrase(&mut self, tokens: &[String], slop: u32) -> String {
        let words: Vec<String> = tokens.iter().map(|t| self.lexeme_query(t)).collect();
        // Two words reversed need `slop - 1` more alternatives: past the
        // ceiling, the words anywhere (decided before any is spelled out).
        if words.len() == 2 && slop as usize > MAX_PLACEMENTS {
            return words.join(" && ");
        }
        let mut gaps_list = Vec::new();
        placements(
            words.len().saturating_sub(1),
            slop,
            &mut Vec::new(),
            &mut gaps_list,
        );
        if gaps_list.len() > MAX_PLACEMENTS {
            return words.join(" && ");
        }
        let mut alternatives: Vec<String> = gaps_list
            .iter()
            .map(|gaps| {
                let mut query = words[0].clone();
                for (word, gap) in words[1..].iter().zip(gaps) {
                    query = format!("tsquery_phrase({query}, {word}, {gap})");
                }
                query
            })
            .collect();
        if words.len() == 2 {
            for gap in 1..slop {
                alternatives.push(format!("tsquery_phrase({}, {}, {gap})", words[1], words[0]));
            }
        }
        alternatives.join(" || ")
    }

    /// A tsquery of one word, exactly as the analyzer made it (PostgreSQL's
    /// own parser would split `1,000` or keep `a@b.example` whole).
    fn lexeme_query(&mut self, token: &str) -> String {
        format!(
            "{}::tsquery",
            self.bound.bind(Param::Text(tsquery_lexeme(token)))
        )
    }

    /// A condition on one string value (`VALUE`), matched whole.
    fn keyword(
        &mut self,
        mapped: &MappedField,
        kind: &LeafKind,
        lowercase: bool,
    ) -> Option<String> {
        let value = if lowercase {
            format!("lower({VALUE})")
        } else {
            VALUE.to_owned()
        };
        let normalized = |text: &str| normalize(mapped, text);
        let condition = match kind {
            LeafKind::Term(text) | LeafKind::Phrase { text, .. } => {
                let text = match mapped.field_type {
                    // A word of a text field, as the analyzer makes it.
                    FieldType::Text => analysis::lowercase(text),
                    _ => normalized(text),
                };
                format!("{value} = {}", self.bound.bind(Param::Text(text)))
            }
            LeafKind::Prefix(prefix) => {
                format!(
                    "starts_with({value}, {})",
                    self.bound.bind(Param::Text(normalized(prefix)))
                )
            }
            LeafKind::Wildcard(pattern) => {
                format!(
                    "{value} LIKE {}",
                    self.bound
                        .bind(Param::Text(wildcard_to_like(&normalized(pattern))))
                )
            }
            LeafKind::Regex(pattern) => match lucene_regex_to_rust(&normalized(pattern)) {
                Ok(regex) => {
                    let regex = regex.strip_prefix("(?s)").unwrap_or(&regex);
                    format!(
                        "{value} ~ {}",
                        self.bound.bind(Param::Text(format!("^{regex}$")))
                    )
                }
                // Elasticsearch's `lenient`: a pattern it cannot use matches nothing.
                Err(_) => FALSE.into(),
            },
            LeafKind::Fuzzy { text, edits } => {
                let term = self.bound.bind(Param::Text(normalized(text)));
                if *edits == 0 || !self.catalog.fuzzy {
                    // Without the `fuzzystrmatch` extension a fuzzy term is exact.
                    format!("{value} = {term}")
                } else {
                    format!("levenshtein_less_equal({value}, {term}, {edits}) <= {edits}")
                }
            }
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => {
                // Compared as Elasticsearch compares terms: by their bytes.
                let bound = |text: &Option<String>, inclusive: &bool| {
                    text.as_ref()
                        .map(|t| (Param::Text(normalized(t)), *inclusive))
                };
                self.compare(
                    &format!("{value} COLLATE \"C\""),
                    bound(lower, include_lower),
                    bound(upper, include_upper),
                )
            }
            LeafKind::Exists | LeafKind::All => FALSE.into(),
        };
        // Values longer than `ignore_above` are not indexed in Elasticsearch.
        Some(match mapped.field_type {
            FieldType::Keyword {
                ignore_above: Some(limit),
                ..
            } => format!("({condition} AND char_length({VALUE}) <= {limit})"),
            _ => condition,
        })
    }

    /// `value` within two bounds, each a parameter and whether it is
    /// inclusive, or open; both open: the value is there.
    fn compare(
        &mut self,
        value: &str,
        lower: Option<(Param, bool)>,
        upper: Option<(Param, bool)>,
    ) -> String {
        let mut parts = Vec::new();
        for (bound, inclusive_op, exclusive_op) in [(lower, ">=", ">"), (upper, "<=", "<")] {
            if let Some((param, inclusive)) = bound {
                let op = if inclusive {
                    inclusive_op
                } else {
                    exclusive_op
                };
                parts.push(format!("{value} {op} {}", self.bound.bind(param)));
            }
        }
        if parts.is_empty() {
            format!("{value} IS NOT NULL")
        } else {
            parts.join(" AND ")
        }
    }

    /// `value` from `low` to `high`, both included; nothing when empty.
    fn between(&mut self, value: &str, low: i64, high: i64) -> String {
        if low > high {
            return FALSE.into();
        }
        let (low, high) = (
            self.bound.bind(Param::Long(low)),
            self.bound.bind(Param::Long(high)),
        );
        format!("{value} BETWEEN {low} AND {high}")
    }

    fn long(&mut self, mapped: &MappedField, kind: &LeafKind) -> String {
        let range = whole_range(mapped);
        match kind {
            LeafKind::Term(text) | LeafKind::Phrase { text, .. } => match whole_term(text, range) {
                Some(n) => format!("{VALUE} = {}", self.bound.bind(Param::Long(n))),
                None => FALSE.into(),
            },
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => {
                match (
                    whole_bound(lower.as_deref(), true, *include_lower, range),
                    whole_bound(upper.as_deref(), false, *include_upper, range),
                ) {
                    (Some(low), Some(high)) => self.between(VALUE, low, high),
                    _ => FALSE.into(),
                }
            }
            _ => FALSE.into(),
        }
    }

    fn double(&mut self, mapped: &MappedField, kind: &LeafKind) -> String {
        match kind {
            LeafKind::Term(text) | LeafKind::Phrase { text, .. } => {
                match decimal_value(mapped, text) {
                    Some(number) => format!("{VALUE} = {}", self.bound.bind(Param::Double(number))),
                    None => FALSE.into(),
                }
            }
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => {
                let bound = |text: &Option<String>, inclusive: &bool| match text {
                    None => Some(None),
                    Some(t) => {
                        decimal_value(mapped, t).map(|n| Some((Param::Double(n), *inclusive)))
                    }
                };
                match (bound(lower, include_lower), bound(upper, include_upper)) {
                    (Some(low), Some(high)) => self.compare(VALUE, low, high),
                    // Elasticsearch's `lenient`: a bound that is no number matches nothing.
                    _ => FALSE.into(),
                }
            }
            _ => FALSE.into(),
        }
    }

    /// Dates are compared as milliseconds since the epoch, rounded as
    /// Elasticsearch rounds date math.
    fn date(&mut self, kind: &LeafKind) -> String {
        let range = match kind {
            LeafKind::Term(text) | LeafKind::Phrase { text, .. } => {
                date::range(Some(text), Some(text), true, true, self.now_ms)
            }
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => date::range(
                lower.as_deref(),
                upper.as_deref(),
                *include_lower,
                *include_upper,
                self.now_ms,
            ),
            _ => return FALSE.into(),
        };
        match range {
            Ok(Some((low, high))) => self.between(VALUE, low, high),
            _ => FALSE.into(),
        }
    }

    fn boolean(&mut self, kind: &LeafKind) -> String {
        let value = |text: &str| match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        match kind {
            LeafKind::Term(text) | LeafKind::Phrase { text, .. } => match value(text) {
                Some(b) => format!("{VALUE} = {}", self.bound.bind(Param::Bool(b))),
                None => FALSE.into(),
            },
            LeafKind::Range {
                lower,
                upper,
                include_lower,
                include_upper,
            } => {
                // Elasticsearch compares booleans as the terms F < T.
                let low = match lower {
                    None => Some(0i64),
                    Some(v) => value(v).map(|b| i64::from(b) + i64::from(!include_lower)),
                };
                let high = match upper {
                    None => Some(1i64),
                    Some(v) => value(v).map(|b| i64::from(b) - i64::from(!include_upper)),
                };
                match (low, high) {
                    (Some(low), Some(high)) => self.between(&format!("{VALUE}::int"), low, high),
                    _ => FALSE.into(),
                }
            }
            _ => FALSE.into(),
        }
    }
}

/// The most word placements a sloppy phrase is spelled out with.
const MAX_PLACEMENTS: usize = 64;

/// Every way to place `count` more words after the first, each 1 or more
/// positions after the one before, with at most `slop` extra positions in all.
fn placements(count: usize, slop: u32, gaps: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
    if out.len() > MAX_PLACEMENTS {
        return;
    }
    if gaps.len() == count {
        out.push(gaps.clone());
        return;
    }
    let used: u32 = gaps.iter().map(|g| g - 1).sum();
    for extra in 0..=slop.saturating_sub(used) {
        // Stop as soon as the ceiling is passed: a slop of 2^32 must not
        // spin through every gap it allows.
        if out.len() > MAX_PLACEMENTS {
            return;
        }
        gaps.push(extra.saturating_add(1));
        placements(count, slop, gaps, out);
        gaps.pop();
    }
}

/// Where a condition on one value puts the value's SQL. Not valid SQL, so it
/// can never come from a catalog name or a parameter.
pub const VALUE: &str = "\u{1}VALUE\u{1}";

/// Lucene's rule for a group, as SQL: required clauses all hold, optional
/// ones matter only when nothing is required, prohibited ones never hold;
/// a group that only prohibits matches everything else (Elasticsearch).
fn combine(clauses: &[(Occur, String)]) -> String {
    let of = |occur: Occur| {
        clauses
            .iter()
            .filter(move |(o, _)| *o == occur)
            .map(|(_, c)| c.clone())
    };
    let mut must: Vec<String> = of(Occur::Must).collect();
    let should: Vec<String> = of(Occur::Should).collect();
    let must_not: Vec<String> = of(Occur::MustNot).collect();
    let mut parts = if !must.is_empty() {
        // Optional clauses beside required ones only score; they stay in
        // the statement (as `… OR TRUE`, folded away by the planner) so
        // every bound parameter is used.
        if !should.is_empty() {
            must.push(format!("({} OR TRUE)", should.join(" OR ")));
        }
        must
    } else if !should.is_empty() {
        vec![any_of(should)]
    } else {
        debug_assert!(only_prohibits(clauses));
        Vec::new()
    };
    // `IS NOT TRUE`, not `NOT`: a condition on a NULL column is unknown,
    // and excluding it must keep the row.
    parts.extend(must_not.into_iter().map(|c| format!("({c}) IS NOT TRUE")));
    if parts.is_empty() {
        "TRUE".into()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

fn any_of(conditions: Vec<String>) -> String {
    match conditions.len() {
        0 => FALSE.into(),
        1 => conditions
            .into_iter()
            .next()
            .unwrap_or_else(|| FALSE.into()),
        _ => format!("({})", conditions.join(" OR ")),
    }
}

/// A Lucene wildcard (`*`, `?`, `\` escapes) as a `LIKE` pattern.
fn wildcard_to_like(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '\\' => {
                if let Some(escaped) = chars.next() {
                    push_like_literal(&mut out, escaped);
                }
            }
            c => push_like_literal(&mut out, c),
        }
    }
    out
}

fn push_like_literal(out: &mut String, c: char) {
    if matches!(c, '%' | '_' | '\\') {
        out.push('\\');
    }
    out.push(c);
}

/// A word as a tsquery or tsvector literal: quoted, with quotes doubled
/// and backslashes escaped.
fn tsquery_lexeme(word: &str) -> String {
    format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''"))
}

/// Ideographs and Hiragana: each character a word of its own.
const IDEOGRAPHS: &str = r"([\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])";

/// A word as Unicode's word boundaries (UAX #29) make it, for scripts
/// written with spaces: letters, digits and `_`, joined across `.` `'` `:`
/// `·` between letters and across `.` `'` `,` `;` between digits.
const STANDARD_WORD: &str = r"(?:[[:alnum:]_]|(?<=[[:alpha:]])[:·'’.](?=[[:alpha:]])|(?<=[[:digit:]])[,;.'’](?=[[:digit:]]))+";

/// The value lowercased, each ideograph and Hiragana letter apart: the
/// text the standard words are read from.
fn spaced_ideographs(value: &str) -> String {
    format!(
        "regexp_replace(lower({value}), '{}', ' \\1 ', 'g')",
        IDEOGRAPHS.replace('\'', "''")
    )
}

/// A regular expression finding `words` as words of the standard analyzer
/// in a [`spaced_ideographs`] text: any of them (a term), or all of them in
/// order next to each other (a phrase). A word is found where no letter,
/// digit or `_` touches it and no joiner (`.` `'` `:` between letters, `.`
/// `'` `,` `;` between digits) would make it part of a longer word.
fn words_regex(words: &[String], phrase: bool) -> String {
    let one = |word: &str| {
        let first = word.chars().next().unwrap_or(' ');
        let last = word.chars().last().unwrap_or(' ');
        let mut out = String::from("(?<![[:alnum:]_])");
        if first.is_alphabetic() {
            out.push_str("(?<![[:alpha:]][:·'’.])");
        } else if first.is_numeric() {
            out.push_str("(?<![[:digit:]][,;.'’])");
        }
        for c in word.chars() {
            if "\\.^$|?*+()[]{}".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("(?![[:alnum:]_])");
        if last.is_alphabetic() {
            out.push_str("(?![:·'’.][[:alpha:]])");
        } else if last.is_numeric() {
            out.push_str("(?![,;.'’][[:digit:]])");
        }
        out
    };
    let parts: Vec<String> = words.iter().map(|w| one(w)).collect();
    if phrase {
        parts.join("[^[:alnum:]_]+")
    } else {
        parts
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// The words of a full-text value as Elasticsearch's standard analyzer
/// makes them (lowercased, in order), as a tsvector with their positions:
/// PostgreSQL's own parsers keep `anna@example.org` or `thread-08-0` whole.
fn standard_tsvector(value: &str) -> String {
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    format!(
        "(SELECT string_agg({word}, ' ') FROM regexp_matches(\
         regexp_replace(lower({value}), {ideographs}, ' \\1 ', 'g'), {words}, 'g') \
         WITH ORDINALITY AS w(m, n))::tsvector",
        word = r"'''' || replace(replace(w.m[1], '\', '\\'), '''', '''''') || ''':' || w.n",
        ideographs = literal(IDEOGRAPHS),
        words = literal(STANDARD_WORD),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_like_patterns() {
        assert_eq!(wildcard_to_like("an?a*"), "an_a%");
        assert_eq!(wildcard_to_like("100%_x"), "100\\%\\_x");
        assert_eq!(wildcard_to_like("a\\*b"), "a*b");
    }

    #[test]
    fn sloppy_phrases_are_placements() {
        let mut out = Vec::new();
        placements(1, 2, &mut Vec::new(), &mut out);
        assert_eq!(out, [[1], [2], [3]]);
        let mut out = Vec::new();
        placements(2, 1, &mut Vec::new(), &mut out);
        assert_eq!(out, [[1, 1], [1, 2], [2, 1]]);
    }

    #[test]
    fn groups_follow_lucene() {
        let c = |o, s: &str| (o, s.to_owned());
        assert_eq!(
            combine(&[c(Occur::Should, "a"), c(Occur::Should, "b")]),
            "((a OR b))"
        );
        assert_eq!(
            combine(&[c(Occur::Must, "a"), c(Occur::Should, "b")]),
            "(a AND (b OR TRUE))"
        );
        assert_eq!(combine(&[c(Occur::MustNot, "a")]), "((a) IS NOT TRUE)");
        assert_eq!(
            combine(&[c(Occur::Should, "a"), c(Occur::MustNot, "b")]),
            "(a AND (b) IS NOT TRUE)"
        );
    }
}
