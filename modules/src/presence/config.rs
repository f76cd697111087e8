//! `[modules.presence]`.

use serde::Deserialize;

/// `[modules.presence]`: presence events, on by default as in emqttd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Publish `$SYS/brokers/<node>/clients/<id>/connected` and
    /// `…/disconnected`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// QoS of the events (0 or 1; a subscriber's granted QoS caps it).
    #[serde(default = "default_qos")]
    pub qos: u8,
}

pub fn default_enabled() -> bool {
    true
}

pub fn default_qos() -> u8 {
    0
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig { enabled: default_enabled(), qos: default_qos() }
    }
}
