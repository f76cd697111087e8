//! One auto-subscription, taken the way a client's SUBSCRIBE takes a
//! filter (core/src/connection/handlers.rs, `on_subscribe`): the subscribe
//! hooks (a rewrite rule may change or refuse it), the filter's syntax, the
//! session's subscription limits, the ACL, then the subscription with its
//! delivery-check mark, then the retained messages its Retain Handling
//! asks for, queued to the session (which wakes the connection).

use std::sync::Arc;

use portcullis_core::broker::Broker;
use portcullis_core::codec::{RetainHandling, SubscriptionOptions};
use portcullis_core::gate::{Access, AclOutcome, ClientInfo, Gate};
use portcullis_core::hooks::{HookPoint, SubscribeOutcome, Subscription};
use portcullis_core::message::Delivery;
use portcullis_core::session::{Session, SubRecord};
use portcullis_core::topic::SubscriptionFilter;

/// What became of one template for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Subscribed (`retained`: messages queued for it).
    Subscribed { filter: String, retained: usize },
    /// The ACL refused it.
    Denied { filter: String },
    /// Refused before the ACL: a subscribe hook, the filter's syntax or a
    /// limit (named).
    Refused { filter: String, why: &'static str },
}

/// Subscribes `session` to `raw` for `client` (see the module docs).
pub(super) async fn subscribe(
    broker: &Broker,
    gate: &dyn Gate,
    client: &ClientInfo,
    session: &Arc<Session>,
    raw: String,
    opts: SubscriptionOptions,
) -> Outcome {
    let (raw, opts) = if broker.hooks.wants(HookPoint::Subscribe) {
        let mut sub = Subscription::new(raw, opts);
        if let SubscribeOutcome::Refused(_) = broker.hooks.subscribe(client, &mut sub) {
            return Outcome::Refused { filter: sub.into_filter(), why: "a subscribe hook refused it" };
        }
        let opts = sub.options;
        (sub.into_filter(), opts)
    } else {
        (raw, opts)
    };
    let Ok(filter) = SubscriptionFilter::parse(&raw) else {
        return Outcome::Refused { filter: raw, why: "not a valid topic filter" };
    };
    if let Some(why) = session.subscription_limit(&raw, &filter, &broker.settings.limits) {
        return Outcome::Refused { filter: raw, why };
    }
    let access = Access::Subscribe { filter: &filter, qos: opts.qos };
    match gate.authorize(client, access).await {
        AclOutcome::Allow => {}
        // The client did not ask for it: a refusal, never a disconnect.
        AclOutcome::Deny | AclOutcome::DenyDisconnect => return Outcome::Denied { filter: raw },
    }
    let check = gate.needs_delivery_check(client, &filter);
    let rec = SubRecord { filter: filter.clone(), options: opts, subscription_id: None, check };
    let is_new = broker.subscribe(session, filter.clone(), rec);
    let send_retained = !filter.is_shared()
        && match opts.retain_handling {
            RetainHandling::OnSubscribe => true,
            RetainHandling::OnNewSubscribe => is_new,
            RetainHandling::Never => false,
        };
    let mut retained = 0;
    if send_retained {
        let settings = &broker.settings.session;
        for msg in broker.retained.matching(&filter.filter, std::time::Instant::now()) {
            let qos = msg.qos.min(opts.qos);
            retained += usize::from(session.enqueue(
                Delivery::new(msg, qos, true, Vec::new(), check),
                settings,
                &broker.metrics,
            ));
        }
    }
    Outcome::Subscribed { filter: raw, retained }
}
