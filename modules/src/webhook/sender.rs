//! The background task that empties the queue into HTTP POSTs.
//!
//! It takes a batch when one is full or its oldest event has waited
//! `batch_linger`, and sends up to `max_in_flight` batches at once, each
//! with its own retries ([`with_retries`]: transport errors, timeouts,
//! 408, 429 and 5xx are tried again after `retry_backoff`, doubled each
//! time up to `max_retry_backoff`, `max_attempts` tries in all; any other
//! answer is final). A batch is one JSON object when `batch_size` = 1, a
//! JSON array otherwise.
//!
//! The task ends when the module that started it is dropped (disabled or
//! rebuilt by SIGHUP): requests in flight are abandoned and their events
//! counted as dropped; what still waits in the queue is left to the next
//! sender (rebuilt) or discarded with the queue (disabled).

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::WebhookConfig;
use super::queue::{Queue, Take};

/// Largest answer read (and thrown away) so the connection can be reused.
const MAX_ANSWER: usize = 64 * 1024;

/// How often a failure is logged at most (others are counted in the line).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// When to try a batch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after try number `attempt` (1-based) failed:
    /// `backoff × 2^(attempt-1)`, at most `max_backoff`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What one try came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Sent,
    /// Worth another try (transport error, timeout, 408, 429, 5xx).
    Retry(String),
    /// A final answer that is not a success.
    Refused(String),
}

/// Runs `attempt` (given the try number, from 1) until it succeeds, is
/// refused, or `max_attempts` tries failed, sleeping [`RetryPolicy::delay`]
/// between tries. `Ok(tries)` or `Err((tries, last problem))`.
pub async fn with_retries<F, Fut>(policy: RetryPolicy, mut attempt: F) -> Result<u32, (u32, String)>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Attempt::Sent => return Ok(n),
            Attempt::Refused(why) => return Err((n, why)),
            Attempt::Retry(why) if n >= policy.max_attempts => return Err((n, why)),
            Attempt::Retry(_) => tokio::time::sleep(policy.delay(n)).await,
        }
    }
}

/// Everything the task needs, built from the config.
#[derive(Debug)]
pub struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    batch_size: usize,
    linger: Duration,
    max_in_flight: usize,
    retry: RetryPolicy,
}

impl Sender {
    /// Builds the HTTP client: reads the header secrets and the TLS files.
    /// Errors are `(key, message)`.
    pub fn build(cfg: &WebhookConfig) -> Result<Sender, (String, String)> {
        let url_text = cfg.url.as_deref().ok_or(("url".to_string(), "required when enabled = true".to_string()))?;
        let url = reqwest::Url::parse(url_text).map_err(|e| ("url".to_string(), e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, secret) in &cfg.headers {
            let key = format!("headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| (key.clone(), "not a header name".into()))?;
            let value = secret.resolve(&key).map_err(|e| (e.key, e.reason))?;
            let mut v = HeaderValue::from_str(&value)
                .map_err(|_| (key.clone(), "not a valid header value (control characters?)".to_string()))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .pool_max_idle_per_host(cfg.max_in_flight)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        if cfg.tls.enable {
            cfg.tls.validate().map_err(|e| ("tls".to_string(), e.to_string()))?;
            let tls = cfg.tls.rustls_client_config().map_err(|e| ("tls".to_string(), e.to_string()))?;
            b = b.use_preconfigured_tls(tls).https_only(true);
        }
        let client = b.build().map_err(|e| ("url".to_string(), format!("http client: {e}")))?;
        Ok(Sender {
            client,
            url,
            headers,
            batch_size: cfg.batch_size,
            linger: cfg.batch_linger,
            max_in_flight: cfg.max_in_flight,
            retry: RetryPolicy {
                max_attempts: cfg.max_attempts,
                backoff: cfg.retry_backoff,
                max_backoff: cfg.max_retry_backoff,
            },
        })
    }

    /// The host the events go to, and whether over TLS.
    pub fn endpoint(&self) -> (String, bool) {
        (self.url.host_str().unwrap_or("").to_string(), self.url.scheme() == "https")
    }

    /// The body of a batch: the event itself when batches are single, a
    /// JSON array otherwise.
    pub fn body(&self, mut batch: Vec<Box<str>>) -> Bytes {
        if self.batch_size == 1 && batch.len() == 1 {
            if let Some(one) = batch.pop() {
                return Bytes::from(String::from(one));
            }
        }
        let len = batch.iter().map(|e| e.len() + 1).sum::<usize>() + 1;
        let mut out = Vec::with_capacity(len);
        out.push(b'[');
        for (i, e) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e.as_bytes());
        }
        out.push(b']');
        Bytes::from(out)
    }

    /// One try: POST `body`.
    async fn post(&self, body: Bytes) -> Attempt {
        let req = self.client.post(self.url.clone()).headers(self.headers.clone()).body(body);
        match req.send().await {
            Ok(mut resp) => {
                let status = resp.status();
                // Read (a bounded part of) the answer so the connection
                // can be reused; what it says does not matter.
                let mut read = 0;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    read += chunk.len();
                    if read > MAX_ANSWER {
                        break;
                    }
                }
                let code = status.as_u16();
                if status.is_success() {
                    Attempt::Sent
                } else if code == 408 || code == 429 || status.is_server_error() {
                    Attempt::Retry(format!("answered {code}"))
                } else {
                    Attempt::Refused(format!("answered {code}"))
                }
            }
            Err(e) => Attempt::Retry(describe(&e)),
        }
    }
}

/// The error and its causes, without the URL (its query may hold a
/// token).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    if let Some(u) = e.url() {
        out = out.replace(u.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let (Some(s), true) = (source, depth < 4) {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
        depth += 1;
    }
    out
}

/// How a batch ended.
struct Done {
    events: usize,
    bytes: u64,
    result: Result<u32, (u32, String)>,
}

/// Paces the failure warnings.
struct FailureLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn failed(&mut self, events: usize, tries: u32, why: &str) {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < WARN_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            events,
            tries,
            error = %why,
            suppressed = self.suppressed,
            "webhook: events not delivered"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// The task: runs until `stop` fires or its sender is dropped.
pub async fn run(sender: Arc<Sender>, queue: Arc<Queue>, mut stop: oneshot::Receiver<()>) {
    let mut in_flight: JoinSet<Done> = JoinSet::new();
    // This task's share of the queue's in-flight counts (another sender
    // may share the queue for a moment during a rebuild).
    let (mut mine_events, mut mine_bytes) = (0usize, 0u64);
    let mut log = FailureLog { last: None, suppressed: 0 };
    loop {
        let mut wait_until = None;
        if in_flight.len() < sender.max_in_flight {
            match queue.take(sender.batch_size, sender.linger, Instant::now()) {
                Take::Batch(batch, bytes) => {
                    let events = batch.len();
                    let body = sender.body(batch);
                    mine_events += events;
                    mine_bytes += bytes;
                    let s = Arc::clone(&sender);
                    in_flight.spawn(async move {
                        let result = with_retries(s.retry, |_| s.post(body.clone())).await;
                        Done { events, bytes, result }
                    });
                    continue;
                }
                Take::Until(t) => wait_until = Some(t),
                Take::Empty => {}
            }
        }
        let room = in_flight.len() < sender.max_in_flight;
        let linger = tokio::time::sleep_until(wait_until.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = &mut stop => break,
            _ = queue.notify.notified(), if room => {}
            _ = linger, if room && wait_until.is_some() => {}
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok(done) = joined {
                    finish(&queue, done, &mut mine_events, &mut mine_bytes, &mut log);
                }
            }
        }
    }
    in_flight.abort_all();
    while let Some(joined) = in_flight.join_next().await {
        // One may have finished before the abort reached it.
        if let Ok(done) = joined {
            finish(&queue, done, &mut mine_events, &mut mine_bytes, &mut log);
        }
    }
    if mine_events > 0 {
        queue.done(mine_events, mine_bytes);
        queue.stats.dropped.fetch_add(mine_events as u64, Relaxed);
        tracing::info!(events = mine_events, "webhook sender stopped: requests in flight abandoned");
    } else {
        tracing::debug!("webhook sender stopped");
    }
}

/// Accounts a finished batch.
fn finish(queue: &Queue, done: Done, mine_events: &mut usize, mine_bytes: &mut u64, log: &mut FailureLog) {
    *mine_events = mine_events.saturating_sub(done.events);
    *mine_bytes = mine_bytes.saturating_sub(done.bytes);
    queue.done(done.events, done.bytes);
    let n = done.events as u64;
    match done.result {
        Ok(_) => {
            queue.stats.sent.fetch_add(n, Relaxed);
        }
        Err((tries, why)) => {
            queue.stats.failed.fetch_add(n, Relaxed);
            log.failed(done.events, tries, &why);
        }
    }
}
