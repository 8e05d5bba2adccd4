//! The raw event contract (`spec/EVENTS.md`), tested from the outside: each
//! test copies one hand-made fixture folder (`tests/fixtures/ingest/<name>`)
//! into a temp raw prefix, runs `tenure run`, and checks the run report
//! (counts, conservation), the exact `rejects` rows and the exact typed
//! `events` rows read back with the independent Python reader.
//!
//! Every expected value below was written by hand from EVENTS.md; the rule it
//! comes from is named next to it. Row numbers are physical lines for JSON
//! Lines, data records for CSV and row indexes for Parquet (rule 1).

use crate::common::*;
use serde_json::json;

const MF: &str = "missing_field";

// ---------------------------------------------------------------------------
// Reject reasons (EVENTS.md "Rejects", rule 11)

/// One row per reject reason, envelope and type-specific `missing_field`, and
/// one accepted event of every event type (rule 15: fields of other types NULL,
/// `priority` defaults to `normal`, a missing `currency` is the reporting one).
#[test]
fn each_reject_reason_has_its_code() {
    let p = Project::from_fixture("reasons");
    let r = p.run();
    let f = "reasons.jsonl";
    r.assert_totals(Totals { rows_read: 39, accepted: 17, rejected: 22, objects_ingested: 1, ..Default::default() });
    r.assert_objects(vec![ingested(f, 39, 17, 22, 0, 0)]);
    r.assert_rejects_by_reason(&[
        ("malformed", 1),
        (MF, 10),
        ("unknown_event_type", 1),
        ("bad_timestamp", 1),
        ("bad_number", 3),
        ("negative_amount", 1),
        ("score_out_of_range", 2),
        ("unsupported_currency", 2),
        ("bad_priority", 1),
    ]);
    let rejects = p.assert_rejects(
        &r.run_id(),
        &[
            (f, 2, "malformed"),             // unterminated object
            (f, 3, MF),                      // no event_id
            (f, 4, MF),                      // no event_type
            (f, 5, MF),                      // customer_id ""
            (f, 6, MF),                      // no occurred_at
            (f, 7, "unknown_event_type"),    // customer.deleted
            (f, 8, "bad_timestamp"),         // 10/01/2026 10:00
            (f, 9, MF),                      // subscription.started without subscription_id
            (f, 10, MF),                     // subscription.started without mrr
            (f, 11, MF),                     // payment.failed without amount
            (f, 12, MF),                     // support.ticket_resolved without ticket_id
            (f, 13, MF),                     // survey.csat without score
            (f, 14, MF),                     // subscription.cancelled without subscription_id
            (f, 15, "bad_number"),           // mrr "ten"
            (f, 16, "negative_amount"),      // amount -5
            (f, 17, "score_out_of_range"),   // nps 11
            (f, 18, "unsupported_currency"), // EUR on a payment
            (f, 19, "bad_priority"),         // critical
            (f, 20, "unsupported_currency"), // GBP on subscription.resumed
            (f, 21, "bad_number"),           // seats "three"
            (f, 22, "bad_number"),           // quantity "lots"
            (f, 23, "score_out_of_range"),   // csat 0
        ],
    );
    // "the raw text of the row"
    assert_eq!(
        reject(&rejects, f, 2)["raw"],
        r#"{"event_id":"r02","event_type":"customer.created","customer_id":"c1","occurred_at":"2026-01-10T10:00:00Z""#
    );
    assert_eq!(
        reject(&rejects, f, 18)["raw"],
        r#"{"event_id":"r18","event_type":"payment.succeeded","customer_id":"c1","occurred_at":"2026-01-10T10:00:00Z","amount":5,"currency":"EUR"}"#
    );
    p.assert_events(
        &r.run_id(),
        vec![
            ev(
                f,
                1,
                event(
                    "ok01",
                    "customer.created",
                    "2026-01-10T10:00:00Z",
                    json!({"name": "Acme", "segment": "SMB", "country": "DE", "industry": "Retail", "owner": "ann"}),
                ),
            ),
            ev(
                f,
                24,
                event(
                    "ok24",
                    "subscription.started",
                    "2026-01-10T10:00:00Z",
                    json!({"subscription_id": "s1", "mrr": "99.9000", "plan": "pro", "currency": "USD", "seats": 3}),
                ),
            ),
            ev(
                f,
                25,
                event(
                    "ok25",
                    "subscription.paused",
                    "2026-01-11T10:00:00Z",
                    json!({"subscription_id": "s1", "plan": "pro", "reason": "holiday"}),
                ),
            ),
            ev(
                f,
                26,
                event(
                    "ok26",
                    "payment.succeeded",
                    "2026-01-12T10:00:00Z",
                    json!({"amount": "99.9000", "payment_id": "p1", "currency": "USD"}),
                ),
            ),
            ev(f, 27, event("ok27", "usage.login", "2026-01-12T11:00:00Z", json!({"user_id": "u1"}))),
            ev(
                f,
                28,
                event(
                    "ok28",
                    "usage.feature_used",
                    "2026-01-12T11:05:00Z",
                    json!({"feature": "Export", "user_id": "u1", "quantity": 2.5}),
                ),
            ),
            ev(
                f,
                29,
                event(
                    "ok29",
                    "support.ticket_opened",
                    "2026-01-13T09:00:00Z",
                    json!({"ticket_id": "t1", "priority": "normal"}),
                ),
            ),
            ev(
                f,
                30,
                event(
                    "ok30",
                    "support.ticket_resolved",
                    "2026-01-14T09:00:00Z",
                    json!({"ticket_id": "t1", "priority": "urgent"}),
                ),
            ),
            ev(f, 31, event("ok31", "survey.nps", "2026-01-15T09:00:00Z", json!({"score": 10, "comment": "great"}))),
            ev(f, 32, event("ok32", "survey.csat", "2026-01-15T09:30:00Z", json!({"score": 1}))),
            ev(f, 33, event("ok33", "email.clicked", "2026-01-16T09:00:00Z", json!({"campaign_id": "spring"}))),
            ev(f, 34, event("ok34", "customer.updated", "2026-01-17T09:00:00Z", json!({"segment": "Enterprise"}))),
            ev(
                f,
                35,
                event(
                    "ok35",
                    "subscription.cancelled",
                    "2026-01-20T09:00:00Z",
                    json!({"subscription_id": "s1", "reason": "price"}),
                ),
            ),
            ev(
                f,
                36,
                event(
                    "ok36",
                    "payment.failed",
                    "2026-01-21T09:00:00Z",
                    json!({"amount": "0.0000", "payment_id": "p2", "currency": "USD"}),
                ),
            ),
            ev(f, 37, event("ok37", "email.sent", "2026-01-21T10:00:00Z", json!({}))),
            ev(
                f,
                38,
                event(
                    "ok38",
                    "subscription.resumed",
                    "2026-01-22T10:00:00Z",
                    json!({"subscription_id": "s1", "mrr": "0.0000", "currency": "USD"}),
                ),
            ),
            ev(f, 39, event("ok39", "survey.nps", "2026-01-23T09:00:00Z", json!({"score": 0}))),
        ],
    );
}

/// Rule 11: one reason per row, the first in the stated order. Each row of the
/// fixture breaks two or more rules; rule 9 keeps undeclared fields out of it.
#[test]
fn first_applicable_reason_wins() {
    let p = Project::from_fixture("reason_order");
    let r = p.run();
    let f = "order.jsonl";
    r.assert_totals(Totals { rows_read: 18, accepted: 1, rejected: 17, objects_ingested: 1, ..Default::default() });
    r.assert_objects(vec![ingested(f, 18, 1, 17, 0, 0)]);
    p.assert_rejects(
        &r.run_id(),
        &[
            (f, 1, "malformed"),          // boolean customer_id (rule 5) + bad timestamp
            (f, 2, MF),                   // no event_id + unknown type
            (f, 3, "unknown_event_type"), // unknown type + bad timestamp
            (f, 4, "bad_timestamp"),      // bad timestamp + no subscription_id/mrr
            (f, 5, MF),                   // no subscription_id + mrr "abc"
            (f, 6, "bad_number"),         // seats "x" + mrr -1
            (f, 7, "negative_amount"),    // amount -1 + EUR
            (f, 8, "bad_number"),         // amount "x" + EUR
            (f, 9, "bad_priority"),       // priority p1; currency and amount are not support fields (rule 9)
            (f, 11, MF),                  // everything empty
            (f, 12, MF),                  // customer_id "" + unknown type
            (f, 13, "bad_number"),        // 1.23456 + EUR
            (f, 14, "bad_number"),        // -1.23456: not representable, before negative
            (f, 15, "bad_number"),        // score -1.5: not an integer, before out of range
            (f, 16, "malformed"),         // plan is an object (rule 5) + eur
            (f, 17, "malformed"),         // currency is a boolean (rule 5)
            (f, 18, "bad_number"),        // score "12.5": not an integer, before out of range
        ],
    );
    p.assert_events(
        &r.run_id(),
        vec![ev(
            f,
            10,
            json!({"event_id": "o10", "event_type": "support.ticket_opened", "customer_id": "c1",
                   "occurred_at": "2026-01-10T10:00:00Z", "ticket_id": "t10", "priority": "normal"}),
        )],
    );
}

// ---------------------------------------------------------------------------
// Decoding: lines, CSV, JSON syntax (rules 1-5)

/// Rule 1: blank and whitespace-only lines (with `\r\n` too) are skipped and
/// not counted, but row numbers stay physical line numbers. Rule 2: a BOM at
/// the start of a JSON Lines file is ignored.
#[test]
fn blank_lines_crlf_and_bom_in_json_lines() {
    let p = Project::from_fixture("lines");
    let r = p.run();
    let (a, b) = ("crlf_bom.jsonl", "lf.jsonl");
    r.assert_totals(Totals { rows_read: 6, accepted: 5, rejected: 1, objects_ingested: 2, ..Default::default() });
    r.assert_objects(vec![ingested(a, 4, 3, 1, 0, 0), ingested(b, 2, 2, 0, 0, 0)]);
    let rejects = p.assert_rejects(&r.run_id(), &[(a, 5, "malformed")]);
    let raw = reject(&rejects, a, 5)["raw"].as_str().unwrap().to_string();
    assert_eq!(raw.trim_end_matches(['\r', '\n']), r#"{"event_id":"b05","event_type":"customer.created""#);
    let e = |id: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": "2026-01-15T10:00:00Z"});
    p.assert_events(
        &r.run_id(),
        vec![ev(a, 1, e("b01")), ev(a, 4, e("b04")), ev(a, 7, e("b07")), ev(b, 1, e("l01")), ev(b, 4, e("l04"))],
    );
}

/// Rule 2: a record with a different number of cells than the header is
/// `malformed`; a BOM before the header is ignored; empty cells are missing
/// values (optional: NULL or the default; required: `missing_field`). Rule 1:
/// the row is the data record (a quoted newline does not start a new row).
/// Rule 8 in CSV: "9.0" is the integer 9, "1e1" is 10, "+5" is `bad_number`.
/// Rule 7: a money cell is a string, so "1e2" is `bad_number`. Rule 9: the
/// unknown column `utm_source` is ignored. A column absent from the header is a
/// missing value (narrow.csv); `\r\n` record ends leave no `\r` in the last
/// cell (crlf.csv).
#[test]
fn csv_cells_bom_and_record_numbers() {
    let p = Project::from_fixture("csv");
    let r = p.run();
    let f = "events.csv";
    let (narrow, crlf) = ("narrow.csv", "crlf.csv");
    r.assert_totals(Totals { rows_read: 18, accepted: 10, rejected: 8, objects_ingested: 3, ..Default::default() });
    r.assert_objects(vec![ingested(f, 14, 8, 6, 0, 0), ingested(narrow, 2, 0, 2, 0, 0), ingested(crlf, 2, 2, 0, 0, 0)]);
    let rejects = p.assert_rejects(
        &r.run_id(),
        &[
            (f, 2, "malformed"),   // 15 cells
            (f, 3, "malformed"),   // 17 cells
            (f, 5, MF),            // amount cell empty
            (f, 6, MF),            // event_id cell empty
            (f, 11, "bad_number"), // score "+5"
            (f, 13, "bad_number"), // mrr "1e2"
            (narrow, 1, MF),       // no customer_id column at all
            (narrow, 2, MF),
        ],
    );
    let raw = reject(&rejects, f, 2)["raw"].as_str().unwrap();
    assert!(raw.contains("v02,customer.created,c1"), "raw text of CSV record 2: {raw:?}");
    p.assert_events(
        &r.run_id(),
        vec![
            ev(
                f,
                1,
                event(
                    "v01",
                    "subscription.started",
                    "2026-01-05T00:00:00Z",
                    json!({"subscription_id": "s1", "plan": "pro", "mrr": "99.9000", "currency": "USD", "seats": 9}),
                ),
            ),
            ev(f, 4, event("v04", "customer.created", "2026-01-05T07:00:00Z", json!({"name": "Smith, Jones"}))),
            ev(f, 7, event("v07", "customer.created", "2026-01-06T00:00:00Z", json!({"name": "Line one\nLine two"}))),
            ev(f, 8, event("v08", "survey.csat", "2026-01-07T00:00:00Z", json!({"score": 5}))),
            ev(
                f,
                9,
                event(
                    "v09",
                    "support.ticket_opened",
                    "2026-01-07T00:00:00Z",
                    json!({"ticket_id": "t1", "priority": "normal"}),
                ),
            ),
            ev(
                f,
                10,
                event(
                    "v10",
                    "payment.succeeded",
                    "2026-01-08T00:00:00Z",
                    json!({"currency": "USD", "amount": "12.5000", "payment_id": "p2"}),
                ),
            ),
            ev(f, 12, event("v12", "subscription.paused", "2026-01-09T00:00:00Z", json!({"subscription_id": "s1"}))),
            ev(f, 14, event("v14", "survey.nps", "2026-01-10T00:00:00Z", json!({"score": 10}))),
            ev(crlf, 1, event("w01", "customer.created", "2026-01-11T00:00:00Z", json!({"name": "Acme"}))), // no \r
            ev(crlf, 2, event("w02", "customer.created", "2026-01-11T00:00:00Z", json!({}))),
        ],
    );
}

/// Rule 3: NaN/Infinity and lines that are not one JSON object are
/// `malformed`; with duplicate keys the last wins; `.json` is JSON Lines.
/// Rule 4: empty string and null are missing values (required and optional).
/// Rule 5: numbers where a string is expected are kept as their JSON text,
/// booleans/objects/arrays there are `malformed`. Rule 9: undeclared fields
/// are neither validated nor kept; unknown fields are ignored.
#[test]
fn json_edge_syntax_nulls_and_non_string_values() {
    let p = Project::from_fixture("json_edge");
    let r = p.run();
    let (f, d) = ("edge.json", "document.json");
    r.assert_totals(Totals { rows_read: 32, accepted: 12, rejected: 20, objects_ingested: 2, ..Default::default() });
    r.assert_objects(vec![ingested(f, 29, 11, 18, 0, 0), ingested(d, 3, 1, 2, 0, 0)]);
    r.assert_rejects_by_reason(&[("malformed", 14), (MF, 6)]);
    p.assert_rejects(
        &r.run_id(),
        &[
            (f, 1, "malformed"),  // NaN
            (f, 2, "malformed"),  // Infinity
            (f, 3, "malformed"),  // -Infinity
            (f, 4, "malformed"),  // an array
            (f, 5, "malformed"),  // a string
            (f, 6, "malformed"),  // null
            (f, 9, "malformed"),  // customer_id true
            (f, 10, "malformed"), // name is an object
            (f, 11, "malformed"), // plan is an array
            (f, 12, MF),          // event_id null
            (f, 13, MF),          // customer_id null
            (f, 14, MF),          // occurred_at null
            (f, 15, MF),          // subscription_id null
            (f, 16, MF),          // mrr ""
            (f, 24, MF),          // {}
            (f, 25, "malformed"), // 42
            (f, 26, "malformed"), // trailing text after the object
            (f, 27, "malformed"), // two objects on one line
            (d, 1, "malformed"),  // {"events": [
            (d, 3, "malformed"),  // ]}
        ],
    );
    let at = |minute: &str| format!("2026-01-10T10:{minute}:00Z");
    let usd = |amount: &str| json!({"amount": amount, "currency": "USD"});
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 7, event("j07", "usage.login", &at("07"), json!({}))), // the last event_id and occurred_at win
            // numbers where strings are expected: their JSON text, as written
            ev(
                f,
                8,
                event(
                    "123",
                    "customer.created",
                    &at("08"),
                    json!({"customer_id": "456", "name": "1.50", "owner": "-7"}),
                ),
            ),
            ev(f, 17, event("j17", "customer.created", &at("17"), json!({"country": "FR"}))), // name null, segment ""
            ev(f, 18, event("j18", "payment.succeeded", &at("18"), usd("1.0000"))), // currency null, payment_id ""
            ev(f, 19, event("j19", "payment.succeeded", &at("19"), usd("2.0000"))), // currency ""
            ev(f, 20, event("j20", "customer.created", &at("20"), json!({}))),      // undeclared fields dropped
            ev(f, 21, event("j21", "subscription.paused", &at("21"), json!({"subscription_id": "s1"}))),
            ev(f, 22, event("j22", "payment.succeeded", &at("22"), usd("3.0000"))),
            ev(f, 23, event("j23", "email.opened", &at("23"), json!({"campaign_id": "cmp"}))),
            // escapes decoded: \t, \", \u00e9, a surrogate pair; UTF-8 kept as is
            ev(f, 28, event("j28", "customer.created", &at("28"), json!({"name": "Tab\there \"q\" é Zoë 🚀"}))),
            ev(f, 29, event("j29", "customer.created", &at("29"), json!({}))), // key written "event\u005fid"
            ev(d, 2, event("p02", "customer.created", "2026-01-10T11:00:00Z", json!({}))),
        ],
    );
}

// ---------------------------------------------------------------------------
// Timestamps (rule 6, rule 15)

/// Rule 6: every accepted form, stored as the UTC instant truncated to µs;
/// date-only, leap seconds, |offset| >= 24h and other shapes are `bad_timestamp`.
#[test]
fn timestamp_forms() {
    let p = Project::from_fixture("timestamps");
    let r = p.run();
    let f = "timestamps.jsonl";
    r.assert_totals(Totals { rows_read: 30, accepted: 15, rejected: 15, objects_ingested: 1, ..Default::default() });
    r.assert_objects(vec![ingested(f, 30, 15, 15, 0, 0)]);
    let bad = "bad_timestamp";
    p.assert_rejects(
        &r.run_id(),
        &[
            (f, 13, bad), // +24:00
            (f, 14, bad), // -2400
            (f, 15, bad), // date only
            (f, 16, bad), // :60 leap second
            (f, 17, bad), // February 30
            (f, 18, bad), // hour 24
            (f, 19, bad), // no seconds
            (f, 20, bad), // "." without digits
            (f, 21, bad), // +09 (no minutes)
            (f, 22, bad), // 14/03/2026
            (f, 23, bad), // month not zero-padded
            (f, 24, bad), // +09:60
            (f, 26, bad), // ZZ
            (f, 28, bad), // X as separator
            (f, 29, bad), // 2025-02-29
        ],
    );
    let e = |id: &str, at: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": at});
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 1, e("t01", "2026-03-14T00:12:00Z")),         // +09:00
            ev(f, 2, e("t02", "2026-03-14T09:12:00Z")),         // lower-case t
            ev(f, 3, e("t03", "2026-03-14T09:12:00Z")),         // space, lower-case z
            ev(f, 4, e("t04", "2026-03-14T14:42:00Z")),         // -0530
            ev(f, 5, e("t05", "2026-03-14T09:12:00Z")),         // no offset: UTC
            ev(f, 6, e("t06", "2026-03-14T23:59:59.999999Z")),  // truncated, not rounded into the next day
            ev(f, 7, e("t07", "2026-03-14T08:12:00.500000Z")),  // fraction with offset
            ev(f, 8, e("t08", "2026-03-13T00:31:00Z")),         // +23:59
            ev(f, 9, e("t09", "2026-03-15T00:29:00Z")),         // -23:59
            ev(f, 10, e("t10", "2026-03-14T09:12:00Z")),        // -00:00
            ev(f, 11, e("t11", "2026-03-14T09:12:00.123456Z")), // ns truncated, +0000
            ev(f, 12, e("t12", "2026-03-14T09:12:00.100000Z")), // space, fraction, no offset
            ev(f, 25, e("t25", "2024-02-29T12:00:00Z")),        // leap day
            ev(f, 27, e("t27", "2026-03-14T09:12:00.123456Z")), // 13 fractional digits
            ev(f, 30, e("t30", "1969-12-31T23:59:59.999999Z")), // before the epoch: truncated, not rounded up
        ],
    );
}

/// Rule 15: `event_date` is the local date in the reporting timezone, here
/// America/Los_Angeles across the 2026-03-08 DST change and a year boundary;
/// `events` is partitioned by it.
#[test]
fn event_date_is_the_local_date_in_the_reporting_timezone() {
    let p = Project::from_fixture("timezone");
    let r = p.run_with(&RunOpts::default().timezone("America/Los_Angeles"));
    assert_eq!(r.json["timezone"], "America/Los_Angeles");
    let f = "la.jsonl";
    r.assert_totals(Totals { rows_read: 7, accepted: 7, objects_ingested: 1, ..Default::default() });
    p.assert_rejects(&r.run_id(), &[]);
    let e = |id: &str, at: &str, date: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": at, "event_date": date});
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 1, e("z1", "2026-03-08T07:59:59Z", "2026-03-07")), // 23:59:59 PST
            ev(f, 2, e("z2", "2026-03-08T08:00:00Z", "2026-03-08")), // 00:00 PST
            ev(f, 3, e("z3", "2026-03-09T06:59:59.999999Z", "2026-03-08")), // 23:59:59.999999 PDT
            ev(f, 4, e("z4", "2026-03-09T07:00:00Z", "2026-03-09")), // 00:00 PDT
            ev(f, 5, e("z5", "2026-03-14T00:12:00Z", "2026-03-13")), // 09:12 +09:00 = 17:12 PDT the day before
            ev(f, 6, e("z6", "2026-01-01T07:59:59Z", "2025-12-31")),
            ev(f, 7, e("z7", "2026-01-01T08:00:00Z", "2026-01-01")),
        ],
    );
}

// ---------------------------------------------------------------------------
// Numbers (rules 7, 8)

/// Rule 7: money is exact Decimal128(38,4): any JSON number syntax, strings
/// `-?\d+(\.\d+)?`, at most 4 significant fractional digits, |x| < 10^34,
/// -0 is 0, negatives are `negative_amount`.
#[test]
fn money_is_exact_decimal() {
    let p = Project::from_fixture("money");
    let r = p.run();
    let f = "money.jsonl";
    r.assert_totals(Totals { rows_read: 43, accepted: 23, rejected: 20, objects_ingested: 1, ..Default::default() });
    r.assert_rejects_by_reason(&[("bad_number", 16), ("negative_amount", 4)]);
    let (bn, neg) = ("bad_number", "negative_amount");
    p.assert_rejects(
        &r.run_id(),
        &[
            (f, 17, bn),  // 1.23456
            (f, 18, bn),  // "1.23456"
            (f, 19, bn),  // 1.5e-5 = 0.000015
            (f, 20, bn),  // "1e2": strings have no exponent in money
            (f, 21, bn),  // "+5"
            (f, 22, bn),  // " 5"
            (f, 23, bn),  // ".5"
            (f, 24, bn),  // "5."
            (f, 25, bn),  // true
            (f, 26, bn),  // "abc"
            (f, 27, bn),  // 10^34
            (f, 28, bn),  // "10^34"
            (f, 29, bn),  // 1e34
            (f, 30, bn),  // -1e34: out of range before negative
            (f, 31, neg), // -0.01
            (f, 32, neg), // "-5"
            (f, 33, neg), // -(10^34 - 0.0001)
            (f, 34, bn),  // "5 "
            (f, 35, bn),  // "1,5"
            (f, 37, neg), // mrr "-0.0001"
        ],
    );
    let pay = |id: &str, amount: &str| {
        json!({"event_id": id, "event_type": "payment.succeeded", "customer_id": "c1",
               "occurred_at": "2026-01-12T10:00:00Z", "amount": amount, "currency": "USD"})
    };
    let max = "9999999999999999999999999999999999.9999";
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 1, pay("m01", "99.9000")),                    // 99.90
            ev(f, 2, pay("m02", "99.9000")),                    // "99.90"
            ev(f, 3, pay("m03", "100.0000")),                   // 1e2
            ev(f, 4, pay("m04", "100.0000")),                   // 1E+2
            ev(f, 5, pay("m05", "0.0025")),                     // 2.5e-3
            ev(f, 6, pay("m06", "1.0000")),                     // 100e-2
            ev(f, 7, pay("m07", "1.5000")),                     // "1.50000"
            ev(f, 8, pay("m08", "1.0000")),                     // 1.0000000
            ev(f, 9, pay("m09", "0.0000")),                     // 0
            ev(f, 10, pay("m10", "0.0000")),                    // -0
            ev(f, 11, pay("m11", "0.0000")),                    // "-0"
            ev(f, 12, pay("m12", "0.0000")),                    // -0.0
            ev(f, 13, pay("m13", max)),                         // largest value as a JSON number
            ev(f, 14, pay("m14", max)),                         // ... and as a string
            ev(f, 15, pay("m15", "12345678901234567890.1234")), // beyond f64 precision
            ev(f, 16, pay("m16", "0.0001")),
            ev(
                f,
                36,
                json!({"event_id": "m36", "event_type": "subscription.started", "customer_id": "c1",
                             "occurred_at": "2026-01-12T10:00:00Z", "subscription_id": "s36", "mrr": "1200.5000",
                             "seats": 1, "currency": "USD"}),
            ),
            ev(f, 38, pay("m38", "7.5000")),  // "007.50" matches -?\d+(\.\d+)?
            ev(f, 39, pay("m39", "0.0001")),  // 0.00001e1
            ev(f, 40, pay("m40", "1.0000")),  // "1." and 44 zeros: exact, whatever the length
            ev(f, 41, pay("m41", "1.0000")),  // the same as a JSON number
            ev(f, 42, pay("m42", "12.5000")), // 41 leading zeros
            ev(f, 43, pay("m43", "1000000000000000000000000000000000.0000")), // 1e33 < 10^34
        ],
    );
}

/// Rule 8: `seats` and `score` integers (9.0 and "9.0" count), `quantity` any
/// finite number, numeric strings `-?\d+(\.\d+)?([eE][+-]?\d+)?`, anything else
/// `bad_number`; a well-formed score outside its range is `score_out_of_range`.
#[test]
fn integers_floats_and_scores() {
    let p = Project::from_fixture("numbers");
    let r = p.run();
    let f = "numbers.jsonl";
    r.assert_totals(Totals { rows_read: 42, accepted: 19, rejected: 23, objects_ingested: 1, ..Default::default() });
    r.assert_rejects_by_reason(&[("bad_number", 18), ("score_out_of_range", 5)]);
    let (bn, oor) = ("bad_number", "score_out_of_range");
    p.assert_rejects(
        &r.run_id(),
        &[
            (f, 7, bn),   // seats 9.5
            (f, 8, bn),   // seats "9.5"
            (f, 9, bn),   // seats "+5"
            (f, 10, bn),  // seats " 5"
            (f, 11, bn),  // seats ".5"
            (f, 12, bn),  // seats true
            (f, 13, bn),  // seats "five"
            (f, 20, bn),  // quantity "NaN"
            (f, 21, bn),  // quantity "Infinity"
            (f, 22, bn),  // quantity false
            (f, 23, bn),  // quantity 1e400 is not finite
            (f, 24, bn),  // quantity "1e400" is not finite
            (f, 25, bn),  // quantity "0x10"
            (f, 31, oor), // nps "-1"
            (f, 32, oor), // nps 11
            (f, 33, bn),  // nps 7.5
            (f, 34, bn),  // nps "7.5"
            (f, 35, bn),  // nps true
            (f, 36, bn),  // nps "+5"
            (f, 39, oor), // csat 0
            (f, 40, oor), // csat 6
            (f, 41, oor), // nps 100
            (f, 42, bn),  // nps "10 "
        ],
    );
    let seats = |id: &str, n: serde_json::Value| {
        json!({"event_id": id, "event_type": "subscription.started", "customer_id": "c1", "occurred_at": "2026-01-12T10:00:00Z",
               "subscription_id": "s1", "mrr": "1.0000", "currency": "USD", "seats": n})
    };
    let qty = |id: &str, q: f64| json!({"event_id": id, "event_type": "usage.feature_used", "customer_id": "c1", "occurred_at": "2026-01-12T10:00:00Z", "quantity": q});
    let score = |id: &str, ty: &str, s: i64| json!({"event_id": id, "event_type": ty, "customer_id": "c1", "occurred_at": "2026-01-12T10:00:00Z", "score": s});
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 1, seats("k01", json!(9))),     // 9.0
            ev(f, 2, seats("k02", json!(9))),     // "9.0"
            ev(f, 3, seats("k03", json!(9))),     // "9"
            ev(f, 4, seats("k04", json!(10))),    // 1e1
            ev(f, 5, seats("k05", json!(10))),    // "1e1"
            ev(f, 6, seats("k06", json!(25))),    // "2.5E1"
            ev(f, 14, seats("k14", json!(-3))),   // no sign rule for seats
            ev(f, 15, seats("k15", json!(null))), // "" is missing (rule 4)
            ev(f, 16, qty("q16", 1.5)),
            ev(f, 17, qty("q17", 25.0)), // "2.5e1"
            ev(f, 18, qty("q18", -0.5)),
            ev(f, 19, qty("q19", 3.0)),
            ev(f, 26, score("s26", "survey.nps", 9)),  // 9.0
            ev(f, 27, score("s27", "survey.nps", 9)),  // "9.0"
            ev(f, 28, score("s28", "survey.nps", 10)), // "10"
            ev(f, 29, score("s29", "survey.nps", 0)),
            ev(f, 30, score("s30", "survey.nps", 10)), // "1e1"
            ev(f, 37, score("s37", "survey.csat", 1)),
            ev(f, 38, score("s38", "survey.csat", 5)), // "5"
        ],
    );
}

/// Issue 28, numbers: exponents at the ends of i64 and beyond once made a run
/// spin forever (score 1e9223372036854775807) or accept money as 0.0005
/// (mrr 5e9223372036854775807). The run must end, well within a minute, with
/// each poison row rejected for its rule 7/8 reason and the edge values that
/// are valid stored exactly. A huge well-formed integral score is
/// `score_out_of_range` (it is an integer, and outside 0-10); a quantity too
/// small for Float64 is its nearest Float64, 0.
#[test]
fn poison_numbers_end_the_run_with_their_reasons() {
    let p = Project::from_fixture("poison");
    let r = run_within(&p, std::time::Duration::from_secs(120));
    let (j, c) = ("poison.jsonl", "poison.csv");
    r.assert_totals(Totals { rows_read: 25, accepted: 10, rejected: 15, objects_ingested: 2, ..Default::default() });
    r.assert_rejects_by_reason(&[("bad_number", 11), ("score_out_of_range", 4)]);
    let (bn, oor) = ("bad_number", "score_out_of_range");
    p.assert_rejects(
        &r.run_id(),
        &[
            (j, 1, oor), // score 1e9223372036854775807
            (j, 2, bn),  // mrr 5e9223372036854775807
            (j, 3, bn),  // amount 1e-9223372036854775808: not 4 fractional digits
            (j, 5, bn),  // seats 1e19 > i64::MAX
            (j, 6, bn),  // amount 1e34
            (j, 8, bn),  // quantity 1e9223372036854775807 is not finite in Float64
            (j, 10, oor), // score "1e9223372036854775807"
            (j, 11, bn), // score 1e-9223372036854775808 is not an integer
            (j, 12, bn), // mrr -5e9223372036854775807: out of range before negative
            (j, 17, oor), // score with an exponent beyond i128
            (c, 1, oor), // score 1e9223372036854775807
            (c, 2, bn),  // mrr "5e9223372036854775807": money strings have no exponent
            (c, 4, bn),  // seats 1e19
            (c, 6, bn),  // quantity 1e9223372036854775807
            (c, 8, bn),  // score 1e-9223372036854775808
        ],
    );
    let at = "2026-01-12T10:00:00Z";
    let sub = |mrr: &str, seats: serde_json::Value| json!({"subscription_id": "s1", "mrr": mrr, "seats": seats, "currency": "USD"});
    let pay = |amount: &str| json!({"amount": amount, "currency": "USD"});
    let e = |id: &str, ty: &str, extra: serde_json::Value| event(id, ty, at, extra);
    p.assert_events(
        &r.run_id(),
        vec![
            ev(j, 4, e("p04", "subscription.started", sub("1.0000", json!(9_000_000_000_000_000_000i64)))), // 9e18
            ev(j, 7, e("p07", "payment.succeeded", pay("0.0000"))),  // -0e5
            ev(j, 9, e("p09", "usage.feature_used", json!({"quantity": 0.0}))), // 1e-9223372036854775808
            ev(j, 13, e("p13", "payment.succeeded", pay("0.0001"))), // 10e-5
            ev(j, 14, e("p14", "survey.nps", json!({"score": 0}))),   // -0e5
            ev(j, 15, e("p15", "subscription.started", sub("1.0000", json!(9_000_000_000_000_000_000i64)))), // "9e18"
            ev(j, 16, e("p16", "subscription.started", sub("1000000000000000000000000000000000.0000", json!(null)))), // 1e33
            ev(c, 3, e("q03", "subscription.started", sub("1.0000", json!(9_000_000_000_000_000_000i64)))),
            ev(c, 5, e("q05", "usage.feature_used", json!({"quantity": 0.0}))),
            ev(c, 7, e("q07", "payment.succeeded", pay("0.0000"))), // -0
        ],
    );
}

/// `tenure run` on `p` with the default options, killed and failed if it
/// has not ended within `limit`; the run must succeed and write one report.
fn run_within(p: &Project, limit: std::time::Duration) -> Report {
    use std::process::{Command, Stdio};
    let log = p.dir.path().join("run.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let args = ["run", "--raw", &p.raw.display().to_string(), "--warehouse", &p.warehouse.display().to_string()]
        .map(str::to_string);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .args(["--as-of", AS_OF, "--timezone", "UTC", "--currency", "USD"])
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("run the tenure binary");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tenure") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tenure run did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "tenure run failed ({status}):\n{text}");
    let reports: Vec<_> = std::fs::read_dir(p.reports_dir())
        .expect("reports folder")
        .map(|e| e.expect("report entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(reports.len(), 1, "one run, one report: {reports:?}");
    let report = Report::load(&reports[0]);
    report.check_conservation();
    report
}

/// Rule 10: currency and priority fold ASCII case (stored USD / lower-case);
/// event types, ids, segments and features are exact; file extensions match
/// case-insensitively (.JSONL.GZ, .Csv, .NdJson.ZST, .PARQUET).
#[test]
fn case_folding_and_extension_case() {
    let p = Project::from_fixture("case");
    let r = p.run();
    let l = "lower.jsonl";
    r.assert_totals(Totals { rows_read: 17, accepted: 13, rejected: 4, objects_ingested: 5, ..Default::default() });
    r.assert_objects(vec![
        ingested(l, 13, 9, 4, 0, 0),
        ingested("EVENTS.JSONL.GZ", 1, 1, 0, 0, 0),
        ingested("Upper.Csv", 1, 1, 0, 0, 0),
        ingested("mixed.NdJson.ZST", 1, 1, 0, 0, 0),
        ingested("UPPER.PARQUET", 1, 1, 0, 0, 0),
    ]);
    p.assert_rejects(
        &r.run_id(),
        &[
            (l, 3, "unsupported_currency"), // eur
            (l, 7, "unknown_event_type"),   // Customer.Created
            (l, 8, "unknown_event_type"),   // USAGE.login
            (l, 12, "bad_priority"),        // " high": case folds, spaces do not
        ],
    );
    let at = "2026-01-10T10:00:00Z";
    let pay = |id: &str| event(id, "payment.succeeded", at, json!({"amount": "1.0000", "currency": "USD"}));
    let ticket = |id: &str, ty: &str, t: &str, prio: &str| event(id, ty, at, json!({"ticket_id": t, "priority": prio}));
    let created = |id: &str, at: &str| event(id, "customer.created", at, json!({}));
    p.assert_events(
        &r.run_id(),
        vec![
            ev(l, 1, pay("a01")),                                                // usd
            ev(l, 2, pay("a02")),                                                // Usd
            ev(l, 4, ticket("a04", "support.ticket_opened", "T-1", "high")),     // High
            ev(l, 5, ticket("a05", "support.ticket_resolved", "T-1", "urgent")), // URGENT
            ev(l, 6, ticket("a06", "support.ticket_opened", "t-1", "low")),      // LoW
            ev(l, 9, event("a09", "usage.Login", at, json!({"feature": "Export"}))),
            ev(l, 10, event("A09", "customer.updated", at, json!({"customer_id": "C1", "segment": "SMB"}))), // not a09
            ev(l, 11, event("a11", "customer.updated", at, json!({"segment": "smb"}))),
            ev(l, 13, event("a13", "customer.created", at, json!({"name": "Zoë Ünal 🚀", "segment": "Ärzte"}))),
            ev("EVENTS.JSONL.GZ", 1, created("a20", "2026-01-15T10:00:00Z")),
            ev("Upper.Csv", 1, created("a30", at)),
            ev("mixed.NdJson.ZST", 1, created("a40", "2026-01-15T10:00:00Z")),
            ev("UPPER.PARQUET", 1, created("a50", at)),
        ],
    );
}

// ---------------------------------------------------------------------------
// Duplicates (EVENTS.md "Duplicates", rules 12, 13)

/// Rule 13: the first occurrence in (path byte order, row) wins: "B.jsonl" <
/// "a-1.jsonl" < "a.jsonl" < "a/1.jsonl" < "b/2.jsonl" (upper case first, and
/// '-' < '.' < '/', so "a/1.jsonl" comes after "a.jsonl"). Payloads are
/// compared as typed values: "99.90" = 99.9, one instant in two offsets, "High"
/// = "high", a missing currency = the reporting currency, a missing priority =
/// "normal", nanoseconds truncated, unknown and undeclared fields ignored.
/// Rule 12: a rejected row does not claim its event_id, and a repeated id on
/// an invalid row is a reject, not a duplicate.
#[test]
fn first_occurrence_wins_by_path_byte_order_and_conflicts_are_counted() {
    let p = Project::from_fixture("duplicates");
    let r = p.run();
    r.assert_totals(Totals {
        rows_read: 20,
        accepted: 9,
        rejected: 3,
        duplicates: 8,
        conflicting_duplicates: 4,
        objects_ingested: 5,
        ..Default::default()
    });
    r.assert_objects(vec![
        ingested("B.jsonl", 6, 4, 1, 1, 1),   // d5 again with another name: conflicting
        ingested("a-1.jsonl", 4, 1, 0, 3, 1), // d1 conflicting; d2, d4 same payload
        ingested("a.jsonl", 3, 1, 1, 1, 0),   // d1 same payload
        ingested("a/1.jsonl", 3, 2, 0, 1, 1), // d6 one second later: conflicting
        ingested("b/2.jsonl", 4, 1, 1, 2, 1), // d8 same payload; d9 with customer C1 then c1: conflicting
    ]);
    p.assert_rejects(
        &r.run_id(),
        &[("B.jsonl", 3, "bad_timestamp"), ("a.jsonl", 3, "bad_timestamp"), ("b/2.jsonl", 2, "bad_timestamp")],
    );
    let named = |id: &str, at: &str, name: &str| event(id, "customer.created", at, json!({"name": name}));
    p.assert_events(
        &r.run_id(),
        vec![
            ev("B.jsonl", 1, named("d1", "2026-01-10T10:00:00Z", "first")),
            ev(
                "B.jsonl",
                2,
                event(
                    "d2",
                    "payment.succeeded",
                    "2026-01-10T10:00:00Z",
                    json!({"amount": "99.9000", "currency": "USD", "payment_id": "p1"}),
                ),
            ),
            ev(
                "B.jsonl",
                4,
                event(
                    "d4",
                    "support.ticket_opened",
                    "2026-01-10T11:00:00.123456Z",
                    json!({"ticket_id": "t4", "priority": "high"}),
                ),
            ),
            ev("B.jsonl", 5, named("d5", "2026-01-10T12:00:00Z", "dup-in-file")),
            ev("a-1.jsonl", 3, named("d3", "2026-01-10T10:03:00Z", "d3 valid")),
            ev("a.jsonl", 1, named("d6", "2026-01-10T10:06:00Z", "a")),
            ev("a/1.jsonl", 2, event("d7", "customer.created", "2026-01-10T10:07:00Z", json!({}))),
            ev(
                "a/1.jsonl",
                3,
                event(
                    "d8",
                    "support.ticket_opened",
                    "2026-01-10T10:08:00Z",
                    json!({"ticket_id": "t8", "priority": "normal"}),
                ),
            ),
            ev("b/2.jsonl", 3, event("d9", "customer.created", "2026-01-10T10:09:00Z", json!({"customer_id": "C1"}))),
        ],
    );
}

/// "An object is ingested once": a second run reads only the new object and
/// drops ids accepted by the first run as duplicates (conflicting when the
/// payload differs); an id rejected in run 1 is accepted in run 2 (rule 12);
/// a run with nothing new reads nothing; an object modified after ingestion is
/// reported in changed_objects and not re-read.
#[test]
fn objects_are_ingested_once_across_runs() {
    let p = Project::from_fixture("runs/run1");
    let r1 = p.run();
    let id1 = r1.run_id();
    r1.assert_totals(Totals { rows_read: 3, accepted: 2, rejected: 1, objects_ingested: 1, ..Default::default() });
    r1.assert_objects(vec![ingested("x.jsonl", 3, 2, 1, 0, 0)]);

    // A key index segment of the previous index version (another payload
    // hash): run 2 reads the keys back from `events` instead and still tells
    // duplicates from conflicting ones.
    let keys = p.warehouse.join("_tenure/ingest/keys");
    let segment = std::fs::read_dir(&keys)
        .expect("run 1 wrote key segments")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("00000000000000000001.")))
        .expect("the segment of sequence 1");
    let mut bytes = std::fs::read(&segment).expect("run 1 wrote a key segment");
    assert_eq!(&bytes[..8], b"TNKEYS02");
    bytes[..8].copy_from_slice(b"TNKEYS01");
    std::fs::write(&segment, bytes).expect("rewrite the segment");

    p.add("runs/run2");
    let r2 = p.run();
    let id2 = r2.run_id();
    assert_ne!(id1, id2, "each run has its own run_id");
    r2.assert_totals(Totals {
        rows_read: 4,
        accepted: 2,
        duplicates: 2,
        conflicting_duplicates: 1,
        objects_ingested: 1,
        objects_already_ingested: 1,
        ..Default::default()
    });
    r2.assert_objects(vec![ingested("a.jsonl", 4, 2, 0, 2, 1)]);

    let expected = || {
        vec![
            ev(
                "x.jsonl",
                1,
                event("e1", "customer.created", "2026-01-10T10:00:00Z", json!({"name": "one", "run_id": id1})),
            ),
            ev(
                "x.jsonl",
                2,
                event(
                    "e2",
                    "payment.succeeded",
                    "2026-01-11T10:00:00Z",
                    json!({"amount": "10.0000", "currency": "USD", "run_id": id1}),
                ),
            ),
            ev(
                "a.jsonl",
                3,
                event("e3", "customer.updated", "2026-01-12T10:00:00Z", json!({"segment": "SMB", "run_id": id2})),
            ),
            ev(
                "a.jsonl",
                4,
                event("e4", "customer.created", "2026-01-13T10:00:00Z", json!({"customer_id": "c2", "run_id": id2})),
            ),
        ]
    };
    p.assert_events(&id2, expected());
    p.assert_rejects(&id1, &[("x.jsonl", 3, "bad_timestamp")]);

    let r3 = p.run();
    r3.assert_totals(Totals { objects_already_ingested: 2, ..Default::default() });
    r3.assert_objects(vec![]);
    p.assert_events(&id2, expected());

    // x.jsonl rewritten with one more line (a different size and mtime).
    p.add("runs/run4");
    let r4 = p.run();
    r4.assert_totals(Totals { objects_already_ingested: 1, objects_changed: 1, ..Default::default() });
    r4.assert_objects(vec![]);
    assert_eq!(r4.paths("changed_objects"), vec!["x.jsonl".to_string()]);
    p.assert_events(&id2, expected());
    p.assert_rejects(&id1, &[("x.jsonl", 3, "bad_timestamp")]);
}

// ---------------------------------------------------------------------------
// Objects: unreadable, ignored, skipped, compressed, Parquet (rules 14, Files)

/// Rule 14: a corrupt or truncated object (gzip, zstd, Parquet) is unreadable
/// as a whole, even when its first rows decode (truncated.jsonl.gz holds 92
/// complete lines before the cut); none of its rows are counted; the other
/// objects are accounted for. Empty objects, a header-only CSV and a file of
/// blank lines are ingested with 0 rows.
#[test]
fn unreadable_objects_count_no_rows() {
    let p = Project::from_fixture("unreadable");
    let r = p.run();
    r.assert_totals(Totals {
        rows_read: 2,
        accepted: 2,
        objects_ingested: 7,
        objects_unreadable: 5,
        ..Default::default()
    });
    let bad = ["corrupt.csv.zst", "corrupt.jsonl.gz", "garbage.parquet", "truncated.jsonl.gz", "truncated.parquet"];
    let mut objects = vec![
        ingested("good.jsonl", 2, 2, 0, 0, 0),
        ingested("empty.jsonl", 0, 0, 0, 0, 0),
        ingested("empty.csv", 0, 0, 0, 0, 0),
        ingested("header_only.csv", 0, 0, 0, 0, 0),
        ingested("empty.jsonl.gz", 0, 0, 0, 0, 0),
        ingested("blank_only.jsonl", 0, 0, 0, 0, 0),
        ingested("empty.parquet", 0, 0, 0, 0, 0),
    ];
    objects.extend(bad.iter().map(|b| unreadable(b)));
    r.assert_objects(objects);
    assert_eq!(r.paths("unreadable_objects"), bad.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for u in r.ingest()["unreadable_objects"].as_array().unwrap() {
        if u.is_object() {
            assert!(u["error"].as_str().is_some_and(|e| !e.is_empty()), "unreadable object without error: {u}");
        }
    }
    p.assert_rejects(&r.run_id(), &[]);
    let e = |id: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": "2026-01-15T10:00:00Z"});
    p.assert_events(&r.run_id(), vec![ev("good.jsonl", 1, e("u1")), ev("good.jsonl", 2, e("u2"))]);
}

/// "Files": objects with a path segment below the raw prefix starting with `_`
/// or `.` are ignored; other extensions are skipped and listed; objects are
/// found at any depth. The temp dir holding the raw prefix is named `_raw.*`,
/// which must not matter (only segments below the prefix count).
#[test]
fn ignored_and_skipped_objects() {
    let p = Project::with_prefix("_raw.");
    p.add("discovery");
    let r = p.run();
    r.assert_totals(Totals {
        rows_read: 4,
        accepted: 4,
        objects_ingested: 4,
        objects_skipped: 6,
        objects_ignored: 5, // _SUCCESS, _tmp/part-1.jsonl, .part-9.jsonl, deep/_staging/s.jsonl, deep/.hidden/h.jsonl
        ..Default::default()
    });
    r.assert_objects(vec![
        ingested("a_b.jsonl", 1, 1, 0, 0, 0),
        ingested("deep/2026/01/15/part-0001.jsonl", 1, 1, 0, 0, 0),
        ingested("x.ndjson", 1, 1, 0, 0, 0),
        ingested("y.json", 1, 1, 0, 0, 0),
    ]);
    assert_eq!(
        r.paths("skipped_objects"),
        vec![
            "README",
            "data.jsonl.bak",
            "deep/2026/01/15/part-0001.jsonl.tmp",
            "events.jsonl.bz2",
            "notes.txt",
            "table.parquet.gz"
        ]
    );
    p.assert_rejects(&r.run_id(), &[]);
    let e = |id: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": "2026-01-15T10:00:00Z"});
    p.assert_events(
        &r.run_id(),
        vec![
            ev("a_b.jsonl", 1, e("g04")),
            ev("deep/2026/01/15/part-0001.jsonl", 1, e("g01")),
            ev("x.ndjson", 1, e("g02")),
            ev("y.json", 1, e("g03")),
        ],
    );
}

/// Object names are paths relative to the raw prefix, as written: spaces,
/// non-ASCII letters and `%` are not percent-encoded in `source_object` or in
/// the report, and a trailing `/` on the prefix changes nothing. Byte order
/// puts "ünïcode.jsonl" (0xC3...) after "plain.jsonl".
#[test]
fn object_names_are_kept_as_written() {
    let p = Project::from_fixture("names");
    let r = p.run_with(&RunOpts { raw_trailing_slash: true, ..RunOpts::default() });
    let (space, uni, pct) = ("with space/part 1.jsonl", "ünïcode.jsonl", "100%.jsonl");
    r.assert_totals(Totals {
        rows_read: 5,
        accepted: 4,
        duplicates: 1,
        conflicting_duplicates: 1,
        objects_ingested: 4,
        ..Default::default()
    });
    r.assert_objects(vec![
        ingested(pct, 1, 1, 0, 0, 0),
        ingested("plain.jsonl", 1, 1, 0, 0, 0),
        ingested(space, 1, 1, 0, 0, 0),
        ingested(uni, 2, 1, 0, 1, 1),
    ]);
    p.assert_rejects(&r.run_id(), &[]);
    let at = "2026-01-15T10:00:00Z";
    p.assert_events(
        &r.run_id(),
        vec![
            ev(space, 1, event("n1", "customer.created", at, json!({}))),
            ev(uni, 1, event("n2", "customer.created", at, json!({}))),
            ev(pct, 1, event("n3", "customer.created", at, json!({}))),
            ev("plain.jsonl", 1, event("n4", "customer.created", at, json!({}))),
        ],
    );
}

/// "Formats": gzip and zstd on JSON Lines and CSV, including a multi-member
/// gzip and a multi-frame zstd object; row numbers count decompressed lines.
/// Raw prefix and warehouse given as file:// URLs.
#[test]
fn gzip_and_zstd_compressed_inputs() {
    let p = Project::from_fixture("compression");
    let r = p.run_with(&RunOpts::default().urls());
    r.assert_totals(Totals { rows_read: 12, accepted: 9, rejected: 3, objects_ingested: 7, ..Default::default() });
    r.assert_objects(vec![
        ingested("a.jsonl.gz", 2, 1, 1, 0, 0),
        ingested("b.jsonl.zst", 2, 1, 1, 0, 0),
        ingested("c.csv.gz", 2, 1, 1, 0, 0),
        ingested("d.csv.zst", 1, 1, 0, 0, 0),
        ingested("e.ndjson.gz", 1, 1, 0, 0, 0),
        ingested("f.jsonl.gz", 2, 2, 0, 0, 0),
        ingested("g.json.zst", 2, 2, 0, 0, 0),
    ]);
    p.assert_rejects(
        &r.run_id(),
        &[("a.jsonl.gz", 3, "malformed"), ("b.jsonl.zst", 2, "bad_timestamp"), ("c.csv.gz", 2, MF)],
    );
    let e = |id: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": "2026-01-15T10:00:00Z"});
    let named = |id: &str, name: &str| {
        let mut v = e(id);
        v["name"] = json!(name);
        v
    };
    p.assert_events(
        &r.run_id(),
        vec![
            ev("a.jsonl.gz", 1, e("ca1")),
            ev("b.jsonl.zst", 1, e("cb1")),
            ev("c.csv.gz", 1, named("cc1", "Gz")),
            ev("d.csv.zst", 1, named("cd1", "Zst")),
            ev("e.ndjson.gz", 1, e("ce1")),
            ev("f.jsonl.gz", 1, e("cf1")),
            ev("f.jsonl.gz", 2, e("cf2")),
            ev("g.json.zst", 1, e("cg1")),
            ev("g.json.zst", 2, e("cg2")),
        ],
    );
}

/// Row numbers across the decoder's batches: 20,000-row objects (see
/// make_encoded.py). In big.jsonl.gz line i holds event L<i>, lines divisible
/// by 4096 are blank, lines divisible by 1000 have a bad timestamp; in
/// big.csv.zst record r holds event C<r>, records divisible by 1000 have no
/// customer_id and records 1, 5001, 10001, 15001 span two lines.
#[test]
fn row_numbers_hold_across_large_objects() {
    let p = Project::from_fixture("large");
    let r = p.run();
    let (j, c) = ("big.jsonl.gz", "big.csv.zst");
    r.assert_totals(Totals {
        rows_read: 39_996,
        accepted: 39_956,
        rejected: 40,
        objects_ingested: 2,
        ..Default::default()
    });
    r.assert_objects(vec![ingested(j, 19_996, 19_976, 20, 0, 0), ingested(c, 20_000, 19_980, 20, 0, 0)]);
    let mut rejects: Vec<(&str, i64, &str)> = (1..=20).map(|k| (j, k * 1000, "bad_timestamp")).collect();
    rejects.extend((1..=20).map(|k| (c, k * 1000, MF)));
    p.assert_rejects(&r.run_id(), &rejects);
    let events = p.events();
    assert_eq!(events.rows.len(), 39_956);
    for row in &events.rows {
        let id = s(&row["event_id"]);
        let n: i64 = id[1..].parse().unwrap();
        let expected_object = if id.starts_with('L') { j } else { c };
        assert_eq!(
            (s(&row["source_object"]), row["source_row"].as_i64()),
            (expected_object.to_string(), Some(n)),
            "lineage of {id}"
        );
        if id.starts_with('L') {
            let date = format!("2026-02-{:02}", 1 + n % 28);
            assert_eq!(row["event_date"], date.as_str(), "event_date of {id}");
        } else {
            let name = if n % 5000 == 1 { "two\nlines" } else { "n" };
            assert_eq!(row["name"], name, "name of {id}");
        }
    }
}

/// Parquet input (tests/fixtures/ingest/make_parquet.py): native types
/// (timestamp µs UTC, decimal(12,2), int32, int64, double) across row groups,
/// a zone-less ns timestamp (UTC, truncated to µs), a timestamp with a zone,
/// all-string columns (validated like CSV), a decimal(10,6) column; row numbers
/// are 1-based row indexes; `raw` of a Parquet reject is its JSON rendering.
#[test]
fn parquet_inputs() {
    let p = Project::from_fixture("parquet");
    let r = p.run();
    let (t, n, z, s6, st) = ("typed.parquet", "naive.parquet", "tokyo.parquet", "decimal6.parquet", "strings.parquet");
    r.assert_totals(Totals { rows_read: 22, accepted: 13, rejected: 9, objects_ingested: 5, ..Default::default() });
    r.assert_objects(vec![
        ingested(t, 10, 6, 4, 0, 0),
        ingested(n, 3, 3, 0, 0, 0),
        ingested(z, 1, 1, 0, 0, 0),
        ingested(st, 5, 2, 3, 0, 0),
        ingested(s6, 3, 1, 2, 0, 0),
    ]);
    let rejects = p.assert_rejects(
        &r.run_id(),
        &[
            (t, 4, MF),                   // event_id null
            (t, 5, "negative_amount"),    // mrr -1.00
            (t, 8, "score_out_of_range"), // csat 9
            (t, 9, MF),                   // occurred_at null
            (st, 3, "bad_number"),        // amount "1.23456"
            (st, 4, "bad_timestamp"),     // "2026-01-08"
            (st, 5, MF),                  // customer_id ""
            (s6, 2, "bad_number"),        // 1.234567
            (s6, 3, "negative_amount"),   // -0.000100
        ],
    );
    let raw: serde_json::Value =
        serde_json::from_str(reject(&rejects, t, 5)["raw"].as_str().unwrap()).expect("raw of a Parquet reject is JSON");
    assert_eq!(raw["event_id"], "pq5", "raw of typed.parquet row 5: {raw}");
    assert_eq!(raw["event_type"], "subscription.changed", "raw of typed.parquet row 5: {raw}");
    let created = |id: &str, at: &str| event(id, "customer.created", at, json!({}));
    p.assert_events(
        &r.run_id(),
        vec![
            ev(
                t,
                1,
                event(
                    "pq1",
                    "subscription.started",
                    "2026-01-05T10:00:00.123456Z",
                    json!({"subscription_id": "s1", "plan": "pro", "mrr": "99.9000", "currency": "USD", "seats": 3}),
                ),
            ),
            ev(
                t,
                2,
                event(
                    "pq2",
                    "payment.succeeded",
                    "2026-01-06T00:00:00Z",
                    json!({"amount": "12.3400", "currency": "USD", "payment_id": "p1"}),
                ),
            ),
            ev(t, 3, event("pq3", "survey.nps", "2026-01-06T01:00:00Z", json!({"score": 9}))),
            ev(
                t,
                6,
                event(
                    "pq6",
                    "support.ticket_opened",
                    "2026-01-06T04:00:00Z",
                    json!({"ticket_id": "t1", "priority": "high"}),
                ),
            ),
            ev(
                t,
                7,
                event(
                    "pq7",
                    "usage.feature_used",
                    "2026-01-06T05:00:00Z",
                    json!({"feature": "Export", "quantity": 2.5}),
                ),
            ),
            ev(
                t,
                10,
                event(
                    "pq10",
                    "support.ticket_resolved",
                    "2026-01-06T07:00:00Z",
                    json!({"ticket_id": "t1", "priority": "normal"}),
                ),
            ),
            ev(n, 1, created("pn1", "2026-01-07T08:09:10.123456Z")),
            ev(n, 2, created("pn2", "2026-01-07T23:59:59.999999Z")),
            ev(n, 3, created("pn3", "1969-12-31T23:59:59.999999Z")), // -1 ns: truncated, not rounded to the epoch
            ev(z, 1, created("pt1", "2026-01-06T15:30:00Z")),
            ev(
                st,
                1,
                event(
                    "ps1",
                    "subscription.started",
                    "2026-01-08T00:00:00Z",
                    json!({"subscription_id": "s2", "mrr": "99.9000", "seats": 9, "currency": "USD"}),
                ),
            ),
            ev(st, 2, event("ps2", "survey.nps", "2026-01-08T10:00:00Z", json!({"score": 10}))),
            ev(
                s6,
                1,
                event(
                    "pd1",
                    "payment.succeeded",
                    "2026-01-09T10:00:00Z",
                    json!({"amount": "1.5000", "currency": "USD"}),
                ),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Run-level settings

/// "a missing currency means the reporting currency" (here EUR), stored
/// upper-case on types that declare `currency` and NULL on the others; another
/// currency is `unsupported_currency`.
#[test]
fn missing_currency_is_the_reporting_currency() {
    let p = Project::from_fixture("currency");
    let r = p.run_with(&RunOpts::default().currency(Some("EUR")));
    assert_eq!(r.json["currency"], "EUR");
    let f = "cur.jsonl";
    r.assert_totals(Totals { rows_read: 6, accepted: 5, rejected: 1, objects_ingested: 1, ..Default::default() });
    p.assert_rejects(&r.run_id(), &[(f, 3, "unsupported_currency")]);
    let at = "2026-01-10T10:00:00Z";
    p.assert_events(
        &r.run_id(),
        vec![
            ev(f, 1, event("k1", "payment.succeeded", at, json!({"amount": "5.0000", "currency": "EUR"}))),
            ev(f, 2, event("k2", "payment.refunded", at, json!({"amount": "5.0000", "currency": "EUR"}))),
            ev(
                f,
                4,
                event(
                    "k4",
                    "subscription.started",
                    at,
                    json!({"subscription_id": "s1", "mrr": "10.0000", "currency": "EUR"}),
                ),
            ),
            ev(f, 5, event("k5", "customer.created", at, json!({}))),
            ev(f, 6, event("k6", "subscription.cancelled", at, json!({"subscription_id": "s1"}))),
        ],
    );
}

/// An empty raw prefix is a successful run with nothing read and empty
/// `events` and `rejects` tables.
#[test]
fn empty_raw_prefix_publishes_empty_tables() {
    let p = Project::new();
    let r = p.run();
    r.assert_totals(Totals::default());
    r.assert_objects(vec![]);
    p.assert_rejects(&r.run_id(), &[]);
    p.assert_events(&r.run_id(), vec![]);
}

/// `ingest.max_reject_rate` (config): crossing it fails the run, and nothing
/// is committed (config reference: "Fail the run, committing nothing"): no
/// event or reject becomes visible, and the object is not marked ingested, so
/// a later run with the default threshold (1.0, never fails) ingests it.
#[test]
fn reject_rate_above_the_threshold_fails_the_run_and_commits_nothing() {
    let p = Project::from_fixture("reasons"); // 22 of 39 rows rejected
    let config = config_with(p.dir.path(), |t| {
        set(t, &["ingest", "max_reject_rate"], toml::Value::Float(0.1));
    });
    let (out, report) = p.try_run(&RunOpts::default().config(&config));
    assert!(!out.status.success(), "a run with 56% rejects and max_reject_rate 0.1 must fail:\n{}", output_text(&out));
    if let Some(report) = report {
        assert_eq!(report.json["status"], "failed", "report of the failed run: {}", report.json);
    }
    for table in ["events", "rejects"] {
        let path = p.table(table);
        if table_exists(&path) {
            let t = read_table(&path);
            assert!(t.rows.is_empty(), "a failed run committed {table}: {}", pretty(&t.rows));
        }
    }
    let r = p.run();
    r.assert_totals(Totals { rows_read: 39, accepted: 17, rejected: 22, objects_ingested: 1, ..Default::default() });
}
