//! The shape of `portcullis.toml`: one serde struct per table.
//!
//! Every struct refuses unknown keys, every field is optional in the file
//! and names the function that gives its default (the core's
//! `settings::default_*` wherever the core has one, so the embedded
//! defaults live in one place). Types here only say what a value must look
//! like; ranges and relations between keys are checked in
//! [`super::validate`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_core::settings;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{listener, units};

/// The whole file as written. [`super::validate::resolve`] turns it into a
/// [`super::Config`]; it differs only in that listener names are resolved.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// This broker node.
    #[serde(default)]
    pub(super) node: NodeConfig,
    /// Sockets the broker accepts MQTT connections on.
    #[serde(default = "default_listeners")]
    pub(super) listeners: Vec<ListenerEntry>,
    /// Per-connection limits.
    #[serde(default)]
    pub(super) limits: LimitsConfig,
    /// Per-session windows, queues and expiry.
    #[serde(default)]
    pub(super) session: SessionConfig,
    /// The retained message store.
    #[serde(default)]
    pub(super) retained: RetainedConfig,
    /// `$SYS` topics.
    #[serde(default)]
    pub(super) sys: SysConfig,
    /// Shared subscriptions (`$share/<group>/<filter>`).
    #[serde(default)]
    pub(super) shared_subscription: SharedSubscriptionConfig,
    /// Snapshots of sessions and retained messages across restarts.
    #[serde(default)]
    pub(super) persistence: PersistenceConfig,
    /// Authentication providers, chains, cache and brute-force guard.
    #[serde(default)]
    pub(super) auth: super::security::AuthSection,
    /// ACL providers, chains and cache.
    #[serde(default)]
    pub(super) acl: super::security::AclSection,
    /// Modules built on the hooks (presence, …).
    #[serde(default)]
    pub(super) modules: portcullis_modules::ModulesConfig,
    /// Several nodes as one broker, on NATS (`[cluster]`, see the cluster
    /// crate); off by default.
    #[serde(default)]
    pub(super) cluster: portcullis_cluster::ClusterConfig,
    /// Bridges to remote brokers (`[[bridges]]`, see the bridge crate).
    #[serde(default)]
    pub(super) bridges: Vec<portcullis_bridge::BridgeConfig>,
    /// Logging.
    #[serde(default)]
    pub(super) log: LogConfig,
    /// The admin HTTP API.
    #[serde(default)]
    pub(super) admin: super::admin::AdminConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            node: NodeConfig::default(),
            listeners: default_listeners(),
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            retained: RetainedConfig::default(),
            sys: SysConfig::default(),
            shared_subscription: SharedSubscriptionConfig::default(),
            persistence: PersistenceConfig::default(),
            auth: Default::default(),
            acl: Default::default(),
            modules: Default::default(),
            cluster: Default::default(),
            bridges: Vec::new(),
            log: LogConfig::default(),
            admin: Default::default(),
        }
    }
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name, published under `$SYS/brokers/<name>/`.
    #[serde(default = "settings::default_node_name")]
    pub name: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { name: settings::default_node_name() }
    }
}

/// The listeners used when the file has no `[[listeners]]`: one plain TCP
/// listener on all interfaces, port 1883.
pub(super) fn default_listeners() -> Vec<ListenerEntry> {
    vec![ListenerEntry::default()]
}

/// One `[[listeners]]` entry as written (its name may be left out when it
/// is the only one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerEntry {
    /// Unique name, used in logs and metrics. Required when there is more
    /// than one listener; a single unnamed listener is called `default`.
    #[serde(default = "default_listener_name")]
    pub(super) name: Option<String>,
    /// Transport: `"tcp"`, `"tls"`, `"ws"` or `"wss"` (MQTT), `"stomp"`
    /// or `"stomp_tls"` (STOMP), `"sockjs"` or `"sockjs_tls"` (STOMP over
    /// SockJS and WebSocket, for browsers; `_tls`: HTTPS and WSS).
    #[serde(default = "default_listener_kind", rename = "type")]
    pub(super) kind: ListenerKind,
    /// Socket address to bind, `IP:PORT`; left out, a STOMP listener
    /// binds `0.0.0.0:61613` (`stomp_tls`: `0.0.0.0:61614`, `sockjs`:
    /// `0.0.0.0:61616`, `sockjs_tls`: `0.0.0.0:61617`).
    #[serde(default = "default_bind", deserialize_with = "socket_addr")]
    pub(super) bind: SocketAddr,
    /// Connections open at once on this listener; more are refused.
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: usize,
    /// Length of the kernel's queue of connections not yet accepted.
    #[serde(default = "default_backlog")]
    pub(super) backlog: u32,
    /// Auth chain for this listener: `default` (`auth.chain`) or a name
    /// from `[auth.chains]`.
    #[serde(default = "default_chain_name")]
    pub(super) auth_chain: String,
    /// ACL chain for this listener: `default` (`acl.chain`) or a name from
    /// `[acl.chains]`.
    #[serde(default = "default_chain_name")]
    pub(super) acl_chain: String,
    /// Largest packet on this listener; unset = `limits.max_packet_size`.
    /// WebSocket frames and messages are capped at the same size.
    #[serde(default = "default_listener_max_packet_size", deserialize_with = "listener::some_size")]
    pub(super) max_packet_size: Option<u64>,
    /// Read rate limit per connection on this listener: unset =
    /// `limits.rate_limit`; `"off"` = unlimited here; or a table.
    #[serde(default = "default_listener_rate_limit", deserialize_with = "listener::some_rate_limit")]
    pub(super) rate_limit: Option<Option<RateLimitConfig>>,
    /// Time a new socket has for what comes before MQTT: the PROXY header,
    /// the TLS handshake, the WebSocket upgrade.
    #[serde(default = "default_handshake_timeout", deserialize_with = "units::duration")]
    pub(super) handshake_timeout: Duration,
    /// Every connection starts with a PROXY protocol (v1 or v2) header,
    /// whose source address becomes the client's; one without is closed.
    #[serde(default = "default_proxy_protocol")]
    pub(super) proxy_protocol: bool,
    /// Proxies (networks) trusted to say who the client is: with
    /// `proxy_protocol`, only these may connect; on `ws`/`wss`/`sockjs`,
    /// only their `Forwarded` / `X-Forwarded-For` headers are believed.
    #[serde(default = "default_trusted_proxies")]
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    /// TCP keepalive on accepted sockets: `"off"` or `{ idle, interval,
    /// count }`; on by default (see [`listener::TcpKeepaliveConfig`]).
    #[serde(default = "default_tcp_keepalive", deserialize_with = "listener::keepalive")]
    pub(super) tcp_keepalive: Option<listener::TcpKeepaliveConfig>,
    /// Take the username from the client certificate (`tls`/`wss` with
    /// `client_cert = "required"`).
    #[serde(default = "default_peer_cert_as")]
    pub(super) peer_cert_as_username: Option<listener::CertFieldName>,
    /// Take the client id from the client certificate, likewise.
    #[serde(default = "default_peer_cert_as")]
    pub(super) peer_cert_as_client_id: Option<listener::CertFieldName>,
    /// Which client ids an identity may use: a regular expression in which
    /// `${username}` and `${cert_common_name}` stand for the client's
    /// (escaped) values, e.g. `"^${username}(-.*)?$"`. A client id that
    /// does not match is refused (3.1.1 0x02, v5 0x85). Unset: any.
    #[serde(default = "default_client_id_pattern")]
    pub(super) client_id_pattern: Option<String>,
    /// Accept bridges from other brokers: a CONNECT whose protocol level
    /// has the 0x80 bit (Mosquitto's and RSMB's `try_private`). Accepted
    /// bridges pass the same auth and ACL as any client; their
    /// subscriptions are No Local and Retain As Published. `false`: such a
    /// CONNECT is refused with return code 1 (unacceptable protocol
    /// version), and Mosquitto connects again as a plain client.
    #[serde(default = "default_accept_bridges")]
    pub(super) accept_bridges: bool,
    /// Certificates (`tls` and `wss` listeners, where it is required).
    #[serde(default = "default_listener_tls")]
    pub(super) tls: Option<listener::ListenerTlsConfig>,
    /// WebSocket settings (`ws` and `wss` listeners); unset = defaults.
    #[serde(default = "default_listener_websocket")]
    pub(super) websocket: Option<listener::WebSocketConfig>,
    /// STOMP settings (`stomp`, `stomp_tls` and `sockjs` listeners); unset
    /// = defaults.
    #[serde(default = "default_listener_stomp")]
    pub(super) stomp: Option<portcullis_stomp::StompConfig>,
    /// SockJS settings (`sockjs` listeners); unset = defaults.
    #[serde(default = "default_listener_sockjs")]
    pub(super) sockjs: Option<portcullis_stomp::sockjs::SockJsConfig>,
}

impl ListenerEntry {
    /// The address to bind: `bind`, or for a STOMP listener that left it
    /// out, STOMP's port.
    pub(super) fn effective_bind(&self) -> SocketAddr {
        match self.kind {
            ListenerKind::Stomp if self.bind == default_bind() => SocketAddr::from(([0, 0, 0, 0], 61613)),
            ListenerKind::StompTls if self.bind == default_bind() => SocketAddr::from(([0, 0, 0, 0], 61614)),
            ListenerKind::SockJs if self.bind == default_bind() => SocketAddr::from(([0, 0, 0, 0], 61616)),
            ListenerKind::SockJsTls if self.bind == default_bind() => SocketAddr::from(([0, 0, 0, 0], 61617)),
            _ => self.bind,
        }
    }
}

/// The chain a listener uses unless it names another.
pub fn default_chain_name() -> String {
    "default".to_string()
}

impl Default for ListenerEntry {
    fn default() -> Self {
        ListenerEntry {
            name: default_listener_name(),
            kind: default_listener_kind(),
            bind: default_bind(),
            max_connections: default_max_connections(),
            backlog: default_backlog(),
            auth_chain: default_chain_name(),
            acl_chain: default_chain_name(),
            max_packet_size: default_listener_max_packet_size(),
            rate_limit: default_listener_rate_limit(),
            handshake_timeout: default_handshake_timeout(),
            proxy_protocol: default_proxy_protocol(),
            trusted_proxies: default_trusted_proxies(),
            tcp_keepalive: default_tcp_keepalive(),
            peer_cert_as_username: default_peer_cert_as(),
            peer_cert_as_client_id: default_peer_cert_as(),
            client_id_pattern: default_client_id_pattern(),
            accept_bridges: default_accept_bridges(),
            tls: default_listener_tls(),
            websocket: default_listener_websocket(),
            stomp: default_listener_stomp(),
            sockjs: default_listener_sockjs(),
        }
    }
}

/// Unset: the listener uses `limits.max_packet_size`.
pub fn default_listener_max_packet_size() -> Option<u64> {
    None
}
/// Unset: the listener uses `limits.rate_limit`.
pub fn default_listener_rate_limit() -> Option<Option<RateLimitConfig>> {
    None
}
pub fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn default_accept_bridges() -> bool {
    true
}
pub fn default_proxy_protocol() -> bool {
    false
}
pub fn default_trusted_proxies() -> Vec<ipnet::IpNet> {
    Vec::new()
}
/// On, with [`listener::TcpKeepaliveConfig`]'s defaults.
pub fn default_tcp_keepalive() -> Option<listener::TcpKeepaliveConfig> {
    Some(listener::TcpKeepaliveConfig::default())
}
pub fn default_peer_cert_as() -> Option<listener::CertFieldName> {
    None
}
pub fn default_client_id_pattern() -> Option<String> {
    None
}
pub fn default_listener_tls() -> Option<listener::ListenerTlsConfig> {
    None
}
pub fn default_listener_websocket() -> Option<listener::WebSocketConfig> {
    None
}
pub fn default_listener_stomp() -> Option<portcullis_stomp::StompConfig> {
    None
}
pub fn default_listener_sockjs() -> Option<portcullis_stomp::sockjs::SockJsConfig> {
    None
}

/// Unnamed: the name is resolved from the listener's position.
pub(super) fn default_listener_name() -> Option<String> {
    None
}
/// The name a single unnamed listener gets.
pub(super) const SOLE_LISTENER_NAME: &str = "default";
pub fn default_listener_kind() -> ListenerKind {
    ListenerKind::Tcp
}
pub fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1883))
}
pub fn default_max_connections() -> usize {
    100_000
}
pub fn default_backlog() -> u32 {
    1024
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Plain MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
    /// STOMP 1.0/1.1/1.2 over TCP.
    Stomp,
    /// STOMP over TLS.
    #[serde(rename = "stomp_tls")]
    StompTls,
    /// STOMP over SockJS (and over plain WebSocket), for browsers.
    #[serde(rename = "sockjs")]
    SockJs,
    /// STOMP over SockJS (and over WebSocket) over TLS: HTTPS and WSS.
    #[serde(rename = "sockjs_tls")]
    SockJsTls,
}

impl ListenerKind {
    /// The name used in the file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
            ListenerKind::Stomp => "stomp",
            ListenerKind::StompTls => "stomp_tls",
            ListenerKind::SockJs => "sockjs",
            ListenerKind::SockJsTls => "sockjs_tls",
        }
    }

    /// True for `tls`, `wss`, `stomp_tls` and `sockjs_tls`.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss | ListenerKind::StompTls | ListenerKind::SockJsTls)
    }

    /// True for `stomp`, `stomp_tls`, `sockjs` and `sockjs_tls` (the
    /// listeners that carry STOMP, and so take a `stomp` table).
    pub fn is_stomp(self) -> bool {
        matches!(self, ListenerKind::Stomp | ListenerKind::StompTls) || self.is_sockjs()
    }

    /// True for `sockjs` and `sockjs_tls` (they take a `sockjs` table).
    pub fn is_sockjs(self) -> bool {
        matches!(self, ListenerKind::SockJs | ListenerKind::SockJsTls)
    }

    /// True for `ws` and `wss`.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

pub(super) fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    struct AddrVisitor;
    impl Visitor<'_> for AddrVisitor {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a socket address such as \"0.0.0.0:1883\" or \"[::1]:1883\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            v.parse().map_err(|_| {
                E::custom(format!(
                    "invalid socket address \"{v}\": expected IP:PORT such as \"0.0.0.0:1883\" or \"[::1]:1883\" (host names are not resolved)"
                ))
            })
        }
    }
    deserializer.deserialize_any(AddrVisitor)
}

/// `[limits]`: per-connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest packet accepted from, and sent to, a client (bytes, whole
    /// packet including its fixed header).
    #[serde(default = "default_max_packet_size", deserialize_with = "units::size")]
    pub max_packet_size: u64,
    /// Longest client identifier accepted (bytes).
    #[serde(default = "default_max_client_id_len")]
    pub max_client_id_len: u64,
    /// A socket that has not completed CONNECT within this time is closed.
    #[serde(default = "settings::default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Cap on the keep-alive an MQTT 5 client may ask for (told to it as Server
    /// Keep Alive; 3.x clients keep their own), in whole seconds; `None`
    /// (`"off"` or `"0s"` in the file) is no cap.
    #[serde(default = "default_max_keep_alive", deserialize_with = "keep_alive_cap")]
    pub max_keep_alive: Option<Duration>,
    /// Per-connection read rate limit; `None` (`"off"`) is unlimited.
    #[serde(default = "default_rate_limit", deserialize_with = "rate_limit")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Topic Alias Maximum offered to v5 clients (0 disables aliases).
    #[serde(default = "settings::default_max_topic_alias")]
    pub max_topic_alias: u16,
    /// Most subscriptions one session may hold (0 = unlimited); more are
    /// refused (SUBACK 0x80, v5 0x97).
    #[serde(default = "settings::default_max_subscriptions")]
    pub max_subscriptions: usize,
    /// Most shared subscriptions (`$share/…`) one session may hold (0 =
    /// unlimited).
    #[serde(default = "settings::default_max_shared_subscriptions")]
    pub max_shared_subscriptions: usize,
    /// Levels a topic name or filter may have at most: deeper filters are
    /// refused in SUBACK, deeper topics acknowledged (v5 0x97) and dropped.
    #[serde(default = "settings::default_max_topic_levels")]
    pub max_topic_levels: usize,
    /// Longest topic filter a SUBSCRIBE may carry (bytes).
    #[serde(default = "settings::default_max_topic_filter_len")]
    pub max_topic_filter_len: usize,
    /// What one session's subscriptions may cost (bytes: each filter twice,
    /// plus 400 per level and 200 per subscription, the worst case in the
    /// topic trie); 0 = unlimited.
    #[serde(default = "default_max_subscription_bytes", deserialize_with = "units::size")]
    pub max_subscription_bytes: u64,
    /// Largest CONNECT accepted (bytes): it is buffered before the client
    /// is known, so it is far smaller than `max_packet_size`.
    #[serde(default = "default_max_connect_size", deserialize_with = "units::size")]
    pub max_connect_size: u64,
    /// CONNECTs in progress from one address (IPv6: one /64) at most;
    /// further sockets are closed at once (0 = unlimited).
    #[serde(default = "settings::default_max_handshakes_per_ip")]
    pub max_handshakes_per_ip: u32,
    /// Bytes every connection still in its CONNECT may buffer together
    /// beyond the first 2 KiB each; a socket that would pass it is closed.
    #[serde(default = "default_handshake_memory", deserialize_with = "units::size")]
    pub handshake_memory: u64,
    /// Longest username accepted (bytes); a longer one is refused as bad
    /// credentials without asking any provider.
    #[serde(default = "settings::default_max_username_len")]
    pub max_username_len: usize,
    /// Close a client that connected with keep-alive 0 after this long
    /// without a packet; `"off"` (the default, MQTT's rule) never does.
    #[serde(default = "settings::default_idle_timeout", deserialize_with = "units::duration_or_off")]
    pub idle_timeout: Option<Duration>,
    /// MQTT 5 user properties one packet may carry; a packet with more is a
    /// protocol violation (DISCONNECT 0x97).
    #[serde(default = "settings::default_max_user_properties")]
    pub max_user_properties: u32,
    /// Key and value bytes of one packet's user properties together.
    #[serde(default = "default_max_user_property_bytes", deserialize_with = "units::size")]
    pub max_user_property_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_packet_size: default_max_packet_size(),
            max_client_id_len: default_max_client_id_len(),
            connect_timeout: settings::default_connect_timeout(),
            max_keep_alive: default_max_keep_alive(),
            rate_limit: default_rate_limit(),
            max_topic_alias: settings::default_max_topic_alias(),
            max_subscriptions: settings::default_max_subscriptions(),
            max_shared_subscriptions: settings::default_max_shared_subscriptions(),
            max_topic_levels: settings::default_max_topic_levels(),
            max_topic_filter_len: settings::default_max_topic_filter_len(),
            max_subscription_bytes: default_max_subscription_bytes(),
            max_connect_size: default_max_connect_size(),
            max_handshakes_per_ip: settings::default_max_handshakes_per_ip(),
            handshake_memory: default_handshake_memory(),
            max_username_len: settings::default_max_username_len(),
            idle_timeout: settings::default_idle_timeout(),
            max_user_properties: settings::default_max_user_properties(),
            max_user_property_bytes: default_max_user_property_bytes(),
        }
    }
}

pub fn default_max_subscription_bytes() -> u64 {
    settings::default_max_subscription_bytes() as u64
}
pub fn default_max_connect_size() -> u64 {
    u64::from(settings::default_max_connect_size())
}
pub fn default_handshake_memory() -> u64 {
    settings::default_handshake_memory() as u64
}
pub fn default_max_user_property_bytes() -> u64 {
    u64::from(settings::default_max_user_property_bytes())
}

pub fn default_max_packet_size() -> u64 {
    u64::from(settings::default_max_packet_size())
}
pub fn default_max_client_id_len() -> u64 {
    settings::default_max_client_id_len() as u64
}
pub fn default_max_keep_alive() -> Option<Duration> {
    match settings::default_max_keep_alive() {
        0 => None,
        secs => Some(Duration::from_secs(u64::from(secs))),
    }
}
pub fn default_rate_limit() -> Option<RateLimitConfig> {
    None
}

/// A duration or `"off"`; zero also means no cap, as in MQTT.
fn keep_alive_cap<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    Ok(units::duration_or_off(deserializer)?.filter(|cap| !cap.is_zero()))
}

/// `limits.rate_limit = { bytes_per_sec = …, burst = … }`: a token bucket
/// on the read side of each connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate (bytes per second). Required: a rate limit has no
    /// meaningful default rate, so it has no default function.
    #[serde(deserialize_with = "units::size")]
    pub bytes_per_sec: u64,
    /// Bucket size (bytes): how far a connection may run ahead of the rate.
    /// `None` = one second's worth, `bytes_per_sec`.
    #[serde(default = "default_rate_limit_burst", deserialize_with = "burst")]
    pub burst: Option<u64>,
}

pub fn default_rate_limit_burst() -> Option<u64> {
    None
}

fn burst<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    units::size(deserializer).map(Some)
}

/// `"off"` or a `{ bytes_per_sec, burst }` table.
pub(super) fn rate_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<RateLimitConfig>, D::Error> {
    struct RateLimitVisitor;
    impl<'de> Visitor<'de> for RateLimitVisitor {
        type Value = Option<RateLimitConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table { bytes_per_sec = …, burst = … } or \"off\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "off" => Ok(None),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            RateLimitConfig::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(RateLimitVisitor)
}

/// `[session]`: per-session windows, queues and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Outgoing QoS 1/2 messages in flight per session (1..=65535).
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u64,
    /// Incoming QoS 2 messages awaiting PUBREL (1..=65535); offered to v5
    /// clients as Receive Maximum.
    #[serde(default = "default_max_awaiting_rel")]
    pub max_awaiting_rel: u64,
    /// An incoming QoS 2 packet id whose PUBREL does not come in this time
    /// is forgotten.
    #[serde(default = "settings::default_await_rel_timeout", deserialize_with = "units::duration")]
    pub await_rel_timeout: Duration,
    /// Messages queued per session beyond the inflight window (at least 1).
    #[serde(default = "settings::default_max_queue_len")]
    pub max_queue_len: usize,
    /// Payload bytes queued per session.
    #[serde(default = "default_max_queue_bytes", deserialize_with = "units::size")]
    pub max_queue_bytes: u64,
    /// Queue QoS 0 messages for offline persistent sessions.
    #[serde(default = "settings::default_queue_qos0")]
    pub queue_qos0: bool,
    /// How long a 3.x persistent session outlives its connection; `None`
    /// (`"never"`) keeps it forever.
    #[serde(default = "settings::default_v3_session_expiry", deserialize_with = "units::duration_or_never")]
    pub v3_session_expiry: Option<Duration>,
    /// Upper bound on the session expiry a v5 client may ask for.
    #[serde(default = "settings::default_max_session_expiry", deserialize_with = "units::duration")]
    pub max_session_expiry: Duration,
    /// A CONNECT whose client id belongs to a session of another identity
    /// (username, else certificate subject, else anonymous on a listener):
    /// `"refuse"` it (3.1.1 0x05, v5 0x85), or `"discard"` the old session
    /// and start a fresh one (nothing of the old one reaches the newcomer).
    #[serde(default = "default_owner_mismatch")]
    pub owner_mismatch: OwnerMismatchName,
    /// Sessions the broker holds at most, connected or not (0 = no limit);
    /// one more is refused (3.1.1 0x03, v5 0x97).
    #[serde(default = "settings::default_max_sessions")]
    pub max_sessions: usize,
    /// Sessions one identity may hold at most (0 = no limit).
    #[serde(default = "settings::default_max_sessions_per_identity")]
    pub max_sessions_per_identity: usize,
    /// Messages queued for a connected session above which the publishers
    /// feeding it stop being read until it drains to half of it (0 = no
    /// back-pressure).
    #[serde(default = "settings::default_queue_high_water")]
    pub queue_high_water: usize,
    /// How long publishers wait for one congested subscriber before it
    /// counts as stuck.
    #[serde(default = "settings::default_stall_timeout", deserialize_with = "units::duration")]
    pub stall_timeout: Duration,
    /// A stuck subscriber: `"drop"` (its queue fills, then drops) or
    /// `"disconnect"` (its connection is closed, v5 0x97).
    #[serde(default = "default_on_stuck")]
    pub on_stuck: OnStuckName,
}

pub fn default_on_stuck() -> OnStuckName {
    OnStuckName::Drop
}

/// `session.on_stuck` as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStuckName {
    Drop,
    Disconnect,
}

impl From<OnStuckName> for settings::OnStuck {
    fn from(name: OnStuckName) -> Self {
        match name {
            OnStuckName::Drop => settings::OnStuck::Drop,
            OnStuckName::Disconnect => settings::OnStuck::Disconnect,
        }
    }
}

pub fn default_owner_mismatch() -> OwnerMismatchName {
    OwnerMismatchName::Refuse
}

/// `session.owner_mismatch` as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerMismatchName {
    /// `"refuse"`: the CONNECT is refused; the session is untouched.
    Refuse,
    /// `"discard"`: the old session ends; the newcomer starts afresh.
    Discard,
}

impl From<OwnerMismatchName> for settings::OwnerMismatch {
    fn from(name: OwnerMismatchName) -> Self {
        match name {
            OwnerMismatchName::Refuse => settings::OwnerMismatch::Refuse,
            OwnerMismatchName::Discard => settings::OwnerMismatch::Discard,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_inflight: default_max_inflight(),
            max_awaiting_rel: default_max_awaiting_rel(),
            await_rel_timeout: settings::default_await_rel_timeout(),
            max_queue_len: settings::default_max_queue_len(),
            max_queue_bytes: default_max_queue_bytes(),
            queue_qos0: settings::default_queue_qos0(),
            v3_session_expiry: settings::default_v3_session_expiry(),
            max_session_expiry: settings::default_max_session_expiry(),
            owner_mismatch: default_owner_mismatch(),
            max_sessions: settings::default_max_sessions(),
            max_sessions_per_identity: settings::default_max_sessions_per_identity(),
            queue_high_water: settings::default_queue_high_water(),
            stall_timeout: settings::default_stall_timeout(),
            on_stuck: default_on_stuck(),
        }
    }
}

pub fn default_max_inflight() -> u64 {
    u64::from(settings::default_max_inflight())
}
pub fn default_max_awaiting_rel() -> u64 {
    u64::from(settings::default_max_awaiting_rel())
}
pub fn default_max_queue_bytes() -> u64 {
    settings::default_max_queue_bytes() as u64
}

/// `[retained]`: the retained message store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainedConfig {
    /// Whether retained messages are stored at all.
    #[serde(default = "settings::default_retain_enabled")]
    pub enabled: bool,
    /// Most retained messages stored (0 = unlimited).
    #[serde(default = "settings::default_retain_max_count")]
    pub max_count: usize,
    /// Largest retained payload stored (bytes).
    #[serde(default = "default_retain_max_payload_size", deserialize_with = "units::size")]
    pub max_payload_size: u64,
    /// Most bytes the retained messages of clients take together (topic,
    /// payload and properties of each, as encoded); 0 = unlimited.
    #[serde(default = "default_retain_max_bytes", deserialize_with = "units::size")]
    pub max_bytes: u64,
}

impl Default for RetainedConfig {
    fn default() -> Self {
        RetainedConfig {
            enabled: settings::default_retain_enabled(),
            max_count: settings::default_retain_max_count(),
            max_payload_size: default_retain_max_payload_size(),
            max_bytes: default_retain_max_bytes(),
        }
    }
}

pub fn default_retain_max_payload_size() -> u64 {
    settings::default_retain_max_payload_size() as u64
}
pub fn default_retain_max_bytes() -> u64 {
    settings::default_retain_max_bytes() as u64
}

/// `[sys]`: `$SYS` topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysConfig {
    /// Interval of the periodic `$SYS` publications (at least 1s); `None`
    /// (`"off"`) stops them.
    #[serde(default = "settings::default_sys_interval", deserialize_with = "units::duration_or_off")]
    pub interval: Option<Duration>,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval: settings::default_sys_interval() }
    }
}

/// `[persistence]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    /// How persistent sessions (expiry above zero), their subscriptions,
    /// queued and in-flight QoS 1/2 messages, QoS 2 state and retained
    /// messages are kept: `"strict"` (on disk before a PUBLISH to a
    /// persistent session is acknowledged; nothing acknowledged is lost on
    /// `kill -9` or power loss), `"relaxed"` (acknowledged from memory,
    /// on disk within `relaxed_window`; a crash loses that window), or
    /// `"off"` (memory only; a restart forgets everything). Clean sessions
    /// and QoS 0 never touch the disk. Default `"strict"`.
    #[serde(default = "default_persistence_mode")]
    pub mode: PersistenceMode,
    /// The data directory of the store (`"strict"` and `"relaxed"`):
    /// created 0700 if missing; the store is one file in it,
    /// `store.redb`, created 0600. A relative path is taken from the
    /// broker's working directory (`"data"` by default: `./data` where the
    /// broker is started, `/var/lib/portcullis/data` in the Docker image).
    /// One broker per directory: a second one refuses to start.
    #[serde(default = "default_persistence_dir")]
    pub dir: std::path::PathBuf,
    /// `"relaxed"`: the longest time between acknowledging a PUBLISH and
    /// the fsync that makes it durable.
    #[serde(default = "default_relaxed_window", deserialize_with = "units::duration")]
    pub relaxed_window: Duration,
    /// Deprecated (the store replaces it): a file the broker writes
    /// persistent sessions and retained messages to on a graceful
    /// shutdown, and reads back at start. Only with `mode = "off"` (the
    /// default mode is `"strict"`: an old config that sets it must set
    /// `mode = "off"` too, or drop it; docs/durability.md).
    #[serde(default)]
    pub snapshot_file: Option<std::path::PathBuf>,
}

/// `persistence.mode` as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceMode {
    /// `"strict"`: acknowledged once on disk (group commit).
    Strict,
    /// `"relaxed"`: acknowledged at once, on disk within `relaxed_window`.
    Relaxed,
    /// `"off"`: memory only.
    Off,
}

/// Strict: with no setup a persistent session and what it was
/// acknowledged survive `kill -9` (docs/durability.md).
pub fn default_persistence_mode() -> PersistenceMode {
    PersistenceMode::Strict
}

pub fn default_persistence_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("data")
}

pub fn default_relaxed_window() -> Duration {
    Duration::from_millis(100)
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            mode: default_persistence_mode(),
            dir: default_persistence_dir(),
            relaxed_window: default_relaxed_window(),
            snapshot_file: None,
        }
    }
}

/// `[shared_subscription]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSubscriptionConfig {
    /// How a message to a shared group picks its one receiver.
    #[serde(default = "default_shared_strategy")]
    pub strategy: SharedStrategyName,
}

impl Default for SharedSubscriptionConfig {
    fn default() -> Self {
        SharedSubscriptionConfig { strategy: default_shared_strategy() }
    }
}

pub fn default_shared_strategy() -> SharedStrategyName {
    SharedStrategyName::from(settings::SharedStrategy::default())
}

/// `shared_subscription.strategy` as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedStrategyName {
    /// `"round_robin"`: each member in turn.
    RoundRobin,
    /// `"random"`: a member chosen at random per message.
    Random,
    /// `"sticky"`: the same member until it leaves the group.
    Sticky,
}

impl From<settings::SharedStrategy> for SharedStrategyName {
    fn from(strategy: settings::SharedStrategy) -> Self {
        match strategy {
            settings::SharedStrategy::RoundRobin => SharedStrategyName::RoundRobin,
            settings::SharedStrategy::Random => SharedStrategyName::Random,
            settings::SharedStrategy::Sticky => SharedStrategyName::Sticky,
        }
    }
}

impl From<SharedStrategyName> for settings::SharedStrategy {
    fn from(name: SharedStrategyName) -> Self {
        match name {
            SharedStrategyName::RoundRobin => settings::SharedStrategy::RoundRobin,
            SharedStrategyName::Random => settings::SharedStrategy::Random,
            SharedStrategyName::Sticky => settings::SharedStrategy::Sticky,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` EnvFilter directive: `"info"`, `"warn,portcullis=debug"`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Line format.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: default_log_level(), format: default_log_format() }
    }
}

pub fn default_log_level() -> String {
    "info".to_owned()
}
pub fn default_log_format() -> LogFormat {
    LogFormat::Text
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `"text"`: human-readable lines.
    Text,
    /// `"json"`: one JSON object per line.
    Json,
}
