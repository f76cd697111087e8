//! MySQL / MariaDB auth and ACL providers (`[auth.mysql.<name>]`,
//! `[acl.mysql.<name>]`), on a lazily connected sqlx pool. Everything but
//! the driver specifics is in [`crate::sql`]: this file maps the config
//! onto [`MySqlConnectOptions`], decodes columns and classifies errors.
//!
//! TLS: `tls.enable` selects `ssl-mode=VERIFY_IDENTITY` (the certificate
//! must chain to `tls.ca_file` and name the host), with an optional client
//! certificate. Without it the URL's `ssl-mode` applies (sqlx's default is
//! `PREFERRED`: encrypted when the server offers it, unverified). sqlx adds
//! the Mozilla root certificates (webpki-roots) to `ca_file`.

use std::str::FromStr;

use futures::future::BoxFuture;
use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::common::rows::RowError;
use crate::common::transport::Endpoint;
use crate::common::BuildError;
use crate::sql::client::{Driver, FetchError};
use crate::sql::config::Connection;
use crate::sql::row::{convert, Cell, SqlRow};

pub use crate::sql::{AclConfig, AuthConfig};

/// The MySQL / MariaDB driver.
#[derive(Debug)]
pub struct Mysql;

/// Server error numbers that mean the session is gone: server shutdown
/// (1053), aborted connection (1152), connection killed (1927, MariaDB),
/// server gone away (2006), lost connection (2013).
const CONNECTION_ERRORS: [u16; 5] = [1053, 1152, 1927, 2006, 2013];

impl Driver for Mysql {
    type Db = MySql;
    const KIND: &'static str = "mysql";
    const DOLLAR: bool = false;
    const COLUMNS_QUERY: &'static str = "SELECT column_name AS column_name FROM information_schema.columns \
                                         WHERE table_name = ? AND table_schema = DATABASE()";

    fn connect_options(c: &Connection<'_>) -> Result<MySqlConnectOptions, BuildError> {
        let mut o = match c.url {
            Some(url) => MySqlConnectOptions::from_str(url).map_err(|e| BuildError::invalid("url", e.to_string()))?,
            None => MySqlConnectOptions::new(),
        };
        if let Some(h) = c.host {
            o = o.host(h);
        }
        if let Some(p) = c.port {
            o = o.port(p);
        }
        if let Some(d) = c.database {
            o = o.database(d);
        }
        if let Some(u) = c.username {
            o = o.username(u);
        }
        if let Some(pw) = c.resolve_password()? {
            o = o.password(&pw);
        }
        if c.tls.enable {
            o = o.ssl_mode(MySqlSslMode::VerifyIdentity);
            if let Some(ca) = &c.tls.ca_file {
                o = o.ssl_ca(ca);
            }
            if let (Some(cert), Some(key)) = (&c.tls.cert_file, &c.tls.key_file) {
                o = o.ssl_client_cert(cert).ssl_client_key(key);
            }
        }
        Ok(o)
    }

    fn endpoint(o: &MySqlConnectOptions) -> Endpoint {
        let host = match o.get_socket() {
            Some(path) => path.display().to_string(),
            None => o.get_host().to_string(),
        };
        Endpoint::new(host, matches!(o.get_ssl_mode(), MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity))
    }

    fn fetch<'a>(
        conn: &'a mut MySqlConnection,
        sql: &'a str,
        binds: &'a [Option<String>],
        wanted: &'a [&'static str],
    ) -> BoxFuture<'a, Result<Vec<SqlRow>, FetchError>> {
        Box::pin(async move {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b.as_deref());
            }
            let rows = q.fetch_all(conn).await.map_err(FetchError::Sql)?;
            convert(&rows, wanted, cell).map_err(FetchError::Decode)
        })
    }

    fn is_connection_error(e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|m| {
                CONNECTION_ERRORS.contains(&m.number()) || m.code().is_some_and(|c| c.starts_with("08"))
            }),
            _ => false,
        }
    }

    fn is_unrepresentable_value(e: &sqlx::Error) -> bool {
        // Illegal mix of collations (for two, three or more operands).
        matches!(e, sqlx::Error::Database(d) if d
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|m| matches!(m.number(), 1267 | 1270 | 1271)))
    }
}

/// One column as a [`Cell`]: integers (signed, unsigned, `BOOLEAN`), text
/// (also `ENUM`) and binary strings.
fn cell(row: &MySqlRow, i: usize) -> Result<Cell, RowError> {
    let raw = row.try_get_raw(i).map_err(|e| RowError::new("", e.to_string()))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let name = raw.type_info().name().to_string();
    if let Ok(n) = row.try_get::<i64, _>(i) {
        return Ok(Cell::Int(n));
    }
    if let Ok(n) = row.try_get::<u64, _>(i) {
        return i64::try_from(n).map(Cell::Int).map_err(|_| RowError::new("", format!("{n} is out of range")));
    }
    if let Ok(b) = row.try_get::<bool, _>(i) {
        return Ok(Cell::Bool(b));
    }
    if let Ok(s) = row.try_get::<String, _>(i) {
        return Ok(Cell::Text(s));
    }
    if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
        return Ok(Cell::Bytes(b));
    }
    Err(RowError::new("", format!("type {name} cannot be read; cast it in the query (`CAST(… AS CHAR)`)")))
}

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    crate::sql::auth_provider::<Mysql>(name, cfg)
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    crate::sql::acl_provider::<Mysql>(name, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pool::PoolConfig;
    use crate::common::tls::TlsConfig;

    #[test]
    fn parts_and_tls() {
        let pool = PoolConfig::default();
        let tls = TlsConfig { enable: true, ca_file: Some("/nonexistent/ca.pem".into()), ..TlsConfig::default() };
        let c = Connection {
            url: None,
            host: Some("db"),
            port: Some(3307),
            database: Some("mqtt"),
            username: Some("u"),
            password: None,
            pool: &pool,
            tls: &tls,
        };
        let o = Mysql::connect_options(&c).unwrap();
        assert_eq!((o.get_host(), o.get_port(), o.get_username(), o.get_database()), ("db", 3307, "u", Some("mqtt")));
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::VerifyIdentity));
        assert_eq!(Mysql::endpoint(&o), Endpoint::new("db", true));
        let plain = TlsConfig::default();
        let o = Mysql::connect_options(&Connection { tls: &plain, ..c }).unwrap();
        assert_eq!(Mysql::endpoint(&o), Endpoint::new("db", false), "sqlx's default ssl-mode is PREFERRED");
    }
}
