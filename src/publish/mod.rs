//! Publishing curated tables: each mart becomes one new Delta version under
//! `<warehouse>/marts/<table>` per run (an overwrite in a single commit), so a
//! reader sees the old table or the new one, never half of one. Also opens
//! published tables for reading.
//!
//! A mart's files are written as soon as it is built ([`stage`]), while later
//! models run, and committed only once every check has passed ([`commit`]):
//! until then they are in no version of the table, so no reader sees them,
//! and a run that stops before publishing deletes them ([`discard`]).

use crate::storage::{open_delta_table, Location, StorageError};
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::{Action, Add, StructType};
use deltalake::operations::write::SchemaMode;
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
    #[error("a publishing task stopped: {0}")]
    Stopped(String),
}

/// One published table, for the run report.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub name: String,
    pub location: String,
    pub version: i64,
    pub rows: u64,
}

/// Location of a mart in the warehouse.
pub fn mart_location(warehouse: &Location, name: &str) -> Location {
    warehouse.join(&format!("marts/{name}"))
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

enum Files {
    /// Written into the table's folder: the commit adds them and removes
    /// every file of the version it replaces.
    Written { table: DeltaTable, adds: Vec<Add> },
    /// A table that does not exist yet, or whose columns changed: written and
    /// committed in one go when published, by delta-rs's own writer, which
    /// creates the table or replaces its schema.
    Whole { schema: SchemaRef, batches: Vec<RecordBatch> },
}

fn delta_error(location: &Location) -> impl Fn(deltalake::DeltaTableError) -> PublishError + '_ {
    move |source| PublishError::Delta {
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
/// committing them. Large marts are written as several files at once.
pub async fn stage(
    location: Location,
    name: String,
    order: usize,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Staged, PublishError> {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let table = open_delta_table(&location).await?;
    let files = match schema_if_writable_as_is(&table, &schema) {
        None => {
            tracing::debug!(table = %name, "a new table or new columns: written when published");
            Files::Whole { schema, batches }
        }
        Some(table_schema) => {
            let err = delta_error(&location);
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let groups = split_rows(batches, rows as usize, cores);
            let mut writing = Vec::with_capacity(groups.len());
            for group in groups {
                let mut writer = RecordBatchWriter::for_table(&table).map_err(&err)?;
                let table_schema = table_schema.clone();
                writing.push(tokio::spawn(async move {
                    for batch in group {
                        writer.write(conform(&batch, &table_schema)?).await?;
                    }
                    writer.flush().await
                }));
            }
            let (written, failed) = join_tasks(writing).await;
            let adds: Vec<Add> = written.into_iter().flatten().collect();
            if let Some(e) = failed {
                delete_files(&location, &adds).await;
                return Err(e.into_publish(&err));
            }
            Files::Written { table, adds }
        }
    };
    Ok(Staged {
        name,
        order,
        location,
        rows,
        files,
    })
}

/// The marts of a run being staged, each on a task of its own.
#[derive(Default)]
pub struct Staging {
    tasks: Vec<tokio::task::JoinHandle<Result<Staged, PublishError>>>,
}

impl Staging {
    /// Start writing a built mart's files; `order` is its place in the catalog.
    pub fn start(&mut self, location: Location, name: String, order: usize, schema: SchemaRef, batches: Vec<RecordBatch>) {
        self.tasks.push(tokio::spawn(stage(location, name, order, schema, batches)));
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
    Stopped(String),
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
            Err(e) => failed = failed.or(Some(TaskFailure::Stopped(e.to_string()))),
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
/// all the others.
pub async fn commit(staged: Staged, run_id: &str) -> Result<Published, PublishError> {
    let Staged { name, location, rows, files, .. } = staged;
    let (mut table, adds) = match files {
        Files::Whole { schema, batches } => return overwrite(&location, &name, schema, batches, run_id).await,
        Files::Written { table, adds } => (table, adds),
    };
    let err = delta_error(&location);
    // Any version committed since the files were written is replaced too.
    table.update_incremental(None).await.map_err(&err)?;
    let snapshot = table.snapshot().map_err(&err)?;
    let mut actions: Vec<Action> = snapshot.log_data().iter().map(|f| Action::Remove(f.remove_action(true))).collect();
    let files = adds.len();
    actions.extend(adds.into_iter().map(Action::Add));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: None,
        predicate: None,
    };
    let mut metadata = commit_metadata(run_id, rows);
    metadata.push((
        "operationMetrics".to_string(),
        serde_json::json!({ "num_added_files": files, "num_added_rows": rows, "num_removed_files": actions.len() - files }),
    ));
    let done = CommitBuilder::from(CommitProperties::default().with_metadata(metadata))
        .with_actions(actions)
        .build(Some(snapshot as &dyn TableReference), table.log_store(), operation)
        .await
        .map_err(&err)?;
    Ok(Published {
        name,
        location: location.display(),
        version: done.version() as i64,
        rows,
    })
}

/// Delete the files of a mart that will not be published (a check failed, or
/// a later step did): no version refers to them. Best effort.
pub async fn discard(staged: Staged) {
    if let Files::Written { adds, .. } = &staged.files {
        delete_files(&staged.location, adds).await;
    }
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

/// Overwrite the table at `location` with `batches` in one commit, with
/// delta-rs's writer (which creates the table or replaces its schema).
async fn overwrite(
    location: &Location,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    run_id: &str,
) -> Result<Published, PublishError> {
    let table = open_delta_table(location).await?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    };
    let props = CommitProperties::default().with_metadata(commit_metadata(run_id, rows));
    let table = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_table_name(name)
        .with_commit_properties(props)
        .await
        .map_err(|source| PublishError::Delta {
            table: location.display(),
            source,
        })?;
    Ok(Published {
        name: name.to_string(),
        location: location.display(),
        version: table.version().unwrap_or(0) as i64,
        rows,
    })
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
