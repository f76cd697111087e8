//! A Debian `mosquitto` broker as a child process, for the bridge tests:
//! a generated config (one loopback listener on a free port, anonymous
//! clients, log to stderr, and whatever the test adds, such as a bridge
//! `connection`), started and stopped by its PID, its log kept.
//!
//! [`Mosquitto::stop`] ends it with SIGTERM (it saves its persistence file
//! then) and [`Mosquitto::restart`] starts it again on the same port and
//! config, for outage tests.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the mosquitto binary; panics with an install hint when missing.
pub fn binary() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("mosquitto");
        if p.is_file() {
            return p;
        }
    }
    panic!("`mosquitto` not found: install the Debian package `mosquitto` (apt-get install -y mosquitto)");
}

/// A running (or stopped, between [`Mosquitto::stop`] and
/// [`Mosquitto::restart`]) mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Mosquitto {
    /// Starts mosquitto with a listener on a free loopback port plus
    /// `extra` config lines (`{dir}` in them becomes its data directory).
    pub fn start(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started as root, mosquitto drops to its own user, which must be
        // able to write its persistence file here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let port = crate::backend::free_port();
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let text = format!(
            "per_listener_settings false\nallow_anonymous true\nlistener {port} 127.0.0.1\nlog_dest stderr\n\
             log_type all\nlog_timestamp false\n{extra}\n"
        );
        let conf = dir.path().join("mosquitto.conf");
        std::fs::File::create(&conf).and_then(|mut f| f.write_all(text.as_bytes())).expect("write mosquitto.conf");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut m = Mosquitto { addr, child: None, log: Arc::new(Mutex::new(Vec::new())), dir, conf };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log").push(line);
            }
        });
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < end, "mosquitto did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its data directory (for `persistence_location`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Every log line so far (all runs).
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

    /// Stops it with SIGTERM (it saves persistence), bounded; then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running mosquitto");
        // The port was ours a moment ago; wait (bounded) until it is free.
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(self.addr).is_err() {
            assert!(Instant::now() < end, "port {} still taken", self.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
