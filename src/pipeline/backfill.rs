//! `tenure backfill`: one pipeline run as of each date of a range, in order.
//! New raw objects are ingested once, first; every date then builds from
//! them. Resumable: a date whose succeeded run used the inputs a run would
//! use now is skipped, so re-running the same command after a failure goes on
//! where it stopped. Each run holds the pipeline's lease, like `tenure run`.

use super::{history, inputs_fingerprint, run_exclusive, select_models, Clock, Finished, RunFailed, RunOptions, RunStatus};
use crate::catalog::{Catalog, Model};
use crate::config::{Pipeline, Project};
use crate::warehouse::Warehouse;
use chrono::{Datelike, NaiveDate};
use std::collections::HashSet;
use std::sync::Arc;

/// Which dates of the range a backfill runs as of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Every date.
    Day,
    /// The last day of every month, and the range's last date.
    Month,
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub pipeline: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub every: Every,
    /// Show progress bars (on a terminal).
    pub progress: bool,
}

/// What a backfill did: the ingest run, the runs of the dates it ran (in
/// order), and how many dates were already complete.
#[derive(Debug, Default)]
pub struct BackfillReport {
    pub ingest: Option<Finished>,
    pub runs: Vec<Finished>,
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("--from {from} is after --to {to}; give the range in order")]
    Range { from: NaiveDate, to: NaiveDate },
    #[error(transparent)]
    Setup(#[from] super::RunError),
    #[error("cannot read what earlier runs completed: {0}")]
    History(#[from] history::HistoryError),
    /// A run failed; the report holds the runs before it.
    #[error("backfill stopped {}; re-run the same command to resume", match .at { Some(d) => format!("at {d}"), None => "at its ingest".into() })]
    Stopped {
        at: Option<NaiveDate>,
        done: Box<BackfillReport>,
        #[source]
        failed: Box<RunFailed>,
    },
}

/// The as-of dates of a backfill, in order.
pub fn dates(from: NaiveDate, to: NaiveDate, every: Every) -> Vec<NaiveDate> {
    let mut dates = Vec::new();
    let mut d = from;
    while d <= to {
        let next = d.succ_opt().unwrap_or(d);
        let month_end = next.month0() != d.month0() || next == d;
        if every == Every::Day || month_end || d == to {
            dates.push(d);
        }
        if next == d {
            break;
        }
        d = next;
    }
    dates
}

/// Run the backfill `opts` describes.
pub async fn backfill(project: &Project, opts: &BackfillOptions, clock: Arc<dyn Clock>) -> Result<BackfillReport, BackfillError> {
    if opts.from > opts.to {
        return Err(BackfillError::Range { from: opts.from, to: opts.to });
    }
    let pipeline = project.pipeline(opts.pipeline.as_deref()).map_err(super::RunError::from)?.clone();
    let warehouse = Warehouse::of(&project.config).map_err(super::RunError::from)?;
    let dates = dates(opts.from, opts.to, opts.every);
    let mut done = BackfillReport::default();
    if pipeline.ingest {
        let ingest = RunOptions {
            pipeline: Some(pipeline.name.clone()),
            as_of: Some(opts.from),
            trigger: "backfill".into(),
            progress: opts.progress,
            ingest_only: true,
            ..Default::default()
        };
        match run_exclusive(project, &ingest, clock.clone()).await {
            Ok(finished) => done.ingest = Some(finished),
            Err(failed) => {
                return Err(BackfillError::Stopped {
                    at: None,
                    done: Box::new(done),
                    failed: Box::new(failed),
                })
            }
        }
    }
    let completed = Completed::read(project, &pipeline, &warehouse).await?;
    let pb = if opts.progress { indicatif::ProgressBar::new(dates.len() as u64) } else { indicatif::ProgressBar::hidden() };
    pb.set_message("backfill");
    for date in dates {
        pb.inc(1);
        if completed.contains(project, date) {
            done.skipped += 1;
            continue;
        }
        let run = RunOptions {
            pipeline: Some(pipeline.name.clone()),
            as_of: Some(date),
            trigger: "backfill".into(),
            skip_ingest: true,
            ..Default::default()
        };
        match run_exclusive(project, &run, clock.clone()).await {
            Ok(finished) => {
                let r = &finished.report;
                tracing::info!(run_id = %r.run_id, as_of = %date, seconds = r.seconds, "backfill run succeeded");
                done.runs.push(finished);
            }
            Err(failed) => {
                pb.finish_and_clear();
                return Err(BackfillError::Stopped {
                    at: Some(date),
                    done: Box::new(done),
                    failed: Box::new(failed),
                });
            }
        }
    }
    pb.finish_and_clear();
    Ok(done)
}

/// What a backfill needs to skip dates already done: the inputs a run would
/// have now (the `events` version does not move during a backfill, which
/// ingests once before its dates), and the succeeded runs of the pipeline.
/// Read once per backfill, not once per date.
struct Completed {
    events_version: i64,
    models: Vec<Model>,
    /// (as-of date, inputs fingerprint) of succeeded runs.
    runs: HashSet<(String, String)>,
}

impl Completed {
    async fn read(project: &Project, pipeline: &Pipeline, warehouse: &Warehouse) -> Result<Self, BackfillError> {
        let catalog = Catalog::load(&project.config.sql_dir).map_err(super::RunError::from)?;
        let models = select_models(&catalog, pipeline)?.into_iter().cloned().collect();
        let events = warehouse.open_events().await.map_err(super::RunError::from)?;
        let runs = history::list(warehouse)
            .await?
            .into_iter()
            .filter(|r| r.pipeline == pipeline.name && r.status == RunStatus::Succeeded)
            .filter_map(|r| Some((r.as_of, r.inputs?)))
            .collect();
        Ok(Completed {
            events_version: events.version().unwrap_or(0) as i64,
            models,
            runs,
        })
    }

    /// Whether a succeeded run as of `date` used the inputs a run now would.
    fn contains(&self, project: &Project, date: NaiveDate) -> bool {
        let params = crate::engine::Params::from_config(&project.config, date);
        let models: Vec<&Model> = self.models.iter().collect();
        let inputs = inputs_fingerprint(self.events_version, &models, &params);
        self.runs.contains(&(date.to_string(), inputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ends_and_the_last_date() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(dates(d("2026-01-30"), d("2026-03-10"), Every::Month), vec![d("2026-01-31"), d("2026-02-28"), d("2026-03-10")]);
        assert_eq!(dates(d("2026-02-27"), d("2026-03-01"), Every::Day).len(), 3);
        assert!(dates(d("2026-03-02"), d("2026-03-01"), Every::Day).is_empty());
    }
}
