//! `[[bridges]]`: one table per remote broker, as written in the file.
//!
//! The keys follow Mosquitto's bridge settings so that a Mosquitto bridge
//! translates line by line (README, "Bridges"): `addresses` is `address`,
//! `protocol` is `bridge_protocol_version`, `topics` holds `topic` lines.
//! [`BridgeConfig::validate`] is pure; secrets and certificate files are
//! read when the bridge is built ([`crate::start`]).

use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::codec::ProtocolVersion;
use portcullis_core::units;
use serde::Deserialize;

use crate::rule::TopicRule;

/// One `[[bridges]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Unique name: in logs, `$SYS` topics and the default client id and
    /// notification topic. ASCII letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Remote brokers, `host:port`, tried in turn (Mosquitto `address`).
    pub addresses: Vec<String>,
    /// MQTT version spoken to the remote: `"3.1"`, `"3.1.1"` or `"5"`.
    #[serde(default = "default_protocol")]
    pub protocol: ProtocolName,
    /// Client id on the remote; unset: `portcullis-<name>`.
    #[serde(default = "default_client_id")]
    pub client_id: Option<String>,
    /// Start a new session on the remote at each connection (Mosquitto
    /// `cleansession`).
    #[serde(default = "default_clean_start")]
    pub clean_start: bool,
    /// Keep-alive towards the remote (whole seconds, 1s to 65535s).
    #[serde(default = "default_keepalive", deserialize_with = "units::duration")]
    pub keepalive: Duration,
    /// Username on the remote; unset: none.
    #[serde(default = "default_none_string")]
    pub username: Option<String>,
    /// Environment variable holding the password (never written inline,
    /// never logged).
    #[serde(default = "default_none_string")]
    pub password_env: Option<String>,
    /// File holding the password (a trailing newline is dropped).
    #[serde(default = "default_none_path")]
    pub password_file: Option<PathBuf>,
    /// Set the bridge bit (protocol level 0x83/0x84) so that a Mosquitto
    /// or Portcullis remote treats the connection as a bridge (No Local,
    /// Retain As Published); needed for `both` rules on 3.x. A remote that
    /// refuses it (return code 1) is asked again without it. Ignored on 5,
    /// where subscriptions say No Local themselves.
    #[serde(default = "default_try_private")]
    pub try_private: bool,
    /// Topic rules, Mosquitto's `topic` line without the word `topic`:
    /// `"<pattern> [in|out|both] [qos] [local_prefix] [remote_prefix]"`.
    pub topics: Vec<String>,
    /// Publish the connection state (`1` up, `0` down, retained) locally
    /// and on the remote, with `0` as the bridge's will there.
    #[serde(default = "default_notifications")]
    pub notifications: bool,
    /// Topic of the state; unset: `$SYS/broker/connection/<client_id>/state`.
    #[serde(default = "default_none_string")]
    pub notification_topic: Option<String>,
    /// First wait before reconnecting; doubled after each failure.
    #[serde(default = "default_reconnect_min", deserialize_with = "units::duration")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnects (each wait is jittered to between
    /// half and all of it); a connection that held this long starts the
    /// backoff again from `reconnect_min`.
    #[serde(default = "default_reconnect_max", deserialize_with = "units::duration")]
    pub reconnect_max: Duration,
    /// Time for TCP, TLS and CONNACK together.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Outgoing messages held while the remote is away or slow (QoS 1
    /// and 2; QoS 0 is dropped while it is away); beyond it new messages
    /// are dropped and counted. At least 1.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Outgoing QoS 1/2 messages awaiting the remote's acknowledgement
    /// (a v5 remote's Receive Maximum lowers it); 1 to [`MAX_INFLIGHT`].
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// TLS towards the remote; unset: plain TCP.
    #[serde(default = "default_tls")]
    pub tls: Option<BridgeTlsConfig>,
}

/// Largest `max_inflight`: packet ids are looked up in the window linearly.
pub const MAX_INFLIGHT: u16 = 1000;

/// `[bridges.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTlsConfig {
    /// PEM bundle of the CAs the remote's certificate is verified against.
    pub ca_file: PathBuf,
    /// PEM client certificate chain (with `key_file`); unset: none.
    #[serde(default = "default_none_path")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default = "default_none_path")]
    pub key_file: Option<PathBuf>,
    /// Name the remote's certificate must carry; unset: the host of the
    /// address connected to.
    #[serde(default = "default_none_string")]
    pub server_name: Option<String>,
}

/// `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProtocolName {
    #[serde(rename = "3.1")]
    V31,
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5", alias = "5.0")]
    V5,
}

impl From<ProtocolName> for ProtocolVersion {
    fn from(p: ProtocolName) -> Self {
        match p {
            ProtocolName::V31 => ProtocolVersion::V31,
            ProtocolName::V311 => ProtocolVersion::V311,
            ProtocolName::V5 => ProtocolVersion::V5,
        }
    }
}

pub fn default_protocol() -> ProtocolName {
    ProtocolName::V311
}
pub fn default_client_id() -> Option<String> {
    None
}
pub fn default_clean_start() -> bool {
    true
}
pub fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
pub fn default_none_string() -> Option<String> {
    None
}
pub fn default_none_path() -> Option<PathBuf> {
    None
}
pub fn default_try_private() -> bool {
    true
}
pub fn default_notifications() -> bool {
    true
}
pub fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
pub fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn default_max_queued() -> usize {
    10_000
}
pub fn default_max_inflight() -> u16 {
    20
}
pub fn default_tls() -> Option<BridgeTlsConfig> {
    None
}

impl BridgeConfig {
    /// The client id used on the remote.
    pub fn remote_client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| format!("portcullis-{}", self.name))
    }

    /// The topic of the connection state.
    pub fn state_topic(&self) -> String {
        self.notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{}/state", self.remote_client_id()))
    }

    /// The topic rules, parsed (`validate` reports the ones that do not parse).
    pub fn rules(&self) -> Vec<TopicRule> {
        self.topics.iter().filter_map(|t| TopicRule::parse(t).ok()).collect()
    }

    /// `(key, problem)` for each problem; keys are relative to the entry.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut fail = |key: &str, msg: String| out.push((key.to_string(), msg));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            fail("name", "1 to 64 ASCII letters, digits, '-', '_' or '.'".into());
        }
        if self.addresses.is_empty() {
            fail("addresses", "at least one host:port".into());
        }
        for (i, a) in self.addresses.iter().enumerate() {
            if split_host_port(a).is_none() {
                fail(&format!("addresses[{i}]"), format!("{a:?} is not host:port"));
            }
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 65535 {
                fail("client_id", "must not be empty".into());
            }
        }
        let secs = self.keepalive.as_secs();
        if !(1..=65535).contains(&secs) || self.keepalive.subsec_nanos() != 0 {
            fail("keepalive", "whole seconds, 1s to 65535s".into());
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            fail("password_file", "give password_env or password_file, not both".into());
        }
        if (self.password_env.is_some() || self.password_file.is_some()) && self.username.is_none() {
            fail("username", "a password needs a username".into());
        }
        if self.topics.is_empty() {
            fail("topics", "at least one topic rule".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            if let Err(e) = TopicRule::parse(t) {
                fail(&format!("topics[{i}]"), e);
            }
        }
        if let Some(t) = &self.notification_topic {
            if portcullis_core::topic::TopicName::new(t).is_err() {
                fail("notification_topic", format!("{t:?} is not a topic name"));
            }
        }
        if self.reconnect_min.is_zero() {
            fail("reconnect_min", "must be more than 0".into());
        }
        if self.reconnect_max < self.reconnect_min {
            fail("reconnect_max", "must be at least reconnect_min".into());
        }
        if self.connect_timeout.is_zero() {
            fail("connect_timeout", "must be more than 0".into());
        }
        if !(1..=MAX_INFLIGHT).contains(&self.max_inflight) {
            fail("max_inflight", format!("1 to {MAX_INFLIGHT}"));
        }
        if self.max_queued == 0 {
            fail("max_queued", "at least 1".into());
        }
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                fail("tls.key_file", "cert_file and key_file go together".into());
            }
        }
        out
    }
}

/// Problems of the whole `[[bridges]]` list: each entry's, with its index,
/// and names used twice.
pub fn validate_all(bridges: &[BridgeConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, b) in bridges.iter().enumerate() {
        out.extend(b.validate().into_iter().map(|(k, m)| (format!("bridges[{i}].{k}"), m)));
        if bridges[..i].iter().any(|o| o.name == b.name) {
            out.push((format!("bridges[{i}].name"), format!("{:?} is used by another bridge", b.name)));
        }
    }
    out
}

/// `host:port` → (host, port); `[v6]:port` too.
pub fn split_host_port(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}
