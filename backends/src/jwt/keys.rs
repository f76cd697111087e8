//! Verifying keys, each pinned to the algorithms it may verify.
//!
//! Pinning is what stops the two classic forgeries: `alg: none` (no key
//! accepts it, and the JOSE crate cannot even parse it as an algorithm)
//! and algorithm confusion (an RSA public key used as an HMAC secret: the
//! RSA key's algorithms are RS*/PS* only, and the crate refuses a key of
//! one family with an algorithm of another). A token's `alg` chooses among
//! a key's pinned algorithms, never beyond them.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::config::AuthConfig;
use crate::common::BuildError;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

/// Most keys a JWKS document may hold; more is a bad document.
pub const MAX_KEYS: usize = 64;

/// One key: its `kid` (JWKS), the algorithms it verifies, and a name for
/// explain output (`public_key RS256`, `jwks kid=k1`).
#[derive(Clone)]
pub struct KeyEntry {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
    pub label: String,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// The keys a token may be checked with.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<KeyEntry>,
}

/// Which keys to try for a token.
#[derive(Debug)]
pub enum Selection<'a> {
    Keys(Vec<&'a KeyEntry>),
    /// The token names a `kid` the set does not hold.
    UnknownKid,
}

impl KeySet {
    /// The keys for a token with this header: the one with its `kid`, or,
    /// when the token names none, every key pinned to its `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        match kid {
            Some(kid) if self.keys.iter().any(|k| k.kid.is_some()) => {
                match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                    Some(k) => Selection::Keys(vec![k]),
                    None => Selection::UnknownKid,
                }
            }
            _ => Selection::Keys(self.keys.iter().filter(|k| k.algorithms.contains(&alg)).collect()),
        }
    }
}

/// The algorithm names of `algorithm` (exact JWS names).
fn named(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>().ok()
}

/// The static key of a table without `use_jwks`: the HMAC secret or the
/// public key, pinned per `algorithm`.
pub fn static_key(cfg: &AuthConfig) -> Result<KeyEntry, BuildError> {
    let algorithm = cfg.algorithm.as_deref().ok_or_else(|| {
        BuildError::missing("algorithm", "\"hmac-based\", \"public-key\" or a JWS name such as \"RS256\"")
    })?;
    let is_hmac = algorithm == "hmac-based" || named(algorithm).is_some_and(|a| HMAC.contains(&a));
    if is_hmac {
        if cfg.public_key.is_some() {
            return Err(BuildError::invalid("public_key", "not used with an HMAC algorithm (use secret)"));
        }
        let secret = cfg
            .secret
            .as_ref()
            .ok_or_else(|| BuildError::missing("secret", "required with an HMAC algorithm"))?
            .resolve("secret")?;
        if secret.is_empty() {
            return Err(BuildError::invalid("secret", "must not be empty"));
        }
        let key = if cfg.secret_base64_encoded {
            DecodingKey::from_base64_secret(secret.trim())
                .map_err(|e| BuildError::invalid("secret", format!("not base64 (secret_base64_encoded): {e}")))?
        } else {
            DecodingKey::from_secret(secret.as_bytes())
        };
        let algorithms =
            if algorithm == "hmac-based" { HMAC.to_vec() } else { vec![named(algorithm).unwrap_or_default()] };
        let label = format!("secret {}", names(&algorithms));
        return Ok(KeyEntry { kid: None, key, algorithms, label });
    }
    if cfg.secret.is_some() {
        return Err(BuildError::invalid("secret", format!("not used with algorithm = {algorithm:?} (use public_key)")));
    }
    let pinned = match algorithm {
        "public-key" => None,
        other => Some(named(other).ok_or_else(|| {
            BuildError::invalid(
                "algorithm",
                format!(
                    "{other:?}: expected \"hmac-based\", \"public-key\", HS256, HS384, HS512, RS256, RS384, RS512, \
                     PS256, PS384, PS512, ES256, ES384 or EdDSA"
                ),
            )
        })?),
    };
    let pk = cfg
        .public_key
        .as_deref()
        .ok_or_else(|| BuildError::missing("public_key", "required with a public-key algorithm"))?;
    let pem = if pk.contains("-----BEGIN") {
        pk.as_bytes().to_vec()
    } else {
        std::fs::read(pk).map_err(|e| BuildError::file("public_key", format!("cannot read {pk}: {e}")))?
    };
    let (key, family): (DecodingKey, &[Algorithm]) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        (k, &RSA)
    } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        (k, &[Algorithm::EdDSA])
    } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        (k, &EC)
    } else {
        return Err(BuildError::file("public_key", "no RSA, EC or Ed25519 public key in PEM form found"));
    };
    let algorithms = match pinned {
        None => family.to_vec(),
        Some(a) if family.contains(&a) => vec![a],
        Some(a) => {
            return Err(BuildError::invalid(
                "algorithm",
                format!("{a:?} does not fit the key in public_key (it verifies {})", names(family)),
            ))
        }
    };
    let label = format!("public_key {}", names(&algorithms));
    Ok(KeyEntry { kid: None, key, algorithms, label })
}

fn names(algs: &[Algorithm]) -> String {
    algs.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join("/")
}

/// A JWKS document as a key set: signature keys only (`use` absent or
/// `sig`), pinned to their `alg` or else their type's algorithms. Secret
/// (`oct`) keys are skipped: a key set fetched over the network carries
/// public keys. An unparsable document is an error; one that parses to no
/// usable key is an error too (the last good set is kept).
pub fn from_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    if doc.keys.len() > MAX_KEYS {
        return Err(format!("{} keys; at most {MAX_KEYS} are read", doc.keys.len()));
    }
    let mut keys = Vec::new();
    for (i, v) in doc.keys.into_iter().enumerate() {
        // A key this crate cannot read (another type, a newer algorithm)
        // is skipped, not fatal: the rest of the set still verifies.
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
            tracing::debug!(index = i, "JWKS key not understood; skipped");
            continue;
        };
        if let Some(entry) = jwk_entry(&jwk) {
            keys.push(entry);
        }
    }
    if keys.is_empty() {
        return Err("no usable signature key in the JWKS document".to_string());
    }
    Ok(KeySet { keys })
}

fn jwk_entry(jwk: &Jwk) -> Option<KeyEntry> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(ka) => {
            let a = key_algorithm(ka)?;
            if !family.contains(&a) {
                return None;
            }
            vec![a]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let kid = jwk.common.key_id.clone();
    let label = format!("jwks kid={} {}", kid.as_deref().unwrap_or("-"), names(&algorithms));
    Some(KeyEntry { kid, key, algorithms, label })
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
