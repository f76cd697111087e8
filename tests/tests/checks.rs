//! Checks that tell the truth, through the real binary: `--check-config`
//! loads what the broker will load (and exits 2, naming the key and the
//! file, when something would keep it from starting) without touching the
//! network; SIGHUP re-reads ACL, client id and password files; the default
//! packet size carries a 1 MiB payload.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_core::codec::{Packet, QoS};
use portcullis_tests::{kit, net, run_bounded, Broker};

/// A config with one loopback listener and `extra`, written to `dir`.
fn config(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n{extra}"))
        .expect("write config");
    path
}

/// `portcullis --check-config --config PATH`: exit code and stdout+stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out = run_bounded(&["--check-config".as_ref(), "--config".as_ref(), path.as_os_str()], Duration::from_secs(20))
        .expect("--check-config did not finish");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Each thing the broker reads at start, broken in turn: `--check-config`
/// and a real start both exit 2 with a line naming the config file, the
/// key and the file at fault (with its line where there is one).
#[test]
fn check_config_loads_what_the_broker_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let missing = d.join("missing");
    let pw_bad = write(d, "passwd", "# users\nalice:$7$101$not-a-hash\n");
    let acl_bad =
        write(d, "acl.toml", "[[rule]]\npermission = \"allow\"\naction = \"publish\"\ntopics = [\"a/#/b\"]\n");
    let mosq_bad = write(d, "acl_file", "user alice\ntopic sideways a/b\n");
    let ids_bad = write(d, "clients.txt", "sensor-1 10.0.0.0/8\nsensor-2 not-a-network\n");
    let ca = net::Ca::new("Check CA");
    let (cert, _) = ca.server("one").write(d, "one");
    let (_, other_key) = ca.server("two").write(d, "two");
    let tls = |cert: &Path, key: &Path| {
        format!(
            "[[listeners]]\nname = \"secure\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n\
             tls = {{ cert_file = {cert:?}, key_file = {key:?} }}\n"
        )
    };
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "missing password file",
            format!("[auth]\nchain = [\"users\"]\n[auth.password_file.users]\npath = {missing:?}\n"),
            vec!["auth.password_file.users".into(), missing.display().to_string()],
        ),
        (
            "bad password line",
            format!("[auth]\nchain = [\"users\"]\n[auth.password_file.users]\npath = {pw_bad:?}\n"),
            vec!["auth.password_file.users".into(), format!("{}:2", pw_bad.display())],
        ),
        (
            "bad ACL rule",
            format!("[acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {acl_bad:?}\n"),
            vec!["acl.file.main".into(), format!("{}:", acl_bad.display())],
        ),
        (
            "bad Mosquitto acl_file line",
            format!("[acl]\nchain = [\"mosq\"]\n[acl.mosquitto.mosq]\npath = {mosq_bad:?}\n"),
            vec!["acl.mosquitto.mosq".into(), format!("{}:2", mosq_bad.display())],
        ),
        (
            "bad client id file",
            format!("[auth]\nchain = [\"ids\"]\n[auth.client_id.ids]\npath = {ids_bad:?}\n"),
            vec!["auth.client_id.ids".into(), format!("{}:2", ids_bad.display())],
        ),
        (
            "missing policy directory",
            format!("[acl]\nchain = [\"devices\"]\n[acl.policy_dir.devices]\ndir = {missing:?}\n"),
            vec!["acl.policy_dir.devices".into(), missing.display().to_string()],
        ),
        (
            "missing certificate",
            tls(&missing, &other_key),
            vec!["listeners[1]".into(), "tls.cert_file".into(), missing.display().to_string()],
        ),
        (
            "key of another certificate",
            tls(&cert, &other_key),
            vec!["listeners[1]".into(), "tls.cert_file / tls.key_file".into()],
        ),
        (
            "backend setting its provider refuses",
            "[auth]\nchain = [\"hook\"]\n[auth.http.hook]\nurl = \"ftp://127.0.0.1/auth\"\n".to_string(),
            vec!["auth.http.hook".into(), "url".into()],
        ),
    ];
    for (what, extra, needles) in cases {
        let path = config(d, "broken.toml", &extra);
        let (code, text) = check(&path);
        assert_eq!(code, Some(2), "--check-config, {what}: {text}");
        let prefix = format!("{}: ", path.display());
        let line = text.lines().find(|l| l.starts_with(&prefix) && needles.iter().all(|n| l.contains(n.as_str())));
        assert!(
            line.is_some(),
            "--check-config, {what}: no line starting with the config file and naming {needles:?}:\n{text}"
        );
        // The broker itself refuses the same config with the same status.
        let out = run_bounded(&["--config".as_ref(), path.as_os_str()], Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{what}: the broker started"));
        assert_eq!(out.status.code(), Some(2), "start, {what}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A config whose files all load and whose backends all point at a port
/// that accepts but never answers passes `--check-config`, and the check
/// made no connection to any of them: providers are built, not connected.
#[test]
fn check_config_builds_backends_without_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let port = trap.local_addr().expect("addr").port();
    let pw = write(d, "passwd", "");
    let acl = write(d, "acl.toml", "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n");
    let policies = d.join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    let extra = format!(
        "[auth]\nchain = [\"users\", \"pg\", \"my\", \"rd\", \"ld\", \"mg\", \"hook\"]\n\
         [auth.password_file.users]\npath = {pw:?}\n\
         [auth.postgres.pg]\nurl = \"postgres://u@127.0.0.1:{port}/mqtt\"\n\
         [auth.mysql.my]\nurl = \"mysql://u@127.0.0.1:{port}/mqtt\"\n\
         [auth.redis.rd]\nservers = \"127.0.0.1:{port}\"\n\
         [auth.ldap.ld]\nservers = [\"ldap://127.0.0.1:{port}\"]\nmode = \"search\"\nbase_dn = \"dc=example,dc=org\"\nfilter = \"(uid=${{username}})\"\n\
         [auth.mongodb.mg]\nuri = \"mongodb://127.0.0.1:{port}\"\ndatabase = \"mqtt\"\n\
         [auth.http.hook]\nurl = \"http://127.0.0.1:{port}/auth\"\n\
         [acl]\nchain = [\"main\", \"devices\", \"pg_acl\", \"rd_acl\", \"mg_acl\"]\n\
         [acl.file.main]\npath = {acl:?}\n\
         [acl.policy_dir.devices]\ndir = {policies:?}\n\
         [acl.postgres.pg_acl]\nurl = \"postgres://u@127.0.0.1:{port}/mqtt\"\n\
         [acl.redis.rd_acl]\nservers = \"127.0.0.1:{port}\"\n\
         [acl.mongodb.mg_acl]\nuri = \"mongodb://127.0.0.1:{port}\"\ndatabase = \"mqtt\"\n"
    );
    let path = config(d, "ok.toml", &extra);
    let (code, text) = check(&path);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("config OK"), "{text}");
    // Anything that had connected would still be in the accept queue.
    std::thread::sleep(Duration::from_millis(300));
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("--check-config connected to a backend: {other:?}"),
    }
}

/// SIGHUP re-reads ACL files, Mosquitto acl_files, client id files and
/// password files: a changed file gives the new decision on the next
/// action or CONNECT; a file broken on reload keeps the previous one in
/// service and the log names the file and line.
#[tokio::test]
async fn sighup_reloads_acl_client_id_and_password_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let acl = write(d, "acl.toml", "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"one/#\"]\n");
    let mosq = write(d, "acl_file", "topic readwrite m1/#\n");
    let ids = write(d, "clients.txt", "first\n");
    let cfg = format!(
        "[auth]\nchain = [\"ids\"]\n[auth.client_id.ids]\npath = {ids:?}\n\
         [acl]\nchain = [\"main\", \"mosq\"]\nno_match = \"deny\"\n\
         [acl.file.main]\npath = {acl:?}\n[acl.mosquitto.mosq]\npath = {mosq:?}\n"
    );
    let mut b = Broker::start(&cfg);
    let allowed = |addr, topic: &'static str| async move {
        let (mut c, present) = kit::open_v3(addr, "first", true).await;
        assert!(!present);
        let granted = suback(&mut c, topic).await;
        kit::disconnect(c).await;
        granted
    };
    assert!(allowed(b.addr, "one/x").await, "acl.toml grants one/#");
    assert!(allowed(b.addr, "m1/x").await, "acl_file grants m1/#");
    assert!(!allowed(b.addr, "two/x").await);
    assert!(!allowed(b.addr, "m2/x").await);
    assert_eq!(connack_code(b.addr, "second").await, Some(0x05), "second is not listed yet");

    write(d, "acl.toml", "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"two/#\"]\n");
    write(d, "acl_file", "topic readwrite m2/#\n");
    write(d, "clients.txt", "first\nsecond\n");
    hup(&mut b, "files reloaded");
    assert!(allowed(b.addr, "two/x").await, "new acl.toml after SIGHUP");
    assert!(!allowed(b.addr, "one/x").await, "old acl.toml rule still applies after SIGHUP");
    assert!(allowed(b.addr, "m2/x").await, "new acl_file after SIGHUP");
    assert!(!allowed(b.addr, "m1/x").await, "old acl_file rule still applies after SIGHUP");
    assert_eq!(connack_code(b.addr, "second").await, Some(0), "client id file not reloaded");

    // Broken files: the previous ones stay, and the log says where.
    write(d, "acl.toml", "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"three/#/x\"]\n");
    write(d, "clients.txt", "first\nsecond 10.0.0.0/99\n");
    hup(&mut b, "files reloaded");
    assert!(b.wait_log(&format!("{}:", acl.display()), Duration::from_secs(5)), "{}", b.log());
    assert!(b.wait_log(&format!("{}:2", ids.display()), Duration::from_secs(5)), "{}", b.log());
    assert!(allowed(b.addr, "two/x").await, "a broken acl.toml replaced the working one");
    assert_eq!(connack_code(b.addr, "second").await, Some(0), "a broken client id file replaced the working one");
}

/// Sends SIGHUP and waits (bounded) for one more log line containing `needle`.
fn hup(b: &mut Broker, needle: &str) {
    let before = b.log().matches(needle).count();
    let status = std::process::Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status().expect("kill");
    assert!(status.success());
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while b.log().matches(needle).count() <= before {
        assert!(std::time::Instant::now() < end, "no `{needle}` line after SIGHUP:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the broker grants a QoS 0 subscription to `filter`.
async fn suback(c: &mut portcullis_tests::Raw, filter: &str) -> bool {
    let ack = kit::subscribe_with(c, 1, &[(filter, kit::opts(QoS::AtMostOnce))], Default::default()).await;
    ack.return_codes.first().is_some_and(|code| *code < 0x80)
}

/// The CONNACK code a 3.1.1 CONNECT as `client_id` gets.
async fn connack_code(addr: std::net::SocketAddr, client_id: &str) -> Option<u8> {
    let mut c = portcullis_tests::Raw::connect(addr).await;
    c.send(&portcullis_tests::connect_v311(client_id, true, 0)).await;
    match c.recv().await {
        Some(Packet::ConnAck(a)) => Some(a.code),
        _ => None,
    }
}

/// With the default limits, a QoS 1 PUBLISH of exactly 1 MiB of payload
/// (on a long topic, with a v5 property) is accepted and delivered: the
/// default `max_packet_size` leaves room for the headers.
#[tokio::test]
async fn default_packet_size_carries_a_one_mib_payload() {
    let b = Broker::start("");
    let topic = format!("big/{}", "t".repeat(4096));
    let (mut sub, _) = kit::open_v5(b.addr, "big-sub", true, Default::default()).await;
    kit::subscribe(&mut sub, 1, &[(topic.as_str(), QoS::AtLeastOnce)]).await;
    let (mut publisher, _) = kit::open_v5(b.addr, "big-pub", true, Default::default()).await;
    let payload = vec![0x5a_u8; 1 << 20];
    let mut p = kit::publish(&topic, QoS::AtLeastOnce, Some(1), &payload, false);
    p.properties.content_type = Some("application/octet-stream".into());
    assert_eq!(kit::publish_complete(&mut publisher, p).await, 0, "1 MiB payload refused");
    let got = kit::next_publish(&mut sub).await;
    assert_eq!(got.payload.len(), 1 << 20);
}
