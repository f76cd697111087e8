//! `password_hash = { ... }`: how a backend's password column is hashed.
//!
//! Values that describe themselves (`$2b$…` bcrypt, `$argon2id$…`, `$7$…`
//! Mosquitto PBKDF2, `$6$…` SHA-crypt, `$pbkdf2-…`) are recognised whatever
//! the setting says; the setting covers bare hex or base64 digests and
//! PBKDF2 keys. The default is EMQX 5's: `sha256`, salt as prefix, hex.
//!
//! ```toml
//! password_hash = { algo = "sha256", salt_position = "suffix" }
//! password_hash = { algo = "pbkdf2", mac = "sha256", iterations = 4096, key_length = 32 }
//! password_hash = { algo = "bcrypt" }
//! ```

use std::sync::Arc;

use portcullis_auth::hash::{Decoy, Encoding, HashAlgo, HashConfig, HashError, Pbkdf2Mac, SaltPosition, StoredHash};
use portcullis_core::gate::{ConnectInfo, DenyReason};
use portcullis_core::provider::{ErrorKind, ProviderError};
use serde::Deserialize;

use super::BuildError;

/// The algorithm names accepted in `algo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgoName {
    Plain,
    Md5,
    Sha1,
    #[default]
    Sha256,
    Sha512,
    Bcrypt,
    Pbkdf2,
    Argon2id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaltPositionName {
    #[default]
    Prefix,
    Suffix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacName {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// `password_hash` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordHashConfig {
    #[serde(default)]
    pub algo: AlgoName,
    /// Salted digests: `H(salt ‖ password)` (prefix) or `H(password ‖ salt)`.
    #[serde(default)]
    pub salt_position: SaltPositionName,
    /// How digests and PBKDF2 keys are written.
    #[serde(default)]
    pub encoding: EncodingName,
    /// PBKDF2 only.
    #[serde(default)]
    pub mac: MacName,
    /// PBKDF2 only.
    #[serde(default)]
    pub iterations: Option<u32>,
    /// PBKDF2 only; default: the MAC's output size.
    #[serde(default)]
    pub key_length: Option<usize>,
}

impl PasswordHashConfig {
    /// The verifier's configuration; errors name the offending key.
    pub fn to_hash_config(&self) -> Result<HashConfig, BuildError> {
        self.to_hash_config_at("password_hash")
    }

    /// [`Self::to_hash_config`] for a table written under another key
    /// (`hash` in a password file provider).
    pub fn to_hash_config_at(&self, key: &str) -> Result<HashConfig, BuildError> {
        let algo = match self.algo {
            AlgoName::Plain => HashAlgo::Plain,
            AlgoName::Md5 => HashAlgo::Md5,
            AlgoName::Sha1 => HashAlgo::Sha1,
            AlgoName::Sha256 => HashAlgo::Sha256,
            AlgoName::Sha512 => HashAlgo::Sha512,
            AlgoName::Bcrypt => HashAlgo::Bcrypt,
            AlgoName::Argon2id => HashAlgo::Argon2id,
            AlgoName::Pbkdf2 => {
                let mac = match self.mac {
                    MacName::Sha1 => Pbkdf2Mac::Sha1,
                    MacName::Sha256 => Pbkdf2Mac::Sha256,
                    MacName::Sha512 => Pbkdf2Mac::Sha512,
                };
                let iterations = self.iterations.ok_or_else(|| {
                    BuildError::missing(format!("{key}.iterations"), "required when algo = \"pbkdf2\"")
                })?;
                if iterations == 0 {
                    return Err(BuildError::invalid(format!("{key}.iterations"), "must be at least 1"));
                }
                let key_len = self.key_length.unwrap_or(mac.output_len());
                if key_len == 0 || key_len > 1024 {
                    return Err(BuildError::invalid(format!("{key}.key_length"), "must be 1 to 1024 bytes"));
                }
                HashAlgo::Pbkdf2 { mac, iterations, key_len }
            }
        };
        if self.algo != AlgoName::Pbkdf2 && (self.iterations.is_some() || self.key_length.is_some()) {
            let k = if self.iterations.is_some() { "iterations" } else { "key_length" };
            return Err(BuildError::invalid(format!("{key}.{k}"), "applies only to algo = \"pbkdf2\""));
        }
        Ok(HashConfig {
            algo,
            salt_position: match self.salt_position {
                SaltPositionName::Prefix => SaltPosition::Prefix,
                SaltPositionName::Suffix => SaltPosition::Suffix,
            },
            encoding: match self.encoding {
                EncodingName::Hex => Encoding::Hex,
                EncodingName::Base64 => Encoding::Base64,
            },
        })
    }
}

/// Checks the CONNECT's password against a stored hash (and salt) that a
/// backend returned. `Ok(None)` means the password is right; `Ok(Some(_))`
/// is the deny to return. A stored value we cannot parse is a backend
/// error, not a deny. Slow hashes run off the async threads. The hash
/// becomes `decoy`'s model for unknown users ([`unknown_user`]).
pub async fn check_password(
    info: &ConnectInfo,
    stored: &str,
    salt: Option<&str>,
    cfg: &HashConfig,
    decoy: &Decoy,
) -> Result<Option<DenyReason>, ProviderError> {
    let Some(password) = info.password.clone() else {
        return Ok(Some(DenyReason::BadCredentials));
    };
    let bad = |e: HashError| ProviderError::new(ErrorKind::BadResponse, format!("stored password hash: {e}"));
    let hash = Arc::new(StoredHash::parse(stored, salt, Some(cfg)).map_err(bad)?);
    decoy.remember(&hash);
    let ok = hash.verify_off_thread(password).await.map_err(bad)?;
    Ok(if ok { None } else { Some(DenyReason::BadCredentials) })
}

/// What a provider does before it ignores a user its backend does not
/// know: a decoy verification of the CONNECT's password, so the answer
/// takes as long as a wrong password would (see
/// `portcullis_auth::hash::decoy`).
pub async fn unknown_user(info: &ConnectInfo, decoy: &Decoy) {
    decoy.verify(info.password.as_ref()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::BuildErrorKind;

    #[test]
    fn default_is_emqx_sha256_prefix_hex() {
        let c = PasswordHashConfig::default().to_hash_config().unwrap();
        assert_eq!(c.algo, HashAlgo::Sha256);
        assert_eq!(c.salt_position, SaltPosition::Prefix);
    }

    #[test]
    fn pbkdf2_needs_iterations() {
        let c = PasswordHashConfig { algo: AlgoName::Pbkdf2, ..Default::default() };
        assert!(c.to_hash_config().unwrap_err().is("password_hash.iterations", BuildErrorKind::Missing));
        let c = PasswordHashConfig { algo: AlgoName::Pbkdf2, iterations: Some(10), ..Default::default() };
        assert!(matches!(c.to_hash_config().unwrap().algo, HashAlgo::Pbkdf2 { key_len: 32, .. }));
        let c = PasswordHashConfig { iterations: Some(10), ..Default::default() };
        assert!(c.to_hash_config().unwrap_err().is("password_hash.iterations", BuildErrorKind::Invalid));
        let c = PasswordHashConfig { algo: AlgoName::Pbkdf2, iterations: Some(1), key_length: Some(0), ..c };
        assert!(c.to_hash_config_at("hash").unwrap_err().is("hash.key_length", BuildErrorKind::Invalid));
    }
}
