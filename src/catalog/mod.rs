//! The model catalog: SQL models found under `sql/`, their layer, and the
//! dependency graph inferred from the tables each one reads. It parses SQL but
//! never plans or runs it (that is `engine`'s job).

use datafusion::prelude::SessionContext;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Tables every model may read that are not models: the ingested tables and
/// the run parameters.
pub const SOURCES: [&str; 3] = ["events", "rejects", "params"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Staging,
    Intermediate,
    Marts,
}

impl Layer {
    fn from_dir(dir: &str) -> Option<Layer> {
        match dir {
            "staging" => Some(Layer::Staging),
            "intermediate" => Some(Layer::Intermediate),
            "marts" => Some(Layer::Marts),
            _ => None,
        }
    }

    pub fn dir(self) -> &'static str {
        match self {
            Layer::Staging => "staging",
            Layer::Intermediate => "intermediate",
            Layer::Marts => "marts",
        }
    }
}

/// How a model's result is kept during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// A view: every reader runs its query again (cheap projections).
    View,
    /// Computed once and held in memory for the models downstream.
    Table,
}

/// One SQL model: a single `select` whose result is the table `name`.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub layer: Layer,
    pub file: PathBuf,
    pub sql: String,
    /// Models this one reads (sources excluded).
    pub depends_on: BTreeSet<String>,
    /// `-- materialized: view|table` in the header; staging models are views
    /// and the others tables unless they say otherwise.
    pub materialized: Materialized,
    /// `-- incremental: <date column>` in the header of a model held as a
    /// table: each row belongs to the date in that column and depends only on
    /// events with local dates up to it, so an incremental run keeps the rows
    /// dated before the first changed month (a mart's as published, another
    /// model's as the base run kept them) and recomputes the rest (see
    /// `pipeline::incremental`).
    pub incremental: Option<String>,
    /// `-- incremental: <date column> by day`: each row depends only on the
    /// events of its own date, so an incremental run keeps the rows dated
    /// before the first changed *day*, not month (see `pipeline::incremental`).
    pub by_day: bool,
}

/// The header directives of a model.
struct Directives {
    materialized: Materialized,
    incremental: Option<String>,
    by_day: bool,
}

/// The directives of a model's header comment (the `--` lines before the SQL).
fn directives(sql: &str, layer: Layer) -> Result<Directives, String> {
    let mut materialized = if layer == Layer::Staging { Materialized::View } else { Materialized::Table };
    let mut incremental = None;
    let mut by_day = false;
    for line in sql.lines().map(str::trim).take_while(|l| l.is_empty() || l.starts_with("--")) {
        let Some((key, value)) = line.trim_start_matches('-').trim().split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "materialized" => {
                materialized = match value {
                    "view" => Materialized::View,
                    "table" => Materialized::Table,
                    other => return Err(format!("materialized: {other:?} must be \"view\" or \"table\"")),
                }
            }
            "incremental" => {
                let mut words = value.split_whitespace();
                let column = words.next().unwrap_or_default();
                if column.is_empty() || !column.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    return Err(format!("incremental: {value:?} must name the model's date column"));
                }
                by_day = match (words.next(), words.next(), words.next()) {
                    (None, ..) | (Some("by"), Some("month"), None) => false,
                    (Some("by"), Some("day"), None) => true,
                    _ => return Err(format!("incremental: {value:?} must be `<date column>`, `<date column> by day` or `<date column> by month`")),
                };
                incremental = Some(column.to_string());
            }
            _ => {}
        }
    }
    if incremental.is_some() && materialized == Materialized::View {
        return Err("incremental: a view cannot keep rows; add `-- materialized: table`".into());
    }
    Ok(Directives {
        materialized,
        incremental,
        by_day,
    })
}

/// A data check: a query that returns the rows breaking a rule; any row fails
/// the run before anything is published.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub file: PathBuf,
    pub sql: String,
    pub depends_on: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("models: {pattern:?} matches no model in sql/")]
    NoMatch { pattern: String },
}

/// Every model and check of a project, in a valid build order.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Models in topological order (ties by name).
    pub models: Vec<Model>,
    pub checks: Vec<Check>,
}

impl Catalog {
    /// Read `sql_dir`, parse each file, and order the graph. Every problem is
    /// reported at once, naming the file.
    pub fn load(sql_dir: &Path) -> Result<Catalog, CatalogError> {
        let mut problems = Vec::new();
        let mut files = Vec::new();
        collect_sql_files(sql_dir, &mut files, &mut problems);
        files.sort();
        let ctx = SessionContext::new();
        let mut models: BTreeMap<String, Model> = BTreeMap::new();
        let mut checks = Vec::new();
        for file in files {
            let rel = file.strip_prefix(sql_dir).unwrap_or(&file);
            let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
            let name = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let sql = match std::fs::read_to_string(&file) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{}: cannot read ({e})", file.display()));
                    continue;
                }
            };
            let refs = match table_references(&ctx, &sql) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            if parts.len() == 2 && parts[0] == "checks" {
                checks.push(Check {
                    name,
                    file: file.clone(),
                    sql,
                    depends_on: refs,
                });
                continue;
            }
            let layer = match (parts.len(), parts.first().and_then(|d| Layer::from_dir(d))) {
                (2, Some(layer)) => layer,
                _ => {
                    problems.push(format!(
                        "{}: a model must be sql/staging/*.sql, sql/intermediate/*.sql or sql/marts/*.sql (checks: sql/checks/*.sql)",
                        file.display()
                    ));
                    continue;
                }
            };
            if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                problems.push(format!("{}: model name {name:?} must be lowercase letters, digits and '_'", file.display()));
                continue;
            }
            if SOURCES.contains(&name.as_str()) {
                problems.push(format!("{}: model name {name:?} is reserved for a source table", file.display()));
                continue;
            }
            if let Some(other) = models.get(&name) {
                problems.push(format!("{}: model {name:?} is also defined by {}", file.display(), other.file.display()));
                continue;
            }
            let Directives {
                materialized,
                incremental,
                by_day,
            } = match directives(&sql, layer) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            models.insert(
                name.clone(),
                Model {
                    name,
                    layer,
                    file,
                    sql,
                    depends_on: refs,
                    materialized,
                    incremental,
                    by_day,
                },
            );
        }
        // Unknown tables.
        for m in models.values() {
            for r in &m.depends_on {
                if !models.contains_key(r) && !SOURCES.contains(&r.as_str()) {
                    problems.push(format!("{}: model {:?} reads unknown table {r:?}", m.file.display(), m.name));
                }
            }
        }
        for c in &checks {
            for r in &c.depends_on {
                if !models.contains_key(r) && !SOURCES.contains(&r.as_str()) {
                    problems.push(format!("{}: check {:?} reads unknown table {r:?}", c.file.display(), c.name));
                }
            }
        }
        if !problems.is_empty() {
            return Err(CatalogError::Invalid(problems));
        }
        for m in models.values_mut() {
            m.depends_on.retain(|r| !SOURCES.contains(&r.as_str()));
        }
        for c in &mut checks {
            c.depends_on.retain(|r| !SOURCES.contains(&r.as_str()));
        }
        let ordered = topo_sort(models)?;
        Ok(Catalog { models: ordered, checks })
    }

    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The models a pipeline builds: those its patterns select (`*`,
    /// `layer/*`, a name, or `layer/name`) and everything upstream of them, in
    /// build order. Unknown names are errors.
    pub fn select(&self, patterns: &[String]) -> Result<Vec<&Model>, CatalogError> {
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        for p in patterns {
            let before = wanted.len();
            let mut matched = false;
            for m in &self.models {
                let hit = match p.split_once('/') {
                    _ if p == "*" => true,
                    Some((layer, "*")) => m.layer.dir() == layer,
                    Some((layer, name)) => m.layer.dir() == layer && m.name == name,
                    None => m.name == *p,
                };
                if hit {
                    matched = true;
                    wanted.insert(&m.name);
                }
            }
            if !matched && before == wanted.len() {
                return Err(CatalogError::NoMatch { pattern: p.clone() });
            }
        }
        // Upstream closure, walking the build order backwards.
        for m in self.models.iter().rev() {
            if wanted.contains(m.name.as_str()) {
                for d in &m.depends_on {
                    wanted.insert(d);
                }
            }
        }
        Ok(self.models.iter().filter(|m| wanted.contains(m.name.as_str())).collect())
    }
}

fn collect_sql_files(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("{}: cannot read the SQL folder ({e}); set project.sql_dir in the config", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_sql_files(&path, out, problems);
        } else if path.extension().is_some_and(|x| x == "sql") {
            out.push(path);
        }
    }
}

/// The tables a single-statement SQL text reads (CTE names excluded).
fn table_references(ctx: &SessionContext, sql: &str) -> Result<BTreeSet<String>, String> {
    let state = ctx.state();
    let mut statements = datafusion::sql::parser::DFParser::parse_sql(sql).map_err(|e| format!("cannot parse SQL: {e}"))?;
    if statements.len() != 1 {
        return Err(format!("must hold exactly one SQL statement, found {}", statements.len()));
    }
    let statement = statements.pop_front().ok_or("empty SQL file")?;
    let refs = state
        .resolve_table_references(&statement)
        .map_err(|e| format!("cannot resolve tables: {e}"))?;
    Ok(refs.iter().map(|r| r.table().to_string()).collect())
}

fn topo_sort(models: BTreeMap<String, Model>) -> Result<Vec<Model>, CatalogError> {
    let mut remaining = models;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .values()
            .filter(|m| m.depends_on.iter().all(|d| done.contains(d)))
            .map(|m| m.name.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<String> = remaining.values().map(|m| format!("{} ({})", m.name, m.file.display())).collect();
            return Err(CatalogError::Invalid(vec![format!(
                "models form a cycle; none of these can run first: {}",
                names.join(", ")
            )]));
        }
        for name in ready {
            if let Some(m) = remaining.remove(&name) {
                done.insert(name);
                order.push(m);
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, sql: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, sql).expect("write");
    }

    #[test]
    fn orders_models_and_ignores_ctes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "marts/b.sql", "with x as (select * from a) select * from x");
        write(dir.path(), "staging/a.sql", "select * from events");
        write(dir.path(), "checks/b_ok.sql", "select * from b where 1 = 0");
        let c = Catalog::load(dir.path()).expect("catalog");
        let names: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.checks.len(), 1);
        let sel: Vec<&str> = c.select(&["marts/*".into()]).expect("select").iter().map(|m| m.name.as_str()).collect();
        assert_eq!(sel, ["a", "b"]);
        assert!(c.select(&["nope".into()]).is_err());
    }

    #[test]
    fn reports_cycles_and_unknown_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "marts/a.sql", "select * from b");
        write(dir.path(), "marts/b.sql", "select * from a");
        let err = Catalog::load(dir.path()).expect_err("cycle").to_string();
        assert!(err.contains("cycle"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "marts/a.sql", "select * from mrr_montly");
        let err = Catalog::load(dir.path()).expect_err("unknown").to_string();
        assert!(err.contains("unknown table \"mrr_montly\""), "{err}");
    }

    #[test]
    fn header_directives_set_materialization_and_incremental_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "staging/a.sql", "-- a: held\n-- materialized: table\nselect * from events");
        write(dir.path(), "staging/v.sql", "select * from events");
        write(dir.path(), "marts/m.sql", "-- grain: month\n-- incremental: month\nselect * from a\n-- incremental: ignored after the header");
        let c = Catalog::load(dir.path()).expect("catalog");
        let get = |n: &str| c.model(n).expect("model");
        assert_eq!(get("a").materialized, Materialized::Table);
        assert_eq!(get("v").materialized, Materialized::View);
        assert_eq!(get("m").materialized, Materialized::Table);
        assert_eq!(get("m").incremental.as_deref(), Some("month"));
        assert_eq!(get("a").incremental, None);

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "staging/a.sql", "-- materialized: cached\nselect * from events");
        write(dir.path(), "intermediate/b.sql", "-- incremental: month\n-- materialized: view\nselect * from a");
        write(dir.path(), "marts/c.sql", "-- incremental: Month\nselect * from b");
        write(dir.path(), "marts/d.sql", "-- incremental: month by week\nselect * from b");
        let err = Catalog::load(dir.path()).expect_err("bad directives").to_string();
        assert!(err.contains("a.sql: materialized: \"cached\" must be"), "{err}");
        assert!(err.contains("b.sql: incremental: a view cannot keep rows"), "{err}");
        assert!(err.contains("c.sql: incremental: \"Month\" must name the model's date column"), "{err}");
        assert!(err.contains("d.sql: incremental: \"month by week\" must be `<date column>`, `<date column> by day`"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "intermediate/b.sql", "-- incremental: local_date\nselect * from events");
        write(dir.path(), "intermediate/c.sql", "-- incremental: local_date by day\nselect * from events");
        write(dir.path(), "intermediate/d.sql", "-- incremental:  month  by  month\nselect * from events");
        let c = Catalog::load(dir.path()).expect("catalog");
        let get = |n: &str| c.model(n).expect("model");
        assert_eq!((get("b").incremental.as_deref(), get("b").by_day), (Some("local_date"), false));
        assert_eq!((get("c").incremental.as_deref(), get("c").by_day), (Some("local_date"), true));
        assert_eq!((get("d").incremental.as_deref(), get("d").by_day), (Some("month"), false));
    }
}
