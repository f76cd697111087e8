//! From the routes of one publish to the copies actually sent.
//!
//! A client whose several non-shared subscriptions match a topic gets one
//! copy: MQTT 3.1.1 at the highest matching QoS, MQTT 5 also carrying every
//! matching subscription identifier. A shared route is always its own copy,
//! even for a client that also matches without a group (MQTT 5 §4.8.2).

use super::{ClientId, Route};
use crate::codec::types::QoS;

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

/// Folds the routes of one publish into one [`Delivery`] per client for its
/// non-shared subscriptions, plus one per shared route. Sorts `routes` in
/// place and moves out of it; allocates the result and, per merged copy
/// with identifiers, its identifier list.
pub fn collapse<T>(mut routes: Vec<Route<T>>) -> Vec<Delivery<T>> {
    // Non-shared first, grouped by client, identifiers ascending within one.
    routes.sort_unstable_by(|a, b| {
        a.shared
            .cmp(&b.shared)
            .then_with(|| a.subscriber.client_id.cmp(&b.subscriber.client_id))
            .then_with(|| a.subscriber.subscription_id.cmp(&b.subscriber.subscription_id))
    });
    let mut out: Vec<Delivery<T>> = Vec::with_capacity(routes.len());
    for Route { subscriber: s, shared } in routes {
        if !shared {
            if let Some(d) = out.last_mut().filter(|d| !d.shared && d.client_id == s.client_id) {
                d.qos = d.qos.max(s.options.qos);
                d.retain_as_published |= s.options.retain_as_published;
                d.no_local &= s.options.no_local;
                if let Some(id) = s.subscription_id {
                    if d.subscription_ids.last() != Some(&id) {
                        d.subscription_ids.push(id);
                    }
                }
                continue;
            }
        }
        out.push(Delivery {
            client_id: s.client_id,
            handle: s.handle,
            qos: s.options.qos,
            retain_as_published: s.options.retain_as_published,
            no_local: s.options.no_local,
            subscription_ids: s.subscription_id.into_iter().collect(),
            shared,
        });
    }
    out
}
