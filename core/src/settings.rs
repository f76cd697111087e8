//! Runtime settings of the broker core, with their defaults.
//!
//! These are the validated values the core runs on. The TOML file format,
//! its validation and its error messages live in `server/src/config`; it
//! produces a [`BrokerSettings`]. Defaults here are the embedded defaults a
//! broker without a config file runs on.

use std::time::Duration;

/// How a message published to a shared group picks its one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedStrategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// A member chosen at random per message.
    Random,
    /// The same member until it leaves the group.
    Sticky,
}

/// Per-connection byte rate limit (token bucket on the read side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub bytes_per_sec: u64,
    pub burst: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted from, and sent to, a client (bytes, whole packet).
    pub max_packet_size: u32,
    /// Longest client identifier accepted (bytes).
    pub max_client_id_len: usize,
    /// A socket that has not completed CONNECT within this time is closed.
    pub connect_timeout: Duration,
    /// Cap on an MQTT 5 client's keep-alive (seconds). A v5 client asking
    /// for more, or for 0, is told this value (Server Keep Alive) and held
    /// to it; 3.x clients cannot be told and keep their own. 0 = no cap.
    pub max_keep_alive: u16,
    /// Per-connection read rate limit; `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Topic Alias Maximum offered to v5 clients (0 = aliases disabled).
    pub max_topic_alias: u16,
    /// Most subscriptions one session may hold (0 = unlimited).
    pub max_subscriptions: usize,
}

pub fn default_max_packet_size() -> u32 {
    1024 * 1024
}
pub fn default_max_client_id_len() -> usize {
    1024
}
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn default_max_keep_alive() -> u16 {
    0
}
pub fn default_max_topic_alias() -> u16 {
    64
}
pub fn default_max_subscriptions() -> usize {
    0
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: default_max_packet_size(),
            max_client_id_len: default_max_client_id_len(),
            connect_timeout: default_connect_timeout(),
            max_keep_alive: default_max_keep_alive(),
            rate_limit: None,
            max_topic_alias: default_max_topic_alias(),
            max_subscriptions: default_max_subscriptions(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Outgoing QoS 1/2 messages in flight per session (further capped by
    /// the client's v5 Receive Maximum).
    pub max_inflight: u16,
    /// Receive Maximum we offer: incoming QoS 2 messages awaiting PUBREL.
    /// A v5 client exceeding it gets DISCONNECT 0x93; for 3.x clients the
    /// message is dropped and counted.
    pub max_awaiting_rel: u16,
    /// An incoming QoS 2 packet id whose PUBREL does not arrive within this
    /// time is forgotten.
    pub await_rel_timeout: Duration,
    /// Messages queued per session beyond the inflight window.
    pub max_queue_len: usize,
    /// Payload bytes queued per session.
    pub max_queue_bytes: usize,
    /// Queue QoS 0 messages for offline persistent sessions.
    pub queue_qos0: bool,
    /// How long a 3.x persistent session (clean session = 0) outlives its
    /// connection. `None` = forever.
    pub v3_session_expiry: Option<Duration>,
    /// Upper bound on the session expiry interval a v5 client may ask for.
    pub max_session_expiry: Duration,
}

pub fn default_max_inflight() -> u16 {
    32
}
pub fn default_max_awaiting_rel() -> u16 {
    100
}
pub fn default_await_rel_timeout() -> Duration {
    Duration::from_secs(300)
}
pub fn default_max_queue_len() -> usize {
    100_000
}
pub fn default_max_queue_bytes() -> usize {
    64 * 1024 * 1024
}
pub fn default_queue_qos0() -> bool {
    true
}
pub fn default_v3_session_expiry() -> Option<Duration> {
    Some(Duration::from_secs(2 * 3600))
}
pub fn default_max_session_expiry() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            max_inflight: default_max_inflight(),
            max_awaiting_rel: default_max_awaiting_rel(),
            await_rel_timeout: default_await_rel_timeout(),
            max_queue_len: default_max_queue_len(),
            max_queue_bytes: default_max_queue_bytes(),
            queue_qos0: default_queue_qos0(),
            v3_session_expiry: default_v3_session_expiry(),
            max_session_expiry: default_max_session_expiry(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainSettings {
    /// Whether retained messages are stored at all (v5 Retain Available).
    pub enabled: bool,
    /// Most retained messages stored (0 = unlimited). New topics beyond it
    /// are refused (counted as dropped); replacing an existing one works.
    pub max_count: usize,
    /// Largest retained payload stored (bytes).
    pub max_payload_size: usize,
    /// Most bytes the retained messages of clients may take together
    /// (0 = unlimited), each counted by its encoded size (topic, payload,
    /// properties: [`crate::retain::weight`]). A message that would pass
    /// it is refused (counted as dropped), new topic or replacement.
    pub max_bytes: usize,
}

pub fn default_retain_enabled() -> bool {
    true
}
pub fn default_retain_max_count() -> usize {
    1_000_000
}
pub fn default_retain_max_payload_size() -> usize {
    1024 * 1024
}
pub fn default_retain_max_bytes() -> usize {
    256 * 1024 * 1024
}

impl Default for RetainSettings {
    fn default() -> Self {
        RetainSettings {
            enabled: default_retain_enabled(),
            max_count: default_retain_max_count(),
            max_payload_size: default_retain_max_payload_size(),
            max_bytes: default_retain_max_bytes(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysSettings {
    /// Interval of `$SYS` publications; `None` disables the periodic ones
    /// (presence events are still published).
    pub interval: Option<Duration>,
}

pub fn default_sys_interval() -> Option<Duration> {
    Some(Duration::from_secs(60))
}

impl Default for SysSettings {
    fn default() -> Self {
        SysSettings { interval: default_sys_interval() }
    }
}

/// Everything the core needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Node name used in `$SYS/brokers/<node>/`.
    pub node_name: String,
    pub limits: Limits,
    pub session: SessionSettings,
    pub retained: RetainSettings,
    pub sys: SysSettings,
    pub shared_strategy: SharedStrategy,
}

pub fn default_node_name() -> String {
    "portcullis@127.0.0.1".to_string()
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            node_name: default_node_name(),
            limits: Limits::default(),
            session: SessionSettings::default(),
            retained: RetainSettings::default(),
            sys: SysSettings::default(),
            shared_strategy: SharedStrategy::default(),
        }
    }
}
