//! MongoDB auth and ACL providers (`[auth.mongodb.<name>]`,
//! `[acl.mongodb.<name>]`), with the official driver.
//!
//! * [`config`] — the tables as written (EMQX 5 defaults) and validation.
//! * [`filter`] — the filter document: a TOML table compiled once, whose
//!   placeholders become BSON string values (never parsed from text a
//!   client influences).
//! * [`client`] — the driver's client (single server, replica set, SRV;
//!   SCRAM login, auth source, TLS), timeouts, error mapping, health.
//! * [`auth`] — `mqtt_user` documents: hash, salt, superuser flag.
//! * [`acl`] — `mqtt_acl` documents as rules.

pub mod acl;
pub mod auth;
pub mod client;
pub mod config;
pub mod filter;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;

pub use config::{AclConfig, AuthConfig};

use crate::common::transport::warn_if_exposed;
use crate::common::BuildError;

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    let p = auth::MongoAuth::new(name, cfg).await?;
    warn_if_exposed(&format!("auth.mongodb.{name}"), &cfg.server_settings().endpoints(), FIX);
    Ok(Arc::new(p))
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    let p = acl::MongoAcl::new(name, cfg).await?;
    warn_if_exposed(&format!("acl.mongodb.{name}"), &cfg.server_settings().endpoints(), FIX);
    Ok(Arc::new(p))
}

/// How to stop the start-up warning for a MongoDB server off this host.
const FIX: &str = "set tls = { enable = true, ca_file = \"…\" }";
