//! Crash safety: a real `tenure run` child process is aborted at each
//! failpoint of a run (`TENURE_FAILPOINT`, as if killed with SIGKILL there),
//! then run again. Every table must stay readable, nothing may be ingested
//! twice or lost, no month may be closed twice, and the tables must equal
//! those of an uninterrupted run.

use crate::common::{output_text, read_table, table_exists, tenure, Project, AS_OF};
use serde_json::Value;
use std::process::Command;

const FAILPOINTS: &[&str] = &[
    "ingest:before_flush",
    "ingest:after_manifest",
    "ingest:after_events_commit",
    "ingest:after_rejects_commit",
    "publish:mrr_monthly",
    "publish:mrr_bridge_monthly",
    "close:ndr_trailing_12m",
    "close:before_restatements",
    "run:before_report",
];

const FIXTURES: &[&str] = &["reasons", "duplicates"];

fn run(p: &Project, failpoint: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenure"));
    cmd.args(["run", "--raw"])
        .arg(&p.raw)
        .arg("--warehouse")
        .arg(&p.warehouse)
        .args(["--as-of", AS_OF, "--timezone", "UTC", "--currency", "USD"])
        .current_dir(crate::common::repo());
    match failpoint {
        Some(f) => cmd.env("TENURE_FAILPOINT", f),
        None => cmd.env_remove("TENURE_FAILPOINT"),
    };
    cmd.output().expect("run tenure")
}

/// Rows of a table without the columns that differ between runs.
fn content(p: &Project, table: &str) -> Vec<Value> {
    let mut rows = read_table(&p.table(table)).rows;
    for r in &mut rows {
        if let Some(o) = r.as_object_mut() {
            o.remove("run_id");
            o.remove("close_run_id");
        }
    }
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn snapshot(p: &Project) -> Vec<(String, Vec<Value>)> {
    [
        "events",
        "rejects",
        "marts/mrr_monthly",
        "marts/mrr_bridge_monthly",
        "marts/customer_health",
        "marts/reported_mrr_bridge_monthly",
        "marts/reported_finance_kpis_monthly",
        "marts/restatements",
    ]
        .iter()
        .map(|t| (t.to_string(), content(p, t)))
        .collect()
}

#[test]
fn a_run_killed_at_any_point_recovers_to_the_same_tables() {
    // The uninterrupted run.
    let clean = Project::new();
    for f in FIXTURES {
        clean.add(f);
    }
    let out = run(&clean, None);
    assert!(out.status.success(), "clean run failed:\n{}", output_text(&out));
    let expected = snapshot(&clean);

    for failpoint in FAILPOINTS {
        let p = Project::new();
        for f in FIXTURES {
            p.add(f);
        }
        let out = run(&p, Some(failpoint));
        assert!(!out.status.success(), "{failpoint}: the failpoint did not stop the run:\n{}", output_text(&out));
        // Whatever exists is readable at its last complete version.
        for t in ["events", "rejects"] {
            if table_exists(&p.table(t)) {
                read_table(&p.table(t));
            }
        }
        // No reader sees a month closed by the run that died.
        if table_exists(&p.table("marts/reported_mrr_bridge_monthly")) {
            let sql = "select count(*) as n from reported_mrr_bridge_monthly";
            let out = tenure(&["query", "--warehouse", &p.warehouse.display().to_string(), "--format", "csv", sql]);
            assert!(out.status.success(), "{failpoint}: query after the crash:\n{}", output_text(&out));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(text.lines().nth(1), Some("0"), "{failpoint}: months closed by a run that died are visible:\n{text}");
        }
        let out = run(&p, None);
        assert!(out.status.success(), "{failpoint}: the run after the crash failed:\n{}", output_text(&out));
        let got = snapshot(&p);
        for ((name, want), (_, have)) in expected.iter().zip(&got) {
            assert_eq!(have.len(), want.len(), "{failpoint}: {name} row count after recovery");
            assert_eq!(have, want, "{failpoint}: {name} differs from an uninterrupted run");
        }
        // A third run finds nothing new.
        let out = run(&p, None);
        assert!(out.status.success(), "{failpoint}: third run failed:\n{}", output_text(&out));
        assert_eq!(snapshot(&p), expected, "{failpoint}: a run with no new input changed the tables");
    }
}
