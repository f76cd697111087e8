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
