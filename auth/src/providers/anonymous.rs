//! `anonymous`: admits CONNECTs that carry neither username nor password,
//! from the configured networks (any network when the list is empty).
//! Anonymous clients from elsewhere are refused; clients with credentials
//! are not this provider's business.

use ipnet::IpNet;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use super::{canonical_ip, canonical_net};
use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

#[derive(Debug)]
pub struct Anonymous {
    name: String,
    /// Empty: anonymous clients from anywhere.
    allow_from: Vec<IpNet>,
}

impl Anonymous {
    pub fn new(name: String, allow_from: Vec<IpNet>) -> Anonymous {
        Anonymous { name, allow_from: allow_from.into_iter().map(canonical_net).collect() }
    }

    /// The decision, synchronously.
    pub fn decide(&self, info: &ConnectInfo) -> AuthAnswer {
        if info.username.is_some() || info.password.is_some() {
            return AuthAnswer::ignore();
        }
        if self.allow_from.is_empty() {
            return AuthAnswer::new(AuthDecision::allow(), Some("allow_from any".to_string()));
        }
        let peer = canonical_ip(info.peer.ip());
        match self.allow_from.iter().find(|net| net.contains(&peer)) {
            Some(net) => AuthAnswer::new(AuthDecision::allow(), Some(format!("allow_from {net}"))),
            None => AuthAnswer::new(
                AuthDecision::Deny(DenyReason::NotAuthorized),
                Some("allow_from (no match)".to_string()),
            ),
        }
    }
}

impl AuthProvider for Anonymous {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "anonymous"
    }

    fn worth_caching(&self) -> bool {
        false
    }

    fn inputs(&self) -> Inputs {
        Inputs::USERNAME.union(Inputs::PASSWORD).union(Inputs::PEER)
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

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn anonymous_from_allowed_network_is_allowed() {
        let p = Anonymous::new("anon".into(), nets(&["127.0.0.0/8", "10.0.0.0/8"]));
        let a = p.authenticate(&connect("c", None, None, "10.1.2.3:1883")).await.unwrap();
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some("allow_from 10.0.0.0/8".into())));
        let a = p.authenticate(&connect("c", None, None, "[::ffff:127.0.0.1]:1883")).await.unwrap();
        assert_eq!(a.rule.as_deref(), Some("allow_from 127.0.0.0/8"));
    }

    #[tokio::test]
    async fn anonymous_from_elsewhere_is_denied() {
        let p = Anonymous::new("anon".into(), nets(&["127.0.0.0/8"]));
        for peer in ["192.168.1.1:5", "[2001:db8::1]:5", "[::ffff:10.0.0.1]:5"] {
            let a = p.authenticate(&connect("c", None, None, peer)).await.unwrap();
            assert_eq!(a.decision, AuthDecision::Deny(DenyReason::NotAuthorized), "{peer}");
            assert_eq!(a.rule.as_deref(), Some("allow_from (no match)"));
        }
    }

    #[tokio::test]
    async fn empty_allow_from_means_anywhere() {
        let p = Anonymous::new("anon".into(), vec![]);
        let a = p.authenticate(&connect("c", None, None, "203.0.113.9:1")).await.unwrap();
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some("allow_from any".into())));
    }

    #[tokio::test]
    async fn clients_with_credentials_are_ignored() {
        let p = Anonymous::new("anon".into(), vec![]);
        assert_eq!(p.authenticate(&connect("c", Some("u"), None, "127.0.0.1:1")).await, Ok(AuthAnswer::ignore()));
        assert_eq!(p.authenticate(&connect("c", Some("u"), Some(b"p"), "127.0.0.1:1")).await, Ok(AuthAnswer::ignore()));
        // MQTT 5 allows a password without a username: still not anonymous.
        assert_eq!(p.authenticate(&connect("c", None, Some(b"token"), "127.0.0.1:1")).await, Ok(AuthAnswer::ignore()));
    }

    #[test]
    fn kind_and_name() {
        let p = Anonymous::new("anon".into(), vec![]);
        assert_eq!((p.kind(), p.name()), ("anonymous", "anon"));
    }
}
