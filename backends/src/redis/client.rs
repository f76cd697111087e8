//! The connection to Redis, shared by the auth and ACL providers.
//!
//! * **Single** — a bb8 pool of multiplexed connections to one server.
//!   Connections are opened lazily (a server that is down at start does not
//!   stop the broker) and replaced when they break: a command that fails
//!   because its connection died (`CLIENT KILL`, a restart, an idle
//!   timeout) marks the connection broken and is retried on another one,
//!   at most `pool.size + 1` times — the commands are reads, so a retry is
//!   safe, and a pool full of dead connections drains in one call.
//! * **Cluster** — one `redis::cluster_async` connection, which multiplexes
//!   and follows the slot map itself; it is opened on first use (one
//!   attempt at a time) and dropped after a connection failure so the next
//!   call reconnects from the seed nodes.
//!
//! Why a connection could not be opened is kept (`last_error`): bb8 only
//! reports "timed out" after retrying a failing connect, which would hide
//! a wrong Redis password behind a pool timeout. Errors are classified in
//! [`classify`]; none of them is ever a deny.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use portcullis_core::provider::{ErrorKind, ProviderError};
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, TlsCertificates, Value,
};

use super::config::{Address, Connection, Mode};
use crate::common::BuildError;

/// The reason the last connection attempt failed, and when.
#[derive(Debug, Default)]
struct LastError(Mutex<Option<(Instant, ProviderError)>>);

impl LastError {
    /// Records `e`; true when it differs from the error recorded before
    /// (so a failing login is logged once, not once per attempt).
    fn set(&self, e: ProviderError) -> bool {
        let mut slot = self.0.lock();
        let new = slot.as_ref().is_none_or(|(_, old)| old.message != e.message);
        *slot = Some((Instant::now(), e));
        new
    }
    fn clear(&self) {
        *self.0.lock() = None;
    }
    /// The last connect error if it happened within `window`.
    fn recent(&self, window: Duration) -> Option<ProviderError> {
        self.0.lock().as_ref().filter(|(at, _)| at.elapsed() <= window).map(|(_, e)| e.clone())
    }
}

/// A pooled connection and whether a command found it dead.
struct PooledConn {
    conn: MultiplexedConnection,
    broken: bool,
}

/// bb8's view of a single server.
struct Manager {
    client: redis::Client,
    config: AsyncConnectionConfig,
    target: String,
    last_error: Arc<LastError>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<PooledConn, RedisError> {
        match self.client.get_multiplexed_async_connection_with_config(&self.config).await {
            Ok(conn) => {
                self.last_error.clear();
                Ok(PooledConn { conn, broken: false })
            }
            Err(e) => {
                let pe = classify_connect(&e, &self.target);
                let login_failed = is_login_failure(&e);
                if self.last_error.set(pe.clone()) && login_failed {
                    tracing::error!(redis = %self.target, error = %pe.message, "cannot log in to Redis");
                }
                Err(e)
            }
        }
    }

    async fn is_valid(&self, conn: &mut PooledConn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        conn.broken
    }
}

/// The cluster connection, opened on first use.
struct Cluster {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

enum Backend {
    Single(bb8::Pool<Manager>),
    Cluster(Box<Cluster>),
}

/// A Redis connection (pool or cluster) with its timeouts.
pub struct RedisClient {
    target: String,
    backend: Backend,
    connect_timeout: Duration,
    query_timeout: Duration,
    /// Commands tried at most (see the module doc).
    attempts: usize,
    last_error: Arc<LastError>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient").field("target", &self.target).finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Builds the client without connecting (errors are config errors).
    pub fn build(c: &Connection) -> Result<RedisClient, BuildError> {
        let target = c.servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let certs = if c.tls.enable { Some(tls_certificates(c)?) } else { None };
        if certs.is_some() {
            // redis builds its rustls config with the process default
            // provider; make sure there is one (ring, as everywhere here).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let last_error = Arc::new(LastError::default());
        let backend = match c.mode {
            Mode::Single => {
                let addr = &c.servers[0];
                let info = connection_info(addr, c, certs.is_some())?;
                let client = match &certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                    None => redis::Client::open(info),
                }
                .map_err(|e| BuildError::client("servers", e.to_string()))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(c.pool.connect_timeout))
                    .set_response_timeout(Some(c.pool.query_timeout));
                let manager = Manager { client, config, target: target.clone(), last_error: Arc::clone(&last_error) };
                let pool = bb8::Pool::builder()
                    .max_size(c.pool.size)
                    .min_idle((c.pool.min_idle > 0).then_some(c.pool.min_idle))
                    .connection_timeout(c.pool.connect_timeout)
                    .idle_timeout(c.pool.idle_timeout)
                    .max_lifetime(c.pool.max_lifetime)
                    // A dead connection is found by the command that uses
                    // it and retried; no PING round trip per checkout.
                    .test_on_check_out(false)
                    .build_unchecked(manager);
                Backend::Single(pool)
            }
            Mode::Cluster => {
                let nodes =
                    c.servers.iter().map(|a| connection_info(a, c, certs.is_some())).collect::<Result<Vec<_>, _>>()?;
                let mut b = ClusterClientBuilder::new(nodes)
                    .connection_timeout(c.pool.connect_timeout)
                    .response_timeout(c.pool.query_timeout)
                    .retries(2);
                if let Some(u) = &c.username {
                    b = b.username(u);
                }
                if let Some(p) = &c.password {
                    b = b.password(p);
                }
                if let Some(certs) = certs {
                    b = b.certs(certs);
                }
                let client = b.build().map_err(|e| BuildError::client("servers", e.to_string()))?;
                Backend::Cluster(Box::new(Cluster { client, conn: tokio::sync::Mutex::new(None) }))
            }
        };
        let attempts = match c.mode {
            Mode::Single => c.pool.size as usize + 1,
            Mode::Cluster => 2,
        };
        Ok(RedisClient {
            target,
            backend,
            connect_timeout: c.pool.connect_timeout,
            query_timeout: c.pool.query_timeout,
            attempts,
            last_error,
        })
    }

    /// Where this client connects (for logs).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens a connection once to say, in the log, whether Redis is
    /// reachable and accepts our login. Never fails the caller.
    pub async fn probe(&self, provider: &str) {
        match self.query(&redis::cmd("PING")).await {
            Ok(_) => tracing::info!(provider, redis = %self.target, "Redis is reachable"),
            Err(e) => tracing::warn!(
                provider,
                redis = %self.target,
                error = %e,
                "Redis is not usable yet; clients are handled per on_error until it is"
            ),
        }
    }

    /// Runs one read command; connection failures are retried on a fresh
    /// connection (bounded, see the module doc).
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, ProviderError> {
        let mut last = None;
        for _ in 0..self.attempts {
            match self.query_once(cmd).await {
                Ok(v) => return Ok(v),
                Err(Failure::Retry(e)) => last = Some(e),
                Err(Failure::Final(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::new(ErrorKind::Unavailable, "no attempt made")))
    }

    async fn query_once(&self, cmd: &redis::Cmd) -> Result<Value, Failure> {
        match &self.backend {
            Backend::Single(pool) => {
                let mut conn = match pool.get().await {
                    Ok(c) => c,
                    Err(bb8::RunError::User(e)) => return Err(Failure::Final(classify(&e, &self.target))),
                    Err(bb8::RunError::TimedOut) => return Err(Failure::Final(self.no_connection())),
                };
                match tokio::time::timeout(self.query_timeout, cmd.query_async::<Value>(&mut conn.conn)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) if is_connection_failure(&e) => {
                        conn.broken = true;
                        Err(Failure::Retry(classify(&e, &self.target)))
                    }
                    Ok(Err(e)) => Err(Failure::Final(classify(&e, &self.target))),
                    Err(_) => {
                        // The connection may be wedged: do not reuse it.
                        conn.broken = true;
                        Err(Failure::Final(ProviderError::new(
                            ErrorKind::Timeout,
                            format!("Redis at {} did not answer within {:?}", self.target, self.query_timeout),
                        )))
                    }
                }
            }
            Backend::Cluster(cluster) => {
                let mut conn = self.cluster_connection(cluster).await.map_err(Failure::Final)?;
                match tokio::time::timeout(self.query_timeout, cmd.query_async::<Value>(&mut conn)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) if is_connection_failure(&e) => {
                        *cluster.conn.lock().await = None;
                        Err(Failure::Retry(classify(&e, &self.target)))
                    }
                    Ok(Err(e)) => Err(Failure::Final(classify(&e, &self.target))),
                    Err(_) => Err(Failure::Final(ProviderError::new(
                        ErrorKind::Timeout,
                        format!("Redis cluster {} did not answer within {:?}", self.target, self.query_timeout),
                    ))),
                }
            }
        }
    }

    async fn cluster_connection(&self, cluster: &Cluster) -> Result<ClusterConnection, ProviderError> {
        let mut slot = cluster.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let conn = match tokio::time::timeout(self.connect_timeout, cluster.client.get_async_connection()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let pe = classify_connect(&e, &self.target);
                if self.last_error.set(pe.clone()) && is_login_failure(&e) {
                    tracing::error!(redis = %self.target, error = %pe.message, "cannot log in to the Redis cluster");
                }
                return Err(pe);
            }
            Err(_) => {
                return Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    format!("cannot connect to the Redis cluster {} within {:?}", self.target, self.connect_timeout),
                ))
            }
        };
        self.last_error.clear();
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The pool gave no connection in time: say why, when we know.
    fn no_connection(&self) -> ProviderError {
        match self.last_error.recent(self.connect_timeout * 2) {
            Some(e) => e,
            None => ProviderError::new(
                ErrorKind::Unavailable,
                format!("no connection to Redis at {} within {:?} (pool exhausted)", self.target, self.connect_timeout),
            ),
        }
    }
}

enum Failure {
    /// The connection died; another may work.
    Retry(ProviderError),
    Final(ProviderError),
}

fn connection_info(addr: &Address, c: &Connection, tls: bool) -> Result<ConnectionInfo, BuildError> {
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(c.database));
    if let Some(u) = &c.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = &c.password {
        redis = redis.set_password(p);
    }
    let addr = if tls {
        ConnectionAddr::TcpTls { host: addr.host.clone(), port: addr.port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(addr.host.clone(), addr.port)
    };
    let info = addr.into_connection_info().map_err(|e| BuildError::invalid("servers", e.to_string()))?;
    Ok(info.set_redis_settings(redis))
}

fn tls_certificates(c: &Connection) -> Result<TlsCertificates, BuildError> {
    let read = |p: &std::path::Path, key: &str| {
        std::fs::read(p).map_err(|e| BuildError::file(key, format!("cannot read {}: {e}", p.display())))
    };
    let ca = c
        .tls
        .ca_file
        .as_deref()
        .ok_or_else(|| BuildError::missing("tls.ca_file", "required when tls.enable = true"))?;
    // Parse with the shared helpers first so a bad file is reported by key.
    crate::common::tls::read_certs(ca, "tls.ca_file")?;
    let client_tls = match (&c.tls.cert_file, &c.tls.key_file) {
        (Some(cert), Some(key)) => {
            crate::common::tls::read_certs(cert, "tls.cert_file")?;
            crate::common::tls::read_key(key, "tls.key_file")?;
            Some(ClientTlsConfig { client_cert: read(cert, "tls.cert_file")?, client_key: read(key, "tls.key_file")? })
        }
        _ => None,
    };
    Ok(TlsCertificates { client_tls, root_cert: Some(read(ca, "tls.ca_file")?) })
}

/// A failure of the connection itself (not of the command): worth another
/// connection.
fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() && !is_login_failure(e)
}

/// Redis refused our credentials (or lack of them).
fn is_login_failure(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// A failure to open a connection: never about one reply, so always an
/// outage (it marks the provider down), whatever Redis said (a wrong
/// `database`, say).
fn classify_connect(e: &RedisError, target: &str) -> ProviderError {
    let mut pe = classify(e, target);
    if pe.kind == ErrorKind::BadResponse {
        pe.kind = ErrorKind::Unavailable;
        pe.message = format!("cannot open a connection to Redis at {target}: {e}");
    }
    pe
}

/// A Redis error as a provider error. Messages name the server and never
/// hold our password (Redis does not echo it).
pub fn classify(e: &RedisError, target: &str) -> ProviderError {
    if is_login_failure(e) {
        return ProviderError::new(
            ErrorKind::Unavailable,
            format!("Redis at {target} refused the login: authentication failed (check this provider's username and password) ({e})"),
        );
    }
    if e.code() == Some("NOPERM") {
        return ProviderError::new(
            ErrorKind::Unavailable,
            format!("Redis at {target} refused the command: the Redis user lacks a permission ({e})"),
        );
    }
    if e.is_timeout() {
        return ProviderError::new(ErrorKind::Timeout, format!("Redis at {target}: {e}"));
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_cluster_error() {
        return ProviderError::new(ErrorKind::Unavailable, format!("cannot reach Redis at {target}: {e}"));
    }
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig | redis::ErrorKind::ClusterConnectionNotFound => {
            ProviderError::new(ErrorKind::Unavailable, format!("Redis at {target}: {e}"))
        }
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
            ProviderError::new(ErrorKind::BadResponse, format!("Redis at {target}: {e}"))
        }
        _ => ProviderError::new(ErrorKind::BadResponse, format!("Redis at {target} answered with an error: {e}")),
    }
}
