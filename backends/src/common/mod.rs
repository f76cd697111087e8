//! What every backend shares: placeholders, password hashes, ACL rows,
//! health, TLS, secrets, pool settings and the start-up transport check.

pub mod health;
pub mod password;
pub mod pool;
pub mod rows;
pub mod secret;
pub mod template;
pub mod tls;
pub mod transport;

use std::time::Duration;

use portcullis_core::provider::OnError;

/// A provider failed to build (bad config, unreadable file). The message
/// names the key (`query`, `tls.ca_file`…); the server prefixes the
/// provider's own key (`auth.postgres.main`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl From<String> for BuildError {
    fn from(s: String) -> BuildError {
        BuildError(s)
    }
}

impl From<&str> for BuildError {
    fn from(s: &str) -> BuildError {
        BuildError(s.to_string())
    }
}

/// The chain's call policy, which every provider table carries
/// (`timeout`, `on_error`).
pub trait CallPolicy {
    fn timeout(&self) -> Duration;
    fn on_error(&self) -> OnError;
}

/// The default per-call timeout of a backend provider; longer than the
/// default query timeout so the backend's own error wins over the chain's.
pub fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Implements [`CallPolicy`] for config structs with `timeout` and
/// `on_error` fields.
#[macro_export]
macro_rules! call_policy {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::common::CallPolicy for $t {
            fn timeout(&self) -> std::time::Duration { self.timeout }
            fn on_error(&self) -> portcullis_core::provider::OnError { self.on_error }
        }
    )*};
}
