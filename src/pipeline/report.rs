//! The run report: what one run did, written as JSON under
//! `<warehouse>/_runs/<run_id>.json` whether the run succeeded or failed.

use crate::ingest::IngestReport;
use crate::publish::Published;
use crate::storage::Location;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub failing_rows: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub trigger: String,
    pub status: String,
    pub as_of: String,
    pub timezone: String,
    pub currency: String,
    pub raw: String,
    pub warehouse: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: f64,
    pub ingest: Option<IngestReport>,
    pub steps: Vec<Step>,
    pub checks: Vec<CheckResult>,
    pub tables: Vec<Published>,
    /// The rows kept of incremental models that are not published, for the
    /// next run (see README "Incremental runs").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<super::carry::State>,
    /// Fingerprint of what the tables are a function of (events version,
    /// model SQL, parameters); equal fingerprints publish equal tables.
    pub inputs: Option<String>,
    /// Fingerprint of the model SQL and the parameters other than the as-of
    /// date: runs with equal shapes can keep each other's rows.
    pub shape: Option<String>,
    /// The last ingest sequence of `events` the models read.
    pub ingest_sequence: Option<i64>,
    /// The first local date the models recomputed; absent when they rebuilt
    /// everything (see README "Incremental runs").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild_from: Option<String>,
    /// The first local date the models incremental by day recomputed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_from_day: Option<String>,
    /// The run whose published rows before `rebuild_from` were kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_rows_of: Option<String>,
    /// Why the models rebuilt everything, when they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_rebuild_because: Option<String>,
    /// The error and its causes, outermost first, when the run failed.
    pub error: Option<Vec<String>>,
}

pub const RUNS_DIR: &str = "_runs";

impl RunReport {
    pub async fn write(&self, warehouse: &Location) -> Result<String, String> {
        let name = format!("{}.json", self.run_id);
        let path = warehouse.path(&format!("{RUNS_DIR}/{name}"));
        let body = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        warehouse
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| format!("{}: cannot write the run report: {e}", warehouse.join(RUNS_DIR).display()))?;
        Ok(format!("{}/{RUNS_DIR}/{name}", warehouse.display().trim_end_matches('/')))
    }
}
