//! Validation of one decoded row against EVENTS.md: the reason codes, in the
//! order of precise rule 11, and the typed values of an accepted event. Pure
//! functions of the row and the reporting currency; no I/O, no de-duplication
//! (ingest claims the keys of accepted rows after validation: rule 12).

use std::borrow::Cow;
use super::fields::{Field, Kind, RawRecord, TypeFamily, Value};
use chrono::{NaiveDate, NaiveTime};

/// A stable reason code of the `rejects` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Malformed,
    MissingField,
    UnknownEventType,
    BadTimestamp,
    BadNumber,
    NegativeAmount,
    ScoreOutOfRange,
    BadPriority,
    UnsupportedCurrency,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::MissingField => "missing_field",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadNumber => "bad_number",
            Reason::NegativeAmount => "negative_amount",
            Reason::ScoreOutOfRange => "score_out_of_range",
            Reason::BadPriority => "bad_priority",
            Reason::UnsupportedCurrency => "unsupported_currency",
        }
    }
}

/// Why a row was rejected: the code, and a sentence naming the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// The typed values of an accepted event (the `events` columns but lineage),
/// borrowing the text of the decoded row where they can.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub customer_id: Cow<'a, str>,
    /// Microseconds since the epoch, UTC.
    pub occurred_at: i64,
    pub subscription_id: Option<Cow<'a, str>>,
    pub plan: Option<Cow<'a, str>>,
    /// Money scaled by 10^4 (Decimal128(38, 4)).
    pub mrr: Option<i128>,
    pub currency: Option<Cow<'a, str>>,
    pub seats: Option<i64>,
    pub amount: Option<i128>,
    pub payment_id: Option<Cow<'a, str>>,
    pub feature: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub quantity: Option<f64>,
    pub ticket_id: Option<Cow<'a, str>>,
    pub priority: Option<Cow<'a, str>>,
    pub score: Option<i64>,
    pub campaign_id: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub segment: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
    pub industry: Option<Cow<'a, str>>,
    pub owner: Option<Cow<'a, str>>,
    pub reason: Option<Cow<'a, str>>,
    pub comment: Option<Cow<'a, str>>,
}

const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// Validate one row. `currency` is the reporting currency, upper-case.
pub fn validate<'a>(row: &RawRecord<'a>, currency: &'a str) -> Result<ValidEvent<'a>, Rejection> {
    // 1. malformed: a boolean, object or array where a string is expected.
    let family = match row.get(Field::EventType) {
        Value::Text(t) => TypeFamily::of(t),
        Value::Number(t) => TypeFamily::of(t),
        _ => None,
    };
    let envelope = [
        Field::EventId,
        Field::EventType,
        Field::CustomerId,
        Field::OccurredAt,
    ];
    let string_fields = envelope
        .iter()
        .copied()
        .chain(family.into_iter().flat_map(|f| f.declared()))
        .filter(|f| matches!(f.kind(), Kind::Text | Kind::Timestamp));
    for field in string_fields {
        if matches!(row.get(field), Value::Bool(_) | Value::Compound) {
            return Err(Rejection::new(
                Reason::Malformed,
                format!("{} is not a string", field.name()),
            ));
        }
    }

    // 2. missing_field (envelope).
    for field in envelope {
        if *row.get(field) == Value::Missing {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("{} is missing", field.name()),
            ));
        }
    }

    // 3. unknown_event_type.
    let event_type = text_of(row.get(Field::EventType)).unwrap_or_default();
    let Some(family) = family else {
        return Err(Rejection::new(
            Reason::UnknownEventType,
            format!("unknown event_type {event_type:?}"),
        ));
    };

    // 4. bad_timestamp.
    let occurred_at = match row.get(Field::OccurredAt) {
        Value::Instant(us) => *us,
        other => {
            let text = text_of(other).unwrap_or_default();
            parse_timestamp(&text).ok_or_else(|| {
                Rejection::new(
                    Reason::BadTimestamp,
                    format!("occurred_at {text:?} is not an RFC 3339 timestamp"),
                )
            })?
        }
    };

    // 5. missing_field (type-specific).
    for &field in family.required() {
        if *row.get(field) == Value::Missing {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("{} is required on {event_type}", field.name()),
            ));
        }
    }

    // 6. bad_number, then 7. negative_amount and 8. score_out_of_range.
    let mut numbers = Numbers::default();
    for field in family.declared() {
        let value = row.get(field);
        if *value == Value::Missing {
            continue;
        }
        let bad = || {
            Rejection::new(
                Reason::BadNumber,
                format!("{} {} is not a valid number", field.name(), describe(value)),
            )
        };
        match field.kind() {
            Kind::Money => {
                let parsed = number_text(value, true).and_then(parse_money).ok_or_else(bad)?;
                if field == Field::Mrr {
                    numbers.mrr = Some(parsed);
                } else {
                    numbers.amount = Some(parsed);
                }
            }
            Kind::Integer => {
                let parsed = number_text(value, false)
                    .and_then(parse_integer)
                    .and_then(|i| match i {
                        Integer::Small(v) => Some(v),
                        Integer::Huge => None,
                    })
                    .ok_or_else(bad)?;
                numbers.seats = Some(parsed);
            }
            Kind::Score => {
                numbers.score = Some(number_text(value, false).and_then(parse_integer).ok_or_else(bad)?);
            }
            Kind::Float => {
                numbers.quantity = Some(number_text(value, false).and_then(parse_float).ok_or_else(bad)?);
            }
            Kind::Text | Kind::Timestamp => {}
        }
    }
    for (field, value) in [(Field::Mrr, numbers.mrr), (Field::Amount, numbers.amount)] {
        if value.is_some_and(|v| v < 0) {
            return Err(Rejection::new(
                Reason::NegativeAmount,
                format!("{} is negative", field.name()),
            ));
        }
    }
    let score = match numbers.score {
        None => None,
        Some(score) => {
            let range = if family == TypeFamily::SurveyNps { 0..=10 } else { 1..=5 };
            match score {
                Integer::Small(v) if range.contains(&v) => Some(v),
                _ => {
                    return Err(Rejection::new(
                        Reason::ScoreOutOfRange,
                        format!("score is outside {}..{}", range.start(), range.end()),
                    ))
                }
            }
        }
    };

    // 9. bad_priority.
    let priority = if family == TypeFamily::Support {
        match text_of(row.get(Field::Priority)) {
            None => Some(Cow::Borrowed("normal")),
            Some(p) => match PRIORITIES.iter().find(|known| known.eq_ignore_ascii_case(&p)) {
                Some(known) => Some(Cow::Borrowed(*known)),
                None => {
                    return Err(Rejection::new(
                        Reason::BadPriority,
                        format!("priority {p:?} is not one of low, normal, high, urgent"),
                    ))
                }
            },
        }
    } else {
        None
    };

    // 10. unsupported_currency.
    let currency = if family.declares(Field::Currency) {
        match text_of(row.get(Field::Currency)) {
            None => Some(Cow::Borrowed(currency)),
            Some(c) => {
                if !c.eq_ignore_ascii_case(currency) {
                    return Err(Rejection::new(
                        Reason::UnsupportedCurrency,
                        format!("currency {c:?} is not the reporting currency {currency}"),
                    ));
                }
                Some(Cow::Borrowed(currency))
            }
        }
    } else {
        None
    };

    let text = |field: Field| {
        if family.declares(field) {
            text_of(row.get(field))
        } else {
            None
        }
    };
    Ok(ValidEvent {
        event_id: text_of(row.get(Field::EventId)).unwrap_or_default(),
        event_type,
        customer_id: text_of(row.get(Field::CustomerId)).unwrap_or_default(),
        occurred_at,
        subscription_id: text(Field::SubscriptionId),
        plan: text(Field::Plan),
        mrr: numbers.mrr,
        currency,
        seats: numbers.seats,
        amount: numbers.amount,
        payment_id: text(Field::PaymentId),
        feature: text(Field::Feature),
        user_id: text(Field::UserId),
        quantity: numbers.quantity,
        ticket_id: text(Field::TicketId),
        priority,
        score,
        campaign_id: text(Field::CampaignId),
        name: text(Field::Name),
        segment: text(Field::Segment),
        country: text(Field::Country),
        industry: text(Field::Industry),
        owner: text(Field::Owner),
        reason: text(Field::Reason),
        comment: text(Field::Comment),
    })
}

#[derive(Default)]
struct Numbers {
    mrr: Option<i128>,
    amount: Option<i128>,
    seats: Option<i64>,
    score: Option<Integer>,
    quantity: Option<f64>,
}

/// The string a value stands for in a string field (numbers as their JSON text,
/// rule 5; typed instants in RFC 3339).
fn text_of<'a>(value: &Value<'a>) -> Option<Cow<'a, str>> {
    match value {
        Value::Text(t) | Value::Number(t) => Some(match t {
            Cow::Borrowed(b) => Cow::Borrowed(*b),
            Cow::Owned(o) => Cow::Owned(o.clone()),
        }),
        Value::Instant(us) => chrono::DateTime::from_timestamp_micros(*us)
            .map(|t| Cow::Owned(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        Value::Missing | Value::Bool(_) | Value::Compound => None,
    }
}

fn describe(value: &Value<'_>) -> String {
    match value {
        Value::Text(t) => format!("{t:?}"),
        Value::Number(t) => t.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Compound => "(object or array)".to_string(),
        Value::Instant(_) => "(timestamp)".to_string(),
        Value::Missing => "(missing)".to_string(),
    }
}

/// The numeric text of a value: a number token, or a string in the grammar of
/// rule 7 (money: no exponent) or rule 8 (other numbers).
fn number_text<'v>(value: &'v Value<'_>, money: bool) -> Option<&'v str> {
    match value {
        Value::Number(t) => Some(t),
        Value::Text(t) if numeric_string(t, !money) => Some(t),
        _ => None,
    }
}

/// `-?\d+(\.\d+)?([eE][+-]?\d+)?` (the exponent only when allowed).
fn numeric_string(s: &str, allow_exponent: bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if allow_exponent && matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A decimal number as sign, significant digits and a power of ten:
/// value = (-1)^negative × digits × 10^exponent, where `digits` (`count` of
/// them, without leading or trailing zeros; none for zero) are the digits of
/// `significand`, a piece of the source text that may hold its `.`.
///
/// The exponent is an `i128` computed from an exponent text of at most
/// [`EXPONENT_DIGITS`] significant digits and the length of the text, so no
/// sum below can overflow. A longer exponent saturates: its value is then
/// beyond ±10^30, where every rule decides the same as for the exact value
/// (no text is long enough to bring it back into any bound below).
#[derive(Debug, PartialEq)]
struct Decimal<'s> {
    negative: bool,
    significand: &'s str,
    count: usize,
    exponent: i128,
}

/// Exponent texts with more significant digits than this saturate.
const EXPONENT_DIGITS: usize = 30;

impl Decimal<'_> {
    fn is_zero(&self) -> bool {
        self.count == 0
    }

    /// The power of ten just above the magnitude: 10^(magnitude-1) <= |v| <
    /// 10^magnitude for a value that is not zero.
    fn magnitude(&self) -> i128 {
        self.count as i128 + self.exponent
    }

    /// |digits| × 10^shift, when that is below 10^38 (so it fits an i128).
    fn scaled(&self, shift: i128) -> Option<i128> {
        if self.is_zero() {
            return Some(0);
        }
        if shift < 0 || self.count as i128 + shift > 38 {
            return None;
        }
        let mut v: i128 = 0;
        for b in self.significand.bytes().filter(u8::is_ascii_digit) {
            v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        v.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)
    }
}

/// Parse a numeric text (`-?\d+(\.\d+)?([eE][+-]?\d+)?`, the grammar of JSON
/// numbers and of rule 8) in time linear in its length, whatever its exponent.
fn parse_decimal(s: &str) -> Option<Decimal<'_>> {
    if !numeric_string(s, true) {
        return None;
    }
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (exp_negative, exp_digits) = match exp.as_bytes().first() {
        Some(b'-') => (true, &exp[1..]),
        Some(b'+') => (false, &exp[1..]),
        _ => (false, exp),
    };
    let exp_digits = exp_digits.trim_start_matches('0');
    let exp_value: i128 = if exp_digits.len() > EXPONENT_DIGITS {
        10i128.pow(EXPONENT_DIGITS as u32)
    } else {
        exp_digits.parse().unwrap_or(0)
    };
    let exp_value = if exp_negative { -exp_value } else { exp_value };
    // The digits of the mantissa as one sequence (the `.` skipped): the first
    // and the last that are not zero.
    let int_len = mantissa.find('.').unwrap_or(mantissa.len());
    let first = mantissa.bytes().position(|b| matches!(b, b'1'..=b'9'));
    let Some(first) = first else {
        return Some(Decimal {
            negative: false,
            significand: "",
            count: 0,
            exponent: 0,
        });
    };
    let last = mantissa.bytes().rposition(|b| matches!(b, b'1'..=b'9')).unwrap_or(first);
    let significand = &mantissa[first..=last];
    let count = significand.bytes().filter(u8::is_ascii_digit).count();
    // The last significant digit stands for 10^(int_len - 1 - its place),
    // where places after the `.` count one less.
    let place = if last > int_len { last - 1 } else { last };
    let exponent = exp_value + int_len as i128 - 1 - place as i128;
    Some(Decimal {
        negative,
        significand,
        count,
        exponent,
    })
}

/// Money (rule 7): exactly representable with 4 fractional digits and |v| <
/// 10^34 (Decimal128(38, 4)), scaled by 10^4; `-0` is 0. A value outside
/// those bounds, however far, is decided from its magnitude alone.
fn parse_money(s: &str) -> Option<i128> {
    let d = parse_decimal(s)?;
    if d.is_zero() {
        return Some(0);
    }
    if d.exponent < -4 || d.magnitude() > 34 {
        return None;
    }
    let scaled = d.scaled(d.exponent + 4)?;
    Some(if d.negative { -scaled } else { scaled })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Integer {
    Small(i64),
    /// Integral but outside Int64: `seats` that cannot be stored, a
    /// well-formed score out of range.
    Huge,
}

/// An integral value such as `9`, `9.0`, `"9.0"` or `9e0` (rule 8); `None`
/// for a value with a fraction.
///
/// A huge integral score such as `1e9223372036854775807` is well-formed (it
/// matches the grammar of rule 8) and integral, so it is `Huge`: a score out
/// of range, not a bad number. That is what Python's reference `decimal`
/// module (`_pydecimal`) says: the value is integral and above 10. The C
/// `decimal` raises InvalidOperation for it only because its exponents stop
/// at 999999999999999999 (an implementation limit EVENTS.md does not have).
fn parse_integer(s: &str) -> Option<Integer> {
    let d = parse_decimal(s)?;
    if d.exponent < 0 {
        return None;
    }
    // 19 digits reach past i64::MAX (9223372036854775807).
    if d.magnitude() > 19 {
        return Some(Integer::Huge);
    }
    let v = d.scaled(d.exponent)?;
    let v = if d.negative { -v } else { v };
    Some(i64::try_from(v).map_or(Integer::Huge, Integer::Small))
}

/// `quantity` (rule 8): any finite number, as the nearest Float64. A value
/// too large for Float64 is not finite there (`bad_number`); a value too
/// small for it is the nearest Float64, zero (a finite number read as Float64
/// rounds, and `float("1e-400")` is 0.0 in Python too).
fn parse_float(s: &str) -> Option<f64> {
    let d = parse_decimal(s)?;
    // f64::MAX < 10^309 and the least subnormal > 10^-324: decided without
    // reading the digits when the magnitude is far outside.
    if d.is_zero() || d.magnitude() < -400 {
        return Some(0.0);
    }
    if d.magnitude() > 400 {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_finite() {
        Some(if v == 0.0 { 0.0 } else { v })
    } else {
        None
    }
}

/// `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction][Z|z|±HH:MM|±HHMM]` to microseconds
/// since the epoch, UTC (rule 6). No offset means UTC; fractions beyond
/// microseconds are truncated; `:60` and date-only values are rejected.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 6)];
        micros = frac.parse::<u32>().ok()? * 10u32.pow(6 - frac.len() as u32);
    }
    let offset_seconds: i64 = match &b[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    let digits = [*h1, *h2, *m1, *m2];
                    if !digits.iter().all(u8::is_ascii_digit) {
                        return None;
                    }
                    (
                        ((h1 - b'0') * 10 + (h2 - b'0')) as i64,
                        ((m1 - b'0') * 10 + (m2 - b'0')) as i64,
                    )
                }
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_micro_opt(h, m, sec, micros)?;
    let local = date.and_time(time).and_utc().timestamp_micros();
    local.checked_sub(offset_seconds * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn row(pairs: &[(&str, Value<'static>)]) -> RawRecord<'static> {
        let mut r = RawRecord::default();
        for (k, v) in pairs {
            r.set(Field::from_name(k).expect("known field"), v.clone());
        }
        r
    }
    fn t(s: &'static str) -> Value<'static> {
        Value::Text(Cow::Borrowed(s))
    }
    fn n(s: &'static str) -> Value<'static> {
        Value::Number(Cow::Borrowed(s))
    }
    fn envelope(event_type: &'static str) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("event_id", t("e1")),
            ("event_type", t(event_type)),
            ("customer_id", t("c1")),
            ("occurred_at", t("2026-03-14T09:12:00+09:00")),
        ]
    }
    fn reason(pairs: Vec<(&'static str, Value<'static>)>) -> Option<Reason> {
        validate(&row(&pairs), "USD").err().map(|r| r.reason)
    }

    #[test]
    fn money_rules() {
        assert_eq!(parse_money("99.90"), Some(999_000));
        assert_eq!(parse_money("1e2"), Some(1_000_000));
        assert_eq!(parse_money("1.50000"), Some(15_000));
        assert_eq!(parse_money("1.23456"), None);
        assert_eq!(parse_money("-0"), Some(0));
        assert_eq!(parse_money("-0.5"), Some(-5_000));
        assert_eq!(parse_money("12345e-4"), Some(12_345));
        assert_eq!(parse_money("9999999999999999999999999999999999.9999"), Some(99_999_999_999_999_999_999_999_999_999_999_999_999));
        assert_eq!(parse_money("10000000000000000000000000000000000"), None);
        assert_eq!(parse_money("1e34"), None);
        assert_eq!(parse_money("0e999999999999999999999"), Some(0));
        assert_eq!(parse_money("1e-99999999999999999999"), None);
    }

    #[test]
    fn number_grammar() {
        assert!(numeric_string("9.0", true));
        assert!(!numeric_string("+5", true));
        assert!(!numeric_string(" 5", true));
        assert!(!numeric_string(".5", true));
        assert!(!numeric_string("5.", true));
        assert!(!numeric_string("1e5", false));
        assert_eq!(parse_integer("9.0"), Some(Integer::Small(9)));
        assert_eq!(parse_integer("90e-1"), Some(Integer::Small(9)));
        assert_eq!(parse_integer("9.5"), None);
        assert_eq!(parse_integer("1e400"), Some(Integer::Huge));
        assert_eq!(parse_float("1e400"), None);
    }

    #[test]
    fn timestamps() {
        let base = parse_timestamp("2026-03-14T00:12:00Z").expect("valid");
        assert_eq!(parse_timestamp("2026-03-14T09:12:00+09:00"), Some(base));
        assert_eq!(parse_timestamp("2026-03-14t09:12:00+0900"), Some(base));
        assert_eq!(parse_timestamp("2026-03-14 00:12:00"), Some(base));
        assert_eq!(parse_timestamp("2026-03-14T00:12:00z"), Some(base));
        assert_eq!(parse_timestamp("2026-03-14T00:12:00.1234567Z"), Some(base + 123_456));
        assert_eq!(parse_timestamp("2026-03-14"), None);
        assert_eq!(parse_timestamp("2026-03-14T23:59:60Z"), None);
        assert_eq!(parse_timestamp("2026-03-14T00:12:00+24:00"), None);
        assert_eq!(parse_timestamp("2026-02-30T00:12:00Z"), None);
        assert_eq!(parse_timestamp("2026-03-14T00:12:00."), None);
        assert_eq!(parse_timestamp("2026-03-14T00:12:00 Z"), None);
    }

    #[test]
    fn reason_order() {
        // malformed beats a missing envelope field.
        let mut r = envelope("subscription.started");
        r.retain(|(k, _)| *k != "customer_id");
        r.push(("plan", Value::Bool(true)));
        assert_eq!(reason(r), Some(Reason::Malformed));
        // a boolean on an undeclared field is ignored (rule 9).
        let mut r = envelope("usage.login");
        r.push(("plan", Value::Bool(true)));
        r.push(("mrr", t("abc")));
        assert_eq!(reason(r), None);
        // bad timestamp before type-specific missing field.
        let mut r = envelope("payment.succeeded");
        r[3] = ("occurred_at", t("2026-03-14"));
        assert_eq!(reason(r), Some(Reason::BadTimestamp));
        // bad_number before negative_amount before currency.
        let mut r = envelope("payment.succeeded");
        r.push(("amount", n("-5")));
        r.push(("currency", t("EUR")));
        assert_eq!(reason(r), Some(Reason::NegativeAmount));
        let mut r = envelope("survey.nps");
        r.push(("score", t("11")));
        assert_eq!(reason(r), Some(Reason::ScoreOutOfRange));
        let mut r = envelope("survey.csat");
        r.push(("score", Value::Bool(true)));
        assert_eq!(reason(r), Some(Reason::BadNumber));
        let mut r = envelope("support.ticket_opened");
        r.push(("ticket_id", t("t1")));
        r.push(("priority", t("asap")));
        assert_eq!(reason(r), Some(Reason::BadPriority));
        assert_eq!(reason(envelope("usage.")), None);
        assert_eq!(reason(envelope("Usage.login")), Some(Reason::UnknownEventType));
    }

    #[test]
    fn accepted_values_are_normalised() {
        let mut r = envelope("support.ticket_opened");
        r.push(("ticket_id", n("123")));
        r.push(("priority", t("HIGH")));
        let ev = validate(&row(&r), "USD").expect("valid");
        assert_eq!(ev.ticket_id.as_deref(), Some("123"));
        assert_eq!(ev.priority.as_deref(), Some("high"));
        let mut r = envelope("payment.refunded");
        r.push(("amount", t("10")));
        r.push(("currency", t("usd")));
        r.push(("priority", t("nonsense")));
        let ev = validate(&row(&r), "USD").expect("valid");
        assert_eq!(ev.currency.as_deref(), Some("USD"));
        assert_eq!(ev.priority, None);
        assert_eq!(ev.amount, Some(100_000));
    }
}
