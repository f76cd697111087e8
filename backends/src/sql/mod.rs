//! What the PostgreSQL and MySQL backends share: one config shape, query
//! placeholders bound as parameters, rows read by column name, a lazily
//! connected pool with its failure rules, and the auth and ACL providers.
//! The drivers (`crate::postgres`, `crate::mysql`) supply only connect
//! options, type decoding and error classification ([`client::Driver`]).
//!
//! * [`config`] — `[auth.<db>.<name>]` and `[acl.<db>.<name>]`.
//! * [`query`] — a configured query as positional SQL plus bound values.
//! * [`row`] — result cells read by name, leniently typed.
//! * [`client`] — the pool: timeouts, retry on a dead connection, health.
//! * [`auth`] — users and password hashes (EMQX 5 and emqttd 1.x tables).
//! * [`acl`] — rule rows (both schemas, detected when no query is set).
//! * [`scram`] — SCRAM credentials (EMQX's columns) for MQTT 5 enhanced
//!   authentication.

pub mod acl;
pub mod auth;
pub mod client;
pub mod config;
pub mod query;
pub mod row;
pub mod scram;

use std::sync::Arc;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;

pub use config::{AclConfig, AuthConfig};

use crate::common::transport::warn_if_exposed;
use crate::common::BuildError;

/// Builds an auth provider for driver `D` (no connection is opened yet;
/// a background probe logs whether the database is reachable).
pub fn auth_provider<D: client::Driver>(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    let p = auth::SqlAuth::<D>::new(name, cfg)?;
    warn_if_exposed(&format!("auth.{}.{name}", D::KIND), std::slice::from_ref(p.endpoint()), FIX);
    p.probe();
    Ok(Arc::new(p))
}

/// Builds an ACL provider for driver `D`.
pub fn acl_provider<D: client::Driver>(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    let p = acl::SqlAcl::<D>::new(name, cfg)?;
    warn_if_exposed(&format!("acl.{}.{name}", D::KIND), std::slice::from_ref(p.endpoint()), FIX);
    p.probe();
    Ok(Arc::new(p))
}

/// How to stop the start-up warning for a database off this host.
const FIX: &str = "set tls = { enable = true, ca_file = \"…\" } (verify-full); without it sslmode prefer encrypts \
                   without checking the server's certificate";
