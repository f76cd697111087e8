//! Helpers for the backend tests (`backend_*.rs`): raw CONNECTs with any
//! username, CONNACK codes for both protocol versions, SUBSCRIBE and
//! PUBLISH outcomes, bounded waits. Every wait is bounded.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, ProtocolVersion, QoS};

use crate::kit::{opts, pub_simple, subscribe_with};
use crate::{frame, Broker, Raw};

pub const V3: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// CONNACK codes (3.1.1, 5.0).
pub const OK: (u8, u8) = (0, 0);
pub const BAD_CREDENTIALS: (u8, u8) = (4, 0x86);
pub const NOT_AUTHORIZED: (u8, u8) = (5, 0x87);
pub const UNAVAILABLE: (u8, u8) = (3, 0x88);

/// Hand-built CONNECT bytes, so any username (NUL, CR/LF, 64 KiB) can be sent.
pub fn connect_bytes(
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Vec<u8> {
    connect_bytes_raw(version, client_id, username, password.map(str::as_bytes))
}

/// [`connect_bytes`] with a password of any bytes (clean session,
/// keep-alive 30 s, no will, no properties).
pub fn connect_bytes_raw(
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Vec<u8> {
    let level = if version == V5 { 5 } else { 4 };
    let mut flags = 0x02u8;
    if username.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 30];
    if version == V5 {
        body.push(0); // properties length
    }
    let mut field = |b: &[u8]| {
        body.extend_from_slice(&(b.len() as u16).to_be_bytes());
        body.extend_from_slice(b);
    };
    field(client_id.as_bytes());
    if let Some(u) = username {
        field(u.as_bytes());
    }
    if let Some(p) = password {
        field(p);
    }
    frame(0x10, &body)
}

/// Connects; returns the client and the CONNACK code, or `None` when the
/// broker closed the connection without one (a CONNECT it refused to parse).
pub async fn try_login(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> (Raw, Option<u8>) {
    let mut raw = Raw::connect(addr).await;
    raw.version = version;
    raw.send(&connect_bytes(version, client_id, username, password)).await;
    match raw.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Packet::ConnAck(a))) => (raw, Some(a.code)),
        Ok(None) => (raw, None),
        other => panic!("{client_id}: expected CONNACK, got {other:?}"),
    }
}

/// The CONNACK code for these credentials (panics if there is none).
pub async fn code(addr: SocketAddr, version: ProtocolVersion, user: &str, password: &str) -> u8 {
    let (_, c) = try_login(addr, version, &format!("c-{user}"), Some(user), Some(password)).await;
    c.unwrap_or_else(|| panic!("{user}: connection closed without CONNACK"))
}

/// Asserts the CONNACK for both protocol versions.
pub async fn expect(addr: SocketAddr, user: &str, password: &str, want: (u8, u8)) {
    assert_eq!(code(addr, V3, user, password).await, want.0, "{user} (3.1.1)");
    assert_eq!(code(addr, V5, user, password).await, want.1, "{user} (5.0)");
}

/// An admitted client.
pub async fn login(addr: SocketAddr, version: ProtocolVersion, client_id: &str, user: &str, password: &str) -> Raw {
    let (raw, c) = try_login(addr, version, client_id, Some(user), Some(password)).await;
    assert_eq!(c, Some(0), "{user} refused");
    raw
}

/// A PUBLISH with QoS 1 or 2: whether the broker took it (PUBACK/PUBREC
/// below 0x80; 0x10 means no subscriber, which is still accepted).
pub async fn published(raw: &mut Raw, topic: &str, qos: QoS, id: u16, retain: bool) -> bool {
    let reason = pub_simple(raw, topic, qos, id, b"1", retain).await;
    assert!(reason < 0x80 || reason == 0x87, "{topic}: unexpected reason {reason:#x}");
    reason < 0x80
}

/// SUBACK code for one filter.
pub async fn sub_code(raw: &mut Raw, id: u16, filter: &str, qos: QoS) -> u8 {
    subscribe_with(raw, id, &[(filter, opts(qos))], Default::default()).await.return_codes[0]
}

/// Retries `f` every 200 ms until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < end, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The addresses of the first `n` listeners, in config order, from the log.
pub fn listener_addrs(b: &Broker, n: usize) -> Vec<SocketAddr> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let addrs: Vec<SocketAddr> = b
            .log()
            .lines()
            .filter(|l| l.contains(" listening"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .filter_map(|a| a.parse().ok())
            .collect();
        if addrs.len() >= n {
            return addrs;
        }
        assert!(Instant::now() < end, "{n} listeners not up; log:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now (from the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Runs a command that should exit by itself within 15 s: (success, stderr).
/// It runs in a temporary working directory (a broker that opens the
/// default store, `./data`, before it fails does so there).
pub fn run_bounded(cmd: &mut Command) -> (bool, String) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut child = cmd
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Median 5.0 CONNACK latencies of wrong passwords for `user` and of
/// unknown users, interleaved `tries` times (wrong first, so a provider's
/// decoy model is `user`'s hash); every answer must be `want` (bad
/// credentials, for both). For the unknown-user timing tests.
pub async fn latency_wrong_vs_unknown(addr: SocketAddr, user: &str, tries: usize, want: u8) -> (Duration, Duration) {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..tries {
        for (who, out) in [(user.to_string(), &mut wrong), (format!("nobody-{i}"), &mut unknown)] {
            let t = Instant::now();
            let (_, c) = try_login(addr, V5, &format!("t-{who}-{i}"), Some(&who), Some(&format!("guess-{i}"))).await;
            out.push(t.elapsed());
            assert_eq!(c, Some(want), "{who}: the CONNACK code");
        }
    }
    (median(wrong), median(unknown))
}

/// Asserts that unknown users take at least a third of a wrong password's
/// time: with a decoy verification both cost one hash; without one the
/// unknown user costs a small fraction of it. The slack of 3 keeps a loaded
/// machine (both kinds slow down together) from failing it.
#[track_caller]
pub fn assert_unknown_users_cost_a_hash(wrong: Duration, unknown: Duration) {
    eprintln!("median CONNACK latency: wrong password {wrong:?}, unknown user {unknown:?}");
    assert!(
        unknown * 3 >= wrong,
        "an unknown user answers in {unknown:?}, a wrong password in {wrong:?}: the latency tells them apart"
    );
}
