//! An application message as it travels through the broker.
//!
//! A [`Message`] is built once per PUBLISH (or will, or `$SYS` update) and
//! shared by `Arc` with every subscriber; only the small per-subscriber
//! [`Delivery`] (granted QoS, retain flag, subscription ids) is copied.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::{Properties, QoS};
use crate::topic::TopicName;

#[derive(Debug)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Properties forwarded to subscribers unchanged: payload format,
    /// content type, response topic, correlation data, user properties.
    /// Message expiry is carried by `expires_at`; topic alias and
    /// subscription identifiers are per hop and never stored here.
    /// `None` when there are none (most messages): boxed, because inline
    /// they made every message 432 bytes, and a broker holds many (see
    /// [`Message::properties`]).
    pub properties: Option<Box<Properties>>,
    /// Client id of the publisher (for no-local); `None` for the broker.
    pub publisher: Option<Arc<str>>,
    /// Deadline from the v5 Message Expiry Interval.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// True if the message expired before `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|d| d <= now)
    }

    /// Remaining expiry interval in whole seconds (rounded up), if any.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|d| {
            let left = d.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// The forwarded properties (empty ones when there are none).
    pub fn properties(&self) -> &Properties {
        static NONE: std::sync::LazyLock<Properties> = std::sync::LazyLock::new(Properties::default);
        self.properties.as_deref().unwrap_or(&NONE)
    }

    /// Keeps only the properties a broker forwards with a message; `None`
    /// when none of them is set.
    pub fn forwarded_properties(p: &Properties) -> Option<Box<Properties>> {
        Message::boxed_properties(Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            ..Properties::default()
        })
    }

    /// What the message costs where it is held (a queue, the retained
    /// store): topic and payload bytes plus the encoded size of its
    /// properties, so that many small user properties weigh what they are.
    pub fn weight(&self) -> usize {
        let props = self
            .properties
            .as_deref()
            .map_or(0, |p| crate::codec::properties::encoded_len(p, crate::codec::PropCtx::Publish));
        self.payload.len() + self.topic.as_str().len() + props
    }

    /// `p` boxed, or `None` when it holds nothing.
    pub fn boxed_properties(p: Properties) -> Option<Box<Properties>> {
        (p != Properties::default()).then(|| Box::new(p))
    }
}

/// One message bound for one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// min(message QoS, granted QoS).
    pub qos: QoS,
    /// Retain flag as sent to this subscriber.
    pub retain: bool,
    /// v5 subscription identifiers of every matching subscription.
    pub subscription_ids: Vec<u32>,
    /// Check against the ACL before sending (the subscriptions it came
    /// through are marked: [`crate::session::SubRecord::check`]).
    pub check: bool,
    /// What the session's queue counted for it ([`Delivery::weight`], set
    /// when queued): taken back when it leaves the queue without touching
    /// the message again under the session lock (it sits in padding).
    pub(crate) queued_weight: u32,
}

impl Delivery {
    /// A delivery of `msg` at `qos` (what a queue counts for it is set
    /// when it is queued): for code outside the core that hands a session
    /// a message, as the auto-subscribe module does with retained ones.
    pub fn new(msg: Arc<Message>, qos: QoS, retain: bool, subscription_ids: Vec<u32>, check: bool) -> Delivery {
        Delivery { msg, qos, retain, subscription_ids, check, queued_weight: 0 }
    }

    /// Bytes this delivery holds in a queue (for byte bounds): its
    /// message's [`Message::weight`].
    pub fn weight(&self) -> usize {
        self.msg.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker holds one of these per message in flight or queued; keep
    /// it small (inline properties made it 432 B).
    #[test]
    fn message_stays_small() {
        let size = std::mem::size_of::<Message>();
        eprintln!("Message: {size} bytes");
        assert!(size <= 104, "Message is {size} bytes");
    }

    /// One per queued or inflight message per subscriber, and one per
    /// subscription in the router: the ACL delivery mark lives in padding.
    #[test]
    fn delivery_and_subscriber_stay_small() {
        let delivery = std::mem::size_of::<Delivery>();
        let subscriber = std::mem::size_of::<crate::router::Subscriber<Arc<crate::session::Session>>>();
        assert!(delivery <= 40, "Delivery is {delivery} bytes");
        assert!(subscriber <= 40, "Subscriber is {subscriber} bytes");
    }

    #[test]
    fn forwarded_properties_are_boxed_only_when_set() {
        let none = Properties { topic_alias: Some(3), message_expiry_interval: Some(9), ..Properties::default() };
        assert!(Message::forwarded_properties(&none).is_none(), "per-hop properties are not forwarded");
        let some =
            Properties { content_type: Some("text/plain".into()), topic_alias: Some(3), ..Properties::default() };
        let kept = Message::forwarded_properties(&some).expect("content type is forwarded");
        assert_eq!((kept.content_type.as_deref(), kept.topic_alias), (Some("text/plain"), None));
    }
}
