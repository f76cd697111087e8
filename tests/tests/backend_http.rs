//! The HTTP webhook auth and ACL providers through the real broker,
//! against a real HTTP(S) server in this process (`portcullis_tests::webhook`,
//! hyper on 127.0.0.1:0) that the tests slow down, fail, stop and restart.
//!
//! The auth cache is off unless a test is about it, so each CONNECT
//! reaches the webhook.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_core::codec::QoS;
use portcullis_tests::backend::*;
use portcullis_tests::services;
use portcullis_tests::webhook::{Tls, Webhook};
use portcullis_tests::Broker;

// ---------------------------------------------------------------------------
// Helpers

/// An `[auth.http.NAME]` / `[acl.http.NAME]` table, plus extra keys;
/// short timeouts unless `extra` sets them.
fn hook(kind: &str, name: &str, url: &str, extra: &str) -> String {
    let has = |k: &str| extra.lines().any(|l| l.starts_with(k));
    let mut t = format!("[{kind}.http.{name}]\nurl = {url:?}\nconnect_timeout = \"1s\"\n");
    if !has("request_timeout") {
        t.push_str("request_timeout = \"2s\"\n");
    }
    if !has("timeout") {
        t.push_str("timeout = \"4s\"\n");
    }
    t + extra + "\n"
}

/// Config head: no auth cache, no brute-force guard, the default chains.
fn head(auth: &[&str], acl: &[&str]) -> String {
    let q = |v: &[&str]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut cfg =
        format!("[auth]\nchain = [{}]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n", q(auth));
    if !acl.is_empty() {
        cfg.push_str(&format!("[acl]\nchain = [{}]\n", q(acl)));
    }
    cfg
}

/// A password file provider that knows `fileuser` / `file-pw`.
fn file_provider() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    std::fs::write(&path, "fileuser:file-pw\n").expect("write passwd");
    let table =
        format!("[auth.password_file.file]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n", path.display().to_string());
    (dir, table)
}

/// Listener tables: `[[listeners]]` named as given, each with its auth chain.
fn listeners(chains: &[(&str, &str)]) -> String {
    chains
        .iter()
        .map(|(name, chain)| {
            format!("[[listeners]]\nname = {name:?}\nbind = \"127.0.0.1:0\"\nauth_chain = {chain:?}\n")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// EMQX 5: POST JSON, {"result": ...}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqx_json_auth_and_acl() {
    let w = Webhook::start(None).await;
    let (_d, file) = file_provider();
    let cfg = head(&["hook", "file"], &["hook_acl"])
        + &hook("auth", "hook", &format!("{}/mqtt/auth", w.base()), "")
        + &file
        + &hook("acl", "hook_acl", &format!("{}/mqtt/acl", w.base()), "");
    let b = Broker::start(&cfg);
    let a = b.addr;

    expect(a, "alice", "alice-pw", OK).await;
    expect(a, "alice", "bob-pw", BAD_CREDENTIALS).await;
    // 404 and {"result": "ignore"} pass the client on.
    expect(a, "fileuser", "file-pw", OK).await;
    // Unknown users end in no_match, answered like a wrong password.
    expect(a, "nobody", "x", BAD_CREDENTIALS).await;
    expect(a, "ignore-me", "x", BAD_CREDENTIALS).await;

    // The request: a JSON object of strings with the default fields.
    let seen = w.seen();
    let r = seen.iter().find(|s| s.fields.get("username").map(String::as_str) == Some("alice")).expect("alice");
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/mqtt/auth"));
    assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(body["password"], "alice-pw");
    assert_eq!(body["clientid"], "c-alice");

    let mut alice = login(a, V5, "dev-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "alice/t", QoS::AtLeastOnce, 1, false).await);
    assert_eq!(sub_code(&mut alice, 2, "alice/#", QoS::AtLeastOnce).await, 1);
    assert!(!published(&mut alice, "bob/t", QoS::AtLeastOnce, 3, false).await, "ignored, no_match denies");
    assert!(!published(&mut alice, "secret/t", QoS::AtLeastOnce, 4, false).await, "denied");
    assert!(published(&mut alice, "pub-only/t", QoS::AtLeastOnce, 5, false).await);
    assert_eq!(sub_code(&mut alice, 6, "pub-only/t", QoS::AtMostOnce).await, 0x87);
    assert!(published(&mut alice, "lowqos/t", QoS::AtLeastOnce, 7, false).await);
    assert!(!published(&mut alice, "lowqos/t", QoS::ExactlyOnce, 8, false).await);
    let seen = w.seen();
    let r =
        seen.iter().find(|s| s.path == "/mqtt/acl" && s.fields.get("topic").map(String::as_str) == Some("lowqos/t"));
    let f = &r.expect("an ACL request").fields;
    assert_eq!((f["username"].as_str(), f["clientid"].as_str(), f["action"].as_str()), ("alice", "dev-a", "publish"));
    assert_eq!((f["retain"].as_str(), f["peerhost"].as_str()), ("false", "127.0.0.1"));

    // root: superuser from the auth answer; the ACL chain is bypassed.
    let mut root = login(a, V3, "dev-r", "root", "root-pw").await;
    assert_eq!(sub_code(&mut root, 1, "secret/#", QoS::AtMostOnce).await, 0);
}

// ---------------------------------------------------------------------------
// emqttd 1.x: the status says it; GET with query parameters, a form POST
// superuser request

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqttd_status_mode_get_and_form() {
    let w = Webhook::start(None).await;
    // The webhook answers allow with an empty 200, as emqttd's did.
    let emqttd = "response = \"emqttd\"\nallow_body = \"\"\nmethod = \"get\"\n\
                  body = { clientid = \"%c\", username = \"%u\", password = \"%P\" }";
    let su = format!(
        "[auth.http.legacy.superuser]\nurl = \"{}/emqttd/superuser\"\nbody_format = \"form\"\nbody = {{ clientid = \"%c\", username = \"%u\" }}\n",
        w.base()
    );
    let acl = "response = \"emqttd\"\nallow_body = \"\"\nmethod = \"get\"\n\
               body = { access = \"%A\", username = \"%u\", clientid = \"%c\", ipaddr = \"%a\", topic = \"%t\" }";
    let cfg = head(&["legacy"], &["legacy_acl"])
        + &hook("auth", "legacy", &format!("{}/emqttd/auth", w.base()), emqttd)
        + &su
        + &hook("acl", "legacy_acl", &format!("{}/emqttd/acl", w.base()), acl);
    let b = Broker::start(&cfg);
    let a = b.addr;

    expect(a, "alice", "alice-pw", OK).await;
    expect(a, "alice", "nope", BAD_CREDENTIALS).await; // 401
    expect(a, "nobody", "x", BAD_CREDENTIALS).await; // 200 "ignore", then no_match

    let seen = w.seen();
    let r = seen.iter().find(|s| s.path == "/emqttd/auth").expect("auth request");
    assert_eq!(r.method, "GET");
    assert!(r.body.is_empty());
    assert!(r.query.contains("username=alice") || r.query.contains("username=nobody"), "{}", r.query);

    let mut alice = login(a, V5, "dev-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "bob/t", QoS::AtLeastOnce, 2, false).await, "403 denies");
    let seen = w.seen();
    let r = seen.iter().rev().find(|s| s.path == "/emqttd/acl").expect("ACL request");
    assert_eq!((r.fields["access"].as_str(), r.fields["topic"].as_str()), ("publish", "bob/t"));

    // root is a superuser through the form-encoded superuser request.
    let mut root = login(a, V5, "dev-r", "root", "root-pw").await;
    assert_eq!(sub_code(&mut root, 1, "secret/#", QoS::AtMostOnce).await, 0);
    assert_eq!(sub_code(&mut alice, 3, "secret/#", QoS::AtMostOnce).await, 0x87);
    let seen = w.seen();
    let r = seen.iter().find(|s| s.path == "/emqttd/superuser").expect("superuser request");
    assert_eq!(r.method, "POST");
    assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v == "application/x-www-form-urlencoded"));
    assert!(String::from_utf8_lossy(&r.body).contains("username="), "form body");
}

// ---------------------------------------------------------------------------
// HTTPS: the test CA, a client certificate the webhook requires

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_ca_and_client_certificate() {
    let Some(dir) = services::get("PORTCULLIS_TEST_TLS_DIR") else { return };
    let d = PathBuf::from(&dir);
    let w = Webhook::start(Some(Tls {
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.pem")),
    }))
    .await;
    let f = |n: &str| format!("{:?}", d.join(n).display().to_string());
    let good = format!(
        "tls = {{ enable = true, ca_file = {}, cert_file = {}, key_file = {} }}",
        f("ca.pem"),
        f("client.pem"),
        f("client.key")
    );
    let url = format!("{}/mqtt/auth", w.base());
    let cfg = listeners(&[("good", "default"), ("nocert", "nocert"), ("wrongca", "wrongca")])
        + &head(&["tls"], &["tls_acl"])
        + "[auth.chains]\nnocert = [\"nocert\"]\nwrongca = [\"wrongca\"]\n"
        + &hook("auth", "tls", &url, &good)
        + &hook("acl", "tls_acl", &format!("{}/mqtt/acl", w.base()), &good)
        + &hook("auth", "nocert", &url, &format!("tls = {{ enable = true, ca_file = {} }}", f("ca.pem")))
        + &hook("auth", "wrongca", &url, &format!("tls = {{ enable = true, ca_file = {} }}", f("client.pem")));
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    expect(addrs[0], "alice", "alice-pw", OK).await;
    expect(addrs[0], "alice", "x", BAD_CREDENTIALS).await;
    let mut alice = login(addrs[0], V5, "tls-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "secret/t", QoS::AtLeastOnce, 2, false).await);
    // No client certificate: the webhook refuses the handshake. A CA that
    // did not sign the webhook's certificate: we refuse it. Outages both.
    let before = w.count();
    expect(addrs[1], "alice", "alice-pw", UNAVAILABLE).await;
    expect(addrs[2], "alice", "alice-pw", UNAVAILABLE).await;
    assert_eq!(w.count(), before, "no request got through without TLS trust");
}

// ---------------------------------------------------------------------------
// Down at start, up, stopped and restarted; on_error deny and ignore; $SYS
// health

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_at_start_then_stopped_and_restarted() {
    let mut w = Webhook::start(None).await;
    w.stop().await;
    let (_d, file) = file_provider();
    let url = format!("{}/mqtt/auth", w.base());
    let cfg = listeners(&[("strict", "default"), ("lenient", "lenient"), ("status", "status")])
        + "[sys]\ninterval = \"1s\"\n"
        + &head(&["strict"], &[])
        + "[auth.chains]\nlenient = [\"lenient\", \"file\"]\nstatus = [\"anon\"]\n[auth.anonymous.anon]\n"
        + &hook("auth", "strict", &url, "")
        + &hook("auth", "lenient", &url, "on_error = \"ignore\"")
        + &file;
    let mut b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    let (strict, lenient, status) = (addrs[0], addrs[1], addrs[2]);

    let t = Instant::now();
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    expect(strict, "alice", "wrong", UNAVAILABLE).await;
    assert!(t.elapsed() < Duration::from_secs(8), "four CONNECTs took {:?}", t.elapsed());
    expect(lenient, "fileuser", "file-pw", OK).await;
    expect(lenient, "alice", "alice-pw", BAD_CREDENTIALS).await; // skipped, then no_match
    assert_eq!(
        portcullis_tests::kit::sys_fresh(status, "auth/default/strict/health", Duration::from_secs(5)).await,
        "0"
    );

    w.restart().await;
    expect(strict, "alice", "alice-pw", OK).await;
    expect(strict, "alice", "wrong", BAD_CREDENTIALS).await;
    expect(lenient, "alice", "alice-pw", OK).await;
    assert_eq!(
        portcullis_tests::kit::sys_fresh(status, "auth/default/strict/health", Duration::from_secs(5)).await,
        "1"
    );

    // Stopped mid-test (keep-alive connections closed too), then back.
    w.stop().await;
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    expect(lenient, "fileuser", "file-pw", OK).await;
    w.restart().await;
    expect(strict, "alice", "alice-pw", OK).await;

    // 5xx is an outage, not a deny; a redirect is a bad answer (never followed).
    w.set_fail(Some(503));
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    w.set_fail(Some(302));
    expect(strict, "alice", "alice-pw", UNAVAILABLE).await;
    w.set_fail(None);
    expect(strict, "alice", "alice-pw", OK).await;
    assert!(b.alive());
    let log = b.log();
    assert!(!log.contains("alice-pw"), "passwords are never logged");
    let _ = b.terminate();
}

/// emqttd mode against a wrong URL that answers 200 with an unrelated
/// body: nobody is admitted (the answer is unreadable: server unavailable,
/// per on_error), neither as a user nor as a superuser nor by the ACL.
/// Before, any 200 was an allow. With allow_body = "" only an empty 200 is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqttd_mode_needs_an_explicit_result() {
    let w = Webhook::start(None).await;
    let wrong = format!("{}/unrelated", w.base());
    for extra in ["", "allow_body = \"\""] {
        let cfg = head(&["legacy"], &[]) + &hook("auth", "legacy", &wrong, &format!("response = \"emqttd\"\n{extra}"));
        let b = Broker::start(&cfg);
        expect(b.addr, "alice", "alice-pw", UNAVAILABLE).await;
        expect(b.addr, "mallory", "anything", UNAVAILABLE).await;
        assert!(b.wait_log("without a result", Duration::from_secs(2)), "{extra}: {}", b.log());
    }
    // A superuser request sent to the wrong URL makes nobody a superuser;
    // an ACL request there allows nothing.
    let (_d, file) = file_provider();
    let cfg = head(&["legacy", "file"], &["legacy_acl"])
        + &hook(
            "auth",
            "legacy",
            &format!("{}/emqttd/auth", w.base()),
            &format!("response = \"emqttd\"\nallow_body = \"\"\nsuperuser = {{ url = \"{wrong}\" }}"),
        )
        + &file
        + &hook("acl", "legacy_acl", &wrong, "response = \"emqttd\"\non_error = \"ignore\"");
    let b = Broker::start(&cfg);
    expect(b.addr, "root", "root-pw", UNAVAILABLE).await; // the superuser answer is unreadable
    let mut c = login(b.addr, V5, "f1", "fileuser", "file-pw").await;
    assert!(!published(&mut c, "any/topic", QoS::AtLeastOnce, 1, false).await, "the ACL webhook allowed");
}

// ---------------------------------------------------------------------------
// A slow webhook: the request timeout, and the chain's timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_webhook_hits_the_timeout() {
    let w = Webhook::start(None).await;
    let url = format!("{}/mqtt/auth", w.base());
    let cfg = listeners(&[("request", "default"), ("chain", "chain")])
        + &head(&["by_request"], &[])
        + "[auth.chains]\nchain = [\"by_chain\"]\n"
        + &hook("auth", "by_request", &url, "request_timeout = \"1s\"\ntimeout = \"10s\"")
        + &hook("auth", "by_chain", &url, "request_timeout = \"10s\"\ntimeout = \"1s\"");
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 2);
    w.set_delay(Duration::from_secs(5));
    for addr in addrs {
        let t = Instant::now();
        assert_eq!(code(addr, V5, "alice", "alice-pw").await, UNAVAILABLE.1);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "took {took:?}");
    }
    assert!(b.wait_log("webhook did not answer within", Duration::from_secs(2)), "{}", b.log());
    // Timeouts are not retried: one request per CONNECT.
    assert_eq!(w.count(), 2);
}

// ---------------------------------------------------------------------------
// THE CONCURRENCY CAP: with the webhook answering after 5 s, CONNECTs
// beyond max_concurrency are resolved per on_error at once, the ones
// within it when the chain's timeout fires, and clients of another
// listener with another chain are not slowed down at all.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_keeps_a_slow_webhook_from_stalling_connects() {
    let w = Webhook::start(None).await;
    let (_d, file) = file_provider();
    let url = format!("{}/mqtt/auth", w.base());
    let cap = "max_concurrency = 2\nrequest_timeout = \"10s\"\ntimeout = \"2s\"";
    let cfg = listeners(&[("hooked", "default"), ("lenient", "lenient"), ("other", "other")])
        + &head(&["hook"], &[])
        + "[auth.chains]\nlenient = [\"hook_lenient\", \"file\"]\nother = [\"file\"]\n"
        + &hook("auth", "hook", &url, cap)
        + &hook("auth", "hook_lenient", &url, &format!("{cap}\non_error = \"ignore\""))
        + &file;
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    let (hooked, lenient, other) = (addrs[0], addrs[1], addrs[2]);
    w.set_delay(Duration::from_secs(5));

    // 8 CONNECTs at once on the hooked listener (on_error = deny).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(tokio::spawn(async move {
            let (_, c) = try_login(hooked, V5, &format!("storm-{i}"), Some(&format!("user{i}")), Some("pw")).await;
            (c, started.elapsed())
        }));
    }
    // Meanwhile another listener with another chain answers at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let t = Instant::now();
        let (_, c) = try_login(other, V5, &format!("other-{i}"), Some("fileuser"), Some("file-pw")).await;
        assert_eq!(c, Some(0));
        assert!(t.elapsed() < Duration::from_millis(500), "other listener slowed down: {:?}", t.elapsed());
    }
    let mut fast = 0;
    for t in tasks {
        let (c, took) = t.await.expect("task");
        assert_eq!(c, Some(UNAVAILABLE.1), "resolved per on_error = deny");
        assert!(took < Duration::from_secs(4), "resolved within the timeout, took {took:?}");
        if took < Duration::from_millis(1500) {
            fast += 1;
        }
    }
    assert!(fast >= 6, "the {fast} CONNECTs beyond the cap of 2 failed at once");
    assert_eq!(w.count(), 2, "only the capped number of calls reached the webhook");
    assert!(b.log().contains("calls already in flight (max_concurrency)"), "{}", b.log());

    // on_error = ignore: beyond the cap, the next provider decides at once.
    let mut tasks = Vec::new();
    let started = Instant::now();
    for i in 0..6 {
        tasks.push(tokio::spawn(async move {
            let (_, c) = try_login(lenient, V5, &format!("len-{i}"), Some("fileuser"), Some("file-pw")).await;
            (c, started.elapsed())
        }));
    }
    let mut fast = 0;
    for t in tasks {
        let (c, took) = t.await.expect("task");
        assert_eq!(c, Some(0), "the file provider admits fileuser");
        if took < Duration::from_millis(1500) {
            fast += 1;
        }
    }
    assert!(fast >= 4, "beyond the cap the chain moved on at once ({fast} fast)");
}

// ---------------------------------------------------------------------------
// Cache-Control: max-age on an allow caps how long the auth cache keeps it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_max_age_sets_the_cache_ttl() {
    let w = Webhook::start(None).await;
    let cfg = "[auth]\nchain = [\"hook\"]\n[auth.cache]\nttl_allow = \"5m\"\njitter = 0.0\n".to_string()
        + &hook("auth", "hook", &format!("{}/mqtt/auth", w.base()), "");
    let b = Broker::start(&cfg);
    // No header: the second CONNECT is served from the cache.
    expect(b.addr, "alice", "alice-pw", OK).await;
    let n = w.count();
    expect(b.addr, "alice", "alice-pw", OK).await;
    assert_eq!(w.count(), n, "cached");
    // max-age=0: never cached.
    w.set_max_age(Some(0));
    expect(b.addr, "bob", "bob-pw", OK).await;
    let n = w.count();
    expect(b.addr, "bob", "bob-pw", OK).await;
    assert_eq!(w.count(), n + 2, "max-age=0 is not cached");
    // max-age=1: cached for a second only.
    w.set_max_age(Some(1));
    assert_eq!(code(b.addr, V3, "root", "root-pw").await, 0);
    let n = w.count();
    assert_eq!(code(b.addr, V3, "root", "root-pw").await, 0);
    assert_eq!(w.count(), n, "cached within max-age");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(code(b.addr, V3, "root", "root-pw").await, 0);
    assert_eq!(w.count(), n + 1, "asked again after max-age");
}

// ---------------------------------------------------------------------------
// Injection attempts: encoded harmlessly, or refused

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_are_encoded_or_refused() {
    let w = Webhook::start(None).await;
    // The username goes in the query string, a JSON body, a form body and
    // a header.
    let extra = "headers = { X-Mqtt-User = \"${username}\" }";
    let form = "body_format = \"form\"";
    let get = "method = \"get\"";
    let cfg = listeners(&[("json", "default"), ("form", "form"), ("get", "get")])
        + &head(&["json"], &[])
        + "[auth.chains]\nform = [\"form\"]\nget = [\"get\"]\n"
        + &hook("auth", "json", &format!("{}/mqtt/auth?u=${{username}}", w.base()), extra)
        + &hook("auth", "form", &format!("{}/mqtt/auth?u=${{username}}", w.base()), form)
        + &hook("auth", "get", &format!("{}/mqtt/auth?u=${{username}}", w.base()), get);
    let b = Broker::start_with_config(&cfg);
    let addrs = listener_addrs(&b, 3);
    let attempts = [
        "../admin",
        "../../etc/passwd",
        "alice&admin=1",
        "alice&password=alice-pw",
        "{\"$ne\": null}",
        "alice\", \"password\": \"alice-pw",
        "alice%26admin%3D1",
        "alice#",
        "alice?x=1",
        "alice\r\nX-Admin: 1",
        "alice\nX-Admin: 1",
    ];
    for addr in &addrs {
        for u in attempts {
            let (_, c) = try_login(*addr, V5, "inj", Some(u), Some("wrong")).await;
            assert!(c.is_none_or(|c| c != 0), "{u:?} admitted");
        }
    }
    for s in w.seen() {
        assert_eq!(s.path, "/mqtt/auth", "no path traversal");
        assert!(!s.fields.contains_key("admin"), "no injected field: {:?}", s.fields);
        let u = &s.fields["username"];
        assert!(attempts.contains(&u.as_str()), "the username arrived intact: {u:?}");
        assert_eq!(&s.fields["u"], u, "query value intact");
        assert_eq!(s.fields["password"], "wrong");
        assert!(!s.headers.iter().any(|(k, _)| k == "x-admin"), "no injected header");
    }
    // CR/LF cannot go in a header: refused without a request on the JSON
    // listener; the others sent it safely encoded.
    let with_crlf = w.seen().iter().filter(|s| s.fields["username"].contains('\n')).count();
    assert_eq!(with_crlf, 4, "form and get listeners sent both CR/LF names, json none");
    // The webhook's answer for the password in the injected field: denied.
    expect(addrs[0], "alice", "alice-pw", OK).await;
    assert!(b.log().lines().all(|l| !l.contains("panicked")));
}

// ---------------------------------------------------------------------------
// Config errors name the key and stop the broker.

#[test]
fn config_errors_name_the_key() {
    let cases = [
        ("url = \"http://127.0.0.1:1/users/${username}\"", "auth.http.main: url: placeholders go in the query string"),
        ("url = \"https://127.0.0.1:1/auth\"", "auth.http.main: url: an https URL needs tls.enable"),
        ("url = \"http://127.0.0.1:1/a\"\nmax_concurrency = 0", "auth.http.main: max_concurrency: must be at least 1"),
        ("url = \"http://127.0.0.1:1/a\"\nignore_status = [\"4x\"]", "auth.http.main: ignore_status: \"4x\""),
        ("url = \"http://127.0.0.1:1/a\"\nbody = { u = \"${usr}\" }", "auth.http.main: body.u: unknown placeholder"),
        ("url = \"http://127.0.0.1:1/a\"\nheaders = { \"bad header\" = \"x\" }", "headers: \"bad header\""),
        ("url = \"http://127.0.0.1:1/a\"\nsuperuser = { url = \"ftp://x/\" }", "auth.http.main: superuser.url:"),
        ("url = \"http://127.0.0.1:1/a\"\nbody = { t = \"${topic}\" }", "cannot be used here"),
    ];
    for (table, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        let cfg = format!(
            "[[listeners]]\nname = \"t\"\nbind = \"127.0.0.1:0\"\n[auth]\nchain = [\"main\"]\n[auth.http.main]\n{table}\n"
        );
        std::fs::write(&path, cfg).expect("write");
        let out = run_bounded(Command::new(portcullis_tests::binary()).arg("--config").arg(&path));
        assert!(!out.0, "{table}: the broker must not start");
        assert!(out.1.contains(want), "{table}: expected {want:?} in:\n{}", out.1);
    }
}

// ---------------------------------------------------------------------------
// The documented examples work as written (only the address changed).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_and_shipped_examples_work() {
    let w = Webhook::start(None).await;
    let host = w.addr.to_string();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = &readme[readme.find("\n## HTTP webhooks\n").expect("README has an HTTP section")..];
    let mut blocks = section.split("```toml\n").skip(1).map(|b| b.split("```").next().unwrap_or(""));
    let main = blocks.next().expect("the config block");
    let b = Broker::start(&(main.replace("127.0.0.1:8080", &host) + "[auth.cache]\nmax_entries = 0\n"));
    expect(b.addr, "alice", "alice-pw", OK).await;
    expect(b.addr, "alice", "x", BAD_CREDENTIALS).await;
    let mut alice = login(b.addr, V5, "readme-a", "alice", "alice-pw").await;
    assert!(published(&mut alice, "alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "secret/t", QoS::AtLeastOnce, 2, false).await);
    drop(b);

    // The emqttd migration block, against the webhook's emqttd endpoints.
    let legacy = blocks.next().expect("the emqttd block").replace("127.0.0.1:8991/mqtt", &format!("{host}/emqttd"));
    let b = Broker::start(&(legacy + "[auth]\nchain = [\"legacy\"]\n[acl]\nchain = [\"legacy_acl\"]\n"));
    expect(b.addr, "alice", "alice-pw", OK).await;
    expect(b.addr, "alice", "x", BAD_CREDENTIALS).await;
    let mut root_client = login(b.addr, V5, "readme-r", "root", "root-pw").await;
    assert_eq!(sub_code(&mut root_client, 1, "secret/#", QoS::AtMostOnce).await, 0);
    let mut alice = login(b.addr, V5, "readme-a2", "alice", "alice-pw").await;
    assert!(published(&mut alice, "alice/t", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut alice, "bob/t", QoS::AtLeastOnce, 2, false).await);
    drop(b);

    let shipped = std::fs::read_to_string(root.join("etc/portcullis.toml")).expect("etc/portcullis.toml");
    let example = &shipped[shipped.find("# [auth.http.webhook]").expect("the commented HTTP example")..];
    let uncommented: String = example
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.trim_start_matches("# ").trim_start_matches('#')))
        .collect();
    let cfg = uncommented.replace("127.0.0.1:8080", &host)
        + "[auth]\nchain = [\"webhook\"]\n[auth.cache]\nmax_entries = 0\n[acl]\nchain = [\"webhook_acl\"]\n";
    let b = Broker::start(&cfg);
    expect(b.addr, "bob", "bob-pw", OK).await;
    let mut bob = login(b.addr, V5, "etc-b", "bob", "bob-pw").await;
    assert_eq!(sub_code(&mut bob, 1, "bob/x", QoS::AtMostOnce).await, 0);
    assert_eq!(sub_code(&mut bob, 2, "alice/x", QoS::AtMostOnce).await, 0x87);
}
