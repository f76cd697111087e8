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

use crate::common::BuildError;

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    Ok(Arc::new(auth::MongoAuth::new(name, cfg).await?))
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    Ok(Arc::new(acl::MongoAcl::new(name, cfg).await?))
}
