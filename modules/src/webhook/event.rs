//! The events and their JSON, in the shapes of EMQX 4.3's `emqx_web_hook`
//! (an `action` field naming the event, `node`, `clientid`, `username`,
//! `from_client_id`, `ts` in milliseconds …), plus a few fields EMQX does
//! not send, named in each builder.
//!
//! Each builder is a pure function of what the hook saw and the time, so
//! the shapes are unit-tested without a broker.

use std::net::IpAddr;

use base64::Engine as _;
use portcullis_core::codec::{QoS, SubscriptionOptions};
use portcullis_core::connection::DisconnectReason;
use portcullis_core::hooks::SessionEndReason;
use portcullis_core::metrics::DropReason;
use portcullis_core::owner::SessionOwner;
use serde::Serialize;

use super::config::PayloadEncoding;

/// An event that can be sent, by its EMQX name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ClientConnected,
    ClientDisconnected,
    /// A SUBSCRIBE's filter as requested: before the ACL, as EMQX's
    /// `client.subscribe`.
    ClientSubscribe,
    ClientUnsubscribe,
    SessionCreated,
    SessionResumed,
    SessionTerminated,
    /// A client's PUBLISH (or will) before the ACL judges it.
    MessagePublish,
    MessageDelivered,
    MessageAcked,
    MessageDropped,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::ClientConnected,
        EventKind::ClientDisconnected,
        EventKind::ClientSubscribe,
        EventKind::ClientUnsubscribe,
        EventKind::SessionCreated,
        EventKind::SessionResumed,
        EventKind::SessionTerminated,
        EventKind::MessagePublish,
        EventKind::MessageDelivered,
        EventKind::MessageAcked,
        EventKind::MessageDropped,
    ];

    /// The name in `events`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ClientConnected => "client.connected",
            EventKind::ClientDisconnected => "client.disconnected",
            EventKind::ClientSubscribe => "client.subscribe",
            EventKind::ClientUnsubscribe => "client.unsubscribe",
            EventKind::SessionCreated => "session.created",
            EventKind::SessionResumed => "session.resumed",
            EventKind::SessionTerminated => "session.terminated",
            EventKind::MessagePublish => "message.publish",
            EventKind::MessageDelivered => "message.delivered",
            EventKind::MessageAcked => "message.acked",
            EventKind::MessageDropped => "message.dropped",
        }
    }

    /// The `action` field of its JSON.
    pub fn action(self) -> &'static str {
        match self {
            EventKind::ClientConnected => "client_connected",
            EventKind::ClientDisconnected => "client_disconnected",
            EventKind::ClientSubscribe => "client_subscribe",
            EventKind::ClientUnsubscribe => "client_unsubscribe",
            EventKind::SessionCreated => "session_created",
            EventKind::SessionResumed => "session_resumed",
            EventKind::SessionTerminated => "session_terminated",
            EventKind::MessagePublish => "message_publish",
            EventKind::MessageDelivered => "message_delivered",
            EventKind::MessageAcked => "message_acked",
            EventKind::MessageDropped => "message_dropped",
        }
    }

    /// Whether `topics` filters it.
    pub fn is_message(self) -> bool {
        matches!(
            self,
            EventKind::MessagePublish
                | EventKind::MessageDelivered
                | EventKind::MessageAcked
                | EventKind::MessageDropped
        )
    }

    /// Every name, for error messages.
    pub fn names() -> String {
        EventKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }

    /// The kind named `name`; EMQX events the hooks cannot see get a
    /// reason.
    pub fn parse(name: &str) -> Result<EventKind, String> {
        if let Some(k) = EventKind::ALL.iter().find(|k| k.name() == name) {
            return Ok(*k);
        }
        Err(match name {
            "session.subscribed" | "session.unsubscribed" => format!(
                "{name:?} is not available: no hook runs after the ACL has granted a subscription; \
                 client.subscribe / client.unsubscribe carry the filter as requested"
            ),
            "client.connect" | "client.connack" => {
                format!("{name:?} is not available: hooks see admitted clients only (client.connected)")
            }
            _ => format!("unknown event {name:?}; expected one of {}", EventKind::names()),
        })
    }
}

/// A bit set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSet(u16);

impl EventSet {
    pub fn of(kinds: &[EventKind]) -> EventSet {
        EventSet(kinds.iter().fold(0, |m, k| m | EventSet::bit(*k)))
    }
    fn bit(k: EventKind) -> u16 {
        1 << (k as u16)
    }
    pub fn has(self, k: EventKind) -> bool {
        self.0 & EventSet::bit(k) != 0
    }
}

/// How message payloads are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadFormat {
    pub encoding: PayloadEncoding,
    /// Bytes of payload written at most.
    pub max: usize,
}

/// What an event says of a message, EMQX's fields plus
/// `payload_truncated` and `payload_size` when the payload was cut.
#[derive(Debug, Serialize)]
pub struct MessageFields<'a> {
    pub topic: &'a str,
    pub qos: u8,
    pub retain: bool,
    pub payload: String,
    /// Present (true) when the payload was cut to `max_payload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_truncated: Option<bool>,
    /// The payload's full size in bytes, when it was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_size: Option<usize>,
    /// When the event happened, milliseconds since the epoch.
    pub ts: u64,
}

impl<'a> MessageFields<'a> {
    pub fn new(topic: &'a str, qos: QoS, retain: bool, payload: &[u8], f: PayloadFormat, ts: u64) -> Self {
        let size = payload.len();
        let cut = size > f.max;
        let shown = &payload[..size.min(f.max)];
        let text = match f.encoding {
            PayloadEncoding::Plain => String::from_utf8_lossy(shown).into_owned(),
            PayloadEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(shown),
        };
        MessageFields {
            topic,
            qos: qos as u8,
            retain,
            payload: text,
            payload_truncated: cut.then_some(true),
            payload_size: cut.then_some(size),
            ts,
        }
    }
}

/// The client fields every client event starts with.
#[derive(Debug, Serialize)]
pub struct Who<'a> {
    pub action: &'static str,
    pub node: &'a str,
    pub clientid: &'a str,
    pub username: Option<&'a str>,
}

/// `client.connected`: EMQX's fields plus `clean_start`.
#[derive(Debug, Serialize)]
pub struct Connected<'a> {
    #[serde(flatten)]
    pub who: Who<'a>,
    pub ipaddress: String,
    pub keepalive: u16,
    pub proto_ver: ProtoVer,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
    pub clean_start: bool,
}

/// `proto_ver`: the MQTT level (3, 4, 5) as EMQX sends it; for a STOMP
/// client the version as a string (`"1.2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProtoVer {
    Mqtt(u8),
    Stomp(&'static str),
}

impl ProtoVer {
    pub fn of(p: portcullis_core::gate::ClientProtocol) -> ProtoVer {
        match p.mqtt_level() {
            Some(l) => ProtoVer::Mqtt(l),
            None => ProtoVer::Stomp(p.version()),
        }
    }
}

/// `client.disconnected`.
#[derive(Debug, Serialize)]
pub struct Disconnected<'a> {
    #[serde(flatten)]
    pub who: Who<'a>,
    pub reason: &'static str,
    /// Milliseconds since the epoch.
    pub disconnected_at: u64,
}

/// `opts` of `client.subscribe` (EMQX's subscription option names).
#[derive(Debug, Serialize)]
pub struct SubOpts {
    pub qos: u8,
    pub nl: u8,
    pub rap: u8,
    pub rh: u8,
}

impl From<&SubscriptionOptions> for SubOpts {
    fn from(o: &SubscriptionOptions) -> SubOpts {
        SubOpts {
            qos: o.qos as u8,
            nl: u8::from(o.no_local),
            rap: u8::from(o.retain_as_published),
            rh: o.retain_handling as u8,
        }
    }
}

/// `client.subscribe` (with `opts`) and `client.unsubscribe` (without).
#[derive(Debug, Serialize)]
pub struct Subscribed<'a> {
    #[serde(flatten)]
    pub who: Who<'a>,
    pub topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opts: Option<SubOpts>,
}

/// `session.created`, `session.resumed`, `session.terminated` (with
/// `reason`).
#[derive(Debug, Serialize)]
pub struct Session<'a> {
    #[serde(flatten)]
    pub who: Who<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// `message.publish`: the publisher and the message.
#[derive(Debug, Serialize)]
pub struct Published<'a> {
    pub action: &'static str,
    pub node: &'a str,
    pub from_client_id: Option<&'a str>,
    pub from_username: Option<&'a str>,
    #[serde(flatten)]
    pub msg: MessageFields<'a>,
}

/// `message.delivered` and `message.acked`: the receiving client, the
/// publisher (`from_username` is null: a routed message does not carry
/// it) and the message.
#[derive(Debug, Serialize)]
pub struct Delivered<'a> {
    #[serde(flatten)]
    pub who: Who<'a>,
    pub from_client_id: Option<&'a str>,
    pub from_username: Option<&'a str>,
    #[serde(flatten)]
    pub msg: MessageFields<'a>,
}

/// `message.dropped`: as `message.publish`, plus `reason` and `clientid`
/// (the session it was bound for; null when it was dropped before
/// routing).
#[derive(Debug, Serialize)]
pub struct Dropped<'a> {
    pub action: &'static str,
    pub node: &'a str,
    pub clientid: Option<&'a str>,
    pub from_client_id: Option<&'a str>,
    pub from_username: Option<&'a str>,
    #[serde(flatten)]
    pub msg: MessageFields<'a>,
    pub reason: &'static str,
}

/// A peer address as EMQX writes `ipaddress`.
pub fn ipaddress(ip: IpAddr) -> String {
    ip.to_string()
}

/// The username a session event carries: the owner's, when it is one.
pub fn owner_username(owner: &SessionOwner) -> Option<&str> {
    match owner {
        SessionOwner::User(u) => Some(u),
        SessionOwner::Cert(_) | SessionOwner::Anonymous(_) | SessionOwner::Unknown => None,
    }
}

/// `reason` of `client.disconnected`, in EMQX's words where it has one.
pub fn disconnect_reason(r: DisconnectReason) -> &'static str {
    match r {
        DisconnectReason::ClientDisconnect { .. } => "normal",
        DisconnectReason::PeerClosed => "tcp_closed",
        DisconnectReason::ReadError | DisconnectReason::WriteFailed => "sock_error",
        DisconnectReason::KeepAliveTimeout => "keepalive_timeout",
        DisconnectReason::IdleTimeout => "idle_timeout",
        DisconnectReason::TakenOver => "takenover",
        DisconnectReason::SessionDiscarded => "discarded",
        DisconnectReason::ServerShutdown => "shutdown",
        DisconnectReason::AdministrativeAction => "kicked",
        DisconnectReason::Malformed(_) => "frame_error",
        DisconnectReason::Protocol(_) => "protocol_error",
        DisconnectReason::NotAuthorized => "not_authorized",
        DisconnectReason::SlowConsumer => "slow_consumer",
        DisconnectReason::StoreFailed => "store_failed",
        DisconnectReason::AuthExpired => "auth_expired",
        DisconnectReason::ReauthDenied => "not_authorized",
        DisconnectReason::ReauthUnavailable => "auth_unavailable",
    }
}

/// `reason` of `session.terminated`.
pub fn session_end_reason(r: SessionEndReason) -> &'static str {
    match r {
        SessionEndReason::ConnectionClosed => "normal",
        SessionEndReason::Expired => "expired",
        SessionEndReason::Replaced | SessionEndReason::Discarded => "discarded",
    }
}

/// `reason` of `message.dropped`: the `$SYS` metric's name
/// (`no_subscribers`, `queue_full`, `expired`, `denied`, …).
pub fn drop_reason(r: DropReason) -> &'static str {
    r.name()
}

/// Serializes an event; these types cannot fail to serialize, but a
/// failure would drop the event rather than panic.
pub fn to_json<T: Serialize>(ev: &T) -> Option<String> {
    serde_json::to_string(ev).ok()
}
