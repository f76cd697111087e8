//! Config validation and filter rendering (the server itself is exercised
//! end to end in tests/tests/backend_mongodb.rs).

use mongodb::bson::{doc, Bson};

use super::auth::truthy;
use super::config::{AclConfig, AuthConfig};
use crate::common::template::Values;
use crate::common::{BuildError, BuildErrorKind};

/// The table as parsed (it must parse), validated.
fn auth(text: &str) -> Result<AuthConfig, BuildError> {
    let cfg: AuthConfig = toml::from_str(text).unwrap();
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
    assert_eq!(a.sort_document().unwrap(), doc! { "_id": 1 }, "rules in a defined order by default");
    let a: AclConfig = toml::from_str(&format!("{BASE}sort = [\"-priority\", \"_id\"]\n")).unwrap();
    assert_eq!(a.sort_document().unwrap(), doc! { "priority": -1, "_id": 1 });
    for (sort, key) in [("[]", "sort"), ("[\"$natural\"]", "sort[0]"), ("[\"a\", \"-a\"]", "sort[1]")] {
        let a: AclConfig = toml::from_str(&format!("{BASE}sort = {sort}\n")).unwrap();
        assert!(a.validate().unwrap_err().is(key, BuildErrorKind::Invalid), "{sort}");
    }
}

#[test]
fn bad_configs_name_the_key() {
    use BuildErrorKind::{Invalid, Missing, Secret};
    for (extra, key, kind) in [
        ("filter = { username = \"alice\" }\n", "filter", Invalid),
        ("filter = { \"${username}\" = 1 }\n", "filter.${username}", Invalid),
        ("filter = { username = \"${password}\" }\n", "filter.username", Invalid),
        ("username = \"u\"\n", "password", Missing),
        ("username = \"u\"\npassword = { env = \"PORTCULLIS_SURELY_UNSET_VAR\" }\n", "password", Secret),
        ("password_hash_field = \"$where\"\n", "password_hash_field", Invalid),
        ("pool = { size = 0 }\n", "pool.size", Invalid),
        ("password_hash = { algo = \"pbkdf2\" }\n", "password_hash.iterations", Missing),
        ("tls = { enable = true }\n", "tls.ca_file", Missing),
        (
            "tls = { enable = true, ca_file = \"/etc/hostname\", cert_file = \"/etc/hostname\" }\n",
            "tls.key_file",
            Invalid,
        ),
        ("tls = { enable = true, ca_file = \"/nonexistent/ca.pem\" }\n", "tls.ca_file", BuildErrorKind::File),
        ("filter = { username = { \"$regex\" = \"^${username}$\" } }\n", "filter.username.$regex", Invalid),
        ("filter = { \"$where\" = \"this.username == '${username}'\" }\n", "filter.$where", Invalid),
        ("filter = { \"$expr\" = { \"$eq\" = [\"$username\", \"${username}\"] } }\n", "filter.$expr.$eq[1]", Invalid),
        ("filter = { \"$text\" = { \"$search\" = \"${username}\" } }\n", "filter.$text.$search", Invalid),
        ("auth_source = \"admin\"\n", "auth_source", Invalid),
    ] {
        let e = auth(&format!("{BASE}{extra}")).unwrap_err();
        assert!(e.is(key, kind), "{extra}: {e:?}");
    }
    assert!(auth("uri = \"http://x\"\ndatabase = \"d\"\n").unwrap_err().is("uri", Invalid));
    for uri in [
        "mongodb://portcullis:hunter2-secret@db.internal:27017/mqtt",
        "mongodb+srv://u@cluster0.example.net/?retryWrites=true",
        "mongodb://db:27017/?tls=true&tlsInsecure=true",
        "mongodb://db:27017/?tls=true&tlsAllowInvalidCertificates=true",
        "mongodb://db:27017/?ssl=true&TLSALLOWINVALIDHOSTNAMES=true",
    ] {
        let e = auth(&format!("uri = \"{uri}\"\ndatabase = \"d\"\n")).unwrap_err();
        assert!(e.is("uri", Invalid) && !e.to_string().contains("hunter2"), "{uri}: {e}");
    }
    // An @ in the path or the query is not a credential; a placeholder
    // outside the refused operators is fine.
    auth("uri = \"mongodb://db:27017/mqtt?appName=a@b\"\ndatabase = \"d\"\n").unwrap();
    auth(&format!("{BASE}filter = {{ username = {{ \"$eq\" = \"${{username}}\" }}, \"$comment\" = \"x\" }}\n"))
        .unwrap();
    assert!(toml::from_str::<AuthConfig>(&format!("{BASE}bogus = 1\n")).is_err());
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
fn endpoints_and_their_tls() {
    use crate::common::transport::Endpoint;
    for (uri, extra, want) in [
        ("mongodb://127.0.0.1:27017", "", vec![Endpoint::new("127.0.0.1", false)]),
        (
            "mongodb://h1:27017,[::1]:27018/?replicaSet=rs0",
            "",
            vec![Endpoint::new("h1", false), Endpoint::new("::1", false)],
        ),
        ("mongodb://h1/?tls=true", "", vec![Endpoint::new("h1", true)]),
        ("mongodb+srv://cluster0.example.net/", "", vec![Endpoint::new("cluster0.example.net", false)]),
    ] {
        let c = auth(&format!("uri = \"{uri}\"\ndatabase = \"d\"\n{extra}")).unwrap();
        assert_eq!(c.server_settings().endpoints(), want, "{uri}");
    }
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
