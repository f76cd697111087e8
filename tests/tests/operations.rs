//! Operational behaviour of the real binary: defaults, connection limits,
//! timeouts, keep-alive, shutdown on signals, config errors, rate limits and
//! session takeover.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_core::codec::{reason::v5, Packet, Properties, ProtocolVersion, Publish, QoS};
use portcullis_core::codec::{Subscribe, SubscriptionOptions};
use portcullis_tests::{binary, connect_v311, connect_v5, Broker, Raw};
use tokio::io::AsyncWriteExt;

const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// Sends CONNECT (3.1.1 or v5) on a new connection and returns the client
/// with the CONNACK it got.
async fn try_connect(addr: SocketAddr, v5: bool, id: &str, keep_alive: u16) -> (Raw, Option<Packet>) {
    let mut r = Raw::connect(addr).await;
    if v5 {
        r.version = ProtocolVersion::V5;
        r.send(&connect_v5(id, true, keep_alive)).await;
    } else {
        r.send(&connect_v311(id, true, keep_alive)).await;
    }
    let p = r.recv().await;
    (r, p)
}

/// A raw client that completed CONNECT (CONNACK success).
async fn connected(addr: SocketAddr, v5: bool, id: &str, keep_alive: u16) -> Raw {
    match try_connect(addr, v5, id, keep_alive).await {
        (r, Some(Packet::ConnAck(a))) if a.code == 0 => r,
        (_, other) => panic!("{id}: expected CONNACK success, got {other:?}"),
    }
}

fn connack_code(p: &Option<Packet>) -> u8 {
    match p {
        Some(Packet::ConnAck(a)) => a.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The reason of the single DISCONNECT in `seen` (and nothing else).
fn only_disconnect(seen: &[Packet]) -> u8 {
    match seen {
        [Packet::Disconnect(d)] => d.reason,
        other => panic!("expected exactly one DISCONNECT before close, got {other:?}"),
    }
}

async fn subscribe(r: &mut Raw, filter: &str, qos: QoS) {
    let opts = SubscriptionOptions { qos, ..Default::default() };
    r.send_packet(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), opts)],
        properties: Properties::default(),
    }))
    .await;
    match r.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(a.return_codes, vec![qos as u8], "SUBACK for {filter}"),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn default_config_admits_loopback_clients() {
    let broker = Broker::start("");
    let (_a, p) = try_connect(broker.addr, false, "default-v3", 30).await;
    assert_eq!(connack_code(&p), 0, "3.1.1 loopback client");
    let (_b, p) = try_connect(broker.addr, true, "default-v5", 30).await;
    assert_eq!(connack_code(&p), 0, "v5 loopback client");
    assert!(
        broker.wait_log("anonymous clients are admitted from loopback only", Duration::from_secs(2)),
        "startup log should say access is loopback-only; log:\n{}",
        broker.log()
    );
}

#[tokio::test]
async fn listener_connection_limit() {
    let broker = Broker::start("[[listeners]]\nname = \"limited\"\nbind = \"127.0.0.1:0\"\nmax_connections = 2\n");
    let a = connected(broker.addr, false, "limit-a", 0).await;
    let _b = connected(broker.addr, true, "limit-b", 0).await;
    // Over the limit, a socket is closed at accept: no CONNACK, whatever
    // the version (issue 11: nothing is read from it).
    for (v5, id) in [(false, "limit-c"), (true, "limit-d")] {
        let (mut c, p) = try_connect(broker.addr, v5, id, 0).await;
        assert!(p.is_none(), "{id}: closed without a CONNACK, got {p:?}");
        assert!(c.expect_closed(Duration::from_secs(3)).await.is_empty());
    }
    drop(a);
    // Once the broker has seen `a` go, a new connection fits again.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match try_connect(broker.addr, false, "limit-e", 0).await {
            (_e, Some(Packet::ConnAck(a))) if a.code == 0 => break,
            (_, None) if Instant::now() < end => tokio::time::sleep(Duration::from_millis(50)).await,
            (_, other) => panic!("after a connection closed: {other:?}"),
        }
    }
    assert!(broker.wait_log("connection limit reached", Duration::from_secs(1)));
}

#[tokio::test]
async fn connect_timeout_closes_slow_sockets() {
    let broker = Broker::start("[limits]\nconnect_timeout = \"1s\"\n");
    let t = Instant::now();
    let mut silent = Raw::connect(broker.addr).await;
    let mut partial = Raw::connect(broker.addr).await;
    partial.send(&connect_v311("slow", true, 0)[..3]).await;
    let (s1, s2) =
        tokio::join!(silent.expect_closed(Duration::from_secs(5)), partial.expect_closed(Duration::from_secs(5)));
    let took = t.elapsed();
    assert!(s1.is_empty() && s2.is_empty(), "nothing expected: {s1:?} {s2:?}");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}, before the 1 s connect timeout");
    assert!(took <= Duration::from_secs(3), "closed after {took:?}, connect timeout is 1 s");
}

/// Sends CONNECT with keep-alive 2 s, then nothing; returns what the broker
/// sent before closing and the time from CONNECT sent / CONNACK received to
/// the close.
async fn silent_after_connect(addr: SocketAddr, v5: bool, id: &str) -> (Vec<Packet>, Duration, Duration) {
    let sent = Instant::now();
    let mut r = connected(addr, v5, id, 2).await;
    let acked = Instant::now();
    let seen = r.expect_closed(Duration::from_secs(8)).await;
    (seen, sent.elapsed(), acked.elapsed())
}

#[tokio::test]
async fn keep_alive_silence_closes_at_one_and_a_half_times() {
    let broker = Broker::start("");
    let ((seen3, since_send3, since_ack3), (seen5, since_send5, since_ack5)) = tokio::join!(
        silent_after_connect(broker.addr, false, "ka-v3"),
        silent_after_connect(broker.addr, true, "ka-v5")
    );
    assert!(seen3.is_empty(), "3.1.1: nothing expected before close, got {seen3:?}");
    assert_eq!(only_disconnect(&seen5), v5::KEEP_ALIVE_TIMEOUT, "v5 keep-alive timeout");
    for (since_send, since_ack) in [(since_send3, since_ack3), (since_send5, since_ack5)] {
        assert!(since_send >= Duration::from_millis(2900), "closed {since_send:?} after CONNECT; keep-alive 2 s × 1.5");
        assert!(since_ack <= Duration::from_secs(4), "closed {since_ack:?} after CONNACK; keep-alive 2 s × 1.5");
    }
}

#[tokio::test]
async fn keep_alive_pings_keep_the_connection_open() {
    let broker = Broker::start("");
    let mut r = connected(broker.addr, true, "ka-pinger", 2).await;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.send(&PINGREQ).await;
        match r.recv_timeout(Duration::from_secs(1)).await {
            Ok(Some(Packet::PingResp)) => {}
            other => panic!("after {:?}: expected PINGRESP, got {other:?}", t.elapsed()),
        }
    }
    // Still open; silence now ends it.
    let quiet = Instant::now();
    let seen = r.expect_closed(Duration::from_secs(6)).await;
    assert_eq!(only_disconnect(&seen), v5::KEEP_ALIVE_TIMEOUT);
    let took = quiet.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took <= Duration::from_secs(4),
        "closed {took:?} after last PINGREQ"
    );
}

#[tokio::test]
async fn server_keep_alive_cap_is_told_to_v5_clients() {
    let broker = Broker::start("[limits]\nmax_keep_alive = \"10s\"\n");
    for (asked, told) in [(0u16, Some(10u16)), (100, Some(10)), (10, None), (5, None)] {
        let (_r, p) = try_connect(broker.addr, true, &format!("ska-{asked}"), asked).await;
        match p {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, 0);
                assert_eq!(a.properties.server_keep_alive, told, "keep-alive {asked} asked");
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

/// Connects a v5 and a 3.1.1 client, stops the broker with `signal`, and
/// checks the goodbye: DISCONNECT 0x8B to v5, both closed, exit status 0.
async fn graceful_shutdown(signal: &str) {
    let mut broker = Broker::start("");
    let mut c5 = connected(broker.addr, true, "bye-v5", 30).await;
    let mut c3 = connected(broker.addr, false, "bye-v3", 30).await;
    // The broker installs its signal handlers only after it starts
    // listening (see `signal_right_after_startup_is_graceful`); give it a
    // moment so this test is about the shutdown itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let status = broker.signal_and_wait(signal, Duration::from_secs(10));
    let took = t.elapsed();
    let status = status.unwrap_or_else(|| panic!("SIG{signal}: broker did not exit within 10 s"));
    assert!(status.success(), "SIG{signal}: exit status {status:?}");
    assert!(took < Duration::from_secs(10), "SIG{signal}: exit took {took:?}");
    let seen5 = c5.expect_closed(Duration::from_secs(2)).await;
    assert_eq!(only_disconnect(&seen5), v5::SERVER_SHUTTING_DOWN, "SIG{signal}: v5 client");
    let seen3 = c3.expect_closed(Duration::from_secs(2)).await;
    assert!(seen3.is_empty(), "SIG{signal}: 3.1.1 client got {seen3:?}");
    println!("SIG{signal}: broker exited in {took:?}");
}

#[tokio::test]
async fn graceful_shutdown_on_sigterm() {
    graceful_shutdown("TERM").await;
}

#[tokio::test]
async fn graceful_shutdown_on_sigint() {
    graceful_shutdown("INT").await;
}

/// A signal that arrives as soon as the broker has logged `listening` (and
/// accepts connections) must still be a graceful shutdown, not the default
/// action of the signal (death by signal, no DISCONNECT).
#[test]
fn signal_right_after_startup_is_graceful() {
    for round in 0..10 {
        for signal in ["TERM", "INT"] {
            let mut broker = Broker::start("");
            let status = broker.signal_and_wait(signal, Duration::from_secs(10));
            let status = status.unwrap_or_else(|| panic!("round {round}: SIG{signal}: no exit within 10 s"));
            assert!(
                status.success(),
                "round {round}: SIG{signal} right after the `listening` log line: exit status {status:?} \
                 (the process died of the signal: its handler was not installed yet)"
            );
        }
    }
}

#[test]
fn config_errors_are_all_reported_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [limits]\nmax_packet_sizee = \"1MiB\"\n\n\
         [session]\nmax_inflight = \"lots\"\n",
    )
    .expect("write config");
    for check_only in [false, true] {
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(&path);
        if check_only {
            cmd.arg("--check-config");
        }
        let out = cmd.output().expect("run portcullis");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "bad config accepted (check_only={check_only}): {text}");
        let file = path.display().to_string();
        let unknown = text.lines().find(|l| l.contains("limits.max_packet_sizee"));
        let bad = text.lines().find(|l| l.contains("session.max_inflight"));
        let (Some(unknown), Some(bad)) = (unknown, bad) else {
            panic!("both problems must be reported (check_only={check_only}):\n{text}");
        };
        assert!(unknown.contains(&file) && unknown.contains(":6:"), "unknown key line: {unknown}");
        assert!(unknown.contains("unknown key"), "unknown key line: {unknown}");
        assert!(bad.contains(&file) && bad.contains(":9:"), "bad value line: {bad}");
    }
}

#[test]
fn shipped_config_passes_check_config() {
    let shipped = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../etc/portcullis.toml");
    let out = Command::new(binary()).arg("--check-config").arg("--config").arg(&shipped).output().expect("run");
    assert!(
        out.status.success(),
        "--check-config {} failed: {}{}",
        shipped.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Publishes 100 QoS 0 messages of 1,000 bytes (≈100 KB) from one client
/// and returns how long until a subscriber has received the last one.
async fn time_100kb(broker: &Broker) -> Duration {
    let mut sub = connected(broker.addr, false, "rl-sub", 0).await;
    subscribe(&mut sub, "rl/#", QoS::AtMostOnce).await;
    let publisher = connected(broker.addr, false, "rl-pub", 0).await;
    let mut bytes = Vec::new();
    let mut buf = bytes::BytesMut::new();
    for i in 0..100u32 {
        let mut payload = vec![b'.'; 1000];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "rl/data".into(),
            packet_id: None,
            payload: payload.into(),
            properties: Properties::default(),
        });
        portcullis_core::codec::encode(&p, ProtocolVersion::V311, &mut buf).expect("encode");
    }
    bytes.extend_from_slice(&buf);
    assert!(bytes.len() >= 100_000);
    let t = Instant::now();
    let mut stream = publisher.stream;
    let writer = tokio::spawn(async move {
        stream.write_all(&bytes).await.expect("write");
        stream
    });
    let mut next = 0u32;
    while next < 100 {
        match sub.recv_timeout(Duration::from_secs(15)).await {
            Ok(Some(Packet::Publish(p))) => {
                let i = u32::from_be_bytes([p.payload[0], p.payload[1], p.payload[2], p.payload[3]]);
                assert_eq!(i, next, "messages in order, none lost");
                next += 1;
            }
            other => panic!("waiting for message {next}: {other:?}"),
        }
    }
    let took = t.elapsed();
    drop(writer.await.expect("writer"));
    took
}

#[tokio::test]
async fn rate_limit_slows_a_fast_publisher() {
    let limited = Broker::start("[limits]\nrate_limit = { bytes_per_sec = 20000, burst = 20000 }\n");
    let slow = time_100kb(&limited).await;
    drop(limited);
    let unlimited = Broker::start("");
    let fast = time_100kb(&unlimited).await;
    println!("100 KB of QoS 0: {slow:?} with 20 KB/s (burst 20 KB), {fast:?} unlimited");
    // (100 KB - 20 KB burst) / 20 KB/s = 4 s.
    assert!(slow >= Duration::from_secs(3), "rate-limited 100 KB took only {slow:?}");
    assert!(slow <= Duration::from_secs(10), "rate-limited 100 KB took {slow:?}");
    assert!(fast < Duration::from_secs(2), "unlimited 100 KB took {fast:?}");
}

#[tokio::test]
async fn same_client_id_takes_over() {
    let broker = Broker::start("");
    let mut first = connected(broker.addr, false, "twin", 0).await;
    let mut second = connected(broker.addr, false, "twin", 0).await;
    let seen = first.expect_closed(Duration::from_secs(3)).await;
    assert!(seen.is_empty(), "3.1.1: nothing expected before close, got {seen:?}");
    second.send(&PINGREQ).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp), "the new connection lives");

    let mut first = connected(broker.addr, true, "twin5", 0).await;
    let mut second = connected(broker.addr, true, "twin5", 0).await;
    let seen = first.expect_closed(Duration::from_secs(3)).await;
    assert_eq!(only_disconnect(&seen), v5::SESSION_TAKEN_OVER, "v5 taken over");
    second.send(&PINGREQ).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp), "the new v5 connection lives");
}
