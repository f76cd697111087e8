//! The Redis auth and ACL providers through the real broker, against the
//! real Redis servers `scripts/services.sh` starts (plain, TLS with client
//! certificates, with a login, a three-node cluster) and private servers
//! these tests start, stop and restart themselves (down at start, stopped
//! mid-test, `CLIENT KILL`).
//!
//! Data: `tests/fixtures/redis.txt` (EMQX 5 layout, database 0) and
//! `tests/fixtures/redis-emqttd.txt` (emqttd 1.x layout, database 1).
//! The auth cache is off in every broker here, so each CONNECT reaches
//! Redis.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::QoS;
use portcullis_tests::backend::*;
use portcullis_tests::kit::*;
use portcullis_tests::services;
use portcullis_tests::Broker;

// ---------------------------------------------------------------------------
// Helpers

fn var(name: &str) -> Option<String> {
    services::get(name)
}

/// A `[auth.redis.NAME]` table body for a server address, plus extra keys.
fn redis_table(kind: &str, name: &str, servers: &str, extra: &str) -> String {
    format!("[{kind}.redis.{name}]\nservers = {servers}\npool = {{ connect_timeout = \"1s\", query_timeout = \"1s\" }}\ntimeout = \"3s\"\n{extra}\n")
}

/// A broker with no auth cache, `auth` providers in `chain`, and an
/// optional ACL chain.
fn broker(auth_chain: &[&str], acl_chain: &[&str], tables: &str) -> Broker {
    let q = |v: &[&str]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut cfg =
        format!("[auth]\nchain = [{}]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n", q(auth_chain));
    if !acl_chain.is_empty() {
        cfg.push_str(&format!("[acl]\nchain = [{}]\n", q(acl_chain)));
    }
    cfg.push_str(tables);
    Broker::start(&cfg)
}

fn fixtures() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    (root.join("redis.txt"), root.join("redis-emqttd.txt"))
}

/// Runs redis-cli with `args`, feeding it `input`; bounded to 10 s.
fn redis_cli(args: &[&str], input: &str) -> String {
    let cli = var("PORTCULLIS_TEST_REDIS_CLI").unwrap_or_else(|| "redis-cli".into());
    let mut child = Command::new(cli)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write redis-cli input");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-cli {args:?} did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("redis-cli output");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn load_fixture(port: u16, db: u32, path: &Path) {
    let text = std::fs::read_to_string(path).expect("fixture");
    let cmds: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    let out = redis_cli(&["-p", &port.to_string(), "-n", &db.to_string()], &cmds);
    assert!(!out.contains("ERR"), "loading {}: {out}", path.display());
}

/// A Redis server of this test's own, stopped by its PID when dropped.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts redis-server on `port`, waits until it answers, loads the
    /// fixtures.
    fn start(port: u16) -> PrivateRedis {
        let bin = var("PORTCULLIS_TEST_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let r = PrivateRedis { child: Some(child), port, _dir: dir };
        let end = Instant::now() + Duration::from_secs(10);
        while !redis_cli(&["-p", &port.to_string(), "PING"], "").contains("PONG") {
            assert!(Instant::now() < end, "private redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (emqx, emqttd) = fixtures();
        load_fixture(port, 0, &emqx);
        load_fixture(port, 1, &emqttd);
        r
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-p", port.as_str()];
        all.extend_from_slice(args);
        redis_cli(&all, "")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A password file provider that knows `fileuser` / `file-pw` (the
/// provider after Redis in the chains, to show Redis ignores unknown users).
fn file_provider() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    std::fs::write(&path, "fileuser:file-pw\n").expect("write passwd");
    let table =
        format!("[auth.password_file.file]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n", path.display().to_string());
    (dir, table)
}

// ---------------------------------------------------------------------------
// EMQX layout: allow, wrong password, unknown user, superuser, ACL

#[tokio::test]
async fn emqx_layout_auth_and_acl() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_ADDR") else { return };
    let (_d, file) = file_provider();
    let servers = format!("{addr:?}");
    let tables = redis_table("auth", "users", &servers, "") + &file + &redis_table("acl", "rules", &servers, "");
    let b = broker(&["users", "file"], &["rules"], &tables);
    let a = b.addr;

    expect(a, "alice", "alice-pw", OK).await;
    expect(a, "alice", "wrong", BAD_CREDENTIALS).await;
    expect(a, "alice", "", BAD_CREDENTIALS).await;
    // bob's is_superuser is "false"; carol (bcrypt) and argon (argon2id)
    // have self-describing hashes under the default sha256 setting.
    expect(a, "bob", "bob-pw", OK).await;
    expect(a, "carol", "carol-pw", OK).await;
    expect(a, "carol", "alice-pw", BAD_CREDENTIALS).await;
    expect(a, "argon", "argon-pw", OK).await;
    expect(a, "argon", "argon-pw ", BAD_CREDENTIALS).await;
    // Unknown to Redis: ignored, so the next provider decides.
    expect(a, "fileuser", "file-pw", OK).await;
    expect(a, "nobody", "x", BAD_CREDENTIALS).await; // no_match: like a wrong password
    let (_, c) = try_login(a, V5, "no-username", None, None).await;
    assert_eq!(c, Some(0x87), "no username: every provider ignores");

    // ACL, EMQX words and JSON, placeholders.
    let mut alice = login(a, V5, "dev-a1", "alice", "alice-pw").await;
    assert!(published(&mut alice, "sensors/alice/temp", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "sensors/bob/temp", QoS::AtLeastOnce, 2, false).await);
    assert_eq!(sub_code(&mut alice, 3, "cmd/dev-a1", QoS::AtLeastOnce).await, 1);
    assert_eq!(sub_code(&mut alice, 4, "cmd/dev-other", QoS::AtLeastOnce).await, 0x87);
    assert_eq!(sub_code(&mut alice, 5, "sensors/alice/temp", QoS::AtMostOnce).await, 0x87, "publish only");
    // `shared/#` all, but the deny entry for shared/secret is tried first.
    assert!(published(&mut alice, "shared/news", QoS::AtLeastOnce, 6, false).await);
    assert_eq!(sub_code(&mut alice, 7, "shared/news", QoS::AtMostOnce).await, 0);
    assert!(!published(&mut alice, "shared/secret", QoS::AtLeastOnce, 8, false).await);
    assert_eq!(sub_code(&mut alice, 9, "shared/secret", QoS::AtMostOnce).await, 0x87);
    // qos [0, 1] and retain false.
    assert!(published(&mut alice, "qos/limited", QoS::AtLeastOnce, 10, false).await);
    assert!(!published(&mut alice, "qos/limited", QoS::ExactlyOnce, 11, false).await);
    assert!(published(&mut alice, "noretain/alice", QoS::AtLeastOnce, 12, false).await);
    assert!(!published(&mut alice, "noretain/alice", QoS::AtLeastOnce, 13, true).await);
    // emqttd's numeric action and %u in an EMQX database.
    assert!(published(&mut alice, "legacy/alice/up", QoS::AtLeastOnce, 14, false).await);
    assert!(!published(&mut alice, "legacy/bob/up", QoS::AtLeastOnce, 15, false).await);

    // bob has his own hash; nothing of alice's applies to him.
    let mut bob = login(a, V5, "dev-b1", "bob", "bob-pw").await;
    assert_eq!(sub_code(&mut bob, 1, "bob/only", QoS::AtMostOnce).await, 0);
    assert_eq!(sub_code(&mut bob, 2, "shared/news", QoS::AtMostOnce).await, 0x87);
    // fileuser has no hash at all: ignored, so no_match denies.
    let mut fu = login(a, V5, "dev-f1", "fileuser", "file-pw").await;
    assert_eq!(sub_code(&mut fu, 1, "bob/only", QoS::AtMostOnce).await, 0x87);

    // root is a superuser: the ACL chain is bypassed.
    let mut root = login(a, V3, "dev-r1", "root", "root-pw").await;
    assert_eq!(sub_code(&mut root, 1, "anything/#", QoS::AtLeastOnce).await, 1);
    let mut alice3 = login(a, V3, "dev-a3", "alice", "alice-pw").await;
    assert_eq!(sub_code(&mut alice3, 1, "anything/#", QoS::AtLeastOnce).await, 0x80);
}

// ---------------------------------------------------------------------------
// emqttd 1.x layout, unchanged: HMGET mqtt_user:%u password, super_cmd,
// numeric ACL values, database 1

#[tokio::test]
async fn emqttd_layout_auth_and_acl() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_ADDR") else { return };
    let servers = format!("{addr:?}");
    let tables = redis_table(
        "auth",
        "legacy",
        &servers,
        "database = 1\ncommand = \"HMGET mqtt_user:%u password\"\nsuperuser_command = \"HGET mqtt_user:%u is_superuser\"\npassword_hash = { algo = \"plain\" }",
    ) + &redis_table("acl", "legacy_acl", &servers, "database = 1\ncommand = \"HGETALL mqtt_acl:%u\"");
    let b = broker(&["legacy"], &["legacy_acl"], &tables);
    let a = b.addr;

    expect(a, "dave", "dave-pw", OK).await;
    expect(a, "dave", "dave", BAD_CREDENTIALS).await;
    expect(a, "alice", "alice-pw", BAD_CREDENTIALS).await; // database 0's user is not here
    expect(a, "admin", "admin-pw", OK).await;

    let mut dave = login(a, V5, "dave-1", "dave", "dave-pw").await;
    // 3: both ways on dev/%u/#.
    assert!(published(&mut dave, "dev/dave/x", QoS::AtLeastOnce, 1, false).await);
    assert_eq!(sub_code(&mut dave, 2, "dev/dave/#", QoS::AtLeastOnce).await, 1);
    assert!(!published(&mut dave, "dev/eve/x", QoS::AtLeastOnce, 3, false).await);
    // 1: subscribe only, on cmd/%c.
    assert_eq!(sub_code(&mut dave, 4, "cmd/dave-1", QoS::AtMostOnce).await, 0);
    assert!(!published(&mut dave, "cmd/dave-1", QoS::AtLeastOnce, 5, false).await);
    // 2: publish only, on up/%u.
    assert!(published(&mut dave, "up/dave", QoS::AtLeastOnce, 6, false).await);
    assert_eq!(sub_code(&mut dave, 7, "up/dave", QoS::AtMostOnce).await, 0x87);
    // admin: superuser through superuser_command.
    let mut admin = login(a, V5, "admin-1", "admin", "admin-pw").await;
    assert_eq!(sub_code(&mut admin, 1, "dev/#", QoS::AtMostOnce).await, 0);
    assert_eq!(sub_code(&mut dave, 8, "dev/#", QoS::AtMostOnce).await, 0x87);
}

// ---------------------------------------------------------------------------
// Every hash setting: one provider per setting, each with its own key space,
// chained so that each user is unknown to every provider but its own.

#[tokio::test]
async fn every_hash_type() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_ADDR") else { return };
    let servers = format!("{addr:?}");
    let cases: [(&str, &str); 10] = [
        ("plain", "{ algo = \"plain\" }"),
        ("md5", "{ algo = \"md5\" }"),
        ("sha1", "{ algo = \"sha1\", salt_position = \"prefix\" }"),
        ("sha256s", "{ algo = \"sha256\", salt_position = \"suffix\" }"),
        ("sha256b64", "{ algo = \"sha256\", encoding = \"base64\" }"),
        ("sha512", "{ algo = \"sha512\" }"),
        ("sha512s", "{ algo = \"sha512\", salt_position = \"suffix\" }"),
        ("pbkdf2", "{ algo = \"pbkdf2\", mac = \"sha256\", iterations = 1000, key_length = 32 }"),
        ("bcrypt", "{ algo = \"bcrypt\" }"),
        ("argon2id", "{ algo = \"argon2id\" }"),
    ];
    let mut tables = String::new();
    let mut chain = Vec::new();
    for (name, hash) in &cases {
        chain.push(*name);
        tables += &redis_table(
            "auth",
            name,
            &servers,
            &format!("command = \"HMGET h_{name}:${{username}} password_hash salt\"\npassword_hash = {hash}"),
        );
    }
    let b = broker(&chain, &[], &tables);
    for (name, _) in &cases {
        let user = format!("{name}-user");
        assert_eq!(code(b.addr, V3, &user, "hash-pw").await, 0, "{name}: right password");
        assert_eq!(code(b.addr, V3, &user, "hash-pw!").await, 4, "{name}: wrong password");
        assert_eq!(code(b.addr, V5, &user, "").await, 0x86, "{name}: empty password");
    }
}

// ---------------------------------------------------------------------------
// TLS (the server requires a client certificate)

#[tokio::test]
async fn tls_with_ca_and_client_certificate() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_TLS_ADDR") else { return };
    let Some(dir) = var("PORTCULLIS_TEST_TLS_DIR") else { return };
    let servers = format!("{addr:?}");
    let f = |n: &str| format!("{:?}", format!("{dir}/{n}"));
    let good = format!(
        "tls = {{ enable = true, ca_file = {}, cert_file = {}, key_file = {} }}",
        f("ca.pem"),
        f("client.pem"),
        f("client.key")
    );
    let no_cert = format!("tls = {{ enable = true, ca_file = {} }}", f("ca.pem"));
    // A CA that did not sign the server's certificate.
    let wrong_ca = format!("tls = {{ enable = true, ca_file = {} }}", f("client.pem"));
    let tables = redis_table("auth", "tls", &servers, &good)
        + &redis_table("acl", "tls_acl", &servers, &good)
        + &redis_table("auth", "nocert", &servers, &no_cert)
        + &redis_table("auth", "wrongca", &servers, &wrong_ca)
        + "[auth.chains]\nnocert = [\"nocert\"]\nwrongca = [\"wrongca\"]\n";
    let cfg = format!(
        "[[listeners]]\nname = \"good\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"nocert\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"nocert\"\n\
         [[listeners]]\nname = \"wrongca\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"wrongca\"\n\
         [auth]\nchain = [\"tls\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [acl]\nchain = [\"tls_acl\"]\n{tables}"
    );
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    expect(addrs[0], "alice", "alice-pw", OK).await;
    expect(addrs[0], "alice", "nope", BAD_CREDENTIALS).await;
    let mut alice = login(addrs[0], V5, "tls-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "sensors/alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "sensors/bob/t", QoS::AtLeastOnce, 2, false).await);
    // Without the client certificate Redis refuses the handshake; with a
    // CA that did not sign its certificate we refuse it. Both are outages.
    expect(addrs[1], "alice", "alice-pw", UNAVAILABLE).await;
    expect(addrs[2], "alice", "alice-pw", UNAVAILABLE).await;
}

// ---------------------------------------------------------------------------
// Redis Cluster

#[tokio::test]
async fn cluster() {
    let Some(nodes) = var("PORTCULLIS_TEST_REDIS_CLUSTER_ADDRS") else { return };
    let list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
    let servers = format!("[{}]", list.join(", "));
    let tables = redis_table("auth", "c", &servers, "mode = \"cluster\"")
        + &redis_table("acl", "c_acl", &servers, "mode = \"cluster\"");
    let b = broker(&["c"], &["c_acl"], &tables);
    let a = b.addr;
    // Users whose keys live in different slots (and so on different nodes).
    expect(a, "alice", "alice-pw", OK).await;
    expect(a, "bob", "bob-pw", OK).await;
    expect(a, "carol", "carol-pw", OK).await;
    expect(a, "root", "root-pw", OK).await;
    expect(a, "alice", "bob-pw", BAD_CREDENTIALS).await;
    expect(a, "nobody", "x", BAD_CREDENTIALS).await;
    let mut alice = login(a, V5, "cl-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "sensors/alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "sensors/bob/t", QoS::AtLeastOnce, 2, false).await);
    let mut bob = login(a, V5, "cl-b", "bob", "bob-pw").await;
    assert_eq!(sub_code(&mut bob, 1, "bob/only", QoS::AtMostOnce).await, 0);
}

// ---------------------------------------------------------------------------
// Logging in to Redis: an ACL user with a password from the environment;
// a wrong password is reported as such, not as a pool timeout, never as bad
// client credentials, and never logged.

#[tokio::test]
async fn redis_login_and_wrong_redis_password() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_AUTH_ADDR") else { return };
    let Some(user) = var("PORTCULLIS_TEST_REDIS_AUTH_USER") else { return };
    let servers = format!("{addr:?}");
    let wrong = "not-the-redis-password-9f3a";
    let tables = redis_table(
        "auth",
        "good",
        &servers,
        &format!("username = {user:?}\npassword = {{ env = \"PORTCULLIS_TEST_REDIS_AUTH_PASSWORD\" }}"),
    ) + &redis_table("auth", "bad", &servers, &format!("username = {user:?}\npassword = {wrong:?}"))
        + &redis_table("auth", "none", &servers, "")
        + "[auth.anonymous.anon]\n[auth.chains]\nbad = [\"anon\", \"bad\"]\nnone = [\"none\"]\n";
    let cfg = format!(
        "[[listeners]]\nname = \"good\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"bad\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"bad\"\n\
         [[listeners]]\nname = \"none\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"none\"\n\
         [sys]\ninterval = \"1s\"\n\
         [auth]\nchain = [\"good\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n{tables}"
    );
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    expect(addrs[0], "alice", "alice-pw", OK).await;
    expect(addrs[0], "alice", "x", BAD_CREDENTIALS).await;

    let started = Instant::now();
    expect(addrs[1], "alice", "alice-pw", UNAVAILABLE).await;
    assert!(started.elapsed() < Duration::from_secs(8), "resolved within the timeouts");
    expect(addrs[2], "alice", "alice-pw", UNAVAILABLE).await;
    assert!(
        b.wait_log("refused the login: authentication failed", Duration::from_secs(5)),
        "wrong Redis password reported clearly; log:\n{}",
        b.log()
    );
    let log = b.log();
    assert!(!log.contains(wrong), "the Redis password is never logged");
    assert!(!log.contains("Timed out in bb8"), "not reported as a pool timeout:\n{log}");
    let pw = var("PORTCULLIS_TEST_REDIS_AUTH_PASSWORD").unwrap_or_default();
    assert!(!pw.is_empty() && !log.contains(&pw), "the Redis password from the environment is never logged");
    // The failing provider is down in $SYS, the good one up.
    let bad = sys_fresh(addrs[1], "auth/bad/bad/health", Duration::from_secs(5)).await;
    assert_eq!(bad, "0");
    let good = sys_fresh(addrs[1], "auth/default/good/health", Duration::from_secs(5)).await;
    assert_eq!(good, "1");
}

// ---------------------------------------------------------------------------
// Connections killed by the server never look like bad credentials.

#[tokio::test]
async fn client_kill_is_not_bad_credentials() {
    if var("PORTCULLIS_TEST_REDIS_SERVER").is_none() {
        return;
    }
    let redis = PrivateRedis::start(free_port());
    let servers = format!("\"127.0.0.1:{}\"", redis.port);
    let tables = format!(
        "[auth.redis.r]\nservers = {servers}\npool = {{ size = 4, min_idle = 4 }}\n\
         [acl.redis.r_acl]\nservers = {servers}\npool = {{ size = 2 }}\n"
    );
    let b = broker(&["r"], &["r_acl"], &tables);
    let a = b.addr;
    let mut alice = login(a, V5, "kill-a", "alice", "alice-pw").await;
    for round in 0..5 {
        // Busy connections too: several CONNECTs in flight around the kill.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            tasks.push(tokio::spawn(async move { code(a, V3, "alice", "alice-pw").await }));
        }
        let out = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(out.trim().parse::<u32>().is_ok(), "CLIENT KILL answered {out:?}");
        for t in tasks {
            assert_eq!(t.await.expect("task"), 0, "round {round}: a login around CLIENT KILL");
        }
        // Right after a kill: every pooled connection is dead.
        redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        expect(a, "alice", "alice-pw", OK).await;
        expect(a, "alice", "wrong", BAD_CREDENTIALS).await;
        redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        let id = 10 + round * 2;
        assert!(published(&mut alice, &format!("sensors/alice/{round}"), QoS::AtLeastOnce, id, false).await);
        assert!(!published(&mut alice, "sensors/bob/x", QoS::AtLeastOnce, id + 1, false).await);
    }
}

// ---------------------------------------------------------------------------
// Down at start, up, stopped and restarted mid-test: no restart of the
// broker, CONNECTs resolved per on_error within the timeout meanwhile.

#[tokio::test]
async fn down_at_start_then_stopped_and_restarted() {
    if var("PORTCULLIS_TEST_REDIS_SERVER").is_none() {
        return;
    }
    let port = free_port();
    let (_d, file) = file_provider();
    let servers = format!("\"127.0.0.1:{port}\"");
    let tables = redis_table("auth", "strict", &servers, "")
        + &redis_table("auth", "lenient", &servers, "on_error = \"ignore\"")
        + &file
        + "[auth.anonymous.anon]\n[auth.chains]\nlenient = [\"lenient\", \"file\"]\nstatus = [\"anon\"]\n";
    let cfg = format!(
        "[[listeners]]\nname = \"strict\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"lenient\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"lenient\"\n\
         [[listeners]]\nname = \"status\"\nbind = \"127.0.0.1:0\"\nauth_chain = \"status\"\n\
         [sys]\ninterval = \"1s\"\n\
         [auth]\nchain = [\"strict\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n{tables}"
    );
    let mut b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    let (strict, lenient, status) = (addrs[0], addrs[1], addrs[2]);

    // Down: on_error = deny answers "server unavailable" (not bad
    // credentials) within the timeouts; on_error = ignore moves on.
    let t = Instant::now();
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    expect(strict, "alice", "wrong", UNAVAILABLE).await;
    assert!(t.elapsed() < Duration::from_secs(12), "four CONNECTs took {:?}", t.elapsed());
    expect(lenient, "fileuser", "file-pw", OK).await;
    expect(lenient, "alice", "alice-pw", BAD_CREDENTIALS).await; // skipped, then no_match
    assert_eq!(sys_fresh(status, "auth/default/strict/health", Duration::from_secs(5)).await, "0");
    assert!(b.alive(), "the broker runs without Redis");

    // Up: recovery without a restart.
    let mut redis = PrivateRedis::start(port);
    eventually(Duration::from_secs(10), "alice admitted once Redis is up", || async {
        code(strict, V3, "alice", "alice-pw").await == 0
    })
    .await;
    expect(strict, "alice", "wrong", BAD_CREDENTIALS).await;
    expect(lenient, "alice", "alice-pw", OK).await;
    assert_eq!(sys_fresh(status, "auth/default/strict/health", Duration::from_secs(5)).await, "1");

    // Stopped mid-test.
    redis.stop();
    let t = Instant::now();
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    assert!(t.elapsed() < Duration::from_secs(8), "two CONNECTs took {:?}", t.elapsed());
    expect(lenient, "fileuser", "file-pw", OK).await;

    // Restarted on the same port.
    let _redis = PrivateRedis::start(port);
    eventually(Duration::from_secs(10), "alice admitted after the restart", || async {
        code(strict, V3, "alice", "alice-pw").await == 0
    })
    .await;
    expect(strict, "alice", "alice-pw", OK).await;
    assert!(b.alive());
    let log = b.log();
    assert!(log.contains("backend is unreachable") && log.contains("backend is reachable again"), "{log}");
    let _ = b.terminate();
}

// ---------------------------------------------------------------------------
// Injection attempts: client values are single arguments, never command text.

#[tokio::test]
async fn injection_attempts_find_nothing() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_ADDR") else { return };
    let port = addr.rsplit(':').next().unwrap_or_default().to_string();
    let dbsize = || redis_cli(&["-p", &port, "DBSIZE"], "");
    let before = dbsize();
    let servers = format!("{addr:?}");
    let tables = redis_table("auth", "users", &servers, "") + &redis_table("acl", "rules", &servers, "");
    let b = broker(&["users"], &["rules"], &tables);
    let a = b.addr;
    let long = "a".repeat(65_000);
    let attempts = [
        "' OR 1=1 --",
        "%",
        "*",
        "mqtt_user:*",
        "alice*",
        "%u",
        "${username}",
        "alice password_hash",
        "alice\r\nFLUSHALL\r\n",
        "alice\nDEL mqtt_user:alice",
        "\"alice\"",
        "alice ",
        " alice",
        "alice\0",
        "\0",
        long.as_str(),
    ];
    for u in attempts {
        for version in [V3, V5] {
            let (_, c) = try_login(a, version, "inj", Some(u), Some("alice-pw")).await;
            assert!(c.is_none_or(|c| c != 0), "{u:?} ({version:?}) was admitted");
        }
    }
    // The client id fills `cmd/${clientid}` as one level, literally: `*`
    // is an ordinary character, a wildcard id matches nothing.
    let mut star = login(a, V5, "*", "alice", "alice-pw").await;
    assert_eq!(sub_code(&mut star, 1, "cmd/dev-a1", QoS::AtMostOnce).await, 0x87);
    assert_eq!(sub_code(&mut star, 2, "cmd/*", QoS::AtMostOnce).await, 0);
    let mut hash = login(a, V5, "#", "alice", "alice-pw").await;
    assert_eq!(sub_code(&mut hash, 1, "cmd/#", QoS::AtMostOnce).await, 0x87);
    assert_eq!(sub_code(&mut hash, 2, "cmd/x", QoS::AtMostOnce).await, 0x87);
    // Nothing was written or deleted; alice still logs in.
    assert_eq!(dbsize(), before);
    expect(a, "alice", "alice-pw", OK).await;
    assert!(b.log().lines().all(|l| !l.contains("panicked")));
}

// ---------------------------------------------------------------------------
// Config errors name the key and stop the broker.

#[test]
fn config_errors_name_the_key() {
    let cases = [
        ("[auth.redis.main]\npool = { size = 0 }\n", "auth.redis.main: pool.size: must be at least 1"),
        (
            "[auth.redis.main]\ncommand = \"GET mqtt_user:${username}\"\n",
            "auth.redis.main: command: GET: expected HMGET",
        ),
        ("[auth.redis.main]\ncommand = \"HMGET mqtt_user:${usr} password\"\n", "unknown placeholder ${usr}"),
        ("[auth.redis.main]\nservers = [\"a:1\", \"b:2\"]\n", "auth.redis.main: servers: several servers need mode"),
        ("[auth.redis.main]\nservers = \"localhost\"\n", "is not host:port"),
        ("[auth.redis.main]\nmode = \"cluster\"\ndatabase = 2\n", "database: a Redis Cluster has only database 0"),
        ("[auth.redis.main]\npassword = { env = \"PORTCULLIS_NO_SUCH_VAR\" }\n", "password: environment variable"),
        ("[auth.redis.main]\ntls = { enable = true }\n", "tls.ca_file: required"),
        (
            "[acl.redis.main]\ncommand = \"SMEMBERS mqtt_acl:${username}\"\n",
            "acl.redis.main: command: SMEMBERS: expected HGETALL",
        ),
        ("[auth.redis.main]\nsuperuser_command = \"DEL mqtt_user:%u\"\n", "superuser_command: DEL"),
    ];
    for (table, want) in cases {
        let chain =
            if table.starts_with("[acl") { "[acl]\nchain = [\"main\"]\n" } else { "[auth]\nchain = [\"main\"]\n" };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, format!("[[listeners]]\nname = \"t\"\nbind = \"127.0.0.1:0\"\n{chain}{table}"))
            .expect("write");
        let out = run_bounded(Command::new(portcullis_tests::binary()).arg("--config").arg(&path));
        assert!(!out.0, "{table}: the broker must not start");
        assert!(out.1.contains(want), "{table}: expected {want:?} in:\n{}", out.1);
    }
}

// ---------------------------------------------------------------------------
// The documented examples work as written (only the address changed).

#[tokio::test]
async fn readme_and_shipped_examples_work() {
    let Some(addr) = var("PORTCULLIS_TEST_REDIS_ADDR") else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = &readme[readme.find("\n## Redis\n").expect("README has a Redis section")..];
    let block = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml block");
    let cfg = block.replace("127.0.0.1:6379", &addr) + "[auth.cache]\nmax_entries = 0\n";
    let b = Broker::start(&cfg);
    expect(b.addr, "alice", "alice-pw", OK).await;
    expect(b.addr, "alice", "bob-pw", BAD_CREDENTIALS).await;
    let mut alice = login(b.addr, V5, "readme-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "sensors/alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "sensors/bob/t", QoS::AtLeastOnce, 2, false).await);
    drop(b);

    let shipped = std::fs::read_to_string(root.join("etc/portcullis.toml")).expect("etc/portcullis.toml");
    let example = &shipped[shipped.find("# [auth.redis.users]").expect("the commented Redis example")..];
    let uncommented: String = example
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("# #"))
        .map(|l| format!("{}\n", l.trim_start_matches("# ").trim_start_matches('#')))
        .collect();
    let cfg = uncommented.replace("127.0.0.1:6379", &addr)
        + "[auth]\nchain = [\"users\"]\n[auth.cache]\nmax_entries = 0\n[acl]\nchain = [\"rules\"]\n";
    let b = Broker::start(&cfg);
    expect(b.addr, "root", "root-pw", OK).await;
    let mut bob = login(b.addr, V5, "etc-b", "bob", "bob-pw").await;
    assert_eq!(sub_code(&mut bob, 1, "bob/only", QoS::AtMostOnce).await, 0);
    assert_eq!(sub_code(&mut bob, 2, "bob/other", QoS::AtMostOnce).await, 0x87);
}

/// An unknown user costs a hash verification like a wrong password, and
/// gets the same CONNACK. `slowpoke` has an argon2id hash at the defaults
/// `portcullis passwd` writes (hundreds of milliseconds in a debug build).
/// Before, an unknown user cost one HMGET and nothing else.
#[tokio::test]
async fn unknown_users_cost_a_hash_like_wrong_passwords() {
    if var("PORTCULLIS_TEST_REDIS_SERVER").is_none() {
        return;
    }
    let redis = PrivateRedis::start(free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("passwd");
    let mut child = Command::new(portcullis_tests::binary())
        .arg("passwd")
        .arg(&file)
        .arg("slowpoke")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn portcullis passwd");
    child.stdin.take().expect("stdin").write_all(b"slowpoke-pw\n").expect("write");
    assert!(child.wait().expect("passwd").success());
    let line = std::fs::read_to_string(&file).expect("read passwd");
    let hash = line.trim().split_once(':').expect("user:hash").1.to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    redis.cli(&["HSET", "mqtt_user:slowpoke", "password_hash", &hash]);
    let servers = format!("\"127.0.0.1:{}\"", redis.port);
    let b = broker(&["users"], &[], &redis_table("auth", "users", &servers, ""));
    let (wrong, unknown) = portcullis_tests::backend::latency_wrong_vs_unknown(b.addr, "slowpoke", 5, 0x86).await;
    portcullis_tests::backend::assert_unknown_users_cost_a_hash(wrong, unknown);
}
