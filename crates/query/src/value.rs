//! Values as queries read them: numbers as Elasticsearch's
//! `NumberFieldMapper` reads them (whole or decimal, the inclusive bounds
//! of ranges on whole numbers, the precision of `float`), and the
//! normalisation multi-term queries apply.

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

/// The whole numbers a field of this declared type holds (`integer`,
/// `short` and `byte` are narrower than `long`).
pub fn whole_range(mapped: &MappedField) -> (i64, i64) {
    match mapped.declared.as_str() {
        "integer" => (i32::MIN.into(), i32::MAX.into()),
        "short" => (i16::MIN.into(), i16::MAX.into()),
        "byte" => (i8::MIN.into(), i8::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Does this decimal field keep single precision (`float`)?
pub fn is_single_precision(mapped: &MappedField) -> bool {
    mapped.declared == "float"
}

/// A number as Java's `Double.parseDouble` reads it, which is how
/// Elasticsearch reads a query's value for a number field: spaces and
/// control characters around it ignored, an `f`/`d` suffix allowed.
/// Only finite values (Elasticsearch refuses others).
pub fn java_double(text: &str) -> Option<f64> {
    let text = text.trim_matches(|c: char| c <= ' ');
    let text = match text.strip_suffix(['f', 'F', 'd', 'D']) {
        Some(rest) if rest.ends_with(|c: char| c.is_ascii_digit() || c == '.') => rest,
        _ => text,
    };
    let plain = text
        .trim_start_matches(['+', '-'])
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !plain {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A query's value for a decimal field, at the field's precision.
pub fn decimal_value(mapped: &MappedField, text: &str) -> Option<f64> {
    let value = java_double(text)?;
    if is_single_precision(mapped) {
        // `Float.parseFloat`: rounded once, from the text.
        let text = text.trim_matches(|c: char| c <= ' ');
        let text = text.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(text);
        let single = text.parse::<f32>().ok().filter(|f| f.is_finite())?;
        return Some(f64::from(single));
    }
    Some(value)
}

/// A record's decimal as the field indexes it.
pub fn indexed_decimal(mapped: &MappedField, value: f64) -> f64 {
    if is_single_precision(mapped) {
        f64::from(value as f32)
    } else {
        value
    }
}

/// A query's value for a whole-number field, as Elasticsearch's
/// `NumberFieldMapper` reads a term: a decimal, a value out of the type's
/// range, or text neither `Long.parseLong` nor `BigDecimal` reads
/// (`" 74"`) matches nothing (`None`); `1e2` is 100.
pub fn whole_term(text: &str, range: (i64, i64)) -> Option<i64> {
    if java_double(text)?.fract() != 0.0 {
        return None;
    }
    to_whole(text, range)
}

/// `objectToLong`, coercing: the value truncated toward zero.
fn to_whole(text: &str, (min, max): (i64, i64)) -> Option<i64> {
    let double = java_double(text)?;
    if double < min as f64 || double > max as f64 {
        return None;
    }
    let value = match text.parse::<i64>() {
        Ok(n) => n,
        Err(_) => big_decimal_truncated(text)?,
    };
    (min..=max).contains(&value).then_some(value)
}

/// `new BigDecimal(text).toBigInteger()`: an optional sign, digits with
/// an optional point, an optional exponent; nothing around it.
fn big_decimal_truncated(text: &str) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    // The value is digits × 10^shift.
    let shift = i64::from(exponent) - fraction.len() as i64;
    let kept = if shift >= 0 {
        if digits.len() as i64 + shift > 20 {
            return None;
        }
        format!("{digits}{}", "0".repeat(shift as usize))
    } else {
        let drop = (-shift) as usize;
        if drop >= digits.len() {
            String::from("0")
        } else {
            digits[..digits.len() - drop].to_owned()
        }
    };
    let magnitude: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// A bound of a range on a whole-number field, inclusive, as
/// Elasticsearch's `NumberFieldMapper` computes it: the value truncated,
/// then a decimal bound moved inward and an exclusive whole bound by one.
/// `None` when the range matches nothing (not a number, out of range).
pub fn whole_bound(
    value: Option<&str>,
    lower: bool,
    inclusive: bool,
    range: (i64, i64),
) -> Option<i64> {
    let (min, max) = range;
    let Some(value) = value else {
        return Some(if lower { min } else { max });
    };
    let truncated = to_whole(value, range)?;
    let double = java_double(value)?;
    let decimal = double.fract() != 0.0;
    if lower {
        if (!decimal && !inclusive) || (decimal && double > 0.0) {
            return (truncated < max).then(|| truncated + 1);
        }
    } else if (!decimal && !inclusive) || (decimal && double < 0.0) {
        return (truncated > min).then(|| truncated - 1);
    }
    Some(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: (i64, i64) = (i64::MIN, i64::MAX);
    const INT: (i64, i64) = (i32::MIN as i64, i32::MAX as i64);

    #[test]
    fn whole_numbers_read_as_elasticsearch_reads_them() {
        assert_eq!(whole_term("74", LONG), Some(74));
        assert_eq!(whole_term("+74", LONG), Some(74));
        assert_eq!(whole_term(" 74", LONG), None);
        assert_eq!(whole_term("74.0", LONG), Some(74));
        assert_eq!(whole_term("74.5", LONG), None);
        assert_eq!(whole_term("1e2", LONG), Some(100));
        assert_eq!(whole_term("1.5e1", LONG), Some(15));
        assert_eq!(whole_term("2147483648", INT), None);
        assert_eq!(whole_term("-2147483648", INT), Some(i32::MIN as i64));
        assert_eq!(whole_term("99999999999999999999", LONG), None);
        assert_eq!(whole_term("abc", LONG), None);
        assert_eq!(whole_bound(Some("70.5"), true, true, LONG), Some(71));
        assert_eq!(whole_bound(Some("-5.5"), true, true, LONG), Some(-5));
        assert_eq!(whole_bound(Some("-1.5"), false, true, LONG), Some(-2));
        assert_eq!(whole_bound(Some("74"), true, false, LONG), Some(75));
        assert_eq!(whole_bound(Some("2147483648"), false, true, INT), None);
        assert_eq!(whole_bound(None, false, true, INT), Some(i32::MAX as i64));
    }

    #[test]
    fn decimals_read_as_java_reads_them() {
        assert_eq!(java_double(" 1.5"), Some(1.5));
        assert_eq!(java_double("1.5d"), Some(1.5));
        assert_eq!(java_double("Infinity"), None);
        assert_eq!(java_double("NaN"), None);
        assert_eq!(java_double("inf"), None);
        assert_eq!(java_double("1e400"), None);
    }
}
