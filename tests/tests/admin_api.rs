//! The admin HTTP API through the real binary: every endpoint with its
//! success and its errors (400, 401, 403 for a viewer writing and a
//! publisher reading, 404), the publish status mapping, percent-encoded
//! retained topics, pagination at exact multiples, a kick seen by the
//! client, provider counters that move by one per check, bans shared with
//! the brute-force guard, API keys and the lockout, emqttd's
//! `/mqtt/publish`, and the OpenAPI document against the routes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::backend::{login, try_login};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "s3cret-0123456789abcdef";
const V5: ProtocolVersion = ProtocolVersion::V5;
const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;

/// A path as a TOML basic string.
fn tp(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// A broker with the admin API, three bootstrap keys (`admin`, `view`,
/// `pub`, secret [`SECRET`]), anonymous loopback clients and a password
/// file (alice/alice-pw, bob/bob-pw), an ACL that denies publishing to
/// `denied/#` (and lets clients watch `$SYS/brokers/+/clients/#`), and
/// emqttd's form on the `tcp` listener.
struct Setup {
    broker: Broker,
    api: Api,
    dir: tempfile::TempDir,
}

fn passwd(file: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(portcullis_tests::binary())
        .args(["passwd", file.to_str().expect("utf-8"), user, "--hash", "pbkdf2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("portcullis passwd");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("write");
    assert!(child.wait().expect("wait").success(), "passwd {user}");
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(
        &boot,
        format!("# test keys\nadmin:{SECRET}:administrator\nview:{SECRET}:viewer\npub:{SECRET}:publisher\n"),
    )
    .expect("bootstrap");
    let pw = dir.path().join("passwd");
    passwd(&pw, "alice", "alice-pw");
    passwd(&pw, "bob", "bob-pw");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        "[[rule]]\npermission = \"deny\"\naction = \"publish\"\ntopics = [\"denied/#\"]\n\n\
         [[rule]]\npermission = \"allow\"\naction = \"subscribe\"\ntopics = [\"$SYS/brokers/+/clients/#\"]\n\n\
         [[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n",
    )
    .expect("acl");
    let cfg = format!(
        "[auth]\nchain = [\"anon\", \"pw\"]\n[auth.anonymous.anon]\n[auth.password_file.pw]\npath = {}\n\
         [acl]\nchain = [\"rules\"]\n[acl.file.rules]\npath = {}\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\nmqtt_publish_listener = \"tcp\"\n{extra}\n",
        tp(&pw),
        tp(&acl),
        tp(&dir.path().join("data")),
        tp(&boot),
    );
    let broker = Broker::start(&cfg);
    let addr = broker.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", broker.log()));
    Setup { broker, api: Api::new(addr, Some(("admin", SECRET))), dir }
}

/// An HTTP client for the admin API, with a key or without.
#[derive(Clone)]
struct Api {
    base: String,
    key: Option<(String, String)>,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr, key: Option<(&str, &str)>) -> Api {
        Api {
            base: format!("http://{addr}"),
            key: key.map(|(k, s)| (k.to_string(), s.to_string())),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
        }
    }

    fn with_key(&self, key: &str, secret: &str) -> Api {
        Api { key: Some((key.to_string(), secret.to_string())), ..self.clone() }
    }

    fn anonymous(&self) -> Api {
        Api { key: None, ..self.clone() }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some((k, s)) = &self.key {
            req = req.basic_auth(k, Some(s));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }
}

/// An error body has the API's shape; returns its code.
fn code(v: &Value) -> &str {
    assert!(v["message"].is_string(), "error without a message: {v}");
    let c = v["code"].as_str().unwrap_or_else(|| panic!("error without a code: {v}"));
    assert!(c.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "not UPPER_SNAKE: {c}");
    c
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn v5(addr: SocketAddr, id: &str) -> Raw {
    open_v5(addr, id, true, Properties::default()).await.0
}

/// The next PUBLISH (acknowledged), within 5 s.
async fn next_pub(raw: &mut Raw) -> portcullis_core::codec::Publish {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match raw.recv_timeout(end.saturating_duration_since(tokio::time::Instant::now())).await {
            Ok(Some(Packet::Publish(p))) => {
                ack_incoming(raw, &p).await;
                return p;
            }
            Ok(Some(_)) => {}
            other => panic!("no PUBLISH: {other:?}"),
        }
    }
}

async fn counters(api: &Api, kind: &str, id: &str) -> Value {
    let (s, v) = api.get(&format!("/api/v5/{kind}/{id}/status")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["metrics"].clone()
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn without_a_key_only_the_status_and_the_document_answer() {
    // No key configured at all: no default key works from the network.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&format!("[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\n", tp(dir.path())));
    let addr = b.admin_addr().expect("admin API");
    let api = Api::new(addr, None);
    let (s, v) = api.get("/api/v5/status").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().is_some_and(|t| t.contains("is started")), "{v}");
    let (s, v) = api.get("/api/v5/status?format=json").await;
    assert_eq!((s, v["app_status"].as_str()), (StatusCode::OK, Some("running")), "{v}");
    let (s, v) = api.get("/api/v5/status?format=xml").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    assert_eq!(api.get("/api-docs/openapi.json").await.0, StatusCode::OK);
    for key in [None, Some(("admin", "public")), Some(("admin", "admin"))] {
        let api = Api::new(addr, key);
        for (m, p) in [
            (Method::GET, "/api/v5/clients"),
            (Method::GET, "/api/v5/nodes"),
            (Method::POST, "/api/v5/publish"),
            (Method::POST, "/api/v5/api_key"),
            (Method::DELETE, "/api/v5/clients/x"),
        ] {
            let (s, v) = api.call(m.clone(), p, Some(json!({}))).await;
            assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{m} {p} with {key:?}");
        }
    }
    assert!(b.log().contains("no API key exists"), "the start warns");
}

#[tokio::test]
async fn roles_viewer_reads_publisher_publishes_administrator_does_all() {
    let s = setup("");
    let admin = &s.api;
    let view = admin.with_key("view", SECRET);
    let publ = admin.with_key("pub", SECRET);
    assert_eq!(view.get("/api/v5/clients").await.0, StatusCode::OK);
    for (m, p, body) in [
        (Method::POST, "/api/v5/publish", json!({"topic": "t", "payload": "x"})),
        (Method::DELETE, "/api/v5/clients/someone", Value::Null),
        (Method::POST, "/api/v5/configs/reload", Value::Null),
        (Method::POST, "/api/v5/api_key", json!({"name": "x"})),
        (Method::DELETE, "/api/v5/authorization/cache", Value::Null),
    ] {
        let (st, v) = view.call(m.clone(), p, Some(body)).await;
        assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "viewer {m} {p}");
    }
    for p in ["/api/v5/clients", "/api/v5/stats", "/api/v5/mqtt/retainer/messages", "/api/v5/api_key"] {
        let (st, v) = publ.get(p).await;
        assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "publisher GET {p}");
    }
    let (st, v) = publ.post("/api/v5/publish", json!({"topic": "t", "payload": "x"})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v) = publ.post("/api/v5/publish/bulk", json!([{"topic": "t", "payload": "x"}])).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // A wrong secret for a known key is a 401, not a 403.
    let (st, v) = admin.with_key("view", "wrong").get("/api/v5/clients").await;
    assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
}

#[tokio::test]
async fn node_stats_metrics_listeners() {
    let s = setup("");
    let api = &s.api;
    let (st, nodes) = api.get("/api/v5/nodes").await;
    assert_eq!(st, StatusCode::OK);
    let node = nodes[0]["node"].as_str().expect("node").to_string();
    assert_eq!(api.get(&format!("/api/v5/nodes/{}", enc(&node))).await.0, StatusCode::OK);
    let (st, v) = api.get("/api/v5/nodes/elsewhere").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));

    let before = api.get("/api/v5/stats?aggregate=true").await.1["connections.count"].as_u64().expect("count");
    let _c = v5(s.broker.addr, "stats-1").await;
    let (st, v) = api.get("/api/v5/stats?aggregate=true").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["connections.count"].as_u64(), Some(before + 1), "{v}");
    let (_, v) = api.get("/api/v5/stats").await;
    assert_eq!(v[0]["node"].as_str(), Some(node.as_str()), "per node by default: {v}");
    let (st, v) = api.get("/api/v5/stats?aggregate=maybe").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    let (st, v) = api.get("/api/v5/metrics?aggregate=true").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["packets.connect.received"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert!(v["auth.default.pw.calls"].as_u64().is_some(), "per provider: {v}");
    let (_, v) = api.get("/api/v5/metrics").await;
    assert!(v[0]["metrics"]["messages.received"].as_u64().is_some(), "{v}");

    let (st, v) = api.get("/api/v5/listeners").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["id"], "tcp:tcp");
    assert_eq!(v[0]["bind"], s.broker.addr.to_string(), "the bound address");
    assert!(v[0]["current_connections"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert_eq!(api.get("/api/v5/listeners/tcp%3Atcp").await.0, StatusCode::OK);
    let (st, v) = api.get("/api/v5/listeners/tcp%3Anope").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
}

#[tokio::test]
async fn clients_pages_at_exact_multiples_and_filters() {
    let s = setup("");
    let api = &s.api;
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(v5(s.broker.addr, &format!("page-{i:02}")).await);
    }
    let mut alice = login(s.broker.addr, ProtocolVersion::V311, "alice-dev", "alice", "alice-pw").await;
    sync(&mut alice).await;
    let (st, p1) = api.get("/api/v5/clients?like_clientid=page-&limit=10&page=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p1["meta"], json!({"page": 1, "limit": 10, "count": 20, "hasnext": true}));
    assert_eq!(p1["data"].as_array().map(Vec::len), Some(10));
    assert_eq!(p1["data"][0]["clientid"], "page-00", "sorted by client id");
    let (_, p2) = api.get("/api/v5/clients?like_clientid=page-&limit=10&page=2").await;
    assert_eq!(p2["meta"], json!({"page": 2, "limit": 10, "count": 20, "hasnext": false}));
    assert_eq!(p2["data"][9]["clientid"], "page-19");
    let (_, p3) = api.get("/api/v5/clients?like_clientid=page-&limit=10&page=3").await;
    assert_eq!((p3["data"].as_array().map(Vec::len), &p3["meta"]["hasnext"]), (Some(0), &json!(false)));

    let (_, v) = api.get("/api/v5/clients?username=alice").await;
    assert_eq!(v["meta"]["count"], 1, "{v}");
    let c = &v["data"][0];
    assert_eq!(
        (c["clientid"].as_str(), c["proto_ver"].as_u64(), c["connected"].as_bool()),
        (Some("alice-dev"), Some(4), Some(true))
    );
    assert_eq!(c["ip_address"], "127.0.0.1");
    assert_eq!(c["listener"], "tcp");
    for (q, n) in [
        ("clientid=page-07", 1),
        ("like_username=lic", 1),
        ("proto_ver=5&like_clientid=page-", 20),
        ("proto_ver=4", 1),
        ("conn_state=disconnected", 0),
        ("ip_address=127.0.0.1", 21),
        ("ip_address=10.0.0.1", 0),
        ("node=elsewhere", 0),
        // An empty value counts as not given.
        ("clientid=&username=&like_clientid=&ip_address=", 21),
        ("page=1000000000", 21),
    ] {
        let (st, v) = api.get(&format!("/api/v5/clients?{q}")).await;
        assert_eq!((st, v["meta"]["count"].as_u64()), (StatusCode::OK, Some(n)), "{q}: {v}");
    }
    for q in [
        "page=0",
        "limit=0",
        "limit=10001",
        "conn_state=idle",
        "proto_ver=6",
        "ip_address=nope",
        "page=x",
        "page=1000000001",
    ] {
        let (st, v) = api.get(&format!("/api/v5/clients?{q}")).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{q}");
    }
    let (st, v) = api.get("/api/v5/clients/page-03").await;
    assert_eq!((st, v["clientid"].as_str()), (StatusCode::OK, Some("page-03")));
    let (st, v) = api.get("/api/v5/clients/nobody").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "CLIENTID_NOT_FOUND"));
}

#[tokio::test]
async fn a_kick_reaches_the_client_as_disconnect_0x98_and_ends_its_session() {
    let s = setup("");
    let api = &s.api;
    let mut c = v5(s.broker.addr, "kick/me #1").await;
    let (st, _) = api.delete(&format!("/api/v5/clients/{}", enc("kick/me #1"))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x98, "Administrative action"),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    eventually_gone(api, "kick/me #1").await;
    let (st, v) = api.delete("/api/v5/clients/kick%2Fme%20%231").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "CLIENTID_NOT_FOUND"));

    // Bulk: both kicked, the unknown one skipped.
    let mut a = v5(s.broker.addr, "bulk-a").await;
    let mut b = v5(s.broker.addr, "bulk-b").await;
    let (st, _) = api.post("/api/v5/clients/kickout/bulk", json!(["bulk-a", "bulk-b", "nobody"])).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for raw in [&mut a, &mut b] {
        assert!(matches!(raw.recv().await, Some(Packet::Disconnect(d)) if d.reason == 0x98));
    }
    let (st, v) = api.post("/api/v5/clients/kickout/bulk", json!({"not": "a list"})).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    // A session without a connection ends at once.
    let mut c = connect_packet(V5, "offline", false);
    c.properties.session_expiry_interval = Some(300);
    let (raw, _) = open(s.broker.addr, c).await;
    disconnect(raw).await;
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = api.get("/api/v5/clients/offline").await;
        if v["connected"] == false {
            assert_eq!(v["ip_address"], "127.0.0.1", "the last connection's: {v}");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "still connected: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, v) = api.get("/api/v5/clients?conn_state=disconnected").await;
    assert_eq!(v["meta"]["count"], 1, "{v}");
    assert_eq!(api.delete("/api/v5/clients/offline").await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/api/v5/clients/offline").await.0, StatusCode::NOT_FOUND);
}

async fn eventually_gone(api: &Api, id: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while api.get(&format!("/api/v5/clients/{}", enc(id))).await.0 != StatusCode::NOT_FOUND {
        assert!(tokio::time::Instant::now() < end, "{id} still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscriptions_of_a_client_and_of_everyone_and_topics() {
    let s = setup("");
    let api = &s.api;
    let mut c = v5(s.broker.addr, "sub-1").await;
    let mut other = v5(s.broker.addr, "sub-2").await;
    subscribe(&mut other, 1, &[("$share/g1/jobs/+", Q1), ("x/y", Q0)]).await;
    // A retained message is sent on an operator's subscribe (rh 0).
    let (st, _) = api.post("/api/v5/publish", json!({"topic": "news/today", "payload": "old", "retain": true})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v) = api
        .post("/api/v5/clients/sub-1/subscribe", json!({"topic": "news/#", "qos": 1, "nl": 0, "rap": 1, "rh": 0}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["topic"].as_str(), v["qos"].as_u64(), v["rap"].as_u64()), (Some("news/#"), Some(1), Some(1)));
    let p = next_pub(&mut c).await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.retain), ("news/today", &b"old"[..], true));
    let (st, v) =
        api.post("/api/v5/clients/sub-1/subscribe/bulk", json!([{"topic": "a/+"}, {"topic": "b/#", "qos": 2}])).await;
    assert_eq!((st, v.as_array().map(Vec::len)), (StatusCode::OK, Some(2)), "{v}");
    let (st, v) = api.get("/api/v5/clients/sub-1/subscriptions").await;
    let topics: Vec<&str> = v.as_array().expect("list").iter().filter_map(|s| s["topic"].as_str()).collect();
    assert_eq!((st, topics), (StatusCode::OK, vec!["a/+", "b/#", "news/#"]));
    // Delivered through the subscription the operator made.
    let (st, _) = api.post("/api/v5/publish", json!({"topic": "a/1", "payload": "hi"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(next_pub(&mut c).await.topic, "a/1");

    for (body, why) in [
        (json!({"topic": "a/#/b"}), "bad filter"),
        (json!({"topic": "a", "qos": 3}), "qos"),
        (json!({"topic": "a", "rh": 3}), "rh"),
        (json!({"topic": "$share/g/a", "nl": 1}), "shared no-local"),
        (json!({"qos": 1}), "no topic"),
    ] {
        let (st, v) = api.post("/api/v5/clients/sub-1/subscribe", body).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{why}");
    }
    let (st, v) = api.post("/api/v5/clients/nobody/subscribe", json!({"topic": "a"})).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "CLIENTID_NOT_FOUND"));
    assert_eq!(api.get("/api/v5/clients/nobody/subscriptions").await.0, StatusCode::NOT_FOUND);

    for (q, n) in [
        ("clientid=sub-1", 3),
        ("topic=jobs/%2B", 1),
        ("share_group=g1", 1),
        ("qos=2", 1),
        ("match_topic=a/zzz", 1),
        ("match_topic=jobs/7", 1),
        ("clientid=sub-2&qos=0", 1),
    ] {
        let (st, v) = api.get(&format!("/api/v5/subscriptions?{q}")).await;
        assert_eq!((st, v["meta"]["count"].as_u64()), (StatusCode::OK, Some(n)), "{q}: {v}");
    }
    let (st, v) = api.get("/api/v5/subscriptions?match_topic=a/%2B").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "a filter is not a topic name");
    let (st, v) = api.get("/api/v5/subscriptions?qos=7").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    let (st, v) = api.get("/api/v5/topics").await;
    assert_eq!(st, StatusCode::OK);
    let topics: Vec<&str> = v["data"].as_array().expect("data").iter().filter_map(|t| t["topic"].as_str()).collect();
    assert_eq!(topics, vec!["a/+", "b/#", "jobs/+", "news/#", "x/y"]);
    let (st, v) = api.get(&format!("/api/v5/topics/{}", enc("b/#"))).await;
    assert_eq!((st, v[0]["subscriptions"].as_u64()), (StatusCode::OK, Some(1)));
    assert_eq!(api.get("/api/v5/topics/none").await.0, StatusCode::NOT_FOUND);

    let (st, _) = api.post("/api/v5/clients/sub-1/unsubscribe", json!({"topic": "a/+"})).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) =
        api.post("/api/v5/clients/sub-1/unsubscribe/bulk", json!([{"topic": "b/#"}, {"topic": "gone"}])).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = api.get("/api/v5/clients/sub-1/subscriptions").await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (st, v) = api.post("/api/v5/clients/nobody/unsubscribe", json!({"topic": "a"})).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "CLIENTID_NOT_FOUND"));
    let (st, v) = api.post("/api/v5/clients/sub-1/unsubscribe", json!({"filter": "a"})).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
}

#[tokio::test]
async fn retained_messages_by_percent_encoded_topic() {
    let s = setup("");
    let api = &s.api;
    let topics = ["a/$b/c", "a/x/c", "a/x/d", "$dollar/lead", "sp ace/%/é"];
    for t in topics {
        let (st, v) = api
            .post(
                "/api/v5/publish",
                json!({"topic": t, "payload": base64::engine::general_purpose::STANDARD.encode(t), "payload_encoding": "base64", "retain": true, "qos": 1}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{t}: {v}");
    }
    let (st, v) = api.get("/api/v5/mqtt/retainer/messages?limit=2").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["meta"]["count"], 5, "no $SYS in the list: {v}");
    assert_eq!(v["meta"]["hasnext"], true);
    assert_eq!(v["data"][0]["topic"], "$dollar/lead", "by topic");
    let (_, v) = api.get(&format!("/api/v5/mqtt/retainer/messages?topic={}", enc("a/+/c"))).await;
    assert_eq!(v["meta"]["count"], 2, "{v}");
    let (st, v) = api.get("/api/v5/mqtt/retainer/messages?topic=a/%23/c").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));

    for t in topics {
        let (st, v) = api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc(t))).await;
        assert_eq!(st, StatusCode::OK, "{t}: {v}");
        assert_eq!(v["topic"], t);
        assert_eq!(v["qos"], 1);
        let payload =
            base64::engine::general_purpose::STANDARD.decode(v["payload"].as_str().expect("payload")).expect("b64");
        assert_eq!(payload, t.as_bytes());
    }
    // `$` may be sent as it is.
    assert_eq!(api.get("/api/v5/mqtt/retainer/message/a%2F$b%2Fc").await.0, StatusCode::OK);
    for t in ["a/+/c", "a/#"] {
        let (st, v) = api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc(t))).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "GET takes a topic name: {t}");
    }
    let (st, v) = api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/y/c"))).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));

    let (st, _) = api.delete(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/$b/c"))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/$b/c"))).await.0, StatusCode::NOT_FOUND);
    let (st, _) = api.delete(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/+/c"))).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "a filter deletes what it matches");
    assert_eq!(api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/x/c"))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/x/d"))).await.0, StatusCode::OK);
    let (st, _) = api.delete(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/#"))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = api.delete(&format!("/api/v5/mqtt/retainer/message/{}", enc("a/#"))).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "nothing left to delete");
    let (_, v) = api.get("/api/v5/stats?aggregate=true").await;
    assert_eq!(v["retained.count"], 2, "the gauge follows: {v}");
    assert_eq!(api.delete("/api/v5/mqtt/retainer/messages").await.0, StatusCode::NO_CONTENT);
    let (_, v) = api.get("/api/v5/mqtt/retainer/messages").await;
    assert_eq!(v["meta"]["count"], 0);
    // A new subscriber gets nothing.
    let mut c = v5(s.broker.addr, "late").await;
    subscribe(&mut c, 1, &[("#", Q0)]).await;
    expect_silence(&mut c, Duration::from_millis(300), "no retained message left").await;
}

#[tokio::test]
async fn publish_status_codes_properties_and_bulk() {
    let s = setup("");
    let api = &s.api;
    let mut sub = v5(s.broker.addr, "listener-1").await;
    subscribe(&mut sub, 1, &[("in/#", Q1)]).await;
    let (st, v) = api
        .post(
            "/api/v5/publish",
            json!({
                "topic": "in/1", "payload": "hello", "qos": 1,
                "properties": {"user_properties": {"k": "v"}, "content_type": "text/plain",
                               "response_topic": "out/1", "correlation_data": "c-1", "payload_format_indicator": 1,
                               "message_expiry_interval": 60}
            }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["id"].as_str().expect("id");
    assert_eq!(id.len(), 32, "{id}");
    let p = next_pub(&mut sub).await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.qos), ("in/1", &b"hello"[..], Q1));
    assert_eq!(p.properties.user_properties, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.response_topic.as_deref(), Some("out/1"));
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(p.properties.payload_format_indicator, Some(1));
    assert!(p.properties.message_expiry_interval.is_some_and(|e| e <= 60 && e > 50));

    let (st, v) = api.post("/api/v5/publish", json!({"topic": "nobody/listens", "payload": "x"})).await;
    assert_eq!((st, &v), (StatusCode::ACCEPTED, &json!({"reason_code": 16, "message": "no_matching_subscribers"})));

    for (body, want, rc) in [
        (json!({"topic": "in/+", "payload": "x"}), "TOPIC_NAME_INVALID", 144),
        (json!({"topic": "$SYS/x", "payload": "x"}), "TOPIC_NAME_INVALID", 144),
        (json!({"topic": "in/1", "payload": "%%%", "payload_encoding": "base64"}), "PAYLOAD_FORMAT_INVALID", 153),
        (json!({"topic": "in/1", "payload": "x", "qos": 3}), "QOS_NOT_SUPPORTED", 155),
        (json!({"topic": "in/1", "payload": "x", "properties": {"response_topic": "a/#"}}), "TOPIC_NAME_INVALID", 144),
        (json!({"topic": "in/1", "payload": "x".repeat(1_300_000)}), "QUOTA_EXCEEDED", 151),
    ] {
        let (st, v) = api.post("/api/v5/publish", body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!((code(&v), v["reason_code"].as_u64()), (want, Some(rc)), "{v}");
    }
    let (st, v) = api.post("/api/v5/publish", json!({"payload": "x"})).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "no topic");

    let (st, v) = api
        .post("/api/v5/publish/bulk", json!([{"topic": "in/2", "payload": "a"}, {"topic": "in/3", "payload": "b"}]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v[0]["id"].is_string() && v[1]["id"].is_string(), "{v}");
    assert_eq!(next_pub(&mut sub).await.topic, "in/2");
    assert_eq!(next_pub(&mut sub).await.topic, "in/3");
    let (st, v) = api
        .post("/api/v5/publish/bulk", json!([{"topic": "in/4", "payload": "a"}, {"topic": "void", "payload": "b"}]))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v[1]["reason_code"], 16);
    let (st, v) = api
        .post("/api/v5/publish/bulk", json!([{"topic": "in/5", "payload": "a"}, {"topic": "in/#", "payload": "b"}]))
        .await;
    assert_eq!((st, v["reason_code"].as_u64()), (StatusCode::BAD_REQUEST, Some(144)), "{v}");
    assert_eq!(next_pub(&mut sub).await.topic, "in/4", "in/5 was not published");
    expect_silence(&mut sub, Duration::from_millis(300), "nothing of a refused bulk").await;
    let (st, _) = api.post("/api/v5/publish/bulk", json!([])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bans_are_the_guards() {
    let s = setup("");
    let api = &s.api;
    let addr = s.broker.addr;
    let src: std::net::IpAddr = "127.0.0.7".parse().expect("ip");
    let (st, v) =
        api.post("/api/v5/banned", json!({"as": "peerhost", "who": "127.0.0.7", "by": "ops", "reason": "test"})).await;
    assert_eq!((st, v["who"].as_str()), (StatusCode::OK, Some("127.0.0.7")), "{v}");
    let mut c = Raw::connect_from(addr, src).await;
    c.version = V5;
    c.send_packet(&Packet::Connect(Box::new(connect_packet(V5, "banned-1", true)))).await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(a)) if a.code == 0x8A), "CONNACK banned");
    let (st, v) = api.post("/api/v5/banned", json!({"as": "peerhost_username", "who": "eve@127.0.0.8"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = api.get("/api/v5/banned").await;
    assert_eq!((st, v["meta"]["count"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
    let whos: Vec<&str> = v["data"].as_array().expect("data").iter().filter_map(|b| b["who"].as_str()).collect();
    assert!(whos.contains(&"eve@127.0.0.8") && whos.contains(&"127.0.0.7"), "{whos:?}");
    assert_eq!(api.delete("/api/v5/banned/peerhost/127.0.0.7").await.0, StatusCode::NO_CONTENT);
    let mut c = Raw::connect_from(addr, src).await;
    c.version = V5;
    c.send_packet(&Packet::Connect(Box::new(connect_packet(V5, "banned-2", true)))).await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(a)) if a.code == 0), "admitted after the ban is lifted");
    assert_eq!(
        api.delete(&format!("/api/v5/banned/peerhost_username/{}", enc("eve@127.0.0.8"))).await.0,
        StatusCode::NO_CONTENT
    );
    let (st, v) = api.delete("/api/v5/banned/peerhost/127.0.0.7").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    for body in [
        json!({"as": "clientid", "who": ""}),
        json!({"as": "peerhost", "who": "not-an-ip"}),
        json!({"as": "peerhost_username", "who": "no-at-sign"}),
        json!({"as": "peerhost", "who": "127.0.0.9", "until": "2001-01-01T00:00:00Z"}),
        json!({"as": "peerhost", "who": "127.0.0.9", "until": "soon"}),
    ] {
        let (st, v) = api.post("/api/v5/banned", body.clone()).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{body}");
    }
    // A client id is banned by an operator only (never counted).
    let (st, _) = api.delete("/api/v5/banned/clientid/x").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = api.delete("/api/v5/banned/nothing/x").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn provider_counters_move_by_one_per_check_and_explain_shares_the_cli_code() {
    let s = setup("");
    let api = &s.api;
    let (st, v) = api.get("/api/v5/authentication").await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = v.as_array().expect("list").iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(ids, vec!["anon", "pw"]);
    assert_eq!(v[1]["backend"], "password_file");
    assert_eq!(v[1]["status"], "no_connection");

    let pw0 = counters(api, "authentication", "pw").await;
    let anon0 = counters(api, "authentication", "anon").await;
    // One CONNECT, one check: each provider the chain reaches counts one.
    let _alice = login(s.broker.addr, V5, "count-1", "alice", "alice-pw").await;
    let pw1 = counters(api, "authentication", "pw").await;
    let anon1 = counters(api, "authentication", "anon").await;
    assert_eq!(pw1["calls"].as_u64(), pw0["calls"].as_u64().map(|n| n + 1), "{pw0} -> {pw1}");
    assert_eq!(pw1["allow"].as_u64(), pw0["allow"].as_u64().map(|n| n + 1));
    assert_eq!(anon1["ignore"].as_u64(), anon0["ignore"].as_u64().map(|n| n + 1), "credentials: not anon's");
    let (_, code_) = try_login(s.broker.addr, V5, "count-2", Some("bob"), Some("wrong")).await;
    assert_eq!(code_, Some(0x86));
    let pw2 = counters(api, "authentication", "pw").await;
    assert_eq!(pw2["calls"].as_u64(), pw1["calls"].as_u64().map(|n| n + 1));
    assert_eq!(pw2["deny"].as_u64(), pw1["deny"].as_u64().map(|n| n + 1));

    // Explain: the chain without cache or guard (the same function as
    // `portcullis auth check`), counted once.
    let (st, v) = api
        .post("/api/v5/authentication/explain", json!({"clientid": "e", "username": "alice", "password": "alice-pw"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["decision"].as_str(), v["chain"].as_str()), (Some("allow"), Some("default")));
    assert_eq!(v["steps"][0]["result"], "ignore");
    assert_eq!(v["steps"][1]["provider"], "pw");
    assert!(v["decided_by"].as_str().is_some_and(|d| d.starts_with("provider pw")), "{v}");
    assert!(!v.to_string().contains("alice-pw"), "the password is not echoed");
    let pw3 = counters(api, "authentication", "pw").await;
    assert_eq!(pw3["calls"].as_u64(), pw2["calls"].as_u64().map(|n| n + 1));
    let (_, v) =
        api.post("/api/v5/authentication/explain", json!({"clientid": "e", "username": "bob", "password": "x"})).await;
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("bad_credentials")));
    let (_, v) = api.post("/api/v5/authentication/explain", json!({"clientid": "e", "peerhost": "10.1.2.3"})).await;
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("deny"), Some("not_authorized")), "{v}");
    for body in [json!({"clientid": "e", "peerhost": "nope"}), json!({"clientid": "e", "listener": "nope"}), json!({})]
    {
        let (st, v) = api.post("/api/v5/authentication/explain", body.clone()).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{body}");
    }
    let (st, v) = api.get("/api/v5/authentication/nope/status").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));

    // The CLI prints the same decision from the same code.
    let out = std::process::Command::new(portcullis_tests::binary())
        .arg("--config")
        .arg(&s.broker.config_path)
        .args(["acl", "explain", "--client-id", "e", "--publish", "denied/x"])
        .output()
        .expect("acl explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("decision: DENY"), "{text}");
    let (st, v) = api
        .post("/api/v5/authorization/explain", json!({"clientid": "e", "action": "publish", "topic": "denied/x"}))
        .await;
    assert_eq!((st, v["decision"].as_str()), (StatusCode::OK, Some("deny")), "{v}");
    let rule = v["steps"][0]["rule"].as_str().expect("rule").to_string();
    assert!(text.contains(&rule), "the CLI names the same rule {rule}: {text}");
    let (_, v) = api
        .post("/api/v5/authorization/explain", json!({"clientid": "e", "action": "subscribe", "topic": "denied/#"}))
        .await;
    assert_eq!(v["decision"], "allow");
    for body in [
        json!({"clientid": "e", "action": "delete", "topic": "x"}),
        json!({"clientid": "e", "action": "publish", "topic": "a/+"}),
        json!({"clientid": "e", "action": "subscribe", "topic": "a", "qos": 5}),
    ] {
        let (st, v) = api.post("/api/v5/authorization/explain", body.clone()).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{body}");
    }

    let (st, v) = api.get("/api/v5/authorization/sources").await;
    assert_eq!((st, v["sources"][0]["id"].as_str()), (StatusCode::OK, Some("rules")), "{v}");
    let acl0 = counters(api, "authorization/sources", "rules").await;
    let mut c = login(s.broker.addr, V5, "acl-1", "alice", "alice-pw").await;
    assert_eq!(pub_simple(&mut c, "ok/1", Q1, 1, b"x", false).await, 0x10);
    let acl1 = counters(api, "authorization/sources", "rules").await;
    assert_eq!(acl1["calls"].as_u64(), acl0["calls"].as_u64().map(|n| n + 1), "{acl0} -> {acl1}");
    assert_eq!(api.get("/api/v5/authorization/sources/nope/status").await.0, StatusCode::NOT_FOUND);

    // Caches: stats and purge.
    let (st, v) = api.get("/api/v5/authentication/cache").await;
    assert!(st == StatusCode::OK && v["misses"].as_u64().is_some(), "{v}");
    let (st, v) = api.get("/api/v5/authorization/cache").await;
    assert!(st == StatusCode::OK && v["hits"].as_u64().is_some(), "{v}");
    assert_eq!(api.delete("/api/v5/authentication/cache").await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.delete("/api/v5/authorization/cache").await.0, StatusCode::NO_CONTENT);
    // A purged ACL cache asks the chain again for the same publish.
    assert_eq!(pub_simple(&mut c, "ok/2", Q1, 2, b"x", false).await, 0x10);
    let acl2 = counters(api, "authorization/sources", "rules").await;
    assert_eq!(acl2["calls"].as_u64(), acl1["calls"].as_u64().map(|n| n + 1));
}

#[tokio::test]
async fn reload_and_modules() {
    let s = setup("[modules.presence]\nenabled = true\n");
    let api = &s.api;
    let (st, v) = api.get("/api/v5/modules").await;
    assert_eq!((st, v["modules"][0]["name"].as_str()), (StatusCode::OK, Some("presence")), "{v}");
    assert!(v["how_to_change"].as_str().is_some_and(|h| h.contains("reload")));
    // Modules are switched one by one (`modules/{name}`), not as a set.
    for m in [Method::PUT, Method::POST, Method::DELETE] {
        let (st, v) = api.call(m.clone(), "/api/v5/modules", Some(json!({"name": "presence", "enable": false}))).await;
        assert_eq!((st, code(&v)), (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"), "{m}");
    }
    let text = std::fs::read_to_string(&s.broker.config_path).expect("config");
    std::fs::write(&s.broker.config_path, text.replace("enabled = true", "enabled = false")).expect("write");
    let (st, v) = api.post("/api/v5/configs/reload", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["modules"], json!([]), "{v}");
    assert_eq!(v["files_reloaded"], 2, "the password and ACL files: {v}");
    assert_eq!(v["config_error"], Value::Null);
    assert_eq!(api.get("/api/v5/modules").await.1["modules"], json!([]));
    std::fs::write(&s.broker.config_path, "[[listeners]\n").expect("write");
    let (st, v) = api.post("/api/v5/configs/reload", Value::Null).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["config_error"].is_string(), "a broken file is reported: {v}");
}

/// The next PUBLISH whose topic ends with `suffix` (others skipped), within 5 s.
async fn event(raw: &mut Raw, suffix: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) if p.topic.ends_with(suffix) => return,
            Ok(Some(_)) => {}
            other => panic!("no event ending in {suffix}: {other:?}"),
        }
    }
}

/// A built-in module's entry in `GET /api/v5/modules`.
async fn builtin(api: &Api, name: &str) -> Value {
    let (st, v) = api.get("/api/v5/modules").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["builtin"].as_array().and_then(|a| a.iter().find(|m| m["name"] == name)).cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn modules_switched_at_run_time_without_dropping_clients() {
    let s = setup("[modules.presence]\nenabled = false\n");
    let api = &s.api;
    let (mut watch, _) = open_v3(s.broker.addr, "watch", true).await;
    subscribe(&mut watch, 1, &[("$SYS/brokers/+/clients/+/connected", Q0)]).await;
    let (mut before, _) = open_v3(s.broker.addr, "before", true).await;
    expect_silence(&mut watch, Duration::from_millis(300), "presence is off in the file").await;
    assert_eq!(builtin(api, "presence").await, json!({"name": "presence", "enable": false, "source": "config"}));

    // Only an administrator switches; unknown names and bad bodies are refused.
    let on = json!({"enable": true});
    for key in ["view", "pub"] {
        let (st, v) = api.with_key(key, SECRET).put("/api/v5/modules/presence", on.clone()).await;
        assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{key}");
    }
    let (st, v) = api.put("/api/v5/modules/nope", on.clone()).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{v}");
    let (st, v) = api.put("/api/v5/modules/presence", json!({"enable": "yes"})).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{v}");
    // No [modules.webhook]: its defaults lack the url, named in the answer.
    let (st, v) = api.put("/api/v5/modules/webhook", on.clone()).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("modules.webhook.url")), "{v}");
    assert_eq!(builtin(api, "webhook").await["enable"], false);
    assert_eq!(builtin(api, "presence").await["enable"], false, "nothing switched by a refused request");

    // On: a new client is announced; the connected ones stay.
    let (st, v) = api.put("/api/v5/modules/presence", on.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["enable"].as_bool(), v["source"].as_str()),
        (Some("presence"), Some(true), Some("api"))
    );
    assert_eq!(v["modules"][0]["name"], "presence", "{v}");
    let (_on, _) = open_v3(s.broker.addr, "while-on", true).await;
    event(&mut watch, "/clients/while-on/connected").await;
    sync(&mut before).await;
    assert_eq!(builtin(api, "presence").await, json!({"name": "presence", "enable": true, "source": "api"}));
    assert!(s.broker.wait_log("module switched at run time", Duration::from_secs(5)));
    assert!(
        s.broker.log().lines().any(|l| l.contains("module switched at run time") && l.contains("admin")),
        "who is logged"
    );
    // A module without a table runs with its (valid) defaults.
    let (st, v) = api.put("/api/v5/modules/delayed", on.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["modules"].as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "delayed")), "{v}");

    // Off: silence again, clients still connected.
    let (st, v) = api.put("/api/v5/modules/presence", json!({"enable": false})).await;
    assert_eq!((st, v["enable"].as_bool()), (StatusCode::OK, Some(false)), "{v}");
    let (_off, _) = open_v3(s.broker.addr, "while-off", true).await;
    expect_silence(&mut watch, Duration::from_millis(500), "presence switched off").await;
    sync(&mut watch).await;
    sync(&mut before).await;

    // A reload applies the file again: presence off (from the file), delayed off.
    assert_eq!(api.put("/api/v5/modules/presence", on.clone()).await.0, StatusCode::OK);
    let (st, v) = api.post("/api/v5/configs/reload", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["modules"], json!([]), "the file wins at reload: {v}");
    assert_eq!(builtin(api, "presence").await, json!({"name": "presence", "enable": false, "source": "config"}));
    let (_after, _) = open_v3(s.broker.addr, "after-reload", true).await;
    expect_silence(&mut watch, Duration::from_millis(500), "presence off again after the reload").await;
    sync(&mut before).await;
}

#[tokio::test]
async fn api_keys_created_through_the_api_shown_once_stored_hashed() {
    let s = setup("");
    let api = &s.api;
    let (st, v) =
        api.post("/api/v5/api_key", json!({"name": "ops-viewer", "role": "viewer", "desc": "dashboards"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (key, secret) =
        (v["api_key"].as_str().expect("key").to_string(), v["api_secret"].as_str().expect("secret").to_string());
    assert!(secret.len() >= 43, "32 random bytes");
    let ops = api.with_key(&key, &secret);
    assert_eq!(ops.get("/api/v5/clients").await.0, StatusCode::OK);
    assert_eq!(ops.post("/api/v5/publish", json!({"topic": "t", "payload": "x"})).await.0, StatusCode::FORBIDDEN);
    let (st, v) = api.get("/api/v5/api_key/ops-viewer").await;
    assert_eq!((st, v["role"].as_str()), (StatusCode::OK, Some("viewer")));
    assert!(v.get("api_secret").is_none(), "shown once: {v}");
    let (_, list) = api.get("/api/v5/api_key").await;
    assert!(!list.to_string().contains(&secret));
    let store = s.dir.path().join("data").join("api_keys.json");
    let text = std::fs::read_to_string(&store).expect("store");
    assert!(!text.contains(&secret), "stored hashed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&store).expect("meta").permissions().mode() & 0o777, 0o600);

    let (st, v) = api.put("/api/v5/api_key/ops-viewer", json!({"role": "administrator"})).await;
    assert_eq!((st, v["role"].as_str()), (StatusCode::OK, Some("administrator")));
    assert_eq!(ops.post("/api/v5/publish", json!({"topic": "t", "payload": "x"})).await.0, StatusCode::ACCEPTED);
    let (st, _) = api.put("/api/v5/api_key/ops-viewer", json!({"enable": false})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ops.get("/api/v5/clients").await.0, StatusCode::UNAUTHORIZED, "disabled");
    let (st, _) =
        api.put("/api/v5/api_key/ops-viewer", json!({"enable": true, "expired_at": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ops.get("/api/v5/clients").await.0, StatusCode::UNAUTHORIZED, "expired");

    for (body, want) in [
        (json!({"name": "ops-viewer"}), "ALREADY_EXISTS"),
        (json!({"name": "1bad"}), "BAD_REQUEST"),
        (json!({"name": "ok", "role": "root"}), "BAD_REQUEST"),
        (json!({"name": "ok", "expired_at": "tomorrow"}), "BAD_REQUEST"),
        (json!({"name": "ok", "secret": "mine"}), "BAD_REQUEST"),
    ] {
        let (st, v) = api.post("/api/v5/api_key", body.clone()).await;
        assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, want), "{body}");
    }
    let (st, v) = api.delete("/api/v5/api_key/view").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "BAD_REQUEST"), "bootstrap keys change in their file");
    assert_eq!(api.delete("/api/v5/api_key/ops-viewer").await.0, StatusCode::NO_CONTENT);
    let (st, v) = api.delete("/api/v5/api_key/ops-viewer").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(api.get("/api/v5/api_key/ops-viewer").await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.put("/api/v5/api_key/ops-viewer", json!({})).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn failed_logins_lock_the_address_out_and_are_logged_safely() {
    let s = setup("login_failures = 3\nlogin_lockout = \"60s\"\n");
    let api = &s.api;
    let bad = api.with_key("evil\nkey", "guess");
    for _ in 0..3 {
        assert_eq!(bad.get("/api/v5/clients").await.0, StatusCode::UNAUTHORIZED);
    }
    let (st, v) = bad.get("/api/v5/clients").await;
    assert_eq!((st, code(&v)), (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_FAILED_LOGINS"));
    // Locked out: even the right key is not looked at.
    let (st, _) = api.get("/api/v5/clients").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(api.get("/api/v5/status").await.0, StatusCode::OK, "the status stays public");
    assert!(s.broker.wait_log("address locked out", Duration::from_secs(5)), "{}", s.broker.log());
    let log = s.broker.log();
    assert!(log.contains("evil\\nkey"), "the key id is escaped: {log}");
    assert!(!log.contains("guess"), "the secret is never logged");
}

#[tokio::test]
async fn emqttd_publish_form_checks_mqtt_credentials_and_the_acl() {
    let s = setup("");
    let http = reqwest::Client::new();
    let url = format!("{}/mqtt/publish", s.api.base);
    let mut sub = v5(s.broker.addr, "form-sub").await;
    subscribe(&mut sub, 1, &[("form/#", Q1), ("denied/#", Q1)]).await;
    fn form(topic: &str) -> Vec<(&'static str, String)> {
        [("client", "dev-9"), ("qos", "1"), ("retain", "0"), ("topic", topic), ("message", "from http")]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    let res = http.post(&url).basic_auth("alice", Some("alice-pw")).form(&form("form/a")).send().await.expect("post");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("body"), "ok");
    let p = next_pub(&mut sub).await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.qos), ("form/a", &b"from http"[..], Q1));

    for (user, pw) in [("alice", "wrong"), ("nobody", "x")] {
        let res = http.post(&url).basic_auth(user, Some(pw)).form(&form("form/a")).send().await.expect("post");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
        let v: Value = res.json().await.expect("json");
        assert_eq!(code(&v), "UNAUTHORIZED");
    }
    let res = http.post(&url).form(&form("form/a")).send().await.expect("post");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no credentials");
    // An API key is not an MQTT credential.
    let res = http.post(&url).basic_auth("admin", Some(SECRET)).form(&form("form/a")).send().await.expect("post");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = http.post(&url).basic_auth("alice", Some("alice-pw")).form(&form("denied/x")).send().await.expect("post");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let v: Value = res.json().await.expect("json");
    assert_eq!(code(&v), "FORBIDDEN");
    for bad in [
        vec![("topic", "form/+"), ("message", "x")],
        vec![("topic", "form/a"), ("message", "x"), ("qos", "3")],
        vec![("topic", "form/a"), ("message", "x"), ("retain", "maybe")],
        vec![("message", "x")],
    ] {
        let res = http.post(&url).basic_auth("alice", Some("alice-pw")).form(&bad).send().await.expect("post");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    expect_silence(&mut sub, Duration::from_millis(300), "nothing denied or refused is delivered").await;
    // The shim goes through the guard: wrong passwords count towards a ban.
    let (_, v) = s.api.get("/api/v5/metrics?aggregate=true").await;
    assert!(v["auth.guard.tracked"].as_u64().is_some_and(|n| n >= 1), "{v}");
}

#[tokio::test]
async fn the_form_is_off_unless_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&format!("[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\n", tp(dir.path())));
    let api = Api::new(b.admin_addr().expect("admin"), None);
    let res = api
        .http
        .post(format!("{}/mqtt/publish", api.base))
        .basic_auth("a", Some("b"))
        .form(&[("topic", "t"), ("message", "m")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn errors_are_json_everywhere() {
    let s = setup("max_body_size = \"64KiB\"\n");
    let api = &s.api;
    let (st, v) = api.get("/api/v5/nothing/here").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let (st, v) = api.delete("/api/v5/stats").await;
    assert_eq!((st, code(&v)), (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"));
    let res = api
        .http
        .post(format!("{}/api/v5/publish", api.base))
        .basic_auth("admin", Some(SECRET))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&res.json::<Value>().await.expect("json")), "BAD_REQUEST");
    let big = json!({"topic": "t", "payload": "x".repeat(100_000)});
    let (st, v) = api.post("/api/v5/publish", big).await;
    assert_eq!((st, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
    let res = api
        .http
        .post(format!("{}/api/v5/publish", api.base))
        .basic_auth("admin", Some(SECRET))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&res.json::<Value>().await.expect("json")), "UNSUPPORTED_MEDIA_TYPE");
}

/// Every operation of the served document is routed: called with the
/// administrator key and placeholder parameters, none gets the router's
/// "no such route" 404 or a 405. (That every route is documented is
/// checked against the route table in `portcullis-admin`'s own tests.)
#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let s = setup("");
    let api = &s.api;
    let (st, doc) = api.anonymous().get("/api-docs/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("as") => "peerhost".to_string(),
                Some(_) => "placeholder".to_string(),
                None => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, _) in item.as_object().expect("item") {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Safe placeholders: nothing here changes state that matters.
            let (st, v) = api.call(m.clone(), &concrete, Some(json!({}))).await;
            assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(st == StatusCode::NOT_FOUND && v["message"] == "no such route"),
                "{method} {path} is documented but not routed"
            );
            assert!(!st.is_server_error(), "{method} {path}: {st} {v}");
            operations += 1;
        }
    }
    assert!(operations > 40, "{operations}");
    let _ = s.broker.pid();
}
