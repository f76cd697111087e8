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
