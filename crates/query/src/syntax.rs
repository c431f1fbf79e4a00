//! The query grammar: Lucene's classic query parser (the grammar under
//! Elasticsearch's `query_string`), token for token, with Elasticsearch's
//! additions (`_exists_:field`, `field:>v`, `~` fuzziness read as
//! Elasticsearch reads it, bare terms analysed together).
//!
//! The lexer follows `QueryParser.jj`: the longest token wins, and of equally
//! long ones the first declared (so `AND` is an operator, `ANDY` a term,
//! `foo*` a prefix and `f*o` a wildcard). The parser is recursive descent over
//! the same productions; nesting is bounded by the caller (the server refuses
//! queries deeper than `max_query_depth` before parsing).

use std::fmt;

use crate::ast::{Conjunction, Entry, Group, Leaf, LeafKind, Modifier, Node};

/// A query that is not valid syntax, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub query: String,
    /// Offset in characters from the start of the query (0-based).
    pub position: usize,
    pub reason: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot parse query \"{}\": {} at character {}",
            self.query, self.reason, self.position
        )
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a query. The empty query parses to an empty group (callers decide
/// that it matches everything, as the server's contract says).
pub fn parse(query: &str) -> Result<Node, SyntaxError> {
    let tokens = lex(query)?;
    if tokens.len() == 1 {
        return Ok(Node::Group(Group::default()));
    }
    let mut parser = Parser {
        query,
        tokens,
        at: 0,
        depth: 0,
    };
    let node = parser.query(None)?;
    match parser.peek() {
        Kind::Eof => Ok(node),
        Kind::RParen => Err(parser.error("unexpected closing parenthesis")),
        _ => Err(parser.error("unexpected input")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    And,
    Or,
    Not,
    Plus,
    Minus,
    /// `+`, `-` or `!` followed by whitespace: a term of its own.
    BareOper(char),
    LParen,
    RParen,
    Colon,
    Star,
    Caret,
    /// `"…"`, the text between the quotes (escapes kept).
    Quoted(String),
    Term(String),
    /// `~…`, the text after the tilde.
    FuzzySlop(String),
    PrefixTerm(String),
    WildTerm(String),
    /// `/…/`, the text between the slashes.
    RegexpTerm(String),
    RangeInStart,
    RangeExStart,
    Number(String),
    RangeTo,
    RangeInEnd,
    RangeExEnd,
    RangeQuoted(String),
    RangeGoop(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Character offset of the token's start.
    at: usize,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{3000}')
}

/// `_TERM_START_CHAR` without the escape: any character but these.
fn is_term_start(c: char) -> bool {
    !is_whitespace(c)
        && !matches!(
            c,
            '+' | '-'
                | '!'
                | '('
                | ')'
                | ':'
                | '^'
                | '['
                | ']'
                | '"'
                | '{'
                | '}'
                | '~'
                | '*'
                | '?'
                | '\\'
                | '/'
        )
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Default,
    Boost,
    Range,
}

fn lex(query: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = query.chars().collect();
    let error = |at: usize, reason: &str| SyntaxError {
        query: query.to_owned(),
        position: at,
        reason: reason.to_owned(),
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut state = State::Default;
    loop {
        while i < chars.len() && is_whitespace(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            if state == State::Boost {
                return Err(error(i, "a boost `^` must be followed by a number"));
            }
            tokens.push(Token {
                kind: Kind::Eof,
                at: chars.len(),
            });
            return Ok(tokens);
        }
        let start = i;
        let text = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
        let (kind, end) = match state {
            State::Boost => {
                let digits = count_digits(&chars, i);
                if digits == 0 {
                    return Err(error(i, "a boost `^` must be followed by a number"));
                }
                let mut end = i + digits;
                if chars.get(end) == Some(&'.') && count_digits(&chars, end + 1) > 0 {
                    end += 1 + count_digits(&chars, end + 1);
                }
                state = State::Default;
                (Kind::Number(text(i, end)), end)
            }
            State::Range => {
                let c = chars[i];
                let goop_end = {
                    let mut j = i;
                    while j < chars.len() && !matches!(chars[j], ' ' | ']' | '}') {
                        j += 1;
                    }
                    j
                };
                let quoted_end = if c == '"' {
                    // `"` ( ~["\""] | "\\\"" )+ `"`
                    let mut j = i + 1;
                    let mut end = None;
                    while j < chars.len() {
                        if chars[j] == '\\' && chars.get(j + 1) == Some(&'"') {
                            j += 2;
                        } else if chars[j] == '"' {
                            if j > i + 1 {
                                end = Some(j + 1);
                            }
                            break;
                        } else {
                            j += 1;
                        }
                    }
                    end
                } else {
                    None
                };
                match c {
                    ']' => {
                        state = State::Default;
                        (Kind::RangeInEnd, i + 1)
                    }
                    '}' => {
                        state = State::Default;
                        (Kind::RangeExEnd, i + 1)
                    }
                    _ => match quoted_end {
                        Some(end) if end >= goop_end => {
                            (Kind::RangeQuoted(text(i + 1, end - 1)), end)
                        }
                        _ if goop_end == i + 2 && c == 'T' && chars[i + 1] == 'O' => {
                            (Kind::RangeTo, i + 2)
                        }
                        _ => (Kind::RangeGoop(text(i, goop_end)), goop_end),
                    },
                }
            }
            State::Default => {
                lex_default(&chars, i, &mut state).map_err(|(at, why)| error(at, why))?
            }
        };
        tokens.push(Token { kind, at: start });
        i = end;
    }
}

fn count_digits(chars: &[char], from: usize) -> usize {
    chars[from.min(chars.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// Length of a run of term characters (`_TERM_CHAR`: start characters,
/// escapes, `-` and `+`), and with `wild` also `*` and `?`.
fn term_run(chars: &[char], from: usize, wild: bool) -> Result<usize, (usize, &'static str)> {
    let mut j = from;
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' {
            if j + 1 >= chars.len() {
                return Err((j, "a term cannot end with the escape character `\\`"));
            }
            j += 2;
        } else if is_term_start(c) || c == '-' || c == '+' || (wild && (c == '*' || c == '?')) {
            j += 1;
        } else {
            break;
        }
    }
    Ok(j - from)
}

fn lex_default(
    chars: &[char],
    i: usize,
    state: &mut State,
) -> Result<(Kind, usize), (usize, &'static str)> {
    let c = chars[i];
    let next = chars.get(i + 1).copied();
    let text = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    let single = match c {
        '(' => Some(Kind::LParen),
        ')' => Some(Kind::RParen),
        ':' => Some(Kind::Colon),
        '^' => {
            *state = State::Boost;
            Some(Kind::Caret)
        }
        '[' => {
            *state = State::Range;
            Some(Kind::RangeInStart)
        }
        '{' => {
            *state = State::Range;
            Some(Kind::RangeExStart)
        }
        '+' | '-' | '!' => Some(if next.is_some_and(is_whitespace) {
            return Ok((Kind::BareOper(c), i + 2));
        } else {
            match c {
                '+' => Kind::Plus,
                '-' => Kind::Minus,
                _ => Kind::Not,
            }
        }),
        _ => None,
    };
    if let Some(kind) = single {
        return Ok((kind, i + 1));
    }
    match c {
        '"' => {
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '\\' if j + 1 < chars.len() => j += 2,
                    '"' => return Ok((Kind::Quoted(text(i + 1, j)), j + 1)),
                    _ => j += 1,
                }
            }
            Err((i, "missing closing quote"))
        }
        '/' => {
            // `/` ( ~["/"] | "\\/" )* `/`, the longest such.
            let mut j = i + 1;
            let mut end = None;
            while j < chars.len() {
                if chars[j] == '\\' && chars.get(j + 1) == Some(&'/') {
                    j += 2;
                    continue;
                }
                if chars[j] == '/' {
                    end = Some(j);
                    break;
                }
                j += 1;
            }
            match end {
                Some(j) => Ok((Kind::RegexpTerm(text(i + 1, j)), j + 1)),
                None => Err((i, "missing closing `/` of a regular expression")),
            }
        }
        '~' => {
            // "~" ( digits ( "." digits )? termchars* | termchars* )
            let mut j = i + 1;
            let digits = count_digits(chars, j);
            if digits > 0 {
                j += digits;
                if chars.get(j) == Some(&'.') && count_digits(chars, j + 1) > 0 {
                    j += 1 + count_digits(chars, j + 1);
                }
            }
            j += term_run(chars, j, false)?;
            Ok((Kind::FuzzySlop(text(i + 1, j)), j))
        }
        '*' | '?' => {
            let wild = 1 + term_run(chars, i + 1, true)?;
            if c == '*' && wild == 1 {
                Ok((Kind::Star, i + 1))
            } else {
                Ok((Kind::WildTerm(text(i, i + wild)), i + wild))
            }
        }
        '\\' if i + 1 >= chars.len() => {
            Err((i, "a term cannot end with the escape character `\\`"))
        }
        c if c == '\\' || is_term_start(c) => {
            let term = term_run(chars, i, false)?;
            let wild = term_run(chars, i, true)?;
            let prefix = if chars.get(i + term) == Some(&'*') {
                term + 1
            } else {
                0
            };
            let image = text(i, i + term);
            if wild > term && wild > prefix {
                Ok((Kind::WildTerm(text(i, i + wild)), i + wild))
            } else if prefix > term {
                Ok((Kind::PrefixTerm(text(i, i + prefix)), i + prefix))
            } else {
                let kind = match image.as_str() {
                    "AND" | "&&" => Kind::And,
                    "OR" | "||" => Kind::Or,
                    "NOT" => Kind::Not,
                    _ => Kind::Term(image),
                };
                Ok((kind, i + term))
            }
        }
        _ => Err((i, "unexpected character")),
    }
}

/// Removes escapes: `\x` is `x`, `\uXXXX` the character with that code.
pub fn discard_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                    .flatten()
                {
                    Some(decoded) => {
                        out.push(decoded);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    None => out.push('u'),
                }
            }
            Some(escaped) => out.push(escaped),
            None => {}
        }
    }
    out
}

struct Parser<'q> {
    query: &'q str,
    tokens: Vec<Token>,
    at: usize,
    /// Parenthesised groups open at this point.
    depth: usize,
}

/// Deepest nesting of parentheses the parser accepts, whoever calls it:
/// recursion stays shallow even without the server's query limits (which
/// refuse far less deep queries first).
pub const MAX_NESTING: usize = 256;

/// After a run of bare terms, these tokens would attach to its last term,
/// so the run stops before it (`disallowedPostMultiTerm`).
fn ends_multi_term(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Colon | Kind::Star | Kind::FuzzySlop(_) | Kind::Caret | Kind::And | Kind::Or
    )
}

impl Parser<'_> {
    fn peek(&self) -> &Kind {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Kind {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.at + ahead).min(last)].kind
    }

    fn next(&mut self) -> Kind {
        let kind = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        kind
    }

    fn error(&self, reason: &str) -> SyntaxError {
        let token = &self.tokens[self.at.min(self.tokens.len() - 1)];
        let reason = if token.kind == Kind::Eof && reason == "unexpected input" {
            "unexpected end of query"
        } else {
            reason
        };
        SyntaxError {
            query: self.query.to_owned(),
            position: token.at,
            reason: reason.to_owned(),
        }
    }

    /// Does a run of two or more bare terms start here?
    fn multi_term_ahead(&self) -> bool {
        matches!(self.peek_at(0), Kind::Term(_))
            && matches!(self.peek_at(1), Kind::Term(_))
            && !ends_multi_term(self.peek_at(2))
    }

    fn starts_clause(kind: &Kind) -> bool {
        matches!(
            kind,
            Kind::And
                | Kind::Or
                | Kind::Not
                | Kind::Plus
                | Kind::Minus
                | Kind::BareOper(_)
                | Kind::LParen
                | Kind::Star
                | Kind::Quoted(_)
                | Kind::Term(_)
                | Kind::PrefixTerm(_)
                | Kind::WildTerm(_)
                | Kind::RegexpTerm(_)
                | Kind::RangeInStart
                | Kind::RangeExStart
                | Kind::Number(_)
        )
    }

    fn query(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let mut entries = Vec::new();
        let mut first = true;
        loop {
            if self.multi_term_ahead() {
                entries.push(self.multi_term(field));
            } else {
                if !first && !Self::starts_clause(self.peek()) {
                    break;
                }
                let conjunction = if first {
                    Conjunction::None
                } else {
                    self.conjunction()
                };
                let modifier = self.modifier();
                let node = self.clause(field)?;
                entries.push(Entry {
                    conjunction,
                    modifier,
                    node,
                });
            }
            first = false;
        }
        // A single optional or required clause is that clause.
        if entries.len() == 1 && entries[0].modifier != Modifier::Prohibited {
            if let Some(entry) = entries.pop() {
                return Ok(entry.node);
            }
        }
        Ok(Node::Group(Group { entries }))
    }

    /// Bare terms in a row are analysed together, as Elasticsearch does
    /// (`new york` can match a keyword `New York`).
    fn multi_term(&mut self, field: Option<&str>) -> Entry {
        let mut text = match self.next() {
            Kind::Term(image) => discard_escapes(&image),
            _ => String::new(),
        };
        while matches!(self.peek_at(0), Kind::Term(_)) && !ends_multi_term(self.peek_at(1)) {
            if let Kind::Term(image) = self.next() {
                text.push(' ');
                text.push_str(&discard_escapes(&image));
            }
        }
        Entry {
            conjunction: Conjunction::None,
            modifier: Modifier::None,
            node: field_query(field, text),
        }
    }

    fn conjunction(&mut self) -> Conjunction {
        match self.peek() {
            Kind::And => {
                self.next();
                Conjunction::And
            }
            Kind::Or => {
                self.next();
                Conjunction::Or
            }
            _ => Conjunction::None,
        }
    }

    fn modifier(&mut self) -> Modifier {
        match self.peek() {
            Kind::Plus => {
                self.next();
                Modifier::Required
            }
            Kind::Minus | Kind::Not => {
                self.next();
                Modifier::Prohibited
            }
            _ => Modifier::None,
        }
    }

    fn clause(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let mut field = field.map(str::to_owned);
        match (self.peek_at(0), self.peek_at(1)) {
            (Kind::Term(name), Kind::Colon) => {
                field = Some(discard_escapes(name));
                self.next();
                self.next();
            }
            (Kind::Star, Kind::Colon) => {
                field = Some("*".to_owned());
                self.next();
                self.next();
            }
            _ => {}
        }
        if *self.peek() == Kind::LParen {
            if self.depth >= MAX_NESTING {
                return Err(self.error("parentheses nested too deeply"));
            }
            self.next();
            self.depth += 1;
            let inner = self.query(field.as_deref())?;
            self.depth -= 1;
            if *self.peek() != Kind::RParen {
                return Err(self.error(if *self.peek() == Kind::Eof {
                    "missing closing parenthesis"
                } else {
                    "unexpected input"
                }));
            }
            self.next();
            return self.boost(inner);
        }
        self.term(field.as_deref())
    }

    /// `^N` after a clause, if any.
    fn boost(&mut self, node: Node) -> Result<Node, SyntaxError> {
        match self.take_boost()? {
            Some(boost) => Ok(Node::Boost(Box::new(node), boost)),
            None => Ok(node),
        }
    }

    fn take_boost(&mut self) -> Result<Option<f32>, SyntaxError> {
        if *self.peek() != Kind::Caret {
            return Ok(None);
        }
        self.next();
        match self.next() {
            Kind::Number(number) => Ok(Some(number.parse().unwrap_or(1.0))),
            _ => Err(self.error("a boost `^` must be followed by a number")),
        }
    }

    /// `[^N [~slop]] | [~slop [^N]]` after a term.
    fn boost_and_slop(&mut self) -> Result<(Option<f32>, Option<String>), SyntaxError> {
        let mut boost = None;
        let mut slop = None;
        if *self.peek() == Kind::Caret {
            boost = self.take_boost()?;
            if let Kind::FuzzySlop(s) = self.peek().clone() {
                self.next();
                slop = Some(s);
            }
        } else if let Kind::FuzzySlop(s) = self.peek().clone() {
            self.next();
            slop = Some(s);
            boost = self.take_boost()?;
        }
        Ok((boost, slop))
    }

    fn term(&mut self, field: Option<&str>) -> Result<Node, SyntaxError> {
        let start = self.at;
        let leaf = |kind| {
            Node::Leaf(Leaf {
                field: field.map(str::to_owned),
                kind,
            })
        };
        let node = match self.next() {
            Kind::RangeInStart | Kind::RangeExStart => {
                let include_lower = self.tokens[start].kind == Kind::RangeInStart;
                let lower = self.range_bound()?;
                if *self.peek() != Kind::RangeTo {
                    return Err(self.error("a range needs `TO` between its bounds"));
                }
                self.next();
                let upper = self.range_bound()?;
                let include_upper = match self.peek() {
                    Kind::RangeInEnd => true,
                    Kind::RangeExEnd => false,
                    _ => return Err(self.error("a range must end with `]` or `}`")),
                };
                self.next();
                let node = leaf(LeafKind::Range {
                    lower,
                    upper,
                    include_lower,
                    include_upper,
                });
                return self.boost(node);
            }
            Kind::Quoted(image) => {
                let (boost, slop) = self.boost_and_slop()?;
                let text = discard_escapes(&image);
                // Lucene: a slop that is not a number is the default, 0.
                let slop = slop
                    .and_then(|s| parse_java_float(&s))
                    .map_or(0, |s| s as i32);
                let node = if field == Some("_exists_") {
                    exists(text)
                } else {
                    leaf(LeafKind::Phrase { text, slop })
                };
                with_boost(node, boost)
            }
            Kind::Star => {
                let (boost, _) = self.boost_and_slop()?;
                let node = match field {
                    None | Some("*") => leaf(LeafKind::All),
                    Some(_) => leaf(LeafKind::Exists),
                };
                with_boost(node, boost)
            }
            Kind::WildTerm(image) => {
                let (boost, _) = self.boost_and_slop()?;
                with_boost(leaf(LeafKind::Wildcard(image)), boost)
            }
            Kind::PrefixTerm(image) => {
                let (boost, _) = self.boost_and_slop()?;
                let text = discard_escapes(&image[..image.len() - 1]);
                with_boost(leaf(LeafKind::Prefix(text)), boost)
            }
            Kind::RegexpTerm(pattern) => {
                let (boost, _) = self.boost_and_slop()?;
                with_boost(leaf(LeafKind::Regex(pattern)), boost)
            }
            Kind::Term(image) | Kind::Number(image) => {
                let (boost, slop) = self.boost_and_slop()?;
                let text = discard_escapes(&image);
                let node = match slop {
                    Some(slop) => {
                        let edits = fuzziness(&slop, &text).ok_or_else(|| SyntaxError {
                            query: self.query.to_owned(),
                            position: self.tokens[start].at + image.chars().count(),
                            reason: format!(
                                "the fuzziness `~{slop}` is not a number of edits (0, 1, 2) or AUTO"
                            ),
                        })?;
                        leaf(LeafKind::Fuzzy { text, edits })
                    }
                    None => field_query(field, text),
                };
                with_boost(node, boost)
            }
            Kind::BareOper(c) => {
                let (boost, _) = self.boost_and_slop()?;
                with_boost(field_query(field, c.to_string()), boost)
            }
            _ => {
                self.at = start;
                return Err(self.error(match self.peek() {
                    Kind::Eof => "unexpected end of query",
                    Kind::RParen => "unexpected closing parenthesis",
                    Kind::Colon => "a field name is missing before `:`",
                    _ => "unexpected input",
                }));
            }
        };
        Ok(node)
    }

    fn range_bound(&mut self) -> Result<Option<String>, SyntaxError> {
        let text = match self.peek() {
            Kind::RangeGoop(text) | Kind::RangeQuoted(text) => text.clone(),
            Kind::RangeTo => "TO".to_owned(),
            _ => return Err(self.error("a range bound is missing")),
        };
        self.next();
        let text = discard_escapes(&text);
        // Elasticsearch: `*` is an open end, quoted or not.
        Ok((text != "*").then_some(text))
    }
}

fn with_boost(node: Node, boost: Option<f32>) -> Node {
    match boost {
        Some(boost) => Node::Boost(Box::new(node), boost),
        None => node,
    }
}

fn exists(field: String) -> Node {
    Node::Leaf(Leaf {
        field: Some(field),
        kind: LeafKind::Exists,
    })
}

/// What Elasticsearch makes of an unquoted term on a field: `_exists_:f`,
/// one-sided ranges `>v`, `>=v`, `<v`, `<=v`, or a term.
fn field_query(field: Option<&str>, text: String) -> Node {
    if field == Some("_exists_") {
        return exists(text);
    }
    let leaf = |kind| {
        Node::Leaf(Leaf {
            field: field.map(str::to_owned),
            kind,
        })
    };
    let range = |lower: Option<&str>, upper: Option<&str>, include_lower, include_upper| {
        leaf(LeafKind::Range {
            lower: lower.map(str::to_owned),
            upper: upper.map(str::to_owned),
            include_lower,
            include_upper,
        })
    };
    if text.chars().count() > 1 {
        if let Some(rest) = text.strip_prefix(">=").filter(|r| !r.is_empty()) {
            return range(Some(rest), None, true, true);
        }
        if let Some(rest) = text.strip_prefix('>') {
            return range(Some(rest), None, false, true);
        }
        if let Some(rest) = text.strip_prefix("<=").filter(|r| !r.is_empty()) {
            return range(None, Some(rest), true, true);
        }
        if let Some(rest) = text.strip_prefix('<') {
            return range(None, Some(rest), true, false);
        }
    }
    leaf(LeafKind::Term(text))
}

/// Elasticsearch's reading of `~…` after a term (`Fuzziness.fromString`):
/// nothing or `AUTO` is AUTO (0 edits up to 2 characters, 1 up to 5, else
/// 2), a whole 0, 1 or 2 (`2.0` too) is that many edits. `None` for
/// anything else (`~3`, `~0.5`): an error, as in Elasticsearch.
fn fuzziness(slop: &str, term: &str) -> Option<u8> {
    if slop.is_empty() || slop.eq_ignore_ascii_case("auto") {
        let len = term.chars().count();
        return Some(match len {
            0..=2 => 0,
            3..=5 => 1,
            _ => 2,
        });
    }
    let edits = parse_java_float(slop)?;
    (edits.fract() == 0.0 && (0.0..=2.0).contains(&edits)).then_some(edits as u8)
}

/// `Float.parseFloat` for what the lexer lets through: digits with an
/// optional fraction, and an optional `f`/`d` suffix.
fn parse_java_float(text: &str) -> Option<f32> {
    let text = text.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(text);
    text.parse::<f32>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Occur;

    fn leaf(field: Option<&str>, kind: LeafKind) -> Node {
        Node::Leaf(Leaf {
            field: field.map(str::to_owned),
            kind,
        })
    }

    fn term(field: Option<&str>, text: &str) -> Node {
        leaf(field, LeafKind::Term(text.into()))
    }

    /// The clauses of a group with every leaf kept, as `(occur, node)`.
    fn clauses(node: &Node) -> Vec<(Occur, Node)> {
        match node {
            Node::Group(group) => group
                .clauses(|node| Ok::<_, ()>(Some(node.clone())))
                .unwrap()
                .unwrap_or_default(),
            other => vec![(Occur::Should, other.clone())],
        }
    }

    #[test]
    fn operators_follow_lucene() {
        let q = parse("a AND b").unwrap();
        assert_eq!(
            clauses(&q),
            [
                (Occur::Must, term(None, "a")),
                (Occur::Must, term(None, "b"))
            ]
        );
        let q = parse("a && b || c").unwrap();
        assert_eq!(
            clauses(&q),
            [
                (Occur::Must, term(None, "a")),
                (Occur::Must, term(None, "b")),
                (Occur::Should, term(None, "c"))
            ]
        );
        let q = parse("a AND NOT b").unwrap();
        assert_eq!(
            clauses(&q),
            [
                (Occur::Must, term(None, "a")),
                (Occur::MustNot, term(None, "b"))
            ]
        );
        for q in ["!b", "NOT b", "-b"] {
            assert_eq!(
                clauses(&parse(q).unwrap()),
                [(Occur::MustNot, term(None, "b"))]
            );
        }
        // `- b` is a term `-` and a term `b`, as in Lucene.
        assert_eq!(
            clauses(&parse("- b").unwrap()),
            [
                (Occur::Should, term(None, "-")),
                (Occur::Should, term(None, "b"))
            ]
        );
    }

    #[test]
    fn bare_terms_run_together_until_an_operator() {
        assert_eq!(parse("new york").unwrap(), term(None, "new york"));
        let q = parse("a b c AND d").unwrap();
        assert_eq!(
            clauses(&q),
            [
                (Occur::Should, term(None, "a b")),
                (Occur::Must, term(None, "c")),
                (Occur::Must, term(None, "d"))
            ]
        );
        let q = parse("title:a b").unwrap();
        assert_eq!(
            clauses(&q),
            [
                (Occur::Should, term(Some("title"), "a")),
                (Occur::Should, term(None, "b"))
            ]
        );
        assert_eq!(parse("title:(a b)").unwrap(), term(Some("title"), "a b"));
    }

    #[test]
    fn leaves() {
        assert_eq!(parse("*").unwrap(), leaf(None, LeafKind::All));
        assert_eq!(parse("*:*").unwrap(), leaf(Some("*"), LeafKind::All));
        assert_eq!(parse("cc:*").unwrap(), leaf(Some("cc"), LeafKind::Exists));
        assert_eq!(
            parse("_exists_:cc").unwrap(),
            leaf(Some("cc"), LeafKind::Exists)
        );
        assert_eq!(
            parse("wild*").unwrap(),
            leaf(None, LeafKind::Prefix("wild".into()))
        );
        assert_eq!(
            parse("w*d").unwrap(),
            leaf(None, LeafKind::Wildcard("w*d".into()))
        );
        assert_eq!(
            parse("*ld").unwrap(),
            leaf(None, LeafKind::Wildcard("*ld".into()))
        );
        assert_eq!(
            parse("b?b").unwrap(),
            leaf(None, LeafKind::Wildcard("b?b".into()))
        );
        assert_eq!(
            parse("/b.t+/").unwrap(),
            leaf(None, LeafKind::Regex("b.t+".into()))
        );
        assert_eq!(
            parse("bitcion~").unwrap(),
            leaf(
                None,
                LeafKind::Fuzzy {
                    text: "bitcion".into(),
                    edits: 2
                }
            )
        );
        assert_eq!(
            parse("wildrs~1").unwrap(),
            leaf(
                None,
                LeafKind::Fuzzy {
                    text: "wildrs".into(),
                    edits: 1
                }
            )
        );
        assert_eq!(
            parse("ab~").unwrap(),
            leaf(
                None,
                LeafKind::Fuzzy {
                    text: "ab".into(),
                    edits: 0
                }
            )
        );
        assert_eq!(
            parse("\"a b\"~3").unwrap(),
            leaf(
                None,
                LeafKind::Phrase {
                    text: "a b".into(),
                    slop: 3
                }
            )
        );
        assert_eq!(
            parse("n:>=5").unwrap(),
            leaf(
                Some("n"),
                LeafKind::Range {
                    lower: Some("5".into()),
                    upper: None,
                    include_lower: true,
                    include_upper: true
                }
            )
        );
        assert_eq!(
            parse("n:[1 TO *}").unwrap(),
            leaf(
                Some("n"),
                LeafKind::Range {
                    lower: Some("1".into()),
                    upper: None,
                    include_lower: true,
                    include_upper: false
                }
            )
        );
        assert_eq!(
            parse("at:[now-30d/d TO now]").unwrap(),
            leaf(
                Some("at"),
                LeafKind::Range {
                    lower: Some("now-30d/d".into()),
                    upper: Some("now".into()),
                    include_lower: true,
                    include_upper: true
                }
            )
        );
        assert_eq!(parse("a\\:b").unwrap(), term(None, "a:b"));
        assert_eq!(parse("user.\\*:x").unwrap(), term(Some("user.*"), "x"));
        assert_eq!(
            parse("a^2").unwrap(),
            Node::Boost(Box::new(term(None, "a")), 2.0)
        );
        assert_eq!(parse("").unwrap(), Node::Group(Group::default()));
    }

    #[test]
    fn nesting_is_bounded_without_the_servers_limits() {
        let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        let error = parse(&deep).unwrap_err();
        assert_eq!(error.reason, "parentheses nested too deeply");
    }

    #[test]
    fn syntax_errors_say_where() {
        // The end of the query is where a range bound went missing.
        assert_eq!(parse("n:[1 TO").unwrap_err().position, 7);
        let error = parse("a AND (b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot parse query \"a AND (b\": missing closing parenthesis at character 8"
        );
        for bad in [
            "a)", "(", "a AND", "\"open", "n:[1 TO", "n:[1 2]", "a^", "a^x", ":a", "a\\", "/ab",
            "a~x",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}
