//! Decoy verifications: an unknown user costs what a known one costs.
//!
//! A provider that finds no such user used to answer at once, while a
//! known user with a wrong password cost a hash verification (milliseconds
//! to a second for bcrypt or Argon2): the latency told an attacker which
//! usernames exist. A provider now runs a [`Decoy`] verification for an
//! unknown user who sent a password, and throws the result away.
//!
//! What the decoy verifies against is a *model* hash:
//!
//! * the last stored hash the provider really checked ([`Decoy::remember`])
//!   — same scheme, same cost parameters as the users it serves; a
//!   password file seeds it with its first user's hash at load;
//! * before any, a stand-in of the configured algorithm
//!   ([`StoredHash::stand_in`]): the same cost for digests and PBKDF2,
//!   bcrypt at cost 12 and Argon2id at the `argon2` crate's defaults for
//!   those.
//!
//! The decoy runs where a real check would ([`StoredHash::verify_off_thread`]:
//! slow schemes on the blocking pool, bounded per CPU), so it also queues
//! like one. Its result never reaches a decision.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use portcullis_core::gate::Password;

use super::config::{HashAlgo, HashConfig};
use super::stored::StoredHash;

/// A bcrypt hash at cost 12 (the cost `portcullis passwd` writes) of 32
/// random bytes that were thrown away.
const BCRYPT_STAND_IN: &str = "$2b$12$qWkrrT5/7BdMTOUqvFMBiOY0HQiZAU7ifW7i47xj24wraCPv24/f6";
/// An Argon2id hash at the `argon2` crate's defaults (what `portcullis
/// passwd` writes) of 32 random bytes that were thrown away.
const ARGON2ID_STAND_IN: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$5g2ELn2xT4yFGajRVa0XXw$yREjoLBaeM4olabWcf+1RpyTCTaOjY+9lvwzE+lA8NI";

/// The model hash a provider's unknown users are verified against.
pub struct Decoy {
    model: Mutex<Option<Arc<StoredHash>>>,
}

impl fmt::Debug for Decoy {
    /// Names the model's scheme only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.model.lock().as_ref().map(|h| h.scheme());
        f.debug_struct("Decoy").field("scheme", &scheme).finish()
    }
}

impl Decoy {
    /// A decoy that starts with `model` (none: no verification until a
    /// hash is remembered).
    pub fn new(model: Option<Arc<StoredHash>>) -> Decoy {
        Decoy { model: Mutex::new(model) }
    }

    /// A decoy that starts with a stand-in of the configured algorithm.
    pub fn for_config(cfg: &HashConfig) -> Decoy {
        Decoy::new(StoredHash::stand_in(cfg).map(Arc::new))
    }

    /// Makes `hash` (a stored hash just checked for a real user) the model.
    pub fn remember(&self, hash: &Arc<StoredHash>) {
        let mut model = self.model.lock();
        if !model.as_ref().is_some_and(|m| Arc::ptr_eq(m, hash)) {
            *model = Some(Arc::clone(hash));
        }
    }

    /// Verifies `password` against the model and forgets the result. Does
    /// nothing without a password (a known user without one is refused
    /// without hashing too) or without a model.
    pub async fn verify(&self, password: Option<&Password>) {
        let Some(password) = password else { return };
        let Some(model) = self.model.lock().clone() else { return };
        let _ = model.verify_off_thread(password.clone()).await;
    }
}

impl StoredHash {
    /// A hash of the configured algorithm with its cost parameters, that no
    /// password matches in practice; `None` for nothing to imitate.
    pub fn stand_in(cfg: &HashConfig) -> Option<StoredHash> {
        let hex = |len: usize| "00".repeat(len);
        let stored = match cfg.algo {
            HashAlgo::Plain => return StoredHash::parse("\u{0}decoy", None, Some(cfg)).ok(),
            HashAlgo::Bcrypt => return StoredHash::parse(BCRYPT_STAND_IN, None, None).ok(),
            HashAlgo::Argon2id => return StoredHash::parse(ARGON2ID_STAND_IN, None, None).ok(),
            HashAlgo::Md5 => hex(16),
            HashAlgo::Sha1 => hex(20),
            HashAlgo::Sha256 => hex(32),
            HashAlgo::Sha512 => hex(64),
            HashAlgo::Pbkdf2 { key_len, .. } => hex(key_len),
        };
        let hex_cfg = HashConfig { encoding: super::Encoding::Hex, ..*cfg };
        StoredHash::parse(&stored, Some("decoy-salt"), Some(&hex_cfg)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Encoding, Pbkdf2Mac, SaltPosition};

    fn pw(s: &str) -> Password {
        Password::new(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn stand_ins_have_the_configured_scheme() {
        let cfg = |algo| HashConfig { algo, salt_position: SaltPosition::Prefix, encoding: Encoding::Base64 };
        for (algo, scheme) in [
            (HashAlgo::Plain, "plain"),
            (HashAlgo::Md5, "md5"),
            (HashAlgo::Sha256, "sha256"),
            (HashAlgo::Sha512, "sha512"),
            (HashAlgo::Bcrypt, "bcrypt"),
            (HashAlgo::Argon2id, "argon2id"),
            (HashAlgo::Pbkdf2 { mac: Pbkdf2Mac::Sha256, iterations: 5000, key_len: 32 }, "pbkdf2"),
        ] {
            let h = StoredHash::stand_in(&cfg(algo)).expect("a stand-in");
            assert_eq!(h.scheme(), scheme);
            assert!(!h.verify(b"decoy").unwrap());
        }
        let h = StoredHash::stand_in(&cfg(HashAlgo::Pbkdf2 { mac: Pbkdf2Mac::Sha1, iterations: 5000, key_len: 20 }));
        assert!(!h.expect("pbkdf2").is_cheap(), "the configured iterations are kept");
        assert!(!StoredHash::stand_in(&cfg(HashAlgo::Bcrypt)).unwrap().is_cheap());
    }

    #[tokio::test]
    async fn remembers_the_last_model_and_never_fails() {
        let d = Decoy::new(None);
        d.verify(Some(&pw("x"))).await;
        assert_eq!(format!("{d:?}"), "Decoy { scheme: None }");
        let h = Arc::new(
            StoredHash::parse("$2b$04$mn3miQeKpB2EJNumPKRvQuJ6jfEHTfBAujHEJ6R5p/NCe/EXIaU8a", None, None).unwrap(),
        );
        d.remember(&h);
        d.verify(Some(&pw("correct horse"))).await;
        d.verify(None).await;
        assert_eq!(format!("{d:?}"), "Decoy { scheme: Some(\"bcrypt\") }");
        let f = Decoy::for_config(&HashConfig::new(HashAlgo::Sha256));
        assert_eq!(format!("{f:?}"), "Decoy { scheme: Some(\"sha256\") }");
    }
}
