//! Parsing, bounds, reservations, and the timer task on tokio's paused
//! clock (a retained flag makes each publication visible in the broker's
//! retained store).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::codec::{Properties, ProtocolVersion, QoS};
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{OnMessageDropped, OnMessagePublish, PublishFlow, PublishedMessage, Publisher};
use portcullis_core::message::Message;
use portcullis_core::metrics::DropReason;
use portcullis_core::metrics::{MetricSource, Scrape};
use portcullis_core::topic::TopicName;
use tokio::time::Instant;

use super::queue::{Committed, Limits, Queue, Refused, LEASE};
use super::sys::{DelayedSys, Stats};
use super::topic::{parse, Malformed, Parsed};
use super::{weight, Delayed, DelayedConfig};

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: None,
        peer: "127.0.0.1:1".parse().expect("addr"),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

fn topic(t: &str) -> TopicName {
    TopicName::new(t).expect("topic")
}

/// The message the core builds from a hook's edited copy.
fn built(c: &ClientInfo, pm: PublishedMessage, expires_at: Option<std::time::Instant>) -> Arc<Message> {
    let (topic, payload, qos, retain, properties) = pm.into_parts();
    Arc::new(Message {
        topic,
        payload,
        qos,
        retain,
        properties: Message::boxed_properties(properties),
        publisher: Some(Arc::clone(&c.client_id)),
        expires_at,
    })
}

/// Runs the hook as the core does; on `Take`, hands the message over
/// (the ACL allowing it).
fn publish(d: &Delayed, c: &ClientInfo, t: &str, payload: &str) -> (PublishFlow, TopicName) {
    let mut pm = PublishedMessage::new(
        topic(t),
        Bytes::from(payload.to_string()),
        QoS::AtLeastOnce,
        true,
        Properties::default(),
    );
    let flow = d.publish(Publisher::Client(c), &mut pm);
    let real = pm.topic().clone();
    if flow == PublishFlow::Take {
        d.take(built(c, pm, None));
    }
    (flow, real)
}

fn retained(b: &Broker, t: &str) -> Option<String> {
    b.retained
        .all()
        .into_iter()
        .find(|m| m.topic.as_str() == t)
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
}

fn cfg(max_messages: usize, max_bytes: u64) -> DelayedConfig {
    DelayedConfig { enabled: true, max_messages, max_bytes, ..DelayedConfig::default() }
}

fn module(b: &Arc<Broker>, c: &DelayedConfig) -> Arc<Delayed> {
    Arc::new(Delayed::new(b, c, Arc::new(Stats::default())).expect("in a runtime"))
}

#[test]
fn parses_the_prefix() {
    let d = |seconds, topic| Parsed::Delayed { seconds, topic };
    let bad = Parsed::Malformed;
    for (t, want) in [
        ("a/b", Parsed::Ordinary),
        ("$delayedx/5/a", Parsed::Ordinary),
        ("$DELAYED/5/a", Parsed::Ordinary),
        ("$delayed/5/a/b", d(5, "a/b")),
        ("$delayed/0/a", d(0, "a")),
        ("$delayed/007/a", d(7, "a")),
        ("$delayed/5//a", d(5, "/a")),
        ("$delayed/5/$other/x", d(5, "$other/x")),
        ("$delayed/99999999999999999999999/a", d(u64::MAX, "a")),
        ("$delayed", bad(Malformed::MissingSeconds)),
        ("$delayed/", bad(Malformed::MissingSeconds)),
        ("$delayed//a", bad(Malformed::MissingSeconds)),
        ("$delayed/x/a", bad(Malformed::InvalidSeconds)),
        ("$delayed/-1/a", bad(Malformed::InvalidSeconds)),
        ("$delayed/+1/a", bad(Malformed::InvalidSeconds)),
        ("$delayed/1.5/a", bad(Malformed::InvalidSeconds)),
        ("$delayed/ 1/a", bad(Malformed::InvalidSeconds)),
        ("$delayed/5", bad(Malformed::MissingTopic)),
        ("$delayed/5/", bad(Malformed::MissingTopic)),
        ("$delayed/5/$SYS", bad(Malformed::SysTopic)),
        ("$delayed/5/$SYS/x", bad(Malformed::SysTopic)),
        ("$delayed/5/$delayed", bad(Malformed::Nested)),
        ("$delayed/5/$delayed/1/a", bad(Malformed::Nested)),
    ] {
        assert_eq!(parse(t), want, "{t}");
    }
}

#[test]
fn config_bounds_are_checked() {
    assert_eq!(DelayedConfig::default().validate(), vec![]);
    assert!(!DelayedConfig::default().enabled, "off unless asked for");
    let bad = DelayedConfig { max_messages: 0, max_bytes: 0, max_delay: Duration::from_millis(500), enabled: true };
    let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["delayed.max_messages", "delayed.max_bytes", "delayed.max_delay"]);
    let long = DelayedConfig { max_delay: Duration::from_secs(4_294_968), ..DelayedConfig::default() };
    assert_eq!(long.validate().len(), 1);
    let top = DelayedConfig { max_delay: Duration::from_secs(4_294_967), ..DelayedConfig::default() };
    assert_eq!(top.validate(), vec![]);
}

/// The hook's estimate is what `take` will find (else a reservation and
/// its commit would disagree about bytes).
#[test]
fn the_reserved_weight_is_the_message_weight() {
    let c = client("w");
    let props = Properties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "v".into()); 3],
        ..Properties::default()
    };
    for props in [Properties::default(), props] {
        let pm = PublishedMessage::new(topic("a/b/c"), Bytes::from_static(b"payload"), QoS::AtMostOnce, false, props);
        let w = weight(pm.topic(), &pm);
        assert_eq!(w, built(&c, pm, None).weight());
    }
}

fn limits(max_messages: usize, max_bytes: usize) -> Limits {
    Limits { max_messages, max_bytes, max_delay: Duration::from_secs(100) }
}

fn msg_from(publisher: &Arc<str>, payload: &Bytes) -> Arc<Message> {
    Arc::new(Message {
        topic: topic("t"),
        payload: payload.clone(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: None,
        publisher: Some(Arc::clone(publisher)),
        expires_at: None,
    })
}

#[test]
fn reservations_count_against_the_bounds_and_never_leak() {
    let now = Instant::now();
    let std_now = std::time::Instant::now();
    let s = Duration::from_secs(1);
    let mut q = Queue::new(limits(2, 1000));
    let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"), Arc::from("c"));
    let p = Bytes::from_static(b"x");

    assert_eq!(q.reserve(&a, &p, 2, Duration::from_secs(101), now), Err(Refused::TooLong));
    assert_eq!(q.reserve(&a, &p, 2, Duration::from_secs(100), now), Ok(true));
    assert!(q.reserve(&b, &p, 2, s, now).is_ok());
    assert_eq!(q.reserve(&c, &p, 2, s, now), Err(Refused::Full), "two reserved: max_messages reached");
    // `a` publishes again: its previous reservation (never taken) is gone.
    assert!(q.reserve(&a, &p, 2, s, now).is_ok());
    assert_eq!(q.reserved(), 2);

    // Committed: held, no longer reserved.
    assert_eq!(q.commit(msg_from(&a, &p), now, std_now, 0, None), Committed::Held { earliest: true, stored: None });
    assert_eq!((q.held(), q.reserved()), (1, 1));
    assert_eq!(q.commit(msg_from(&a, &p), now, std_now, 0, None), Committed::NoReservation, "one take per reservation");

    // Refused by the ACL: only the reservation for that very payload goes.
    let other = Bytes::from_static(b"other");
    assert!(!q.release_refused(&msg_from(&b, &other)));
    assert!(q.release_refused(&msg_from(&b, &p)));
    assert_eq!(q.reserved(), 0);

    // Bytes: 2 held (topic "t", payload "x"); 998 more fit, 999 do not.
    let mut q = Queue::new(limits(10, 1000));
    assert!(q.reserve(&a, &p, 2, s, now).is_ok());
    assert_eq!(q.commit(msg_from(&a, &p), now, std_now, 0, None), Committed::Held { earliest: true, stored: None });
    assert_eq!(q.held_bytes(), 2);
    assert_eq!(q.reserve(&b, &p, 999, s, now), Err(Refused::Full));
    assert!(q.reserve(&b, &p, 998, s, now).is_ok());
    assert_eq!(q.reserve(&c, &p, 1, s, now), Err(Refused::Full), "reserved bytes count");

    // A lease that runs out releases its reservation; a late take drops.
    let mut out = Vec::new();
    assert!(!q.pop_due(now + LEASE, 100, &mut out));
    assert_eq!(out.len(), 1, "the held message was due long before");
    assert_eq!((q.held(), q.held_bytes(), q.reserved()), (0, 0, 0));
    assert_eq!(q.commit(msg_from(&b, &p), now + LEASE, std_now, 0, None), Committed::NoReservation);
    assert!(q.reserve(&c, &p, 1000, s, now + LEASE).is_ok(), "all room is back");
}

#[test]
fn deadlines_come_out_in_order_in_batches() {
    let now = Instant::now();
    let std_now = std::time::Instant::now();
    let mut q = Queue::new(limits(100, 10_000));
    let p = Bytes::from_static(b"x");
    let ids: Vec<Arc<str>> = (0..6).map(|i| Arc::from(format!("c{i}"))).collect();
    // Deadlines 3, 1, 2, 1, 3, 2 s: ties keep their arrival order.
    for (id, secs) in ids.iter().zip([3, 1, 2, 1, 3, 2]) {
        q.reserve(id, &p, 1, Duration::from_secs(secs), now).expect("room");
        assert!(matches!(q.commit(msg_from(id, &p), now, std_now, 0, None), Committed::Held { .. }));
    }
    let who = |v: &Vec<(Arc<Message>, _)>| {
        v.iter().map(|(m, _)| m.publisher.as_deref().unwrap_or("").to_string()).collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    assert!(!q.pop_due(now + Duration::from_millis(999), 10, &mut out));
    assert!(out.is_empty(), "nothing before its deadline");
    assert!(q.pop_due(now + Duration::from_secs(2), 3, &mut out), "more are due than the batch");
    assert_eq!(who(&out), ["c1", "c3", "c2"]);
    out.clear();
    assert!(!q.pop_due(now + Duration::from_secs(2), 3, &mut out));
    assert_eq!(who(&out), ["c5"]);
    out.clear();
    assert_eq!(q.next_due(), Some(now + Duration::from_secs(3)));
    assert!(!q.pop_due(now + Duration::from_secs(3), 10, &mut out));
    assert_eq!(who(&out), ["c0", "c4"]);
    assert_eq!((q.held(), q.held_bytes(), q.next_due()), (0, 0, None));
}

/// An expiry before the deadline brings the message out then.
#[test]
fn an_expiry_before_the_deadline_is_due_first() {
    let now = Instant::now();
    let std_now = std::time::Instant::now();
    let mut q = Queue::new(limits(10, 1000));
    let a: Arc<str> = Arc::from("a");
    let p = Bytes::from_static(b"x");
    q.reserve(&a, &p, 2, Duration::from_secs(60), now).expect("room");
    let mut m = Arc::try_unwrap(msg_from(&a, &p)).expect("one owner");
    m.expires_at = Some(std_now + Duration::from_secs(5));
    q.commit(Arc::new(m), now, std_now, 0, None);
    assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn messages_are_published_at_their_deadline_in_order() {
    let b = Broker::new(Default::default());
    let d = module(&b, &cfg(100, 1 << 20));
    let c = client("p");
    let t0 = Instant::now();
    // Same real topic, retained: the store shows the last one published.
    for (secs, payload) in [(3, "three"), (1, "one"), (2, "two")] {
        let (flow, real) = publish(&d, &c, &format!("$delayed/{secs}/r/t"), payload);
        assert_eq!((flow, real.as_str()), (PublishFlow::Take, "r/t"));
    }
    assert_eq!(d.held(), (3, 3 * 3 + "three".len() + "one".len() + "two".len()));
    for (at, want) in
        [(999, None), (1001, Some("one")), (1999, Some("one")), (2001, Some("two")), (3001, Some("three"))]
    {
        tokio::time::sleep_until(t0 + Duration::from_millis(at)).await;
        assert_eq!(retained(&b, "r/t").as_deref(), want, "at {at} ms");
    }
    assert_eq!(d.held(), (0, 0));
    assert_eq!(d.shared.stats.published.load(Relaxed), 3);
    assert_eq!(b.metrics.dropped_count(DropReason::Module), 0);
}

/// An earlier deadline arriving while the task sleeps for a later one
/// wakes it.
#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wakes_the_sleeping_task() {
    let b = Broker::new(Default::default());
    let d = module(&b, &cfg(100, 1 << 20));
    let t0 = Instant::now();
    publish(&d, &client("a"), "$delayed/100/late", "l");
    tokio::time::sleep(Duration::from_millis(10)).await;
    publish(&d, &client("b"), "$delayed/1/early", "e");
    tokio::time::sleep_until(t0 + Duration::from_millis(1020)).await;
    assert_eq!(retained(&b, "early").as_deref(), Some("e"));
    assert_eq!(retained(&b, "late"), None);
}

#[tokio::test(start_paused = true)]
async fn the_hook_refuses_what_it_cannot_hold() {
    let b = Broker::new(Default::default());
    let d = module(&b, &DelayedConfig { max_delay: Duration::from_secs(60), ..cfg(2, 1 << 20) });
    let c = client("p");
    for (t, code) in [
        ("$delayed/x/a", ReasonCode::TopicNameInvalid),
        ("$delayed/5", ReasonCode::TopicNameInvalid),
        ("$delayed/5/$SYS/x", ReasonCode::TopicNameInvalid),
        ("$delayed/5/$delayed/5/a", ReasonCode::TopicNameInvalid),
        ("$delayed/61/a", ReasonCode::QuotaExceeded),
        ("$delayed/99999999999999999999999/a", ReasonCode::QuotaExceeded),
    ] {
        let (flow, real) = publish(&d, &c, t, "x");
        assert_eq!(flow, PublishFlow::Drop(code), "{t}");
        assert_eq!(real.as_str(), t, "a refused topic is left as it was");
    }
    assert_eq!(d.shared.stats.dropped.load(Relaxed), 6);
    // An ordinary topic is not ours; delay 0 is published at once.
    assert_eq!(publish(&d, &c, "a/b", "x"), (PublishFlow::Continue, topic("a/b")));
    assert_eq!(publish(&d, &c, "$delayed/0/a/b", "x"), (PublishFlow::Continue, topic("a/b")));
    // max_messages = 2.
    assert_eq!(publish(&d, &c, "$delayed/60/a", "1").0, PublishFlow::Take);
    assert_eq!(publish(&d, &c, "$delayed/60/a", "2").0, PublishFlow::Take);
    assert_eq!(publish(&d, &c, "$delayed/60/a", "3").0, PublishFlow::Drop(ReasonCode::QuotaExceeded));
    // More room by SIGHUP: the same instance, what it holds kept.
    d.reconfigure(&DelayedConfig { max_delay: Duration::from_secs(60), ..cfg(3, 1 << 20) });
    assert_eq!(publish(&d, &c, "$delayed/60/a", "3").0, PublishFlow::Take);
    assert_eq!(d.held().0, 3);
    assert_eq!(d.shared.stats.dropped.load(Relaxed), 7);
}

/// The ACL refuses the real topic after the hook reserved room: the
/// dropped hook releases it, so refusals never use up the bounds.
#[tokio::test(start_paused = true)]
async fn a_publish_the_acl_refuses_gives_its_room_back() {
    let b = Broker::new(Default::default());
    let d = module(&b, &cfg(1, 1 << 20));
    let c = client("p");
    for _ in 0..3 {
        let mut pm = PublishedMessage::new(
            topic("$delayed/5/secret"),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Properties::default(),
        );
        assert_eq!(d.publish(Publisher::Client(&c), &mut pm), PublishFlow::Take);
        // The core's publish-side drop: no target session.
        d.dropped(&built(&c, pm, None), DropReason::Denied, None);
        assert_eq!(d.shared.queue.lock().reserved(), 0);
    }
    // A delivery-side denial of another message of this publisher (a
    // subscriber's check) is not a refusal of the pending publish.
    let mut pm = PublishedMessage::new(
        topic("$delayed/5/ok"),
        Bytes::from_static(b"y"),
        QoS::AtMostOnce,
        false,
        Properties::default(),
    );
    assert_eq!(d.publish(Publisher::Client(&c), &mut pm), PublishFlow::Take);
    let m = built(&c, pm, None);
    d.dropped(&m, DropReason::Denied, Some("subscriber"));
    d.dropped(&m, DropReason::NoSubscribers, None);
    d.take(m);
    assert_eq!(d.held().0, 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_message_is_dropped_not_published() {
    let b = Broker::new(Default::default());
    let d = module(&b, &cfg(10, 1 << 20));
    let c = client("p");
    let mut pm = PublishedMessage::new(
        topic("$delayed/5/gone"),
        Bytes::from_static(b"x"),
        QoS::AtMostOnce,
        true,
        Properties::default(),
    );
    assert_eq!(d.publish(Publisher::Client(&c), &mut pm), PublishFlow::Take);
    // Expired already (std's clock does not move with the paused one).
    d.take(built(&c, pm, Some(std::time::Instant::now())));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(retained(&b, "gone"), None);
    assert_eq!(d.held(), (0, 0));
    assert_eq!(b.metrics.dropped_count(DropReason::Expired), 1);
    assert_eq!(d.shared.stats.dropped.load(Relaxed), 1);
}

/// Dropping the instance (the module switched off) ends its task and
/// drops what it held; the metric source then reports nothing (the `$SYS`
/// publisher clears the topics once: `portcullis_core::sys`).
#[tokio::test(start_paused = true)]
async fn a_dropped_instance_ends_its_task_and_leaves_the_metrics() {
    let b = Broker::new(Default::default());
    let sys = DelayedSys::default();
    let d = Arc::new(Delayed::new(&b, &cfg(10, 1 << 20), sys.stats()).expect("runtime"));
    sys.point_at(&d);
    publish(&d, &client("p"), "$delayed/5/later", "xy");
    let mut s = Scrape::new();
    sys.collect(&mut s);
    let v = s.sys_values();
    let got: Vec<(&str, &str)> = v.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("modules/delayed/count", "1"),
            ("modules/delayed/bytes", "7"),
            ("modules/delayed/published", "0"),
            ("modules/delayed/dropped", "0")
        ]
    );

    let shared = Arc::downgrade(&d.shared);
    drop(d);
    tokio::task::yield_now().await;
    assert!(shared.upgrade().is_none(), "the timer task ended and let go of the state");
    assert_eq!(b.metrics.dropped_count(DropReason::Module), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(retained(&b, "later"), None, "not published after the module went");

    let mut s = Scrape::new();
    sys.collect(&mut s);
    assert!(s.sys_values().is_empty(), "nothing for a module that went: {:?}", s.sys_values());
    assert_eq!(sys.stats().dropped.load(Relaxed), 1, "counted as dropped");
}
