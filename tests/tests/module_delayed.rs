//! The delayed publish module through the real binary (3.1.1 and 5.0):
//! `$delayed/<seconds>/<topic>` arrives at `<topic>`'s subscribers after
//! the delay and not before; the ACL judges the real topic (the ACL file
//! below has no `$delayed` rule at all); the retain flag and the message
//! expiry are kept; the bounds and malformed prefixes are refused (v5
//! 0x97 / 0x90, 3.x acknowledged and dropped); `$SYS` metrics; SIGHUP
//! switches it off and on with clients kept connected.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, PubResp, Publish, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const VERSIONS: [ProtocolVersion; 2] = [V3, V5];

/// Publish under `a/#` and `r/#` only, subscribe to those and `$SYS/#`;
/// anything else (`secret/…`, and any `$delayed/…` taken literally) falls
/// to `no_match = "deny"`.
const ACL: &str = r#"
[[rule]]
permission = "allow"
action = "publish"
topics = ["a/#", "r/#"]

[[rule]]
permission = "allow"
action = "subscribe"
topics = ["a/#", "r/#", "$SYS/#"]
"#;

/// The broker config: the ACL file in `dir`, the delayed module with
/// `module` settings (a TOML fragment under `[modules.delayed]`).
fn config(dir: &Path, module: &str) -> String {
    let acl = dir.join("acl.toml");
    std::fs::write(&acl, ACL).expect("write acl");
    format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [sys]\ninterval = \"1s\"\n\
         [acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n\
         [modules.delayed]\n{module}\n",
        acl.to_str().expect("utf-8 path")
    )
}

fn start(module: &str) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (Broker::start_with_config(&config(dir.path(), module)), dir)
}

async fn client(addr: std::net::SocketAddr, v: ProtocolVersion, id: &str) -> Raw {
    match v {
        V3 => open_v3(addr, id, true).await.0,
        _ => open_v5(addr, id, true, Properties::default()).await.0,
    }
}

fn sighup(b: &Broker) {
    let st = std::process::Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status().expect("kill");
    assert!(st.success());
}

/// Rewrites the config and reloads it (the `n`th reload of this broker).
async fn reload(b: &Broker, dir: &Path, module: &str, n: usize) {
    std::fs::write(&b.config_path, config(dir, module)).expect("write config");
    sighup(b);
    let end = Instant::now() + Duration::from_secs(5);
    while b.log().matches("reload: modules reloaded").count() < n {
        assert!(Instant::now() < end, "reload {n} not logged:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next PUBLISH within `t` (acknowledged; a PUBREL on the way is
/// completed), or `None`.
async fn arrival(raw: &mut Raw, t: Duration) -> Option<Publish> {
    let end = tokio::time::Instant::now() + t;
    loop {
        match raw.recv_timeout(end.saturating_duration_since(tokio::time::Instant::now())).await {
            Ok(Some(Packet::Publish(p))) => {
                ack_incoming(raw, &p).await;
                return Some(p);
            }
            Ok(Some(Packet::PubRel(r))) => raw.send_packet(&Packet::PubComp(PubResp::ok(r.packet_id))).await,
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("connection closed"),
            Err(()) => return None,
        }
    }
}

/// Waits (at most `within`) for a PUBLISH to `topic`, skipping others.
async fn wait_for(raw: &mut Raw, topic: &str, within: Duration) {
    let end = tokio::time::Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match arrival(raw, left).await {
            Some(p) if p.topic == topic => return,
            Some(_) => {}
            None => panic!("no {topic} within {within:?}"),
        }
    }
}

/// The value of `$SYS/brokers/<node>/modules/delayed/<name>` published
/// after this call.
async fn sys(b: &Broker, name: &str) -> String {
    sys_fresh(b.addr, &format!("modules/delayed/{name}"), Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_delayed_message_arrives_after_its_delay_and_not_before() {
    let (b, _dir) = start("enabled = true");
    for v in VERSIONS {
        let mut sub = client(b.addr, v, &format!("sub-{v:?}")).await;
        subscribe(&mut sub, 1, &[("a/b", Q2)]).await;
        let mut p = client(b.addr, v, &format!("pub-{v:?}")).await;
        // QoS 2: the exchange completes at once; the message waits.
        let mut msg = publish("$delayed/2/a/b", Q2, Some(7), b"later", false);
        if v == V5 {
            msg.properties.message_expiry_interval = Some(10);
            msg.properties.content_type = Some("text/plain".into());
        }
        let sent = Instant::now();
        assert_eq!(publish_complete(&mut p, msg).await, 0, "{v:?}: accepted");
        assert!(sent.elapsed() < Duration::from_millis(1500), "{v:?}: acknowledged at once");

        // Nothing before the deadline (listened for until 1.9 s after sending).
        let quiet = Duration::from_millis(1900).saturating_sub(sent.elapsed());
        assert!(arrival(&mut sub, quiet).await.is_none(), "{v:?}: arrived before its delay");
        let got = arrival(&mut sub, Duration::from_secs(5)).await.expect("arrives");
        let waited = sent.elapsed();
        assert!(waited >= Duration::from_secs(2), "{v:?}: arrived after {waited:?}");
        assert_eq!((got.topic.as_str(), &got.payload[..], got.retain), ("a/b", &b"later"[..], false), "{v:?}");
        assert_eq!(got.qos, Q2, "{v:?}: QoS kept");
        if v == V5 {
            // The expiry interval kept counting while it waited.
            let left = got.properties.message_expiry_interval.expect("expiry");
            assert!((1..=8).contains(&left), "{v:?}: {left} s of 10 left after {waited:?}");
            assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
        }
        assert!(arrival(&mut sub, Duration::from_millis(300)).await.is_none(), "{v:?}: once");
    }
}

/// The ACL file has no `$delayed` rule: the real topic is what is judged.
/// A refused publish does not use up the room (max_messages = 2: two
/// refusals from connections that stay open, then two accepted).
#[tokio::test]
async fn the_acl_judges_the_real_topic() {
    let (b, _dir) = start("enabled = true\nmax_messages = 2");
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/#", Q1)]).await;
    let mut kept = Vec::new();
    for v in VERSIONS {
        let mut p = client(b.addr, v, &format!("denied-{v:?}")).await;
        let code = pub_simple(&mut p, "$delayed/1/secret/x", Q1, 1, b"no", false).await;
        assert_eq!(code, if v == V5 { 0x87 } else { 0 }, "{v:?}: refused for secret/x");
        kept.push(p);
    }
    for v in VERSIONS {
        let mut p = client(b.addr, v, &format!("allowed-{v:?}")).await;
        assert_eq!(pub_simple(&mut p, "$delayed/1/a/ok", Q1, 1, b"yes", false).await, 0, "{v:?}: allowed");
        kept.push(p);
    }
    let got: Vec<String> = drain_publishes(&mut sub, Duration::from_millis(1500), Duration::from_secs(6))
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    assert_eq!(got, ["a/ok", "a/ok"]);
    for p in &mut kept {
        sync(p).await;
    }
}

#[tokio::test]
async fn the_retain_flag_is_kept() {
    let (b, _dir) = start("enabled = true");
    for v in VERSIONS {
        let topic = format!("r/{v:?}");
        let mut p = client(b.addr, v, &format!("pub-{v:?}")).await;
        assert_eq!(pub_simple(&mut p, &format!("$delayed/1/{topic}"), Q1, 1, b"kept", true).await, 0);
        // Not retained before the deadline.
        let mut early = client(b.addr, v, &format!("early-{v:?}")).await;
        subscribe(&mut early, 1, &[(topic.as_str(), Q1)]).await;
        let first = arrival(&mut early, Duration::from_secs(4)).await.expect("published at the deadline");
        assert!(!first.retain, "{v:?}: a live subscriber gets it as a live message");
        // Retained after it.
        let mut late = client(b.addr, v, &format!("late-{v:?}")).await;
        subscribe(&mut late, 1, &[(topic.as_str(), Q1)]).await;
        let got = arrival(&mut late, Duration::from_secs(2)).await.expect("retained");
        assert!(got.retain, "{v:?}: retain flag");
        assert_eq!(&got.payload[..], b"kept");
    }
}

#[tokio::test]
async fn the_bounds_refuse_with_quota_exceeded() {
    let (b, _dir) = start("enabled = true\nmax_messages = 2\nmax_delay = \"1h\"");
    let mut sub = client(b.addr, V3, "sub").await;
    subscribe(&mut sub, 1, &[("a/#", Q1)]).await;
    let mut v5 = client(b.addr, V5, "p5").await;
    let mut v3 = client(b.addr, V3, "p3").await;
    // Over max_delay.
    assert_eq!(pub_simple(&mut v5, "$delayed/3601/a/long", Q1, 1, b"x", false).await, 0x97);
    assert_eq!(pub_simple(&mut v3, "$delayed/3601/a/long", Q1, 1, b"x", false).await, 0);
    assert_eq!(pub_simple(&mut v5, "$delayed/3600/a/held", Q1, 2, b"1", false).await, 0);
    assert_eq!(pub_simple(&mut v5, "$delayed/3600/a/held", Q1, 3, b"2", false).await, 0);
    // max_messages = 2: the third is refused.
    assert_eq!(pub_simple(&mut v5, "$delayed/1/a/third", Q1, 4, b"3", false).await, 0x97, "v5: quota exceeded");
    assert_eq!(pub_simple(&mut v3, "$delayed/1/a/third", Q1, 2, b"3", false).await, 0, "3.x: acknowledged");
    assert!(arrival(&mut sub, Duration::from_millis(1800)).await.is_none(), "nothing refused is published");
    assert_eq!(sys(&b, "count").await, "2");
    assert_eq!(sys(&b, "dropped").await, "4");
}

#[tokio::test]
async fn malformed_prefixes_are_refused_as_invalid_topic_names() {
    let (b, _dir) = start("enabled = true");
    let mut sub = client(b.addr, V3, "sub").await;
    subscribe(&mut sub, 1, &[("a/#", Q1)]).await;
    let bad = [
        "$delayed/x/a/b",
        "$delayed//a/b",
        "$delayed/-1/a/b",
        "$delayed/5",
        "$delayed/5/",
        "$delayed",
        "$delayed/1/$SYS/x",
        "$delayed/1/$delayed/1/a/b",
    ];
    for v in VERSIONS {
        let mut p = client(b.addr, v, &format!("pub-{v:?}")).await;
        for (i, t) in bad.iter().enumerate() {
            let code = pub_simple(&mut p, t, Q1, i as u16 + 1, b"x", false).await;
            assert_eq!(code, if v == V5 { 0x90 } else { 0 }, "{v:?} {t}");
        }
        sync(&mut p).await;
    }
    assert!(arrival(&mut sub, Duration::from_millis(1500)).await.is_none());
    assert_eq!(sys(&b, "dropped").await, (2 * bad.len()).to_string());
    // `$delayed/0/…` is published at once, to the real topic.
    let mut p = client(b.addr, V5, "now").await;
    assert_eq!(pub_simple(&mut p, "$delayed/0/a/now", Q1, 1, b"x", false).await, 0);
    assert_eq!(arrival(&mut sub, Duration::from_millis(500)).await.expect("at once").topic, "a/now");
}

#[tokio::test]
async fn metrics_count_bytes_published_and_dropped() {
    let (b, _dir) = start("enabled = true");
    let mut p = client(b.addr, V5, "pub").await;
    assert_eq!(pub_simple(&mut p, "$delayed/1/a/soon", Q1, 1, b"x", false).await, 0);
    // Held: topic "a/held" (6) + payload (4) = 10 bytes.
    assert_eq!(pub_simple(&mut p, "$delayed/600/a/held", Q1, 2, b"wait", false).await, 0);
    assert_eq!(pub_simple(&mut p, "$delayed/z/a/bad", Q1, 3, b"x", false).await, 0x90);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sys(&b, "count").await, "1");
    assert_eq!(sys(&b, "bytes").await, "10");
    assert_eq!(sys(&b, "published").await, "1");
    assert_eq!(sys(&b, "dropped").await, "1");
}

/// A will to `$delayed/1/a/will` is published a second after the
/// connection ends.
#[tokio::test]
async fn a_will_can_be_delayed() {
    let (b, _dir) = start("enabled = true");
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/will", Q1)]).await;
    let mut c = connect_packet(V5, "dying", true);
    c.will = Some(will("$delayed/1/a/will", "gone", Q1, false));
    let (raw, ack) = open(b.addr, c).await;
    assert_eq!(ack.code, 0);
    let ended = Instant::now();
    drop(raw);
    let got = arrival(&mut sub, Duration::from_secs(5)).await.expect("the will");
    assert!(ended.elapsed() >= Duration::from_secs(1), "after {:?}", ended.elapsed());
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("a/will", &b"gone"[..]));
}

/// New settings by SIGHUP: what it held stays. Off: what it held is dropped, `$delayed/…` is an ordinary
/// topic again (which this ACL refuses), the metrics go (cleared once);
/// on again: delayed publishing works. The clients stay connected all
/// along.
#[tokio::test]
async fn sighup_switches_it_off_and_on_with_clients_kept() {
    let (b, dir) = start("enabled = true");
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/#", Q1), ("$SYS/brokers/+/modules/delayed/count", Q1)]).await;
    let mut p = client(b.addr, V5, "pub").await;
    let mut p3 = client(b.addr, V3, "pub3").await;
    // New settings: the same instance, what it holds kept.
    assert_eq!(pub_simple(&mut p, "$delayed/2/a/kept", Q1, 5, b"x", false).await, 0);
    reload(&b, dir.path(), "enabled = true\nmax_messages = 5", 1).await;
    wait_for(&mut sub, "a/kept", Duration::from_secs(5)).await;

    assert_eq!(pub_simple(&mut p, "$delayed/1/a/on", Q1, 1, b"x", false).await, 0);
    assert_eq!(pub_simple(&mut p, "$delayed/3/a/pending", Q1, 2, b"x", false).await, 0);
    wait_for(&mut sub, "a/on", Duration::from_secs(5)).await;

    // Off.
    reload(&b, dir.path(), "enabled = false", 2).await;
    assert!(b.wait_log("delayed publish switched off", Duration::from_secs(5)), "{}", b.log());
    assert_eq!(pub_simple(&mut p, "$delayed/1/a/off", Q1, 3, b"x", false).await, 0x87, "a literal topic now");
    assert_eq!(pub_simple(&mut p3, "$delayed/1/a/off", Q1, 1, b"x", false).await, 0);
    // Within 3 s: the pending one would be due; the metric is cleared
    // once (an empty retained value) and then not published again.
    let seen = drain_publishes(&mut sub, Duration::from_millis(3000), Duration::from_secs(6)).await;
    let topics: Vec<(&str, usize)> = seen.iter().map(|p| (p.topic.as_str(), p.payload.len())).collect();
    assert!(topics.iter().all(|(t, _)| !t.starts_with("a/")), "nothing delayed after off: {topics:?}");
    // Values reported before the switch may still be on their way; the
    // last one is the clearing (empty), and it comes once.
    let sys: Vec<usize> = topics.iter().filter(|(t, _)| t.ends_with("/count")).map(|(_, n)| *n).collect();
    assert_eq!(sys.last(), Some(&0), "the count is cleared, then not published again: {topics:?}");
    assert_eq!(sys.iter().filter(|n| **n == 0).count(), 1, "cleared once: {topics:?}");

    // On again: a fresh instance.
    reload(&b, dir.path(), "enabled = true", 3).await;
    assert_eq!(pub_simple(&mut p, "$delayed/1/a/again", Q1, 4, b"x", false).await, 0);
    assert_eq!(pub_simple(&mut p3, "$delayed/1/a/again3", Q1, 2, b"x", false).await, 0);
    let got: Vec<String> = drain_publishes(&mut sub, Duration::from_millis(1500), Duration::from_secs(6))
        .await
        .into_iter()
        .map(|p| p.topic)
        .filter(|t| t.starts_with("a/"))
        .collect();
    assert_eq!(got, ["a/again", "a/again3"]);
    for raw in [&mut sub, &mut p, &mut p3] {
        sync(raw).await;
    }
}

#[test]
fn a_bad_setting_names_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[modules.delayed]\nmax_delay = \"50d\"\nmax_messages = 0\n").expect("write");
    let out = std::process::Command::new(portcullis_tests::binary())
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("modules.delayed.max_delay") && err.contains("4294967s"), "{err}");
    assert!(err.contains("modules.delayed.max_messages"), "{err}");
}

/// With the strict store, held messages survive `kill -9`: acknowledged
/// before the kill, published after the restart at their deadline (wall
/// clock: the downtime counts), once; the start after that has nothing
/// left to publish.
#[tokio::test]
async fn held_messages_survive_kill_9_with_their_deadlines_and_are_published_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{}\n[persistence]\nmode = \"strict\"\ndir = {:?}\n",
        config(dir.path(), "enabled = true"),
        dir.path().join("data").display().to_string()
    );
    let b = Broker::start_with_config(&cfg);
    let mut p = client(b.addr, V5, "pub").await;
    let sent = Instant::now();
    for (id, secs) in [(1u16, 4u32), (2, 5)] {
        let code =
            pub_simple(&mut p, &format!("$delayed/{secs}/a/k"), Q1, id, format!("m{secs}").as_bytes(), false).await;
        assert_eq!(code, 0, "PUBACK for the {secs} s one");
    }
    drop(p);
    drop(b); // SIGKILL, right after the PUBACKs
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let b = Broker::start_with_config(&cfg);
    assert!(b.log().contains("held messages restored from the store"), "{}", b.log());
    let restarted = Instant::now();
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/k", Q1)]).await;
    let first = arrival(&mut sub, Duration::from_secs(10)).await.expect("m4 after the restart");
    let (since_publish, since_restart) = (sent.elapsed(), restarted.elapsed());
    assert_eq!(&first.payload[..], b"m4");
    assert!(since_publish >= Duration::from_secs(4), "before its deadline: {since_publish:?}");
    // Its delay did not start again at the restart (it would be >= 4 s).
    assert!(since_restart < Duration::from_millis(3500), "{since_restart:?} after the restart");
    let second = arrival(&mut sub, Duration::from_secs(10)).await.expect("m5 after the restart");
    assert_eq!(&second.payload[..], b"m5");
    assert!(arrival(&mut sub, Duration::from_millis(500)).await.is_none(), "each once");
    drop(sub);
    // The rows went with the publishes (their deletes are written with
    // the next group commit: give it a moment before the kill).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);

    let b = Broker::start_with_config(&cfg);
    assert!(!b.log().contains("held messages restored"), "{}", b.log());
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/k", Q1)]).await;
    assert!(arrival(&mut sub, Duration::from_secs(2)).await.is_none(), "nothing published twice");
}

/// Switched off, the module drops what it holds — from the store too: a
/// restart with it on again publishes none of it.
#[tokio::test]
async fn switched_off_it_deletes_what_it_held_from_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |module: &str| {
        format!(
            "{}\n[persistence]\nmode = \"strict\"\ndir = {:?}\n",
            config(dir.path(), module),
            dir.path().join("data").display().to_string()
        )
    };
    let b = Broker::start_with_config(&with("enabled = true"));
    let mut p = client(b.addr, V5, "pub").await;
    assert_eq!(pub_simple(&mut p, "$delayed/3/a/off", Q1, 1, b"dropped", false).await, 0);
    drop(p);
    std::fs::write(&b.config_path, with("enabled = false")).expect("write config");
    sighup(&b);
    let end = Instant::now() + Duration::from_secs(5);
    while !b.log().contains("the messages it held are dropped") {
        assert!(Instant::now() < end, "not switched off:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b); // SIGKILL

    let b = Broker::start_with_config(&with("enabled = true"));
    assert!(!b.log().contains("held messages restored"), "{}", b.log());
    let mut sub = client(b.addr, V5, "sub").await;
    subscribe(&mut sub, 1, &[("a/off", Q1)]).await;
    assert!(arrival(&mut sub, Duration::from_secs(4)).await.is_none(), "a dropped message came back");
}
