//! `tenure report` on the demo data, read as its users would: the page
//! rendered by headless Chromium (to the DOM and to a screenshot), the CSV
//! exports read back with Python's csv module and the workbook with
//! openpyxl, each compared with the published marts.

use crate::common::{output_text, python, read_table, repo, s, tenure};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Chromium, headless, as root, with nothing reaching the network.
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium (Debian package chromium, installed by .ci/run)")
}

/// `column` of the first row (by month, then segment) of a mart, as a number.
fn first_row_of(table: &Path, column: &str) -> f64 {
    let mut rows = read_table(table).rows;
    rows.sort_by_key(|r| (s(&r["month"]), s(&r["segment"])));
    s(&rows[0][column]).parse().expect("a number")
}

#[test]
fn the_report_of_the_demo_is_a_page_and_exports_that_match_the_marts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tenure(&["demo", "--dir", &dir.path().display().to_string(), "--customers", "120"]);
    assert!(out.status.success(), "tenure demo failed:\n{}", output_text(&out));
    let warehouse = dir.path().join("warehouse");
    let report = dir.path().join("report");
    let out = tenure(&["report", "--warehouse", &warehouse.display().to_string(), "--out", &report.display().to_string()]);
    assert!(out.status.success(), "tenure report failed:\n{}", output_text(&out));
    let marts = warehouse.join("marts");

    // The page: self-contained, nothing to load.
    let page = std::fs::read_to_string(report.join("index.html")).expect("index.html");
    for forbidden in ["<script", "src=\"http", "href=\"http", "url(", "<link", "@import"] {
        assert!(!page.contains(forbidden), "the page loads something ({forbidden})");
    }

    // Rendered by Chromium: the DOM has every section and chart, the
    // headline NDR is the mart's, and the console stays quiet.
    let url = format!("file://{}", report.join("index.html").display());
    let rendered = chromium(&["--dump-dom", &url], &dir.path().join("chromium-dom"));
    assert!(rendered.status.success(), "chromium --dump-dom:\n{}", output_text(&rendered));
    let dom = String::from_utf8_lossy(&rendered.stdout).to_string();
    let log = String::from_utf8_lossy(&rendered.stderr).to_string();
    assert!(!log.contains("CONSOLE"), "console messages:\n{log}");
    for id in ["kpis", "bridge", "retention", "cohorts", "health", "close", "provenance"] {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
    }
    for chart in [
        "MRR bridge, ",
        "MRR movements, last 12 months",
        "NDR and GRR",
        "Logo retention by cohort",
        "Revenue retention by cohort",
        "Customers by health band",
    ] {
        assert!(dom.contains(&format!("<figure aria-label=\"{chart}")), "chart {chart:?} missing");
    }
    assert_eq!(dom.matches("<svg").count(), 6, "one SVG per chart");
    let kpi = read_table(&marts.join("kpi_summary"));
    let ndr = kpi.rows[0]["ndr_12m"].as_f64().expect("ndr_12m");
    let shown = dom
        .split("data-kpi=\"NDR (12 months)\"")
        .nth(1)
        .and_then(|rest| rest.split("<div class=\"value\">").nth(1))
        .and_then(|rest| rest.split('<').next())
        .expect("the NDR headline");
    assert_eq!(shown, format!("{:.1}%", ndr * 100.0), "headline NDR against kpi_summary.ndr_12m = {ndr}");
    let mrr = s(&kpi.rows[0]["mrr"]);
    let (units, cents) = mrr.split_once('.').expect("decimal text");
    let grouped: String = units
        .chars()
        .rev()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
        .chars()
        .rev()
        .collect();
    assert!(dom.contains(&format!("${grouped}.{}", &cents[..2])), "headline MRR {mrr} not on the page");

    let screenshot = dir.path().join("report.png");
    let shot = chromium(
        &["--window-size=1000,5000", &format!("--screenshot={}", screenshot.display()), &url],
        &dir.path().join("chromium-shot"),
    );
    assert!(shot.status.success(), "chromium --screenshot:\n{}", output_text(&shot));
    assert!(std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0) > 100_000, "an empty screenshot");

    // The exports, read back by other readers.
    let read = Command::new(python()).arg(repo().join("tests/py/report_exports.py")).arg(&report).output().expect("python");
    assert!(read.status.success(), "report_exports.py:\n{}", output_text(&read));
    let facts: Value = serde_json::from_slice(&read.stdout).expect("json");
    let published: Vec<String> = std::fs::read_dir(&marts)
        .expect("marts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let csvs = facts["csv"].as_object().expect("csv");
    assert_eq!(csvs.len(), published.len(), "a CSV per mart: {:?}", csvs.keys().collect::<Vec<_>>());
    for name in &published {
        let table = read_table(&marts.join(name));
        let csv = &csvs[name.as_str()];
        let header: Vec<String> = table.schema.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(csv["header"], serde_json::json!(header), "{name}: header");
        assert_eq!(csv["rows"].as_u64(), Some(table.rows.len() as u64), "{name}: rows");
    }
    let kpi_csv = &csvs["kpi_summary"];
    let column = |n: &str| kpi_csv["header"].as_array().expect("header").iter().position(|h| h == n).expect("column");
    assert_eq!(kpi_csv["first"][column("mrr")], kpi.rows[0]["mrr"], "decimals as their exact text");
    assert_eq!(kpi_csv["first"][column("as_of")], kpi.rows[0]["as_of"], "dates ISO");

    let sheets = facts["xlsx"].as_object().expect("xlsx");
    for name in ["mrr_bridge_monthly", "ndr_trailing_12m", "retention_kpis_monthly", "finance_kpis_monthly", "reported_mrr_bridge_monthly"] {
        let sheet = &sheets[name];
        assert_eq!(sheet["freeze"], "A2", "{name}: header row frozen");
        assert_eq!(sheet["rows"].as_u64(), Some(read_table(&marts.join(name)).rows.len() as u64), "{name}: rows");
    }
    let bridge = &sheets["mrr_bridge_monthly"]["columns"];
    assert_eq!(bridge["month"]["type"], "datetime", "{bridge}");
    for money in ["start_mrr", "end_mrr", "churned_mrr"] {
        // A number (openpyxl reads a whole one as int) in the currency's format.
        assert!(["float", "int"].contains(&bridge[money]["type"].as_str().unwrap_or_default()), "{money}: {bridge}");
        assert!(bridge[money]["format"].as_str().is_some_and(|f| f.contains('$')), "{money}: money format: {bridge}");
    }
    let end = first_row_of(&marts.join("mrr_bridge_monthly"), "end_mrr");
    assert!((bridge["end_mrr"]["value"].as_f64().expect("a number") - end).abs() < 1e-6, "end_mrr {end}: {bridge}");
    assert_eq!(bridge["start_customers"]["type"], "int", "{bridge}");
    assert_eq!(bridge["is_complete"]["type"], "bool", "{bridge}");
    assert_eq!(bridge["segment"]["type"], "str", "{bridge}");
    let first_bridge = read_table(&marts.join("mrr_bridge_monthly"));
    let months: Vec<String> = first_bridge.rows.iter().map(|r| s(&r["month"])).collect();
    assert!(months.contains(&bridge["month"]["value"].as_str().expect("a date")[..10].to_string()), "{bridge}");
}

/// A pipeline with `report = true`: the scheduler's runner writes the report
/// of each publishing run to `<warehouse>/reports/<run_id>/` and `latest/`.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_runs_of_a_reporting_pipeline_write_the_report_to_the_warehouse() {
    use tenure::scheduler::Runner;
    let dir = tempfile::tempdir().expect("tempdir");
    crate::common::copy_tree(&repo().join("tests/fixtures/metrics/lifecycle_new_york/raw"), &dir.path().join("raw"));
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    std::fs::write(pipelines.join("daily.toml"), "name = \"daily\"\nschedule = \"0 6 * * *\"\nreport = true\n").expect("pipeline");
    let config = dir.path().join("tenure.toml");
    let sql = repo().join("sql");
    std::fs::write(
        &config,
        format!(
            "[project]\npipelines_dir = \"pipelines\"\nsql_dir = \"{}\"\n[storage]\nraw = \"raw\"\nwarehouse = \"warehouse\"\n[reporting]\ntimezone = \"America/New_York\"\n",
            sql.display()
        ),
    )
    .expect("config");
    let project = tenure::config::load(&config, &Default::default()).expect("project");
    let runner = tenure::scheduler::PipelineRunner {
        project: &project,
        clock: std::sync::Arc::new(tenure::clock::SystemClock),
    };
    let attempt = runner.run("daily", chrono::NaiveDate::from_ymd_opt(2024, 6, 30).expect("date")).await;
    assert!(attempt.error.is_none(), "{:?}", attempt.error);
    let run_id = attempt.run_id.expect("a run");
    let reports = dir.path().join("warehouse/reports");
    let page = std::fs::read(reports.join(&run_id).join("index.html")).expect("the run's report");
    assert_eq!(std::fs::read(reports.join("latest/index.html")).expect("latest"), page, "latest is the run's report");
    assert!(reports.join(&run_id).join("finance.xlsx").is_file());
    assert!(reports.join(&run_id).join("csv/mrr_bridge_monthly.csv").is_file());
    assert!(String::from_utf8_lossy(&page).contains(&run_id));
}
