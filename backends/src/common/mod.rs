//! What every backend shares: placeholders, password hashes, ACL rows,
//! health, TLS, secrets, pool settings, the build error and the start-up transport check.

pub mod error;
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

pub use error::{BuildError, BuildErrorKind};

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
