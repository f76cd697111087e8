//! The built-in store's ACL provider.
//!
//! For each access it reads the rules of the client's client id and of its
//! username, in decision order (ascending priority; at equal priority a
//! client id's rules first, then the order they were added), turns each
//! into an ordinary [`portcullis_acl::rule::Rule`] named
//! `builtin:<provider> rule <id>`, and the first that applies decides, as
//! in an ACL file ([`portcullis_acl::rule::decide`]): `${username}` and
//! `${clientid}` levels take the client's values, `eq` topics are literal,
//! QoS lists and the retain flag narrow a rule. No rule applies: Ignore.
//!
//! Decisions are cached by the ACL cache like any other provider's; a
//! change to the store purges the cache (see `UserStore::changes`). A row
//! that cannot be read fails the check (an error, `on_error` decides):
//! skipping it could turn a deny into an allow.

use std::sync::Arc;

use portcullis_acl::provider::{AclAnswer, AclProvider};
use portcullis_acl::rule::{decide, Rule};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use super::store::UserStore;
use crate::common::health::Health;
use crate::common::rows::RowError;

pub struct BuiltinAcl {
    name: String,
    store: Arc<UserStore>,
    health: Health,
}

impl std::fmt::Debug for BuiltinAcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinAcl").field("name", &self.name).field("store", &self.store.path()).finish()
    }
}

impl BuiltinAcl {
    pub fn new(name: &str, store: Arc<UserStore>) -> BuiltinAcl {
        BuiltinAcl { name: name.to_string(), store, health: Health::new(super::KIND, name) }
    }

    async fn check(&self, client: &ClientInfo, access: &Access<'_>) -> Result<AclAnswer, ProviderError> {
        let stored = self.store.rules_for_client(client.username.as_deref(), &client.client_id).await;
        let stored = self.health.track(stored.map_err(|e| super::provider_error(&e)))?;
        let rules = stored.iter().map(|r| r.to_rule(&self.name)).collect::<Result<Vec<Rule>, RowError>>()?;
        Ok(decide(&rules, client, access))
    }
}

impl AclProvider for BuiltinAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(async move { self.check(client, &access).await })
    }
}
