//! emqttd's shipped default ACL as data, and [`StaticRules`], a provider
//! over an in-memory rule list (the defaults, or rules written inline in
//! the main config).
//!
//! emqttd's `acl.config` reads:
//!
//! ```erlang
//! {allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.
//! {deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
//! {allow, all}.
//! ```
//!
//! [`default_rules`] is the same with loopback widened to `127.0.0.0/8` and
//! `::1`. "Allow all" is written as the pattern `#`, which, as in MQTT, does
//! not match `$` topics: a remote client publishing to `$SYS/…` (or any
//! other `$` topic) is not granted by these rules and falls through to the
//! next provider or the chain's `no_match`.

use ipnet::IpNet;
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use crate::provider::{AclAnswer, AclProvider};
use crate::rule::{decide, may_deny_within, Action, Permission, Rule, Subject, TopicPattern};

fn rule(n: usize, permission: Permission, ip: Option<IpNet>, action: Action, topics: Vec<TopicPattern>) -> Rule {
    Rule {
        permission,
        subject: Subject { ip, ..Subject::default() },
        action,
        topics,
        qos: None,
        retain: None,
        origin: format!("defaults:{n}"),
    }
}

fn filter(s: &str) -> TopicPattern {
    TopicPattern::Filter(s.to_string())
}

/// emqttd's default rules (origins `defaults:1` … `defaults:4`):
///
/// 1. allow everything (`#`, `$SYS/#`) to clients from `127.0.0.0/8`;
/// 2. the same for `::1` (IPv4-mapped loopback is covered by rule 1);
/// 3. deny subscribing to `$SYS/#` or to the literal filters `#` and `+/#`
///    (emqttd denied only `#`; `+/#` asks for the same topics);
/// 4. allow everything (`#`) else.
pub fn default_rules() -> Vec<Rule> {
    let v4 = IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).unwrap_or_default());
    let v6 = IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default());
    let everything = || vec![filter("#"), filter("$SYS/#")];
    vec![
        rule(1, Permission::Allow, Some(v4.trunc()), Action::All, everything()),
        rule(2, Permission::Allow, Some(v6), Action::All, everything()),
        rule(
            3,
            Permission::Deny,
            None,
            Action::Subscribe,
            vec![filter("$SYS/#"), TopicPattern::Eq("#".to_string()), TopicPattern::Eq("+/#".to_string())],
        ),
        rule(4, Permission::Allow, None, Action::All, vec![filter("#")]),
    ]
}

/// A provider over a fixed rule list: first match decides, Ignore when
/// none applies.
#[derive(Debug)]
pub struct StaticRules {
    name: String,
    rules: Vec<Rule>,
}

impl StaticRules {
    pub fn new(name: impl Into<String>, rules: Vec<Rule>) -> StaticRules {
        StaticRules { name: name.into(), rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

impl AclProvider for StaticRules {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "static"
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        let answer = decide(&self.rules, client, &access);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        may_deny_within(&self.rules, client, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::AclDecision;
    use crate::testutil::*;

    async fn ask(p: &StaticRules, peer: &str, req: Req) -> AclAnswer {
        let c = client("c", None, peer);
        p.authorize(&c, req.access()).await.unwrap()
    }

    fn allow(n: usize) -> AclAnswer {
        AclAnswer { decision: AclDecision::Allow, rule: Some(format!("defaults:{n}")) }
    }

    fn deny(n: usize) -> AclAnswer {
        AclAnswer { decision: AclDecision::Deny, rule: Some(format!("defaults:{n}")) }
    }

    #[tokio::test]
    async fn loopback_may_do_everything() {
        let p = StaticRules::new("defaults", default_rules());
        assert_eq!((p.name(), p.kind()), ("defaults", "static"));
        for peer in ["127.0.0.1:1", "127.8.9.10:1", "[::ffff:127.0.0.1]:1"] {
            assert_eq!(ask(&p, peer, subscribe("#")).await, allow(1), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("$SYS/#")).await, allow(1), "{peer}");
            assert_eq!(ask(&p, peer, publish("a/b")).await, allow(1), "{peer}");
        }
        assert_eq!(ask(&p, "[::1]:1", subscribe("#")).await, allow(2));
        assert_eq!(ask(&p, "[::1]:1", subscribe("$SYS/brokers/+/uptime")).await, allow(2));
    }

    #[tokio::test]
    async fn remote_clients_may_not_watch_sys_or_everything() {
        let p = StaticRules::new("defaults", default_rules());
        for peer in ["10.0.0.1:1", "[2001:db8::1]:1", "[::ffff:10.0.0.1]:1"] {
            assert_eq!(ask(&p, peer, subscribe("$SYS/#")).await, deny(3), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("$SYS/brokers/+/clients")).await, deny(3), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("#")).await, deny(3), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("$share/g/#")).await, deny(3), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("a/b")).await, allow(4), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("a/#")).await, allow(4), "{peer}");
            assert_eq!(ask(&p, peer, subscribe("+/#")).await, deny(3), "{peer}");
            assert_eq!(ask(&p, peer, publish("a/b")).await, allow(4), "{peer}");
            // `#` never matches `$` topics: not granted here.
            assert_eq!(ask(&p, peer, publish("$SYS/x")).await, AclAnswer::ignore(), "{peer}");
        }
    }
}
