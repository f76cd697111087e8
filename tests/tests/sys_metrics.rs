//! `$SYS` published from the metrics registry, through the real binary:
//! the same topics as before the registry (every one, for a broker with
//! two listeners, an auth provider and an ACL provider), each family's
//! total equal to the sum of its parts within one publication, and the
//! values following what clients do.
//!
//! The Prometheus rendering of the same registry is tested in process
//! (`server/tests/metrics.rs`) until the admin API serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use portcullis_core::codec::QoS;
use portcullis_tests::kit::{drain_publishes, open_v3, subscribe};
use portcullis_tests::{net, Raw};

/// Every `$SYS` topic (under `$SYS/brokers/<node>/`) the broker below
/// publishes, as the code before the registry published them (taken from
/// it with `mosquitto_sub -t '$SYS/#'`).
const TOPICS: [&str; 135] = [
    "metrics/messages/backpressure_waits",
    "modules/auto_subscribe/abandoned",
    "modules/auto_subscribe/denied",
    "modules/auto_subscribe/overloaded",
    "modules/auto_subscribe/refused",
    "modules/auto_subscribe/skipped",
    "modules/auto_subscribe/subscribed",
    "modules/rewrite/invalid",
    "modules/rewrite/publish",
    "modules/rewrite/subscribe",
    "modules/rewrite/unsubscribe",
    "acl/cache/hits",
    "acl/cache/misses",
    "acl/default/main/allow",
    "acl/default/main/calls",
    "acl/default/main/deny",
    "acl/default/main/error",
    "acl/default/main/ignore",
    "acl/default/main/latency_us_le_100",
    "acl/default/main/latency_us_le_1000",
    "acl/default/main/latency_us_le_10000",
    "acl/default/main/latency_us_le_100000",
    "acl/default/main/latency_us_le_1000000",
    "acl/default/main/latency_us_le_500",
    "acl/default/main/latency_us_le_5000",
    "acl/default/main/latency_us_le_50000",
    "acl/default/main/latency_us_le_inf",
    "acl/default/main/latency_us_sum",
    "acl/default/main/timeout",
    "auth/cache/bypassed",
    "auth/cache/entries",
    "auth/cache/hits",
    "auth/cache/misses",
    "auth/cache/stale_served",
    "auth/default/anon/allow",
    "auth/default/anon/calls",
    "auth/default/anon/deny",
    "auth/default/anon/error",
    "auth/default/anon/ignore",
    "auth/default/anon/latency_us_le_100",
    "auth/default/anon/latency_us_le_1000",
    "auth/default/anon/latency_us_le_10000",
    "auth/default/anon/latency_us_le_100000",
    "auth/default/anon/latency_us_le_1000000",
    "auth/default/anon/latency_us_le_500",
    "auth/default/anon/latency_us_le_5000",
    "auth/default/anon/latency_us_le_50000",
    "auth/default/anon/latency_us_le_inf",
    "auth/default/anon/latency_us_sum",
    "auth/default/anon/timeout",
    "auth/guard/active_bans",
    "auth/guard/bans_started",
    "auth/guard/in_flight",
    "auth/guard/refused",
    "auth/guard/throttled",
    "auth/guard/tracked",
    "datetime",
    "listeners/main/connections",
    "listeners/main/handshake_failures",
    "listeners/main/refused",
    "listeners/second/connections",
    "listeners/second/handshake_failures",
    "listeners/second/refused",
    "metrics/bytes/received",
    "metrics/bytes/sent",
    "metrics/connects/refused",
    "metrics/connects/refused_handshake_memory",
    "metrics/connects/refused_per_ip",
    "metrics/messages/dropped",
    "metrics/messages/dropped/await_rel_full",
    "metrics/messages/dropped/denied",
    "metrics/messages/dropped/expired",
    "metrics/messages/dropped/module",
    "metrics/messages/dropped/no_subscribers",
    "metrics/messages/dropped/qos0_offline",
    "metrics/messages/dropped/queue_full",
    "metrics/messages/dropped/retained_refused",
    "metrics/messages/dropped/too_large",
    "metrics/messages/qos0/received",
    "metrics/messages/qos0/sent",
    "metrics/messages/qos1/received",
    "metrics/messages/qos1/sent",
    "metrics/messages/qos2/received",
    "metrics/messages/qos2/sent",
    "metrics/messages/received",
    "metrics/messages/retained",
    "metrics/messages/sent",
    "metrics/messages/wills_store_failed",
    "metrics/packets/auth/received",
    "metrics/packets/auth/sent",
    "metrics/packets/connack/received",
    "metrics/packets/connack/sent",
    "metrics/packets/connect/received",
    "metrics/packets/connect/sent",
    "metrics/packets/disconnect/received",
    "metrics/packets/disconnect/sent",
    "metrics/packets/malformed",
    "metrics/packets/pingreq/received",
    "metrics/packets/pingreq/sent",
    "metrics/packets/pingresp/received",
    "metrics/packets/pingresp/sent",
    "metrics/packets/puback/received",
    "metrics/packets/puback/sent",
    "metrics/packets/pubcomp/received",
    "metrics/packets/pubcomp/sent",
    "metrics/packets/publish/received",
    "metrics/packets/publish/sent",
    "metrics/packets/pubrec/received",
    "metrics/packets/pubrec/sent",
    "metrics/packets/pubrel/received",
    "metrics/packets/pubrel/sent",
    "metrics/packets/received",
    "metrics/packets/sent",
    "metrics/packets/suback/received",
    "metrics/packets/suback/sent",
    "metrics/packets/subscribe/received",
    "metrics/packets/subscribe/sent",
    "metrics/packets/unsuback/received",
    "metrics/packets/unsuback/sent",
    "metrics/packets/unsubscribe/received",
    "metrics/packets/unsubscribe/sent",
    "stats/clients/count",
    "stats/clients/max",
    "stats/handshakes/bytes",
    "stats/retained/count",
    "stats/retained/max",
    "stats/sessions/count",
    "stats/sessions/max",
    "stats/subscriptions/count",
    "stats/subscriptions/max",
    "stats/topics/count",
    "stats/topics/max",
    "sysdescr",
    "uptime",
    "version",
];

/// Topic (relative to the node) → latest value, after the publications
/// arriving within `max` settle (a round is published at once, so after
/// a quiet spell the map holds one round).
async fn read_round(reader: &mut Raw, max: Duration) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in drain_publishes(reader, Duration::from_millis(300), max).await {
        let Some(rel) = p.topic.splitn(4, '/').nth(3) else { continue };
        if rel.starts_with("clients/") {
            continue; // presence events, not metrics
        }
        out.insert(rel.to_string(), String::from_utf8_lossy(&p.payload).into_owned());
    }
    out
}

fn number(m: &BTreeMap<String, String>, topic: &str) -> u64 {
    m.get(topic).unwrap_or_else(|| panic!("no {topic}")).parse().unwrap_or_else(|_| panic!("{topic}: {:?}", m[topic]))
}

/// The sum of every topic matching `prefix<x>suffix` with one level `x`.
fn sum_of(m: &BTreeMap<String, String>, prefix: &str, suffix: &str, skip: &[&str]) -> u64 {
    m.iter()
        .filter_map(|(t, v)| {
            let x = t.strip_prefix(prefix)?.strip_suffix(suffix)?;
            (!x.contains('/') && !skip.contains(&x)).then(|| v.parse::<u64>().expect("number"))
        })
        .sum()
}

#[tokio::test]
async fn sys_topics_are_unchanged_and_follow_the_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\", \"$SYS/#\"]\n")
        .expect("acl");
    let (_broker, addrs) = net::start(&format!(
        "[sys]\ninterval = \"1s\"\n\
         [[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"second\"\nbind = \"127.0.0.1:0\"\n\
         [auth]\nchain = [\"anon\"]\n[auth.anonymous.anon]\n\
         [acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n",
        acl.to_str().expect("utf-8")
    ));
    let (mut reader, _) = open_v3(addrs["main"], "sys-reader", true).await;
    subscribe(&mut reader, 1, &[("$SYS/brokers/+/#", QoS::AtMostOnce)]).await;
    let first = read_round(&mut reader, Duration::from_secs(3)).await;
    let got: BTreeSet<&str> = first.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = TOPICS.into_iter().collect();
    assert_eq!(got.difference(&want).collect::<Vec<_>>(), Vec::<&&str>::new(), "new topics");
    assert_eq!(want.difference(&got).collect::<Vec<_>>(), Vec::<&&str>::new(), "missing topics");

    // Five clients on the second listener, each subscribing once.
    let mut clients = Vec::new();
    for i in 0..5 {
        let (mut c, _) = open_v3(addrs["second"], &format!("c{i}"), true).await;
        subscribe(&mut c, 1, &[(&format!("c/{i}"), QoS::AtLeastOnce)]).await;
        clients.push(c);
    }
    // The next rounds (one a second) show them; bounded at 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = read_round(&mut reader, Duration::from_millis(1500)).await;
        if m.get("listeners/second/connections").map(String::as_str) == Some("5") && m.len() == TOPICS.len() {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "the clients never showed: {m:?}");
    };
    for (topic, want) in [
        ("stats/clients/count", 6),
        ("stats/sessions/count", 6),
        ("stats/subscriptions/count", 6),
        ("listeners/main/connections", 1),
        ("listeners/second/connections", 5),
        ("auth/default/anon/calls", 6),
        ("auth/default/anon/allow", 6),
        ("acl/default/main/calls", 6),
        ("metrics/packets/connect/received", 6),
        ("metrics/packets/subscribe/received", 6),
    ] {
        assert_eq!(number(&m, topic), want, "{topic}");
    }
    // Totals and their parts come from one scrape.
    assert_eq!(number(&m, "metrics/packets/received"), sum_of(&m, "metrics/packets/", "/received", &[]));
    assert_eq!(number(&m, "metrics/packets/sent"), sum_of(&m, "metrics/packets/", "/sent", &[]));
    assert_eq!(number(&m, "metrics/messages/dropped"), sum_of(&m, "metrics/messages/dropped/", "", &[]));
    assert_eq!(number(&m, "metrics/messages/sent"), sum_of(&m, "metrics/messages/", "/sent", &[]));
    let latency = sum_of(&m, "acl/default/main/latency_us_le_", "", &[]);
    assert_eq!(latency, number(&m, "acl/default/main/calls"), "one latency observation per call");
}
