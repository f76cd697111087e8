//! `[acl.http.<name>]`: a webhook decides each SUBSCRIBE filter and
//! PUBLISH (the ACL chain caches its decisions per connection).
//!
//! Answers are read per [`super::response`]: allow, deny or ignore; a
//! transport error, a timeout, a 5xx or an unreadable answer is a failure
//! for the chain's `on_error`, never a deny.

use std::sync::Arc;

use portcullis_acl::provider::{AclAnswer, AclDecision, AclProvider};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use super::auth::rule_name;
use super::client::HttpClient;
use super::config::AclConfig;
use super::request::{RequestSpec, Unsendable};
use super::response::{Reader, Verdict};
use crate::common::health::Health;
use crate::common::template::{Values, Var};
use crate::common::BuildError;

#[derive(Debug)]
pub struct HttpAcl {
    name: String,
    client: HttpClient,
    request: RequestSpec,
    reader: Reader,
    rule: String,
    health: Health,
}

impl HttpAcl {
    pub fn new(name: &str, cfg: &AclConfig) -> Result<HttpAcl, BuildError> {
        let client_settings = cfg.client();
        let client = HttpClient::build(&client_settings)?;
        let request = RequestSpec::parse(&cfg.request(), &Var::ACL, client_settings.tls.enable)?;
        let reader = Reader::new(
            cfg.response,
            cfg.ignore_status.as_deref(),
            cfg.deny_status.as_deref(),
            cfg.allow_body.as_deref(),
        )?;
        Ok(HttpAcl {
            name: name.to_string(),
            client,
            request,
            reader,
            rule: rule_name(&cfg.url),
            health: Health::new("http", name),
        })
    }

    fn answer(&self, decision: AclDecision) -> AclAnswer {
        AclAnswer { decision, rule: Some(self.rule.clone()) }
    }

    async fn check(&self, client: &ClientInfo, access: Access<'_>) -> Result<AclAnswer, ProviderError> {
        let _permit = self.client.permit()?;
        let values = Values::from_access(client, &access);
        let req = match self.request.build(self.client.reqwest(), &values) {
            Ok(r) => r,
            Err(Unsendable(why)) => {
                tracing::debug!(provider = %self.name, why, "client values cannot be sent; refused");
                return Ok(self.answer(AclDecision::Deny));
            }
        };
        let answer = self.health.track(self.client.send(req).await)?;
        let verdict = self.health.track(self.reader.verdict(answer.status, &answer.body, None))?;
        Ok(match verdict {
            Verdict::Allow { .. } => self.answer(AclDecision::Allow),
            Verdict::Deny => self.answer(AclDecision::Deny),
            Verdict::Ignore => AclAnswer::ignore(),
        })
    }
}

impl AclProvider for HttpAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(self.check(client, access))
    }
}

pub fn provider(name: &str, cfg: &AclConfig) -> Result<Arc<HttpAcl>, BuildError> {
    let p = HttpAcl::new(name, cfg)?;
    crate::common::transport::warn_if_exposed(&format!("acl.http.{name}"), &[p.request.endpoint()], super::FIX);
    Ok(Arc::new(p))
}
