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
    pub properties: Properties,
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

    /// Keeps only the properties a broker forwards with a message.
    pub fn forwarded_properties(p: &Properties) -> Properties {
        Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            ..Properties::default()
        }
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
}

impl Delivery {
    /// Approximate bytes this delivery holds in a queue (for byte bounds).
    pub fn weight(&self) -> usize {
        self.msg.payload.len() + self.msg.topic.as_str().len()
    }
}
