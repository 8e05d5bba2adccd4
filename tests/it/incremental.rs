//! Incremental runs: a run that keeps the published rows of unchanged months
//! must publish exactly the tables a full rebuild publishes from the same
//! `events`. The demo data arrives in steps (history, then later days, then a
//! late object reaching back five months, then nothing new); after each
//! step's run the warehouse is copied and rebuilt with `--full-refresh`, and
//! every mart of the two is compared row by row.

use crate::common::{copy_tree, output_text, read_table, tenure, Project};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub(crate) const MARTS: &[&str] = &[
    "at_risk_customers",
    "churn_model_eval",
    "churn_predictions",
    "clv_model",
    "cohort_retention",
    "customer_clv",
    "customer_health",
    "finance_kpis_monthly",
    "health_backtest",
    "health_weights_proposed",
    "kpi_summary",
    "mrr_bridge_monthly",
    "mrr_monthly",
    "ndr_trailing_12m",
    "retention_kpis_monthly",
    "rfm_segments",
];

/// The demo's raw objects, relative paths, with the date of their folder
/// (`events/YYYY/MM/DD/...`); objects outside dated folders have none.
pub(crate) fn demo_objects(raw: &Path) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![raw.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read raw") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(raw).expect("relative").to_path_buf();
            let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let date = (parts.len() == 5 && parts[0] == "events").then(|| format!("{}-{}-{}", parts[1], parts[2], parts[3]));
            out.push((rel, date));
        }
    }
    out.sort();
    out
}

/// Copy one object into the raw prefix, unless it is there already (a copy
/// would be a changed object).
pub(crate) fn place(from: &Path, to: &Path, rel: &Path) {
    let dst = to.join(rel);
    if dst.exists() {
        return;
    }
    std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    std::fs::copy(from.join(rel), &dst).expect("copy object");
}

pub(crate) fn run(p: &Project, warehouse: &Path, as_of: &str, extra: &[&str]) -> Value {
    let mut args: Vec<String> = vec!["run".into(), "--raw".into(), p.raw.display().to_string(), "--warehouse".into()];
    args.extend([warehouse.display().to_string(), "--as-of".into(), as_of.into(), "--timezone".into(), "America/New_York".into()]);
    args.extend(["--currency".into(), "USD".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tenure(&args);
    assert!(out.status.success(), "tenure run as of {as_of} failed:\n{}", output_text(&out));
    latest_report(warehouse)
}

/// The fields of a run report that say what the run recomputed.
pub(crate) fn plan_of(report: &Value) -> String {
    format!(
        "run {} as of {}: rebuild_from {} (by day {}), kept rows of {}, full rebuild because {}; ingest {}",
        report["run_id"], report["as_of"], report["rebuild_from"], report["rebuild_from_day"], report["kept_rows_of"], report["full_rebuild_because"], report["ingest"]["totals"]
    )
}

pub(crate) fn latest_report(warehouse: &Path) -> Value {
    reports(warehouse).pop().expect("a report")
}

/// The run reports of a warehouse, oldest first.
pub(crate) fn reports(warehouse: &Path) -> Vec<Value> {
    let mut reports: Vec<Value> = std::fs::read_dir(warehouse.join("_runs"))
        .expect("runs")
        .map(|e| serde_json::from_slice(&std::fs::read(e.expect("entry").path()).expect("read report")).expect("json"))
        .collect();
    reports.sort_by_key(|r| (r["started_at"].as_str().unwrap_or("").to_string(), r["run_id"].as_str().unwrap_or("").to_string()));
    reports
}

/// Numbers equal to 1e-9 relative (ratios summed in another order may differ
/// in the last bits), everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

pub(crate) fn sorted_rows(warehouse: &Path, mart: &str) -> Vec<Value> {
    let mut rows = read_table(&warehouse.join("marts").join(mart)).rows;
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn assert_same_marts(step: &str, incremental: &Path, full: &Path) {
    for mart in MARTS {
        let (have, want) = (sorted_rows(incremental, mart), sorted_rows(full, mart));
        assert_eq!(have.len(), want.len(), "{step}: {mart}: rows of the incremental run vs a full rebuild");
        for (h, w) in have.iter().zip(&want) {
            assert!(same(h, w), "{step}: {mart}: the incremental run has\n  {h}\nwhere a full rebuild has\n  {w}");
        }
    }
}

/// The files under `dir` of `root`, relative to `root`.
fn files_under(root: &Path, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

/// A file of a mart's latest version, from its Delta log.
struct LiveFile {
    path: String,
    /// The least and greatest value of the mart's date column, from the file's statistics.
    min: String,
    max: String,
    /// Whether the latest commit added it.
    added: bool,
}

fn live_files(warehouse: &Path, mart: &str, key: &str) -> Vec<LiveFile> {
    let log = warehouse.join("marts").join(mart).join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("read the Delta log")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let mut live: Vec<LiveFile> = Vec::new();
    for (i, commit) in commits.iter().enumerate() {
        let text = std::fs::read_to_string(commit).expect("read a commit");
        for action in text.lines().map(|l| serde_json::from_str::<Value>(l).expect("an action")) {
            if let Some(path) = action["remove"]["path"].as_str() {
                live.retain(|f| f.path != path);
            }
            if let Some(path) = action["add"]["path"].as_str() {
                let stats: Value = serde_json::from_str(action["add"]["stats"].as_str().unwrap_or("{}")).expect("stats");
                let value = |which: &str| stats[which][key].as_str().unwrap_or("").to_string();
                live.push(LiveFile {
                    path: path.to_string(),
                    min: value("minValues"),
                    max: value("maxValues"),
                    added: i + 1 == commits.len(),
                });
            }
        }
    }
    live
}

/// An incremental run keeps the files of a mart's rows dated before
/// `rebuild_from` and writes only the rows from it on.
fn assert_keeps_files_before(p: &Project, step: &str, rebuild_from: &str) {
    for (mart, key) in [("customer_health", "snapshot_date"), ("mrr_monthly", "month")] {
        let files = live_files(&p.warehouse, mart, key);
        let (added, kept): (Vec<&LiveFile>, Vec<&LiveFile>) = files.iter().partition(|f| f.added);
        assert!(!kept.is_empty() && !added.is_empty(), "{step}: {mart}: files kept and files added");
        for f in kept {
            assert!(!f.max.is_empty() && f.max.as_str() < rebuild_from, "{step}: {mart}: kept {} has rows through {}", f.path, f.max);
        }
        for f in added {
            assert!(f.min.as_str() >= rebuild_from, "{step}: {mart}: added {} has rows from {}", f.path, f.min);
        }
    }
}

/// Check the step's incremental warehouse against a full rebuild of a copy.
pub(crate) fn check_step(p: &Project, step: &str, as_of: &str) {
    let copy = p.dir.path().join(format!("full-{step}"));
    copy_tree(&p.warehouse, &copy);
    let report = run(p, &copy, as_of, &["--full-refresh"]);
    assert_eq!(report["full_rebuild_because"], "--full-refresh", "{step}: the copy is rebuilt whole");
    assert_same_marts(step, &p.warehouse, &copy);
}

#[test]
fn incremental_runs_publish_what_a_full_rebuild_publishes() {
    let demo = tempfile::tempdir().expect("tempdir");
    let out = tenure(&["demo", "--dir", &demo.path().display().to_string(), "--customers", "40"]);
    assert!(out.status.success(), "tenure demo failed:\n{}", output_text(&out));
    let source = demo.path().join("raw");
    let objects = demo_objects(&source);
    // One object of a June day is held back and arrives late, in step 3.
    let late = objects
        .iter()
        .find(|(rel, d)| d.as_deref().is_some_and(|d| d.starts_with("2026-06-1")) && rel.extension().is_some_and(|x| x == "jsonl"))
        .map(|(rel, _)| rel.clone())
        .expect("a June JSON Lines object");
    let p = Project::new();
    let add_through = |last: &str| {
        for (rel, date) in &objects {
            if *rel != late && date.as_deref().is_none_or(|d| d <= last) {
                place(&source, &p.raw, rel);
            }
        }
    };

    // 1. History through 2026-09-20: nothing to keep yet.
    add_through("2026-09-20");
    let report = run(&p, &p.warehouse, "2026-09-20", &[]);
    assert_eq!(report["full_rebuild_because"], "no earlier run of this pipeline published tables");
    assert!(report.get("rebuild_from").is_none(), "{}", plan_of(&report));

    // 2. Through 2026-10-31: September was not final yet, so it is recomputed.
    add_through("2026-10-31");
    let report = run(&p, &p.warehouse, "2026-10-31", &[]);
    assert_eq!(report["rebuild_from"], "2026-09-01", "{}", plan_of(&report));
    // The models incremental by day recompute from the day after the base's,
    // or the day of an earlier event among the new objects (some arrive a
    // day late).
    let by_day = report["rebuild_from_day"].as_str().unwrap_or("-");
    assert!(("2026-09-01"..="2026-09-21").contains(&by_day), "{}", plan_of(&report));
    assert_keeps_files_before(&p, "2-later-days", "2026-09-01");
    check_step(&p, "2-later-days", "2026-10-31");

    // 3. Through 2026-11-15 plus the late June object: June on is recomputed.
    add_through("2026-11-15");
    place(&source, &p.raw, &late);
    let report = run(&p, &p.warehouse, "2026-11-15", &[]);
    assert_eq!(report["rebuild_from"], "2026-06-01", "{}", plan_of(&report));
    assert!(report["rebuild_from_day"].as_str().is_some_and(|d| d.starts_with("2026-06-")), "{}", plan_of(&report));
    check_step(&p, "3-late-object", "2026-11-15");

    // 4. Nothing new, one day later: only November is recomputed.
    let report = run(&p, &p.warehouse, "2026-11-16", &[]);
    assert_eq!(report["rebuild_from"], "2026-11-01", "{}", plan_of(&report));
    assert_eq!(report["rebuild_from_day"], "2026-11-16", "{}", plan_of(&report));
    assert_keeps_files_before(&p, "4-next-day", "2026-11-01");
    check_step(&p, "4-next-day", "2026-11-16");

    // 5. The run with the same inputs publishes nothing; --full-refresh does.
    let before = latest_report(&p.warehouse);
    let report = run(&p, &p.warehouse, "2026-11-16", &[]);
    assert!(report["tables"].as_array().is_some_and(|t| t.is_empty()), "unchanged inputs publish nothing: {}", report["tables"]);
    assert_ne!(report["run_id"], before["run_id"]);
    let report = run(&p, &p.warehouse, "2026-11-16", &["--full-refresh"]);
    // Every mart, and the month close's tables: four reported, restatements.
    assert_eq!(report["tables"].as_array().map(|t| t.len()), Some(MARTS.len() + 5), "--full-refresh publishes every mart: {}", report["tables"]);
    // Only the latest publishing run's state is kept, and it is what its
    // report lists: one file per month of each incremental model, most of
    // them written by earlier runs and listed as they were.
    let state = report["state"].as_array().cloned().unwrap_or_default();
    let mut listed: Vec<String> = state
        .iter()
        .flat_map(|s| s["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["path"].as_str().map(String::from))
        .collect();
    listed.sort_unstable();
    let mut on_disk = files_under(&p.warehouse, "_state");
    on_disk.sort_unstable();
    assert_eq!(on_disk, listed, "state of older runs is deleted");
    let mut names: Vec<&str> = state.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cohort_retention",
            "customer_health",
            "int_customer_days",
            "int_customer_months",
            "int_customer_states",
            "int_health_outcomes",
            "int_health_scores",
            "int_usage_days",
            "int_usage_features",
            "mrr_bridge_monthly",
            "mrr_monthly",
            "ndr_trailing_12m",
            "retention_kpis_monthly",
            "stg_account_events",
            "stg_billing_events",
            "stg_survey_payment_events",
        ],
        "{}",
        report["state"]
    );
    for s in &state {
        let parts = s["parts"].as_array().cloned().unwrap_or_default();
        let rows: u64 = parts.iter().filter_map(|p| p["rows"].as_u64()).sum();
        assert!(rows > 0 && s["rows"].as_u64() == Some(rows), "{s}");
        let months: Vec<&str> = parts.iter().filter_map(|p| p["month"].as_str()).collect();
        assert!(months.windows(2).all(|w| w[0] < w[1]) && months.iter().all(|m| m.ends_with("-01")), "one file per month: {s}");
    }
    // An incremental run writes only the months it recomputes, and lists the
    // earlier months' files of its base.
    let next = run(&p, &p.warehouse, "2026-11-17", &[]);
    assert_eq!(next["rebuild_from"], "2026-11-01", "{}", plan_of(&next));
    let id = next["run_id"].as_str().unwrap_or("-").to_string();
    let parts: Vec<Value> = next["state"].as_array().cloned().unwrap_or_default().iter().flat_map(|s| s["parts"].as_array().cloned().unwrap_or_default()).collect();
    let written = parts.iter().filter(|p| p["path"].as_str().is_some_and(|x| x.contains(&id))).count();
    let models_with_state = next["state"].as_array().map_or(0, Vec::len);
    assert!((1..=models_with_state).contains(&written), "at most one month of each model: {written} files of {models_with_state} models");
    for part in &parts {
        let recomputed = part["month"].as_str().is_some_and(|m| m >= "2026-11-01");
        assert_eq!(part["path"].as_str().is_some_and(|x| x.contains(&id)), recomputed, "{part}");
    }
    check_step(&p, "5-next-day-again", "2026-11-17");

    // 6. Kept rows that went missing mean a full rebuild, not a failure.
    let state = next["state"].as_array().cloned().unwrap_or_default();
    let lost = state
        .iter()
        .find(|s| s["name"] == "int_customer_states")
        .and_then(|s| s["parts"][0]["path"].as_str())
        .unwrap_or("-");
    std::fs::remove_file(p.warehouse.join(lost)).expect("remove state");
    let report = run(&p, &p.warehouse, "2026-11-18", &[]);
    let because = report["full_rebuild_because"].as_str().unwrap_or("");
    assert!(because.contains("kept of model int_customer_states are unreadable"), "{}", plan_of(&report));
    check_step(&p, "6-state-lost", "2026-11-18");

    // Every object was ingested once, none seen as changed.
    let changed: i64 = reports(&p.warehouse).iter().map(|r| r["ingest"]["totals"]["objects_changed"].as_i64().unwrap_or(0)).sum();
    assert_eq!(changed, 0, "objects are added, never rewritten");
}
