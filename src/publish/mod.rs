//! Publishing curated tables: each mart becomes one new Delta version of its
//! table ([`Warehouse::mart`](crate::warehouse::Warehouse::mart)) per run (an
//! overwrite in a single commit), so a reader sees the old table or the new
//! one, never half of one.
//!
//! A mart's files are written as soon as it is built ([`stage`]), while later
//! models run, and committed only once every check has passed ([`commit`]):
//! until then they are in no version of the table, so no reader sees them,
//! and a run that stops before publishing deletes them ([`discard`]).
//!
//! An incremental mart's files never straddle the first day of the months a
//! run recomputes, nor that of the months not final yet (its [`Layout`]), so
//! the next run, which recomputes only from its `rebuild_from`, can keep the
//! files of the months before it in the new version and write only the rows
//! from it on ([`Keep`]).

use crate::storage::{open_delta_table, Location, StorageError};
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::{Action, Add, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use object_store::ObjectStoreExt;
use serde::Serialize;

/// A mart is written in several files at once when it has at least this many
/// rows per file.
const ROWS_PER_FILE: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{table}: cannot publish: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("{table}: cannot write a file: {source}")]
    Store {
        table: String,
        #[source]
        source: object_store::Error,
    },
    #[error("a publishing task stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// One published table, for the run report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Published {
    pub name: String,
    pub location: String,
    pub version: i64,
    pub rows: u64,
}

/// How an incremental mart's rows are laid out in files, so that a later run
/// can keep the files of the months it does not recompute instead of writing
/// their rows again.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The mart's date column.
    pub key: String,
    /// Dates (days since the epoch, ascending) that no file straddles: rows
    /// dated before and on or after each are written in different files.
    pub bounds: Vec<i32>,
    /// Which files of the current version may stay.
    pub keep: Option<Keep>,
}

/// The files of the table at `version` whose rows are all dated before
/// `before` stay in the next version, if the table is still at that version
/// and no file straddles `before`: then only the rows dated from `before` on
/// are written. Otherwise every row is.
#[derive(Debug, Clone, PartialEq)]
pub struct Keep {
    pub version: i64,
    pub before: i32,
}

/// A mart's new version, its files written but not committed.
pub struct Staged {
    name: String,
    /// The mart's place in the catalog, the order the run reports it in.
    order: usize,
    location: Location,
    rows: u64,
    files: Files,
}

/// The files of a mart's next version, written into the table's folder.
struct Files {
    /// The table as it was when they were written.
    table: DeltaTable,
    adds: Vec<Add>,
    /// For a table that does not exist yet, or whose columns changed: the
    /// columns the commit creates it with (or replaces its schema by).
    create: Option<SchemaRef>,
    /// The files of the current version that stay, if any do.
    kept: Option<Kept>,
}

/// Files of the current version that the next one keeps.
struct Kept {
    version: i64,
    paths: std::collections::HashSet<String>,
    /// The rows in them, as this run has them: written after all if the table
    /// moved on from `version` before the commit.
    rows: Vec<RecordBatch>,
}

fn delta_error(location: &Location) -> impl Fn(deltalake::DeltaTableError) -> PublishError + '_ {
    move |source| PublishError::Delta {
        table: location.display(),
        source,
    }
}

fn store_error(location: &Location) -> impl Fn(object_store::Error) -> PublishError + '_ {
    move |source| PublishError::Store {
        table: location.display(),
        source,
    }
}

impl Staged {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn order(&self) -> usize {
        self.order
    }
}

/// Write the files of a mart's next version into its folder, without
/// committing them. Large marts are written as several files at once; an
/// incremental mart's files are split at the dates of its `layout`, and the
/// current files it lets keep are not written again.
pub async fn stage(
    location: Location,
    name: String,
    order: usize,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    layout: Option<Layout>,
) -> Result<Staged, PublishError> {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let table = open_delta_table(&location).await?;
    let files = stage_files(&location, &name, table, &schema, batches, layout).await?;
    Ok(Staged {
        name,
        order,
        location,
        rows,
        files,
    })
}

/// The files of [`stage`].
async fn stage_files(
    location: &Location,
    name: &str,
    table: DeltaTable,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    layout: Option<Layout>,
) -> Result<Files, PublishError> {
    let err = delta_error(location);
    let as_is = schema_if_writable_as_is(&table, schema);
    let keep = match (&layout, &as_is) {
        (Some(Layout { key, keep: Some(keep), .. }), Some(_)) => keepable(&table, key, keep).map(|paths| (key, keep, paths)),
        _ => None,
    };
    let (write, kept) = match keep {
        Some((key, keep, paths)) => {
            let mut spans = spans(batches, key, &[keep.before]).map_err(|e| err(e.into()))?.into_iter();
            let (before, from) = (spans.next().unwrap_or_default(), spans.next().unwrap_or_default());
            tracing::debug!(table = %name, kept_files = paths.len(), "the files of rows before the recomputed months stay");
            (from, Some(Kept { version: keep.version, paths, rows: before }))
        }
        None => (batches, None),
    };
    let groups = match &layout {
        Some(l) => spans(write, &l.key, &l.bounds).map_err(|e| err(e.into()))?,
        None => vec![write],
    };
    let (adds, create) = match as_is {
        Some(table_schema) => (write_files(location, &table, &table_schema, groups).await?, None),
        None => {
            tracing::debug!(table = %name, "a new table or new columns: created when published");
            (write_detached(location, schema, groups).await?, Some(schema.clone()))
        }
    };
    Ok(Files { table, adds, create, kept })
}

/// Write each group of rows in files of its own (several at once when it is
/// large, see [`split_rows`]) into the folder of `table`, a table with the
/// columns of `table_schema`. If one cannot be written, the others are deleted.
async fn write_files(
    location: &Location,
    table: &DeltaTable,
    table_schema: &SchemaRef,
    groups: Vec<Vec<RecordBatch>>,
) -> Result<Vec<Add>, PublishError> {
    let err = delta_error(location);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut writing = Vec::new();
    for group in groups {
        let rows = group.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            continue;
        }
        for file in split_rows(group, rows, cores) {
            let mut writer = RecordBatchWriter::for_table(table).map_err(&err)?;
            let table_schema = table_schema.clone();
            writing.push(tokio::spawn(async move {
                for batch in file {
                    writer.write(conform(&batch, &table_schema)?).await?;
                }
                writer.flush().await
            }));
        }
    }
    let (written, failed) = join_tasks(writing).await;
    let adds: Vec<Add> = written.into_iter().flatten().collect();
    if let Some(e) = failed {
        delete_files(location, &adds).await;
        return Err(e.into_publish(&err));
    }
    Ok(adds)
}

/// Write the files of a table that does not have these columns (or does not
/// exist): delta-rs's writer needs a table with the columns, so they are
/// written into one held in memory, then copied into the folder at
/// `location`, where the commit creates the table (or replaces its schema).
async fn write_detached(location: &Location, schema: &SchemaRef, groups: Vec<Vec<RecordBatch>>) -> Result<Vec<Add>, PublishError> {
    let err = delta_error(location);
    let scratch = deltalake::operations::create::CreateBuilder::new()
        .with_location("memory:///")
        .with_columns(delta_columns(schema).map_err(&err)?.fields().cloned())
        .await
        .map_err(&err)?;
    let scratch_schema = RecordBatchWriter::for_table(&scratch).map_err(&err)?.arrow_schema();
    let adds = write_files(location, &scratch, &scratch_schema, groups).await?;
    let (memory, store_err) = (scratch.object_store(), store_error(location));
    let mut copied = Vec::with_capacity(adds.len());
    for add in &adds {
        let copy = async {
            let bytes = memory.get(&object_store::path::Path::from(add.path.as_str())).await?.bytes().await?;
            location.store.put(&location.path(&add.path), bytes.into()).await
        };
        if let Err(e) = copy.await {
            delete_files(location, &copied).await;
            return Err(store_err(e));
        }
        copied.push(add.clone());
    }
    Ok(adds)
}

/// The Delta columns of an arrow schema.
fn delta_columns(schema: &SchemaRef) -> Result<StructType, deltalake::DeltaTableError> {
    StructType::try_from_arrow(normalize_for_delta(schema).as_ref()).map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))
}

/// The paths of the files of `table` to keep: those whose rows are all dated
/// before `keep.before` in the date column `key`, by the statistics of their
/// `add` actions. `None` (every row is written) unless the table is at
/// `keep.version` and every other file's rows are all dated from
/// `keep.before` on, so that no row is lost or kept twice.
fn keepable(table: &DeltaTable, key: &str, keep: &Keep) -> Option<std::collections::HashSet<String>> {
    if table.version().map(|v| v as i64) != Some(keep.version) {
        return None;
    }
    let mut paths = std::collections::HashSet::new();
    for file in table.snapshot().ok()?.log_data().iter() {
        if file.deletion_vector_descriptor().is_some() {
            return None;
        }
        let (min, max, nulls) = date_range(&file.stats()?, key)?;
        if max < keep.before && nulls == 0 {
            paths.insert(file.path().to_string());
        } else if min < keep.before {
            return None;
        }
    }
    Some(paths)
}

/// The least and greatest date (days since the epoch) of the column `key` and
/// its count of NULLs, from a Delta file's statistics (JSON).
fn date_range(stats: &str, key: &str) -> Option<(i32, i32, u64)> {
    let stats: serde_json::Value = serde_json::from_str(stats).ok()?;
    let date = |which: &str| {
        let text = stats.get(which)?.get(key)?.as_str()?;
        text.parse::<chrono::NaiveDate>().ok().map(crate::dates::days_since_epoch)
    };
    Some((date("minValues")?, date("maxValues")?, stats.get("nullCount")?.get(key)?.as_u64()?))
}

/// The date column `key` of a dated model's rows.
pub(crate) fn date_column<'a>(batch: &'a RecordBatch, key: &str) -> Result<&'a arrow::array::Date32Array, arrow::error::ArrowError> {
    use arrow::array::AsArray;
    let column = batch
        .column_by_name(key)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("incremental: the model has no column {key}")))?;
    column
        .as_primitive_opt::<arrow::datatypes::Date32Type>()
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("incremental: column {key} is not a date")))
}

/// The rows of `batches` in one group per span of the date column `key`
/// between `bounds` (days since the epoch, ascending): before the first,
/// between each two, on or after the last. Rows without a date go in the
/// last. A batch wholly in one span stays whole.
fn spans(batches: Vec<RecordBatch>, key: &str, bounds: &[i32]) -> Result<Vec<Vec<RecordBatch>>, arrow::error::ArrowError> {
    let mut spans = vec![Vec::new(); bounds.len() + 1];
    for batch in batches {
        let dates = date_column(&batch, key)?;
        let of: Vec<usize> = dates.iter().map(|d| d.map_or(bounds.len(), |d| bounds.partition_point(|b| *b <= d))).collect();
        match of.first() {
            None => continue,
            Some(first) if of.iter().all(|s| s == first) => spans[*first].push(batch),
            Some(_) => {
                for (span, rows) in spans.iter_mut().enumerate() {
                    let mask: arrow::array::BooleanArray = of.iter().map(|s| Some(*s == span)).collect();
                    if mask.true_count() > 0 {
                        rows.push(arrow::compute::filter_record_batch(&batch, &mask)?);
                    }
                }
            }
        }
    }
    Ok(spans)
}

/// The marts of a run being staged, each on a task of its own.
#[derive(Default)]
pub struct Staging {
    tasks: Vec<tokio::task::JoinHandle<Result<Staged, PublishError>>>,
}

impl Staging {
    /// Start writing a built mart's files (a [`stage`]) on a task of its own.
    pub fn start(&mut self, staging: impl std::future::Future<Output = Result<Staged, PublishError>> + Send + 'static) {
        self.tasks.push(tokio::spawn(staging));
    }

    /// Every mart staged, in the order they were started; if one could not
    /// be, the files of the others are deleted and its error returned.
    pub async fn finish(&mut self) -> Result<Vec<Staged>, PublishError> {
        let (staged, failed) = join_tasks(std::mem::take(&mut self.tasks)).await;
        match failed {
            None => Ok(staged),
            Some(e) => {
                for s in staged {
                    discard(s).await;
                }
                Err(e.into_publish(&|e| e))
            }
        }
    }

    /// Delete the files of every mart staged and not published.
    pub async fn discard(&mut self) {
        for task in std::mem::take(&mut self.tasks) {
            if let Ok(Ok(s)) = task.await {
                discard(s).await;
            }
        }
    }
}

/// How a task failed: its own error, or it stopped (panicked, was cancelled).
enum TaskFailure<E> {
    Error(E),
    Stopped(tokio::task::JoinError),
}

impl<E> TaskFailure<E> {
    fn into_publish(self, err: &dyn Fn(E) -> PublishError) -> PublishError {
        match self {
            TaskFailure::Error(e) => err(e),
            TaskFailure::Stopped(why) => PublishError::Stopped(why),
        }
    }
}

/// Await every task: the results of those that succeeded, and the first failure.
async fn join_tasks<T, E>(tasks: Vec<tokio::task::JoinHandle<Result<T, E>>>) -> (Vec<T>, Option<TaskFailure<E>>) {
    let mut done = Vec::with_capacity(tasks.len());
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(t)) => done.push(t),
            Ok(Err(e)) => failed = failed.or(Some(TaskFailure::Error(e))),
            Err(e) => failed = failed.or(Some(TaskFailure::Stopped(e))),
        }
    }
    (done, failed)
}

/// The table's arrow schema, if the table exists with exactly these columns,
/// so that new files can be added to it without changing its schema.
fn schema_if_writable_as_is(table: &DeltaTable, schema: &SchemaRef) -> Option<SchemaRef> {
    table.version()?;
    let table_schema = RecordBatchWriter::for_table(table).ok()?.arrow_schema();
    same_columns(&table_schema, &normalize_for_delta(schema)).then_some(table_schema)
}

/// The same column names, Delta types and nullability, in the same order:
/// arrow's string layouts are all a Delta `string`, for example.
fn same_columns(a: &Schema, b: &Schema) -> bool {
    let (Ok(a), Ok(b)) = (StructType::try_from_arrow(a), StructType::try_from_arrow(b)) else {
        return false;
    };
    a.num_fields() == b.num_fields()
        && a.fields().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name() && x.data_type() == y.data_type() && x.is_nullable() == y.is_nullable()
        })
}

/// `batch` with the columns of `schema`, taken by name and cast to its types
/// (a string view as a string, for example), under `schema` itself (its
/// nullability and metadata). Shared by publishing and the kept rows of
/// incremental models.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("no column {}", field.name())))?;
            arrow::compute::cast(column, field.data_type())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// `batches` in `ceil(rows / ROWS_PER_FILE)` groups of consecutive rows (at
/// most `max_files`), one file each; a batch is sliced where a group ends.
fn split_rows(batches: Vec<RecordBatch>, rows: usize, max_files: usize) -> Vec<Vec<RecordBatch>> {
    let files = rows.div_ceil(ROWS_PER_FILE).clamp(1, max_files.max(1));
    if files == 1 {
        return vec![batches];
    }
    let per_file = rows.div_ceil(files);
    let mut groups = vec![Vec::new()];
    let mut in_group = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if in_group == per_file {
                groups.push(Vec::new());
                in_group = 0;
            }
            let take = (per_file - in_group).min(batch.num_rows() - offset);
            if let Some(group) = groups.last_mut() {
                group.push(batch.slice(offset, take));
            }
            offset += take;
            in_group += take;
        }
    }
    groups
}

/// Commit a staged mart as the table's next version: its new files replace
/// all the others but those it keeps.
pub async fn commit(staged: Staged, run_id: &str) -> Result<Published, PublishError> {
    let Staged { name, location, rows, files, .. } = staged;
    let Files { mut table, mut adds, create, kept } = files;
    let err = delta_error(&location);
    let mut metadata = commit_metadata(run_id, rows);
    // A commit whose answer is lost is settled: see `crate::settle`.
    let token = crate::settle::token();
    metadata.push(crate::settle::token_entry(&token));
    if let Some(schema) = create {
        metadata.push(operation_metrics(&adds, 0));
        let version = create_table(&table, &name, &schema, &adds, SaveMode::Overwrite, metadata, &token).await.map_err(&err)?;
        return Ok(Published {
            name,
            location: location.display(),
            version,
            rows,
        });
    }
    // Any version committed since the files were written is replaced too.
    table.update_incremental(None).await.map_err(&err)?;
    let keep = match kept {
        Some(k) if table.version().map(|v| v as i64) == Some(k.version) => k.paths,
        Some(k) => {
            tracing::info!(table = %name, "the table changed since its files were written: every row is written");
            let table_schema = RecordBatchWriter::for_table(&table).map_err(&err)?.arrow_schema();
            adds.extend(write_files(&location, &table, &table_schema, vec![k.rows]).await?);
            Default::default()
        }
        None => Default::default(),
    };
    let snapshot = table.snapshot().map_err(&err)?;
    let removed: Vec<Action> = snapshot
        .log_data()
        .iter()
        .filter(|f| !keep.contains(f.path().as_ref()))
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    metadata.push(operation_metrics(&adds, removed.len()));
    let mut actions = removed;
    actions.extend(adds.into_iter().map(Action::Add));
    // A table published by an earlier build gets the warehouse's table
    // properties (its checkpoint interval) with this version.
    actions.extend(crate::warehouse::missing_properties(snapshot.metadata()).map_err(&err)?);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: None,
        predicate: None,
    };
    let version = commit_settled(&table, snapshot, actions, operation, metadata, &token).await.map_err(&err)?;
    Ok(Published {
        name,
        location: location.display(),
        version,
        rows,
    })
}

/// Create the table at `table`'s location with the columns of `schema` and
/// the files `adds`, in one commit settled by `token` (see `crate::settle`);
/// returns its version.
async fn create_table(
    table: &DeltaTable,
    name: &str,
    schema: &SchemaRef,
    adds: &[Add],
    mode: SaveMode,
    metadata: Vec<(String, serde_json::Value)>,
    token: &str,
) -> Result<i64, deltalake::DeltaTableError> {
    let columns = delta_columns(schema)?;
    let log_store = table.log_store();
    let settled = crate::settle::commit(&log_store, None, token, || async {
        let created = deltalake::operations::create::CreateBuilder::new()
            .with_log_store(log_store.clone())
            .with_columns(columns.fields().cloned())
            .with_table_name(name)
            .with_configuration(crate::warehouse::TABLE_PROPERTIES.map(|(k, v)| (k, Some(v))))
            .with_save_mode(mode)
            .with_actions(adds.iter().cloned().map(Action::Add))
            .with_commit_properties(crate::warehouse::commit_properties().with_metadata(metadata.clone()))
            .await?;
        Ok(created.version().unwrap_or(0) as i64)
    })
    .await?;
    Ok(settled.version())
}

/// Commit `actions` as the version after `snapshot`, settled by `token`
/// (see `crate::settle`); returns its version.
async fn commit_settled(
    table: &DeltaTable,
    snapshot: &deltalake::table::state::DeltaTableState,
    actions: Vec<Action>,
    operation: DeltaOperation,
    metadata: Vec<(String, serde_json::Value)>,
    token: &str,
) -> Result<i64, deltalake::DeltaTableError> {
    let after = Some(snapshot.version() as i64);
    let settled = crate::settle::commit(&table.log_store(), after, token, || async {
        let done = CommitBuilder::from(crate::warehouse::commit_properties().with_metadata(metadata.clone()))
            .with_actions(actions.clone())
            .build(Some(snapshot as &dyn TableReference), table.log_store(), operation.clone())
            .await?;
        Ok(done.version() as i64)
    })
    .await?;
    Ok(settled.version())
}

/// Create the table at `location`, with `schema` and no rows, unless it
/// exists: its version 0 is empty, so a reader that finds no run recording
/// a later version reads it empty (see `query::published`).
pub async fn create_empty(location: &Location, name: &str, schema: &SchemaRef, run_id: &str) -> Result<(), PublishError> {
    let err = delta_error(location);
    let table = open_delta_table(location).await?;
    if table.version().is_some() {
        return Ok(());
    }
    let token = crate::settle::token();
    let mut metadata = commit_metadata(run_id, 0);
    metadata.push(crate::settle::token_entry(&token));
    create_table(&table, name, schema, &[], SaveMode::Ignore, metadata, &token).await.map_err(&err)?;
    Ok(())
}

/// Append `batches` to the append-only table at `location` (created empty,
/// with `schema`, when missing: see [`create_empty`]) in one commit that also removes every file of
/// the versions after `recorded`, the newest version a published run
/// records: those were committed by runs that never published, so no
/// reader saw their rows. Nothing is committed when there is nothing to
/// append or remove. Returns the version readers are to see.
pub async fn append(
    location: Location,
    name: &str,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    recorded: Option<i64>,
    run_id: &str,
) -> Result<Published, PublishError> {
    let err = delta_error(&location);
    let mut table = open_delta_table(&location).await?;
    let appended: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let token = crate::settle::token();
    let mut metadata = commit_metadata(run_id, appended);
    metadata.push(crate::settle::token_entry(&token));
    if table.version().is_none() {
        create_empty(&location, name, schema, run_id).await?;
        table = open_delta_table(&location).await?;
    }
    let latest = table.version().map(|v| v as i64).unwrap_or(0);
    let Some(table_schema) = schema_if_writable_as_is(&table, schema) else {
        return Err(err(deltalake::DeltaTableError::Generic(format!(
            "its rows are never rewritten, and the rows to append have other columns than it has \
             (was a model's SQL changed?): append-only tables keep their columns"
        ))));
    };
    // The files of versions no published run records.
    let published_files: std::collections::HashSet<String> = match recorded {
        Some(v) if v == latest => table.snapshot().map_err(&err)?.log_data().iter().map(|f| f.path().to_string()).collect(),
        Some(v) => {
            let mut then = open_delta_table(&location).await?;
            then.load_version(v as u64).await.map_err(&err)?;
            then.snapshot().map_err(&err)?.log_data().iter().map(|f| f.path().to_string()).collect()
        }
        None => Default::default(),
    };
    let snapshot = table.snapshot().map_err(&err)?;
    let mut rows: u64 = appended;
    let mut removed = Vec::new();
    for f in snapshot.log_data().iter() {
        if published_files.contains(f.path().as_ref()) {
            rows += f.num_records().unwrap_or(0) as u64;
        } else {
            removed.push(Action::Remove(f.remove_action(true)));
        }
    }
    if appended == 0 && removed.is_empty() {
        return Ok(Published {
            name: name.to_string(),
            location: location.display(),
            version: latest,
            rows,
        });
    }
    if !removed.is_empty() {
        tracing::info!(table = %name, files = removed.len(), "rows committed by runs that never published are removed");
    }
    let adds = write_files(&location, &table, &table_schema, vec![batches]).await?;
    metadata.push(operation_metrics(&adds, removed.len()));
    let mut actions = removed;
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let version = commit_settled(&table, snapshot, actions, operation, metadata, &token).await.map_err(&err)?;
    Ok(Published {
        name: name.to_string(),
        location: location.display(),
        version,
        rows,
    })
}

/// The `operationMetrics` of a commit that adds `adds` and removes `removed` files.
fn operation_metrics(adds: &[Add], removed: usize) -> (String, serde_json::Value) {
    let rows: u64 = adds
        .iter()
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(a.stats.as_deref()?).ok())
        .filter_map(|s| s.get("numRecords")?.as_u64())
        .sum();
    (
        "operationMetrics".to_string(),
        serde_json::json!({ "num_added_files": adds.len(), "num_added_rows": rows, "num_removed_files": removed }),
    )
}

/// Delete the files of a mart that will not be published (a check failed, or
/// a later step did): no version refers to them. Best effort.
pub async fn discard(staged: Staged) {
    delete_files(&staged.location, &staged.files.adds).await;
}

async fn delete_files(location: &Location, adds: &[Add]) {
    for add in adds {
        if let Err(e) = location.store.delete(&location.path(&add.path)).await {
            tracing::warn!(table = %location.display(), file = %add.path, error = %e, "an unpublished file could not be deleted");
        }
    }
}

/// What every published version records of the run that wrote it.
fn commit_metadata(run_id: &str, rows: u64) -> Vec<(String, serde_json::Value)> {
    vec![
        ("tenure.run_id".to_string(), serde_json::Value::from(run_id)),
        ("tenure.rows".to_string(), serde_json::Value::from(rows)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    fn numbers(from: i64, to: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(from..to))]).expect("batch")
    }

    fn values(group: &[RecordBatch]) -> Vec<i64> {
        group
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().expect("int64");
                (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_are_split_into_files_in_order() {
        // 250,000 rows in batches that do not line up with the files.
        let batches = vec![numbers(0, 70_000), numbers(70_000, 190_000), numbers(190_000, 250_000)];
        let groups = split_rows(batches.clone(), 250_000, 8);
        assert_eq!(groups.len(), 3, "ceil(250,000 / 100,000) files");
        let sizes: Vec<usize> = groups.iter().map(|g| g.iter().map(|b| b.num_rows()).sum()).collect();
        assert_eq!(sizes, vec![83_334, 83_334, 83_332]);
        let all: Vec<i64> = groups.iter().flat_map(|g| values(g)).collect();
        assert_eq!(all, (0..250_000).collect::<Vec<_>>(), "every row once, in order");

        // No more files than allowed, and a small mart stays one file.
        assert_eq!(split_rows(batches, 250_000, 2).len(), 2);
        let small = split_rows(vec![numbers(0, 10)], 10, 8);
        assert_eq!((small.len(), values(&small[0]).len()), (1, 10));
        assert_eq!(split_rows(Vec::new(), 0, 8).len(), 1);
    }

    fn dated(days: &[i32], n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("d", Arc::new(arrow::array::Date32Array::from(days.to_vec())) as arrow::array::ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![n; days.len()])) as arrow::array::ArrayRef),
        ])
        .expect("batch")
    }

    /// The (date, n) rows of the table's current version, sorted.
    async fn table_rows(location: &Location) -> Vec<(i32, i64)> {
        use arrow::array::AsArray;
        let ctx = datafusion::prelude::SessionContext::new();
        let table = open_delta_table(location).await.expect("open");
        table.update_datafusion_session(&ctx.state()).expect("session");
        let provider = table.table_provider().await.expect("provider");
        let batches = ctx.read_table(provider).expect("read").collect().await.expect("collect");
        let mut rows: Vec<(i32, i64)> = batches
            .iter()
            .flat_map(|b| {
                let d = b.column_by_name("d").expect("d").as_primitive::<arrow::datatypes::Date32Type>().clone();
                let n = b.column_by_name("n").expect("n").as_primitive::<arrow::datatypes::Int64Type>().clone();
                (0..b.num_rows()).map(move |i| (d.value(i), n.value(i)))
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    async fn publish(location: &Location, batch: RecordBatch, layout: Option<Layout>) -> Published {
        let staged = stage(location.clone(), "m".into(), 0, batch.schema(), vec![batch], layout).await.expect("stage");
        commit(staged, "r").await.expect("commit")
    }

    fn files_of(table: &DeltaTable) -> std::collections::HashSet<String> {
        table.snapshot().expect("snapshot").log_data().iter().map(|f| f.path().to_string()).collect()
    }

    #[test]
    fn rows_are_grouped_between_dates() {
        let batch = RecordBatch::try_from_iter([(
            "d",
            Arc::new(arrow::array::Date32Array::from(vec![Some(5), None, Some(10), Some(25), Some(9)])) as arrow::array::ArrayRef,
        )])
        .expect("batch");
        let days = |group: &Vec<RecordBatch>| -> Vec<Option<i32>> {
            use arrow::array::AsArray;
            group.iter().flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Date32Type>().iter().collect::<Vec<_>>()).collect()
        };
        let spans = spans(vec![batch.clone(), batch.slice(0, 1)], "d", &[10, 20]).expect("spans");
        let got: Vec<Vec<Option<i32>>> = spans.iter().map(days).collect();
        assert_eq!(got, vec![vec![Some(5), Some(9), Some(5)], vec![Some(10)], vec![None, Some(25)]], "NULL dates in the last span");
        assert_eq!(spans[0][1].num_rows(), 1, "a batch wholly in one span stays whole");
        assert!(super::spans(vec![batch], "x", &[1]).is_err(), "no such column");
        let stats = r#"{"numRecords":3,"minValues":{"d":"2026-10-01","n":1},"maxValues":{"d":"2026-10-31"},"nullCount":{"d":0}}"#;
        let (min, max, nulls) = date_range(stats, "d").expect("range");
        assert_eq!((max - min, nulls), (30, 0));
        assert_eq!(date_range(stats, "n"), None, "not a date");
    }

    #[tokio::test]
    async fn files_before_the_recomputed_months_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let location = storage.location(&dir.path().join("m").display().to_string()).expect("location");
        let layout = |bounds: Vec<i32>, keep: Option<Keep>| Some(Layout { key: "d".into(), bounds, keep });

        // A new table, its files split at day 25.
        let first = publish(&location, dated(&[10, 20, 30, 40], 1), layout(vec![25], None)).await;
        assert_eq!((first.version, first.rows), (0, 4));
        let table = open_delta_table(&location).await.expect("open");
        let v0 = files_of(&table);
        assert_eq!(v0.len(), 2, "one file each side of day 25");
        assert!(keepable(&table, "d", &Keep { version: 0, before: 15 }).is_none(), "a file straddles day 15");
        assert!(keepable(&table, "d", &Keep { version: 1, before: 25 }).is_none(), "another version");

        // Rows from day 25 on recomputed: the file before it stays.
        let keep = Keep { version: 0, before: 25 };
        let second = publish(&location, dated(&[10, 20, 30, 45], 2), layout(vec![25], Some(keep))).await;
        assert_eq!((second.version, second.rows), (1, 4));
        assert_eq!(table_rows(&location).await, vec![(10, 1), (20, 1), (30, 2), (45, 2)], "the kept file's rows and the new ones");
        let table = open_delta_table(&location).await.expect("open");
        let v1 = files_of(&table);
        assert_eq!((v1.len(), v1.intersection(&v0).count()), (2, 1), "one file kept, one new");

        // The table moved on between writing and committing: every row is written.
        let keep = Keep { version: 1, before: 25 };
        let staged = stage(location.clone(), "m".into(), 0, dated(&[], 0).schema(), vec![dated(&[10, 20, 30], 3)], layout(vec![25], Some(keep)))
            .await
            .expect("stage");
        publish(&location, dated(&[1], 9), None).await;
        let third = commit(staged, "r").await.expect("commit");
        assert_eq!(third.version, 3);
        assert_eq!(table_rows(&location).await, vec![(10, 3), (20, 3), (30, 3)], "the rows before day 25 as this run has them");
    }

    /// A mart made by a build without checkpoint settings gets them with its
    /// next version, and from then on every 10th commit writes a checkpoint.
    #[tokio::test]
    async fn an_older_table_gets_the_checkpoint_interval_and_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let location = storage.location(&dir.path().join("m").display().to_string()).expect("location");
        let batch = dated(&[10, 20], 1);
        let table = open_delta_table(&location).await.expect("open");
        table
            .create()
            .with_columns(delta_columns(&batch.schema()).expect("columns").fields().cloned())
            .await
            .expect("an older build's table");
        let interval = |t: &DeltaTable| t.snapshot().expect("snapshot").metadata().configuration().get("delta.checkpointInterval").cloned();
        assert_eq!(interval(&open_delta_table(&location).await.expect("open")), None);
        for n in 1..=10 {
            assert_eq!(publish(&location, dated(&[10, 20], n), None).await.version, n);
        }
        let table = open_delta_table(&location).await.expect("open");
        assert_eq!(interval(&table).as_deref(), Some("10"));
        let log = dir.path().join("m/_delta_log");
        assert!(log.join("00000000000000000009.checkpoint.parquet").is_file(), "the 10th version is checkpointed");
        assert!(!log.join("00000000000000000010.checkpoint.parquet").exists());
        assert!(log.join("00000000000000000000.json").is_file(), "commits never clean the log themselves");
        assert_eq!(table_rows(&location).await, vec![(10, 10), (20, 10)]);
    }

    #[tokio::test]
    async fn a_table_whose_columns_change_is_replaced_in_one_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let location = storage.location(&dir.path().join("m").display().to_string()).expect("location");
        assert_eq!(publish(&location, dated(&[10, 20], 1), None).await.version, 0);
        // One more column: the schema is replaced and the old rows removed.
        let wider = RecordBatch::try_from_iter([
            ("d", Arc::new(arrow::array::Date32Array::from(vec![30])) as arrow::array::ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![2])) as arrow::array::ArrayRef),
            ("s", Arc::new(arrow::array::StringArray::from(vec!["x"])) as arrow::array::ArrayRef),
        ])
        .expect("batch");
        let published = publish(&location, wider.clone(), None).await;
        assert_eq!((published.version, published.rows), (1, 1));
        assert_eq!(table_rows(&location).await, vec![(30, 2)]);
        let table = open_delta_table(&location).await.expect("open");
        assert!(schema_if_writable_as_is(&table, &wider.schema()).is_some(), "the table now has the new columns");
        // An empty mart publishes an empty version with its columns.
        let empty = publish(&location, wider.slice(0, 0), None).await;
        assert_eq!((empty.version, empty.rows), (2, 0));
        assert_eq!(table_rows(&location).await, Vec::<(i32, i64)>::new());
        // So does an empty mart never published before.
        let fresh = storage.location(&dir.path().join("fresh").display().to_string()).expect("location");
        assert_eq!(publish(&fresh, wider.slice(0, 0), None).await.version, 0);
        assert_eq!(table_rows(&fresh).await, Vec::<(i32, i64)>::new());
    }

    #[test]
    fn only_the_same_columns_are_written_as_is() {
        let a = Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]);
        assert!(same_columns(&a, &a.clone()));
        let view = Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("s", DataType::Utf8View, true)]);
        assert!(same_columns(&a, &view), "a string view is a Delta string");
        let renamed = Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("t", DataType::Utf8, true)]);
        let retyped = Schema::new(vec![Field::new("n", DataType::Int32, false), Field::new("s", DataType::Utf8, true)]);
        let nullable = Schema::new(vec![Field::new("n", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]);
        let fewer = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        for other in [renamed, retyped, nullable, fewer] {
            assert!(!same_columns(&a, &other), "{other:?}");
        }
    }
}
