//! Session deliveries → PUBLISH packets: the inflight window, DUP
//! redelivery, outgoing topic aliases, subscription identifiers, message
//! expiry and the client's Maximum Packet Size.

use std::time::Instant;

use tokio::io::AsyncWrite;
use tracing::debug;

use super::{Conn, WRITE_HIGH_WATER};
use crate::codec::{Packet, Properties, PubResp, PublishRef, QoS};
use crate::message::Delivery;
use crate::metrics::DropReason;
use crate::session::{OutState, Outgoing};
use crate::topic::SubscriptionFilter;

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    /// Moves as many queued deliveries into the write buffer as the
    /// window and the write high-water mark allow. A delivery is first
    /// checked as a subscription to its topic when it came through a
    /// marked subscription (one a deny rule overlaps: `#` beside
    /// `deny secret/#`, see [`crate::gate::Gate::needs_delivery_check`]),
    /// or always with the gate's `check_on_delivery` (then a subscription
    /// granted before a rule changed cannot carry a refused topic either).
    ///
    /// Until a delivery needs a check nothing here waits: the common path
    /// is plain code, and the checking path is boxed, so neither adds its
    /// state to every idle connection's future.
    pub(super) async fn pump(&mut self) {
        let all = self.gate.check_on_delivery();
        if all {
            Box::pin(self.pump_checked(None, true)).await;
            return;
        }
        let now = Instant::now();
        while let Some(out) = self.next_out(now) {
            if out.delivery.check {
                // The rest of this round goes through the checking path,
                // which still checks only marked deliveries.
                Box::pin(self.pump_checked(Some(out), false)).await;
                return;
            }
            self.emit(&out, now);
        }
    }

    /// [`Self::pump`] from `first` on, checking marked deliveries (`all`:
    /// every delivery).
    async fn pump_checked(&mut self, mut first: Option<Outgoing>, all: bool) {
        let mut now = Instant::now();
        while let Some(out) = first.take().or_else(|| self.next_out(now)) {
            if !(all || out.delivery.check) {
                self.emit(&out, now);
                continue;
            }
            let allowed = self.delivery_allowed(&out.delivery).await;
            now = Instant::now();
            if allowed {
                self.emit(&out, now);
            } else {
                self.broker.metrics.dropped(DropReason::Denied);
                self.broker.hooks.message_dropped(&out.delivery.msg, DropReason::Denied, Some(&self.client.client_id));
                if let Some(id) = out.packet_id {
                    self.session.lock().complete(id);
                }
            }
        }
    }

    /// The next delivery, while the write buffer has room and this
    /// connection still owns the session.
    fn next_out(&mut self, now: Instant) -> Option<Outgoing> {
        if self.wbuf.len() >= WRITE_HIGH_WATER {
            return None;
        }
        self.broker.next_delivery(&self.session, self.conn_id, &self.client.client_id, self.window, now)
    }

    /// Encodes a delivery; one that cannot be sent leaves the window.
    fn emit(&mut self, out: &Outgoing, now: Instant) {
        if !self.send_publish(&out.delivery, out.packet_id, false, now) {
            if let Some(id) = out.packet_id {
                self.session.lock().complete(id);
            }
        }
    }

    /// The delivery check: may this client receive this topic now?
    async fn delivery_allowed(&self, d: &Delivery) -> bool {
        use crate::gate::{Access, AclOutcome};
        let Ok(filter) = SubscriptionFilter::parse(d.msg.topic.as_str()) else {
            return false;
        };
        let access = Access::Subscribe { filter: &filter, qos: d.qos };
        let allowed = self.gate.authorize(&self.client, access).await == AclOutcome::Allow;
        if !allowed {
            debug!(topic = %crate::logsafe::Peer(d.msg.topic.as_str()), "delivery refused by the ACL");
        }
        allowed
    }

    /// After a reconnect: every unacknowledged message again, PUBLISH with
    /// DUP or PUBREL, in the original order.
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        let pending: Vec<(u16, Delivery, OutState)> = {
            let st = self.session.lock();
            st.inflight().iter().map(|i| (i.packet_id, i.delivery.clone(), i.state)).collect()
        };
        for (id, d, state) in pending {
            match state {
                OutState::Published => {
                    if !self.send_publish(&d, Some(id), true, now) {
                        self.session.lock().complete(id);
                    }
                }
                OutState::Released => {
                    self.send(&Packet::PubRel(PubResp::ok(id)));
                }
            }
        }
    }

    /// Encodes one PUBLISH straight from the shared message into the write
    /// buffer (no per-subscriber `Packet`; on v5 the properties are copied
    /// only when this hop adds some: expiry, subscription identifiers, a
    /// topic alias). Returns false if it could not be sent (too large for
    /// the client), after counting the drop.
    fn send_publish(&mut self, d: &Delivery, packet_id: Option<u16>, dup: bool, now: Instant) -> bool {
        let msg = &d.msg;
        let mut topic = msg.topic.as_str();
        let mut new_alias = None;
        let mut hop: Option<Properties> = None;
        if self.version.is_v5() {
            let mut alias = None;
            if self.client_alias_max > 0 {
                if let Some(a) = self.out_aliases.get(&msg.topic) {
                    alias = Some(*a);
                    topic = "";
                } else if self.out_aliases.len() < usize::from(self.client_alias_max) {
                    let a = self.out_aliases.len() as u16 + 1;
                    new_alias = Some(a);
                    alias = Some(a);
                }
            }
            let expiry = msg.remaining_expiry(now);
            if expiry.is_some() || alias.is_some() || !d.subscription_ids.is_empty() {
                let mut p = msg.properties().clone();
                p.message_expiry_interval = expiry;
                p.subscription_identifiers = d.subscription_ids.clone();
                p.topic_alias = alias;
                hop = Some(p);
            }
        }
        let publish = PublishRef {
            dup: dup && d.qos != QoS::AtMostOnce,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            // Not written on 3.x.
            properties: hop.as_ref().unwrap_or(msg.properties()),
            payload: &msg.payload,
        };
        if publish.encoded_len(self.version) > self.client_max_packet as usize {
            self.broker.metrics.dropped(DropReason::TooLarge);
            self.broker.hooks.message_dropped(msg, DropReason::TooLarge, Some(&self.client.client_id));
            debug!(topic = %crate::logsafe::Peer(msg.topic.as_str()), max = self.client_max_packet, "message larger than the client's maximum packet size; dropped");
            return false;
        }
        let before = self.wbuf.len();
        if let Err(e) = publish.encode(self.version, &mut self.wbuf) {
            debug!(error = %e, topic = %crate::logsafe::Peer(msg.topic.as_str()), "could not encode PUBLISH; dropped");
            return false;
        }
        self.broker.metrics.packet_sent(3, self.wbuf.len() - before);
        if let Some(a) = new_alias {
            // Only once the client will actually see the full topic.
            self.out_aliases.insert(msg.topic.clone(), a);
        }
        self.broker.metrics.message_sent(d.qos);
        self.broker.hooks.message_delivered(&self.client, msg, d.qos);
        true
    }
}
