//! `[modules.webhook]`: where events go (`url`, `headers`, `tls`), which
//! ones (`events`, `topics`), how a message's payload is written
//! (`payload_encoding`, `max_payload`), how much may wait (`max_queue_len`,
//! `max_queue_bytes`) and how it is sent (`batch_size`, `batch_linger`,
//! `max_in_flight`, `max_attempts`, `retry_backoff`, `max_retry_backoff`,
//! `connect_timeout`, `request_timeout`).
//!
//! [`WebhookConfig::validate`] is pure; header secrets and TLS files are
//! read when the module is built.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_backends::common::secret::Secret;
use portcullis_backends::common::tls::TlsConfig;
use portcullis_core::topic::TopicFilter;
use portcullis_core::units;
use serde::Deserialize;

use super::event::EventKind;

/// `payload_encoding`: how a message payload is written in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// As text; bytes that are not UTF-8 become U+FFFD.
    #[default]
    Plain,
    /// Standard base64 (RFC 4648, padded), for binary payloads.
    Base64,
}

/// `[modules.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Send events.
    #[serde(default)]
    pub enabled: bool,
    /// `http://` or `https://` URL every request is POSTed to; required
    /// when enabled.
    #[serde(default)]
    pub url: Option<String>,
    /// Which events are sent, by EMQX name (`client.connected`,
    /// `message.publish`, …; see [`EventKind`]).
    #[serde(default = "default_events")]
    pub events: Vec<String>,
    /// Topic filters for the `message.*` events: only messages whose topic
    /// matches one are sent. Empty: every message.
    #[serde(default)]
    pub topics: Vec<String>,
    /// `plain` or `base64`.
    #[serde(default)]
    pub payload_encoding: PayloadEncoding,
    /// Payload bytes written in one event at most; a longer payload is cut
    /// to this (before encoding) and the event says so
    /// (`payload_truncated`, `payload_size`). 0: never any payload.
    #[serde(default = "default_max_payload", deserialize_with = "units::size")]
    pub max_payload: u64,
    /// Extra request headers; each value inline, `{ env = "NAME" }` or
    /// `{ file = "/path" }` (read at start and when the module is rebuilt).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Events per request: 1 sends each event as a JSON object (as EMQX
    /// 4 does); more sends a JSON array of up to this many.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch waits to fill once its first event is queued.
    #[serde(default = "default_batch_linger", deserialize_with = "units::duration")]
    pub batch_linger: Duration,
    /// Requests in flight at once (a batch waiting to be retried counts).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Events waiting or being sent, at most; beyond, new events are
    /// dropped (and counted).
    #[serde(default = "default_max_queue_len")]
    pub max_queue_len: usize,
    /// JSON bytes of the events waiting or being sent, at most; beyond,
    /// new events are dropped (and counted).
    #[serde(default = "default_max_queue_bytes", deserialize_with = "units::size")]
    pub max_queue_bytes: u64,
    /// Tries per batch (the first included) before its events count as
    /// failed. Transport errors, timeouts, 408, 429 and 5xx are retried;
    /// any other answer is final.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second try; doubled for each next one.
    #[serde(default = "default_retry_backoff", deserialize_with = "units::duration")]
    pub retry_backoff: Duration,
    /// Longest wait between two tries.
    #[serde(default = "default_max_retry_backoff", deserialize_with = "units::duration")]
    pub max_retry_backoff: Duration,
    /// TCP (and TLS) connect timeout.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, answer).
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// HTTPS: the CA file that signed the endpoint's certificate and an
    /// optional client certificate (as the backends' `tls`).
    #[serde(default)]
    pub tls: TlsConfig,
}

pub fn default_events() -> Vec<String> {
    vec!["client.connected".to_string(), "client.disconnected".to_string()]
}
pub fn default_max_payload() -> u64 {
    64 * 1024
}
pub fn default_batch_size() -> usize {
    1
}
pub fn default_batch_linger() -> Duration {
    Duration::from_millis(50)
}
pub fn default_max_in_flight() -> usize {
    4
}
pub fn default_max_queue_len() -> usize {
    10_000
}
pub fn default_max_queue_bytes() -> u64 {
    16 * 1024 * 1024
}
pub fn default_max_attempts() -> u32 {
    5
}
pub fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
}
pub fn default_max_retry_backoff() -> Duration {
    Duration::from_secs(30)
}
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enabled: false,
            url: None,
            events: default_events(),
            topics: Vec::new(),
            payload_encoding: PayloadEncoding::default(),
            max_payload: default_max_payload(),
            headers: BTreeMap::new(),
            batch_size: default_batch_size(),
            batch_linger: default_batch_linger(),
            max_in_flight: default_max_in_flight(),
            max_queue_len: default_max_queue_len(),
            max_queue_bytes: default_max_queue_bytes(),
            max_attempts: default_max_attempts(),
            retry_backoff: default_retry_backoff(),
            max_retry_backoff: default_max_retry_backoff(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            tls: TlsConfig::default(),
        }
    }
}

/// Upper bounds that keep a typo from becoming a memory or time sink.
const MAX_BATCH_SIZE: usize = 10_000;
const MAX_IN_FLIGHT: usize = 256;
const MAX_ATTEMPTS: u32 = 100;

impl WebhookConfig {
    /// `(key under webhook., problem)` for each problem. Checked whether
    /// or not the module is enabled, so a file that SIGHUP would switch
    /// on is known to be good.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut fail = |k: &str, m: String| out.push((k.to_string(), m));
        match &self.url {
            None if self.enabled => fail("url", "required when enabled = true".into()),
            None => {}
            Some(u) => {
                if let Err(e) = check_url(u, self.tls.enable) {
                    fail("url", e);
                }
            }
        }
        if self.events.is_empty() {
            fail("events", format!("at least one of {}", EventKind::names()));
        }
        for e in &self.events {
            if let Err(m) = EventKind::parse(e) {
                fail("events", m);
            }
        }
        for t in &self.topics {
            if let Err(e) = TopicFilter::new(t) {
                fail("topics", format!("{t:?} is not a topic filter: {e}"));
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                fail("headers", format!("{name:?} is not a header name"));
            } else if let Secret::Inline(v) = value {
                if reqwest::header::HeaderValue::from_str(v).is_err() {
                    fail(&format!("headers.{name}"), "not a valid header value (control characters?)".into());
                }
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            fail("batch_size", format!("from 1 to {MAX_BATCH_SIZE}, got {}", self.batch_size));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            fail("max_in_flight", format!("from 1 to {MAX_IN_FLIGHT}, got {}", self.max_in_flight));
        }
        if self.max_queue_len == 0 {
            fail("max_queue_len", "must be at least 1".into());
        }
        if self.max_queue_bytes < 1024 {
            fail("max_queue_bytes", format!("at least 1KiB, got {}", self.max_queue_bytes));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            fail("max_attempts", format!("from 1 to {MAX_ATTEMPTS}, got {}", self.max_attempts));
        }
        if self.retry_backoff.is_zero() {
            fail("retry_backoff", "must be more than 0".into());
        }
        if self.max_retry_backoff < self.retry_backoff {
            fail("max_retry_backoff", "must be at least retry_backoff".into());
        }
        if self.connect_timeout.is_zero() {
            fail("connect_timeout", "must be more than 0".into());
        }
        if self.request_timeout.is_zero() {
            fail("request_timeout", "must be more than 0".into());
        }
        if self.tls.server_name.is_some() {
            fail("tls.server_name", "not supported; use the name in the endpoint's certificate in url".into());
        }
        if self.tls.enable && self.tls.ca_file.is_none() {
            fail(
                "tls.ca_file",
                "required when tls.enable = true (the CA that signed the endpoint's certificate)".into(),
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            fail("tls", "cert_file and key_file go together".into());
        }
        out
    }

    /// The events as parsed (after [`validate`](Self::validate)).
    pub(super) fn event_kinds(&self) -> Vec<EventKind> {
        self.events.iter().filter_map(|e| EventKind::parse(e).ok()).collect()
    }

    /// The topic filters as parsed (after [`validate`](Self::validate)).
    pub(super) fn topic_filters(&self) -> Vec<TopicFilter> {
        self.topics.iter().filter_map(|t| TopicFilter::new(t).ok()).collect()
    }
}

/// An absolute http(s) URL with a host, no credentials, no fragment;
/// `https` exactly when `tls.enable`.
fn check_url(url: &str, tls: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL would be logged; use headers (Authorization) instead".into());
    }
    if parsed.fragment().is_some() {
        return Err("a fragment (#) is not sent; remove it".into());
    }
    match (parsed.scheme(), tls) {
        ("http", false) | ("https", true) => Ok(()),
        ("https", false) => {
            Err("an https URL needs tls.enable = true and tls.ca_file (no implicit trust store)".into())
        }
        ("http", true) => Err("tls.enable = true needs an https URL".into()),
        (other, _) => Err(format!("scheme {other:?}: expected http or https")),
    }
}
