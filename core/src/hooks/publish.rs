//! Message publish: may drop the message, rewrite its topic, payload and
//! properties, or take it (to publish it later, as the delayed-publish
//! module does).
//!
//! The hooks run before the ACL check, so a rewritten topic is the one the
//! ACL judges (and a taken message is handed over only once the ACL has
//! allowed its topic).

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::reason::ReasonCode;
use crate::codec::{Properties, QoS};
use crate::gate::ClientInfo;
use crate::message::Message;
use crate::topic::TopicName;

/// Who published.
#[derive(Debug, Clone, Copy)]
pub enum Publisher<'a> {
    /// A client's PUBLISH.
    Client(&'a ClientInfo),
    /// A client's will, published as its connection ended.
    Will(&'a ClientInfo),
    /// A message published through the management plane (HTTP publish),
    /// on behalf of this client id (no connection behind it).
    Api(&'a ClientInfo),
}

impl<'a> Publisher<'a> {
    /// The client, whoever published.
    pub fn client(&self) -> &'a ClientInfo {
        match self {
            Publisher::Client(c) | Publisher::Will(c) | Publisher::Api(c) => c,
        }
    }
}

/// A message as publish hooks may edit it.
#[derive(Debug, Clone)]
pub struct PublishedMessage {
    topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The properties forwarded with the message (payload format, content
    /// type, response topic, correlation data, user properties).
    pub properties: Properties,
    rewritten: bool,
}

impl PublishedMessage {
    pub fn new(topic: TopicName, payload: Bytes, qos: QoS, retain: bool, properties: Properties) -> PublishedMessage {
        PublishedMessage { topic, payload, qos, retain, properties, rewritten: false }
    }

    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// Replaces the topic: the ACL then judges the new one.
    pub fn set_topic(&mut self, topic: TopicName) {
        self.rewritten |= topic != self.topic;
        self.topic = topic;
    }

    /// Whether a hook changed the topic.
    pub fn topic_rewritten(&self) -> bool {
        self.rewritten
    }

    pub fn into_parts(self) -> (TopicName, Bytes, QoS, bool, Properties) {
        (self.topic, self.payload, self.qos, self.retain, self.properties)
    }
}

/// What a publish hook says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFlow {
    /// Go on with the next hook.
    Continue,
    /// Publish the message as it stands; later hooks are not run.
    Stop,
    /// Drop it: the publisher's v5 PUBACK/PUBREC carries this code (3.x:
    /// acknowledged as usual); later hooks are not run.
    Drop(ReasonCode),
    /// This hook takes the message: once the ACL allows its topic the
    /// broker hands it to [`OnMessagePublish::take`] instead of routing it.
    Take,
}

/// The result of the publish hooks.
#[derive(Clone)]
pub enum PublishOutcome {
    /// Route it (rewritten or not).
    Route,
    /// Dropped by a hook.
    Dropped(ReasonCode),
    /// Taken by this hook (call [`OnMessagePublish::take`] once allowed).
    Taken(Arc<dyn OnMessagePublish>),
}

impl std::fmt::Debug for PublishOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishOutcome::Route => f.write_str("Route"),
            PublishOutcome::Dropped(c) => f.debug_tuple("Dropped").field(c).finish(),
            PublishOutcome::Taken(_) => f.write_str("Taken"),
        }
    }
}

/// Runs for each message published by a client (and each will, and each
/// HTTP publish), in registration order.
pub trait OnMessagePublish: Send + Sync + 'static {
    fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow;

    /// Receives a message this hook took ([`PublishFlow::Take`]) once the
    /// ACL allowed it. The default drops it. A hook that writes the
    /// message to the durable store returns the commit: a client's PUBLISH
    /// is acknowledged once it completed (strict mode), and refused (v5
    /// 0x97) when it failed.
    fn take(&self, _msg: Arc<Message>) -> Option<crate::durable::Commit> {
        None
    }
}
