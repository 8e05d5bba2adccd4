//! Ingest: discover new raw objects, decode, validate, de-duplicate, and append
//! to the `events` and `rejects` Delta tables, exactly as EVENTS.md says.
//!
//! Atomicity. Data files of both tables are written first (invisible until
//! committed). Then a manifest entry for this ingest (sequence `N`: the
//! objects, their identity, and the `rejects` files) is written to the
//! ingest manifest ([`Warehouse::ingest_manifest`]), and `events` is committed with the Delta
//! application transaction `(tenure.ingest, N)`: that commit is the moment the
//! objects count as ingested. `rejects` is committed next with the same
//! transaction id. A manifest entry counts only when `events` carries its
//! sequence, so a crash before the events commit leaves nothing ingested, and a
//! crash between the two commits is repaired at the start of the next run by
//! committing the recorded `rejects` files. Nothing is ever ingested twice or lost.

pub mod batch;
pub mod decode;
pub mod fields;
mod files;
#[cfg(test)]
mod fuzz;
mod keys;
mod manifest;
pub mod validate;

use crate::dates::{days_since_epoch, LocalDays};
use crate::storage::{open_delta_table, Location, StorageError};
use crate::warehouse::{Warehouse, WarehouseError};
use batch::{EventBuilder, FileKind, RejectRow, RowKey};
use bytes::Bytes;
use chrono_tz::Tz;
use decode::{Compression, Format};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use files::EventFiles;
use keys::{KeysFile, SeenKeys};
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use manifest::{ManifestEntry, ObjectId};
pub use keys::SegmentError;
pub use manifest::{AcceptedSpan, Manifest, ManifestError};
use serde::Serialize;
use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The Delta application id of ingest commits.
pub const APP_ID: &str = "tenure.ingest";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("{url}: cannot list raw objects: {source}")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot read object {path}: {source}")]
    Read {
        url: String,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("{table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("another run ({winner}) committed ingest sequence {sequence} first; nothing of this run's ingest was kept, its objects are ingested by the next run")]
    Raced { sequence: i64, winner: String },
    #[error("{table}: cannot read existing events: {source}")]
    Query {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("the key index cannot spill to {dir}: {source} (set TMPDIR to a folder with room, or raise engine.memory_mb)")]
    KeySpill { dir: String, source: std::io::Error },
    #[error("ingest manifest {path}: {source}")]
    Manifest {
        path: String,
        #[source]
        source: ManifestError,
    },
    #[error("reject threshold crossed: {what} is {rate:.3}, above ingest.max_reject_rate {max}; nothing was committed (fix the input or raise the threshold)")]
    Threshold { what: String, rate: f64, max: f64 },
    #[error("cannot wait for a decoding thread: {0}")]
    DecodeSlot(#[source] tokio::sync::AcquireError),
    #[error("a decoding task failed: {0}")]
    DecodeTask(#[source] tokio::task::JoinError),
    #[error("a task encoding a data file of events failed: {0}")]
    EncodeTask(#[source] tokio::task::JoinError),
}

/// About how many bytes of raw JSON Lines one event takes: for reserving room.
const BYTES_PER_EVENT: usize = 150;

/// Objects whose decoding has started, waiting for de-duplication, at most
/// (beyond those in flight, see [`IN_FLIGHT_PER_THREAD`]).
const DECODED_AHEAD: usize = 4;

/// How many decoded rows of one object are handed on at once: an object is
/// decoded in parts of at most this many rows and bytes, so that memory
/// stays bounded whatever one object holds (a small gzip object may hold
/// gigabytes of rows).
#[derive(Debug, Clone, Copy)]
struct PartLimits {
    rows: usize,
    bytes: usize,
}

impl PartLimits {
    /// 64 Ki rows or 16 MiB of built arrays (rejects' text included),
    /// whichever comes first. Each object decoding ahead holds at most two
    /// parts (one waiting, one being built), and up to `parallelism *
    /// IN_FLIGHT_PER_THREAD + DECODED_AHEAD` objects are ahead, so this keeps
    /// a run with a few huge objects at some hundred MiB; parts of 64 Ki rows
    /// still make the cost per part (one claim pass, one filter) negligible.
    const DEFAULT: PartLimits = PartLimits {
        rows: 64 * 1024,
        bytes: 16 << 20,
    };
    /// The bytes of a part's events are summed every this many rows.
    const CHECK_EVERY: u64 = 64;
}

/// Parts of one decoded object waiting for de-duplication, at most (besides
/// the one its decoder is building).
const PARTS_AHEAD: usize = 1;

/// Objects fetched and decoding, or decoded and waiting for an earlier one to
/// finish, per decoding thread. Objects are taken in order, so with one object
/// per thread, a thread done with a small object would wait for a large one
/// before it to finish; more in flight keep the threads busy.
const IN_FLIGHT_PER_THREAD: usize = 4;

/// Aborts a task when dropped (an ingest that returns early stops decoding).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What ingest needs to know.
pub struct IngestOptions<'a> {
    pub run_id: &'a str,
    pub timezone: Tz,
    pub currency: &'a str,
    pub max_reject_rate: f64,
    pub parallelism: usize,
    /// The most a row and an object may hold (`ingest.max_record_bytes`,
    /// `ingest.max_object_bytes`).
    pub limits: decode::Limits,
    pub progress: Option<&'a indicatif::ProgressBar>,
    /// The most bytes the key index of this run's events holds in memory
    /// (`engine.memory_mb`; `None`: no limit); beyond, it spills to sorted
    /// runs in the temporary folder.
    pub key_memory: Option<usize>,
    /// The latest as-of date of earlier runs: accepted events dated before it
    /// are late, and counted as such.
    pub late_before: Option<chrono::NaiveDate>,
}

/// Counts of one object (EVENTS.md "Conservation").
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct ObjectReport {
    pub path: String,
    pub format: Option<Format>,
    pub compression: Option<Compression>,
    pub status: ObjectStatus,
    pub bytes: u64,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub conflicting_duplicates: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    pub error: Option<String>,
}

/// Whether an object was read (EVENTS.md rule 14): an object not read
/// counts none of its rows and is retried next run. Objects that vanished
/// (deleted or renamed) or changed between listing and reading count as
/// unreadable in the totals and the reject threshold.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStatus {
    #[default]
    Ingested,
    Unreadable,
    /// Gone when it was read.
    Vanished,
    /// Another ETag or version when it was read than when it was listed.
    Changed,
}

impl ObjectStatus {
    /// Whether the object's rows were read.
    pub fn is_read(self) -> bool {
        self == ObjectStatus::Ingested
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct Totals {
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub conflicting_duplicates: u64,
    pub objects_ingested: u64,
    pub objects_unreadable: u64,
    pub objects_skipped: u64,
    pub objects_ignored: u64,
    pub objects_already_ingested: u64,
    pub objects_changed: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChangedObject {
    pub path: String,
    pub ingested_size: u64,
    pub size: u64,
    pub ingested_e_tag: Option<String>,
    pub e_tag: Option<String>,
    pub ingested_by_run: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Unreadable {
    pub path: String,
    pub error: String,
}

/// The ingest part of the run report.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IngestReport {
    pub raw: String,
    pub sequence: Option<i64>,
    pub totals: Totals,
    pub rejects_by_reason: BTreeMap<String, u64>,
    pub objects: Vec<ObjectReport>,
    pub skipped_objects: Vec<String>,
    pub ignored_objects: Vec<String>,
    pub unreadable_objects: Vec<Unreadable>,
    pub changed_objects: Vec<ChangedObject>,
    /// Accepted events whose local date is before the latest as-of date of
    /// earlier runs; the marts are rebuilt from `events`, so they land in
    /// every month they touch.
    pub late_events: u64,
    pub late_months: Vec<String>,
    pub events_version: Option<i64>,
    pub rejects_version: Option<i64>,
    pub recovered_sequence: Option<i64>,
    /// Keys of this run's events that the key index spilled to disk, over
    /// its memory budget (`engine.memory_mb`); 0 when it held them all.
    pub keys_spilled: u64,
    pub seconds: f64,
}

/// The places in the warehouse ingest writes.
struct Tables {
    events: Location,
    rejects: Location,
    manifest: Location,
}

impl Tables {
    fn of(warehouse: &Warehouse) -> Tables {
        Tables {
            events: warehouse.events(),
            rejects: warehouse.rejects(),
            manifest: warehouse.ingest_manifest(),
        }
    }
}

fn delta_err(table: &Location) -> impl Fn(deltalake::DeltaTableError) -> IngestError + '_ {
    move |source| IngestError::Delta {
        table: table.display(),
        source,
    }
}

impl AcceptedSpan {
    fn merge(&mut self, other: &AcceptedSpan) {
        self.rows += other.rows;
        self.earliest_occurred_at = match (self.earliest_occurred_at, other.earliest_occurred_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn add(&mut self, batch: &arrow::array::RecordBatch) {
        use arrow::array::AsArray;
        self.rows += batch.num_rows() as u64;
        let earliest = batch
            .column_by_name("occurred_at")
            .and_then(|c| arrow::compute::min(c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()));
        self.earliest_occurred_at = match (self.earliest_occurred_at, earliest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The latest `tenure.ingest` transaction sequence of the table at
/// `location` as `table` holds it (0 if none).
pub async fn committed_sequence(table: &DeltaTable, location: &Location) -> Result<i64, IngestError> {
    let snapshot = table.snapshot().map_err(delta_err(location))?;
    Ok(snapshot
        .transaction_version(table.log_store().as_ref(), APP_ID)
        .await
        .map_err(delta_err(location))?
        .unwrap_or(0))
}

/// Commit `adds` to `table` as ingest sequence `sequence`. A commit whose
/// answer is lost is settled ([`crate::settle`]); one that loses to another
/// writer's commit of an ingest sequence fails (the Delta transaction of
/// [`APP_ID`] conflicts), so no sequence is ever committed twice.
async fn commit(
    table: &DeltaTable,
    location: &Location,
    adds: Vec<Add>,
    sequence: i64,
    run_id: &str,
    partition_by: Option<Vec<String>>,
) -> Result<i64, IngestError> {
    let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    actions.push(Action::Txn(Transaction::new(APP_ID, sequence)));
    let token = crate::settle::token();
    let metadata = std::collections::HashMap::from([
        ("tenure.run_id".to_string(), serde_json::Value::from(run_id)),
        ("tenure.ingest_sequence".to_string(), serde_json::Value::from(sequence)),
        crate::settle::token_entry(&token),
    ]);
    let snapshot = table.snapshot().map_err(delta_err(location))?;
    // A table made by an earlier build gets the warehouse's table properties
    // (its checkpoint interval) with this commit.
    actions.extend(crate::warehouse::missing_properties(snapshot.metadata()).map_err(delta_err(location))?);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by,
        predicate: None,
    };
    let after = table.version().map(|v| v as i64);
    let settled = crate::settle::commit(&table.log_store(), after, &token, || async {
        let done = CommitBuilder::from(crate::warehouse::commit_properties())
            .with_actions(actions.clone())
            .with_app_metadata(metadata.clone())
            .build(Some(snapshot), table.log_store(), operation.clone())
            .await?;
        Ok(done.version() as i64)
    })
    .await
        .map_err(delta_err(location))?;
    Ok(settled.version())
}

/// What of the ingest manifest folder a run may still read, for `tenure
/// vacuum` (which decides what is old enough to delete).
#[derive(Debug, Default)]
pub struct InUse {
    /// The key segments no run needs: on no chain a run follows from the
    /// committed sequence, nor from any sequence that was the committed one
    /// at or after `window_start` (a run that started then may still read it).
    /// Segments of sequences never committed (a failed run's) are here too.
    pub unused_segments: Vec<object_store::ObjectMeta>,
    /// Data files of `rejects` (relative to the table) that the next run
    /// commits to repair a run interrupted between its two commits: no
    /// version refers to them yet, and they must stay.
    pub pending_rejects: std::collections::HashSet<String>,
}

/// What [`InUse`] says of `warehouse`, for a window that starts at
/// `window_start`. Reads only; creates nothing.
pub async fn in_use(warehouse: &Warehouse, window_start: chrono::DateTime<chrono::Utc>) -> Result<InUse, IngestError> {
    let tables = Tables::of(warehouse);
    let events = open_delta_table(&tables.events).await?;
    if events.version().is_none() {
        return Ok(InUse::default());
    }
    let committed = committed_sequence(&events, &tables.events).await?;
    let manifest = Manifest::new(tables.manifest.clone());
    let listed: Vec<object_store::ObjectMeta> = match tables.manifest.store.list(Some(&tables.manifest.prefix)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(manifest.err("", ManifestError::List(e))),
    };
    // The sequence committed at the window's start: the newest whose entry
    // was written before it (an entry is written just before its commit).
    let entry_sequence = |m: &object_store::ObjectMeta| -> Option<i64> { m.location.filename()?.strip_suffix(".json")?.parse().ok() };
    let at_start = listed
        .iter()
        .filter(|m| m.last_modified < window_start)
        .filter_map(entry_sequence)
        .filter(|s| *s <= committed)
        .max()
        .unwrap_or(1);
    let prior = manifest.load_committed(committed).await?;
    let mut needed = std::collections::HashSet::new();
    for sequence in at_start.max(1)..=committed {
        needed.extend(keys::chain(sequence, &prior.keys));
    }
    let unused_segments = listed
        .into_iter()
        .filter(|m| {
            let name = tables.manifest.relative(&m.location).unwrap_or_default();
            name.starts_with("keys/") && !needed.contains(&name)
        })
        .collect();
    let rejects = open_delta_table(&tables.rejects).await?;
    let mut pending_rejects = std::collections::HashSet::new();
    let rejects_sequence = match rejects.version() {
        Some(_) => committed_sequence(&rejects, &tables.rejects).await?,
        None => 0,
    };
    if rejects_sequence < committed {
        pending_rejects.extend(manifest.read_entry(committed).await?.rejects_files.into_iter().map(|a| a.path));
    }
    Ok(InUse {
        unused_segments,
        pending_rejects,
    })
}

/// One discovered raw object.
#[derive(Debug, Clone)]
struct Discovered {
    relative: String,
    meta: object_store::ObjectMeta,
    format: Format,
    compression: Compression,
}

/// What happened to one object, or to a part of its rows (see
/// [`PartLimits`]), during decoding and validation: parts come in row order,
/// and the last one says so. An unreadable object is one part, sent in
/// place of the part where decoding failed.
struct Decoded {
    report: ObjectReport,
    /// Accepted rows of each [`FileKind`], each in row order, with their keys.
    events: [Option<(arrow::array::RecordBatch, Vec<RowKey>)>; 2],
    /// The kind of every accepted row, in row order: the order in which rows
    /// claim their keys (the first occurrence wins, EVENTS.md rule 13).
    kinds: Vec<FileKind>,
    rejects: Vec<RejectRow>,
    /// Whether this is the object's last part.
    last: bool,
}

impl Decoded {
    /// An object none of whose rows count (EVENTS.md rule 14).
    fn unreadable(mut report: ObjectReport, error: String) -> Decoded {
        report.status = ObjectStatus::Unreadable;
        report.error = Some(error);
        Decoded {
            report,
            events: [None, None],
            kinds: Vec::new(),
            rejects: Vec::new(),
            last: true,
        }
    }

    /// Claim the keys of the accepted rows in row order, across both kinds
    /// (the first occurrence wins); count duplicates and accepted rows. The
    /// rows to keep of each kind.
    fn claim(&mut self, seen: &mut SeenKeys) -> std::io::Result<[Vec<bool>; 2]> {
        let mut next = [0usize; 2];
        let mut ordered = Vec::with_capacity(self.kinds.len());
        let mut kinds = Vec::with_capacity(self.kinds.len());
        for kind in &self.kinds {
            let k = *kind as usize;
            let Some((_, keys)) = &self.events[k] else { continue };
            let key = keys[next[k]];
            next[k] += 1;
            ordered.push((key.id, key.payload));
            kinds.push(k);
        }
        let mut keep: [Vec<bool>; 2] = next.map(Vec::with_capacity);
        let claimed = seen.claim_all(&ordered)?;
        for ((k, claimed), (_, payload)) in kinds.into_iter().zip(claimed).zip(ordered) {
            if let Some(earlier) = claimed {
                self.report.duplicates += 1;
                if earlier != payload {
                    self.report.conflicting_duplicates += 1;
                }
            }
            keep[k].push(claimed.is_none());
        }
        self.report.accepted = self.kinds.len() as u64 - self.report.duplicates;
        Ok(keep)
    }
}

/// The tables and the manifest as an ingest starts.
struct Opened {
    events: DeltaTable,
    rejects_table: DeltaTable,
    /// The last committed ingest sequence.
    committed: i64,
    partition_columns: Vec<String>,
    manifest: Manifest,
    prior: manifest::Committed,
}

/// Open (or create) `events` and `rejects` and read the manifest of the
/// committed sequence, repairing a run that crashed between its two commits.
async fn open_tables(warehouse: &Warehouse, tables: &Tables, report: &mut IngestReport) -> Result<Opened, IngestError> {
    let events = warehouse.open_events().await?;
    let mut rejects_table = warehouse.open_rejects().await?;
    let committed = committed_sequence(&events, &tables.events).await?;
    let partition_columns: Vec<String> = events
        .snapshot()
        .map_err(delta_err(&tables.events))?
        .metadata()
        .partition_columns()
        .to_vec();

    // Repair a run that crashed between its two commits.
    let rejects_sequence = committed_sequence(&rejects_table, &tables.rejects).await?;
    let manifest = Manifest::new(tables.manifest.clone());
    if rejects_sequence < committed {
        let entry = manifest.read_entry(committed).await?;
        commit(&rejects_table, &tables.rejects, entry.rejects_files, committed, &entry.run_id, None).await?;
        rejects_table = open_delta_table(&tables.rejects).await?;
        report.recovered_sequence = Some(committed);
        tracing::warn!(sequence = committed, run_id = %entry.run_id, "recovered the rejects commit of an interrupted run");
    }

    let prior = manifest.load_committed(committed).await?;
    Ok(Opened {
        events,
        rejects_table,
        committed,
        partition_columns,
        manifest,
        prior,
    })
}

/// Ingest every new object under `raw` into the tables of `warehouse`.
pub async fn ingest(raw: &Location, warehouse: &Warehouse, opts: &IngestOptions<'_>) -> Result<IngestReport, IngestError> {
    ingest_in_parts(raw, warehouse, opts, PartLimits::DEFAULT).await
}

/// [`ingest`], decoding objects in parts of `parts` (tests cut them small).
async fn ingest_in_parts(raw: &Location, warehouse: &Warehouse, opts: &IngestOptions<'_>, parts: PartLimits) -> Result<IngestReport, IngestError> {
    let started = std::time::Instant::now();
    let seconds = || started.elapsed().as_secs_f64();
    let tables = Tables::of(warehouse);
    let mut report = IngestReport {
        raw: raw.display(),
        ..Default::default()
    };
    let (opened, found) = open_and_list(raw, warehouse, &tables, &mut report).await?;
    tracing::debug!(seconds = seconds(), objects = opened.prior.objects.len(), found = found.len(), "ingest: tables and manifest read, raw objects listed");

    let new_objects = select_new(found, &opened.prior.objects, &mut report);
    if new_objects.is_empty() {
        tracing::info!(raw = %raw.display(), "no new raw objects");
        report.seconds = seconds();
        return Ok(report);
    }

    let mut seen = load_keys(&opened, &tables, opts).await?;
    tracing::debug!(seconds = seconds(), "ingest: keys of earlier runs opened");
    // Room for this run's keys.
    let raw_bytes: u64 = new_objects.iter().map(|o| o.meta.size).sum();
    seen.reserve((raw_bytes / BYTES_PER_EVENT as u64).min(200_000_000) as usize);
    if let Some(pb) = opts.progress {
        pb.set_length(new_objects.len() as u64);
        pb.set_message("ingesting");
    }

    let mut output = Output::new(&opened, &tables, opts)?;
    let decoding = decode_ahead(raw, new_objects, opts, parts);
    output.write_decoded(decoding, &mut seen, &mut report, opts).await?;
    tracing::debug!(seconds = seconds(), "ingest: every object decoded and claimed");

    sum_totals(&mut report);
    if let Err(crossed) = check_reject_rates(&report.totals, opts.max_reject_rate) {
        output.abort();
        return Err(crossed);
    }

    crate::failpoint("ingest:before_flush");
    let written = output.flush().await?;
    tracing::debug!(seconds = seconds(), "ingest: event and reject files written");
    if written.objects.is_empty() {
        // Only unreadable objects: nothing to record, they are retried next run.
        report.seconds = seconds();
        return Ok(report);
    }

    let sequence = opened.committed + 1;
    report.keys_spilled = seen.spilled().0 as u64;
    let keys = seen.write(&opened.manifest, sequence, opts.run_id, opts.parallelism.max(1)).await?;
    tracing::debug!(seconds = seconds(), "ingest: key index written");
    let (events_version, rejects_version) = commit_sequence(opened, &tables, sequence, written, keys, opts.run_id).await?;
    report.sequence = Some(sequence);
    report.events_version = Some(events_version);
    report.rejects_version = Some(rejects_version);
    report.seconds = seconds();
    let t = &report.totals;
    tracing::info!(
        objects = t.objects_ingested,
        rows_read = t.rows_read,
        accepted = t.accepted,
        rejected = t.rejected,
        duplicates = t.duplicates,
        conflicting_duplicates = t.conflicting_duplicates,
        "ingest committed"
    );
    Ok(report)
}

/// Open the tables and read the manifest while the raw objects are listed;
/// the ignored and skipped objects go to `report`.
async fn open_and_list(
    raw: &Location,
    warehouse: &Warehouse,
    tables: &Tables,
    report: &mut IngestReport,
) -> Result<(Opened, Vec<Discovered>), IngestError> {
    let mut listed = IngestReport::default();
    let (opened, found) = tokio::join!(open_tables(warehouse, tables, report), discover(raw, &mut listed));
    let opened = opened?;
    let found = found?;
    report.ignored_objects = listed.ignored_objects;
    report.skipped_objects = listed.skipped_objects;
    report.totals.objects_ignored = listed.totals.objects_ignored;
    report.totals.objects_skipped = listed.totals.objects_skipped;
    Ok((opened, found))
}

/// The found objects that no earlier run ingested. An object ingested before
/// is counted, or reported if it changed since; it is not read again.
fn select_new(found: Vec<Discovered>, ingested: &HashMap<String, ObjectId>, report: &mut IngestReport) -> Vec<Discovered> {
    let mut new_objects = Vec::new();
    for obj in found {
        match ingested.get(&obj.relative) {
            None => new_objects.push(obj),
            Some(prior) => {
                let now = ObjectId::of(&obj.relative, &obj.meta);
                if prior.same_content(&now) {
                    report.totals.objects_already_ingested += 1;
                } else {
                    tracing::warn!(object = %obj.relative, "object changed after it was ingested; it is not read again");
                    report.changed_objects.push(ChangedObject {
                        path: obj.relative.clone(),
                        ingested_size: prior.size,
                        size: now.size,
                        ingested_e_tag: prior.e_tag.clone(),
                        e_tag: now.e_tag.clone(),
                        ingested_by_run: prior.run_id.clone().unwrap_or_default(),
                    });
                }
            }
        }
    }
    report.totals.objects_changed = report.changed_objects.len() as u64;
    new_objects
}

/// The keys of the events of earlier runs: from their key index, or read back
/// from `events` where a sequence has no segment of this version.
async fn load_keys(opened: &Opened, tables: &Tables, opts: &IngestOptions<'_>) -> Result<SeenKeys, IngestError> {
    let loaded = SeenKeys::load(&opened.manifest, opened.committed, &opened.prior.keys).await?;
    let mut seen = loaded.unwrap_or_else(SeenKeys::scanned);
    seen.limit(opts.key_memory, opts.parallelism);
    if seen.is_scanned() {
        tracing::info!(table = %tables.events.display(), "reading the keys of earlier events back from events (no key index of this version yet)");
        load_seen(&opened.events, &tables.events, &mut seen).await?;
    }
    Ok(seen)
}

/// Decoded objects in object order, from the task that fetches and decodes
/// them; dropping it stops that task.
struct Decoding {
    decoded: tokio::sync::mpsc::Receiver<Result<ObjectParts, IngestError>>,
    _producer: AbortOnDrop,
}

/// The parts of one object, in row order, as its decoder hands them on.
struct ObjectParts {
    obj: Discovered,
    parts: tokio::sync::mpsc::Receiver<Decoded>,
    /// The decoding task, whose failure is told when the parts stop early.
    decoding: Option<tokio::task::JoinHandle<()>>,
}

impl ObjectParts {
    /// An object that is one part, known without decoding.
    fn one(obj: Discovered, decoded: Decoded) -> ObjectParts {
        let (tx, parts) = tokio::sync::mpsc::channel(1);
        // A new channel has room for one.
        let _ = tx.try_send(decoded);
        ObjectParts { obj, parts, decoding: None }
    }

    /// The next part; after the last one, `None`.
    async fn next(&mut self) -> Result<Option<Decoded>, IngestError> {
        if let Some(part) = self.parts.recv().await {
            return Ok(Some(part));
        }
        if let Some(task) = self.decoding.take() {
            task.await.map_err(IngestError::DecodeTask)?;
        }
        Ok(None)
    }
}

/// Fetch and decode `objects` on a task of their own, ahead of the writing,
/// so that decoding goes on while the writing waits for file encoding. At
/// most `parallelism` objects decode at once; more are in flight.
fn decode_ahead(raw: &Location, objects: Vec<Discovered>, opts: &IngestOptions<'_>, part_limits: PartLimits) -> Decoding {
    let tz = opts.timezone;
    let limits = opts.limits;
    let currency: Arc<str> = Arc::from(opts.currency);
    let run_id: Arc<str> = Arc::from(opts.run_id);
    let parallelism = opts.parallelism.max(1);
    let decoders = Arc::new(tokio::sync::Semaphore::new(parallelism));
    let raw_store = raw.store.clone();
    let raw_url = raw.display();
    let decoding = futures::stream::iter(objects.into_iter().map(move |obj| {
        let store = raw_store.clone();
        let currency = currency.clone();
        let run_id = run_id.clone();
        let url = raw_url.clone();
        let decoders = decoders.clone();
        async move {
            if obj.compression == Compression::None && obj.meta.size > limits.max_object_bytes {
                // Not even fetched.
                let error = decode::DecodeError::TooLarge {
                    what: format!("the object ({} bytes)", obj.meta.size),
                    limit: limits.max_object_bytes,
                };
                let decoded = Decoded::unreadable(ObjectReport::of(&obj), error.to_string());
                return Ok(ObjectParts::one(obj, decoded));
            }
            // Read the object as listed: another ETag or version now is a
            // changed object, read again next run.
            let conditional = object_store::GetOptions {
                if_match: obj.meta.e_tag.clone(),
                version: obj.meta.version.clone(),
                ..Default::default()
            };
            let read_err = |source| IngestError::Read {
                url: url.clone(),
                path: obj.relative.clone(),
                source,
            };
            let not_read = |status: ObjectStatus, why: String| {
                tracing::warn!(object = %obj.relative, reason = %why, "object not read; it is tried again next run");
                let mut decoded = Decoded::unreadable(ObjectReport::of(&obj), why);
                decoded.report.status = status;
                Ok(ObjectParts::one(obj.clone(), decoded))
            };
            let got = match store.get_opts(&obj.meta.location, conditional).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match got {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => {
                    return not_read(ObjectStatus::Vanished, "vanished between listing and reading (deleted or renamed)".into())
                }
                Err(object_store::Error::Precondition { .. }) => {
                    return not_read(ObjectStatus::Changed, "changed between listing and reading (another ETag or version)".into())
                }
                Err(e) => return Err(read_err(e)),
            };
            let permit = decoders.clone().acquire_owned().await.map_err(IngestError::DecodeSlot)?;
            let (tx, parts) = tokio::sync::mpsc::channel(PARTS_AHEAD);
            let runtime = tokio::runtime::Handle::current();
            let decoding_obj = obj.clone();
            let decoding = tokio::task::spawn_blocking(move || {
                let obj = decoding_obj;
                let mut permit = Some(permit);
                // A decoder waiting for its parts to be taken gives its
                // thread slot up meanwhile: the object being written may
                // still need one.
                let mut emit = |part: Decoded| {
                    permit = None;
                    let wanted = tx.blocking_send(part).is_ok();
                    permit = runtime.block_on(decoders.clone().acquire_owned()).ok();
                    wanted && permit.is_some()
                };
                let last = decode_object(&obj, bytes, tz, &currency, &run_id, limits, part_limits, &mut emit);
                drop(permit);
                let _ = tx.blocking_send(last);
            });
            Ok::<_, IngestError>(ObjectParts {
                obj,
                parts,
                decoding: Some(decoding),
            })
        }
    }))
    .buffered(parallelism * IN_FLIGHT_PER_THREAD);
    let (decoded_tx, decoded_rx) = tokio::sync::mpsc::channel(DECODED_AHEAD);
    let producer = tokio::spawn(async move {
        let mut decoding = std::pin::pin!(decoding);
        while let Some(result) = decoding.next().await {
            if decoded_tx.send(result).await.is_err() {
                break;
            }
        }
    });
    Decoding {
        decoded: decoded_rx,
        _producer: AbortOnDrop(producer),
    }
}

/// The data files of both tables as this ingest writes them, and what the
/// manifest entry records: the objects read and the span of accepted events.
struct Output<'a> {
    tables: &'a Tables,
    events_table: &'a DeltaTable,
    rejects_table: &'a DeltaTable,
    parallelism: usize,
    events: EventFiles<'a>,
    rejects: RecordBatchWriter,
    /// Files of `rejects` written for objects read in several parts.
    rejects_adds: Vec<Add>,
    objects: Vec<ObjectId>,
    accepted: AcceptedSpan,
}

/// Where the rows of an object read in several parts go until its last
/// part is read: files of its own, which then join the ingest's files, or
/// are dropped if a later part finds the object unreadable (EVENTS.md rule
/// 14: none of its rows count). Its keys are claimed tentatively meanwhile
/// ([`SeenKeys::begin`]).
struct Tentative<'a> {
    events: EventFiles<'a>,
    rejects: RecordBatchWriter,
}

/// What the parts of one object have given so far.
struct ObjectSoFar {
    report: ObjectReport,
    accepted: AcceptedSpan,
    late_events: u64,
    late_months: std::collections::BTreeSet<String>,
}

/// What [`Output::flush`] leaves to record and commit.
struct Written {
    event_adds: Vec<Add>,
    rejects_adds: Vec<Add>,
    objects: Vec<ObjectId>,
    accepted: AcceptedSpan,
}

impl<'a> Output<'a> {
    fn new(opened: &'a Opened, tables: &'a Tables, opts: &IngestOptions<'_>) -> Result<Output<'a>, IngestError> {
        Ok(Output {
            tables,
            events_table: &opened.events,
            rejects_table: &opened.rejects_table,
            parallelism: opts.parallelism,
            events: EventFiles::new(&opened.events, &tables.events, opts.parallelism),
            rejects: RecordBatchWriter::for_table(&opened.rejects_table).map_err(delta_err(&tables.rejects))?,
            rejects_adds: Vec::new(),
            objects: Vec::new(),
            accepted: AcceptedSpan { rows: 0, earliest_occurred_at: None },
        })
    }

    /// Take the decoded objects in order: claim the keys of each one's
    /// accepted rows, write the rows kept and the rejects, and report it. An
    /// unreadable object is only reported.
    async fn write_decoded(
        &mut self,
        mut decoding: Decoding,
        seen: &mut SeenKeys,
        report: &mut IngestReport,
        opts: &IngestOptions<'_>,
    ) -> Result<(), IngestError> {
        let late_before = opts.late_before.map(|d| days_since_epoch(d));
        let mut late_months: std::collections::BTreeSet<String> = Default::default();
        while let Some(result) = decoding.decoded.recv().await {
            let object = result?;
            if let Some(so_far) = self.write_object(object, seen, report, late_before, opts.run_id).await? {
                self.accepted.merge(&so_far.accepted);
                report.late_events += so_far.late_events;
                late_months.extend(so_far.late_months);
                report.objects.push(so_far.report);
            }
            if let Some(pb) = opts.progress {
                pb.inc(1);
            }
        }
        drop(decoding);
        report.late_months = late_months.into_iter().collect();
        Ok(())
    }

    /// Take the parts of one object in order, as [`Output::write_decoded`]
    /// says; what they gave when the object is read to its end. An object
    /// read in several parts writes them tentatively ([`Tentative`]) until
    /// its last part; an unreadable object (whatever part tells so) is
    /// reported here, and leaves nothing claimed or written.
    async fn write_object(
        &mut self,
        mut object: ObjectParts,
        seen: &mut SeenKeys,
        report: &mut IngestReport,
        late_before: Option<i32>,
        run_id: &str,
    ) -> Result<Option<ObjectSoFar>, IngestError> {
        let tables = self.tables;
        let path = object.obj.relative.clone();
        let mut so_far = ObjectSoFar {
            report: ObjectReport::of(&object.obj),
            accepted: AcceptedSpan { rows: 0, earliest_occurred_at: None },
            late_events: 0,
            late_months: Default::default(),
        };
        let mut tentative: Option<Tentative<'a>> = None;
        loop {
            let mut part = match object.next().await? {
                Some(part) => part,
                None => {
                    let error = "internal: the decoder stopped before the end of the object".to_string();
                    Decoded::unreadable(ObjectReport::of(&object.obj), error)
                }
            };
            if !part.report.status.is_read() {
                if let Some(dropped) = tentative.take() {
                    seen.rollback();
                    dropped.events.discard().await;
                    let mut rejects = dropped.rejects;
                    rejects.reset();
                }
                tracing::warn!(object = %path, error = part.report.error.as_deref().unwrap_or(""), "object is unreadable; none of its rows are counted");
                report.unreadable_objects.push(Unreadable {
                    path: path.clone(),
                    error: part.report.error.clone().unwrap_or_default(),
                });
                report.objects.push(part.report);
                return Ok(None);
            }
            if !part.last && tentative.is_none() {
                seen.begin();
                tentative = Some(Tentative {
                    events: EventFiles::new(self.events_table, &tables.events, self.parallelism),
                    rejects: RecordBatchWriter::for_table(self.rejects_table).map_err(delta_err(&tables.rejects))?,
                });
            }
            let mut keep = part.claim(seen).map_err(|source| spill_err(seen, source))?;
            let (events, rejects_writer) = match &mut tentative {
                Some(t) => (&mut t.events, &mut t.rejects),
                None => (&mut self.events, &mut self.rejects),
            };
            for kind in FileKind::BOTH {
                let Some((batch, _)) = part.events[kind as usize].take() else { continue };
                let mask = std::mem::take(&mut keep[kind as usize]);
                let kept = if mask.iter().all(|k| *k) {
                    batch
                } else {
                    let mask = arrow::array::BooleanArray::from(mask);
                    arrow::compute::filter_record_batch(&batch, &mask).map_err(|source| IngestError::Arrow {
                        table: tables.events.display(),
                        source,
                    })?
                };
                if let Some(before) = late_before {
                    count_late(&kept, before, &mut so_far.late_events, &mut so_far.late_months);
                }
                if kept.num_rows() > 0 {
                    so_far.accepted.add(&kept);
                    events.push(kind, kept).await?;
                }
            }
            let rejects = batch::rejects_batches(&path, &part.rejects, run_id, batch::MAX_REJECTS_BATCH_TEXT)
                .map_err(|source| IngestError::Arrow {
                    table: tables.rejects.display(),
                    source,
                })?;
            drop(std::mem::take(&mut part.rejects));
            for b in rejects {
                rejects_writer.write(b).await.map_err(delta_err(&tables.rejects))?;
            }
            so_far.report.absorb(&part.report);
            if part.last {
                break;
            }
        }
        if let Some(kept) = tentative {
            seen.commit().map_err(|source| spill_err(seen, source))?;
            self.events.adopt(kept.events).await?;
            let mut rejects = kept.rejects;
            self.rejects_adds.extend(rejects.flush().await.map_err(delta_err(&tables.rejects))?);
        }
        let meta = &so_far.report;
        tracing::debug!(object = %path, rows_read = meta.rows_read, accepted = meta.accepted, rejected = meta.rejected, duplicates = meta.duplicates, "object ingested");
        self.objects.push(ObjectId::of(&path, &object.obj.meta));
        Ok(Some(so_far))
    }

    /// Give up: stop encoding and drop the rejects not yet written.
    fn abort(mut self) {
        self.events.abort();
        self.rejects.reset();
    }

    /// Write the rows still buffered; the files of both tables.
    async fn flush(mut self) -> Result<Written, IngestError> {
        let event_adds = self.events.finish().await?;
        let mut rejects_adds = self.rejects.flush().await.map_err(delta_err(&self.tables.rejects))?;
        rejects_adds.append(&mut self.rejects_adds);
        Ok(Written {
            event_adds,
            rejects_adds,
            objects: self.objects,
            accepted: self.accepted,
        })
    }
}

/// Add the counts of the objects read up into the totals and the rejects by reason.
fn sum_totals(report: &mut IngestReport) {
    for o in &report.objects {
        let t = &mut report.totals;
        if !o.status.is_read() {
            t.objects_unreadable += 1;
            continue;
        }
        t.objects_ingested += 1;
        t.rows_read += o.rows_read;
        t.accepted += o.accepted;
        t.rejected += o.rejected;
        t.duplicates += o.duplicates;
        t.conflicting_duplicates += o.conflicting_duplicates;
        for (reason, n) in &o.rejects_by_reason {
            *report.rejects_by_reason.entry(reason.clone()).or_default() += n;
        }
    }
}

/// Fail when the share of rejected rows or of unreadable objects is above
/// `max` (`ingest.max_reject_rate`).
fn check_reject_rates(t: &Totals, max: f64) -> Result<(), IngestError> {
    let row_rate = if t.rows_read > 0 { t.rejected as f64 / t.rows_read as f64 } else { 0.0 };
    let read = t.objects_ingested + t.objects_unreadable;
    let object_rate = if read > 0 { t.objects_unreadable as f64 / read as f64 } else { 0.0 };
    for (what, rate) in [("the share of rejected rows", row_rate), ("the share of unreadable objects", object_rate)] {
        if rate > max {
            return Err(IngestError::Threshold {
                what: what.to_string(),
                rate,
                max,
            });
        }
    }
    Ok(())
}

/// Record ingest sequence `sequence` in the manifest, then commit `events`
/// (the moment its objects count as ingested) and `rejects`; the two new
/// table versions.
async fn commit_sequence(
    opened: Opened,
    tables: &Tables,
    sequence: i64,
    mut written: Written,
    keys: KeysFile,
    run_id: &str,
) -> Result<(i64, i64), IngestError> {
    let entry = ManifestEntry {
        sequence,
        run_id: run_id.to_string(),
        objects: std::mem::take(&mut written.objects),
        rejects_files: written.rejects_adds.clone(),
        keys: Some(keys.clone()),
        accepted: Some(written.accepted),
    };
    if let manifest::Created::Other(other) = opened.manifest.create_entry(&entry).await? {
        // The entry of another run: the winner of a race for this sequence
        // if `events` now carries it, else one that stopped before its
        // commit (ingest runs under the warehouse's ingest lease, so no
        // other run is between its entry and its commit), replaced.
        let events = open_delta_table(&tables.events).await?;
        if committed_sequence(&events, &tables.events).await? >= sequence {
            discard_uncommitted(&opened.manifest, tables, &written, &keys).await;
            return Err(IngestError::Raced { sequence, winner: other });
        }
        tracing::warn!(sequence, run_id = %other, "replacing the manifest entry of a run that stopped before committing it");
        opened.manifest.write_entry(&entry).await?;
    }
    crate::failpoint("ingest:after_manifest");
    let events_version = match commit(
        &opened.events,
        &tables.events,
        written.event_adds.clone(),
        sequence,
        run_id,
        Some(opened.partition_columns),
    )
    .await
    {
        Ok(version) => version,
        Err(e) if lost_the_race(&e) => {
            // The entry stays: it is the winner's, or replaced by the next run.
            discard_uncommitted(&opened.manifest, tables, &written, &keys).await;
            return Err(IngestError::Raced { sequence, winner: "another run".into() });
        }
        Err(e) => return Err(e),
    };
    crate::failpoint("ingest:after_events_commit");
    let rejects_version = commit(&opened.rejects_table, &tables.rejects, written.rejects_adds, sequence, run_id, None).await?;
    crate::failpoint("ingest:after_rejects_commit");
    Ok((events_version, rejects_version))
}

/// Whether a commit of `events` failed because another writer committed an
/// ingest sequence since this run read the table.
fn lost_the_race(e: &IngestError) -> bool {
    use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
    matches!(
        e,
        IngestError::Delta {
            source: deltalake::DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
            },
            ..
        }
    )
}

/// Delete what this run wrote for a sequence another run committed: its
/// data files and its key segment.
async fn discard_uncommitted(manifest: &Manifest, tables: &Tables, written: &Written, keys: &KeysFile) {
    for (location, adds) in [(&tables.events, &written.event_adds), (&tables.rejects, &written.rejects_adds)] {
        for add in adds {
            if let Err(e) = location.store.delete(&location.path(&add.path)).await {
                tracing::warn!(table = %location.display(), file = %add.path, error = %e, "cannot delete a file of an uncommitted ingest");
            }
        }
    }
    manifest.delete_file(&keys.file).await;
}

/// List the raw prefix: readable objects sorted by path byte order; ignored and
/// skipped ones go to the report.
async fn discover(raw: &Location, report: &mut IngestReport) -> Result<Vec<Discovered>, IngestError> {
    let listed: Vec<object_store::ObjectMeta> = raw
        .store
        .list(Some(&raw.prefix))
        .try_collect()
        .await
        .map_err(|source| IngestError::List {
            url: raw.display(),
            source,
        })?;
    let mut found = Vec::new();
    for meta in listed {
        let Some(relative) = raw.relative(&meta.location) else { continue };
        if relative.is_empty() {
            continue;
        }
        if relative.split('/').any(|seg| seg.starts_with('_') || seg.starts_with('.')) {
            report.ignored_objects.push(relative);
            continue;
        }
        match decode::detect(&relative) {
            Some((format, compression)) => found.push(Discovered {
                relative,
                meta,
                format,
                compression,
            }),
            None => report.skipped_objects.push(relative),
        }
    }
    found.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    report.ignored_objects.sort();
    report.skipped_objects.sort();
    report.totals.objects_ignored = report.ignored_objects.len() as u64;
    report.totals.objects_skipped = report.skipped_objects.len() as u64;
    Ok(found)
}

impl ObjectReport {
    /// Add the counts of a part of this object.
    fn absorb(&mut self, part: &ObjectReport) {
        self.rows_read += part.rows_read;
        self.accepted += part.accepted;
        self.rejected += part.rejected;
        self.duplicates += part.duplicates;
        self.conflicting_duplicates += part.conflicting_duplicates;
        for (reason, n) in &part.rejects_by_reason {
            *self.rejects_by_reason.entry(reason.clone()).or_default() += n;
        }
    }

    /// The report of `obj` before it is read.
    fn of(obj: &Discovered) -> ObjectReport {
        ObjectReport {
            path: obj.relative.clone(),
            format: Some(obj.format),
            compression: Some(obj.compression),
            status: ObjectStatus::Ingested,
            bytes: obj.meta.size,
            ..Default::default()
        }
    }
}

/// Decode and validate one object (blocking; runs on the blocking pool). A
/// panic while doing so (a bug in a decoder, or in a library under it, set
/// off by this object's bytes) makes the object unreadable; it never ends
/// the run.
#[allow(clippy::too_many_arguments)]
fn decode_object(
    obj: &Discovered,
    bytes: Bytes,
    tz: Tz,
    currency: &str,
    run_id: &str,
    limits: decode::Limits,
    parts: PartLimits,
    emit: &mut dyn FnMut(Decoded) -> bool,
) -> Decoded {
    unreadable_on_panic(obj, || {
        crate::panic_point(&format!("decode:{}", obj.relative));
        decode_object_unguarded(obj, bytes, tz, currency, run_id, limits, parts, emit)
    })
}

/// What `decode` returns, or `obj` unreadable with the message of the panic
/// that stopped it. Whatever `decode` built is dropped with it, so nothing it
/// left half done is used; parts it handed on before are dropped by the
/// writer when the unreadable object comes in place of the next one.
fn unreadable_on_panic(obj: &Discovered, decode: impl FnOnce() -> Decoded) -> Decoded {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let message = panic_message(panic.as_ref());
        tracing::error!(object = %obj.relative, panic = %message, "a decoder panicked; the object is reported unreadable");
        Decoded::unreadable(ObjectReport::of(obj), format!("the decoder panicked: {message}"))
    })
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!`
/// makes them).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The rows of one object being built into a [`Decoded`] part.
struct Part {
    builders: [EventBuilder; 2],
    kinds: Vec<FileKind>,
    rejects: Vec<RejectRow>,
    /// Bytes of `rejects` (their text).
    reject_bytes: usize,
    rows_read: u64,
    reasons: BTreeMap<String, u64>,
}

impl Part {
    fn new(obj: &Discovered, run_id: &str, rows: usize) -> Part {
        Part {
            builders: [EventBuilder::new(&obj.relative, run_id, rows), EventBuilder::new(&obj.relative, run_id, rows / 8)],
            kinds: Vec::new(),
            rejects: Vec::new(),
            reject_bytes: 0,
            rows_read: 0,
            reasons: BTreeMap::new(),
        }
    }

    /// Whether the part holds as many rows or bytes as one part may. The
    /// bytes of the events are counted every [`PartLimits::CHECK_EVERY`] rows.
    fn is_full(&self, limits: PartLimits) -> bool {
        if self.rows_read >= limits.rows as u64 {
            return true;
        }
        let mut bytes = self.reject_bytes;
        if self.rows_read % PartLimits::CHECK_EVERY == 0 {
            bytes += self.builders.iter().map(EventBuilder::bytes).sum::<usize>();
        }
        bytes >= limits.bytes
    }

    /// The part built so far, which starts the next one empty.
    fn take(&mut self, obj: &Discovered, last: bool) -> Result<Decoded, String> {
        let mut report = ObjectReport::of(obj);
        report.rows_read = std::mem::take(&mut self.rows_read);
        report.rejected = self.rejects.len() as u64;
        report.rejects_by_reason = std::mem::take(&mut self.reasons);
        self.reject_bytes = 0;
        let mut events = [None, None];
        for (slot, builder) in events.iter_mut().zip(&mut self.builders) {
            if builder.is_empty() {
                continue;
            }
            let built = builder.finish().and_then(|b| batch::row_keys(&b).map(|k| (b, k)));
            *slot = Some(built.map_err(|e| format!("internal: cannot build events: {e}"))?);
        }
        Ok(Decoded {
            report,
            events,
            kinds: std::mem::take(&mut self.kinds),
            rejects: std::mem::take(&mut self.rejects),
            last,
        })
    }
}

/// Decode and validate `obj`, handing each full part but the last to
/// `emit` (which says whether it is still wanted), and return the last part,
/// or the object unreadable.
#[allow(clippy::too_many_arguments)]
fn decode_object_unguarded(
    obj: &Discovered,
    bytes: Bytes,
    tz: Tz,
    currency: &str,
    run_id: &str,
    limits: decode::Limits,
    parts: PartLimits,
    emit: &mut dyn FnMut(Decoded) -> bool,
) -> Decoded {
    // Room for the events of an uncompressed object, most of them usage events.
    let rows = if obj.compression == Compression::None { (bytes.len() / BYTES_PER_EVENT).min(parts.rows) } else { 0 };
    let mut part = Part::new(obj, run_id, rows);
    let mut failed: Option<String> = None;
    let mut unwanted = false;
    let mut local_days = LocalDays::new(tz);
    let result = decode::decode(bytes, obj.format, obj.compression, limits, &mut |row| {
        if failed.is_some() || unwanted {
            return;
        }
        // A full part goes once a row follows it, so the last part is never empty.
        if part.is_full(parts) {
            match part.take(obj, false) {
                Ok(full) => unwanted = !emit(full),
                Err(e) => failed = Some(e),
            }
            if failed.is_some() || unwanted {
                return;
            }
        }
        part.rows_read += 1;
        let outcome = match row.record {
            Err(detail) => Err(validate::Rejection::new(validate::Reason::Malformed, detail)),
            Ok(record) => validate::validate(&record, currency),
        };
        match outcome {
            Ok(ev) => {
                let date = local_days.days(ev.occurred_at);
                let kind = FileKind::of(&ev.event_type);
                part.kinds.push(kind);
                part.builders[kind as usize].push(&ev, date, row.number);
            }
            Err(rejection) => {
                *part.reasons.entry(rejection.reason.code().to_string()).or_default() += 1;
                let raw = (row.raw)();
                part.reject_bytes += raw.len() + rejection.detail.len();
                part.rejects.push(RejectRow {
                    source_row: row.number,
                    raw,
                    reason: rejection.reason.code(),
                    detail: rejection.detail,
                });
            }
        }
    });
    let error = match (result, failed) {
        (Err(e), _) => e.to_string(),
        (Ok(()), Some(e)) => e,
        (Ok(()), None) => match part.take(obj, true) {
            Ok(last) => return last,
            Err(e) => e,
        },
    };
    Decoded::unreadable(ObjectReport::of(obj), error)
}

fn count_late(batch: &arrow::array::RecordBatch, before: i32, late: &mut u64, months: &mut std::collections::BTreeSet<String>) {
    use arrow::array::AsArray;
    let Some(col) = batch.column_by_name("event_date") else { return };
    let dates = col.as_primitive::<arrow::datatypes::Date32Type>();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    for d in dates.iter().flatten() {
        if d < before {
            *late += 1;
            let date = epoch + chrono::Duration::days(d as i64);
            months.insert(date.format("%Y-%m").to_string());
        }
    }
}

/// A failed write or read of the key index's spilled runs.
fn spill_err(seen: &SeenKeys, source: std::io::Error) -> IngestError {
    IngestError::KeySpill { dir: seen.spilled().1, source }
}

/// Put the keys of every event already in `events` in `seen` (for
/// de-duplication across runs).
async fn load_seen(events: &DeltaTable, location: &Location, seen: &mut SeenKeys) -> Result<(), IngestError> {
    if events.snapshot().map(|s| s.log_data().num_files()).unwrap_or(0) == 0 {
        return Ok(());
    }
    let query_err = |source| IngestError::Query {
        table: location.display(),
        source,
    };
    let ctx = datafusion::prelude::SessionContext::new();
    events
        .update_datafusion_session(&ctx.state())
        .map_err(delta_err(location))?;
    let provider = events.table_provider().await.map_err(query_err)?;
    ctx.register_table("events", provider).map_err(query_err)?;
    let columns = batch::PAYLOAD_COLUMNS.join(", ");
    let df = ctx.sql(&format!("select {columns} from events")).await.map_err(query_err)?;
    let mut stream = df.execute_stream().await.map_err(query_err)?;
    while let Some(b) = stream.next().await {
        let b = b.map_err(query_err)?;
        for key in batch::row_keys(&b).map_err(|source| IngestError::Arrow {
            table: location.display(),
            source,
        })? {
            seen.insert(key.id, key.payload).map_err(|source| spill_err(seen, source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, RecordBatch};

    fn object(lines: &[&str]) -> (Discovered, Bytes) {
        let text = lines.join("\n");
        let meta = object_store::ObjectMeta {
            location: object_store::path::Path::from("raw/a.jsonl"),
            last_modified: chrono::Utc::now(),
            size: text.len() as u64,
            e_tag: None,
            version: None,
        };
        let obj = Discovered {
            relative: "a.jsonl".into(),
            meta,
            format: Format::JsonLines,
            compression: Compression::None,
        };
        (obj, Bytes::from(text))
    }

    fn source_rows(batch: &RecordBatch) -> Vec<i64> {
        let column = batch.column_by_name("source_row").expect("source_row");
        column.as_primitive::<arrow::datatypes::Int64Type>().values().to_vec()
    }

    /// Usage events and the others come out apart, each in row order, and
    /// duplicates are decided in row order across the two: the first
    /// occurrence wins whatever its kind.
    #[test]
    fn objects_decode_into_two_kinds_and_claim_keys_in_row_order() {
        let usage = |id: &str, day: u32| format!(r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"c1","occurred_at":"2026-03-{day:02}T10:00:00Z","user_id":"u1"}}"#);
        let email = |id: &str, day: u32| format!(r#"{{"event_id":"{id}","event_type":"email.sent","customer_id":"c1","occurred_at":"2026-03-{day:02}T10:00:00Z","campaign_id":"k1"}}"#);
        let lines = [usage("x", 1), email("e1", 2), email("x", 3), usage("u2", 4), usage("e1", 2), email("e3", 5)];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (obj, bytes) = object(&lines);
        let mut decoded = decode_object(&obj, bytes, chrono_tz::UTC, "USD", "run", decode::Limits::default(), PartLimits::DEFAULT, &mut |_| true);
        assert_eq!(decoded.report.status, ObjectStatus::Ingested);
        assert_eq!(decoded.report.rows_read, 6);
        assert_eq!(decoded.report.rejected, 0, "{:?}", decoded.rejects);
        let rows = |d: &Decoded, k: FileKind| d.events[k as usize].as_ref().map(|(b, _)| source_rows(b)).unwrap_or_default();
        assert_eq!(rows(&decoded, FileKind::Usage), [1, 4, 5]);
        assert_eq!(rows(&decoded, FileKind::Other), [2, 3, 6]);
        use FileKind::{Other, Usage};
        assert_eq!(decoded.kinds, [Usage, Other, Other, Usage, Usage, Other]);

        let mut seen = SeenKeys::default();
        let keep = decoded.claim(&mut seen).expect("claimed");
        // Row 3 (email "x") repeats row 1 (usage "x") with another payload;
        // row 5 (usage "e1") repeats row 2 (email "e1").
        assert_eq!(keep[Usage as usize], [true, true, false]);
        assert_eq!(keep[Other as usize], [true, false, true]);
        assert_eq!((decoded.report.accepted, decoded.report.duplicates, decoded.report.conflicting_duplicates), (4, 2, 2));
    }

    /// A raw prefix in memory holding `objects`, and a new warehouse in `dir`.
    async fn raw_and_warehouse(objects: &[(&str, Vec<u8>)], dir: &std::path::Path) -> (Location, Warehouse) {
        let store = Arc::new(object_store::memory::InMemory::new());
        for (name, bytes) in objects {
            store.put(&format!("raw/{name}").as_str().into(), bytes.clone().into()).await.expect("put");
        }
        let raw = Location {
            url: url::Url::parse("memory:///raw").expect("url"),
            store,
            prefix: "raw".into(),
        };
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.display().to_string()).expect("warehouse");
        (raw, warehouse)
    }

    fn options(limits: decode::Limits) -> IngestOptions<'static> {
        IngestOptions {
            run_id: "r1",
            timezone: chrono_tz::UTC,
            currency: "USD",
            max_reject_rate: 1.0,
            parallelism: 2,
            limits,
            progress: None,
            key_memory: None,
            late_before: chrono::NaiveDate::from_ymd_opt(2026, 3, 3),
        }
    }

    /// `(source_object, source_row, event_id or raw)` of every row of a table, sorted.
    async fn table_rows(location: &Location, text: &str) -> Vec<(String, i64, String)> {
        let table = open_delta_table(location).await.expect("open");
        let ctx = datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).expect("session");
        ctx.register_table("t", table.table_provider().await.expect("provider")).expect("register");
        let sql = format!("select source_object, source_row, {text} from t order by 1, 2");
        let batches = ctx.sql(&sql).await.expect("plan").collect().await.expect("rows");
        let mut rows = Vec::new();
        for b in batches {
            for i in 0..b.num_rows() {
                let text = |c: usize| arrow::util::display::array_value_to_string(b.column(c), i).expect("text");
                rows.push((text(0), text(1).parse().expect("row"), text(2)));
            }
        }
        rows
    }

    /// What an ingest in parts of `parts` made: the report, the rows of
    /// `events` and of `rejects`.
    async fn ingest_parts(objects: &[(&str, Vec<u8>)], limits: decode::Limits, parts: PartLimits) -> (IngestReport, Vec<(String, i64, String)>, Vec<(String, i64, String)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (raw, warehouse) = raw_and_warehouse(objects, dir.path()).await;
        let report = ingest_in_parts(&raw, &warehouse, &options(limits), parts).await.expect("ingest");
        let events = table_rows(&warehouse.events(), "event_id").await;
        let rejects = table_rows(&warehouse.rejects(), "raw").await;
        (report, events, rejects)
    }

    fn event(id: &str, kind: &str, day: u32, extra: &str) -> String {
        format!(r#"{{"event_id":"{id}","event_type":"{kind}","customer_id":"c1","occurred_at":"2026-03-{day:02}T10:00:00Z",{extra}}}"#)
    }

    fn lines(rows: &[String]) -> Vec<u8> {
        rows.join("\n").into_bytes()
    }

    /// Objects decoded in parts of a row, of two rows, or of a few bytes
    /// count, claim, keep and reject exactly what one part each would:
    /// duplicates within a part, across parts of one object and across
    /// objects are decided in (object, row) order (EVENTS.md rule 13).
    #[tokio::test]
    async fn objects_in_parts_give_what_one_part_gives() {
        let login = |id: &str, day: u32| event(id, "usage.login", day, r#""user_id":"u1""#);
        let sent = |id: &str, day: u32| event(id, "email.sent", day, r#""campaign_id":"k1""#);
        let a = lines(&[login("x", 1), sent("e1", 2), sent("x", 3), "{not json".into(), login("u2", 4), login("e1", 2), sent("e3", 5), login("u2", 4)]);
        let b = lines(&[login("x", 1), login("b1", 6), r#"{"event_id":"b2"}"#.into(), login("b1", 7), sent("e3", 5), login("b3", 2)]);
        let objects = [("a.jsonl", a), ("b.jsonl", b)];
        let limits = decode::Limits::default();
        let (whole, events, rejects) = ingest_parts(&objects, limits, PartLimits::DEFAULT).await;
        let t = &whole.totals;
        assert_eq!((t.rows_read, t.accepted, t.rejected, t.duplicates, t.conflicting_duplicates), (14, 6, 2, 6, 3));
        assert_eq!(events.len(), 6);
        assert_eq!(whole.late_events, 3, "events of March 1 and 2 are late");
        for parts in [PartLimits { rows: 1, bytes: usize::MAX }, PartLimits { rows: 2, bytes: usize::MAX }, PartLimits { rows: usize::MAX, bytes: 1 }] {
            let (report, events_in_parts, rejects_in_parts) = ingest_parts(&objects, limits, parts).await;
            assert_eq!(report.objects, whole.objects, "{parts:?}");
            assert_eq!(report.totals, whole.totals, "{parts:?}");
            assert_eq!((report.late_events, &report.late_months), (whole.late_events, &whole.late_months), "{parts:?}");
            assert_eq!(events_in_parts, events, "{parts:?}");
            assert_eq!(rejects_in_parts, rejects, "{parts:?}");
        }
    }

    /// An object that turns out unreadable after some of its parts were
    /// taken (here: over `max_object_bytes` once decompressed) counts none
    /// of its rows: none of them is written, its rejects neither, and the
    /// keys of its first parts stay free for a later object.
    #[tokio::test]
    async fn an_object_unreadable_in_a_later_part_counts_none_of_its_rows() {
        use std::io::Write;
        let login = |id: &str| event(id, "usage.login", 10, r#""user_id":"u1""#);
        let mut rows: Vec<String> = vec![login("k1"), "{not json".into(), login("k2"), login("k3")];
        rows.extend((4..40).map(|i| login(&format!("k{i}"))));
        let text = lines(&rows);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).expect("gzip");
        let a = gz.finish().expect("gzip");
        let b = lines(&[login("k1"), login("k2"), login("b1")]);
        let objects = [("a.jsonl.gz", a), ("b.jsonl", b)];
        // Room for about 8 rows of the 40: the first parts are taken before decoding fails.
        let limits = decode::Limits {
            max_object_bytes: (rows[0].len() * 8) as u64,
            ..Default::default()
        };
        for parts in [PartLimits { rows: 2, bytes: usize::MAX }, PartLimits::DEFAULT] {
            let (report, events, rejects) = ingest_parts(&objects, limits, parts).await;
            let a = &report.objects[0];
            assert_eq!(a.status, ObjectStatus::Unreadable, "{parts:?}");
            assert!(a.error.as_deref().unwrap_or("").contains("max_object_bytes"), "{:?}", a.error);
            assert_eq!((a.rows_read, a.accepted, a.rejected, a.duplicates), (0, 0, 0, 0), "{parts:?}");
            let b = &report.objects[1];
            assert_eq!((b.rows_read, b.accepted, b.duplicates), (3, 3, 0), "{parts:?}: the keys of a are free");
            assert_eq!((report.totals.objects_unreadable, report.totals.accepted, report.totals.rejected), (1, 3, 0));
            let ids: Vec<&str> = events.iter().map(|(o, _, id)| {
                assert_eq!(o, "b.jsonl");
                id.as_str()
            }).collect();
            assert_eq!(ids, ["k1", "k2", "b1"], "{parts:?}");
            assert!(rejects.is_empty(), "{parts:?}: {rejects:?}");
        }
    }

    /// A panic while an object is decoded makes it unreadable with the
    /// panic's message; it does not reach the caller.
    #[test]
    fn a_decoder_panic_makes_the_object_unreadable() {
        let (obj, bytes) = object(&[r#"{"event_id":"a"}"#]);
        let decoded = unreadable_on_panic(&obj, || panic!("index out of bounds: the len is 3"));
        assert_eq!(decoded.report.status, ObjectStatus::Unreadable);
        assert_eq!(decoded.report.path, "a.jsonl");
        let error = decoded.report.error.as_deref().unwrap_or("");
        assert!(error.contains("panicked") && error.contains("the len is 3"), "{error}");
        let formatted = unreadable_on_panic(&obj, || panic!("{} {}", "formatted", 7));
        assert!(formatted.report.error.as_deref().unwrap_or("").contains("formatted 7"));
        // Without a panic, the object is what decoding made of it.
        let read = unreadable_on_panic(&obj, || decode_object_unguarded(&obj, bytes, chrono_tz::UTC, "USD", "run", decode::Limits::default(), PartLimits::DEFAULT, &mut |_| true));
        assert_eq!((read.report.status, read.report.rows_read), (ObjectStatus::Ingested, 1));
    }

    /// An object that cannot be read counts none of its rows, and the run
    /// report writes each status as a lowercase word.
    #[test]
    fn object_status_is_written_as_lowercase_words() {
        let (mut obj, _) = object(&[]);
        obj.compression = Compression::Gzip;
        let decoded = decode_object(&obj, Bytes::from_static(b"not gzip"), chrono_tz::UTC, "USD", "run", decode::Limits::default(), PartLimits::DEFAULT, &mut |_| true);
        assert_eq!(decoded.report.status, ObjectStatus::Unreadable);
        assert_eq!((decoded.report.rows_read, decoded.kinds.len()), (0, 0));

        let status = |status| serde_json::to_value(ObjectReport { status, ..Default::default() }).expect("json")["status"].clone();
        assert_eq!(status(ObjectStatus::Ingested), "ingested");
        assert_eq!(status(ObjectStatus::Unreadable), "unreadable");
        let read: ObjectReport = serde_json::from_str(r#"{"status":"unreadable"}"#).expect("report");
        assert_eq!(read.status, ObjectStatus::Unreadable);
    }

    /// A raw store where, right after each listing, one object is deleted
    /// and another rewritten: what a producer does at the wrong moment.
    #[derive(Debug)]
    struct Moving {
        inner: object_store::memory::InMemory,
        armed: std::sync::atomic::AtomicBool,
    }

    impl std::fmt::Display for Moving {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Moving")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for Moving {
        async fn put_opts(&self, p: &object_store::path::Path, v: object_store::PutPayload, o: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(p, v, o).await
        }
        async fn put_multipart_opts(
            &self,
            p: &object_store::path::Path,
            o: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(p, o).await
        }
        async fn get_opts(&self, p: &object_store::path::Path, o: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(p, o).await
        }
        fn delete_stream(
            &self,
            paths: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.inner.delete_stream(paths)
        }
        fn list(&self, prefix: Option<&object_store::path::Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            let listed = futures::executor::block_on(self.inner.list(prefix).try_collect::<Vec<_>>());
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                futures::executor::block_on(async {
                    self.inner.delete(&"raw/b.jsonl".into()).await.expect("delete");
                    let changed = line("c2", 3).into_bytes();
                    self.inner.put(&"raw/c.jsonl".into(), changed.into()).await.expect("rewrite");
                });
            }
            futures::stream::iter(listed.map_or_else(|e| vec![Err(e)], |l| l.into_iter().map(Ok).collect())).boxed()
        }
        async fn list_with_delimiter(&self, prefix: Option<&object_store::path::Path>) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &object_store::path::Path, to: &object_store::path::Path, o: object_store::CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, o).await
        }
    }

    /// An index over its memory budget spills to disk and decides exactly
    /// as one held whole: duplicates of spilled keys (exact and conflicting,
    /// in one object read in parts or across objects) are found, and the
    /// segment merged from the runs serves the next ingest.
    #[tokio::test]
    async fn a_key_index_over_its_budget_decides_as_one_in_memory() {
        let login = |id: usize, day: u32| event(&format!("k{id}"), "usage.login", day, r#""user_id":"u1""#);
        let object = |ids: std::ops::Range<usize>, day: u32| lines(&ids.map(|i| login(i, day)).collect::<Vec<_>>());
        let first = [
            ("a.jsonl", object(0..1_500, 1)),
            ("b.jsonl", object(1_000..2_600, 1)),
            ("c.jsonl", object(2_500..4_000, 2)),
        ];
        let second = [("d.jsonl", object(3_900..4_100, 2)), ("e.jsonl", object(0..50, 3))];
        let run = |key_memory: Option<usize>, parts: PartLimits| {
            let (first, second) = (first.clone(), second.clone());
            async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let (raw, warehouse) = raw_and_warehouse(&first, dir.path()).await;
                let opts = IngestOptions { key_memory, ..options(decode::Limits::default()) };
                let one = ingest_in_parts(&raw, &warehouse, &opts, parts).await.expect("first ingest");
                for (name, bytes) in &second {
                    raw.store.put(&format!("raw/{name}").as_str().into(), bytes.clone().into()).await.expect("put");
                }
                let opts = IngestOptions { run_id: "r2", ..opts };
                let two = ingest_in_parts(&raw, &warehouse, &opts, parts).await.expect("second ingest");
                assert_eq!(one.keys_spilled > 0, key_memory.is_some(), "first ingest, {parts:?}");
                (one.totals, two.totals, table_rows(&warehouse.events(), "event_id").await)
            }
        };
        let (one, two, events) = run(None, PartLimits::DEFAULT).await;
        assert_eq!((one.accepted, one.duplicates, one.conflicting_duplicates), (4_000, 600, 100));
        assert_eq!((two.accepted, two.duplicates, two.conflicting_duplicates), (100, 150, 50));
        for parts in [PartLimits::DEFAULT, PartLimits { rows: 700, bytes: usize::MAX }] {
            let spilled = run(Some(0), parts).await;
            assert_eq!((&spilled.0, &spilled.1), (&one, &two), "{parts:?}");
            assert!(spilled.2 == events, "{parts:?}: other events kept");
        }
    }

    fn line(id: &str, day: u32) -> String {
        format!(r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"c1","occurred_at":"2026-03-{day:02}T10:00:00Z","user_id":"u1"}}"#)
    }

    /// An object deleted or rewritten between listing and reading is
    /// reported (vanished, changed), does not fail the run, and is read as
    /// it is next run; the others are ingested.
    #[tokio::test]
    async fn objects_that_vanish_or_change_after_listing_are_reported_and_retried() {
        let moving = Arc::new(Moving {
            inner: object_store::memory::InMemory::new(),
            armed: std::sync::atomic::AtomicBool::new(true),
        });
        for (name, id) in [("a", "a1"), ("b", "b1"), ("c", "c1")] {
            moving.inner.put(&format!("raw/{name}.jsonl").as_str().into(), line(id, 1).into_bytes().into()).await.expect("put");
        }
        let raw = Location {
            url: url::Url::parse("memory:///raw").expect("url"),
            store: moving.clone(),
            prefix: "raw".into(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        let opts = IngestOptions {
            run_id: "r1",
            timezone: chrono_tz::UTC,
            currency: "USD",
            max_reject_rate: 1.0,
            parallelism: 2,
            limits: Default::default(),
            progress: None,
            key_memory: None,
            late_before: None,
        };
        let first = ingest(&raw, &warehouse, &opts).await.expect("first ingest");
        let status = |r: &IngestReport, path: &str| r.objects.iter().find(|o| o.path == path).map(|o| o.status);
        assert_eq!(status(&first, "a.jsonl"), Some(ObjectStatus::Ingested));
        assert_eq!(status(&first, "b.jsonl"), Some(ObjectStatus::Vanished));
        assert_eq!(status(&first, "c.jsonl"), Some(ObjectStatus::Changed));
        assert_eq!((first.totals.objects_ingested, first.totals.objects_unreadable, first.totals.accepted), (1, 2, 1));
        assert!(first.unreadable_objects.iter().any(|u| u.error.contains("vanished")), "{:?}", first.unreadable_objects);

        let second = ingest(&raw, &warehouse, &IngestOptions { run_id: "r2", ..opts }).await.expect("second ingest");
        assert_eq!(status(&second, "c.jsonl"), Some(ObjectStatus::Ingested), "the changed object is read as it is now");
        assert_eq!(status(&second, "b.jsonl"), None, "a vanished object is not listed again");
        assert_eq!(second.totals.accepted, 1);
    }
}
