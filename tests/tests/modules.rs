//! Modules through the real binary: presence (emqttd's fields and today's,
//! QoS, 3.1.1 and 5.0) and switching modules on and off with SIGHUP while
//! a client stays connected.

use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;

fn sighup(b: &Broker) {
    let st = std::process::Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status().expect("kill");
    assert!(st.success());
}

/// The next PUBLISH whose topic ends with `suffix`, as JSON (skipping
/// others), within 5 s.
async fn event(raw: &mut Raw, suffix: &str) -> (portcullis_core::codec::Publish, serde_json::Value) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) if p.topic.ends_with(suffix) => {
                ack_incoming(raw, &p).await;
                let v = serde_json::from_slice(&p.payload).expect("JSON");
                return (p, v);
            }
            Ok(Some(Packet::Publish(p))) => ack_incoming(raw, &p).await,
            Ok(Some(_)) => {}
            other => panic!("no event ending in {suffix}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn presence_events_carry_emqttd_fields() {
    let b = Broker::start("[modules.presence]\nqos = 1\n");
    let (mut watch, _) = open_v3(b.addr, "watch", true).await;
    subscribe(&mut watch, 1, &[("$SYS/brokers/+/clients/+/+", Q1)]).await;
    for (version, id) in [(ProtocolVersion::V311, "dev-3"), (ProtocolVersion::V5, "dev-5")] {
        let mut c = connect_packet(version, id, true);
        c.username = None;
        c.keep_alive = 42;
        let (raw, ack) = open(b.addr, c).await;
        assert_eq!(ack.code, 0);
        let (p, v) = event(&mut watch, &format!("/clients/{id}/connected")).await;
        assert_eq!(p.qos, Q1, "qos = 1 in [modules.presence]");
        assert_eq!(v["clientid"], id);
        assert_eq!(v["ipaddress"], "127.0.0.1");
        assert_eq!(v["clean_sess"], true);
        assert_eq!(v["protocol"], version.level());
        assert_eq!(v["connack"], 0);
        assert!(v["ts"].as_u64().is_some_and(|t| t > 1_600_000_000 && t < 10_000_000_000), "seconds: {v}");
        assert!(v["connected_at"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "milliseconds: {v}");
        assert_eq!(v["keepalive"], 42);
        assert_eq!(v["listener"], "tcp");
        disconnect(raw).await;
        let (_, v) = event(&mut watch, &format!("/clients/{id}/disconnected")).await;
        assert_eq!(v["clientid"], id);
        assert_eq!(v["reason"], "client sent DISCONNECT");
        assert!(v["ts"].as_u64().is_some());
    }
    // An abnormal end reads as such.
    let (raw, _) = open_v3(b.addr, "dropper", true).await;
    drop(raw);
    let (_, v) = event(&mut watch, "/clients/dropper/disconnected").await;
    assert_eq!(v["reason"], "connection closed by peer");
}

#[tokio::test]
async fn sighup_switches_modules_off_and_on_without_dropping_clients() {
    let b = Broker::start("[modules.presence]\nenabled = true\n");
    let (mut watch, _) = open_v3(b.addr, "watch", true).await;
    subscribe(&mut watch, 1, &[("$SYS/brokers/+/clients/+/connected", Q0)]).await;
    let (_c, _) = open_v3(b.addr, "before", true).await;
    event(&mut watch, "/clients/before/connected").await;

    // Off: no more events; the watcher stays connected.
    std::fs::write(
        &b.config_path,
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n[modules.presence]\nenabled = false\n",
    )
    .expect("write config");
    sighup(&b);
    assert!(b.wait_log("reload: modules reloaded", Duration::from_secs(5)), "{}", b.log());
    let (_c, _) = open_v3(b.addr, "while-off", true).await;
    expect_silence(&mut watch, Duration::from_millis(700), "presence is off").await;
    sync(&mut watch).await;

    // On again, with v5 too.
    std::fs::write(
        &b.config_path,
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n[modules.presence]\nenabled = true\n",
    )
    .expect("write config");
    sighup(&b);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while b.log().matches("reload: modules reloaded").count() < 2 {
        assert!(std::time::Instant::now() < end, "second reload not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_c, _) = open_v5(b.addr, "after", true, Properties::default()).await;
    event(&mut watch, "/clients/after/connected").await;

    // A broken file keeps the running modules.
    std::fs::write(&b.config_path, "[modules.presence]\nenabled = maybe\n").expect("write config");
    sighup(&b);
    assert!(b.wait_log("reload: config file not reloaded", Duration::from_secs(5)));
    let (_c, _) = open_v3(b.addr, "still-on", true).await;
    event(&mut watch, "/clients/still-on/connected").await;
}

#[tokio::test]
async fn a_bad_module_setting_names_its_key() {
    let out = std::process::Command::new(portcullis_tests::binary())
        .args(["--check-config", "--config"])
        .arg({
            let dir = tempfile::tempdir().expect("tempdir").keep();
            let p = dir.join("p.toml");
            std::fs::write(&p, "[modules.presence]\nqos = 2\n").expect("write");
            p
        })
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("modules.presence.qos"), "{err}");
}
