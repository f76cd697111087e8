//! From the routes of one publish to the copies actually sent.
//!
//! A client whose several non-shared subscriptions match a topic gets one
//! copy: MQTT 3.1.1 at the highest matching QoS, MQTT 5 also carrying every
//! matching subscription identifier; it is checked against the ACL at
//! delivery only if every one of them asked for that (see
//! [`Delivery::check`]). A shared route is always its own copy,
//! even for a client that also matches without a group (MQTT 5 §4.8.2).
//!
//! "One client" is one client-id allocation: the broker gives every
//! subscription of a session the session's own `Arc<str>`, so routes are
//! grouped by that pointer, an integer sort, rather than by comparing the
//! strings (that sort was 22 % of the CPU of a 1→100 fan-out, whose client
//! ids share a long prefix). Should an ended session's subscriptions still
//! be in the router beside its successor's, the two get separate copies,
//! each to its own session, instead of one copy to whichever came first.

use std::sync::Arc;

use super::{ClientId, Clients, Route};
use crate::codec::types::QoS;

/// The identity of a client-id allocation (see the module docs).
fn client_key(id: &ClientId) -> usize {
    Arc::as_ptr(id).cast::<u8>() as usize
}

/// One copy of a message for one client.
#[derive(Clone, Debug)]
pub struct Delivery<T> {
    pub client_id: ClientId,
    /// The handle of the first merged subscription (all of one client's
    /// subscriptions are expected to carry the same session handle).
    pub handle: T,
    /// Highest QoS of the merged subscriptions; the caller sends
    /// `min(qos, publish qos)`.
    pub qos: QoS,
    /// Any merged subscription asked for Retain As Published.
    pub retain_as_published: bool,
    /// Every merged subscription asked for No Local: drop the copy if the
    /// client is the publisher. After [`remove_no_local`] this is false for
    /// the publisher's own copies.
    pub no_local: bool,
    /// Subscription identifiers of the merged subscriptions, ascending,
    /// without duplicates.
    pub subscription_ids: Vec<u32>,
    /// The copy comes from a shared group (never merged with others).
    pub shared: bool,
    /// Check the copy against the ACL before sending it: every merged
    /// subscription is marked. One unmarked subscription matching the
    /// topic is enough to skip the check: no deny rule overlaps its
    /// filter, so none can deny this topic, which it matches.
    pub check: bool,
}

/// Drops the publisher's own non-shared routes that asked for No Local, so
/// that [`collapse()`] computes QoS and identifiers from exactly the
/// subscriptions that still match (MQTT 5 §3.8.3.1). Shared routes are
/// kept: No Local on a shared subscription is a protocol error the
/// SUBSCRIBE handling rejects, and dropping one here would lose the group's
/// only copy.
pub fn remove_no_local<T>(routes: &mut Vec<Route<T>>, publisher: Option<&str>) {
    let Some(publisher) = publisher else { return };
    routes.retain(|r| r.shared || !r.subscriber.options.no_local || &*r.subscriber.client_id != publisher);
}

/// Folds the routes of one publish into one [`Delivery`] per client (per
/// client-id allocation, see the module docs) for its non-shared
/// subscriptions, plus one per shared route, and collects them. See
/// [`for_each_delivery`], which this wraps.
pub fn collapse<T>(mut routes: Vec<Route<T>>, clients: Clients) -> Vec<Delivery<T>> {
    let mut out = Vec::with_capacity(routes.len());
    for_each_delivery(&mut routes, clients, |d| out.push(d));
    out
}

/// Hands `deliver` one [`Delivery`] per client for its non-shared routes
/// (merged: highest QoS, every identifier) plus one per shared route,
/// draining `routes` (its allocation stays, for reuse). Allocates nothing
/// itself but, per merged copy with several identifiers, their list.
///
/// With [`Clients::Distinct`] (the routes came from one filter, the common
/// case of a fan-out) there is nothing to merge: no sort, one copy per
/// route in the router's order.
pub fn for_each_delivery<T>(routes: &mut Vec<Route<T>>, clients: Clients, mut deliver: impl FnMut(Delivery<T>)) {
    if clients == Clients::Distinct {
        for Route { subscriber, shared } in routes.drain(..) {
            deliver(Delivery::of(subscriber, shared));
        }
        return;
    }
    // Non-shared first, grouped by client, identifiers ascending within one.
    routes.sort_unstable_by_key(|r| (r.shared, client_key(&r.subscriber.client_id), r.subscriber.subscription_id));
    let mut current: Option<Delivery<T>> = None;
    for Route { subscriber: s, shared } in routes.drain(..) {
        if !shared {
            if let Some(d) = current.as_mut().filter(|d| !d.shared && Arc::ptr_eq(&d.client_id, &s.client_id)) {
                d.qos = d.qos.max(s.options.qos);
                d.retain_as_published |= s.options.retain_as_published;
                d.no_local &= s.options.no_local;
                d.check &= s.check;
                if let Some(id) = s.subscription_id {
                    if d.subscription_ids.last() != Some(&id) {
                        d.subscription_ids.push(id);
                    }
                }
                continue;
            }
        }
        if let Some(done) = current.replace(Delivery::of(s, shared)) {
            deliver(done);
        }
    }
    if let Some(done) = current {
        deliver(done);
    }
}

impl<T> Delivery<T> {
    /// The copy for one subscription on its own.
    fn of(s: super::Subscriber<T>, shared: bool) -> Delivery<T> {
        Delivery {
            client_id: s.client_id,
            handle: s.handle,
            qos: s.options.qos,
            retain_as_published: s.options.retain_as_published,
            no_local: s.options.no_local,
            subscription_ids: s.subscription_id.into_iter().collect(),
            shared,
            check: s.check,
        }
    }
}
