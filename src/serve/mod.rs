//! `tenure serve`: the published tables over the PostgreSQL wire protocol,
//! for BI tools (Metabase, Superset, Tableau, DBeaver, Grafana) and for
//! analysts with psql or psycopg.
//!
//! A thin adapter over the one read-only [`QueryService`]: datafusion-postgres
//! (on pgwire) speaks the protocol, both its simple and extended (prepared,
//! parameterised) forms, maps Arrow types to PostgreSQL type OIDs and
//! provides `pg_catalog`; the query service owns the tables (always the
//! latest published versions, or earlier ones by name) and read-only
//! planning. This module adds only what a shared server needs: who may
//! connect ([`auth`]), how long a connection may take to log in and stay
//! idle ([`connection`]), what may run ([`policy`]), how long and how much
//! ([`limits`]), and PostgreSQL error codes ([`errors`]). It never writes to
//! the warehouse, and nothing a client sends reaches a file or URL.

mod auth;
mod compat;
mod connection;
mod errors;
mod flight;
mod limits;
mod policy;

use crate::config::{Config, ConfigError, ServerAuth};
use crate::query::{QueryError, QueryService};
use crate::storage::StorageError;
use crate::warehouse::Warehouse;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ConnectionManager;
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::{DfSessionService, QueryHook};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[source] ConfigError),
    #[error(
        "server.auth = \"none\" lets anyone who can connect query, so it listens on a loopback address only, not {0}; \
         set a password (server.auth = \"password\") or listen on 127.0.0.1"
    )]
    OpenToNetwork(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: TLS: {message}")]
    Tls { path: String, message: String },
    #[error(transparent)]
    Storage(Box<StorageError>),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("Arrow Flight SQL: {0}")]
    Flight(String),
    #[error("cannot set up pg_catalog: {0}")]
    Catalog(#[source] Box<datafusion::error::DataFusionError>),
}

/// What every connection shares.
struct Handlers {
    session: Arc<DfSessionService>,
    startup: auth::StartupConfig,
    cancel: Arc<limits::Cancel>,
    login_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    connections: Arc<limits::Connections>,
    flight: Option<flight::FlightServer>,
}

impl Server {
    /// Open the warehouse and listen on `listen` (default: `server.listen`;
    /// port 0 picks a free port, see [`Server::local_addr`]), and for Arrow
    /// Flight SQL on `flight_listen` (default: `server.flight_listen`, off
    /// when unset; see [`Server::flight_addr`]).
    pub async fn bind(
        config: &Config,
        listen: Option<SocketAddr>,
        flight_listen: Option<SocketAddr>,
    ) -> Result<Server, ServeError> {
        let settings = &config.server;
        if !settings.problems.is_empty() {
            return Err(ServeError::Config(ConfigError(settings.problems.clone())));
        }
        let listen = listen.unwrap_or(settings.listen);
        let flight_listen = flight_listen.or(settings.flight_listen);
        for addr in std::iter::once(listen).chain(flight_listen) {
            if settings.auth == ServerAuth::None && !addr.ip().is_loopback() {
                return Err(ServeError::OpenToNetwork(addr));
            }
        }
        let (tls, certificate) = match &settings.tls {
            Some(t) => {
                let (acceptor, pem) = auth::tls(t)?;
                (Some(acceptor), Some(Arc::new(pem)))
            }
            None => (None, None),
        };

        let warehouse = Warehouse::of(config).map_err(|e| ServeError::Storage(Box::new(e)))?;
        let service = Arc::new(QueryService::open(warehouse).await?);
        let ctx = service.context().clone();
        let catalog = ctx.state().config().options().catalog.default_catalog.clone();
        setup_pg_catalog(&ctx, &catalog, EmptyContextProvider).map_err(ServeError::Catalog)?;
        ctx.register_udf(version_udf());
        compat::register(&ctx);
        limits::install(
            &ctx,
            limits::Limits {
                timeout: settings.query_timeout,
                max_rows: settings.max_rows,
                memory: settings.query_memory,
            },
        );
        let compat = Arc::new(compat::Compat::with_comments(&comments(config)));
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(policy::Policy::new(service.clone(), compat.clone())),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(policy::Executor::new(service.clone(), compat)),
        ];
        let manager = Arc::new(ConnectionManager::new());
        let connections = Arc::new(limits::Connections::default());
        let credentials = match &settings.auth {
            ServerAuth::None => None,
            ServerAuth::Password { user, password } => Some(Arc::new(auth::Credentials::new(user, password))),
        };
        let flight = match flight_listen {
            Some(addr) => Some(flight::FlightServer::bind(addr, service.clone(), credentials.clone(), settings).await?),
            None => None,
        };
        let handlers = Arc::new(Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
            startup: auth::StartupConfig {
                credentials,
                certificate,
                manager: manager.clone(),
                slots: Arc::new(Semaphore::new(settings.max_connections)),
            },
            cancel: Arc::new(limits::Cancel {
                manager,
                connections: connections.clone(),
            }),
            login_timeout: settings.login_timeout,
            idle_timeout: settings.idle_timeout,
        });

        let (listener, local_addr) = listen_on(listen).await?;
        let auth = match settings.auth {
            ServerAuth::None => "none",
            ServerAuth::Password { .. } => "password",
        };
        tracing::info!(
            listen = %local_addr,
            auth,
            tls = tls.is_some(),
            warehouse = %config.warehouse,
            "serving the published tables over the PostgreSQL protocol"
        );
        if tls.is_none() && !local_addr.ip().is_loopback() {
            tracing::warn!(listen = %local_addr, "queries and results cross the network unencrypted; set server.tls_cert and server.tls_key");
        }
        Ok(Server {
            listener,
            local_addr,
            handlers,
            tls,
            connections,
            flight,
        })
    }

    /// The address Arrow Flight SQL listens on, when it is on.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight.as_ref().map(|f| f.local_addr())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve connections until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        // Flight SQL serves in a task of its own, stopped with the rest.
        let stop = tokio_util::sync::CancellationToken::new();
        let flight = self.flight.take().map(|f| {
            let stop = stop.clone();
            tokio::spawn(async move { f.run(stop.cancelled_owned()).await })
        });
        let served = self.serve_pgwire(shutdown).await;
        stop.cancel();
        if let Some(task) = flight {
            match task.await {
                Ok(result) => result?,
                Err(e) => return Err(ServeError::Flight(e.to_string())),
            }
        }
        served
    }

    async fn serve_pgwire(&self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        tokio::pin!(shutdown);
        let logins = Arc::new(connection::Logins::new(connection::MAX_LOGINS));
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors: make room at the expense of
                        // the oldest connection still logging in.
                        let evicted = out_of_descriptors(&e) && logins.evict_oldest();
                        tracing::warn!(error = %e, evicted, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(if evicted { 10 } else { 100 })).await;
                        continue;
                    }
                },
            };
            let login = logins.admit();
            let handlers = self.handlers.clone();
            let tls = self.tls.clone();
            let connections = self.connections.clone();
            tokio::spawn(async move {
                let protocol = connection::Protocol {
                    session: handlers.session.clone(),
                    startup: Arc::new(auth::Startup::new(&handlers.startup)),
                    cancel: handlers.cancel.clone(),
                    tls,
                    login_timeout: handlers.login_timeout,
                    idle_timeout: handlers.idle_timeout,
                };
                let connection = limits::Connection::new();
                let id = connections.insert(&connection);
                tracing::debug!(peer = %peer, "client connected");
                match connection.clone().scope(protocol.serve(socket, login, &connection)).await {
                    Ok(connection::End::Closed) => tracing::debug!(peer = %peer, "connection closed"),
                    Ok(end) => tracing::debug!(peer = %peer, reason = ?end, "connection closed by the server"),
                    Err(e) => tracing::debug!(peer = %peer, error = %e, "connection ended with an error"),
                }
                connections.remove(id);
            });
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

/// A listener on `addr`, and the address it got (port 0: a free one).
async fn listen_on(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bind = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

/// EMFILE or ENFILE: the process or the system has no file descriptor left.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What each published table and its columns hold, for BI tools
/// (`pg_description`, `obj_description`, `col_description`): a mart's SQL
/// header and its `-- column` lines; a sentence for the other tables, and
/// for the month close's columns. A catalog that does not load gives the
/// marts no comment.
fn comments(config: &Config) -> compat::Comments {
    let mut comments = compat::Comments {
        tables: vec![
            ("events".into(), "events: every accepted, de-duplicated raw event, with typed columns and its lineage (source_object, source_row, run_id) (EVENTS.md).".into()),
            ("rejects".into(), "rejects: every rejected raw row, with its reason and detail (EVENTS.md).".into()),
            (crate::close::RESTATEMENTS.into(), "restatements: each cell of a closed month whose current figure differs from its latest close (METRICS.md §12).".into()),
        ],
        columns: Vec::new(),
    };
    let restatements = [
        ("month", "the closed month (first day)."),
        ("table_name", "the reported table the cell belongs to, e.g. mrr_bridge_monthly."),
        ("segment", "the row's segment; NULL for tables without one."),
        ("column_name", "the column whose figure changed."),
        ("reported", "the figure as closed, as text (decimals with 4 fractional digits); NULL for NULL or a row only the current table has."),
        ("current", "the figure the tables hold now, as text; NULL for NULL or a row the current table no longer has."),
        ("closed_on", "the as-of date of the run that closed this version."),
        ("close_version", "the latest close of the month the current figure is compared with."),
    ];
    for (column, text) in restatements {
        comments.columns.push((crate::close::RESTATEMENTS.into(), column.into(), text.into()));
    }
    let marts: Vec<(String, String)> = match crate::catalog::Catalog::load(&config.sql_dir) {
        Ok(catalog) => catalog
            .models
            .iter()
            .filter(|m| m.layer == crate::catalog::Layer::Marts)
            .map(|m| (m.name.clone(), m.sql.clone()))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the SQL models did not load; the marts have no comments");
            Vec::new()
        }
    };
    for (name, sql) in &marts {
        let description = crate::catalog::description(sql);
        if !description.is_empty() {
            comments.tables.push((name.clone(), description));
        }
        for (column, text) in crate::catalog::column_descriptions(sql) {
            comments.columns.push((name.clone(), column, text));
        }
    }
    for (table, _) in crate::close::CLOSED {
        let reported = crate::close::reported_name(table);
        comments.tables.push((
            reported.clone(),
            format!("reported_{table}: the rows of {table} of each closed month as reported, per close_version; append-only (METRICS.md §12)."),
        ));
        if let Some((_, sql)) = marts.iter().find(|(name, _)| name == table) {
            for (column, text) in crate::catalog::column_descriptions(sql) {
                comments.columns.push((reported.clone(), column, text));
            }
        }
        for (column, text) in [
            ("close_version", "1 for the month's first close, n+1 for each restatement by hand (tenure close --restate)."),
            ("closed_on", "the as-of date of the run that closed the month."),
            ("close_run_id", "the run that closed the month (its report is in _runs/)."),
        ] {
            comments.columns.push((reported.clone(), column.into(), text.into()));
        }
    }
    comments
}

/// The PostgreSQL version tenure answers as (`version()`, `server_version`).
const SERVER_VERSION: &str = "16.6";

/// `version()` as PostgreSQL words it: drivers and SQLAlchemy (Superset)
/// read the server's version from it and fail on anything else.
fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    use datafusion::scalar::ScalarValue;
    let text = format!(
        "PostgreSQL {SERVER_VERSION} on tenure {} (Apache DataFusion {}), read-only",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_server_session_reads_no_files() {
        let storage = crate::storage::Storage::new(Default::default());
        let warehouse = Warehouse::open(&storage, "memory:///serve-tests/warehouse").expect("memory");
        let service = QueryService::open(warehouse).await.expect("open");
        let ctx = service.context().clone();
        setup_pg_catalog(&ctx, crate::engine::PUBLISHED_CATALOG, EmptyContextProvider).expect("pg_catalog");
        for name in ctx.state().table_functions().keys() {
            assert!(
                crate::query::TABLE_FUNCTIONS.contains(&name.as_str()),
                "table function {name} is not known to be safe; check that it cannot read files or URLs, then list it in query::TABLE_FUNCTIONS"
            );
        }
    }
}
