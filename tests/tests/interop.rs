//! Interoperability with Debian's mosquitto clients (`mosquitto_pub`,
//! `mosquitto_sub`, package mosquitto-clients) over MQTT 3.1, 3.1.1 and 5.0.
//! Every child process is waited for under a timeout and killed (by PID)
//! if it outlives the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use portcullis_tests::Broker;

/// Panics with an install hint when a mosquitto client is missing.
fn tool(name: &str) -> &str {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false);
    assert!(found, "`{name}` not found on PATH: install the Debian package `mosquitto-clients` (scripts/test.sh does)");
    name
}

/// A running mosquitto client; its stdout lines arrive on a channel.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Proc {
    /// Runs `prog` under `stdbuf -oL`: with a pipe for stdout the clients
    /// would otherwise hold their output until they exit.
    fn spawn(prog: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(tool("stdbuf"))
            .arg("-oL")
            .arg(tool(prog))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        Proc { child, lines, seen: Vec::new(), what: format!("{prog} {}", args.join(" ")) }
    }

    /// Waits (bounded) for an output line containing `needle`.
    fn wait_line(&mut self, needle: &str, t: Duration) {
        let end = Instant::now() + t;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("`{}`: no line with {needle:?} within {t:?}; output: {:#?}", self.what, self.seen);
    }

    /// Waits (bounded) for the process to exit; returns its status and
    /// every output line. Kills it on timeout and panics.
    fn finish(mut self, t: Duration) -> (ExitStatus, Vec<String>) {
        let end = Instant::now() + t;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                // Collect what the reader threads still hold.
                let stop = Instant::now() + Duration::from_millis(500);
                while let Some(left) = stop.checked_duration_since(Instant::now()) {
                    match self.lines.recv_timeout(left) {
                        Ok(l) => self.seen.push(l),
                        Err(_) => break,
                    }
                }
                return (st, std::mem::take(&mut self.seen));
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("`{}` still running after {t:?}; output: {:#?}", self.what, self.seen);
            }
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL by PID (an abnormal end: no DISCONNECT).
    fn kill(&mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Message lines of a `-d` run (debug lines start with "Client ").
fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed") && !l.starts_with("stderr: "))
        .cloned()
        .collect()
}

fn port(b: &Broker) -> String {
    b.addr.port().to_string()
}

/// `mosquitto_pub` once, to completion.
fn mpub(b: &Broker, v: &str, extra: &[&str]) {
    let p = port(b);
    let mut args = vec!["-h", "127.0.0.1", "-p", &p, "-V", v];
    args.extend_from_slice(extra);
    let (st, out) = Proc::spawn("mosquitto_pub", &args).finish(Duration::from_secs(10));
    assert!(st.success(), "mosquitto_pub {args:?} failed: {st}; output {out:#?}");
}

/// `mosquitto_sub` with `-d`, once it has its SUBACK.
fn msub(b: &Broker, v: &str, extra: &[&str]) -> Proc {
    let p = port(b);
    let mut args = vec!["-h", "127.0.0.1", "-p", &p, "-V", v, "-d"];
    args.extend_from_slice(extra);
    let mut s = Proc::spawn("mosquitto_sub", &args);
    s.wait_line("received SUBACK", Duration::from_secs(10));
    s
}

fn pub_sub_three_qos(v: &str) {
    let b = Broker::start("");
    let id = format!("sub-{v}");
    let sub = msub(&b, v, &["-t", "t/#", "-C", "3", "-W", "10", "-v", "-q", "1", "-i", &id]);
    for q in ["0", "1", "2"] {
        mpub(&b, v, &["-t", &format!("t/q{q}"), "-m", &format!("m{q}"), "-q", q]);
    }
    let (st, out) = sub.finish(Duration::from_secs(15));
    assert!(st.success(), "mosquitto_sub -V {v}: {st}; output {out:#?}");
    assert_eq!(messages(&out), ["t/q0 m0", "t/q1 m1", "t/q2 m2"], "-V {v}; output {out:#?}");
    // QoS as granted: min(publish QoS, 1).
    let qos: Vec<&str> =
        out.iter().filter(|l| l.contains("received PUBLISH")).map(|l| l.split(", ").nth(1).unwrap_or("")).collect();
    assert_eq!(qos, ["q0", "q1", "q1"], "-V {v}: delivered QoS; output {out:#?}");
}

fn retained(v: &str) {
    let b = Broker::start("");
    mpub(&b, v, &["-t", "r/x", "-m", "keep", "-q", "1", "-r"]);
    let sub = msub(&b, v, &["-t", "r/#", "-C", "1", "-W", "10", "-F", "%r %q %t %p", "-q", "1"]);
    let (st, out) = sub.finish(Duration::from_secs(15));
    assert!(st.success(), "-V {v}: {st}; {out:#?}");
    assert_eq!(messages(&out), ["1 1 r/x keep"], "-V {v}: retained delivery; output {out:#?}");

    // Cleared with an empty retained message.
    mpub(&b, v, &["-t", "r/x", "-n", "-r"]);
    let sub = msub(&b, v, &["-t", "r/#", "-W", "1", "-v"]);
    let (_, out) = sub.finish(Duration::from_secs(10));
    assert!(messages(&out).is_empty(), "-V {v}: cleared retained message delivered: {out:#?}");
}

fn will(v: &str) {
    let b = Broker::start("");
    let observer = msub(&b, v, &["-t", "w/#", "-C", "1", "-W", "10", "-F", "%t %p %q", "-q", "2"]);
    let mut victim = msub(
        &b,
        v,
        &["-t", "dummy", "--will-topic", "w/victim", "--will-payload", "gone", "--will-qos", "1", "-i", "victim"],
    );
    victim.kill();
    let (st, out) = observer.finish(Duration::from_secs(15));
    assert!(st.success(), "-V {v}: observer {st}; {out:#?}");
    assert_eq!(messages(&out), ["w/victim gone 1"], "-V {v}: will; output {out:#?}");
}

#[test]
fn pub_sub_v31() {
    pub_sub_three_qos("31");
}

#[test]
fn pub_sub_v311() {
    pub_sub_three_qos("311");
}

#[test]
fn pub_sub_v5() {
    pub_sub_three_qos("5");
}

#[test]
fn retained_v31() {
    retained("31");
}

#[test]
fn retained_v311() {
    retained("311");
}

#[test]
fn retained_v5() {
    retained("5");
}

#[test]
fn will_v31() {
    will("31");
}

#[test]
fn will_v311() {
    will("311");
}

#[test]
fn will_v5() {
    will("5");
}
