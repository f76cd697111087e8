//! Tests of the config format: the shipped file, unknown keys, several
//! problems in one run, every range check, sizes and durations, listeners.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_core::settings::{BrokerSettings, RateLimit, SharedStrategy};

use super::units::{parse_duration, parse_size};
use super::*;

const SHIPPED: &str = include_str!("../../../etc/portcullis.toml");
const FILE: &str = "test.toml";

/// Parses `text` that must be valid.
fn ok(text: &str) -> Config {
    match Config::from_str(text, FILE) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

/// Parses `text` that must be invalid; returns its problems as printed.
fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, FILE) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Parses `text` that must be invalid; returns its problems.
fn problems(text: &str) -> Vec<Problem> {
    match Config::from_str(text, FILE) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(err) => panic!("expected Invalid, got {err}"),
    }
}

/// Asserts that `text` has exactly one problem, which contains `expected`.
#[track_caller]
fn one_error(text: &str, expected: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "for {text:?}: {errors:#?}");
    assert!(errors[0].contains(expected), "for {text:?}: {:?} does not contain {expected:?}", errors[0]);
}

// --- the shipped file and the embedded defaults ---------------------------

#[test]
fn shipped_file_equals_embedded_defaults() {
    let shipped = match Config::from_str(SHIPPED, "etc/portcullis.toml") {
        Ok(config) => config,
        Err(err) => panic!("etc/portcullis.toml is invalid:\n{err}"),
    };
    assert_eq!(shipped, Config::embedded());
}

#[test]
fn shipped_file_documents_every_key_with_its_default() {
    // Every `key = value` line sits under a comment block with a
    // "# Default:" line.
    let mut block_has_default = false;
    let mut keys = 0;
    for line in SHIPPED.lines().map(str::trim) {
        if line.starts_with("# Default:") {
            block_has_default = true;
        } else if line.is_empty() || line.starts_with('[') {
            block_has_default = false;
        } else if !line.starts_with('#') {
            assert!(block_has_default, "no \"# Default:\" comment above {line:?}");
            block_has_default = false;
            keys += 1;
        }
    }
    assert_eq!(keys, 126, "a key was added or removed: update this count");
}

#[test]
fn embedded_defaults_are_valid_and_match_the_core() {
    assert_eq!(validate::validate(&model::FileConfig::default()), vec![]);
    let config = Config::embedded();
    assert_eq!(config.broker_settings(), BrokerSettings::default());
    assert_eq!(
        config.listeners,
        vec![ListenerConfig {
            name: "default".to_owned(),
            kind: ListenerKind::Tcp,
            bind: "0.0.0.0:1883".parse().unwrap_or_else(|_| unreachable!()),
            max_connections: 100_000,
            backlog: 1024,
            auth_chain: "default".to_owned(),
            acl_chain: "default".to_owned(),
            max_packet_size: None,
            rate_limit: None,
            handshake_timeout: Duration::from_secs(10),
            proxy_protocol: false,
            trusted_proxies: vec![],
            tcp_keepalive: Some(super::listener::TcpKeepaliveConfig {
                idle: Duration::from_secs(120),
                interval: Duration::from_secs(20),
                count: 3,
            }),
            peer_cert_as_username: None,
            peer_cert_as_client_id: None,
            client_id_pattern: None,
            accept_bridges: true,
            tls: None,
            websocket: None,
            stomp: None,
            sockjs: None,
        }]
    );
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn empty_file_and_empty_sections_are_the_defaults() {
    assert_eq!(ok(""), Config::embedded());
    assert_eq!(
        ok("[node]\n[limits]\n[session]\n[retained]\n[sys]\n[shared_subscription]\n[log]\n"),
        Config::embedded()
    );
}

// --- unknown keys and several problems at once ----------------------------

#[test]
fn unknown_top_level_key_is_named_with_its_line() {
    assert_eq!(
        errors("\n\nlisteners_x = 1\n"),
        vec!["test.toml:3: unknown key `listeners_x` (did you mean `listeners`?)"]
    );
    assert_eq!(errors("[bogus]\nx = 1\n"), vec!["test.toml:1: unknown key `bogus`"]);
}

#[test]
fn unknown_nested_keys_are_named_by_path() {
    assert_eq!(
        errors("[limits]\nmax_pakcet_size = 4096\n"),
        vec!["test.toml:2: unknown key `limits.max_pakcet_size` (did you mean `max_packet_size`?)"]
    );
    one_error(
        "[limits]\nrate_limit = { bytes_per_sec = 10, brust = 5 }\n",
        "unknown key `limits.rate_limit.brust` (did you mean `burst`?)",
    );
    one_error(
        "[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\nbind = \"0.0.0.0:1884\"\nport = 1884\n",
        "test.toml:6: unknown key `listeners[1].port`",
    );
    // Dotted keys are the same keys.
    one_error("session.max_inflite = 3\n", "unknown key `session.max_inflite`");
}

#[test]
fn problems_in_different_sections_are_all_reported_in_file_order() {
    let text = "\
[limits]
max_pakcet_size = 4096
connect_timeout = \"0s\"

[session]
max_inflight = 0
queue_qos0 = \"yes\"

[sys]
interval = \"10x\"
";
    let errors = errors(text);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].starts_with("test.toml:2: unknown key `limits.max_pakcet_size`"));
    assert_eq!(errors[1], "test.toml:3: limits.connect_timeout: must be at least 1ns, got 0s");
    assert_eq!(errors[2], "test.toml:6: session.max_inflight: must be at least 1, got 0");
    assert_eq!(errors[3], "test.toml:7: session.queue_qos0: expected true or false, got string \"yes\"");
    assert!(errors[4].starts_with("test.toml:10: sys.interval: invalid duration \"10x\""), "{}", errors[4]);
}

#[test]
fn two_bad_values_in_one_table_are_both_reported() {
    let problems = problems("[limits]\nmax_packet_size = \"1XB\"\nmax_topic_alias = -1\n");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["limits.max_packet_size", "limits.max_topic_alias"]);
    assert_eq!(problems[0].line, Some(2));
    assert_eq!(problems[1].line, Some(3));
}

#[test]
fn a_file_full_of_mistakes_stops_at_a_bound() {
    let text: String = (0..100).map(|i| format!("unknown_{i} = 1\n")).collect();
    let errors = errors(&text);
    assert_eq!(errors.len(), 65);
    assert_eq!(errors[64], "test.toml: too many problems, stopped after 64");
}

#[test]
fn type_errors_name_the_expected_type() {
    one_error("limits = 5\n", "test.toml:1: limits: expected a table, got integer 5");
    one_error(
        "[limits]\nmax_topic_alias = 70000\n",
        "limits.max_topic_alias: expected an integer from 0 to 65535, got integer 70000",
    );
    one_error("listeners = \"x\"\n", "listeners: expected an array, got string \"x\"");
    one_error("[log]\nlevel = 3\n", "log.level: expected a string, got integer 3");
    one_error("[node]\nname = 1979-05-27\n", "node.name: expected a string, got a datetime");
}

#[test]
fn syntax_errors_are_reported_with_their_line() {
    let errors = errors("[limits]\nmax_packet_size = \n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("test.toml:2: syntax error: "), "{}", errors[0]);
}

#[test]
fn closed_sets_list_their_values() {
    one_error(
        "[shared_subscription]\nstrategy = \"hash\"\n",
        "shared_subscription.strategy: unknown value \"hash\", expected one of \"round_robin\", \"random\", \"sticky\"",
    );
    one_error("[log]\nformat = \"xml\"\n", "log.format: unknown value \"xml\", expected \"text\" or \"json\"");
    one_error(
        "[[listeners]]\ntype = \"quic\"\n",
        "listeners[0].type: unknown value \"quic\", expected one of \"tcp\", \"tls\", \"ws\", \"wss\"",
    );
    for (name, strategy) in [
        ("round_robin", SharedStrategy::RoundRobin),
        ("random", SharedStrategy::Random),
        ("sticky", SharedStrategy::Sticky),
    ] {
        let config = ok(&format!("[shared_subscription]\nstrategy = \"{name}\"\n"));
        assert_eq!(config.broker_settings().shared_strategy, strategy);
    }
    assert_eq!(ok("[log]\nformat = \"json\"\n").log.format, LogFormat::Json);
}

// --- range checks -----------------------------------------------------------

#[test]
fn limits_bounds() {
    one_error(
        "[limits]\nmax_packet_size = 4\n",
        "test.toml:2: limits.max_packet_size: must be at least 16 bytes, got 4",
    );
    one_error(
        "[limits]\nmax_packet_size = 268435456\n",
        "limits.max_packet_size: must be at most 268435455 bytes, got 268435456",
    );
    assert_eq!(ok("[limits]\nmax_packet_size = 16\n").limits.max_packet_size, 16);
    assert_eq!(ok("[limits]\nmax_packet_size = 268435455\n").broker_settings().limits.max_packet_size, 268_435_455);
    one_error("[limits]\nmax_client_id_len = 0\n", "limits.max_client_id_len: must be at least 1 byte, got 0");
    one_error(
        "[limits]\nmax_client_id_len = 65536\n",
        "limits.max_client_id_len: must be at most 65535 bytes, got 65536",
    );
    one_error("[limits]\nconnect_timeout = \"0s\"\n", "limits.connect_timeout: must be at least 1ns, got 0s");
    one_error(
        "[limits]\nmax_keep_alive = \"65536s\"\n",
        "limits.max_keep_alive: must be at most 18h 12m 15s, got 18h 12m 16s",
    );
    one_error("[limits]\nmax_keep_alive = \"1500ms\"\n", "limits.max_keep_alive: must be whole seconds");
    one_error(
        "[limits]\nrate_limit = { bytes_per_sec = 0 }\n",
        "limits.rate_limit.bytes_per_sec: must be at least 1 byte, got 0",
    );
    assert_eq!(problems("[limits]\nrate_limit = { bytes_per_sec = 0, burst = 0 }\n").len(), 2);
    one_error("[limits]\nrate_limit = { burst = 10 }\n", "limits.rate_limit: missing required key `bytes_per_sec`");
    one_error(
        "[limits]\nrate_limit = \"never\"\n",
        "limits.rate_limit: expected a table { bytes_per_sec = …, burst = … } or \"off\", got string \"never\"",
    );
    one_error(
        "[limits]\nmax_subscriptions = -1\n",
        "limits.max_subscriptions: expected a non-negative integer, got integer -1",
    );
}

#[test]
fn session_bounds() {
    for key in ["max_inflight", "max_awaiting_rel"] {
        one_error(&format!("[session]\n{key} = 0\n"), &format!("session.{key}: must be at least 1, got 0"));
        one_error(&format!("[session]\n{key} = 65536\n"), &format!("session.{key}: must be at most 65535, got 65536"));
        ok(&format!("[session]\n{key} = 65535\n"));
    }
    one_error("[session]\nawait_rel_timeout = \"0s\"\n", "session.await_rel_timeout: must be at least 1ns, got 0s");
    one_error("[session]\nmax_queue_len = 0\n", "session.max_queue_len: must be at least 1, got 0");
    one_error("[session]\nmax_queue_bytes = 0\n", "session.max_queue_bytes: must be at least 1 byte, got 0");
    one_error("[session]\nmax_session_expiry = \"4294967296s\"\n", "session.max_session_expiry: must be at most");
    one_error(
        "[session]\nmax_session_expiry = \"never\"\n",
        "session.max_session_expiry: \"never\" is not accepted here: this duration cannot be switched off",
    );
}

#[test]
fn retained_sys_and_node_bounds() {
    one_error(
        "[retained]\nmax_payload_size = \"1.5MB\"\n",
        "retained.max_payload_size: invalid size \"1.5MB\": fractions are not supported",
    );
    one_error("[sys]\ninterval = \"500ms\"\n", "sys.interval: must be at least 1s, got 500ms");
    one_error("[sys]\ninterval = \"never\"\n", "sys.interval: \"never\" is not accepted here, write \"off\"");
    assert_eq!(ok("[sys]\ninterval = \"1s\"\n").sys.interval, Some(Duration::from_secs(1)));
    assert_eq!(ok("[sys]\ninterval = \"off\"\n").sys.interval, None);
    one_error("[node]\nname = \"\"\n", "node.name: must not be empty");
    one_error("[node]\nname = \"a/b\"\n", "node.name: '/' is not allowed");
    one_error("[node]\nname = \"a b\"\n", "node.name: ' ' is not allowed");
    assert_eq!(ok("[node]\nname = \"emq@10.0.0.1\"\n").broker_settings().node_name, "emq@10.0.0.1");
}

#[test]
fn log_level_must_be_a_usable_filter() {
    one_error("[log]\nlevel = \"\"\n", "log.level: must not be empty");
    one_error("[log]\nlevel = \"  \"\n", "log.level: must not be empty");
    one_error("[log]\nlevel = \"portcullis=loud\"\n", "log.level: invalid filter");
    one_error("[log]\nlevel = \"debg\"\n", "log.level: \"debg\" is not a level");
    for level in ["trace", "WARN", "off", "info,portcullis_core=debug", "warn,portcullis[conn]=trace"] {
        assert_eq!(ok(&format!("[log]\nlevel = \"{level}\"\n")).log.level, level);
    }
}

// --- sizes and durations ------------------------------------------------------

#[test]
fn sizes_use_decimal_and_binary_units() {
    let cases: [(&str, u64); 12] = [
        ("0", 0),
        ("1024", 1024),
        ("1024B", 1024),
        ("64KB", 64_000),
        ("64 kb", 64_000),
        ("64KiB", 65_536),
        ("1MB", 1_000_000),
        ("1MiB", 1_048_576),
        ("1mib", 1_048_576),
        ("2GB", 2_000_000_000),
        ("2GiB", 2 << 30),
        ("1TiB", 1 << 40),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in ["", "MB", "1.5MB", "1XB", "1 K", "-1", "99999999999TB", "1e6"] {
        assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
    }
    // Integers and strings in the file.
    let config = ok("[session]\nmax_queue_bytes = 4096\n[retained]\nmax_payload_size = \"64KB\"\n");
    assert_eq!(config.session.max_queue_bytes, 4096);
    assert_eq!(config.retained.max_payload_size, 64_000);
    one_error(
        "[session]\nmax_queue_bytes = -5\n",
        "session.max_queue_bytes: expected a size: a number of bytes, or a string such as \"64KB\" or \"1MiB\", got integer -5",
    );
    one_error("[session]\nmax_queue_bytes = true\n", "session.max_queue_bytes: expected a size");
}

#[test]
fn durations_are_human_readable() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("ten seconds").is_err());

    one_error(
        "[limits]\nconnect_timeout = 10\n",
        "limits.connect_timeout: expected a duration such as \"10s\", \"5m\" or \"2h\", got integer 10",
    );
    let config = ok("[session]\nv3_session_expiry = \"never\"\nmax_session_expiry = \"30d\"\n");
    assert_eq!(config.session.v3_session_expiry, None);
    assert_eq!(config.session.max_session_expiry, Duration::from_secs(30 * 86_400));
    one_error(
        "[session]\nv3_session_expiry = \"off\"\n",
        "session.v3_session_expiry: \"off\" is not accepted here, write \"never\"",
    );
    // No keep-alive cap: "off", or zero as in MQTT.
    assert_eq!(ok("[limits]\nmax_keep_alive = \"0s\"\n"), Config::embedded());
    let capped = ok("[limits]\nmax_keep_alive = \"5m\"\n");
    assert_eq!(capped.broker_settings().limits.max_keep_alive, 300);
}

// --- listeners ----------------------------------------------------------------

#[test]
fn listeners_are_read_in_order() {
    let config = ok("\
[[listeners]]
name = \"public\"
bind = \"0.0.0.0:1883\"
max_connections = 10
backlog = 16

[[listeners]]
name = \"local\"
type = \"tcp\"
bind = \"[::1]:1884\"
");
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["public", "local"]);
    assert_eq!(config.listeners[0].max_connections, 10);
    assert_eq!(config.listeners[0].backlog, 16);
    let local: SocketAddr = "[::1]:1884".parse().unwrap_or_else(|_| unreachable!());
    assert_eq!(config.listeners[1].bind, local);
    assert_eq!(config.listeners[1].max_connections, 100_000);
    // A single listener may go unnamed.
    assert_eq!(ok("[[listeners]]\nbind = \"127.0.0.1:1883\"\n").listeners[0].name, "default");
}

#[test]
fn listener_names_are_required_with_several_and_unique() {
    let errors = errors("[[listeners]]\nbind = \"0.0.0.0:1883\"\n[[listeners]]\nbind = \"0.0.0.0:1884\"\n");
    assert_eq!(
        errors,
        [
            "test.toml:2: listeners[0].name: required when more than one listener is configured",
            "test.toml:4: listeners[1].name: required when more than one listener is configured",
        ]
    );
    one_error(
        "[[listeners]]\nname = \"a\"\nbind = \"0.0.0.0:1883\"\n[[listeners]]\nname = \"a\"\nbind = \"0.0.0.0:1884\"\n",
        "test.toml:5: listeners[1].name: duplicate listener name \"a\" (also listeners[0])",
    );
    one_error(
        "[[listeners]]\nname = \"a b\"\n",
        "listeners[0].name: \"a b\" may only contain ASCII letters, digits, '-', '_' and '.'",
    );
    one_error("[[listeners]]\nname = \"\"\n", "listeners[0].name: must not be empty");
    one_error("listeners = []\n", "listeners: at least one listener is required");
}

#[test]
fn listener_addresses_are_checked() {
    one_error(
        "[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\nbind = \"localhost:1883\"\n",
        "test.toml:5: listeners[1].bind: invalid socket address \"localhost:1883\": expected IP:PORT",
    );
    one_error("[[listeners]]\nbind = \"0.0.0.0\"\n", "listeners[0].bind: invalid socket address \"0.0.0.0\"");
    one_error(
        "[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\n",
        "listeners[1].bind: 0.0.0.0:1883 is already bound by listeners[0]",
    );
    one_error(
        "[[listeners]]\nmax_connections = 0\nbacklog = 5\n",
        "listeners[0].max_connections: must be at least 1, got 0",
    );
    one_error("[[listeners]]\nbacklog = 0\n", "listeners[0].backlog: must be at least 1, got 0");
}

#[test]
fn a_key_that_failed_to_parse_draws_no_follow_up_problem() {
    // listeners[1].bind falls back to the default address, which
    // listeners[0] has: that clash is not the user's and is not reported.
    let problems = problems("[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\nbind = \"nowhere\"\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "listeners[1].bind");
    // An element of the wrong type names the element.
    one_error("listeners = [1]\n", "listeners[0]: expected a table, got integer 1");
}

// --- conversion and loading ------------------------------------------------------

#[test]
fn broker_settings_carry_every_value() {
    let config = ok("\
[node]
name = \"n1\"
[limits]
max_packet_size = \"64KiB\"
max_client_id_len = 23
connect_timeout = \"3s\"
max_keep_alive = \"600s\"
rate_limit = { bytes_per_sec = \"1MB\" }
max_topic_alias = 0
max_subscriptions = 10
[session]
max_inflight = 5
max_awaiting_rel = 6
await_rel_timeout = \"30s\"
max_queue_len = 7
max_queue_bytes = \"1KB\"
queue_qos0 = false
v3_session_expiry = \"1h\"
max_session_expiry = \"1d\"
[retained]
enabled = false
max_count = 8
max_payload_size = 9
max_bytes = \"10KiB\"
[sys]
interval = \"off\"
[shared_subscription]
strategy = \"sticky\"
");
    let s = config.broker_settings();
    assert_eq!(s.node_name, "n1");
    assert_eq!(s.limits.max_packet_size, 65_536);
    assert_eq!(s.limits.max_client_id_len, 23);
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(3));
    assert_eq!(s.limits.max_keep_alive, 600);
    assert_eq!(s.limits.rate_limit, Some(RateLimit { bytes_per_sec: 1_000_000, burst: 1_000_000 }));
    assert_eq!(s.limits.max_topic_alias, 0);
    assert_eq!(s.limits.max_subscriptions, 10);
    assert_eq!(s.session.max_inflight, 5);
    assert_eq!(s.session.max_awaiting_rel, 6);
    assert_eq!(s.session.await_rel_timeout, Duration::from_secs(30));
    assert_eq!(s.session.max_queue_len, 7);
    assert_eq!(s.session.max_queue_bytes, 1000);
    assert!(!s.session.queue_qos0);
    assert_eq!(s.session.v3_session_expiry, Some(Duration::from_secs(3600)));
    assert_eq!(s.session.max_session_expiry, Duration::from_secs(86_400));
    assert!(!s.retained.enabled);
    assert_eq!(s.retained.max_count, 8);
    assert_eq!(s.retained.max_payload_size, 9);
    assert_eq!(s.retained.max_bytes, 10_240);
    assert_eq!(s.sys.interval, None);
    assert_eq!(s.shared_strategy, SharedStrategy::Sticky);

    let burst = ok("[limits]\nrate_limit = { bytes_per_sec = 100, burst = \"1KiB\" }\n");
    assert_eq!(burst.broker_settings().limits.rate_limit, Some(RateLimit { bytes_per_sec: 100, burst: 1024 }));
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, "[limits]\nmax_packet_size = 4\n").unwrap_or_else(|err| panic!("{err}"));
    let err = Config::load(&path).err().map(|err| err.to_string());
    assert_eq!(err, Some(format!("{}:2: limits.max_packet_size: must be at least 16 bytes, got 4", path.display())));
    std::fs::write(&path, SHIPPED).unwrap_or_else(|err| panic!("{err}"));
    assert!(Config::load(&path).is_ok());

    let missing = dir.path().join("missing.toml");
    match Config::load(&missing) {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn security_sections_parse_and_cross_check() {
    let c = ok(r#"
[auth]
chain = ["devices", "office"]
no_match = "deny"
[auth.chains]
certs = ["office"]
[auth.password_file.devices]
path = "/etc/portcullis/passwd"
[auth.ip.office]
allow = ["10.0.0.0/8"]
on_error = "ignore"
[acl]
chain = ["main", "per_device"]
deny_action = "disconnect"
[acl.file.main]
path = "/etc/portcullis/acl.toml"
[acl.policy_dir.per_device]
dir = "/etc/portcullis/devices"
key = "username"
[[listeners]]
bind = "127.0.0.1:1883"
auth_chain = "certs"
"#);
    assert_eq!(c.auth.chain, vec!["devices", "office"]);
    assert_eq!(c.listeners[0].auth_chain, "certs");
    assert_eq!(c.listeners[0].acl_chain, "default");

    let errors = errors(
        r#"
[auth]
chain = ["nope", "devices", "devices"]
[auth.password_file.devices]
path = "p"
[auth.ip.devices]
[acl.file.main]
path = "a"
[acl.cache]
ttl = "5s"
[[listeners]]
bind = "127.0.0.1:1883"
acl_chain = "missing"
"#,
    );
    let all = errors.join("\n");
    assert!(all.contains("auth.chain: no provider named `nope`"), "{all}");
    assert!(all.contains("provider `devices` appears twice"), "{all}");
    assert!(all.contains("also used by"), "{all}");
    assert!(all.contains("listeners[0].acl_chain: no acl chain named `missing`"), "{all}");
}

#[test]
fn builtin_store_tables_parse_and_are_off_by_default() {
    let c = Config::embedded();
    assert!(c.auth.builtin.is_empty() && c.acl.builtin.is_empty(), "no config, no user store");
    let c = ok(r#"
[auth]
chain = ["users"]
[auth.builtin.users]
[acl]
chain = ["users"]
[acl.builtin.users]
path = "/var/lib/portcullis/data/portcullis.db"
poll = "2s"
on_error = "ignore"
"#);
    assert_eq!(c.auth.builtin["users"].path, std::path::PathBuf::from("data/portcullis.db"));
    assert_eq!(c.acl.builtin["users"].poll, Duration::from_secs(2));
    let all = errors("[auth.builtin.users]\npth = \"x\"\n").join("\n");
    assert!(all.contains("auth.builtin.users") && all.contains("pth"), "{all}");
}

/// A build without a backend refuses a config that names it, at its key,
/// with the cargo feature to turn on (CI builds the server with Redis
/// only and runs this).
#[test]
#[cfg(not(feature = "postgres"))]
fn a_backend_this_build_lacks_is_named_with_its_feature() {
    let all = errors("[auth]\nchain = [\"db\"]\n[auth.postgres.db]\nurl = \"postgres://x\"\n").join("\n");
    assert!(all.contains("auth.postgres") && all.contains("cargo feature `postgres`"), "{all}");
    let all = errors("[acl.postgres.db]\nurl = \"postgres://x\"\n").join("\n");
    assert!(all.contains("acl.postgres") && all.contains("cargo feature `postgres`"), "{all}");
}

/// With every backend built, the same table is an ordinary provider.
#[test]
#[cfg(feature = "postgres")]
fn a_backend_table_is_a_provider_when_built() {
    let c = ok("[auth]\nchain = [\"db\"]\n[auth.postgres.db]\nurl = \"postgres://x\"\n");
    assert_eq!(c.auth.provider_names(), vec![("db", "postgres")]);
    assert!(c.auth.not_built().is_empty());
}

#[test]
fn persistence_modes_and_their_checks() {
    let c = ok("[persistence]\nmode = \"strict\"\ndir = \"/var/lib/p\"\nrelaxed_window = \"250ms\"\n");
    assert_eq!(c.persistence.mode, super::PersistenceMode::Strict);
    assert_eq!(c.persistence.dir, std::path::PathBuf::from("/var/lib/p"));
    assert_eq!(c.persistence.relaxed_window, Duration::from_millis(250));
    one_error("[persistence]\nmode = \"strict\"\nsnapshot_file = \"s.bin\"\n", "persistence.snapshot_file");
    // Strict is the default, in ./data; an old config that only names a
    // snapshot file is refused (it must say mode = "off" to keep it).
    assert_eq!(ok("").persistence.mode, super::PersistenceMode::Strict);
    assert_eq!(ok("").persistence.dir, std::path::PathBuf::from("data"));
    one_error("[persistence]\nsnapshot_file = \"s.bin\"\n", "persistence.snapshot_file");
    assert!(ok("[persistence]\nmode = \"off\"\nsnapshot_file = \"s.bin\"\n").persistence.snapshot_file.is_some());
    one_error("[persistence]\nmode = \"relaxed\"\ndir = \"\"\n", "persistence.dir");
    one_error("[persistence]\nrelaxed_window = \"0s\"\n", "persistence.relaxed_window");
    assert!(errors("[persistence]\nmode = \"fast\"\n").join("\n").contains("mode"));
}

#[test]
fn dashboard_initial_password_is_at_least_16_characters() {
    one_error("[admin]\ndashboard_initial_password = \"short\"\n", "admin.dashboard_initial_password");
    assert!(ok("[admin]\ndashboard_initial_password = \"0123456789abcdef\"\n")
        .admin
        .dashboard_initial_password
        .is_some());
    assert!(ok("[admin]\ndashboard_initial_password = { env = \"X\" }\n").admin.dashboard_initial_password.is_some());
}

#[test]
fn dashboard_base_path_and_session_timeout() {
    assert_eq!(ok("[admin]\ndashboard_base_path = \"/portcullis\"\n").admin.dashboard_base_path, "/portcullis");
    assert_eq!(ok("[admin]\ndashboard_base_path = \"/a/b-c_d.e~/\"\n").admin.dashboard_base_path, "/a/b-c_d.e~/");
    for bad in ["portcullis/", "/a b/", "/a;Secure", "/a//b/", ""] {
        one_error(&format!("[admin]\ndashboard_base_path = {bad:?}\n"), "admin.dashboard_base_path");
    }
    one_error("[admin]\ndashboard_session_timeout = \"10s\"\n", "admin.dashboard_session_timeout");
}

#[test]
fn cluster_is_off_by_default_and_its_errors_name_the_key() {
    assert!(!ok("").cluster.enabled);
    // Off, the table is not checked further (single-node cost unchanged).
    assert!(!ok("[cluster]\nnats = []\n").cluster.enabled);
    one_error("[limits]\nmax_packet_size = \"1MiB\"\n[cluster]\nenabled = true\nnats = []\n", "cluster.nats");
    one_error(
        "[limits]\nmax_packet_size = \"1MiB\"\n[cluster]\nenabled = true\nsubject_prefix = \"a..b\"\n",
        "cluster.subject_prefix",
    );
    let c = ok("[node]\nname = \"n1\"\n[limits]\nmax_packet_size = \"1MiB\"\n[cluster]\nenabled = true\nnats = [\"nats://127.0.0.2:4222\"]\n");
    assert!(c.cluster.enabled);
    assert_eq!(c.cluster.nats, ["nats://127.0.0.2:4222"]);
}

#[test]
fn cluster_needs_every_max_packet_size_within_max_payload() {
    // The default packet size (1.125 MiB) is above NATS' default 1 MiB.
    let e = errors("[cluster]\nenabled = true\n").join("\n");
    assert!(e.contains("limits.max_packet_size") && e.contains("cluster.max_payload"), "{e}");
    ok("[cluster]\nenabled = true\nmax_payload = \"2MiB\"\n");
    let e = errors(
        "[limits]\nmax_packet_size = \"1MiB\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\nmax_packet_size = \"4MiB\"\n[cluster]\nenabled = true\n",
    )
    .join("\n");
    assert!(e.contains("listeners[0].max_packet_size") && e.contains("cluster.max_payload"), "{e}");
}
