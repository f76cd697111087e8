//! The LDAP backend end to end: the real broker against the private slapd
//! that scripts/services.sh starts (users in tests/fixtures/ldap/users.ldif,
//! schema etc/ldap/portcullis.schema).
//!
//! Covered: the three modes (search then bind, bind as the user, compare
//! with every password scheme), unknown users, empty passwords,
//! superusers (attribute, memberOf, groupOfNames, groupOfUniqueNames),
//! ACL attributes with placeholders, LDAPS and StartTLS, failover, a
//! server down at start, stopped and restarted, frozen (SIGSTOP) past the
//! timeout, and injection attempts. Tests that disturb a server spawn a
//! private one; the shared one is never stopped.

mod ext_support;

use std::time::{Duration, Instant};

use ext_support::*;
use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::{services, Broker};

const Q0: QoS = QoS::AtMostOnce;

struct Ldap {
    url: String,
    ldaps: String,
    spawn: String,
    bind_dn: String,
    bind_password: String,
    tls_dir: String,
}

fn ldap() -> Option<Ldap> {
    let [url, ldaps, spawn, bind_dn, bind_password, tls_dir] = services::get_all([
        "PORTCULLIS_TEST_LDAP_URL",
        "PORTCULLIS_TEST_LDAPS_URL",
        "PORTCULLIS_TEST_LDAP_SPAWN",
        "PORTCULLIS_TEST_LDAP_BIND_DN",
        "PORTCULLIS_TEST_LDAP_BIND_PASSWORD",
        "PORTCULLIS_TEST_TLS_DIR",
    ])?;
    Some(Ldap { url, ldaps, spawn, bind_dn, bind_password, tls_dir })
}

const PEOPLE: &str = "ou=people,dc=example,dc=org";
const USER_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid=${username}))";

impl Ldap {
    /// The connection keys of a provider table for these servers.
    fn server_keys(&self, servers: &[&str]) -> String {
        let list = servers.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        format!("servers = [{list}]\nbind_dn = {}\nbind_password = {}\n", q(&self.bind_dn), q(&self.bind_password))
    }

    fn ca(&self) -> String {
        q(&format!("{}/ca.pem", self.tls_dir))
    }

    /// `[auth.ldap.corp]` in search mode (the common setup).
    fn search_auth(&self, servers: &[&str], extra: &str) -> String {
        format!(
            "[auth.ldap.corp]\n{}mode = \"search\"\nbase_dn = {}\nfilter = {}\n{extra}",
            self.server_keys(servers),
            q(PEOPLE),
            q(USER_FILTER)
        )
    }
}

/// Auth chain `corp` only, a generous guard (tests make many failures),
/// no auth cache (so each CONNECT reaches the directory), and an ACL chain
/// that ignores everything, so `no_match = deny` lets only superusers
/// subscribe.
fn broker(providers: &str) -> Broker {
    Broker::start(&format!(
        "[auth]\nchain = [\"corp\"]\n\
         [auth.guard]\nmax_failures = 10000\n[auth.cache]\nmax_entries = 0\n\
         [acl]\nno_match = \"deny\"\nchain = [\"nothing\"]\n[acl.inline.nothing]\n\
         {providers}"
    ))
}

async fn is_superuser(b: &Broker, v: portcullis_core::codec::ProtocolVersion, cid: &str, u: &str, p: &str) -> bool {
    let mut c = login(b.addr, v, cid, u, p).await;
    let granted = suback(&mut c, 1, &[("secret/#", Q0)]).await;
    disconnect(c).await;
    granted == vec![0]
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn search_then_bind() {
    let Some(l) = ldap() else { return };
    let b = broker(&l.search_auth(
        &[&l.url],
        "[auth.ldap.corp.superuser]\ngroups = [\"cn=mqtt-admins,ou=groups,dc=example,dc=org\", \
         \"cn=mqtt-admins-unique,ou=groups,dc=example,dc=org\"]\n",
    ));
    for v in VERSIONS {
        let t = format!("{v:?}");
        assert_eq!(connack(b.addr, v, &format!("a{t}"), Some("alice"), Some("alice-pw")).await, 0, "{t}");
        assert_eq!(
            connack(b.addr, v, &format!("w{t}"), Some("alice"), Some("wrong")).await,
            bad_credentials(v),
            "{t} wrong password"
        );
        assert_eq!(
            connack(b.addr, v, &format!("e{t}"), Some("alice"), Some("")).await,
            bad_credentials(v),
            "{t} empty password is never an anonymous bind"
        );
        assert_eq!(connack(b.addr, v, &format!("n{t}"), Some("alice"), None).await, bad_credentials(v), "{t}");
        assert_eq!(
            connack(b.addr, v, &format!("u{t}"), Some("mallory"), Some("x")).await,
            bad_credentials(v),
            "{t} unknown user: ignored, no_match denies like a wrong password"
        );
        // Superuser by groupOfNames and by groupOfUniqueNames; alice is not.
        assert!(is_superuser(&b, v, &format!("ad{t}"), "admin", "admin-pw").await, "{t} admin");
        assert!(is_superuser(&b, v, &format!("ua{t}"), "uadmin", "admin-pw").await, "{t} uadmin");
        assert!(!is_superuser(&b, v, &format!("al{t}"), "alice", "alice-pw").await, "{t} alice");
    }
    let log = b.log();
    for secret in ["alice-pw", "admin-pw", "service-pw"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

#[tokio::test]
async fn bind_as_user() {
    let Some(l) = ldap() else { return };
    let b = broker(&format!(
        "[auth.ldap.corp]\n{}mode = \"bind\"\nuser_dn = \"uid=${{username}},{PEOPLE}\"\n\
         [auth.ldap.corp.superuser]\nattribute = \"mqttSuperuser\"\n\
         member_of = [\"cn=mqtt-admins,ou=groups,dc=example,dc=org\"]\n",
        l.server_keys(&[&l.url])
    ));
    for v in VERSIONS {
        let t = format!("{v:?}");
        assert_eq!(connack(b.addr, v, &format!("a{t}"), Some("alice"), Some("alice-pw")).await, 0, "{t}");
        assert_eq!(connack(b.addr, v, &format!("b{t}"), Some("bob"), Some("bob-pw")).await, 0, "{t}");
        assert_eq!(
            connack(b.addr, v, &format!("w{t}"), Some("alice"), Some("bob-pw")).await,
            bad_credentials(v),
            "{t}"
        );
        assert_eq!(
            connack(b.addr, v, &format!("e{t}"), Some("empty"), Some("")).await,
            bad_credentials(v),
            "{t} empty password is never an anonymous bind"
        );
        assert_eq!(connack(b.addr, v, &format!("u{t}"), Some("mallory"), Some("x")).await, bad_credentials(v), "{t}");
        assert!(is_superuser(&b, v, &format!("r{t}"), "root", "root-pw").await, "{t} root by attribute");
        assert!(is_superuser(&b, v, &format!("m{t}"), "admin", "admin-pw").await, "{t} admin by memberOf");
        assert!(!is_superuser(&b, v, &format!("al{t}"), "alice", "alice-pw").await, "{t} alice");
    }
}

#[tokio::test]
async fn compare_every_password_scheme() {
    let Some(l) = ldap() else { return };
    // compare mode with a DN template, and with a search.
    for lookup in [
        format!("user_dn = \"uid=${{username}},{PEOPLE}\"\n"),
        format!("base_dn = {}\nfilter = {}\n", q(PEOPLE), q(USER_FILTER)),
    ] {
        let b = broker(&format!("[auth.ldap.corp]\n{}mode = \"compare\"\n{lookup}", l.server_keys(&[&l.url])));
        for (user, scheme) in [
            ("alice", "{SSHA}"),
            ("bob", "plain"),
            ("carol", "{SSHA256}"),
            ("frank", "{SSHA512}"),
            ("dev1", "{SHA}"),
            ("dave", "{MD5}"),
            ("erin", "{CRYPT} sha512-crypt"),
        ] {
            let pw = format!("{user}-pw");
            for v in VERSIONS {
                let cid = format!("{user}-{v:?}");
                assert_eq!(connack(b.addr, v, &cid, Some(user), Some(&pw)).await, 0, "{scheme} {cid}");
                assert_eq!(
                    connack(b.addr, v, &cid, Some(user), Some("not-it")).await,
                    bad_credentials(v),
                    "{scheme} {cid} wrong password"
                );
                assert_eq!(connack(b.addr, v, &cid, Some(user), Some("")).await, bad_credentials(v), "{scheme} {cid}");
            }
        }
        assert_eq!(connack(b.addr, V5, "nobody", Some("nobody"), Some("x")).await, bad_credentials(V5));
    }
}

#[tokio::test]
async fn acl_from_topic_attributes() {
    let Some(l) = ldap() else { return };
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"corp\"]\n{}\
         [acl]\nno_match = \"deny\"\nchain = [\"topics\"]\n\
         [acl.ldap.topics]\n{}base_dn = {}\nfilter = {}\n",
        l.search_auth(&[&l.url], ""),
        l.server_keys(&[&l.url]),
        q(PEOPLE),
        q(USER_FILTER)
    ));
    for v in VERSIONS {
        let deny_sub = code(v, 0x80, 0x87);
        let deny_pub = code(v, 0, 0x87);
        // 5.0: "no matching subscribers", a success code.
        let ok_pub = code(v, 0, 0x10);
        let cid = format!("cid{}", if v == V5 { "5" } else { "3" });
        let mut s = login(b.addr, v, &format!("sub{cid}"), "dev1", "dev1-pw").await;
        // mqttSubscriptionTopic: devices/${username}/cmd/#; mqttPubSubTopic: chat/%u/#
        assert_eq!(
            suback(
                &mut s,
                1,
                &[
                    ("devices/dev1/cmd/#", Q1),
                    ("devices/dev2/cmd/#", Q1),
                    ("chat/dev1/room", Q1),
                    ("chat/dev2/room", Q1),
                    ("devices/dev1/telemetry", Q1),
                    ("#", Q1),
                ]
            )
            .await,
            vec![1, deny_sub, 1, deny_sub, deny_sub, deny_sub],
            "{v:?} subscribe"
        );
        disconnect(s).await;
        let mut c = login(b.addr, v, &cid, "dev1", "dev1-pw").await;
        // mqttPublishTopic: devices/${username}/telemetry, devices/${clientid}/status
        let own_status = format!("devices/{cid}/status");
        for (topic, want) in [
            ("devices/dev1/telemetry", ok_pub),
            ("devices/dev2/telemetry", deny_pub),
            (own_status.as_str(), ok_pub),
            ("devices/other/status", deny_pub),
            ("chat/dev1/room", ok_pub),
            ("devices/dev1/cmd/x", deny_pub),
        ] {
            assert_eq!(pub_simple(&mut c, topic, Q1, 7, b"x", false).await, want, "{v:?} publish {topic}");
        }
        disconnect(c).await;
        // alice has no topic attributes: everything falls to no_match.
        let mut a = login(b.addr, v, &format!("al{cid}"), "alice", "alice-pw").await;
        assert_eq!(suback(&mut a, 1, &[("devices/alice/cmd/#", Q1)]).await, vec![deny_sub], "{v:?}");
        disconnect(a).await;
    }
}

#[tokio::test]
async fn injection_attempts_are_denied() {
    let Some(l) = ldap() else { return };
    let attempts: &[(&str, &str)] = &[
        ("*)(uid=*))(|(uid=*", "alice-pw"),
        ("*)(uid=*))(|(uid=*", "admin-pw"),
        ("admin)(&)", "admin-pw"),
        ("admin)(|(uid=*", "admin-pw"),
        ("*", "alice-pw"),
        ("ad*", "admin-pw"),
        ("{\"$ne\": null}", "alice-pw"),
        ("../", "alice-pw"),
        ("../admin", "admin-pw"),
        ("alice,ou=people", "alice-pw"),
        ("alice\r\n", "alice-pw"),
        ("alice\r\nuid: admin", "admin-pw"),
        ("alice\\", "alice-pw"),
    ];
    let modes = [
        l.search_auth(&[&l.url], ""),
        format!(
            "[auth.ldap.corp]\n{}mode = \"bind\"\nuser_dn = \"uid=${{username}},{PEOPLE}\"\n",
            l.server_keys(&[&l.url])
        ),
        format!(
            "[auth.ldap.corp]\n{}mode = \"compare\"\nbase_dn = {}\nfilter = {}\n",
            l.server_keys(&[&l.url]),
            q(PEOPLE),
            q(USER_FILTER)
        ),
    ];
    for mode in &modes {
        let b = broker(mode);
        for v in VERSIONS {
            for (i, (user, pw)) in attempts.iter().enumerate() {
                let got = connack(b.addr, v, &format!("inj{i}"), Some(user), Some(pw)).await;
                assert_eq!(got, bad_credentials(v), "{v:?} {user:?}/{pw}: expected a denial\n{mode}");
            }
            // `*` is a literal: the decoy entry whose uid is `*` logs in
            // with its own password, and only with it.
            assert_eq!(connack(b.addr, v, "decoy", Some("*"), Some("decoy-pw")).await, 0, "{v:?}\n{mode}");
            assert_eq!(connack(b.addr, v, "decoy", Some("*"), Some("alice-pw")).await, bad_credentials(v), "{v:?}");
        }
    }
}

#[tokio::test]
async fn ldaps_starttls_and_failover() {
    let Some(l) = ldap() else { return };
    let dead = format!("ldap://127.0.0.1:{}", free_port());
    let tls = format!("tls = {{ enable = true, ca_file = {} }}\n", l.ca());
    let cases = [
        ("ldaps", l.search_auth(&[&l.ldaps], &tls)),
        ("starttls", l.search_auth(&[&l.url], &format!("starttls = true\n{tls}"))),
        ("failover", l.search_auth(&[&dead, &l.url], "")),
    ];
    for (what, cfg) in cases {
        let b = broker(&cfg);
        for v in VERSIONS {
            assert_eq!(connack(b.addr, v, "t1", Some("alice"), Some("alice-pw")).await, 0, "{what} {v:?}");
            assert_eq!(connack(b.addr, v, "t2", Some("alice"), Some("no")).await, bad_credentials(v), "{what} {v:?}");
        }
    }
    // A CA that did not sign the server's certificate: the server is
    // unreachable, which is never bad credentials.
    let wrong_ca = format!("tls = {{ enable = true, ca_file = {} }}\n", q(&format!("{}/client.pem", l.tls_dir)));
    let b = broker(&l.search_auth(&[&l.ldaps], &wrong_ca));
    for v in VERSIONS {
        assert_eq!(connack(b.addr, v, "t3", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
    }
    assert!(b.wait_log("auth provider failed", Duration::from_secs(2)), "{}", b.log());
}

/// Provider settings for the outage tests: short timeouts so a dead or
/// frozen server resolves CONNECTs quickly.
const FAST: &str = "timeout = \"2s\"\npool = { size = 2, connect_timeout = \"500ms\", query_timeout = \"500ms\" }\n";

#[tokio::test]
async fn down_at_start_then_recovers() {
    let Some(l) = ldap() else { return };
    let port = free_port();
    let url = format!("ldap://127.0.0.1:{port}");
    // `anon` admits the `$SYS` reader (no username); the default ACL lets
    // loopback clients read `$SYS`.
    let b = Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n[auth]\nchain = [\"corp\", \"anon\"]\n[auth.anonymous.anon]\n\
         [auth.cache]\nmax_entries = 0\n{}",
        l.search_auth(&[&url], FAST)
    ));
    for v in VERSIONS {
        let started = Instant::now();
        assert_eq!(connack(b.addr, v, "d1", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    }
    assert_eq!(sys_fresh(b.addr, "auth/default/corp/health", Duration::from_secs(5)).await, "0");
    let _server = Spawned::start(&l.spawn, Some(port));
    let got =
        eventually(Duration::from_secs(10), 0, || connack(b.addr, V5, "d2", Some("alice"), Some("alice-pw"))).await;
    assert_eq!(got, 0, "no recovery after the server came up:\n{}", b.log());
    assert_eq!(connack(b.addr, V3, "d3", Some("alice"), Some("wrong")).await, bad_credentials(V3));
    assert_eq!(sys_fresh(b.addr, "auth/default/corp/health", Duration::from_secs(5)).await, "1");
}

#[tokio::test]
async fn stopped_and_restarted_mid_test() {
    let Some(l) = ldap() else { return };
    let mut server = Spawned::start(&l.spawn, None);
    let url = format!("ldap://127.0.0.1:{}", server.port);
    let b = broker(&l.search_auth(&[&url], FAST));
    for v in VERSIONS {
        assert_eq!(connack(b.addr, v, "s1", Some("alice"), Some("alice-pw")).await, 0, "{v:?}");
    }
    server.stop();
    for v in VERSIONS {
        let started = Instant::now();
        assert_eq!(connack(b.addr, v, "s2", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    }
    server.restart();
    // The pooled connections died with the old server; the very first
    // CONNECT after the restart succeeds, and a wrong password is still
    // bad credentials.
    assert_eq!(connack(b.addr, V5, "s3", Some("alice"), Some("alice-pw")).await, 0, "{}", b.log());
    assert_eq!(connack(b.addr, V3, "s4", Some("alice"), Some("wrong")).await, bad_credentials(V3));
    assert!(b.wait_log("backend is reachable again", Duration::from_secs(2)), "{}", b.log());
}

#[tokio::test]
async fn frozen_server_hits_the_timeout() {
    let Some(l) = ldap() else { return };
    let server = Spawned::start(&l.spawn, None);
    let url = format!("ldap://127.0.0.1:{}", server.port);
    let b = broker(&l.search_auth(&[&url], FAST));
    assert_eq!(connack(b.addr, V5, "f1", Some("alice"), Some("alice-pw")).await, 0);
    server.freeze();
    for v in VERSIONS {
        let started = Instant::now();
        let got = connack(b.addr, v, "f2", Some("alice"), Some("alice-pw")).await;
        let took = started.elapsed();
        assert_eq!(got, unavailable(v), "{v:?}: a frozen server is unavailable, not bad credentials");
        assert!(took < Duration::from_secs(3), "{v:?}: took {took:?}");
    }
    server.signal("CONT");
    let got =
        eventually(Duration::from_secs(10), 0, || connack(b.addr, V5, "f3", Some("alice"), Some("alice-pw"))).await;
    assert_eq!(got, 0, "no recovery after SIGCONT:\n{}", b.log());
    let log = b.log();
    assert!(!log.contains("alice-pw") && !log.contains("service-pw"), "a password reached the log:\n{log}");
}

#[tokio::test]
async fn on_error_ignore_falls_through() {
    let Some(l) = ldap() else { return };
    let url = format!("ldap://127.0.0.1:{}", free_port());
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"corp\", \"lo\"]\n[auth.cache]\nmax_entries = 0\n\
         [auth.ip.lo]\nallow = [\"127.0.0.0/8\"]\n{}on_error = \"ignore\"\n",
        l.search_auth(&[&url], FAST)
    ));
    for v in VERSIONS {
        assert_eq!(connack(b.addr, v, "i1", Some("alice"), Some("alice-pw")).await, 0, "{v:?}");
    }
    assert!(b.wait_log("auth provider failed", Duration::from_secs(2)), "{}", b.log());
}

/// Directory matching ignores case, so the entry found for `ALICE` is
/// alice's; it must not let `ALICE` (or `Alice`) log in with alice's
/// password, in any mode, nor give an `ALICE` authenticated elsewhere
/// alice's topics. Before, all three modes admitted `ALICE`.
#[tokio::test]
async fn usernames_are_exact() {
    let Some(l) = ldap() else { return };
    let modes = [
        l.search_auth(&[&l.url], ""),
        format!(
            "[auth.ldap.corp]\n{}mode = \"bind\"\nuser_dn = \"uid=${{username}},{PEOPLE}\"\n",
            l.server_keys(&[&l.url])
        ),
        format!(
            "[auth.ldap.corp]\n{}mode = \"compare\"\nbase_dn = {}\nfilter = {}\n",
            l.server_keys(&[&l.url]),
            q(PEOPLE),
            q(USER_FILTER)
        ),
        format!(
            "[auth.ldap.corp]\n{}mode = \"compare\"\nuser_dn = \"uid=${{username}},{PEOPLE}\"\n",
            l.server_keys(&[&l.url])
        ),
    ];
    for mode in &modes {
        let b = broker(mode);
        for v in VERSIONS {
            assert_eq!(connack(b.addr, v, "a", Some("alice"), Some("alice-pw")).await, 0, "{v:?}\n{mode}");
            for other in ["ALICE", "Alice", "aLiCe"] {
                let got = connack(b.addr, v, "A", Some(other), Some("alice-pw")).await;
                assert_eq!(got, bad_credentials(v), "{v:?}: {other} logged in as alice\n{mode}");
            }
        }
    }
    // ACL: DEV1 admitted by a password file is not dev1 for the directory.
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "DEV1:pw\ndev1:pw\n").expect("passwd");
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"file\"]\n[auth.password_file.file]\npath = {}\nhash = {{ algo = \"plain\" }}\n\
         [acl]\nno_match = \"deny\"\nchain = [\"topics\"]\n[acl.ldap.topics]\n{}base_dn = {}\nfilter = {}\n",
        q(&passwd.display().to_string()),
        l.server_keys(&[&l.url]),
        q(PEOPLE),
        q(USER_FILTER)
    ));
    let mut lower = login(b.addr, V5, "l", "dev1", "pw").await;
    assert_eq!(pub_simple(&mut lower, "chat/dev1/room", Q1, 1, b"x", false).await, 0x10, "dev1's own topic");
    let mut upper = login(b.addr, V5, "u", "DEV1", "pw").await;
    assert_eq!(
        pub_simple(&mut upper, "chat/DEV1/room", Q1, 1, b"x", false).await,
        0x87,
        "DEV1 got dev1's topics (mqttPubSubTopic chat/%u/#)"
    );
}

/// With slapd stopped, a CONNECT fails at once (connection refused), with
/// the pool's *default* timeouts (connect 3 s + query 3 s of pool wait,
/// longer than the chain's default 5 s): the failure is logged and health
/// goes to 0, then back to 1. Before, the CONNECT waited the chain's full
/// 5 s, nothing said why, and health stayed 1.
#[tokio::test]
async fn a_refused_connection_fails_fast_with_default_timeouts() {
    let Some(l) = ldap() else { return };
    let mut server = Spawned::start(&l.spawn, None);
    let url = format!("ldap://127.0.0.1:{}", server.port);
    let b = Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n[auth]\nchain = [\"corp\", \"anon\"]\n[auth.anonymous.anon]\n\
         [auth.cache]\nmax_entries = 0\n{}",
        l.search_auth(&[&url], "")
    ));
    assert_eq!(connack(b.addr, V5, "s1", Some("alice"), Some("alice-pw")).await, 0);
    server.stop();
    for v in VERSIONS {
        let started = Instant::now();
        assert_eq!(connack(b.addr, v, "s2", Some("alice"), Some("alice-pw")).await, unavailable(v), "{v:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2500), "{v:?}: a refused connection took {took:?}");
    }
    assert!(b.wait_log("backend is unreachable", Duration::from_secs(2)), "nothing logged:\n{}", b.log());
    assert_eq!(sys_fresh(b.addr, "auth/default/corp/health", Duration::from_secs(5)).await, "0");
    server.restart();
    let got =
        eventually(Duration::from_secs(10), 0, || connack(b.addr, V5, "s3", Some("alice"), Some("alice-pw"))).await;
    assert_eq!(got, 0, "no recovery:\n{}", b.log());
    assert_eq!(sys_fresh(b.addr, "auth/default/corp/health", Duration::from_secs(5)).await, "1");
    assert!(b.wait_log("backend is reachable again", Duration::from_secs(2)), "{}", b.log());
}

/// Compare mode: an unknown user costs a verification like a wrong
/// password (erin's {CRYPT} sha512-crypt value, 5000 rounds), and gets the
/// same CONNACK. Before, the unknown user cost one search and nothing else.
#[tokio::test]
async fn compare_mode_unknown_users_cost_a_hash() {
    let Some(l) = ldap() else { return };
    let b = broker(&format!(
        "[auth.ldap.corp]\n{}mode = \"compare\"\nbase_dn = {}\nfilter = {}\n",
        l.server_keys(&[&l.url]),
        q(PEOPLE),
        q(USER_FILTER)
    ));
    let (wrong, unknown) = portcullis_tests::backend::latency_wrong_vs_unknown(b.addr, "erin", 7, 0x86).await;
    portcullis_tests::backend::assert_unknown_users_cost_a_hash(wrong, unknown);
}
