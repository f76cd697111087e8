//! Config validation and filter rendering (the server itself is exercised
//! end to end in tests/tests/backend_mongodb.rs).

use mongodb::bson::{doc, Bson};

use super::auth::truthy;
use super::config::{AclConfig, AuthConfig};
use crate::common::template::Values;

fn auth(text: &str) -> Result<AuthConfig, String> {
    let cfg: AuthConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    cfg.validate()?;
    Ok(cfg)
}

const BASE: &str = "uri = \"mongodb://127.0.0.1:27017\"\ndatabase = \"mqtt\"\n";

#[test]
fn defaults_are_emqx_5() {
    let c = auth(BASE).unwrap();
    assert_eq!(c.collection, "mqtt_user");
    assert_eq!((c.password_hash_field.as_str(), c.salt_field.as_str()), ("password_hash", "salt"));
    assert_eq!(c.is_superuser_field, "is_superuser");
    let a: AclConfig = toml::from_str(BASE).unwrap();
    a.validate().unwrap();
    assert_eq!((a.collection.as_str(), a.topics_field.as_str()), ("mqtt_acl", "topics"));
}

#[test]
fn bad_configs_name_the_key() {
    for (extra, key) in [
        ("filter = { username = \"alice\" }\n", "filter:"),
        ("filter = { \"${username}\" = 1 }\n", "filter.${username}:"),
        ("filter = { username = \"${password}\" }\n", "filter.username:"),
        ("username = \"u\"\n", "password:"),
        ("password_hash_field = \"$where\"\n", "password_hash_field:"),
        ("pool = { size = 0 }\n", "pool.size:"),
        ("password_hash = { algo = \"pbkdf2\" }\n", "password_hash.iterations:"),
        ("tls = { enable = true }\n", "tls.ca_file:"),
    ] {
        let e = auth(&format!("{BASE}{extra}")).unwrap_err();
        assert!(e.starts_with(key), "{extra}: {e}");
    }
    assert!(auth("uri = \"http://x\"\ndatabase = \"d\"\n").unwrap_err().starts_with("uri:"));
    assert!(auth(&format!("{BASE}bogus = 1\n")).is_err());
    let c = auth(&format!("{BASE}username = \"u\"\npassword = \"hunter2-secret\"\n")).unwrap();
    assert!(!format!("{c:?}").contains("hunter2-secret"));
}

#[test]
fn placeholders_become_string_values() {
    let c = auth(&format!(
        "{BASE}filter = {{ \"$or\" = [{{ username = \"${{username}}\" }}, {{ email = \"${{username}}\" }}], enabled = true, n = 2, tag = \"c-${{clientid}}\" }}\n"
    ))
    .unwrap();
    let f = c.compiled_filter().unwrap();
    let evil = "{\"$ne\": null}";
    let v = Values { username: Some(evil), client_id: Some("x"), ..Values::default() };
    let d = f.render(&v).unwrap();
    assert_eq!(d, doc! { "$or": [{ "username": evil }, { "email": evil }], "enabled": true, "n": 2_i64, "tag": "c-x" });
    assert!(matches!(d.get_array("$or").unwrap()[0].as_document().unwrap().get("username"), Some(Bson::String(_))));
    assert_eq!(f.render(&Values { client_id: Some("x"), ..Values::default() }), None, "no username");
}

#[test]
fn superuser_flags() {
    for (v, want) in [
        (Bson::Boolean(true), true),
        (Bson::Int32(1), true),
        (Bson::Int64(0), false),
        (Bson::String("true".into()), true),
        (Bson::String("no".into()), false),
        (Bson::Null, false),
    ] {
        assert_eq!(truthy(Some(&v)), want, "{v:?}");
    }
    assert!(!truthy(None));
}
