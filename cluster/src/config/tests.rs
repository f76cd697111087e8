use super::*;
use portcullis_backends::common::BuildErrorKind;

fn parse(toml_text: &str) -> Result<ClusterConfig, String> {
    toml::from_str(toml_text).map_err(|e| e.to_string())
}

fn err(toml_text: &str) -> BuildError {
    parse(toml_text).unwrap().validate().unwrap_err()
}

#[test]
fn defaults_are_off_and_local() {
    let c = parse("").unwrap();
    assert_eq!(c, ClusterConfig::default());
    assert!(!c.enabled);
    assert_eq!(c.nats, ["nats://127.0.0.1:4222"]);
    assert_eq!(c.subject_prefix, "portcullis");
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.request_timeout, Duration::from_secs(5));
    assert_eq!(c.max_payload, 1024 * 1024);
    assert_eq!(c.max_control_line, 4096);
    assert_eq!(c.auth_method().unwrap(), AuthMethod::None);
    assert_eq!(c.limits(), Limits::default());
    c.validate().unwrap();
}

#[test]
fn every_key_parses() {
    let c = parse(
        r#"
        enabled = true
        nats = ["nats://a:4222", "tls://b:4223", "c:4224"]
        subject_prefix = "site1.mqtt"
        token = { env = "NATS_TOKEN" }
        tls = { enable = true, ca_file = "/etc/hostname", server_name = "nats.example" }
        connect_timeout = "2s"
        request_timeout = "500ms"
        max_payload = "8MiB"
        max_control_line = "8KiB"
        "#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.auth_method().unwrap(), AuthMethod::Token);
    assert_eq!(c.prefix().unwrap().as_str(), "site1.mqtt");
    assert_eq!(c.limits(), Limits { max_control_line: 8192, max_payload: 8 * 1024 * 1024 });
    assert_eq!(c.request_timeout, Duration::from_millis(500));
}

#[test]
fn unknown_keys_are_refused() {
    assert!(parse("enable = true").unwrap_err().contains("unknown field `enable`"));
    assert!(parse("tls = { enabled = true }").unwrap_err().contains("unknown field `enabled`"));
    assert!(parse("nats = \"nats://a:1\"").is_err(), "a list, not a string");
}

#[test]
fn urls_are_checked() {
    let e = err("nats = []");
    assert!(e.is("nats", BuildErrorKind::Missing), "{e}");
    for bad in ["ws://a:1", "wss://a:1", "http://a:1", "nats://", "nats://a:99999", "nats://a b:1"] {
        let e = err(&format!("nats = [{bad:?}]"));
        assert!(e.is("nats", BuildErrorKind::Invalid), "{bad}: {e}");
    }
    for secretive in ["nats://u:p@a:4222", "nats://token@a:4222"] {
        let e = err(&format!("nats = [{secretive:?}]"));
        assert!(e.to_string().contains("credentials in the URL"), "{e}");
    }
    let e = err(r#"nats = ["tls://a:4222"]"#);
    assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
    assert!(e.to_string().contains("no implicit trust store"), "{e}");
}

#[test]
fn errors_name_the_key() {
    let e = err(r#"subject_prefix = "a..b""#);
    assert_eq!(e.to_string(), "subject_prefix: token 2 is empty (no leading, trailing or doubled '.')");
    let e = err(r#"subject_prefix = "a>""#);
    assert!(e.is("subject_prefix", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"username = "u""#);
    assert!(e.is("password", BuildErrorKind::Missing), "{e}");
    let e = err(r#"password = "p""#);
    assert!(e.is("username", BuildErrorKind::Missing), "{e}");
    let e = err("username = \"\"\npassword = \"p\"");
    assert!(e.is("username", BuildErrorKind::Invalid), "{e}");
    let e = err("username = \"u\"\npassword = \"p\"\ntoken = \"t\"");
    assert!(e.is("token", BuildErrorKind::Invalid), "{e}");
    assert!(e.to_string().contains("username is set too"), "{e}");
    let e = err("token = \"t\"\nnkey_seed = \"SU\"");
    assert!(e.is("nkey_seed", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"credentials_file = "/nonexistent/x.creds""#);
    assert!(e.is("credentials_file", BuildErrorKind::File), "{e}");
    let e = err("tls = { enable = true }");
    assert!(e.is("tls.ca_file", BuildErrorKind::Missing), "{e}");
    let e = err(r#"tls = { ca_file = "/etc/hostname" }"#);
    assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"tls = { server_name = "x" }"#);
    assert!(e.is("tls.enable", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"tls = { enable = true, ca_file = "/etc/hostname", server_name = "not a name" }"#);
    assert!(e.is("tls.server_name", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"connect_timeout = "0s""#);
    assert!(e.is("connect_timeout", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"request_timeout = "0s""#);
    assert!(e.is("request_timeout", BuildErrorKind::Invalid), "{e}");
    let e = err(r#"max_payload = "65MiB""#);
    assert!(e.is("max_payload", BuildErrorKind::Invalid), "{e}");
    let e = err("max_payload = 100");
    assert!(e.is("max_payload", BuildErrorKind::Invalid), "{e}");
    let e = err("max_control_line = 100");
    assert!(e.is("max_control_line", BuildErrorKind::Invalid), "{e}");
}

#[test]
fn secrets_are_not_in_debug_output() {
    let c = parse("token = \"hunter2-token\"").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = parse("username = \"u\"\npassword = \"hunter2-pass\"").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = parse("nkey_seed = \"SUhunter2\"").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn the_readme_block_parses_and_is_the_defaults() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("\n## Cluster\n").expect("README has the section")..];
    let section = &section[section.find("Every key of `[cluster]`").expect("the key list")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("end of block")];
    let table: toml::Table = toml::from_str(block).unwrap();
    let c: ClusterConfig = table["cluster"].clone().try_into().unwrap();
    c.validate().unwrap();
    assert_eq!(c, ClusterConfig::default(), "the README shows the defaults");
}

#[test]
fn kv_replicas_is_one_to_five() {
    assert_eq!(parse("").unwrap().kv_replicas, 3);
    assert_eq!(parse("kv_replicas = 1").unwrap().kv_replicas, 1);
    parse("kv_replicas = 5").unwrap().validate().unwrap();
    for bad in ["kv_replicas = 0", "kv_replicas = 6"] {
        let e = err(bad);
        assert!(e.is("kv_replicas", BuildErrorKind::Invalid), "{e}");
    }
}
