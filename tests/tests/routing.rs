//! Routing end to end: wildcards, overlapping subscriptions, shared
//! subscriptions and their strategies, v5 subscription options, and `$SYS`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, QoS, RetainHandling, SubscriptionOptions};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};
use tokio::io::AsyncReadExt;

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
const IDLE: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(8);

fn topics(ps: &[portcullis_core::codec::Publish]) -> BTreeSet<String> {
    ps.iter().map(|p| p.topic.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Wildcards

#[tokio::test]
async fn wildcard_matching() {
    let b = Broker::start("");
    let cases: [(&str, &[&str]); 8] = [
        ("sport/#", &["sport", "sport/", "sport/tennis", "sport/tennis/player1"]),
        ("sport/+", &["sport/", "sport/tennis"]),
        ("sport/tennis/+", &["sport/tennis/player1"]),
        ("+/tennis/#", &["sport/tennis", "sport/tennis/player1"]),
        ("+", &["sport"]),
        ("+/+", &["sport/", "sport/tennis", "/finance", "other/x"]),
        ("/+", &["/finance"]),
        ("#", &["sport", "sport/", "sport/tennis", "sport/tennis/player1", "/finance", "other/x"]),
    ];
    let mut subs = Vec::new();
    for (i, (filter, _)) in cases.iter().enumerate() {
        let (mut s, _) = open_v3(b.addr, &format!("w{i}"), true).await;
        subscribe(&mut s, 1, &[(filter, Q0)]).await;
        subs.push(s);
    }
    let (mut p, _) = open_v3(b.addr, "w-pub", true).await;
    for t in ["sport", "sport/", "sport/tennis", "sport/tennis/player1", "/finance", "other/x"] {
        pub_simple(&mut p, t, Q0, 0, t.as_bytes(), false).await;
    }
    for ((filter, want), s) in cases.iter().zip(subs.iter_mut()) {
        let got = drain_publishes(s, IDLE, MAX).await;
        let got_topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(got.len(), want.len(), "{filter}: one copy per matching topic: {got_topics:?}");
        assert_eq!(topics(&got), set(want), "filter {filter}");
    }
}

#[tokio::test]
async fn sys_topics_not_matched_by_leading_wildcards() {
    let b = Broker::start("[sys]\ninterval = \"1s\"\n");
    let mut subs = Vec::new();
    for (i, f) in ["#", "+/brokers/#", "+/+/+/version", "$SYS/#"].iter().enumerate() {
        let (mut s, _) = open_v3(b.addr, &format!("s{i}"), true).await;
        subscribe(&mut s, 1, &[(f, Q0)]).await;
        subs.push(s);
    }
    // Presence events happen too.
    let (c, _) = open_v3(b.addr, "someone", true).await;
    disconnect(c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sys = subs.pop().expect("sys sub");
    for (f, mut s) in ["#", "+/brokers/#", "+/+/+/version"].iter().zip(subs) {
        expect_silence(&mut s, Duration::from_millis(100), &format!("{f} received a $SYS topic")).await;
    }
    let mut sys = sys;
    let got = collect(&mut sys, Duration::from_millis(200)).await;
    assert!(got.iter().any(|p| matches!(p, Packet::Publish(p) if p.topic.ends_with("/version"))), "$SYS/# got nothing");
}

// ---------------------------------------------------------------------------
// Overlapping subscriptions

#[tokio::test]
async fn overlapping_subscriptions_one_copy_at_highest_qos_v311() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "ov", true).await;
    subscribe(&mut s, 1, &[("a/#", Q1), ("a/+", Q2)]).await;
    let (mut p, _) = open_v3(b.addr, "ov-pub", true).await;
    pub_simple(&mut p, "a/b", Q2, 1, b"x", false).await;
    let got = drain_publishes(&mut s, IDLE, MAX).await;
    assert_eq!(got.len(), 1, "overlapping subscriptions must give one copy: {got:?}");
    assert_eq!(got[0].qos, Q2, "copy at the highest granted QoS");
    // Only the QoS 1 filter matches "a/b/c".
    pub_simple(&mut p, "a/b/c", Q2, 2, b"y", false).await;
    let got = drain_publishes(&mut s, IDLE, MAX).await;
    assert_eq!(got.iter().map(|p| (p.topic.as_str(), p.qos)).collect::<Vec<_>>(), [("a/b/c", Q1)]);
}

/// One PUBLISH read straight from the socket: (topic, qos, subscription
/// identifiers, payload). Our codec refuses subscription identifiers in a
/// PUBLISH (it decodes as a server), so this walks the v5 properties by hand.
async fn read_v5_publish_raw(raw: &mut Raw) -> (String, u8, Vec<u32>, Vec<u8>) {
    async fn byte(raw: &mut Raw) -> u8 {
        tokio::time::timeout(Duration::from_secs(5), raw.stream.read_u8()).await.expect("read timeout").expect("read")
    }
    let first = byte(raw).await;
    assert_eq!(first >> 4, 3, "expected a PUBLISH, first byte {first:#x}");
    let (mut len, mut mul) = (0usize, 1usize);
    loop {
        let b = byte(raw).await;
        len += usize::from(b & 0x7f) * mul;
        mul *= 128;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), raw.stream.read_exact(&mut body))
        .await
        .expect("read timeout")
        .expect("read");
    let qos = (first >> 1) & 3;
    let mut i = 0usize;
    let u16_at = |b: &[u8], i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let tlen = u16_at(&body, i);
    let topic = String::from_utf8(body[2..2 + tlen].to_vec()).expect("utf8 topic");
    i += 2 + tlen;
    if qos > 0 {
        i += 2;
    }
    let varint = |b: &[u8], i: &mut usize| {
        let (mut v, mut m) = (0u32, 1u32);
        loop {
            let x = b[*i];
            *i += 1;
            v += u32::from(x & 0x7f) * m;
            m *= 128;
            if x & 0x80 == 0 {
                return v;
            }
        }
    };
    let plen = varint(&body, &mut i) as usize;
    let end = i + plen;
    let mut ids = Vec::new();
    while i < end {
        let id = body[i];
        i += 1;
        match id {
            0x01 => i += 1,
            0x02 => i += 4,
            0x23 => i += 2,
            0x03 | 0x08 | 0x09 => i += 2 + u16_at(&body, i),
            0x26 => {
                i += 2 + u16_at(&body, i);
                i += 2 + u16_at(&body, i);
            }
            0x0B => ids.push(varint(&body, &mut i)),
            other => panic!("unexpected PUBLISH property {other:#x}"),
        }
    }
    (topic, qos, ids, body[end..].to_vec())
}

#[tokio::test]
async fn overlapping_subscriptions_one_copy_with_both_identifiers_v5() {
    let b = Broker::start("");
    let (mut s, _) = open_v5(b.addr, "ov5", true, Properties::default()).await;
    for (pid, f, id, qos) in [(1u16, "a/#", 1u32, Q1), (2, "a/+", 2, Q0)] {
        let props = Properties { subscription_identifiers: vec![id], ..Properties::default() };
        let ack = subscribe_with(&mut s, pid, &[(f, opts(qos))], props).await;
        assert_eq!(ack.return_codes, [qos as u8]);
    }
    let (mut p, _) = open_v3(b.addr, "ov5-pub", true).await;
    pub_simple(&mut p, "a/b", Q1, 1, b"both", false).await;
    let (topic, qos, mut ids, payload) = read_v5_publish_raw(&mut s).await;
    ids.sort_unstable();
    assert_eq!((topic.as_str(), qos, ids, payload.as_slice()), ("a/b", 1, vec![1, 2], &b"both"[..]));
    // One copy only: the next thing on the wire is the PINGRESP.
    s.send_packet(&Packet::PubAck(portcullis_core::codec::PubResp::ok(1))).await;
    sync(&mut s).await;

    pub_simple(&mut p, "a/b/c", Q1, 2, b"one", false).await;
    let (topic, _, ids, _) = read_v5_publish_raw(&mut s).await;
    assert_eq!((topic.as_str(), ids), ("a/b/c", vec![1]));
}

// ---------------------------------------------------------------------------
// Shared subscriptions

/// Three members (3.1.1, 3.1.1, 5.0) subscribe to `filter`; 30 QoS 1
/// messages go to `topic`. Returns the sequence numbers each received.
async fn shared_round(config: &str, filter: &str, topic: &str) -> Vec<Vec<u32>> {
    let b = Broker::start(config);
    let mut members = Vec::new();
    for i in 0..3 {
        let id = format!("m{i}");
        let mut s = if i < 2 {
            open_v3(b.addr, &id, true).await.0
        } else {
            open_v5(b.addr, &id, true, Properties::default()).await.0
        };
        subscribe(&mut s, 1, &[(filter, Q1)]).await;
        members.push(s);
    }
    let (mut p, _) = open_v3(b.addr, "sh-pub", true).await;
    for i in 0..30u16 {
        assert_eq!(pub_simple(&mut p, topic, Q1, i + 1, i.to_string().as_bytes(), false).await, 0);
    }
    let mut out = Vec::new();
    for m in members.iter_mut() {
        let got = drain_publishes(m, IDLE, MAX).await;
        assert!(got.iter().all(|p| p.topic == topic), "shared delivery carries the real topic: {got:?}");
        out.push(got.iter().map(|p| text(&p.payload).parse::<u32>().expect("seq")).collect());
    }
    out
}

fn assert_each_once(per_member: &[Vec<u32>]) {
    let mut all: Vec<u32> = per_member.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..30).collect::<Vec<_>>(), "each message exactly once across the group: {per_member:?}");
}

#[tokio::test]
async fn shared_subscription_round_robin() {
    let r = shared_round("", "$share/g/sh/t", "sh/t").await;
    assert_each_once(&r);
    assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 10], "round robin: {r:?}");
    for m in &r {
        assert!(m.windows(2).all(|w| w[1] == w[0] + 3), "round robin takes turns: {r:?}");
    }
}

#[tokio::test]
async fn shared_subscription_sticky() {
    let r = shared_round("[shared_subscription]\nstrategy = \"sticky\"\n", "$share/g/sh/t", "sh/t").await;
    assert_each_once(&r);
    let mut lens: Vec<usize> = r.iter().map(Vec::len).collect();
    lens.sort_unstable();
    assert_eq!(lens, [0, 0, 30], "sticky: one member gets everything: {r:?}");
}

#[tokio::test]
async fn shared_subscription_random() {
    let r = shared_round("[shared_subscription]\nstrategy = \"random\"\n", "$share/g/sh/t", "sh/t").await;
    assert_each_once(&r);
    // All 30 to one member has probability 3^-29.
    assert!(r.iter().filter(|m| !m.is_empty()).count() >= 2, "random picked one member 30 times: {r:?}");
}

#[tokio::test]
async fn queue_prefix_is_one_shared_group() {
    let r = shared_round("", "$queue/qt", "qt").await;
    assert_each_once(&r);
    assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 10], "$queue round robin: {r:?}");
}

#[tokio::test]
async fn plain_and_shared_subscription_on_one_client_get_two_copies() {
    let b = Broker::start("");
    for (id, v5) in [("ps3", false), ("ps5", true)] {
        let mut s = if v5 {
            open_v5(b.addr, id, true, Properties::default()).await.0
        } else {
            open_v3(b.addr, id, true).await.0
        };
        let t = format!("{id}/t");
        let shared = format!("$share/g/{t}");
        subscribe(&mut s, 1, &[(t.as_str(), Q1), (shared.as_str(), Q1)]).await;
        let (mut p, _) = open_v3(b.addr, &format!("{id}-pub"), true).await;
        pub_simple(&mut p, &t, Q1, 1, b"x", false).await;
        let got = drain_publishes(&mut s, IDLE, MAX).await;
        assert_eq!(got.len(), 2, "{id}: plain + shared must give two copies: {got:?}");
        disconnect(s).await;
    }
}

// ---------------------------------------------------------------------------
// v5 subscription options

fn o(qos: QoS, no_local: bool, rap: bool, rh: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions { qos, no_local, retain_as_published: rap, retain_handling: rh }
}

#[tokio::test]
async fn no_local_v5() {
    let b = Broker::start("");
    let (mut a, _) = open_v5(b.addr, "nl-a", true, Properties::default()).await;
    let ack =
        subscribe_with(&mut a, 1, &[("nl/t", o(Q1, true, false, RetainHandling::OnSubscribe))], Properties::default())
            .await;
    assert_eq!(ack.return_codes, [1]);
    let (mut c, _) = open_v5(b.addr, "nl-c", true, Properties::default()).await;
    subscribe(&mut c, 1, &[("nl/t", Q1)]).await;

    // A's own publish: not echoed to A, delivered to C.
    pub_simple(&mut a, "nl/t", Q1, 10, b"from-a", false).await;
    let got = drain_publishes(&mut c, IDLE, MAX).await;
    assert_eq!(got.iter().map(|p| text(&p.payload)).collect::<Vec<_>>(), ["from-a"]);
    // C's publish reaches A.
    pub_simple(&mut c, "nl/t", Q1, 11, b"from-c", false).await;
    let got = drain_publishes(&mut a, IDLE, MAX).await;
    assert_eq!(got.iter().map(|p| text(&p.payload)).collect::<Vec<_>>(), ["from-c"], "A must get only C's message");
}

#[tokio::test]
async fn retain_as_published_v5() {
    let b = Broker::start("");
    let (mut rap, _) = open_v5(b.addr, "rap", true, Properties::default()).await;
    subscribe_with(&mut rap, 1, &[("rap/#", o(Q1, false, true, RetainHandling::OnSubscribe))], Properties::default())
        .await;
    let (mut plain, _) = open_v5(b.addr, "plain", true, Properties::default()).await;
    subscribe(&mut plain, 1, &[("rap/#", Q1)]).await;
    let (mut p, _) = open_v3(b.addr, "rap-pub", true).await;
    pub_simple(&mut p, "rap/t", Q1, 1, b"kept", true).await;
    pub_simple(&mut p, "rap/t", Q1, 2, b"not-retained", false).await;

    let got = drain_publishes(&mut rap, IDLE, MAX).await;
    let flags: Vec<(String, bool)> = got.iter().map(|p| (text(&p.payload), p.retain)).collect();
    assert_eq!(flags, [("kept".to_string(), true), ("not-retained".to_string(), false)], "retain as published");
    let got = drain_publishes(&mut plain, IDLE, MAX).await;
    let flags: Vec<(String, bool)> = got.iter().map(|p| (text(&p.payload), p.retain)).collect();
    assert_eq!(flags, [("kept".to_string(), false), ("not-retained".to_string(), false)], "without RAP");
}

#[tokio::test]
async fn retain_handling_v5() {
    let b = Broker::start("");
    let (mut p, _) = open_v3(b.addr, "rh-pub", true).await;
    pub_simple(&mut p, "rh/t", Q1, 1, b"stored", true).await;

    let mut counts = BTreeMap::new();
    for (name, rh) in
        [("rh0", RetainHandling::OnSubscribe), ("rh1", RetainHandling::OnNewSubscribe), ("rh2", RetainHandling::Never)]
    {
        let (mut s, _) = open_v5(b.addr, name, true, Properties::default()).await;
        let mut per = Vec::new();
        for pid in 1..=2u16 {
            // Subscribing twice: the second SUBSCRIBE replaces the first.
            let ack = subscribe_with(&mut s, pid, &[("rh/t", o(Q1, false, false, rh))], Properties::default()).await;
            assert_eq!(ack.return_codes, [1]);
            let got = drain_publishes(&mut s, IDLE, MAX).await;
            assert!(got.iter().all(|p| p.retain && text(&p.payload) == "stored"), "{name}: {got:?}");
            per.push(got.len());
        }
        counts.insert(name, per);
    }
    assert_eq!(counts["rh0"], [1, 1], "retain handling 0: on every subscribe");
    assert_eq!(counts["rh1"], [1, 0], "retain handling 1: only for a new subscription");
    assert_eq!(counts["rh2"], [0, 0], "retain handling 2: never");
}

// ---------------------------------------------------------------------------
// $SYS

#[tokio::test]
async fn sys_periodic_topics() {
    let b = Broker::start("[node]\nname = \"nodeA\"\n[sys]\ninterval = \"1s\"\n");
    let (mut s, _) = open_v3(b.addr, "sys", true).await;
    subscribe(&mut s, 1, &[("$SYS/#", Q0)]).await;
    let got = collect(&mut s, Duration::from_millis(2500)).await;
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut live = BTreeSet::new();
    for p in got {
        if let Packet::Publish(p) = p {
            if !p.retain {
                live.insert(p.topic.clone());
            }
            latest.insert(p.topic, text(&p.payload));
        }
    }
    let base = "$SYS/brokers/nodeA";
    for t in ["version", "uptime", "stats/clients/count", "metrics/packets/received"] {
        let topic = format!("{base}/{t}");
        assert!(live.contains(&topic), "{topic} not published periodically; got {:?}", latest.keys());
    }
    assert_eq!(latest[&format!("{base}/version")], portcullis_core::broker::VERSION);
    assert_eq!(latest[&format!("{base}/stats/clients/count")], "1", "one client connected");
    assert!(latest[&format!("{base}/uptime")].ends_with("seconds"), "{}", latest[&format!("{base}/uptime")]);
    let received: u64 = latest[&format!("{base}/metrics/packets/received")].parse().expect("number");
    assert!(received >= 2, "CONNECT and SUBSCRIBE were received: {received}");
}

#[tokio::test]
async fn sys_presence_events() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "watch", true).await;
    subscribe(&mut s, 1, &[("$SYS/brokers/+/clients/#", Q0)]).await;
    let (mut all, _) = open_v3(b.addr, "all", true).await;
    subscribe(&mut all, 1, &[("#", Q0)]).await;

    let (c, _) = open_v3(b.addr, "visitor", true).await;
    disconnect(c).await;
    let mut visitor = Vec::new();
    while visitor.len() < 2 {
        let p = next_publish(&mut s).await;
        if p.topic.contains("/visitor/") {
            visitor.push(p);
        }
    }
    let (con, dis) = (visitor.remove(0), visitor.remove(0));
    assert_eq!(con.topic, "$SYS/brokers/portcullis@127.0.0.1/clients/visitor/connected");
    assert_eq!(dis.topic, "$SYS/brokers/portcullis@127.0.0.1/clients/visitor/disconnected");
    let cj: serde_json::Value = serde_json::from_slice(&con.payload).expect("connected JSON");
    let dj: serde_json::Value = serde_json::from_slice(&dis.payload).expect("disconnected JSON");
    assert_eq!(cj["clientid"], "visitor");
    assert_eq!(cj["proto_ver"], 4);
    assert_eq!(cj["clean_start"], true);
    assert_eq!(dj["clientid"], "visitor");
    assert!(dj["reason"].is_string(), "{dj}");
    assert!(!con.retain && !dis.retain, "presence events are not retained");
    expect_silence(&mut all, Duration::from_millis(300), "# received a $SYS presence event").await;
}

#[tokio::test]
async fn client_cannot_publish_to_sys() {
    let b = Broker::start("");
    let (mut s, _) = open_v3(b.addr, "watch", true).await;
    subscribe(&mut s, 1, &[("$SYS/x", Q0), ("$SYS/#", Q0)]).await;
    let _ = collect(&mut s, Duration::from_millis(300)).await; // retained $SYS values
    let (mut p, _) = open_v3(b.addr, "forger", true).await;
    pub_simple(&mut p, "$SYS/x", Q1, 1, b"fake", false).await;
    pub_simple(&mut p, "$SYS/x", Q0, 0, b"fake0", false).await;
    let got = collect(&mut s, Duration::from_millis(500)).await;
    assert!(
        !got.iter().any(|p| matches!(p, Packet::Publish(p) if p.topic == "$SYS/x")),
        "a client's $SYS publish was delivered: {got:?}"
    );
    // v5 publisher: refused with Not Authorized.
    let (mut p5, _) = open_v5(b.addr, "forger5", true, Properties::default()).await;
    assert_eq!(pub_simple(&mut p5, "$SYS/x", Q1, 1, b"fake", false).await, 0x87);
}
