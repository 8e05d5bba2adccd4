//! The limits of one query on a shared server: a timeout, a cap on the rows
//! returned, and cancellation when the client asks (a PostgreSQL cancel
//! request, psql's Ctrl-C) or goes away. [`LimitedPlanner`] puts a
//! [`LimitExec`] at the root of every physical plan of the server's session,
//! so every way a query runs (simple or extended protocol, cursors, catalog
//! queries) is covered, including the time spent computing before the first
//! row. This module decides nothing about *what* may run.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use datafusion_postgres::pgwire::api::cancel::CancelHandler;
use datafusion_postgres::pgwire::api::ConnectionManager;
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use datafusion_postgres::pgwire::messages::startup::SecretKey;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Why a query stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("canceling statement due to statement timeout ({} s; server.query_timeout_seconds or SET statement_timeout)", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the result has more than {0} rows (server.max_rows); add a LIMIT or aggregate")]
    TooManyRows(u64),
    #[error("canceling statement due to user request")]
    Canceled,
    #[error("canceling statement: the client disconnected")]
    Disconnected,
}

impl Stopped {
    /// The PostgreSQL SQLSTATE of this stop.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Stopped::TooManyRows(_) => "54000", // program_limit_exceeded
            _ => "57014",                       // query_canceled
        }
    }
}

/// The server-wide limits of one query.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub timeout: Option<Duration>,
    pub max_rows: Option<u64>,
}

tokio::task_local! {
    static CONNECTION: Arc<Connection>;
}

/// One client connection, as the queries it runs see it: the task serving
/// the connection carries it (a task-local), so a plan executed there finds it.
pub struct Connection {
    /// A second handle on the client's socket, only ever watched for the
    /// peer closing it (never read or written).
    watch: Option<TcpStream>,
    cancel: Notify,
    statement_timeout: Mutex<Option<Duration>>,
    key: OnceLock<(i32, Bytes)>,
}

impl Connection {
    pub fn new(watch: Option<TcpStream>) -> Arc<Connection> {
        Arc::new(Connection {
            watch,
            cancel: Notify::new(),
            statement_timeout: Mutex::new(None),
            key: OnceLock::new(),
        })
    }

    /// The connection of the task running now, if it serves one.
    pub fn current() -> Option<Arc<Connection>> {
        CONNECTION.try_with(|c| c.clone()).ok()
    }

    /// Run `f` (the connection's whole protocol loop) as this connection.
    pub async fn scope<F: Future>(self: Arc<Self>, f: F) -> F::Output {
        CONNECTION.scope(self, f).await
    }

    /// The client's own `SET statement_timeout`, which may shorten the server's.
    pub fn set_statement_timeout(&self, timeout: Option<Duration>) {
        *self.statement_timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
    }

    /// The (process id, secret key) pair the client cancels its queries with.
    pub fn set_key(&self, pid: i32, secret: &SecretKey) {
        let _ = self.key.set((pid, secret.to_bytes()));
    }

    /// Stop the query running on this connection, if any.
    pub fn cancel(&self) {
        self.cancel.notify_waiters();
    }

    /// Resolves when the peer closed its side of the socket (or it broke).
    async fn closed(&self) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        loop {
            match watch.ready(Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() => return,
                // Data waiting (the client's next message, for the protocol
                // loop to read later): forget this readiness without reading,
                // then wait for the next event on the socket.
                Ok(_) => {
                    let _ = watch.try_io(Interest::READABLE, || {
                        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                    });
                }
                Err(_) => return,
            }
        }
    }
}

/// Every open connection, for cancel requests (which arrive on a new one).
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Weak<Connection>>>,
}

impl Connections {
    pub fn insert(&self, connection: &Arc<Connection>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::downgrade(connection));
        id
    }

    pub fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    fn cancel(&self, pid: i32, secret: &Bytes) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let target = open
            .values()
            .filter_map(Weak::upgrade)
            .find(|c| c.key.get().is_some_and(|(p, s)| *p == pid && s == secret));
        match target {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }
}

/// Answers cancel requests: stops the query of the connection they name,
/// whether it is still being planned (pgwire's own cancel) or streaming rows.
pub struct Cancel {
    pub manager: Arc<ConnectionManager>,
    pub connections: Arc<Connections>,
}

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let planning = self.manager.cancel(request.pid, &request.secret_key).await;
        let running = self.connections.cancel(request.pid, &request.secret_key.to_bytes());
        tracing::debug!(pid = request.pid, found = planning || running, "cancel request");
    }
}

/// Plans like DataFusion, then puts a [`LimitExec`] on top.
#[derive(Debug)]
pub struct LimitedPlanner {
    limits: Limits,
}

#[async_trait]
impl QueryPlanner for LimitedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await?;
        Ok(Arc::new(LimitExec::new(plan, self.limits)))
    }
}

/// Make every query of `ctx` run under `limits`.
pub fn install(ctx: &SessionContext, limits: Limits) {
    let state = ctx.state_ref();
    let existing = state.read().clone();
    let limited = SessionStateBuilder::new_from_existing(existing)
        .with_query_planner(Arc::new(LimitedPlanner { limits }))
        .build();
    *state.write() = limited;
}

/// The root of every plan on the server: one output stream that stops with
/// an error ([`Stopped`]) on timeout, too many rows, cancel or disconnect,
/// dropping the plan below it (which stops its work).
#[derive(Debug, Clone)]
pub struct LimitExec {
    input: Arc<dyn ExecutionPlan>,
    limits: Limits,
    properties: Arc<PlanProperties>,
}

impl LimitExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, limits: Limits) -> LimitExec {
        // One stream, polled by the connection's task (where the connection is known).
        let input: Arc<dyn ExecutionPlan> = if input.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(input))
        } else {
            input
        };
        let properties = input.properties().clone();
        LimitExec {
            input,
            limits,
            properties,
        }
    }
}

impl DisplayAs for LimitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LimitExec: timeout={:?}, max_rows={:?}",
            self.limits.timeout, self.limits.max_rows
        )
    }
}

impl ExecutionPlan for LimitExec {
    fn name(&self) -> &str {
        "LimitExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(LimitExec::new(input, self.limits))),
            _ => Err(DataFusionError::Internal("LimitExec has exactly one input".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let inner = self.input.execute(partition, context)?;
        let connection = Connection::current();
        let client_timeout = connection
            .as_ref()
            .and_then(|c| *c.statement_timeout.lock().unwrap_or_else(|e| e.into_inner()));
        let timeout = match (self.limits.timeout, client_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let stop: Pin<Box<dyn Future<Output = Stopped> + Send>> = match connection {
            Some(c) => Box::pin(async move {
                tokio::select! {
                    _ = c.closed() => Stopped::Disconnected,
                    _ = c.cancel.notified() => Stopped::Canceled,
                }
            }),
            None => Box::pin(std::future::pending()),
        };
        Ok(Box::pin(LimitStream {
            schema: inner.schema(),
            inner: Some(inner),
            deadline: timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            stop,
            rows: 0,
            max_rows: self.limits.max_rows,
        }))
    }
}

struct LimitStream {
    schema: SchemaRef,
    inner: Option<SendableRecordBatchStream>,
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    stop: Pin<Box<dyn Future<Output = Stopped> + Send>>,
    rows: u64,
    max_rows: Option<u64>,
}

impl LimitStream {
    fn halt(&mut self, why: Stopped) -> Poll<Option<Result<RecordBatch>>> {
        // Dropping the plan's stream stops its work.
        self.inner = None;
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(why)))))
    }
}

impl Stream for LimitStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.inner.is_none() {
            return Poll::Ready(None);
        }
        if let Some((timeout, sleep)) = this.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                let timeout = *timeout;
                return this.halt(Stopped::Timeout(timeout));
            }
        }
        if let Poll::Ready(why) = this.stop.as_mut().poll(cx) {
            return this.halt(why);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                this.rows += batch.num_rows() as u64;
                match this.max_rows {
                    Some(max) if this.rows > max => this.halt(Stopped::TooManyRows(max)),
                    _ => Poll::Ready(Some(Ok(batch))),
                }
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl RecordBatchStream for LimitStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(ctx: &SessionContext, sql: &str) -> std::result::Result<usize, String> {
        let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        let batches = df.collect().await.map_err(|e| e.to_string())?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn row_cap_and_timeout_stop_queries() {
        let ctx = SessionContext::new();
        install(
            &ctx,
            Limits {
                timeout: Some(Duration::from_millis(300)),
                max_rows: Some(10),
            },
        );
        assert_eq!(count(&ctx, "select * from generate_series(1, 10)").await, Ok(10));
        let e = count(&ctx, "select * from generate_series(1, 11)")
            .await
            .expect_err("11 rows");
        assert!(e.contains("more than 10 rows"), "{e}");
        let slow = "select count(*) from generate_series(1, 100000000000) a";
        let e = count(&ctx, slow).await.expect_err("slow");
        assert!(e.contains("statement timeout"), "{e}");
    }
}
