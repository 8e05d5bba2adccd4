//! Month close (METRICS.md §12): due months close once, reported rows never
//! change (not by late events, changed parameters, a full refresh or two
//! runs racing), every difference is published in `restatements` and
//! counted in the run report, and `tenure close` closes and restates by hand.

use crate::common::{copy_tree, output_text, read_table, repo, tenure, Project, Report};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TZ: &str = "America/New_York";

/// A project on the hand-computed `lifecycle_new_york` events (Jan–Jun 2024).
fn project() -> Project {
    let p = Project::new();
    copy_tree(&repo().join("tests/fixtures/metrics/lifecycle_new_york/raw"), &p.raw);
    p
}

/// `tenure run` as of `as_of` with `extra` arguments; must succeed.
fn run(p: &Project, as_of: &str, extra: &[&str]) -> (String, Report) {
    let mut args: Vec<String> = ["run", "--raw"].map(String::from).to_vec();
    args.push(p.raw.display().to_string());
    args.extend(["--warehouse".into(), p.warehouse.display().to_string()]);
    args.extend(["--as-of", as_of, "--timezone", TZ, "--currency", "USD"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tenure(&args);
    assert!(out.status.success(), "tenure run as of {as_of} failed:\n{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report   file://"))
        .unwrap_or_else(|| panic!("no report line:\n{stdout}"));
    (stdout.clone(), Report::load(Path::new(path)))
}

fn close(p: &Project, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = vec!["close".into(), "--warehouse".into(), p.warehouse.display().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    tenure(&all)
}

/// Every data file of the reported tables, with its bytes.
fn reported_files(p: &Project) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for t in ["mrr_bridge_monthly", "ndr_trailing_12m", "retention_kpis_monthly", "finance_kpis_monthly"] {
        let dir = p.table(&format!("marts/reported_{t}"));
        for entry in std::fs::read_dir(&dir).expect("reported table") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "parquet") {
                files.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

fn rows(p: &Project, table: &str) -> Vec<Value> {
    read_table(&p.table(&format!("marts/{table}"))).rows
}

/// The mart's rows of `month` with the close columns they were reported with.
fn without_close_columns(rows: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            for c in ["close_version", "closed_on", "close_run_id"] {
                r.as_object_mut().expect("row").remove(c);
            }
            r
        })
        .collect();
    out.sort_by_key(|r| r.to_string());
    out
}

fn restated(report: &Report) -> Vec<Value> {
    report.json["restated"].as_array().cloned().unwrap_or_default()
}

#[test]
fn months_close_once_and_later_changes_are_restatements_not_rewrites() {
    let p = project();

    // As of June 10, January to May are due (May 31 + 3 days ≤ June 10).
    let (_, first) = run(&p, "2024-06-10", &[]);
    let closed: Vec<&str> = first.json["closes"].as_array().expect("closes").iter().map(|c| c["month"].as_str().unwrap()).collect();
    assert_eq!(closed, ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]);
    let bridge = rows(&p, "mrr_bridge_monthly");
    let reported = rows(&p, "reported_mrr_bridge_monthly");
    let due: Vec<Value> = bridge.iter().filter(|r| r["month"].as_str() < Some("2024-06-01")).cloned().collect();
    assert_eq!(without_close_columns(&reported), without_close_columns(&due), "reported = the run's rows of the closed months");
    for r in &reported {
        assert_eq!((r["close_version"].as_i64(), r["closed_on"].as_str()), (Some(1), Some("2024-06-10")), "{r}");
        assert_eq!(r["close_run_id"].as_str(), Some(first.run_id().as_str()));
    }
    assert_eq!(rows(&p, "reported_retention_kpis_monthly").len(), 5);
    assert!(rows(&p, "restatements").is_empty(), "nothing restated yet");
    let files = reported_files(&p);

    // A day later nothing new is due and nothing is restated.
    let (_, second) = run(&p, "2024-06-11", &[]);
    assert!(second.json.get("closes").is_none(), "{}", second.json);
    assert!(restated(&second).is_empty());
    assert_eq!(reported_files(&p), files);

    // A late subscription in April restates April and May, never rewrites them.
    let late = r#"{"event_id": "late1", "event_type": "subscription.started", "customer_id": "zeta", "occurred_at": "2024-04-20T12:00:00Z", "subscription_id": "s-zeta", "mrr": "19.99", "plan": "basic", "currency": "USD"}"#;
    std::fs::write(p.raw.join("late.jsonl"), format!("{late}\n")).expect("late object");
    let (stdout, third) = run(&p, "2024-06-12", &[]);
    assert_eq!(reported_files(&p), files, "a late event rewrote reported rows");
    let months: Vec<(String, bool, i64)> = restated(&third)
        .iter()
        .map(|r| (r["month"].as_str().unwrap().to_string(), r["new"].as_bool().unwrap(), r["late_events"].as_i64().unwrap()))
        .collect();
    assert_eq!(months, [("2024-04".to_string(), true, 1), ("2024-05".to_string(), true, 1)]);
    assert!(stdout.contains("warning  closed month restated: 2024-04"), "{stdout}");
    let restatements = rows(&p, "restatements");
    let cells = |month: &str| restatements.iter().filter(|r| r["month"].as_str() == Some(month)).count() as i64;
    for r in restated(&third) {
        assert_eq!(r["cells"].as_i64(), Some(cells(&format!("{}-01", r["month"].as_str().unwrap()))));
    }
    let find = |month: &str, table: &str, segment: Option<&str>, column: &str| -> Value {
        restatements
            .iter()
            .find(|r| r["month"].as_str() == Some(month) && r["table_name"] == table && r["segment"].as_str() == segment && r["column_name"] == column)
            .cloned()
            .unwrap_or_else(|| panic!("no restatement of {month} {table} {segment:?} {column}:\n{restatements:#?}"))
    };
    let end = find("2024-04-01", "mrr_bridge_monthly", Some("all"), "end_mrr");
    assert_eq!((end["reported"].as_str(), end["current"].as_str()), (Some("50.5000"), Some("70.4900")));
    assert_eq!((end["closed_on"].as_str(), end["close_version"].as_i64()), (Some("2024-06-10"), Some(1)));
    let quick = find("2024-04-01", "finance_kpis_monthly", Some("all"), "quick_ratio");
    let q: f64 = quick["current"].as_str().expect("a ratio").parse().expect("a float");
    assert!((q - 19.99 / 120.0).abs() < 1e-12, "{quick}");
    assert_eq!(quick["reported"].as_str(), Some("0"));
    // A row new since the close: every column, NULL on the reported side.
    let new_row = find("2024-04-01", "mrr_bridge_monthly", Some("unknown"), "new_mrr");
    assert_eq!((new_row["reported"].as_str(), new_row["current"].as_str()), (None, Some("19.9900")));
    let logo = find("2024-04-01", "retention_kpis_monthly", None, "customers_end");
    assert_eq!((logo["reported"].as_str(), logo["current"].as_str()), (Some("2"), Some("3")));
    assert!(restatements.iter().all(|r| r["month"].as_str() >= Some("2024-04-01")), "March did not change");
    assert!(restatements.iter().all(|r| r["column_name"] != "is_complete" && r["column_name"] != "segment"));

    // Changed parameters and a full refresh: still the same reported files;
    // the report names the changed fingerprint, and the restatements stay.
    let config = p.dir.path().join("weights.toml");
    std::fs::write(
        &config,
        format!(
            "[project]\npipelines_dir = \"{0}/pipelines\"\nsql_dir = \"{0}/sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"warehouse\"\n\n[metrics.health.weights]\nusage = 0.9\n",
            repo().display()
        ),
    )
    .expect("config");
    let (_, fourth) = run(&p, "2024-06-12", &["--full-refresh", "--config", &config.display().to_string()]);
    assert_eq!(reported_files(&p), files, "a full refresh with other weights rewrote reported rows");
    let out = tenure(&["vacuum", "--warehouse", &p.warehouse.display().to_string(), "--retain-hours", "1"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(reported_files(&p), files, "vacuum deleted or rewrote reported rows");
    let may = restated(&fourth).into_iter().find(|r| r["month"] == "2024-05").expect("May is still restated");
    assert_eq!(may["new"].as_bool(), Some(false), "{may}");
    assert!(may["changed"].as_array().is_some_and(|c| c.iter().any(|c| c.as_str().unwrap().contains("fingerprint"))), "{may}");

    // By hand: closing a closed month is refused; restating it appends version 2.
    let out = close(&p, &["--month", "2024-04"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("--restate --reason"), "{}", output_text(&out));
    let out = close(&p, &["--month", "2024-04", "--restate", "--reason", "zeta's contract booked late"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let again = reported_files(&p);
    assert!(files.iter().all(|(path, bytes)| again.get(path) == Some(bytes)), "restating rewrote earlier rows");
    let v2: Vec<Value> = rows(&p, "reported_mrr_bridge_monthly").into_iter().filter(|r| r["close_version"] == 2).collect();
    let april: Vec<Value> = rows(&p, "mrr_bridge_monthly").into_iter().filter(|r| r["month"] == "2024-04-01").collect();
    assert_eq!(without_close_columns(&v2), without_close_columns(&april));
    let left = rows(&p, "restatements");
    assert!(left.iter().all(|r| r["month"] == "2024-05-01") && !left.is_empty(), "{left:#?}");
    let report_line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report_line.contains("closed   2024-04 (close version 2"), "{report_line}");
    // A month not complete yet cannot be closed.
    let out = close(&p, &["--month", "2024-06"]);
    assert!(!out.status.success() && output_text(&out).contains("not complete"), "{}", output_text(&out));

    // The close's tables are published tables like the others.
    let sql = "select count(*) as n from reported_mrr_bridge_monthly where close_version = 2";
    let out = tenure(&["query", "--warehouse", &p.warehouse.display().to_string(), "--format", "csv", sql]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().nth(1), Some(april.len().to_string().as_str()));
}

/// Two pipelines running at once on one warehouse close each month once.
#[test]
fn racing_runs_close_a_month_once() {
    let p = project();
    let pipelines = p.dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("pipelines dir");
    for name in ["first", "second"] {
        std::fs::write(pipelines.join(format!("{name}.toml")), format!("name = \"{name}\"\nschedule = \"0 6 * * *\"\nmodels = [\"*\"]\n"))
            .expect("pipeline");
    }
    let config = p.dir.path().join("tenure.toml");
    std::fs::write(
        &config,
        format!(
            "[project]\npipelines_dir = \"pipelines\"\nsql_dir = \"{}/sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"warehouse\"\n\n[reporting]\ntimezone = \"{TZ}\"\n",
            repo().display()
        ),
    )
    .expect("config");
    let spawn = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args(["run", name, "--config", &config.display().to_string(), "--as-of", "2024-06-10"])
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tenure")
    };
    let (a, b) = (spawn("first"), spawn("second"));
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let reported = rows(&p, "reported_mrr_bridge_monthly");
    let mut keys: Vec<(String, String)> =
        reported.iter().map(|r| (r["month"].as_str().unwrap().to_string(), r["segment"].as_str().unwrap().to_string())).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a month was closed twice:\n{reported:#?}");
    assert_eq!(keys.len(), 15);
    assert!(reported.iter().all(|r| r["close_version"] == 1));
    let runs: std::collections::BTreeSet<&str> = reported.iter().map(|r| r["close_run_id"].as_str().unwrap()).collect();
    assert_eq!(runs.len(), 1, "the months were closed by one run: {runs:?}");
}
