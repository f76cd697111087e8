//! MQTT 5 enhanced authentication as written in the file: the methods a
//! CONNECT (or an AUTH 0x19) may name in its Authentication Method.
//!
//! * `[auth.scram.<name>]` — SCRAM-SHA-256 or SCRAM-SHA-512 (EMQX's
//!   `mechanism = "scram"`, `algorithm`, `iteration_count`), with exactly
//!   one credential source sub-table: `builtin` (the built-in user store),
//!   `postgres` / `mysql` (EMQX's columns) or `http` (EMQX's REST-based
//!   SCRAM response).
//! * `[auth.enhanced_token.<name>]` — a single-step method whose
//!   Authentication Data is checked as the password by the listener's auth
//!   chain (a JWT, an opaque token), so a token can be renewed with AUTH
//!   0x19 without reconnecting.
//!
//! Every method serves every listener; two tables may not claim one
//! method name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::security::default_provider_timeout;
use super::units;

/// `mechanism` as written: EMQX's name for what the table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MechanismName {
    #[default]
    Scram,
}

/// `algorithm` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScramAlgorithmName {
    /// Authentication Method `SCRAM-SHA-256`.
    #[default]
    Sha256,
    /// Authentication Method `SCRAM-SHA-512`.
    Sha512,
}

impl ScramAlgorithmName {
    pub fn algorithm(self) -> portcullis_auth::scram::Algorithm {
        match self {
            ScramAlgorithmName::Sha256 => portcullis_auth::scram::Algorithm::Sha256,
            ScramAlgorithmName::Sha512 => portcullis_auth::scram::Algorithm::Sha512,
        }
    }
}

/// `[auth.scram.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramConfig {
    /// Always `scram` (accepted so an EMQX block translates line by line).
    #[serde(default)]
    pub mechanism: MechanismName,
    /// `sha256` (method `SCRAM-SHA-256`) or `sha512` (`SCRAM-SHA-512`).
    #[serde(default)]
    pub algorithm: ScramAlgorithmName,
    /// PBKDF2 iterations: what a credential source that stores none
    /// (HTTP without `iterations`) and an unknown user are given. The
    /// built-in store derives its credentials with its own table's
    /// `iteration_count`.
    #[serde(default = "portcullis_auth::scram::default_iteration_count")]
    pub iteration_count: u32,
    /// The limit for one credential lookup (a failure or timeout refuses
    /// with CONNACK 0x88 server unavailable, never as a wrong password).
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Credentials from the built-in user store.
    #[serde(default)]
    pub builtin: Option<ScramBuiltinSource>,
    /// Credentials from PostgreSQL (EMQX's columns).
    #[cfg(feature = "postgres")]
    #[serde(default)]
    pub postgres: Option<portcullis_backends::sql::scram::ScramSqlConfig>,
    /// Credentials from MySQL / MariaDB (EMQX's columns).
    #[cfg(feature = "mysql")]
    #[serde(default)]
    pub mysql: Option<portcullis_backends::sql::scram::ScramSqlConfig>,
    /// Credentials from an HTTP endpoint (EMQX's REST-based SCRAM answer).
    #[cfg(feature = "http")]
    #[serde(default)]
    pub http: Option<portcullis_backends::http::scram::ScramHttpConfig>,
}

/// `[auth.scram.<name>.builtin]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramBuiltinSource {
    /// The store file (the `[auth.builtin.<name>]` one, usually).
    #[serde(default = "portcullis_backends::builtin::config::default_path")]
    pub path: PathBuf,
}

impl ScramConfig {
    /// How many credential sources the table names.
    fn sources(&self) -> usize {
        #[allow(unused_mut)]
        let mut n = usize::from(self.builtin.is_some());
        #[cfg(feature = "postgres")]
        {
            n += usize::from(self.postgres.is_some());
        }
        #[cfg(feature = "mysql")]
        {
            n += usize::from(self.mysql.is_some());
        }
        #[cfg(feature = "http")]
        {
            n += usize::from(self.http.is_some());
        }
        n
    }
}

/// `[auth.enhanced_token.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenMethodConfig {
    /// The Authentication Method clients name (case-sensitive).
    #[serde(default = "default_token_method")]
    pub method: String,
}

/// `JWT`: what a client renewing a JSON Web Token names.
pub fn default_token_method() -> String {
    "JWT".to_string()
}

/// Checks the tables: `(key, message)` for each problem.
pub fn validate(
    scram: &BTreeMap<String, ScramConfig>,
    token: &BTreeMap<String, TokenMethodConfig>,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut methods: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |method: String, key: String, errors: &mut Vec<(String, String)>| {
        if let Some(first) = methods.get(&method) {
            errors.push((key, format!("method `{method}` is already served by {first}")));
        } else {
            methods.insert(method, key);
        }
    };
    let (min, max) = (portcullis_auth::scram::MIN_ITERATIONS, portcullis_auth::scram::MAX_ITERATIONS);
    for (name, c) in scram {
        let key = format!("auth.scram.{name}");
        if !(min..=max).contains(&c.iteration_count) {
            errors.push((format!("{key}.iteration_count"), format!("must be {min} to {max}")));
        }
        if c.sources() != 1 {
            errors.push((
                key.clone(),
                "give exactly one credential source: `builtin`, `postgres`, `mysql` or `http`".to_string(),
            ));
        }
        claim(c.algorithm.algorithm().method().to_string(), key, &mut errors);
    }
    for (name, c) in token {
        let key = format!("auth.enhanced_token.{name}.method");
        if c.method.is_empty() || c.method.len() > 256 {
            errors.push((key.clone(), "must be 1 to 256 bytes long".to_string()));
        }
        claim(c.method.clone(), key, &mut errors);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(text: &str) -> (BTreeMap<String, ScramConfig>, BTreeMap<String, TokenMethodConfig>) {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            scram: BTreeMap<String, ScramConfig>,
            #[serde(default)]
            enhanced_token: BTreeMap<String, TokenMethodConfig>,
        }
        let t: T = toml::from_str(text).expect("parses");
        (t.scram, t.enhanced_token)
    }

    #[test]
    fn one_source_one_table_per_method_and_sane_iterations() {
        let (s, t) = tables("[scram.a]\n[scram.a.builtin]\n[enhanced_token.j]\n");
        assert_eq!(validate(&s, &t), vec![]);
        assert_eq!(s["a"].algorithm, ScramAlgorithmName::Sha256);
        assert_eq!(t["j"].method, "JWT");
        let (s, t) = tables(
            "[scram.a]\n[scram.a.builtin]\n[scram.b]\niteration_count = 10\n[scram.b.builtin]\n\
             [scram.c]\nalgorithm = \"sha512\"\n[enhanced_token.j]\nmethod = \"SCRAM-SHA-512\"\n",
        );
        let keys: Vec<String> = validate(&s, &t).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["auth.scram.b.iteration_count", "auth.scram.b", "auth.scram.c", "auth.enhanced_token.j.method"]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            scram: BTreeMap<String, ScramConfig>,
        }
        let e = toml::from_str::<T>("[scram.a]\nalgoritm = \"sha256\"\n").unwrap_err();
        assert!(e.to_string().contains("algoritm"), "{e}");
        let e = toml::from_str::<T>("[scram.a]\nalgorithm = \"sha1\"\n").unwrap_err();
        assert!(e.to_string().contains("sha1"), "{e}");
    }
}
