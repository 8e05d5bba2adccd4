//! Tests of the generator as a whole: determinism, option errors, and that
//! every row it writes is a valid event or a reject it meant to plant, as the
//! crate's own ingest decoder and validator read them (the generator itself
//! must not depend on the rest of the crate; its tests may).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use bytes::Bytes;
use chrono::NaiveDate;

use super::messy::planted_reasons;
use super::*;
use crate::ingest::decode;
use crate::ingest::validate::{self, Reason};

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

/// The reporting currency of the demo's project (`config/`): the generator
/// writes `USD` or `usd` where it writes a currency at all.
const CURRENCY: &str = "USD";

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

/// Reads `dir` with the crate's own ingest decoder and validator, in the order
/// ingest reads objects (path byte order; the first occurrence of an
/// `event_id` wins), and counts what ingest would accept, reject and drop.
fn tally(dir: &Path) -> Tally {
    let mut t = Tally::default();
    let mut seen = HashSet::new();
    for (rel, bytes) in files(dir) {
        // Ignored: a segment starting with `_` or `.` (EVENTS.md "Files").
        if rel
            .split('/')
            .any(|seg| seg.starts_with('_') || seg.starts_with('.'))
        {
            continue;
        }
        let Some((format, compression)) = decode::detect(&rel) else {
            continue; // skipped: not an extension tenure reads
        };
        t.objects += 1;
        t.extensions.insert(
            rel.to_ascii_lowercase()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .split_once('.')
                .map_or("", |x| x.1)
                .to_string(),
        );
        let mut rows: Vec<Result<(String, String), Reason>> = Vec::new();
        decode::decode(Bytes::from(bytes), format, compression, decode::Limits::default(), &mut |row| {
            let outcome = match row.record {
                Err(_) => Err(Reason::Malformed),
                Ok(record) => validate::validate(&record, CURRENCY)
                    .map(|ev| (ev.event_id.into_owned(), ev.event_type.into_owned()))
                    .map_err(|rejection| rejection.reason),
            };
            rows.push(outcome);
        })
        .unwrap_or_else(|e| panic!("{rel} is unreadable: {e}"));
        for row in rows {
            match row {
                Err(reason) => {
                    t.rejected += 1;
                    *t.reasons.entry(reason.code()).or_default() += 1;
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
    assert_eq!(
        t.reasons,
        planted_reasons(),
        "reject reasons: ingest vs planted"
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
