//! One client connection from accept to close: TLS negotiation, the login
//! within `server.login_timeout_seconds` of connecting, then the session,
//! closed after `server.idle_timeout_seconds` without a query.
//!
//! The protocol is pgwire's (its TLS negotiation and message dispatch); this
//! loop stands in for pgwire's `process_socket` only to bound how long the
//! server waits for a client, which that function does not allow. Logins in
//! progress are bounded by [`Logins`]; a connection's place among
//! `server.max_connections` is taken by the startup handler ([`super::auth`])
//! at the moment its login succeeds, and held until it closes. Nothing here
//! looks at what a query asks for.

use super::auth::Startup;
use super::errors::ErrorCodes;
use super::limits::{Cancel, Connection};
use super::policy::Authenticated;
use datafusion_postgres::pgwire::api::query::ExtendedQueryHandler;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler, NoopHandler, PgWireConnectionState};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::server::{
    negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec,
};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::DfSessionService;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Framed;

/// Connections that may be logging in at once. Each holds a socket (one
/// file descriptor) and a few kilobytes; the bound keeps a flood of sockets
/// that never log in from exhausting either, and [`Logins::admit`] closes the
/// oldest rather than refusing the newest, so a real client, which logs in
/// within milliseconds, still gets through.
pub const MAX_LOGINS: usize = 1024;

/// How long the server tries to tell a client why it closes the connection.
const FAREWELL: Duration = Duration::from_secs(1);

type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
type Socket = Framed<MaybeTls, PgWireMessageServerCodec<Statement>>;

/// The connections still logging in, oldest first.
pub struct Logins {
    max: usize,
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Logins {
    pub fn new(max: usize) -> Logins {
        Logins {
            max: max.max(1),
            next: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
        }
    }

    /// A new connection begins its login; if `max` are already logging in,
    /// the one that began first is told to close.
    pub fn admit(self: &Arc<Self>) -> Login {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while waiting.len() >= self.max {
            match waiting.pop_first() {
                // A stored permit: the connection sees it even before it waits.
                Some((_, oldest)) => oldest.notify_one(),
                None => break,
            }
        }
        waiting.insert(id, evicted.clone());
        Login {
            id,
            evicted,
            logins: self.clone(),
        }
    }

    /// Tell the oldest connection logging in to close (the process ran out
    /// of file descriptors); false if none is.
    pub fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).pop_first();
        match oldest {
            Some((_, notify)) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// How many connections are logging in now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One connection's place among those logging in; gone when dropped.
pub struct Login {
    id: u64,
    evicted: Arc<Notify>,
    logins: Arc<Logins>,
}

impl Drop for Login {
    fn drop(&mut self) {
        self.logins
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// What serving one connection needs.
pub struct Protocol {
    pub session: Arc<DfSessionService>,
    /// This connection's own (SCRAM keeps state between messages).
    pub startup: Arc<Startup>,
    pub cancel: Arc<Cancel>,
    pub tls: Option<TlsAcceptor>,
    pub login_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed it, or an error the client was told about did.
    Closed,
    /// The login did not complete within `server.login_timeout_seconds`.
    LoginTimeout,
    /// Closed to make room for a newer connection logging in.
    Evicted,
    /// No query for `server.idle_timeout_seconds`.
    IdleTimeout,
}

/// Resolves after `limit`, or never without one.
async fn after(limit: Option<Duration>) {
    match limit {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

fn authenticated(socket: &Socket) -> bool {
    socket.session_extensions().get::<Authenticated>().is_some()
}

impl Protocol {
    /// Serve `socket` as `connection` until it ends.
    pub async fn serve(&self, socket: TcpStream, login: Login, connection: &Connection) -> io::Result<End> {
        let deadline = after(self.login_timeout);
        tokio::pin!(deadline);
        let evicted = login.evicted.clone();
        let evicted = evicted.notified();
        tokio::pin!(evicted);

        // Nothing can be said before TLS is settled: on timeout, just close.
        let negotiated = tokio::select! {
            socket = negotiate_tls::<Statement>(socket, self.tls.clone()) => socket?,
            _ = &mut deadline => return Ok(End::LoginTimeout),
            _ = &mut evicted => return Ok(End::Evicted),
        };
        // A direct TLS handshake without a certificate configured.
        let Some(mut socket) = negotiated else {
            return Ok(End::Closed);
        };

        let logged_in = tokio::select! {
            done = self.login(&mut socket) => done?,
            _ = &mut deadline => {
                farewell(&mut socket, "57014", "canceling authentication due to timeout (server.login_timeout_seconds)").await;
                return Ok(End::LoginTimeout);
            }
            _ = &mut evicted => {
                farewell(&mut socket, "53300", "sorry, too many connections logging in at once").await;
                return Ok(End::Evicted);
            }
        };
        if !logged_in {
            return Ok(End::Closed);
        }
        drop(login);
        connection.watch(socket.get_ref());

        loop {
            let next = tokio::select! {
                next = socket.next() => next,
                _ = after(self.idle_timeout) => {
                    farewell(&mut socket, "57P05", "terminating connection due to idle-session timeout (server.idle_timeout_seconds)").await;
                    return Ok(End::IdleTimeout);
                }
            };
            match next {
                Some(Ok(message)) => {
                    if !self.step(&mut socket, message).await? {
                        return Ok(End::Closed);
                    }
                }
                _ => return Ok(End::Closed),
            }
        }
    }

    /// Messages until the startup handler marks the connection
    /// authenticated (true), or the client goes away or is refused (false).
    async fn login(&self, socket: &mut Socket) -> io::Result<bool> {
        while !authenticated(socket) {
            match socket.next().await {
                Some(Ok(message)) => {
                    if !self.step(socket, message).await? {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
            // A failed login step pgwire did not end leaves the connection
            // "ready for query" without a login: nothing can follow.
            if matches!(socket.state(), PgWireConnectionState::ReadyForQuery) && !authenticated(socket) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Handle one message as pgwire's own loop does; false when the
    /// connection is over (the client said goodbye, or a FATAL error).
    async fn step(&self, socket: &mut Socket, message: PgWireFrontendMessage) -> io::Result<bool> {
        // Terminate: the client leaves and waits for the server to close.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(false);
        }
        let cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let result = process_message(
            message,
            socket,
            self.startup.clone(),
            self.session.clone(),
            self.session.clone(),
            Arc::new(NoopHandler),
            self.cancel.clone(),
        )
        .await;
        if let Err(mut e) = result {
            ErrorCodes.on_error(socket, &mut e);
            let info = ErrorInfo::from(e);
            let fatal = info.is_fatal();
            process_error(socket, PgWireError::UserError(Box::new(info)), extended).await?;
            if fatal {
                return Ok(false);
            }
        }
        // A cancel request comes on a connection of its own, closed after it.
        Ok(!cancel)
    }
}

/// Tell the client, FATAL, why the connection closes, and close it; bounded
/// (a client that reads nothing must not hold the server).
async fn farewell(socket: &mut Socket, code: &str, message: &str) {
    let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
    let _ = tokio::time::timeout(FAREWELL, async {
        let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
        let _ = socket.close().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_of_logins_closes_the_oldest() {
        let logins = Arc::new(Logins::new(2));
        let first = logins.admit();
        let second = logins.admit();
        assert_eq!(logins.len(), 2);
        let third = logins.admit();
        assert_eq!(logins.len(), 2);
        // The first was told (the notice waits for it), the others were not.
        tokio::time::timeout(Duration::from_secs(1), first.evicted.notified())
            .await
            .expect("the oldest is evicted");
        for young in [&second, &third] {
            let told = tokio::time::timeout(Duration::from_millis(50), young.evicted.notified()).await;
            assert!(told.is_err(), "a younger login was evicted");
        }
        drop(first);
        assert_eq!(logins.len(), 2);
        drop(third);
        assert_eq!(logins.len(), 1);
        assert!(logins.evict_oldest());
        tokio::time::timeout(Duration::from_secs(1), second.evicted.notified())
            .await
            .expect("evicted when out of descriptors");
        assert!(!logins.evict_oldest());
    }
}
