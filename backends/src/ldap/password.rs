//! `compare` mode: a `userPassword` value (RFC 2307 / OpenLDAP
//! `{SCHEME}` form) checked against the CONNECT's password, in constant
//! time.
//!
//! | scheme | value |
//! |---|---|
//! | `{SSHA}`, `{SSHA256}`, `{SSHA384}`, `{SSHA512}`, `{SMD5}` | base64(H(password ‖ salt) ‖ salt) |
//! | `{SHA}`, `{SHA256}`, `{SHA384}`, `{SHA512}`, `{MD5}` | base64(H(password)) |
//! | `{CRYPT}` | a crypt(3) string: `$6$` / `$5$` (sha-crypt), `$2b$` (bcrypt), `$argon2id$` |
//! | `{ARGON2}` | an Argon2 PHC string |
//! | no `{…}` prefix | the password in plain text |
//!
//! A value in a scheme we do not know, or that does not decode, is a
//! backend error (the directory holds something we cannot check), never a
//! deny.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portcullis_auth::hash::StoredHash;
use portcullis_core::gate::Password;
use portcullis_core::provider::{ErrorKind, ProviderError};
use sha2::Digest;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    fn len(self) -> usize {
        match self {
            Algo::Md5 => 16,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
            Algo::Sha384 => 48,
            Algo::Sha512 => 64,
        }
    }

    fn digest(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(a: &[u8], b: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(a);
            d.update(b);
            d.finalize().to_vec()
        }
        match self {
            Algo::Md5 => run::<md5::Md5>(password, salt),
            Algo::Sha1 => run::<sha1::Sha1>(password, salt),
            Algo::Sha256 => run::<sha2::Sha256>(password, salt),
            Algo::Sha384 => run::<sha2::Sha384>(password, salt),
            Algo::Sha512 => run::<sha2::Sha512>(password, salt),
        }
    }
}

fn bad(detail: String) -> ProviderError {
    ProviderError::new(ErrorKind::BadResponse, detail)
}

/// Whether `password` matches one stored `userPassword` value.
pub async fn verify(stored: &[u8], password: &Password) -> Result<bool, ProviderError> {
    let Some(rest) = stored.strip_prefix(b"{") else {
        return Ok(plain_eq(stored, password.expose()));
    };
    let Some(end) = rest.iter().position(|b| *b == b'}') else {
        // A plain-text password that happens to start with `{`.
        return Ok(plain_eq(stored, password.expose()));
    };
    let scheme = String::from_utf8_lossy(&rest[..end]).to_ascii_uppercase();
    let value = &rest[end + 1..];
    let digest = |algo: Algo, salted: bool| -> Result<bool, ProviderError> {
        let raw = STANDARD
            .decode(value.trim_ascii())
            .map_err(|_| bad(format!("{{{scheme}}} password value is not base64")))?;
        let (hash, salt) = if salted {
            if raw.len() <= algo.len() {
                return Err(bad(format!("{{{scheme}}} password value has no salt")));
            }
            raw.split_at(algo.len())
        } else {
            if raw.len() != algo.len() {
                return Err(bad(format!("{{{scheme}}} password value has the wrong length")));
            }
            (raw.as_slice(), &[][..])
        };
        Ok(algo.digest(password.expose(), salt).ct_eq(hash).into())
    };
    match scheme.as_str() {
        "SSHA" => digest(Algo::Sha1, true),
        "SHA" => digest(Algo::Sha1, false),
        "SSHA256" => digest(Algo::Sha256, true),
        "SHA256" => digest(Algo::Sha256, false),
        "SSHA384" => digest(Algo::Sha384, true),
        "SHA384" => digest(Algo::Sha384, false),
        "SSHA512" => digest(Algo::Sha512, true),
        "SHA512" => digest(Algo::Sha512, false),
        "SMD5" => digest(Algo::Md5, true),
        "MD5" => digest(Algo::Md5, false),
        "CRYPT" | "ARGON2" => {
            let text = std::str::from_utf8(value).map_err(|_| bad(format!("{{{scheme}}} value is not text")))?;
            let hash = StoredHash::parse(text, None, None).map_err(|e| match e {
                portcullis_auth::hash::HashError::UnknownFormat => bad(format!(
                    "{{{scheme}}} value: unsupported crypt format (supported: $5$, $6$, $2a$/$2b$/$2y$, $argon2*$)"
                )),
                other => bad(format!("{{{scheme}}} value: {other}")),
            })?;
            Ok(Arc::new(hash).verify_off_thread(password.clone()).await?)
        }
        other => Err(bad(format!("unsupported password scheme {{{other}}}"))),
    }
}

/// Plain-text comparison in constant time (over SHA-256 digests, so the
/// stored value's length does not show either).
fn plain_eq(stored: &[u8], password: &[u8]) -> bool {
    sha2::Sha256::digest(stored).ct_eq(&sha2::Sha256::digest(password)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }

    async fn check(stored: &str, password: &str) -> Result<bool, ProviderError> {
        verify(stored.as_bytes(), &pw(password)).await
    }

    #[tokio::test]
    async fn every_scheme() {
        // Values made with Python's hashlib and `openssl passwd -6`
        // (the same as in tests/fixtures/ldap/users.ldif).
        let cases = [
            ("{SSHA}fPFUbdwcQ8rQSjd9F18vPtP1Jv5OYUNsNHUheA==", "alice-pw"),
            ("{SSHA256}acXhTgp2uyOlgaJG2T/BDKfPBfB2mIIhRgkZhrbmq3dwZXBwZXIxMg==", "carol-pw"),
            (
                "{SSHA512}1+h/RxfHe/sNAgrvuPiWpvjTjUvolLsplYSZd0HQg9MlXOHB2vgGeNvGyDEawQJiIrFxJltoiM8LvWER/FmCdnNhbHRzYWx0",
                "frank-pw",
            ),
            ("{SHA}8OpzA9qFyf2ti25/10PrASuhYY8=", "dev1-pw"),
            ("{MD5}ubwV5x0EsKPoa/Z1OSiaig==", "dave-pw"),
            (
                "{CRYPT}$6$Ab3dEf6h$DPU5sGJ2O.A3ElZWUsQuraeS9WFkjoNNpLPW2unEv7QMnhWwzKTLqSEinEl1CgSGxXtQOzm.X9eMbngzX3enH0",
                "erin-pw",
            ),
            ("bob-pw", "bob-pw"),
            ("{ssha}fPFUbdwcQ8rQSjd9F18vPtP1Jv5OYUNsNHUheA==", "alice-pw"),
        ];
        for (stored, right) in cases {
            assert!(check(stored, right).await.unwrap(), "{stored} with the right password");
            assert!(!check(stored, "wrong").await.unwrap(), "{stored} with a wrong password");
            assert!(!check(stored, "").await.unwrap(), "{stored} with an empty password");
        }
    }

    #[tokio::test]
    async fn unknown_or_broken_values_are_errors_not_denials() {
        for stored in ["{PBKDF2}xyz", "{SSHA}!!notbase64", "{SHA}AAAA", "{CRYPT}$1$abc$def", "{SSHA}AAAA"] {
            let e = check(stored, "x").await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadResponse, "{stored}: {e}");
            assert!(!e.message.contains("x\""), "{e}");
        }
        // Plain text that merely starts with a brace.
        assert!(check("{not-closed", "{not-closed").await.unwrap());
    }
}
