//! The gateway: the core's [`Gate`] over one auth chain and one ACL chain
//! (per listener), with the shared auth cache, ACL cache and brute-force
//! guard in front.
//!
//! Order for a CONNECT: guard (banned → CONNACK banned, no provider asked)
//! → auth cache (single flight) → auth chain. For an action: superuser
//! bypass and providers live in the ACL chain; the ACL cache sits in front
//! of it, keyed by connection.

use std::sync::Arc;

use portcullis_acl::cache::{AclCache, AclVerdictLite, CacheKey};
use portcullis_acl::chain::{AclChain, DecidedBy as AclDecidedBy, DenyAction};
use portcullis_acl::inline::InlineAcl;
use portcullis_auth::cache::AuthCache;
use portcullis_auth::chain::{AuthChain, AuthResult, AuthVerdict};
use portcullis_auth::guard::BruteForceGuard;
use portcullis_core::gate::{
    Access, AclOutcome, AuthOutcome, ClientContext, ClientInfo, ConnectInfo, DenyReason, Gate, GateFuture,
};
use portcullis_core::topic::SubscriptionFilter;
use tracing::{debug, info};

/// What every listener's gateway shares.
#[derive(Debug)]
pub struct Shared {
    pub auth_cache: AuthCache,
    pub acl_cache: AclCache,
    pub guard: BruteForceGuard,
}

#[derive(Debug)]
pub struct Gateway {
    pub auth: Arc<AuthChain>,
    pub acl: Arc<AclChain>,
    pub shared: Arc<Shared>,
    /// `acl.v5_deny_reason`.
    pub v5_deny_reason: u8,
    /// `acl.check_on_delivery`.
    pub check_on_delivery: bool,
}

/// The decision for a CONNECT, and the gate outcome it maps to.
pub async fn authenticate(auth: &AuthChain, shared: &Shared, info: &ConnectInfo) -> (AuthVerdict, AuthOutcome) {
    if shared.guard.is_banned(info) {
        let verdict = AuthVerdict {
            result: AuthResult::Deny(DenyReason::Banned),
            decided_by: portcullis_auth::chain::DecidedBy::Guard,
            steps: Vec::new(),
        };
        return (verdict, AuthOutcome::Deny(DenyReason::Banned));
    }
    let verdict = shared.auth_cache.authenticate(auth, info).await;
    shared.guard.record_result(info, &verdict.result);
    let outcome = match &verdict.result {
        AuthResult::Allow { superuser, inline_acl, .. } => AuthOutcome::Allow {
            superuser: *superuser,
            context: inline_acl.as_ref().map(|rules| Arc::new(InlineAcl(Arc::clone(rules))) as ClientContext),
        },
        AuthResult::Deny(r) => AuthOutcome::Deny(*r),
        AuthResult::Unavailable => AuthOutcome::Unavailable,
    };
    (verdict, outcome)
}

/// The decision for one action, from the cache when possible. Entries are
/// keyed by connection, so nothing decided for one connection applies to
/// the next (a reconnect may bring another username or other inline
/// rules); entries of closed connections are never read again and age out.
pub async fn authorize(acl: &AclChain, shared: &Shared, client: &ClientInfo, access: Access<'_>) -> AclVerdictLite {
    let key = CacheKey::new(client, &access);
    shared.acl_cache.get_or_insert_with(key, async { AclVerdictLite::from(acl.authorize(client, access).await) }).await
}

impl Gate for Gateway {
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, AuthOutcome> {
        Box::pin(async move {
            let (verdict, outcome) = authenticate(&self.auth, &self.shared, info).await;
            match &outcome {
                AuthOutcome::Allow { superuser, .. } => debug!(
                    chain = %self.auth.name,
                    client_id = %info.client_id,
                    username = ?info.username.as_deref(),
                    superuser,
                    decided_by = ?verdict.decided_by,
                    "authenticated"
                ),
                other => info!(
                    chain = %self.auth.name,
                    client_id = %info.client_id,
                    username = ?info.username.as_deref(),
                    peer = %info.peer,
                    outcome = ?other,
                    decided_by = ?verdict.decided_by,
                    "authentication refused"
                ),
            }
            outcome
        })
    }

    fn v5_deny_reason(&self) -> u8 {
        self.v5_deny_reason
    }

    fn check_on_delivery(&self) -> bool {
        self.check_on_delivery
    }

    fn needs_delivery_check(&self, client: &ClientInfo, filter: &SubscriptionFilter) -> bool {
        let check = self.acl.delivery_check(client, filter);
        if check {
            debug!(chain = %self.acl.name, client_id = %client.client_id, filter = %filter.raw, "deliveries through this subscription are checked: a deny rule overlaps it");
        }
        check
    }

    fn publish_allow_reuse(&self) -> Option<std::time::Duration> {
        self.shared.acl_cache.allow_reuse()
    }

    fn acl_epoch(&self) -> u64 {
        self.shared.acl_cache.epoch()
    }

    fn authorize<'a>(&'a self, client: &'a ClientInfo, access: Access<'a>) -> GateFuture<'a, AclOutcome> {
        Box::pin(async move {
            let verdict = authorize(&self.acl, &self.shared, client, access).await;
            if verdict.allowed {
                return AclOutcome::Allow;
            }
            let rule = match &verdict.decided_by {
                AclDecidedBy::Provider { name, rule } => format!("{name} {}", rule.as_deref().unwrap_or("")),
                other => format!("{other:?}"),
            };
            // Debug, not info: one line per refused packet would let a
            // client flood the log. Refusals are counted per provider.
            debug!(chain = %self.acl.name, client_id = %client.client_id, access = ?access, decided_by = %rule, "access denied");
            match self.acl.deny_action {
                DenyAction::Ignore => AclOutcome::Deny,
                DenyAction::Disconnect => AclOutcome::DenyDisconnect,
            }
        })
    }
}
