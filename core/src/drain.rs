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
use crate::hooks::HookPoint;
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
        let want_expired = self.broker.hooks.wants(HookPoint::MessageDropped);
        let mut expired = Vec::new();
        let (out, drained) = {
            let mut st = self.session.lock();
            if !st.attached_to(self.client.conn_id) {
                return None;
            }
            let out = st.next_outgoing(
                self.window,
                Instant::now(),
                &self.broker.metrics,
                want_expired.then_some(&mut expired),
            );
            (out, st.take_drained())
        };
        if drained {
            self.broker.drained.notify_waiters();
        }
        for msg in expired {
            self.broker.hooks.message_dropped(&msg, DropReason::Expired, Some(&self.client.client_id));
        }
        out
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
