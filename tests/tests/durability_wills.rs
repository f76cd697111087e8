//! Wills survive `kill -9` (strict store): the will of a persistent
//! session's client is stored with the session and published after the
//! restart when the broker never saw the client leave, or when its will
//! delay had not run out — at the deadline counted from when the client
//! left (the downtime counts), once, with its QoS, retain flag and
//! properties; not when the client reconnects first, not after a normal
//! DISCONNECT, and never for a session that is not stored (clean start,
//! expiry 0) or a will to a `$` topic.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q1: QoS = QoS::AtLeastOnce;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// One listener and the strict store in `dir/data` (the same store for
/// every start of the test).
fn config(dir: &Path) -> String {
    format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[persistence]\nmode = \"strict\"\ndir = {:?}\n",
        dir.join("data").display().to_string()
    )
}

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(3600), ..Properties::default() }
}

/// A v5 CONNECT of a persistent session (expiry 1 h) with a will to
/// `w/<id>` delayed by `delay` seconds.
fn with_will(id: &str, delay: u32, retain: bool) -> Connect {
    let mut c = connect_packet(V5, id, true);
    c.properties = persistent();
    let mut w = will(&format!("w/{id}"), "gone", Q1, retain);
    w.properties.will_delay_interval = Some(delay);
    w.properties.content_type = Some("text/plain".into());
    w.properties.user_properties = vec![("k".into(), "v".into())];
    c.will = Some(w);
    c
}

/// Opens `c`, then SUBSCRIBEs once: in strict mode the SUBACK comes only
/// after everything the session stored before it — its will included —
/// is on disk.
async fn open_stored(addr: std::net::SocketAddr, c: Connect) -> Raw {
    let (mut raw, ack) = open(addr, c).await;
    assert_eq!(ack.code, 0, "{ack:?}");
    subscribe(&mut raw, 1, &[("barrier/x", Q1)]).await;
    raw
}

/// The persistent subscriber `sub` on `w/#` (QoS 1), connected; `clean`
/// for its first connection.
async fn subscriber(addr: std::net::SocketAddr, clean: bool) -> Raw {
    let (mut raw, ack) = open_v5(addr, "sub", clean, persistent()).await;
    if clean {
        subscribe(&mut raw, 1, &[("w/#", Q1)]).await;
    } else {
        assert!(ack.session_present, "the subscriber's session came back");
    }
    raw
}

/// The next PUBLISH within `t` (acknowledged), or `None`.
async fn arrival(raw: &mut Raw, t: Duration) -> Option<Publish> {
    let end = tokio::time::Instant::now() + t;
    loop {
        match raw.recv_timeout(end.saturating_duration_since(tokio::time::Instant::now())).await {
            Ok(Some(Packet::Publish(p))) => {
                ack_incoming(raw, &p).await;
                return Some(p);
            }
            Ok(Some(Packet::PubRel(r))) => raw.send_packet(&Packet::PubComp(PubResp::ok(r.packet_id))).await,
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("connection closed"),
            Err(()) => return None,
        }
    }
}

/// (a) A client connected at the crash (will delay 0): its will comes
/// after the restart, once, with its QoS, retain flag and properties —
/// to the persistent subscriber, and retained for a new one. A second
/// restart publishes it no more.
#[tokio::test]
async fn the_will_of_a_client_connected_at_the_crash_is_published_after_the_restart_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let b = Broker::start_with_config(&cfg);
    disconnect(subscriber(b.addr, true).await).await;
    let dev = open_stored(b.addr, with_will("dev", 0, true)).await;
    drop(b); // SIGKILL, the client still connected
    drop(dev);

    let b = Broker::start_with_config(&cfg);
    assert!(b.log().contains("pending wills restored from the store"), "{}", b.log());
    let mut sub = subscriber(b.addr, false).await;
    let got = arrival(&mut sub, Duration::from_secs(5)).await.expect("the will after the restart");
    assert_eq!((got.topic.as_str(), &got.payload[..], got.qos), ("w/dev", &b"gone"[..], Q1));
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.properties.user_properties, vec![("k".to_string(), "v".to_string())]);
    assert!(arrival(&mut sub, Duration::from_millis(800)).await.is_none(), "once");
    let (mut fresh, _) = open_v5(b.addr, "fresh", true, Properties::default()).await;
    subscribe(&mut fresh, 1, &[("w/#", Q1)]).await;
    let kept = arrival(&mut fresh, Duration::from_secs(5)).await.expect("the retained will");
    assert!(kept.retain && &kept.payload[..] == b"gone", "{kept:?}");
    drop(fresh);
    disconnect(sub).await;
    // The will's row went when it was published (written with the next
    // group commit: give it a moment before the kill).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);

    let b = Broker::start_with_config(&cfg);
    assert!(!b.log().contains("pending wills restored"), "{}", b.log());
    let mut sub = subscriber(b.addr, false).await;
    assert!(arrival(&mut sub, Duration::from_millis(1500)).await.is_none(), "not published twice");
}

/// (b) Will delay 3 s; the client drops; `kill -9` 1 s later; restart
/// 1 s after that: the will comes ~1 s after the restart (its deadline
/// counted from when the client left, downtime included), not 3 s after
/// it, and once.
#[tokio::test]
async fn a_delayed_will_keeps_its_deadline_across_the_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let b = Broker::start_with_config(&cfg);
    disconnect(subscriber(b.addr, true).await).await;
    let dev = open_stored(b.addr, with_will("dev", 3, false)).await;
    drop(dev); // socket closed: the broker starts the will delay
    let left = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(b);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let restart = Instant::now();
    let b = Broker::start_with_config(&cfg);
    let mut sub = subscriber(b.addr, false).await;
    let got = arrival(&mut sub, Duration::from_secs(6)).await.expect("the will after the restart");
    let (since_left, since_restart) = (left.elapsed(), restart.elapsed());
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("w/dev", &b"gone"[..]));
    // The deadline is wall-clock milliseconds from the disconnect the
    // broker recorded (a little after `left`).
    assert!(since_left >= Duration::from_millis(2900), "before its delay ran out: {since_left:?}");
    assert!(since_restart < Duration::from_millis(2700), "its delay started again at the restart: {since_restart:?}");
    assert!(arrival(&mut sub, Duration::from_millis(1500)).await.is_none(), "once");
}

/// (c) The client comes back (same session) before its will's deadline,
/// after the restart: no will — for a client that had dropped before the
/// crash and for one that was connected at the crash.
#[tokio::test]
async fn a_reconnect_before_the_deadline_cancels_the_will_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let b = Broker::start_with_config(&cfg);
    disconnect(subscriber(b.addr, true).await).await;
    let dropped = open_stored(b.addr, with_will("dropped", 3, false)).await;
    let connected = open_stored(b.addr, with_will("connected", 3, false)).await;
    drop(dropped);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(b);
    drop(connected);

    let b = Broker::start_with_config(&cfg);
    assert!(b.log().contains("pending wills restored from the store"), "{}", b.log());
    let mut back = Vec::new();
    for id in ["dropped", "connected"] {
        let mut c = connect_packet(V5, id, false);
        c.properties = persistent();
        let (raw, ack) = open(b.addr, c).await;
        assert!(ack.code == 0 && ack.session_present, "{id}: {ack:?}");
        back.push(raw);
    }
    let mut sub = subscriber(b.addr, false).await;
    assert!(arrival(&mut sub, Duration::from_secs(4)).await.is_none(), "a will after its client came back");
}

/// (d) A normal DISCONNECT (v5 0x00) before the crash cancels the will:
/// nothing after the restart.
#[tokio::test]
async fn a_normal_disconnect_before_the_crash_leaves_no_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let b = Broker::start_with_config(&cfg);
    disconnect(subscriber(b.addr, true).await).await;
    for (id, delay) in [("now", 0), ("later", 2)] {
        disconnect(open_stored(b.addr, with_will(id, delay, false)).await).await;
    }
    // The deletes are written with the next group commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);

    let b = Broker::start_with_config(&cfg);
    let mut sub = subscriber(b.addr, false).await;
    assert!(arrival(&mut sub, Duration::from_secs(3)).await.is_none(), "a will after a normal DISCONNECT");
}

/// (e) Sessions that are not stored (v5 expiry 0, 3.1.1 clean session)
/// do not keep their wills across a crash: they are not durable state;
/// nor does a will to a `$` topic.
#[tokio::test]
async fn wills_of_sessions_that_are_not_stored_do_not_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let b = Broker::start_with_config(&cfg);
    disconnect(subscriber(b.addr, true).await).await;
    let mut v5 = with_will("v5clean", 0, false);
    v5.properties = Properties::default();
    let mut v3 = connect_packet(ProtocolVersion::V311, "v3clean", true);
    v3.will = Some(will("w/v3clean", "gone", Q1, false));
    // A persistent session's will to a `$` topic (`$delayed/…`, for a
    // module's publish hook, which a will published after a restart does
    // not pass) is not stored either.
    let mut dollar = with_will("dollar", 0, false);
    if let Some(w) = dollar.will.as_mut() {
        w.topic = "$delayed/1/w/dollar".into();
    }
    let mut held = Vec::new();
    for c in [v5, v3, dollar] {
        let (mut raw, ack) = open(b.addr, c).await;
        assert_eq!(ack.code, 0);
        sync(&mut raw).await;
        held.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);
    drop(held);

    let b = Broker::start_with_config(&cfg);
    assert!(!b.log().contains("pending wills restored"), "{}", b.log());
    let mut sub = subscriber(b.addr, false).await;
    assert!(arrival(&mut sub, Duration::from_secs(2)).await.is_none(), "a will of a session that was not stored");
}
