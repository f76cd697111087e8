//! Byte strings written by hand from the MQTT 3.1, 3.1.1 and 5.0 specs.

use bytes::Bytes;

use super::*;

/// Decodes `bytes` to `want`, and `want` encodes back to exactly `bytes`.
fn both_ways(bytes: &[u8], v: Option<ProtocolVersion>, enc_v: ProtocolVersion, want: Packet) {
    assert_eq!(dec_ok(bytes, v), want);
    assert_eq!(enc(&want, enc_v), bytes);
}

fn pkt(first: u8, v: ProtocolVersion, want: Packet, bytes: &[u8]) {
    assert_eq!(bytes[0], first);
    both_ways(bytes, Some(v), v, want);
}

fn none() -> Properties {
    Properties::default()
}

#[test]
fn connect_311_minimal() {
    let bytes = [0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 0];
    let want = Connect {
        protocol: V311,
        bridge: false,
        clean_start: true,
        keep_alive: 60,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: none(),
    };
    both_ways(&bytes, None, V311, Packet::Connect(Box::new(want.clone())));
    // The bridge bit on the level byte.
    let mut bridged = bytes;
    bridged[8] = 0x84;
    both_ways(&bridged, None, V311, Packet::Connect(Box::new(Connect { bridge: true, ..want })));
    assert_eq!(peek_connect_version(&bridged), Some(V311));
}

#[test]
fn connect_31_with_will_and_credentials() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x1D,
        0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3,
        0xEE, // user, password, will retain, will QoS 1, will, clean
        0, 10,
        0, 2, b'c', b'1',
        0, 1, b't',
        0, 2, b'h', b'i',
        0, 1, b'u',
        0, 1, b'p',
    ];
    let want = Connect {
        protocol: V31,
        bridge: false,
        clean_start: true,
        keep_alive: 10,
        client_id: "c1".into(),
        will: Some(LastWill {
            topic: "t".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: none(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: none(),
    };
    both_ways(&bytes, None, V31, Packet::Connect(Box::new(want)));
    assert_eq!(peek_connect_version(&bytes), Some(V31));
}

#[test]
fn connect_5_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x16,
        0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60,
        8, 0x11, 0, 0, 0, 10, 0x21, 0, 20, // session expiry 10, receive maximum 20
        0, 1, b'x',
    ];
    let want = Connect {
        protocol: V5,
        bridge: false,
        clean_start: true,
        keep_alive: 60,
        client_id: "x".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties { session_expiry_interval: Some(10), receive_maximum: Some(20), ..none() },
    };
    both_ways(&bytes, None, V5, Packet::Connect(Box::new(want)));
    assert_eq!(peek_connect_version(&bytes), Some(V5));
    // Only the header up to the level byte is needed.
    assert_eq!(peek_connect_version(&bytes[..9]), Some(V5));
    assert_eq!(peek_connect_version(&bytes[..8]), None);
}

#[test]
fn connack() {
    let ok = |sp| ConnAck { session_present: sp, code: 0, properties: none() };
    pkt(0x20, V311, Packet::ConnAck(ok(true)), &[0x20, 2, 1, 0]);
    pkt(0x20, V31, Packet::ConnAck(ConnAck { code: 5, ..ok(false) }), &[0x20, 2, 0, 5]);
    pkt(0x20, V5, Packet::ConnAck(ok(false)), &[0x20, 3, 0, 0, 0]);
    let with_props = ConnAck {
        properties: Properties { topic_alias_maximum: Some(10), maximum_qos: Some(1), ..none() },
        ..ok(true)
    };
    pkt(0x20, V5, Packet::ConnAck(with_props), &[0x20, 8, 1, 0, 5, 0x22, 0, 10, 0x24, 1]);
    // 3.1 has no session-present flag: it is neither read nor written.
    assert_eq!(dec_ok(&[0x20, 2, 1, 0], Some(V31)), Packet::ConnAck(ok(false)));
    assert_eq!(enc(&Packet::ConnAck(ok(true)), V31), [0x20, 2, 0, 0]);
}

#[test]
fn publish() {
    let base = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a/b".into(),
        packet_id: Some(10),
        payload: Bytes::from_static(b"hi"),
        properties: none(),
    };
    let b = [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i'];
    pkt(0x32, V311, Packet::Publish(base.clone()), &b);
    let q0 = Publish {
        qos: QoS::AtMostOnce,
        retain: true,
        packet_id: None,
        topic: "a".into(),
        payload: Bytes::from_static(b"ok"),
        ..base.clone()
    };
    pkt(0x31, V311, Packet::Publish(q0.clone()), &[0x31, 5, 0, 1, b'a', b'o', b'k']);
    let dup2 = Publish { dup: true, qos: QoS::ExactlyOnce, ..base.clone() };
    pkt(0x3C, V311, Packet::Publish(dup2), &[0x3C, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i']);
    // v5: empty topic with a topic alias.
    let alias = Publish {
        topic: String::new(),
        properties: Properties { topic_alias: Some(5), ..none() },
        payload: Bytes::from_static(b"x"),
        ..q0
    };
    pkt(0x31, V5, Packet::Publish(alias), &[0x31, 7, 0, 0, 3, 0x23, 0, 5, b'x']);
    // DUP on QoS 0 is dropped when encoding for 3.1.1 / 5.
    let bad_dup = Packet::Publish(Publish { dup: true, qos: QoS::AtMostOnce, packet_id: None, ..base.clone() });
    assert_eq!(enc(&bad_dup, V311)[0], 0x30);
    assert_eq!(enc(&bad_dup, V31)[0], 0x38);
}

#[test]
fn publish_to_client_with_subscription_identifiers() {
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a".into(),
        packet_id: None,
        payload: Bytes::from_static(b"p"),
        properties: Properties { subscription_identifiers: vec![1, 128], ..none() },
    };
    let bytes = enc(&Packet::Publish(p.clone()), V5);
    assert_eq!(bytes, [0x30, 10, 0, 1, b'a', 5, 0x0B, 1, 0x0B, 0x80, 1, b'p']);
    // Properties a version cannot carry are dropped.
    assert_eq!(enc(&Packet::Publish(p), V311), [0x30, 4, 0, 1, b'a', b'p']);
}

#[test]
fn pub_responses() {
    for (first, ctor) in [
        (0x40, Packet::PubAck as fn(PubResp) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        for v in ALL {
            pkt(first, v, ctor(PubResp::ok(7)), &[first, 2, 0, 7]);
        }
        // v5: explicit success and empty properties are accepted too.
        assert_eq!(dec_ok(&[first, 3, 0, 7, 0], Some(V5)), ctor(PubResp::ok(7)));
        assert_eq!(dec_ok(&[first, 4, 0, 7, 0, 0], Some(V5)), ctor(PubResp::ok(7)));
    }
    let with_reason = PubResp { packet_id: 1, reason: 0x10, properties: none() };
    pkt(0x40, V5, Packet::PubAck(with_reason.clone()), &[0x40, 3, 0, 1, 0x10]);
    // A v5 reason code is not written on 3.x.
    assert_eq!(enc(&Packet::PubAck(with_reason), V311), [0x40, 2, 0, 1]);
    let with_string =
        PubResp { packet_id: 1, reason: 0x80, properties: Properties { reason_string: Some("bad".into()), ..none() } };
    pkt(0x40, V5, Packet::PubAck(with_string), &[0x40, 10, 0, 1, 0x80, 6, 0x1F, 0, 3, b'b', b'a', b'd']);
}

#[test]
fn subscribe() {
    let s = Subscribe {
        packet_id: 1,
        filters: vec![("a/#".into(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() })],
        properties: none(),
    };
    pkt(0x82, V311, Packet::Subscribe(s), &[0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]);
    let opts = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::Never,
    };
    let s5 = Subscribe {
        packet_id: 1,
        filters: vec![("a".into(), opts)],
        properties: Properties { subscription_identifiers: vec![5], ..none() },
    };
    pkt(0x82, V5, Packet::Subscribe(s5), &[0x82, 9, 0, 1, 2, 0x0B, 5, 0, 1, b'a', 0x2D]);
    // 3.1 retries may carry DUP.
    assert!(matches!(dec_ok(&[0x8A, 6, 0, 1, 0, 1, b'a', 0], Some(V31)), Packet::Subscribe(_)));
    assert!(matches!(dec_ok(&[0x6A, 2, 0, 1], Some(V31)), Packet::PubRel(_)));
}

#[test]
fn suback() {
    let s = SubAck { packet_id: 1, return_codes: vec![0, 1, 0x80], properties: none() };
    pkt(0x90, V311, Packet::SubAck(s), &[0x90, 5, 0, 1, 0, 1, 0x80]);
    let s5 = SubAck { packet_id: 1, return_codes: vec![2, 0x87], properties: none() };
    pkt(0x90, V5, Packet::SubAck(s5.clone()), &[0x90, 5, 0, 1, 0, 2, 0x87]);
    // A v5 failure code becomes 0x80 on 3.x.
    assert_eq!(enc(&Packet::SubAck(s5), V311), [0x90, 4, 0, 1, 2, 0x80]);
}

#[test]
fn unsubscribe_and_unsuback() {
    let u = Unsubscribe { packet_id: 1, filters: vec!["a".into()], properties: none() };
    pkt(0xA2, V311, Packet::Unsubscribe(u.clone()), &[0xA2, 5, 0, 1, 0, 1, b'a']);
    pkt(0xA2, V5, Packet::Unsubscribe(u), &[0xA2, 6, 0, 1, 0, 0, 1, b'a']);
    let ua = UnsubAck { packet_id: 1, reason_codes: vec![0x11], properties: none() };
    pkt(0xB0, V5, Packet::UnsubAck(ua.clone()), &[0xB0, 4, 0, 1, 0, 0x11]);
    // No reason codes on 3.x.
    assert_eq!(enc(&Packet::UnsubAck(ua), V311), [0xB0, 2, 0, 1]);
    let ua3 = UnsubAck { packet_id: 1, reason_codes: vec![], properties: none() };
    pkt(0xB0, V311, Packet::UnsubAck(ua3), &[0xB0, 2, 0, 1]);
}

#[test]
fn ping_disconnect_auth() {
    for v in ALL {
        pkt(0xC0, v, Packet::PingReq, &[0xC0, 0]);
        pkt(0xD0, v, Packet::PingResp, &[0xD0, 0]);
        let d = Disconnect { reason: 0, properties: none() };
        pkt(0xE0, v, Packet::Disconnect(d), &[0xE0, 0]);
    }
    // Non-minimal remaining length is accepted.
    assert_eq!(dec_ok(&[0xC0, 0x80, 0x80, 0x00], Some(V311)), Packet::PingReq);
    let will = Disconnect { reason: 4, properties: none() };
    assert_eq!(dec_ok(&[0xE0, 1, 4], Some(V5)), Packet::Disconnect(will.clone()));
    pkt(0xE0, V5, Packet::Disconnect(will), &[0xE0, 2, 4, 0]);
    let auth0 = Auth { reason: 0, properties: none() };
    pkt(0xF0, V5, Packet::Auth(auth0), &[0xF0, 0]);
    let auth = Auth {
        reason: 0x18,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..none()
        },
    };
    #[rustfmt::skip]
    let bytes = [0xF0, 15, 0x18, 13, 0x15, 0, 5, b'S', b'C', b'R', b'A', b'M', 0x16, 0, 2, 1, 2];
    pkt(0xF0, V5, Packet::Auth(auth), &bytes);
}
