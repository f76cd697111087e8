//! The auto-subscribe and topic rewrite modules through the real binary,
//! on 3.1.1 and 5.0: subscriptions a client never asked for (per client,
//! with their QoS and options, refused by the ACL where it says so),
//! rewritten PUBLISH topics and SUBSCRIBE / UNSUBSCRIBE filters (judged by
//! the ACL as rewritten, refused when the rewrite gives no valid topic),
//! both together, and both switched on and off by SIGHUP while a client
//! stays connected.
//!
//! Auto-subscriptions are made in a task after the CONNACK: a test knows
//! they are in place when a retained message of the last template arrives
//! (templates are taken in order). What a client must not get is published
//! before a message it must get, on the same path, so its absence is
//! proven without waiting.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, Unsubscribe};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const VERSIONS: [ProtocolVersion; 2] = [V3, V5];

/// Subscribing under `denied/` and publishing under `secret/` are refused;
/// everything else (and `$SYS`, for the counters) is allowed.
const ACL: &str = r##"
[[rule]]
permission = "deny"
action = "subscribe"
topics = ["denied/#"]

[[rule]]
permission = "deny"
action = "publish"
topics = ["secret/#"]

[[rule]]
permission = "allow"
action = "all"
topics = ["#", "$SYS/#"]
"##;

/// Listener, auth (any username from loopback), ACL, a 1 s `$SYS`
/// interval, then `modules`.
fn config(dir: &Path, modules: &str) -> String {
    let acl = dir.join("acl.toml");
    std::fs::write(&acl, ACL).expect("write acl");
    format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [sys]\ninterval = \"1s\"\n\
         [auth]\nchain = [\"lo\"]\n[auth.ip.lo]\nallow = [\"127.0.0.0/8\"]\n\
         [acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n\
         {modules}",
        acl.to_str().expect("utf-8 path")
    )
}

fn start(dir: &Path, modules: &str) -> Broker {
    Broker::start_with_config(&config(dir, modules))
}

fn sighup(b: &Broker) {
    let st = std::process::Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status().expect("kill");
    assert!(st.success());
}

/// Rewrites the config with `modules`, sends SIGHUP and waits for the
/// `n`th reload line.
async fn reload(b: &Broker, dir: &Path, modules: &str, n: usize) {
    std::fs::write(&b.config_path, config(dir, modules)).expect("write config");
    sighup(b);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while b.log().matches("reload: modules reloaded").count() < n {
        assert!(std::time::Instant::now() < end, "reload {n} not logged:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client (with this username, if any) that was admitted.
async fn client(addr: SocketAddr, v: ProtocolVersion, id: &str, username: Option<&str>) -> Raw {
    let mut c = connect_packet(v, id, true);
    c.username = username.map(str::to_string);
    let (raw, ack) = open(addr, c).await;
    assert_eq!(ack.code, 0, "{id} refused");
    raw
}

/// The PUBLISHes that arrive up to and including one on `last` (each
/// acknowledged, QoS 2 completed), within 5 s.
async fn until(raw: &mut Raw, last: &str) -> Vec<Publish> {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) => {
                ack_incoming(raw, &p).await;
                let done = p.topic == last;
                got.push(p);
                if done {
                    return got;
                }
            }
            Ok(Some(Packet::PubRel(r))) => raw.send_packet(&Packet::PubComp(PubResp::ok(r.packet_id))).await,
            Ok(Some(_)) => {}
            other => panic!("nothing on {last}: {other:?}; got {:?}", topics(&got)),
        }
    }
}

/// (topic, QoS, retain flag, payload) of each.
fn summary(got: &[Publish]) -> Vec<(String, QoS, bool, String)> {
    got.iter().map(|p| (p.topic.clone(), p.qos, p.retain, text(&p.payload))).collect()
}

fn topics(got: &[Publish]) -> Vec<String> {
    got.iter().map(|p| p.topic.clone()).collect()
}

/// Publishes and completes its flow (QoS 0: a PINGREQ round trip), so the
/// broker has routed it on return; asserts it was accepted (v5: below
/// 0x80, 0x10 meaning no subscriber). PUBLISHes that reach the publisher
/// meanwhile (auto-subscribe gives it subscriptions too) are acknowledged
/// and skipped.
async fn put(raw: &mut Raw, topic: &str, qos: QoS, payload: &str, retain: bool) {
    const ID: u16 = 7;
    let pid = (qos != Q0).then_some(ID);
    raw.send_packet(&Packet::Publish(publish(topic, qos, pid, payload.as_bytes(), retain))).await;
    if qos == Q0 {
        raw.send_packet(&Packet::PingReq).await;
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::PingResp)) if qos == Q0 => return,
            Ok(Some(Packet::PubAck(r))) if qos == Q1 && r.packet_id == ID => {
                assert!(r.reason < 0x80, "{topic}: {:#x}", r.reason);
                return;
            }
            Ok(Some(Packet::PubRec(r))) if qos == Q2 && r.packet_id == ID => {
                assert!(r.reason < 0x80, "{topic}: {:#x}", r.reason);
                raw.send_packet(&Packet::PubRel(PubResp::ok(ID))).await;
            }
            Ok(Some(Packet::PubComp(r))) if qos == Q2 && r.packet_id == ID => return,
            Ok(Some(Packet::Publish(p))) => ack_incoming(raw, &p).await,
            Ok(Some(Packet::PubRel(r))) => raw.send_packet(&Packet::PubComp(PubResp::ok(r.packet_id))).await,
            other => panic!("{topic}: publish not completed: {other:?}"),
        }
    }
}

/// Sends a QoS 0 PUBLISH and returns at once (for a client that receives
/// its own message next).
async fn send0(raw: &mut Raw, topic: &str, payload: &str) {
    raw.send_packet(&Packet::Publish(publish(topic, Q0, None, payload.as_bytes(), false))).await;
}

/// The SUBACK code of one filter.
async fn suback(raw: &mut Raw, id: u16, filter: &str, qos: QoS) -> u8 {
    subscribe_with(raw, id, &[(filter, opts(qos))], Properties::default()).await.return_codes[0]
}

/// Sends UNSUBSCRIBE; returns the UNSUBACK's reason codes (empty on 3.x).
async fn unsubscribe(raw: &mut Raw, id: u16, filter: &str) -> Vec<u8> {
    raw.send_packet(&Packet::Unsubscribe(Unsubscribe {
        packet_id: id,
        filters: vec![filter.to_string()],
        properties: Properties::default(),
    }))
    .await;
    match raw.recv().await {
        Some(Packet::UnsubAck(a)) => a.reason_codes,
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

/// v3 and v5 codes for the same outcome.
fn code(v: ProtocolVersion, v3: u8, v5: u8) -> u8 {
    if v == V5 {
        v5
    } else {
        v3
    }
}

/// A client subscribed to the module's `$SYS` counters. Connect it first:
/// it gets auto-subscriptions too, so its share of the counts is fixed.
async fn counters(addr: SocketAddr, module: &str) -> Raw {
    let mut r = client(addr, V3, "reader", None).await;
    let filter = format!("$SYS/brokers/+/modules/{module}/+");
    assert_eq!(suback(&mut r, 90, &filter, Q0).await, 0);
    r
}

/// Waits (5 s at most; `$SYS` is published every second) until the
/// counters read `want`.
async fn expect_counts(r: &mut Raw, want: &[(&str, &str)]) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = std::collections::HashMap::new();
    loop {
        if want.iter().all(|(k, v)| seen.get(*k).map(String::as_str) == Some(*v)) {
            return;
        }
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match r.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) if p.topic.starts_with("$SYS/") => {
                let name = p.topic.rsplit('/').next().unwrap_or_default().to_string();
                seen.insert(name, text(&p.payload));
            }
            Ok(Some(Packet::Publish(p))) => ack_incoming(r, &p).await,
            Ok(Some(_)) => {}
            other => panic!("counters {seen:?}, want {want:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Auto-subscribe

const AUTOSUB: &str = r#"
[modules.auto_subscribe]
enabled = true
topics = [
  { topic = "denied/${clientid}", qos = 1 },
  { topic = "users/${username}/in", qos = 2, retain_handling = 2 },
  { topic = "bcast/#", qos = 0, no_local = true, retain_as_published = true },
  { topic = "inbox/${clientid}", qos = 1 },
]
"#;

/// A client that never subscribes gets its own inbox (with the retained
/// message there), its user's topic at QoS 2 without the retained message
/// (retain handling 2), the broadcast at QoS 0 without its own messages
/// (no local) and, on 5.0, with the retain flag as published; nothing from
/// the template the ACL denies; another client's inbox does not reach it.
#[tokio::test]
async fn auto_subscribe_per_client_with_qos_options_and_acl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), AUTOSUB);
    let mut reader = counters(b.addr, "auto_subscribe").await;
    let mut p = client(b.addr, V5, "publisher", None).await;
    for v in VERSIONS {
        let id = format!("dev-{}", v.level());
        let user = format!("u{}", v.level());
        let inbox = format!("inbox/{id}");
        let mine = format!("users/{user}/in");
        put(&mut p, &inbox, Q1, "hello", true).await;
        put(&mut p, &mine, Q1, "old", true).await;

        let mut c = client(b.addr, v, &id, Some(&user)).await;
        let got = until(&mut c, &inbox).await;
        assert_eq!(summary(&got), [(inbox.clone(), Q1, true, "hello".into())], "{v:?}: only the inbox's retained");

        // Its own broadcast does not come back; PUBACK is the next packet.
        assert!(pub_simple(&mut c, "bcast/own", Q1, 1, b"own", false).await < 0x80);
        for (topic, qos) in [(format!("denied/{id}"), Q1), (mine.clone(), Q2), ("inbox/dev-other".into(), Q1)] {
            put(&mut p, &topic, qos, "live", false).await;
        }
        put(&mut p, "bcast/all", Q1, "b", true).await;
        put(&mut p, &inbox, Q1, "end", false).await;
        let got = until(&mut c, &inbox).await;
        assert_eq!(
            summary(&got),
            [
                (mine.clone(), Q2, false, "live".into()),
                ("bcast/all".into(), Q0, v == V5, "b".into()),
                (inbox.clone(), Q1, false, "end".into()),
            ],
            "{v:?}: retain as published on 5.0 only"
        );
        disconnect(c).await;
        put(&mut p, "bcast/all", Q1, "", true).await;
    }
    assert!(b.wait_log("auto-subscribe: denied by the ACL", Duration::from_secs(5)), "{}", b.log());
    // Two clients, the publisher and the reader (neither has a username):
    // one denial each; 3 + 3 + 2 + 2 subscriptions.
    expect_counts(&mut reader, &[("denied", "4"), ("subscribed", "10"), ("skipped", "2"), ("refused", "0")]).await;
}

/// A client without a username gets nothing from a template that names
/// `${username}` (neither `users//in` nor the literal text); a client id
/// with `/` gets nothing from the templates that name it.
#[tokio::test]
async fn auto_subscribe_without_username_or_with_an_unsafe_client_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(
        dir.path(),
        "[modules.auto_subscribe]\nenabled = true\ntopics = [{ topic = \"users/${username}/in\" }, { topic = \"bcast\" }, { topic = \"inbox/${clientid}\" }]\n",
    );
    let mut reader = counters(b.addr, "auto_subscribe").await;
    let mut p = client(b.addr, V5, "publisher", None).await;
    for v in VERSIONS {
        let id = format!("anon-{}", v.level());
        let inbox = format!("inbox/{id}");
        put(&mut p, &inbox, Q0, "ready", true).await;
        let mut c = client(b.addr, v, &id, None).await;
        assert_eq!(topics(&until(&mut c, &inbox).await), [inbox.as_str()]);
        for t in ["users//in", "users/${username}/in", "users/anon/in"] {
            put(&mut p, t, Q0, "x", false).await;
        }
        put(&mut p, &inbox, Q0, "end", false).await;
        assert_eq!(topics(&until(&mut c, &inbox).await), [inbox.as_str()], "{v:?}");

        // `a/b` as client id: only the template without placeholders.
        let mut odd = client(b.addr, v, "a/b", Some("a/b")).await;
        put(&mut p, "inbox/a/b", Q0, "x", false).await;
        put(&mut p, "users/a/b/in", Q0, "x", false).await;
        put(&mut p, "bcast", Q0, "x", false).await;
        assert_eq!(topics(&until(&mut odd, "bcast").await), ["bcast"], "{v:?}");
        disconnect(odd).await;
        disconnect(c).await;
    }
    // users/ for the reader, the publisher and the two clients; both
    // placeholder templates for the two a/b clients.
    expect_counts(&mut reader, &[("skipped", "8"), ("denied", "0")]).await;
}

// ---------------------------------------------------------------------------
// Topic rewrite

const REWRITE: &str = r#"
[modules.rewrite]
enabled = true
rules = [
  { action = "publish", source_topic = "a/#", re = "^a/(.+)$", dest_topic = "b/$1" },
  { action = "subscribe", source_topic = "old/#", re = "^old/(.+)$", dest_topic = "new/$1" },
  { action = "publish", source_topic = "p/#", re = "^p/(.+)$", dest_topic = "secret/$1" },
  { action = "subscribe", source_topic = "s/#", re = "^s/(.+)$", dest_topic = "denied/$1" },
  { action = "subscribe", source_topic = "w/#", re = "^w/(.+)$", dest_topic = "$1/end" },
  { action = "publish", source_topic = "e/#", re = "^e/(.*)$", dest_topic = "$1" },
  { action = "all", source_topic = "mine/#", re = "^mine/(.+)$", dest_topic = "users/${clientid}/$1" },
]
"#;

/// A PUBLISH to a/x reaches the subscribers of b/x, not those of a/x.
#[tokio::test]
async fn rewrite_on_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), REWRITE);
    for v in VERSIONS {
        let mut s = client(b.addr, v, &format!("sub-{}", v.level()), None).await;
        subscribe(&mut s, 1, &[("a/#", Q1), ("b/#", Q1)]).await;
        let mut p = client(b.addr, v, &format!("pub-{}", v.level()), None).await;
        put(&mut p, "a/x", Q1, "1", false).await;
        put(&mut p, "b/end", Q1, "2", false).await;
        assert_eq!(topics(&until(&mut s, "b/end").await), ["b/x", "b/end"], "{v:?}");
        disconnect(p).await;
        disconnect(s).await;
    }
    assert_eq!(sys_fresh(b.addr, "modules/rewrite/publish", Duration::from_secs(5)).await, "2");
}

/// A subscriber to old/x holds new/x: it gets what is published to new/x,
/// not to old/x; its UNSUBSCRIBE of old/x removes new/x (v5: 0x00, the
/// subscription existed).
#[tokio::test]
async fn rewrite_on_subscribe_and_unsubscribe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), REWRITE);
    let mut p = client(b.addr, V5, "publisher", None).await;
    for v in VERSIONS {
        let mut s = client(b.addr, v, &format!("sub-{}", v.level()), None).await;
        subscribe(&mut s, 1, &[("old/x", Q1), ("ctl", Q1)]).await;
        put(&mut p, "old/x", Q1, "1", false).await;
        put(&mut p, "new/x", Q1, "2", false).await;
        assert_eq!(topics(&until(&mut s, "new/x").await), ["new/x"], "{v:?}");

        assert_eq!(unsubscribe(&mut s, 2, "old/x").await, if v == V5 { vec![0] } else { vec![] }, "{v:?}");
        put(&mut p, "new/x", Q1, "3", false).await;
        put(&mut p, "ctl", Q1, "4", false).await;
        assert_eq!(topics(&until(&mut s, "ctl").await), ["ctl"], "{v:?}: new/x unsubscribed");
        disconnect(s).await;
    }
}

/// The ACL judges the rewritten topic: p/x becomes secret/x, whose
/// publishing is denied (v5 PUBACK 0x87); s/x becomes denied/x, whose
/// subscription is denied. `${clientid}` in dest_topic.
#[tokio::test]
async fn rewritten_topics_are_acl_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), REWRITE);
    for v in VERSIONS {
        let id = format!("c-{}", v.level());
        let mut w = client(b.addr, v, &format!("watch-{}", v.level()), None).await;
        subscribe(&mut w, 1, &[("secret/#", Q1), ("p/#", Q1), ("ctl", Q1)]).await;
        let mut c = client(b.addr, v, &id, None).await;
        assert_eq!(pub_simple(&mut c, "p/x", Q1, 1, b"s", false).await, code(v, 0, 0x87), "{v:?}");
        put(&mut c, "ctl", Q1, "end", false).await;
        assert_eq!(topics(&until(&mut w, "ctl").await), ["ctl"], "{v:?}: neither p/x nor secret/x");
        assert_eq!(suback(&mut c, 2, "s/x", Q1).await, code(v, 0x80, 0x87), "{v:?}");

        // mine/t is users/<client id>/t both ways: its own message returns.
        assert_eq!(suback(&mut c, 3, "mine/t", Q1).await, 1);
        send0(&mut c, "mine/t", "me").await;
        let own = format!("users/{id}/t");
        assert_eq!(topics(&until(&mut c, &own).await), [own.as_str()], "{v:?}");
        disconnect(c).await;
        disconnect(w).await;
    }
}

/// A rewrite with no valid result refuses: w/# would become #/end (v5
/// SUBACK 0x8F), e/ would become an empty topic (v5 PUBACK 0x90). Logged
/// and counted.
#[tokio::test]
async fn invalid_rewrites_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), REWRITE);
    for v in VERSIONS {
        let mut c = client(b.addr, v, &format!("c-{}", v.level()), None).await;
        assert_eq!(suback(&mut c, 1, "w/#", Q1).await, code(v, 0x80, 0x8F), "{v:?}");
        assert_eq!(suback(&mut c, 2, "w/x", Q1).await, 1, "{v:?}: w/x is x/end");
        assert_eq!(pub_simple(&mut c, "e/", Q1, 3, b"x", false).await, code(v, 0, 0x90), "{v:?}");
        // The connection carries on: x/end is what it holds.
        send0(&mut c, "x/end", "ok").await;
        assert_eq!(topics(&until(&mut c, "x/end").await), ["x/end"]);
        disconnect(c).await;
    }
    assert!(b.wait_log("rewrite: no valid filter; refused", Duration::from_secs(5)), "{}", b.log());
    assert!(b.wait_log("rewrite: no valid topic; refused", Duration::from_secs(5)), "{}", b.log());
    assert_eq!(sys_fresh(b.addr, "modules/rewrite/invalid", Duration::from_secs(5)).await, "4");
}

/// Auto-subscriptions pass the subscribe hooks, as a client's SUBSCRIBE
/// does: a template old/<client id> is rewritten to new/<client id>.
#[tokio::test]
async fn auto_subscriptions_are_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modules = format!("{REWRITE}\n[modules.auto_subscribe]\nenabled = true\ntopics = [{{ topic = \"old/${{clientid}}\", qos = 1 }}]\n");
    let b = start(dir.path(), &modules);
    let mut p = client(b.addr, V5, "publisher", None).await;
    for v in VERSIONS {
        let id = format!("dev-{}", v.level());
        put(&mut p, &format!("old/{id}"), Q1, "old", true).await;
        put(&mut p, &format!("new/{id}"), Q1, "new", true).await;
        let mut c = client(b.addr, v, &id, None).await;
        let got = until(&mut c, &format!("new/{id}")).await;
        assert_eq!(summary(&got), [(format!("new/{id}"), Q1, true, "new".into())], "{v:?}");
        disconnect(c).await;
    }
}

// ---------------------------------------------------------------------------
// Reload

/// Each module switched on, then off, by SIGHUP; a client connected from
/// the start stays connected throughout and sees each change.
#[tokio::test]
async fn sighup_switches_both_modules_with_a_client_kept() {
    const ON_REWRITE: &str = "[modules.rewrite]\nenabled = true\nrules = [{ action = \"publish\", source_topic = \"a/#\", re = \"^a/(.+)$\", dest_topic = \"b/$1\" }]\n";
    const ON_AUTOSUB: &str =
        "[modules.auto_subscribe]\nenabled = true\ntopics = [{ topic = \"inbox/${clientid}\", qos = 1 }]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path(), "");
    let mut keep = client(b.addr, V5, "keep", None).await;
    subscribe(&mut keep, 1, &[("a/#", Q1), ("b/#", Q1)]).await;
    // Publishes a/<n> and returns the topic it arrived on.
    async fn round(keep: &mut Raw, n: &str) -> String {
        keep.send_packet(&Packet::Publish(publish(&format!("a/{n}"), Q0, None, b"x", false))).await;
        let got = drain_publishes(keep, Duration::from_millis(300), Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "{:?}", topics(&got));
        got[0].topic.clone()
    }
    let mut p = client(b.addr, V5, "publisher", None).await;
    for id in ["n0", "n1", "n2", "n3", "n4"] {
        put(&mut p, &format!("inbox/{id}"), Q1, "hi", true).await;
    }
    // A fresh client gets its inbox (its retained message) or, when
    // auto-subscribe is off, nothing.
    async fn inbox(addr: SocketAddr, id: &str, on: bool) {
        let mut c = client(addr, V3, id, None).await;
        if on {
            assert_eq!(topics(&until(&mut c, &format!("inbox/{id}")).await), [format!("inbox/{id}")]);
        } else {
            expect_silence(&mut c, Duration::from_millis(700), "auto-subscribe is off").await;
        }
        disconnect(c).await;
    }
    assert_eq!(round(&mut keep, "0").await, "a/0");
    inbox(b.addr, "n0", false).await;

    reload(&b, dir.path(), ON_REWRITE, 1).await;
    assert_eq!(round(&mut keep, "1").await, "b/1", "rewrite on");
    inbox(b.addr, "n1", false).await;

    reload(&b, dir.path(), &format!("{ON_REWRITE}{ON_AUTOSUB}"), 2).await;
    assert_eq!(round(&mut keep, "2").await, "b/2", "rewrite kept");
    inbox(b.addr, "n2", true).await;

    reload(&b, dir.path(), ON_AUTOSUB, 3).await;
    assert_eq!(round(&mut keep, "3").await, "a/3", "rewrite off");
    inbox(b.addr, "n3", true).await;

    reload(&b, dir.path(), "", 4).await;
    assert_eq!(round(&mut keep, "4").await, "a/4", "both off");
    inbox(b.addr, "n4", false).await;
    sync(&mut keep).await;
    assert!(!b.log().contains("config file not reloaded"), "{}", b.log());
}

/// A bad rule or template is refused at load, naming its key.
#[tokio::test]
async fn bad_settings_name_their_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[modules.auto_subscribe]\ntopics = [{ topic = \"a/${host}\" }]\n\
         [modules.rewrite]\nrules = [{ action = \"all\", source_topic = \"x/#\", re = \"^x/(.+)$\", dest_topic = \"y/$2\" }]\n",
    )
    .expect("write");
    let out = std::process::Command::new(portcullis_tests::binary())
        .args(["--check-config", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("modules.auto_subscribe.topics[0].topic"), "{err}");
    assert!(err.contains("modules.rewrite.rules[0].dest_topic"), "{err}");
}
