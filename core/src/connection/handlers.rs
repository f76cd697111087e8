//! One method per packet a connected client may send.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tracing::{debug, error, warn};

use super::{Close, Conn, DisconnectReason, Violation};
use crate::codec::reason::{v3, v5};
use crate::codec::{
    Packet, Properties, PubResp, Publish, QoS, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::durable::{Commit, StoreError};
use crate::gate::{Access, AclOutcome, PublishMemo};
use crate::hooks::{HookPoint, PublishOutcome, PublishedMessage, Publisher};
use crate::logsafe::Peer;
use crate::message::{Delivery, Message};
use crate::metrics::DropReason;
use crate::subscription::Refused;
use crate::topic::TopicName;

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    pub(super) async fn handle(&mut self, p: Packet) -> Result<(), Close> {
        match p {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::PubAck(r) => {
                self.acknowledged(r.packet_id);
                self.pump().await;
                Ok(())
            }
            Packet::PubRec(r) => {
                self.on_pubrec(r).await;
                Ok(())
            }
            Packet::PubRel(r) => {
                let found = self.session.lock().release(r.packet_id);
                let reason = if found { 0 } else { v5::PACKET_IDENTIFIER_NOT_FOUND };
                self.send(&Packet::PubComp(PubResp {
                    packet_id: r.packet_id,
                    reason,
                    properties: Properties::default(),
                }));
                Ok(())
            }
            Packet::PubComp(r) => {
                self.acknowledged(r.packet_id);
                self.pump().await;
                Ok(())
            }
            // Boxed: SUBSCRIBE is rare, and its future (ACL checks, the
            // retained messages to send) would otherwise set the size of
            // the future boxed for every read burst (`Conn::process`).
            Packet::Subscribe(s) => Box::pin(self.on_subscribe(s)).await,
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.connect_expiry == 0 && e != 0 {
                        return Err(Close::protocol(Violation::SessionExpiryAfterZero));
                    }
                }
                let with_will = d.reason != v5::SUCCESS;
                Err(Close {
                    reason: DisconnectReason::ClientDisconnect { with_will },
                    will: with_will,
                    expiry: d.properties.session_expiry_interval,
                })
            }
            Packet::Connect(_) => Err(Close::protocol(Violation::SecondConnect)),
            Packet::Auth(a) => self.on_auth(a).await,
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Close::protocol(Violation::ServerOnlyPacket))
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the delivery leaves the window.
    fn acknowledged(&mut self, packet_id: u16) {
        let done = self.session.lock().complete(packet_id);
        if let Some(i) = done {
            self.broker.hooks.message_acked(&self.client, &i.delivery.msg);
        }
    }

    async fn on_pubrec(&mut self, r: PubResp) {
        if r.reason >= 0x80 {
            // The receiver refused it: the exchange ends here.
            self.session.lock().complete(r.packet_id);
            self.pump().await;
            return;
        }
        let known = self.session.lock().received(r.packet_id);
        let reason = if known { 0 } else { v5::PACKET_IDENTIFIER_NOT_FOUND };
        self.send(&Packet::PubRel(PubResp { packet_id: r.packet_id, reason, properties: Properties::default() }));
    }

    /// Acknowledges an incoming PUBLISH (v5 reason codes; 0 on 3.x), after
    /// those still waiting for the store.
    fn ack(&mut self, qos: QoS, packet_id: Option<u16>, reason: u8) {
        self.ack_after(qos, packet_id, reason, Vec::new());
    }

    /// Acknowledges an incoming PUBLISH once `commits` completed (strict
    /// mode) and every earlier acknowledgement went.
    fn ack_after(&mut self, qos: QoS, packet_id: Option<u16>, reason: u8, commits: Vec<Commit>) {
        let Some(packet_id) = packet_id else { return };
        if qos == QoS::AtMostOnce {
            return;
        }
        let mut wait = crate::durable::all(commits);
        let mut failed = None;
        if let Some(w) = wait.as_mut() {
            if let Some(r) = super::acks::ready_now(w) {
                wait = None;
                failed = r.err();
            }
        }
        let queued = self.pending_acks.as_ref().is_some_and(|p| !p.is_empty());
        if wait.is_none() && failed.is_none() && !queued {
            self.send_ack(qos, packet_id, reason);
            return;
        }
        // Behind others, waiting for its commit, or failed (handled, in
        // order, by `send_ready_acks` at the connection's next turn).
        let wait = wait.or_else(|| failed.map(|e| -> Commit { Box::pin(std::future::ready(Err(e))) }));
        self.pending_acks.get_or_insert_with(Default::default).push(wait, qos, packet_id, reason);
    }

    /// A commit failed: v5 hears 0x97 and the QoS 2 exchange ends; on 3.x
    /// returns true (the connection must close, unacknowledged).
    fn store_failed(&mut self, qos: QoS, packet_id: u16, e: &StoreError) -> bool {
        if let Some(suppressed) = self.broker.store_failure_log.allow() {
            error!(client_id = %Peer(&self.client.client_id), error = %e, suppressed, "PUBLISH to a persistent session refused: the durable store failed (v5: PUBACK/PUBREC 0x97; 3.x: connection closed)");
        }
        if !self.version.is_v5() {
            return true;
        }
        if qos == QoS::ExactlyOnce {
            self.session.lock().release(packet_id);
        }
        self.send_ack(qos, packet_id, v5::QUOTA_EXCEEDED);
        false
    }

    /// Sends every acknowledgement whose commit completed, in order.
    pub(super) fn send_ready_acks(&mut self) -> Result<(), Close> {
        while let Some((a, r)) = self.pending_acks.as_mut().and_then(|p| p.pop_ready()) {
            match r {
                Ok(()) => self.send_ack(a.qos, a.packet_id, a.reason),
                Err(e) => {
                    if self.store_failed(a.qos, a.packet_id, &e) {
                        return Err(Close::new(DisconnectReason::StoreFailed));
                    }
                }
            }
        }
        if self.pending_acks.as_ref().is_some_and(|p| p.is_empty()) {
            self.pending_acks = None;
        }
        Ok(())
    }

    fn send_ack(&mut self, qos: QoS, packet_id: u16, reason: u8) {
        let reason = if self.version.is_v5() { reason } else { 0 };
        let r = PubResp { packet_id, reason, properties: Properties::default() };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(r)),
            QoS::ExactlyOnce => self.send(&Packet::PubRec(r)),
        }
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        let metrics = &self.broker.metrics;
        metrics.message_received(p.qos);

        // Topic alias (v5).
        let topic = match p.properties.topic_alias {
            Some(a) if a == 0 || a > self.broker.settings.limits.max_topic_alias => {
                return Err(Close::protocol(Violation::TopicAliasOutOfRange));
            }
            Some(a) if p.topic.is_empty() => match self.in_aliases.get(&a) {
                Some(t) => t.clone(),
                None => return Err(Close::protocol(Violation::UnknownTopicAlias)),
            },
            Some(a) => {
                let t = TopicName::new(&p.topic).map_err(|_| Close::protocol(Violation::InvalidTopic))?;
                self.in_aliases.insert(a, t.clone());
                t
            }
            None => TopicName::new(&p.topic).map_err(|_| Close::protocol(Violation::InvalidTopic))?,
        };

        if topic.has_more_levels_than(self.broker.settings.limits.max_topic_levels) {
            // Acknowledged (v5: 0x97) and dropped, as a denied publish is.
            self.broker.metrics.dropped(DropReason::Denied);
            debug!("publish refused: limits.max_topic_levels");
            self.ack(p.qos, p.packet_id, v5::QUOTA_EXCEEDED);
            return Ok(());
        }

        if p.retain && !self.broker.retained.enabled() {
            return Err(Close::protocol(Violation::RetainNotAvailable));
        }

        // QoS 2 duplicate: acknowledge again, deliver nothing.
        if p.qos == QoS::ExactlyOnce {
            let id = p.packet_id.unwrap_or(0);
            let mut st = self.session.lock();
            if st.awaiting_rel().contains_key(&id) {
                drop(st);
                self.ack(p.qos, p.packet_id, 0);
                return Ok(());
            }
            let now = std::time::Instant::now();
            st.expire_awaiting_rel(now, self.broker.settings.session.await_rel_timeout);
            if st.awaiting_rel().len() >= usize::from(self.broker.settings.session.max_awaiting_rel) {
                drop(st);
                if self.version.is_v5() {
                    return Err(Close::protocol(Violation::ReceiveMaximumExceeded));
                }
                metrics.dropped(DropReason::AwaitRelFull);
                warn!(
                    client_id = %Peer(&self.client.client_id),
                    packet_id = id,
                    "too many QoS 2 messages awaiting PUBREL; message dropped"
                );
                return Ok(());
            }
            st.await_rel(id, now);
        }

        // Publish hooks (a module may rewrite, drop or take the message):
        // an editable copy only when one is registered.
        let expires_at =
            p.properties.message_expiry_interval.map(|s| std::time::Instant::now() + Duration::from_secs(u64::from(s)));
        let (topic, payload, retain, properties, taken) = if self.broker.hooks.wants(HookPoint::MessagePublish) {
            let forwarded = Message::forwarded_properties(&p.properties).map(|b| *b).unwrap_or_default();
            let mut pm = PublishedMessage::new(topic, p.payload, p.qos, p.retain, forwarded);
            let outcome = self.broker.hooks.publish(Publisher::Client(&self.client), &mut pm);
            let (topic, payload, _, retain, properties) = pm.into_parts();
            match outcome {
                PublishOutcome::Route => (topic, payload, retain, Message::boxed_properties(properties), None),
                PublishOutcome::Taken(h) => (topic, payload, retain, Message::boxed_properties(properties), Some(h)),
                PublishOutcome::Dropped(code) => {
                    self.broker.metrics.dropped(DropReason::Module);
                    debug!(topic = %Peer(topic.as_str()), code = ?code, "publish dropped by a module");
                    if self.broker.hooks.wants(HookPoint::MessageDropped) {
                        let msg = self.message(
                            topic,
                            payload,
                            p.qos,
                            retain,
                            Message::boxed_properties(properties),
                            expires_at,
                        );
                        self.broker.hooks.message_dropped(&msg, DropReason::Module, None);
                    }
                    if p.qos == QoS::ExactlyOnce && self.version.is_v5() && code.is_error() {
                        self.session.lock().release(p.packet_id.unwrap_or(0));
                    }
                    self.ack(p.qos, p.packet_id, code.code());
                    return Ok(());
                }
            }
        } else {
            (topic, p.payload, p.retain, Message::forwarded_properties(&p.properties), None)
        };

        // Only the broker publishes under $SYS.
        let allowed = if topic.as_str().starts_with("$SYS/") || topic.as_str() == "$SYS" {
            AclOutcome::Deny
        } else {
            let access = Access::Publish { topic: &topic, qos: p.qos, retain };
            self.authorize_publish(access).await
        };
        match allowed {
            AclOutcome::Allow => {}
            AclOutcome::Deny | AclOutcome::DenyDisconnect => {
                self.broker.metrics.dropped(DropReason::Denied);
                debug!(topic = %Peer(topic.as_str()), "publish denied");
                if self.broker.hooks.wants(HookPoint::MessageDropped) {
                    let msg = self.message(topic, payload, p.qos, retain, properties, expires_at);
                    self.broker.hooks.message_dropped(&msg, DropReason::Denied, None);
                }
                if allowed == AclOutcome::DenyDisconnect {
                    return Err(Close::new(DisconnectReason::NotAuthorized));
                }
                if p.qos == QoS::ExactlyOnce && self.version.is_v5() {
                    // A PUBREC >= 0x80 ends the exchange: no PUBREL follows.
                    self.session.lock().release(p.packet_id.unwrap_or(0));
                }
                self.ack(p.qos, p.packet_id, self.gate.v5_deny_reason());
                return Ok(());
            }
        }

        let msg = self.message(topic, payload, p.qos, retain, properties, expires_at);
        if let Some(h) = taken {
            // The module publishes it later (delayed publish): accepted,
            // once it is on disk if the module stores it.
            let commits = h.take(msg).into_iter().collect();
            self.ack_after(p.qos, p.packet_id, 0, commits);
            return Ok(());
        }
        let mut congested = Vec::new();
        let mut commits = Vec::new();
        let routed = self.broker.publish_from(msg, Some(&mut congested), Some(&mut commits));
        // "No matching subscribers" only when no other node has one either.
        let reason = if routed.matched() { 0 } else { v5::NO_MATCHING_SUBSCRIBERS };
        self.ack_after(p.qos, p.packet_id, reason, commits);
        if !congested.is_empty() {
            // Back-pressure: a subscriber this publisher feeds is behind;
            // nothing more is read from this connection until it catches
            // up, or for `session.stall_timeout` at most. (Boxed: rare, and
            // its timer would otherwise sit in every read's future.)
            Box::pin(self.broker.wait_drained(congested)).await;
        }
        if routed.remote_congested {
            // The same for the other nodes: the cluster's outbound queue is
            // above its high-water mark (see `crate::remote`).
            Box::pin(self.broker.wait_remote_drained()).await;
        }
        Ok(())
    }

    /// A message this client published.
    fn message(
        &self,
        topic: TopicName,
        payload: bytes::Bytes,
        qos: QoS,
        retain: bool,
        properties: Option<Box<Properties>>,
        expires_at: Option<std::time::Instant>,
    ) -> Arc<Message> {
        Arc::new(Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            publisher: Some(self.client.client_id.clone()),
            expires_at,
        })
    }

    /// The gate's decision on a publish, or the connection's remembered
    /// allow for the same topic, QoS and retain flag while the gate lets
    /// it be reused ([`crate::gate::Gate::publish_allow_reuse`]).
    async fn authorize_publish(&mut self, access: Access<'_>) -> AclOutcome {
        let now = std::time::Instant::now();
        let epoch = self.gate.acl_epoch();
        if self.publish_memo.as_ref().is_some_and(|m| m.permits(&access, epoch, now)) {
            return AclOutcome::Allow;
        }
        let outcome = self.gate.authorize(&self.client, access).await;
        if let (AclOutcome::Allow, Some(reuse), Access::Publish { topic, qos, retain }) =
            (outcome, self.gate.publish_allow_reuse(), access)
        {
            let memo = PublishMemo { topic: topic.clone(), qos, retain, epoch, until: now + reuse };
            match &mut self.publish_memo {
                Some(m) => **m = memo,
                None => self.publish_memo = Some(Box::new(memo)),
            }
        }
        outcome
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained_for = Vec::new();
        // What this SUBSCRIBE granted (index into `codes`, the filter as
        // stored, whether it is new): refused again if the store fails.
        let mut granted: Vec<(usize, String, bool)> = Vec::new();
        for (raw, opts) in s.filters {
            let mut opts = opts;
            if self.bridge {
                opts.no_local = true;
                opts.retain_as_published = true;
            }
            let v5 = self.version.is_v5();
            let checked = crate::subscription::check(&self.broker, &*self.gate, &self.session, &self.client, raw, opts);
            let c = match checked.await {
                Ok(c) => c,
                Err(r) => {
                    codes.push(match r {
                        Refused::DenyDisconnect => return Err(Close::new(DisconnectReason::NotAuthorized)),
                        _ if !v5 => v3::SUBACK_FAILURE,
                        Refused::Hook(code) => code.code(),
                        Refused::InvalidFilter => v5::TOPIC_FILTER_INVALID,
                        Refused::Limit(_) => v5::QUOTA_EXCEEDED,
                        Refused::Denied => self.gate.v5_deny_reason(),
                    });
                    continue;
                }
            };
            let is_new = c.commit(&self.broker, &self.session, sub_id);
            let (raw, opts, filter, check) = (&c.raw, &c.options, c.filter.clone(), c.check);
            let shared = filter.is_shared();
            granted.push((codes.len(), raw.clone(), is_new));
            codes.push(opts.qos as u8);
            let send_retained = !shared
                && match opts.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => is_new,
                    RetainHandling::Never => false,
                };
            if send_retained {
                retained_for.push((filter, *opts, check));
            }
        }
        // A persistent session's SUBACK says the subscriptions are on disk
        // (strict mode: one group commit; SUBSCRIBE is rare).
        // When the commit fails, what it held is not on disk: refused (v5
        // 0x97, 3.x 0x80), and a new subscription leaves the router again,
        // so that the client is not told of, nor served by, a subscription
        // a restart would lose. A re-subscription (new options for a
        // filter already held) stays: in memory with the new options, on
        // disk with the old ones.
        if let Some(barrier) = self.broker.durable_barrier(&self.session) {
            if let Err(e) = barrier.await {
                warn!(client_id = %Peer(&self.client.client_id), error = %e, filters = granted.len(), "SUBSCRIBE refused: the durable store failed (v5: SUBACK 0x97; 3.x: 0x80)");
                for (i, raw, is_new) in granted.drain(..) {
                    codes[i] = if self.version.is_v5() { v5::QUOTA_EXCEEDED } else { v3::SUBACK_FAILURE };
                    if is_new {
                        self.broker.unsubscribe(&self.session, &raw);
                    }
                }
                retained_for.clear();
            }
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            return_codes: codes,
            properties: Properties::default(),
        }));

        let now = std::time::Instant::now();
        for (filter, opts, check) in retained_for {
            for msg in self.broker.retained.matching(&filter.filter, now) {
                let d = Delivery {
                    qos: msg.qos.min(opts.qos),
                    msg,
                    retain: true,
                    subscription_ids: sub_id.into_iter().collect(),
                    check,
                    queued_weight: 0,
                };
                self.session.enqueue(d, &self.broker.settings.session, &self.broker.metrics);
            }
        }
        self.pump().await;
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut codes = Vec::with_capacity(u.filters.len());
        for raw in u.filters {
            codes.push(match crate::subscription::unsubscribe(&self.broker, &self.session, &self.client, raw) {
                Err(code) => code.code(),
                Ok((_, true)) => 0,
                Ok((_, false)) => v5::NO_SUBSCRIPTION_EXISTED,
            });
        }
        if !self.version.is_v5() {
            codes.clear();
        }
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: codes,
            properties: Properties::default(),
        }));
    }
}
