//! Rules an auth backend returned with the user (an LDAP attribute, SQL
//! rows, an HTTP response), carried with the client.
//!
//! At authentication the gateway stores `Arc::new(InlineAcl(rules))` as the
//! client's [`ClientContext`](portcullis_core::gate::ClientContext); on every
//! check [`InlineProvider`] reads it back and answers with the first rule
//! that applies. A client without such a context, or whose rules do not
//! apply, gets Ignore.

use std::sync::Arc;

use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use crate::provider::{AclAnswer, AclProvider};
use crate::rule::{decide, may_deny_within, Rule};

/// The context type holding a client's inline rules.
#[derive(Debug, Clone)]
pub struct InlineAcl(pub Arc<Vec<Rule>>);

/// Answers from the rules in the client's [`InlineAcl`] context.
#[derive(Debug)]
pub struct InlineProvider {
    name: String,
}

impl InlineProvider {
    pub fn new(name: impl Into<String>) -> InlineProvider {
        InlineProvider { name: name.into() }
    }

    /// The answer for one access (Ignore without an [`InlineAcl`] context).
    pub fn decide(client: &ClientInfo, access: &Access<'_>) -> AclAnswer {
        match client.context.as_deref().and_then(|c| c.downcast_ref::<InlineAcl>()) {
            Some(InlineAcl(rules)) => decide(rules, client, access),
            None => AclAnswer::ignore(),
        }
    }
}

impl AclProvider for InlineProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "inline"
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        let answer = InlineProvider::decide(client, &access);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        match client.context.as_deref().and_then(|c| c.downcast_ref::<InlineAcl>()) {
            Some(InlineAcl(rules)) => may_deny_within(rules, client, filter),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::AclDecision;
    use crate::rule::{Action, Permission, Subject, TopicPattern};
    use crate::testutil::*;

    fn rule(permission: Permission, topic: &str, origin: &str) -> Rule {
        Rule {
            permission,
            subject: Subject::default(),
            action: Action::All,
            topics: vec![TopicPattern::parse(topic).unwrap()],
            qos: None,
            retain: None,
            origin: origin.to_string(),
        }
    }

    #[tokio::test]
    async fn answers_from_the_context_rules() {
        let rules = vec![
            rule(Permission::Deny, "users/${username}/secret/#", "ldap:1"),
            rule(Permission::Allow, "users/${username}/#", "ldap:2"),
        ];
        let p = InlineProvider::new("inline");
        let c = with_context(user("c1", "bob"), Arc::new(InlineAcl(Arc::new(rules))));
        let a = p.authorize(&c, publish("users/bob/x").access()).await.unwrap();
        assert_eq!(a, AclAnswer { decision: AclDecision::Allow, rule: Some("ldap:2".into()) });
        let a = p.authorize(&c, subscribe("users/bob/secret/k").access()).await.unwrap();
        assert_eq!(a, AclAnswer { decision: AclDecision::Deny, rule: Some("ldap:1".into()) });
        let a = p.authorize(&c, publish("users/alice/x").access()).await.unwrap();
        assert_eq!(a, AclAnswer::ignore());
        assert_eq!((p.name(), p.kind()), ("inline", "inline"));
    }

    #[tokio::test]
    async fn ignores_without_context_or_with_a_foreign_one() {
        let p = InlineProvider::new("inline");
        let plain = user("c1", "bob");
        assert_eq!(p.authorize(&plain, publish("a").access()).await.unwrap(), AclAnswer::ignore());
        let foreign = with_context(user("c1", "bob"), Arc::new(42u32));
        assert_eq!(p.authorize(&foreign, publish("a").access()).await.unwrap(), AclAnswer::ignore());
    }
}
