//! The retained store end to end: the byte bound (`retained.max_bytes`,
//! counting topic, payload and properties), the broker's memory while a
//! client retains far more than the bound, and wildcard retained delivery
//! (served by the store's topic index) for 3.1.1 and 5.0 subscribers.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::codec::{Packet, Properties, ProtocolVersion, Publish, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{rss_kib, Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn client(b: &Broker, version: ProtocolVersion, id: &str) -> Raw {
    match version {
        ProtocolVersion::V5 => open_v5(b.addr, id, true, Properties::default()).await.0,
        _ => open_v3(b.addr, id, true).await.0,
    }
}

/// The retained messages a fresh subscriber gets for `filter`, as
/// `(topic, payload)` in topic order.
async fn retained(b: &Broker, version: ProtocolVersion, id: &str, filter: &str) -> BTreeSet<(String, String)> {
    let mut s = client(b, version, id).await;
    subscribe(&mut s, 1, &[(filter, Q1)]).await;
    let got = drain_publishes(&mut s, Duration::from_millis(300), Duration::from_secs(5)).await;
    disconnect(s).await;
    assert!(got.iter().all(|p| p.retain), "{filter}: {got:?}");
    let set: BTreeSet<(String, String)> = got.iter().map(|p| (p.topic.clone(), text(&p.payload))).collect();
    assert_eq!(set.len(), got.len(), "{filter}: a retained message came twice");
    set
}

/// Publishes a retained QoS 1 message (v5: its PUBACK may say 0x10, no
/// subscribers, but never a failure).
async fn retain_one(p: &mut Raw, topic: &str, payload: &[u8], properties: Properties) {
    let reason = publish_complete(p, retained_publish(topic, payload, properties)).await;
    assert!(reason == 0 || reason == 0x10, "PUBACK {reason:#x} for {topic}");
}

fn retained_publish(topic: &str, payload: &[u8], properties: Properties) -> Publish {
    let mut p = publish(topic, Q1, Some(1), payload, true);
    p.properties = properties;
    p
}

async fn dropped_retained(b: &Broker) -> u64 {
    sys_fresh(b.addr, "metrics/messages/dropped/retained_refused", Duration::from_secs(5))
        .await
        .parse()
        .expect("counter")
}

/// 1 KiB for the clients' retained messages: three 300-byte messages fit,
/// a fourth does not; a larger replacement does not either (and clears
/// the stale value); a v5 message's properties count.
#[tokio::test]
async fn max_bytes_refuses_and_counts() {
    let b = Broker::start("[sys]\ninterval = \"1s\"\n[retained]\nmax_bytes = \"1KiB\"\n");
    let mut p = client(&b, V5, "publisher").await;
    let body = [b'x'; 300];
    for i in 0..4 {
        retain_one(&mut p, &format!("r/{i}"), &body, Properties::default()).await;
    }
    let three: BTreeSet<(String, String)> =
        (0..3).map(|i| (format!("r/{i}"), String::from_utf8_lossy(&body).into_owned())).collect();
    assert_eq!(retained(&b, V3, "s1", "r/#").await, three, "the fourth passed max_bytes");
    assert_eq!(dropped_retained(&b).await, 1);

    // A larger replacement would pass the bound: refused, and r/0 cleared.
    let bigger = [b'y'; 400];
    retain_one(&mut p, "r/0", &bigger, Properties::default()).await;
    let two: BTreeSet<_> = three.iter().filter(|(t, _)| t != "r/0").cloned().collect();
    assert_eq!(retained(&b, V5, "s2", "r/#").await, two);
    assert_eq!(dropped_retained(&b).await, 2);

    // Room for one more now, but not once its properties are counted.
    let props = Properties { user_properties: vec![("k".into(), "v".repeat(400))], ..Properties::default() };
    retain_one(&mut p, "r/p", b"small", props).await;
    assert_eq!(retained(&b, V3, "s3", "r/p").await, BTreeSet::new(), "properties count against max_bytes");
    retain_one(&mut p, "r/p", b"small", Properties::default()).await;
    assert_eq!(retained(&b, V3, "s4", "r/p").await.len(), 1);
    assert_eq!(dropped_retained(&b).await, 3);
}

/// Publishes `n` retained QoS 0 messages of `size` bytes on new topics,
/// in rounds that end with a PINGREQ (so the broker has taken each round
/// before the next).
async fn flood(p: &mut Raw, prefix: &str, n: usize, size: usize) {
    let payload = Bytes::from(vec![b'z'; size]);
    for round in 0..n / 50 {
        for i in 0..50 {
            let mut m = publish(&format!("{prefix}/{round}/{i}"), Q0, None, b"", true);
            m.payload = payload.clone();
            p.send_packet(&Packet::Publish(m)).await;
        }
        sync(p).await;
    }
}

fn rss(b: &Broker) -> u64 {
    rss_kib(b.pid()).expect("broker RSS")
}

/// 64 MiB of retained messages against `max_bytes = 4MiB`: the broker
/// stays within a few MiB of where it started, and counts what it refused.
/// The same flood without the bound grows it by the whole 64 MiB, which
/// shows the measurement sees retained memory.
#[tokio::test]
async fn memory_stays_bounded_under_a_retained_flood() {
    const N: usize = 1000;
    const SIZE: usize = 64 * 1024;
    let mut growth = Vec::new();
    for bound in ["4MiB", "0"] {
        let b = Broker::start(&format!("[sys]\ninterval = \"1s\"\n[retained]\nmax_bytes = \"{bound}\"\n"));
        let mut p = client(&b, V3, "flooder").await;
        // Warm up the connection's buffers before the first reading.
        flood(&mut p, "warm", 50, SIZE).await;
        let before = rss(&b);
        flood(&mut p, "flood", N, SIZE).await;
        let after = rss(&b);
        let grew = after.saturating_sub(before);
        eprintln!("max_bytes = {bound}: RSS {before} KiB -> {after} KiB (+{grew} KiB)");
        if bound != "0" {
            let dropped = dropped_retained(&b).await;
            assert!(dropped >= (N - 64) as u64, "{dropped} refused of {N}");
        }
        growth.push(grew);
        disconnect(p).await;
    }
    assert!(growth[0] < 24 * 1024, "bounded store grew RSS by {} KiB", growth[0]);
    assert!(growth[1] > 48 * 1024, "unbounded store grew RSS by only {} KiB: the measurement is blind", growth[1]);
}

/// Wildcard filters find exactly the retained messages they match, `$`
/// topics only by filters that name them.
#[tokio::test]
async fn wildcard_retained_delivery() {
    // `$private/...` may be published to (no_match allow), not `$SYS`.
    let b = Broker::start("[acl]\nno_match = \"allow\"\n");
    let mut p = client(&b, V3, "publisher").await;
    let topics = ["a", "a/b", "a/b/c", "a//c", "x/b", "x/b/c/d", "/lead", "$private/x", "$private"];
    for (i, t) in topics.iter().enumerate() {
        assert_eq!(pub_simple(&mut p, t, Q1, i as u16 + 1, t.as_bytes(), true).await, 0, "{t}");
    }
    let want = |ts: &[&str]| ts.iter().map(|t| (t.to_string(), t.to_string())).collect::<BTreeSet<_>>();
    let cases: [(&str, &[&str]); 12] = [
        ("#", &["a", "a/b", "a/b/c", "a//c", "x/b", "x/b/c/d", "/lead"]),
        ("+", &["a"]),
        ("a/#", &["a", "a/b", "a/b/c", "a//c"]),
        ("a/+", &["a/b"]),
        ("a/+/c", &["a/b/c", "a//c"]),
        ("+/b/#", &["a/b", "a/b/c", "x/b", "x/b/c/d"]),
        ("+/+", &["a/b", "x/b", "/lead"]),
        ("$private/#", &["$private/x", "$private"]),
        ("+/x", &[]),
        ("$private/+", &["$private/x"]),
        ("a/b/c", &["a/b/c"]),
        ("nothing/#", &[]),
    ];
    for v in [V3, V5] {
        for (i, (filter, expect)) in cases.iter().enumerate() {
            let got = retained(&b, v, &format!("s{i}-{v:?}"), filter).await;
            assert_eq!(got, want(expect), "{v:?} {filter}");
        }
    }
}
