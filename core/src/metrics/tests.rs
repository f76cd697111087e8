//! The registry: `$SYS` rendering (templates, totals, histograms), label
//! bounds, the broker's families against the `$SYS` topics emqttd's
//! layout had before the registry, and modules' metrics coming and going
//! with their hook set.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::registry::expand;
use super::*;
use crate::broker::Broker;
use crate::codec::QoS;
use crate::hooks::{HookSetBuilder, Module};

/// The broker's own `$SYS` metric topics (under `$SYS/brokers/<node>/`)
/// as the code before the registry published them, taken from a running
/// broker: the registry must publish exactly these.
const CORE_SYS_TOPICS: [&str; 70] = [
    "metrics/bytes/received",
    "metrics/bytes/sent",
    "metrics/connects/refused",
    "metrics/connects/refused_handshake_memory",
    "metrics/connects/refused_per_ip",
    "metrics/messages/backpressure_waits",
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
];

static PLAIN: Family =
    Family { name: "plain", help: "A gauge.", kind: Kind::Gauge, labels: &[], sys: Some("x/plain"), sys_total: None };
static BY_QOS: Family = Family {
    name: "by_qos",
    help: "A counter per QoS.",
    kind: Kind::Counter,
    labels: &["qos"],
    sys: Some("m/qos{qos}/in"),
    sys_total: Some("m/in"),
};
static LATENCY: Family = Family {
    name: "latency_seconds",
    help: "A histogram.",
    kind: Kind::Histogram(Buckets { bounds: &[10, 100], per_base_unit: 1_000_000 }),
    labels: &["chain", "provider"],
    sys: Some("auth/{chain}/{provider}/latency_us"),
    sys_total: None,
};
static PROMETHEUS_ONLY: Family =
    Family { name: "hidden", help: "Not in $SYS.", kind: Kind::Gauge, labels: &[], sys: None, sys_total: None };

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn templates_take_label_values() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        expand("auth/{chain}/{provider}/calls", &["chain", "provider"], &v(&["default", "pw"])),
        "auth/default/pw/calls"
    );
    assert_eq!(expand("a/{x}{x}/b", &["x"], &v(&["1"])), "a/11/b");
    assert_eq!(expand("plain", &[], &[]), "plain");
    assert_eq!(expand("a/{nope}", &["x"], &v(&["1"])), "a/{nope}", "an unknown name is left as it is");
}

#[test]
fn sys_values_render_samples_totals_and_histograms() {
    let mut s = Scrape::new();
    s.add(&PLAIN, &[], 7);
    for (q, n) in [("0", 1), ("1", 2), ("2", 4)] {
        s.add(&BY_QOS, &[q], n);
    }
    s.add_histogram(&LATENCY, &["default", "pw"], vec![3, 2, 1], 1234);
    s.add(&PROMETHEUS_ONLY, &[], 9);
    assert_eq!(
        s.sys_values(),
        pairs(&[
            ("x/plain", "7"),
            ("m/in", "7"),
            ("m/qos0/in", "1"),
            ("m/qos1/in", "2"),
            ("m/qos2/in", "4"),
            ("auth/default/pw/latency_us_sum", "1234"),
            ("auth/default/pw/latency_us_le_10", "3"),
            ("auth/default/pw/latency_us_le_100", "2"),
            ("auth/default/pw/latency_us_le_inf", "1"),
        ])
    );
    assert_eq!(s.value("by_qos", &["1"]), Some(&Value::Number(2)));
    assert_eq!(s.value("latency_seconds", &["default", "pw"]).map(Value::number), Some(6));
    assert_eq!(s.value("hidden", &[]), Some(&Value::Number(9)), "in the registry, not in $SYS");
    assert_eq!(s.value("by_qos", &["3"]), None);
}

#[test]
fn samples_of_one_family_stay_together() {
    let mut s = Scrape::new();
    s.add(&BY_QOS, &["0"], 1);
    s.add(&PLAIN, &[], 1);
    s.add(&BY_QOS, &["1"], 1);
    let names: Vec<&str> = s.families().iter().map(|f| f.family.name).collect();
    assert_eq!(names, ["by_qos", "plain"]);
    assert_eq!(s.family("by_qos").map(|f| f.samples.len()), Some(2));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "labels")]
fn a_sample_with_the_wrong_labels_is_a_bug() {
    Scrape::new().add(&BY_QOS, &[], 1);
}

#[test]
fn unbounded_labels_and_bad_names_are_refused() {
    let f = |name: &'static str, kind: Kind, labels: &'static [&'static str], sys: Option<&'static str>| Family {
        name,
        help: "h",
        kind,
        labels,
        sys,
        sys_total: None,
    };
    assert_eq!(f("ok", Kind::Gauge, &["listener"], Some("l/{listener}")).validate(), Ok(()));
    for bad in [
        f("per_client", Kind::Gauge, &["client_id"], None),
        f("per_topic", Kind::Counter, &["topic"], None),
        f("per_user", Kind::Counter, &["username"], None),
        f("Upper", Kind::Gauge, &[], None),
        f("x_total", Kind::Counter, &[], None),
        f("dup", Kind::Gauge, &["a", "a"], None),
        f("le", Kind::Gauge, &["le"], None),
        f("tpl", Kind::Gauge, &["a"], Some("x/{b}")),
        f("h", Kind::Histogram(Buckets { bounds: &[5, 1], per_base_unit: 1 }), &[], None),
    ] {
        assert!(bad.validate().is_err(), "{} accepted", bad.name);
    }
}

#[test]
fn the_broker_publishes_exactly_the_topics_it_did_before() {
    let broker = Broker::new(Default::default());
    let sys = broker.scrape().sys_values();
    let topics: Vec<&str> = sys.iter().map(|(t, _)| t.as_str()).collect();
    let unique: BTreeSet<&str> = topics.iter().copied().collect();
    assert_eq!(unique.len(), topics.len(), "a topic twice: {topics:?}");
    assert_eq!(unique, CORE_SYS_TOPICS.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn broker_families_are_valid_and_bounded() {
    let broker = Broker::new(Default::default());
    let scrape = broker.scrape();
    let mut names = BTreeSet::new();
    for f in scrape.families() {
        assert_eq!(f.family.validate(), Ok(()));
        assert!(names.insert(f.family.name), "{} twice", f.family.name);
        for s in &f.samples {
            assert_eq!(s.labels.len(), f.family.labels.len(), "{}", f.family.name);
        }
    }
    // Closed sets: 15 packet types, 3 QoS, every drop reason.
    assert_eq!(scrape.family("packets_received").map(|f| f.samples.len()), Some(15));
    assert_eq!(scrape.family("messages_sent").map(|f| f.samples.len()), Some(3));
    assert_eq!(scrape.family("messages_dropped").map(|f| f.samples.len()), Some(DropReason::ALL.len()));
}

#[test]
fn sys_and_the_registry_read_the_same_counters() {
    let broker = Broker::new(Default::default());
    let m = &broker.metrics;
    m.packet_received(3, 100); // PUBLISH
    m.packet_received(3, 50);
    m.packet_sent(2, 4); // CONNACK
    m.message_received(QoS::AtLeastOnce);
    m.message_sent(QoS::ExactlyOnce);
    m.dropped_n(DropReason::QueueFull, 5);
    m.dropped(DropReason::Expired);
    m.connections.inc();
    m.connections.inc();
    m.connections.dec();
    m.connects_refused.fetch_add(4, Relaxed);
    let scrape = broker.scrape();
    let sys = scrape.sys_values();
    let get = |t: &str| sys.iter().find(|(k, _)| k == t).map(|(_, v)| v.parse::<u64>().expect("number"));
    let reg = |name: &str, labels: &[&str]| scrape.value(name, labels).map(Value::number);
    for (topic, family, labels, want) in [
        ("metrics/packets/publish/received", "packets_received", &["publish"][..], 2),
        ("metrics/packets/connack/sent", "packets_sent", &["connack"][..], 1),
        ("metrics/bytes/received", "bytes_received", &[][..], 150),
        ("metrics/bytes/sent", "bytes_sent", &[][..], 4),
        ("metrics/messages/qos1/received", "messages_received", &["1"][..], 1),
        ("metrics/messages/qos2/sent", "messages_sent", &["2"][..], 1),
        ("metrics/messages/dropped/queue_full", "messages_dropped", &["queue_full"][..], 5),
        ("metrics/messages/dropped/expired", "messages_dropped", &["expired"][..], 1),
        ("stats/clients/count", "connections", &[][..], 1),
        ("stats/clients/max", "connections_max", &[][..], 2),
        ("metrics/connects/refused", "connects_refused", &[][..], 4),
    ] {
        assert_eq!(get(topic), Some(want), "{topic}");
        assert_eq!(reg(family, labels), Some(want), "{family}{labels:?}");
    }
    assert_eq!(get("metrics/packets/received"), Some(2));
    assert_eq!(get("metrics/messages/dropped"), Some(6));
    assert_eq!(reg("build_info", &[crate::broker::VERSION]), Some(1));
}

/// A module's own metrics, registered with its hooks.
#[derive(Default)]
struct Counting {
    seen: AtomicU64,
}

static MODULE_SEEN: Family = Family {
    name: "counting_seen",
    help: "What the test module saw.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("counting/seen"),
    sys_total: None,
};

impl MetricSource for Counting {
    fn collect(&self, out: &mut Scrape) {
        out.add(&MODULE_SEEN, &[], self.seen.load(Relaxed));
    }
}

impl Module for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        hooks.metrics(self);
    }
}

#[test]
fn a_modules_metrics_come_and_go_with_its_hooks() {
    let broker = Broker::new(Default::default());
    let module = Arc::new(Counting::default());
    module.seen.store(3, Relaxed);
    let mut hooks = HookSetBuilder::new();
    hooks.module(module.clone());
    broker.hooks.install(hooks.build());
    let scrape = broker.scrape();
    assert_eq!(scrape.value("counting_seen", &[]), Some(&Value::Number(3)));
    assert!(scrape.sys_values().contains(&("counting/seen".to_string(), "3".to_string())));
    broker.hooks.install(HookSetBuilder::new().build());
    assert_eq!(broker.scrape().value("counting_seen", &[]), None, "gone with the module");
}
