//! The command line from the outside: `tenure validate` on good and bad
//! configs, `tenure run` refusing bad arguments with an error that names the
//! culprit (and never a panic), and the run report describing the run.

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A failed command: non-zero exit, no panic, and stderr naming every `needle`.
fn assert_fails_naming(out: &std::process::Output, needles: &[&str]) {
    assert!(!out.status.success(), "expected a failure:\n{}", output_text(out));
    let err = stderr(out);
    assert!(!err.contains("panicked at"), "an error must not be a panic:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr should name {n:?}:\n{}", output_text(out));
    }
}

#[test]
fn validate_accepts_the_repository_config() {
    let out = tenure(&["validate"]);
    assert!(out.status.success(), "tenure validate on the repository failed:\n{}", output_text(&out));
}

#[test]
fn validate_accepts_an_explicit_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |_| {});
    let out = tenure(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(out.status.success(), "validate --config {}:\n{}", config.display(), output_text(&out));
}

/// STYLE.md rule 3: a typo in config is an error naming file and key.
#[test]
fn validate_names_the_file_and_key_of_an_unknown_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |t| set(t, &["reporting", "timezon"], toml::Value::String("UTC".into())));
    let out = tenure(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_fails_naming(&out, &["tenure.toml", "timezon"]);
}

#[test]
fn validate_names_the_file_of_a_toml_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |_| {});
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[reporting\ncurrency = \n");
    std::fs::write(&config, text).unwrap();
    let out = tenure(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_fails_naming(&out, &["tenure.toml"]);
}

#[test]
fn validate_rejects_an_unknown_timezone_in_config() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        config_with(dir.path(), |t| set(t, &["reporting", "timezone"], toml::Value::String("Mars/Olympus".into())));
    let out = tenure(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_fails_naming(&out, &["tenure.toml", "timezone", "Mars/Olympus"]);
}

/// Writes `text` to `dir/rel`, creating folders.
fn write(dir: &std::path::Path, rel: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Regression: `tenure validate` stopped at the first stage with a problem,
/// so a bad config value hid a bad cron expression and every SQL error. Now a
/// user fixes them all in one pass: each is printed as `file:line: key:
/// message`, and a model reading a broken one is named once, not planned.
#[test]
fn validate_reports_the_problems_of_every_stage_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = write(
        root,
        "config/tenure.toml",
        &format!(
            "[project]\npipelines_dir = {:?}\nsql_dir = {:?}\n\n[storage]\nraw = \"../raw\"\nwarehouse = \"../warehouse\"\n\n[reporting]\ntimezone = \"Mars/Base\"\n",
            root.join("pipelines").display().to_string(),
            root.join("sql").display().to_string(),
        ),
    );
    let pipeline = write(root, "pipelines/daily.toml", "name = \"daily\"\nschedule = \"0 25 * * *\"\nmodels = [\"*\"]\n");
    write(root, "sql/staging/stg_events.sql", "-- grain: event\nselect * from events\n");
    let mrr = write(
        root,
        "sql/marts/mrr.sql",
        "-- grain: customer\nselect\n    s.customer_id\nfrom stg_events as s\njoin mrr_montly as m using (customer_id)\n",
    );
    let total = write(root, "sql/marts/mrr_total.sql", "-- grain: one row\nselect count(*) as customers\nfrom mrr\n");
    let revenue = write(
        root,
        "sql/marts/revenue.sql",
        "-- grain: customer\nselect\n    customer_id,\n    sum(amount_centz) as revenue\nfrom stg_events\ngroup by customer_id\n",
    );
    let out = tenure(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    let expected = [
        format!("{}:10: reporting.timezone: unknown timezone \"Mars/Base\"", config.display()),
        format!("{}:2: schedule: cron expression \"0 25 * * *\" is invalid", pipeline.display()),
        format!("{}:5: model \"mrr\": reads unknown table \"mrr_montly\"", mrr.display()),
        format!("{}:4: model \"revenue\": ", revenue.display()),
        format!("{}:3: model \"mrr_total\": not planned: it reads model \"mrr\"", total.display()),
    ];
    let needles: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_fails_naming(&out, &needles);
    let err = stderr(&out);
    assert!(err.contains("amount_centz"), "the planner's message names the column:\n{err}");
    let problems: Vec<&str> = err.lines().filter(|l| l.starts_with(&*root.to_string_lossy())).collect();
    assert_eq!(problems.len(), expected.len(), "one line per problem, nothing twice:\n{err}");
    for start in &expected {
        assert_eq!(problems.iter().filter(|l| l.starts_with(start.as_str())).count(), 1, "{start:?} once:\n{err}");
    }
    assert!(problems[0].starts_with(&expected[0]) && problems[1].starts_with(&expected[1]), "config first:\n{err}");
}

#[test]
fn run_fails_on_an_unknown_timezone() {
    let p = Project::from_fixture("currency");
    let (out, _) = p.try_run(&RunOpts::default().timezone("Mars/Olympus"));
    assert_fails_naming(&out, &["Mars/Olympus"]);
}

#[test]
fn run_fails_on_an_invalid_as_of_date() {
    let p = Project::from_fixture("currency");
    let opts = RunOpts { as_of: "2026-02-30".into(), ..RunOpts::default() };
    let (out, _) = p.try_run(&opts);
    assert_fails_naming(&out, &["2026-02-30"]);
}

/// Logs piped to a file are plain text (no colour codes), and at the
/// default level a run logs its stages, not a line per model or table (that
/// detail is at `-v`).
#[test]
fn piped_run_logs_are_plain_text_by_stage() {
    let p = Project::from_fixture("currency");
    let (out, _) = p.try_run(&RunOpts::default());
    assert!(out.status.success(), "run failed:\n{}", output_text(&out));
    let err = stderr(&out);
    assert!(!err.contains('\u{1b}'), "colour codes in piped logs:\n{err}");
    assert!(err.contains("run started"), "no run start in the logs:\n{err}");
    assert!(!err.contains("model built") && !err.contains("table published"), "per-model lines at the default level:\n{err}");
}

#[test]
fn run_fails_on_an_unknown_pipeline() {
    let p = Project::from_fixture("currency");
    let opts = RunOpts { pipeline: Some("no_such_pipeline".into()), ..RunOpts::default() };
    let (out, _) = p.try_run(&opts);
    assert_fails_naming(&out, &["no_such_pipeline"]);
    assert!(!table_exists(&p.table("events")), "a refused run must not publish events");
}

/// The run report echoes the run's parameters and lists the published
/// `events` table with its Delta version and row count.
#[test]
fn run_report_describes_the_run() {
    let p = Project::from_fixture("currency");
    let opts = RunOpts {
        pipeline: Some("daily".into()),
        as_of: "2026-01-31".into(),
        ..RunOpts::default().timezone("Europe/Berlin").currency(Some("EUR"))
    };
    let r = p.run_with(&opts);
    let j = &r.json;
    assert_eq!(j["pipeline"], "daily", "report: {j}");
    assert_eq!(j["status"], "succeeded", "report: {j}");
    assert_eq!(j["as_of"], "2026-01-31", "report: {j}");
    assert_eq!(j["timezone"], "Europe/Berlin", "report: {j}");
    assert_eq!(j["currency"], "EUR", "report: {j}");
    assert!(j["started_at"].is_string(), "report without started_at: {j}");
    let run_id = r.run_id();
    assert_eq!(r.path.file_name().unwrap().to_string_lossy(), format!("{run_id}.json"), "report file name");
    let events = p.events();
    let listed = j["tables"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "events"))
        .unwrap_or_else(|| panic!("report lists no events table: {j}"));
    assert_eq!(listed["version"].as_i64(), Some(events.version), "events version in report vs Delta log");
    assert_eq!(listed["rows"].as_i64(), Some(events.rows.len() as i64), "events rows in report vs table");
    assert_eq!(events.rows.len(), 5);
    for row in &events.rows {
        assert_eq!(row["run_id"], run_id.as_str(), "run_id of {row}");
    }
}

/// A run past its pipeline's `run_timeout_seconds` stops before publishing,
/// says why in its report, and leaves no lease behind: the next run goes.
#[test]
fn a_run_past_its_timeout_publishes_nothing_and_the_next_run_goes() {
    let p = Project::from_fixture("runs/run1");
    let pipelines = p.dir.path().join("pipelines");
    let config = config_with(p.dir.path(), |t| {
        set(t, &["project", "pipelines_dir"], toml::Value::String(pipelines.display().to_string()));
    });
    write(&pipelines, "daily.toml", "name = \"daily\"\nrun_timeout_seconds = 0.001\n");
    let (out, report) = p.try_run(&RunOpts::default().config(&config));
    assert!(!out.status.success(), "{}", output_text(&out));
    let report = report.expect("a failed run writes its report");
    assert_eq!(report.json["status"], "failed");
    let error = report.json["error"].to_string();
    assert!(error.contains("run_timeout_seconds") && error.contains("before it published anything"), "{error}");
    assert!(report.json["tables"].as_array().is_none_or(|t| t.is_empty()), "{}", report.json["tables"]);
    assert!(!table_exists(&p.warehouse.join("marts/mrr_monthly")), "nothing published");

    write(&pipelines, "daily.toml", "name = \"daily\"\n");
    let next = p.run_with(&RunOpts::default().config(&config));
    assert_eq!(next.json["status"], "succeeded");
    assert!(table_exists(&p.warehouse.join("marts/mrr_monthly")));
}
