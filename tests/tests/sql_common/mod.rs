//! What `backend_postgres.rs` and `backend_mysql.rs` share: the server
//! each runs against ([`Db`], from the variables `scripts/services.sh`
//! exports), MQTT helpers, and the scenarios in [`scenarios`], which both
//! files run against their database.
//!
//! Most scenarios only read; the ones that kill connections or stop the
//! server take [`LOCK`] for writing, so no other test of the same binary
//! is using the server meanwhile (each binary has its own server).

#![allow(dead_code)]

pub mod scenarios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_core::codec::{Packet, ProtocolVersion, QoS};
use portcullis_tests::kit::{connect_packet, opts, publish, publish_complete, subscribe_with};
use portcullis_tests::{binary, services, Broker, Raw};

pub const V3: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// Readers share the server; a test that disrupts it writes.
pub static LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mysql,
}

/// The database server a test binary runs against.
#[derive(Debug, Clone)]
pub struct Db {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    /// Environment variable holding the users' password (the broker reads
    /// it as `password = { env = … }`).
    pub password_var: &'static str,
    pub password: String,
    pub tls_dir: PathBuf,
    start: String,
    stop: String,
    /// PostgreSQL: the superuser URL; MySQL: the root option file.
    admin: String,
}

impl Db {
    pub fn postgres() -> Option<Db> {
        let [host, port, password, admin, start, stop, tls] = services::get_all([
            "PORTCULLIS_TEST_PG_HOST",
            "PORTCULLIS_TEST_PG_PORT",
            "PORTCULLIS_TEST_PG_PASSWORD",
            "PORTCULLIS_TEST_PG_ADMIN_URL",
            "PORTCULLIS_TEST_PG_START",
            "PORTCULLIS_TEST_PG_STOP",
            "PORTCULLIS_TEST_TLS_DIR",
        ])?;
        Some(Db {
            kind: Kind::Postgres,
            host,
            port: port.parse().expect("PORTCULLIS_TEST_PG_PORT"),
            password_var: "PORTCULLIS_TEST_PG_PASSWORD",
            password,
            tls_dir: tls.into(),
            start,
            stop,
            admin,
        })
    }

    pub fn mysql() -> Option<Db> {
        let [host, port, password, admin, start, stop, tls] = services::get_all([
            "PORTCULLIS_TEST_MYSQL_HOST",
            "PORTCULLIS_TEST_MYSQL_PORT",
            "PORTCULLIS_TEST_MYSQL_PASSWORD",
            "PORTCULLIS_TEST_MYSQL_ADMIN_CNF",
            "PORTCULLIS_TEST_MYSQL_START",
            "PORTCULLIS_TEST_MYSQL_STOP",
            "PORTCULLIS_TEST_TLS_DIR",
        ])?;
        Some(Db {
            kind: Kind::Mysql,
            host,
            port: port.parse().expect("PORTCULLIS_TEST_MYSQL_PORT"),
            password_var: "PORTCULLIS_TEST_MYSQL_PASSWORD",
            password,
            tls_dir: tls.into(),
            start,
            stop,
            admin,
        })
    }

    /// The provider type in the config (`postgres`, `mysql`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
        }
    }

    /// A connection URL without password.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("{}://{user}@{}:{}/{database}", self.name(), self.host, self.port)
    }

    /// A provider table: `[<section>.<kind>.<name>]` connecting as
    /// `portcullis` to `database`, then `extra` lines.
    pub fn table(&self, section: &str, name: &str, database: &str, extra: &str) -> String {
        self.table_as(section, name, "portcullis", database, extra)
    }

    /// [`Db::table`] for another database user.
    pub fn table_as(&self, section: &str, name: &str, user: &str, database: &str, extra: &str) -> String {
        format!(
            "[{section}.{kind}.{name}]\nurl = \"{url}\"\npassword = {{ env = \"{var}\" }}\n{extra}\n",
            kind = self.name(),
            url = self.url(user, database),
            var = self.password_var,
        )
    }

    /// The test CA's file `name` (ca.pem, client.pem, client.key).
    pub fn tls_file(&self, name: &str) -> String {
        self.tls_dir.join(name).display().to_string()
    }

    /// Runs SQL as the database superuser; returns its output (tab
    /// separated, no headers). Panics when it fails.
    pub fn admin_sql(&self, sql: &str) -> String {
        let mut cmd = match self.kind {
            Kind::Postgres => {
                let mut c = Command::new("psql");
                c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", &self.admin, "-c", sql]);
                c
            }
            Kind::Mysql => {
                let mut c = Command::new("mariadb");
                c.arg(format!("--defaults-file={}", self.admin)).args(["-N", "-B", "-e", sql]);
                c
            }
        };
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        assert!(out.status.success(), "admin SQL failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Closes every server-side session of database user `portcullis`
    /// (`pg_terminate_backend` / `KILL`); returns how many there were.
    pub fn kill_sessions(&self) -> usize {
        match self.kind {
            Kind::Postgres => self
                .admin_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'portcullis' \
                     AND pid <> pg_backend_pid()",
                )
                .lines()
                .filter(|l| l.trim() == "t")
                .count(),
            Kind::Mysql => {
                let ids = self.admin_sql("SELECT id FROM information_schema.processlist WHERE user = 'portcullis'");
                let ids: Vec<&str> = ids.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                for id in &ids {
                    // A session may end on its own meanwhile: ignore errors.
                    let mut c = Command::new("mariadb");
                    c.arg(format!("--defaults-file={}", self.admin)).args(["-e", &format!("KILL {id}")]);
                    let _ = run_bounded(&mut c, Duration::from_secs(10));
                }
                ids.len()
            }
        }
    }

    /// Makes the server close sessions idle for `secs` (`None`: the
    /// default again). MySQL applies it to new sessions only.
    pub fn set_idle_limit(&self, secs: Option<u32>) {
        match (self.kind, secs) {
            (Kind::Postgres, Some(s)) => {
                self.admin_sql(&format!("ALTER SYSTEM SET idle_session_timeout = '{s}s'"));
                self.admin_sql("SELECT pg_reload_conf()");
            }
            (Kind::Postgres, None) => {
                self.admin_sql("ALTER SYSTEM RESET idle_session_timeout");
                self.admin_sql("SELECT pg_reload_conf()");
            }
            (Kind::Mysql, Some(s)) => {
                self.admin_sql(&format!("SET GLOBAL wait_timeout = {s}"));
            }
            (Kind::Mysql, None) => {
                self.admin_sql("SET GLOBAL wait_timeout = 28800");
            }
        }
    }

    /// Stops the server (it refuses connections until [`Db::start`]).
    pub fn stop(&self) {
        let out = run_bounded(Command::new("bash").arg(&self.stop), Duration::from_secs(30));
        assert!(out.status.success(), "stopping {}: {}", self.name(), String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the server again and waits until it accepts connections.
    pub fn start(&self) {
        let out = run_bounded(Command::new("bash").arg(&self.start), Duration::from_secs(30));
        assert!(out.status.success(), "starting {}: {}", self.name(), String::from_utf8_lossy(&out.stderr));
    }
}

/// Restarts the server when dropped, so a test that stopped it and then
/// failed still leaves it running for the others.
pub struct Restart<'a>(pub &'a Db);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = run_bounded(Command::new("bash").arg(&self.0.start), Duration::from_secs(30));
        }
    }
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("output"),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!("{cmd:?} did not finish within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// The settings every test broker shares: no brute-force guard (tests
/// fail logins on purpose), no caches (each CONNECT and check reaches the
/// database), `$SYS` every second.
pub const COMMON: &str = "\
[sys]
interval = \"1s\"
[auth.guard]
enabled = false
[auth.cache]
max_entries = 0
[acl.cache]
max_entries = 0
";

/// A password file with `users` (name, password), written by the real
/// `portcullis passwd`.
pub fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    for (user, pw) in users {
        let mut cmd = Command::new(binary());
        cmd.arg("passwd").arg(&path).arg(user).args(["--hash", "pbkdf2"]);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("portcullis passwd");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(format!("{pw}\n").as_bytes()).expect("write");
        assert!(child.wait().expect("wait").success(), "portcullis passwd {user}");
    }
    path
}

/// Sends a CONNECT; the CONNACK code and the client (`None` code when the
/// broker closed the connection instead).
pub async fn try_connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> (Raw, Option<u8>) {
    let mut c = connect_packet(version, client_id, true);
    c.username = username.map(str::to_string);
    c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    let mut raw = Raw::connect(addr).await;
    raw.version = version;
    raw.send_packet(&Packet::Connect(Box::new(c))).await;
    match raw.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Packet::ConnAck(a))) => (raw, Some(a.code)),
        Ok(None) => (raw, None),
        Ok(Some(p)) => panic!("{client_id}: expected CONNACK, got {p:?}"),
        Err(()) => panic!("{client_id}: no CONNACK within 10 s"),
    }
}

/// The CONNACK code for these credentials (3.1.1 codes).
pub async fn connack(addr: SocketAddr, client_id: &str, username: &str, password: &str) -> u8 {
    let (_, code) = try_connect(addr, V3, client_id, Some(username), Some(password)).await;
    code.unwrap_or_else(|| panic!("{client_id}: connection closed without CONNACK"))
}

/// An admitted 5.0 client (panics otherwise).
pub async fn login_v5(addr: SocketAddr, client_id: &str, username: &str, password: &str) -> Raw {
    let (raw, code) = try_connect(addr, V5, client_id, Some(username), Some(password)).await;
    assert_eq!(code, Some(0), "{client_id} ({username}) refused");
    raw
}

/// 3.1.1 CONNACK codes.
pub const ACCEPTED: u8 = 0;
pub const UNAVAILABLE: u8 = 3;
pub const BAD_CREDENTIALS: u8 = 4;
pub const NOT_AUTHORIZED: u8 = 5;

/// SUBACK code of one filter at `qos` (5.0: 0x87 when refused).
pub async fn sub(raw: &mut Raw, id: u16, filter: &str, qos: QoS) -> u8 {
    let ack = subscribe_with(raw, id, &[(filter, opts(qos))], Default::default()).await;
    ack.return_codes[0]
}

/// PUBACK reason of a QoS 1 publish, with every success code (0x10 "no
/// matching subscribers" included) as 0; 5.0 refusals stay 0x87.
pub async fn pub1(raw: &mut Raw, id: u16, topic: &str, retain: bool) -> u8 {
    match publish_complete(raw, publish(topic, QoS::AtLeastOnce, Some(id), b"x", retain)).await {
        code if code < 0x80 => 0,
        code => code,
    }
}

/// Polls `f` until it returns `want` or `within` passes; returns the last value.
pub async fn eventually<F, Fut>(within: Duration, want: u8, mut f: F) -> u8
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let end = Instant::now() + within;
    loop {
        let got = f().await;
        if got == want || Instant::now() >= end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `portcullis acl explain` against the broker's config: the line naming
/// the decision.
pub fn explain(broker: &Broker, args: &[&str]) -> String {
    let mut cmd = Command::new(binary());
    cmd.arg("--config").arg(&broker.config_path).args(["acl", "explain"]).args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("decision"),
        "acl explain {args:?} printed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
