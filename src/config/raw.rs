//! Raw serde types of `config/tenure.toml` and `pipelines/*.toml`: exactly what
//! the files may say, nothing validated yet. Every struct denies unknown fields
//! so that a typo is an error, never a silent default. The doc comments are
//! the config reference (the README repeats them).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `config/tenure.toml`: where data lives and how metrics are computed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub project: RawProject,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub reporting: RawReporting,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub scheduler: RawScheduler,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub vacuum: RawVacuum,
    #[serde(default)]
    pub runs: RawRuns,
    #[serde(default)]
    pub finance: RawFinance,
}

/// `[finance]`: the month close (METRICS.md §12).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFinance {
    /// A month closes at the first publishing run whose as-of date is at
    /// least this many days after the month's last day (which is day 0).
    /// Default 3.
    pub close_after_days: Option<i64>,
}

/// `[engine]`: how the SQL models of a run are executed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Memory the models of one run may hold at once, in MiB; sorts,
    /// aggregates and joins that can spill to temporary files do so
    /// rather than exceed it, and a model that cannot fails the run with
    /// a clear error instead of the process being killed. Default: 512
    /// (or 80 % of the machine's or the container's memory, where less).
    /// The tables the models build are held besides it. 0: no limit.
    pub memory_mb: Option<u64>,
    /// `tenure worker` processes the models run on (`http://HOST:PORT`,
    /// `--workers` overrides): each model's plan is cut into stages whose
    /// tasks run on them, round robin. Planning, fits, checks and Delta
    /// reads and writes stay in the run. Default: none (the models run in
    /// the run's process).
    pub workers: Option<Vec<String>>,
}

/// `[vacuum]`: `tenure vacuum` deletes data files, log entries, state, key
/// segments and run reports that no table version of the retention window
/// and no later run needs; `tenure schedule` runs it after a successful run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVacuum {
    /// When `tenure schedule` vacuums: after the first successful run once a
    /// fire time of this cron expression (5 fields, read in the reporting
    /// timezone) has passed since the last vacuum; `"off"`: never. Default
    /// `"0 4 * * *"` (daily).
    pub schedule: Option<String>,
    /// The retention window in hours: nothing younger is deleted, and time
    /// travel to any instant of the window keeps working. It is also the
    /// safety margin for runs in progress, so keep it above the longest run.
    /// At least 1; `--retain-hours` overrides it. Default 168 (a week).
    pub retain_hours: Option<f64>,
}

/// `[runs]`: the run reports under `<warehouse>/_runs/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuns {
    /// `tenure vacuum` deletes run reports older than this many days, except
    /// the latest succeeded and the latest publishing run of each pipeline.
    /// Default 400.
    pub retain_days: Option<f64>,
}

/// `[scheduler]`: how `tenure schedule` runs the pipelines.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    /// Address of the health endpoint (`/healthz`, `/metrics`). Default
    /// `127.0.0.1:9464`; `--health-listen` overrides it.
    pub health_listen: Option<String>,
    /// On SIGTERM or SIGINT, seconds a running run may take to finish before
    /// it is aborted (nothing half-published). Default 300.
    pub grace_period_seconds: Option<f64>,
    /// Seconds a pipeline's lease lasts without renewal; a crashed scheduler
    /// blocks others at most this long (plus 5 s for clock skew). Renewed
    /// every third of it while a run is in progress. Default 60.
    pub lease_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// Folder of pipeline definitions, relative to the config file. Default `../pipelines`.
    pub pipelines_dir: Option<String>,
    /// Folder of SQL models, relative to the config file. Default `../sql`.
    pub sql_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// URL (or local path, relative to the config file) of the raw event prefix.
    pub raw: Option<String>,
    /// URL (or local path, relative to the config file) of the warehouse: the
    /// Delta tables, run reports and ingest manifest live below it.
    pub warehouse: Option<String>,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Object store region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP to the endpoint (test servers only).
    pub allow_http: Option<bool>,
    /// Times a failed storage request (timeout, connection reset, 5xx) is
    /// retried, with exponential backoff. Default 10.
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this many seconds. Default 180.
    pub retry_timeout_seconds: Option<f64>,
    /// Further object_store options by their names (`aws_access_key_id`,
    /// `google_service_account`, `azure_storage_account_name`, ...). Values may
    /// use `${VAR}` to read an environment variable; secrets belong there.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReporting {
    /// IANA timezone of local dates and calendar months. Default `UTC`.
    pub timezone: Option<String>,
    /// ISO 4217 reporting currency; events in another currency are rejected. Default `USD`.
    pub currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Fail the run (committing nothing) when more than this fraction of the
    /// rows read is rejected, or of the objects read is unreadable. 0..1;
    /// default 1.0, which never fails.
    pub max_reject_rate: Option<f64>,
    /// Objects decoded in parallel. Default: the number of cores.
    pub parallelism: Option<usize>,
    /// The longest JSON Lines line (line break excluded) or CSV record, in
    /// bytes of input, and the most text one Parquet row may hold. A longer
    /// one is rejected as `malformed`, its `raw` cut to its first 4 KiB and
    /// its length in `detail`; it is never held in memory whole. 1 to 2^30;
    /// default 16777216 (16 MiB).
    pub max_record_bytes: Option<i64>,
    /// The most bytes one object may hold once decompressed (for Parquet: its
    /// data uncompressed, as its footer states). A larger object is
    /// unreadable, with that reason, and is not read past the limit. At least
    /// 1; default 17179869184 (16 GiB).
    pub max_object_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Days of the "recent succeeded payment" activity window (METRICS.md §3). Default 90.
    pub activity_window_days: Option<i64>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub clv: RawClv,
    #[serde(default)]
    pub churn: RawChurn,
}

/// `[metrics.clv]`: the BG/NBD and Gamma-Gamma lifetime value (METRICS.md §14).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClv {
    /// Days in the models' time unit (recency, age). Default 7 (weeks).
    pub time_unit_days: Option<i64>,
    /// Days ahead `expected_purchases` and `clv` look. Default 365.
    pub horizon_days: Option<i64>,
}

/// `[metrics.churn]`: the learned churn model (METRICS.md §13).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChurn {
    /// Strength of the L2 penalty of the logistic regression, as
    /// scikit-learn's 1/C: the fit minimises the summed log-loss plus
    /// l2/2 times the squared coefficients (of standardised features; the
    /// intercept is not penalised). Default 1.
    pub l2: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Component weights (METRICS.md §7); need not sum to 1.
    #[serde(default)]
    pub weights: RawWeights,
    /// Distinct active days in 30 days that score 100 on `usage`. Default 20.
    pub target_active_days: Option<f64>,
    /// Distinct features in 30 days that score 100 on `breadth`. Default 5.
    pub target_features: Option<f64>,
    /// Lowest score of the green band. Default 70.
    pub band_green: Option<f64>,
    /// Lowest score of the yellow band. Default 40.
    pub band_yellow: Option<f64>,
    /// A drop of at least this many points lists a customer as at risk. Default 15.
    pub score_drop_threshold: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeights {
    pub usage: Option<f64>,
    pub breadth: Option<f64>,
    pub trend: Option<f64>,
    pub sentiment: Option<f64>,
    pub support: Option<f64>,
    pub billing: Option<f64>,
    pub email: Option<f64>,
}

/// `[server]`: `tenure serve`, the PostgreSQL-protocol server BI tools and
/// `psql` connect to. It only ever reads the published tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address and port to listen on. Default `127.0.0.1:5433` (this machine
    /// only); `0.0.0.0:5433` for every interface.
    pub listen: Option<String>,
    /// Address and port of Arrow Flight SQL, served beside the PostgreSQL
    /// protocol with the same password, TLS and limits (`grpc://` or, with
    /// TLS, `grpc+tls://` clients such as ADBC). Default: off.
    pub flight_listen: Option<String>,
    /// `password` (SCRAM-SHA-256: the password never crosses the network) or
    /// `none` (anyone who can connect may query; only on a loopback address,
    /// for local demos). Default `password`.
    pub auth: Option<String>,
    /// The user name clients log in with. Default `tenure`.
    pub user: Option<String>,
    /// The password. Put it in the environment, not in the file:
    /// `"${TENURE_SERVER_PASSWORD}"`, which is also the default.
    pub password: Option<String>,
    /// PEM certificate (chain) for TLS, relative to the config file. With
    /// `tls_key` set too, clients must connect with TLS (`sslmode=require`).
    pub tls_cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<String>,
    /// A query still running after this many seconds is cancelled (SQLSTATE
    /// 57014). 0: no limit. Default 300.
    pub query_timeout_seconds: Option<u64>,
    /// A query returning more rows than this fails (SQLSTATE 54000) instead
    /// of streaming them; add a `limit` or aggregate. 0: no limit. Default 1000000.
    pub max_rows: Option<u64>,
    /// Clients logged in at once; a login beyond it is refused (SQLSTATE
    /// 53300). Connections still logging in do not count: they have their
    /// own bound (see `login_timeout_seconds`). Default 64.
    pub max_connections: Option<usize>,
    /// A connection must complete its login (TLS, startup, password) within
    /// this many seconds of connecting, or it is closed. At most 1024
    /// connections may be logging in at once; when another arrives, the one
    /// that has been logging in longest is closed, so idle or slow sockets
    /// can delay but not lock out real clients. 0: no limit. Default 10.
    pub login_timeout_seconds: Option<u64>,
    /// A logged-in session that runs nothing for this many seconds is closed
    /// (FATAL, SQLSTATE 57P05, as PostgreSQL's `idle_session_timeout`). A
    /// query in progress is never idle. 0: no limit. Default 3600.
    pub idle_timeout_seconds: Option<u64>,
    /// Memory one query may hold, in MiB (each query has its own pool; the
    /// server as a whole may use up to `max_connections` times this). Sorts,
    /// joins and aggregates that can spill to temporary files do so within
    /// it; a query that still needs more fails with SQLSTATE 53200
    /// (out_of_memory) and the server keeps serving. 0: no limit. Default 1024.
    pub query_memory_mb: Option<u64>,
}

/// `pipelines/<name>.toml`: what runs, and when.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Unique pipeline name (defaults to the file stem).
    pub name: Option<String>,
    pub description: Option<String>,
    /// Cron expression for `tenure schedule` (5 fields: minute hour
    /// day-of-month month day-of-week, e.g. `"0 6 * * *"`). No schedule: the
    /// pipeline only runs when asked.
    pub schedule: Option<String>,
    /// IANA timezone the schedule is read in. Default: the reporting timezone.
    pub timezone: Option<String>,
    /// Models to build: names, `layer/*` (e.g. `marts/*`) or `*`. Their
    /// upstream models are built too. Default `["*"]`.
    pub models: Option<Vec<String>>,
    /// Missed schedules after downtime: `latest`, `all` or `none`. Default `latest`.
    pub catch_up: Option<String>,
    /// Whether this pipeline ingests new raw objects before building. Default true.
    pub ingest: Option<bool>,
    /// Scheduled runs that fail with a transient error (storage, network) are
    /// tried again this many times; configuration, SQL and check failures
    /// never are. Default 3.
    pub retries: Option<u32>,
    /// Wait before the first retry, in seconds; it doubles with every retry
    /// (at most an hour) and is randomly shortened by up to half. Default 30.
    pub retry_backoff_seconds: Option<f64>,
    /// A run still going after this many seconds is stopped before it
    /// publishes anything (its lease released, its report saying why); a
    /// run already publishing finishes. Default 21600 (6 h); 0: no limit.
    pub run_timeout_seconds: Option<f64>,
    /// `tenure schedule` writes the finance report (`tenure report`) after
    /// each run that publishes, to `<warehouse>/reports/<run_id>/` and
    /// `<warehouse>/reports/latest/`. Default false.
    pub report: Option<bool>,
}
