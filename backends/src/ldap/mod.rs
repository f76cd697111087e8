//! LDAP auth and ACL providers (`[auth.ldap.<name>]`, `[acl.ldap.<name>]`).
//!
//! * [`config`] — the tables as written and their validation.
//! * [`conn`] — servers with failover, LDAPS / StartTLS, the pool of
//!   service connections, user binds on connections of their own.
//! * [`auth`] — three modes: bind as the user (DN template), search then
//!   bind, compare the stored password; superuser by attribute, `memberOf`
//!   or group search.
//! * [`password`] — `{SSHA}`, `{SHA}`, `{SSHA256}`, `{SSHA512}`, `{MD5}`,
//!   `{CRYPT}`… values for compare mode.
//! * [`acl`] — topics from multi-valued attributes of the user's entry.
//!
//! Client values reach the directory only escaped: DN-escaped in DN
//! templates, filter-escaped in search filters (RFC 4514 / RFC 4515).

pub mod acl;
pub mod auth;
pub mod config;
pub mod conn;
pub mod password;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;

pub use config::{AclConfig, AuthConfig};

use crate::common::transport::warn_if_exposed;
use crate::common::BuildError;

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    let p = auth::LdapAuth::new(name, cfg)?;
    warn_if_exposed(&format!("auth.ldap.{name}"), &cfg.server_settings().endpoints(), FIX);
    Ok(Arc::new(p))
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    let p = acl::LdapAcl::new(name, cfg)?;
    warn_if_exposed(&format!("acl.ldap.{name}"), &cfg.server_settings().endpoints(), FIX);
    Ok(Arc::new(p))
}

/// How to stop the start-up warning for an `ldap://` server off this host.
const FIX: &str = "use ldaps:// URLs or starttls = true, with tls = { enable = true, ca_file = \"…\" }";
