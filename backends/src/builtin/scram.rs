//! The built-in store as a SCRAM credential source: the credentials
//! derived when each password was set (see `users`), read per exchange.

use std::sync::Arc;

use portcullis_auth::scram::{Algorithm, CredentialSource, ScramCredential};
use portcullis_core::gate::GateFuture;
use portcullis_core::provider::ProviderError;

use super::{provider_error, UserStore};

/// SCRAM credentials from a [`UserStore`].
#[derive(Debug)]
pub struct BuiltinScram {
    store: Arc<UserStore>,
}

impl BuiltinScram {
    pub fn new(store: Arc<UserStore>) -> BuiltinScram {
        BuiltinScram { store }
    }
}

impl CredentialSource for BuiltinScram {
    fn lookup<'a>(
        &'a self,
        username: &'a str,
        alg: Algorithm,
    ) -> GateFuture<'a, Result<Option<ScramCredential>, ProviderError>> {
        Box::pin(async move { self.store.scram_credential(username, alg).await.map_err(|e| provider_error(&e)) })
    }
}
