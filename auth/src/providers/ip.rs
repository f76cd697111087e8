//! `ip`: allow and deny networks. A peer in a deny network is refused (deny
//! wins), one in an allow network is admitted, anyone else is ignored.

use ipnet::IpNet;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use super::{canonical_ip, canonical_net};
use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

#[derive(Debug)]
pub struct IpProvider {
    name: String,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl IpProvider {
    pub fn new(name: String, allow: Vec<IpNet>, deny: Vec<IpNet>) -> IpProvider {
        IpProvider {
            name,
            allow: allow.into_iter().map(canonical_net).collect(),
            deny: deny.into_iter().map(canonical_net).collect(),
        }
    }

    /// The decision, synchronously. The first matching network names the rule.
    pub fn decide(&self, info: &ConnectInfo) -> AuthAnswer {
        let peer = canonical_ip(info.peer.ip());
        if let Some(net) = self.deny.iter().find(|n| n.contains(&peer)) {
            return AuthAnswer::new(AuthDecision::Deny(DenyReason::NotAuthorized), Some(format!("deny {net}")));
        }
        if let Some(net) = self.allow.iter().find(|n| n.contains(&peer)) {
            return AuthAnswer::new(AuthDecision::allow(), Some(format!("allow {net}")));
        }
        AuthAnswer::ignore()
    }
}

impl AuthProvider for IpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "ip"
    }

    fn worth_caching(&self) -> bool {
        false
    }

    fn inputs(&self) -> Inputs {
        Inputs::PEER
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        let answer = self.decide(info);
        Box::pin(async move { Ok(answer) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::connect;

    fn provider() -> IpProvider {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        IpProvider::new(
            "ip".into(),
            vec![n("10.0.0.0/8"), n("2001:db8::/32"), n("127.0.0.1/32")],
            vec![n("10.66.0.0/16"), n("::ffff:192.0.2.0/120")],
        )
    }

    async fn decide(peer: &str) -> AuthAnswer {
        provider().authenticate(&connect("c", Some("u"), Some(b"p"), peer)).await.unwrap()
    }

    #[tokio::test]
    async fn allow_networks_allow() {
        assert_eq!(decide("10.1.2.3:1").await, AuthAnswer::new(AuthDecision::allow(), Some("allow 10.0.0.0/8".into())));
        assert_eq!(decide("[2001:db8::5]:1").await.rule.as_deref(), Some("allow 2001:db8::/32"));
        assert_eq!(decide("127.0.0.1:1").await.rule.as_deref(), Some("allow 127.0.0.1/32"));
    }

    #[tokio::test]
    async fn deny_wins_over_allow() {
        let a = decide("10.66.7.8:1").await;
        assert_eq!(a, AuthAnswer::new(AuthDecision::Deny(DenyReason::NotAuthorized), Some("deny 10.66.0.0/16".into())));
    }

    #[tokio::test]
    async fn mapped_ipv6_peers_are_ipv4() {
        assert_eq!(decide("[::ffff:10.1.2.3]:1").await.rule.as_deref(), Some("allow 10.0.0.0/8"));
        assert_eq!(decide("[::ffff:10.66.0.1]:1").await.rule.as_deref(), Some("deny 10.66.0.0/16"));
        // A mapped network in the config matches plain IPv4 peers.
        assert_eq!(decide("192.0.2.7:1").await.rule.as_deref(), Some("deny 192.0.2.0/24"));
    }

    #[tokio::test]
    async fn others_are_ignored() {
        for peer in ["192.168.0.1:1", "127.0.0.2:1", "[::1]:1", "[2001:db9::1]:1"] {
            assert_eq!(decide(peer).await, AuthAnswer::ignore(), "{peer}");
        }
    }
}
