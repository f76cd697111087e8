//! `use_jwks = true` through the real broker against an HTTPS JWKS endpoint
//! in this process (`portcullis_tests::jwt::Endpoint`) that rotates keys,
//! fails and serves bad documents. Keys are made by jwcrypto, tokens
//! signed by PyJWT with a `kid`.
//!
//! - rotation is picked up by the periodic refresh;
//! - an outage (503, a closed endpoint) and bad documents keep the last
//!   good key set;
//! - an unknown `kid` fetches the set early at most once per
//!   `min_refetch_interval`;
//! - a JWKS that never answered fails closed as an outage (v5 0x88), not
//!   as bad credentials, and the first good answer lets tokens in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::codec::ProtocolVersion;
use portcullis_tests::backend::*;
use portcullis_tests::jwt::{jwks_doc, jwks_keys, now_secs, sign_with, Endpoint};
use portcullis_tests::Broker;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// An endpoint whose answer the test swaps: (status, body).
fn settable() -> (Arc<Mutex<(u16, String)>>, portcullis_tests::jwt::Answer) {
    let current = Arc::new(Mutex::new((503, String::new())));
    let c = Arc::clone(&current);
    (current, Box::new(move |_method: &str, _body: &[u8]| c.lock().expect("answer").clone()))
}

fn config(ep: &Endpoint, refresh: &str, min_refetch: &str) -> String {
    format!(
        "[auth]\nchain = [\"idp\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [auth.jwt.idp]\nuse_jwks = true\nendpoint = {:?}\nrefresh_interval = {refresh:?}\n\
         min_refetch_interval = {min_refetch:?}\nrequest_timeout = \"2s\"\n{}\n",
        ep.url("/jwks"),
        ep.tls()
    )
}

fn claims() -> serde_json::Value {
    serde_json::json!({"sub": "dev", "exp": now_secs() + 600})
}

async fn code(addr: std::net::SocketAddr, token: &str) -> u8 {
    let (_, c) = try_login(addr, V5, "jwks-client", Some("dev"), Some(token)).await;
    c.expect("CONNACK")
}

/// Waits (bounded) until the endpoint has answered `n` requests.
async fn until_count(ep: &Endpoint, n: u64, within: Duration) {
    let end = Instant::now() + within;
    while ep.count() < n {
        assert!(Instant::now() < end, "endpoint saw {} requests, want {n} within {within:?}", ep.count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_outages_keep_the_last_good_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = jwks_keys(dir.path(), &["ec-1", "rsa-2"]);
    let (answer, f) = settable();
    *answer.lock().expect("answer") = (200, jwks_doc(&[&keys["ec-1"]]));
    let ep = Endpoint::start(f).await;
    let b = Broker::start(&config(&ep, "1s", "1h"));
    let t1 = sign_with(dir.path(), "ec-1", &claims());
    let t2 = sign_with(dir.path(), "rsa-2", &claims());
    until_count(&ep, 1, Duration::from_secs(10)).await;
    assert_eq!(code(b.addr, &t1).await, 0, "ec-1 in");
    assert_eq!(code(b.addr, &t2).await, 0x86, "rsa-2 not published yet");

    // Outage: 503, then a bad document of each kind. ec-1 keeps working.
    for bad in [
        (503, String::new()),
        (200, "not json".to_string()),
        (200, "{\"keys\": []}".to_string()),
        (200, "{\"keys\": \"x\"}".to_string()),
        (200, "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\", \"kid\": \"ec-1\"}]}".to_string()),
    ] {
        *answer.lock().expect("answer") = bad.clone();
        let seen = ep.count();
        until_count(&ep, seen + 2, Duration::from_secs(10)).await;
        assert_eq!(code(b.addr, &t1).await, 0, "last good keys kept through {bad:?}");
    }

    // Rotation: the set now holds rsa-2 only.
    *answer.lock().expect("answer") = (200, jwks_doc(&[&keys["rsa-2"]]));
    let seen = ep.count();
    until_count(&ep, seen + 2, Duration::from_secs(10)).await;
    assert_eq!(code(b.addr, &t2).await, 0, "rsa-2 in after rotation");
    assert_eq!(code(b.addr, &t1).await, 0x86, "ec-1 out after rotation");
    assert!(b.wait_log("JWKS fetch failed", Duration::from_secs(1)), "failed fetches are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = jwks_keys(dir.path(), &["k1", "k2", "k3"]);
    let (answer, f) = settable();
    *answer.lock().expect("answer") = (200, jwks_doc(&[&keys["k1"]]));
    let ep = Endpoint::start(f).await;
    let b = Broker::start(&config(&ep, "1h", "3s"));
    until_count(&ep, 1, Duration::from_secs(10)).await;
    let t1 = sign_with(dir.path(), "k1", &claims());
    let t2 = sign_with(dir.path(), "k2", &claims());
    // k3 is never published: every token of it is an unknown kid.
    let t3 = sign_with(dir.path(), "k3", &claims());
    assert_eq!(code(b.addr, &t1).await, 0);
    assert_eq!(ep.count(), 1, "a known kid fetches nothing");

    // k2 appears; wait out the interval since the start-up fetch.
    *answer.lock().expect("answer") = (200, jwks_doc(&[&keys["k1"], &keys["k2"]]));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(code(b.addr, &t2).await, 0, "an unknown kid fetched the new set");
    assert_eq!(ep.count(), 2, "one early fetch");

    // Within the interval: unknown kids are refused without a fetch.
    for _ in 0..5 {
        assert_eq!(code(b.addr, &t3).await, 0x86);
    }
    assert_eq!(ep.count(), 2, "no fetch within min_refetch_interval");

    // After it: one fetch for a burst of unknown kids.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (addr, t) = (b.addr, t3.clone());
        tasks.push(tokio::spawn(async move { code(addr, &t).await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 0x86);
    }
    assert_eq!(ep.count(), 3, "one fetch for five unknown kids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_never_answered_is_an_outage_not_a_deny() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = jwks_keys(dir.path(), &["k1"]);
    let (answer, f) = settable();
    let ep = Endpoint::start(f).await;
    let b = Broker::start(&config(&ep, "1h", "1s"));
    until_count(&ep, 1, Duration::from_secs(10)).await;
    let t1 = sign_with(dir.path(), "k1", &claims());
    assert_eq!(code(b.addr, &t1).await, 0x88, "no key set yet: server unavailable, not bad credentials");
    let (_, c) = try_login(b.addr, ProtocolVersion::V311, "c3", Some("dev"), Some(&t1)).await;
    assert_eq!(c, Some(0x03), "3.1.1: server unavailable");
    // The endpoint comes up: the next token (after the interval) fetches.
    *answer.lock().expect("answer") = (200, jwks_doc(&[&keys["k1"]]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(code(b.addr, &t1).await, 0, "keys fetched on demand");
    // Not JWT-shaped: not this provider's client; no_match refuses it
    // (with a password: bad credentials) and nothing is fetched for it.
    let seen = ep.count();
    let (_, c) = try_login(b.addr, V5, "c", Some("dev"), Some("plain-password")).await;
    assert_eq!(c, Some(0x86));
    assert_eq!(ep.count(), seen, "no fetch for a password");
}
