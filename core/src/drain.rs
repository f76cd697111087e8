//! A session's deliveries without a socket: what the MQTT writer pulls
//! from its session ([`crate::connection`]'s `outbound`), for a writer that
//! speaks another protocol (the STOMP gateway).
//!
//! A [`Drain`] belongs to the connection an [`Admission`] attached to the
//! session. [`Drain::next`] hands out the next delivery the client may
//! receive now: within the window of unacknowledged QoS 1/2 deliveries,
//! after the ACL delivery check where a subscription needs one (the same
//! check the MQTT writer makes), expired messages dropped and counted.
//! QoS 1/2 deliveries come with the id to [`Drain::ack`] them by (one
//! acknowledgement ends both QoS 1 and QoS 2: the protocol behind the
//! drain has one acknowledgement). [`Drain::wait`] waits for the session's
//! wake-up; [`Drain::close`] detaches the session as a closing MQTT
//! connection does.

use std::sync::Arc;
use std::time::Instant;

use crate::admission::Admission;
use crate::broker::Broker;
use crate::gate::{Access, AclOutcome, ClientInfo, Gate};
use crate::message::Delivery;
use crate::metrics::DropReason;
use crate::session::{Outgoing, Session};
use crate::topic::SubscriptionFilter;

/// The deliveries of one attached session (see the module docs).
pub struct Drain {
    broker: Arc<Broker>,
    gate: Arc<dyn Gate>,
    client: Arc<ClientInfo>,
    session: Arc<Session>,
    /// Unacknowledged QoS 1/2 deliveries at most.
    window: usize,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("client_id", &self.client.client_id)
            .field("conn_id", &self.client.conn_id)
            .field("window", &self.window)
            .finish()
    }
}

impl Drain {
    /// The drain of the session `admission` opened; `window` (at least 1)
    /// bounds the unacknowledged QoS 1/2 deliveries.
    pub fn new(broker: &Arc<Broker>, gate: &Arc<dyn Gate>, admission: &Admission, window: usize) -> Drain {
        Drain {
            broker: Arc::clone(broker),
            gate: Arc::clone(gate),
            client: Arc::clone(&admission.client),
            session: Arc::clone(&admission.session),
            window: window.max(1),
        }
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The client the deliveries are for.
    pub fn client(&self) -> &Arc<ClientInfo> {
        &self.client
    }

    /// Still this connection's session (not taken over, not closed).
    pub fn attached(&self) -> bool {
        self.session.is_attached_to(self.client.conn_id)
    }

    /// Waits until the session may have something new (a wake-up; the
    /// session keeps one pending, so none is lost between two waits).
    pub async fn wait(&self) {
        self.session.wake.notified().await
    }

    /// The next delivery the client may receive now, or `None` when the
    /// queue is empty, the window full or the session no longer attached.
    /// Counted as sent and given to the delivered hook, as a PUBLISH is.
    pub async fn next(&mut self) -> Option<Outgoing> {
        let all = self.gate.check_on_delivery();
        loop {
            let out = self.take()?;
            if (all || out.delivery.check) && !self.allowed(&out.delivery).await {
                self.broker.metrics.dropped(DropReason::Denied);
                self.broker.hooks.message_dropped(&out.delivery.msg, DropReason::Denied, Some(&self.client.client_id));
                if let Some(id) = out.packet_id {
                    self.session.lock().complete(id);
                }
                continue;
            }
            self.broker.metrics.message_sent(out.delivery.qos);
            self.broker.hooks.message_delivered(&self.client, &out.delivery.msg, out.delivery.qos);
            return Some(out);
        }
    }

    /// A delivery that was not sent after all (too large for the client):
    /// it leaves the window, counted as dropped.
    pub fn discard(&mut self, out: &Outgoing, reason: DropReason) {
        self.broker.metrics.dropped(reason);
        self.broker.hooks.message_dropped(&out.delivery.msg, reason, Some(&self.client.client_id));
        if let Some(id) = out.packet_id {
            self.session.lock().complete(id);
        }
    }

    /// The client acknowledged QoS 1/2 delivery `id`: it leaves the window.
    /// False when no such delivery was in flight.
    pub fn ack(&mut self, id: u16) -> bool {
        let done = self.session.lock().complete(id);
        match done {
            Some(i) => {
                self.broker.hooks.message_acked(&self.client, &i.delivery.msg);
                true
            }
            None => false,
        }
    }

    /// The client refused QoS 1/2 delivery `id` (STOMP's NACK), or it can
    /// no longer be acknowledged: it leaves the window, not delivered
    /// again.
    pub fn nack(&mut self, id: u16) -> bool {
        self.session.lock().complete(id).is_some()
    }

    /// Detaches the session from this connection (its expiry applies).
    pub fn close(self) {
        self.broker.close_session(&self.session, self.client.conn_id);
    }

    fn take(&mut self) -> Option<Outgoing> {
        self.broker.next_delivery(
            &self.session,
            self.client.conn_id,
            &self.client.client_id,
            self.window,
            Instant::now(),
        )
    }

    /// The delivery check (see [`Gate::needs_delivery_check`]).
    async fn allowed(&self, d: &Delivery) -> bool {
        let Ok(filter) = SubscriptionFilter::parse(d.msg.topic.as_str()) else {
            return false;
        };
        let access = Access::Subscribe { filter: &filter, qos: d.qos };
        self.gate.authorize(&self.client, access).await == AclOutcome::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{admit, Terms};
    use crate::codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
    use crate::gate::{ConnectInfo, GateFuture, LoopbackOnly};
    use crate::message::Message;
    use crate::session::SubRecord;
    use crate::topic::TopicName;

    /// Allows everything but deliveries under `secret/`, and asks for the
    /// delivery check on every subscription.
    struct Checking;
    impl Gate for Checking {
        fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, crate::gate::AuthOutcome> {
            LoopbackOnly.authenticate(info)
        }
        fn authorize<'a>(&'a self, _c: &'a ClientInfo, access: Access<'a>) -> GateFuture<'a, AclOutcome> {
            let deny = matches!(access, Access::Subscribe { filter, .. } if filter.raw.starts_with("secret/"));
            Box::pin(async move {
                if deny {
                    AclOutcome::Deny
                } else {
                    AclOutcome::Allow
                }
            })
        }
        fn needs_delivery_check(&self, _c: &ClientInfo, _f: &SubscriptionFilter) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn drains_within_the_window_with_acks_nacks_and_delivery_checks() {
        let broker = Broker::new(Default::default());
        let gate: Arc<dyn Gate> = Arc::new(Checking);
        let info = ConnectInfo {
            client_id: Arc::from("d"),
            username: None,
            password: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: Arc::from("l"),
            protocol: ProtocolVersion::V311.into(),
            cert: None,
        };
        let terms = Terms { clean_start: true, expiry: Some(std::time::Duration::ZERO), keep_alive: 0 };
        let a = admit(&broker, &*gate, info, terms).await.unwrap();
        let mut drain = Drain::new(&broker, &gate, &a, 2);
        let filter = SubscriptionFilter::parse("#").unwrap();
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::Never,
        };
        let rec = SubRecord { filter: filter.clone(), options, subscription_id: Some(7), check: true };
        broker.subscribe(drain.session(), filter, rec);
        for t in ["a", "secret/x", "b", "c"] {
            broker.publish(Arc::new(Message {
                topic: TopicName::new(t).unwrap(),
                payload: bytes::Bytes::from_static(b"p"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: None,
                publisher: None,
                expires_at: None,
            }));
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), drain.wait()).await.expect("woken");
        let first = drain.next().await.unwrap();
        assert_eq!(first.delivery.msg.topic.as_str(), "a");
        assert_eq!(first.delivery.subscription_ids, [7]);
        // secret/x is refused by the delivery check and leaves the window.
        let second = drain.next().await.unwrap();
        assert_eq!(second.delivery.msg.topic.as_str(), "b");
        assert!(drain.next().await.is_none(), "window of 2 full");
        assert!(drain.ack(first.packet_id.unwrap()));
        assert!(!drain.ack(first.packet_id.unwrap()), "acknowledged once");
        let third = drain.next().await.unwrap();
        assert_eq!(third.delivery.msg.topic.as_str(), "c");
        assert!(drain.nack(second.packet_id.unwrap()));
        assert!(drain.nack(third.packet_id.unwrap()));
        assert!(drain.next().await.is_none(), "nothing delivered again");
        assert_eq!(broker.metrics.dropped_count(DropReason::Denied), 1);
        drain.close();
        assert!(broker.find_session("d").is_none(), "an expiry-0 session ends with its connection");
    }
}
