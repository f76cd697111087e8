//! Tests of the transport keys of `[[listeners]]`: which keys go with which
//! `type`, TLS and WebSocket tables, certificate-derived identities, and
//! the per-listener limits as the core sees them.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::connection::ListenerOptions;
use portcullis_core::gate::CertField;
use portcullis_core::settings::RateLimit;

use super::listener::{ClientCertMode, TlsVersionName, WebSocketConfig};
use super::*;

fn ok(text: &str) -> Config {
    match Config::from_str(text, "test.toml") {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, "test.toml") {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

#[track_caller]
fn one_error(text: &str, expected: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "for {text:?}: {errors:#?}");
    assert!(errors[0].contains(expected), "for {text:?}: {:?} does not contain {expected:?}", errors[0]);
}

const TLS: &str = "tls = { cert_file = \"s.pem\", key_file = \"s.key\" }\n";

#[test]
fn every_transport_with_its_settings() {
    let config = ok(&format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"tls\"\ntype = \"tls\"\nbind = \"127.0.0.1:0\"\n{TLS}\
         [[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"wss\"\ntype = \"wss\"\nbind = \"127.0.0.1:0\"\n\
         [listeners.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nca_file = \"ca.pem\"\nclient_cert = \"required\"\n\
         min_version = \"1.3\"\nreload_poll = \"off\"\n\
         [listeners.websocket]\npath = \"/\"\nallowed_origins = [\"https://app.example.com\"]\n"
    ));
    let [tcp, tls, ws, wss] = &config.listeners[..] else { panic!("four listeners") };
    assert_eq!((tcp.tls.as_ref(), tcp.websocket.as_ref()), (None, None));
    let t = tls.tls.as_ref().unwrap();
    assert_eq!(t.cert_file, PathBuf::from("s.pem"));
    assert_eq!(
        (t.ca_file.as_ref(), t.client_cert, t.min_version, t.reload_poll),
        (None, ClientCertMode::None, TlsVersionName::V1_2, Some(Duration::from_secs(10)))
    );
    assert_eq!(ws.websocket, Some(WebSocketConfig::default()), "a ws listener runs on the defaults");
    assert_eq!(ws.websocket.as_ref().unwrap().path, "/mqtt");
    let t = wss.tls.as_ref().unwrap();
    assert_eq!((t.client_cert, t.min_version, t.reload_poll), (ClientCertMode::Required, TlsVersionName::V1_3, None));
    assert_eq!(wss.websocket.as_ref().unwrap().allowed_origins, ["https://app.example.com"]);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn tables_belong_to_their_types() {
    one_error("[[listeners]]\ntype = \"tls\"\n", "listeners[0].tls: required for type \"tls\"");
    one_error("[[listeners]]\ntype = \"wss\"\n", "listeners[0].tls: required for type \"wss\"");
    one_error(
        &format!("[[listeners]]\n{TLS}"),
        "listeners[0].tls: only for type \"tls\", \"wss\", \"stomp_tls\" or \"sockjs_tls\"",
    );
    one_error(
        "[[listeners]]\ntype = \"tls\"\nwebsocket = {}\ntls = { cert_file = \"a\", key_file = \"b\" }\n",
        "listeners[0].websocket: only for type \"ws\" or \"wss\"",
    );
    one_error(
        "[[listeners]]\ntype = \"tls\"\ntls = { cert_file = \"a\", key_file = \"b\", ca_fil = \"c\" }\n",
        "unknown key `listeners[0].tls.ca_fil` (did you mean `ca_file`?)",
    );
    one_error("[[listeners]]\ntype = \"tls\"\ntls = { cert_file = \"a\" }\n", "key_file");
}

#[test]
fn client_certificates_and_the_identities_taken_from_them() {
    one_error(
        "[[listeners]]\ntype = \"tls\"\ntls = { cert_file = \"a\", key_file = \"b\", ca_file = \"c\" }\n",
        "listeners[0].tls.ca_file: only used to verify client certificates",
    );
    one_error(
        "[[listeners]]\ntype = \"tls\"\ntls = { cert_file = \"a\", key_file = \"b\", client_cert = \"optional\" }\n",
        "listeners[0].tls.ca_file: required when tls.client_cert",
    );
    let optional = "[[listeners]]\ntype = \"tls\"\npeer_cert_as_username = \"cn\"\n\
        tls = { cert_file = \"a\", key_file = \"b\", ca_file = \"c\", client_cert = \"optional\" }\n";
    one_error(
        optional,
        "listeners[0].peer_cert_as_username: needs a tls or wss listener with tls.client_cert = \"required\"",
    );
    one_error("[[listeners]]\npeer_cert_as_client_id = \"dn\"\n", "listeners[0].peer_cert_as_client_id: needs");
    one_error(
        "[[listeners]]\ntype = \"tls\"\npeer_cert_as_username = \"email\"\ntls = { cert_file = \"a\", key_file = \"b\" }\n",
        "expected one of \"cn\", \"dn\", \"san_dns\", \"san_uri\"",
    );
    let config =
        ok("[[listeners]]\ntype = \"wss\"\npeer_cert_as_username = \"san_dns\"\npeer_cert_as_client_id = \"cn\"\n\
        tls = { cert_file = \"a\", key_file = \"b\", ca_file = \"c\", client_cert = \"required\" }\n");
    let options = config.listeners[0].core_options();
    assert_eq!(options.cert_as_username, Some(CertField::SanDns));
    assert_eq!(options.cert_as_client_id, Some(CertField::CommonName));
}

#[test]
fn tcp_keepalive() {
    use super::listener::TcpKeepaliveConfig;
    let config = ok("[[listeners]]\n");
    assert_eq!(config.listeners[0].tcp_keepalive, Some(TcpKeepaliveConfig::default()));
    let config = ok("[[listeners]]\ntcp_keepalive = \"off\"\n");
    assert_eq!(config.listeners[0].tcp_keepalive, None);
    let config = ok("[[listeners]]\ntcp_keepalive = { idle = \"30s\" }\n");
    let keepalive = config.listeners[0].tcp_keepalive.expect("on");
    assert_eq!(
        (keepalive.idle, keepalive.interval, keepalive.count),
        (Duration::from_secs(30), Duration::from_secs(20), 3)
    );
    one_error(
        "[[listeners]]\ntcp_keepalive = { idle = \"1500ms\" }\n",
        "listeners[0].tcp_keepalive.idle: must be whole seconds",
    );
    one_error(
        "[[listeners]]\ntcp_keepalive = { interval = \"10h\" }\n",
        "listeners[0].tcp_keepalive.interval: must be at most",
    );
    one_error("[[listeners]]\ntcp_keepalive = { count = 0 }\n", "listeners[0].tcp_keepalive.count: must be at least 1");
    one_error("[[listeners]]\ntcp_keepalive = { idle = \"1m\", probes = 3 }\n", "unknown key");
    one_error("[[listeners]]\ntcp_keepalive = \"on\"\n", "\"off\"");
}

#[test]
fn proxies_websocket_paths_and_origins() {
    one_error(
        "[[listeners]]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        "listeners[0].trusted_proxies: only used with proxy_protocol = true or on ws/wss/sockjs/sockjs_tls listeners",
    );
    ok("[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    one_error("[[listeners]]\nproxy_protocol = true\n", "listeners[0].proxy_protocol: needs trusted_proxies");
    ok("[[listeners]]\ntype = \"ws\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n");
    one_error("[[listeners]]\ntype = \"ws\"\nwebsocket = { path = \"mqtt\" }\n", "listeners[0].websocket.path");
    one_error(
        "[[listeners]]\ntype = \"ws\"\nwebsocket = { allowed_origins = [\"https://a.example/\"] }\n",
        "listeners[0].websocket.allowed_origins: \"https://a.example/\" is not an origin",
    );
    one_error(
        "[[listeners]]\ntype = \"tls\"\ntls = { cert_file = \"a\", key_file = \"b\", reload_poll = \"10ms\" }\n",
        "listeners[0].tls.reload_poll: must be at least 100ms",
    );
}

#[test]
fn per_listener_limits() {
    let limits = portcullis_core::settings::Limits::default();
    let config = ok("[limits]\nrate_limit = { bytes_per_sec = 1000 }\n\
        [[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\n\
        [[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\nrate_limit = \"off\"\nmax_packet_size = \"64KiB\"\n\
        [[listeners]]\nname = \"c\"\nbind = \"127.0.0.1:0\"\nrate_limit = { bytes_per_sec = \"1MB\", burst = 10 }\n");
    assert_eq!(config.listeners[0].core_options(), ListenerOptions::default(), "inherits");
    let b = config.listeners[1].core_options();
    assert_eq!((b.max_packet_size, b.rate_limit), (Some(65536), Some(None)));
    let c = config.listeners[2].core_options();
    assert_eq!(c.rate_limit, Some(Some(RateLimit { bytes_per_sec: 1_000_000, burst: 10 })));
    let ctx = portcullis_core::connection::ListenerContext::with_options("b", 1, b);
    assert_eq!(ctx.max_packet_size(&limits), 65536);
    assert_eq!(ctx.rate_limit(&limits), None);
    one_error("[[listeners]]\nmax_packet_size = 8\n", "listeners[0].max_packet_size: must be at least 16 bytes");
    one_error(
        "[[listeners]]\nrate_limit = { bytes_per_sec = 0 }\n",
        "listeners[0].rate_limit.bytes_per_sec: must be at least 1 byte",
    );
    one_error("[[listeners]]\nhandshake_timeout = \"0s\"\n", "listeners[0].handshake_timeout: must be at least 1ms");
    // The per-listener checks run on port-0 listeners too.
    one_error("[[listeners]]\nbind = \"127.0.0.1:0\"\nmax_connections = 0\n", "listeners[0].max_connections");
}

#[test]
fn stomp_listeners() {
    let config = ok("[[listeners]]\nname = \"a\"\ntype = \"stomp\"\n\n[[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\ntype = \"stomp\"\n\
         stomp = { mountpoint = \"s/\", send_qos = 0, heartbeat_send = \"off\" }\n");
    let [a, b] = &config.listeners[..] else { panic!("two listeners") };
    assert_eq!(a.bind, "0.0.0.0:61613".parse().unwrap(), "STOMP's port by default");
    assert_eq!(a.stomp, Some(portcullis_stomp::StompConfig::default()));
    let s = b.stomp.as_ref().unwrap();
    assert_eq!((s.mountpoint.as_str(), s.send_qos, s.heartbeat_send), ("s/", 0, None));
    one_error(
        "[[listeners]]\ntype = \"stomp\"\nstomp = { send_qos = 3 }\n",
        "listeners[0].stomp.send_qos: 3 is not a QoS",
    );
    one_error(
        "[[listeners]]\nstomp = { }\n",
        "listeners[0].stomp: only for type \"stomp\", \"stomp_tls\", \"sockjs\" or \"sockjs_tls\"",
    );
    one_error("[[listeners]]\ntype = \"stomp_tls\"\n", "listeners[0].tls: required for type \"stomp_tls\"");
    one_error("[[listeners]]\ntype = \"stomp\"\nstomp = { mountpoint = \"a/#\" }\n", "listeners[0].stomp.mountpoint");
}

#[test]
fn sockjs_listeners() {
    use portcullis_stomp::sockjs::SockJsConfig;
    let config =
        ok("[[listeners]]\nname = \"a\"\ntype = \"sockjs\"\n\n[[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\n\
         type = \"sockjs\"\nstomp = { mountpoint = \"web/\" }\n\
         sockjs = { path = \"/s\", heartbeat = \"200ms\", disconnect_delay = \"1s\", max_message_bytes = \"4KiB\", \
         websocket = false, demo = true }\n");
    let [a, b] = &config.listeners[..] else { panic!("two listeners") };
    assert_eq!(a.bind, "0.0.0.0:61616".parse().unwrap(), "SockJS's port by default");
    assert_eq!(a.sockjs, Some(SockJsConfig::default()));
    assert_eq!(a.stomp, Some(portcullis_stomp::StompConfig::default()), "STOMP settings on their defaults");
    let d = SockJsConfig::default();
    assert_eq!(
        (d.path.as_str(), d.heartbeat, d.disconnect_delay),
        ("/stomp", Duration::from_secs(25), Duration::from_secs(5))
    );
    assert_eq!((d.websocket, d.demo, d.streaming_bytes), (true, false, 128 * 1024));
    let s = b.sockjs.as_ref().unwrap();
    assert_eq!(
        (s.path.as_str(), s.heartbeat, s.disconnect_delay),
        ("/s", Duration::from_millis(200), Duration::from_secs(1))
    );
    assert_eq!((s.max_message_bytes, s.websocket, s.demo), (4096, false, true));
    assert_eq!(b.stomp.as_ref().unwrap().mountpoint, "web/");
    // Errors name the key.
    for (table, expected) in [
        ("path = \"stomp\"", "listeners[0].sockjs.path: \"stomp\" is not a path"),
        ("path = \"/stomp/\"", "listeners[0].sockjs.path"),
        ("path = \"/demo\"", "listeners[0].sockjs.path: \"/demo\" is the demo page's"),
        ("heartbeat = \"10ms\"", "listeners[0].sockjs.heartbeat: at least 100ms"),
        ("disconnect_delay = \"0s\"", "listeners[0].sockjs.disconnect_delay: at least 100ms"),
        ("max_message_bytes = 10", "listeners[0].sockjs.max_message_bytes: at least 1KiB"),
        ("max_queued_bytes = 10", "listeners[0].sockjs.max_queued_bytes: at least 1KiB"),
        ("streaming_bytes = 10", "listeners[0].sockjs.streaming_bytes: at least 4KiB"),
    ] {
        one_error(&format!("[[listeners]]\ntype = \"sockjs\"\nsockjs = {{ {table} }}\n"), expected);
    }
    one_error("[[listeners]]\nsockjs = { }\n", "listeners[0].sockjs: only for type \"sockjs\"");
    one_error("[[listeners]]\ntype = \"stomp\"\nsockjs = { }\n", "listeners[0].sockjs: only for type \"sockjs\"");
    // sockjs_tls: the same tables, TLS required, its own port.
    let config = ok(&format!("[[listeners]]\ntype = \"sockjs_tls\"\n{TLS}sockjs = {{ path = \"/s\" }}\n"));
    let t = &config.listeners[0];
    assert_eq!(t.bind, "0.0.0.0:61617".parse().unwrap(), "SockJS over TLS's port by default");
    assert_eq!(t.sockjs.as_ref().unwrap().path, "/s");
    assert_eq!(t.stomp, Some(portcullis_stomp::StompConfig::default()));
    one_error("[[listeners]]\ntype = \"sockjs_tls\"\n", "listeners[0].tls: required for type \"sockjs_tls\"");
    one_error(&format!("[[listeners]]\ntype = \"sockjs\"\n{TLS}"), "listeners[0].tls: only for type");
    one_error(
        "[[listeners]]\ntype = \"sockjs_tls\"\npeer_cert_as_username = \"cn\"\n\
         tls = { cert_file = \"s.pem\", key_file = \"s.key\", ca_file = \"ca.pem\", client_cert = \"required\" }\n",
        "listeners[0].peer_cert_as_username: not used on sockjs",
    );
    let e = errors("[[listeners]]\ntype = \"sockjs\"\nsockjs = { pth = \"/x\" }\n");
    assert!(e.iter().any(|l| l.contains("unknown key `listeners[0].sockjs.pth`")), "{e:?}");
}
