//! Checks on values that have the right type but may be out of range or
//! contradict each other, and the step from the file model to [`Config`].
//!
//! Everything here is pure: no I/O, no sockets bound, no clock read. Each
//! check names the key it is about; [`super`] adds the file and line.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

use super::model::{FileConfig, LimitsConfig, ListenerEntry, SessionConfig, SOLE_LISTENER_NAME};
use super::{Config, ListenerConfig, Problem, ProblemKind};

/// Largest MQTT packet: the Remaining Length field tops out at 268 435 455.
pub(super) const MAX_PACKET_SIZE_LIMIT: u64 = 268_435_455;
/// Smallest `max_packet_size`: a CONNECT with a one-byte client id and a
/// few properties does not fit in less.
pub(super) const MIN_PACKET_SIZE: u64 = 16;
/// Longest listener name.
const MAX_LISTENER_NAME_LEN: usize = 64;
/// Longest node name.
const MAX_NODE_NAME_LEN: usize = 255;

/// Every problem in `file`, in key order.
pub(super) fn validate(file: &FileConfig) -> Vec<Problem> {
    let mut checks = Checks::default();
    check_node_name(&mut checks, &file.node.name);
    check_listeners(&mut checks, &file.listeners);
    check_limits(&mut checks, &file.limits);
    check_session(&mut checks, &file.session);
    checks.at_most("retained.max_payload_size", file.retained.max_payload_size, usize::MAX as u64, " bytes");
    checks.at_most("retained.max_bytes", file.retained.max_bytes, usize::MAX as u64, " bytes");
    if file.persistence.snapshot_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        checks.fail("persistence.snapshot_file", "must not be empty (remove the key to disable snapshots)");
    }
    if file.persistence.snapshot_file.is_some() && file.persistence.mode != super::model::PersistenceMode::Off {
        checks.fail(
            "persistence.snapshot_file",
            "only with persistence.mode = \"off\" (the default mode is \"strict\"): the store keeps sessions and retained messages; remove snapshot_file, or set mode = \"off\" to keep the snapshot (docs/durability.md)",
        );
    }
    if file.persistence.mode != super::model::PersistenceMode::Off && file.persistence.dir.as_os_str().is_empty() {
        checks.fail("persistence.dir", "must not be empty");
    }
    if file.persistence.relaxed_window.is_zero() || file.persistence.relaxed_window > Duration::from_secs(60) {
        checks.fail("persistence.relaxed_window", "must be between 1ms and 60s");
    }
    if let Some(interval) = file.sys.interval {
        checks.duration_at_least("sys.interval", interval, Duration::from_secs(1));
    }
    check_log_level(&mut checks, &file.log.level);
    check_security(&mut checks, file);
    for (key, message) in super::enhanced::validate(&file.auth.scram, &file.auth.enhanced_token) {
        checks.fail(key, message);
    }
    for (key, message) in file.modules.validate() {
        checks.fail(format!("modules.{key}"), message);
    }
    check_admin(&mut checks, file);
    check_cluster(&mut checks, file);
    for (key, message) in portcullis_bridge::validate_all(&file.bridges) {
        checks.fail(key, message);
    }
    checks.problems
}

/// Provider names unique per section, chains naming existing providers
/// (each at most once), listeners naming existing chains, sane numbers.
fn check_security(checks: &mut Checks, file: &FileConfig) {
    use std::collections::HashSet;
    for (section, missing) in [("auth", file.auth.not_built()), ("acl", file.acl.not_built())] {
        for (kind, feature) in missing {
            checks.fail(
                format!("{section}.{kind}"),
                format!(
                    "this build of portcullis has no `{kind}` backend (built without the cargo feature `{feature}`)"
                ),
            );
        }
    }
    for (section, names, chain, chains) in [
        ("auth", file.auth.provider_names(), &file.auth.chain, &file.auth.chains),
        ("acl", file.acl.provider_names(), &file.acl.chain, &file.acl.chains),
    ] {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (name, kind) in &names {
            if let Some(other) = seen.insert(name, kind) {
                checks.fail(
                    format!("{section}.{kind}.{name}"),
                    format!("provider name `{name}` is also used by {section}.{other}.{name}; names must be unique"),
                );
            }
        }
        let mut all = vec![("default".to_string(), chain)];
        for (k, v) in chains {
            if k == "default" {
                checks.fail(
                    format!("{section}.chains.default"),
                    format!("`default` is {section}.chain; pick another name"),
                );
            }
            all.push((k.clone(), v));
        }
        for (chain_name, list) in all {
            let key = if chain_name == "default" {
                format!("{section}.chain")
            } else {
                format!("{section}.chains.{chain_name}")
            };
            let mut used = HashSet::new();
            for p in list {
                if !seen.contains_key(p.as_str()) {
                    let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                    checks.fail(
                        key.clone(),
                        format!(
                            "no provider named `{p}` (defined: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
                if !used.insert(p) {
                    checks.fail(key.clone(), format!("provider `{p}` appears twice"));
                }
            }
        }
    }
    for (i, l) in file.listeners.iter().enumerate() {
        if l.auth_chain != "default" && !file.auth.chains.contains_key(&l.auth_chain) {
            checks.fail(format!("listeners[{i}].auth_chain"), format!("no auth chain named `{}`", l.auth_chain));
        }
        if l.acl_chain != "default" && !file.acl.chains.contains_key(&l.acl_chain) {
            checks.fail(format!("listeners[{i}].acl_chain"), format!("no acl chain named `{}`", l.acl_chain));
        }
    }
    for (name, c) in &file.auth.client_id {
        if c.path.is_some() != c.clients.is_empty() {
            checks.fail(format!("auth.client_id.{name}"), "give exactly one of `path` and `clients`");
        }
    }
    let jitter = file.auth.cache.jitter;
    if !(0.0..=0.5).contains(&jitter) {
        checks.fail("auth.cache.jitter", format!("must be between 0.0 and 0.5, got {jitter}"));
    }
    if file.auth.guard.max_failures == 0 {
        checks.fail("auth.guard.max_failures", "must be at least 1 (set enabled = false to turn the guard off)");
    }
    if file.auth.guard.max_failures_per_ip == 0 {
        checks.fail("auth.guard.max_failures_per_ip", "must be at least 1 (set enabled = false to turn the guard off)");
    }
    for (name, p) in &file.acl.policy_dir {
        checks.duration_at_least(&format!("acl.policy_dir.{name}.poll"), p.poll, Duration::from_millis(100));
    }
}

/// `[admin]`: sane bounds, and the emqttd publish form naming a listener.
fn check_admin(checks: &mut Checks, file: &FileConfig) {
    let admin = &file.admin;
    if admin.max_connections == 0 {
        checks.fail("admin.max_connections", "must be at least 1");
    }
    checks.at_least("admin.max_body_size", admin.max_body_size, 1024, " bytes");
    checks.at_most("admin.max_body_size", admin.max_body_size, 1 << 30, " bytes");
    checks.duration_at_least("admin.request_timeout", admin.request_timeout, Duration::from_secs(1));
    if admin.login_failures == 0 {
        checks.fail("admin.login_failures", "must be at least 1");
    }
    checks.duration_at_least("admin.login_lockout", admin.login_lockout, Duration::from_secs(1));
    let base = &admin.dashboard_base_path;
    if !base.starts_with('/')
        || base.contains("//")
        || !base.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
    {
        checks.fail(
            "admin.dashboard_base_path",
            "must start with `/` and hold only letters, digits, `-._~` and single `/` (it becomes the cookie's Path)",
        );
    }
    checks.duration_at_least(
        "admin.dashboard_session_timeout",
        admin.dashboard_session_timeout,
        Duration::from_secs(60),
    );
    if admin.data_dir.as_os_str().is_empty() {
        checks.fail("admin.data_dir", "must not be empty");
    }
    if let Some(portcullis_backends::common::secret::Secret::Inline(pw)) = &admin.dashboard_initial_password {
        if pw.chars().count() < 16 {
            checks.fail("admin.dashboard_initial_password", "must be at least 16 characters");
        }
    }
    // sun_path holds 108 bytes with the terminating NUL.
    if admin.socket.as_os_str().len() > 107 {
        checks.fail("admin.socket", "a Unix socket path is at most 107 bytes long");
    }
    if let Some(name) = &admin.mqtt_publish_listener {
        let sole = file.listeners.len() == 1;
        let names: Vec<&str> = file
            .listeners
            .iter()
            .map(|l| l.name.as_deref().unwrap_or(if sole { SOLE_LISTENER_NAME } else { "" }))
            .filter(|n| !n.is_empty())
            .collect();
        if !names.contains(&name.as_str()) {
            checks.fail(
                "admin.mqtt_publish_listener",
                format!("no listener named `{name}` (listeners: {})", names.join(", ")),
            );
        }
    }
}

/// The file model as the broker uses it. Meant for a file that
/// [`validate`] found no problem in; on any other it still returns a value
/// (listener names are then made up) but the value means nothing.
pub(super) fn resolve(file: FileConfig) -> Config {
    let sole = file.listeners.len() == 1;
    let listeners = file
        .listeners
        .into_iter()
        .enumerate()
        .map(|(index, entry)| (index, entry.effective_bind(), entry))
        .map(|(index, bind, entry)| ListenerConfig {
            name: entry.name.unwrap_or_else(|| {
                if sole {
                    SOLE_LISTENER_NAME.to_owned()
                } else {
                    format!("listener-{index}")
                }
            }),
            kind: entry.kind,
            bind,
            max_connections: entry.max_connections,
            backlog: entry.backlog,
            auth_chain: entry.auth_chain,
            acl_chain: entry.acl_chain,
            max_packet_size: entry.max_packet_size,
            rate_limit: entry.rate_limit,
            handshake_timeout: entry.handshake_timeout,
            proxy_protocol: entry.proxy_protocol,
            trusted_proxies: entry.trusted_proxies,
            tcp_keepalive: entry.tcp_keepalive,
            peer_cert_as_username: entry.peer_cert_as_username,
            peer_cert_as_client_id: entry.peer_cert_as_client_id,
            client_id_pattern: entry.client_id_pattern,
            accept_bridges: entry.accept_bridges,
            tls: entry.tls,
            // A WebSocket listener without the table runs on its defaults.
            websocket: match entry.kind.is_websocket() {
                true => Some(entry.websocket.unwrap_or_default()),
                false => entry.websocket,
            },
            // Likewise a STOMP listener.
            stomp: match entry.kind.is_stomp() {
                true => Some(entry.stomp.unwrap_or_default()),
                false => entry.stomp,
            },
            // And a SockJS listener.
            sockjs: match entry.kind.is_sockjs() {
                true => Some(entry.sockjs.unwrap_or_default()),
                false => entry.sockjs,
            },
        })
        .collect();
    Config {
        node: file.node,
        listeners,
        limits: file.limits,
        session: file.session,
        retained: file.retained,
        sys: file.sys,
        shared_subscription: file.shared_subscription,
        persistence: file.persistence,
        auth: file.auth,
        acl: file.acl,
        modules: file.modules,
        cluster: file.cluster,
        bridges: file.bridges,
        log: file.log,
        admin: file.admin,
    }
}

#[derive(Default)]
struct Checks {
    problems: Vec<Problem>,
}

impl Checks {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), line: None, kind: ProblemKind::Invalid(message.into()) });
    }

    fn at_least(&mut self, path: &str, value: u64, min: u64, unit: &str) {
        if value < min {
            self.fail(path, format!("must be at least {}, got {value}", amount(min, unit)));
        }
    }

    fn at_most(&mut self, path: &str, value: u64, max: u64, unit: &str) {
        if value > max {
            self.fail(path, format!("must be at most {}, got {value}", amount(max, unit)));
        }
    }

    fn between(&mut self, path: &str, value: u64, min: u64, max: u64, unit: &str) {
        self.at_least(path, value, min, unit);
        self.at_most(path, value, max, unit);
    }

    fn duration_at_least(&mut self, path: &str, value: Duration, min: Duration) {
        if value < min {
            self.fail(
                path,
                format!(
                    "must be at least {}, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(value)
                ),
            );
        }
    }

    fn duration_at_most(&mut self, path: &str, value: Duration, max: Duration) {
        if value > max {
            self.fail(
                path,
                format!(
                    "must be at most {}, got {}",
                    humantime::format_duration(max),
                    humantime::format_duration(value)
                ),
            );
        }
    }
}

/// `16 bytes`, `1 byte`, `65535`.
fn amount(n: u64, unit: &str) -> String {
    match unit {
        " bytes" if n == 1 => "1 byte".to_owned(),
        _ => format!("{n}{unit}"),
    }
}

fn check_node_name(checks: &mut Checks, name: &str) {
    const PATH: &str = "node.name";
    if name.is_empty() {
        checks.fail(PATH, "must not be empty");
    } else if name.len() > MAX_NODE_NAME_LEN {
        checks.fail(PATH, format!("must be at most {MAX_NODE_NAME_LEN} bytes, got {}", name.len()));
    } else if let Some(bad) = name.chars().find(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
    {
        checks.fail(PATH, format!("{bad:?} is not allowed: the name is a level of the topic $SYS/brokers/<name>/"));
    }
}

fn check_listeners(checks: &mut Checks, listeners: &[ListenerEntry]) {
    if listeners.is_empty() {
        checks.fail("listeners", "at least one listener is required (leave out [[listeners]] for the default one)");
        return;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut binds = HashMap::new();
    for (index, listener) in listeners.iter().enumerate() {
        let at = |key: &str| format!("listeners[{index}].{key}");
        match &listener.name {
            None if listeners.len() > 1 => {
                checks.fail(at("name"), "required when more than one listener is configured");
            }
            None => {}
            Some(name) => {
                if let Some(message) = listener_name_problem(name) {
                    checks.fail(at("name"), message);
                } else {
                    match names.entry(name) {
                        Entry::Vacant(slot) => {
                            slot.insert(index);
                        }
                        Entry::Occupied(first) => checks.fail(
                            at("name"),
                            format!("duplicate listener name \"{name}\" (also listeners[{}])", first.get()),
                        ),
                    }
                }
            }
        }
        // Port 0 asks the OS for a free port: several such listeners never clash.
        let bind = listener.effective_bind();
        if bind.port() != 0 {
            match binds.entry(bind) {
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
                Entry::Occupied(first) => {
                    checks.fail(at("bind"), format!("{bind} is already bound by listeners[{}]", first.get()))
                }
            }
        }
        checks.at_least(&at("max_connections"), listener.max_connections as u64, 1, "");
        checks.at_least(&at("backlog"), u64::from(listener.backlog), 1, "");
        check_listener_transport(checks, index, listener);
    }
}

/// The keys that depend on the listener's `type`: TLS settings for `tls`
/// and `wss`, WebSocket settings for `ws` and `wss`, certificate-derived
/// identities only where a client certificate is required, and the
/// per-listener limits.
fn check_listener_transport(checks: &mut Checks, index: usize, listener: &ListenerEntry) {
    use super::listener::ClientCertMode;
    let at = |key: &str| format!("listeners[{index}].{key}");
    let kind = listener.kind;
    match (&listener.tls, kind.is_tls()) {
        (None, true) => checks.fail(
            at("tls"),
            format!("required for type \"{}\" (tls = {{ cert_file = …, key_file = … }})", kind.name()),
        ),
        (Some(_), false) => checks.fail(
            at("tls"),
            format!(
                "only for type \"tls\", \"wss\", \"stomp_tls\" or \"sockjs_tls\", this listener is \"{}\"",
                kind.name()
            ),
        ),
        _ => {}
    }
    if let Some(tls) = &listener.tls {
        match (tls.client_cert, &tls.ca_file) {
            (ClientCertMode::None, Some(_)) => checks.fail(
                at("tls.ca_file"),
                "only used to verify client certificates: set tls.client_cert = \"optional\" or \"required\"",
            ),
            (ClientCertMode::Optional | ClientCertMode::Required, None) => {
                checks.fail(at("tls.ca_file"), "required when tls.client_cert is \"optional\" or \"required\"")
            }
            _ => {}
        }
        for (key, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
            if path.as_os_str().is_empty() {
                checks.fail(at(&format!("tls.{key}")), "must not be empty");
            }
        }
        if let Some(poll) = tls.reload_poll {
            checks.duration_at_least(&at("tls.reload_poll"), poll, Duration::from_millis(100));
        }
    }
    if listener.stomp.is_some() && !kind.is_stomp() {
        checks.fail(
            at("stomp"),
            format!(
                "only for type \"stomp\", \"stomp_tls\", \"sockjs\" or \"sockjs_tls\", this listener is \"{}\"",
                kind.name()
            ),
        );
    }
    if listener.sockjs.is_some() && !kind.is_sockjs() {
        checks.fail(
            at("sockjs"),
            format!("only for type \"sockjs\" or \"sockjs_tls\", this listener is \"{}\"", kind.name()),
        );
    }
    if let Some(sockjs) = &listener.sockjs {
        for (key, message) in sockjs.validate() {
            checks.fail(at(&format!("sockjs.{key}")), message);
        }
    }
    if let Some(stomp) = &listener.stomp {
        for (key, message) in stomp.validate() {
            checks.fail(at(&format!("stomp.{key}")), message);
        }
    }
    if listener.websocket.is_some() && !kind.is_websocket() {
        checks.fail(at("websocket"), format!("only for type \"ws\" or \"wss\", this listener is \"{}\"", kind.name()));
    }
    if let Some(ws) = &listener.websocket {
        if !ws.path.starts_with('/') || ws.path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            checks.fail(at("websocket.path"), format!("\"{}\" is not a path such as \"/mqtt\"", ws.path));
        }
        for origin in &ws.allowed_origins {
            if origin.is_empty() || origin.contains(char::is_whitespace) || origin.ends_with('/') {
                checks.fail(
                    at("websocket.allowed_origins"),
                    format!("\"{origin}\" is not an origin such as \"https://app.example.com\" (scheme, host, port; no path)"),
                );
            }
        }
    }
    for key in ["peer_cert_as_username", "peer_cert_as_client_id"] {
        let set = match key {
            "peer_cert_as_username" => listener.peer_cert_as_username.is_some(),
            _ => listener.peer_cert_as_client_id.is_some(),
        };
        let required = listener.tls.as_ref().is_some_and(|t| t.client_cert == ClientCertMode::Required);
        if set && kind.is_sockjs() {
            checks.fail(
                at(key),
                "not used on sockjs / sockjs_tls listeners: their STOMP sessions do not take identities from client certificates",
            );
        } else if set && !(kind.is_tls() && required) {
            checks.fail(
                at(key),
                "needs a tls or wss listener with tls.client_cert = \"required\" (otherwise a client without a certificate would choose its own)",
            );
        }
    }
    // Without a list, whoever reaches the port would write the header and
    // so choose the address every `ip` rule and the guard see.
    if listener.proxy_protocol && listener.trusted_proxies.is_empty() {
        checks.fail(
            at("proxy_protocol"),
            "needs trusted_proxies (the networks of the load balancers): otherwise any client could send a PROXY header and claim any source address",
        );
    }
    if !listener.trusted_proxies.is_empty() && !listener.proxy_protocol && !kind.is_websocket() && !kind.is_sockjs() {
        checks.fail(
            at("trusted_proxies"),
            "only used with proxy_protocol = true or on ws/wss/sockjs/sockjs_tls listeners (X-Forwarded-For, Forwarded)",
        );
    }
    if let Some(keepalive) = &listener.tcp_keepalive {
        // Linux's limits (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
        for (key, value) in [("idle", keepalive.idle), ("interval", keepalive.interval)] {
            let path = at(&format!("tcp_keepalive.{key}"));
            if value.subsec_nanos() != 0 {
                checks.fail(&path, format!("must be whole seconds, got {}", humantime::format_duration(value)));
            }
            checks.duration_at_least(&path, value, Duration::from_secs(1));
            checks.duration_at_most(&path, value, Duration::from_secs(32767));
        }
        checks.between(&at("tcp_keepalive.count"), u64::from(keepalive.count), 1, 127, "");
    }
    if let Some(max) = listener.max_packet_size {
        checks.between(&at("max_packet_size"), max, MIN_PACKET_SIZE, MAX_PACKET_SIZE_LIMIT, " bytes");
    }
    if let Some(pattern) = &listener.client_id_pattern {
        if let Err(e) = portcullis_core::binding::ClientIdPattern::new(pattern) {
            checks.fail(at("client_id_pattern"), e);
        }
    }
    if let Some(Some(rate)) = &listener.rate_limit {
        checks.at_least(&at("rate_limit.bytes_per_sec"), rate.bytes_per_sec, 1, " bytes");
        if let Some(burst) = rate.burst {
            checks.at_least(&at("rate_limit.burst"), burst, 1, " bytes");
        }
    }
    checks.duration_at_least(&at("handshake_timeout"), listener.handshake_timeout, Duration::from_millis(1));
}

fn listener_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > MAX_LISTENER_NAME_LEN {
        return Some(format!("must be at most {MAX_LISTENER_NAME_LEN} characters, got {}", name.len()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Some(format!("\"{name}\" may only contain ASCII letters, digits, '-', '_' and '.'"));
    }
    None
}

/// `[cluster]`, when enabled: its own keys, and every MQTT maximum packet
/// size (`limits.max_packet_size` and each listener's) within NATS'
/// `max_payload`, so that any PUBLISH a client may send fits one NATS
/// message (headers aside: a message that still does not fit is dropped
/// for the other nodes and counted).
fn check_cluster(checks: &mut Checks, file: &FileConfig) {
    let cluster = &file.cluster;
    if !cluster.enabled {
        return;
    }
    if let Err(e) = cluster.validate() {
        checks.fail(format!("cluster.{}", e.key), e.reason);
    }
    let max_payload = cluster.max_payload;
    let mut sizes = vec![("limits.max_packet_size".to_string(), file.limits.max_packet_size)];
    for (index, l) in file.listeners.iter().enumerate() {
        if let Some(max) = l.max_packet_size {
            sizes.push((format!("listeners[{index}].max_packet_size"), max));
        }
    }
    for (key, size) in sizes {
        if size > max_payload {
            checks.fail(
                key.clone(),
                format!(
                    "{key} ({size} bytes) is larger than cluster.max_payload ({max_payload} bytes): a PUBLISH that size could not cross to the other nodes; lower {key} or raise NATS' max_payload and cluster.max_payload with it"
                ),
            );
        }
    }
}

fn check_limits(checks: &mut Checks, limits: &LimitsConfig) {
    checks.between("limits.max_packet_size", limits.max_packet_size, MIN_PACKET_SIZE, MAX_PACKET_SIZE_LIMIT, " bytes");
    checks.between("limits.max_client_id_len", limits.max_client_id_len, 1, 65535, " bytes");
    checks.duration_at_least("limits.connect_timeout", limits.connect_timeout, Duration::from_nanos(1));
    if let Some(cap) = limits.max_keep_alive {
        if cap.subsec_nanos() != 0 {
            checks.fail(
                "limits.max_keep_alive",
                format!(
                    "must be whole seconds (MQTT keep-alive is in seconds), got {}",
                    humantime::format_duration(cap)
                ),
            );
        }
        checks.duration_at_most("limits.max_keep_alive", cap, Duration::from_secs(65535));
    }
    if let Some(rate) = &limits.rate_limit {
        checks.at_least("limits.rate_limit.bytes_per_sec", rate.bytes_per_sec, 1, " bytes");
        if let Some(burst) = rate.burst {
            checks.at_least("limits.rate_limit.burst", burst, 1, " bytes");
        }
    }
    checks.between("limits.max_topic_levels", limits.max_topic_levels as u64, 1, 65535, "");
    checks.between("limits.max_topic_filter_len", limits.max_topic_filter_len as u64, 1, 65535, " bytes");
    checks.between(
        "limits.max_connect_size",
        limits.max_connect_size,
        MIN_PACKET_SIZE,
        MAX_PACKET_SIZE_LIMIT,
        " bytes",
    );
    checks.between("limits.max_username_len", limits.max_username_len as u64, 1, 65535, " bytes");
    checks.at_least("limits.max_user_property_bytes", limits.max_user_property_bytes, 1, " bytes");
    checks.at_most("limits.max_user_property_bytes", limits.max_user_property_bytes, u64::from(u32::MAX), " bytes");
    if let Some(idle) = limits.idle_timeout {
        checks.duration_at_least("limits.idle_timeout", idle, Duration::from_secs(1));
    }
}

fn check_session(checks: &mut Checks, session: &SessionConfig) {
    checks.between("session.max_inflight", session.max_inflight, 1, 65535, "");
    checks.duration_at_least("session.stall_timeout", session.stall_timeout, Duration::from_millis(1));
    checks.between("session.max_awaiting_rel", session.max_awaiting_rel, 1, 65535, "");
    checks.duration_at_least("session.await_rel_timeout", session.await_rel_timeout, Duration::from_nanos(1));
    checks.at_least("session.max_queue_len", session.max_queue_len as u64, 1, "");
    checks.between("session.max_queue_bytes", session.max_queue_bytes, 1, usize::MAX as u64, " bytes");
    // The v5 Session Expiry Interval is a four-byte count of seconds.
    checks.duration_at_most(
        "session.max_session_expiry",
        session.max_session_expiry,
        Duration::from_secs(u64::from(u32::MAX)),
    );
}

/// Log levels a bare word may name; any other bare word would be read by
/// EnvFilter as a target and silently turn off every other log line.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn check_log_level(checks: &mut Checks, level: &str) {
    const PATH: &str = "log.level";
    if level.trim().is_empty() {
        checks.fail(PATH, "must not be empty (write e.g. \"info\")");
        return;
    }
    if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(level) {
        checks.fail(PATH, format!("invalid filter \"{level}\": {err}"));
        return;
    }
    for directive in level.split(',').map(str::trim) {
        let bare = !directive.is_empty()
            && directive.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'));
        if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            checks.fail(
                PATH,
                format!(
                    "\"{directive}\" is not a level (trace, debug, info, warn, error, off); to filter by target write \"{directive}=<level>\""
                ),
            );
        }
    }
}
