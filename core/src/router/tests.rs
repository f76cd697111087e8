use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::codec::types::QoS;
use crate::topic::{TopicFilter, QUEUE_GROUP};

fn filter(s: &str) -> SubscriptionFilter {
    SubscriptionFilter::parse(s).expect("valid filter")
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("valid topic")
}

/// One `Arc<str>` per client name, as the broker has one per session
/// (`collapse` groups a client's routes by that allocation).
fn client_arc(client: &str) -> Arc<str> {
    thread_local! {
        static IDS: std::cell::RefCell<std::collections::HashMap<String, Arc<str>>> = Default::default();
    }
    IDS.with(|ids| Arc::clone(ids.borrow_mut().entry(client.to_string()).or_insert_with(|| Arc::from(client))))
}

fn sub(client: &str) -> Subscriber<u32> {
    Subscriber {
        client_id: client_arc(client),
        options: SubscriptionOptions::default(),
        subscription_id: None,
        check: false,
        handle: 0,
    }
}

fn sub_with(client: &str, qos: QoS, id: Option<u32>, no_local: bool) -> Subscriber<u32> {
    let mut s = sub(client);
    s.options.qos = qos;
    s.options.no_local = no_local;
    s.subscription_id = id;
    s
}

fn routes<T: Clone + Send + Sync>(router: &Router<T>, t: &str) -> Vec<Route<T>> {
    routes_and_clients(router, t).0
}

fn routes_and_clients<T: Clone + Send + Sync>(router: &Router<T>, t: &str) -> (Vec<Route<T>>, Clients) {
    let mut out = Vec::new();
    let clients = router.matches(&topic(t), &mut out);
    (out, clients)
}

/// Sorted client ids of the non-shared routes.
fn plain_clients<T: Clone + Send + Sync>(router: &Router<T>, t: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        routes(router, t).into_iter().filter(|r| !r.shared).map(|r| r.subscriber.client_id.to_string()).collect();
    ids.sort();
    ids
}

/// The client id of each shared route of one publish.
fn shared_clients(router: &Router<u32>, t: &str) -> Vec<String> {
    routes(router, t).into_iter().filter(|r| r.shared).map(|r| r.subscriber.client_id.to_string()).collect()
}

/// A router where each filter is subscribed by a client named like it.
fn router_of(filters: &[&str]) -> Router<u32> {
    let router = Router::new(SharedStrategy::RoundRobin);
    for f in filters {
        assert!(router.subscribe(&filter(f), sub(f)));
    }
    router
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---- matching ----

#[test]
fn spec_multi_level_examples() {
    let r = router_of(&["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"]);
    assert_eq!(
        plain_clients(&r, "sport/tennis/player1"),
        sorted(&["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"])
    );
    assert_eq!(
        plain_clients(&r, "sport/tennis/player1/ranking"),
        sorted(&["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"])
    );
    assert_eq!(plain_clients(&r, "sport/tennis/player1/score/wimbledon").len(), 4);
    // `#` also matches the parent level.
    assert_eq!(plain_clients(&r, "sport"), sorted(&["sport/#", "#"]));
    assert_eq!(plain_clients(&r, "sport/tennis"), sorted(&["sport/#", "#", "sport/tennis/#"]));
    assert_eq!(plain_clients(&r, "other"), sorted(&["#"]));
}

#[test]
fn spec_single_level_examples() {
    let r = router_of(&["sport/tennis/+", "sport/+", "+/+", "/+", "+", "+/tennis/#"]);
    assert_eq!(plain_clients(&r, "sport/tennis/player1"), sorted(&["sport/tennis/+", "+/tennis/#"]));
    assert_eq!(plain_clients(&r, "sport/tennis/player2"), sorted(&["sport/tennis/+", "+/tennis/#"]));
    assert_eq!(plain_clients(&r, "sport/tennis/player1/ranking"), sorted(&["+/tennis/#"]));
    assert_eq!(plain_clients(&r, "sport"), sorted(&["+"]));
    assert_eq!(plain_clients(&r, "sport/"), sorted(&["sport/+", "+/+"]));
    assert_eq!(plain_clients(&r, "/finance"), sorted(&["+/+", "/+"]));
    assert_eq!(plain_clients(&r, "sport/tennis"), sorted(&["sport/+", "+/+", "+/tennis/#"]));
}

#[test]
fn empty_levels_are_levels() {
    let r = router_of(&["/", "//", "+/", "/#", "a//b", "a/+/b", "+/+/+"]);
    assert_eq!(plain_clients(&r, "/"), sorted(&["/", "+/", "/#"]));
    assert_eq!(plain_clients(&r, "//"), sorted(&["//", "/#", "+/+/+"]));
    assert_eq!(plain_clients(&r, "a//b"), sorted(&["a//b", "a/+/b", "+/+/+"]));
    assert_eq!(plain_clients(&r, "a/x/b"), sorted(&["a/+/b", "+/+/+"]));
    assert_eq!(plain_clients(&r, "/a"), sorted(&["/#"]));
    assert!(plain_clients(&r, "a").is_empty());
}

#[test]
fn exact_filters_match_only_themselves() {
    let r = router_of(&["a/b", "a/b/c", "a"]);
    assert_eq!(plain_clients(&r, "a/b"), sorted(&["a/b"]));
    assert_eq!(plain_clients(&r, "a"), sorted(&["a"]));
    assert!(plain_clients(&r, "a/b/c/d").is_empty());
    assert!(plain_clients(&r, "b").is_empty());
    assert!(plain_clients(&r, "A/B").is_empty());
}

#[test]
fn dollar_topics_skip_leading_wildcards() {
    let r = router_of(&["#", "+", "+/monitor/Clients", "+/+/+", "$SYS/#", "$SYS/+/Clients", "$SYS"]);
    assert_eq!(plain_clients(&r, "$SYS/monitor/Clients"), sorted(&["$SYS/#", "$SYS/+/Clients"]));
    assert_eq!(plain_clients(&r, "$SYS"), sorted(&["$SYS/#", "$SYS"]));
    assert!(plain_clients(&r, "$other/x").is_empty());
    // A `$` further down is an ordinary character.
    assert_eq!(plain_clients(&r, "a/$SYS/Clients"), sorted(&["#", "+/+/+"]));
    // Shared leading wildcards are excluded too.
    assert!(r.subscribe(&filter("$share/g/#"), sub("g1")));
    assert!(shared_clients(&r, "$SYS/x").is_empty());
    assert_eq!(shared_clients(&r, "x"), vec!["g1".to_string()]);
}

/// The trie agrees with the plain one-filter matcher on random filters and
/// topics, also after random unsubscribes.
#[test]
fn agrees_with_filter_matches() {
    let mut rng = StdRng::seed_from_u64(7);
    let words = ["a", "b", "", "$s"];
    let gen_topic = |rng: &mut StdRng| {
        let n = rng.gen_range(1..=4);
        let t = (0..n).map(|_| words[rng.gen_range(0..words.len())]).collect::<Vec<_>>().join("/");
        if t.is_empty() {
            "a".to_string()
        } else {
            t
        }
    };
    let gen_filter = |rng: &mut StdRng| {
        let n = rng.gen_range(1..=4);
        let mut levels: Vec<&str> = (0..n)
            .map(|_| match rng.gen_range(0..6) {
                0 => "+",
                i => words[i % words.len()],
            })
            .collect();
        if rng.gen_bool(0.3) {
            levels.push("#");
        }
        let f = levels.join("/");
        if f.is_empty() {
            "+".to_string()
        } else {
            f
        }
    };
    let router = Router::new(SharedStrategy::RoundRobin);
    let mut live: BTreeMap<String, TopicFilter> = BTreeMap::new();
    for i in 0..400 {
        let f = gen_filter(&mut rng);
        let client = format!("c{i}");
        router.subscribe(&filter(&f), sub(&client));
        live.insert(client, TopicFilter::new(&f).expect("valid filter"));
    }
    let check = |router: &Router<u32>, live: &BTreeMap<String, TopicFilter>, rng: &mut StdRng| {
        for _ in 0..300 {
            let t = gen_topic(rng);
            let name = topic(&t);
            let expected: Vec<String> = live.iter().filter(|(_, f)| f.matches(&name)).map(|(c, _)| c.clone()).collect();
            assert_eq!(plain_clients(router, &t), expected, "topic {t:?}");
        }
    };
    check(&router, &live, &mut rng);
    let gone: Vec<String> = live.keys().filter(|_| rng.gen_bool(0.5)).cloned().collect();
    for client in gone {
        let f = live.remove(&client).expect("live");
        assert!(router.unsubscribe(&filter(f.as_str()), &client));
    }
    check(&router, &live, &mut rng);
    assert_eq!(router.subscription_count(), live.len());
}

// ---- subscribe / unsubscribe ----

#[test]
fn resubscribe_replaces() {
    let r = Router::new(SharedStrategy::RoundRobin);
    assert!(r.subscribe(&filter("a/+"), sub_with("c", QoS::AtMostOnce, Some(1), false)));
    let mut replaced = sub_with("c", QoS::ExactlyOnce, Some(2), true);
    replaced.handle = 9;
    assert!(!r.subscribe(&filter("a/+"), replaced));
    assert_eq!((r.topic_count(), r.subscription_count()), (1, 1));
    let got = routes(&r, "a/x");
    assert_eq!(got.len(), 1);
    let s = &got[0].subscriber;
    assert_eq!((s.options.qos, s.subscription_id, s.options.no_local, s.handle), (QoS::ExactlyOnce, Some(2), true, 9));

    // Another client, or the same client shared, is a new subscription.
    assert!(r.subscribe(&filter("a/+"), sub("d")));
    assert!(r.subscribe(&filter("$share/g/a/+"), sub("c")));
    assert!(!r.subscribe(&filter("$share/g/a/+"), sub("c")));
    assert!(r.subscribe(&filter("$share/h/a/+"), sub("c")));
    assert_eq!((r.topic_count(), r.subscription_count()), (1, 4));
}

#[test]
fn unsubscribe_prunes_everything() {
    let filters = ["a/b/c", "a/b", "a/+/c/#", "#", "+", "/", "x/y/z/w", "$SYS/#", "a/b/c/d/e/f"];
    let r = router_of(&filters);
    assert!(r.subscribe(&filter("$share/g/a/b/c"), sub("s1")));
    assert!(r.subscribe(&filter("$queue/a/b/c"), sub("s2")));
    assert_eq!(r.topic_count(), filters.len());
    assert_eq!(r.subscription_count(), filters.len() + 2);

    assert!(!r.unsubscribe(&filter("a/b/c"), "nobody"));
    assert!(!r.unsubscribe(&filter("a/b/x"), "a/b/x"));
    assert!(!r.unsubscribe(&filter("$share/g/a/b/c"), "a/b/c"));
    assert!(!r.unsubscribe(&filter("$share/other/a/b/c"), "s1"));

    // Pruning only removes what nothing else needs.
    assert!(r.unsubscribe(&filter("a/b/c/d/e/f"), "a/b/c/d/e/f"));
    assert_eq!(plain_clients(&r, "a/b/c"), sorted(&["a/b/c", "a/+/c/#", "#"]));
    assert!(r.unsubscribe(&filter("a/b/c"), "a/b/c"));
    assert_eq!(r.topic_count(), filters.len() - 1, "shared subscribers keep a/b/c");
    assert_eq!(plain_clients(&r, "a/b"), sorted(&["a/b", "#"]));

    for f in filters.iter().filter(|f| !f.starts_with("a/b/c")) {
        assert!(r.unsubscribe(&filter(f), f), "{f}");
        assert!(!r.unsubscribe(&filter(f), f), "{f} twice");
    }
    assert!(r.unsubscribe(&filter("$share/g/a/b/c"), "s1"));
    assert!(r.unsubscribe(&filter("$queue/a/b/c"), "s2"));
    assert_eq!((r.topic_count(), r.subscription_count()), (0, 0));
    assert_eq!(r.node_count(), 0);
    assert!(r.is_pristine());
    assert!(routes(&r, "a/b/c").is_empty());
}

#[test]
fn pruning_keeps_shared_prefixes() {
    let r = router_of(&["a/b", "a/b/c/d", "a/+/c"]);
    let before = r.node_count();
    assert!(r.unsubscribe(&filter("a/b/c/d"), "a/b/c/d"));
    // `a/b/c` and `a/b/c/d` go; `a`, `a/b`, `a/+`, `a/+/c` stay.
    assert_eq!(before - r.node_count(), 2);
    assert!(r.unsubscribe(&filter("a/+/c"), "a/+/c"));
    assert_eq!(r.node_count(), 2);
    assert_eq!(plain_clients(&r, "a/b"), sorted(&["a/b"]));
}

#[test]
fn churn_does_not_grow() {
    let r = Router::new(SharedStrategy::RoundRobin);
    for round in 0..50 {
        for i in 0..20 {
            let f = filter(&format!("churn/{round}/{i}/+/x"));
            assert!(r.subscribe(&f, sub("c")));
        }
        for i in 0..20 {
            let f = filter(&format!("churn/{round}/{i}/+/x"));
            assert!(r.unsubscribe(&f, "c"));
        }
        assert_eq!(r.node_count(), 0);
    }
    assert!(r.is_pristine());
}

#[test]
fn one_client_ten_thousand_subscriptions() {
    let r = Router::new(SharedStrategy::RoundRobin);
    for i in 0..10_000 {
        assert!(r.subscribe(&filter(&format!("dev/{}/{i}/#", i % 100)), sub("big")));
    }
    assert_eq!((r.topic_count(), r.subscription_count()), (10_000, 10_000));
    assert_eq!(plain_clients(&r, "dev/42/4242/temp"), vec!["big".to_string()]);
    assert!(plain_clients(&r, "dev/42/4243").is_empty());
    for i in 0..10_000 {
        assert!(r.unsubscribe(&filter(&format!("dev/{}/{i}/#", i % 100)), "big"));
    }
    assert_eq!((r.topic_count(), r.subscription_count()), (0, 0));
    assert!(r.is_pristine());
}

#[test]
fn many_clients_on_one_filter() {
    let r = Router::new(SharedStrategy::RoundRobin);
    let f = filter("fan/out");
    for i in 0..1_000 {
        assert!(r.subscribe(&f, sub(&format!("c{i}"))));
    }
    for i in (0..1_000).step_by(3) {
        assert!(!r.subscribe(&f, sub_with(&format!("c{i}"), QoS::AtLeastOnce, None, false)));
    }
    for i in (0..1_000).step_by(2) {
        assert!(r.unsubscribe(&f, &format!("c{i}")));
    }
    let mut expected: Vec<String> = (0..1_000).filter(|i| i % 2 == 1).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(plain_clients(&r, "fan/out"), expected);
    let qos1 = routes(&r, "fan/out").into_iter().filter(|r| r.subscriber.options.qos == QoS::AtLeastOnce).count();
    assert_eq!(qos1, (0..1_000).filter(|i| i % 2 == 1 && i % 3 == 0).count());
    assert_eq!((r.topic_count(), r.subscription_count()), (1, 500));
    for i in (1..1_000).step_by(2) {
        assert!(r.unsubscribe(&f, &format!("c{i}")));
    }
    assert!(r.is_pristine());
}

#[test]
fn very_deep_filters_do_not_overflow_the_stack() {
    let deep = "l/".repeat(30_000) + "end";
    let r = Router::new(SharedStrategy::RoundRobin);
    assert!(r.subscribe(&filter(&deep), sub("deep")));
    assert!(r.subscribe(&filter(&("l/".repeat(29_999) + "+/#")), sub("wild")));
    assert_eq!(plain_clients(&r, &deep), sorted(&["deep", "wild"]));
    assert!(r.unsubscribe(&filter(&deep), "deep"));
    // Dropping a router that still holds a deep chain is iterative too.
    drop(r);
}

// ---- shared subscriptions ----

fn group_router(strategy: SharedStrategy, members: &[&str]) -> Router<u32> {
    let r = Router::new(strategy);
    for m in members {
        assert!(r.subscribe(&filter("$share/g/jobs/+"), sub(m)));
    }
    r
}

#[test]
fn round_robin_cycles_in_order() {
    let r = group_router(SharedStrategy::RoundRobin, &["a", "b", "c"]);
    let picks: Vec<String> = (0..7).flat_map(|_| shared_clients(&r, "jobs/1")).collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c", "a"]);
    // After `a` was served, `b` leaves: the turn goes on with `c`.
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), "b"));
    let picks: Vec<String> = (0..4).flat_map(|_| shared_clients(&r, "jobs/1")).collect();
    assert_eq!(picks, ["c", "a", "c", "a"]);
    // A replaced member keeps its place.
    assert!(!r.subscribe(&filter("$share/g/jobs/+"), sub("a")));
    assert!(r.subscribe(&filter("$share/g/jobs/+"), sub("d")));
    let picks: Vec<String> = (0..3).flat_map(|_| shared_clients(&r, "jobs/1")).collect();
    assert_eq!(picks, ["c", "d", "a"]);
}

#[test]
fn round_robin_removing_the_last_served_member() {
    let r = group_router(SharedStrategy::RoundRobin, &["a", "b", "c"]);
    assert_eq!(shared_clients(&r, "jobs/1"), ["a"]);
    assert_eq!(shared_clients(&r, "jobs/1"), ["b"]);
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), "b"));
    assert_eq!(shared_clients(&r, "jobs/1"), ["c"]);
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), "c"));
    assert_eq!(shared_clients(&r, "jobs/1"), ["a"]);
}

#[test]
fn sticky_stays_until_the_member_leaves() {
    let r = group_router(SharedStrategy::Sticky, &["a", "b", "c", "d"]);
    let first = shared_clients(&r, "jobs/1");
    assert_eq!(first.len(), 1);
    let chosen = first[0].clone();
    for i in 0..50 {
        assert_eq!(shared_clients(&r, &format!("jobs/{i}")), std::slice::from_ref(&chosen));
    }
    // Another member leaving, or the chosen one resubscribing, changes nothing.
    let other = ["a", "b", "c", "d"].into_iter().find(|m| *m != chosen).unwrap_or("a");
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), other));
    assert!(!r.subscribe(&filter("$share/g/jobs/+"), sub(&chosen)));
    for _ in 0..20 {
        assert_eq!(shared_clients(&r, "jobs/1"), std::slice::from_ref(&chosen));
    }
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), &chosen));
    let next = shared_clients(&r, "jobs/1");
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], chosen);
    assert_ne!(next[0], other);
    for _ in 0..20 {
        assert_eq!(shared_clients(&r, "jobs/1"), next);
    }
}

#[test]
fn random_picks_only_members() {
    let members = ["a", "b", "c"];
    let r = group_router(SharedStrategy::Random, &members);
    let mut seen = BTreeSet::new();
    for _ in 0..300 {
        let picks = shared_clients(&r, "jobs/1");
        assert_eq!(picks.len(), 1);
        assert!(members.contains(&picks[0].as_str()));
        seen.insert(picks[0].clone());
    }
    assert_eq!(seen.len(), 3, "300 uniform picks of 3 reach every member");
}

#[test]
fn queue_is_one_group() {
    let r = Router::new(SharedStrategy::RoundRobin);
    for c in ["a", "b", "c"] {
        assert!(r.subscribe(&filter("$queue/q/+"), sub(c)));
    }
    // `$share/$queue/…` is the same group.
    assert!(!r.subscribe(&filter("$share/$queue/q/+"), sub("b")));
    assert_eq!(filter("$queue/q/+").share_group.as_deref(), Some(QUEUE_GROUP));
    let picks: Vec<String> = (0..6)
        .map(|_| {
            let got = routes(&r, "q/1");
            assert_eq!(got.len(), 1);
            assert!(got[0].shared);
            got[0].subscriber.client_id.to_string()
        })
        .collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn each_group_gets_one_copy() {
    let r = Router::new(SharedStrategy::RoundRobin);
    for (g, c) in [("g1", "a"), ("g1", "b"), ("g2", "c"), ("g2", "d"), ("g2", "e")] {
        assert!(r.subscribe(&filter(&format!("$share/{g}/t/#")), sub(c)));
    }
    for _ in 0..10 {
        let mut picks = shared_clients(&r, "t/x");
        picks.sort();
        assert_eq!(picks.len(), 2);
        assert!(["a", "b"].contains(&picks[0].as_str()), "{picks:?}");
        assert!(["c", "d", "e"].contains(&picks[1].as_str()), "{picks:?}");
    }
    // The same group on two matching filters is two shared subscriptions.
    assert!(r.subscribe(&filter("$share/g1/t/x"), sub("z")));
    assert_eq!(shared_clients(&r, "t/x").len(), 3);
}

#[test]
fn shared_and_plain_are_separate_copies() {
    let r = Router::new(SharedStrategy::RoundRobin);
    assert!(r.subscribe(&filter("t/+"), sub("a")));
    assert!(r.subscribe(&filter("$share/g/t/+"), sub("a")));
    let (got, clients) = routes_and_clients(&r, "t/1");
    assert_eq!(clients, Clients::Distinct, "one filter has plain subscribers");
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| &*r.subscriber.client_id == "a"));
    assert_eq!(got.iter().filter(|r| r.shared).count(), 1);
    let deliveries = collapse(got, clients);
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries.iter().filter(|d| d.shared).count(), 1);
}

#[test]
fn empty_group_is_removed() {
    let r = group_router(SharedStrategy::RoundRobin, &["a"]);
    assert!(r.unsubscribe(&filter("$share/g/jobs/+"), "a"));
    assert!(shared_clients(&r, "jobs/1").is_empty());
    assert!(r.is_pristine());
    assert!(r.subscribe(&filter("$share/g/jobs/+"), sub("b")));
    assert_eq!(shared_clients(&r, "jobs/1"), ["b"]);
}

// ---- collapse ----

fn route(s: Subscriber<u32>, shared: bool) -> Route<u32> {
    Route { subscriber: s, shared }
}

#[test]
fn collapse_merges_per_client() {
    let mut rap = sub_with("a", QoS::AtMostOnce, Some(7), true);
    rap.options.retain_as_published = true;
    let deliveries = collapse(
        vec![
            route(sub_with("a", QoS::AtLeastOnce, Some(3), true), false),
            route(sub_with("b", QoS::AtMostOnce, None, true), false),
            route(rap, false),
            route(sub_with("a", QoS::ExactlyOnce, None, false), false),
            route(sub_with("a", QoS::AtMostOnce, Some(3), true), false),
            route(sub_with("a", QoS::AtMostOnce, Some(1), false), true),
        ],
        Clients::MayRepeat,
    );
    assert_eq!(deliveries.len(), 3);
    let a: Vec<&Delivery<u32>> = deliveries.iter().filter(|d| &*d.client_id == "a").collect();
    let plain = a.iter().find(|d| !d.shared).expect("merged copy");
    assert_eq!(plain.qos, QoS::ExactlyOnce);
    assert_eq!(plain.subscription_ids, [3, 7]);
    assert!(plain.retain_as_published);
    assert!(!plain.no_local, "one subscription without No Local");
    let shared = a.iter().find(|d| d.shared).expect("shared copy");
    assert_eq!((shared.qos, shared.subscription_ids.as_slice()), (QoS::AtMostOnce, &[1][..]));
    let b = deliveries.iter().find(|d| &*d.client_id == "b").expect("b");
    assert!(b.no_local);
    assert!(b.subscription_ids.is_empty());
    assert!(!b.retain_as_published);
}

/// The ACL delivery mark: a merged copy is checked only when every merged
/// subscription is marked (an unmarked one matching the topic means no
/// deny rule overlaps it, so none can deny this topic); shared and
/// single-route copies keep their own mark.
#[test]
fn collapse_checks_a_copy_only_when_every_merged_subscription_is_marked() {
    let marked = |client: &str| {
        let mut s = sub(client);
        s.check = true;
        s
    };
    let deliveries = collapse(
        vec![
            route(marked("a"), false),
            route(sub("a"), false),
            route(marked("b"), false),
            route(marked("b"), false),
            route(sub("c"), false),
            route(marked("c"), true),
        ],
        Clients::MayRepeat,
    );
    let check = |client: &str, shared: bool| {
        deliveries.iter().find(|d| &*d.client_id == client && d.shared == shared).expect("copy").check
    };
    assert!(!check("a", false), "one unmarked subscription: no check");
    assert!(check("b", false), "every subscription marked");
    assert!(!check("c", false));
    assert!(check("c", true), "the shared copy keeps its own mark");
    let one = collapse(vec![route(marked("d"), false)], Clients::Distinct);
    assert!(one[0].check);
}

#[test]
fn matches_tells_whether_a_client_may_repeat() {
    let r = Router::new(SharedStrategy::RoundRobin);
    assert_eq!(routes_and_clients(&r, "a/b").1, Clients::Distinct, "nothing matched");
    for c in ["x", "y", "z"] {
        assert!(r.subscribe(&filter("a/b"), sub(c)));
    }
    assert!(r.subscribe(&filter("$share/g/a/+"), sub("x")));
    assert!(r.subscribe(&filter("$share/h/#"), sub("y")));
    let (got, clients) = routes_and_clients(&r, "a/b");
    assert_eq!((got.len(), clients), (5, Clients::Distinct), "one plain filter, shared ones beside it");
    // A second filter with plain subscribers, in the other trie (wildcard
    // first level) and in the same one.
    assert!(r.subscribe(&filter("+/b"), sub("x")));
    let (got, clients) = routes_and_clients(&r, "a/b");
    assert_eq!((got.len(), clients), (6, Clients::MayRepeat));
    let mut plain: Vec<String> =
        collapse(got, clients).iter().filter(|d| !d.shared).map(|d| d.client_id.to_string()).collect();
    plain.sort();
    assert_eq!(plain, ["x", "y", "z"], "x's two subscriptions give one copy");
    assert!(r.unsubscribe(&filter("+/b"), "x"));
    assert!(r.subscribe(&filter("a/#"), sub("w")));
    assert_eq!(routes_and_clients(&r, "a/b").1, Clients::MayRepeat);
    assert_eq!(routes_and_clients(&r, "a/c").1, Clients::Distinct, "only a/# matches a/c");
}

#[test]
fn collapse_keeps_two_sessions_of_one_client_id_apart() {
    // An ended session's route beside its successor's: each session gets
    // its own copy (the successor's must not be folded into the other).
    let mut old = sub_with("a", QoS::AtLeastOnce, None, false);
    old.client_id = Arc::from("a");
    old.handle = 1;
    let mut new = sub_with("a", QoS::AtMostOnce, None, false);
    new.handle = 2;
    let mut deliveries = collapse(vec![route(old, false), route(new, false)], Clients::MayRepeat);
    deliveries.sort_by_key(|d| d.handle);
    let got: Vec<(u32, QoS)> = deliveries.iter().map(|d| (d.handle, d.qos)).collect();
    assert_eq!(got, [(1, QoS::AtLeastOnce), (2, QoS::AtMostOnce)]);
}

#[test]
fn collapse_keeps_every_shared_route() {
    let deliveries = collapse(
        vec![
            route(sub_with("a", QoS::AtLeastOnce, None, false), true),
            route(sub_with("a", QoS::AtMostOnce, None, false), true),
        ],
        Clients::MayRepeat,
    );
    assert_eq!(deliveries.len(), 2);
    assert!(collapse::<u32>(Vec::new(), Clients::MayRepeat).is_empty());
    assert!(collapse::<u32>(Vec::new(), Clients::Distinct).is_empty());
}

#[test]
fn remove_no_local_drops_only_the_publishers_own() {
    let mut got = vec![
        route(sub_with("pub", QoS::ExactlyOnce, Some(1), true), false),
        route(sub_with("pub", QoS::AtMostOnce, Some(2), false), false),
        route(sub_with("other", QoS::AtLeastOnce, Some(3), true), false),
        route(sub_with("pub", QoS::AtLeastOnce, None, true), true),
    ];
    let mut untouched = got.clone();
    remove_no_local(&mut untouched, None);
    assert_eq!(untouched.len(), 4);
    remove_no_local(&mut got, Some("pub"));
    assert_eq!(got.len(), 3);
    let deliveries = collapse(got, Clients::MayRepeat);
    let own = deliveries.iter().find(|d| &*d.client_id == "pub" && !d.shared).expect("own copy");
    assert_eq!((own.qos, own.subscription_ids.as_slice(), own.no_local), (QoS::AtMostOnce, &[2][..], false));
    assert_eq!(deliveries.len(), 3);
}

// ---- concurrency ----

#[test]
fn concurrent_subscribe_and_match() {
    let r: Router<u32> = Router::new(SharedStrategy::RoundRobin);
    assert!(r.subscribe(&filter("steady/#"), sub("steady")));
    assert!(r.subscribe(&filter("$share/g/steady/+"), sub("s1")));
    assert!(r.subscribe(&filter("$share/g/steady/+"), sub("s2")));
    std::thread::scope(|scope| {
        for w in 0..2 {
            let r = &r;
            scope.spawn(move || {
                for i in 0..2_000 {
                    let f = filter(&format!("steady/{}/{w}", i % 50));
                    let client = format!("w{w}-{i}");
                    assert!(r.subscribe(&f, sub(&client)));
                    assert!(r.unsubscribe(&f, &client));
                }
            });
        }
        for _ in 0..2 {
            let r = &r;
            scope.spawn(move || {
                let mut out = Vec::new();
                for i in 0..2_000 {
                    out.clear();
                    let _ = r.matches(&topic(&format!("steady/{}", i % 50)), &mut out);
                    assert_eq!(out.iter().filter(|r| !r.shared).count(), 1);
                    assert_eq!(out.iter().filter(|r| r.shared).count(), 1);
                }
            });
        }
    });
    assert_eq!((r.topic_count(), r.subscription_count()), (2, 3));
    assert_eq!(r.node_count(), 2);
}

#[test]
fn router_is_send_and_sync() {
    fn check<S: Send + Sync>() {}
    check::<Router<Arc<str>>>();
    check::<Route<Arc<str>>>();
    check::<Delivery<Arc<str>>>();
}

#[test]
fn dollar_subscriptions_are_counted() {
    let router = Router::new(SharedStrategy::RoundRobin);
    assert!(!router.has_dollar_subscriptions());
    assert!(router.subscribe(&filter("#"), sub("a")));
    assert!(!router.has_dollar_subscriptions(), "# never matches $ topics");
    assert!(router.subscribe(&filter("$SYS/#"), sub("a")));
    assert!(!router.subscribe(&filter("$SYS/#"), sub("a")), "a replaced subscription is not counted twice");
    assert!(router.has_dollar_subscriptions());
    assert!(router.unsubscribe(&filter("$SYS/#"), "a"));
    assert!(!router.has_dollar_subscriptions());
}

/// The first/last calls the remote routing seam follows distinct filters
/// with: per (no group, filter) and per (group, filter), at the 0 ↔ 1
/// edges only, and never for a failed or replacing (un)subscribe.
#[test]
fn first_and_last_of_each_key_are_notified() {
    let r = Router::new(SharedStrategy::RoundRobin);
    let calls = std::cell::RefCell::new(Vec::new());
    let add = |f: &str, c: &str| {
        r.subscribe_notify(&filter(f), sub(c), || calls.borrow_mut().push(format!("+{f}")));
    };
    let remove = |f: &str, c: &str| {
        r.unsubscribe_notify(&filter(f), c, || calls.borrow_mut().push(format!("-{f}")));
    };
    add("a/+", "x");
    add("a/+", "y");
    add("a/+", "x");
    add("$share/g/a/+", "x");
    add("$share/g/a/+", "y");
    add("$share/h/a/+", "y");
    assert_eq!(*calls.borrow(), ["+a/+", "+$share/g/a/+", "+$share/h/a/+"]);
    calls.borrow_mut().clear();
    remove("a/+", "nobody");
    remove("a/+", "x");
    remove("$share/g/a/+", "x");
    remove("$share/h/a/+", "y");
    assert_eq!(*calls.borrow(), ["-$share/h/a/+"]);
    remove("a/+", "y");
    remove("$share/g/a/+", "y");
    assert_eq!(*calls.borrow(), ["-$share/h/a/+", "-a/+", "-$share/g/a/+"]);
    assert!(r.is_pristine());
}

#[test]
fn plain_matching_leaves_groups_alone_and_a_group_can_be_asked_directly() {
    let r = Router::new(SharedStrategy::RoundRobin);
    r.subscribe(&filter("a/#"), sub("p"));
    r.subscribe(&filter("$share/g/a/+"), sub("m1"));
    r.subscribe(&filter("$share/g/a/+"), sub("m2"));
    let mut out = Vec::new();
    let _ = r.matches_plain(&topic("a/1"), &mut out);
    assert_eq!(out.len(), 1);
    assert!(!out[0].shared);
    // No turn was spent by the plain match: round robin starts at m1.
    let picks: Vec<String> =
        (0..3).map(|_| r.pick_shared(&filter("$share/g/a/+")).unwrap().client_id.to_string()).collect();
    assert_eq!(picks, ["m1", "m2", "m1"]);
    assert!(r.pick_shared(&filter("$share/nope/a/+")).is_none());
    assert!(r.pick_shared(&filter("$share/g/a/#")).is_none(), "another filter");
    assert!(r.pick_shared(&filter("a/#")).is_none(), "not shared");
}
