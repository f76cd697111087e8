//! `[auth.http.<name>]`: a webhook decides each CONNECT.
//!
//! One request per CONNECT (and, when configured and the answer was an
//! allow without superuser, a second `superuser` request). The answer is
//! read per [`super::response`]: allow, deny (bad username or password) or
//! ignore; a transport error, a timeout, a 5xx or an unreadable answer is a
//! failure for the chain's `on_error`, never a deny. `Cache-Control:
//! max-age` on an allow caps how long the auth cache keeps it.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Expiry, Inputs};
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use super::client::HttpClient;
use super::config::AuthConfig;
use super::request::{RequestSpec, Unsendable};
use super::response::{Reader, Verdict};
use crate::common::health::Health;
use crate::common::template::{Values, Var};
use crate::common::BuildError;

/// What an auth request may use: the CONNECT and its password.
const AUTH_VARS: [Var; 7] =
    [Var::Username, Var::ClientId, Var::Peerhost, Var::CertCommonName, Var::CertSubject, Var::Protocol, Var::Password];

#[derive(Debug)]
pub struct HttpAuth {
    name: String,
    client: HttpClient,
    request: RequestSpec,
    superuser: Option<RequestSpec>,
    reader: Reader,
    /// `http <url without query>`, the rule named in logs and explain.
    rule: String,
    health: Health,
}

impl HttpAuth {
    pub fn new(name: &str, cfg: &AuthConfig) -> Result<HttpAuth, BuildError> {
        let client_settings = cfg.client();
        let tls = client_settings.tls.enable;
        let client = HttpClient::build(&client_settings)?;
        let request = RequestSpec::parse(&cfg.request(), &AUTH_VARS, tls)?;
        let superuser = cfg
            .superuser
            .as_ref()
            .map(|s| RequestSpec::parse(s, &AUTH_VARS, tls).map_err(|e| e.under("superuser")))
            .transpose()?;
        let reader = Reader::new(
            cfg.response,
            cfg.ignore_status.as_deref(),
            cfg.deny_status.as_deref(),
            cfg.allow_body.as_deref(),
        )?;
        Ok(HttpAuth {
            name: name.to_string(),
            client,
            request,
            superuser,
            reader,
            rule: rule_name(&cfg.url),
            health: Health::new("http", name),
        })
    }

    fn answer(&self, decision: AuthDecision) -> AuthAnswer {
        AuthAnswer::new(decision, Some(self.rule.clone()))
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        // Held for the whole call, superuser request included.
        let _permit = self.client.permit()?;
        let values = Values::from_connect(info);
        let req = match self.request.build(self.client.reqwest(), &values) {
            Ok(r) => r,
            Err(Unsendable(why)) => {
                tracing::debug!(provider = %self.name, why, "client values cannot be sent; refused");
                return Ok(self.answer(AuthDecision::Deny(DenyReason::BadCredentials)));
            }
        };
        let answer = self.health.track(self.client.send(req).await)?;
        let verdict =
            self.health.track(self.reader.verdict(answer.status, &answer.body, answer.cache_control.as_deref()))?;
        match verdict {
            Verdict::Allow { superuser, max_age } => {
                let mut superuser = superuser;
                if !superuser {
                    if let Some(spec) = &self.superuser {
                        superuser = match spec.build(self.client.reqwest(), &values) {
                            Ok(req) => {
                                let a = self.health.track(self.client.send(req).await)?;
                                self.health.track(self.reader.superuser(a.status, &a.body))?
                            }
                            Err(Unsendable(_)) => false,
                        };
                    }
                }
                let expires_at = max_age.map(|d| Expiry::cache_only(SystemTime::now() + d));
                Ok(self.answer(AuthDecision::Allow { superuser, inline_acl: None, expires_at }))
            }
            Verdict::Deny => Ok(self.answer(AuthDecision::Deny(DenyReason::BadCredentials))),
            Verdict::Ignore => Ok(AuthAnswer::ignore()),
        }
    }
}

/// `http <url up to the query>`: the query may carry client values.
pub(super) fn rule_name(url: &str) -> String {
    format!("http {}", url.split('?').next().unwrap_or(url))
}

impl AuthProvider for HttpAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        crate::common::template::auth_inputs(
            self.request.templates().chain(self.superuser.iter().flat_map(RequestSpec::templates)),
        )
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}

pub fn provider(name: &str, cfg: &AuthConfig) -> Result<Arc<HttpAuth>, BuildError> {
    let p = HttpAuth::new(name, cfg)?;
    let endpoints: Vec<_> = std::iter::once(&p.request).chain(&p.superuser).map(RequestSpec::endpoint).collect();
    crate::common::transport::warn_if_exposed(&format!("auth.http.{name}"), &endpoints, super::FIX);
    Ok(Arc::new(p))
}
