//! Differential property test of the subject encoding (issue 19): on random
//! topics and filters, MQTT matching (`TopicFilter::matches` and the core
//! router, `$` rules included) and NATS subject matching of the encoded
//! subjects agree; decoding inverts encoding; every subject is a valid NATS
//! subject. The NATS matcher below follows the documented semantics: `*`
//! matches exactly one token, `>` (last only) one or more tokens.
//!
//! Generators are biased towards matches: topics and filters draw their
//! levels from one small alphabet (with empty levels, `$`-prefixed levels,
//! non-ASCII UTF-8, `=`, `.`, `*`, `>` and look-alikes of escapes such as
//! `=2E`), and half of the filters are derived from the topic itself by
//! replacing levels with `+` or cutting it with `#`.

use portcullis_cluster::subject::{
    decode_subject, filter_subjects, subscription, topic_subject, topic_subject_len, Prefix,
};
use portcullis_core::codec::types::SubscriptionOptions;
use portcullis_core::router::{Router, Subscriber};
use portcullis_core::settings::SharedStrategy;
use portcullis_core::topic::{SubscriptionFilter, TopicFilter, TopicName};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Levels topics and filters share, so that literal levels often coincide.
const LEVELS: &[&str] = &[
    "",
    "a",
    "b",
    "ab",
    "A",
    "$",
    "$SYS",
    "$a",
    "=",
    "==",
    "=2E",
    "=3D",
    ".",
    "a.b",
    "..",
    "*",
    ">",
    " ",
    "-_",
    "\u{e9}",
    "caf\u{e9}",
    "\u{1F600}",
    "=C3=A9",
    "x=y",
];

/// A topic: 1–5 levels from [`LEVELS`] (`$` levels anywhere, first included).
fn topic_levels() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(LEVELS), 1..=5)
}

/// One filter level: a literal from [`LEVELS`] or `+`.
fn filter_level() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => prop::sample::select(LEVELS), 1 => Just("+")]
}

/// How a filter is made from the topic (half the cases) or from scratch.
#[derive(Debug, Clone)]
enum FilterPlan {
    /// Levels drawn independently, optionally ending in `#`.
    Free(Vec<&'static str>, bool),
    /// The topic's levels, some replaced by `+` (by mask), cut after `keep`
    /// levels and ended with `#` when `hash`, or one level changed.
    FromTopic { plus_mask: u8, keep: usize, hash: bool, change: Option<(usize, &'static str)> },
}

fn filter_plan() -> impl Strategy<Value = FilterPlan> {
    prop_oneof![
        (prop::collection::vec(filter_level(), 0..=5), any::<bool>()).prop_map(|(l, h)| FilterPlan::Free(l, h)),
        (any::<u8>(), 0usize..=6, any::<bool>(), prop::option::of((0usize..5, filter_level())))
            .prop_map(|(plus_mask, keep, hash, change)| FilterPlan::FromTopic { plus_mask, keep, hash, change }),
    ]
}

fn build_filter(plan: &FilterPlan, topic: &[&'static str]) -> Option<String> {
    let mut levels: Vec<&str> = match plan {
        FilterPlan::Free(l, hash) => {
            let mut l = l.clone();
            if *hash {
                l.push("#");
            }
            l
        }
        FilterPlan::FromTopic { plus_mask, keep, hash, change } => {
            let mut l: Vec<&str> =
                topic.iter().enumerate().map(|(i, lv)| if plus_mask >> i & 1 == 1 { "+" } else { *lv }).collect();
            l.truncate(*keep);
            if let Some((i, lv)) = change {
                if let Some(slot) = l.get_mut(*i) {
                    *slot = lv;
                }
            }
            if *hash {
                l.push("#");
            }
            l
        }
    };
    if levels.is_empty() {
        return None;
    }
    let filter = std::mem::take(&mut levels).join("/");
    TopicFilter::new(&filter).ok().map(|_| filter)
}

/// NATS subject matching: `*` one token, `>` one or more trailing tokens.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// nats-server's `isValidSubject` (server/sublist.go): non-empty tokens, no
/// whitespace, nothing after `>`; `literal` also refuses wildcards.
fn valid_nats_subject(subject: &str, literal: bool) -> bool {
    let mut after_fwc = false;
    for token in subject.split('.') {
        if token.is_empty() || after_fwc || token.contains([' ', '\t', '\n', '\r', '\x0c']) {
            return false;
        }
        match token {
            ">" if literal => return false,
            ">" => after_fwc = true,
            "*" if literal => return false,
            _ => {}
        }
        if token.len() > 1 && token.contains(['*', '>']) {
            return false; // legal for NATS, but our encoding never makes it
        }
    }
    !subject.is_empty()
}

/// The core router's answer for one subscription.
fn router_matches(sub: &SubscriptionFilter, topic: &TopicName) -> bool {
    let router: Router<()> = Router::new(SharedStrategy::default());
    let subscriber = Subscriber {
        client_id: "c".into(),
        options: SubscriptionOptions::default(),
        subscription_id: None,
        check: false,
        handle: (),
    };
    let _ = router.subscribe(sub, subscriber);
    let mut out = Vec::new();
    let _ = router.matches(topic, &mut out);
    !out.is_empty()
}

fn check(prefix: &Prefix, levels: &[&'static str], plan: &FilterPlan, shared: bool, use_router: bool) {
    let topic_str = levels.join("/");
    let Ok(topic) = TopicName::new(&topic_str) else {
        return; // a level alphabet without + # NUL makes this unreachable
    };
    let subject = topic_subject(prefix, &topic);
    assert!(valid_nats_subject(&subject, true), "invalid subject {subject:?}");
    assert_eq!(subject.len(), topic_subject_len(prefix, &topic));
    assert_eq!(decode_subject(prefix, &subject).as_ref(), Ok(&topic), "roundtrip of {topic_str:?}");

    let Some(filter_str) = build_filter(plan, levels) else {
        return;
    };
    let raw = if shared { format!("$share/g/{filter_str}") } else { filter_str.clone() };
    let sub = SubscriptionFilter::parse(&raw).expect("valid filter");
    let mqtt = sub.filter.matches(&topic);
    if use_router {
        assert_eq!(router_matches(&sub, &topic), mqtt, "router vs TopicFilter: {raw:?} on {topic_str:?}");
    }
    let nats = subscription(prefix, &sub);
    assert_eq!(nats.subjects, filter_subjects(prefix, &sub.filter));
    assert_eq!(nats.queue.is_some(), shared);
    for s in &nats.subjects {
        assert!(valid_nats_subject(s, false), "invalid filter subject {s:?}");
    }
    let hits = nats.subjects.iter().filter(|s| nats_matches(s, &subject)).count();
    assert!(hits <= 1, "{raw:?} reaches {topic_str:?} through {hits} subjects: duplicate delivery");
    assert_eq!(
        hits == 1,
        mqtt,
        "MQTT says {mqtt} for {raw:?} on {topic_str:?}; subjects {:?} vs {subject:?}",
        nats.subjects
    );
}

fn cases(n: u32, use_router: bool) {
    let prefix = Prefix::new("pc.t1").expect("valid prefix");
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let strategy = (topic_levels(), filter_plan(), any::<bool>());
    let counted = std::cell::Cell::new((0u32, 0u32));
    runner
        .run(&strategy, |(topic, plan, shared)| {
            check(&prefix, &topic, &plan, shared, use_router);
            let t = topic.join("/");
            let (m, d) = counted.get();
            let hit = build_filter(&plan, &topic)
                .zip(TopicName::new(&t).ok())
                .is_some_and(|(f, t)| TopicFilter::new(&f).is_ok_and(|f| f.matches(&t)));
            counted.set((m + u32::from(hit), d + u32::from(t.starts_with('$'))));
            Ok(())
        })
        .expect("no counterexample");
    let (matched, dollar) = counted.get();
    // The bias works: a good share of the cases match, and $ topics occur.
    assert!(matched > n / 5, "only {matched} of {n} cases matched");
    assert!(dollar > n / 20, "only {dollar} of {n} topics start with $");
    eprintln!("{n} cases: {matched} matching, {dollar} $ topics");
}

/// 100,000 cases against `TopicFilter::matches`, the encoded subjects and
/// the roundtrip (issue 19's differential test).
#[test]
fn mqtt_and_nats_matching_agree_on_100k_cases() {
    cases(100_000, false);
}

/// Fewer cases with the core router as a second oracle (it builds a router
/// per case, so it is slower).
#[test]
fn router_agrees_too() {
    cases(10_000, true);
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any UTF-8 topic (printable or not, any level count) survives the
    /// roundtrip and encodes to a valid literal subject.
    #[test]
    fn any_topic_roundtrips(s in "[^+#\u{0}]{1,40}") {
        let prefix = Prefix::default();
        let topic = TopicName::new(&s).unwrap();
        let subject = topic_subject(&prefix, &topic);
        prop_assert!(valid_nats_subject(&subject, true), "{subject:?}");
        prop_assert_eq!(decode_subject(&prefix, &subject), Ok(topic));
    }

    /// Decoding never panics on arbitrary input after the prefix.
    #[test]
    fn decoding_garbage_does_not_panic(s in ".{0,40}") {
        let prefix = Prefix::default();
        let _ = decode_subject(&prefix, &format!("portcullis.{s}"));
        let _ = decode_subject(&prefix, &s);
    }
}
