//! How backend providers reach their servers (issue 11, point 9), through
//! the real binary, without any backend server: providers connect lazily,
//! so a broker starts whatever its backends' addresses are.
//!
//! * Every provider whose server is off this host and not reached over
//!   verified TLS is named in one warning at start; loopback, `localhost`
//!   and verified TLS are not.
//! * A MongoDB URI with credentials or `tlsInsecure`, and a MongoDB filter
//!   with a placeholder under `$regex` / `$where`, are config errors that
//!   name the key (and never show the password).
//!
//! 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing answers there.

use std::process::Command;
use std::time::Duration;

use portcullis_tests::backend::run_bounded;
use portcullis_tests::{binary, Broker};

const WARNING: &str = "backend reached without verified TLS";

/// A CA certificate in PEM (any will do: nothing is connected to).
fn ca_file(dir: &std::path::Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["backend.test".to_string()]).expect("certificate");
    let path = dir.join("ca.pem");
    std::fs::write(&path, cert.cert.pem()).expect("write ca");
    format!("{:?}", path.display().to_string())
}

#[test]
fn exposed_backends_are_named_once_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_file(dir.path());
    let search = "mode = \"search\"\nbase_dn = \"dc=x\"\nfilter = \"(uid=${username})\"\n";
    let cfg = format!(
        "[auth]\nchain = [\"pg\", \"my\", \"rd\", \"ld\", \"mg\", \"ht\", \"local_rd\", \"local_ht\", \"local_ld\", \"tls_ld\", \"tls_ht\", \"tls_pg\"]\n\
         [auth.postgres.pg]\nurl = \"postgres://u@192.0.2.1/mqtt\"\n\
         [auth.mysql.my]\nurl = \"mysql://u@192.0.2.1/mqtt\"\n\
         [auth.redis.rd]\nservers = \"192.0.2.1:6379\"\n\
         [auth.ldap.ld]\nservers = [\"ldap://192.0.2.1\"]\n{search}\
         [auth.mongodb.mg]\nuri = \"mongodb://192.0.2.1:27017\"\ndatabase = \"mqtt\"\n\
         [auth.http.ht]\nurl = \"http://192.0.2.1:8080/auth\"\n\
         [auth.redis.local_rd]\nservers = \"127.0.0.1:1\"\n\
         [auth.http.local_ht]\nurl = \"http://localhost:1/auth\"\n\
         [auth.ldap.local_ld]\nservers = [\"ldap://[::1]:1\"]\n{search}\
         [auth.ldap.tls_ld]\nservers = [\"ldaps://192.0.2.1\"]\ntls = {{ enable = true, ca_file = {ca} }}\n{search}\
         [auth.http.tls_ht]\nurl = \"https://192.0.2.1/auth\"\ntls = {{ enable = true, ca_file = {ca} }}\n\
         [auth.postgres.tls_pg]\nurl = \"postgres://u@192.0.2.1/mqtt\"\ntls = {{ enable = true, ca_file = {ca} }}\n\
         [acl]\nchain = [\"acl_rd\"]\n[acl.redis.acl_rd]\nservers = \"192.0.2.1:6379\"\n"
    );
    let b = Broker::start(&cfg);
    assert!(b.wait_log(WARNING, Duration::from_secs(5)), "no warning:\n{}", b.log());
    let log = b.log();
    let warned =
        |key: &str| log.lines().filter(|l| l.contains(WARNING) && l.contains(&format!("provider={key} "))).count();
    for key in [
        "auth.postgres.pg",
        "auth.mysql.my",
        "auth.redis.rd",
        "auth.ldap.ld",
        "auth.mongodb.mg",
        "auth.http.ht",
        "acl.redis.acl_rd",
    ] {
        assert_eq!(warned(key), 1, "{key}: one warning expected:\n{log}");
    }
    for key in [
        "auth.redis.local_rd",
        "auth.http.local_ht",
        "auth.ldap.local_ld",
        "auth.ldap.tls_ld",
        "auth.http.tls_ht",
        "auth.postgres.tls_pg",
    ] {
        assert_eq!(warned(key), 0, "{key}: loopback or verified TLS:\n{log}");
    }
    assert_eq!(log.lines().filter(|l| l.contains(WARNING)).count(), 7, "{log}");
}

/// Runs the broker on `cfg`, which must fail to start; its stderr.
fn refused(cfg: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, format!("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n{cfg}")).expect("config");
    let (ok, stderr) = run_bounded(Command::new(binary()).arg("--config").arg(&path));
    assert!(!ok, "the broker accepted:\n{cfg}\n{stderr}");
    stderr
}

#[test]
fn mongodb_uri_and_filter_are_checked() {
    let base = "[auth]\nchain = [\"m\"]\n[auth.mongodb.m]\ndatabase = \"mqtt\"\n";
    for (extra, want) in [
        (
            "uri = \"mongodb://portcullis:hunter2-secret@192.0.2.1:27017/mqtt\"\n",
            "auth.mongodb.m: uri: contains credentials",
        ),
        ("uri = \"mongodb://192.0.2.1/?tls=true&tlsInsecure=true\"\n", "auth.mongodb.m: uri: tlsInsecure"),
        (
            "uri = \"mongodb://192.0.2.1/?tls=true&tlsAllowInvalidCertificates=true\"\n",
            "uri: tlsAllowInvalidCertificates",
        ),
        (
            "uri = \"mongodb://192.0.2.1\"\nfilter = { username = { \"$regex\" = \"^${username}$\" } }\n",
            "auth.mongodb.m: filter.username.$regex: no placeholders under $regex",
        ),
        ("uri = \"mongodb://192.0.2.1\"\nfilter = { \"$where\" = \"this.u == '${username}'\" }\n", "filter.$where"),
    ] {
        let err = refused(&format!("{base}{extra}"));
        assert!(err.contains(want), "{extra}: expected {want:?} in:\n{err}");
        assert!(!err.contains("hunter2"), "the password reached the output:\n{err}");
    }
}
