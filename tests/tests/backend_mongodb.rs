//! The MongoDB backend end to end: the real broker against the private
//! MongoDB-wire server (SecantusDB) that scripts/services.sh starts, with
//! the documents in tests/fixtures/mongodb/data.json.
//!
//! Covered: every hash type (one provider per type, selected by a literal
//! value in its filter), superuser flags, unknown users, SCRAM login with
//! an auth source, single-server and replica-set URIs, ACL documents with
//! placeholders, TLS, a refused login, a server down at start, stopped and
//! restarted, frozen (SIGSTOP) past the timeout, and injection attempts.
//! Tests that disturb a server spawn a private one.

mod ext_support;

use std::time::{Duration, Instant};

use ext_support::*;
use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::{services, Broker};

const Q0: QoS = QoS::AtMostOnce;
const Q2: QoS = QoS::ExactlyOnce;

struct Mongo {
    url: String,
    user: String,
    password: String,
    tls_url: String,
    db: String,
    spawn: String,
    tls_dir: String,
}

fn mongo() -> Option<Mongo> {
    let [url, user, password, tls_url, db, spawn, tls_dir] = services::get_all([
        "PORTCULLIS_TEST_MONGO_URL",
        "PORTCULLIS_TEST_MONGO_USER",
        "PORTCULLIS_TEST_MONGO_PASSWORD",
        "PORTCULLIS_TEST_MONGO_TLS_URL",
        "PORTCULLIS_TEST_MONGO_DB",
        "PORTCULLIS_TEST_MONGO_SPAWN",
        "PORTCULLIS_TEST_TLS_DIR",
    ])?;
    Some(Mongo { url, user, password, tls_url, db, spawn, tls_dir })
}

impl Mongo {
    /// Connection keys for the shared server (SCRAM login, auth source
    /// `admin`), single-server URI.
    fn login_keys(&self) -> String {
        format!(
            "uri = {}\ndatabase = {}\nusername = {}\npassword = {}\nauth_source = \"admin\"\n",
            q(&format!("{}/?directConnection=true", self.url)),
            q(&self.db),
            q(&self.user),
            q(&self.password)
        )
    }
}

/// Auth chain `providers` (names in order), a generous guard, no auth cache,
/// and an ACL chain that ignores everything unless `acl` adds providers:
/// `no_match = deny`, so only superusers and ACL allows get through.
fn broker(chain: &[&str], tables: &str, acl_chain: &[&str]) -> Broker {
    let names = |v: &[&str]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
    let mut acl = acl_chain.to_vec();
    acl.push("nothing");
    Broker::start(&format!(
        "[auth]\nchain = [{}]\n[auth.guard]\nmax_failures = 10000\n[auth.cache]\nmax_entries = 0\n\
         [acl]\nno_match = \"deny\"\nchain = [{}]\n[acl.inline.nothing]\n{tables}",
        names(chain),
        names(&acl)
    ))
}

async fn is_superuser(b: &Broker, v: portcullis_core::codec::ProtocolVersion, cid: &str, u: &str, p: &str) -> bool {
    let mut c = login(b.addr, v, cid, u, p).await;
    let granted = suback(&mut c, 1, &[("secret/#", Q0)]).await;
    disconnect(c).await;
    granted == vec![0]
}

/// `(provider name, password_hash table)`: one provider per hash type,
/// selecting its users by the fixture's `algo` field.
const HASHES: &[(&str, &str)] = &[
    ("sha256", "{ algo = \"sha256\", salt_position = \"prefix\" }"),
    ("plain", "{ algo = \"plain\" }"),
    ("md5", "{ algo = \"md5\" }"),
    ("sha1", "{ algo = \"sha1\" }"),
    ("sha512", "{ algo = \"sha512\", salt_position = \"suffix\" }"),
    ("bcrypt", "{ algo = \"bcrypt\" }"),
    ("pbkdf2", "{ algo = \"pbkdf2\", mac = \"sha256\", iterations = 1000, key_length = 32 }"),
    ("argon2id", "{ algo = \"argon2id\" }"),
];

fn hash_providers(m: &Mongo) -> String {
    HASHES
        .iter()
        .map(|(name, hash)| {
            format!(
                "[auth.mongodb.{name}]\n{}filter = {{ username = \"${{username}}\", algo = \"{name}\" }}\npassword_hash = {hash}\n",
                m.login_keys()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_hash_type_and_superuser() {
    let Some(m) = mongo() else { return };
    let chain: Vec<&str> = HASHES.iter().map(|(n, _)| *n).collect();
    let b = broker(&chain, &hash_providers(&m), &[]);
    for v in VERSIONS {
        for (algo, _) in HASHES {
            let user = format!("{algo}_user");
            let cid = format!("{algo}-{v:?}");
            assert_eq!(connack(b.addr, v, &cid, Some(&user), Some(&format!("{algo}-pw"))).await, 0, "{cid}");
            assert_eq!(
                connack(b.addr, v, &cid, Some(&user), Some("wrong")).await,
                bad_credentials(v),
                "{cid} wrong password"
            );
            assert_eq!(connack(b.addr, v, &cid, Some(&user), None).await, bad_credentials(v), "{cid} no password");
        }
        assert_eq!(connack(b.addr, v, "u", Some("mallory"), Some("x")).await, bad_credentials(v), "{v:?} unknown");
        assert_eq!(connack(b.addr, v, "n", None, None).await, not_authorized(v), "{v:?} no username");
        // is_superuser true (bool) and 1 (number); alice false.
        assert!(is_superuser(&b, v, "su1", "admin", "admin-pw").await, "{v:?} admin");
        assert!(is_superuser(&b, v, "su2", "root", "admin-pw").await, "{v:?} root");
        assert!(!is_superuser(&b, v, "su3", "alice", "alice-pw").await, "{v:?} alice");
    }
    let log = b.log();
    for secret in ["alice-pw", "admin-pw", &m.password] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

#[tokio::test]
async fn replica_set_uri_and_acl_documents() {
    let Some(m) = mongo() else { return };
    // The server advertises itself as the single-node replica set
    // `secantus`; the driver finds the primary from the seed list.
    let rs = format!(
        "uri = {}\ndatabase = {}\nusername = {}\npassword = {}\nauth_source = \"admin\"\n",
        q(&format!("{}/?replicaSet=secantus", m.url)),
        q(&m.db),
        q(&m.user),
        q(&m.password)
    );
    let b = broker(&["users"], &format!("[auth.mongodb.users]\n{rs}[acl.mongodb.rules]\n{rs}"), &["rules"]);
    for v in VERSIONS {
        let deny_sub = code(v, 0x80, 0x87);
        let deny_pub = code(v, 0, 0x87);
        let ok_pub = code(v, 0, 0x10);
        let cid = format!("c{}", if v == V5 { "5" } else { "3" });
        let mut s = login(b.addr, v, &format!("s{cid}"), "dev1", "dev1-pw").await;
        assert_eq!(
            suback(&mut s, 1, &[("devices/dev1/#", Q1), ("devices/dev2/#", Q1), ("#", Q1)]).await,
            vec![1, deny_sub, deny_sub],
            "{v:?}"
        );
        disconnect(s).await;
        let mut c = login(b.addr, v, &cid, "dev1", "dev1-pw").await;
        let own_status = format!("status/{cid}");
        for (topic, qos, want) in [
            ("devices/dev1/locked", Q1, deny_pub), // the deny document comes first
            ("devices/dev1/temp", Q1, ok_pub),
            ("devices/dev2/temp", Q1, deny_pub),
            (own_status.as_str(), Q1, ok_pub),
            ("status/other", Q1, deny_pub),
            ("qos/limited", Q1, ok_pub),
            ("qos/limited", Q2, deny_pub), // qos = [0, 1]
        ] {
            let got = pub_simple(&mut c, topic, qos, 9, b"x", false).await;
            assert_eq!(got, want, "{v:?} publish {topic} {qos:?}");
        }
        disconnect(c).await;
        let mut a = login(b.addr, v, &format!("a{cid}"), "alice", "alice-pw").await;
        assert_eq!(suback(&mut a, 1, &[("chat/#", Q1), ("devices/dev1/#", Q1)]).await, vec![1, deny_sub], "{v:?}");
        assert_eq!(pub_simple(&mut a, "chat/x", Q1, 3, b"x", false).await, deny_pub, "{v:?} subscribe-only");
        disconnect(a).await;
    }
}

#[tokio::test]
async fn injection_attempts_are_denied() {
    let Some(m) = mongo() else { return };
    let b = broker(&["users"], &format!("[auth.mongodb.users]\n{}", m.login_keys()), &[]);
    for v in VERSIONS {
        for (i, (user, pw)) in [
            ("{\"$ne\": null}", "alice-pw"),
            ("{\"$gt\": \"\"}", "admin-pw"),
            ("{\"$regex\": \".*\"}", "alice-pw"),
            ("*", "alice-pw"),
            (".*", "alice-pw"),
            ("../", "alice-pw"),
            ("../admin", "admin-pw"),
            ("alice\r\n", "alice-pw"),
            ("alice\r\nadmin", "admin-pw"),
            ("admin)(&)", "admin-pw"),
            ("*)(uid=*))(|(uid=*", "alice-pw"),
            ("alice' || '1'=='1", "alice-pw"),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                connack(b.addr, v, &format!("inj{i}"), Some(user), Some(pw)).await,
                bad_credentials(v),
                "{v:?} {user:?} found a user"
            );
        }
    }
}

#[tokio::test]
async fn tls_and_refused_login() {
    let Some(m) = mongo() else { return };
    let tls = |ca: &str| {
        format!(
            "uri = {}\ndatabase = {}\ntls = {{ enable = true, ca_file = {} }}\n{FAST}",
            q(&format!("{}/?directConnection=true", m.tls_url)),
            q(&m.db),
            q(&format!("{}/{ca}", m.tls_dir))
        )
    };
    let wrong_login = m.login_keys().replace(&format!("password = {}", q(&m.password)), "password = \"not-it\"");
    for (name, want_ok) in [("good", true), ("badca", false), ("badlogin", false)] {
        let tables = format!(
            "[auth.mongodb.{name}]\n{}\n",
            match name {
                "good" => tls("ca.pem"),
                "badca" => tls("client.pem"),
                _ => format!("{wrong_login}{FAST}"),
            }
        );
        let b = broker(&[name], &tables, &[]);
        for v in VERSIONS {
            let got = connack(b.addr, v, "t", Some("alice"), Some("alice-pw")).await;
            if want_ok {
                assert_eq!(got, 0, "{name} {v:?}");
                assert_eq!(connack(b.addr, v, "t", Some("alice"), Some("no")).await, bad_credentials(v), "{name}");
            } else {
                assert_eq!(got, unavailable(v), "{name} {v:?}: a server we cannot use is never bad credentials");
            }
        }
    }
}

/// Short timeouts so a dead or frozen server resolves CONNECTs quickly.
const FAST: &str = "timeout = \"3s\"\npool = { size = 2, connect_timeout = \"1s\", query_timeout = \"1s\" }\n";

/// A provider table for a spawned (no auth) server on `port`.
fn spawned_keys(m: &Mongo, port: u16) -> String {
    format!("uri = \"mongodb://127.0.0.1:{port}/?directConnection=true\"\ndatabase = {}\n{FAST}", q(&m.db))
}

#[tokio::test]
async fn down_at_start_then_recovers() {
    let Some(m) = mongo() else { return };
    let port = free_port();
    let b = Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n[auth]\nchain = [\"users\", \"anon\"]\n[auth.anonymous.anon]\n\
         [auth.cache]\nmax_entries = 0\n[auth.mongodb.users]\n{}",
        spawned_keys(&m, port)
    ));
    for v in VERSIONS {
        let started = Instant::now();
        assert_eq!(connack(b.addr, v, "d1", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    }
    assert_eq!(sys_fresh(b.addr, "auth/default/users/health", Duration::from_secs(5)).await, "0");
    let _server = Spawned::start(&m.spawn, Some(port));
    let got =
        eventually(Duration::from_secs(15), 0, || connack(b.addr, V5, "d2", Some("alice"), Some("alice-pw"))).await;
    assert_eq!(got, 0, "no recovery after the server came up:\n{}", b.log());
    assert_eq!(connack(b.addr, V3, "d3", Some("alice"), Some("wrong")).await, bad_credentials(V3));
    assert_eq!(sys_fresh(b.addr, "auth/default/users/health", Duration::from_secs(5)).await, "1");
}

#[tokio::test]
async fn stopped_and_restarted_mid_test() {
    let Some(m) = mongo() else { return };
    let mut server = Spawned::start(&m.spawn, None);
    let b = broker(&["users"], &format!("[auth.mongodb.users]\n{}", spawned_keys(&m, server.port)), &[]);
    for v in VERSIONS {
        assert_eq!(connack(b.addr, v, "s1", Some("alice"), Some("alice-pw")).await, 0, "{v:?}");
    }
    server.stop();
    for v in VERSIONS {
        let started = Instant::now();
        assert_eq!(connack(b.addr, v, "s2", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    }
    server.restart();
    // Never bad credentials while the driver reconnects; then allowed.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let got = connack(b.addr, V5, "s3", Some("alice"), Some("alice-pw")).await;
        if got == 0 {
            break;
        }
        assert_eq!(got, unavailable(V5), "while reconnecting");
        assert!(Instant::now() < end, "no recovery after the restart:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(connack(b.addr, V3, "s4", Some("alice"), Some("wrong")).await, bad_credentials(V3));
    assert!(b.wait_log("backend is reachable again", Duration::from_secs(2)), "{}", b.log());
}

#[tokio::test]
async fn frozen_server_hits_the_timeout() {
    let Some(m) = mongo() else { return };
    let server = Spawned::start(&m.spawn, None);
    let b = broker(&["users"], &format!("[auth.mongodb.users]\n{}", spawned_keys(&m, server.port)), &[]);
    assert_eq!(connack(b.addr, V5, "f1", Some("alice"), Some("alice-pw")).await, 0);
    server.freeze();
    for v in VERSIONS {
        let started = Instant::now();
        let got = connack(b.addr, v, "f2", Some("alice"), Some("alice-pw")).await;
        let took = started.elapsed();
        assert_eq!(got, unavailable(v), "{v:?}: a frozen server is unavailable, not bad credentials");
        assert!(took < Duration::from_secs(4), "{v:?}: took {took:?}");
    }
    server.signal("CONT");
    let got =
        eventually(Duration::from_secs(15), 0, || connack(b.addr, V5, "f3", Some("alice"), Some("alice-pw"))).await;
    assert_eq!(got, 0, "no recovery after SIGCONT:\n{}", b.log());
    assert!(!b.log().contains("alice-pw"), "a password reached the log");
}

/// ACL documents are tried in `_id` order by default, not in the server's
/// natural order: `order`'s deny (_id 1) was inserted after its allow
/// (_id 2), so in natural order the allow came first and `order/locked`
/// was allowed. `sort` chooses the key and direction.
#[tokio::test]
async fn acl_documents_are_tried_in_a_defined_order() {
    let Some(m) = mongo() else { return };
    for (sort, locked) in [("", 0x87), ("sort = [\"-_id\"]\n", 0x10)] {
        let b = Broker::start(&format!(
            "[auth]\nchain = [\"lo\"]\n[auth.ip.lo]\nallow = [\"127.0.0.0/8\"]\n\
             [acl]\nno_match = \"deny\"\nchain = [\"rules\"]\n[acl.mongodb.rules]\n{}{sort}",
            m.login_keys()
        ));
        let mut c = login(b.addr, V5, "o1", "order", "any").await;
        assert_eq!(pub_simple(&mut c, "order/locked", Q1, 1, b"x", false).await, locked, "{sort:?}");
        assert_eq!(pub_simple(&mut c, "order/open", Q1, 2, b"x", false).await, 0x10, "{sort:?}");
    }
}

/// An unknown user costs a hash verification like a wrong password
/// (argon2id_user's argon2id, m=19456 t=2), and gets the same CONNACK.
/// Before, the unknown user cost one query and nothing else.
#[tokio::test]
async fn unknown_users_cost_a_hash_like_wrong_passwords() {
    let Some(m) = mongo() else { return };
    let b = broker(
        &["argon"],
        &format!(
            "[auth.mongodb.argon]\n{}filter = {{ username = \"${{username}}\" }}\npassword_hash = {{ algo = \"argon2id\" }}\n",
            m.login_keys()
        ),
        &[],
    );
    let (wrong, unknown) = portcullis_tests::backend::latency_wrong_vs_unknown(b.addr, "argon2id_user", 5, 0x86).await;
    portcullis_tests::backend::assert_unknown_users_cost_a_hash(wrong, unknown);
}
