//! MQTT 5 enhanced authentication end to end: SCRAM-SHA-256 and
//! SCRAM-SHA-512 against an independent client implementation (scramp from
//! PyPI, driven through tests/scram_client.py: it computes every client
//! message and checks the server's signature; this file only carries them
//! in raw MQTT 5 CONNECT / AUTH packets), the exchange's protocol and
//! bounds, and re-authentication (AUTH 0x19).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_core::codec::{Auth, ConnAck, Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::kit::{connect_packet, opts, subscribe_with, sys_fresh};
use portcullis_tests::{binary, Broker, Raw};

const CONTINUE: u8 = 0x18;
const REAUTH: u8 = 0x19;

/// A Python that has scramp (`pip install scramp`; scripts/test.sh installs it).
fn python() -> String {
    let candidates: Vec<String> = std::env::var("PORTCULLIS_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()])
        .collect();
    for py in &candidates {
        let ok = Command::new(py).args(["-c", "import scramp"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return py.clone();
        }
    }
    panic!("no Python with scramp among {candidates:?}: python3 -m pip install scramp");
}

/// scramp playing the client of one SCRAM conversation.
struct ScramPy {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ScramPy {
    fn start(method: &str, user: &str, password: &str) -> ScramPy {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scram_client.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([method, user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn scram_client.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        ScramPy { child, stdin, stdout }
    }

    /// The helper's next line (it answers at once, or exits: EOF).
    fn line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).expect("read scram_client.py");
        s.trim_end().to_string()
    }

    fn tell(&mut self, msg: &[u8]) {
        self.stdin.write_all(msg).and_then(|()| self.stdin.write_all(b"\n")).expect("write scram_client.py");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for ScramPy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn auth(reason: u8, method: &str, data: &[u8]) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.to_string()),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..Properties::default()
        },
    })
}

/// How a SCRAM CONNECT ended.
#[derive(Debug)]
struct Attempt {
    ack: ConnAck,
    /// scramp's verdict on the server-final in the CONNACK (success only).
    verified: Option<String>,
}

/// A SCRAM login, every client message from scramp: CONNECT (client-first)
/// → AUTH 0x18 (server-first) → AUTH 0x18 (client-final) → CONNACK.
async fn scram_connect(addr: SocketAddr, client_id: &str, method: &str, user: &str, password: &str) -> (Raw, Attempt) {
    let mut py = ScramPy::start(method, user, password);
    let first = py.line();
    let mut c = connect_packet(ProtocolVersion::V5, client_id, true);
    c.properties.authentication_method = Some(method.to_string());
    c.properties.authentication_data = Some(Bytes::from(first.into_bytes()));
    let mut raw = Raw::connect(addr).await;
    raw.version = ProtocolVersion::V5;
    raw.send_packet(&Packet::Connect(Box::new(c))).await;
    let server_first = match raw.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, CONTINUE, "{a:?}");
            assert_eq!(a.properties.authentication_method.as_deref(), Some(method));
            a.properties.authentication_data.expect("server-first")
        }
        Some(Packet::ConnAck(ack)) => return (raw, Attempt { ack, verified: None }),
        other => panic!("expected AUTH, got {other:?}"),
    };
    py.tell(&server_first);
    let client_final = py.line();
    assert!(!client_final.starts_with("error"), "scramp refused the server-first: {client_final}");
    raw.send_packet(&auth(CONTINUE, method, client_final.as_bytes())).await;
    let ack = match raw.recv().await {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let verified = (ack.code == 0).then(|| {
        assert_eq!(ack.properties.authentication_method.as_deref(), Some(method));
        py.tell(ack.properties.authentication_data.as_deref().expect("server-final in the CONNACK"));
        py.line()
    });
    (raw, Attempt { ack, verified })
}

/// Runs the binary's `users` / `acl` command (password on stdin), bounded.
fn users(args: &[&str], stdin: &str) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < end, "portcullis {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A built-in store with `alice` / `wonderland` (and `root` / `toor`, a
/// superuser), and a broker serving SCRAM-SHA-256 and SCRAM-SHA-512 from it.
struct Setup {
    _dir: tempfile::TempDir,
    db: String,
    broker: Broker,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/portcullis.db").display().to_string();
    users(&["users", "add", "--db", &db, "alice"], "wonderland\n");
    users(&["users", "add", "--db", &db, "--superuser", "root"], "toor\n");
    users(
        &[
            "acl",
            "add",
            "--db",
            &db,
            "--username",
            "alice",
            "--permission",
            "allow",
            "--action",
            "all",
            "--topic",
            "t/#",
        ],
        "",
    );
    let sys = ["--client-id", "sys-reader-stats-clients-count", "--permission", "allow", "--action", "subscribe"];
    users(&[&["acl", "add", "--db", &db][..], &sys[..], &["--topic", "$SYS/#"][..]].concat(), "");
    // Anonymous loopback clients (the $SYS reader) get in too.
    let broker = Broker::start(&format!(
        "[auth]\nchain = [\"users\", \"local\"]\n[auth.anonymous.local]\n[auth.builtin.users]\npath = \"{db}\"\n\
         [auth.scram.s256]\nmechanism = \"scram\"\nalgorithm = \"sha256\"\n[auth.scram.s256.builtin]\npath = \"{db}\"\n\
         [auth.scram.s512]\nalgorithm = \"sha512\"\niteration_count = 8192\n[auth.scram.s512.builtin]\npath = \"{db}\"\n\
         [acl]\nchain = [\"rules\"]\n[acl.builtin.rules]\npath = \"{db}\"\n{extra}"
    ));
    Setup { _dir: dir, db, broker }
}

/// The right password gets in over both methods, the server proves it
/// knows the credential (scramp verifies the server-final), and the
/// session works; the username is the SCRAM identity.
#[tokio::test]
async fn scram_right_password_both_algorithms() {
    let s = setup("");
    for (i, method) in ["SCRAM-SHA-256", "SCRAM-SHA-512"].iter().enumerate() {
        let (mut raw, a) = scram_connect(s.broker.addr, &format!("scram-ok-{i}"), method, "alice", "wonderland").await;
        assert_eq!(a.ack.code, 0, "{method}: {a:?}");
        assert_eq!(a.verified.as_deref(), Some("verified"), "{method}");
        let ack = subscribe_with(&mut raw, 1, &[("t/#", opts(QoS::AtLeastOnce))], Properties::default()).await;
        assert_eq!(ack.return_codes, vec![1], "{method}");
    }
    let log = s.broker.log();
    assert!(!log.contains("wonderland"), "a password in the log");
}

/// A wrong password, an unknown user and a CONNECT whose User Name is not
/// the SCRAM user get CONNACK 0x87; an unknown method gets 0x8C.
#[tokio::test]
async fn scram_refusals() {
    let s = setup("[auth.guard]\nenabled = false\n");
    for method in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (_, a) = scram_connect(s.broker.addr, "scram-bad", method, "alice", "wrong").await;
        assert_eq!(a.ack.code, 0x87, "{method} wrong password: {a:?}");
        let (_, a) = scram_connect(s.broker.addr, "scram-nobody", method, "nobody", "wonderland").await;
        assert_eq!(a.ack.code, 0x87, "{method} unknown user: {a:?}");
    }
    // An unknown method: refused at once, no exchange.
    let mut py = ScramPy::start("SCRAM-SHA-1", "alice", "wonderland");
    let mut c = connect_packet(ProtocolVersion::V5, "scram-sha1", true);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    c.properties.authentication_data = Some(Bytes::from(py.line().into_bytes()));
    let (_, ack) = portcullis_tests::kit::open(s.broker.addr, c).await;
    assert_eq!(ack.code, 0x8C, "{ack:?}");
    // Channel binding asked for: refused.
    let mut c = connect_packet(ProtocolVersion::V5, "scram-cb", true);
    c.properties.authentication_method = Some("SCRAM-SHA-256".into());
    c.properties.authentication_data = Some(Bytes::from_static(b"p=tls-server-end-point,,n=alice,r=abcdef"));
    let (_, ack) = portcullis_tests::kit::open(s.broker.addr, c).await;
    assert_eq!(ack.code, 0x87, "{ack:?}");
}

/// A client that stops mid-exchange is closed at the connect timeout, and
/// nothing stays held: the connection count goes back, and the per-address
/// handshake places it took are free again (with 2 places, 2 stalled
/// clients and then a third login succeed).
#[tokio::test]
async fn stalled_exchange_times_out_and_frees_everything() {
    let s = setup(
        "[limits]\nconnect_timeout = \"1s\"\nmax_handshakes_per_ip = 2\n[sys]\ninterval = \"1s\"\n\
         [auth.guard]\nenabled = false\n",
    );
    let addr = s.broker.addr;
    let mut stalled = Vec::new();
    for i in 0..2 {
        let mut py = ScramPy::start("SCRAM-SHA-256", "alice", "wonderland");
        let mut c = connect_packet(ProtocolVersion::V5, &format!("stall-{i}"), true);
        c.properties.authentication_method = Some("SCRAM-SHA-256".into());
        c.properties.authentication_data = Some(Bytes::from(py.line().into_bytes()));
        let mut raw = Raw::connect(addr).await;
        raw.version = ProtocolVersion::V5;
        raw.send_packet(&Packet::Connect(Box::new(c))).await;
        assert!(matches!(raw.recv().await, Some(Packet::Auth(a)) if a.reason == CONTINUE));
        stalled.push(raw);
    }
    // Never answered: both are closed within the timeout (and a margin).
    let started = Instant::now();
    for raw in &mut stalled {
        let seen = raw.expect_closed(Duration::from_secs(5)).await;
        assert!(seen.iter().all(|p| !matches!(p, Packet::ConnAck(a) if a.code == 0)), "{seen:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The places are free: a login from the same address gets in.
    let (raw, a) = scram_connect(addr, "after-stall", "SCRAM-SHA-256", "alice", "wonderland").await;
    assert_eq!(a.ack.code, 0, "{a:?}");
    drop(raw);
    // And the connection gauge went back: only the $SYS reader is counted.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let count = sys_fresh(addr, "stats/clients/count", Duration::from_secs(5)).await;
        if count == "1" {
            break;
        }
        assert!(Instant::now() < end, "connections stay at {count}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The exchange's protocol: another packet than AUTH 0x18 mid-exchange,
/// or AUTH naming another method, is a protocol error (CONNACK 0x82).
#[tokio::test]
async fn out_of_protocol_exchange_is_refused() {
    let s = setup("[auth.guard]\nenabled = false\n");
    for wrong in [auth(CONTINUE, "SCRAM-SHA-512", b"c=biws"), auth(REAUTH, "SCRAM-SHA-256", b"c=biws"), Packet::PingReq]
    {
        let mut py = ScramPy::start("SCRAM-SHA-256", "alice", "wonderland");
        let mut c = connect_packet(ProtocolVersion::V5, "proto", true);
        c.properties.authentication_method = Some("SCRAM-SHA-256".into());
        c.properties.authentication_data = Some(Bytes::from(py.line().into_bytes()));
        let mut raw = Raw::connect(s.broker.addr).await;
        raw.version = ProtocolVersion::V5;
        raw.send_packet(&Packet::Connect(Box::new(c))).await;
        assert!(matches!(raw.recv().await, Some(Packet::Auth(a)) if a.reason == CONTINUE));
        raw.send_packet(&wrong).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0x82, "{wrong:?}: {a:?}"),
            other => panic!("{wrong:?}: expected CONNACK, got {other:?}"),
        }
    }
}

/// Re-authenticates with SCRAM on an established connection: AUTH 0x19
/// (client-first) → AUTH 0x18 (server-first) → AUTH 0x18 (client-final) →
/// AUTH 0x00 (server-final, verified by scramp). `Err` with the packet the
/// server answered instead (its DISCONNECT), or `None` for a close.
async fn scram_reauth(raw: &mut Raw, method: &str, user: &str, password: &str) -> Result<(), Option<Packet>> {
    let mut py = ScramPy::start(method, user, password);
    raw.send_packet(&auth(REAUTH, method, py.line().as_bytes())).await;
    let server_first = match raw.recv().await {
        Some(Packet::Auth(a)) if a.reason == CONTINUE => a.properties.authentication_data.expect("server-first"),
        other => return Err(other),
    };
    py.tell(&server_first);
    let client_final = py.line();
    raw.send_packet(&auth(CONTINUE, method, client_final.as_bytes())).await;
    match raw.recv().await {
        Some(Packet::Auth(a)) if a.reason == 0 => {
            assert_eq!(a.properties.authentication_method.as_deref(), Some(method));
            py.tell(a.properties.authentication_data.as_deref().expect("server-final in AUTH 0x00"));
            assert_eq!(py.line(), "verified", "scramp checks the server-final");
            Ok(())
        }
        other => Err(other),
    }
}

/// Sets a user's superuser flag behind the broker's back (the store file).
async fn set_superuser(db: &str, user: &str, on: bool) {
    use sqlx::{ConnectOptions, Connection};
    let mut c = sqlx::sqlite::SqliteConnectOptions::new().filename(db).connect().await.expect("open");
    sqlx::query("UPDATE users SET is_superuser = ? WHERE username = ?")
        .bind(on)
        .bind(user)
        .execute(&mut c)
        .await
        .expect("update");
    c.close().await.expect("close");
}

fn sub_code(ack: &portcullis_core::codec::SubAck) -> u8 {
    ack.return_codes[0]
}

/// A successful re-authentication answers AUTH 0x00 with the server's
/// signature, keeps the connection, and puts the new identity state in
/// force: alice, made a superuser in the store after she connected, may
/// subscribe to `secret/#` only once she re-authenticated (the old state
/// held until then, even after the store changed). Both methods; twice
/// in a row (one exchange at a time, not one per connection).
#[tokio::test]
async fn reauth_success_applies_the_new_identity() {
    let s = setup("[auth.guard]\nenabled = false\n");
    for (i, method) in ["SCRAM-SHA-256", "SCRAM-SHA-512"].iter().enumerate() {
        set_superuser(&s.db, "alice", false).await;
        let (mut raw, a) = scram_connect(s.broker.addr, &format!("reauth-{i}"), method, "alice", "wonderland").await;
        assert_eq!(a.ack.code, 0, "{a:?}");
        let ack = subscribe_with(&mut raw, 1, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
        assert_eq!(sub_code(&ack), 0x87, "{method}: not a superuser yet");
        set_superuser(&s.db, "alice", true).await;
        // The store's change is seen (caches purged) within its poll; the
        // connection still holds the identity it authenticated with.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let ack = subscribe_with(&mut raw, 2, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
        assert_eq!(sub_code(&ack), 0x87, "{method}: the old identity holds until re-authentication");
        scram_reauth(&mut raw, method, "alice", "wonderland").await.expect("re-authenticated");
        let ack = subscribe_with(&mut raw, 3, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
        assert_eq!(sub_code(&ack), 0, "{method}: the new identity is in force");
        // Again, and back: a second re-authentication on one connection.
        set_superuser(&s.db, "alice", false).await;
        scram_reauth(&mut raw, method, "alice", "wonderland").await.expect("re-authenticated again");
        let ack = subscribe_with(&mut raw, 4, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
        assert_eq!(sub_code(&ack), 0x87, "{method}: superuser withdrawn by the second re-authentication");
        // Still connected: a ping is answered.
        raw.send_packet(&Packet::PingReq).await;
        assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
    }
    assert!(s.broker.log().contains("client re-authenticated"));
}

/// A re-authentication that fails (wrong password) closes with DISCONNECT
/// 0x87; one that names another method than the CONNECT's is a protocol
/// error (0x82, MQTT-4.12.1-1), and so are AUTH 0x18 with no
/// re-authentication in progress and AUTH from a client that connected
/// without a method.
#[tokio::test]
async fn reauth_refusals_disconnect() {
    let s = setup("[auth.guard]\nenabled = false\n");
    let addr = s.broker.addr;
    let disconnect_code = |r: Result<(), Option<Packet>>| match r {
        Err(Some(Packet::Disconnect(d))) => d.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    };
    for method in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (mut raw, a) = scram_connect(addr, "reauth-bad", method, "alice", "wonderland").await;
        assert_eq!(a.ack.code, 0);
        assert_eq!(disconnect_code(scram_reauth(&mut raw, method, "alice", "wrong").await), 0x87, "{method}");
        raw.expect_closed(Duration::from_secs(5)).await;

        let (mut raw, _) = scram_connect(addr, "reauth-other", method, "alice", "wonderland").await;
        let other = if method == "SCRAM-SHA-256" { "SCRAM-SHA-512" } else { "SCRAM-SHA-256" };
        assert_eq!(disconnect_code(scram_reauth(&mut raw, other, "alice", "wonderland").await), 0x82, "{method}");
        raw.expect_closed(Duration::from_secs(5)).await;

        let (mut raw, _) = scram_connect(addr, "reauth-seq", method, "alice", "wonderland").await;
        raw.send_packet(&auth(CONTINUE, method, b"c=biws")).await;
        match raw.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x82),
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
        // Another user's credentials are no renewal.
        let (mut raw, _) = scram_connect(addr, "reauth-root", method, "alice", "wonderland").await;
        assert_eq!(disconnect_code(scram_reauth(&mut raw, method, "root", "toor").await), 0x87, "{method}");
    }
    let mut c = connect_packet(ProtocolVersion::V5, "plain", true);
    c.username = Some("alice".into());
    c.password = Some(Bytes::from_static(b"wonderland"));
    let (mut raw, ack) = portcullis_tests::kit::open(addr, c).await;
    assert_eq!(ack.code, 0);
    raw.send_packet(&auth(REAUTH, "SCRAM-SHA-256", b"n,,n=alice,r=abc")).await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x82),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

/// A CONNECT with the token method: User Name `user`, the token as
/// Authentication Data.
async fn token_connect(addr: SocketAddr, client_id: &str, user: &str, token: &[u8]) -> (Raw, ConnAck) {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, true);
    c.username = Some(user.into());
    c.properties.authentication_method = Some("JWT".into());
    c.properties.authentication_data = Some(Bytes::copy_from_slice(token));
    portcullis_tests::kit::open(addr, c).await
}

/// The single-step token method (`[auth.enhanced_token.<name>]`, method
/// `JWT` by default): its Authentication Data is checked as the password
/// by the listener's auth chain (here the built-in store stands in for a
/// token provider), at CONNECT and at AUTH 0x19, so a session is renewed
/// without a reconnect and the renewal's identity state (superuser) is
/// put in force; a bad token at CONNECT is refused like a bad password
/// (0x86) and at re-authentication closes with 0x87.
#[tokio::test]
async fn token_method_connects_and_renews() {
    let s = setup("[auth.guard]\nenabled = false\n[auth.enhanced_token.jwt]\n");
    let addr = s.broker.addr;
    set_superuser(&s.db, "alice", false).await;
    let (_, ack) = token_connect(addr, "tok-bad", "alice", b"not-the-token").await;
    assert_eq!(ack.code, 0x86, "{ack:?}");
    let (mut raw, ack) = token_connect(addr, "tok", "alice", b"wonderland").await;
    assert_eq!(ack.code, 0, "{ack:?}");
    assert_eq!(ack.properties.authentication_method.as_deref(), Some("JWT"));
    let ack = subscribe_with(&mut raw, 1, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
    assert_eq!(sub_code(&ack), 0x87);
    set_superuser(&s.db, "alice", true).await;
    // The store's change purges the auth cache within its poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.send_packet(&auth(REAUTH, "JWT", b"wonderland")).await;
    match raw.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!((a.reason, a.properties.authentication_method.as_deref()), (0, Some("JWT")))
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    let ack = subscribe_with(&mut raw, 2, &[("secret/#", opts(QoS::AtMostOnce))], Properties::default()).await;
    assert_eq!(sub_code(&ack), 0, "the renewal's superuser flag is in force");
    raw.send_packet(&auth(REAUTH, "JWT", b"expired-token")).await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, 0x87),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    raw.expect_closed(Duration::from_secs(5)).await;
}

/// A stored credential as scramp derives it: `(salt, StoredKey, ServerKey)`
/// in hex.
pub fn scramp_credential(method: &str, password: &str, iterations: u32) -> (String, String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scram_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--make", method, password, &iterations.to_string()])
        .output()
        .expect("scram_client.py --make");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let parts: Vec<&str> = text.split_whitespace().collect();
    (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
}

/// An HTTP endpoint in EMQX's REST-based SCRAM shape: POST
/// `{"username": …}` → 200 with hex `salt`, `stored_key`, `server_key` and
/// `is_superuser` for the users it knows, 404 for others, 503 for
/// `broken`. Answers until dropped.
struct ScramEndpoint {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ScramEndpoint {
    async fn start(users: Vec<(String, serde_json::Value)>) -> ScramEndpoint {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let users = std::sync::Arc::new(users);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let users = std::sync::Arc::clone(&users);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let users = std::sync::Arc::clone(&users);
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let name = asked["username"].as_str().unwrap_or_default().to_string();
                            let (status, answer) = match users.iter().find(|(u, _)| *u == name) {
                                _ if name == "broken" => (503, "{}".to_string()),
                                Some((_, v)) => (200, v.to_string()),
                                None => (404, "{}".to_string()),
                            };
                            let resp = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                                .expect("response");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScramEndpoint { addr, task }
    }
}

impl Drop for ScramEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SCRAM with credentials from an HTTP endpoint in EMQX's shape (made by
/// scramp, so the broker derives nothing itself): the right password gets
/// in (is_superuser honoured), a wrong one and an unknown user get 0x87,
/// an endpoint failure gets 0x88 (never "wrong password"); both methods.
#[tokio::test]
async fn scram_credentials_from_http() {
    for (method, alg) in [("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-512", "sha512")] {
        let (salt, stored, server) = scramp_credential(method, "h-pass", 4096);
        let user =
            serde_json::json!({ "salt": salt, "stored_key": stored, "server_key": server, "is_superuser": true });
        let endpoint = ScramEndpoint::start(vec![("hank".to_string(), user)]).await;
        let b = Broker::start(&format!(
            "[auth.guard]\nenabled = false\n[auth.scram.web]\nalgorithm = \"{alg}\"\n\
             [auth.scram.web.http]\nurl = \"http://{}/scram\"\n[acl]\nchain = [\"sys\"]\n[acl.defaults.sys]\n",
            endpoint.addr
        ));
        let (mut raw, a) = scram_connect(b.addr, "http-ok", method, "hank", "h-pass").await;
        assert_eq!((a.ack.code, a.verified.as_deref()), (0, Some("verified")), "{method}");
        // A superuser: even `#` and `$SYS/#` (which the defaults refuse to
        // others) are granted.
        let ack = subscribe_with(&mut raw, 1, &[("#", opts(QoS::AtMostOnce))], Properties::default()).await;
        assert_eq!(sub_code(&ack), 0, "{method}: is_superuser from the endpoint");
        let (_, a) = scram_connect(b.addr, "http-bad", method, "hank", "wrong").await;
        assert_eq!(a.ack.code, 0x87, "{method}");
        let (_, a) = scram_connect(b.addr, "http-nobody", method, "nobody", "h-pass").await;
        assert_eq!(a.ack.code, 0x87, "{method}");
        let (_, a) = scram_connect(b.addr, "http-broken", method, "broken", "h-pass").await;
        assert_eq!(a.ack.code, 0x88, "{method}: an outage is not a wrong password");
    }
}

/// SCRAM guesses count with the brute-force guard like wrong passwords:
/// after `max_failures` refused proofs for alice from this address, even
/// her right password is refused (CONNACK 0x8A banned), while another user
/// from the same address still gets in.
#[tokio::test]
async fn scram_guesses_are_counted_by_the_guard() {
    let s = setup("[auth.guard]\nmax_failures = 3\nwindow = \"60s\"\nban = \"60s\"\n");
    for i in 0..3 {
        let (_, a) = scram_connect(s.broker.addr, &format!("guess-{i}"), "SCRAM-SHA-256", "alice", "guess").await;
        assert_eq!(a.ack.code, 0x87, "guess {i}");
    }
    let (_, a) = scram_connect(s.broker.addr, "guess-right", "SCRAM-SHA-256", "alice", "wonderland").await;
    assert_eq!(a.ack.code, 0x8A, "banned after 3 failures: {a:?}");
    let (_, a) = scram_connect(s.broker.addr, "other-user", "SCRAM-SHA-512", "root", "toor").await;
    assert_eq!(a.ack.code, 0, "{a:?}");
}
