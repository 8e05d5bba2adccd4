//! Tests of the generator as a whole: determinism, option errors, and that
//! every row it writes is a valid event or a reject it meant to plant.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use chrono::NaiveDate;

use super::*;

fn small(end: NaiveDate) -> DemoOptions {
    DemoOptions {
        customers: 40,
        months: 6,
        end_date: end,
        seed: 7,
        target_events: None,
        messy: true,
    }
}

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 11, 22).expect("valid date")
}

/// Every file under `dir`, by path relative to it (`/`-separated), sorted bytewise.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn same_options_give_identical_bytes() {
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let opts = small(end());
    let sa = generate(a.path(), &opts).expect("generate a");
    let sb = generate(b.path(), &opts).expect("generate b");
    assert_eq!(sa, sb);
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(fb[k] == *v, "{k} differs between runs");
    }
    let other = generate(
        tempfile::tempdir().expect("tempdir").path(),
        &DemoOptions { seed: 8, ..opts },
    )
    .expect("generate other seed");
    assert_ne!(other, sa, "another seed gives other data");
}

#[test]
fn bad_options_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DemoOptions {
        customers: 0,
        ..small(end())
    };
    assert!(matches!(
        generate(dir.path(), &opts),
        Err(DemoError::EmptyHistory { .. })
    ));
}

// --- a small reference reader of EVENTS.md, enough to classify demo rows ---

enum Str {
    Missing,
    Some(String),
    Malformed,
}

fn get_str(o: &serde_json::Map<String, serde_json::Value>, k: &str) -> Str {
    use serde_json::Value;
    match o.get(k) {
        None | Some(Value::Null) => Str::Missing,
        Some(Value::String(s)) if s.is_empty() => Str::Missing,
        Some(Value::String(s)) => Str::Some(s.clone()),
        Some(Value::Number(n)) => Str::Some(n.to_string()),
        Some(_) => Str::Malformed,
    }
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
}

fn is_numeric(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    is_decimal(mant) && exp_ok
}

/// Text of a numeric field; Err(()) when not a number or numeric string.
fn num_text(v: &serde_json::Value) -> Result<Option<String>, ()> {
    use serde_json::Value;
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(()),
    }
}

fn check_money(v: Option<&serde_json::Value>, required: bool) -> Result<(), &'static str> {
    let text = match v.map(num_text) {
        None | Some(Ok(None)) if required => return Err("missing_field"),
        None | Some(Ok(None)) => return Ok(()),
        Some(Err(())) => return Err("bad_number"),
        Some(Ok(Some(t))) => t,
    };
    let is_json_number = matches!(v, Some(serde_json::Value::Number(_)));
    let value: f64 = if is_json_number || is_decimal(&text) {
        text.parse().map_err(|_| "bad_number")?
    } else {
        return Err("bad_number");
    };
    // at most 4 fractional digits
    if ((value * 10_000.0).round() - value * 10_000.0).abs() > 1e-6 {
        return Err("bad_number");
    }
    if value < 0.0 {
        return Err("negative_amount");
    }
    Ok(())
}

fn check_num(v: Option<&serde_json::Value>, integer: bool) -> Result<Option<f64>, &'static str> {
    let text = match v.map(num_text) {
        None | Some(Ok(None)) => return Ok(None),
        Some(Err(())) => return Err("bad_number"),
        Some(Ok(Some(t))) => t,
    };
    let is_json_number = matches!(v, Some(serde_json::Value::Number(_)));
    if !is_json_number && !is_numeric(&text) {
        return Err("bad_number");
    }
    let x: f64 = text.parse().map_err(|_| "bad_number")?;
    if !x.is_finite() || (integer && x.fract() != 0.0) {
        return Err("bad_number");
    }
    Ok(Some(x))
}

fn check_ts(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || &b[17..19] == b"60" {
        return false;
    }
    let mut norm = format!("{}T{}", &s[..10], &s[11..]);
    let tail_start = norm[19..].find(['Z', 'z', '+', '-']).map(|i| i + 19);
    match tail_start {
        None => norm.push('Z'),
        Some(i) => {
            let off = norm[i..].to_string();
            if off.eq_ignore_ascii_case("z") {
                norm.replace_range(i.., "Z");
            } else {
                let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
                if digits.len() != 4 || digits[..2].parse::<u32>().map_or(true, |h| h >= 24) {
                    return false;
                }
                norm.replace_range(
                    i..,
                    &format!("{}{}:{}", &off[..1], &digits[..2], &digits[2..]),
                );
            }
        }
    }
    chrono::DateTime::parse_from_rfc3339(&norm).is_ok()
}

/// The reject reason of a parsed row, or its event_id and type when accepted.
fn classify(v: &serde_json::Value) -> Result<(String, String), &'static str> {
    let Some(o) = v.as_object() else {
        return Err("malformed");
    };
    let mut env = Vec::new();
    for k in ["event_id", "event_type", "customer_id", "occurred_at"] {
        match get_str(o, k) {
            Str::Malformed => return Err("malformed"),
            Str::Missing => env.push(None),
            Str::Some(s) => env.push(Some(s)),
        }
    }
    if env.iter().any(Option::is_none) {
        return Err("missing_field");
    }
    let [Some(id), Some(t), Some(_), Some(ts)] =
        <[Option<String>; 4]>::try_from(env).expect("four")
    else {
        unreachable!()
    };
    const KNOWN: [&str; 17] = [
        "customer.created",
        "customer.updated",
        "subscription.started",
        "subscription.changed",
        "subscription.resumed",
        "subscription.paused",
        "subscription.cancelled",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "support.ticket_opened",
        "support.ticket_resolved",
        "survey.nps",
        "survey.csat",
        "email.sent",
        "email.opened",
        "email.clicked",
    ];
    if !KNOWN.contains(&t.as_str()) && !t.starts_with("usage.") {
        return Err("unknown_event_type");
    }
    if !check_ts(&ts) {
        return Err("bad_timestamp");
    }
    let present = |k: &str| matches!(get_str(o, k), Str::Some(_));
    let family = t.split('.').next().unwrap_or("");
    let required: &[&str] = match t.as_str() {
        "subscription.started" | "subscription.changed" | "subscription.resumed" => {
            &["subscription_id"]
        }
        "subscription.paused" | "subscription.cancelled" => &["subscription_id"],
        "support.ticket_opened" | "support.ticket_resolved" => &["ticket_id"],
        _ => &[],
    };
    if required.iter().any(|k| !present(k)) {
        return Err("missing_field");
    }
    let money_key = match t.as_str() {
        "subscription.started" | "subscription.changed" | "subscription.resumed" => Some("mrr"),
        _ if family == "payment" => Some("amount"),
        _ => None,
    };
    if let Some(k) = money_key {
        if o.get(k).is_none_or(|v| num_text(v) == Ok(None)) {
            return Err("missing_field");
        }
    }
    if t.starts_with("survey.") && o.get("score").is_none_or(|v| num_text(v) == Ok(None)) {
        return Err("missing_field");
    }
    if money_key == Some("mrr") {
        check_num(o.get("seats"), true)?;
    }
    if family == "usage" {
        check_num(o.get("quantity"), false)?;
    }
    let score = if family == "survey" {
        check_num(o.get("score"), true)?
    } else {
        None
    };
    if let Some(k) = money_key {
        check_money(o.get(k), true)?;
    }
    if let Some(s) = score {
        let ok = if t == "survey.nps" {
            (0.0..=10.0).contains(&s)
        } else {
            (1.0..=5.0).contains(&s)
        };
        if !ok {
            return Err("score_out_of_range");
        }
    }
    if family == "support" {
        if let Str::Some(p) = get_str(o, "priority") {
            if !["low", "normal", "high", "urgent"].contains(&p.to_ascii_lowercase().as_str()) {
                return Err("bad_priority");
            }
        }
    }
    if money_key.is_some() {
        if let Str::Some(c) = get_str(o, "currency") {
            if !c.eq_ignore_ascii_case("USD") {
                return Err("unsupported_currency");
            }
        }
    }
    Ok((id, t))
}

#[derive(Default, Debug)]
struct Tally {
    objects: usize,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    reasons: BTreeMap<&'static str, u64>,
    types: BTreeMap<String, u64>,
    extensions: HashSet<String>,
    max_date: String,
}

/// Reads `dir` the way EVENTS.md says the pipeline does.
fn tally(dir: &Path) -> Tally {
    let mut t = Tally::default();
    let mut seen = HashSet::new();
    for (rel, bytes) in files(dir) {
        if rel
            .split('/')
            .any(|seg| seg.starts_with('_') || seg.starts_with('.'))
        {
            continue;
        }
        let lower = rel.to_ascii_lowercase();
        let (base, raw) = if let Some(b) = lower.strip_suffix(".gz") {
            let mut v = Vec::new();
            io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut v)
                .expect("gunzip");
            (b.to_string(), v)
        } else if let Some(b) = lower.strip_suffix(".zst") {
            (b.to_string(), zstd::decode_all(&bytes[..]).expect("unzstd"))
        } else {
            (lower.clone(), bytes)
        };
        let ext = base.rsplit('.').next().unwrap_or("").to_string();
        let mut rows: Vec<Result<serde_json::Value, ()>> = Vec::new();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => {
                let text = String::from_utf8(raw).expect("utf-8");
                let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
                for line in text.split('\n') {
                    if line.trim().is_empty() {
                        continue;
                    }
                    rows.push(serde_json::from_str(line).map_err(|_| ()));
                }
            }
            "csv" => {
                let mut r = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(&raw[..]);
                let header = r.headers().expect("csv header").clone();
                for rec in r.records() {
                    let rec = rec.expect("csv record");
                    if rec.len() != header.len() {
                        rows.push(Err(()));
                        continue;
                    }
                    let mut o = serde_json::Map::new();
                    for (h, v) in header.iter().zip(rec.iter()) {
                        if !v.is_empty() {
                            o.insert(h.to_string(), serde_json::Value::String(v.to_string()));
                        }
                    }
                    rows.push(Ok(serde_json::Value::Object(o)));
                }
            }
            _ => continue, // skipped
        }
        t.objects += 1;
        t.extensions.insert(
            lower
                .rsplit('/')
                .next()
                .unwrap_or("")
                .split_once('.')
                .map_or("", |x| x.1)
                .to_string(),
        );
        for row in rows {
            let res = row.map_err(|()| "malformed").and_then(|v| classify(&v));
            match res {
                Err(reason) => {
                    t.rejected += 1;
                    *t.reasons.entry(reason).or_default() += 1;
                }
                Ok((id, ty)) => {
                    if seen.insert(id) {
                        t.accepted += 1;
                        *t.types.entry(ty).or_default() += 1;
                        t.max_date = t.max_date.clone().max(rel[7..17].replace('/', "-"));
                    } else {
                        t.duplicates += 1;
                    }
                }
            }
        }
    }
    t
}

#[test]
fn every_row_is_valid_or_an_intended_reject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(dir.path(), &small(end())).expect("generate");
    let t = tally(dir.path());
    assert_eq!(t.objects, summary.objects, "data objects");
    assert_eq!(t.accepted, summary.events, "accepted events");
    assert_eq!(
        t.rejected, summary.bad_rows,
        "rejected rows: {:?}",
        t.reasons
    );
    assert_eq!(t.duplicates, summary.duplicate_rows, "duplicates");
    for reason in [
        "malformed",
        "missing_field",
        "unknown_event_type",
        "bad_timestamp",
        "bad_number",
        "negative_amount",
        "score_out_of_range",
        "bad_priority",
        "unsupported_currency",
    ] {
        assert!(
            t.reasons.contains_key(reason),
            "no row rejected as {reason}: {:?}",
            t.reasons
        );
    }
    for ext in ["jsonl", "jsonl.gz", "jsonl.zst", "csv", "ndjson", "json"] {
        assert!(
            t.extensions.contains(ext),
            "no .{ext} object: {:?}",
            t.extensions
        );
    }
    let all = files(dir.path());
    for side in ["_SUCCESS", "notes.txt", "_tmp/part-0000.jsonl"] {
        assert!(all.contains_key(side), "{side} missing");
    }
    assert_eq!(t.max_date, "2025-11-25", "a few events after end_date");
}

#[test]
fn clean_mode_has_no_rejects_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DemoOptions {
        messy: false,
        ..small(end())
    };
    let summary = generate(dir.path(), &opts).expect("generate");
    let t = tally(dir.path());
    assert_eq!((summary.bad_rows, summary.duplicate_rows), (0, 0));
    assert_eq!(
        (t.rejected, t.duplicates, t.accepted),
        (0, 0, summary.events),
        "{:?}",
        t.reasons
    );
    assert_eq!(files(dir.path()).len(), summary.objects);
}

#[test]
fn demo_covers_every_event_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DemoOptions {
        customers: 120,
        months: 13,
        ..small(end())
    };
    generate(dir.path(), &opts).expect("generate");
    let t = tally(dir.path());
    for ty in [
        "customer.created",
        "customer.updated",
        "subscription.started",
        "subscription.changed",
        "subscription.resumed",
        "subscription.paused",
        "subscription.cancelled",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "support.ticket_opened",
        "support.ticket_resolved",
        "survey.nps",
        "survey.csat",
        "email.sent",
        "email.opened",
        "email.clicked",
        "usage.login",
        "usage.feature_used",
        "usage.api_request",
    ] {
        assert!(
            t.types.get(ty).is_some_and(|&n| n > 0),
            "no {ty}: {:?}",
            t.types
        );
    }
}

#[test]
fn target_events_scales_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DemoOptions {
        customers: 20,
        months: 3,
        target_events: Some(60_000),
        messy: false,
        ..small(end())
    };
    let summary = generate(dir.path(), &opts).expect("generate");
    let off = (summary.events as f64 - 60_000.0).abs() / 60_000.0;
    assert!(
        off < 0.05,
        "{} events for a target of 60000",
        summary.events
    );
}
