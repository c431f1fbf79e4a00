//! Dates as Elasticsearch reads them in queries: the default date format
//! `strict_date_optional_time||epoch_millis`, and date math (`now-7d/d`,
//! `2024-01-01||+1M`), with its rounding rules.
//!
//! Every value is a point in time in UTC milliseconds. A partial date is a
//! span (`2024-01` is all of January); `round_up` picks its last millisecond
//! instead of its first. Elasticsearch rounds up for `lte` and `gt` bounds
//! and down for `gte` and `lt`, which [`range`] applies.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why a value is not a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateError(pub String);

/// The inclusive millisecond range a date query covers, for a range with
/// these bounds (`None` is open), as Elasticsearch's date field computes it.
/// `None` if the range is empty.
pub fn range(
    lower: Option<&str>,
    upper: Option<&str>,
    include_lower: bool,
    include_upper: bool,
    now_ms: i64,
) -> Result<Option<(i64, i64)>, DateError> {
    let low = match lower {
        None => i64::MIN,
        Some(text) => {
            let millis = parse(text, !include_lower, now_ms)?;
            if include_lower {
                millis
            } else {
                millis.saturating_add(1)
            }
        }
    };
    let high = match upper {
        None => i64::MAX,
        Some(text) => {
            let millis = parse(text, include_upper, now_ms)?;
            if include_upper {
                millis
            } else {
                millis.saturating_sub(1)
            }
        }
    };
    Ok((low <= high).then_some((low, high)))
}

/// A date or date-math expression, in UTC milliseconds.
pub fn parse(text: &str, round_up: bool, now_ms: i64) -> Result<i64, DateError> {
    let (anchor, math) = if let Some(math) = text.strip_prefix("now") {
        (now_ms, math)
    } else if let Some((date, math)) = text.split_once("||") {
        (parse_date(date, false)?, math)
    } else {
        return parse_date(text, round_up);
    };
    apply_math(anchor, math, round_up, text)
}

/// A date in `strict_date_optional_time` (`yyyy[-MM[-dd[THH[:mm[:ss[.S…]]]][zone]]]`)
/// or, failing that, `epoch_millis`.
pub fn parse_date(text: &str, round_up: bool) -> Result<i64, DateError> {
    if let Some(millis) = parse_optional_time(text, round_up) {
        return Ok(millis);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(millis) = text.parse::<i64>() {
            return Ok(millis);
        }
    }
    Err(DateError(format!(
        "`{text}` is not a date (2024-01-31, 2024-01, 2024-01-31T12:00:00Z, epoch milliseconds, or date math such as now-7d/d)"
    )))
}

/// Reads fixed-width digits at `*at`.
fn digits(bytes: &[u8], at: &mut usize, width: usize) -> Option<u32> {
    let slice = bytes.get(*at..*at + width)?;
    if !slice.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *at += width;
    Some(slice.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

pub(crate) fn parse_optional_time(text: &str, round_up: bool) -> Option<i64> {
    let b = text.as_bytes();
    let mut at = 0;
    let year = digits(b, &mut at, 4)? as i32;
    let mut month = None;
    let mut day = None;
    let mut hour = None;
    let mut minute = None;
    let mut second = None;
    let mut nanos = None;
    let mut offset = UtcOffset::UTC;
    if b.get(at) == Some(&b'-') {
        at += 1;
        month = Some(digits(b, &mut at, 2)?);
        if b.get(at) == Some(&b'-') {
            at += 1;
            day = Some(digits(b, &mut at, 2)?);
            if b.get(at) == Some(&b'T') {
                at += 1;
                hour = Some(digits(b, &mut at, 2)?);
                if b.get(at) == Some(&b':') {
                    at += 1;
                    minute = Some(digits(b, &mut at, 2)?);
                    if b.get(at) == Some(&b':') {
                        at += 1;
                        second = Some(digits(b, &mut at, 2)?);
                        if matches!(b.get(at), Some(b'.') | Some(b',')) {
                            at += 1;
                            let start = at;
                            while at < b.len() && b[at].is_ascii_digit() && at - start < 9 {
                                at += 1;
                            }
                            if at == start {
                                return None;
                            }
                            let fraction = &text[start..at];
                            let scaled = format!("{fraction:0<9}");
                            nanos = Some(scaled.parse::<u32>().ok()?);
                        }
                    }
                }
                match b.get(at) {
                    Some(b'Z') => at += 1,
                    Some(sign @ (b'+' | b'-')) => {
                        let negative = *sign == b'-';
                        at += 1;
                        let hours = digits(b, &mut at, 2)? as i8;
                        if b.get(at) == Some(&b':') {
                            at += 1;
                        }
                        let minutes = digits(b, &mut at, 2).unwrap_or(0) as i8;
                        let (hours, minutes) = if negative {
                            (-hours, -minutes)
                        } else {
                            (hours, minutes)
                        };
                        offset = UtcOffset::from_hms(hours, minutes, 0).ok()?;
                    }
                    _ => {}
                }
            }
        }
    }
    if at != b.len() {
        return None;
    }
    let month_number = month.unwrap_or(if round_up { 12 } else { 1 });
    let month = Month::try_from(u8::try_from(month_number).ok()?).ok()?;
    let last_day = time::util::days_in_month(month, year);
    let day = day.unwrap_or(if round_up { u32::from(last_day) } else { 1 });
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let fill = |value: Option<u32>, max: u32| value.unwrap_or(if round_up { max } else { 0 });
    let time = Time::from_hms_nano(
        u8::try_from(fill(hour, 23)).ok()?,
        u8::try_from(fill(minute, 59)).ok()?,
        u8::try_from(fill(second, 59)).ok()?,
        fill(nanos, 999_999_999),
    )
    .ok()?;
    let moment = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(to_millis(moment))
}

fn to_millis(moment: OffsetDateTime) -> i64 {
    // Nanoseconds truncated toward the past, as Java's toEpochMilli does.
    moment.unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

fn from_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// Applies `+1d`, `-2h`, `/d` … in order. Rounding down goes to the start of
/// the unit; rounding up to its last nanosecond.
fn apply_math(anchor: i64, math: &str, round_up: bool, text: &str) -> Result<i64, DateError> {
    let bad = |why: &str| DateError(format!("`{text}`: invalid date math ({why})"));
    let mut moment = from_millis(anchor).ok_or_else(|| bad("out of range"))?;
    let mut chars = math.chars().peekable();
    while let Some(op) = chars.next() {
        let round = match op {
            '/' => true,
            '+' | '-' => false,
            other => return Err(bad(&format!("`{other}` where +, - or / was expected"))),
        };
        let mut amount: Option<i64> = None;
        if !round {
            let mut number = String::new();
            while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                number.push(*c);
                chars.next();
            }
            if !number.is_empty() {
                amount = Some(number.parse().map_err(|_| bad("number too large"))?);
            }
        }
        let unit = chars
            .next()
            .ok_or_else(|| bad("a unit (y M w d h H m s) is missing"))?;
        if round {
            moment = round_to(moment, unit, round_up).ok_or_else(|| bad("unknown unit"))?;
        } else {
            let amount = amount.unwrap_or(1);
            let signed = if op == '-' { -amount } else { amount };
            moment =
                add(moment, unit, signed).ok_or_else(|| bad("unknown unit or out of range"))?;
        }
    }
    Ok(to_millis(moment))
}

fn add(moment: OffsetDateTime, unit: char, amount: i64) -> Option<OffsetDateTime> {
    use time::Duration;
    match unit {
        'y' => add_months(moment, amount.checked_mul(12)?),
        'M' => add_months(moment, amount),
        'w' => moment.checked_add(Duration::weeks(amount)),
        'd' => moment.checked_add(Duration::days(amount)),
        'h' | 'H' => moment.checked_add(Duration::hours(amount)),
        'm' => moment.checked_add(Duration::minutes(amount)),
        's' => moment.checked_add(Duration::seconds(amount)),
        _ => None,
    }
}

/// Calendar months, the day kept or clamped to the month's last (Java's `plusMonths`).
fn add_months(moment: OffsetDateTime, months: i64) -> Option<OffsetDateTime> {
    let index = i64::from(moment.year()) * 12 + i64::from(u8::from(moment.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = moment.day().min(time::util::days_in_month(month, year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(moment.replace_date(date))
}

fn round_to(moment: OffsetDateTime, unit: char, round_up: bool) -> Option<OffsetDateTime> {
    let midnight = |date: Date| PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
    let start = match unit {
        'y' => midnight(Date::from_calendar_date(moment.year(), Month::January, 1).ok()?),
        'M' => midnight(Date::from_calendar_date(moment.year(), moment.month(), 1).ok()?),
        'w' => {
            let back = i64::from(moment.weekday().number_days_from_monday());
            midnight(moment.date()) - time::Duration::days(back)
        }
        'd' => midnight(moment.date()),
        'h' | 'H' => moment.replace_time(Time::from_hms(moment.hour(), 0, 0).ok()?),
        'm' => moment.replace_time(Time::from_hms(moment.hour(), moment.minute(), 0).ok()?),
        's' => moment.replace_nanosecond(0).ok()?,
        _ => return None,
    };
    if !round_up {
        return Some(start);
    }
    let next = add(start, unit, 1)?;
    Some(next - time::Duration::nanoseconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        to_millis(
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap(),
        )
    }

    #[test]
    fn partial_dates_span_their_unit() {
        assert_eq!(parse_date("2024-01", false), Ok(ms("2024-01-01T00:00:00Z")));
        assert_eq!(
            parse_date("2024-01", true),
            Ok(ms("2024-01-31T23:59:59.999Z"))
        );
        assert_eq!(parse_date("2024", true), Ok(ms("2024-12-31T23:59:59.999Z")));
        assert_eq!(
            parse_date("2024-02-10", true),
            Ok(ms("2024-02-10T23:59:59.999Z"))
        );
        assert_eq!(
            parse_date("2024-02-10T10", false),
            Ok(ms("2024-02-10T10:00:00Z"))
        );
        assert_eq!(
            parse_date("2024-02-10T10:00:00Z", true),
            Ok(ms("2024-02-10T10:00:00.999Z"))
        );
        assert_eq!(
            parse_date("2024-02-10T10:00:00.5+01:00", true),
            Ok(ms("2024-02-10T09:00:00.5Z"))
        );
        assert_eq!(
            parse_date("1704067200000", false),
            Ok(ms("2024-01-01T00:00:00Z"))
        );
        assert!(parse_date("2024-13", false).is_err());
        assert!(parse_date("2024-02-30", false).is_err());
        assert!(parse_date("bitcoin", false).is_err());
    }

    #[test]
    fn ranges_round_as_elasticsearch() {
        // [2024-01 TO 2024-02} is January.
        assert_eq!(
            range(Some("2024-01"), Some("2024-02"), true, false, 0),
            Ok(Some((
                ms("2024-01-01T00:00:00Z"),
                ms("2024-01-31T23:59:59.999Z")
            )))
        );
        // {2024-01 TO 2024-02] is February.
        assert_eq!(
            range(Some("2024-01"), Some("2024-02"), false, true, 0),
            Ok(Some((
                ms("2024-02-01T00:00:00Z"),
                ms("2024-02-29T23:59:59.999Z")
            )))
        );
    }

    #[test]
    fn date_math() {
        let now = ms("2024-03-15T13:45:30.250Z");
        assert_eq!(parse("now", false, now), Ok(now));
        assert_eq!(
            parse("now-30d/d", false, now),
            Ok(ms("2024-02-14T00:00:00Z"))
        );
        assert_eq!(
            parse("now/d", true, now),
            Ok(ms("2024-03-15T23:59:59.999Z"))
        );
        assert_eq!(parse("now/w", false, now), Ok(ms("2024-03-11T00:00:00Z")));
        assert_eq!(
            parse("now+1h/h", false, now),
            Ok(ms("2024-03-15T14:00:00Z"))
        );
        assert_eq!(
            parse("2024-01-31||+1M", false, now),
            Ok(ms("2024-02-29T00:00:00Z"))
        );
        assert_eq!(
            parse("2024-01-01||/M", true, now),
            Ok(ms("2024-01-31T23:59:59.999Z"))
        );
        assert_eq!(
            parse("now-1y", false, now),
            Ok(ms("2023-03-15T13:45:30.250Z"))
        );
        assert!(parse("now-1x", false, now).is_err());
        assert!(parse("now+", false, now).is_err());
    }
}
