//! What every auth and ACL provider shares: the error type that is never a
//! deny, the per-provider failure policy, and per-provider metrics (the
//! counters and latency histogram a chain keeps for each provider, and
//! their metric families: [`AUTH_PROVIDER`], [`ACL_PROVIDER`]).
//!
//! The chain rules themselves live here once ([`walk`]: order, timeout,
//! counting, `on_error`, first Allow or Deny decides), over the
//! [`ChainMember`] contract; `portcullis-auth` and `portcullis-acl` only map
//! a walk's end to their verdicts. Core is the one crate both chains and
//! the backends depend on, so this is where a single definition can live.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::{Buckets, Family, Kind, Scrape};

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
        // Tokio's clock: the same as the system's in production, and the
        // test clock when paused (a timeout then shows in the histogram).
        let started = tokio::time::Instant::now();
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

    /// Reads this provider's counters into `out` as the `families` of its
    /// chain (auth or ACL), labelled with the chain and provider names;
    /// `health` is the provider's own (`None`: it has no backend to lose).
    pub fn collect(
        &self,
        families: &'static ProviderFamilies,
        chain: &str,
        provider: &str,
        health: Option<bool>,
        out: &mut Scrape,
    ) {
        let labels = [chain, provider];
        out.add(&families.calls, &labels, self.calls.load(Relaxed));
        for (outcome, counter) in [
            ("allow", &self.allow),
            ("deny", &self.deny),
            ("ignore", &self.ignore),
            ("error", &self.error),
            ("timeout", &self.timeout),
        ] {
            out.add(&families.outcomes, &[chain, provider, outcome], counter.load(Relaxed));
        }
        let counts = self.latency.iter().map(|c| c.load(Relaxed)).collect();
        out.add_histogram(&families.latency, &labels, counts, self.latency_sum_us.load(Relaxed));
        if let Some(up) = health {
            out.add(&families.up, &labels, u64::from(up));
        }
    }
}

/// The metric families of the providers of one kind of chain: calls,
/// outcomes, latency and health, labelled `chain` and `provider` (both
/// names from the config).
#[derive(Debug)]
pub struct ProviderFamilies {
    pub calls: Family,
    /// `outcome` is `allow`, `deny`, `ignore`, `error` or `timeout`.
    pub outcomes: Family,
    pub latency: Family,
    /// 1 up, 0 down; only providers with a backend.
    pub up: Family,
}

const LATENCY_BUCKETS: Buckets = Buckets { bounds: &LATENCY_BUCKETS_US, per_base_unit: 1_000_000 };

/// The auth chains' providers: `portcullis_auth_provider_*`, and
/// `$SYS/brokers/<node>/auth/<chain>/<provider>/…`.
pub static AUTH_PROVIDER: ProviderFamilies = ProviderFamilies {
    calls: Family {
        name: "auth_provider_calls",
        help: "Calls to an auth provider.",
        kind: Kind::Counter,
        labels: &["chain", "provider"],
        sys: Some("auth/{chain}/{provider}/calls"),
        sys_total: None,
    },
    outcomes: Family {
        name: "auth_provider_outcomes",
        help: "Auth provider answers (allow, deny, ignore) and failures (error, timeout).",
        kind: Kind::Counter,
        labels: &["chain", "provider", "outcome"],
        sys: Some("auth/{chain}/{provider}/{outcome}"),
        sys_total: None,
    },
    latency: Family {
        name: "auth_provider_latency_seconds",
        help: "Time an auth provider took to answer or fail.",
        kind: Kind::Histogram(LATENCY_BUCKETS),
        labels: &["chain", "provider"],
        sys: Some("auth/{chain}/{provider}/latency_us"),
        sys_total: None,
    },
    up: Family {
        name: "auth_provider_up",
        help: "Whether an auth provider's backend is reachable (1) or not (0).",
        kind: Kind::Gauge,
        labels: &["chain", "provider"],
        sys: Some("auth/{chain}/{provider}/health"),
        sys_total: None,
    },
};

/// The ACL chains' providers: `portcullis_acl_provider_*`, and
/// `$SYS/brokers/<node>/acl/<chain>/<provider>/…`.
pub static ACL_PROVIDER: ProviderFamilies = ProviderFamilies {
    calls: Family {
        name: "acl_provider_calls",
        help: "Calls to an ACL provider.",
        kind: Kind::Counter,
        labels: &["chain", "provider"],
        sys: Some("acl/{chain}/{provider}/calls"),
        sys_total: None,
    },
    outcomes: Family {
        name: "acl_provider_outcomes",
        help: "ACL provider answers (allow, deny, ignore) and failures (error, timeout).",
        kind: Kind::Counter,
        labels: &["chain", "provider", "outcome"],
        sys: Some("acl/{chain}/{provider}/{outcome}"),
        sys_total: None,
    },
    latency: Family {
        name: "acl_provider_latency_seconds",
        help: "Time an ACL provider took to answer or fail.",
        kind: Kind::Histogram(LATENCY_BUCKETS),
        labels: &["chain", "provider"],
        sys: Some("acl/{chain}/{provider}/latency_us"),
        sys_total: None,
    },
    up: Family {
        name: "acl_provider_up",
        help: "Whether an ACL provider's backend is reachable (1) or not (0).",
        kind: Kind::Gauge,
        labels: &["chain", "provider"],
        sys: Some("acl/{chain}/{provider}/health"),
        sys_total: None,
    },
};

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

/// A provider's decision as a chain reads it: the first that is not
/// [`Outcome::Ignore`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    Ignore,
}

/// What the chain walker ([`walk`]) needs of a provider: its names, and
/// one question `Q` answered with a decision `D` and the rule that made
/// it. The auth chain asks `dyn AuthProvider` a `ConnectInfo`; the ACL
/// chain asks `dyn AclProvider` a client and an access.
pub trait ChainMember<Q: ?Sized>: Send + Sync {
    type Decision: Clone;
    /// What the provider answers: a decision and, maybe, the rule that made it.
    type Answer;
    /// The instance name from the config.
    fn member_name(&self) -> &str;
    /// The provider type (`password_file`, `postgres`…).
    fn member_kind(&self) -> &'static str;
    /// The provider's own call (no extra allocation on the way).
    fn ask<'a>(&'a self, question: &'a Q) -> crate::gate::GateFuture<'a, Result<Self::Answer, ProviderError>>;
    /// The decision and the rule that made it.
    fn split(answer: Self::Answer) -> (Self::Decision, Option<String>);
    fn outcome(decision: &Self::Decision) -> Outcome;
}

/// How a walk through a chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEnd<D> {
    /// A provider allowed or denied.
    Decided { provider: String, decision: D, rule: Option<String> },
    /// A provider failed with `on_error = deny`: the chain fails closed.
    Failed { provider: String },
    /// Every provider ignored (or failed with `on_error = ignore`): the
    /// chain's `no_match` decides.
    NoMatch,
}

/// A walk's end and every step taken, for logs and the explain commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk<D> {
    pub end: WalkEnd<D>,
    pub steps: Vec<Step<D>>,
}

/// Walks a chain (`what` is `"auth"` or `"ACL"`, for the log): asks each
/// provider in order under its timeout, counts its answer or failure,
/// applies its `on_error`, and stops at the first Allow or Deny. The one
/// place the chain rules live: the auth and ACL chains only map the end
/// to their verdicts.
pub async fn walk<P, Q>(
    what: &str,
    chain: &str,
    entries: &[ChainEntry<std::sync::Arc<P>>],
    question: &Q,
) -> Walk<P::Decision>
where
    P: ChainMember<Q> + ?Sized,
    Q: ?Sized + Sync,
{
    let mut steps = Vec::with_capacity(entries.len());
    for e in entries {
        let (r, elapsed) = e.metrics.call(e.timeout, e.provider.ask(question)).await;
        let name = e.provider.member_name().to_string();
        let kind = e.provider.member_kind();
        match r {
            Ok(answer) => {
                let (decision, rule) = P::split(answer);
                let outcome = P::outcome(&decision);
                let counter = match outcome {
                    Outcome::Allow => &e.metrics.allow,
                    Outcome::Deny => &e.metrics.deny,
                    Outcome::Ignore => &e.metrics.ignore,
                };
                counter.fetch_add(1, Relaxed);
                steps.push(Step {
                    provider: name.clone(),
                    kind,
                    result: StepResult::Decided(decision.clone()),
                    rule: rule.clone(),
                    elapsed,
                });
                if outcome != Outcome::Ignore {
                    return Walk { end: WalkEnd::Decided { provider: name, decision, rule }, steps };
                }
            }
            Err(error) => {
                tracing::warn!(chain = %chain, provider = %name, error = %error, on_error = ?e.on_error, "{what} provider failed");
                let skipped = e.on_error == OnError::Ignore;
                steps.push(Step {
                    provider: name.clone(),
                    kind,
                    result: StepResult::Failed { error, skipped },
                    rule: None,
                    elapsed,
                });
                if !skipped {
                    return Walk { end: WalkEnd::Failed { provider: name }, steps };
                }
            }
        }
    }
    Walk { end: WalkEnd::NoMatch, steps }
}
