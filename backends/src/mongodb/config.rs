//! `[auth.mongodb.<name>]` and `[acl.mongodb.<name>]` as written, and
//! their validation (pure, errors name the key). Defaults follow EMQX 5.

use std::time::Duration;

use mongodb::bson::Document;
use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::filter::Filter;
use crate::common::default_timeout;
use crate::common::password::PasswordHashConfig;
use crate::common::pool::PoolConfig;
use crate::common::secret::Secret;
use crate::common::template::Var;
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// `[auth.mongodb.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `mongodb://host:27017`, a replica set
    /// `mongodb://h1:27017,h2:27017/?replicaSet=rs0`, or `mongodb+srv://…`.
    /// Credentials (`user:pass@`) and options that turn certificate checks
    /// off (`tlsInsecure`, `tlsAllowInvalidCertificates`,
    /// `tlsAllowInvalidHostnames`) are refused: use `username` / `password`
    /// and `tls`.
    pub uri: String,
    /// The database holding `collection`.
    pub database: String,
    /// Login (SCRAM) as this user; none: no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The login's password (inline, `{ env = … }` or `{ file = … }`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The database the login is defined in (MongoDB's default: `database`).
    #[serde(default)]
    pub auth_source: Option<String>,
    /// TLS to the server: `tls = { enable = true, ca_file = "…" }`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connections (size, min_idle, connect and query timeouts, idle time).
    #[serde(default)]
    pub pool: PoolConfig,
    /// The users' collection.
    #[serde(default = "default_user_collection")]
    pub collection: String,
    /// Finds the user's document; placeholders only as string values.
    #[serde(default = "default_filter")]
    pub filter: Map<String, Value>,
    /// Field holding the password hash.
    #[serde(default = "default_password_hash_field")]
    pub password_hash_field: String,
    /// Field holding the salt (absent or empty: unsalted).
    #[serde(default = "default_salt_field")]
    pub salt_field: String,
    /// Field that makes the user a superuser (true, a non-zero number, or
    /// `"true"`).
    #[serde(default = "default_is_superuser_field")]
    pub is_superuser_field: String,
    /// How `password_hash_field` is hashed (self-describing values such as
    /// bcrypt or `$argon2id$` are recognised whatever this says).
    #[serde(default)]
    pub password_hash: PasswordHashConfig,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the server fails (`deny` or `ignore`).
    #[serde(default)]
    pub on_error: OnError,
}

pub fn default_user_collection() -> String {
    "mqtt_user".to_string()
}
pub fn default_filter() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("username".to_string(), Value::String("${username}".to_string()));
    m
}
pub fn default_password_hash_field() -> String {
    "password_hash".to_string()
}
pub fn default_salt_field() -> String {
    "salt".to_string()
}
pub fn default_is_superuser_field() -> String {
    "is_superuser".to_string()
}

/// `[acl.mongodb.<name>]`: every document the filter finds is a rule
/// (EMQX 5: `permission`, `action`, `topics`), tried in `sort` order
/// (default `_id`); the first that matches decides, none: Ignore.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// As for auth.
    pub uri: String,
    /// The database holding `collection`.
    pub database: String,
    /// Login (SCRAM) as this user.
    #[serde(default)]
    pub username: Option<String>,
    /// The login's password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The database the login is defined in.
    #[serde(default)]
    pub auth_source: Option<String>,
    /// TLS to the server.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connections.
    #[serde(default)]
    pub pool: PoolConfig,
    /// The rules' collection.
    #[serde(default = "default_acl_collection")]
    pub collection: String,
    /// Finds the client's rules; placeholders only as string values.
    #[serde(default = "default_filter")]
    pub filter: Map<String, Value>,
    /// `allow` or `deny`.
    #[serde(default = "default_permission_field")]
    pub permission_field: String,
    /// `publish`, `subscribe` or `all`.
    #[serde(default = "default_action_field")]
    pub action_field: String,
    /// A list of topic filters (or one string).
    #[serde(default = "default_topics_field")]
    pub topics_field: String,
    /// Optional: the QoS levels the rule applies to (a number or a list).
    #[serde(default = "default_qos_field")]
    pub qos_field: String,
    /// Optional: the retain flag the rule applies to (publishes).
    #[serde(default = "default_retain_field")]
    pub retain_field: String,
    /// Rules read for one client at most (more: an error, never a partial
    /// rule set).
    #[serde(default = "default_max_rules")]
    pub max_rules: u32,
    /// The order rules are read and tried in: field names, ascending, or
    /// descending with a leading `-` (`["-priority", "_id"]`). The server's
    /// natural order is not an order (it changes with updates and
    /// compaction), so the default sorts by `_id`: insertion order for
    /// ObjectIds.
    #[serde(default = "default_sort")]
    pub sort: Vec<String>,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the server fails.
    #[serde(default)]
    pub on_error: OnError,
}

pub fn default_acl_collection() -> String {
    "mqtt_acl".to_string()
}
pub fn default_permission_field() -> String {
    "permission".to_string()
}
pub fn default_action_field() -> String {
    "action".to_string()
}
pub fn default_topics_field() -> String {
    "topics".to_string()
}
pub fn default_qos_field() -> String {
    "qos".to_string()
}
pub fn default_retain_field() -> String {
    "retain".to_string()
}
pub fn default_max_rules() -> u32 {
    1000
}
pub fn default_sort() -> Vec<String> {
    vec!["_id".to_string()]
}

crate::call_policy!(AuthConfig, AclConfig);

/// What both providers need to reach the server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub uri: String,
    pub database: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub auth_source: Option<String>,
    pub tls: TlsConfig,
    pub pool: PoolConfig,
}

/// Placeholders a filter may use (never the password).
const AUTH_VARS: [Var; 6] =
    [Var::Username, Var::ClientId, Var::Peerhost, Var::CertCommonName, Var::CertSubject, Var::Protocol];
const ACL_VARS: [Var; 6] =
    [Var::Username, Var::ClientId, Var::Peerhost, Var::CertCommonName, Var::CertSubject, Var::Protocol];

impl AuthConfig {
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            uri: self.uri.clone(),
            database: self.database.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            auth_source: self.auth_source.clone(),
            tls: self.tls.clone(),
            pool: self.pool.clone(),
        }
    }

    pub fn compiled_filter(&self) -> Result<Filter, BuildError> {
        Filter::compile("filter", &self.filter, &AUTH_VARS)
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        self.server_settings().validate()?;
        self.compiled_filter()?;
        self.password_hash.to_hash_config()?;
        for (key, v) in [
            ("collection", &self.collection),
            ("password_hash_field", &self.password_hash_field),
            ("salt_field", &self.salt_field),
            ("is_superuser_field", &self.is_superuser_field),
        ] {
            field_name(key, v)?;
        }
        Ok(())
    }
}

impl AclConfig {
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            uri: self.uri.clone(),
            database: self.database.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            auth_source: self.auth_source.clone(),
            tls: self.tls.clone(),
            pool: self.pool.clone(),
        }
    }

    pub fn compiled_filter(&self) -> Result<Filter, BuildError> {
        Filter::compile("filter", &self.filter, &ACL_VARS)
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        self.server_settings().validate()?;
        self.compiled_filter()?;
        for (key, v) in [
            ("collection", &self.collection),
            ("permission_field", &self.permission_field),
            ("action_field", &self.action_field),
            ("topics_field", &self.topics_field),
            ("qos_field", &self.qos_field),
            ("retain_field", &self.retain_field),
        ] {
            field_name(key, v)?;
        }
        if self.max_rules == 0 {
            return Err(BuildError::invalid("max_rules", "must be at least 1"));
        }
        self.sort_document()?;
        Ok(())
    }

    /// `sort` as a sort document (`{ priority: -1, _id: 1 }`).
    pub fn sort_document(&self) -> Result<Document, BuildError> {
        if self.sort.is_empty() {
            return Err(BuildError::invalid("sort", "name at least one field (the default is [\"_id\"])"));
        }
        let mut d = Document::new();
        for (i, f) in self.sort.iter().enumerate() {
            let (name, dir) = match f.strip_prefix('-') {
                Some(name) => (name, -1),
                None => (f.as_str(), 1),
            };
            field_name(&format!("sort[{i}]"), name)?;
            if d.insert(name, dir).is_some() {
                return Err(BuildError::invalid(format!("sort[{i}]"), format!("{name:?} is listed twice")));
            }
        }
        Ok(d)
    }
}

fn field_name(key: &str, v: &str) -> Result<(), BuildError> {
    if v.trim().is_empty() {
        return Err(BuildError::invalid(key, "must not be empty"));
    }
    if v.starts_with('$') {
        return Err(BuildError::invalid(key, format!("{v:?} is not a field name")));
    }
    Ok(())
}

impl ServerSettings {
    /// Each host of the URI (the SRV name for `mongodb+srv://`); verified
    /// with `tls` or the URI's `tls=true` / `ssl=true` (the options that
    /// would turn checks off are refused by [`ServerSettings::validate`]).
    pub fn endpoints(&self) -> Vec<crate::common::transport::Endpoint> {
        let rest = self.uri.split_once("://").map_or(self.uri.as_str(), |(_, r)| r);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        let uri_tls = query.split(['&', ';']).any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            matches!(k.to_ascii_lowercase().as_str(), "tls" | "ssl") && v.eq_ignore_ascii_case("true")
        });
        let verified = self.tls.enable || uri_tls;
        rest[..end]
            .split(',')
            .map(|a| crate::common::transport::Endpoint::new(crate::common::transport::host_of(a), verified))
            .collect()
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        check_uri(&self.uri)?;
        if self.database.trim().is_empty() {
            return Err(BuildError::invalid("database", "must not be empty"));
        }
        match (&self.username, &self.password) {
            (Some(_), None) => return Err(BuildError::missing("password", "required with username")),
            (None, Some(_)) => return Err(BuildError::missing("username", "required with password")),
            _ => {}
        }
        if let Some(p) = &self.password {
            p.resolve("password")?;
        }
        if self.auth_source.is_some() && self.username.is_none() {
            return Err(BuildError::invalid("auth_source", "needs username"));
        }
        if self.tls.enable {
            if self.tls.server_name.is_some() {
                return Err(BuildError::invalid(
                    "tls.server_name",
                    "not supported by the mongodb backend (the host in the uri is verified)",
                ));
            }
            if self.tls.cert_file != self.tls.key_file {
                return Err(BuildError::invalid(
                    "tls.key_file",
                    "must name the same file as tls.cert_file: the MongoDB driver reads the client certificate and \
                     its key from one PEM file",
                ));
            }
        }
        self.tls.validate()?;
        self.pool.validate()
    }
}

/// The URI names servers and options, never secrets nor weakened TLS:
/// credentials in it end up wherever the URI is shown (logs, `ps`, config
/// dumps) and bypass the secret keys; `tlsInsecure` and
/// `tlsAllowInvalid*` let anyone on the path answer the auth query.
fn check_uri(uri: &str) -> Result<(), BuildError> {
    let Some(rest) = uri.strip_prefix("mongodb://").or_else(|| uri.strip_prefix("mongodb+srv://")) else {
        return Err(BuildError::invalid("uri", "must start with mongodb:// or mongodb+srv://"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..end].contains('@') {
        return Err(BuildError::invalid(
            "uri",
            "contains credentials; put the user in `username` and the password in `password` (inline, \
             { env = \"VAR\" } or { file = \"/path\" })",
        ));
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split(['&', ';']) {
        let key = pair.split('=').next().unwrap_or("").trim();
        let lower = key.to_ascii_lowercase();
        if lower == "tlsinsecure" || lower.starts_with("tlsallowinvalid") || lower.starts_with("sslallowinvalid") {
            return Err(BuildError::invalid(
                "uri",
                format!(
                    "{key} turns off the server's certificate checks; remove it and use tls = {{ enable = true, \
                     ca_file = \"…\" }}"
                ),
            ));
        }
    }
    Ok(())
}
