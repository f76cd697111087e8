//! SCRAM enhanced authentication with credentials in PostgreSQL and
//! MariaDB (EMQX's columns: salt, stored_key, server_key, iterations,
//! is_superuser), against the real servers `scripts/services.sh` starts;
//! the credentials and every client message are made by scramp (PyPI)
//! through tests/scram_client.py.
//!
//! ```sh
//! scripts/services.sh postgres mariadb -- cargo test -p portcullis-tests --test enhanced_auth_sql
//! ```

mod sql_common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::Bytes;
use portcullis_core::codec::{Auth, Packet, Properties, ProtocolVersion};
use portcullis_tests::kit::connect_packet;
use portcullis_tests::{Broker, Raw};
use sql_common::{Db, Kind};

fn python() -> String {
    for py in ["python3", "/usr/bin/python3"] {
        if Command::new(py).args(["-c", "import scramp"]).output().is_ok_and(|o| o.status.success()) {
            return py.to_string();
        }
    }
    panic!("no Python with scramp: python3 -m pip install scramp");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scram_client.py")
}

/// `(salt, StoredKey, ServerKey)` in hex, derived by scramp.
fn credential(method: &str, password: &str, iterations: u32) -> [String; 3] {
    let out = Command::new(python())
        .arg(script())
        .args(["--make", method, password, &iterations.to_string()])
        .output()
        .expect("scram_client.py --make");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let v: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    [v[0].clone(), v[1].clone(), v[2].clone()]
}

/// A SCRAM login driven by scramp; the CONNACK code (and, on success,
/// that scramp verified the server's signature).
async fn login(addr: SocketAddr, method: &str, user: &str, password: &str) -> u8 {
    let mut child = Command::new(python())
        .arg(script())
        .args([method, user, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("scram_client.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = || {
        let mut s = String::new();
        stdout.read_line(&mut s).expect("read");
        s.trim_end().to_string()
    };
    let auth = |data: &[u8]| {
        Packet::Auth(Auth {
            reason: 0x18,
            properties: Properties {
                authentication_method: Some(method.into()),
                authentication_data: Some(Bytes::copy_from_slice(data)),
                ..Properties::default()
            },
        })
    };
    let mut c = connect_packet(ProtocolVersion::V5, "sql-scram", true);
    c.properties.authentication_method = Some(method.into());
    c.properties.authentication_data = Some(Bytes::from(line().into_bytes()));
    let mut raw = Raw::connect(addr).await;
    raw.version = ProtocolVersion::V5;
    raw.send_packet(&Packet::Connect(Box::new(c))).await;
    let code = match raw.recv().await {
        Some(Packet::Auth(a)) => {
            stdin.write_all(&a.properties.authentication_data.expect("server-first")).expect("w");
            stdin.write_all(b"\n").expect("w");
            stdin.flush().expect("flush");
            raw.send_packet(&auth(line().as_bytes())).await;
            match raw.recv().await {
                Some(Packet::ConnAck(ack)) if ack.code == 0 => {
                    stdin.write_all(&ack.properties.authentication_data.expect("server-final")).expect("w");
                    stdin.write_all(b"\n").expect("w");
                    stdin.flush().expect("flush");
                    assert_eq!(line(), "verified");
                    0
                }
                Some(Packet::ConnAck(ack)) => ack.code,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        Some(Packet::ConnAck(ack)) => ack.code,
        other => panic!("expected AUTH or CONNACK, got {other:?}"),
    };
    let _ = child.kill();
    let _ = child.wait();
    code
}

/// Creates `table` (EMQX's SCRAM columns: text hex salt and keys,
/// iterations, is_superuser) readable by the broker's database user, with
/// `sam`'s SHA-256 and SHA-512 credentials in two rows (`sam256`,
/// `sam512`) made by scramp at 4096 and 8192 iterations; returns the
/// database the table is in.
fn load(db: &Db, table: &str) -> &'static str {
    let [s1, k1, v1] = credential("SCRAM-SHA-256", "sql-pass", 4096);
    let [s2, k2, v2] = credential("SCRAM-SHA-512", "sql-pass", 8192);
    let rows = format!(
        "INSERT INTO {table} VALUES ('sam256', '{s1}', '{k1}', '{v1}', 4096, false), \
         ('sam512', '{s2}', '{k2}', '{v2}', 8192, false)"
    );
    let create = format!(
        "CREATE TABLE {table} (username varchar(64) PRIMARY KEY, salt varchar(256), stored_key varchar(256), \
         server_key varchar(256), iterations integer, is_superuser boolean)"
    );
    match db.kind {
        Kind::Postgres => {
            db.admin_sql(&format!(
                "DROP TABLE IF EXISTS {table}; {create}; {rows}; GRANT SELECT ON {table} TO portcullis"
            ));
            "postgres"
        }
        Kind::Mysql => {
            db.admin_sql(&format!("USE emqx; DROP TABLE IF EXISTS {table}; {create}; {rows}"));
            "emqx"
        }
    }
}

async fn scenario(db: Db) {
    let table = "scram_user_e2e";
    let database = load(&db, table);
    let query = format!("query = \"SELECT * FROM {table} WHERE username = ${{username}}\"");
    let b = Broker::start(&format!(
        "[auth.guard]\nenabled = false\n[auth.scram.s256]\nalgorithm = \"sha256\"\n{}\
         [auth.scram.s512]\nalgorithm = \"sha512\"\n{}",
        db.table("auth.scram", "s256", database, &query)
            .replace("[auth.scram.postgres.s256]", "[auth.scram.s256.postgres]")
            .replace("[auth.scram.mysql.s256]", "[auth.scram.s256.mysql]"),
        db.table("auth.scram", "s512", database, &query)
            .replace("[auth.scram.postgres.s512]", "[auth.scram.s512.postgres]")
            .replace("[auth.scram.mysql.s512]", "[auth.scram.s512.mysql]"),
    ));
    assert_eq!(login(b.addr, "SCRAM-SHA-256", "sam256", "sql-pass").await, 0, "{}", b.log());
    assert_eq!(login(b.addr, "SCRAM-SHA-512", "sam512", "sql-pass").await, 0);
    assert_eq!(login(b.addr, "SCRAM-SHA-256", "sam256", "wrong").await, 0x87);
    assert_eq!(login(b.addr, "SCRAM-SHA-512", "sam512", "wrong").await, 0x87);
    assert_eq!(login(b.addr, "SCRAM-SHA-256", "nobody", "sql-pass").await, 0x87);
    // A SHA-512 row is no SHA-256 credential (key lengths): refused.
    assert_eq!(login(b.addr, "SCRAM-SHA-256", "sam512", "sql-pass").await, 0x87);
    // The database gone: server unavailable, not a wrong password.
    db.admin_sql(&format!("DROP TABLE {}{table}", if db.kind == Kind::Mysql { "emqx." } else { "" }));
    assert_eq!(login(b.addr, "SCRAM-SHA-256", "sam256", "sql-pass").await, 0x88);
}

#[tokio::test]
async fn scram_credentials_in_postgres() {
    let Some(db) = Db::postgres() else { return };
    scenario(db).await;
}

#[tokio::test]
async fn scram_credentials_in_mariadb() {
    let Some(db) = Db::mysql() else { return };
    scenario(db).await;
}
