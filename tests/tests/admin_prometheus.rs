//! Prometheus through the admin API of the real binary: both paths serve
//! the text format, which the official parser (Python `prometheus_client`)
//! reads; a scrape moves by exactly what clients did; the access rule (a
//! viewer's key, not a publisher's; none with `prometheus_public = true`);
//! and the JSON `metrics` endpoint
//! agrees with the scrape.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use portcullis_core::codec::Properties;
use portcullis_tests::kit::open_v5;
use portcullis_tests::Broker;
use reqwest::StatusCode;
use serde_json::Value;

const SECRET: &str = "s3cret-0123456789abcdef";

/// Parses a text-format document with the official parser: `name{labels}`
/// → value.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
json.dump(out, sys.stdout)
"#;

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
    panic!("no Python with prometheus_client among {candidates:?}: apt-get install python3-prometheus-client");
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "the parser refused it: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("parser output")
}

fn broker(dir: &Path, extra: &str) -> Broker {
    let boot = dir.join("bootstrap");
    std::fs::write(&boot, format!("view:{SECRET}:viewer\npub:{SECRET}:publisher\nadmin:{SECRET}:administrator\n"))
        .expect("bootstrap");
    Broker::start(&format!(
        "[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"{}\"\ndata_dir = \"{}\"\nbootstrap_file = \"{}\"\n{extra}",
        dir.join("admin.sock").display(),
        dir.join("data").display(),
        boot.display()
    ))
}

async fn get(b: &Broker, path: &str, key: Option<&str>) -> (StatusCode, Option<String>, String) {
    let addr = b.admin_addr().expect("admin address");
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(k) = key {
        req = req.basic_auth(k, Some(SECRET));
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let ctype = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, ctype, res.text().await.expect("body"))
}

#[tokio::test]
async fn both_paths_parse_and_move_by_what_clients_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path(), "");
    let (st, ctype, before) = get(&b, "/api/v5/prometheus/stats", Some("view")).await;
    assert_eq!(st, StatusCode::OK, "{before}");
    assert_eq!(ctype.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let before = parse(&before);
    let connections = "portcullis_connections{}";
    let connects = "portcullis_packets_received_total{type=\"connect\"}";
    assert!(before.contains_key(connections) && before.contains_key(connects), "{before:?}");

    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(open_v5(b.addr, &format!("prom-{i}"), true, Properties::default()).await.0);
    }
    let (st, _, after) = get(&b, "/metrics", Some("view")).await;
    assert_eq!(st, StatusCode::OK);
    let after = parse(&after);
    assert_eq!(after[connections] - before[connections], 3.0, "three connections more");
    assert_eq!(after[connects] - before[connects], 3.0, "three CONNECTs more");
    // The same series on both paths.
    let (_, _, again) = get(&b, "/api/v5/prometheus/stats", Some("admin")).await;
    let again = parse(&again);
    assert_eq!(again.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());

    // The JSON metrics read the same scrape.
    let addr = b.admin_addr().expect("admin");
    let v: Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v5/metrics?aggregate=true"))
        .basic_auth("view", Some(SECRET))
        .send()
        .await
        .expect("metrics")
        .json()
        .await
        .expect("json");
    assert_eq!(v["packets.connect.received"].as_f64(), Some(again[connects]), "{v}");
    drop(clients);
}

#[tokio::test]
async fn a_key_is_needed_unless_prometheus_is_public() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path(), "");
    for path in ["/api/v5/prometheus/stats", "/metrics"] {
        assert_eq!(get(&b, path, None).await.0, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(get(&b, path, Some("pub")).await.0, StatusCode::FORBIDDEN, "{path}: a publisher");
        assert_eq!(get(&b, path, Some("view")).await.0, StatusCode::OK, "{path}: a viewer");
    }
    let dir2 = tempfile::tempdir().expect("tempdir");
    let open = broker(dir2.path(), "prometheus_public = true\n");
    for path in ["/api/v5/prometheus/stats", "/metrics"] {
        let (st, _, text) = get(&open, path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert!(parse(&text).keys().any(|k| k.starts_with("portcullis_connections")));
    }
    // Only those paths.
    assert_eq!(get(&open, "/api/v5/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&open, "/api/v5/clients", None).await.0, StatusCode::UNAUTHORIZED);
    assert!(open.wait_log("admin API started", Duration::from_secs(5)));
}
