//! `[admin]`: the management plane's HTTP API (crate `portcullis-admin`).
//!
//! The API listens on loopback by default and answers nothing but
//! `/api/v5/status` (and its OpenAPI document) until an API key exists:
//! keys come from `bootstrap_file` or are created through the API by an
//! administrator, and are kept hashed in `data_dir`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units;

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin HTTP API.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Socket address of the API, `IP:PORT`. Keep it on loopback or a
    /// management network: it is plain HTTP.
    #[serde(default = "default_bind", deserialize_with = "super::model::socket_addr")]
    pub bind: SocketAddr,
    /// Unix socket the same API is also served on, for `portcullis ctl`:
    /// created mode 0600 (its directory 0700 when the broker creates it),
    /// so only the broker's user (and root) can connect, and a request
    /// through it acts as an administrator without a key. `ctl` reads the
    /// same key from the same config, so both agree on the path. Empty:
    /// off. When the default path cannot be set up (the broker runs
    /// without the right to create `/run/portcullis`), the broker warns
    /// and serves HTTP only; a path set here that cannot be set up stops
    /// the start.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Directory of the API key store (`api_keys.json`, mode 0600; the
    /// directory is created 0700 when the first key is created).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Keys read at start, one `key:secret:role` per line (EMQX's format;
    /// role `administrator`, `viewer` or `publisher`, default
    /// `administrator`; `#` starts a comment). Secrets of at least 16
    /// characters. Unset: none.
    #[serde(default)]
    pub bootstrap_file: Option<PathBuf>,
    /// HTTP connections open at once; more wait in the kernel's queue. A
    /// connection serves one request at a time (HTTP/1.1), so this also
    /// bounds the requests in progress.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body.
    #[serde(default = "default_max_body_size", deserialize_with = "units::size")]
    pub max_body_size: u64,
    /// A request still unanswered after this is answered 408.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// Failed logins (a wrong or unknown key) from one address, within
    /// `login_lockout`, that lock the address out for `login_lockout`.
    #[serde(default = "default_login_failures")]
    pub login_failures: u32,
    /// How long failed logins are counted, and how long a lockout lasts.
    #[serde(default = "default_login_lockout", deserialize_with = "units::duration")]
    pub login_lockout: Duration,
    /// Serve the Prometheus text format (`/api/v5/prometheus/stats`,
    /// `/metrics`) without an API key. Off: a scraper needs a viewer's (or
    /// an administrator's) key, as HTTP Basic credentials.
    #[serde(default = "default_prometheus_public")]
    pub prometheus_public: bool,
    /// emqttd's `POST /mqtt/publish`: the listener whose auth and ACL
    /// chains check its HTTP Basic credentials and its topic. Unset (the
    /// default): the form answers 404.
    #[serde(default)]
    pub mqtt_publish_listener: Option<String>,
    /// Serve the web dashboard at `/dashboard/` (its login takes an API
    /// key of role `administrator` or `viewer`).
    #[serde(default = "default_dashboard")]
    pub dashboard: bool,
    /// The path under which browsers reach this server's root: `/` when
    /// they reach it directly, `/portcullis/` when a reverse proxy serves
    /// it under that prefix (stripping it before forwarding). The
    /// dashboard's session cookie is scoped to it; every URL the dashboard
    /// itself uses is relative. Starts and ends with `/` (a missing
    /// trailing `/` is added).
    #[serde(default = "default_dashboard_base_path")]
    pub dashboard_base_path: String,
    /// A dashboard session unused for this long ends (log in again).
    #[serde(default = "default_dashboard_session_timeout", deserialize_with = "units::duration")]
    pub dashboard_session_timeout: Duration,
    /// A first password for the dashboard: at start, when no key of role
    /// administrator exists, an administrator key `admin` is created with
    /// it as its secret (at least 16 characters), flagged "must change":
    /// logged in with it, one can do nothing but change it. Inline, `{ env
    /// = "VAR" }` or `{ file = "path" }`; the environment variable
    /// `PORTCULLIS_DASHBOARD_PASSWORD`, when set, wins over it. Never
    /// logged. Unset (the default): no such key; the first administrator
    /// comes from `bootstrap_file`, `ctl`, or the dashboard's login page
    /// reached over loopback.
    #[serde(default)]
    pub dashboard_initial_password: Option<portcullis_backends::common::secret::Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: default_enabled(),
            bind: default_bind(),
            socket: default_socket(),
            data_dir: default_data_dir(),
            bootstrap_file: None,
            max_connections: default_max_connections(),
            max_body_size: default_max_body_size(),
            request_timeout: default_request_timeout(),
            login_failures: default_login_failures(),
            login_lockout: default_login_lockout(),
            prometheus_public: default_prometheus_public(),
            mqtt_publish_listener: None,
            dashboard: default_dashboard(),
            dashboard_base_path: default_dashboard_base_path(),
            dashboard_session_timeout: default_dashboard_session_timeout(),
            dashboard_initial_password: None,
        }
    }
}

pub fn default_dashboard() -> bool {
    true
}
pub fn default_dashboard_base_path() -> String {
    "/".to_string()
}
pub fn default_dashboard_session_timeout() -> Duration {
    Duration::from_secs(3600)
}
pub fn default_enabled() -> bool {
    true
}
pub fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 18083))
}
pub fn default_socket() -> PathBuf {
    PathBuf::from("/run/portcullis/admin.sock")
}
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/portcullis")
}
pub fn default_prometheus_public() -> bool {
    false
}
pub fn default_max_connections() -> usize {
    64
}
/// Room for a publish of `limits.max_packet_size` (1152 KiB) in base64.
pub fn default_max_body_size() -> u64 {
    4 * 1024 * 1024
}
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
pub fn default_login_failures() -> u32 {
    10
}
pub fn default_login_lockout() -> Duration {
    Duration::from_secs(300)
}
