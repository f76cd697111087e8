//! The ACL provider contract.

use std::sync::Arc;

use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

/// What a provider says about one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclDecision {
    Allow,
    Deny,
    /// Not this provider's business: the chain asks the next one.
    Ignore,
}

/// A decision and the rule that made it (for explain, logs, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclAnswer {
    pub decision: AclDecision,
    /// e.g. `etc/acl.toml:12`; `None` for Ignore or when there is no rule.
    pub rule: Option<String>,
}

impl AclAnswer {
    pub fn ignore() -> AclAnswer {
        AclAnswer { decision: AclDecision::Ignore, rule: None }
    }
}

/// An ACL source. Implementations never see their neighbours: chain
/// semantics (order, timeouts, on_error, no_match) live in the chain.
pub trait AclProvider: Send + Sync + 'static {
    /// The instance name from the config (unique per chain).
    fn name(&self) -> &str;
    /// The provider type (`file`, `mosquitto_acl`, `policy_dir`, `postgres`…).
    fn kind(&self) -> &'static str;
    /// Whether the provider's backend is reachable (`None`: it has none).
    /// Shown in `$SYS` as `.../health` (1 up, 0 down).
    fn health(&self) -> Option<bool> {
        None
    }
    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>>;

    /// Could this provider deny `client`, at delivery, a topic that
    /// `filter` (a granted subscription's plain filter, as levels)
    /// matches? Asked once per granted SUBSCRIBE filter; when any provider
    /// of the chain says yes, each message delivered through that
    /// subscription is checked again as a subscription to its topic, and
    /// the others cost nothing per message.
    ///
    /// Rule sources answer from their rules (a deny rule for this client
    /// overlapping the filter: [`crate::rule::Rule::may_deny_within`]).
    /// The default is for providers that cannot list their rules in
    /// advance (SQL, Redis, MongoDB, HTTP: they are asked per action, and
    /// any answer may be a deny): yes for every filter with a wildcard. A
    /// filter without one names a single topic, whose decision the
    /// SUBSCRIBE already got.
    fn may_deny_within(&self, _client: &ClientInfo, filter: &[&str]) -> bool {
        filter.iter().any(|l| *l == "+" || *l == "#")
    }
}

impl std::fmt::Debug for dyn AclProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AclProvider({} {})", self.kind(), self.name())
    }
}

/// Shared handle.
pub type DynAclProvider = Arc<dyn AclProvider>;
