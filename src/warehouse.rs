//! The warehouse layout: which table and which file lives where under the
//! warehouse URL. [`Warehouse`] is the only code that knows the layout;
//! every other module asks it for a location instead of joining names onto
//! the URL, and `events` and `rejects` are opened (and created, empty, on
//! first use) only here.
//!
//! ```text
//! <warehouse>/events              Delta: accepted events (ingest)
//! <warehouse>/rejects             Delta: rejected rows with their reasons (ingest)
//! <warehouse>/marts/<table>       Delta: the published marts (publish)
//! <warehouse>/_runs/<run_id>.json the run reports (pipeline)
//! <warehouse>/_state/<model>/     kept rows of incremental models (incremental)
//! <warehouse>/_tenure/ingest/     the ingest manifest (ingest)
//! <warehouse>/_tenure/leases/     one lease per pipeline (scheduler)
//! <warehouse>/_tenure/vacuum.json  the report of the last vacuum (vacuum)
//! ```
//!
//! It must not decide what is in those places: each owner reads and writes
//! its own part. It does say how every Delta table of the warehouse is
//! configured ([`TABLE_PROPERTIES`]), so that `events`, `rejects` and the
//! marts get the same properties whoever creates them.

use crate::storage::{open_delta_table, Location, Storage, StorageError};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;

/// The SQL name and folder of the accepted events table.
pub const EVENTS: &str = "events";
/// The SQL name and folder of the rejected rows table.
pub const REJECTS: &str = "rejects";

/// The Delta table properties of every table of the warehouse: a checkpoint
/// every 10 commits (Delta's default is 100), so that opening a table
/// replays at most 10 commit files after its last checkpoint. Checkpoints are
/// written by the commits themselves (delta-rs's post-commit hook), and the
/// log before the newest checkpoint is cleaned by `tenure vacuum` only, after
/// its retention window (see [`commit_properties`]).
pub const TABLE_PROPERTIES: [(&str, &str); 1] = [("delta.checkpointInterval", "10")];

/// The commit properties of every commit to a table of the warehouse: the
/// post-commit hook writes a checkpoint when the table's interval is reached,
/// and does not clean the log by itself (delta-rs would, after 30 days,
/// whatever the vacuum window is).
pub fn commit_properties() -> deltalake::kernel::transaction::CommitProperties {
    deltalake::kernel::transaction::CommitProperties::default()
        .with_create_checkpoint(true)
        .with_cleanup_expired_logs(Some(false))
}

/// The metadata action that gives a table made by an earlier build the
/// [`TABLE_PROPERTIES`] it lacks, for its next commit; `None` when it has them.
pub fn missing_properties(metadata: &deltalake::kernel::Metadata) -> Result<Option<deltalake::kernel::Action>, deltalake::DeltaTableError> {
    use deltalake::kernel::MetadataExt;
    let config = metadata.configuration();
    if TABLE_PROPERTIES.iter().all(|(k, v)| config.get(*k).map(String::as_str) == Some(*v)) {
        return Ok(None);
    }
    let mut updated = metadata.clone();
    for (k, v) in TABLE_PROPERTIES {
        updated = updated.add_config_key(k.to_string(), v.to_string())?;
    }
    Ok(Some(deltalake::kernel::Action::Metadata(updated)))
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{table}: cannot describe the table's schema to Delta: {source}")]
    Schema {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{table}: cannot create the table: {source}")]
    Create {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
}

/// One warehouse: its root location, and every place under it.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: Location,
}

impl Warehouse {
    /// The warehouse at `url` (a URL or a local path), on `storage`'s stores.
    pub fn open(storage: &Storage, url: &str) -> Result<Warehouse, StorageError> {
        Ok(Warehouse { root: storage.location(url)? })
    }

    /// The warehouse `config` names (`storage.warehouse`), on its storage settings.
    pub fn of(config: &crate::config::Config) -> Result<Warehouse, StorageError> {
        Warehouse::open(&Storage::new(config.storage.clone()), &config.warehouse)
    }

    /// The warehouse at an already parsed location.
    pub fn at(root: Location) -> Warehouse {
        Warehouse { root }
    }

    /// The root location.
    pub fn root(&self) -> &Location {
        &self.root
    }

    /// The URL shown to people (no credentials).
    pub fn display(&self) -> String {
        self.root.display()
    }

    /// The `events` Delta table.
    pub fn events(&self) -> Location {
        self.root.join(EVENTS)
    }

    /// The `rejects` Delta table.
    pub fn rejects(&self) -> Location {
        self.root.join(REJECTS)
    }

    /// The folder holding one Delta table per published mart.
    pub fn marts(&self) -> Location {
        self.root.join("marts")
    }

    /// The Delta table of mart `name`.
    pub fn mart(&self, name: &str) -> Location {
        self.marts().join(name)
    }

    /// The finance reports `tenure schedule` writes: `<run_id>/` and `latest/`.
    pub fn reports(&self) -> Location {
        self.root.join("reports")
    }

    /// The run reports, one JSON file per run.
    pub fn runs(&self) -> Location {
        self.root.join("_runs")
    }

    /// The kept rows of incremental models, for the next run.
    pub fn state(&self) -> Location {
        self.root.join("_state")
    }

    /// The kept rows of one pipeline's incremental models: each pipeline
    /// prunes its own, never another's.
    pub fn state_of(&self, pipeline: &str) -> Location {
        self.state().join(pipeline)
    }

    /// The ingest manifest: which raw objects each ingest sequence read.
    pub fn ingest_manifest(&self) -> Location {
        self.root.join("_tenure/ingest")
    }

    /// The scheduler's leases, one per pipeline.
    pub fn leases(&self) -> Location {
        self.root.join("_tenure/leases")
    }

    /// The report of the last vacuum, relative to [`Warehouse::root`].
    pub fn vacuum_record(&self) -> &'static str {
        "_tenure/vacuum.json"
    }

    /// Open `events`, creating it empty when no run has ingested yet. Not
    /// partitioned: partitions by day made thousands of small files, while
    /// whole files of consecutive objects carry date statistics.
    pub async fn open_events(&self) -> Result<DeltaTable, WarehouseError> {
        open_or_create(&self.events(), &crate::ingest::batch::EVENTS_SCHEMA).await
    }

    /// Open `rejects`, creating it empty when no run has ingested yet.
    pub async fn open_rejects(&self) -> Result<DeltaTable, WarehouseError> {
        open_or_create(&self.rejects(), &crate::ingest::batch::REJECTS_SCHEMA).await
    }
}

/// Open the Delta table at `location`, creating it empty with `schema` when
/// it does not exist.
async fn open_or_create(location: &Location, schema: &arrow::datatypes::Schema) -> Result<DeltaTable, WarehouseError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let table = open_delta_table(location).await?;
    if table.version().is_some() {
        return Ok(table);
    }
    let struct_type: deltalake::kernel::StructType = schema.try_into_kernel().map_err(|source| WarehouseError::Schema {
        table: location.display(),
        source,
    })?;
    // Creating is idempotent (`Ignore` keeps a table that exists): a
    // creation whose answer was lost is simply tried again.
    let mut tried = 0;
    loop {
        let created = deltalake::operations::create::CreateBuilder::default()
            .with_log_store(table.log_store())
            .with_columns(struct_type.fields().cloned())
            .with_configuration(TABLE_PROPERTIES.map(|(k, v)| (k, Some(v))))
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => return Ok(t),
            Err(source) if tried < 3 && crate::settle::is_transient(&source) => {
                tried += 1;
                tracing::warn!(table = %location.display(), error = %source, "creating the table failed transiently; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500 << tried)).await;
            }
            Err(source) => {
                return Err(WarehouseError::Create {
                    table: location.display(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_created_once_unpartitioned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        let created = warehouse.open_events().await.expect("create");
        assert_eq!(created.version(), Some(0));
        let reopened = warehouse.open_events().await.expect("open");
        assert_eq!(reopened.version(), Some(0), "a second open creates nothing");
        let snapshot = reopened.snapshot().expect("snapshot");
        assert!(snapshot.metadata().partition_columns().is_empty());
        assert_eq!(snapshot.metadata().configuration().get("delta.checkpointInterval").map(String::as_str), Some("10"));
        assert!(missing_properties(snapshot.metadata()).expect("metadata").is_none(), "nothing to add to a new table");
        assert!(dir.path().join("events/_delta_log").is_dir());
        assert_eq!(warehouse.mart("mrr_monthly").display(), format!("{}/marts/mrr_monthly", warehouse.display().trim_end_matches('/')));
    }
}
