//! Node identity and membership (issue 19): three brokers on three
//! clustered NATS servers (127.0.0.1-3), the node list in JetStream KV.
//!
//! * Every node lists the three nodes in `/api/v5/nodes` (a viewer key),
//!   `/api/v5/nodes/{node}`, `ctl cluster status` (table and `--json`) and
//!   the retained `$SYS/brokers`; the slots (high 16 bits of connection
//!   ids) are distinct.
//! * A broker stopped with SIGTERM is shown `stopped` at once (before
//!   `node_timeout` could have passed).
//! * A SIGKILLed broker is shown `stopped` on the others within
//!   `node_timeout` + one `heartbeat_interval` (measured, printed),
//!   `$SYS/brokers` drops it, `cluster_nodes{status}` counts it, and `ctl
//!   cluster status` exits 1.
//! * A second node with a running node's `[node] name` refuses to start,
//!   naming the key; once that node is dead (SIGKILL) a node with the name
//!   starts and gets the same slot back.
//! * Single-node mode: `/api/v5/nodes` is this node, `$SYS/brokers` its
//!   name.
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_members -- --test-threads=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{binary, Broker};
use serde_json::Value;

const SECRET: &str = "s3cret-0123456789abcdef";
/// `[cluster]` defaults, as shipped.
const HEARTBEAT: Duration = Duration::from_secs(2);
const NODE_TIMEOUT: Duration = Duration::from_secs(6);
/// How long three nodes may take to see each other (first heartbeats).
const FORM_TIMEOUT: Duration = Duration::from_secs(20);

/// Node `i` (1-based) on NATS server `nats_i`, with a viewer API key.
fn node(nats: &Nats, nats_i: usize, name: &str, dir: &Path, extra: &str) -> Broker {
    let boot = dir.join(format!("bootstrap-{name}"));
    std::fs::write(&boot, format!("view:{SECRET}:viewer\n")).expect("bootstrap");
    let url = nats.url(nats_i);
    let b = Broker::start(&format!(
        "[node]\nname = \"{name}\"\n[limits]\nmax_packet_size = \"1MiB\"\n[sys]\ninterval = \"1s\"\n\
         [cluster]\nenabled = true\nnats = [\"{url}\"]\n{extra}\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = {sock:?}\ndata_dir = {data:?}\nbootstrap_file = {boot:?}\n",
        sock = dir.join(format!("{name}.sock")).display().to_string(),
        data = dir.join(format!("admin-{name}-{}", std::process::id())).display().to_string(),
        boot = boot.display().to_string(),
    ));
    assert!(b.wait_log("cluster: connected to NATS", Duration::from_secs(30)), "{name}: {}", b.log());
    b
}

async fn api(addr: SocketAddr, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .basic_auth("view", Some(SECRET))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn api_text(addr: SocketAddr, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .basic_auth("view", Some(SECRET))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// (name, status) of every node in `/api/v5/nodes`, sorted.
async fn statuses(addr: SocketAddr) -> Vec<(String, String)> {
    let (code, body) = api(addr, "/api/v5/nodes").await;
    assert_eq!(code, 200, "{body}");
    let mut v: Vec<(String, String)> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().expect("as the test expects").to_string(),
                n["node_status"].as_str().expect("as the test expects").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn want(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Polls `/api/v5/nodes` until it is `expected` (bounded); the time taken.
async fn until_statuses(addr: SocketAddr, expected: &[(&str, &str)], within: Duration) -> Duration {
    let start = Instant::now();
    let expected = want(expected);
    loop {
        let now = statuses(addr).await;
        if now == expected {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{addr}: nodes {now:?}, want {expected:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `portcullis --config <cfg> [--json] ctl cluster status`: exit code, stdout, stderr.
fn ctl_status(config: &Path, json: bool) -> (i32, String, String) {
    let mut args = vec!["--config".to_string(), config.display().to_string(), "ctl".into()];
    if json {
        args.push("--json".into());
    }
    args.extend(["cluster".into(), "status".into()]);
    let out =
        Command::new(binary()).args(&args).env_remove("PORTCULLIS_API_KEY").stdin(Stdio::null()).output().expect("ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The retained `$SYS/brokers` on `addr`, then every later value until
/// one equals `until` (bounded): returns the first (retained) value.
async fn sys_brokers(addr: SocketAddr, id: &str, until: Option<&str>, within: Duration) -> String {
    let (mut raw, _) = open_v3(addr, id, true).await;
    subscribe(&mut raw, 1, &[("$SYS/brokers", QoS::AtMostOnce)]).await;
    let end = tokio::time::Instant::now() + within;
    let mut first = None;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{addr}: $SYS/brokers never {until:?} (first {first:?})");
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) => {
                let v = text(&p.payload);
                let f = first.get_or_insert(v.clone()).clone();
                if until.is_none_or(|u| u == v) {
                    return f;
                }
            }
            Ok(Some(_)) => {}
            other => panic!("{addr}: $SYS/brokers: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_list_each_other_and_a_killed_one_is_stopped() {
    let Some(nats) = Nats::start(3) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<Broker> = (1..=3).map(|i| node(&nats, i, &format!("n{i}"), dir.path(), "")).collect();
    let admin: Vec<SocketAddr> = nodes.iter().map(|b| b.admin_addr().expect("admin API")).collect();
    let all = [("n1", "running"), ("n2", "running"), ("n3", "running")];

    // --- every node sees the three, with distinct slots -------------------
    for a in &admin {
        until_statuses(*a, &all, FORM_TIMEOUT).await;
    }
    for (i, a) in admin.iter().enumerate() {
        let (_, body) = api(*a, "/api/v5/nodes").await;
        let mut slots: Vec<u64> =
            body.as_array().expect("as the test expects").iter().map(|n| n["slot"].as_u64().expect("slot")).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 3, "distinct slots: {body}");
        assert!(slots.iter().all(|s| (1..=65535).contains(s)), "{body}");
        for n in body.as_array().expect("as the test expects") {
            assert_eq!(n["version"].as_str(), Some(env!("CARGO_PKG_VERSION")), "{n}");
            let listeners = n["listeners"].as_array().expect("listeners");
            assert_eq!(listeners.len(), 1, "{n}");
            assert!(listeners[0].as_str().expect("as the test expects").starts_with("tcp:tcp 127.0.0.1:"), "{n}");
        }
        // One node by name, from every node; the same slot everywhere.
        let (code, one) = api(*a, "/api/v5/nodes/n2").await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(one["node"], "n2");
        assert_eq!(one["node_status"], "running");
        let n2_here = body
            .as_array()
            .expect("as the test expects")
            .iter()
            .find(|n| n["node"] == "n2")
            .expect("as the test expects")["slot"]
            .clone();
        assert_eq!(one["slot"], n2_here);
        assert_eq!(api(*a, "/api/v5/nodes/n9").await.0, 404);
        // $SYS/brokers: the running names, retained.
        let sys = sys_brokers(nodes[i].addr, &format!("sys-{i}"), Some("n1,n2,n3"), FORM_TIMEOUT).await;
        assert!(sys.starts_with('n'), "{sys}");
        // cluster_nodes{status}
        let prom = api_text(*a, "/metrics").await;
        assert!(prom.contains("cluster_nodes{status=\"running\"} 3"), "{prom}");
    }
    // The slot of node i's connection ids is the one listed.
    let (_, body) = api(admin[0], "/api/v5/nodes").await;
    let slot_of = |name: &str| {
        body.as_array().expect("as the test expects").iter().find(|n| n["node"] == name).expect("as the test expects")
            ["slot"]
            .as_u64()
    };
    for (i, b) in nodes.iter().enumerate() {
        let name = format!("n{}", i + 1);
        assert!(
            b.log().contains(&format!("slot={}", slot_of(&name).expect("as the test expects"))),
            "{name}: {}",
            b.log()
        );
    }

    // --- ctl cluster status ----------------------------------------------
    let (code, out, err) = ctl_status(&nodes[0].config_path, false);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NODE") && lines[0].contains("STATUS") && lines[0].contains("SLOT"), "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    for (i, l) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cells[0], format!("n{}", i + 1), "{out}");
        assert_eq!(cells[1], "running", "{out}");
    }
    let (code, out, err) = ctl_status(&nodes[1].config_path, true);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{out}");

    // --- SIGKILL n3: stopped on the others within the timeout ---------------
    let (mut sub1, _) = open_v3(nodes[0].addr, "sys-watch", true).await;
    subscribe(&mut sub1, 1, &[("$SYS/brokers", QoS::AtMostOnce)]).await;
    let killed = Instant::now();
    nodes[2].signal_and_wait("KILL", Duration::from_secs(10)).expect("n3 killed");
    let down = [("n1", "running"), ("n2", "running"), ("n3", "stopped")];
    let bound = NODE_TIMEOUT + HEARTBEAT + Duration::from_secs(3);
    until_statuses(admin[0], &down, Duration::from_secs(30)).await;
    let t1 = killed.elapsed();
    until_statuses(admin[1], &down, Duration::from_secs(30)).await;
    let seen = killed.elapsed();
    eprintln!("SIGKILL of n3: stopped on n1 after {t1:?}, on both after {seen:?} (node_timeout {NODE_TIMEOUT:?}, heartbeat {HEARTBEAT:?})");
    // Its last beat was less than one interval before the kill.
    assert!(
        t1 >= NODE_TIMEOUT - HEARTBEAT - Duration::from_millis(500),
        "n3 shown stopped after {t1:?}: before its timeout"
    );
    assert!(seen <= bound, "n3 shown stopped after {seen:?}, beyond node_timeout + heartbeat ({bound:?} with slack)");
    // $SYS/brokers on n1 says n1,n2.
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "$SYS/brokers never became n1,n2");
        if let Ok(Some(Packet::Publish(p))) = sub1.recv_timeout(left).await {
            if text(&p.payload) == "n1,n2" {
                break;
            }
        }
    }
    assert_eq!(sys_brokers(nodes[1].addr, "sys-after", None, Duration::from_secs(5)).await, "n1,n2");
    let prom = api_text(admin[0], "/metrics").await;
    assert!(prom.contains("cluster_nodes{status=\"running\"} 2"), "{prom}");
    assert!(prom.contains("cluster_nodes{status=\"stopped\"} 1"), "{prom}");
    let (_, one) = api(admin[0], "/api/v5/nodes/n3").await;
    assert_eq!(one["node_status"], "stopped", "{one}");
    // ctl cluster status: exit 1, the stopped node named.
    let (code, out, err) = ctl_status(&nodes[0].config_path, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("n3") && l.contains("stopped")), "{out}");
    assert!(err.contains("not running: n3"), "{err}");
    let (code, out, _) = ctl_status(&nodes[0].config_path, true);
    assert_eq!(code, 1, "{out}");

    // --- SIGTERM n2: it writes `stopped` as it goes -------------------------
    let stopping = Instant::now();
    nodes[1].terminate().expect("n2 stops");
    until_statuses(admin[0], &[("n1", "running"), ("n2", "stopped"), ("n3", "stopped")], NODE_TIMEOUT - HEARTBEAT)
        .await;
    eprintln!("SIGTERM of n2: stopped on n1 after {:?}", stopping.elapsed());
    nodes[0].terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_name_is_refused_and_a_dead_nodes_name_gets_its_slot_back() {
    let Some(nats) = Nats::start(1) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "kv_replicas = 1";
    let first_dir = dir.path().join("first");
    std::fs::create_dir_all(&first_dir).expect("dir");
    let mut first = node(&nats, 1, "dup", &first_dir, extra);
    let other = node(&nats, 1, "other", dir.path(), extra);
    let admin = first.admin_addr().expect("admin");
    until_statuses(admin, &[("dup", "running"), ("other", "running")], FORM_TIMEOUT).await;
    let (_, body) = api(admin, "/api/v5/nodes/dup").await;
    let slot = body["slot"].as_u64().expect("slot");

    // The same name while the first runs: refused, naming the key.
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).expect("dir");
    let cfg = second.join("portcullis.toml");
    let config = format!(
        "[node]\nname = \"dup\"\n[limits]\nmax_packet_size = \"1MiB\"\n[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [cluster]\nenabled = true\nnats = [\"{}\"]\n{extra}\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = {:?}\n[persistence]\ndir = {:?}\n",
        nats.url(1),
        second.join("admin.sock").display().to_string(),
        second.join("data").display().to_string(),
    );
    std::fs::write(&cfg, &config).expect("config");
    let started = Instant::now();
    let out = portcullis_tests::run_bounded(
        &["--config", cfg.to_str().expect("as the test expects")],
        Duration::from_secs(40),
    )
    .expect("the duplicate exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("duplicate refused after {:?}", started.elapsed());
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("[node] name \\\"dup\\\" is in use") || stderr.contains("[node] name \"dup\" is in use"),
        "{stderr}"
    );
    assert!(first.alive(), "the first node runs on");
    assert_eq!(statuses(admin).await, want(&[("dup", "running"), ("other", "running")]));

    // The first dies: a node with its name starts (after at most
    // node_timeout) and gets its slot back.
    first.signal_and_wait("KILL", Duration::from_secs(10)).expect("killed");
    let again = Broker::start_with_config(&config.replace(
        &format!("socket = {:?}", second.join("admin.sock").display().to_string()),
        &format!("socket = {:?}", second.join("admin2.sock").display().to_string()),
    ));
    assert!(again.wait_log("cluster: connected to NATS", Duration::from_secs(30)), "{}", again.log());
    assert!(again.log().contains(&format!("slot={slot}")), "same slot {slot}: {}", again.log());
    let other_admin = other.admin_addr().expect("admin");
    until_statuses(other_admin, &[("dup", "running"), ("other", "running")], FORM_TIMEOUT).await;
    let (_, body) = api(other_admin, "/api/v5/nodes/dup").await;
    assert_eq!(body["slot"].as_u64(), Some(slot), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_lists_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("view:{SECRET}:viewer\n")).expect("bootstrap");
    let b = Broker::start(&format!(
        "[node]\nname = \"solo\"\n[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {:?}\nbootstrap_file = {:?}\n",
        dir.path().join("admin").display().to_string(),
        boot.display().to_string(),
    ));
    let admin = b.admin_addr().expect("admin");
    assert_eq!(statuses(admin).await, want(&[("solo", "running")]));
    let (_, one) = api(admin, "/api/v5/nodes/solo").await;
    assert!(one.get("slot").is_none(), "no slot in single-node mode: {one}");
    assert_eq!(sys_brokers(b.addr, "sys", None, Duration::from_secs(5)).await, "solo");
}

/// The shipped cluster configs: the three of the README's recipe
/// (`etc/cluster/local/`) and the three of the compose `cluster` profile
/// (`etc/cluster/node*.toml`, with their password file and data paths
/// pointed at a temporary directory) pass `--check-config`, with distinct
/// node names, ports and data directories; compose mounts each into its
/// node.
#[test]
fn the_shipped_cluster_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "").expect("passwd");
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose");
    let mut seen = Vec::new();
    for i in 1..=3 {
        let local = root.join(format!("etc/cluster/local/node{i}.toml"));
        let text = std::fs::read_to_string(&local).expect("local config");
        seen.push(
            text.lines().filter(|l| l.starts_with("name =") || l.starts_with("bind =")).collect::<Vec<_>>().join(";"),
        );
        let out = Command::new(binary())
            .current_dir(dir.path())
            .args(["--config", local.to_str().expect("as the test expects"), "--check-config"])
            .output()
            .expect("check-config");
        assert!(out.status.success(), "{}: {}", local.display(), String::from_utf8_lossy(&out.stderr));

        let docker = std::fs::read_to_string(root.join(format!("etc/cluster/node{i}.toml"))).expect("node config");
        assert!(docker.contains(&format!("name = \"node{i}\"")), "node{i}.toml");
        let copy = dir.path().join(format!("node{i}.toml"));
        let data = dir.path().join(format!("data{i}"));
        std::fs::write(
            &copy,
            docker
                .replace("/var/lib/portcullis/passwd", &passwd.display().to_string())
                .replace("/var/lib/portcullis/data", &data.display().to_string()),
        )
        .expect("copy");
        let out = Command::new(binary())
            .args(["--config", copy.to_str().expect("as the test expects"), "--check-config"])
            .env("NATS_PASSWORD", "x")
            .output()
            .expect("check-config");
        assert!(out.status.success(), "node{i}.toml: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            compose.contains(&format!("./etc/cluster/node{i}.toml:/etc/portcullis/node.toml:ro")),
            "compose node{i}"
        );
        assert!(compose.contains(&format!("node{i}-data:/var/lib/portcullis/data")), "compose node{i} volume");
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "distinct names and ports: {seen:?}");
}
