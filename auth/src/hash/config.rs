//! How a backend says what its (non self-describing) hash column holds.
//!
//! Self-describing values (`$7$…`, `$2b$…`, `$argon2id$…`) need no
//! configuration; a bare hex digest does. SQL and Redis backends carry a
//! [`HashConfig`] for those.

/// The algorithm of a stored value that does not name its own scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// The stored value is the password itself (compared in constant time).
    /// A salt, if any, is ignored.
    Plain,
    Md5,
    Sha1,
    Sha256,
    Sha512,
    /// The stored value must be a bcrypt string (`$2b$…`).
    Bcrypt,
    /// PBKDF2: the stored value is the derived key in [`HashConfig::encoding`],
    /// the salt column's bytes are the salt.
    Pbkdf2 {
        mac: Pbkdf2Mac,
        iterations: u32,
        key_len: usize,
    },
    /// The stored value must be an Argon2 PHC string (`$argon2id$…`).
    Argon2id,
}

/// The HMAC under a PBKDF2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pbkdf2Mac {
    Sha1,
    Sha256,
    Sha512,
}

impl Pbkdf2Mac {
    /// Output size of the underlying hash, in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Pbkdf2Mac::Sha1 => 20,
            Pbkdf2Mac::Sha256 => 32,
            Pbkdf2Mac::Sha512 => 64,
        }
    }
}

/// Where the salt goes for the salted digests: `H(salt ‖ password)` or
/// `H(password ‖ salt)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaltPosition {
    #[default]
    Prefix,
    Suffix,
}

/// How a digest or derived key is written in the stored column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Lower or upper case hex.
    #[default]
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// What a backend's hash column holds when the value does not say so itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashConfig {
    pub algo: HashAlgo,
    /// Only for the salted digests (md5 … sha512).
    pub salt_position: SaltPosition,
    /// Only for the digests and PBKDF2 keys.
    pub encoding: Encoding,
}

impl HashConfig {
    /// `algo` with the salt in front and hex encoding.
    pub fn new(algo: HashAlgo) -> HashConfig {
        HashConfig { algo, salt_position: SaltPosition::Prefix, encoding: Encoding::Hex }
    }
}
