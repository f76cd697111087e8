//! With no module registered, the hook points a message and a SUBSCRIBE
//! pass (publish, delivered, acked, dropped, subscribe, unsubscribe)
//! allocate nothing: counted on this thread
//! by `allocation-counter`'s global allocator around the calls only (the
//! inputs are built before). Issue 12: "with no hook registered, no
//! allocation".

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::codec::{Properties, ProtocolVersion, QoS, SubscriptionOptions};
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{Hooks, PublishedMessage, Publisher, Subscription};
use portcullis_core::message::Message;
use portcullis_core::metrics::DropReason;
use portcullis_core::topic::TopicName;

fn client() -> ClientInfo {
    ClientInfo {
        client_id: Arc::from("c"),
        username: Some(Arc::from("u")),
        peer: "127.0.0.1:1".parse().expect("addr"),
        listener: Arc::from("l"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

#[test]
fn hook_points_allocate_nothing_with_no_module_registered() {
    let hooks = Hooks::default();
    let c = client();
    let topic = TopicName::new("a/b").expect("topic");
    let msg = Message {
        topic: topic.clone(),
        payload: Bytes::from_static(b"payload"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
        publisher: Some(Arc::from("c")),
        expires_at: None,
    };
    let mut published =
        PublishedMessage::new(topic, Bytes::from_static(b"payload"), QoS::AtLeastOnce, false, Properties::default());
    let mut sub = Subscription::new("a/#".to_string(), SubscriptionOptions::default());
    let counted = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            let _ = hooks.publish(Publisher::Client(&c), &mut published);
            hooks.message_delivered(&c, &msg, QoS::AtLeastOnce);
            hooks.message_acked(&c, &msg);
            hooks.message_dropped(&msg, DropReason::QueueFull, Some("c"));
            let _ = hooks.subscribe(&c, &mut sub);
            let _ = hooks.unsubscribe(&c, &mut sub);
        }
    });
    assert_eq!(counted.count_total, 0, "{counted:?}");
}

/// The counter counts: the same calls with one allocation of ours in the
/// loop are seen (so the test above cannot pass by measuring nothing).
#[test]
fn the_counter_sees_an_allocation() {
    let counted = allocation_counter::measure(|| {
        for i in 0..10u8 {
            std::hint::black_box(vec![i; 16]);
        }
    });
    assert_eq!(counted.count_total, 10, "{counted:?}");
}
