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
        /// Until when the answer holds (see [`Expiry`]): the auth cache
        /// never keeps it longer, and one that ends the session (a JWT's
        /// `exp`) also ends the connection then.
        expires_at: Option<Expiry>,
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

/// When an allow stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Wall-clock time: tokens carry it, and it is compared with the
    /// system clock.
    pub at: SystemTime,
    /// The session ends then too (a JWT's `exp` with
    /// `disconnect_after_expire`); otherwise only the cache stops reusing
    /// the answer (an HTTP `Cache-Control: max-age`).
    pub ends_session: bool,
}

impl Expiry {
    /// Caps how long the answer is cached; the session is not touched.
    pub fn cache_only(at: SystemTime) -> Expiry {
        Expiry { at, ends_session: false }
    }
    /// The credentials, and so the session, end at `at`.
    pub fn session(at: SystemTime) -> Expiry {
        Expiry { at, ends_session: true }
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

/// Which parts of a CONNECT a provider's answer depends on. The auth cache
/// keys a chain's verdicts on the union over its providers, so a provider
/// that looks only at username and password lets every client of one user
/// share one cached verdict (a reconnect storm of 10,000 clients over 1,000
/// users asks the backend 1,000 times, not 10,000). Declaring too little
/// would let one client's verdict serve another: when in doubt, `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Inputs(u8);

impl Inputs {
    pub const NONE: Inputs = Inputs(0);
    pub const CLIENT_ID: Inputs = Inputs(1);
    pub const USERNAME: Inputs = Inputs(2);
    pub const PASSWORD: Inputs = Inputs(4);
    pub const PEER: Inputs = Inputs(8);
    pub const LISTENER: Inputs = Inputs(16);
    /// The verified client certificate (its subject and SANs).
    pub const CERT: Inputs = Inputs(32);
    pub const PROTOCOL: Inputs = Inputs(64);
    pub const ALL: Inputs = Inputs(127);

    pub const fn union(self, other: Inputs) -> Inputs {
        Inputs(self.0 | other.0)
    }

    pub const fn contains(self, other: Inputs) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Inputs {
    type Output = Inputs;
    fn bitor(self, rhs: Inputs) -> Inputs {
        self.union(rhs)
    }
}

/// An identity source. Implementations never see their neighbours.
pub trait AuthProvider: Send + Sync + 'static {
    /// The instance name from the config.
    fn name(&self) -> &str;
    /// The provider type (`password_file`, `ip`, `ldap`…).
    fn kind(&self) -> &'static str;
    /// What the answer depends on (see [`Inputs`]); the default, every
    /// field, is always safe.
    fn inputs(&self) -> Inputs {
        Inputs::ALL
    }
    /// Whether caching this provider's answers pays: false for providers
    /// that answer from memory in less time than a cache lookup takes
    /// (anonymous, IP, client id, certificate). A chain of only such
    /// providers bypasses the auth cache, so it keeps no entry per client.
    fn worth_caching(&self) -> bool {
        true
    }
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
