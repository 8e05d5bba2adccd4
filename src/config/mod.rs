//! Configuration: `config/tenure.toml` (where and how) and `pipelines/*.toml`
//! (what and when). Raw serde types are compiled into validated types;
//! [`load`] reports every problem at once, each naming file, line and key, and
//! [`load_partial`] also hands back what could be read, for `tenure validate`
//! to check further. Nothing here touches storage or runs anything.

pub mod raw;

use chrono_tz::Tz;
use raw::{RawConfig, RawPipeline};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::problem::Problem;

/// Every problem found; displayed one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::problem::lines(&self.0))
    }
}

/// Health-score parameters (METRICS.md §7).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub weight_usage: f64,
    pub weight_breadth: f64,
    pub weight_trend: f64,
    pub weight_sentiment: f64,
    pub weight_support: f64,
    pub weight_billing: f64,
    pub weight_email: f64,
    pub target_active_days: f64,
    pub target_features: f64,
    pub band_green: f64,
    pub band_yellow: f64,
    pub score_drop_threshold: f64,
}

/// Storage settings shared by every URL (credentials stay in `options`, and
/// `Debug` never prints their values).
#[derive(Clone, Default)]
pub struct StorageSettings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub max_retries: usize,
    pub retry_timeout: std::time::Duration,
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The validated environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub pipelines_dir: PathBuf,
    pub sql_dir: PathBuf,
    pub raw: String,
    pub warehouse: String,
    pub storage: StorageSettings,
    pub timezone: Tz,
    pub currency: String,
    pub max_reject_rate: f64,
    pub parallelism: usize,
    pub ingest_limits: crate::ingest::decode::Limits,
    pub activity_window_days: i64,
    pub health: Health,
    pub scheduler: SchedulerSettings,
    pub server: Server,
    /// Bytes the models of one run may hold at once (`engine.memory_mb`).
    pub engine_memory: Option<usize>,
    /// The workers the models run on (`engine.workers`, `--workers`); empty: the run's process.
    pub engine_workers: Vec<url::Url>,
    pub vacuum: VacuumSettings,
    /// `finance.close_after_days`: days after a month's last day its close
    /// is due (METRICS.md §12).
    pub close_after_days: i64,
    /// `metrics.clv`.
    pub clv: Clv,
    /// `metrics.churn.l2`: the L2 penalty of the churn model.
    pub churn_l2: f64,
}

/// `[metrics.clv]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clv {
    pub time_unit_days: i64,
    pub horizon_days: i64,
}

/// `[vacuum]` and `[runs]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct VacuumSettings {
    /// The cron expression `tenure schedule` vacuums by; `None`: never.
    pub schedule: Option<String>,
    /// The retention window.
    pub retain: Duration,
    /// How long run reports are kept.
    pub runs_retain: Duration,
}

impl VacuumSettings {
    /// What a vacuum with these settings does (`dry_run` off).
    pub fn options(&self) -> crate::vacuum::VacuumOptions {
        crate::vacuum::VacuumOptions {
            retain: self.retain,
            runs_retain: self.runs_retain,
            dry_run: false,
        }
    }
}

/// The vacuum schedule unless the config says otherwise: daily at 04:00.
pub const DEFAULT_VACUUM_SCHEDULE: &str = "0 4 * * *";

/// `[scheduler]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    pub health_listen: SocketAddr,
    pub grace_period: Duration,
    pub lease_ttl: Duration,
}

/// A secret from the config (a password): `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How clients of `tenure serve` authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAuth {
    /// Anyone who can connect may query (loopback addresses only).
    None,
    /// SCRAM-SHA-256 with one user and password.
    Password { user: String, password: Secret },
}

/// Certificate and key files of the server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[server]`, validated (`tenure serve`).
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    /// Arrow Flight SQL's address (`server.flight_listen`); `None`: off.
    pub flight_listen: Option<SocketAddr>,
    pub auth: ServerAuth,
    pub tls: Option<Tls>,
    /// `None`: no limit.
    pub query_timeout: Option<Duration>,
    /// `None`: no limit.
    pub max_rows: Option<u64>,
    pub max_connections: usize,
    /// `None`: no limit.
    pub login_timeout: Option<Duration>,
    /// `None`: no limit.
    pub idle_timeout: Option<Duration>,
    /// Bytes of memory one query may hold; `None`: no limit.
    pub query_memory: Option<usize>,
    /// Problems that stop `tenure serve` only: an unset password variable
    /// must not stop `tenure run` on a machine that never serves.
    pub problems: Vec<Problem>,
}

/// Default address of `tenure serve`: this machine only, next to a real
/// PostgreSQL's 5432.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub schedule: Option<String>,
    pub timezone: Option<Tz>,
    pub models: Vec<String>,
    pub catch_up: CatchUp,
    pub ingest: bool,
    /// Retries of a scheduled run after a transient failure.
    pub retries: u32,
    /// Wait before the first retry (doubling after).
    pub retry_backoff: Duration,
    /// A run is stopped (nothing published) once it has taken this long.
    pub run_timeout: Option<Duration>,
    /// Scheduled runs that publish write the finance report to the warehouse.
    pub report: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    Latest,
    All,
    None,
}

/// Config file plus pipelines.
#[derive(Debug, Clone)]
pub struct Project {
    pub config: Config,
    pub pipelines: Vec<Pipeline>,
}

impl Project {
    /// The named pipeline, or the default one: the only pipeline, else `daily`.
    pub fn pipeline(&self, name: Option<&str>) -> Result<&Pipeline, PipelineChoiceError> {
        let dir = || self.config.pipelines_dir.display().to_string();
        match name {
            Some(n) => self.pipelines.iter().find(|p| p.name == n).ok_or_else(|| PipelineChoiceError::Unknown {
                name: n.to_string(),
                dir: dir(),
                known: self.pipelines.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
            None => match self.pipelines.as_slice() {
                [only] => Ok(only),
                many => many.iter().find(|p| p.name == "daily").ok_or_else(|| PipelineChoiceError::Ambiguous {
                    dir: dir(),
                    count: many.len(),
                }),
            },
        }
    }
}

/// A pipeline name that picks no pipeline.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineChoiceError {
    #[error("unknown pipeline {name:?}; pipelines in {dir}: {known}")]
    Unknown { name: String, dir: String, known: String },
    #[error("name a pipeline: {dir} defines {count} pipelines and none is called \"daily\"")]
    Ambiguous { dir: String, count: usize },
}

/// Overrides from the command line; they win over the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub raw: Option<String>,
    pub warehouse: Option<String>,
    pub timezone: Option<String>,
    pub currency: Option<String>,
}

struct Problems {
    file: String,
    list: Vec<Problem>,
}

impl Problems {
    fn new(file: &Path) -> Problems {
        Problems {
            file: file.display().to_string(),
            list: Vec::new(),
        }
    }

    /// A problem of `key`; its line is found afterwards ([`Document::locate`]).
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem::new(self.file.clone(), None, key, message));
    }
}

/// A project read as far as its files allow, and every problem found in them:
/// what `tenure validate` goes on checking when the config has problems.
/// Where a value is wrong the project holds a placeholder (UTC for an unknown
/// timezone, the default for a key left out), so it is for checking only:
/// [`load`] never hands one out.
#[derive(Debug)]
pub struct Partial {
    /// `None` when the config file cannot be read or parsed as TOML, or its
    /// `[project]` table has a problem (then the folders are unknown).
    pub project: Option<Project>,
    pub problems: Vec<Problem>,
}

/// Load and compile the config file and every pipeline file. Any problem
/// fails the load; the error lists them all.
pub fn load(config_file: &Path, overrides: &Overrides) -> Result<Project, ConfigError> {
    let Partial { project, problems } = load_partial(config_file, overrides);
    match project {
        Some(project) if problems.is_empty() => Ok(project),
        _ => Err(ConfigError(problems)),
    }
}

/// Read the config file and every pipeline file as far as they can be read,
/// collecting every problem with its line: a wrong value is reported and
/// replaced by a placeholder, a key the file may not have is reported and
/// left out, so one problem never hides the next.
pub fn load_partial(config_file: &Path, overrides: &Overrides) -> Partial {
    let mut problems = Vec::new();
    let Some(doc) = Document::read(config_file, &mut problems) else {
        return Partial { project: None, problems };
    };
    let (raw, left_out) = doc.deserialize::<RawConfig>(&mut problems);
    let folders_known = !left_out.iter().any(|k| k == "project" || k.starts_with("project."));
    let Some(raw) = raw.filter(|_| folders_known) else {
        return Partial { project: None, problems };
    };
    let mut p = Problems::new(config_file);
    let mut config = compile_config(config_file, raw, overrides, &mut p);
    let mut pipeline_problems = Vec::new();
    let pipelines = load_pipelines(&config, &mut p, &mut pipeline_problems);
    problems.extend(doc.locate(p.list));
    problems.extend(pipeline_problems);
    config.server.problems = doc.locate(std::mem::take(&mut config.server.problems));
    Partial {
        project: Some(Project { config, pipelines }),
        problems,
    }
}

/// Every `*.toml` of the pipelines folder that compiles; the problems of
/// all (an unreadable folder is the config's problem, `p`).
fn load_pipelines(config: &Config, p: &mut Problems, problems: &mut Vec<Problem>) -> Vec<Pipeline> {
    let mut pipelines: Vec<Pipeline> = Vec::new();
    let entries = match std::fs::read_dir(&config.pipelines_dir) {
        Ok(entries) => entries,
        Err(e) => {
            p.push(
                "project.pipelines_dir",
                format!("cannot read the pipelines folder {} ({e}); name the folder of the pipeline files", config.pipelines_dir.display()),
            );
            return pipelines;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut found = 0;
    for file in files {
        found += 1;
        let Some(doc) = Document::read(&file, problems) else { continue };
        let (raw, _) = doc.deserialize::<RawPipeline>(problems);
        let Some(raw) = raw else { continue };
        let mut p = Problems::new(&file);
        let pipeline = compile_pipeline(&file, raw, &mut p);
        if let Some(other) = pipelines.iter().find(|q| q.name == pipeline.name) {
            p.push("name", format!("pipeline name {:?} is already used by {}", pipeline.name, other.file.display()));
        }
        pipelines.push(pipeline);
        problems.extend(doc.locate(p.list));
    }
    if found == 0 {
        problems.push(Problem::new(
            config.pipelines_dir.display().to_string(),
            None,
            "",
            "no pipeline defined; add a .toml file here",
        ));
    }
    pipelines
}

/// The line of a dotted key (`reporting.timezone`) in a TOML file, or of the
/// nearest table above it that the file has; `None` where the file has
/// neither or cannot be read. For problems found after loading (a
/// pipeline's `models` matching no model).
pub fn line_of_key(file: &Path, key: &str) -> Option<usize> {
    Document::read(file, &mut Vec::new())?.line_of(key)
}

/// A TOML file as read: its text and the spans of its keys.
struct Document {
    file: String,
    text: String,
    doc: toml_edit::ImDocument<String>,
}

impl Document {
    /// Read and parse `file`; a file that cannot be read or is not TOML is a
    /// problem (with the line of the syntax error).
    fn read(file: &Path, problems: &mut Vec<Problem>) -> Option<Document> {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Problem::new(name, None, "", format!("cannot read ({e})")));
                return None;
            }
        };
        match toml_edit::ImDocument::parse(text.clone()) {
            Ok(doc) => Some(Document { file: name, text, doc }),
            Err(e) => {
                let line = e.span().map(|s| crate::problem::line_at(&text, s.start));
                problems.push(Problem::new(name, line, "", one_line(e.message())));
                None
            }
        }
    }

    /// Deserialize the file as `T`. A key whose value `T` refuses (unknown,
    /// of the wrong type) is reported with its line and left out, and the rest
    /// is read again, so one typo does not hide the next. Returns `T` (`None`
    /// where leaving keys out does not help) and the keys left out.
    fn deserialize<T: serde::de::DeserializeOwned>(&self, problems: &mut Vec<Problem>) -> (Option<T>, Vec<String>) {
        use serde::de::IntoDeserializer;
        let mut root = self.doc.as_table().clone();
        let mut left_out = Vec::new();
        // Each round leaves one key out; a file has fewer keys than lines.
        for _ in 0..=self.text.lines().count() {
            let value = toml_edit::Value::InlineTable(root.clone().into_inline_table());
            let e = match T::deserialize(value.into_deserializer()) {
                Ok(t) => return (Some(t), left_out),
                Err(e) => e,
            };
            let span = e.span();
            let path = span.as_ref().and_then(|s| key_at(&root, s.start)).unwrap_or_default();
            let line = span.map(|s| crate::problem::line_at(&self.text, s.start));
            problems.push(Problem::new(self.file.clone(), line, path.join("."), one_line(e.message())));
            if path.is_empty() || !remove_key(&mut root, &path) {
                return (None, left_out);
            }
            left_out.push(path.join("."));
        }
        (None, left_out)
    }

    /// The line of a dotted key, or of the nearest table above it in the file.
    fn line_of(&self, key: &str) -> Option<usize> {
        let mut table: &dyn toml_edit::TableLike = self.doc.as_table();
        let mut line = None;
        for part in key.split('.') {
            let Some((k, item)) = table.get_key_value(part) else { break };
            if let Some(span) = k.span() {
                line = Some(crate::problem::line_at(&self.text, span.start));
            }
            match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            }
        }
        line
    }

    /// The problems with the lines of their keys.
    fn locate(&self, problems: Vec<Problem>) -> Vec<Problem> {
        problems
            .into_iter()
            .map(|p| Problem {
                line: p.line.or_else(|| self.line_of(&p.key)),
                ..p
            })
            .collect()
    }
}

/// A parser's message on one line.
fn one_line(message: &str) -> String {
    message.trim().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The path of the innermost key whose name or value holds byte `offset`.
fn key_at(table: &dyn toml_edit::TableLike, offset: usize) -> Option<Vec<String>> {
    let holds = |span: Option<std::ops::Range<usize>>| span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1));
    for (name, item) in table.iter() {
        if let Some(mut inner) = item.as_table_like().and_then(|t| key_at(t, offset)) {
            inner.insert(0, name.to_string());
            return Some(inner);
        }
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if holds(key_span) || holds(item.span()) {
            return Some(vec![name.to_string()]);
        }
    }
    None
}

/// Remove the key at `path`; false when there is none.
fn remove_key(table: &mut dyn toml_edit::TableLike, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => table
            .get_mut(first)
            .and_then(|item| item.as_table_like_mut())
            .is_some_and(|t| remove_key(t, rest)),
    }
}

/// Resolve `${VAR}` references from the environment.
fn interpolate(value: &str, key: &str, p: &mut Problems) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            p.push(key, "unterminated ${ in value");
            return out;
        };
        let var = &rest[start + 2..start + end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => p.push(key, format!("environment variable {var} is not set")),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// A path in the config is relative to the config file's folder; a URL is kept.
fn resolve_location(base: &Path, value: &str) -> String {
    if value.contains("://") || Path::new(value).is_absolute() {
        value.to_string()
    } else {
        base.join(value).display().to_string()
    }
}

pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown timezone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\""))
}

pub fn parse_currency(code: &str) -> Result<String, String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code.to_ascii_uppercase())
    } else {
        Err(format!("currency {code:?} is not an ISO 4217 code such as \"USD\""))
    }
}

/// The validated config; where a value is wrong, the problem is pushed and a
/// placeholder (the default) stands in, so that checking can go on.
fn compile_config(file: &Path, raw: RawConfig, overrides: &Overrides, p: &mut Problems) -> Config {
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let dir = |v: &Option<String>, default: &str| base.join(v.as_deref().unwrap_or(default));
    let location = |flag: &Option<String>, value: &Option<String>, key: &str, p: &mut Problems| {
        match (flag, value) {
            (Some(f), _) => f.clone(),
            (None, Some(v)) => resolve_location(&base, &interpolate(v, key, p)),
            (None, None) => {
                p.push(key, "is required (or pass the matching command-line flag)");
                String::new()
            }
        }
    };
    let raw_url = location(&overrides.raw, &raw.storage.raw, "storage.raw", p);
    let warehouse = location(&overrides.warehouse, &raw.storage.warehouse, "storage.warehouse", p);

    let tz_name = overrides
        .timezone
        .clone()
        .or(raw.reporting.timezone)
        .unwrap_or_else(|| "UTC".into());
    let timezone = parse_timezone(&tz_name).unwrap_or_else(|e| {
        p.push(if overrides.timezone.is_some() { "--timezone" } else { "reporting.timezone" }, e);
        Tz::UTC
    });
    let currency_code = overrides
        .currency
        .clone()
        .or(raw.reporting.currency)
        .unwrap_or_else(|| "USD".into());
    let currency = parse_currency(&currency_code).unwrap_or_else(|e| {
        p.push(if overrides.currency.is_some() { "--currency" } else { "reporting.currency" }, e);
        "USD".to_string()
    });

    let max_reject_rate = raw.ingest.max_reject_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&max_reject_rate) {
        p.push("ingest.max_reject_rate", "must be between 0 and 1");
    }
    let parallelism = raw
        .ingest
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    if parallelism == 0 {
        p.push("ingest.parallelism", "must be at least 1");
    }
    let ingest_limits = compile_ingest_limits(&raw.ingest, p);
    let activity_window_days = raw.metrics.activity_window_days.unwrap_or(90);
    if activity_window_days < 1 {
        p.push("metrics.activity_window_days", "must be at least 1");
    }

    let close_after_days = raw.finance.close_after_days.unwrap_or(3);
    if !(0..=3650).contains(&close_after_days) {
        p.push("finance.close_after_days", "must be a number of days from 0 to 3650");
    }

    let clv = Clv {
        time_unit_days: raw.metrics.clv.time_unit_days.unwrap_or(7),
        horizon_days: raw.metrics.clv.horizon_days.unwrap_or(365),
    };
    if !(1..=3650).contains(&clv.time_unit_days) {
        p.push("metrics.clv.time_unit_days", "must be a number of days from 1 to 3650");
    }
    if !(1..=36500).contains(&clv.horizon_days) {
        p.push("metrics.clv.horizon_days", "must be a number of days from 1 to 36500");
    }
    let churn_l2 = raw.metrics.churn.l2.unwrap_or(1.0);
    if !churn_l2.is_finite() || churn_l2 < 0.0 {
        p.push("metrics.churn.l2", "must be a number >= 0");
    }

    let h = raw.metrics.health;
    let w = h.weights;
    let mut non_negative = |key: &str, v: Option<f64>, default: f64| {
        let v = v.unwrap_or(default);
        if !v.is_finite() || v < 0.0 {
            p.push(key, "must be a number >= 0");
        }
        v
    };
    let health = Health {
        weight_usage: non_negative("metrics.health.weights.usage", w.usage, 0.25),
        weight_breadth: non_negative("metrics.health.weights.breadth", w.breadth, 0.15),
        weight_trend: non_negative("metrics.health.weights.trend", w.trend, 0.15),
        weight_sentiment: non_negative("metrics.health.weights.sentiment", w.sentiment, 0.15),
        weight_support: non_negative("metrics.health.weights.support", w.support, 0.10),
        weight_billing: non_negative("metrics.health.weights.billing", w.billing, 0.10),
        weight_email: non_negative("metrics.health.weights.email", w.email, 0.10),
        target_active_days: non_negative("metrics.health.target_active_days", h.target_active_days, 20.0),
        target_features: non_negative("metrics.health.target_features", h.target_features, 5.0),
        band_green: non_negative("metrics.health.band_green", h.band_green, 70.0),
        band_yellow: non_negative("metrics.health.band_yellow", h.band_yellow, 40.0),
        score_drop_threshold: non_negative("metrics.health.score_drop_threshold", h.score_drop_threshold, 15.0),
    };
    if health.target_active_days == 0.0 {
        p.push("metrics.health.target_active_days", "must be greater than 0");
    }
    if health.target_features == 0.0 {
        p.push("metrics.health.target_features", "must be greater than 0");
    }
    if health.band_yellow > health.band_green {
        p.push("metrics.health.band_yellow", "must not exceed band_green");
    }

    let mut options = BTreeMap::new();
    for (k, v) in &raw.storage.options {
        let key = format!("storage.options.{k}");
        options.insert(k.clone(), interpolate(v, &key, p));
    }
    let storage = StorageSettings {
        endpoint: raw.storage.endpoint.map(|v| interpolate(&v, "storage.endpoint", p)),
        region: raw.storage.region.map(|v| interpolate(&v, "storage.region", p)),
        allow_http: raw.storage.allow_http.unwrap_or(false),
        max_retries: raw.storage.max_retries.unwrap_or(10),
        retry_timeout: {
            let secs = raw.storage.retry_timeout_seconds.unwrap_or(180.0);
            if !secs.is_finite() || secs < 0.0 {
                p.push("storage.retry_timeout_seconds", "must be a number of seconds >= 0");
            }
            std::time::Duration::from_secs_f64(secs.max(0.0).min(86_400.0))
        },
        options,
    };
    if let Err(e) = crate::storage::check_options(&storage) {
        p.push("storage.options", e);
    }

    let scheduler = compile_scheduler(&raw.scheduler, p);
    let server = compile_server(&base, raw.server, p);
    let vacuum = compile_vacuum(&raw.vacuum, &raw.runs, p);
    let mut engine_workers = Vec::new();
    for worker in raw.engine.workers.iter().flatten() {
        match crate::cluster::parse_url(&interpolate(worker, "engine.workers", p)) {
            Ok(url) => engine_workers.push(url),
            Err(e) => p.push("engine.workers", e),
        }
    }

    Config {
        file: file.to_path_buf(),
        pipelines_dir: dir(&raw.project.pipelines_dir, "../pipelines"),
        sql_dir: dir(&raw.project.sql_dir, "../sql"),
        raw: raw_url,
        warehouse,
        storage,
        timezone,
        currency,
        max_reject_rate,
        parallelism: parallelism.max(1),
        ingest_limits,
        activity_window_days,
        health,
        scheduler,
        server,
        engine_memory: raw.engine.memory_mb.map_or_else(crate::engine::default_memory_limit, |mb| {
            (mb > 0).then(|| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
        }),
        engine_workers,
        vacuum,
        close_after_days,
        clv,
        churn_l2,
    }
}

/// `ingest.max_record_bytes` and `ingest.max_object_bytes`.
fn compile_ingest_limits(raw: &raw::RawIngest, p: &mut Problems) -> crate::ingest::decode::Limits {
    let default = crate::ingest::decode::Limits::default();
    let mut bytes = |key: &str, value: Option<i64>, max: i64, default: u64| match value {
        None => default,
        Some(v) if (1..=max).contains(&v) => v as u64,
        Some(v) => {
            p.push(key, format!("{v} is not a number of bytes from 1 to {max}"));
            default
        }
    };
    crate::ingest::decode::Limits {
        // A row is kept whole in one batch of rejects, whose text columns
        // hold at most 2 GiB each.
        max_record_bytes: bytes("ingest.max_record_bytes", raw.max_record_bytes, 1 << 30, default.max_record_bytes),
        max_object_bytes: bytes("ingest.max_object_bytes", raw.max_object_bytes, i64::MAX, default.max_object_bytes),
    }
}

fn compile_vacuum(raw: &raw::RawVacuum, runs: &raw::RawRuns, p: &mut Problems) -> VacuumSettings {
    let schedule = match raw.schedule.as_deref().unwrap_or(DEFAULT_VACUUM_SCHEDULE) {
        "off" => None,
        expr => {
            if let Err(e) = check_cron(expr) {
                p.push("vacuum.schedule", format!("{e}; or \"off\" to never vacuum on schedule"));
            }
            Some(expr.to_string())
        }
    };
    let default_hours = crate::vacuum::DEFAULT_RETAIN_HOURS as f64;
    let hours = raw.retain_hours.unwrap_or(default_hours);
    // At least an hour: the window is also the margin for runs in progress.
    let retain = if hours.is_finite() && (1.0..=1e6).contains(&hours) {
        Duration::from_secs_f64(hours * 3600.0)
    } else {
        p.push("vacuum.retain_hours", "must be a number of hours from 1 to 1000000 (it must exceed the longest run)");
        Duration::from_secs_f64(default_hours * 3600.0)
    };
    let default_days = crate::vacuum::DEFAULT_RUNS_RETAIN_DAYS as f64;
    let days = runs.retain_days.unwrap_or(default_days);
    let runs_retain = if days.is_finite() && (1.0..=1e6).contains(&days) {
        Duration::from_secs_f64(days * 86_400.0)
    } else {
        p.push("runs.retain_days", "must be a number of days from 1 to 1000000");
        Duration::from_secs_f64(default_days * 86_400.0)
    };
    VacuumSettings { schedule, retain, runs_retain }
}

fn compile_server(base: &Path, raw: raw::RawServer, p: &mut Problems) -> Server {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.push(
            "server.listen",
            format!("{listen_text:?} is not an address and port such as \"{DEFAULT_LISTEN}\" or \"0.0.0.0:5433\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 5433))
    });
    let flight_listen = raw.flight_listen.and_then(|text| match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.push(
                "server.flight_listen",
                format!("{text:?} is not an address and port such as \"127.0.0.1:50051\""),
            );
            None
        }
    });
    // The password is resolved apart: its problems stop `tenure serve` only.
    let mut deferred = Problems {
        file: p.file.clone(),
        list: Vec::new(),
    };
    let password_auth = |user: String, password: String| ServerAuth::Password {
        user,
        password: Secret(password),
    };
    let auth = match raw.auth.as_deref().unwrap_or("password") {
        "none" => {
            if raw.password.is_some() {
                p.push("server.password", "is set but server.auth is \"none\"; remove one of them");
            }
            ServerAuth::None
        }
        "password" => {
            let user = raw.user.unwrap_or_else(|| "tenure".to_string());
            if user.is_empty() {
                p.push("server.user", "must not be empty");
            }
            let value = raw.password.unwrap_or_else(|| "${TENURE_SERVER_PASSWORD}".to_string());
            let password = interpolate(&value, "server.password", &mut deferred);
            if password.is_empty() && deferred.list.is_empty() {
                deferred.push("server.password", "is empty; set a password (e.g. \"${TENURE_SERVER_PASSWORD}\")");
            }
            password_auth(user, password)
        }
        other => {
            p.push("server.auth", format!("{other:?} is not one of \"password\", \"none\""));
            // Never open: a password nobody knows.
            password_auth("tenure".into(), String::new())
        }
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some(Tls {
            cert: PathBuf::from(resolve_location(base, &interpolate(&cert, "server.tls_cert", p))),
            key: PathBuf::from(resolve_location(base, &interpolate(&key, "server.tls_key", p))),
        }),
        (None, None) => None,
        (Some(_), None) => {
            p.push("server.tls_key", "is required with server.tls_cert");
            None
        }
        (None, Some(_)) => {
            p.push("server.tls_cert", "is required with server.tls_key");
            None
        }
    };
    let max_connections = raw.max_connections.unwrap_or(64);
    if max_connections == 0 {
        p.push("server.max_connections", "must be at least 1");
    }
    let query_memory = match raw.query_memory_mb.unwrap_or(1024) {
        0 => None,
        mb => match usize::try_from(mb).ok().and_then(|mb| mb.checked_mul(1024 * 1024)) {
            Some(bytes) => Some(bytes),
            None => {
                p.push("server.query_memory_mb", format!("{mb} MiB is more than this machine can address; use 0 for no limit"));
                None
            }
        },
    };
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    Server {
        listen,
        flight_listen,
        auth,
        tls,
        query_timeout: match raw.query_timeout_seconds.unwrap_or(300) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        max_rows: match raw.max_rows.unwrap_or(1_000_000) {
            0 => None,
            n => Some(n),
        },
        max_connections,
        login_timeout: seconds(raw.login_timeout_seconds.unwrap_or(10)),
        idle_timeout: seconds(raw.idle_timeout_seconds.unwrap_or(3600)),
        query_memory,
        problems: deferred.list,
    }
}

fn compile_scheduler(raw: &raw::RawScheduler, p: &mut Problems) -> SchedulerSettings {
    let health_listen = raw.health_listen.as_deref().unwrap_or(DEFAULT_HEALTH_LISTEN);
    let health_listen = health_listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.push(
            "scheduler.health_listen",
            format!("{health_listen:?} is not an address such as \"{DEFAULT_HEALTH_LISTEN}\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 9464))
    });
    let mut seconds = |key: &str, v: Option<f64>, default: f64, min: f64| {
        let v = v.unwrap_or(default);
        if !v.is_finite() || v < min {
            p.push(key, format!("must be a number of seconds >= {min}"));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(v)
    };
    SchedulerSettings {
        health_listen,
        grace_period: seconds("scheduler.grace_period_seconds", raw.grace_period_seconds, 300.0, 0.0),
        lease_ttl: seconds("scheduler.lease_seconds", raw.lease_seconds, 60.0, 15.0),
    }
}

/// Where the scheduler's health endpoint listens unless told otherwise.
pub const DEFAULT_HEALTH_LISTEN: &str = "127.0.0.1:9464";

fn compile_pipeline(file: &Path, raw: RawPipeline, p: &mut Problems) -> Pipeline {
    let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let name = raw.name.unwrap_or(stem);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        p.push("name", format!("pipeline name {name:?} must be letters, digits, '_' or '-'"));
    }
    if let Some(schedule) = &raw.schedule {
        if let Err(e) = check_cron(schedule) {
            p.push("schedule", e);
        }
    }
    let retries = raw.retries.unwrap_or(3);
    let backoff = raw.retry_backoff_seconds.unwrap_or(30.0);
    let retry_backoff = if backoff.is_finite() && (0.0..=86_400.0).contains(&backoff) {
        Duration::from_secs_f64(backoff)
    } else {
        p.push("retry_backoff_seconds", "must be a number of seconds from 0 to 86400");
        Duration::from_secs(30)
    };
    let timeout = raw.run_timeout_seconds.unwrap_or(DEFAULT_RUN_TIMEOUT_SECONDS);
    let run_timeout = if timeout.is_finite() && (0.0..=31_536_000.0).contains(&timeout) {
        (timeout > 0.0).then(|| Duration::from_secs_f64(timeout))
    } else {
        p.push("run_timeout_seconds", "must be a number of seconds from 0 (no limit) to 31536000");
        None
    };
    let timezone = match &raw.timezone {
        Some(t) => match parse_timezone(t) {
            Ok(tz) => Some(tz),
            Err(e) => {
                p.push("timezone", e);
                None
            }
        },
        None => None,
    };
    let catch_up = match raw.catch_up.as_deref().unwrap_or("latest") {
        "latest" => CatchUp::Latest,
        "all" => CatchUp::All,
        "none" => CatchUp::None,
        other => {
            p.push("catch_up", format!("{other:?} is not one of \"latest\", \"all\", \"none\""));
            CatchUp::Latest
        }
    };
    let models = raw.models.unwrap_or_else(|| vec!["*".into()]);
    if models.is_empty() {
        p.push("models", "lists no model; use [\"*\"] for all");
    }
    Pipeline {
        file: file.to_path_buf(),
        name,
        description: raw.description.unwrap_or_default(),
        schedule: raw.schedule,
        timezone,
        models,
        catch_up,
        ingest: raw.ingest.unwrap_or(true),
        retries,
        retry_backoff,
        run_timeout,
        report: raw.report.unwrap_or(false),
    }
}

/// A pipeline's run timeout unless its file says otherwise: 6 hours.
pub const DEFAULT_RUN_TIMEOUT_SECONDS: f64 = 21_600.0;

/// A standard 5-field cron expression (minute hour day-of-month month
/// day-of-week), checked by the parser the scheduler fires with.
pub fn check_cron(expr: &str) -> Result<(), String> {
    crate::scheduler::cron::CronSchedule::parse(expr, Tz::UTC).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> (Server, Vec<Problem>) {
        let raw: raw::RawServer = toml::from_str(text).expect("toml");
        let mut p = Problems {
            file: "tenure.toml".into(),
            list: Vec::new(),
        };
        let server = compile_server(Path::new("/etc/tenure"), raw, &mut p);
        (server, p.list)
    }

    #[test]
    fn server_defaults_ask_for_a_password_from_the_environment() {
        let (s, problems) = server("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.flight_listen, None, "Flight SQL is off unless asked for");
        assert_eq!(s.query_timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.max_rows, Some(1_000_000));
        assert_eq!(s.login_timeout, Some(Duration::from_secs(10)));
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(s.query_memory, Some(1024 * 1024 * 1024));
        match &s.auth {
            ServerAuth::Password { user, .. } => assert_eq!(user, "tenure"),
            other => panic!("{other:?}"),
        }
        // Without the variable only `tenure serve` fails, naming it.
        if std::env::var("TENURE_SERVER_PASSWORD").is_err() {
            assert!(s.problems.iter().any(|p| p.message.contains("TENURE_SERVER_PASSWORD")), "{:?}", s.problems);
        }
    }

    #[test]
    fn server_settings_are_checked_and_the_password_never_printed() {
        let (s, problems) = server(
            "listen = \"0.0.0.0:6000\"\npassword = \"hunter2\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nmax_rows = 0\nquery_timeout_seconds = 0\n\
             login_timeout_seconds = 0\nidle_timeout_seconds = 0\nquery_memory_mb = 0",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.max_rows, None);
        assert_eq!(s.query_timeout, None);
        assert_eq!((s.login_timeout, s.idle_timeout, s.query_memory), (None, None, None));
        let (set, _) = server("login_timeout_seconds = 2\nidle_timeout_seconds = 5\nquery_memory_mb = 64");
        assert_eq!(set.login_timeout, Some(Duration::from_secs(2)));
        assert_eq!(set.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(set.query_memory, Some(64 << 20));
        let (flight, _) = server("flight_listen = \"0.0.0.0:50051\"");
        assert_eq!(flight.flight_listen.map(|a| a.to_string()).as_deref(), Some("0.0.0.0:50051"));
        assert_eq!(s.tls.as_ref().map(|t| t.cert.clone()), Some(PathBuf::from("/etc/tenure/c.pem")));
        assert!(!format!("{s:?}").contains("hunter2"));
        for (text, key) in [
            ("listen = \"localhost\"", "server.listen"),
            ("flight_listen = \"50051\"", "server.flight_listen"),
            ("auth = \"md5\"", "server.auth"),
            ("tls_cert = \"c.pem\"", "server.tls_key"),
            ("auth = \"none\"\npassword = \"x\"", "server.password"),
            ("max_connections = 0", "server.max_connections"),
            ("query_memory_mb = 9223372036854775807", "server.query_memory_mb"),
        ] {
            let (_, problems) = server(text);
            assert!(problems.iter().any(|p| p.key == key), "{text}: {problems:?}");
        }
        assert!(toml::from_str::<raw::RawServer>("pasword = \"x\"").is_err(), "unknown keys are errors");
    }

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn shown(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.to_string()).collect()
    }

    /// `tenure validate` fixes everything in one pass: a wrong value, a key
    /// the file may not have and a value of the wrong type are each reported
    /// with their line, and the pipelines are still read.
    #[test]
    fn load_partial_reports_every_problem_with_its_line_and_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write(
            dir.path(),
            "config/tenure.toml",
            "[project]\npipelines_dir = \"../pipelines\"\nsql_dir = \"../sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n\n[reporting]\ntimezone = \"Mars/Base\"\ncurrancy = \"EUR\"\n\n[metrics.health]\nband_green = \"high\"\n",
        );
        write(dir.path(), "pipelines/daily.toml", "schedule = \"0 25 * * *\"\nretries = \"x\"\n");
        let partial = load_partial(&config, &Overrides::default());
        let file = config.display().to_string();
        let pipeline = dir.path().join("config/../pipelines/daily.toml").display().to_string();
        let shown = shown(&partial.problems);
        for expected in [
            format!("{file}:10: reporting.timezone: unknown timezone \"Mars/Base\""),
            format!("{file}:11: reporting.currancy: unknown field `currancy`"),
            format!("{file}:14: metrics.health.band_green: invalid type: string \"high\""),
            format!("{pipeline}:1: schedule: cron expression \"0 25 * * *\""),
            format!("{pipeline}:2: retries: invalid type: string \"x\""),
        ] {
            assert!(shown.iter().any(|p| p.starts_with(&expected)), "{expected}\nnot in\n{}", shown.join("\n"));
        }
        assert_eq!(shown.len(), 5, "{}", shown.join("\n"));
        let project = partial.project.expect("a project to check further");
        assert_eq!(project.config.timezone, Tz::UTC, "a placeholder for the unknown timezone");
        assert_eq!(project.pipelines.len(), 1);
        let err = load(&config, &Overrides::default()).expect_err("problems fail the load").to_string();
        assert_eq!(err.lines().count(), 5, "{err}");
    }

    /// `ingest.max_record_bytes` and `ingest.max_object_bytes`: defaults,
    /// values taken, and each bad value a problem on its line.
    #[test]
    fn run_timeouts_and_the_engine_memory_have_defaults_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = "[project]\npipelines_dir = \"../pipelines\"\nsql_dir = \"../sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n";
        let config = write(dir.path(), "config/tenure.toml", base);
        write(dir.path(), "pipelines/daily.toml", "");
        let project = load(&config, &Overrides::default()).expect("loads");
        assert_eq!(project.pipelines[0].run_timeout, Some(Duration::from_secs(21_600)));
        assert_eq!(project.config.engine_memory, crate::engine::default_memory_limit());

        write(dir.path(), "pipelines/daily.toml", "run_timeout_seconds = 0\n");
        write(dir.path(), "config/tenure.toml", &format!("{base}\n[engine]\nmemory_mb = 0\n"));
        let project = load(&config, &Overrides::default()).expect("loads");
        assert_eq!((project.pipelines[0].run_timeout, project.config.engine_memory), (None, None), "0 turns both off");

        write(dir.path(), "pipelines/daily.toml", "run_timeout_seconds = 90.5\n");
        write(dir.path(), "config/tenure.toml", &format!("{base}\n[engine]\nmemory_mb = 512\n"));
        let project = load(&config, &Overrides::default()).expect("loads");
        assert_eq!(project.pipelines[0].run_timeout, Some(Duration::from_secs_f64(90.5)));
        assert_eq!(project.config.engine_memory, Some(512 << 20));

        write(dir.path(), "pipelines/daily.toml", "run_timeout_seconds = -1\n");
        let shown = shown(&load_partial(&config, &Overrides::default()).problems);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].ends_with("pipelines/daily.toml:1: run_timeout_seconds: must be a number of seconds from 0 (no limit) to 31536000"), "{shown:?}");
    }

    #[test]
    fn engine_workers_are_urls_each_checked_on_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = "[project]\npipelines_dir = \"../pipelines\"\nsql_dir = \"../sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n";
        write(dir.path(), "pipelines/daily.toml", "");
        let config = write(dir.path(), "config/tenure.toml", base);
        assert!(load(&config, &Overrides::default()).expect("loads").config.engine_workers.is_empty(), "none by default");

        write(dir.path(), "config/tenure.toml", &format!("{base}\n[engine]\nworkers = [\"10.0.0.7:7171\", \"http://w2:7171\"]\n"));
        let workers = load(&config, &Overrides::default()).expect("loads").config.engine_workers;
        assert_eq!(workers.iter().map(|u| u.as_str()).collect::<Vec<_>>(), ["http://10.0.0.7:7171/", "http://w2:7171/"]);

        write(dir.path(), "config/tenure.toml", &format!("{base}\n[engine]\nworkers = [\"ftp://w1:21\"]\n"));
        let shown = shown(&load_partial(&config, &Overrides::default()).problems);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].contains("tenure.toml:10: engine.workers: \"ftp://w1:21\" is not a worker URL"), "{shown:?}");
    }

    #[test]
    fn ingest_limits_have_defaults_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = "[project]\npipelines_dir = \"../pipelines\"\nsql_dir = \"../sql\"\n\n[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n\n[ingest]\n";
        write(dir.path(), "pipelines/daily.toml", "");
        let config = write(dir.path(), "config/tenure.toml", base);
        let limits = load(&config, &Overrides::default()).expect("loads").config.ingest_limits;
        assert_eq!((limits.max_record_bytes, limits.max_object_bytes), (16 << 20, 16 << 30));

        write(dir.path(), "config/tenure.toml", &format!("{base}max_record_bytes = 1000\nmax_object_bytes = 5000\n"));
        let limits = load(&config, &Overrides::default()).expect("loads").config.ingest_limits;
        assert_eq!((limits.max_record_bytes, limits.max_object_bytes), (1000, 5000));

        write(dir.path(), "config/tenure.toml", &format!("{base}max_record_bytes = 0\nmax_object_bytes = -1\n"));
        let file = config.display().to_string();
        let shown = shown(&load_partial(&config, &Overrides::default()).problems);
        assert_eq!(
            shown,
            [
                format!("{file}:10: ingest.max_record_bytes: 0 is not a number of bytes from 1 to 1073741824"),
                format!("{file}:11: ingest.max_object_bytes: -1 is not a number of bytes from 1 to 9223372036854775807"),
            ]
        );
        write(dir.path(), "config/tenure.toml", &format!("{base}max_record_bytes = 1073741825\n"));
        assert_eq!(load_partial(&config, &Overrides::default()).problems.len(), 1);
    }

    #[test]
    fn load_partial_stops_where_the_folders_are_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write(dir.path(), "config/tenure.toml", "[storage]\nraw = \"raw\"\n\n[reporting\ncurrency = \"EUR\"\n");
        let partial = load_partial(&config, &Overrides::default());
        assert!(partial.project.is_none());
        assert_eq!(partial.problems.len(), 1, "{:?}", partial.problems);
        assert_eq!(partial.problems[0].line, Some(4), "{}", partial.problems[0]);

        write(dir.path(), "config/tenure.toml", "[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n\n[project]\nsql_dri = \"sql\"\n");
        let partial = load_partial(&config, &Overrides::default());
        assert!(partial.project.is_none(), "a typo in [project] leaves the SQL folder unknown");
        assert_eq!(shown(&partial.problems).len(), 1, "{:?}", partial.problems);
        assert_eq!((partial.problems[0].line, partial.problems[0].key.as_str()), (Some(6), "project.sql_dri"));
    }

    #[test]
    fn vacuum_settings_have_defaults_and_bad_values_name_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "pipelines/daily.toml", "schedule = \"0 6 * * *\"\n");
        let storage = "[storage]\nraw = \"raw\"\nwarehouse = \"wh\"\n";
        let config = write(dir.path(), "config/tenure.toml", storage);
        let project = load(&config, &Overrides::default()).expect("defaults load");
        let v = &project.config.vacuum;
        assert_eq!(v.schedule.as_deref(), Some(DEFAULT_VACUUM_SCHEDULE));
        assert_eq!((v.retain, v.runs_retain), (Duration::from_secs(168 * 3600), Duration::from_secs(400 * 86_400)));

        let text = format!("{storage}\n[vacuum]\nschedule = \"off\"\nretain_hours = 2.5\n\n[runs]\nretain_days = 30\n");
        let config = write(dir.path(), "config/tenure.toml", &text);
        let v = load(&config, &Overrides::default()).expect("load").config.vacuum;
        assert_eq!((v.schedule, v.retain, v.runs_retain), (None, Duration::from_secs(9000), Duration::from_secs(30 * 86_400)));

        let text = format!("{storage}\n[vacuum]\nschedule = \"0 4 * *\"\nretain_hours = 0\n\n[runs]\nretain_days = -1\n");
        let config = write(dir.path(), "config/tenure.toml", &text);
        let file = config.display().to_string();
        let shown = shown(&load_partial(&config, &Overrides::default()).problems);
        for expected in [
            format!("{file}:6: vacuum.schedule: cron expression \"0 4 * *\" has 4 field(s)"),
            format!("{file}:7: vacuum.retain_hours: must be a number of hours from 1"),
            format!("{file}:10: runs.retain_days: must be a number of days from 1"),
        ] {
            assert!(shown.iter().any(|p| p.starts_with(&expected)), "{expected}\nnot in\n{}", shown.join("\n"));
        }
        assert_eq!(shown.len(), 3, "{}", shown.join("\n"));
    }

    #[test]
    fn a_problem_found_later_is_located_by_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "p.toml", "# daily\nname = \"daily\"\nmodels = [\n  \"x\",\n]\n\n[a.b]\nc = 1\n");
        assert_eq!(line_of_key(&file, "name"), Some(2));
        assert_eq!(line_of_key(&file, "models"), Some(3));
        assert_eq!(line_of_key(&file, "a.b.c"), Some(8));
        assert_eq!(line_of_key(&file, "a.b.missing"), Some(7), "the nearest table");
        assert_eq!(line_of_key(&file, "--timezone"), None);
    }
}
