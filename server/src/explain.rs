//! Auth and ACL decisions explained: what `portcullis auth check`,
//! `portcullis acl explain` and the admin API's explain endpoints show,
//! computed once here.
//!
//! The listener's chain is asked directly — not through the auth cache,
//! the ACL cache or the brute-force guard, which an explanation neither
//! reads nor feeds (explaining a wrong password must not count towards a
//! ban) — so every provider the chain reaches answers, and the providers'
//! counters count the call as they count any other.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_acl::chain::{DecidedBy as AclDecidedBy, StepResult as AclStep};
use portcullis_acl::provider::AclDecision;
use portcullis_auth::chain::{AuthResult, DecidedBy, StepResult};
use portcullis_auth::provider::AuthDecision;
use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::{Access, ClientInfo, ConnectInfo, DenyReason, Password};
use portcullis_core::provider::ProviderError;
use portcullis_core::topic::{SubscriptionFilter, TopicName};
use serde::Serialize;

use crate::config::Config;
use crate::security::Security;

/// Who is asking: the identity an explanation is computed for.
#[derive(Debug, Clone)]
pub struct Who {
    pub client_id: String,
    pub username: Option<String>,
    /// The client's address.
    pub peer: IpAddr,
    /// Listener whose chains to use; `None`: the first one.
    pub listener: Option<String>,
}

/// The action an ACL explanation is about.
#[derive(Debug, Clone)]
pub enum Action {
    Publish { topic: String, qos: u8, retain: bool },
    Subscribe { filter: String, qos: u8 },
}

/// Why an explanation could not be computed (the caller's input).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no listener `{0}`")]
    NoListener(String),
    #[error("no listener configured")]
    NoListeners,
    #[error("{0}")]
    Chain(String),
    #[error("qos must be 0, 1 or 2, got {0}")]
    Qos(u8),
    #[error("topic {0:?}: {1}")]
    Topic(String, String),
}

/// One provider's part, for people and for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub provider: String,
    pub kind: String,
    /// `allow`, `deny`, `ignore`, `error` (the chain stopped: on_error =
    /// deny) or `skipped` (failed with on_error = ignore).
    pub result: String,
    /// For a deny, why; for an allow, `superuser`; for an error, the error.
    pub detail: Option<String>,
    /// The rule that decided (file and line, CIDR, query).
    pub rule: Option<String>,
    /// How long the provider took, in milliseconds.
    pub elapsed_ms: f64,
}

/// An auth chain's decision and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct AuthExplanation {
    pub chain: String,
    pub steps: Vec<StepView>,
    /// `allow`, `deny` or `unavailable`.
    pub decision: String,
    pub superuser: bool,
    /// Why a deny: `bad_credentials`, `not_authorized`, `banned`.
    pub reason: Option<String>,
    /// `provider <name> (<rule>)`, `failure <name>` or `no_match`.
    pub decided_by: String,
    /// The brute-force guard bans this address or (address, username)
    /// now: a real CONNECT would be refused before any provider is asked.
    pub banned: bool,
    /// `auth check --token`: the token's header and claims as it states
    /// them, unverified (which claim or key decided is in the JWT
    /// provider's `rule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<serde_json::Value>,
}

/// An ACL chain's decision and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct AclExplanation {
    pub chain: String,
    pub steps: Vec<StepView>,
    /// `allow` or `deny`.
    pub decision: String,
    /// `superuser`, `provider <name> (<rule>)`, `failure <name>` or `no_match`.
    pub decided_by: String,
}

/// The auth and ACL chain names of a listener (`None`: the first one).
pub fn chains_for(cfg: &Config, listener: Option<&str>) -> Result<(String, String), ExplainError> {
    let l = match listener {
        Some(name) => {
            cfg.listeners.iter().find(|l| l.name == name).ok_or_else(|| ExplainError::NoListener(name.to_string()))?
        }
        None => cfg.listeners.first().ok_or(ExplainError::NoListeners)?,
    };
    Ok((l.auth_chain.clone(), l.acl_chain.clone()))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn failed(error: &ProviderError, skipped: bool) -> (String, Option<String>) {
    (if skipped { "skipped" } else { "error" }.to_string(), Some(error.to_string()))
}

fn deny_reason(r: DenyReason) -> &'static str {
    match r {
        DenyReason::BadCredentials => "bad_credentials",
        DenyReason::NotAuthorized => "not_authorized",
        DenyReason::Banned => "banned",
    }
}

fn provider_rule(name: &str, rule: Option<&str>) -> String {
    format!("provider {name} ({})", rule.unwrap_or("-"))
}

/// Runs `who`'s listener's auth chain on these credentials.
pub async fn auth_check(
    security: &Security,
    cfg: &Config,
    who: &Who,
    password: Option<Vec<u8>>,
) -> Result<AuthExplanation, ExplainError> {
    let (chain_name, _) = chains_for(cfg, who.listener.as_deref())?;
    let gw = security.gateway(&chain_name, "default").map_err(|e| ExplainError::Chain(e.to_string()))?;
    let info = ConnectInfo {
        client_id: Arc::from(who.client_id.as_str()),
        username: who.username.as_deref().map(Arc::from),
        password: password.map(|p| Password::new(p.into())),
        peer: SocketAddr::new(who.peer, 0),
        listener: Arc::from(who.listener.as_deref().unwrap_or("cli")),
        protocol: ProtocolVersion::V5.into(),
        cert: None,
    };
    let verdict = gw.auth.authenticate(&info).await;
    let steps = verdict
        .steps
        .iter()
        .map(|s| {
            let (result, detail) = match &s.result {
                StepResult::Decided(AuthDecision::Allow { superuser, .. }) => {
                    ("allow".to_string(), superuser.then(|| "superuser".to_string()))
                }
                StepResult::Decided(AuthDecision::Deny(r)) => ("deny".to_string(), Some(deny_reason(*r).to_string())),
                StepResult::Decided(AuthDecision::Ignore) => ("ignore".to_string(), None),
                StepResult::Failed { error, skipped } => failed(error, *skipped),
            };
            StepView {
                provider: s.provider.clone(),
                kind: s.kind.to_string(),
                result,
                detail,
                rule: s.rule.clone(),
                elapsed_ms: ms(s.elapsed),
            }
        })
        .collect();
    let (decision, superuser, reason) = match &verdict.result {
        AuthResult::Allow { superuser, .. } => ("allow", *superuser, None),
        AuthResult::Deny(r) => ("deny", false, Some(deny_reason(*r).to_string())),
        AuthResult::Unavailable => ("unavailable", false, None),
    };
    let decided_by = match &verdict.decided_by {
        DecidedBy::Provider { name, rule } => provider_rule(name, rule.as_deref()),
        DecidedBy::Failure { name } => format!("failure {name}"),
        DecidedBy::NoMatch => "no_match".to_string(),
        // The chain alone never answers from the cache or the guard.
        DecidedBy::Cache(_) => "cache".to_string(),
        DecidedBy::Guard => "guard".to_string(),
    };
    Ok(AuthExplanation {
        chain: chain_name,
        steps,
        decision: decision.to_string(),
        superuser,
        reason,
        decided_by,
        banned: security.shared.guard.is_banned(&info),
        token: None,
    })
}

/// Runs `who`'s listener's ACL chain on one action.
pub async fn acl_explain(
    security: &Security,
    cfg: &Config,
    who: &Who,
    superuser: bool,
    action: &Action,
) -> Result<AclExplanation, ExplainError> {
    let (_, chain_name) = chains_for(cfg, who.listener.as_deref())?;
    let gw = security.gateway("default", &chain_name).map_err(|e| ExplainError::Chain(e.to_string()))?;
    let client = ClientInfo {
        client_id: Arc::from(who.client_id.as_str()),
        username: who.username.as_deref().map(Arc::from),
        peer: SocketAddr::new(who.peer, 0),
        listener: Arc::from(who.listener.as_deref().unwrap_or("cli")),
        protocol: ProtocolVersion::V5.into(),
        superuser,
        context: None,
        conn_id: 0,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    };
    let qos_of = |q: u8| QoS::from_u8(q).ok_or(ExplainError::Qos(q));
    let topic;
    let filter;
    let access = match action {
        Action::Publish { topic: t, qos, retain } => {
            topic = TopicName::new(t).map_err(|e| ExplainError::Topic(t.clone(), e.to_string()))?;
            Access::Publish { topic: &topic, qos: qos_of(*qos)?, retain: *retain }
        }
        Action::Subscribe { filter: f, qos } => {
            filter = SubscriptionFilter::parse(f).map_err(|e| ExplainError::Topic(f.clone(), e.to_string()))?;
            Access::Subscribe { filter: &filter, qos: qos_of(*qos)? }
        }
    };
    let verdict = gw.acl.authorize(&client, access).await;
    let steps = verdict
        .steps
        .iter()
        .map(|s| {
            let (result, detail) = match &s.result {
                AclStep::Decided(AclDecision::Allow) => ("allow".to_string(), None),
                AclStep::Decided(AclDecision::Deny) => ("deny".to_string(), None),
                AclStep::Decided(AclDecision::Ignore) => ("ignore".to_string(), None),
                AclStep::Failed { error, skipped } => failed(error, *skipped),
            };
            StepView {
                provider: s.provider.clone(),
                kind: s.kind.to_string(),
                result,
                detail,
                rule: s.rule.clone(),
                elapsed_ms: ms(s.elapsed),
            }
        })
        .collect();
    let decided_by = match &verdict.decided_by {
        AclDecidedBy::Superuser => "superuser".to_string(),
        AclDecidedBy::Provider { name, rule } => provider_rule(name, rule.as_deref()),
        AclDecidedBy::Failure { name } => format!("failure {name}"),
        AclDecidedBy::NoMatch => "no_match".to_string(),
    };
    Ok(AclExplanation {
        chain: chain_name,
        steps,
        decision: if verdict.allowed { "allow" } else { "deny" }.to_string(),
        decided_by,
    })
}

fn write_steps(out: &mut impl Write, steps: &[StepView]) -> std::io::Result<()> {
    for s in steps {
        let result = match &s.detail {
            Some(d) => format!("{} ({d})", s.result),
            None => s.result.clone(),
        };
        writeln!(
            out,
            "  {} [{}]: {result}  rule: {}  took {:.3} ms",
            s.provider,
            s.kind,
            s.rule.as_deref().unwrap_or("-"),
            s.elapsed_ms
        )?;
    }
    Ok(())
}

impl AuthExplanation {
    /// The human form: the chain, one line per provider, the decision.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        if let Some(t) = &self.token {
            writeln!(out, "token (unverified): {t}")?;
        }
        writeln!(out, "chain: {}", self.chain)?;
        write_steps(out, &self.steps)?;
        let text = match (self.decision.as_str(), &self.reason) {
            ("allow", _) if self.superuser => "ALLOW (superuser)".to_string(),
            ("allow", _) => "ALLOW".to_string(),
            ("deny", Some(r)) => format!("DENY ({r})"),
            ("unavailable", _) => "UNAVAILABLE (a provider failed; CONNACK server unavailable)".to_string(),
            (other, _) => other.to_uppercase(),
        };
        writeln!(out, "decision: {text}  by: {}", self.decided_by)?;
        if self.banned {
            writeln!(
                out,
                "note: the brute-force guard bans this client now; its CONNECT is refused before any provider is asked"
            )?;
        }
        Ok(())
    }

    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}

impl AclExplanation {
    /// The human form: the chain, one line per provider, the decision.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "chain: {}", self.chain)?;
        write_steps(out, &self.steps)?;
        writeln!(out, "decision: {}  by: {}", self.decision.to_uppercase(), self.decided_by)
    }

    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}
