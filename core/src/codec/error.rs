//! Codec errors and how each maps onto the codes the broker sends back.
//!
//! [`DecodeError`] is everything that can be wrong with bytes a peer sent. The
//! connection layer turns one into a v5 DISCONNECT (or CONNACK, before the
//! session exists) with [`DecodeError::v5_reason`], or into a v3 CONNACK
//! return code with [`DecodeError::v3_connack`], and then closes.
//! [`EncodeError`] is a packet value that cannot be put on the wire.

use super::reason::{v3, v5};
use crate::topic::TopicError;

/// Why bytes from a peer are not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The connection's first packet is not CONNECT.
    #[error("first packet is not CONNECT")]
    FirstPacketNotConnect,
    /// The remaining length field is longer than four bytes.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The fixed header declares a packet larger than the allowed maximum.
    #[error("packet larger than the maximum packet size")]
    PacketTooLarge,
    /// Packet type 0, or 15 (AUTH) on MQTT 3.x.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// CONNECT names a protocol other than `MQTT` / `MQIsdp`.
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// CONNECT protocol level (raw byte as sent) not valid for its name.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// Fixed-header flags differ from what the packet type requires, or
    /// reserved bits of subscription options / CONNACK flags are set.
    #[error("invalid reserved flags")]
    InvalidReservedFlags,
    /// QoS 3 in a PUBLISH header or a subscription option.
    #[error("invalid QoS")]
    InvalidQoS,
    /// A string is not well-formed UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string contains U+0000.
    #[error("string contains U+0000")]
    NullCharInString,
    /// A topic name (PUBLISH, will topic) is not valid.
    #[error("invalid topic name: {0}")]
    InvalidTopic(TopicError),
    /// A topic filter (SUBSCRIBE, UNSUBSCRIBE) is not valid.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A packet identifier that must be non-zero is zero.
    #[error("packet identifier is zero")]
    ZeroPacketId,
    /// A property that may appear once appears again.
    #[error("duplicate property 0x{0:02x}")]
    DuplicateProperty(u8),
    /// A known property that this packet may not carry.
    #[error("property 0x{0:02x} not allowed in this packet")]
    PropertyNotAllowed(u8),
    /// A property identifier MQTT 5 does not define.
    #[error("unknown property 0x{0:02x}")]
    UnknownProperty(u8),
    /// A property value out of its range (e.g. Receive Maximum 0).
    #[error("invalid value for property 0x{0:02x}")]
    InvalidPropertyValue(u8),
    /// A reason / return code this packet type may not carry.
    #[error("invalid reason code 0x{0:02x}")]
    InvalidReasonCode(u8),
    /// A length inside the packet runs past the end of the packet.
    #[error("length runs past the end of the packet")]
    Truncated,
    /// Any other malformed packet.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a protocol rule (v5 "Protocol Error").
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// Reserved connect flag set, will flags inconsistent, will QoS 3, or a
    /// password without a user name on MQTT 3.x.
    #[error("invalid CONNECT flags")]
    ConnectFlagsInvalid,
    /// More MQTT 5 user properties (count or bytes) than the limits allow.
    #[error("too many user properties")]
    TooManyUserProperties,
}

impl DecodeError {
    /// MQTT 5 reason code for the DISCONNECT (or the CONNACK, when the
    /// failing packet is the CONNECT) that the server sends before closing.
    pub fn v5_reason(&self) -> u8 {
        use DecodeError::*;
        match self {
            PacketTooLarge => v5::PACKET_TOO_LARGE,
            TooManyUserProperties => v5::QUOTA_EXCEEDED,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => v5::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidTopic(_) => v5::TOPIC_NAME_INVALID,
            InvalidTopicFilter(_) => v5::TOPIC_FILTER_INVALID,
            // Topic Alias 0 is the one property value with its own code.
            InvalidPropertyValue(0x23) => v5::TOPIC_ALIAS_INVALID,
            FirstPacketNotConnect
            | ZeroPacketId
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | InvalidReasonCode(_)
            | ProtocolError(_) => v5::PROTOCOL_ERROR,
            MalformedRemainingLength
            | InvalidPacketType(_)
            | InvalidReservedFlags
            | InvalidQoS
            | InvalidUtf8
            | NullCharInString
            | PropertyNotAllowed(_)
            | UnknownProperty(_)
            | Truncated
            | Malformed(_)
            | ConnectFlagsInvalid => v5::MALFORMED_PACKET,
        }
    }

    /// For a CONNECT that failed to decode on MQTT 3.x: the CONNACK return
    /// code to send before closing, when the spec asks for one. `None` means
    /// close without answering. Client identifier problems are decided by
    /// the connection state machine, not here.
    pub fn v3_connack(&self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocolLevel(_) => Some(v3::UNACCEPTABLE_PROTOCOL_VERSION),
            _ => None,
        }
    }
}

/// Why a packet value cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The body would exceed the 268,435,455-byte remaining length limit.
    #[error("packet exceeds the maximum remaining length")]
    PacketTooLarge,
    /// A string or binary field is longer than 65,535 bytes.
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    /// A QoS 1/2 PUBLISH without a packet identifier.
    #[error("QoS > 0 PUBLISH without a packet identifier")]
    MissingPacketId,
    /// A value that cannot be expressed on the wire (e.g. a subscription
    /// identifier above 268,435,455, an empty SUBSCRIBE).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
    /// A packet the target protocol version does not have (AUTH on 3.x).
    #[error("{0} does not exist in this protocol version")]
    NotInVersion(&'static str),
}
