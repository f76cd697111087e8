//! Config validation and value escaping (the directory itself is
//! exercised end to end in tests/tests/backend_ldap.rs).

use super::auth::{normalize_dn, render_dn, render_filter};
use super::config::{AclConfig, AuthConfig, Lookup};
use crate::common::template::Values;
use crate::common::{BuildError, BuildErrorKind};

/// The table as parsed (it must parse), validated.
fn auth(text: &str) -> Result<AuthConfig, BuildError> {
    let cfg: AuthConfig = toml::from_str(text).unwrap();
    cfg.validate()?;
    Ok(cfg)
}

const SEARCH: &str = r#"
servers = ["ldap://127.0.0.1:389"]
mode = "search"
base_dn = "ou=people,dc=example,dc=org"
filter = "(&(objectClass=inetOrgPerson)(uid=${username}))"
"#;

#[test]
fn modes_need_their_keys() {
    auth(SEARCH).unwrap();
    auth("servers = [\"ldap://h\"]\nmode = \"bind\"\nuser_dn = \"uid=${username},dc=x\"\n").unwrap();
    auth("servers = [\"ldap://h\"]\nmode = \"compare\"\nuser_dn = \"uid=%u,dc=x\"\n").unwrap();
    let e = auth("servers = [\"ldap://h\"]\nmode = \"bind\"\nbase_dn = \"dc=x\"\nfilter = \"(uid=${username})\"\n")
        .unwrap_err();
    assert!(e.is("user_dn", BuildErrorKind::Missing), "{e}");
    let e = auth("servers = [\"ldap://h\"]\nmode = \"search\"\nuser_dn = \"uid=${username},dc=x\"\n").unwrap_err();
    assert!(e.is("base_dn", BuildErrorKind::Missing), "{e}");
    let e = auth("servers = [\"ldap://h\"]\nmode = \"search\"\nbase_dn = \"dc=x\"\nfilter = \"(uid=${username}\"\n")
        .unwrap_err();
    assert!(e.is("filter", BuildErrorKind::Invalid), "{e}");
    let e = auth("servers = [\"ldap://h\"]\nmode = \"bind\"\nuser_dn = \"uid=${password},dc=x\"\n").unwrap_err();
    assert!(e.is("user_dn", BuildErrorKind::Invalid), "{e}");
    assert!(e.reason.contains("cannot be used here"), "{e}");
    let e = auth("servers = [\"ldap://h\"]\nmode = \"search\"\nbase_dn = \"dc=x\"\n").unwrap_err();
    assert!(e.is("filter", BuildErrorKind::Missing), "{e}");
    assert!(toml::from_str::<AuthConfig>("servers = [\"ldap://h\"]\nmode = \"magic\"\nuser_dn = \"uid=%u\"\n").is_err());
    assert!(toml::from_str::<AuthConfig>(&format!("{SEARCH}\nunknown_key = 1\n")).is_err());
}

#[test]
fn servers_tls_and_account_are_checked() {
    let e = auth(&SEARCH.replace("ldap://127.0.0.1:389", "ldaps://127.0.0.1:636")).unwrap_err();
    assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
    let e = auth(&format!("{SEARCH}starttls = true\n")).unwrap_err();
    assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
    let e = auth(&format!("{SEARCH}starttls = true\ntls = {{ enable = true, ca_file = \"/nonexistent/ca.pem\" }}\n"))
        .unwrap_err();
    assert!(e.is("tls.ca_file", BuildErrorKind::File), "{e}");
    let e = auth(&SEARCH.replace("ldap://127.0.0.1:389", "http://x")).unwrap_err();
    assert!(e.is("servers[0]", BuildErrorKind::Invalid), "{e}");
    let e = auth(&SEARCH.replace("[\"ldap://127.0.0.1:389\"]", "[]")).unwrap_err();
    assert!(e.is("servers", BuildErrorKind::Missing), "{e}");
    let e = auth(&format!("{SEARCH}bind_dn = \"cn=svc\"\n")).unwrap_err();
    assert!(e.is("bind_password", BuildErrorKind::Missing), "{e}");
    let e = auth(&format!("{SEARCH}bind_dn = \"cn=svc\"\nbind_password = \"\"\n")).unwrap_err();
    assert!(e.is("bind_password", BuildErrorKind::Invalid), "{e}");
    assert!(e.reason.contains("empty simple bind"), "{e}");
    let e =
        auth(&format!("{SEARCH}bind_dn = \"cn=svc\"\nbind_password = {{ file = \"/nonexistent/pw\" }}\n")).unwrap_err();
    assert!(e.is("bind_password", BuildErrorKind::Secret), "{e}");
    let e = auth(&format!("{SEARCH}pool = {{ size = 0 }}\n")).unwrap_err();
    assert_eq!(e.to_string(), "pool.size: must be at least 1");
    let cfg = auth(&format!("{SEARCH}bind_dn = \"cn=svc\"\nbind_password = \"hunter2-secret\"\n")).unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2-secret"));
}

#[test]
fn endpoints_and_their_tls() {
    use crate::common::transport::Endpoint;
    let cfg: AuthConfig = toml::from_str(
        &SEARCH.replace("[\"ldap://127.0.0.1:389\"]", "[\"ldap://dir.internal\", \"ldaps://[2001:db8::1]:636\"]"),
    )
    .unwrap();
    assert_eq!(
        cfg.server_settings().endpoints(),
        vec![Endpoint::new("dir.internal", false), Endpoint::new("2001:db8::1", true)]
    );
    assert_eq!(cfg.username_attribute, "uid");
    let e = auth(&format!("{SEARCH}username_attribute = \" \"\n")).unwrap_err();
    assert!(e.is("username_attribute", BuildErrorKind::Invalid), "{e}");
    assert!(cfg.lookup().unwrap().uses_username());
}

#[test]
fn acl_defaults_are_the_shipped_schema() {
    let cfg: AclConfig = toml::from_str("servers = [\"ldap://h\"]\nuser_dn = \"uid=${username},dc=x\"\n").unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.publish_attribute, "mqttPublishTopic");
    assert_eq!(cfg.subscribe_attribute, "mqttSubscriptionTopic");
    assert_eq!(cfg.pubsub_attribute, "mqttPubSubTopic");
    let e = toml::from_str::<AclConfig>("servers = [\"ldap://h\"]\n").unwrap().validate().unwrap_err();
    assert!(e.is("user_dn", BuildErrorKind::Missing), "{e}");
}

#[test]
fn injection_attempts_stay_values() {
    let cfg = auth(SEARCH).unwrap();
    let Lookup::Search { filter, .. } = cfg.lookup().unwrap() else { panic!("search lookup") };
    for (user, want) in [
        ("*)(uid=*))(|(uid=*", "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a))"),
        ("admin)(&)", "(&(objectClass=inetOrgPerson)(uid=admin\\29\\28&\\29))"),
        ("*", "(&(objectClass=inetOrgPerson)(uid=\\2a))"),
        ("a\\b", "(&(objectClass=inetOrgPerson)(uid=a\\5cb))"),
    ] {
        let v = Values { username: Some(user), ..Values::default() };
        let f = render_filter(&filter, &v).unwrap();
        assert_eq!(f, want, "{user:?}");
        ldap3::parse_filter(&f).unwrap();
    }
    let cfg =
        auth("servers = [\"ldap://h\"]\nmode = \"bind\"\nuser_dn = \"uid=${username},ou=people,dc=x\"\n").unwrap();
    let Lookup::Dn(t) = cfg.lookup().unwrap() else { panic!("dn lookup") };
    for (user, want) in [
        ("a,ou=admins", "uid=a\\2cou\\3dadmins,ou=people,dc=x"),
        ("../", "uid=../,ou=people,dc=x"),
        ("#x+y", "uid=\\23x\\2by,ou=people,dc=x"),
    ] {
        let v = Values { username: Some(user), ..Values::default() };
        assert_eq!(render_dn(&t, &v).unwrap(), want, "{user:?}");
    }
    // LDAP matching would fold these onto `alice`: they name nobody.
    for user in ["alice\r\n", " alice", "alice ", "al\tice", "a\0", ""] {
        let v = Values { username: Some(user), ..Values::default() };
        assert_eq!(render_dn(&t, &v), None, "{user:?}");
        assert_eq!(render_filter(&filter, &v), None, "{user:?}");
    }
    assert_eq!(render_dn(&t, &Values::default()), None, "no username: no DN");
}

#[test]
fn group_dns_compare_loosely() {
    assert_eq!(normalize_dn("CN=Admins, OU=Groups,dc=X"), normalize_dn("cn=admins,ou=groups,DC=x"));
}
