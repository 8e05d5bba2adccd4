//! Numbers as people read them: money with thousands separators and the
//! currency, percentages with one decimal, months as "Oct 2026". Money is
//! formatted from the exact decimal text of the mart, rounded half away
//! from zero to cents, never through a float.

/// How amounts of one currency are written.
pub struct Money {
    symbol: String,
    /// Whether the symbol goes before the number.
    prefix: bool,
}

impl Money {
    pub fn new(currency: &str) -> Money {
        let (symbol, prefix) = match currency {
            "USD" => ("$", true),
            "EUR" => ("€", true),
            "GBP" => ("£", true),
            "JPY" => ("¥", true),
            "CAD" => ("CA$", true),
            "AUD" => ("A$", true),
            other => (other, false),
        };
        // A report of an old run without a recorded currency: plain amounts.
        let prefix = prefix || symbol.is_empty();
        Money {
            symbol: symbol.to_string(),
            prefix,
        }
    }

    /// The Excel number format of this currency's amounts.
    pub fn excel_format(&self) -> String {
        if self.prefix {
            format!("\"{}\"#,##0.00;-\"{}\"#,##0.00", self.symbol, self.symbol)
        } else {
            format!("#,##0.00 \"{}\"", self.symbol)
        }
    }

    /// An exact decimal text (`-1234.5650`) as `-$1,234.57`; NULL as "–".
    pub fn format(&self, decimal: Option<&str>) -> String {
        let Some(text) = decimal else { return "–".into() };
        let Some((negative, units, cents)) = cents(text) else { return text.to_string() };
        let amount = format!("{}.{cents:02}", group(&units.to_string()));
        let sign = if negative { "-" } else { "" };
        if self.prefix {
            format!("{sign}{}{amount}", self.symbol)
        } else {
            format!("{sign}{amount} {}", self.symbol)
        }
    }
}

/// A decimal text rounded half away from zero to cents: (negative, whole
/// units, cents). None when it is not a plain decimal.
fn cents(text: &str) -> Option<(bool, u128, u128)> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let units: u128 = int.parse().ok()?;
    let padded = format!("{frac:0<3}");
    let first_two: u128 = padded[..2].parse().ok()?;
    let round_up = padded.as_bytes()[2] >= b'5';
    let total = units * 100 + first_two + u128::from(round_up);
    let negative = negative && total > 0;
    Some((negative, total / 100, total % 100))
}

/// Thousands separators in a run of digits.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio as a percentage with one decimal: 0.9712 → "97.1%".
pub fn percent(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{:.1}%", v * 100.0),
        None => "–".into(),
    }
}

/// A plain ratio with two decimals (quick ratio).
pub fn ratio(v: Option<f64>) -> String {
    fixed(v, 2)
}

pub fn fixed(v: Option<f64>, decimals: usize) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".into(),
    }
}

/// A change with its sign: "+3.5", "-12.0".
pub fn signed(v: Option<f64>, decimals: usize) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:+.decimals$}"),
        None => "–".into(),
    }
}

/// An NPS-like score with one decimal.
pub fn score(v: Option<f64>) -> String {
    fixed(v, 1)
}

/// A count with thousands separators.
pub fn count(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => {
            let n = v.round() as i128;
            let s = group(&n.unsigned_abs().to_string());
            if n < 0 { format!("-{s}") } else { s }
        }
        None => "–".into(),
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// An ISO date's month as "Oct 2026".
pub fn month(date: &str) -> String {
    let mut parts = date.split('-');
    match (parts.next(), parts.next().and_then(|m| m.parse::<usize>().ok())) {
        (Some(y), Some(m)) if (1..=12).contains(&m) => format!("{} {y}", MONTHS[m - 1]),
        _ => date.to_string(),
    }
}

/// An ISO date's month as "Oct 26", for axis ticks.
pub fn short_month(date: &str) -> String {
    let mut parts = date.split('-');
    match (parts.next(), parts.next().and_then(|m| m.parse::<usize>().ok())) {
        (Some(y), Some(m)) if (1..=12).contains(&m) && y.len() == 4 => format!("{} {}", MONTHS[m - 1], &y[2..]),
        _ => date.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_rounded_from_the_exact_decimal() {
        let usd = Money::new("USD");
        assert_eq!(usd.format(Some("684589.5200")), "$684,589.52");
        assert_eq!(usd.format(Some("1234.5650")), "$1,234.57");
        assert_eq!(usd.format(Some("-1234.5649")), "-$1,234.56");
        assert_eq!(usd.format(Some("-0.0040")), "$0.00");
        assert_eq!(usd.format(Some("999.995")), "$1,000.00");
        assert_eq!(usd.format(Some("12")), "$12.00");
        assert_eq!(usd.format(None), "–");
        assert_eq!(Money::new("CHF").format(Some("1000000.1")), "1,000,000.10 CHF");
    }

    #[test]
    fn ratios_months_and_counts() {
        assert_eq!(percent(Some(0.97125)), "97.1%");
        assert_eq!(percent(Some(1.0456)), "104.6%");
        assert_eq!(percent(None), "–");
        assert_eq!(month("2026-10-01"), "Oct 2026");
        assert_eq!(short_month("2026-10-31"), "Oct 26");
        assert_eq!(count(Some(1234567.0)), "1,234,567");
        assert_eq!(signed(Some(-12.04), 1), "-12.0");
    }
}
