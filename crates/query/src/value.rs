//! Values as queries read them: numbers (whole or decimal, and the
//! inclusive bounds of ranges on whole numbers), and the normalisation
//! multi-term queries apply.

use crate::{analysis, FieldType, MappedField};

/// Multi-term queries (prefix, wildcard, regex, fuzzy, range bounds) use
/// the field's normalizer: lowercase on text fields and `lowercase` keywords.
pub fn normalize(mapped: &MappedField, text: &str) -> String {
    match mapped.field_type {
        FieldType::Text
        | FieldType::Keyword {
            lowercase: true, ..
        } => analysis::lowercase(text),
        _ => text.to_owned(),
    }
}

/// A number as a query wrote it.
pub enum Number {
    Long(i64),
    Double(f64),
}

impl Number {
    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Long(n) => *n as f64,
            Number::Double(f) => *f,
        }
    }
}

pub fn parse_number(text: &str) -> Option<Number> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(Number::Long(n));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::Double)
}

/// A bound of a range on a whole-number field, inclusive, as Elasticsearch
/// computes it: decimals round inward, exclusive bounds step by one.
/// `None` if it is not a number (the range matches nothing).
pub fn long_bound(value: Option<&str>, lower: bool, inclusive: bool) -> Option<i64> {
    let Some(value) = value else {
        return Some(if lower { i64::MIN } else { i64::MAX });
    };
    match parse_number(value)? {
        Number::Long(n) => Some(match (lower, inclusive) {
            (_, true) => n,
            (true, false) => n.checked_add(1)?,
            (false, false) => n.checked_sub(1)?,
        }),
        Number::Double(f) => {
            let whole = if f.fract() == 0.0 {
                let n = f;
                match (lower, inclusive) {
                    (_, true) => n,
                    (true, false) => n + 1.0,
                    (false, false) => n - 1.0,
                }
            } else if lower {
                f.ceil()
            } else {
                f.floor()
            };
            (whole.abs() < 9.2e18).then_some(whole as i64)
        }
    }
}
