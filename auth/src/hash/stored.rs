//! A stored password hash, parsed once and verified many times.
//!
//! [`StoredHash::parse`] recognises the self-describing formats by their
//! `$id$` prefix and falls back to a [`HashConfig`] for bare digests;
//! [`StoredHash::verify`] recomputes and compares in constant time
//! (`subtle`, or the constant-time compare inside the bcrypt/argon2 crates).
//! Errors never quote the stored value: a misconfigured column may hold
//! plain-text passwords.

use std::fmt;

use argon2::password_hash::{self, PasswordHash, PasswordVerifier};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::config::{Encoding, HashAlgo, HashConfig, Pbkdf2Mac, SaltPosition};
use super::HashError;

/// Standard base64; decoding accepts values with or without padding.
pub(super) const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Mosquitto's PBKDF2 key length (SHA-512 output).
const MOSQUITTO_KEY_LEN: usize = 64;
/// Longest derived key we accept from a PHC string or a config.
const MAX_KEY_LEN: usize = 1024;
/// sha-crypt round limits and default (glibc clamps rather than rejects).
const SHA_CRYPT_ROUNDS_MIN: usize = 1_000;
const SHA_CRYPT_ROUNDS_MAX: usize = 999_999_999;
const SHA_CRYPT_ROUNDS_DEFAULT: usize = 5_000;
/// PBKDF2 work (iterations × output blocks) cheap enough for an async thread
/// (Mosquitto's 101 iterations take well under 100 µs).
const CHEAP_PBKDF2_WORK: u64 = 128;

/// A plain digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlgo {
    fn output_len(self) -> usize {
        match self {
            DigestAlgo::Md5 => 16,
            DigestAlgo::Sha1 => 20,
            DigestAlgo::Sha256 => 32,
            DigestAlgo::Sha512 => 64,
        }
    }

    fn digest(self, parts: [&[u8]; 2]) -> Vec<u8> {
        fn run<D: Digest>(parts: [&[u8]; 2]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            DigestAlgo::Md5 => run::<md5::Md5>(parts),
            DigestAlgo::Sha1 => run::<sha1::Sha1>(parts),
            DigestAlgo::Sha256 => run::<sha2::Sha256>(parts),
            DigestAlgo::Sha512 => run::<sha2::Sha512>(parts),
        }
    }
}

/// PBKDF2 with the given HMAC into `out` (its length is the key length).
pub(super) fn pbkdf2(mac: Pbkdf2Mac, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    match mac {
        Pbkdf2Mac::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
        Pbkdf2Mac::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
        Pbkdf2Mac::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
    }
}

#[derive(Clone)]
enum Inner {
    /// SHA-256 of the plain-text password: comparing digests hides the
    /// stored password's length, and the plain text is not kept in memory.
    Plain([u8; 32]),
    Digest {
        algo: DigestAlgo,
        position: SaltPosition,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Pbkdf2 {
        mac: Pbkdf2Mac,
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    ShaCrypt {
        sha512: bool,
        rounds: usize,
        salt: String,
        hash: String,
    },
    Bcrypt(String),
    Argon2(String),
}

/// A parsed stored hash. Its `Debug` names the scheme only.
#[derive(Clone)]
pub struct StoredHash {
    scheme: &'static str,
    inner: Inner,
}

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredHash").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

fn malformed(scheme: &'static str, detail: &'static str) -> HashError {
    HashError::Malformed { scheme, detail }
}

impl StoredHash {
    /// Recognises, in this order: Mosquitto `$7$` (PBKDF2-HMAC-SHA512) and
    /// `$6$` (salted SHA-512), sha512-crypt / sha256-crypt (`$6$`, `$5$`),
    /// bcrypt (`$2a$`, `$2b$`, `$2y$`), Argon2 PHC (`$argon2id$`, `$argon2i$`,
    /// `$argon2d$`), PBKDF2 PHC (`$pbkdf2-sha256$i=…`) and passlib
    /// (`$pbkdf2-sha256$29000$…`). Anything else is read per `cfg` (with
    /// `salt` from a separate column); without `cfg` it is
    /// [`HashError::UnknownFormat`]. A value that starts like a known format
    /// but does not parse is [`HashError::Malformed`], even with a `cfg`.
    pub fn parse(stored: &str, salt: Option<&str>, cfg: Option<&HashConfig>) -> Result<StoredHash, HashError> {
        if let Some(rest) = stored.strip_prefix('$') {
            let id = rest.split('$').next().unwrap_or("");
            match id {
                "7" => return parse_mosquitto_pbkdf2(stored),
                "6" | "5" => return parse_sha(stored, id == "6"),
                "2a" | "2b" | "2y" => return parse_bcrypt(stored),
                "argon2id" | "argon2i" | "argon2d" => return parse_argon2(stored),
                "pbkdf2" | "pbkdf2-sha256" | "pbkdf2-sha512" => return parse_pbkdf2(stored),
                _ => {}
            }
        }
        match cfg {
            Some(cfg) => from_config(stored, salt, cfg),
            None => Err(HashError::UnknownFormat),
        }
    }

    /// The scheme name (`mosquitto-pbkdf2-sha512`, `bcrypt`, `sha256`…).
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Whether verifying is cheap enough to run on an async thread
    /// (plain, salted digests, PBKDF2 with very few iterations).
    pub fn is_cheap(&self) -> bool {
        match &self.inner {
            Inner::Plain(_) | Inner::Digest { .. } => true,
            Inner::Pbkdf2 { mac, iterations, hash, .. } => {
                let blocks = hash.len().div_ceil(mac.output_len()) as u64;
                u64::from(*iterations).saturating_mul(blocks) <= CHEAP_PBKDF2_WORK
            }
            Inner::ShaCrypt { .. } | Inner::Bcrypt(_) | Inner::Argon2(_) => false,
        }
    }

    /// Whether `password` matches, compared in constant time. `Err` only
    /// for a value the hashing library rejects at verification time.
    pub fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        let ok = match &self.inner {
            Inner::Plain(expected) => sha2::Sha256::digest(password).as_slice().ct_eq(expected).into(),
            Inner::Digest { algo, position, salt, hash } => {
                let parts = match position {
                    SaltPosition::Prefix => [salt.as_slice(), password],
                    SaltPosition::Suffix => [password, salt.as_slice()],
                };
                algo.digest(parts).ct_eq(hash).into()
            }
            Inner::Pbkdf2 { mac, iterations, salt, hash } => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2(*mac, password, salt, *iterations, &mut out);
                out.ct_eq(hash).into()
            }
            Inner::ShaCrypt { sha512, rounds, salt, hash } => {
                let computed = if *sha512 {
                    let params = sha_crypt::Sha512Params::new(*rounds)
                        .map_err(|_| malformed(self.scheme, "rounds out of range"))?;
                    sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
                } else {
                    let params = sha_crypt::Sha256Params::new(*rounds)
                        .map_err(|_| malformed(self.scheme, "rounds out of range"))?;
                    sha_crypt::sha256_crypt_b64(password, salt.as_bytes(), &params)
                }
                .map_err(|_| malformed(self.scheme, "rejected by sha-crypt"))?;
                computed.as_bytes().ct_eq(hash.as_bytes()).into()
            }
            // bcrypt::verify compares with subtle::ConstantTimeEq.
            Inner::Bcrypt(s) => bcrypt::verify(password, s).map_err(|_| malformed("bcrypt", "rejected by bcrypt"))?,
            Inner::Argon2(s) => {
                let parsed = PasswordHash::new(s).map_err(|_| malformed(self.scheme, "not a PHC string"))?;
                // The password-hash crate compares outputs in constant time.
                match argon2::Argon2::default().verify_password(password, &parsed) {
                    Ok(()) => true,
                    Err(password_hash::Error::Password) => false,
                    Err(_) => return Err(malformed(self.scheme, "rejected by argon2")),
                }
            }
        };
        Ok(ok)
    }
}

/// `$7$<iterations>$<salt b64>$<hash b64>`: Mosquitto 2.x, PBKDF2-HMAC-SHA512.
fn parse_mosquitto_pbkdf2(s: &str) -> Result<StoredHash, HashError> {
    const S: &str = "mosquitto-pbkdf2-sha512";
    let parts: Vec<&str> = s.split('$').collect();
    let [_, _, iterations, salt, hash] = parts.as_slice() else {
        return Err(malformed(S, "expected $7$iterations$salt$hash"));
    };
    let iterations = parse_iterations(S, iterations)?;
    let salt = B64.decode(salt).map_err(|_| malformed(S, "salt is not base64"))?;
    let hash = B64.decode(hash).map_err(|_| malformed(S, "hash is not base64"))?;
    if hash.len() != MOSQUITTO_KEY_LEN {
        return Err(malformed(S, "hash is not 64 bytes"));
    }
    Ok(StoredHash { scheme: S, inner: Inner::Pbkdf2 { mac: Pbkdf2Mac::Sha512, iterations, salt, hash } })
}

/// `$6$…` is either Mosquitto's salted SHA-512 (`$6$<salt b64>$<hash b64>`,
/// hash = SHA-512(password ‖ salt), 88 base64 characters) or sha512-crypt
/// (`$6$[rounds=N$]<salt>$<86 crypt characters>`); `$5$` is sha256-crypt.
fn parse_sha(s: &str, sha512: bool) -> Result<StoredHash, HashError> {
    let parts: Vec<&str> = s.split('$').collect();
    let crypt_len = if sha512 { 86 } else { 43 };
    let scheme = if sha512 { "sha512-crypt" } else { "sha256-crypt" };
    match parts.as_slice() {
        [_, _, salt, hash] if sha512 && hash.len() != crypt_len && !salt.starts_with("rounds=") => {
            const S: &str = "mosquitto-sha512";
            let salt = B64.decode(salt).map_err(|_| malformed(S, "salt is not base64"))?;
            let hash = B64.decode(hash).map_err(|_| malformed(S, "hash is not 64 bytes of base64"))?;
            if hash.len() != DigestAlgo::Sha512.output_len() {
                return Err(malformed(S, "hash is not 64 bytes of base64"));
            }
            let inner = Inner::Digest { algo: DigestAlgo::Sha512, position: SaltPosition::Suffix, salt, hash };
            Ok(StoredHash { scheme: S, inner })
        }
        [_, _, salt, hash] => sha_crypt(scheme, sha512, SHA_CRYPT_ROUNDS_DEFAULT, salt, hash, crypt_len),
        [_, _, rounds, salt, hash] => {
            let rounds = rounds
                .strip_prefix("rounds=")
                .and_then(|r| r.parse::<usize>().ok())
                .ok_or_else(|| malformed(scheme, "expected rounds=N"))?;
            let rounds = rounds.clamp(SHA_CRYPT_ROUNDS_MIN, SHA_CRYPT_ROUNDS_MAX);
            sha_crypt(scheme, sha512, rounds, salt, hash, crypt_len)
        }
        _ => Err(malformed(scheme, "expected $id$[rounds=N$]salt$hash")),
    }
}

fn is_crypt_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'/'
}

fn sha_crypt(
    scheme: &'static str,
    sha512: bool,
    rounds: usize,
    salt: &str,
    hash: &str,
    crypt_len: usize,
) -> Result<StoredHash, HashError> {
    if hash.len() != crypt_len || !hash.bytes().all(is_crypt_char) {
        return Err(malformed(scheme, "hash has the wrong length or alphabet"));
    }
    // Like glibc, only the first 16 salt characters count.
    let salt: String = salt.chars().take(16).collect();
    Ok(StoredHash { scheme, inner: Inner::ShaCrypt { sha512, rounds, salt, hash: hash.to_string() } })
}

/// `$2a$`, `$2b$`, `$2y$` + two-digit cost + 22 salt + 31 hash characters.
/// (`$2x$`, the crypt_blowfish bug-compatible variant, is not accepted.)
fn parse_bcrypt(s: &str) -> Result<StoredHash, HashError> {
    const S: &str = "bcrypt";
    let parts: Vec<&str> = s.split('$').collect();
    let [_, _, cost, rest] = parts.as_slice() else {
        return Err(malformed(S, "expected $2b$cost$salthash"));
    };
    let cost_ok = cost.len() == 2 && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c));
    if !cost_ok {
        return Err(malformed(S, "cost is not 04..31"));
    }
    if rest.len() != 53 || !rest.bytes().all(is_crypt_char) {
        return Err(malformed(S, "salt and hash are not 53 bcrypt-base64 characters"));
    }
    Ok(StoredHash { scheme: S, inner: Inner::Bcrypt(s.to_string()) })
}

/// `$argon2id$v=19$m=…,t=…,p=…$salt$hash` (PHC string format).
fn parse_argon2(s: &str) -> Result<StoredHash, HashError> {
    let parsed = PasswordHash::new(s).map_err(|_| malformed("argon2", "not a valid PHC string"))?;
    let scheme = match parsed.algorithm.as_str() {
        "argon2id" => "argon2id",
        "argon2i" => "argon2i",
        _ => "argon2d",
    };
    argon2::Params::try_from(&parsed).map_err(|_| malformed(scheme, "invalid parameters"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed(scheme, "salt or hash missing"));
    }
    Ok(StoredHash { scheme, inner: Inner::Argon2(s.to_string()) })
}

/// PBKDF2 as a PHC string (`$pbkdf2-sha256$i=4096,l=32$<salt B64>$<hash B64>`,
/// unpadded standard base64, as the RustCrypto `pbkdf2` crate writes) or as
/// passlib writes it (`$pbkdf2-sha256$29000$<salt ab64>$<hash ab64>`, `.` for
/// `+`). `$pbkdf2$` is HMAC-SHA1.
fn parse_pbkdf2(s: &str) -> Result<StoredHash, HashError> {
    let parts: Vec<&str> = s.split('$').collect();
    let [_, id, params, salt, hash] = parts.as_slice() else {
        return Err(malformed("pbkdf2", "expected $pbkdf2-<mac>$params$salt$hash"));
    };
    let (scheme, mac) = match *id {
        "pbkdf2" => ("pbkdf2-sha1", Pbkdf2Mac::Sha1),
        "pbkdf2-sha256" => ("pbkdf2-sha256", Pbkdf2Mac::Sha256),
        _ => ("pbkdf2-sha512", Pbkdf2Mac::Sha512),
    };
    let (iterations, key_len, salt, hash) = if params.bytes().all(|b| b.is_ascii_digit()) {
        let iterations = parse_iterations(scheme, params)?;
        let salt = B64.decode(salt.replace('.', "+")).map_err(|_| malformed(scheme, "salt is not ab64"))?;
        let hash = B64.decode(hash.replace('.', "+")).map_err(|_| malformed(scheme, "hash is not ab64"))?;
        (iterations, Some(mac.output_len()), salt, hash)
    } else {
        let mut iterations = None;
        let mut key_len = None;
        for kv in params.split(',') {
            match kv.split_once('=') {
                Some(("i", v)) => iterations = Some(parse_iterations(scheme, v)?),
                Some(("l", v)) => {
                    key_len = Some(v.parse::<usize>().map_err(|_| malformed(scheme, "l is not a number"))?)
                }
                _ => return Err(malformed(scheme, "unknown parameter")),
            }
        }
        let iterations = iterations.ok_or_else(|| malformed(scheme, "missing i="))?;
        let salt = B64.decode(salt).map_err(|_| malformed(scheme, "salt is not base64"))?;
        let hash = B64.decode(hash).map_err(|_| malformed(scheme, "hash is not base64"))?;
        (iterations, key_len, salt, hash)
    };
    if key_len.is_some_and(|l| l != hash.len()) {
        return Err(malformed(scheme, "hash length does not match the key length"));
    }
    if hash.is_empty() || hash.len() > MAX_KEY_LEN {
        return Err(malformed(scheme, "key length out of range"));
    }
    Ok(StoredHash { scheme, inner: Inner::Pbkdf2 { mac, iterations, salt, hash } })
}

fn parse_iterations(scheme: &'static str, s: &str) -> Result<u32, HashError> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(malformed(scheme, "iterations is not a positive number")),
    }
}

/// A value that does not describe itself, read per the backend's config.
fn from_config(stored: &str, salt: Option<&str>, cfg: &HashConfig) -> Result<StoredHash, HashError> {
    let salt = salt.unwrap_or("").as_bytes().to_vec();
    let digest = |scheme: &'static str, algo: DigestAlgo| {
        let hash = decode(scheme, stored, cfg.encoding)?;
        if hash.len() != algo.output_len() {
            return Err(malformed(scheme, "digest has the wrong length"));
        }
        Ok(StoredHash { scheme, inner: Inner::Digest { algo, position: cfg.salt_position, salt: salt.clone(), hash } })
    };
    match cfg.algo {
        HashAlgo::Plain => {
            Ok(StoredHash { scheme: "plain", inner: Inner::Plain(sha2::Sha256::digest(stored.as_bytes()).into()) })
        }
        HashAlgo::Md5 => digest("md5", DigestAlgo::Md5),
        HashAlgo::Sha1 => digest("sha1", DigestAlgo::Sha1),
        HashAlgo::Sha256 => digest("sha256", DigestAlgo::Sha256),
        HashAlgo::Sha512 => digest("sha512", DigestAlgo::Sha512),
        HashAlgo::Pbkdf2 { mac, iterations, key_len } => {
            const S: &str = "pbkdf2";
            if iterations == 0 {
                return Err(malformed(S, "configured iterations must be positive"));
            }
            let hash = decode(S, stored, cfg.encoding)?;
            if hash.len() != key_len || hash.is_empty() || hash.len() > MAX_KEY_LEN {
                return Err(malformed(S, "derived key does not have the configured length"));
            }
            Ok(StoredHash { scheme: S, inner: Inner::Pbkdf2 { mac, iterations, salt, hash } })
        }
        HashAlgo::Bcrypt => Err(malformed("bcrypt", "stored value is not a $2a$/$2b$/$2y$ string")),
        HashAlgo::Argon2id => Err(malformed("argon2id", "stored value is not an $argon2id$ PHC string")),
    }
}

fn decode(scheme: &'static str, s: &str, encoding: Encoding) -> Result<Vec<u8>, HashError> {
    match encoding {
        Encoding::Hex => decode_hex(s).ok_or_else(|| malformed(scheme, "not hex")),
        Encoding::Base64 => B64.decode(s).map_err(|_| malformed(scheme, "not base64")),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs.map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?)).collect()
}
