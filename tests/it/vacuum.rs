//! `tenure vacuum` after many runs: every table gets checkpoints and reads
//! back (with the Python reader) as it did; versions inside the retention
//! window stay readable, older ones are gone; orphans of failed runs, state,
//! key segments and old run reports are deleted; and the next incremental run
//! still publishes what a full rebuild publishes.

use crate::common::{config_with, output_text, python, read_table, read_table_version, set, tenure, Project};
use crate::incremental::{check_step, demo_objects, latest_report, place, plan_of, reports, run, sorted_rows, MARTS};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn vacuum(warehouse: &Path, extra: &[&str]) -> String {
    let mut args = vec!["vacuum".to_string(), "--warehouse".into(), warehouse.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tenure(&args);
    assert!(out.status.success(), "tenure vacuum failed:\n{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names of the files in `dir` (not below it).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Every table: `events`, `rejects` and the marts, with their folders.
fn tables(warehouse: &Path) -> Vec<(String, PathBuf)> {
    let mut out = vec![("events".to_string(), warehouse.join("events")), ("rejects".to_string(), warehouse.join("rejects"))];
    out.extend(MARTS.iter().map(|m| (m.to_string(), warehouse.join("marts").join(m))));
    out
}

/// The rows of every table's current version, sorted.
fn all_rows(warehouse: &Path) -> BTreeMap<String, Vec<String>> {
    tables(warehouse)
        .into_iter()
        .map(|(name, dir)| {
            let mut rows: Vec<String> = read_table(&dir).rows.iter().map(Value::to_string).collect();
            rows.sort();
            (name, rows)
        })
        .collect()
}

/// The data files the current version of the table at `dir` refers to,
/// as the Python reader sees them.
fn live_file_count(dir: &Path) -> usize {
    let code = "import sys; from deltalake import DeltaTable; print(len(DeltaTable(sys.argv[1]).file_uris()))";
    let out = std::process::Command::new(python()).args(["-c", code]).arg(dir).output().expect("python");
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

/// Whether the Python reader can read `version` of the table at `dir`.
fn readable(dir: &Path, version: i64) -> bool {
    let code = "import sys; from deltalake import DeltaTable; DeltaTable(sys.argv[1], version=int(sys.argv[2])).to_pyarrow_table()";
    let out = std::process::Command::new(python()).args(["-c", code]).arg(dir).arg(version.to_string()).output().expect("python");
    out.status.success()
}

/// The key segments the committed ingest sequence's chain names, read from
/// the manifest entries as a run follows them.
fn key_chain(warehouse: &Path, committed: i64) -> Vec<String> {
    let manifest = warehouse.join("_tenure/ingest");
    let mut chain = Vec::new();
    let mut sequence = committed;
    while sequence >= 1 {
        let entry: Value = serde_json::from_slice(&std::fs::read(manifest.join(format!("{sequence:020}.json"))).expect("entry")).expect("json");
        let keys = &entry["keys"];
        chain.push(keys["file"].as_str().expect("a segment").trim_start_matches("keys/").to_string());
        sequence = keys["covers_from"].as_i64().expect("covers_from") - 1;
    }
    chain.sort();
    chain
}

#[test]
fn vacuum_after_many_runs_keeps_tables_and_time_travel_in_its_window() {
    let demo = tempfile::tempdir().expect("tempdir");
    let out = tenure(&["demo", "--dir", &demo.path().display().to_string(), "--customers", "40"]);
    assert!(out.status.success(), "tenure demo failed:\n{}", output_text(&out));
    let source = demo.path().join("raw");
    let objects = demo_objects(&source);
    let p = Project::new();
    let add_through = |last: &str| {
        for (rel, date) in &objects {
            if date.as_deref().is_none_or(|d| d <= last) {
                place(&source, &p.raw, rel);
            }
        }
    };

    // 12 runs, each with a new day of objects; the time between the 8th and
    // the 9th is where the retention window will start.
    let days: Vec<String> = std::iter::once("2026-10-31".to_string()).chain((1..=11).map(|d| format!("2026-11-{d:02}"))).collect();
    let mut inside: Vec<(String, i64, Vec<Value>)> = Vec::new();
    let mut window_start = None;
    for (i, day) in days.iter().enumerate() {
        add_through(day);
        run(&p, &p.warehouse, day, &[]);
        if i == 7 {
            let report = latest_report(&p.warehouse);
            for t in report["tables"].as_array().expect("tables") {
                let name = t["name"].as_str().expect("name").to_string();
                if MARTS.contains(&name.as_str()) {
                    let version = t["version"].as_i64().expect("version");
                    inside.push((name.clone(), version, sorted_rows(&p.warehouse, &name)));
                }
            }
            std::thread::sleep(Duration::from_millis(1500));
            window_start = Some(Instant::now());
        }
    }
    assert_eq!(inside.len(), MARTS.len(), "the 8th run published every mart");

    // Checkpoints every 10 commits on every table, and the property set.
    for (name, dir) in tables(&p.warehouse) {
        let log = names(&dir.join("_delta_log"));
        assert!(log.iter().any(|f| f.ends_with(".checkpoint.parquet")), "{name}: no checkpoint after 12 runs: {log:?}");
        let first = std::fs::read_to_string(dir.join("_delta_log/00000000000000000000.json")).expect("first commit");
        assert!(first.contains(r#""delta.checkpointInterval":"10""#), "{name}: {first}");
    }
    let before = all_rows(&p.warehouse);

    // Vacuum with a window that starts between the 8th and the 9th run.
    let since = window_start.expect("set").elapsed() + Duration::from_millis(300);
    let hours = format!("{:.6}", since.as_secs_f64() / 3600.0);
    let printed = vacuum(&p.warehouse, &["--retain-hours", &hours]);
    assert_eq!(all_rows(&p.warehouse), before, "every table reads back as before the vacuum:\n{printed}");
    for (name, version, rows) in &inside {
        let dir = p.warehouse.join("marts").join(name);
        let mut then = read_table_version(&dir, Some(*version)).rows;
        then.sort_by_key(|r| r.to_string());
        assert_eq!(&then, rows, "{name}: version {version}, inside the window, reads as it did");
        // Before the window: its files are gone (marts whose every version
        // has rows; an empty version has no files to lose).
        if ["mrr_monthly", "mrr_bridge_monthly", "customer_health"].contains(&name.as_str()) {
            assert!(!readable(&dir, version - 3), "{name}: version {} is older than the window and still readable:\n{printed}", version - 3);
        }
    }
    // Time travel by name in `tenure query` inside the window.
    let (name, version, rows) = &inside[inside.iter().position(|(n, ..)| n == "mrr_monthly").expect("mrr_monthly")];
    let sql = format!(r#"select * from "{name}@v{version}""#);
    let out = tenure(&["query", &sql, "--warehouse", &p.warehouse.display().to_string(), "--format", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let got: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json rows");
    assert_eq!(got.len(), rows.len(), "{sql}");

    // Leftovers of failed runs, made old by a vacuum with no window: a data
    // file no version refers to, a mart whose first publish never committed,
    // state no run lists, and a run report older than runs.retain_days.
    let orphans = [
        p.warehouse.join("events/part-00000-0000-orphan.snappy.parquet"),
        p.warehouse.join("marts/mrr_monthly/part-00000-0000-orphan.snappy.parquet"),
        p.warehouse.join("marts/never_committed/part-00000-0000-orphan.snappy.parquet"),
        p.warehouse.join("_state/int_customer_states/2026-01.failed-run.arrow"),
    ];
    for o in &orphans {
        std::fs::create_dir_all(o.parent().expect("parent")).expect("mkdir");
        std::fs::write(o, b"left by a failed run").expect("orphan");
    }
    let mut old = latest_report(&p.warehouse);
    old["run_id"] = "20200101T000000000Z-old".into();
    old["started_at"] = "2020-01-01T00:00:00+00:00".into();
    old["finished_at"] = "2020-01-01T00:01:00+00:00".into();
    // One old run closed nothing, another closed a month: the reported
    // rows name the second (close_run_id), so its report stays.
    let mut closing = old.clone();
    old["closes"] = serde_json::json!([]);
    let old_report = p.warehouse.join("_runs/20200101T000000000Z-old.json");
    std::fs::write(&old_report, serde_json::to_vec(&old).expect("json")).expect("old report");
    closing["run_id"] = "20200102T000000000Z-closing".into();
    closing["closes"] = serde_json::json!([{"month": "2019-12", "close_version": 1, "closed_on": "2020-01-02", "rows": 1}]);
    let closing_report = p.warehouse.join("_runs/20200102T000000000Z-closing.json");
    std::fs::write(&closing_report, serde_json::to_vec(&closing).expect("json")).expect("closing report");
    let segments_before = names(&p.warehouse.join("_tenure/ingest/keys"));
    let committed = latest_report(&p.warehouse)["ingest"]["sequence"].as_i64().expect("sequence");

    let config = config_with(p.dir.path(), |t| set(t, &["runs", "retain_days"], toml::Value::Integer(1)));
    let printed = vacuum(&p.warehouse, &["--retain-hours", "0", "--config", &config.display().to_string()]);
    assert_eq!(all_rows(&p.warehouse), before, "every table reads back as before:\n{printed}");
    for o in &orphans {
        assert!(!o.exists(), "{} is still there:\n{printed}", o.display());
    }
    assert!(!old_report.exists(), "a report older than runs.retain_days is deleted");
    assert!(closing_report.exists(), "the report of a run that closed a month is kept");
    std::fs::remove_file(&closing_report).expect("remove");
    assert_eq!(reports(&p.warehouse).len(), 12, "the reports of the last day stay");
    for (name, dir) in tables(&p.warehouse) {
        let parquet = std::fs::read_dir(&dir).expect("table dir").filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))).count();
        assert_eq!(parquet, live_file_count(&dir), "{name}: only the current version's data files are left:\n{printed}");
        let log = names(&dir.join("_delta_log"));
        assert!(!log.contains(&"00000000000000000000.json".to_string()), "{name}: the log before the last checkpoint is cleaned: {log:?}");
    }
    let out = tenure(&["query", r#"select * from "mrr_monthly@v2""#, "--warehouse", &p.warehouse.display().to_string()]);
    assert!(!out.status.success(), "a version before the window is gone:\n{}", output_text(&out));
    // Key segments: exactly the chain a run follows is left.
    let segments = names(&p.warehouse.join("_tenure/ingest/keys"));
    assert_eq!(segments, key_chain(&p.warehouse, committed), "before: {segments_before:?}");
    assert!(segments.len() < segments_before.len(), "merged segments are deleted: {segments_before:?} -> {segments:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(p.warehouse.join("_tenure/vacuum.json")).expect("vacuum record")).expect("json");
    assert_eq!(record["retain_hours"], 0.0);

    // The next run: a new day, and one object again under another name (its
    // events were accepted before: duplicates, found in the remaining
    // segments). It keeps the rows of its base, and publishes what a full
    // rebuild publishes.
    add_through("2026-11-12");
    let again = objects.iter().find(|(_, d)| d.as_deref() == Some("2026-11-05")).map(|(rel, _)| rel.clone()).expect("an object of Nov 5");
    std::fs::create_dir_all(p.raw.join("again")).expect("mkdir");
    std::fs::copy(source.join(&again), p.raw.join("again").join(again.file_name().expect("name"))).expect("copy");
    let report = run(&p, &p.warehouse, "2026-11-12", &[]);
    assert!(report.get("full_rebuild_because").is_none(), "{}", plan_of(&report));
    let copied = report["ingest"]["objects"].as_array().expect("objects").iter().find(|o| o["path"].as_str().is_some_and(|x| x.starts_with("again/"))).cloned();
    let copied = copied.expect("the copied object was read");
    assert!(copied["rows_read"].as_u64() > Some(0) && copied["accepted"] == 0, "{copied}");
    check_step(&p, "after-vacuum", "2026-11-12");
}
