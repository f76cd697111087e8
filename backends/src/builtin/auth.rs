//! The built-in store's auth provider.
//!
//! 1. No username, or a username the store does not hold: Ignore (the next
//!    provider is asked), after a decoy verification of the password, so an
//!    unknown user takes as long as a wrong password
//!    (`common::password::unknown_user`; the decoy's model is an Argon2id
//!    hash at the parameters the store writes, then the last hash really
//!    checked).
//! 2. The stored argon2id hash is checked against the CONNECT's password
//!    off the async threads; a wrong or missing password is bad
//!    credentials.
//! 3. The user's `is_superuser` flag makes the client a superuser (the ACL
//!    chain then lets it do anything).
//!
//! Usernames are compared exactly (SQLite's BINARY collation). A store that
//! cannot be read, or a hash that cannot be parsed, is an error, never a
//! deny: `on_error` decides.

use std::sync::Arc;

use portcullis_auth::hash::{Decoy, HashAlgo, HashConfig};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};
use portcullis_core::gate::{ConnectInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use super::store::UserStore;
use crate::common::health::Health;
use crate::common::password::{check_password, unknown_user};

pub struct BuiltinAuth {
    name: String,
    store: Arc<UserStore>,
    /// What the stored hashes are when they do not say (they always do:
    /// argon2id PHC strings).
    hash: HashConfig,
    decoy: Decoy,
    health: Health,
    rule: String,
}

impl std::fmt::Debug for BuiltinAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinAuth").field("name", &self.name).field("store", &self.store.path()).finish()
    }
}

impl BuiltinAuth {
    pub fn new(name: &str, store: Arc<UserStore>) -> BuiltinAuth {
        let hash = HashConfig::new(HashAlgo::Argon2id);
        BuiltinAuth {
            name: name.to_string(),
            store,
            decoy: Decoy::for_config(&hash),
            hash,
            health: Health::new(super::KIND, name),
            rule: format!("{}:{name}", super::KIND),
        }
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        let found = match info.username.as_deref() {
            Some(u) => self.health.track(self.store.credentials(u).await.map_err(|e| super::provider_error(&e)))?,
            None => None,
        };
        let Some(user) = found else {
            unknown_user(info, &self.decoy).await;
            return Ok(AuthAnswer::ignore());
        };
        let answer = |decision| Ok(AuthAnswer::new(decision, Some(self.rule.clone())));
        if let Some(deny) = check_password(info, &user.password_hash, None, &self.hash, &self.decoy).await? {
            return answer(AuthDecision::Deny(deny));
        }
        answer(AuthDecision::Allow { superuser: user.superuser, inline_acl: None, expires_at: None })
    }
}

impl AuthProvider for BuiltinAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        super::KIND
    }

    /// The answer depends on the username and password only: every client
    /// of a user shares one cached verdict.
    fn inputs(&self) -> Inputs {
        Inputs::USERNAME | Inputs::PASSWORD
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}
