//! The run report: what one run did, written as JSON under the warehouse's
//! run reports ([`Warehouse::runs`]) whether the run succeeded or failed, and
//! read back by the same type for the run history, the scheduler and the
//! benchmark.

use crate::ingest::IngestReport;
use crate::publish::Published;
use crate::warehouse::Warehouse;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub failing_rows: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run's report. Fields a reader can do without default when absent,
/// so that a report cut short (or written by an older build) still reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    #[serde(default)]
    pub trigger: String,
    pub status: RunStatus,
    pub as_of: String,
    #[serde(default)]
    pub timezone: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub raw: String,
    #[serde(default)]
    pub warehouse: String,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub ingest: Option<IngestReport>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// The tables the run published, with their versions.
    #[serde(default)]
    pub tables: Vec<Published>,
    /// The rows kept of incremental models that are not published, for the
    /// next run (see README "Incremental runs").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<super::incremental::State>,
    /// Fingerprint of what the tables are a function of (events version,
    /// model SQL, parameters); equal fingerprints publish equal tables.
    #[serde(default)]
    pub inputs: Option<String>,
    /// Fingerprint of the model SQL and the parameters other than the as-of
    /// date: runs with equal shapes can keep each other's rows.
    #[serde(default)]
    pub shape: Option<String>,
    /// The last ingest sequence of `events` the models read.
    #[serde(default)]
    pub ingest_sequence: Option<i64>,
    /// The first local date the models recomputed; absent when they rebuilt
    /// everything (see README "Incremental runs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_from: Option<String>,
    /// The first local date the models incremental by day recomputed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_from_day: Option<String>,
    /// The run whose published rows before `rebuild_from` were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_rows_of: Option<String>,
    /// Why the models rebuilt everything, when they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_rebuild_because: Option<String>,
    /// Months this run closed, or restated on purpose (METRICS.md §12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closes: Vec<crate::close::Closed>,
    /// Closed months whose current figures differ from those reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restated: Vec<crate::close::Restated>,
    /// How the models ran: present when they ran on workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineReport>,
    /// The error and its causes, outermost first, when the run failed.
    #[serde(default)]
    pub error: Option<Vec<String>>,
}

/// The run report's `engine`: the workers the models ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineReport {
    /// Each worker of `--workers` (`engine.workers`), in order, with the
    /// tasks it was sent and whether it was lost during the run.
    pub workers: Vec<crate::cluster::WorkerTasks>,
    /// Model builds tried again after a worker was lost (locally once none was left).
    #[serde(default)]
    pub retried_models: Vec<String>,
}

impl RunReport {
    /// The report of a run just started.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        pipeline: &str,
        trigger: &str,
        as_of: chrono::NaiveDate,
        config: &crate::config::Config,
        raw: String,
        warehouse: String,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> RunReport {
        RunReport {
            run_id,
            pipeline: pipeline.to_string(),
            trigger: trigger.to_string(),
            status: RunStatus::Running,
            as_of: as_of.to_string(),
            timezone: config.timezone.name().to_string(),
            currency: config.currency.clone(),
            raw,
            warehouse,
            started_at: started_at.to_rfc3339(),
            finished_at: None,
            seconds: 0.0,
            ingest: None,
            steps: Vec::new(),
            checks: Vec::new(),
            tables: Vec::new(),
            state: Vec::new(),
            inputs: None,
            shape: None,
            ingest_sequence: None,
            rebuild_from: None,
            rebuild_from_day: None,
            kept_rows_of: None,
            full_rebuild_because: None,
            closes: Vec::new(),
            restated: Vec::new(),
            engine: None,
            error: None,
        }
    }

    /// Events this run accepted into `events` (0 when it did not ingest).
    pub fn accepted(&self) -> u64 {
        self.ingest.as_ref().map_or(0, |i| i.totals.accepted)
    }

    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// Write the report into the warehouse's run reports; returns where.
    pub async fn write(&self, warehouse: &Warehouse) -> Result<String, ReportError> {
        let runs = warehouse.runs();
        let name = format!("{}.json", self.run_id);
        let body = serde_json::to_vec_pretty(self).map_err(ReportError::Encode)?;
        runs.store
            .put(&runs.path(&name), PutPayload::from(body))
            .await
            .map_err(|source| ReportError::Write { dir: runs.display(), source })?;
        Ok(runs.join(&name).display())
    }
}

/// Why a run report was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot encode the run report: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("{dir}: cannot write the run report: {source}")]
    Write {
        dir: String,
        #[source]
        source: object_store::Error,
    },
}
