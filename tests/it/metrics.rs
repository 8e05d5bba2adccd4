//! Golden tests of the metric marts (METRICS.md): each case under
//! `tests/fixtures/metrics/<case>/` has raw events, the run's as-of date and
//! timezone (`case.toml`), and the expected rows of some marts, computed by
//! hand from METRICS.md (`expected/<table>.csv`: header = columns in order,
//! empty cell = NULL). tenure runs on the raw events; each mart is read back
//! with the independent Python reader and compared: money exactly, ratios to
//! 1e-9, NULLs where NULLs are due, column names, order and types.

use crate::common::{copy_tree, output_text, read_table, repo, s, Project, RunOpts};
use serde_json::Value;
use std::path::Path;

fn cases() -> Vec<std::path::PathBuf> {
    let dir = repo().join("tests/fixtures/metrics");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("metrics fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("case.toml").exists())
        .collect();
    cases.sort();
    cases
}

/// The text a cell of a column of arrow type `typ` is compared by, and
/// whether it is a float (compared with a tolerance instead).
fn normalise(value: &str, typ: &str) -> String {
    if typ.starts_with("decimal") {
        // Equal decimals of different scale are equal (§10.10).
        let v = value.trim();
        if v.contains('.') {
            let t = v.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" { "0".into() } else { t.to_string() }
        } else {
            v.to_string()
        }
    } else if typ == "bool" {
        value.to_ascii_lowercase()
    } else {
        value.to_string()
    }
}

fn is_float(typ: &str) -> bool {
    typ == "double" || typ == "float"
}

fn cell(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn floats_equal(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())),
        _ => false,
    }
}

/// A row as sortable text: floats rounded so that 1e-9 differences sort alike.
fn sort_key(row: &[Option<String>], types: &[String]) -> String {
    row.iter()
        .zip(types)
        .map(|(c, t)| match c {
            None => "\u{0}".to_string(),
            Some(v) if is_float(t) => v.parse::<f64>().map(|f| format!("{f:.6}")).unwrap_or_else(|_| v.clone()),
            Some(v) => normalise(v, t),
        })
        .collect::<Vec<_>>()
        .join("\u{1}")
}

fn compare(case: &str, table: &str, warehouse_table: &Path, expected_csv: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let got = read_table(warehouse_table);
    let mut reader = csv::Reader::from_path(expected_csv).expect("expected csv");
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    let columns: Vec<String> = got.schema.iter().map(|(n, _)| n.clone()).collect();
    if columns != header {
        problems.push(format!("{case}/{table}: columns\n  expected {header:?}\n  got      {columns:?}"));
        return problems;
    }
    let types: Vec<String> = got.schema.iter().map(|(_, t)| t.clone()).collect();
    let mut want: Vec<Vec<Option<String>>> = reader
        .records()
        .map(|r| r.expect("csv row").iter().map(|c| (!c.is_empty()).then(|| c.to_string())).collect())
        .collect();
    let mut have: Vec<Vec<Option<String>>> = got
        .rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[c])).collect())
        .collect();
    want.sort_by_key(|r| sort_key(r, &types));
    have.sort_by_key(|r| sort_key(r, &types));
    if want.len() != have.len() {
        problems.push(format!("{case}/{table}: {} rows expected, {} published", want.len(), have.len()));
    }
    for (i, (w, h)) in want.iter().zip(&have).enumerate() {
        for (c, ((wv, hv), typ)) in w.iter().zip(h).zip(&types).enumerate() {
            let same = match (wv, hv) {
                (None, None) => true,
                (Some(a), Some(b)) if is_float(typ) => floats_equal(a, b),
                (Some(a), Some(b)) => normalise(a, typ) == normalise(b, typ),
                _ => false,
            };
            if !same {
                problems.push(format!(
                    "{case}/{table}: row {i} ({}), column {}: expected {:?}, got {:?}",
                    w.iter().take(2).map(|x| x.clone().unwrap_or_default()).collect::<Vec<_>>().join(", "),
                    header[c],
                    wv,
                    hv
                ));
            }
        }
    }
    problems
}

#[test]
fn marts_match_hand_computed_results() {
    let mut problems = Vec::new();
    let mut compared = 0;
    for case_dir in cases() {
        let case = case_dir.file_name().expect("name").to_string_lossy().to_string();
        let spec: toml::Table = std::fs::read_to_string(case_dir.join("case.toml"))
            .expect("case.toml")
            .parse()
            .expect("case.toml is TOML");
        let as_of = spec["as_of"].as_str().expect("as_of").to_string();
        let timezone = spec["timezone"].as_str().expect("timezone").to_string();
        let p = Project::new();
        copy_tree(&case_dir.join("raw"), &p.raw);
        let opts = RunOpts {
            as_of,
            ..RunOpts::default()
        }
        .timezone(&timezone);
        let (out, _) = p.try_run(&opts);
        if !out.status.success() {
            problems.push(format!("{case}: tenure run failed:\n{}", output_text(&out)));
            continue;
        }
        let mut expected: Vec<_> = std::fs::read_dir(case_dir.join("expected"))
            .expect("expected dir")
            .map(|e| e.expect("entry").path())
            .collect();
        expected.sort();
        for csv_path in expected {
            let table = csv_path.file_stem().expect("stem").to_string_lossy().to_string();
            problems.extend(compare(&case, &table, &p.table(&format!("marts/{table}")), &csv_path));
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} expected tables found");
    assert!(problems.is_empty(), "{} difference(s):\n{}", problems.len(), problems.join("\n"));
}

/// The built-in checks hold on the demo data: every check of `sql/checks`
/// runs and passes, and the bridge reconciles in the published table too.
#[test]
fn demo_data_passes_every_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = crate::common::tenure(&["demo", "--dir", &dir.path().display().to_string(), "--customers", "120"]);
    assert!(out.status.success(), "tenure demo failed:\n{}", output_text(&out));
    let runs = dir.path().join("warehouse/_runs");
    let report_path = std::fs::read_dir(&runs).expect("runs").next().expect("a report").expect("entry").path();
    let report: Value = serde_json::from_slice(&std::fs::read(report_path).expect("report")).expect("json");
    let checks = report["checks"].as_array().expect("checks");
    let files = std::fs::read_dir(repo().join("sql/checks")).expect("sql/checks").count();
    assert_eq!(checks.len(), files, "every check ran: {checks:?}");
    assert!(checks.iter().all(|c| c["passed"] == true), "checks: {checks:?}");
    let bridge = read_table(&dir.path().join("warehouse/marts/mrr_bridge_monthly"));
    assert!(bridge.rows.len() > 24, "the demo covers 24 months in several segments");
    let money = |v: &Value| -> i128 {
        let s = v.as_str().expect("decimal as text");
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        let neg = i.starts_with('-');
        let n = i.trim_start_matches('-').parse::<i128>().expect("int") * 10_000 + format!("{f:0<4}").parse::<i128>().expect("frac");
        if neg { -n } else { n }
    };
    for r in &bridge.rows {
        let end = money(&r["start_mrr"]) + money(&r["new_mrr"]) + money(&r["reactivation_mrr"]) + money(&r["expansion_mrr"])
            - money(&r["contraction_mrr"])
            - money(&r["churned_mrr"]);
        assert_eq!(end, money(&r["end_mrr"]), "bridge row does not reconcile: {r}");
    }
    learned_models_have_their_shape(&dir.path().join("warehouse/marts"), report["as_of"].as_str().expect("as_of"));
}

/// The churn and CLV tables of a demo run (METRICS.md §13, §14): a model
/// is fit and ranks better than chance, every customer scored at D has a
/// probability, deciles are NTILE(10)'s sizes, factors are features, the
/// proposed weights are a distribution, and every paying customer has a CLV.
fn learned_models_have_their_shape(marts: &Path, as_of: &str) {
    let f = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    let eval = read_table(&marts.join("churn_model_eval"));
    let row = |model: &str| eval.rows.iter().find(|r| r["model"] == model).unwrap_or_else(|| panic!("{model}: {:?}", eval.rows)).clone();
    let (learned, baseline) = (row("logistic_regression"), row("health_score"));
    assert_eq!(eval.rows.len(), 2);
    assert_eq!(learned["status"], "fitted", "{learned}");
    assert!(f(&learned["train_observations"]) >= 200.0 && f(&learned["test_observations"]) > 0.0, "{learned}");
    assert!(f(&learned["auc"]) > 0.6 && f(&baseline["auc"]) > 0.6, "{learned} {baseline}");
    assert!(f(&learned["brier"]) < 0.25 && f(&learned["log_loss"]) > 0.0, "{learned}");
    assert_eq!(learned["test_churn_rate"], baseline["test_churn_rate"]);

    let health = read_table(&marts.join("customer_health"));
    let mut scored: Vec<String> = health.rows.iter().filter(|r| r["snapshot_date"] == as_of).map(|r| s(&r["customer_id"])).collect();
    scored.sort();
    let predictions = read_table(&marts.join("churn_predictions"));
    let mut predicted: Vec<String> = predictions.rows.iter().map(|r| s(&r["customer_id"])).collect();
    predicted.sort();
    assert_eq!(predicted, scored, "one prediction per customer scored at D");
    let features = [
        "usage_score", "breadth_score", "trend_score", "sentiment_score", "sentiment_missing", "support_score", "billing_score",
        "email_score", "email_missing", "health_score", "score_change", "score_change_missing", "log_mrr", "months_since_cohort",
        "tickets_90d", "failed_payments_90d",
    ];
    let mut per_decile = [0usize; 10];
    for r in &predictions.rows {
        let p = f(&r["churn_probability_90d"]);
        assert!((0.0..=1.0).contains(&p), "{r}");
        per_decile[f(&r["risk_decile"]) as usize - 1] += 1;
        let factors: Vec<String> = s(&r["top_factors"]).split(',').map(str::to_string).collect();
        assert!(factors.len() == 2 && factors[0] != factors[1] && factors.iter().all(|x| features.contains(&x.as_str())), "{r}");
    }
    let n = predictions.rows.len();
    let sizes: Vec<usize> = (0..10).map(|k| n / 10 + usize::from(k < n % 10)).collect();
    assert_eq!(per_decile.to_vec(), sizes, "NTILE(10) of {n} rows");

    let weights = read_table(&marts.join("health_weights_proposed"));
    assert_eq!(weights.rows.len(), 7);
    let proposed: Vec<f64> = weights.rows.iter().map(|r| f(&r["proposed_weight"])).collect();
    assert!(proposed.iter().all(|w| *w >= 0.0) && (proposed.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{proposed:?}");
    assert_eq!(weights.rows[0]["auc_current"], baseline["auc"], "the same test set and score");

    let rfm = read_table(&marts.join("rfm_segments"));
    let clv = read_table(&marts.join("customer_clv"));
    assert_eq!(clv.rows.len(), rfm.rows.len(), "a CLV row per customer with a succeeded payment");
    assert!(clv.rows.iter().all(|r| (0.0..=1.0).contains(&f(&r["p_alive"]))));
    let model = read_table(&marts.join("clv_model"));
    assert_eq!(model.rows.len(), 1);
    assert_eq!(f(&model.rows[0]["customers"]) as usize, clv.rows.len());
}

/// A failing check stops the run before publishing: the error names the
/// check (table and rule) and offending rows, and the tables stay as they were.
#[test]
fn a_failing_check_publishes_nothing() {
    let p = Project::from_fixture("reasons");
    let first = p.run();
    let version_before = read_table(&p.table("marts/mrr_monthly")).version;
    let files_before = mart_files(&p);
    // A project whose SQL has one more check, which every row breaks.
    let sql = p.dir.path().join("sql");
    copy_tree(&repo().join("sql"), &sql);
    std::fs::write(
        sql.join("checks/mrr_monthly__always_fails.sql"),
        "-- check: mrr_monthly, rule \"fails on every row\" (test)\nselect customer_id, month from mrr_monthly",
    )
    .expect("write check");
    let config = crate::common::config_with(p.dir.path(), |t| {
        crate::common::set(t, &["project", "sql_dir"], toml::Value::String(sql.display().to_string()));
    });
    // New input, so that the run has something to publish.
    std::fs::write(
        p.raw.join("later.jsonl"),
        "{\"event_id\":\"late-1\",\"event_type\":\"subscription.started\",\"customer_id\":\"c9\",\"occurred_at\":\"2026-03-01T00:00:00Z\",\"subscription_id\":\"s9\",\"mrr\":10}\n",
    )
    .expect("write raw");
    let (out, report) = p.try_run(&RunOpts::default().config(&config));
    assert!(!out.status.success(), "the run must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mrr_monthly__always_fails") && err.contains("customer_id="), "error names check and rows:\n{err}");
    let report = report.expect("a failed run still writes its report");
    assert_eq!(report.json["status"], "failed");
    assert_eq!(read_table(&p.table("marts/mrr_monthly")).version, version_before, "nothing published");
    // The marts' files written before the check failed were deleted.
    assert_eq!(mart_files(&p), files_before, "files of unpublished versions are left in the marts");
    let _ = first;
}

/// Every data file under `marts/`, by relative path.
fn mart_files(p: &Project) -> Vec<String> {
    let marts = p.warehouse.join("marts");
    let mut files = Vec::new();
    for table in std::fs::read_dir(&marts).expect("marts folder").flatten() {
        for f in std::fs::read_dir(table.path()).expect("mart folder").flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".parquet") {
                files.push(format!("{}/{name}", table.file_name().to_string_lossy()));
            }
        }
    }
    files.sort();
    files
}
