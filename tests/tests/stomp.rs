//! The STOMP gateway (issue 17) against the real binary: stomp.py
//! (`tests/stomp_client.py`) for every version, MQTT clients of the kit on
//! the same broker, and raw sockets for the byte-level rules (escapes,
//! content-length bodies with NUL, limits, pre-auth bounds, heart-beats).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::stomp::{start, Py};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSIONS: [&str; 3] = ["1.0", "1.1", "1.2"];

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

// ---------------------------------------------------------------------------
// stomp.py, every version

#[test]
fn versions_are_negotiated() {
    let (_b, addr) = start("", "");
    for v in VERSIONS {
        let r = Py::run("negotiate", v, addr, &[]);
        let connected = &r["connected"];
        assert_eq!(connected["version"], v, "{r}");
        assert!(connected["server"].as_str().is_some_and(|s| s.starts_with("Portcullis/")), "{r}");
    }
}

/// SEND → a wildcard STOMP subscription and MQTT subscribers; MQTT
/// publishes (with NUL bytes) → STOMP; receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_subscribe_with_wildcards_both_ways_byte_exact() {
    let (b, addr) = start("", "");
    for v in VERSIONS {
        let (mut mqtt, _) = open_v3(b.addr, &format!("m-{v}"), true).await;
        subscribe(&mut mqtt, 1, &[("w/#", QoS::AtLeastOnce)]).await;
        let mut py = Py::start("basic", v, addr, &[]);
        assert_eq!(py.line()["ready"], true);
        // stomp.py's own SEND reached the MQTT subscriber.
        let p = next_publish(&mut mqtt).await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("w/a/x", &b"hello"[..]));
        ack_incoming(&mut mqtt, &p).await;
        let nul = b"\x00a\x00\x00b\x00";
        let (mut publisher, _) = open_v3(b.addr, &format!("p-{v}"), true).await;
        pub_simple(&mut publisher, "w/b/x", QoS::AtLeastOnce, 10, nul, false).await;
        pub_simple(&mut publisher, "w/c/y", QoS::AtLeastOnce, 11, b"not for the filter", false).await;
        pub_simple(&mut publisher, "w/c/x", QoS::AtMostOnce, 0, b"", false).await;
        disconnect(publisher).await;
        let r = py.line();
        let msgs = r["messages"].as_array().expect("messages");
        let got: Vec<(String, Vec<u8>)> = msgs
            .iter()
            .map(|m| (m["headers"]["destination"].as_str().unwrap_or_default().to_string(), hex(&m["body"])))
            .collect();
        assert_eq!(
            got,
            [
                ("w/a/x".into(), b"hello".to_vec()),
                ("w/b/x".into(), nul.to_vec()),
                ("w/c/x".into(), Vec::new()),
                // stomp.py's own NUL-containing SEND, back through the wildcard.
                ("w/to-mqtt/x".into(), b"\x00n\x00u\x00l\x00".to_vec()),
            ],
            "{v}: {r}"
        );
        assert_eq!(msgs[1]["headers"]["content-length"], "6", "{r}");
        assert_eq!(msgs[0]["headers"]["subscription"], "s1");
        let receipts = r["receipts"].as_array().expect("receipts");
        for id in ["sub", "r1", "r2"] {
            assert!(receipts.iter().any(|x| x == id), "{v}: receipt {id}: {r}");
        }
        // The NUL-containing SEND reached MQTT byte-exact.
        let mut seen = None;
        for _ in 0..5 {
            let p = next_publish(&mut mqtt).await;
            ack_incoming(&mut mqtt, &p).await;
            if p.topic == "w/to-mqtt/x" {
                seen = Some(p.payload.to_vec());
                break;
            }
        }
        assert_eq!(seen.as_deref(), Some(&b"\x00n\x00u\x00l\x00"[..]), "{v}");
        disconnect(mqtt).await;
    }
}

#[test]
fn ack_modes_hold_the_window_until_ack_or_nack() {
    let (_b, addr) = start("[session]\nmax_inflight = 2\n", "");
    for v in VERSIONS {
        let r = Py::run("acks", v, addr, &[]);
        assert_eq!(r["errors"], Value::Array(vec![]), "{v}: {r}");
        let c = &r["client"];
        // Two in the window; a cumulative ACK of the second frees both.
        assert_eq!((c["before_ack"].as_u64(), c["after_ack"].as_u64()), (Some(2), Some(3)), "{v}: {r}");
        assert_eq!(c["after_fourth"].as_u64(), Some(4), "{v}: the window had room for the fourth: {r}");
        assert_eq!(c["after_nack"].as_u64(), Some(4), "{v}: nothing delivered again: {r}");
        if v != "1.0" {
            let i = &r["client-individual"];
            // An individual ACK frees one place: the third comes, the
            // fourth waits for the first's ACK/NACK.
            assert_eq!((i["before_ack"].as_u64(), i["after_ack"].as_u64()), (Some(2), Some(3)), "{v}: {r}");
            assert_eq!(i["after_fourth"].as_u64(), Some(3), "{v}: window still full: {r}");
            assert_eq!(i["after_nack"].as_u64(), Some(4), "{v}: the NACK freed the window: {r}");
        }
    }
}

#[test]
fn transactions_commit_and_abort() {
    let (_b, addr) = start("", "");
    for v in VERSIONS {
        let r = Py::run("tx", v, addr, &[]);
        assert_eq!(r["before_commit"], Value::Array(vec![]), "{v}: {r}");
        assert_eq!(r["after_commit"], serde_json::json!(["in-t1"]), "{v}: {r}");
        assert_eq!(r["end"], serde_json::json!(["in-t1", "after"]), "{v}: aborted SEND never delivered: {r}");
        assert_eq!(r["errors"], Value::Array(vec![]), "{v}: {r}");
    }
}

#[test]
fn heart_beats_are_negotiated_and_sent() {
    let (_b, addr) = start("", "stomp = { heartbeat_send = \"200ms\", heartbeat_receive = \"200ms\" }");
    for v in ["1.1", "1.2"] {
        let r = Py::run("heartbeat", v, addr, &[]);
        // The larger of ours (200) and theirs (300), both ways.
        assert_eq!(r["connected"]["heart-beat"], "300,300", "{v}: {r}");
        assert!(r["heartbeats"].as_u64().is_some_and(|n| n >= 3), "{v}: beats received: {r}");
        assert_eq!(r["alive"], true, "{v}: stomp.py's beats kept it open: {r}");
    }
}

fn password_file(dir: &std::path::Path) -> String {
    let p = dir.join("passwd");
    std::fs::write(&p, "alice:s3cret\n").expect("write passwd");
    format!(
        "[auth]\nchain = [\"pw\"]\n[auth.password_file.pw]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n",
        p.to_str().expect("utf-8")
    )
}

const DENY_SECRET: &str = "[[rule]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"secret/#\"]\n\n\
                           [[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n";

#[test]
fn auth_refusal_and_acl_denial_are_errors_then_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, DENY_SECRET).expect("write acl");
    let extra = format!(
        "{}[acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n",
        password_file(dir.path()),
        acl.to_str().expect("utf-8")
    );
    let (_b, addr) = start(&extra, "");
    for v in VERSIONS {
        let r = Py::run("refused", v, addr, &["alice", "wrong"]);
        assert_eq!(r["errors"][0]["message"], "bad user name or password", "{v}: {r}");
        assert_eq!(r["disconnected"], true, "{v}: {r}");
        let r = Py::run("refused", v, addr, &["mallory", "x"]);
        assert_eq!(r["errors"][0]["message"], "bad user name or password", "{v}: unknown user reads the same: {r}");
        for action in ["send", "subscribe"] {
            let r = Py::run("denied", v, addr, &["alice", "s3cret", action]);
            let e = &r["errors"][0];
            assert!(e["message"].as_str().is_some_and(|m| m.starts_with("not authorized")), "{v} {action}: {r}");
            assert_eq!(e["receipt-id"], "r", "{v} {action}: the ERROR names the receipt: {r}");
            assert_eq!(r["receipts"], Value::Array(vec![]), "{v} {action}: {r}");
            assert_eq!(r["disconnected"], true, "{v} {action}: {r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_split_the_messages() {
    let (b, addr) = start("", "");
    let (mut mqtt, _) = open_v3(b.addr, "shared-pub", true).await;
    for v in VERSIONS {
        let mut py = Py::start("shared", v, addr, &["10"]);
        assert_eq!(py.line()["ready"], true);
        for i in 0..10u16 {
            pub_simple(&mut mqtt, &format!("sh/{i}"), QoS::AtLeastOnce, i + 1, format!("m{i:02}").as_bytes(), false)
                .await;
        }
        let r = py.line();
        let counts: Vec<u64> = r["counts"].as_array().expect("counts").iter().filter_map(Value::as_u64).collect();
        assert_eq!(counts.iter().sum::<u64>(), 10, "{v}: each message once: {r}");
        assert!(counts.iter().all(|&c| c > 0), "{v}: both members got some: {r}");
        let want: Vec<String> = (0..10).map(|i| format!("m{i:02}")).collect();
        assert_eq!(r["bodies"], serde_json::json!(want), "{v}: {r}");
    }
}

// ---------------------------------------------------------------------------
// Raw bytes

struct Stomp {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Stomp {
    async fn open(addr: SocketAddr) -> Stomp {
        Stomp { s: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    async fn connected(addr: SocketAddr, version: &str) -> Stomp {
        let mut c = Stomp::open(addr).await;
        c.send(format!("CONNECT\naccept-version:{version}\nhost:x\n\n\0").as_bytes()).await;
        let f = c.frame().await.expect("CONNECTED");
        assert!(f.starts_with(b"CONNECTED\n"), "{}", String::from_utf8_lossy(&f));
        c
    }

    async fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).await.expect("write");
    }

    /// The next frame (bytes up to its terminating NUL; a content-length
    /// body is read whole), skipping heart-beats; None at EOF.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            while self.buf.first().is_some_and(|&b| b == b'\n' || b == b'\r') {
                self.buf.remove(0);
            }
            if let Some(hdr_end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let head = String::from_utf8_lossy(&self.buf[..hdr_end]).to_string();
                let cl =
                    head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|n| n.parse::<usize>().ok());
                let nul = match cl {
                    Some(n) if self.buf.len() > hdr_end + 2 + n => Some(hdr_end + 2 + n),
                    Some(_) => None,
                    None => self.buf[hdr_end..].iter().position(|&b| b == 0).map(|i| hdr_end + i),
                };
                if let Some(nul) = nul {
                    let f = self.buf[..nul].to_vec();
                    self.buf.drain(..=nul);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 4096];
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.s.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no frame within 10 s; have {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    /// An ERROR frame, then EOF.
    async fn expect_error(&mut self, what: &str) -> String {
        let f = self.frame().await.unwrap_or_else(|| panic!("{what}: closed without ERROR"));
        let text = String::from_utf8_lossy(&f).to_string();
        assert!(text.starts_with("ERROR\n"), "{what}: {text}");
        assert!(self.frame().await.is_none(), "{what}: still open after ERROR");
        text
    }

    async fn expect_closed(&mut self, within: Duration, what: &str) {
        let r = tokio::time::timeout(within, async {
            loop {
                let mut chunk = [0u8; 1024];
                match self.s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(r.is_ok(), "{what}: still open after {within:?}");
    }
}

fn header<'a>(frame: &'a str, name: &str) -> Option<&'a str> {
    frame.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
}

#[tokio::test]
async fn no_common_version_is_an_error_listing_ours() {
    let (_b, addr) = start("", "");
    let mut c = Stomp::open(addr).await;
    c.send(b"CONNECT\naccept-version:2.0,0.9\nhost:x\n\n\0").await;
    let e = c.expect_error("no common version").await;
    assert_eq!(header(&e, "version"), Some("1.0,1.1,1.2"), "{e}");
    // `host` is not checked (no virtual hosts; stomp.py leaves it out).
    let mut c = Stomp::open(addr).await;
    c.send(b"STOMP\naccept-version:1.1,1.2\n\n\0").await;
    let f = String::from_utf8(c.frame().await.expect("CONNECTED")).expect("utf-8");
    assert_eq!(header(&f, "version"), Some("1.2"), "{f}");
    // No accept-version: 1.0.
    let mut c = Stomp::open(addr).await;
    c.send(b"CONNECT\n\n\0").await;
    let f = String::from_utf8(c.frame().await.expect("CONNECTED")).expect("utf-8");
    assert_eq!(header(&f, "version"), Some("1.0"), "{f}");
}

/// Escapes both ways in 1.2, a colon in a destination reaching MQTT as a
/// colon; an undefined escape is an ERROR in 1.2 (and text in 1.0).
#[tokio::test]
async fn header_escapes_and_a_bad_escape() {
    let (b, addr) = start("", "");
    let (mut mqtt, _) = open_v3(b.addr, "esc", true).await;
    subscribe(&mut mqtt, 1, &[("e/#", QoS::AtMostOnce)]).await;
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SUBSCRIBE\r\nid:s\\c1\r\ndestination:e/#\r\nreceipt:r\r\n\r\n\0").await;
    let r = String::from_utf8(c.frame().await.expect("RECEIPT")).expect("utf-8");
    assert!(r.starts_with("RECEIPT\n") && header(&r, "receipt-id") == Some("r"), "{r}");
    c.send(b"SEND\ndestination:e/a\\cb\\\\c\ndestination:ignored\n\nx\0").await;
    let p = next_publish(&mut mqtt).await;
    assert_eq!(p.topic, "e/a:b\\c", "unescaped, first header wins");
    let m = String::from_utf8(c.frame().await.expect("MESSAGE")).expect("utf-8");
    assert_eq!(header(&m, "destination"), Some("e/a\\cb\\\\c"), "escaped again: {m}");
    assert_eq!(header(&m, "subscription"), Some("s\\c1"), "{m}");
    c.send(b"SEND\ndestination:e/\\t\n\nx\0").await;
    assert!(c.expect_error("bad escape").await.contains("undefined escape"));
    // 1.0 has no escapes: the backslash is a character of the topic.
    let mut c = Stomp::connected(addr, "1.0").await;
    c.send(b"SEND\ndestination:e/\\t\nreceipt:r0\n\nx\0").await;
    let r = String::from_utf8(c.frame().await.expect("RECEIPT")).expect("utf-8");
    assert!(r.starts_with("RECEIPT"), "{r}");
    assert_eq!(next_publish(&mut mqtt).await.topic, "e/\\t");
    // ... nor NACK.
    c.send(b"NACK\nmessage-id:1\n\n\0").await;
    assert!(c.expect_error("NACK in 1.0").await.contains("unknown command"));
}

/// content-length bodies with NUL bytes, both ways, byte-exact.
#[tokio::test]
async fn nul_bodies_with_content_length_are_byte_exact() {
    let (b, addr) = start("", "");
    let (mut mqtt, _) = open_v3(b.addr, "nul", true).await;
    subscribe(&mut mqtt, 1, &[("n/in", QoS::AtMostOnce)]).await;
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SUBSCRIBE\nid:1\ndestination:n/out\nreceipt:r\n\n\0").await;
    c.frame().await.expect("RECEIPT");
    let body: Vec<u8> = (0..=255u8).chain([0, 0, 0]).collect();
    let mut send = format!("SEND\ndestination:n/in\ncontent-length:{}\n\n", body.len()).into_bytes();
    send.extend_from_slice(&body);
    send.push(0);
    c.send(&send).await;
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], &body[..]);
    pub_simple(&mut mqtt, "n/out", QoS::AtMostOnce, 0, &body, false).await;
    let m = c.frame().await.expect("MESSAGE");
    let split = m.windows(2).position(|w| w == b"\n\n").expect("headers") + 2;
    assert_eq!(&m[split..], &body[..]);
}

/// Frames over the limits are ERRORs; a CONNECT that never ends or never
/// comes is cut off by the pre-auth bounds.
#[tokio::test]
async fn limits_and_pre_auth_bounds() {
    let (_b, addr) = start(
        "[limits]\nconnect_timeout = \"1s\"\nmax_connect_size = \"4KiB\"\nmax_packet_size = \"64KiB\"\n",
        "stomp = { max_header_bytes = \"1KiB\", max_headers = 4 }",
    );
    // A declared body over the limit: refused from the header, nothing read.
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SEND\ndestination:a\ncontent-length:999999999\n\n").await;
    assert!(c.expect_error("declared size").await.contains("body too large"));
    // A body without content-length that never ends.
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SEND\ndestination:a\n\n").await;
    c.send(&vec![b'x'; 70 * 1024]).await;
    assert!(c.expect_error("long body").await.contains("body too large"));
    // Headers.
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0").await;
    assert!(c.expect_error("headers").await.contains("too many headers"));
    let mut c = Stomp::connected(addr, "1.2").await;
    let mut long = b"SEND\nx:".to_vec();
    long.extend(vec![b'y'; 2000]);
    c.send(&long).await;
    assert!(c.expect_error("header bytes").await.contains("headers too large"));
    // Before CONNECTED: a CONNECT larger than max_connect_size.
    let mut c = Stomp::open(addr).await;
    let mut big = b"CONNECT\naccept-version:1.2\nhost:x\n\n".to_vec();
    big.extend(vec![b'z'; 8 * 1024]);
    c.send(&big).await;
    assert!(c.expect_error("big CONNECT").await.contains("too large"));
    // Nothing, or half a CONNECT: closed at the connect timeout.
    let mut c = Stomp::open(addr).await;
    c.send(b"CONNECT\naccept-ver").await;
    c.expect_closed(Duration::from_secs(5), "half a CONNECT").await;
    // A frame other than CONNECT first.
    let mut c = Stomp::open(addr).await;
    c.send(b"SEND\ndestination:a\n\n\0").await;
    assert!(c.expect_error("SEND first").await.contains("expected a CONNECT"));
}

/// A client that promised heart-beats and goes silent is dropped after
/// twice the negotiated interval; the broker's beats arrive on time.
#[tokio::test]
async fn missed_heart_beats_drop_the_connection() {
    let (_b, addr) = start("", "stomp = { heartbeat_send = \"200ms\", heartbeat_receive = \"200ms\" }");
    let mut c = Stomp::open(addr).await;
    c.send(b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:300,250\n\n\0").await;
    let f = String::from_utf8(c.frame().await.expect("CONNECTED")).expect("utf-8");
    assert_eq!(header(&f, "heart-beat"), Some("250,300"), "{f}");
    let started = Instant::now();
    c.expect_closed(Duration::from_secs(5), "silent client").await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "dropped after {took:?}, before 2 × 300 ms");
    // Beats from the client keep it open.
    let mut c = Stomp::open(addr).await;
    c.send(b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:300,0\n\n\0").await;
    c.frame().await.expect("CONNECTED");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.send(b"\n").await;
    }
    c.send(b"DISCONNECT\nreceipt:bye\n\n\0").await;
    let r = String::from_utf8(c.frame().await.expect("RECEIPT after 1.2 s of beats")).expect("utf-8");
    assert_eq!(header(&r, "receipt-id"), Some("bye"), "{r}");
}

/// `stomp_tls`: STOMP over TLS, the client certificate's CN as the
/// username, admitted by the certificate provider of the listener's chain.
#[tokio::test]
async fn stomp_over_tls_with_certificate_identity() {
    use portcullis_tests::net::{self, Ca};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Portcullis Test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert_file, key_file) = ca.server("broker").write(dir.path(), "server");
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"stomps\"\ntype = \"stomp_tls\"\n\
         bind = \"127.0.0.1:0\"\nauth_chain = \"certs\"\npeer_cert_as_username = \"cn\"\n\
         tls = {{ cert_file = {cert_file:?}, key_file = {key_file:?}, ca_file = {ca_file:?}, client_cert = \"required\" }}\n\n\
         [auth.chains]\ncerts = [\"certs\"]\n\n[auth.certificate.certs]\n"
    );
    let (b, addrs) = net::start(&cfg);
    let (mut mqtt, _) = open_v3(b.addr, "tls-sub", true).await;
    subscribe(&mut mqtt, 1, &[("tls/#", QoS::AtMostOnce)]).await;
    let leaf = ca.client("dev42", &[], &[]);
    let config = net::tls_config(&ca.pem(), Some(&leaf), &[]);
    let mut s = net::tls_connect(addrs["stomps"], config).await.expect("TLS handshake");
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0SEND\ndestination:tls/a\nreceipt:r\n\nover tls\0")
        .await
        .expect("write");
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.iter().filter(|&&b| b == 0).count() < 2 && Instant::now() < end {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("CONNECTED\n") && text.contains("RECEIPT\nreceipt-id:r\n"), "{text}");
    let p = next_publish(&mut mqtt).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("tls/a", &b"over tls"[..]));
    // Without a client certificate the TLS handshake itself fails.
    let config = net::tls_config(&ca.pem(), None, &[]);
    let refused = match net::tls_connect(addrs["stomps"], config).await {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"CONNECT\n\n\0").await;
            let mut chunk = [0u8; 64];
            matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await, Ok(Ok(0)) | Ok(Err(_)))
        }
    };
    assert!(refused, "a client without a certificate got through");
}

/// The brute-force guard counts STOMP logins as it counts MQTT ones: after
/// `max_failures` wrong passcodes the right one is refused as banned, and
/// an MQTT client of the same user from the same address is banned too.
#[tokio::test]
async fn the_guard_bans_after_failed_logins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{}[auth.guard]\nmax_failures = 2\n", password_file(dir.path()));
    let (b, addr) = start(&extra, "");
    let login = |pass: &str| format!("CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:{pass}\n\n\0");
    for _ in 0..2 {
        let mut c = Stomp::open(addr).await;
        c.send(login("wrong").as_bytes()).await;
        assert!(c.expect_error("wrong passcode").await.contains("message:bad user name or password"));
    }
    let mut c = Stomp::open(addr).await;
    c.send(login("s3cret").as_bytes()).await;
    let e = c.expect_error("banned").await;
    assert!(e.contains("message:banned after too many failed logins"), "{e}");
    // The same ban for MQTT (one guard for every protocol).
    let mut raw = portcullis_tests::Raw::connect(b.addr).await;
    let v = portcullis_core::codec::ProtocolVersion::V311;
    raw.send(&portcullis_tests::backend::connect_bytes_raw(v, "m", Some("alice"), Some(b"s3cret"))).await;
    match raw.recv().await {
        Some(portcullis_core::codec::Packet::ConnAck(a)) => assert_eq!(a.code, 0x05, "3.1.1 banned: not authorized"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// CONNECTs in progress count against `limits.max_handshakes_per_ip` as
/// MQTT's do: a third half-sent CONNECT from one address is closed at once.
#[tokio::test]
async fn handshakes_in_progress_per_address_are_bounded() {
    let (b, addr) = start("[limits]\nmax_handshakes_per_ip = 2\nconnect_timeout = \"10s\"\n", "");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Stomp::open(addr).await;
        c.send(b"CONNECT\naccept-version:1.2\n").await;
        held.push(c);
    }
    // Both are in their handshake before the third arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = Stomp::open(addr).await;
    third.send(b"CONNECT\naccept-version:1.2\n").await;
    third.expect_closed(Duration::from_secs(3), "third CONNECT in progress").await;
    // An MQTT CONNECT from the same address meets the same bound.
    let mut raw = portcullis_tests::Raw::connect(b.addr).await;
    raw.send(b"\x10").await;
    assert!(raw.expect_closed(Duration::from_secs(3)).await.is_empty(), "MQTT handshake over the bound");
    // Finishing one frees its place.
    held[0].send(b"\n\0").await;
    held[0].frame().await.expect("CONNECTED");
    let c = Stomp::connected(addr, "1.2").await;
    drop(c);
}

/// A mountpoint puts the listener's STOMP clients under a prefix (after
/// the group of a shared subscription); retained messages come on
/// SUBSCRIBE; `send_qos` sets the QoS MQTT subscribers see.
#[tokio::test]
async fn mountpoint_retained_and_send_qos() {
    let (b, addr) = start("", "stomp = { mountpoint = \"st/\", send_qos = 2 }");
    let (mut mqtt, _) = open_v3(b.addr, "mp", true).await;
    subscribe(&mut mqtt, 1, &[("#", QoS::ExactlyOnce)]).await;
    let (mut publisher, _) = open_v3(b.addr, "mp-pub", true).await;
    pub_simple(&mut publisher, "st/kept", QoS::AtLeastOnce, 2, b"retained", true).await;
    let p = next_publish(&mut mqtt).await;
    ack_incoming(&mut mqtt, &p).await;
    let mut c = Stomp::connected(addr, "1.2").await;
    c.send(b"SEND\ndestination:a/b\n\nfrom stomp\0").await;
    let p = next_publish(&mut mqtt).await;
    assert_eq!((p.topic.as_str(), p.qos), ("st/a/b", QoS::ExactlyOnce), "under the mountpoint, send_qos 2");
    ack_incoming(&mut mqtt, &p).await;
    c.send(b"SUBSCRIBE\nid:1\ndestination:+\n\n\0").await;
    let m = String::from_utf8(c.frame().await.expect("retained MESSAGE")).expect("utf-8");
    assert_eq!(header(&m, "destination"), Some("kept"), "without the mountpoint: {m}");
    assert!(m.ends_with("retained"), "{m}");
    c.send(b"SUBSCRIBE\nid:2\ndestination:$share/g/s/#\nreceipt:r\n\n\0").await;
    let r = String::from_utf8(c.frame().await.expect("RECEIPT")).expect("utf-8");
    assert!(r.starts_with("RECEIPT"), "{r}");
    pub_simple(&mut publisher, "st/s/1", QoS::AtMostOnce, 0, b"shared", false).await;
    pub_simple(&mut publisher, "s/1", QoS::AtMostOnce, 0, b"outside the mountpoint", false).await;
    pub_simple(&mut publisher, "st/x", QoS::AtMostOnce, 0, b"one level", false).await;
    let m = String::from_utf8(c.frame().await.expect("shared MESSAGE")).expect("utf-8");
    assert_eq!((header(&m, "destination"), header(&m, "subscription")), (Some("s/1"), Some("2")), "{m}");
    let m = String::from_utf8(c.frame().await.expect("MESSAGE")).expect("utf-8");
    assert_eq!(header(&m, "destination"), Some("x"), "s/1 outside the mountpoint never came: {m}");
}
