//! Incremental runs: how much of the published marts a run can keep.
//!
//! Every metric of a month `m` (and every health snapshot `d`) is a function of
//! the events with local dates up to its cutoff, of the run parameters other
//! than the as-of date, and of the SQL. So when the previous run that published
//! (the *base*) had the same SQL and parameters, the rows of the months whose
//! cutoff was final in the base (complete months) and that no newly ingested
//! event reaches back to are still right. The run then recomputes from
//! `rebuild_from`, the first day of the earliest month that is not: the month
//! after the base's last complete month, or the month of the earliest event
//! ingested since the base, whichever is earlier. Models marked `-- incremental:
//! <date column>` keep their rows dated before `rebuild_from` and take the
//! recomputed rows from it on (their SQL computes only those, reading
//! `tenure_rebuild_from()`): the rows the base run kept of them (their
//! *state*: Arrow IPC files under `_state/<model>/`, one per month, written by
//! every run that publishes; a mart whose base kept none keeps its published
//! rows). A model marked `-- incremental: <date column> by day`, whose rows
//! each depend only on the events of their own date, recomputes from
//! `rebuild_from_day` instead: the day after the base's as-of date or the
//! date of the earliest event ingested since the base, whichever is earlier;
//! it is planned in a session where `tenure_rebuild_from()` is that day. The
//! other marts are rebuilt whole. Anything unusual (no base, other SQL or parameters, an
//! earlier as-of date, a mart changed since the base, state the base did not
//! keep, ingest entries that do not say what they accepted) means a full
//! rebuild. `plan`, `read_kept` and `merge` only read; `write_state` and `prune_state`
//! keep the state of the latest run that published.

use super::report::RunReport;
use crate::catalog::{Layer, Model};
use crate::engine::{self, Built, Params};
use crate::ingest::Manifest;
use crate::publish;
use crate::storage::open_delta_table;
use crate::warehouse::Warehouse;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{Datelike, Days, NaiveDate};
use datafusion::error::DataFusionError;
use datafusion::prelude::{col, lit, SessionContext};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;

/// Where runs keep the rows of incremental models that are not published.

/// The rows a run kept of one incremental model: every row it built with a
/// date, for the next run to keep those before its `rebuild_from`. One Arrow
/// IPC file per month of the model's date column: a run writes the months it
/// recomputed and lists the files of its base's earlier months as they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub name: String,
    /// One object of every row, relative to the warehouse: how runs before
    /// state was kept per month kept it. Empty when `parts` lists the files.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub rows: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<StatePart>,
}

/// The kept rows of one model dated in one month.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatePart {
    /// The first day of the month.
    pub month: NaiveDate,
    /// The object, relative to the warehouse.
    pub path: String,
    pub rows: u64,
    /// XXH3-128 of the object's bytes as written (hex): a file that still
    /// hashes to it is the writer's output and is decoded without being
    /// validated again. Files of runs that did not record one are validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3: Option<String>,
}

impl State {
    /// Every object of the state, relative to the warehouse.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.path.as_str())
            .filter(|p| !p.is_empty())
            .chain(self.parts.iter().map(|p| p.path.as_str()))
    }
}

/// What a run recomputes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first local date recomputed (`engine::full_rebuild()` for all):
    /// the first day of a month.
    pub rebuild_from: NaiveDate,
    /// The first local date the models incremental `by day` recompute: the
    /// day after the base's as-of date, or the date of the earliest event
    /// ingested since the base, whichever is earlier. Never before
    /// `rebuild_from`.
    pub rebuild_from_day: NaiveDate,
    /// The run whose published rows before `rebuild_from` are kept.
    pub base: Option<Base>,
    /// Why the run rebuilds everything, when it does.
    pub full_because: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub run_id: String,
    /// Mart name -> the Delta version the base published (and still current).
    pub versions: BTreeMap<String, i64>,
    /// Model name -> the state the base kept of it. Every model that is not
    /// a mart has one; a mart without one keeps its published rows.
    pub state: BTreeMap<String, State>,
}

impl Plan {
    pub fn full(because: impl Into<String>) -> Plan {
        Plan {
            rebuild_from: engine::full_rebuild(),
            rebuild_from_day: engine::full_rebuild(),
            base: None,
            full_because: Some(because.into()),
        }
    }

    /// The first local date `model` recomputes.
    pub fn rebuild_from_of(&self, model: &Model) -> NaiveDate {
        if model.by_day {
            self.rebuild_from_day
        } else {
            self.rebuild_from
        }
    }
}

/// What the tables of a run are a function of besides the events and the
/// as-of date: tenure's version, the models' SQL and the other parameters.
pub fn shape_fingerprint(models: &[&Model], params: &Params) -> String {
    let mut text = format!("tenure {}\n", env!("CARGO_PKG_VERSION"));
    text.push_str(&format!(
        "{} {} {} {:?}\n",
        params.timezone, params.currency, params.activity_window_days, params.health
    ));
    for m in models {
        text.push_str(&m.name);
        text.push('\n');
        text.push_str(&m.sql);
    }
    xxh3_hex(text.as_bytes())
}

/// The first day of the month of `d`.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Decide what a run as of `as_of` recomputes, given the run history, the
/// ingest sequence its models read, the current versions of the incremental
/// marts and the names of the other incremental models (`carried`), whose
/// state the base must have kept in `warehouse`.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    runs: &[RunReport],
    shape: &str,
    as_of: NaiveDate,
    tz: chrono_tz::Tz,
    sequence: i64,
    manifest: &Manifest,
    current_versions: &BTreeMap<String, Option<i64>>,
    carried: &[&str],
    warehouse: &Warehouse,
) -> Plan {
    let Some(base) = latest_published(runs) else {
        return Plan::full("no earlier run published tables");
    };
    if base.shape.as_deref() != Some(shape) {
        return Plan::full(format!("the SQL or parameters differ from run {}", base.run_id));
    }
    let (Ok(base_as_of), Some(base_sequence)) = (base.as_of.parse::<NaiveDate>(), base.ingest_sequence) else {
        return Plan::full(format!("run {} does not record its as-of date and ingest sequence", base.run_id));
    };
    if base_as_of > as_of {
        return Plan::full(format!("run {} was as of a later date ({base_as_of})", base.run_id));
    }
    if base_sequence > sequence {
        return Plan::full(format!("run {} read events this run does not have", base.run_id));
    }
    let mut versions = BTreeMap::new();
    for (name, current) in current_versions {
        let published = base.tables.iter().find(|t| &t.name == name).map(|t| t.version);
        if published.is_none() || published != *current {
            return Plan::full(format!("mart {name} changed since run {}", base.run_id));
        }
        versions.insert(name.clone(), published.unwrap_or_default());
    }
    let state = match kept_state(base, carried, current_versions, warehouse).await {
        Ok(s) => s,
        Err(because) => return Plan::full(because),
    };
    // The days (and months) that were not final in the base.
    let mut rebuild_from_day = base_as_of + Days::new(1);
    // The months newly ingested events reach back to.
    let spans = match manifest.accepted_since(base_sequence, sequence).await {
        Ok(s) => s,
        Err(e) => return Plan::full(format!("cannot read the ingest manifest: {e}")),
    };
    for span in spans {
        let Some(span) = span else {
            return Plan::full("an ingest entry since the base does not record what it accepted");
        };
        if let Some(micros) = span.earliest_occurred_at {
            let Some(at) = chrono::DateTime::from_timestamp_micros(micros) else {
                return Plan::full("an ingest entry since the base records an impossible timestamp");
            };
            rebuild_from_day = rebuild_from_day.min(at.with_timezone(&tz).date_naive());
        }
    }
    Plan {
        rebuild_from: month_start(rebuild_from_day),
        rebuild_from_day,
        base: Some(Base {
            run_id: base.run_id.clone(),
            versions,
            state,
        }),
        full_because: None,
    }
}

/// The latest run that published tables: the only candidate base.
fn latest_published(runs: &[RunReport]) -> Option<&RunReport> {
    runs.iter().rev().find(|r| r.succeeded() && !r.tables.is_empty())
}

/// The state the base kept of each incremental model whose objects are all
/// there (one listing of `_state/`). A model that is not a mart must have
/// one; a mart without one keeps its published rows instead.
async fn kept_state(
    base: &RunReport,
    carried: &[&str],
    marts: &BTreeMap<String, Option<i64>>,
    warehouse: &Warehouse,
) -> Result<BTreeMap<String, State>, String> {
    let dir = warehouse.state();
    let listed: Vec<object_store::ObjectMeta> = dir
        .store
        .list(Some(&dir.prefix))
        .try_collect()
        .await
        .map_err(|e| format!("cannot list the rows run {} kept: {e}", base.run_id))?;
    let present: std::collections::HashSet<String> = listed.iter().filter_map(|m| warehouse.root().relative(&m.location)).collect();
    let mut state = BTreeMap::new();
    for name in carried.iter().copied().chain(marts.keys().map(String::as_str)) {
        let kept = base.state.iter().find(|s| s.name == name);
        let missing = kept.and_then(|k| k.paths().find(|p| !present.contains(*p)));
        match (kept, missing) {
            (Some(k), None) => {
                state.insert(name.to_string(), k.clone());
            }
            (Some(_), Some(path)) if carried.contains(&name) => {
                return Err(format!("the rows run {} kept of model {name} are unreadable: {path} is missing", base.run_id))
            }
            (None, _) if carried.contains(&name) => return Err(format!("run {} kept no rows of model {name}", base.run_id)),
            _ => {}
        }
    }
    Ok(state)
}

/// An incremental model's rows once merged, and how to keep them: the base's
/// files of the months kept whole, and the rows to write.
pub struct Merged {
    pub built: Built,
    pub reused: Vec<StatePart>,
    pub unsaved: Vec<RecordBatch>,
}

/// The rows of the base an incremental model keeps, dated before
/// `rebuild_from` (a mart's as published, another model's from its state):
/// read while the model is built, then merged with its rows.
pub struct KeptRows {
    /// The rows in the base's files of whole months, kept as they are.
    kept: Vec<RecordBatch>,
    /// Kept rows to write again.
    rewritten: Vec<RecordBatch>,
    /// The base's files of whole months.
    reused: Vec<StatePart>,
}

/// State files of the likely base, read (mapped and checked) ahead of the
/// models, while ingest leaves a core idle. [`read_kept`] takes a file from
/// here when it was read ahead, and reads it itself otherwise.
/// Files not taken when the run ends (it rebuilt everything, or found its
/// inputs unchanged) stop being read.
#[derive(Clone, Default)]
pub struct ReadAhead(std::sync::Arc<std::sync::Mutex<ReadingFiles>>);

type ReadingState = tokio::task::JoinHandle<datafusion::error::Result<Vec<RecordBatch>>>;

#[derive(Default)]
struct ReadingFiles(std::collections::HashMap<String, ReadingState>);

impl Drop for ReadingFiles {
    fn drop(&mut self) {
        for reading in self.0.values() {
            reading.abort();
        }
    }
}

impl ReadAhead {
    /// Start reading the state files that [`plan`] would have the run keep if
    /// nothing ingested reaches back before the base's open months: those of
    /// the latest run that published, when it has this run's `shape` and an
    /// as-of date not after `as_of`. (Events ingested by this run can only
    /// move `rebuild_from` earlier, which needs fewer of these files.) For the
    /// models incremental by day (`by_day`), the base's open month too: they
    /// keep its rows up to the base's as-of date.
    pub fn start(runs: &[RunReport], shape: &str, as_of: NaiveDate, warehouse: &Warehouse, by_day: &[&str]) -> ReadAhead {
        let ahead = ReadAhead::default();
        let Some(base) = latest_published(runs) else { return ahead };
        let Ok(base_as_of) = base.as_of.parse::<NaiveDate>() else { return ahead };
        if base.shape.as_deref() != Some(shape) || base_as_of > as_of {
            return ahead;
        }
        let open_from = month_start(base_as_of + Days::new(1));
        let Ok(mut files) = ahead.0.lock() else { return ahead };
        // One file at a time, in the order of the models (the semaphore is
        // fair), so that reading ahead takes one core at most.
        let one = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let kept = |state: &State, part: &StatePart| part.month < open_from || (part.month == open_from && by_day.contains(&state.name.as_str()));
        for part in base.state.iter().flat_map(|s| s.parts.iter().filter(move |p| kept(s, p))) {
            let (warehouse, path, xxh3, one) = (warehouse.clone(), part.path.clone(), part.xxh3.clone(), one.clone());
            let reading = tokio::spawn(async move {
                let _turn = one.acquire().await;
                read_state(&warehouse, &path, xxh3.as_deref()).await
            });
            files.0.insert(part.path.clone(), reading);
        }
        drop(files);
        ahead
    }

    /// The rows of the state file `part`: read ahead, or read now.
    async fn read(&self, warehouse: &Warehouse, part: &StatePart) -> datafusion::error::Result<Vec<RecordBatch>> {
        let reading = self.0.lock().ok().and_then(|mut files| files.0.remove(&part.path));
        match reading {
            Some(reading) => reading
                .await
                .map_err(|e| DataFusionError::External(format!("reading {} stopped: {e}", part.path).into()))?,
            None => read_state(warehouse, &part.path, part.xxh3.as_deref()).await,
        }
    }
}

/// Read the rows of the base that the incremental model `model` (date column
/// `key`) keeps; `None` when the run has no base.
pub async fn read_kept(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    model: &Model,
    key: &str,
    plan: &Plan,
    ahead: &ReadAhead,
) -> datafusion::error::Result<Option<KeptRows>> {
    let Some(base) = &plan.base else {
        return Ok(None);
    };
    let from = plan.rebuild_from_of(model);
    let bound = crate::ingest::days_since_epoch(from);
    let started = std::time::Instant::now();
    let (mut kept, mut rewritten, mut reused) = (Vec::new(), Vec::new(), Vec::new());
    match base.state.get(&model.name) {
        Some(state) => {
            if !state.path.is_empty() {
                for b in read_state(warehouse, &state.path, None).await? {
                    rewritten.push(rows_dated(&b, key, bound, false)?);
                }
            }
            for part in state.parts.iter().filter(|p| p.month < from) {
                let batches = ahead.read(warehouse, part).await?;
                if next_month(part.month) <= from {
                    kept.extend(batches);
                    reused.push(part.clone());
                } else {
                    for b in batches {
                        rewritten.push(rows_dated(&b, key, bound, false)?);
                    }
                }
            }
        }
        None if model.layer == Layer::Marts => {
            rewritten = kept_published(ctx, warehouse, &model.name, base.versions.get(&model.name).copied(), key, bound).await?;
        }
        None => return Err(DataFusionError::Plan(format!("run {} kept no rows of model {}", base.run_id, model.name))),
    }
    let kept_rows: usize = kept.iter().chain(&rewritten).map(|b| b.num_rows()).sum();
    tracing::debug!(model = %model.name, kept_rows, files = reused.len(), seconds = started.elapsed().as_secs_f64(), "kept rows read");
    Ok(Some(KeptRows { kept, rewritten, reused }))
}

/// The rows of an incremental model: the base's rows it keeps (`kept`, from
/// [`read_kept`]), then the recomputed rows dated from `rebuild_from` on.
/// The result is registered as the model's table.
pub fn merge(
    ctx: &SessionContext,
    model: &Model,
    key: &str,
    plan: &Plan,
    built: Built,
    kept: Option<KeptRows>,
) -> datafusion::error::Result<Merged> {
    let Some(KeptRows { kept, rewritten, reused }) = kept else {
        return Ok(Merged {
            unsaved: built.batches.clone(),
            built,
            reused: Vec::new(),
        });
    };
    let bound = crate::ingest::days_since_epoch(plan.rebuild_from_of(model));
    let mut unsaved = Vec::with_capacity(rewritten.len() + built.batches.len());
    for b in rewritten {
        unsaved.push(conform(&b, &built.schema)?);
    }
    for b in built.batches {
        unsaved.push(rows_dated(&b, key, bound, true)?);
    }
    let mut batches = Vec::with_capacity(kept.len() + unsaved.len());
    for b in kept {
        batches.push(conform(&b, &built.schema)?);
    }
    batches.extend(unsaved.iter().cloned());
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    engine::register_rows(ctx, &model.name, batches.clone(), built.schema.clone(), Some(key))?;
    Ok(Merged {
        built: Built {
            batches,
            schema: built.schema,
            rows,
        },
        reused,
        unsaved,
    })
}

/// How the files of the incremental mart `model` (date column `key`) are
/// laid out in a run as of `as_of` that follows `plan`: split where the rows
/// this run recomputes begin, and where those that are not final yet begin
/// (where the next day's run will likely recompute from: the month of the
/// next day, or that day for a mart incremental by day), so that a later run
/// can keep the files before its `rebuild_from`. This run keeps those of its
/// base before its own.
pub fn layout(plan: &Plan, model: &Model, key: &str, as_of: NaiveDate) -> publish::Layout {
    let days = crate::ingest::days_since_epoch;
    let next = as_of + Days::new(1);
    let mut bounds = vec![days(if model.by_day { next } else { month_start(next) })];
    let keep = plan.base.as_ref().and_then(|base| base.versions.get(&model.name)).map(|version| publish::Keep {
        version: *version,
        before: days(plan.rebuild_from_of(model)),
    });
    if let Some(k) = &keep {
        bounds.push(k.before);
    }
    bounds.sort_unstable();
    bounds.dedup();
    publish::Layout {
        key: key.to_string(),
        bounds,
        keep,
    }
}

/// The first day of the month after the month of `d`.
fn next_month(d: NaiveDate) -> NaiveDate {
    month_start(d).checked_add_months(chrono::Months::new(1)).unwrap_or(NaiveDate::MAX)
}

/// The rows of the mart `name` at Delta version `version` (the current one
/// when `None`) dated before `bound`.
async fn kept_published(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    name: &str,
    version: Option<i64>,
    key: &str,
    bound: i32,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let external = |e: String| DataFusionError::External(e.into());
    let mut table = open_delta_table(&warehouse.mart(name)).await.map_err(|e| external(e.to_string()))?;
    if let Some(v) = version {
        if table.version().map(|x| x as i64) != Some(v) {
            table.load_version(v as u64).await.map_err(|e| external(e.to_string()))?;
        }
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| external(e.to_string()))?;
    let provider = table.table_provider().await.map_err(|e| external(e.to_string()))?;
    ctx.read_table(provider)?
        .filter(col(key).lt(lit(datafusion::scalar::ScalarValue::Date32(Some(bound)))))?
        .collect()
        .await
}

/// Why the rows of a model could not be kept for the next run.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("model {model}: cannot encode its rows as state: {source}")]
    Encode {
        model: String,
        #[source]
        source: DataFusionError,
    },
    #[error("model {model}: the state encoder stopped: {source}")]
    Stopped {
        model: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{path}: cannot write the state of model {model}: {source}")]
    Write {
        model: String,
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// Keep the rows of the model `name` for a later run: `rows` (those this run
/// computed, and kept rows that are in no file of a whole month) in one
/// Arrow IPC file per month of the date column `key` under
/// `_state/<name>/`, and the base's files of the months in `reused` as they
/// are. Rows without a date are never kept, so they are not written.
/// Uncompressed, so that the next run maps the files and decodes them
/// without copying (LZ4 took more CPU to write and read than the rows took to
/// compute); files written compressed by an earlier version still read.
pub async fn write_state(
    warehouse: &Warehouse,
    run_id: &str,
    name: &str,
    key: &str,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
    reused: Vec<StatePart>,
) -> Result<State, StateError> {
    let (key, schema_for_split) = (key.to_string(), schema.clone());
    let encoded = tokio::task::spawn_blocking(move || -> datafusion::error::Result<Vec<Encoded>> {
        let months = by_month(rows, &key)?;
        let mut files = Vec::with_capacity(months.len());
        for (month, batches) in months {
            let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let mut writer = arrow::ipc::writer::FileWriter::try_new(Vec::with_capacity(size + 4096), &schema_for_split)?;
            for b in &batches {
                writer.write(b)?;
            }
            let count = batches.iter().map(|b| b.num_rows() as u64).sum();
            let bytes = writer.into_inner()?;
            files.push(Encoded { month, rows: count, xxh3: xxh3_hex(&bytes), bytes });
        }
        Ok(files)
    })
    .await
    .map_err(|source| StateError::Stopped { model: name.to_string(), source })?
    .map_err(|source| StateError::Encode { model: name.to_string(), source })?;
    let mut parts = reused;
    for Encoded { month, rows: count, xxh3, bytes } in encoded {
        let file = warehouse.state().join(name).path(&format!("{}.{run_id}.arrow", month.format("%Y-%m")));
        let path = warehouse.root().relative(&file).unwrap_or_default();
        warehouse
            .root()
            .store
            .put(&file, PutPayload::from(bytes))
            .await
            .map_err(|source| StateError::Write {
                model: name.to_string(),
                path: warehouse.root().join(&path).display(),
                source,
            })?;
        parts.push(StatePart {
            month,
            path,
            rows: count,
            xxh3: Some(xxh3),
        });
    }
    parts.sort_by_key(|p| p.month);
    Ok(State {
        name: name.to_string(),
        path: String::new(),
        rows: parts.iter().map(|p| p.rows).sum(),
        parts,
    })
}

/// One month of a model's rows, encoded as a state file.
struct Encoded {
    month: NaiveDate,
    rows: u64,
    xxh3: String,
    bytes: Vec<u8>,
}

/// The rows of `batches` grouped by the month of their date column `key`;
/// rows without a date are left out. Batches of one month stay whole.
fn by_month(batches: Vec<RecordBatch>, key: &str) -> datafusion::error::Result<BTreeMap<NaiveDate, Vec<RecordBatch>>> {
    let mut months: BTreeMap<NaiveDate, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches {
        let dates = publish::date_column(&batch, key)?;
        let (Some(min), Some(max)) = (arrow::compute::min(dates), arrow::compute::max(dates)) else {
            continue;
        };
        let (Some(first), Some(last)) = (date_of(min), date_of(max)) else {
            return Err(DataFusionError::Plan(format!("incremental: column {key} holds an impossible date")));
        };
        if month_start(first) == month_start(last) && arrow::array::Array::null_count(dates) == 0 {
            months.entry(month_start(first)).or_default().push(batch);
            continue;
        }
        let mut rows: BTreeMap<NaiveDate, Vec<u32>> = BTreeMap::new();
        for (i, d) in dates.iter().enumerate() {
            if let Some(month) = d.and_then(date_of).map(month_start) {
                rows.entry(month).or_default().push(i as u32);
            }
        }
        for (month, indices) in rows {
            let taken = arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(indices))?;
            months.entry(month).or_default().push(taken);
        }
    }
    Ok(months)
}

/// The date of a Date32 value (days since the epoch).
fn date_of(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)
}

/// XXH3-128 of `bytes`, in hex: the fingerprints of a run's inputs and
/// shape, and the checksum recorded for a state file.
pub(crate) fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// The rows of a state file (mapped, on the local filesystem). With the
/// checksum its writer recorded, a file that no longer matches it is an error.
async fn read_state(warehouse: &Warehouse, path: &str, xxh3: Option<&str>) -> datafusion::error::Result<Vec<RecordBatch>> {
    let external = |e: String| DataFusionError::External(e.into());
    let display = warehouse.root().join(path).display();
    let bytes = warehouse
        .root()
        .read_once_written(path, crate::storage::Access::Whole)
        .await
        .map_err(|e| external(format!("{display}: cannot read kept rows: {e}")))?;
    let checked = match xxh3 {
        Some(want) => {
            let got = xxh3_hex(&bytes);
            if got != want {
                return Err(external(format!(
                    "{display}: the kept rows changed since they were written (checksum {got}, recorded {want})"
                )));
            }
            Checked::Unchanged
        }
        None => Checked::Unknown,
    };
    decode_state(bytes, checked).map_err(|e| external(format!("{display}: not a state file: {e}")))
}

/// What is known of a state file's bytes before decoding them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Checked {
    /// Nothing: every array is validated as it is decoded.
    Unknown,
    /// They hash to the checksum recorded when arrow's IPC writer produced
    /// them from valid arrays: they are that output, byte for byte.
    Unchanged,
}

/// The record batches of an Arrow IPC file held in memory, whose arrays
/// point into `bytes` instead of being copied out of it. The arrays of a file
/// known to be unchanged are not validated again (checking every string of a
/// view array for UTF-8 took most of the time of reading kept rows).
fn decode_state(bytes: bytes::Bytes, checked: Checked) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    use arrow::error::ArrowError;
    use arrow::ipc::reader::{read_footer_length, FileDecoder};
    let bad = |what: &str| ArrowError::IpcError(format!("{what} ({} bytes)", bytes.len()));
    let buffer = arrow::buffer::Buffer::from(bytes.clone());
    let len = buffer.len();
    let trailer_at = len.checked_sub(10).ok_or_else(|| bad("too short for an Arrow file"))?;
    let trailer: [u8; 10] = buffer[trailer_at..].try_into().map_err(|_| bad("no trailer"))?;
    let footer_at = trailer_at.checked_sub(read_footer_length(trailer)?).ok_or_else(|| bad("footer out of range"))?;
    let footer = arrow::ipc::root_as_footer(&buffer[footer_at..trailer_at])
        .map_err(|e| ArrowError::IpcError(format!("unreadable footer: {e}")))?;
    let schema = footer.schema().ok_or_else(|| bad("no schema"))?;
    let mut decoder = FileDecoder::new(std::sync::Arc::new(arrow::ipc::convert::fb_to_schema(schema)), footer.version());
    if checked == Checked::Unchanged {
        // SAFETY: the bytes hash to the XXH3-128 this program recorded when
        // arrow's FileWriter wrote them from the arrays of a built model,
        // which are valid; so they are that output, and decode to valid
        // arrays. A file changed to collide with its checksum on purpose
        // needs write access to the warehouse, which the mapping of the file
        // (storage.rs) already trusts not to change it.
        decoder = unsafe { decoder.with_skip_validation(true) };
    }
    let block_data = |block: &arrow::ipc::Block| {
        let at = usize::try_from(block.offset()).map_err(|_| bad("negative block offset"))?;
        let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
        if at.checked_add(block_len).is_none_or(|end| end > footer_at) {
            return Err(bad("block out of range"));
        }
        Ok(buffer.slice_with_length(at, block_len))
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder.read_dictionary(block, &block_data(block)?)?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder.read_record_batch(block, &block_data(block)?)? {
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// Delete every state object but those of `keep` (the state of the latest
/// run that published: only it is ever a base). Failures are logged; stale
/// state is only space.
pub async fn prune_state(warehouse: &Warehouse, keep: &[State]) {
    let dir = warehouse.state();
    let keep: std::collections::HashSet<&str> = keep.iter().flat_map(|s| s.paths()).collect();
    let listed: Result<Vec<object_store::ObjectMeta>, _> = dir.store.list(Some(&dir.prefix)).try_collect().await;
    let metas = match listed {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list older state; it stays");
            return;
        }
    };
    for meta in metas {
        if warehouse.root().relative(&meta.location).is_some_and(|p| keep.contains(p.as_str())) {
            continue;
        }
        if let Err(e) = dir.store.delete(&meta.location).await {
            tracing::warn!(path = %meta.location, error = %e, "cannot delete older state");
        }
    }
}

/// `batch` with the columns of `schema` (same names and types; nullability
/// as the recomputed rows have it).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> datafusion::error::Result<RecordBatch> {
    publish::conform(batch, schema).map_err(|e| DataFusionError::Plan(format!("the kept rows do not fit the model's columns: {e}")))
}

/// The rows of `batch` whose date column `key` is on or after `bound` (days
/// since the epoch) when `from` holds, else those before it. A NULL date is
/// in neither.
fn rows_dated(batch: &RecordBatch, key: &str, bound: i32, from: bool) -> datafusion::error::Result<RecordBatch> {
    let dates = publish::date_column(batch, key)?;
    let mask: arrow::array::BooleanArray = dates.iter().map(|d| Some(d.is_some_and(|d| (d >= bound) == from))).collect();
    // Batches are mostly of one date: keep them whole rather than copy them.
    match mask.true_count() {
        n if n == batch.num_rows() => Ok(batch.clone()),
        0 => Ok(batch.slice(0, 0)),
        _ => Ok(arrow::compute::filter_record_batch(batch, &mask)?),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn ipc(batch: &RecordBatch, options: arrow::ipc::writer::IpcWriteOptions) -> Vec<u8> {
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new_with_options(Vec::new(), &batch.schema(), options).expect("writer");
        writer.write(batch).expect("write");
        writer.write(&batch.slice(1, 1)).expect("write");
        writer.into_inner().expect("finish")
    }

    #[test]
    fn state_files_decode_with_or_without_compression() {
        use arrow::array::{ArrayRef, Date32Array, StringViewArray};
        let batch = RecordBatch::try_from_iter([
            ("local_date", std::sync::Arc::new(Date32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef),
            ("customer_id", std::sync::Arc::new(StringViewArray::from(vec!["c1", "a customer id longer than twelve", "c3"])) as ArrayRef),
        ])
        .expect("batch");
        let plain = arrow::ipc::writer::IpcWriteOptions::default();
        let lz4 = plain.clone().try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME)).expect("lz4");
        for bytes in [ipc(&batch, plain), ipc(&batch, lz4)] {
            for checked in [Checked::Unknown, Checked::Unchanged] {
                let back = decode_state(bytes::Bytes::from(bytes.clone()), checked).expect("decode");
                assert_eq!(back, vec![batch.clone(), batch.slice(1, 1)]);
            }
            // A truncated or foreign file is an error, not a panic.
            for cut in [0, 9, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode_state(bytes::Bytes::from(bytes[..cut].to_vec()), Checked::Unknown).is_err(), "cut at {cut}");
            }
        }
        // Kept rows: a batch wholly on one side stays whole; NULL dates go nowhere.
        assert_eq!(rows_dated(&batch, "local_date", 0, true).expect("from").num_rows(), 2);
        assert_eq!(rows_dated(&batch, "local_date", 2, false).expect("before").num_rows(), 1);
        assert_eq!(rows_dated(&batch, "local_date", 9, true).expect("none").num_rows(), 0);
    }

    #[tokio::test]
    async fn state_reads_back_and_a_changed_file_is_an_error() {
        use arrow::array::{ArrayRef, Date32Array, StringViewArray};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        let batch = RecordBatch::try_from_iter([
            ("local_date", std::sync::Arc::new(Date32Array::from(vec![Some(20_000), Some(20_040)])) as ArrayRef),
            ("customer_id", std::sync::Arc::new(StringViewArray::from(vec!["c1", "a customer id longer than twelve"])) as ArrayRef),
        ])
        .expect("batch");
        let state = write_state(&warehouse, "r1", "m", "local_date", batch.schema(), vec![batch.clone()], Vec::new())
            .await
            .expect("write");
        assert_eq!(state.parts.len(), 2, "one file per month");
        let mut back = Vec::new();
        for part in &state.parts {
            assert!(part.xxh3.is_some());
            back.extend(read_state(&warehouse, &part.path, part.xxh3.as_deref()).await.expect("read"));
        }
        let rows: usize = back.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        let strings = back[1].column(1).as_any().downcast_ref::<StringViewArray>().expect("strings");
        assert_eq!(strings.value(0), "a customer id longer than twelve");
        // One byte changed after writing: the checksum no longer matches.
        let part = &state.parts[1];
        change_one_byte(&warehouse, &part.path);
        let err = read_state(&warehouse, &part.path, part.xxh3.as_deref()).await.expect_err("changed");
        assert!(err.to_string().contains("changed since they were written"), "{err}");
    }

    /// Flip a bit in the middle of a written file (a new file, as a rewrite
    /// would leave it).
    fn change_one_byte(warehouse: &Warehouse, path: &str) {
        let file = warehouse.root().local_path(path).expect("local");
        let mut bytes = std::fs::read(&file).expect("bytes");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::remove_file(&file).expect("remove");
        std::fs::write(&file, bytes).expect("rewrite");
    }

    #[tokio::test]
    async fn kept_rows_are_read_ahead_from_the_likely_base_only() {
        use arrow::array::{ArrayRef, Date32Array};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        // 2024-10-04 and 2024-11-13: one file per month.
        let batch = RecordBatch::try_from_iter([(
            "local_date",
            std::sync::Arc::new(Date32Array::from(vec![Some(20_000), Some(20_040)])) as ArrayRef,
        )])
        .expect("batch");
        let state = write_state(&warehouse, "r1", "m", "local_date", batch.schema(), vec![batch], Vec::new())
            .await
            .expect("write");
        let (october, november) = (&state.parts[0], &state.parts[1]);
        let run = |shape: &str, as_of: &str| -> RunReport {
            serde_json::from_value(serde_json::json!({
                "run_id": "r1", "pipeline": "daily", "status": "succeeded", "as_of": as_of,
                "started_at": "2024-11-20T00:00:00Z", "shape": shape,
                "tables": [{"name": "m", "location": "", "version": 1, "rows": 0}], "state": [state.clone()],
            }))
            .expect("summary")
        };
        let as_of: NaiveDate = "2024-11-21".parse().expect("date");
        let pending = |ahead: &ReadAhead| ahead.0.lock().expect("lock").0.len();

        // November was open in a base as of 2024-11-20: only October is read ahead.
        let ahead = ReadAhead::start(&[run("s1", "2024-11-20")], "s1", as_of, &warehouse, &[]);
        assert_eq!(pending(&ahead), 1);
        // A model incremental by day keeps the open month's rows too.
        assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-20")], "s1", as_of, &warehouse, &["m"])), 2);
        assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-20")], "s1", as_of, &warehouse, &["other"])), 1);
        let rows = |b: Vec<RecordBatch>| b.iter().map(|b| b.num_rows()).sum::<usize>();
        assert_eq!(rows(ahead.read(&warehouse, october).await.expect("read ahead")), 1);
        assert_eq!(pending(&ahead), 0, "a file read ahead is taken once");
        assert_eq!(rows(ahead.read(&warehouse, november).await.expect("read now")), 1);

        // Other SQL, or a base as of a later date: nothing is read ahead.
        assert_eq!(pending(&ReadAhead::start(&[run("s0", "2024-11-20")], "s1", as_of, &warehouse, &["m"])), 0);
        assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-22")], "s1", as_of, &warehouse, &["m"])), 0);

        // A file changed after it was written is an error when read ahead too.
        change_one_byte(&warehouse, &october.path);
        let ahead = ReadAhead::start(&[run("s1", "2024-11-20")], "s1", as_of, &warehouse, &[]);
        let err = ahead.read(&warehouse, october).await.expect_err("changed");
        assert!(err.to_string().contains("changed since they were written"), "{err}");
    }

    #[test]
    fn month_start_is_the_first_day() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert_eq!(month_start(d("2026-11-15")), d("2026-11-01"));
        assert_eq!(month_start(d("2026-11-01")), d("2026-11-01"));
        assert_eq!(month_start(d("2026-10-31") + Days::new(1)), d("2026-11-01"));
    }
}
