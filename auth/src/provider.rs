//! The auth provider contract.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_acl::rule::Rule;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

/// What a provider says about a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allow {
        superuser: bool,
        /// ACL rules that came with the user (HTTP, database, LDAP
        /// attributes); evaluated by the ACL chain's `inline` provider.
        inline_acl: Option<Arc<Vec<Rule>>>,
        /// The credentials are valid until then (JWT `exp`, cache TTL hints).
        expires_at: Option<SystemTime>,
    },
    Deny(DenyReason),
    /// Not this provider's user: ask the next one.
    Ignore,
}

impl AuthDecision {
    /// A plain allow.
    pub fn allow() -> AuthDecision {
        AuthDecision::Allow { superuser: false, inline_acl: None, expires_at: None }
    }
}

/// A decision and the rule that made it (`etc/passwd:3`, `cidr 10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    pub decision: AuthDecision,
    pub rule: Option<String>,
}

impl AuthAnswer {
    pub fn new(decision: AuthDecision, rule: Option<String>) -> AuthAnswer {
        AuthAnswer { decision, rule }
    }
    pub fn ignore() -> AuthAnswer {
        AuthAnswer { decision: AuthDecision::Ignore, rule: None }
    }
}

/// An identity source. Implementations never see their neighbours.
pub trait AuthProvider: Send + Sync + 'static {
    /// The instance name from the config.
    fn name(&self) -> &str;
    /// The provider type (`password_file`, `ip`, `ldap`…).
    fn kind(&self) -> &'static str;
    /// Whether the provider's backend is reachable (`None`: it has none).
    /// Shown in `$SYS` as `.../health` (1 up, 0 down).
    fn health(&self) -> Option<bool> {
        None
    }
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>>;
}

impl std::fmt::Debug for dyn AuthProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthProvider({} {})", self.kind(), self.name())
    }
}

pub type DynAuthProvider = Arc<dyn AuthProvider>;
