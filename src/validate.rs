//! `tenure validate`: everything but running. The model graph is built from
//! `sql/`, every pipeline's model selection is checked against it, and every
//! SQL model and check is planned by DataFusion against the declared schemas
//! of `events`, `rejects` and `params`. Nothing is read from storage and
//! nothing is written.

use crate::catalog::Catalog;
use crate::config::Project;
use crate::engine;
use crate::ingest::batch::{EVENTS_SCHEMA, REJECTS_SCHEMA};
use crate::warehouse::{EVENTS, REJECTS};
use chrono::NaiveDate;

/// What validation found: every problem, each naming its file, and what was checked.
#[derive(Debug, Default)]
pub struct ValidationReport {
    pub problems: Vec<String>,
    pub pipelines: usize,
    pub models: usize,
    pub checks: usize,
}

/// Validate a loaded project.
pub async fn validate(project: &Project) -> ValidationReport {
    let mut report = ValidationReport {
        pipelines: project.pipelines.len(),
        ..Default::default()
    };
    let catalog = match Catalog::load(&project.config.sql_dir) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.models = catalog.models.len();
    report.checks = catalog.checks.len();
    for p in &project.pipelines {
        if let Err(e) = catalog.select(&p.models) {
            report.problems.push(format!("{}: {e}", p.file.display()));
        }
    }
    let ctx = engine::session();
    for (name, schema) in [(EVENTS, EVENTS_SCHEMA.clone()), (REJECTS, REJECTS_SCHEMA.clone())] {
        if let Err(e) = engine::register_batch(&ctx, name, vec![], schema) {
            report.problems.push(format!("table {name}: {e}"));
        }
    }
    let params = engine::Params::from_config(&project.config, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default());
    if let Err(e) = engine::register_params(&ctx, &params, engine::full_rebuild()) {
        report.problems.push(format!("table params: {e}"));
    }
    for model in &catalog.models {
        if let Err(e) = engine::plan(&ctx, model).await {
            report.problems.push(format!("{}: model {:?}: {e}", model.file.display(), model.name));
        }
    }
    for check in &catalog.checks {
        let planned = async {
            let df = ctx.sql_with_options(&check.sql, engine::read_only()).await?;
            df.create_physical_plan().await
        };
        if let Err(e) = planned.await {
            report.problems.push(format!("{}: check {:?}: {e}", check.file.display(), check.name));
        }
    }
    report
}
