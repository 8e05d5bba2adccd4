//! `tenure vacuum`: deletes what no reader and no later run needs any more,
//! so that a warehouse does not grow without bound. It owns the question
//! "is this old enough to go"; what each place holds is asked of its owner:
//!
//! - every Delta table (`events`, `rejects`, each mart): the data files no
//!   version in the retention window refers to (removed by an older version,
//!   or written by a run that failed or was killed and never committed),
//!   found by delta-rs's vacuum (full mode, the versions of the window kept);
//!   then the log before the window (delta-rs's log cleanup, down to a
//!   checkpoint, which vacuum writes when the table has none recent);
//! - the state of incremental models ([`crate::pipeline::incremental`]): the
//!   files no run report in the window lists, nor the latest run that
//!   published (overall and of each pipeline: the next run's base);
//! - the key segments of the ingest manifest ([`crate::ingest::in_use`]):
//!   those on no chain a run can still follow;
//! - run reports older than `runs.retain_days`, except the latest succeeded
//!   and the latest publishing run of each pipeline, and reports of closed
//!   months ([`is_closed`]).
//!
//! The window is `retain_hours` back from now, widened to the version each
//! table had at its start, so that time travel to any instant of the window
//! works. Manifest entries, leases and the tables' current files are never
//! touched.
//!
//! Safety with runs in progress: nothing younger than the window is deleted,
//! whatever it is. A run writes only new objects (data files, state, a key
//! segment, its report), so as long as no run lasts longer than the window,
//! nothing a run in progress writes or reads is deleted; that margin is why
//! vacuum takes no lease, and why two vacuums at once are harmless (deleting
//! a file twice is no error). Vacuum writes no Delta version (delta-rs's
//! vacuum would commit two per table), so the versions that the run reports
//! record stay the tables' latest, and the next incremental run keeps its base.

use crate::ingest::IngestError;
use crate::pipeline::report::RunReport;
use crate::storage::{open_delta_table, Location, StorageError};
use crate::warehouse::{Warehouse, EVENTS, REJECTS};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// How far back time travel keeps working unless told otherwise: a week.
pub const DEFAULT_RETAIN_HOURS: u64 = 168;
/// How long run reports are kept unless told otherwise.
pub const DEFAULT_RUNS_RETAIN_DAYS: u64 = 400;
/// Deletes in flight at once.
const DELETES_AT_ONCE: usize = 16;

/// What to vacuum.
#[derive(Debug, Clone, PartialEq)]
pub struct VacuumOptions {
    /// The retention window: nothing younger is deleted, and every table
    /// version of the window stays readable.
    pub retain: std::time::Duration,
    /// Run reports older than this are deleted (with the exceptions above).
    pub runs_retain: std::time::Duration,
    /// List what would be deleted, delete nothing.
    pub dry_run: bool,
}

impl Default for VacuumOptions {
    fn default() -> Self {
        VacuumOptions {
            retain: std::time::Duration::from_secs(DEFAULT_RETAIN_HOURS * 3600),
            runs_retain: std::time::Duration::from_secs(DEFAULT_RUNS_RETAIN_DAYS * 86_400),
            dry_run: false,
        }
    }
}

/// Objects deleted (or, in a dry run, that would be).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    pub files: u64,
    pub bytes: u64,
    /// The objects, relative to the warehouse (listed in a dry run only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Removed {
    fn add(&mut self, path: String, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        self.paths.push(path);
    }
}

/// What vacuum did to one Delta table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableVacuum {
    /// `events`, `rejects` or the mart's name.
    pub name: String,
    /// The current version (untouched); `None`: a folder with data files of
    /// a first publish that never committed.
    pub version: Option<i64>,
    /// The oldest version the log still holds after vacuum (the data files
    /// of versions older than the window are gone even where their commits
    /// stay, down to a checkpoint).
    pub oldest_version: Option<i64>,
    /// Data files no version of the window refers to.
    pub data: Removed,
    /// Commit and checkpoint files of the log before the window.
    pub log: Removed,
    /// Whether vacuum wrote a checkpoint of the current version (the table
    /// had none in its last 10 versions, so the log could not be cleaned).
    #[serde(default)]
    pub checkpointed: bool,
}

/// What one vacuum did: the CLI prints it, the scheduler keeps the last one
/// (`<warehouse>/_tenure/vacuum.json`) to know when the next is due.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VacuumReport {
    pub warehouse: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: String,
    pub retain_hours: f64,
    /// Now less the retention window.
    pub window_start: String,
    pub runs_retain_days: f64,
    pub tables: Vec<TableVacuum>,
    /// State files of incremental models.
    pub state: Removed,
    /// Key segments of the ingest manifest.
    pub key_segments: Removed,
    pub run_reports: Removed,
}

impl VacuumReport {
    /// Every part's deletions.
    fn parts(&self) -> impl Iterator<Item = &Removed> {
        let tables = self.tables.iter().flat_map(|t| [&t.data, &t.log]);
        tables.chain([&self.state, &self.key_segments, &self.run_reports])
    }

    pub fn files_deleted(&self) -> u64 {
        self.parts().map(|r| r.files).sum()
    }

    pub fn bytes_freed(&self) -> u64 {
        self.parts().map(|r| r.bytes).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VacuumError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{url}: cannot list: {source}")]
    List {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot read: {source}")]
    Read {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot delete: {source}")]
    Delete {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("ingest manifest: {0}")]
    Ingest(#[source] Box<IngestError>),
    #[error("{url}: cannot write the vacuum report: {source}")]
    Record {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot encode the vacuum report: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Vacuum `warehouse` as of `now` (the caller's clock).
pub async fn vacuum(warehouse: &Warehouse, opts: &VacuumOptions, now: DateTime<Utc>) -> Result<VacuumReport, VacuumError> {
    let started = std::time::Instant::now();
    let retain = chrono::Duration::from_std(opts.retain).unwrap_or(chrono::Duration::MAX);
    let window_start = now.checked_sub_signed(retain).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let runs_retain = chrono::Duration::from_std(opts.runs_retain).unwrap_or(chrono::Duration::MAX);
    let runs_before = now.checked_sub_signed(runs_retain).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut report = VacuumReport {
        warehouse: warehouse.display(),
        dry_run: opts.dry_run,
        started_at: now.to_rfc3339(),
        retain_hours: opts.retain.as_secs_f64() / 3600.0,
        window_start: window_start.to_rfc3339(),
        runs_retain_days: opts.runs_retain.as_secs_f64() / 86_400.0,
        ..Default::default()
    };
    let cutoff = Cutoff {
        window_start,
        now,
        dry_run: opts.dry_run,
    };

    let ingest = crate::ingest::in_use(warehouse, window_start).await.map_err(|e| VacuumError::Ingest(Box::new(e)))?;
    let mut tables = vec![(EVENTS.to_string(), warehouse.events()), (REJECTS.to_string(), warehouse.rejects())];
    tables.extend(mart_names(warehouse).await?.into_iter().map(|name| {
        let location = warehouse.mart(&name);
        (name, location)
    }));
    for (name, location) in tables {
        let none = HashSet::new();
        let keep = if name == REJECTS { &ingest.pending_rejects } else { &none };
        if let Some(done) = vacuum_table(warehouse, &name, &location, keep, &cutoff).await? {
            tracing::debug!(table = %name, data_files = done.data.files, data_bytes = done.data.bytes, log_files = done.log.files, dry_run = opts.dry_run, "table vacuumed");
            report.tables.push(done);
        }
    }

    let segments = warehouse.ingest_manifest();
    let old: Vec<ObjectMeta> = ingest.unused_segments.into_iter().filter(|m| m.last_modified < window_start).collect();
    report.key_segments = delete_all(warehouse, &segments, old, opts.dry_run).await?;

    let runs = read_reports(warehouse).await?;
    report.state = prune_state(warehouse, &runs, &cutoff).await?;
    report.run_reports = prune_reports(warehouse, &runs, runs_before, opts.dry_run).await?;

    let took = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    report.finished_at = (now + took).to_rfc3339();
    if !opts.dry_run {
        for part in [&mut report.state, &mut report.key_segments, &mut report.run_reports] {
            part.paths.clear();
        }
        for t in &mut report.tables {
            t.data.paths.clear();
            t.log.paths.clear();
        }
        write_record(warehouse, &report).await?;
    }
    tracing::info!(files = report.files_deleted(), bytes = report.bytes_freed(), dry_run = opts.dry_run, "vacuum done");
    Ok(report)
}

/// The report of the last vacuum of `warehouse` that deleted (not a dry
/// run); `None` when there was none, or it cannot be read (then the next
/// vacuum is due).
pub async fn last(warehouse: &Warehouse) -> Option<VacuumReport> {
    let root = warehouse.root();
    let bytes = root.store.get(&root.path(warehouse.vacuum_record())).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn write_record(warehouse: &Warehouse, report: &VacuumReport) -> Result<(), VacuumError> {
    let root = warehouse.root();
    let body = serde_json::to_vec_pretty(report).map_err(VacuumError::Encode)?;
    root.store
        .put(&root.path(warehouse.vacuum_record()), PutPayload::from(body))
        .await
        .map_err(|source| VacuumError::Record {
            url: root.join(warehouse.vacuum_record()).display(),
            source,
        })?;
    Ok(())
}

/// Whether the run closed a month (or restated one by hand): its report is
/// kept whatever its age, as the reported rows name it (`close_run_id`)
/// and finance traces a reported figure to the run that closed it.
pub fn is_closed(report: &RunReport) -> bool {
    !report.closes.is_empty()
}

/// When the window starts, and whether to delete.
struct Cutoff {
    window_start: DateTime<Utc>,
    now: DateTime<Utc>,
    dry_run: bool,
}

/// The marts: every folder under the marts folder.
async fn mart_names(warehouse: &Warehouse) -> Result<Vec<String>, VacuumError> {
    let marts = warehouse.marts();
    let listed = match marts.store.list_with_delimiter(Some(&marts.prefix)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(source) => return Err(VacuumError::List { url: marts.display(), source }),
    };
    let mut names: Vec<String> = listed.common_prefixes.iter().filter_map(|p| p.filename().map(String::from)).collect();
    names.sort();
    Ok(names)
}

/// Every object under `location` (none when it does not exist).
async fn list(location: &Location) -> Result<Vec<ObjectMeta>, VacuumError> {
    match location.store.list(Some(&location.prefix)).try_collect().await {
        Ok(listed) => Ok(listed),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(source) => Err(VacuumError::List { url: location.display(), source }),
    }
}

/// Delete `objects` (all under `under`) unless this is a dry run; what was
/// deleted, relative to the warehouse. An object already gone counts as
/// deleted by someone else, not here.
async fn delete_all(warehouse: &Warehouse, under: &Location, objects: Vec<ObjectMeta>, dry_run: bool) -> Result<Removed, VacuumError> {
    let mut removed = Removed::default();
    let deleting = futures::stream::iter(objects).map(|meta| async move {
        if dry_run {
            return Ok(Some(meta));
        }
        match under.store.delete(&meta.location).await {
            Ok(()) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(VacuumError::Delete {
                url: warehouse.root().join(&warehouse.root().relative(&meta.location).unwrap_or_default()).display(),
                source,
            }),
        }
    });
    let mut done: Vec<ObjectMeta> = deleting.buffer_unordered(DELETES_AT_ONCE).try_filter_map(|m| async move { Ok(m) }).try_collect().await?;
    done.sort_by(|a, b| a.location.cmp(&b.location));
    for meta in done {
        removed.add(warehouse.root().relative(&meta.location).unwrap_or_default(), meta.size);
    }
    Ok(removed)
}

/// A file of a Delta log: its version, and whether it is a checkpoint.
fn log_file(relative: &str) -> Option<(i64, bool)> {
    let name = relative.strip_prefix("_delta_log/")?;
    let (version, rest) = name.split_once('.')?;
    if version.len() != 20 {
        return None;
    }
    let version = version.parse().ok()?;
    match rest {
        "json" => Some((version, false)),
        r if r.starts_with("checkpoint") && r.ends_with(".parquet") => Some((version, true)),
        _ => None,
    }
}

/// Vacuum one table folder; `keep`: data files (relative to the table) that
/// must stay although no version refers to them. `None` when the folder
/// holds nothing.
async fn vacuum_table(warehouse: &Warehouse, name: &str, location: &Location, keep: &HashSet<String>, cutoff: &Cutoff) -> Result<Option<TableVacuum>, VacuumError> {
    let listed = list(location).await?;
    if listed.is_empty() {
        return Ok(None);
    }
    let delta_err = |source| VacuumError::Delta { table: location.display(), source };
    let relative = |m: &ObjectMeta| location.relative(&m.location).unwrap_or_default();
    let mut done = TableVacuum {
        name: name.to_string(),
        ..Default::default()
    };
    let commits: BTreeMap<i64, DateTime<Utc>> =
        listed.iter().filter_map(|m| match log_file(&relative(m)) {
            Some((v, false)) => Some((v, m.last_modified)),
            _ => None,
        }).collect();
    let table = open_delta_table(location).await?;
    let Some(version) = table.version().map(|v| v as i64).filter(|_| !commits.is_empty()) else {
        // No version: the data files of a first publish or ingest that never
        // committed. Hidden folders (`_delta_log`, ...) are not data.
        let orphans = listed
            .into_iter()
            .filter(|m| m.last_modified < cutoff.window_start)
            .filter(|m| !relative(m).starts_with(['_', '.']) && !keep.contains(&relative(m)))
            .collect();
        done.data = delete_all(warehouse, location, orphans, cutoff.dry_run).await?;
        return Ok(Some(done));
    };
    done.version = Some(version);

    // The window reaches back to the version current at its start.
    let first_kept = commits.range(..=version).filter(|(_, at)| **at < cutoff.window_start).map(|(v, _)| *v).next_back();
    let log_cutoff = first_kept.and_then(|v| commits.get(&v).copied()).unwrap_or(cutoff.window_start).min(cutoff.window_start);
    // Versions a snapshot can be built of: from the oldest checkpoint on,
    // or from 0 while its commit is there.
    let checkpoints = listed.iter().filter_map(|m| log_file(&relative(m))).filter(|(_, c)| *c).map(|(v, _)| v);
    let loadable = if commits.contains_key(&0) { 0 } else { checkpoints.clone().min().unwrap_or(version) };
    let from = first_kept.unwrap_or(i64::MIN).max(loadable);
    let kept_versions: Vec<u64> = commits.range(from..=version).map(|(v, _)| *v as u64).collect();

    let retention = cutoff.now.signed_duration_since(cutoff.window_start).max(chrono::Duration::zero());
    let (table, plan) = table
        .vacuum()
        .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
        .with_retention_period(retention)
        // The retention is ours (vacuum.retain_hours or --retain-hours), not
        // the table's `delta.deletedFileRetentionDuration`.
        .with_enforce_retention_duration(false)
        .with_keep_versions(&kept_versions)
        .with_clock(Arc::new(At(cutoff.now.timestamp_millis())))
        .with_dry_run(true)
        .await
        .map_err(delta_err)?;
    let sizes: HashMap<String, &ObjectMeta> = listed.iter().map(|m| (relative(m), m)).collect();
    let orphans: Vec<ObjectMeta> = plan
        .files_deleted
        .iter()
        .filter(|f| !keep.contains(f.as_str()))
        .filter_map(|f| sizes.get(f.as_str()).map(|m| (*m).clone()))
        .filter(|m| m.last_modified < cutoff.window_start)
        .collect();
    done.data = delete_all(warehouse, location, orphans, cutoff.dry_run).await?;

    // The log: a checkpoint in the last 10 versions lets it be cleaned.
    let newest_checkpoint = checkpoints.max();
    let interval: i64 = crate::warehouse::TABLE_PROPERTIES[0].1.parse().unwrap_or(10);
    let checkpoint = version > 0 && newest_checkpoint.is_none_or(|c| c + interval <= version);
    if checkpoint && !cutoff.dry_run {
        deltalake::checkpoints::create_checkpoint(&table, None).await.map_err(delta_err)?;
    }
    done.checkpointed = checkpoint;
    let log_before: Vec<&ObjectMeta> = listed.iter().filter(|m| log_file(&relative(m)).is_some()).collect();
    if cutoff.dry_run {
        let written = checkpoint.then_some(version);
        for m in expired_log(&log_before, version, written, log_cutoff, &relative) {
            done.log.add(warehouse.root().relative(&m.location).unwrap_or_default(), m.size);
        }
    } else {
        deltalake::checkpoints::cleanup_expired_logs_for(version as u64, table.log_store().as_ref(), log_cutoff.timestamp_millis(), None)
            .await
            .map_err(delta_err)?;
        let after: HashSet<object_store::path::Path> = list(&location.join("_delta_log")).await?.into_iter().map(|m| m.location).collect();
        for m in log_before.iter().filter(|m| !after.contains(&m.location)) {
            done.log.add(warehouse.root().relative(&m.location).unwrap_or_default(), m.size);
        }
    }
    let deleted: HashSet<&str> = done.log.paths.iter().map(String::as_str).collect();
    let remaining = log_before
        .iter()
        .filter(|m| !deleted.contains(warehouse.root().relative(&m.location).unwrap_or_default().as_str()))
        .filter_map(|m| log_file(&relative(m)));
    done.oldest_version = remaining.map(|(v, _)| v).min().or(Some(version));
    Ok(Some(done))
}

/// The log files delta-rs's cleanup deletes (for a dry run; `written`: the
/// version of the checkpoint vacuum would write first): those before the
/// newest checkpoint at or before the first version committed at or after
/// `log_cutoff`, and not after `log_cutoff` themselves.
fn expired_log<'a>(
    log: &[&'a ObjectMeta],
    version: i64,
    written: Option<i64>,
    log_cutoff: DateTime<Utc>,
    relative: &impl Fn(&ObjectMeta) -> String,
) -> Vec<&'a ObjectMeta> {
    let files: Vec<(i64, bool, &ObjectMeta)> = log.iter().filter_map(|m| log_file(&relative(m)).map(|(v, c)| (v, c, *m))).collect();
    let keep = files.iter().filter(|(_, c, m)| !c && m.last_modified >= log_cutoff).map(|(v, ..)| *v).min().unwrap_or(version).min(version);
    let checkpoints = files.iter().filter(|(_, c, _)| *c).map(|(v, ..)| *v).chain(written);
    let Some(checkpoint) = checkpoints.filter(|v| *v <= keep).max() else {
        return Vec::new();
    };
    files.into_iter().filter(|(v, _, m)| *v < checkpoint && m.last_modified <= log_cutoff).map(|(.., m)| m).collect()
}

/// delta-rs's clock for its vacuum: the caller's now.
#[derive(Debug)]
struct At(i64);

impl deltalake::operations::vacuum::Clock for At {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// Every run report with its object (unreadable ones with `None`).
async fn read_reports(warehouse: &Warehouse) -> Result<Vec<(ObjectMeta, Option<RunReport>)>, VacuumError> {
    let dir = warehouse.runs();
    let mut out = Vec::new();
    for meta in list(&dir).await? {
        if !meta.location.as_ref().ends_with(".json") {
            continue;
        }
        let read_err = |source| VacuumError::Read {
            url: dir.join(meta.location.filename().unwrap_or_default()).display(),
            source,
        };
        let bytes = match dir.store.get(&meta.location).await {
            Ok(r) => r.bytes().await.map_err(read_err)?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(read_err(e)),
        };
        let report = serde_json::from_slice::<RunReport>(&bytes).ok();
        out.push((meta, report));
    }
    out.sort_by(|(_, a), (_, b)| {
        let key = |r: &Option<RunReport>| r.as_ref().map(|r| (r.started_at.clone(), r.run_id.clone()));
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// When a report's run ended (or began), else when the report was written.
fn report_time(meta: &ObjectMeta, report: Option<&RunReport>) -> DateTime<Utc> {
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
    report
        .and_then(|r| r.finished_at.as_deref().and_then(parse).or_else(|| parse(&r.started_at)))
        .unwrap_or(meta.last_modified)
}

/// The run ids kept whatever their age: of each pipeline, the latest run
/// that succeeded (the scheduler catches up from it) and the latest that
/// published tables (the next run's base, and what readers resolve the
/// latest tables by); of all, the latest that published.
fn always_kept(runs: &[(ObjectMeta, Option<RunReport>)]) -> HashSet<String> {
    let reports: Vec<&RunReport> = runs.iter().filter_map(|(_, r)| r.as_ref()).collect();
    let mut kept = HashSet::new();
    let mut pipelines: Vec<Option<&str>> = reports.iter().map(|r| Some(r.pipeline.as_str())).collect();
    pipelines.push(None);
    for pipeline in pipelines {
        let of = |r: &&&RunReport| pipeline.is_none_or(|p| r.pipeline == p) && r.succeeded();
        if pipeline.is_some() {
            kept.extend(reports.iter().rev().find(of).map(|r| r.run_id.clone()));
        }
        kept.extend(reports.iter().rev().filter(of).find(|r| !r.tables.is_empty()).map(|r| r.run_id.clone()));
    }
    kept
}

/// Delete the state files that neither a report of the window nor a run
/// kept whatever its age lists, once they are older than the window.
async fn prune_state(warehouse: &Warehouse, runs: &[(ObjectMeta, Option<RunReport>)], cutoff: &Cutoff) -> Result<Removed, VacuumError> {
    let kept_runs = always_kept(runs);
    let listed: HashSet<&str> = runs
        .iter()
        .filter_map(|(meta, r)| r.as_ref().map(|r| (meta, r)))
        .filter(|(meta, r)| kept_runs.contains(&r.run_id) || report_time(meta, Some(r)) >= cutoff.window_start)
        .flat_map(|(_, r)| r.state.iter().flat_map(|s| s.paths()))
        .collect();
    let dir = warehouse.state();
    let old = list(&dir)
        .await?
        .into_iter()
        .filter(|m| m.last_modified < cutoff.window_start)
        .filter(|m| warehouse.root().relative(&m.location).is_none_or(|p| !listed.contains(p.as_str())))
        .collect();
    delete_all(warehouse, &dir, old, cutoff.dry_run).await
}

/// Delete the run reports from before `before`, but those kept whatever
/// their age and those of closed months.
async fn prune_reports(warehouse: &Warehouse, runs: &[(ObjectMeta, Option<RunReport>)], before: DateTime<Utc>, dry_run: bool) -> Result<Removed, VacuumError> {
    let kept_runs = always_kept(runs);
    let old = runs
        .iter()
        .filter(|(meta, r)| report_time(meta, r.as_ref()) < before)
        .filter(|(_, r)| r.as_ref().is_none_or(|r| !kept_runs.contains(&r.run_id) && !is_closed(r)))
        .map(|(meta, _)| meta.clone())
        .collect();
    delete_all(warehouse, &warehouse.runs(), old, dry_run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_told_apart() {
        assert_eq!(log_file("_delta_log/00000000000000000012.json"), Some((12, false)));
        assert_eq!(log_file("_delta_log/00000000000000000009.checkpoint.parquet"), Some((9, true)));
        assert_eq!(log_file("_delta_log/00000000000000000009.checkpoint.0000000001.0000000002.parquet"), Some((9, true)));
        assert_eq!(log_file("_delta_log/_last_checkpoint"), None);
        assert_eq!(log_file("_delta_log/00000000000000000012.crc"), None);
        assert_eq!(log_file("part-0001.parquet"), None);
    }

    fn report(run_id: &str, pipeline: &str, succeeded: bool, published: bool) -> (ObjectMeta, Option<RunReport>) {
        let mut r: RunReport = serde_json::from_value(serde_json::json!({
            "run_id": run_id, "pipeline": pipeline, "status": if succeeded { "succeeded" } else { "failed" },
            "as_of": "2026-01-01", "started_at": format!("2026-01-01T00:00:{}Z", &run_id[1..]),
        }))
        .expect("report");
        if published {
            r.tables.push(crate::publish::Published { name: "m".into(), location: String::new(), version: 1, rows: 1 });
        }
        let meta = ObjectMeta {
            location: object_store::path::Path::from(format!("_runs/{run_id}.json")),
            last_modified: DateTime::<Utc>::MIN_UTC,
            size: 1,
            e_tag: None,
            version: None,
        };
        (meta, Some(r))
    }

    /// A mart of 13 versions: a dry run lists exactly what the vacuum then
    /// deletes (the checkpoint it writes first included), and deletes nothing.
    #[tokio::test]
    async fn a_dry_run_lists_what_the_vacuum_deletes() {
        use arrow::array::{Int64Array, RecordBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        for n in 0..13 {
            let batch = RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![n])) as arrow::array::ArrayRef)]).expect("batch");
            let staged = crate::publish::stage(warehouse.mart("m"), "m".into(), 0, batch.schema(), vec![batch], None).await.expect("stage");
            crate::publish::commit(staged, "r").await.expect("commit");
        }
        let mart = dir.path().join("marts/m");
        let files = |p: &std::path::Path| std::fs::read_dir(p).expect("dir").count();
        let (data_before, log_before) = (files(&mart), files(&mart.join("_delta_log")));
        assert_eq!(log_before, 13 + 2, "13 commits, a checkpoint of version 9 and _last_checkpoint");

        let now = Utc::now() + chrono::Duration::seconds(5);
        let opts = VacuumOptions { retain: std::time::Duration::ZERO, dry_run: true, ..Default::default() };
        let dry = vacuum(&warehouse, &opts, now).await.expect("dry run");
        assert_eq!((files(&mart), files(&mart.join("_delta_log"))), (data_before, log_before), "a dry run deletes nothing");
        assert!(!dir.path().join(warehouse.vacuum_record()).exists(), "nor records itself");
        let real = vacuum(&warehouse, &VacuumOptions { dry_run: false, ..opts }, now).await.expect("vacuum");
        let table = |r: &VacuumReport| r.tables.iter().find(|t| t.name == "m").cloned().expect("the mart");
        let (dry, real) = (table(&dry), table(&real));
        assert_eq!((dry.data.files, dry.log.files), (real.data.files, real.log.files), "{dry:?}\n{real:?}");
        assert_eq!((real.data.files, real.log.files, real.version, real.oldest_version), (12, 9, Some(12), Some(9)));
        assert_eq!(dry.data.paths.len(), 12, "a dry run lists the files");
        assert_eq!(files(&mart), data_before - 12);
        assert!(real.data.bytes > 0 && real.data.bytes == dry.data.bytes);
        assert!(last(&warehouse).await.is_some_and(|r| r.retain_hours == 0.0));
    }

    #[test]
    fn the_latest_success_and_publish_of_each_pipeline_are_kept() {
        let runs = vec![
            report("r10", "daily", true, true),
            report("r11", "daily", true, false),
            report("r12", "daily", false, false),
            report("r13", "hourly", true, true),
            report("r14", "hourly", true, true),
            report("r15", "monthly", false, false),
        ];
        let mut kept: Vec<String> = always_kept(&runs).into_iter().collect();
        kept.sort();
        assert_eq!(kept, ["r10", "r11", "r14"], "daily's last publish and last success, hourly's last of both; no success of monthly");
    }
}
