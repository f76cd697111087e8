//! HTTP webhook auth and ACL providers (reqwest, keep-alive, rustls).
//!
//! * [`config`] — the `[auth.http.*]` / `[acl.http.*]` tables.
//! * [`request`] — a request parsed once and filled per call, each value
//!   encoded for where it goes (query, JSON, form, header).
//! * [`client`] — the HTTP client: timeouts, retries after transport
//!   errors, the cap on calls in flight.
//! * [`response`] — reading answers (EMQX 5 JSON or emqttd status codes,
//!   configurable status mapping, `Cache-Control: max-age`).
//! * [`auth`] / [`acl`] — the providers.
//! * [`scram`] — an endpoint as a SCRAM credential source (EMQX's
//!   REST-based SCRAM answer).

pub mod acl;
pub mod auth;
pub mod client;
pub mod config;
pub mod request;
pub mod response;
pub mod scram;
#[cfg(test)]
mod tests;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;

pub use config::{AclConfig, AuthConfig};

use crate::common::BuildError;

/// How to stop the start-up warning for an `http://` webhook off this host.
const FIX: &str = "use an https URL with tls = { enable = true, ca_file = \"…\" }";

/// The auth provider for `[auth.http.<name>]` (no request is made here: a
/// webhook that is down at start is used once it is up).
pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    Ok(auth::provider(name, cfg)?)
}

/// The ACL provider for `[acl.http.<name>]`.
pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    Ok(acl::provider(name, cfg)?)
}
