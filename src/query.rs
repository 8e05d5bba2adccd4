//! Read-only queries over the published tables: the one query service behind
//! `tenure query` and every protocol server (`tenure serve`). Its session's
//! default schema is the warehouse's published tables ([`PublishedTables`]:
//! every mart, `events` and `rejects`, at their latest version or an earlier
//! one asked for by name), and SQL is planned only after checking it is
//! read-only: no DDL, DML, `COPY` or statements. Nothing in the session can
//! name a file or URL: URL tables are off and no table function reads files.

mod published;

pub use published::{parse_name, AsOf, PublishedTables, FRESHNESS};

use crate::config::Config;
use crate::warehouse::Warehouse;
use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement;
use futures::TryStreamExt;
use std::sync::Arc;

/// The table functions a query session has. None reads files or URLs; a
/// test fails when a new dependency version registers one not listed here.
/// (`pg_get_keywords` is the server's static list of SQL keywords.)
pub const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "pg_get_keywords"];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot list the published tables of {warehouse}: {source}")]
    List {
        warehouse: String,
        #[source]
        source: DataFusionError,
    },
    #[error("cannot set up the query session: {0}")]
    Session(#[source] DataFusionError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("query refused or invalid: {0}")]
    Refused(#[source] DataFusionError),
    #[error("query failed: {0}")]
    Execute(#[source] DataFusionError),
}

/// Names of the published marts in a warehouse.
pub async fn published_marts(warehouse: &Warehouse) -> Result<Vec<String>, object_store::Error> {
    let marts = warehouse.marts();
    let listing = match marts.store.list_with_delimiter(Some(&marts.prefix)).await {
        Ok(listing) => listing,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// A session over one warehouse's published tables that plans read-only SQL.
pub struct QueryService {
    ctx: Arc<SessionContext>,
    tables: Arc<PublishedTables>,
}

impl QueryService {
    /// A session whose default schema is the published tables of `warehouse`.
    pub async fn open(warehouse: Warehouse) -> Result<QueryService, QueryError> {
        let ctx = crate::engine::published_session();
        let display = warehouse.display();
        let tables = Arc::new(PublishedTables::new(warehouse, ctx.runtime_env()));
        tables.refresh().await.map_err(|source| QueryError::List {
            warehouse: display,
            source,
        })?;
        let (catalog, schema) = {
            let state = ctx.state();
            let options = &state.config().options().catalog;
            (options.default_catalog.clone(), options.default_schema.clone())
        };
        let catalog = ctx
            .catalog(&catalog)
            .ok_or_else(|| QueryError::Session(DataFusionError::Plan(format!("no catalog {catalog:?}"))))?;
        catalog.register_schema(&schema, tables.clone()).map_err(QueryError::Session)?;
        Ok(QueryService {
            ctx: Arc::new(ctx),
            tables,
        })
    }

    /// The session (shared: protocol servers add their catalog tables to it).
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    /// Pick up tables published since the last look (at most once per [`FRESHNESS`]).
    pub async fn refresh(&self) -> datafusion::error::Result<()> {
        self.tables.refresh().await
    }

    /// Plan one parsed statement, refusing anything that is not read-only.
    pub async fn plan(&self, statement: Statement) -> datafusion::error::Result<LogicalPlan> {
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        crate::engine::read_only().verify_plan(&plan)?;
        Ok(plan)
    }

    /// Plan SQL text (one statement), refusing anything that is not read-only.
    pub async fn sql(&self, sql: &str) -> datafusion::error::Result<DataFrame> {
        self.refresh().await?;
        self.ctx.sql_with_options(sql, crate::engine::read_only()).await
    }
}

/// Run one read-only statement over the published tables of `config`'s
/// warehouse and return its rows (`tenure query`).
pub async fn query(config: &Config, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let service = QueryService::open(Warehouse::of(config)?).await?;
    let df = service.sql(sql).await.map_err(QueryError::Refused)?;
    df.execute_stream().await.map_err(QueryError::Execute)?.try_collect().await.map_err(QueryError::Execute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    async fn service() -> QueryService {
        let storage = Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, "memory:///query-tests/warehouse").expect("memory");
        QueryService::open(warehouse).await.expect("open")
    }

    #[tokio::test]
    async fn no_table_function_reads_files() {
        let service = service().await;
        let mut names: Vec<String> = service.context().state().table_functions().keys().cloned().collect();
        names.sort();
        for name in &names {
            assert!(
                TABLE_FUNCTIONS.contains(&name.as_str()),
                "table function {name} is not known to be safe; check that it cannot read files or URLs, then list it in TABLE_FUNCTIONS"
            );
        }
    }

    #[tokio::test]
    async fn writes_and_files_are_refused() {
        let service = service().await;
        for sql in [
            "create table t as select 1",
            "create view v as select 1",
            "create external table t stored as csv location '/etc/passwd'",
            "insert into t values (1)",
            "copy (select 1) to '/tmp/x.csv'",
            "drop table events",
            "set datafusion.execution.batch_size = 1",
            "select * from '/etc/passwd'",
            "select * from 'file:///etc/passwd'",
        ] {
            assert!(service.sql(sql).await.is_err(), "{sql} was accepted");
        }
        let rows: usize = service
            .sql("select 1 as one")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 1);
    }
}
