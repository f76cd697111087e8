//! MQTT 5 enhanced authentication, built from `[auth.scram.<name>]` and
//! `[auth.enhanced_token.<name>]`:
//!
//! * [`EnhancedMethods`] — what every listener's gateway serves: the
//!   SCRAM mechanisms by method ([`Registry`]) and the token method names;
//! * [`TokenExchange`] — the single-step token method: the Authentication
//!   Data goes through the listener's auth chain as the password (cache,
//!   guard and all, exactly like a CONNECT's password), so a JWT provider
//!   renews a session by AUTH 0x19 without a reconnect.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_auth::chain::{AuthChain, AuthResult};
use portcullis_auth::scram::{CredentialSource, ScramMechanism};
use portcullis_backends::builtin::{self, BuiltinConfig, OpenMode};
use portcullis_core::enhanced::{Done, Exchange, Mechanism, Registry, Step};
use portcullis_core::gate::{AuthOutcome, ConnectInfo, DenyReason, GateFuture, Password};

use crate::config::enhanced::ScramConfig;
use crate::config::security::AuthSection;
use crate::gateway::Shared;

/// The enhanced-authentication methods a broker serves.
#[derive(Debug, Default)]
pub struct EnhancedMethods {
    pub registry: Registry,
    /// Methods whose data is a password for the listener's chain.
    pub token_methods: BTreeSet<String>,
}

impl EnhancedMethods {
    /// Builds the methods (opening built-in stores; in `mode`); errors
    /// name the table.
    pub async fn build(auth: &AuthSection, mode: OpenMode) -> anyhow::Result<EnhancedMethods> {
        let mut registry = Registry::default();
        for (name, c) in &auth.scram {
            let key = format!("auth.scram.{name}");
            let alg = c.algorithm.algorithm();
            let source = scram_source(name, c, mode).await.map_err(|e| anyhow::anyhow!("{key}.{e}"))?;
            let mechanism = ScramMechanism::new(name, alg, source, c.iteration_count, c.timeout);
            if !registry.insert(alg.method(), Arc::new(mechanism) as Arc<dyn Mechanism>) {
                anyhow::bail!("{key}: method {} is served twice", alg.method());
            }
        }
        let token_methods = auth.enhanced_token.values().map(|t| t.method.clone()).collect();
        Ok(EnhancedMethods { registry, token_methods })
    }
}

/// The credential source a `[auth.scram.<name>]` table names (validation
/// made sure it names exactly one); errors start with its key.
async fn scram_source(name: &str, c: &ScramConfig, mode: OpenMode) -> Result<Arc<dyn CredentialSource>, String> {
    let _ = name;
    if let Some(b) = &c.builtin {
        let cfg = BuiltinConfig { path: b.path.clone(), ..BuiltinConfig::default() };
        let source = builtin::scram_source(&cfg, mode).await.map_err(|e| format!("builtin.{e}"))?;
        return Ok(source);
    }
    #[cfg(feature = "postgres")]
    if let Some(p) = &c.postgres {
        use portcullis_backends::{postgres::Postgres, sql::scram};
        return scram::scram_source::<Postgres>(name, p, c.iteration_count).map_err(|e| format!("postgres.{e}"));
    }
    #[cfg(feature = "mysql")]
    if let Some(m) = &c.mysql {
        use portcullis_backends::{mysql::Mysql, sql::scram};
        return scram::scram_source::<Mysql>(name, m, c.iteration_count).map_err(|e| format!("mysql.{e}"));
    }
    #[cfg(feature = "http")]
    if let Some(h) = &c.http {
        return portcullis_backends::http::scram::scram_source(h, c.iteration_count).map_err(|e| format!("http.{e}"));
    }
    Err("no credential source".to_string())
}

/// A mechanism's exchange under the brute-force guard (`[auth.guard]`), as
/// a password CONNECT is: a banned address is refused before any
/// credential is looked up, a user banned from this address is refused
/// even with the right proof, and a refused proof counts as a failed login
/// (an outage never does). The token method needs none: its check goes
/// through the gateway, guard included.
pub struct Guarded {
    pub inner: Box<dyn Exchange>,
    pub shared: Arc<Shared>,
    pub info: ConnectInfo,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Exchange for Guarded {
    fn step(&mut self, data: Option<Bytes>) -> GateFuture<'_, Step> {
        Box::pin(async move {
            let guard = &self.shared.guard;
            if guard.is_banned(&self.info) {
                return Done::refuse(AuthOutcome::Deny(DenyReason::Banned));
            }
            let step = self.inner.step(data).await;
            let Step::Done(done) = step else { return step };
            let mut info = self.info.clone();
            if done.username.is_some() {
                info.username.clone_from(&done.username);
            }
            if matches!(done.outcome, AuthOutcome::Allow { .. }) && guard.is_banned(&info) {
                return Done::refuse(AuthOutcome::Deny(DenyReason::Banned));
            }
            let result = match &done.outcome {
                AuthOutcome::Allow { superuser, .. } => {
                    AuthResult::Allow { superuser: *superuser, inline_acl: None, expires_at: None }
                }
                AuthOutcome::Deny(r) => AuthResult::Deny(*r),
                AuthOutcome::Unavailable => AuthResult::Unavailable,
            };
            guard.record_result(&info, &result);
            Step::Done(done)
        })
    }
}

/// The single-step token method: one round, the data checked as the
/// password of the client's identity by the listener's auth chain.
#[derive(Debug)]
pub struct TokenExchange {
    pub auth: Arc<AuthChain>,
    pub shared: Arc<Shared>,
    pub info: ConnectInfo,
    pub done: bool,
}

impl Exchange for TokenExchange {
    fn step(&mut self, data: Option<Bytes>) -> GateFuture<'_, Step> {
        Box::pin(async move {
            // One round only; no data is no token.
            let (false, Some(data)) = (std::mem::replace(&mut self.done, true), data) else {
                return Done::refuse(AuthOutcome::Deny(DenyReason::NotAuthorized));
            };
            self.info.password = Some(Password::new(data));
            let (_, outcome) = crate::gateway::authenticate(&self.auth, &self.shared, &self.info).await;
            Step::Done(Done { outcome, data: None, username: None })
        })
    }
}
