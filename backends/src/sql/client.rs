//! The pooled connection to one database, and what a driver supplies.
//!
//! [`Client::fetch`] is the only way providers reach the database: it takes
//! a connection from the pool (opening one within `pool.connect_timeout`),
//! runs one query within `pool.query_timeout`, and classifies failures:
//!
//! * a connection the server closed (`pg_terminate_backend`, MySQL `KILL`
//!   or `wait_timeout`, a restart) is never an answer: idle connections are
//!   pinged before use, and a query that fails on a dead connection is
//!   retried once on a fresh one, so the next login simply works;
//! * no connection, a lost connection or a timeout is
//!   [`ErrorKind::Unavailable`] / [`ErrorKind::Timeout`] and marks the
//!   backend down ([`Health`]); an SQL error or an unreadable column is
//!   [`ErrorKind::BadResponse`] (the server is up, the query or data is
//!   wrong). None of them is ever a deny: the chain applies `on_error`.
//!
//! Pools connect lazily, so a database that is down at start does not stop
//! the broker; a start-up probe logs its state once.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use portcullis_core::provider::{ErrorKind, ProviderError};
use sqlx::pool::{Pool, PoolOptions};
use sqlx::Database;

use super::config::Connection;
use super::row::SqlRow;
use crate::common::health::Health;
use crate::common::rows::RowError;
use crate::common::BuildError;

/// Why a fetch failed inside a driver.
#[derive(Debug)]
pub enum FetchError {
    Sql(sqlx::Error),
    /// A column we need could not be read.
    Decode(RowError),
}

/// What differs between PostgreSQL and MySQL.
pub trait Driver: Send + Sync + 'static {
    type Db: Database;
    /// The provider kind (`postgres`, `mysql`).
    const KIND: &'static str;
    /// `$1, $2…` (true) or `?` parameters.
    const DOLLAR: bool;
    /// The names of `table`'s columns (in the connection's default schema
    /// or database), one row each in a column called `column_name`.
    const COLUMNS_QUERY: &'static str;

    /// Connect options from the config (password resolved, TLS mapped).
    fn connect_options(
        c: &Connection<'_>,
    ) -> Result<<<Self::Db as Database>::Connection as sqlx::Connection>::Options, BuildError>;

    /// Runs `sql` with `binds` (text or `NULL`) and reads the `wanted`
    /// columns of every row.
    fn fetch<'a>(
        conn: &'a mut <Self::Db as Database>::Connection,
        sql: &'a str,
        binds: &'a [Option<String>],
        wanted: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<SqlRow>, FetchError>>;

    /// Where the options connect, and whether the server's certificate is
    /// verified (`verify-ca` / `verify-full`, MySQL `VERIFY_CA` /
    /// `VERIFY_IDENTITY`; `prefer` encrypts without checking anyone).
    fn endpoint(
        o: &<<Self::Db as Database>::Connection as sqlx::Connection>::Options,
    ) -> crate::common::transport::Endpoint;

    /// Whether the error means the connection itself is gone (so a retry
    /// on a fresh connection may succeed).
    fn is_connection_error(e: &sqlx::Error) -> bool;

    /// Whether the error means a bound value has characters the column's
    /// character set lacks (MySQL "illegal mix of collations" against a
    /// `utf8mb3` or `latin1` column; PostgreSQL "untranslatable character"
    /// in a non-UTF-8 database). No stored value can equal it.
    fn is_unrepresentable_value(e: &sqlx::Error) -> bool;
}

/// Characters a legacy character set may lack, from the narrowest test to
/// the widest: outside the Basic Multilingual Plane (`utf8mb3`), beyond
/// Latin-1 (`latin1`), anything but ASCII.
const UNREPRESENTABLE: [fn(char) -> bool; 3] = [|c| c as u32 > 0xFFFF, |c| c as u32 > 0xFF, |c| !c.is_ascii()];

/// `binds` with every value that has a character `outside` matches as
/// `NULL`; `None` when that changes nothing.
fn without(binds: &[Option<String>], outside: fn(char) -> bool) -> Option<Vec<Option<String>>> {
    let mut changed = false;
    let out = binds
        .iter()
        .map(|b| match b {
            Some(v) if v.chars().any(outside) => {
                changed = true;
                None
            }
            other => other.clone(),
        })
        .collect();
    changed.then_some(out)
}

/// How one attempt failed.
#[derive(Debug)]
enum Failure {
    /// A bound value cannot be compared (see [`Driver::is_unrepresentable_value`]).
    Unrepresentable(ProviderError),
    Other(ProviderError),
}

impl Failure {
    fn into_error(self) -> ProviderError {
        match self {
            Failure::Unrepresentable(e) | Failure::Other(e) => e,
        }
    }
}

/// A lazily connected pool with its timeouts and health.
pub struct Client<D: Driver> {
    name: String,
    pool: Pool<D::Db>,
    connect_timeout: Duration,
    query_timeout: Duration,
    health: Health,
    /// Where it connects (for the start-up transport warning).
    endpoint: crate::common::transport::Endpoint,
}

impl<D: Driver> std::fmt::Debug for Client<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("kind", &D::KIND)
            .field("name", &self.name)
            .field("connections", &self.pool.size())
            .field("up", &self.health.is_up())
            .finish_non_exhaustive()
    }
}

impl<D: Driver> Client<D> {
    /// Builds the pool without connecting. Errors name the key.
    pub fn new(name: &str, c: &Connection<'_>) -> Result<Arc<Client<D>>, BuildError> {
        c.validate(D::KIND)?;
        let options = D::connect_options(c)?;
        let endpoint = D::endpoint(&options);
        let p = c.pool;
        let pool = PoolOptions::<D::Db>::new()
            .max_connections(p.size)
            .min_connections(p.min_idle)
            .acquire_timeout(p.connect_timeout)
            .idle_timeout(p.idle_timeout)
            .max_lifetime(p.max_lifetime)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Arc::new(Client {
            name: name.to_string(),
            pool,
            connect_timeout: p.connect_timeout,
            query_timeout: p.query_timeout,
            health: Health::new(D::KIND, name),
            endpoint,
        }))
    }

    /// Where the pool connects.
    pub fn endpoint(&self) -> &crate::common::transport::Endpoint {
        &self.endpoint
    }

    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// Opens one connection in the background and logs if that fails, so a
    /// database that is down at start shows in the log at once.
    pub fn probe(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let me = Arc::clone(self);
        rt.spawn(async move {
            match me.pool.acquire().await {
                Ok(_) => me.health.ok(),
                Err(e) => me.health.failed(&me.acquire_error(e)),
            }
        });
    }

    /// Runs a query (see the module documentation for the failure rules).
    /// A value the database cannot compare because its columns' character
    /// set lacks some of its characters is bound as `NULL` instead, the
    /// narrowest set first ([`UNREPRESENTABLE`]): no stored value can equal
    /// it, while rows that do not depend on it (emqttd's `$all`) still come
    /// back.
    pub async fn fetch(
        &self,
        sql: &str,
        binds: &[Option<String>],
        wanted: &[&'static str],
    ) -> Result<Vec<SqlRow>, ProviderError> {
        let mut r = self.fetch_retrying(sql, binds, wanted).await;
        for outside in UNREPRESENTABLE {
            match &r {
                Err(Failure::Unrepresentable(_)) => {}
                _ => break,
            }
            if let Some(narrowed) = without(binds, outside) {
                tracing::debug!(provider = %self.name, kind = D::KIND,
                    "a value has characters the database cannot compare; bound as NULL");
                r = self.fetch_retrying(sql, &narrowed, wanted).await;
            }
        }
        self.health.track(r.map_err(Failure::into_error))
    }

    async fn fetch_retrying(
        &self,
        sql: &str,
        binds: &[Option<String>],
        wanted: &[&'static str],
    ) -> Result<Vec<SqlRow>, Failure> {
        let mut retried = false;
        loop {
            let mut conn = self.pool.acquire().await.map_err(|e| Failure::Other(self.acquire_error(e)))?;
            let r = tokio::time::timeout(self.query_timeout, D::fetch(&mut conn, sql, binds, wanted)).await;
            match r {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(FetchError::Decode(e))) => {
                    return Err(Failure::Other(ProviderError::new(
                        ErrorKind::BadResponse,
                        format!("query result: {e}"),
                    )));
                }
                Ok(Err(FetchError::Sql(e))) if D::is_connection_error(&e) => {
                    // Never hand this connection out again.
                    drop(conn.detach());
                    if !retried {
                        tracing::debug!(provider = %self.name, kind = D::KIND, error = %e,
                            "connection lost; retrying on a fresh one");
                        retried = true;
                        continue;
                    }
                    return Err(Failure::Other(ProviderError::new(
                        ErrorKind::Unavailable,
                        format!("connection lost: {e}"),
                    )));
                }
                Ok(Err(FetchError::Sql(e))) => {
                    let error = ProviderError::new(ErrorKind::BadResponse, format!("query failed: {e}"));
                    return Err(if D::is_unrepresentable_value(&e) {
                        Failure::Unrepresentable(error)
                    } else {
                        Failure::Other(error)
                    });
                }
                Err(_) => {
                    // The connection may be mid-protocol: drop it.
                    drop(conn.detach());
                    return Err(Failure::Other(ProviderError::new(
                        ErrorKind::Timeout,
                        format!("query took longer than pool.query_timeout ({:?})", self.query_timeout),
                    )));
                }
            }
        }
    }

    fn acquire_error(&self, e: sqlx::Error) -> ProviderError {
        match e {
            sqlx::Error::PoolTimedOut => ProviderError::new(
                ErrorKind::Unavailable,
                format!("no connection within pool.connect_timeout ({:?})", self.connect_timeout),
            ),
            sqlx::Error::Configuration(e) => ProviderError::new(ErrorKind::Internal, format!("connect: {e}")),
            e => ProviderError::new(ErrorKind::Unavailable, format!("connect: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_binds_only_what_a_legacy_charset_lacks() {
        let binds = vec![Some("dave".to_string()), Some("d\u{1F600}".to_string()), Some("m\u{fc}ller".into()), None];
        let [bmp, latin1, ascii] = UNREPRESENTABLE;
        assert_eq!(without(&binds, bmp).unwrap(), vec![Some("dave".into()), None, Some("m\u{fc}ller".into()), None]);
        assert_eq!(without(&binds, latin1).unwrap(), vec![Some("dave".into()), None, Some("m\u{fc}ller".into()), None]);
        assert_eq!(without(&binds, ascii).unwrap(), vec![Some("dave".into()), None, None, None]);
        assert_eq!(without(&[Some("\u{65e5}".into())], bmp), None);
        assert_eq!(without(&[Some("\u{65e5}".into())], latin1), Some(vec![None]));
    }
}
