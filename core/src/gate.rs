//! The `Gate` port: the one place the core asks for auth and ACL decisions.
//!
//! The connection state machine calls [`Gate::authenticate`] once per
//! CONNECT and [`Gate::authorize`] for every SUBSCRIBE filter and every
//! PUBLISH. It knows nothing about providers; the server's gateway composes
//! the auth and ACL chains behind this trait. Deny and failure are distinct
//! outcomes all the way to the reason code the client sees.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{ProtocolVersion, QoS};
use crate::topic::{SubscriptionFilter, TopicName};

/// A boxed future, so `Gate` stays object safe.
pub type GateFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A password as sent by the client. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Bytes);

impl Password {
    pub fn new(b: Bytes) -> Password {
        Password(b)
    }
    /// The raw bytes, for a provider to verify. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What a CONNECT asks to be admitted with.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    pub password: Option<Password>,
    /// The client's address (after PROXY protocol, when that exists).
    pub peer: SocketAddr,
    /// Name of the listener the client came in on.
    pub listener: Arc<str>,
    pub protocol: ClientProtocol,
    /// The verified client certificate (TLS listeners only).
    pub cert: Option<Arc<CertIdentity>>,
}

/// What a client speaks on the wire: MQTT at a level, or STOMP through
/// the gateway. Set by whoever calls the admission step; providers,
/// modules and the admin API read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientProtocol {
    Mqtt(ProtocolVersion),
    Stomp(StompVersion),
}

/// A STOMP version, as the gateway negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StompVersion {
    V10,
    V11,
    V12,
}

impl From<ProtocolVersion> for ClientProtocol {
    fn from(v: ProtocolVersion) -> ClientProtocol {
        ClientProtocol::Mqtt(v)
    }
}

impl ClientProtocol {
    /// True for MQTT 5.0 only (MQTT 5 features, properties).
    pub fn is_v5(self) -> bool {
        matches!(self, ClientProtocol::Mqtt(ProtocolVersion::V5))
    }
    /// The MQTT protocol level (3, 4, 5); `None` for STOMP.
    pub fn mqtt_level(self) -> Option<u8> {
        match self {
            ClientProtocol::Mqtt(v) => Some(v.level()),
            ClientProtocol::Stomp(_) => None,
        }
    }
    /// `mqtt` or `stomp`.
    pub fn family(self) -> &'static str {
        match self {
            ClientProtocol::Mqtt(_) => "mqtt",
            ClientProtocol::Stomp(_) => "stomp",
        }
    }
    /// The version within the family: `3.1`, `3.1.1`, `5.0`; `1.0`,
    /// `1.1`, `1.2`.
    pub fn version(self) -> &'static str {
        match self {
            ClientProtocol::Mqtt(ProtocolVersion::V31) => "3.1",
            ClientProtocol::Mqtt(ProtocolVersion::V311) => "3.1.1",
            ClientProtocol::Mqtt(ProtocolVersion::V5) => "5.0",
            ClientProtocol::Stomp(StompVersion::V10) => "1.0",
            ClientProtocol::Stomp(StompVersion::V11) => "1.1",
            ClientProtocol::Stomp(StompVersion::V12) => "1.2",
        }
    }
    /// The protocol name a CONNECT carries (`MQIsdp` for 3.1, `MQTT`), or
    /// `STOMP`.
    pub fn name(self) -> &'static str {
        match self {
            ClientProtocol::Mqtt(ProtocolVersion::V31) => "MQIsdp",
            ClientProtocol::Mqtt(_) => "MQTT",
            ClientProtocol::Stomp(_) => "STOMP",
        }
    }
    /// One byte per protocol and version (cache keys): the MQTT level, or
    /// `0x10` + the STOMP minor version.
    pub fn code(self) -> u8 {
        match self {
            ClientProtocol::Mqtt(v) => v.level(),
            ClientProtocol::Stomp(StompVersion::V10) => 0x10,
            ClientProtocol::Stomp(StompVersion::V11) => 0x11,
            ClientProtocol::Stomp(StompVersion::V12) => 0x12,
        }
    }
}

/// What a verified client certificate says about its holder; providers
/// see it as `${cert_common_name}` and `${cert_subject}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject's first CN, if any.
    pub common_name: Option<String>,
    /// The subject DN in RFC 4514 form (`CN=dev42,O=Acme`).
    pub subject: String,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
}

/// A part of a client certificate a listener can take a username or a
/// client id from (`peer_cert_as_username = "cn"` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// The subject's first CN.
    CommonName,
    /// The whole subject DN, RFC 4514 form.
    Subject,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first URI among the subject alternative names.
    SanUri,
}

impl CertIdentity {
    /// The value of `field`, when the certificate has it and it is not empty.
    pub fn field(&self, field: CertField) -> Option<&str> {
        let value = match field {
            CertField::CommonName => self.common_name.as_deref(),
            CertField::Subject => Some(self.subject.as_str()),
            CertField::SanDns => self.san_dns.first().map(String::as_str),
            CertField::SanUri => self.san_uri.first().map(String::as_str),
        };
        value.filter(|v| !v.is_empty())
    }
}

/// Opaque per-client data the gateway attaches at authentication (for
/// example ACL rules a backend returned with the user) and reads back on
/// every ACL check. The core only carries it.
pub type ClientContext = Arc<dyn Any + Send + Sync>;

/// Identity of an admitted client, for ACL checks.
#[derive(Clone)]
pub struct ClientInfo {
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    pub peer: SocketAddr,
    pub listener: Arc<str>,
    pub protocol: ClientProtocol,
    /// Set by authentication; the ACL chain bypasses its rules for superusers.
    pub superuser: bool,
    /// Whatever the gateway attached at authentication.
    pub context: Option<ClientContext>,
    /// Unique per connection for the life of the process (cache keys).
    pub conn_id: u64,
    /// The verified client certificate (TLS listeners only).
    pub cert: Option<Arc<CertIdentity>>,
    /// When the client was admitted (Unix time, milliseconds).
    pub connected_at: u64,
    /// The keep-alive in force (seconds; 0 = none).
    pub keep_alive: u16,
}

impl ClientInfo {
    /// Now as [`ClientInfo::connected_at`] counts it.
    pub fn now_millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInfo")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("peer", &self.peer)
            .field("listener", &self.listener)
            .field("protocol", &self.protocol)
            .field("superuser", &self.superuser)
            .field("context", &self.context.is_some())
            .field("conn_id", &self.conn_id)
            .field("cert", &self.cert)
            .field("connected_at", &self.connected_at)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// Credentials wrong: 3.1.1 0x04, v5 0x86.
    BadCredentials,
    /// Not allowed to connect: 3.1.1 0x05, v5 0x87.
    NotAuthorized,
    /// Banned: 3.1.1 0x05, v5 0x8A.
    Banned,
}

/// Result of authentication.
#[derive(Clone)]
pub enum AuthOutcome {
    Allow {
        superuser: bool,
        context: Option<ClientContext>,
        /// The session ends then (wall clock): the credentials expire (a
        /// JWT's `exp`). The connection holds it as its auth deadline
        /// (`Conn::auth_deadline`) and closes when it passes.
        expires_at: Option<std::time::SystemTime>,
    },
    Deny(DenyReason),
    /// A backend failed and the chain fails closed: 3.1.1 0x03, v5 0x88.
    Unavailable,
}

impl AuthOutcome {
    /// An allow without context.
    pub fn allow(superuser: bool) -> AuthOutcome {
        AuthOutcome::Allow { superuser, context: None, expires_at: None }
    }
}

impl fmt::Debug for AuthOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthOutcome::Allow { superuser, context, expires_at } => f
                .debug_struct("Allow")
                .field("superuser", superuser)
                .field("context", &context.is_some())
                .field("expires_at", expires_at)
                .finish(),
            AuthOutcome::Deny(r) => f.debug_tuple("Deny").field(r).finish(),
            AuthOutcome::Unavailable => f.write_str("Unavailable"),
        }
    }
}

impl PartialEq for AuthOutcome {
    /// Compares decisions; contexts are compared by identity.
    fn eq(&self, other: &AuthOutcome) -> bool {
        match (self, other) {
            (
                AuthOutcome::Allow { superuser: a, context: ca, expires_at: ea },
                AuthOutcome::Allow { superuser: b, context: cb, expires_at: eb },
            ) => {
                a == b
                    && ea == eb
                    && match (ca, cb) {
                        (None, None) => true,
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        _ => false,
                    }
            }
            (AuthOutcome::Deny(a), AuthOutcome::Deny(b)) => a == b,
            (AuthOutcome::Unavailable, AuthOutcome::Unavailable) => true,
            _ => false,
        }
    }
}

/// What a client wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Publish { topic: &'a TopicName, qos: QoS, retain: bool },
    Subscribe { filter: &'a SubscriptionFilter, qos: QoS },
}

/// Result of an ACL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclOutcome {
    Allow,
    /// Refuse this action (SUBACK/PUBACK failure code) and carry on.
    Deny,
    /// Refuse and close the connection (`deny_action = disconnect`).
    DenyDisconnect,
}

/// The port the core calls for every decision.
pub trait Gate: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, AuthOutcome>;
    fn authorize<'a>(&'a self, client: &'a ClientInfo, access: Access<'a>) -> GateFuture<'a, AclOutcome>;
    /// Check every message against the ACL again at delivery (as a
    /// subscription to its topic). Off by default: it costs an ACL lookup
    /// per delivered message.
    fn check_on_delivery(&self) -> bool {
        false
    }
    /// Asked once [`Gate::authorize`] granted a SUBSCRIBE filter: must each
    /// message delivered through this subscription be checked again, as a
    /// subscription to its topic (what [`Gate::check_on_delivery`] does for
    /// every message)? Yes when a deny rule that could apply to the client
    /// overlaps the filter (`deny secret/#` and a granted `#`). The answer
    /// is kept with the subscription; deliveries through unmarked ones
    /// cost no lookup. Default: no.
    fn needs_delivery_check(&self, _client: &ClientInfo, _filter: &SubscriptionFilter) -> bool {
        false
    }
    /// Reason code an MQTT 5 client gets in SUBACK / PUBACK / PUBREC for a
    /// denied action: 0x87 (not authorized) unless configured otherwise.
    fn v5_deny_reason(&self) -> u8 {
        crate::codec::reason::v5::NOT_AUTHORIZED
    }
    /// How long a connection may reuse an *allowed* publish decision for
    /// the same topic, QoS and retain flag without asking
    /// [`Gate::authorize`] again. `None` (the default): ask every time.
    /// Reuse also ends as soon as [`Gate::acl_epoch`] moves.
    fn publish_allow_reuse(&self) -> Option<Duration> {
        None
    }
    /// A counter that moves whenever decisions the gate handed out may no
    /// longer hold (a policy reload dropped its cached decisions).
    fn acl_epoch(&self) -> u64 {
        0
    }
    /// Starts an MQTT 5 enhanced-authentication exchange for the
    /// Authentication Method `method` (see [`crate::enhanced`]); `None`
    /// when this gate knows no such method (CONNACK 0x8C, or DISCONNECT
    /// 0x8C for a re-authentication). Default: no method.
    fn enhanced_auth(
        &self,
        _method: &str,
        _info: &ConnectInfo,
        _purpose: crate::enhanced::Purpose,
    ) -> Option<Box<dyn crate::enhanced::Exchange>> {
        None
    }
    /// A connected client re-authenticated and its identity-derived state
    /// (superuser flag, inline ACL) was replaced: decisions handed out for
    /// `client` before must not be reused. Default: nothing cached.
    fn reauthenticated(&self, _client: &ClientInfo) {}
}

/// The last publish a connection was allowed (see
/// [`Gate::publish_allow_reuse`]): a stream of messages to one topic asks
/// the gate once per reuse window, not once per message.
#[derive(Debug, Clone)]
pub struct PublishMemo {
    pub topic: TopicName,
    pub qos: QoS,
    pub retain: bool,
    /// [`Gate::acl_epoch`] read before the decision was asked for.
    pub epoch: u64,
    pub until: Instant,
}

impl PublishMemo {
    /// Whether this remembered allow still answers for `access` now.
    pub fn permits(&self, access: &Access<'_>, epoch: u64, now: Instant) -> bool {
        match access {
            Access::Publish { topic, qos, retain } => {
                self.epoch == epoch
                    && now < self.until
                    && self.qos == *qos
                    && self.retain == *retain
                    && self.topic == **topic
            }
            Access::Subscribe { .. } => false,
        }
    }
}

/// The embedded default: anonymous clients from loopback only, everything
/// allowed once connected. Used when no auth provider is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackOnly;

impl Gate for LoopbackOnly {
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, AuthOutcome> {
        let loopback = info.peer.ip().is_loopback()
            || match info.peer.ip() {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
                std::net::IpAddr::V4(_) => false,
            };
        Box::pin(async move {
            if loopback {
                AuthOutcome::allow(false)
            } else {
                AuthOutcome::Deny(DenyReason::NotAuthorized)
            }
        })
    }

    fn authorize<'a>(&'a self, _client: &'a ClientInfo, _access: Access<'a>) -> GateFuture<'a, AclOutcome> {
        Box::pin(async { AclOutcome::Allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: &str) -> ConnectInfo {
        ConnectInfo {
            client_id: Arc::from("c"),
            username: None,
            password: Some(Password::new(Bytes::from_static(b"hunter2"))),
            peer: peer.parse().unwrap(),
            listener: Arc::from("tcp"),
            protocol: ProtocolVersion::V311.into(),
            cert: None,
        }
    }

    #[tokio::test]
    async fn loopback_only_admits_loopback_and_refuses_others() {
        let g = LoopbackOnly;
        for ok in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert_eq!(g.authenticate(&info(ok)).await, AuthOutcome::allow(false), "{ok}");
        }
        for no in ["10.0.0.1:1", "192.168.1.2:1", "[2001:db8::1]:1", "[::ffff:10.0.0.1]:1", "0.0.0.0:1"] {
            assert_eq!(g.authenticate(&info(no)).await, AuthOutcome::Deny(DenyReason::NotAuthorized), "{no}");
        }
    }

    #[test]
    fn cert_fields() {
        let id = CertIdentity {
            common_name: Some("dev42".into()),
            subject: "CN=dev42,O=Acme".into(),
            san_dns: vec!["dev42.example".into(), "other.example".into()],
            san_uri: vec![],
        };
        assert_eq!(id.field(CertField::CommonName), Some("dev42"));
        assert_eq!(id.field(CertField::Subject), Some("CN=dev42,O=Acme"));
        assert_eq!(id.field(CertField::SanDns), Some("dev42.example"));
        assert_eq!(id.field(CertField::SanUri), None);
        assert_eq!(CertIdentity::default().field(CertField::Subject), None);
        let empty_cn = CertIdentity { common_name: Some(String::new()), ..id };
        assert_eq!(empty_cn.field(CertField::CommonName), None);
    }

    #[test]
    fn password_debug_is_redacted() {
        let i = info("127.0.0.1:1");
        let s = format!("{i:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("redacted"), "{s}");
    }
}
