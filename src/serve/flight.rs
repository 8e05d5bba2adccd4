//! Arrow Flight SQL beside the PostgreSQL protocol (`server.flight_listen`,
//! `tenure serve --flight-listen`): the same read-only [`QueryService`],
//! answered in Arrow record batches instead of rows, for Arrow-native
//! readers (ADBC from pandas, Polars and DuckDB; the Flight SQL JDBC and
//! ODBC drivers of DBeaver, Superset and Tableau). Decimals stay
//! `Decimal128(38, 4)`, dates stay dates: nothing is turned into text.
//!
//! What a shared server needs is the same as over pgwire:
//! - Who: with `auth = "password"`, a client logs in by the Flight SQL
//!   handshake with HTTP basic credentials (the configured user and
//!   password, checked against the same salted hash as SCRAM) and gets a
//!   bearer token, which every later call carries. A token unused for
//!   `server.idle_timeout_seconds` expires; at most `server.max_connections`
//!   sessions are held, the least recently used one giving way.
//! - What: statements pass the same [`policy`](super::policy) verdict and
//!   the query service's read-only planning; anything else (DDL, DML,
//!   `SET`, updates, bulk ingest, Substrait, transactions) is refused.
//! - How long and how much: plans run through the session's limits (query
//!   timeout, `max_rows`, a memory pool per query; see
//!   [`limits`](super::limits)), and at most `server.max_connections`
//!   queries stream at once.
//!
//! The catalog commands describe the published tables as catalog `tenure`,
//! schema `public`, type `TABLE`. A statement's ticket holds its SQL, which
//! is checked again when it is fetched (a client can send any ticket); a
//! prepared statement's handle names it in the client's session, with the
//! parameters the client bound.

use super::errors::sqlstate;
use super::policy::{judge, Verdict};
use super::ServeError;
use crate::query::QueryService;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// Prepared statements one session may hold at once.
const MAX_PREPARED: usize = 256;

/// The SQL text a ticket or prepared statement may hold, at most.
const MAX_SQL_BYTES: usize = 1 << 20;

/// A bound Flight SQL listener, ready to serve.
pub struct FlightServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: FlightSql,
    /// gRPC settings, TLS included (checked when bound).
    builder: tonic::transport::Server,
}

impl FlightServer {
    pub async fn bind(
        listen: SocketAddr,
        service: Arc<QueryService>,
        credentials: Option<Arc<super::auth::Credentials>>,
        settings: &crate::config::Server,
    ) -> Result<FlightServer, ServeError> {
        let tls = match &settings.tls {
            Some(t) => {
                let read = |path: &std::path::Path, what: &str| {
                    std::fs::read(path).map_err(|e| ServeError::Tls {
                        path: path.display().to_string(),
                        message: format!("cannot read the {what}: {e}"),
                    })
                };
                let identity = tonic::transport::Identity::from_pem(read(&t.cert, "certificate")?, read(&t.key, "private key")?);
                Some(tonic::transport::ServerTlsConfig::new().identity(identity))
            }
            None => None,
        };
        let mut builder = tonic::transport::Server::builder()
            // A client that keeps a connection open and answers no keepalive
            // ping is dropped.
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        let with_tls = tls.is_some();
        if let Some(tls) = tls {
            // rustls is built with two crypto providers (other dependencies
            // want aws-lc-rs), so name the one TLS uses here, as pgwire's does.
            let _ = rustls::crypto::ring::default_provider().install_default();
            builder = builder.tls_config(tls).map_err(|e| ServeError::Tls {
                path: settings.tls.as_ref().map(|t| t.cert.display().to_string()).unwrap_or_default(),
                message: e.to_string(),
            })?;
        }
        let (listener, local_addr) = super::listen_on(listen).await?;
        tracing::info!(listen = %local_addr, tls = with_tls, "serving the published tables over Arrow Flight SQL");
        let service = FlightSql {
            inner: Arc::new(Inner {
                service,
                credentials,
                sessions: Sessions {
                    map: Mutex::new(HashMap::new()),
                    idle: settings.idle_timeout,
                    max: settings.max_connections,
                },
                queries: Arc::new(Semaphore::new(settings.max_connections)),
                info: sql_info(),
            }),
        };
        Ok(FlightServer {
            listener,
            local_addr,
            service,
            builder,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        let incoming = tonic::transport::server::TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut builder = self.builder;
        builder
            .add_service(FlightServiceServer::new(self.service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| ServeError::Flight(e.to_string()))
    }
}

/// What the server says of itself (`GetSqlInfo`).
fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "tenure");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 0i32); // case sensitive
    b.append(SqlInfo::SqlIdentifierCase, 2i32); // unquoted names fold to lower case
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    // Built from constants: cannot fail.
    b.build().unwrap_or_else(|_| SqlInfoDataBuilder::new().build().expect("an empty SqlInfoData"))
}

/// A Flight SQL client's session: when it was last used, and its prepared
/// statements by handle.
struct Session {
    used: Instant,
    prepared: HashMap<Vec<u8>, Prepared>,
}

#[derive(Clone)]
struct Prepared {
    sql: String,
    params: Option<ParamValues>,
}

/// The sessions of logged-in clients, by bearer token. Without a password
/// every client shares the one session of the empty token.
struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Option<Duration>,
    max: usize,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        self.idle.is_some_and(|idle| now.duration_since(s.used) > idle)
    }

    /// A new session, making room by dropping expired ones and then the
    /// least recently used.
    fn open(&self) -> String {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| !self.expired(s, now));
        while map.len() >= self.max.max(1) {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(t, _)| t.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Session {
                used: now,
                prepared: HashMap::new(),
            },
        );
        token
    }

    /// Run `f` on the live session of `token`.
    fn with<T>(&self, token: &str, f: impl FnOnce(&mut Session) -> T) -> Result<T, Status> {
        let now = Instant::now();
        let mut map = self.lock();
        if token.is_empty() {
            // The shared session of a server without a password.
            let s = map.entry(String::new()).or_insert_with(|| Session {
                used: now,
                prepared: HashMap::new(),
            });
            return Ok(f(s));
        }
        match map.get_mut(token) {
            Some(s) if !self.expired(s, now) => {
                s.used = now;
                Ok(f(s))
            }
            Some(_) => {
                map.remove(token);
                Err(Status::unauthenticated("the session expired (server.idle_timeout_seconds); log in again"))
            }
            None => Err(Status::unauthenticated("unknown or expired bearer token; log in again")),
        }
    }
}

struct Inner {
    service: Arc<QueryService>,
    credentials: Option<Arc<super::auth::Credentials>>,
    sessions: Sessions,
    /// Queries streaming at once (`server.max_connections`).
    queries: Arc<Semaphore>,
    info: SqlInfoData,
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSql {
    inner: Arc<Inner>,
}

/// A gRPC status for an error of planning or running a query, by its
/// PostgreSQL class, with the SQLSTATE in front of the message.
fn status(e: &(dyn std::error::Error + 'static)) -> Status {
    let code = sqlstate(e);
    let message = match super::errors::stopped(e) {
        Some(why) => why.to_string(),
        None => e.to_string(),
    };
    let message = format!("{message} (SQLSTATE {code})");
    match code {
        "42P01" | "42703" | "42883" => Status::not_found(message),
        "25006" | "42501" => Status::permission_denied(message),
        "57014" => Status::cancelled(message),
        "54000" | "53200" | "53300" => Status::resource_exhausted(message),
        "0A000" => Status::unimplemented(message),
        c if c.starts_with("42") || c.starts_with("22") => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}

fn read_only() -> Status {
    Status::permission_denied("tenure serves the published tables read-only (SQLSTATE 25006)")
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    if bytes.len() > MAX_SQL_BYTES {
        return Err(Status::invalid_argument(format!("the {what} is longer than {MAX_SQL_BYTES} bytes")));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument(format!("the {what} is not UTF-8")))
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("cannot encode the schema: {e}")))?;
    Ok(message.0)
}

/// A FlightInfo for `schema` whose one endpoint is fetched with `ticket`
/// from this server.
fn info(schema: &Schema, ticket: Any, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(Response::new(info))
}

/// One batch as a DoGet answer.
fn one_batch(batch: Result<arrow::array::RecordBatch, FlightError>, schema: SchemaRef) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// `schema` with view types as their plain forms (`Utf8View` as `Utf8`,
/// `BinaryView` as `Binary`): what tables read from Delta hold, which not
/// every Flight SQL client reads yet (the JDBC and ODBC drivers of BI tools).
fn plain(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            DataType::BinaryView => f.as_ref().clone().with_data_type(DataType::Binary),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `batch` cast to `schema` (see [`plain`]).
fn plain_batch(
    batch: arrow::array::RecordBatch,
    schema: &SchemaRef,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    arrow::array::RecordBatch::try_new(schema.clone(), columns)
}

impl FlightSql {
    /// The session a call belongs to: its bearer token, checked, or the
    /// shared session of a server without a password.
    fn token<T>(&self, request: &Request<T>) -> Result<String, Status> {
        if self.inner.credentials.is_none() {
            return Ok(String::new());
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("log in first: a Flight SQL handshake with the user and password"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("the authorization header holds no bearer token; log in first"))?
            .trim()
            .to_string();
        if token.is_empty() {
            // The empty token names the shared session of a server without
            // a password, never a logged-in one.
            return Err(Status::unauthenticated("the bearer token is empty; log in first"));
        }
        self.inner.sessions.with(&token, |_| ())?;
        Ok(token)
    }

    /// Parse and plan one read-only query, with `params` bound if given.
    async fn plan(&self, sql: &str, params: Option<&ParamValues>) -> Result<LogicalPlan, Status> {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| status(&e))?;
        if statements.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "expected one SQL statement, got {} (SQLSTATE 42601)",
                statements.len()
            )));
        }
        let statement = statements.remove(0);
        match judge(&statement) {
            Verdict::Plan => {}
            Verdict::Refuse(info) => {
                let message = format!("{} (SQLSTATE {})", info.message, info.code);
                return Err(if info.code == "25006" || info.code == "42501" {
                    Status::permission_denied(message)
                } else {
                    Status::unimplemented(message)
                });
            }
            Verdict::Library | Verdict::Ignore(_) | Verdict::Cursor(_) => {
                return Err(Status::unimplemented(
                    "over Flight SQL only queries run: no SET, transactions or cursors (SQLSTATE 0A000)",
                ))
            }
        }
        let service = &self.inner.service;
        service.refresh().await.map_err(|e| status(&e))?;
        let plan = service
            .plan(DfStatement::Statement(Box::new(statement)))
            .await
            .map_err(|e| status(&e))?;
        match params {
            Some(p) => plan.with_param_values(p.clone()).map_err(|e| status(&e)),
            None => Ok(plan),
        }
    }

    /// Run a plan and stream its batches, holding one of the query places
    /// until the stream ends or the client goes away.
    async fn execute(&self, plan: LogicalPlan) -> Result<Response<DoGetStream>, Status> {
        let place = self.inner.queries.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("too many queries at once (server.max_connections); try again (SQLSTATE 53300)")
        })?;
        let ctx = self.inner.service.context();
        let df = ctx.execute_logical_plan(plan).await.map_err(|e| status(&e))?;
        let schema: SchemaRef = Arc::new(plain(df.schema().as_arrow()));
        let batches = df.execute_stream().await.map_err(|e| status(&e))?;
        let out = schema.clone();
        let batches = batches.map(move |b| {
            let _held = &place;
            match b {
                Ok(b) => plain_batch(b, &out).map_err(FlightError::Arrow),
                Err(e) => Err(FlightError::Tonic(Box::new(status(&e)))),
            }
        });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    fn prepared(&self, token: &str, handle: &[u8]) -> Result<Prepared, Status> {
        self.inner
            .sessions
            .with(token, |s| s.prepared.get(handle).cloned())?
            .ok_or_else(|| Status::not_found("no such prepared statement in this session (closed, or the session expired)"))
    }
}

/// The parameters a client bound: the first row of its batches, one value
/// per column, in order (`$1`, `$2`, ...).
async fn parameters(stream: PeekableFlightDataStream) -> Result<ParamValues, Status> {
    // The stream itself, not `into_inner`: that would drop the message the
    // dispatcher peeked at, the schema.
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut row: Option<Vec<ScalarValue>> = None;
    let mut rows = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        if row.is_none() && batch.num_rows() > 0 {
            let values = batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
            row = Some(values);
        }
        rows += batch.num_rows();
    }
    if rows > 1 {
        return Err(Status::unimplemented(format!(
            "a query binds one row of parameters, not {rows} (SQLSTATE 0A000)"
        )));
    }
    Ok(ParamValues::from(row.unwrap_or_default()))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let token = match &self.inner.credentials {
            None => String::new(),
            Some(credentials) => {
                let refused = || Status::unauthenticated("password authentication failed (SQLSTATE 28P01)");
                let header = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .ok_or_else(|| Status::unauthenticated("log in with HTTP basic credentials: the user and password"))?;
                // Padded or not: Go's Flight client (ADBC) sends it unpadded.
                let base64 = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                let decoded = base64
                    .decode(header.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(refused)?;
                let (user, password) = decoded.split_once(':').ok_or_else(refused)?;
                let (credentials, user, password) = (credentials.clone(), user.to_string(), password.to_string());
                let ok = tokio::task::spawn_blocking(move || credentials.verify(&user, &password))
                    .await
                    .unwrap_or(false);
                if !ok {
                    tracing::debug!("a Flight SQL login failed");
                    return Err(refused());
                }
                self.inner.sessions.open()
            }
        };
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(answer)])));
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("cannot encode the bearer token"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("tenure has no transactions (SQLSTATE 0A000)"));
        }
        let plan = self.plan(&query.query, None).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        info(&plain(plan.schema().as_arrow()), ticket.as_any(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let sql = utf8(&ticket.statement_handle, "ticket")?;
        let plan = self.plan(&sql, None).await?;
        self.execute(plan).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let token = self.token(&request)?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("tenure has no transactions (SQLSTATE 0A000)"));
        }
        let plan = self.plan(&query.query, None).await?;
        let mut types: Vec<(usize, DataType)> = plan
            .get_parameter_types()
            .map_err(|e| status(&e))?
            .into_iter()
            .filter_map(|(name, t)| {
                let n = name.strip_prefix('$')?.parse::<usize>().ok()?;
                Some((n, t.unwrap_or(DataType::Null)))
            })
            .collect();
        types.sort_by_key(|(n, _)| *n);
        let parameters = Schema::new(
            types
                .into_iter()
                .map(|(n, t)| Field::new(format!("${n}"), t, true))
                .collect::<Vec<_>>(),
        );
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let stored = self.inner.sessions.with(&token, |s| {
            if s.prepared.len() >= MAX_PREPARED {
                return false;
            }
            s.prepared.insert(
                handle.clone(),
                Prepared {
                    sql: query.query.clone(),
                    params: None,
                },
            );
            true
        })?;
        if !stored {
            return Err(Status::resource_exhausted(format!(
                "a session holds at most {MAX_PREPARED} prepared statements; close some"
            )));
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&plain(plan.schema().as_arrow()))?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let token = self.token(&request)?;
        let handle = query.prepared_statement_handle.to_vec();
        self.prepared(&token, &handle)?;
        let params = parameters(request.into_inner()).await?;
        self.inner.sessions.with(&token, |s| {
            if let Some(p) = s.prepared.get_mut(&handle) {
                p.params = Some(params);
            }
        })?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let token = self.token(&request)?;
        let prepared = self.prepared(&token, &query.prepared_statement_handle)?;
        let plan = self.plan(&prepared.sql, prepared.params.as_ref()).await?;
        info(&plain(plan.schema().as_arrow()), query.as_any(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let token = self.token(&request)?;
        let prepared = self.prepared(&token, &query.prepared_statement_handle)?;
        let plan = self.plan(&prepared.sql, prepared.params.as_ref()).await?;
        self.execute(plan).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let token = self.token(&request)?;
        self.inner.sessions.with(&token, |s| {
            s.prepared.remove(query.prepared_statement_handle.as_ref());
        })
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let mut builder = query.into_builder();
        builder.append(crate::engine::PUBLISHED_CATALOG);
        let schema = builder.schema();
        Ok(one_batch(builder.build(), schema))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let mut builder = query.into_builder();
        builder.append(crate::engine::PUBLISHED_CATALOG, self.default_schema());
        let schema = builder.schema();
        Ok(one_batch(builder.build(), schema))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let service = &self.inner.service;
        service.refresh().await.map_err(|e| status(&e))?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let default_schema = self.default_schema();
        let provider = service
            .context()
            .catalog(crate::engine::PUBLISHED_CATALOG)
            .and_then(|c| c.schema(&default_schema))
            .ok_or_else(|| Status::internal("the published tables' schema is missing"))?;
        let mut names = provider.table_names();
        names.sort();
        let empty = Schema::empty();
        for name in names {
            let table_schema = if include_schema {
                match provider.table(&name).await.map_err(|e| status(&e))? {
                    Some(t) => Arc::new(plain(&t.schema())),
                    None => continue,
                }
            } else {
                Arc::new(empty.clone())
            };
            builder
                .append(crate::engine::PUBLISHED_CATALOG, &default_schema, &name, "TABLE", &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = builder.schema();
        Ok(one_batch(builder.build(), schema))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        let schema = builder.schema();
        Ok(one_batch(builder.build(), schema))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token(&request)?;
        let schema = query.clone().into_builder(&self.inner.info).schema();
        info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.token(&request)?;
        let builder = query.into_builder(&self.inner.info);
        let schema = builder.schema();
        Ok(one_batch(builder.build(), schema))
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.token(&request)?;
        Err(read_only())
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.token(&request)?;
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.token(&request)?;
        Err(read_only())
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.token(&request)?;
        Err(read_only())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.token(&request)?;
        Err(Status::unimplemented("tenure has no transactions: every query reads the latest published run"))
    }

    async fn do_action_end_transaction(&self, _query: ActionEndTransactionRequest, request: Request<Action>) -> Result<(), Status> {
        self.token(&request)?;
        Err(Status::unimplemented("tenure has no transactions"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.token(&request)?;
        Err(Status::unimplemented("tenure has no transactions"))
    }

    async fn do_action_end_savepoint(&self, _query: ActionEndSavepointRequest, request: Request<Action>) -> Result<(), Status> {
        self.token(&request)?;
        Err(Status::unimplemented("tenure has no transactions"))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl FlightSql {
    fn default_schema(&self) -> String {
        let state = self.inner.service.context().state();
        state.config().options().catalog.default_schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;

    #[test]
    fn sessions_expire_and_make_room() {
        let sessions = Sessions {
            map: Mutex::new(HashMap::new()),
            idle: Some(Duration::from_secs(3600)),
            max: 2,
        };
        let a = sessions.open();
        let b = sessions.open();
        assert_ne!(a, b);
        assert!(sessions.with(&a, |_| ()).is_ok());
        // a was used after b: b gives way to c.
        let c = sessions.open();
        assert!(sessions.with(&b, |_| ()).is_err(), "the least recently used session gave way");
        assert!(sessions.with(&a, |_| ()).is_ok() && sessions.with(&c, |_| ()).is_ok());
        assert!(sessions.with("nope", |_| ()).is_err());

        let short = Sessions {
            map: Mutex::new(HashMap::new()),
            idle: Some(Duration::from_millis(1)),
            max: 4,
        };
        let t = short.open();
        std::thread::sleep(Duration::from_millis(5));
        let err = short.with(&t, |_| ()).expect_err("expired");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn errors_keep_their_class() {
        let e = DataFusionError::Plan("table 'tenure.public.nope' not found".into());
        let s = status(&e);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().contains("SQLSTATE 42P01"), "{}", s.message());
        let e = DataFusionError::External(Box::new(super::super::limits::Stopped::TooManyRows(3)));
        assert_eq!(status(&e).code(), tonic::Code::ResourceExhausted);
    }
}
