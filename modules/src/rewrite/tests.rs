use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{
    Flow, OnMessagePublish, OnSubscribe, OnUnsubscribe, PublishFlow, PublishedMessage, Publisher, Subscription,
};
use portcullis_core::settings::BrokerSettings;
use portcullis_core::topic::{TopicFilter, TopicName};

use super::rule::{source_matches, Kind, Rewritten, Rules};
use super::{Rewrite, RewriteAction, RewriteConfig, RewriteRule, RewriteStats};

fn rule(action: RewriteAction, source: &str, re: &str, dest: &str) -> RewriteRule {
    RewriteRule { action, source_topic: source.into(), re: re.into(), dest_topic: dest.into() }
}

use RewriteAction::{All, Publish, Subscribe};

fn rules(r: Vec<RewriteRule>) -> Rules {
    Rules::build(&r).unwrap()
}

fn to(s: &str) -> Rewritten {
    Rewritten::To(s.to_string())
}

#[test]
fn parses_emqx_names_and_refuses_unknown_keys() {
    let c: RewriteConfig = toml::from_str(
        "enabled = true\nrules = [{ action = \"publish\", source_topic = \"x/#\", re = \"^x/y/(.+)$\", dest_topic = \"z/y/$1\" }]\n",
    )
    .unwrap();
    assert_eq!(c.rules, [rule(Publish, "x/#", "^x/y/(.+)$", "z/y/$1")]);
    assert!(c.validate().is_empty());
    let e = toml::from_str::<RewriteConfig>(
        "rules = [{ action = \"deliver\", source_topic = \"x\", re = \"x\", dest_topic = \"y\" }]\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant `deliver`"), "{e}");
    let e = toml::from_str::<RewriteConfig>("rules = [{ action = \"all\", source_topic = \"x\", re = \"x\" }]\n")
        .unwrap_err();
    assert!(e.to_string().contains("missing field `dest_topic`"), "{e}");
    assert!(!RewriteConfig::default().enabled);
}

#[test]
fn validation_names_the_field() {
    let c = RewriteConfig {
        enabled: true,
        rules: vec![
            rule(All, "x/#", "^x/(.+)$", "y/$1"),
            rule(All, "x/#/y", "x", "y"),
            rule(All, "$share/g/x", "x", "y"),
            rule(All, "x", "(unclosed", "y"),
            rule(All, "x", "^x/(a)$", "y/$2"),
            rule(Publish, "x", "x", "y/+"),
            rule(Subscribe, "x", "x", "y/#/z"),
            rule(Subscribe, "x", "x", "y/+/${clientid}"),
            rule(All, "x", "x", "y/${peer}"),
            rule(All, "x", "x", ""),
        ],
    };
    let got: Vec<(String, String)> = c.validate();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rewrite.rules[1].source_topic",
            "rewrite.rules[2].source_topic",
            "rewrite.rules[3].re",
            "rewrite.rules[4].dest_topic",
            "rewrite.rules[5].dest_topic",
            "rewrite.rules[6].dest_topic",
            "rewrite.rules[8].dest_topic",
            "rewrite.rules[9].dest_topic",
        ]
    );
    assert!(got[3].1.contains("names $2 but `re` has 1 capture group(s)"), "{got:?}");
    assert!(got[4].1.contains("not a valid topic name"), "{got:?}");
}

#[test]
fn source_is_matched_level_by_level_with_wildcards_as_plain_levels() {
    let f = |s: &str| TopicFilter::new(s).unwrap();
    assert!(source_matches(&f("x/#"), "x"));
    assert!(source_matches(&f("x/#"), "x/+"));
    assert!(source_matches(&f("x/+"), "x/#"));
    assert!(source_matches(&f("x/+/z"), "x/y/z"));
    assert!(!source_matches(&f("x/+/z"), "x/y"));
    assert!(!source_matches(&f("x/#"), "#"));
    assert!(!source_matches(&f("x/y"), "x/+"));
    assert!(!source_matches(&f("#"), "$SYS/x"));
    assert!(!source_matches(&f("+/x"), "$SYS/x"));
    assert!(source_matches(&f("$SYS/#"), "$SYS/x"));
}

/// The example of EMQX's documentation, with the rules in the order they
/// are tried (EMQX tries its list from the end).
#[test]
fn first_matching_source_decides_even_when_its_regex_fails() {
    let r = rules(vec![
        rule(All, "x/y/+", "^x/y/(\\d+)$", "z/y/$1"),
        rule(All, "x/#", "^x/y/(.+)$", "z/y/x/$1"),
        rule(All, "y/+/z/#", "^y/(.+)/z/(.+)$", "y/z/$2"),
    ]);
    let rw = |t: &str| r.rewrite(Kind::Subscribe, t, "c", None);
    assert_eq!(rw("y/def"), Rewritten::Unchanged);
    assert_eq!(rw("y/a/z/b"), to("y/z/b"));
    assert_eq!(rw("x/1/2"), Rewritten::Unchanged, "x/# decides; its regex fails");
    assert_eq!(rw("x/y/2"), to("z/y/2"));
    assert_eq!(rw("x/y/z"), Rewritten::Unchanged, "x/y/+ decides; x/# is not tried");
    assert_eq!(rw("x/y/z/w"), to("z/y/x/z/w"));
}

#[test]
fn actions_select_rules() {
    let r = rules(vec![rule(Publish, "p/#", "^p/(.*)$", "pub/$1"), rule(Subscribe, "#", "^(.*)$", "sub/$1")]);
    assert_eq!(r.rewrite(Kind::Publish, "p/1", "c", None), to("pub/1"));
    assert_eq!(r.rewrite(Kind::Subscribe, "p/1", "c", None), to("sub/p/1"));
    assert_eq!(r.rewrite(Kind::Publish, "q/1", "c", None), Rewritten::Unchanged);
    assert!(r.any(Kind::Publish) && r.any(Kind::Subscribe));
    let only = rules(vec![rule(Publish, "p/#", "p", "q")]);
    assert!(!only.any(Kind::Subscribe));
}

#[test]
fn groups_and_placeholders() {
    let r = rules(vec![
        rule(All, "t/#", "^t/([^/]+)/([^/]+)(/x)?$", "u/${username}/$2/$1$3/${clientid}"),
        rule(All, "e/#", "^e/(.*)$", "$1"),
    ]);
    assert_eq!(r.rewrite(Kind::Publish, "t/a/b", "c1", Some("bob")), to("u/bob/b/a/c1"));
    assert_eq!(r.rewrite(Kind::Publish, "t/a/b/x", "c1", Some("bob")), to("u/bob/b/a/x/c1"));
    // No username, or one that would add a level: no topic.
    assert!(matches!(r.rewrite(Kind::Publish, "t/a/b", "c1", None), Rewritten::Failed(_)));
    assert!(matches!(r.rewrite(Kind::Subscribe, "t/a/b", "c1", Some("+")), Rewritten::Failed(_)));
    // An empty capture gives an empty topic: the caller refuses it.
    assert_eq!(r.rewrite(Kind::Publish, "e/", "c1", None), to(""));
}

fn client(id: &str, username: Option<&str>) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: username.map(Arc::from),
        peer: "127.0.0.1:1".parse().unwrap(),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

fn module(r: Vec<RewriteRule>, max_levels: usize) -> (Rewrite, Arc<RewriteStats>) {
    let mut settings = BrokerSettings::default();
    settings.limits.max_topic_levels = max_levels;
    let broker = Broker::new(settings);
    let stats = Arc::new(RewriteStats::default());
    let m = Rewrite::new(&broker, &RewriteConfig { enabled: true, rules: r }, Arc::clone(&stats)).unwrap();
    (m, stats)
}

fn counts(s: &RewriteStats) -> HashMap<&'static str, u64> {
    s.values().into_iter().collect()
}

fn message(topic: &str) -> PublishedMessage {
    PublishedMessage::new(TopicName::new(topic).unwrap(), Bytes::new(), QoS::AtMostOnce, false, Default::default())
}

#[test]
fn publish_hook_rewrites_or_drops() {
    let (m, stats) = module(
        vec![
            rule(Publish, "a/#", "^a/(.*)$", "b/$1"),
            rule(Publish, "deep/#", "^deep/(.*)$", "$1/$1/$1"),
            rule(Publish, "e/#", "^e/(.*)$", "$1"),
        ],
        4,
    );
    let c = client("c", None);
    let mut msg = message("a/x");
    assert_eq!(m.publish(Publisher::Client(&c), &mut msg), PublishFlow::Continue);
    assert_eq!(msg.topic().as_str(), "b/x");
    assert!(msg.topic_rewritten());
    let mut will = message("a/w");
    assert_eq!(m.publish(Publisher::Will(&c), &mut will), PublishFlow::Continue);
    assert_eq!(will.topic().as_str(), "b/w");
    let mut other = message("c/x");
    assert_eq!(m.publish(Publisher::Client(&c), &mut other), PublishFlow::Continue);
    assert!(!other.topic_rewritten());
    // Empty result, too many levels: dropped with 0x90.
    for t in ["e/", "deep/1/2"] {
        let mut msg = message(t);
        assert_eq!(m.publish(Publisher::Client(&c), &mut msg), PublishFlow::Drop(ReasonCode::TopicNameInvalid), "{t}");
        assert_eq!(msg.topic().as_str(), t);
    }
    let v = counts(&stats);
    assert_eq!((v["publish"], v["invalid"]), (2, 2));
}

#[test]
fn subscribe_and_unsubscribe_hooks_keep_the_share_prefix() {
    let (m, stats) = module(vec![rule(Subscribe, "a/#", "^a/(.+)$", "$1/end")], 128);
    let c = client("c", None);
    let sub = |f: &str| Subscription::new(f.to_string(), Default::default());
    for (from, want) in [("a/x", "x/end"), ("$share/g/a/x", "$share/g/x/end"), ("$queue/a/+", "$queue/+/end")] {
        let mut s = sub(from);
        assert_eq!(m.subscribe(&c, &mut s), Flow::Continue);
        assert_eq!(s.filter(), want);
        let mut u = sub(from);
        assert_eq!(m.unsubscribe(&c, &mut u), Flow::Continue);
        assert_eq!(u.filter(), want);
    }
    // `a/#` → `#/end`: not a filter.
    let mut s = sub("a/#");
    assert_eq!(m.subscribe(&c, &mut s), Flow::Refuse(ReasonCode::TopicFilterInvalid));
    let mut u = sub("a/#");
    assert_eq!(m.unsubscribe(&c, &mut u), Flow::Refuse(ReasonCode::TopicFilterInvalid));
    let mut s = sub("b/x");
    assert_eq!(m.subscribe(&c, &mut s), Flow::Continue);
    assert!(!s.rewritten());
    let v = counts(&stats);
    assert_eq!((v["subscribe"], v["unsubscribe"], v["invalid"]), (3, 3, 2));
}

#[test]
fn a_publish_only_module_leaves_subscribe_hooks_free() {
    use portcullis_core::hooks::{HookPoint, HookSetBuilder, Hooks};
    let (m, _) = module(vec![rule(Publish, "a/#", "a", "b")], 128);
    let mut b = HookSetBuilder::new();
    b.module(Arc::new(m));
    let hooks = Hooks::default();
    hooks.install(b.build());
    assert!(hooks.wants(HookPoint::MessagePublish));
    assert!(!hooks.wants(HookPoint::Subscribe) && !hooks.wants(HookPoint::Unsubscribe));
}
