//! Publishes that do not arrive on an MQTT connection: the management
//! plane's HTTP publish and emqttd's `/mqtt/publish`.
//!
//! Such a message goes through what a client's PUBLISH goes through once
//! its packet is decoded: it is counted as received, the publish hooks see
//! it ([`Publisher::Api`]) and may drop, rewrite or take it, the caller may
//! then ask the ACL about the topic the hooks left (emqttd's form does; an
//! administrator's publish does not), and it is retained and routed. Hence
//! two steps: [`Broker::prepare_publish`] runs the hooks,
//! [`Broker::complete_publish`] routes (or [`Broker::refuse_publish`]
//! counts the refusal). Nothing here runs for a client's PUBLISH: the MQTT
//! path keeps its own code and costs nothing more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::{Broker, Routed};
use crate::codec::reason::ReasonCode;
use crate::codec::{Properties, QoS};
use crate::gate::ClientInfo;
use crate::hooks::{HookPoint, OnMessagePublish, PublishOutcome, PublishedMessage, Publisher};
use crate::message::Message;
use crate::metrics::DropReason;
use crate::topic::TopicName;

/// A message to publish from outside MQTT.
#[derive(Debug, Clone)]
pub struct OutsideMessage {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Only the properties a broker forwards are kept (payload format,
    /// content type, response topic, correlation data, user properties).
    pub properties: Properties,
    /// The v5 Message Expiry Interval.
    pub expiry: Option<Duration>,
}

/// What the publish hooks left.
#[derive(Debug)]
pub enum Prepared {
    /// Go on: authorize [`Ready::message`] if the caller must, then
    /// [`Broker::complete_publish`] or [`Broker::refuse_publish`].
    Ready(Ready),
    /// A hook dropped it (counted), with the code a v5 publisher would get.
    Dropped(ReasonCode),
}

/// A message the hooks let through (rewritten or not).
pub struct Ready {
    msg: Arc<Message>,
    /// The hook that took it (delayed publish), if one did.
    taken: Option<Arc<dyn OnMessagePublish>>,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").field("msg", &self.msg).field("taken", &self.taken.is_some()).finish()
    }
}

impl Ready {
    /// The message as the hooks left it: the topic to authorize.
    pub fn message(&self) -> &Arc<Message> {
        &self.msg
    }
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Routed: where it went ([`Routed::matched`] false: no subscriber
    /// matched, here or on another node).
    Routed(Routed),
    /// A hook took it to publish later.
    Taken,
}

impl Broker {
    /// Counts the message as received and runs the publish hooks, as for a
    /// client's PUBLISH, on behalf of `from`.
    pub fn prepare_publish(&self, from: &ClientInfo, m: OutsideMessage) -> Prepared {
        self.prepare_publish_by(Publisher::Api(from), m)
    }

    /// [`Broker::prepare_publish`] for a message a connected client of
    /// another protocol sent (STOMP's SEND): the hooks see
    /// [`Publisher::Client`], as for a PUBLISH.
    pub fn prepare_client_publish(&self, from: &ClientInfo, m: OutsideMessage) -> Prepared {
        self.prepare_publish_by(Publisher::Client(from), m)
    }

    fn prepare_publish_by(&self, publisher: Publisher<'_>, m: OutsideMessage) -> Prepared {
        let from = publisher.client();
        self.metrics.message_received(m.qos);
        let expires_at = m.expiry.map(|d| Instant::now() + d);
        let forwarded = Message::forwarded_properties(&m.properties).map(|b| *b).unwrap_or_default();
        let message = |topic, payload, qos, retain, properties| {
            Arc::new(Message {
                topic,
                payload,
                qos,
                retain,
                properties: Message::boxed_properties(properties),
                publisher: Some(Arc::clone(&from.client_id)),
                expires_at,
            })
        };
        if !self.hooks.wants(HookPoint::MessagePublish) {
            let msg = message(m.topic, m.payload, m.qos, m.retain, forwarded);
            return Prepared::Ready(Ready { msg, taken: None });
        }
        let mut pm = PublishedMessage::new(m.topic, m.payload, m.qos, m.retain, forwarded);
        let outcome = self.hooks.publish(publisher, &mut pm);
        let (topic, payload, qos, retain, properties) = pm.into_parts();
        let msg = message(topic, payload, qos, retain, properties);
        match outcome {
            PublishOutcome::Route => Prepared::Ready(Ready { msg, taken: None }),
            PublishOutcome::Taken(h) => Prepared::Ready(Ready { msg, taken: Some(h) }),
            PublishOutcome::Dropped(code) => {
                self.metrics.dropped(DropReason::Module);
                self.hooks.message_dropped(&msg, DropReason::Module, None);
                Prepared::Dropped(code)
            }
        }
    }

    /// Retains (if flagged) and routes the message, or hands it to the
    /// hook that took it.
    pub fn complete_publish(&self, ready: Ready) -> Published {
        // Written to the store, if the module stores it, with the next
        // group commit (not awaited here).
        self.complete_publish_stored(ready).0
    }

    /// [`Broker::complete_publish`], with the store commit of a message a
    /// hook took and wrote to the durable store (a delayed publish), for
    /// the caller to await: it fails when the store could not take it (the
    /// hook still holds the message in memory).
    pub fn complete_publish_stored(&self, ready: Ready) -> (Published, Option<crate::durable::Commit>) {
        match ready.taken {
            Some(h) => (Published::Taken, h.take(ready.msg)),
            None => (Published::Routed(self.publish(ready.msg)), None),
        }
    }

    /// The caller's ACL refused the message: counted as denied, as a
    /// client's refused PUBLISH is.
    pub fn refuse_publish(&self, ready: Ready) {
        self.metrics.dropped(DropReason::Denied);
        self.hooks.message_dropped(&ready.msg, DropReason::Denied, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ProtocolVersion;
    use crate::hooks::{HookSetBuilder, Module, PublishFlow};

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: Arc::from("http"),
            username: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: Arc::from("admin"),
            protocol: ProtocolVersion::V5.into(),
            superuser: false,
            context: None,
            conn_id: 0,
            cert: None,
            connected_at: 0,
            keep_alive: 0,
        }
    }

    fn outside(topic: &str) -> OutsideMessage {
        OutsideMessage {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expiry: None,
        }
    }

    struct Rewrite;
    impl OnMessagePublish for Rewrite {
        fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow {
            assert!(matches!(from, Publisher::Api(c) if &*c.client_id == "http"));
            if msg.topic().as_str() == "drop" {
                return PublishFlow::Drop(ReasonCode::QuotaExceeded);
            }
            msg.set_topic(TopicName::new("rewritten").unwrap());
            PublishFlow::Continue
        }
    }
    struct RewriteModule;
    impl Module for RewriteModule {
        fn name(&self) -> &str {
            "rewrite"
        }
        fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
            hooks.on_message_publish(Arc::new(Rewrite));
        }
    }

    #[test]
    fn publish_hooks_see_and_rewrite_an_outside_message() {
        let broker = Broker::new(Default::default());
        let mut set = HookSetBuilder::new();
        set.module(Arc::new(RewriteModule));
        broker.hooks.install(set.build());
        let Prepared::Ready(ready) = broker.prepare_publish(&client(), outside("a/b")) else { panic!("dropped") };
        assert_eq!(ready.message().topic.as_str(), "rewritten");
        assert_eq!(broker.complete_publish(ready), Published::Routed(Routed::default()));
        assert!(broker.retained.get("rewritten").is_some(), "retained under the rewritten topic");
        assert!(matches!(
            broker.prepare_publish(&client(), outside("drop")),
            Prepared::Dropped(ReasonCode::QuotaExceeded)
        ));
        assert_eq!(broker.metrics.dropped_count(DropReason::Module), 1);
    }
}
