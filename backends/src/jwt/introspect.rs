//! OAuth 2 token introspection (RFC 7662): the token is POSTed as a form
//! (`token=…&token_type_hint=access_token`) with the broker's client
//! credentials as HTTP Basic; the answer is a JSON object whose `active`
//! says whether the token is good, beside its claims (`exp`, `sub`,
//! `scope`, …), which are then checked like a JWT's. `active: false` is a
//! deny; no answer, a status other than 200 or an unreadable body is an
//! outage (`on_error`). The auth cache keeps an allow until the token's
//! `exp` at the latest.

use base64::Engine;
use portcullis_core::provider::{ErrorKind, ProviderError};
use serde_json::Value;

use super::config::IntrospectionConfig;
use crate::common::BuildError;
use crate::http::client::HttpClient;

#[derive(Debug)]
pub struct Introspector {
    client: HttpClient,
    endpoint: String,
    /// `Basic …`, when client credentials are configured.
    authorization: Option<String>,
}

impl Introspector {
    pub fn new(cfg: &IntrospectionConfig, client: HttpClient) -> Result<Introspector, BuildError> {
        let authorization = match (&cfg.client_id, &cfg.client_secret) {
            (Some(id), Some(secret)) => {
                let secret = secret.resolve("introspection.client_secret")?;
                // RFC 6749 2.3.1: both form-encoded before the Basic scheme.
                let pair = format!("{}:{}", urlencoding::encode(id), urlencoding::encode(&secret));
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(BuildError::missing("introspection.client_secret", "required with client_id"))
            }
            (None, Some(_)) => {
                return Err(BuildError::missing("introspection.client_id", "required with client_secret"))
            }
        };
        Ok(Introspector { client, endpoint: cfg.endpoint.clone(), authorization })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint's answer: `Ok(None)` for an inactive token, the
    /// claims for an active one.
    pub async fn introspect(&self, token: &str) -> Result<Option<Value>, ProviderError> {
        let _permit = self.client.permit()?;
        let body = format!("token={}&token_type_hint=access_token", urlencoding::encode(token));
        let mut req = self
            .client
            .reqwest()
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(a) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let req = req.build().map_err(|e| ProviderError::new(ErrorKind::Internal, format!("introspection: {e}")))?;
        let answer = self.client.send(req).await?;
        if answer.status != 200 {
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                format!("introspection endpoint answered {}", answer.status),
            ));
        }
        let v: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| ProviderError::new(ErrorKind::BadResponse, format!("introspection answer: {e}")))?;
        match v.get("active") {
            Some(Value::Bool(true)) => Ok(Some(v)),
            Some(Value::Bool(false)) => Ok(None),
            _ => Err(ProviderError::new(ErrorKind::BadResponse, "introspection answer without a boolean active")),
        }
    }
}
