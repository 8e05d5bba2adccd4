//! `tenure schedule`: a long-running daemon that runs every pipeline with a
//! `schedule` on its cron schedule, with trigger `scheduled` and `as_of` the
//! fire time's local date in the reporting timezone.
//!
//! - **Firing**: one job per pipeline on tokio-cron-scheduler. The fire times
//!   themselves are computed here ([`cron`], on the injected clock) and each
//!   job is a one-shot at the next one, re-armed after it fires. The crate's
//!   own repeating cron jobs are not used: in 0.15 they keep the UTC offset of
//!   the moment the job was created (an hour off after a DST change until
//!   restart) and require day-of-month AND day-of-week where cron means OR.
//! - **No overlap**: one worker per pipeline runs its slots one after
//!   another, and a lease in the warehouse ([`lease`]) keeps other processes
//!   and machines out; the lease also records the newest slot handled, so a
//!   slot run by one scheduler is skipped by the others.
//! - **Retries**: transient failures retry with exponential backoff and
//!   jitter (`retries`, `retry_backoff_seconds` in the pipeline file);
//!   permanent ones ([`RunError::is_permanent`](crate::pipeline::RunError::is_permanent)) do not.
//! - **Catch-up**: at start, the newest fire time covered by a successful run
//!   in the run history is compared with now, and the
//!   missed fire times are run per the pipeline's `catch_up` ([`plan::due`]);
//!   fires missed while a long run was in progress are treated the same way.
//! - **Stopping**: on SIGTERM/SIGINT no new run starts; a run in progress
//!   gets the grace period to finish, else it is dropped (between Delta
//!   commits, so nothing is half-published); the lease is released.
//! - **Health**: `/healthz` and `/metrics` ([`health`]); `/healthz` turns
//!   unhealthy when a pipeline's last success is older than twice its
//!   schedule interval.
//! - **Vacuum**: after a successful run, once a fire time of `vacuum.schedule`
//!   has passed since the last vacuum recorded in the warehouse, the worker
//!   vacuums ([`VacuumJob`]) after releasing its lease. Vacuum takes no
//!   lease: it deletes only what is older than its retention window, which
//!   no run in progress (of this or another pipeline) writes or reads.
//!
//! The decisions are pure functions of times ([`plan`], [`cron`],
//! [`lease::decide`]); this module wires them to the clock, the store and the
//! runs. It never reads wall time itself: the [`Clock`] does.

pub mod cron;
pub mod health;
pub mod plan;

use crate::config::{CatchUp, Config, Pipeline, Project};
use crate::pipeline::history::HistoryError;
use crate::pipeline::report::RunReport;
use crate::pipeline::{self, Clock, RunOptions, SystemClock};
use crate::storage::StorageError;
use crate::warehouse::Warehouse;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use cron::CronSchedule;
use health::Metrics;
use crate::lease::{self, Acquire, Lease, LeaseStore};
use plan::{RetryPolicy, Slot};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{file}: schedule: {message}")]
    Schedule { file: String, message: String },
    #[error("{dir}: no pipeline has a schedule; add one such as `schedule = \"0 6 * * *\"` to a pipeline file")]
    NothingScheduled { dir: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}; the scheduler reads it to catch up on missed runs")]
    History(#[from] HistoryError),
    #[error("cannot listen on {addr} for the health endpoint: {source}; choose another address with --health-listen or scheduler.health_listen")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the job scheduler: {0}")]
    Jobs(String),
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's name on the leases.
    pub holder: String,
    /// Where the health endpoint listens; `None`: no endpoint.
    pub health_listen: Option<SocketAddr>,
    /// How long a run in progress may take to finish after a stop request.
    pub grace_period: Duration,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often to look again at a lease someone else holds.
    pub lease_poll: Duration,
}

impl Options {
    /// From `[scheduler]` in the config, `health_listen` overriding it.
    pub fn from_config(config: &Config, health_listen: Option<SocketAddr>) -> Self {
        Options {
            holder: lease::holder_id(),
            health_listen: Some(health_listen.unwrap_or(config.scheduler.health_listen)),
            grace_period: config.scheduler.grace_period,
            lease_ttl: config.scheduler.lease_ttl,
            lease_poll: Duration::from_secs(2),
        }
    }
}

/// The result of one attempt at a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempt {
    pub run_id: Option<String>,
    pub seconds: f64,
    pub rows_ingested: u64,
    pub error: Option<AttemptError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptError {
    pub message: String,
    /// Retrying does not help.
    pub permanent: bool,
    /// The run passed its `run_timeout_seconds`.
    pub timed_out: bool,
}

/// Runs one pipeline once: [`PipelineRunner`] in the daemon, fakes in tests.
#[async_trait(?Send)]
pub trait Runner {
    async fn run(&self, pipeline: &str, as_of: NaiveDate) -> Attempt;
}

/// The real runner: [`pipeline::run`] with trigger `scheduled`.
pub struct PipelineRunner<'a> {
    pub project: &'a Project,
    pub clock: Arc<dyn Clock>,
}

#[async_trait(?Send)]
impl Runner for PipelineRunner<'_> {
    async fn run(&self, pipeline: &str, as_of: NaiveDate) -> Attempt {
        let opts = RunOptions {
            pipeline: Some(pipeline.to_string()),
            as_of: Some(as_of),
            trigger: "scheduled".into(),
            progress: false,
            ..Default::default()
        };
        let error = |e: &pipeline::RunError| AttemptError {
            message: pipeline::error_chain(e).join(": "),
            permanent: e.is_permanent(),
            timed_out: matches!(e, pipeline::RunError::TimedOut(_)),
        };
        let attempt = |report: &pipeline::report::RunReport, error| Attempt {
            run_id: Some(report.run_id.clone()),
            seconds: report.seconds,
            rows_ingested: report.ingest.as_ref().map_or(0, |i| i.totals.accepted),
            error,
        };
        match pipeline::run(self.project, &opts, self.clock.clone()).await {
            Ok(finished) => {
                let wanted = self.project.pipelines.iter().any(|p| p.name == pipeline && p.report);
                if wanted && !finished.report.tables.is_empty() {
                    // The run has published: a report that cannot be
                    // written is an operator's warning, not a failed run.
                    let written = match crate::warehouse::Warehouse::of(&self.project.config) {
                        Ok(warehouse) => crate::report::publish(&warehouse, &finished.report).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match written {
                        Ok(()) => tracing::info!(pipeline, run_id = %finished.report.run_id, "finance report written"),
                        Err(error) => tracing::warn!(pipeline, run_id = %finished.report.run_id, %error, "finance report not written"),
                    }
                }
                attempt(&finished.report, None)
            }
            Err(failed) => match &failed.finished {
                Some(finished) => attempt(&finished.report, Some(error(&failed.error))),
                None => Attempt {
                    error: Some(error(&failed.error)),
                    ..Default::default()
                },
            },
        }
    }
}

/// Waits until a fire time: [`CronJobs`] in the daemon, fakes in tests.
#[async_trait(?Send)]
pub trait Waker {
    async fn wait_until(&self, pipeline: &str, at: DateTime<Utc>);
}

/// If a one-shot job has not fired this long after its time, wake anyway.
const BACKSTOP: Duration = Duration::from_secs(60);

/// Waking on tokio-cron-scheduler: one one-shot job per pipeline at its next
/// fire time.
pub struct CronJobs {
    jobs: tokio_cron_scheduler::JobScheduler,
    clock: Arc<dyn Clock>,
}

impl CronJobs {
    pub async fn start(clock: Arc<dyn Clock>) -> Result<Self, SchedulerError> {
        let jobs = tokio_cron_scheduler::JobScheduler::new()
            .await
            .map_err(|e| SchedulerError::Jobs(e.to_string()))?;
        jobs.start().await.map_err(|e| SchedulerError::Jobs(e.to_string()))?;
        Ok(CronJobs { jobs, clock })
    }

    pub async fn shutdown(mut self) {
        if let Err(e) = self.jobs.shutdown().await {
            tracing::debug!(error = %e, "job scheduler shutdown");
        }
    }
}

#[async_trait(?Send)]
impl Waker for CronJobs {
    async fn wait_until(&self, pipeline: &str, at: DateTime<Utc>) {
        let wait = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let tx = Arc::new(Mutex::new(Some(tx)));
            let job = tokio_cron_scheduler::Job::new_one_shot_at_instant_async(std::time::Instant::now() + wait, move |_, _| {
                let tx = tx.clone();
                Box::pin(async move {
                    if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        let _ = tx.send(());
                    }
                })
            });
            let added = match job {
                Ok(job) => self.jobs.add(job).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match added {
                Ok(id) => {
                    tokio::select! {
                        _ = rx => {}
                        _ = tokio::time::sleep(wait + BACKSTOP) => {
                            tracing::warn!(pipeline, fire = %at, "the job scheduler did not fire; woke up by the backstop timer");
                            let _ = self.jobs.remove(&id).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(pipeline, error = %e, "cannot add the job; sleeping until the fire time instead");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        // The job scheduler ticks in whole seconds: wait out what is left.
        let rest = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
    }
}

/// `tenure schedule`: the system clock, OS signals, the real runner; returns
/// after a stop request once every worker has stopped.
pub async fn serve(project: &Project, health_listen: Option<SocketAddr>) -> Result<(), SchedulerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop signal received: no new runs start");
        let _ = stop_tx.send(true);
    });
    let options = Options::from_config(&project.config, health_listen);
    let result = run(project, &options, Arc::new(SystemClock), stop_rx).await;
    signals.abort();
    result
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            ctrl_c.await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `vacuum.schedule` for the daemon: vacuum after a successful run when a
/// fire time has passed since the last vacuum (one at a time per process).
pub struct VacuumJob {
    warehouse: Warehouse,
    schedule: CronSchedule,
    options: crate::vacuum::VacuumOptions,
    busy: tokio::sync::Mutex<()>,
}

impl VacuumJob {
    /// The job of `config`'s `[vacuum]`; `None` when its schedule is `off`.
    pub fn of(config: &Config, warehouse: &Warehouse) -> Result<Option<VacuumJob>, SchedulerError> {
        let Some(expr) = &config.vacuum.schedule else { return Ok(None) };
        let schedule = CronSchedule::parse(expr, config.timezone).map_err(|message| SchedulerError::Schedule {
            file: config.file.display().to_string(),
            message: format!("vacuum.schedule: {message}"),
        })?;
        Ok(Some(VacuumJob {
            warehouse: warehouse.clone(),
            schedule,
            options: config.vacuum.options(),
            busy: tokio::sync::Mutex::new(()),
        }))
    }

    /// Vacuum if a fire time of the schedule is at or before `now` and after
    /// the last vacuum (or no vacuum is on record); `None` when not due.
    pub async fn run_if_due(&self, now: DateTime<Utc>) -> Option<Result<crate::vacuum::VacuumReport, crate::vacuum::VacuumError>> {
        let _one = self.busy.lock().await;
        let last = crate::vacuum::last(&self.warehouse).await;
        let since = last.as_ref().and_then(|r| DateTime::parse_from_rfc3339(&r.finished_at).ok()).map(|t| t.with_timezone(&Utc));
        if since.is_some_and(|t| self.schedule.next_after(t).is_none_or(|fire| fire > now)) {
            return None;
        }
        Some(crate::vacuum::vacuum(&self.warehouse, &self.options, now).await)
    }
}

/// The pipelines with a schedule, each with its parsed schedule.
pub fn scheduled(project: &Project) -> Result<Vec<(&Pipeline, CronSchedule)>, SchedulerError> {
    let mut out = Vec::new();
    for p in &project.pipelines {
        if let Some(expr) = &p.schedule {
            let tz = p.timezone.unwrap_or(project.config.timezone);
            let schedule = CronSchedule::parse(expr, tz).map_err(|message| SchedulerError::Schedule {
                file: p.file.display().to_string(),
                message,
            })?;
            out.push((p, schedule));
        }
    }
    if out.is_empty() {
        return Err(SchedulerError::NothingScheduled {
            dir: project.config.pipelines_dir.display().to_string(),
        });
    }
    Ok(out)
}

/// The daemon: run every scheduled pipeline of `project` until `stop` turns true.
pub async fn run(
    project: &Project,
    options: &Options,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> Result<(), SchedulerError> {
    let jobs = scheduled(project)?;
    let warehouse = Warehouse::of(&project.config)?;
    let history = pipeline::history::list(&warehouse).await?;
    let metrics = Arc::new(Metrics::new(jobs.iter().map(|(p, _)| p.name.as_str())));
    for (p, _) in &jobs {
        if let Some(t) = last_success(&history, &p.name) {
            metrics.update(&p.name, |m| m.last_success_timestamp_seconds = Some(t.timestamp_millis() as f64 / 1000.0));
        }
    }
    let health = match options.health_listen {
        Some(addr) => {
            let (listener, local) = health::bind(addr)
                .await
                .map_err(|source| SchedulerError::Health { addr, source })?;
            tracing::info!(address = %local, "health endpoint listening (/healthz, /metrics)");
            let judge = health::Health {
                metrics: metrics.clone(),
                clock: clock.clone(),
                schedules: jobs.iter().map(|(p, s)| (p.name.clone(), s.clone())).collect(),
                since: clock.now(),
            };
            Some(tokio::spawn(health::serve(listener, Arc::new(judge))))
        }
        None => None,
    };
    let vacuum = VacuumJob::of(&project.config, &warehouse)?.map(Arc::new);
    let waker = CronJobs::start(clock.clone()).await?;
    let runner = PipelineRunner {
        project,
        clock: clock.clone(),
    };
    let mut workers: Vec<Worker<'_>> = jobs
        .into_iter()
        .map(|(p, schedule)| {
            tracing::info!(pipeline = %p.name, schedule = %schedule.expr(), timezone = %schedule.timezone().name(), catch_up = ?p.catch_up, "pipeline scheduled");
            Worker {
                pipeline: p.name.clone(),
                schedule,
                catch_up: p.catch_up,
                retry: RetryPolicy::new(p.retries, p.retry_backoff),
                reporting_tz: project.config.timezone,
                lease: LeaseStore::new(&warehouse, &p.name, &options.holder, options.lease_ttl),
                lease_poll: options.lease_poll,
                grace: options.grace_period,
                runner: &runner,
                clock: clock.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
                vacuum: vacuum.clone(),
            }
        })
        .collect();
    tracing::info!(holder = %options.holder, pipelines = workers.len(), warehouse = %warehouse.display(), "scheduler started");
    futures::future::join_all(workers.iter_mut().map(|w| w.run(&waker, &history))).await;
    waker.shutdown().await;
    if let Some(h) = health {
        h.abort();
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// The newest fire time of `schedule` covered by a successful run of
/// `pipeline` in the history (see [`plan::covered_fire`]).
pub fn last_covered(history: &[RunReport], pipeline: &str, schedule: &CronSchedule, reporting_tz: Tz) -> Option<DateTime<Utc>> {
    history
        .iter()
        .filter(|r| r.pipeline == pipeline && r.succeeded())
        .filter_map(|r| {
            let started = DateTime::parse_from_rfc3339(&r.started_at).ok()?.with_timezone(&Utc);
            let as_of = r.as_of.parse::<NaiveDate>().ok()?;
            plan::covered_fire(schedule, reporting_tz, started, as_of)
        })
        .max()
}

/// When the newest successful run of `pipeline` in the history ended.
pub fn last_success(history: &[RunReport], pipeline: &str) -> Option<DateTime<Utc>> {
    history
        .iter()
        .filter(|r| r.pipeline == pipeline && r.succeeded())
        .filter_map(|r| {
            let end = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
            match r.finished_at.as_deref().and_then(end) {
                Some(t) => Some(t),
                None => Some(end(&r.started_at)? + chrono::Duration::milliseconds((r.seconds * 1000.0) as i64)),
            }
        })
        .max()
}

/// How one slot ended here.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotOutcome {
    Succeeded,
    /// Failed for good (permanent error, or out of retries).
    Failed,
    /// Another scheduler already handled this slot.
    Skipped { by: String },
    /// Dropped: the grace period ran out, or the lease was lost.
    Aborted,
    /// A stop request came before the run started (or between retries).
    Stopped,
}

/// One pipeline's scheduling loop.
pub struct Worker<'a> {
    pub pipeline: String,
    pub schedule: CronSchedule,
    pub catch_up: CatchUp,
    pub retry: RetryPolicy,
    pub reporting_tz: Tz,
    pub lease: LeaseStore,
    pub lease_poll: Duration,
    pub grace: Duration,
    pub runner: &'a dyn Runner,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub stop: watch::Receiver<bool>,
    /// Vacuum after a successful run, when due; `None`: never.
    pub vacuum: Option<Arc<VacuumJob>>,
}

/// Resolves once `stop` is (or turns) true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

enum Supervised {
    Done(Attempt),
    Aborted(&'static str),
}

impl Worker<'_> {
    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Catch up from `history`, then run each fire time as it comes, until stopped.
    pub async fn run(&mut self, waker: &dyn Waker, history: &[RunReport]) {
        let now = self.clock.now();
        let covered = last_covered(history, &self.pipeline, &self.schedule, self.reporting_tz);
        let mut cursor = match covered {
            Some(c) if c < now => c,
            Some(_) => now,
            None => {
                tracing::info!(pipeline = %self.pipeline, "no successful run on record: nothing to catch up");
                now
            }
        };
        let mut stop = self.stop.clone();
        loop {
            if self.is_stopped() {
                break;
            }
            let now = self.clock.now();
            let due = plan::due(&self.schedule, cursor, now, self.catch_up);
            if due.skipped > 0 {
                tracing::warn!(pipeline = %self.pipeline, skipped = due.skipped, at_least = due.truncated, catch_up = ?self.catch_up, "missed fire times not run");
                self.metrics.update(&self.pipeline, |m| m.skipped_total += due.skipped as u64);
            }
            if let Some(first) = due.fires.first() {
                if due.fires.len() > 1 || (now - *first).to_std().unwrap_or(Duration::ZERO) > plan::ON_TIME {
                    tracing::info!(pipeline = %self.pipeline, runs = due.fires.len(), since = %cursor, catch_up = ?self.catch_up, "catching up missed fire times");
                }
            }
            cursor = cursor.max(now);
            for fire in due.fires {
                if self.is_stopped() {
                    break;
                }
                if self.handle_slot(Slot::new(fire, self.reporting_tz)).await == SlotOutcome::Succeeded {
                    self.vacuum_if_due().await;
                }
            }
            if self.is_stopped() {
                break;
            }
            let Some(next) = self.schedule.next_after(cursor) else {
                tracing::warn!(pipeline = %self.pipeline, schedule = %self.schedule.expr(), "the schedule never fires again");
                stopped(&mut stop).await;
                break;
            };
            tracing::debug!(pipeline = %self.pipeline, next = %next, "waiting for the next fire time");
            tokio::select! {
                _ = waker.wait_until(&self.pipeline, next) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        tracing::info!(pipeline = %self.pipeline, "worker stopped");
    }

    /// Vacuum when [`VacuumJob::run_if_due`] says so; a failed vacuum is
    /// logged (the next one tries again) and never fails the pipeline.
    async fn vacuum_if_due(&self) {
        let Some(job) = &self.vacuum else { return };
        match job.run_if_due(self.clock.now()).await {
            None => {}
            Some(Ok(report)) => {
                tracing::info!(pipeline = %self.pipeline, files = report.files_deleted(), bytes = report.bytes_freed(), "vacuum after the run done")
            }
            Some(Err(e)) => tracing::warn!(pipeline = %self.pipeline, error = %e, "vacuum after the run failed; the next one tries again"),
        }
    }

    /// Run one slot under the lease: wait for the lease, skip the slot if
    /// another scheduler already handled it, else run it with retries while
    /// renewing the lease, and release it.
    pub async fn handle_slot(&self, slot: Slot) -> SlotOutcome {
        let Some(held) = self.take_lease().await else {
            return SlotOutcome::Stopped;
        };
        if let Some(last) = held.record.last_fire.filter(|l| *l >= slot.fire) {
            let by = held.record.holder.clone();
            tracing::info!(pipeline = %self.pipeline, fire = %slot.fire, last_fire = %last, "slot already handled by another scheduler; skipped");
            // Its success is the pipeline's too (for /healthz), seen now.
            let succeeded = held.record.last_status.as_deref() == Some("succeeded");
            let seen = self.clock.now().timestamp_millis() as f64 / 1000.0;
            self.metrics.update(&self.pipeline, |m| {
                m.skipped_total += 1;
                if succeeded {
                    m.last_success_timestamp_seconds = Some(m.last_success_timestamp_seconds.map_or(seen, |t| t.max(seen)));
                }
            });
            self.release(held, None, None).await;
            return SlotOutcome::Skipped { by };
        }

        let (done_tx, done_rx) = watch::channel(false);
        let (lost_tx, lost_rx) = watch::channel(false);
        let keeper = tokio::spawn(lease::keep_alive(self.lease.clone(), held, self.clock.clone(), done_rx, lost_tx));
        let outcome = self.attempts(slot, lost_rx).await;
        let _ = done_tx.send(true);
        let held = match keeper.await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline, error = %e, "lease keeper failed; the lease will expire");
                None
            }
        };
        if let Some(held) = held {
            let (fire, status) = match outcome {
                SlotOutcome::Succeeded => (Some(slot.fire), Some("succeeded")),
                SlotOutcome::Failed => (Some(slot.fire), Some("failed")),
                _ => (None, None),
            };
            self.release(held, fire, status).await;
        }
        outcome
    }

    async fn release(&self, held: Lease, fire: Option<DateTime<Utc>>, status: Option<&str>) {
        if let Err(e) = self.lease.release(held, self.clock.now(), fire, status).await {
            tracing::warn!(pipeline = %self.pipeline, error = %e, "lease not released; it expires by itself");
        }
    }

    /// Take the lease, waiting while someone else holds it; `None` if a stop
    /// request came first.
    async fn take_lease(&self) -> Option<Lease> {
        let mut stop = self.stop.clone();
        let mut announced = false;
        let mut errors = 0u32;
        loop {
            if self.is_stopped() {
                return None;
            }
            let wait = match self.lease.try_acquire(self.clock.now()).await {
                Ok(Acquire::Held(l)) => return Some(l),
                Ok(Acquire::Busy { holder, expires_at }) => {
                    if !announced {
                        tracing::info!(pipeline = %self.pipeline, holder = %holder, expires_at = %expires_at, "another scheduler is running this pipeline; waiting for its lease");
                        announced = true;
                    }
                    self.lease_poll
                }
                Err(e) => {
                    errors += 1;
                    let wait = RetryPolicy::new(u32::MAX, self.lease_poll).delay(errors.min(6), fastrand::f64());
                    tracing::warn!(pipeline = %self.pipeline, error = %e, retry_in = ?wait, "cannot take the lease");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut stop) => return None,
            }
        }
    }

    /// Attempts of one slot, with retries.
    async fn attempts(&self, slot: Slot, mut lost: watch::Receiver<bool>) -> SlotOutcome {
        let mut stop = self.stop.clone();
        let mut attempt = 1u32;
        loop {
            tracing::info!(pipeline = %self.pipeline, fire = %slot.fire, as_of = %slot.as_of, attempt, "scheduled run started");
            self.metrics.update(&self.pipeline, |m| m.running = true);
            let result = self.supervise(self.runner.run(&self.pipeline, slot.as_of), &mut lost).await;
            self.metrics.update(&self.pipeline, |m| m.running = false);
            let a = match result {
                Supervised::Aborted(why) => {
                    tracing::warn!(pipeline = %self.pipeline, fire = %slot.fire, reason = why, "scheduled run aborted; nothing of it was published");
                    return SlotOutcome::Aborted;
                }
                Supervised::Done(a) => a,
            };
            let ended = self.clock.now();
            self.metrics.update(&self.pipeline, |m| {
                m.runs_total += 1;
                m.last_run_duration_seconds = Some(a.seconds);
                m.rows_ingested_total += a.rows_ingested;
                match &a.error {
                    Some(e) => {
                        m.failures_total += 1;
                        m.timeouts_total += u64::from(e.timed_out);
                    }
                    None => m.last_success_timestamp_seconds = Some(ended.timestamp_millis() as f64 / 1000.0),
                }
            });
            let Some(err) = a.error else {
                tracing::info!(pipeline = %self.pipeline, run_id = a.run_id.as_deref().unwrap_or(""), as_of = %slot.as_of, seconds = a.seconds, "scheduled run succeeded");
                return SlotOutcome::Succeeded;
            };
            match self.retry.after_failure(attempt, err.permanent, fastrand::f64()) {
                None => {
                    tracing::error!(pipeline = %self.pipeline, run_id = a.run_id.as_deref().unwrap_or(""), as_of = %slot.as_of, attempts = attempt, permanent = err.permanent, error = %err.message, "scheduled run failed");
                    return SlotOutcome::Failed;
                }
                Some(delay) => {
                    tracing::warn!(pipeline = %self.pipeline, run_id = a.run_id.as_deref().unwrap_or(""), attempt, retry_in = ?delay, error = %err.message, "scheduled run failed; retrying");
                    self.metrics.update(&self.pipeline, |m| m.retries_total += 1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(&mut stop) => return SlotOutcome::Stopped,
                        _ = lost.changed() => return SlotOutcome::Aborted,
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Drive one attempt; on a stop request give it the grace period; drop it
    /// if the lease is lost.
    async fn supervise(&self, run: impl std::future::Future<Output = Attempt>, lost: &mut watch::Receiver<bool>) -> Supervised {
        tokio::pin!(run);
        let mut stop = self.stop.clone();
        // A keeper that is gone without saying "lost" cannot renew either.
        let lease_lost = async move {
            let _ = lost.changed().await;
        };
        tokio::pin!(lease_lost);
        tokio::select! {
            a = &mut run => return Supervised::Done(a),
            _ = &mut lease_lost => return Supervised::Aborted("the lease was lost"),
            _ = stopped(&mut stop) => {}
        }
        tracing::info!(pipeline = %self.pipeline, grace = ?self.grace, "stop requested; waiting for the run in progress");
        tokio::select! {
            a = &mut run => Supervised::Done(a),
            _ = &mut lease_lost => Supervised::Aborted("the lease was lost"),
            _ = tokio::time::sleep(self.grace) => Supervised::Aborted("the grace period ran out"),
        }
    }
}

#[cfg(test)]
mod tests;
