//! Text analysis as Elasticsearch's `standard` analyzer does it: words split
//! at Unicode word boundaries (UAX #29), lowercased, no stop words; and the
//! `lowercase` normalizer of keyword fields.

use unicode_segmentation::UnicodeSegmentation;

/// Tokens longer than this are split, as Lucene's `StandardTokenizer` does
/// (its default `max_token_length`).
const MAX_TOKEN_CHARS: usize = 255;

/// The tokens of a text, in order; a token's position is its index.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.unicode_words() {
        let lower = word.to_lowercase();
        if lower.chars().count() <= MAX_TOKEN_CHARS {
            out.push(lower);
        } else {
            let chars: Vec<char> = lower.chars().collect();
            out.extend(chars.chunks(MAX_TOKEN_CHARS).map(|c| c.iter().collect()));
        }
    }
    out
}

/// What a multi-term query (prefix, wildcard, regex, fuzzy, range bound) is
/// normalised with on a text field or a keyword with the `lowercase`
/// normalizer: the whole text lowercased, not split.
pub fn lowercase(text: &str) -> String {
    text.to_lowercase()
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
}
