//! Prometheus output of a running node, end to end in one process: a real
//! [`Node`] on `127.0.0.1:0`, real MQTT clients over TCP, and
//! [`portcullis::metrics::render`] (what the admin API serves) parsed by
//! the Prometheus project's own text-format parser (the Python
//! `prometheus_client` package, `prometheus_client.parser`).
//!
//! * scrapes taken while clients connect all parse, and counters never go
//!   back;
//! * the deltas are exact: N clients are N connections, N auth provider
//!   calls, N CONNECTs and CONNACKs, N subscriptions and topics;
//! * the series are bounded: clients, users and topics add values, never
//!   series;
//! * `$SYS` carries the same numbers as Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis::metrics::{render, render_scrape, CONTENT_TYPE};
use portcullis::{Config, Node};
use portcullis_auth::hash::NewHash;
use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_core::metrics::{Kind, Value};
use portcullis_tests::backend::connect_bytes;
use portcullis_tests::kit::{pub_simple, subscribe};
use portcullis_tests::Raw;

/// Clients connected by the delta test.
const CLIENTS: usize = 20;

/// Parses each document with `prometheus_client.parser` and prints, per
/// document, its families: name, type, help and samples.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for text in json.load(sys.stdin):
    out.append([
        {"name": f.name, "type": f.type, "help": f.documentation,
         "samples": [[s.name, s.labels, s.value] for s in f.samples]}
        for f in text_string_to_metric_families(text)
    ])
json.dump(out, sys.stdout)
"#;

/// A Python interpreter that has the `prometheus_client` package:
/// `$PORTCULLIS_PYTHON`, else `python3`, else `/usr/bin/python3`. A test
/// without one fails: the check is the point.
fn python() -> String {
    let candidates: Vec<String> = std::env::var("PORTCULLIS_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()])
        .collect();
    for py in &candidates {
        let ok = std::process::Command::new(py)
            .args(["-c", "import prometheus_client.parser"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return py.clone();
        }
    }
    panic!(
        "no Python with prometheus_client among {candidates:?}: \
         apt-get install python3-prometheus-client, or pip install prometheus-client"
    );
}

/// One family as the official parser read it.
#[derive(Debug, serde::Deserialize)]
struct Parsed {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    help: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Every document through the official parser (one Python run for all).
fn parse(texts: &[String]) -> Vec<Vec<Parsed>> {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    let input = serde_json::to_vec(texts).expect("json");
    child.stdin.take().expect("stdin").write_all(&input).expect("write to python");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "the parser refused the output: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// `name{k="v",…}` → value, for every sample of a parsed document.
fn samples(doc: &[Parsed]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in doc {
        for (name, labels, value) in &f.samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let key = format!("{name}{{{}}}", labels.join(","));
            assert!(out.insert(key.clone(), *value).is_none(), "{key} twice");
        }
    }
    out
}

/// One histogram series: its `(le, cumulative count)` buckets and its count.
type Series = (Vec<(f64, f64)>, Option<f64>);

/// What the text format requires beyond the parser's leniency: families
/// named once, each with a help text and a known type, counters never
/// below zero, histograms with cumulative buckets ending in `+Inf` equal
/// to their count.
fn check_shape(doc: &[Parsed]) {
    let mut names = BTreeSet::new();
    for f in doc {
        assert!(names.insert(&f.name), "family {} twice", f.name);
        assert!(f.name.starts_with("portcullis_"), "{}", f.name);
        assert!(!f.help.is_empty(), "{} has no help", f.name);
        assert!(["counter", "gauge", "histogram"].contains(&f.kind.as_str()), "{}: {}", f.name, f.kind);
        assert!(!f.samples.is_empty(), "{} has no sample", f.name);
        for (_, _, v) in &f.samples {
            assert!(*v >= 0.0 && v.is_finite(), "{}: {v}", f.name);
        }
        if f.kind != "histogram" {
            continue;
        }
        // Per series (labels without `le`): buckets ascending, +Inf = count.
        let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
        for (name, labels, v) in &f.samples {
            let key: Vec<(String, String)> =
                labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
            let e = series.entry(key).or_default();
            if name.ends_with("_bucket") {
                let le = &labels["le"];
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le") };
                e.0.push((bound, *v));
            } else if name.ends_with("_count") {
                e.1 = Some(*v);
            }
        }
        for (labels, (buckets, count)) in series {
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{} {labels:?}", f.name);
            assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY), "{} {labels:?}", f.name);
            assert_eq!(buckets.last().map(|b| b.1), count, "{} {labels:?}: +Inf bucket and count", f.name);
        }
    }
}

/// A node with a password file (users `u0`… with password `pw-<i>`), an
/// ACL file that allows everything, one TCP listener on a free port, and
/// no periodic `$SYS` (the tests publish it themselves).
async fn start(dir: &Path, users: usize) -> (Arc<Node>, SocketAddr) {
    let passwd = dir.join("passwd");
    for i in 0..users {
        portcullis_auth::passwd::set_password(
            &passwd,
            &format!("u{i}"),
            format!("pw-{i}").as_bytes(),
            NewHash::Pbkdf2Sha512,
        )
        .expect("password file");
    }
    let acl = dir.join("acl.toml");
    std::fs::write(&acl, "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n").expect("acl");
    let text = format!(
        "[sys]\ninterval = \"off\"\n\
         [[listeners]]\nname = \"main\"\ntype = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [auth]\nchain = [\"pw\"]\n[auth.password_file.pw]\npath = {:?}\n\
         [acl]\nchain = [\"rules\"]\n[acl.file.rules]\npath = {:?}\n\
         [persistence]\ndir = {:?}\n",
        passwd.to_str().expect("utf-8"),
        acl.to_str().expect("utf-8"),
        // The default store (strict, ./data) is per test: never the
        // crate's directory, shared by tests running at once.
        dir.join("data").to_str().expect("utf-8"),
    );
    let cfg = Config::from_str(&text, "metrics-test").expect("config");
    let node = Node::start(cfg, None).await.expect("node starts");
    let addr = node.listeners.local_addrs().first().map(|(_, a)| *a).expect("listening");
    (node, addr)
}

/// CONNECT as `user` with `password`; the CONNACK code.
async fn login(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> (Raw, u8) {
    let mut raw = Raw::connect(addr).await;
    raw.send(&connect_bytes(ProtocolVersion::V311, client_id, Some(user), Some(password))).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => (raw, a.code),
        other => panic!("{client_id}: expected CONNACK, got {other:?}"),
    }
}

/// `name{k="v",…}` with the labels sorted, as [`samples`] keys them.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

/// Waits (bounded) until the registry shows `want` open connections on
/// the node and its listener: a refused client's socket closes a moment
/// after its CONNACK.
async fn until_open(node: &Node, want: u64) {
    for _ in 0..200 {
        let s = node.broker.scrape();
        let n = |f: &str, l: &[&str]| s.value(f, l).map(portcullis_core::metrics::Value::number);
        if n("connections", &[]) == Some(want) && n("listener_connections", &["main"]) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("connections never settled at {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_parse_and_move_by_exactly_what_clients_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, addr) = start(dir.path(), CLIENTS).await;
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    let before = render(&node);

    // Scrapes taken while the clients connect: at most 50, one every 2 ms.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let scraper = {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let mut texts = Vec::new();
            while texts.len() < 50 && stopped.try_recv().is_err() {
                texts.push(render(&node));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            texts
        })
    };
    let logins: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(async move { login(addr, &format!("dev-{i}"), &format!("u{i}"), &format!("pw-{i}")).await })
        })
        .collect();
    let mut clients = Vec::new();
    for (i, l) in logins.into_iter().enumerate() {
        let (mut raw, code) = l.await.expect("login task");
        assert_eq!(code, 0, "u{i} refused");
        // A topic of its own each: topics are values, never labels.
        subscribe(&mut raw, 1, &[(&format!("dev/{i}/cmd"), QoS::AtLeastOnce)]).await;
        clients.push(raw);
    }
    let (_refused, code) = login(addr, "intruder", "u0", "wrong").await;
    assert_eq!(code, 4, "bad username or password");
    let _ = stop.send(());
    let during = scraper.await.expect("scraper");
    until_open(&node, CLIENTS as u64).await;
    let after = render(&node);

    let scrapes = during.len();
    let mut texts = vec![before];
    texts.extend(during);
    texts.push(after);
    let docs = parse(&texts);
    for d in &docs {
        check_shape(d);
    }
    let all: Vec<BTreeMap<String, f64>> = docs.iter().map(|d| samples(d)).collect();
    let (before, after) = (&all[0], &all[all.len() - 1]);

    // Counters never go back, through the scrapes taken while clients
    // connected.
    let counter_samples: Vec<String> = docs[0]
        .iter()
        .filter(|f| f.kind == "counter" || f.kind == "histogram")
        .flat_map(|f| &f.samples)
        .map(|(n, l, _)| key(n, &l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()))
        .collect();
    assert!(counter_samples.len() > 50, "{counter_samples:?}");
    for k in &counter_samples {
        for w in all.windows(2) {
            assert!(w[0][k] <= w[1][k], "{k} went back: {} -> {}", w[0][k], w[1][k]);
        }
    }

    // Bounded: the same series before and after 21 clients, 20 users and
    // 20 topics.
    let series = |m: &BTreeMap<String, f64>| m.keys().cloned().collect::<BTreeSet<_>>();
    let (b, a) = (series(before), series(after));
    let (gone, new): (Vec<_>, Vec<_>) = (b.difference(&a).collect(), a.difference(&b).collect());
    assert!(gone.is_empty() && new.is_empty(), "clients, users or topics became series: gone {gone:?}, new {new:?}");
    for k in series(after) {
        for bad in ["dev-", "dev/", "intruder", "\"u1"] {
            assert!(!k.contains(bad), "{k}");
        }
    }

    let n = CLIENTS as f64;
    let pw = [("chain", "default"), ("provider", "pw")];
    let outcome = |o| key("portcullis_auth_provider_outcomes_total", &[pw[0], pw[1], ("outcome", o)]);
    for (k, want) in [
        (key("portcullis_connections", &[]), n),
        (key("portcullis_listener_connections", &[("listener", "main")]), n),
        (key("portcullis_auth_provider_calls_total", &pw), n + 1.0),
        (outcome("allow"), n),
        (outcome("deny"), 1.0),
        (outcome("ignore"), 0.0),
        (outcome("error"), 0.0),
        (outcome("timeout"), 0.0),
        (key("portcullis_auth_provider_latency_seconds_count", &pw), n + 1.0),
        (key("portcullis_auth_provider_latency_seconds_bucket", &[pw[0], pw[1], ("le", "+Inf")]), n + 1.0),
        (key("portcullis_auth_cache_misses_total", &[]), n + 1.0),
        (key("portcullis_connects_refused_total", &[]), 1.0),
        (key("portcullis_packets_received_total", &[("type", "connect")]), n + 1.0),
        (key("portcullis_packets_sent_total", &[("type", "connack")]), n + 1.0),
        (key("portcullis_packets_received_total", &[("type", "subscribe")]), n),
        (key("portcullis_packets_sent_total", &[("type", "suback")]), n),
        (key("portcullis_subscriptions", &[]), n),
        (key("portcullis_topics", &[]), n),
        (key("portcullis_sessions", &[]), n),
    ] {
        let (b, a) = (before.get(&k), after.get(&k));
        assert_eq!(a.zip(b).map(|(a, b)| a - b), Some(want), "{k}: {b:?} -> {a:?}");
    }
    assert!(scrapes >= 1, "no scrape taken while clients connected");
    for c in clients {
        portcullis_tests::kit::disconnect(c).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_carries_the_same_numbers_as_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, addr) = start(dir.path(), 4).await;
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let (mut raw, code) = login(addr, &format!("c{i}"), &format!("u{i}"), &format!("pw-{i}")).await;
        assert_eq!(code, 0);
        subscribe(&mut raw, 1, &[("t/#", QoS::AtLeastOnce)]).await;
        subscribers.push(raw);
    }
    let (mut publisher, code) = login(addr, "p", "u3", "pw-3").await;
    assert_eq!(code, 0);
    assert_eq!(pub_simple(&mut publisher, "t/x", QoS::AtLeastOnce, 7, b"hello", true).await, 0);
    for s in &mut subscribers {
        match s.recv().await {
            Some(Packet::Publish(p)) => portcullis_tests::kit::ack_incoming(s, &p).await,
            other => panic!("expected the PUBLISH, got {other:?}"),
        }
        portcullis_tests::kit::sync(s).await;
    }
    let (_bad, code) = login(addr, "x", "nobody", "pw").await;
    assert_eq!(code, 4);
    until_open(&node, 4).await;
    // $SYS twice first, so that its own retained messages are counted the
    // same in the scrape and in what $SYS then publishes.
    portcullis_core::sys::publish_all(&node.broker);
    portcullis_core::sys::publish_all(&node.broker);
    let scrape = node.broker.scrape();
    portcullis_core::sys::publish_all(&node.broker);
    let prom = samples(&parse(&[render_scrape(scrape.clone())]).remove(0));
    let sys = |topic: &str| -> f64 {
        let full = format!("$SYS/brokers/{}/{topic}", node.broker.settings.node_name);
        let m = node.broker.retained.get(&full).unwrap_or_else(|| panic!("{full} not retained"));
        std::str::from_utf8(&m.payload).expect("utf-8").parse().expect("a number")
    };
    let get = |k: &str| prom.get(k).copied().unwrap_or_else(|| panic!("{k} not in {:?}", prom.keys()));

    // Named pairs, written out.
    let pw = [("chain", "default"), ("provider", "pw")];
    for (topic, k) in [
        ("stats/clients/count", key("portcullis_connections", &[])),
        ("stats/sessions/count", key("portcullis_sessions", &[])),
        ("stats/subscriptions/count", key("portcullis_subscriptions", &[])),
        ("stats/topics/count", key("portcullis_topics", &[])),
        ("stats/retained/count", key("portcullis_retained", &[])),
        ("metrics/bytes/received", key("portcullis_bytes_received_total", &[])),
        ("metrics/bytes/sent", key("portcullis_bytes_sent_total", &[])),
        ("metrics/packets/connect/received", key("portcullis_packets_received_total", &[("type", "connect")])),
        ("metrics/packets/puback/received", key("portcullis_packets_received_total", &[("type", "puback")])),
        ("metrics/messages/qos1/received", key("portcullis_messages_received_total", &[("qos", "1")])),
        ("metrics/messages/qos1/sent", key("portcullis_messages_sent_total", &[("qos", "1")])),
        ("metrics/messages/retained", key("portcullis_messages_retained_total", &[])),
        ("metrics/connects/refused", key("portcullis_connects_refused_total", &[])),
        ("listeners/main/connections", key("portcullis_listener_connections", &[("listener", "main")])),
        ("auth/default/pw/calls", key("portcullis_auth_provider_calls_total", &pw)),
        (
            "auth/default/pw/ignore",
            key("portcullis_auth_provider_outcomes_total", &[pw[0], pw[1], ("outcome", "ignore")]),
        ),
        (
            "acl/default/rules/calls",
            key("portcullis_acl_provider_calls_total", &[("chain", "default"), ("provider", "rules")]),
        ),
        ("auth/cache/misses", key("portcullis_auth_cache_misses_total", &[])),
        ("auth/guard/tracked", key("portcullis_guard_tracked", &[])),
    ] {
        assert_eq!(sys(topic), get(&k), "{topic} vs {k}");
    }
    assert_eq!(sys("auth/default/pw/calls"), 5.0, "four logins and a stranger");
    assert_eq!(sys("metrics/messages/qos1/sent"), 3.0);

    // Then every value of the scrape that has a $SYS topic, through the
    // official parser: each family's `$SYS` topic names its sample.
    let mut compared = 0;
    for f in scrape.families() {
        let fam = f.family;
        let Some(template) = fam.sys else { continue };
        if fam.name.ends_with("_entries") {
            continue; // a cache's approximate size moves on its own
        }
        for s in &f.samples {
            let mut topic = template.to_string();
            for (name, value) in fam.labels.iter().zip(&s.labels) {
                topic = topic.replace(&format!("{{{name}}}"), value);
            }
            let labels: Vec<(&str, &str)> =
                fam.labels.iter().copied().zip(s.labels.iter().map(String::as_str)).collect();
            let name = format!("portcullis_{}", fam.name);
            match (fam.kind, &s.value) {
                (Kind::Histogram(b), Value::Histogram(_)) => {
                    let k = key(&format!("{name}_count"), &labels);
                    let buckets = b.bounds.iter().map(|b| format!("{topic}_le_{b}")).chain([format!("{topic}_le_inf")]);
                    let in_sys: f64 = buckets.map(|t| sys(&t)).sum();
                    assert_eq!(in_sys, get(&k), "{topic} vs {k}");
                    let sum = key(&format!("{name}_sum"), &labels);
                    assert_eq!(sys(&format!("{topic}_sum")) / 1e6, get(&sum), "{topic}_sum vs {sum}");
                }
                (Kind::Counter, _) => {
                    let k = key(&format!("{name}_total"), &labels);
                    assert_eq!(sys(&topic), get(&k), "{topic} vs {k}");
                }
                _ => {
                    let k = key(&name, &labels);
                    assert_eq!(sys(&topic), get(&k), "{topic} vs {k}");
                }
            }
            compared += 1;
        }
    }
    assert!(compared > 80, "only {compared} values compared");
    for c in subscribers {
        portcullis_tests::kit::disconnect(c).await;
    }
    node.shutdown().await;
}
