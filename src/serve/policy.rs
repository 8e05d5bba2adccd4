//! What a client may run: reads of the published tables, nothing else.
//!
//! [`Policy`] is the first query hook, so every statement of both protocols
//! passes it before datafusion-postgres's own hooks (`SET`/`SHOW`,
//! transactions, cursors) answer it. It refuses statements on connections
//! that did not authenticate, refuses anything that is not a read with
//! SQLSTATE 25006 (`CREATE`, `INSERT`, `COPY`, `CREATE EXTERNAL TABLE`, ...),
//! keeps `SET` from reaching the session the clients share (only per-client
//! settings apply; `SET datafusion.*` is refused, others are accepted and
//! ignored, as BI tools send many), and plans queries through
//! [`QueryService::plan`], which verifies the plan is read-only.
//! [`Executor`] is the last hook: it runs the simple-protocol queries the
//! others left, the same way. Neither writes anything.

use super::limits::Connection;
use crate::query::QueryService;
use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, Set, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::QueryHook;
use std::sync::Arc;
use std::time::Duration;

/// Marks a connection whose authentication succeeded (a session extension,
/// which a client cannot set, unlike startup parameters), and holds its
/// place among `server.max_connections` until the connection closes.
pub struct Authenticated {
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Authenticated {
    pub fn holding(place: tokio::sync::OwnedSemaphorePermit) -> Authenticated {
        Authenticated { _place: place }
    }
}

/// `SET` variables datafusion-postgres keeps per client.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

pub(super) enum Verdict {
    /// A query, `EXPLAIN` or `SHOW TABLES`-like: planned here, read-only checked.
    Plan,
    /// Answered by datafusion-postgres's hooks per client (`SET` of a client
    /// setting, `SHOW` variable, `BEGIN`/`COMMIT`/`ROLLBACK`, `FETCH`, `CLOSE`).
    Library,
    /// `DECLARE ... CURSOR FOR query`: the queries are checked, then the
    /// cursor hook runs them.
    Cursor(Vec<Query>),
    /// Accepted and ignored, answered with this command tag.
    Ignore(&'static str),
    Refuse(Box<ErrorInfo>),
}

fn error(code: &str, message: String) -> Box<ErrorInfo> {
    Box::new(ErrorInfo::new("ERROR".into(), code.into(), message))
}

fn user_error(info: Box<ErrorInfo>) -> PgWireError {
    PgWireError::UserError(info)
}

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// The command a statement starts with, as PostgreSQL names it in errors.
fn command(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace().map(str::to_ascii_uppercase);
    let first = words.next().unwrap_or_default();
    match (first.as_str(), words.next()) {
        ("CREATE" | "DROP" | "ALTER" | "TRUNCATE", Some(second)) => format!("{first} {second}"),
        _ => first,
    }
}

pub(super) fn judge(statement: &Statement) -> Verdict {
    match statement {
        Statement::Query(_) => Verdict::Plan,
        Statement::Explain { statement: inner, .. } if matches!(**inner, Statement::Query(_)) => Verdict::Plan,
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowFunctions { .. } => Verdict::Plan,
        Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Verdict::Library,
        Statement::Declare { stmts } => {
            let queries: Option<Vec<Query>> = stmts.iter().map(|d| d.for_query.as_deref().cloned()).collect();
            match queries {
                Some(q) => Verdict::Cursor(q),
                None => Verdict::Refuse(error(
                    "0A000",
                    "only DECLARE ... CURSOR FOR <query> is supported".into(),
                )),
            }
        }
        Statement::Set(set) => judge_set(set),
        Statement::Savepoint { .. } => Verdict::Ignore("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Verdict::Ignore("RELEASE"),
        Statement::Discard { .. } => Verdict::Ignore("DISCARD ALL"),
        Statement::Reset(_) => Verdict::Ignore("RESET"),
        Statement::Deallocate { .. } => Verdict::Ignore("DEALLOCATE"),
        other => Verdict::Refuse(error(
            "25006", // read_only_sql_transaction
            format!(
                "cannot execute {}: tenure serves the published tables read-only",
                command(other)
            ),
        )),
    }
}

fn judge_set(set: &Set) -> Verdict {
    match set {
        Set::SingleAssignment {
            scope,
            hivevar,
            variable,
            ..
        } => {
            let name = variable.to_string().to_ascii_lowercase();
            if scope.is_none() && !hivevar && CLIENT_SETTINGS.contains(&name.as_str()) {
                Verdict::Library
            } else if name.starts_with("datafusion.") {
                Verdict::Refuse(error(
                    "42501", // insufficient_privilege
                    format!("cannot SET {name}: the query engine's settings belong to the server"),
                ))
            } else {
                Verdict::Ignore("SET")
            }
        }
        // Kept per client by datafusion-postgres.
        Set::SetTimeZone { local: false, .. } => Verdict::Library,
        _ => Verdict::Ignore("SET"),
    }
}

fn authenticated(client: &(impl ClientInfo + ?Sized)) -> PgWireResult<()> {
    match client.session_extensions().get::<Authenticated>() {
        Some(_) => Ok(()),
        None => Err(user_error(error("28000", "not authenticated".into()))),
    }
}

/// Tell the connection's limits what the client set, and how it cancels.
fn note(client: &(impl ClientInfo + ?Sized)) {
    if let Some(connection) = Connection::current() {
        let (pid, secret) = client.pid_and_secret_key();
        connection.set_key(pid, &secret);
        let timeout = client
            .metadata()
            .get("statement_timeout_ms")
            .and_then(|ms| ms.parse().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        connection.set_statement_timeout(timeout);
    }
}

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

/// The highest `$n` placeholder of `statement`, 0 if none.
fn placeholders(statement: &Statement) -> usize {
    use datafusion::sql::sqlparser::ast::{Expr, Value, Visit, Visitor};
    struct Highest(usize);
    impl Visitor for Highest {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Value(v) = expr {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        self.0 = self.0.max(n);
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut highest = Highest(0);
    let _ = statement.visit(&mut highest);
    highest.0
}

/// `plan` with every placeholder `$1`..`$n` of `statement` in it.
/// datafusion-postgres decodes the parameters a client binds by position,
/// against the types of the placeholders the plan holds, in order: one the
/// plan lost (a catalog function the [compat](super::compat) rewrite
/// replaced, such as SQLAlchemy's `generate_subscripts(indkey, $1)`) would
/// shift every later parameter onto the wrong type (psycopg 3's "invalid
/// digit found in string"). A filter that is always true names the missing
/// ones, untyped, so each parameter is decoded as the client sent it.
fn every_parameter(plan: LogicalPlan, statement: &Statement) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::logical_expr::{lit, placeholder, LogicalPlanBuilder};
    let n = placeholders(statement);
    if n == 0 || matches!(plan, LogicalPlan::Explain(_)) {
        return Ok(plan);
    }
    let present = plan.get_parameter_types()?;
    let missing: Vec<String> = (1..=n).map(|i| format!("${i}")).filter(|id| !present.contains_key(id)).collect();
    let Some(predicate) = missing
        .into_iter()
        .map(|id| placeholder(id).is_null().or(lit(true)))
        .reduce(|a, b| a.and(b))
    else {
        return Ok(plan);
    };
    LogicalPlanBuilder::from(plan).filter(predicate)?.build()
}

/// The first hook: what may run at all.
pub struct Policy {
    service: Arc<QueryService>,
    compat: Arc<super::compat::Compat>,
}

impl Policy {
    pub fn new(service: Arc<QueryService>, compat: Arc<super::compat::Compat>) -> Policy {
        Policy { service, compat }
    }

    async fn check_cursor(&self, queries: &[Query]) -> PgWireResult<()> {
        for q in queries {
            let statement = DfStatement::Statement(Box::new(Statement::Query(Box::new(q.clone()))));
            self.service.plan(statement).await.map_err(api)?;
        }
        Ok(())
    }
}

#[async_trait]
impl QueryHook for Policy {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Err(e) = authenticated(client) {
            return Some(Err(e));
        }
        note(client);
        match judge(statement) {
            Verdict::Refuse(info) => Some(Err(user_error(info))),
            Verdict::Ignore(tag) => Some(Ok(Response::Execution(Tag::new(tag)))),
            Verdict::Cursor(queries) => self.check_cursor(&queries).await.err().map(Err),
            Verdict::Plan | Verdict::Library => self.service.refresh().await.err().map(|e| Err(api(e))),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Err(e) = authenticated(client) {
            return Some(Err(e));
        }
        if matches!(statement, Statement::Declare { .. } | Statement::Fetch { .. }) {
            // datafusion-postgres describes a cursor's rows only over the simple
            // protocol; over this one a client would get rows it was told not to
            // expect (psycopg 3 named cursors crash on it).
            return Some(Err(user_error(error(
                "0A000", // feature_not_supported
                "server-side cursors (DECLARE/FETCH) work over the simple query protocol only; \
                 use a client-side cursor"
                    .into(),
            ))));
        }
        match judge(statement) {
            Verdict::Refuse(info) => Some(Err(user_error(info))),
            Verdict::Ignore(_) => Some(Ok(empty_plan())),
            Verdict::Cursor(queries) => self.check_cursor(&queries).await.err().map(Err),
            Verdict::Library => None,
            Verdict::Plan => {
                if let Err(e) = self.service.refresh().await {
                    return Some(Err(api(e)));
                }
                let planned = self
                    .service
                    .plan(DfStatement::Statement(Box::new(self.compat.rewrite(statement))))
                    .await;
                Some(planned.and_then(|plan| every_parameter(plan, statement)).map_err(api))
            }
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Err(e) = authenticated(client) {
            return Some(Err(e));
        }
        note(client);
        match judge(statement) {
            Verdict::Refuse(info) => Some(Err(user_error(info))),
            Verdict::Ignore(tag) => Some(Ok(Response::Execution(Tag::new(tag)))),
            // The plan made at parse time runs (through the limits).
            Verdict::Plan | Verdict::Library | Verdict::Cursor(_) => None,
        }
    }
}

/// The last hook: runs simple-protocol statements no other hook answered
/// (the ones [`Policy`] let through as plans), read-only checked.
pub struct Executor {
    service: Arc<QueryService>,
    compat: Arc<super::compat::Compat>,
}

impl Executor {
    pub fn new(service: Arc<QueryService>, compat: Arc<super::compat::Compat>) -> Executor {
        Executor { service, compat }
    }
}

#[async_trait]
impl QueryHook for Executor {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let run = async {
            let plan = self
                .service
                .plan(DfStatement::Statement(Box::new(self.compat.rewrite(statement))))
                .await
                .map_err(api)?;
            let df = session_context.execute_logical_plan(plan).await.map_err(api)?;
            let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            encode_dataframe(df, &Format::UnifiedText, Some(format)).await
        };
        Some(run.await.map(Response::Query))
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::scalar::ScalarValue;
    use datafusion::sql::sqlparser::parser::Parser;

    fn verdict(sql: &str) -> Verdict {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        judge(&statements[0])
    }

    /// A placeholder the plan lost is named again, so the parameters after
    /// it keep their positions; the rows and columns stay the same.
    #[tokio::test]
    async fn every_bound_parameter_keeps_its_position() {
        let sql = "select n + $2 as n, $3 as s from (values (cast(1 as bigint))) as t(n)";
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql).remove(0);
        assert_eq!(placeholders(&statement), 3);
        let ctx = SessionContext::new();
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await
            .expect("plan");
        assert!(!plan.get_parameter_types().expect("types").contains_key("$1"));
        let schema = plan.schema().clone();
        let plan = every_parameter(plan, &statement).expect("filled");
        let types = plan.get_parameter_types().expect("types");
        assert_eq!(types.len(), 3, "{types:?}");
        assert_eq!(types.get("$2"), Some(&Some(DataType::Int64)));
        assert_eq!(plan.schema(), &schema);
        let values = ParamValues::from(vec![ScalarValue::Int64(Some(7)), ScalarValue::Int64(Some(41)), ScalarValue::from("x")]);
        let batches = ctx
            .execute_logical_plan(plan.with_param_values(values).expect("bound"))
            .await
            .expect("run")
            .collect()
            .await
            .expect("rows");
        let text = arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string();
        assert!(text.contains("| 42 | x |"), "{text}");
    }

    #[test]
    fn only_reads_pass() {
        for sql in [
            "select 1",
            "explain select 1",
            "show tables",
            "with a as (select 1) select * from a",
        ] {
            assert!(matches!(verdict(sql), Verdict::Plan), "{sql}");
        }
        for sql in [
            "begin",
            "commit",
            "set search_path = public",
            "show search_path",
            "set time zone 'UTC'",
        ] {
            assert!(matches!(verdict(sql), Verdict::Library), "{sql}");
        }
        for sql in [
            "set client_min_messages = warning",
            "set session characteristics as transaction read only",
        ] {
            assert!(matches!(verdict(sql), Verdict::Ignore(_)), "{sql}");
        }
        for (sql, code, cmd) in [
            ("create table t (a int)", "25006", "CREATE TABLE"),
            ("insert into t values (1)", "25006", "INSERT"),
            ("update t set a = 1", "25006", "UPDATE"),
            ("delete from t", "25006", "DELETE"),
            ("drop table mrr_monthly", "25006", "DROP TABLE"),
            ("copy mrr_monthly to '/tmp/x'", "25006", "COPY"),
            ("explain analyze insert into t values (1)", "25006", "EXPLAIN"),
            ("prepare p as select 1", "25006", "PREPARE"),
            ("set datafusion.execution.batch_size = 1", "42501", "SET"),
        ] {
            match verdict(sql) {
                Verdict::Refuse(info) => {
                    assert_eq!(info.code, code, "{sql}");
                    assert!(info.message.contains(cmd), "{sql}: {}", info.message);
                }
                _ => panic!("{sql} was not refused"),
            }
        }
    }
}
