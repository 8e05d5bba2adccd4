//! One run of a pipeline: ingest new raw objects -> build the selected models
//! in dependency order -> run the checks -> publish the marts -> write the
//! run report. A failed step stops the run before anything is published; the
//! report is written either way.

pub mod backfill;
pub mod incremental;
pub mod history;
mod executor;
pub mod report;

pub use crate::clock::{Clock, SystemClock};
use crate::catalog::{Catalog, Layer, Model};
use crate::config::{Pipeline, Project};
use crate::engine::{self, Params};
use crate::ingest::{self, IngestOptions};
use crate::publish;
use executor::Executor;
use crate::storage::{open_delta_table, Location, Storage};
use datafusion::prelude::SessionContext;
use crate::warehouse::{Warehouse, EVENTS, REJECTS};
use chrono::NaiveDate;
pub use report::{RunReport, RunStatus};
use report::{CheckResult, Step};
use futures::{StreamExt, TryStreamExt};
use crate::lease::{self, LeaseStore};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Marts published at the same time.
const PUBLISH_AT_ONCE: usize = 4;
/// The lease every pipeline's ingest into one warehouse takes (a name no
/// pipeline can have: pipeline names have no dot).
pub const INGEST_LEASE: &str = "warehouse.ingest";
/// How often a run waiting for the ingest lease asks again.
const INGEST_LEASE_POLL: Duration = Duration::from_secs(1);

/// Models built at the same time: `TENURE_MODELS_AT_ONCE` (1 builds them one
/// by one), else half the cores, at least one and at most four. Each model's
/// operators already run on every core; a second model at once on two cores
/// saved no time at 10 M events (8.5 s of models either way) and added its
/// tables and operators to the peak (1,010 MiB against 922 MiB).
fn models_at_once() -> usize {
    if let Some(n) = std::env::var("TENURE_MODELS_AT_ONCE").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        return n.max(1);
    }
    (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) / 2).clamp(1, 4)
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Pipeline(#[from] crate::config::PipelineChoiceError),
    #[error("{file}: {source}")]
    Selection {
        file: String,
        #[source]
        source: crate::catalog::CatalogError,
    },
    #[error("reading the SQL models stopped: {0}")]
    Loading(#[source] tokio::task::JoinError),
    #[error("model {model} stopped: {source}")]
    ModelStopped {
        model: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("model {model} was not built: the models it reads never finished (a cycle)")]
    NotBuilt { model: String },
    #[error("check {check} stopped: {source}")]
    CheckStopped {
        check: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Lease(#[from] crate::lease::HoldError),
    #[error("the ingest lease of the warehouse: {0}")]
    IngestLease(#[source] crate::lease::HoldError),
    #[error("the run took longer than its run_timeout_seconds ({} s) and was stopped before it published anything", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("ingest failed: {0}")]
    Ingest(#[from] ingest::IngestError),
    #[error("model {model} ({file}): {source}")]
    Model {
        model: String,
        file: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("check {check} failed: {rows} offending row(s), e.g. {examples}; nothing was published")]
    Check { check: String, rows: u64, examples: String },
    #[error("check {check} ({file}) could not run: {source}")]
    CheckError {
        check: String,
        file: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error("month close: {0}")]
    Close(#[from] crate::close::CloseError),
    #[error("the models cannot run on workers: the warehouse {warehouse} is in this process's memory; give workers a warehouse on a shared disk or object store")]
    WorkersNeedSharedStorage { warehouse: String },
    #[error("cannot keep rows for the next run: {0}")]
    State(#[source] incremental::StateError),
    #[error("the writer of the rows kept for the next run stopped: {0}")]
    StateStopped(#[source] tokio::task::JoinError),
    #[error("cannot read the {table} table: {source}")]
    Source {
        table: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
}

impl RunError {
    /// Configuration and SQL mistakes; retrying does not help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RunError::Pipeline(_)
                | RunError::Selection { .. }
                | RunError::NotBuilt { .. }
                | RunError::Catalog(_)
                | RunError::Model { .. }
                | RunError::Check { .. }
                | RunError::CheckError { .. }
                | RunError::TimedOut(_)
                | RunError::WorkersNeedSharedStorage { .. }
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub pipeline: Option<String>,
    pub as_of: Option<NaiveDate>,
    pub trigger: String,
    pub progress: bool,
    /// Build from the events already ingested (backfills ingest once, first).
    pub skip_ingest: bool,
    /// Ingest only; build nothing.
    pub ingest_only: bool,
    /// Recompute everything: keep no rows of earlier runs, and publish even
    /// when the inputs equal those of the latest run.
    pub full_refresh: bool,
}

/// A run that ended: its report, and where it was written (`None` when the
/// report could not be written; the run's tables are published all the same).
#[derive(Debug)]
pub struct Finished {
    pub report: RunReport,
    pub report_path: Option<String>,
}

/// A run that failed: why, and the run's report when it got far enough to
/// have one (every run that started writes its report, failed or not).
#[derive(Debug, thiserror::Error)]
#[error("{}", match &.finished {
    Some(f) => format!("run {} failed", f.report.run_id),
    None => "the run could not start".to_string(),
})]
pub struct RunFailed {
    pub finished: Option<Box<Finished>>,
    #[source]
    pub error: RunError,
}

impl From<RunError> for RunFailed {
    fn from(error: RunError) -> Self {
        RunFailed { finished: None, error }
    }
}

impl From<crate::storage::StorageError> for RunFailed {
    fn from(e: crate::storage::StorageError) -> Self {
        RunError::from(e).into()
    }
}

pub fn new_run_id(clock: &dyn Clock) -> String {
    let now = clock.now();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", now.format("%Y%m%dT%H%M%S%3fZ"), &suffix[..8])
}

/// Run a pipeline of `project` once, holding its lease (the one `tenure
/// schedule` takes) so that no two runs of one pipeline overlap, whoever
/// started them; fails at once when another process holds it.
pub async fn run_exclusive(project: &Project, opts: &RunOptions, clock: Arc<dyn Clock>) -> Result<Finished, RunFailed> {
    let pipeline = project.pipeline(opts.pipeline.as_deref()).map_err(RunError::from)?;
    let warehouse = Warehouse::of(&project.config)?;
    let store = crate::lease::LeaseStore::new(&warehouse, &pipeline.name, &crate::lease::holder_id(), project.config.scheduler.lease_ttl);
    crate::lease::hold(&store, clock.clone(), run(project, opts, clock.clone()))
        .await
        .map_err(RunError::from)?
}

/// Run a pipeline of `project` once, by a caller that holds its lease.
pub async fn run(project: &Project, opts: &RunOptions, clock: Arc<dyn Clock>) -> Result<Finished, RunFailed> {
    let config = &project.config;
    let pipeline = project.pipeline(opts.pipeline.as_deref()).map_err(RunError::from)?.clone();
    let storage = Storage::new(config.storage.clone());
    let raw = storage.location(&config.raw)?;
    let warehouse = Warehouse::open(&storage, &config.warehouse)?;
    let as_of = opts
        .as_of
        .unwrap_or_else(|| clock.now().with_timezone(&config.timezone).date_naive());
    let started = Instant::now();
    let report = RunReport::new(
        new_run_id(clock.as_ref()),
        &pipeline.name,
        if opts.trigger.is_empty() { "manual" } else { &opts.trigger },
        as_of,
        config,
        raw.display(),
        warehouse.display(),
        clock.now(),
    );
    tracing::info!(pipeline = %pipeline.name, run_id = %report.run_id, as_of = %as_of, timezone = %report.timezone, "run started");
    let mut run = Run {
        project,
        pipeline: &pipeline,
        opts,
        raw: &raw,
        warehouse: &warehouse,
        as_of,
        report,
        staging: publish::Staging::default(),
        clock: clock.clone(),
        publishing: Arc::new(AtomicBool::new(false)),
        current: Default::default(),
        close_lease: None,
    };
    let publishing = run.publishing.clone();
    let result = match pipeline.run_timeout {
        Some(limit) => within(limit, &publishing, run.steps()).await,
        None => run.steps().await,
    };
    if result.is_err() {
        run.staging.discard().await;
    }
    let close_lease = run.close_lease.take();
    let mut report = run.report;
    report.seconds = started.elapsed().as_secs_f64();
    report.finished_at = Some(clock.now().to_rfc3339());
    match &result {
        Ok(()) => report.status = RunStatus::Succeeded,
        Err(e) => {
            report.status = RunStatus::Failed;
            report.error = Some(error_chain(e));
        }
    }
    crate::failpoint("run:before_report");
    let report_path = match report.write(&warehouse).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %e, "run report not written");
            None
        }
    };
    // Closes are seen by the next close once the report is written.
    if let Some(lease) = close_lease {
        lease.release().await;
    }
    let finished = Finished { report, report_path };
    match result {
        Ok(()) => Ok(finished),
        Err(error) => Err(RunFailed {
            finished: Some(Box::new(finished)),
            error,
        }),
    }
}

/// Ingest under the warehouse's ingest lease, waiting while another run
/// holds it: runs of other pipelines (or a backfill) at the same time ingest
/// one after the other, each only what the others left, so no object or
/// event is ingested twice or lost.
pub async fn ingest_exclusively(
    raw: &Location,
    warehouse: &Warehouse,
    opts: &IngestOptions<'_>,
    lease_ttl: Duration,
    clock: Arc<dyn Clock>,
) -> Result<ingest::IngestReport, RunError> {
    let lease = LeaseStore::new(warehouse, INGEST_LEASE, &lease::holder_id(), lease_ttl);
    Ok(lease::hold_when_free(&lease, clock, INGEST_LEASE_POLL, ingest::ingest(raw, warehouse, opts))
        .await
        .map_err(RunError::IngestLease)??)
}

/// `steps`, stopped once `limit` has passed unless it is publishing by then
/// (publishing is short, and stopping it would publish some marts of the
/// run and not others).
async fn within(limit: Duration, publishing: &AtomicBool, steps: impl Future<Output = Result<(), RunError>>) -> Result<(), RunError> {
    tokio::pin!(steps);
    tokio::select! {
        done = &mut steps => return done,
        _ = tokio::time::sleep(limit) => {}
    }
    if publishing.load(Ordering::SeqCst) {
        steps.await
    } else {
        tracing::error!(limit_seconds = limit.as_secs_f64(), "run timed out; stopped before publishing");
        Err(RunError::TimedOut(limit))
    }
}

/// An error and its sources, outermost first.
pub fn error_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.iter().any(|o| o.contains(&text)) {
            out.push(text);
        }
        source = s.source();
    }
    out
}

/// One stage of a run on a terminal: a line with a bar while it runs, left
/// in place when it ends (nothing when not on a terminal, where the logs say
/// what happened).
struct Stage(Option<indicatif::ProgressBar>);

impl Stage {
    fn start(enabled: bool, name: &str, len: u64) -> Stage {
        if !enabled {
            return Stage(None);
        }
        let pb = indicatif::ProgressBar::new(len);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} {elapsed}") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(name.to_string());
        Stage(Some(pb))
    }

    fn bar(&self) -> Option<&indicatif::ProgressBar> {
        self.0.as_ref()
    }

    fn inc(&self) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish();
        }
    }
}

/// Each step's outcome in model order: its time, and what it built.
type BuiltModels = Vec<Option<(f64, Option<engine::Built>)>>;
/// A model's rows being kept for the next run.
type Keeping = Option<tokio::task::JoinHandle<Result<incremental::State, incremental::StateError>>>;

/// One run in progress: what it runs on and its report so far; one method per step.
struct Run<'a> {
    project: &'a Project,
    pipeline: &'a Pipeline,
    opts: &'a RunOptions,
    raw: &'a Location,
    warehouse: &'a Warehouse,
    as_of: NaiveDate,
    report: RunReport,
    /// Marts' files written before publishing; deleted if the run stops first.
    staging: publish::Staging,
    clock: Arc<dyn Clock>,
    /// Set when the first mart is committed: from then on the run finishes.
    publishing: Arc<AtomicBool>,
    /// The figures of the marts whose months close, as built.
    current: crate::close::Current,
    /// The close lease, held from the close until the report is written.
    close_lease: Option<lease::Held>,
}

/// What the models step leaves to the later ones: the checks started as
/// their models were built, and the incremental models' rows being kept.
struct Built {
    checking: Vec<Checking>,
    keeping: Vec<Keeping>,
}

impl Run<'_> {
    /// The steps in order; the first failure stops the run before anything is published.
    async fn steps(&mut self) -> Result<(), RunError> {
        let (catalog, runs) = self.read_models_and_history().await?;
        let models = select_models(&catalog, self.pipeline)?;
        // The kept rows of the likely base are read while ingest runs.
        let params = Params::from_config(&self.project.config, self.as_of);
        let shape = incremental::shape_fingerprint(&models, &params);
        let read_ahead = if self.opts.full_refresh || self.opts.ingest_only {
            incremental::ReadAhead::default()
        } else {
            let by_day: Vec<&str> = models.iter().filter(|m| m.by_day).map(|m| m.name.as_str()).collect();
            incremental::ReadAhead::start(&runs, &self.pipeline.name, &shape, self.as_of, self.warehouse, &by_day)
        };
        if self.pipeline.ingest && !self.opts.skip_ingest {
            self.ingest(&runs).await?;
        }
        if self.opts.ingest_only {
            return Ok(());
        }
        let ctx = engine::session_with_memory(self.project.config.engine_memory);
        let workers = &self.project.config.engine_workers;
        let cluster = (!workers.is_empty()).then(|| crate::cluster::Cluster::new(workers));
        let sources = register_sources(&ctx, self.warehouse, cluster.is_some()).await?;
        let inputs = inputs_fingerprint(sources.events_version, &models, &params);
        self.report.inputs = Some(inputs.clone());
        self.report.shape = Some(shape.clone());
        self.report.ingest_sequence = Some(sources.ingest_sequence);
        if let Some(prior) = unchanged_since(&runs, &inputs).filter(|_| !self.opts.full_refresh) {
            tracing::info!(run_id = %prior.run_id, "inputs unchanged since that run; tables stay as published");
            self.report.steps.push(Step {
                name: format!("unchanged since {}", prior.run_id),
                seconds: 0.0,
                rows: None,
            });
            return Ok(());
        }
        let plan = self.plan(&models, &runs, &shape, &params, sources.ingest_sequence).await;
        engine::register_params(&ctx, &params, plan.rebuild_from).map_err(|source| RunError::Source {
            table: "params".into(),
            source,
        })?;
        let executor = Executor::new(&ctx, cluster).await;
        let built = self.build_models(&executor, &catalog, &models, &plan, &read_ahead).await;
        self.report.engine = executor.report();
        let built = built?;
        self.check(&catalog, built.checking).await?;
        self.keep_state(built.keeping).await?;
        self.publish(&ctx).await
    }

    /// The SQL models and the run history (late events, unchanged inputs,
    /// the incremental plan), read at the same time.
    async fn read_models_and_history(&self) -> Result<(Catalog, Vec<RunReport>), RunError> {
        let loading = tokio::task::spawn_blocking({
            let dir = self.project.config.sql_dir.clone();
            move || Catalog::load(&dir)
        });
        let runs = history::list(self.warehouse).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "run history unreadable; late events are not counted and every model is rebuilt");
            Vec::new()
        });
        let catalog = loading.await.map_err(RunError::Loading)??;
        Ok((catalog, runs))
    }

    /// 1. Ingest the raw objects not ingested before.
    async fn ingest(&mut self, runs: &[RunReport]) -> Result<(), RunError> {
        let config = &self.project.config;
        let t = Instant::now();
        let stage = Stage::start(self.opts.progress, "ingest", 0);
        let opts = IngestOptions {
            run_id: &self.report.run_id,
            timezone: config.timezone,
            currency: &config.currency,
            max_reject_rate: config.max_reject_rate,
            parallelism: config.parallelism,
            limits: config.ingest_limits,
            progress: stage.bar(),
            // Half the models' pool: ingest's own buffers (objects being
            // decoded, row groups being encoded) come on top of the index.
            key_memory: config.engine_memory.map(|bytes| bytes / 2),
            late_before: history::latest_as_of(runs),
        };
        let ingest_report = ingest_exclusively(self.raw, self.warehouse, &opts, config.scheduler.lease_ttl, self.clock.clone()).await?;
        self.report.steps.push(Step {
            name: "ingest".into(),
            seconds: t.elapsed().as_secs_f64(),
            rows: Some(ingest_report.totals.accepted),
        });
        self.report.ingest = Some(ingest_report);
        Ok(())
    }

    /// What this run recomputes, recorded in the report.
    async fn plan(&mut self, models: &[&Model], runs: &[RunReport], shape: &str, params: &Params, sequence: i64) -> incremental::Plan {
        let plan = if self.opts.full_refresh {
            incremental::Plan::full("--full-refresh")
        } else {
            incremental_plan(self.warehouse, &self.pipeline.name, models, runs, shape, params, sequence).await
        };
        match &plan.base {
            Some(base) => {
                tracing::info!(rebuild_from = %plan.rebuild_from, rebuild_from_day = %plan.rebuild_from_day, base = %base.run_id, "incremental run: rows before rebuild_from are kept");
                self.report.rebuild_from = Some(plan.rebuild_from.to_string());
                self.report.rebuild_from_day = Some(plan.rebuild_from_day.to_string());
                self.report.kept_rows_of = Some(base.run_id.clone());
            }
            None => {
                let because = plan.full_because.clone().unwrap_or_default();
                tracing::info!(because = %because, "every model is rebuilt");
                self.report.full_rebuild_because = Some(because);
            }
        }
        plan
    }

    /// 2. Build the models. Models whose inputs are built run at the same
    /// time, a few at once, so that the serial parts of one (planning, a
    /// final merge or sort on one partition, the fixed cost of a small model)
    /// overlap another's work; the mart files, the rows kept for the next run
    /// and the checks start as soon as their models are built. Steps are
    /// reported in catalog order all the same.
    async fn build_models(
        &mut self,
        executor: &Executor,
        catalog: &Catalog,
        models: &[&Model],
        plan: &incremental::Plan,
        read_ahead: &incremental::ReadAhead,
    ) -> Result<Built, RunError> {
        let ctx = executor.local();
        let limit = models_at_once();
        let stage = Stage::start(self.opts.progress, "models", models.len() as u64);
        let models_started = Instant::now();
        let selected: std::collections::BTreeSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let mut built_names = std::collections::BTreeSet::new();
        let mut outcomes: BuiltModels = models.iter().map(|_| None).collect();
        let mut started = vec![false; models.len()];
        let mut running = futures::stream::FuturesUnordered::new();
        let mut built = Built {
            checking: catalog.checks.iter().map(|_| None).collect(),
            keeping: models.iter().map(|_| None).collect(),
        };
        let start_order = critical_first(models);
        let mut readers = Readers::new(models, &catalog.checks);
        loop {
            for &i in &start_order {
                let model = models[i];
                if running.len() >= limit {
                    break;
                }
                let ready = model.depends_on.iter().all(|d| !selected.contains(d.as_str()) || built_names.contains(d));
                if started[i] || !ready {
                    continue;
                }
                started[i] = true;
                let warehouse = self.warehouse;
                running.push(async move {
                    let t = Instant::now();
                    let (built, keep) = build_model(executor, warehouse, model, plan, read_ahead).await?;
                    Ok::<_, RunError>((i, t.elapsed().as_secs_f64(), built, keep))
                });
            }
            let Some(finished) = running.next().await else { break };
            let (i, seconds, model_built, keep) = finished?;
            let model = models[i];
            stage.inc();
            tracing::debug!(model = %model.name, rows = model_built.as_ref().map_or(0, |b| b.rows), seconds, "model built");
            if let (Some(b), Some((key, reused, unsaved))) = (&model_built, keep) {
                let (warehouse, pipeline, run_id, name, schema) =
                    (self.warehouse.clone(), self.pipeline.name.clone(), self.report.run_id.clone(), model.name.clone(), b.schema.clone());
                built.keeping[i] = Some(tokio::spawn(async move {
                    incremental::write_state(&warehouse, &pipeline, &run_id, &name, &key, schema, unsaved, reused).await
                }));
            }
            // A mart's files are written now, committed once every check passed.
            if let (Layer::Marts, Some(b)) = (model.layer, &model_built) {
                self.current.offer(&model.name, b.schema.clone(), &b.batches);
                let location = self.warehouse.mart(&model.name);
                let layout = model.incremental.as_ref().map(|key| incremental::layout(plan, model, key, self.as_of));
                self.staging.start(publish::stage(location, model.name.clone(), i, b.schema.clone(), b.batches.clone(), layout));
            }
            built_names.insert(model.name.clone());
            outcomes[i] = Some((seconds, model_built.map(|b| if model.layer == Layer::Marts { b } else { b.rows_only() })));
            for name in readers.built(model) {
                // Nothing left reads it: its rows go (the report keeps the count).
                ctx.deregister_table(name.as_str()).map_err(|source| RunError::Source { table: name, source })?;
            }
            start_ready_checks(ctx, &catalog.checks, &built_names, &mut built.checking);
        }
        drop(running);
        // Checks that read none of the models start now.
        start_ready_checks(ctx, &catalog.checks, &built_names, &mut built.checking);
        // The wall time of all models; their own times overlap.
        self.report.steps.push(Step {
            name: "models".into(),
            seconds: models_started.elapsed().as_secs_f64(),
            rows: None,
        });
        for (model, outcome) in models.iter().zip(outcomes) {
            let Some((seconds, built)) = outcome else {
                return Err(RunError::NotBuilt { model: model.name.clone() });
            };
            self.report.steps.push(Step {
                name: format!("model:{}", model.name),
                seconds,
                rows: built.as_ref().map(|b| b.rows as u64),
            });
        }
        Ok(built)
    }

    /// 3. The checks, before anything is published: started as their models
    /// were built (a check whose models were not all built does not run).
    /// The step is the wait that remains.
    async fn check(&mut self, catalog: &Catalog, mut checking: Vec<Checking>) -> Result<(), RunError> {
        let t = Instant::now();
        for (check, handle) in catalog.checks.iter().zip(checking.iter_mut()) {
            let Some(handle) = handle.take() else { continue };
            let result = handle.await.map_err(|source| RunError::CheckStopped {
                check: check.name.clone(),
                source,
            })??;
            let failed = (!result.passed).then(|| RunError::Check {
                check: result.name.clone(),
                rows: result.failing_rows,
                examples: result.examples.join("; "),
            });
            self.report.checks.push(result);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        if !catalog.checks.is_empty() {
            self.report.steps.push(Step {
                name: "checks".into(),
                seconds: t.elapsed().as_secs_f64(),
                rows: None,
            });
        }
        Ok(())
    }

    /// 4. The rows of the incremental models kept for the next run, written
    /// since each was built: before publishing, so that a run whose report
    /// lists tables always kept them. The step is the wait that remains.
    async fn keep_state(&mut self, keeping: Vec<Keeping>) -> Result<(), RunError> {
        let t = Instant::now();
        let keeping: Vec<_> = keeping.into_iter().flatten().collect();
        if keeping.is_empty() {
            return Ok(());
        }
        for handle in keeping {
            let kept = handle.await.map_err(RunError::StateStopped)?.map_err(RunError::State)?;
            self.report.state.push(kept);
        }
        self.report.steps.push(Step {
            name: "state".into(),
            seconds: t.elapsed().as_secs_f64(),
            rows: None,
        });
        Ok(())
    }

    /// 5. Publish: the files of every mart are written first (most while
    /// later models ran), so that a mart that cannot be written stops the
    /// run before any is published. Marts are independent tables, each its
    /// own commit, a few at a time; the report lists them in catalog order,
    /// then `events` and `rejects` when this run appended to them.
    async fn publish(&mut self, ctx: &SessionContext) -> Result<(), RunError> {
        let t = Instant::now();
        let staged = self.staging.finish().await?;
        self.publishing.store(true, Ordering::SeqCst);
        let stage = Stage::start(self.opts.progress, "publish", staged.len() as u64);
        let run_id = &self.report.run_id;
        let publishing = staged.into_iter().map(|staged| {
            let stage = &stage;
            let order = staged.order();
            async move {
                crate::failpoint(&format!("publish:{}", staged.name()));
                let published = publish::commit(staged, run_id).await?;
                tracing::debug!(table = %published.name, version = published.version, rows = published.rows, "table published");
                stage.inc();
                Ok::<_, RunError>((order, published))
            }
        });
        let mut published: Vec<(usize, publish::Published)> =
            futures::stream::iter(publishing).buffer_unordered(PUBLISH_AT_ONCE).try_collect().await?;
        drop(stage);
        published.sort_by_key(|(order, _)| *order);
        self.report.tables.extend(published.into_iter().map(|(_, p)| p));
        self.report.steps.push(Step {
            name: "publish".into(),
            seconds: t.elapsed().as_secs_f64(),
            rows: None,
        });
        if self.current.is_whole() {
            self.close(ctx).await?;
        }
        // The older state is stale once this run's tables are published.
        if !self.report.state.is_empty() {
            incremental::prune_state(self.warehouse, &self.pipeline.name, &self.report.state).await;
        }
        if let Some(ing) = &self.report.ingest {
            let appended = [
                (EVENTS, self.warehouse.events(), ing.events_version),
                (REJECTS, self.warehouse.rejects(), ing.rejects_version),
            ];
            for (name, location, version) in appended {
                let Some(version) = version else { continue };
                // The table's whole row count (this run appended
                // `ingest.totals.accepted` / `rejected` of them).
                let rows = table_rows(ctx, name).await.map_err(|source| RunError::Source {
                    table: name.into(),
                    source,
                })?;
                self.report.tables.push(publish::Published {
                    name: name.into(),
                    location: location.display(),
                    version,
                    rows,
                });
            }
        }
        Ok(())
    }
}

impl Run<'_> {
    /// 6. Close the months that are due (METRICS.md §12) with this run's
    /// figures and rebuild `restatements`, under the warehouse's close
    /// lease, kept until the report is written.
    async fn close(&mut self, ctx: &SessionContext) -> Result<(), RunError> {
        let t = Instant::now();
        let store = LeaseStore::new(self.warehouse, crate::close::CLOSE_LEASE, &lease::holder_id(), self.project.config.scheduler.lease_ttl);
        let held = lease::acquire_when_free(&store, self.clock.clone(), INGEST_LEASE_POLL).await.map_err(crate::close::CloseError::from)?;
        let closing = crate::close::Closing {
            warehouse: self.warehouse,
            ctx,
            run_id: &self.report.run_id,
            as_of: self.as_of,
            shape: self.report.shape.as_deref(),
            mode: crate::close::Mode::Due {
                after_days: self.project.config.close_after_days,
            },
        };
        let outcome = crate::close::close(&closing, &self.current).await;
        self.close_lease = Some(held);
        let outcome = outcome?;
        if self.close_lease.as_ref().is_some_and(|l| l.is_lost()) {
            return Err(crate::close::CloseError::LeaseLost.into());
        }
        self.report.tables.extend(outcome.published);
        self.report.closes = outcome.closed;
        self.report.restated = outcome.restated;
        self.report.steps.push(Step {
            name: "close".into(),
            seconds: t.elapsed().as_secs_f64(),
            rows: None,
        });
        Ok(())
    }
}

/// The models `pipeline` builds: those it names and every model they read.
pub fn select_models<'c>(catalog: &'c Catalog, pipeline: &Pipeline) -> Result<Vec<&'c Model>, RunError> {
    catalog.select(&pipeline.models).map_err(|source| RunError::Selection {
        file: pipeline.file.display().to_string(),
        source,
    })
}

/// Build one model: plan and run its SQL and, for an incremental model,
/// read the rows it keeps meanwhile and merge them in. Returns what it built
/// and, for an incremental model, its date column and what to keep of it.
async fn build_model(
    executor: &Executor,
    warehouse: &Warehouse,
    model: &Model,
    plan: &incremental::Plan,
    read_ahead: &incremental::ReadAhead,
) -> Result<(Option<engine::Built>, Option<(String, Vec<incremental::StatePart>, Vec<arrow::array::RecordBatch>)>), RunError> {
    let model_err = |source| RunError::Model {
        model: model.name.clone(),
        file: model.file.display().to_string(),
        source,
    };
    let ctx = executor.local();
    // On a task of its own, so that two models' own polling runs on two threads.
    let building = tokio::spawn({
        // A model incremental by day plans in a session where
        // `tenure_rebuild_from()` is its own date.
        let from = (plan.rebuild_from_of(model) != plan.rebuild_from).then(|| plan.rebuild_from_of(model));
        let (executor, model) = (executor.clone(), model.clone());
        async move { executor.build(&model, from).await }
    });
    // The rows an incremental model keeps are read meanwhile.
    let reading = async {
        match &model.incremental {
            Some(key) => incremental::read_kept(ctx, warehouse, model, key, plan, read_ahead).await,
            None => Ok(None),
        }
    };
    let (built, kept) = tokio::join!(building, reading);
    let built = built
        .map_err(|source| RunError::ModelStopped {
            model: model.name.clone(),
            source,
        })?
        .map_err(model_err)?;
    let kept = kept.map_err(model_err)?;
    match (&model.incremental, built) {
        (Some(key), Some(b)) => {
            let merged = incremental::merge(ctx, model, key, plan, b, kept).map_err(model_err)?;
            Ok((Some(merged.built), Some((key.clone(), merged.reused, merged.unsaved))))
        }
        (_, built) => Ok((built, None)),
    }
}

async fn table_rows(ctx: &datafusion::prelude::SessionContext, table: &str) -> datafusion::error::Result<u64> {
    let batches = ctx.table(table).await?.count().await?;
    Ok(batches as u64)
}

/// Who still reads each intermediate table of a run: a table model that is
/// no mart, that no check reads, is released once every model reading it is
/// built, so that a run holds only the tables later models still need (the
/// marts stay: they are published, closed and checked at the end).
struct Readers {
    /// Per releasable table: the selected models that read it, not built yet.
    waiting: std::collections::BTreeMap<String, usize>,
}

impl Readers {
    fn new(models: &[&Model], checks: &[crate::catalog::Check]) -> Readers {
        let checked: std::collections::BTreeSet<&str> = checks.iter().flat_map(|c| c.depends_on.iter().map(String::as_str)).collect();
        let mut waiting: std::collections::BTreeMap<String, usize> = models
            .iter()
            .filter(|m| m.materialized == crate::catalog::Materialized::Table && m.layer != Layer::Marts && !checked.contains(m.name.as_str()))
            .map(|m| (m.name.clone(), 0))
            .collect();
        for m in models {
            for d in &m.depends_on {
                if let Some(n) = waiting.get_mut(d) {
                    *n += 1;
                }
            }
        }
        Readers { waiting }
    }

    /// `model` is built: the tables nothing reads any more (itself, if no
    /// model reads it).
    fn built(&mut self, model: &Model) -> Vec<String> {
        for d in &model.depends_on {
            if let Some(n) = self.waiting.get_mut(d) {
                *n = n.saturating_sub(1);
            }
        }
        let done: Vec<String> =
            model.depends_on.iter().chain([&model.name]).filter(|n| self.waiting.get(n.as_str()) == Some(&0)).cloned().collect();
        for name in &done {
            self.waiting.remove(name);
        }
        done
    }
}

/// The order in which models that are ready start: those with the longest
/// chain of models waiting on them first (then in catalog order), so that a
/// free slot goes to the model that holds up the most work rather than to a
/// mart nothing reads.
fn critical_first(models: &[&Model]) -> Vec<usize> {
    let index: std::collections::BTreeMap<&str, usize> = models.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect();
    // chain[i]: the most models on any path from model i to a model nothing reads.
    let mut chain = vec![1usize; models.len()];
    // Relaxed once per model at most: a cycle (reported when the run stalls) cannot loop.
    for _ in 0..models.len() {
        let mut changed = false;
        for (j, m) in models.iter().enumerate() {
            for d in m.depends_on.iter().filter_map(|d| index.get(d.as_str())) {
                if chain[*d] < chain[j] + 1 && chain[j] < models.len() {
                    chain[*d] = chain[j] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(chain[i]), i));
    order
}

/// The latest succeeded run that published tables, if its inputs equal `inputs`:
/// then this run would publish the same content, and commits nothing.
fn unchanged_since(runs: &[report::RunReport], inputs: &str) -> Option<report::RunReport> {
    let latest = runs.iter().rev().find(|r| r.succeeded() && r.inputs.is_some())?;
    (latest.inputs.as_deref() == Some(inputs)).then(|| latest.clone())
}

/// A running check's result.
type Checking = Option<tokio::task::JoinHandle<Result<CheckResult, RunError>>>;

/// Start each check not started yet whose models are all built.
fn start_ready_checks(
    ctx: &datafusion::prelude::SessionContext,
    checks: &[crate::catalog::Check],
    built: &std::collections::BTreeSet<String>,
    checking: &mut [Checking],
) {
    for (check, slot) in checks.iter().zip(checking.iter_mut()) {
        if slot.is_none() && check.depends_on.iter().all(|d| built.contains(d)) {
            *slot = Some(tokio::spawn(run_check(ctx.clone(), check.clone())));
        }
    }
}

/// Run one data check: the rows it returns break its rule.
async fn run_check(ctx: datafusion::prelude::SessionContext, check: crate::catalog::Check) -> Result<CheckResult, RunError> {
    let err = |source| RunError::CheckError {
        check: check.name.clone(),
        file: check.file.display().to_string(),
        source,
    };
    let df = ctx.sql_with_options(&check.sql, engine::read_only()).await.map_err(err)?;
    let batches = df.collect().await.map_err(err)?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    Ok(CheckResult {
        name: check.name,
        passed: rows == 0,
        failing_rows: rows,
        examples: examples(&batches, 3),
    })
}

/// What this run recomputes (see `incremental`): the current versions of the
/// incremental marts are compared with those the base run published.
async fn incremental_plan(
    warehouse: &Warehouse,
    pipeline: &str,
    models: &[&crate::catalog::Model],
    runs: &[report::RunReport],
    shape: &str,
    params: &Params,
    sequence: i64,
) -> incremental::Plan {
    let carried: Vec<&str> = models
        .iter()
        .filter(|m| m.incremental.is_some() && m.layer != Layer::Marts)
        .map(|m| m.name.as_str())
        .collect();
    // Each mart's log is read on its own: all at once, not one after another.
    let opening = models.iter().filter(|m| m.incremental.is_some() && m.layer == Layer::Marts).map(|m| async move {
        (m.name.clone(), open_delta_table(&warehouse.mart(&m.name)).await)
    });
    let mut versions = std::collections::BTreeMap::new();
    for (name, opened) in futures::future::join_all(opening).await {
        match opened {
            Ok(t) => versions.insert(name, t.version().map(|v| v as i64)),
            Err(e) => return incremental::Plan::full(format!("cannot open mart {name}: {e}")),
        };
    }
    if versions.is_empty() && carried.is_empty() {
        return incremental::Plan::full("no model is incremental");
    }
    let tz: chrono_tz::Tz = params.timezone.parse().unwrap_or(chrono_tz::UTC);
    let manifest = ingest::Manifest::new(warehouse.ingest_manifest());
    incremental::plan(runs, pipeline, shape, params.as_of, tz, sequence, &manifest, &versions, &carried, warehouse).await
}

/// What a run's tables are a function of: the `events` version, the SQL of
/// the models, and the run parameters. Two runs with the same fingerprint
/// publish the same content.
pub fn inputs_fingerprint(events_version: i64, models: &[&crate::catalog::Model], params: &Params) -> String {
    let mut text = format!("events@{events_version}\n{params:?}\n");
    for m in models {
        text.push_str(&m.name);
        text.push('\n');
        text.push_str(&m.sql);
    }
    incremental::xxh3_hex(text.as_bytes())
}

/// What `register_sources` registered.
pub struct Sources {
    pub events_version: i64,
    /// The last ingest sequence committed to that version of `events`.
    pub ingest_sequence: i64,
}

/// Register `events` and `rejects` (Delta) in a session, creating them empty
/// if no run has ingested yet. `as_files`, for a run whose models run on
/// workers: as Parquet scans of the data files of the versions read, which
/// the distributed planner splits among the workers and the workers read
/// themselves. Delta's own scan cannot travel to a worker; tenure writes
/// both tables unpartitioned, without deletion vectors or column mapping, so
/// their files are their rows. Each keeps the schema the Delta scan gives,
/// so a model plans the same either way.
pub async fn register_sources(ctx: &SessionContext, warehouse: &Warehouse, as_files: bool) -> Result<Sources, RunError> {
    let (events, rejects) = tokio::try_join!(warehouse.open_events(), warehouse.open_rejects())?;
    let sources = Sources {
        events_version: events.version().unwrap_or(0) as i64,
        ingest_sequence: ingest::committed_sequence(&events, &warehouse.events()).await?,
    };
    if as_files {
        let root = warehouse.root();
        if root.url.scheme() == "memory" {
            return Err(RunError::WorkersNeedSharedStorage { warehouse: root.display() });
        }
        let mut store_url = root.url.clone();
        store_url.set_path("");
        store_url.set_query(None);
        ctx.register_object_store(&store_url, root.store.clone());
    }
    for (name, table) in [(EVENTS, events), (REJECTS, rejects)] {
        let err = |source| RunError::Source {
            table: name.into(),
            source,
        };
        let external = |e: deltalake::DeltaTableError| err(datafusion::error::DataFusionError::External(Box::new(e)));
        table.update_datafusion_session(&ctx.state()).map_err(external)?;
        // The session's Parquet settings decide whether filters are applied
        // while decoding (off by default): without the session, the scan pushes
        // each filter into the Parquet reader a second time, beside the one
        // DataFusion pushes there, and every row is tested twice.
        let provider = table.table_provider().with_session(Arc::new(ctx.state())).await.map_err(err)?;
        let provider: Arc<dyn datafusion::datasource::TableProvider> = match as_files {
            false => provider,
            true => {
                let files: Vec<String> = table.get_file_uris().map_err(external)?.collect();
                files_of(provider.schema(), files).map_err(err)?
            }
        };
        ctx.register_table(name, provider).map_err(err)?;
    }
    Ok(sources)
}

/// A Parquet scan of `files` (URIs) read as `schema`; an empty table when
/// there are none.
fn files_of(schema: arrow::datatypes::SchemaRef, files: Vec<String>) -> datafusion::error::Result<Arc<dyn datafusion::datasource::TableProvider>> {
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    if files.is_empty() {
        return Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?));
    }
    let files = files.iter().map(ListingTableUrl::parse).collect::<datafusion::error::Result<Vec<_>>>()?;
    let format = datafusion::datasource::file_format::parquet::ParquetFormat::default();
    let config = ListingTableConfig::new_with_multi_paths(files)
        .with_listing_options(ListingOptions::new(Arc::new(format)).with_file_extension(".parquet"))
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn examples(batches: &[arrow::array::RecordBatch], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        for row in 0..b.num_rows() {
            if out.len() >= n {
                return out;
            }
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| {
                    let v = arrow::util::display::array_value_to_string(b.column(c), row).unwrap_or_default();
                    format!("{}={}", schema.field(c).name(), v)
                })
                .collect();
            out.push(cells.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use object_store::ObjectStoreExt;

    /// Ingests of one warehouse at the same time (two pipelines, or a run
    /// and a backfill): every raw event lands exactly once, every object is
    /// in the manifest once, and nothing is left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_ingests_land_every_event_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::new(Default::default());
        let memory = format!("memory:///concurrent-{}", uuid::Uuid::new_v4().simple());
        for (raw_url, warehouse_url) in [
            (dir.path().join("raw").display().to_string(), dir.path().join("warehouse").display().to_string()),
            (format!("{memory}/raw"), format!("{memory}/warehouse")),
        ] {
            let raw = storage.location(&raw_url).expect("raw");
            let warehouse = Warehouse::open(&storage, &warehouse_url).expect("warehouse");
            let mut expected = 0u64;
            for round in 0..4 {
                for object in 0..3 {
                    let lines: Vec<String> = (0..5)
                        .map(|i| format!(r#"{{"event_id":"e{round}-{object}-{i}","event_type":"usage.login","customer_id":"c{i}","occurred_at":"2026-03-0{}T10:00:00Z","user_id":"u1"}}"#, object + 1))
                        .collect();
                    let path = raw.path(&format!("day{round}/part{object}.jsonl"));
                    raw.store.put(&path, lines.join("\n").into_bytes().into()).await.expect("put");
                    expected += 5;
                }
                let ingest = |run_id: &'static str| {
                    let (raw, warehouse) = (raw.clone(), warehouse.clone());
                    async move {
                        let opts = IngestOptions {
                            run_id,
                            timezone: chrono_tz::UTC,
                            currency: "USD",
                            max_reject_rate: 1.0,
                            parallelism: 2,
                            progress: None,
                            limits: Default::default(),
                            key_memory: None,
                            late_before: None,
                        };
                        ingest_exclusively(&raw, &warehouse, &opts, Duration::from_secs(30), Arc::new(SystemClock)).await
                    }
                };
                let (a, b) = tokio::join!(tokio::spawn(ingest("run-a")), tokio::spawn(ingest("run-b")));
                let (a, b) = (a.expect("joined").expect("ingest a"), b.expect("joined").expect("ingest b"));
                let sequences: Vec<i64> = [a.sequence, b.sequence].into_iter().flatten().collect();
                assert_eq!(sequences, [round + 1], "{warehouse_url}: one of the two ingests the round's objects");
                assert_eq!(a.totals.accepted + b.totals.accepted, 15);
            }
            let events = warehouse.open_events().await.expect("events");
            let ctx = SessionContext::new();
            ctx.register_table("events", events.table_provider().await.expect("provider")).expect("register");
            let counted = ctx.sql("select count(*) as n, count(distinct event_id) as d from events").await.expect("sql").collect().await.expect("count");
            let column = |i: usize| counted[0].column(i).as_any().downcast_ref::<Int64Array>().expect("int").value(0) as u64;
            assert_eq!((column(0), column(1)), (expected, expected), "{warehouse_url}: each event once");
            let manifest = ingest::Manifest::new(warehouse.ingest_manifest());
            let committed = manifest.load_committed(4).await.expect("manifest");
            assert_eq!(committed.objects.len(), 12);
            // One key segment per sequence: a loser leaves none behind.
            let segments: Vec<_> = warehouse.ingest_manifest().store.list(Some(&warehouse.ingest_manifest().join("keys").prefix)).try_collect().await.expect("list");
            assert_eq!(segments.len(), 4, "{warehouse_url}: {segments:?}");
        }
    }

    #[test]
    fn models_on_the_longest_chain_start_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str, sql: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, sql).expect("write");
        };
        // a <- leaf (a mart nothing reads); a <- b <- c <- d.
        write("staging/a.sql", "select * from events");
        write("marts/leaf.sql", "select * from a");
        write("intermediate/b.sql", "select * from a");
        write("intermediate/c.sql", "select * from b");
        write("marts/d.sql", "select * from c");
        let catalog = Catalog::load(dir.path()).expect("catalog");
        let models: Vec<&Model> = catalog.models.iter().collect();
        let names: Vec<&str> = critical_first(&models).into_iter().map(|i| models[i].name.as_str()).collect();
        // leaf and d both end a chain: catalog order between them.
        assert_eq!(names, ["a", "b", "c", "leaf", "d"]);
        let catalog_order: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_ne!(catalog_order, names, "the catalog alone would start the leaf earlier");
    }
}
