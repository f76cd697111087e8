//! Three Portcullis nodes as one broker on three clustered NATS servers
//! (issue 19): each broker connects to its own NATS server (127.0.0.1-3),
//! with a distinct `[node] name` and its own store.
//!
//! * A subscriber on node A gets what is published on node B through an
//!   exact filter, `+` and `#`, payload and MQTT 5 properties byte for byte,
//!   at the QoS published (capped by the subscription's).
//! * Overlapping filters on one node (`o/+`, `o/b`, `o/#`): one copy.
//! * No echo: a message published on A to a subscriber on A arrives once.
//! * `$share/g/f` with a member on each node: every message to exactly one
//!   member across the cluster, including when the publisher's node has no
//!   member any more.
//! * `$SYS` stays per node.
//! * The subscribe-side ACL holds for messages from other nodes: a marked
//!   `#` on A never carries a topic A's ACL denies to it, published on B.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_pubsub -- --test-threads=1`. Without a
//! nats-server the tests fail (they skip only with
//! `PORTCULLIS_SKIP_SERVICES=1`, never under `CI=true`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, Publish, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
/// How long a subscriber listens for stragglers.
const QUIET: Duration = Duration::from_millis(500);
/// How long a route may take to be in place across NATS.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Node `i` (1-based) of a cluster on `nats`, with `extra` config.
fn node(nats: &Nats, i: usize, extra: &str) -> Broker {
    let url = nats.url(i);
    let b = Broker::start(&format!(
        "[node]\nname = \"n{i}\"\n[limits]\nmax_packet_size = \"1MiB\"\n[sys]\ninterval = \"1s\"\n\
         [cluster]\nenabled = true\nnats = [\"{url}\"]\nkv_replicas = {}\n{extra}",
        nats.len()
    ));
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(10)), "node {i}: {}", b.log());
    assert!(b.wait_log("session registry open", Duration::from_secs(20)), "node {i}: {}", b.log());
    b
}

async fn v5(addr: SocketAddr, id: &str) -> Raw {
    open_v5(addr, id, true, Properties::default()).await.0
}

/// Publishes probes on `topic` from `publisher` until `subscriber` gets
/// one (NATS' interest has reached the publisher's server), then drains
/// the probes still on their way. Bounded by [`ROUTE_TIMEOUT`].
async fn await_route(publisher: &mut Raw, subscriber: &mut Raw, topic: &str) {
    let end = Instant::now() + ROUTE_TIMEOUT;
    while Instant::now() < end {
        pub_simple(publisher, topic, Q0, 0, b"probe", false).await;
        if let Ok(Some(Packet::Publish(_))) = subscriber.recv_timeout(Duration::from_millis(100)).await {
            drain_publishes(subscriber, QUIET, QUIET * 4).await;
            return;
        }
    }
    panic!("no route for {topic} within {ROUTE_TIMEOUT:?}");
}

/// Every PUBLISH arriving within [`QUIET`] of the last (acknowledged).
async fn received(raw: &mut Raw) -> Vec<Publish> {
    drain_publishes(raw, QUIET, QUIET * 20).await
}

fn topics(p: &[Publish]) -> Vec<String> {
    let mut t: Vec<String> = p.iter().map(|p| p.topic.clone()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_once_with_their_properties() {
    let Some(nats) = Nats::start(3) else { return };
    let (a, b, c) = (node(&nats, 1, ""), node(&nats, 2, ""), node(&nats, 3, ""));

    // --- exact, + and #, from B to A ------------------------------------
    let mut sa = v5(a.addr, "sa").await;
    subscribe(&mut sa, 1, &[("t/a", Q1), ("p/+", Q1), ("h/#", Q1)]).await;
    let mut pb = v5(b.addr, "pb").await;
    await_route(&mut pb, &mut sa, "t/a").await;
    await_route(&mut pb, &mut sa, "p/route").await;
    await_route(&mut pb, &mut sa, "h/route").await;

    let payload: Vec<u8> = (0..=255u8).chain(b"end".iter().copied()).collect();
    let mut p = publish("t/a", Q1, Some(7), &payload, false);
    p.properties = full_properties();
    assert_eq!(publish_complete(&mut pb, p).await, 0);
    let got = received(&mut sa).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic, "t/a");
    assert_eq!(got[0].qos, Q1);
    assert_eq!(&got[0].payload[..], &payload[..], "payload byte for byte");
    let (mut want, mut have) = (full_properties(), got[0].properties.clone());
    let expiry = have.message_expiry_interval.take().expect("message expiry crosses");
    assert!((3590..=3600).contains(&expiry), "remaining expiry {expiry}");
    want.message_expiry_interval = None;
    assert_eq!(have, want, "MQTT 5 properties byte for byte");

    for t in ["p/x", "h", "h/a/b"] {
        pub_simple(&mut pb, t, Q1, 1, t.as_bytes(), false).await;
    }
    pub_simple(&mut pb, "p/x/y", Q1, 1, b"no", false).await;
    assert_eq!(topics(&received(&mut sa).await), ["h", "h/a/b", "p/x"]);

    // --- one copy with overlapping filters on one node --------------------
    let mut so = v5(a.addr, "so").await;
    subscribe(&mut so, 1, &[("o/+", Q1), ("o/b", Q1), ("o/#", Q1)]).await;
    await_route(&mut pb, &mut so, "o/b").await;
    for i in 0..20u16 {
        pub_simple(&mut pb, "o/b", Q1, i + 1, format!("m{i}").as_bytes(), false).await;
    }
    let got = received(&mut so).await;
    let payloads: Vec<String> = got.iter().map(|p| text(&p.payload)).collect();
    assert_eq!(payloads, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>(), "one copy each, in order");

    // --- no echo: published on A, subscribed on A -------------------------
    let mut pa = v5(a.addr, "pa").await;
    pub_simple(&mut pa, "t/a", Q1, 1, b"local", false).await;
    let got = received(&mut sa).await;
    assert_eq!(got.iter().map(|p| text(&p.payload)).collect::<Vec<_>>(), ["local"]);

    // --- cross-node latency (printed, not asserted) -----------------------
    let mut lat = Vec::new();
    for i in 0..200u16 {
        let t0 = Instant::now();
        pb.send_packet(&Packet::Publish(publish("t/a", Q0, None, &i.to_be_bytes(), false))).await;
        match sa.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::Publish(p))) => assert_eq!(&p.payload[..], &i.to_be_bytes()),
            other => panic!("latency probe {i}: {other:?}"),
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    println!(
        "cross-node publish→deliver (B→NATS→A, QoS 0, debug build): p50 {:?} p99 {:?} max {:?}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );

    // --- "no matching subscribers" is not answered in cluster mode ---------
    let mut p = publish("nobody/here", Q1, Some(9), b"x", false);
    p.properties = Properties::default();
    assert_eq!(publish_complete(&mut pb, p).await, 0, "has_interest: true while connected");

    // --- $SYS stays per node ----------------------------------------------
    let mut sys = v5(a.addr, "sys").await;
    subscribe(&mut sys, 1, &[("$SYS/brokers/#", Q0)]).await;
    let got = drain_publishes(&mut sys, Duration::from_millis(2500), Duration::from_secs(5)).await;
    assert!(got.iter().any(|p| p.topic.starts_with("$SYS/brokers/n1/")), "A's own $SYS");
    // `$SYS/brokers` itself is A's own node list (published by A).
    let foreign: Vec<&str> = got
        .iter()
        .map(|p| p.topic.as_str())
        .filter(|t| !t.starts_with("$SYS/brokers/n1/") && *t != "$SYS/brokers")
        .collect();
    assert!(foreign.is_empty(), "other nodes' $SYS reached A: {foreign:?}");

    // --- $share: a group whose only member is on the publisher's node -----
    // (core routes no local publish to local groups in cluster mode: the
    // message must come back through the queue group's own connection).
    let mut solo = v5(a.addr, "solo").await;
    subscribe(&mut solo, 1, &[("$share/solo/s/u", Q1)]).await;
    await_route(&mut pa, &mut solo, "s/u").await;
    for k in 0..10u16 {
        pub_simple(&mut pa, "s/u", Q1, k + 1, format!("u{k}").as_bytes(), false).await;
    }
    let got: Vec<String> = received(&mut solo).await.iter().map(|p| text(&p.payload)).collect();
    assert_eq!(got, (0..10).map(|k| format!("u{k}")).collect::<Vec<_>>());
    disconnect(solo).await;

    // --- $share: one member per message across the cluster ----------------
    let addrs = [a.addr, b.addr, c.addr];
    let mut members = Vec::new();
    let mut pubs = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut m = v5(*addr, &format!("member{i}")).await;
        subscribe(&mut m, 1, &[("$share/g/s/t", Q1)]).await;
        members.push(m);
        pubs.push(v5(*addr, &format!("spub{i}")).await);
    }
    // NATS prefers a queue member on the publisher's own server: each
    // node's member is reachable once a probe from its node arrives.
    for i in 0..3 {
        let (p, m) = (&mut pubs[i], &mut members[i]);
        await_route(p, m, "s/t").await;
    }
    for m in &mut members {
        received(m).await;
    }
    let mut sent = Vec::new();
    for k in 0..300u16 {
        let payload = format!("s{k}");
        pub_simple(&mut pubs[usize::from(k % 3)], "s/t", Q1, k + 1, payload.as_bytes(), false).await;
        sent.push(payload);
    }
    let counts = count_shared(&mut members).await;
    assert_eq!(counts.len(), 300, "every message delivered");
    assert!(counts.values().all(|&(n, _)| n == 1), "exactly one member each: {counts:?}");
    let per_member = (0..3).map(|i| counts.values().filter(|&&(_, m)| m == i).count()).collect::<Vec<_>>();
    println!("shared, publishers on every node: per member {per_member:?}");

    // B's member leaves: B's messages go to A's or C's member, once.
    let m_b = members.remove(1);
    disconnect(m_b).await;
    let end = Instant::now() + ROUTE_TIMEOUT;
    'wait: loop {
        assert!(Instant::now() < end, "the group did not move off node B");
        pub_simple(&mut pubs[1], "s/t", Q0, 0, b"probe", false).await;
        for m in &mut members {
            if let Ok(Some(Packet::Publish(_))) = m.recv_timeout(Duration::from_millis(100)).await {
                break 'wait;
            }
        }
    }
    for m in &mut members {
        received(m).await;
    }
    for k in 0..100u16 {
        pub_simple(&mut pubs[1], "s/t", Q1, k + 1, format!("s{k}").as_bytes(), false).await;
    }
    let counts = count_shared(&mut members).await;
    assert_eq!(counts.len(), 100, "every message from B delivered on A or C");
    assert!(counts.values().all(|&(n, _)| n == 1), "exactly one member each: {counts:?}");

    // Metrics on B count what it forwarded; A counts what it received.
    let fwd = sys_fresh(b.addr, "cluster/forwarded", Duration::from_secs(5)).await;
    assert!(fwd.parse::<u64>().unwrap_or(0) >= 400, "B forwarded {fwd}");
    let dup = sys_fresh(a.addr, "cluster/duplicates", Duration::from_secs(5)).await;
    assert!(dup.parse::<u64>().unwrap_or(0) >= 40, "A removed {dup} duplicates (20 messages × 2 extra copies)");
    drop(nats);
}

/// Payload → (copies, index of the last member that got it).
async fn count_shared(members: &mut [Raw]) -> HashMap<String, (usize, usize)> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, m) in members.iter_mut().enumerate() {
        for p in received(m).await {
            let e = counts.entry(text(&p.payload)).or_insert((0, i));
            e.0 += 1;
            e.1 = i;
        }
    }
    counts.retain(|k, _| k != "probe");
    counts
}

/// `deny secret/#` then `allow #` on node A; node B allows everything.
const DENY_SECRET: &str = r##"
[[rule]]
permission = "deny"
action = "all"
topics = ["secret/#"]

[[rule]]
permission = "allow"
action = "all"
topics = ["#"]
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscribers_acl_holds_for_messages_from_other_nodes() {
    let Some(nats) = Nats::start(3) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, DENY_SECRET).expect("write acl");
    let a =
        node(&nats, 1, &format!("[acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n", acl.to_str().unwrap()));
    let b = node(&nats, 2, "");
    let mut sa = v5(a.addr, "sa").await;
    let ack = subscribe_with(&mut sa, 1, &[("#", opts(Q1)), ("secret/x", opts(Q1))], Properties::default()).await;
    assert_eq!(ack.return_codes, [1, 0x87], "# granted (marked), secret/x denied");
    let mut sb = v5(b.addr, "sb").await;
    subscribe(&mut sb, 1, &[("#", Q1)]).await;
    let mut pb = v5(b.addr, "pb").await;
    await_route(&mut pb, &mut sa, "public/route").await;
    received(&mut sb).await;
    for (i, t) in ["secret/x", "public/x", "secret/deep/y", "public/deep/y"].iter().enumerate() {
        assert_eq!(pub_simple(&mut pb, t, Q1, i as u16 + 1, b"m", false).await, 0);
    }
    assert_eq!(topics(&received(&mut sa).await), ["public/deep/y", "public/x"], "A's ACL on B's messages");
    // B's own subscriber, whom no rule denies, gets all four.
    assert_eq!(received(&mut sb).await.len(), 4);
    drop(nats);
}

/// A NATS server that stops reading (SIGSTOP) must not make its node hold
/// what its clients publish: the outbound queue is bounded (count and
/// bytes), the excess is counted dropped, local delivery goes on, and the
/// node's memory stays within the bound (64 MiB queue + 128 publishes in
/// the NATS client), far below the 256 MiB published meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_nats_server_costs_bounded_memory_and_counted_drops() {
    let Some(nats) = Nats::start(1) else { return };
    // One NATS server: `node` sets kv_replicas = 1 (one copy of each bucket).
    let a = node(&nats, 1, "");
    let mut local = v5(a.addr, "local").await;
    subscribe(&mut local, 1, &[("big/t", Q0)]).await;
    let mut p = v5(a.addr, "p").await;
    let before = portcullis_tests::rss_kib(a.pid()).expect("rss");
    nats.stop(1);
    let payload = vec![0x5Au8; 64 * 1024];
    let (n, mut got) = (4096usize, 0usize);
    for i in 0..n {
        p.send_packet(&Packet::Publish(publish("big/t", Q0, None, &payload, false))).await;
        // Read what the local subscriber got meanwhile, so its own queue
        // does not hold the messages.
        while let Ok(Some(Packet::Publish(_))) = local.recv_timeout(Duration::from_millis(1)).await {
            got += 1;
        }
        if i % 512 == 0 {
            sync(&mut p).await;
        }
    }
    sync(&mut p).await;
    got += drain_publishes(&mut local, QUIET, Duration::from_secs(30)).await.len();
    let after = portcullis_tests::rss_kib(a.pid()).expect("rss");
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("NATS stalled: {n} × 64 KiB published, {got} delivered locally, RSS grew {grown_mib} MiB");
    assert_eq!(got, n, "local delivery goes on while NATS is stalled");
    assert!(grown_mib < 160, "the node held {grown_mib} MiB for a stalled NATS server (bound ~72 MiB + slack)");
    // Resumed before reading $SYS: a new CONNECT needs the session registry
    // (a stalled NATS refuses it as server unavailable).
    nats.cont(1);
    let end = Instant::now() + Duration::from_secs(30);
    while open(a.addr, connect_packet(ProtocolVersion::V5, "after-stall", true)).await.1.code != 0 {
        assert!(Instant::now() < end, "CONNECTs still refused after NATS resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = sys_fresh(a.addr, "cluster/dropped/queue_full", Duration::from_secs(15)).await;
    assert!(dropped.parse::<u64>().unwrap_or(0) > 0, "queue_full drops counted: {dropped}");
    drop(nats);
}
