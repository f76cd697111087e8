//! `sockjs = { … }` of a `sockjs` listener.

use std::time::Duration;

use portcullis_core::units;
use serde::Deserialize;

/// A SockJS listener's own settings; its STOMP settings are the
/// listener's `stomp = { … }` table, the rest (bind, limits, chains,
/// `max_connections`) are the listener's, as for MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SockJsConfig {
    /// HTTP path prefix of the SockJS endpoints (`<path>/info`,
    /// `<path>/websocket`, `<path>/<server>/<session>/<transport>`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Interval of the `h` heartbeat frames sent to an open session.
    #[serde(default = "default_heartbeat", deserialize_with = "units::duration")]
    pub heartbeat: Duration,
    /// A polling or streaming session with no receiving request for this
    /// long is closed (and its STOMP connection with it).
    #[serde(default = "default_disconnect_delay", deserialize_with = "units::duration")]
    pub disconnect_delay: Duration,
    /// Largest `xhr_send` body and largest WebSocket message from a client;
    /// larger ones are refused before they are read (413, or close 1009).
    #[serde(default = "default_max_message_bytes", deserialize_with = "units::size")]
    pub max_message_bytes: u64,
    /// Bytes queued for a session's client while no request takes them
    /// (or while it reads slower than the broker writes); beyond this the
    /// session is closed.
    #[serde(default = "default_max_queued_bytes", deserialize_with = "units::size")]
    pub max_queued_bytes: u64,
    /// Bytes an `xhr_streaming` response carries before the broker ends it
    /// and the client opens the next one.
    #[serde(default = "default_streaming_bytes", deserialize_with = "units::size")]
    pub streaming_bytes: u64,
    /// Serve the WebSocket transports (`<path>/websocket` and
    /// `<path>/<server>/<session>/websocket`); `false`: 404, clients fall
    /// back to the xhr transports.
    #[serde(default = "default_websocket")]
    pub websocket: bool,
    /// Serve the embedded STOMP demo page at `/demo/`.
    #[serde(default = "default_demo")]
    pub demo: bool,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        SockJsConfig {
            path: default_path(),
            heartbeat: default_heartbeat(),
            disconnect_delay: default_disconnect_delay(),
            max_message_bytes: default_max_message_bytes(),
            max_queued_bytes: default_max_queued_bytes(),
            streaming_bytes: default_streaming_bytes(),
            websocket: default_websocket(),
            demo: default_demo(),
        }
    }
}

impl SockJsConfig {
    /// Every problem, as (key under `sockjs.`, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let p = &self.path;
        if !p.starts_with('/')
            || p.len() < 2
            || p.ends_with('/')
            || p.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c == '%')
        {
            out.push(("path", format!("\"{p}\" is not a path such as \"/stomp\" (no trailing /)")));
        } else if p == "/demo" || p.starts_with("/demo/") {
            out.push(("path", "\"/demo\" is the demo page's".to_string()));
        }
        if self.heartbeat < Duration::from_millis(100) {
            out.push(("heartbeat", "at least 100ms".to_string()));
        }
        if self.disconnect_delay < Duration::from_millis(100) {
            out.push(("disconnect_delay", "at least 100ms".to_string()));
        }
        if self.max_message_bytes < 1024 {
            out.push(("max_message_bytes", "at least 1KiB".to_string()));
        }
        if self.max_queued_bytes < 1024 {
            out.push(("max_queued_bytes", "at least 1KiB".to_string()));
        }
        if self.streaming_bytes < 4096 {
            out.push(("streaming_bytes", "at least 4KiB".to_string()));
        }
        out
    }
}

/// emqttd's path.
pub fn default_path() -> String {
    "/stomp".to_string()
}
/// The reference server's.
pub fn default_heartbeat() -> Duration {
    Duration::from_secs(25)
}
/// The reference server's.
pub fn default_disconnect_delay() -> Duration {
    Duration::from_secs(5)
}
pub fn default_max_message_bytes() -> u64 {
    128 * 1024
}
pub fn default_max_queued_bytes() -> u64 {
    1024 * 1024
}
/// The reference server's `response_limit`.
pub fn default_streaming_bytes() -> u64 {
    128 * 1024
}
pub fn default_websocket() -> bool {
    true
}
pub fn default_demo() -> bool {
    false
}
