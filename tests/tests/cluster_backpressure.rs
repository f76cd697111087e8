//! Back-pressure from the cluster's outbound queue to publishing clients
//! (issue 19): a publisher on node A sends QoS 1 messages as fast as it can
//! (a window of [`WINDOW`] in flight) to a subscriber on node B. Without
//! back-pressure A's outbound queue to NATS overflows and drops messages it
//! has acknowledged (`cluster_dropped{reason="queue_full"}`); with it, A's
//! connection stops reading while the queue is above its high-water mark
//! (counted in `backpressure_waits`) and nothing is dropped there.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_backpressure -- --test-threads=1`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_core::codec::{self, Packet, Properties, ProtocolVersion, PubResp, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
/// Messages the publisher sends.
const MESSAGES: u64 = 100_000;
/// QoS 1 messages in flight from the publisher at most.
const WINDOW: usize = 100;
/// The whole exchange, at most.
const BOUND: Duration = Duration::from_secs(240);
/// How long the subscriber waits for stragglers once the publisher is done.
const IDLE: Duration = Duration::from_secs(5);

/// Node `i` (1-based) of a cluster on `nats`.
fn node(nats: &Nats, i: usize) -> Broker {
    let url = nats.url(i);
    let b = Broker::start(&format!(
        "[node]\nname = \"n{i}\"\n[limits]\nmax_packet_size = \"1MiB\"\n[sys]\ninterval = \"1s\"\n\
         [cluster]\nenabled = true\nnats = [\"{url}\"]\nkv_replicas = {}\n",
        nats.len()
    ));
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(10)), "node {i}: {}", b.log());
    assert!(b.wait_log("session registry open", Duration::from_secs(20)), "node {i}: {}", b.log());
    b
}

async fn v5(addr: std::net::SocketAddr, id: &str) -> Raw {
    open_v5(addr, id, true, Properties::default()).await.0
}

/// Sends [`MESSAGES`] QoS 1 PUBLISHes on `bp/t` (payload: the sequence as 8
/// bytes), at most [`WINDOW`] unacknowledged; returns how many were
/// acknowledged.
async fn publish_all(raw: &mut Raw) -> u64 {
    let end = Instant::now() + BOUND;
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut out = BytesMut::new();
    let mut buf = BytesMut::new();
    while acked < MESSAGES {
        assert!(Instant::now() < end, "publisher: {acked} of {MESSAGES} acknowledged within {BOUND:?}");
        while sent < MESSAGES && (sent - acked) < WINDOW as u64 {
            let id = (sent % 60_000) as u16 + 1;
            let p = publish("bp/t", Q1, Some(id), &sent.to_be_bytes(), false);
            codec::encode(&Packet::Publish(p), ProtocolVersion::V5, &mut out).expect("encode");
            sent += 1;
        }
        if !out.is_empty() {
            raw.stream.write_all(&out).await.expect("publisher write");
            out.clear();
        }
        match tokio::time::timeout(Duration::from_secs(10), raw.stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!("publisher: no acknowledgement ({other:?}) after {acked} of {sent}"),
        }
        while let Ok(Some(p)) = codec::decode(&mut buf, Some(ProtocolVersion::V5), u32::MAX >> 4) {
            if let Packet::PubAck(_) = p {
                acked += 1;
            }
        }
    }
    acked
}

/// Reads PUBLISHes (acknowledging them) until every one of [`MESSAGES`]
/// arrived, or [`IDLE`] passes without one once `done` is set (or
/// [`BOUND`]): the distinct sequences received.
async fn receive_all(raw: &mut Raw, done: &tokio::sync::watch::Receiver<bool>) -> u64 {
    let end = Instant::now() + BOUND;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut buf = BytesMut::new();
    let mut acks = BytesMut::new();
    let mut last = Instant::now();
    while (seen.len() as u64) < MESSAGES && Instant::now() < end {
        if *done.borrow() && last.elapsed() > IDLE {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), raw.stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("subscriber connection closed"),
            Ok(Ok(_)) => last = Instant::now(),
            Err(_) => continue,
        }
        while let Ok(Some(p)) = codec::decode(&mut buf, Some(ProtocolVersion::V5), u32::MAX >> 4) {
            if let Packet::Publish(p) = p {
                if let Ok(b) = <[u8; 8]>::try_from(&p.payload[..]) {
                    seen.insert(u64::from_be_bytes(b));
                }
                if let Some(id) = p.packet_id {
                    let ack = Packet::PubAck(PubResp::ok(id));
                    codec::encode(&ack, ProtocolVersion::V5, &mut acks).expect("encode");
                }
            }
        }
        if !acks.is_empty() {
            raw.stream.write_all(&acks).await.expect("subscriber write");
            acks.clear();
        }
    }
    seen.len() as u64
}

/// A node's non-zero drop counters (`$SYS/.../metrics/messages/dropped/+`
/// and `$SYS/.../cluster/dropped/+`), read for 2.5 s (the `$SYS` interval
/// is 1 s): "reason=count" pairs.
async fn drops(addr: std::net::SocketAddr, id: &str) -> Vec<String> {
    let mut raw = v5(addr, &format!("drops-{id}")).await;
    let filters = [("$SYS/brokers/+/metrics/messages/dropped/+", Q0), ("$SYS/brokers/+/cluster/dropped/+", Q0)];
    subscribe(&mut raw, 1, &filters).await;
    let mut seen = std::collections::BTreeMap::new();
    for p in collect(&mut raw, Duration::from_millis(2500)).await {
        if let Packet::Publish(p) = p {
            let what = p.topic.splitn(4, '/').nth(3).unwrap_or_default().to_string();
            seen.insert(what, text(&p.payload));
        }
    }
    seen.into_iter().filter(|(_, v)| v != "0").map(|(k, v)| format!("{k}={v}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_publisher_is_slowed_to_what_the_cluster_carries() {
    let Some(nats) = Nats::start(3) else { return };
    let (a, b) = (node(&nats, 1), node(&nats, 2));

    let mut sub = v5(b.addr, "sub-b").await;
    subscribe(&mut sub, 1, &[("bp/#", Q1)]).await;
    let mut publ = v5(a.addr, "pub-a").await;
    // Until NATS' interest for bp/# has reached A's server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no route from A to B");
        pub_simple(&mut publ, "bp/probe", Q0, 0, b"probe", false).await;
        if let Ok(Some(Packet::Publish(_))) = sub.recv_timeout(Duration::from_millis(100)).await {
            break;
        }
    }
    drain_publishes(&mut sub, Duration::from_millis(300), Duration::from_secs(5)).await;

    let (tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (acked, received) = tokio::join!(
        async {
            let n = publish_all(&mut publ).await;
            let _ = tx.send(true);
            n
        },
        receive_all(&mut sub, &rx)
    );
    let took = started.elapsed();

    let queue_full = sys_fresh(a.addr, "cluster/dropped/queue_full", Duration::from_secs(5)).await;
    let waits = sys_fresh(a.addr, "metrics/messages/backpressure_waits", Duration::from_secs(5)).await;
    let slow = sys_fresh(b.addr, "cluster/dropped/slow_consumer", Duration::from_secs(5)).await;
    println!("cluster-backpressure: A's drop counters: {:?}", drops(a.addr, "a").await);
    println!("cluster-backpressure: B's drop counters: {:?}", drops(b.addr, "b").await);
    println!(
        "cluster-backpressure: {acked} acknowledged on A, {received} received on B in {} ms \
         ({:.0} msg/s); A: cluster_dropped queue_full={queue_full}, backpressure_waits={waits}; \
         B: cluster_dropped slow_consumer={slow}",
        took.as_millis(),
        received as f64 / took.as_secs_f64()
    );
    assert_eq!(acked, MESSAGES);
    assert_eq!(queue_full, "0", "A's outbound queue dropped acknowledged messages");
    assert!(waits.parse::<u64>().unwrap_or(0) > 0, "A's publisher never waited for the cluster");
    // Back-pressure ends at NATS: core NATS has no flow control to B, whose
    // subscription buffer (SUBSCRIPTION_CAPACITY) may still overflow on a
    // loaded machine. That loss must be counted there, never silent.
    if received < acked {
        println!("cluster-backpressure: {} lost on B's inbound side (slow_consumer={slow})", acked - received);
        assert!(slow.parse::<u64>().unwrap_or(0) > 0, "{} messages lost without a count", acked - received);
    }
    drop((a, b));
    drop(nats);
}
