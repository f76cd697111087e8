//! Listener management through the real binary: every listener in the
//! startup log, its own packet size cap and read rate limit, its own auth
//! chain, and its connection count in `$SYS`.

use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::kit;
use portcullis_tests::net;

#[tokio::test]
async fn each_listener_has_its_own_limits_chains_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = net::Ca::new("Listeners CA");
    let (cert, key) = ca.server("broker").write(dir.path(), "server");
    let cfg = format!(
        "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"small\"\nbind = \"127.0.0.1:0\"\nmax_packet_size = 256\nrate_limit = \"off\"\n\n\
         [[listeners]]\nname = \"closed\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"nobody\"\nrate_limit = \"off\"\n\n\
         [[listeners]]\nname = \"secure\"\ntype = \"wss\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\n\
         [limits]\nrate_limit = {{ bytes_per_sec = 4000, burst = 1000 }}\n\n\
         [auth.chains]\nnobody = [\"none\"]\n[auth.ip.none]\nallow = [\"192.0.2.0/24\"]\n\n\
         [sys]\ninterval = \"1s\"\n"
    );
    let (b, addrs) = net::start(&cfg);
    let log = b.log();
    for (name, transport) in [("main", "tcp"), ("small", "tcp"), ("closed", "tcp"), ("secure", "wss")] {
        let line = log
            .lines()
            .find(|l| l.contains(" listening") && l.contains(&format!("listener={name} ")))
            .unwrap_or_else(|| panic!("{name} not in the startup log:\n{log}"));
        assert!(line.contains(&format!("transport=\"{transport}\"")), "{line}");
    }

    // max_packet_size: told to v5 clients, enforced on this listener only.
    let (mut small, ack) = kit::open_v5(addrs["small"], "small-v5", true, Properties::default()).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(256));
    let big = kit::publish("t", QoS::AtMostOnce, None, &[b'x'; 400], false);
    small.send_packet(&Packet::Publish(big.clone())).await;
    let closing = small.expect_closed(Duration::from_secs(5)).await;
    assert!(matches!(closing.last(), Some(Packet::Disconnect(d)) if d.reason == 0x95), "{closing:?}");
    let (mut main, _) = kit::open_v5(addrs["main"], "main-v5", true, Properties::default()).await;
    kit::publish_complete(&mut main, big).await;

    // Rate limit: main inherits limits.rate_limit (4000 B/s after a 1000 B
    // burst); small turned it off. 8 kB of QoS 1 publishes each.
    let mut took = Vec::new();
    for listener in ["main", "small"] {
        let (mut raw, _) = kit::open_v3(addrs[listener], &format!("rate-{listener}"), true).await;
        let start = Instant::now();
        for i in 1..=40u16 {
            kit::pub_simple(&mut raw, "rate", QoS::AtLeastOnce, i, &[0u8; 190], false).await;
        }
        took.push(start.elapsed());
    }
    assert!(took[0] >= Duration::from_millis(1200), "main not rate limited: {took:?}");
    assert!(took[1] < Duration::from_millis(1000), "small rate limited: {took:?}");

    // Its own auth chain: nobody from loopback gets in on `closed`.
    let (_, ack) = kit::open(addrs["closed"], kit::connect_packet(ProtocolVersion::V311, "x", true)).await;
    assert_eq!(ack.code, 0x05);

    // $SYS: connections per listener (main: `main-v5`, the `rate-main`
    // connection is gone, plus the reader itself).
    let (_keep1, _) = kit::open_v3(addrs["small"], "hold-1", true).await;
    let (_keep2, _) = kit::open_v3(addrs["small"], "hold-2", true).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let small = kit::sys_fresh(addrs["main"], "listeners/small/connections", Duration::from_secs(5)).await;
        let secure = kit::sys_fresh(addrs["main"], "listeners/secure/connections", Duration::from_secs(5)).await;
        if small == "2" && secure == "0" {
            break;
        }
        assert!(Instant::now() < end, "listeners/small/connections = {small}, secure = {secure}");
    }
}

/// The server side of the TCP connection from `client` to `listener`, as
/// the kernel shows it in /proc/net/tcp: its timer (`0` none, `1`
/// retransmit, `2` keepalive for an established socket) and the time left
/// on it in 1/100 s.
fn server_socket_timer(listener: std::net::SocketAddr, client: std::net::SocketAddr) -> Option<(u8, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let (local, remote) = (format!(":{:04X}", listener.port()), format!(":{:04X}", client.port()));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[1].ends_with(&local) || !f[2].ends_with(&remote) {
            return None;
        }
        let (active, when) = f[5].split_once(':')?;
        Some((u8::from_str_radix(active, 16).ok()?, u64::from_str_radix(when, 16).ok()?))
    })
}

/// Waits (bounded) until the accepted socket has no data in flight and
/// returns its timer: keepalive (2) with keepalive on, none (0) with it off.
async fn settled_timer(listener: std::net::SocketAddr, client: std::net::SocketAddr) -> (u8, u64) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match server_socket_timer(listener, client) {
            Some((1, _)) | None if Instant::now() < end => tokio::time::sleep(Duration::from_millis(20)).await,
            Some(timer) => return timer,
            None => panic!("no socket {listener} <- {client} in /proc/net/tcp"),
        }
    }
}

/// Every accepted socket carries TCP keepalive (on by default: 120 s idle),
/// whatever the listener's type, so a peer that vanished is found even when
/// it asked for MQTT keep-alive 0; `tcp_keepalive` sets the idle time, and
/// `"off"` turns it off. Checked on the broker's own sockets, through the
/// kernel's table.
#[tokio::test]
async fn accepted_sockets_have_tcp_keepalive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = net::Ca::new("Keepalive CA");
    let (cert, key) = ca.server("broker").write(dir.path(), "server");
    let cfg = format!(
        "[[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"quick\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n\
         tcp_keepalive = {{ idle = \"7s\", interval = \"2s\", count = 2 }}\n\n\
         [[listeners]]\nname = \"secure\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\n\
         [[listeners]]\nname = \"none\"\nbind = \"127.0.0.1:0\"\ntcp_keepalive = \"off\"\n"
    );
    let (_b, addrs) = net::start(&cfg);

    // An MQTT client with keep-alive 0 on the plain listener: the default.
    let (mut plain, _) = kit::open_v3(addrs["plain"], "ka-zero", true).await;
    kit::sync(&mut plain).await;
    let local = plain.stream.local_addr().expect("local address");
    let (timer, left) = settled_timer(addrs["plain"], local).await;
    assert_eq!(timer, 2, "no keepalive timer on the accepted socket (plain listener)");
    assert!(left > 700 && left <= 12_000, "default idle is 120 s, timer shows {left}/100 s");

    // The other kinds: the socket is accepted (and keepalive set) before any
    // TLS or WebSocket handshake.
    for name in ["quick", "secure", "none"] {
        let stream = net::tcp_connect(addrs[name]).await;
        let local = stream.local_addr().expect("local address");
        let (timer, left) = settled_timer(addrs[name], local).await;
        match name {
            "quick" => {
                assert_eq!(timer, 2, "{name}: no keepalive timer");
                assert!(left <= 700, "{name}: idle is 7 s, timer shows {left}/100 s");
            }
            "secure" => assert_eq!(timer, 2, "{name}: no keepalive timer"),
            _ => assert_eq!(timer, 0, "{name}: tcp_keepalive = \"off\" but a timer runs"),
        }
    }
}
