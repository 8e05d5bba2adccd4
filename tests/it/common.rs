//! Helpers shared by the integration tests: a throwaway project (raw prefix and
//! warehouse in a temp dir) built from a fixture folder, running the `tenure`
//! binary, finding the run report a run wrote, reading published Delta tables
//! with the independent Python reader (`tests/py/read_delta.py`), and
//! assertions that print expected and actual side by side.
//!
//! Nothing here computes an expected value: every expectation is written by
//! hand in the test that uses it. The helpers only compare.

#![allow(dead_code)] // each test file uses a different subset

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The as-of date of every run unless a test says otherwise (METRICS.md §10.14:
/// tests always pass it). Later than every fixture event.
pub const AS_OF: &str = "2026-03-31";

/// Columns of `events`, EVENTS.md rule 15, with the Arrow types the reader may
/// report for them (a string column may come back as any Arrow string type).
pub const EVENT_COLUMNS: &[(&str, &str)] = &[
    ("event_id", "string"),
    ("event_type", "string"),
    ("customer_id", "string"),
    ("occurred_at", "timestamp[us, tz=UTC]"),
    ("event_date", "date32[day]"),
    ("subscription_id", "string"),
    ("plan", "string"),
    ("mrr", "decimal128(38, 4)"),
    ("currency", "string"),
    ("seats", "int64"),
    ("amount", "decimal128(38, 4)"),
    ("payment_id", "string"),
    ("feature", "string"),
    ("user_id", "string"),
    ("quantity", "double"),
    ("ticket_id", "string"),
    ("priority", "string"),
    ("score", "int64"),
    ("campaign_id", "string"),
    ("name", "string"),
    ("segment", "string"),
    ("country", "string"),
    ("industry", "string"),
    ("owner", "string"),
    ("reason", "string"),
    ("comment", "string"),
    ("source_object", "string"),
    ("source_row", "int64"),
    ("run_id", "string"),
];

/// Columns of `rejects` (EVENTS.md rule 15).
pub const REJECT_COLUMNS: &[(&str, &str)] = &[
    ("source_object", "string"),
    ("source_row", "int64"),
    ("raw", "string"),
    ("reason", "string"),
    ("run_id", "string"),
];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/ingest").join(name)
}

/// Recursively copies `src` into `dst` (created if missing), dot-files included.
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("create {}: {e}", dst.display()));
    let entries = std::fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", entry.path().display(), to.display()));
        }
    }
}

/// `file://` URL of a local path.
pub fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Options of one `tenure run`.
#[derive(Clone, Debug)]
pub struct RunOpts {
    pub pipeline: Option<String>,
    pub as_of: String,
    pub timezone: String,
    pub currency: Option<String>,
    pub config: Option<PathBuf>,
    /// Pass the raw prefix and the warehouse as `file://` URLs instead of paths.
    pub urls: bool,
    /// Append a `/` to the raw prefix argument.
    pub raw_trailing_slash: bool,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            pipeline: None,
            as_of: AS_OF.to_string(),
            timezone: "UTC".to_string(),
            currency: Some("USD".to_string()),
            config: None,
            urls: false,
            raw_trailing_slash: false,
        }
    }
}

impl RunOpts {
    pub fn timezone(mut self, tz: &str) -> Self {
        self.timezone = tz.to_string();
        self
    }
    pub fn currency(mut self, code: Option<&str>) -> Self {
        self.currency = code.map(str::to_string);
        self
    }
    pub fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_path_buf());
        self
    }
    pub fn urls(mut self) -> Self {
        self.urls = true;
        self
    }
}

/// A throwaway project: `<tmp>/raw` (the raw prefix) and `<tmp>/warehouse`.
/// The temp dir's own name starts with `.tmp` (or the given prefix), so every
/// test also checks that only segments *below* the raw prefix are ignored.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub raw: PathBuf,
    pub warehouse: PathBuf,
}

impl Project {
    pub fn new() -> Project {
        Project::with_prefix(".tmp")
    }

    pub fn with_prefix(prefix: &str) -> Project {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir");
        let raw = dir.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let warehouse = dir.path().join("warehouse");
        Project { dir, raw, warehouse }
    }

    /// A project whose raw prefix holds a copy of `tests/fixtures/ingest/<name>`.
    pub fn from_fixture(name: &str) -> Project {
        let p = Project::new();
        p.add(name);
        p
    }

    /// Copies `tests/fixtures/ingest/<name>` into the raw prefix (overwriting).
    pub fn add(&self, name: &str) {
        copy_tree(&fixture(name), &self.raw);
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.warehouse.join("_runs")
    }

    pub fn table(&self, name: &str) -> PathBuf {
        self.warehouse.join(name)
    }

    fn report_files(&self) -> BTreeSet<PathBuf> {
        match std::fs::read_dir(self.reports_dir()) {
            Ok(entries) => {
                entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
            }
            Err(_) => BTreeSet::new(),
        }
    }

    /// Runs `tenure run` and returns its output and the report it wrote (the
    /// one report file that did not exist before the run), if any.
    pub fn try_run(&self, opts: &RunOpts) -> (Output, Option<Report>) {
        let before = self.report_files();
        let (mut raw, warehouse) = if opts.urls {
            (file_url(&self.raw), file_url(&self.warehouse))
        } else {
            (self.raw.display().to_string(), self.warehouse.display().to_string())
        };
        if opts.raw_trailing_slash {
            raw.push('/');
        }
        let mut args: Vec<String> = vec!["run".into()];
        if let Some(p) = &opts.pipeline {
            args.push(p.clone());
        }
        args.extend(["--raw".into(), raw, "--warehouse".into(), warehouse]);
        args.extend(["--as-of".into(), opts.as_of.clone(), "--timezone".into(), opts.timezone.clone()]);
        if let Some(c) = &opts.currency {
            args.extend(["--currency".into(), c.clone()]);
        }
        if let Some(c) = &opts.config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        let out = tenure(&args);
        let new: Vec<PathBuf> = self.report_files().difference(&before).cloned().collect();
        assert!(new.len() <= 1, "one run wrote several reports: {new:?}");
        let report = new.first().map(|p| Report::load(p));
        (out, report)
    }

    /// Runs with `opts`, requires exit 0 and a report, and checks the report's
    /// conservation identities (EVENTS.md "Conservation") before returning it.
    pub fn run_with(&self, opts: &RunOpts) -> Report {
        let (out, report) = self.try_run(opts);
        assert!(out.status.success(), "tenure run failed ({}):\n{}", out.status, output_text(&out));
        let report = report.unwrap_or_else(|| {
            panic!("tenure run wrote no report under {}:\n{}", self.reports_dir().display(), output_text(&out))
        });
        report.check_conservation();
        report
    }

    /// `run_with` the default options (UTC, USD, as of `AS_OF`).
    pub fn run(&self) -> Report {
        self.run_with(&RunOpts::default())
    }

    pub fn events(&self) -> Table {
        let t = read_table(&self.table("events"));
        t.check_schema("events", EVENT_COLUMNS, false);
        assert!(t.partition_columns.is_empty(), "events is not partitioned (files of consecutive objects carry date statistics): {:?}", t.partition_columns);
        t
    }

    pub fn rejects(&self) -> Table {
        let t = read_table(&self.table("rejects"));
        // EVENTS.md lists what `rejects` has; a further diagnostic column is allowed.
        t.check_schema("rejects", REJECT_COLUMNS, true);
        t
    }

    /// Compares the whole `events` table with `expected` (see [`ev`]); rows
    /// whose expectation has no `run_id` must carry `run_id`.
    pub fn assert_events(&self, run_id: &str, expected: Vec<Value>) {
        let table = self.events();
        assert_rows_by_event_id(&table.rows, expected, run_id);
    }

    /// Compares the whole `rejects` table with `expected` (source_object,
    /// source_row, reason), every row carrying `run_id`. Returns the rows for
    /// further checks of `raw`.
    pub fn assert_rejects(&self, run_id: &str, expected: &[(&str, i64, &str)]) -> Vec<Value> {
        let table = self.rejects();
        let actual: BTreeSet<(String, i64, String)> = table
            .rows
            .iter()
            .map(|r| (s(&r["source_object"]), r["source_row"].as_i64().unwrap_or(-1), s(&r["reason"])))
            .collect();
        let want: BTreeSet<(String, i64, String)> =
            expected.iter().map(|(o, n, r)| (o.to_string(), *n, r.to_string())).collect();
        assert_eq!(table.rows.len(), expected.len(), "rejects row count; rows: {}", pretty(&table.rows));
        if actual != want {
            let mut msg = String::from("rejects differ (source_object, source_row, reason)\n");
            for x in want.difference(&actual) {
                let got: Vec<_> = actual.iter().filter(|a| a.0 == x.0 && a.1 == x.1).collect();
                writeln!(msg, "  expected {x:?}, got {got:?}").unwrap();
            }
            for x in actual.difference(&want) {
                if !want.iter().any(|w| w.0 == x.0 && w.1 == x.1) {
                    writeln!(msg, "  unexpected {x:?}").unwrap();
                }
            }
            panic!("{msg}");
        }
        for r in &table.rows {
            assert_eq!(s(&r["run_id"]), run_id, "run_id of reject {r}");
            assert!(r["raw"].is_string(), "reject without raw text: {r}");
        }
        table.rows
    }
}

/// The reject row of (`object`, `row`).
pub fn reject<'a>(rows: &'a [Value], object: &str, row: i64) -> &'a Value {
    rows.iter()
        .find(|r| r["source_object"] == object && r["source_row"] == row)
        .unwrap_or_else(|| panic!("no reject for {object}:{row}"))
}

/// Runs the binary from the repository root with `args`.
pub fn tenure<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("run the tenure binary")
}

pub fn output_text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A run report (`<warehouse>/_runs/<run_id>.json`).
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    pub json: Value,
}

/// Expected `ingest.totals` of a report; fields left at `Default` must be 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub rows_read: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub duplicates: i64,
    pub conflicting_duplicates: i64,
    pub objects_ingested: i64,
    pub objects_unreadable: i64,
    pub objects_skipped: i64,
    pub objects_ignored: i64,
    pub objects_already_ingested: i64,
    pub objects_changed: i64,
}

/// Expected entry of `ingest.objects`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Obj {
    pub path: String,
    pub status: String,
    pub rows_read: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub duplicates: i64,
    pub conflicting_duplicates: i64,
}

/// An ingested object: path, rows_read, accepted, rejected, duplicates, conflicting.
pub fn ingested(path: &str, rows: i64, accepted: i64, rejected: i64, dups: i64, conflicting: i64) -> Obj {
    Obj {
        path: path.into(),
        status: "ingested".into(),
        rows_read: rows,
        accepted,
        rejected,
        duplicates: dups,
        conflicting_duplicates: conflicting,
    }
}

/// An unreadable object: listed, none of its rows counted.
pub fn unreadable(path: &str) -> Obj {
    Obj { status: "unreadable".into(), ..ingested(path, 0, 0, 0, 0, 0) }
}

fn int(v: &Value, what: &str) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("{what} is not an integer: {v}"))
}

impl Report {
    pub fn load(path: &Path) -> Report {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}\n{text}", path.display()));
        Report { path: path.to_path_buf(), json }
    }

    pub fn run_id(&self) -> String {
        self.json["run_id"].as_str().unwrap_or_else(|| panic!("report without run_id: {}", self.json)).to_string()
    }

    pub fn ingest(&self) -> &Value {
        let v = &self.json["ingest"];
        assert!(v.is_object(), "report without an ingest section: {}", self.json);
        v
    }

    pub fn totals(&self) -> Totals {
        let t = &self.ingest()["totals"];
        let f = |k: &str| int(&t[k], &format!("ingest.totals.{k}"));
        Totals {
            rows_read: f("rows_read"),
            accepted: f("accepted"),
            rejected: f("rejected"),
            duplicates: f("duplicates"),
            conflicting_duplicates: f("conflicting_duplicates"),
            objects_ingested: f("objects_ingested"),
            objects_unreadable: f("objects_unreadable"),
            objects_skipped: f("objects_skipped"),
            objects_ignored: f("objects_ignored"),
            objects_already_ingested: f("objects_already_ingested"),
            objects_changed: f("objects_changed"),
        }
    }

    pub fn objects(&self) -> Vec<Obj> {
        let list = self.ingest()["objects"].as_array().cloned().unwrap_or_default();
        let mut out: Vec<Obj> = list
            .iter()
            .map(|o| {
                let f = |k: &str| int(&o[k], &format!("objects[{}].{k}", o["path"]));
                Obj {
                    path: s(&o["path"]),
                    status: s(&o["status"]),
                    rows_read: f("rows_read"),
                    accepted: f("accepted"),
                    rejected: f("rejected"),
                    duplicates: f("duplicates"),
                    conflicting_duplicates: f("conflicting_duplicates"),
                }
            })
            .collect();
        out.sort();
        out
    }

    pub fn assert_totals(&self, expected: Totals) {
        assert_eq!(self.totals(), expected, "ingest.totals of {}", self.path.display());
    }

    /// `ingest.objects` must be exactly `expected` (any order).
    pub fn assert_objects(&self, mut expected: Vec<Obj>) {
        expected.sort();
        let actual = self.objects();
        if actual != expected {
            let mut msg = format!(
                "ingest.objects of {} differ (status rows_read/accepted/rejected/duplicates/conflicting)\n",
                self.path.display()
            );
            let show = |o: Option<&Obj>| match o {
                None => "absent".to_string(),
                Some(o) => format!(
                    "{} {}/{}/{}/{}/{}",
                    o.status, o.rows_read, o.accepted, o.rejected, o.duplicates, o.conflicting_duplicates
                ),
            };
            let paths: BTreeSet<&String> = actual.iter().chain(&expected).map(|o| &o.path).collect();
            for path in paths {
                let a = actual.iter().find(|o| &o.path == path);
                let e = expected.iter().find(|o| &o.path == path);
                if a != e {
                    writeln!(msg, "  {path}: expected {}, got {}", show(e), show(a)).unwrap();
                }
            }
            panic!("{msg}");
        }
        for o in self.ingest()["objects"].as_array().into_iter().flatten() {
            match o["status"].as_str() {
                Some("unreadable") => assert!(
                    o["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "an unreadable object needs an error message: {o}"
                ),
                _ => assert!(o["error"].is_null(), "an ingested object has no error: {o}"),
            }
        }
    }

    /// Non-zero counts of `ingest.rejects_by_reason` must be exactly `expected`.
    pub fn assert_rejects_by_reason(&self, expected: &[(&str, i64)]) {
        let actual: BTreeMap<String, i64> = self.ingest()["rejects_by_reason"]
            .as_object()
            .unwrap_or_else(|| panic!("rejects_by_reason missing: {}", self.ingest()))
            .iter()
            .map(|(k, v)| (k.clone(), int(v, k)))
            .filter(|(_, n)| *n != 0)
            .collect();
        let want: BTreeMap<String, i64> = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(actual, want, "ingest.rejects_by_reason");
    }

    /// A list of paths (plain strings or objects with a `path`), sorted.
    pub fn paths(&self, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self.ingest()[key]
            .as_array()
            .unwrap_or_else(|| panic!("ingest.{key} missing: {}", self.ingest()))
            .iter()
            .map(|x| if x.is_string() { s(x) } else { s(&x["path"]) })
            .collect();
        v.sort();
        v
    }

    /// EVENTS.md "Conservation": rows_read = accepted + rejected + duplicates
    /// per object and in total; totals are the sums over the objects;
    /// rejects_by_reason sums to rejected; conflicting duplicates are
    /// duplicates; object counts match the object lists.
    pub fn check_conservation(&self) {
        let t = self.totals();
        assert_eq!(
            t.rows_read,
            t.accepted + t.rejected + t.duplicates,
            "totals: rows_read != accepted + rejected + duplicates: {t:?}"
        );
        assert!(t.conflicting_duplicates <= t.duplicates, "conflicting > duplicates: {t:?}");
        let objs = self.objects();
        let mut sum = (0, 0, 0, 0, 0);
        for o in &objs {
            assert_eq!(o.rows_read, o.accepted + o.rejected + o.duplicates, "object {}: {o:?}", o.path);
            assert!(o.conflicting_duplicates <= o.duplicates, "object {}: {o:?}", o.path);
            if o.status == "unreadable" {
                assert_eq!(o.rows_read, 0, "an unreadable object counts no rows: {o:?}");
            }
            sum.0 += o.rows_read;
            sum.1 += o.accepted;
            sum.2 += o.rejected;
            sum.3 += o.duplicates;
            sum.4 += o.conflicting_duplicates;
        }
        assert_eq!(
            sum,
            (t.rows_read, t.accepted, t.rejected, t.duplicates, t.conflicting_duplicates),
            "totals are not the sum of ingest.objects (rows_read, accepted, rejected, duplicates, conflicting)"
        );
        let by_reason: i64 = self.ingest()["rejects_by_reason"]
            .as_object()
            .map(|m| m.values().map(|v| int(v, "rejects_by_reason")).sum())
            .unwrap_or(0);
        assert_eq!(by_reason, t.rejected, "rejects_by_reason does not sum to rejected");
        let n = |status: &str| objs.iter().filter(|o| o.status == status).count() as i64;
        assert_eq!(n("ingested"), t.objects_ingested, "objects_ingested vs objects[] with status ingested");
        assert_eq!(n("unreadable"), t.objects_unreadable, "objects_unreadable vs objects[] with status unreadable");
        assert_eq!(self.paths("unreadable_objects").len() as i64, t.objects_unreadable, "unreadable_objects list");
        assert_eq!(self.paths("skipped_objects").len() as i64, t.objects_skipped, "skipped_objects list");
        assert_eq!(self.paths("changed_objects").len() as i64, t.objects_changed, "changed_objects list");
    }
}

/// A Delta table as read by `tests/py/read_delta.py`.
#[derive(Debug)]
pub struct Table {
    pub version: i64,
    pub partition_columns: Vec<String>,
    pub schema: Vec<(String, String)>,
    pub rows: Vec<Value>,
}

impl Table {
    /// Every column of `expected` exists with its type, and no other column
    /// unless `allow_extra`. Any Arrow string type (`string`, `large_string`,
    /// `string_view`) is a string.
    pub fn check_schema(&self, name: &str, expected: &[(&str, &str)], allow_extra: bool) {
        let norm = |t: &str| match t {
            "large_string" | "string_view" | "utf8" | "large_utf8" => "string".to_string(),
            other => other.to_string(),
        };
        let mut actual: BTreeMap<String, String> = self.schema.iter().map(|(n, t)| (n.clone(), norm(t))).collect();
        let want: BTreeMap<String, String> = expected.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        if allow_extra {
            actual.retain(|n, _| want.contains_key(n));
        }
        assert_eq!(actual, want, "schema of table {name}");
    }
}

pub fn python() -> String {
    std::env::var("TENURE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Reads a Delta table (path or URL) with the Python reader.
pub fn read_table_version(uri: &Path, version: Option<i64>) -> Table {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/py/read_delta.py")).arg(uri);
    if let Some(v) = version {
        cmd.args(["--version", &v.to_string()]);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {} tests/py/read_delta.py: {e}", python()));
    assert!(out.status.success(), "read_delta.py {} failed:\n{}", uri.display(), output_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("read_delta.py prints JSON");
    Table {
        version: v["version"].as_i64().unwrap(),
        partition_columns: v["partition_columns"].as_array().unwrap().iter().map(s).collect(),
        schema: v["schema"].as_array().unwrap().iter().map(|f| (s(&f["name"]), s(&f["type"]))).collect(),
        rows: v["rows"].as_array().unwrap().clone(),
    }
}

pub fn read_table(uri: &Path) -> Table {
    read_table_version(uri, None)
}

/// Whether a Delta table exists at `path` (has a `_delta_log`).
pub fn table_exists(path: &Path) -> bool {
    path.join("_delta_log").is_dir()
}

pub fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "<null>".to_string(),
        other => other.to_string(),
    }
}

pub fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// An expected accepted event: lineage plus the non-NULL columns in `fields`.
/// Every column not named is expected NULL. Two conveniences, both plain text
/// rules rather than computations: `occurred_at` written without a fraction
/// gets `.000000`; a missing `event_date` is the date part of `occurred_at`
/// (correct for runs in UTC only; tests in other zones always write it).
pub fn ev(source_object: &str, source_row: i64, fields: Value) -> Value {
    let mut m: Map<String, Value> = fields.as_object().expect("ev fields are a JSON object").clone();
    m.insert("source_object".into(), json!(source_object));
    m.insert("source_row".into(), json!(source_row));
    if let Some(Value::String(ts)) = m.get("occurred_at").cloned() {
        let full = if ts.contains('.') { ts } else { ts.replace('Z', ".000000Z") };
        if !m.contains_key("event_date") {
            m.insert("event_date".into(), json!(full[..10].to_string()));
        }
        m.insert("occurred_at".into(), json!(full));
    }
    for (col, _) in EVENT_COLUMNS {
        m.entry(col.to_string()).or_insert(Value::Null);
    }
    let unknown: Vec<&String> = m.keys().filter(|k| !EVENT_COLUMNS.iter().any(|(c, _)| c == k)).collect();
    assert!(unknown.is_empty(), "expectation names columns that events does not have: {unknown:?}");
    Value::Object(m)
}

/// The fields of one event of customer `c1`: the envelope plus `extra`
/// (which may also override `customer_id`). For use inside [`ev`].
pub fn event(event_id: &str, event_type: &str, occurred_at: &str, extra: Value) -> Value {
    let mut v =
        json!({"event_id": event_id, "event_type": event_type, "customer_id": "c1", "occurred_at": occurred_at});
    for (k, x) in extra.as_object().expect("extra fields are a JSON object") {
        v[k] = x.clone();
    }
    v
}

fn assert_rows_by_event_id(rows: &[Value], expected: Vec<Value>, run_id: &str) {
    let mut actual: BTreeMap<String, Value> = BTreeMap::new();
    for r in rows {
        let id = s(&r["event_id"]);
        assert!(actual.insert(id.clone(), r.clone()).is_none(), "event_id {id} appears twice in events");
    }
    let mut want: BTreeMap<String, Value> = BTreeMap::new();
    for mut e in expected {
        if e["run_id"].is_null() {
            e["run_id"] = json!(run_id);
        }
        let id = s(&e["event_id"]);
        assert!(want.insert(id.clone(), e).is_none(), "test bug: event_id {id} expected twice");
    }
    let mut msg = String::new();
    for (id, e) in &want {
        match actual.get(id) {
            None => writeln!(msg, "  missing event {id}: expected {e}").unwrap(),
            Some(a) => {
                for (col, _) in EVENT_COLUMNS {
                    if a[*col] != e[*col] {
                        writeln!(msg, "  event {id}: {col} expected {} got {}", e[*col], a[*col]).unwrap();
                    }
                }
            }
        }
    }
    for (id, a) in &actual {
        if !want.contains_key(id) {
            writeln!(msg, "  unexpected event {id}: {a}").unwrap();
        }
    }
    assert!(msg.is_empty(), "events table differs from the expectation:\n{msg}");
}

/// Writes `<dir>/config/tenure.toml`: the repository's config with the project
/// folders made absolute (so the copy still finds `pipelines/` and `sql/`),
/// then changed by `edit`. Returns its path.
pub fn config_with(dir: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let original = repo().join("config/tenure.toml");
    let text = std::fs::read_to_string(&original).unwrap_or_default();
    let mut table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", original.display()));
    let config_dir = repo().join("config");
    for (key, default) in [("pipelines_dir", "../pipelines"), ("sql_dir", "../sql")] {
        let current =
            table.get("project").and_then(|p| p.get(key)).and_then(|v| v.as_str()).unwrap_or(default).to_string();
        let absolute = config_dir.join(current).display().to_string();
        set(&mut table, &["project", key], toml::Value::String(absolute));
    }
    edit(&mut table);
    let path = dir.join("config/tenure.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    path
}

/// Sets `path` (table names, then the key) in a TOML table, creating tables.
pub fn set(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let (key, tables) = path.split_last().unwrap();
    let mut t = table;
    for name in tables {
        t = t
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("{name} is not a table"));
    }
    t.insert(key.to_string(), value);
}
