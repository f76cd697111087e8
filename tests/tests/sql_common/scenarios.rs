//! The end-to-end scenarios both SQL backends must pass, each through the
//! real broker against the real server. The fixtures are
//! `tests/fixtures/sql/*` (every password is `pw-<username>`).

use std::time::{Duration, Instant};

use portcullis_core::codec::QoS;
use portcullis_tests::kit::sys_fresh;
use portcullis_tests::{frame, Broker, Raw};

use super::*;

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;
/// 5.0 "not authorized" in SUBACK and PUBACK.
const REFUSED: u8 = 0x87;

fn start(config: &str) -> Broker {
    Broker::start(&format!("{config}\n{COMMON}"))
}

/// `portcullis auth check` against the broker's config, with `password`
/// on stdin: the `decision:` line.
fn auth_check(broker: &Broker, username: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&broker.config_path)
        .args(["auth", "check", "--username", username, "--client-id", "cli"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn auth check");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < end, "auth check did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("decision:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("auth check printed no decision:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// A 3.1.1 CONNECT whose username holds a NUL byte (invalid MQTT, built
/// by hand since the encoder refuses it).
fn connect_with_nul_username() -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30];
    for field in [&b"nul"[..], b"ali\0ce", b"pw-alice"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field);
    }
    frame(0x10, &body)
}

/// EMQX 5 tables with the default query: every auth outcome, unknown users
/// passed on to the next provider, injection attempts that find nothing,
/// and no secret in the log.
pub async fn auth_emqx(db: &Db) {
    let _shared = LOCK.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = password_file(dir.path(), &[("carol", "pw-carol")]);
    let b = start(&format!(
        "[auth]\nchain = [\"db\", \"file\"]\n{}[auth.password_file.file]\npath = \"{}\"\n",
        db.table("auth", "db", "emqx", ""),
        pw.display()
    ));
    let a = b.addr;
    assert_eq!(connack(a, "c1", "alice", "pw-alice").await, ACCEPTED, "{}", b.log());
    let (_, v5) = try_connect(a, V5, "c1v5", Some("alice"), Some("pw-alice")).await;
    assert_eq!(v5, Some(0));
    assert_eq!(connack(a, "c2", "alice", "pw-alicf").await, BAD_CREDENTIALS);
    assert_eq!(connack(a, "c3", "alice", "").await, BAD_CREDENTIALS);
    let (_, code) = try_connect(a, V3, "c4", Some("alice"), None).await;
    assert_eq!(code, Some(BAD_CREDENTIALS), "no password");
    let (_, code) = try_connect(a, V5, "c5", Some("alice"), Some("nope")).await;
    assert_eq!(code, Some(0x86), "5.0 bad username or password");
    // A user whose hash is NULL cannot log in.
    assert_eq!(connack(a, "c6", "nopass", "").await, BAD_CREDENTIALS);
    assert_eq!(connack(a, "c6", "nopass", "x").await, BAD_CREDENTIALS);
    // Not in the database: the next provider decides, or no_match.
    assert_eq!(connack(a, "c7", "carol", "pw-carol").await, ACCEPTED, "carol is the password file's");
    // no_match answers an unknown user like a wrong password.
    assert_eq!(connack(a, "c8", "mallory", "pw-alice").await, BAD_CREDENTIALS);
    // Usernames are exact, whatever the database's collation says.
    assert_eq!(connack(a, "c8", "Alice", "pw-alice").await, BAD_CREDENTIALS, "usernames are exact");
    assert_eq!(connack(a, "c8", "alice ", "pw-alice").await, BAD_CREDENTIALS, "usernames are exact");

    // Values bound, never spliced: every one of these finds nothing, so
    // the chain ends in no_match (not an allow, not a database error;
    // answered, like any unknown user, as bad credentials).
    // Long, but under limits.max_username_len (1024), so it reaches the
    // query (longer ones are refused before any provider is asked).
    let long = "a".repeat(1_000);
    for evil in [
        "' OR 1=1 --",
        "alice' --",
        "alice' OR '1'='1",
        "alice'; DROP TABLE mqtt_user; --",
        "\\' OR 1=1 #",
        "%",
        "alice%",
        "_lice",
        "*",
        "ali\u{1F600}ce",
        long.as_str(),
    ] {
        let shown: String = evil.chars().take(40).collect();
        assert_eq!(connack(a, "inj", evil, "pw-alice").await, BAD_CREDENTIALS, "username {shown:?}");
    }
    // A NUL byte never reaches the database: MQTT forbids it and the
    // broker closes the connection; the broker and the pool are fine.
    let mut raw = Raw::connect(a).await;
    raw.send(&connect_with_nul_username()).await;
    match raw.recv_timeout(Duration::from_secs(5)).await {
        Ok(None) => {}
        Ok(Some(p)) => panic!("NUL username: expected the connection closed, got {p:?}"),
        Err(()) => panic!("NUL username: connection not closed"),
    }
    assert_eq!(connack(a, "c9", "alice", "pw-alice").await, ACCEPTED);
    assert!(!b.log().contains("unreachable"), "{}", b.log());

    let log = b.log();
    for secret in [db.password.as_str(), "pw-alice", "pw-carol", "pw-alicf"] {
        assert!(!log.contains(secret), "the log shows a password");
    }
}

/// emqttd 1.x tables: the default query unchanged, then emqttd's own
/// queries pasted verbatim (`'%u'`, `super_query`, its ACL query).
pub async fn auth_emqttd(db: &Db) {
    let _shared = LOCK.read().await;
    let b = start(&format!("[auth]\nchain = [\"db\"]\n{}", db.table("auth", "db", "emqttd", "")));
    let a = b.addr;
    assert_eq!(connack(a, "d1", "dave", "pw-dave").await, ACCEPTED, "{}", b.log());
    assert_eq!(connack(a, "e1", "erin", "pw-erin").await, ACCEPTED, "salted");
    assert_eq!(connack(a, "d2", "dave", "pw-erin").await, BAD_CREDENTIALS);
    assert_eq!(connack(a, "x1", "alice", "pw-alice").await, BAD_CREDENTIALS, "alice is in the other database");
    // emqttd's MySQL tables are utf8mb3: a character outside it finds nothing.
    assert_eq!(connack(a, "x2", "d\u{1F600}ve", "pw-dave").await, BAD_CREDENTIALS);
    assert!(auth_check(&b, "admin", "pw-admin").contains("ALLOW (superuser)"));
    let d = auth_check(&b, "dave", "pw-dave");
    assert!(d.contains("ALLOW") && !d.contains("superuser"), "{d}");
    drop(b);

    let b = start(&format!(
        "[auth]\nchain = [\"db\"]\n{}[acl]\nchain = [\"db\"]\n{}",
        db.table(
            "auth",
            "db",
            "emqttd",
            "query = \"select password, salt from mqtt_user where username = '%u' limit 1\"\n\
             superuser_query = \"select is_superuser from mqtt_user where username = '%u' limit 1\"",
        ),
        db.table(
            "acl",
            "db",
            "emqttd",
            "query = \"select allow, ipaddr, username, clientid, access, topic from mqtt_acl where ipaddr = '%a' \
             or username = '%u' or username = '$all' or clientid = '%c'\"",
        ),
    ));
    let a = b.addr;
    assert_eq!(connack(a, "d1", "dave", "pw-dave").await, ACCEPTED, "{}", b.log());
    assert_eq!(connack(a, "e1", "erin", "pw-erin").await, ACCEPTED);
    assert_eq!(connack(a, "e2", "erin", "pw-dave").await, BAD_CREDENTIALS);
    assert!(auth_check(&b, "admin", "pw-admin").contains("ALLOW (superuser)"));
    assert!(!auth_check(&b, "erin", "pw-erin").contains("superuser"));
    let mut dave = login_v5(a, "d3", "dave", "pw-dave").await;
    assert_eq!(pub1(&mut dave, 1, "home/dave/t", false).await, 0);
    assert_eq!(pub1(&mut dave, 2, "home/erin/t", false).await, REFUSED);
    assert_eq!(sub(&mut dave, 3, "#", Q0).await, REFUSED);
}

/// Every hash setting, each in its own provider (a query limited to its
/// users' name prefix, so the others are passed on), then self-describing
/// values under the default setting.
pub async fn every_hash_type(db: &Db) {
    let _shared = LOCK.read().await;
    let settings = [
        ("plain", "{ algo = \"plain\" }"),
        ("md5p", "{ algo = \"md5\", salt_position = \"prefix\" }"),
        ("md5s", "{ algo = \"md5\", salt_position = \"suffix\" }"),
        ("sha1p", "{ algo = \"sha1\" }"),
        ("sha1s", "{ algo = \"sha1\", salt_position = \"suffix\" }"),
        ("sha256p", "{ algo = \"sha256\" }"),
        ("sha256s", "{ algo = \"sha256\", salt_position = \"suffix\" }"),
        ("sha512p", "{ algo = \"sha512\", salt_position = \"prefix\" }"),
        ("sha512s", "{ algo = \"sha512\", salt_position = \"suffix\" }"),
        ("sha256b64", "{ algo = \"sha256\", encoding = \"base64\" }"),
        ("bcrypt", "{ algo = \"bcrypt\" }"),
        ("pbkdf2", "{ algo = \"pbkdf2\", mac = \"sha256\", iterations = 1000, key_length = 32 }"),
        ("argon2", "{ algo = \"argon2id\" }"),
    ];
    let mut config = format!(
        "[auth]\nchain = [{}]\n",
        settings.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    );
    for (name, hash) in settings {
        config.push_str(&db.table(
            "auth",
            name,
            "emqx",
            &format!(
                "query = \"SELECT * FROM mqtt_user WHERE username = ${{username}} AND username LIKE '{name}-%'\"\n\
                 password_hash = {hash}"
            ),
        ));
    }
    let b = start(&config);
    for (name, _) in settings {
        let user = format!("{name}-1");
        let right = format!("pw-{user}");
        assert_eq!(connack(b.addr, "h", &user, &right).await, ACCEPTED, "{user}\n{}", b.log());
        assert_eq!(connack(b.addr, "h", &user, "pw-wrong").await, BAD_CREDENTIALS, "{user}");
    }
    drop(b);
    // bcrypt and Argon2 values describe themselves: the default setting
    // (salted SHA-256) reads them too.
    let b = start(&format!("[auth]\nchain = [\"db\"]\n{}", db.table("auth", "db", "emqx", "")));
    for user in ["bcrypt-1", "argon2-1"] {
        assert_eq!(connack(b.addr, "h", user, &format!("pw-{user}")).await, ACCEPTED, "{user}\n{}", b.log());
        assert_eq!(connack(b.addr, "h", user, "pw-wrong").await, BAD_CREDENTIALS, "{user}");
    }
}

/// EMQX 5 rows (no query configured: the schema is detected): allow and
/// deny, `${username}` / `${clientid}` topics, QoS and retain limits,
/// `eq #`, the superuser bypass; decisions name the row.
pub async fn acl_emqx(db: &Db) {
    let _shared = LOCK.read().await;
    let b = start(&format!(
        "[auth]\nchain = [\"db\"]\n{}[acl]\nchain = [\"db\"]\nno_match = \"deny\"\n{}",
        db.table("auth", "db", "emqx", ""),
        db.table("acl", "db", "emqx", ""),
    ));
    let mut alice = login_v5(b.addr, "dev-a", "alice", "pw-alice").await;
    assert_eq!(sub(&mut alice, 1, "home/alice/inbox/#", Q0).await, 0, "{}", b.log());
    assert_eq!(sub(&mut alice, 2, "home/alice/secret/x", Q0).await, REFUSED);
    assert_eq!(sub(&mut alice, 3, "home/bob/x", Q0).await, REFUSED);
    assert_eq!(pub1(&mut alice, 4, "home/alice/t", false).await, 0);
    assert_eq!(pub1(&mut alice, 5, "home/alice/secret/t", false).await, REFUSED);
    assert_eq!(pub1(&mut alice, 6, "sensors/dev-a/temp", false).await, 0);
    assert_eq!(pub1(&mut alice, 7, "sensors/dev-b/temp", false).await, REFUSED);
    assert_eq!(sub(&mut alice, 8, "news/#", Q1).await, 1);
    assert_eq!(sub(&mut alice, 9, "news/#", Q2).await, REFUSED, "the row allows QoS 1 only");
    assert_eq!(pub1(&mut alice, 10, "retained/x", false).await, 0);
    assert_eq!(pub1(&mut alice, 11, "retained/x", true).await, REFUSED, "the row allows retain = 0 only");
    assert_eq!(sub(&mut alice, 12, "#", Q0).await, REFUSED);
    let mut bob = login_v5(b.addr, "dev-b", "bob", "pw-bob").await;
    assert_eq!(pub1(&mut bob, 1, "bob/x", false).await, 0);
    assert_eq!(pub1(&mut bob, 2, "home/bob/x", false).await, REFUSED, "alice's rows are not bob's");
    let mut root = login_v5(b.addr, "dev-r", "root", "pw-root").await;
    assert_eq!(sub(&mut root, 1, "#", Q0).await, 0, "superuser");
    assert!(b.log().contains("no ACL query configured"), "{}", b.log());

    let kind = db.name();
    let e = explain(&b, &["--username", "alice", "--client-id", "dev-a", "--subscribe", "#"]);
    assert!(e.contains("decision: DENY") && e.contains(&format!("{kind}:db id 6")), "{e}");
    let e = explain(&b, &["--username", "alice", "--client-id", "dev-a", "--publish", "home/alice/secret/t"]);
    assert!(e.contains("decision: DENY") && e.contains(&format!("{kind}:db id 1")), "{e}");
    let e = explain(&b, &["--username", "alice", "--client-id", "dev-a", "--publish", "sensors/dev-a/t"]);
    assert!(e.contains("decision: ALLOW") && e.contains(&format!("{kind}:db id 3")), "{e}");
}

/// emqttd 1.x rows (detected): `$all`, `%u` / `%c` topics, rows for one
/// client id, one address, one user, `eq #`; an anonymous client gets the
/// `$all` and address rows only.
pub async fn acl_emqttd(db: &Db) {
    let _shared = LOCK.read().await;
    let b = start(&format!(
        "[auth]\nchain = [\"anon\", \"db\"]\n[auth.anonymous.anon]\n{}[acl]\nchain = [\"db\"]\n{}",
        db.table("auth", "db", "emqttd", ""),
        db.table("acl", "db", "emqttd", ""),
    ));
    let a = b.addr;
    let mut dave = login_v5(a, "d1", "dave", "pw-dave").await;
    assert_eq!(pub1(&mut dave, 1, "home/dave/x", false).await, 0, "{}", b.log());
    assert_eq!(sub(&mut dave, 2, "home/dave/#", Q1).await, 1);
    assert_eq!(pub1(&mut dave, 3, "home/erin/x", false).await, REFUSED);
    assert_eq!(sub(&mut dave, 4, "$SYS/#", Q0).await, REFUSED);
    assert_eq!(sub(&mut dave, 5, "#", Q0).await, REFUSED);
    assert_eq!(sub(&mut dave, 6, "local/#", Q0).await, 0, "the 127.0.0.1 row");
    assert_eq!(pub1(&mut dave, 7, "frank-only/x", false).await, REFUSED);
    assert_eq!(pub1(&mut dave, 8, "sensors/d1/data", false).await, REFUSED);
    let mut sensor = login_v5(a, "sensor-1", "dave", "pw-dave").await;
    assert_eq!(pub1(&mut sensor, 1, "sensors/sensor-1/data", false).await, 0, "the client id row");
    let mut other = login_v5(a, "sensor-2", "dave", "pw-dave").await;
    assert_eq!(pub1(&mut other, 1, "sensors/sensor-2/data", false).await, REFUSED);
    let mut erin = login_v5(a, "e1", "erin", "pw-erin").await;
    assert_eq!(sub(&mut erin, 1, "home/erin/secret/#", Q0).await, REFUSED);
    assert_eq!(pub1(&mut erin, 2, "home/erin/secret/x", false).await, REFUSED);
    assert_eq!(pub1(&mut erin, 3, "home/erin/ok", false).await, 0);
    // A client id the table's charset cannot hold (emqttd's MySQL tables
    // are utf8mb3) matches no row, while the `$all` rows still apply.
    let mut emoji = login_v5(a, "d\u{1F600}", "dave", "pw-dave").await;
    assert_eq!(pub1(&mut emoji, 1, "home/dave/x", false).await, 0, "{}", b.log());
    assert_eq!(sub(&mut emoji, 2, "#", Q0).await, REFUSED, "the $all deny row");
    let (mut anon, code) = try_connect(a, V5, "anon-1", None, None).await;
    assert_eq!(code, Some(0));
    assert_eq!(sub(&mut anon, 1, "local/#", Q0).await, 0, "anonymous: the address row still applies");
    assert_eq!(pub1(&mut anon, 2, "home/x", false).await, REFUSED, "no username: %u matches nothing");

    let kind = db.name();
    let e = explain(&b, &["--username", "dave", "--client-id", "d1", "--subscribe", "$SYS/#"]);
    assert!(e.contains("decision: DENY") && e.contains(&format!("{kind}:db id 3")), "{e}");
    let e = explain(&b, &["--username", "dave", "--client-id", "d1", "--subscribe", "#"]);
    assert!(e.contains(&format!("{kind}:db id 4")), "{e}");
    let e = explain(&b, &["--username", "erin", "--client-id", "e1", "--publish", "home/erin/secret/x"]);
    assert!(e.contains("decision: DENY") && e.contains(&format!("{kind}:db id 1")), "{e}");
}

/// TLS to the database: a TLS-only database user logs in with
/// `tls.enable` (and is refused without TLS, so TLS was really used), a
/// certificate-only user with the client certificate; a wrong CA is an
/// outage, never bad credentials.
pub async fn tls_to_backend(db: &Db) {
    let _shared = LOCK.read().await;
    let ca = db.tls_file("ca.pem");
    let tls = format!("tls = {{ enable = true, ca_file = \"{ca}\" }}\npool = {{ connect_timeout = \"2s\" }}");
    let with = |user: &str, extra: &str| {
        start(&format!("[auth]\nchain = [\"db\"]\n{}", db.table_as("auth", "db", user, "emqx", extra)))
    };
    let b = with("portcullis_tls", &tls);
    assert_eq!(connack(b.addr, "t1", "alice", "pw-alice").await, ACCEPTED, "{}", b.log());
    assert_eq!(connack(b.addr, "t1", "alice", "wrong").await, BAD_CREDENTIALS);
    drop(b);

    // The same user without TLS is refused by the server.
    let plain = match db.kind {
        Kind::Postgres => "?sslmode=disable",
        Kind::Mysql => "?ssl-mode=disabled",
    };
    let b = start(&format!(
        "[auth]\nchain = [\"db\"]\n[auth.{}.db]\nurl = \"{}{plain}\"\npassword = {{ env = \"{}\" }}\n\
         pool = {{ connect_timeout = \"2s\" }}\n",
        db.name(),
        db.url("portcullis_tls", "emqx"),
        db.password_var
    ));
    assert_eq!(connack(b.addr, "t2", "alice", "pw-alice").await, UNAVAILABLE, "{}", b.log());
    drop(b);

    let cert = format!(
        "tls = {{ enable = true, ca_file = \"{ca}\", cert_file = \"{}\", key_file = \"{}\" }}\n\
         pool = {{ connect_timeout = \"2s\" }}",
        db.tls_file("client.pem"),
        db.tls_file("client.key")
    );
    let b = with("portcullis-test", &cert);
    assert_eq!(connack(b.addr, "t3", "alice", "pw-alice").await, ACCEPTED, "{}", b.log());
    drop(b);
    // Without the client certificate the same user is refused.
    let b = with("portcullis-test", &tls);
    assert_eq!(connack(b.addr, "t4", "alice", "pw-alice").await, UNAVAILABLE, "{}", b.log());
    drop(b);

    // A CA that did not sign the server's certificate.
    let wrong = format!(
        "tls = {{ enable = true, ca_file = \"{}\" }}\npool = {{ connect_timeout = \"2s\" }}",
        db.tls_file("client.pem")
    );
    let b = with("portcullis", &wrong);
    assert_eq!(connack(b.addr, "t5", "alice", "pw-alice").await, UNAVAILABLE, "{}", b.log());
}

/// Sessions the server closed (`pg_terminate_backend`, `KILL`) are never
/// an answer: the next login and the next ACL check simply work.
pub async fn killed_connections(db: &Db) {
    let _alone = LOCK.write().await;
    let b = start(&format!(
        "[auth]\nchain = [\"db\"]\n{}[acl]\nchain = [\"db\"]\n{}",
        db.table("auth", "db", "emqx", ""),
        db.table("acl", "db", "emqx", ""),
    ));
    let mut alice = login_v5(b.addr, "k0", "alice", "pw-alice").await;
    for round in 1..=3u16 {
        assert_eq!(connack(b.addr, "k1", "alice", "pw-alice").await, ACCEPTED, "round {round}: {}", b.log());
        assert_eq!(pub1(&mut alice, round, "home/alice/x", false).await, 0, "round {round}");
        let killed = db.kill_sessions();
        assert!(killed >= 1, "round {round}: the broker held no session to kill");
        assert_eq!(connack(b.addr, "k2", "alice", "pw-alice").await, ACCEPTED, "round {round}: {}", b.log());
        assert_eq!(connack(b.addr, "k3", "alice", "wrong").await, BAD_CREDENTIALS, "round {round}");
        db.kill_sessions();
        assert_eq!(pub1(&mut alice, 10 + round, "home/alice/y", false).await, 0, "round {round}: {}", b.log());
    }
}

/// The server closes sessions idle longer than a limit (MySQL
/// `wait_timeout`, PostgreSQL `idle_session_timeout`); the pool must notice
/// instead of answering "bad credentials".
pub async fn idle_sessions_closed_by_server(db: &Db) {
    let _alone = LOCK.write().await;
    db.set_idle_limit(Some(1));
    let b = start(&format!("[auth]\nchain = [\"db\"]\n{}", db.table("auth", "db", "emqx", "")));
    let first = connack(b.addr, "w1", "alice", "pw-alice").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = connack(b.addr, "w2", "alice", "pw-alice").await;
    db.set_idle_limit(None);
    assert_eq!((first, second), (ACCEPTED, ACCEPTED), "{}", b.log());
}

/// The database stops mid-test and comes back; a second broker starts
/// while it is down. While down, CONNECTs end within the configured time
/// as "server unavailable" (or pass to the next provider with
/// `on_error = "ignore"`), health shows 0 in `$SYS`; afterwards both
/// brokers recover without a restart.
pub async fn outage_and_recovery(db: &Db) {
    let _alone = LOCK.write().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = password_file(dir.path(), &[("carol", "pw-carol")]);
    let config = format!(
        "[auth]\nchain = [\"anon\", \"db\", \"lenient\", \"file\"]\n[auth.anonymous.anon]\n{}{}\
         [auth.password_file.file]\npath = \"{}\"\n",
        db.table("auth", "db", "emqx", "timeout = \"4s\"\npool = { connect_timeout = \"1s\", query_timeout = \"1s\" }"),
        db.table(
            "auth",
            "lenient",
            "emqx",
            "timeout = \"4s\"\non_error = \"ignore\"\npool = { connect_timeout = \"1s\" }\n\
             query = \"SELECT * FROM mqtt_user WHERE username = ${username} AND username = 'bob'\"",
        ),
        pw.display()
    );
    let up = start(&config);
    assert_eq!(connack(up.addr, "o1", "alice", "pw-alice").await, ACCEPTED, "{}", up.log());
    assert_eq!(connack(up.addr, "o1", "carol", "pw-carol").await, ACCEPTED);

    db.stop();
    let _restart_on_failure = Restart(db);
    let t = Instant::now();
    let code = connack(up.addr, "o2", "alice", "pw-alice").await;
    let took = t.elapsed();
    assert_eq!(code, UNAVAILABLE, "database down: server unavailable, never bad credentials\n{}", up.log());
    assert!(took < Duration::from_millis(3500), "took {took:?} (connect_timeout 1s)");
    // `db` fails first and denies (fail closed) even for carol.
    assert_eq!(connack(up.addr, "o3", "carol", "pw-carol").await, UNAVAILABLE);
    assert_eq!(sys_fresh(up.addr, "auth/default/db/health", Duration::from_secs(5)).await, "0");

    // A broker started while the database is down starts anyway.
    let down = start(&config.replace("chain = [\"anon\", \"db\", ", "chain = [\"anon\", "));
    assert!(down.wait_log("backend is unreachable", Duration::from_secs(5)), "no unreachable warning:\n{}", down.log());
    // `lenient` fails and is skipped (on_error = ignore): carol passes.
    assert_eq!(connack(down.addr, "o4", "carol", "pw-carol").await, ACCEPTED, "{}", down.log());
    assert_eq!(connack(down.addr, "o5", "bob", "pw-bob").await, BAD_CREDENTIALS, "lenient skipped: no_match");

    db.start();
    let again = eventually(Duration::from_secs(10), ACCEPTED, || connack(up.addr, "o6", "alice", "pw-alice")).await;
    assert_eq!(again, ACCEPTED, "no recovery after the database came back\n{}", up.log());
    assert_eq!(connack(up.addr, "o7", "alice", "wrong").await, BAD_CREDENTIALS);
    assert_eq!(sys_fresh(up.addr, "auth/default/db/health", Duration::from_secs(5)).await, "1");
    let again = eventually(Duration::from_secs(10), ACCEPTED, || connack(down.addr, "o8", "bob", "pw-bob")).await;
    assert_eq!(again, ACCEPTED, "the broker started while down did not recover\n{}", down.log());
    assert!(up.log().contains("backend is reachable again"), "{}", up.log());
}

/// A broken provider table stops the broker at start with an error that
/// names the key, and never shows a password.
pub async fn config_errors_name_the_key(db: &Db) {
    let kind = db.name();
    let url = db.url("portcullis", "emqx");
    let with_password = url.replacen("portcullis@", "portcullis:hunter2@", 1);
    for (table, want) in [
        (
            format!("[auth.{kind}.db]\nurl = \"{url}\"\npool = {{ size = 0 }}\n"),
            format!("auth.{kind}.db: pool.size: must be at least 1"),
        ),
        (format!("[acl.{kind}.db]\nurl = \"{with_password}\"\n"), format!("acl.{kind}.db: url: contains a password")),
        (
            format!("[auth.{kind}.db]\nurl = \"{url}\"\nquery = \"SELECT * FROM u WHERE n = ${{usrname}}\"\n"),
            format!("auth.{kind}.db: query: unknown placeholder ${{usrname}}"),
        ),
        (
            format!("[auth.{kind}.db]\nurl = \"{url}\"\npassword = {{ env = \"PORTCULLIS_TEST_UNSET_PW\" }}\n"),
            format!("auth.{kind}.db: password: environment variable PORTCULLIS_TEST_UNSET_PW is not set"),
        ),
        (
            format!("[auth.{kind}.db]\nurl = \"{url}\"\npassword_hash = {{ algo = \"pbkdf2\" }}\n"),
            format!("auth.{kind}.db: password_hash.iterations: required"),
        ),
        (
            format!("[auth.{kind}.db]\nurl = \"{url}\"\ntls = {{ enable = true, cert_file = \"/x\" }}\n"),
            format!("auth.{kind}.db: tls.ca_file: required"),
        ),
    ] {
        let section = if table.starts_with("[acl") { "acl" } else { "auth" };
        let config =
            format!("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n[{section}]\nchain = [\"db\"]\n{table}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(&path).env_remove("PORTCULLIS_TEST_UNSET_PW");
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with:\n{table}");
        assert!(err.contains(&want), "want {want:?} in:\n{err}");
        assert!(!err.contains("hunter2"), "the error shows the password:\n{err}");
    }
}

/// An unknown user costs a hash verification like a wrong password
/// (argon2-1's argon2id, m=8192 t=1), and gets the same CONNACK. Before,
/// an unknown user cost one query and nothing else.
pub async fn unknown_users_cost_a_hash(db: &Db) {
    let _shared = LOCK.read().await;
    let b = start(&format!("[auth]\nchain = [\"db\"]\n{}", db.table("auth", "db", "emqx", "")));
    let (wrong, unknown) = portcullis_tests::backend::latency_wrong_vs_unknown(b.addr, "argon2-1", 7, 0x86).await;
    portcullis_tests::backend::assert_unknown_users_cost_a_hash(wrong, unknown);
}
