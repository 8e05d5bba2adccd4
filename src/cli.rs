//! The command line: subcommands and flags (clap derive), and what each one
//! prints. Every command returns a `Result`; `main` turns it into an exit code.

use crate::clock::SystemClock;
use crate::config::{self, Overrides, Project};
use crate::pipeline::backfill::{self, BackfillError, BackfillOptions, BackfillReport};
use crate::pipeline::{self, RunOptions};
use crate::warehouse::Warehouse;
use anyhow::{anyhow, bail, Context};
use chrono::NaiveDate;
use std::sync::Arc;
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
    /// Delete data files, log entries, state, key segments and run reports that no table version of the retention window and no later run needs.
    Vacuum(VacuumArgs),
    /// Close a month by hand with the published figures, or report them again (--restate --reason); runs close due months by themselves.
    Close(CloseArgs),
    /// Write the finance report of a publishing run: one self-contained HTML page with charts, every mart as CSV, and an Excel workbook.
    Report(ReportArgs),
    /// Run the stages of model plans sent by runs with `--workers` (`engine.workers`) until SIGTERM/SIGINT.
    Worker(WorkerArgs),
    /// Measure speed and memory of full runs on a generated dataset (optionally against a DuckDB peer); prints figures.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7171")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Folder the report is written to (`index.html`, `csv/<table>.csv`, `finance.xlsx`).
    #[arg(long, default_value = "report")]
    pub out: std::path::PathBuf,
    /// The run to report on (default: the latest succeeded run that published tables).
    #[arg(long)]
    pub as_of_run: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// Address and port to listen on (port 0: any free port); overrides server.listen.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Also serve Arrow Flight SQL on this address and port (port 0: any
    /// free port); overrides server.flight_listen.
    #[arg(long)]
    pub flight_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
    /// The retention window in hours: nothing younger is deleted, and time
    /// travel within it keeps working; overrides vacuum.retain_hours. Keep it
    /// above the longest run: vacuum takes no lease, the window is the margin
    /// for runs in progress.
    #[arg(long)]
    pub retain_hours: Option<f64>,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The month, YYYY-MM.
    #[arg(long, value_parser = parse_month)]
    pub month: NaiveDate,
    /// Append the month's current figures again as a new close version.
    #[arg(long, requires = "reason")]
    pub restate: bool,
    /// Why the month is restated (recorded in the run report).
    #[arg(long, requires = "restate")]
    pub reason: Option<String>,
    /// Warehouse (URL or local path); overrides storage.warehouse.
    #[arg(long)]
    pub warehouse: Option<String>,
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
    /// Run the models on these `tenure worker`s (`http://HOST:PORT`, comma-separated); overrides engine.workers.
    #[arg(long, value_delimiter = ',', value_parser = crate::cluster::parse_url)]
    pub workers: Option<Vec<url::Url>>,
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

fn parse_month(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").map_err(|_| format!("{s:?} is not a month: write YYYY-MM"))
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
            let mut project = load(&cli, &args.locations.overrides())?;
            if let Some(workers) = &args.workers {
                project.config.engine_workers = workers.clone();
            }
            let opts = RunOptions {
                pipeline: args.pipeline.clone(),
                as_of: args.as_of,
                trigger: "manual".into(),
                progress: is_terminal(),
                full_refresh: args.full_refresh,
                ..Default::default()
            };
            run_and_print(&project, &opts).await
        }
        Command::Validate => {
            let report = crate::validate::validate(&config_file(&cli.config), &Overrides::default()).await;
            if !report.problems.is_empty() {
                // One `file:line: key: message` per line, for editors to jump to.
                for problem in &report.problems {
                    eprintln!("{problem}");
                }
                bail!("{} problem(s) found; nothing was run", report.problems.len());
            }
            println!(
                "ok: {} pipeline(s), {} model(s), {} check(s) in {}",
                report.pipelines,
                report.models,
                report.checks,
                report.sql_dir.display()
            );
            Ok(())
        }
        Command::Demo(args) => demo(&cli, args).await,
        Command::Query(args) => {
            let overrides = Overrides {
                warehouse: args.warehouse.clone(),
                raw: Some(String::new()),
                ..Default::default()
            };
            let project = load(&cli, &overrides)?;
            let batches = crate::query::query(&project.config, &args.sql).await?;
            print_batches(&batches, args.format)
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
            let server = crate::serve::Server::bind(&load(&cli, &overrides)?.config, args.listen, args.flight_listen).await?;
            println!("listening on {}", server.local_addr());
            if let Some(addr) = server.flight_addr() {
                println!("flight sql listening on {addr}");
            }
            Ok(server.run(crate::serve::shutdown_signal()).await?)
        }
        Command::Vacuum(args) => vacuum(&cli, args).await,
        Command::Close(args) => {
            let overrides = Overrides { warehouse: args.warehouse.clone(), raw: Some(String::new()), ..Default::default() };
            let project = load(&cli, &overrides)?;
            let restate = args.restate.then(|| args.reason.clone().unwrap_or_default());
            let (report, path) = crate::close::close_by_hand(&project.config, args.month, restate, Arc::new(SystemClock)).await?;
            print_summary(&pipeline::Finished { report, report_path: Some(path) });
            Ok(())
        }
        Command::Report(args) => {
            let overrides = Overrides { warehouse: args.warehouse.clone(), raw: Some(String::new()), ..Default::default() };
            let project = load(&cli, &overrides)?;
            let warehouse = crate::warehouse::Warehouse::of(&project.config)?;
            let run = crate::report::select_run(&warehouse, args.as_of_run.as_deref()).await?;
            let report = crate::report::build(&warehouse, &run).await?;
            crate::report::write_dir(&report, &args.out)?;
            println!("report   {} (run {}, as of {}, {} files)", args.out.join("index.html").display(), run.run_id, run.as_of, report.files.len());
            Ok(())
        }
        Command::Worker(args) => {
            let overrides = Overrides { raw: Some(String::new()), warehouse: Some(String::new()), ..Default::default() };
            let config = load(&cli, &overrides)?.config;
            let storage = crate::storage::Storage::new(config.storage.clone());
            let worker = crate::cluster::worker::BoundWorker::bind(&args.listen, storage, config.engine_memory).await?;
            println!("listening on {}", worker.local_addr());
            Ok(worker.serve(crate::serve::shutdown_signal()).await?)
        }
        Command::Bench(args) => crate::bench::run(&config_file(&cli.config), args).await,
    }
}

async fn vacuum(cli: &Cli, args: &VacuumArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        warehouse: args.warehouse.clone(),
        raw: Some(String::new()),
        ..Default::default()
    };
    let project = load(cli, &overrides)?;
    let mut opts = project.config.vacuum.options();
    opts.dry_run = args.dry_run;
    if let Some(hours) = args.retain_hours {
        if !hours.is_finite() || hours < 0.0 {
            bail!("--retain-hours {hours}: give a number of hours >= 0");
        }
        opts.retain = std::time::Duration::from_secs_f64(hours * 3600.0);
    }
    let warehouse = Warehouse::of(&project.config)?;
    let report = crate::vacuum::vacuum(&warehouse, &opts, chrono::Utc::now()).await?;
    print_vacuum(&report);
    Ok(())
}

fn print_vacuum(r: &crate::vacuum::VacuumReport) {
    use crate::vacuum::Removed;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let size = |bytes: u64| match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    };
    let files = |removed: &Removed| format!("{} ({})", removed.files, size(removed.bytes));
    println!(
        "vacuum   {}  retain {} h (since {})  run reports {} days{}",
        r.warehouse,
        r.retain_hours,
        r.window_start,
        r.runs_retain_days,
        if r.dry_run { "  (dry run: nothing deleted)" } else { "" }
    );
    for t in &r.tables {
        let version = t.version.map_or("none".to_string(), |v| v.to_string());
        let oldest = t.oldest_version.map_or(String::new(), |v| format!(" (from {v})"));
        let checkpoint = if t.checkpointed { "  checkpoint written" } else { "" };
        println!(
            "table    {:<24} version {:<4}{oldest}  {verb} data files {}  log files {}{checkpoint}",
            t.name,
            version,
            files(&t.data),
            files(&t.log)
        );
    }
    println!("state    {verb} {}", files(&r.state));
    println!("keys     {verb} {}", files(&r.key_segments));
    println!("runs     {verb} {}", files(&r.run_reports));
    println!("total    {verb} {} files, {}", r.files_deleted(), size(r.bytes_freed()));
    if r.dry_run {
        let parts = r.tables.iter().flat_map(|t| [&t.data, &t.log]).chain([&r.state, &r.key_segments, &r.run_reports]);
        for path in parts.flat_map(|p| &p.paths) {
            println!("         {path}");
        }
    }
}

/// Print query results in `format` on standard output.
fn print_batches(batches: &[arrow::array::RecordBatch], format: OutputFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match format {
        OutputFormat::Table => println!("{}", arrow::util::pretty::pretty_format_batches(batches)?),
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(stdout.lock());
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(stdout.lock());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            println!();
        }
    }
    Ok(())
}

async fn backfill(cli: &Cli, args: &BackfillArgs) -> anyhow::Result<()> {
    let project = load(cli, &args.locations.overrides())?;
    let opts = BackfillOptions {
        pipeline: args.pipeline.clone(),
        from: args.from,
        to: args.to,
        every: match args.every {
            Every::Day => backfill::Every::Day,
            Every::Month => backfill::Every::Month,
        },
        progress: is_terminal(),
    };
    let print = |done: &BackfillReport| {
        if let Some(f) = &done.ingest {
            println!("{}  ingest  {}  {:.2}s", f.report.run_id, f.report.status, f.report.seconds);
        }
        for f in &done.runs {
            println!("{}  as of {}  {}  {:.2}s", f.report.run_id, f.report.as_of, f.report.status, f.report.seconds);
        }
    };
    match backfill::backfill(&project, &opts, Arc::new(SystemClock)).await {
        Ok(done) => {
            print(&done);
            println!(
                "backfill {} → {}: {} run(s), {} already complete with the same inputs",
                args.from,
                args.to,
                done.runs.len(),
                done.skipped
            );
            Ok(())
        }
        Err(BackfillError::Stopped { at, done, failed }) => {
            print(&done);
            if let Some(f) = &failed.finished {
                println!("{}  {}  {}  {:.2}s", f.report.run_id, at.map_or("ingest".to_string(), |d| format!("as of {d}")), f.report.status, f.report.seconds);
            }
            Err(anyhow::Error::new(BackfillError::Stopped { at, done, failed }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn runs(cli: &Cli, args: &RunsArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        warehouse: args.warehouse.clone(),
        raw: Some(String::new()),
        ..Default::default()
    };
    let project = load(cli, &overrides)?;
    let warehouse = Warehouse::of(&project.config)?;
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
            r.run_id,
            r.pipeline,
            r.trigger,
            r.as_of,
            r.status.as_str(),
            r.seconds,
            r.accepted()
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

async fn run_and_print(project: &Project, opts: &RunOptions) -> anyhow::Result<()> {
    match pipeline::run_exclusive(project, opts, Arc::new(SystemClock)).await {
        Ok(finished) => {
            print_summary(&finished);
            Ok(())
        }
        Err(failed) => {
            if let Some(finished) = &failed.finished {
                print_summary(finished);
            }
            Err(failed.into())
        }
    }
}

fn print_summary(finished: &pipeline::Finished) {
    let r = &finished.report;
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
    for c in &r.closes {
        let why = c.reason.as_deref().map(|r| format!(", restated: {r}")).unwrap_or_default();
        println!("closed   {} (close version {}, {} reported rows{why})", c.month, c.close_version, c.rows);
    }
    for x in &r.restated {
        let late = x.late_events.filter(|n| *n > 0).map(|n| format!("; {n} late events since the close")).unwrap_or_default();
        let changed = if x.changed.is_empty() { String::new() } else { format!("; {}", x.changed.join("; ")) };
        let label = if x.new { "warning  closed month restated:" } else { "restated" };
        println!(
            "{label} {} ({} cells differ from close version {} of {}{late}{changed})",
            x.month, x.cells, x.close_version, x.closed_on
        );
    }
    if let Some(p) = &finished.report_path {
        println!("report   {p}");
    }
    println!("took     {:.2}s", r.seconds);
}

async fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<()> {
    let end = NaiveDate::from_ymd_opt(2026, 11, 15).context("demo end date")?;
    let mut opts = crate::demo::DemoOptions::demo(end);
    opts.customers = args.customers;
    let (dir, summary) = crate::demo::prepare(&args.dir, &opts)?;
    let (raw_dir, warehouse) = (dir.raw, dir.warehouse);
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
    run_and_print(&project, &opts).await?;
    // A contract booked late: it restates a month the first run closed.
    let late = crate::demo::write_late_object(&raw_dir, end)?;
    println!("\ndemo     a late object arrives: {} (a customer signed last month)", late.display());
    run_and_print(&project, &opts).await?;
    println!(
        "\nTry:  tenure query --warehouse {} \"select * from restatements where table_name = 'mrr_bridge_monthly' and segment = 'all'\"",
        warehouse.display()
    );
    println!(
        "Try:  tenure query --warehouse {} \"select * from mrr_bridge_monthly where segment = 'all' order by month\"",
        warehouse.display()
    );
    Ok(())
}
