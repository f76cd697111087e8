//! Why a CONNECT is refused, and what each client version is told.
//!
//! Every refusal is one [`Refusal`]: its MQTT 3.x return code, its MQTT 5
//! reason code and the Reason String a v5 client gets (unless it asked for
//! no problem information). The strings name the rule, never a secret,
//! and never tell an unknown user from a wrong password.

use crate::codec::reason::{v3, v5};
use crate::gate::DenyReason;

/// A refused CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An empty client id where the protocol version does not allow one.
    EmptyClientId,
    /// Longer than `limits.max_client_id_len`.
    ClientIdTooLong,
    /// Does not match the listener's `client_id_pattern`.
    ClientIdPattern,
    /// The client id belongs to another identity's session.
    ClientIdInUse,
    /// The listener takes a field from the client certificate, which lacks it.
    CertFieldMissing,
    /// Longer than `limits.max_username_len`.
    UsernameTooLong,
    /// An Authentication Method the gate does not know.
    AuthMethod,
    /// The enhanced-authentication exchange broke the protocol (another
    /// packet than AUTH 0x18, another method, too many rounds, data too
    /// large).
    AuthExchange,
    /// The broker is shutting down.
    ShuttingDown,
    /// A retained will while retained messages are off.
    RetainUnavailable,
    /// The gate refused the credentials.
    Denied(DenyReason),
    /// A provider failed and the chain fails closed.
    AuthUnavailable,
    /// `session.max_sessions` reached.
    TooManySessions,
    /// `session.max_sessions_per_identity` reached.
    TooManySessionsForIdentity,
    /// The cluster's session registry could not be reached (this node is
    /// cut off from it): the client is to try again, here or elsewhere.
    SessionRegistryUnavailable,
    /// A bridge (protocol level with the 0x80 bit, Mosquitto's
    /// `try_private`) on a listener with `accept_bridges = false`: 3.x
    /// return code 1, which makes Mosquitto and RSMB connect again without
    /// the bit.
    BridgeRefused,
}

impl Refusal {
    /// The MQTT 3.1 / 3.1.1 CONNACK return code.
    pub fn v3_code(self) -> u8 {
        match self {
            Refusal::BridgeRefused => v3::UNACCEPTABLE_PROTOCOL_VERSION,
            Refusal::EmptyClientId | Refusal::ClientIdTooLong | Refusal::ClientIdPattern => v3::IDENTIFIER_REJECTED,
            Refusal::ClientIdInUse
            | Refusal::CertFieldMissing
            | Refusal::AuthMethod
            | Refusal::AuthExchange
            | Refusal::RetainUnavailable
            | Refusal::Denied(DenyReason::NotAuthorized | DenyReason::Banned) => v3::NOT_AUTHORIZED,
            Refusal::UsernameTooLong | Refusal::Denied(DenyReason::BadCredentials) => v3::BAD_USER_NAME_OR_PASSWORD,
            Refusal::ShuttingDown
            | Refusal::AuthUnavailable
            | Refusal::TooManySessions
            | Refusal::TooManySessionsForIdentity
            | Refusal::SessionRegistryUnavailable => v3::SERVER_UNAVAILABLE,
        }
    }

    /// The MQTT 5 CONNACK reason code.
    pub fn v5_code(self) -> u8 {
        match self {
            Refusal::EmptyClientId | Refusal::ClientIdTooLong | Refusal::ClientIdPattern | Refusal::ClientIdInUse => {
                v5::CLIENT_IDENTIFIER_NOT_VALID
            }
            Refusal::CertFieldMissing | Refusal::Denied(DenyReason::NotAuthorized) => v5::NOT_AUTHORIZED,
            Refusal::UsernameTooLong | Refusal::Denied(DenyReason::BadCredentials) => v5::BAD_USER_NAME_OR_PASSWORD,
            Refusal::Denied(DenyReason::Banned) => v5::BANNED,
            Refusal::AuthMethod => v5::BAD_AUTHENTICATION_METHOD,
            Refusal::AuthExchange => v5::PROTOCOL_ERROR,
            Refusal::ShuttingDown => v5::SERVER_SHUTTING_DOWN,
            Refusal::RetainUnavailable => v5::RETAIN_NOT_SUPPORTED,
            Refusal::AuthUnavailable | Refusal::SessionRegistryUnavailable => v5::SERVER_UNAVAILABLE,
            Refusal::TooManySessions | Refusal::TooManySessionsForIdentity => v5::QUOTA_EXCEEDED,
            Refusal::BridgeRefused => v5::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }

    /// The code for `version`'s CONNACK.
    pub fn code(self, v5: bool) -> u8 {
        if v5 {
            self.v5_code()
        } else {
            self.v3_code()
        }
    }

    /// The v5 Reason String.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::EmptyClientId => "an empty client identifier needs clean session",
            Refusal::ClientIdTooLong => "client identifier too long",
            Refusal::ClientIdPattern => "client identifier not allowed for this identity",
            Refusal::ClientIdInUse => "client identifier in use by another identity",
            Refusal::CertFieldMissing => "the client certificate lacks the field this listener needs",
            Refusal::UsernameTooLong => "bad user name or password",
            Refusal::AuthMethod => "authentication method not supported",
            Refusal::AuthExchange => "authentication exchange out of protocol",
            Refusal::ShuttingDown => "server shutting down",
            Refusal::RetainUnavailable => "retained messages are not available",
            Refusal::Denied(DenyReason::BadCredentials) => "bad user name or password",
            Refusal::Denied(DenyReason::NotAuthorized) => "not authorized",
            Refusal::Denied(DenyReason::Banned) => "banned after too many failed logins; try again later",
            Refusal::AuthUnavailable => "authentication service unavailable; try again later",
            Refusal::TooManySessions => "the broker holds as many sessions as it may",
            Refusal::TooManySessionsForIdentity => "this identity holds as many sessions as it may",
            Refusal::SessionRegistryUnavailable => "the session registry is unavailable; try again later",
            Refusal::BridgeRefused => "bridge connections are not accepted on this listener",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_refuses() {
        let all = [
            Refusal::EmptyClientId,
            Refusal::ClientIdTooLong,
            Refusal::ClientIdPattern,
            Refusal::ClientIdInUse,
            Refusal::CertFieldMissing,
            Refusal::UsernameTooLong,
            Refusal::AuthMethod,
            Refusal::AuthExchange,
            Refusal::ShuttingDown,
            Refusal::RetainUnavailable,
            Refusal::Denied(DenyReason::BadCredentials),
            Refusal::Denied(DenyReason::NotAuthorized),
            Refusal::Denied(DenyReason::Banned),
            Refusal::AuthUnavailable,
            Refusal::TooManySessions,
            Refusal::TooManySessionsForIdentity,
            Refusal::SessionRegistryUnavailable,
            Refusal::BridgeRefused,
        ];
        for r in all {
            assert!((1..=5).contains(&r.v3_code()), "{r:?}");
            assert!(r.v5_code() >= 0x80, "{r:?}");
            assert!(!r.reason().is_empty());
        }
        // The codes for a client id of another identity.
        assert_eq!((Refusal::ClientIdInUse.v3_code(), Refusal::ClientIdInUse.v5_code()), (0x05, 0x85));
        // A too-long username reads exactly like bad credentials.
        assert_eq!(Refusal::UsernameTooLong.reason(), Refusal::Denied(DenyReason::BadCredentials).reason());
    }
}
