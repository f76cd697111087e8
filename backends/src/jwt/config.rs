//! `[auth.jwt.<name>]` as written. Keys take EMQX 5's names where EMQX has
//! one (`from`, `algorithm`, `secret`, `secret_base64_encoded`,
//! `public_key`, `use_jwks`, `endpoint`, `refresh_interval`,
//! `verify_claims`, `acl_claim_name`, `disconnect_after_expire`), so an
//! EMQX config translates line by line; the rest are ours (`leeway`,
//! `issuer`, `audience`, `superuser_claim`, `tls`, `introspection`).

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::default_timeout;
use crate::common::secret::Secret;
use crate::common::tls::TlsConfig;

/// `from`: where the client puts its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFrom {
    #[default]
    Password,
    Username,
}

/// `[auth.jwt.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the token is: the CONNECT's `password` (default) or `username`.
    #[serde(default)]
    pub from: TokenFrom,
    /// Which signatures are accepted, pinned to the key: EMQX's
    /// `"hmac-based"` (HS256/384/512 with `secret`) or `"public-key"` (the
    /// algorithms of `public_key`'s type: RSA → RS*/PS*, P-256 → ES256,
    /// P-384 → ES384, Ed25519 → EdDSA), or one JWS name (`"RS256"`). With
    /// `use_jwks` each key's own `alg` (or its type) decides and this is
    /// not used. `alg: none` is never accepted.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The HMAC secret (`"hmac-based"`): inline, `{ env = … }` or `{ file = … }`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `secret` is base64 (standard alphabet, padded or not).
    #[serde(default)]
    pub secret_base64_encoded: bool,
    /// The verifying key: a PEM file's path, or the PEM text itself
    /// (EMQX writes it inline).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Keys come from a JWKS endpoint (`endpoint`) instead.
    #[serde(default)]
    pub use_jwks: bool,
    /// The JWKS URL (`https://`; `http://` only to loopback).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How often the key set is fetched again. An unknown `kid` fetches
    /// it early, at most once per `min_refetch_interval`.
    #[serde(default = "default_refresh_interval", deserialize_with = "units::duration")]
    pub refresh_interval: Duration,
    /// The least time between two fetches that an unknown `kid` causes.
    #[serde(default = "default_min_refetch_interval", deserialize_with = "units::duration")]
    pub min_refetch_interval: Duration,
    /// HTTPS to the JWKS and introspection endpoints: the CA that signed
    /// their certificates, and an optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", deserialize_with = "units::duration")]
    pub leeway: Duration,
    /// Accepted `iss` values; empty: not checked.
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Accepted `aud` values (the token's `aud` must hold one); empty: not
    /// checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Claims that must equal these values; `${username}` and
    /// `${clientid}` stand for the client's (`{ sub = "${username}" }`).
    #[serde(default)]
    pub verify_claims: BTreeMap<String, String>,
    /// The claim that carries the client's ACL (EMQX's `acl`): an object of
    /// `pub` / `sub` / `all` topic lists (only those allowed), or EMQX 5's
    /// list of rules. Empty: not read.
    #[serde(default = "default_acl_claim_name")]
    pub acl_claim_name: String,
    /// The claim that makes the client a superuser when `true`. Empty (the
    /// default): no token makes a superuser.
    #[serde(default)]
    pub superuser_claim: String,
    /// End the session when the token's `exp` passes (MQTT 5 DISCONNECT
    /// 0xA0 with a reason string; 3.x: the connection closes), unless the
    /// client re-authenticated first.
    #[serde(default = "default_true")]
    pub disconnect_after_expire: bool,
    /// Opaque tokens checked by an OAuth 2 introspection endpoint (RFC
    /// 7662) instead of signatures.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Per-request timeout of the JWKS and introspection endpoints.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// The chain's per-call timeout.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the provider fails (no key set yet, the
    /// introspection endpoint down): `deny` or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

/// `introspection = { … }`: RFC 7662 token introspection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection URL (`https://`; `http://` only to loopback).
    pub endpoint: String,
    /// The broker's client id at the authorization server (HTTP Basic).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its secret: inline, `{ env = … }` or `{ file = … }`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
}

crate::call_policy!(AuthConfig);

pub fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
pub fn default_min_refetch_interval() -> Duration {
    Duration::from_secs(30)
}
pub fn default_leeway() -> Duration {
    Duration::ZERO
}
pub fn default_acl_claim_name() -> String {
    "acl".to_string()
}
pub fn default_true() -> bool {
    true
}
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(3)
}
