//! Long-lived devices with short-lived tokens: a client that connected with
//! the token enhanced-auth method (`[auth.enhanced_token]`, method `JWT`)
//! renews its JWT with MQTT 5 re-authentication (AUTH 0x19) before the
//! token expires and stays connected past the old `exp`, with the new
//! token's ACL claim in force; a client that does not renew is
//! disconnected with 0xA0 within a second of `exp`. Tokens by PyJWT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_core::codec::{Auth, Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::backend::published;
use portcullis_tests::jwt::{hs256, now_secs};
use portcullis_tests::kit::connect_packet;
use portcullis_tests::{Broker, Raw};

const SECRET: &str = "reauth-test-secret-0123456789abcdef";

fn config() -> String {
    format!(
        "[auth]\nchain = [\"t\"]\n[auth.guard]\nenabled = false\n\
         [auth.enhanced_token.jwt]\n\
         [acl]\nno_match = \"deny\"\nchain = [\"tokens\"]\n[acl.inline.tokens]\n\
         [auth.jwt.t]\nalgorithm = \"HS256\"\nsecret = {SECRET:?}\n"
    )
}

/// A token for `dev` that may publish under `allowed/#` only, valid until `exp`.
fn token(exp: u64, allowed: &str) -> String {
    hs256(SECRET, &serde_json::json!({"sub": "dev", "exp": exp, "acl": {"pub": [format!("{allowed}/#")]}}))
}

/// How far past `exp` the wall clock is now (negative: before).
fn past(exp: u64) -> f64 {
    let at = UNIX_EPOCH + Duration::from_secs(exp);
    match SystemTime::now().duration_since(at) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

async fn until(exp: u64, offset: f64) {
    let wait = offset - past(exp);
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

async fn token_connect(addr: std::net::SocketAddr, client_id: &str, token: &str) -> Raw {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, true);
    c.username = Some("dev".into());
    c.properties.authentication_method = Some("JWT".into());
    c.properties.authentication_data = Some(Bytes::copy_from_slice(token.as_bytes()));
    let (raw, ack) = portcullis_tests::kit::open(addr, c).await;
    assert_eq!(ack.code, 0, "{ack:?}");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_token_keeps_the_session_past_exp_with_the_new_acl() {
    let b = Broker::start(&config());
    let exp = now_secs() + 3;
    let mut renewed = token_connect(b.addr, "renews", &token(exp, "old")).await;
    let mut lapsed = token_connect(b.addr, "lapses", &token(exp, "old")).await;
    assert!(past(exp) < -1.2, "the token is about to expire before the test could use it");
    assert!(published(&mut renewed, "old/x", QoS::AtLeastOnce, 1, false).await, "the first token's ACL");
    assert!(!published(&mut renewed, "new/x", QoS::AtLeastOnce, 2, false).await, "not yet the second's");

    // About a second before exp: AUTH 0x19 with a fresh token.
    until(exp, -1.0).await;
    let fresh = token(now_secs() + 60, "new");
    let reauth = Packet::Auth(Auth {
        reason: 0x19,
        properties: Properties {
            authentication_method: Some("JWT".into()),
            authentication_data: Some(Bytes::copy_from_slice(fresh.as_bytes())),
            ..Properties::default()
        },
    });
    renewed.send_packet(&reauth).await;
    match renewed.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Packet::Auth(a))) => assert_eq!(a.reason, 0, "AUTH success"),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }

    // The one that did not renew is closed with 0xA0 within a second of exp.
    match lapsed.recv_timeout(Duration::from_secs(6)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0xA0),
        other => panic!("expected DISCONNECT 0xA0 for the lapsed client, got {other:?}"),
    }
    let late = past(exp);
    assert!((-0.05..1.0).contains(&late), "lapsed client closed {late:.3} s after exp");

    // Past the old exp by more than a second: still connected, new ACL.
    until(exp, 1.5).await;
    renewed.send(&[0xC0, 0x00]).await;
    match renewed.recv_timeout(Duration::from_secs(3)).await {
        Ok(Some(Packet::PingResp)) => {}
        other => panic!("expected PINGRESP past the old exp, got {other:?}"),
    }
    assert!(published(&mut renewed, "new/x", QoS::AtLeastOnce, 3, false).await, "the new token's ACL");
    assert!(!published(&mut renewed, "old/x", QoS::AtLeastOnce, 4, false).await, "the old token's ACL is gone");
}
