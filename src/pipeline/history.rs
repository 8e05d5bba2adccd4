//! Run history: the run reports ([`Warehouse::runs`]), read back for
//! `tenure runs`, resumable backfills, late-event detection and the
//! scheduler's catch-up. Reports are written by `report`; this only reads.

use super::report::RunReport;
use crate::warehouse::Warehouse;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{url}: cannot read the run history: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path}: not a run report: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no run {0} in the history")]
    NotFound(String),
}

/// Every run report of a warehouse, oldest first.
pub async fn list(warehouse: &Warehouse) -> Result<Vec<RunReport>, HistoryError> {
    let dir = warehouse.runs();
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
        match serde_json::from_slice::<RunReport>(&bytes) {
            Ok(report) => runs.push(report),
            Err(e) => tracing::warn!(report = %meta.location, error = %e, "unreadable run report skipped"),
        }
    }
    runs.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.run_id.cmp(&b.run_id)));
    Ok(runs)
}

/// One report, whole, by run id.
pub async fn show(warehouse: &Warehouse, run_id: &str) -> Result<RunReport, HistoryError> {
    if run_id.contains('/') || run_id.contains("..") {
        return Err(HistoryError::NotFound(run_id.to_string()));
    }
    let dir = warehouse.runs();
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
    serde_json::from_slice(&bytes).map_err(|source| HistoryError::Parse {
        path: path.to_string(),
        source,
    })
}

/// The latest as-of date of a succeeded run (of any pipeline), if any.
pub fn latest_as_of(runs: &[RunReport]) -> Option<chrono::NaiveDate> {
    runs.iter()
        .filter(|r| r.succeeded())
        .filter_map(|r| r.as_of.parse().ok())
        .max()
}
