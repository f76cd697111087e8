//! The gateway: the core's [`Gate`] over one auth chain and one ACL chain
//! (per listener), with the shared auth cache, ACL cache and brute-force
//! guard in front.
//!
//! Order for a CONNECT: guard (banned → CONNACK banned, no provider asked)
//! → auth cache (hit, or joining an identical call in flight: no provider
//! asked) → guard slot (none free → CONNACK banned) → auth chain. For an action: superuser
//! bypass and providers live in the ACL chain; the ACL cache sits in front
//! of it, keyed by connection.

use std::sync::Arc;

use portcullis_acl::cache::{AclCache, AclVerdictLite, CacheKey};
use portcullis_acl::chain::{AclChain, DecidedBy as AclDecidedBy, DenyAction};
use portcullis_acl::inline::InlineAcl;
use portcullis_auth::cache::AuthCache;
use portcullis_auth::chain::{AuthChain, AuthResult, AuthVerdict};
use portcullis_auth::guard::{Admission, BruteForceGuard};
use portcullis_core::gate::{
    Access, AclOutcome, AuthOutcome, ClientContext, ClientInfo, ConnectInfo, DenyReason, Gate, GateFuture,
};
use portcullis_core::logsafe::{LogLimiter, Peer, PeerOpt};
use portcullis_core::topic::SubscriptionFilter;
use tracing::{debug, info};

/// What every listener's gateway shares.
#[derive(Debug)]
pub struct Shared {
    pub auth_cache: AuthCache,
    pub acl_cache: AclCache,
    pub guard: BruteForceGuard,
    /// Paces "authentication refused" lines (anyone can cause them).
    pub refusal_log: LogLimiter,
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
    /// MQTT 5 enhanced-authentication methods (shared by every listener).
    pub enhanced: Arc<crate::enhanced::EnhancedMethods>,
}

/// The decision for a CONNECT, and the gate outcome it maps to.
///
/// 1. A banned subject is refused at once.
/// 2. The auth cache answers hits, and callers that join an identical call
///    in flight, without asking a provider; those results are recorded
///    with the guard (a cached deny still counts as a failure).
/// 3. Right before the chain is called, the guard must give the attempt a
///    slot (see `portcullis_auth::guard`); without one the CONNECT is
///    refused like a banned one. The slot is given back with the result.
pub async fn authenticate(auth: &AuthChain, shared: &Shared, info: &ConnectInfo) -> (AuthVerdict, AuthOutcome) {
    let guard = &shared.guard;
    let verdict = if guard.is_banned(info) {
        refused()
    } else {
        let admit = || match guard.admit(info) {
            Admission::Go(attempt) => Ok(attempt),
            Admission::Banned | Admission::Busy => Err(refused()),
        };
        match shared.auth_cache.authenticate_admitted(auth, info, admit).await {
            (verdict, Some(attempt)) => {
                attempt.finish(&verdict.result);
                verdict
            }
            (verdict, None) => {
                guard.record_result(info, &verdict.result);
                verdict
            }
        }
    };
    let outcome = match &verdict.result {
        AuthResult::Allow { superuser, inline_acl, expires_at } => AuthOutcome::Allow {
            superuser: *superuser,
            context: inline_acl.as_ref().map(|rules| Arc::new(InlineAcl(Arc::clone(rules))) as ClientContext),
            expires_at: expires_at.filter(|e| e.ends_session).map(|e| e.at),
        },
        AuthResult::Deny(r) => AuthOutcome::Deny(*r),
        AuthResult::Unavailable => AuthOutcome::Unavailable,
    };
    (verdict, outcome)
}

/// The guard's refusal: no provider was asked.
fn refused() -> AuthVerdict {
    AuthVerdict {
        result: AuthResult::Deny(DenyReason::Banned),
        decided_by: portcullis_auth::chain::DecidedBy::Guard,
        steps: Vec::new(),
    }
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
            // Peer-supplied values escaped and cut (`Peer`); refusals, which
            // anyone can cause, paced.
            match &outcome {
                AuthOutcome::Allow { superuser, .. } => debug!(
                    chain = %self.auth.name,
                    client_id = %Peer(&info.client_id),
                    username = %PeerOpt(info.username.as_deref()),
                    superuser,
                    decided_by = ?verdict.decided_by,
                    "authenticated"
                ),
                other => {
                    if let Some(suppressed) = self.shared.refusal_log.allow() {
                        info!(
                            chain = %self.auth.name,
                            client_id = %Peer(&info.client_id),
                            username = %PeerOpt(info.username.as_deref()),
                            peer = %info.peer,
                            outcome = ?other,
                            decided_by = ?verdict.decided_by,
                            suppressed,
                            "authentication refused"
                        )
                    }
                }
            }
            outcome
        })
    }

    fn v5_deny_reason(&self) -> u8 {
        self.v5_deny_reason
    }

    fn enhanced_auth(
        &self,
        method: &str,
        info: &ConnectInfo,
        purpose: portcullis_core::enhanced::Purpose,
    ) -> Option<Box<dyn portcullis_core::enhanced::Exchange>> {
        if let Some(m) = self.enhanced.registry.get(method) {
            return Some(Box::new(crate::enhanced::Guarded {
                inner: m.start(info, purpose),
                shared: Arc::clone(&self.shared),
                info: info.clone(),
            }));
        }
        if self.enhanced.token_methods.contains(method) {
            return Some(Box::new(crate::enhanced::TokenExchange {
                auth: Arc::clone(&self.auth),
                shared: Arc::clone(&self.shared),
                info: info.clone(),
                done: false,
            }));
        }
        None
    }

    fn reauthenticated(&self, client: &ClientInfo) {
        // Cached decisions are keyed by connection; a re-authentication
        // keeps the connection but may change its rules.
        self.shared.acl_cache.invalidate_client(&client.client_id);
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
            debug!(chain = %self.acl.name, client_id = %Peer(&client.client_id), access = ?access, decided_by = %rule, "access denied");
            match self.acl.deny_action {
                DenyAction::Ignore => AclOutcome::Deny,
                DenyAction::Disconnect => AclOutcome::DenyDisconnect,
            }
        })
    }
}
