//! Messy mode: what real landing zones contain besides valid rows. Duplicates
//! of valid rows ([`DupKind`]: exact, in the same object, in another offset,
//! conflicting), hand-written bad rows of every reject reason ([`bad_row`]),
//! valid rows at the edges of the contract ([`edge_row`]), blank lines, a CSV
//! export, an empty object, and files the pipeline must skip or ignore. Which
//! day gets what is fixed by the length of the history alone ([`Messy::day`]).

use std::io;

use super::model::Plan;
use super::output::{Encoding, Out};
use super::render::{push_date, push_event_id, push_ts, CsvRow, DayStrs, Fields, CSV_COLUMNS};
use super::world::World;
use super::DemoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DupKind {
    /// The same bytes in a later object.
    Exact,
    /// The same bytes right after the original.
    SameObject,
    /// The same instant written as `+00:00` instead of `Z`: not a conflict.
    OtherOffset,
    /// The same `event_id` an hour later: a conflicting duplicate.
    Conflict,
}

impl DupKind {
    pub(super) fn cycle(i: usize) -> DupKind {
        match i % 8 {
            4 => DupKind::SameObject,
            5 => DupKind::OtherOffset,
            6 => DupKind::Conflict,
            _ => DupKind::Exact,
        }
    }

    /// The duplicate row, and whether its payload conflicts with the original.
    pub(super) fn render(self, line: &[u8]) -> (Vec<u8>, bool) {
        let ts = ts_value_range(line);
        match (self, ts) {
            (DupKind::OtherOffset, Some((_, end))) if line[end - 1] == b'Z' => {
                let mut v = line[..end - 1].to_vec();
                v.extend_from_slice(b"+00:00");
                v.extend_from_slice(&line[end..]);
                (v, false)
            }
            (DupKind::Conflict, Some((start, end)))
                if end - start >= 13 && line[start + 10] == b'T' =>
            {
                let hour =
                    u32::from(line[start + 11] - b'0') * 10 + u32::from(line[start + 12] - b'0');
                let hour = (hour + 1) % 24;
                let mut v = line.to_vec();
                v[start + 11] = b'0' + (hour / 10) as u8;
                v[start + 12] = b'0' + (hour % 10) as u8;
                (v, true)
            }
            _ => (line.to_vec(), false),
        }
    }
}

/// Byte range of the `occurred_at` value (inside the quotes).
fn ts_value_range(line: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"occurred_at\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
    Some((start, start + len))
}

pub(super) struct PendingDup {
    pub(super) emit_day: u32,
    pub(super) line: Vec<u8>,
    pub(super) kind: DupKind,
}

/// What is special about one day in messy mode.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DayMessy {
    pub(super) encoding: Encoding,
    pub(super) crlf: bool,
    pub(super) bom: bool,
    pub(super) csv: bool,
    pub(super) empty_object: bool,
    blank: Option<usize>,
    edge_rows: bool,
    fixed_pair: bool,
    reuse_valid_id: bool,
}

/// Number of hand-written bad rows, spread over the history.
const BAD_ROWS: usize = 37;
const BLANK_LINES: [&[u8]; 4] = [b"\n", b"   \n", b"\t\n", b"\r\n"];

pub(super) struct Messy {
    hist_days: u32,
    /// Customer used by the edge rows (active at the end if any is).
    edge_customer: String,
    other_customer: String,
}

impl Messy {
    pub(super) fn new(w: &World, plan: &Plan) -> Messy {
        let active = plan
            .customers
            .iter()
            .find(|c| !c.final_subs.is_empty())
            .unwrap_or(&plan.customers[0]);
        let other = &plan.customers[plan.customers.len() / 2];
        Messy {
            hist_days: w.last + 1,
            edge_customer: active.id.clone(),
            other_customer: other.id.clone(),
        }
    }

    fn at(&self, percent: u32) -> u32 {
        self.hist_days * percent / 100
    }

    pub(super) fn day(&self, d: u32) -> DayMessy {
        if d >= self.hist_days {
            return DayMessy::default();
        }
        let encoding = if d == self.at(50) {
            Encoding::Gzip
        } else if d == self.at(60) {
            Encoding::Zstd
        } else if d == self.at(70) {
            Encoding::Ndjson
        } else if d == self.at(80) {
            Encoding::Json
        } else {
            Encoding::Jsonl
        };
        DayMessy {
            encoding,
            crlf: encoding == Encoding::Ndjson,
            bom: d == self.at(30),
            csv: d == self.at(40),
            empty_object: d == self.at(45),
            blank: (1..=10u32).position(|k| self.hist_days * k / 11 == d),
            edge_rows: d == self.hist_days.saturating_sub(13),
            fixed_pair: d == self.at(55),
            reuse_valid_id: d == self.at(65),
        }
    }

    fn bad_day(&self, i: usize) -> u32 {
        1.min(self.hist_days - 1) + (i as u32 * self.hist_days.saturating_sub(2) / BAD_ROWS as u32)
    }

    pub(super) fn write_day_extras(
        &self,
        out: &mut Out,
        s: &mut Vec<u8>,
        d: u32,
        days: &DayStrs,
        dm: &DayMessy,
    ) -> Result<(), DemoError> {
        let day = days.cur_str();
        for i in (0..BAD_ROWS).filter(|&i| self.bad_day(i) == d) {
            let id = out.next_id();
            s.clear();
            push_event_id(s, id);
            let id = String::from_utf8_lossy(s).into_owned();
            let (row, _reason) = bad_row(i, &id, &self.other_customer, day);
            out.bad_line(format!("{row}\n").as_bytes())?;
        }
        if let Some(k) = dm.blank {
            out.line(BLANK_LINES[k % BLANK_LINES.len()])?;
        }
        if dm.edge_rows {
            for i in 0..EDGE_ROWS {
                let id = out.next_id();
                s.clear();
                push_event_id(s, id);
                let ids = String::from_utf8_lossy(s).into_owned();
                let row = edge_row(i, &ids, &self.edge_customer, day);
                out.valid_line(format!("{row}\n").as_bytes(), id)?;
            }
        }
        if dm.fixed_pair {
            // Rejected first, then sent again fixed: the fix is accepted (rule 12).
            let cus = &self.other_customer;
            let bad = format!(
                "{{\"event_id\":\"evt_fix_0001\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T11:00:00Z\",\"amount\":\"12.345678\"}}\n"
            );
            out.bad_line(bad.as_bytes())?;
            let fixed = format!(
                "{{\"event_id\":\"evt_fix_0001\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T11:05:00Z\",\"amount\":\"12.35\",\"payment_id\":\"pay_fix_0001\"}}\n"
            );
            out.line(fixed.as_bytes())?;
            out.summary.events += 1;
        }
        if dm.reuse_valid_id && out.last_valid_id > 0 {
            // A bad row reusing an accepted id is a reject, not a duplicate (rule 12).
            s.clear();
            push_event_id(s, out.last_valid_id);
            let id = String::from_utf8_lossy(s).into_owned();
            let cus = &self.other_customer;
            let bad = format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T12:00:00Z\",\"payment_id\":\"pay_missing_amount\"}}\n"
            );
            out.bad_line(bad.as_bytes())?;
        }
        Ok(())
    }

    /// The helpdesk export of the day (CRLF, quoted fields, one malformed record).
    pub(super) fn csv_object(
        &self,
        out: &mut Out,
        rows: &[Vec<Vec<u8>>],
        days: &DayStrs,
    ) -> Result<Vec<u8>, DemoError> {
        let path = out.root.join(&out.day_rel).join("helpdesk-export.csv");
        let err = |e: csv::Error| DemoError::Write {
            path: path.clone(),
            source: io::Error::from(e),
        };
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        w.write_record(CSV_COLUMNS).map_err(err)?;
        for row in rows {
            w.write_record(row).map_err(err)?;
        }
        // A valid row whose name needs quoting.
        let id = out.next_id();
        let mut s = Vec::new();
        push_event_id(&mut s, id);
        let mut row = CsvRow::new();
        row.string("event_id", &s);
        row.string("event_type", b"customer.updated");
        row.string("customer_id", self.other_customer.as_bytes());
        s.clear();
        push_ts(&mut s, days, 43_200, None, None);
        row.string("occurred_at", &s);
        row.string("name", "Northwind Labs, Inc. (\"NWL\")".as_bytes());
        w.write_record(&row.cells).map_err(err)?;
        out.summary.events += 1;
        // A record with too few cells: malformed.
        let id = out.next_id();
        s.clear();
        push_event_id(&mut s, id);
        w.write_record([
            s.as_slice(),
            &b"support.ticket_opened"[..],
            self.other_customer.as_bytes(),
        ])
        .map_err(err)?;
        out.summary.bad_rows += 1;
        w.into_inner().map_err(|e| DemoError::Write {
            path: path.clone(),
            source: e.into_error(),
        })
    }

    /// Files the pipeline must skip (`notes.txt`) or ignore (`_` and `.` segments).
    pub(super) fn write_side_files(&self, out: &mut Out, w: &World) -> Result<(), DemoError> {
        let mut rel = Vec::new();
        rel.extend_from_slice(b"events/");
        push_date(&mut rel, w.date(self.at(50)), b'/');
        let day_rel = String::from_utf8_lossy(&rel).into_owned();
        let cus = &self.edge_customer;
        let ts = "2000-01-01T00:00:00Z";
        let line = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}"}}"#
            ) + "\n"
        };
        out.whole_object("_SUCCESS", b"", false)?;
        out.whole_object(&format!("{day_rel}/_SUCCESS"), b"", false)?;
        out.whole_object(
            "notes.txt",
            b"Demo data written by `tenure demo`. This file is not an event object and is skipped.\n",
            false,
        )?;
        out.whole_object(
            "_tmp/part-0000.jsonl",
            (line("evt_tmp_1") + &line("evt_tmp_2")).as_bytes(),
            false,
        )?;
        out.whole_object(
            &format!("{day_rel}/.part-0001.jsonl"),
            line("evt_hidden_1").as_bytes(),
            false,
        )?;
        Ok(())
    }
}

/// The `i`-th hand-written bad row and the reject reason EVENTS.md gives it.
fn bad_row(i: usize, id: &str, cus: &str, day: &str) -> (String, &'static str) {
    let ts = format!("{day}T10:{:02}:00Z", i % 60);
    let env = |t: &str| {
        format!(
            r#""event_id":"{id}","event_type":"{t}","customer_id":"{cus}","occurred_at":"{ts}""#
        )
    };
    let (y, m, dd) = (&day[..4], &day[5..7], &day[8..10]);
    match i {
        0 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}""#
            ),
            "malformed",
        ),
        1 => ("this is not json at all".to_string(), "malformed"),
        2 => (
            format!(r#"["{id}","usage.login","{cus}","{ts}"]"#),
            "malformed",
        ),
        3 => (
            format!(
                r#"{{{},"feature":"reports","quantity":NaN}}"#,
                env("usage.feature_used")
            ),
            "malformed",
        ),
        4 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":true,"occurred_at":"{ts}"}}"#
            ),
            "malformed",
        ),
        5 => (
            format!(r#"{{"event_id":"{id}","event_type":"usage.login","occurred_at":"{ts}"}}"#),
            "missing_field",
        ),
        6 => (
            format!(
                r#"{{"event_id":"","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}"}}"#
            ),
            "missing_field",
        ),
        7 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"email.opened","customer_id":"{cus}","occurred_at":null,"campaign_id":"nl_x"}}"#
            ),
            "missing_field",
        ),
        8 => (
            format!(r#"{{{},"amount":120}}"#, env("invoice.created")),
            "unknown_event_type",
        ),
        9 => (
            format!(r#"{{{}}}"#, env("Usage.login")),
            "unknown_event_type",
        ),
        10 => (
            format!(
                r#"{{{},"subscription_id":"sub_x","mrr":10}}"#,
                env("subscription.renewed")
            ),
            "unknown_event_type",
        ),
        11 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{y}-13-01T10:00:00Z"}}"#
            ),
            "bad_timestamp",
        ),
        12 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}"}}"#
            ),
            "bad_timestamp",
        ),
        13 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}T23:59:60Z"}}"#
            ),
            "bad_timestamp",
        ),
        14 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{dd}/{m}/{y} 10:00"}}"#
            ),
            "bad_timestamp",
        ),
        15 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}T10:00:00+24:00"}}"#
            ),
            "bad_timestamp",
        ),
        16 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_16","plan":"growth"}}"#,
                env("subscription.started")
            ),
            "missing_field",
        ),
        17 => (
            format!(
                r#"{{{},"payment_id":"pay_bad_17"}}"#,
                env("payment.succeeded")
            ),
            "missing_field",
        ),
        18 => (
            format!(r#"{{{},"priority":"high"}}"#, env("support.ticket_opened")),
            "missing_field",
        ),
        19 => (
            format!(r#"{{{},"score":null}}"#, env("survey.nps")),
            "missing_field",
        ),
        20 => (
            format!(
                r#"{{{},"subscription_id":""}}"#,
                env("subscription.cancelled")
            ),
            "missing_field",
        ),
        21 => (
            format!(r#"{{{},"amount":1.23456}}"#, env("payment.succeeded")),
            "bad_number",
        ),
        22 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_22","mrr":"12,50"}}"#,
                env("subscription.changed")
            ),
            "bad_number",
        ),
        23 => (
            format!(
                r#"{{{},"feature":"reports","quantity":"abc"}}"#,
                env("usage.feature_used")
            ),
            "bad_number",
        ),
        24 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_24","mrr":100,"seats":2.5}}"#,
                env("subscription.changed")
            ),
            "bad_number",
        ),
        25 => (
            format!(r#"{{{},"score":"nine"}}"#, env("survey.csat")),
            "bad_number",
        ),
        26 => (
            format!(r#"{{{},"quantity":true}}"#, env("usage.login")),
            "bad_number",
        ),
        27 => (
            format!(r#"{{{},"amount":"+10"}}"#, env("payment.succeeded")),
            "bad_number",
        ),
        28 => (
            format!(r#"{{{},"amount":-49.00}}"#, env("payment.refunded")),
            "negative_amount",
        ),
        29 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_29","mrr":"-5.00"}}"#,
                env("subscription.started")
            ),
            "negative_amount",
        ),
        30 => (
            format!(r#"{{{},"score":11}}"#, env("survey.nps")),
            "score_out_of_range",
        ),
        31 => (
            format!(r#"{{{},"score":0}}"#, env("survey.csat")),
            "score_out_of_range",
        ),
        32 => (
            format!(r#"{{{},"score":"-1"}}"#, env("survey.nps")),
            "score_out_of_range",
        ),
        33 => (
            format!(
                r#"{{{},"ticket_id":"tkt_bad_33","priority":"critical"}}"#,
                env("support.ticket_opened")
            ),
            "bad_priority",
        ),
        34 => (
            format!(
                r#"{{{},"ticket_id":"tkt_bad_34","priority":"P1"}}"#,
                env("support.ticket_resolved")
            ),
            "bad_priority",
        ),
        35 => (
            format!(
                r#"{{{},"amount":99,"currency":"EUR"}}"#,
                env("payment.succeeded")
            ),
            "unsupported_currency",
        ),
        _ => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_36","mrr":49,"currency":"eur"}}"#,
                env("subscription.started")
            ),
            "unsupported_currency",
        ),
    }
}

/// The reject reason of every row messy mode plants in a history long enough
/// for all its special days: the hand-written bad rows, the first row of the
/// fixed pair (an amount with six decimals), the bad row that reuses an
/// accepted id (no amount) and the CSV record with too few cells.
#[cfg(test)]
pub(super) fn planted_reasons() -> std::collections::BTreeMap<&'static str, u64> {
    let hand_written =
        (0..BAD_ROWS).map(|i| bad_row(i, "evt_0000000001", "cus_00000", "2025-01-01").1);
    let mut reasons = std::collections::BTreeMap::new();
    for reason in hand_written.chain(["bad_number", "missing_field", "malformed"]) {
        *reasons.entry(reason).or_default() += 1;
    }
    reasons
}

/// Number of valid rows that exercise the edges of the contract.
const EDGE_ROWS: usize = 15;

/// The `i`-th valid edge-case row (accepted by EVENTS.md, awkward to parse).
fn edge_row(i: usize, id: &str, cus: &str, day: &str) -> String {
    let head = |t: &str, ts: &str| {
        format!(
            r#""event_id":"{id}","event_type":"{t}","customer_id":"{cus}","occurred_at":"{ts}""#
        )
    };
    let t = |hm: &str| format!("{day}T{hm}:00Z");
    match i {
        0 => format!("{{{}}}", head("usage.login", &format!("{day} 10:00:00"))),
        1 => format!("{{{}}}", head("usage.login", &format!("{day}t10:05:00z"))),
        2 => format!(
            r#"{{{},"feature":"reports","quantity":"2.5e1"}}"#,
            head(
                "usage.feature_used",
                &format!("{day}T10:10:00.123456789+0530")
            )
        ),
        3 => format!(
            r#"{{{},"feature":"dashboards","quantity":1E2,"feature":"alerts"}}"#,
            head("usage.feature_used", &t("10:15"))
        ),
        4 => format!(
            r#"{{{},"score":"9.0","comment":null}}"#,
            head("survey.nps", &t("10:20"))
        ),
        5 => format!(r#"{{{},"score":4.0}}"#, head("survey.csat", &t("10:25"))),
        6 => format!(
            r#"{{{},"ticket_id":98765,"priority":"URGENT"}}"#,
            head("support.ticket_opened", &t("10:30"))
        ),
        7 => format!(
            r#"{{{},"ticket_id":"98765","priority":"Urgent"}}"#,
            head("support.ticket_resolved", &t("10:35"))
        ),
        8 => format!(
            r#"{{{},"amount":"1.50000","currency":"usd","payment_id":"pay_edge_1"}}"#,
            head("payment.succeeded", &t("10:40"))
        ),
        9 => format!(
            r#"{{{},"amount":-0,"payment_id":"pay_edge_1"}}"#,
            head("payment.refunded", &t("10:45"))
        ),
        10 => format!(
            r#"{{{},"amount":2.5e1,"currency":"USD","payment_id":"pay_edge_2"}}"#,
            head("payment.succeeded", &t("10:50"))
        ),
        11 => format!(
            r#"{{{},"segment":"","owner":"grace.kim","crm":{{"synced":true,"tags":["vip"]}}}}"#,
            head("customer.updated", &t("10:55"))
        ),
        12 => format!(
            r#"{{{},"campaign_id":null}}"#,
            head("email.sent", &t("11:00"))
        ),
        13 => format!(
            r#"{{{},"user_id":1234,"quantity":0.25,"source":"api"}}"#,
            head("usage.api_request", &t("11:05"))
        ),
        _ => format!(
            r#"{{{},"priority":"critical"}}"#,
            head("usage.login", &format!("{day}T11:10:00-05:00"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_variants_keep_or_change_the_payload() {
        let line = br#"{"event_id":"evt_1","occurred_at":"2025-01-02T23:10:00Z","amount":1}"#;
        let (same, conflict) = DupKind::OtherOffset.render(line);
        assert!(!conflict);
        assert!(same.windows(25).any(|w| w == b"2025-01-02T23:10:00+00:00"));
        let (other, conflict) = DupKind::Conflict.render(line);
        assert!(conflict);
        assert!(other.windows(19).any(|w| w == b"2025-01-02T00:10:00"));
    }
}
