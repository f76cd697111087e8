//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as MQTT 5
//! enhanced-authentication mechanisms: the password never crosses the
//! wire, and the broker keeps only what cannot log in by itself.
//!
//! * [`Algorithm`] — the hash, its Authentication Method name, and the
//!   primitives (HMAC, H, PBKDF2: the `hmac`, `sha2` and `pbkdf2` crates;
//!   no hash code of our own).
//! * [`ScramCredential`] and [`derive`] — salt, iteration count, StoredKey
//!   and ServerKey, as a store keeps them (derived when a password is set).
//! * [`CredentialSource`] — where credentials come from (the built-in
//!   store, SQL, HTTP: implemented in the backends crate).
//! * [`ScramMechanism`] — the [`Mechanism`] a broker registers for
//!   `SCRAM-SHA-256` / `SCRAM-SHA-512`; its exchanges live in [`exchange`].
//!
//! Channel binding is not supported: a client must send the GS2 header
//! `n,,` (or `y,,`); `p=` is refused with a clear reason.

mod exchange;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_acl::rule::Rule;
use portcullis_core::enhanced::{Exchange, Mechanism, Purpose};
use portcullis_core::gate::{ConnectInfo, GateFuture};
use portcullis_core::provider::ProviderError;
use sha2::{Digest, Sha256, Sha512};

pub use exchange::ScramExchange;

/// The iteration count EMQX and RFC 7677 suggest at least.
pub fn default_iteration_count() -> u32 {
    4096
}

/// The fewest iterations a credential may have (RFC 7677 asks for at
/// least 4096; lower values are refused at the config edge, and a stored
/// credential below this is treated as unusable).
pub const MIN_ITERATIONS: u32 = 4096;

/// The most iterations accepted from a store: a client must run PBKDF2
/// this many times, and a bad row must not make it spin for hours.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The hash a SCRAM mechanism uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Both, in the order they are derived and listed.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The MQTT Authentication Method (SASL mechanism name).
    pub fn method(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SCRAM-SHA-256",
            Algorithm::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The config and column value (EMQX's `algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm named `sha256` / `sha512`.
    pub fn from_name(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Output length of the hash, and of StoredKey and ServerKey.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// HMAC(key, msg).
    pub fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha256 => run::<Hmac<Sha256>>(key, msg),
            Algorithm::Sha512 => run::<Hmac<Sha512>>(key, msg),
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => Sha256::digest(data).to_vec(),
            Algorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword = Hi(password, salt, i) (PBKDF2 with HMAC).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        match self {
            Algorithm::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Algorithm::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a store keeps for one user and one algorithm: enough to verify a
/// client's proof, not enough to compute one (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
    pub superuser: bool,
    /// ACL rules that came with the credential (an HTTP source's `acl`).
    pub inline_acl: Option<Arc<Vec<Rule>>>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .field("superuser", &self.superuser)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Whether the credential can serve `alg` (key lengths, iteration
    /// bounds, a salt).
    pub fn usable(&self, alg: Algorithm) -> bool {
        !self.salt.is_empty()
            && (1..=MAX_ITERATIONS).contains(&self.iterations)
            && self.stored_key.len() == alg.key_len()
            && self.server_key.len() == alg.key_len()
    }
}

/// Derives the stored credential for `password` (PBKDF2: CPU-heavy, run
/// it off the async threads).
pub fn derive(alg: Algorithm, password: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
    let salted = alg.salted_password(password, salt, iterations);
    let client_key = alg.hmac(&salted, b"Client Key");
    ScramCredential {
        salt: salt.to_vec(),
        iterations,
        stored_key: alg.hash(&client_key),
        server_key: alg.hmac(&salted, b"Server Key"),
        superuser: false,
        inline_acl: None,
    }
}

/// A fresh random salt (16 bytes, as EMQX's).
pub fn new_salt() -> Vec<u8> {
    use rand::RngCore;
    let mut s = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

/// Where a mechanism finds a user's credential.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential of `username` for `alg`: `Ok(None)` for an unknown
    /// user (or one without a credential for `alg`), `Err` when the source
    /// failed (never reported as a wrong password).
    fn lookup<'a>(
        &'a self,
        username: &'a str,
        alg: Algorithm,
    ) -> GateFuture<'a, Result<Option<ScramCredential>, ProviderError>>;
}

/// SCRAM over one credential source: the mechanism behind one
/// Authentication Method.
#[derive(Debug)]
pub struct ScramMechanism {
    name: String,
    alg: Algorithm,
    source: Arc<dyn CredentialSource>,
    /// For unknown users: the decoy salt is HMAC(decoy_key, username), so a
    /// client cannot tell an unknown user from a wrong password (RFC 5802
    /// §9's advice), and the same name always gets the same salt.
    decoy_key: [u8; 32],
    decoy_iterations: u32,
    /// The source's limit per lookup.
    timeout: Duration,
}

impl ScramMechanism {
    /// `name`: the config table's name, for logs. `decoy_iterations`: what
    /// an unknown user is told (the configured `iteration_count`).
    pub fn new(
        name: &str,
        alg: Algorithm,
        source: Arc<dyn CredentialSource>,
        decoy_iterations: u32,
        timeout: Duration,
    ) -> ScramMechanism {
        use rand::RngCore;
        let mut decoy_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut decoy_key);
        ScramMechanism { name: name.to_string(), alg, source, decoy_key, decoy_iterations, timeout }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl Mechanism for ScramMechanism {
    fn start(&self, info: &ConnectInfo, purpose: Purpose) -> Box<dyn Exchange> {
        Box::new(ScramExchange::new(exchange::Setup {
            name: self.name.clone(),
            alg: self.alg,
            source: Arc::clone(&self.source),
            decoy_key: self.decoy_key,
            decoy_iterations: self.decoy_iterations,
            timeout: self.timeout,
            connect_username: info.username.clone(),
            purpose,
            server_nonce: None,
        }))
    }
}

/// Hex text (either case) as bytes, as EMQX encodes salts and keys; `None`
/// for anything else.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}
