//! MQTT 5 features end to end: forwarded properties, assigned client
//! identifiers, topic aliases, maximum packet size, receive maximum,
//! reason codes and the DISCONNECT session-expiry rule.

use std::time::Duration;

use bytes::Bytes;
use portcullis_core::codec::{Disconnect, Packet, Properties, ProtocolVersion, PubResp, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
const IDLE: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(8);

fn no_props() -> Properties {
    Properties::default()
}

/// The connection must receive DISCONNECT with `reason`, then close.
async fn expect_disconnect(raw: &mut Raw, reason: u8, what: &str) {
    let seen = raw.expect_closed(Duration::from_secs(5)).await;
    match seen.last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason, "{what}: DISCONNECT reason; saw {seen:?}"),
        _ => panic!("{what}: expected DISCONNECT {reason:#x} before close, saw {seen:?}"),
    }
}

fn app_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain; charset=utf-8".into()),
        response_topic: Some("reply/to/me".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xfe, 0xff])),
        user_properties: vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("a".into(), "3".into())],
        ..Properties::default()
    }
}

#[tokio::test]
async fn application_properties_forwarded_unchanged() {
    let b = Broker::start("");
    let (mut s, _) = open_v5(b.addr, "sub", true, no_props()).await;
    subscribe(&mut s, 1, &[("props/#", Q2)]).await;
    let (mut p, _) = open_v5(b.addr, "pub", true, no_props()).await;
    for (i, qos) in [Q0, Q1, Q2].into_iter().enumerate() {
        let mut m = publish(&format!("props/{i}"), qos, (qos != Q0).then_some(i as u16 + 1), "héllo".as_bytes(), false);
        m.properties = app_props();
        assert_eq!(publish_complete(&mut p, m).await, 0);
    }
    let got = drain_publishes(&mut s, IDLE, MAX).await;
    assert_eq!(got.len(), 3);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.topic, format!("props/{i}"));
        assert_eq!(m.payload, Bytes::from("héllo".as_bytes()));
        assert_eq!(m.properties, app_props(), "properties of message {i} changed on the way");
    }

    // Retained: the stored copy keeps them too.
    let mut m = publish("props/ret", Q1, Some(9), b"kept", true);
    m.properties = app_props();
    publish_complete(&mut p, m).await;
    let _ = drain_publishes(&mut s, IDLE, MAX).await;
    let (mut late, _) = open_v5(b.addr, "late", true, no_props()).await;
    subscribe(&mut late, 1, &[("props/ret", Q1)]).await;
    let r = next_publish(&mut late).await;
    assert!(r.retain);
    assert_eq!(r.properties, app_props(), "retained copy lost properties");
}

#[tokio::test]
async fn assigned_client_identifier() {
    let b = Broker::start("");
    let (_a, ack_a) = open_v5(b.addr, "", true, no_props()).await;
    let (_c, ack_c) = open_v5(b.addr, "", true, no_props()).await;
    let id_a = ack_a.properties.assigned_client_identifier.expect("Assigned Client Identifier in CONNACK");
    let id_c = ack_c.properties.assigned_client_identifier.expect("Assigned Client Identifier in CONNACK");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_c, "two clients got the same identifier");
    // A client that sent an identifier is not assigned one.
    let (_d, ack_d) = open_v5(b.addr, "named", true, no_props()).await;
    assert_eq!(ack_d.properties.assigned_client_identifier, None);
    // 3.1.1: an empty id needs clean session.
    let (_raw, ack) = open(b.addr, connect_packet(ProtocolVersion::V311, "", false)).await;
    assert_eq!(ack.code, 0x02, "3.1.1 empty id with clean=0: identifier rejected");
}

#[tokio::test]
async fn topic_alias_inbound() {
    let b = Broker::start("[limits]\nmax_topic_alias = 5\n");
    let (mut s, _) = open_v3(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("ta/#", Q0)]).await;
    let (mut p, ack) = open_v5(b.addr, "pub", true, no_props()).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(5), "CONNACK Topic Alias Maximum");

    let with_alias = |topic: &str, alias: u16, body: &str| {
        let mut m = publish(topic, Q0, None, body.as_bytes(), false);
        m.properties.topic_alias = Some(alias);
        m
    };
    publish_complete(&mut p, with_alias("ta/x", 1, "set")).await;
    publish_complete(&mut p, with_alias("", 1, "reuse")).await;
    publish_complete(&mut p, with_alias("ta/y", 1, "remap")).await;
    publish_complete(&mut p, with_alias("", 1, "reuse-remapped")).await;
    publish_complete(&mut p, with_alias("ta/z", 5, "max")).await;
    let got: Vec<(String, String)> =
        drain_publishes(&mut s, IDLE, MAX).await.iter().map(|m| (m.topic.clone(), text(&m.payload))).collect();
    let want: Vec<(String, String)> =
        [("ta/x", "set"), ("ta/x", "reuse"), ("ta/y", "remap"), ("ta/y", "reuse-remapped"), ("ta/z", "max")]
            .iter()
            .map(|(t, m)| (t.to_string(), m.to_string()))
            .collect();
    assert_eq!(got, want);

    p.send_packet(&Packet::Publish(with_alias("ta/x", 6, "too-big"))).await;
    expect_disconnect(&mut p, 0x94, "alias above the maximum").await;
    expect_silence(&mut s, Duration::from_millis(300), "message with an invalid alias").await;

    // An alias never set, with an empty topic: protocol error.
    let (mut p, _) = open_v5(b.addr, "pub2", true, no_props()).await;
    p.send_packet(&Packet::Publish(with_alias("", 2, "unknown"))).await;
    expect_disconnect(&mut p, 0x82, "unknown alias").await;
}

#[tokio::test]
async fn topic_alias_outbound() {
    let b = Broker::start("");
    let props = Properties { topic_alias_maximum: Some(5), ..Properties::default() };
    let (mut s, _) = open_v5(b.addr, "sub", true, props).await;
    subscribe(&mut s, 1, &[("tao/#", Q1)]).await;
    let (mut p, _) = open_v3(b.addr, "pub", true).await;
    for (i, t) in ["tao/x", "tao/x", "tao/y", "tao/x", "tao/y"].iter().enumerate() {
        pub_simple(&mut p, t, Q1, i as u16 + 1, t.as_bytes(), false).await;
    }
    let got = drain_publishes(&mut s, IDLE, MAX).await;
    let seen: Vec<(String, Option<u16>, String)> =
        got.iter().map(|m| (m.topic.clone(), m.properties.topic_alias, text(&m.payload))).collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let (ax, ay) = (seen[0].1.expect("alias for tao/x"), seen[2].1.expect("alias for tao/y"));
    assert!((1..=5).contains(&ax) && (1..=5).contains(&ay) && ax != ay, "{seen:?}");
    let want = vec![
        ("tao/x".to_string(), Some(ax), "tao/x".to_string()),
        (String::new(), Some(ax), "tao/x".to_string()),
        ("tao/y".to_string(), Some(ay), "tao/y".to_string()),
        (String::new(), Some(ax), "tao/x".to_string()),
        (String::new(), Some(ay), "tao/y".to_string()),
    ];
    assert_eq!(seen, want, "first use carries the topic, later ones only the alias");

    // A client that did not offer aliases never gets one.
    let (mut s0, _) = open_v5(b.addr, "sub0", true, no_props()).await;
    subscribe(&mut s0, 1, &[("tao/#", Q1)]).await;
    pub_simple(&mut p, "tao/x", Q1, 20, b"1", false).await;
    pub_simple(&mut p, "tao/x", Q1, 21, b"2", false).await;
    let got = drain_publishes(&mut s0, IDLE, MAX).await;
    assert!(got.iter().all(|m| m.topic == "tao/x" && m.properties.topic_alias.is_none()), "{got:?}");
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn client_maximum_packet_size() {
    let b = Broker::start("");
    let props = Properties { maximum_packet_size: Some(100), ..Properties::default() };
    let (mut s, _) = open_v5(b.addr, "small", true, props).await;
    subscribe(&mut s, 1, &[("mps/#", Q1)]).await;
    let (mut big_sub, _) = open_v5(b.addr, "big", true, no_props()).await;
    subscribe(&mut big_sub, 1, &[("mps/#", Q1)]).await;
    let (mut p, _) = open_v3(b.addr, "pub", true).await;
    pub_simple(&mut p, "mps/t", Q1, 1, &[b'x'; 200], false).await;
    pub_simple(&mut p, "mps/t", Q1, 2, b"small", false).await;
    let got = drain_publishes(&mut s, IDLE, MAX).await;
    assert_eq!(got.iter().map(|m| text(&m.payload)).collect::<Vec<_>>(), ["small"], "only the small one fits");
    let got = drain_publishes(&mut big_sub, IDLE, MAX).await;
    assert_eq!(got.iter().map(|m| m.payload.len()).collect::<Vec<_>>(), [200, 5], "other subscribers get both");
}

#[tokio::test]
async fn server_maximum_packet_size() {
    let b = Broker::start("[limits]\nmax_packet_size = 1024\n");
    let (mut s, _) = open_v3(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("big/#", Q0)]).await;
    let (mut p, ack) = open_v5(b.addr, "pub", true, no_props()).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1024), "CONNACK Maximum Packet Size");
    assert_eq!(pub_simple(&mut p, "big/ok", Q1, 1, &[b'a'; 900], false).await, 0);
    assert_eq!(next_publish(&mut s).await.payload.len(), 900);
    p.send_packet(&Packet::Publish(publish("big/no", Q1, Some(2), &[b'b'; 2000], false))).await;
    expect_disconnect(&mut p, 0x95, "publish above the maximum packet size").await;
    expect_silence(&mut s, Duration::from_millis(300), "oversized message was delivered").await;
}

#[tokio::test]
async fn client_receive_maximum_limits_outstanding_qos1() {
    let b = Broker::start("");
    let props = Properties { receive_maximum: Some(2), ..Properties::default() };
    let (mut s, _) = open_v5(b.addr, "slow", true, props).await;
    subscribe(&mut s, 1, &[("rm/t", Q1)]).await;
    let (mut p, _) = open_v3(b.addr, "pub", true).await;
    for i in 0..5u16 {
        pub_simple(&mut p, "rm/t", Q1, i + 1, i.to_string().as_bytes(), false).await;
    }
    let ids = |ps: &[Packet]| -> Vec<(u16, String)> {
        ps.iter()
            .map(|p| match p {
                Packet::Publish(m) => (m.packet_id.expect("id"), text(&m.payload)),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let first = ids(&collect(&mut s, Duration::from_millis(600)).await);
    assert_eq!(first.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(), ["0", "1"], "only 2 outstanding");
    s.send_packet(&Packet::PubAck(PubResp::ok(first[0].0))).await;
    let next = ids(&collect(&mut s, Duration::from_millis(600)).await);
    assert_eq!(next.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(), ["2"], "one PUBACK frees one slot");
    s.send_packet(&Packet::PubAck(PubResp::ok(first[1].0))).await;
    s.send_packet(&Packet::PubAck(PubResp::ok(next[0].0))).await;
    let rest = drain_publishes(&mut s, IDLE, MAX).await;
    assert_eq!(rest.iter().map(|m| text(&m.payload)).collect::<Vec<_>>(), ["3", "4"]);
}

#[tokio::test]
async fn server_receive_maximum_exceeded() {
    let b = Broker::start("[session]\nmax_awaiting_rel = 3\n");
    let (mut p, ack) = open_v5(b.addr, "pub", true, no_props()).await;
    assert_eq!(ack.properties.receive_maximum, Some(3), "CONNACK Receive Maximum");
    for id in 1..=3u16 {
        p.send_packet(&Packet::Publish(publish("rx/t", Q2, Some(id), b"x", false))).await;
        match p.recv().await {
            Some(Packet::PubRec(r)) => assert_eq!(r.packet_id, id),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    p.send_packet(&Packet::Publish(publish("rx/t", Q2, Some(4), b"x", false))).await;
    expect_disconnect(&mut p, 0x93, "fourth QoS 2 without PUBREL").await;
}

#[tokio::test]
async fn request_problem_information_zero_accepted() {
    let b = Broker::start("");
    let props = Properties { request_problem_information: Some(0), ..Properties::default() };
    let (mut c, ack) = open_v5(b.addr, "rpi", true, props).await;
    assert_eq!(ack.code, 0);
    assert_eq!(ack.properties.reason_string, None);
    subscribe(&mut c, 1, &[("rpi/t", Q1)]).await;
    assert_eq!(pub_simple(&mut c, "other/t", Q1, 2, b"x", false).await, 0x10);
    c.send_packet(&Packet::Publish(publish("rpi/t", Q0, None, b"me", false))).await;
    let m = next_publish(&mut c).await;
    assert_eq!(text(&m.payload), "me");
}

#[tokio::test]
async fn no_matching_subscribers_reason() {
    let b = Broker::start("");
    let (mut p, _) = open_v5(b.addr, "pub", true, no_props()).await;
    assert_eq!(pub_simple(&mut p, "nobody/here", Q1, 1, b"x", false).await, 0x10, "PUBACK reason");
    assert_eq!(pub_simple(&mut p, "nobody/here", Q2, 2, b"x", false).await, 0x10, "PUBREC reason");
    let (mut s, _) = open_v3(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("nobody/here", Q0)]).await;
    assert_eq!(pub_simple(&mut p, "nobody/here", Q1, 3, b"x", false).await, 0, "with a subscriber");
    assert_eq!(pub_simple(&mut p, "nobody/here", Q2, 4, b"x", false).await, 0);
}

#[tokio::test]
async fn disconnect_cannot_set_expiry_after_zero() {
    let b = Broker::start("");
    let (mut c, _) = open_v5(b.addr, "z", true, no_props()).await;
    let props = Properties { session_expiry_interval: Some(30), ..Properties::default() };
    c.send_packet(&Packet::Disconnect(Disconnect { reason: 0, properties: props })).await;
    expect_disconnect(&mut c, 0x82, "DISCONNECT with expiry after CONNECT with 0").await;
    wait_disconnects(&b, "z", 1);
    let (_c, ack) = open_v5(b.addr, "z", false, no_props()).await;
    assert!(!ack.session_present, "the session must not have been kept");

    // Lowering a non-zero expiry to 0 is allowed and ends the session.
    let props = Properties { session_expiry_interval: Some(60), ..Properties::default() };
    let (mut c, _) = open_v5(b.addr, "nz", true, props).await;
    let props = Properties { session_expiry_interval: Some(0), ..Properties::default() };
    c.send_packet(&Packet::Disconnect(Disconnect { reason: 0, properties: props })).await;
    let seen = c.expect_closed(Duration::from_secs(5)).await;
    assert!(seen.is_empty(), "a valid DISCONNECT gets no answer: {seen:?}");
    wait_disconnects(&b, "nz", 1);
    let (_c, ack) = open_v5(b.addr, "nz", false, no_props()).await;
    assert!(!ack.session_present, "DISCONNECT with expiry 0 must end the session");
}
