//! Text analysis as Elasticsearch's `standard` analyzer does it: Lucene's
//! `StandardTokenizer` (words split at Unicode word boundaries, UAX #29;
//! runs of Thai, Lao, Khmer and Myanmar letters kept whole; emoji as
//! tokens), then Lucene's `LowerCaseFilter`, no stop words; and the
//! `lowercase` normalizer of keyword fields.

use unicode_linebreak::{break_property, BreakClass};
use unicode_properties::emoji::UnicodeEmoji;
use unicode_segmentation::UnicodeSegmentation;

/// Tokens longer than this are split, as Lucene's `StandardTokenizer` does
/// (its default `max_token_length`).
const MAX_TOKEN_CHARS: usize = 255;

/// The tokens of a text, in order; a token's position is its index.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Scripts written without spaces (line-break class SA) have no word
    // boundaries of their own in UAX #29: Lucene keeps each run whole.
    let mut run = String::new();
    for segment in text.split_word_bounds() {
        if is_complex_context(segment) {
            run.push_str(segment);
            continue;
        }
        push_token(&mut out, &mut run);
        if segment.chars().any(char::is_alphanumeric) || is_emoji(segment) {
            push_token(&mut out, &mut segment.to_owned());
        }
    }
    push_token(&mut out, &mut run);
    out
}

fn push_token(out: &mut Vec<String>, token: &mut String) {
    if token.is_empty() {
        return;
    }
    let lower = lowercase(token);
    token.clear();
    if lower.chars().count() <= MAX_TOKEN_CHARS {
        out.push(lower);
    } else {
        let chars: Vec<char> = lower.chars().collect();
        out.extend(chars.chunks(MAX_TOKEN_CHARS).map(|c| c.iter().collect()));
    }
}

/// A letter of Thai, Lao, Khmer, Myanmar… (with its marks).
fn is_complex_context(segment: &str) -> bool {
    segment
        .chars()
        .next()
        .is_some_and(|c| break_property(c as u32) == BreakClass::ComplexContext)
}

/// An emoji, with its modifiers, selectors and joined parts, as Lucene
/// emits it: any emoji character, but a digit, `#` or `*` only as a keycap
/// (`1️⃣`).
fn is_emoji(segment: &str) -> bool {
    segment.chars().any(|c| {
        c.is_emoji_char() && (!matches!(c, '0'..='9' | '#' | '*') || segment.contains('\u{20E3}'))
    })
}

/// Lowercasing as Lucene's `LowerCaseFilter` does it: code point by code
/// point, each to its simple lowercase mapping (`Σ` is always `σ`, `İ` is
/// `i`). What a multi-term query (prefix, wildcard, regex, fuzzy, range
/// bound) on a text field or a keyword with the `lowercase` normalizer is
/// normalised with: the whole text lowercased, not split.
pub fn lowercase(text: &str) -> String {
    text.chars().map(lower_char).collect()
}

fn lower_char(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => single,
        // Only `İ` has a longer full mapping (`i` and a combining dot);
        // its simple mapping is `i`.
        (Some(first), Some(_)) => first,
        (None, _) => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_tokens() {
        assert_eq!(
            tokens("Great turnout at the meetup on #OpenData @irish164!"),
            ["great", "turnout", "at", "the", "meetup", "on", "opendata", "irish164"]
        );
        assert_eq!(
            tokens("vera.meijer@tyrell.example"),
            ["vera.meijer", "tyrell.example"]
        );
        assert_eq!(
            tokens("don't stop 3.14 foo_bar"),
            ["don't", "stop", "3.14", "foo_bar"]
        );
        assert!(tokens("!!! ...").is_empty());
    }

    #[test]
    fn tokens_as_lucene_makes_them() {
        // Emoji are tokens; `#` alone is not, as a keycap it is.
        assert_eq!(
            tokens("launch 🚀🚀 rocket🚀science 👍🏽 🇳🇱 #1 #️⃣ a©b"),
            [
                "launch", "🚀", "🚀", "rocket", "🚀", "science", "👍🏽", "🇳🇱", "1", "#️⃣", "a", "©",
                "b"
            ]
        );
        // Thai runs whole; Han and Hiragana one by one, Katakana runs.
        assert_eq!(
            tokens("สวัสดีครับ abcไทย123 東京で カタカナ"),
            ["สวัสดีครับ", "abc", "ไทย", "123", "東", "京", "で", "カタカナ"]
        );
        // Per code point: no final sigma, `İ` is `i`.
        assert_eq!(tokens("ΟΔΥΣΣΕΑΣ İstanbul"), ["οδυσσεασ", "istanbul"]);
    }
}
