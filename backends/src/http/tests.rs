//! Building the providers from their tables: each refusal names its key
//! and kind (the webhook itself is exercised end to end in
//! tests/tests/backend_http.rs).

use super::config::{AclConfig, AuthConfig};
use crate::common::{BuildError, BuildErrorKind};

/// Builds `[auth.http.x]` from `extra` after a working `url`.
fn auth(extra: &str) -> Result<(), BuildError> {
    let cfg: AuthConfig = toml::from_str(&format!("url = \"http://127.0.0.1:1/a\"\n{extra}")).unwrap();
    super::auth::provider("x", &cfg).map(drop)
}

#[test]
fn auth_refusals_name_key_and_kind() {
    use BuildErrorKind::{File, Invalid, Missing};
    auth("").unwrap();
    for (extra, key, kind) in [
        ("body = { u = \"${usr}\" }", "body.u", Invalid),
        ("headers = { x-who = \"${password\" }", "headers.x-who", Invalid),
        ("headers = { \"bad name\" = \"v\" }", "headers", Invalid),
        ("superuser = { url = \"ftp://x/\" }", "superuser.url", Invalid),
        ("superuser = { url = \"http://127.0.0.1:1/s\", body = { p = \"${nope}\" } }", "superuser.body.p", Invalid),
        ("max_concurrency = 0", "max_concurrency", Invalid),
        ("request_timeout = \"0s\"", "request_timeout", Invalid),
        ("ignore_status = [\"4x\"]", "ignore_status", Invalid),
        ("deny_status = [200]", "deny_status", Invalid),
        ("allow_body = \"ok\"", "allow_body", Invalid),
        ("tls = { enable = true }", "tls.ca_file", Missing),
        ("tls = { enable = true, ca_file = \"/nonexistent/ca.pem\" }", "tls.ca_file", File),
        ("tls = { key_file = \"/nonexistent/k.pem\" }", "tls.cert_file", Missing),
    ] {
        let e = auth(extra).err().unwrap_or_else(|| panic!("{extra}: accepted"));
        assert!(e.is(key, kind), "{extra}: {e:?}");
    }
}

#[test]
fn rendered_as_key_then_reason() {
    let e = auth("superuser = { url = \"http://127.0.0.1:1/u/${username}\" }").unwrap_err();
    assert_eq!(e.key, "superuser.url");
    assert!(e.to_string().starts_with("superuser.url: placeholders go in the query string"), "{e}");
    let e = auth("body = { u = \"${usr}\" }").unwrap_err();
    assert!(e.to_string().starts_with("body.u: unknown placeholder ${usr}"), "{e}");
}

#[test]
fn acl_refusals_name_key_and_kind() {
    let cfg: AclConfig = toml::from_str("url = \"https://127.0.0.1:1/acl\"\n").unwrap();
    let e = super::acl::provider("x", &cfg).map(drop).unwrap_err();
    assert!(e.is("url", BuildErrorKind::Invalid), "{e}");
    assert!(e.reason.starts_with("an https URL needs tls.enable"), "{e}");
    let cfg: AclConfig = toml::from_str("url = \"http://127.0.0.1:1/acl?t=${password}\"\n").unwrap();
    let e = super::acl::provider("x", &cfg).map(drop).unwrap_err();
    assert!(e.is("url", BuildErrorKind::Invalid), "{e}");
}
