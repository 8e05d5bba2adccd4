//! `tenure validate`: everything but running. The config and pipeline files
//! are compiled, the model graph is built from `sql/`, every pipeline's model
//! selection is checked against it, and every SQL model and check is planned
//! by DataFusion against the declared schemas of `events`, `rejects` and
//! `params`. Every stage goes on with what the stages before it could read,
//! so all problems come back together, each with its file and line. Nothing
//! is read from storage and nothing is written.

use crate::catalog::{self, Catalog, PartialCatalog};
use crate::config::{self, Overrides, Project};
use crate::engine;
use crate::ingest::batch::{EVENTS_SCHEMA, REJECTS_SCHEMA};
use crate::problem::Problem;
use crate::warehouse::{EVENTS, REJECTS};
use chrono::NaiveDate;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What validation found: every problem, each naming its file and line, and
/// what was checked.
#[derive(Debug, Default)]
pub struct ValidationReport {
    pub problems: Vec<Problem>,
    pub pipelines: usize,
    pub models: usize,
    pub checks: usize,
    /// The SQL folder checked (empty when the config could not tell).
    pub sql_dir: PathBuf,
}

/// Validate the project of `config_file`. Only a config file that is not
/// TOML, or whose `[project]` folders are unknown, stops validation before
/// the pipelines and SQL models are checked.
pub async fn validate(config_file: &Path, overrides: &Overrides) -> ValidationReport {
    let loaded = config::load_partial(config_file, overrides);
    let mut report = ValidationReport {
        problems: loaded.problems,
        ..Default::default()
    };
    if let Some(project) = &loaded.project {
        check_project(project, &mut report).await;
    }
    report
}

/// The stages after the config: the catalog, the pipelines' selections, and
/// planning every model and check.
async fn check_project(project: &Project, report: &mut ValidationReport) {
    report.pipelines = project.pipelines.len();
    report.sql_dir = project.config.sql_dir.clone();
    let config_file = project.config.file.display().to_string();
    if let Err(e) = std::fs::read_dir(&project.config.sql_dir) {
        // The config's problem: no model can be checked, no selection either.
        report.problems.push(Problem::new(
            config_file,
            config::line_of_key(&project.config.file, "project.sql_dir"),
            "project.sql_dir",
            format!("cannot read the SQL folder {} ({e}); name the folder of the SQL models", report.sql_dir.display()),
        ));
        return;
    }
    let PartialCatalog {
        catalog,
        broken,
        problems,
    } = Catalog::load_partial(&project.config.sql_dir);
    report.models = catalog.models.len();
    report.checks = catalog.checks.len();
    report.problems.extend(problems);
    check_selections(project, &catalog, &broken, report);

    let ctx = engine::session();
    // Planning errors then point at the SQL they are about.
    ctx.state_ref().write().config_mut().options_mut().sql_parser.collect_spans = true;
    for (name, schema) in [(EVENTS, EVENTS_SCHEMA.clone()), (REJECTS, REJECTS_SCHEMA.clone())] {
        if let Err(e) = engine::register_batch(&ctx, name, vec![], schema) {
            report.problems.push(Problem::new(config_file.clone(), None, format!("table {name}"), e.to_string()));
        }
    }
    let params = engine::Params::from_config(&project.config, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default());
    if let Err(e) = engine::register_params(&ctx, &params, engine::full_rebuild()) {
        report.problems.push(Problem::new(config_file, None, "table params", e.to_string()));
    }
    plan_all(&ctx, &catalog, broken, report).await;
}

/// A pipeline's `models` must select models; a pattern that selects only a
/// model with problems of its own is not reported again.
fn check_selections(project: &Project, catalog: &Catalog, broken: &BTreeSet<String>, report: &mut ValidationReport) {
    for p in &project.pipelines {
        let Err(e) = catalog.select(&p.models) else { continue };
        if let catalog::CatalogError::NoMatch { pattern } = &e {
            let name = pattern.rsplit('/').next().unwrap_or(pattern);
            if broken.contains(name) || (name == "*" && !broken.is_empty()) {
                continue;
            }
        }
        let line = config::line_of_key(&p.file, "models");
        report.problems.push(Problem::new(p.file.display().to_string(), line, "models", e.to_string()));
    }
}

/// Plan every model in build order, then every check. A model or check that
/// reads one that could not be planned is reported once, as not planned
/// because of it, rather than with the planner's confusing errors.
async fn plan_all(ctx: &SessionContext, catalog: &Catalog, broken: BTreeSet<String>, report: &mut ValidationReport) {
    let mut failed = broken;
    for model in &catalog.models {
        let key = format!("model {:?}", model.name);
        if let Some(problem) = upstream_failed(&model.file, &key, &model.sql, &model.depends_on, &failed) {
            report.problems.push(problem);
            failed.insert(model.name.clone());
        } else if let Err(e) = engine::plan(ctx, model).await {
            report.problems.push(planning_problem(&model.file, &key, &model.sql, &e));
            failed.insert(model.name.clone());
        }
    }
    for check in &catalog.checks {
        let key = format!("check {:?}", check.name);
        if let Some(problem) = upstream_failed(&check.file, &key, &check.sql, &check.depends_on, &failed) {
            report.problems.push(problem);
            continue;
        }
        let planned = async {
            let df = ctx.sql_with_options(&check.sql, engine::read_only()).await?;
            df.create_physical_plan().await
        };
        if let Err(e) = planned.await {
            report.problems.push(planning_problem(&check.file, &key, &check.sql, &e));
        }
    }
}

/// "not planned" when `depends_on` holds a model that could not be planned.
fn upstream_failed(file: &Path, key: &str, sql: &str, depends_on: &BTreeSet<String>, failed: &BTreeSet<String>) -> Option<Problem> {
    let upstream = depends_on.iter().find(|d| failed.contains(*d))?;
    let line = catalog::line_of_word(sql, upstream).unwrap_or_else(|| catalog::statement_line(sql));
    Some(Problem::new(
        file.display().to_string(),
        Some(line),
        key,
        format!("not planned: it reads model {upstream:?}, which could not be planned"),
    ))
}

/// A planning error at its line: where DataFusion's diagnostic points, else
/// the first line naming what the error quotes, else the statement's first.
fn planning_problem(file: &Path, key: &str, sql: &str, e: &DataFusionError) -> Problem {
    let line = e
        .diagnostic()
        .and_then(|d| d.span.as_ref())
        .map(|s| s.start.line as usize)
        .filter(|l| *l > 0)
        .or_else(|| quoted(&e.to_string()).iter().find_map(|name| catalog::line_of_word(sql, name)))
        .unwrap_or_else(|| catalog::statement_line(sql));
    // One problem, one line: DataFusion's hints ("Valid fields are ...") follow on it.
    let message = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    Problem::new(file.display().to_string(), Some(line), key, message)
}

/// The names an error message quotes ('x', "x" or `x`), last part of a
/// qualified name only.
fn quoted(message: &str) -> Vec<String> {
    let mut names = Vec::new();
    for quote in ['\'', '"', '`'] {
        let parts: Vec<&str> = message.split(quote).collect();
        for inside in parts.iter().skip(1).step_by(2).take(parts.len().saturating_sub(1) / 2) {
            if let Some(last) = inside.rsplit('.').next().filter(|s| !s.is_empty()) {
                names.push(last.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_are_found_in_messages() {
        assert_eq!(quoted("table 'datafusion.public.mrr_montly' not found"), ["mrr_montly"]);
        assert_eq!(quoted("no field named \"x\".\"amount\""), ["x", "amount"]);
        assert!(quoted("nothing quoted").is_empty());
    }

    /// An unknown SQL folder is the config's problem, at `project.sql_dir`,
    /// and stops validation before the models (nothing to plan) without
    /// reporting every pipeline's selection as matching nothing.
    #[tokio::test]
    async fn an_unreadable_sql_folder_is_reported_at_its_config_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tenure.toml");
        std::fs::write(&config, "[project]\npipelines_dir = \"pipelines\"\nsql_dir = \"sqlx\"\n\n[storage]\nraw = \"r\"\nwarehouse = \"w\"\n")
            .expect("write");
        std::fs::create_dir(dir.path().join("pipelines")).expect("mkdir");
        std::fs::write(dir.path().join("pipelines/daily.toml"), "models = [\"marts/*\"]\n").expect("write");
        let report = validate(&config, &Overrides::default()).await;
        let shown: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with(&format!("{}:3: project.sql_dir: cannot read the SQL folder", config.display())), "{shown:?}");
    }
}
