//! The model catalog: SQL models found under `sql/`, their layer, and the
//! dependency graph inferred from the tables each one reads. It parses SQL but
//! never plans or runs it (that is `engine`'s job).

use crate::problem::Problem;
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
    /// `-- kind: <name>`: the model's rows are the input of a Rust step
    /// ([`crate::fit`]) whose table is the model's.
    pub kind: Option<String>,
}

/// The header directives of a model.
struct Directives {
    materialized: Materialized,
    incremental: Option<String>,
    by_day: bool,
    kind: Option<String>,
}

/// The text of a model's header comment lines (the `--` lines before the
/// SQL), without the dashes.
fn header_lines(sql: &str) -> impl Iterator<Item = &str> {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .map(|l| l.trim_start_matches('-').trim())
        .filter(|l| !l.is_empty())
}

/// What a model's header comment says of it, as one paragraph: its `--`
/// lines before the SQL, without the directives (`materialized:`,
/// `incremental:`) and the column lines. BI tools show it as the table's
/// comment.
pub fn description(sql: &str) -> String {
    let lines: Vec<&str> = header_lines(sql)
        .filter(|l| {
            !l.starts_with("materialized:") && !l.starts_with("incremental:") && !l.starts_with("kind:") && column_line(l).is_none()
        })
        .collect();
    lines.join(" ")
}

/// `column NAME: text` of a header line.
fn column_line(line: &str) -> Option<(String, String)> {
    let (name, text) = line.strip_prefix("column ")?.split_once(':')?;
    let name = name.trim();
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then(|| (name.to_string(), text.trim().to_string()))
}

/// What a model's header says of each of its columns (`-- column NAME:
/// text`), in order. BI tools show them as the columns' comments.
pub fn column_descriptions(sql: &str) -> Vec<(String, String)> {
    header_lines(sql).filter_map(column_line).collect()
}

/// The directives of a model's header comment (the `--` lines before the
/// SQL). An error names the line of the directive.
fn directives(sql: &str, layer: Layer) -> Result<Directives, (usize, String)> {
    let mut materialized = if layer == Layer::Staging { Materialized::View } else { Materialized::Table };
    let mut incremental = None;
    let mut by_day = false;
    let mut incremental_line = 1;
    let mut kind = None;
    let mut kind_line = 1;
    let header = sql.lines().map(str::trim).enumerate().take_while(|(_, l)| l.is_empty() || l.starts_with("--"));
    for (i, line) in header {
        let Some((key, value)) = line.trim_start_matches('-').trim().split_once(':') else { continue };
        let value = value.trim();
        let at = |message: String| (i + 1, message);
        match key.trim() {
            "materialized" => {
                materialized = match value {
                    "view" => Materialized::View,
                    "table" => Materialized::Table,
                    other => return Err(at(format!("materialized: {other:?} must be \"view\" or \"table\""))),
                }
            }
            "incremental" => {
                let mut words = value.split_whitespace();
                let column = words.next().unwrap_or_default();
                if column.is_empty() || !column.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    return Err(at(format!("incremental: {value:?} must name the model's date column")));
                }
                by_day = match (words.next(), words.next(), words.next()) {
                    (None, ..) | (Some("by"), Some("month"), None) => false,
                    (Some("by"), Some("day"), None) => true,
                    _ => {
                        return Err(at(format!(
                            "incremental: {value:?} must be `<date column>`, `<date column> by day` or `<date column> by month`"
                        )))
                    }
                };
                incremental = Some(column.to_string());
                incremental_line = i + 1;
            }
            "kind" => {
                if crate::fit::kind(value).is_none() {
                    let known: Vec<&str> = crate::fit::names().collect();
                    return Err(at(format!("kind: {value:?} is not a model kind; known kinds: {}", known.join(", "))));
                }
                kind = Some(value.to_string());
                kind_line = i + 1;
            }
            _ => {}
        }
    }
    if incremental.is_some() && materialized == Materialized::View {
        return Err((incremental_line, "incremental: a view cannot keep rows; add `-- materialized: table`".into()));
    }
    if kind.is_some() && materialized == Materialized::View {
        return Err((kind_line, "kind: a fitted model is a table; remove `-- materialized: view`".into()));
    }
    if kind.is_some() && incremental.is_some() {
        return Err((kind_line, "kind: a fitted model is refit on every run and cannot be incremental".into()));
    }
    Ok(Directives {
        materialized,
        incremental,
        by_day,
        kind,
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
    /// Every problem of `sql/`, each naming its file and line.
    #[error("{}", crate::problem::lines(.0))]
    Invalid(Vec<Problem>),
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

/// `sql/` read as far as it can be: what `tenure validate` goes on planning
/// when some files have problems.
#[derive(Debug)]
pub struct PartialCatalog {
    /// The models and checks without problems of their own, in build order.
    /// A model reading a broken one keeps it in `depends_on`.
    pub catalog: Catalog,
    /// Models left out for their problems (a file that does not parse, reads
    /// an unknown table, is in a cycle, ...): whatever reads them cannot be
    /// planned.
    pub broken: BTreeSet<String>,
    pub problems: Vec<Problem>,
}

impl Catalog {
    /// Read `sql_dir`, parse each file, and order the graph. Every problem is
    /// reported at once, naming the file and line.
    pub fn load(sql_dir: &Path) -> Result<Catalog, CatalogError> {
        let partial = Catalog::load_partial(sql_dir);
        if partial.problems.is_empty() {
            Ok(partial.catalog)
        } else {
            Err(CatalogError::Invalid(partial.problems))
        }
    }

    /// Read `sql_dir` as far as it can be: every problem, and the catalog of
    /// the models and checks without one.
    pub fn load_partial(sql_dir: &Path) -> PartialCatalog {
        let mut problems = Vec::new();
        let mut broken = BTreeSet::new();
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
            let is_check = parts.len() == 2 && parts[0] == "checks";
            let key = if is_check { format!("check {name:?}") } else { format!("model {name:?}") };
            let problem = |line: Option<usize>, message: String| Problem::new(file.display().to_string(), line, key.clone(), message);
            let sql = match std::fs::read_to_string(&file) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(problem(None, format!("cannot read ({e})")));
                    if !is_check {
                        broken.insert(name);
                    }
                    continue;
                }
            };
            let refs = match table_references(&ctx, &sql) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(problem(Some(e.line.unwrap_or_else(|| statement_line(&sql))), e.message));
                    if !is_check {
                        broken.insert(name);
                    }
                    continue;
                }
            };
            if is_check {
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
                    problems.push(Problem::new(
                        file.display().to_string(),
                        None,
                        "",
                        "a model must be sql/staging/*.sql, sql/intermediate/*.sql or sql/marts/*.sql (checks: sql/checks/*.sql)",
                    ));
                    broken.insert(name);
                    continue;
                }
            };
            if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                problems.push(Problem::new(
                    file.display().to_string(),
                    None,
                    "",
                    format!("model name {name:?} must be lowercase letters, digits and '_'"),
                ));
                broken.insert(name);
                continue;
            }
            if SOURCES.contains(&name.as_str()) {
                problems.push(problem(None, "the name is reserved for a source table; rename the file".into()));
                continue;
            }
            if let Some(other) = models.get(&name) {
                problems.push(problem(None, format!("is also defined by {}", other.file.display())));
                continue;
            }
            let Directives {
                materialized,
                incremental,
                by_day,
                kind,
            } = match directives(&sql, layer) {
                Ok(d) => d,
                Err((line, message)) => {
                    problems.push(problem(Some(line), message));
                    broken.insert(name);
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
                    kind,
                },
            );
        }
        // Unknown tables: known are the sources, the models, and the models
        // left out above (whose own problem is reported already).
        let known = |r: &String| models.contains_key(r) || broken.contains(r) || SOURCES.contains(&r.as_str());
        let unknown = |file: &Path, key: String, sql: &str, refs: &BTreeSet<String>| -> Vec<Problem> {
            refs.iter()
                .filter(|r| !known(r))
                .map(|r| {
                    let line = line_of_word(sql, r).unwrap_or_else(|| statement_line(sql));
                    Problem::new(file.display().to_string(), Some(line), key.clone(), format!("reads unknown table {r:?}"))
                })
                .collect()
        };
        let mut reading_unknown = Vec::new();
        for m in models.values() {
            let found = unknown(&m.file, format!("model {:?}", m.name), &m.sql, &m.depends_on);
            if !found.is_empty() {
                reading_unknown.push(m.name.clone());
                problems.extend(found);
            }
        }
        let mut sound_checks = Vec::new();
        for c in checks {
            let found = unknown(&c.file, format!("check {:?}", c.name), &c.sql, &c.depends_on);
            if found.is_empty() {
                sound_checks.push(c);
            } else {
                problems.extend(found);
            }
        }
        let mut checks = sound_checks;
        for name in reading_unknown {
            models.remove(&name);
            broken.insert(name);
        }
        for m in models.values_mut() {
            m.depends_on.retain(|r| !SOURCES.contains(&r.as_str()));
        }
        for c in &mut checks {
            c.depends_on.retain(|r| !SOURCES.contains(&r.as_str()));
        }
        let (ordered, cycle) = topo_sort(models, &broken);
        if let Some(first) = cycle.first() {
            let names: Vec<String> = cycle.iter().map(|m| format!("{} ({})", m.name, m.file.display())).collect();
            let line = first.depends_on.iter().find_map(|d| line_of_word(&first.sql, d));
            problems.push(Problem::new(
                first.file.display().to_string(),
                line,
                format!("model {:?}", first.name),
                format!("models form a cycle; none of these can run first: {}", names.join(", ")),
            ));
            broken.extend(cycle.into_iter().map(|m| m.name));
        }
        PartialCatalog {
            catalog: Catalog { models: ordered, checks },
            broken,
            problems,
        }
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

fn collect_sql_files(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::new(
                dir.display().to_string(),
                None,
                "",
                format!("cannot read the SQL folder ({e}); set project.sql_dir in the config"),
            ));
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

/// Why a SQL text's tables could not be found, and where.
struct SqlError {
    line: Option<usize>,
    message: String,
}

/// The tables a single-statement SQL text reads (CTE names excluded).
fn table_references(ctx: &SessionContext, sql: &str) -> Result<BTreeSet<String>, SqlError> {
    let state = ctx.state();
    let mut statements = datafusion::sql::parser::DFParser::parse_sql(sql).map_err(|e| {
        let message = e.to_string();
        SqlError {
            line: parser_line(&message),
            message: format!("cannot parse SQL: {message}"),
        }
    })?;
    if statements.len() != 1 {
        return Err(SqlError {
            line: None,
            message: format!("must hold exactly one SQL statement, found {}", statements.len()),
        });
    }
    let statement = statements.pop_front().ok_or(SqlError {
        line: None,
        message: "empty SQL file".into(),
    })?;
    let refs = state.resolve_table_references(&statement).map_err(|e| SqlError {
        line: None,
        message: format!("cannot resolve tables: {e}"),
    })?;
    Ok(refs.iter().map(|r| r.table().to_string()).collect())
}

/// The line a SQL parser error names (`... at Line: 7, Column: 12`).
fn parser_line(message: &str) -> Option<usize> {
    let (_, rest) = message.rsplit_once("Line: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|l| *l > 0)
}

/// The first line of the statement in a SQL file: after the header comments.
pub fn statement_line(sql: &str) -> usize {
    sql.lines()
        .position(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with("--")
        })
        .map_or(1, |i| i + 1)
}

/// The first line where `word` appears in `sql` as a whole identifier
/// (letters, digits and `_` on neither side; ASCII case ignored), outside
/// `--` comments.
pub fn line_of_word(sql: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let word = word.to_ascii_lowercase();
    let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    for (i, line) in sql.lines().enumerate() {
        let code = line.split("--").next().unwrap_or_default().to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = code[from..].find(&word) {
            let start = from + at;
            let end = start + word.len();
            if !is_ident(code[..start].chars().next_back()) && !is_ident(code[end..].chars().next()) {
                return Some(i + 1);
            }
            from = end;
        }
    }
    None
}

/// The models in build order, reading only models ordered before them or
/// `done` already; and those that never become ready (a cycle, or downstream
/// of one).
fn topo_sort(models: BTreeMap<String, Model>, done: &BTreeSet<String>) -> (Vec<Model>, Vec<Model>) {
    let mut remaining = models;
    let mut done = done.clone();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .values()
            .filter(|m| m.depends_on.iter().all(|d| done.contains(d)))
            .map(|m| m.name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            if let Some(m) = remaining.remove(&name) {
                done.insert(name);
                order.push(m);
            }
        }
    }
    (order, remaining.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_the_header_without_directives() {
        let sql = "-- m: what it is.\n-- grain: one row per month.\n-- incremental: month\n\
                   -- column month: the first day.\n-- column bad name: no\nselect 1 -- not this\n-- nor this\n";
        assert_eq!(description(sql), "m: what it is. grain: one row per month. column bad name: no");
        assert_eq!(column_descriptions(sql), vec![("month".to_string(), "the first day.".to_string())]);
        assert_eq!(description("select 1"), "");
    }

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
        assert!(err.contains("a.sql:1: model \"a\": materialized: \"cached\" must be"), "{err}");
        assert!(err.contains("b.sql:1: model \"b\": incremental: a view cannot keep rows"), "{err}");
        assert!(err.contains("c.sql:1: model \"c\": incremental: \"Month\" must name the model's date column"), "{err}");
        assert!(err.contains("d.sql:1: model \"d\": incremental: \"month by week\" must be `<date column>`, `<date column> by day`"), "{err}");

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

    #[test]
    fn a_kind_header_makes_a_fitted_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "marts/m.sql", "-- m: the model\n-- kind: bgnbd_gamma_gamma\nselect * from events");
        let c = Catalog::load(dir.path()).expect("catalog");
        let m = c.model("m").expect("model");
        assert_eq!((m.kind.as_deref(), m.materialized), (Some("bgnbd_gamma_gamma"), Materialized::Table));
        assert_eq!(description(&m.sql), "m: the model");

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "marts/a.sql", "-- kind: bgnbd\nselect * from events");
        write(dir.path(), "marts/b.sql", "-- kind: churn_scores\n-- materialized: view\nselect * from events");
        write(dir.path(), "marts/c.sql", "-- incremental: month\n-- kind: health_weights\nselect * from events");
        let err = Catalog::load(dir.path()).expect_err("bad kinds").to_string();
        assert!(err.contains("a.sql:1: model \"a\": kind: \"bgnbd\" is not a model kind; known kinds: bgnbd_gamma_gamma,"), "{err}");
        assert!(err.contains("b.sql:1: model \"b\": kind: a fitted model is a table"), "{err}");
        assert!(err.contains("c.sql:2: model \"c\": kind: a fitted model is refit on every run and cannot be incremental"), "{err}");
    }

    /// `tenure validate` plans what it can: a broken model is left out and
    /// named in `broken`, its readers stay (reading it), and every problem
    /// names its line.
    #[test]
    fn a_partial_catalog_keeps_the_sound_models_and_names_the_broken() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "staging/a.sql", "select * from events");
        write(dir.path(), "marts/x.sql", "-- grain: month\n\nselect *\nfrom a\njoin mrr_montly using (customer_id)");
        write(dir.path(), "marts/y.sql", "-- reads x\nselect * from x");
        write(dir.path(), "marts/z.sql", "-- header\nselect * frm a");
        write(dir.path(), "checks/x_ok.sql", "select * from x where 1 = 0");
        let p = Catalog::load_partial(dir.path());
        let shown: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        let x = dir.path().join("marts/x.sql").display().to_string();
        assert!(shown.contains(&format!("{x}:5: model \"x\": reads unknown table \"mrr_montly\"")), "{shown:?}");
        let z = dir.path().join("marts/z.sql").display().to_string();
        assert!(shown.iter().any(|s| s.starts_with(&format!("{z}:2: model \"z\": cannot parse SQL"))), "{shown:?}");
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(p.broken.iter().map(String::as_str).collect::<Vec<_>>(), ["x", "z"]);
        let names: Vec<&str> = p.catalog.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "y"]);
        assert_eq!(p.catalog.checks.len(), 1);
        assert!(matches!(Catalog::load(dir.path()), Err(CatalogError::Invalid(list)) if list.len() == 2));
    }

    #[test]
    fn identifiers_are_found_as_whole_words_outside_comments() {
        let sql = "-- reads mrr_monthly\nwith m as (\n  select * from mrr_monthly_x\n)\nselect * from MRR_MONTHLY -- mrr_monthly";
        assert_eq!(line_of_word(sql, "mrr_monthly"), Some(5));
        assert_eq!(line_of_word(sql, "nope"), None);
        assert_eq!(statement_line(sql), 2);
        assert_eq!(parser_line("sql parser error: Expected: end of statement, found: a at Line: 2, Column: 15"), Some(2));
    }
}
