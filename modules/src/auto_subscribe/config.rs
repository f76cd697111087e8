//! `[modules.auto_subscribe]` and its checks.

use portcullis_core::codec::{QoS, RetainHandling, SubscriptionOptions};
use portcullis_core::topic::SubscriptionFilter;
use serde::Deserialize;

use crate::template::Template;

/// `[modules.auto_subscribe]`: subscriptions every client gets on connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSubscribeConfig {
    /// Subscribe clients on connect.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The templates, in order (a later one with the same resulting
    /// filter replaces an earlier one's options).
    #[serde(default = "default_topics")]
    pub topics: Vec<TopicTemplate>,
    /// Connects whose subscriptions are still being checked against the
    /// ACL, at most; a connect beyond gets none (counted, logged). Bounds
    /// what a connect storm against a slow ACL backend can pile up.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

/// One entry of `topics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicTemplate {
    /// The filter, with `${clientid}` / `${username}` anywhere in it.
    pub topic: String,
    /// Requested QoS, 0..=2 (the ACL may refuse; it never lowers).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// MQTT 5 No Local: the client's own messages are not sent back.
    #[serde(default = "default_no_local")]
    pub no_local: bool,
    /// MQTT 5 Retain As Published: keep the retain flag of forwarded
    /// messages.
    #[serde(default = "default_retain_as_published")]
    pub retain_as_published: bool,
    /// MQTT 5 Retain Handling: 0 = send retained messages on every
    /// connect, 1 = only when the subscription is new (not when a
    /// resumed session already had it), 2 = never.
    #[serde(default = "default_retain_handling")]
    pub retain_handling: u8,
}

pub fn default_enabled() -> bool {
    false
}

pub fn default_topics() -> Vec<TopicTemplate> {
    Vec::new()
}

pub fn default_max_pending() -> usize {
    10_000
}

pub fn default_qos() -> u8 {
    0
}

pub fn default_no_local() -> bool {
    false
}

pub fn default_retain_as_published() -> bool {
    false
}

pub fn default_retain_handling() -> u8 {
    0
}

impl Default for AutoSubscribeConfig {
    fn default() -> Self {
        AutoSubscribeConfig { enabled: default_enabled(), topics: default_topics(), max_pending: default_max_pending() }
    }
}

impl TopicTemplate {
    /// The subscription options it asks for (`None` when a number is out
    /// of range; [`AutoSubscribeConfig::validate`] says which).
    pub fn options(&self) -> Option<SubscriptionOptions> {
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return None,
        };
        let retain_handling = match self.retain_handling {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return None,
        };
        Some(SubscriptionOptions {
            qos,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling,
        })
    }
}

impl AutoSubscribeConfig {
    /// `(key under modules., problem)` for each problem. A template must
    /// parse, and give a valid subscription filter once its placeholders
    /// hold sample values.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let key = |i: usize, field: &str| format!("auto_subscribe.topics[{i}].{field}");
        if self.max_pending == 0 {
            out.push(("auto_subscribe.max_pending".to_string(), "must be at least 1".to_string()));
        }
        for (i, t) in self.topics.iter().enumerate() {
            match Template::parse(&t.topic, false) {
                Err(e) => out.push((key(i, "topic"), format!("{:?}: {e}", t.topic))),
                Ok(tpl) => {
                    let sample = tpl.sample();
                    if let Err(e) = SubscriptionFilter::parse(&sample) {
                        out.push((key(i, "topic"), format!("{:?} is not a valid topic filter ({e})", t.topic)));
                    }
                }
            }
            if t.qos > 2 {
                out.push((key(i, "qos"), format!("must be 0, 1 or 2, got {}", t.qos)));
            }
            if t.retain_handling > 2 {
                out.push((key(i, "retain_handling"), format!("must be 0, 1 or 2, got {}", t.retain_handling)));
            }
            if self.topics[..i].iter().any(|o| o.topic == t.topic) {
                out.push((key(i, "topic"), format!("{:?} is listed twice", t.topic)));
            }
        }
        out
    }
}
