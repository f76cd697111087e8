//! Redis auth and ACL providers, for one server (a bb8 pool) or a Redis
//! Cluster, with EMQX 5's data layout by default and emqttd 1.x's accepted
//! unchanged.
//!
//! * [`config`] — the `[auth.redis.*]` / `[acl.redis.*]` tables and their
//!   validation.
//! * [`command`] — commands parsed once into per-argument templates, and
//!   reading replies.
//! * [`client`] — the pool or cluster connection, retries on dead
//!   connections, error classification (a Redis failure is never a deny).
//! * [`auth`] / [`acl`] — the providers.

pub mod acl;
pub mod auth;
pub mod client;
pub mod command;
pub mod config;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;

pub use config::{AclConfig, AuthConfig};

use crate::common::transport::warn_if_exposed;
use crate::common::BuildError;

/// The auth provider for `[auth.redis.<name>]`. Does not wait for Redis:
/// a server that is down at start is reported (log, health) and used once
/// it is back.
pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    let p = auth::provider(name, cfg)?;
    warn_if_exposed(&format!("auth.redis.{name}"), &cfg.connection()?.endpoints(), FIX);
    Ok(p)
}

/// The ACL provider for `[acl.redis.<name>]`.
pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    let p = acl::provider(name, cfg)?;
    warn_if_exposed(&format!("acl.redis.{name}"), &cfg.connection()?.endpoints(), FIX);
    Ok(p)
}

/// How to stop the start-up warning for a Redis server off this host.
const FIX: &str = "set tls = { enable = true, ca_file = \"…\" }";
