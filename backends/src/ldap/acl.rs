//! The LDAP ACL provider: the user's entry lists the topic filters it may
//! publish to, subscribe to, or both, in multi-valued attributes
//! (`mqttPublishTopic`, `mqttSubscriptionTopic`, `mqttPubSubTopic` from
//! `etc/ldap/portcullis.schema`, or names of your own).
//!
//! Each value becomes an allow [`Rule`], so matching is exactly that of
//! ACL files (`${username}` / `${clientid}` levels, emqttd's `%u` / `%c`,
//! `eq <topic>`). A listed topic allows; anything else, and a client the
//! directory does not know, is Ignore: the next provider or `no_match`
//! decides. As for auth, an entry found by `${username}` must hold the
//! username in `username_attribute` exactly, or it is not this client's. A value that is not a valid filter grants nothing (logged).

use std::fmt;

use portcullis_acl::provider::{AclAnswer, AclProvider};
use portcullis_acl::rule::{decide, Action, Permission, Rule, Subject};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use super::auth::{find, names_user};
use super::config::{AclConfig, Lookup};
use super::conn::{Directory, Entry};
use crate::common::rows::topic_pattern;
use crate::common::template::Values;
use crate::common::BuildError;

pub struct LdapAcl {
    name: String,
    dir: Directory,
    lookup: Lookup,
    /// `username_attribute` when the lookup uses `${username}`: the entry
    /// must hold the client's username exactly ([`names_user`]).
    username_attribute: Option<String>,
    /// `(attribute, action)` in the order rules are built.
    attributes: Vec<(String, Action)>,
}

impl fmt::Debug for LdapAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapAcl")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("lookup", &self.lookup)
            .field("attributes", &self.attributes)
            .finish()
    }
}

impl LdapAcl {
    pub fn new(name: &str, cfg: &AclConfig) -> Result<LdapAcl, BuildError> {
        cfg.validate()?;
        let lookup = cfg.lookup()?;
        Ok(LdapAcl {
            name: name.to_string(),
            dir: Directory::new(name, &cfg.server_settings())?,
            username_attribute: lookup.uses_username().then(|| cfg.username_attribute.clone()),
            lookup,
            attributes: vec![
                (cfg.publish_attribute.clone(), Action::Publish),
                (cfg.subscribe_attribute.clone(), Action::Subscribe),
                (cfg.pubsub_attribute.clone(), Action::All),
            ],
        })
    }

    async fn check(&self, client: &ClientInfo, access: &Access<'_>) -> Result<AclAnswer, ProviderError> {
        let values = Values::from_access(client, access);
        let mut attrs: Vec<&str> = self.attributes.iter().map(|(a, _)| a.as_str()).collect();
        attrs.extend(self.username_attribute.as_deref());
        let Some(entry) = find(&self.dir, &self.lookup, &values, &attrs).await? else {
            return Ok(AclAnswer::ignore());
        };
        if let Some(a) = &self.username_attribute {
            if !names_user(&entry, a, client.username.as_deref().unwrap_or_default())? {
                return Ok(AclAnswer::ignore());
            }
        }
        let rules = self.rules(&entry);
        Ok(decide(&rules, client, access))
    }

    /// Allow rules from the entry's topic attributes.
    pub fn rules(&self, entry: &Entry) -> Vec<Rule> {
        let mut rules = Vec::new();
        for (attr, action) in &self.attributes {
            for value in entry.text_values(attr) {
                match topic_pattern(value) {
                    Ok(p) => rules.push(Rule {
                        permission: Permission::Allow,
                        subject: Subject::default(),
                        action: *action,
                        topics: vec![p],
                        qos: None,
                        retain: None,
                        origin: format!("ldap {} {attr}: {value}", entry.dn),
                    }),
                    Err(e) => {
                        tracing::warn!(provider = %self.name, dn = %entry.dn, attribute = %attr, error = %e, "ignoring an ACL value that is not a topic filter")
                    }
                }
            }
        }
        rules
    }
}

impl AclProvider for LdapAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn health(&self) -> Option<bool> {
        Some(self.dir.health.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(async move { self.check(client, &access).await })
    }

    /// Never: the directory's values become allow rules only, and a
    /// subscription granted by one of them is covered by it, topic by
    /// topic. (Checking deliveries would also make them wait for, and
    /// fail with, the directory.)
    fn may_deny_within(&self, _client: &ClientInfo, _filter: &[&str]) -> bool {
        false
    }
}
