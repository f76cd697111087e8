//! Subscribe (may refuse or rewrite the filter) and unsubscribe (may
//! rewrite it).
//!
//! A SUBSCRIBE runs its hooks per filter, before the filter is parsed and
//! checked against the ACL: a rewritten filter is what the ACL judges and
//! what the session holds.

use crate::codec::reason::ReasonCode;
use crate::codec::SubscriptionOptions;
use crate::gate::ClientInfo;

/// What a subscribe or unsubscribe hook says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next hook.
    Continue,
    /// Accept as it stands; later hooks are not run.
    Stop,
    /// Refuse this filter with this code (v5; 3.1.1 SUBACK 0x80). Later
    /// hooks are not run.
    Refuse(ReasonCode),
}

/// One filter of a SUBSCRIBE (or UNSUBSCRIBE), as hooks may edit it.
#[derive(Debug, Clone)]
pub struct Subscription {
    filter: String,
    /// Requested options (unused for unsubscribe).
    pub options: SubscriptionOptions,
    rewritten: bool,
}

impl Subscription {
    pub fn new(filter: String, options: SubscriptionOptions) -> Subscription {
        Subscription { filter, options, rewritten: false }
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Replaces the filter; what is then checked and held.
    pub fn set_filter(&mut self, filter: String) {
        self.rewritten |= filter != self.filter;
        self.filter = filter;
    }

    /// Whether a hook changed the filter.
    pub fn rewritten(&self) -> bool {
        self.rewritten
    }

    pub fn into_filter(self) -> String {
        self.filter
    }
}

/// The result of the subscribe hooks for one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Go on with this filter (rewritten or not).
    Go,
    /// Refused by a hook with this code.
    Refused(ReasonCode),
}

/// Runs for each filter of a SUBSCRIBE, in registration order.
pub trait OnSubscribe: Send + Sync + 'static {
    fn subscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow;
}

/// Runs for each filter of an UNSUBSCRIBE, in registration order.
pub trait OnUnsubscribe: Send + Sync + 'static {
    fn unsubscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow;
}
