//! Durability through the real binary (`[persistence] mode = "strict"`):
//! `kill -9` at random points under QoS 1 load, restart on the same data
//! directory, and everything that was acknowledged is delivered; sessions,
//! subscriptions, retained messages and in-flight packet ids come back;
//! session expiry counts the downtime; a damaged store stops the start
//! with an error that names the file.
//!
//! `PORTCULLIS_DURABILITY_ITERATIONS` sets the number of crashes of the
//! loop (default 20).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, PubResp, QoS};
use portcullis_tests::kit::{drain_publishes, open_v5, publish, subscribe};
use portcullis_tests::{Broker, Raw};

fn strict(dir: &Path) -> String {
    format!("[persistence]\nmode = \"strict\"\ndir = \"{}\"\n", dir.display())
}

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(3600), ..Default::default() }
}

/// A small xorshift: random kill points without a dependency.
fn rng_next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// PUBACK; a write into a killed broker fails quietly (the loop ends at
/// the next read).
async fn puback(raw: &mut Raw, packet_id: u16) {
    let p = Packet::PubAck(PubResp { packet_id, reason: 0, properties: Properties::default() });
    let mut b = bytes::BytesMut::new();
    portcullis_core::codec::encode(&p, raw.version, &mut b).expect("encode");
    let _ = tokio::io::AsyncWriteExt::write_all(&mut raw.stream, &b).await;
}

/// Reads and acknowledges PUBLISHes until the connection closes (or 30 s).
async fn subscriber_loop(mut raw: Raw, received: Arc<Mutex<HashSet<u64>>>) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        match raw.recv_timeout(Duration::from_millis(200)).await {
            Ok(None) => return,
            Err(()) => {}
            Ok(Some(Packet::Publish(p))) => {
                if let Some(n) = std::str::from_utf8(&p.payload).ok().and_then(|s| s.parse().ok()) {
                    received.lock().expect("lock").insert(n);
                }
                if let Some(id) = p.packet_id {
                    puback(&mut raw, id).await;
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Publishes QoS 1 with up to 20 in flight until the connection closes
/// (or 30 s); records what was PUBACKed.
async fn publisher_loop(mut raw: Raw, next: Arc<AtomicU64>, acked: Arc<Mutex<HashSet<u64>>>) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut pid: u16 = 0;
    while Instant::now() < end {
        while inflight.len() < 20 {
            pid = pid % 60_000 + 1;
            let n = next.fetch_add(1, Ordering::Relaxed);
            inflight.insert(pid, n);
            let p = publish("load/x", QoS::AtLeastOnce, Some(pid), n.to_string().as_bytes(), false);
            // A write into a killed broker may fail: then it is over.
            let mut b = bytes::BytesMut::new();
            portcullis_core::codec::encode(&Packet::Publish(p), raw.version, &mut b).expect("encode");
            if tokio::io::AsyncWriteExt::write_all(&mut raw.stream, &b).await.is_err() {
                return;
            }
        }
        match raw.recv_timeout(Duration::from_millis(500)).await {
            Ok(None) => return,
            Err(()) => {}
            Ok(Some(Packet::PubAck(a))) => {
                if a.reason < 0x80 {
                    if let Some(n) = inflight.remove(&a.packet_id) {
                        acked.lock().expect("lock").insert(n);
                    }
                } else {
                    inflight.remove(&a.packet_id);
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_at_random_points() {
    let iterations: usize =
        std::env::var("PORTCULLIS_DURABILITY_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = strict(&data);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let received = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(AtomicU64::new(1));
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut restored_sessions = 0;

    for i in 0..iterations {
        let broker = Broker::start(&cfg);
        let (mut sub, ack) = open_v5(broker.addr, "durable-sub", false, persistent()).await;
        if i == 0 {
            assert!(!ack.session_present);
            subscribe(&mut sub, 1, &[("load/#", QoS::AtLeastOnce)]).await;
            let (mut p, _) = open_v5(broker.addr, "retainer", true, Properties::default()).await;
            let code = portcullis_tests::kit::pub_simple(&mut p, "keep/r", QoS::AtLeastOnce, 1, b"kept", true).await;
            assert!(code < 0x80);
        } else {
            assert!(ack.session_present, "iteration {i}: the session survived the kill -9");
            restored_sessions += 1;
        }
        // Every other round the subscriber leaves at once: the load queues
        // offline, and the next round resumes a session with a queue.
        let sub_task = if i % 2 == 1 {
            portcullis_tests::kit::disconnect(sub).await;
            tokio::spawn(async {})
        } else {
            tokio::spawn(subscriber_loop(sub, Arc::clone(&received)))
        };
        let (publisher, _) = open_v5(broker.addr, "loader", true, Properties::default()).await;
        let pub_task = tokio::spawn(publisher_loop(publisher, Arc::clone(&next), Arc::clone(&acked)));
        let wait = 150 + rng_next(&mut seed) % 600;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        drop(broker); // SIGKILL
        let _ = tokio::time::timeout(Duration::from_secs(10), sub_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), pub_task).await;
    }

    // Last start: everything acknowledged arrives.
    let broker = Broker::start(&cfg);
    let (mut sub, ack) = open_v5(broker.addr, "durable-sub", false, persistent()).await;
    assert!(ack.session_present, "the session survived the last kill -9");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let got = drain_publishes(&mut sub, Duration::from_millis(1500), Duration::from_secs(10)).await;
        if got.is_empty() || Instant::now() > end {
            break;
        }
        for p in got {
            if let Some(n) = std::str::from_utf8(&p.payload).ok().and_then(|s| s.parse().ok()) {
                received.lock().unwrap().insert(n);
            }
            if let Some(id) = p.packet_id {
                puback(&mut sub, id).await;
            }
        }
    }
    let acked = acked.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    let mut lost: Vec<u64> = acked.difference(&received).copied().collect();
    lost.sort_unstable();
    eprintln!(
        "durability: {iterations} kill -9, {restored_sessions} sessions resumed, {} published, {} PUBACKed, {} delivered, {} PUBACKed and lost",
        next.load(Ordering::Relaxed) - 1,
        acked.len(),
        received.len(),
        lost.len()
    );
    assert!(acked.len() > iterations, "the load ran ({} acknowledged)", acked.len());
    assert!(lost.is_empty(), "{} acknowledged messages lost, first: {:?}", lost.len(), &lost[..lost.len().min(20)]);

    // The retained message is back.
    let (mut other, _) = open_v5(broker.addr, "reader", true, Properties::default()).await;
    subscribe(&mut other, 1, &[("keep/#", QoS::AtLeastOnce)]).await;
    let got = drain_publishes(&mut other, Duration::from_millis(500), Duration::from_secs(5)).await;
    assert!(got.iter().any(|p| p.retain && &p.payload[..] == b"kept"), "retained message back: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_delivery_comes_back_with_its_packet_id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = strict(&data);
    let broker = Broker::start(&cfg);
    let (mut sub, _) = open_v5(broker.addr, "holder", false, persistent()).await;
    subscribe(&mut sub, 1, &[("held/#", QoS::AtLeastOnce)]).await;
    let (mut p, _) = open_v5(broker.addr, "sender", true, Properties::default()).await;
    assert_eq!(portcullis_tests::kit::pub_simple(&mut p, "held/1", QoS::AtLeastOnce, 1, b"once", false).await, 0);
    let first = portcullis_tests::kit::next_publish(&mut sub).await;
    // Not acknowledged; give the in-flight record time to reach the disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(broker); // SIGKILL

    let broker = Broker::start(&cfg);
    let (mut sub, ack) = open_v5(broker.addr, "holder", false, persistent()).await;
    assert!(ack.session_present);
    let again = portcullis_tests::kit::next_publish(&mut sub).await;
    assert_eq!(&again.payload[..], b"once");
    assert!(again.dup, "sent again with DUP");
    assert_eq!(again.packet_id, first.packet_id, "same packet id after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_counts_the_downtime() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = strict(&data);
    let broker = Broker::start(&cfg);
    let props = Properties { session_expiry_interval: Some(2), ..Default::default() };
    let (mut sub, _) = open_v5(broker.addr, "short", false, props.clone()).await;
    subscribe(&mut sub, 1, &[("s/#", QoS::AtLeastOnce)]).await;
    // A second session with a long expiry, the control.
    let (mut long, _) = open_v5(broker.addr, "long", false, persistent()).await;
    subscribe(&mut long, 1, &[("l/#", QoS::AtLeastOnce)]).await;
    portcullis_tests::kit::disconnect(sub).await;
    portcullis_tests::kit::disconnect(long).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(broker); // SIGKILL, 0.3 s into the 2 s expiry
    tokio::time::sleep(Duration::from_secs(2)).await;
    let broker = Broker::start(&cfg);
    let (_s, ack) = open_v5(broker.addr, "short", false, props).await;
    assert!(!ack.session_present, "expired while the broker was down; log:\n{}", broker.log());
    let (_l, ack) = open_v5(broker.addr, "long", false, persistent()).await;
    assert!(ack.session_present, "the long one is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_stops_the_start_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = strict(&data);
    {
        let broker = Broker::start(&cfg);
        let (mut sub, _) = open_v5(broker.addr, "victim", false, persistent()).await;
        subscribe(&mut sub, 1, &[("v/#", QoS::AtLeastOnce)]).await;
        let (mut p, _) = open_v5(broker.addr, "sender", true, Properties::default()).await;
        for i in 0..50u16 {
            portcullis_tests::kit::pub_simple(&mut p, "v/1", QoS::AtLeastOnce, i + 1, &[b'z'; 300], i == 0).await;
        }
    }
    let file = data.join("store.redb");
    let good = std::fs::read(&file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o077, 0);
    }
    let config = tmp.path().join("portcullis.toml");
    std::fs::write(&config, format!("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{cfg}")).unwrap();
    let mut flipped = good.clone();
    for i in (4096..flipped.len()).step_by(4096) {
        for b in &mut flipped[i + 64..(i + 128).min(good.len())] {
            *b ^= 0x5a;
        }
    }
    for (what, bytes) in [("flipped bytes", flipped), ("truncated", good[..good.len() / 3].to_vec())] {
        std::fs::write(&file, &bytes).unwrap();
        let out = portcullis_tests::run_bounded(&["--config".as_ref(), config.as_os_str()], Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{what}: the broker started on a damaged store"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: refused");
        assert!(stderr.contains("store.redb"), "{what}: the error names the file: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: no panic: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_message_is_not_delivered_twice_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = strict(&data);
    let broker = Broker::start(&cfg);
    let (mut sub, _) = open_v5(broker.addr, "q2-sub", false, persistent()).await;
    subscribe(&mut sub, 1, &[("q2/#", QoS::ExactlyOnce)]).await;
    portcullis_tests::kit::disconnect(sub).await;
    let (mut publisher, _) = open_v5(broker.addr, "q2-pub", false, persistent()).await;
    publisher.send_packet(&Packet::Publish(publish("q2/t", QoS::ExactlyOnce, Some(7), b"exactly", false))).await;
    match publisher.recv().await {
        Some(Packet::PubRec(r)) => assert_eq!((r.packet_id, r.reason), (7, 0)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    drop(broker); // SIGKILL before the PUBREL

    let broker = Broker::start(&cfg);
    // The publisher did not see the PUBREC: it sends the PUBLISH again.
    let (mut publisher, ack) = open_v5(broker.addr, "q2-pub", false, persistent()).await;
    assert!(ack.session_present);
    let mut again = publish("q2/t", QoS::ExactlyOnce, Some(7), b"exactly", false);
    again.dup = true;
    publisher.send_packet(&Packet::Publish(again)).await;
    match publisher.recv().await {
        Some(Packet::PubRec(r)) => assert_eq!((r.packet_id, r.reason), (7, 0)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher
        .send_packet(&Packet::PubRel(PubResp { packet_id: 7, reason: 0, properties: Properties::default() }))
        .await;
    match publisher.recv().await {
        Some(Packet::PubComp(r)) => assert_eq!((r.packet_id, r.reason), (7, 0), "the awaited id survived"),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let (mut sub, ack) = open_v5(broker.addr, "q2-sub", false, persistent()).await;
    assert!(ack.session_present);
    let got = drain_publishes(&mut sub, Duration::from_millis(800), Duration::from_secs(5)).await;
    let copies = got.iter().filter(|p| &p.payload[..] == b"exactly").count();
    assert_eq!(copies, 1, "delivered once: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_writes_within_its_window() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = format!("[persistence]\nmode = \"relaxed\"\ndir = \"{}\"\nrelaxed_window = \"200ms\"\n", data.display());
    let broker = Broker::start(&cfg);
    let (mut sub, _) = open_v5(broker.addr, "relaxed-sub", false, persistent()).await;
    subscribe(&mut sub, 1, &[("r/#", QoS::AtLeastOnce)]).await;
    portcullis_tests::kit::disconnect(sub).await;
    let (mut p, _) = open_v5(broker.addr, "relaxed-pub", true, Properties::default()).await;
    for i in 0..50u16 {
        let code =
            portcullis_tests::kit::pub_simple(&mut p, "r/x", QoS::AtLeastOnce, i + 1, i.to_string().as_bytes(), false)
                .await;
        assert_eq!(code, 0);
    }
    // Past the 200 ms window, they are on disk: kill -9 loses none.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(broker); // SIGKILL
    let broker = Broker::start(&cfg);
    let (mut sub, ack) = open_v5(broker.addr, "relaxed-sub", false, persistent()).await;
    assert!(ack.session_present);
    let got = drain_publishes(&mut sub, Duration::from_millis(800), Duration::from_secs(10)).await;
    assert_eq!(got.len(), 50, "every acknowledged message back");
}
