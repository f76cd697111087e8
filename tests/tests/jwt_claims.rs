//! What a token's claims grant, through the real broker: the ACL claim
//! (EMQX's `pub`/`sub`/`all` lists with `${username}`/`${clientid}`, and
//! EMQX 5's rule list) enforced by the ACL chain's `inline` provider, the
//! superuser claim, `iss`; and OAuth 2 token introspection (RFC 7662)
//! against an HTTPS endpoint in the tests crate. Tokens by PyJWT.

use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_tests::backend::*;
use portcullis_tests::jwt::{hs256, now_secs, Endpoint};
use portcullis_tests::Broker;

const V5: ProtocolVersion = ProtocolVersion::V5;
const SECRET: &str = "claims-test-secret-0123456789abcdef";

fn config(extra: &str) -> String {
    format!(
        "[auth]\nchain = [\"t\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [acl]\nno_match = \"deny\"\nchain = [\"tokens\"]\n[acl.inline.tokens]\n\
         [auth.jwt.t]\nalgorithm = \"HS256\"\nsecret = {SECRET:?}\nsuperuser_claim = \"is_superuser\"\n{extra}\n"
    )
}

fn token(claims: serde_json::Value) -> String {
    let mut c = claims;
    c["exp"] = serde_json::json!(now_secs() + 600);
    hs256(SECRET, &c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_claim_in_both_forms_and_the_superuser_claim() {
    let b = Broker::start(&config("issuer = [\"idp\"]"));
    // EMQX's object form: only the listed topics.
    let t = token(serde_json::json!({
        "iss": "idp",
        "acl": {"pub": ["up/${username}/#"], "sub": ["down/${clientid}"], "all": ["both/x"]}
    }));
    let mut c = login(b.addr, V5, "dev-7", "u1", &t).await;
    assert!(published(&mut c, "up/u1/temp", QoS::AtLeastOnce, 1, false).await, "pub list");
    assert!(!published(&mut c, "up/u2/temp", QoS::AtLeastOnce, 2, false).await, "another user's topic");
    assert!(!published(&mut c, "down/dev-7", QoS::AtLeastOnce, 3, false).await, "sub-only topic");
    assert_eq!(sub_code(&mut c, 4, "down/dev-7", QoS::AtLeastOnce).await, 1, "sub list");
    assert_eq!(sub_code(&mut c, 5, "up/u1/temp", QoS::AtLeastOnce).await, 0x87, "pub-only topic");
    assert!(published(&mut c, "both/x", QoS::AtLeastOnce, 6, false).await, "all list");
    assert!(!published(&mut c, "other", QoS::AtLeastOnce, 7, false).await, "unlisted");

    // EMQX 5's rule list: first match decides; QoS limits.
    let t = token(serde_json::json!({
        "iss": "idp",
        "acl": [
            {"permission": "deny", "action": "publish", "topic": "t/secret"},
            {"permission": "allow", "action": "publish", "topic": "t/#", "qos": [0, 1]},
            {"permission": "allow", "action": "subscribe", "topic": "eq t/#"}
        ]
    }));
    let mut c = login(b.addr, V5, "dev-8", "u1", &t).await;
    assert!(published(&mut c, "t/a", QoS::AtLeastOnce, 1, false).await);
    assert!(!published(&mut c, "t/secret", QoS::AtLeastOnce, 2, false).await, "deny rule first");
    assert!(!published(&mut c, "t/a", QoS::ExactlyOnce, 3, false).await, "QoS 2 not listed");
    assert_eq!(sub_code(&mut c, 4, "t/#", QoS::AtMostOnce).await, 0, "eq t/#");
    assert_eq!(sub_code(&mut c, 5, "t/a", QoS::AtMostOnce).await, 0x87, "no match: no_match denies");

    // Superuser claim: the ACL chain is bypassed.
    let t = token(serde_json::json!({"iss": "idp", "is_superuser": true}));
    let mut c = login(b.addr, V5, "root", "admin", &t).await;
    assert!(published(&mut c, "anything/at/all", QoS::AtLeastOnce, 1, false).await, "superuser");
    // Not a superuser without it (and no ACL claim: no_match denies).
    let t = token(serde_json::json!({"iss": "idp", "is_superuser": "yes"}));
    let mut c = login(b.addr, V5, "plain", "admin", &t).await;
    assert!(!published(&mut c, "anything/at/all", QoS::AtLeastOnce, 1, false).await, "\"yes\" is not true");

    // A malformed ACL claim refuses the token; a wrong issuer too.
    let bad = token(serde_json::json!({"iss": "idp", "acl": {"pub": "not-a-list"}}));
    assert_eq!(code(b.addr, V5, "u1", &bad).await, 0x86, "bad acl claim");
    let wrong_iss = token(serde_json::json!({"iss": "evil"}));
    assert_eq!(code(b.addr, V5, "u1", &wrong_iss).await, 0x86, "wrong issuer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_active_inactive_and_outage() {
    // The authorization server: "good-*" tokens are active for user dev
    // with an ACL; "root" a superuser; others inactive; it checks the
    // broker's client credentials.
    let ep = Endpoint::start(Box::new(|_method: &str, body: &[u8]| {
        let form: std::collections::HashMap<String, String> =
            url_form(body).into_iter().collect::<std::collections::HashMap<_, _>>();
        let tok = form.get("token").cloned().unwrap_or_default();
        let exp = now_secs() + 600;
        if tok.starts_with("good-") {
            (200, format!("{{\"active\": true, \"sub\": \"dev\", \"exp\": {exp}, \"acl\": {{\"pub\": [\"ok/#\"]}}}}"))
        } else if tok == "root" {
            (200, format!("{{\"active\": true, \"sub\": \"dev\", \"exp\": {exp}, \"is_superuser\": true}}"))
        } else if tok == "down" {
            (503, String::new())
        } else {
            (200, "{\"active\": false}".to_string())
        }
    }))
    .await;
    let cfg = format!(
        "[auth]\nchain = [\"oauth\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [acl]\nno_match = \"deny\"\nchain = [\"tokens\"]\n[acl.inline.tokens]\n\
         [auth.jwt.oauth]\nsuperuser_claim = \"is_superuser\"\nverify_claims = {{ sub = \"${{username}}\" }}\n{}\n\
         introspection = {{ endpoint = {:?}, client_id = \"broker\", client_secret = \"s3cret\" }}\n",
        ep.tls(),
        ep.url("/introspect")
    );
    let b = Broker::start(&cfg);
    let mut c = login(b.addr, V5, "c1", "dev", "good-abc").await;
    assert!(published(&mut c, "ok/1", QoS::AtLeastOnce, 1, false).await, "ACL from the introspection answer");
    assert!(!published(&mut c, "no/1", QoS::AtLeastOnce, 2, false).await);
    let mut r = login(b.addr, V5, "c2", "dev", "root").await;
    assert!(published(&mut r, "no/1", QoS::AtLeastOnce, 1, false).await, "superuser from introspection");
    assert_eq!(code(b.addr, V5, "dev", "expired-or-revoked").await, 0x86, "inactive: bad credentials");
    assert_eq!(code(b.addr, V5, "other", "good-abc").await, 0x86, "sub must equal the username");
    assert_eq!(code(b.addr, V5, "dev", "down").await, 0x88, "endpoint failing: unavailable, not a deny");
    // The request: the token form-encoded, client credentials as Basic.
    let reqs = ep.requests();
    let (headers, body) = reqs.first().expect("a request");
    let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Basic YnJva2VyOnMzY3JldA=="), "broker:s3cret");
    assert!(String::from_utf8_lossy(body).contains("token_type_hint=access_token"));
}

fn url_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ")))
        .collect()
}
