//! The client's real address behind load balancers, through the real
//! binary: PROXY protocol v1 and v2 (on TCP and TLS listeners) and
//! `X-Forwarded-For` / `Forwarded` on WebSocket listeners, from trusted and
//! untrusted sources. An IP auth provider decides on the address the
//! listener established, and `$SYS` presence reports the same address.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_tests::kit;
use portcullis_tests::net::{self, Ca, Client};
use portcullis_tests::Raw;
use tokio::io::AsyncWriteExt;

/// `office` admits 203.0.113.0/24 except 203.0.113.66; everyone else is
/// unknown to it, so the chain's no_match refuses them (CONNACK 0x05).
const AUTH: &str = "[auth.chains]\nlb = [\"office\"]\n\n\
    [auth.ip.office]\nallow = [\"203.0.113.0/24\"]\ndeny = [\"203.0.113.66/32\"]\n";

fn listener(name: &str, extra: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"lb\"\n{extra}\n")
}

fn v4(s: &str) -> SocketAddrV4 {
    s.parse().expect("socket address")
}

/// Subscribes to presence events on the `tcp` listener.
async fn presence(tcp: SocketAddr) -> Raw {
    let (mut raw, _) = kit::open_v3(tcp, "presence-watch", true).await;
    kit::subscribe(&mut raw, 1, &[("$SYS/brokers/+/clients/+/connected", QoS::AtMostOnce)]).await;
    raw
}

/// The `ipaddress` of the next presence event for `client_id`.
async fn presence_ip(watch: &mut Raw, client_id: &str) -> String {
    loop {
        let p = kit::next_publish(watch).await;
        if p.topic.ends_with(&format!("/clients/{client_id}/connected")) {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("presence JSON");
            return v["ipaddress"].as_str().expect("ipaddress").to_string();
        }
    }
}

/// Sends `header` then CONNECT as `client_id`; the CONNACK code, or `None`
/// when the broker closed the connection instead.
async fn connect_after(addr: SocketAddr, header: &[u8], client_id: &str) -> Option<u8> {
    let mut c = Client::new(net::tcp_connect(addr).await);
    c.send(header).await.ok()?;
    c.connect(kit::connect_packet(ProtocolVersion::V311, client_id, true)).await
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_give_the_ip_provider_the_client_address() {
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{}{}{AUTH}\n[sys]\ninterval = \"1s\"\n",
        listener("proxied", "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]"),
        listener("strict", "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]"),
    );
    let (_b, addrs) = net::start(&cfg);
    let (proxied, dst) = (addrs["proxied"], v4("10.0.0.1:1883"));
    let mut watch = presence(addrs["tcp"]).await;

    let v1 = |src: &str| net::proxy_v1(src.parse().expect("addr"), SocketAddr::V4(dst));
    assert_eq!(connect_after(proxied, &v1("203.0.113.7:50000"), "v1-office").await, Some(0));
    assert_eq!(presence_ip(&mut watch, "v1-office").await, "203.0.113.7");
    assert_eq!(connect_after(proxied, &v1("198.51.100.9:50000"), "v1-elsewhere").await, Some(0x05));
    assert_eq!(connect_after(proxied, &v1("203.0.113.66:50000"), "v1-denied").await, Some(0x05));

    let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c']; // PP2_TYPE_NOOP
    let v2 = net::proxy_v2(Some(v4("203.0.113.8:40000")), dst, &tlv);
    assert_eq!(connect_after(proxied, &v2, "v2-office").await, Some(0));
    assert_eq!(presence_ip(&mut watch, "v2-office").await, "203.0.113.8");
    let v2 = net::proxy_v2(Some(v4("198.51.100.10:40000")), dst, &[]);
    assert_eq!(connect_after(proxied, &v2, "v2-elsewhere").await, Some(0x05));
    // LOCAL (a balancer's health check): the socket's own address, loopback here.
    let local = net::proxy_v2(None, dst, &[]);
    assert_eq!(connect_after(proxied, &local, "v2-local").await, Some(0x05));

    // No header, or a broken one: closed without a CONNACK.
    assert_eq!(connect_after(proxied, b"", "no-header").await, None);
    assert_eq!(connect_after(proxied, b"PROXY TCP4 203.0.113.7 oops 1 2\r\n", "bad-header").await, None);
    // A header from an address not in trusted_proxies: closed.
    assert_eq!(connect_after(addrs["strict"], &v1("203.0.113.7:50000"), "untrusted-proxy").await, None);

    let failures = kit::sys_fresh(addrs["tcp"], "listeners/proxied/handshake_failures", Duration::from_secs(5)).await;
    assert_eq!(failures, "2");
}

/// `proxy_protocol = true` without `trusted_proxies` would let anyone who
/// reaches the port write the header and pick the address the `ip`
/// provider judges: the broker refuses such a config (exit 2), naming the
/// file and the key, at start and under `--check-config`.
#[test]
fn proxy_protocol_without_trusted_proxies_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.toml");
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{}{AUTH}",
        listener("proxied", "proxy_protocol = true")
    );
    std::fs::write(&path, cfg).expect("write config");
    let path_arg = path.to_str().expect("path");
    for args in [vec!["--config", path_arg], vec!["--check-config", "--config", path_arg]] {
        let out = portcullis_tests::run_bounded(&args, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{args:?}: accepted and running: any client could claim any source address"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let line = stderr.lines().find(|l| l.contains("listeners[1].proxy_protocol"));
        let line = line.unwrap_or_else(|| panic!("{args:?}: the key is not named: {stderr}"));
        assert!(line.starts_with(&format!("{}:", path.display())) && line.contains("trusted_proxies"), "{line}");
    }
}

/// PROXY v2 in front of TLS: the header, then the handshake, then MQTT.
#[tokio::test]
async fn proxy_protocol_before_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Proxy CA");
    let (cert, key) = ca.server("broker").write(dir.path(), "server");
    let cfg = format!(
        "{}tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n{AUTH}",
        listener("tls", "type = \"tls\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]"),
    );
    let (_b, addrs) = net::start(&cfg);
    for (src, code) in [("203.0.113.9:1234", 0), ("198.51.100.1:1234", 0x05)] {
        let mut tcp = net::tcp_connect(addrs["tls"]).await;
        tcp.write_all(&net::proxy_v2(Some(v4(src)), v4("10.0.0.1:8883"), &[])).await.expect("send header");
        let tls = net::tls_over(tcp, net::tls_config(&ca.pem(), None, &["mqtt"])).await.expect("TLS after PROXY");
        let mut c = Client::new(tls);
        assert_eq!(
            c.connect(kit::connect_packet(ProtocolVersion::V311, "tls-proxied", true)).await,
            Some(code),
            "{src}"
        );
    }
}

/// `X-Forwarded-For` and `Forwarded` are believed from trusted proxies only,
/// walking the list from the nearest hop; a forged leftmost entry is never
/// reached, and an entry that must be read but is not an address refuses
/// the upgrade.
#[tokio::test]
async fn forwarded_headers_from_trusted_and_untrusted_proxies() {
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{}{}{AUTH}",
        listener("trusted", "type = \"ws\"\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"),
        listener("untrusted", "type = \"ws\"\ntrusted_proxies = [\"10.0.0.0/8\"]"),
    );
    let (_b, addrs) = net::start(&cfg);
    let mut watch = presence(addrs["tcp"]).await;
    let attempt = |listener: &'static str, headers: Vec<(&'static str, &'static str)>, id: &'static str| {
        let addr = addrs[listener];
        async move {
            let (resp, ws) = net::ws_upgrade(net::tcp_connect(addr).await, "/mqtt", Some("mqtt"), &headers).await;
            let Some(mut ws) = ws else { return Err(resp.status) };
            let connect = kit::connect_packet(ProtocolVersion::V311, id, true);
            ws.send_packet(&Packet::Connect(Box::new(connect))).await.expect("send CONNECT");
            match ws.recv_packet(Duration::from_secs(5)).await {
                Ok(Some(Packet::ConnAck(a))) => Ok(a.code),
                other => panic!("{id}: expected CONNACK, got {other:?}"),
            }
        }
    };
    let xff = |v: &'static str| vec![("X-Forwarded-For", v)];
    assert_eq!(attempt("trusted", xff("203.0.113.7"), "xff-office").await, Ok(0));
    assert_eq!(presence_ip(&mut watch, "xff-office").await, "203.0.113.7");
    assert_eq!(attempt("trusted", xff("198.51.100.9"), "xff-elsewhere").await, Ok(0x05));
    // The client wrote 203.0.113.7 itself; the balancer (10.1.1.1) appended
    // what it saw and the local proxy (127.0.0.1) what it saw.
    assert_eq!(attempt("trusted", xff("203.0.113.7, 198.51.100.9, 10.1.1.1"), "forged").await, Ok(0x05));
    assert_eq!(attempt("trusted", xff("garbage, 203.0.113.20"), "garbage-left").await, Ok(0));
    assert_eq!(attempt("trusted", xff("203.0.113.20, not-an-ip"), "garbage-right").await, Err(400));
    let fwd = vec![("Forwarded", "for=198.51.100.1, for=\"203.0.113.21:4711\";proto=https")];
    assert_eq!(attempt("trusted", fwd, "forwarded").await, Ok(0));
    assert_eq!(presence_ip(&mut watch, "forwarded").await, "203.0.113.21");
    // The same header from a source that is not trusted changes nothing:
    // the client is 127.0.0.1, which the office provider does not know.
    assert_eq!(attempt("untrusted", xff("203.0.113.7"), "xff-untrusted").await, Ok(0x05));
    assert_eq!(attempt("trusted", vec![], "no-header").await, Ok(0x05));
}
