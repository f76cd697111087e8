//! Runtime settings of the broker core, with their defaults.
//!
//! These are the validated values the core runs on. The TOML file format,
//! its validation and its error messages live in `server/src/config`; it
//! produces a [`BrokerSettings`]. Defaults here are the embedded defaults a
//! broker without a config file runs on.

use std::time::Duration;

pub use crate::owner::OwnerMismatch;

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
    /// Most shared subscriptions (`$share/…`) one session may hold
    /// (0 = unlimited).
    pub max_shared_subscriptions: usize,
    /// Levels a topic name or filter may have at most (EMQX: 128).
    pub max_topic_levels: usize,
    /// Longest topic filter accepted in a SUBSCRIBE (bytes).
    pub max_topic_filter_len: usize,
    /// What one session's subscriptions may cost at most (bytes, as
    /// [`crate::session::subscription_cost`] weighs them: filter bytes plus
    /// a trie node per level); beyond it SUBSCRIBE is refused (v5 0x97).
    pub max_subscription_bytes: usize,
    /// Largest CONNECT accepted (bytes, whole packet): far smaller than
    /// `max_packet_size`, since it is buffered before the client is known.
    pub max_connect_size: u32,
    /// CONNECTs in progress (socket accepted, CONNACK not yet sent) from
    /// one address (IPv6: one /64) at most; more sockets are closed at once
    /// (0 = unlimited).
    pub max_handshakes_per_ip: u32,
    /// Bytes every connection still in its CONNECT may buffer together,
    /// beyond the first [`crate::connection::PREAUTH_FREE_BYTES`] each; a
    /// socket that would pass it is closed.
    pub handshake_memory: usize,
    /// Longest username accepted (bytes); longer ones are refused as bad
    /// credentials without asking any provider.
    pub max_username_len: usize,
    /// A client that connected with keep-alive 0 (none) is closed after
    /// this long without a packet; `None` keeps it forever (MQTT's rule).
    pub idle_timeout: Option<Duration>,
    /// MQTT 5 user properties one packet may carry (count).
    pub max_user_properties: u32,
    /// Key and value bytes of one packet's user properties together.
    pub max_user_property_bytes: u32,
}

/// 1152 KiB: a PUBLISH of 1 MiB of payload still fits with the longest
/// topic (64 KiB), its headers and up to ~64 KiB of v5 properties.
pub fn default_max_packet_size() -> u32 {
    1024 * 1024 + 128 * 1024
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
    1_000
}
pub fn default_max_shared_subscriptions() -> usize {
    100
}
pub fn default_max_topic_levels() -> usize {
    128
}
pub fn default_max_topic_filter_len() -> usize {
    65535
}
pub fn default_max_subscription_bytes() -> usize {
    2 * 1024 * 1024
}
pub fn default_max_connect_size() -> u32 {
    64 * 1024
}
pub fn default_max_handshakes_per_ip() -> u32 {
    256
}
pub fn default_handshake_memory() -> usize {
    32 * 1024 * 1024
}
pub fn default_max_username_len() -> usize {
    1024
}
pub fn default_idle_timeout() -> Option<Duration> {
    None
}
pub fn default_max_user_properties() -> u32 {
    64
}
pub fn default_max_user_property_bytes() -> u32 {
    16 * 1024
}

impl Limits {
    /// What the codec may let one packet of a connected client cost.
    pub fn decode_limits(&self, max_packet_size: u32) -> crate::codec::DecodeLimits {
        crate::codec::DecodeLimits {
            max_packet_size,
            max_user_properties: self.max_user_properties,
            max_user_property_bytes: self.max_user_property_bytes,
        }
    }
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
            max_shared_subscriptions: default_max_shared_subscriptions(),
            max_topic_levels: default_max_topic_levels(),
            max_topic_filter_len: default_max_topic_filter_len(),
            max_subscription_bytes: default_max_subscription_bytes(),
            max_connect_size: default_max_connect_size(),
            max_handshakes_per_ip: default_max_handshakes_per_ip(),
            handshake_memory: default_handshake_memory(),
            max_username_len: default_max_username_len(),
            idle_timeout: default_idle_timeout(),
            max_user_properties: default_max_user_properties(),
            max_user_property_bytes: default_max_user_property_bytes(),
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
    /// What a CONNECT gets when its client id belongs to another
    /// identity's session.
    pub owner_mismatch: OwnerMismatch,
    /// Sessions the broker holds at most, connected or not (0 = no limit).
    /// A CONNECT that would open one more is refused (3.1.1 0x03, v5 0x97).
    pub max_sessions: usize,
    /// Sessions one identity (username, certificate, or the anonymous
    /// clients of one listener) may hold at most (0 = no limit).
    pub max_sessions_per_identity: usize,
    /// Messages queued for a connected session above which the
    /// publishers feeding it stop being read until it drains to half of
    /// it (0 = no back-pressure: a full queue drops).
    pub queue_high_water: usize,
    /// How long publishers wait for one congested session before it
    /// counts as stuck and stops holding them back.
    pub stall_timeout: Duration,
    /// What happens to a stuck subscriber.
    pub on_stuck: OnStuck,
}

/// What happens to a subscriber stuck past `session.stall_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStuck {
    /// Publishers go on; its queue fills and then drops (counted, logged).
    #[default]
    Drop,
    /// Its connection is closed (v5 DISCONNECT 0x97); the session stays,
    /// queueing offline up to its bounds.
    Disconnect,
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
pub fn default_owner_mismatch() -> OwnerMismatch {
    OwnerMismatch::Refuse
}
pub fn default_max_sessions() -> usize {
    2_000_000
}
pub fn default_max_sessions_per_identity() -> usize {
    0
}
pub fn default_queue_high_water() -> usize {
    1_000
}
pub fn default_stall_timeout() -> Duration {
    Duration::from_secs(1)
}
pub fn default_on_stuck() -> OnStuck {
    OnStuck::Drop
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
            owner_mismatch: default_owner_mismatch(),
            max_sessions: default_max_sessions(),
            max_sessions_per_identity: default_max_sessions_per_identity(),
            queue_high_water: default_queue_high_water(),
            stall_timeout: default_stall_timeout(),
            on_stuck: default_on_stuck(),
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
