//! Connections to the directory.
//!
//! * [`Servers`] opens one connection, trying each URL in order (failover),
//!   each attempt bounded by `pool.connect_timeout`, with LDAPS or StartTLS
//!   verified against `tls.ca_file`.
//! * [`Directory`] keeps a bb8 pool of *service* connections, bound once as
//!   `bind_dn` (or anonymous) and used for searches and reads only. A user's
//!   own bind always happens on a fresh connection that is closed
//!   afterwards ([`Directory::bind_as`]), so a pooled connection never takes
//!   a user's identity.
//! * Waiting for a service connection ends as soon as an attempt to open
//!   one fails ([`ConnectFailures`]): a stopped server (connection refused)
//!   fails a CONNECT at once, and the failure reaches the health state and
//!   the log, instead of the pool's wait outlasting the chain's timeout.
//! * Every operation runs under `pool.query_timeout`. A connection that
//!   failed at the transport level (closed by the server, timed out) is
//!   thrown away; a search that failed because its pooled connection had
//!   been closed is retried once on a new one, so a server restart shows up
//!   as at most one error, never as bad credentials.
//!
//! Errors are [`ProviderError`]s and never contain a password.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchEntry};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::config::{ScopeName, ServerSettings};
use crate::common::health::Health;
use crate::common::BuildError;

/// LDAP result codes we tell apart.
pub mod rc {
    pub const SUCCESS: u32 = 0;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_DN_SYNTAX: u32 = 34;
    pub const INAPPROPRIATE_AUTH: u32 = 48;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS: u32 = 50;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
}

/// A search result entry with attribute names folded to lower case.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// An entry known only by its DN.
    pub fn bare(dn: String) -> Entry {
        Entry { dn, attrs: HashMap::new() }
    }

    fn from_search(e: SearchEntry) -> Entry {
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for (k, vs) in e.attrs {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(vs.into_iter().map(String::into_bytes));
        }
        for (k, vs) in e.bin_attrs {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(vs);
        }
        Entry { dn: e.dn, attrs }
    }

    /// Every value of `attr` (any case), raw.
    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs.get(&attr.to_ascii_lowercase()).map_or(&[], Vec::as_slice)
    }

    /// Every value of `attr` that is text.
    pub fn text_values(&self, attr: &str) -> impl Iterator<Item = &str> {
        self.values(attr).iter().filter_map(|v| std::str::from_utf8(v).ok())
    }
}

fn scope(s: ScopeName) -> Scope {
    match s {
        ScopeName::Base => Scope::Base,
        ScopeName::One => Scope::OneLevel,
        ScopeName::Sub => Scope::Subtree,
    }
}

/// An LDAP failure as a provider error. Result codes are the server's
/// answer (the directory works, it refused); everything else is transport.
pub fn error(what: &str, e: LdapError) -> ProviderError {
    match e {
        LdapError::LdapResult { result } => ProviderError::new(
            ErrorKind::Unavailable,
            format!("{what}: the server answered {} ({})", result.rc, rc_name(result.rc)),
        ),
        LdapError::Timeout { .. } => ProviderError::new(ErrorKind::Timeout, format!("{what}: no answer in time")),
        other => ProviderError::new(ErrorKind::Unavailable, format!("{what}: {other}")),
    }
}

fn rc_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "see RFC 4511",
    }
}

/// An operation's failure: our own timeout, or what ldap3 reported.
#[derive(Debug)]
pub enum OpError {
    TimedOut,
    Ldap(LdapError),
}

impl OpError {
    /// The connection itself is gone (worth one retry on a new one).
    fn is_transport(&self) -> bool {
        match self {
            OpError::TimedOut => false,
            OpError::Ldap(e) => {
                !matches!(e, LdapError::LdapResult { .. } | LdapError::Timeout { .. } | LdapError::FilterParsing)
            }
        }
    }

    /// The connection cannot be trusted with another operation.
    fn poisons(&self) -> bool {
        matches!(self, OpError::TimedOut | OpError::Ldap(LdapError::Timeout { .. })) || self.is_transport()
    }

    pub fn into_provider(self, what: &str) -> ProviderError {
        match self {
            OpError::TimedOut => ProviderError::new(ErrorKind::Timeout, format!("{what}: no answer in time")),
            OpError::Ldap(e) => error(what, e),
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::TimedOut => f.write_str("no answer in time"),
            OpError::Ldap(e) => e.fmt(f),
        }
    }
}

/// The servers and how to reach them.
pub struct Servers {
    urls: Vec<String>,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    pub query_timeout: Duration,
}

impl fmt::Debug for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Servers")
            .field("urls", &self.urls)
            .field("starttls", &self.starttls)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Servers {
    pub fn new(s: &ServerSettings) -> Result<Servers, BuildError> {
        let tls = if s.tls.enable { Some(Arc::new(s.tls.rustls_client_config()?)) } else { None };
        Ok(Servers {
            urls: s.servers.clone(),
            starttls: s.starttls,
            tls,
            connect_timeout: s.pool.connect_timeout,
            query_timeout: s.pool.query_timeout,
        })
    }

    /// A new connection to the first server that answers. The connection's
    /// driver runs in its own task and ends when the connection closes.
    pub async fn open(&self) -> Result<Ldap, ProviderError> {
        let mut failures = Vec::new();
        for url in &self.urls {
            match self.open_one(url).await {
                Ok(l) => return Ok(l),
                Err(e) => failures.push(format!("{url}: {}", e.message)),
            }
        }
        let kind = ErrorKind::Unavailable;
        Err(ProviderError::new(kind, format!("no LDAP server reachable ({})", failures.join("; "))))
    }

    async fn open_one(&self, url: &str) -> Result<Ldap, ProviderError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.connect_timeout);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(Arc::clone(cfg)).set_starttls(self.starttls);
        }
        // The whole handshake (TCP, StartTLS, TLS) is bounded, not just TCP:
        // a frozen server accepts connections but never answers.
        let (conn, ldap) = tokio::time::timeout(self.connect_timeout, LdapConnAsync::with_settings(settings, url))
            .await
            .map_err(|_| ProviderError::new(ErrorKind::Timeout, "connect: no answer in time"))?
            .map_err(|e| error("connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "ldap connection ended");
            }
        });
        Ok(ldap)
    }

    /// Simple bind on `ldap`, under the query timeout. `Ok(rc)` is the
    /// server's answer (0 on success).
    pub async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<u32, OpError> {
        match tokio::time::timeout(self.query_timeout, ldap.simple_bind(dn, password)).await {
            Err(_) => Err(OpError::TimedOut),
            Ok(Err(LdapError::LdapResult { result })) => Ok(result.rc),
            Ok(Err(e)) => Err(OpError::Ldap(e)),
            Ok(Ok(r)) => Ok(r.rc),
        }
    }

    /// Search under the query timeout; noSuchObject and invalidDNSyntax (a
    /// base DN that does not exist or cannot) are an empty result.
    pub async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope_name: ScopeName,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, OpError> {
        let op = ldap.with_timeout(self.query_timeout).search(base, scope(scope_name), filter, attrs.to_vec());
        let r = match tokio::time::timeout(self.query_timeout + Duration::from_millis(100), op).await {
            Err(_) => return Err(OpError::TimedOut),
            Ok(r) => r.map_err(OpError::Ldap)?,
        };
        let (entries, result) = (r.0, r.1);
        match result.rc {
            rc::SUCCESS => {}
            // A DN built from a client's value that the server cannot
            // parse names no entry.
            rc::NO_SUCH_OBJECT | rc::INVALID_DN_SYNTAX => return Ok(Vec::new()),
            _ => return Err(OpError::Ldap(LdapError::from(result))),
        }
        entries.into_iter().map(|e| parse_entry(e).map_err(OpError::Ldap)).collect()
    }
}

/// ldap3 panics on an entry it cannot decode; a server's bad answer must not
/// take the connection task down with it.
fn parse_entry(e: ResultEntry) -> Result<Entry, LdapError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e)))
        .map(Entry::from_search)
        .map_err(|_| LdapError::DecodingUTF8)
}

/// A pooled service connection. `broken` is set when an operation on it
/// failed at the transport level, so the pool drops it.
pub struct ServiceConn {
    ldap: Ldap,
    broken: bool,
}

impl fmt::Debug for ServiceConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConn").field("broken", &self.broken).finish()
    }
}

/// Failed attempts to open a service connection, told to the callers
/// waiting for one. bb8 (without connection retries) drops a failed
/// attempt's error and lets its waiters sleep until the pool's whole wait
/// (`connect_timeout` per server + `query_timeout`) is over: with the
/// defaults that is longer than the chain's timeout, so a stopped server
/// made every CONNECT wait 5 s and report nothing. Waiters now fail with
/// the attempt's own error the moment it fails.
#[derive(Debug, Default)]
struct ConnectFailures {
    notify: tokio::sync::Notify,
    last: parking_lot::Mutex<Option<ProviderError>>,
}

impl ConnectFailures {
    fn failed(&self, e: &ProviderError) {
        *self.last.lock() = Some(e.clone());
        self.notify.notify_waiters();
    }

    fn last(&self) -> ProviderError {
        self.last
            .lock()
            .clone()
            .unwrap_or_else(|| ProviderError::new(ErrorKind::Unavailable, "cannot open an LDAP connection"))
    }
}

/// bb8's view of the service connections.
pub struct Manager {
    servers: Arc<Servers>,
    /// `(bind_dn, password)`; `None`: anonymous.
    account: Option<(String, String)>,
    failures: Arc<ConnectFailures>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("servers", &self.servers)
            .field("bind_dn", &self.account.as_ref().map(|a| &a.0))
            .finish()
    }
}

impl Manager {
    async fn open_service(&self) -> Result<ServiceConn, ProviderError> {
        let mut ldap = self.servers.open().await?;
        if let Some((dn, pw)) = &self.account {
            let rc = self.servers.bind(&mut ldap, dn, pw).await.map_err(|e| e.into_provider("service account bind"))?;
            if rc != rc::SUCCESS {
                // Never a deny: the broker's own account is refused.
                return Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    format!("service account bind as {dn:?} refused: {rc} ({})", rc_name(rc)),
                ));
            }
        }
        Ok(ServiceConn { ldap, broken: false })
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = ServiceConn;
    type Error = ProviderError;

    async fn connect(&self) -> Result<ServiceConn, ProviderError> {
        let r = self.open_service().await;
        if let Err(e) = &r {
            self.failures.failed(e);
        }
        r
    }

    async fn is_valid(&self, conn: &mut ServiceConn) -> Result<(), ProviderError> {
        if conn.ldap.is_closed() {
            return Err(ProviderError::new(ErrorKind::Unavailable, "connection closed"));
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut ServiceConn) -> bool {
        conn.broken || conn.ldap.is_closed()
    }
}

/// The directory as the providers use it.
pub struct Directory {
    pub servers: Arc<Servers>,
    pool: bb8::Pool<Manager>,
    failures: Arc<ConnectFailures>,
    /// Up or down, from every operation that reached for the server (a
    /// request answered without asking it says nothing either way).
    pub health: Health,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory").field("servers", &self.servers).field("pool", &self.pool.state()).finish()
    }
}

impl Directory {
    /// Builds the pool without connecting: a directory that is down at
    /// start does not stop the broker.
    pub fn new(name: &str, s: &ServerSettings) -> Result<Directory, BuildError> {
        s.validate()?;
        let servers = Arc::new(Servers::new(s)?);
        let account = match (&s.bind_dn, &s.bind_password) {
            (Some(dn), Some(pw)) => Some((dn.clone(), pw.resolve("bind_password")?)),
            _ => None,
        };
        let n = u32::try_from(s.servers.len()).unwrap_or(u32::MAX).max(1);
        let failures = Arc::new(ConnectFailures::default());
        let pool = bb8::Pool::builder()
            .max_size(s.pool.size)
            .min_idle(if s.pool.min_idle == 0 { None } else { Some(s.pool.min_idle) })
            // Each server gets `connect_timeout`, and a service bind.
            .connection_timeout(s.pool.connect_timeout.saturating_mul(n) + s.pool.query_timeout)
            .idle_timeout(s.pool.idle_timeout)
            .max_lifetime(s.pool.max_lifetime)
            .test_on_check_out(true)
            // Surface the real connect error instead of retrying until the
            // pool's timeout hides it.
            .retry_connection(false)
            .build_unchecked(Manager { servers: Arc::clone(&servers), account, failures: Arc::clone(&failures) });
        Ok(Directory { servers, pool, failures, health: Health::new("ldap", name) })
    }

    /// A search with the service account; retried once on a new connection
    /// when the pooled one turns out to be closed.
    pub async fn search(
        &self,
        base: &str,
        scope: ScopeName,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, ProviderError> {
        self.health.track(self.search_retrying(base, scope, filter, attrs).await)
    }

    async fn search_retrying(
        &self,
        base: &str,
        scope: ScopeName,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.checkout().await?;
            match self.servers.search(&mut conn.ldap, base, scope, filter, attrs).await {
                Ok(entries) => return Ok(entries),
                Err(e) => {
                    if e.poisons() {
                        conn.broken = true;
                    }
                    if e.is_transport() && attempt < 2 {
                        tracing::debug!(error = %e, "ldap service connection lost; retrying on a new one");
                        continue;
                    }
                    return Err(e.into_provider("search"));
                }
            }
        }
    }

    /// A service connection from the pool. Fails as soon as an attempt to
    /// open one fails (a refused connection fails at once), not after the
    /// pool's whole wait; see [`ConnectFailures`].
    async fn checkout(&self) -> Result<bb8::PooledConnection<'_, Manager>, ProviderError> {
        let failed = self.failures.notify.notified();
        tokio::pin!(failed);
        // Registered before the pool starts an attempt, so none is missed.
        failed.as_mut().enable();
        tokio::select! {
            biased;
            got = self.pool.get() => got.map_err(|e| match e {
                bb8::RunError::User(e) => e,
                bb8::RunError::TimedOut => {
                    ProviderError::new(ErrorKind::Timeout, "no LDAP service connection available in time")
                }
            }),
            () = &mut failed => Err(self.failures.last()),
        }
    }

    /// Reads one entry by DN (`None`: it does not exist, or the service
    /// account cannot see it).
    pub async fn read(&self, dn: &str, attrs: &[&str]) -> Result<Option<Entry>, ProviderError> {
        let mut v = self.search(dn, ScopeName::Base, "(objectClass=*)", attrs).await?;
        Ok(if v.is_empty() { None } else { Some(v.swap_remove(0)) })
    }

    /// Binds as `dn` on a fresh connection that is closed afterwards (never
    /// a pooled one). Returns the server's result code and, on success,
    /// the connection still bound as the user, for reading its own entry.
    /// Callers never pass an empty password (that would be an anonymous
    /// bind that "succeeds").
    pub async fn bind_as(&self, dn: &str, password: &str) -> Result<(u32, Option<Ldap>), ProviderError> {
        debug_assert!(!password.is_empty());
        self.health.track(self.bind_fresh(dn, password).await)
    }

    async fn bind_fresh(&self, dn: &str, password: &str) -> Result<(u32, Option<Ldap>), ProviderError> {
        let mut ldap = self.servers.open().await?;
        match self.servers.bind(&mut ldap, dn, password).await {
            Ok(rc::SUCCESS) => Ok((rc::SUCCESS, Some(ldap))),
            Ok(rc) => {
                close(ldap).await;
                Ok((rc, None))
            }
            Err(e) => {
                close(ldap).await;
                Err(e.into_provider("user bind"))
            }
        }
    }
}

/// Unbinds (best effort, briefly) so the server closes the connection.
pub async fn close(mut ldap: Ldap) {
    let _ = tokio::time::timeout(Duration::from_millis(500), ldap.unbind()).await;
}
