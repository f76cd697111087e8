//! Hashing new passwords (for `portcullis passwd` and the user store).

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine;
use rand::RngCore;

use super::stored::{pbkdf2, B64};
use super::{HashError, Pbkdf2Mac};

/// Iterations `mosquitto_passwd` (2.0) writes for `$7$`; kept for
/// compatibility with Mosquitto's password files, not for strength.
pub const MOSQUITTO_ITERATIONS: u32 = 101;
/// Salt bytes `mosquitto_passwd` uses.
pub const MOSQUITTO_SALT_LEN: usize = 12;
/// bcrypt cost for new hashes (the bcrypt crate's default).
pub const BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;
/// bcrypt ignores everything past 72 bytes; we refuse to hash such passwords.
pub const BCRYPT_MAX_PASSWORD: usize = 72;

/// The scheme for a newly hashed password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewHash {
    /// `$argon2id$v=19$m=19456,t=2,p=1$…` (the argon2 crate's defaults,
    /// OWASP's recommendation).
    #[default]
    Argon2id,
    /// Mosquitto's `$7$101$…`: readable by Mosquitto's `password_file`.
    Pbkdf2Sha512,
    /// `$2b$12$…`.
    Bcrypt,
}

impl NewHash {
    pub fn as_str(self) -> &'static str {
        match self {
            NewHash::Argon2id => "argon2id",
            NewHash::Pbkdf2Sha512 => "sha512-pbkdf2",
            NewHash::Bcrypt => "bcrypt",
        }
    }
}

impl fmt::Display for NewHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown hash name (for the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hash {0:?} (expected argon2id, sha512-pbkdf2 or bcrypt)")]
pub struct UnknownNewHash(pub String);

impl FromStr for NewHash {
    type Err = UnknownNewHash;
    /// `argon2id`, `sha512-pbkdf2` (Mosquitto's name; also `pbkdf2-sha512`,
    /// `mosquitto`), `bcrypt`.
    fn from_str(s: &str) -> Result<NewHash, UnknownNewHash> {
        match s {
            "argon2id" | "argon2" => Ok(NewHash::Argon2id),
            "sha512-pbkdf2" | "pbkdf2-sha512" | "mosquitto" => Ok(NewHash::Pbkdf2Sha512),
            "bcrypt" => Ok(NewHash::Bcrypt),
            other => Err(UnknownNewHash(other.to_string())),
        }
    }
}

fn random_salt<const N: usize>() -> Result<[u8; N], HashError> {
    let mut salt = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut salt).map_err(|e| HashError::Random(e.to_string()))?;
    Ok(salt)
}

/// Hashes `password` with a fresh random salt. Slow for Argon2id and bcrypt
/// (by design): call it off the async threads.
pub fn hash_password(password: &[u8], algo: NewHash) -> Result<String, HashError> {
    match algo {
        NewHash::Argon2id => {
            let salt = random_salt::<16>()?;
            let salt = SaltString::encode_b64(&salt).map_err(|_| HashError::Internal("argon2 salt encoding"))?;
            let hash = argon2::Argon2::default()
                .hash_password(password, &salt)
                .map_err(|_| HashError::Internal("argon2 refused the password"))?;
            Ok(hash.to_string())
        }
        NewHash::Pbkdf2Sha512 => {
            let salt = random_salt::<MOSQUITTO_SALT_LEN>()?;
            let mut key = [0u8; 64];
            pbkdf2(Pbkdf2Mac::Sha512, password, &salt, MOSQUITTO_ITERATIONS, &mut key);
            Ok(format!("$7${MOSQUITTO_ITERATIONS}${}${}", B64.encode(salt), B64.encode(key)))
        }
        NewHash::Bcrypt => {
            if password.len() > BCRYPT_MAX_PASSWORD {
                return Err(HashError::PasswordTooLong { scheme: "bcrypt", max: BCRYPT_MAX_PASSWORD });
            }
            let salt = random_salt::<16>()?;
            let parts = bcrypt::hash_with_salt(password, BCRYPT_COST, salt)
                .map_err(|_| HashError::Internal("bcrypt refused the password"))?;
            Ok(parts.format_for_version(bcrypt::Version::TwoB))
        }
    }
}
