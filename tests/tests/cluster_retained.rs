//! Retained messages across the cluster (issue 19): three Portcullis nodes
//! on three clustered NATS servers (127.0.0.1-3), the retained set in the
//! JetStream key-value bucket `portcullis_retained`, mirrored on each node.
//!
//! * A retained message published on B is seen by a new subscriber on A
//!   and C (exact and wildcard filters), payload and properties byte for
//!   byte; cleared on C (empty payload), it is gone on A and B.
//! * A node started after the message was published sees it at once (the
//!   watch's initial replay happens before the node accepts clients), with
//!   its message expiry counted from when it was published.
//! * A node stopped while the retained set changes sees the new set when
//!   it comes back (its own store held the old one).
//! * Values in the bucket no node wrote (garbage, another topic, not
//!   retained, bytes after the packet, a bad key, `$SYS`) are skipped.
//! * SIGTERM flushes the cluster's outbound queue: a burst published on A
//!   while A's NATS server is frozen reaches B's subscriber once it thaws,
//!   although A was told to stop right after the PUBACKs.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_retained -- --test-threads=1`. Without a
//! nats-server the tests fail (they skip only with
//! `PORTCULLIS_SKIP_SERVICES=1`, never under `CI=true`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use portcullis_core::codec::{self, Packet, Properties, ProtocolVersion, Publish, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
/// How long a subscriber listens for the retained messages.
const QUIET: Duration = Duration::from_millis(400);
/// How long a change may take to reach every node's mirror.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a route may take to be in place across NATS.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// The config of node `name` on NATS server `i` (1-based), its store in
/// `data` when given.
fn config(nats: &Nats, i: usize, name: &str, data: Option<&Path>) -> String {
    let url = nats.url(i);
    let mut cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [node]\nname = \"{name}\"\n[limits]\nmax_packet_size = \"1MiB\"\n\
         [cluster]\nenabled = true\nnats = [\"{url}\"]\nkv_replicas = {}\n",
        nats.len()
    );
    if let Some(d) = data {
        cfg.push_str(&format!("[persistence]\ndir = {:?}\n", d.display().to_string()));
    }
    cfg
}

fn start(cfg: &str) -> Broker {
    let b = Broker::start_with_config(cfg);
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(20)), "{}", b.log());
    // A CONNECT is refused until the session registry is open.
    assert!(b.wait_log("session registry open", Duration::from_secs(20)), "{}", b.log());
    b
}

fn node(nats: &Nats, i: usize) -> Broker {
    start(&config(nats, i, &format!("n{i}"), None))
}

async fn v5(addr: SocketAddr, id: &str) -> Raw {
    open_v5(addr, id, true, Properties::default()).await.0
}

/// What a new subscriber on `addr` to `filter` receives (the retained
/// messages), sorted by topic.
async fn retained_on(addr: SocketAddr, filter: &str) -> Vec<Publish> {
    let mut s = v5(addr, "probe").await;
    subscribe(&mut s, 1, &[(filter, Q1)]).await;
    let mut got = drain_publishes(&mut s, QUIET, QUIET * 10).await;
    disconnect(s).await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    got
}

fn topics(p: &[Publish]) -> Vec<&str> {
    p.iter().map(|p| p.topic.as_str()).collect()
}

/// Asks `addr` again (bounded by [`MIRROR_TIMEOUT`]) until `filter`'s
/// retained topics are `want`; returns the messages.
async fn await_retained(addr: SocketAddr, filter: &str, want: &[&str]) -> Vec<Publish> {
    let end = Instant::now() + MIRROR_TIMEOUT;
    loop {
        let got = retained_on(addr, filter).await;
        if topics(&got) == want {
            return got;
        }
        assert!(Instant::now() < end, "{addr} {filter}: retained {:?}, want {want:?}", topics(&got));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `got` is the retained message published with `payload` and
/// [`full_properties`] (expiry: what is left, at most `max_expiry`).
fn assert_full(got: &Publish, payload: &[u8], max_expiry: u32) {
    assert!(got.retain, "retain flag set for a retained message");
    assert_eq!(got.qos, Q1);
    assert_eq!(&got.payload[..], payload, "payload byte for byte");
    let (mut want, mut have) = (full_properties(), got.properties.clone());
    let expiry = have.message_expiry_interval.take().expect("message expiry kept");
    assert!(expiry <= max_expiry && expiry + 30 >= max_expiry, "remaining expiry {expiry}, want about {max_expiry}");
    want.message_expiry_interval = None;
    have.subscription_identifiers.clear();
    assert_eq!(have, want, "properties byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_seen_on_every_node_and_cleared_everywhere() {
    let Some(nats) = Nats::start(3) else { return };
    let (a, b) = (node(&nats, 1), node(&nats, 2));
    let c_dir = tempfile::tempdir().expect("tempdir");
    let c_cfg = config(&nats, 3, "n3", Some(c_dir.path()));
    let mut c = start(&c_cfg);

    // --- published on B, seen on A and C ---------------------------------
    let payload: Vec<u8> = (0..=255u8).chain(b"end".iter().copied()).collect();
    let mut pb = v5(b.addr, "pb").await;
    let mut p = publish("r/x", Q1, Some(1), &payload, true);
    p.properties = full_properties();
    assert_eq!(publish_complete(&mut pb, p).await, 0);
    assert_eq!(pub_simple(&mut pb, "r/y", Q1, 2, b"why", true).await, 0);

    let got = await_retained(a.addr, "r/x", &["r/x"]).await;
    assert_full(&got[0], &payload, 3600);
    let got = await_retained(c.addr, "r/#", &["r/x", "r/y"]).await;
    assert_full(&got[0], &payload, 3600);
    assert_eq!(&got[1].payload[..], b"why");
    let got = await_retained(a.addr, "+/y", &["r/y"]).await;
    assert_eq!(&got[0].payload[..], b"why");

    // --- cleared on C, gone on A and B ---------------------------------
    let mut pc = v5(c.addr, "pc").await;
    assert_eq!(pub_simple(&mut pc, "r/x", Q1, 1, b"", true).await, 0);
    disconnect(pc).await;
    await_retained(a.addr, "r/#", &["r/y"]).await;
    await_retained(b.addr, "r/#", &["r/y"]).await;
    await_retained(c.addr, "r/#", &["r/y"]).await;

    // --- a node started afterwards: the initial replay -------------------
    // Two seconds on, the expiry left is counted from the publish.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut p = publish("r/late", Q1, Some(3), &payload, true);
    p.properties = full_properties();
    p.properties.message_expiry_interval = Some(60);
    assert_eq!(publish_complete(&mut pb, p).await, 0);
    await_retained(a.addr, "r/late", &["r/late"]).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let d = start(&config(&nats, 1, "n4", None));
    // No waiting: the node's start waited for the replay.
    let got = retained_on(d.addr, "r/#").await;
    assert_eq!(topics(&got), ["r/late", "r/y"], "{}\nA:\n{}", d.log(), a.log());
    let late = &got[0];
    let expiry = late.properties.message_expiry_interval.expect("expiry kept");
    assert!(expiry <= 58, "expiry counted from the publish, not from the replay: {expiry} s left of 60");
    assert!(expiry >= 40, "{expiry}");
    assert_eq!(&late.payload[..], &payload[..]);

    // --- a node restarted sees what changed while it was down ----------
    assert!(c.terminate().is_some_and(|s| s.success()), "{}", c.log());
    let mut pa = v5(a.addr, "pa").await;
    assert_eq!(pub_simple(&mut pa, "r/z", Q1, 1, b"zed", true).await, 0);
    assert_eq!(pub_simple(&mut pb, "r/y", Q1, 4, b"", true).await, 0);
    await_retained(b.addr, "r/#", &["r/late", "r/z"]).await;
    let c = start(&c_cfg);
    let got = retained_on(c.addr, "r/#").await;
    assert_eq!(topics(&got), ["r/late", "r/z"], "{}", c.log());
    assert_eq!(&got[1].payload[..], b"zed");

    // --- last write wins everywhere -------------------------------------
    // Two nodes write one topic at once: every node ends with one value,
    // the same on all.
    let mut pc = v5(c.addr, "pc").await;
    for k in 0..20u16 {
        let (va, vc) = (format!("a{k}"), format!("c{k}"));
        let fa = pub_simple(&mut pa, "r/race", Q1, 10 + k, va.as_bytes(), true);
        let fc = pub_simple(&mut pc, "r/race", Q1, 10 + k, vc.as_bytes(), true);
        let (ra, rc) = tokio::join!(fa, fc);
        assert_eq!((ra, rc), (0, 0));
    }
    let end = Instant::now() + MIRROR_TIMEOUT;
    loop {
        let mut values = Vec::new();
        for addr in [a.addr, b.addr, c.addr, d.addr] {
            let got = retained_on(addr, "r/race").await;
            values.push(got.first().map(|p| p.payload.clone()));
        }
        if values[0].is_some() && values.iter().all(|v| *v == values[0]) {
            break;
        }
        assert!(Instant::now() < end, "the nodes do not agree: {values:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((a, b, c, d, nats));
}

/// One MQTT 5 PUBLISH as bytes.
fn encoded(p: Publish) -> BytesMut {
    let mut buf = BytesMut::new();
    codec::encode(&Packet::Publish(p), ProtocolVersion::V5, &mut buf).expect("encode");
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_what_is_on_its_way_to_the_other_nodes() {
    const BURST: u16 = 1000;
    let Some(nats) = Nats::start(3) else { return };
    let (a, b) = (node(&nats, 1), node(&nats, 2));
    let mut sb = v5(b.addr, "sb").await;
    subscribe(&mut sb, 1, &[("burst/#", Q0)]).await;
    let mut pa = v5(a.addr, "pa").await;
    let end = Instant::now() + ROUTE_TIMEOUT;
    loop {
        pub_simple(&mut pa, "burst/probe", Q0, 0, b"probe", false).await;
        if let Ok(Some(Packet::Publish(_))) = sb.recv_timeout(Duration::from_millis(100)).await {
            drain_publishes(&mut sb, QUIET, QUIET * 4).await;
            break;
        }
        assert!(Instant::now() < end, "no route within {ROUTE_TIMEOUT:?}");
    }

    // A's NATS server freezes: what A forwards waits in its queue.
    nats.stop(1);
    let body = vec![b'x'; 16 * 1024];
    let mut all = BytesMut::new();
    for k in 1..=BURST {
        let mut p = publish(&format!("burst/{k}"), Q1, Some(k), &body, false);
        p.payload = Bytes::from(body.clone());
        all.put(encoded(p));
    }
    pa.send(&all).await;
    for _ in 1..=BURST {
        match pa.recv().await {
            Some(Packet::PubAck(r)) => assert_eq!(r.reason, 0),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    // Told to stop right after the PUBACKs; the server thaws once A is
    // flushing (or, without a flush, once A has exited).
    let mut a = a;
    std::process::Command::new("kill").arg("-TERM").arg(a.pid().to_string()).status().expect("kill");
    let end = Instant::now() + Duration::from_secs(20);
    while a.alive() && !a.log().contains("flushing outbound messages") {
        assert!(Instant::now() < end, "A neither flushes nor stops: {}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.cont(1);
    while a.alive() {
        assert!(Instant::now() < end, "A does not stop: {}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = drain_publishes(&mut sb, Duration::from_secs(2), Duration::from_secs(30)).await;
    let n = got.iter().filter(|p| p.topic.starts_with("burst/") && p.topic != "burst/probe").count();
    assert_eq!(n, usize::from(BURST), "every acknowledged message reached B; A's log:\n{}", a.log());
    assert!(a.log().contains("outbound messages flushed to NATS"), "{}", a.log());
    drop((b, nats));
}

/// Values in the bucket that no node wrote: whatever is not a retained
/// MQTT 5 PUBLISH on its key's topic is skipped (the node goes on), a
/// well-formed one is mirrored like a node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_in_the_bucket_are_checked() {
    use async_nats::jetstream;
    let Some(nats) = Nats::start(3) else { return };
    let mut a = node(&nats, 1);
    let client = async_nats::connect(nats.url(2)).await.expect("connect to NATS");
    let js = jetstream::new(client);
    let end = Instant::now() + MIRROR_TIMEOUT;
    let kv = loop {
        match js.get_key_value("portcullis_retained").await {
            Ok(kv) => break kv,
            Err(e) => assert!(Instant::now() < end, "the node made no bucket: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body = |topic: &str, retain: bool| Bytes::from(encoded(publish(topic, Q1, Some(1), b"v", retain)).to_vec());
    let bad: Vec<(&str, Bytes)> = vec![
        ("m.bad.garbage", Bytes::from_static(b"\x30\xff\xff\xff\xff\x0f")),
        ("m.bad.other", body("bad/elsewhere", true)),
        ("m.bad.live", body("bad/live", false)),
        ("m.bad.trailing", {
            let mut b = encoded(publish("bad/trailing", Q1, Some(1), b"v", true));
            b.put_u8(0);
            Bytes::from(b.to_vec())
        }),
        ("m.bad=zz", body("bad=zz", true)),
        ("s.=24SYS.x", body("$SYS/x", true)),
    ];
    for (key, value) in bad {
        kv.put(key, value).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    kv.put("m.good.x", body("good/x", true)).await.expect("put good");
    await_retained(a.addr, "good/#", &["good/x"]).await;
    assert_eq!(topics(&retained_on(a.addr, "bad/#").await), Vec::<&str>::new());
    assert!(a.log().contains("cluster: retained value refused"), "{}", a.log());
    assert!(a.alive(), "{}", a.log());
    // A node started now replays the same bucket: the same outcome.
    let b = node(&nats, 2);
    assert_eq!(topics(&retained_on(b.addr, "#").await), ["good/x"], "{}", b.log());
    drop((a, b, nats));
}
