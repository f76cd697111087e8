//! The SQL auth provider.
//!
//! 1. The query runs with the client's values bound. No row: the user is
//!    not ours, answer Ignore (the next provider is asked) after a decoy
//!    verification of the password, so an unknown user takes as long as a
//!    wrong password (`common::password::unknown_user`).
//! 2. The first row's `password_hash` (or, emqttd, `password`) column is
//!    checked against the CONNECT's password with `salt` per
//!    `password_hash` (self-describing bcrypt, Argon2, PBKDF2 and
//!    Mosquitto values are recognised whatever it says). A wrong or missing
//!    password, or a user whose hash is `NULL`, is bad credentials.
//!
//!    When the query binds `${username}` and the row has a `username`
//!    column, that column must equal the client's username exactly:
//!    MySQL's default collations compare case- and trailing-space-
//!    insensitively, and `Alice` or `alice ` must not log in as `alice`.
//!    Otherwise the row is not this user's (Ignore).
//! 3. The client is a superuser when the row's `is_superuser` is true, or,
//!    with `superuser_query`, when that query returns a row whose
//!    `is_superuser` is true.
//!
//! A result without a password column, or a stored hash that cannot be
//! parsed, is a backend error (never a deny): the configuration is wrong,
//! and `on_error` decides.

use std::sync::Arc;

use portcullis_auth::hash::{Decoy, HashConfig};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::client::{Client, Driver};
use super::config::AuthConfig;
use super::query::Query;
use crate::common::password::{check_password, unknown_user};
use crate::common::template::{Values, Var};
use crate::common::BuildError;

/// The columns the auth query's rows are read for.
const USER_COLUMNS: [&str; 5] = ["password_hash", "password", "salt", "is_superuser", "username"];
const SUPERUSER_COLUMNS: [&str; 1] = ["is_superuser"];

pub struct SqlAuth<D: Driver> {
    name: String,
    client: Arc<Client<D>>,
    query: Query,
    superuser_query: Option<Query>,
    hash: HashConfig,
    /// Verified for unknown users (see `check_password`).
    decoy: Decoy,
    /// The query binds `${username}`: a returned `username` must equal it.
    exact_username: bool,
    rule: String,
}

impl<D: Driver> std::fmt::Debug for SqlAuth<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAuth")
            .field("kind", &D::KIND)
            .field("name", &self.name)
            .field("query", &self.query.source())
            .field("superuser_query", &self.superuser_query.as_ref().map(Query::source))
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> SqlAuth<D> {
    /// Builds the provider (the pool connects lazily). Errors name the key.
    pub fn new(name: &str, cfg: &AuthConfig) -> Result<SqlAuth<D>, BuildError> {
        let query = Query::parse(&cfg.query, &Var::CONNECT, D::DOLLAR).map_err(|e| e.under("query"))?;
        let superuser_query = cfg
            .superuser_query
            .as_deref()
            .map(|q| Query::parse(q, &Var::CONNECT, D::DOLLAR).map_err(|e| e.under("superuser_query")))
            .transpose()?;
        let hash = cfg.password_hash.to_hash_config()?;
        let client = Client::<D>::new(name, &cfg.connection())?;
        let exact_username = query.binds(Var::Username);
        Ok(SqlAuth {
            name: name.to_string(),
            client,
            query,
            superuser_query,
            decoy: Decoy::for_config(&hash),
            hash,
            exact_username,
            rule: format!("{}:{name}", D::KIND),
        })
    }

    /// Where the provider connects.
    pub fn endpoint(&self) -> &crate::common::transport::Endpoint {
        self.client.endpoint()
    }

    /// Starts the background connection probe (see [`Client::probe`]).
    pub fn probe(&self) {
        self.client.probe();
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        let values = Values::from_connect(info);
        let rows = self.client.fetch(self.query.sql(), &self.query.values(&values), &USER_COLUMNS).await?;
        let Some(row) = rows.first() else {
            unknown_user(info, &self.decoy).await;
            return Ok(AuthAnswer::ignore());
        };
        if self.exact_username && row.has("username") {
            let stored = row.text("username")?;
            if stored.as_deref() != info.username.as_deref() {
                unknown_user(info, &self.decoy).await;
                return Ok(AuthAnswer::ignore());
            }
        }
        let answer = |decision| Ok(AuthAnswer::new(decision, Some(self.rule.clone())));
        let column = if row.has("password_hash") { "password_hash" } else { "password" };
        if !row.has(column) {
            return Err(bad("the query returned no password_hash (or password) column"));
        }
        let Some(stored) = row.text(column)? else {
            // A user without a password cannot log in with one.
            return answer(AuthDecision::Deny(DenyReason::BadCredentials));
        };
        let salt = row.text("salt")?;
        if let Some(deny) = check_password(info, &stored, salt.as_deref(), &self.hash, &self.decoy).await? {
            return answer(AuthDecision::Deny(deny));
        }
        let mut superuser = row.flag("is_superuser")?;
        if let Some(q) = &self.superuser_query {
            let rows = self.client.fetch(q.sql(), &q.values(&values), &SUPERUSER_COLUMNS).await?;
            superuser = match rows.first() {
                Some(r) if !r.has("is_superuser") => {
                    return Err(bad("superuser_query returned no is_superuser column"));
                }
                Some(r) => r.flag("is_superuser")?,
                None => false,
            };
        }
        answer(AuthDecision::Allow { superuser, inline_acl: None, expires_at: None })
    }
}

fn bad(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::BadResponse, message)
}

impl<D: Driver> AuthProvider for SqlAuth<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        crate::common::template::auth_inputs(
            std::iter::once(self.query.template()).chain(self.superuser_query.as_ref().map(Query::template)),
        )
    }

    fn kind(&self) -> &'static str {
        D::KIND
    }

    fn health(&self) -> Option<bool> {
        Some(self.client.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}
