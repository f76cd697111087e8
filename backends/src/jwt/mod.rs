//! JWT auth (`[auth.jwt.<name>]`): signed tokens from an identity
//! provider, or opaque OAuth 2 tokens checked by introspection.
//!
//! * [`config`] — the table, with EMQX's key names.
//! * [`keys`] — verifying keys (HMAC secret, PEM public key, JWKS keys),
//!   each pinned to the algorithms it may verify.
//! * [`jwks`] — a JWKS endpoint's key set: periodic refresh, a
//!   rate-limited refetch on an unknown `kid`, the last good set kept.
//! * [`claims`] — registered and configured claims, the superuser claim
//!   and the ACL claim (pure).
//! * [`introspect`] — RFC 7662 token introspection.
//! * [`provider`] — the provider: token → key → signature → claims.
//!
//! Signatures are checked by the `jsonwebtoken` crate (ring underneath);
//! nothing here computes or compares one. The token's `exp` bounds how
//! long the auth cache keeps the answer and, with
//! `disconnect_after_expire`, how long the session lasts.

pub mod claims;
pub mod config;
pub mod introspect;
pub mod jwks;
pub mod keys;
pub mod provider;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use portcullis_auth::provider::DynAuthProvider;

pub use config::AuthConfig;

use self::claims::ClaimRules;
use self::provider::{JwtAuth, Source};
use crate::common::transport::is_local;
use crate::common::BuildError;
use crate::http::client::HttpClient;
use crate::http::config::ClientSettings;

/// The auth provider for `[auth.jwt.<name>]`. Static keys are read here; a
/// JWKS endpoint is fetched in the background from now on (a JWKS that is
/// down at start fails tokens as an outage until it answers).
pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    Ok(build(name, cfg)?)
}

pub fn build(name: &str, cfg: &AuthConfig) -> Result<Arc<JwtAuth>, BuildError> {
    if !cfg.verify_claims.values().any(|v| v.contains("${username}") || v.contains("${clientid}")) {
        // Not an error (EMQX's default is the same), but the operator
        // should know: the token then proves nothing about the names the
        // client connects under, and an ACL claim's placeholders follow
        // whatever names it picks.
        tracing::warn!(
            provider = name,
            "auth.jwt.{name}: verify_claims binds no claim to ${{username}} or ${{clientid}}: a valid token \
             admits its holder under any user name and client id, and the ACL claim's placeholders follow \
             them; set e.g. verify_claims = {{ sub = \"${{username}}\" }}"
        );
    }
    let rules = ClaimRules::new(
        cfg.leeway,
        cfg.issuer.clone(),
        cfg.audience.clone(),
        &cfg.verify_claims,
        cfg.acl_claim_name.clone(),
        cfg.superuser_claim.clone(),
    )?;
    let source = match (&cfg.introspection, cfg.use_jwks) {
        (Some(_), true) => {
            return Err(BuildError::invalid("introspection", "not with use_jwks (one source of truth per provider)"))
        }
        (Some(i), false) => {
            if cfg.algorithm.is_some() || cfg.secret.is_some() || cfg.public_key.is_some() {
                return Err(BuildError::invalid(
                    "introspection",
                    "the endpoint checks the token: no algorithm, secret or public_key",
                ));
            }
            check_url("introspection.endpoint", &i.endpoint, cfg.tls.enable)?;
            Source::Introspection(introspect::Introspector::new(i, client(cfg)?)?)
        }
        (None, true) => {
            let url = cfg
                .endpoint
                .as_deref()
                .ok_or_else(|| BuildError::missing("endpoint", "required with use_jwks = true"))?;
            if cfg.secret.is_some() || cfg.public_key.is_some() {
                return Err(BuildError::invalid("use_jwks", "keys come from the endpoint: no secret or public_key"));
            }
            check_url("endpoint", url, cfg.tls.enable)?;
            if cfg.refresh_interval.is_zero() || cfg.min_refetch_interval.is_zero() {
                return Err(BuildError::invalid("refresh_interval", "refresh intervals must be more than 0"));
            }
            let j =
                jwks::Jwks::new(name, client(cfg)?, url.to_string(), cfg.refresh_interval, cfg.min_refetch_interval);
            if tokio::runtime::Handle::try_current().is_ok() {
                j.start();
            }
            Source::Jwks(j)
        }
        (None, false) => {
            if cfg.endpoint.is_some() {
                return Err(BuildError::invalid("endpoint", "used only with use_jwks = true"));
            }
            Source::Static(Arc::new(keys::KeySet { keys: vec![keys::static_key(cfg)?] }))
        }
    };
    Ok(Arc::new(JwtAuth {
        name: name.to_string(),
        from: cfg.from,
        source,
        rules,
        disconnect_after_expire: cfg.disconnect_after_expire,
    }))
}

/// The HTTP client of the JWKS / introspection endpoint: the HTTP
/// backend's (reqwest, rustls with the configured CA, no redirects).
fn client(cfg: &AuthConfig) -> Result<HttpClient, BuildError> {
    HttpClient::build(&ClientSettings {
        connect_timeout: cfg.request_timeout,
        request_timeout: cfg.request_timeout,
        retries: 1,
        retry_backoff: std::time::Duration::from_millis(100),
        max_concurrency: 64,
        max_idle_connections: 4,
        idle_timeout: Some(std::time::Duration::from_secs(60)),
        tls: cfg.tls.clone(),
    })
}

/// `https://` with `tls.enable` (keys and token verdicts are worth
/// forging), or `http://` to this machine only.
fn check_url(key: &str, url: &str, tls: bool) -> Result<(), BuildError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| BuildError::invalid(key, format!("{url:?}: {e}")))?;
    match (parsed.scheme(), tls) {
        ("https", true) => Ok(()),
        ("https", false) => Err(BuildError::invalid(key, "an https URL needs tls.enable = true and tls.ca_file")),
        ("http", false) if parsed.host_str().is_some_and(is_local) => Ok(()),
        ("http", false) => Err(BuildError::invalid(key, "http only to this machine (loopback); use https with tls")),
        ("http", true) => Err(BuildError::invalid(key, "tls.enable = true needs an https URL")),
        (other, _) => Err(BuildError::invalid(key, format!("scheme {other:?}: expected https"))),
    }
}

/// What a token says about itself, unverified, for `auth check --token`:
/// the header's `alg` and `kid`, and the claims that decide most refusals
/// (`exp` with how far it is from now, `nbf`, `iat`, `iss`, `aud`, `sub`).
/// Nothing here is trusted; the provider checks it all.
pub fn describe_unverified(token: &str) -> serde_json::Value {
    use serde_json::{json, Value};
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => json!({"alg": format!("{:?}", h.alg), "kid": h.kid}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let claims: Option<Value> = token.split('.').nth(1).and_then(|p| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    });
    let mut out = json!({"header": header});
    if let Some(Value::Object(c)) = claims {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let mut picked = serde_json::Map::new();
        for k in ["sub", "iss", "aud", "exp", "nbf", "iat"] {
            if let Some(v) = c.get(k) {
                picked.insert(k.to_string(), v.clone());
            }
        }
        if let Some(exp) = c.get("exp").and_then(Value::as_f64) {
            let left = exp - now;
            picked.insert(
                "exp_in".to_string(),
                Value::String(if left >= 0.0 {
                    format!("expires in {left:.0} s")
                } else {
                    format!("expired {:.0} s ago", -left)
                }),
            );
        }
        out["claims"] = Value::Object(picked);
    } else {
        out["claims"] = Value::Null;
    }
    out
}
