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

/// Translates Lucene's regular expression syntax (Elasticsearch's `/…/`)
/// into the syntax of Rust's regex engine. Lucene's `.` `?` `*` `+`
/// `{n,m}` `|` `(…)` `[…]` `[^…]` `"…"` `@` (any string) and `#` (nothing)
/// are supported; `\` makes any character literal (`\d` is `d`); `^` and
/// `$` are literals. Intersection `&`, complement `~` and intervals `<n-m>`
/// have no equivalent: such a pattern is an error.
pub fn lucene_regex_to_rust(pattern: &str) -> Result<String, String> {
    let mut parser = RegexTranslator {
        chars: pattern.chars().collect(),
        at: 0,
    };
    let body = parser.union()?;
    if parser.at < parser.chars.len() {
        return Err(format!("unexpected `{}`", parser.chars[parser.at]));
    }
    Ok(format!("(?s)(?:{body})"))
}

struct RegexTranslator {
    chars: Vec<char>,
    at: usize,
}

impl RegexTranslator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn union(&mut self) -> Result<String, String> {
        let mut out = self.concat()?;
        while self.peek() == Some('|') {
            self.at += 1;
            out.push('|');
            out.push_str(&self.concat()?);
        }
        Ok(out)
    }

    fn concat(&mut self) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            if c == '&' {
                return Err("intersection `&` is not supported".into());
            }
            out.push_str(&self.repeat()?);
        }
        Ok(out)
    }

    fn repeat(&mut self) -> Result<String, String> {
        let mut out = self.simple()?;
        while let Some(c) = self.peek() {
            let op = match c {
                '?' | '*' | '+' => {
                    self.at += 1;
                    c.to_string()
                }
                '{' => {
                    let close = self.chars[self.at..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or("unclosed `{`")?;
                    let inside: String = self.chars[self.at + 1..self.at + close].iter().collect();
                    let valid = !inside.is_empty()
                        && inside.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && inside.chars().all(|c| c.is_ascii_digit() || c == ',')
                        && inside.matches(',').count() <= 1;
                    if !valid {
                        return Err(format!("invalid repetition `{{{inside}}}`"));
                    }
                    self.at += close + 1;
                    format!("{{{inside}}}")
                }
                _ => break,
            };
            out = format!("(?:{out}){op}");
        }
        Ok(out)
    }

    fn simple(&mut self) -> Result<String, String> {
        let c = self.peek().ok_or("unexpected end")?;
        self.at += 1;
        Ok(match c {
            '~' => return Err("complement `~` is not supported".into()),
            '<' => return Err("intervals `<n-m>` are not supported".into()),
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
                    return Ok("(?:)".into());
                }
                let inner = self.union()?;
                if self.peek() != Some(')') {
                    return Err("unclosed `(`".into());
                }
                self.at += 1;
                format!("(?:{inner})")
            }
            '[' => self.class()?,
            '\\' => {
                let escaped = self.peek().ok_or("`\\` at the end")?;
                self.at += 1;
                escape_literal(&escaped.to_string())
            }
            '?' | '*' | '+' | '{' | ')' | '|' => return Err(format!("unexpected `{c}`")),
            c => escape_literal(&c.to_string()),
        })
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
    fn lucene_regexes_translate() {
        assert_eq!(lucene_regex_to_rust("b.t+").unwrap(), "(?s)(?:b.(?:t)+)");
        assert_eq!(lucene_regex_to_rust("a|bc").unwrap(), "(?s)(?:a|bc)");
        assert_eq!(
            lucene_regex_to_rust("[a-c^]x{2,3}").unwrap(),
            "(?s)(?:[a-c\\^](?:x){2,3})"
        );
        assert_eq!(lucene_regex_to_rust("\\d$").unwrap(), "(?s)(?:d\\$)");
        assert_eq!(
            lucene_regex_to_rust("\"a.b\"@").unwrap(),
            "(?s)(?:(?:a\\.b).*)"
        );
        assert!(lucene_regex_to_rust("a&b").is_err());
        assert!(lucene_regex_to_rust("~a").is_err());
        assert!(lucene_regex_to_rust("<1-5>").is_err());
        assert!(lucene_regex_to_rust("(a").is_err());
        assert!(lucene_regex_to_rust("*a").is_err());
    }
}
