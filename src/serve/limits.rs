//! The limits of one query on a shared server: a timeout, a cap on the rows
//! returned, a memory pool of its own, and cancellation when the client asks
//! (a PostgreSQL cancel request, psql's Ctrl-C) or goes away.
//! [`LimitedPlanner`] puts a [`LimitExec`] at the root of every physical
//! plan of the server's session, so every way a query runs (simple or
//! extended protocol, cursors, catalog queries) is covered, including the
//! time spent computing before the first row. This module decides nothing
//! about *what* may run.
//!
//! The memory limit is per query, not per server: [`LimitExec`] runs its
//! plan with a fresh [`FairSpillPool`] of `server.query_memory_mb` (the
//! server's disk manager, caches and stores otherwise), so one client's big
//! sort cannot fail another client's small query, and the operators that
//! can spill (sorts, grouped aggregates, sort-merge joins) do so to
//! temporary files within their share. An operator that cannot get the
//! memory it needs fails the query with DataFusion's "resources exhausted",
//! which the client sees as SQLSTATE 53200.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnv;
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
use datafusion_postgres::pgwire::tokio::server::MaybeTls;
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
    /// Bytes of memory the query may hold.
    pub memory: Option<usize>,
}

tokio::task_local! {
    static CONNECTION: Arc<Connection>;
}

/// One client connection, as the queries it runs see it: the task serving
/// the connection carries it (a task-local), so a plan executed there finds it.
pub struct Connection {
    /// A second handle on the client's socket, only ever watched for the
    /// peer closing it (never read or written); made once the client logged
    /// in, so that a connection logging in holds one file descriptor.
    watch: OnceLock<TcpStream>,
    cancel: Notify,
    statement_timeout: Mutex<Option<Duration>>,
    key: OnceLock<(i32, Bytes)>,
}

impl Connection {
    pub fn new() -> Arc<Connection> {
        Arc::new(Connection {
            watch: OnceLock::new(),
            cancel: Notify::new(),
            statement_timeout: Mutex::new(None),
            key: OnceLock::new(),
        })
    }

    /// Watch `socket` for the peer closing it, from now on.
    pub fn watch(&self, socket: &MaybeTls) {
        let tcp = match socket {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref().0,
            _ => return,
        };
        match duplicate(tcp) {
            Ok(watch) => {
                let _ = self.watch.set(watch);
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch the connection; a query of a client that goes away runs to its end"),
        }
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
        let Some(watch) = self.watch.get() else {
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

/// A second handle on the same socket.
#[cfg(unix)]
fn duplicate(socket: &TcpStream) -> std::io::Result<TcpStream> {
    use std::os::fd::AsFd;
    // The copy shares the socket's open file, non-blocking like it.
    let fd = socket.as_fd().try_clone_to_owned()?;
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

#[cfg(not(unix))]
fn duplicate(_socket: &TcpStream) -> std::io::Result<TcpStream> {
    Err(std::io::ErrorKind::Unsupported.into())
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
            "LimitExec: timeout={:?}, max_rows={:?}, memory={:?}",
            self.limits.timeout, self.limits.max_rows, self.limits.memory
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
        // The plan has one output partition (see `new`): one execution per query.
        let context = match self.limits.memory {
            Some(bytes) => own_memory_pool(&context, bytes),
            None => context,
        };
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

/// `context` with a memory pool of its own, of `bytes`.
fn own_memory_pool(context: &TaskContext, bytes: usize) -> Arc<TaskContext> {
    // The error of a query over its limit names its three biggest consumers.
    let top = std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN);
    let runtime = RuntimeEnv {
        memory_pool: Arc::new(TrackConsumersPool::new(FairSpillPool::new(bytes), top)),
        ..context.runtime_env().as_ref().clone()
    };
    // What a sort sets aside to merge its spilled runs must fit the pool with
    // room to sort, or a small limit would fail every sort that spills.
    let mut config = context.session_config().clone();
    let execution = &mut config.options_mut().execution;
    execution.sort_spill_reservation_bytes = execution.sort_spill_reservation_bytes.min(bytes / 4);
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        Arc::new(runtime),
    ))
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
                memory: None,
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

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn each_query_has_its_own_memory_pool_and_spills_within_it() {
        let ctx = SessionContext::new();
        install(
            &ctx,
            Limits {
                memory: Some(8 << 20),
                ..Limits::default()
            },
        );
        // Holds every value at once (80 MB): nothing to spill, so it fails, as out_of_memory.
        let hungry = "select array_agg(value) from generate_series(1, 10000000)";
        let e = run(&ctx, hungry).await.expect_err("over the limit");
        assert_eq!(super::super::errors::sqlstate(&e), "53200", "{e}");
        // A sort of 24 MB spills to disk within the 8 MB and returns every row.
        let sort = "select value from generate_series(1, 3000000) order by value desc";
        assert_eq!(run(&ctx, sort).await.expect("the sort spills"), 3_000_000);
        // The failed query's memory is not kept: the next one gets it all.
        let small = "select array_agg(value) from generate_series(1, 200000)";
        for _ in 0..3 {
            assert_eq!(run(&ctx, small).await.expect("within the limit"), 1);
        }
        // Without a limit the hungry query runs.
        let unlimited = SessionContext::new();
        install(&unlimited, Limits::default());
        assert_eq!(run(&unlimited, hungry).await.expect("no limit"), 1);
    }
}
