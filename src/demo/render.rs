//! Rendering events as EVENTS.md rows: one [`Fields`] writer for JSON Lines
//! ([`JsonLine`]) and CSV ([`CsvRow`]), the byte-level `push_*` formatters of
//! numbers, money, dates and timestamps, the varied but valid spellings of
//! values, and the streaming of a day's usage events. Every row it writes is
//! valid; bad rows are the job of `messy`.

use chrono::{Datelike, NaiveDate};

use super::model::{Campaign, Cust, Kind, Sparse, Sub, Usage};
use super::output::Out;
use super::rng::Rng;
use super::simulation::client_sec;
use super::world::{
    World, CANCEL_REASONS, COMMENTS, COUNTRIES, FAILURE_CODES, FEATURES, FEATURE_API, INDUSTRIES,
    OWNERS, PAUSE_REASONS, SEGMENTS, SOURCES,
};
use super::DemoError;

/// Where the fields of one event go: a JSON object or a CSV record.
pub(super) trait Fields {
    /// A string value (escaped and quoted in JSON).
    fn string(&mut self, key: &str, val: &[u8]);
    /// A value written as a bare JSON number.
    fn number(&mut self, key: &str, val: &[u8]);
}

#[derive(Default)]
pub(super) struct JsonLine {
    pub(super) buf: Vec<u8>,
}

impl JsonLine {
    pub(super) fn begin(&mut self) {
        self.buf.clear();
        self.buf.push(b'{');
    }
    pub(super) fn end(&mut self) {
        self.buf.extend_from_slice(b"}\n");
    }
    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }
}

impl Fields for JsonLine {
    fn string(&mut self, key: &str, val: &[u8]) {
        self.key(key);
        push_json_str(&mut self.buf, val);
    }
    fn number(&mut self, key: &str, val: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(val);
    }
}

/// Columns of the messy CSV object (every field of EVENTS.md).
pub(super) const CSV_COLUMNS: [&str; 25] = [
    "event_id",
    "event_type",
    "customer_id",
    "occurred_at",
    "subscription_id",
    "plan",
    "mrr",
    "currency",
    "seats",
    "amount",
    "payment_id",
    "feature",
    "user_id",
    "quantity",
    "ticket_id",
    "priority",
    "score",
    "campaign_id",
    "name",
    "segment",
    "country",
    "industry",
    "owner",
    "reason",
    "comment",
];

pub(super) struct CsvRow {
    pub(super) cells: Vec<Vec<u8>>,
}

impl CsvRow {
    pub(super) fn new() -> Self {
        CsvRow {
            cells: vec![Vec::new(); CSV_COLUMNS.len()],
        }
    }
}

impl Fields for CsvRow {
    fn string(&mut self, key: &str, val: &[u8]) {
        // Extra fields without a column (`failure_code`) are left out.
        if let Some(i) = CSV_COLUMNS.iter().position(|c| *c == key) {
            self.cells[i].clear();
            self.cells[i].extend_from_slice(val);
        }
    }
    fn number(&mut self, key: &str, val: &[u8]) {
        self.string(key, val);
    }
}

fn push_json_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    for &b in s {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[(b >> 4) as usize]);
                buf.push(HEX[(b & 15) as usize]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

fn push_u64(buf: &mut Vec<u8>, n: u64) {
    push_padded(buf, n, 1);
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(tmp.len() - width.min(tmp.len()));
    buf.extend_from_slice(&tmp[start..]);
}

/// Cents as a decimal: `99.9` / `490` when `short`, else always two decimals.
fn push_money(buf: &mut Vec<u8>, cents: i64, short: bool) {
    let (int, frac) = (cents / 100, cents % 100);
    push_u64(buf, int as u64);
    if !short {
        buf.push(b'.');
        push_padded(buf, frac as u64, 2);
    } else if frac % 10 == 0 && frac != 0 {
        buf.push(b'.');
        buf.push(b'0' + (frac / 10) as u8);
    } else if frac != 0 {
        buf.push(b'.');
        push_padded(buf, frac as u64, 2);
    }
}

fn date_bytes(d: NaiveDate) -> [u8; 10] {
    let mut v = Vec::with_capacity(10);
    push_date(&mut v, d, b'-');
    let mut out = [0u8; 10];
    out.copy_from_slice(&v[..10]);
    out
}

pub(super) fn push_date(buf: &mut Vec<u8>, d: NaiveDate, sep: u8) {
    push_padded(buf, d.year() as u64, 4);
    buf.push(sep);
    push_padded(buf, u64::from(d.month()), 2);
    buf.push(sep);
    push_padded(buf, u64::from(d.day()), 2);
}

/// The day being written and its neighbours (for timestamps in other offsets).
pub(super) struct DayStrs {
    prev: [u8; 10],
    cur: [u8; 10],
    next: [u8; 10],
}

impl DayStrs {
    pub(super) fn new(d: NaiveDate) -> Self {
        let prev = d.pred_opt().unwrap_or(d);
        let next = d.succ_opt().unwrap_or(d);
        DayStrs {
            prev: date_bytes(prev),
            cur: date_bytes(d),
            next: date_bytes(next),
        }
    }
    pub(super) fn cur_str(&self) -> &str {
        std::str::from_utf8(&self.cur).unwrap_or("1970-01-01")
    }
}

/// RFC 3339 for UTC second `sec` of the day, written in `offset` minutes (or `Z`).
pub(super) fn push_ts(
    buf: &mut Vec<u8>,
    days: &DayStrs,
    sec: u32,
    millis: Option<u32>,
    offset: Option<i32>,
) {
    let off = offset.unwrap_or(0);
    let local = i64::from(sec) + i64::from(off) * 60;
    let (date, s) = if local < 0 {
        (&days.prev, local + 86_400)
    } else if local >= 86_400 {
        (&days.next, local - 86_400)
    } else {
        (&days.cur, local)
    };
    let s = s as u64;
    buf.extend_from_slice(date);
    buf.push(b'T');
    push_padded(buf, s / 3600, 2);
    buf.push(b':');
    push_padded(buf, s / 60 % 60, 2);
    buf.push(b':');
    push_padded(buf, s % 60, 2);
    if let Some(ms) = millis {
        buf.push(b'.');
        push_padded(buf, u64::from(ms), 3);
    }
    match offset {
        None => buf.push(b'Z'),
        Some(o) => {
            buf.push(if o < 0 { b'-' } else { b'+' });
            let a = u64::from(o.unsigned_abs());
            push_padded(buf, a / 60, 2);
            buf.push(b':');
            push_padded(buf, a % 60, 2);
        }
    }
}

pub(super) fn push_event_id(buf: &mut Vec<u8>, id: u64) {
    buf.extend_from_slice(b"evt_");
    push_padded(buf, id, 10);
}

/// `prefix_<customer digits>_<n>`: subscription, payment, ticket and user ids.
fn push_child_id(buf: &mut Vec<u8>, prefix: &[u8], c: &Cust, n: u64, width: usize) {
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(&c.id.as_bytes()[4..]);
    buf.push(b'_');
    push_padded(buf, n, width);
}

/// Money as a JSON number (`99.9`, `99.90`) or a string (`"99.90"`).
fn money_field<F: Fields>(f: &mut F, rng: &mut Rng, s: &mut Vec<u8>, key: &str, cents: i64) {
    let r = rng.f64();
    s.clear();
    push_money(s, cents, r < 0.55);
    if r < 0.70 {
        f.number(key, s);
    } else {
        f.string(key, s);
    }
}

/// Mostly a JSON number, sometimes a numeric string.
fn int_field<F: Fields>(f: &mut F, rng: &mut Rng, s: &mut Vec<u8>, key: &str, v: u64) {
    s.clear();
    push_u64(s, v);
    if rng.chance(0.1) {
        f.string(key, s);
    } else {
        f.number(key, s);
    }
}

/// The reporting currency is mostly implied, sometimes explicit (in any case).
fn currency_field<F: Fields>(f: &mut F, rng: &mut Rng) {
    let r = rng.f64();
    if r < 0.35 {
        f.string("currency", b"USD");
    } else if r < 0.40 {
        f.string("currency", b"usd");
    }
}

fn campaign_id(s: &mut Vec<u8>, w: &World, campaign: Campaign) {
    s.clear();
    match campaign {
        Campaign::Newsletter(d) => {
            s.extend_from_slice(b"nl_");
            push_date(s, w.date(d), b'_');
        }
        Campaign::Onboarding => s.extend_from_slice(b"onb_welcome"),
        Campaign::Winback(d) => {
            s.extend_from_slice(b"wb_");
            push_date(s, w.date(d), b'_');
        }
    }
}

fn sub_fields<F: Fields>(
    f: &mut F,
    rng: &mut Rng,
    s: &mut Vec<u8>,
    c: &Cust,
    sub: &Sub,
    plan_p: f64,
) {
    s.clear();
    push_child_id(s, b"sub_", c, u64::from(sub.no), 1);
    f.string("subscription_id", s);
    money_field(f, rng, s, "mrr", sub.mrr);
    if rng.chance(plan_p) {
        f.string("plan", sub.plan_name().as_bytes());
    }
    currency_field(f, rng);
    if !sub.is_addon() {
        int_field(f, rng, s, "seats", u64::from(sub.seats));
    }
}

fn priority_field<F: Fields>(f: &mut F, rng: &mut Rng, priority: u8) {
    let text: Option<&[u8]> = match priority {
        0 => Some(b"low"),
        1 if rng.chance(0.3) => None, // the default
        1 => Some(b"normal"),
        2 if rng.chance(0.3) => Some(b"High"),
        2 => Some(b"high"),
        _ if rng.chance(0.2) => Some(b"URGENT"),
        _ => Some(b"urgent"),
    };
    if let Some(t) = text {
        f.string("priority", t);
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn render_sparse<F: Fields>(
    f: &mut F,
    rng: &mut Rng,
    s: &mut Vec<u8>,
    id: u64,
    days: &DayStrs,
    w: &World,
    c: &Cust,
    ev: &Sparse,
) {
    s.clear();
    push_event_id(s, id);
    f.string("event_id", s);
    f.string("event_type", ev.kind.event_type().as_bytes());
    f.string("customer_id", c.id.as_bytes());
    s.clear();
    if ev.kind.is_client_side() {
        let millis = rng.chance(0.3).then(|| rng.below(1000) as u32);
        push_ts(s, days, ev.sec, millis, c.ts_off);
    } else {
        push_ts(s, days, ev.sec, None, None);
    }
    f.string("occurred_at", s);
    match ev.kind {
        Kind::Created => {
            f.string("name", c.name.as_bytes());
            f.string("segment", SEGMENTS[c.seg0 as usize].as_bytes());
            if rng.chance(0.95) {
                f.string("country", COUNTRIES[c.country as usize].0.as_bytes());
            }
            f.string("industry", INDUSTRIES[c.industry as usize].as_bytes());
            f.string("owner", OWNERS[c.owner0 as usize].as_bytes());
        }
        Kind::Updated { segment, owner } => {
            if let Some(seg) = segment {
                f.string("segment", SEGMENTS[seg as usize].as_bytes());
            }
            if let Some(o) = owner {
                f.string("owner", OWNERS[o as usize].as_bytes());
            }
        }
        Kind::SubStarted(sub) => sub_fields(f, rng, s, c, &sub, 0.9),
        Kind::SubChanged(sub) | Kind::SubResumed(sub) => sub_fields(f, rng, s, c, &sub, 1.0),
        Kind::SubPaused { sub, reason } => {
            s.clear();
            push_child_id(s, b"sub_", c, u64::from(sub.no), 1);
            f.string("subscription_id", s);
            if rng.chance(0.5) {
                f.string("plan", sub.plan_name().as_bytes());
            }
            f.string("reason", PAUSE_REASONS[reason as usize].as_bytes());
        }
        Kind::SubCancelled { no, reason } => {
            s.clear();
            push_child_id(s, b"sub_", c, u64::from(no), 1);
            f.string("subscription_id", s);
            f.string("reason", CANCEL_REASONS[reason as usize].as_bytes());
        }
        Kind::PaySucceeded { pay, amount } | Kind::PayRefunded { pay, amount } => {
            money_field(f, rng, s, "amount", amount);
            s.clear();
            push_child_id(s, b"pay_", c, u64::from(pay), 4);
            f.string("payment_id", s);
            currency_field(f, rng);
        }
        Kind::PayFailed { pay, amount, code } => {
            money_field(f, rng, s, "amount", amount);
            s.clear();
            push_child_id(s, b"pay_", c, u64::from(pay), 4);
            f.string("payment_id", s);
            currency_field(f, rng);
            f.string("failure_code", FAILURE_CODES[code as usize].as_bytes());
        }
        Kind::TicketOpened { ticket, priority } | Kind::TicketResolved { ticket, priority } => {
            s.clear();
            push_child_id(s, b"tkt_", c, u64::from(ticket), 4);
            f.string("ticket_id", s);
            priority_field(f, rng, priority);
        }
        Kind::Nps { score, comment } => {
            int_field(f, rng, s, "score", u64::from(score));
            if comment > 0 {
                f.string("comment", COMMENTS[comment as usize].as_bytes());
            }
        }
        Kind::Csat { score } => int_field(f, rng, s, "score", u64::from(score)),
        Kind::EmailSent(cmp) | Kind::EmailOpened(cmp) | Kind::EmailClicked(cmp) => {
            if !rng.chance(0.02) {
                campaign_id(s, w, cmp);
                f.string("campaign_id", s);
            }
        }
        Kind::Login => {
            s.clear();
            push_child_id(s, b"usr_", c, 0, 3);
            f.string("user_id", s);
        }
    }
}

/// The usage events of one customer on one active day, straight into the object.
pub(super) fn write_usage_day(
    out: &mut Out,
    json: &mut JsonLine,
    rng: &mut Rng,
    days: &DayStrs,
    c: &Cust,
    u: &Usage,
    scale: f64,
) -> Result<(), DemoError> {
    let extra = (u.mean - 1.0) * scale * (0.5 + rng.f64());
    let n = 1 + rng.round(extra);
    let users_today = u64::from(c.users).min(n.div_ceil(4).max(1));
    let base_user = rng.below(u64::from(c.users));
    for j in 0..n {
        let id = out.next_id();
        let user = (base_user + j % users_today) % u64::from(c.users);
        let sec = client_sec(rng, c.home_off);
        let millis = rng.chance(0.4).then(|| rng.below(1000) as u32);
        let (event_type, feature): (&[u8], Option<u8>) = if j < users_today {
            (b"usage.login", None)
        } else if rng.below(100) < 8 {
            (b"usage.api_request", Some(FEATURE_API))
        } else {
            (
                b"usage.feature_used",
                Some(c.features[rng.below(u.breadth) as usize]),
            )
        };
        let b = &mut json.buf;
        b.clear();
        b.extend_from_slice(b"{\"event_id\":\"");
        push_event_id(b, id);
        b.extend_from_slice(b"\",\"event_type\":\"");
        b.extend_from_slice(event_type);
        b.extend_from_slice(b"\",\"customer_id\":\"");
        b.extend_from_slice(c.id.as_bytes());
        b.extend_from_slice(b"\",\"occurred_at\":\"");
        push_ts(b, days, sec, millis, c.ts_off);
        b.extend_from_slice(b"\",\"user_id\":\"");
        push_child_id(b, b"usr_", c, user, 3);
        b.push(b'"');
        if let Some(feat) = feature {
            b.extend_from_slice(b",\"feature\":\"");
            b.extend_from_slice(FEATURES[feat as usize].as_bytes());
            b.extend_from_slice(b"\",\"quantity\":");
            push_quantity(b, rng, feat, event_type == b"usage.api_request");
        }
        if rng.chance(0.3) {
            b.extend_from_slice(b",\"source\":\"");
            b.extend_from_slice(SOURCES[rng.below(3) as usize].as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b"}\n");
        out.valid_line(&json.buf, id)?;
    }
    Ok(())
}

fn push_quantity(b: &mut Vec<u8>, rng: &mut Rng, feature: u8, api_request: bool) {
    let q = match (feature, api_request) {
        (_, true) => rng.range(1, 500),
        (2, _) => {
            // exports: megabytes with one decimal
            let tenths = u64::from(rng.range(5, 500));
            push_u64(b, tenths / 10);
            b.push(b'.');
            push_u64(b, tenths % 10);
            return;
        }
        (0, _) => rng.range(1, 6),
        (3, _) => rng.range(1, 200),
        (4, _) => 1,
        (5, _) => rng.range(1, 4),
        (6, _) => rng.range(1, 20),
        _ => rng.range(1, 3),
    };
    push_u64(b, u64::from(q));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_timestamps_render_exactly() {
        let mut b = Vec::new();
        push_money(&mut b, 9990, true);
        b.push(b' ');
        push_money(&mut b, 9990, false);
        b.push(b' ');
        push_money(&mut b, 49000, true);
        b.push(b' ');
        push_money(&mut b, 5, true);
        assert_eq!(b, b"99.9 99.90 490 0.05");
        let days = DayStrs::new(NaiveDate::from_ymd_opt(2025, 11, 22).expect("valid date"));
        b.clear();
        push_ts(&mut b, &days, 86_000, Some(7), Some(540));
        assert_eq!(b, b"2025-11-23T08:53:20.007+09:00");
        b.clear();
        push_ts(&mut b, &days, 3_600, None, Some(-300));
        assert_eq!(b, b"2025-11-21T20:00:00-05:00");
    }
}
