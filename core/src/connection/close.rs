//! Why a connection ends: [`DisconnectReason`], what the client is told
//! (the v5 DISCONNECT reason code, if any), and how it reads in a log line
//! and in the `client disconnected` hook.

use std::fmt;

use crate::codec::reason::ReasonCode;

/// A rule of MQTT the client broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    SecondConnect,
    AuthWithoutMethod,
    ServerOnlyPacket,
    UnknownTopicAlias,
    TopicAliasOutOfRange,
    InvalidTopic,
    RetainNotAvailable,
    ReceiveMaximumExceeded,
    /// A DISCONNECT set a session expiry after connecting with 0.
    SessionExpiryAfterZero,
    /// A re-authentication (AUTH 0x19) named another Authentication
    /// Method than the CONNECT's (MQTT-4.12.1-1).
    ReauthMethodChanged,
    /// AUTH 0x18 with no exchange in progress, 0x19 during one, another
    /// reason code, too many rounds or data too large.
    AuthOutOfSequence,
}

impl Violation {
    fn code(self) -> ReasonCode {
        match self {
            Violation::SecondConnect
            | Violation::AuthWithoutMethod
            | Violation::ServerOnlyPacket
            | Violation::UnknownTopicAlias
            | Violation::SessionExpiryAfterZero
            | Violation::ReauthMethodChanged
            | Violation::AuthOutOfSequence => ReasonCode::ProtocolError,
            Violation::TopicAliasOutOfRange => ReasonCode::TopicAliasInvalid,
            Violation::InvalidTopic => ReasonCode::TopicNameInvalid,
            Violation::RetainNotAvailable => ReasonCode::RetainNotSupported,
            Violation::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Violation::SecondConnect => "second CONNECT",
            Violation::AuthWithoutMethod => "AUTH without an authentication method",
            Violation::ServerOnlyPacket => "server-only packet sent by a client",
            Violation::UnknownTopicAlias => "unknown topic alias",
            Violation::TopicAliasOutOfRange => "topic alias out of range",
            Violation::InvalidTopic => "invalid topic",
            Violation::RetainNotAvailable => "retain not available",
            Violation::ReceiveMaximumExceeded => "receive maximum exceeded",
            Violation::SessionExpiryAfterZero => "DISCONNECT set a session expiry after connecting with 0",
            Violation::ReauthMethodChanged => "re-authentication with another authentication method",
            Violation::AuthOutOfSequence => "AUTH out of sequence",
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT; `with_will` for reason 0x04 (or any
    /// non-zero reason), which publishes the will.
    ClientDisconnect { with_will: bool },
    /// The peer closed the connection without DISCONNECT.
    PeerClosed,
    /// Reading from the socket failed.
    ReadError,
    /// Writing to the socket failed.
    WriteFailed,
    /// Nothing within 1.5 × the keep-alive.
    KeepAliveTimeout,
    /// A keep-alive 0 client was silent for `limits.idle_timeout`.
    IdleTimeout,
    /// Another connection of the same identity took the session over.
    TakenOver,
    /// The session ended under the connection (another identity's CONNECT
    /// with `owner_mismatch = "discard"`).
    SessionDiscarded,
    /// The broker is shutting down.
    ServerShutdown,
    /// An operator closed the connection.
    AdministrativeAction,
    /// The client stopped reading its messages for longer than
    /// `session.stall_timeout` (`session.on_stuck = "disconnect"`).
    SlowConsumer,
    /// A packet the codec refused; the v5 code it maps to.
    Malformed(ReasonCode),
    /// A rule of the protocol broken.
    Protocol(Violation),
    /// An ACL refusal with `acl.deny_action = "disconnect"`.
    NotAuthorized,
    /// The credentials the client authenticated with expired (a JWT's
    /// `exp` passed) and it did not re-authenticate in time: MQTT 5's
    /// 0xA0 Maximum connect time, with a reason string.
    AuthExpired,
    /// The durable store refused a PUBLISH's commit (disk full, I/O) and
    /// the client speaks 3.x, which has no way to hear it: the connection
    /// closes without the acknowledgement, so the client sends it again.
    StoreFailed,
    /// A re-authentication (AUTH 0x19) was refused.
    ReauthDenied,
    /// A re-authentication could not be decided (a backend failed; fail
    /// closed).
    ReauthUnavailable,
}

impl DisconnectReason {
    /// The DISCONNECT reason an MQTT 5 client is sent, if any.
    pub fn v5_code(self) -> Option<ReasonCode> {
        match self {
            DisconnectReason::ClientDisconnect { .. }
            | DisconnectReason::PeerClosed
            | DisconnectReason::ReadError
            | DisconnectReason::WriteFailed => None,
            DisconnectReason::KeepAliveTimeout | DisconnectReason::IdleTimeout => Some(ReasonCode::KeepAliveTimeout),
            DisconnectReason::TakenOver | DisconnectReason::SessionDiscarded => Some(ReasonCode::SessionTakenOver),
            DisconnectReason::ServerShutdown => Some(ReasonCode::ServerShuttingDown),
            DisconnectReason::AdministrativeAction => Some(ReasonCode::AdministrativeAction),
            DisconnectReason::SlowConsumer => Some(ReasonCode::QuotaExceeded),
            DisconnectReason::Malformed(c) => Some(c),
            DisconnectReason::Protocol(v) => Some(v.code()),
            DisconnectReason::NotAuthorized => Some(ReasonCode::NotAuthorized),
            // Only 3.x connections close for it today (v5 hears PUBACK 0x97);
            // 0x88 Server unavailable is a CONNACK code, not a DISCONNECT
            // one: 0x97 is valid in both PUBACK and DISCONNECT.
            DisconnectReason::StoreFailed => Some(ReasonCode::QuotaExceeded),
            DisconnectReason::ReauthDenied => Some(ReasonCode::NotAuthorized),
            // 0x88 Server unavailable is not a DISCONNECT code; 0x89 Server busy is.
            DisconnectReason::ReauthUnavailable => Some(ReasonCode::ServerBusy),
            // Not 0x87 Not authorized: the client was authorized, and its
            // time is up. 0xA0 says exactly that ("the maximum connection
            // time authorized for this connection has been exceeded"), so
            // a client can tell "fetch a fresh token" from "you are
            // refused", which re-authentication failures (0x87) say.
            DisconnectReason::AuthExpired => Some(ReasonCode::MaximumConnectTime),
        }
    }

    /// The Reason String an MQTT 5 DISCONNECT carries, if any.
    pub fn v5_reason_string(self) -> Option<&'static str> {
        match self {
            DisconnectReason::AuthExpired => Some("authentication expired"),
            _ => None,
        }
    }

    /// A short, stable name: the log line's `reason` and the presence
    /// event's.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect { with_will: false } => "client sent DISCONNECT",
            DisconnectReason::ClientDisconnect { with_will: true } => "client sent DISCONNECT with will",
            DisconnectReason::PeerClosed => "connection closed by peer",
            DisconnectReason::ReadError => "read error",
            DisconnectReason::WriteFailed => "write failed",
            DisconnectReason::KeepAliveTimeout => "keep-alive timeout",
            DisconnectReason::IdleTimeout => "idle timeout (limits.idle_timeout)",
            DisconnectReason::TakenOver => "session taken over",
            DisconnectReason::SessionDiscarded => "session discarded",
            DisconnectReason::ServerShutdown => "server shutting down",
            DisconnectReason::AdministrativeAction => "closed by an administrator",
            DisconnectReason::SlowConsumer => "slow consumer (session.on_stuck = disconnect)",
            DisconnectReason::Malformed(_) => "malformed packet",
            DisconnectReason::Protocol(v) => v.text(),
            DisconnectReason::NotAuthorized => "not authorized (deny_action = disconnect)",
            DisconnectReason::StoreFailed => "the durable store failed",
            DisconnectReason::AuthExpired => "authentication expired",
            DisconnectReason::ReauthDenied => "re-authentication refused",
            DisconnectReason::ReauthUnavailable => "re-authentication backend unavailable",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection ends: why, whether its will is published, and the
/// session expiry its DISCONNECT set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub reason: DisconnectReason,
    /// Publish the will (everything but a normal DISCONNECT and a broker
    /// shutdown).
    pub will: bool,
    /// Session expiry override from the client's DISCONNECT.
    pub expiry: Option<u32>,
}

impl Close {
    /// An ending with the will published.
    pub fn new(reason: DisconnectReason) -> Close {
        Close { reason, will: true, expiry: None }
    }

    pub fn protocol(v: Violation) -> Close {
        Close::new(DisconnectReason::Protocol(v))
    }

    pub fn shutdown() -> Close {
        Close { reason: DisconnectReason::ServerShutdown, will: false, expiry: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(DisconnectReason::PeerClosed.v5_code(), None);
        assert_eq!(DisconnectReason::TakenOver.v5_code(), Some(ReasonCode::SessionTakenOver));
        assert_eq!(
            DisconnectReason::Protocol(Violation::TopicAliasOutOfRange).v5_code(),
            Some(ReasonCode::TopicAliasInvalid)
        );
        assert_eq!(DisconnectReason::Malformed(ReasonCode::PacketTooLarge).to_string(), "malformed packet");
        assert_eq!(DisconnectReason::KeepAliveTimeout.as_str(), "keep-alive timeout");
        assert!(!Close::shutdown().will && Close::new(DisconnectReason::ReadError).will);
    }
}
