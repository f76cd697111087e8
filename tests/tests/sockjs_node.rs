//! The Done-when point of issue 17 for SockJS: npm `sockjs-client`
//! (tests/node, pinned) in Node, forced onto each of `websocket`,
//! `xhr-streaming` and `xhr-polling`, exchanges STOMP messages with MQTT
//! clients through a `sockjs` listener. `tests/node/sockjs_stomp.js`
//! speaks STOMP 1.2; this test publishes and subscribes over MQTT.
//!
//! Needs `node` and `npm ci --prefix tests/node` (scripts/test.sh does
//! both); without them the test is skipped with a note, except under
//! `CI=true`, where it fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::Broker;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// `node`, if it and the modules are there; otherwise skip (or fail in CI).
fn node() -> Option<String> {
    let node = std::env::var("PORTCULLIS_NODE").unwrap_or_else(|_| "node".to_string());
    let has_node = Command::new(&node).arg("--version").output().is_ok_and(|o| o.status.success());
    let has_modules = node_dir().join("node_modules/sockjs-client/package.json").is_file();
    if has_node && has_modules {
        return Some(node);
    }
    let why = format!(
        "node: {}, tests/node/node_modules: {} (run `npm ci --prefix tests/node`)",
        if has_node { "found" } else { "missing" },
        if has_modules { "found" } else { "missing" }
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "sockjs-client test cannot run under CI: {why}");
    eprintln!("skipped: {why}");
    None
}

fn sockjs_addr(b: &Broker) -> SocketAddr {
    portcullis_tests::stomp::listener_addr(b, "sj")
}

#[tokio::test]
async fn sockjs_client_in_node_exchanges_stomp_with_mqtt_on_each_transport() {
    let Some(node) = node() else { return };
    let b = Broker::start(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"sj\"\ntype = \"sockjs\"\n\
         bind = \"127.0.0.1:0\"\nsockjs = { heartbeat = \"1s\" }\n",
    );
    let addr = sockjs_addr(&b);
    for transport in ["websocket", "xhr-streaming", "xhr-polling"] {
        let (mut mqtt, _) = open_v3(b.addr, &format!("m-{transport}"), true).await;
        subscribe(&mut mqtt, 1, &[(&format!("node/{transport}/out"), QoS::AtMostOnce)]).await;
        let mut child = Command::new(&node)
            .arg(node_dir().join("sockjs_stomp.js"))
            .arg(format!("http://{addr}/stomp"))
            .arg(transport)
            .arg(format!("node/{transport}/in"))
            .arg(format!("node/{transport}/out"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let next = |want: &str| -> String {
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) if l.starts_with(want) => return l,
                    Ok(_) => {}
                    Err(_) => panic!("{transport}: no `{want}` line from node"),
                }
            }
        };
        assert_eq!(next("OPEN"), format!("OPEN {transport}"), "the transport forced");
        next("READY");
        // The client's SEND reached the MQTT subscriber.
        let p = next_publish(&mut mqtt).await;
        assert_eq!(p.topic, format!("node/{transport}/out"));
        assert_eq!(&p.payload[..], format!("hello from {transport}").as_bytes());
        // An MQTT publish reaches the client's STOMP subscription.
        pub_simple(&mut mqtt, &format!("node/{transport}/in"), QoS::AtMostOnce, 0, b"to node", false).await;
        assert_eq!(next("MESSAGE"), "MESSAGE to node", "{transport}");
        next("CLOSED");
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("{transport}: node did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{transport}: node exited with {status}");
        disconnect(mqtt).await;
    }
}
