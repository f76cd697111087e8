//! One malformed packet per validation rule.

use crate::topic::TopicError;

use super::*;
use DecodeError as E;

/// A CONNECT body: protocol name, level, flags, keep alive 60, then `rest`
/// (properties on v5, then the payload).
fn connect_body(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut b = vec![0, name.len() as u8];
    b.extend_from_slice(name);
    b.extend_from_slice(&[level, flags, 0, 60]);
    b.extend_from_slice(rest);
    b
}

fn connect311(flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(0x10, &connect_body(b"MQTT", 4, flags, payload))
}

fn connect5(flags: u8, props_and_payload: &[u8]) -> Vec<u8> {
    frame(0x10, &connect_body(b"MQTT", 5, flags, props_and_payload))
}

#[test]
fn first_packet_must_be_connect() {
    assert_eq!(dec_err(&[0xC0, 0], None), E::FirstPacketNotConnect);
    // Known from the first byte alone.
    assert_eq!(dec_err(&[0x30], None), E::FirstPacketNotConnect);
    assert_eq!(dec_err(&[0x00], None), E::FirstPacketNotConnect);
    assert_eq!(E::FirstPacketNotConnect.v5_reason(), reason::v5::PROTOCOL_ERROR);
}

#[test]
fn packet_types() {
    assert_eq!(dec_err(&[0x00, 0], Some(V311)), E::InvalidPacketType(0));
    assert_eq!(dec_err(&[0xF0, 0], Some(V311)), E::InvalidPacketType(15));
    assert_eq!(dec_err(&[0xF0, 0], Some(V31)), E::InvalidPacketType(15));
}

#[test]
fn reserved_header_flags() {
    for v in ALL {
        for first in [0xC1, 0xD8, 0xE2, 0x41, 0x60, 0x64, 0x80, 0x83, 0xA0, 0x22, 0x91, 0xB4] {
            let err = dec_err(&frame(first, &[0, 1, 0, 1, b'a', 0]), Some(v));
            assert_eq!(err, E::InvalidReservedFlags, "{first:02x} {v:?}");
        }
    }
    let mut c = connect311(0x02, &[0, 0]);
    c[0] = 0x11;
    assert_eq!(dec_err(&c, None), E::InvalidReservedFlags);
    // DUP on SUBSCRIBE only in 3.1.
    assert_eq!(dec_err(&[0x8A, 6, 0, 1, 0, 1, b'a', 0], Some(V311)), E::InvalidReservedFlags);
}

#[test]
fn publish_header() {
    for v in ALL {
        assert_eq!(dec_err(&[0x36, 5, 0, 1, b'a', 0, 1], Some(v)), E::InvalidQoS);
    }
    // DUP on QoS 0.
    for v in [V311, V5] {
        assert!(matches!(dec_err(&[0x38, 3, 0, 1, b'a'], Some(v)), E::Malformed(_)));
    }
}

#[test]
fn remaining_length() {
    // Five length bytes.
    assert_eq!(dec_err(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], Some(V311)), E::MalformedRemainingLength);
    // Known as soon as the fourth length byte has its continuation bit.
    assert_eq!(dec_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], Some(V311)), E::MalformedRemainingLength);
    assert_eq!(dec(&[0x30, 0xFF, 0xFF, 0xFF], Some(V311)), Ok(None));
    assert_eq!(dec(&[0x10, 0xFF, 0xFF], None), Ok(None));
}

#[test]
fn packet_too_large_from_the_fixed_header_alone() {
    // Declares 268,435,455 bytes; only the 5 header bytes are present.
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    for v in ALL {
        assert_eq!(dec_err(&header, Some(v)), E::PacketTooLarge);
    }
    assert_eq!(dec_err(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F], None), E::PacketTooLarge);
    assert_eq!(E::PacketTooLarge.v5_reason(), reason::v5::PACKET_TOO_LARGE);
    // The limit counts the whole packet, fixed header included.
    let ping = [0xC0, 0];
    let mut buf = BytesMut::from(&ping[..]);
    assert_eq!(decode(&mut buf, Some(V311), 2), Ok(Some(Packet::PingReq)));
    let mut buf = BytesMut::from(&ping[..]);
    assert_eq!(decode(&mut buf, Some(V311), 1), Err(E::PacketTooLarge));
    let publish = frame(0x30, &[0, 1, b'a', 1, 2, 3]);
    let mut buf = BytesMut::from(&publish[..5]);
    assert_eq!(decode(&mut buf, Some(V311), 7), Err(E::PacketTooLarge));
}

#[test]
fn connect_protocol() {
    let bad_name = frame(0x10, &connect_body(b"MQTX", 4, 2, &[0, 0]));
    assert_eq!(dec_err(&bad_name, None), E::InvalidProtocolName);
    assert_eq!(peek_connect_version(&bad_name), None);
    for (name, level) in [(&b"MQTT"[..], 3u8), (b"MQTT", 6), (b"MQTT", 2), (b"MQIsdp", 4), (b"MQTT", 0x86)] {
        let bytes = frame(0x10, &connect_body(name, level, 2, &[0, 0]));
        let err = dec_err(&bytes, None);
        assert_eq!(err, E::UnsupportedProtocolLevel(level));
        assert_eq!(err.v3_connack(), Some(reason::v3::UNACCEPTABLE_PROTOCOL_VERSION));
        assert_eq!(err.v5_reason(), reason::v5::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(peek_connect_version(&bytes), None);
    }
    assert_eq!(E::Truncated.v3_connack(), None);
}

#[test]
fn connect_flags() {
    // Reserved bit, will QoS / retain without will, will QoS 3.
    for flags in [0x03, 0x0A, 0x12, 0x22, 0x1E] {
        assert_eq!(dec_err(&connect311(flags, &[0, 0, 0, 1, b't', 0, 0]), None), E::ConnectFlagsInvalid);
    }
    // Password without user name: invalid on 3.x, fine on v5.
    assert_eq!(dec_err(&connect311(0x42, &[0, 0, 0, 1, b'p']), None), E::ConnectFlagsInvalid);
    let v31 = frame(0x10, &connect_body(b"MQIsdp", 3, 0x42, &[0, 1, b'c', 0, 1, b'p']));
    assert_eq!(dec_err(&v31, None), E::ConnectFlagsInvalid);
    let Packet::Connect(c) = dec_ok(&connect5(0x42, &[0, 0, 0, 0, 1, b'p']), None) else {
        panic!("not a CONNECT");
    };
    assert_eq!((c.username, c.password.as_deref()), (None, Some(&b"p"[..])));
}

#[test]
fn connect_payload() {
    // Client id length runs past the packet.
    assert_eq!(dec_err(&connect311(0x02, &[0, 5, b'a']), None), E::Truncated);
    // A byte after the last field.
    assert!(matches!(dec_err(&connect311(0x02, &[0, 1, b'a', 0]), None), E::Malformed(_)));
    // Missing username although flagged.
    assert_eq!(dec_err(&connect311(0x82, &[0, 1, b'a']), None), E::Truncated);
    assert_eq!(dec_err(&connect311(0x02, &[0, 2, 0xC3, 0x28]), None), E::InvalidUtf8);
    // UTF-16 surrogate encoded in UTF-8 (ED A0 80) is not well-formed.
    assert_eq!(dec_err(&connect311(0x02, &[0, 3, 0xED, 0xA0, 0x80]), None), E::InvalidUtf8);
    assert_eq!(dec_err(&connect311(0x02, &[0, 1, 0]), None), E::NullCharInString);
    assert_eq!(dec_err(&connect311(0x82, &[0, 0, 0, 2, b'u', 0]), None), E::NullCharInString);
    // Will topic must be a valid topic name.
    let will = |topic: &[u8]| {
        let mut p = vec![0, 0, 0, topic.len() as u8];
        p.extend_from_slice(topic);
        p.extend_from_slice(&[0, 0]);
        connect311(0x06, &p)
    };
    assert_eq!(dec_err(&will(b"a/+"), None), E::InvalidTopic(TopicError::WildcardInName));
    assert_eq!(dec_err(&will(b""), None), E::InvalidTopic(TopicError::Empty));
    assert_eq!(E::InvalidTopic(TopicError::Empty).v5_reason(), reason::v5::TOPIC_NAME_INVALID);
    // v5: truncated and disallowed properties; auth data without a method.
    assert_eq!(dec_err(&connect5(0x02, &[5, 0x11, 0, 0]), None), E::Truncated);
    assert_eq!(dec_err(&connect5(0x02, &[2, 0x21, 0, 0, 0]), None), E::Truncated);
    assert_eq!(dec_err(&connect5(0x02, &[3, 0x23, 0, 1, 0, 0]), None), E::PropertyNotAllowed(0x23));
    assert!(matches!(dec_err(&connect5(0x02, &[3, 0x16, 0, 0, 0, 0]), None), E::ProtocolError(_)));
    // Will properties have their own allow-list.
    let will5 = connect5(0x06, &[0, 0, 0, 3, 0x18, 0, 0, 0, 1, b't', 0, 0]);
    assert_eq!(dec_err(&will5, None), E::Truncated);
    let will5 = connect5(0x06, &[0, 0, 0, 5, 0x11, 0, 0, 0, 1, 0, 1, b't', 0, 0]);
    assert_eq!(dec_err(&will5, None), E::PropertyNotAllowed(0x11));
    // A failed v5 CONNECT still tells its version, for the CONNACK.
    assert_eq!(peek_connect_version(&will5), Some(V5));
}

#[test]
fn publish_body() {
    let err = |body: &[u8], first: u8, v| dec_err(&frame(first, body), Some(v));
    assert_eq!(err(&[0, 3, b'a', b'/', b'+'], 0x30, V311), E::InvalidTopic(TopicError::WildcardInName));
    assert_eq!(err(&[0, 1, b'#', 0], 0x30, V5), E::InvalidTopic(TopicError::WildcardInName));
    assert_eq!(err(&[0, 0, b'x'], 0x30, V311), E::InvalidTopic(TopicError::Empty));
    assert_eq!(err(&[0, 0, b'x'], 0x30, V31), E::InvalidTopic(TopicError::Empty));
    assert!(matches!(err(&[0, 0, 0, b'x'], 0x30, V5), E::ProtocolError(_)));
    assert_eq!(err(&[0, 2, b'a', 0], 0x30, V311), E::NullCharInString);
    assert_eq!(err(&[0, 1, b'a', 0, 0], 0x32, V311), E::ZeroPacketId);
    assert_eq!(err(&[0, 1, b'a', 0, 0, 0], 0x34, V5), E::ZeroPacketId);
    assert_eq!(err(&[0, 1, b'a', 0], 0x32, V311), E::Truncated);
    // Topic alias 0.
    let e = err(&[0, 1, b'a', 3, 0x23, 0, 0], 0x30, V5);
    assert_eq!(e, E::InvalidPropertyValue(0x23));
    assert_eq!(e.v5_reason(), reason::v5::TOPIC_ALIAS_INVALID);
    // A client must not send a subscription identifier.
    let e = err(&[0, 1, b'a', 2, 0x0B, 1], 0x30, V5);
    assert!(matches!(e, E::ProtocolError(_)));
    assert_eq!(e.v5_reason(), reason::v5::PROTOCOL_ERROR);
    // Response topic must be a topic name.
    assert_eq!(err(&[0, 1, b'a', 4, 0x08, 0, 1, b'#'], 0x30, V5), E::InvalidPropertyValue(0x08));
    // Payload format indicator is 0 or 1.
    assert_eq!(err(&[0, 1, b'a', 2, 0x01, 2], 0x30, V5), E::InvalidPropertyValue(0x01));
}

#[test]
fn subscribe_body() {
    let err = |body: &[u8], v| dec_err(&frame(0x82, body), Some(v));
    for v in ALL {
        let p = if v.is_v5() { &[0u8][..] } else { &[][..] };
        let body = |rest: &[u8]| [&[0, 1][..], p, rest].concat();
        assert_eq!(err(&[&[0, 0][..], p, &[0, 1, b'a', 0]].concat(), v), E::ZeroPacketId);
        assert!(matches!(err(&body(&[]), v), E::ProtocolError(_)), "{v:?}");
        assert_eq!(
            err(&body(&[0, 5, b'a', b'/', b'#', b'/', b'b', 0]), v),
            E::InvalidTopicFilter(TopicError::HashNotLast)
        );
        assert_eq!(err(&body(&[0, 2, b'a', b'#', 0]), v), E::InvalidTopicFilter(TopicError::WildcardNotWholeLevel));
        assert_eq!(err(&body(&[0, 0, 0]), v), E::InvalidTopicFilter(TopicError::Empty));
        assert_eq!(
            err(&body(&[0, 8, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', 0]), v),
            E::InvalidTopicFilter(TopicError::BadShare)
        );
        assert_eq!(err(&body(&[0, 1, b'a', 3]), v), E::InvalidQoS);
        assert_eq!(err(&body(&[0, 1, b'a', 0x80]), v), E::InvalidReservedFlags);
        // Options byte missing.
        assert_eq!(err(&body(&[0, 1, b'a']), v), E::Truncated);
        assert_eq!(err(&body(&[0, 1, b'a', 0, 0, 1]), v), E::Truncated);
    }
    assert_eq!(E::InvalidTopicFilter(TopicError::Empty).v5_reason(), reason::v5::TOPIC_FILTER_INVALID);
    // 3.x: only the QoS bits.
    assert_eq!(err(&[0, 1, 0, 1, b'a', 0x04], V311), E::InvalidReservedFlags);
    // v5: retain handling 3, no local on a shared subscription.
    assert!(matches!(err(&[0, 1, 0, 0, 1, b'a', 0x30], V5), E::ProtocolError(_)));
    let share = [0, 1, 0, 0, 10, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'a', 0x04];
    assert!(matches!(err(&share, V5), E::ProtocolError(_)));
    // v5 subscription identifier: not 0, at most one.
    assert_eq!(err(&[0, 1, 2, 0x0B, 0, 0, 1, b'a', 0], V5), E::InvalidPropertyValue(0x0B));
    assert_eq!(err(&[0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0], V5), E::DuplicateProperty(0x0B));
    assert_eq!(err(&[0, 1, 2, 0x1F, 0, 0, 1, b'a', 0], V5), E::PropertyNotAllowed(0x1F));
}

#[test]
fn unsubscribe_body() {
    let err = |body: &[u8], v| dec_err(&frame(0xA2, body), Some(v));
    assert_eq!(err(&[0, 0, 0, 1, b'a'], V311), E::ZeroPacketId);
    assert!(matches!(err(&[0, 1], V311), E::ProtocolError(_)));
    assert!(matches!(err(&[0, 1, 0], V5), E::ProtocolError(_)));
    assert_eq!(err(&[0, 1, 0, 2, b'a', b'+'], V311), E::InvalidTopicFilter(TopicError::WildcardNotWholeLevel));
    assert_eq!(err(&[0, 1, 0, 3, b'a'], V311), E::Truncated);
}

#[test]
fn acks_and_reason_codes() {
    // 3.x responses are exactly two bytes.
    assert!(matches!(dec_err(&[0x40, 3, 0, 1, 0], Some(V311)), E::Malformed(_)));
    assert_eq!(dec_err(&[0x40, 1, 0], Some(V311)), E::Truncated);
    assert_eq!(dec_err(&[0x40, 2, 0, 0], Some(V311)), E::ZeroPacketId);
    // Reason codes per packet type.
    assert_eq!(dec_err(&[0x40, 3, 0, 1, 0x92], Some(V5)), E::InvalidReasonCode(0x92));
    assert_eq!(dec_err(&[0x62, 3, 0, 1, 0x10], Some(V5)), E::InvalidReasonCode(0x10));
    assert_eq!(dec_err(&[0x70, 3, 0, 1, 0x80], Some(V5)), E::InvalidReasonCode(0x80));
    // Property length runs past the packet / trailing bytes after it.
    assert_eq!(dec_err(&[0x40, 5, 0, 1, 0, 5, 0x1F], Some(V5)), E::Truncated);
    assert!(matches!(dec_err(&[0x40, 5, 0, 1, 0, 0, 9], Some(V5)), E::Malformed(_)));
    assert_eq!(dec_err(&[0x40, 6, 0, 1, 0, 2, 0x1F, 0], Some(V5)), E::Truncated);
    assert_eq!(dec_err(&[0x40, 6, 0, 1, 0, 2, 0x11, 0], Some(V5)), E::PropertyNotAllowed(0x11));
    // CONNACK.
    assert_eq!(dec_err(&[0x20, 2, 2, 0], Some(V311)), E::InvalidReservedFlags);
    assert_eq!(dec_err(&[0x20, 2, 0, 6], Some(V311)), E::InvalidReasonCode(6));
    assert_eq!(dec_err(&[0x20, 3, 0, 1, 0], Some(V5)), E::InvalidReasonCode(1));
    assert_eq!(dec_err(&[0x20, 2, 0, 0], Some(V5)), E::Truncated);
    assert_eq!(dec_err(&[0x20, 5, 0, 0, 2, 0x24, 2], Some(V5)), E::InvalidPropertyValue(0x24));
    // SUBACK / UNSUBACK.
    assert_eq!(dec_err(&[0x90, 3, 0, 1, 3], Some(V311)), E::InvalidReasonCode(3));
    assert_eq!(dec_err(&[0x90, 3, 0, 1, 0x87], Some(V311)), E::InvalidReasonCode(0x87));
    assert!(matches!(dec_err(&[0x90, 2, 0, 1], Some(V311)), E::Malformed(_)));
    assert!(matches!(dec_err(&[0x90, 3, 0, 1, 0], Some(V5)), E::Malformed(_)));
    assert!(matches!(dec_err(&[0xB0, 3, 0, 1, 0], Some(V311)), E::Malformed(_)));
    assert!(matches!(dec_err(&[0xB0, 3, 0, 1, 0], Some(V5)), E::Malformed(_)));
    assert_eq!(dec_err(&[0xB0, 4, 0, 1, 0, 0x10], Some(V5)), E::InvalidReasonCode(0x10));
    // PING, DISCONNECT, AUTH.
    assert!(matches!(dec_err(&[0xC0, 1, 0], Some(V311)), E::Malformed(_)));
    assert!(matches!(dec_err(&[0xE0, 1, 0], Some(V311)), E::Malformed(_)));
    assert_eq!(dec_err(&[0xE0, 1, 0x05], Some(V5)), E::InvalidReasonCode(5));
    assert_eq!(dec_err(&[0xE0, 3, 0, 1, 0x11], Some(V5)), E::Truncated);
    assert_eq!(dec_err(&[0xE0, 5, 0, 3, 0x21, 0, 1], Some(V5)), E::PropertyNotAllowed(0x21));
    assert_eq!(dec_err(&[0xF0, 1, 0x01], Some(V5)), E::InvalidReasonCode(1));
}

#[test]
fn error_leaves_buffer_untouched() {
    let mut bytes = connect5(0x02, &[3, 0x23, 0, 1, 0, 0]);
    bytes.extend_from_slice(&[0xC0, 0]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, None, MAX), Err(E::PropertyNotAllowed(0x23)));
    assert_eq!(&buf[..], &bytes[..]);
    assert_eq!(peek_connect_version(&buf), Some(V5));
}
