//! The HTTP client of one provider: reqwest (keep-alive pool, rustls with
//! the configured CA and client certificate, no redirects, no proxy from
//! the environment), a cap on requests in flight, and bounded retries with
//! backoff after transport errors only — never after the webhook answered,
//! whatever it answered.
//!
//! The cap is a semaphore taken without waiting: when `max_concurrency`
//! calls are in flight the next one fails at once (the chain applies
//! `on_error`), so a webhook that hangs costs each CONNECT at most the
//! chain's timeout and never queues the others behind it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::provider::{ErrorKind, ProviderError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::ClientSettings;
use crate::common::BuildError;

/// Largest answer read; more is a bad answer.
const MAX_BODY: usize = 64 * 1024;

/// A webhook's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    retries: u32,
    backoff: Duration,
    request_timeout: Duration,
}

impl HttpClient {
    pub fn build(s: &ClientSettings) -> Result<HttpClient, BuildError> {
        s.validate()?;
        let mut b = reqwest::Client::builder()
            .connect_timeout(s.connect_timeout)
            .timeout(s.request_timeout)
            .pool_max_idle_per_host(s.max_idle_connections)
            .pool_idle_timeout(s.idle_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        if s.tls.enable {
            b = b.use_preconfigured_tls(s.tls.rustls_client_config()?).https_only(true);
        }
        let client = b.build().map_err(|e| BuildError::client("", format!("http client: {e}")))?;
        Ok(HttpClient {
            client,
            permits: Arc::new(Semaphore::new(s.max_concurrency)),
            max_concurrency: s.max_concurrency,
            retries: s.retries,
            backoff: s.retry_backoff,
            request_timeout: s.request_timeout,
        })
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// A slot for one call, or an error right away when all are taken.
    pub fn permit(&self) -> Result<OwnedSemaphorePermit, ProviderError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!("{} webhook calls already in flight (max_concurrency); not queueing", self.max_concurrency),
            )
        })
    }

    /// Sends `req`, retrying transport errors; reads the answer (bounded).
    pub async fn send(&self, req: reqwest::Request) -> Result<Answer, ProviderError> {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            let Some(r) = req.try_clone() else {
                return Err(ProviderError::new(ErrorKind::Internal, "request body cannot be resent"));
            };
            match self.client.execute(r).await {
                Ok(resp) => return read(resp).await,
                Err(e) if attempt < self.retries && retriable(&e) => {
                    tracing::debug!(error = %describe(&e), attempt, "webhook request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => return Err(self.classify(&e)),
            }
        }
    }

    fn classify(&self, e: &reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::new(
                ErrorKind::Timeout,
                format!("webhook did not answer within {:?}", self.request_timeout),
            );
        }
        ProviderError::new(ErrorKind::Unavailable, format!("webhook unreachable: {}", describe(e)))
    }
}

/// Failures before any answer: connecting, or the connection dropping
/// while the request was sent.
fn retriable(e: &reqwest::Error) -> bool {
    !e.is_timeout() && (e.is_connect() || e.is_request())
}

/// The error and its causes, without the URL (it may carry client values).
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    if let Some(url) = e.url() {
        out = out.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        if depth == 4 {
            break;
        }
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
        depth += 1;
    }
    out
}

async fn read(mut resp: reqwest::Response) -> Result<Answer, ProviderError> {
    let status = resp.status().as_u16();
    let cache_control =
        resp.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ProviderError::new(
                        ErrorKind::BadResponse,
                        format!("webhook answer larger than {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err(ProviderError::new(ErrorKind::Timeout, "webhook answer did not arrive in time"))
            }
            Err(e) => {
                return Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    format!("reading the webhook answer: {}", describe(&e)),
                ))
            }
        }
    }
    Ok(Answer { status, body, cache_control })
}
