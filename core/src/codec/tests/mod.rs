//! Codec tests.
//!
//! * this file — helpers, a sample of every packet type per version, and
//!   the round trip / every-prefix / zero-copy checks over those samples.
//! * `vectors` — byte strings written by hand from the specs.
//! * `reject` — every validation rule, one malformed packet each.
//! * `props` — property blocks on their own (allow-lists, duplicates,
//!   values).

#![allow(clippy::unwrap_used)]

mod props;
mod reject;
mod vectors;

use bytes::{Bytes, BytesMut};

use super::properties::id;
use super::*;
use ProtocolVersion::{V31, V311, V5};

pub(super) const MAX: u32 = 1 << 20;
pub(super) const ALL: [ProtocolVersion; 3] = [V31, V311, V5];

/// A packet from its first byte and body; the remaining length is computed.
pub(super) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Decodes `bytes`, requiring that all of them are consumed on success.
pub(super) fn dec(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let res = decode(&mut buf, v, MAX);
    match &res {
        Ok(Some(_)) => assert!(buf.is_empty(), "left over: {:?}", &buf[..]),
        // Ok(None) and Err leave the buffer untouched.
        _ => assert_eq!(&buf[..], bytes),
    }
    res
}

pub(super) fn dec_ok(bytes: &[u8], v: Option<ProtocolVersion>) -> Packet {
    match dec(bytes, v) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet from {bytes:02x?}, got {other:?}"),
    }
}

pub(super) fn dec_err(bytes: &[u8], v: Option<ProtocolVersion>) -> DecodeError {
    match dec(bytes, v) {
        Err(e) => e,
        other => panic!("expected an error from {bytes:02x?}, got {other:?}"),
    }
}

/// Encodes `p`, checking [`encoded_len`] against the bytes written.
pub(super) fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    encode(p, v, &mut buf).unwrap();
    assert_eq!(&buf[..6], b"prefix", "encode must append");
    assert_eq!(encoded_len(p, v), buf.len() - 6, "encoded_len of {p:?}");
    buf[6..].to_vec()
}

/// Every property set, then cut down to what `ctx` allows.
pub(super) fn props_for(ctx: PropCtx) -> Properties {
    let mut p = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/to".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        subscription_identifiers: vec![268_435_455],
        session_expiry_interval: Some(u32::MAX),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"\xffdata")),
        request_problem_information: Some(0),
        will_delay_interval: Some(10),
        request_response_information: Some(1),
        response_information: Some("resp".into()),
        server_reference: Some("other:1883".into()),
        reason_string: Some("because".into()),
        receive_maximum: Some(20),
        topic_alias_maximum: Some(0),
        topic_alias: Some(3),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into()), ("ü".into(), "".into())],
        maximum_packet_size: Some(1 << 20),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
    };
    macro_rules! keep {
        ($($id:ident => $field:ident),* $(,)?) => {
            $(if !ctx.allows(id::$id) { p.$field = Default::default(); })*
        };
    }
    keep!(
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator,
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval,
        CONTENT_TYPE => content_type,
        RESPONSE_TOPIC => response_topic,
        CORRELATION_DATA => correlation_data,
        SUBSCRIPTION_IDENTIFIER => subscription_identifiers,
        SESSION_EXPIRY_INTERVAL => session_expiry_interval,
        ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier,
        SERVER_KEEP_ALIVE => server_keep_alive,
        AUTHENTICATION_METHOD => authentication_method,
        AUTHENTICATION_DATA => authentication_data,
        REQUEST_PROBLEM_INFORMATION => request_problem_information,
        WILL_DELAY_INTERVAL => will_delay_interval,
        REQUEST_RESPONSE_INFORMATION => request_response_information,
        RESPONSE_INFORMATION => response_information,
        SERVER_REFERENCE => server_reference,
        REASON_STRING => reason_string,
        RECEIVE_MAXIMUM => receive_maximum,
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum,
        TOPIC_ALIAS => topic_alias,
        MAXIMUM_QOS => maximum_qos,
        RETAIN_AVAILABLE => retain_available,
        USER_PROPERTY => user_properties,
        MAXIMUM_PACKET_SIZE => maximum_packet_size,
        WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifier_available,
        SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available,
    );
    p
}

fn connect(v: ProtocolVersion) -> Connect {
    Connect {
        protocol: v,
        bridge: false,
        clean_start: true,
        keep_alive: 60,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "a/b".into(),
        packet_id,
        payload: Bytes::from_static(b"hello"),
        properties: Properties::default(),
    }
}

/// A sample of every packet type that `v` has, with v5 fields filled in
/// only on v5 (3.x cannot carry them, so they would not round-trip).
pub(super) fn samples(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let pr = |ctx| if v5 { props_for(ctx) } else { Properties::default() };
    let mut out = Vec::new();

    out.push(Packet::Connect(Box::new(connect(v))));
    out.push(Packet::Connect(Box::new(Connect {
        bridge: true,
        clean_start: false,
        keep_alive: u16::MAX,
        client_id: "client-ü-1".into(),
        will: Some(LastWill {
            topic: "last/will".into(),
            payload: Bytes::from_static(b"\x00bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: pr(PropCtx::Will),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"\xffsecret")),
        properties: pr(PropCtx::Connect),
        ..connect(v)
    })));
    out.push(Packet::Connect(Box::new(Connect {
        will: Some(LastWill {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some(String::new()),
        ..connect(v)
    })));
    if v5 {
        // v5 allows a password without a user name.
        out.push(Packet::Connect(Box::new(Connect { password: Some(Bytes::from_static(b"pw")), ..connect(v) })));
    }

    out.push(Packet::ConnAck(ConnAck { session_present: v != V31, code: 0, properties: pr(PropCtx::ConnAck) }));
    out.push(Packet::ConnAck(ConnAck {
        session_present: false,
        code: if v5 { reason::v5::NOT_AUTHORIZED } else { reason::v3::NOT_AUTHORIZED },
        properties: Properties::default(),
    }));

    out.push(Packet::Publish(Publish { retain: true, ..publish(QoS::AtMostOnce, None) }));
    out.push(Packet::Publish(Publish { dup: true, ..publish(QoS::AtLeastOnce, Some(1)) }));
    let mut pp = pr(PropCtx::Publish);
    pp.subscription_identifiers.clear();
    out.push(Packet::Publish(Publish {
        payload: Bytes::new(),
        properties: pp,
        ..publish(QoS::ExactlyOnce, Some(u16::MAX))
    }));
    if v5 {
        let mut p = publish(QoS::AtMostOnce, None);
        p.topic.clear();
        p.properties.topic_alias = Some(1);
        out.push(Packet::Publish(p));
    }
    if v == V31 {
        // 3.1 tolerates DUP on QoS 0.
        out.push(Packet::Publish(Publish { dup: true, ..publish(QoS::AtMostOnce, None) }));
    }

    type Ctor = fn(PubResp) -> Packet;
    let resps: [(Ctor, u8); 4] = [
        (Packet::PubAck, reason::v5::NO_MATCHING_SUBSCRIBERS),
        (Packet::PubRec, reason::v5::QUOTA_EXCEEDED),
        (Packet::PubRel, reason::v5::PACKET_IDENTIFIER_NOT_FOUND),
        (Packet::PubComp, reason::v5::PACKET_IDENTIFIER_NOT_FOUND),
    ];
    for (ctor, code) in resps {
        out.push(ctor(PubResp::ok(7)));
        if v5 {
            out.push(ctor(PubResp { packet_id: 8, reason: code, properties: Properties::default() }));
            out.push(ctor(PubResp { packet_id: 9, reason: 0, properties: pr(PropCtx::PubResp) }));
            out.push(ctor(PubResp { packet_id: 10, reason: code, properties: pr(PropCtx::PubResp) }));
        }
    }

    let full = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: v5,
        retain_as_published: v5,
        retain_handling: if v5 { RetainHandling::Never } else { RetainHandling::OnSubscribe },
    };
    let mut sp = pr(PropCtx::Subscribe);
    sp.subscription_identifiers.truncate(1);
    out.push(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![
            ("a/+/c".into(), full),
            ("#".into(), SubscriptionOptions { qos: QoS::ExactlyOnce, ..Default::default() }),
            ("$share/g/x/#".into(), SubscriptionOptions::default()),
            ("$queue/q".into(), SubscriptionOptions::default()),
        ],
        properties: sp,
    }));
    out.push(Packet::SubAck(SubAck {
        packet_id: 2,
        return_codes: if v5 { vec![0, 1, 2, 0x80, 0x8F, 0xA2] } else { vec![0, 1, 2, 0x80] },
        properties: pr(PropCtx::SubAck),
    }));
    out.push(Packet::Unsubscribe(Unsubscribe {
        packet_id: 3,
        filters: vec!["a/b".into(), "$share/g/x/#".into()],
        properties: pr(PropCtx::Unsubscribe),
    }));
    out.push(Packet::UnsubAck(UnsubAck {
        packet_id: 4,
        reason_codes: if v5 { vec![0, 0x11] } else { vec![] },
        properties: pr(PropCtx::UnsubAck),
    }));
    out.push(Packet::PingReq);
    out.push(Packet::PingResp);
    out.push(Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() }));
    if v5 {
        out.push(Packet::Disconnect(Disconnect {
            reason: reason::v5::DISCONNECT_WITH_WILL,
            properties: pr(PropCtx::Disconnect),
        }));
        out.push(Packet::Disconnect(Disconnect {
            reason: reason::v5::SESSION_TAKEN_OVER,
            properties: Properties::default(),
        }));
        out.push(Packet::Auth(Auth { reason: 0, properties: Properties::default() }));
        out.push(Packet::Auth(Auth { reason: reason::v5::CONTINUE_AUTHENTICATION, properties: pr(PropCtx::Auth) }));
    }
    out
}

fn decode_version(p: &Packet, v: ProtocolVersion) -> Option<ProtocolVersion> {
    match p {
        Packet::Connect(_) => None,
        _ => Some(v),
    }
}

#[test]
fn round_trip_every_packet_every_version() {
    let mut count = 0;
    for v in ALL {
        for p in samples(v) {
            let bytes = enc(&p, v);
            assert_eq!(dec_ok(&bytes, decode_version(&p, v)), p, "{v:?}: {bytes:02x?}");
            count += 1;
        }
    }
    assert!(count > 60, "{count}");
}

#[test]
fn every_prefix_needs_more_bytes() {
    for v in ALL {
        for p in samples(v) {
            let bytes = enc(&p, v);
            for n in 0..bytes.len() {
                assert_eq!(dec(&bytes[..n], decode_version(&p, v)), Ok(None), "{v:?} {p:?} at {n}");
            }
        }
    }
}

#[test]
fn decodes_exactly_one_packet_from_a_stream() {
    for v in ALL {
        let mut stream = BytesMut::new();
        let packets = samples(v);
        for p in &packets {
            encode(p, v, &mut stream).unwrap();
        }
        for p in &packets {
            let got = decode(&mut stream, Some(v), MAX).unwrap();
            assert_eq!(got.as_ref(), Some(p));
        }
        assert!(stream.is_empty());
        assert_eq!(decode(&mut stream, Some(v), MAX), Ok(None));
    }
}

#[test]
fn payloads_are_slices_of_the_input() {
    let bytes = enc(&Packet::Publish(publish(QoS::AtLeastOnce, Some(5))), V311);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode(&mut buf, Some(V311), MAX).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(&p.payload[..], b"hello");
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
}

#[test]
fn encoded_len_matches_for_large_packets() {
    // Remaining lengths needing 1, 2 and 3 varint bytes.
    for size in [0, 100, 127, 128, 16_383, 16_384, 70_000] {
        let p = Packet::Publish(Publish { payload: Bytes::from(vec![7u8; size]), ..publish(QoS::AtMostOnce, None) });
        for v in ALL {
            let bytes = enc(&p, v);
            assert_eq!(dec_ok(&bytes, Some(v)), p);
        }
    }
}

#[test]
fn encode_errors() {
    let mut buf = BytesMut::new();
    let auth = Packet::Auth(Auth { reason: 0, properties: Properties::default() });
    assert_eq!(encode(&auth, V311, &mut buf), Err(EncodeError::NotInVersion("AUTH")));
    let p = Packet::Publish(publish(QoS::AtLeastOnce, None));
    assert_eq!(encode(&p, V311, &mut buf), Err(EncodeError::MissingPacketId));
    let long = Packet::Publish(Publish { topic: "a".repeat(65_536), ..publish(QoS::AtMostOnce, None) });
    assert_eq!(encode(&long, V311, &mut buf), Err(EncodeError::FieldTooLong));
    let mut props = Properties::default();
    props.subscription_identifiers.push(0);
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("a".into(), SubscriptionOptions::default())],
        properties: props,
    });
    assert!(matches!(encode(&sub, V5, &mut buf), Err(EncodeError::InvalidValue(_))));
    assert!(buf.is_empty(), "nothing appended on error");
}
