//! Claims and key pinning without the network; the signature paths are
//! tested end to end against tokens made by PyJWT and jwcrypto
//! (tests/tests/jwt.rs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_core::codec::ProtocolVersion;
use portcullis_core::gate::{ConnectInfo, Password};
use serde_json::json;

use super::claims::{acl_rules, ClaimRules};
use super::provider::jwt_shaped;

fn info(user: &str, client: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: Arc::from(client),
        username: Some(Arc::from(user)),
        password: Some(Password::new(Bytes::from_static(b"x"))),
        peer: "127.0.0.1:1".parse().unwrap(),
        listener: Arc::from("l"),
        protocol: ProtocolVersion::V5.into(),
        cert: None,
    }
}

fn rules(leeway: u64) -> ClaimRules {
    let verify = BTreeMap::from([("sub".to_string(), "${username}".to_string())]);
    ClaimRules::new(
        Duration::from_secs(leeway),
        vec!["idp".into()],
        vec!["mqtt".into()],
        &verify,
        "acl".into(),
        "admin".into(),
    )
    .unwrap()
}

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

#[test]
fn registered_claims_with_leeway() {
    let r = rules(5);
    let ok = json!({"sub": "u", "iss": "idp", "aud": ["x", "mqtt"], "exp": NOW + 10, "nbf": NOW + 3, "iat": NOW});
    let g = r.check(&ok, now(), &info("u", "c")).unwrap();
    assert_eq!(g.expires_at, Some(UNIX_EPOCH + Duration::from_secs(NOW + 15)));
    let claim = |v: serde_json::Value| r.check(&v, now(), &info("u", "c")).unwrap_err().claim;
    assert_eq!(claim(json!({"sub": "u", "iss": "idp", "aud": "mqtt", "exp": NOW - 6})), "exp");
    assert_eq!(claim(json!({"sub": "u", "iss": "idp", "aud": "mqtt", "nbf": NOW + 6})), "nbf");
    assert_eq!(claim(json!({"sub": "u", "iss": "idp", "aud": "mqtt", "iat": NOW + 6})), "iat");
    assert_eq!(claim(json!({"sub": "u", "iss": "other", "aud": "mqtt"})), "iss");
    assert_eq!(claim(json!({"sub": "u", "iss": "idp", "aud": "web"})), "aud");
    assert_eq!(claim(json!({"sub": "u", "iss": "idp"})), "aud");
    assert_eq!(claim(json!({"sub": "v", "iss": "idp", "aud": "mqtt"})), "sub");
    assert_eq!(claim(json!({"sub": "u", "iss": "idp", "aud": "mqtt", "exp": "soon"})), "exp");
    // Within the leeway.
    assert!(r.check(&json!({"sub": "u", "iss": "idp", "aud": "mqtt", "exp": NOW - 4}), now(), &info("u", "c")).is_ok());
}

#[test]
fn superuser_only_from_a_true_claim() {
    let r = rules(0);
    let base = |admin: serde_json::Value| json!({"sub": "u", "iss": "idp", "aud": "mqtt", "admin": admin});
    assert!(r.check(&base(json!(true)), now(), &info("u", "c")).unwrap().superuser);
    assert!(!r.check(&base(json!("true")), now(), &info("u", "c")).unwrap().superuser);
    assert!(!r.check(&base(json!(1)), now(), &info("u", "c")).unwrap().superuser);
}

#[test]
fn acl_claim_forms() {
    let old = acl_rules("acl", &json!({"pub": ["t/${username}/#"], "sub": ["s/#"], "all": ["a"]})).unwrap();
    assert_eq!(old.len(), 4, "three allows and the closing deny");
    assert_eq!(old[3].origin, "jwt claim acl (topics not listed)");
    let list = acl_rules(
        "acl",
        &json!([{"permission": "allow", "action": "publish", "topic": "t/1", "qos": [1, 2]},
                {"permission": "deny", "action": "all", "topic": "#"}]),
    )
    .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].qos, Some(vec![1, 2]));
    assert!(acl_rules("acl", &json!("pub")).is_err());
    assert!(acl_rules("acl", &json!({"pub": ["a/+x"]})).is_err());
    assert!(acl_rules("acl", &json!([{"permission": "maybe", "action": "all", "topic": "#"}])).is_err());
    let many: Vec<_> = (0..300).map(|i| format!("t/{i}")).collect();
    assert!(acl_rules("acl", &json!({ "pub": many })).is_err());
}

#[test]
fn shapes() {
    assert!(jwt_shaped("eyJh.eyJz.sig"));
    assert!(jwt_shaped("eyJh.eyJz."));
    assert!(!jwt_shaped("password"));
    assert!(!jwt_shaped("a.b.c.d"));
    assert!(!jwt_shaped(".b.c"));
    assert!(!jwt_shaped("a b.c.d"));
}

fn parse(t: &str) -> super::AuthConfig {
    toml::from_str(t).expect("table")
}

fn build_err(t: &str) -> String {
    super::build("t", &parse(t)).expect_err("refused").to_string()
}

#[test]
fn every_key_parses_and_unknown_keys_are_refused() {
    let full = r#"
        from = "username"
        algorithm = "hmac-based"
        secret = "s"
        secret_base64_encoded = false
        refresh_interval = "1m"
        min_refetch_interval = "10s"
        tls = { enable = false }
        request_timeout = "2s"
        leeway = "5s"
        issuer = ["i"]
        audience = ["a"]
        verify_claims = { sub = "${username}" }
        acl_claim_name = "acl"
        superuser_claim = "su"
        disconnect_after_expire = false
        timeout = "4s"
        on_error = "ignore"
    "#;
    let c = parse(full);
    assert_eq!(c.leeway, Duration::from_secs(5));
    assert!(super::build("t", &c).is_ok());
    assert!(toml::from_str::<super::AuthConfig>("algorithm = \"HS256\"\nsecrett = \"x\"").is_err());
}

#[test]
fn build_errors_name_the_key() {
    assert!(build_err("secret = \"s\"").starts_with("algorithm:"));
    assert!(build_err("algorithm = \"HS256\"").starts_with("secret:"));
    assert!(build_err("algorithm = \"RS256\"").starts_with("public_key:"));
    assert!(build_err("algorithm = \"RS256\"\nsecret = \"s\"").starts_with("secret:"));
    assert!(build_err("algorithm = \"none\"\npublic_key = \"x\"").starts_with("algorithm:"));
    assert!(build_err("algorithm = \"public-key\"\npublic_key = \"/nonexistent.pem\"").starts_with("public_key:"));
    assert!(build_err("use_jwks = true").starts_with("endpoint:"));
    assert!(build_err("use_jwks = true\nendpoint = \"http://idp.example.com/jwks\"").contains("loopback"));
    assert!(build_err("use_jwks = true\nendpoint = \"https://idp.example.com/jwks\"").contains("tls.enable"));
    assert!(build_err("algorithm = \"HS256\"\nsecret = \"s\"\nverify_claims = { sub = \"${password}\" }")
        .starts_with("verify_claims.sub:"));
    assert!(build_err("introspection = { endpoint = \"http://127.0.0.1:1/i\", client_id = \"b\" }")
        .starts_with("introspection.client_secret:"));
}
