//! The DataFusion engine of one run: a SessionContext with tenure's UDFs, the
//! one-row `params` table (run parameters reach SQL as data, never pasted into
//! SQL text), the source tables, and materialising one model. Read-only
//! querying of published tables (`tenure query`) goes through here too.

mod dated;
pub mod udf;

use crate::catalog::{Materialized, Model};
use crate::config::Config;
use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::sync::Arc;

pub use udf::local_date_udf;

/// `tenure_rebuild_from()` of a full rebuild: before any event.
pub fn full_rebuild() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The run parameters models read from `params`.
#[derive(Debug, Clone)]
pub struct Params {
    pub as_of: NaiveDate,
    pub timezone: String,
    pub currency: String,
    pub activity_window_days: i64,
    pub health: crate::config::Health,
    pub clv: crate::config::Clv,
    pub churn_l2: f64,
}

impl Params {
    pub fn from_config(config: &Config, as_of: NaiveDate) -> Params {
        Params {
            as_of,
            timezone: config.timezone.name().to_string(),
            currency: config.currency.clone(),
            activity_window_days: config.activity_window_days,
            health: config.health.clone(),
            clv: config.clv,
            churn_l2: config.churn_l2,
        }
    }

    /// The one-row `params` table.
    pub fn batch(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let h = &self.health;
        let days = (self.as_of - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32;
        let f = |name: &str| Field::new(name, DataType::Float64, false);
        let mut fields = vec![
            Field::new("as_of", DataType::Date32, false),
            Field::new("timezone", DataType::Utf8, false),
            Field::new("currency", DataType::Utf8, false),
            Field::new("activity_window_days", DataType::Int64, false),
            Field::new("clv_time_unit_days", DataType::Int64, false),
            Field::new("clv_horizon_days", DataType::Int64, false),
        ];
        let floats = [
            ("weight_usage", h.weight_usage),
            ("weight_breadth", h.weight_breadth),
            ("weight_trend", h.weight_trend),
            ("weight_sentiment", h.weight_sentiment),
            ("weight_support", h.weight_support),
            ("weight_billing", h.weight_billing),
            ("weight_email", h.weight_email),
            ("target_active_days", h.target_active_days),
            ("target_features", h.target_features),
            ("band_green", h.band_green),
            ("band_yellow", h.band_yellow),
            ("score_drop_threshold", h.score_drop_threshold),
            ("churn_l2", self.churn_l2),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(vec![days])),
            Arc::new(StringArray::from(vec![self.timezone.clone()])),
            Arc::new(StringArray::from(vec![self.currency.clone()])),
            Arc::new(Int64Array::from(vec![self.activity_window_days])),
            Arc::new(Int64Array::from(vec![self.clv.time_unit_days])),
            Arc::new(Int64Array::from(vec![self.clv.horizon_days])),
        ];
        for (name, v) in floats {
            fields.push(f(name));
            columns.push(Arc::new(Float64Array::from(vec![v])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }
}

datafusion::common::extensions_options! {
    /// The settings of the model being planned that tenure's SQL functions
    /// read from the session (`tenure.*`).
    pub struct ModelOptions {
        /// `tenure_rebuild_from()`, in days since 1970-01-01.
        pub rebuild_from: i32, default = crate::dates::days_since_epoch(full_rebuild())
    }
}

impl datafusion::common::config::ConfigExtension for ModelOptions {
    const PREFIX: &'static str = "tenure";
}

/// A fresh session with tenure's functions registered.
pub fn session() -> SessionContext {
    session_with_memory(None)
}

/// [`session`] whose queries together hold at most `limit` bytes: operators
/// that can spill (sorts, aggregates, joins) write temporary files rather
/// than exceed it, each getting a fair share; one that cannot fails with
/// DataFusion's "resources exhausted" error naming the largest consumers.
pub fn session_with_memory(limit: Option<usize>) -> SessionContext {
    session_of(limit, SessionConfig::new().options().catalog.default_catalog.as_str())
}

/// The catalog name clients of the published tables see (`tenure query`,
/// `tenure serve`: `current_database()`, `pg_database`, JDBC's catalogs).
pub const PUBLISHED_CATALOG: &str = "tenure";

/// [`session`] whose default catalog is [`PUBLISHED_CATALOG`], for serving
/// the published tables.
pub fn published_session() -> SessionContext {
    session_of(None, PUBLISHED_CATALOG)
}

fn session_of(limit: Option<usize>, catalog: &str) -> SessionContext {
    let runtime = match limit {
        Some(bytes) => datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(std::sync::Arc::new(datafusion::execution::memory_pool::TrackConsumersPool::new(
                datafusion::execution::memory_pool::FairSpillPool::new(bytes),
                std::num::NonZeroUsize::MIN.saturating_add(4),
            )))
            .build_arc(),
        None => datafusion::execution::runtime_env::RuntimeEnvBuilder::new().build_arc(),
    };
    let runtime = runtime.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "memory limit not applied");
        std::sync::Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default())
    });
    // DataFusion's own settings can be tuned from the environment
    // (`DATAFUSION_EXECUTION_BATCH_SIZE=16384`, ...); the defaults are DataFusion's.
    let config = SessionConfig::from_env()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "DATAFUSION_* environment settings ignored");
            SessionConfig::new()
        })
        .with_information_schema(true)
        .with_option_extension(ModelOptions::default());
    let schema = config.options().catalog.default_schema.clone();
    let config = config.with_default_catalog_and_schema(catalog, schema);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for f in udf::all() {
        ctx.register_udf(f);
    }
    ctx
}

/// The memory pool of a run's models unless `engine.memory_mb` says otherwise.
/// A fixed size, not a share of the machine: what a run's operators need
/// grows with the customers and days they group, not with the memory there
/// is, and a pool sized to the machine let a large run's aggregates hold
/// gigabytes before any of them spilled.
pub const DEFAULT_MEMORY_MB: u64 = 512;

/// [`DEFAULT_MEMORY_MB`], or 80 % of the memory this process may use (the
/// cgroup limit of a container, else the machine's) where that is less.
pub fn default_memory_limit() -> Option<usize> {
    let default = usize::try_from(DEFAULT_MEMORY_MB << 20).ok()?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let total = match (cgroup, machine) {
        (Some(c), Some(m)) => c.min(m),
        (c, m) => match c.or(m) {
            Some(t) => t,
            None => return Some(default),
        },
    };
    Some(usize::try_from(total / 5 * 4).map_or(default, |share| share.min(default)))
}

/// A session over the same tables (registering one registers it in both) in
/// which `tenure_rebuild_from()` is `rebuild_from`: for a model that
/// recomputes from another date than the run's. The views it reads are
/// planned into its own plan, so they see that date too.
pub fn rebuilding_from(ctx: &SessionContext, rebuild_from: NaiveDate) -> datafusion::error::Result<SessionContext> {
    let mut state = ctx.state();
    set_rebuild_from(state.config_mut(), rebuild_from)?;
    Ok(SessionContext::new_with_state(state))
}

/// Set what `tenure_rebuild_from()` returns in sessions of `config`.
fn set_rebuild_from(config: &mut SessionConfig, rebuild_from: NaiveDate) -> datafusion::error::Result<()> {
    match config.options_mut().extensions.get_mut::<ModelOptions>() {
        Some(options) => options.rebuild_from = crate::dates::days_since_epoch(rebuild_from),
        None => return Err(datafusion::error::DataFusionError::Internal("a session without tenure's options".into())),
    }
    Ok(())
}

/// Register a run's parameters: the `params` table, and the run constants
/// `tenure_as_of()`, `tenure_timezone()` and `tenure_rebuild_from()`.
pub fn register_params(ctx: &SessionContext, params: &Params, rebuild_from: NaiveDate) -> datafusion::error::Result<()> {
    let batch = params.batch()?;
    register_batch(ctx, "params", vec![batch.clone()], batch.schema())?;
    ctx.register_udf(udf::as_of_udf(params.as_of));
    ctx.register_udf(udf::timezone_udf(&params.timezone));
    let state = ctx.state_ref();
    let mut state = state.write();
    set_rebuild_from(state.config_mut(), rebuild_from)
}

/// Options that keep SQL from a user read-only: no DDL, DML or `SET`/`COPY`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

pub fn register_batch(ctx: &SessionContext, name: &str, batches: Vec<RecordBatch>, schema: arrow::datatypes::SchemaRef) -> datafusion::error::Result<()> {
    register_rows(ctx, name, batches, schema, None)
}

/// Register a model's rows as its table. An incremental model's (date column
/// `key`) is a [`dated::DatedTable`], whose scans skip the batches a
/// comparison on the date rules out.
pub fn register_rows(
    ctx: &SessionContext,
    name: &str,
    batches: Vec<RecordBatch>,
    schema: arrow::datatypes::SchemaRef,
    key: Option<&str>,
) -> datafusion::error::Result<()> {
    let dated = key.and_then(|k| dated::DatedTable::try_new(schema.clone(), k, batches.clone()));
    let table: Arc<dyn datafusion::datasource::TableProvider> = match dated {
        Some(t) => Arc::new(t),
        None => Arc::new(MemTable::try_new(schema, vec![batches])?),
    };
    ctx.deregister_table(name)?;
    ctx.register_table(name, table)?;
    Ok(())
}

/// The outcome of building one model.
pub struct Built {
    pub batches: Vec<RecordBatch>,
    pub schema: arrow::datatypes::SchemaRef,
    pub rows: usize,
}

impl Built {
    /// The outcome without its rows, for a table whose rows only its
    /// registered table needs to hold.
    pub fn rows_only(self) -> Built {
        Built { batches: Vec::new(), ..self }
    }
}

/// Build one model: a view (registered, not run), or a table computed once and
/// held in memory.
pub async fn build(ctx: &SessionContext, model: &Model) -> datafusion::error::Result<Option<Built>> {
    let started = std::time::Instant::now();
    let df = ctx.sql_with_options(&model.sql, read_only()).await?;
    let df_schema = df.schema().as_arrow().clone();
    if model.materialized == Materialized::View {
        ctx.deregister_table(&model.name)?;
        ctx.register_table(&model.name, df.into_view())?;
        return Ok(None);
    }
    let plan = df.create_physical_plan().await?;
    let planned = started.elapsed().as_secs_f64();
    let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx()).await?;
    tracing::debug!(model = %model.name, planning_seconds = planned, batches = batches.len(), "model planned and run");
    if let Some(dir) = std::env::var_os("TENURE_PROFILE_DIR") {
        write_profile(std::path::Path::new(&dir), &model.name, plan.as_ref());
    }
    // The batches' own schema (DataFusion's logical nullability can differ).
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(df_schema),
    };
    let (batches, schema) = match &model.kind {
        Some(kind) => fit(ctx, model, kind, schema, batches).await?,
        None => (batches, schema),
    };
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    register_rows(ctx, &model.name, batches.clone(), schema.clone(), model.incremental.as_deref())?;
    Ok(Some(Built { batches, schema, rows }))
}

/// The kind of a model, or the error that names the unknown one.
fn kind_of(kind: &str) -> datafusion::error::Result<&'static dyn crate::fit::Kind> {
    crate::fit::kind(kind).ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("unknown model kind {kind:?}")))
}

fn fit_error(e: crate::fit::FitError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// Run the Rust step of a fitted model on the rows of its SQL, on a thread
/// that may block, and return its table.
async fn fit(
    ctx: &SessionContext,
    model: &Model,
    kind: &str,
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> datafusion::error::Result<(Vec<RecordBatch>, arrow::datatypes::SchemaRef)> {
    let kind = kind_of(kind)?;
    kind.output_schema(&schema).map_err(fit_error)?;
    let params = ctx.table("params").await?.collect().await?;
    let params = params.first().ok_or_else(|| fit_error(crate::fit::FitError::Setting("as_of")))?;
    let settings = crate::fit::Settings::from_params(&model.name, params).map_err(fit_error)?;
    let input = crate::fit::Input::new(kind.name(), schema, &batches).map_err(fit_error)?;
    drop(batches);
    let started = std::time::Instant::now();
    let batch = tokio::task::spawn_blocking(move || kind.fit(&input, &settings))
        .await
        .map_err(|e| datafusion::error::DataFusionError::Execution(format!("model kind {} stopped: {e}", kind.name())))?
        .map_err(fit_error)?;
    tracing::debug!(model = %model.name, kind = kind.name(), seconds = started.elapsed().as_secs_f64(), "model fitted");
    let schema = batch.schema();
    Ok((vec![batch], schema))
}

/// With `TENURE_PROFILE_DIR` set, each model's physical plan with the
/// metrics of its execution (rows, time per operator) goes to `<dir>/<model>.txt`.
fn write_profile(dir: &std::path::Path, model: &str, plan: &dyn datafusion::physical_plan::ExecutionPlan) {
    let text = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string();
    let path = dir.join(format!("{model}.txt"));
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
        tracing::warn!(path = %path.display(), error = %e, "model profile not written");
    }
}

/// Plan a model without running it (for `tenure validate`), then register an
/// empty table of its output schema so downstream models can be planned.
pub async fn plan(ctx: &SessionContext, model: &Model) -> datafusion::error::Result<()> {
    let df = ctx.sql_with_options(&model.sql, read_only()).await?;
    let schema: arrow::datatypes::SchemaRef = Arc::new(df.schema().as_arrow().clone());
    df.create_physical_plan().await?;
    let schema = match &model.kind {
        Some(kind) => kind_of(kind)?.output_schema(&schema).map_err(fit_error)?,
        None => schema,
    };
    register_batch(ctx, &model.name, vec![], schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, sql: &str, materialized: Materialized) -> Model {
        Model {
            name: name.into(),
            layer: crate::catalog::Layer::Intermediate,
            file: format!("{name}.sql").into(),
            sql: sql.into(),
            depends_on: Default::default(),
            materialized,
            incremental: None,
            by_day: false,
            kind: None,
        }
    }

    async fn first_date(ctx: &SessionContext, name: &str) -> Option<i32> {
        let batches = ctx.table(name).await.expect("table").collect().await.expect("collect");
        let dates = batches.first()?.column(0).as_any().downcast_ref::<Date32Array>()?.clone();
        Some(dates.value(0))
    }

    #[tokio::test]
    async fn rebuild_from_is_the_date_of_the_model_being_planned() {
        let ctx = session();
        let project = crate::config::load(std::path::Path::new("config/tenure.toml"), &Default::default()).expect("config");
        let params = Params::from_config(&project.config, NaiveDate::from_ymd_opt(2026, 11, 16).expect("date"));
        let month = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let day = NaiveDate::from_ymd_opt(2026, 11, 16).expect("date");
        register_params(&ctx, &params, month).expect("params");
        // A view reads the date in the plan of each model that reads it.
        let view = model("v", "select tenure_rebuild_from() as d", Materialized::View);
        build(&ctx, &view).await.expect("view");
        let t = model("t", "select d from v", Materialized::Table);
        build(&ctx, &t).await.expect("by month");
        let u = model("u", "select d from v", Materialized::Table);
        build(&rebuilding_from(&ctx, day).expect("session"), &u).await.expect("by day");
        let days = crate::dates::days_since_epoch;
        assert_eq!(first_date(&ctx, "t").await, Some(days(month)));
        // Built in its own session, registered in the run's.
        assert_eq!(first_date(&ctx, "u").await, Some(days(day)));
        // The run's own session is unchanged.
        build(&ctx, &model("w", "select tenure_rebuild_from() as d", Materialized::Table)).await.expect("w");
        assert_eq!(first_date(&ctx, "w").await, Some(days(month)));
    }
}
