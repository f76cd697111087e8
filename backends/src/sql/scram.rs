//! PostgreSQL / MySQL as a SCRAM credential source
//! (`[auth.scram.<name>.postgres]`, `[auth.scram.<name>.mysql]`): one row
//! per user with EMQX's columns `salt`, `stored_key`, `server_key`, and
//! optionally `iterations` (else the table's `iteration_count`) and
//! `is_superuser`.
//!
//! Binary columns (`bytea`, `VARBINARY`, `BLOB`) hold the raw bytes; text
//! columns hold them hex-encoded (EMQX's encoding). No row: an unknown user
//! (answered with a decoy, refused at the proof). When the query binds
//! `${username}` and returns a `username` column, it must equal the SCRAM
//! user exactly (MySQL's collations compare case-insensitively).

use std::sync::Arc;

use portcullis_auth::scram::{from_hex, Algorithm, CredentialSource, ScramCredential};
use portcullis_core::gate::GateFuture;
use portcullis_core::provider::{ErrorKind, ProviderError};
use serde::Deserialize;

use super::client::{Client, Driver};
use super::config::Connection;
use super::query::Query;
use super::row::Cell;
use crate::common::pool::PoolConfig;
use crate::common::secret::Secret;
use crate::common::template::{Values, Var};
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// EMQX's columns, from EMQX's user table.
pub fn default_scram_query() -> String {
    "SELECT salt, stored_key, server_key, iterations, is_superuser FROM mqtt_user WHERE username = ${username} LIMIT 1"
        .to_string()
}

const COLUMNS: [&str; 6] = ["salt", "stored_key", "server_key", "iterations", "is_superuser", "username"];

/// `[auth.scram.<name>.postgres]` / `[auth.scram.<name>.mysql]`: the
/// connection keys of `[auth.postgres.<name>]` and the query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramSqlConfig {
    /// The connection URL, without a password (use `password`).
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
    /// Finds the user's credential; `${username}` (the SCRAM user) is bound
    /// as a parameter.
    #[serde(default = "default_scram_query")]
    pub query: String,
}

impl ScramSqlConfig {
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

/// SCRAM credentials from a SQL database.
pub struct SqlScram<D: Driver> {
    client: Arc<Client<D>>,
    query: Query,
    default_iterations: u32,
    exact_username: bool,
}

impl<D: Driver> std::fmt::Debug for SqlScram<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlScram").field("kind", &D::KIND).field("query", &self.query.source()).finish_non_exhaustive()
    }
}

impl<D: Driver> SqlScram<D> {
    /// Builds the source (the pool connects lazily); errors name the key.
    pub fn new(name: &str, cfg: &ScramSqlConfig, default_iterations: u32) -> Result<SqlScram<D>, BuildError> {
        cfg.connection().validate(D::KIND)?;
        let query = Query::parse(&cfg.query, &[Var::Username], D::DOLLAR).map_err(|e| e.under("query"))?;
        let client = Client::<D>::new(name, &cfg.connection())?;
        client.probe();
        let exact_username = query.binds(Var::Username);
        Ok(SqlScram { client, query, default_iterations, exact_username })
    }

    async fn find(&self, username: &str) -> Result<Option<ScramCredential>, ProviderError> {
        let values = Values { username: Some(username), ..Values::default() };
        let rows = self.client.fetch(self.query.sql(), &self.query.values(&values), &COLUMNS).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        if self.exact_username && row.has("username") && row.text("username")?.as_deref() != Some(username) {
            return Ok(None);
        }
        let bytes = |name: &str| -> Result<Option<Vec<u8>>, ProviderError> {
            match row.get(name) {
                None => Err(bad(format!("the query returned no {name} column"))),
                Some(Cell::Null) => Ok(None),
                Some(Cell::Bytes(b)) => Ok(Some(b.clone())),
                Some(Cell::Text(t)) => from_hex(t).map(Some).ok_or_else(|| bad(format!("{name} is not hex"))),
                Some(_) => Err(bad(format!("{name} is neither bytes nor hex text"))),
            }
        };
        let (Some(salt), Some(stored_key), Some(server_key)) =
            (bytes("salt")?, bytes("stored_key")?, bytes("server_key")?)
        else {
            // A user without a SCRAM credential cannot log in with SCRAM.
            return Ok(None);
        };
        let iterations = match row.get("iterations") {
            None | Some(Cell::Null) => self.default_iterations,
            Some(_) => {
                let n = row.int("iterations")?;
                u32::try_from(n).map_err(|_| bad(format!("iterations {n} out of range")))?
            }
        };
        let superuser = row.flag("is_superuser")?;
        Ok(Some(ScramCredential { salt, iterations, stored_key, server_key, superuser, inline_acl: None }))
    }
}

fn bad(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::BadResponse, message)
}

impl<D: Driver> CredentialSource for SqlScram<D> {
    fn lookup<'a>(
        &'a self,
        username: &'a str,
        _alg: Algorithm,
    ) -> GateFuture<'a, Result<Option<ScramCredential>, ProviderError>> {
        Box::pin(self.find(username))
    }
}

/// Builds a SQL credential source for driver `D`.
pub fn scram_source<D: Driver>(
    name: &str,
    cfg: &ScramSqlConfig,
    default_iterations: u32,
) -> Result<Arc<dyn CredentialSource>, BuildError> {
    Ok(Arc::new(SqlScram::<D>::new(name, cfg, default_iterations)?))
}
