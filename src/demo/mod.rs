//! Deterministic sample data: raw event objects, as `spec/EVENTS.md` describes
//! them, written under a raw prefix on the local disk so that the pipeline can be
//! demonstrated, tested and benchmarked without real customer data.
//!
//! This module owns a small simulation of a SaaS business (customers in
//! segments, subscriptions with upgrades, downgrades, pauses, churn and
//! reactivation, payments with failures and refunds, product usage that fades
//! before churn, support tickets, surveys and email campaigns) and its rendering
//! to JSON Lines. In messy mode it adds what real landing zones contain: rows of
//! every reject reason, exact and conflicting duplicates, blank lines, a CSV, a
//! gzip and a zstd object, and files the pipeline must skip or ignore.
//!
//! It must not read the wall clock, use unseeded randomness, hold all events in
//! memory or depend on the rest of the crate: the same [`DemoOptions`] always
//! give byte-identical output, and usage events (the bulk) are streamed to disk
//! day by day. Only the sparse lifecycle events are planned up front.
//!
//! The parts, in the order data flows through them: `rng` (the seeded
//! randomness), `world` (the fixed tables and the calendar), `model` and
//! `simulation` (customers and their sparse events, planned up front),
//! `render` (events as JSON Lines and CSV rows), `messy` (duplicates, bad and
//! edge rows, odd objects) and `output` (objects on disk, parts, compression).
//! This file holds the public API and [`generate`], the day-by-day loop that
//! drives them.

use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use tracing::info;

use messy::{DupKind, Messy, PendingDup};
use output::Out;
use render::{render_sparse, write_usage_day, CsvRow, DayStrs, JsonLine};
use rng::Rng;
use simulation::{build_plan, usage_scale};
use world::World;

mod messy;
mod model;
mod output;
mod render;
mod rng;
mod simulation;
#[cfg(test)]
mod tests;
mod world;

/// What to generate. [`DemoOptions::demo`] gives the defaults of `tenure demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Number of customers (`cus_00000`, `cus_00001`, ...). Demo default 400.
    pub customers: usize,
    /// Months of history, ending with the month of `end_date`. Default 24.
    pub months: u32,
    /// Last day of the generated history. Only a handful of events fall on the
    /// three days after it, so that as-of exclusion can be tested.
    pub end_date: NaiveDate,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// Benchmark mode: scale usage events so that the total number of events is
    /// about this many (it cannot go below one usage event per active
    /// customer-day plus the lifecycle events).
    pub target_events: Option<u64>,
    /// Add bad rows, duplicates, blank lines, CSV, gzip and zstd objects, and
    /// files that the pipeline must skip (`notes.txt`) or ignore (`_SUCCESS`,
    /// `_tmp/`, `.part-*`).
    pub messy: bool,
}

impl DemoOptions {
    /// The demo defaults: 400 customers, 24 months ending at `end_date`,
    /// seed 42, normal data volume, messy input.
    pub fn demo(end_date: NaiveDate) -> Self {
        DemoOptions {
            customers: 400,
            months: 24,
            end_date,
            seed: 42,
            target_events: None,
            messy: true,
        }
    }
}

/// What [`generate`] wrote. For the data objects,
/// `rows read = events + bad_rows + duplicate_rows` (blank lines are not rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Data objects the pipeline reads (JSON Lines, CSV, gzip, zstd; an empty
    /// object included). Skipped and ignored files are not counted.
    pub objects: usize,
    /// Rows the pipeline must accept: valid events with distinct `event_id`s,
    /// including the few dated after `end_date`.
    pub events: u64,
    /// Rows the pipeline must reject (every reason code of EVENTS.md).
    pub bad_rows: u64,
    /// Valid rows whose `event_id` was already accepted earlier in path order
    /// (exact copies, the same instant in another offset, and a few with a
    /// conflicting payload).
    pub duplicate_rows: u64,
    /// Size on disk of the data objects.
    pub bytes: u64,
    /// Number of customers simulated.
    pub customers: usize,
}

/// Why demo data could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "demo needs at least one customer and one month of history \
         (got {customers} customers, {months} months)"
    )]
    EmptyHistory { customers: usize, months: u32 },
    #[error(
        "demo history of {months} months ending {end_date} is outside the supported \
         dates (years 1 to 9998); choose another end date or fewer months"
    )]
    DateRange { end_date: NaiveDate, months: u32 },
    #[error("cannot create demo directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write demo object {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} exists and was not made by tenure demo; pick another --dir", path.display())]
    NotADemoDir { path: PathBuf },
    #[error("cannot clear {}", path.display())]
    Clear {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A demo folder: the sample raw data and the warehouse the demo runs into.
#[derive(Debug, Clone)]
pub struct DemoDir {
    pub raw: PathBuf,
    pub warehouse: PathBuf,
}

/// Make `dir` a demo folder afresh (`raw/` and `warehouse/` inside it are
/// replaced; a folder that holds anything else and was not made by a demo is
/// refused) and generate the sample data into its `raw/`.
pub fn prepare(dir: &Path, opts: &DemoOptions) -> Result<(DemoDir, DemoSummary), DemoError> {
    let demo = DemoDir {
        raw: dir.join("raw"),
        warehouse: dir.join("warehouse"),
    };
    let marker = dir.join(".tenure-demo");
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !marker.exists() && !empty {
            return Err(DemoError::NotADemoDir { path: dir.to_path_buf() });
        }
        for sub in [&demo.raw, &demo.warehouse] {
            if sub.exists() {
                std::fs::remove_dir_all(sub).map_err(|source| DemoError::Clear { path: sub.clone(), source })?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| DemoError::CreateDir { path: dir.to_path_buf(), source })?;
    std::fs::write(&marker, "made by tenure demo; its raw/ and warehouse/ are replaced by every demo run\n")
        .map_err(|source| DemoError::Write { path: marker.clone(), source })?;
    let summary = generate(&demo.raw, opts)?;
    Ok((demo, summary))
}

/// The customer of the demo's late object ([`write_late_object`]).
pub const LATE_CUSTOMER: &str = "cus_late";

/// Write one object that arrives after the history was closed: a customer
/// signed in the month before `arrives` (a contract booked late), stored
/// under `arrives`' folder. A run after the one over the history ingests it
/// and restates that closed month (METRICS.md §12). Returns its path.
pub fn write_late_object(dir: &Path, arrives: NaiveDate) -> Result<PathBuf, DemoError> {
    use chrono::Datelike;
    let first = arrives.with_day(1).unwrap_or(arrives);
    let signed = first.pred_opt().and_then(|d| d.with_day(20)).unwrap_or(first);
    let folder = dir.join(format!("events/{}", arrives.format("%Y/%m/%d")));
    let path = folder.join("late-booking.jsonl");
    let body = format!(
        "{{\"event_id\":\"evt_late_0001\",\"event_type\":\"customer.created\",\"customer_id\":\"{LATE_CUSTOMER}\",\"occurred_at\":\"{signed}T09:00:00Z\",\"name\":\"Late Booking Ltd\",\"segment\":\"enterprise\"}}\n\
         {{\"event_id\":\"evt_late_0002\",\"event_type\":\"subscription.started\",\"customer_id\":\"{LATE_CUSTOMER}\",\"occurred_at\":\"{signed}T09:30:00Z\",\"subscription_id\":\"sub_late_0001\",\"plan\":\"enterprise\",\"mrr\":\"1250.00\",\"currency\":\"USD\"}}\n"
    );
    std::fs::create_dir_all(&folder).map_err(|source| DemoError::CreateDir { path: folder.clone(), source })?;
    std::fs::write(&path, body).map_err(|source| DemoError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Write demo data under `dir` (the raw prefix): `events/YYYY/MM/DD/part-NNNN.jsonl`
/// objects, one or more per day, plus the messy extras when asked. Objects with
/// the same names are overwritten; other files in `dir` are left alone, so use
/// an empty directory.
pub fn generate(dir: &Path, opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let world = World::new(opts)?;
    let mut plan = build_plan(opts, &world);
    let fixed: u64 = plan.buckets.iter().map(|b| b.len() as u64).sum();
    let scale = usage_scale(&plan.customers, &world, opts.target_events, fixed);

    let mut out = Out::new(dir, opts.customers);
    let messy = opts.messy.then(|| Messy::new(&world, &plan));
    let mut fmt_rng = Rng::derive(opts.seed, 0xF0F0_F0F0);
    let mut json = JsonLine::default();
    let mut scratch = Vec::with_capacity(64);
    let mut cursors = vec![0usize; plan.customers.len()];
    let mut pending: Vec<PendingDup> = Vec::new();
    let mut dup_candidates = 0usize;

    for d in 0..world.total_days {
        let date = world.date(d);
        let days = DayStrs::new(date);
        let day_messy = messy.as_ref().map(|m| m.day(d)).unwrap_or_default();
        out.begin_day(date, day_messy.encoding, day_messy.crlf, day_messy.bom);

        let mut sparse = std::mem::take(&mut plan.buckets[d as usize]);
        sparse.sort_by_key(|s| (s.sec, s.cust));
        let mut csv_rows: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut took_candidate = false;
        for ev in &sparse {
            let c = &plan.customers[ev.cust as usize];
            let id = out.next_id();
            if day_messy.csv && ev.kind.is_helpdesk() {
                let mut row = CsvRow::new();
                render_sparse(
                    &mut row,
                    &mut fmt_rng,
                    &mut scratch,
                    id,
                    &days,
                    &world,
                    c,
                    ev,
                );
                csv_rows.push(row.cells);
                out.summary.events += 1;
                continue;
            }
            json.begin();
            render_sparse(
                &mut json,
                &mut fmt_rng,
                &mut scratch,
                id,
                &days,
                &world,
                c,
                ev,
            );
            json.end();
            out.valid_line(&json.buf, id)?;
            if messy.is_some() && d <= world.last && d % 15 == 7 && !took_candidate {
                took_candidate = true;
                let kind = DupKind::cycle(dup_candidates);
                dup_candidates += 1;
                if kind == DupKind::SameObject {
                    out.duplicate_line(&json.buf, false)?;
                } else {
                    let emit_day = d + 1 + (dup_candidates as u32 % 4);
                    pending.push(PendingDup {
                        emit_day,
                        line: json.buf.clone(),
                        kind,
                    });
                }
            }
        }
        drop(sparse);

        if d <= world.last {
            let weekend = (world.start_weekday + d) % 7 >= 5;
            for (ci, c) in plan.customers.iter().enumerate() {
                let Some(u) = c.usage_at(&mut cursors[ci], d, weekend) else {
                    continue;
                };
                if !fmt_rng.chance(u.p) {
                    continue;
                }
                write_usage_day(&mut out, &mut json, &mut fmt_rng, &days, c, &u, scale)?;
            }
        }

        if let Some(m) = &messy {
            m.write_day_extras(&mut out, &mut scratch, d, &days, &day_messy)?;
            let flush_all = d == world.last;
            let mut keep = Vec::with_capacity(pending.len());
            for p in pending.drain(..) {
                if p.emit_day <= d || flush_all {
                    let (line, conflicting) = p.kind.render(&p.line);
                    out.duplicate_line(&line, conflicting)?;
                } else {
                    keep.push(p);
                }
            }
            pending = keep;
            if day_messy.csv {
                let bytes = m.csv_object(&mut out, &csv_rows, &days)?;
                let rel = format!("{}/helpdesk-export.csv", out.day_rel);
                out.whole_object(&rel, &bytes, true)?;
            }
            if day_messy.empty_object {
                let rel = format!("{}/empty-0000.jsonl", out.day_rel);
                out.whole_object(&rel, b"", true)?;
            }
        }
        out.end_day()?;
    }
    if let Some(m) = &messy {
        m.write_side_files(&mut out, &world)?;
    }

    let summary = out.summary.clone();
    info!(
        dir = %dir.display(),
        objects = summary.objects,
        events = summary.events,
        bad_rows = summary.bad_rows,
        duplicate_rows = summary.duplicate_rows,
        conflicting_duplicates = out.conflicting,
        bytes = summary.bytes,
        customers = summary.customers,
        "demo data written"
    );
    Ok(summary)
}
