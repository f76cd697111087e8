//! The ACL chain: providers in config order; the first Allow or Deny
//! decides, Ignore moves on. Each call has its own timeout; a failing
//! provider is treated per its `on_error` (deny = fail closed, the default;
//! ignore = skip it). When every provider ignores, `no_match` decides.
//! Superusers bypass the providers entirely. Every verdict records who
//! decided and the steps taken, for logs, metrics and `acl explain`.

use std::sync::Arc;

use portcullis_core::gate::GateFuture;
use portcullis_core::gate::{Access, ClientInfo};
use portcullis_core::metrics::Scrape;
use portcullis_core::provider::{walk, ChainEntry, ChainMember, Outcome, ProviderError, Walk, WalkEnd, ACL_PROVIDER};
use portcullis_core::topic::SubscriptionFilter;

use crate::provider::{AclAnswer, AclDecision, AclProvider, DynAclProvider};
use crate::rule::Permission;

/// What the broker does with a denied action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyAction {
    /// Refuse the action (SUBACK/PUBACK failure code) and carry on.
    #[default]
    Ignore,
    /// Refuse and close the connection.
    Disconnect,
}

/// One provider in a chain, with its call policy and counters.
pub type AclEntry = ChainEntry<DynAclProvider>;

/// What happened at one provider.
pub type StepResult = portcullis_core::provider::StepResult<AclDecision>;

/// One provider's part in a verdict.
pub type Step = portcullis_core::provider::Step<AclDecision>;

/// Who made the final decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    Superuser,
    Provider {
        name: String,
        rule: Option<String>,
    },
    /// A provider failed with `on_error = deny`.
    Failure {
        name: String,
    },
    NoMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclVerdict {
    pub allowed: bool,
    pub decided_by: DecidedBy,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct AclChain {
    pub name: String,
    pub entries: Vec<AclEntry>,
    /// Decision when every provider ignores.
    pub no_match: Permission,
    pub deny_action: DenyAction,
}

impl AclChain {
    pub fn new(name: impl Into<String>, entries: Vec<AclEntry>, no_match: Permission, deny_action: DenyAction) -> Self {
        AclChain { name: name.into(), entries, no_match, deny_action }
    }

    pub async fn authorize(&self, client: &ClientInfo, access: Access<'_>) -> AclVerdict {
        if client.superuser {
            return AclVerdict { allowed: true, decided_by: DecidedBy::Superuser, steps: Vec::new() };
        }
        let question = AclQuestion { client, access };
        let Walk { end, steps } = walk("ACL", &self.name, &self.entries, &question).await;
        match end {
            WalkEnd::Decided { provider, decision, rule } => AclVerdict {
                allowed: decision == AclDecision::Allow,
                decided_by: DecidedBy::Provider { name: provider, rule },
                steps,
            },
            WalkEnd::Failed { provider } => {
                AclVerdict { allowed: false, decided_by: DecidedBy::Failure { name: provider }, steps }
            }
            WalkEnd::NoMatch => {
                AclVerdict { allowed: self.no_match == Permission::Allow, decided_by: DecidedBy::NoMatch, steps }
            }
        }
    }

    /// Must each message delivered through this granted subscription be
    /// checked again? Yes when any provider could deny the client a topic
    /// the (inner) filter matches ([`crate::provider::AclProvider::may_deny_within`]);
    /// never for a superuser. Every provider is asked, not only those
    /// before the one that granted the filter: a conservative answer costs
    /// lookups, never a leak.
    pub fn delivery_check(&self, client: &ClientInfo, filter: &SubscriptionFilter) -> bool {
        if client.superuser {
            return false;
        }
        let levels: Vec<&str> = filter.filter.levels().collect();
        self.entries.iter().any(|e| e.provider.may_deny_within(client, &levels))
    }

    /// Reads each provider's counters, latency histogram and health into
    /// `out` (`portcullis_acl_provider_*`, `$SYS/brokers/<node>/acl/<chain>/<provider>/…`).
    pub fn collect(&self, out: &mut Scrape) {
        for e in &self.entries {
            e.metrics.collect(&ACL_PROVIDER, &self.name, e.provider.name(), e.provider.health(), out);
        }
    }
}

/// A chain shared by listeners.
pub type SharedAclChain = Arc<AclChain>;

/// What the ACL chain asks each provider: may this client do this?
#[derive(Debug, Clone, Copy)]
pub struct AclQuestion<'a> {
    pub client: &'a ClientInfo,
    pub access: Access<'a>,
}

impl<'q, 'd> ChainMember<AclQuestion<'q>> for dyn AclProvider + 'd {
    type Decision = AclDecision;
    type Answer = AclAnswer;
    fn member_name(&self) -> &str {
        self.name()
    }
    fn member_kind(&self) -> &'static str {
        self.kind()
    }
    fn ask<'a>(&'a self, q: &'a AclQuestion<'q>) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        self.authorize(q.client, q.access)
    }
    fn split(a: AclAnswer) -> (AclDecision, Option<String>) {
        (a.decision, a.rule)
    }
    fn outcome(d: &AclDecision) -> Outcome {
        match d {
            AclDecision::Allow => Outcome::Allow,
            AclDecision::Deny => Outcome::Deny,
            AclDecision::Ignore => Outcome::Ignore,
        }
    }
}
