//! Publishing curated tables: each mart becomes one new Delta version under
//! `<warehouse>/marts/<table>` per run (an overwrite in a single commit), so a
//! reader sees the old table or the new one, never half of one. Also opens
//! published tables for reading.

use crate::storage::{Location, Storage, StorageError};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use serde::Serialize;

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

/// Overwrite the table at `location` with `batches` in one commit.
pub async fn overwrite(
    storage: &Storage,
    location: &Location,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    run_id: &str,
) -> Result<Published, PublishError> {
    let table = storage.delta_table(location).await?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    };
    let props = CommitProperties::default().with_metadata([
        ("tenure.run_id".to_string(), serde_json::Value::from(run_id)),
        ("tenure.rows".to_string(), serde_json::Value::from(rows)),
    ]);
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
