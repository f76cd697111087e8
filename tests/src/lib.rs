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

    /// Starts a broker with exactly this config text.
    pub fn start_with_config(cfg: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("portcullis.toml");
        std::fs::File::create(&config_path).and_then(|mut f| f.write_all(cfg.as_bytes())).expect("write config");
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .env("PORTCULLIS_LOG", std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "info".into()))
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
