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

/// Decoded objects waiting for de-duplication, at most.
const DECODED_AHEAD: usize = 32;

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

/// What happened to one object during decoding and validation.
struct Decoded {
    identity: ObjectId,
    report: ObjectReport,
    /// Accepted rows of each [`FileKind`], each in row order, with their keys.
    events: [Option<(arrow::array::RecordBatch, Vec<RowKey>)>; 2],
    /// The kind of every accepted row, in row order: the order in which rows
    /// claim their keys (the first occurrence wins, EVENTS.md rule 13).
    kinds: Vec<FileKind>,
    rejects: Vec<RejectRow>,
}

impl Decoded {
    /// An object none of whose rows count (EVENTS.md rule 14).
    fn unreadable(identity: ObjectId, mut report: ObjectReport, error: String) -> Decoded {
        report.status = ObjectStatus::Unreadable;
        report.error = Some(error);
        Decoded {
            identity,
            report,
            events: [None, None],
            kinds: Vec::new(),
            rejects: Vec::new(),
        }
    }

    /// Claim the keys of the accepted rows in row order, across both kinds
    /// (the first occurrence wins); count duplicates and accepted rows. The
    /// rows to keep of each kind.
    fn claim(&mut self, seen: &mut SeenKeys) -> [Vec<bool>; 2] {
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
        let claimed = seen.claim_all(&ordered);
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
        keep
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

    let mut seen = load_keys(&opened, &tables).await?;
    tracing::debug!(seconds = seconds(), "ingest: keys of earlier runs opened");
    // Room for this run's keys.
    let raw_bytes: u64 = new_objects.iter().map(|o| o.meta.size).sum();
    seen.reserve((raw_bytes / BYTES_PER_EVENT as u64).min(200_000_000) as usize);
    if let Some(pb) = opts.progress {
        pb.set_length(new_objects.len() as u64);
        pb.set_message("ingesting");
    }

    let mut output = Output::new(&opened, &tables, opts)?;
    let decoding = decode_ahead(raw, new_objects, opts);
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
    let keys = seen.write(&opened.manifest, sequence, opts.run_id, opts.parallelism.max(1)).await?;
    drop(seen);
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
async fn load_keys(opened: &Opened, tables: &Tables) -> Result<SeenKeys, IngestError> {
    Ok(match SeenKeys::load(&opened.manifest, opened.committed, &opened.prior.keys).await? {
        Some(keys) => keys,
        None => {
            tracing::info!(table = %tables.events.display(), "reading the keys of earlier events back from events (no key index of this version yet)");
            load_seen(&opened.events, &tables.events).await?
        }
    })
}

/// Decoded objects in object order, from the task that fetches and decodes
/// them; dropping it stops that task.
struct Decoding {
    decoded: tokio::sync::mpsc::Receiver<Result<Decoded, IngestError>>,
    _producer: AbortOnDrop,
}

/// Fetch and decode `objects` on a task of their own, ahead of the writing,
/// so that decoding goes on while the writing waits for file encoding. At
/// most `parallelism` objects decode at once; more are in flight.
fn decode_ahead(raw: &Location, objects: Vec<Discovered>, opts: &IngestOptions<'_>) -> Decoding {
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
                return Ok(Decoded::unreadable(ObjectId::of(&obj.relative, &obj.meta), ObjectReport::of(&obj), error.to_string()));
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
                let mut decoded = Decoded::unreadable(ObjectId::of(&obj.relative, &obj.meta), ObjectReport::of(&obj), why);
                decoded.report.status = status;
                Ok(decoded)
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
            let permit = decoders.acquire_owned().await.map_err(IngestError::DecodeSlot)?;
            let decoded = tokio::task::spawn_blocking(move || {
                let decoded = decode_object(&obj, bytes, tz, &currency, &run_id, limits);
                drop(permit);
                decoded
            })
            .await
            .map_err(IngestError::DecodeTask)?;
            Ok::<_, IngestError>(decoded)
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
    events: EventFiles<'a>,
    rejects: RecordBatchWriter,
    objects: Vec<ObjectId>,
    accepted: AcceptedSpan,
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
            events: EventFiles::new(&opened.events, &tables.events, opts.parallelism),
            rejects: RecordBatchWriter::for_table(&opened.rejects_table).map_err(delta_err(&tables.rejects))?,
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
            let mut decoded = result?;
            let path = decoded.report.path.clone();
            if !decoded.report.status.is_read() {
                tracing::warn!(object = %path, error = decoded.report.error.as_deref().unwrap_or(""), "object is unreadable; none of its rows are counted");
                report.unreadable_objects.push(Unreadable {
                    path: path.clone(),
                    error: decoded.report.error.clone().unwrap_or_default(),
                });
                report.objects.push(decoded.report);
                if let Some(pb) = opts.progress {
                    pb.inc(1);
                }
                continue;
            }
            let mut keep = decoded.claim(seen);
            for kind in FileKind::BOTH {
                let Some((batch, _)) = decoded.events[kind as usize].take() else { continue };
                let mask = std::mem::take(&mut keep[kind as usize]);
                let kept = if mask.iter().all(|k| *k) {
                    batch
                } else {
                    let mask = arrow::array::BooleanArray::from(mask);
                    arrow::compute::filter_record_batch(&batch, &mask).map_err(|source| IngestError::Arrow {
                        table: self.tables.events.display(),
                        source,
                    })?
                };
                if let Some(before) = late_before {
                    count_late(&kept, before, &mut report.late_events, &mut late_months);
                }
                if kept.num_rows() > 0 {
                    self.accepted.add(&kept);
                    self.events.push(kind, kept).await?;
                }
            }
            let rejects = batch::rejects_batches(&path, &decoded.rejects, opts.run_id, batch::MAX_REJECTS_BATCH_TEXT)
                .map_err(|source| IngestError::Arrow {
                    table: self.tables.rejects.display(),
                    source,
                })?;
            drop(std::mem::take(&mut decoded.rejects));
            for b in rejects {
                self.rejects.write(b).await.map_err(delta_err(&self.tables.rejects))?;
            }
            let meta = &decoded.report;
            tracing::debug!(object = %path, rows_read = meta.rows_read, accepted = meta.accepted, rejected = meta.rejected, duplicates = meta.duplicates, "object ingested");
            if let Some(pb) = opts.progress {
                pb.inc(1);
            }
            self.objects.push(decoded.identity.clone());
            report.objects.push(decoded.report);
        }
        drop(decoding);
        report.late_months = late_months.into_iter().collect();
        Ok(())
    }

    /// Give up: stop encoding and drop the rejects not yet written.
    fn abort(mut self) {
        self.events.abort();
        self.rejects.reset();
    }

    /// Write the rows still buffered; the files of both tables.
    async fn flush(mut self) -> Result<Written, IngestError> {
        let event_adds = self.events.finish().await?;
        let rejects_adds = self.rejects.flush().await.map_err(delta_err(&self.tables.rejects))?;
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
fn decode_object(obj: &Discovered, bytes: Bytes, tz: Tz, currency: &str, run_id: &str, limits: decode::Limits) -> Decoded {
    unreadable_on_panic(obj, || {
        crate::panic_point(&format!("decode:{}", obj.relative));
        decode_object_unguarded(obj, bytes, tz, currency, run_id, limits)
    })
}

/// What `decode` returns, or `obj` unreadable with the message of the panic
/// that stopped it. Whatever `decode` built is dropped with it, so nothing it
/// left half done is used.
fn unreadable_on_panic(obj: &Discovered, decode: impl FnOnce() -> Decoded) -> Decoded {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let message = panic_message(panic.as_ref());
        tracing::error!(object = %obj.relative, panic = %message, "a decoder panicked; the object is reported unreadable");
        Decoded::unreadable(ObjectId::of(&obj.relative, &obj.meta), ObjectReport::of(obj), format!("the decoder panicked: {message}"))
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

fn decode_object_unguarded(obj: &Discovered, bytes: Bytes, tz: Tz, currency: &str, run_id: &str, limits: decode::Limits) -> Decoded {
    let identity = ObjectId::of(&obj.relative, &obj.meta);
    let mut report = ObjectReport::of(obj);
    // Room for the events of an uncompressed object, most of them usage events.
    let rows = if obj.compression == Compression::None { (bytes.len() / BYTES_PER_EVENT).min(1 << 20) } else { 0 };
    let mut builders = [EventBuilder::new(&obj.relative, run_id, rows), EventBuilder::new(&obj.relative, run_id, rows / 8)];
    let mut kinds = Vec::new();
    let mut rejects = Vec::new();
    let mut rows_read = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut local_days = LocalDays::new(tz);
    let result = decode::decode(bytes, obj.format, obj.compression, limits, &mut |row| {
        rows_read += 1;
        let outcome = match row.record {
            Err(detail) => Err(validate::Rejection::new(validate::Reason::Malformed, detail)),
            Ok(record) => validate::validate(&record, currency),
        };
        match outcome {
            Ok(ev) => {
                let date = local_days.days(ev.occurred_at);
                let kind = FileKind::of(&ev.event_type);
                kinds.push(kind);
                builders[kind as usize].push(&ev, date, row.number);
            }
            Err(rejection) => {
                *reasons.entry(rejection.reason.code().to_string()).or_default() += 1;
                rejects.push(RejectRow {
                    source_row: row.number,
                    raw: (row.raw)(),
                    reason: rejection.reason.code(),
                    detail: rejection.detail,
                });
            }
        }
    });
    if let Err(e) = result {
        return Decoded::unreadable(identity, report, e.to_string());
    }
    report.rows_read = rows_read;
    report.rejected = rejects.len() as u64;
    report.rejects_by_reason = reasons;
    let mut events = [None, None];
    for (slot, builder) in events.iter_mut().zip(&mut builders) {
        if builder.is_empty() {
            continue;
        }
        match builder.finish().and_then(|b| batch::row_keys(&b).map(|k| (b, k))) {
            Ok(built) => *slot = Some(built),
            Err(e) => return Decoded::unreadable(identity, report, format!("internal: cannot build events: {e}")),
        }
    }
    Decoded {
        identity,
        report,
        events,
        kinds,
        rejects,
    }
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

/// Keys of every event already in `events` (for de-duplication across runs).
async fn load_seen(events: &DeltaTable, location: &Location) -> Result<SeenKeys, IngestError> {
    let mut seen = SeenKeys::scanned();
    if events.snapshot().map(|s| s.log_data().num_files()).unwrap_or(0) == 0 {
        return Ok(seen);
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
            seen.insert(key.id, key.payload);
        }
    }
    Ok(seen)
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
        let mut decoded = decode_object(&obj, bytes, chrono_tz::UTC, "USD", "run", decode::Limits::default());
        assert_eq!(decoded.report.status, ObjectStatus::Ingested);
        assert_eq!(decoded.report.rows_read, 6);
        assert_eq!(decoded.report.rejected, 0, "{:?}", decoded.rejects);
        let rows = |d: &Decoded, k: FileKind| d.events[k as usize].as_ref().map(|(b, _)| source_rows(b)).unwrap_or_default();
        assert_eq!(rows(&decoded, FileKind::Usage), [1, 4, 5]);
        assert_eq!(rows(&decoded, FileKind::Other), [2, 3, 6]);
        use FileKind::{Other, Usage};
        assert_eq!(decoded.kinds, [Usage, Other, Other, Usage, Usage, Other]);

        let mut seen = SeenKeys::default();
        let keep = decoded.claim(&mut seen);
        // Row 3 (email "x") repeats row 1 (usage "x") with another payload;
        // row 5 (usage "e1") repeats row 2 (email "e1").
        assert_eq!(keep[Usage as usize], [true, true, false]);
        assert_eq!(keep[Other as usize], [true, false, true]);
        assert_eq!((decoded.report.accepted, decoded.report.duplicates, decoded.report.conflicting_duplicates), (4, 2, 2));
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
        let read = unreadable_on_panic(&obj, || decode_object_unguarded(&obj, bytes, chrono_tz::UTC, "USD", "run", decode::Limits::default()));
        assert_eq!((read.report.status, read.report.rows_read), (ObjectStatus::Ingested, 1));
    }

    /// An object that cannot be read counts none of its rows, and the run
    /// report writes each status as a lowercase word.
    #[test]
    fn object_status_is_written_as_lowercase_words() {
        let (mut obj, _) = object(&[]);
        obj.compression = Compression::Gzip;
        let decoded = decode_object(&obj, Bytes::from_static(b"not gzip"), chrono_tz::UTC, "USD", "run", decode::Limits::default());
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
