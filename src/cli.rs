//! The command line: subcommands and flags (clap derive), and what each one
//! prints. Every command returns a `Result`; `main` turns it into an exit code.

use crate::config::{self, Overrides, Project};
use crate::pipeline::{self, Clock, RunOptions, SystemClock};
use anyhow::{anyhow, bail, Context};
use chrono::{Datelike, NaiveDate};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "tenure", version, about = "Raw customer events in, retention metrics (MRR, NDR, cohorts, health) out, as Delta tables")]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = "config/tenure.toml", env = "TENURE_CONFIG")]
    pub config: PathBuf,
    /// Log format: `text` for people, `json` for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log detail (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest new raw objects, build the models, check and publish the marts.
    Run(RunArgs),
    /// Parse the config and pipelines, build the model graph and plan every SQL model, without running anything.
    Validate,
    /// Generate a realistic sample dataset and run the default pipeline on it, locally.
    Demo(DemoArgs),
    /// Run read-only SQL over the published tables and print the result.
    Query(QueryArgs),
    /// Run a pipeline as of each date of a range, in order (resumable).
    Backfill(BackfillArgs),
    /// List recent runs, or show one run's report.
    Runs(RunsArgs),
    /// Run the pipelines on their cron schedules until SIGTERM/SIGINT (catch-up, retries, no overlap).
    Schedule(ScheduleArgs),
    /// Serve the published tables, read-only, over the PostgreSQL protocol (psql, BI tools) until SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Measure speed and memory of full runs on a generated dataset (optionally against a DuckDB peer); prints figures.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Address and port to listen on (port 0: any free port); overrides server.listen.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub locations: Locations,
    /// Address of the health endpoint (`/healthz`, `/metrics`); overrides scheduler.health_listen.
    #[arg(long)]
    pub health_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Pipeline to run (default: the only one, or `daily`).
    pub pipeline: Option<String>,
    #[command(flatten)]
    pub locations: Locations,
    /// First as-of date.
    #[arg(long, value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last as-of date (inclusive).
    #[arg(long, value_parser = parse_date)]
    pub to: NaiveDate,
    /// `day`: every date; `month`: the last day of every month (and `--to`).
    #[arg(long, value_enum, default_value_t = Every::Day)]
    pub every: Every,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Every {
    Day,
    Month,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// `show RUN_ID` prints one report; otherwise the pipeline to list (default: all).
    pub args: Vec<String>,
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// How many recent runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Locations {
    /// Raw event prefix (URL or local path); overrides storage.raw.
    #[arg(long)]
    pub raw: Option<String>,
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Reporting timezone (IANA name); overrides reporting.timezone.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Reporting currency (ISO 4217); overrides reporting.currency.
    #[arg(long)]
    pub currency: Option<String>,
}

impl Locations {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            raw: self.raw.clone(),
            warehouse: self.warehouse.clone(),
            timezone: self.timezone.clone(),
            currency: self.currency.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline to run (default: the only one, or `daily`).
    pub pipeline: Option<String>,
    #[command(flatten)]
    pub locations: Locations,
    /// Local date the metrics are computed as of (default: today in the reporting timezone).
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// Recompute every row of every mart, keeping nothing of earlier runs
    /// (by default a run keeps the published rows of months nothing changed).
    #[arg(long)]
    pub full_refresh: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the sample raw data (`<dir>/raw`) and warehouse (`<dir>/warehouse`).
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Number of sample customers.
    #[arg(long, default_value_t = 400)]
    pub customers: usize,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL (one read-only statement). Tables: the marts, `events`, `rejects`.
    pub sql: String,
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{s:?} is not a date of the form YYYY-MM-DD"))
}

fn load(cli: &Cli, overrides: &Overrides) -> anyhow::Result<Project> {
    config::load(&config_file(&cli.config), overrides).map_err(|e| anyhow!("{e}"))
}

/// The config file to read: as given; but when the default relative path does
/// not exist here (tenure started from another folder), the project's own
/// config next to the sources this binary was built from.
fn config_file(given: &std::path::Path) -> PathBuf {
    let default = std::path::Path::new("config/tenure.toml");
    if given == default && !given.exists() {
        let built_from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
        if built_from.exists() {
            return built_from;
        }
    }
    given.to_path_buf()
}

/// Run the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Run(args) => {
            let project = load(&cli, &args.locations.overrides())?;
            let opts = RunOptions {
                pipeline: args.pipeline.clone(),
                as_of: args.as_of,
                trigger: "manual".into(),
                progress: is_terminal(),
                full_refresh: args.full_refresh,
                ..Default::default()
            };
            run_and_print(&project, &opts, &SystemClock).await
        }
        Command::Validate => validate(&cli).await,
        Command::Demo(args) => demo(&cli, args).await,
        Command::Query(args) => {
            let overrides = Overrides {
                warehouse: args.warehouse.clone(),
                raw: Some(String::new()),
                ..Default::default()
            };
            let project = load(&cli, &overrides)?;
            crate::query::run_and_print(&project.config, &args.sql, args.format).await
        }
        Command::Backfill(args) => backfill(&cli, args).await,
        Command::Runs(args) => runs(&cli, args).await,
        Command::Schedule(args) => {
            let project = load(&cli, &args.locations.overrides())?;
            crate::scheduler::serve(&project, args.health_listen).await?;
            Ok(())
        }
        Command::Serve(args) => {
            let overrides = Overrides { warehouse: args.warehouse.clone(), raw: Some(String::new()), ..Default::default() };
            let server = crate::serve::Server::bind(&load(&cli, &overrides)?.config, args.listen).await?;
            println!("listening on {}", server.local_addr());
            Ok(server.run(crate::serve::shutdown_signal()).await?)
        }
        Command::Bench(args) => crate::bench::run(&config_file(&cli.config), args).await,
    }
}

/// The as-of dates of a backfill, in order.
pub fn backfill_dates(from: NaiveDate, to: NaiveDate, every: Every) -> Vec<NaiveDate> {
    let mut dates = Vec::new();
    let mut d = from;
    while d <= to {
        let next = d.succ_opt().unwrap_or(d);
        let month_end = next.month0() != d.month0() || next == d;
        if every == Every::Day || month_end || d == to {
            dates.push(d);
        }
        if next == d {
            break;
        }
        d = next;
    }
    dates
}

async fn backfill(cli: &Cli, args: &BackfillArgs) -> anyhow::Result<()> {
    if args.from > args.to {
        bail!("--from {} is after --to {}; give the range in order", args.from, args.to);
    }
    let project = load(cli, &args.locations.overrides())?;
    let pipeline = project.pipeline(args.pipeline.as_deref()).map_err(|e| anyhow!(e))?.clone();
    let dates = backfill_dates(args.from, args.to, args.every);
    let storage = crate::storage::Storage::new(project.config.storage.clone());
    let warehouse = storage.location(&project.config.warehouse)?;
    let pb = if is_terminal() { indicatif::ProgressBar::new(dates.len() as u64) } else { indicatif::ProgressBar::hidden() };
    pb.set_message("backfill");
    let mut ran = 0;
    let mut skipped = 0;
    // Ingest new raw objects once, first; every date then builds from them.
    if pipeline.ingest {
        let opts = RunOptions {
            pipeline: Some(pipeline.name.clone()),
            as_of: Some(args.from),
            trigger: "backfill".into(),
            progress: is_terminal(),
            ingest_only: true,
            ..Default::default()
        };
        let outcome = with_lease(&project, opts.pipeline.as_deref(), &SystemClock, async {
            Ok(pipeline::run(&project, &opts, &SystemClock).await?)
        })
        .await?;
        println!("{}  ingest  {}  {:.2}s", outcome.report.run_id, outcome.report.status, outcome.report.seconds);
        if let Some(e) = outcome.error {
            return Err(anyhow::Error::new(e).context("backfill stopped at its ingest; re-run the same command to resume"));
        }
    }
    let done = CompletedBackfills::read(&project, &pipeline, &storage, &warehouse).await?;
    for date in &dates {
        let opts = RunOptions {
            pipeline: Some(pipeline.name.clone()),
            as_of: Some(*date),
            trigger: "backfill".into(),
            progress: false,
            skip_ingest: true,
            ingest_only: false,
            full_refresh: false,
        };
        if done.contains(&project, *date) {
            skipped += 1;
            pb.inc(1);
            continue;
        }
        let outcome = with_lease(&project, opts.pipeline.as_deref(), &SystemClock, async {
            Ok(pipeline::run(&project, &opts, &SystemClock).await?)
        })
        .await?;
        pb.inc(1);
        ran += 1;
        println!("{}  as of {}  {}  {:.2}s", outcome.report.run_id, date, outcome.report.status, outcome.report.seconds);
        if let Some(e) = outcome.error {
            pb.finish_and_clear();
            return Err(anyhow::Error::new(e).context(format!("backfill stopped at {date}; re-run the same command to resume")));
        }
    }
    pb.finish_and_clear();
    println!("backfill {} → {}: {} run(s), {} already complete with the same inputs", args.from, args.to, ran, skipped);
    Ok(())
}

/// What a backfill needs to skip dates already done: the inputs a run would
/// have now (the `events` version does not move during a backfill, which
/// ingests once before its dates), and the succeeded runs of the pipeline.
/// Read once per backfill, not once per date.
struct CompletedBackfills {
    events_version: i64,
    models: Vec<crate::catalog::Model>,
    /// (as-of date, inputs fingerprint) of succeeded runs.
    runs: std::collections::HashSet<(String, String)>,
}

impl CompletedBackfills {
    async fn read(
        project: &Project,
        pipeline: &config::Pipeline,
        storage: &crate::storage::Storage,
        warehouse: &crate::storage::Location,
    ) -> anyhow::Result<Self> {
        let catalog = crate::catalog::Catalog::load(&project.config.sql_dir)?;
        let models = catalog.select(&pipeline.models).map_err(|e| anyhow!(e))?.into_iter().cloned().collect();
        let events = storage.delta_table(&warehouse.join("events")).await?;
        let runs = pipeline::history::list(warehouse)
            .await?
            .into_iter()
            .filter(|r| r.pipeline == pipeline.name && r.status == "succeeded")
            .filter_map(|r| Some((r.as_of, r.inputs?)))
            .collect();
        Ok(CompletedBackfills {
            events_version: events.version().unwrap_or(0) as i64,
            models,
            runs,
        })
    }

    /// Whether a succeeded run as of `date` used the inputs a run now would.
    fn contains(&self, project: &Project, date: NaiveDate) -> bool {
        let params = crate::engine::Params::from_config(&project.config, date);
        let models: Vec<&crate::catalog::Model> = self.models.iter().collect();
        let inputs = pipeline::inputs_fingerprint(self.events_version, &models, &params);
        self.runs.contains(&(date.to_string(), inputs))
    }
}

async fn runs(cli: &Cli, args: &RunsArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        warehouse: args.warehouse.clone(),
        raw: Some(String::new()),
        ..Default::default()
    };
    let project = load(cli, &overrides)?;
    let storage = crate::storage::Storage::new(project.config.storage.clone());
    let warehouse = storage.location(&project.config.warehouse)?;
    if let [cmd, run_id] = args.args.as_slice() {
        if cmd == "show" {
            let report = pipeline::history::show(&warehouse, run_id).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
    }
    let pipeline_filter = match args.args.as_slice() {
        [] => None,
        [p] => Some(p.clone()),
        _ => bail!("usage: tenure runs [PIPELINE] [--limit N] | tenure runs show RUN_ID"),
    };
    let all = pipeline::history::list(&warehouse).await?;
    let selected: Vec<_> = all
        .iter()
        .filter(|r| pipeline_filter.as_ref().is_none_or(|p| &r.pipeline == p))
        .collect();
    let start = selected.len().saturating_sub(args.limit);
    println!("{:<30} {:<12} {:<10} {:<11} {:<10} {:>9} {:>10}", "RUN", "PIPELINE", "TRIGGER", "AS OF", "STATUS", "SECONDS", "ACCEPTED");
    for r in selected[start..].iter().rev() {
        println!(
            "{:<30} {:<12} {:<10} {:<11} {:<10} {:>9.2} {:>10}",
            r.run_id, r.pipeline, r.trigger, r.as_of, r.status, r.seconds, r.accepted
        );
        if let Some(e) = r.error.as_ref().and_then(|e| e.first()) {
            println!("    error: {e}");
        }
    }
    Ok(())
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Run `work` while holding the pipeline's lease (the one `tenure schedule`
/// takes), renewing it, so that no two runs of one pipeline overlap, whoever
/// started them.
async fn with_lease<T>(
    project: &Project,
    pipeline: Option<&str>,
    clock: &dyn Clock,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use crate::scheduler::lease::{holder_id, Acquire, LeaseStore, Renew};
    let name = project.pipeline(pipeline).map_err(|e| anyhow!(e))?.name.clone();
    let storage = crate::storage::Storage::new(project.config.storage.clone());
    let warehouse = storage.location(&project.config.warehouse)?;
    let ttl = project.config.scheduler.lease_ttl;
    let store = LeaseStore::new(&warehouse, &name, &holder_id(), ttl);
    let mut lease = match store.try_acquire(clock.now()).await? {
        Acquire::Held(lease) => lease,
        Acquire::Busy { holder, expires_at } => bail!(
            "pipeline {name:?} is running elsewhere ({holder}, lease until {expires_at}); try again when it has finished"
        ),
    };
    let work = work;
    tokio::pin!(work);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    let result = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => match store.renew(&mut lease, clock.now()).await {
                Renew::Renewed => {}
                Renew::Failed(e) => tracing::warn!(pipeline = %name, error = %e, "lease renewal failed; retrying"),
                Renew::Lost { holder } => bail!("pipeline {name:?}: lost the run lease to {holder}; the run was stopped"),
            },
        }
    };
    if let Err(e) = store.release(lease, clock.now(), None, None).await {
        tracing::warn!(pipeline = %name, error = %e, "lease not released; it expires by itself");
    }
    result
}

async fn run_and_print(project: &Project, opts: &RunOptions, clock: &dyn Clock) -> anyhow::Result<()> {
    let outcome = with_lease(project, opts.pipeline.as_deref(), clock, async {
        Ok(pipeline::run(project, opts, clock).await?)
    })
    .await?;
    print_summary(&outcome);
    match outcome.error {
        None => Ok(()),
        Some(e) => Err(anyhow::Error::new(e).context(format!("run {} failed", outcome.report.run_id))),
    }
}

fn print_summary(outcome: &pipeline::Outcome) {
    let r = &outcome.report;
    println!("run {}  pipeline {}  as of {} ({})  {}", r.run_id, r.pipeline, r.as_of, r.timezone, r.status);
    if let Some(i) = &r.ingest {
        let t = &i.totals;
        println!(
            "ingest   objects: {} new, {} already ingested, {} changed, {} unreadable, {} skipped, {} ignored",
            t.objects_ingested, t.objects_already_ingested, t.objects_changed, t.objects_unreadable, t.objects_skipped, t.objects_ignored
        );
        println!(
            "         rows: {} read = {} accepted + {} rejected + {} duplicates ({} conflicting)",
            t.rows_read, t.accepted, t.rejected, t.duplicates, t.conflicting_duplicates
        );
        if !i.rejects_by_reason.is_empty() {
            let reasons: Vec<String> = i.rejects_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("         rejects: {}", reasons.join(", "));
        }
        for u in &i.unreadable_objects {
            println!("         unreadable: {} ({})", u.path, u.error);
        }
        for c in &i.changed_objects {
            println!("         changed after ingest (not re-read): {}", c.path);
        }
    }
    for t in &r.tables {
        println!("table    {:<24} version {:<4} rows {}", t.name, t.version, t.rows);
    }
    if let Some(p) = &outcome.report_path {
        println!("report   {p}");
    }
    println!("took     {:.2}s", r.seconds);
}

async fn validate(cli: &Cli) -> anyhow::Result<()> {
    let project = load(cli, &Overrides::default())?;
    let catalog = crate::catalog::Catalog::load(&project.config.sql_dir).map_err(|e| anyhow!("{e}"))?;
    let mut problems = Vec::new();
    for p in &project.pipelines {
        if let Err(e) = catalog.select(&p.models) {
            problems.push(format!("{}: {e}", p.file.display()));
        }
    }
    let ctx = crate::engine::session();
    for (name, schema) in [
        ("events", crate::ingest::batch::EVENTS_SCHEMA.clone()),
        ("rejects", crate::ingest::batch::REJECTS_SCHEMA.clone()),
    ] {
        crate::engine::register_batch(&ctx, name, vec![], schema)?;
    }
    let params = crate::engine::Params::from_config(&project.config, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default());
    crate::engine::register_params(&ctx, &params, crate::engine::full_rebuild())?;
    for model in &catalog.models {
        if let Err(e) = crate::engine::plan(&ctx, model).await {
            problems.push(format!("{}: model {:?}: {e}", model.file.display(), model.name));
        }
    }
    for check in &catalog.checks {
        let planned = async {
            let df = ctx.sql_with_options(&check.sql, crate::engine::read_only()).await?;
            df.create_physical_plan().await
        };
        if let Err(e) = planned.await {
            problems.push(format!("{}: check {:?}: {e}", check.file.display(), check.name));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    println!(
        "ok: {} pipeline(s), {} model(s), {} check(s) in {}",
        project.pipelines.len(),
        catalog.models.len(),
        catalog.checks.len(),
        project.config.sql_dir.display()
    );
    Ok(())
}

async fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<()> {
    let end = NaiveDate::from_ymd_opt(2026, 11, 15).context("demo end date")?;
    let raw_dir = args.dir.join("raw");
    let warehouse = args.dir.join("warehouse");
    // Every demo starts afresh, in a folder that is the demo's own.
    let marker = args.dir.join(".tenure-demo");
    if args.dir.exists() {
        let empty = std::fs::read_dir(&args.dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !marker.exists() && !empty {
            bail!(
                "{} exists and was not made by tenure demo; pick another --dir",
                args.dir.display()
            );
        }
        for dir in [&raw_dir, &warehouse] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
            }
        }
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    std::fs::write(&marker, "made by tenure demo; its raw/ and warehouse/ are replaced by every demo run\n")
        .with_context(|| format!("cannot write {}", marker.display()))?;
    let mut opts = crate::demo::DemoOptions::demo(end);
    opts.customers = args.customers;
    let summary = crate::demo::generate(&raw_dir, &opts).with_context(|| format!("cannot write the sample data to {}", raw_dir.display()))?;
    println!(
        "demo     {} customers, {} events in {} objects ({} bad rows, {} duplicates on purpose) under {}",
        summary.customers,
        summary.events,
        summary.objects,
        summary.bad_rows,
        summary.duplicate_rows,
        raw_dir.display()
    );
    let overrides = Overrides {
        raw: Some(raw_dir.display().to_string()),
        warehouse: Some(warehouse.display().to_string()),
        ..Default::default()
    };
    let project = load(cli, &overrides)?;
    let opts = RunOptions {
        pipeline: None,
        as_of: Some(end),
        trigger: "demo".into(),
        progress: is_terminal(),
        ..Default::default()
    };
    run_and_print(&project, &opts, &SystemClock).await?;
    println!(
        "\nTry:  tenure query --warehouse {} \"select * from mrr_bridge_monthly where segment = 'all' order by month\"",
        warehouse.display()
    );
    Ok(())
}
