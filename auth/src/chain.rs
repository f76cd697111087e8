//! The auth chain: providers in config order; the first Allow or Deny
//! decides, Ignore moves on. Each call has its own timeout. A failing
//! provider is handled per its `on_error`: `deny` (the default) stops the
//! chain with *unavailable* — never reported as bad credentials — and
//! `ignore` skips it. When every provider ignores, `no_match` decides
//! (default deny: bad credentials when the CONNECT carried a username or
//! password, so an unknown user looks like a wrong password; not
//! authorized otherwise).

use std::sync::Arc;

use portcullis_acl::rule::Rule;
use portcullis_core::gate::{ConnectInfo, DenyReason};
use portcullis_core::metrics::Scrape;
use portcullis_core::provider::{walk, ChainEntry, ChainMember, Outcome, ProviderError, Walk, WalkEnd, AUTH_PROVIDER};

use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, DynAuthProvider, Inputs};

/// One provider in a chain, with its call policy and counters.
pub type AuthEntry = ChainEntry<DynAuthProvider>;

/// Decision when every provider ignores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoMatch {
    /// Refuse: with a username or password, as bad credentials (3.1.1
    /// CONNACK 0x04, v5 0x86: an unknown user is not told apart from a
    /// wrong password); without, not authorized (0x05, 0x87).
    #[default]
    Deny,
    /// Admit as a normal (non-super) user.
    Allow,
}

/// The chain's final outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    Allow {
        superuser: bool,
        inline_acl: Option<Arc<Vec<Rule>>>,
        expires_at: Option<crate::provider::Expiry>,
    },
    Deny(DenyReason),
    /// A provider failed with `on_error = deny`.
    Unavailable,
}

/// What happened at one provider.
pub type StepResult = portcullis_core::provider::StepResult<AuthDecision>;

/// One provider's part in a verdict.
pub type Step = portcullis_core::provider::Step<AuthDecision>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    Provider {
        name: String,
        rule: Option<String>,
    },
    Failure {
        name: String,
    },
    NoMatch,
    /// Answered from the auth cache (the original decider in brackets).
    Cache(Box<DecidedBy>),
    /// Refused by the brute-force guard without asking any provider.
    Guard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    pub result: AuthResult,
    pub decided_by: DecidedBy,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct AuthChain {
    pub name: String,
    pub entries: Vec<AuthEntry>,
    pub no_match: NoMatch,
    /// Computed once from the entries (read on every CONNECT).
    inputs: Inputs,
    worth_caching: bool,
}

impl AuthChain {
    pub fn new(name: impl Into<String>, entries: Vec<AuthEntry>, no_match: NoMatch) -> AuthChain {
        let inputs = entries.iter().fold(Inputs::NONE, |acc, e| acc | e.provider.inputs());
        let worth_caching = entries.iter().any(|e| e.provider.worth_caching());
        AuthChain { name: name.into(), entries, no_match, inputs, worth_caching }
    }

    /// What the chain's verdict depends on: the union of its providers'
    /// [`Inputs`].
    pub fn inputs(&self) -> Inputs {
        self.inputs
    }

    /// Whether any provider's answers are worth caching (see
    /// [`AuthProvider::worth_caching`](crate::provider::AuthProvider::worth_caching)).
    pub fn worth_caching(&self) -> bool {
        self.worth_caching
    }

    pub async fn authenticate(&self, info: &ConnectInfo) -> AuthVerdict {
        let Walk { end, steps } = walk("auth", &self.name, &self.entries, info).await;
        let (result, decided_by) = match end {
            WalkEnd::Decided { provider, decision, rule } => {
                let result = match decision {
                    AuthDecision::Allow { superuser, inline_acl, expires_at } => {
                        AuthResult::Allow { superuser, inline_acl, expires_at }
                    }
                    AuthDecision::Deny(r) => AuthResult::Deny(r),
                    // The walker stops only at Allow or Deny.
                    AuthDecision::Ignore => AuthResult::Deny(no_match_reason(info)),
                };
                (result, DecidedBy::Provider { name: provider, rule })
            }
            WalkEnd::Failed { provider } => (AuthResult::Unavailable, DecidedBy::Failure { name: provider }),
            WalkEnd::NoMatch => {
                let result = match self.no_match {
                    NoMatch::Deny => AuthResult::Deny(no_match_reason(info)),
                    NoMatch::Allow => AuthResult::Allow { superuser: false, inline_acl: None, expires_at: None },
                };
                (result, DecidedBy::NoMatch)
            }
        };
        AuthVerdict { result, decided_by, steps }
    }

    /// Reads each provider's counters, latency histogram and health into
    /// `out` (`portcullis_auth_provider_*`, `$SYS/brokers/<node>/auth/<chain>/<provider>/…`).
    pub fn collect(&self, out: &mut Scrape) {
        for e in &self.entries {
            e.metrics.collect(&AUTH_PROVIDER, &self.name, e.provider.name(), e.provider.health(), out);
        }
    }
}

/// Why `no_match = deny` refuses a CONNECT. With credentials, bad
/// credentials: providers ignore users they do not know, and answering
/// "not authorized" there but "bad credentials" for a wrong password would
/// tell an attacker which usernames exist. Without any, not authorized.
pub fn no_match_reason(info: &ConnectInfo) -> DenyReason {
    if info.username.is_some() || info.password.is_some() {
        DenyReason::BadCredentials
    } else {
        DenyReason::NotAuthorized
    }
}

impl<'d> ChainMember<ConnectInfo> for dyn AuthProvider + 'd {
    type Decision = AuthDecision;
    type Answer = AuthAnswer;
    fn member_name(&self) -> &str {
        self.name()
    }
    fn member_kind(&self) -> &'static str {
        self.kind()
    }
    fn ask<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> portcullis_core::gate::GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        self.authenticate(info)
    }
    fn split(a: AuthAnswer) -> (AuthDecision, Option<String>) {
        (a.decision, a.rule)
    }
    fn outcome(d: &AuthDecision) -> Outcome {
        match d {
            AuthDecision::Allow { .. } => Outcome::Allow,
            AuthDecision::Deny(_) => Outcome::Deny,
            AuthDecision::Ignore => Outcome::Ignore,
        }
    }
}
