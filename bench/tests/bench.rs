//! Runs the real `portcullis-bench` binary against the real broker (started
//! by the `portcullis-tests` harness on 127.0.0.1:0) and checks its JSON
//! summary line. Needs the broker built first: `cargo build -p portcullis`.

use std::process::{Command, Output};

use portcullis_tests::Broker;
use serde_json::Value;

fn bench(args: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis-bench"))
        .args(args)
        .args(["--quiet", "--timeout", "5s"])
        .output()
        .expect("run portcullis-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("no summary; status {:?}, stderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    });
    let summary: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("summary {line:?}: {e}"));
    (out, summary)
}

fn port(b: &Broker) -> String {
    b.addr.port().to_string()
}

#[test]
fn conn_opens_and_closes_200_connections() {
    let broker = Broker::start("");
    let (out, s) = bench(&["conn", "--port", &port(&broker), "-n", "200", "-c", "50", "--hold", "1s"]);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["mode"], "conn");
    assert_eq!(s["connects"], 200, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["connack_codes"]["0"], 200, "{s}");
    assert_eq!(s["held"], 200, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    assert!(s["connects_per_s"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    assert!(s["connack_p99_us"].as_u64() >= s["connack_p50_us"].as_u64(), "{s}");
}

#[test]
fn conn_counts_refusals_by_connack_code() {
    // The default broker admits anonymous loopback clients only: a
    // username nobody knows is answered like a wrong password (3.1.1: 4,
    // 5.0: 0x86 = 134), so an unknown user and a wrong password look alike.
    let broker = Broker::start("");
    let (out, s) = bench(&["conn", "--port", &port(&broker), "-n", "5", "--username", "nobody", "--protocol", "5"]);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert_eq!(s["connects"], 0, "{s}");
    assert_eq!(s["failed"], 5, "{s}");
    assert_eq!(s["connack_codes"]["134"], 5, "{s}");
}

fn pubsub(qos: &str, protocol: &str) {
    let broker = Broker::start("");
    let args = ["pubsub", "--port", &port(&broker), "--qos", qos, "--protocol", protocol];
    let (out, s) = bench(&[&args[..], &["-s", "2", "-p", "2", "--count", "500", "--size", "100"]].concat());
    assert!(out.status.success(), "{s}");
    assert_eq!(s["mode"], "pubsub");
    assert_eq!(s["published"], 1000, "{s}");
    assert_eq!(s["expected"], 2000, "{s}");
    assert_eq!(s["received"], 2000, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["foreign"], 0, "{s}");
    assert_eq!(s["errors"], Value::Array(vec![]), "{s}");
    if qos != "0" {
        assert_eq!(s["acked"], 1000, "{s}");
        assert_eq!(s["unacked"], 0, "{s}");
    }
    assert!(s["p50_us"].as_u64() <= s["p99_us"].as_u64(), "{s}");
    assert!(s["p99_us"].as_u64() <= s["max_us"].as_u64(), "{s}");
}

#[test]
fn pubsub_qos0_loses_nothing() {
    pubsub("0", "4");
}

#[test]
fn pubsub_qos1_loses_nothing_and_duplicates_nothing() {
    pubsub("1", "4");
}

#[test]
fn pubsub_qos2_over_mqtt5() {
    pubsub("2", "5");
}

#[test]
fn pubsub_at_a_rate_stops_at_the_duration() {
    let broker = Broker::start("");
    let (out, s) = bench(&[
        "pubsub",
        "--port",
        &port(&broker),
        "--qos",
        "1",
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--count",
        "1000",
    ]);
    assert!(out.status.success(), "{s}");
    assert_eq!(s["published"], 200, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
}

#[test]
fn refuses_hosts_outside_loopback() {
    for host in ["192.0.2.1", "::1", "example.com"] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis-bench"))
            .args(["conn", "--host", host, "-n", "1"])
            .output()
            .expect("run portcullis-bench");
        assert_eq!(out.status.code(), Some(2), "{host}");
        assert!(out.stdout.is_empty(), "{host}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.0/8"), "{host}");
    }
}

#[test]
fn client_id_prefix_names_every_client() {
    // A fixed prefix gives the same client ids on every run (what a warm
    // auth cache needs); the broker logs each client id it admits.
    let broker = Broker::start("");
    let (out, s) = bench(&["conn", "--port", &port(&broker), "-n", "3", "--client-id-prefix", "warm-"]);
    assert!(out.status.success(), "{s}");
    let (out, s) = bench(&["pubsub", "--port", &port(&broker), "--count", "5", "--client-id-prefix", "ps-"]);
    assert!(out.status.success(), "{s}");
    for id in ["warm-c0", "warm-c1", "warm-c2", "ps-s0", "ps-p0"] {
        assert!(broker.wait_log(id, std::time::Duration::from_secs(5)), "{id} not seen:\n{}", broker.log());
    }
    assert!(!broker.log().contains("pcb-"), "the default prefix was not used");

    let out = Command::new(env!("CARGO_BIN_EXE_portcullis-bench"))
        .args(["conn", "--port", &port(&broker), "-n", "1", "--client-id-prefix", &"x".repeat(65)])
        .output()
        .expect("run portcullis-bench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--client-id-prefix"));
}
