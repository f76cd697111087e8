//! A session ends when its token expires (`disconnect_after_expire`, the
//! default): an MQTT 5 client gets DISCONNECT 0xA0 (Maximum connect time)
//! with the reason string "authentication expired" within a second of the
//! token's `exp`; a 3.1.1 client's connection is closed. With
//! `disconnect_after_expire = false` the session outlives the token.
//! Tokens are signed by PyJWT.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_core::codec::{Packet, ProtocolVersion};
use portcullis_tests::backend::*;
use portcullis_tests::jwt::{hs256, now_secs};
use portcullis_tests::Broker;

const SECRET: &str = "expiry-test-secret-0123456789abcdef";

fn config(disconnect: bool) -> String {
    format!(
        "[auth]\nchain = [\"t\"]\n[auth.guard]\nenabled = false\n\
         [auth.jwt.t]\nalgorithm = \"HS256\"\nsecret = {SECRET:?}\ndisconnect_after_expire = {disconnect}\n"
    )
}

fn wall(exp: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(exp)
}

/// How far past `exp` the wall clock is now (negative: before).
fn past(exp: u64) -> f64 {
    match SystemTime::now().duration_since(wall(exp)) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_client_is_disconnected_with_0xa0_within_a_second_of_exp() {
    let b = Broker::start(&config(true));
    let exp = now_secs() + 3;
    let token = hs256(SECRET, &serde_json::json!({"sub": "dev", "exp": exp}));
    let mut raw = login(b.addr, ProtocolVersion::V5, "exp5", "dev", &token).await;
    assert!(past(exp) < 0.0, "the token expired before the test could use it");
    let started = Instant::now();
    let got = raw.recv_timeout(Duration::from_secs(6)).await;
    let late = past(exp);
    match got {
        Ok(Some(Packet::Disconnect(d))) => {
            assert_eq!(d.reason, 0xA0, "DISCONNECT reason");
            assert_eq!(d.properties.reason_string.as_deref(), Some("authentication expired"));
        }
        other => panic!("expected DISCONNECT 0xA0, got {other:?} after {:?}", started.elapsed()),
    }
    assert!(late >= -0.05, "disconnected {:.3} s before exp", -late);
    assert!(late < 1.0, "disconnected {late:.3} s after exp");
    assert!(b.wait_log("authentication expired", Duration::from_secs(5)), "logged with its reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v311_client_is_closed_at_exp() {
    let b = Broker::start(&config(true));
    let exp = now_secs() + 3;
    let token = hs256(SECRET, &serde_json::json!({"sub": "dev", "exp": exp}));
    let mut raw = login(b.addr, ProtocolVersion::V311, "exp3", "dev", &token).await;
    let got = raw.expect_closed(Duration::from_secs(6)).await;
    assert!(got.is_empty(), "no packet before the close: {got:?}");
    let late = past(exp);
    assert!((-0.05..1.0).contains(&late), "closed {late:.3} s after exp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_disconnect_after_expire_the_session_outlives_the_token() {
    let b = Broker::start(&config(false));
    let exp = now_secs() + 2;
    let token = hs256(SECRET, &serde_json::json!({"sub": "dev", "exp": exp}));
    let mut raw = login(b.addr, ProtocolVersion::V5, "keep", "dev", &token).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(past(exp) > 0.5);
    // Still connected: a PINGREQ is answered.
    raw.send(&[0xC0, 0x00]).await;
    match raw.recv_timeout(Duration::from_secs(3)).await {
        Ok(Some(Packet::PingResp)) => {}
        other => panic!("expected PINGRESP after exp, got {other:?}"),
    }
    // The expired token itself no longer gets in.
    let (_, c) = try_login(b.addr, ProtocolVersion::V5, "again", Some("dev"), Some(&token)).await;
    assert_eq!(c, Some(0x86), "expired token refused at CONNECT");
}
