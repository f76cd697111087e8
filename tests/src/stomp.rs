//! STOMP test kit for the files after `tests/tests/stomp.rs`: a broker with
//! a STOMP listener, and `tests/stomp_client.py` (stomp.py) runs read line
//! by line as JSON.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Broker;

/// A broker with an MQTT listener (`b.addr`) and a STOMP listener named
/// `stomp`; `stomp` goes into the STOMP listener's table, `extra` after.
pub fn start(extra: &str, stomp: &str) -> (Broker, SocketAddr) {
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"stomp\"\ntype = \"stomp\"\n\
         bind = \"127.0.0.1:0\"\n{stomp}\n\n{extra}"
    );
    let b = Broker::start(&cfg);
    let addr = stomp_addr(&b);
    (b, addr)
}

/// The STOMP listener's address, from the broker's log.
pub fn stomp_addr(b: &Broker) -> SocketAddr {
    listener_addr(b, "stomp")
}

/// The address of the listener named `name`, from the broker's log
/// (waits up to 10 s for its `listening` line).
pub fn listener_addr(b: &Broker, name: &str) -> SocketAddr {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = b.log();
        if let Some(a) = crate::net::listening(&log).get(name) {
            return *a;
        }
        assert!(Instant::now() < end, "no listener {name:?} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn python() -> String {
    for py in std::env::var("PORTCULLIS_PYTHON").into_iter().chain(["python3".to_string()]) {
        if Command::new(&py).args(["-c", "import stomp"]).output().is_ok_and(|o| o.status.success()) {
            return py;
        }
    }
    panic!("no Python with stomp.py: python3 -m pip install stomp.py");
}

/// One run of `stomp_client.py SCENARIO VERSION PORT ARGS…`.
#[derive(Debug)]
pub struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Py {
    pub fn start(scenario: &str, version: &str, addr: SocketAddr, args: &[&str]) -> Py {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stomp_client.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([scenario, version, &addr.port().to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py { child, lines }
    }

    /// The next JSON line (30 s at most).
    pub fn line(&mut self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("a line from stomp_client.py within 30 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The first line of a scenario that prints one.
    pub fn run(scenario: &str, version: &str, addr: SocketAddr, args: &[&str]) -> Value {
        let mut py = Py::start(scenario, version, addr, args);
        py.line()
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
