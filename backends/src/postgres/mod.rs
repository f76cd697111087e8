//! PostgreSQL auth and ACL providers (`[auth.postgres.<name>]`,
//! `[acl.postgres.<name>]`), on a lazily connected sqlx pool. Everything
//! but the driver specifics is in [`crate::sql`]: this file maps the config
//! onto [`PgConnectOptions`], decodes columns and classifies errors.
//!
//! TLS: `tls.enable` selects `sslmode=verify-full` (the certificate must
//! chain to `tls.ca_file` and name the host), with an optional client
//! certificate. Without it the URL's `sslmode` applies (sqlx's default is
//! `prefer`: encrypted when the server offers it, unverified). sqlx adds
//! the Mozilla root certificates (webpki-roots) to `ca_file`.

use std::str::FromStr;

use futures::future::BoxFuture;
use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgSslMode, PgTypeKind, Postgres as Pg};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::common::rows::RowError;
use crate::common::transport::Endpoint;
use crate::common::BuildError;
use crate::sql::client::{Driver, FetchError};
use crate::sql::config::Connection;
use crate::sql::row::{convert, Cell, SqlRow};

pub use crate::sql::{AclConfig, AuthConfig};

/// The PostgreSQL driver.
#[derive(Debug)]
pub struct Postgres;

impl Driver for Postgres {
    type Db = Pg;
    const KIND: &'static str = "postgres";
    const DOLLAR: bool = true;
    const COLUMNS_QUERY: &'static str = "SELECT column_name::text AS column_name FROM information_schema.columns \
                                         WHERE table_name = $1 AND table_schema = ANY (current_schemas(false))";

    fn connect_options(c: &Connection<'_>) -> Result<PgConnectOptions, BuildError> {
        let mut o = match c.url {
            // Not `PgConnectOptions::new()`: that would read ~/.pgpass.
            Some(url) => PgConnectOptions::from_str(url).map_err(|e| BuildError::invalid("url", e.to_string()))?,
            None => PgConnectOptions::new_without_pgpass(),
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
            o = o.ssl_mode(PgSslMode::VerifyFull);
            if let Some(ca) = &c.tls.ca_file {
                o = o.ssl_root_cert(ca);
            }
            if let (Some(cert), Some(key)) = (&c.tls.cert_file, &c.tls.key_file) {
                o = o.ssl_client_cert(cert).ssl_client_key(key);
            }
        }
        if o.get_application_name().is_none() {
            o = o.application_name("portcullis");
        }
        Ok(o)
    }

    fn endpoint(o: &PgConnectOptions) -> Endpoint {
        let host = match o.get_socket() {
            Some(path) => path.display().to_string(),
            None => o.get_host().to_string(),
        };
        Endpoint::new(host, matches!(o.get_ssl_mode(), PgSslMode::VerifyCa | PgSslMode::VerifyFull))
    }

    fn fetch<'a>(
        conn: &'a mut PgConnection,
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
            // Class 08 (connection exception); 57P01-57P03: the server is
            // shutting down or terminated this session.
            sqlx::Error::Database(d) => {
                d.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03"))
            }
            _ => false,
        }
    }

    fn is_unrepresentable_value(e: &sqlx::Error) -> bool {
        // untranslatable_character, character_not_in_repertoire
        matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "22P05" || c == "22021"))
    }
}

/// One column as a [`Cell`]: booleans, integers, text (also `citext`,
/// `char(n)` without its padding, and enum labels) and `bytea`.
fn cell(row: &PgRow, i: usize) -> Result<Cell, RowError> {
    let raw = row.try_get_raw(i).map_err(|e| RowError::new("", e.to_string()))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let info = raw.type_info().into_owned();
    if let PgTypeKind::Enum(_) = info.kind() {
        return row.try_get_unchecked::<String, _>(i).map(Cell::Text).map_err(|e| RowError::new("", e.to_string()));
    }
    if let Ok(b) = row.try_get::<bool, _>(i) {
        return Ok(Cell::Bool(b));
    }
    if let Ok(n) = row.try_get::<i16, _>(i) {
        return Ok(Cell::Int(n.into()));
    }
    if let Ok(n) = row.try_get::<i32, _>(i) {
        return Ok(Cell::Int(n.into()));
    }
    if let Ok(n) = row.try_get::<i64, _>(i) {
        return Ok(Cell::Int(n));
    }
    if let Ok(s) = row.try_get::<String, _>(i) {
        let s = if info.name() == "BPCHAR" { s.trim_end_matches(' ').to_string() } else { s };
        return Ok(Cell::Text(s));
    }
    if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
        return Ok(Cell::Bytes(b));
    }
    Err(RowError::new("", format!("type {} cannot be read; cast it in the query (`::text`)", info.name())))
}

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    crate::sql::auth_provider::<Postgres>(name, cfg)
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    crate::sql::acl_provider::<Postgres>(name, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pool::PoolConfig;
    use crate::common::tls::TlsConfig;

    fn conn<'a>(url: Option<&'a str>, pool: &'a PoolConfig, tls: &'a TlsConfig) -> Connection<'a> {
        Connection { url, host: None, port: None, database: None, username: None, password: None, pool, tls }
    }

    #[test]
    fn parts_override_the_url() {
        let (pool, tls) = (PoolConfig::default(), TlsConfig::default());
        let mut c = conn(Some("postgres://u@h:1/db"), &pool, &tls);
        c.port = Some(2);
        c.database = Some("other");
        let o = Postgres::connect_options(&c).unwrap();
        assert_eq!((o.get_host(), o.get_port(), o.get_username()), ("h", 2, "u"));
        assert_eq!(o.get_database(), Some("other"));
        let e = Postgres::connect_options(&conn(Some("mysql//x"), &pool, &tls)).unwrap_err();
        assert!(e.is("url", crate::common::BuildErrorKind::Invalid), "{e}");
    }

    #[test]
    fn tls_means_verify_full() {
        let pool = PoolConfig::default();
        let tls = TlsConfig { enable: true, ca_file: Some("/nonexistent/ca.pem".into()), ..TlsConfig::default() };
        let o = Postgres::connect_options(&conn(Some("postgres://u@h/db"), &pool, &tls)).unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(Postgres::endpoint(&o), Endpoint::new("h", true));
    }

    #[test]
    fn only_verify_modes_count_as_verified() {
        let (pool, tls) = (PoolConfig::default(), TlsConfig::default());
        for (url, verified) in [
            ("postgres://u@db.internal/mqtt", false),
            ("postgres://u@db.internal/mqtt?sslmode=require", false),
            ("postgres://u@db.internal/mqtt?sslmode=verify-ca", true),
            ("postgres://u@db.internal/mqtt?sslmode=verify-full", true),
        ] {
            let o = Postgres::connect_options(&conn(Some(url), &pool, &tls)).unwrap();
            assert_eq!(Postgres::endpoint(&o), Endpoint::new("db.internal", verified), "{url}");
        }
    }
}
