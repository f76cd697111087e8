//! Client ids as JetStream KV keys, reversibly.
//!
//! KV keys allow `[-/_=.a-zA-Z0-9]` and may not start or end with `.`.
//! A client id is any UTF-8 string (MQTT), so it is encoded byte by byte:
//! `[A-Za-z0-9_-]` kept, every other byte `=HH` (uppercase hex), the empty
//! id a lone `=` (the same scheme as a topic level's subject token,
//! [`crate::subject::encode_level`]). `=` only ever starts an escape, so
//! decoding is unambiguous; the key never holds `.` or `/`.
//!
//! An encoded key is at most [`MAX_KEY_LEN`] bytes: a client id that does
//! not fit (over 1,024 plain characters, fewer with other bytes) is refused
//! with [`KeyError::TooLong`] (the CONNECT gets "client identifier not
//! valid") rather than shortened: a hash would need the full id kept and
//! compared in the value, for ids no client needs.

use std::fmt::Write;

/// Longest encoded key, in bytes: far below the NATS control line
/// (`$KV.<bucket>.` in front, and a PUB line's other fields).
pub const MAX_KEY_LEN: usize = 1024;

/// Why a key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("client identifier of {0} bytes encodes past the registry's {MAX_KEY_LEN}-byte key")]
    TooLong(usize),
    #[error("not a registry key")]
    Invalid,
}

/// The KV key of `client_id`.
pub fn encode(client_id: &str) -> Result<String, KeyError> {
    if client_id.is_empty() {
        return Ok("=".to_string());
    }
    let mut out = String::with_capacity(client_id.len().min(MAX_KEY_LEN));
    for &b in client_id.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "={b:02X}");
        }
        if out.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(client_id.len()));
        }
    }
    Ok(out)
}

/// The client id of a key made by [`encode`].
pub fn decode(key: &str) -> Result<String, KeyError> {
    if key == "=" {
        return Ok(String::new());
    }
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'=' => {
                let hex = key.get(i + 1..i + 3).ok_or(KeyError::Invalid)?;
                if !hex.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)) {
                    return Err(KeyError::Invalid);
                }
                let v = u8::from_str_radix(hex, 16).map_err(|_| KeyError::Invalid)?;
                if v.is_ascii_alphanumeric() || v == b'_' || v == b'-' {
                    return Err(KeyError::Invalid);
                }
                out.push(v);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                out.push(c);
                i += 1;
            }
            _ => return Err(KeyError::Invalid),
        }
    }
    if out.is_empty() {
        return Err(KeyError::Invalid);
    }
    String::from_utf8(out).map_err(|_| KeyError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv_key_chars(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && k.bytes().all(|c| c.is_ascii_alphanumeric() || b"-/_=.".contains(&c))
    }

    #[test]
    fn examples() {
        assert_eq!(encode("dev-42_a").unwrap(), "dev-42_a");
        assert_eq!(encode("a.b/c d").unwrap(), "a=2Eb=2Fc=20d");
        assert_eq!(encode("").unwrap(), "=");
        assert_eq!(encode("=").unwrap(), "=3D");
        assert_eq!(encode("é").unwrap(), "=C3=A9");
        assert_eq!(decode("a=2Eb=2Fc=20d").unwrap(), "a.b/c d");
        assert_eq!(decode("=").unwrap(), "");
    }

    #[test]
    fn length_is_bounded_and_refused_with_a_reason() {
        assert!(encode(&"a".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(encode(&"a".repeat(MAX_KEY_LEN + 1)), Err(KeyError::TooLong(MAX_KEY_LEN + 1)));
        assert!(encode(&"/".repeat(341)).is_ok());
        assert_eq!(encode(&"/".repeat(342)), Err(KeyError::TooLong(342)));
        assert!(encode(&"x".repeat(65535)).unwrap_err().to_string().contains("1024-byte"));
    }

    #[test]
    fn garbage_keys_are_refused() {
        for k in ["", "=4", "=zz", "=41", "a.b", "==", "=FF", "a=2"] {
            assert_eq!(decode(k), Err(KeyError::Invalid), "{k:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn round_trips_and_stays_within_kv_key_syntax(id in "\\PC{0,40}") {
            let k = encode(&id).unwrap();
            prop_assert!(kv_key_chars(&k), "{k:?}");
            prop_assert!(k.len() <= MAX_KEY_LEN);
            prop_assert_eq!(decode(&k).unwrap(), id);
        }

        #[test]
        fn distinct_ids_get_distinct_keys(a in "[a-z=._/ ]{0,6}", b in "[a-z=._/ ]{0,6}") {
            prop_assume!(a != b);
            prop_assert_ne!(encode(&a).unwrap(), encode(&b).unwrap());
        }
    }
}
