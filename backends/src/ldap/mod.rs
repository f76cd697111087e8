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

use crate::common::BuildError;

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    Ok(Arc::new(auth::LdapAuth::new(name, cfg)?))
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    Ok(Arc::new(acl::LdapAcl::new(name, cfg)?))
}
