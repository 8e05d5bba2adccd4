//! Run history: the run reports under `<warehouse>/_runs/`, read back for
//! `tenure runs`, resumable backfills, late-event detection and the
//! scheduler's catch-up. Reports are written by `report`; this only reads.

use super::report::RUNS_DIR;
use crate::storage::Location;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Deserialize;

/// The fields of a run report that history needs (the report has more).
#[derive(Debug, Clone, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub pipeline: String,
    #[serde(default)]
    pub trigger: String,
    pub status: String,
    pub as_of: String,
    #[serde(default)]
    pub timezone: String,
    pub started_at: String,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub inputs: Option<String>,
    /// What the tables are a function of besides events and as-of date.
    #[serde(default)]
    pub shape: Option<String>,
    /// The ingest sequence the models read.
    #[serde(default)]
    pub ingest_sequence: Option<i64>,
    /// The tables the run published, with their versions.
    #[serde(default)]
    pub tables: Vec<TableVersion>,
    /// The rows it kept of incremental models that are not published.
    #[serde(default)]
    pub state: Vec<super::carry::State>,
    #[serde(default)]
    pub error: Option<Vec<String>>,
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub accepted: u64,
}

/// A table a run published, and the Delta version it committed.
#[derive(Debug, Clone, Deserialize)]
pub struct TableVersion {
    pub name: String,
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{url}: cannot read the run history: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: not a run report: {message}")]
    Parse { path: String, message: String },
    #[error("no run {0} in the history")]
    NotFound(String),
}

/// Every run report of a warehouse, oldest first.
pub async fn list(warehouse: &Location) -> Result<Vec<RunSummary>, HistoryError> {
    let dir = warehouse.join(RUNS_DIR);
    let err = |source| HistoryError::Store {
        url: dir.display(),
        source,
    };
    let metas: Vec<object_store::ObjectMeta> = match dir.store.list(Some(&dir.prefix)).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(err(e)),
    };
    let mut runs = Vec::new();
    for meta in metas {
        if !meta.location.as_ref().ends_with(".json") {
            continue;
        }
        let bytes = dir.store.get(&meta.location).await.map_err(err)?.bytes().await.map_err(err)?;
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(report = %meta.location, error = %e, "unreadable run report skipped");
                continue;
            }
        };
        match serde_json::from_value::<RunSummary>(value.clone()) {
            Ok(mut s) => {
                s.path = meta.location.to_string();
                s.accepted = value
                    .pointer("/ingest/totals/accepted")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                runs.push(s);
            }
            Err(e) => tracing::warn!(report = %meta.location, error = %e, "run report without the expected fields skipped"),
        }
    }
    runs.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.run_id.cmp(&b.run_id)));
    Ok(runs)
}

/// One report, whole, by run id.
pub async fn show(warehouse: &Location, run_id: &str) -> Result<serde_json::Value, HistoryError> {
    if run_id.contains('/') || run_id.contains("..") {
        return Err(HistoryError::NotFound(run_id.to_string()));
    }
    let dir = warehouse.join(RUNS_DIR);
    let path = dir.path(&format!("{run_id}.json"));
    let bytes = match dir.store.get(&path).await {
        Ok(r) => r.bytes().await.map_err(|source| HistoryError::Store {
            url: dir.display(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Err(HistoryError::NotFound(run_id.to_string())),
        Err(source) => {
            return Err(HistoryError::Store {
                url: dir.display(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| HistoryError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// The latest as-of date of a succeeded run (of any pipeline), if any.
pub fn latest_as_of(runs: &[RunSummary]) -> Option<chrono::NaiveDate> {
    runs.iter()
        .filter(|r| r.status == "succeeded")
        .filter_map(|r| r.as_of.parse().ok())
        .max()
}
