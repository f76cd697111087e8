//! The built-in user store end to end: users and rules written with the
//! real binary's offline commands (`portcullis users …`, `portcullis acl
//! add|del`), a real broker reading the same SQLite file, real MQTT
//! clients on both protocol versions.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_tests::backend::{
    assert_unknown_users_cost_a_hash, eventually, expect, latency_wrong_vs_unknown, login, published, sub_code,
    try_login, BAD_CREDENTIALS, OK, UNAVAILABLE, V3, V5,
};
use portcullis_tests::{binary, run_bounded, Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
/// How long a change may take to show: the tests poll every 200 ms.
const SEEN_WITHIN: Duration = Duration::from_secs(10);

/// Runs the binary with `args` and `stdin`, bounded: (exit code, stdout, stderr).
fn cli(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portcullis {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A store file in a directory of its own.
struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/portcullis.db");
        Store { _dir: dir, path }
    }

    fn db(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// `portcullis users add` (password on stdin).
    fn add_user(&self, user: &str, password: &str, superuser: bool) {
        let mut args = vec!["users", "add", "--db", self.db(), user];
        if superuser {
            args.push("--superuser");
        }
        let (code, out, err) = cli(&args, &format!("{password}\n"));
        assert_eq!(code, Some(0), "users add {user}: {out}{err}");
    }

    /// `portcullis users <cmd> --db … <user>` with `stdin`.
    fn users(&self, cmd: &str, user: &str, stdin: &str) -> (Option<i32>, String, String) {
        cli(&["users", cmd, "--db", self.db(), user], stdin)
    }

    /// `portcullis acl add` with `args`; the new rule's id.
    fn add_rule(&self, args: &[&str]) -> String {
        let mut all = vec!["acl", "add", "--db", self.db()];
        all.extend_from_slice(args);
        let (code, out, err) = cli(&all, "");
        assert_eq!(code, Some(0), "acl add {args:?}: {out}{err}");
        out.trim().to_string()
    }

    /// Provider tables on this store: auth `users`, ACL `rules`.
    fn config(&self, poll: &str) -> String {
        format!(
            "[auth]\nchain = [\"users\"]\n[auth.builtin.users]\npath = \"{p}\"\npoll = \"{poll}\"\n\
             [acl]\nchain = [\"rules\"]\n[acl.builtin.rules]\npath = \"{p}\"\npoll = \"{poll}\"\n",
            p = self.db()
        )
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// A QoS 1 publish to `late/topic`: whether the broker took it.
async fn published_late(c: &mut Raw, id: u16) -> bool {
    published(c, "late/topic", Q1, id, false).await
}

async fn code(addr: SocketAddr, version: ProtocolVersion, user: &str, password: &str) -> Option<u8> {
    try_login(addr, version, &format!("c-{user}"), Some(user), Some(password)).await.1
}

/// Users made with `portcullis users add` log in on 3.1.1 and 5.0; a wrong
/// password and an unknown user get the same answer (0x04 / 0x86); a
/// password change and a deletion made while the broker runs count from
/// the next CONNECT (the store's change purges the auth cache); the file
/// and its WAL files are 0600, the directory made for it 0700; no password
/// reaches the log.
#[tokio::test]
async fn users_made_with_the_cli_log_in() {
    let s = Store::new();
    s.add_user("alice", "a-pw-1", false);
    s.add_user("admin", "root-pw", true);
    assert_eq!(mode(&s.path), 0o600);
    assert_eq!(mode(s.path.parent().expect("dir")), 0o700);
    let b = Broker::start(&s.config("200ms"));
    let a = b.addr;
    expect(a, "alice", "a-pw-1", OK).await;
    expect(a, "admin", "root-pw", OK).await;
    expect(a, "alice", "a-pw-2", BAD_CREDENTIALS).await;
    expect(a, "nobody", "a-pw-1", BAD_CREDENTIALS).await;
    expect(a, "Alice", "a-pw-1", BAD_CREDENTIALS).await;
    let (_, c) = try_login(a, V3, "nopw", Some("alice"), None).await;
    assert_eq!(c, Some(BAD_CREDENTIALS.0), "no password");
    for side in ["db-wal", "db-shm"] {
        assert_eq!(mode(&s.path.with_extension(side)), 0o600, "{side}");
    }

    // A new password, set while the broker runs (and while the old one's
    // allow sits in the auth cache).
    let (rc, out, err) = s.users("passwd", "alice", "a-pw-2\n");
    assert_eq!(rc, Some(0), "{out}{err}");
    eventually(SEEN_WITHIN, "the old password refused", || async {
        code(a, V5, "alice", "a-pw-1").await == Some(BAD_CREDENTIALS.1)
    })
    .await;
    expect(a, "alice", "a-pw-2", OK).await;
    let (rc, out, _) = cli(&["users", "list", "--db", s.db()], "");
    assert_eq!(rc, Some(0));
    assert!(out.contains("admin") && out.contains("yes") && out.contains("alice") && out.contains("2 in all"), "{out}");

    let (rc, out, err) = s.users("del", "alice", "");
    assert_eq!(rc, Some(0), "{out}{err}");
    eventually(SEEN_WITHIN, "a deleted user refused", || async {
        code(a, V3, "alice", "a-pw-2").await == Some(BAD_CREDENTIALS.0)
    })
    .await;
    let (rc, _, err) = s.users("del", "alice", "");
    assert_eq!(rc, Some(2), "deleting twice");
    assert!(err.contains("no user \"alice\""), "{err}");
    let (rc, _, err) = s.users("add", "admin", "x\n");
    assert_eq!(rc, Some(2));
    assert!(err.contains("already exists"), "{err}");
    let (rc, _, err) = s.users("add", "eve", "\n");
    assert_eq!(rc, Some(2), "an empty password");
    assert!(err.contains("empty password"), "{err}");
    assert!(b.log().contains("user store changed"), "{}", b.log());
    let log = b.log();
    for secret in ["a-pw-1", "a-pw-2", "root-pw"] {
        assert!(!log.contains(secret), "the log shows a password");
    }
}

/// A superuser bypasses the ACL; per-username and per-client-id rules
/// decide publishes and subscriptions, with `${username}` / `${clientid}`
/// placeholders, QoS lists, priorities, and a client id's rule before a
/// username's at equal priority; what no rule allows is refused.
#[tokio::test]
async fn rules_per_user_and_client_id() {
    let s = Store::new();
    s.add_user("admin", "root-pw", true);
    s.add_user("alice", "a-pw", false);
    s.add_user("bob", "b-pw", false);
    s.add_rule(&[
        "--username",
        "alice",
        "--permission",
        "allow",
        "--action",
        "publish",
        "--topic",
        "devices/${username}/#",
    ]);
    s.add_rule(&[
        "--username",
        "alice",
        "--permission",
        "allow",
        "--action",
        "subscribe",
        "--topic",
        "public/#",
        "--qos",
        "0,1",
    ]);
    s.add_rule(&[
        "--client-id",
        "sensor-1",
        "--permission",
        "allow",
        "--action",
        "all",
        "--topic",
        "sensors/${clientid}/#",
    ]);
    s.add_rule(&[
        "--client-id",
        "sensor-1",
        "--permission",
        "deny",
        "--action",
        "publish",
        "--topic",
        "devices/alice/locked",
    ]);
    // Priority: tried before everything above, so bob's client may never
    // publish retained messages under sensors/.
    s.add_rule(&[
        "--username",
        "bob",
        "--permission",
        "deny",
        "--action",
        "publish",
        "--topic",
        "sensors/#",
        "--retain",
        "true",
        "--priority",
        "-1",
    ]);
    let b = Broker::start(&s.config("200ms"));
    let a = b.addr;

    let mut admin = login(a, V5, "admin-1", "admin", "root-pw").await;
    assert!(published(&mut admin, "anything/at/all", Q1, 1, false).await, "superuser publishes anywhere");
    assert_eq!(sub_code(&mut admin, 2, "#", Q1).await, 1, "superuser subscribes to #");

    let mut phone = login(a, V5, "phone", "alice", "a-pw").await;
    assert!(published(&mut phone, "devices/alice/temp", Q1, 1, false).await);
    assert!(!published(&mut phone, "devices/bob/temp", Q1, 2, false).await, "another user's topic");
    assert!(!published(&mut phone, "sensors/phone/x", Q1, 3, false).await, "no rule for client phone");
    assert_eq!(sub_code(&mut phone, 4, "public/news", Q1).await, 1);
    assert_eq!(sub_code(&mut phone, 5, "public/news", Q2).await, 0x87, "QoS 2 is not in the rule's list");
    assert_eq!(sub_code(&mut phone, 6, "devices/alice/#", Q0).await, 0x87, "publish only");

    // alice on the sensor's client id: its client id rules first.
    let mut sensor = login(a, V5, "sensor-1", "alice", "a-pw").await;
    assert!(published(&mut sensor, "sensors/sensor-1/data", Q1, 1, false).await);
    assert!(!published(&mut sensor, "sensors/sensor-2/data", Q1, 2, false).await, "${{clientid}} is its own id");
    assert!(!published(&mut sensor, "devices/alice/locked", Q1, 3, false).await, "client id deny before user allow");
    assert!(published(&mut sensor, "devices/alice/open", Q1, 4, false).await, "the user's rule still applies");
    drop(sensor);

    // bob on the same client id (3.1.1): the client id's rules apply to
    // him; his own priority -1 deny comes first.
    let mut bob = login(a, V3, "sensor-1", "bob", "b-pw").await;
    assert_eq!(sub_code(&mut bob, 1, "sensors/sensor-1/cmd/#", Q1).await, 1);
    assert_eq!(sub_code(&mut bob, 2, "devices/#", Q0).await, 0x80);
    let mut watcher = login(a, V5, "watch", "admin", "root-pw").await;
    assert_eq!(sub_code(&mut watcher, 1, "sensors/#", Q1).await, 1);
    portcullis_tests::kit::pub_simple(&mut bob, "sensors/sensor-1/data", Q1, 3, b"plain", false).await;
    portcullis_tests::kit::pub_simple(&mut bob, "sensors/sensor-1/data", Q1, 4, b"retained", true).await;
    let got =
        portcullis_tests::kit::drain_publishes(&mut watcher, Duration::from_millis(500), Duration::from_secs(5)).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, vec![&b"plain"[..]], "bob's retained publish was refused (dropped)");
}

/// A rule added or removed while the broker runs decides the next action
/// of a connected client within the store's `poll` (the change purges the
/// ACL cache, whose TTL here is an hour); with a `poll` too long to help,
/// SIGHUP purges the caches.
#[tokio::test]
async fn rule_changes_are_seen_within_the_poll_or_at_sighup() {
    let s = Store::new();
    s.add_user("alice", "a-pw", false);
    let b = Broker::start(&format!("{}[acl.cache]\nttl = \"1h\"\n", s.config("200ms")));
    let mut c = login(b.addr, V5, "c1", "alice", "a-pw").await;
    let mut id = 0u16;
    let mut next = move || {
        id += 1;
        id
    };
    assert!(!published_late(&mut c, next()).await, "no rule yet");
    let rule =
        s.add_rule(&["--username", "alice", "--permission", "allow", "--action", "publish", "--topic", "late/#"]);
    let end = Instant::now() + SEEN_WITHIN;
    while !published_late(&mut c, next()).await {
        assert!(Instant::now() < end, "the new rule was not seen within {SEEN_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rc, out, err) = cli(&["acl", "del", "--db", s.db(), &rule], "");
    assert_eq!(rc, Some(0), "{out}{err}");
    let end = Instant::now() + SEEN_WITHIN;
    while published_late(&mut c, next()).await {
        assert!(Instant::now() < end, "the removed rule still allowed after {SEEN_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);

    let mut b = Broker::start(&format!("{}[acl.cache]\nttl = \"1h\"\n", s.config("1h")));
    let mut c = login(b.addr, V5, "c2", "alice", "a-pw").await;
    assert!(!published_late(&mut c, next()).await);
    s.add_rule(&["--username", "alice", "--permission", "allow", "--action", "publish", "--topic", "late/#"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!published_late(&mut c, next()).await, "the cached deny still decides (poll = 1h, ttl = 1h)");
    assert!(b.alive());
    let _ = Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status();
    assert!(b.wait_log("files reloaded", Duration::from_secs(10)), "{}", b.log());
    assert!(published_late(&mut c, next()).await, "SIGHUP purged the cache");
}

/// A user whose stored hash cannot be read is a store failure, not a
/// wrong password: `on_error = "deny"` answers server unavailable, and
/// `on_error = "ignore"` passes the client to the next provider.
#[tokio::test]
async fn a_broken_row_is_an_error_that_on_error_decides() {
    let s = Store::new();
    s.add_user("alice", "a-pw", false);
    s.add_user("mallory", "m-pw", false);
    {
        use sqlx::{ConnectOptions, Connection};
        let mut c = sqlx::sqlite::SqliteConnectOptions::new().filename(&s.path).connect().await.expect("open");
        sqlx::query("UPDATE users SET password_hash = 'not-a-hash' WHERE username = 'mallory'")
            .execute(&mut c)
            .await
            .expect("update");
        c.close().await.expect("close");
    }
    let b = Broker::start(&s.config("200ms"));
    expect(b.addr, "mallory", "m-pw", UNAVAILABLE).await;
    expect(b.addr, "alice", "a-pw", OK).await;
    drop(b);
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let (rc, out, err) = cli(&["passwd", passwd.to_str().expect("path"), "mallory"], "file-pw\n");
    assert_eq!(rc, Some(0), "{out}{err}");
    let cfg = format!(
        "[auth]\nchain = [\"users\", \"file\"]\n[auth.builtin.users]\npath = \"{}\"\non_error = \"ignore\"\n\
         [auth.password_file.file]\npath = \"{}\"\n",
        s.db(),
        passwd.display()
    );
    let b = Broker::start(&cfg);
    expect(b.addr, "mallory", "file-pw", OK).await;
    expect(b.addr, "mallory", "m-pw", BAD_CREDENTIALS).await;
}

/// An unknown user costs a hash verification like a wrong password does.
#[tokio::test]
async fn unknown_users_cost_a_hash_like_wrong_passwords() {
    let s = Store::new();
    s.add_user("alice", "a-pw", false);
    let b = Broker::start(&format!("{}[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n", s.config("1s")));
    let (wrong, unknown) = latency_wrong_vs_unknown(b.addr, "alice", 7, BAD_CREDENTIALS.1).await;
    assert_unknown_users_cost_a_hash(wrong, unknown);
}

/// A store file the broker cannot use stops the start (exit 2) with the
/// provider's key and the file named, and `--check-config` says the same;
/// `--check-config` creates nothing, the start creates the store.
#[test]
fn an_unusable_store_stops_the_start_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write_config = |store: &Path| {
        let path = dir.path().join("portcullis.toml");
        let text = format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[auth]\nchain = [\"users\"]\n[auth.builtin.users]\npath = \"{}\"\n",
            store.display()
        );
        std::fs::write(&path, text).expect("write config");
        path
    };
    let refused = |config: &Path, needles: &[&str]| {
        for check in [true, false] {
            let mut args = vec!["--config".as_ref(), config.as_os_str()];
            if check {
                args.insert(0, "--check-config".as_ref());
            }
            let out = run_bounded(&args, Duration::from_secs(20)).expect("the broker started on an unusable store");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "check {check}: {stderr}");
            let line = stderr.lines().find(|l| l.contains("auth.builtin.users: path: ")).unwrap_or_else(|| {
                panic!("check {check}: no line names the key: {stderr}");
            });
            assert!(line.starts_with(&config.display().to_string()), "{line}");
            for n in needles {
                assert!(line.contains(n), "check {check}: {n:?} not in {line}");
            }
        }
    };

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42; 4096]).expect("write");
    refused(&write_config(&garbage), &[garbage.to_str().expect("path"), "not a database"]);

    let broken = dir.path().join("broken.db");
    let store = Store { _dir: tempfile::tempdir().expect("tempdir"), path: broken.clone() };
    for i in 0..40 {
        store.add_rule(&[
            "--username",
            &format!("user-{i}"),
            "--permission",
            "allow",
            "--action",
            "all",
            "--topic",
            "a/b/c/d",
        ]);
    }
    let mut bytes = std::fs::read(&broken).expect("read");
    assert!(bytes.len() >= 3 * 4096, "{} bytes", bytes.len());
    bytes[4096 + 8..2 * 4096].fill(0xa5);
    std::fs::write(&broken, &bytes).expect("write");
    let _ = std::fs::remove_file(broken.with_extension("db-wal"));
    refused(&write_config(&broken), &["broken.db", "malformed"]);

    refused(&write_config(dir.path()), &["is a directory"]);

    let fresh = dir.path().join("new/data/portcullis.db");
    let config = write_config(&fresh);
    let out =
        run_bounded(&["--check-config".as_ref(), "--config".as_ref(), config.as_os_str()], Duration::from_secs(20))
            .expect("--check-config finished");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("new").exists(), "--check-config created the store");
    let text = std::fs::read_to_string(&config).expect("config");
    let b = Broker::start_with_config(&text);
    assert!(b.wait_log("user store created", Duration::from_secs(5)), "{}", b.log());
    assert_eq!(mode(&fresh), 0o600);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&dir.path().join("new/data")), 0o700);
}
