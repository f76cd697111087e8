//! `stomp = { … }` of a `stomp` / `stomp_tls` listener.

use std::time::Duration;

use portcullis_core::codec::QoS;
use portcullis_core::units;
use serde::Deserialize;

/// A STOMP listener's own settings; the rest (bind, limits, chains, TLS)
/// are the listener's, as for MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StompConfig {
    /// Prefix put before every destination (`"stomp/"`: SEND to `a/b`
    /// publishes `stomp/a/b`), and taken off the topics of MESSAGE frames.
    /// Empty: none.
    #[serde(default = "default_mountpoint")]
    pub mountpoint: String,
    /// QoS of the MQTT message a SEND publishes (0, 1 or 2).
    #[serde(default = "default_qos")]
    pub send_qos: u8,
    /// QoS of the MQTT subscription a SUBSCRIBE makes (0, 1 or 2): with 1
    /// or 2 the session queues and redelivers like an MQTT session's.
    #[serde(default = "default_qos")]
    pub subscribe_qos: u8,
    /// Bytes of a frame's command and headers together.
    #[serde(default = "default_max_header_bytes", deserialize_with = "units::size")]
    pub max_header_bytes: u64,
    /// Header lines in a frame.
    #[serde(default = "default_max_headers")]
    pub max_headers: u32,
    /// Shortest heart-beat interval the broker sends at (what it offers in
    /// CONNECTED); `"off"`: it sends none.
    #[serde(default = "default_heartbeat", deserialize_with = "units::duration_or_off")]
    pub heartbeat_send: Option<Duration>,
    /// Shortest interval the broker accepts the client's heart-beats at;
    /// `"off"`: it asks for none. A client silent for twice the negotiated
    /// interval is disconnected.
    #[serde(default = "default_heartbeat", deserialize_with = "units::duration_or_off")]
    pub heartbeat_receive: Option<Duration>,
    /// Transactions open at once per connection.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: u32,
    /// Frames (SEND, ACK, NACK) one transaction may hold.
    #[serde(default = "default_max_transaction_frames")]
    pub max_transaction_frames: u32,
    /// Body bytes one transaction may hold.
    #[serde(default = "default_max_transaction_bytes", deserialize_with = "units::size")]
    pub max_transaction_bytes: u64,
    /// A transaction still open this long after BEGIN is aborted and the
    /// connection closed with an ERROR.
    #[serde(default = "default_transaction_timeout", deserialize_with = "units::duration")]
    pub transaction_timeout: Duration,
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            mountpoint: default_mountpoint(),
            send_qos: default_qos(),
            subscribe_qos: default_qos(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            heartbeat_send: default_heartbeat(),
            heartbeat_receive: default_heartbeat(),
            max_transactions: default_max_transactions(),
            max_transaction_frames: default_max_transaction_frames(),
            max_transaction_bytes: default_max_transaction_bytes(),
            transaction_timeout: default_transaction_timeout(),
        }
    }
}

impl StompConfig {
    /// Every problem, as (key under `stomp.`, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, q) in [("send_qos", self.send_qos), ("subscribe_qos", self.subscribe_qos)] {
            if q > 2 {
                out.push((key, format!("{q} is not a QoS (0, 1 or 2)")));
            }
        }
        if self.mountpoint.contains(['+', '#', '\0']) || self.mountpoint.starts_with('$') {
            out.push(("mountpoint", "must be a topic prefix without wildcards, not starting with $".to_string()));
        }
        if self.max_header_bytes < 256 {
            out.push(("max_header_bytes", "at least 256 bytes".to_string()));
        }
        if self.max_headers == 0 {
            out.push(("max_headers", "at least 1".to_string()));
        }
        for (key, d) in [("heartbeat_send", self.heartbeat_send), ("heartbeat_receive", self.heartbeat_receive)] {
            if d.is_some_and(|d| d < Duration::from_millis(100)) {
                out.push((key, "at least 100ms (or \"off\")".to_string()));
            }
        }
        if self.transaction_timeout.is_zero() {
            out.push(("transaction_timeout", "must be more than 0".to_string()));
        }
        out
    }

    pub fn send_qos(&self) -> QoS {
        qos(self.send_qos)
    }

    pub fn subscribe_qos(&self) -> QoS {
        qos(self.subscribe_qos)
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub fn default_mountpoint() -> String {
    String::new()
}
pub fn default_qos() -> u8 {
    1
}
pub fn default_max_header_bytes() -> u64 {
    8 * 1024
}
pub fn default_max_headers() -> u32 {
    64
}
pub fn default_heartbeat() -> Option<Duration> {
    Some(Duration::from_secs(10))
}
pub fn default_max_transactions() -> u32 {
    8
}
pub fn default_max_transaction_frames() -> u32 {
    1000
}
pub fn default_max_transaction_bytes() -> u64 {
    1024 * 1024
}
pub fn default_transaction_timeout() -> Duration {
    Duration::from_secs(60)
}
