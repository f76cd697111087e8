//! Sessions end to end: clean / persistent sessions, session present,
//! session expiry, offline queues and their bounds, redelivery, QoS 2
//! de-duplication, retained messages, wills, takeover and message expiry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_core::codec::{self, Disconnect, Packet, Properties, ProtocolVersion, PubResp, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{mqtt_options, Broker, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

fn expiry(secs: u32) -> Properties {
    Properties { session_expiry_interval: Some(secs), ..Properties::default() }
}

fn payloads(ps: &[portcullis_core::codec::Publish]) -> Vec<String> {
    ps.iter().map(|p| text(&p.payload)).collect()
}

/// A retained delivery as `retained_for` reports it.
fn r(topic: &str, payload: &str) -> (String, String, bool) {
    (topic.to_string(), payload.to_string(), true)
}

async fn v5_disconnect(raw: &mut Raw, reason: u8, properties: Properties) {
    raw.send_packet(&Packet::Disconnect(Disconnect { reason, properties })).await;
}

// ---------------------------------------------------------------------------
// Clean and persistent sessions

#[tokio::test]
async fn clean_session_discards_subscriptions_v311() {
    let b = Broker::start("");
    let (mut p, _) = open_v3(b.addr, "pub", true).await;

    // A clean session: its subscription ends with the connection.
    let (mut s, present) = open_v3(b.addr, "cs", true).await;
    assert!(!present, "first clean connect: session present must be 0");
    subscribe(&mut s, 1, &[("cs/t", Q1)]).await;
    disconnect(s).await;
    let (mut s, present) = open_v3(b.addr, "cs", true).await;
    assert!(!present, "clean reconnect: session present must be 0");
    assert_eq!(pub_simple(&mut p, "cs/t", Q1, 1, b"x", false).await, 0);
    expect_silence(&mut s, Duration::from_millis(500), "clean session kept a subscription").await;
    disconnect(s).await;

    // A persistent session cleaned by a clean=1 connect is gone for good.
    let (mut s, present) = open_v3(b.addr, "cs2", false).await;
    assert!(!present);
    subscribe(&mut s, 1, &[("cs2/t", Q1)]).await;
    disconnect(s).await;
    let (s, present) = open_v3(b.addr, "cs2", true).await;
    assert!(!present, "clean=1 must not resume the persistent session");
    disconnect(s).await;
    // The broker ends the session just after closing the socket (see
    // `clean_session_ends_with_its_connection_*` for that window).
    wait_disconnects(&b, "cs2", 2);
    let (mut s, present) = open_v3(b.addr, "cs2", false).await;
    assert!(!present, "session cleaned by clean=1 came back");
    assert_eq!(pub_simple(&mut p, "cs2/t", Q1, 2, b"x", false).await, 0);
    expect_silence(&mut s, Duration::from_millis(500), "cleaned session kept a subscription").await;
}

/// Subscribes `id` persistently (3.1.1, clean=0) to `filter` at QoS 2,
/// disconnects, publishes `msgs` (topic, qos, payload) while it is offline,
/// reconnects and returns (session present, what arrived).
async fn offline_round_v311(
    b: &Broker,
    id: &str,
    filter: &str,
    msgs: &[(&str, QoS, &str)],
) -> (bool, Vec<portcullis_core::codec::Publish>) {
    let (mut s, present) = open_v3(b.addr, id, false).await;
    assert!(!present, "first connect of {id}: session present must be 0");
    subscribe(&mut s, 1, &[(filter, Q2)]).await;
    disconnect(s).await;
    // Until the broker has detached the session it still counts as online
    // (and would queue QoS 0 for it): wait for that.
    wait_disconnects(b, id, 1);

    let (mut p, _) = open_v3(b.addr, &format!("{id}-pub"), true).await;
    for (i, (t, q, m)) in msgs.iter().enumerate() {
        pub_simple(&mut p, t, *q, i as u16 + 1, m.as_bytes(), false).await;
    }
    let (mut s, present) = open_v3(b.addr, id, false).await;
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(10)).await;
    // The subscription survived: a live message still arrives.
    let t = filter.trim_end_matches('#').to_string() + "live";
    pub_simple(&mut p, &t, Q1, 101, b"live", false).await;
    let live = next_publish(&mut s).await;
    assert_eq!(text(&live.payload), "live", "live delivery after resuming {id}");
    (present, got)
}

const OFFLINE: [(&str, QoS, &str); 5] =
    [("ps/a", Q1, "m1"), ("ps/b", Q2, "m2"), ("ps/c", Q0, "m3"), ("ps/a", Q1, "m4"), ("ps/b", Q2, "m5")];

#[tokio::test]
async fn persistent_session_v311_queues_offline_messages_in_order() {
    let b = Broker::start("");
    let (present, got) = offline_round_v311(&b, "ps", "ps/#", &OFFLINE).await;
    assert!(present, "clean=0 reconnect: session present must be 1");
    assert_eq!(payloads(&got), ["m1", "m2", "m3", "m4", "m5"], "offline messages (queue_qos0 = true)");
    let qos: Vec<QoS> = got.iter().map(|p| p.qos).collect();
    assert_eq!(qos, [Q1, Q2, Q0, Q1, Q2]);
    assert!(got.iter().all(|p| !p.dup && !p.retain), "first delivery: DUP=0, RETAIN=0: {got:?}");
}

#[tokio::test]
async fn persistent_session_v311_without_qos0_queueing() {
    let b = Broker::start("[session]\nqueue_qos0 = false\n[sys]\ninterval = \"1s\"\n");
    let (present, got) = offline_round_v311(&b, "ps", "ps/#", &OFFLINE).await;
    assert!(present);
    assert_eq!(payloads(&got), ["m1", "m2", "m4", "m5"], "QoS 0 must not be queued offline");
    let dropped = sys_fresh(b.addr, "metrics/messages/dropped/qos0_offline", Duration::from_secs(5)).await;
    assert_eq!(dropped, "1");
}

#[tokio::test]
async fn persistent_session_v5_clean_start_and_expiry() {
    let b = Broker::start("");
    let (mut s, ack) = open_v5(b.addr, "p5", true, expiry(60)).await;
    assert!(!ack.session_present);
    subscribe(&mut s, 1, &[("p5/#", Q2)]).await;
    v5_disconnect(&mut s, 0, Properties::default()).await;
    let _ = s.expect_closed(Duration::from_secs(5)).await;

    let (mut p, _) = open_v3(b.addr, "p5-pub", true).await;
    pub_simple(&mut p, "p5/a", Q1, 1, b"one", false).await;
    pub_simple(&mut p, "p5/b", Q2, 2, b"two", false).await;
    pub_simple(&mut p, "p5/c", Q1, 3, b"three", false).await;

    let (mut s, ack) = open_v5(b.addr, "p5", false, expiry(60)).await;
    assert!(ack.session_present, "clean_start=0 within the expiry: session present must be 1");
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(10)).await;
    assert_eq!(payloads(&got), ["one", "two", "three"]);
    assert_eq!(got.iter().map(|p| p.qos).collect::<Vec<_>>(), [Q1, Q2, Q1]);
    v5_disconnect(&mut s, 0, Properties::default()).await;
    let _ = s.expect_closed(Duration::from_secs(5)).await;

    // clean_start=1 discards it.
    let (mut s, ack) = open_v5(b.addr, "p5", true, expiry(60)).await;
    assert!(!ack.session_present, "clean_start=1: session present must be 0");
    pub_simple(&mut p, "p5/a", Q1, 4, b"after", false).await;
    expect_silence(&mut s, Duration::from_millis(500), "clean_start=1 kept the subscription").await;
}

#[tokio::test]
async fn session_expiry_v5() {
    let b = Broker::start("");
    let (mut s, ack) = open_v5(b.addr, "se", true, expiry(2)).await;
    assert!(!ack.session_present);
    subscribe(&mut s, 1, &[("se/t", Q1)]).await;
    v5_disconnect(&mut s, 0, Properties::default()).await;
    let _ = s.expect_closed(Duration::from_secs(5)).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut s, ack) = open_v5(b.addr, "se", false, expiry(2)).await;
    assert!(ack.session_present, "1 s after disconnect with expiry 2 s the session must be present");
    v5_disconnect(&mut s, 0, Properties::default()).await;
    let _ = s.expect_closed(Duration::from_secs(5)).await;

    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut s, ack) = open_v5(b.addr, "se", false, expiry(2)).await;
    assert!(!ack.session_present, "4 s after disconnect with expiry 2 s the session must be gone");
    let (mut p, _) = open_v3(b.addr, "se-pub", true).await;
    pub_simple(&mut p, "se/t", Q1, 1, b"x", false).await;
    expect_silence(&mut s, Duration::from_millis(500), "expired session kept its subscription").await;
}

// ---------------------------------------------------------------------------
// Throughput and bounds

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_20000_qos1_to_one_subscriber() {
    const N: u32 = 20_000;
    let b = Broker::start("[sys]\ninterval = \"1s\"\n");
    let (mut sub, ack) = Mqtt3::connect(mqtt_options(&b, "burst-sub"), 16).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let sa = sub.subscribe("burst/t", rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(sa.return_codes, [rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]);

    // Raw publisher: writes every PUBLISH while a reader task counts PUBACKs.
    let (pubc, _) = open_v3(b.addr, "burst-pub", true).await;
    let (mut rd, mut wr) = pubc.stream.into_split();
    let acks = tokio::spawn(async move {
        let mut buf = bytes::BytesMut::new();
        let mut n = 0u32;
        let end = tokio::time::Instant::now() + Duration::from_secs(25);
        while n < N {
            while let Ok(Some(p)) = codec::decode(&mut buf, Some(ProtocolVersion::V311), u32::MAX >> 4) {
                match p {
                    Packet::PubAck(_) => n += 1,
                    other => panic!("publisher got {other:?}"),
                }
            }
            if n >= N {
                break;
            }
            match tokio::time::timeout_at(end, rd.read_buf(&mut buf)).await {
                Ok(Ok(k)) if k > 0 => {}
                _ => break,
            }
        }
        n
    });
    let mut chunk = bytes::BytesMut::new();
    for i in 0..N {
        let p = publish("burst/t", Q1, Some((i % 65_000) as u16 + 1), i.to_string().as_bytes(), false);
        codec::encode(&Packet::Publish(p), ProtocolVersion::V311, &mut chunk).expect("encode");
        if chunk.len() > 32 * 1024 || i == N - 1 {
            tokio::time::timeout(Duration::from_secs(20), wr.write_all(&chunk))
                .await
                .expect("publisher write timed out")
                .expect("write");
            chunk.clear();
        }
    }

    let end = Instant::now() + Duration::from_secs(25);
    let mut next = 0u32;
    while next < N && Instant::now() < end {
        let Some(p) = sub.next_publish(Duration::from_secs(5)).await else { break };
        let v: u32 = text(&p.payload).parse().expect("numeric payload");
        assert_eq!(v, next, "out of order or duplicate delivery");
        assert!(!p.dup, "DUP on a first delivery");
        assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
        next += 1;
    }
    assert_eq!(next, N, "subscriber received only {next} of {N}");
    assert_eq!(acks.await.expect("ack task"), N, "publisher PUBACKs");
    assert!(sub.next_publish(Duration::from_millis(300)).await.is_none(), "extra message after {N}");

    let dropped = sys_fresh(b.addr, "metrics/messages/dropped", Duration::from_secs(5)).await;
    assert_eq!(dropped, "0", "messages dropped during the burst");
    drop(wr);
}

#[tokio::test]
async fn offline_queue_bound_keeps_first_messages_and_warns_once() {
    let b = Broker::start("[session]\nmax_queue_len = 10\n[sys]\ninterval = \"1s\"\n");
    let (mut s, _) = open_v3(b.addr, "qb", false).await;
    subscribe(&mut s, 1, &[("qb/t", Q1)]).await;
    disconnect(s).await;

    let (mut p, _) = open_v3(b.addr, "qb-pub", true).await;
    for i in 0..50u16 {
        pub_simple(&mut p, "qb/t", Q1, i + 1, i.to_string().as_bytes(), false).await;
    }
    let (mut s, present) = open_v3(b.addr, "qb", false).await;
    assert!(present);
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(10)).await;
    let want: Vec<String> = (0..10).map(|i: u32| i.to_string()).collect();
    assert_eq!(payloads(&got), want, "exactly the first 10 messages");

    let full: u64 =
        sys_fresh(b.addr, "metrics/messages/dropped/queue_full", Duration::from_secs(5)).await.parse().expect("number");
    assert_eq!(full, 40, "queue_full drops");
    let log = b.log();
    let warnings = log.lines().filter(|l| l.contains("session queue full")).count();
    assert_eq!(warnings, 1, "queue-full warning must be logged once per session; log:\n{log}");
    assert!(log.lines().any(|l| l.contains("session queue full") && l.contains("qb")), "warning names the client");
}

#[tokio::test]
async fn redelivery_after_reconnect_with_dup_and_pubrel() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "rd", false).await;
    subscribe(&mut s, 1, &[("rd/#", Q2)]).await;
    let (mut p, _) = open_v3(b.addr, "rd-pub", true).await;
    pub_simple(&mut p, "rd/1", Q1, 1, b"a", false).await;
    pub_simple(&mut p, "rd/2", Q2, 2, b"b", false).await;

    let p1 = next_publish(&mut s).await;
    let p2 = next_publish(&mut s).await;
    assert_eq!((p1.topic.as_str(), p1.qos, p1.dup), ("rd/1", Q1, false));
    assert_eq!((p2.topic.as_str(), p2.qos, p2.dup), ("rd/2", Q2, false));
    let (id1, id2) = (p1.packet_id.expect("id"), p2.packet_id.expect("id"));
    drop(s); // no acks, no DISCONNECT

    let (mut s, present) = open_v3(b.addr, "rd", false).await;
    assert!(present);
    let r1 = next_publish(&mut s).await;
    let r2 = next_publish(&mut s).await;
    assert_eq!((r1.topic.as_str(), r1.qos, r1.dup, r1.packet_id), ("rd/1", Q1, true, Some(id1)), "QoS 1 redelivery");
    assert_eq!((r2.topic.as_str(), r2.qos, r2.dup, r2.packet_id), ("rd/2", Q2, true, Some(id2)), "QoS 2 redelivery");
    assert_eq!((text(&r1.payload), text(&r2.payload)), ("a".into(), "b".into()));
    s.send_packet(&Packet::PubAck(PubResp::ok(id1))).await;
    s.send_packet(&Packet::PubRec(PubResp::ok(id2))).await;
    match s.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id2),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(s); // no PUBCOMP

    let (mut s, present) = open_v3(b.addr, "rd", false).await;
    assert!(present);
    match s.recv().await {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id2, "PUBREL resent for the PUBREC'd message"),
        other => panic!("expected PUBREL after reconnect, got {other:?}"),
    }
    s.send_packet(&Packet::PubComp(PubResp::ok(id2))).await;
    sync(&mut s).await;
    disconnect(s).await;

    let (mut s, present) = open_v3(b.addr, "rd", false).await;
    assert!(present);
    expect_silence(&mut s, Duration::from_millis(500), "everything was acknowledged").await;
}

#[tokio::test]
async fn qos2_inbound_duplicates_delivered_once() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "eo-sub", true).await;
    subscribe(&mut s, 1, &[("eo/t", Q2)]).await;
    let (mut p, _) = open_v3(b.addr, "eo-pub", true).await;
    for dup in [false, true, true] {
        let mut m = publish("eo/t", Q2, Some(7), b"once", false);
        m.dup = dup;
        p.send_packet(&Packet::Publish(m)).await;
        match p.recv().await {
            Some(Packet::PubRec(r)) => assert_eq!(r.packet_id, 7),
            other => panic!("expected PUBREC 7, got {other:?}"),
        }
    }
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(5)).await;
    assert_eq!(payloads(&got), ["once"], "QoS 2 duplicate delivered more than once");
    p.send_packet(&Packet::PubRel(PubResp::ok(7))).await;
    match p.recv().await {
        Some(Packet::PubComp(r)) => assert_eq!((r.packet_id, r.reason), (7, 0)),
        other => panic!("expected PUBCOMP 7, got {other:?}"),
    }
    expect_silence(&mut s, Duration::from_millis(300), "PUBREL must not deliver again").await;
    // The id is free again: a new message with it is a new message.
    pub_simple(&mut p, "eo/t", Q2, 7, b"again", false).await;
    let got = drain_publishes(&mut s, Duration::from_millis(500), Duration::from_secs(5)).await;
    assert_eq!(payloads(&got), ["again"]);
}

/// The QoS 2 state of a persistent publisher survives its reconnect: the
/// resent PUBLISH (DUP=1, same id) is not delivered a second time.
#[tokio::test]
async fn qos2_inbound_exactly_once_across_publisher_reconnect() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "eo-sub", true).await;
    subscribe(&mut s, 1, &[("eo/t", Q2)]).await;
    let (mut p, _) = open_v3(b.addr, "eo-pub", false).await;
    p.send_packet(&Packet::Publish(publish("eo/t", Q2, Some(9), b"once", false))).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    drop(p); // lost before PUBREL

    let (mut p, present) = open_v3(b.addr, "eo-pub", false).await;
    assert!(present);
    let mut m = publish("eo/t", Q2, Some(9), b"once", false);
    m.dup = true;
    p.send_packet(&Packet::Publish(m)).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    p.send_packet(&Packet::PubRel(PubResp::ok(9))).await;
    match p.recv().await {
        Some(Packet::PubComp(r)) => assert_eq!((r.packet_id, r.reason), (9, 0)),
        other => panic!("expected PUBCOMP 9, got {other:?}"),
    }
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(5)).await;
    assert_eq!(payloads(&got), ["once"], "resent QoS 2 PUBLISH delivered twice");
}

// ---------------------------------------------------------------------------
// Retained messages

/// A fresh 3.1.1 subscriber's retained deliveries for `filter`.
async fn retained_for(b: &Broker, id: &str, filter: &str) -> Vec<(String, String, bool)> {
    let (mut s, _) = open_v3(b.addr, id, true).await;
    subscribe(&mut s, 1, &[(filter, Q1)]).await;
    let mut got: Vec<(String, String, bool)> =
        drain_publishes(&mut s, Duration::from_millis(500), Duration::from_secs(5))
            .await
            .into_iter()
            .map(|p| (p.topic, text(&p.payload), p.retain))
            .collect();
    got.sort();
    disconnect(s).await;
    got
}

#[tokio::test]
async fn retained_set_replace_clear() {
    let b = Broker::start("");
    let (mut live, _) = open_v3(b.addr, "live", true).await;
    subscribe(&mut live, 1, &[("ret/#", Q1)]).await;
    let (mut p, _) = open_v3(b.addr, "ret-pub", true).await;

    pub_simple(&mut p, "ret/a", Q1, 1, b"one", true).await;
    let m = next_publish(&mut live).await;
    assert_eq!((m.topic.as_str(), text(&m.payload).as_str(), m.retain), ("ret/a", "one", false), "live: RETAIN=0");
    assert_eq!(retained_for(&b, "n1", "ret/#").await, [r("ret/a", "one")]);
    ack_incoming(&mut live, &m).await;

    pub_simple(&mut p, "ret/a", Q1, 2, b"two", true).await;
    let m = next_publish(&mut live).await;
    assert_eq!((text(&m.payload).as_str(), m.retain), ("two", false));
    ack_incoming(&mut live, &m).await;
    assert_eq!(retained_for(&b, "n2", "ret/#").await, [r("ret/a", "two")]);
    assert_eq!(retained_for(&b, "n2b", "ret/a").await, [r("ret/a", "two")], "exact filter");

    pub_simple(&mut p, "ret/a", Q1, 3, b"", true).await;
    let m = next_publish(&mut live).await;
    assert_eq!((m.payload.len(), m.retain), (0, false), "the clearing message is delivered live");
    assert!(retained_for(&b, "n3", "ret/#").await.is_empty(), "cleared");
}

#[tokio::test]
async fn retained_max_count_refuses_new_topics_but_replaces() {
    let b = Broker::start("[retained]\nmax_count = 2\n[sys]\ninterval = \"1s\"\n");
    // Let the periodic $SYS publication run first (it runs at start-up and
    // every second anyway): the quota is about clients' retained messages.
    sys_fresh(b.addr, "version", Duration::from_secs(5)).await;
    let (mut p, _) = open_v3(b.addr, "ret-pub", true).await;
    for (i, t) in ["x/1", "x/2", "x/3"].iter().enumerate() {
        pub_simple(&mut p, t, Q1, i as u16 + 1, t.as_bytes(), true).await;
    }
    assert_eq!(retained_for(&b, "n1", "x/#").await, [r("x/1", "x/1"), r("x/2", "x/2")], "third topic must be refused");
    pub_simple(&mut p, "x/1", Q1, 4, b"new", true).await;
    assert_eq!(
        retained_for(&b, "n2", "x/#").await,
        [r("x/1", "new"), r("x/2", "x/2")],
        "replacing must still work when full"
    );
    let refused = sys_fresh(b.addr, "metrics/messages/dropped/retained_refused", Duration::from_secs(5)).await;
    assert_eq!(refused, "1");
}

#[tokio::test]
async fn retained_max_payload_size() {
    let b = Broker::start("[retained]\nmax_payload_size = 10\n");
    let (mut live, _) = open_v3(b.addr, "live", true).await;
    subscribe(&mut live, 1, &[("big/#", Q0)]).await;
    let (mut p, _) = open_v3(b.addr, "ret-pub", true).await;
    pub_simple(&mut p, "big/a", Q1, 1, b"0123456789A", true).await; // 11 bytes
    pub_simple(&mut p, "big/b", Q1, 2, b"0123456789", true).await; // 10 bytes
    assert_eq!(retained_for(&b, "n1", "big/#").await, [r("big/b", "0123456789")]);
    // Refused for the store, still routed live.
    let got = drain_publishes(&mut live, Duration::from_millis(500), Duration::from_secs(5)).await;
    assert_eq!(payloads(&got), ["0123456789A", "0123456789"]);
}

// ---------------------------------------------------------------------------
// Wills

#[tokio::test]
async fn will_published_on_abnormal_close_with_qos_and_retain() {
    let b = Broker::start("");
    let (mut obs, _) = open_v3(b.addr, "obs", true).await;
    subscribe(&mut obs, 1, &[("will/#", Q2)]).await;

    let mut o = mqtt_options(&b, "dies");
    o.set_last_will(rumqttc::LastWill::new("will/dies", "gone", rumqttc::QoS::AtLeastOnce, true));
    let (c, ack) = Mqtt3::connect(o, 10).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    drop(c); // socket closed without DISCONNECT

    let w = next_publish(&mut obs).await;
    assert_eq!((w.topic.as_str(), text(&w.payload).as_str(), w.qos, w.retain), ("will/dies", "gone", Q1, false));
    ack_incoming(&mut obs, &w).await;
    assert_eq!(retained_for(&b, "late", "will/#").await, [r("will/dies", "gone")], "will retained");
}

#[tokio::test]
async fn will_not_published_on_normal_disconnect() {
    let b = Broker::start("");
    let (mut obs, _) = open_v3(b.addr, "obs", true).await;
    subscribe(&mut obs, 1, &[("will/#", Q1)]).await;
    let mut o = mqtt_options(&b, "polite");
    o.set_last_will(rumqttc::LastWill::new("will/polite", "gone", rumqttc::QoS::AtLeastOnce, false));
    let (c, _) = Mqtt3::connect(o, 10).await;
    c.disconnect().await;
    assert!(b.wait_log("client sent DISCONNECT", Duration::from_secs(5)), "broker did not see the DISCONNECT");
    expect_silence(&mut obs, Duration::from_millis(800), "will after a normal DISCONNECT").await;
}

#[tokio::test]
async fn will_published_on_v5_disconnect_with_will() {
    let b = Broker::start("");
    let (mut obs, _) = open_v5(b.addr, "obs", true, Properties::default()).await;
    subscribe(&mut obs, 1, &[("will/#", Q1)]).await;
    let mut c = connect_packet(ProtocolVersion::V5, "w5", true);
    let mut w = will("will/w5", "bye", Q1, false);
    w.properties.content_type = Some("text/plain".into());
    w.properties.user_properties = vec![("k".into(), "v".into())];
    c.will = Some(w);
    let (mut raw, ack) = open(b.addr, c).await;
    assert_eq!(ack.code, 0);
    v5_disconnect(&mut raw, 0x04, Properties::default()).await;
    let w = next_publish(&mut obs).await;
    assert_eq!((w.topic.as_str(), text(&w.payload).as_str(), w.qos), ("will/w5", "bye", Q1));
    assert_eq!(w.properties.content_type.as_deref(), Some("text/plain"), "will properties forwarded");
    assert_eq!(w.properties.user_properties, [("k".to_string(), "v".to_string())]);
}

fn delayed_will_connect(id: &str, clean: bool, delay: u32, session_expiry: u32) -> portcullis_core::codec::Connect {
    let mut c = connect_packet(ProtocolVersion::V5, id, clean);
    let mut w = will(&format!("will/{id}"), "late", Q1, false);
    w.properties.will_delay_interval = Some(delay);
    c.will = Some(w);
    c.properties.session_expiry_interval = Some(session_expiry);
    c
}

#[tokio::test]
async fn will_delay_v5() {
    let b = Broker::start("");
    let (mut obs, _) = open_v3(b.addr, "obs", true).await;
    subscribe(&mut obs, 1, &[("will/#", Q1)]).await;
    let (raw, ack) = open(b.addr, delayed_will_connect("wd", true, 2, 10)).await;
    assert_eq!(ack.code, 0);
    let t0 = Instant::now();
    drop(raw);
    match obs.recv_timeout(Duration::from_secs(6)).await {
        Ok(Some(Packet::Publish(w))) => {
            let dt = t0.elapsed();
            assert_eq!(w.topic, "will/wd");
            assert!(dt >= Duration::from_millis(1800) && dt < Duration::from_millis(4000), "will after {dt:?}");
        }
        other => panic!("no delayed will: {other:?}"),
    }

    // Session expiry 0 ends the session at once, and the will with it.
    let (raw, _) = open(b.addr, delayed_will_connect("wd0", true, 5, 0)).await;
    let t0 = Instant::now();
    drop(raw);
    let w = next_publish(&mut obs).await;
    assert_eq!(w.topic, "will/wd0");
    assert!(t0.elapsed() < Duration::from_secs(2), "will delay must be capped by the session expiry");
}

#[tokio::test]
async fn will_delay_cancelled_by_reconnect() {
    let b = Broker::start("");
    let (mut obs, _) = open_v3(b.addr, "obs", true).await;
    subscribe(&mut obs, 1, &[("will/#", Q1)]).await;
    let (raw, _) = open(b.addr, delayed_will_connect("wc", true, 2, 10)).await;
    drop(raw);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_raw, ack) = open_v5(b.addr, "wc", false, expiry(10)).await;
    assert!(ack.session_present);
    expect_silence(&mut obs, Duration::from_secs(3), "will after the session was resumed").await;
}

// ---------------------------------------------------------------------------
// Takeover

#[tokio::test]
async fn takeover_keeps_session_v311() {
    let b = Broker::start("");
    let (mut a, _) = open_v3(b.addr, "tk", false).await;
    subscribe(&mut a, 1, &[("tk/t", Q1)]).await;
    let (mut c, present) = open_v3(b.addr, "tk", false).await;
    assert!(present, "takeover with clean=0: session present");
    let seen = a.expect_closed(Duration::from_secs(5)).await;
    assert!(seen.is_empty(), "3.1.1 connection taken over must just close: {seen:?}");
    let (mut p, _) = open_v3(b.addr, "tk-pub", true).await;
    pub_simple(&mut p, "tk/t", Q1, 1, b"to-new", false).await;
    let m = next_publish(&mut c).await;
    assert_eq!(text(&m.payload), "to-new");
}

#[tokio::test]
async fn takeover_keeps_session_v5() {
    let b = Broker::start("");
    let (mut a, _) = open_v5(b.addr, "tk5", true, expiry(60)).await;
    subscribe(&mut a, 1, &[("tk5/t", Q1)]).await;
    let (mut c, ack) = open_v5(b.addr, "tk5", false, expiry(60)).await;
    assert!(ack.session_present);
    let seen = a.expect_closed(Duration::from_secs(5)).await;
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == 0x8E),
        "old connection must get DISCONNECT 0x8E: {seen:?}"
    );
    let (mut p, _) = open_v3(b.addr, "tk-pub", true).await;
    pub_simple(&mut p, "tk5/t", Q1, 1, b"to-new", false).await;
    let m = next_publish(&mut c).await;
    assert_eq!(text(&m.payload), "to-new");
}

/// A clean session lasts as long as its connection (3.1.1 §3.1.2.4): a
/// clean=0 connection taking over from a clean=1 one finds no session.
#[tokio::test]
async fn clean_session_ends_with_its_connection_on_takeover_v311() {
    let b = Broker::start("");
    let (mut a, present) = open_v3(b.addr, "tc", true).await;
    assert!(!present);
    subscribe(&mut a, 1, &[("tc/t", Q1)]).await;
    let (mut c, present) = open_v3(b.addr, "tc", false).await;
    let _ = a.expect_closed(Duration::from_secs(5)).await;
    assert!(!present, "clean=0 takeover of a clean=1 connection reported session present = 1");
    let (mut p, _) = open_v3(b.addr, "tc-pub", true).await;
    pub_simple(&mut p, "tc/t", Q1, 1, b"x", false).await;
    expect_silence(&mut c, Duration::from_millis(500), "subscription of the ended clean session").await;
}

/// Same for v5: a session with expiry 0 ends with its connection.
#[tokio::test]
async fn clean_session_ends_with_its_connection_on_takeover_v5() {
    let b = Broker::start("");
    let (mut a, ack) = open_v5(b.addr, "tc5", true, Properties::default()).await;
    assert!(!ack.session_present);
    subscribe(&mut a, 1, &[("tc5/t", Q1)]).await;
    let (mut c, ack) = open_v5(b.addr, "tc5", false, expiry(60)).await;
    let _ = a.expect_closed(Duration::from_secs(5)).await;
    assert!(!ack.session_present, "takeover of a session with expiry 0 reported session present = 1");
    let (mut p, _) = open_v3(b.addr, "tc-pub", true).await;
    pub_simple(&mut p, "tc5/t", Q1, 1, b"x", false).await;
    expect_silence(&mut c, Duration::from_millis(500), "subscription of the ended session").await;
}

// ---------------------------------------------------------------------------
// Message expiry

#[tokio::test]
async fn message_expiry_for_offline_subscriber() {
    let b = Broker::start("");
    let (mut s, _) = open_v5(b.addr, "mx", true, expiry(60)).await;
    subscribe(&mut s, 1, &[("mx/t", Q1)]).await;
    v5_disconnect(&mut s, 0, Properties::default()).await;
    let _ = s.expect_closed(Duration::from_secs(5)).await;

    let (mut p, _) = open_v5(b.addr, "mx-pub", true, Properties::default()).await;
    for (i, (secs, body)) in [(1u32, "short"), (10, "long")].into_iter().enumerate() {
        let mut m = publish("mx/t", Q1, Some(i as u16 + 1), body.as_bytes(), false);
        m.properties.message_expiry_interval = Some(secs);
        assert_eq!(publish_complete(&mut p, m).await, 0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut s, ack) = open_v5(b.addr, "mx", false, expiry(60)).await;
    assert!(ack.session_present);
    let got = drain_publishes(&mut s, Duration::from_millis(700), Duration::from_secs(5)).await;
    assert_eq!(payloads(&got), ["long"], "expired message delivered");
    let left = got[0].properties.message_expiry_interval.expect("remaining expiry");
    assert!((7..=10).contains(&left), "remaining expiry {left} (published 2 s ago with 10)");
    assert_eq!(got[0].payload, Bytes::from_static(b"long"));
}
