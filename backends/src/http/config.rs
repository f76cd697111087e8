//! `[auth.http.<name>]` and `[acl.http.<name>]` as written.
//!
//! Each table describes one request (`url`, `method`, `body_format`,
//! `headers`, `body`), how its answer is read (`response`, `ignore_status`,
//! `deny_status`) and the HTTP client (`connect_timeout`,
//! `request_timeout`, `retries`, `retry_backoff`, `max_concurrency`,
//! `max_idle_connections`, `idle_timeout`, `tls`). The auth table may add a
//! separate `superuser` request (emqttd's `super_req`).

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::default_timeout;
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// `method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The body's fields go in the query string.
    Get,
    #[default]
    Post,
}

/// `body_format` of a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// `application/json`: an object of strings.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// `response`: how the webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// EMQX 5: 200 with `{"result": "allow" | "deny" | "ignore",
    /// "is_superuser": bool}`, 204 allow; `4xx` ignore by default.
    #[default]
    Emqx,
    /// emqttd 1.x / EMQX 4: the status says it, `4xx` deny by default; a
    /// 200 must also say what it means, by its body: `allow_body`, or an
    /// explicit `allow` / `deny` / `ignore` (plain or `{"result": …}`).
    /// Anything else is a bad answer (`on_error`), so a wrong URL that
    /// answers 200 is never an allow.
    Emqttd,
}

/// A status code (`404`) or a class (`"4xx"`) in `ignore_status` /
/// `deny_status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StatusPattern {
    Code(u16),
    Class(String),
}

/// One request: `superuser = { ... }`, and the fields the auth and ACL
/// tables carry at top level.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// `http://` or `https://` URL; placeholders only in the query string
    /// (values are URL-encoded).
    pub url: String,
    /// `get` (fields in the query string) or `post` (fields in the body).
    #[serde(default)]
    pub method: Method,
    /// `json` or `form`, for POST.
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Extra headers; values may hold placeholders (a value with CR/LF is
    /// refused, not sent).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Field name => template.
    #[serde(default = "default_superuser_body")]
    pub body: BTreeMap<String, String>,
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The auth request's default fields.
pub fn default_auth_body() -> BTreeMap<String, String> {
    fields(&[("username", "${username}"), ("password", "${password}"), ("clientid", "${clientid}")])
}

/// The superuser request's default fields (emqttd's `super_req.params`).
pub fn default_superuser_body() -> BTreeMap<String, String> {
    fields(&[("username", "${username}"), ("clientid", "${clientid}")])
}

/// The ACL request's default fields.
pub fn default_acl_body() -> BTreeMap<String, String> {
    fields(&[
        ("username", "${username}"),
        ("clientid", "${clientid}"),
        ("peerhost", "${peerhost}"),
        ("action", "${action}"),
        ("topic", "${topic}"),
        ("qos", "${qos}"),
        ("retain", "${retain}"),
    ])
}

pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(3)
}
pub fn default_retries() -> u32 {
    1
}
pub fn default_retry_backoff() -> Duration {
    Duration::from_millis(100)
}
pub fn default_max_concurrency() -> usize {
    64
}
pub fn default_max_idle_connections() -> usize {
    16
}
pub fn default_idle_timeout() -> Option<Duration> {
    Some(Duration::from_secs(60))
}

/// `[auth.http.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `http://` or `https://` URL; placeholders only in the query string.
    pub url: String,
    /// `get` (fields in the query string) or `post`.
    #[serde(default)]
    pub method: Method,
    /// `json` or `form`, for POST.
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Extra headers; values may hold placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Field name => template (`${username}`, `${password}`, `${clientid}`,
    /// `${peerhost}`, `${protocol}`, `${cert_common_name}`, `${cert_subject}`).
    #[serde(default = "default_auth_body")]
    pub body: BTreeMap<String, String>,
    /// A second request after an allow that did not say superuser
    /// (emqttd's `super_req`); 200 (emqttd) or `{"result": "allow"}` /
    /// `{"is_superuser": true}` (EMQX) make the client a superuser.
    #[serde(default)]
    pub superuser: Option<RequestConfig>,
    /// `emqx` (JSON result) or `emqttd` (status code).
    #[serde(default)]
    pub response: ResponseMode,
    /// emqttd mode: the body (trimmed) of a 200 that means allow, for a
    /// webhook that answers allow with a fixed text (`""`: an empty body,
    /// emqttd's own convention). Without it a 200 must carry an explicit
    /// result (`allow`, `deny`, `ignore`, or `{"result": "allow"}`).
    #[serde(default)]
    pub allow_body: Option<String>,
    /// Status codes that mean "not mine" (default: `4xx` for emqx, none
    /// for emqttd).
    #[serde(default)]
    pub ignore_status: Option<Vec<StatusPattern>>,
    /// Status codes that mean "refused" (default: none for emqx, `4xx`
    /// for emqttd). Other unexpected codes are failures (`on_error`).
    #[serde(default)]
    pub deny_status: Option<Vec<StatusPattern>>,
    /// TCP (and TLS) connect timeout.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, answer).
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// Retries after a transport error (never after an answer).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    #[serde(default = "default_retry_backoff", deserialize_with = "units::duration")]
    pub retry_backoff: Duration,
    /// Requests in flight at most; beyond, a call fails at once (`on_error`)
    /// instead of queueing behind a slow webhook.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Idle keep-alive connections kept per host.
    #[serde(default = "default_max_idle_connections")]
    pub max_idle_connections: usize,
    /// Close keep-alive connections idle this long (`"off"`: never).
    #[serde(default = "default_idle_timeout", deserialize_with = "units::duration_or_off")]
    pub idle_timeout: Option<Duration>,
    /// HTTPS: the CA file that signed the webhook's certificate and an
    /// optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The chain's per-call timeout.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the webhook fails: `deny` or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

/// `[acl.http.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// `http://` or `https://` URL; placeholders only in the query string.
    pub url: String,
    /// `get` (fields in the query string) or `post`.
    #[serde(default)]
    pub method: Method,
    /// `json` or `form`, for POST.
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Extra headers; values may hold placeholders.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Field name => template (`${username}`, `${clientid}`, `${peerhost}`,
    /// `${action}` (`publish`/`subscribe`), `${topic}`, `${qos}`,
    /// `${retain}`, `${protocol}`, cert fields).
    #[serde(default = "default_acl_body")]
    pub body: BTreeMap<String, String>,
    /// `emqx` (JSON result) or `emqttd` (status code).
    #[serde(default)]
    pub response: ResponseMode,
    /// emqttd mode: the body (trimmed) of a 200 that means allow, for a
    /// webhook that answers allow with a fixed text (`""`: an empty body,
    /// emqttd's own convention). Without it a 200 must carry an explicit
    /// result (`allow`, `deny`, `ignore`, or `{"result": "allow"}`).
    #[serde(default)]
    pub allow_body: Option<String>,
    /// Status codes that mean "not mine" (default: `4xx` for emqx, none
    /// for emqttd).
    #[serde(default)]
    pub ignore_status: Option<Vec<StatusPattern>>,
    /// Status codes that mean "refused" (default: none for emqx, `4xx`
    /// for emqttd).
    #[serde(default)]
    pub deny_status: Option<Vec<StatusPattern>>,
    /// TCP (and TLS) connect timeout.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// Retries after a transport error (never after an answer).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    #[serde(default = "default_retry_backoff", deserialize_with = "units::duration")]
    pub retry_backoff: Duration,
    /// Requests in flight at most; beyond, a call fails at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Idle keep-alive connections kept per host.
    #[serde(default = "default_max_idle_connections")]
    pub max_idle_connections: usize,
    /// Close keep-alive connections idle this long (`"off"`: never).
    #[serde(default = "default_idle_timeout", deserialize_with = "units::duration_or_off")]
    pub idle_timeout: Option<Duration>,
    /// HTTPS: CA file and optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The chain's per-call timeout.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the webhook fails: `deny` or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
}

crate::call_policy!(AuthConfig, AclConfig);

/// The HTTP client settings of either table.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub max_concurrency: usize,
    pub max_idle_connections: usize,
    pub idle_timeout: Option<Duration>,
    pub tls: TlsConfig,
}

impl ClientSettings {
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.max_concurrency == 0 {
            return Err(BuildError::invalid("max_concurrency", "must be at least 1"));
        }
        if self.retries > 10 {
            return Err(BuildError::invalid("retries", "at most 10"));
        }
        for (key, t) in [("connect_timeout", self.connect_timeout), ("request_timeout", self.request_timeout)] {
            if t.is_zero() {
                return Err(BuildError::invalid(key, "must be more than 0"));
            }
        }
        self.tls.validate()?;
        if self.tls.server_name.is_some() {
            return Err(BuildError::invalid(
                "tls.server_name",
                "not supported by the http backend; use the name in the server's certificate in url",
            ));
        }
        Ok(())
    }
}

impl AuthConfig {
    pub fn request(&self) -> RequestConfig {
        RequestConfig {
            url: self.url.clone(),
            method: self.method,
            body_format: self.body_format,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            max_concurrency: self.max_concurrency,
            max_idle_connections: self.max_idle_connections,
            idle_timeout: self.idle_timeout,
            tls: self.tls.clone(),
        }
    }
}

impl AclConfig {
    pub fn request(&self) -> RequestConfig {
        RequestConfig {
            url: self.url.clone(),
            method: self.method,
            body_format: self.body_format,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            max_concurrency: self.max_concurrency,
            max_idle_connections: self.max_idle_connections,
            idle_timeout: self.idle_timeout,
            tls: self.tls.clone(),
        }
    }
}
