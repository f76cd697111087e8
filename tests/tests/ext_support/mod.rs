//! Helpers shared by the LDAP and MongoDB backend tests: raw CONNECTs with
//! credentials, CONNACK codes per protocol version, SUBACK / PUBACK
//! shortcuts, and a guard for a server process a test spawned (stopped by
//! its PID, woken first if the test froze it).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
pub use portcullis_tests::backend::connect_bytes_raw as connect_bytes;
use portcullis_tests::kit::*;
use portcullis_tests::Raw;

pub const V3: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const VERSIONS: [ProtocolVersion; 2] = [V3, V5];
pub const Q1: QoS = QoS::AtLeastOnce;

/// `(3.1.1, 5.0)` codes picked by version.
pub fn code(version: ProtocolVersion, v3: u8, v5: u8) -> u8 {
    if version == V5 {
        v5
    } else {
        v3
    }
}

/// Bad username or password.
pub fn bad_credentials(v: ProtocolVersion) -> u8 {
    code(v, 0x04, 0x86)
}
/// Not authorized (every provider ignored: `no_match = deny`).
pub fn not_authorized(v: ProtocolVersion) -> u8 {
    code(v, 0x05, 0x87)
}
/// Server unavailable (a provider failed, `on_error = deny`).
pub fn unavailable(v: ProtocolVersion) -> u8 {
    code(v, 0x03, 0x88)
}

/// Sends a CONNECT; returns the client and the CONNACK code.
pub async fn try_login(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> (Raw, u8) {
    let mut raw = Raw::connect(addr).await;
    raw.version = version;
    raw.send(&connect_bytes(version, client_id, username, password.map(str::as_bytes))).await;
    match raw.recv_timeout(Duration::from_secs(15)).await {
        Ok(Some(Packet::ConnAck(a))) => (raw, a.code),
        other => panic!("{client_id} ({version:?}): expected CONNACK, got {other:?}"),
    }
}

/// The CONNACK code for these credentials.
pub async fn connack(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> u8 {
    try_login(addr, version, client_id, username, password).await.1
}

/// A client that was admitted.
pub async fn login(addr: SocketAddr, version: ProtocolVersion, client_id: &str, username: &str, password: &str) -> Raw {
    let (raw, c) = try_login(addr, version, client_id, Some(username), Some(password)).await;
    assert_eq!(c, 0, "{client_id} ({version:?}) as {username:?} refused");
    raw
}

/// SUBSCRIBE one packet with several filters; the SUBACK codes.
pub async fn suback(raw: &mut Raw, id: u16, filters: &[(&str, QoS)]) -> Vec<u8> {
    let f: Vec<(&str, portcullis_core::codec::SubscriptionOptions)> =
        filters.iter().map(|(t, q)| (*t, opts(*q))).collect();
    subscribe_with(raw, id, &f, Properties::default()).await.return_codes
}

/// Retries `f` (bounded by `within`) until it returns `want`; the last value.
pub async fn eventually<F, Fut>(within: Duration, want: u8, mut f: F) -> u8
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let end = Instant::now() + within;
    loop {
        let got = f().await;
        if got == want || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TOML basic string.
pub fn q(s: &str) -> String {
    format!("{s:?}")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A server process this test started with a services helper
/// (`…_SPAWN [PORT]` printing `PID PORT`). Dropping it wakes it (if
/// frozen) and stops it, by PID.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub port: u16,
    spawn: String,
}

impl Spawned {
    /// Runs the helper (bounded) and parses `PID PORT`.
    pub fn start(spawn: &str, port: Option<u16>) -> Spawned {
        let mut cmd = Command::new(spawn);
        if let Some(p) = port {
            cmd.arg(p.to_string());
        }
        let out = run_bounded(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{spawn} failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let pid = words.next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{spawn}: no PID in {text:?}"));
        let port = words.next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{spawn}: no port in {text:?}"));
        Spawned { pid, port, spawn: spawn.to_string() }
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid.to_string()).status().expect("kill");
        assert!(st.success(), "kill -{sig} {}", self.pid);
    }

    /// Freezes the server (SIGSTOP) and returns once every one of its
    /// threads is stopped. `kill` returns before that: the kernel wakes one
    /// thread to take the stop to the others, and on a loaded machine the
    /// rest may still answer a request or two in between.
    pub fn freeze(&self) {
        self.signal("STOP");
        let end = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(self.pid) {
            assert!(Instant::now() < end, "PID {} did not stop within 10 s of SIGSTOP", self.pid);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the process (TERM, then KILL after 10 s) and waits until its
    /// port is free.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.pid.to_string()).status();
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && alive(self.pid) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(self.pid) {
            let _ = Command::new("kill").arg("-KILL").arg(self.pid.to_string()).status();
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port (after [`Spawned::stop`]).
    pub fn restart(&mut self) {
        let mut again = Spawned::start(&self.spawn, Some(self.port));
        self.pid = again.pid;
        // `self` owns the process now; `again` must not stop it.
        again.pid = 0;
    }
}

/// Whether every thread of `pid` is in the stopped state (`T`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { return false };
        // `PID (COMM) STATE …`; COMM may itself hold spaces or parentheses.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        any = true;
    }
    any
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if alive(self.pid) {
            self.stop();
        }
    }
}

/// Whether the process exists and is not a zombie (PID 0: no process).
fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs a command to completion within `limit` (killed after).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
