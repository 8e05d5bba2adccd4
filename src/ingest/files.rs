//! Data files of `events`: accepted rows, in (object path, row) order, cut into
//! files of about [`ROWS_PER_FILE`] rows. Consecutive objects share a file, so
//! a file spans a short stretch of time and its statistics let readers skip
//! it; files are encoded concurrently, at most `parallelism` at a time, while
//! decoding goes on. Nothing here is visible until ingest commits the returned
//! `Add` actions.

use super::IngestError;
use crate::storage::Location;
use arrow::array::RecordBatch;
use deltalake::kernel::Add;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::collections::VecDeque;
use tokio::task::JoinHandle;

/// Rows per data file (the last file of a run holds the rest).
pub const ROWS_PER_FILE: usize = 500_000;
/// Rows per Parquet row group: the unit a reader skips by statistics.
const ROWS_PER_GROUP: usize = 128 * 1024;

type Encoding = JoinHandle<Result<Vec<Add>, DeltaTableError>>;

pub struct EventFiles<'a> {
    table: &'a DeltaTable,
    location: &'a Location,
    pending: Vec<RecordBatch>,
    rows: usize,
    running: VecDeque<Encoding>,
    limit: usize,
    props: WriterProperties,
    adds: Vec<Add>,
}

impl<'a> EventFiles<'a> {
    pub fn new(table: &'a DeltaTable, location: &'a Location, parallelism: usize) -> Self {
        EventFiles {
            table,
            location,
            pending: Vec::new(),
            rows: 0,
            running: VecDeque::new(),
            limit: parallelism.max(1),
            props: WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
                .set_created_by(format!("tenure {}", env!("CARGO_PKG_VERSION")))
                .build(),
            adds: Vec::new(),
        }
    }

    fn delta_err(&self, source: DeltaTableError) -> IngestError {
        IngestError::Delta {
            table: self.location.display(),
            source,
        }
    }

    pub async fn push(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        if self.rows >= ROWS_PER_FILE {
            self.cut().await?;
        }
        Ok(())
    }

    /// Start encoding the pending rows as one file.
    async fn cut(&mut self) -> Result<(), IngestError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        while self.running.len() >= self.limit {
            self.wait_oldest().await?;
        }
        let mut writer = RecordBatchWriter::for_table(self.table)
            .map_err(|e| self.delta_err(e))?
            .with_writer_properties(self.props.clone());
        let batches = std::mem::take(&mut self.pending);
        self.rows = 0;
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
                .map_err(|e| IngestError::Task(e.to_string()))?
                .map_err(|e| self.delta_err(e))?;
            self.adds.extend(adds);
        }
        Ok(())
    }

    /// Write everything still pending; the `Add` actions of every file.
    pub async fn finish(mut self) -> Result<Vec<Add>, IngestError> {
        self.cut().await?;
        while !self.running.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(std::mem::take(&mut self.adds))
    }

    /// Give up: stop encoding. Files already written stay unreferenced.
    pub fn abort(self) {
        for task in &self.running {
            task.abort();
        }
    }
}
