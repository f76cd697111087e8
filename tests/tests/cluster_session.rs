//! The cluster's session registry (issue 19): three Portcullis nodes on
//! three clustered NATS servers, each with its own store.
//!
//! * A persistent session moves from node A to node B: session present,
//!   its subscriptions work on B, the QoS 1 messages queued for it on A
//!   arrive on B; a CONNECT on another node while it is connected closes
//!   the old connection with DISCONNECT 0x8E.
//! * Two CONNECTs with one client id on two nodes at once: one owner in
//!   the registry, at most one live connection (20 rounds).
//! * Another identity's CONNECT on another node is refused
//!   (`owner_mismatch = "refuse"`) and leaves the owner alone.
//! * With the registry unreachable (every NATS server stopped), a CONNECT
//!   gets "server unavailable", not a local session.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_session -- --test-threads=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Connect, Packet, ProtocolVersion, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;
const Q1: QoS = QoS::AtLeastOnce;
const QUIET: Duration = Duration::from_millis(500);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Password-file users (alice, bob, pub), shared by every node.
fn users() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("passwd");
    std::fs::write(&pw, "alice:alice-pw\nbob:bob-pw\npub:pub-pw\n").expect("passwd");
    let cfg = format!(
        "[auth]\nchain = [\"users\"]\n[auth.password_file.users]\npath = {pw:?}\nhash = {{ algo = \"plain\" }}\n"
    );
    (dir, cfg)
}

/// Node `i` (1-based) on NATS server `i`; `top` goes before `[cluster]`,
/// `cluster` inside it.
fn node(nats: &Nats, i: usize, top: &str, cluster: &str) -> Broker {
    let url = nats.url(i);
    let b = Broker::start(&format!(
        "[node]\nname = \"n{i}\"\n[limits]\nmax_packet_size = \"1MiB\"\n{top}\n\
         [cluster]\nenabled = true\nnats = [\"{url}\"]\nkv_replicas = {}\n{cluster}",
        nats.len()
    ));
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(10)), "node {i}: {}", b.log());
    assert!(b.wait_log("session registry open", Duration::from_secs(20)), "node {i}: {}", b.log());
    b
}

/// A v5 CONNECT of `user` (password `<user>-pw`), session expiry 1 h.
fn conn(client_id: &str, clean: bool, user: &str) -> Connect {
    let mut c = connect_packet(V5, client_id, clean);
    c.username = Some(user.to_string());
    c.password = Some(bytes::Bytes::from(format!("{user}-pw")));
    c.properties.session_expiry_interval = Some(3600);
    c
}

async fn login(addr: SocketAddr, client_id: &str, clean: bool, user: &str) -> (Raw, bool) {
    let (raw, ack) = open(addr, conn(client_id, clean, user)).await;
    assert_eq!(ack.code, 0, "{user} as {client_id} refused: {ack:?}");
    (raw, ack.session_present)
}

fn payloads(p: &[portcullis_core::codec::Publish]) -> Vec<String> {
    p.iter().map(|p| text(&p.payload)).collect()
}

/// The registry entry of `client_id` (JSON), read from NATS directly.
async fn entry(nats: &Nats, client_id: &str) -> Option<serde_json::Value> {
    let client = async_nats::connect(nats.url(1)).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("portcullis_sessions").await.expect("registry bucket");
    let e = kv.entry(client_id).await.expect("read")?;
    if e.operation != async_nats::jetstream::kv::Operation::Put {
        return None;
    }
    Some(serde_json::from_slice(&e.value).expect("entry is JSON"))
}

/// Publishes QoS 0 probes on `topic` from `publisher` until `subscriber`
/// gets one (NATS' interest reached the publisher's server), then drains.
async fn await_route(publisher: &mut Raw, subscriber: &mut Raw, topic: &str) {
    let end = Instant::now() + ROUTE_TIMEOUT;
    while Instant::now() < end {
        pub_simple(publisher, topic, QoS::AtMostOnce, 0, b"probe", false).await;
        if let Ok(Some(Packet::Publish(_))) = subscriber.recv_timeout(Duration::from_millis(100)).await {
            drain_publishes(subscriber, QUIET, QUIET * 4).await;
            return;
        }
    }
    panic!("no route for {topic} within {ROUTE_TIMEOUT:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_moves_between_nodes_with_its_queue() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let (a, b, c) = (node(&nats, 1, &auth, ""), node(&nats, 2, &auth, ""), node(&nats, 3, &auth, ""));

    // On A: two subscriptions, then away, with QoS 1 messages queued on A.
    let (mut m, present) = login(a.addr, "mover", false, "alice").await;
    assert!(!present);
    subscribe(&mut m, 1, &[("q/t", Q1), ("w/+", Q1)]).await;
    disconnect(m).await;
    let (mut pa, _) = login(a.addr, "pub-a", true, "pub").await;
    for i in 0..5u16 {
        assert_eq!(pub_simple(&mut pa, "q/t", Q1, i + 1, format!("m{i}").as_bytes(), false).await, 0);
    }

    // On B: the session, its queue, its subscriptions.
    let t0 = Instant::now();
    let (mut m, present) = login(b.addr, "mover", false, "alice").await;
    let moved = t0.elapsed();
    assert!(present, "session_present = 1 on node B");
    let got = drain_publishes(&mut m, QUIET, QUIET * 20).await;
    assert_eq!(payloads(&got), ["m0", "m1", "m2", "m3", "m4"], "the queued QoS 1 messages arrive on B");
    assert!(got.iter().all(|p| p.qos == Q1));
    let (mut pb, _) = login(b.addr, "pub-b", true, "pub").await;
    assert_eq!(pub_simple(&mut pb, "w/b", Q1, 1, b"on-b", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m, QUIET, QUIET * 20).await), ["on-b"], "w/+ works on B");
    // Published on C: crosses to B, once; A holds nothing any more.
    let (mut pc, _) = login(c.addr, "pub-c", true, "pub").await;
    await_route(&mut pc, &mut m, "w/probe").await;
    assert_eq!(pub_simple(&mut pc, "q/t", Q1, 1, b"from-c", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m, QUIET, QUIET * 20).await), ["from-c"]);
    assert_eq!(pub_simple(&mut pa, "q/t", Q1, 9, b"from-a", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m, QUIET, QUIET * 20).await), ["from-a"], "one copy, via B");
    let e = entry(&nats, "mover").await.expect("registry entry");
    assert_eq!(e["node"], "n2", "{e}");
    assert_eq!(e["owner"]["kind"], "user");
    assert_eq!(e["owner"]["name"], "alice");

    // While connected on B, a CONNECT on A: B's connection gets 0x8E.
    let t0 = Instant::now();
    let (mut m2, present) = login(a.addr, "mover", false, "alice").await;
    let live_move = t0.elapsed();
    assert!(present, "session_present = 1 back on A");
    let seen = m.expect_closed(Duration::from_secs(10)).await;
    assert!(
        seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x8E)),
        "B's connection closed with DISCONNECT 0x8E (session taken over): {seen:?}"
    );
    assert_eq!(pub_simple(&mut pa, "q/t", Q1, 10, b"back-on-a", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m2, QUIET, QUIET * 20).await), ["back-on-a"]);
    assert!(live(&mut m2).await);
    println!("takeover: detached session with 5 queued A→B {moved:?}; connected session B→A {live_move:?}");
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_on_two_nodes_leave_one_owner() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let (a, b) = (node(&nats, 1, &auth, ""), node(&nats, 2, &auth, ""));
    let mut times = Vec::new();
    for i in 0..20 {
        let id = format!("race{i}");
        let t0 = Instant::now();
        let ((mut ra, acka), (mut rb, ackb)) =
            tokio::join!(open(a.addr, conn(&id, false, "alice")), open(b.addr, conn(&id, false, "alice")));
        times.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let la = acka.code == 0 && live(&mut ra).await;
        let lb = ackb.code == 0 && live(&mut rb).await;
        assert!(!(la && lb), "round {i}: two live connections ({acka:?}, {ackb:?})");
        assert!(la || lb, "round {i}: no live connection ({acka:?}, {ackb:?})");
        let e = entry(&nats, &id).await.expect("registry entry");
        let owner = if la { "n1" } else { "n2" };
        assert_eq!(e["node"], owner, "round {i}: the registry names the node with the live connection: {e}");
    }
    times.sort();
    println!("20 simultaneous CONNECT pairs: slowest pair {:?}, median {:?}", times[19], times[10]);
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_identity_on_another_node_is_refused() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let top = format!("{auth}[session]\nowner_mismatch = \"refuse\"\n");
    let (a, b) = (node(&nats, 1, &top, ""), node(&nats, 2, &top, ""));
    let (mut owner, _) = login(a.addr, "owned", false, "alice").await;
    subscribe(&mut owner, 1, &[("o/t", Q1)]).await;
    let (_raw, ack) = open(b.addr, conn("owned", false, "bob")).await;
    assert_eq!(ack.code, 0x85, "bob refused as client identifier not valid: {ack:?}");
    assert!(live(&mut owner).await, "alice's connection on A undisturbed");
    let (mut p, _) = login(a.addr, "pub-a", true, "pub").await;
    assert_eq!(pub_simple(&mut p, "o/t", Q1, 1, b"still", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut owner, QUIET, QUIET * 20).await), ["still"]);
    let e = entry(&nats, "owned").await.expect("registry entry");
    assert_eq!((e["node"].as_str(), e["owner"]["name"].as_str()), (Some("n1"), Some("alice")), "{e}");
    // A client id within limits.max_client_id_len (1,024) whose registry
    // key would not fit (400 dots: 1,200 bytes encoded) is refused with a
    // reason, not cut.
    let (_raw, ack) = open(b.addr, conn(&".".repeat(400), true, "alice")).await;
    assert_eq!(ack.code, 0x85, "{ack:?}");
    assert!(b.wait_log("encodes past the registry's 1024-byte key", Duration::from_secs(5)), "{}", b.log());
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_registry_unreachable_connect_is_refused_as_unavailable() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let a = node(&nats, 1, &auth, "request_timeout = \"1s\"\n");
    let (first, _) = login(a.addr, "before", true, "alice").await;
    disconnect(first).await;
    for i in 1..=3 {
        nats.stop(i);
    }
    let (_r, ack) = open(a.addr, conn("during", false, "alice")).await;
    assert_eq!(ack.code, 0x88, "v5: server unavailable: {ack:?}");
    let mut c3 = connect_packet(ProtocolVersion::V311, "during3", false);
    c3.username = Some("alice".into());
    c3.password = Some(bytes::Bytes::from_static(b"alice-pw"));
    let (_r, ack) = open(a.addr, c3).await;
    assert_eq!(ack.code, 3, "3.1.1: server unavailable: {ack:?}");
    for i in 1..=3 {
        nats.cont(i);
    }
    // Back: the refused CONNECT left no session behind.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (raw, ack) = open(a.addr, conn("during", false, "alice")).await;
        if ack.code == 0 {
            assert!(!ack.session_present, "no local session was made while the registry was away");
            disconnect(raw).await;
            break;
        }
        assert!(Instant::now() < end, "CONNECT still refused after NATS came back: {ack:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(a.log().contains("session registry unavailable"), "{}", a.log());
    drop(nats);
}

/// Polls the registry entry of `client_id` until `ok` holds (bounded).
async fn entry_until(nats: &Nats, client_id: &str, ok: impl Fn(Option<&serde_json::Value>) -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if ok(entry(nats, client_id).await.as_ref()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn has_filter(e: Option<&serde_json::Value>, filter: &str) -> bool {
    e.and_then(|e| e["subs"].as_array()).is_some_and(|s| s.iter().any(|s| s["filter"] == filter))
}

/// Subscriptions reach the entry after the SUBACK (and leave it after an
/// UNSUBSCRIBE); a clean session's entry goes when its connection closes.
/// Prints what a CONNECT costs here (one KV read and one compare-and-set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_follow_subscriptions_and_clean_sessions_leave_none() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let a = node(&nats, 1, &auth, "");
    let mut times = Vec::new();
    for i in 0..100 {
        let mut c = conn(&format!("clean{i}"), true, "alice");
        c.properties.session_expiry_interval = None;
        let t0 = Instant::now();
        let (raw, ack) = open(a.addr, c).await;
        times.push(t0.elapsed());
        assert_eq!(ack.code, 0, "{ack:?}");
        disconnect(raw).await;
    }
    times.sort();
    println!(
        "CONNECT→CONNACK, clean session, 100 in a row: p50 {:?}, p90 {:?}, max {:?}",
        times[50], times[90], times[99]
    );
    for i in [0, 50, 99] {
        let id = format!("clean{i}");
        assert!(entry_until(&nats, &id, |e| e.is_none()).await, "the entry of {id} is deleted once it closed");
    }

    let (mut m, _) = login(a.addr, "keeper", false, "alice").await;
    subscribe(&mut m, 1, &[("k/a", Q1), ("k/+/b", QoS::ExactlyOnce)]).await;
    assert!(entry_until(&nats, "keeper", |e| has_filter(e, "k/a") && has_filter(e, "k/+/b")).await);
    let e = entry(&nats, "keeper").await.expect("entry");
    assert_eq!((e["node"].as_str(), e["expiry"].as_u64()), (Some("n1"), Some(3600)), "{e}");
    m.send_packet(&Packet::Unsubscribe(portcullis_core::codec::Unsubscribe {
        packet_id: 2,
        filters: vec!["k/a".into()],
        properties: Default::default(),
    }))
    .await;
    assert!(matches!(m.recv().await, Some(Packet::UnsubAck(_))));
    assert!(entry_until(&nats, "keeper", |e| !has_filter(e, "k/a") && has_filter(e, "k/+/b")).await);
    disconnect(m).await;
    tokio::time::sleep(QUIET).await;
    assert!(entry(&nats, "keeper").await.is_some(), "a persistent session's entry stays after its client left");
    drop(nats);
}

/// The owner node dies (SIGKILL): the session's subscriptions are restored
/// on the node the client comes back to, from the registry entry (what was
/// queued on the dead node is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owners_subscriptions_are_restored_from_the_registry() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let (mut a, b, c) = (node(&nats, 1, &auth, ""), node(&nats, 2, &auth, ""), node(&nats, 3, &auth, ""));
    let (mut m, _) = login(a.addr, "orphan", false, "alice").await;
    subscribe(&mut m, 1, &[("d/t", Q1)]).await;
    assert!(entry_until(&nats, "orphan", |e| has_filter(e, "d/t")).await, "subscription in the registry");
    a.signal_and_wait("KILL", Duration::from_secs(5));
    drop(m);
    let t0 = Instant::now();
    let (mut m, present) = login(b.addr, "orphan", false, "alice").await;
    let took = t0.elapsed();
    assert!(present, "session_present = 1: rebuilt from the registry");
    let (mut pc, _) = login(c.addr, "pub-c", true, "pub").await;
    await_route(&mut pc, &mut m, "d/t").await;
    assert_eq!(pub_simple(&mut pc, "d/t", Q1, 1, b"after", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m, QUIET, QUIET * 20).await), ["after"]);
    assert_eq!(entry(&nats, "orphan").await.expect("entry")["node"], "n2");
    println!("owner SIGKILLed: CONNECT on another node restored the session in {took:?}");
    drop(nats);
}

/// A session moved to node B is in B's store before the CONNACK: B killed
/// with SIGKILL right after, and started again on the same store, gives
/// the client its session and the unacknowledged messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_session_survives_a_sigkill_of_its_new_node() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let store = tempfile::tempdir().expect("tempdir");
    let b_top = format!("{auth}[persistence]\ndir = {:?}\n", store.path().join("data").display().to_string());
    let (a, mut b) = (node(&nats, 1, &auth, ""), node(&nats, 2, &b_top, ""));
    let (mut m, _) = login(a.addr, "durable", false, "alice").await;
    subscribe(&mut m, 1, &[("dq/t", Q1)]).await;
    disconnect(m).await;
    let (mut pa, _) = login(a.addr, "pub-a", true, "pub").await;
    for i in 0..3u16 {
        assert_eq!(pub_simple(&mut pa, "dq/t", Q1, i + 1, format!("d{i}").as_bytes(), false).await, 0);
    }
    let (mut m, present) = login(b.addr, "durable", false, "alice").await;
    assert!(present);
    // Received, never acknowledged.
    let mut got = Vec::new();
    while got.len() < 3 {
        match m.recv().await {
            Some(Packet::Publish(p)) => got.push(text(&p.payload)),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(got, ["d0", "d1", "d2"]);
    b.signal_and_wait("KILL", Duration::from_secs(5));
    drop(m);
    let b = node(&nats, 2, &b_top, "");
    let (mut m, present) = login(b.addr, "durable", false, "alice").await;
    assert!(present, "the moved session came back from B's store");
    let again = drain_publishes(&mut m, QUIET, QUIET * 20).await;
    assert_eq!(payloads(&again), ["d0", "d1", "d2"], "unacknowledged messages sent again");
    let (mut pb, _) = login(b.addr, "pub-b", true, "pub").await;
    assert_eq!(pub_simple(&mut pb, "dq/t", Q1, 1, b"later", false).await, 0);
    assert_eq!(payloads(&drain_publishes(&mut m, QUIET, QUIET * 20).await), ["later"]);
    drop(nats);
}

/// MQTT 5 wills on a takeover across nodes, as on one node: a will with a
/// delay is not published (the client came back, on another node, within
/// the delay); one without a delay is published when the old connection
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_on_a_cross_node_takeover_follow_the_spec() {
    let Some(nats) = Nats::start(3) else { return };
    let (_users, auth) = users();
    let (a, b) = (node(&nats, 1, &auth, ""), node(&nats, 2, &auth, ""));
    let (mut watcher, _) = login(a.addr, "watcher", true, "alice").await;
    subscribe(&mut watcher, 1, &[("will/#", Q1)]).await;
    for (id, delay) in [("delayed", 2u32), ("at-once", 0)] {
        let mut c = conn(id, false, "alice");
        let mut w = will(&format!("will/{id}"), id, Q1, false);
        w.properties.will_delay_interval = Some(delay);
        c.will = Some(w);
        let (mut old, ack) = open(a.addr, c).await;
        assert_eq!(ack.code, 0);
        let (_new, present) = login(b.addr, id, false, "alice").await;
        assert!(present);
        let seen = old.expect_closed(Duration::from_secs(10)).await;
        assert!(seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x8E)), "{seen:?}");
        // Past the 2 s delay.
        let got = drain_publishes(&mut watcher, Duration::from_secs(3), Duration::from_secs(10)).await;
        let want: &[&str] = if delay == 0 { &["at-once"] } else { &[] };
        assert_eq!(payloads(&got), want, "will delay {delay}");
    }
    drop(nats);
}
