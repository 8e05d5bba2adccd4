//! Hostile input is bounded (`ingest.max_record_bytes`,
//! `ingest.max_object_bytes`): decompression bombs made here, in the test,
//! end as a malformed reject or an unreadable object, and a decoder that
//! panics costs its object, never the run.

use crate::common::*;
use serde_json::json;
use std::io::Write;
use std::process::Command;

/// A gzip member holding `bytes`.
fn member(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// A gzip object of `head`, then `fill` repeated `times` times, then `tail`:
/// concatenated members, each of which a gzip reader reads on from the last,
/// so a large object is made without compressing all of it.
fn bomb(head: &[u8], fill: &[u8], times: usize, tail: &[u8]) -> Vec<u8> {
    let fill = member(fill);
    let mut out = member(head);
    for _ in 0..times {
        out.extend_from_slice(&fill);
    }
    out.extend(member(tail));
    out
}

fn line(id: &str) -> String {
    format!(r#"{{"event_id":"{id}","event_type":"customer.created","customer_id":"c1","occurred_at":"2026-01-15T10:00:00Z"}}"#)
}

const MIB: usize = 1 << 20;

/// A JSON Lines line and a quoted CSV cell of 64 MiB each, under a record
/// limit of 1 MiB: each one malformed reject, its raw text cut to 4 KiB and
/// its length in the detail, the rows around it read. An object of more
/// than 100 MiB of blank lines under an object limit of 100 MiB: unreadable,
/// with that reason. The run succeeds.
#[test]
fn decompression_bombs_end_as_rejects_and_unreadable_objects() {
    let p = Project::new();
    let a = line("a");
    let b = line("b");
    let json = bomb(format!("{a}\n").as_bytes(), &vec![b'x'; MIB], 64, format!("\n{b}\n").as_bytes());
    assert!(json.len() < MIB, "the bomb is small on disk: {} bytes", json.len());
    std::fs::write(p.raw.join("bomb.jsonl.gz"), json).unwrap();
    let csv_head = format!("event_id,event_type,customer_id,occurred_at\nc,customer.created,c1,2026-01-15T10:00:00Z\n\"");
    let csv_tail = "\",customer.created,c1,2026-01-15T10:00:00Z\nd,customer.created,c1,2026-01-15T10:00:00Z\n";
    std::fs::write(p.raw.join("bomb.csv.gz"), bomb(csv_head.as_bytes(), &b"y\n".repeat(MIB / 2), 64, csv_tail.as_bytes())).unwrap();
    std::fs::write(p.raw.join("large.jsonl.gz"), bomb(format!("{}\n", line("e")).as_bytes(), &vec![b'\n'; MIB], 101, b"")).unwrap();
    std::fs::write(p.raw.join("small.jsonl"), format!("{}\n", line("f"))).unwrap();
    let config = config_with(p.dir.path(), |t| {
        set(t, &["ingest", "max_record_bytes"], toml::Value::Integer(MIB as i64));
        set(t, &["ingest", "max_object_bytes"], toml::Value::Integer(100 * MIB as i64));
    });
    let r = p.run_with(&RunOpts::default().config(&config));

    r.assert_totals(Totals { rows_read: 7, accepted: 5, rejected: 2, objects_ingested: 3, objects_unreadable: 1, ..Default::default() });
    r.assert_objects(vec![
        ingested("bomb.jsonl.gz", 3, 2, 1, 0, 0),
        ingested("bomb.csv.gz", 3, 2, 1, 0, 0),
        ingested("small.jsonl", 1, 1, 0, 0, 0),
        unreadable("large.jsonl.gz"),
    ]);
    let unreadable = &r.ingest()["unreadable_objects"];
    assert_eq!(unreadable[0]["path"], "large.jsonl.gz", "{unreadable}");
    let error = s(&unreadable[0]["error"]);
    assert!(error.contains("max_object_bytes") && error.contains(&format!("({} bytes)", 100 * MIB)), "{error}");

    let rejects = p.assert_rejects(&r.run_id(), &[("bomb.jsonl.gz", 2, "malformed"), ("bomb.csv.gz", 2, "malformed")]);
    let line_reject = reject(&rejects, "bomb.jsonl.gz", 2);
    assert_eq!(s(&line_reject["raw"]), "x".repeat(4096));
    let detail = s(&line_reject["detail"]);
    assert!(detail.contains(&format!("line is {} bytes", 64 * MIB)) && detail.contains(&format!("max_record_bytes ({MIB} bytes)")), "{detail}");
    let record_reject = reject(&rejects, "bomb.csv.gz", 2);
    assert_eq!(s(&record_reject["raw"]).len(), 4096);
    assert!(s(&record_reject["raw"]).starts_with("\"y\ny\n"), "{}", &s(&record_reject["raw"])[..8]);
    let detail = s(&record_reject["detail"]);
    assert!(detail.contains(&format!("record is {} bytes", 64 * MIB + 1 + csv_tail.find('\n').unwrap() + 1)), "{detail}");

    let e = |id: &str| json!({"event_id": id, "event_type": "customer.created", "customer_id": "c1", "occurred_at": "2026-01-15T10:00:00Z"});
    p.assert_events(
        &r.run_id(),
        vec![
            ev("bomb.csv.gz", 1, e("c")),
            ev("bomb.csv.gz", 3, e("d")),
            ev("bomb.jsonl.gz", 1, e("a")),
            ev("bomb.jsonl.gz", 3, e("b")),
            ev("small.jsonl", 1, e("f")),
        ],
    );
}

/// A panic while an object is decoded (here set off by the
/// `decode:<object>` failpoint, in a Parquet object) makes that object
/// unreadable with the panic's message; the run goes on and succeeds, and the
/// object is read by the next run.
#[test]
fn a_decoder_panic_makes_its_object_unreadable() {
    let p = Project::new();
    std::fs::copy(fixture("parquet").join("strings.parquet"), p.raw.join("b.parquet")).unwrap();
    std::fs::write(p.raw.join("a.jsonl"), format!("{}\n", line("a"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["run", "--raw"])
        .arg(&p.raw)
        .arg("--warehouse")
        .arg(&p.warehouse)
        .args(["--as-of", AS_OF, "--timezone", "UTC", "--currency", "USD"])
        .current_dir(repo())
        .env("TENURE_FAILPOINT", "decode:b.parquet")
        .output()
        .expect("run tenure");
    assert!(out.status.success(), "the run failed:\n{}", output_text(&out));
    let reports: Vec<_> = std::fs::read_dir(p.reports_dir()).unwrap().map(|e| e.unwrap().path()).filter(|f| f.extension().is_some_and(|x| x == "json")).collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = Report::load(&reports[0]);
    r.check_conservation();
    let objects = r.objects();
    assert_eq!(objects.iter().find(|o| o.path == "a.jsonl"), Some(&ingested("a.jsonl", 1, 1, 0, 0, 0)), "{objects:?}");
    assert_eq!(objects.iter().find(|o| o.path == "b.parquet"), Some(&unreadable("b.parquet")), "{objects:?}");
    let error = s(&r.ingest()["unreadable_objects"][0]["error"]);
    assert!(error.contains("panicked") && error.contains("failpoint decode:b.parquet"), "{error}");

    // Without the panic, the next run reads it.
    let again = p.run();
    assert_eq!(again.objects().iter().find(|o| o.path == "b.parquet").map(|o| o.status.as_str()), Some("ingested"));
}
