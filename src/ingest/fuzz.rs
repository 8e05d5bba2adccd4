//! Bounded fuzzing of the JSON Lines and CSV decoders with validation behind
//! them: random bytes, and real lines (poison numbers among them) with a few
//! bytes changed. Whatever the input, decoding and validating never panics,
//! and every row read comes out as exactly one accepted or rejected row
//! (EVENTS.md "Conservation"), counted apart from the decoder. A few hundred
//! cases per property, so `cargo test` stays fast in debug builds.

use super::decode::{Compression, Format};
use super::keys::SeenKeys;
use super::{decode_object, Decoded, Discovered, ObjectStatus};
use bytes::Bytes;
use proptest::prelude::*;

const JSON_LINES: [&str; 9] = [
    r#"{"event_id":"e1","event_type":"subscription.started","customer_id":"c1","occurred_at":"2026-01-12T10:00:00Z","subscription_id":"s1","mrr":99.90,"seats":9e0,"currency":"USD"}"#,
    r#"{"event_id":"e2","event_type":"payment.succeeded","customer_id":"c1","occurred_at":"2026-01-12T10:00:00+09:00","amount":"12.50"}"#,
    r#"{"event_id":"e3","event_type":"usage.login","customer_id":"c2","occurred_at":"2026-01-12 10:00:00","quantity":1.5e-3,"user_id":"u1"}"#,
    r#"{"event_id":"e4","event_type":"survey.nps","customer_id":"c3","occurred_at":"2026-01-12T10:00:00Z","score":1e9223372036854775807}"#,
    r#"{"event_id":"e5","event_type":"subscription.changed","customer_id":"c1","occurred_at":"2026-01-12T10:00:00Z","subscription_id":"s1","mrr":5e9223372036854775807}"#,
    r#"{"event_id":"e6","event_type":"support.ticket_opened","customer_id":"c4","occurred_at":"2026-01-12T10:00:00Z","ticket_id":"t1","priority":"HIGH","comment":"caf\u00e9 \"q\""}"#,
    r#"{"event_id":"e7","event_type":"survey.csat","customer_id":"c5","occurred_at":"2026-01-12T10:00:00Z","score":"5.0","segment":{"a":[1,2]}}"#,
    r#"{"event_id":"e8","event_type":"usage.feature_used","customer_id":"c6","occurred_at":"2026-01-12T10:00:00Z","quantity":1e-9223372036854775808}"#,
    r#"{"event_id":"e1","event_type":"subscription.paused","customer_id":"c1","occurred_at":"2026-01-13T10:00:00Z","subscription_id":"s1","seats":1e19}"#,
];

const CSV_HEADER: &str = "event_id,event_type,customer_id,occurred_at,subscription_id,mrr,seats,score,quantity,amount,currency";
const CSV_LINES: [&str; 6] = [
    "e1,subscription.started,c1,2026-01-12T10:00:00Z,s1,99.90,9.0,,,,usd",
    "e2,payment.succeeded,c1,2026-01-12T10:00:00Z,,,,,,-0,USD",
    "e3,survey.nps,c2,2026-01-12T10:00:00Z,,,,1e9223372036854775807,,,",
    "e4,usage.login,c3,2026-01-12T10:00:00Z,,,,,1e-9223372036854775808,,",
    "e5,subscription.changed,c1,2026-01-12T10:00:00Z,s1,5e9223372036854775807,9e18,,,,",
    "e6,survey.csat,c4,2026-01-12T10:00:00Z,,,,5.0,,,",
];

/// Bytes that matter to JSON, CSV and numbers.
const ALPHABET: &[u8] = b"{}[]\",:\\ \t\r\n0123456789eE+-.ntrufals\xEF\xBB\xBF\xFF\x00x";

fn decoded(name: &str, bytes: Bytes, format: Format, compression: Compression) -> Decoded {
    let meta = object_store::ObjectMeta {
        location: object_store::path::Path::from(name),
        last_modified: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
        size: bytes.len() as u64,
        e_tag: None,
        version: None,
    };
    let obj = Discovered {
        relative: name.to_string(),
        meta,
        format,
        compression,
    };
    // Inputs here are far smaller than one part.
    decode_object(&obj, bytes, chrono_tz::UTC, "USD", "run", Default::default(), super::PartLimits::DEFAULT, &mut |_| true)
}

/// Rows read add up: each is accepted, a duplicate or rejected, once; the
/// rejects carry distinct row numbers in `1..=max_row`.
fn conserved(d: &mut Decoded, max_row: u64) {
    let r = &d.report;
    assert_eq!(r.rows_read, (d.kinds.len() + d.rejects.len()) as u64, "rows read = validated + rejected");
    assert_eq!(r.rejected, d.rejects.len() as u64);
    let rows: Vec<i64> = d.rejects.iter().map(|x| x.source_row).collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "one reject per row, in row order: {rows:?}");
    assert!(rows.iter().all(|&n| n >= 1 && n as u64 <= max_row), "reject rows {rows:?} within 1..={max_row}");
    d.claim(&mut SeenKeys::default()).expect("claimed");
    let r = &d.report;
    assert_eq!(r.accepted + r.duplicates + r.rejected, r.rows_read, "accepted + duplicates + rejected = rows read");
}

/// Non-blank lines (EVENTS.md rule 1), counted without the decoder.
fn json_rows(bytes: &[u8]) -> u64 {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count() as u64
}

fn gzip(bytes: &[u8]) -> Bytes {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip in memory");
    Bytes::from(gz.finish().expect("gzip in memory"))
}

/// A JSON Lines object, read in place and through gzip: every line is one
/// row, the same rows either way.
fn check_json_lines(bytes: Vec<u8>) {
    let lines = bytes.split(|&b| b == b'\n').count() as u64;
    let expected = json_rows(&bytes);
    let mut plain = decoded("a.jsonl", Bytes::from(bytes.clone()), Format::JsonLines, Compression::None);
    assert_eq!(plain.report.status, ObjectStatus::Ingested);
    assert_eq!(plain.report.rows_read, expected, "one row per non-blank line");
    conserved(&mut plain, lines);
    let mut zipped = decoded("a.jsonl.gz", gzip(&bytes), Format::JsonLines, Compression::Gzip);
    assert_eq!(zipped.report.status, ObjectStatus::Ingested);
    conserved(&mut zipped, lines);
    let outcome = |d: &Decoded| (d.report.rows_read, d.report.accepted, d.report.rejects_by_reason.clone());
    assert_eq!(outcome(&plain), outcome(&zipped));
}

/// A CSV object; `data_lines` the records it holds when known.
fn check_csv(bytes: Vec<u8>, data_lines: Option<u64>) {
    // CSV ends a record at `\r` too.
    let lines = bytes.split(|&b| b == b'\n' || b == b'\r').count() as u64;
    let mut d = decoded("a.csv", Bytes::from(bytes), Format::Csv, Compression::None);
    if !d.report.status.is_read() {
        assert_eq!((d.report.rows_read, d.kinds.len(), d.rejects.len()), (0, 0, 0), "an unreadable object counts no rows");
        assert!(data_lines.is_none(), "an object of real records with a few bytes changed is readable");
        return;
    }
    if let Some(n) = data_lines {
        assert_eq!(d.report.rows_read, n, "one row per record");
    }
    conserved(&mut d, lines);
}

/// `lines` joined, then each (line, place, byte, how) applied: insert,
/// delete or replace one byte.
fn mutate(lines: &[&str], edits: &[(usize, usize, u8, u8)]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
    let count = lines.len();
    for &(line, at, byte, how) in edits {
        let l = &mut lines[line % count];
        let at = at % (l.len() + 1);
        match how % 3 {
            0 => l.insert(at, byte),
            1 if at < l.len() => {
                l.remove(at);
            }
            _ if at < l.len() => l[at] = byte,
            _ => l.push(byte),
        }
    }
    lines
}

fn edits(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<(usize, usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<usize>(), proptest::sample::select(alphabet), any::<u8>()), 0..4)
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_decode_into_conserved_rows(bytes in noise()) {
        check_json_lines(bytes.clone());
        check_csv(bytes, None);
    }

    #[test]
    fn mutated_json_lines_decode_into_conserved_rows(
        picks in proptest::collection::vec(0..JSON_LINES.len(), 1..8),
        edits in edits(ALPHABET),
        crlf in any::<bool>(),
    ) {
        let lines: Vec<&str> = picks.iter().map(|&i| JSON_LINES[i]).collect();
        let separator: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        check_json_lines(mutate(&lines, &edits).join(separator));
    }

    #[test]
    fn mutated_csv_records_decode_into_conserved_rows(
        picks in proptest::collection::vec(0..CSV_LINES.len(), 1..8),
        edits in edits(b",:- 0123456789eE+.abc\xFF"),
    ) {
        // No quote or line break among the edits: every record stays one line.
        let mut lines = vec![CSV_HEADER];
        lines.extend(picks.iter().map(|&i| CSV_LINES[i]));
        let edits: Vec<_> = edits.into_iter().map(|(line, at, byte, how)| (1 + line % picks.len(), at, byte, how)).collect();
        let mut bytes = mutate(&lines, &edits).join(&b'\n');
        bytes.push(b'\n');
        check_csv(bytes, Some(picks.len() as u64));
    }
}
