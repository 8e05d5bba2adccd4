//! `tenure bench`: the speed and memory of a full pipeline run (ingest, every
//! model, checks, publish) on a deterministic dataset, and optionally of a
//! DuckDB peer doing the same job on the same files. It prints figures and
//! writes them as JSON; it asserts nothing (STYLE.md rule 13).
//!
//! This module owns the benchmark datasets (made once per size by the
//! generator of `tenure demo` and reused while their manifest matches), the
//! child processes that do the measured work (`tenure run`, and
//! `bench/duckdb_peer.py` for the peer), and the reading of each child's peak
//! RSS from the OS (`wait4`). It must not change how a run works: every
//! measured run is an ordinary `tenure run` in a fresh warehouse, and its step
//! timings are the ones its run report records.

use crate::catalog::Catalog;
use crate::config::{self, Overrides};
use crate::demo::{self, DemoOptions};
use crate::pipeline::RunReport;
use anyhow::{anyhow, bail, Context};
use chrono::{Days, NaiveDate};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Last day of the benchmark history (the date `tenure demo` uses); the
/// measured runs are as of this date.
const END_DATE: (i32, u32, u32) = (2026, 11, 15);
/// Seed of the generator (the demo's).
const SEED: u64 = 42;
/// The marts the DuckDB peer builds, so the work both do.
const PEER_MARTS: [&str; 4] = ["mrr_monthly", "mrr_bridge_monthly", "ndr_trailing_12m", "customer_health"];

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Events in the dataset (usage events are scaled to reach about this many).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Customers in the dataset.
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Months of history.
    #[arg(long, default_value_t = 24)]
    pub months: u32,
    /// Folder for the datasets (one per size, reused) and the runs' warehouses.
    #[arg(long, default_value = "bench-data")]
    pub dir: PathBuf,
    /// Measured runs; figures are their medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also write the figures, and every run's, as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the DuckDB peer (`bench/duckdb_peer.py`, needs `python3` with
    /// `duckdb`) on the same files in each run, and print tenure/DuckDB ratios.
    #[arg(long)]
    pub peer: bool,
    /// After each full run, add one new day of objects and measure the
    /// incremental run that picks them up.
    #[arg(long)]
    pub incremental: bool,
    /// Instead of runs: time the CLV fits (BG/NBD and Gamma-Gamma,
    /// METRICS.md §14) on this many customers simulated from the BG/NBD and
    /// Gamma-Gamma processes with CDNOW's published parameters.
    #[arg(long)]
    pub clv_customers: Option<usize>,
    /// Instead of runs: time the churn model's fit (L2 logistic regression,
    /// METRICS.md §13) on this many simulated customers × 24 monthly
    /// snapshots of 16 features.
    #[arg(long)]
    pub churn_customers: Option<usize>,
    /// Start this many `tenure worker` processes on 127.0.0.1 and run the
    /// models on them (`--workers`); their peak RSS and tasks are reported
    /// beside the run's.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// What a dataset folder holds; a folder whose manifest differs is made again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Manifest {
    tenure_version: String,
    target_events: u64,
    customers: usize,
    months: u32,
    end_date: String,
    seed: u64,
    messy: bool,
    /// From the generator's summary: what ingest must accept, reject, drop.
    events: u64,
    bad_rows: u64,
    duplicate_rows: u64,
    objects: usize,
    bytes: u64,
    generate_seconds: f64,
}

impl Manifest {
    fn same_options(&self, other: &Manifest) -> bool {
        (
            &self.tenure_version,
            self.target_events,
            self.customers,
            self.months,
            &self.end_date,
            self.seed,
            self.messy,
        ) == (
            &other.tenure_version,
            other.target_events,
            other.customers,
            other.months,
            &other.end_date,
            other.seed,
            other.messy,
        )
    }
}

/// A child process's wall time and peak resident set size, as the OS saw it.
#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    wall_seconds: f64,
    peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
struct StepTime {
    name: String,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
}

/// One measured `tenure run`.
#[derive(Debug, Clone, Serialize)]
struct TenureRun {
    usage: Usage,
    /// `seconds` of the run report (the run, without process start and exit).
    report_seconds: f64,
    steps: Vec<StepTime>,
    rows_read: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    objects_ingested: u64,
    /// Tasks per worker (`engine.workers` of the run report), with `--workers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    workers: Vec<crate::cluster::WorkerTasks>,
}

/// One measured run of the DuckDB peer.
#[derive(Debug, Clone, Serialize)]
struct PeerRun {
    usage: Usage,
    /// The peer's own total (its steps, without interpreter start).
    own_seconds: f64,
    /// The peer's own `ru_maxrss` (KiB), for comparison with `usage`.
    own_peak_rss_kib: u64,
    steps: Vec<StepTime>,
    counts: BTreeMap<String, u64>,
    duckdb_version: String,
}

#[derive(Debug, Clone, Serialize)]
struct Median {
    name: String,
    seconds: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Compared {
    work: String,
    tenure_seconds: f64,
    duckdb_seconds: f64,
    ratio: f64,
    /// Which tenure steps and which peer steps the row adds up.
    tenure_steps: Vec<String>,
    duckdb_steps: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    dataset: Manifest,
    runs: usize,
    tenure: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    duckdb: Option<Summary>,
    comparison: Vec<Compared>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incremental: Option<Incremental>,
    tenure_runs: Vec<TenureRun>,
    duckdb_runs: Vec<PeerRun>,
    incremental_runs: Vec<TenureRun>,
    /// The `tenure worker` processes of `--workers`: each one's peak RSS
    /// over all runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    workers: Vec<WorkerUsage>,
}

#[derive(Debug, Serialize)]
struct WorkerUsage {
    url: String,
    peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
struct Summary {
    /// Median wall time of the child process, start to exit.
    wall_seconds: f64,
    /// Median of the per-run peak RSS of the child (KiB), and the largest.
    peak_rss_kib: u64,
    peak_rss_kib_max: u64,
    steps: Vec<Median>,
    /// Rows read by ingest per second of its ingest step (median).
    #[serde(skip_serializing_if = "Option::is_none")]
    ingest_rows_per_second: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Incremental {
    new_objects: usize,
    new_rows: u64,
    as_of: String,
    wall_seconds: f64,
    full_wall_seconds: f64,
    fraction_of_full: f64,
    peak_rss_kib: u64,
    steps: Vec<Median>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    memory_kib: Option<u64>,
    cpu: Option<String>,
    os: String,
}

/// Run the benchmark. `config_file` is the config the measured runs use.
pub async fn run(config_file: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let config_file = config_file.to_path_buf();
    let args = args.clone();
    tokio::task::spawn_blocking(move || run_blocking(&config_file, &args))
        .await
        .map_err(|e| anyhow!("the benchmark task failed: {e}"))?
}

fn run_blocking(config_file: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(n) = args.clv_customers {
        return clv_bench(n, args.runs);
    }
    if let Some(n) = args.churn_customers {
        return churn_bench(n, args.runs);
    }
    let end = NaiveDate::from_ymd_opt(END_DATE.0, END_DATE.1, END_DATE.2).context("end date")?;
    let exe = std::env::current_exe().context("cannot find the tenure executable to run the measured runs")?;
    let machine = machine();
    fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize().with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let _lock = lock_dir(&dir)?;

    let (data_root, manifest) = dataset(&dir, args, end)?;
    let data_raw = data_root.join("raw");
    let work = dir.join("work");
    fs::create_dir_all(&work)?;

    // The model groups the peer is compared on, from the model graph.
    let project = config::load(
        config_file,
        &Overrides {
            raw: Some(data_raw.display().to_string()),
            warehouse: Some(work.join("warehouse").display().to_string()),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let catalog = Catalog::load(&project.config.sql_dir).map_err(|e| anyhow!("{e}"))?;
    let groups = peer_groups(&catalog)?;
    if args.peer && (project.config.timezone.name() != "UTC" || project.config.currency != "USD") {
        eprintln!(
            "note: the DuckDB peer assumes reporting timezone UTC and currency USD; this config has {} and {}",
            project.config.timezone.name(),
            project.config.currency
        );
    }
    let peer_script = if args.peer { Some(peer_script()?) } else { None };

    // With --incremental the runs read a tree of hard links to the dataset, so
    // that the new day can be added and removed without touching the dataset.
    let run_raw = if args.incremental {
        let tree = work.join("raw-links");
        link_tree(&data_raw, &tree)?;
        tree
    } else {
        data_raw.clone()
    };

    let workers = LocalWorkers::start(&exe, config_file, args.workers, &work)?;
    let mut tenure_runs = Vec::new();
    let mut peer_runs = Vec::new();
    let mut incremental_runs = Vec::new();
    let mut new_day = (0usize, 0u64);
    for i in 0..args.runs {
        let run_dir = work.join(format!("run-{}", i + 1));
        reset_dir(&run_dir)?;
        let warehouse = run_dir.join("warehouse");
        let full = tenure_run(&exe, config_file, &run_raw, &warehouse, end, &workers.urls, &run_dir.join("full"))
            .with_context(|| format!("run {} of tenure failed", i + 1))?;
        eprintln!(
            "run {}/{}  tenure   {:>8.2}s  peak RSS {}",
            i + 1,
            args.runs,
            full.usage.wall_seconds,
            mib(full.usage.peak_rss_kib)
        );
        tenure_runs.push(full);
        if args.incremental {
            let next = end + Days::new(1);
            let added = add_next_day(&run_raw, end)?;
            new_day = (added.paths.len(), added.rows);
            let inc = tenure_run(&exe, config_file, &run_raw, &warehouse, next, &workers.urls, &run_dir.join("incremental"));
            for p in &added.paths {
                let _ = fs::remove_file(p);
            }
            let inc = inc.with_context(|| format!("incremental run {} of tenure failed", i + 1))?;
            eprintln!(
                "run {}/{}  tenure incremental {:>8.2}s  ({} new rows)  peak RSS {}",
                i + 1,
                args.runs,
                inc.usage.wall_seconds,
                added.rows,
                mib(inc.usage.peak_rss_kib)
            );
            incremental_runs.push(inc);
        }
        if let Some(script) = &peer_script {
            let out = run_dir.join("duckdb");
            let peer = peer_run(script, &data_raw, &out, end, machine.cores)
                .with_context(|| format!("run {} of the DuckDB peer failed", i + 1))?;
            eprintln!(
                "run {}/{}  duckdb   {:>8.2}s  peak RSS {}",
                i + 1,
                args.runs,
                peer.usage.wall_seconds,
                mib(peer.usage.peak_rss_kib)
            );
            peer_runs.push(peer);
        }
        // Keep the last run's outputs for inspection; drop the others.
        if i + 1 < args.runs {
            let _ = fs::remove_dir_all(&run_dir);
        }
    }

    let workers = workers.stop();
    let tenure = summarize(&tenure_runs.iter().map(|r| (r.usage, r.steps.clone(), r.rows_read)).collect::<Vec<_>>());
    let duckdb = (!peer_runs.is_empty()).then(|| {
        let rows_read = |r: &PeerRun| r.counts.get("rows_read").copied().unwrap_or(0);
        summarize(&peer_runs.iter().map(|r| (r.usage, r.steps.clone(), rows_read(r))).collect::<Vec<_>>())
    });
    let comparison = match &duckdb {
        Some(d) => compare(&groups, &tenure, d),
        None => Vec::new(),
    };
    let incremental = (!incremental_runs.is_empty()).then(|| {
        let s = summarize(&incremental_runs.iter().map(|r| (r.usage, r.steps.clone(), r.rows_read)).collect::<Vec<_>>());
        Incremental {
            new_objects: new_day.0,
            new_rows: new_day.1,
            as_of: (end + Days::new(1)).to_string(),
            wall_seconds: s.wall_seconds,
            full_wall_seconds: tenure.wall_seconds,
            fraction_of_full: s.wall_seconds / tenure.wall_seconds,
            peak_rss_kib: s.peak_rss_kib,
            steps: s.steps,
        }
    });
    let report = Report {
        machine,
        dataset: manifest,
        runs: args.runs,
        tenure,
        duckdb,
        comparison,
        incremental,
        tenure_runs,
        duckdb_runs: peer_runs,
        incremental_runs,
        workers,
    };
    print_report(&report, end);
    if let Some(path) = &args.json {
        let body = serde_json::to_vec_pretty(&report)?;
        fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nfigures written to {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The dataset

/// The dataset folder for these options, generated unless a complete one with
/// a matching manifest is there.
fn dataset(dir: &Path, args: &BenchArgs, end: NaiveDate) -> anyhow::Result<(PathBuf, Manifest)> {
    let root = dir.join(format!("events-{}-customers-{}-months-{}", args.events, args.customers, args.months));
    let manifest_path = root.join("manifest.json");
    let opts = DemoOptions {
        customers: args.customers,
        months: args.months,
        end_date: end,
        seed: SEED,
        target_events: Some(args.events),
        messy: true,
    };
    let mut wanted = Manifest {
        tenure_version: env!("CARGO_PKG_VERSION").to_string(),
        target_events: args.events,
        customers: args.customers,
        months: args.months,
        end_date: end.to_string(),
        seed: SEED,
        messy: true,
        events: 0,
        bad_rows: 0,
        duplicate_rows: 0,
        objects: 0,
        bytes: 0,
        generate_seconds: 0.0,
    };
    if let Ok(text) = fs::read_to_string(&manifest_path) {
        if let Ok(found) = serde_json::from_str::<Manifest>(&text) {
            if found.same_options(&wanted) && root.join("raw").is_dir() {
                // The data objects alone hold `bytes`: fewer in all means
                // objects were emptied or removed since.
                let on_disk = tree_bytes(&root.join("raw"));
                if on_disk >= found.bytes {
                    eprintln!("dataset  {} (reused: manifest matches)", root.display());
                    return Ok((root, found));
                }
                eprintln!("dataset  {} holds {on_disk} bytes, its manifest {}: generating it again", root.display(), found.bytes);
            }
        }
    }
    // Stale or partial: make it again. The manifest is written last, so an
    // interrupted generation is never taken for a complete one.
    reset_dir(&root)?;
    eprintln!("dataset  generating about {} events for {} customers over {} months into {} ...", args.events, args.customers, args.months, root.display());
    let t = Instant::now();
    let summary = demo::generate(&root.join("raw"), &opts).with_context(|| format!("cannot generate the dataset in {}", root.display()))?;
    wanted.events = summary.events;
    wanted.bad_rows = summary.bad_rows;
    wanted.duplicate_rows = summary.duplicate_rows;
    wanted.objects = summary.objects;
    wanted.bytes = summary.bytes;
    wanted.generate_seconds = t.elapsed().as_secs_f64();
    fs::write(&manifest_path, serde_json::to_vec_pretty(&wanted)?).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    eprintln!("dataset  {} events in {} objects ({}) in {:.1}s", wanted.events, wanted.objects, gib(wanted.bytes), wanted.generate_seconds);
    Ok((root, wanted))
}

/// The bytes of the files under `dir` (0 for what cannot be read).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Hold `dir` for this bench until the returned file is dropped (or the
/// process ends). Two benches in one folder remove and relink each other's
/// trees; a copy onto a link to the dataset empties the dataset itself.
fn lock_dir(dir: &Path) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".bench.lock");
    let file = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock takes the descriptor of a file this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another tenure bench is using {}; wait for it, or give this one another --dir", dir.display());
    }
    Ok(file)
}

/// `dst` as a tree of hard links to the files of `src` (copies where a link
/// cannot be made): same bytes, sizes and modification times, no extra space.
fn link_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    reset_dir(dst)?;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(src.join(&rel)).with_context(|| format!("cannot list {}", src.join(&rel).display()))? {
            let entry = entry?;
            let rel_child = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                fs::create_dir_all(dst.join(&rel_child))?;
                stack.push(rel_child);
            } else {
                link_or_copy(&src.join(&rel_child), &dst.join(&rel_child))?;
            }
        }
    }
    Ok(())
}

/// `to` as a hard link to `from`, or a copy of it in a new file. Never
/// through an existing `to`: copying onto a link to `from` empties `from`.
fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("cannot link {} to {}: it already exists", to.display(), from.display())
        }
        Err(_) => {
            let mut source = fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
            let mut copy = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            std::io::copy(&mut source, &mut copy).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            Ok(())
        }
    }
}

struct AddedDay {
    paths: Vec<PathBuf>,
    rows: u64,
}

/// One new day of raw objects: the JSON Lines objects of the day `end`, with
/// new event ids and every `occurred_at` one day later, written to the folder
/// of the next day. Rows that are not valid JSON objects with a parsable
/// timestamp are left out, so the new day is all accepted events.
fn add_next_day(raw: &Path, end: NaiveDate) -> anyhow::Result<AddedDay> {
    let day_dir = |d: NaiveDate| raw.join("events").join(d.format("%Y/%m/%d").to_string());
    let src = day_dir(end);
    let dst = day_dir(end + Days::new(1));
    fs::create_dir_all(&dst)?;
    let mut names: Vec<String> = fs::read_dir(&src)
        .with_context(|| format!("cannot list {}", src.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(['_', '.']) && [".jsonl", ".ndjson", ".json"].iter().any(|x| n.to_ascii_lowercase().ends_with(x)))
        .collect();
    names.sort();
    let mut added = AddedDay { paths: Vec::new(), rows: 0 };
    for name in names {
        let reader = std::io::BufReader::new(fs::File::open(src.join(&name))?);
        let stem = name.split('.').next().unwrap_or("part");
        let path = dst.join(format!("incremental-{stem}.jsonl"));
        let mut out = std::io::BufWriter::new(fs::File::create(&path)?);
        added.paths.push(path.clone());
        for line in reader.lines() {
            let line = line?;
            let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str::<serde_json::Value>(line.trim_start_matches('\u{feff}')) else {
                continue;
            };
            let (Some(id), Some(ts)) = (
                o.get("event_id").and_then(|v| v.as_str()).map(str::to_string),
                o.get("occurred_at").and_then(|v| v.as_str()).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
            ) else {
                continue;
            };
            let Some(next) = ts.checked_add_days(Days::new(1)) else { continue };
            o.insert("event_id".into(), format!("{id}_next").into());
            o.insert("occurred_at".into(), next.to_rfc3339().into());
            serde_json::to_writer(&mut out, &o)?;
            out.write_all(b"\n")?;
            added.rows += 1;
        }
        out.flush()?;
    }
    Ok(added)
}

// ---------------------------------------------------------------------------
// Measured child processes

/// Run `cmd` to its end and read its wall time and peak RSS (`ru_maxrss` of
/// the rusage `wait4` returns for it: the OS's count, per child).
fn measure(cmd: &mut Command) -> anyhow::Result<(Usage, std::process::ExitStatus)> {
    use std::os::unix::process::ExitStatusExt;
    let t = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, and wait4 fills it; the child is ours
    // and not waited for by anything else (`child` is never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(anyhow!("waiting for child {pid}: {err}"));
        }
    }
    let wall_seconds = t.elapsed().as_secs_f64();
    drop(child);
    // ru_maxrss is in KiB on Linux, in bytes on macOS.
    let maxrss = usage.ru_maxrss.max(0) as u64;
    let peak_rss_kib = if cfg!(target_os = "macos") { maxrss / 1024 } else { maxrss };
    Ok((Usage { wall_seconds, peak_rss_kib }, std::process::ExitStatus::from_raw(status)))
}

fn log_files(prefix: &Path) -> anyhow::Result<(PathBuf, PathBuf, Stdio, Stdio)> {
    if let Some(parent) = prefix.parent() {
        fs::create_dir_all(parent)?;
    }
    let out = prefix.with_extension("stdout.txt");
    let err = prefix.with_extension("stderr.txt");
    let o = fs::File::create(&out)?;
    let e = fs::File::create(&err)?;
    Ok((out, err, Stdio::from(o), Stdio::from(e)))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One `tenure run` as a child process, and the steps of its run report.
#[allow(clippy::too_many_arguments)]
fn tenure_run(exe: &Path, config_file: &Path, raw: &Path, warehouse: &Path, as_of: NaiveDate, workers: &[String], logs: &Path) -> anyhow::Result<TenureRun> {
    let (_, err_path, stdout, stderr) = log_files(logs)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--config")
        .arg(config_file)
        .arg("run")
        .arg("--raw")
        .arg(raw)
        .arg("--warehouse")
        .arg(warehouse)
        .arg("--as-of")
        .arg(as_of.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if !workers.is_empty() {
        cmd.arg("--workers").arg(workers.join(","));
    }
    let (usage, status) = measure(&mut cmd)?;
    if !status.success() {
        bail!("tenure run exited with {status}:\n{}", tail(&err_path, 20));
    }
    let report = latest_report(warehouse)?;
    let steps = report
        .steps
        .iter()
        .map(|s| StepTime {
            name: s.name.clone(),
            seconds: s.seconds,
            rows: s.rows,
        })
        .collect();
    let totals = report.ingest.as_ref().map(|i| i.totals.clone()).unwrap_or_default();
    Ok(TenureRun {
        usage,
        report_seconds: report.seconds,
        steps,
        rows_read: totals.rows_read,
        accepted: totals.accepted,
        rejected: totals.rejected,
        duplicates: totals.duplicates,
        objects_ingested: totals.objects_ingested,
        workers: report.engine.map(|e| e.workers).unwrap_or_default(),
    })
}

/// The `tenure worker` processes of `--workers N`, on free ports of 127.0.0.1.
struct LocalWorkers {
    children: Vec<std::process::Child>,
    urls: Vec<String>,
}

impl LocalWorkers {
    fn start(exe: &Path, config_file: &Path, n: usize, work: &Path) -> anyhow::Result<LocalWorkers> {
        let mut workers = LocalWorkers { children: Vec::new(), urls: Vec::new() };
        for i in 0..n {
            let log = fs::File::create(work.join(format!("worker-{}.stderr.txt", i + 1)))?;
            let mut child = Command::new(exe)
                .arg("--config")
                .arg(config_file)
                .args(["worker", "--listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .context("cannot start tenure worker")?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("tenure worker has no stdout"))?;
            workers.children.push(child);
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
            let addr = line.trim().strip_prefix("listening on ").ok_or_else(|| anyhow!("tenure worker printed {line:?}"))?;
            workers.urls.push(format!("http://{addr}"));
        }
        if n > 0 {
            eprintln!("workers  {}", workers.urls.join(", "));
        }
        Ok(workers)
    }

    /// Stop the workers (SIGTERM) and return each one's peak RSS.
    fn stop(mut self) -> Vec<WorkerUsage> {
        let mut usage = Vec::new();
        for (child, url) in self.children.iter_mut().zip(&self.urls) {
            let status = fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            let peak_rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            // SAFETY: a signal to our own child, whose pid is not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            usage.push(WorkerUsage { url: url.clone(), peak_rss_kib });
        }
        self.children.clear();
        usage
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The newest run report of a local warehouse (run ids sort by start time).
fn latest_report(warehouse: &Path) -> anyhow::Result<RunReport> {
    let storage = crate::storage::Storage::new(Default::default());
    let runs = crate::warehouse::Warehouse::open(&storage, &warehouse.display().to_string())?.runs();
    let dir = runs.local_path("").ok_or_else(|| anyhow!("{} is not a local folder", runs.display()))?;
    let newest = fs::read_dir(&dir)
        .with_context(|| format!("no run reports in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()
        .ok_or_else(|| anyhow!("no run report in {}", dir.display()))?;
    let report: RunReport = serde_json::from_slice(&fs::read(&newest)?).with_context(|| format!("cannot read {}", newest.display()))?;
    if !report.succeeded() {
        bail!("run {} did not succeed: {}", newest.display(), report.error.unwrap_or_default().join(": "));
    }
    Ok(report)
}

/// The peer script: next to the sources this binary was built from, or in `bench/` here.
fn peer_script() -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/duckdb_peer.py");
    let here = PathBuf::from("bench/duckdb_peer.py");
    [built_from, here]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("bench/duckdb_peer.py not found; run tenure bench --peer from the project folder"))
}

/// One run of the DuckDB peer as a child process; it prints its figures as JSON.
fn peer_run(script: &Path, raw: &Path, out: &Path, as_of: NaiveDate, threads: usize) -> anyhow::Result<PeerRun> {
    reset_dir(out)?;
    let (out_path, err_path, stdout, stderr) = log_files(&out.join("peer"))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.arg(script)
        .arg("--raw")
        .arg(raw)
        .arg("--out")
        .arg(out)
        .arg("--as-of")
        .arg(as_of.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let (usage, status) = measure(&mut cmd).with_context(|| format!("is {python} installed (with `pip install duckdb`)?"))?;
    if !status.success() {
        bail!("the DuckDB peer exited with {status}:\n{}", tail(&err_path, 20));
    }
    let text = fs::read_to_string(&out_path)?;
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or_else(|| anyhow!("the DuckDB peer printed no figures"))?;
    let v: serde_json::Value = serde_json::from_str(last).context("the DuckDB peer's figures are not JSON")?;
    let steps = v["steps"]
        .as_array()
        .ok_or_else(|| anyhow!("peer figures without steps"))?
        .iter()
        .map(|s| StepTime {
            name: s["name"].as_str().unwrap_or("?").to_string(),
            seconds: s["seconds"].as_f64().unwrap_or(0.0),
            rows: s["rows"].as_u64(),
        })
        .collect();
    let counts = v["counts"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n))).collect())
        .unwrap_or_default();
    Ok(PeerRun {
        usage,
        own_seconds: v["seconds"].as_f64().unwrap_or(0.0),
        own_peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(0),
        steps,
        counts,
        duckdb_version: v["duckdb_version"].as_str().unwrap_or("?").to_string(),
    })
}

// ---------------------------------------------------------------------------
// Figures

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Medians over runs: wall time, peak RSS, and every step (in first-run order).
fn summarize(runs: &[(Usage, Vec<StepTime>, u64)]) -> Summary {
    let mut wall: Vec<f64> = runs.iter().map(|r| r.0.wall_seconds).collect();
    let mut rss: Vec<f64> = runs.iter().map(|r| r.0.peak_rss_kib as f64).collect();
    let mut names: Vec<String> = Vec::new();
    for (_, steps, _) in runs {
        for s in steps {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    let steps = names
        .iter()
        .map(|name| {
            let mut v: Vec<f64> = runs.iter().filter_map(|r| r.1.iter().find(|s| &s.name == name).map(|s| s.seconds)).collect();
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(0.0, f64::max);
            Median { name: name.clone(), seconds: median(&mut v), min, max }
        })
        .collect();
    let mut ingest_rate: Vec<f64> = runs
        .iter()
        .filter_map(|(_, steps, rows)| steps.iter().find(|s| s.name == "ingest").filter(|s| s.seconds > 0.0).map(|s| *rows as f64 / s.seconds))
        .collect();
    Summary {
        wall_seconds: median(&mut wall),
        peak_rss_kib: median(&mut rss) as u64,
        peak_rss_kib_max: runs.iter().map(|r| r.0.peak_rss_kib).max().unwrap_or(0),
        steps,
        ingest_rows_per_second: (!ingest_rate.is_empty()).then(|| median(&mut ingest_rate)),
    }
}

/// Which tenure steps do the work of which peer step.
struct PeerGroups {
    /// Models upstream of the MRR marts (the customer-month spine).
    spine: Vec<String>,
    /// Models only `customer_health` needs (beyond the spine), itself included.
    health: Vec<String>,
}

fn upstream(catalog: &Catalog, name: &str, into: &mut BTreeSet<String>) -> anyhow::Result<()> {
    let model = catalog.model(name).ok_or_else(|| anyhow!("model {name:?} is not in sql/; the peer comparison needs it"))?;
    for dep in &model.depends_on {
        if into.insert(dep.clone()) {
            upstream(catalog, dep, into)?;
        }
    }
    Ok(())
}

fn peer_groups(catalog: &Catalog) -> anyhow::Result<PeerGroups> {
    let mut spine = BTreeSet::new();
    for m in &PEER_MARTS[..3] {
        upstream(catalog, m, &mut spine)?;
    }
    for m in &PEER_MARTS {
        spine.remove(*m);
    }
    let mut health = BTreeSet::new();
    upstream(catalog, "customer_health", &mut health)?;
    health.insert("customer_health".to_string());
    let health = health.into_iter().filter(|m| !spine.contains(m)).collect();
    Ok(PeerGroups { spine: spine.into_iter().collect(), health })
}

fn compare(groups: &PeerGroups, tenure: &Summary, duckdb: &Summary) -> Vec<Compared> {
    let models = |names: &[String]| names.iter().map(|n| format!("model:{n}")).collect::<Vec<_>>();
    let rows: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("ingest", vec!["ingest".into()], vec!["ingest".into()]),
        ("customer-month spine", models(&groups.spine), vec!["customer_months".into()]),
        ("mrr_monthly", vec!["model:mrr_monthly".into()], vec!["mrr_monthly".into()]),
        ("mrr_bridge_monthly", vec!["model:mrr_bridge_monthly".into()], vec!["mrr_bridge_monthly".into()]),
        ("ndr_trailing_12m", vec!["model:ndr_trailing_12m".into()], vec!["ndr_trailing_12m".into()]),
        ("customer_health (+ its inputs)", models(&groups.health), vec!["customer_health".into()]),
        ("publish / write marts", vec!["publish".into()], vec!["write".into()]),
    ];
    let sum = |s: &Summary, names: &[String]| s.steps.iter().filter(|m| names.contains(&m.name)).map(|m| m.seconds).sum::<f64>();
    let mut out: Vec<Compared> = rows
        .into_iter()
        .map(|(work, t, d)| {
            let (ts, ds) = (sum(tenure, &t), sum(duckdb, &d));
            Compared { work: work.into(), tenure_seconds: ts, duckdb_seconds: ds, ratio: ratio(ts, ds), tenure_steps: t, duckdb_steps: d }
        })
        .collect();
    let (ts, ds) = (out.iter().map(|c| c.tenure_seconds).sum::<f64>(), out.iter().map(|c| c.duckdb_seconds).sum::<f64>());
    let all_t = out.iter().flat_map(|c| c.tenure_steps.clone()).collect();
    let all_d = out.iter().flat_map(|c| c.duckdb_steps.clone()).collect();
    out.push(Compared { work: "same job, total".into(), tenure_seconds: ts, duckdb_seconds: ds, ratio: ratio(ts, ds), tenure_steps: all_t, duckdb_steps: all_d });
    out.push(Compared {
        work: "process wall time".into(),
        tenure_seconds: tenure.wall_seconds,
        duckdb_seconds: duckdb.wall_seconds,
        ratio: ratio(tenure.wall_seconds, duckdb.wall_seconds),
        tenure_steps: vec!["(whole `tenure run`: every mart, checks, publish)".into()],
        duckdb_steps: vec!["(whole peer process, python start included)".into()],
    });
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_report(r: &Report, end: NaiveDate) {
    let d = &r.dataset;
    let first = r.tenure_runs.first();
    println!();
    println!(
        "tenure bench: {} events target, {} customers, {} months to {} (as of {end}); {} rows in {} objects, {} on disk",
        thousands(d.target_events),
        thousands(d.customers as u64),
        d.months,
        d.end_date,
        thousands(first.map_or(0, |f| f.rows_read)),
        thousands(first.map_or(0, |f| f.objects_ingested)),
        gib(d.bytes),
    );
    let off = d.events as f64 / d.target_events.max(1) as f64;
    if !(0.9..=1.1).contains(&off) {
        println!(
            "note: {} events, not the {} asked for: with {} customers over {} months the generator writes at least one usage event \
             per active customer-day; use fewer --customers for a smaller dataset",
            thousands(d.events),
            thousands(d.target_events),
            thousands(d.customers as u64),
            d.months
        );
    }
    if let Some(f) = first {
        println!(
            "ingest outcome: {} accepted, {} rejected, {} duplicates",
            thousands(f.accepted),
            thousands(f.rejected),
            thousands(f.duplicates)
        );
    }
    println!(
        "machine: {} cores, {} memory, {}{}",
        r.machine.cores,
        r.machine.memory_kib.map_or("?".into(), |k| gib(k * 1024)),
        r.machine.os,
        r.machine.cpu.as_ref().map_or(String::new(), |c| format!(", {c}"))
    );
    println!("medians of {} run(s); each run a child process in a fresh warehouse\n", r.runs);

    let t = &r.tenure;
    let mut report_seconds: Vec<f64> = r.tenure_runs.iter().map(|x| x.report_seconds).collect();
    let total = median(&mut report_seconds);
    println!("{:<40} {:>10} {:>10} {:>10} {:>7}", "tenure step", "median s", "min s", "max s", "share");
    for s in &t.steps {
        println!(
            "{:<40} {:>10.3} {:>10.3} {:>10.3} {:>6.1}%",
            s.name,
            s.seconds,
            s.min,
            s.max,
            if total > 0.0 { 100.0 * s.seconds / total } else { 0.0 }
        );
    }
    println!("{:<40} {:>10.3}", "run (report seconds)", total);
    println!("{:<40} {:>10.3}", "process wall time", t.wall_seconds);
    println!("{:<40} {:>10}   (max {})", "peak RSS", mib(t.peak_rss_kib), mib(t.peak_rss_kib_max));
    for (i, w) in r.workers.iter().enumerate() {
        let tasks: Vec<String> = r
            .tenure_runs
            .iter()
            .map(|run| run.workers.iter().find(|t| t.url.trim_end_matches('/') == w.url).map_or(0, |t| t.tasks).to_string())
            .collect();
        println!("{:<40} {:>10}   (tasks per run: {})", format!("worker {} peak RSS", i + 1), mib(w.peak_rss_kib), tasks.join(", "));
    }
    if let Some(rate) = t.ingest_rows_per_second {
        println!("{:<40} {:>10}", "ingest rows read per second", thousands(rate as u64));
    }
    let mut heaviest: Vec<&Median> = t.steps.iter().filter(|s| s.name.starts_with("model:")).collect();
    heaviest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let names: Vec<String> = heaviest.iter().take(3).map(|s| format!("{} {:.2}s", s.name.trim_start_matches("model:"), s.seconds)).collect();
    if !names.is_empty() {
        println!("{:<40} {}", "heaviest models", names.join(", "));
    }

    if let Some(dk) = &r.duckdb {
        println!();
        let version = r.duckdb_runs.first().map_or("?", |p| p.duckdb_version.as_str());
        println!("{:<40} {:>10} {:>10} {:>10}", format!("DuckDB peer ({version}) step"), "median s", "min s", "max s");
        for s in &dk.steps {
            println!("{:<40} {:>10.3} {:>10.3} {:>10.3}", s.name, s.seconds, s.min, s.max);
        }
        println!("{:<40} {:>10.3}", "process wall time", dk.wall_seconds);
        println!("{:<40} {:>10}   (max {})", "peak RSS", mib(dk.peak_rss_kib), mib(dk.peak_rss_kib_max));
        if let Some(rate) = dk.ingest_rows_per_second {
            println!("{:<40} {:>10}", "ingest rows read per second", thousands(rate as u64));
        }
        if let Some(p) = r.duckdb_runs.first() {
            let c = |k: &str| thousands(p.counts.get(k).copied().unwrap_or(0));
            println!(
                "{:<40} {} read = {} accepted + {} rejected + {} duplicates",
                "peer ingest outcome",
                c("rows_read"),
                c("accepted"),
                c("rejected"),
                c("duplicates")
            );
        }
        println!();
        println!("{:<40} {:>10} {:>10} {:>14}", "same work", "tenure s", "DuckDB s", "tenure/DuckDB");
        for c in &r.comparison {
            println!("{:<40} {:>10.3} {:>10.3} {:>13.2}x", c.work, c.tenure_seconds, c.duckdb_seconds, c.ratio);
        }
        println!(
            "{:<40} {:>10} {:>10} {:>13.2}x",
            "peak RSS",
            mib(t.peak_rss_kib),
            mib(dk.peak_rss_kib),
            ratio(t.peak_rss_kib as f64, dk.peak_rss_kib as f64)
        );
        println!("note: tenure's publish writes every mart as a Delta table, the peer writes its 4 as Parquet; the spine row is the sum of");
        println!("      tenure's models upstream of the MRR marts; process wall time compares a full tenure run with the peer's 4 marts.");
        println!("      tenure builds independent models at the same time, so its model rows overlap and their sum (in the total) exceeds");
        println!("      their wall time (the `models` step); process wall time is the measure of the whole.");
    }

    if let Some(inc) = &r.incremental {
        println!();
        println!(
            "incremental: {} new rows in {} objects, as of {}: {:.3}s median wall, {:.1}% of the full run ({:.3}s); peak RSS {}",
            thousands(inc.new_rows),
            inc.new_objects,
            inc.as_of,
            inc.wall_seconds,
            100.0 * inc.fraction_of_full,
            inc.full_wall_seconds,
            mib(inc.peak_rss_kib)
        );
        let steps: Vec<String> = inc.steps.iter().filter(|s| s.seconds >= 0.05).map(|s| format!("{} {:.2}s", s.name, s.seconds)).collect();
        println!("             steps: {}", steps.join(", "));
    }
}

fn machine() -> Machine {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string());
    Machine {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_kib,
        cpu,
        os: std::env::consts::OS.to_string(),
    }
}

#[cfg(test)]
mod clv_tests {
    use super::*;

    /// The simulated book is what the models describe: fitting it gives back
    /// the parameters it was drawn with, within sampling error.
    #[test]
    fn a_simulated_book_fits_back_to_its_parameters() {
        let book = simulate_clv(20_000, 7);
        let fit = crate::clv::fit_bgnbd(&book).expect("a fit");
        let gg = crate::clv::fit_gamma_gamma(&book).expect("a fit");
        for (name, got, truth) in [
            ("r", fit.r, 0.243),
            ("alpha", fit.alpha, 4.414),
            ("a", fit.a, 0.793),
            ("b", fit.b, 2.426),
            ("p", gg.p, 6.25),
            ("q", gg.q, 3.74),
            ("gamma", gg.gamma, 15.44),
        ] {
            assert!((got / truth - 1.0).abs() < 0.35, "{name}: {got} against {truth}; {fit:?} {gg:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_never_copied_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("object.jsonl"), dir.path().join("link.jsonl"));
        fs::write(&from, b"{\"event_id\":\"e1\"}\n").expect("write");
        link_or_copy(&from, &to).expect("link");
        assert_eq!(fs::read(&to).expect("read"), fs::read(&from).expect("read"));
        // Linking again onto the existing link is an error, and the dataset keeps its bytes.
        let err = link_or_copy(&from, &to).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(fs::read(&from).expect("read"), b"{\"event_id\":\"e1\"}\n");
    }

    #[test]
    fn one_bench_at_a_time_per_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = lock_dir(dir.path()).expect("first");
        let err = lock_dir(dir.path()).expect_err("second");
        assert!(err.to_string().contains("another tenure bench"), "{err}");
        drop(held);
        lock_dir(dir.path()).expect("after the first is done");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn next_day_has_new_ids_one_day_later_and_only_valid_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = dir.path().join("events/2026/11/15");
        fs::create_dir_all(&day).expect("mkdir");
        fs::write(
            day.join("part-0000.jsonl"),
            concat!(
                r#"{"event_id":"evt_1","event_type":"usage.login","customer_id":"c","occurred_at":"2026-11-15T23:30:00-05:00"}"#,
                "\nnot json\n\n",
                r#"{"event_id":"evt_2","event_type":"usage.login","customer_id":"c","occurred_at":"2026-11-15"}"#,
                "\n"
            ),
        )
        .expect("write");
        let end = NaiveDate::from_ymd_opt(2026, 11, 15).expect("date");
        let added = add_next_day(dir.path(), end).expect("next day");
        assert_eq!(added.rows, 1);
        let text = fs::read_to_string(dir.path().join("events/2026/11/16/incremental-part-0000.jsonl")).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(v["event_id"], "evt_1_next");
        assert_eq!(v["occurred_at"], "2026-11-16T23:30:00-05:00");
    }

    #[test]
    fn measure_reads_the_childs_peak_rss() {
        let (usage, status) = measure(Command::new("true").stdout(Stdio::null())).expect("true runs");
        assert!(status.success());
        assert!(usage.peak_rss_kib > 0);
    }
}

/// `tenure bench --clv-customers N`: simulate N customers (seeded), fit both
/// CLV models `runs` times, print the median fit time and this process's
/// peak RSS.
fn clv_bench(customers: usize, runs: usize) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let book = simulate_clv(customers, 42);
    let days: f64 = book.iter().map(|c| c.x + 1.0).sum();
    println!(
        "simulated {customers} customers, {days:.0} purchase days, {} repeat customers in {:.2} s",
        book.iter().filter(|c| c.x > 0.0).count(),
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for run in 1..=runs {
        let t = std::time::Instant::now();
        let bgnbd = crate::clv::fit_bgnbd(&book).context("no BG/NBD fit")?;
        let bg_seconds = t.elapsed().as_secs_f64();
        let gg = crate::clv::fit_gamma_gamma(&book).context("no Gamma-Gamma fit")?;
        let seconds = t.elapsed().as_secs_f64();
        println!(
            "run {run}: {seconds:.2} s (BG/NBD {bg_seconds:.2} s: r {:.4} alpha {:.4} a {:.4} b {:.4}, converged {}; Gamma-Gamma p {:.4} q {:.4} gamma {:.4}, converged {})",
            bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b, bgnbd.converged, gg.p, gg.q, gg.gamma, gg.converged
        );
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    println!("clv fit: median {:.2} s over {runs} runs; peak RSS {:.0} MiB", times[times.len() / 2], peak_rss_mib());
    Ok(())
}

/// The peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
        usage.ru_maxrss.max(0) as f64 / 1024.0
    } else {
        f64::NAN
    }
}

/// Features of the churn bench: as many as `int_churn_observations` has.
const CHURN_FEATURES: usize = 16;

/// `tenure bench --churn-customers N`: N simulated customers × 24 monthly
/// snapshots (seeded), each with 16 features and a churn label drawn from
/// a logistic model of them; standardise and fit the churn model `runs`
/// times, print the median time, the fit, its in-sample AUC and this
/// process's peak RSS.
fn churn_bench(customers: usize, runs: usize) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(42);
    let rows = customers * 24;
    let truth: Vec<f64> = (0..CHURN_FEATURES).map(|j| if j % 3 == 0 { 0.0 } else { (j as f64 - 8.0) / 8.0 }).collect();
    let mut x = Vec::with_capacity(rows * CHURN_FEATURES);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut z = -2.5;
        for (j, beta) in truth.iter().enumerate() {
            // Scores on 0..100, indicators, counts: features of unlike scales.
            let v = match j % 4 {
                0 => 100.0 * rng.f64(),
                1 => f64::from(u8::from(rng.f64() < 0.2)),
                2 => f64::from(rng.u8(0..6)),
                _ => rng.f64() * 8.0,
            };
            let scale = match j % 4 {
                0 => 30.0,
                1 => 0.4,
                2 => 1.7,
                _ => 2.3,
            };
            z += beta * v / scale;
            x.push(v);
        }
        y.push(rng.f64() < 1.0 / (1.0 + (-z).exp()));
    }
    println!("simulated {customers} customers x 24 snapshots = {rows} observations, {} churned", y.iter().filter(|c| **c).count());
    let mut times = Vec::new();
    for run in 1..=runs {
        let t = std::time::Instant::now();
        let standardiser = crate::churn::Standardiser::fit(&x, CHURN_FEATURES);
        let z = standardiser.apply_rows(&x);
        let model = crate::churn::fit_logistic(&z, CHURN_FEATURES, &y, 1.0).context("no fit")?;
        let seconds = t.elapsed().as_secs_f64();
        let p: Vec<f64> = z.chunks(CHURN_FEATURES).map(|row| model.probability(row)).collect();
        let auc = crate::churn::auc(&p, &y).unwrap_or(f64::NAN);
        println!("run {run}: {seconds:.2} s ({} iterations, converged {}, in-sample AUC {auc:.4})", model.iterations, model.converged);
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    println!("churn fit: median {:.2} s over {runs} runs; peak RSS {:.0} MiB", times[times.len() / 2], peak_rss_mib());
    Ok(())
}

/// Customers of the BG/NBD process (CDNOW's r, α, a, b; weeks), each
/// observed for 1 to 78 weeks after its first purchase, with Gamma-Gamma
/// spend (CDNOW's p, q, γ). Seeded: the same book every time.
fn simulate_clv(customers: usize, seed: u64) -> Vec<crate::clv::Customer> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (r, alpha, a, b) = (0.243, 4.414, 0.793, 2.426);
    let (p, q, gamma) = (6.25, 3.74, 15.44);
    (0..customers)
        .map(|_| {
            let t = 1.0 + 77.0 * rng.f64();
            let lambda = gamma_sample(&mut rng, r) / alpha;
            let drop = {
                let (u, v) = (gamma_sample(&mut rng, a), gamma_sample(&mut rng, b));
                u / (u + v)
            };
            let (mut now, mut x, mut t_x) = (0.0, 0.0, 0.0);
            loop {
                now += -(1.0 - rng.f64()).ln() / lambda.max(1e-12);
                if now > t {
                    break;
                }
                x += 1.0;
                t_x = now;
                // Each repeat purchase may be the last: the customer leaves
                // after it with probability `drop`.
                if rng.f64() < drop {
                    break;
                }
            }
            let scale = gamma / gamma_sample(&mut rng, q).max(1e-12);
            let monetary = (x > 0.0).then(|| {
                let total: f64 = (0..x as usize).map(|_| gamma_sample(&mut rng, p) * scale).sum();
                total / x
            });
            crate::clv::Customer { x, t_x, t, monetary }
        })
        .collect()
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shape < 1 boosted).
fn gamma_sample(rng: &mut fastrand::Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        return gamma_sample(rng, shape + 1.0) * rng.f64().max(f64::MIN_POSITIVE).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal by Box-Muller.
        let z = (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.f64();
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}
