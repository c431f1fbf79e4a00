//! How a link compares values: lowercased, then rewritten by regular
//! expressions, each bounded (patterns, their number, what they make).

use regex::{Regex, RegexBuilder};

use crate::datasources::Subsequence;
use crate::protocol::LinkRewrite;

/// Most rewrites one link may have, and the longest pattern or replacement.
pub const MAX_REWRITES: usize = 8;
pub const MAX_PATTERN: usize = 512;

/// The longest value a link's rewrites may make (bytes): a rewrite that
/// would grow a value past it stops there, so `{"regex": ".", "with":
/// "$0$0…"}` costs at most this much per value, not its length times the
/// replacement's, once per rewrite.
pub const MAX_REWRITTEN: usize = 4096;

/// How a link compares values: lowercased (`lowercase`), then rewritten by
/// its `replace` regular expressions in order.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    pub(super) lowercase: bool,
    rewrites: Vec<(Regex, String)>,
}

impl Normalizer {
    /// Compiles the rewrites: each pattern at most [`MAX_PATTERN`]
    /// characters and small once compiled (the `regex` crate runs in
    /// linear time, so no input makes one slow).
    pub fn new(lowercase: bool, replace: &[LinkRewrite]) -> Result<Normalizer, String> {
        if replace.len() > MAX_REWRITES {
            return Err(format!("at most {MAX_REWRITES} rewrites"));
        }
        let mut rewrites = Vec::with_capacity(replace.len());
        for rewrite in replace {
            if rewrite.regex.is_empty() || rewrite.regex.chars().count() > MAX_PATTERN {
                return Err(format!(
                    "a regex must have 1 to {MAX_PATTERN} characters; {:?} has {}",
                    rewrite.regex,
                    rewrite.regex.chars().count()
                ));
            }
            if rewrite.with.chars().count() > MAX_PATTERN {
                return Err(format!(
                    "a `with` may have at most {MAX_PATTERN} characters; {} given",
                    rewrite.with.chars().count()
                ));
            }
            let regex = RegexBuilder::new(&rewrite.regex)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .build()
                .map_err(|e| format!("{:?} is not a regular expression: {e}", rewrite.regex))?;
            rewrites.push((regex, rewrite.with.clone()));
        }
        Ok(Normalizer {
            lowercase,
            rewrites,
        })
    }

    /// Whether values are rewritten (not only lowercased).
    pub fn rewrites(&self) -> bool {
        !self.rewrites.is_empty()
    }

    /// Both normalisations, this one's first (a value carried by two links).
    pub(super) fn and(mut self, other: &Normalizer) -> Normalizer {
        self.lowercase |= other.lowercase;
        self.rewrites.extend(other.rewrites.iter().cloned());
        self
    }

    /// The value as the link compares it.
    pub fn apply(&self, value: &str) -> String {
        let mut out = if self.lowercase {
            value.to_lowercase()
        } else {
            value.to_owned()
        };
        for (regex, with) in &self.rewrites {
            out = rewrite_bounded(regex, with, &out, MAX_REWRITTEN);
        }
        out
    }

    /// The characters every value normalised to `key` holds in order: the
    /// key's own, but for those a rewrite may have put there (any character
    /// of a `with`; with a `$` group, none is sure) and, when lowercased,
    /// those other letters lowercase into (non-ASCII, `i` from `İ`, `k`
    /// from the Kelvin sign).
    pub fn hint(&self, key: &str) -> Subsequence {
        if self.rewrites.iter().any(|(_, with)| with.contains('$')) {
            return Subsequence::default();
        }
        let chars = key
            .chars()
            .filter(|c| !self.rewrites.iter().any(|(_, with)| with.contains(*c)))
            .filter(|c| !self.lowercase || (c.is_ascii() && !matches!(c, 'i' | 'k')))
            .collect();
        Subsequence {
            chars,
            ignore_case: self.lowercase,
        }
    }
}

/// `regex.replace_all(value, with)`, stopped once the result holds
/// `limit` bytes (cut at a character boundary): the work and the memory of
/// one rewrite are bounded by the limit, whatever `with` repeats.
pub(crate) fn rewrite_bounded(regex: &Regex, with: &str, value: &str, limit: usize) -> String {
    let mut out = String::with_capacity(value.len().min(limit));
    let mut last = 0;
    for captures in regex.captures_iter(value) {
        let Some(whole) = captures.get(0) else {
            continue;
        };
        out.push_str(&value[last..whole.start()]);
        captures.expand(with, &mut out);
        last = whole.end();
        if out.len() >= limit {
            return cut(out, limit);
        }
    }
    out.push_str(&value[last..]);
    cut(out, limit)
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn cut(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
