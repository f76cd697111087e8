//! Hostile and malformed input: every case gets the response the spec (and
//! the broker's codec) prescribes, and afterwards the broker still serves a
//! fresh client ([`assert_healthy`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::codec::{
    reason::v5, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};
use portcullis_tests::{connect_v311, connect_v5, frame, mqtt_options, rss_kib, Broker, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a connection the broker should close at once may stay open.
const CLOSE_SOON: Duration = Duration::from_secs(3);

/// A fresh rumqttc (3.1.1) client connects, subscribes, publishes QoS 1 to
/// its own topic, gets the PUBACK and receives the message back.
async fn assert_healthy(broker: &Broker) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("healthy-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let topic = format!("healthy/{id}");
    let (client, mut events) = rumqttc::AsyncClient::new(mqtt_options(broker, &id), 10);
    let work = async {
        client.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await.expect("queue subscribe");
        let (mut published, mut acked, mut received) = (false, false, false);
        while !(acked && received) {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(c))) => {
                    assert_eq!(c.code, rumqttc::ConnectReturnCode::Success, "healthy client CONNACK");
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(s))) => {
                    assert_eq!(
                        s.return_codes,
                        vec![rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)],
                        "healthy client SUBACK"
                    );
                    if !published {
                        client
                            .publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"alive".to_vec())
                            .await
                            .expect("queue publish");
                        published = true;
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => acked = true,
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                    assert_eq!(p.topic, topic);
                    assert_eq!(&p.payload[..], b"alive");
                    received = true;
                }
                Ok(_) => {}
                Err(e) => panic!("healthy client {id}: {e}"),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), work).await.is_err() {
        panic!("broker not healthy: client {id} did not complete subscribe/publish/receive within 10 s");
    }
}

/// A raw client that completed CONNECT (CONNACK success).
async fn connected(addr: SocketAddr, v5: bool, id: &str) -> Raw {
    let mut r = Raw::connect(addr).await;
    if v5 {
        r.version = ProtocolVersion::V5;
        r.send(&connect_v5(id, true, 0)).await;
    } else {
        r.send(&connect_v311(id, true, 0)).await;
    }
    match r.recv().await {
        Some(Packet::ConnAck(a)) if a.code == 0 => r,
        other => panic!("{id}: expected CONNACK success, got {other:?}"),
    }
}

/// The reason of the single DISCONNECT in `seen` (and nothing else).
fn only_disconnect(seen: &[Packet]) -> u8 {
    match seen {
        [Packet::Disconnect(d)] => d.reason,
        other => panic!("expected exactly one DISCONNECT before close, got {other:?}"),
    }
}

/// PUBLISH bytes with a raw topic (any bytes), built by hand.
fn publish_bytes(first: u8, topic: &[u8], packet_id: Option<u16>, v5: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// Connects (3.1.1 or v5), sends `bytes`, and returns what the broker sent
/// before closing the connection (which must happen within [`CLOSE_SOON`]).
async fn after_connect(addr: SocketAddr, v5: bool, bytes: &[u8]) -> Vec<Packet> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("mal-{}", N.fetch_add(1, Ordering::Relaxed));
    let mut r = connected(addr, v5, &id).await;
    r.send(bytes).await;
    r.expect_closed(CLOSE_SOON).await
}

/// Sends `bytes` as the first thing on a new connection; returns what came
/// back before the close and how long the close took.
async fn first_bytes(addr: SocketAddr, bytes: &[u8]) -> (Vec<Packet>, Duration) {
    let mut r = Raw::connect(addr).await;
    let t = Instant::now();
    r.send(bytes).await;
    let seen = r.expect_closed(CLOSE_SOON).await;
    (seen, t.elapsed())
}

fn rss(broker: &Broker) -> u64 {
    rss_kib(broker.pid()).expect("broker VmRSS")
}

#[tokio::test]
async fn garbage_instead_of_connect_is_closed_without_connack() {
    let broker = Broker::start("");
    let (seen, took) = first_bytes(broker.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(seen.is_empty(), "no CONNACK expected, got {seen:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}, expected at once");
    let (seen, _) = first_bytes(broker.addr, &[0x00, 0x00]).await;
    assert!(seen.is_empty(), "packet type 0: got {seen:?}");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn five_byte_remaining_length_is_closed() {
    let broker = Broker::start("");
    let (seen, took) = first_bytes(broker.addr, &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    assert!(seen.is_empty(), "got {seen:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // The same after a successful CONNECT.
    let seen = after_connect(broker.addr, false, &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    assert!(seen.is_empty(), "3.1.1: got {seen:?}");
    let seen = after_connect(broker.addr, true, &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    assert_eq!(only_disconnect(&seen), v5::MALFORMED_PACKET);
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn truncated_packets_then_close_leave_broker_fine() {
    let broker = Broker::start("");
    // Half a CONNECT, then close.
    let c = connect_v311("half-connect", true, 30);
    let mut r = Raw::connect(broker.addr).await;
    r.send(&c[..c.len() / 2]).await;
    drop(r);
    // CONNECT, then half a PUBLISH, then close.
    let mut r = connected(broker.addr, false, "half-publish").await;
    let p = publish_bytes(0x32, b"t/half", Some(7), false, &[0xAB; 200]);
    r.send(&p[..p.len() / 2]).await;
    assert!(r.recv_timeout(Duration::from_millis(300)).await.is_err(), "broker must wait for the rest");
    drop(r);
    // The same on v5.
    let mut r = connected(broker.addr, true, "half-publish-v5").await;
    let p = publish_bytes(0x32, b"t/half", Some(7), true, &[0xAB; 200]);
    r.send(&p[..p.len() / 2]).await;
    drop(r);
    assert_healthy(&broker).await;
    // The client id is free again: a new connection with it is a fresh one.
    let mut r = connected(broker.addr, false, "half-publish").await;
    r.send(&[0xC0, 0x00]).await;
    assert_eq!(r.recv().await, Some(Packet::PingResp));
}

/// Fixed header of a PUBLISH declaring 268,435,455 bytes (the MQTT maximum).
const HUGE_PUBLISH: [u8; 5] = [0x30, 0xff, 0xff, 0xff, 0x7f];
/// Fixed header of a CONNECT declaring 268,435,455 bytes.
const HUGE_CONNECT: [u8; 5] = [0x10, 0xff, 0xff, 0xff, 0x7f];

#[tokio::test]
async fn declared_256mb_packet_is_refused_from_the_fixed_header() {
    let broker = Broker::start("");
    assert_healthy(&broker).await;
    let attempt = |round: usize| {
        let addr = broker.addr;
        async move {
            let seen = after_connect(addr, true, &HUGE_PUBLISH).await;
            assert_eq!(only_disconnect(&seen), v5::PACKET_TOO_LARGE, "v5 round {round}");
            let seen = after_connect(addr, false, &HUGE_PUBLISH).await;
            assert!(seen.is_empty(), "3.1.1 round {round}: got {seen:?}");
            let (seen, took) = first_bytes(addr, &HUGE_CONNECT).await;
            assert!(seen.is_empty(), "first packet, round {round}: got {seen:?}");
            // connect_timeout is 10 s by default: this must be far quicker.
            assert!(took < Duration::from_secs(2), "first packet huge: closed after {took:?}");
        }
    };
    // Warm-up round, then measure.
    attempt(0).await;
    let before = rss(&broker);
    for round in 1..=20 {
        attempt(round).await;
    }
    // Declared huge, then actually sending 256 KiB of it: still refused,
    // nothing buffered.
    let mut r = connected(broker.addr, true, "huge-body").await;
    r.send(&HUGE_PUBLISH).await;
    let _ = r.stream.write_all(&vec![0x55; 256 * 1024]).await;
    let seen = r.expect_closed(CLOSE_SOON).await;
    assert!(seen.is_empty() || only_disconnect(&seen) == v5::PACKET_TOO_LARGE, "huge with body: got {seen:?}");
    let after = rss(&broker);
    println!("RSS before 60 huge-packet attempts: {before} KiB, after: {after} KiB");
    assert!(after < before + 4 * 1024, "RSS grew from {before} KiB to {after} KiB after declared 256 MB packets");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn publish_before_connect_is_closed_without_connack() {
    let broker = Broker::start("");
    let (seen, took) = first_bytes(broker.addr, &publish_bytes(0x30, b"a/b", None, false, b"x")).await;
    assert!(seen.is_empty(), "got {seen:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    let (seen, _) = first_bytes(broker.addr, &[0xC0, 0x00]).await;
    assert!(seen.is_empty(), "PINGREQ first: got {seen:?}");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn wildcard_in_publish_topic_is_closed() {
    let broker = Broker::start("");
    for topic in [&b"a/+"[..], b"a/#", b"#", b"+"] {
        let t = String::from_utf8_lossy(topic);
        let seen = after_connect(broker.addr, false, &publish_bytes(0x30, topic, None, false, b"x")).await;
        assert!(seen.is_empty(), "3.1.1 `{t}`: got {seen:?}");
        let seen = after_connect(broker.addr, false, &publish_bytes(0x32, topic, Some(1), false, b"x")).await;
        assert!(seen.is_empty(), "3.1.1 QoS 1 `{t}`: got {seen:?}");
        let seen = after_connect(broker.addr, true, &publish_bytes(0x30, topic, None, true, b"x")).await;
        // Observed: 0x90 Topic Name invalid.
        assert_eq!(only_disconnect(&seen), v5::TOPIC_NAME_INVALID, "v5 `{t}`");
    }
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn invalid_utf8_and_nul_in_topic_are_malformed() {
    let broker = Broker::start("");
    for topic in [&b"a/\xC3\x28"[..], b"a/\x00b", b"\xED\xA0\x80"] {
        let seen = after_connect(broker.addr, false, &publish_bytes(0x30, topic, None, false, b"x")).await;
        assert!(seen.is_empty(), "3.1.1 {topic:x?}: got {seen:?}");
        let seen = after_connect(broker.addr, true, &publish_bytes(0x30, topic, None, true, b"x")).await;
        assert_eq!(only_disconnect(&seen), v5::MALFORMED_PACKET, "v5 {topic:x?}");
    }
    // The same in a SUBSCRIBE filter.
    let mut body = vec![0, 1];
    body.extend_from_slice(&[0, 4, b'a', b'/', 0xC3, 0x28, 1]);
    let seen = after_connect(broker.addr, false, &frame(0x82, &body)).await;
    assert!(seen.is_empty(), "3.1.1 SUBSCRIBE: got {seen:?}");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn client_id_of_65535_bytes_is_rejected() {
    // Above the default max_connect_size (64 KiB) the CONNECT would be
    // refused from its header; this checks the client id rule itself.
    let broker = Broker::start("[limits]\nmax_connect_size = \"1MiB\"\n");
    let id = "x".repeat(65_535);
    let mut r = Raw::connect(broker.addr).await;
    r.send(&connect_v311(&id, true, 0)).await;
    let seen = r.expect_closed(CLOSE_SOON).await;
    match &seen[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.code, 0x02, "3.1.1: identifier rejected"),
        other => panic!("3.1.1: expected CONNACK 0x02 then close, got {other:?}"),
    }
    let mut r = Raw::connect(broker.addr).await;
    r.version = ProtocolVersion::V5;
    r.send(&connect_v5(&id, true, 0)).await;
    let seen = r.expect_closed(CLOSE_SOON).await;
    match &seen[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.code, v5::CLIENT_IDENTIFIER_NOT_VALID, "v5"),
        other => panic!("v5: expected CONNACK 0x85 then close, got {other:?}"),
    }
    // The limit itself (1024) is accepted.
    let _ok = connected(broker.addr, false, &"y".repeat(1024)).await;
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn unsupported_protocol_level_and_wrong_name() {
    let broker = Broker::start("");
    // Protocol level 6: CONNACK 0x01 (unacceptable protocol version), close.
    let mut c = connect_v311("level6", true, 0);
    c[8] = 6;
    let (seen, _) = first_bytes(broker.addr, &c).await;
    match &seen[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.code, 0x01, "level 6"),
        other => panic!("level 6: expected CONNACK 0x01 then close, got {other:?}"),
    }
    // MQIsdp at level 4: also an unsupported level.
    let mut body = vec![0, 6];
    body.extend_from_slice(b"MQIsdp");
    body.extend_from_slice(&[4, 0x02, 0, 0, 0, 1, b'q']);
    let (seen, _) = first_bytes(broker.addr, &frame(0x10, &body)).await;
    match &seen[..] {
        [Packet::ConnAck(a)] => assert_eq!(a.code, 0x01, "MQIsdp level 4"),
        other => panic!("MQIsdp level 4: expected CONNACK 0x01 then close, got {other:?}"),
    }
    // Wrong protocol name: closed without CONNACK.
    let mut c = connect_v311("badname", true, 0);
    c[4..8].copy_from_slice(b"MQTX");
    let (seen, took) = first_bytes(broker.addr, &c).await;
    assert!(seen.is_empty(), "wrong protocol name: got {seen:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn protocol_violations_after_connect_are_closed() {
    let broker = Broker::start("");
    // SUBSCRIBE with fixed-header flags 0 instead of 2.
    let sub_body = [0, 1, 0, 3, b'a', b'/', b'b', 0];
    let seen = after_connect(broker.addr, false, &frame(0x80, &sub_body)).await;
    assert!(seen.is_empty(), "3.1.1 SUBSCRIBE flags 0: got {seen:?}");
    let sub_body_v5 = [0, 1, 0, 0, 3, b'a', b'/', b'b', 0];
    let seen = after_connect(broker.addr, true, &frame(0x80, &sub_body_v5)).await;
    assert_eq!(only_disconnect(&seen), v5::MALFORMED_PACKET, "v5 SUBSCRIBE flags 0");
    // PINGREQ with a flag bit set.
    let seen = after_connect(broker.addr, false, &[0xC1, 0x00]).await;
    assert!(seen.is_empty(), "3.1.1 PINGREQ flags 1: got {seen:?}");
    // QoS 1 PUBLISH with packet identifier 0.
    let seen = after_connect(broker.addr, false, &publish_bytes(0x32, b"a/b", Some(0), false, b"x")).await;
    assert!(seen.is_empty(), "3.1.1 packet id 0: got {seen:?}");
    let seen = after_connect(broker.addr, true, &publish_bytes(0x32, b"a/b", Some(0), true, b"x")).await;
    assert_eq!(only_disconnect(&seen), v5::PROTOCOL_ERROR, "v5 packet id 0");
    // QoS 3.
    let seen = after_connect(broker.addr, false, &publish_bytes(0x36, b"a/b", Some(1), false, b"x")).await;
    assert!(seen.is_empty(), "3.1.1 QoS 3: got {seen:?}");
    // A second CONNECT on the connection.
    let seen = after_connect(broker.addr, false, &connect_v311("second", true, 0)).await;
    assert!(seen.is_empty(), "3.1.1 second CONNECT: got {seen:?}");
    let seen = after_connect(broker.addr, true, &connect_v5("second5", true, 0)).await;
    assert_eq!(only_disconnect(&seen), v5::PROTOCOL_ERROR, "v5 second CONNECT");
    assert_healthy(&broker).await;
}

#[tokio::test]
async fn ten_thousand_subscriptions_from_one_client() {
    // The default limits (1,000 subscriptions, 2 MiB) would refuse most.
    let broker = Broker::start("[limits]\nmax_subscriptions = 0\nmax_subscription_bytes = 0\n");
    let mut sub = connected(broker.addr, false, "many-subs").await;
    let opts = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    let t = Instant::now();
    for batch in 0..100u16 {
        let filters = (0..100).map(|i| (format!("many/{}", u32::from(batch) * 100 + i), opts)).collect();
        let packet_id = batch + 1;
        sub.send_packet(&Packet::Subscribe(Subscribe { packet_id, filters, properties: Properties::default() })).await;
        match sub.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.packet_id, packet_id);
                assert_eq!(a.return_codes, vec![1; 100], "batch {batch}");
            }
            other => panic!("batch {batch}: expected SUBACK, got {other:?}"),
        }
    }
    println!("10,000 subscriptions in {:?}", t.elapsed());
    let mut publisher = connected(broker.addr, false, "many-pub").await;
    publisher
        .send_packet(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "many/4242".into(),
            packet_id: Some(9),
            payload: bytes::Bytes::from_static(b"hit"),
            properties: Properties::default(),
        }))
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, 9),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    match sub.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "many/4242");
            assert_eq!(&p.payload[..], b"hit");
            assert_eq!(p.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected the PUBLISH, got {other:?}"),
    }
    // Exactly one copy.
    if let Ok(p) = sub.recv_timeout(Duration::from_millis(300)).await {
        panic!("unexpected extra packet {p:?}");
    }
    assert_healthy(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flood_without_reading_pubacks() {
    let mut broker = Broker::start("");
    assert_healthy(&broker).await;
    let base = rss(&broker);
    // A small receive buffer, so the PUBACKs the flooder never reads back
    // up into the broker quickly and its write high-water mark is reached.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(broker.addr).await.expect("connect");
    stream.write_all(&connect_v311("flooder", true, 0)).await.expect("CONNECT");
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut connack))
        .await
        .expect("CONNACK timeout")
        .expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "flooder CONNACK");
    // Upper bound; the 5 s time bound normally ends the flood first.
    const TOTAL: usize = 2_000_000;
    const CHUNK: usize = 1_000;
    let writer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut sent = 0usize;
        let mut id: u16 = 0;
        while sent < TOTAL {
            let mut chunk = Vec::with_capacity(CHUNK * 48);
            for _ in 0..CHUNK {
                id = id.checked_add(1).unwrap_or(1);
                chunk.extend_from_slice(&publish_bytes(0x32, b"flood/x", Some(id), false, &[0x5A; 32]));
            }
            match tokio::time::timeout_at(deadline, stream.write_all(&chunk)).await {
                Ok(Ok(())) => sent += CHUNK,
                Ok(Err(e)) => panic!("flood write failed after {sent} packets: {e}"),
                Err(_) => break,
            }
        }
        (stream, sent, deadline)
    });
    // While the flood runs: another client works, and RSS stays bounded.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!writer.is_finished(), "the flood should still be running");
    let t = Instant::now();
    assert_healthy(&broker).await;
    let healthy_took = t.elapsed();
    let mut peak = rss(&broker);
    let (stream, sent, deadline) = loop {
        peak = peak.max(rss(&broker));
        if writer.is_finished() {
            break writer.await.expect("flood writer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    peak = peak.max(rss(&broker));
    let flood_took = Duration::from_secs(5).saturating_sub(deadline - tokio::time::Instant::now());
    println!("flood writer finished after {flood_took:?}");
    assert_healthy(&broker).await;
    println!(
        "QoS 1 flood: {sent} PUBLISHes written in <= 5 s; RSS before {base} KiB, peak {peak} KiB; \
         healthy client during flood took {healthy_took:?}"
    );
    assert!(peak < base + 32 * 1024, "RSS grew from {base} KiB to {peak} KiB during the flood");
    drop(stream);
    assert!(broker.alive());
    assert_healthy(&broker).await;
    let after = rss(&broker);
    println!("QoS 1 flood: RSS after the flooder left: {after} KiB");
}

/// Reads `$SYS/.../stats/clients/count` values until `done(value)` or the
/// deadline; returns the last value seen.
async fn wait_clients_count(obs: &mut Raw, timeout: Duration, done: impl Fn(u64) -> bool) -> Option<u64> {
    let end = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < end {
        match obs.recv_timeout(end - Instant::now()).await {
            Ok(Some(Packet::Publish(p))) => {
                assert!(p.topic.ends_with("/stats/clients/count"), "unexpected topic {}", p.topic);
                let v: u64 = std::str::from_utf8(&p.payload).expect("utf8").parse().expect("a number");
                last = Some(v);
                if done(v) {
                    return last;
                }
            }
            Ok(Some(other)) => panic!("observer got {other:?}"),
            Ok(None) => panic!("observer connection closed"),
            Err(()) => break,
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_abruptly_dropped_connections_are_cleaned_up() {
    let broker = Broker::start("[sys]\ninterval = \"1s\"\n");
    let mut obs = connected(broker.addr, false, "observer").await;
    obs.send_packet(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("$SYS/brokers/+/stats/clients/count".into(), SubscriptionOptions::default())],
        properties: Properties::default(),
    }))
    .await;
    match obs.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(a.return_codes, vec![0]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    const N: usize = 1_000;
    let mut conns = Vec::with_capacity(N);
    for batch in 0..(N / 100) {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..100 {
            let addr = broker.addr;
            set.spawn(async move { connected(addr, false, &format!("abrupt-{}", batch * 100 + i)).await });
        }
        while let Some(r) = set.join_next().await {
            conns.push(r.expect("connect task"));
        }
    }
    let peak = wait_clients_count(&mut obs, Duration::from_secs(5), |v| v > N as u64).await;
    assert_eq!(peak, Some(N as u64 + 1), "clients/count while {N} + observer are connected");
    for (i, c) in conns.into_iter().enumerate() {
        if i & 1 == 0 {
            c.stream.set_zero_linger().expect("SO_LINGER 0");
        }
        drop(c);
    }
    let t = Instant::now();
    let last = wait_clients_count(&mut obs, Duration::from_secs(10), |v| v <= 1).await;
    assert_eq!(last, Some(1), "clients/count after dropping {N} connections (only the observer remains)");
    println!("clients/count back to 1 within {:?} of dropping {N} connections", t.elapsed());
    assert_healthy(&broker).await;
}

/// xorshift64*: deterministic garbage.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 32) as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// `len` bytes of garbage: pure noise, or (odd `seed`) a run of frames with
/// plausible fixed headers and random bodies, to reach the body parsers.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    if seed & 1 == 0 {
        return rng.bytes(len);
    }
    const FIRST: [u8; 14] = [0x30, 0x32, 0x34, 0x3B, 0x40, 0x50, 0x62, 0x70, 0x82, 0xA2, 0xC0, 0xE0, 0xF0, 0x20];
    let mut out = Vec::with_capacity(len + 300);
    while out.len() < len {
        let first = FIRST[(rng.next_u64() % FIRST.len() as u64) as usize];
        let body_len = (rng.next_u64() % 200) as usize;
        out.extend_from_slice(&frame(first, &rng.bytes(body_len)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_after_connect_never_kills_the_broker() {
    let mut broker = Broker::start("");
    let mut set = tokio::task::JoinSet::new();
    for seed in 0..50u64 {
        let addr = broker.addr;
        set.spawn(async move {
            let r = connected(addr, seed % 3 == 0, &format!("garbage-{seed}")).await;
            let mut stream = r.stream;
            let junk = garbage(seed, 2048 + (seed as usize * 97) % 4096);
            // The broker may close mid-write: errors are expected.
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&junk)).await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
    let end = Instant::now() + Duration::from_secs(15);
    while let Some(r) = set.join_next().await {
        r.expect("garbage task");
        assert!(Instant::now() < end, "garbage round took too long");
    }
    assert!(broker.alive(), "broker died; log:\n{}", broker.log());
    assert_healthy(&broker).await;
    assert!(broker.alive());
}
