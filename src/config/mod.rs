//! Configuration: `config/tenure.toml` (where and how) and `pipelines/*.toml`
//! (what and when). Raw serde types are compiled into validated types;
//! [`load`] reports every problem at once, each naming file and key. Nothing
//! here touches storage or runs anything.

pub mod raw;

use chrono_tz::Tz;
use raw::{RawConfig, RawPipeline};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration: file, key, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found; displayed one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        write!(f, "{}", lines.join("\n"))
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
    pub activity_window_days: i64,
    pub health: Health,
}

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
    pub fn pipeline(&self, name: Option<&str>) -> Result<&Pipeline, String> {
        match name {
            Some(n) => self.pipelines.iter().find(|p| p.name == n).ok_or_else(|| {
                let known: Vec<&str> = self.pipelines.iter().map(|p| p.name.as_str()).collect();
                format!(
                    "unknown pipeline {n:?}; pipelines in {}: {}",
                    self.config.pipelines_dir.display(),
                    known.join(", ")
                )
            }),
            None => match self.pipelines.as_slice() {
                [only] => Ok(only),
                many => many.iter().find(|p| p.name == "daily").ok_or_else(|| {
                    format!(
                        "name a pipeline: {} defines {} pipelines and none is called \"daily\"",
                        self.config.pipelines_dir.display(),
                        many.len()
                    )
                }),
            },
        }
    }
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
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// Load and compile the config file and every pipeline file.
pub fn load(config_file: &Path, overrides: &Overrides) -> Result<Project, ConfigError> {
    let mut problems = Vec::new();
    let config = match read_toml::<RawConfig>(config_file) {
        Ok(raw) => {
            let mut p = Problems {
                file: config_file.display().to_string(),
                list: Vec::new(),
            };
            let config = compile_config(config_file, raw, overrides, &mut p);
            problems.extend(p.list);
            config
        }
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let mut pipelines = Vec::new();
    if let Some(config) = &config {
        match std::fs::read_dir(&config.pipelines_dir) {
            Err(e) => problems.push(Problem {
                file: config.pipelines_dir.display().to_string(),
                key: String::new(),
                message: format!("cannot read the pipelines folder ({e}); set project.pipelines_dir in {}", config_file.display()),
            }),
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                files.sort();
                for file in files {
                    match read_toml::<RawPipeline>(&file) {
                        Err(problem) => problems.push(problem),
                        Ok(raw) => {
                            let mut p = Problems {
                                file: file.display().to_string(),
                                list: Vec::new(),
                            };
                            if let Some(pipeline) = compile_pipeline(&file, raw, &mut p) {
                                if pipelines.iter().any(|q: &Pipeline| q.name == pipeline.name) {
                                    p.push("name", format!("pipeline name {:?} is used by another file too", pipeline.name));
                                }
                                pipelines.push(pipeline);
                            }
                            problems.extend(p.list);
                        }
                    }
                }
                if pipelines.is_empty() && problems.is_empty() {
                    problems.push(Problem {
                        file: config.pipelines_dir.display().to_string(),
                        key: String::new(),
                        message: "no pipeline defined; add a .toml file here".into(),
                    });
                }
            }
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok(Project { config, pipelines }),
        _ => Err(ConfigError(problems)),
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, Problem> {
    let text = std::fs::read_to_string(file).map_err(|e| Problem {
        file: file.display().to_string(),
        key: String::new(),
        message: format!("cannot read ({e})"),
    })?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        Problem {
            file: match line {
                Some(l) => format!("{}:{l}", file.display()),
                None => file.display().to_string(),
            },
            key: String::new(),
            message: e.message().to_string(),
        }
    })
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

fn compile_config(file: &Path, raw: RawConfig, overrides: &Overrides, p: &mut Problems) -> Option<Config> {
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
    let timezone = parse_timezone(&tz_name)
        .map_err(|e| p.push(if overrides.timezone.is_some() { "--timezone" } else { "reporting.timezone" }, e))
        .ok();
    let currency_code = overrides
        .currency
        .clone()
        .or(raw.reporting.currency)
        .unwrap_or_else(|| "USD".into());
    let currency = parse_currency(&currency_code)
        .map_err(|e| p.push(if overrides.currency.is_some() { "--currency" } else { "reporting.currency" }, e))
        .ok();

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
    let activity_window_days = raw.metrics.activity_window_days.unwrap_or(90);
    if activity_window_days < 1 {
        p.push("metrics.activity_window_days", "must be at least 1");
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
        options,
    };
    if let Err(e) = crate::storage::check_options(&storage) {
        p.push("storage.options", e);
    }

    Some(Config {
        file: file.to_path_buf(),
        pipelines_dir: dir(&raw.project.pipelines_dir, "../pipelines"),
        sql_dir: dir(&raw.project.sql_dir, "../sql"),
        raw: raw_url,
        warehouse,
        storage,
        timezone: timezone?,
        currency: currency?,
        max_reject_rate,
        parallelism: parallelism.max(1),
        activity_window_days,
        health,
    })
}

fn compile_pipeline(file: &Path, raw: RawPipeline, p: &mut Problems) -> Option<Pipeline> {
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
    Some(Pipeline {
        file: file.to_path_buf(),
        name,
        description: raw.description.unwrap_or_default(),
        schedule: raw.schedule,
        timezone,
        models,
        catch_up,
        ingest: raw.ingest.unwrap_or(true),
    })
}

/// A cron expression of 5 fields (or 6 with seconds), each made of `*`,
/// numbers, ranges, lists and steps, or names of months and weekdays.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if !(5..=6).contains(&fields.len()) {
        return Err(format!(
            "cron expression {expr:?} has {} fields; use 5 (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    let ok = fields.iter().all(|f| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("cron expression {expr:?} has characters cron does not use"))
    }
}
