//! The protocol-neutral subscribe and unsubscribe steps: what an MQTT
//! SUBSCRIBE does for each of its filters, and a STOMP SUBSCRIBE for its
//! destination, in one place.
//!
//! [`check`]: the subscribe hooks (which may refuse or rewrite the filter
//! and its options) → the filter parsed → the session's subscription
//! limits → the ACL; then [`Checked::commit`] puts it into the router.
//! The two are apart so that a caller can refuse between them (STOMP: a
//! destination already subscribed). [`unsubscribe`]: the unsubscribe hooks
//! (which may refuse or rewrite the filter) → out of the router.

use std::sync::Arc;

use tracing::debug;

use crate::broker::Broker;
use crate::codec::reason::ReasonCode;
use crate::codec::SubscriptionOptions;
use crate::gate::{Access, AclOutcome, ClientInfo, Gate};
use crate::hooks::{HookPoint, SubscribeOutcome, Subscription};
use crate::logsafe::Peer;
use crate::session::{Session, SubRecord};
use crate::topic::SubscriptionFilter;

/// Why a filter was not subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A subscribe hook refused it with this code.
    Hook(ReasonCode),
    /// Not a valid topic filter (after the hooks).
    InvalidFilter,
    /// Over one of the session's subscription limits (why).
    Limit(&'static str),
    /// The ACL denied it.
    Denied,
    /// The ACL denied it and asks for the connection to close.
    DenyDisconnect,
}

/// A filter the hooks, the limits and the ACL let through, not yet in
/// the router.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The filter as the session holds it (after the hooks).
    pub raw: String,
    pub filter: SubscriptionFilter,
    /// The options (after the hooks).
    pub options: SubscriptionOptions,
    /// Deliveries need an ACL check ([`Gate::needs_delivery_check`]).
    pub check: bool,
}

/// Subscribe hooks, parse, limits, ACL for one filter (see the module docs).
pub async fn check(
    broker: &Broker,
    gate: &dyn Gate,
    session: &Session,
    client: &ClientInfo,
    raw: String,
    options: SubscriptionOptions,
) -> Result<Checked, Refused> {
    // Subscribe hooks may refuse or rewrite the filter; the ACL judges
    // what they leave.
    let (raw, options) = if broker.hooks.wants(HookPoint::Subscribe) {
        let mut sub = Subscription::new(raw, options);
        if let SubscribeOutcome::Refused(code) = broker.hooks.subscribe(client, &mut sub) {
            return Err(Refused::Hook(code));
        }
        let options = sub.options;
        (sub.into_filter(), options)
    } else {
        (raw, options)
    };
    let Ok(filter) = SubscriptionFilter::parse(&raw) else { return Err(Refused::InvalidFilter) };
    if let Some(why) = session.subscription_limit(&raw, &filter, &broker.settings.limits) {
        debug!(filter = %Peer(&raw), why, "subscription refused: limit");
        return Err(Refused::Limit(why));
    }
    let access = Access::Subscribe { filter: &filter, qos: options.qos };
    match gate.authorize(client, access).await {
        AclOutcome::Allow => {}
        AclOutcome::Deny => {
            debug!(filter = %Peer(&raw), "subscribe denied");
            return Err(Refused::Denied);
        }
        AclOutcome::DenyDisconnect => return Err(Refused::DenyDisconnect),
    }
    let check = gate.needs_delivery_check(client, &filter);
    Ok(Checked { raw, filter, options, check })
}

impl Checked {
    /// Into the router and the session; true when the filter is new to
    /// the session (not a re-subscription).
    pub fn commit(&self, broker: &Broker, session: &Arc<Session>, subscription_id: Option<u32>) -> bool {
        let rec = SubRecord { filter: self.filter.clone(), options: self.options, subscription_id, check: self.check };
        broker.subscribe(session, self.filter.clone(), rec)
    }
}

/// Unsubscribe hooks, then out of the router: the filter as the hooks
/// left it and whether the session held it; `Err` when a hook refused.
pub fn unsubscribe(
    broker: &Broker,
    session: &Arc<Session>,
    client: &ClientInfo,
    raw: String,
) -> Result<(String, bool), ReasonCode> {
    let raw = if broker.hooks.wants(HookPoint::Unsubscribe) {
        let mut sub = Subscription::new(raw, SubscriptionOptions::default());
        if let SubscribeOutcome::Refused(code) = broker.hooks.unsubscribe(client, &mut sub) {
            return Err(code);
        }
        sub.into_filter()
    } else {
        raw
    };
    let existed = broker.unsubscribe(session, &raw);
    Ok((raw, existed))
}
