//! MQTT over WebSocket and secure WebSocket through the real binary: a
//! client library (rumqttc) over `ws://` and `wss://`, packets split across
//! and packed into frames, ping/pong, and clean refusals of what MQTT over
//! WebSocket does not allow (no subprotocol, wrong path, foreign origin,
//! text frames, oversized frames, unmasked frames), after which the broker
//! keeps serving.

use std::time::Duration;

use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_tests::kit::{self, Mqtt3};
use portcullis_tests::net::{self, op, Ca, WsClient};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

fn ws_options(url: String, port: u16, id: &str, transport: rumqttc::Transport) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, url, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(transport);
    o
}

/// Upgrades a new connection to `addr` offering `mqtt`, and connects MQTT.
async fn ws_mqtt(addr: std::net::SocketAddr, client_id: &str) -> WsClient<TcpStream> {
    let (resp, ws) = net::ws_upgrade(net::tcp_connect(addr).await, "/mqtt", Some("mqtt"), &[]).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    let mut ws = ws.expect("upgraded");
    ws.send_packet(&Packet::Connect(Box::new(kit::connect_packet(ProtocolVersion::V311, client_id, true))))
        .await
        .expect("send CONNECT");
    match ws.recv_packet(T).await {
        Ok(Some(Packet::ConnAck(a))) => assert_eq!(a.code, 0),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    ws
}

/// rumqttc over ws:// and wss:// (it offers the `mqtt` subprotocol):
/// messages flow between WebSocket, secure WebSocket and TCP clients.
#[tokio::test]
async fn rumqttc_over_ws_and_wss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("WS CA");
    let (cert, key) = ca.server("broker").write(dir.path(), "server");
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"wss\"\ntype = \"wss\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\nwebsocket = {{ path = \"/mqtt\" }}\n"
    );
    let (_b, addrs) = net::start(&cfg);
    let (ws, wss) = (addrs["ws"], addrs["wss"]);

    let o = ws_options(format!("ws://127.0.0.1:{}/mqtt", ws.port()), ws.port(), "ws-sub", rumqttc::Transport::Ws);
    let (mut ws_sub, ack) = Mqtt3::connect(o, 10).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    ws_sub.subscribe("chat/#", rumqttc::QoS::AtLeastOnce).await;

    let tls = rumqttc::TlsConfiguration::Simple { ca: ca.pem().into_bytes(), alpn: None, client_auth: None };
    let o = ws_options(
        format!("wss://127.0.0.1:{}/mqtt", wss.port()),
        wss.port(),
        "wss-sub",
        rumqttc::Transport::wss_with_config(tls),
    );
    let (mut wss_sub, ack) = Mqtt3::connect(o, 10).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    wss_sub.subscribe("chat/#", rumqttc::QoS::AtLeastOnce).await;

    // From TCP, from wss, and a payload larger than one TCP segment.
    let (mut tcp_pub, _) = kit::open_v3(addrs["tcp"], "tcp-pub", true).await;
    kit::pub_simple(&mut tcp_pub, "chat/1", QoS::AtLeastOnce, 1, b"from tcp", false).await;
    wss_sub.client.publish("chat/2", rumqttc::QoS::AtLeastOnce, false, "from wss").await.expect("publish");
    let big = vec![b'x'; 9000];
    kit::pub_simple(&mut tcp_pub, "chat/3", QoS::AtLeastOnce, 2, &big, false).await;
    for sub in [&mut ws_sub, &mut wss_sub] {
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = sub.next_publish(T).await.expect("a message over WebSocket");
            got.push((p.topic.clone(), p.payload.len()));
        }
        got.sort();
        assert_eq!(got, [("chat/1".into(), 8), ("chat/2".into(), 8), ("chat/3".into(), 9000)]);
    }
    ws_sub.disconnect().await;
    wss_sub.disconnect().await;
}

/// MQTT packets split across frames (and across a fragmented message) and
/// packed several to a frame; ping answered with pong; the negotiated
/// subprotocol is the first one offered that MQTT knows.
#[tokio::test]
async fn packets_split_across_and_packed_into_frames() {
    let (_b, addrs) = net::start("[[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n");
    let addr = addrs["ws"];
    for (offered, chosen) in [("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("chat, mqttv3.1.1, mqtt", "mqttv3.1.1")] {
        let (resp, _) = net::ws_upgrade(net::tcp_connect(addr).await, "/mqtt", Some(offered), &[]).await;
        assert_eq!(resp.status, 101, "{offered}: {resp:?}");
        assert_eq!(resp.header("sec-websocket-protocol"), Some(chosen));
    }

    let (_, ws) = net::ws_upgrade(net::tcp_connect(addr).await, "/mqtt", Some("mqtt"), &[]).await;
    let mut ws = ws.expect("upgraded");
    let connect = portcullis_tests::connect_v311("split", true, 30);
    // CONNECT in three frames: two whole binary frames, the last one
    // fragmented into a binary and a continuation frame.
    ws.send_frame(true, op::BINARY, &connect[..3]).await.unwrap();
    ws.send_frame(true, op::BINARY, &connect[3..8]).await.unwrap();
    ws.send_frame(false, op::BINARY, &connect[8..10]).await.unwrap();
    ws.send_frame(true, op::CONTINUATION, &connect[10..]).await.unwrap();
    match ws.recv_packet(T).await {
        Ok(Some(Packet::ConnAck(a))) => assert_eq!(a.code, 0),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // SUBSCRIBE, a PUBLISH to it and PINGREQ in one frame.
    let mut packed = portcullis_tests::frame(0x82, &[0, 1, 0, 4, b'w', b's', b'/', b'x', 0]);
    packed.extend(portcullis_tests::frame(0x30, b"\x00\x04ws/xhello"));
    packed.extend([0xc0, 0x00]);
    ws.send_frame(true, op::BINARY, &packed).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws.recv_packet(T).await.expect("in time").expect("a packet"));
    }
    // The delivery comes through the session, so it may follow PINGRESP.
    assert!(matches!(&seen[0], Packet::SubAck(a) if a.return_codes == [0]), "{seen:?}");
    assert!(seen.iter().any(|p| matches!(p, Packet::Publish(p) if &p.payload[..] == b"hello")), "{seen:?}");
    assert!(seen.iter().any(|p| matches!(p, Packet::PingResp)), "{seen:?}");

    ws.send_frame(true, op::PING, b"are you there").await.unwrap();
    loop {
        match ws.recv_frame(T).await {
            Ok(Some((op::PONG, data))) => {
                assert_eq!(data, b"are you there");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("expected PONG, got {other:?}"),
        }
    }
    // A close from the client is answered with a close and the end of the stream.
    ws.send_frame(true, op::CLOSE, &1000u16.to_be_bytes()).await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1000));
    assert!(matches!(ws.recv_frame(T).await, Ok(None)), "stream still open after the close handshake");
}

/// Refused upgrades get an HTTP error; broken rules after the upgrade get a
/// close frame with the RFC 6455 code; the broker keeps serving and counts
/// the refused upgrades.
#[tokio::test]
async fn clean_refusals_and_the_broker_keeps_serving() {
    let (mut b, addrs) = net::start(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\nmax_packet_size = 1024\n\
         websocket = { allowed_origins = [\"https://app.example.com\"] }\n\n[sys]\ninterval = \"1s\"\n",
    );
    let addr = addrs["ws"];
    let upgrade = |path: &'static str, proto: Option<&'static str>, extra: &'static [(&'static str, &'static str)]| async move {
        net::ws_upgrade(net::tcp_connect(addr).await, path, proto, extra).await.0
    };
    let r = upgrade("/mqtt", None, &[]).await;
    assert_eq!(r.status, 400, "no subprotocol: {r:?}");
    assert!(r.body.contains("Sec-WebSocket-Protocol"), "{r:?}");
    assert_eq!(upgrade("/mqtt", Some("chat, superchat"), &[]).await.status, 400, "no MQTT subprotocol");
    assert_eq!(upgrade("/other", Some("mqtt"), &[]).await.status, 404);
    assert_eq!(upgrade("/mqtt", Some("mqtt"), &[("Origin", "https://evil.example.com")]).await.status, 403);
    assert_eq!(upgrade("/mqtt", Some("mqtt"), &[("Origin", "https://app.example.com")]).await.status, 101);

    // Not an upgrade at all: no 101, and the connection ends.
    let mut plain = net::tcp_connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let r = tokio::time::timeout(T, tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer)).await;
    assert!(r.is_ok(), "plain GET: connection not closed");
    assert!(!String::from_utf8_lossy(&answer).contains(" 101 "), "plain GET upgraded");

    // Text frame: 1003.
    let mut ws = ws_mqtt(addr, "texter").await;
    ws.send_frame(true, op::TEXT, b"\x10\x0c").await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1003), "text frame");
    // A frame over max_packet_size (1024): 1009, before the payload is read.
    let mut ws = ws_mqtt(addr, "big-frame").await;
    ws.send_frame(true, op::BINARY, &[0u8; 2000]).await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1009), "oversized frame");
    let mut ws = ws_mqtt(addr, "huge-header").await;
    ws.send_raw(&net::frame_header(true, op::BINARY, 1 << 62, [1, 2, 3, 4])).await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1009), "frame claiming 2^62 bytes");
    // A fragmented message over the limit: 1009.
    let mut ws = ws_mqtt(addr, "big-message").await;
    ws.send_frame(false, op::BINARY, &[0u8; 800]).await.unwrap();
    ws.send_frame(true, op::CONTINUATION, &[0u8; 800]).await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1009), "oversized message");
    // An unmasked client frame is a protocol error: 1002.
    let mut ws = ws_mqtt(addr, "unmasked").await;
    ws.send_raw(&[0x82, 0x02, 0xc0, 0x00]).await.unwrap();
    assert_eq!(ws.expect_close().await, Some(1002), "unmasked frame");
    // An MQTT packet over the limit inside a frame within it: the MQTT
    // connection is closed (the codec refuses it from its fixed header).
    let mut ws = ws_mqtt(addr, "big-packet").await;
    ws.send_frame(true, op::BINARY, &portcullis_tests::frame(0x30, &[0u8; 1100])[..5]).await.unwrap();
    assert!(matches!(ws.recv_packet(T).await, Ok(None)), "oversized MQTT packet");

    assert!(b.alive());
    let mut ws = ws_mqtt(addr, "still-works").await;
    ws.send_packet(&Packet::PingReq).await.unwrap();
    assert!(matches!(ws.recv_packet(T).await, Ok(Some(Packet::PingResp))));
    let failures = kit::sys_fresh(addrs["tcp"], "listeners/ws/handshake_failures", Duration::from_secs(5)).await;
    assert_eq!(failures, "5", "four refused upgrades and one plain GET");
}

/// Before its CONNECT is answered, a WebSocket client may send at most
/// `limits.max_connect_size` + 16 KiB (80 KiB by default): 600 KB of a
/// 900 KB message (under the listener's 1 MiB frame limit) closes the
/// socket once the cap is passed, so the broker never buffers it; after
/// CONNACK a 900 KB message is fine.
#[tokio::test]
async fn a_websocket_client_cannot_buffer_a_large_message_before_connack() {
    let (b, addrs) = net::start("[[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n");
    let addr = addrs["ws"];
    let before = portcullis_tests::rss_kib(b.pid()).expect("rss");
    let mut held = Vec::new();
    for _ in 0..40 {
        let (resp, ws) = net::ws_upgrade(net::tcp_connect(addr).await, "/mqtt", Some("mqtt"), &[]).await;
        assert_eq!(resp.status, 101);
        let mut ws = ws.expect("upgraded");
        // A frame header declaring 900 KB, then 600 KB of it.
        let _ = ws.send_raw(&net::frame_header(true, op::BINARY, 900_000, [1, 2, 3, 4])).await;
        for _ in 0..150 {
            if ws.send_raw(&[0u8; 4096]).await.is_err() {
                break;
            }
        }
        held.push(ws);
    }
    for ws in &mut held {
        assert!(matches!(ws.recv_frame(T).await, Ok(None) | Ok(Some((8, _)))), "closed before CONNACK");
    }
    let grown = portcullis_tests::rss_kib(b.pid()).expect("rss").saturating_sub(before);
    eprintln!("40 WebSocket sockets sending 600 KB before CONNECT: RSS +{grown} KiB");
    // An idle WebSocket connection costs about 75 KiB (tungstenite's
    // buffers); buffering the messages would be 24 MB.
    assert!(grown < 10 * 1024, "RSS grew {grown} KiB");
    // After CONNACK the listener's own limit applies.
    let mut ws = ws_mqtt(addr, "big-after-connack").await;
    let p = kit::publish("big", QoS::AtMostOnce, None, &vec![7u8; 900_000], false);
    ws.send_packet(&Packet::Publish(p)).await.expect("send");
    ws.send_packet(&Packet::PingReq).await.expect("ping");
    assert!(matches!(ws.recv_packet(T).await, Ok(Some(Packet::PingResp))), "a 900 KB PUBLISH after CONNACK is fine");
}
