//! MQTT over TLS through the real binary: a client library (rumqttc) and
//! `mosquitto_sub` with client certificates, the certificate's CN as the
//! username the ACL uses, refused certificates, malformed ClientHellos,
//! and certificates reloaded without dropping connections.
//! Certificates are made per test with rcgen.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_tests::kit::{self, Mqtt3};
use portcullis_tests::net::{self, Ca, Client, Leaf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA, a server certificate, written to a temp dir.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("Portcullis Test CA");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let (cert_file, key_file) = ca.server("broker").write(dir.path(), "server");
        Pki { ca, dir, ca_file, cert_file, key_file }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tls = { … }` for a listener with this server certificate.
    fn tls_table(&self, client_cert: &str, extra: &str) -> String {
        let ca = if client_cert == "none" { String::new() } else { format!(", ca_file = {:?}", self.ca_file) };
        format!(
            "tls = {{ cert_file = {:?}, key_file = {:?}{ca}, client_cert = \"{client_cert}\"{extra} }}\n",
            self.cert_file, self.key_file
        )
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

fn tcp_listener() -> &'static str {
    "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n"
}

fn tls_options(addr: std::net::SocketAddr, id: &str, ca: &Ca, identity: Option<&Leaf>) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: ca.pem().into_bytes(),
        alpn: Some(vec![b"mqtt".to_vec()]),
        client_auth: identity.map(|l| (l.cert_pem.clone().into_bytes(), l.key_pem.clone().into_bytes())),
    }));
    o
}

/// rumqttc over TLS with a client certificate: the listener takes the
/// username from the certificate's CN (ignoring the one sent), the
/// `certificate` provider admits it, and the ACL's `${username}` rule
/// grants `dev42/#` and nothing else. `$SYS` presence shows the identity.
#[tokio::test]
async fn client_certificate_cn_is_the_username_the_acl_uses() {
    let pki = Pki::new();
    let acl = pki.path("acl.toml");
    write(
        &acl,
        "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"${username}/#\"]\n\n\
         [[rule]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"#\"]\n",
    );
    let cfg = format!(
        "{}[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"certs\"\nacl_chain = \"certs\"\n\
         peer_cert_as_username = \"cn\"\n{}\n\
         [auth.chains]\ncerts = [\"cert\"]\n[auth.certificate.cert]\nmatch_username = true\n\n\
         [acl.chains]\ncerts = [\"rules\"]\n[acl.file.rules]\npath = {:?}\n\n[sys]\ninterval = \"1s\"\n",
        tcp_listener(),
        pki.tls_table("required", ""),
        acl
    );
    let (b, addrs) = net::start(&cfg);
    let (tcp, tls) = (addrs["tcp"], addrs["tls"]);

    let (mut presence, _) = kit::open_v3(tcp, "presence", true).await;
    kit::subscribe(&mut presence, 1, &[("$SYS/brokers/+/clients/dev-a/connected", QoS::AtMostOnce)]).await;

    let dev42 = pki.ca.client("dev42", &["dev42.devices.example"], &[]);
    let mut o = tls_options(tls, "dev-a", &pki.ca, Some(&dev42));
    o.set_credentials("dev43", "ignored");
    let (mut c, ack) = Mqtt3::connect(o, 10).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let p = kit::next_publish(&mut presence).await;
    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(v["username"], "dev42", "{v}");
    assert_eq!(v["listener"], "tls", "{v}");
    assert_eq!(v["ipaddress"], "127.0.0.1", "{v}");

    let granted = c.subscribe("dev42/#", rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(granted.return_codes, [rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]);
    let refused = c.subscribe("dev43/#", rumqttc::QoS::AtLeastOnce).await;
    assert_eq!(refused.return_codes, [rumqttc::SubscribeReasonCode::Failure]);

    let (mut publisher, _) = kit::open_v3(tcp, "pub", true).await;
    kit::pub_simple(&mut publisher, "dev43/temp", QoS::AtLeastOnce, 1, b"not for dev42", false).await;
    kit::pub_simple(&mut publisher, "dev42/temp", QoS::AtLeastOnce, 2, b"21.5", false).await;
    let got = c.next_publish(Duration::from_secs(5)).await.expect("a message over TLS");
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("dev42/temp", &b"21.5"[..]));

    // A client whose certificate has no CN cannot be given a username.
    let nameless = pki.ca.client("", &[], &[]);
    let mut raw = Client::new(
        net::tls_connect(tls, net::tls_config(&pki.ca.pem(), Some(&nameless), &[])).await.expect("handshake"),
    );
    assert_eq!(raw.connect(kit::connect_packet(ProtocolVersion::V311, "nameless", true)).await, Some(0x05));
    c.disconnect().await;
    drop(b);
}

/// `mosquitto_sub --cafile --cert --key` receives over TLS what a TCP
/// client publishes; a v5 subscriber sees the client id taken from the
/// certificate's first DNS name.
#[tokio::test]
async fn mosquitto_sub_over_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let cfg = format!(
        "{}[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n{}",
        tcp_listener(),
        pki.tls_table("required", "")
    );
    let (_b, addrs) = net::start(&cfg);
    let (cert, key) = pki.ca.client("sub-1", &[], &[]).write(pki.dir.path(), "client");
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &addrs["tls"].port().to_string(), "-t", "tls/test", "-C", "1", "-W", "15"])
        .args(["-i", "mosq-tls", "--cafile"])
        .arg(&pki.ca_file)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients) must be installed");
    // Publish until the subscriber has it (it may not have subscribed yet).
    let (mut publisher, _) = kit::open_v3(addrs["tcp"], "pub", true).await;
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        kit::pub_simple(&mut publisher, "tls/test", QoS::AtMostOnce, 0, b"over tls", false).await;
        if let Some(st) = sub.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < end, "mosquitto_sub got nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = sub.wait_with_output().unwrap();
    assert!(status.success(), "mosquitto_sub failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");

    // Without a client certificate the same command fails the handshake.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &addrs["tls"].port().to_string(), "-t", "x", "-C", "1", "-W", "5"])
        .arg("--cafile")
        .arg(&pki.ca_file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "connected without a certificate");
}

/// `peer_cert_as_client_id = "san_dns"`: a v5 client is told the id it got.
#[tokio::test]
async fn client_id_from_the_certificate() {
    let pki = Pki::new();
    let cfg = format!(
        "[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\npeer_cert_as_client_id = \"san_dns\"\n{}",
        pki.tls_table("required", "")
    );
    let (_b, addrs) = net::start(&cfg);
    let leaf = pki.ca.client("sensor", &["sensor-7.example", "other.example"], &["urn:x"]);
    let s = net::tls_connect(addrs["tls"], net::tls_config(&pki.ca.pem(), Some(&leaf), &["mqtt"])).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]), "ALPN mqtt");
    let mut c = Client::new(s);
    c.version = ProtocolVersion::V5;
    c.send_packet(&Packet::Connect(Box::new(kit::connect_packet(ProtocolVersion::V5, "whatever", true))))
        .await
        .unwrap();
    match c.recv().await {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, 0);
            assert_eq!(a.properties.assigned_client_identifier.as_deref(), Some("sensor-7.example"));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Required client certificates: none, one from another CA, or an expired
/// chain of trust fail the handshake; the broker counts them, logs one
/// warn line for the burst, and keeps serving. Optional: no certificate is
/// fine, a bad one is not.
#[tokio::test]
async fn bad_or_missing_client_certificates_are_refused() {
    let pki = Pki::new();
    let cfg = format!(
        "{}[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n{}\n\
         [[listeners]]\nname = \"opt\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n{}\n[sys]\ninterval = \"1s\"\n",
        tcp_listener(),
        pki.tls_table("required", ""),
        pki.tls_table("optional", "")
    );
    let (b, addrs) = net::start(&cfg);
    let rogue = Ca::new("Rogue CA").client("dev42", &[], &[]);
    let good = pki.ca.client("dev42", &[], &[]);

    for (listener, identity, what) in [
        ("tls", None, "no certificate"),
        ("tls", Some(&rogue), "unknown CA"),
        ("opt", Some(&rogue), "unknown CA (optional)"),
    ] {
        let refused = match net::tls_connect(addrs[listener], net::tls_config(&pki.ca.pem(), identity, &[])).await {
            // TLS 1.3: the client finishes first; the refusal arrives as an alert.
            Ok(s) => Client::new(s).connect(kit::connect_packet(ProtocolVersion::V311, "x", true)).await.is_none(),
            Err(_) => true,
        };
        assert!(refused, "{listener}: {what} was admitted");
    }
    for (listener, identity) in [("tls", Some(&good)), ("opt", None), ("opt", Some(&good))] {
        let s = net::tls_connect(addrs[listener], net::tls_config(&pki.ca.pem(), identity, &[])).await.unwrap();
        assert_eq!(Client::new(s).connect(kit::connect_packet(ProtocolVersion::V311, "ok", true)).await, Some(0));
    }
    assert_eq!(kit::sys_fresh(addrs["tcp"], "listeners/tls/handshake_failures", Duration::from_secs(5)).await, "2");
    assert_eq!(kit::sys_fresh(addrs["tcp"], "listeners/opt/handshake_failures", Duration::from_secs(5)).await, "1");
    let warns = b.log().lines().filter(|l| l.contains("handshake failed") && l.contains("listener=tls")).count();
    assert_eq!(warns, 1, "one warn line per listener per 10 s:\n{}", b.log());
    assert!(!b.log().contains("PRIVATE KEY"), "key material in the log");
}

/// Junk instead of a ClientHello: plain MQTT, HTTP, a record header that
/// claims 16 MiB, a truncated handshake, an SSLv2-style hello, random
/// bytes. Each connection is closed promptly; the broker keeps serving.
#[tokio::test]
async fn malformed_client_hellos_get_a_clean_refusal() {
    let pki = Pki::new();
    let cfg = format!(
        "{}[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\nhandshake_timeout = \"2s\"\n{}\n[sys]\ninterval = \"1s\"\n",
        tcp_listener(),
        pki.tls_table("none", "")
    );
    let (mut b, addrs) = net::start(&cfg);
    let tls = addrs["tls"];
    let junk: Vec<(&str, Vec<u8>)> = vec![
        ("plain MQTT CONNECT", portcullis_tests::connect_v311("x", true, 30)),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("huge record", vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff]),
        ("bad handshake length", vec![0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03, 0, 0]),
        ("SSLv2 hello", vec![0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]),
        ("random", (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
    ];
    for (what, bytes) in &junk {
        let mut s = net::tcp_connect(tls).await;
        s.write_all(bytes).await.unwrap();
        let mut sink = vec![0u8; 4096];
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&sink[..n]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{what}: not closed within 5 s");
        // Whatever came back is a TLS alert record, never MQTT.
        assert!(got.is_empty() || got[0] == 0x15, "{what}: answered with {got:02x?}");
    }
    // A client that never finishes its handshake is closed at handshake_timeout.
    let mut slow = net::tcp_connect(tls).await;
    slow.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut one = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(6), slow.read(&mut one)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "slow handshake not closed: {r:?}");

    assert!(b.alive());
    let s = net::tls_connect(tls, net::tls_config(&pki.ca.pem(), None, &[])).await.unwrap();
    assert_eq!(Client::new(s).connect(kit::connect_packet(ProtocolVersion::V311, "after", true)).await, Some(0));
    let failures = kit::sys_fresh(addrs["tcp"], "listeners/tls/handshake_failures", Duration::from_secs(5)).await;
    assert_eq!(failures, (junk.len() + 1).to_string());
}

/// New certificates are picked up from disk (file change, then SIGHUP)
/// while a connection made with the old ones keeps working.
#[tokio::test]
async fn certificate_reload_keeps_existing_connections() {
    for trigger in ["file change", "SIGHUP"] {
        let pki = Pki::new();
        let poll = if trigger == "SIGHUP" { ", reload_poll = \"off\"" } else { ", reload_poll = \"200ms\"" };
        let cfg = format!(
            "{}[[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n{}",
            tcp_listener(),
            pki.tls_table("none", poll)
        );
        let (b, addrs) = net::start(&cfg);
        let tls = addrs["tls"];
        let old = net::tls_config(&pki.ca.pem(), None, &[]);
        let mut kept = Client::new(net::tls_connect(tls, old.clone()).await.unwrap());
        assert_eq!(kept.connect(kit::connect_packet(ProtocolVersion::V311, "kept", true)).await, Some(0));
        assert_eq!(kept.subscribe("news", QoS::AtMostOnce).await, 0);

        // A new CA and server certificate replace the files.
        let ca2 = Ca::new("Second CA");
        let leaf = ca2.server("broker-2");
        std::fs::write(&pki.key_file, &leaf.key_pem).unwrap();
        std::fs::write(&pki.cert_file, &leaf.cert_pem).unwrap();
        if trigger == "SIGHUP" {
            let st = Command::new("kill").args(["-HUP", &b.pid().to_string()]).status().unwrap();
            assert!(st.success());
        }
        assert!(b.wait_log("TLS certificates reloaded", Duration::from_secs(10)), "{trigger}: no reload:\n{}", b.log());

        let new = net::tls_config(&ca2.pem(), None, &[]);
        let s =
            net::tls_connect(tls, new).await.unwrap_or_else(|e| panic!("{trigger}: new certificate not served: {e}"));
        let served = s.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert!(String::from_utf8_lossy(&served).contains("broker-2"), "{trigger}: old certificate served");
        assert!(net::tls_connect(tls, old.clone()).await.is_err(), "{trigger}: the old CA still verifies");

        // The connection made before the reload still works both ways.
        kept.ping().await;
        let (mut publisher, _) = kit::open_v3(addrs["tcp"], "pub", true).await;
        kit::pub_simple(&mut publisher, "news", QoS::AtMostOnce, 0, b"still here", false).await;
        match kept.recv().await {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"still here"),
            other => panic!("{trigger}: expected the message on the old connection, got {other:?}"),
        }

        // A broken file is refused and the current certificates stay.
        std::fs::write(&pki.key_file, "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n").unwrap();
        if trigger == "SIGHUP" {
            Command::new("kill").args(["-HUP", &b.pid().to_string()]).status().unwrap();
        }
        assert!(b.wait_log("TLS certificates not reloaded", Duration::from_secs(10)), "{trigger}:\n{}", b.log());
        assert!(!b.log().contains("broken"), "file contents in the log");
        let s = net::tls_connect(tls, net::tls_config(&ca2.pem(), None, &[])).await;
        assert!(s.is_ok(), "{trigger}: the last good certificate is no longer served");
    }
}
