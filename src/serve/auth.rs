//! Who may connect. `auth = "password"`: SCRAM-SHA-256 against the one
//! configured user (the password never crosses the network, so it is safe
//! without TLS too; a wrong password or user gets SQLSTATE 28P01, the same
//! for both). `auth = "none"`: no check (loopback addresses only). With a
//! certificate configured the server speaks TLS and refuses plain
//! connections. A connection is marked [`Authenticated`] only when its
//! handshake succeeded; the policy refuses every statement on any other.
//! The mark holds one of the `server.max_connections` places: a login step
//! that could complete the handshake first takes a place, and a server that
//! has none left refuses it (FATAL, SQLSTATE 53300), before "authentication
//! ok", as PostgreSQL does; connections still logging in take none.
//! The password is only ever held salted and hashed here, and never logged.

use super::policy::Authenticated;
use super::ServeError;
use crate::config::{Secret, Tls};
use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth, SCRAM_ITERATIONS};
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls;
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use futures::Sink;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The one user and its SCRAM-salted password.
pub struct Credentials {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
    /// What an unknown user is checked against, so that it fails at the
    /// same step, with the same error, as a wrong password.
    decoy: Vec<u8>,
}

impl Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(user: &str, password: &Secret) -> Credentials {
        let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
        let decoy = uuid::Uuid::new_v4().to_string();
        Credentials {
            user: user.to_string(),
            salted: gen_salted_password(password.expose(), &salt, SCRAM_ITERATIONS),
            decoy: gen_salted_password(&decoy, &salt, SCRAM_ITERATIONS),
            salt,
        }
    }

    /// Whether `user` and `password` are the configured ones (Flight SQL's
    /// basic credentials), checked against the same salted hash as SCRAM,
    /// with the same work for an unknown user as for a wrong password.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let known = user == self.user;
        let expected = if known { &self.salted } else { &self.decoy };
        let salted = gen_salted_password(password, &self.salt, SCRAM_ITERATIONS);
        let differ = salted.len() != expected.len()
            || salted.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        known && !differ
    }
}

#[async_trait]
impl AuthSource for Credentials {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let known = login.user() == Some(self.user.as_str());
        let salted = if known { &self.salted } else { &self.decoy };
        Ok(Password::new(Some(self.salt.clone()), salted.clone()))
    }
}

/// Accepts everyone (`auth = "none"`).
pub struct Trust {
    manager: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }
}

enum Method {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Trust(Trust),
}

/// The startup of one connection (a new one per connection: SCRAM keeps
/// per-connection state).
pub struct Startup {
    method: Method,
    tls_required: bool,
    slots: Arc<Semaphore>,
}

/// What every connection's startup needs.
pub struct StartupConfig {
    pub credentials: Option<Arc<Credentials>>,
    /// The server's certificate (PEM), for SCRAM channel binding, when TLS is on.
    pub certificate: Option<Arc<Vec<u8>>>,
    pub manager: Arc<ConnectionManager>,
    /// The places of logged-in connections (`server.max_connections`).
    pub slots: Arc<Semaphore>,
}

impl Startup {
    pub fn new(config: &StartupConfig) -> Startup {
        let method = match &config.credentials {
            None => Method::Trust(Trust {
                manager: config.manager.clone(),
            }),
            Some(credentials) => {
                let mut scram = ScramAuth::new(credentials.clone());
                if let Some(pem) = &config.certificate {
                    if let Err(e) = scram.configure_certificate(pem) {
                        tracing::debug!(error = %e, "SCRAM channel binding off for this certificate");
                    }
                }
                let mut parameters = DefaultServerParameterProvider::default();
                parameters.default_transaction_read_only = true;
                parameters.is_superuser = false;
                Method::Scram(
                    SASLAuthStartupHandler::new(Arc::new(parameters))
                        .with_scram(scram)
                        .with_connection_manager(config.manager.clone()),
                )
            }
        };
        Startup {
            method,
            tls_required: config.certificate.is_some(),
            slots: config.slots.clone(),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if matches!(message, PgWireFrontendMessage::Startup(_)) && self.tls_required && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(), // invalid_authorization_specification
                "this server requires TLS: connect with sslmode=require".into(),
            ))));
        }
        // Only a handshake that ends here, in this call, authenticates: after a
        // failed one pgwire also leaves the connection "ready for query".
        let before = client.state();
        // The place it will hold if this step completes the login.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %client.socket_addr(), "login refused: server.max_connections reached");
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "53300".into(), // too_many_connections
                "sorry, too many clients already (server.max_connections)".into(),
            ))));
        };
        match &self.method {
            Method::Scram(h) => h.on_startup(client, message).await?,
            Method::Trust(h) => h.on_startup(client, message).await?,
        }
        let done = matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if done && !matches!(before, PgWireConnectionState::ReadyForQuery) {
            client.session_extensions().insert(Authenticated::holding(slot));
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            tracing::debug!(peer = %client.socket_addr(), user = %user, tls = client.is_secure(), "client authenticated");
        }
        Ok(())
    }
}

/// The TLS acceptor of the configured certificate and key, and the
/// certificate's PEM (for SCRAM channel binding).
pub fn tls(tls: &Tls) -> Result<(TlsAcceptor, Vec<u8>), ServeError> {
    let bad = |path: &std::path::Path, message: String| ServeError::Tls {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(&tls.cert).map_err(|e| bad(&tls.cert, format!("cannot read the certificate: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&tls.cert, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&tls.cert, "holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| bad(&tls.key, format!("cannot read a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&tls.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&tls.key, format!("does not fit the certificate: {e}")))?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}
