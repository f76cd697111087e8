//! Bridges in the management plane, against Debian's `mosquitto` (a child
//! process on a free loopback port): `GET /api/v5/bridges[/{name}]` with
//! state and counters that move, `POST /api/v5/bridges/{name}/stop|start`
//! (the state topic goes `0` on the remote and locally with a clean
//! DISCONNECT, nothing is forwarded while stopped, the queue is kept and
//! sent after the start), roles (a viewer reads, only an administrator
//! stops: 403) and 404 for an unknown bridge; `portcullis ctl bridges`
//! with and without `--json`.
//!
//! Every wait is bounded; every process is stopped by its PID.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Publish, QoS};
use portcullis_tests::kit::{self, collect, open_v3, pub_simple, subscribe, text};
use portcullis_tests::mosquitto::Mosquitto;
use portcullis_tests::{binary, Broker, Raw};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "s3cret-0123456789abcdef";
const STATE: &str = "$SYS/broker/connection/portcullis-m/state";

fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// A 3.1.1 subscriber to `filters` at QoS 1.
async fn subscriber(addr: SocketAddr, id: &str, filters: &[&str]) -> Raw {
    let (mut raw, _) = open_v3(addr, id, true).await;
    let f: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
    subscribe(&mut raw, 1, &f).await;
    raw
}

/// Waits (bounded) for a PUBLISH on `topic` with `payload`; returns the
/// topics of everything else received meanwhile (and just after).
async fn expect_value(raw: &mut Raw, topic: &str, payload: &str) -> Vec<String> {
    let end = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < end {
        let mut found = false;
        for p in publishes(collect(raw, Duration::from_millis(200)).await) {
            if p.topic == topic && text(&p.payload) == payload {
                found = true;
            } else {
                seen.push(p.topic);
            }
        }
        if found {
            return seen;
        }
    }
    panic!("no {topic} = {payload:?} within {WAIT:?}; saw {seen:?}");
}

/// Publishes `topic` on `from` (QoS 0) until `sub` gets it.
async fn until_bridged(from: SocketAddr, sub: &mut Raw, topic: &str) {
    let (mut publisher, _) = open_v3(from, "probe", true).await;
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "no bridge for {topic} within {WAIT:?}");
        pub_simple(&mut publisher, topic, QoS::AtMostOnce, 0, b"probe", false).await;
        if publishes(collect(sub, Duration::from_millis(300)).await).iter().any(|p| p.topic == topic) {
            break;
        }
    }
    kit::disconnect(publisher).await;
    collect(sub, Duration::from_millis(300)).await;
}

/// The admin API with a key.
struct Api {
    base: String,
    key: &'static str,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(self.key, Some(SECRET))
            .send()
            .await
            .expect("request");
        let status = res.status();
        let body = res.text().await.expect("body");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> Value {
        let (st, v) = self.call(Method::GET, path).await;
        assert_eq!(st, StatusCode::OK, "GET {path}: {v}");
        v
    }
    /// `GET /api/v5/bridges/m` until `ok` holds (bounded).
    async fn until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + WAIT;
        loop {
            let v = self.get("/api/v5/bridges/m").await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < end, "bridge m: not {what} within {WAIT:?}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `portcullis --config <cfg> ctl ARGS` (through the admin socket): exit
/// code and stdout; killed after 20 s.
fn ctl(config: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .arg("ctl")
        .args(args)
        .env_remove("PORTCULLIS_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctl");
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctl {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!("ctl {args:?}: exit {code}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (code, stdout)
}

fn ctl_json(config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out) = ctl(config, &all);
    assert_eq!(code, 0, "ctl {all:?}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {all:?}: not JSON ({e}): {out}"))
}

#[tokio::test]
async fn bridges_are_listed_stopped_and_started_through_the_api_and_ctl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    let mosq = Mosquitto::start("");
    let mut on_mosq = subscriber(mosq.addr, "sub-mosq", &["out/#", STATE]).await;
    let pc = Broker::start(&format!(
        "[[bridges]]\nname = \"m\"\naddresses = [\"{}\"]\nprotocol = \"3.1.1\"\ntopics = [\"out/# out 1\"]\n\
         reconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nkeepalive = \"5s\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = {:?}\ndata_dir = {:?}\nbootstrap_file = {:?}\n",
        mosq.addr,
        dir.path().join("admin.sock").display().to_string(),
        dir.path().join("data").display().to_string(),
        boot.display().to_string(),
    ));
    let addr = pc.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", pc.log()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let admin = Api { base: format!("http://{addr}"), key: "admin", http: http.clone() };
    let viewer = Api { base: format!("http://{addr}"), key: "view", http };
    let mut on_pc = subscriber(pc.addr, "sub-pc", &[STATE]).await;
    expect_value(&mut on_mosq, STATE, "1").await;
    until_bridged(pc.addr, &mut on_mosq, "out/probe").await;

    // The list: connected, with the address in use and counters.
    let list = viewer.get("/api/v5/bridges").await;
    let rows = list.as_array().unwrap_or_else(|| panic!("not an array: {list}"));
    assert_eq!(rows.len(), 1, "{list}");
    let b = &rows[0];
    assert_eq!((b["name"].as_str(), b["type"].as_str()), (Some("m"), Some("mqtt")), "{b}");
    assert_eq!(
        (b["status"].as_str(), b["running"].as_bool(), b["connected"].as_bool()),
        (Some("connected"), Some(true), Some(true)),
        "{b}"
    );
    assert_eq!(b["address"].as_str(), Some(mosq.addr.to_string().as_str()), "{b}");
    assert_eq!(b["protocol"].as_str(), Some("3.1.1"), "{b}");
    assert_eq!(b["connects"].as_u64(), Some(1), "{b}");
    // A QoS 1 message moves messages_out by one (counted on PUBACK).
    let out_before = admin.get("/api/v5/bridges/m").await["messages_out"].as_u64().expect("messages_out");
    let (mut p_pc, _) = open_v3(pc.addr, "pub-pc", true).await;
    pub_simple(&mut p_pc, "out/one", QoS::AtLeastOnce, 1, b"1", false).await;
    expect_value(&mut on_mosq, "out/one", "1").await;
    admin.until("counting out/one", |v| v["messages_out"].as_u64() == Some(out_before + 1)).await;

    // Roles and unknown names.
    for path in ["/api/v5/bridges/m/stop", "/api/v5/bridges/m/start"] {
        let (st, v) = viewer.call(Method::POST, path).await;
        assert_eq!((st, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "viewer POST {path}: {v}");
    }
    assert_eq!(viewer.get("/api/v5/bridges/m").await["running"], true, "a viewer's stop stopped it");
    for (method, path) in [
        (Method::GET, "/api/v5/bridges/nope"),
        (Method::POST, "/api/v5/bridges/nope/stop"),
        (Method::POST, "/api/v5/bridges/nope/start"),
    ] {
        let (st, v) = admin.call(method.clone(), path).await;
        assert_eq!((st, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{method} {path}: {v}");
    }

    // Stop: state 0 on the remote (before a clean DISCONNECT) and locally.
    let (st, _) = admin.call(Method::POST, "/api/v5/bridges/m/stop").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    expect_value(&mut on_mosq, STATE, "0").await;
    expect_value(&mut on_pc, STATE, "0").await;
    assert!(mosq.wait_log("Received DISCONNECT from portcullis-m", WAIT), "not a clean DISCONNECT:\n{}", mosq.log());
    let v = admin.until("stopped", |v| v["connected"] == false).await;
    assert_eq!((v["status"].as_str(), v["running"].as_bool()), (Some("stopped"), Some(false)), "{v}");
    // Stopping again changes nothing.
    assert_eq!(admin.call(Method::POST, "/api/v5/bridges/m/stop").await.0, StatusCode::NO_CONTENT);

    // Nothing is forwarded while stopped, and it does not reconnect; QoS 1
    // waits in the queue, QoS 0 is dropped and counted.
    let dropped = v["messages_dropped"].as_u64().expect("messages_dropped");
    pub_simple(&mut p_pc, "out/held", QoS::AtLeastOnce, 2, b"held", false).await;
    pub_simple(&mut p_pc, "out/lost", QoS::AtMostOnce, 0, b"lost", false).await;
    let got = publishes(collect(&mut on_mosq, Duration::from_secs(2)).await);
    assert!(got.iter().all(|p| !p.topic.starts_with("out/")), "forwarded while stopped: {got:?}");
    let v = admin.until("holding out/held", |v| v["messages_queued"] == 1).await;
    assert_eq!(v["messages_dropped"].as_u64(), Some(dropped + 1), "{v}");
    assert_eq!(v["connects"].as_u64(), Some(1), "reconnected while stopped: {v}");

    // ctl, human and JSON, while stopped.
    let (code, out) = ctl(&pc.config_path, &["bridges", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NAME") && out.contains("STATUS"), "{out}");
    let row = out.lines().find(|l| l.starts_with("m ")).unwrap_or_else(|| panic!("no row for m:\n{out}"));
    assert!(row.contains("stopped") && row.contains(&mosq.addr.to_string()), "{row}");
    let (code, out) = ctl(&pc.config_path, &["bridges", "show", "m"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("running") && l.ends_with("false")), "{out}");
    let v = ctl_json(&pc.config_path, &["bridges", "show", "m"]);
    assert_eq!((v["name"].as_str(), v["running"].as_bool()), (Some("m"), Some(false)), "{v}");
    let (code, _) = ctl(&pc.config_path, &["bridges", "start", "nope"]);
    assert_eq!(code, 1, "an unknown bridge is an API error");

    // Start (through ctl): connected again, state 1 on both sides, the
    // kept message delivered, forwarding resumed.
    let (code, out) = ctl(&pc.config_path, &["bridges", "start", "m"]);
    assert_eq!((code, out.trim()), (0, "started bridge m"));
    let seen = expect_value(&mut on_mosq, STATE, "1").await;
    expect_value(&mut on_pc, STATE, "1").await;
    let mut delivered = seen.iter().any(|t| t == "out/held");
    if !delivered {
        let got = publishes(collect(&mut on_mosq, Duration::from_secs(2)).await);
        delivered = got.iter().any(|p| p.topic == "out/held" && text(&p.payload) == "held");
    }
    assert!(delivered, "the message queued while stopped was not sent after the start");
    pub_simple(&mut p_pc, "out/after", QoS::AtLeastOnce, 3, b"after", false).await;
    expect_value(&mut on_mosq, "out/after", "after").await;
    let list = ctl_json(&pc.config_path, &["bridges", "list"]);
    let b = &list[0];
    assert_eq!((b["status"].as_str(), b["connects"].as_u64()), (Some("connected"), Some(2)), "{list}");
    // And stop through ctl.
    let (code, out) = ctl(&pc.config_path, &["bridges", "stop", "m"]);
    assert_eq!((code, out.trim()), (0, "stopped bridge m"));
    expect_value(&mut on_mosq, STATE, "0").await;
    let v = ctl_json(&pc.config_path, &["bridges", "list"]);
    assert_eq!(v[0]["status"], "stopped", "{v}");
}
