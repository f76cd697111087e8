//! `[cluster]` as written, and its validation. Off by default: a single
//! node needs no NATS. Credentials and TLS are written as the backends'
//! are (`password = { env = "…" }`, `tls = { enable, ca_file, … }`), and
//! errors name the key relative to `[cluster]` (the server prefixes
//! `cluster.`).
//!
//! ```toml
//! [cluster]
//! enabled = true
//! nats = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! subject_prefix = "portcullis"
//! username = "portcullis"
//! password = { env = "NATS_PASSWORD" }
//! ```

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use portcullis_backends::common::secret::Secret;
use portcullis_backends::common::tls::TlsConfig;
use portcullis_backends::common::BuildError;
use portcullis_core::units;
use serde::Deserialize;

use crate::limits::Limits;
use crate::subject::{Prefix, DEFAULT_PREFIX};

/// nats-server's default client URL on this host.
pub fn default_nats() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".to_string()]
}

/// [`DEFAULT_PREFIX`]: `portcullis`.
pub fn default_subject_prefix() -> String {
    DEFAULT_PREFIX.to_string()
}

/// async-nats' own default: 5 s to open a connection (TCP, TLS, CONNECT).
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// How long a request to another node (a session takeover) may take.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

/// nats-server's default `max_payload`, 1 MiB.
pub fn default_max_payload() -> u64 {
    crate::limits::DEFAULT_MAX_PAYLOAD as u64
}

/// nats-server's default `max_control_line`, 4096 bytes.
pub fn default_max_control_line() -> u64 {
    crate::limits::DEFAULT_MAX_CONTROL_LINE as u64
}

/// Three copies of every JetStream KV bucket (the session registry,
/// retained messages, the node list): one NATS server may fail.
pub fn default_kv_replicas() -> usize {
    3
}

/// How often a node refreshes its entry in the node list.
pub fn default_heartbeat_interval() -> Duration {
    crate::members::DEFAULT_HEARTBEAT_INTERVAL
}

/// A node is counted down after this long without a heartbeat (three
/// missed beats at the default interval).
pub fn default_node_timeout() -> Duration {
    crate::members::DEFAULT_NODE_TIMEOUT
}

/// How long the durable stream keeps a message no node has taken yet.
pub fn default_durable_max_age() -> Duration {
    Duration::from_secs(3600)
}

/// Bytes the durable stream holds at most (per replica).
pub fn default_durable_max_bytes() -> u64 {
    1024 * 1024 * 1024
}

/// How a QoS 1 or 2 message crosses between nodes (`[cluster] cross_node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossNode {
    /// Core NATS, at most once between nodes (emqttd's behaviour): the
    /// publisher's PUBACK covers its own node's subscribers only.
    #[default]
    AtMostOnce,
    /// Through a JetStream stream (`<prefix>_messages`, `kv_replicas`
    /// copies): the publisher's PUBACK/PUBREC waits until the stream has
    /// the message, and every node reads the stream through its own durable
    /// consumer, acknowledging what it took only once its persistent
    /// sessions have it on disk. A node that was down, cut off or slow
    /// gets what it missed when it is back (within `durable_max_age` and
    /// `durable_max_bytes`). QoS 0 stays at most once.
    Durable,
}

impl CrossNode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CrossNode::AtMostOnce => "at_most_once",
            CrossNode::Durable => "durable",
        }
    }
}

/// nats-server refuses a `max_payload` above 64 MiB.
const MAX_PAYLOAD_CEILING: u64 = 64 * 1024 * 1024;

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Join a cluster of nodes through NATS; off, the broker is a single
    /// node and opens no NATS connection.
    #[serde(default)]
    pub enabled: bool,
    /// NATS servers to connect to (`nats://host:port`, `tls://host:port` or
    /// `host:port`); the client also learns the rest of a NATS cluster from
    /// the servers. Credentials do not belong in these URLs: use the keys
    /// below, which can come from the environment or a file.
    #[serde(default = "default_nats")]
    pub nats: Vec<String>,
    /// First token(s) of every subject the cluster uses, so several
    /// clusters can share one NATS: `A-Z a-z 0-9 _ -`, tokens joined by
    /// `.`, at most 64 bytes. Every node of a cluster must use the same.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// NATS user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username` (inline, `{ env = "..." }` or `{ file = "..." }`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// NATS authentication token (inline, `{ env = … }` or `{ file = … }`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// NKEY user seed (`SU…`, inline, `{ env = … }` or `{ file = … }`); the
    /// server must know its public key.
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (user JWT and NKEY seed, as `nsc` writes it) for
    /// decentralised (operator/JWT) authentication.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// TLS to NATS: the CA that signs the servers' certificates (required
    /// when enabled), an optional client certificate, and the name expected
    /// in the servers' certificates when it is not the host connected to.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Time allowed to open a connection to a NATS server.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for a request to another node to be answered.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// The NATS servers' `max_payload`: a message's headers and payload
    /// together must fit, and the broker's MQTT maximum packet size may not
    /// be larger. Set it to what the servers are configured with.
    #[serde(default = "default_max_payload", deserialize_with = "units::size")]
    pub max_payload: u64,
    /// The NATS servers' `max_control_line`: a topic whose subject does not
    /// fit a PUB line is refused with a reason.
    #[serde(default = "default_max_control_line", deserialize_with = "units::size")]
    pub max_control_line: u64,
    /// Copies JetStream keeps of each KV bucket the cluster creates
    /// (`<prefix>_nodes`, `<prefix>_sessions`, `<prefix>_retained`) and of
    /// the durable mode's stream (`<prefix>_messages`): 1 to 5, at most the
    /// number of NATS servers (1 for a single NATS server). Set when a
    /// bucket is created; an existing bucket keeps its own.
    #[serde(default = "default_kv_replicas")]
    pub kv_replicas: usize,
    /// How often this node refreshes its entry in the node list
    /// (`<prefix>_nodes`): name, slot, uptime, connections, listeners.
    #[serde(default = "default_heartbeat_interval", deserialize_with = "units::duration")]
    pub heartbeat_interval: Duration,
    /// After this long without a heartbeat a node is shown `stopped`
    /// (`/api/v5/nodes`, `ctl cluster status`, `$SYS/brokers`); a node
    /// starting with the name of one that has not timed out waits up to
    /// this long to tell a crashed predecessor from a live duplicate.
    /// More than `heartbeat_interval`.
    #[serde(default = "default_node_timeout", deserialize_with = "units::duration")]
    pub node_timeout: Duration,
    /// `"at_most_once"` (default) or `"durable"`: how QoS 1 and 2 messages
    /// cross between nodes ([`CrossNode`]). Every node of a cluster must
    /// use the same: a node refuses to join beside a running node in the
    /// other mode ([`crate::members`]).
    #[serde(default)]
    pub cross_node: CrossNode,
    /// Durable mode: how long the stream keeps a message that some node
    /// has not taken (a node down for longer misses what was published
    /// meanwhile; counted when it is back).
    #[serde(default = "default_durable_max_age", deserialize_with = "units::duration")]
    pub durable_max_age: Duration,
    /// Durable mode: the stream's size limit; past it the oldest messages
    /// go first (counted by the node that missed them). This and
    /// `durable_max_age` are set when the stream is created; an existing
    /// stream keeps its own.
    #[serde(default = "default_durable_max_bytes", deserialize_with = "units::size")]
    pub durable_max_bytes: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            enabled: false,
            nats: default_nats(),
            subject_prefix: default_subject_prefix(),
            username: None,
            password: None,
            token: None,
            nkey_seed: None,
            credentials_file: None,
            tls: TlsConfig::default(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            max_payload: default_max_payload(),
            max_control_line: default_max_control_line(),
            kv_replicas: default_kv_replicas(),
            heartbeat_interval: default_heartbeat_interval(),
            node_timeout: default_node_timeout(),
            cross_node: CrossNode::default(),
            durable_max_age: default_durable_max_age(),
            durable_max_bytes: default_durable_max_bytes(),
        }
    }
}

/// How the node authenticates to NATS, as configured (secrets unresolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    UserPassword,
    Token,
    NkeySeed,
    CredentialsFile,
}

impl ClusterConfig {
    /// Checks every key (files named must exist); the error names the key
    /// relative to `[cluster]`. Secrets are not resolved here: that happens
    /// when the connection is planned ([`crate::connect::ConnectPlan`]).
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.nats.is_empty() {
            return Err(BuildError::missing("nats", "at least one NATS server URL is needed"));
        }
        let mut any_tls_url = false;
        for url in &self.nats {
            any_tls_url |= check_url(url)?;
        }
        self.prefix()?;
        self.auth_method()?;
        if self.username.as_ref().is_some_and(|u| u.is_empty()) {
            return Err(BuildError::invalid("username", "must not be empty"));
        }
        self.tls.validate()?;
        if !self.tls.enable && (self.tls.ca_file.is_some() || self.tls.cert_file.is_some()) {
            return Err(BuildError::invalid("tls.enable", "set it to true to use tls.ca_file / tls.cert_file"));
        }
        if !self.tls.enable && self.tls.server_name.is_some() {
            return Err(BuildError::invalid("tls.enable", "set it to true to use tls.server_name"));
        }
        if any_tls_url && !self.tls.enable {
            return Err(BuildError::invalid(
                "tls.enable",
                "a tls:// URL in nats needs tls.enable = true and tls.ca_file (no implicit trust store)",
            ));
        }
        if let Some(name) = &self.tls.server_name {
            rustls::pki_types::ServerName::try_from(name.as_str())
                .map_err(|_| BuildError::invalid("tls.server_name", format!("{name:?} is not a DNS name or IP")))?;
        }
        if let Some(p) = &self.credentials_file {
            std::fs::metadata(p)
                .map_err(|e| BuildError::file("credentials_file", format!("cannot read {}: {e}", p.display())))?;
        }
        for (key, d) in [("connect_timeout", self.connect_timeout), ("request_timeout", self.request_timeout)] {
            if d.is_zero() {
                return Err(BuildError::invalid(key, "must be more than 0s"));
            }
        }
        if !(1024..=MAX_PAYLOAD_CEILING).contains(&self.max_payload) {
            return Err(BuildError::invalid(
                "max_payload",
                format!("must be between 1KiB and 64MiB (NATS' ceiling), got {}", self.max_payload),
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.max_control_line) {
            return Err(BuildError::invalid(
                "max_control_line",
                format!("must be between 1KiB and 1MiB, got {}", self.max_control_line),
            ));
        }
        if !(1..=5).contains(&self.kv_replicas) {
            return Err(BuildError::invalid(
                "kv_replicas",
                format!(
                    "must be 1 to 5 (JetStream's limit) and at most the number of NATS servers, got {}",
                    self.kv_replicas
                ),
            ));
        }
        if self.durable_max_age < Duration::from_secs(1) {
            return Err(BuildError::invalid("durable_max_age", "must be at least 1s"));
        }
        if self.durable_max_bytes < 1024 * 1024 || i64::try_from(self.durable_max_bytes).is_err() {
            return Err(BuildError::invalid(
                "durable_max_bytes",
                format!("must be at least 1MiB, got {}", self.durable_max_bytes),
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return Err(BuildError::invalid("heartbeat_interval", "must be at least 100ms"));
        }
        if self.node_timeout <= self.heartbeat_interval {
            return Err(BuildError::invalid(
                "node_timeout",
                format!("must be more than heartbeat_interval ({:?})", self.heartbeat_interval),
            ));
        }
        Ok(())
    }

    /// The validated subject prefix.
    pub fn prefix(&self) -> Result<Prefix, BuildError> {
        Prefix::new(&self.subject_prefix).map_err(|e| BuildError::invalid("subject_prefix", e.to_string()))
    }

    /// The NATS limits this node enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_control_line: usize::try_from(self.max_control_line).unwrap_or(usize::MAX),
            max_payload: usize::try_from(self.max_payload).unwrap_or(usize::MAX),
        }
    }

    /// The one authentication method configured; two at once is an error
    /// naming the second key.
    pub fn auth_method(&self) -> Result<AuthMethod, BuildError> {
        match (&self.username, &self.password) {
            (Some(_), None) => return Err(BuildError::missing("password", "required with username")),
            (None, Some(_)) => return Err(BuildError::missing("username", "required with password")),
            _ => {}
        }
        let set = [
            ("username", self.username.is_some(), AuthMethod::UserPassword),
            ("token", self.token.is_some(), AuthMethod::Token),
            ("nkey_seed", self.nkey_seed.is_some(), AuthMethod::NkeySeed),
            ("credentials_file", self.credentials_file.is_some(), AuthMethod::CredentialsFile),
        ];
        let mut chosen: Option<(&str, AuthMethod)> = None;
        for (key, present, method) in set {
            if !present {
                continue;
            }
            if let Some((first, _)) = chosen {
                return Err(BuildError::invalid(
                    key,
                    format!("{first} is set too: choose one of username/password, token, nkey_seed, credentials_file"),
                ));
            }
            chosen = Some((key, method));
        }
        Ok(chosen.map_or(AuthMethod::None, |(_, m)| m))
    }
}

/// Checks one `nats` entry; `Ok(true)` for a `tls://` URL.
fn check_url(url: &str) -> Result<bool, BuildError> {
    let bad = |why: &str| BuildError::invalid("nats", format!("{url:?}: {why}"));
    let tls = match url.split_once("://") {
        None => false,
        Some(("nats", _)) => false,
        Some(("tls", _)) => true,
        Some((scheme, _)) => return Err(bad(&format!("scheme {scheme}:// is not supported (nats:// or tls://)"))),
    };
    let addr = async_nats::ServerAddr::from_str(url).map_err(|e| bad(&e.to_string()))?;
    if addr.has_user_pass() || addr.username().is_some() {
        return Err(bad("credentials in the URL would be logged; use username/password, token or nkey_seed"));
    }
    if addr.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests;
