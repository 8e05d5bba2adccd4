//! The published tables as one DataFusion schema: every mart under
//! `<warehouse>/marts/`, plus `events` and `rejects`, each read at its latest
//! Delta version, or at an earlier one when the name asks for it
//! (`"mrr_monthly@v3"`, `"mrr_monthly@2026-04-01T00:00:00Z"`).
//!
//! A long-lived session (the server's) serves each run's new versions without
//! a restart: the table list and each table's latest version are re-checked
//! at most once per [`FRESHNESS`], and a table named without a version is
//! resolved again every time a plan scans it, so even a statement prepared
//! before a run reads the run's version. Nothing here writes: tables that do
//! not exist yet are not listed (never created), and the schema refuses to
//! register tables.
//!
//! "Latest" is what run reports say, not the newest Delta version: a mart
//! is read at the newest version a succeeded run report records for it.
//! A run publishes its marts one commit each and writes its report last, so
//! readers switch from one run's marts to the next run's all at once, never
//! seeing some marts of a run in progress beside the previous run's others.
//! A mart no report records (a warehouse without reports) is read at its
//! newest Delta version, as are `events` and `rejects`, which only grow;
//! the month close's tables are read at their empty version 0 instead (a
//! later version no report records holds closes of a run that died).

use crate::storage::{open_delta_table, Location};
use crate::warehouse::{Warehouse, EVENTS, REJECTS};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::catalog::{ScanArgs, ScanResult, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::Expr;
use deltalake::DeltaTable;
use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How stale the table list and a table's latest version may be.
pub const FRESHNESS: Duration = Duration::from_secs(1);

/// Earlier versions kept open at once (time travel); the oldest is dropped.
const PINNED_CAPACITY: usize = 32;

/// Which version of a table a name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsOf {
    Latest,
    /// `name@v3`: Delta version 3.
    Version(u64),
    /// `name@2026-04-01T00:00:00Z` or `name@2026-04-01` (midnight UTC): the
    /// version that was current at that instant.
    Time(DateTime<Utc>),
}

/// Split a table name into the table and the version it asks for.
pub fn parse_name(name: &str) -> std::result::Result<(&str, AsOf), String> {
    let Some((base, at)) = name.split_once('@') else {
        return Ok((name, AsOf::Latest));
    };
    let bad = || {
        format!(
            "table name {name:?}: after '@' write a version (\"{base}@v3\") or a UTC time (\"{base}@2026-04-01T00:00:00Z\")"
        )
    };
    if let Some(v) = at.strip_prefix('v').or_else(|| at.strip_prefix('V')) {
        return v.parse().map(|v| (base, AsOf::Version(v))).map_err(|_| bad());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(at) {
        return Ok((base, AsOf::Time(t.with_timezone(&Utc))));
    }
    if let Ok(d) = NaiveDate::parse_from_str(at, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        return Ok((base, AsOf::Time(midnight.and_utc())));
    }
    Err(bad())
}

/// An earlier version, opened: (table, version asked for) and its provider.
type Pinned = ((String, AsOf), Arc<dyn TableProvider>);

struct Latest {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
    checked: Instant,
}

struct Names {
    tables: BTreeMap<String, Location>,
    checked: Option<Instant>,
}

/// The published tables of one warehouse, as a [`SchemaProvider`].
pub struct PublishedTables {
    inner: Arc<Inner>,
}

/// The mart versions the run reports record, and the reports read so far
/// (a report never changes once written).
#[derive(Default)]
struct Recorded {
    reports: HashMap<String, Vec<(String, i64)>>,
    versions: HashMap<String, i64>,
    checked: Option<Instant>,
}

/// The part of a run report that says what it published.
#[derive(serde::Deserialize)]
struct ReportTables {
    status: String,
    #[serde(default)]
    tables: Vec<ReportTable>,
}

#[derive(serde::Deserialize)]
struct ReportTable {
    name: String,
    version: i64,
}

struct Inner {
    warehouse: Warehouse,
    recorded: tokio::sync::Mutex<Recorded>,
    /// The session's runtime, where every table's object store is registered.
    runtime: Arc<RuntimeEnv>,
    names: RwLock<Names>,
    latest: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Latest>>>>>,
    pinned: Mutex<Vec<Pinned>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PublishedTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedTables")
            .field("warehouse", &self.inner.warehouse)
            .finish()
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PublishedTables {
    pub fn new(warehouse: Warehouse, runtime: Arc<RuntimeEnv>) -> PublishedTables {
        let inner = Inner {
            warehouse,
            recorded: tokio::sync::Mutex::new(Recorded::default()),
            runtime,
            names: RwLock::new(Names {
                tables: BTreeMap::new(),
                checked: None,
            }),
            latest: Mutex::new(HashMap::new()),
            pinned: Mutex::new(Vec::new()),
            refreshing: tokio::sync::Mutex::new(()),
        };
        PublishedTables { inner: Arc::new(inner) }
    }

    /// Re-read the list of published tables, unless it was read less than
    /// [`FRESHNESS`] ago. Tables without a committed Delta version are left out.
    pub async fn refresh(&self) -> Result<()> {
        self.inner.refresh().await
    }
}

impl Inner {
    /// Re-read the list of published tables, unless it was read less than
    /// [`FRESHNESS`] ago. Tables without a committed Delta version are left out.
    pub async fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let known = {
            let names = self.names.read().unwrap_or_else(|e| e.into_inner());
            if names.checked.is_some_and(|t| t.elapsed() < FRESHNESS) {
                return Ok(());
            }
            names.tables.clone()
        };
        let mut tables = BTreeMap::new();
        let mut candidates: Vec<(String, Location)> = super::published_marts(&self.warehouse)
            .await
            .map_err(external)?
            .into_iter()
            .map(|name| {
                let location = self.warehouse.mart(&name);
                (name, location)
            })
            .collect();
        candidates.push((EVENTS.to_string(), self.warehouse.events()));
        candidates.push((REJECTS.to_string(), self.warehouse.rejects()));
        for (name, location) in candidates {
            // A table stays once seen; a new one is listed once it has a log.
            if known.contains_key(&name) || has_delta_log(&location).await? {
                tables.insert(name, location);
            }
        }
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        names.tables = tables;
        names.checked = Some(Instant::now());
        Ok(())
    }

    /// The version of mart `name` the newest run reports record (re-read at
    /// most once per [`FRESHNESS`]); None for a table no report records.
    async fn recorded_version(&self, name: &str) -> Result<Option<i64>> {
        if name == EVENTS || name == REJECTS {
            return Ok(None);
        }
        let mut recorded = self.recorded.lock().await;
        if recorded.checked.is_none_or(|t| t.elapsed() >= FRESHNESS) {
            let runs = self.warehouse.runs();
            let listed: Vec<object_store::ObjectMeta> = match futures::TryStreamExt::try_collect(runs.store.list(Some(&runs.prefix))).await {
                Ok(l) => l,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(external(e)),
            };
            for meta in listed {
                let path = meta.location.to_string();
                if !path.ends_with(".json") || recorded.reports.contains_key(&path) {
                    continue;
                }
                let bytes = match runs.store.get(&meta.location).await {
                    Ok(got) => got.bytes().await.map_err(external)?,
                    // Deleted since listed (reports past their retention).
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(external(e)),
                };
                let tables = match serde_json::from_slice::<ReportTables>(&bytes) {
                    Ok(r) if r.status == "succeeded" => r.tables.into_iter().map(|t| (t.name, t.version)).collect(),
                    _ => Vec::new(),
                };
                for (table, version) in &tables {
                    let newest = recorded.versions.entry(table.clone()).or_insert(*version);
                    *newest = (*newest).max(*version);
                }
                recorded.reports.insert(path, tables);
            }
            recorded.checked = Some(Instant::now());
        }
        Ok(recorded.versions.get(name).copied())
    }

    fn location(&self, name: &str) -> Option<Location> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names.tables.get(name).cloned()
    }

    /// Open a table's Delta log (latest version) and register its object store.
    async fn open(&self, location: &Location) -> Result<DeltaTable> {
        let table = open_delta_table(location).await.map_err(external)?;
        let state = SessionStateBuilder::new()
            .with_runtime_env(self.runtime.clone())
            .build();
        table.update_datafusion_session(&state).map_err(external)?;
        Ok(table)
    }

    async fn latest(&self, name: &str, location: &Location) -> Result<Arc<dyn TableProvider>> {
        let slot = {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            latest.entry(name.to_string()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(l) = slot.as_ref().filter(|l| l.checked.elapsed() < FRESHNESS) {
            return Ok(l.provider.clone());
        }
        let recorded = self.recorded_version(name).await?;
        let l = match slot.as_mut() {
            Some(l) => l,
            None => {
                let table = self.open(location).await?;
                let provider = table.table_provider().await?;
                slot.insert(Latest {
                    table,
                    provider,
                    checked: Instant::now(),
                })
            }
        };
        let wanted = match recorded {
            Some(v) => u64::try_from(v).ok(),
            // The close's tables are empty at version 0: a later version no
            // published run records holds rows no run published.
            None if crate::close::is_close_table(name) => Some(0),
            None => Some(l.table.get_latest_version().await.map_err(external)?),
        };
        if let Some(wanted) = wanted.filter(|v| Some(*v) != l.table.version()) {
            match l.table.version() {
                Some(at) if wanted > at => l.table.update_incremental(Some(wanted)).await.map_err(external)?,
                _ => l.table.load_version(wanted).await.map_err(external)?,
            }
            l.provider = l.table.table_provider().await?;
            tracing::debug!(table = %name, version = ?l.table.version(), "serving a new version");
        }
        l.checked = Instant::now();
        Ok(l.provider.clone())
    }

    async fn pinned(&self, name: &str, location: &Location, as_of: AsOf) -> Result<Arc<dyn TableProvider>> {
        let key = (name.to_string(), as_of);
        {
            let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, p)) = pinned.iter().find(|(k, _)| *k == key) {
                return Ok(p.clone());
            }
        }
        let mut table = self.open(location).await?;
        let newest = table.version().unwrap_or(0);
        match as_of {
            AsOf::Version(v) if v > newest => {
                return Err(DataFusionError::Plan(format!(
                    "table {name:?} has no version {v}; its versions are 0 to {newest}"
                )))
            }
            AsOf::Version(v) => table
                .load_version(v)
                .await
                .map_err(|e| DataFusionError::Plan(format!("table {name:?}: cannot read version {v}: {e}")))?,
            AsOf::Time(t) => {
                table.load_with_datetime(t).await.map_err(|e| {
                    DataFusionError::Plan(format!("table {name:?}: no version as of {}: {e}", t.to_rfc3339()))
                })?;
                // Before the first commit, the loader still picks version 0.
                let v = table.version().unwrap_or(0);
                let commit = location.path(&format!("_delta_log/{v:020}.json"));
                let committed = location.store.head(&commit).await.map_err(external)?.last_modified;
                if committed > t {
                    return Err(DataFusionError::Plan(format!(
                        "table {name:?} did not exist yet at {}; its first version is from {}",
                        t.to_rfc3339(),
                        committed.to_rfc3339()
                    )));
                }
            }
            AsOf::Latest => {}
        }
        let provider = table.table_provider().await?;
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if pinned.len() >= PINNED_CAPACITY {
            pinned.remove(0);
        }
        pinned.push((key, provider.clone()));
        Ok(provider)
    }
}

async fn has_delta_log(location: &Location) -> Result<bool> {
    let log = location.join("_delta_log");
    match log.store.list_with_delimiter(Some(&log.prefix)).await {
        Ok(listing) => Ok(listing.objects.iter().any(|o| {
            let path = o.location.as_ref();
            path.ends_with(".json") || path.ends_with(".parquet") || path.ends_with("_last_checkpoint")
        })),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(external(e)),
    }
}

#[async_trait::async_trait]
impl SchemaProvider for PublishedTables {
    fn table_names(&self) -> Vec<String> {
        let names = self.inner.names.read().unwrap_or_else(|e| e.into_inner());
        names.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (base, as_of) = parse_name(name).map_err(DataFusionError::Plan)?;
        let Some(location) = self.inner.location(base) else {
            return Ok(None);
        };
        match as_of {
            AsOf::Latest => {
                let current = self.inner.latest(base, &location).await?;
                Ok(Some(Arc::new(LiveTable {
                    name: base.to_string(),
                    location,
                    tables: self.inner.clone(),
                    planned: current,
                })))
            }
            _ => self.inner.pinned(base, &location, as_of).await.map(Some),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        parse_name(name).is_ok_and(|(base, _)| self.inner.location(base).is_some())
    }
}

/// A table named without a version: planned with the version current at
/// planning, scanned at the version current at execution.
struct LiveTable {
    name: String,
    location: Location,
    tables: Arc<Inner>,
    planned: Arc<dyn TableProvider>,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable").field("name", &self.name).finish()
    }
}

impl LiveTable {
    async fn current(&self) -> Result<Arc<dyn TableProvider>> {
        let current = self.tables.latest(&self.name, &self.location).await?;
        if current.schema().fields() != self.planned.schema().fields() {
            return Err(DataFusionError::Plan(format!(
                "table {:?} changed its columns since this statement was planned; run or prepare it again",
                self.name
            )));
        }
        Ok(current)
    }
}

#[async_trait::async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.planned.schema()
    }

    fn table_type(&self) -> TableType {
        self.planned.table_type()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.planned.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.current().await?.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> Result<ScanResult> {
        self.current().await?.scan_with_args(state, args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ask_for_versions() {
        assert_eq!(parse_name("mrr_monthly"), Ok(("mrr_monthly", AsOf::Latest)));
        assert_eq!(parse_name("mrr_monthly@v3"), Ok(("mrr_monthly", AsOf::Version(3))));
        let t = DateTime::parse_from_rfc3339("2026-04-01T12:00:00+02:00")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_name("mrr_monthly@2026-04-01T12:00:00+02:00"),
            Ok(("mrr_monthly", AsOf::Time(t)))
        );
        let midnight = DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_name("mrr_monthly@2026-04-01"),
            Ok(("mrr_monthly", AsOf::Time(midnight)))
        );
        for bad in [
            "mrr_monthly@",
            "mrr_monthly@v",
            "mrr_monthly@v-1",
            "mrr_monthly@yesterday",
        ] {
            let e = parse_name(bad).expect_err(bad);
            assert!(e.contains("after '@'"), "{e}");
        }
    }

    /// Marts are read at the versions a run report records: the marts of a
    /// run publishing now (committed, report not written yet) are not read
    /// beside the previous run's, and all of them switch when its report is.
    #[tokio::test]
    async fn the_marts_of_one_run_are_read_together() {
        use arrow::array::{Int64Array, RecordBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
        let publish = |value: i64| {
            let warehouse = warehouse.clone();
            async move {
                let mut versions = Vec::new();
                for (order, name) in ["a", "b"].into_iter().enumerate() {
                    let batch = RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![value])) as arrow::array::ArrayRef)]).expect("batch");
                    let staged = crate::publish::stage(warehouse.mart(name), name.to_string(), order, batch.schema(), vec![batch], None)
                        .await
                        .expect("stage");
                    versions.push(crate::publish::commit(staged, "run").await.expect("commit").version);
                }
                versions
            }
        };
        let report = |run: &str, versions: &[i64]| {
            let tables: Vec<serde_json::Value> = ["a", "b"]
                .iter()
                .zip(versions)
                .map(|(name, version)| serde_json::json!({"name": name, "location": "", "version": version, "rows": 1}))
                .collect();
            let body = serde_json::json!({"run_id": run, "pipeline": "daily", "status": "succeeded", "tables": tables});
            let runs = dir.path().join("_runs");
            std::fs::create_dir_all(&runs).expect("mkdir");
            std::fs::write(runs.join(format!("{run}.json")), body.to_string()).expect("report");
        };
        async fn read(service: &crate::query::QueryService) -> (i64, i64) {
            let sql = "select a.v as a, b.v as b from a cross join b";
            let batches = service.sql(sql).await.expect("plan").collect().await.expect("read");
            let column = |i: usize| batches[0].column(i).as_any().downcast_ref::<Int64Array>().expect("int").value(0);
            (column(0), column(1))
        }

        let first = publish(1).await;
        report("r1", &first);
        let service = crate::query::QueryService::open(warehouse.clone()).await.expect("open");
        assert_eq!(read(&service).await, (1, 1));
        // Run 2 has committed both marts; its report is not written yet.
        let second = publish(2).await;
        tokio::time::sleep(FRESHNESS).await;
        assert_eq!(read(&service).await, (1, 1), "the marts of run 1 until run 2's report is written");
        report("r2", &second);
        tokio::time::sleep(FRESHNESS).await;
        assert_eq!(read(&service).await, (2, 2), "every mart of run 2 once it is");
        // Time travel by name still reads any version.
        let travelled = service.sql("select v from \"a@v0\"").await.expect("plan").collect().await.expect("read");
        assert_eq!(travelled[0].column(0).as_any().downcast_ref::<Int64Array>().expect("int").value(0), 1);
    }
}
