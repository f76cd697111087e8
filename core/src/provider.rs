//! What every auth and ACL provider shares: the error type that is never a
//! deny, the per-provider failure policy, and per-provider metrics.
//!
//! The chains live in `portcullis-auth` and `portcullis-acl`; they are
//! here only so both crates (and the backends) use one definition.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A provider failed (backend down, timeout, bad data). Never a deny: the
/// chain applies the provider's `on_error` policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// Human-readable detail. Must never contain a password.
    pub message: String,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError { kind, message: message.into() }
    }
    pub fn timeout(after: Duration) -> ProviderError {
        ProviderError::new(ErrorKind::Timeout, format!("no answer within {after:?}"))
    }
}

/// Classifies provider failures (for logs, metrics and retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The call did not finish within the provider's timeout.
    Timeout,
    /// The backend could not be reached or refused the connection.
    Unavailable,
    /// The backend answered something we cannot use.
    BadResponse,
    /// Anything else.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::BadResponse => "bad response",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// What a chain does when a provider fails (`on_error = "deny" | "ignore"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: the chain stops with "unavailable" (auth) or deny (ACL).
    #[default]
    Deny,
    /// Skip the provider as if it had answered Ignore.
    Ignore,
}

/// Upper bounds (µs) of the latency histogram buckets; the last bucket is
/// everything above.
pub const LATENCY_BUCKETS_US: [u64; 8] = [100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 1_000_000];

/// Per-provider counters, kept by the chain that calls it.
#[derive(Debug, Default)]
pub struct ProviderMetrics {
    pub calls: AtomicU64,
    pub allow: AtomicU64,
    pub deny: AtomicU64,
    pub ignore: AtomicU64,
    pub error: AtomicU64,
    pub timeout: AtomicU64,
    pub latency: [AtomicU64; 9],
    pub latency_sum_us: AtomicU64,
}

impl ProviderMetrics {
    /// Runs one provider call under `timeout`, counting the call, its
    /// latency, and a timeout or error. The caller counts the decision.
    pub async fn call<T>(
        &self,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> (Result<T, ProviderError>, Duration) {
        let started = std::time::Instant::now();
        self.calls.fetch_add(1, Relaxed);
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::timeout(timeout)),
        };
        let elapsed = started.elapsed();
        self.observe(elapsed);
        if let Err(e) = &r {
            let counter = if e.kind == ErrorKind::Timeout { &self.timeout } else { &self.error };
            counter.fetch_add(1, Relaxed);
        }
        (r, elapsed)
    }

    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[i].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// `(name, value)` pairs for `$SYS` (names relative to the provider).
    pub fn values(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("calls".to_string(), self.calls.load(Relaxed)),
            ("allow".to_string(), self.allow.load(Relaxed)),
            ("deny".to_string(), self.deny.load(Relaxed)),
            ("ignore".to_string(), self.ignore.load(Relaxed)),
            ("error".to_string(), self.error.load(Relaxed)),
            ("timeout".to_string(), self.timeout.load(Relaxed)),
            ("latency_us_sum".to_string(), self.latency_sum_us.load(Relaxed)),
        ];
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            v.push((format!("latency_us_le_{b}"), self.latency[i].load(Relaxed)));
        }
        v.push(("latency_us_le_inf".to_string(), self.latency[LATENCY_BUCKETS_US.len()].load(Relaxed)));
        v
    }
}

/// What happened at one provider of a chain (`D` is the chain's decision type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult<D> {
    Decided(D),
    /// Failed (including timeout); `skipped` when `on_error = ignore`.
    Failed {
        error: ProviderError,
        skipped: bool,
    },
}

/// One provider's part in a verdict, for logs and the explain commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<D> {
    pub provider: String,
    pub kind: &'static str,
    pub result: StepResult<D>,
    pub rule: Option<String>,
    pub elapsed: Duration,
}

/// One provider in a chain (`P` is the provider handle), with its call
/// policy and counters.
#[derive(Debug)]
pub struct ChainEntry<P> {
    pub provider: P,
    pub timeout: Duration,
    pub on_error: OnError,
    pub metrics: ProviderMetrics,
}

impl<P> ChainEntry<P> {
    pub fn new(provider: P, timeout: Duration, on_error: OnError) -> ChainEntry<P> {
        ChainEntry { provider, timeout, on_error, metrics: ProviderMetrics::default() }
    }
}
