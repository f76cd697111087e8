//! Table tests of [`AuthChain`] against scripted providers.
//!
//! A [`Scripted`] provider answers from a script (then a fixed answer),
//! optionally after a delay, and counts its calls; `Hang` sleeps past any
//! timeout. The tests run on tokio's paused clock, so timeouts cost no real
//! time. [`every_behaviour_in_every_position`] runs every combination of
//! allow/deny/ignore/error/timeout × `on_error` in chains of one to three
//! providers, under both `no_match` settings, against a small model of the
//! documented semantics. The helpers here are shared with the cache tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use portcullis_core::codec::ProtocolVersion;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture, Password};
use portcullis_core::provider::{ErrorKind, OnError, ProviderError};

use crate::chain::{AuthChain, AuthEntry, AuthResult, DecidedBy, NoMatch, StepResult};
use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Expiry, Inputs};

/// The per-call timeout every test chain uses.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// What a scripted provider does on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Act {
    Allow,
    /// Allow, valid until then.
    AllowUntil(SystemTime),
    Deny(DenyReason),
    Ignore,
    /// Fail with [`ErrorKind::Unavailable`].
    Fail,
    /// Never answer (sleeps far past [`TIMEOUT`]).
    Hang,
}

/// A provider that plays a script, then repeats a fixed act.
#[derive(Debug)]
pub(crate) struct Scripted {
    name: String,
    script: Mutex<VecDeque<Act>>,
    then: Act,
    delay: Duration,
    calls: AtomicUsize,
    inputs: Inputs,
}

impl Scripted {
    /// Always `act`.
    pub(crate) fn new(name: &str, act: Act) -> Scripted {
        Scripted::script(name, Vec::new(), act)
    }

    /// `script` in order, then `then` forever.
    pub(crate) fn script(name: &str, script: Vec<Act>, then: Act) -> Scripted {
        Scripted {
            name: name.to_string(),
            script: Mutex::new(script.into()),
            then,
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
            inputs: Inputs::ALL,
        }
    }

    /// Answer only after `delay` (to keep a call in flight).
    pub(crate) fn delayed(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }

    /// Declares what the answers depend on (default: everything).
    pub(crate) fn with_inputs(mut self, inputs: Inputs) -> Scripted {
        self.inputs = inputs;
        self
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Relaxed)
    }
}

/// The rule name a scripted provider reports for a decisive act.
fn rule_of(name: &str, act: &Act) -> Option<String> {
    match act {
        Act::Allow | Act::AllowUntil(_) => Some(format!("{name}:allow")),
        Act::Deny(_) => Some(format!("{name}:deny")),
        Act::Ignore | Act::Fail | Act::Hang => None,
    }
}

impl AuthProvider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        self.inputs
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn authenticate<'a>(&'a self, _info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        self.calls.fetch_add(1, Relaxed);
        let act = self.script.lock().pop_front().unwrap_or_else(|| self.then.clone());
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let rule = rule_of(&self.name, &act);
            match act {
                Act::Allow => Ok(AuthAnswer::new(AuthDecision::allow(), rule)),
                Act::AllowUntil(at) => Ok(AuthAnswer::new(
                    AuthDecision::Allow {
                        superuser: false,
                        inline_acl: None,
                        expires_at: Some(Expiry::cache_only(at)),
                    },
                    rule,
                )),
                Act::Deny(r) => Ok(AuthAnswer::new(AuthDecision::Deny(r), rule)),
                Act::Ignore => Ok(AuthAnswer::ignore()),
                Act::Fail => Err(ProviderError::new(ErrorKind::Unavailable, "scripted outage")),
                Act::Hang => {
                    tokio::time::sleep(TIMEOUT * 3600).await;
                    Ok(AuthAnswer::ignore())
                }
            }
        })
    }
}

/// A CONNECT from `client` with `password` (from 192.0.2.1 on listener `tcp`).
pub(crate) fn connect(client: &str, user: Option<&str>, password: Option<&[u8]>) -> ConnectInfo {
    ConnectInfo {
        client_id: Arc::from(client),
        username: user.map(Arc::from),
        password: password.map(|p| Password::new(Bytes::copy_from_slice(p))),
        peer: "192.0.2.1:50000".parse().expect("literal address"),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V311.into(),
        cert: None,
    }
}

/// A chain named `main` over `providers`, each with [`TIMEOUT`].
pub(crate) fn chain_of(providers: &[(Arc<Scripted>, OnError)], no_match: NoMatch) -> AuthChain {
    named_chain("main", providers, no_match)
}

/// A chain named `name` over `providers`, each with [`TIMEOUT`].
pub(crate) fn named_chain(name: &str, providers: &[(Arc<Scripted>, OnError)], no_match: NoMatch) -> AuthChain {
    let entries =
        providers.iter().map(|(p, on_error)| AuthEntry::new(Arc::clone(p) as _, TIMEOUT, *on_error)).collect();
    AuthChain::new(name, entries, no_match)
}

/// The shape of one step, for comparisons that ignore timings and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Allow,
    Deny(DenyReason),
    Ignore,
    Error { skipped: bool },
    Timeout { skipped: bool },
}

fn shape(r: &StepResult) -> Shape {
    match r {
        StepResult::Decided(AuthDecision::Allow { .. }) => Shape::Allow,
        StepResult::Decided(AuthDecision::Deny(r)) => Shape::Deny(*r),
        StepResult::Decided(AuthDecision::Ignore) => Shape::Ignore,
        StepResult::Failed { error, skipped } if error.kind == ErrorKind::Timeout => {
            Shape::Timeout { skipped: *skipped }
        }
        StepResult::Failed { skipped, .. } => Shape::Error { skipped: *skipped },
    }
}

/// What the documented semantics say a chain does.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    result: AuthResult,
    decided_by: DecidedBy,
    steps: Vec<(String, Shape)>,
}

fn model(spec: &[(Act, OnError)], no_match: NoMatch) -> Expected {
    let mut steps = Vec::new();
    for (i, (act, on_error)) in spec.iter().enumerate() {
        let name = format!("p{i}");
        let skipped = *on_error == OnError::Ignore;
        let (shape, result) = match act {
            Act::Allow => {
                (Shape::Allow, Some(AuthResult::Allow { superuser: false, inline_acl: None, expires_at: None }))
            }
            Act::AllowUntil(at) => (
                Shape::Allow,
                Some(AuthResult::Allow {
                    superuser: false,
                    inline_acl: None,
                    expires_at: Some(Expiry::cache_only(*at)),
                }),
            ),
            Act::Deny(r) => (Shape::Deny(*r), Some(AuthResult::Deny(*r))),
            Act::Ignore => (Shape::Ignore, None),
            Act::Fail => (Shape::Error { skipped }, (!skipped).then_some(AuthResult::Unavailable)),
            Act::Hang => (Shape::Timeout { skipped }, (!skipped).then_some(AuthResult::Unavailable)),
        };
        steps.push((name.clone(), shape));
        if let Some(result) = result {
            let decided_by = match result {
                AuthResult::Unavailable => DecidedBy::Failure { name },
                _ => DecidedBy::Provider { rule: rule_of(&name, act), name },
            };
            return Expected { result, decided_by, steps };
        }
    }
    let result = match no_match {
        // `check` sends a username and password.
        NoMatch::Deny => AuthResult::Deny(DenyReason::BadCredentials),
        NoMatch::Allow => AuthResult::Allow { superuser: false, inline_acl: None, expires_at: None },
    };
    Expected { result, decided_by: DecidedBy::NoMatch, steps }
}

/// Runs `spec` once and checks verdict, steps, call counts and metrics
/// against the model.
async fn check(spec: &[(Act, OnError)], no_match: NoMatch) {
    let providers: Vec<(Arc<Scripted>, OnError)> = spec
        .iter()
        .enumerate()
        .map(|(i, (act, on_error))| (Arc::new(Scripted::new(&format!("p{i}"), act.clone())), *on_error))
        .collect();
    let chain = chain_of(&providers, no_match);
    let v = chain.authenticate(&connect("c1", Some("u"), Some(b"pw"))).await;
    let want = model(spec, no_match);
    let ctx = format!("spec {spec:?}, no_match {no_match:?}");
    assert_eq!(v.result, want.result, "{ctx}");
    assert_eq!(v.decided_by, want.decided_by, "{ctx}");
    let got: Vec<(String, Shape)> = v.steps.iter().map(|s| (s.provider.clone(), shape(&s.result))).collect();
    assert_eq!(got, want.steps, "{ctx}");
    for s in &v.steps {
        assert_eq!(s.kind, "scripted", "{ctx}");
        let decisive = matches!(shape(&s.result), Shape::Allow | Shape::Deny(_));
        assert_eq!(s.rule.is_some(), decisive, "rule recorded only for a decision; {ctx}");
    }
    for (i, ((p, _), e)) in providers.iter().zip(&chain.entries).enumerate() {
        let asked = i < want.steps.len();
        assert_eq!(p.calls(), usize::from(asked), "calls of p{i}; {ctx}");
        let m = &e.metrics;
        let counts = [&m.calls, &m.allow, &m.deny, &m.ignore, &m.error, &m.timeout].map(|c| c.load(Relaxed));
        let mut expect = [0u64; 6];
        if asked {
            expect[0] = 1;
            let slot = match want.steps[i].1 {
                Shape::Allow => 1,
                Shape::Deny(_) => 2,
                Shape::Ignore => 3,
                Shape::Error { .. } => 4,
                Shape::Timeout { .. } => 5,
            };
            expect[slot] = 1;
        }
        assert_eq!(counts, expect, "metrics [calls allow deny ignore error timeout] of p{i}; {ctx}");
    }
}

fn a(act: Act, on_error: OnError) -> (Act, OnError) {
    (act, on_error)
}

const BAD: Act = Act::Deny(DenyReason::BadCredentials);

#[tokio::test(start_paused = true)]
async fn every_behaviour_in_every_position() {
    let acts = [Act::Allow, BAD, Act::Ignore, Act::Fail, Act::Hang];
    let options: Vec<(Act, OnError)> =
        acts.iter().flat_map(|act| [a(act.clone(), OnError::Deny), a(act.clone(), OnError::Ignore)]).collect();
    let mut runs = 0;
    for len in 1..=3u32 {
        for n in 0..options.len().pow(len) {
            let mut rest = n;
            let spec: Vec<(Act, OnError)> = (0..len)
                .map(|_| {
                    let o = options[rest % options.len()].clone();
                    rest /= options.len();
                    o
                })
                .collect();
            for no_match in [NoMatch::Deny, NoMatch::Allow] {
                check(&spec, no_match).await;
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 2 * (10 + 100 + 1000));
}

/// A named chain spec and its `no_match`.
type Case = (&'static str, Vec<(Act, OnError)>, NoMatch);

#[tokio::test(start_paused = true)]
async fn readable_table() {
    use OnError::{Deny as Closed, Ignore as Skip};
    let not_auth = Act::Deny(DenyReason::NotAuthorized);
    let table: Vec<Case> = vec![
        ("single allow", vec![a(Act::Allow, Closed)], NoMatch::Deny),
        ("single deny", vec![a(BAD, Closed)], NoMatch::Allow),
        ("ignore falls through to allow", vec![a(Act::Ignore, Closed), a(Act::Allow, Closed)], NoMatch::Deny),
        ("first deny wins over a later allow", vec![a(BAD, Closed), a(Act::Allow, Closed)], NoMatch::Allow),
        ("not authorized is kept as such", vec![a(Act::Ignore, Closed), a(not_auth, Closed)], NoMatch::Allow),
        ("error fails closed before an allow", vec![a(Act::Fail, Closed), a(Act::Allow, Closed)], NoMatch::Allow),
        ("error skipped with on_error=ignore", vec![a(Act::Fail, Skip), a(Act::Allow, Closed)], NoMatch::Deny),
        (
            "timeout fails closed",
            vec![a(Act::Ignore, Closed), a(Act::Hang, Closed), a(Act::Allow, Closed)],
            NoMatch::Allow,
        ),
        ("timeout skipped", vec![a(Act::Hang, Skip), a(Act::Ignore, Closed), a(BAD, Closed)], NoMatch::Allow),
        ("all ignore, no_match deny", vec![a(Act::Ignore, Closed), a(Act::Ignore, Closed)], NoMatch::Deny),
        ("all ignore, no_match allow", vec![a(Act::Ignore, Closed), a(Act::Ignore, Closed)], NoMatch::Allow),
        ("skipped failures reach no_match", vec![a(Act::Fail, Skip), a(Act::Hang, Skip)], NoMatch::Allow),
    ];
    for (name, spec, no_match) in table {
        eprintln!("case: {name}");
        check(&spec, no_match).await;
    }
}

#[tokio::test(start_paused = true)]
async fn empty_chain_is_no_match() {
    for no_match in [NoMatch::Deny, NoMatch::Allow] {
        let v = chain_of(&[], no_match).authenticate(&connect("c", None, None)).await;
        assert_eq!(v.decided_by, DecidedBy::NoMatch);
        assert!(v.steps.is_empty());
        assert_eq!(matches!(v.result, AuthResult::Allow { .. }), no_match == NoMatch::Allow);
    }
}

#[tokio::test(start_paused = true)]
async fn no_match_does_not_tell_unknown_users_from_wrong_passwords() {
    let chain = chain_of(&[(Arc::new(Scripted::new("p", Act::Ignore)), OnError::Deny)], NoMatch::Deny);
    for (info, want) in [
        (connect("c", Some("nobody"), Some(b"pw")), DenyReason::BadCredentials),
        (connect("c", Some("nobody"), None), DenyReason::BadCredentials),
        (connect("c", None, Some(b"token")), DenyReason::BadCredentials),
        (connect("c", None, None), DenyReason::NotAuthorized),
    ] {
        let v = chain.authenticate(&info).await;
        assert_eq!(v.result, AuthResult::Deny(want), "{:?} {:?}", info.username, info.password.is_some());
        assert_eq!(v.decided_by, DecidedBy::NoMatch);
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_waits_exactly_the_configured_time() {
    let p = Arc::new(Scripted::new("slow", Act::Hang));
    let chain = chain_of(&[(p, OnError::Deny)], NoMatch::Allow);
    let started = tokio::time::Instant::now();
    let v = chain.authenticate(&connect("c", None, None)).await;
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(v.result, AuthResult::Unavailable);
    match &v.steps[0].result {
        StepResult::Failed { error, skipped: false } => assert_eq!(error.kind, ErrorKind::Timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_within_the_timeout_counts() {
    let p = Arc::new(Scripted::new("slow", Act::Allow).delayed(TIMEOUT / 2));
    let chain = chain_of(&[(p, OnError::Deny)], NoMatch::Deny);
    let v = chain.authenticate(&connect("c", None, None)).await;
    assert!(matches!(v.result, AuthResult::Allow { .. }), "{v:?}");
}

#[tokio::test(start_paused = true)]
async fn allow_details_pass_through() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let p = Arc::new(Scripted::new("jwt", Act::AllowUntil(at)));
    let chain = chain_of(&[(p, OnError::Deny)], NoMatch::Deny);
    let v = chain.authenticate(&connect("c", None, None)).await;
    assert_eq!(
        v.result,
        AuthResult::Allow { superuser: false, inline_acl: None, expires_at: Some(Expiry::cache_only(at)) }
    );
}

#[tokio::test(start_paused = true)]
async fn scripted_sequence_and_metrics_accumulate() {
    let p = Arc::new(Scripted::script("seq", vec![Act::Allow, BAD, Act::Fail, Act::Hang], Act::Ignore));
    let chain = chain_of(&[(Arc::clone(&p), OnError::Ignore)], NoMatch::Deny);
    let info = connect("c", None, None);
    for _ in 0..5 {
        chain.authenticate(&info).await;
    }
    assert_eq!(p.calls(), 5);
    let m = &chain.entries[0].metrics;
    let counts = [&m.calls, &m.allow, &m.deny, &m.ignore, &m.error, &m.timeout].map(|c| c.load(Relaxed));
    assert_eq!(counts, [5, 1, 1, 1, 1, 1]);
    let mut scrape = portcullis_core::metrics::Scrape::new();
    chain.collect(&mut scrape);
    let sys = scrape.sys_values();
    assert!(sys.contains(&("auth/main/seq/calls".to_string(), "5".to_string())), "{sys:?}");
    assert!(sys.contains(&("auth/main/seq/timeout".to_string(), "1".to_string())), "{sys:?}");
    // The latency histogram: one observation per call, the same in $SYS
    // (per bucket) as in the registry.
    let Some(portcullis_core::metrics::Value::Histogram(h)) =
        scrape.value("auth_provider_latency_seconds", &["main", "seq"])
    else {
        panic!("no latency histogram: {scrape:?}");
    };
    assert_eq!(h.count(), 5);
    let in_sys: u64 = sys
        .iter()
        .filter(|(t, _)| t.starts_with("auth/main/seq/latency_us_le_"))
        .map(|(_, v)| v.parse::<u64>().expect("number"))
        .sum();
    assert_eq!(in_sys, 5, "{sys:?}");
    // The hung call ran into the timeout: counted in its bucket or above.
    let timeout_us = u64::try_from(TIMEOUT.as_micros()).expect("µs");
    let bucket = portcullis_core::provider::LATENCY_BUCKETS_US.iter().position(|b| timeout_us <= *b);
    let bucket = bucket.unwrap_or(portcullis_core::provider::LATENCY_BUCKETS_US.len());
    assert!(h.counts[bucket..].iter().sum::<u64>() >= 1, "{h:?}");
}
