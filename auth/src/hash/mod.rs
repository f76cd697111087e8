//! Password hashes: verifying stored ones, making new ones.
//!
//! * [`config`] — [`HashConfig`]: what a backend's hash column holds when the
//!   value does not say so itself (salted md5/sha1/sha256/sha512, PBKDF2,
//!   plain).
//! * [`stored`] — [`StoredHash`]: a stored value parsed once (Mosquitto
//!   `$7$`/`$6$`, sha-crypt, bcrypt, Argon2, PBKDF2 PHC/passlib, or per
//!   config) and verified in constant time.
//! * [`new`] — [`hash_password`] for new passwords ([`NewHash`]).
//! * [`decoy`] — [`Decoy`]: a verification of comparable cost for users
//!   that do not exist, so latency does not tell them apart.
//!
//! [`verify`] is the one-call form. Slow schemes (bcrypt, Argon2,
//! sha-crypt, PBKDF2 with many iterations) must not run on the async
//! threads: [`verify_blocking`] and [`StoredHash::verify_off_thread`] move
//! them to tokio's blocking pool, at most one per CPU at a time, so a
//! reconnect storm queues instead of spawning hundreds of threads each
//! holding Argon2's memory.

pub mod config;
pub mod decoy;
pub mod new;
pub mod stored;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use portcullis_core::gate::Password;
use portcullis_core::provider::{ErrorKind, ProviderError};
use tokio::sync::Semaphore;

pub use config::{Encoding, HashAlgo, HashConfig, Pbkdf2Mac, SaltPosition};
pub use decoy::Decoy;
pub use new::{hash_password, NewHash};
pub use stored::StoredHash;

/// Why a stored hash could not be used. Never carries the stored value nor
/// the password. For a provider this is a failure (`ProviderError`), never
/// a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("stored password has an unrecognised format and no hash algorithm is configured")]
    UnknownFormat,
    #[error("malformed {scheme} hash: {detail}")]
    Malformed { scheme: &'static str, detail: &'static str },
    #[error("password longer than {max} bytes cannot be hashed with {scheme}")]
    PasswordTooLong { scheme: &'static str, max: usize },
    #[error("no randomness for a salt: {0}")]
    Random(String),
    #[error("hashing failed: {0}")]
    Internal(&'static str),
}

impl From<HashError> for ProviderError {
    fn from(e: HashError) -> ProviderError {
        let kind = match e {
            HashError::UnknownFormat | HashError::Malformed { .. } => ErrorKind::BadResponse,
            HashError::PasswordTooLong { .. } | HashError::Random(_) | HashError::Internal(_) => ErrorKind::Internal,
        };
        ProviderError::new(kind, e.to_string())
    }
}

/// Whether `password` matches `stored` (see [`StoredHash::parse`] for the
/// formats; `salt` and `cfg` only matter for values that do not describe
/// themselves). Runs on the calling thread: see [`verify_blocking`].
pub fn verify(password: &[u8], stored: &str, salt: Option<&str>, cfg: Option<&HashConfig>) -> Result<bool, HashError> {
    StoredHash::parse(stored, salt, cfg)?.verify(password)
}

/// [`verify`] for async callers: parses here, verifies cheap schemes inline
/// and slow ones on the blocking pool.
pub async fn verify_blocking(
    password: Password,
    stored: String,
    salt: Option<String>,
    cfg: Option<HashConfig>,
) -> Result<bool, HashError> {
    let hash = StoredHash::parse(&stored, salt.as_deref(), cfg.as_ref())?;
    Arc::new(hash).verify_off_thread(password).await
}

impl StoredHash {
    /// [`StoredHash::verify`] off the async threads when the scheme is slow
    /// (bounded to one verification per CPU); inline when it is cheap.
    pub async fn verify_off_thread(self: Arc<Self>, password: Password) -> Result<bool, HashError> {
        if self.is_cheap() {
            return self.verify(password.expose());
        }
        let permit =
            slow_permits().clone().acquire_owned().await.map_err(|_| HashError::Internal("hash worker pool closed"))?;
        tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the caller gave up.
            let _permit = permit;
            self.verify(password.expose())
        })
        .await
        .map_err(|_| HashError::Internal("hash worker panicked or was cancelled"))?
    }
}

/// Bounds concurrent slow verifications to the number of CPUs.
fn slow_permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(n))
    })
}
