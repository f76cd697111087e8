//! Write-side back-pressure: a subscriber that stops reading makes the
//! broker stop pulling from its session at the write high-water mark; when
//! the subscriber reads again, everything queued meanwhile arrives, even
//! though no further publish comes to wake the connection.

use std::time::Duration;

use bytes::Bytes;
use portcullis_core::codec::{Packet, Properties, Publish, QoS, Subscribe, SubscriptionOptions};
use portcullis_tests::{connect_v311, Broker, Raw};

const MESSAGES: usize = 20_000;
const PAYLOAD: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_qos0_subscriber_gets_the_whole_burst_once_it_reads() {
    let broker = Broker::start("");
    let mut sub = Raw::connect(broker.addr).await;
    sub.send(&connect_v311("slow-reader", true, 0)).await;
    assert!(matches!(sub.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
    sub.send_packet(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("burst/#".into(), SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() })],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));

    // 20 MB of QoS 0, far beyond the socket buffers and the 64 KiB
    // high-water mark, while the subscriber reads nothing.
    let mut publisher = Raw::connect(broker.addr).await;
    publisher.send(&connect_v311("fast-writer", true, 0)).await;
    assert!(matches!(publisher.recv().await, Some(Packet::ConnAck(_))));
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let writer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            publisher
                .send_packet(&Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtMostOnce,
                    retain: false,
                    topic: format!("burst/{}", i % 10),
                    packet_id: None,
                    payload: payload.clone(),
                    properties: Properties::default(),
                }))
                .await;
        }
        // Keep the publisher connected (an idle client), then return it.
        publisher
    });
    let _publisher = tokio::time::timeout(Duration::from_secs(60), writer).await.expect("publisher stalled").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < MESSAGES && tokio::time::Instant::now() < deadline {
        match sub.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.payload.len(), PAYLOAD);
                got += 1;
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("subscriber disconnected after {got}"),
            Err(()) => break,
        }
    }
    assert_eq!(got, MESSAGES, "messages stuck in the session queue after the subscriber resumed reading");
}

/// A connection reads a burst before it writes the answers (one write per
/// burst), but not for ever: a client that never stops sending still gets
/// its deliveries. Here it floods QoS 0 publishes (which produce no answers
/// of their own, and which the broker routes to 50 subscribers that never
/// read) while a message for its own subscription arrives. (On this
/// machine the broker's reads still catch up with the flood now and then,
/// which also lets the write out, so this test guards the outcome; the
/// bound on reads between writes, MAX_READS_UNWRITTEN, is what guarantees
/// it when they never do.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_stops_sending_still_gets_its_deliveries() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = Broker::start("");
    let mut f = Raw::connect(broker.addr).await;
    f.send(&connect_v311("flooder", true, 0)).await;
    assert!(matches!(f.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
    f.send_packet(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("news/#".into(), SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() })],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(f.recv().await, Some(Packet::SubAck(_))));
    let (mut rd, mut wr) = f.stream.into_split();
    // Subscribers to the flood that never read: routing each flood packet
    // to them makes the broker slower than the flooder, so its socket
    // always has more to read.
    let mut sinks = Vec::new();
    for i in 0..50 {
        let mut s = Raw::connect(broker.addr).await;
        s.send(&connect_v311(&format!("sink-{i}"), true, 0)).await;
        assert!(matches!(s.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
        s.send_packet(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("flood/#".into(), SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() })],
            properties: Properties::default(),
        }))
        .await;
        assert!(matches!(s.recv().await, Some(Packet::SubAck(_))));
        sinks.push(s);
    }

    // 64 KiB of QoS 0 publishes to the sinks' topic, again and again:
    // bounded at 15 s, stopped as soon as the delivery arrived.
    let mut chunk = bytes::BytesMut::new();
    let flood = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "flood/x".into(),
        packet_id: None,
        payload: Bytes::from(vec![7u8; 200]),
        properties: Properties::default(),
    });
    while chunk.len() < 64 * 1024 {
        portcullis_core::codec::encode(&flood, portcullis_core::codec::ProtocolVersion::V311, &mut chunk).unwrap();
    }
    let chunk = chunk.freeze();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let end = tokio::time::Instant::now() + Duration::from_secs(15);
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && tokio::time::Instant::now() < end {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    };
    // Let the flood get going, then publish one message to the flooder.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = Raw::connect(broker.addr).await;
    p.send(&connect_v311("news-publisher", true, 0)).await;
    assert!(matches!(p.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
    let sent_at = std::time::Instant::now();
    p.send_packet(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "news/1".into(),
        packet_id: None,
        payload: Bytes::from_static(b"hello"),
        properties: Properties::default(),
    }))
    .await;

    let mut buf = bytes::BytesMut::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match portcullis_core::codec::decode(&mut buf, Some(portcullis_core::codec::ProtocolVersion::V311), 1 << 20)
            {
                Ok(Some(Packet::Publish(m))) => return Some(m),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => panic!("undecodable: {e}"),
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await;
    let took = sent_at.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooding.await.expect("flood task");
    let m = got.expect("no delivery within 5 s while the client kept sending").expect("connection closed");
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("news/1", &b"hello"[..]));
    eprintln!("delivered after {took:?} with {} KiB of flood sent", sent / 1024);
    assert!(sent > 0);
}

/// Runs the load tool; its JSON summary.
fn bench(args: &[&str]) -> serde_json::Value {
    let out =
        std::process::Command::new(portcullis_tests::bench_binary()).args(args).output().expect("run portcullis-bench");
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last().unwrap_or("{}")).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Read-side back-pressure (issue 14, point 0): a QoS 1 publisher with
/// 100 messages in flight, faster than its one subscriber, is slowed
/// instead of losing what it was acknowledged. The queue bound is set low
/// (5,000) so that, without back-pressure, the queue overflows and drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_qos1_publisher_is_slowed_not_dropped() {
    let broker = Broker::start("[session]\nmax_queue_len = 5000\nqueue_high_water = 500\n[sys]\ninterval = \"1s\"\n");
    let port = broker.addr.port().to_string();
    let s = bench(&[
        "pubsub",
        "--port",
        &port,
        "-p",
        "1",
        "-s",
        "1",
        "--qos",
        "1",
        "--size",
        "256",
        "--count",
        "100000",
        "--window",
        "100",
        "--drain",
        "5s",
        "--duration",
        "120s",
    ]);
    eprintln!("{s}");
    assert_eq!(s["published"], 100_000, "{s}");
    assert_eq!(s["lost"], 0, "acknowledged messages lost: {s}");
    assert_eq!(s["received"], 100_000, "{s}");
    let waits =
        portcullis_tests::kit::sys_fresh(broker.addr, "metrics/messages/backpressure_waits", Duration::from_secs(5))
            .await;
    assert!(waits.parse::<u64>().unwrap_or(0) > 0, "the publisher was held back: {waits}");
    let dropped =
        portcullis_tests::kit::sys_fresh(broker.addr, "metrics/messages/dropped/queue_full", Duration::from_secs(5))
            .await;
    assert_eq!(dropped, "0");
    let peak = portcullis_tests::peak_rss_kib(broker.pid()).expect("rss");
    eprintln!("broker peak RSS {peak} KiB");
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
}

/// One subscriber of a fan-out stops reading: the publisher waits for it
/// once (`stall_timeout`), then it counts as stuck and the others get
/// everything; the stuck one's drops are counted. With `on_stuck =
/// "disconnect"` it is disconnected instead (v5 DISCONNECT 0x97).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_does_not_stop_a_fan_out() {
    use portcullis_core::codec::ProtocolVersion;
    use portcullis_tests::kit;
    for on_stuck in ["drop", "disconnect"] {
        let broker = Broker::start(&format!(
            "[session]\nmax_queue_len = 2000\nqueue_high_water = 200\nstall_timeout = \"500ms\"\non_stuck = \"{on_stuck}\"\n[sys]\ninterval = \"1s\"\n"
        ));
        // The stuck subscriber: MQTT 5, subscribes, never reads again.
        let (mut stuck, _) = kit::open_v5(broker.addr, "stuck", true, Properties::default()).await;
        kit::subscribe(&mut stuck, 1, &[("fan/#", QoS::AtMostOnce)]).await;
        // Five that read everything.
        let mut readers = Vec::new();
        for i in 0..5 {
            let (mut r, _) = kit::open_v3(broker.addr, &format!("reader-{i}"), true).await;
            kit::subscribe(&mut r, 1, &[("fan/#", QoS::AtMostOnce)]).await;
            readers.push(tokio::spawn(async move {
                let mut got = 0usize;
                while got < 20_000 {
                    match r.recv_timeout(Duration::from_secs(10)).await {
                        Ok(Some(Packet::Publish(_))) => got += 1,
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                got
            }));
        }
        let start = std::time::Instant::now();
        let (mut p, _) = kit::open_v3(broker.addr, "fan-publisher", true).await;
        let mut chunk = bytes::BytesMut::new();
        for i in 0..20_000u32 {
            let m = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "fan/x".into(),
                packet_id: None,
                payload: Bytes::from(vec![(i % 251) as u8; 1024]),
                properties: Properties::default(),
            });
            portcullis_core::codec::encode(&m, ProtocolVersion::V311, &mut chunk).unwrap();
            if chunk.len() > 64 * 1024 {
                p.send(&chunk).await;
                chunk.clear();
            }
        }
        p.send(&chunk).await;
        kit::sync(&mut p).await;
        for r in readers {
            assert_eq!(r.await.expect("reader"), 20_000, "{on_stuck}: a reader lost messages");
        }
        let took = start.elapsed();
        eprintln!("{on_stuck}: 5 readers got 20,000 x 1 KiB each in {took:?} beside a stuck subscriber");
        assert!(took < Duration::from_secs(60), "{on_stuck}: {took:?}");
        let waits = kit::sys_fresh(broker.addr, "metrics/messages/backpressure_waits", Duration::from_secs(5)).await;
        assert!(waits.parse::<u64>().unwrap_or(0) > 0, "{on_stuck}: waits {waits}");
        if on_stuck == "drop" {
            let dropped =
                kit::sys_fresh(broker.addr, "metrics/messages/dropped/queue_full", Duration::from_secs(5)).await;
            assert!(
                dropped.parse::<u64>().unwrap_or(0) > 10_000,
                "{on_stuck}: the stuck one's drops counted: {dropped}"
            );
        } else {
            let seen = kit::collect(&mut stuck, Duration::from_secs(10)).await;
            assert!(
                seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x97)),
                "the stuck subscriber is disconnected with 0x97 (saw {} packets)",
                seen.len()
            );
        }
    }
}
