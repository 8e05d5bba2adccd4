//! Month close (METRICS.md §12): the figures finance signs, and every later
//! difference from them.
//!
//! A covered month closes at the first publishing run whose as-of date is at
//! least `finance.close_after_days` after the month's last day, or by hand
//! (`tenure close --month`). Closing appends the month's rows of the
//! [`CLOSED`] marts, as that run computed them, to `reported_<table>` with
//! `close_version`, `closed_on` and `close_run_id`. Those tables only grow:
//! no run, vacuum or full refresh rewrites them. Every closing run (and
//! `tenure close`) then rebuilds `restatements`: each cell of a closed
//! month whose current figure differs from its latest close.
//!
//! Closing is exclusive across the warehouse ([`CLOSE_LEASE`], held from
//! reading the closes until the run's report is written), so a month closes
//! once even when runs race. Readers see a table at the version the newest
//! succeeded run report records (see `query::published`), so a close
//! committed by a run that then died is seen by no one, and the next close
//! removes its rows in the same commit that appends its own ([`append`]).

use crate::pipeline::history;
use crate::pipeline::RunReport;
use crate::publish::{self, PublishError, Published};
use crate::storage::{open_delta_table, StorageError};
use crate::warehouse::Warehouse;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The marts whose months close, and whether each has a `segment` key.
pub const CLOSED: [(&str, bool); 4] = [
    ("mrr_bridge_monthly", true),
    ("ndr_trailing_12m", true),
    ("retention_kpis_monthly", false),
    ("finance_kpis_monthly", true),
];

/// The table of differences between closed months and the current figures.
pub const RESTATEMENTS: &str = "restatements";

/// The lease that makes closing exclusive across the warehouse.
pub const CLOSE_LEASE: &str = "warehouse.close";

/// The pipeline name of the run reports `tenure close` writes.
pub const CLOSE_PIPELINE: &str = "(close)";

/// Columns of a closed mart that are never compared: its keys and `is_complete`.
const NOT_COMPARED: [&str; 3] = ["month", "segment", "is_complete"];

/// Columns the reported tables add to the mart's.
const CLOSE_COLUMNS: [&str; 3] = ["close_version", "closed_on", "close_run_id"];

/// Float64 cells equal within this relative difference are not restatements.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// Whether `table` is one the close writes: read empty (its version 0)
/// until a published run records a version of it.
pub fn is_close_table(table: &str) -> bool {
    table == RESTATEMENTS || CLOSED.iter().any(|(t, _)| table.strip_prefix("reported_") == Some(*t))
}

/// The reported table of a closed mart.
pub fn reported_name(table: &str) -> String {
    format!("reported_{table}")
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{table}: {source}")]
    Read {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("{0}")]
    Rows(#[from] arrow::error::ArrowError),
    #[error("the run history: {0}")]
    History(#[from] history::HistoryError),
    #[error("the close lease: {0}")]
    Lease(#[from] crate::lease::HoldError),
    #[error("the close lease was lost before the close was committed; nothing was closed")]
    LeaseLost,
    #[error("{0}")]
    Refused(String),
}

/// A month this run closed, or restated on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    /// `YYYY-MM`.
    pub month: String,
    pub close_version: i64,
    pub closed_on: String,
    /// Why it was restated (`tenure close --restate --reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rows appended to the reported tables for it.
    pub rows: u64,
}

/// A closed month whose current figures differ from its latest close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restated {
    /// `YYYY-MM`.
    pub month: String,
    /// Cells of `restatements` for the month.
    pub cells: u64,
    pub close_version: i64,
    pub closed_on: String,
    pub close_run_id: String,
    /// Whether the run before did not restate it so (first seen now).
    pub new: bool,
    /// Events dated in or before the month that runs after the close
    /// ingested (late events), when that can be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_events: Option<u64>,
    /// What else changed since the close, where it can be told: the
    /// fingerprint of the SQL and parameters at the close and now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// What closes: every due month, or one month by hand.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Every covered month with last day + `after_days` ≤ the as-of date,
    /// not closed yet, oldest first.
    Due { after_days: i64 },
    /// One month (`tenure close --month`); with a reason, again as a new
    /// close version (`--restate --reason`).
    Month { month: NaiveDate, restate: Option<String> },
}

/// The figures of the closed marts as one run has them: each mart's rows.
#[derive(Default, Clone)]
pub struct Current {
    tables: BTreeMap<String, (SchemaRef, Vec<RecordBatch>)>,
}

impl Current {
    /// Keep `batches` if `table` is one of the [`CLOSED`] marts.
    pub fn offer(&mut self, table: &str, schema: SchemaRef, batches: &[RecordBatch]) {
        if CLOSED.iter().any(|(t, _)| *t == table) {
            self.tables.insert(table.to_string(), (schema, batches.to_vec()));
        }
    }

    /// Whether every closed mart is here (a run that built them all).
    pub fn is_whole(&self) -> bool {
        CLOSED.iter().all(|(t, _)| self.tables.contains_key(*t))
    }

    fn get(&self, table: &str) -> (SchemaRef, &[RecordBatch]) {
        match self.tables.get(table) {
            Some((schema, batches)) => (schema.clone(), batches),
            None => (Arc::new(Schema::empty()), &[]),
        }
    }
}

/// What closing did, for the run report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub closed: Vec<Closed>,
    pub restated: Vec<Restated>,
    /// The reported tables and `restatements`, at the versions readers see.
    pub published: Vec<Published>,
}

/// Who closes, and against what.
pub struct Closing<'a> {
    pub warehouse: &'a Warehouse,
    /// A session where `events` is registered (for late events).
    pub ctx: &'a SessionContext,
    pub run_id: &'a str,
    pub as_of: NaiveDate,
    /// The fingerprint of the SQL and parameters of the figures.
    pub shape: Option<&'a str>,
    pub mode: Mode,
}

/// One row of a closed mart: its key and its cells by column.
type Key = (i32, Option<String>);

/// A closed month's latest close.
#[derive(Debug, Clone)]
struct Close {
    version: i64,
    closed_on: i32,
    run_id: String,
}

/// Close what `closing.mode` says with the figures of `current`, and
/// rebuild `restatements`. The caller holds [`CLOSE_LEASE`] until its run
/// report is written.
pub async fn close(closing: &Closing<'_>, current: &Current) -> Result<Outcome, CloseError> {
    let warehouse = closing.warehouse;
    // Read under the lease: closes of runs that finished meanwhile count.
    let runs = history::list(warehouse).await?;
    let mut outcome = Outcome::default();

    // What the reported tables hold, as readers see them.
    let mut reported: BTreeMap<&str, Reported> = BTreeMap::new();
    for (table, _) in CLOSED {
        reported.insert(table, Reported::read(closing.ctx, warehouse, table, &runs).await?);
    }
    let mut closes: BTreeMap<i32, Close> = BTreeMap::new();
    for r in reported.values() {
        for (month, close) in r.closes()? {
            let newer = closes.get(&month).is_none_or(|c| c.version < close.version);
            if newer {
                closes.insert(month, close);
            }
        }
    }

    // The months to close now, oldest first.
    let (_, bridge) = current.get("mrr_bridge_monthly");
    let covered = covered_months(bridge)?;
    let as_of = crate::dates::days_since_epoch(closing.as_of);
    let mut to_close: BTreeMap<i32, (i64, Option<String>)> = BTreeMap::new();
    match &closing.mode {
        Mode::Due { after_days } => {
            for &m in &covered {
                let last = last_day(m);
                if !closes.contains_key(&m) && last + *after_days as i32 <= as_of {
                    to_close.insert(m, (1, None));
                }
            }
        }
        Mode::Month { month, restate } => {
            let m = crate::dates::days_since_epoch(*month);
            let label = month_label(m);
            if !covered.contains(&m) {
                return Err(CloseError::Refused(format!("{label} is not a covered month of the published tables (as of {})", closing.as_of)));
            }
            if last_day(m) > as_of {
                return Err(CloseError::Refused(format!(
                    "{label} is not complete as of {} (the as-of date of the published tables)",
                    closing.as_of
                )));
            }
            match (closes.get(&m), restate) {
                (Some(c), None) => {
                    return Err(CloseError::Refused(format!(
                        "{label} was closed on {} (close version {}); to report its current figures again, \
                         run `tenure close --month {label} --restate --reason TEXT`",
                        date_text(c.closed_on),
                        c.version
                    )))
                }
                (None, Some(_)) => {
                    return Err(CloseError::Refused(format!(
                        "{label} is not closed yet, so it cannot be restated; close it with `tenure close --month {label}`"
                    )))
                }
                (Some(c), Some(reason)) => {
                    to_close.insert(m, (c.version + 1, Some(reason.clone())));
                }
                (None, None) => {
                    to_close.insert(m, (1, None));
                }
            }
        }
    }

    // Append the months' rows (and remove what runs that never published
    // left), one commit per reported table.
    let mut appended_rows: BTreeMap<i32, u64> = BTreeMap::new();
    for (table, _) in CLOSED {
        let (schema, batches) = current.get(table);
        let reported_schema = with_close_columns(&schema);
        let rows = close_rows(&schema, batches, &reported_schema, &to_close, as_of, closing.run_id, &mut appended_rows)?;
        let r = reported.get_mut(table).expect("every closed table is read");
        if !to_close.is_empty() {
            crate::failpoint(&format!("close:{table}"));
        }
        let published = publish::append(
            warehouse.mart(&reported_name(table)),
            &reported_name(table),
            &reported_schema,
            rows.clone(),
            r.recorded,
            closing.run_id,
        )
        .await?;
        r.batches.extend(rows);
        outcome.published.push(published);
    }
    for (&m, (version, reason)) in &to_close {
        closes.insert(
            m,
            Close {
                version: *version,
                closed_on: as_of,
                run_id: closing.run_id.to_string(),
            },
        );
        outcome.closed.push(Closed {
            month: month_label(m),
            close_version: *version,
            closed_on: closing.as_of.to_string(),
            reason: reason.clone(),
            rows: appended_rows.get(&m).copied().unwrap_or(0),
        });
    }
    if !outcome.closed.is_empty() {
        let months: Vec<&str> = outcome.closed.iter().map(|c| c.month.as_str()).collect();
        tracing::info!(months = %months.join(", "), "months closed");
    }
    crate::failpoint("close:before_restatements");

    // Restatements: every closed month's latest close against the current rows.
    let mut diffs = Vec::new();
    for (table, has_segment) in CLOSED {
        let (schema, batches) = current.get(table);
        let current_rows = Rows::of(&schema, batches, has_segment)?;
        let r = &reported[table];
        let reported_rows = Rows::of(&r.schema(), &r.batches, has_segment)?.latest_closes(&closes);
        diffs.extend(differences(table, &closes, &reported_rows, &current_rows, &current_rows.columns));
    }
    diffs.sort_by(|a, b| (a.month, a.table, &a.segment, a.column_order).cmp(&(b.month, b.table, &b.segment, b.column_order)));
    let batch = restatements_batch(&diffs)?;
    publish::create_empty(&warehouse.mart(RESTATEMENTS), RESTATEMENTS, &batch.schema(), closing.run_id).await?;
    let staged = publish::stage(warehouse.mart(RESTATEMENTS), RESTATEMENTS.to_string(), 0, batch.schema(), vec![batch], None).await?;
    outcome.published.push(publish::commit(staged, closing.run_id).await?);

    outcome.restated = restated_months(closing, &closes, &diffs, &runs).await;
    let new: Vec<String> = outcome.restated.iter().filter(|r| r.new).map(|r| format!("{} ({} cells)", r.month, r.cells)).collect();
    if !new.is_empty() {
        tracing::warn!(months = %new.join(", "), "closed months restated: their current figures differ from those reported (see the restatements table)");
    }
    Ok(outcome)
}

/// The reported rows of one closed mart, at the version readers see.
struct Reported {
    /// The version the newest succeeded run report records, if any does.
    recorded: Option<i64>,
    batches: Vec<RecordBatch>,
}

impl Reported {
    async fn read(ctx: &SessionContext, warehouse: &Warehouse, table: &str, runs: &[RunReport]) -> Result<Reported, CloseError> {
        let name = reported_name(table);
        let recorded = recorded_version(runs, &name);
        let Some(version) = recorded else {
            return Ok(Reported { recorded, batches: Vec::new() });
        };
        let batches = read_version(ctx, warehouse, &name, Some(version)).await?;
        Ok(Reported { recorded, batches })
    }

    fn schema(&self) -> SchemaRef {
        self.batches.first().map(|b| b.schema()).unwrap_or_else(|| Arc::new(Schema::empty()))
    }

    /// Each month's latest close in these rows.
    fn closes(&self) -> Result<Vec<(i32, Close)>, CloseError> {
        let mut out = Vec::new();
        for b in &self.batches {
            let (Some(month), Some(version), Some(on), Some(run)) = (
                b.column_by_name("month"),
                b.column_by_name("close_version"),
                b.column_by_name("closed_on"),
                b.column_by_name("close_run_id"),
            ) else {
                continue;
            };
            let (month, version, on, run) = (dates(month)?, integers(version)?, dates(on)?, texts(run)?);
            for i in 0..b.num_rows() {
                out.push((
                    month.value(i),
                    Close {
                        version: version.value(i),
                        closed_on: on.value(i),
                        run_id: run.value(i).to_string(),
                    },
                ));
            }
        }
        Ok(out)
    }
}

/// The newest version of `table` a succeeded run report records.
pub fn recorded_version(runs: &[RunReport], table: &str) -> Option<i64> {
    runs.iter()
        .filter(|r| r.succeeded())
        .flat_map(|r| r.tables.iter())
        .filter(|t| t.name == table)
        .map(|t| t.version)
        .max()
}

/// Every row of the mart `name` at `version` (the newest when `None`).
async fn read_version(ctx: &SessionContext, warehouse: &Warehouse, name: &str, version: Option<i64>) -> Result<Vec<RecordBatch>, CloseError> {
    let err = |source| CloseError::Read { table: name.to_string(), source };
    let external = |e: String| err(datafusion::error::DataFusionError::External(e.into()));
    let mut table = open_delta_table(&warehouse.mart(name)).await?;
    if let Some(v) = version {
        if table.version().map(|x| x as i64) != Some(v) {
            table.load_version(v as u64).await.map_err(|e| external(e.to_string()))?;
        }
    }
    if table.version().is_none() {
        return Ok(Vec::new());
    }
    table.update_datafusion_session(&ctx.state()).map_err(|e| external(e.to_string()))?;
    let provider = table.table_provider().await.map_err(|e| external(e.to_string()))?;
    ctx.read_table(provider).map_err(err)?.collect().await.map_err(err)
}

/// The figures of the closed marts as the newest succeeded run that built
/// them all published them: what `tenure close` closes. Returns that run too.
pub async fn published_figures(ctx: &SessionContext, warehouse: &Warehouse, runs: &[RunReport]) -> Result<(Current, RunReport), CloseError> {
    let run = runs
        .iter()
        .rev()
        .find(|r| r.succeeded() && CLOSED.iter().all(|(t, _)| r.tables.iter().any(|p| p.name == *t)))
        .ok_or_else(|| {
            CloseError::Refused(
                "no run has published the month-close tables yet (mrr_bridge_monthly, ndr_trailing_12m, \
                 retention_kpis_monthly, finance_kpis_monthly); run `tenure run` first"
                    .into(),
            )
        })?;
    let mut current = Current::default();
    for (table, _) in CLOSED {
        let version = run.tables.iter().find(|p| p.name == table).map(|p| p.version);
        let batches = read_version(ctx, warehouse, table, version).await?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => {
                let t = open_delta_table(&warehouse.mart(table)).await?;
                deltalake::writer::RecordBatchWriter::for_table(&t)
                    .map_err(|e| CloseError::Refused(format!("{table}: {e}")))?
                    .arrow_schema()
            }
        };
        current.offer(table, schema, &batches);
    }
    Ok((current, run.clone()))
}

/// `tenure close --month YYYY-MM [--restate --reason TEXT]`: close one month
/// with the published figures (those of the newest succeeded run that built
/// every closed mart, as of its date), or report them again as a new close
/// version. Writes a run report of its own (pipeline [`CLOSE_PIPELINE`]), so
/// that readers see the close with the run's other tables. Returns the
/// report and where it was written.
pub async fn close_by_hand(
    config: &crate::config::Config,
    month: NaiveDate,
    restate: Option<String>,
    clock: Arc<dyn crate::clock::Clock>,
) -> Result<(RunReport, String), CloseError> {
    let warehouse = Warehouse::of(config)?;
    let started = std::time::Instant::now();
    let ctx = crate::engine::session();
    let store = crate::lease::LeaseStore::new(&warehouse, CLOSE_LEASE, &crate::lease::holder_id(), config.scheduler.lease_ttl);
    let held = crate::lease::acquire_when_free(&store, clock.clone(), std::time::Duration::from_millis(500)).await?;
    let runs = history::list(&warehouse).await?;
    let (current, source) = published_figures(&ctx, &warehouse, &runs).await?;
    let as_of: NaiveDate = source
        .as_of
        .parse()
        .map_err(|_| CloseError::Refused(format!("run {} has no as-of date", source.run_id)))?;
    crate::pipeline::register_sources(&ctx, &warehouse, false)
        .await
        .map_err(|e| CloseError::Refused(format!("cannot read events: {e}")))?;
    let mut report = RunReport::new(
        crate::pipeline::new_run_id(clock.as_ref()),
        CLOSE_PIPELINE,
        if restate.is_some() { "restate" } else { "close" },
        as_of,
        config,
        String::new(),
        warehouse.display(),
        clock.now(),
    );
    report.shape = source.shape.clone();
    let closing = Closing {
        warehouse: &warehouse,
        ctx: &ctx,
        run_id: &report.run_id,
        as_of,
        shape: source.shape.as_deref(),
        mode: Mode::Month { month, restate },
    };
    let outcome = close(&closing, &current).await?;
    if held.is_lost() {
        return Err(CloseError::LeaseLost);
    }
    report.tables = outcome.published;
    report.closes = outcome.closed;
    report.restated = outcome.restated;
    report.status = crate::pipeline::RunStatus::Succeeded;
    report.seconds = started.elapsed().as_secs_f64();
    report.finished_at = Some(clock.now().to_rfc3339());
    let path = report
        .write(&warehouse)
        .await
        .map_err(|e| CloseError::Refused(format!("the close was committed but its run report was not written, so no reader sees it: {e}")))?;
    held.release().await;
    Ok((report, path))
}

/// A column as dates, integers or text (the types a mart's keys and the
/// close columns have, whatever layout a reader gave them).
fn dates(a: &ArrayRef) -> Result<arrow::array::Date32Array, arrow::error::ArrowError> {
    Ok(arrow::compute::cast(a, &DataType::Date32)?.as_primitive::<arrow::datatypes::Date32Type>().clone())
}

fn integers(a: &ArrayRef) -> Result<arrow::array::Int64Array, arrow::error::ArrowError> {
    Ok(arrow::compute::cast(a, &DataType::Int64)?.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

fn texts(a: &ArrayRef) -> Result<arrow::array::StringArray, arrow::error::ArrowError> {
    Ok(arrow::compute::cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// The covered months: those with an `'all'` row in the bridge.
fn covered_months(bridge: &[RecordBatch]) -> Result<BTreeSet<i32>, CloseError> {
    let mut months = BTreeSet::new();
    for b in bridge {
        let (Some(month), Some(segment)) = (b.column_by_name("month"), b.column_by_name("segment")) else {
            continue;
        };
        let (month, segment) = (dates(month)?, texts(segment)?);
        for i in 0..b.num_rows() {
            if segment.is_valid(i) && segment.value(i) == "all" && month.is_valid(i) {
                months.insert(month.value(i));
            }
        }
    }
    Ok(months)
}

/// The columns of a reported table: the mart's, then [`CLOSE_COLUMNS`].
fn with_close_columns(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(CLOSE_COLUMNS[0], DataType::Int64, false));
    fields.push(Field::new(CLOSE_COLUMNS[1], DataType::Date32, false));
    fields.push(Field::new(CLOSE_COLUMNS[2], DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The rows of `batches` whose month closes now, with the close columns.
fn close_rows(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    reported_schema: &SchemaRef,
    to_close: &BTreeMap<i32, (i64, Option<String>)>,
    closed_on: i32,
    run_id: &str,
    rows_per_month: &mut BTreeMap<i32, u64>,
) -> Result<Vec<RecordBatch>, CloseError> {
    let mut out = Vec::new();
    if to_close.is_empty() {
        return Ok(out);
    }
    for b in batches {
        let Some(month) = b.column_by_name("month") else { continue };
        let month = dates(month)?;
        let keep: arrow::array::BooleanArray = (0..b.num_rows())
            .map(|i| Some(month.is_valid(i) && to_close.contains_key(&month.value(i))))
            .collect();
        let kept = arrow::compute::filter_record_batch(b, &keep)?;
        if kept.num_rows() == 0 {
            continue;
        }
        let months = arrow::compute::filter(&month, &keep)?;
        let months = months.as_primitive::<arrow::datatypes::Date32Type>();
        let versions: arrow::array::Int64Array = (0..kept.num_rows()).map(|i| to_close[&months.value(i)].0).collect();
        for i in 0..kept.num_rows() {
            *rows_per_month.entry(months.value(i)).or_default() += 1;
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(reported_schema.fields().len());
        for field in schema.fields() {
            let column = kept.column_by_name(field.name()).ok_or_else(|| CloseError::Refused(format!("column {} missing", field.name())))?;
            columns.push(column.clone());
        }
        columns.push(Arc::new(versions));
        columns.push(Arc::new(arrow::array::Date32Array::from(vec![closed_on; kept.num_rows()])));
        columns.push(Arc::new(arrow::array::StringArray::from(vec![run_id; kept.num_rows()])));
        out.push(RecordBatch::try_new(reported_schema.clone(), columns)?);
    }
    Ok(out)
}

/// A cell as it is compared and shown.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Float(f64),
}

impl Cell {
    fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Float(a), Cell::Float(b)) => a == b || (a - b).abs() <= FLOAT_TOLERANCE * a.abs().max(b.abs()),
            (a, b) => a == b,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Text(t) => Some(t.clone()),
            Cell::Float(f) => Some(float_text(*f)),
        }
    }
}

/// The shortest text that reads back to `v`: Rust's shortest round-trip
/// digits, in plain or exponent notation, whichever is shorter.
pub fn float_text(v: f64) -> String {
    let plain = format!("{v}");
    let exp = format!("{v:e}");
    if exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

/// A decimal with exactly 4 fractional digits.
fn decimal_text(value: i128, scale: i8) -> String {
    let scaled = match scale {
        s if s <= 4 => value.checked_mul(10i128.pow((4 - s) as u32)),
        s => {
            let d = 10i128.pow((s - 4) as u32);
            let (q, r) = (value / d, value % d);
            Some(if r.abs() * 2 >= d { q + value.signum() } else { q })
        }
    };
    let Some(v) = scaled else {
        return format!("{value}e-{scale}");
    };
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
}

fn date_text(days: i32) -> String {
    crate::dates::from_days(days).map(|d| d.to_string()).unwrap_or_else(|| days.to_string())
}

fn month_label(days: i32) -> String {
    crate::dates::from_days(days).map(|d| d.format("%Y-%m").to_string()).unwrap_or_else(|| days.to_string())
}

/// The last day of the month starting on `first` (days since the epoch).
fn last_day(first: i32) -> i32 {
    let Some(d) = crate::dates::from_days(first) else { return first };
    let next = if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    };
    next.map(|n| crate::dates::days_since_epoch(n) - 1).unwrap_or(first)
}

/// The cells of one column, as compared.
fn cells(array: &ArrayRef) -> Result<Vec<Cell>, CloseError> {
    use arrow::datatypes::*;
    let n = array.len();
    let null_or = |i: usize, f: &dyn Fn(usize) -> Cell| if array.is_null(i) { Cell::Null } else { f(i) };
    let out = match array.data_type() {
        DataType::Decimal128(_, scale) => {
            let a = array.as_primitive::<Decimal128Type>();
            (0..n).map(|i| null_or(i, &|i| Cell::Text(decimal_text(a.value(i), *scale)))).collect()
        }
        DataType::Float64 | DataType::Float32 | DataType::Float16 => {
            let c = arrow::compute::cast(array, &DataType::Float64)?;
            let a = c.as_primitive::<Float64Type>();
            (0..n).map(|i| null_or(i, &|i| Cell::Float(a.value(i)))).collect()
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..n).map(|i| null_or(i, &|i| Cell::Text(a.value(i).to_string()))).collect()
        }
        DataType::Date32 | DataType::Date64 => {
            let c = arrow::compute::cast(array, &DataType::Date32)?;
            let a = c.as_primitive::<Date32Type>();
            (0..n).map(|i| null_or(i, &|i| Cell::Text(date_text(a.value(i))))).collect()
        }
        t if t.is_integer() => {
            let c = arrow::compute::cast(array, &DataType::Int64)?;
            let a = c.as_primitive::<Int64Type>();
            (0..n).map(|i| null_or(i, &|i| Cell::Text(a.value(i).to_string()))).collect()
        }
        _ => {
            let c = arrow::compute::cast(array, &DataType::Utf8)?;
            let a = c.as_string::<i32>();
            (0..n).map(|i| null_or(i, &|i| Cell::Text(a.value(i).to_string()))).collect()
        }
    };
    Ok(out)
}

/// The rows of one closed mart (current or reported), by key.
struct Rows {
    /// The compared columns, in the table's order.
    columns: Vec<String>,
    /// Key → (close version if reported, cells by column).
    rows: BTreeMap<Key, (Option<i64>, BTreeMap<String, Cell>)>,
}

impl Rows {
    fn of(schema: &SchemaRef, batches: &[RecordBatch], has_segment: bool) -> Result<Rows, CloseError> {
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !NOT_COMPARED.contains(&n.as_str()) && !CLOSE_COLUMNS.contains(&n.as_str()))
            .collect();
        let mut rows = BTreeMap::new();
        for b in batches {
            let Some(month) = b.column_by_name("month") else { continue };
            let month = dates(month)?;
            let segment = match (has_segment, b.column_by_name("segment")) {
                (true, Some(s)) => Some(texts(s)?),
                _ => None,
            };
            let version = b.column_by_name("close_version").map(integers).transpose()?;
            let mut by_column = Vec::new();
            for c in &columns {
                let cells = match b.column_by_name(c) {
                    Some(a) => cells(a)?,
                    None => vec![Cell::Null; b.num_rows()],
                };
                by_column.push((c.clone(), cells));
            }
            for i in 0..b.num_rows() {
                let seg = segment.as_ref().and_then(|s| s.is_valid(i).then(|| s.value(i).to_string()));
                let v = version.as_ref().map(|v| v.value(i));
                let cells = by_column.iter().map(|(c, cells)| (c.clone(), cells[i].clone())).collect();
                // Of a reported key, the latest version's row is kept.
                let key = (month.value(i), seg);
                let newer = match rows.get(&key) {
                    Some((Some(old), _)) => v.is_some_and(|v| v > *old),
                    Some((None, _)) => false,
                    None => true,
                };
                if newer {
                    rows.insert(key, (v, cells));
                }
            }
        }
        Ok(Rows { columns, rows })
    }

    /// Only the rows of each closed month's latest close.
    fn latest_closes(mut self, closes: &BTreeMap<i32, Close>) -> Rows {
        self.rows.retain(|(month, _), (version, _)| closes.get(month).is_some_and(|c| Some(c.version) == *version));
        self
    }
}

/// One differing cell.
struct Diff {
    month: i32,
    table: &'static str,
    segment: Option<String>,
    column_order: usize,
    column: String,
    reported: Option<String>,
    current: Option<String>,
    closed_on: i32,
    close_version: i64,
}

/// The differing cells of the closed months of one mart.
fn differences(table: &'static str, closes: &BTreeMap<i32, Close>, reported: &Rows, current: &Rows, order: &[String]) -> Vec<Diff> {
    let mut columns: Vec<String> = order.to_vec();
    for c in &reported.columns {
        if !columns.contains(c) {
            columns.push(c.clone());
        }
    }
    let keys: BTreeSet<&Key> = reported
        .rows
        .keys()
        .chain(current.rows.keys().filter(|(m, _)| closes.contains_key(m)))
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let close = &closes[&key.0];
        let (r, c) = (reported.rows.get(key), current.rows.get(key));
        for (order, column) in columns.iter().enumerate() {
            let cell = |row: Option<&(Option<i64>, BTreeMap<String, Cell>)>| row.map(|(_, cells)| cells.get(column).cloned().unwrap_or(Cell::Null));
            let (rc, cc) = (cell(r), cell(c));
            let differs = match (&rc, &cc) {
                (Some(a), Some(b)) => !a.same(b),
                _ => true,
            };
            if differs {
                out.push(Diff {
                    month: key.0,
                    table,
                    segment: key.1.clone(),
                    column_order: order,
                    column: column.clone(),
                    reported: rc.and_then(|c| c.text()),
                    current: cc.and_then(|c| c.text()),
                    closed_on: close.closed_on,
                    close_version: close.version,
                });
            }
        }
    }
    out
}

/// The `restatements` table.
fn restatements_batch(diffs: &[Diff]) -> Result<RecordBatch, CloseError> {
    use arrow::array::{Date32Array, Int64Array, StringArray};
    let schema = Arc::new(Schema::new(vec![
        Field::new("month", DataType::Date32, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, true),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("reported", DataType::Utf8, true),
        Field::new("current", DataType::Utf8, true),
        Field::new("closed_on", DataType::Date32, false),
        Field::new("close_version", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from_iter_values(diffs.iter().map(|d| d.month))),
        Arc::new(StringArray::from_iter_values(diffs.iter().map(|d| d.table))),
        Arc::new(StringArray::from_iter(diffs.iter().map(|d| d.segment.as_deref()))),
        Arc::new(StringArray::from_iter_values(diffs.iter().map(|d| d.column.as_str()))),
        Arc::new(StringArray::from_iter(diffs.iter().map(|d| d.reported.as_deref()))),
        Arc::new(StringArray::from_iter(diffs.iter().map(|d| d.current.as_deref()))),
        Arc::new(Date32Array::from_iter_values(diffs.iter().map(|d| d.closed_on))),
        Arc::new(Int64Array::from_iter_values(diffs.iter().map(|d| d.close_version))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The restated months for the run report: cells per month, whether the
/// run before restated it so too, and what changed since the close.
async fn restated_months(closing: &Closing<'_>, closes: &BTreeMap<i32, Close>, diffs: &[Diff], runs: &[RunReport]) -> Vec<Restated> {
    let mut cells: BTreeMap<i32, u64> = BTreeMap::new();
    for d in diffs {
        *cells.entry(d.month).or_default() += 1;
    }
    // The restatements the latest closing run reported.
    let before = runs
        .iter()
        .rev()
        .find(|r| r.succeeded() && r.tables.iter().any(|t| t.name == RESTATEMENTS))
        .map(|r| r.restated.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (month, n) in cells {
        let close = &closes[&month];
        let label = month_label(month);
        let new = !before
            .iter()
            .any(|b| b.month == label && b.close_version == close.version && b.cells == n);
        let late_events = late_events(closing.ctx, last_day(month), &close.run_id).await;
        let mut changed = Vec::new();
        let at_close = runs.iter().find(|r| r.run_id == close.run_id).and_then(|r| r.shape.clone());
        if let (Some(then), Some(now)) = (at_close, closing.shape) {
            if then != now {
                changed.push(format!("parameters or SQL: fingerprint {then} at the close, {now} now"));
            }
        }
        out.push(Restated {
            month: label,
            cells: n,
            close_version: close.version,
            closed_on: date_text(close.closed_on),
            close_run_id: close.run_id.clone(),
            new,
            late_events,
            changed,
        });
    }
    out
}

/// Events dated on or before `last` that runs after `close_run_id`
/// ingested: run ids start with their start time, so they sort in time.
async fn late_events(ctx: &SessionContext, last: i32, close_run_id: &str) -> Option<u64> {
    use datafusion::prelude::{col, lit};
    let df = ctx.table("events").await.ok()?;
    let counted = df
        .filter(
            col("event_date")
                .lt_eq(lit(datafusion::scalar::ScalarValue::Date32(Some(last))))
                .and(col("run_id").gt(lit(close_run_id))),
        )
        .ok()?
        .count()
        .await
        .ok()?;
    Some(counted as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_in_their_shortest_form() {
        assert_eq!(float_text(0.1), "0.1");
        assert_eq!(float_text(1.0), "1");
        assert_eq!(float_text(-0.5), "-0.5");
        assert_eq!(float_text(1e-7), "1e-7");
        assert_eq!(float_text(1.3322259136212624), "1.3322259136212624");
        assert_eq!(float_text(1e21), "1e21");
        for v in [0.1, 1.0 / 3.0, 2.5e-12, 123456.789, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(float_text(v).parse::<f64>().expect("reads back"), v);
        }
    }

    #[test]
    fn decimals_have_exactly_four_fractional_digits() {
        assert_eq!(decimal_text(1_505_000, 4), "150.5000");
        assert_eq!(decimal_text(-5, 4), "-0.0005");
        assert_eq!(decimal_text(1505, 1), "150.5000");
        assert_eq!(decimal_text(0, 4), "0.0000");
        assert_eq!(decimal_text(123_456, 6), "0.1235");
    }

    #[test]
    fn floats_within_one_billionth_are_the_same() {
        assert!(Cell::Float(1.0).same(&Cell::Float(1.0 + 1e-10)));
        assert!(!Cell::Float(1.0).same(&Cell::Float(1.0 + 1e-8)));
        assert!(!Cell::Float(0.0).same(&Cell::Float(1e-300)));
        assert!(!Cell::Null.same(&Cell::Float(0.0)));
        assert!(Cell::Null.same(&Cell::Null));
    }

    #[test]
    fn the_last_day_of_a_month() {
        let d = |s: &str| crate::dates::days_since_epoch(s.parse().expect("date"));
        assert_eq!(last_day(d("2024-02-01")), d("2024-02-29"));
        assert_eq!(last_day(d("2023-12-01")), d("2023-12-31"));
        assert_eq!(last_day(d("2024-04-01")), d("2024-04-30"));
    }
}
