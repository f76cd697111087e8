//! Table tests of [`AclChain`] against scripted providers.
//!
//! A [`Scripted`] provider answers one fixed act and counts its calls;
//! `Hang` sleeps past any timeout. The tests run on tokio's paused clock, so
//! timeouts cost no real time. [`every_behaviour_in_every_position`] runs
//! every combination of allow/deny/ignore/error/timeout × `on_error` in
//! chains of one to three providers, under both `no_match` settings and for
//! both a PUBLISH and a SUBSCRIBE, against a small model of the documented
//! semantics.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::{ErrorKind, OnError, ProviderError};
use portcullis_core::topic::{SubscriptionFilter, TopicName};

use crate::chain::{AclChain, AclEntry, DecidedBy, DenyAction, StepResult};
use crate::provider::{AclAnswer, AclDecision, AclProvider};
use crate::rule::Permission;

const TIMEOUT: Duration = Duration::from_secs(1);

/// What a scripted provider does on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Allow,
    Deny,
    Ignore,
    /// Fail with [`ErrorKind::Unavailable`].
    Fail,
    /// Never answer (sleeps far past [`TIMEOUT`]).
    Hang,
}

#[derive(Debug)]
struct Scripted {
    name: String,
    act: Act,
    calls: AtomicUsize,
    /// What each call was asked (`pub <topic>` / `sub <filter>`).
    seen: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(name: &str, act: Act) -> Arc<Scripted> {
        Arc::new(Scripted { name: name.to_string(), act, calls: AtomicUsize::new(0), seen: Mutex::new(Vec::new()) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Relaxed)
    }
}

fn rule_of(name: &str, act: Act) -> Option<String> {
    match act {
        Act::Allow => Some(format!("{name}:allow")),
        Act::Deny => Some(format!("{name}:deny")),
        Act::Ignore | Act::Fail | Act::Hang => None,
    }
}

impl AclProvider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn authorize<'a>(
        &'a self,
        _client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        self.calls.fetch_add(1, Relaxed);
        self.seen.lock().push(match access {
            Access::Publish { topic, .. } => format!("pub {topic}"),
            Access::Subscribe { filter, .. } => format!("sub {}", filter.raw),
        });
        Box::pin(async move {
            let rule = rule_of(&self.name, self.act);
            match self.act {
                Act::Allow => Ok(AclAnswer { decision: AclDecision::Allow, rule }),
                Act::Deny => Ok(AclAnswer { decision: AclDecision::Deny, rule }),
                Act::Ignore => Ok(AclAnswer::ignore()),
                Act::Fail => Err(ProviderError::new(ErrorKind::Unavailable, "scripted outage")),
                Act::Hang => {
                    tokio::time::sleep(TIMEOUT * 3600).await;
                    Ok(AclAnswer::ignore())
                }
            }
        })
    }
}

fn client(superuser: bool) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from("dev1"),
        username: Some(Arc::from("alice")),
        peer: "192.0.2.7:40000".parse().expect("literal address"),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V311.into(),
        superuser,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

/// Owned request data, borrowed as an [`Access`].
enum Req {
    Pub(TopicName),
    Sub(SubscriptionFilter),
}

impl Req {
    fn publish() -> Req {
        Req::Pub(TopicName::new("devices/dev1/state").expect("literal topic"))
    }
    fn subscribe() -> Req {
        Req::Sub(SubscriptionFilter::parse("devices/+/cmd").expect("literal filter"))
    }
    fn access(&self) -> Access<'_> {
        match self {
            Req::Pub(topic) => Access::Publish { topic, qos: QoS::AtLeastOnce, retain: false },
            Req::Sub(filter) => Access::Subscribe { filter, qos: QoS::AtLeastOnce },
        }
    }
    fn seen(&self) -> &'static str {
        match self {
            Req::Pub(_) => "pub devices/dev1/state",
            Req::Sub(_) => "sub devices/+/cmd",
        }
    }
}

fn chain_of(providers: &[(Arc<Scripted>, OnError)], no_match: Permission) -> AclChain {
    let entries = providers.iter().map(|(p, on_error)| AclEntry::new(Arc::clone(p) as _, TIMEOUT, *on_error)).collect();
    AclChain::new("main", entries, no_match, DenyAction::Ignore)
}

/// The shape of one step, for comparisons that ignore timings and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Allow,
    Deny,
    Ignore,
    Error { skipped: bool },
    Timeout { skipped: bool },
}

fn shape(r: &StepResult) -> Shape {
    match r {
        StepResult::Decided(AclDecision::Allow) => Shape::Allow,
        StepResult::Decided(AclDecision::Deny) => Shape::Deny,
        StepResult::Decided(AclDecision::Ignore) => Shape::Ignore,
        StepResult::Failed { error, skipped } if error.kind == ErrorKind::Timeout => {
            Shape::Timeout { skipped: *skipped }
        }
        StepResult::Failed { skipped, .. } => Shape::Error { skipped: *skipped },
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Expected {
    allowed: bool,
    decided_by: DecidedBy,
    steps: Vec<(String, Shape)>,
}

/// The documented semantics, for a non-superuser.
fn model(spec: &[(Act, OnError)], no_match: Permission) -> Expected {
    let mut steps = Vec::new();
    for (i, (act, on_error)) in spec.iter().enumerate() {
        let name = format!("p{i}");
        let skipped = *on_error == OnError::Ignore;
        let (shape, decided) = match act {
            Act::Allow => (Shape::Allow, Some(true)),
            Act::Deny => (Shape::Deny, Some(false)),
            Act::Ignore => (Shape::Ignore, None),
            Act::Fail => (Shape::Error { skipped }, (!skipped).then_some(false)),
            Act::Hang => (Shape::Timeout { skipped }, (!skipped).then_some(false)),
        };
        steps.push((name.clone(), shape));
        if let Some(allowed) = decided {
            let decided_by = match shape {
                Shape::Allow | Shape::Deny => DecidedBy::Provider { rule: rule_of(&name, *act), name },
                _ => DecidedBy::Failure { name },
            };
            return Expected { allowed, decided_by, steps };
        }
    }
    Expected { allowed: no_match == Permission::Allow, decided_by: DecidedBy::NoMatch, steps }
}

/// Runs `spec` once and checks verdict, steps, calls, what the providers
/// were asked, and metrics against the model.
async fn check(spec: &[(Act, OnError)], no_match: Permission, req: &Req) {
    let providers: Vec<(Arc<Scripted>, OnError)> = spec
        .iter()
        .enumerate()
        .map(|(i, (act, on_error))| (Scripted::new(&format!("p{i}"), *act), *on_error))
        .collect();
    let chain = chain_of(&providers, no_match);
    let v = chain.authorize(&client(false), req.access()).await;
    let want = model(spec, no_match);
    let ctx = format!("spec {spec:?}, no_match {no_match:?}, {}", req.seen());
    assert_eq!(v.allowed, want.allowed, "{ctx}");
    assert_eq!(v.decided_by, want.decided_by, "{ctx}");
    let got: Vec<(String, Shape)> = v.steps.iter().map(|s| (s.provider.clone(), shape(&s.result))).collect();
    assert_eq!(got, want.steps, "{ctx}");
    for s in &v.steps {
        assert_eq!(s.kind, "scripted", "{ctx}");
        assert_eq!(s.rule.is_some(), matches!(shape(&s.result), Shape::Allow | Shape::Deny), "{ctx}");
    }
    for (i, ((p, _), e)) in providers.iter().zip(&chain.entries).enumerate() {
        let asked = i < want.steps.len();
        assert_eq!(p.calls(), usize::from(asked), "calls of p{i}; {ctx}");
        let seen = p.seen.lock().clone();
        assert_eq!(seen, if asked { vec![req.seen().to_string()] } else { Vec::new() }, "{ctx}");
        let m = &e.metrics;
        let counts = [&m.calls, &m.allow, &m.deny, &m.ignore, &m.error, &m.timeout].map(|c| c.load(Relaxed));
        let mut expect = [0u64; 6];
        if asked {
            expect[0] = 1;
            expect[match want.steps[i].1 {
                Shape::Allow => 1,
                Shape::Deny => 2,
                Shape::Ignore => 3,
                Shape::Error { .. } => 4,
                Shape::Timeout { .. } => 5,
            }] = 1;
        }
        assert_eq!(counts, expect, "metrics [calls allow deny ignore error timeout] of p{i}; {ctx}");
    }
}

const ACTS: [Act; 5] = [Act::Allow, Act::Deny, Act::Ignore, Act::Fail, Act::Hang];

#[tokio::test(start_paused = true)]
async fn every_behaviour_in_every_position() {
    let options: Vec<(Act, OnError)> =
        ACTS.iter().flat_map(|act| [(*act, OnError::Deny), (*act, OnError::Ignore)]).collect();
    let mut runs = 0;
    for req in [Req::publish(), Req::subscribe()] {
        for len in 1..=3u32 {
            for n in 0..options.len().pow(len) {
                let mut rest = n;
                let spec: Vec<(Act, OnError)> = (0..len)
                    .map(|_| {
                        let o = options[rest % options.len()];
                        rest /= options.len();
                        o
                    })
                    .collect();
                for no_match in [Permission::Deny, Permission::Allow] {
                    check(&spec, no_match, &req).await;
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(runs, 2 * 2 * (10 + 100 + 1000));
}

/// A named chain spec and its `no_match`.
type Case = (&'static str, Vec<(Act, OnError)>, Permission);

#[tokio::test(start_paused = true)]
async fn readable_table() {
    use OnError::{Deny as Closed, Ignore as Skip};
    use Permission::{Allow as NoMatchAllow, Deny as NoMatchDeny};
    let table: Vec<Case> = vec![
        ("single allow", vec![(Act::Allow, Closed)], NoMatchDeny),
        ("single deny", vec![(Act::Deny, Closed)], NoMatchAllow),
        ("ignore falls through to deny", vec![(Act::Ignore, Closed), (Act::Deny, Closed)], NoMatchAllow),
        ("first allow wins over a later deny", vec![(Act::Allow, Closed), (Act::Deny, Closed)], NoMatchDeny),
        ("error fails closed before an allow", vec![(Act::Fail, Closed), (Act::Allow, Closed)], NoMatchAllow),
        ("error skipped with on_error=ignore", vec![(Act::Fail, Skip), (Act::Allow, Closed)], NoMatchDeny),
        ("timeout fails closed", vec![(Act::Ignore, Closed), (Act::Hang, Closed), (Act::Allow, Closed)], NoMatchAllow),
        ("timeout skipped", vec![(Act::Hang, Skip), (Act::Ignore, Closed), (Act::Allow, Closed)], NoMatchDeny),
        ("all ignore, no_match deny", vec![(Act::Ignore, Closed), (Act::Ignore, Closed)], NoMatchDeny),
        ("all ignore, no_match allow", vec![(Act::Ignore, Closed), (Act::Ignore, Closed)], NoMatchAllow),
        ("skipped failures reach no_match", vec![(Act::Fail, Skip), (Act::Hang, Skip)], NoMatchAllow),
    ];
    for (name, spec, no_match) in table {
        eprintln!("case: {name}");
        check(&spec, no_match, &Req::publish()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn superuser_bypasses_every_provider() {
    for act in ACTS {
        for no_match in [Permission::Deny, Permission::Allow] {
            let p = Scripted::new("p0", act);
            let chain = chain_of(&[(Arc::clone(&p), OnError::Deny)], no_match);
            for req in [Req::publish(), Req::subscribe()] {
                let v = chain.authorize(&client(true), req.access()).await;
                assert!(v.allowed, "{act:?}");
                assert_eq!(v.decided_by, DecidedBy::Superuser);
                assert!(v.steps.is_empty());
            }
            assert_eq!(p.calls(), 0, "{act:?}: no provider called");
            assert_eq!(chain.entries[0].metrics.calls.load(Relaxed), 0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn empty_chain_is_no_match() {
    for no_match in [Permission::Deny, Permission::Allow] {
        let v = chain_of(&[], no_match).authorize(&client(false), Req::publish().access()).await;
        assert_eq!(v.allowed, no_match == Permission::Allow);
        assert_eq!(v.decided_by, DecidedBy::NoMatch);
        assert!(v.steps.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_waits_exactly_the_configured_time() {
    let chain = chain_of(&[(Scripted::new("slow", Act::Hang), OnError::Deny)], Permission::Allow);
    let started = tokio::time::Instant::now();
    let v = chain.authorize(&client(false), Req::subscribe().access()).await;
    assert_eq!(started.elapsed(), TIMEOUT);
    assert!(!v.allowed);
    assert_eq!(v.decided_by, DecidedBy::Failure { name: "slow".into() });
}

#[tokio::test(start_paused = true)]
async fn metrics_accumulate_and_reach_sys() {
    let p = Scripted::new("file", Act::Deny);
    let chain = chain_of(&[(p, OnError::Deny)], Permission::Allow);
    for _ in 0..3 {
        chain.authorize(&client(false), Req::publish().access()).await;
    }
    let mut scrape = portcullis_core::metrics::Scrape::new();
    chain.collect(&mut scrape);
    let sys = scrape.sys_values();
    assert!(sys.contains(&("acl/main/file/calls".to_string(), "3".to_string())), "{sys:?}");
    assert!(sys.contains(&("acl/main/file/deny".to_string(), "3".to_string())), "{sys:?}");
    let latency = scrape.value("acl_provider_latency_seconds", &["main", "file"]).expect("latency histogram");
    assert_eq!(latency.number(), 3, "one observation per call");
}

/// Which granted subscriptions get their deliveries checked: a rule
/// source's overlapping deny rules, a per-action provider's wildcard
/// filters (it cannot list its rules), never a superuser's.
#[test]
fn delivery_check_marks() {
    use crate::defaults::{default_rules, StaticRules};
    use crate::rule::{Action, Rule, Subject, TopicPattern};

    let rule = |permission, topic: &str| Rule {
        permission,
        subject: Subject::default(),
        action: Action::All,
        topics: vec![TopicPattern::parse(topic).expect("pattern")],
        qos: None,
        retain: None,
        origin: "t:1".into(),
    };
    let rules = StaticRules::new("rules", vec![rule(Permission::Deny, "secret/#"), rule(Permission::Allow, "#")]);
    let entry = |p: Arc<dyn AclProvider>| AclEntry::new(p, TIMEOUT, OnError::Deny);
    let files = AclChain::new("c", vec![entry(Arc::new(rules))], Permission::Deny, DenyAction::Ignore);
    let f = |s: &str| SubscriptionFilter::parse(s).expect("filter");
    let c = client(false);
    for yes in ["#", "+/x", "secret/+", "$share/g/#"] {
        assert!(files.delivery_check(&c, &f(yes)), "{yes}");
    }
    for no in ["public/#", "public/x", "$SYS/#", "$share/g/public/+"] {
        assert!(!files.delivery_check(&c, &f(no)), "{no}");
    }
    assert!(!files.delivery_check(&client(true), &f("#")), "superusers bypass the ACL");

    // emqttd's defaults deny only `$SYS/#` and the literals `#` / `+/#`:
    // no subscription they grant needs a check.
    let defaults = StaticRules::new("defaults", default_rules());
    let builtin = AclChain::new("d", vec![entry(Arc::new(defaults))], Permission::Deny, DenyAction::Ignore);
    for no in ["#", "+/#", "a/#", "+/x"] {
        assert!(!builtin.delivery_check(&c, &f(no)), "{no}");
    }

    // A provider asked per action: every wildcard filter, no literal one.
    let backend =
        AclChain::new("b", vec![entry(Scripted::new("sql", Act::Allow))], Permission::Deny, DenyAction::Ignore);
    assert!(backend.delivery_check(&c, &f("a/+")));
    assert!(backend.delivery_check(&c, &f("#")));
    assert!(!backend.delivery_check(&c, &f("a/b")));
}
