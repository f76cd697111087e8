//! `[modules.delayed]`.

use std::time::Duration;

use portcullis_core::units;
use serde::Deserialize;

/// The longest `max_delay` accepted: EMQX's limit (4 294 967 s, about
/// 49.7 days, the largest number of milliseconds in a `u32`). Clients
/// written for EMQX work unchanged, and a deadline stays far inside
/// tokio's timer range.
pub const MAX_DELAY_CEILING: Duration = Duration::from_secs(4_294_967);

/// `[modules.delayed]`: `$delayed/<seconds>/<topic>` publishes (EMQX,
/// rmqtt), held by the broker and published at their deadline. Off by
/// default: it lets clients make the broker hold messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayedConfig {
    /// Recognise `$delayed/<seconds>/<topic>`. Off, such a topic is an
    /// ordinary topic name.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Most messages held at once (every publisher together); beyond it a
    /// delayed publish is refused (v5: 0x97 quota exceeded).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Most bytes held at once, counted as the session queues and the
    /// retained store count them (topic + payload + properties); beyond it
    /// a delayed publish is refused (v5: 0x97).
    #[serde(default = "default_max_bytes", deserialize_with = "units::size")]
    pub max_bytes: u64,
    /// Longest delay a client may ask for, at most [`MAX_DELAY_CEILING`];
    /// a longer one is refused (v5: 0x97).
    #[serde(default = "default_max_delay", deserialize_with = "units::duration")]
    pub max_delay: Duration,
}

pub fn default_enabled() -> bool {
    false
}

pub fn default_max_messages() -> usize {
    10_000
}

pub fn default_max_bytes() -> u64 {
    64 << 20
}

pub fn default_max_delay() -> Duration {
    MAX_DELAY_CEILING
}

impl Default for DelayedConfig {
    fn default() -> Self {
        DelayedConfig {
            enabled: default_enabled(),
            max_messages: default_max_messages(),
            max_bytes: default_max_bytes(),
            max_delay: default_max_delay(),
        }
    }
}

impl DelayedConfig {
    /// `(key under modules.delayed., problem)` for each problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut fail = |key: &str, msg: String| out.push((format!("delayed.{key}"), msg));
        if self.max_messages == 0 {
            fail("max_messages", "must be at least 1 (to refuse every delayed publish, set enabled = false)".into());
        }
        if self.max_bytes == 0 {
            fail("max_bytes", "must be at least 1 byte".into());
        }
        if self.max_delay < Duration::from_secs(1) {
            fail("max_delay", format!("must be at least 1s, got {:?}", self.max_delay));
        }
        if self.max_delay > MAX_DELAY_CEILING {
            fail(
                "max_delay",
                format!("must be at most 4294967s (about 49.7 days, EMQX's limit), got {}s", self.max_delay.as_secs()),
            );
        }
        out
    }
}
