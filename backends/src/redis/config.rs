//! `[auth.redis.<name>]` and `[acl.redis.<name>]` as written, and their
//! validation. Both tables carry the same connection keys (`servers`,
//! `mode`, `database`, `username`, `password`, `pool`, `tls`); validation
//! turns them into one [`Connection`] that the client is built from.

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

/// `servers = "host:port"` or `servers = ["host:port", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Servers {
    One(String),
    Many(Vec<String>),
}

impl Servers {
    fn list(&self) -> Vec<&str> {
        match self {
            Servers::One(s) => vec![s.as_str()],
            Servers::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `mode`: one server, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Single,
    Cluster,
}

pub fn default_servers() -> Servers {
    Servers::One("127.0.0.1:6379".to_string())
}

/// EMQX 5's default authentication command.
pub fn default_auth_command() -> String {
    "HMGET mqtt_user:${username} password_hash salt is_superuser".to_string()
}

/// EMQX 5's default ACL command.
pub fn default_acl_command() -> String {
    "HGETALL mqtt_acl:${username}".to_string()
}

/// `[auth.redis.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `host:port` of the server, or a list of cluster seed nodes.
    #[serde(default = "default_servers")]
    pub servers: Servers,
    /// `single` (a bb8 pool to one server) or `cluster`.
    #[serde(default)]
    pub mode: Mode,
    /// Database number (`SELECT`); a cluster has only 0.
    #[serde(default)]
    pub database: u32,
    /// ACL user to log in as (Redis 6+); without it, `AUTH password` logs in
    /// as the default user.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `AUTH` (inline, `{ env = "..." }` or `{ file = "..." }`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connection pool (single mode; a cluster connection multiplexes).
    #[serde(default)]
    pub pool: PoolConfig,
    /// TLS to Redis (`rediss`): the CA file and an optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `HMGET`, `HGET` or `HGETALL` of a key built from placeholders; the
    /// fields read are `password_hash` (or emqttd's `password`), `salt` and
    /// `is_superuser`.
    #[serde(default = "default_auth_command")]
    pub command: String,
    /// Run after a successful login when the first command did not say
    /// the user is a superuser (emqttd's `super_cmd`, such as
    /// `HGET mqtt_user:%u is_superuser`); a true value (`1`, `true`) makes
    /// the client a superuser.
    #[serde(default)]
    pub superuser_command: Option<String>,
    /// How stored passwords are hashed (self-describing values such as
    /// bcrypt or argon2id are recognised whatever this says).
    #[serde(default)]
    pub password_hash: PasswordHashConfig,
    /// The chain's per-call timeout.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when Redis fails: `deny` (fail closed) or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

/// `[acl.redis.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// `host:port` of the server, or a list of cluster seed nodes.
    #[serde(default = "default_servers")]
    pub servers: Servers,
    /// `single` (a bb8 pool to one server) or `cluster`.
    #[serde(default)]
    pub mode: Mode,
    /// Database number (`SELECT`); a cluster has only 0.
    #[serde(default)]
    pub database: u32,
    /// ACL user to log in as (Redis 6+).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `AUTH` (inline, `{ env = "..." }` or `{ file = "..." }`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connection pool (single mode; a cluster connection multiplexes).
    #[serde(default)]
    pub pool: PoolConfig,
    /// TLS to Redis (`rediss`): the CA file and an optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `HGETALL` of a hash whose fields are topics and whose values are
    /// actions (`publish`, `subscribe`, `all`; emqttd's `1`, `2`, `3`; or
    /// EMQX's JSON `{"action": ..., "qos": [...], "retain": ...}`).
    #[serde(default = "default_acl_command")]
    pub command: String,
    /// The chain's per-call timeout.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when Redis fails: `deny` (fail closed) or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

crate::call_policy!(AuthConfig, AclConfig);

/// A validated server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The connection settings of either table, validated, with the password
/// resolved.
#[derive(Clone)]
pub struct Connection {
    pub servers: Vec<Address>,
    pub mode: Mode,
    pub database: u32,
    pub username: Option<String>,
    pub password: Option<String>,
    pub pool: PoolConfig,
    pub tls: TlsConfig,
}

impl Connection {
    /// Each server; verified with `tls` (the CA is always checked).
    pub fn endpoints(&self) -> Vec<crate::common::transport::Endpoint> {
        self.servers.iter().map(|a| crate::common::transport::Endpoint::new(a.host.clone(), self.tls.enable)).collect()
    }
}

impl std::fmt::Debug for Connection {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("servers", &self.servers)
            .field("mode", &self.mode)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool", &self.pool)
            .field("tls", &self.tls)
            .finish()
    }
}

impl AuthConfig {
    pub fn connection(&self) -> Result<Connection, BuildError> {
        connection(
            &self.servers,
            self.mode,
            self.database,
            self.username.as_ref(),
            self.password.as_ref(),
            &self.pool,
            &self.tls,
        )
    }
}

impl AclConfig {
    pub fn connection(&self) -> Result<Connection, BuildError> {
        connection(
            &self.servers,
            self.mode,
            self.database,
            self.username.as_ref(),
            self.password.as_ref(),
            &self.pool,
            &self.tls,
        )
    }
}

fn connection(
    servers: &Servers,
    mode: Mode,
    database: u32,
    username: Option<&String>,
    password: Option<&Secret>,
    pool: &PoolConfig,
    tls: &TlsConfig,
) -> Result<Connection, BuildError> {
    let list = servers.list();
    if list.is_empty() {
        return Err(BuildError::missing("servers", "at least one host:port is needed"));
    }
    let servers = list.iter().map(|s| parse_address(s)).collect::<Result<Vec<_>, _>>()?;
    if mode == Mode::Single && servers.len() > 1 {
        return Err(BuildError::invalid(
            "servers",
            "several servers need mode = \"cluster\" (a single server takes one host:port)",
        ));
    }
    if mode == Mode::Cluster && database != 0 {
        return Err(BuildError::invalid("database", "a Redis Cluster has only database 0"));
    }
    if username.is_some_and(|u| u.is_empty()) {
        return Err(BuildError::invalid("username", "must not be empty (leave it out to log in as the default user)"));
    }
    if username.is_some() && password.is_none() {
        return Err(BuildError::missing("password", "required with username"));
    }
    let password = password.map(|p| p.resolve("password")).transpose()?;
    pool.validate()?;
    tls.validate()?;
    if !tls.enable && (tls.ca_file.is_some() || tls.cert_file.is_some()) {
        return Err(BuildError::invalid("tls.enable", "set it to true to use tls.ca_file / tls.cert_file"));
    }
    if tls.server_name.is_some() {
        return Err(BuildError::invalid(
            "tls.server_name",
            "not supported by the redis backend; connect to a name or address in the server's certificate",
        ));
    }
    Ok(Connection {
        servers,
        mode,
        database,
        username: username.cloned(),
        password,
        pool: pool.clone(),
        tls: tls.clone(),
    })
}

/// `host:port`, `[v6]:port`; the port is required.
pub fn parse_address(s: &str) -> Result<Address, BuildError> {
    let bad = || BuildError::invalid("servers", format!("{s:?} is not host:port"));
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(BuildError::invalid("servers", format!("{s:?}: write an IPv6 address as [addr]:port")));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(Address { host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::BuildErrorKind;

    fn auth(json: &str) -> Result<AuthConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_emqx_on_localhost() {
        let c = auth("{}").unwrap();
        assert_eq!(c.command, "HMGET mqtt_user:${username} password_hash salt is_superuser");
        assert_eq!(c.mode, Mode::Single);
        let conn = c.connection().unwrap();
        assert_eq!(conn.servers, vec![Address { host: "127.0.0.1".into(), port: 6379 }]);
        let acl: AclConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(acl.command, "HGETALL mqtt_acl:${username}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(auth(r#"{"server": "a:1"}"#).unwrap_err().contains("unknown field `server`"));
        assert!(auth(r#"{"pool": {"sise": 1}}"#).unwrap_err().contains("unknown field `sise`"));
    }

    #[test]
    fn servers_and_modes() {
        let c = auth(r#"{"servers": ["a:1", "[::1]:2"], "mode": "cluster"}"#).unwrap().connection().unwrap();
        assert_eq!(c.servers[1], Address { host: "::1".into(), port: 2 });
        assert_eq!(c.servers[1].to_string(), "[::1]:2");
        let e = auth(r#"{"servers": ["a:1", "b:2"]}"#).unwrap().connection().unwrap_err();
        assert!(e.is("servers", BuildErrorKind::Invalid), "{e}");
        assert!(e.to_string().starts_with("servers: several servers need mode"), "{e}");
        for bad in ["a", "a:", "a:0", ":1", "::1:2", "a:70000"] {
            let e = auth(&format!(r#"{{"servers": "{bad}"}}"#)).unwrap().connection().unwrap_err();
            assert!(e.is("servers", BuildErrorKind::Invalid), "{bad}: {e}");
        }
        let e = auth(r#"{"servers": []}"#).unwrap().connection().unwrap_err();
        assert!(e.is("servers", BuildErrorKind::Missing), "{e}");
        let e = auth(r#"{"mode": "cluster", "database": 1}"#).unwrap().connection().unwrap_err();
        assert!(e.is("database", BuildErrorKind::Invalid), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = auth(r#"{"pool": {"size": 0}}"#).unwrap().connection().unwrap_err();
        assert_eq!(e.to_string(), "pool.size: must be at least 1");
        let e = auth(r#"{"username": "u"}"#).unwrap().connection().unwrap_err();
        assert!(e.is("password", BuildErrorKind::Missing), "{e}");
        let e = auth(r#"{"password": {"env": "PORTCULLIS_SURELY_UNSET_VAR"}}"#).unwrap().connection().unwrap_err();
        assert!(e.is("password", BuildErrorKind::Secret), "{e}");
        assert!(e.to_string().starts_with("password: environment variable"), "{e}");
        let e = auth(r#"{"tls": {"enable": true}}"#).unwrap().connection().unwrap_err();
        assert!(e.is("tls.ca_file", BuildErrorKind::Missing), "{e}");
        let e = auth(r#"{"tls": {"ca_file": "/etc/hostname"}}"#).unwrap().connection().unwrap_err();
        assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
        let e =
            auth(r#"{"tls": {"enable": true, "ca_file": "/nonexistent/ca.pem"}}"#).unwrap().connection().unwrap_err();
        assert!(e.is("tls.ca_file", BuildErrorKind::File), "{e}");
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let c = auth(r#"{"username": "u", "password": "hunter2-secret"}"#).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", c.connection().unwrap()).contains("hunter2"));
    }
}
