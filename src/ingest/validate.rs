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

    /// What one field of a row comes out as: its typed value, or the reason
    /// the row is rejected.
    #[derive(Debug, PartialEq)]
    enum Got {
        Money(i128),
        Seats(i64),
        Score(i64),
        Quantity(f64),
        Rejected(Reason),
    }

    /// The event type and the other fields of a row that tests `field`.
    fn template(field: &str) -> (&'static str, &'static str) {
        match field {
            "mrr" => ("subscription.started", ""),
            "seats" => ("subscription.started", "\"mrr\":1,"),
            "score" => ("survey.nps", ""),
            "quantity" => ("usage.login", ""),
            _ => panic!("no template for {field}"),
        }
    }

    fn got(field: &str, outcome: Result<ValidEvent<'_>, Rejection>) -> Got {
        match outcome {
            Err(r) => Got::Rejected(r.reason),
            Ok(ev) => match field {
                "mrr" => Got::Money(ev.mrr.expect("mrr")),
                "seats" => Got::Seats(ev.seats.expect("seats")),
                "score" => Got::Score(ev.score.expect("score")),
                _ => Got::Quantity(ev.quantity.expect("quantity")),
            },
        }
    }

    /// `field` given as the JSON value `json` (a number token, or a quoted
    /// string), read as the JSON Lines decoder reads a line.
    fn via_json(field: &str, json: &str) -> Got {
        let (event_type, extra) = template(field);
        let line = format!(
            r#"{{"event_id":"e1","event_type":"{event_type}","customer_id":"c1","occurred_at":"2026-01-01T00:00:00Z","subscription_id":"s1",{extra}"{field}":{json}}}"#
        );
        let record = crate::ingest::decode::parse_json_object(&line).expect("a JSON object");
        got(field, validate(&record, "USD"))
    }

    /// `field` given as the CSV cell `cell`, read as the CSV decoder reads it.
    fn via_csv(field: &str, cell: &str) -> Got {
        use crate::ingest::decode::{decode, Compression, Format};
        let (event_type, _) = template(field);
        let (mrr_header, mrr_cell) = if field == "mrr" { ("", "") } else { (",mrr", ",1") };
        let text = format!(
            "event_id,event_type,customer_id,occurred_at,subscription_id{mrr_header},{field}\ne1,{event_type},c1,2026-01-01T00:00:00Z,s1{mrr_cell},{cell}\n"
        );
        let mut out = Vec::new();
        decode(bytes::Bytes::from(text), Format::Csv, Compression::None, Default::default(), &mut |row| {
            let record = row.record.expect("a CSV record");
            out.push(got(field, validate(&record, "USD")));
        })
        .expect("decodes");
        assert_eq!(out.len(), 1);
        out.pop().expect("one row")
    }

    /// `field` given as the JSON number `text`, as a JSON string and as a CSV
    /// cell: the number comes out as `number`, the strings as `string`.
    fn check(field: &str, text: &str, number: Got, string: Got) {
        let started = std::time::Instant::now();
        assert_eq!(via_json(field, text), number, "{field} {text} as a JSON number");
        assert_eq!(via_json(field, &format!("\"{text}\"")), string, "{field} \"{text}\" as a JSON string");
        assert_eq!(via_csv(field, text), string, "{field} {text} as a CSV cell");
        assert!(started.elapsed().as_secs() < 2, "{field} {text} took {:?}", started.elapsed());
    }

    const BAD: Got = Got::Rejected(Reason::BadNumber);
    const NEGATIVE: Got = Got::Rejected(Reason::NegativeAmount);
    const OUT_OF_RANGE: Got = Got::Rejected(Reason::ScoreOutOfRange);
    /// An exponent beyond i128 (which saturates).
    const HUGE_EXPONENT: &str = "1e1701411834604692317316873037158841057280000";

    /// Rule 7 at the edges of the exponent: whatever the exponent, money is
    /// decided in constant time, never wraps, and strings have no exponent.
    #[test]
    fn money_exponent_edges() {
        check("mrr", "1e9223372036854775807", BAD, BAD);
        check("mrr", "5e9223372036854775807", BAD, BAD);
        check("mrr", "-5e9223372036854775807", BAD, BAD);
        check("mrr", "1e-9223372036854775808", BAD, BAD);
        check("mrr", "-1e-9223372036854775808", BAD, BAD);
        check("mrr", "10e9223372036854775807", BAD, BAD);
        check("mrr", "10e-9223372036854775808", BAD, BAD);
        check("mrr", HUGE_EXPONENT, BAD, BAD);
        check("mrr", "1e34", BAD, BAD);
        check("mrr", "-1e34", BAD, BAD);
        check("mrr", "1e33", Got::Money(10i128.pow(37)), BAD);
        check("mrr", "0.1e34", Got::Money(10i128.pow(37)), BAD);
        check("mrr", "0.1e35", BAD, BAD);
        check("mrr", "100000000000000000000000000000000000e-2", Got::Money(10i128.pow(37)), BAD);
        check("mrr", "99999999999999999999999999999999999999e-4", Got::Money(10i128.pow(38) - 1), BAD);
        check("mrr", "99999999999999999999999999999999999999e-3", BAD, BAD);
        check("mrr", "1e-4", Got::Money(1), BAD);
        check("mrr", "10e-5", Got::Money(1), BAD);
        check("mrr", "1e-5", BAD, BAD);
        check("mrr", "1e+0000000000000000000000000000000000000000002", Got::Money(1_000_000), BAD);
        check("mrr", "-0e5", Got::Money(0), BAD);
        check("mrr", "-0e9223372036854775807", Got::Money(0), BAD);
        check("mrr", "0e-9223372036854775808", Got::Money(0), BAD);
        check("mrr", "-0.0000000", Got::Money(0), Got::Money(0));
        check("mrr", "-0", Got::Money(0), Got::Money(0));
        check("mrr", "-5e-1", NEGATIVE, BAD);
        check("mrr", "-0.5", NEGATIVE, NEGATIVE);
        check("mrr", "12.3450", Got::Money(123_450), Got::Money(123_450));
    }

    /// Rule 8 for `seats`: an integral value (9.0, 9e0) in Int64.
    #[test]
    fn seats_exponent_edges() {
        check("seats", "9e18", Got::Seats(9_000_000_000_000_000_000), Got::Seats(9_000_000_000_000_000_000));
        check("seats", "1e19", BAD, BAD);
        check("seats", "9223372036854775807", Got::Seats(i64::MAX), Got::Seats(i64::MAX));
        check("seats", "922337203685477580.7e1", Got::Seats(i64::MAX), Got::Seats(i64::MAX));
        check("seats", "9223372036854775808", BAD, BAD);
        check("seats", "-9223372036854775808", Got::Seats(i64::MIN), Got::Seats(i64::MIN));
        check("seats", "-9223372036854775809", BAD, BAD);
        check("seats", "1e9223372036854775807", BAD, BAD);
        check("seats", "-1e9223372036854775807", BAD, BAD);
        check("seats", "1e-9223372036854775808", BAD, BAD);
        check("seats", HUGE_EXPONENT, BAD, BAD);
        check("seats", "-0e5", Got::Seats(0), Got::Seats(0));
        check("seats", "0e-9223372036854775808", Got::Seats(0), Got::Seats(0));
        check("seats", "90e-1", Got::Seats(9), Got::Seats(9));
        check("seats", "1.5e1", Got::Seats(15), Got::Seats(15));
        check("seats", "1.55e1", BAD, BAD);
        check("seats", "1E+1", Got::Seats(10), Got::Seats(10));
    }

    /// Rule 8 for `score`: a well-formed integral score outside its range,
    /// however large, is `score_out_of_range` (see [`parse_integer`]); a
    /// fraction is `bad_number` (rule 11: bad_number comes first).
    #[test]
    fn score_exponent_edges() {
        check("score", "1e9223372036854775807", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "-1e9223372036854775807", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", HUGE_EXPONENT, OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "1e-9223372036854775808", BAD, BAD);
        check("score", "1e34", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "1e19", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "9e18", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "1e1", Got::Score(10), Got::Score(10));
        check("score", "0.1e2", Got::Score(10), Got::Score(10));
        check("score", "100e-1", Got::Score(10), Got::Score(10));
        check("score", "1.1e1", OUT_OF_RANGE, OUT_OF_RANGE);
        check("score", "1.05e1", BAD, BAD);
        check("score", "-0e5", Got::Score(0), Got::Score(0));
        check("score", "-1", OUT_OF_RANGE, OUT_OF_RANGE);
    }

    /// Rule 8 for `quantity`: any finite number as the nearest Float64; too
    /// large for Float64 is not finite (`bad_number`), too small is zero.
    #[test]
    fn quantity_exponent_edges() {
        let q = Got::Quantity;
        check("quantity", "1e9223372036854775807", BAD, BAD);
        check("quantity", "-1e9223372036854775807", BAD, BAD);
        check("quantity", HUGE_EXPONENT, BAD, BAD);
        check("quantity", "1e400", BAD, BAD);
        check("quantity", "1.8e308", BAD, BAD);
        check("quantity", "1.7976931348623157e308", q(f64::MAX), q(f64::MAX));
        check("quantity", "1e-9223372036854775808", q(0.0), q(0.0));
        check("quantity", "-1e-9223372036854775808", q(0.0), q(0.0));
        check("quantity", "1e-400", q(0.0), q(0.0));
        check("quantity", "5e-324", q(5e-324), q(5e-324));
        check("quantity", "1e34", q(1e34), q(1e34));
        check("quantity", "-0e5", q(0.0), q(0.0));
        check("quantity", "2.5e-3", q(0.0025), q(0.0025));
        let tiny_digits = format!("0.{}1e501", "0".repeat(499));
        check("quantity", &tiny_digits, q(10.0), q(10.0));
        let long = format!("1{}e-100000", "0".repeat(100_000));
        check("quantity", &long, q(1.0), q(1.0));
        check("seats", &long, Got::Seats(1), Got::Seats(1));
    }

    /// An independent reading of rules 7 and 8 for the property test below:
    /// the exact value as digits and an exponent (no bound on either: the
    /// inputs are short), and for moderate exponents the value written out
    /// in plain decimal, as Python's `Decimal` would hold it.
    mod reference {
        use super::{Got, Reason};

        /// `-?\d+(\.\d+)?([eE][+-]?\d+)?`, the exponent only when allowed.
        fn well_formed(s: &str, exponent: bool) -> bool {
            let all_digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
            let body = s.strip_prefix('-').unwrap_or(s);
            let (mantissa, exp) = match body.split_once(['e', 'E']) {
                Some((m, e)) => (m, Some(e)),
                None => (body, None),
            };
            let mantissa_ok = match mantissa.split_once('.') {
                Some((i, f)) => all_digits(i) && all_digits(f),
                None => all_digits(mantissa),
            };
            let exp_ok = match exp {
                None => true,
                Some(e) => exponent && all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)),
            };
            mantissa_ok && exp_ok
        }

        /// The exact value: sign, significant digits (no leading or
        /// trailing zeros) and the power of ten of the last one.
        struct Exact {
            negative: bool,
            digits: String,
            exponent: i128,
        }

        fn exact(s: &str) -> Exact {
            let negative = s.starts_with('-');
            let body = s.trim_start_matches('-');
            let (mantissa, exp) = body.split_once(['e', 'E']).unwrap_or((body, "0"));
            let exp: i128 = exp.parse().expect("short exponents fit an i128");
            let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let mut digits = format!("{int}{frac}").trim_start_matches('0').to_string();
            let mut exponent = exp - frac.len() as i128;
            while digits.ends_with('0') {
                digits.pop();
                exponent += 1;
            }
            Exact { negative, digits, exponent }
        }

        /// The value written out: integer digits (no leading zeros) and
        /// fraction digits (no trailing zeros), for |exponent| <= 200.
        fn plain(e: &Exact) -> Option<(String, String)> {
            if e.exponent.abs() > 200 {
                return None;
            }
            let written = if e.exponent >= 0 {
                format!("{}{}.", e.digits, "0".repeat(e.exponent as usize))
            } else {
                let shift = (-e.exponent) as usize;
                let padded = format!("{}{}", "0".repeat(shift + 1), e.digits);
                let point = padded.len() - shift;
                format!("{}.{}", &padded[..point], &padded[point..])
            };
            let (int, frac) = written.split_once('.').expect("a point");
            Some((int.trim_start_matches('0').to_string(), frac.trim_end_matches('0').to_string()))
        }

        pub fn money(s: &str, exponent_allowed: bool) -> Got {
            if !well_formed(s, exponent_allowed) {
                return Got::Rejected(Reason::BadNumber);
            }
            let e = exact(s);
            if e.digits.is_empty() {
                return Got::Money(0);
            }
            // Far exponents: the value has at most 40 digits, so it is either
            // at least 10^160 or below 10^-160.
            let Some((int, frac)) = plain(&e) else { return Got::Rejected(Reason::BadNumber) };
            if frac.len() > 4 || int.len() > 34 {
                return Got::Rejected(Reason::BadNumber);
            }
            let scaled: i128 = format!("{int}{frac:0<4}").parse().expect("at most 38 digits");
            if e.negative {
                Got::Rejected(Reason::NegativeAmount)
            } else {
                Got::Money(scaled)
            }
        }

        /// `Ok(Some(v))` an Int64, `Ok(None)` integral beyond Int64, `Err`
        /// not an integer.
        fn integer(s: &str) -> Result<Option<i64>, ()> {
            if !well_formed(s, true) {
                return Err(());
            }
            let e = exact(s);
            if e.digits.is_empty() {
                return Ok(Some(0));
            }
            match plain(&e) {
                None if e.exponent > 0 => Ok(None),
                None => Err(()),
                Some((_, frac)) if !frac.is_empty() => Err(()),
                Some((int, _)) if int.len() > 19 => Ok(None),
                Some((int, _)) => {
                    let v: i128 = int.parse().expect("19 digits");
                    Ok(i64::try_from(if e.negative { -v } else { v }).ok())
                }
            }
        }

        pub fn seats(s: &str) -> Got {
            match integer(s) {
                Ok(Some(v)) => Got::Seats(v),
                _ => Got::Rejected(Reason::BadNumber),
            }
        }

        pub fn nps_score(s: &str) -> Got {
            match integer(s) {
                Ok(Some(v)) if (0..=10).contains(&v) => Got::Score(v),
                Ok(_) => Got::Rejected(Reason::ScoreOutOfRange),
                Err(()) => Got::Rejected(Reason::BadNumber),
            }
        }

        pub fn quantity(s: &str) -> Got {
            if !well_formed(s, true) {
                return Got::Rejected(Reason::BadNumber);
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Got::Quantity(if v == 0.0 { 0.0 } else { v }),
                _ => Got::Rejected(Reason::BadNumber),
            }
        }
    }

    /// Every field of rules 7 and 8 given `s` as a number token and as a
    /// string, through [`validate`], against the reference.
    fn agrees_with_reference(s: &str) {
        let outcome = |field: &str, value: Value<'_>| {
            let (event_type, _) = template(field);
            let mut pairs: Vec<(&str, Value<'_>)> = vec![
                ("event_id", t("e1")),
                ("event_type", Value::Text(Cow::Borrowed(event_type))),
                ("customer_id", t("c1")),
                ("occurred_at", t("2026-01-01T00:00:00Z")),
                ("subscription_id", t("s1")),
            ];
            if field == "seats" {
                pairs.push(("mrr", n("1")));
            }
            pairs.push((field, value));
            let mut r = RawRecord::default();
            for (k, v) in pairs {
                r.set(Field::from_name(k).expect("known field"), v);
            }
            got(field, validate(&r, "USD"))
        };
        let text = || Value::Text(Cow::Borrowed(s));
        let number = || Value::Number(Cow::Borrowed(s));
        if s.is_empty() {
            return; // a missing value, not a number (rule 4)
        }
        assert_eq!(outcome("mrr", text()), reference::money(s, false), "mrr {s:?}");
        assert_eq!(outcome("mrr", number()), reference::money(s, true), "mrr {s}");
        for value in [text(), number()] {
            assert_eq!(outcome("seats", value.clone()), reference::seats(s), "seats {value:?}");
            assert_eq!(outcome("score", value.clone()), reference::nps_score(s), "score {value:?}");
            assert_eq!(outcome("quantity", value.clone()), reference::quantity(s), "quantity {value:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Any string of digits, signs, points and exponent letters.
        #[test]
        fn any_number_text_agrees_with_the_reference(s in "[0-9+.eE-]{0,24}") {
            agrees_with_reference(&s);
        }

        /// Well-formed numbers, with leading and trailing zeros and
        /// exponents up to 30 digits, near every bound of rules 7 and 8.
        #[test]
        fn well_formed_numbers_agree_with_the_reference(
            s in "-?0{0,2}[0-9]{1,8}(\\.[0-9]{0,6}0{0,3})?([eE][+-]?(0{0,3}[0-9]{1,2}|3[0-9]|[0-9]{18,30}))?"
        ) {
            let s = s.replace(".e", ".0e").replace(".E", ".0E");
            let s = if s.ends_with('.') { format!("{s}0") } else { s };
            agrees_with_reference(&s);
        }
    }
}
