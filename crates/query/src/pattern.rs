//! Patterns as regular expressions: Lucene wildcards and Lucene's regular
//! expression syntax translated into the common regex syntax that Rust's
//! `regex`/`tantivy-fst` and PostgreSQL's advanced regular expressions both
//! read.

/// `text` as a regex matching exactly it.
pub fn escape_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_literal(&mut out, c);
    }
    out
}

fn push_literal(out: &mut String, c: char) {
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// A Lucene wildcard (`*` any run, `?` one character, `\` escapes) as a
/// regex over whole terms.
pub fn wildcard_to_regex(pattern: &str) -> String {
    let mut out = String::from("(?s)");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' => {
                if let Some(escaped) = chars.next() {
                    push_literal(&mut out, escaped);
                }
            }
            c => push_literal(&mut out, c),
        }
    }
    out
}

/// A Lucene regular expression (Elasticsearch's `/…/`, all of its
/// operators enabled as `query_string` does) translated for a regex engine:
/// each part in Rust's regex syntax, with the two operators that syntax
/// lacks — intersection `&` and complement `~` — kept as nodes for an
/// automaton to build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Regex {
    /// Rust regex syntax (`.` matches any character, newlines included).
    Plain(String),
    Concat(Vec<Regex>),
    Union(Vec<Regex>),
    Repeat {
        sub: Box<Regex>,
        min: u32,
        max: Option<u32>,
    },
    /// Strings every part matches.
    Intersection(Vec<Regex>),
    /// Strings the part does not match.
    Complement(Box<Regex>),
}

impl Regex {
    /// The whole expression in Rust regex syntax, when it holds no
    /// intersection or complement.
    pub fn as_plain(&self) -> Option<String> {
        Some(match self {
            Regex::Plain(text) => text.clone(),
            Regex::Concat(parts) => parts
                .iter()
                .map(|p| p.as_plain().map(|p| format!("(?:{p})")))
                .collect::<Option<String>>()?,
            Regex::Union(parts) => parts
                .iter()
                .map(Regex::as_plain)
                .collect::<Option<Vec<_>>>()?
                .join("|"),
            Regex::Repeat { sub, min, max } => {
                let sub = sub.as_plain()?;
                match max {
                    Some(max) => format!("(?:{sub}){{{min},{max}}}"),
                    None => format!("(?:{sub}){{{min},}}"),
                }
            }
            Regex::Intersection(_) | Regex::Complement(_) => return None,
        })
    }

    fn concat(parts: Vec<Regex>) -> Regex {
        Regex::several(parts, Regex::Concat)
    }

    fn union(parts: Vec<Regex>) -> Regex {
        Regex::several(parts, Regex::Union)
    }

    fn repeat(sub: Regex, min: u32, max: Option<u32>) -> Regex {
        Regex::collapsed(Regex::Repeat {
            sub: Box::new(sub),
            min,
            max,
        })
    }

    /// One part as itself; several joined by `join`.
    fn several(mut parts: Vec<Regex>, join: fn(Vec<Regex>) -> Regex) -> Regex {
        match parts.len() {
            0 => Regex::Plain(String::new()),
            1 => parts.remove(0),
            _ => Regex::collapsed(join(parts)),
        }
    }

    /// A node without intersection or complement inside, as one plain
    /// regex (grouped, so it stays whole wherever it goes).
    fn collapsed(whole: Regex) -> Regex {
        match whole.as_plain() {
            Some(plain) => Regex::Plain(format!("(?:{plain})")),
            None => whole,
        }
    }
}

/// How deeply groups and complements may nest: deeper is refused before
/// any recursion could exhaust a thread's stack.
const MAX_NESTING: usize = 64;

/// The most repetitions `{n,m}` may ask for (Rust's regex engine refuses
/// larger counts; Lucene's automaton would be too large to build anyway).
const MAX_REPEAT: u32 = 1_000;

/// Parses Lucene's regular expression syntax with all of Elasticsearch's
/// `query_string` operators: `.` `?` `*` `+` `{n,m}` `|` `(…)` `[…]`
/// `[^…]` `"…"`, `@` (any string), `#` (nothing), `&` (intersection), `~`
/// (complement), `<n-m>` (a number in that range), and Lucene 9's classes
/// `\d` `\s` `\w` (`[0-9]`, `[ \t\n\r]`, `[a-zA-Z_0-9]`; negated in capitals).
/// `\` before any other letter is an error, before anything else makes it
/// literal; `^` and `$` are literals.
pub fn lucene_regex(pattern: &str) -> Result<Regex, String> {
    let mut parser = RegexTranslator {
        chars: pattern.chars().collect(),
        at: 0,
        depth: 0,
    };
    let regex = parser.union()?;
    if parser.at < parser.chars.len() {
        return Err(format!("unexpected `{}`", parser.chars[parser.at]));
    }
    Ok(regex)
}

/// [`lucene_regex`] as one Rust regex, for engines without intersection
/// and complement: a pattern using them is an error.
pub fn lucene_regex_to_rust(pattern: &str) -> Result<String, String> {
    let body = lucene_regex(pattern)?
        .as_plain()
        .ok_or("intersection `&` and complement `~` need an automaton")?;
    Ok(format!("(?s)(?:{body})"))
}

struct RegexTranslator {
    chars: Vec<char>,
    at: usize,
    /// Groups and complements open around the current position.
    depth: usize,
}

impl RegexTranslator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn union(&mut self) -> Result<Regex, String> {
        let mut parts = vec![self.intersection()?];
        while self.peek() == Some('|') {
            self.at += 1;
            parts.push(self.intersection()?);
        }
        Ok(Regex::union(parts))
    }

    fn intersection(&mut self) -> Result<Regex, String> {
        let mut parts = vec![self.concat()?];
        while self.peek() == Some('&') {
            self.at += 1;
            parts.push(self.concat()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Regex::Intersection(parts)
        })
    }

    fn concat(&mut self) -> Result<Regex, String> {
        let mut parts = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' || c == '&' {
                break;
            }
            parts.push(self.repeat()?);
        }
        Ok(Regex::concat(parts))
    }

    fn repeat(&mut self) -> Result<Regex, String> {
        let mut out = self.complement()?;
        while let Some(c) = self.peek() {
            let (min, max) = match c {
                '?' => (0, Some(1)),
                '*' => (0, None),
                '+' => (1, None),
                '{' => {
                    let close = self.chars[self.at..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or("unclosed `{`")?;
                    let inside: String = self.chars[self.at + 1..self.at + close].iter().collect();
                    let number = |text: &str| -> Result<u32, String> {
                        text.parse::<u32>()
                            .ok()
                            .filter(|n| *n <= MAX_REPEAT)
                            .ok_or_else(|| format!("invalid repetition `{{{inside}}}`"))
                    };
                    let (min, max) = match inside.split_once(',') {
                        None => (number(&inside)?, Some(number(&inside)?)),
                        Some((min, "")) => (number(min)?, None),
                        Some((min, max)) => (number(min)?, Some(number(max)?)),
                    };
                    if max.is_some_and(|max| max < min) {
                        return Err(format!("invalid repetition `{{{inside}}}`"));
                    }
                    self.at += close;
                    (min, max)
                }
                _ => break,
            };
            self.at += 1;
            out = Regex::repeat(out, min, max);
        }
        Ok(out)
    }

    fn complement(&mut self) -> Result<Regex, String> {
        if self.peek() == Some('~') {
            self.at += 1;
            self.enter()?;
            let inner = self.complement();
            self.depth -= 1;
            return Ok(Regex::Complement(Box::new(inner?)));
        }
        self.simple()
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} deep"));
        }
        Ok(())
    }

    fn simple(&mut self) -> Result<Regex, String> {
        let c = self.peek().ok_or("unexpected end")?;
        self.at += 1;
        Ok(Regex::Plain(match c {
            '<' => self.interval()?,
            '.' => ".".into(),
            '@' => ".*".into(),
            '#' => "[^\\s\\S]".into(),
            '"' => {
                let close = self.chars[self.at..]
                    .iter()
                    .position(|&c| c == '"')
                    .ok_or("unclosed `\"`")?;
                let literal: String = self.chars[self.at..self.at + close].iter().collect();
                self.at += close + 1;
                format!("(?:{})", escape_literal(&literal))
            }
            '(' => {
                if self.peek() == Some(')') {
                    self.at += 1;
                    return Ok(Regex::Plain("(?:)".into()));
                }
                self.enter()?;
                let inner = self.union();
                self.depth -= 1;
                let inner = inner?;
                if self.peek() != Some(')') {
                    return Err("unclosed `(`".into());
                }
                self.at += 1;
                match inner.as_plain() {
                    Some(plain) => format!("(?:{plain})"),
                    None => return Ok(inner),
                }
            }
            '[' => self.class()?,
            '\\' => {
                let escaped = self.peek().ok_or("`\\` at the end")?;
                self.at += 1;
                match shorthand_class(escaped) {
                    Some(class) => class,
                    None if escaped.is_alphabetic() => {
                        return Err(format!("`\\{escaped}` is not a character class"))
                    }
                    None => escape_literal(&escaped.to_string()),
                }
            }
            '?' | '*' | '+' | '{' | ')' | '|' | '&' => return Err(format!("unexpected `{c}`")),
            c => escape_literal(&c.to_string()),
        }))
    }

    /// `<n-m>`: a decimal number from n to m. When n and m are written with
    /// as many digits, numbers are written with exactly that many (leading
    /// zeros); otherwise with any number of leading zeros.
    fn interval(&mut self) -> Result<String, String> {
        let close = self.chars[self.at..]
            .iter()
            .position(|&c| c == '>')
            .ok_or("unclosed `<`")?;
        let inside: String = self.chars[self.at..self.at + close].iter().collect();
        self.at += close + 1;
        let invalid = || format!("invalid interval `<{inside}>`");
        let (low, high) = inside.split_once('-').ok_or_else(invalid)?;
        let digits = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
        if !digits(low) || !digits(high) {
            return Err(invalid());
        }
        // Lucene reads both ends as Java `int`s.
        let (mut min, mut max) = match (low.parse::<i32>(), high.parse::<i32>()) {
            (Ok(min), Ok(max)) => (min as u64, max as u64),
            _ => return Err(invalid()),
        };
        if min > max {
            std::mem::swap(&mut min, &mut max);
        }
        if low.len() == high.len() {
            return Ok(format!("(?:{})", fixed_width_range(min, max, low.len())));
        }
        let mut lengths = Vec::new();
        for width in decimal_width(min)..=decimal_width(max) {
            let first = if width == 1 {
                0
            } else {
                10u64.pow(width as u32 - 1)
            };
            let last = 10u64.pow(width as u32) - 1;
            lengths.push(fixed_width_range(min.max(first), max.min(last), width));
        }
        Ok(format!("(?:0*(?:{}))", lengths.join("|")))
    }

    fn class(&mut self) -> Result<String, String> {
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            self.at += 1;
            out.push('^');
        }
        let mut items = 0;
        loop {
            let c = self.peek().ok_or("unclosed `[`")?;
            self.at += 1;
            if c == ']' {
                if items == 0 {
                    return Err("empty character class".into());
                }
                break;
            }
            let first = if c == '\\' {
                let e = self.peek().ok_or("`\\` at the end")?;
                self.at += 1;
                if let Some(ranges) = shorthand_ranges(e) {
                    out.push_str(ranges);
                    items += 1;
                    continue;
                }
                if e.is_alphabetic() {
                    // `\D` `\S` `\W` inside brackets: not supported here.
                    return Err(format!("`\\{e}` in a character class"));
                }
                e
            } else {
                c
            };
            push_class_char(&mut out, first);
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|&c| c != ']') {
                self.at += 1;
                let mut last = self.peek().ok_or("unclosed `[`")?;
                self.at += 1;
                if last == '\\' {
                    last = self.peek().ok_or("`\\` at the end")?;
                    self.at += 1;
                }
                if last < first {
                    return Err(format!("invalid range `{first}-{last}`"));
                }
                out.push('-');
                push_class_char(&mut out, last);
            }
            items += 1;
        }
        out.push(']');
        Ok(out)
    }
}

/// Lucene 9's `\d` `\s` `\w` as ranges inside brackets.
fn shorthand_ranges(letter: char) -> Option<&'static str> {
    match letter {
        'd' => Some("0-9"),
        's' => Some(" \\t\\n\\r"),
        'w' => Some("a-zA-Z_0-9"),
        _ => None,
    }
}

/// Lucene 9's shorthand classes, and their negations in capitals.
fn shorthand_class(letter: char) -> Option<String> {
    let ranges = shorthand_ranges(letter.to_ascii_lowercase())?;
    if letter.is_ascii_lowercase() {
        Some(format!("[{ranges}]"))
    } else {
        Some(format!("[^{ranges}]"))
    }
}

fn decimal_width(n: u64) -> usize {
    n.to_string().len()
}

/// Numbers from `min` to `max` written with exactly `width` digits.
fn fixed_width_range(min: u64, max: u64, width: usize) -> String {
    let low: Vec<u8> = format!("{min:0width$}").bytes().collect();
    let high: Vec<u8> = format!("{max:0width$}").bytes().collect();
    digits_between(&low, &high)
}

/// Strings of digits as long as `low` and `high` between them, inclusive.
fn digits_between(low: &[u8], high: &[u8]) -> String {
    let Some((&l, low_rest)) = low.split_first() else {
        return String::new();
    };
    let (&h, high_rest) = high.split_first().unwrap_or((&b'9', &[]));
    let rest = low_rest.len();
    if l == h {
        return format!("{}{}", l as char, digits_between(low_rest, high_rest));
    }
    let all_low = low_rest.iter().all(|&d| d == b'0');
    let all_high = high_rest.iter().all(|&d| d == b'9');
    let any = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!("[0-9]{{{n}}}")
        }
    };
    let mut parts = Vec::new();
    // From `low` to the end of its first digit's block.
    let first_full = if all_low { l } else { l + 1 };
    if !all_low {
        let nines = vec![b'9'; rest];
        parts.push(format!(
            "{}(?:{})",
            l as char,
            digits_between(low_rest, &nines)
        ));
    }
    let last_full = if all_high { h } else { h - 1 };
    if first_full <= last_full {
        parts.push(format!(
            "[{}-{}]{}",
            first_full as char,
            last_full as char,
            any(rest)
        ));
    }
    if !all_high {
        let zeros = vec![b'0'; rest];
        parts.push(format!(
            "{}(?:{})",
            h as char,
            digits_between(&zeros, high_rest)
        ));
    }
    format!("(?:{})", parts.join("|"))
}

fn push_class_char(out: &mut String, c: char) {
    if "\\[]^-&~".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_anchored_regexes() {
        assert_eq!(wildcard_to_regex("wild*"), "(?s)wild.*");
        assert_eq!(wildcard_to_regex("a?c.d"), "(?s)a.c\\.d");
        assert_eq!(wildcard_to_regex("a\\*b"), "(?s)a\\*b");
    }

    #[test]
    fn intervals_match_the_numbers_between() {
        let matches = |pattern: &str, text: &str| {
            let rust = lucene_regex_to_rust(pattern).unwrap();
            regex_lite_match(&rust, text)
        };
        for n in 0..=130u32 {
            let text = n.to_string();
            assert_eq!(matches("<1-100>", &text), (1..=100).contains(&n), "{text}");
            assert_eq!(matches("<40-45>", &text), (40..=45).contains(&n), "{text}");
            assert_eq!(matches("<7-123>", &text), (7..=123).contains(&n), "{text}");
        }
        assert!(matches("<1-100>", "007"));
        assert!(matches("<007-099>", "007"));
        assert!(!matches("<007-099>", "7"));
        assert!(matches("<5-1>", "3"));
    }

    fn regex_lite_match(pattern: &str, text: &str) -> bool {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .unwrap()
            .is_match(text)
    }

    #[test]
    fn lucene_regexes_translate() {
        let whole = |pattern: &str, text: &str| {
            let rust = lucene_regex_to_rust(pattern).unwrap();
            regex_lite_match(&rust, text)
        };
        assert!(whole("b.t+", "bitt") && !whole("b.t+", "bi"));
        assert!(whole("a|bc", "bc") && !whole("a|bc", "abc"));
        assert!(whole("[a-c^]x{2,3}", "^xx") && !whole("[a-c^]x{2,3}", "dxx"));
        assert!(whole("\\.$", ".$") && !whole("\\.$", "a$"));
        assert!(whole("\\d\\W", "4-") && !whole("\\d\\W", "4a"));
        assert!(whole("\\w+\\s\\S", "a_1 x") && !whole("\\w+", "é"));
        assert!(whole("[\\d\\s]+", "1 2") && !whole("[\\d]", "x"));
        assert!(whole("\"a.b\"@", "a.bcd") && !whole("\"a.b\"@", "axb"));
        assert!(lucene_regex_to_rust("\\q").is_err());
        assert!(lucene_regex_to_rust("[\\D]").is_err());
        assert!(lucene_regex_to_rust("a&b").is_err());
        assert!(lucene_regex_to_rust("~a").is_err());
        assert!(matches!(
            lucene_regex("a.*&.*b").unwrap(),
            Regex::Intersection(_)
        ));
        assert!(matches!(
            lucene_regex("x~(a)*").unwrap(),
            Regex::Concat(parts) if matches!(&parts[1], Regex::Repeat { .. })
        ));
        assert!(lucene_regex_to_rust("(a").is_err());
        assert!(lucene_regex_to_rust("*a").is_err());
        // Nesting is bounded before it can exhaust a stack.
        assert!(lucene_regex(&("~".repeat(2000) + "a")).is_err());
        assert!(lucene_regex(&format!("{}a{}", "(".repeat(1000), ")".repeat(1000))).is_err());
        assert!(lucene_regex(&format!("{}a{}", "(".repeat(60), ")".repeat(60))).is_ok());
    }
}
