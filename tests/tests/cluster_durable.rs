//! The cluster's durable mode (`[cluster] cross_node = "durable"`, issue
//! 19): QoS 1/2 messages cross between nodes through the JetStream stream
//! `portcullis_messages`, on three brokers and three clustered NATS servers.
//!
//! * Messages cross in order, and the stream holds them.
//! * A node SIGKILLed while messages for its persistent session are
//!   published on another node gets them all when it is back (in the
//!   default at-most-once mode they are lost: nothing subscribes while it
//!   is down).
//! * A publish the stream cannot store (two of three NATS servers frozen:
//!   no quorum) is refused: v5 PUBACK 0x97, 3.1.1 connection closed,
//!   never acknowledged.
//! * A NATS server SIGKILLed under load (the publishing node's own): with
//!   the publisher resending what was refused, every message arrives.
//! * A node in the other mode refuses to start beside a running one.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_durable -- --test-threads=2`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;
const Q1: QoS = QoS::AtLeastOnce;
const STREAM: &str = "portcullis_messages";
const QUOTA_EXCEEDED: u8 = 0x97;

/// Node `i` (1-based) in durable mode on the NATS servers `servers`
/// (1-based); `top` goes before `[cluster]`, `cluster` inside it.
fn node(nats: &Nats, i: usize, servers: &[usize], top: &str, cluster: &str) -> Broker {
    let urls: Vec<String> = servers.iter().map(|&s| format!("{:?}", nats.url(s))).collect();
    let b = Broker::start(&format!(
        "[node]\nname = \"n{i}\"\n[limits]\nmax_packet_size = \"1MiB\"\n{top}\n[cluster]\nenabled = true\nnats = [{}]\nkv_replicas = {}\n\
         cross_node = \"durable\"\n{cluster}",
        urls.join(", "),
        nats.len()
    ));
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(10)), "node {i}: {}", b.log());
    assert!(b.wait_log("session registry open", Duration::from_secs(20)), "node {i}: {}", b.log());
    assert!(b.wait_log("durable stream open", Duration::from_secs(20)), "node {i}: {}", b.log());
    b
}

fn store_config(dir: &std::path::Path) -> String {
    format!("[persistence]\ndir = {:?}\n", dir.join("data").display().to_string())
}

async fn login(addr: std::net::SocketAddr, client_id: &str, clean: bool) -> (Raw, bool) {
    let mut c = connect_packet(V5, client_id, clean);
    c.properties.session_expiry_interval = Some(3600);
    let (raw, ack) = open(addr, c).await;
    assert_eq!(ack.code, 0, "{client_id} refused: {ack:?}");
    (raw, ack.session_present)
}

/// Receives (and acknowledges) PUBLISHes until `n` arrived, or `within`.
async fn receive(raw: &mut Raw, n: usize, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < end {
        got.extend(
            drain_publishes(raw, Duration::from_millis(500), end - Instant::now())
                .await
                .iter()
                .map(|p| text(&p.payload)),
        );
        if got.len() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_cross_through_the_stream_in_order() {
    let Some(nats) = Nats::start(3) else { return };
    let (a, b) = (node(&nats, 1, &[1], "", ""), node(&nats, 2, &[2], "", ""));
    let (mut s, _) = login(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("d/#", Q1)]).await;
    // Shared groups keep their NATS queue groups, on the durable subjects
    // too: the one member cluster-wide gets every message.
    let (mut g, _) = login(b.addr, "member", true).await;
    subscribe(&mut g, 1, &[("$share/g/d/#", Q1)]).await;
    let (mut p, _) = login(a.addr, "pub", true).await;
    let end = Instant::now() + Duration::from_secs(10);
    while receive(&mut g, 1, Duration::from_millis(300)).await.is_empty() {
        // Until the queue group's interest reached A's server.
        assert!(Instant::now() < end, "no route for the shared group");
        assert_eq!(pub_simple(&mut p, "d/probe", Q1, 60001, b"probe", false).await, 0);
    }
    receive(&mut s, 1000, Duration::from_millis(500)).await;
    receive(&mut g, 1000, Duration::from_millis(500)).await;
    let n = 1000usize;
    let t = Instant::now();
    for i in 0..n {
        let id = (i % 60000 + 1) as u16;
        assert_eq!(pub_simple(&mut p, &format!("d/{}", i % 7), Q1, id, format!("m{i}").as_bytes(), false).await, 0);
    }
    let took = t.elapsed();
    let got = receive(&mut s, n, Duration::from_secs(30)).await;
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "every message once, in order");
    assert_eq!(receive(&mut g, n, Duration::from_secs(30)).await, want, "the shared group's one member");
    println!(
        "durable: {n} QoS 1 PUBLISHes acknowledged one at a time in {took:?} ({:.0} µs each)",
        took.as_micros() as f64 / n as f64
    );
    // The stream holds them (each acknowledged by every node's consumer
    // since: interest retention may have removed them; the sequence says
    // they went through it).
    let last = nats.stream_last_seq(1, STREAM).unwrap_or(0);
    assert!(last >= n as u64, "stream {STREAM} last sequence {last}, want >= {n}");
    // QoS 0 stays at most once, through core NATS: it still crosses.
    assert_eq!(pub_simple(&mut p, "d/q0", QoS::AtMostOnce, 0, b"zero", false).await, 0);
    assert_eq!(receive(&mut s, 1, Duration::from_secs(10)).await, ["zero"]);
    drop(nats);
}

/// Node B holds a persistent session (in its store); B is SIGKILLed, node A
/// publishes 300 QoS 1 messages for it, B starts again on its store: the
/// session gets all 300, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_gets_what_it_missed() {
    let Some(nats) = Nats::start(3) else { return };
    let store = tempfile::tempdir().expect("tempdir");
    let b_top = store_config(store.path());
    let (a, mut b) = (node(&nats, 1, &[1], "", ""), node(&nats, 2, &[2], &b_top, ""));
    let (mut s, _) = login(b.addr, "away", false).await;
    subscribe(&mut s, 1, &[("late/t", Q1)]).await;
    let (mut p, _) = login(a.addr, "pub", true).await;
    assert_eq!(pub_simple(&mut p, "late/t", Q1, 1, b"first", false).await, 0);
    assert_eq!(receive(&mut s, 1, Duration::from_secs(10)).await, ["first"]);
    disconnect(s).await;
    b.signal_and_wait("KILL", Duration::from_secs(5)).expect("node B killed");
    let n = 300usize;
    let t = Instant::now();
    for i in 0..n {
        assert_eq!(pub_simple(&mut p, "late/t", Q1, (i + 2) as u16, format!("m{i}").as_bytes(), false).await, 0);
    }
    println!("durable: {n} QoS 1 published on A while B was down, in {:?}", t.elapsed());
    let t = Instant::now();
    let b = node(&nats, 2, &[2], &b_top, "");
    let (mut s, present) = login(b.addr, "away", false).await;
    assert!(present, "B's store kept the session");
    let mut got = receive(&mut s, n, Duration::from_secs(30)).await;
    // "first" may come again: B can die between handing it to the client
    // and acknowledging it to the stream (at least once).
    if got.first().map(String::as_str) == Some("first") {
        got.remove(0);
        got.extend(receive(&mut s, n - got.len(), Duration::from_secs(10)).await);
    }
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "what B missed, in order, once");
    println!("durable: B restarted and the session had all {n} in {:?}", t.elapsed());
    drop(nats);
}

/// Two of the three NATS servers frozen: the stream has no quorum, so a
/// QoS 1 PUBLISH is refused (v5 0x97; 3.1.1: the connection closes
/// unacknowledged) within `request_timeout`; after the servers come back a
/// PUBLISH is acknowledged and crosses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_stream_cannot_store_is_refused() {
    let Some(nats) = Nats::start(3) else { return };
    let cluster = "request_timeout = \"1s\"\n";
    let (a, b) = (node(&nats, 1, &[1], "", cluster), node(&nats, 2, &[1], "", cluster));
    let (mut s, _) = login(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("nq/#", Q1)]).await;
    let (mut p5, _) = login(a.addr, "pub5", true).await;
    let (mut p3, _) = open_v3(a.addr, "pub3", true).await;
    assert_eq!(pub_simple(&mut p5, "nq/t", Q1, 1, b"before", false).await, 0);
    assert_eq!(receive(&mut s, 1, Duration::from_secs(10)).await, ["before"]);
    nats.stop(2);
    nats.stop(3);
    let t = Instant::now();
    let reason = pub_simple(&mut p5, "nq/t", Q1, 2, b"no quorum", false).await;
    let refused_in = t.elapsed();
    // Many at once: each is refused within about one timeout, not one
    // after the other.
    let t = Instant::now();
    for id in 100..120u16 {
        p5.send_packet(&Packet::Publish(publish("nq/t", Q1, Some(id), b"no quorum", false))).await;
    }
    let mut refused = 0;
    while refused < 20 {
        match p5.recv_timeout(Duration::from_secs(10)).await {
            Ok(Some(Packet::PubAck(a))) => {
                assert_eq!(a.reason, QUOTA_EXCEEDED, "{a:?}");
                refused += 1;
            }
            other => panic!("expected 20 PUBACKs 0x97, got {refused} then {other:?}"),
        }
    }
    let twenty_in = t.elapsed();
    assert!(twenty_in < Duration::from_secs(5), "20 refusals took {twenty_in:?}");
    p3.send_packet(&Packet::Publish(publish("nq/t", Q1, Some(1), b"no quorum 3", false))).await;
    let closed = p3.expect_closed(Duration::from_secs(10)).await;
    nats.cont(2);
    nats.cont(3);
    assert_eq!(reason, QUOTA_EXCEEDED, "v5 publisher told the stream did not store it");
    assert!(refused_in < Duration::from_secs(5), "refused after {refused_in:?}");
    assert!(
        !closed.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "3.1.1 publisher must not get a PUBACK: {closed:?}"
    );
    println!("durable: no quorum → PUBACK 0x97 after {refused_in:?}; 20 at once refused in {twenty_in:?}");
    // Back: acknowledged again once the stream has its quorum.
    let end = Instant::now() + Duration::from_secs(30);
    let mut id = 3u16;
    loop {
        let r = pub_simple(&mut p5, "nq/t", Q1, id, b"after", false).await;
        if r == 0 {
            break;
        }
        assert_eq!(r, QUOTA_EXCEEDED);
        assert!(Instant::now() < end, "still refused 30 s after the servers came back");
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A refused message may still have been stored (JetStream commits an
    // entry its leader proposed once the quorum is back), as any PUBLISH
    // that was not acknowledged may have arrived: at least once.
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while !got.iter().any(|m| m == "after") && Instant::now() < end {
        got.extend(receive(&mut s, 1, Duration::from_secs(2)).await);
    }
    assert_eq!(got.last().map(String::as_str), Some("after"), "the acknowledged message crossed: {got:?}");
    assert!(got.iter().all(|m| m.starts_with("no quorum") || m == "after"), "{got:?}");
    drop(nats);
}

/// The NATS server node A publishes through is SIGKILLed while A's client
/// publishes 3,000 QoS 1 messages to a subscriber on node B (on another
/// server); the publisher resends what was refused (0x97) or left
/// unanswered. Every message arrives at B; the longest gap is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_under_load_loses_nothing() {
    let Some(mut nats) = Nats::start(3) else { return };
    let (a, b) = (node(&nats, 1, &[1, 3], "", ""), node(&nats, 2, &[2, 3], "", ""));
    let (mut s, _) = login(b.addr, "sub", true).await;
    subscribe(&mut s, 1, &[("load/#", Q1)]).await;
    let n = 3000usize;
    let publisher = tokio::spawn(async move {
        let (mut p, _) = login(a.addr, "pub", true).await;
        let mut refused = 0usize;
        let mut id = 0u16;
        for i in 0..n {
            loop {
                id = id % 60000 + 1;
                // The answer can take request_timeout (5 s) and more while
                // the node reconnects: longer than the kit's read timeout.
                p.send_packet(&Packet::Publish(publish("load/t", Q1, Some(id), format!("m{i}").as_bytes(), false)))
                    .await;
                let r = match p.recv_timeout(Duration::from_secs(20)).await {
                    Ok(Some(Packet::PubAck(a))) if a.packet_id == id => a.reason,
                    other => panic!("message {i}: expected PUBACK {id} within 20 s, got {other:?}"),
                };
                if r == 0 {
                    break;
                }
                assert_eq!(r, QUOTA_EXCEEDED, "message {i}");
                refused += 1;
            }
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (a, refused)
    });
    let mut got = BTreeSet::new();
    let mut dups = 0usize;
    let mut longest = Duration::ZERO;
    let mut last = Instant::now();
    let mut killed = false;
    let end = Instant::now() + Duration::from_secs(120);
    while got.len() < n && Instant::now() < end {
        if !killed && got.len() >= n / 3 {
            nats.kill(1);
            killed = true;
        }
        match s.recv_timeout(Duration::from_millis(500)).await {
            Ok(Some(Packet::Publish(p))) => {
                ack_incoming(&mut s, &p).await;
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
                if !got.insert(text(&p.payload)) {
                    dups += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("subscriber's connection closed"),
            Err(()) => {}
        }
    }
    let (_a, refused) = publisher.await.expect("publisher");
    assert!(killed, "the server was killed");
    let missing: Vec<usize> = (0..n).filter(|i| !got.contains(&format!("m{i}"))).collect();
    println!(
        "durable, NATS SIGKILL under load: {} of {n} received, {} missing, {dups} duplicates, {refused} refused and resent, longest gap {longest:?}",
        got.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "lost {} messages: first {:?}", missing.len(), &missing[..missing.len().min(10)]);
    drop(b);
    drop(nats);
}

/// Every node must use the same `cross_node`: a node in the other mode
/// refuses to start while a node in this one runs (it would not read the
/// stream, or would read only the stream), naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_the_other_mode_refuses_to_start() {
    let Some(nats) = Nats::start(3) else { return };
    let a = node(&nats, 1, &[1], "", "");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("portcullis.toml");
    let config = format!(
        "[node]\nname = \"n9\"\n[limits]\nmax_packet_size = \"1MiB\"\n[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [cluster]\nenabled = true\nnats = [\"{}\"]\nkv_replicas = 3\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = {:?}\n[persistence]\ndir = {:?}\n",
        nats.url(2),
        dir.path().join("admin.sock").display().to_string(),
        dir.path().join("data").display().to_string(),
    );
    std::fs::write(&cfg, &config).expect("config");
    let out = portcullis_tests::run_bounded(&["--config", cfg.to_str().expect("utf-8")], Duration::from_secs(40))
        .expect("the node exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cross_node is") && stderr.contains("at_most_once") && stderr.contains("n1"), "{stderr}");
    assert!(a.wait_log("durable stream open", Duration::from_secs(1)), "the running node is left alone");
    // The node list shows each node's mode (admin API over its Unix socket).
    let nodes = admin_get(&a.data_dir().with_file_name("admin.sock"), "/api/v5/nodes");
    assert!(nodes.contains("\"cross_node\":\"durable\""), "{nodes}");
    println!("refused: {}", stderr.lines().last().unwrap_or_default());
    drop(nats);
}

/// GET `path` from the admin API's Unix socket (administrator, no key).
fn admin_get(socket: &std::path::Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("admin socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: node\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}
