//! The `[auth.jwt.<name>]` provider: finds the token, picks the key,
//! checks the signature (the JOSE crate's code, pinned algorithms), then
//! the claims ([`super::claims`]).
//!
//! Answers: no token, or one that is not JWT-shaped (three dot-separated
//! parts) → Ignore (the next provider may know the client); a bad
//! signature, a header or algorithm not accepted, an unknown `kid` after
//! the allowed refetch, a failed claim → Deny (bad credentials, never an
//! outage); a JWKS that never answered or an introspection endpoint down →
//! an error for the chain's `on_error`. Each answer names what decided
//! (`public_key RS256`, `jwks kid=k1 RS256`, `claim exp: expired 3 s ago`).

use std::sync::Arc;
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, Validation};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Expiry, Inputs};
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;
use serde_json::Value;

use super::claims::{ClaimRules, Granted};
use super::config::TokenFrom;
use super::introspect::Introspector;
use super::jwks::Jwks;
use super::keys::{KeyEntry, KeySet, Selection};
use crate::common::template::Var;

/// Where keys come from.
#[derive(Debug)]
pub enum Source {
    Static(Arc<KeySet>),
    Jwks(Arc<Jwks>),
    Introspection(Introspector),
}

#[derive(Debug)]
pub struct JwtAuth {
    pub(super) name: String,
    pub(super) from: TokenFrom,
    pub(super) source: Source,
    pub(super) rules: ClaimRules,
    pub(super) disconnect_after_expire: bool,
}

/// A token's verdict before it becomes an answer.
enum Checked {
    Allow { granted: Granted, by: String },
    Deny(String),
    Ignore,
}

impl JwtAuth {
    fn token<'a>(&self, info: &'a ConnectInfo) -> Option<&'a str> {
        let t = match self.from {
            TokenFrom::Password => std::str::from_utf8(info.password.as_ref()?.expose()).ok()?,
            TokenFrom::Username => info.username.as_deref()?,
        };
        (!t.is_empty()).then_some(t)
    }

    async fn check(&self, info: &ConnectInfo) -> Result<Checked, ProviderError> {
        let Some(token) = self.token(info) else { return Ok(Checked::Ignore) };
        match &self.source {
            Source::Introspection(i) => {
                let Some(claims) = i.introspect(token).await? else {
                    return Ok(Checked::Deny("introspection: token not active".to_string()));
                };
                Ok(self.claims(&claims, info, format!("introspection {}", i.endpoint())))
            }
            Source::Static(set) => {
                Ok(self.verify(token, set, info).unwrap_or_else(|| Checked::Deny("header kid: unknown".to_string())))
            }
            Source::Jwks(jwks) => {
                if !jwt_shaped(token) {
                    return Ok(Checked::Ignore);
                }
                let set = match jwks.current() {
                    Some(s) => s,
                    None => jwks.refetch(None).await?,
                };
                match self.verify(token, &set, info) {
                    Some(c) => Ok(c),
                    // Unknown kid: one early fetch (rate-limited), then again.
                    None => {
                        let fresh = jwks.refetch(Some(&set)).await?;
                        Ok(self
                            .verify(token, &fresh, info)
                            .unwrap_or_else(|| Checked::Deny("header kid: no such key in the JWKS".to_string())))
                    }
                }
            }
        }
    }

    /// Checks `token` against `set`; `None` when the set lacks its `kid`.
    fn verify(&self, token: &str, set: &KeySet, info: &ConnectInfo) -> Option<Checked> {
        if !jwt_shaped(token) {
            return Some(Checked::Ignore);
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // `alg: none`, an unknown algorithm, a header that is not JSON.
            Err(e) => return Some(Checked::Deny(format!("header: {e}"))),
        };
        let keys = match set.select(header.kid.as_deref(), header.alg) {
            Selection::Keys(k) => k,
            Selection::UnknownKid => return None,
        };
        if keys.is_empty() {
            return Some(Checked::Deny(format!("header alg: no key accepts {:?}", header.alg)));
        }
        let mut last = String::new();
        for k in keys {
            match decode(token, k) {
                Ok(claims) => return Some(self.claims(&claims, info, k.label.clone())),
                Err(e) => last = format!("{}: {e}", k.label),
            }
        }
        Some(Checked::Deny(last))
    }

    fn claims(&self, claims: &Value, info: &ConnectInfo, by: String) -> Checked {
        match self.rules.check(claims, SystemTime::now(), info) {
            Ok(granted) => Checked::Allow { granted, by },
            Err(refused) => Checked::Deny(format!("{by}: {refused}")),
        }
    }
}

/// The signature check, by the JOSE crate, with the key's pinned
/// algorithms only; claims are checked by [`ClaimRules`] (one clock, one
/// place that names the failing claim).
fn decode(token: &str, k: &KeyEntry) -> Result<Value, jsonwebtoken::errors::Error> {
    let mut v = Validation::new(k.algorithms.first().copied().unwrap_or(Algorithm::HS256));
    v.algorithms = k.algorithms.clone();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &k.key, &v).map(|d| d.claims)
}

/// Three dot-separated parts, the first two non-empty (an `alg: none`
/// token has an empty third part and is still a JWT, to be refused).
pub fn jwt_shaped(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let b64url = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    b64url(h) && b64url(p)
}

impl AuthProvider for JwtAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn inputs(&self) -> Inputs {
        let mut i = match self.from {
            TokenFrom::Password => Inputs::PASSWORD,
            TokenFrom::Username => Inputs::USERNAME,
        };
        for v in self.rules.vars() {
            i = i | match v {
                Var::Username => Inputs::USERNAME,
                Var::ClientId => Inputs::CLIENT_ID,
                _ => Inputs::ALL,
            };
        }
        i
    }

    fn health(&self) -> Option<bool> {
        match &self.source {
            Source::Jwks(j) => Some(j.health()),
            _ => None,
        }
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(async move {
            Ok(match self.check(info).await? {
                Checked::Ignore => AuthAnswer::ignore(),
                Checked::Deny(why) => {
                    tracing::debug!(provider = %self.name, why = %why, "token refused");
                    AuthAnswer::new(AuthDecision::Deny(DenyReason::BadCredentials), Some(format!("jwt {why}")))
                }
                Checked::Allow { granted, by } => {
                    let expires_at = granted.expires_at.map(|at| match self.disconnect_after_expire {
                        true => Expiry::session(at),
                        false => Expiry::cache_only(at),
                    });
                    let mut rule = format!("jwt {by}");
                    if granted.superuser {
                        rule.push_str("; claim ");
                        rule.push_str(&self.rules.superuser_claim);
                        rule.push_str(" = true");
                    }
                    if granted.acl.is_some() {
                        rule.push_str("; ACL from claim ");
                        rule.push_str(&self.rules.acl_claim);
                    }
                    AuthAnswer::new(
                        AuthDecision::Allow { superuser: granted.superuser, inline_acl: granted.acl, expires_at },
                        Some(rule),
                    )
                }
            })
        })
    }
}
