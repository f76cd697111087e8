//! The transport parts of a `[[listeners]]` entry: `tls = { … }`,
//! `websocket = { … }`, `tcp_keepalive = { … }`, the certificate fields a
//! username or client id can come from, and the per-listener overrides of
//! `[limits]`.
//!
//! Only shapes live here; [`super::validate`] checks which keys go with
//! which listener `type`, and the listener module reads the files.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::model::RateLimitConfig;
use super::units;

/// `tls = { … }` of a `tls` or `wss` listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain the broker presents, its own certificate
    /// first. Required: a TLS listener has no default certificate.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate
    /// in `cert_file`. Required.
    pub key_file: PathBuf,
    /// PEM bundle of the CAs client certificates are verified against;
    /// required when `client_cert` is `optional` or `required`.
    #[serde(default = "default_ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Whether clients present certificates.
    #[serde(default = "default_client_cert")]
    pub client_cert: ClientCertMode,
    /// Oldest TLS version accepted.
    #[serde(default = "default_min_version")]
    pub min_version: TlsVersionName,
    /// How often the certificate, key and CA files are checked for changes
    /// (modification time and size); a change reloads them without
    /// touching established connections. `None` (`"off"`): only SIGHUP
    /// reloads.
    #[serde(default = "default_reload_poll", deserialize_with = "units::duration_or_off")]
    pub reload_poll: Option<Duration>,
}

pub fn default_ca_file() -> Option<PathBuf> {
    None
}
pub fn default_client_cert() -> ClientCertMode {
    ClientCertMode::None
}
pub fn default_min_version() -> TlsVersionName {
    TlsVersionName::V1_2
}
pub fn default_reload_poll() -> Option<Duration> {
    Some(Duration::from_secs(10))
}

/// `tls.client_cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertMode {
    /// `"none"`: no client certificate is asked for.
    None,
    /// `"optional"`: asked for; a client may come without one, but one it
    /// sends must verify against `ca_file`.
    Optional,
    /// `"required"`: a client without a valid certificate fails the handshake.
    Required,
}

impl ClientCertMode {
    /// The name used in the file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ClientCertMode::None => "none",
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        }
    }
}

/// `tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersionName {
    /// `"1.2"`: TLS 1.2 and 1.3.
    #[serde(rename = "1.2")]
    V1_2,
    /// `"1.3"`: TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// `websocket = { … }` of a `ws` or `wss` listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// HTTP path of the upgrade request; other paths get 404.
    #[serde(default = "default_ws_path")]
    pub path: String,
    /// `Origin` values a browser may connect from (exact match, such as
    /// `"https://app.example.com"`); others get 403. Empty: any origin. A
    /// request without `Origin` (not a browser) is not affected.
    #[serde(default = "default_allowed_origins")]
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig { path: default_ws_path(), allowed_origins: default_allowed_origins() }
    }
}

pub fn default_ws_path() -> String {
    "/mqtt".to_string()
}
pub fn default_allowed_origins() -> Vec<String> {
    Vec::new()
}

/// A part of the client certificate (`peer_cert_as_username = "cn"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertFieldName {
    /// `"cn"`: the subject's first common name.
    Cn,
    /// `"dn"`: the whole subject DN, RFC 4514 (`CN=dev42,O=Acme`).
    Dn,
    /// `"san_dns"`: the first DNS subject alternative name.
    SanDns,
    /// `"san_uri"`: the first URI subject alternative name.
    SanUri,
}

impl From<CertFieldName> for portcullis_core::gate::CertField {
    fn from(name: CertFieldName) -> Self {
        use portcullis_core::gate::CertField;
        match name {
            CertFieldName::Cn => CertField::CommonName,
            CertFieldName::Dn => CertField::Subject,
            CertFieldName::SanDns => CertField::SanDns,
            CertFieldName::SanUri => CertField::SanUri,
        }
    }
}

/// A listener's own `max_packet_size`: a size, present only when set.
pub(super) fn some_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    units::size(deserializer).map(Some)
}

/// A listener's own `rate_limit`: present only when set, and then `"off"`
/// or a table, as `limits.rate_limit`.
pub(super) fn some_rate_limit<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<RateLimitConfig>>, D::Error> {
    super::model::rate_limit(deserializer).map(Some)
}

/// `tcp_keepalive = { … }`: the kernel's keepalive probes on every socket
/// the listener accepts, so a peer that vanished without a FIN or RST (a
/// dead NAT entry, a pulled cable, a half-open flood) is noticed and its
/// connection closed even when the client asked for MQTT keep-alive 0 or
/// nothing is being sent to it. Probes are answered by the peer's kernel,
/// not by the MQTT client, and cost one small packet each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepaliveConfig {
    /// Quiet time before the first probe (whole seconds, 1s to 32767s).
    #[serde(default = "default_keepalive_idle", deserialize_with = "units::duration")]
    pub idle: Duration,
    /// Time between unanswered probes (whole seconds, 1s to 32767s).
    #[serde(default = "default_keepalive_interval", deserialize_with = "units::duration")]
    pub interval: Duration,
    /// Unanswered probes after which the connection is closed (1 to 127).
    #[serde(default = "default_keepalive_count")]
    pub count: u32,
}

impl Default for TcpKeepaliveConfig {
    fn default() -> Self {
        TcpKeepaliveConfig {
            idle: default_keepalive_idle(),
            interval: default_keepalive_interval(),
            count: default_keepalive_count(),
        }
    }
}

/// Two minutes of silence before probing: well above MQTT keep-alives of a
/// minute, whose PINGREQs keep the probes from ever being sent.
pub fn default_keepalive_idle() -> Duration {
    Duration::from_secs(120)
}
pub fn default_keepalive_interval() -> Duration {
    Duration::from_secs(20)
}
/// With the defaults a dead peer is dropped 120 + 3 × 20 = 180 s after it
/// last sent anything.
pub fn default_keepalive_count() -> u32 {
    3
}

/// A listener's `tcp_keepalive`: `"off"` or a table (keys left out take
/// their defaults).
pub(super) fn keepalive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<TcpKeepaliveConfig>, D::Error> {
    struct KeepaliveVisitor;
    impl<'de> Visitor<'de> for KeepaliveVisitor {
        type Value = Option<TcpKeepaliveConfig>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table { idle = …, interval = …, count = … } or \"off\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "off" => Ok(None),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            TcpKeepaliveConfig::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(KeepaliveVisitor)
}
