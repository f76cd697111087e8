//! End-to-end test harness: starts the real `portcullis` binary on a
//! loopback port chosen by the OS, and talks to it with a real MQTT client
//! (rumqttc) or with raw bytes.
//!
//! * [`Broker`] — one broker process per test, stopped (by its PID) on drop.
//! * [`Raw`] — a TCP client that sends hand-written bytes and decodes what
//!   comes back, every read under a timeout.
//!
//! The binary is looked up in the cargo target directory; `.ci/run` builds
//! it before the tests run (`cargo build --bins`).

pub mod backend;
pub mod dashboard;
pub mod jwt;
pub mod mosquitto;
pub mod nats;
pub mod net;
pub mod services;
pub mod stomp;
pub mod webhook;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_core::codec::{self, Packet, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Path of the `portcullis` binary under test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let p = target.join(profile).join("portcullis");
    assert!(p.exists(), "{} not found: run `cargo build --bins` first (or set PORTCULLIS_BIN)", p.display());
    p
}

/// Runs the binary with `args` (stdin empty) and waits for it to exit;
/// `None` when it still ran after `timeout` (it is then killed): a config
/// that should have been refused was accepted and the broker started.
/// It runs in a temporary working directory: a broker that gets as far as
/// opening the default store (`./data`) before it fails does so there.
pub fn run_bounded<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Option<std::process::Output> {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(binary())
        .current_dir(cwd.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let end = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Path of the `portcullis-bench` load tool (built with the binaries).
pub fn bench_binary() -> PathBuf {
    let p = binary().with_file_name("portcullis-bench");
    assert!(p.exists(), "{} not found: run `cargo build --bins` first", p.display());
    p
}

/// Peak resident memory of a process so far (VmHWM), KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// A running broker process.
#[derive(Debug)]
pub struct Broker {
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Broker {
    /// Starts a broker whose config is `extra` plus one TCP listener on
    /// 127.0.0.1:0 (unless `extra` declares listeners itself).
    pub fn start(extra: &str) -> Broker {
        let mut cfg = String::new();
        if !extra.contains("[[listeners]]") {
            cfg.push_str("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n");
        }
        cfg.push_str(extra);
        Broker::start_with_config(&cfg)
    }

    /// Starts a broker with exactly this config text, plus — when it has
    /// no `[admin]` table — the admin API on a free loopback port and its
    /// Unix socket in the broker's temporary directory (many brokers run
    /// at once; none may take the default 18083 or socket path), and —
    /// when it has no `[persistence]` table — the default (strict) store
    /// in `data/` of that directory ([`Broker::data_dir`]).
    pub fn start_with_config(cfg: &str) -> Broker {
        Broker::spawn(cfg, None, &[])
    }

    /// As [`Broker::start_with_config`], with these environment variables
    /// set for the broker process.
    pub fn start_with_env(cfg: &str, env: &[(&str, &str)]) -> Broker {
        Broker::spawn(cfg, None, env)
    }

    /// As [`Broker::start_with_config`], but run from the working
    /// directory `cwd` and without a `[persistence]` table added: the
    /// config's own (or the default `./data`, relative to `cwd`) is used.
    pub fn start_in(cwd: &std::path::Path, cfg: &str) -> Broker {
        Broker::spawn(cfg, Some(cwd), &[])
    }

    fn spawn(cfg: &str, cwd: Option<&std::path::Path>, env: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = cfg.to_string();
        if !cfg.contains("[admin]") {
            // Its Unix socket in the broker's own directory, not the
            // shared default.
            let socket = dir.path().join("admin.sock");
            cfg.push_str(&format!("\n[admin]\nbind = \"127.0.0.1:0\"\nsocket = {:?}\n", socket.display().to_string()));
        }
        if cwd.is_none() && !cfg.contains("[persistence]") {
            // The default mode is strict: its own data directory, never
            // the shared `./data` of the test's working directory (many
            // brokers run at once; one store per directory).
            let data = dir.path().join("data");
            cfg.push_str(&format!("\n[persistence]\ndir = {:?}\n", data.display().to_string()));
        }
        let cfg = cfg.as_str();
        let config_path = dir.path().join("portcullis.toml");
        std::fs::File::create(&config_path).and_then(|mut f| f.write_all(cfg.as_bytes())).expect("write config");
        let mut command = Command::new(binary());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .env("PORTCULLIS_LOG", std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(" listening") {
                    if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                        let _ = tx.send(addr.to_string());
                    }
                }
                log2.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not start; log:\n{}", log.lock().expect("log").join("\n"));
            }
        };
        Broker { addr, child: Some(child), log, _dir: dir, config_path }
    }

    /// The data directory the harness gave the store (used only when the
    /// config had no `[persistence]` table).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// The admin API's address, from its start line (waits up to 10 s).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        if !self.wait_log("admin API started", Duration::from_secs(10)) {
            return None;
        }
        let log = self.log.lock().expect("log");
        let line = log.iter().find(|l| l.contains("admin API started"))?;
        line.split_whitespace().find_map(|w| w.strip_prefix("admin_addr="))?.parse().ok()
    }

    /// Every log line so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits (bounded) until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log.lock().expect("log").iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long a raw read waits by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A client speaking raw bytes.
#[derive(Debug)]
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        Raw { stream, buf: BytesMut::new(), version: ProtocolVersion::V311 }
    }

    /// Connects from `source` (any 127.0.0.0/8 address works on Linux), so
    /// one test can play clients at several addresses.
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Raw {
        let socket = if source.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind the source address");
        let stream =
            tokio::time::timeout(READ_TIMEOUT, socket.connect(addr)).await.expect("connect timeout").expect("connect");
        Raw { stream, buf: BytesMut::new(), version: ProtocolVersion::V311 }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send_packet(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        codec::encode(p, self.version, &mut b).expect("encode");
        self.send(&b).await;
    }

    /// Next packet, or `None` if the connection closed. Panics on timeout.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_timeout(READ_TIMEOUT).await.expect("timed out waiting for a packet")
    }

    /// `Err(())` on timeout, `Ok(None)` on close.
    #[allow(clippy::result_unit_err)]
    pub async fn recv_timeout(&mut self, t: Duration) -> Result<Option<Packet>, ()> {
        let end = tokio::time::Instant::now() + t;
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.buf, Some(self.version), u32::MAX >> 4) {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(end, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits until the server closes the connection (bounded), skipping
    /// packets. Returns the packets seen.
    pub async fn expect_closed(&mut self, t: Duration) -> Vec<Packet> {
        let mut seen = Vec::new();
        loop {
            match self.recv_timeout(t).await {
                Ok(Some(p)) => seen.push(p),
                Ok(None) => return seen,
                Err(()) => panic!("connection not closed within {t:?}; saw {seen:?}"),
            }
        }
    }
}

/// Hand-built CONNECT bytes for 3.1.1 with a client id.
pub fn connect_v311(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, if clean { 0x02 } else { 0 }];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

/// Hand-built CONNECT bytes for 5.0 (no properties).
pub fn connect_v5(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, if clean { 0x02 } else { 0 }];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.push(0); // properties length
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    frame(0x10, &body)
}

/// Fixed header + body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// rumqttc v3.1.1 options for this broker.
pub fn mqtt_options(broker: &Broker, client_id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, broker.addr.ip().to_string(), broker.addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// rumqttc v5 options for this broker.
pub fn mqtt5_options(broker: &Broker, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, broker.addr.ip().to_string(), broker.addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl Broker {
    /// Sends `signal` (a name `kill` understands: "INT", "TERM", "HUP") to
    /// the broker and waits up to `timeout` for it to exit. Returns its exit
    /// status, or `None` if it did not exit in time (it is then killed).
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// Resident set size of a process in KiB (`VmRSS` in /proc/PID/status), or
/// `None` if it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Helpers for the feature tests (`sessions`, `routing`, `v5_features`,
/// `interop`): raw-client shortcuts built on [`Raw`] and the core codec,
/// rumqttc clients whose event loop runs in a task, and `$SYS` readers.
/// Every wait is bounded.
pub mod kit {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use portcullis_core::codec::{
        ConnAck, Connect, Disconnect, LastWill, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, SubAck,
        Subscribe, SubscriptionOptions,
    };
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use crate::Raw;

    /// MQTT 5 PUBLISH properties of every kind a message carries, with odd
    /// bytes in them: what must cross unchanged (between nodes, through a
    /// store, over a bridge).
    pub fn full_properties() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            content_type: Some("application/x-test; charset=utf-8".into()),
            response_topic: Some("reply/to/é".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr\xff")),
            user_properties: vec![
                ("k".into(), "v1".into()),
                ("k".into(), "v2".into()),
                ("odd: name\r\n".into(), "value with spaces, = and .".into()),
            ],
            ..Properties::default()
        }
    }

    /// Whether the connection still answers a PINGREQ (within 2 s); false
    /// once it got a DISCONNECT or was closed.
    pub async fn live(raw: &mut Raw) -> bool {
        raw.send_packet(&Packet::PingReq).await;
        let end = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < end {
            match raw.recv_timeout(Duration::from_millis(200)).await {
                Ok(Some(Packet::PingResp)) => return true,
                Ok(Some(Packet::Disconnect(_))) | Ok(None) => return false,
                Ok(Some(_)) | Err(()) => {}
            }
        }
        false
    }

    /// A CONNECT value (no will, no credentials, keep-alive 30 s).
    pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool) -> Connect {
        Connect {
            protocol: version,
            bridge: false,
            clean_start: clean,
            keep_alive: 30,
            client_id: client_id.to_string(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    /// A will for a CONNECT.
    pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> LastWill {
        LastWill {
            topic: topic.to_string(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos,
            retain,
            properties: Properties::default(),
        }
    }

    /// Connects, sends `connect`, and returns the client with its CONNACK
    /// (panics on anything else).
    pub async fn open(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::connect(addr).await;
        raw.version = connect.protocol;
        raw.send_packet(&Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// 3.1.1 client; panics unless the CONNACK accepts it.
    pub async fn open_v3(addr: SocketAddr, client_id: &str, clean: bool) -> (Raw, bool) {
        let (raw, ack) = open(addr, connect_packet(ProtocolVersion::V311, client_id, clean)).await;
        assert_eq!(ack.code, 0, "CONNACK refused {client_id}");
        (raw, ack.session_present)
    }

    /// 5.0 client with CONNECT properties; panics unless accepted.
    pub async fn open_v5(addr: SocketAddr, client_id: &str, clean: bool, props: Properties) -> (Raw, ConnAck) {
        let mut c = connect_packet(ProtocolVersion::V5, client_id, clean);
        c.properties = props;
        let (raw, ack) = open(addr, c).await;
        assert_eq!(ack.code, 0, "CONNACK refused {client_id}: {ack:?}");
        (raw, ack)
    }

    /// Subscription options with only a QoS.
    pub fn opts(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions { qos, ..SubscriptionOptions::default() }
    }

    /// SUBSCRIBE with full options and properties; returns the SUBACK.
    pub async fn subscribe_with(
        raw: &mut Raw,
        packet_id: u16,
        filters: &[(&str, SubscriptionOptions)],
        properties: Properties,
    ) -> SubAck {
        let filters = filters.iter().map(|(f, o)| ((*f).to_string(), *o)).collect();
        raw.send_packet(&Packet::Subscribe(Subscribe { packet_id, filters, properties })).await;
        match raw.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.packet_id, packet_id, "SUBACK packet id");
                a
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// SUBSCRIBE to filters at QoS levels; asserts every one was granted.
    pub async fn subscribe(raw: &mut Raw, packet_id: u16, filters: &[(&str, QoS)]) {
        let f: Vec<(&str, SubscriptionOptions)> = filters.iter().map(|(t, q)| (*t, opts(*q))).collect();
        let ack = subscribe_with(raw, packet_id, &f, Properties::default()).await;
        let want: Vec<u8> = filters.iter().map(|(_, q)| *q as u8).collect();
        assert_eq!(ack.return_codes, want, "SUBACK codes for {filters:?}");
    }

    /// A PUBLISH packet value.
    pub fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8], retain: bool) -> Publish {
        Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_string(),
            packet_id,
            payload: Bytes::copy_from_slice(payload),
            properties: Properties::default(),
        }
    }

    /// Sends a PUBLISH and completes its QoS flow (PUBACK, or PUBREC →
    /// PUBREL → PUBCOMP). QoS 0 is followed by a PINGREQ round trip, so
    /// the broker has routed it when this returns. Returns the reason
    /// code of the PUBACK / PUBREC (0 for QoS 0). Panics if another packet
    /// arrives in between.
    pub async fn publish_complete(raw: &mut Raw, p: Publish) -> u8 {
        let qos = p.qos;
        let id = p.packet_id.unwrap_or(0);
        raw.send_packet(&Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => {
                sync(raw).await;
                0
            }
            QoS::AtLeastOnce => match raw.recv().await {
                Some(Packet::PubAck(r)) if r.packet_id == id => r.reason,
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let reason = match raw.recv().await {
                    Some(Packet::PubRec(r)) if r.packet_id == id => r.reason,
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                };
                if reason < 0x80 {
                    raw.send_packet(&Packet::PubRel(PubResp::ok(id))).await;
                    match raw.recv().await {
                        Some(Packet::PubComp(r)) if r.packet_id == id => {}
                        other => panic!("expected PUBCOMP {id}, got {other:?}"),
                    }
                }
                reason
            }
        }
    }

    /// Publishes (QoS 0, 1 or 2; packet id = `id` when QoS > 0) and waits
    /// until the broker has handled it.
    pub async fn pub_simple(raw: &mut Raw, topic: &str, qos: QoS, id: u16, payload: &[u8], retain: bool) -> u8 {
        let pid = (qos != QoS::AtMostOnce).then_some(id);
        publish_complete(raw, publish(topic, qos, pid, payload, retain)).await
    }

    /// PINGREQ → PINGRESP: everything sent before has been handled.
    /// Panics if another packet arrives first.
    pub async fn sync(raw: &mut Raw) {
        raw.send_packet(&Packet::PingReq).await;
        match raw.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Sends DISCONNECT (reason 0) and waits until the broker closes.
    pub async fn disconnect(mut raw: Raw) {
        raw.send_packet(&Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() })).await;
        let _ = raw.recv_timeout(Duration::from_secs(5)).await;
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn next_publish(raw: &mut Raw) -> Publish {
        match raw.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Every packet that arrives within `window` (stops early on close).
    pub async fn collect(raw: &mut Raw, window: Duration) -> Vec<Packet> {
        let end = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match raw.recv_timeout(left).await {
                Ok(Some(p)) => out.push(p),
                Ok(None) | Err(()) => return out,
            }
        }
    }

    /// Asserts that nothing arrives within `window`.
    pub async fn expect_silence(raw: &mut Raw, window: Duration, what: &str) {
        if let Ok(Some(p)) = raw.recv_timeout(window).await {
            panic!("{what}: expected nothing, got {p:?}");
        }
    }

    /// PUBLISHes received until `idle` passes without one (bounded by
    /// `max` overall). QoS 1 and 2 are acknowledged (PUBACK / PUBREC and
    /// PUBCOMP), so the broker keeps sending.
    pub async fn drain_publishes(raw: &mut Raw, idle: Duration, max: Duration) -> Vec<Publish> {
        let end = tokio::time::Instant::now() + max;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match raw.recv_timeout(idle.min(left)).await {
                Ok(Some(Packet::Publish(p))) => {
                    ack_incoming(raw, &p).await;
                    out.push(p);
                }
                Ok(Some(Packet::PubRel(r))) => raw.send_packet(&Packet::PubComp(PubResp::ok(r.packet_id))).await,
                Ok(Some(_)) => {}
                Ok(None) | Err(()) => return out,
            }
        }
    }

    /// Acknowledges an incoming PUBLISH (PUBACK or PUBREC).
    pub async fn ack_incoming(raw: &mut Raw, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => raw.send_packet(&Packet::PubAck(PubResp::ok(id))).await,
            (QoS::ExactlyOnce, Some(id)) => raw.send_packet(&Packet::PubRec(PubResp::ok(id))).await,
            _ => {}
        }
    }

    /// Payload as UTF-8 text.
    pub fn text(p: &[u8]) -> String {
        String::from_utf8_lossy(p).into_owned()
    }

    /// Subscribes to `$SYS/brokers/+/<suffix>` and returns the first value
    /// published after the subscription (skipping the retained copy), so
    /// the value reflects what happened before this call. Needs a short
    /// `sys.interval`.
    pub async fn sys_fresh(addr: SocketAddr, suffix: &str, within: Duration) -> String {
        let (mut raw, _) = open_v3(addr, &format!("sys-reader-{}", suffix.replace('/', "-")), true).await;
        let filter = format!("$SYS/brokers/+/{suffix}");
        subscribe(&mut raw, 1, &[(filter.as_str(), QoS::AtMostOnce)]).await;
        let end = tokio::time::Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "no fresh {filter} within {within:?}");
            match raw.recv_timeout(left).await {
                Ok(Some(Packet::Publish(p))) if !p.retain => return text(&p.payload),
                Ok(Some(_)) => {}
                Ok(None) => panic!("connection closed while waiting for {filter}"),
                Err(()) => panic!("no fresh {filter} within {within:?}"),
            }
        }
    }

    /// Waits until the broker has logged `n` disconnections of client `id`.
    /// It logs them after the session cleanup, which happens just after the
    /// socket is closed.
    pub fn wait_disconnects(b: &crate::Broker, id: &str, n: usize) {
        // `client disconnected client_id=<id> peer=…`
        let needle = format!("client_id={id} ");
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            let log = b.log();
            if log.lines().filter(|l| l.contains("client disconnected") && l.contains(&needle)).count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{id} not disconnected {n} times; log:\n{}", b.log());
    }

    /// A rumqttc 3.1.1 client whose event loop runs in a task that
    /// forwards every incoming packet; it stops at the first error (no
    /// automatic reconnect). Dropping it aborts the task, which closes
    /// the socket without DISCONNECT.
    #[derive(Debug)]
    pub struct Mqtt3 {
        pub client: rumqttc::AsyncClient,
        pub rx: mpsc::UnboundedReceiver<rumqttc::Packet>,
        task: JoinHandle<()>,
    }

    impl Mqtt3 {
        /// Connects and waits for the CONNACK.
        pub async fn connect(opts: rumqttc::MqttOptions, cap: usize) -> (Mqtt3, rumqttc::ConnAck) {
            let (client, mut ev) = rumqttc::AsyncClient::new(opts, cap);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match ev.poll().await {
                        Ok(rumqttc::Event::Incoming(p)) => {
                            if tx.send(p).is_err() {
                                return;
                            }
                        }
                        Ok(rumqttc::Event::Outgoing(_)) => {}
                        Err(_) => return,
                    }
                }
            });
            let ack = loop {
                match tokio::time::timeout(crate::READ_TIMEOUT, rx.recv()).await {
                    Ok(Some(rumqttc::Packet::ConnAck(a))) => break a,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => panic!("rumqttc: no CONNACK"),
                }
            };
            (Mqtt3 { client, rx, task }, ack)
        }

        /// Subscribes and waits for the SUBACK.
        pub async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) -> rumqttc::SubAck {
            self.client.subscribe(filter, qos).await.expect("subscribe request");
            loop {
                match self.next(crate::READ_TIMEOUT).await {
                    Some(rumqttc::Packet::SubAck(a)) => return a,
                    Some(_) => {}
                    None => panic!("rumqttc: no SUBACK for {filter}"),
                }
            }
        }

        /// Next incoming packet within `t`.
        pub async fn next(&mut self, t: Duration) -> Option<rumqttc::Packet> {
            tokio::time::timeout(t, self.rx.recv()).await.ok().flatten()
        }

        /// Next incoming PUBLISH within `t`, skipping other packets.
        pub async fn next_publish(&mut self, t: Duration) -> Option<rumqttc::Publish> {
            let end = tokio::time::Instant::now() + t;
            loop {
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, self.rx.recv()).await {
                    Ok(Some(rumqttc::Packet::Publish(p))) => return Some(p),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        }

        /// Sends DISCONNECT and waits (bounded) for the event loop to end.
        pub async fn disconnect(mut self) {
            let _ = self.client.disconnect().await;
            let _ = tokio::time::timeout(crate::READ_TIMEOUT, &mut self.task).await;
        }
    }

    impl Drop for Mqtt3 {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// The rumqttc 5.0 counterpart of [`Mqtt3`].
    #[derive(Debug)]
    pub struct Mqtt5 {
        pub client: rumqttc::v5::AsyncClient,
        pub rx: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
        task: JoinHandle<()>,
    }

    impl Mqtt5 {
        /// Connects and waits for the CONNACK.
        pub async fn connect(
            opts: rumqttc::v5::MqttOptions,
            cap: usize,
        ) -> (Mqtt5, rumqttc::v5::mqttbytes::v5::ConnAck) {
            use rumqttc::v5::mqttbytes::v5::Packet as P;
            let (client, mut ev) = rumqttc::v5::AsyncClient::new(opts, cap);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match ev.poll().await {
                        Ok(rumqttc::v5::Event::Incoming(p)) => {
                            if tx.send(p).is_err() {
                                return;
                            }
                        }
                        Ok(rumqttc::v5::Event::Outgoing(_)) => {}
                        Err(_) => return,
                    }
                }
            });
            let ack = loop {
                match tokio::time::timeout(crate::READ_TIMEOUT, rx.recv()).await {
                    Ok(Some(P::ConnAck(a))) => break a,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => panic!("rumqttc v5: no CONNACK"),
                }
            };
            (Mqtt5 { client, rx, task }, ack)
        }

        /// Next incoming PUBLISH within `t`, skipping other packets.
        pub async fn next_publish(&mut self, t: Duration) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
            use rumqttc::v5::mqttbytes::v5::Packet as P;
            let end = tokio::time::Instant::now() + t;
            loop {
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, self.rx.recv()).await {
                    Ok(Some(P::Publish(p))) => return Some(p),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        }

        /// Next incoming packet within `t`.
        pub async fn next(&mut self, t: Duration) -> Option<rumqttc::v5::mqttbytes::v5::Packet> {
            tokio::time::timeout(t, self.rx.recv()).await.ok().flatten()
        }

        /// Sends DISCONNECT and waits (bounded) for the event loop to end.
        pub async fn disconnect(mut self) {
            let _ = self.client.disconnect().await;
            let _ = tokio::time::timeout(crate::READ_TIMEOUT, &mut self.task).await;
        }
    }

    impl Drop for Mqtt5 {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}
