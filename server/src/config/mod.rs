//! The config file, `portcullis.toml`: its format, validation and messages.
//!
//! Loading goes text → [`source`] (TOML syntax, the line of every key) →
//! [`de`] (the serde model of [`model`], with the path of each type error
//! and unknown key, recovering to find them all) → [`validate`] (ranges and
//! relations between keys) → [`Config`]. Every step is pure except reading
//! the file in [`Config::load`]; binding sockets and the like come after,
//! from the validated [`Config`]. A file with problems yields all of them
//! at once in [`ConfigError::Invalid`], one line each: `FILE:LINE: key: what`.
//!
//! Value syntaxes (sizes, durations, `"off"`/`"never"`) are in [`units`].
//! The shipped `etc/portcullis.toml` documents every key and sets each to
//! its default, which [`Config::embedded`] also returns.

pub mod admin;
mod de;
pub mod enhanced;
pub mod listener;
mod model;
mod path;
pub mod security;
mod source;
pub(crate) use portcullis_core::units;
mod validate;

#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portcullis_core::settings::{BrokerSettings, Limits, RateLimit, RetainSettings, SessionSettings, SysSettings};

// The types of `Config`'s fields, for callers to name; not all are named yet.
#[allow(unused_imports)]
pub use model::{
    LimitsConfig, ListenerKind, LogConfig, LogFormat, NodeConfig, PersistenceConfig, PersistenceMode, RateLimitConfig,
    RetainedConfig, SessionConfig, SharedStrategyName, SharedSubscriptionConfig, SysConfig,
};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[node]`
    pub node: NodeConfig,
    /// `[[listeners]]`, at least one, with unique names and addresses.
    pub listeners: Vec<ListenerConfig>,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[session]`
    pub session: SessionConfig,
    /// `[retained]`
    pub retained: RetainedConfig,
    /// `[sys]`
    pub sys: SysConfig,
    /// `[shared_subscription]`
    pub shared_subscription: SharedSubscriptionConfig,
    /// `[persistence]`
    pub persistence: PersistenceConfig,
    /// `[auth]`
    pub auth: security::AuthSection,
    /// `[acl]`
    pub acl: security::AclSection,
    /// `[modules]`
    pub modules: portcullis_modules::ModulesConfig,
    /// `[cluster]`
    pub cluster: portcullis_cluster::ClusterConfig,
    /// `[[bridges]]`
    pub bridges: Vec<portcullis_bridge::BridgeConfig>,
    /// `[log]`
    pub log: LogConfig,
    /// `[admin]`
    pub admin: admin::AdminConfig,
}

/// One listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique among listeners; `default` for a single unnamed one.
    pub name: String,
    /// Transport (`type` in the file).
    pub kind: ListenerKind,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Connections open at once; more are refused.
    pub max_connections: usize,
    /// Kernel accept queue length.
    pub backlog: u32,
    /// Name of the auth chain (`default` or one of `[auth.chains]`).
    pub auth_chain: String,
    /// Name of the ACL chain (`default` or one of `[acl.chains]`).
    pub acl_chain: String,
    /// Own packet size cap; `None` = `limits.max_packet_size`.
    pub max_packet_size: Option<u64>,
    /// Own read rate limit: `None` = `limits.rate_limit`, `Some(None)` = off.
    pub rate_limit: Option<Option<RateLimitConfig>>,
    /// Time for the PROXY header, TLS handshake and WebSocket upgrade.
    pub handshake_timeout: std::time::Duration,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Proxies trusted for PROXY headers and `X-Forwarded-For`/`Forwarded`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// TCP keepalive on accepted sockets; `None`: off.
    pub tcp_keepalive: Option<listener::TcpKeepaliveConfig>,
    /// Username from the client certificate.
    pub peer_cert_as_username: Option<listener::CertFieldName>,
    /// Client id from the client certificate.
    pub peer_cert_as_client_id: Option<listener::CertFieldName>,
    /// Which client ids an identity may use (validated regex template).
    pub client_id_pattern: Option<String>,
    /// Accept CONNECTs with the bridge bit (`try_private`).
    pub accept_bridges: bool,
    /// Certificates; present exactly for `tls` and `wss` listeners.
    pub tls: Option<listener::ListenerTlsConfig>,
    /// WebSocket settings; present exactly for `ws` and `wss` listeners.
    pub websocket: Option<listener::WebSocketConfig>,
    /// STOMP settings; present exactly for `stomp`, `stomp_tls` and
    /// `sockjs` listeners.
    pub stomp: Option<portcullis_stomp::StompConfig>,
    /// SockJS settings; present exactly for `sockjs` listeners.
    pub sockjs: Option<portcullis_stomp::sockjs::SockJsConfig>,
}

impl ListenerConfig {
    /// The core's view of this listener's own settings, given the
    /// broker-wide limits they fall back to.
    pub fn core_options(&self) -> portcullis_core::connection::ListenerOptions {
        portcullis_core::connection::ListenerOptions {
            max_packet_size: self.max_packet_size.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            rate_limit: self.rate_limit.as_ref().map(|r| r.as_ref().map(rate_limit)),
            cert_as_username: self.peer_cert_as_username.map(Into::into),
            cert_as_client_id: self.peer_cert_as_client_id.map(Into::into),
            // Validated with the file: a pattern that does not compile never gets here.
            client_id_pattern: self
                .client_id_pattern
                .as_deref()
                .and_then(|p| portcullis_core::binding::ClientIdPattern::new(p).ok()),
            bridges: match self.accept_bridges {
                true => portcullis_core::connection::BridgeAdmission::Accept,
                false => portcullis_core::connection::BridgeAdmission::Refuse,
            },
        }
    }
}

fn rate_limit(rate: &RateLimitConfig) -> RateLimit {
    RateLimit { bytes_per_sec: rate.bytes_per_sec, burst: rate.burst.unwrap_or(rate.bytes_per_sec) }
}

impl Config {
    /// Embedded defaults (no file).
    pub fn embedded() -> Config {
        validate::resolve(model::FileConfig::default())
    }

    /// Read, parse and validate a file. Err holds every problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Config::from_str(&text, &path.display().to_string())
    }

    /// Parse and validate text; `origin` is the file name used in messages.
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid { origin: origin.to_owned(), problems };
        let source = source::Source::parse(text).map_err(|problem| invalid(vec![problem]))?;
        let outcome = de::deserialize::<model::FileConfig>(&source.table);
        let mut problems = outcome.problems;
        if let Some(file) = &outcome.value {
            // Keys that failed to deserialize hold defaults now; whatever
            // the checks say about them would be noise.
            problems.extend(
                validate::validate(file)
                    .into_iter()
                    .filter(|problem| !outcome.hidden.iter().any(|hidden| path::is_within(&problem.path, hidden))),
            );
        }
        match outcome.value {
            Some(file) if problems.is_empty() => Ok(validate::resolve(file)),
            _ => {
                for problem in &mut problems {
                    if problem.line.is_none() {
                        problem.line = source.line_of(&problem.path);
                    }
                }
                problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
                Err(invalid(problems))
            }
        }
    }

    /// The settings the core runs on.
    pub fn broker_settings(&self) -> BrokerSettings {
        // Ranges were validated; the fallbacks are never taken.
        let limits = &self.limits;
        let session = &self.session;
        BrokerSettings {
            node_name: self.node.name.clone(),
            limits: Limits {
                max_packet_size: u32::try_from(limits.max_packet_size).unwrap_or(u32::MAX),
                max_client_id_len: usize::try_from(limits.max_client_id_len).unwrap_or(usize::MAX),
                connect_timeout: limits.connect_timeout,
                max_keep_alive: limits.max_keep_alive.map_or(0, |cap| u16::try_from(cap.as_secs()).unwrap_or(u16::MAX)),
                rate_limit: limits.rate_limit.as_ref().map(rate_limit),
                max_topic_alias: limits.max_topic_alias,
                max_subscriptions: limits.max_subscriptions,
                max_shared_subscriptions: limits.max_shared_subscriptions,
                max_topic_levels: limits.max_topic_levels,
                max_topic_filter_len: limits.max_topic_filter_len,
                max_subscription_bytes: usize::try_from(limits.max_subscription_bytes).unwrap_or(usize::MAX),
                max_connect_size: u32::try_from(limits.max_connect_size).unwrap_or(u32::MAX),
                max_handshakes_per_ip: limits.max_handshakes_per_ip,
                handshake_memory: usize::try_from(limits.handshake_memory).unwrap_or(usize::MAX),
                max_username_len: limits.max_username_len,
                idle_timeout: limits.idle_timeout,
                max_user_properties: limits.max_user_properties,
                max_user_property_bytes: u32::try_from(limits.max_user_property_bytes).unwrap_or(u32::MAX),
            },
            session: SessionSettings {
                max_inflight: u16::try_from(session.max_inflight).unwrap_or(u16::MAX),
                max_awaiting_rel: u16::try_from(session.max_awaiting_rel).unwrap_or(u16::MAX),
                await_rel_timeout: session.await_rel_timeout,
                max_queue_len: session.max_queue_len,
                max_queue_bytes: usize::try_from(session.max_queue_bytes).unwrap_or(usize::MAX),
                queue_qos0: session.queue_qos0,
                v3_session_expiry: session.v3_session_expiry,
                max_session_expiry: session.max_session_expiry,
                owner_mismatch: session.owner_mismatch.into(),
                max_sessions: session.max_sessions,
                max_sessions_per_identity: session.max_sessions_per_identity,
                queue_high_water: session.queue_high_water,
                stall_timeout: session.stall_timeout,
                on_stuck: session.on_stuck.into(),
            },
            retained: RetainSettings {
                enabled: self.retained.enabled,
                max_count: self.retained.max_count,
                max_payload_size: usize::try_from(self.retained.max_payload_size).unwrap_or(usize::MAX),
                max_bytes: usize::try_from(self.retained.max_bytes).unwrap_or(usize::MAX),
            },
            sys: SysSettings { interval: self.sys.interval },
            shared_strategy: self.shared_subscription.strategy.into(),
        }
    }
}

/// Why a config could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file was read but is not a valid config: every problem found,
    /// in file order.
    #[error("{}", render(.origin, .problems))]
    Invalid { origin: String, problems: Vec<Problem> },
}

/// One line per problem: `FILE:LINE: …`, or `FILE: …` without a line.
fn render(origin: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| match problem.line {
            Some(line) => format!("{origin}:{line}: {problem}"),
            None => format!("{origin}: {problem}"),
        })
        .collect();
    lines.join("\n")
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `limits.max_packet_size` or `listeners[1].bind`;
    /// empty for the file as a whole.
    pub path: String,
    /// Line (1-based) of the key, when it is in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong at a [`Problem`]'s path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The text is not TOML.
    Syntax(String),
    /// The key is not part of the format (with the closest known key).
    UnknownKey { suggestion: Option<String> },
    /// The value has the wrong type or is out of range.
    Invalid(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::Syntax(message) => write!(f, "syntax error: {message}"),
            ProblemKind::UnknownKey { suggestion } => {
                write!(f, "unknown key `{}`", self.path)?;
                match suggestion {
                    Some(known) => write!(f, " (did you mean `{known}`?)"),
                    None => Ok(()),
                }
            }
            ProblemKind::Invalid(message) if self.path.is_empty() => f.write_str(message),
            ProblemKind::Invalid(message) => write!(f, "{}: {message}", self.path),
        }
    }
}
