//! Data files of `events`: accepted rows, in (object path, row) order, cut into
//! files of about [`ROWS_PER_FILE`] rows. Consecutive objects share a file, so
//! a file spans a short stretch of time and its statistics let readers skip
//! it. Product usage events (`usage.*`, most of the rows) and the other events
//! go to files of their own, so that the many models that read only the other
//! events skip the usage files by their `event_type` statistics (decoding
//! builds the two kinds apart, see [`super::batch::FileKind`]). Files are
//! encoded concurrently, at most `parallelism` at a time, while decoding goes
//! on. Nothing here is visible until ingest commits the returned `Add` actions.

use super::batch::FileKind;
use super::IngestError;
use crate::storage::Location;
use arrow::array::RecordBatch;
use deltalake::kernel::Add;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::collections::VecDeque;
use tokio::task::JoinHandle;

/// Rows per data file (the last file of a run holds the rest).
pub const ROWS_PER_FILE: usize = 500_000;
/// Rows per Parquet row group: the unit a reader skips by statistics.
const ROWS_PER_GROUP: usize = 128 * 1024;
/// Columns whose values are (nearly) all distinct: a dictionary only costs
/// time there (every value of a row group interned, then a fallback to plain
/// encoding once the dictionary page is full).
const DISTINCT_COLUMNS: [&str; 6] = ["event_id", "occurred_at", "source_row", "payment_id", "ticket_id", "comment"];

type Encoding = JoinHandle<Result<Vec<Add>, DeltaTableError>>;

/// The rows waiting for one kind of file.
#[derive(Default)]
struct Pending {
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Pending {
    fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.rows += batch.num_rows();
            self.batches.push(batch);
        }
    }
}

pub struct EventFiles<'a> {
    table: &'a DeltaTable,
    location: &'a Location,
    /// Usage events, then the others.
    pending: [Pending; 2],
    running: VecDeque<Encoding>,
    limit: usize,
    props: WriterProperties,
    adds: Vec<Add>,
}

impl<'a> EventFiles<'a> {
    pub fn new(table: &'a DeltaTable, location: &'a Location, parallelism: usize) -> Self {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .set_created_by(format!("tenure {}", env!("CARGO_PKG_VERSION")));
        for column in DISTINCT_COLUMNS {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        EventFiles {
            table,
            location,
            pending: Default::default(),
            running: VecDeque::new(),
            limit: parallelism.max(1),
            props: props.build(),
            adds: Vec::new(),
        }
    }

    fn delta_err(&self, source: DeltaTableError) -> IngestError {
        IngestError::Delta {
            table: self.location.display(),
            source,
        }
    }

    /// Add accepted rows of one kind, in order.
    pub async fn push(&mut self, kind: FileKind, batch: RecordBatch) -> Result<(), IngestError> {
        let kind = kind as usize;
        self.pending[kind].push(batch);
        if self.pending[kind].rows >= ROWS_PER_FILE {
            self.cut(kind).await?;
        }
        Ok(())
    }

    /// Start encoding the pending rows of one kind as one file.
    async fn cut(&mut self, kind: usize) -> Result<(), IngestError> {
        if self.pending[kind].batches.is_empty() {
            return Ok(());
        }
        while self.running.len() >= self.limit {
            self.wait_oldest().await?;
        }
        let mut writer = RecordBatchWriter::for_table(self.table)
            .map_err(|e| self.delta_err(e))?
            .with_writer_properties(self.props.clone());
        let batches = std::mem::take(&mut self.pending[kind]).batches;
        self.running.push_back(tokio::spawn(async move {
            for b in batches {
                writer.write(b).await?;
            }
            writer.flush().await
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), IngestError> {
        if let Some(task) = self.running.pop_front() {
            let adds = task
                .await
                .map_err(IngestError::EncodeTask)?
                .map_err(|e| self.delta_err(e))?;
            self.adds.extend(adds);
        }
        Ok(())
    }

    /// Write everything still pending; the `Add` actions of every file.
    pub async fn finish(mut self) -> Result<Vec<Add>, IngestError> {
        self.cut(0).await?;
        self.cut(1).await?;
        while !self.running.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(std::mem::take(&mut self.adds))
    }

    /// Take over the rows and files of `other` (the files of one object read
    /// in several parts, see [`super::Output`]): its files join this ingest's,
    /// its pending rows follow the rows pending here.
    pub async fn adopt(&mut self, mut other: EventFiles<'a>) -> Result<(), IngestError> {
        self.adds.append(&mut other.adds);
        self.running.append(&mut other.running);
        for kind in 0..2 {
            for batch in std::mem::take(&mut other.pending[kind].batches) {
                self.pending[kind].push(batch);
            }
            if self.pending[kind].rows >= ROWS_PER_FILE {
                self.cut(kind).await?;
            }
        }
        Ok(())
    }

    /// Drop every row given here: pending rows are forgotten, and files
    /// already encoded are deleted (best effort: a file left behind is never
    /// referenced, and vacuum removes it).
    pub async fn discard(mut self) {
        self.pending = Default::default();
        while let Some(task) = self.running.pop_front() {
            if let Ok(Ok(adds)) = task.await {
                self.adds.extend(adds);
            }
        }
        for add in &self.adds {
            if let Err(e) = self.location.store.delete(&self.location.path(&add.path)).await {
                tracing::warn!(table = %self.location.display(), file = %add.path, error = %e, "cannot delete a data file of an unreadable object");
            }
        }
    }

    /// Give up: stop encoding. Files already written stay unreferenced.
    pub fn abort(self) {
        for task in &self.running {
            task.abort();
        }
    }
}
