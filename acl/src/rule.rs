//! An ACL rule as plain data. Loading (files, directories, backends) lives
//! elsewhere; matching is a pure function of the rule, the client and the
//! access ([`Rule::matches`], [`first_match`]; the topic algorithms are in
//! [`crate::matching`]).
//!
//! Matching semantics:
//!
//! * Subject: every field that is set must equal the client's value
//!   (username and client id exactly; the peer IP inside the CIDR, with an
//!   IPv4-mapped IPv6 peer treated as the IPv4 address).
//! * Action, then the QoS list (publish QoS or requested subscription QoS),
//!   then the retain flag, which constrains publishes only (a rule with
//!   `retain` set still applies to subscribes).
//! * Topics, for a PUBLISH: the topic name matches the pattern as a filter.
//! * Topics, for a SUBSCRIBE (shared forms are checked on their inner
//!   filter): a rule applies when its pattern covers the requested filter
//!   (every topic the filter can match is matched by the pattern), for
//!   allow and deny alike (emqttd's and EMQX's semantics): `deny secret/#`
//!   refuses `secret/x/#` but not the broader `#`, which falls through to
//!   later rules.
//! * Deliveries: a granted subscription whose filter *overlaps* a deny
//!   rule that could apply to the client ([`Rule::may_deny_within`]: some
//!   topic is matched by both, placeholders resolved for this client) is
//!   marked, and each message delivered through it is checked again as a
//!   subscription to its topic. So `deny secret/#` + `allow #` grants `#`
//!   but never delivers `secret/x` through it, and subscriptions no deny
//!   rule overlaps cost nothing per message.
//! * `eq <literal>` compares the topic name or the (inner) filter string.
//! * `${username}` / `${clientid}` levels take the client's value; an
//!   absent, empty or unsafe value (containing `+`, `#`, `/`, or a first
//!   level starting with `$`) makes that pattern match nothing.

use std::net::IpAddr;

use ipnet::IpNet;
use portcullis_core::gate::{Access, ClientInfo};

use crate::matching::{self, PatternError};
use crate::provider::{AclAnswer, AclDecision};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

/// Which kind of access a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
    /// Publish and subscribe.
    All,
}

/// Who a rule applies to. Every field that is set must match; a subject
/// with no field set applies to everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<IpNet>,
}

/// A topic pattern in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// An MQTT filter; `${username}` and `${clientid}` may stand as whole
    /// levels and are replaced by the client's values before matching (a
    /// client without a username never matches a `${username}` pattern).
    Filter(String),
    /// `eq <topic>`: matches only this exact string (a subscription to the
    /// literal filter `#`, say), no wildcard expansion, no placeholders.
    Eq(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub permission: Permission,
    pub subject: Subject,
    pub action: Action,
    /// The rule applies if any pattern matches.
    pub topics: Vec<TopicPattern>,
    /// If set, the rule applies only to these QoS levels (0..=2).
    pub qos: Option<Vec<u8>>,
    /// If set, the rule applies only to publishes with this retain flag.
    pub retain: Option<bool>,
    /// Where the rule came from, for explain output and logs
    /// (`etc/acl.toml:12`, `policies/dev42.toml:3`, `ldap:mqttPublishTopic`).
    pub origin: String,
}

impl Subject {
    /// Does the client fit every field that is set?
    pub fn matches(&self, client: &ClientInfo) -> bool {
        if let Some(u) = &self.username {
            if client.username.as_deref() != Some(u.as_str()) {
                return false;
            }
        }
        if let Some(c) = &self.client_id {
            if &*client.client_id != c.as_str() {
                return false;
            }
        }
        if let Some(net) = &self.ip {
            if !ip_in(net, client.peer.ip()) {
                return false;
            }
        }
        true
    }

    /// True when no field is set (the rule applies to everyone).
    pub fn is_everyone(&self) -> bool {
        self.username.is_none() && self.client_id.is_none() && self.ip.is_none()
    }
}

/// CIDR membership with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
/// treated as their IPv4 address, whichever family the network is written in.
fn ip_in(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpNet::V6(n), IpAddr::V4(v4)) => n.contains(&v4.to_ipv6_mapped()),
        _ => net.contains(&ip),
    }
}

impl Action {
    fn applies_to(self, access: &Access<'_>) -> bool {
        matches!(
            (self, access),
            (Action::All, _)
                | (Action::Publish, Access::Publish { .. })
                | (Action::Subscribe, Access::Subscribe { .. })
        )
    }
}

impl TopicPattern {
    /// Parses the textual form used in rule files: `eq <literal>` or a
    /// filter (with optional placeholder levels), validated.
    pub fn parse(s: &str) -> Result<TopicPattern, PatternError> {
        if let Some(lit) = s.strip_prefix("eq ") {
            matching::validate_eq(lit)?;
            return Ok(TopicPattern::Eq(lit.to_string()));
        }
        if s == "eq" {
            return Err(PatternError::EmptyEq);
        }
        matching::validate_pattern(s)?;
        Ok(TopicPattern::Filter(s.to_string()))
    }

    /// Does this pattern apply to the access?
    pub fn matches(&self, client: &ClientInfo, access: &Access<'_>) -> bool {
        match (self, access) {
            (TopicPattern::Eq(lit), Access::Publish { topic, .. }) => topic.as_str() == lit,
            (TopicPattern::Eq(lit), Access::Subscribe { filter, .. }) => filter.filter.as_str() == lit,
            (TopicPattern::Filter(p), access) => {
                let Some(levels) = matching::resolve(p, client) else {
                    return false;
                };
                match access {
                    Access::Publish { topic, .. } => {
                        let t: Vec<&str> = topic.levels().collect();
                        matching::topic_matches_levels(&levels, &t)
                    }
                    Access::Subscribe { filter, .. } => {
                        let f: Vec<&str> = filter.filter.levels().collect();
                        matching::covers_levels(&levels, &f)
                    }
                }
            }
        }
    }

    /// Could this pattern match a topic that `filter` (given as levels, a
    /// plain filter) matches, for this client? An `eq` literal can match
    /// only a topic name equal to it, so one with a wildcard never does.
    pub fn overlaps(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        match self {
            TopicPattern::Eq(lit) => {
                let lit: Vec<&str> = lit.split('/').collect();
                !lit.iter().any(|l| *l == "+" || *l == "#") && matching::topic_matches_levels(filter, &lit)
            }
            TopicPattern::Filter(p) => {
                matching::resolve(p, client).is_some_and(|levels| matching::overlaps_levels(&levels, filter))
            }
        }
    }
}

impl std::fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicPattern::Filter(s) => f.write_str(s),
            TopicPattern::Eq(s) => write!(f, "eq {s}"),
        }
    }
}

impl Rule {
    /// Does this rule apply to `client` doing `access`? (See the module
    /// documentation for the exact semantics.)
    pub fn matches(&self, client: &ClientInfo, access: &Access<'_>) -> bool {
        if !self.action.applies_to(access) || !self.subject.matches(client) {
            return false;
        }
        let (qos, retain) = match access {
            Access::Publish { qos, retain, .. } => (*qos, Some(*retain)),
            Access::Subscribe { qos, .. } => (*qos, None),
        };
        if let Some(allowed) = &self.qos {
            if !allowed.contains(&(qos as u8)) {
                return false;
            }
        }
        if let (Some(want), Some(got)) = (self.retain, retain) {
            if want != got {
                return false;
            }
        }
        self.topics.iter().any(|t| t.matches(client, access))
    }

    /// Could this rule deny `client`, at delivery, a topic that `filter`
    /// (given as levels; the inner filter of a shared subscription)
    /// matches? True for a deny rule that applies to subscribing and to
    /// this client, one of whose patterns overlaps the filter. QoS limits
    /// are not looked at (a limited rule counts as one that could apply).
    /// A subscription this holds for gets its deliveries checked.
    pub fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        self.permission == Permission::Deny
            && matches!(self.action, Action::Subscribe | Action::All)
            && self.subject.matches(client)
            && self.topics.iter().any(|t| t.overlaps(client, filter))
    }

    /// The provider answer this rule gives when it matches.
    pub fn answer(&self) -> AclAnswer {
        let decision = match self.permission {
            Permission::Allow => AclDecision::Allow,
            Permission::Deny => AclDecision::Deny,
        };
        AclAnswer { decision, rule: Some(self.origin.clone()) }
    }
}

/// The first rule that applies (first match wins within a source).
pub fn first_match<'r>(rules: &'r [Rule], client: &ClientInfo, access: &Access<'_>) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(client, access))
}

/// Could any of `rules` deny `client` a topic `filter` matches (see
/// [`Rule::may_deny_within`])?
pub fn may_deny_within(rules: &[Rule], client: &ClientInfo, filter: &[&str]) -> bool {
    rules.iter().any(|r| r.may_deny_within(client, filter))
}

/// The answer of a rule list: the first matching rule's permission and
/// origin, or Ignore when none applies.
pub fn decide(rules: &[Rule], client: &ClientInfo, access: &Access<'_>) -> AclAnswer {
    first_match(rules, client, access).map_or_else(AclAnswer::ignore, Rule::answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn rule(permission: Permission, action: Action, topics: &[&str]) -> Rule {
        Rule {
            permission,
            subject: Subject::default(),
            action,
            topics: topics.iter().map(|t| TopicPattern::parse(t).unwrap()).collect(),
            qos: None,
            retain: None,
            origin: "test:1".to_string(),
        }
    }

    fn allow(topics: &[&str]) -> Rule {
        rule(Permission::Allow, Action::All, topics)
    }

    fn deny(topics: &[&str]) -> Rule {
        rule(Permission::Deny, Action::All, topics)
    }

    fn m(r: &Rule, c: &ClientInfo, req: Req) -> bool {
        r.matches(c, &req.access())
    }

    #[test]
    fn publish_topics() {
        let c = user("c1", "alice");
        let r = allow(&["sensors/+/temp", "cmd/#"]);
        assert!(m(&r, &c, publish("sensors/k/temp")));
        assert!(m(&r, &c, publish("cmd")));
        assert!(m(&r, &c, publish("cmd/a/b")));
        assert!(!m(&r, &c, publish("sensors/k/hum")));
        assert!(!m(&r, &c, publish("sensors/k/temp/x")));
        // `$` topics are never matched by a leading wildcard.
        assert!(!m(&allow(&["#"]), &c, publish("$SYS/x")));
        assert!(!m(&allow(&["+/x"]), &c, publish("$SYS/x")));
        assert!(m(&allow(&["$SYS/#"]), &c, publish("$SYS/x")));
    }

    #[test]
    fn subscribe_allow_needs_coverage() {
        let c = user("c1", "alice");
        let r = allow(&["a/#"]);
        for ok in ["a", "a/b", "a/+", "a/+/b", "a/#"] {
            assert!(m(&r, &c, subscribe(ok)), "{ok}");
        }
        for no in ["#", "+/b", "b/#", "+"] {
            assert!(!m(&r, &c, subscribe(no)), "{no}");
        }
        let r = allow(&["a/+"]);
        assert!(m(&r, &c, subscribe("a/b")));
        assert!(m(&r, &c, subscribe("a/+")));
        assert!(!m(&r, &c, subscribe("a/#")));
        let everything = allow(&["#"]);
        assert!(m(&everything, &c, subscribe("#")));
        assert!(m(&everything, &c, subscribe("+/x/#")));
        assert!(!m(&everything, &c, subscribe("$SYS/#")));
        assert!(!m(&everything, &c, subscribe("$SYS/brokers")));
    }

    #[test]
    fn subscribe_deny_covers_by_default() {
        let c = user("c1", "alice");
        let r = deny(&["secret/#"]);
        assert!(m(&r, &c, subscribe("secret/x")));
        assert!(m(&r, &c, subscribe("secret/#")));
        assert!(!m(&r, &c, subscribe("#")));
        assert!(!m(&r, &c, subscribe("+/x")));
    }

    fn overlap(r: &Rule, c: &ClientInfo, filter: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        r.may_deny_within(c, &f)
    }

    #[test]
    fn deny_rules_overlapping_a_filter_mark_it() {
        let c = user("c1", "alice");
        let r = deny(&["secret/#"]);
        for yes in ["#", "+/x", "secret/+", "secret/#", "secret", "secret/x/y", "+/+/+", "+/#"] {
            assert!(overlap(&r, &c, yes), "deny secret/# overlaps {yes}");
        }
        for no in ["public/#", "public/x", "$SYS/#", "a/+/c", "secretly/#"] {
            assert!(!overlap(&r, &c, no), "deny secret/# does not overlap {no}");
        }
        // `+` matches `secret` (the parent level `secret/#` matches too).
        assert!(overlap(&r, &c, "+"));
        let sys = deny(&["$SYS/#"]);
        assert!(overlap(&sys, &c, "$SYS/brokers/+"));
        assert!(!overlap(&sys, &c, "#"), "wildcard-first filters never see $ topics");
        // Allow rules and publish-only deny rules never mark.
        assert!(!overlap(&allow(&["secret/#"]), &c, "#"));
        assert!(!overlap(&rule(Permission::Deny, Action::Publish, &["secret/#"]), &c, "#"));
        assert!(overlap(&rule(Permission::Deny, Action::Subscribe, &["secret/#"]), &c, "#"));
        // Subjects: a deny for bob does not mark alice's subscriptions.
        let mut bob = deny(&["secret/#"]);
        bob.subject.username = Some("bob".into());
        assert!(!overlap(&bob, &c, "#"));
        assert!(overlap(&bob, &user("c2", "bob"), "#"));
        // QoS limits are not looked at: the rule could apply.
        let mut q = deny(&["secret/#"]);
        q.qos = Some(vec![2]);
        assert!(overlap(&q, &c, "#"));
        // `eq` literals: only a topic name equal to them.
        assert!(overlap(&deny(&["eq secret/x"]), &c, "secret/+"));
        assert!(!overlap(&deny(&["eq secret/x"]), &c, "public/+"));
        assert!(!overlap(&deny(&["eq #"]), &c, "#"), "no topic is named `#`");
        assert!(!overlap(&deny(&["eq +/#"]), &c, "#"));
        // The list form.
        assert!(may_deny_within(&[allow(&["#"]), deny(&["secret/#"])], &c, &["#"]));
        assert!(!may_deny_within(&[allow(&["#"])], &c, &["#"]));
    }

    #[test]
    fn placeholders_resolve_per_client_for_overlap() {
        let r = deny(&["users/${username}/private/#", "devices/${clientid}/keys"]);
        let alice = user("dev1", "alice");
        let bob = user("dev2", "bob");
        assert!(overlap(&r, &alice, "users/alice/#"));
        assert!(overlap(&r, &alice, "users/+/private/x"));
        assert!(!overlap(&r, &bob, "users/alice/#"), "bob's rule is about users/bob");
        assert!(overlap(&r, &bob, "users/bob/+/+"));
        assert!(overlap(&r, &alice, "devices/dev1/+"));
        assert!(!overlap(&r, &alice, "devices/dev2/+"));
        assert!(overlap(&r, &alice, "devices/#"));
        // No username: the `${username}` pattern matches nothing.
        let anon = client("dev3", None, "192.0.2.1:1");
        assert!(!overlap(&r, &anon, "users/#"));
        assert!(overlap(&r, &anon, "devices/+/keys"));
    }

    #[test]
    fn broad_filters_fall_through_a_covering_deny() {
        let c = user("c1", "alice");
        // first match: the deny does not cover `#`, which the allow grants
        let rules = [deny(&["secret/#"]), allow(&["#"])];
        let first = |req: Req| first_match(&rules, &c, &req.access()).map(|r| r.permission);
        assert_eq!(first(subscribe("#")), Some(Permission::Allow));
        assert_eq!(first(subscribe("secret/x")), Some(Permission::Deny));
        assert_eq!(first(subscribe("a/b")), Some(Permission::Allow));
        assert_eq!(first(publish("secret/k")), Some(Permission::Deny));
        assert_eq!(first(publish("$SYS/k")), None);
    }

    #[test]
    fn shared_subscriptions_match_the_inner_filter() {
        let c = user("c1", "alice");
        let r = allow(&["a/#"]);
        assert!(m(&r, &c, subscribe("$share/g/a/b")));
        assert!(m(&r, &c, subscribe("$queue/a/+")));
        assert!(!m(&r, &c, subscribe("$share/g/#")));
        assert!(m(&deny(&["eq #"]), &c, subscribe("$share/g/#")));
        assert!(m(&deny(&["eq #"]), &c, subscribe("$queue/#")));
    }

    #[test]
    fn eq_is_literal() {
        let c = user("c1", "alice");
        let r = deny(&["eq #"]);
        assert!(m(&r, &c, subscribe("#")));
        assert!(!m(&r, &c, subscribe("+/#")));
        assert!(!m(&r, &c, subscribe("a/#")));
        assert!(!m(&r, &c, publish("a")));
        let r = allow(&["eq a/+"]);
        assert!(m(&r, &c, subscribe("a/+")));
        assert!(!m(&r, &c, subscribe("a/b")));
        let r = allow(&["eq ${username}/x"]);
        assert!(m(&r, &c, publish("${username}/x")));
        assert!(!m(&r, &c, publish("alice/x")));
    }

    #[test]
    fn placeholders() {
        let r = allow(&["users/${username}/#", "devices/${clientid}/+"]);
        let alice = user("dev1", "alice");
        assert!(m(&r, &alice, publish("users/alice/x")));
        assert!(m(&r, &alice, publish("devices/dev1/status")));
        assert!(m(&r, &alice, subscribe("users/alice/+")));
        assert!(!m(&r, &alice, publish("users/bob/x")));
        assert!(!m(&r, &alice, publish("devices/dev2/status")));
        // no username: the `${username}` pattern matches nothing; others still do
        let anon = client("dev1", None, "192.0.2.1:1");
        assert!(!m(&r, &anon, publish("users/x/y")));
        assert!(m(&r, &anon, publish("devices/dev1/s")));
    }

    #[test]
    fn placeholder_values_cannot_widen_access() {
        let r = allow(&["users/${username}/data", "${clientid}/#"]);
        for (id, name, req) in [
            ("c", "+", publish("users/x/data")),
            ("c", "#", subscribe("users/#")),
            ("c", "a/b", publish("users/a/b/data")),
            ("c", "", publish("users//data")),
            ("+", "u", publish("x/y")),
            ("#", "u", subscribe("#")),
            ("$SYS", "u", publish("$SYS/broker")),
            ("a/b", "u", publish("a/b/c")),
        ] {
            assert!(!m(&r, &user(id, name), req.clone()), "id {id:?} user {name:?} {req:?}");
        }
        // the rule still works for an ordinary client
        assert!(m(&r, &user("dev", "u"), publish("dev/x")));
        // a `+` in a client id is harmless where the rule uses a username only
        assert!(m(&allow(&["users/${username}/data"]), &user("a+b", "u"), publish("users/u/data")));
    }

    #[test]
    fn subjects() {
        let mut r = allow(&["#"]);
        r.subject.username = Some("alice".into());
        assert!(m(&r, &user("c", "alice"), publish("a")));
        assert!(!m(&r, &user("c", "bob"), publish("a")));
        assert!(!m(&r, &client("c", None, "192.0.2.1:1"), publish("a")));
        r.subject.client_id = Some("c1".into());
        assert!(m(&r, &user("c1", "alice"), publish("a")));
        assert!(!m(&r, &user("c2", "alice"), publish("a")));

        let mut net = allow(&["#"]);
        net.subject.ip = Some("10.0.0.0/8".parse().unwrap());
        for (peer, want) in [
            ("10.1.2.3:1", true),
            ("[::ffff:10.1.2.3]:1", true),
            ("11.0.0.1:1", false),
            ("[::ffff:11.0.0.1]:1", false),
            ("[2001:db8::1]:1", false),
            // IPv4-compatible (not mapped) addresses are plain IPv6
            ("[::10.1.2.3]:1", false),
        ] {
            assert_eq!(m(&net, &client("c", None, peer), publish("a")), want, "{peer}");
        }
        net.subject.ip = Some("::ffff:10.0.0.0/104".parse().unwrap());
        assert!(m(&net, &client("c", None, "10.9.9.9:1"), publish("a")));
        assert!(m(&net, &client("c", None, "[::ffff:10.9.9.9]:1"), publish("a")));
        assert!(!m(&net, &client("c", None, "11.9.9.9:1"), publish("a")));
        net.subject.ip = Some("2001:db8::/32".parse().unwrap());
        assert!(m(&net, &client("c", None, "[2001:db8::1]:1"), publish("a")));
        assert!(!m(&net, &client("c", None, "10.1.2.3:1"), publish("a")));
    }

    #[test]
    fn actions_qos_and_retain() {
        let c = user("c", "u");
        let p = rule(Permission::Allow, Action::Publish, &["#"]);
        let s = rule(Permission::Allow, Action::Subscribe, &["#"]);
        assert!(m(&p, &c, publish("a")) && !m(&p, &c, subscribe("a")));
        assert!(m(&s, &c, subscribe("a")) && !m(&s, &c, publish("a")));

        let mut q = allow(&["#"]);
        q.qos = Some(vec![0, 1]);
        assert!(m(&q, &c, publish_with("a", 1, false)));
        assert!(!m(&q, &c, publish_with("a", 2, false)));
        assert!(m(&q, &c, subscribe_with("a", 0)));
        assert!(!m(&q, &c, subscribe_with("a", 2)));

        let mut r = allow(&["#"]);
        r.retain = Some(false);
        assert!(m(&r, &c, publish_with("a", 0, false)));
        assert!(!m(&r, &c, publish_with("a", 0, true)));
        // retain constrains publishes only
        assert!(m(&r, &c, subscribe("a")));
    }

    #[test]
    fn first_match_wins_and_decide_reports_the_origin() {
        let c = user("c", "u");
        let mut a = deny(&["a/secret"]);
        a.origin = "f:1".into();
        let mut b = allow(&["a/#"]);
        b.origin = "f:2".into();
        let rules = vec![a, b];
        assert_eq!(decide(&rules, &c, &publish("a/secret").access()).rule.as_deref(), Some("f:1"));
        assert_eq!(decide(&rules, &c, &publish("a/x").access()).decision, AclDecision::Allow);
        assert_eq!(decide(&rules, &c, &publish("b").access()), AclAnswer::ignore());
        assert!(first_match(&[], &c, &publish("a").access()).is_none());
    }

    #[test]
    fn pattern_parsing() {
        assert_eq!(TopicPattern::parse("eq #"), Ok(TopicPattern::Eq("#".into())));
        assert_eq!(TopicPattern::parse("a/+"), Ok(TopicPattern::Filter("a/+".into())));
        assert_eq!(TopicPattern::parse("eq"), Err(PatternError::EmptyEq));
        assert_eq!(TopicPattern::parse("eq "), Err(PatternError::EmptyEq));
        assert!(TopicPattern::parse("a/#/b").is_err());
        assert!(TopicPattern::parse("").is_err());
        assert!(TopicPattern::parse("$share/g/a").is_err());
        assert_eq!(TopicPattern::parse("eq a/b").unwrap().to_string(), "eq a/b");
    }
}
