//! The state of incremental models: the rows a run keeps of the models it
//! does not publish, one Arrow IPC file per month under the warehouse's state
//! folder, written after each model is built, read back (ahead, while ingest
//! runs) by the next run, checksummed, and pruned once a newer run published.

use super::*;

/// The rows a run kept of one incremental model: every row it built with a
/// date, for the next run to keep those before its `rebuild_from`. One Arrow
/// IPC file per month of the model's date column: a run writes the months it
/// recomputed and lists the files of its base's earlier months as they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub name: String,
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
        self.parts.iter().map(|p| p.path.as_str())
    }

    /// Whether the files listed hold every row the state counts (a state
    /// kept in one file, by builds before state was kept per month, does not).
    pub fn is_complete(&self) -> bool {
        self.parts.iter().map(|p| p.rows).sum::<u64>() == self.rows
    }
}

/// State files of the likely base, read (mapped and checked) ahead of the
/// models, while ingest leaves a core idle. [`read_kept`] takes a file from
/// here when it was read ahead, and reads it itself otherwise.
/// Files not taken when the run ends (it rebuilt everything, or found its
/// inputs unchanged) stop being read.
#[derive(Clone, Default)]
pub struct ReadAhead(pub(super) std::sync::Arc<std::sync::Mutex<ReadingFiles>>);

pub(super) type ReadingState = tokio::task::JoinHandle<datafusion::error::Result<Vec<RecordBatch>>>;

#[derive(Default)]
pub(super) struct ReadingFiles(pub(super) std::collections::HashMap<String, ReadingState>);

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
    pub fn start(runs: &[RunReport], pipeline: &str, shape: &str, as_of: NaiveDate, warehouse: &Warehouse, by_day: &[&str]) -> ReadAhead {
        let ahead = ReadAhead::default();
        let Some(base) = latest_published(runs, pipeline) else { return ahead };
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
    pub(super) async fn read(&self, warehouse: &Warehouse, part: &StatePart) -> datafusion::error::Result<Vec<RecordBatch>> {
        let reading = self.0.lock().ok().and_then(|mut files| files.0.remove(&part.path));
        match reading {
            Some(reading) => reading
                .await
                .map_err(|e| DataFusionError::External(format!("reading {} stopped: {e}", part.path).into()))?,
            None => read_state(warehouse, &part.path, part.xxh3.as_deref()).await,
        }
    }
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
/// the model's state folder, and the base's files of the months in `reused` as they
/// are. Rows without a date are never kept, so they are not written.
/// Uncompressed, so that the next run maps the files and decodes them
/// without copying; a compressed file still reads.
pub async fn write_state(
    warehouse: &Warehouse,
    pipeline: &str,
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
        let file = warehouse.state_of(pipeline).join(name).path(&format!("{}.{run_id}.arrow", month.format("%Y-%m")));
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
        rows: parts.iter().map(|p| p.rows).sum(),
        parts,
    })
}

/// One month of a model's rows, encoded as a state file.
pub(super) struct Encoded {
    month: NaiveDate,
    rows: u64,
    xxh3: String,
    bytes: Vec<u8>,
}

/// The rows of `batches` grouped by the month of their date column `key`;
/// rows without a date are left out. Batches of one month stay whole.
pub(super) fn by_month(batches: Vec<RecordBatch>, key: &str) -> datafusion::error::Result<BTreeMap<NaiveDate, Vec<RecordBatch>>> {
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
pub(super) fn date_of(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)
}

/// The rows of a state file (mapped, on the local filesystem). With the
/// checksum its writer recorded, a file that no longer matches it is an error.
pub(super) async fn read_state(warehouse: &Warehouse, path: &str, xxh3: Option<&str>) -> datafusion::error::Result<Vec<RecordBatch>> {
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
pub(super) enum Checked {
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
pub(super) fn decode_state(bytes: bytes::Bytes, checked: Checked) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
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

/// Delete every state object of `pipeline` but those of `keep` (the state of
/// its latest run that published: only it is ever a base of its runs).
/// Another pipeline's state is never touched: its run in progress may be
/// reading it. Failures are logged; stale state is only space.
pub async fn prune_state(warehouse: &Warehouse, pipeline: &str, keep: &[State]) {
    let dir = warehouse.state_of(pipeline);
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
