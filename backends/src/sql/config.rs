//! `[auth.postgres.<name>]`, `[auth.mysql.<name>]`, `[acl.postgres.<name>]`
//! and `[acl.mysql.<name>]`: one shape for both databases.
//!
//! ```toml
//! [auth.postgres.main]
//! url = "postgres://portcullis@db.internal:5432/mqtt"   # no password here
//! password = { env = "PG_PASSWORD" }
//! pool = { size = 8, connect_timeout = "3s", query_timeout = "3s" }
//! tls = { enable = true, ca_file = "/etc/portcullis/db-ca.pem" }
//! password_hash = { algo = "sha256", salt_position = "prefix" }
//! ```
//!
//! The connection comes from `url` and/or the parts (`host`, `port`,
//! `database`, `username`), which override the URL's. The password is never
//! part of the URL (URLs end up in logs): it is a [`Secret`].

use std::time::Duration;

use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::default_timeout;
use crate::common::password::PasswordHashConfig;
use crate::common::pool::PoolConfig;
use crate::common::secret::Secret;
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// The default auth query. `SELECT *` so that one default serves EMQX 5's
/// `mqtt_user` (`password_hash`, `salt`, `is_superuser`) and emqttd 1.x's
/// (`password`, `salt`, `is_superuser`): columns are read by name.
pub fn default_auth_query() -> String {
    "SELECT * FROM mqtt_user WHERE username = ${username} LIMIT 1".to_string()
}

/// `[auth.postgres.<name>]` / `[auth.mysql.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `postgres://user@host:port/database` or `mysql://user@host:port/database`,
    /// without a password (use `password`). Query parameters such as
    /// `sslmode` or `application_name` are passed on.
    #[serde(default)]
    pub url: Option<String>,
    /// Server host name or address (overrides the URL's).
    #[serde(default)]
    pub host: Option<String>,
    /// Server port (overrides the URL's; default 5432 / 3306).
    #[serde(default)]
    pub port: Option<u16>,
    /// Database (overrides the URL's).
    #[serde(default)]
    pub database: Option<String>,
    /// Database user (overrides the URL's).
    #[serde(default)]
    pub username: Option<String>,
    /// The database user's password: `"…"`, `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connection pool.
    #[serde(default)]
    pub pool: PoolConfig,
    /// TLS to the database (verify-full / verify-identity against `ca_file`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Finds the user: the first row's `password_hash` (or `password`),
    /// `salt` and `is_superuser` columns are used; no row means "not my
    /// user" (the next provider is asked). Placeholders `${username}`,
    /// `${clientid}`, `${peerhost}`, `${cert_common_name}`,
    /// `${cert_subject}` (or emqttd's `%u`, `%c`, `%a`, `%C`, `%d`) are bound
    /// as parameters.
    #[serde(default = "default_auth_query")]
    pub query: String,
    /// Optional second query run after a correct password; the client is a
    /// superuser when it returns a row whose `is_superuser` is true
    /// (emqttd's `super_query`).
    #[serde(default)]
    pub superuser_query: Option<String>,
    /// How the password column is hashed when the value does not say so
    /// itself (default: EMQX's salted SHA-256, salt first, hex).
    #[serde(default)]
    pub password_hash: PasswordHashConfig,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the database fails: `deny` (fail closed) or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

/// `[acl.postgres.<name>]` / `[acl.mysql.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// As in the auth table: the connection URL without a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Server host name or address (overrides the URL's).
    #[serde(default)]
    pub host: Option<String>,
    /// Server port (overrides the URL's).
    #[serde(default)]
    pub port: Option<u16>,
    /// Database (overrides the URL's).
    #[serde(default)]
    pub database: Option<String>,
    /// Database user (overrides the URL's).
    #[serde(default)]
    pub username: Option<String>,
    /// The database user's password: `"…"`, `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connection pool.
    #[serde(default)]
    pub pool: PoolConfig,
    /// TLS to the database.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Returns the client's rules, in order, as EMQX rows (`permission`,
    /// `action`, `topic`, optional `qos`, `retain`, `clientid`,
    /// `ipaddress`) or emqttd rows (`allow`, `access`, `topic`,
    /// `username`, `clientid`, `ipaddr`). Placeholders as in the auth query
    /// plus `${topic}`, `${action}`, `${qos}`, `${retain}`, `${protocol}`.
    /// Unset: the columns of `mqtt_acl` are looked at on first use and
    /// EMQX's or emqttd's default query for that table is used.
    #[serde(default)]
    pub query: Option<String>,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the database fails: `deny` (fail closed) or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

crate::call_policy!(AuthConfig, AclConfig);

/// The connection settings both tables share.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub url: Option<&'a str>,
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub database: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub pool: &'a PoolConfig,
    pub tls: &'a TlsConfig,
}

impl AuthConfig {
    pub fn connection(&self) -> Connection<'_> {
        Connection {
            url: self.url.as_deref(),
            host: self.host.as_deref(),
            port: self.port,
            database: self.database.as_deref(),
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            pool: &self.pool,
            tls: &self.tls,
        }
    }
}

impl AclConfig {
    pub fn connection(&self) -> Connection<'_> {
        Connection {
            url: self.url.as_deref(),
            host: self.host.as_deref(),
            port: self.port,
            database: self.database.as_deref(),
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            pool: &self.pool,
            tls: &self.tls,
        }
    }
}

impl Connection<'_> {
    /// Checks what can be checked without connecting; errors name the key.
    pub fn validate(&self, kind: &str) -> Result<(), BuildError> {
        match self.url {
            Some(url) if url_has_password(url) => {
                return Err(BuildError::invalid(
                    "url",
                    "contains a password; put it in `password` (inline, { env = \"VAR\" } or { file = \"/path\" }) \
                     so the URL can be logged",
                ));
            }
            None if self.host.is_none() => {
                return Err(BuildError::missing("url", format!("required (or host): where is the {kind} server?")));
            }
            _ => {}
        }
        self.pool.validate()?;
        self.tls.validate()?;
        if self.tls.server_name.is_some() {
            return Err(BuildError::invalid(
                "tls.server_name",
                format!(
                    "not supported by the {kind} backend; connect to a name the server's certificate carries (url or \
                     host)"
                ),
            ));
        }
        Ok(())
    }

    /// The password, if one is configured.
    pub fn resolve_password(&self) -> Result<Option<String>, BuildError> {
        self.password.map(|s| s.resolve("password")).transpose()
    }
}

/// Whether `scheme://user:password@host/...` carries a password.
pub fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.contains(':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::common::BuildErrorKind;

    fn auth(v: serde_json::Value) -> Result<AuthConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn defaults_and_keys() {
        let c = auth(json!({ "url": "postgres://u@h/db" })).unwrap();
        assert_eq!(c.query, default_auth_query());
        assert_eq!(c.pool, PoolConfig::default());
        assert!(c.superuser_query.is_none());
        assert!(auth(json!({ "url": "x", "qurey": "y" })).unwrap_err().to_string().contains("qurey"));
        let a: AclConfig = serde_json::from_value(json!({ "host": "h" })).unwrap();
        assert!(a.query.is_none());
    }

    #[test]
    fn password_never_in_url() {
        assert!(url_has_password("postgres://u:pw@h:5432/db"));
        assert!(url_has_password("mysql://u:p%40w@h/db"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("postgres://h:5432/db"));
        assert!(!url_has_password("postgres://h/db?x=a:b@c"));
        let c = auth(json!({ "url": "postgres://u:pw@h/db" })).unwrap();
        let e = c.connection().validate("postgres").unwrap_err();
        assert!(e.is("url", BuildErrorKind::Invalid), "{e}");
        assert!(e.to_string().starts_with("url: contains a password"), "{e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let c = auth(json!({ "database": "x" })).unwrap();
        assert!(c.connection().validate("postgres").unwrap_err().is("url", BuildErrorKind::Missing));
        let c = auth(json!({ "host": "h", "pool": { "size": 0 } })).unwrap();
        let e = c.connection().validate("postgres").unwrap_err();
        assert!(e.is("pool.size", BuildErrorKind::Invalid), "{e}");
        assert_eq!(e.to_string(), "pool.size: must be at least 1");
        let c = auth(json!({ "host": "h", "tls": { "enable": true } })).unwrap();
        assert!(c.connection().validate("mysql").unwrap_err().is("tls.ca_file", BuildErrorKind::Missing));
        let c = auth(json!({ "host": "h", "tls": { "enable": true, "ca_file": "/nonexistent/ca.pem" } })).unwrap();
        assert!(c.connection().validate("mysql").unwrap_err().is("tls.ca_file", BuildErrorKind::File));
        let c = auth(json!({ "host": "h", "tls": { "cert_file": "/nonexistent/c.pem" } })).unwrap();
        assert!(c.connection().validate("mysql").unwrap_err().is("tls.key_file", BuildErrorKind::Missing));
        let c = auth(json!({ "host": "h", "password": { "env": "PORTCULLIS_SQL_TEST_UNSET_VAR" } })).unwrap();
        let e = c.connection().resolve_password().unwrap_err();
        assert!(e.is("password", BuildErrorKind::Secret), "{e}");
        assert_eq!(e.to_string(), "password: environment variable PORTCULLIS_SQL_TEST_UNSET_VAR is not set");
    }
}
